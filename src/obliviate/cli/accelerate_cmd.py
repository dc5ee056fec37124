"""``obliviate accelerate-config NAME``: the path of a shipped accelerate config, for

    accelerate launch --config_file $(obliviate accelerate-config zero3) -m obliviate.cli unlearn ...
"""

from __future__ import annotations

from typing import Annotated

import typer

from obliviate.cli.app import app


@app.command("accelerate-config")
def accelerate_config_command(
    name: Annotated[str | None, typer.Argument(help="ddp, zero2, zero3, fsdp or cpu; omit to list them")] = None,
) -> None:
    """Print the path of a shipped `accelerate launch` config (multi-GPU, DeepSpeed, FSDP)."""
    from obliviate.engine.distributed import accelerate_configs

    configs = accelerate_configs()
    if name is None:
        for key, (path, summary) in configs.items():
            print(f"  {key:<6} {summary}  ({path})")
        return
    if name not in configs:
        from obliviate.errors import ObliviateError

        raise ObliviateError(f"no shipped accelerate config {name!r}; choose from {', '.join(configs)}")
    print(configs[name][0])
