"""Forget/retain evaluation of QA models for the ULMR table and ``obliviate merge`` sweeps.

TOFU's three numbers per split -- ROUGE-L recall of the greedy answer, the (length-normalised)
answer probability, the truth ratio -- from ``obliviate.metrics.tofu``; optionally forget
quality (KS test against an exact-retrain model's forget truth ratios).

A guardrail is evaluated with the same code: a system prompt is just another
``PromptTemplate`` (it changes every prompt, so every number); an ``OutputFilter`` rewrites the
generated answers before ROUGE is computed and leaves the teacher-forced numbers untouched,
which the table marks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from obliviate.data.encode import DEFAULT_TEMPLATE, PromptTemplate
from obliviate.data.records import QARecord, Record
from obliviate.errors import DataError
from obliviate.guardrails import OutputFilter

SPLITS = ("forget", "retain", "world_facts", "real_authors")
TEACHER_FORCED = ("tofu_prob", "tofu_prob_options", "truth_ratio")


@dataclass
class QAEvaluation:
    row: dict[str, float]  # "forget/rougeL_recall", "forget/tofu_prob", "forget/truth_ratio", ..., "forget_quality"
    logs: dict[str, dict[str, Any]] = field(default_factory=dict)  # per split, TOFU's per-item field names


def qa_records(records: Sequence[Record], where: str) -> list[QARecord]:
    for rec in records:
        if not isinstance(rec, QARecord):
            raise DataError(where, "needs question/answer records (TOFU-style)", record=rec.id)
    return list(records)  # type: ignore[arg-type]


def forget_truth_ratios(log: Mapping[str, Any]) -> list[float]:
    from obliviate.metrics.tofu import truth_ratios

    return truth_ratios(log["avg_paraphrased_loss"], log["average_perturb_loss"])


def evaluate_qa(model: Any, tokenizer: Any, splits: Mapping[str, Sequence[QARecord]], *,
                template: PromptTemplate = DEFAULT_TEMPLATE, output_filter: OutputFilter | None = None,
                reference_forget_ratios: Sequence[float] | None = None, max_new_tokens: int = 200,
                batch_size: int = 16) -> QAEvaluation:
    """TOFU numbers of every split in ``splits`` (keys: forget, retain, world_facts, real_authors)."""
    from obliviate.metrics.text import rouge_l
    from obliviate.metrics.tofu import evaluate_tofu_split, forget_quality, split_scores

    row: dict[str, float] = {}
    logs: dict[str, dict[str, Any]] = {}
    for split, records in splits.items():
        if split not in SPLITS:
            raise DataError("<splits>", f"unknown split {split!r}; use {', '.join(SPLITS)}")
        if not records:
            continue
        log = evaluate_tofu_split(model, tokenizer, records, split, template=template,  # type: ignore[arg-type]
                                  max_new_tokens=max_new_tokens, batch_size=batch_size)
        if output_filter is not None:
            res = output_filter.apply(log["generated_text"])
            log["unfiltered_text"], log["generated_text"] = log["generated_text"], res.texts
            log["filter_blocked"], log["filter_score"] = res.blocked, res.scores
            log["rougeL_recall"] = rouge_l(res.texts, [r.answer for r in records], kind="recall").per_sample
            row[f"{split}/blocked"] = res.block_rate
        for key, res in split_scores(log, split).items():  # type: ignore[arg-type]
            row[f"{split}/{key}"] = res.value
        logs[split] = log
    if reference_forget_ratios is not None and "forget" in logs:
        row["forget_quality"] = forget_quality(forget_truth_ratios(logs["forget"]), reference_forget_ratios).value
    return QAEvaluation(row, logs)


# --------------------------------------------------------------------------- tables

COLUMNS: tuple[tuple[str, str], ...] = (
    ("Forget R", "forget/rougeL_recall"), ("Forget P", "forget/tofu_prob"), ("Forget TR", "forget/truth_ratio"),
    ("Retain R", "retain/rougeL_recall"), ("Retain P", "retain/tofu_prob"), ("Retain TR", "retain/truth_ratio"),
    ("WF R", "world_facts/rougeL_recall"), ("WF P", "world_facts/tofu_prob_options"),
    ("WF TR", "world_facts/truth_ratio"),
    ("RA R", "real_authors/rougeL_recall"), ("RA P", "real_authors/tofu_prob_options"),
    ("RA TR", "real_authors/truth_ratio"),
    ("FQ", "forget_quality"),
)


@dataclass
class TableRow:
    label: str
    values: Mapping[str, float]
    filtered: bool = False  # an output filter: teacher-forced numbers are the unfiltered model's
    note: str = ""


def _cell(value: float | None, key: str, filtered: bool) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    text = f"{value:.2e}" if key == "forget_quality" else f"{value:.3f}"
    if filtered and key.split("/")[-1] in (*TEACHER_FORCED, "forget_quality"):
        text += "†"
    return text


def format_table(rows: Sequence[TableRow]) -> str:
    """A markdown table with the columns that some row has; † marks numbers a filter cannot change."""
    cols = [(title, key) for title, key in COLUMNS if any(key in r.values for r in rows)]
    has_notes = any(r.note for r in rows)
    head = ["Method", *(t for t, _ in cols)] + (["Notes"] if has_notes else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * len(cols) + (["---"] if has_notes else []))
             + "|"]
    for r in rows:
        cells = [r.label, *(_cell(r.values.get(k), k, r.filtered) for _, k in cols)]
        if has_notes:
            cells.append(r.note)
        lines.append("| " + " | ".join(cells) + " |")
    if any(r.filtered for r in rows):
        lines.append("")
        lines.append("† teacher-forced (probability, truth ratio, forget quality): identical to the unfiltered model. "
                     "An output filter only rewrites generated text; it removes no knowledge from the weights.")
    return "\n".join(lines)
