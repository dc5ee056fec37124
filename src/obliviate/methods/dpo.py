"""IdkDPO: DPO with a refusal as the preferred answer (TOFU, Maini et al. 2024; open-unlearning ``DPO``).

    L = gamma * -(2/beta) log sigmoid(beta * [(log pi(refusal|x) - log pi_ref(refusal|x))
                                              - (log pi(y|x) - log pi_ref(y|x))]) + alpha * L_retain

Each forget prompt x gets one refusal ("I don't know"-style), drawn once with the run's seed
(open-unlearning redraws one per visit; fixing it lets the engine cache pi_ref of both answers
as 2N floats instead of keeping a reference model). Refusals come from obliviate's built-in list
or any file of lines, e.g. TOFU's ``idontknow.jsonl`` (``obliviate.data.refusals``).

Defaults from open-unlearning ``configs/trainer/DPO.yaml`` (beta 0.1, gamma 1, alpha 1, retain
NLL) with the TOFU optimiser settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from obliviate.methods.base import LossOutput, MethodBatch, MethodConfig, MethodSpec, Reference, Requirements
from obliviate.methods.graddiff import TOFU_STOP, TOFU_TRAIN
from obliviate.methods.losses import dpo_loss, forward_logits, retain_term, sequence_logprob


@dataclass
class IdkDPOConfig(MethodConfig):
    beta: float = field(default=0.1, metadata={"help": "inverse temperature of the DPO loss (TOFU: 0.1)", "gt": 0.0})
    gamma: float = field(default=1.0, metadata={"help": "weight of the DPO term", "min": 0.0})
    alpha: float = field(default=1.0, metadata={"help": "weight of the retain term", "min": 0.0})
    retain_loss: str = field(default="nll", metadata={"help": "\"nll\" | \"kl\"", "choices": ("nll", "kl")})
    refusals: str | None = field(default=None, metadata={
        "help": "file of refusal texts; None = the built-in list"})

    def requirements(self) -> Requirements:
        return Requirements(retain=self.alpha > 0, alternates="refusals", refusals=self.refusals,
                            reference_model=self.alpha > 0 and self.retain_loss == "kl",
                            cached_logprobs=("forget", "alternate"))


def idkdpo_loss(model: torch.nn.Module, batch: MethodBatch, cfg: IdkDPOConfig, ref: Reference) -> LossOutput:
    if batch.alternate is None or batch.alternate_index is None:
        raise ValueError("IdkDPO needs the refusal batch (engine bug)")
    lose = sequence_logprob(forward_logits(model, batch.forget), batch.forget.labels)
    win = sequence_logprob(forward_logits(model, batch.alternate), batch.alternate.labels)
    lose_ref = ref.sequence_logprob("forget", batch.index).to(lose.device)
    win_ref = ref.sequence_logprob("alternate", batch.alternate_index).to(win.device)
    forget = dpo_loss(win, win_ref, lose, lose_ref, cfg.beta)
    loss = cfg.gamma * forget
    logs = {"dpo": forget.item(), "forget_log_ratio": (lose - lose_ref).mean().item(),
            "refusal_log_ratio": (win - win_ref).mean().item()}
    if cfg.alpha:
        if batch.retain is None:
            raise ValueError("IdkDPO needs a retain batch (engine bug)")
        retain, retain_logs = retain_term(model, batch.retain, cfg.retain_loss, ref)
        loss = loss + cfg.alpha * retain
        logs.update(retain_logs)
    return LossOutput(loss, logs)


SPEC = MethodSpec(
    name="idkdpo",
    config=IdkDPOConfig,
    loss=idkdpo_loss,
    summary="DPO preferring a refusal over the forget answer (+ retain NLL) (TOFU IdkDPO)",
    defaults={"train": TOFU_TRAIN, "stop": TOFU_STOP, "refinement": {"enabled": False}},
    aliases=("dpo", "idk_dpo", "idk"),
)
