"""``obliviate`` command line. Each sub-command lives in its own module of this package."""

from __future__ import annotations

import sys

from obliviate.cli.app import app
from obliviate.errors import ObliviateError

# Importing a module registers its command(s) on ``app``.
from obliviate.cli import demo_cmd  # noqa: F401  isort:skip
from obliviate.cli import models_cmd  # noqa: F401  isort:skip
from obliviate.cli import unlearn_cmd  # noqa: F401  isort:skip
from obliviate.cli import accelerate_cmd  # noqa: F401  isort:skip
from obliviate.cli import audit_cmd  # noqa: F401  isort:skip
from obliviate.cli import world_cmd  # noqa: F401  isort:skip
from obliviate.cli import merge_cmd  # noqa: F401  isort:skip
from obliviate.cli import ulmr_cmd  # noqa: F401  isort:skip
from obliviate.cli import eval_cmd  # noqa: F401  isort:skip
from obliviate.cli import compare_cmd  # noqa: F401  isort:skip
from obliviate.cli import report_cmd  # noqa: F401  isort:skip
from obliviate.cli import history_cmd  # noqa: F401  isort:skip
from obliviate.cli import stream_cmd  # noqa: F401  isort:skip
from obliviate.cli import tune_cmd  # noqa: F401  isort:skip
from obliviate.cli import methods_cmd  # noqa: F401  isort:skip


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
