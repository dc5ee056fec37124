"""Checkpoints: one folder per finished epoch, written so that a kill at any moment leaves
either the previous complete checkpoint or the new complete one -- never a half one.

``checkpoints/epoch-0003/`` holds accelerate's ``save_state`` (model, optimizer, scheduler, RNG
states), ``reference_cache.pt`` (cached reference log-probs) and ``engine_state.json`` (epoch,
active mask, when each sample was forgotten, history, thresholds, the method's own state). The
folder is written as ``epoch-0003.partial`` and renamed when complete; older checkpoints are
pruned afterwards.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from obliviate.data.io import read_json, write_json

CHECKPOINTS = "checkpoints"
STATE_FILE = "engine_state.json"
CACHE_FILE = "reference_cache.pt"
_NAME = re.compile(r"epoch-(\d{4,})$")


@contextmanager
def quiet_tied_weights() -> Iterator[None]:
    """Silence accelerate's "Removed shared tensor ... while saving" during ``save_state``: it fires
    at every checkpoint of a model with tied embeddings (SmolLM2, GPT-2), whose tie ``from_pretrained``
    restores, so it warns of nothing here."""
    logger = logging.getLogger("accelerate.utils.other")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@dataclass
class EngineState:
    """Everything besides tensors that a resumed run needs to continue exactly."""

    epoch: int = 0  # last finished epoch (0 = none yet)
    steps: int = 0  # optimizer steps taken
    active: list[bool] = field(default_factory=list)  # samples still being unlearned
    forgotten_at: list[int | None] = field(default_factory=list)  # epoch a sample was (last) marked forgotten
    thresholds: dict[str, float | None] = field(default_factory=dict)  # {"ma": .., "el_10": ..}
    thresholds_source: str = ""
    before: dict[str, Any] = field(default_factory=dict)  # per-sample metrics of the original model
    last: dict[str, Any] = field(default_factory=dict)  # per-sample metrics after the last epoch
    history: list[dict[str, Any]] = field(default_factory=list)  # one row of means per epoch (0 = before)
    events: list[dict[str, Any]] = field(default_factory=list)  # refinement: who was forgotten / came back when
    stop_reason: str | None = None  # set when the run has finished
    method_state: dict[str, float] = field(default_factory=dict)  # the method's own state (PDU's lambda)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineState:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def checkpoint_root(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINTS


def checkpoint_path(run_dir: Path, epoch: int) -> Path:
    return checkpoint_root(run_dir) / f"epoch-{epoch:04d}"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints, oldest first."""
    root = checkpoint_root(run_dir)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        m = _NAME.match(path.name)
        if m and path.is_dir() and (path / STATE_FILE).is_file():
            found.append((int(m.group(1)), path))
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def write_state(folder: Path, state: EngineState) -> None:
    write_json(folder / STATE_FILE, state.to_dict())


def read_state(folder: Path) -> EngineState:
    return EngineState.from_dict(read_json(folder / STATE_FILE))


def finish(partial: Path, final: Path, run_dir: Path, keep: int) -> None:
    """Make ``partial`` the checkpoint ``final`` (atomic rename) and keep only the newest ``keep``."""
    if final.exists():
        shutil.rmtree(final)
    partial.rename(final)
    for _, old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    for stale in checkpoint_root(run_dir).glob("*.partial"):
        shutil.rmtree(stale, ignore_errors=True)
