"""Decoder blocks by index, for any decoder-only model: their hidden states and their parameters.

Representation methods (RMU) name a layer and the parameters to train by *index* -- "block 7",
"the MLP output projection of blocks 5, 6, 7" -- never by one architecture's module path
(``model.layers.7.mlp.down_proj`` in Llama/Qwen/Mistral/SmolLM, ``transformer.h.7.mlp.c_proj`` in
GPT-2/GPT-Neo). ``decoder_layers`` finds the stack of blocks structurally, so the same config
works on every decoder, wrapped or not (peft, DDP, DeepSpeed): transformers has no such lookup
(``get_decoder()`` returns the inner model, whose attribute name for its blocks varies).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from transformers.pytorch_utils import Conv1D

from obliviate.errors import ObliviateError

MLP_OUT = "mlp_out"  # the last projection of each block: Llama down_proj, GPT-2/GPT-Neo mlp.c_proj, Phi fc2
ALL = "all"


def decoder_layers(model: torch.nn.Module) -> tuple[str, torch.nn.ModuleList]:
    """(qualified name, the ModuleList of decoder blocks): the longest ModuleList whose children
    all have one class (the repeated transformer block)."""
    best: tuple[str, torch.nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.ModuleList) or len(module) == 0 or "lora_" in name:
            continue
        if len({type(m) for m in module}) == 1 and (best is None or len(module) > len(best[1])):
            best = (name, module)
    if best is None:
        raise ObliviateError(f"{type(model).__name__}: found no stack of decoder blocks (a ModuleList of layers)")
    return best


def resolve_index(index: int, n_layers: int, what: str) -> int:
    """A layer index (negative counts from the end) checked against the model's depth."""
    if not -n_layers <= index < n_layers:
        raise ObliviateError(f"{what}={index}, but the model has {n_layers} decoder layers "
                             f"(indices 0..{n_layers - 1}, or -1..-{n_layers})")
    return index % n_layers


def _linear_like(module: torch.nn.Module) -> bool:
    return isinstance(module, torch.nn.Linear | Conv1D)


def mlp_out_module(block: torch.nn.Module) -> str:
    """Name (inside ``block``) of its MLP output projection: the last registered Linear/Conv1D
    that is not a LoRA part. Transformer blocks register attention before the MLP and the MLP's
    up/gate projections before its down projection, so that last one is the down projection."""
    names = [n for n, m in block.named_modules() if _linear_like(m) and "lora_" not in n]
    if not names:
        raise ObliviateError(f"{type(block).__name__}: no linear projection found in the decoder block")
    name = names[-1]
    return name[: -len(".base_layer")] if name.endswith(".base_layer") else name  # peft's wrapped layer


def select_parameters(model: torch.nn.Module, layers: Sequence[int], pattern: str) -> list[str]:
    """Qualified names of the parameters to train: in blocks ``layers``, those matching ``pattern``:
    ``mlp_out`` (the MLP output projection's weight, the WMDP recipe), ``all`` (every parameter of
    the block), or a regular expression searched in the parameter name relative to the block
    (``mlp\\.down_proj\\.weight``). Under LoRA only adapter parameters in the match are trainable."""
    prefix, blocks = decoder_layers(model)
    lora = any("lora_" in n for n, _ in model.named_parameters())
    names: list[str] = []
    for index in layers:
        i = resolve_index(index, len(blocks), "method_args.trainable_layers")
        block = blocks[i]
        module = mlp_out_module(block) if pattern == MLP_OUT else ""
        for rel, p in block.named_parameters():
            if pattern == MLP_OUT:
                hit = rel.startswith(module + ".") and (lora or rel == module + ".weight")
            elif pattern == ALL:
                hit = True
            else:
                hit = re.search(pattern, rel) is not None
            if hit and (not lora or ("lora_" in rel and p.requires_grad)):
                names.append(f"{prefix}.{i}.{rel}")
    if not names:
        raise ObliviateError(f"method_args.trainable_params={pattern!r} matches no parameter in decoder layers "
                             f"{list(layers)}" + (" (under LoRA, target that module with train.lora)" if lora else ""))
    return names


def hidden_output(output) -> torch.Tensor:
    """A decoder block's hidden states ([B, T, H]): blocks return a tensor or a tuple starting with it."""
    return output[0] if isinstance(output, tuple | list) else output


@contextmanager
def capture_hidden(model: torch.nn.Module, layer: int) -> Iterator[list[torch.Tensor]]:
    """Within the block, every forward of ``model`` appends the output of decoder block ``layer``
    to the yielded list (a forward hook; removed on exit)."""
    _, blocks = decoder_layers(model)
    i = resolve_index(layer, len(blocks), "method_args.layer")
    captured: list[torch.Tensor] = []
    handle = blocks[i].register_forward_hook(lambda _m, _inp, out: captured.append(hidden_output(out)))
    try:
        yield captured
    finally:
        handle.remove()
