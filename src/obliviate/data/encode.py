"""From records to token ids: one place decides how a prompt and its completion are tokenized.

Every record becomes an ``Encoded``: ``ids`` = prompt tokens + completion tokens and
``prompt_len``. Prompt and completion are tokenized *separately* and concatenated, so the
boundary is exact (tokenizing the joined string and guessing the boundary from the prompt's
length is the off-by-one behind TOFU issue #36). Losses and metrics then choose positions:
``ids[prompt_len:]`` are the completion ("target"/"answer"/"suffix") tokens.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from transformers import PreTrainedTokenizerBase

from obliviate.data.records import QARecord, Record, TextRecord
from obliviate.errors import DataError


@dataclass(frozen=True)
class Encoded:
    ids: tuple[int, ...]
    prompt_len: int
    id: str = ""

    @property
    def completion(self) -> tuple[int, ...]:
        return self.ids[self.prompt_len:]


@dataclass(frozen=True)
class PromptTemplate:
    """How a QA record becomes a prompt.

    ``mode``: ``chat`` uses the tokenizer's chat template; ``plain`` uses ``question_format``;
    ``auto`` picks chat when the tokenizer has a template. ``system_prompt`` is prepended as a
    system turn (chat) or a first line (plain); the prompting guardrail baseline uses it.
    """

    mode: Literal["auto", "chat", "plain"] = "auto"
    question_format: str = "Question: {question}\nAnswer:"
    answer_prefix: str = " "  # between the plain prompt and the answer
    system_prompt: str | None = None
    add_eos: bool = True  # the answer ends with eos, counted in losses (as TOFU does)

    def uses_chat(self, tokenizer: PreTrainedTokenizerBase) -> bool:
        if self.mode == "auto":
            return getattr(tokenizer, "chat_template", None) is not None
        return self.mode == "chat"

    def prompt(self, tokenizer: PreTrainedTokenizerBase, question: str) -> str:
        if self.uses_chat(tokenizer):
            messages = [{"role": "user", "content": question}]
            if self.system_prompt:
                messages.insert(0, {"role": "system", "content": self.system_prompt})
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        text = self.question_format.format(question=question)
        return f"{self.system_prompt}\n{text}" if self.system_prompt else text

    def completion(self, tokenizer: PreTrainedTokenizerBase, answer: str) -> str:
        text = answer if self.uses_chat(tokenizer) else self.answer_prefix + answer
        if self.add_eos and tokenizer.eos_token:
            text += tokenizer.eos_token
        return text


DEFAULT_TEMPLATE = PromptTemplate()
_FINGERPRINTS: dict[int, str] = {}


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """A short hash of the vocabulary: equal for tokenizers that map text to the same ids."""
    key = id(tokenizer)
    if key not in _FINGERPRINTS:
        vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
        digest = hashlib.sha256("\x00".join(f"{t}\x01{i}" for t, i in vocab).encode()).hexdigest()
        _FINGERPRINTS[key] = digest[:16]
    return _FINGERPRINTS[key]


def _tok(tokenizer: PreTrainedTokenizerBase, text: str, special: bool) -> list[int]:
    if not text:
        return []
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


def encode_record(record: Record, tokenizer: PreTrainedTokenizerBase,
                  template: PromptTemplate = DEFAULT_TEMPLATE, *, answer: str | None = None,
                  question: str | None = None) -> Encoded:
    """Encode one record. For QA, ``answer``/``question`` override the record's own (used for
    paraphrased and perturbed answers)."""
    if isinstance(record, TextRecord):
        if record.target_ids is not None and record.ids_tokenizer == tokenizer_fingerprint(tokenizer):
            return Encoded(tuple(record.prefix_ids or ()) + tuple(record.target_ids), len(record.prefix_ids or ()),
                           record.id)
        prompt = _tok(tokenizer, record.prefix, special=True) if record.prefix else _bos(tokenizer)
        completion = _tok(tokenizer, record.target, special=False)
    elif isinstance(record, QARecord):
        prompt_text = template.prompt(tokenizer, question if question is not None else record.question)
        # A chat template already contains the special tokens it needs.
        prompt = _tok(tokenizer, prompt_text, special=not template.uses_chat(tokenizer))
        completion = _tok(tokenizer, template.completion(tokenizer, answer if answer is not None else record.answer),
                          special=False)
    else:  # pragma: no cover - typing guard
        raise TypeError(f"not a record: {type(record).__name__}")
    if not completion:
        raise DataError("<records>", "tokenizes to zero completion tokens", record=record.id, field="target")
    return Encoded(tuple(prompt) + tuple(completion), len(prompt), record.id)


def _bos(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Prompt for pure text: the BOS token if this tokenizer adds one, else nothing."""
    probe = tokenizer("a", add_special_tokens=True)["input_ids"]
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    return probe[: len(probe) - len(bare)] if len(probe) > len(bare) and probe[-len(bare):] == bare else []


def encode_records(records: Sequence[Record], tokenizer: PreTrainedTokenizerBase,
                   template: PromptTemplate = DEFAULT_TEMPLATE, *, max_length: int | None = None) -> list[Encoded]:
    """Encode many records; ``max_length`` truncates the completion (never the prompt) from the right."""
    out = []
    for rec in records:
        enc = encode_record(rec, tokenizer, template)
        if max_length is not None and len(enc.ids) > max_length:
            if enc.prompt_len >= max_length:
                raise DataError("<records>", f"prompt alone has {enc.prompt_len} tokens > max_length {max_length}",
                                record=rec.id, field="prefix")
            enc = Encoded(enc.ids[:max_length], enc.prompt_len, enc.id)
        out.append(enc)
    return out


@dataclass
class Batch:
    input_ids: torch.Tensor  # [B, T]
    attention_mask: torch.Tensor  # [B, T]
    labels: torch.Tensor  # [B, T]; -100 where no loss (padding, and prompt unless loss_on_prompt)
    position_ids: torch.Tensor  # [B, T]; counts from 0 at the first real token (correct under left padding)

    def to(self, device: torch.device | str) -> Batch:
        return Batch(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.labels, self.position_ids)))


def collate(examples: Sequence[Encoded], pad_id: int, *, padding_side: Literal["left", "right"] = "right",
            loss_on_prompt: bool = False) -> Batch:
    """Pad a list of encoded examples into one batch with masks, labels and position ids."""
    if not examples:
        raise ValueError("collate() needs at least one example")
    width = max(len(e.ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e.ids)
        start = width - n if padding_side == "left" else 0
        ids[row, start:start + n] = torch.tensor(e.ids)
        mask[row, start:start + n] = 1
        first = 0 if loss_on_prompt else e.prompt_len
        labels[row, start + first:start + n] = torch.tensor(e.ids[first:])
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    return Batch(ids, mask, labels, position_ids)
