"""SimNPO: simple, reference-free NPO (Fan et al. 2024, arXiv 2410.07163).

    L = gamma * -(2/beta) log sigmoid(beta * (NLL(y|x)/|y| - delta)) + alpha * L_retain

The length-normalised NLL replaces NPO's log-ratio to a reference model, so nothing about the
original model is needed. Defaults from open-unlearning ``configs/trainer/SimNPO.yaml``
(beta 4.5, delta 0, gamma 0.125, alpha 1, retain NLL) with the TOFU optimiser settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from obliviate.methods.base import LossOutput, MethodBatch, MethodConfig, MethodSpec, Reference, Requirements
from obliviate.methods.graddiff import TOFU_STOP, TOFU_TRAIN
from obliviate.methods.losses import forward_logits, retain_term, sequence_mean_nll, simnpo_loss


@dataclass
class SimNPOConfig(MethodConfig):
    beta: float = field(default=4.5, metadata={"help": "inverse temperature of the SimNPO loss (open-unlearning: 4.5)", "gt": 0.0})
    delta: float = field(default=0.0, metadata={"help": "reward margin (the paper's gamma)"})
    gamma: float = field(default=0.125, metadata={"help": "weight of the SimNPO term", "min": 0.0})
    alpha: float = field(default=1.0, metadata={"help": "weight of the retain term", "min": 0.0})
    retain_loss: str = field(default="nll", metadata={"help": "\"nll\" | \"kl\"", "choices": ("nll", "kl")})

    def requirements(self) -> Requirements:
        return Requirements(retain=self.alpha > 0, reference_model=self.alpha > 0 and self.retain_loss == "kl")


def simnpo_method_loss(model: torch.nn.Module, batch: MethodBatch, cfg: SimNPOConfig, ref: Reference) -> LossOutput:
    avg_nll = sequence_mean_nll(forward_logits(model, batch.forget), batch.forget.labels)
    forget = simnpo_loss(avg_nll, cfg.beta, cfg.delta)
    loss = cfg.gamma * forget
    logs = {"simnpo": forget.item(), "forget_nll": avg_nll.mean().item()}
    if cfg.alpha:
        if batch.retain is None:
            raise ValueError("SimNPO needs a retain batch (engine bug)")
        retain, retain_logs = retain_term(model, batch.retain, cfg.retain_loss, ref)
        loss = loss + cfg.alpha * retain
        logs.update(retain_logs)
    return LossOutput(loss, logs)


SPEC = MethodSpec(
    name="simnpo",
    config=SimNPOConfig,
    loss=simnpo_method_loss,
    summary="reference-free, length-normalised NPO (+ retain NLL) (Fan et al. 2024)",
    defaults={"train": TOFU_TRAIN, "stop": TOFU_STOP, "refinement": {"enabled": False}},
)
