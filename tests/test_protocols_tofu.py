"""TOFU and the synthetic world as TOFU-protocol benchmarks (`obliviate eval --benchmark tofu|world`)."""

from __future__ import annotations

import json

import pytest
from scipy.stats import hmean, ks_2samp

from obliviate.errors import ObliviateError
from obliviate.metrics.tofu import load_tofu_logs, log_ratios
from obliviate.protocols.base import read_eval, read_per_sample
from obliviate.protocols.tofu import TofuOptions, WorldOptions, run_tofu, run_world, world_reference

LIMIT = 8  # items per split: quick, and the cached reference evaluation is keyed by it


@pytest.fixture(scope="module")
def micro():
    from obliviate.models import load_model

    target = load_model("world-micro-target")
    retain = load_model("world-micro-retain")
    return target, retain


@pytest.fixture(scope="module")
def reference():
    return world_reference("micro", WorldOptions(limit=LIMIT))


@pytest.mark.slow
def test_world_reference_is_the_exact_retrain_and_cached(reference):
    doc = read_eval(reference)
    assert doc["reference"] and doc["label"] == "retrain (exact)" and doc["model"] == "world-micro-retain"
    m = doc["metrics"]
    assert m["forget_quality"] == 1.0 and m["forget/privleak"] == 0.0
    assert m["forget/rougeL_recall"] < 0.3 and m["retain/rougeL_recall"] > 0.9  # never saw the forget people
    assert world_reference("micro", WorldOptions(limit=LIMIT)) == reference  # second call: the cached folder


@pytest.mark.slow
def test_world_benchmark_on_the_target_model(micro, reference, tmp_path):
    (model, tok), _ = micro
    res = run_world(model, tok, WorldOptions(limit=LIMIT), model_spec="world-micro-target")
    m = res.metrics
    assert res.details["profile"] == "micro"
    assert m["forget/rougeL_recall"] > 0.9 and m["forget/ma"] > 0.9 and m["forget/el_10"] > 0.9  # memorized
    assert m["forget/tofu_prob"] > 0.8 and m["retain/rougeL_recall"] > 0.9
    # forget quality: the KS p-value of the per-item truth ratios against the cached retain model's
    ours, theirs = log_ratios(res.files["tofu_log.json"]["forget"]), log_ratios(
        load_tofu_logs(reference / "tofu_log.json")["forget"])
    assert m["forget_quality"] == pytest.approx(ks_2samp(ours, theirs).pvalue)
    assert res.details["forget_quality"]["same_items"] is True
    # world utility: the harmonic mean of the six {prob, ROUGE, TR} x {retain, world facts} numbers
    six = [m[k] for k in ("retain/tofu_prob", "retain/rougeL_recall", "retain/truth_ratio",
                          "world_facts/tofu_prob_options", "world_facts/rougeL_recall", "world_facts/truth_ratio")]
    assert m["world_utility"] == pytest.approx(hmean(six))
    # membership inference: the target tells its forget people from never-seen ones better than the retrain
    assert m["forget/mia_auc"] > read_eval(reference)["metrics"]["forget/mia_auc"]
    assert m["forget/privleak"] < 0
    rows = [r for r in res.rows if r["split"] == "forget"]
    assert len(rows) == LIMIT and rows[0]["generation"] == rows[0]["reference"]


@pytest.mark.slow
def test_tofu_on_tofu_schema_files(micro, reference, shared_data, tmp_path):
    """TOFU's protocol on files in TOFU's schema: the micro world exported as forget25/retain75 splits +
    TOFU's real real_authors / world_facts files; forget quality against the retain model's results."""
    from obliviate.world.export import export_world

    export_world("micro", tmp_path / "world")
    data = tmp_path / "world" / "tofu"
    for name in ("real_authors_perturbed.json", "world_facts_perturbed.json"):
        (data / name).write_bytes((shared_data / "tofu" / name).read_bytes())  # TOFU's own files
    (model, tok), _ = micro
    opts = TofuOptions(data=str(data), forget_split="forget25", limit=LIMIT, max_new_tokens=32,
                       retain_results=str(reference))
    res = run_tofu(model, tok, opts)
    m = res.metrics
    nine = [m["retain/tofu_prob"], m["real_authors/tofu_prob_options"], m["world_facts/tofu_prob_options"]] + \
        [m[f"{s}/{k}"] for s in ("retain", "real_authors", "world_facts") for k in ("rougeL_recall", "truth_ratio")]
    assert m["model_utility"] == pytest.approx(hmean(nine))  # TOFU's harmonic mean of nine numbers
    assert m["forget/rougeL_recall"] > 0.9 and m["forget_quality"] < 0.5
    assert res.details["sources"]["real_authors"].endswith("real_authors_perturbed.json")
    # without the real-authors split TOFU's model utility is not defined: it is left out and said so
    (data / "real_authors_perturbed.json").unlink()
    res = run_tofu(model, tok, TofuOptions(data=str(data), forget_split="forget25", limit=4, max_new_tokens=16))
    assert "model_utility" not in res.metrics and "9 numbers" in res.details["model_utility"]
    assert "retain_results" in res.details["forget_quality"]


def test_tofu_errors_name_the_problem(tmp_path, micro):
    (model, tok), _ = micro
    with pytest.raises(ObliviateError, match="no TOFU split found"):
        run_tofu(model, tok, TofuOptions(data=str(tmp_path)))
    bad = tmp_path / "forget10_perturbed.json"
    bad.write_text(json.dumps({"question": "q?", "answer": "a"}) + "\n" + json.dumps({"question": "r?", "answer": "b"}) + "\n")
    with pytest.raises(ObliviateError, match="perturbed answers"):
        run_tofu(model, tok, TofuOptions(data=str(tmp_path)))
    with pytest.raises(ObliviateError, match="not reachable"):  # HF_HUB_OFFLINE=1 in the tests
        run_tofu(model, tok, TofuOptions())


@pytest.mark.slow
def test_cli_eval_world_on_a_run_folder_then_compare(reference, tmp_path):
    """`obliviate eval --model RUN` stores its results inside the run folder, where compare finds them."""
    from typer.testing import CliRunner

    import obliviate
    from obliviate.cli import app
    from obliviate.compare import compare

    run = tmp_path / "ga"
    obliviate.unlearn("world-micro-target", "world:micro:forget", method="kumpr", out=run,
                      overrides=["train.lr=3e-3", "stop.max_epochs=3", "stop.el_threshold=null", "stop.ma_threshold=null",
                                 "report.enabled=false"])
    res = CliRunner().invoke(app, ["eval", "--model", str(run), "--benchmark", "world", "--limit", str(LIMIT)])
    assert res.exit_code == 0, res.output
    doc = read_eval(run / "eval" / "world")
    assert doc["label"] == "kumpr" and doc["metrics"]["forget/rougeL_recall"] < 0.9  # gradient ascent forgot
    assert read_per_sample(run / "eval" / "world")
    res = CliRunner().invoke(app, ["eval", "--model", str(run), "--benchmark", "world", "--limit", str(LIMIT)])
    assert res.exit_code != 0 and "--overwrite" in str(res.exception)
    table = compare([run], references=[reference])
    assert [r.label for r in table.rows] == ["kumpr", "retrain (exact)"] and table.rows[1].reference
