"""KUMPR: knowledge unlearning by gradient ascent (Jang et al., ACL 2023, arXiv 2210.01504).

    L = -NLL(forget)

Defaults from joeljang/knowledge-unlearning (``configs/example.json``, ``models/Neo_Model.py``):
Adam, lr 5e-5, betas (0.9, 0.98), no weight decay or scheduler; the effective batch is the
whole forget set, so one epoch is exactly one gradient step (``batch_size: 0``); at most 20
epochs; stop when mean EL10 < 0.0499 and mean MA < 0.2994 (the GPT-Neo-125M "unseen data"
levels; recalibrate for other models with ``stop.calibrate_on``). The reference ascends on the
whole 200-token row: ``loss_region: all``; our default is the completion.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from obliviate.methods.base import LossOutput, MethodBatch, MethodConfig, MethodSpec, Reference
from obliviate.methods.losses import forward_logits, mean_nll


@dataclass
class KUMPRConfig(MethodConfig):
    pass


def kumpr_loss(model: torch.nn.Module, batch: MethodBatch, cfg: KUMPRConfig, ref: Reference) -> LossOutput:
    nll = mean_nll(forward_logits(model, batch.forget), batch.forget.labels)
    return LossOutput(-nll, {"forget_nll": nll.item()})


SPEC = MethodSpec(
    name="kumpr",
    config=KUMPRConfig,
    loss=kumpr_loss,
    summary="gradient ascent on the forget set, one step per epoch (Jang et al. 2023)",
    defaults={
        "train": {"optimizer": "adam", "lr": 5e-5, "betas": [0.9, 0.98], "eps": 1e-8, "weight_decay": 0.0,
                  "batch_size": 0, "scheduler": "constant", "seed": 42},
        "eval": {"ma_region": "all", "el_region": "all"},
        # What the thresholds were set on (KUMPR's code): MA and EL_10 over the whole 200-token row
        # (use pile:N:row).
        "stop": {"el_threshold": 0.0499, "ma_threshold": 0.2994, "max_epochs": 20},
        "refinement": {"enabled": False},
    },
    aliases=("ga", "gradient_ascent", "gradascent"),
)
