"""How far the forget set is from never-seen data of the same kind: pure two-sample statistics.

Given per-sample scores of the forget set and of held-out data (never trained on) under the
same model -- any MIA score of ``metrics.mia`` or TOFU's truth ratio -- two numbers say whether
the forget set still stands out:

* ``auc``: ``mia_auc`` (P(a forget sample looks more member-like than a held-out one)); 1 = the
  forget set is still recognised as training data, 0.5 = indistinguishable, well below 0.5 = the
  forget set now looks *less* member-like than never-seen data (over-unlearning: it stands out
  again, on the other side -- the effect MUSE's PrivLeak measures in both directions).
* ``ks_p``: the p-value of the two-sided two-sample Kolmogorov-Smirnov test
  (``scipy.stats.ks_2samp``), which also sees differences of shape that the AUC misses.

``verdict`` turns them into a decision: ``indistinguishable`` when |auc - 0.5| <= band and
ks_p >= alpha, ``over_unlearned`` when auc < 0.5 - overshoot, ``distinguishable`` otherwise.
``heldout_like`` marks the single forget samples that already score like never-seen data (used to
stop unlearning those samples, as refinement does).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from obliviate.metrics.mia import mia_auc

DISTINGUISHABLE = "distinguishable"
INDISTINGUISHABLE = "indistinguishable"
OVER_UNLEARNED = "over_unlearned"


@dataclass(frozen=True)
class TwoSample:
    """Forget vs held-out under one model (orientation of ``auc``: see ``metrics.mia``)."""

    auc: float
    ks_statistic: float
    ks_p: float
    n_forget: int
    n_heldout: int

    def as_row(self, prefix: str = "target_") -> dict[str, float]:
        return {f"{prefix}auc": self.auc, f"{prefix}ks_p": self.ks_p, f"{prefix}ks_stat": self.ks_statistic}


def _finite(values: Sequence[float], what: str) -> np.ndarray:
    arr = np.asarray(list(values), dtype=float)
    if arr.size == 0:
        raise ValueError(f"the {what} scores are empty")
    if not np.isfinite(arr).all():
        raise ValueError(f"the {what} scores hold NaN or infinite values")
    return arr


def two_sample(forget: Sequence[float], heldout: Sequence[float], *, high_means_member: bool) -> TwoSample:
    """AUC (sklearn, via ``mia_auc``) and two-sided KS test (scipy) of forget vs held-out scores."""
    from scipy.stats import ks_2samp

    f, h = _finite(forget, "forget"), _finite(heldout, "held-out")
    auc = mia_auc(f.tolist(), h.tolist(), high_means_member=high_means_member).value
    ks = ks_2samp(f, h)
    return TwoSample(auc=auc, ks_statistic=float(ks.statistic), ks_p=float(ks.pvalue), n_forget=int(f.size),
                     n_heldout=int(h.size))


def verdict(stats: TwoSample, *, auc_band: float, ks_alpha: float, overshoot: float) -> str:
    """``indistinguishable`` / ``over_unlearned`` / ``distinguishable`` (see the module docstring)."""
    if stats.auc < 0.5 - overshoot:
        return OVER_UNLEARNED
    if abs(stats.auc - 0.5) <= auc_band and stats.ks_p >= ks_alpha:
        return INDISTINGUISHABLE
    return DISTINGUISHABLE


def heldout_like(forget: Sequence[float], heldout: Sequence[float], *, high_means_member: bool,
                 quantile: float = 0.5) -> list[bool]:
    """Per forget sample: is it no more member-like than the held-out data's ``quantile``?

    With ``quantile=0.5`` a sample counts as held-out-like once at least half the held-out
    samples look as member-like as it or more (it sits in the never-seen half of the scores).
    """
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    sign = 1.0 if high_means_member else -1.0
    f, h = sign * _finite(forget, "forget"), sign * _finite(heldout, "held-out")
    # Oriented so that high = member-like: the sample must not exceed the held-out quantile.
    cut = float(np.quantile(h, quantile))
    return [bool(v <= cut) for v in f]
