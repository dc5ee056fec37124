"""Two quick, self-contained checks of what a world model knows (used by ``obliviate world build``
and the world tests; the full metric suite lives in ``obliviate.metrics``):

* ``fact_recall``: greedy answer to the question contains the fact's value (exact substring);
* ``answer_token_accuracy``: teacher-forced, the share of answer tokens (eos included) that
  are the model's argmax.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from obliviate.data.encode import DEFAULT_TEMPLATE, Encoded, collate, encode_record
from obliviate.data.records import QARecord


@torch.no_grad()
def greedy_answers(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, records: Sequence[QARecord], *,
                   max_new_tokens: int = 48, batch_size: int = 64) -> list[str]:
    """Greedy continuation of each question's prompt, up to eos (left padding, explicit positions)."""
    prompts = [encode_record(r, tokenizer, DEFAULT_TEMPLATE) for r in records]
    prompts = [Encoded(e.ids[: e.prompt_len], e.prompt_len, e.id) for e in prompts]
    out: list[str] = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        batch = collate(chunk, tokenizer.pad_token_id, padding_side="left", loss_on_prompt=True)
        gen = model.generate(input_ids=batch.input_ids, attention_mask=batch.attention_mask, do_sample=False,
                             max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=tokenizer.eos_token_id)
        out += tokenizer.batch_decode(gen[:, batch.input_ids.shape[1]:], skip_special_tokens=True)
    return [text.strip() for text in out]


def contains_fact(text: str, value: str) -> bool:
    """``value`` occurs in ``text`` as a whole (so "8 May 1970" is not found in "18 May 1970")."""
    return re.search(rf"(?<!\w){re.escape(value)}(?!\w)", text) is not None


def fact_hits(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
              records: Sequence[QARecord]) -> list[bool]:
    """Per record: does the greedy answer contain the fact ``meta['value']``?"""
    answers = greedy_answers(model, tokenizer, records)
    return [contains_fact(a, str(r.meta["value"])) for r, a in zip(records, answers, strict=True)]


def fact_recall(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, records: Sequence[QARecord]) -> float:
    hits = fact_hits(model, tokenizer, records)
    return sum(hits) / len(hits)


@torch.no_grad()
def answer_token_accuracy(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                          records: Sequence[QARecord], *, batch_size: int = 64) -> float:
    """Teacher-forced argmax accuracy over all answer tokens (eos included), pooled."""
    correct = total = 0
    encoded = [encode_record(r, tokenizer, DEFAULT_TEMPLATE) for r in records]
    for start in range(0, len(encoded), batch_size):
        batch = collate(encoded[start:start + batch_size], tokenizer.pad_token_id)
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                       position_ids=batch.position_ids).logits
        pred, gold = logits[:, :-1].argmax(-1), batch.labels[:, 1:]
        mask = gold != -100
        correct += int((pred[mask] == gold[mask]).sum())
        total += int(mask.sum())
    return correct / total


@dataclass(frozen=True)
class Knowledge:
    """What one model knows about one split."""

    split: str
    recall: float  # greedy answer contains the fact
    token_accuracy: float  # teacher-forced answer tokens
    n: int


def probe(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, splits: dict[str, Sequence[QARecord]]
          ) -> list[Knowledge]:
    return [Knowledge(name, fact_recall(model, tokenizer, recs), answer_token_accuracy(model, tokenizer, recs),
                      len(recs)) for name, recs in splits.items()]
