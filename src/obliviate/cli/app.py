"""The typer application every ``obliviate <command>`` module attaches to.

Command modules import torch and friends lazily (inside the command), so ``--help`` is instant.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="obliviate",
    help="Make a trained language model forget specific data -- and prove it with measurements.\n\n"
    "Start with `obliviate demo`. A MODEL is a Hugging Face id, a local folder, a .gguf file or a "
    "built-in name (`obliviate models`). DATA is a record file (.jsonl/.json/.csv/.parquet), a datasets "
    "save_to_disk folder, a hub dataset hf:<repo>[:<config>[:<split>]] or a built-in name (demo:forget).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="debug logging")) -> None:
    from obliviate.utils import setup_logging

    setup_logging(verbose)
