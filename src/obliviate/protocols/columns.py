"""The names of the numbers benchmarks report, each declared once with its direction.

A benchmark reports ``<split>/<metric>`` keys (``forget/el_10``, ``retain/rougeL_recall``) plus a
few whole-model numbers (``forget_quality``, ``model_utility``). The same metric can improve in
opposite directions on different splits: ROUGE-L against the forget answers should go *down*,
against the retain answers it should stay *up*. So the qualified names are registered here, in
the metric registry (``obliviate.metrics.registry``) that ``compare``, ``s_z``/``s_m`` and the
report arrows read; nothing else decides a direction.

Keys a benchmark computes at run time (lm-eval tasks) carry their own direction in the
``eval.json`` they are written to, and ``compare`` registers them when it reads the file.
"""

from __future__ import annotations

from obliviate.metrics.registry import metric_info, register_metric

# Splits on which a model should *not* know the data (memorization measures: lower is better).
FORGET_SPLITS = ("forget", "verbmem_f", "knowmem_f", "forget_fb", "forget_qa", "forget_aa", "forget_all")
# Splits on which the model should keep what it knows (the same measures are utility: higher is better).
UTILITY_SPLITS = ("retain", "real_authors", "world_facts", "knowmem_r", "neighbor_fb", "neighbor_qa", "neighbor_all")

_MEMORIZATION = {  # metric -> description (lower = less memorized)
    "ma": "memorization accuracy (teacher-forced greedy next-token accuracy)",
    "el_*": "extraction likelihood EL_n",
    "exact": "greedy continuation equals the reference exactly",
    "bleu_icu": "ICU's BLEU-4 of the generation vs the reference",
    "bertscore_f1": "BERTScore F1 of the generation vs the reference",
    "rougeL_*": "ROUGE-L of the generation vs the reference",
    "tofu_prob": "length-normalised probability of the answer",
    "tofu_prob_options": "P~(true) / (P~(true) + sum P~(wrong))",
}


def _register() -> None:
    for split in FORGET_SPLITS:
        for metric, what in _MEMORIZATION.items():
            register_metric(f"{split}/{metric}", higher_is_better=False, description=f"{split}: {what} (lower = forgotten)")
        register_metric(f"{split}/entropy", higher_is_better=True,
                        description=f"{split}: base-2 entropy of the generated token ids (ICU; fluency)")
        register_metric(f"{split}/truth_ratio", higher_is_better=None,
                        description=f"{split}: TOFU truth ratio mean(min(R, 1/R)); ideal = the retain model's")
        register_metric(f"{split}/forgotten", higher_is_better=True,
                        description=f"{split}: fraction of samples below both forgetting thresholds (MA and EL)")
    for split in UTILITY_SPLITS:
        for metric, what in _MEMORIZATION.items():
            register_metric(f"{split}/{metric}", higher_is_better=True, description=f"{split}: {what} (kept knowledge)")
        register_metric(f"{split}/truth_ratio", higher_is_better=True,
                        description=f"{split}: TOFU truth ratio mean(max(0, 1 - R_truth))")
        register_metric(f"{split}/ppl", higher_is_better=False, description=f"{split}: perplexity of the answers")
        register_metric(f"{split}/entropy", higher_is_better=True, description=f"{split}: entropy of generated ids")
    # A retrain-free ideal for membership inference is the retain model's value: no direction.
    register_metric("holdout/tofu_prob", higher_is_better=None, description="holdout: answer probability (never seen)")
    register_metric("wiki/ppl", higher_is_better=False, description="perplexity of Wikipedia lead paragraphs")
    register_metric("forget/mia_auc", higher_is_better=None,
                    description="Min-K% AUC forget vs holdout (1 = forget set detected as members; ideal = retain model)")
    register_metric("forget/privleak", higher_is_better=None,
                    description="MUSE PrivLeak vs the retain model (0 = like retrain, -100 = like target)")
    register_metric("world_utility", higher_is_better=True,
                    description="harmonic mean of {prob, ROUGE, truth ratio} x {retain, world facts} (6 numbers)")
    register_metric("mia_fm/loss", higher_is_better=True,
                    description="RWKU: mean NLL of forget-member texts (rises when the target is unlearned)")
    register_metric("mia_rm/loss", higher_is_better=False,
                    description="RWKU: mean NLL of retain-member texts (should stay as before)")
    register_metric("utility_flu/entropy", higher_is_better=True,
                    description="RWKU fluency: weighted 2/3-gram word entropy of instruction answers")
    # What a run folder of `obliviate unlearn` measured itself (its forget set, its retain set).
    register_metric("run/ma", higher_is_better=False, description="the run's forget set: mean MA after unlearning")
    register_metric("run/el_*", higher_is_better=False, description="the run's forget set: mean EL_n after unlearning")
    register_metric("run/retain_ppl", higher_is_better=False, description="the run's retain set: perplexity")
    register_metric("run/retain_nll", higher_is_better=False, description="the run's retain set: mean NLL")
    # Normalised scores of a comparison (ICU eq. 11).
    register_metric("s_z", higher_is_better=True, description="sum of z-scored metrics, signs by direction (ICU eq. 11)")
    register_metric("s_m", higher_is_better=True, description="sum of min-max scaled metrics, signs by direction")


def column_direction(key: str) -> bool | None:
    """True (higher is better), False (lower is better) or None (no side, or unknown key)."""
    try:
        return metric_info(key).higher_is_better
    except KeyError:
        return None


def column_description(key: str) -> str:
    try:
        return metric_info(key).description
    except KeyError:
        return ""


def arrow(key: str) -> str:
    return {True: "↑", False: "↓", None: ""}[column_direction(key)]


_register()
