"""CE-U: cross-entropy unlearning (Yang 2025, "CE-U: Cross Entropy Unlearning", arXiv 2503.01224).

    L = mean_t H( softmax(stopgrad(z_t) with z_t[y_t] = -inf), softmax(z_t) ),   t > first n answer tokens

The target is the model's own next-token distribution without the true token, so the gradient
(softmax(z) - target) lowers the true token and leaves the rest of the distribution as it is --
no ascent that runs away, no reference model. Forget-only, as in open-unlearning ``CEU.yaml``
(ignore_first_n_answer_tokens 1); optimiser settings of its community run (lr 1e-5).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from obliviate.methods.base import LossOutput, MethodBatch, MethodConfig, MethodSpec, Reference, Requirements
from obliviate.methods.graddiff import TOFU_STOP, TOFU_TRAIN
from obliviate.methods.losses import ceu_loss, forward_logits


@dataclass
class CEUConfig(MethodConfig):
    ignore_first: int = field(default=1, metadata={
        "help": "label tokens at the start of each answer left out of the loss (CEU.yaml "
                "ignore_first_n_answer_tokens: 1)"})

    def requirements(self) -> Requirements:
        return Requirements()


def ceu_method_loss(model: torch.nn.Module, batch: MethodBatch, cfg: CEUConfig, ref: Reference) -> LossOutput:
    loss = ceu_loss(forward_logits(model, batch.forget), batch.forget.labels, cfg.ignore_first)
    return LossOutput(loss, {"ceu": loss.item()})


SPEC = MethodSpec(
    name="ceu",
    config=CEUConfig,
    loss=ceu_method_loss,
    summary="cross-entropy toward the model's own distribution without the true token (Yang 2025)",
    defaults={"train": TOFU_TRAIN, "stop": TOFU_STOP, "refinement": {"enabled": False}},
    aliases=("ce_u",),
)
