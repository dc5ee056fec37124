"""The two record schemas every loader produces and every metric and method consumes.

* ``TextRecord`` — continuation data: a ``prefix`` the model is prompted with and the ``target``
  it should (or should no longer) reproduce. Pure text is ``prefix=""``, ``target=text``.
  Records may also carry exact token ids (``prefix_ids``/``target_ids``) together with the
  fingerprint of the tokenizer they belong to; those ids are used verbatim whenever the model's
  tokenizer has the same fingerprint (e.g. the pile-extraction benchmark under GPT-2/GPT-Neo),
  which avoids the decode/re-encode drift of the reference code.
* ``QARecord`` — question answering data (TOFU, RWKU, MUSE knowmem, the synthetic world), with
  the optional evaluation fields kept: paraphrased answer/question and perturbed (wrong) answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias


@dataclass(frozen=True)
class TextRecord:
    id: str
    prefix: str
    target: str
    prefix_ids: tuple[int, ...] | None = None
    target_ids: tuple[int, ...] | None = None
    ids_tokenizer: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def text(self) -> str:
        return self.prefix + self.target


@dataclass(frozen=True)
class QARecord:
    id: str
    question: str
    answer: str
    paraphrased_answer: str | None = None
    paraphrased_question: str | None = None
    perturbed_answers: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False)


Record: TypeAlias = TextRecord | QARecord


def record_to_dict(record: Record) -> dict[str, Any]:
    """The JSONL form of a record (the inverse of ``io.parse_record``)."""
    if isinstance(record, TextRecord):
        out: dict[str, Any] = {"id": record.id, "prefix": record.prefix, "target": record.target}
        if record.prefix_ids is not None:
            out.update(prefix_ids=list(record.prefix_ids), target_ids=list(record.target_ids or ()),
                       ids_tokenizer=record.ids_tokenizer)
    else:
        out = {"id": record.id, "question": record.question, "answer": record.answer}
        if record.paraphrased_answer is not None:
            out["paraphrased_answer"] = record.paraphrased_answer
        if record.paraphrased_question is not None:
            out["paraphrased_question"] = record.paraphrased_question
        if record.perturbed_answers:
            out["perturbed_answer"] = list(record.perturbed_answers)
    out.update(dict(record.meta))
    return out
