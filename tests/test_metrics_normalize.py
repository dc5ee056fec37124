"""s_z / s_m reproduce the ICU paper's Table I, and the registry declares every direction once."""

from __future__ import annotations

import pytest

from obliviate.evaluation.registry import direction, key_info, metric_spec, register
from obliviate.metrics import normalized_scores

REG = {m: direction(m) for m in ("acc", "ma", "loss")}

# ICU paper, Table I, 125M block (OPT, KUMPR, DPO, KL, LLMU, ICU); PPL ">1000" entered as 1000.
RUNS = ["OPT", "KUMPR", "DPO", "KL", "LLMU", "ICU"]
TABLE = {
    "el_10": [7.5, 0.7, 17.4, 4.9, 3.3, 4.4],
    "ma": [52.9, 19.1, 49.4, 56.2, 58.7, 55.6],
    "bertscore_f1": [49.2, 29.7, 42.2, 54.3, 43.1, 53.3],
    "entropy": [3.014, 0.712, 1.643, 3.670, 1.825, 3.833],
    "cls_acc": [42.7, 35.1, 39.0, 42.6, 42.7, 43.3],
    "dia_f1": [10.8, 3.7, 1.8, 9.9, 10.3, 10.3],
    "pile_ppl": [29.1, 1000, 61.2, 27.0, 23.6, 21.6],
    "wiki_ppl": [38.0, 1000, 158.5, 54.0, 47.4, 40.1],
    "gpt": [3.08, 1.05, 1.99, 3.64, 2.98, 3.92],
}
PAPER_SZ = [2.23, -5.72, -5.01, 2.69, 2.03, 3.78]
PAPER_SM = [1.31, -1.79, -1.34, 1.45, 1.19, 1.84]


def test_reproduces_icu_table_one():
    runs = {r: {m: v[k] for m, v in TABLE.items()} for k, r in enumerate(RUNS)}
    directions = {"cls_acc": True, "dia_f1": True, "pile_ppl": False, "wiki_ppl": False,
                  **{m: direction(m) for m in ("el_10", "ma", "bertscore_f1", "entropy", "gpt")}}
    scores = normalized_scores(runs, metrics=list(TABLE), directions=directions)
    assert [round(scores[r]["s_z"], 2) for r in RUNS] == PAPER_SZ
    assert [round(scores[r]["s_m"], 2) for r in RUNS] == PAPER_SM


def test_hand_computed_two_runs():
    # two runs, one up-metric and one down-metric: z = +-1 each (population std); min-max 1/0 for
    # acc, 0/1 for MA subtracted -> a: 1 - 0, b: 0 - 1
    scores = normalized_scores({"a": {"acc": 0.8, "ma": 0.2}, "b": {"acc": 0.6, "ma": 0.4}}, directions=REG)
    assert scores["a"] == {"s_z": pytest.approx(2.0), "s_m": pytest.approx(1.0)}
    assert scores["b"] == {"s_z": pytest.approx(-2.0), "s_m": pytest.approx(-1.0)}


def test_constant_metric_contributes_nothing_and_unknown_directions_are_refused():
    scores = normalized_scores({"a": {"ma": 0.5}, "b": {"ma": 0.5}}, directions=REG)
    assert scores["a"]["s_z"] == 0.0 and scores["b"]["s_m"] == 0.0
    with pytest.raises(ValueError, match="no direction"):
        normalized_scores({"a": {"loss": 1.0}, "b": {"loss": 2.0}}, metrics=["loss"], directions=REG)


def test_directions_declared_once():
    assert direction("el_10") is False and direction("el_5") is False
    assert direction("ma") is False and direction("entropy") is True
    assert direction("rougeL_recall") is False and direction("model_utility") is True
    assert direction("mia_mink_40") is None and direction("no_such_metric") is None
    with pytest.raises(KeyError):
        metric_spec("no_such_metric")
    with pytest.raises(ValueError, match="already registered"):
        register("ma", "utility", "conflict")


def test_a_memorization_metric_flips_on_groups_the_model_must_keep():
    # one declaration of rougeL_recall; its direction follows the group
    assert direction("forget/rougeL_recall") is False and direction("retain/rougeL_recall") is True
    assert direction("verbmem_f/rougeL_f1") is False and direction("knowmem_r/rougeL_f1") is True
    assert direction("retain/ppl") is False and direction("forget/entropy") is True
    assert direction("retain/truth_ratio") is True and direction("forget/truth_ratio") is None
    assert direction("sample/forget/leak@8") is False and direction("robust/sample/held") is True
    assert direction("robust/relearn_half/recovery") is False
    assert direction("lm_eval/x/y") is None and direction("lm_eval/x/y", {"lm_eval/x/y": True}) is True
    assert "kept knowledge" in key_info("retain/ma").description
