"""The ICU paper's normalised scores s_z and s_m (eq. 11) over a set of runs.

For each metric, normalise its values across the runs (z-score with the population standard
deviation for s_z, min-max for s_m), flip the sign of metrics where lower is better, and sum
over metrics: s = sum_up M_i - sum_down M_i. Directions are passed in (the
callers read them from ``obliviate.evaluation.registry``).

This reproduces the paper's Table I exactly (125M block: s_z 2.23 / -5.72 / -5.01 / 2.69 /
2.03 / 3.78 for OPT, KUMPR, DPO, KL, LLMU, ICU) with ddof=0 and PPL ">1000" taken as 1000;
see tests/test_metrics_normalize.py. The normalisation depends on which runs are compared,
so the score of a run changes when another run is added: always report the set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def normalized_scores(runs: Mapping[str, Mapping[str, float]], *, directions: Mapping[str, bool | None],
                      metrics: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """{run: {"s_z": ..., "s_m": ...}} for runs given as {run: {metric: value}}.

    ``directions``: metric -> True (higher is better) / False / None (callers read them from
    ``obliviate.evaluation.registry``; this function stays pure). ``metrics`` defaults to those
    every run has whose direction is known. A metric with the same value in every run
    contributes 0 (its spread is 0).
    """
    names = list(runs)
    if len(names) < 2:
        raise ValueError("normalised scores compare at least two runs")
    if metrics is None:
        common = set.intersection(*(set(m) for m in runs.values()))
        metrics = sorted(m for m in common if directions.get(m) is not None)
    if not metrics:
        raise ValueError("no metric with a known direction is shared by all runs")
    out = {name: {"s_z": 0.0, "s_m": 0.0} for name in names}
    for metric in metrics:
        up = directions.get(metric)
        if up is None:
            raise ValueError(f"metric {metric!r} has no direction (higher_is_better=None); exclude it")
        sign = 1.0 if up else -1.0
        values = []
        for name in names:
            if metric not in runs[name]:
                raise ValueError(f"run {name!r} has no value for {metric!r}")
            values.append(float(runs[name][metric]))
        mu = math.fsum(values) / len(values)
        sd = math.sqrt(math.fsum((v - mu) ** 2 for v in values) / len(values))  # population std (ddof=0)
        lo, hi = min(values), max(values)
        for name, v in zip(names, values):
            out[name]["s_z"] += sign * ((v - mu) / sd if sd > 0 else 0.0)
            out[name]["s_m"] += sign * ((v - lo) / (hi - lo) if hi > lo else 0.0)
    return out
