"""TOFU: hand-computed probability / truth ratio / KS / harmonic mean, the model-level log, and
the published per-split numbers reproduced from TOFU's own saved eval logs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from obliviate.data.records import QARecord
from obliviate.metrics import tofu

FIXTURES = Path(__file__).parent / "fixtures" / "tofu"


def test_probabilities_hand_computed():
    res = tofu.answer_probability([0.0, math.log(2)])
    assert res.per_sample == pytest.approx([1.0, 0.5]) and res.value == pytest.approx(0.75)
    # P~ true 0.5, wrong 0.5 and 0.25 -> 0.5 / 1.25
    opt = tofu.option_probability([math.log(2)], [[math.log(2), math.log(4)]])
    assert opt.value == pytest.approx(0.4)


def test_truth_ratio_both_aggregations_and_means():
    para, pert = [1.0], [[2.0, 4.0]]
    r = tofu.truth_ratios(para, pert)[0]
    assert r == pytest.approx(math.exp(2.0))  # exp(mean perturbed loss - paraphrased loss)
    assert tofu.truth_ratio(para, pert, split="forget").value == pytest.approx(math.exp(-2.0))
    assert tofu.truth_ratio(para, pert, split="retain").value == pytest.approx(1 - math.exp(-2.0))
    arith = tofu.truth_ratios(para, pert, mean_kind="arithmetic")[0]
    assert arith == pytest.approx(math.exp(-1.0) / ((math.exp(-2.0) + math.exp(-4.0)) / 2))
    # a paraphrase less likely than the perturbed answers: R < 1, retain form clips at 0
    assert tofu.truth_ratio([3.0], [[1.0]], split="retain").value == 0.0
    assert tofu.truth_ratio([3.0], [[1.0]], split="forget").value == pytest.approx(math.exp(-2.0))


def test_forget_quality_and_model_utility_hand_computed():
    same = tofu.forget_quality([0.1, 0.5, 0.9], [0.1, 0.5, 0.9])
    assert same.value == pytest.approx(1.0) and same.details["ks_statistic"] == 0.0
    apart = tofu.forget_quality([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    assert apart.details["ks_statistic"] == 1.0
    assert apart.value == pytest.approx(0.1)  # exact two-sided p: 2 / C(6, 3)
    assert tofu.model_utility([1.0] * 8 + [0.5]).value == pytest.approx(9 / 10)
    with pytest.raises(ValueError, match="9 numbers"):
        tofu.model_utility([1.0] * 8)


def test_evaluate_split_log_matches_completion_nll(tiny_model, tiny_tokenizer):
    from obliviate.data.encode import encode_record
    from obliviate.metrics.likelihood import completion_nll

    recs = [QARecord("q1", "Where was Alice born?", "In Lyon.", paraphrased_answer="Lyon, France.",
                     perturbed_answers=("In Paris.", "In Rome.", "In Oslo."))]
    log = tofu.evaluate_tofu_split(tiny_model, tiny_tokenizer, recs, "forget", max_new_tokens=6)
    direct = completion_nll(tiny_model, [encode_record(recs[0], tiny_tokenizer, answer=a)
                                         for a in ("In Lyon.", "Lyon, France.", "In Paris.", "In Rome.", "In Oslo.")])
    assert log["avg_gt_loss"] == [pytest.approx(direct[0], rel=1e-6)]
    assert log["avg_paraphrased_loss"] == [pytest.approx(direct[1], rel=1e-6)]
    assert log["average_perturb_loss"][0] == pytest.approx(direct[2:], rel=1e-6)
    assert len(log["rougeL_recall"]) == 1 and 0.0 <= log["rougeL_recall"][0] <= 1.0
    with pytest.raises(Exception, match="paraphrased"):
        tofu.evaluate_tofu_split(tiny_model, tiny_tokenizer, [QARecord("x", "q", "a", perturbed_answers=("b",))],
                                 "forget")


def test_split_scores_from_a_saved_log(tmp_path):
    log = {"avg_gt_loss": {"0": 0.0, "1": math.log(2)}, "rougeL_recall": {"0": 1.0, "1": 0.5},
           "avg_paraphrased_loss": {"0": 1.0, "1": 1.0}, "average_perturb_loss": {"0": [2.0, 4.0], "1": [1.0]}}
    scores = tofu.split_scores(log, "retain")
    assert scores["tofu_prob"].value == pytest.approx(0.75)
    assert scores["rougeL_recall"].value == pytest.approx(0.75)
    assert scores["truth_ratio"].value == pytest.approx((1 - math.exp(-2.0) + 0.0) / 2)
    path = tmp_path / "log.json"
    path.write_text(json.dumps({"eval_log_forget.json": log}))
    assert tofu.retain_truth_ratios(path) == pytest.approx([math.exp(2.0), 1.0])


# --------------------------------------------------------------------------- published numbers

def _fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


@pytest.mark.skipif(not (FIXTURES / "llama2-7b_full.json").is_file(), reason="TOFU log fixture not present")
def test_reproduces_published_llama2_model_utility_and_forget_quality():
    full = tofu.load_tofu_logs(FIXTURES / "llama2-7b_full.json")
    retain = tofu.load_tofu_logs(FIXTURES / "llama2-7b_retain90.json")
    row = tofu.tofu_summary(full, retain)
    assert row["model_utility"] == pytest.approx(0.6227, abs=5e-5)
    assert row["forget_quality"] == pytest.approx(1.834e-21, rel=1e-3)
    assert row["ks_statistic"] == pytest.approx(0.3967, abs=5e-5)
    assert row["retain/tofu_prob"] == pytest.approx(0.9895, abs=5e-5)
    assert row["real_authors/truth_ratio"] == pytest.approx(0.5962, abs=5e-5)
    assert row["world_facts/rougeL_recall"] == pytest.approx(0.8825, abs=5e-5)
    assert row["retain/truth_ratio"] == pytest.approx(0.4747, abs=5e-5)
    assert row["forget/truth_ratio"] == pytest.approx(0.5160, abs=5e-5)
    retain_row = tofu.tofu_summary(retain)
    assert retain_row["forget/truth_ratio"] == pytest.approx(0.6740, abs=5e-5)
    # forget quality straight from the saved file, as `obliviate audit --retain-results` reads it
    fq = tofu.forget_quality(tofu.log_ratios(full["forget"]), tofu.retain_truth_ratios(FIXTURES / "llama2-7b_retain90.json"))
    assert fq.value == pytest.approx(row["forget_quality"])
