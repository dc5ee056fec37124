"""Memorization and utility metrics: pure, batched functions returning ``MetricResult``.

Import from here; the submodules are:

* ``memorization`` -- MA (one forward pass) and EL_n (one batched greedy loop), thresholds
* ``generation``   -- ``generate_completions`` (greedy/beam) and exact extraction
* ``text``         -- ICU's BLEU, sacrebleu, BERTScore, ROUGE-L, token entropy
* ``likelihood``   -- per-token log-probs (the basis of TOFU, MIA and perplexity)
* ``perplexity``   -- sliding-window and ICU perplexity
* ``tofu``         -- TOFU probability, truth ratio, forget quality, model utility
* ``mia``          -- LOSS / zlib / Min-K% / Min-K%++ / reference attacks, AUC, PrivLeak
* ``normalize``    -- the ICU paper's s_z and s_m
* ``reference_loops`` -- the slow per-position MA/EL loops the fast ones are tested against
"""

from __future__ import annotations

from obliviate.metrics.base import MetricResult
from obliviate.metrics.generation import (
    Generation,
    exact_extraction,
    exact_extraction_rate,
    generate_completions,
)
from obliviate.metrics.memorization import (
    ICU_THRESHOLDS,
    KUMPR_THRESHOLDS_125M,
    ForgetThresholds,
    calibrate_thresholds,
    extraction_likelihood,
    memorization_accuracy,
    ngram_overlap,
)
from obliviate.metrics.normalize import normalized_scores
from obliviate.metrics.perplexity import perplexity
from obliviate.metrics.text import (
    BertScorer,
    bleu_icu,
    get_bert_scorer,
    rouge_l,
    sacrebleu_sentence,
    token_entropy,
)

__all__ = [
    "ICU_THRESHOLDS",
    "KUMPR_THRESHOLDS_125M",
    "BertScorer",
    "ForgetThresholds",
    "Generation",
    "MetricResult",
    "bleu_icu",
    "calibrate_thresholds",
    "exact_extraction",
    "exact_extraction_rate",
    "extraction_likelihood",
    "generate_completions",
    "get_bert_scorer",
    "memorization_accuracy",
    "ngram_overlap",
    "normalized_scores",
    "perplexity",
    "rouge_l",
    "sacrebleu_sentence",
    "token_entropy",
]
