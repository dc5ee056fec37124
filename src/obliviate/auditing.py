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

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from obliviate.data.encode import DEFAULT_TEMPLATE, PromptTemplate
from obliviate.data.records import Record, TextRecord
from obliviate.errors import ObliviateError
from obliviate.evaluation.attacks import AttackConfig, AttackResult, parse_attacks, run_attacks
from obliviate.evaluation.attacks import summary as attack_summary
from obliviate.evaluation.evaluate import KNOWN as KNOWN_METRICS
from obliviate.evaluation.evaluate import EvalOptions, evaluate, resolve
from obliviate.metrics.base import MetricResult
from obliviate.metrics.memorization import ForgetThresholds, Region
from obliviate.metrics.tofu import truth_ratios

KNOWN = KNOWN_METRICS


@dataclass
class AuditResult:
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    results: dict[str, MetricResult] = field(default_factory=dict)  # "<kind>/<metric>" -> full result
    attacks: list[AttackResult] = field(default_factory=list)  # robustness probes, one verdict each


def parse_metrics(spec: str | Sequence[str] | None) -> list[str] | None:
    """``"ma,el_10,bleu_icu"`` -> names (checked against the evaluation registry)."""
    if spec is None:
        return None
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    resolve(names)
    return names


def audit(model, tokenizer, records: Sequence[Record] | str | Path, *, metrics: str | Sequence[str] | None = None,
          template: PromptTemplate = DEFAULT_TEMPLATE, thresholds: ForgetThresholds | None = None,
          el_n: int = 10, region: Region = "all", batch_size: int = 32, el_batch_size: int = 64,
          num_beams: int = 1, max_new_tokens: int | None = None, bert_scorer=None,
          retain_results: str | None = None, attacks: str | Sequence[str] | None = None,
          heldout: Any = None, original=None, retain: Any = None,
          attack_config: AttackConfig | None = None) -> AuditResult:
    """Audit ``records`` (a list or a data spec; see the module docstring for the default metrics per
    record type).

    ``region`` applies to text records (QA records are always scored on the answer);
    ``thresholds`` adds the "forgotten" verdict (mean MA and mean EL both below);
    ``retain_results`` (a retain model's saved ``tofu_log.json`` or TOFU ``eval_log_aggregated.json``)
    adds TOFU's forget quality for QA records with perturbed answers.

    ``attacks`` (``"sample,quantize,relearn,prompts,mia"``, ``"cheap"`` or ``"all"``) runs the
    robustness probes of ``obliviate.evaluation.attacks`` on the records: ``heldout`` records the
    model never saw give the calibrated level, ``original`` (the model before unlearning) the
    recovery ratios, ``retain`` the benign relearning data and few-shot examples (each a data
    spec or records). The verdicts go to ``AuditResult.attacks`` and
    ``summary["robust/<attack>/held"|"recovery"]``; no text of the records is kept in them.
    """
    from obliviate.data.sources import as_records

    records = as_records(records)  # a data spec ("demo:forget", a file), a datasets.Dataset or records
    if not records:
        raise ObliviateError("nothing to audit: no records")
    chosen = parse_metrics(metrics)
    attack_names = parse_attacks(attacks)
    if attack_names and heldout is None:
        raise ObliviateError("attacks need held-out records the model never saw (heldout=..., --heldout): "
                             "they give the calibrated level of every verdict")
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
    opts = EvalOptions(template=template, region=region, el_n=el_n, batch_size=batch_size, el_batch_size=el_batch_size,
                       num_beams=num_beams, max_new_tokens=max_new_tokens, bert_scorer=bert_scorer)
    ev = evaluate(model, tokenizer, {kind: [records[k] for k in groups[kind]] for kind in present}, chosen,
                  options=opts, skip_generation_without_prompt=chosen is None)
    for kind in present:
        ks = groups[kind]
        prefix = f"{kind}/" if len(present) > 1 else ""  # one kind of records: bare metric names
        for key, result in ev.results.items():
            if key.startswith(f"{kind}/"):
                name = key.split("/", 1)[1]
                results[prefix + name], summary[prefix + name] = result, result.value
                for k, v in zip(ks, result.per_sample):
                    rows[k][name] = v
        for k, text in zip(ks, ev.generations.get(kind, ())):
            rows[k]["generation"] = text
        for key, value in ev.details.items():
            if not key.startswith(f"{kind}/"):
                continue
            what = key.split("/", 1)[1]
            if what == "region":
                what = "region" if kind == "text" else "qa_region"
            elif what == "tofu_log":
                for k, ratio in zip(ks, truth_ratios(value["avg_paraphrased_loss"], value["average_perturb_loss"])):
                    rows[k]["truth_ratio"] = ratio
                value = {f: value[f] for f in ("ids", "avg_gt_loss", "avg_paraphrased_loss", "average_perturb_loss")}
            meta[prefix + what] = value
        if thresholds is not None and prefix + "ma" in summary and f"{prefix}el_{el_n}" in summary:
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
    found: list[AttackResult] = []
    if attack_names:
        found = run_attacks(model, tokenizer, records, as_records(heldout), attack_names, original=original,
                            retain=as_records(retain) if retain is not None else (), config=attack_config,
                            template=template)
        summary.update(attack_summary(found))
        meta["attacks"] = [r.to_dict() for r in found]
    summary["meta"] = meta
    return AuditResult(rows, summary, results, found)

