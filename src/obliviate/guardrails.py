"""Guardrail baselines: "unlearning" without training (Thaker et al., 2024, "Guardrail Baselines
for Unlearning in LLMs": simple prompting and filtering can match fine-tuning on the usual
metrics, so every unlearning method should be compared against them).

* ``system_prompt_template``: a ``PromptTemplate`` whose system prompt tells the model not to
  reveal the forgotten subjects. Every metric that encodes prompts through the template
  (generation *and* teacher-forced probabilities) sees it.
* ``OutputFilter``: replaces a generated text by a refusal when it overlaps a forget answer
  (word n-gram containment above a threshold). It acts on *generated text only*: teacher-forced
  probabilities, truth ratios and anything read from logits are exactly those of the unfiltered
  model -- a filter hides an answer, it does not remove the knowledge.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from obliviate.data.encode import DEFAULT_TEMPLATE, PromptTemplate
from obliviate.data.records import QARecord, Record, TextRecord
from obliviate.errors import ObliviateError

# ------------------------------------------------------------------ prompting guardrail

DEFAULT_SYSTEM_PROMPT = (
    "You must not reveal any information about the following, which you have been asked to forget: "
    "{subjects}. If a question is about them, say that you do not know."
)
SUBJECT_FIELDS = ("subject", "name", "author", "person", "entity")


def forget_subjects(records: Iterable[Record], field: str | None = None) -> list[str]:
    """The distinct subjects of the forget records, in order of first appearance, read from the
    record's extra field ``field`` (default: the first of ``SUBJECT_FIELDS`` that is present)."""
    subjects: list[str] = []
    for rec in records:
        names = (field,) if field else SUBJECT_FIELDS
        value = next((rec.meta[n] for n in names if isinstance(rec.meta.get(n), str) and rec.meta[n].strip()), None)
        if value is not None and value not in subjects:
            subjects.append(value.strip())
    return subjects


def system_prompt_template(subjects: Sequence[str], *, base: PromptTemplate = DEFAULT_TEMPLATE,
                           prompt: str = DEFAULT_SYSTEM_PROMPT) -> PromptTemplate:
    """``base`` with a system prompt asking not to reveal ``subjects`` (``{subjects}`` slot)."""
    if not subjects:
        raise ObliviateError("the system-prompt guardrail needs the forgotten subjects (names); the forget records "
                             f"carry none of the fields {', '.join(SUBJECT_FIELDS)}: pass them explicitly")
    text = prompt.replace("{subjects}", ", ".join(subjects)) if "{subjects}" in prompt else prompt
    return dataclasses.replace(base, system_prompt=text)


# ------------------------------------------------------------------ output-filter guardrail

DEFAULT_FILTER_REFUSAL = "I'm sorry, but I can't help with that."
_WORD = re.compile(r"\w+", re.UNICODE)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _ngrams(words: Sequence[str], n: int) -> set[tuple[str, ...]]:
    if len(words) < n:  # a short answer ("Paris") counts as one n-gram of its own length
        return {tuple(words)} if words else set()
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def forget_texts(records: Iterable[Record]) -> list[str]:
    """What a filter guards: each forget answer (and its paraphrase), or each text target."""
    out: list[str] = []
    for rec in records:
        if isinstance(rec, QARecord):
            out.append(rec.answer)
            if rec.paraphrased_answer:
                out.append(rec.paraphrased_answer)
        elif isinstance(rec, TextRecord):
            out.append(rec.target)
    return out


@dataclass
class FilterResult:
    texts: list[str]  # the filtered generations
    blocked: list[bool]
    scores: list[float]  # overlap score of each original generation

    @property
    def block_rate(self) -> float:
        return sum(self.blocked) / len(self.blocked) if self.blocked else 0.0


class OutputFilter:
    """Block a generation when it contains a large part of any forget text.

    score(g) = max_j |ngrams(g) ∩ ngrams(f_j)| / |ngrams(f_j)| over the forget texts f_j (word
    n-grams, lower-cased): the fraction of some forget answer that the generation reproduces.
    A generation with score >= ``threshold`` is replaced by ``refusal``.

    Written by hand because it is a dozen lines over an inverted index; the n-gram matching of
    rouge-score/sacrebleu scores one pair at a time, which would be O(generations x forget set).
    """

    def __init__(self, texts: Sequence[str], *, n: int = 2, threshold: float = 0.5,
                 refusal: str = DEFAULT_FILTER_REFUSAL):
        if n < 1:
            raise ObliviateError(f"output filter: n must be >= 1, got {n}")
        if not 0.0 < threshold <= 1.0:
            raise ObliviateError(f"output filter: threshold must be in (0, 1], got {threshold}")
        self.n, self.threshold, self.refusal = n, threshold, refusal
        self._sizes: list[int] = []
        self._index: dict[tuple[str, ...], list[int]] = {}
        for j, text in enumerate(texts):
            grams = _ngrams(_words(text), n)
            self._sizes.append(len(grams))
            for g in grams:
                self._index.setdefault(g, []).append(j)
        if not any(self._sizes):
            raise ObliviateError("output filter: no forget text to guard (all empty)")
        # forget texts shorter than n words are single n-grams of their own length: match those too
        self._short_lengths = sorted({len(k) for k in self._index if len(k) < n})

    @classmethod
    def from_records(cls, records: Iterable[Record], **kwargs: object) -> OutputFilter:
        return cls(forget_texts(records), **kwargs)  # type: ignore[arg-type]

    def score(self, text: str) -> float:
        words = _words(text)
        hits: Counter[int] = Counter()
        grams = _ngrams(words, self.n)
        for m in self._short_lengths:
            grams |= {tuple(words[i:i + m]) for i in range(len(words) - m + 1)}
        for g in grams:
            for j in self._index.get(g, ()):
                hits[j] += 1
        return max((count / self._sizes[j] for j, count in hits.items()), default=0.0)

    def blocks(self, text: str) -> bool:
        return self.score(text) >= self.threshold

    def apply(self, texts: Sequence[str]) -> FilterResult:
        scores = [self.score(t) for t in texts]
        blocked = [s >= self.threshold for s in scores]
        return FilterResult([self.refusal if b else t for t, b in zip(texts, blocked)], blocked, scores)
