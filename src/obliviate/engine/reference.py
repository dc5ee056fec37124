"""The original model, as methods may consult it while the trained copy moves away from it.

What a method gets, chosen from its ``Requirements`` and ``train.lora``:

* ``cached_logprobs``: NPO and IdkDPO only need log pi_ref(y|x) of *fixed* sequences, so the
  engine computes them once with the model itself before its first update and keeps N floats
  per part (saved with every checkpoint, since after a resume the model is no longer original).
  This is the only reference information that can be cached: KL terms (ICU, KL, LLMU,
  ``retain_loss=kl``) need the whole next-token distribution at every position, V floats per
  token ([128, 200, 50257] fp32 = 5 GB for ICU's forget set, what its reference code keeps
  on the host), so they run the reference on the fly instead -- one forward, no backward.
* ``reference_model`` without LoRA: ``FrozenReference``, a frozen copy (optionally bf16) made
  before accelerate wraps the model; under DeepSpeed ZeRO-3 / FSDP it is sharded like the
  trained model (``prepare_frozen``).
* ``reference_model`` with LoRA: ``AdapterReference``, the trained module itself with its
  adapter switched off. No copy: the base weights never change, so they *are* the original.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from obliviate.data.encode import Batch, Encoded
from obliviate.engine.data import batch_of
from obliviate.methods.losses import forward_logits, sequence_logprob
from obliviate.models import DTYPES


class _Cached:
    """``sequence_logprob`` from the engine's cache (shared by both references)."""

    cache: dict[str, torch.Tensor]

    def sequence_logprob(self, part: str, index: torch.Tensor) -> torch.Tensor:
        if part not in self.cache:
            raise RuntimeError(f"no cached reference log-probs for {part!r}; declare it in requirements()")
        return self.cache[part][index.cpu()]


class FrozenReference(_Cached):
    """Implements ``obliviate.methods.base.Reference`` with a frozen copy (or, when ``model`` is
    None, with the cache alone)."""

    def __init__(self, model: torch.nn.Module | None, cache: dict[str, torch.Tensor] | None = None,
                 autocast: Callable[[], AbstractContextManager] = nullcontext):
        self.model, self.cache, self._autocast = model, cache or {}, autocast

    def logits(self, batch: Batch) -> torch.Tensor:
        return self.apply(lambda model: forward_logits(model, batch))

    def apply(self, fn: Callable[[torch.nn.Module], Any]) -> Any:
        if self.model is None:
            raise RuntimeError("this method declared no reference_model in its requirements()")
        with torch.no_grad(), self._autocast():
            return fn(self.model)


class AdapterReference(_Cached):
    """Implements ``obliviate.methods.base.Reference`` for a LoRA run: the trained (peft) model
    with its adapter disabled. ``model`` is the unwrapped peft model; under ZeRO-3/FSDP its
    forward gathers the shards like any training forward (every process calls it equally often)."""

    def __init__(self, model: torch.nn.Module, cache: dict[str, torch.Tensor] | None = None,
                 autocast: Callable[[], AbstractContextManager] = nullcontext):
        self.model, self.cache, self._autocast = model, cache or {}, autocast

    def logits(self, batch: Batch) -> torch.Tensor:
        return self.apply(lambda model: forward_logits(model, batch))

    def apply(self, fn: Callable[[torch.nn.Module], Any]) -> Any:
        with torch.no_grad(), self.model.disable_adapter(), self._autocast():
            return fn(self.model)


def frozen_copy(model: torch.nn.Module, dtype: str = "float32") -> torch.nn.Module:
    """A detached, eval-mode copy of ``model`` whose parameters never get gradients."""
    ref = copy.deepcopy(model)
    ref.to(DTYPES[dtype]).eval().requires_grad_(False)
    return ref


def prepare_frozen(acc, ref: torch.nn.Module) -> torch.nn.Module:
    """Place the frozen copy like the trained model: on the device (one process, DDP, ZeRO-1/2:
    every process holds full weights anyway), or sharded under ZeRO-3 (its own DeepSpeed engine in
    eval mode, the TRL recipe) and FSDP2 (accelerate's ``fully_shard`` wrapping). Call it after
    the trained model was prepared, so the DeepSpeed config holds no "auto" values any more."""
    from accelerate.utils import DistributedType

    if acc.distributed_type == DistributedType.DEEPSPEED and acc.state.deepspeed_plugin.zero_stage == 3:
        import deepspeed

        config = copy.deepcopy(acc.state.deepspeed_plugin.deepspeed_config)
        for key in ("optimizer", "scheduler"):
            config.pop(key, None)
        hidden = getattr(getattr(ref, "config", None), "hidden_size", None)
        if hidden:  # TRL's bucket sizes for an inference-only ZeRO-3 engine
            config["zero_optimization"].update(reduce_bucket_size=hidden * hidden,
                                               stage3_param_persistence_threshold=10 * hidden,
                                               stage3_prefetch_bucket_size=int(0.9 * hidden * hidden))
        engine, *_ = deepspeed.initialize(model=ref, config=config)
        engine.eval()
        return engine
    if acc.distributed_type == DistributedType.FSDP:
        from accelerate.utils.fsdp_utils import fsdp2_prepare_model

        return fsdp2_prepare_model(acc, ref).eval()
    return ref.to(acc.device)


@torch.no_grad()
def precompute_sequence_logprobs(model: torch.nn.Module, examples: Sequence[Encoded], pad_id: int, region: str,
                      batch_size: int, device: torch.device,
                      autocast: Callable[[], AbstractContextManager] = nullcontext) -> torch.Tensor:
    """Sum of label-token log-probs of each example ([N] float32, CPU), computed exactly as the
    losses compute them (same collation, same positions), so NPO's log-ratio starts at 0."""
    was_training = model.training
    model.eval()
    out = []
    try:
        for s in range(0, len(examples), batch_size):
            batch = batch_of(examples[s:s + batch_size], pad_id, region).to(device)
            with autocast():
                out.append(sequence_logprob(forward_logits(model, batch), batch.labels).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)
