"""``obliviate methods [NAME]``: the unlearning methods, or one method's options with defaults and help."""

from __future__ import annotations

from typing import Annotated

import typer

from obliviate.cli.app import app


@app.command("methods")
def methods_command(
    name: Annotated[str | None, typer.Argument(help="a method: list its method_args and its paper defaults")] = None,
) -> None:
    """List the unlearning methods; with NAME, the method's options (method_args.*) and the run
    settings its paper sets (train/stop/refinement), each with its default and help."""
    from obliviate.config import describe_fields
    from obliviate.methods import describe_methods, get_method

    if name is None:
        print(describe_methods())
        print("details: obliviate methods NAME  (or obliviate unlearn --method NAME --list-options)")
        return
    spec = get_method(name)
    print(f"{spec.name}: {spec.summary}")
    print("\nmethod_args (set as method_args.KEY=VALUE):")
    for key, default, help_ in describe_fields(spec.config(), "method_args."):
        print(f"  {key}={_show(default)}\n      {help_}")
    if spec.defaults:
        print("\npaper defaults of the run (override with KEY=VALUE):")
        for section, values in spec.defaults.items():
            for key, value in values.items():
                print(f"  {section}.{key}={_show(value)}")


def _show(value: object) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."
