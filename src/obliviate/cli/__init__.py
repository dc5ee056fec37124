"""``obliviate`` command line. Each sub-command lives in its own module of this package."""

from __future__ import annotations

import sys

from obliviate.cli.app import app
from obliviate.errors import ObliviateError

# Importing a module registers its command(s) on ``app``.
from obliviate.cli import models_cmd  # noqa: F401  isort:skip


def main() -> None:
    try:
        app()
    except ObliviateError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


__all__ = ["app", "main"]
