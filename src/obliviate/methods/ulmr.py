"""ULMR: unlearning via negative responses and model parameter averaging (Shi et al., EMNLP 2024
Industry Track). Algorithm 1:

1-4. Restructure the forget set: rewrite every instruction twice with the rewrite prompt and
     give every instruction of x_r = {x'_1, x'_2, x_i} a negative response (negative prompt)
     -> D_fr (``obliviate.ulmr.restructure``; cached and editable in the run folder).
5.   SFT of the original model p_θ on D_fr, maximising log p(y | x) of the response only
     (eq. 1) -> p_f. This file's loss: the mean NLL of the completion tokens.
6.   Parameter averaging θ_u = α·θ + (1−α)·θ_f (``obliviate.ulmr.merge``) -> p_u.

The paper's SFT settings (§4.4): AdamW, lr 1e-4, 5 epochs, batch 16 -- the defaults below. It
does not give α, the weight decay, the schedule or the generator's sampling settings; our
choices are in docs/ulmr.md.

This file is the method: its config and the loss of step 5 on the shared engine. The recipe of
all three steps is ``obliviate.recipes.ulmr`` (``obliviate ulmr run`` and ``obliviate unlearn
--method ulmr``). Training the loss directly on raw forget data would *reinforce* that data, so
the config refuses to run unless the forget set is the restructured one
(``method_args.restructured=true``, which the recipe sets for its SFT step).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from obliviate.errors import ObliviateError
from obliviate.methods.base import LossOutput, MethodBatch, MethodConfig, MethodSpec, Reference, Requirements
from obliviate.methods.losses import forward_logits, mean_nll
from obliviate.ulmr.generators import GeneratorConfig
from obliviate.ulmr.prompts import NEGATIVE_PROMPT, REWRITE_PROMPT
from obliviate.ulmr.restructure import RestructureConfig

log = logging.getLogger(__name__)


@dataclass
class ULMRConfig(MethodConfig):
    alpha: float = field(default=0.5, metadata={
        "help": "θ_u = α·θ_original + (1−α)·θ_SFT; not given in the paper (see docs/ulmr.md)", "min": 0.0,
        "max": 1.0})
    rewrites: int = field(default=2, metadata={"help": "§3.1: each instruction rewritten twice", "min": 0})
    include_original: bool = field(default=True, metadata={"help": "x_r = {x'_1, x'_2, x_i}"})
    rewrite_prompt: str = field(default=REWRITE_PROMPT, metadata={"help": "prompt that asks the generator to rewrite an instruction (the paper's)"})
    negative_prompt: str = field(default=NEGATIVE_PROMPT, metadata={"help": "prompt that asks the generator for a negative response (the paper's)"})
    seed: int = field(default=0, metadata={"help": "generation seed (rewrites are sampled)"})
    generator: GeneratorConfig = field(default_factory=GeneratorConfig, metadata={"help": "who writes rewrites and negative responses (template | model | openai)"})
    restructured: bool = field(default=False, metadata={
        "help": "True once the forget set *is* D_fr (the recipe's SFT step sets it); SFT on raw forget data "
                "would reinforce it."})

    def requirements(self) -> Requirements:
        if not self.restructured:
            raise ObliviateError(
                "ULMR fine-tunes on a restructured forget set (rewritten instructions + negative responses), "
                "not on the forget answers: run `obliviate ulmr run --model M --forget F --out DIR` (it builds "
                "that set, trains and averages), or train on a file made by `obliviate ulmr prepare` with "
                "method_args.restructured=true and average with `obliviate merge`")
        return Requirements()

    def restructure_config(self) -> RestructureConfig:
        return RestructureConfig(rewrites=self.rewrites, include_original=self.include_original,
                                 rewrite_prompt=self.rewrite_prompt, negative_prompt=self.negative_prompt,
                                 seed=self.seed, generator=self.generator)


def ulmr_loss(model: torch.nn.Module, batch: MethodBatch, cfg: ULMRConfig, ref: Reference) -> LossOutput:
    """Eq. 1: −log p(y^m | x^m), averaged over the response tokens (labels mask the instruction)."""
    nll = mean_nll(forward_logits(model, batch.forget), batch.forget.labels)
    return LossOutput(nll, {"sft_nll": nll.item()})


# §4.4 of the paper. Weight decay and schedule are not given: plain AdamW without decay, constant lr.
ULMR_TRAIN = {"optimizer": "adamw", "lr": 1e-4, "batch_size": 16, "gradient_accumulation_steps": 1,
              "weight_decay": 0.0, "scheduler": "constant", "warmup_epochs": 0.0}
ULMR_STOP = {"max_epochs": 5, "min_epochs": 1, "el_threshold": None, "ma_threshold": None}

SPEC = MethodSpec(
    name="ulmr",
    config=ULMRConfig,
    loss=ulmr_loss,
    summary="rewritten instructions + negative responses, SFT, then weight averaging (the whole recipe)",
    defaults={"train": ULMR_TRAIN, "stop": ULMR_STOP, "refinement": {"enabled": False}},
)
