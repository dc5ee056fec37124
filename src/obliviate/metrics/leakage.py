"""Sampling leakage: leak@k from n samples per prompt, and the AUC's standard error.

``leak_at_k(n, c, k) = 1 - C(n-c, k) / C(n, k)``: the unbiased estimator of the probability that
at least one of k samples leaks, given that c of n samples did (the pass@k estimator of Chen et
al. 2021, used as leak@k by OptimAI-Lab/Leak-k). Computed as a running product, which stays exact
in floating point where the binomials overflow (numpy/scipy have no such estimator).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from obliviate.metrics.base import MetricResult, mean


def leak_at_k(n: int, c: int, k: int) -> float:
    """P(at least one of k samples, drawn without replacement from the n, leaks) given c leaked."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i)
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def leakage(scores: Sequence[Sequence[float]], *, threshold: float, ks: Sequence[int]) -> dict[str, MetricResult]:
    """From per-prompt sample scores (one list of n scores per prompt): ``leak@k`` for each k
    (mean over prompts of the unbiased estimate), the leak rate (c/n) and the worst sample's
    score per prompt (``max``). A sample leaks when its score >= ``threshold``."""
    out: dict[str, MetricResult] = {}
    counts = [sum(s >= threshold for s in row) for row in scores]
    ns = [len(row) for row in scores]
    for k in ks:
        per = [leak_at_k(n, c, min(k, n)) for n, c in zip(ns, counts)]
        out[f"leak@{k}"] = MetricResult(f"leak@{k}", mean(per), per, {"threshold": threshold, "k": k})
    rate = [c / n for n, c in zip(ns, counts)]
    out["leak_rate"] = MetricResult("leak_rate", mean(rate), rate, {"threshold": threshold})
    worst = [max(row) for row in scores]
    out["max"] = MetricResult("max", mean(worst), worst, {"aggregate": "mean over prompts of the best sample"})
    return out


def auc_standard_error(auc: float, n_pos: int, n_neg: int) -> float:
    """Hanley & McNeil (1982) standard error of a ROC AUC from n_pos positives and n_neg negatives."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (n_pos * n_neg)
    return math.sqrt(max(var, 0.0))
