"""s_z / s_m reproduce the ICU paper's Table I, and the registry declares every direction once."""

from __future__ import annotations

import pytest

from obliviate.metrics import metric_direction, normalized_scores, register_metric

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
    directions = {"cls_acc": True, "dia_f1": True, "pile_ppl": False, "wiki_ppl": False}
    scores = normalized_scores(runs, metrics=list(TABLE), directions=directions)
    assert [round(scores[r]["s_z"], 2) for r in RUNS] == PAPER_SZ
    assert [round(scores[r]["s_m"], 2) for r in RUNS] == PAPER_SM


def test_hand_computed_two_runs():
    # two runs, one up-metric and one down-metric: z = +-1 each (population std); min-max 1/0 for
    # acc, 0/1 for MA subtracted -> a: 1 - 0, b: 0 - 1
    scores = normalized_scores({"a": {"acc": 0.8, "ma": 0.2}, "b": {"acc": 0.6, "ma": 0.4}})
    assert scores["a"] == {"s_z": pytest.approx(2.0), "s_m": pytest.approx(1.0)}
    assert scores["b"] == {"s_z": pytest.approx(-2.0), "s_m": pytest.approx(-1.0)}


def test_constant_metric_contributes_nothing_and_unknown_directions_are_refused():
    scores = normalized_scores({"a": {"ma": 0.5}, "b": {"ma": 0.5}})
    assert scores["a"]["s_z"] == 0.0 and scores["b"]["s_m"] == 0.0
    with pytest.raises(ValueError, match="no direction"):
        normalized_scores({"a": {"loss": 1.0}, "b": {"loss": 2.0}}, metrics=["loss"])


def test_directions_declared_once():
    assert metric_direction("el_10") is False and metric_direction("el_5") is False
    assert metric_direction("ma") is False and metric_direction("entropy") is True
    assert metric_direction("rougeL_recall") is False and metric_direction("model_utility") is True
    assert metric_direction("mia_mink_40") is None
    with pytest.raises(KeyError):
        metric_direction("no_such_metric")
    with pytest.raises(ValueError, match="already registered"):
        register_metric("ma", higher_is_better=True, description="conflict")
