"""Run folders: created fresh, resumed, or replaced -- never overwritten by accident."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Literal

from obliviate.errors import ObliviateError

log = logging.getLogger(__name__)
Mode = Literal["new", "resume", "overwrite"]


def prepare_run_dir(path: str | Path, mode: Mode = "new", *, marker: str = "config.yaml") -> Path:
    """Return the run folder, checking that ``mode`` fits what is already there.

    * ``new``: the folder must not exist or be empty.
    * ``resume``: the folder must hold a run (``marker`` file); missing -> error.
    * ``overwrite``: an existing folder is removed first (logged, explicit by the user's choice).
    """
    path = Path(path)
    holds_run = path.is_dir() and any(path.iterdir())
    if mode == "new" and holds_run:
        raise ObliviateError(f"{path}: output folder already holds a run; pass --resume to continue it "
                             "or --overwrite to replace it")
    if mode == "resume" and not (path / marker).is_file():
        raise ObliviateError(f"{path}: nothing to resume (no {marker}); start a new run without --resume")
    if mode == "overwrite" and path.exists():
        log.warning("removing the existing run in %s (--overwrite)", path)
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path
