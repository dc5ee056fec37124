"""LoRA for every method (``train.lora.enabled=true``), through peft.

Only small low-rank adapters train; the base weights stay exactly the original model. Two
things follow, and they are why LoRA is an option of the engine rather than of a method:

* **The reference is free.** A method's KL term needs the original model; with LoRA it is the
  same module with its adapter switched off (``with model.disable_adapter():``, see
  ``engine.reference.AdapterReference``) -- no second copy of the weights on any device.
* **Optimizer state is tiny.** Adam keeps two moments per *trainable* parameter, i.e. per adapter
  weight only.

Saving (``train.lora.save``): ``merged`` (default) folds the adapters into the weights and
writes an ordinary Hugging Face folder, indistinguishable from a full fine-tune; ``adapter``
writes peft's adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``, a few MB),
which ``obliviate.models.load_model`` and ``AutoModelForCausalLM.from_pretrained`` load on top of
the base model named in it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from obliviate.engine.config import LoraOptions
from obliviate.errors import ObliviateError


def target_modules(opts: LoraOptions) -> str | list[str] | None:
    """peft's ``target_modules``: ``"all-linear"``, None (peft's per-architecture table) or names."""
    value = opts.target_modules.strip()
    if value == "all-linear":
        return "all-linear"
    if value == "auto":
        return None
    return [name.strip() for name in value.split(",") if name.strip()]


def peft_config(opts: LoraOptions):
    from peft import LoraConfig

    return LoraConfig(r=opts.r, lora_alpha=opts.alpha, lora_dropout=opts.dropout, bias="none",
                      target_modules=target_modules(opts), task_type="CAUSAL_LM")


def apply_lora(model: torch.nn.Module, opts: LoraOptions) -> torch.nn.Module:
    """``model`` wrapped as a peft model whose only trainable parameters are the adapters.

    The adapters start as a no-op (peft initialises B = 0), so the wrapped model *is* the
    original model until the first update.
    """
    from peft import get_peft_model

    try:
        wrapped = get_peft_model(model, peft_config(opts))
    except ValueError as e:  # unknown architecture for "auto", module names that match nothing, ...
        raise ObliviateError(f"train.lora: {str(e).splitlines()[0]}") from None
    return wrapped


def is_lora(model: torch.nn.Module) -> bool:
    return bool(getattr(model, "peft_config", None)) and hasattr(model, "disable_adapter")


def set_adapter_dropout(model: torch.nn.Module, active: bool) -> None:
    """Adapter dropout follows ``train.lora.dropout``, independently of the base model's dropout
    (which the engine keeps off, as the references do)."""
    for name, module in model.named_modules():
        if name.endswith("lora_dropout") or ".lora_dropout." in name:
            module.train(active)


def adapter_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The adapter weights exactly as ``save_pretrained`` writes them to ``adapter_model.safetensors``."""
    from peft import get_peft_model_state_dict

    return get_peft_model_state_dict(model)


def merge(model: torch.nn.Module) -> torch.nn.Module:
    """The plain model with the adapters folded into its weights (in place)."""
    return model.merge_and_unload()


def save_adapter(model: torch.nn.Module, tokenizer, out: str | Path) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def rebuild_from_state_dict(unwrapped: torch.nn.Module, state_dict: dict[str, torch.Tensor],
                            opts: LoraOptions | None) -> torch.nn.Module:
    """A plain CPU copy of a model whose weights were sharded (ZeRO-3, FSDP), from its gathered
    full state dict; with LoRA the adapters are merged. Only the main process calls this."""
    from transformers import AutoModelForCausalLM

    base = unwrapped.get_base_model() if is_lora(unwrapped) else unwrapped
    dtype = next(iter(state_dict.values())).dtype if state_dict else torch.float32
    fresh = AutoModelForCausalLM.from_config(base.config, dtype=dtype)
    if base.generation_config is not None:
        fresh.generation_config = base.generation_config
    if opts is not None and opts.enabled:
        fresh = apply_lora(fresh, opts)
    missing, unexpected = fresh.load_state_dict(state_dict, strict=False)
    tied = set(getattr(fresh, "_tied_weights_keys", None) or [])
    missing = [k for k in missing if not any(k.endswith(t) for t in tied)]
    if missing or unexpected:
        raise ObliviateError(f"gathered weights do not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})")
    fresh.eval()
    return merge(fresh) if opts is not None and opts.enabled else fresh
