"""n sampled continuations per prompt, the prompt prefilled ONCE and its KV cache shared.

``model.generate(num_return_sequences=n)`` repeats the prompt n times before the first forward,
so the prompt is encoded n times. Here the prompt goes through the model once, its cache is
repeated n times (``DynamicCache.batch_repeat_interleave``) and the n rows decode together with
transformers' own temperature / top-p warpers. ``benchmarks/bench_attacks.py`` measures the two
side by side. ``shared_prefill=False`` runs the n independent rows through ``generate``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from obliviate.data.encode import Encoded
from obliviate.metrics._model import eos_ids, evaluating, model_device
from obliviate.metrics.generation import Generation
from obliviate.utils import progress


def _warpers(temperature: float, top_p: float):
    from transformers.generation.logits_process import (
        LogitsProcessorList,
        TemperatureLogitsWarper,
        TopPLogitsWarper,
    )

    out = LogitsProcessorList()
    if temperature != 1.0:
        out.append(TemperatureLogitsWarper(temperature))
    if top_p < 1.0:
        out.append(TopPLogitsWarper(top_p))
    return out


def _stops(model, tokenizer) -> list[int]:
    stop = eos_ids(model)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in stop:
        stop.append(int(tokenizer.eos_token_id))
    return stop


def _cut(ids: list[int], stop: list[int]) -> list[int]:
    for j, t in enumerate(ids):
        if t in stop:
            return ids[:j + 1]
    return ids


def sample_continuations(model, tokenizer, examples: Sequence[Encoded], *, n: int = 32,
                         max_new_tokens: int | None = None, temperature: float = 1.0, top_p: float = 1.0,
                         seed: int = 0, shared_prefill: bool = True) -> list[list[Generation]]:
    """n samples per example (``max_new_tokens=None``: the example's completion length)."""
    stop = _stops(model, tokenizer)
    device = model_device(model)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    warp = _warpers(temperature, top_p)
    out: list[list[Generation]] = []
    with evaluating(model):
        for e in progress(list(examples), desc="sample", total=len(examples)):
            new = max_new_tokens if max_new_tokens is not None else len(e.ids) - e.prompt_len
            prompt = torch.tensor([e.ids[:e.prompt_len]], device=device)
            if shared_prefill:
                rows = _decode_shared(model, prompt, n, new, warp, gen, stop)
            else:
                rows = _decode_rows(model, prompt, n, new, temperature, top_p, stop)
            out.append([Generation(ids, tokenizer.decode(ids, skip_special_tokens=True))
                        for ids in (_cut(r, stop) for r in rows)])
    return out


def _decode_shared(model, prompt: torch.Tensor, n: int, new: int, warp, gen: torch.Generator,
                   stop: list[int]) -> list[list[int]]:
    first = model(input_ids=prompt, use_cache=True)
    cache = first.cache if getattr(first, "cache", None) is not None else first.past_key_values
    cache.batch_repeat_interleave(n)
    logits = first.logits[:, -1].float().repeat(n, 1)
    tokens = torch.empty((n, 0), dtype=torch.long)
    done = torch.zeros(n, dtype=torch.bool)
    stop_t = torch.tensor(stop, dtype=torch.long)
    for _ in range(new):
        seq = torch.cat([prompt.cpu().expand(n, -1), tokens], dim=1)
        probs = torch.softmax(warp(seq, logits.cpu()), dim=-1)
        nxt = torch.multinomial(probs, 1, generator=gen)
        tokens = torch.cat([tokens, nxt], dim=1)
        done |= torch.isin(nxt.squeeze(1), stop_t)
        if bool(done.all()):
            break
        step = model(input_ids=nxt.to(prompt.device), cache=cache, use_cache=True)
        logits = step.logits[:, -1].float()
    return tokens.tolist()


def _decode_rows(model, prompt: torch.Tensor, n: int, new: int, temperature: float, top_p: float,
                 stop: list[int]) -> list[list[int]]:
    from transformers import GenerationConfig

    cfg = GenerationConfig(max_new_tokens=new, min_new_tokens=0, do_sample=True, temperature=temperature,
                           top_p=top_p, top_k=0, num_beams=1, num_return_sequences=1, repetition_penalty=1.0,
                           pad_token_id=stop[0] if stop else 0, eos_token_id=stop)
    rows = prompt.expand(n, -1)
    ids = model.generate(input_ids=rows, attention_mask=torch.ones_like(rows), generation_config=cfg)
    return ids[:, prompt.shape[1]:].cpu().tolist()
