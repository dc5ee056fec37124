"""Every metric name is declared ONCE here, with the direction in which it improves.

``compare`` tables, the normalised scores s_z/s_m and report arrows read directions from here.
``higher_is_better`` is True (utility, e.g. accuracy), False (memorization, e.g. EL/MA) or None
(no better side, e.g. entropy is only a sanity check in some reports). Parametrised names such
as ``el_10`` or ``mink_20`` are resolved by their family prefix (``el_``, ``mink_``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class MetricInfo:
    name: str
    higher_is_better: bool | None
    description: str


_REGISTRY: dict[str, MetricInfo] = {}


def register_metric(name: str, *, higher_is_better: bool | None, description: str) -> None:
    """Declare a metric name and its direction. A family of parametrised names is registered
    with a trailing ``*`` (``"el_*"`` covers ``el_10``, ``el_5``)."""
    old = _REGISTRY.get(name)
    if old is not None and old.higher_is_better != higher_is_better:
        raise ValueError(f"metric {name!r} already registered with higher_is_better={old.higher_is_better}")
    _REGISTRY[name] = MetricInfo(name, higher_is_better, description)


def metric_info(name: str) -> MetricInfo:
    if name in _REGISTRY:
        return _REGISTRY[name]
    # Longest matching family first: "rougeL_recall" is its own entry, "el_10" -> "el_*".
    for key in sorted((k for k in _REGISTRY if k.endswith("*")), key=len, reverse=True):
        if name.startswith(key[:-1]) and re.fullmatch(r"[\w.%-]*", name[len(key) - 1:]):
            return _REGISTRY[key]
    raise KeyError(f"unknown metric {name!r}; registered: {', '.join(sorted(_REGISTRY))}")


def metric_direction(name: str) -> bool | None:
    """True if higher is better, False if lower is better, None if neither (handles ``el_10``)."""
    return metric_info(name).higher_is_better


def registered_metrics() -> dict[str, MetricInfo]:
    return dict(_REGISTRY)


# --------------------------------------------------------------------------- declarations
# Memorization: lower is better for an unlearned model on its forget set.
register_metric("ma", higher_is_better=False,
                description="memorization accuracy: teacher-forced greedy next-token accuracy")
register_metric("el_*", higher_is_better=False,
                description="extraction likelihood EL_n: n-gram overlap of greedy continuations from every prefix")
register_metric("exact", higher_is_better=False, description="fraction of samples whose greedy continuation equals the target")
register_metric("exact_beam*", higher_is_better=False, description="exact extraction with beam search")
register_metric("bleu_icu", higher_is_better=False, description="NLTK sentence BLEU-4, unsmoothed, lowercased words (ICU)")
register_metric("bleu", higher_is_better=False, description="sacrebleu sentence BLEU (0-100)")
register_metric("bertscore_f1", higher_is_better=False, description="BERTScore F1 of generation vs target")
register_metric("rougeL_*", higher_is_better=False, description="ROUGE-L of generation vs target (rouge-score)")
# Fluency / utility: higher is better.
register_metric("entropy", higher_is_better=True, description="base-2 entropy of generated token ids (ICU)")
register_metric("ppl", higher_is_better=False, description="perplexity (sliding windows)")
register_metric("ppl_icu", higher_is_better=False, description="perplexity, ICU's non-overlapping windows")
register_metric("loss", higher_is_better=None, description="mean token NLL of the completion")
# TOFU. On the forget split these are memorization measures; on retain/RA/WF they are utility.
register_metric("tofu_prob", higher_is_better=None, description="length-normalised answer probability exp(-mean NLL)")
register_metric("tofu_prob_options", higher_is_better=True,
                description="P~(true)/(P~(true)+sum P~(wrong)) (real authors / world facts)")
register_metric("truth_ratio", higher_is_better=None, description="TOFU truth ratio (aggregation in details)")
register_metric("truth_ratio_forget", higher_is_better=None, description="mean(min(R, 1/R)) on the forget split")
register_metric("truth_ratio_retain", higher_is_better=True, description="mean(max(0, 1 - R_truth)) on retain/RA/WF")
register_metric("forget_quality", higher_is_better=True, description="KS-test p-value vs a retain model's truth ratios")
register_metric("model_utility", higher_is_better=True, description="harmonic mean of the nine TOFU utility numbers")
# Membership inference scores (per-sample; direction of the raw score, see mia.py).
register_metric("mia_loss", higher_is_better=None, description="LOSS attack score (mean NLL; high = non-member)")
register_metric("mia_zlib", higher_is_better=None, description="zlib attack score (NLL / zlib bytes)")
register_metric("mia_mink_*", higher_is_better=None, description="Min-K% score (high = non-member)")
register_metric("mia_minkpp_*", higher_is_better=None, description="Min-K%++ score (high = member)")
register_metric("mia_ref", higher_is_better=None, description="reference attack NLL_target - NLL_ref")
register_metric("mia_auc", higher_is_better=False,
                description="AUC of telling forget from held-out (1 = forget set still detected as members)")
register_metric("privleak", higher_is_better=None,
                description="MUSE PrivLeak, % relative to the retain model's AUC (0 = like retain)")
# Utility benchmarks (used by compare tables; other modules compute them).
register_metric("acc", higher_is_better=True, description="accuracy")
register_metric("f1", higher_is_better=True, description="F1")
register_metric("gpt", higher_is_better=True, description="LLM-judge score")
register_metric("forgotten", higher_is_better=True, description="fraction of samples below both forgetting thresholds")
