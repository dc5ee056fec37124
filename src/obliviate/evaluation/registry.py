"""Every metric obliviate reports, declared ONCE: its direction, its aggregation and what it needs.

In the spirit of lm-evaluation-harness's metric registry. A reported number is keyed
``<group>/<metric>`` (``forget/el_10``, ``retain/rougeL_recall``); whole-model numbers have no
group (``forget_quality``, ``model_utility``). The direction of a key follows from two facts
declared here:

* the metric's **role**: ``memorization`` (how much the model reproduces the data: lower is
  better on a forget group, higher on a group the model must keep), ``utility`` (higher is
  better anywhere), ``cost`` (lower is better anywhere: perplexity) or ``none`` (a raw score
  with no better side, e.g. an MIA score);
* the group's **role**: forget groups (``forget``, MUSE's ``verbmem_f``, ...) and keep groups
  (``retain``, ``world_facts``, ...). A memorization metric on a group of neither kind (a bare
  audit, ``holdout``) is read as memorization (lower is better).

A few qualified keys whose meaning is not "metric on a group" (``forget/truth_ratio``'s ideal is
the retain model's value; RWKU's ``mia_fm/loss``) are declared as exact keys. A benchmark that
computes keys at run time (lm-eval tasks) stores their directions in its ``eval.json``; readers
pass them as ``declared=`` and the registry itself is never changed while reading files.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Role = Literal["memorization", "utility", "cost", "none"]
# What a metric is computed from (evaluate() computes each once per group and shares it).
Need = Literal["forward", "logprobs", "decode", "greedy", "samples", "tofu", "numbers"]
Aggregation = Literal["mean", "token_mean", "harmonic_mean", "fraction", "ks_pvalue", "auc", "max"]

FORGET_GROUPS = ("forget", "verbmem_f", "knowmem_f", "forget_fb", "forget_qa", "forget_aa", "forget_all")
KEEP_GROUPS = ("retain", "real_authors", "world_facts", "knowmem_r", "neighbor_fb", "neighbor_qa", "neighbor_all",
               "wiki", "run_retain")


@dataclass(frozen=True)
class MetricSpec:
    name: str  # "ma", "el_*" (a family of parametrised names), "rougeL_recall", ...
    role: Role
    description: str
    needs: tuple[Need, ...] = ()
    aggregation: Aggregation = "mean"

    @property
    def higher_is_better(self) -> bool | None:
        """Direction of the bare name (a memorization metric reads as "lower is better")."""
        return {"memorization": False, "utility": True, "cost": False, "none": None}[self.role]


@dataclass(frozen=True)
class KeyInfo:  # an exact qualified key with its own direction
    name: str
    higher_is_better: bool | None
    description: str


_METRICS: dict[str, MetricSpec] = {}
_KEYS: dict[str, KeyInfo] = {}
ALIASES = {"el": "el_10", "bertscore": "bertscore_f1", "rouge": "rougeL_recall", "prob": "tofu_prob"}


def register(name: str, role: Role, description: str, *, needs: tuple[Need, ...] = (),
             aggregation: Aggregation = "mean") -> MetricSpec:
    """Declare a metric once. Declaring the same name again with another role is an error."""
    spec = MetricSpec(name, role, description, needs, aggregation)
    old = _METRICS.get(name)
    if old is not None and old.role != role:
        raise ValueError(f"metric {name!r} already registered as {old.role}")
    _METRICS[name] = spec
    return spec


def register_key(key: str, higher_is_better: bool | None, description: str) -> None:
    """Declare a qualified key whose direction does not follow from its metric and group."""
    old = _KEYS.get(key)
    if old is not None and old.higher_is_better != higher_is_better:
        raise ValueError(f"key {key!r} already registered with higher_is_better={old.higher_is_better}")
    _KEYS[key] = KeyInfo(key, higher_is_better, description)


def metric_spec(name: str) -> MetricSpec:
    """The spec of a bare metric name; parametrised names resolve by family (``el_10`` -> ``el_*``)."""
    name = ALIASES.get(name, name)
    if name in _METRICS:
        return _METRICS[name]
    for key in sorted((k for k in _METRICS if k.endswith("*")), key=len, reverse=True):  # longest family first
        if name.startswith(key[:-1]) and re.fullmatch(r"[\w.%@-]*", name[len(key) - 1:]):
            return _METRICS[key]
    raise KeyError(f"unknown metric {name!r}; registered: {', '.join(sorted(_METRICS))}")


def key_info(key: str) -> KeyInfo:
    """Direction and description of a reported key (``forget/el_10``, ``ma``, ``model_utility``)."""
    if key in _KEYS:
        return _KEYS[key]
    group, _, metric = key.rpartition("/")
    spec = metric_spec(metric)
    up = spec.higher_is_better
    if spec.role == "memorization" and group.split("/")[-1] in KEEP_GROUPS:
        up, what = True, "kept knowledge"
    else:
        what = {False: "lower is better", True: "higher is better", None: "no better side"}[up]
    return KeyInfo(key, up, f"{group}: {spec.description} ({what})" if group else spec.description)


def direction(key: str, declared: Mapping[str, bool | None] | None = None) -> bool | None:
    """True if higher is better, False if lower is better, None if neither or unknown.

    ``declared`` holds directions a file carries for keys the registry does not know (lm-eval
    tasks); the registry's own word wins where it has one.
    """
    try:
        return key_info(key).higher_is_better
    except KeyError:
        return (declared or {}).get(key)


def describe(key: str) -> str:
    try:
        return key_info(key).description
    except KeyError:
        return ""


def arrow(key: str, declared: Mapping[str, bool | None] | None = None) -> str:
    return {True: "↑", False: "↓", None: ""}[direction(key, declared)]


def registered_metrics() -> dict[str, MetricSpec]:
    return dict(_METRICS)


# --------------------------------------------------------------------------- declarations
M: Role = "memorization"
register("ma", M, "memorization accuracy: teacher-forced greedy next-token accuracy", needs=("forward",))
register("el_*", M, "extraction likelihood EL_n: n-gram overlap of greedy continuations from every prefix",
         needs=("decode",))
register("exact", M, "fraction of samples whose greedy continuation equals the target", needs=("greedy",))
register("exact_beam*", M, "exact extraction with beam search", needs=("greedy",))
register("bleu_icu", M, "NLTK sentence BLEU-4, unsmoothed, lowercased words (ICU)", needs=("greedy",))
register("bleu", M, "sacrebleu sentence BLEU (0-100)", needs=("greedy",))
register("bertscore_f1", M, "BERTScore F1 of generation vs target", needs=("greedy",))
register("rougeL_recall", M, "ROUGE-L recall of the greedy generation vs the target (rouge-score)", needs=("greedy",))
register("rougeL_f1", M, "ROUGE-L F1 of the greedy generation vs the target (rouge-score)", needs=("greedy",))
register("rougeL_*", M, "ROUGE-L of generation vs target (rouge-score)", needs=("greedy",))
register("tofu_prob", M, "length-normalised answer probability exp(-mean NLL)", needs=("logprobs",))
register("tofu_prob_options", M, "P~(true)/(P~(true)+sum P~(wrong)) (real authors / world facts)", needs=("tofu",))
register("forgotten", "utility", "fraction of samples below both forgetting thresholds (MA and EL)",
         aggregation="fraction", needs=("forward", "decode"))
register("entropy", "utility", "base-2 entropy of generated token ids (ICU; fluency)", needs=("greedy",))
register("ppl", "cost", "perplexity: exp of the token-weighted mean NLL of the completions",
         needs=("logprobs",), aggregation="token_mean")
register("ppl_icu", "cost", "perplexity, ICU's non-overlapping windows")
register("loss", "none", "mean token NLL of the completion", needs=("logprobs",))
register("nll", "cost", "token-weighted mean NLL of the completions", needs=("logprobs",), aggregation="token_mean")
register("truth_ratio", "none", "TOFU truth ratio (aggregation depends on the split)", needs=("tofu",))
register("truth_ratio_forget", "none", "mean(min(R, 1/R)) on the forget split", needs=("tofu",))
register("truth_ratio_retain", "utility", "mean(max(0, 1 - R_truth)) on retain/RA/WF", needs=("tofu",))
register("forget_quality", "utility", "KS-test p-value vs a retain model's truth ratios", aggregation="ks_pvalue")
register("model_utility", "utility", "harmonic mean of the nine TOFU utility numbers", aggregation="harmonic_mean")
register("world_utility", "utility", "harmonic mean of {prob, ROUGE, truth ratio} x {retain, world facts}",
         aggregation="harmonic_mean")
register("blocked", "none", "fraction of answers an output filter blocked", aggregation="fraction")
# Membership inference (per-sample raw scores have no better side; the AUC does).
register("mia_loss", "none", "LOSS attack score (mean NLL; high = non-member)", needs=("logprobs",))
register("mia_zlib", "none", "zlib attack score (NLL / zlib bytes)", needs=("logprobs",))
register("mia_mink_*", "none", "Min-K% score (high = non-member)", needs=("logprobs",))
register("mia_minkpp_*", "none", "Min-K%++ score (high = member)", needs=("logprobs",))
register("mia_ref", "none", "reference attack NLL_target - NLL_ref", needs=("logprobs",))
register("mia_auc", M, "AUC of telling forget from held-out (1 = forget set still detected as members)",
         aggregation="auc")
register("privleak", "none", "MUSE PrivLeak, % relative to the retain model's AUC (0 = like retain)")
# Sampling leakage (attacks): n samples per prompt, leak = score >= the stated threshold.
register("leak@*", M, "probability that at least one of k samples leaks (unbiased estimator)", needs=("samples",))
register("max_rougeL_recall", M, "worst (highest) ROUGE-L recall over the n samples", needs=("samples",),
         aggregation="max")
register("max_ngram_overlap", M, "worst (highest) n-gram overlap over the n samples", needs=("samples",),
         aggregation="max")
register("ngram_overlap", M, "fraction of the target's n-grams the generation reproduces", needs=("greedy",))
# Utility benchmarks and comparison scores.
register("acc", "utility", "accuracy")
register("acc_norm", "utility", "length-normalised accuracy")
register("f1", "utility", "F1")
register("gpt", "utility", "LLM-judge score")
register("s_z", "utility", "sum of z-scored metrics, signs by direction (ICU eq. 11)")
register("s_m", "utility", "sum of min-max scaled metrics, signs by direction")
# Robustness (attacks): recovery = (attacked - unlearned) / (original - unlearned); held = 1, recovered = 0.
register("recovery", "cost", "(attacked - unlearned) / (original - unlearned): 0 = the attack changed nothing, "
         "1 = back to the original")
register("held", "utility", "1 if the forgetting survived the attack (the calibrated rule), 0 if recovered",
         aggregation="fraction")

for _group in KEEP_GROUPS:
    register_key(f"{_group}/truth_ratio", True, f"{_group}: TOFU truth ratio mean(max(0, 1 - R_truth))")
register_key("forget/truth_ratio", None, "forget: TOFU truth ratio mean(min(R, 1/R)); ideal = the retain model's")
register_key("holdout/tofu_prob", None, "holdout: answer probability (never seen)")
register_key("forget/mia_auc", None,
             "Min-K% AUC forget vs holdout (1 = forget set detected as members; ideal = the retain model's)")
register_key("forget/privleak", None, "MUSE PrivLeak vs the retain model (0 = like retrain, -100 = like target)")
register_key("mia_fm/loss", True, "RWKU: mean NLL of forget-member texts (rises when the target is unlearned)")
register_key("mia_rm/loss", False, "RWKU: mean NLL of retain-member texts (should stay as before)")
register_key("utility_flu/entropy", True, "RWKU fluency: weighted 2/3-gram word entropy of instruction answers")
register_key("run/retain_ppl", False, "the run's retain set: perplexity")
register_key("run/retain_nll", False, "the run's retain set: mean NLL")
