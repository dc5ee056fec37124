"""PDU: primal-dual constrained unlearning (Entesari et al. 2025, "Constrained Entropic
Unlearning: A Primal-Dual Framework for Large Language Models", arXiv 2506.05314).

    min_theta max_{lambda >= 0}  gamma * L_flat(forget) + lambda * (L_retain - epsilon)
    L_flat = mean_t (max_v z_t,v - mean_v z_t,v)^2          (logit-margin flattening)

The forget term flattens the next-token logits of the answer (bounded: it stops at uniform);
the retain loss is a constraint, L_retain <= epsilon, enforced by dual ascent: after every
optimizer step past ``dual_warmup_epochs``, lambda <- max(0, lambda + eta * (L_retain - epsilon))
with the step's retain loss (averaged over its micro-batches and processes). lambda is part of the
engine state, so it is saved with every checkpoint and a resumed run continues exactly.

Defaults from open-unlearning ``configs/trainer/PDU.yaml`` (gamma 1, initial lambda 1, eta 1,
per-step updates after 5 warm-up epochs, retain NLL) with the TOFU optimiser settings. The
reference code requires epsilon; here it may be left unset, meaning "the original model's retain
loss" (the first step's, before any update): the constraint is then "no worse than before".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from obliviate.methods.base import LossOutput, MethodBatch, MethodConfig, MethodSpec, Reference, Requirements
from obliviate.methods.graddiff import TOFU_STOP, TOFU_TRAIN
from obliviate.methods.losses import forward_logits, logit_margin_flattening, retain_term


@dataclass
class PDUConfig(MethodConfig):
    gamma: float = field(default=1.0, metadata={"help": "weight of the forget (logit flattening) term"})
    alpha: float = field(default=1.0, metadata={"help": "initial dual variable lambda (PDU.yaml alpha)"})
    epsilon: float | None = field(default=None, metadata={
        "help": "bound on the retain loss; null = the original model's retain loss (first step)"})
    dual_step_size: float = field(default=1.0, metadata={"help": "eta: dual ascent step (0 = lambda fixed)"})
    dual_warmup_epochs: int = field(default=5, metadata={"help": "epochs before lambda starts to move"})
    retain_loss: str = field(default="nll", metadata={"help": "retain term: nll | kl"})

    def requirements(self) -> Requirements:
        return Requirements(retain=True, reference_model=self.retain_loss == "kl")

    def initial_state(self) -> dict[str, float]:
        return {"lambda": float(self.alpha)}


def pdu_loss(model: torch.nn.Module, batch: MethodBatch, cfg: PDUConfig, ref: Reference) -> LossOutput:
    forget = logit_margin_flattening(forward_logits(model, batch.forget), batch.forget.labels)
    if batch.retain is None:
        raise ValueError("PDU needs a retain batch (engine bug)")
    retain, _ = retain_term(model, batch.retain, cfg.retain_loss, ref)
    lam = batch.state["lambda"]
    # The Lagrangian's -lambda * epsilon is a constant: it changes no gradient, so it is left out.
    loss = cfg.gamma * forget + lam * retain
    return LossOutput(loss, {"flatten": forget.item(), "pdu_retain": retain.item()})


def dual_update(cfg: PDUConfig, state: Mapping[str, float], stats: Mapping[str, float], epoch: int) -> dict[str, float]:
    """lambda <- max(0, lambda + eta * (retain loss - epsilon)) once the warm-up is over."""
    new = dict(state)
    if "epsilon" not in new:
        new["epsilon"] = float(cfg.epsilon) if cfg.epsilon is not None else stats["pdu_retain"]
    if epoch > cfg.dual_warmup_epochs:
        new["lambda"] = max(0.0, new["lambda"] + cfg.dual_step_size * (stats["pdu_retain"] - new["epsilon"]))
    return new


SPEC = MethodSpec(
    name="pdu",
    config=PDUConfig,
    loss=pdu_loss,
    summary="logit flattening on forget under a retain-loss bound, by primal-dual ascent (Entesari et al. 2025)",
    defaults={"train": TOFU_TRAIN, "stop": TOFU_STOP, "refinement": {"enabled": False}},
    update_state=dual_update,
)
