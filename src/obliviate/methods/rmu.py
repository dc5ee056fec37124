"""RMU: representation misdirection for unlearning (Li et al. 2024, WMDP, arXiv 2403.03218).

    L = gamma * MSE(h_l(forget), c * u) + alpha * MSE(h_l(retain), h_l^ref(retain))

h_l is the output of decoder block ``layer`` (a forward hook, ``methods.layers``), u a fixed
random unit vector (uniform [0, 1) entries, normalised, drawn from ``direction_seed``) and c the
steering coefficient: forget activations are pushed toward a meaningless direction while retain
activations stay at the original model's. Only ``trainable_params`` of ``trainable_layers`` are
trained -- by index, so the same config fits Llama, Qwen, SmolLM, GPT-2 and GPT-Neo. Under LoRA
the reference is the adapter-disabled model, as for every method.

Defaults: the WMDP recipe (hidden states of block 7, train the MLP output projections of blocks
5, 6, 7; lr 5e-5, constant schedule) with open-unlearning ``RMU.yaml``'s steering coefficient 2,
gamma 1 and alpha 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from obliviate.data.encode import Batch
from obliviate.methods.base import LossOutput, MethodBatch, MethodConfig, MethodSpec, Reference, Requirements
from obliviate.methods.graddiff import TOFU_STOP, TOFU_TRAIN
from obliviate.methods.layers import MLP_OUT, capture_hidden, decoder_layers, resolve_index, select_parameters
from obliviate.methods.losses import forward_logits, masked_mse


@dataclass
class RMUConfig(MethodConfig):
    layer: int = field(default=7, metadata={"help": "decoder block whose output is steered (index; -1 = last)"})
    trainable_layers: list[int] = field(default_factory=lambda: [5, 6, 7], metadata={
        "help": "decoder blocks whose parameters are trained (indices)"})
    trainable_params: str = field(default=MLP_OUT, metadata={
        "help": "in those blocks: mlp_out (the MLP output projection), all, or a regex on the name inside the block"})
    steering_coeff: float = field(default=2.0, metadata={"help": "length c of the forget target c * u"})
    gamma: float = field(default=1.0, metadata={"help": "weight of the forget (misdirection) term"})
    alpha: float = field(default=1.0, metadata={"help": "weight of the retain term (activations kept at the original's)"})
    direction_seed: int = field(default=0, metadata={"help": "seed of the random direction u"})

    def requirements(self) -> Requirements:
        return Requirements(retain=self.alpha > 0, reference_model=self.alpha > 0)

    def trainable_parameters(self, model: torch.nn.Module) -> list[str]:
        resolve_index(self.layer, len(decoder_layers(model)[1]), "method_args.layer")  # fails before any training
        return select_parameters(model, self.trainable_layers, self.trainable_params)


def random_direction(size: int, seed: int) -> torch.Tensor:
    """The fixed unit vector u (float32, CPU): the same in every process and after a resume."""
    u = torch.rand(size, generator=torch.Generator().manual_seed(seed))
    return u / u.norm()


def layer_hidden(model: torch.nn.Module, batch: Batch, layer: int) -> torch.Tensor:
    with capture_hidden(model, layer) as captured:
        forward_logits(model, batch)
    return captured[-1]


def rmu_loss(model: torch.nn.Module, batch: MethodBatch, cfg: RMUConfig, ref: Reference) -> LossOutput:
    hidden = layer_hidden(model, batch.forget, cfg.layer)
    control = cfg.steering_coeff * random_direction(hidden.shape[-1], cfg.direction_seed).to(hidden.device)
    forget = masked_mse(hidden, control.expand_as(hidden), batch.forget.labels != -100)
    loss, logs = cfg.gamma * forget, {"rmu_forget": forget.item()}
    if cfg.alpha:
        if batch.retain is None:
            raise ValueError("RMU needs a retain batch (engine bug)")
        retain_hidden = layer_hidden(model, batch.retain, cfg.layer)
        ref_hidden = ref.apply(lambda original: layer_hidden(original, batch.retain, cfg.layer))
        retain = masked_mse(retain_hidden, ref_hidden, batch.retain.labels != -100)
        loss = loss + cfg.alpha * retain
        logs["rmu_retain"] = retain.item()
    return LossOutput(loss, logs)


SPEC = MethodSpec(
    name="rmu",
    config=RMUConfig,
    loss=rmu_loss,
    summary="steer one layer's forget activations to a random direction, keep retain ones (WMDP, Li et al. 2024)",
    defaults={"train": {**TOFU_TRAIN, "lr": 5e-5, "scheduler": "constant", "warmup_epochs": 0.0},
              "stop": TOFU_STOP, "refinement": {"enabled": False}},
)
