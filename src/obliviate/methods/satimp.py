"""SatImp: saturation-importance loss reweighting (Yang et al. 2025, "Exploring Criteria of Loss
Reweighting to Enhance LLM Unlearning", arXiv 2505.11953).

    L = gamma * mean_t[ p_t^beta1 (1 - p_t)^beta2 * log p_t ] + alpha * L_retain   (detached weights)

The weight favours tokens that are likely but not yet saturated. No reference model is held.
Defaults: beta1 5, beta2 1 (open-unlearning ``SatImp.yaml``); gamma 1, alpha 0.1 from its class
and the community README -- the YAML has them reversed (gamma 0.1, alpha 1), see docs/methods.md;
lr 1e-5, 5 epochs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from obliviate.methods.base import LossOutput, MethodBatch, MethodConfig, MethodSpec, Reference, Requirements
from obliviate.methods.graddiff import TOFU_TRAIN
from obliviate.methods.losses import add_retain, forward_logits, satimp_loss


@dataclass
class SatImpConfig(MethodConfig):
    beta1: float = field(default=5.0, metadata={"help": "exponent of p in the token weight p^beta1 (1-p)^beta2"})
    beta2: float = field(default=1.0, metadata={"help": "exponent of (1-p) in the token weight"})
    gamma: float = field(default=1.0, metadata={"help": "weight of the reweighted-ascent term (README: 1)"})
    alpha: float = field(default=0.1, metadata={"help": "weight of the retain term (README: 0.1)"})
    retain_loss: str = field(default="nll", metadata={"help": "retain term: nll | kl (kl holds a reference model)"})

    def requirements(self) -> Requirements:
        return Requirements(retain=self.alpha > 0, reference_model=self.alpha > 0 and self.retain_loss == "kl")


def satimp_method_loss(model: torch.nn.Module, batch: MethodBatch, cfg: SatImpConfig, ref: Reference) -> LossOutput:
    forget = satimp_loss(forward_logits(model, batch.forget), batch.forget.labels, cfg.beta1, cfg.beta2)
    return LossOutput(*add_retain(cfg.gamma * forget, {"satimp": forget.item()}, model, batch.retain, cfg.alpha,
                                  cfg.retain_loss, ref, "SatImp"))


SPEC = MethodSpec(
    name="satimp",
    config=SatImpConfig,
    loss=satimp_method_loss,
    summary="gradient ascent weighted by p^b1 (1-p)^b2 per token (+ retain NLL) (Yang et al. 2025)",
    defaults={"train": TOFU_TRAIN, "stop": {"max_epochs": 5}, "refinement": {"enabled": False}},
)
