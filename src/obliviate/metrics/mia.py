"""Membership inference: per-sample attack scores, ROC AUC and MUSE's PrivLeak.

Scores keep their usual definitions (notation: l_t = log p(x_t | x_<t) over the scored
positions, L of them); each has a fixed orientation, recorded in ``details``:

===========  =========================================================  ====================
name         score                                                      high means
===========  =========================================================  ====================
mia_loss     -mean l_t (mean NLL)                                       non-member
mia_zlib     mean NLL / len(zlib.compress(text.encode("utf-8")))        non-member
mia_mink_K   -mean of the lowest max(1, floor(k L)) of l_t               non-member
mia_minkpp_K mean of the lowest max(1, floor(k L)) of z_t,              member
             z_t = (l_t - mu_t) / sigma_t under the model's own p(.|x_<t)
mia_ref      NLL_target - NLL_reference                                 non-member
===========  =========================================================  ====================

**AUC orientation used everywhere here:** ``mia_auc`` = P(a random *member* looks more
member-like than a random *non-member*) = sklearn ``roc_auc_score`` with members labelled 1
and scores oriented "high = member". 1.0 = the forget set is still perfectly detected as
training data, 0.5 = indistinguishable from held-out text.

**PrivLeak** (MUSE) = (AUC_model - AUC_retain) / AUC_retain x 100 in MUSE's orientation, which
is the opposite one (MUSE labels the forget set 0 and scores ``-Min-40%``): AUC_MUSE =
1 - mia_auc. So a target model gives about -100, a good unlearner about 0, over-unlearning
positive. ``privleak`` takes two ``mia_auc`` values (ours) and converts.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import torch

from obliviate.data.encode import Encoded
from obliviate.metrics.base import MetricResult, mean
from obliviate.metrics.likelihood import TokenLogProbs, token_logprobs
from obliviate.metrics.memorization import Region

HIGH_MEANS_MEMBER = {"mia_loss": False, "mia_zlib": False, "mia_mink": False, "mia_minkpp": True, "mia_ref": False}
# MUSE's hard-coded retrained-model AUCs for forget vs holdout, Min-40%, in MUSE's orientation.
MUSE_RETAIN_AUC = {"news": 0.4772, "books": 0.5393}


def _lowest_count(n: int, k: float, guard: bool) -> int:
    if not 0 < k <= 1:
        raise ValueError(f"k must be in (0, 1], got {k}")
    count = math.floor(k * n)
    return max(1, count) if guard else count


# --------------------------------------------------------------------------- per-sample scores

def loss_score(t: TokenLogProbs) -> float:
    return t.mean_nll


def zlib_score(t: TokenLogProbs, text: str) -> float:
    return t.mean_nll / len(zlib.compress(text.encode("utf-8")))


def min_k_score(t: TokenLogProbs, k: float = 0.2, *, guard: bool = True) -> float:
    """Min-K% (Shi et al.): minus the mean of the lowest k-fraction of token log-probs.
    ``guard`` (open-unlearning, mimir) keeps at least one token; MUSE/RWKU do not (NaN)."""
    count = _lowest_count(len(t.logprobs), k, guard)
    if count == 0:
        return float("nan")
    return -float(torch.topk(t.logprobs, count, largest=False).values.mean())


def min_k_plus_plus_score(t: TokenLogProbs, k: float = 0.2, *, guard: bool = True, min_var: float = 1e-6) -> float:
    """Min-K%++ (Zhang et al. 2024): mean of the lowest k-fraction of z_t (high = member).
    sigma^2 is clamped at ``min_var`` (as open-unlearning) so a one-hot prediction is finite."""
    if t.mu is None or t.sigma is None:
        raise ValueError("Min-K%++ needs token_logprobs(..., distribution_stats=True)")
    z = (t.logprobs - t.mu) / t.sigma.square().clamp(min=min_var).sqrt()
    count = _lowest_count(len(z), k, guard)
    if count == 0:
        return float("nan")
    return float(torch.topk(z, count, largest=False).values.mean())


def _k_tag(k: float) -> str:
    return f"{round(k * 100):d}"


def mia_scores(model, examples: Sequence[Encoded], texts: Sequence[str] | None = None, *,
               attacks: Sequence[str] = ("loss", "zlib", "mink", "minkpp"), k: float = 0.2,
               reference_model=None, region: Region = "all", batch_size: int = 8) -> dict[str, MetricResult]:
    """Per-sample scores of each attack (names ``mia_loss``, ``mia_zlib``, ``mia_mink_20``,
    ``mia_minkpp_20``, ``mia_ref``). ``texts`` (for zlib) defaults to nothing -> zlib skipped.
    ``region="all"`` scores the whole text (MUSE/open-unlearning on raw text); use
    ``"completion"`` to score only answers of QA records."""
    examples = list(examples)
    need_stats = "minkpp" in attacks
    scores = token_logprobs(model, examples, region=region, batch_size=batch_size, distribution_stats=need_stats)
    out: dict[str, MetricResult] = {}

    def result(name: str, values: list[float], **extra) -> MetricResult:
        family = name.rsplit("_", 1)[0] if name.startswith(("mia_mink", "mia_minkpp")) else name
        details = {"high_means_member": HIGH_MEANS_MEMBER[family], "region": region, **extra}
        return MetricResult(name, mean(values), values, details)

    for attack in attacks:
        if attack == "loss":
            out["mia_loss"] = result("mia_loss", [loss_score(s) for s in scores])
        elif attack == "zlib":
            if texts is None:
                continue
            out["mia_zlib"] = result("mia_zlib", [zlib_score(s, t) for s, t in zip(scores, texts)])
        elif attack == "mink":
            out[f"mia_mink_{_k_tag(k)}"] = result(f"mia_mink_{_k_tag(k)}", [min_k_score(s, k) for s in scores], k=k)
        elif attack == "minkpp":
            out[f"mia_minkpp_{_k_tag(k)}"] = result(f"mia_minkpp_{_k_tag(k)}",
                                                    [min_k_plus_plus_score(s, k) for s in scores], k=k)
        elif attack == "ref":
            if reference_model is None:
                raise ValueError("the reference attack needs reference_model")
            ref = token_logprobs(reference_model, examples, region=region, batch_size=batch_size)
            out["mia_ref"] = result("mia_ref", [s.mean_nll - r.mean_nll for s, r in zip(scores, ref)])
        else:
            raise ValueError(f"unknown attack {attack!r}; choose from loss, zlib, mink, minkpp, ref")
    return out


# --------------------------------------------------------------------------- AUC and PrivLeak

def mia_auc(member_scores: Sequence[float], nonmember_scores: Sequence[float], *,
            high_means_member: bool) -> MetricResult:
    """ROC AUC of separating members from non-members (orientation: see the module docstring)."""
    from sklearn.metrics import roc_auc_score

    if not len(member_scores) or not len(nonmember_scores):
        raise ValueError("AUC needs at least one member and one non-member score")
    labels = [1] * len(member_scores) + [0] * len(nonmember_scores)
    sign = 1.0 if high_means_member else -1.0
    scores = [sign * float(s) for s in [*member_scores, *nonmember_scores]]
    auc = float(roc_auc_score(labels, scores))
    return MetricResult("mia_auc", auc, [],
                        {"orientation": "P(member scored more member-like than non-member); 1 = members detected",
                         "positive_class": "member", "n_member": len(member_scores),
                         "n_nonmember": len(nonmember_scores)})


def privleak(model_auc: float, retain_auc: float) -> MetricResult:
    """MUSE PrivLeak from two ``mia_auc`` values (ours: members = forget set, positive class).
    Both are converted to MUSE's orientation (1 - AUC) before the relative difference."""
    muse_model, muse_retain = 1.0 - model_auc, 1.0 - retain_auc
    if muse_retain == 0:
        raise ValueError("the retain model's AUC is 1 (MUSE orientation 0): PrivLeak is undefined")
    value = (muse_model - muse_retain) / muse_retain * 100.0
    return MetricResult("privleak", value, [],
                        {"auc_orientation": "MUSE: 1 - mia_auc", "auc_model_muse": muse_model,
                         "auc_retain_muse": muse_retain,
                         "reading": "-100 = like the target model, 0 = like retrain, >0 = over-unlearning"})
