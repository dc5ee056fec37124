"""A stream of deletion requests on the micro world: lineage, overlap policy, cumulative evaluation."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from obliviate.cli import main
from obliviate.data.io import write_records
from obliviate.data.records import QARecord, TextRecord
from obliviate.errors import ObliviateError
from obliviate.lineage import parent_run, read_lineage, record_hash, set_hash
from obliviate.world import load_world_split

FAST = ["train.lr=3e-3", "stop.max_epochs=3", "train.batch_size=5", "train.warmup_epochs=0",
        "eval.max_retain_samples=20", "report.enabled=false", "data.max_retain=40"]
RETAIN = "world:micro:retain"


def cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["obliviate", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


@pytest.fixture(scope="module")
def requests(tmp_path_factory) -> dict[str, Path]:
    """Person 0 (10 QA), person 1, persons 1-2 (overlaps the second), person 0 again (identical)."""
    forget = load_world_split("micro", "forget")
    folder = tmp_path_factory.mktemp("requests")
    sets = {"p0": forget[:10], "p1": forget[10:20], "p12": forget[10:30], "p0_again": list(reversed(forget[:10]))}
    for name, records in sets.items():
        write_records(records, folder / f"{name}.jsonl")
    return {name: folder / f"{name}.jsonl" for name in sets}


@pytest.fixture(scope="module")
def chain(requests, tmp_path_factory) -> tuple[Path, Path]:
    """Two graddiff requests, the second started with --model RUN1 (a run folder)."""
    import obliviate

    root = tmp_path_factory.mktemp("chain")
    obliviate.unlearn("world-micro-target", str(requests["p0"]), method="graddiff", retain=RETAIN,
                      out=root / "req1", overrides=FAST)
    obliviate.unlearn(str(root / "req1"), str(requests["p1"]), method="graddiff", retain=RETAIN,
                      out=root / "req2", overrides=FAST)
    return root / "req1", root / "req2"


def test_record_hash_is_content_not_id():
    a = QARecord("a", "Where was Ana born?", "Ana was born in Łódź, Polska — 1961.")
    b = QARecord("b", "Where was Ana born?", "Ana was born in Łódź, Polska — 1961.", paraphrased_answer="x")
    c = QARecord("a", "Where was Ana born?", "Ana was born in Lodz.")
    assert record_hash(a) == record_hash(b) != record_hash(c)
    # The boundary matters: prefix "ab" + target "c" is not prefix "a" + target "bc".
    assert record_hash(TextRecord("t", "ab", "c")) != record_hash(TextRecord("t", "a", "bc"))
    assert set_hash([record_hash(a), record_hash(c)]) == set_hash([record_hash(c), record_hash(a), record_hash(a)])


def test_two_request_chain_records_its_lineage(chain, requests, monkeypatch, capsys):
    req1, req2 = chain
    first, second = read_lineage(req1), read_lineage(req2)
    assert first.parent is None and len(first.requests) == 1 and first.origin == "world-micro-target"
    assert second.origin == "world-micro-target" and second.parent == "../req1"
    assert [r.forget for r in second.requests] == [str(requests["p0"]), str(requests["p1"])]
    assert second.requests[0] == first.requests[0]  # the parent's chain, copied as it was
    p1 = load_world_split("micro", "forget")[10:20]
    assert second.requests[1].forget_sha256 == set_hash([record_hash(r) for r in p1])
    assert second.requests[1].n_unlearned == 10 and second.requests[1].overlap == {}
    summary = json.loads((req2 / "summary.json").read_text())
    assert summary["model"] == str(req1 / "model") and summary["n_forget"] == 10
    code, out, err = cli(monkeypatch, capsys, "history", str(req2))
    assert code == 0, err
    assert "2 request(s) after world-micro-target" in out and "p0.jsonl" in out and "p1.jsonl" in out
    assert second.requests[1].forget_sha256[:12] in out


def test_identical_request_is_refused_before_anything_is_written(chain, requests, monkeypatch, capsys, tmp_path):
    _, req2 = chain
    out = tmp_path / "req3"
    code, _, err = cli(monkeypatch, capsys, "unlearn", "--after", str(req2), "--forget", str(requests["p0_again"]),
                       "--method", "graddiff", "--retain", RETAIN, "--out", str(out), *FAST)
    assert code == 2 and "identical to request 1" in err and "lineage.overlap=again" in err
    assert "Traceback" not in err and not out.exists()


def test_overlapping_request_unlearns_only_new_records(chain, requests, tmp_path, caplog):
    import obliviate

    _, req2 = chain
    with caplog.at_level("WARNING"):
        result = obliviate.unlearn(None, str(requests["p12"]), after=req2, method="graddiff", retain=RETAIN,
                                   out=tmp_path / "req3", overrides=FAST)
    lineage = read_lineage(tmp_path / "req3")
    last = lineage.requests[-1]
    assert last.n_requested == 20 and last.n_unlearned == 10 and last.overlap == {"2": 10}
    assert result.summary["n_forget"] == 10  # only person 2 was unlearned
    assert "10 of 20 record(s) were already unlearned" in caplog.text
    # overlap=again unlearns every requested record once more.
    again = obliviate.unlearn(None, str(requests["p12"]), after=req2, method="graddiff", retain=RETAIN,
                              out=tmp_path / "again", overrides=[*FAST, "lineage.overlap=again"])
    assert again.summary["n_forget"] == 20 and read_lineage(tmp_path / "again").requests[-1].n_unlearned == 20


def test_parent_errors(chain, tmp_path):
    req1, req2 = chain
    assert parent_run(str(req1), None) == (str(req1 / "model"), str(req1))
    with pytest.raises(ObliviateError, match="needs a finished run folder"):
        parent_run(None, tmp_path)
    with pytest.raises(ObliviateError, match="give one of them"):
        parent_run(str(req1), req2)
    with pytest.raises(ObliviateError, match="drop --model"):
        parent_run("world-micro-target", req1)


def test_cumulative_evaluation_of_request_2_includes_request_1(chain, tmp_path, monkeypatch, capsys):
    from obliviate.data.encode import encode_records
    from obliviate.lineage import chain_curve
    from obliviate.metrics import calibrate_thresholds, memorization_accuracy
    from obliviate.models import load_model
    from obliviate.protocols.base import read_eval
    from obliviate.recipes.stream import CumulativeConfig, curve_table, evaluate_cumulative

    req1, req2 = chain
    cfg = CumulativeConfig(heldout="world:micro:holdout", retain="world:micro:retain_eval", max_retain=20)
    evaluate_cumulative(req1, cfg, original_cache=tmp_path / "original.json")
    doc = read_eval(evaluate_cumulative(req2, cfg, original_cache=tmp_path / "original.json"))
    m, details = doc["metrics"], doc["details"]
    assert {"request-1/ma", "request-1/el_10", "request-1/forgotten", "request-1/mia_auc", "request-2/ma",
            "retain/rougeL_recall", "forgotten_sets"} <= set(m)
    # The original model's values: MA of person 0 measured directly on the original model.
    model, tok = load_model("world-micro-target")
    p0 = load_world_split("micro", "forget")[:10]
    direct = memorization_accuracy(model, encode_records(p0, tok), region="completion").value
    assert details["original"]["request-1"]["ma"] == pytest.approx(direct, abs=1e-6)
    # Both requests lowered memorization of their own set; retain knowledge stayed.
    for key in ("request-1", "request-2"):
        assert m[f"{key}/ma"] < details["original"][key]["ma"] - 0.1
    assert m["retain/rougeL_recall"] > 0.5 * details["original"]["retain"]["rougeL_recall"]
    thr = details["thresholds"]
    assert thr["source"].startswith("calibrated on world:micro:holdout")
    for key in ("request-1", "request-2"):
        now = details["now"][key]
        assert now["forgotten"] == (now["ma"] < thr["ma"] and now["el_10"] < thr["el_10"])
    assert details["original"]["request-1"]["forgotten"] is False  # the original model knows person 0
    # "No higher than never-seen text" (the engine's stop.calibrate_on): the original model's held-out
    # means, nudged one float up so that a held-out EL of exactly 0 is a threshold a set can pass.
    direct_thr = calibrate_thresholds(model, tok, load_world_split("micro", "holdout"), region="completion")
    assert thr["ma"] == math.nextafter(direct_thr.ma, math.inf)
    assert thr["el_10"] == math.nextafter(direct_thr.el, math.inf)
    # The curve over the chain: one row per request plus the original.
    header, rows = curve_table(chain_curve(req2))
    assert header[:3] == ["after", "#1 MA", "#2 MA"] and [r[0] for r in rows] == [
        "original", "request 1", "request 2"]
    assert rows[1][2] == ""  # request 2's set was not yet asked for after request 1
    # The run's HTML report draws the same curve; a first request alone has no curve to draw.
    from obliviate.report import render_run_report

    assert "A stream of requests" in render_run_report(req2)
    assert "A stream of requests" not in render_run_report(req1)
    code, out, err = cli(monkeypatch, capsys, "history", str(req2), "--evaluate", "--heldout", "world:micro:holdout")
    assert code == 0, err
    assert "#1 MA" in out and "#2 MA" in out and f"{m['request-2/ma']:.3f}" in out


def test_run_stream_skips_an_identical_request_and_resumes(requests, tmp_path, monkeypatch, capsys):
    from obliviate.recipes.stream import STREAM_FILE, CumulativeConfig, run_stream

    out = tmp_path / "stream"
    specs = [str(requests["p0"]), str(requests["p1"]), str(requests["p0_again"])]
    cfg = CumulativeConfig(heldout="world:micro:holdout", retain="world:micro:retain_eval")
    calibrated = [*FAST, "stop.calibrate_on=world:micro:holdout"]
    result = run_stream(specs, model="world-micro-target", out=out, method="graddiff", retain=RETAIN,
                        overrides=calibrated, evaluation=cfg)
    assert [r.name if r else None for r in result.runs] == ["request-1", "request-2", None]
    assert "identical to request 1" in result.skipped[3]
    status = json.loads((out / STREAM_FILE).read_text())["status"]
    assert status["3"]["skipped"] and status["2"] == {"run": "request-2"}
    assert (out / "request-2" / "eval" / "cumulative" / "eval.json").is_file()
    # Request 1 calibrates its stopping thresholds on the original model (the engine's own rule);
    # request 2 gets exactly those values, not a calibration on its degraded parent.
    first, second = (json.loads((out / f"request-{k}" / "summary.json").read_text()) for k in (1, 2))
    assert first["thresholds_source"].startswith("calibrated") and second["thresholds_source"] == "configured"
    assert second["thresholds"] == first["thresholds"]
    stamp = (out / "request-2" / "summary.json").stat().st_mtime_ns
    # The same stream from the command line: a rerun reuses every run and evaluation.
    code, text, err = cli(monkeypatch, capsys, "stream", "--out", str(out), "--model", "world-micro-target",
                          *(a for spec in specs for a in ("--forget", spec)), "--method", "graddiff",
                          "--retain", RETAIN, "--heldout", "world:micro:holdout",
                          "--check-retain", "world:micro:retain_eval", *calibrated)
    assert code == 0, err
    assert "request 3: skipped: " in text and "#2 MA" in text
    assert (out / "request-2" / "summary.json").stat().st_mtime_ns == stamp
    for bad, message in (({"overlap": "twice"}, "lineage.overlap must be one of"),
                         ({"method": "sgd"}, "unknown method 'sgd'"),
                         ({"requests": [specs[0], str(tmp_path / "missing.jsonl")]}, "missing.jsonl")):
        kwargs = {"model": "world-micro-target", "out": tmp_path / "refused", "method": "graddiff", **bad}
        with pytest.raises(ObliviateError, match=message):
            run_stream(kwargs.pop("requests", specs), retain=RETAIN, **kwargs)
        assert not (tmp_path / "refused").exists()  # nothing written before the inputs are valid
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "todo.txt").write_text("mine")
    with pytest.raises(ObliviateError, match="did not write"):
        run_stream(specs, model="world-micro-target", out=foreign, method="graddiff", retain=RETAIN)
    assert (foreign / "todo.txt").read_text() == "mine" and len(list(foreign.iterdir())) == 1
    with pytest.raises(ObliviateError, match="another method"):
        run_stream(specs, model="world-micro-target", out=out, method="npo", retain=RETAIN, overrides=calibrated)
    code, text, _ = cli(monkeypatch, capsys, "history", str(out / "request-2"))
    assert code == 0 and "request 2" in text and ("✓" in text or "✗" in text)


def test_cumulative_measures_with_gpt2_tokenizer(shared_data):
    """The evaluation tokenizes user records: GPT-2's BPE, a unicode answer, a long text record."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from obliviate.data.pile import load_gpt2_tokenizer
    from obliviate.recipes.stream import CumulativeConfig, measure_set

    tok = load_gpt2_tokenizer(shared_data / "gpt2-tokenizer")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)).eval()
    records = [QARecord("q", "Où est née Zoë?", "Zoë est née à Łódź — le 3 mars 1961, sous la neige."),
               TextRecord("t", "Permission is hereby granted, ", "free of charge, to any person " * 12)]
    cfg = CumulativeConfig(max_new_tokens=8)
    values = measure_set(model, tok, records, cfg, measures=("ma", "el", "tofu_prob"),
                         heldout_scores=[0.1, 0.2, 0.3])
    assert values["n"] == 2 and 0.0 <= values["ma"] < 0.2  # a random model memorizes nothing
    assert values["el_10"] is not None and 0.0 < values["tofu_prob"] < 0.01 and "mia_auc" in values
