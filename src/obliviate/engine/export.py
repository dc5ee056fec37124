"""The final model out of a finished run: saved (main process) and hashed.

Every process must call ``export_model`` (gathering sharded weights is collective).

Replicated weights (one process, DDP, ZeRO-1/2): every process holds the model; each hashes its
own copy (``per_process_sha256``, identical unless the processes diverged). Sharded weights
(ZeRO-3, FSDP): the full state dict is gathered on the main process and loaded into a plain CPU
copy of the model there. LoRA: adapters merged into the weights (``train.lora.save=merged``) or
saved as a peft adapter folder (``adapter``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from obliviate.engine import distributed as dist
from obliviate.engine import lora
from obliviate.engine.config import LoraOptions
from obliviate.models import save_model


@dataclass
class ExportedModel:
    """The final model as ``export_model`` saved it."""

    model: torch.nn.Module | None  # usable in Python (None on non-main processes of a sharded run)
    sha256: str | None  # ``distributed.weights_sha256`` of what was saved (main process)
    format: str  # "hf" (ordinary folder) | "peft_adapter"
    per_process_sha256: list[str] = field(default_factory=list)  # replicated runs: every process's copy


def export_model(acc, prepared: torch.nn.Module, tokenizer, out: str | Path | None, *, sharded: bool,
                 lora_opts: LoraOptions) -> ExportedModel:
    """Save the trained model to ``out`` (None: save nothing) and return it with the SHA-256 of
    exactly what was saved."""
    adapter = lora_opts.enabled and lora_opts.save == "adapter"
    fmt = "peft_adapter" if adapter else "hf"
    unwrapped = acc.unwrap_model(prepared, keep_fp32_wrapper=False)
    if sharded:
        return _export_sharded(acc, prepared, unwrapped, tokenizer, out, adapter, lora_opts, fmt)
    if adapter:
        model, weights = unwrapped, lora.adapter_state_dict(unwrapped)
    else:
        model = lora.merge(unwrapped) if lora_opts.enabled else unwrapped
        weights = model.state_dict()
    sha = dist.weights_sha256(weights)
    per_process = dist.gather_objects(acc, sha)
    if acc.is_main_process and out is not None:
        if adapter:
            lora.save_adapter(model, tokenizer, out)
        else:
            save_model(model, tokenizer, out)
    acc.wait_for_everyone()
    return ExportedModel(model, sha, fmt, per_process)


def _export_sharded(acc, prepared, unwrapped, tokenizer, out, adapter: bool, lora_opts: LoraOptions,
                    fmt: str) -> ExportedModel:
    state_dict = acc.get_state_dict(prepared)  # collective; full weights on the main process
    if not acc.is_main_process:
        return ExportedModel(None, None, fmt)
    if adapter:
        from peft import get_peft_model_state_dict

        if out is not None:
            unwrapped.save_pretrained(out, state_dict=state_dict, safe_serialization=True)
            tokenizer.save_pretrained(out)
        return ExportedModel(None, dist.weights_sha256(get_peft_model_state_dict(unwrapped, state_dict)), fmt)
    with dist.ordinary_modules(acc):  # built on the main process alone: no zero.Init
        model = lora.rebuild_from_state_dict(unwrapped, state_dict, lora_opts if lora_opts.enabled else None)
    if out is not None:
        save_model(model, tokenizer, out)
    return ExportedModel(model, dist.weights_sha256(model.state_dict()), fmt)
