"""LLMU: large language model unlearning (Yao et al. 2023, arXiv 2310.10683;
kevinyaobytedance/llm_unlearn ``unlearn_harm.py``).

    L = w_forget * (-NLL(forget completion))
      + w_mismatch * NLL(random retain completions given the forget prompt)   ("random mismatch")
      + w_retain * KL(p_original || p_theta)(retain)                           ("normal" data)

Defaults from ``unlearn_harm.py``: bad_weight 0.5, random_weight 1, normal_weight 1, 5 random
answers per forget prompt (redrawn every step there; every epoch here, seeded), AdamW lr 2e-6,
batch 2, linear decay, at most 1000 steps. Its random answers come from a normal QA set; here
they are the completions of the retain set. Its KL is the cross-entropy H(p_ref, p_theta) over
all positions (``kl: reference_ce``); the default is the true masked KL.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from obliviate.methods.base import LossOutput, MethodBatch, MethodConfig, MethodSpec, Reference, Requirements
from obliviate.methods.losses import forward_logits, kl_term, mean_nll


@dataclass
class LLMUConfig(MethodConfig):
    forget_weight: float = field(default=0.5, metadata={"help": "--bad_weight", "min": 0.0})
    mismatch_weight: float = field(default=1.0, metadata={"help": "--random_weight", "min": 0.0})
    retain_weight: float = field(default=1.0, metadata={"help": "--normal_weight", "min": 0.0})
    mismatch_answers: int = field(default=5, metadata={"help": "K random answers per forget prompt", "min": 1})
    kl: str = field(default="kl", metadata={
        "help": "\"kl\" | \"reference_ce\" (the reference code's cross-entropy)", "choices": ("kl", "reference_ce")})

    def requirements(self) -> Requirements:
        return Requirements(retain=True, alternates="retain_completions" if self.mismatch_weight else None,
                            alternates_per_sample=self.mismatch_answers, resample_alternates=True,
                            reference_model=self.retain_weight > 0)


def llmu_loss(model: torch.nn.Module, batch: MethodBatch, cfg: LLMUConfig, ref: Reference) -> LossOutput:
    nll = mean_nll(forward_logits(model, batch.forget), batch.forget.labels)
    loss, logs = -cfg.forget_weight * nll, {"forget_nll": nll.item()}
    if cfg.mismatch_weight:
        if batch.alternate is None:
            raise ValueError("LLMU needs the mismatch batch (engine bug)")
        mismatch = mean_nll(forward_logits(model, batch.alternate), batch.alternate.labels)
        loss = loss + cfg.mismatch_weight * mismatch
        logs["mismatch_nll"] = mismatch.item()
    if cfg.retain_weight:
        if batch.retain is None:
            raise ValueError("LLMU needs a retain batch (engine bug)")
        logits = forward_logits(model, batch.retain)
        with torch.no_grad():
            ref_logits = ref.logits(batch.retain)
        term, true_kl = kl_term(ref_logits, logits, batch.retain.labels, cfg.kl)
        loss = loss + cfg.retain_weight * term
        logs["retain_kl"] = true_kl.item()
    return LossOutput(loss, logs)


SPEC = MethodSpec(
    name="llmu",
    config=LLMUConfig,
    loss=llmu_loss,
    summary="ascent on forget + random-mismatch NLL + KL to the original on retain (Yao et al. 2023)",
    defaults={
        "train": {"optimizer": "adamw", "lr": 2e-6, "betas": [0.9, 0.999], "weight_decay": 0.0, "batch_size": 2,
                  "scheduler": "linear", "warmup_epochs": 0.0, "seed": 8888},
        "stop": {"max_epochs": 10},
        "refinement": {"enabled": False},
    },
)
