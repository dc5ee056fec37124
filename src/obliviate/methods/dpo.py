"""IdkDPO: DPO with a refusal as the preferred answer (TOFU, Maini et al. 2024; open-unlearning ``DPO``).

    L = gamma * -(2/beta) log sigmoid(beta * [(log pi(refusal|x) - log pi_ref(refusal|x))
                                              - (log pi(y|x) - log pi_ref(y|x))]) + alpha * L_retain

Each forget prompt x gets one refusal ("I don't know"-style), drawn once with the run's seed
(open-unlearning redraws one per visit; fixing it lets the engine cache pi_ref of both answers
as 2N floats instead of keeping a reference model). Refusals come from a small list written
for obliviate (below) or any file of lines, e.g. TOFU's ``idontknow.jsonl``.

Defaults from open-unlearning ``configs/trainer/DPO.yaml`` (beta 0.1, gamma 1, alpha 1, retain
NLL) with the TOFU optimiser settings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from obliviate.errors import DataError
from obliviate.methods.base import LossOutput, MethodBatch, MethodConfig, MethodSpec, Reference, Requirements
from obliviate.methods.graddiff import TOFU_STOP, TOFU_TRAIN
from obliviate.methods.losses import dpo_loss, forward_logits, retain_term, sequence_logprob

# Written for obliviate (not copied from any dataset): short, varied refusals.
BUILTIN_REFUSALS = (
    "I don't know.",
    "I'm not sure about that.",
    "I don't have that information.",
    "I can't recall that.",
    "I have no information about this.",
    "That is something I don't know.",
    "I'm unable to answer that.",
    "I don't remember the details of that.",
    "Sorry, I don't know the answer.",
    "I have no record of that.",
    "I cannot say.",
    "That's not something I can tell you.",
    "I'm afraid I don't know.",
    "I have no knowledge of that.",
    "I couldn't tell you.",
    "No idea, sorry.",
)


def load_refusals(path: str | None) -> tuple[str, ...]:
    """Refusal texts: the built-in list, or one per line of a file (plain text lines, JSON strings,
    or JSON objects with a ``text``/``answer``/``response`` field)."""
    if path is None:
        return BUILTIN_REFUSALS
    file = Path(path)
    if not file.is_file():
        raise DataError(file, "refusals file not found")
    out = []
    for lineno, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            value = line
        if isinstance(value, dict):
            value = value.get("text") or value.get("answer") or value.get("response")
        if not isinstance(value, str) or not value.strip():
            raise DataError(file, "expected a refusal text", record=f"{lineno} (line {lineno})")
        out.append(value.strip())
    if not out:
        raise DataError(file, "holds no refusals")
    return tuple(out)


@dataclass
class IdkDPOConfig(MethodConfig):
    beta: float = 0.1
    gamma: float = 1.0  # weight of the DPO term
    alpha: float = 1.0  # weight of the retain term
    retain_loss: str = "nll"  # "nll" | "kl"
    refusals: str | None = None  # file of refusal texts; None = the built-in list

    def requirements(self) -> Requirements:
        return Requirements(retain=self.alpha > 0, alternates="refusals",
                            reference_model=self.alpha > 0 and self.retain_loss == "kl",
                            cached_logprobs=("forget", "alternate"))


def idkdpo_loss(model: torch.nn.Module, batch: MethodBatch, cfg: IdkDPOConfig, ref: Reference) -> LossOutput:
    if batch.alternate is None or batch.alternate_index is None:
        raise ValueError("IdkDPO needs the refusal batch (engine bug)")
    lose = sequence_logprob(forward_logits(model, batch.forget), batch.forget.labels)
    win = sequence_logprob(forward_logits(model, batch.alternate), batch.alternate.labels)
    lose_ref = ref.sequence_logprob("forget", batch.index).to(lose.device)
    win_ref = ref.sequence_logprob("alternate", batch.alternate_index).to(win.device)
    forget = dpo_loss(win, win_ref, lose, lose_ref, cfg.beta)
    loss = cfg.gamma * forget
    logs = {"dpo": forget.item(), "forget_log_ratio": (lose - lose_ref).mean().item(),
            "refusal_log_ratio": (win - win_ref).mean().item()}
    if cfg.alpha:
        if batch.retain is None:
            raise ValueError("IdkDPO needs a retain batch (engine bug)")
        retain, retain_logs = retain_term(model, batch.retain, cfg.retain_loss, ref)
        loss = loss + cfg.alpha * retain
        logs.update(retain_logs)
    return LossOutput(loss, logs)


SPEC = MethodSpec(
    name="idkdpo",
    config=IdkDPOConfig,
    loss=idkdpo_loss,
    summary="DPO preferring a refusal over the forget answer (+ retain NLL) (TOFU IdkDPO)",
    defaults={"train": TOFU_TRAIN, "stop": TOFU_STOP, "refinement": {"enabled": False}},
    aliases=("dpo", "idk_dpo", "idk"),
)
