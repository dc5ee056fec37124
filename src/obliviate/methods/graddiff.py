"""GradDiff: gradient difference (Liu et al. 2022; the TOFU baseline, Maini et al. 2024).

    L = gamma * (-NLL(forget)) + alpha * L_retain,   L_retain = NLL(retain) or KL(p_ref || p_theta)(retain)

Defaults from open-unlearning ``configs/trainer/GradDiff.yaml`` + the TOFU experiment config
(gamma 1, alpha 1, retain NLL; AdamW lr 1e-5, weight decay 0.01, batch 8 x 4 accumulation,
10 epochs, linear schedule with one warm-up epoch).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from obliviate.methods.base import LossOutput, MethodBatch, MethodConfig, MethodSpec, Reference, Requirements
from obliviate.methods.losses import forward_logits, mean_nll, retain_term


@dataclass
class GradDiffConfig(MethodConfig):
    gamma: float = field(default=1.0, metadata={"help": "weight of the forget (ascent) term", "min": 0.0})
    alpha: float = field(default=1.0, metadata={"help": "weight of the retain term", "min": 0.0})
    retain_loss: str = field(default="nll", metadata={"help": "\"nll\" | \"kl\"", "choices": ("nll", "kl")})

    def requirements(self) -> Requirements:
        return Requirements(retain=self.alpha > 0, reference_model=self.alpha > 0 and self.retain_loss == "kl")


def graddiff_loss(model: torch.nn.Module, batch: MethodBatch, cfg: GradDiffConfig, ref: Reference) -> LossOutput:
    nll = mean_nll(forward_logits(model, batch.forget), batch.forget.labels)
    loss, logs = -cfg.gamma * nll, {"forget_nll": nll.item()}
    if cfg.alpha:
        if batch.retain is None:
            raise ValueError("GradDiff needs a retain batch (engine bug)")
        retain, retain_logs = retain_term(model, batch.retain, cfg.retain_loss, ref)
        loss = loss + cfg.alpha * retain
        logs.update(retain_logs)
    return LossOutput(loss, logs)


# TOFU/open-unlearning fine-tuning defaults shared by the TOFU-family baselines (GradDiff, KL, NPO, SimNPO, IdkDPO).
TOFU_TRAIN = {"optimizer": "adamw", "lr": 1e-5, "betas": [0.9, 0.999], "weight_decay": 0.01, "batch_size": 8,
              "gradient_accumulation_steps": 4, "scheduler": "linear", "warmup_epochs": 1.0, "seed": 0}
TOFU_STOP = {"max_epochs": 10}

SPEC = MethodSpec(
    name="graddiff",
    config=GradDiffConfig,
    loss=graddiff_loss,
    summary="gradient ascent on forget + descent on retain (TOFU baseline)",
    defaults={"train": TOFU_TRAIN, "stop": TOFU_STOP, "refinement": {"enabled": False}},
    aliases=("grad_diff", "gd"),
)
