"""The shared engine: resume after a kill, empty-batch skip, stopping and refinement rules,
run-folder safety, config precedence. Real runs on the synthetic micro world (seconds each)."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

import obliviate
from obliviate.engine import Callback, Engine, EpochUpdate, EvalConfig, StopConfig, TrainConfig, UnlearnData
from obliviate.engine.data import EpochSampler
from obliviate.engine.refinement import RefinementConfig, is_forgotten, next_active
from obliviate.engine.stopping import ALL_FORGOTTEN, MAX_EPOCHS, THRESHOLDS, mean_over, stop_reason
from obliviate.errors import ObliviateError
from obliviate.methods import get_method
from obliviate.unlearning import build_config, shipped_config

FAST = ["train.lr=1e-3", "train.gradient_accumulation_steps=1", "train.scheduler=constant", "train.batch_size=8",
        "eval.max_retain_samples=40"]


@pytest.fixture(scope="module")
def micro():
    from obliviate.data.sources import load_data
    from obliviate.models import load_model

    model, tok = load_model("world-micro-target")
    return model, tok, load_data("world:micro:forget")[:16], load_data("world:micro:retain")[:40]


class KillAfter(Callback):
    """Simulates a kill right after the checkpoint of ``epoch`` is complete."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_checkpoint(self, args, report, control, **kwargs):
        if report.epoch == self.epoch:
            raise KeyboardInterrupt


def _strip_times(history):
    return [{k: v for k, v in row.items() if k != "time_s"} for row in history]


# --------------------------------------------------------------------------- resume after a kill

RESUME_EXTRA = {  # RMU on the 2-block micro model; PDU's lambda moving from the first step on
    "rmu": ["method_args.layer=1", "method_args.trainable_layers=[0,1]"],
    "pdu": ["method_args.dual_warmup_epochs=0", "method_args.dual_step_size=10"],
    "altpo": ["method_args.alternates=2"],
}


@pytest.mark.parametrize("method", ["npo", "icu", "rmu", "undial", "wga", "satimp", "ceu", "pdu", "altpo"])
def test_resume_after_kill_equals_uninterrupted_run(method, micro, tmp_path):
    model, tok, forget, retain = micro
    extra = {"analogous": retain[:16]} if method == "icu" else {}
    overrides = [*FAST, "stop.max_epochs=3", "stop.el_threshold=null", "stop.ma_threshold=null",
                 "stop.when_all_forgotten=false", "train.batch_size=4", *RESUME_EXTRA.get(method, [])]
    full = obliviate.unlearn(copy.deepcopy(model), forget, method=method, retain=retain, tokenizer=tok,
                             out=tmp_path / "full", overrides=overrides, **extra)
    with pytest.raises(KeyboardInterrupt):
        obliviate.unlearn(copy.deepcopy(model), forget, method=method, retain=retain, tokenizer=tok,
                          out=tmp_path / "killed", overrides=overrides, callbacks=[KillAfter(1)], **extra)
    assert (tmp_path / "killed" / "checkpoints" / "epoch-0001" / "engine_state.json").is_file()
    assert not (tmp_path / "killed" / "summary.json").exists()
    resumed = obliviate.unlearn(copy.deepcopy(model), forget, retain=retain, tokenizer=tok, out=tmp_path / "killed",
                                resume=True, **extra)
    assert full.summary["epochs"] == resumed.summary["epochs"] == 3
    assert _strip_times(full.history) == _strip_times(resumed.history)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run"
    print(f"\n{method}: resumed run == uninterrupted run after 3 epochs (EL10 {full.history[-1]['el_10']:.3f})")
    # resuming a finished run does nothing and returns its results
    again = obliviate.unlearn(out=tmp_path / "killed", resume=True)
    assert again.summary == resumed.summary


# --------------------------------------------------------------------------- empty batches

def test_empty_batch_is_skipped_without_an_optimizer_step(micro):
    model, tok, forget, _ = micro
    from obliviate.data.encode import encode_records

    data = UnlearnData(forget=encode_records(forget, tok))
    engine = Engine(copy.deepcopy(model), tok, get_method("kumpr"), get_method("kumpr").config(), data,
                    train=TrainConfig(lr=1e-3, batch_size=4, seed=3), stop=StopConfig(max_epochs=5),
                    evaluation=EvalConfig(retain=False))
    engine.setup()
    sampler = EpochSampler(len(forget), seed=3)
    sampler.set_epoch(1)
    first = list(sampler)[:4]
    engine.state.active = [i not in first for i in range(len(forget))]
    logs = engine.train_epoch(1)
    assert logs["skipped_batches"] == 1 and logs["steps"] == 3

    engine.state.active = [False] * len(forget)
    before = {k: v.clone() for k, v in engine.prepared.state_dict().items()}
    adam_steps = [s["step"].item() for s in engine.optimizer.optimizer.state.values()]
    logs = engine.train_epoch(2)
    assert logs["skipped_batches"] == 4 and logs["steps"] == 0
    after = engine.prepared.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "a momentum-only step moved the weights"
    assert [s["step"].item() for s in engine.optimizer.optimizer.state.values()] == adam_steps


def test_whole_set_batch_gives_one_step_per_epoch(micro):
    model, tok, forget, _ = micro
    res = obliviate.unlearn(copy.deepcopy(model), forget, method="kumpr", tokenizer=tok,
                            overrides=["train.lr=1e-4", "stop.max_epochs=2", "eval.retain=false"])
    assert [row["steps"] for row in res.history[1:]] == [1, 1]
    res = obliviate.unlearn(copy.deepcopy(model), forget, method="kumpr", tokenizer=tok,
                            overrides=["train.lr=1e-4", "stop.max_epochs=1", "eval.retain=false", "train.batch_size=4",
                                       "train.gradient_accumulation_steps=2"])
    assert res.history[1]["steps"] == 2  # 4 micro-batches, accumulated in pairs


# --------------------------------------------------------------------------- callbacks

class ChooseAndStop(Callback):
    """Drops the first sample after epoch 1 (a new active set), adds a mean and a per-sample
    column, and asks to stop after epoch 2; records what it saw."""

    def __init__(self):
        self.seen = []

    def on_evaluate(self, args, report, control, *, model, **kwargs):
        self.seen.append((report.epoch, report.active, dict(report.metrics), args.method))
        with pytest.raises(TypeError):  # the report is read-only
            report.metrics["ma"] = 0.0
        if report.epoch == 2:
            control.stop("enough")
        active = (False, *report.active[1:]) if report.epoch == 1 else None
        return EpochUpdate(metrics={"probe": 1.5}, per_sample={"probe": [float(k) for k in range(len(report.active))]},
                           active=active)


def test_callbacks_see_a_report_and_steer_through_the_control(micro, tmp_path):
    model, tok, forget, _ = micro
    cb = ChooseAndStop()
    res = obliviate.unlearn(copy.deepcopy(model), forget[:6], method="kumpr", tokenizer=tok, out=tmp_path / "run",
                            callbacks=[cb], overrides=["train.lr=1e-4", "stop.max_epochs=5", "eval.retain=false",
                                                       "stop.el_threshold=null", "stop.ma_threshold=null"])
    assert [s[0] for s in cb.seen] == [0, 1, 2] and all(s[3] == "kumpr" for s in cb.seen)
    assert cb.seen[0][1] == (True,) * 6 and cb.seen[2][1] == (False,) + (True,) * 5
    assert "ma" in cb.seen[1][2] and "loss" in cb.seen[1][2]  # the row so far: training logs and means
    assert res.stop_reason == "enough" and res.summary["epochs"] == 2
    assert [row["probe"] for row in res.history] == [1.5, 1.5, 1.5]
    assert res.history[1]["newly_forgotten"] == 1 and res.history[1]["active"] == 5
    rows = [json.loads(line) for line in (tmp_path / "run" / "per_sample.jsonl").read_text().splitlines()]
    assert [r["probe_after"] for r in rows] == [float(k) for k in range(6)]
    assert rows[0]["forgotten_at"] == 1 and not rows[0]["active"]


# --------------------------------------------------------------------------- stopping rules

def test_stop_reason_rules():
    cfg = StopConfig(el_threshold=0.05, ma_threshold=0.6, max_epochs=5, min_epochs=1)
    th = {"ma": 0.6, "el_10": 0.05}
    assert stop_reason(1, {"ma": 0.59, "el_10": 0.04}, th, 3, cfg, False) == THRESHOLDS
    assert stop_reason(1, {"ma": 0.6, "el_10": 0.04}, th, 3, cfg, False) is None  # strict <
    assert stop_reason(1, {"ma": 0.59, "el_10": 0.2}, th, 3, cfg, False) is None  # both needed
    assert stop_reason(1, {"ma": 0.59, "el_10": 0.2}, th, 3, StopConfig(require="any"), False) == THRESHOLDS
    assert stop_reason(5, {"ma": 0.9, "el_10": 0.9}, th, 3, cfg, False) == MAX_EPOCHS
    assert stop_reason(2, {"ma": 0.9, "el_10": 0.9}, th, 0, cfg, True) == ALL_FORGOTTEN
    assert stop_reason(2, {"ma": 0.9, "el_10": 0.9}, th, 0, cfg, False) is None  # no refinement: ignored
    assert stop_reason(1, {"ma": 0.0, "el_10": 0.0}, th, 3, StopConfig(min_epochs=2), False) is None
    assert stop_reason(1, {"ma": 0.0, "el_10": 0.0}, {"ma": None, "el_10": None}, 3, cfg, False) is None
    assert mean_over([1.0, 0.0, 0.5], [True, False, True]) == 0.75
    assert mean_over([1.0, 0.0], None) == 0.5


def test_engine_stops_on_thresholds_after_at_least_one_epoch(micro):
    model, tok, forget, retain = micro
    # thresholds above the original model's values: met before training, but one epoch always trains
    res = obliviate.unlearn(copy.deepcopy(model), forget, method="graddiff", retain=retain, tokenizer=tok,
                            overrides=[*FAST, "train.lr=1e-6", "stop.el_threshold=2", "stop.ma_threshold=2"])
    assert res.stop_reason == THRESHOLDS and res.summary["epochs"] == 1
    res = obliviate.unlearn(copy.deepcopy(model), forget, method="graddiff", retain=retain, tokenizer=tok,
                            overrides=[*FAST, "train.lr=1e-6", "stop.el_threshold=2", "stop.ma_threshold=2",
                                       "stop.min_epochs=2", "stop.max_epochs=4"])
    assert res.stop_reason == THRESHOLDS and res.summary["epochs"] == 2
    res = obliviate.unlearn(copy.deepcopy(model), forget, method="graddiff", retain=retain, tokenizer=tok,
                            overrides=[*FAST, "train.lr=1e-6", "stop.max_epochs=2"])
    assert res.stop_reason == MAX_EPOCHS and res.summary["epochs"] == 2


def test_thresholds_calibrated_on_heldout_text(micro):
    model, tok, forget, retain = micro
    res = obliviate.unlearn(copy.deepcopy(model), forget, method="graddiff", retain=retain, tokenizer=tok,
                            overrides=[*FAST, "stop.max_epochs=1", "stop.calibrate_on=world:micro:holdout"])
    from obliviate.data.encode import encode_records
    from obliviate.data.sources import load_data
    from obliviate.metrics import memorization_accuracy

    heldout = encode_records(load_data("world:micro:holdout"), tok)
    want = memorization_accuracy(model, heldout, region="completion").value
    assert res.summary["thresholds"]["ma"] == math.nextafter(want, math.inf)  # mean <= held-out level
    assert "calibrated" in res.summary["thresholds_source"]
    print(f"\ncalibrated on held-out people: MA < {want:.4f}, EL10 < {res.summary['thresholds']['el_10']:.4f}")


def test_ma_only_evaluation_skips_el_and_stops_on_ma(micro):
    model, tok, forget, retain = micro
    base = [*FAST, "train.lr=1e-6", "eval.el=false", "stop.el_threshold=null"]
    res = obliviate.unlearn(copy.deepcopy(model), forget, method="graddiff", retain=retain, tokenizer=tok,
                            overrides=[*base, "stop.ma_threshold=2"])
    assert res.stop_reason == THRESHOLDS and res.summary["epochs"] == 1
    assert "ma" in res.history[-1] and not any(k.startswith("el_") for k in res.history[-1])
    res = obliviate.unlearn(copy.deepcopy(model), forget, method="graddiff", retain=retain, tokenizer=tok,
                            overrides=[*base, "stop.ma_threshold=0", "stop.max_epochs=2"])
    assert res.stop_reason == MAX_EPOCHS  # MA never below 0: the MA-only rule is really applied
    with pytest.raises(ObliviateError, match=r"stop\.el_threshold=null"):
        obliviate.unlearn(copy.deepcopy(model), forget, method="graddiff", retain=retain, tokenizer=tok,
                          overrides=[*FAST, "eval.el=false"])


# --------------------------------------------------------------------------- refinement rules

def test_refinement_rules_by_hand():
    paper, ref = RefinementConfig(rule="paper"), RefinementConfig(rule="reference")
    # (F1, BLEU): below both / only F1 low / only BLEU low / neither
    cases = [(0.2, 0.0), (0.2, 0.5), (0.9, 0.0), (0.9, 0.5)]
    assert [is_forgotten(f, b, paper) for f, b in cases] == [True, False, False, False]
    assert [is_forgotten(f, b, ref) for f, b in cases] == [True, True, True, False]
    assert not is_forgotten(0.3, 0.01, ref)  # strict <
    # paper: once out, always out; reference: recomputed, so a sample comes back
    assert next_active([False, True, True], [False, True, False], "paper") == [False, False, True]
    assert next_active([False, True, True], [False, True, False], "reference") == [True, False, True]
    assert ref.checks_before_training and not paper.checks_before_training


@pytest.mark.parametrize("rule", ["reference", "paper"])
def test_refinement_in_a_run(rule, micro):
    """Never-seen people as a 'forget set': the reference rule drops most before training."""
    from obliviate.data.sources import load_data

    model, tok, _, retain = micro
    unseen = load_data("world:micro:holdout")[:12]
    res = obliviate.unlearn(copy.deepcopy(model), unseen, method="graddiff", retain=retain, tokenizer=tok,
                            overrides=[*FAST, "train.lr=1e-5", "stop.max_epochs=1", "refinement.enabled=true",
                                       f"refinement.rule={rule}"])
    state_rows = res.history
    forgotten_before = state_rows[0].get("newly_forgotten", 0)
    print(f"\n{rule}: {forgotten_before}/12 never-seen samples dropped before training; after epoch 1: "
          f"{state_rows[1]['active']} active")
    if rule == "reference":
        assert forgotten_before >= 6
        assert state_rows[1]["active"] <= 12 - forgotten_before + state_rows[1]["came_back"]
    else:
        assert forgotten_before == 0 and state_rows[1]["active"] <= 12


def test_trace_reuses_greedy_refinement_generations(micro, tmp_path, monkeypatch):
    """The report's per-epoch continuations come from refinement when it generated exactly them."""
    from obliviate.data.encode import encode_records
    from obliviate.data.io import read_json
    from obliviate.report import trace as trace_module
    from obliviate.report.trace import generate_for

    def no_second_generation(*args, **kwargs):
        raise AssertionError("the trace generated again what refinement had generated")

    monkeypatch.setattr(trace_module, "generate_for", no_second_generation)
    model, tok, forget, retain = micro
    res = obliviate.unlearn(copy.deepcopy(model), forget[:6], method="graddiff", retain=retain, tokenizer=tok,
                            out=tmp_path / "run", overrides=[*FAST, "stop.max_epochs=1", "refinement.enabled=true",
                                                             "refinement.num_beams=1", "report.samples=4"])
    trace = read_json(tmp_path / "run" / "trace.json")
    fresh = generate_for(res.model, tok, encode_records(forget[:4], tok))
    assert trace["generations"]["1"] == fresh


# --------------------------------------------------------------------------- run folder and config

def test_refuses_to_overwrite_a_run(micro, tmp_path):
    model, tok, forget, retain = micro
    kw = dict(method="graddiff", retain=retain, tokenizer=tok, overrides=[*FAST, "stop.max_epochs=1"])
    obliviate.unlearn(copy.deepcopy(model), forget, out=tmp_path / "run", **kw)
    marker = (tmp_path / "run" / "summary.json").read_text()
    with pytest.raises(ObliviateError, match="already holds an obliviate run"):
        obliviate.unlearn(copy.deepcopy(model), forget, out=tmp_path / "run", **kw)
    assert (tmp_path / "run" / "summary.json").read_text() == marker  # untouched
    with pytest.raises(ObliviateError, match="keeps its config"):
        obliviate.unlearn(copy.deepcopy(model), forget, out=tmp_path / "run", resume=True, **kw)
    obliviate.unlearn(copy.deepcopy(model), forget, out=tmp_path / "run", overwrite=True, **kw)
    with pytest.raises(ObliviateError, match="nothing to resume"):
        obliviate.unlearn(out=tmp_path / "empty", resume=True)


def test_config_precedence_and_errors(tmp_path):
    cfg = build_config("icu")
    assert (cfg.train.lr, cfg.train.betas, cfg.method_args.alpha, cfg.method_args.beta) == (5e-6, [0.9, 0.98], 0.5, 1.0)
    assert (cfg.stop.el_threshold, cfg.stop.ma_threshold, cfg.refinement.enabled) == (0.0499, 0.5994, True)
    assert build_config("kumpr").stop.ma_threshold == 0.2994 and build_config("kumpr").train.batch_size == 0
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("method: npo\ntrain:\n  lr: 3.0e-4\nmethod_args:\n  beta: 0.5\n")
    cfg = build_config(None, yaml_file, ["method_args.beta=0.2"])
    assert (cfg.method, cfg.train.lr, cfg.method_args.beta, cfg.method_args.alpha) == ("npo", 3e-4, 0.2, 1.0)
    assert build_config("ga").method == "kumpr"
    with pytest.raises(ObliviateError, match=r"method_args\.gamma"):
        build_config("icu", None, ["method_args.gamma=1"])
    with pytest.raises(ObliviateError, match=r"train\.lrr"):
        build_config("icu", None, ["train.lrr=1"])
    with pytest.raises(ObliviateError, match="unknown method"):
        build_config("nope")
    with pytest.raises(ObliviateError, match=r"train\.optimizer"):
        TrainConfig(optimizer="sgd").check()


@pytest.mark.parametrize("name", ["icu", "kumpr", "graddiff", "kl", "npo", "simnpo", "idkdpo", "llmu",
                                  "rmu", "undial", "wga", "satimp", "ceu", "pdu", "altpo"])
def test_shipped_configs_hold_the_method_defaults(name):
    from obliviate.config import config_to_dict

    path = shipped_config(name)
    assert path is not None
    assert config_to_dict(build_config(None, path)) == config_to_dict(build_config(name))
    assert config_to_dict(build_config(None, name)) == config_to_dict(build_config(name))  # --config NAME


def test_mixed_precision_bf16_and_bf16_reference(micro):
    model, tok, forget, retain = micro
    res = obliviate.unlearn(copy.deepcopy(model), forget, method="kl", retain=retain, tokenizer=tok,
                            overrides=[*FAST, "stop.max_epochs=1", "train.mixed_precision=bf16",
                                       "train.reference_dtype=bfloat16"])
    row = res.history[1]
    assert row["steps"] > 0 and torch.isfinite(torch.tensor(row["loss"])) and row["el_10"] <= 1.0


def test_resume_checks_the_forget_file_counts_every_segment_and_writes_the_report(micro, tmp_path):
    from obliviate.data.io import write_records

    model, tok, forget, retain = micro
    write_records(forget[:8], tmp_path / "forget.jsonl")
    write_records(retain[8:16], tmp_path / "analogous.jsonl")  # ICU with a given analogous set (no MiniLM)
    out = tmp_path / "icu"
    kw = dict(tokenizer=tok, out=out)
    with pytest.raises(KeyboardInterrupt):
        obliviate.unlearn(copy.deepcopy(model), str(tmp_path / "forget.jsonl"), method="icu",
                          analogous=str(tmp_path / "analogous.jsonl"), callbacks=[KillAfter(1)],
                          overrides=[*FAST, "stop.max_epochs=2", "refinement.enabled=false"], **kw)
    first_segment = json.loads((out / "progress.json").read_text())["seconds"]
    assert first_segment > 0
    write_records(forget[:7], tmp_path / "forget.jsonl")  # the user edits the forget file
    with pytest.raises(ObliviateError, match=r"forget set differs .*8 records then, 7 now"):
        obliviate.unlearn(copy.deepcopy(model), resume=True, **kw)
    changed = [forget[0].__class__(**{**forget[0].__dict__, "answer": "edited"}), *forget[1:8]]
    write_records(changed, tmp_path / "forget.jsonl")
    with pytest.raises(ObliviateError, match=f"record '{forget[0].id}' differs"):
        obliviate.unlearn(copy.deepcopy(model), resume=True, **kw)
    write_records(forget[:8], tmp_path / "forget.jsonl")
    done = obliviate.unlearn(copy.deepcopy(model), resume=True, **kw)
    assert done.summary["seconds"] >= first_segment  # not only the last segment
    (out / "report.html").unlink()  # as if killed after summary.json, before the report
    obliviate.unlearn(copy.deepcopy(model), resume=True, **kw)
    assert (out / "report.html").is_file()
