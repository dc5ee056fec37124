"""TOFU's metrics (Maini et al. 2024), as the legacy ``aggregate_eval_stat.py`` computes them.

Per item, L(s) = mean token NLL of answer s given the question (the answer's eos counts) and
P~(s) = exp(-L(s)) = P(s | q)^(1/|s|).

* Probability: forget/retain -> mean P~(answer); real authors / world facts -> mean of
  P~(true) / (P~(true) + sum P~(wrong)) (length-normalised, as the code does; issue #26).
* ROUGE: rougeL recall (stemmer) of the greedy answer against the true answer.
* Truth ratio: per item the log's ratio R = exp(mean_j L(perturbed_j) - L(paraphrased)),
  i.e. P~(paraphrased) over the GEOMETRIC mean of P~(perturbed); R_truth = 1/R is the paper's
  orientation. Reported: forget -> mean(min(R, 1/R)); retain/RA/WF -> mean(max(0, 1 - R_truth)).
  ``mean="arithmetic"`` gives the paper's definition R_truth = mean_j P~(pert_j) / P~(para).
* Forget quality: ``scipy.stats.ks_2samp`` p-value between the per-item R of the evaluated
  model and of a retain model on the forget split (invariant to R vs 1/R).
* Model utility: ``scipy.stats.hmean`` of {prob, ROUGE, truth ratio} x {retain, RA, WF}.

The pure aggregations work on a *log*: a mapping with per-item lists (or TOFU's index-keyed
dicts) under TOFU's field names ``avg_gt_loss``, ``avg_paraphrased_loss``,
``average_perturb_loss``, ``rougeL_recall``; ``evaluate_tofu_split`` produces such a log from
a model, and ``load_tofu_logs`` reads saved ones (TOFU's ``eval_log_aggregated.json`` or ours).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from obliviate.data.encode import DEFAULT_TEMPLATE, PromptTemplate, encode_record
from obliviate.data.records import QARecord
from obliviate.errors import DataError, ObliviateError
from obliviate.metrics.base import MetricResult, mean

SplitKind = Literal["forget", "retain", "real_authors", "world_facts"]
TruthMean = Literal["geometric", "arithmetic"]

# TOFU's file names for the four evaluation splits in ``eval_log_aggregated.json``.
LEGACY_FILES = {"retain": "eval_log.json", "forget": "eval_log_forget.json",
                "real_authors": "eval_real_author_wo_options.json", "world_facts": "eval_real_world_wo_options.json"}
UTILITY_SPLITS = ("retain", "real_authors", "world_facts")


def _values(log: Mapping[str, Any], field: str, where: str = "<log>") -> list:
    """A per-item field as a list; TOFU stores {"0": v0, "1": v1, ...} dicts in index order."""
    if field not in log:
        raise DataError(where, f"missing field (have {', '.join(sorted(log))})", field=field)
    value = log[field]
    if isinstance(value, Mapping):
        return [value[k] for k in sorted(value, key=lambda s: int(s))]
    return list(value)


# --------------------------------------------------------------------------- pure per-item formulas

def answer_probability(avg_losses: Sequence[float]) -> MetricResult:
    """Mean length-normalised probability exp(-L) (forget / retain). Name ``"tofu_prob"``."""
    per_sample = [math.exp(-x) for x in avg_losses]
    return MetricResult("tofu_prob", mean(per_sample), per_sample, {"form": "exp(-mean NLL)"})


def option_probability(true_losses: Sequence[float], wrong_losses: Sequence[Sequence[float]]) -> MetricResult:
    """Mean P~(true) / (P~(true) + sum_j P~(wrong_j)) (real authors / world facts)."""
    if len(true_losses) != len(wrong_losses):
        raise ValueError("one list of wrong-answer losses per item is needed")
    per_sample = []
    for t, wrong in zip(true_losses, wrong_losses):
        pt = math.exp(-t)
        per_sample.append(pt / (pt + math.fsum(math.exp(-w) for w in wrong)))
    return MetricResult("tofu_prob_options", mean(per_sample), per_sample,
                        {"form": "P~(true)/(P~(true)+sum P~(wrong))"})


def truth_ratios(paraphrased_losses: Sequence[float], perturbed_losses: Sequence[Sequence[float]], *,
                 mean_kind: TruthMean = "geometric") -> list[float]:
    """Per-item R (TOFU log orientation: P~(paraphrased) / mean P~(perturbed); R_truth = 1/R)."""
    if len(paraphrased_losses) != len(perturbed_losses):
        raise ValueError("one list of perturbed losses per item is needed")
    out = []
    for para, pert in zip(paraphrased_losses, perturbed_losses):
        if not len(pert):
            raise ValueError("an item has no perturbed answers; the truth ratio needs at least one")
        if mean_kind == "geometric":
            out.append(math.exp(math.fsum(pert) / len(pert) - para))
        elif mean_kind == "arithmetic":
            out.append(math.exp(-para) / (math.fsum(math.exp(-p) for p in pert) / len(pert)))
        else:
            raise ValueError(f"mean_kind must be 'geometric' or 'arithmetic', got {mean_kind!r}")
    return out


def truth_ratio(paraphrased_losses: Sequence[float], perturbed_losses: Sequence[Sequence[float]], *,
                split: Literal["forget", "retain"] = "retain", mean_kind: TruthMean = "geometric") -> MetricResult:
    """The reported truth ratio. ``split="forget"``: mean(min(R, 1/R)) (name
    ``truth_ratio_forget``); ``"retain"`` (also RA/WF): mean(max(0, 1 - R_truth)) (name
    ``truth_ratio_retain``). ``details["ratio"]`` keeps the per-item R for forget quality."""
    ratios = truth_ratios(paraphrased_losses, perturbed_losses, mean_kind=mean_kind)
    if split == "forget":
        per_sample = [min(r, 1 / r) for r in ratios]
    elif split == "retain":
        per_sample = [max(0.0, 1 - 1 / r) for r in ratios]
    else:
        raise ValueError(f"split must be 'forget' or 'retain', got {split!r}")
    return MetricResult(f"truth_ratio_{split}", mean(per_sample), per_sample,
                        {"ratio": ratios, "mean": mean_kind,
                         "aggregation": "mean(min(R,1/R))" if split == "forget" else "mean(max(0,1-R_truth))"})


def forget_quality(ratios: Sequence[float], retain_ratios: Sequence[float]) -> MetricResult:
    """Two-sample KS test of per-item truth ratios vs the retain model's; value = p-value."""
    from scipy.stats import ks_2samp

    if not len(ratios) or not len(retain_ratios):
        raise ValueError("forget quality needs per-item truth ratios of both models")
    res = ks_2samp(np.asarray(ratios, dtype=float), np.asarray(retain_ratios, dtype=float))
    return MetricResult("forget_quality", float(res.pvalue), [],
                        {"ks_statistic": float(res.statistic), "n": len(ratios), "n_retain": len(retain_ratios),
                         "test": "scipy.stats.ks_2samp (two-sided)"})


def model_utility(values: Mapping[str, float] | Sequence[float]) -> MetricResult:
    """Harmonic mean of the nine numbers {prob, rouge, truth ratio} x {retain, RA, WF}."""
    from scipy.stats import hmean

    nums = list(values.values()) if isinstance(values, Mapping) else list(values)
    if len(nums) != 9:
        raise ValueError(f"model utility is the harmonic mean of 9 numbers, got {len(nums)}")
    return MetricResult("model_utility", float(hmean(nums)), [],
                        {"inputs": dict(values) if isinstance(values, Mapping) else nums})


# --------------------------------------------------------------------------- logs -> split scores

def log_ratios(log: Mapping[str, Any], *, mean_kind: TruthMean = "geometric", where: str = "<log>") -> list[float]:
    """Per-item R from a log: from the losses when present, else from TOFU's own per-item
    ``truth_ratio`` field, which holds R_truth = exp(L(para) - mean_j L(pert_j)) = 1/R."""
    if "avg_paraphrased_loss" in log and "average_perturb_loss" in log:
        para = [float(x) for x in _values(log, "avg_paraphrased_loss", where)]
        pert = [[float(y) for y in x] for x in _values(log, "average_perturb_loss", where)]
        return truth_ratios(para, pert, mean_kind=mean_kind)
    if "truth_ratio" in log and mean_kind == "geometric":
        return [1.0 / float(x) for x in _values(log, "truth_ratio", where)]
    raise DataError(where, "needs avg_paraphrased_loss + average_perturb_loss (or TOFU's truth_ratio field)",
                    field="truth_ratio")


def split_scores(log: Mapping[str, Any], split: SplitKind, *, mean_kind: TruthMean = "geometric",
                 where: str = "<log>") -> dict[str, MetricResult]:
    """(probability, ROUGE, truth ratio) of one split from its per-item log, keyed by their
    registered names (``tofu_prob`` on forget/retain, ``tofu_prob_options`` on RA/WF,
    ``rougeL_recall``, ``truth_ratio``); a number whose fields the log lacks is left out (a
    retain model's file may hold only forget ratios)."""
    out: dict[str, MetricResult] = {}
    if "avg_gt_loss" in log:
        gt = [float(x) for x in _values(log, "avg_gt_loss", where)]
        if split in ("forget", "retain"):
            out["tofu_prob"] = answer_probability(gt)
        elif "average_perturb_loss" in log:
            pert = [[float(y) for y in x] for x in _values(log, "average_perturb_loss", where)]
            out["tofu_prob_options"] = option_probability(gt, pert)
    if "rougeL_recall" in log:
        rouge = [float(x) for x in _values(log, "rougeL_recall", where)]
        out["rougeL_recall"] = MetricResult("rougeL_recall", mean(rouge), rouge, {"stemmer": True})
    try:
        ratios = log_ratios(log, mean_kind=mean_kind, where=where)
    except DataError:
        return out
    kind = "forget" if split == "forget" else "retain"
    per_sample = [min(r, 1 / r) for r in ratios] if kind == "forget" else [max(0.0, 1 - 1 / r) for r in ratios]
    out["truth_ratio"] = MetricResult(f"truth_ratio_{kind}", mean(per_sample), per_sample,
                                      {"ratio": ratios, "mean": mean_kind})
    return out


def tofu_summary(logs: Mapping[str, Mapping[str, Any]], retain_logs: Mapping[str, Mapping[str, Any]] | None = None,
                 *, mean_kind: TruthMean = "geometric") -> dict[str, Any]:
    """TOFU's table row from per-split logs ({"retain": log, "forget": log, "real_authors": ...}):
    every split's three numbers, model utility (if the nine utility numbers are there) and
    forget quality against ``retain_logs["forget"]`` (if given)."""
    out: dict[str, Any] = {}
    nine: dict[str, float] = {}
    for split, log in logs.items():
        scores = split_scores(log, split, mean_kind=mean_kind, where=f"log[{split}]")  # type: ignore[arg-type]
        for key, res in scores.items():
            out[f"{split}/{key}"] = res.value
            if split in UTILITY_SPLITS:
                nine[f"{split}/{key}"] = res.value
    if len(nine) == 9:
        out["model_utility"] = model_utility(nine).value
    if retain_logs is not None and "forget" in logs:
        if "forget" not in retain_logs:
            raise ObliviateError("retain model's results have no forget split: forget quality needs it")
        fq = forget_quality(log_ratios(logs["forget"]), log_ratios(retain_logs["forget"]))
        out["forget_quality"] = fq.value
        out["ks_statistic"] = fq.details["ks_statistic"]
    return out


def load_tofu_logs(path: str | Path) -> dict[str, dict[str, Any]]:
    """Per-split logs from a saved result file: TOFU's ``eval_log_aggregated.json`` (keys
    ``eval_log.json``, ``eval_log_forget.json``, ...) or a JSON with keys ``retain``,
    ``forget``, ``real_authors``, ``world_facts`` (``obliviate audit`` writes ``tofu_log.json``)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(path, "result file not found") from None
    except json.JSONDecodeError as e:
        raise DataError(path, f"not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict):
        raise DataError(path, "expected a JSON object with one entry per split")
    out = {}
    for split, legacy in LEGACY_FILES.items():
        if legacy in data:
            out[split] = data[legacy]
        elif split in data:
            out[split] = data[split]
    if not out:
        raise DataError(path, f"no TOFU split found (expected keys {sorted(LEGACY_FILES)} or {sorted(LEGACY_FILES.values())})")
    return out


def retain_truth_ratios(path: str | Path) -> list[float]:
    """Per-item forget-split truth ratios of a retain model, read from its saved result file."""
    logs = load_tofu_logs(path)
    if "forget" not in logs:
        raise DataError(path, "has no forget split; forget quality compares forget-split truth ratios")
    return log_ratios(logs["forget"], where=str(path))


# --------------------------------------------------------------------------- from a model

def evaluate_tofu_split(model, tokenizer, records: Sequence[QARecord], split: SplitKind, *,
                        template: PromptTemplate = DEFAULT_TEMPLATE, batch_size: int = 16,
                        max_new_tokens: int = 200, generate: bool = True) -> dict[str, list]:
    """Compute one split's per-item log (TOFU field names, lists in record order).

    The paraphrased answer is ``paraphrased_answer`` on forget/retain and the answer itself on
    RA/WF, as TOFU does. ROUGE uses greedy answers of up to ``max_new_tokens`` (stop at eos).
    """
    from obliviate.metrics.generation import generate_completions
    from obliviate.metrics.likelihood import completion_nll
    from obliviate.metrics.text import rouge_l

    records = list(records)
    if not records:
        return {"ids": [], "avg_gt_loss": [], "avg_paraphrased_loss": [], "average_perturb_loss": [], "rougeL_recall": []}
    for r in records:
        if not isinstance(r, QARecord):
            raise DataError("<records>", "TOFU metrics need QA records", record=r.id)
        if not r.perturbed_answers:
            raise DataError("<records>", "no perturbed answers (needed by truth ratio/probability)", record=r.id,
                            field="perturbed_answer")
        if split in ("forget", "retain") and r.paraphrased_answer is None:
            raise DataError("<records>", "no paraphrased answer (needed by truth ratio)", record=r.id,
                            field="paraphrased_answer")

    gt = [encode_record(r, tokenizer, template) for r in records]
    para_text = [r.paraphrased_answer if split in ("forget", "retain") else r.answer for r in records]
    para = [encode_record(r, tokenizer, template, answer=a) for r, a in zip(records, para_text)]
    flat_pert = [encode_record(r, tokenizer, template, answer=a) for r in records for a in r.perturbed_answers]
    losses = completion_nll(model, gt + para + flat_pert, batch_size=batch_size)
    n = len(records)
    gt_loss, para_loss, pert_flat = losses[:n], losses[n:2 * n], losses[2 * n:]
    pert_loss, pos = [], 0
    for r in records:
        pert_loss.append(pert_flat[pos:pos + len(r.perturbed_answers)])
        pos += len(r.perturbed_answers)
    log: dict[str, list] = {"ids": [r.id for r in records], "avg_gt_loss": gt_loss, "avg_paraphrased_loss": para_loss,
                            "average_perturb_loss": pert_loss}
    if generate:
        gens = generate_completions(model, tokenizer, gt, max_new_tokens=max_new_tokens, batch_size=batch_size)
        log["generated_text"] = [g.text for g in gens]
        log["rougeL_recall"] = rouge_l([g.text for g in gens], [r.answer for r in records], kind="recall").per_sample
    return log
