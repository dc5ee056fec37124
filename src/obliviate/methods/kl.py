"""KL: gradient ascent on forget + KL to the original model on retain (the TOFU baseline
"KL minimisation", Maini et al. 2024).

    L = gamma * (-NLL(forget)) + alpha * KL(p_original || p_theta)(retain)

TOFU's ``kl`` loss takes ``kl_div(log p_theta, log p_original, log_target=True)`` on retain
inputs, i.e. forward KL with the original model as target, averaged over every position, prompt
and padding included; we average over the counted (labelled, non-padding) positions. Defaults as for GradDiff
(open-unlearning TOFU config: AdamW lr 1e-5, 10 epochs, gamma 1, alpha 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from obliviate.methods.base import LossOutput, MethodBatch, MethodConfig, MethodSpec, Reference, Requirements
from obliviate.methods.graddiff import TOFU_STOP, TOFU_TRAIN
from obliviate.methods.losses import forward_logits, mean_nll, retain_term


@dataclass
class KLConfig(MethodConfig):
    gamma: float = field(default=1.0, metadata={"help": "weight of the forget (ascent) term", "min": 0.0})
    alpha: float = field(default=1.0, metadata={"help": "weight of the KL-on-retain term", "min": 0.0})

    def requirements(self) -> Requirements:
        return Requirements(retain=self.alpha > 0, reference_model=self.alpha > 0)


def kl_loss(model: torch.nn.Module, batch: MethodBatch, cfg: KLConfig, ref: Reference) -> LossOutput:
    nll = mean_nll(forward_logits(model, batch.forget), batch.forget.labels)
    loss, logs = -cfg.gamma * nll, {"forget_nll": nll.item()}
    if cfg.alpha:
        if batch.retain is None:
            raise ValueError("KL needs a retain batch (engine bug)")
        kl, kl_logs = retain_term(model, batch.retain, "kl", ref)
        loss = loss + cfg.alpha * kl
        logs.update(kl_logs)
    return LossOutput(loss, logs)


SPEC = MethodSpec(
    name="kl",
    config=KLConfig,
    loss=kl_loss,
    summary="gradient ascent on forget + KL to the original model on retain (TOFU baseline)",
    defaults={"train": TOFU_TRAIN, "stop": TOFU_STOP, "refinement": {"enabled": False}},
)
