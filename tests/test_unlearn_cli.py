"""``obliviate unlearn``: the run folder, one-line errors, and a real kill + resume on smollm2-135m."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from obliviate.cli import main

MICRO = ["--model", "world-micro-target", "--forget", "world:micro:forget", "--retain", "world:micro:retain"]
FAST = ["data.max_forget=8", "data.max_retain=24", "train.lr=1e-3", "stop.max_epochs=2", "train.batch_size=4",
        "train.gradient_accumulation_steps=1", "train.scheduler=constant"]


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["obliviate", "unlearn", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def test_run_folder_contents(monkeypatch, capsys, tmp_path):
    out = tmp_path / "run"
    code, stdout, err = run_cli(monkeypatch, capsys, *MICRO, "--method", "graddiff", "--out", str(out), *FAST)
    assert code == 0, err
    assert "graddiff: stopped after" in stdout and "el_10" in stdout
    for name in ("config.yaml", "metrics.jsonl", "per_sample.jsonl", "forgotten.json", "summary.json",
                 "model/config.json"):
        assert (out / name).is_file(), name
    assert not (out / "checkpoints").exists()  # removed once the run finished
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    per_sample = [json.loads(line) for line in (out / "per_sample.jsonl").read_text().splitlines()]
    assert len(per_sample) == 8 and {"id", "ma_before", "ma_after", "el_10_before", "el_10_after",
                                      "forgotten_at"} <= set(per_sample[0])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "graddiff" and summary["epochs"] == 2 and summary["after"]["el_10"] is not None
    assert "lr: 0.001" in (out / "config.yaml").read_text()
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out / "model")
    assert model.num_parameters() > 0


def test_icu_from_a_pool_writes_its_analogous_set(monkeypatch, capsys, tmp_path):
    out = tmp_path / "icu"
    code, _, err = run_cli(monkeypatch, capsys, "--model", "world-micro-target", "--forget", "world:micro:forget",
                           "--pool", "world:micro:retain", "--out", str(out), *FAST, "stop.max_epochs=1")
    assert code == 0, err
    analogous = (out / "analogous.jsonl").read_text().splitlines()
    report = json.loads((out / "neighbors.json").read_text())
    assert len(analogous) == 8 and report["paired"] == 8 and len(report["pairs"]) == 8
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "icu" and summary["refinement"]["rule"] == "reference"
    assert summary["neighbors"]["n_pool"] == 120


@pytest.mark.parametrize(("args", "message"), [
    (["--method", "graddiff", "--forget", "EMPTY"], "holds no records"),
    (["--method", "graddiff", "--forget", "world:micro:forget", "data.max_forget=0"], "the forget set is empty"),
    (["--method", "graddiff", "--forget", "world:micro:forget"], "needs a retain set"),
    (["--method", "sgd", "--forget", "world:micro:forget"], "unknown method 'sgd'"),
    (["--method", "kumpr", "--forget", "world:micro:forget", "train.lrr=1"], "train.lrr"),
    (["--method", "kumpr", "--forget", "world:micro:forget", "train.lr=fast"], "train.lr"),
    (["--method", "icu", "--forget", "world:micro:forget"], "needs analogous samples"),
])
def test_bad_input_is_one_line_error(monkeypatch, capsys, tmp_path, args, message):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    args = [str(empty) if a == "EMPTY" else a for a in args]
    code, _, err = run_cli(monkeypatch, capsys, "--model", "world-micro-target", "--out", str(tmp_path / "o"), *args)
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err


def test_foreign_folder_is_never_replaced(monkeypatch, capsys, tmp_path):
    out = tmp_path / "proj"
    out.mkdir()
    (out / "train.py").write_text("mine")
    for extra in ((), ("--overwrite",)):
        code, _, err = run_cli(monkeypatch, capsys, *MICRO, "--method", "kumpr", "--out", str(out), *FAST, *extra)
        assert code == 2 and "obliviate did not write" in err and "--overwrite" not in err, err
        assert sorted(p.name for p in out.iterdir()) == ["train.py"] and (out / "train.py").read_text() == "mine"
    code, _, err = run_cli(monkeypatch, capsys, "--out", str(out), "--resume")
    assert code == 2 and "nothing to resume" in err


def test_failed_start_writes_nothing_and_keeps_the_old_run(monkeypatch, capsys, tmp_path):
    out = tmp_path / "run"
    # A validation error found only after the model is loaded: no folder, no stub config.yaml.
    code, _, err = run_cli(monkeypatch, capsys, "--model", "world-micro-target", "--forget", "world:micro:forget",
                           "--method", "graddiff", "--out", str(out), *FAST)
    assert code == 2 and "needs a retain set" in err and not out.exists()
    code, _, err = run_cli(monkeypatch, capsys, *MICRO, "--method", "graddiff", "--out", str(out), *FAST,
                           "stop.max_epochs=1")
    assert code == 0, err  # the corrected command needs no --overwrite
    summary = (out / "summary.json").read_text()
    assert json.loads(summary)["format"] == "obliviate-run/1"
    for bad in (["--forget", str(tmp_path / "typo.jsonl")], ["train.lr=-1"], ["--retain", str(tmp_path / "no.jsonl")]):
        args = [*MICRO, "--method", "graddiff", "--out", str(out), *FAST, "--overwrite"]
        for k, a in enumerate(args[:-1]):
            if a == bad[0] and a.startswith("--"):
                args[k + 1] = bad[1]
        code, _, err = run_cli(monkeypatch, capsys, *args, *([] if bad[0].startswith("--") else bad))
        assert code == 2 and "error:" in err, err
        assert (out / "summary.json").read_text() == summary and (out / "model" / "config.json").is_file()


@pytest.mark.slow
@pytest.mark.smollm
def test_smollm_kill_and_resume_on_cpu(tmp_path):
    """A real SIGKILL after the first checkpoint, then --resume finishes the run (~1 min on CPU)."""
    out = tmp_path / "smol"
    exe = Path(sys.executable).with_name("obliviate")
    env = {**os.environ, "OBLIVIATE_QUIET": "1"}
    cmd = [str(exe), "unlearn", "--model", "smollm2-135m", "--forget", "demo:forget", "--method", "kumpr",
           "--out", str(out), "data.max_forget=2", "train.max_length=104", "stop.max_epochs=2", "train.lr=1e-5",
           "stop.el_threshold=null", "stop.ma_threshold=null", "eval.el=false"]
    started = time.time()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first = out / "checkpoints" / "epoch-0001" / "engine_state.json"
    while not first.is_file():
        assert proc.poll() is None, f"run ended before its first checkpoint: {proc.stderr.read()[-2000:]}"
        assert time.time() - started < 600
        time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_after = time.time() - started
    assert not (out / "summary.json").exists()
    done = subprocess.run([str(exe), "unlearn", "--out", str(out), "--resume"], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    print(f"\nkilled after {killed_after:.0f}s (epoch 1 checkpointed); resumed and finished after "
          f"{time.time() - started:.0f}s total: {summary['epochs']} epochs, MA {summary['before']['ma']:.3f} -> "
          f"{summary['after']['ma']:.3f}")
    assert summary["epochs"] == 2 and summary["optimizer_steps"] == 2 and [r["epoch"] for r in rows] == [0, 1, 2]
    assert (out / "model" / "config.json").is_file()


def _texts_left(folder: Path, phrases: list[str]) -> list[str]:
    found = []
    for path in folder.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".jsonl", ".html", ".yaml", ".txt", ".md", ".csv"):
            text = path.read_text(encoding="utf-8")
            found += [f"{path.name}: {p}" for p in phrases if p in text]
    return found


def test_redact_keeps_no_forget_text_in_the_run_folder(monkeypatch, capsys, tmp_path):
    from obliviate.data.sources import load_data

    out = tmp_path / "run"
    code, _, err = run_cli(monkeypatch, capsys, *MICRO, "--method", "graddiff", "--out", str(out), *FAST,
                           "stop.max_epochs=1", "--redact")
    assert code == 0, err
    forget = load_data("world:micro:forget")[:8]
    phrases = [r.question for r in forget] + [r.answer for r in forget]
    assert (out / "report.html").is_file() and (out / "trace.json").is_file()
    assert _texts_left(out, phrases) == []
    trace = json.loads((out / "trace.json").read_text())
    assert trace["samples"][0]["id"] == forget[0].id and trace["samples"][0]["reference"].startswith("<redacted")
    rows = [json.loads(line) for line in (out / "per_sample.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [r.id for r in forget] and isinstance(rows[0]["ma_after"], float)
    # Later writers into the folder honour it: an evaluation saved in the run, a re-rendered report.
    from obliviate.runfolder import RunFolder

    assert RunFolder.open(out, "run").redact and "redact: true" in (out / "config.yaml").read_text()
    # Without --redact the same run keeps the text (the check above can fail).
    plain = tmp_path / "plain"
    code, _, err = run_cli(monkeypatch, capsys, *MICRO, "--method", "graddiff", "--out", str(plain), *FAST,
                           "stop.max_epochs=1")
    assert code == 0 and _texts_left(plain, phrases)


def test_user_mistakes_end_in_one_error_line(monkeypatch, capsys, tmp_path):
    binary = tmp_path / "forget.jsonl"
    binary.write_bytes(bytes(range(256)))
    (tmp_path / "file").write_text("x")
    cases = [(["--model", "smolm2-135m", "--forget", "demo:forget"], "did you mean smollm2-135m"),
             (["--model", "world-micro-target", "--forget", str(binary), "--method", "kumpr"], "is not UTF-8 text"),
             (["--model", "world-micro-target", "--forget", str(tmp_path), "--method", "kumpr"], "is a folder"),
             (["--model", "world-micro-target", "--forget", "demo:forget", "--out", str(tmp_path / "file")],
              "is a file, not a folder")]
    for args, message in cases:
        out = [] if "--out" in args else ["--out", str(tmp_path / "run")]
        code, _, err = run_cli(monkeypatch, capsys, *args, *out)
        lines = [line for line in err.splitlines() if line.startswith("error:")]
        assert code == 2 and len(lines) == 1 and message in lines[0] and "Traceback" not in err, err
    assert not (tmp_path / "run").exists()
