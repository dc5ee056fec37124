"""What the engine trains on, and how a step's batches are put together.

* ``UnlearnData``: the encoded forget set plus, when the method needs them, the retain set, the
  analogous samples (aligned with forget) and a function giving each forget sample's alternate
  completions for an epoch (refusals, random mismatches).
* ``EpochSampler`` / ``RetainDraw``: every order is seeded by (seed, epoch), never by the global
  RNG, so a run resumed after a kill sees exactly the batches an uninterrupted run would have.
* ``build_method_batch``: forget indices of one micro-batch -> ``MethodBatch``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import Sampler

from obliviate.data.encode import Batch, Encoded, PromptTemplate, collate
from obliviate.data.records import QARecord, Record
from obliviate.methods.base import MethodBatch

# epoch -> per forget sample, its alternate completions (same count for every sample)
AlternatesFn = Callable[[int], list[list[Encoded]]]


@dataclass
class UnlearnData:
    forget: list[Encoded]
    retain: list[Encoded] | None = None
    analogous: list[Encoded] | None = None  # analogous[i] pairs with forget[i]
    alternates: AlternatesFn | None = None
    heldout: list[Encoded] | None = None  # for calibrating the stopping thresholds


def epoch_seed(seed: int, epoch: int, salt: int = 0) -> int:
    return (seed * 1_000_003 + epoch * 7919 + salt) % (2**63 - 1)


class EpochSampler(Sampler[int]):
    """All indices 0..n-1, in a new order each epoch determined only by (seed, epoch)."""

    def __init__(self, n: int, seed: int, shuffle: bool = True):
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:  # accelerate's DataLoaderShard calls this
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.n))
        gen = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        return iter(torch.randperm(self.n, generator=gen).tolist())

    def __len__(self) -> int:
        return self.n


class RetainDraw:
    """Retain samples to pair with forget samples: one per forget sample, walking through a
    seeded permutation of the retain set (a new one each epoch; each process its own)."""

    def __init__(self, n: int, seed: int, epoch: int, rank: int = 0):
        self.n, self._rng = n, random.Random(epoch_seed(seed, epoch, 101 + rank))
        self._order: list[int] = []
        self.last: list[int] = []  # the indices of the latest take()

    def take(self, count: int) -> list[int]:
        out = []
        while len(out) < count:
            if not self._order:
                self._order = list(range(self.n))
                self._rng.shuffle(self._order)
            out.append(self._order.pop())
        self.last = out
        return out


def batch_of(examples: Sequence[Encoded], pad_id: int, region: str) -> Batch:
    """Right-padded batch; labels on the completion (``region="completion"``) or every token (``"all"``)."""
    return collate(list(examples), pad_id, padding_side="right", loss_on_prompt=region == "all")


def build_method_batch(indices: Sequence[int], data: UnlearnData, pad_id: int, region: str,
                       retain_draw: RetainDraw | None, alternates: list[list[Encoded]] | None,
                       device: torch.device) -> MethodBatch:
    """The ``MethodBatch`` of the (active) forget samples ``indices``."""
    indices = list(indices)
    mb = MethodBatch(forget=batch_of([data.forget[i] for i in indices], pad_id, region).to(device),
                     index=torch.tensor(indices, dtype=torch.long))
    if data.analogous is not None:
        mb.analogous = batch_of([data.analogous[i] for i in indices], pad_id, region).to(device)
    if retain_draw is not None and data.retain:
        mb.retain = batch_of([data.retain[j] for j in retain_draw.take(len(indices))], pad_id, region).to(device)
    if alternates is not None:
        per = len(alternates[0]) if alternates else 0
        rows = [(row, i * per + k, alt) for row, i in enumerate(indices) for k, alt in enumerate(alternates[i])]
        mb.alternate = batch_of([alt for _, _, alt in rows], pad_id, region).to(device)
        mb.alternate_owner = torch.tensor([row for row, _, _ in rows], dtype=torch.long)
        mb.alternate_index = torch.tensor([flat for _, flat, _ in rows], dtype=torch.long)
    return mb


# --------------------------------------------------------------------------- alternates

def _completion_text(record: Record, text: str, tokenizer, template: PromptTemplate) -> str:
    if isinstance(record, QARecord):
        return template.completion(tokenizer, text)
    # Plain text: continue the prefix with the alternate, separated by a space when needed.
    return text if not record.prefix or record.prefix[-1:].isspace() else " " + text


def fixed_alternates(records: Sequence[Record], forget: Sequence[Encoded], texts: Sequence[Sequence[str | None]],
                     tokenizer, template: PromptTemplate, tag: str) -> AlternatesFn:
    """Each forget prompt followed by each of its alternate answers ``texts[i]`` (the same every epoch);
    None stands for the forget sample's own completion (AltPO, when no other answer was found)."""
    fixed = []
    for rec, enc, alts in zip(records, forget, texts):
        row = []
        for k, alt in enumerate(alts):
            ids = enc.completion if alt is None else tuple(
                tokenizer(_completion_text(rec, alt, tokenizer, template), add_special_tokens=False)["input_ids"])
            row.append(Encoded(enc.ids[:enc.prompt_len] + ids, enc.prompt_len, f"{enc.id}/{tag}{k}"))
        fixed.append(row)
    return lambda epoch: fixed


def refusal_alternates(records: Sequence[Record], forget: Sequence[Encoded], refusals: Sequence[str], tokenizer,
                       template: PromptTemplate, seed: int) -> AlternatesFn:
    """Each forget prompt followed by one refusal, drawn once with ``seed`` (IdkDPO)."""
    rng = random.Random(epoch_seed(seed, 0, 303))
    texts = [[refusals[rng.randrange(len(refusals))]] for _ in records]
    return fixed_alternates(records, forget, texts, tokenizer, template, "refusal")


def mismatch_alternates(forget: Sequence[Encoded], retain: Sequence[Encoded], k: int, seed: int) -> AlternatesFn:
    """Each forget prompt followed by ``k`` random retain completions, redrawn every epoch (LLMU)."""
    k = min(k, len(retain))

    def draw(epoch: int) -> list[list[Encoded]]:
        rng = random.Random(epoch_seed(seed, epoch, 404))
        out = []
        for enc in forget:
            picks = rng.sample(range(len(retain)), k)
            prompt = enc.ids[:enc.prompt_len]
            out.append([Encoded(prompt + retain[j].completion, enc.prompt_len, f"{enc.id}/mismatch{j}")
                        for j in picks])
        return out

    return draw
