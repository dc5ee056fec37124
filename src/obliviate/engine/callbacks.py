"""What a callback sees of a run -- the shape of trl's ``TrainerCallback``.

A callback gets three things and nothing else of the engine:

* ``args`` (``RunArgs``): the run's configuration (method, train, stop, refinement, eval);
* ``report`` (``EpochReport``): an immutable snapshot of the run after an evaluation -- the
  epoch's row of means, the per-sample metrics, the active set, thresholds, the history;
* ``control`` (``Control``): what a callback may ask of the loop (stop after this epoch).

``on_evaluate`` runs after every evaluation (epoch 0 = the original model) and may return an
``EpochUpdate``: extra means for the epoch's row, extra per-sample columns, and a new *active
set* (which forget samples the next epoch trains on; ICU's refinement is such a callback). The
next callback sees a report that includes the previous callbacks' updates. ``on_checkpoint``
runs once the epoch's checkpoint is complete (run-folder writers; tests simulate kills there).

Keyword arguments carry the objects a callback may *use* but not keep: ``model`` (the trained
model in eval mode, in its own dtype), ``tokenizer`` and ``reference`` (the frozen original, as
losses see it). Callbacks run on every process; under ZeRO-3/FSDP one that runs the model must
run it on every process alike (``report.sharded``), and only ``report.is_main_process`` writes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from obliviate.engine.config import EvalConfig, RefinementConfig, StopConfig, TrainConfig
    from obliviate.methods.base import MethodConfig


@dataclass(frozen=True)
class RunArgs:
    """The configuration of a run, as callbacks see it (read it, do not change it)."""

    method: str
    method_cfg: MethodConfig
    train: TrainConfig
    stop: StopConfig
    refinement: RefinementConfig
    eval: EvalConfig
    forget_ids: tuple[str, ...]
    run_dir: Path | None = None


@dataclass(frozen=True)
class EpochReport:
    """The run after one evaluation; every container is read-only."""

    epoch: int  # 0 = the original model, before any update
    metrics: Mapping[str, Any]  # this epoch's row so far: training logs and evaluation means
    per_sample: Mapping[str, tuple]  # this evaluation, per forget sample ("id", "ma", "el_10", ...)
    before: Mapping[str, tuple]  # the same for the original model
    active: tuple[bool, ...]  # samples the next epoch trains on
    forgotten_at: tuple[int | None, ...]  # epoch each sample was (last) marked forgotten
    thresholds: Mapping[str, float | None]  # the stopping thresholds ({"ma": .., "el_10": ..})
    history: tuple[Mapping[str, Any], ...]  # the rows of the finished epochs, epoch 0 first
    events: tuple[Mapping[str, Any], ...]  # refinement: which samples were forgotten / came back when
    stop_reason: str | None  # set once the run has decided to stop
    is_main_process: bool = True
    sharded: bool = False  # weights sharded over processes (ZeRO-3/FSDP): forwards are collective


def freeze(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    """A read-only copy whose list values are tuples (what ``EpochReport`` holds)."""
    return MappingProxyType({k: tuple(v) if isinstance(v, list) else v for k, v in mapping.items()})


@dataclass
class Control:
    """What callbacks ask of the loop after an evaluation (trl's ``TrainerControl``)."""

    should_stop: bool = False
    stop_reason: str | None = None

    def stop(self, reason: str) -> None:
        """Stop after this epoch (from ``stop.min_epochs`` on), recording ``reason`` as the run's stop reason.
        Asked at epoch 0 (the original model), the run ends before any update."""
        self.should_stop, self.stop_reason = True, reason


@dataclass(frozen=True)
class EpochUpdate:
    """What ``on_evaluate`` may return: extra means for the row, extra per-sample columns
    (aligned with the forget set), and the next epoch's active set (None: unchanged)."""

    metrics: Mapping[str, Any] = field(default_factory=dict)
    per_sample: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    active: Sequence[bool] | None = None


class Callback:
    """Hooks into a run; override what you need (see the module docstring)."""

    def on_evaluate(self, args: RunArgs, report: EpochReport, control: Control,
                    **kwargs: Any) -> EpochUpdate | Mapping[str, float] | None:
        return None

    def on_checkpoint(self, args: RunArgs, report: EpochReport, control: Control, **kwargs: Any) -> None:
        return None


def as_update(value: EpochUpdate | Mapping[str, float] | None) -> EpochUpdate:
    """A callback's return value as an ``EpochUpdate`` (a plain mapping = extra means)."""
    if value is None:
        return EpochUpdate()
    return value if isinstance(value, EpochUpdate) else EpochUpdate(metrics=dict(value))
