"""NPO: Negative Preference Optimization (Zhang et al. 2024, arXiv 2404.05868).

    L = gamma * -(2/beta) log sigmoid(-beta * (log pi_theta(y|x) - log pi_ref(y|x))) + alpha * L_retain

log pi(y|x) is the *sum* of the completion's token log-probs (the paper's definition; MUSE's
reference code builds it from logits differently, see open-unlearning's README). pi_ref of the
fixed forget data never changes, so the engine computes it once before the first update and
keeps only N floats -- no reference model in memory.

Defaults: beta 0.1 (paper and open-unlearning ``NPO.yaml``), gamma 1, alpha 1 with retain NLL
("NPO+RT"), TOFU optimiser settings (AdamW lr 1e-5, 10 epochs).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from obliviate.methods.base import LossOutput, MethodBatch, MethodConfig, MethodSpec, Reference, Requirements
from obliviate.methods.graddiff import TOFU_STOP, TOFU_TRAIN
from obliviate.methods.losses import forward_logits, npo_loss, retain_term, sequence_logprob


@dataclass
class NPOConfig(MethodConfig):
    beta: float = field(default=0.1, metadata={"help": "inverse temperature of the NPO loss (Zhang et al. 2024: 0.1)", "gt": 0.0})
    gamma: float = field(default=1.0, metadata={"help": "weight of the NPO term", "min": 0.0})
    alpha: float = field(default=1.0, metadata={
        "help": "weight of the retain term (0 = plain NPO, no retain set needed)", "min": 0.0})
    retain_loss: str = field(default="nll", metadata={"help": "\"nll\" | \"kl\"", "choices": ("nll", "kl")})

    def requirements(self) -> Requirements:
        return Requirements(retain=self.alpha > 0, reference_model=self.alpha > 0 and self.retain_loss == "kl",
                            cached_logprobs=("forget",))


def npo_method_loss(model: torch.nn.Module, batch: MethodBatch, cfg: NPOConfig, ref: Reference) -> LossOutput:
    logp = sequence_logprob(forward_logits(model, batch.forget), batch.forget.labels)
    ref_logp = ref.sequence_logprob("forget", batch.index).to(logp.device)
    forget = npo_loss(logp, ref_logp, cfg.beta)
    loss = cfg.gamma * forget
    logs = {"npo": forget.item(), "log_ratio": (logp - ref_logp).mean().item()}
    if cfg.alpha:
        if batch.retain is None:
            raise ValueError("NPO needs a retain batch (engine bug)")
        retain, retain_logs = retain_term(model, batch.retain, cfg.retain_loss, ref)
        loss = loss + cfg.alpha * retain
        logs.update(retain_logs)
    return LossOutput(loss, logs)


SPEC = MethodSpec(
    name="npo",
    config=NPOConfig,
    loss=npo_method_loss,
    summary="negative preference optimization on forget (+ retain NLL) (Zhang et al. 2024)",
    defaults={"train": TOFU_TRAIN, "stop": TOFU_STOP, "refinement": {"enabled": False}},
)
