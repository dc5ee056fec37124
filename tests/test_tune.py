"""``obliviate tune``: the choice rule and objective on hand-made trials, and a search on the micro world
that is killed mid-way (a real subprocess) and resumed to the same finished study."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from obliviate.recipes.tune import TuneConfig, choose, utility_loss, weight_fields
from obliviate.report.plots import _pareto_front

optuna = pytest.importorskip("optuna")


def _t(number, gap, loss, verdict="distinguishable", state="COMPLETE"):
    return {"number": number, "gap": gap, "utility_loss": loss, "verdict": verdict, "state": state}


def test_choice_prefers_reaching_the_target_then_least_utility_loss():
    trials = [_t(0, 0.40, 0.01), _t(1, 0.05, 0.30, "indistinguishable"), _t(2, 0.02, 0.20, "indistinguishable"),
              _t(3, 0.0, 0.0, state="PRUNED"), _t(4, 0.09, 0.25, "indistinguishable")]
    assert choose(trials)["number"] == 2  # reached, least utility loss (0.20 < 0.25 < 0.30)
    # none reached: the closest to the target, whatever its utility loss
    assert choose([_t(0, 0.40, 0.01), _t(1, 0.12, 0.9), _t(2, 0.3, 0.0)])["number"] == 1
    assert choose([_t(0, 0.0, 0.0, state="PRUNED")]) is None


def test_utility_loss_is_the_mean_nll_increase():
    assert utility_loss({"retain_nll": 1.0, "utility_nll": 2.0}, {"retain_nll": 1.5, "utility_nll": 2.1}) == \
        pytest.approx((0.5 + 0.1) / 2)
    assert utility_loss({"retain_nll": 1.0, "utility_nll": None}, {"retain_nll": 0.75, "utility_nll": None}) == -0.25
    assert utility_loss({"retain_nll": None, "utility_nll": None}, {}) == 0.0


def test_pareto_front_and_search_space():
    pts = [_t(0, 0.1, 0.5), _t(1, 0.2, 0.2), _t(2, 0.3, 0.3), _t(3, 0.05, 0.9), _t(4, 0.2, 0.25)]
    assert sorted(p["number"] for p in _pareto_front(pts)) == [0, 1, 3]  # 2 and 4 are beaten by 1
    assert weight_fields("npo") == {"beta": 0.1, "gamma": 1.0, "alpha": 1.0}  # beta: NPO's inverse temperature
    assert weight_fields("icu") == {"forget_weight": 1.0, "alpha": 0.5, "beta": 1.0}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "obliviate.cli", *args]


ARGS = ["tune", "--model", "world-micro-target", "--forget", "world:micro:forget", "--heldout", "world:micro:holdout",
        "--retain", "world:micro:retain", "--utility", "world:micro:world_facts", "--method", "graddiff",
        "--trials", "3", "--lr-min", "1e-3", "--lr-max", "1e-2", "--epochs-max", "6",
        "data.max_forget=20", "stop.target.max_heldout=20", "stop.target.statistic=loss", "eval.el=false",
        "stop.el_threshold=null", "refinement.enabled=false", "train.warmup_epochs=0", "train.scheduler=constant",
        "eval.max_retain_samples=40"]


def _study(out: Path):
    return optuna.load_study(study_name="obliviate-tune", storage=f"sqlite:///{out / 'study.db'}")


@pytest.mark.slow
def test_killed_tune_resumes_and_finishes_the_same_study(tmp_path):
    out = tmp_path / "tune"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(_cli(*ARGS, "--out", str(out)), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    # Kill it while the second trial runs (its run folder has a checkpoint), after the first finished.
    deadline = time.time() + 300
    while time.time() < deadline and not list((out / "trials" / "trial-0001").glob("checkpoints/epoch-*")):
        assert proc.poll() is None, proc.stdout.read().decode()
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = _study(out).trials
    assert [t.state.name for t in first] == ["COMPLETE", "RUNNING"]
    done = subprocess.run(_cli("tune", "--out", str(out), "--resume"), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    trials = _study(out).trials
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == 3 and [t.state.name for t in trials].count("FAIL") == 1  # the killed one
    assert trials[0].params == first[0].params and trials[0].values == first[0].values  # kept, not rerun
    assert trials[2].params == first[1].params  # the interrupted trial retried with its parameters
    assert "reached the target" in done.stdout
    for name in ("best_config.yaml", "trials.csv", "trials.md", "report.html", "best/model/config.json"):
        assert (out / name).is_file(), name
    assert not (out / "trials" / "trial-0001").exists()  # the killed trial's partial run is gone
    assert "interrupted, retried" in (out / "trials.md").read_text()
    html = (out / "report.html").read_text()
    assert 'id="fig-pareto"' in html and "data:image/png;base64," in html
    # resuming a finished search changes nothing
    again = subprocess.run(_cli("tune", "--out", str(out), "--resume"), env=env, capture_output=True, text=True)
    assert again.returncode == 0 and len(_study(out).trials) == len(trials)
    assert not math.isnan(complete[0].values[0])


def test_tune_input_errors(tmp_path):
    from obliviate.errors import ObliviateError
    from obliviate.recipes.tune import tune

    with pytest.raises(ObliviateError, match="heldout"):
        tune("world-micro-target", "world:micro:forget", out=tmp_path / "a", tune_cfg=TuneConfig(method="npo"))
    with pytest.raises(ObliviateError, match="lr_min"):
        tune("world-micro-target", "world:micro:forget", heldout="world:micro:holdout", out=tmp_path / "b",
             tune_cfg=TuneConfig(method="npo", lr_min=1e-2, lr_max=1e-3))
    with pytest.raises(ObliviateError, match="nothing to resume"):
        tune(out=tmp_path / "c", resume=True)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("mine")
    with pytest.raises(ObliviateError, match="did not write"):
        tune("world-micro-target", "world:micro:forget", heldout="world:micro:holdout", out=tmp_path / "d")
    assert (tmp_path / "d" / "notes.txt").read_text() == "mine"


def test_answer_nll_with_gpt2_bpe(shared_data, tmp_path):
    """The objective's NLL through GPT-2's BPE: short answers, unicode, a long answer, token-weighted."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from obliviate.data.encode import PromptTemplate, encode_records
    from obliviate.data.io import load_records, write_records
    from obliviate.data.pile import load_gpt2_tokenizer
    from obliviate.data.records import QARecord
    from obliviate.metrics.likelihood import token_logprobs
    from obliviate.recipes.tune import answer_nll

    tok = load_gpt2_tokenizer(shared_data / "gpt2-tokenizer")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=50257, n_positions=512, n_embd=32, n_layer=1, n_head=2)).eval()
    records = [QARecord(id="a", question="Who?", answer="Yes."),
               QARecord(id="b", question="Où est Zoë?", answer="Zoë Ångström — 東京 ✓"),
               QARecord(id="c", question="Long?", answer=" ".join(["a long answer"] * 30))]
    path = tmp_path / "util.jsonl"
    write_records(records, path)
    got = answer_nll(model, tok, str(path), "plain")
    lps = token_logprobs(model, encode_records(load_records(path), tok, PromptTemplate(mode="plain")),
                         region="completion")
    n = [len(t.logprobs) for t in lps]
    assert n[0] < n[1] < n[2]  # the long answer weighs most
    assert got == pytest.approx(sum(t.nll_sum for t in lps) / sum(n))
    assert answer_nll(model, tok, None, "plain") is None
