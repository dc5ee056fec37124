"""Perplexity over texts longer than the model's context.

``mode="sliding"`` (default, the Hugging Face "perplexity of fixed-length models" recipe done
exactly): windows of ``max_length`` tokens advance by ``stride``; each window scores only the
tokens not scored before, all earlier tokens of the window serve as context. Every token but
the first of a text is scored exactly once and PPL = exp(total NLL / scored tokens), i.e. token
weighted. (HF's doc snippet weights each window's *mean* loss by its target count, which is
off by one token per window; this sums per-token NLLs instead.)

``mode="icu"`` (ICU's ``valid.py``): non-overlapping windows of ``max_length`` (512) tokens,
each window's mean NLL (its first token unscored), PPL = exp(unweighted mean of the window
losses); the last, short window counts as much as a full one. With ``join="\\n\\n"`` the texts
are joined into one stream first, as ICU does for Pile and Wikitext.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from obliviate.data.encode import Encoded
from obliviate.errors import DataError
from obliviate.metrics.base import MetricResult, mean
from obliviate.metrics.likelihood import token_logprobs


def _context_size(model) -> int:
    cfg = model.config
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(cfg, key, None)
        if isinstance(value, int) and value > 0:
            return min(value, 1024)
    return 1024


def _windows(n_tokens: int, max_length: int, stride: int, mode: str) -> list[tuple[int, int, int]]:
    """(begin, end, first scored position within the window) for one token stream."""
    if mode == "icu":
        return [(b, min(b + max_length, n_tokens), 0) for b in range(0, n_tokens, max_length)
                if min(b + max_length, n_tokens) - b >= 2]
    out, prev_end = [], 0
    for begin in range(0, n_tokens, stride):
        end = min(begin + max_length, n_tokens)
        out.append((begin, end, max(prev_end - begin, 0)))
        prev_end = end
        if end == n_tokens:
            break
    return out


def perplexity(model, tokenizer, texts: Sequence[str] | Sequence[Sequence[int]], *,
               mode: Literal["sliding", "icu"] = "sliding", max_length: int | None = None,
               stride: int | None = None, join: str | None = None, batch_size: int = 8) -> MetricResult:
    """Perplexity of ``texts`` (strings, tokenized with special tokens, or token-id lists).

    ``per_sample`` is each text's own perplexity (``[]`` when ``join`` merges them into one
    stream); ``value`` is the corpus perplexity of the chosen ``mode``. Name ``"ppl"`` /
    ``"ppl_icu"``.
    """
    if mode not in ("sliding", "icu"):
        raise ValueError(f"mode must be 'sliding' or 'icu', got {mode!r}")
    max_length = max_length or (512 if mode == "icu" else _context_size(model))
    stride = stride or max(1, max_length // 2)
    if not 0 < stride <= max_length:
        raise ValueError(f"stride must be in 1..max_length ({max_length}), got {stride}")
    if join is not None:
        if not all(isinstance(t, str) for t in texts):
            raise ValueError("join needs string texts")
        texts = [join.join(texts)]  # type: ignore[arg-type]
    streams = [list(tokenizer(t, add_special_tokens=True)["input_ids"]) if isinstance(t, str) else list(t)
               for t in texts]
    windows: list[Encoded] = []
    owner: list[int] = []
    for k, ids in enumerate(streams):
        if len(ids) < 2:
            raise DataError("<texts>", f"has {len(ids)} token(s); perplexity needs at least 2", record=k)
        for begin, end, first in _windows(len(ids), max_length, stride, mode):
            windows.append(Encoded(tuple(ids[begin:end]), first))
            owner.append(k)
    scores = token_logprobs(model, windows, region="completion", batch_size=batch_size)
    nll = [0.0] * len(streams)
    count = [0] * len(streams)
    window_losses: list[list[float]] = [[] for _ in streams]
    for k, s in zip(owner, scores):
        nll[k] += s.nll_sum
        count[k] += len(s.logprobs)
        window_losses[k].append(s.mean_nll)
    if mode == "sliding":
        per_text = [math.exp(a / b) for a, b in zip(nll, count)]
        value = math.exp(sum(nll) / sum(count))
        name = "ppl"
    else:
        per_text = [math.exp(mean(w)) for w in window_losses]
        value = math.exp(mean([w for ws in window_losses for w in ws]))
        name = "ppl_icu"
    return MetricResult(name, value, [] if join is not None else per_text,
                        {"mode": mode, "max_length": max_length, "stride": stride if mode == "sliding" else max_length,
                         "windows": len(windows), "tokens_scored": sum(count), "joined": join is not None,
                         "aggregate": "exp(total NLL / tokens)" if mode == "sliding" else "exp(mean window loss)"})
