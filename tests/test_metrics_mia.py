"""Membership-inference scores, AUC orientation and PrivLeak on hand-made numbers; the model-level
scores agree with a direct computation from the logits."""

from __future__ import annotations

import math
import zlib

import pytest
import torch

from obliviate.data.encode import Encoded
from obliviate.metrics.likelihood import TokenLogProbs, token_logprobs
from obliviate.metrics.mia import (
    MUSE_RETAIN_AUC,
    loss_score,
    mia_auc,
    mia_scores,
    min_k_plus_plus_score,
    min_k_score,
    privleak,
    zlib_score,
)


def tlp(values, mu=None, sigma=None):
    t = lambda v: None if v is None else torch.tensor(v, dtype=torch.float64)  # noqa: E731
    return TokenLogProbs(t(values), t(mu), t(sigma))


def test_loss_zlib_and_min_k_hand_computed():
    s = tlp([-1.0, -2.0, -3.0, -4.0])
    assert loss_score(s) == 2.5
    assert zlib_score(s, "hello hello") == 2.5 / len(zlib.compress(b"hello hello"))
    assert min_k_score(s, 0.5) == 3.5  # lowest two: -4, -3
    assert min_k_score(s, 0.2) == 4.0  # floor(0.8) = 0 -> at least one token (open-unlearning's guard)
    assert math.isnan(min_k_score(s, 0.2, guard=False))  # MUSE/RWKU: no guard
    assert min_k_score(s, 1.0) == 2.5


def test_min_k_plus_plus_hand_computed():
    s = tlp([-1.0, -2.0], mu=[-1.5, -1.5], sigma=[0.5, 1.0])  # z = [1.0, -0.5]
    assert min_k_plus_plus_score(s, 0.5) == -0.5
    assert min_k_plus_plus_score(s, 1.0) == 0.25
    with pytest.raises(ValueError, match="distribution_stats"):
        min_k_plus_plus_score(tlp([-1.0]), 0.5)


def test_auc_orientation_hand_computed():
    members, others = [0.9, 0.8, 0.3], [0.1, 0.4]
    # member-above-non-member pairs: 2 + 2 + 1 of 6
    assert mia_auc(members, others, high_means_member=True).value == pytest.approx(5 / 6)
    # the same numbers read as losses (high = non-member): the other 1 of 6 pairs
    res = mia_auc(members, others, high_means_member=False)
    assert res.value == pytest.approx(1 / 6) and "member" in res.details["orientation"]


def test_privleak_reading():
    assert privleak(1.0, 0.5).value == pytest.approx(-100.0)  # forget set fully detected: like the target
    assert privleak(0.5, 0.5).value == pytest.approx(0.0)
    assert privleak(0.25, 0.5).value == pytest.approx(50.0)  # over-unlearned: positive
    # MUSE's hard-coded News retrain AUC is in MUSE's orientation (= 1 - ours)
    assert privleak(1 - 0.4772, 1 - MUSE_RETAIN_AUC["news"]).value == pytest.approx(0.0)


def test_model_scores_match_direct_computation(tiny_model, tiny_tokenizer):
    texts = ["The quick brown fox jumps over the lazy dog.", "It was the best of times."]
    examples = [Encoded(tuple(tiny_tokenizer(t)["input_ids"]), 0, str(k)) for k, t in enumerate(texts)]
    scores = mia_scores(tiny_model, examples, texts, attacks=("loss", "zlib", "mink", "minkpp", "ref"), k=0.4,
                        reference_model=tiny_model)
    assert set(scores) == {"mia_loss", "mia_zlib", "mia_mink_40", "mia_minkpp_40", "mia_ref"}
    assert scores["mia_ref"].per_sample == pytest.approx([0.0, 0.0], abs=1e-6)  # reference = itself
    assert scores["mia_mink_40"].details["high_means_member"] is False
    assert scores["mia_minkpp_40"].details["high_means_member"] is True
    with torch.no_grad():
        ids = torch.tensor([examples[0].ids])
        logp = torch.log_softmax(tiny_model(ids).logits[0, :-1].double(), -1)
    target = ids[0, 1:]
    picked = logp[torch.arange(len(target)), target]
    assert scores["mia_loss"].per_sample[0] == pytest.approx(-float(picked.mean()), rel=1e-5)
    mu = (logp.exp() * logp).sum(-1)
    sigma = ((logp.exp() * logp.square()).sum(-1) - mu.square()).sqrt()
    z = (picked - mu) / sigma
    count = max(1, math.floor(0.4 * len(z)))
    assert scores["mia_minkpp_40"].per_sample[0] == pytest.approx(float(z.sort().values[:count].mean()), rel=1e-4)
    full = token_logprobs(tiny_model, examples[:1], region="all")[0]
    assert full.logprobs.tolist() == pytest.approx(picked.tolist(), rel=1e-5)
