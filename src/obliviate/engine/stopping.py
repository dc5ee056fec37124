"""When unlearning stops: the rules of KUMPR and ICU, and the indistinguishability target, as one
pure function.

After each epoch (from ``min_epochs`` on): stop when refinement has no active sample left, when
a callback asked to stop (the indistinguishability target: ``indistinguishable`` or
``over_unlearned``), under ``stop.rule=thresholds`` when every configured threshold holds (mean
EL_n < el_threshold and mean MA < ma_threshold, strict, as both references), or at ``max_epochs``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from obliviate.engine.config import StopConfig

THRESHOLDS = "thresholds"
ALL_FORGOTTEN = "all_forgotten"
MAX_EPOCHS = "max_epochs"


def mean_over(values: Sequence[float], active: Sequence[bool] | None) -> float:
    """Mean of ``values`` that are defined (not None); over the active samples only when ``active``
    is given. NaN if none."""
    flags = [True] * len(values) if active is None else active
    chosen = [v for v, a in zip(values, flags) if a and v is not None]
    return sum(chosen) / len(chosen) if chosen else float("nan")


def thresholds_met(means: Mapping[str, float], thresholds: Mapping[str, float | None], require: str) -> bool:
    """``means[name] < thresholds[name]`` for the configured (non-None) thresholds."""
    checks = [means[name] < limit for name, limit in thresholds.items() if limit is not None]
    if not checks:
        return False
    return all(checks) if require == "all" else any(checks)


def stop_reason(epoch: int, means: Mapping[str, float], thresholds: Mapping[str, float | None], n_active: int,
                cfg: StopConfig, refinement_on: bool, requested: str | None = None) -> str | None:
    """Why to stop after ``epoch`` (1-based), or None to go on. ``requested``: a callback's reason."""
    if epoch < cfg.min_epochs:
        return None
    if refinement_on and cfg.when_all_forgotten and n_active == 0:
        return ALL_FORGOTTEN
    if requested:
        return requested
    if cfg.rule == THRESHOLDS and thresholds_met(means, thresholds, cfg.require):
        return THRESHOLDS
    if epoch >= cfg.max_epochs:
        return MAX_EPOCHS
    return None
