"""WGA: weighted gradient ascent (Wang et al. 2025, "Rethinking LLM Unlearning Objectives: A
Gradient Perspective and Go Beyond", arXiv 2502.19301).

    L = gamma * mean_t[ p_t^beta * log p_t ] + alpha * L_retain,   p_t = pi_theta(y_t | x, y_<t), detached weight

Plain ascent pushes hardest on tokens that are already unlikely; the weight p^beta moves the
effort to the tokens the model still predicts. No reference model: none is held (open-unlearning
deep-copies the model anyway, doubling memory). Defaults from open-unlearning
``configs/trainer/WGA.yaml``: beta 1, gamma 1, alpha 1 with retain NLL, lr 1e-5, 5 epochs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from obliviate.methods.base import LossOutput, MethodBatch, MethodConfig, MethodSpec, Reference, Requirements
from obliviate.methods.graddiff import TOFU_TRAIN
from obliviate.methods.losses import add_retain, forward_logits, wga_loss


@dataclass
class WGAConfig(MethodConfig):
    beta: float = field(default=1.0, metadata={"help": "exponent of the token weight p^beta (WGA.yaml: 1)"})
    gamma: float = field(default=1.0, metadata={"help": "weight of the weighted-ascent term"})
    alpha: float = field(default=1.0, metadata={"help": "weight of the retain term (0: no retain set needed)"})
    retain_loss: str = field(default="nll", metadata={"help": "retain term: nll | kl (kl holds a reference model)"})

    def requirements(self) -> Requirements:
        return Requirements(retain=self.alpha > 0, reference_model=self.alpha > 0 and self.retain_loss == "kl")


def wga_method_loss(model: torch.nn.Module, batch: MethodBatch, cfg: WGAConfig, ref: Reference) -> LossOutput:
    forget = wga_loss(forward_logits(model, batch.forget), batch.forget.labels, cfg.beta)
    return LossOutput(*add_retain(cfg.gamma * forget, {"wga": forget.item()}, model, batch.retain, cfg.alpha,
                                  cfg.retain_loss, ref, "WGA"))


SPEC = MethodSpec(
    name="wga",
    config=WGAConfig,
    loss=wga_method_loss,
    summary="gradient ascent weighted by p^beta per token (+ retain NLL) (Wang et al. 2025)",
    defaults={"train": TOFU_TRAIN, "stop": {"max_epochs": 5}, "refinement": {"enabled": False}},
)
