"""AltPO: alternate preference optimization (Mekala et al. 2024, "Alternate Preference Optimization
for Unlearning Factual Knowledge in Large Language Models", arXiv 2409.13474).

    L = gamma * mean_{i,k} -(2/beta) log sigmoid(beta * [(log pi(a_ik|x_i) - log pi_ref(a_ik|x_i))
                                                        - (log pi(y_i|x_i) - log pi_ref(y_i|x_i))]) + alpha * L_retain

Each forget prompt gets ``alternates`` answers sampled from the original model itself (ULMR's
``ModelGenerator``: batched, seeded, left-padded), keeping samples that differ from the true
answer (a few tries); then DPO with every alternate preferred over the true answer (the
``dpo_loss`` of IdkDPO). The alternates are fixed, so the engine caches pi_ref of both sides
(N * (1 + k) floats, no reference model). A prompt whose every sample repeated the true answer
is paired with its own answer: the same sequence on both sides, so that pair's gradient is exactly
zero (it gets no preference signal rather than a wrong one).

Defaults: 5 samples at temperature 1 (open-unlearning ``community/methods/AltPO/generate.py``),
beta 0.1, gamma 1, alpha 1 with retain NLL (``DPO.yaml``), 2 epochs at lr 1e-5 (its sweep's low end).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from obliviate.data.encode import Encoded
from obliviate.data.records import QARecord, Record
from obliviate.errors import DataError
from obliviate.methods.base import LossOutput, MethodBatch, MethodConfig, MethodSpec, Reference, Requirements
from obliviate.methods.graddiff import TOFU_TRAIN
from obliviate.methods.losses import add_retain, dpo_loss, forward_logits, sequence_logprob
from obliviate.ulmr.generators import ModelGenerator


@dataclass
class AltPOConfig(MethodConfig):
    beta: float = field(default=0.1, metadata={"help": "DPO temperature beta"})
    gamma: float = field(default=1.0, metadata={"help": "weight of the preference term"})
    alpha: float = field(default=1.0, metadata={"help": "weight of the retain term"})
    retain_loss: str = field(default="nll", metadata={"help": "retain term: nll | kl"})
    alternates: int = field(default=5, metadata={"help": "alternate answers sampled per forget prompt"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature of the alternates"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling of the alternates"})
    max_new_tokens: int = field(default=64, metadata={"help": "longest alternate answer, in tokens"})
    tries: int = field(default=4, metadata={"help": "sampling rounds for prompts whose samples repeat the answer"})
    generation_batch_size: int = field(default=16, metadata={"help": "prompts per generate() call"})

    def requirements(self) -> Requirements:
        return Requirements(retain=self.alpha > 0, alternates="generated", alternates_per_sample=self.alternates,
                            reference_model=self.alpha > 0 and self.retain_loss == "kl",
                            cached_logprobs=("forget", "alternate"))


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def sample_alternates(model: torch.nn.Module, tokenizer, records: Sequence[Record], forget: Sequence[Encoded],
                      cfg: AltPOConfig, seed: int) -> list[list[str | None]]:
    """``cfg.alternates`` answers per forget prompt, sampled from ``model``, differing from the true
    answer where the model produces such a sample within ``cfg.tries`` rounds; a prompt that never
    yields one gets None (``fixed_alternates``: the forget sample itself, a pair with zero gradient)."""
    gen = ModelGenerator(model, tokenizer, name="altpo", max_new_tokens=cfg.max_new_tokens,
                         temperature=cfg.temperature, top_p=cfg.top_p, batch_size=cfg.generation_batch_size,
                         chat=False, add_special_tokens=False)
    prompts, truths = [], []
    for rec, enc in zip(records, forget):
        if enc.prompt_len == 0:
            raise DataError("<forget>", "AltPO needs a prompt to sample alternates from", record=rec.id, field="prefix")
        prompts.append(tokenizer.decode(enc.ids[:enc.prompt_len]))
        truths.append(_norm(rec.answer if isinstance(rec, QARecord) else rec.target))
    found: list[list[str | None]] = [[] for _ in records]
    for attempt in range(cfg.tries):
        todo = [i for i in range(len(records)) if len(found[i]) < cfg.alternates]
        if not todo:
            break
        rows = [i for i in todo for _ in range(cfg.alternates - len(found[i]))]
        for i, text in zip(rows, gen.complete([prompts[i] for i in rows], seed=seed + 7919 * attempt, sample=True)):
            text = text.strip()
            if text and _norm(text) != truths[i] and len(found[i]) < cfg.alternates:
                found[i].append(text)
    for alts in found:  # too few wrong samples: cycle through them; none at all: None = the true answer
        pool = list(alts) or [None]
        alts.extend(pool[k % len(pool)] for k in range(cfg.alternates - len(alts)))
    return found


def altpo_loss(model: torch.nn.Module, batch: MethodBatch, cfg: AltPOConfig, ref: Reference) -> LossOutput:
    if batch.alternate is None or batch.alternate_index is None or batch.alternate_owner is None:
        raise ValueError("AltPO needs the alternate batch (engine bug)")
    lose = sequence_logprob(forward_logits(model, batch.forget), batch.forget.labels)
    win = sequence_logprob(forward_logits(model, batch.alternate), batch.alternate.labels)
    lose_ref = ref.sequence_logprob("forget", batch.index).to(lose.device)
    win_ref = ref.sequence_logprob("alternate", batch.alternate_index).to(win.device)
    owner = batch.alternate_owner.to(lose.device)
    forget = dpo_loss(win, win_ref, lose[owner], lose_ref[owner], cfg.beta)
    logs = {"dpo": forget.item(), "forget_log_ratio": (lose - lose_ref).mean().item(),
            "alternate_log_ratio": (win - win_ref).mean().item()}
    return LossOutput(*add_retain(cfg.gamma * forget, logs, model, batch.retain, cfg.alpha, cfg.retain_loss, ref,
                                  "AltPO"))


SPEC = MethodSpec(
    name="altpo",
    config=AltPOConfig,
    loss=altpo_loss,
    summary="DPO preferring the model's own sampled alternate answers (+ retain NLL) (Mekala et al. 2024)",
    defaults={"train": TOFU_TRAIN, "stop": {"max_epochs": 2}, "refinement": {"enabled": False}},
)
