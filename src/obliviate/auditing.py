"""``audit``: measure how much a model has memorized a set of records, per record and overall.

Used by ``obliviate audit``, by the engine's evaluation and by the demo. Records of each type
get the metrics that make sense for them:

* text (continuation) records: MA, EL_n, exact extraction, ICU's BLEU, BERTScore, ROUGE-L F1
  and the entropy of the generated tokens (generation = the target's length from the prefix);
* QA records: the TOFU answer probability, ROUGE-L recall of the greedy answer, MA and EL_n on
  the answer tokens, and the truth ratio when the records carry perturbed answers.

``AuditResult.rows`` holds one dict per record (in input order) with every per-sample value and
the generated text; ``summary`` holds the aggregates, the thresholds verdict and the metadata
(BERTScore backbone, positions, EL n) needed to read the numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from obliviate.data.encode import DEFAULT_TEMPLATE, Encoded, PromptTemplate, encode_records
from obliviate.data.records import QARecord, Record, TextRecord
from obliviate.errors import ObliviateError
from obliviate.metrics.base import MetricResult
from obliviate.metrics.memorization import ForgetThresholds, Region

TEXT_METRICS = ("ma", "el", "exact", "bleu_icu", "bertscore", "rougeL_f1", "entropy")
QA_METRICS = ("tofu_prob", "rougeL_recall", "truth_ratio", "ma", "el")
KNOWN = {"ma", "el", "exact", "exact_beam", "bleu_icu", "bleu", "bertscore", "rougeL_recall", "rougeL_f1",
         "entropy", "tofu_prob", "truth_ratio", "loss"}


@dataclass
class AuditResult:
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    results: dict[str, MetricResult] = field(default_factory=dict)  # "<kind>/<metric>" -> full result


def parse_metrics(spec: str | Sequence[str] | None) -> list[str] | None:
    """``"ma,el_10,bleu_icu"`` -> names; ``el_<n>`` is accepted for ``el`` (n goes to ``el_n``)."""
    if spec is None:
        return None
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    for name in names:
        base = "el" if name.startswith("el_") and name[3:].isdigit() else name
        if base not in KNOWN:
            raise ObliviateError(f"unknown audit metric {name!r}; choose from {', '.join(sorted(KNOWN))}")
    return names


def audit(model, tokenizer, records: Sequence[Record] | str | Path, *, metrics: str | Sequence[str] | None = None,
          template: PromptTemplate = DEFAULT_TEMPLATE, thresholds: ForgetThresholds | None = None,
          el_n: int = 10, region: Region = "all", batch_size: int = 32, el_batch_size: int = 64,
          num_beams: int = 1, max_new_tokens: int | None = None, bert_scorer=None,
          retain_results: str | None = None) -> AuditResult:
    """Audit ``records`` (a list or a data spec; see the module docstring for the default metrics per
    record type).

    ``region`` applies to text records (QA records are always scored on the answer);
    ``thresholds`` adds the "forgotten" verdict (mean MA and mean EL both below);
    ``retain_results`` (a retain model's saved ``tofu_log.json`` or TOFU ``eval_log_aggregated.json``)
    adds TOFU's forget quality for QA records with perturbed answers.
    """
    from obliviate.data.sources import as_records

    records = as_records(records)  # a data spec ("demo:forget", a file), a datasets.Dataset or records
    if not records:
        raise ObliviateError("nothing to audit: no records")
    chosen = parse_metrics(metrics)
    for name in chosen or ():
        if name.startswith("el_"):
            el_n = int(name[3:])
    groups: dict[str, list[int]] = {"text": [], "qa": []}
    for k, r in enumerate(records):
        groups["text" if isinstance(r, TextRecord) else "qa"].append(k)
    rows: list[dict[str, Any]] = [{"id": r.id, "type": "text" if isinstance(r, TextRecord) else "qa"} for r in records]
    summary: dict[str, Any] = {}
    results: dict[str, MetricResult] = {}
    meta: dict[str, Any] = {"num_records": len(records), "el_n": el_n, "num_beams": num_beams}
    present = [kind for kind, ks in groups.items() if ks]
    for kind in present:
        ks = groups[kind]
        names = [("el" if n.startswith("el_") else n) for n in chosen] if chosen else \
            list(TEXT_METRICS if kind == "text" else QA_METRICS)
        kind_region: Region = region if kind == "text" else "completion"
        group_records = [records[k] for k in ks]
        res = _audit_group(model, tokenizer, group_records, kind, names, template=template, el_n=el_n,
                           region=kind_region, batch_size=batch_size, el_batch_size=el_batch_size,
                           num_beams=num_beams, max_new_tokens=max_new_tokens, bert_scorer=bert_scorer,
                           explicit=chosen is not None)
        prefix = f"{kind}/" if len(present) > 1 else ""
        for name, (result, per_sample) in res["metrics"].items():
            results[prefix + name] = result
            summary[prefix + name] = result.value
            for k, v in zip(ks, per_sample):
                rows[k][name] = v
        for k, extra in zip(ks, res["rows"]):
            rows[k].update(extra)
        meta.update({(prefix + key): v for key, v in res["meta"].items()})
        if thresholds is not None and "ma" in res["metrics"] and f"el_{el_n}" in res["metrics"]:
            if thresholds.n != el_n:
                raise ObliviateError(f"thresholds are for EL_{thresholds.n} but the audit measures EL_{el_n}")
            ma, el = summary[prefix + "ma"], summary[prefix + f"el_{el_n}"]
            summary[prefix + "forgotten"] = thresholds.forgotten(ma, el)
            for k in ks:
                row_ma, row_el = rows[k].get("ma"), rows[k].get(f"el_{el_n}")
                if row_ma is not None and row_el is not None:
                    rows[k]["below_thresholds"] = thresholds.forgotten(row_ma, row_el)
    if thresholds is not None:
        meta["thresholds"] = thresholds.to_dict()
    if retain_results is not None:
        from obliviate.metrics.tofu import forget_quality, retain_truth_ratios

        ratios = [row["truth_ratio"] for row in rows if row.get("truth_ratio") is not None]
        if not ratios:
            raise ObliviateError("forget quality needs QA records with paraphrased and perturbed answers")
        fq = forget_quality(ratios, retain_truth_ratios(retain_results))
        results["forget_quality"] = fq
        summary["forget_quality"] = fq.value
        meta["forget_quality"] = {"retain_results": str(retain_results), **fq.details}
    summary["meta"] = meta
    return AuditResult(rows, summary, results)


def _audit_group(model, tokenizer, records: list[Record], kind: str, names: list[str], *, template, el_n: int,
                 region: Region, batch_size: int, el_batch_size: int, num_beams: int,
                 max_new_tokens: int | None, bert_scorer, explicit: bool = True) -> dict[str, Any]:
    from obliviate.metrics import generation, memorization, text
    from obliviate.metrics.likelihood import token_logprobs

    examples = encode_records(records, tokenizer, template)
    out: dict[str, tuple[MetricResult, list]] = {}
    meta: dict[str, Any] = {"region" if kind == "text" else "qa_region": region}
    extra_rows: list[dict[str, Any]] = [{} for _ in records]

    if "ma" in names:
        ma = memorization.memorization_accuracy(model, examples, region=region, batch_size=batch_size)
        out["ma"] = (ma, ma.per_sample)
    if "el" in names:
        el = _el_where_possible(model, examples, el_n, region, el_batch_size)
        if el is not None:
            out[el.name] = (el, el.details["aligned"])
            if el.details["skipped"]:
                meta[f"el_{el_n}_skipped"] = el.details["skipped"]
    if "loss" in names or "tofu_prob" in names:
        scores = token_logprobs(model, examples, region="completion", batch_size=batch_size)
        losses = [s.mean_nll for s in scores]
        if "loss" in names:
            res = MetricResult("loss", sum(losses) / len(losses), losses, {"region": "completion"})
            out["loss"] = (res, losses)
        if "tofu_prob" in names:
            from obliviate.metrics.tofu import answer_probability

            res = answer_probability(losses)
            out["tofu_prob"] = (res, res.per_sample)

    text_metrics = {"exact", "exact_beam", "bleu_icu", "bleu", "bertscore", "rougeL_recall", "rougeL_f1", "entropy"}
    if not explicit and any(e.prompt_len < 1 for e in examples):
        # Pure text (no prefix, no BOS): nothing to prompt a generation with. Asked for
        # explicitly, generate_completions raises a clear error instead.
        names = [n for n in names if n not in text_metrics]
        meta["generation_skipped"] = "records without a prefix: nothing to generate from"
    if text_metrics & set(names):
        budget = max_new_tokens if max_new_tokens is not None else (None if kind == "text" else 200)
        gens = generation.generate_completions(model, tokenizer, examples, max_new_tokens=budget,
                                               num_beams=num_beams, batch_size=batch_size)
        cands = [g.text for g in gens]
        refs = [tokenizer.decode(e.completion, skip_special_tokens=True) for e in examples]
        for row, g in zip(extra_rows, gens):
            row["generation"] = g.text
        meta["generation"] = {"num_beams": num_beams,
                              "max_new_tokens": budget if budget is not None else "target length"}
        if "exact" in names or "exact_beam" in names:
            res = generation.exact_extraction(gens, examples, name="exact" if num_beams == 1 else f"exact_beam{num_beams}")
            out[res.name] = (res, res.per_sample)
        if "bleu_icu" in names:
            res = text.bleu_icu(cands, refs)
            out["bleu_icu"] = (res, res.per_sample)
        if "bleu" in names:
            res = text.sacrebleu_sentence(cands, refs)
            out["bleu"] = (res, res.per_sample)
        if "bertscore" in names:
            scorer = bert_scorer or text.get_bert_scorer()
            res = scorer.score(cands, refs)
            out["bertscore_f1"] = (res, res.per_sample)
            meta["bertscore_backbone"] = scorer.backbone
        for kind_name in ("rougeL_recall", "rougeL_f1"):
            if kind_name in names:
                res = text.rouge_l(cands, refs, kind=kind_name.split("_")[1])  # type: ignore[arg-type]
                out[kind_name] = (res, res.per_sample)
        if "entropy" in names:
            res = text.token_entropy([g.ids for g in gens])
            out["entropy"] = (res, res.per_sample)

    if "truth_ratio" in names and kind == "qa":
        qa = [r for r in records if isinstance(r, QARecord)]
        if all(r.perturbed_answers for r in qa):
            from obliviate.metrics import tofu

            split = "forget" if all(r.paraphrased_answer for r in qa) else "real_authors"
            log = tofu.evaluate_tofu_split(model, tokenizer, qa, split, template=template, batch_size=batch_size,
                                           generate=False)
            ratios = tofu.truth_ratios(log["avg_paraphrased_loss"], log["average_perturb_loss"])
            fg = tofu.truth_ratio(log["avg_paraphrased_loss"], log["average_perturb_loss"], split="forget")
            rt = tofu.truth_ratio(log["avg_paraphrased_loss"], log["average_perturb_loss"], split="retain")
            out["truth_ratio_forget"] = (fg, fg.per_sample)
            out["truth_ratio_retain"] = (rt, rt.per_sample)
            for row, r in zip(extra_rows, ratios):
                row["truth_ratio"] = r
            meta["tofu_log"] = {key: log[key] for key in ("ids", "avg_gt_loss", "avg_paraphrased_loss",
                                                          "average_perturb_loss")}
            meta["truth_ratio_paraphrase"] = "paraphrased_answer" if split == "forget" else "answer"
        else:
            meta["truth_ratio_skipped"] = "records have no perturbed answers"
    return {"metrics": out, "rows": extra_rows, "meta": meta}


def _el_where_possible(model, examples: list[Encoded], n: int, region: Region, batch_size: int):
    """EL_n over the records long enough for it; the others get None (QA answers are often short)."""
    from obliviate.metrics.memorization import extraction_likelihood

    def eligible(e: Encoded) -> bool:
        first = 1 if region == "all" else max(1, e.prompt_len)
        return len(e.ids) > n and first <= len(e.ids) - n

    keep = [k for k, e in enumerate(examples) if eligible(e)]
    if not keep:
        return None
    res = extraction_likelihood(model, [examples[k] for k in keep], n=n, region=region, batch_size=batch_size)
    aligned: list[float | None] = [None] * len(examples)
    for k, v in zip(keep, res.per_sample):
        aligned[k] = v
    res.details["aligned"] = aligned
    res.details["skipped"] = len(examples) - len(keep)
    res.details.pop("per_position", None)  # large; the per-sample values are in the rows
    return res


def json_safe(value: Any) -> Any:
    """NaN/inf -> None so the JSON files stay standard."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
