"""``obliviate models``: list the built-in models, or build (cache) one."""

from __future__ import annotations

import typer

from obliviate.cli.app import app


@app.command("models")
def models_command(
    build: str = typer.Option(None, "--build", help="build and cache this built-in model now, then print its folder"),
) -> None:
    """List the built-in model names (usable wherever a MODEL is asked for)."""
    from obliviate.models import builtin_names, describe_builtins, resolve_model
    from obliviate.utils import setup_logging

    if build:
        setup_logging()
        if build not in builtin_names():
            raise typer.BadParameter(f"unknown built-in {build!r}; choose from {', '.join(builtin_names())}")
        print(resolve_model(build))
        return
    print("Built-in models (built once on first use, then cached):")
    print(describe_builtins())
