"""Small helpers shared by the model-based metrics (eval mode, devices, special ids)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode (no dropout) and no autograd for the duration; restores the training flag.

    The engine calls metrics in the middle of training, so a metric must never leave the model
    in eval mode nor measure it with dropout on.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        if was_training:
            model.train()


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def eos_ids(model: torch.nn.Module) -> list[int]:
    """The ids that end a generation: the generation config's eos (int or list), else the model config's."""
    value = None
    gen = getattr(model, "generation_config", None)
    if gen is not None:
        value = gen.eos_token_id
    if value is None:
        value = getattr(model.config, "eos_token_id", None)
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, list | tuple) else [int(value)]


def resolve_pad_id(model: torch.nn.Module, pad_id: int | None = None) -> int:
    """Any id works as padding under an attention mask; prefer the configured pad, then eos, then 0."""
    if pad_id is not None:
        return int(pad_id)
    for value in (getattr(model.config, "pad_token_id", None), *eos_ids(model)):
        if value is not None:
            return int(value)
    return 0


def greedy_generation_config(*, max_new_tokens: int, pad_token_id: int, eos_token_id: list[int],
                             num_beams: int = 1):
    """A fully explicit GenerationConfig: unset fields would be filled from the model's own
    generation_config (e.g. a repetition_penalty), which would silently change "greedy"."""
    from transformers import GenerationConfig

    return GenerationConfig(
        max_new_tokens=max_new_tokens, min_new_tokens=0, do_sample=False, num_beams=num_beams,
        num_return_sequences=1, repetition_penalty=1.0, no_repeat_ngram_size=0, length_penalty=1.0,
        early_stopping=False, pad_token_id=pad_token_id, eos_token_id=list(eos_token_id),
        bad_words_ids=None, renormalize_logits=False,
    )
