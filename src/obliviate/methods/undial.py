"""UNDIAL: self-distillation with adjusted logits (Dong et al. 2024, arXiv 2402.10052).

    L = gamma * mean_t H( softmax(z_ref,t - beta * onehot(y_t)), softmax(z_theta,t) ) + alpha * L_retain

The student is distilled toward the original model's distribution with the true token's logit
lowered by beta: a bounded target, so training cannot run away like gradient ascent. Only label
positions count (padding and, by default, the prompt are masked); open-unlearning averages over
every position and its -100 labels index the vocabulary from the end (id V-100) when it builds the
penalty -- a bug with no meaningful faithful variant, so none is offered. Defaults from
open-unlearning ``configs/trainer/UNDIAL.yaml``: beta 10, gamma 1, alpha 0, lr 1e-4, 10 epochs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from obliviate.methods.base import LossOutput, MethodBatch, MethodConfig, MethodSpec, Reference, Requirements
from obliviate.methods.graddiff import TOFU_STOP, TOFU_TRAIN
from obliviate.methods.losses import add_retain, forward_logits, undial_loss


@dataclass
class UNDIALConfig(MethodConfig):
    beta: float = field(default=10.0, metadata={"help": "how much the true token's reference logit is lowered"})
    gamma: float = field(default=1.0, metadata={"help": "weight of the distillation term"})
    alpha: float = field(default=0.0, metadata={"help": "weight of the retain term (UNDIAL.yaml: 0, none)"})
    retain_loss: str = field(default="nll", metadata={"help": "retain term: nll | kl"})

    def requirements(self) -> Requirements:
        return Requirements(retain=self.alpha > 0, reference_model=True)


def undial_method_loss(model: torch.nn.Module, batch: MethodBatch, cfg: UNDIALConfig, ref: Reference) -> LossOutput:
    ref_logits = ref.logits(batch.forget)
    forget = undial_loss(forward_logits(model, batch.forget), ref_logits, batch.forget.labels, cfg.beta)
    return LossOutput(*add_retain(cfg.gamma * forget, {"undial": forget.item()}, model, batch.retain, cfg.alpha,
                                  cfg.retain_loss, ref, "UNDIAL"))


SPEC = MethodSpec(
    name="undial",
    config=UNDIALConfig,
    loss=undial_method_loss,
    summary="self-distillation toward the original logits with the true token lowered (Dong et al. 2024)",
    defaults={"train": {**TOFU_TRAIN, "lr": 1e-4}, "stop": TOFU_STOP, "refinement": {"enabled": False}},
)
