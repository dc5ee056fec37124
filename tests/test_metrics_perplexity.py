"""Sliding-window perplexity scores every token once (= HF's labelled-window recipe, summed per
token), and ICU's mode is the unweighted mean of non-overlapping window losses."""

from __future__ import annotations

import math

import pytest
import torch

from obliviate.metrics import perplexity

TEXT = ("It was the best of times, it was the worst of times. Alice was born in 1961 in Lyon and "
        "worked as a clockmaker. The quick brown fox jumps over the lazy dog.")


def hf_window_loss(model, ids, first_scored):
    """HF's recipe for one window: labels -100 on the context, mean loss x scored tokens."""
    x = torch.tensor([ids])
    labels = x.clone()
    labels[:, :first_scored] = -100
    with torch.no_grad():
        loss = model(input_ids=x, labels=labels).loss
    return float(loss), int((labels[:, 1:] != -100).sum())


def test_one_window_equals_the_model_loss(tiny_model, tiny_tokenizer):
    ids = tiny_tokenizer(TEXT)["input_ids"]
    res = perplexity(tiny_model, tiny_tokenizer, [TEXT], max_length=512)
    loss, count = hf_window_loss(tiny_model, ids, 0)
    assert res.details["tokens_scored"] == len(ids) - 1 == count
    assert res.value == pytest.approx(math.exp(loss), rel=1e-5)
    assert res.per_sample == [pytest.approx(res.value)]


def test_sliding_windows_score_each_token_once(tiny_model, tiny_tokenizer):
    ids = tiny_tokenizer(TEXT)["input_ids"]
    res = perplexity(tiny_model, tiny_tokenizer, [ids], max_length=16, stride=6)
    assert res.details["tokens_scored"] == len(ids) - 1
    total, count, prev_end = 0.0, 0, 0
    for begin in range(0, len(ids), 6):
        end = min(begin + 16, len(ids))
        loss, n = hf_window_loss(tiny_model, ids[begin:end], max(prev_end - begin, 0))
        total, count, prev_end = total + loss * n, count + n, end
        if end == len(ids):
            break
    assert count == len(ids) - 1
    assert res.value == pytest.approx(math.exp(total / count), rel=1e-5)


def test_icu_mode_is_unweighted_mean_of_window_losses(tiny_model, tiny_tokenizer):
    texts = [TEXT, "Bob Smith lives at 12 Harbour Road."]
    res = perplexity(tiny_model, tiny_tokenizer, texts, mode="icu", max_length=20, join="\n\n")
    ids = tiny_tokenizer("\n\n".join(texts))["input_ids"]
    losses = [hf_window_loss(tiny_model, ids[b:b + 20], 0)[0] for b in range(0, len(ids), 20) if len(ids[b:b + 20]) > 1]
    assert res.name == "ppl_icu" and res.per_sample == []
    assert res.value == pytest.approx(math.exp(sum(losses) / len(losses)), rel=1e-5)
