"""`obliviate unlearn --method ulmr`: the whole ULMR recipe (restructure, SFT, averaging) behind the
common command, leaving a run folder that `obliviate compare` and the report read like any other."""

from __future__ import annotations

import json

import pytest
import torch

pytestmark = pytest.mark.slow

ARGS = ["--model", "world-micro-target", "--forget", "world:micro:forget", "--retain", "world:micro:retain_eval",
        "--method", "ulmr", "data.max_forget=4", "train.lr=2e-3", "stop.max_epochs=2", "train.batch_size=8",
        "eval.el_n=2", "eval.max_retain_samples=16", "report.samples=2", "method_args.alpha=0.3"]


def test_unlearn_method_ulmr_runs_the_pipeline(tmp_path):
    from typer.testing import CliRunner

    from obliviate.cli import app
    from obliviate.compare import compare

    run = tmp_path / "ulmr"
    res = CliRunner().invoke(app, ["unlearn", "--out", str(run), *ARGS])
    assert res.exit_code == 0, res.output
    for name in ("config.yaml", "summary.json", "metrics.jsonl", "trace.json", "report.html",
                 "restructured.jsonl", "model/config.json", "sft/model/config.json"):
        assert (run / name).is_file(), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["method"] == "ulmr" and summary["alpha"] == 0.3 and summary["n_forget"] == 4
    assert summary["epochs"] == 2 and summary["stop_reason"].startswith("pipeline finished")
    # before = the original model on the original forget set (memorized); after = the averaged model
    assert summary["before"]["ma"] > 0.9 and summary["after"]["ma"] <= summary["before"]["ma"]
    assert {"retain_ppl", "el_2"} <= set(summary["after"]) and summary["after"] != summary["before"]
    # model/ is exactly alpha * original + (1 - alpha) * SFT
    from obliviate.models import load_model

    weights = [load_model(spec)[0].state_dict() for spec in ("world-micro-target", run / "sft" / "model", run / "model")]
    for name in ("model.embed_tokens.weight", "model.layers.0.mlp.up_proj.weight"):
        original, sft, averaged = (w[name] for w in weights)
        assert not torch.equal(original, sft)
        assert torch.allclose(averaged, 0.3 * original + 0.7 * sft, atol=1e-6)
    restructured = [json.loads(line) for line in (run / "restructured.jsonl").read_text().splitlines() if line.strip()]
    assert len(restructured) == 4 * 3  # two rewrites + the original instruction, each with a negative response
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [0, 2]

    table = compare([run], before=True)
    assert table.rows[-1].label == "ulmr α=0.3" and not table.rows[-1].reference and table.rows[0].reference
    assert "run/ma" in table.columns

    again = CliRunner().invoke(app, ["unlearn", "--out", str(run), *ARGS])
    assert again.exit_code != 0 and "--overwrite" in str(again.exception)
    resumed = CliRunner().invoke(app, ["unlearn", "--out", str(run), "--resume"])  # the run keeps its config
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((run / "summary.json").read_text()) == summary


def test_redacted_ulmr_run_keeps_no_forget_text(tmp_path):
    from typer.testing import CliRunner

    from obliviate.cli import app
    from obliviate.data.sources import load_data

    run = tmp_path / "ulmr"
    res = CliRunner().invoke(app, ["unlearn", "--out", str(run), *ARGS, "--redact"])
    assert res.exit_code == 0, res.output
    assert not (run / "restructured.jsonl").exists() and (run / "model" / "config.json").is_file()
    forget = load_data("world:micro:forget")[:4]
    phrases = [r.question for r in forget] + [r.answer for r in forget]
    left = [f"{p.relative_to(run)}: {s}" for p in run.rglob("*") if p.is_file()
            and p.suffix in (".json", ".jsonl", ".html", ".yaml", ".md") for s in phrases if s in p.read_text()]
    assert left == []
    assert CliRunner().invoke(app, ["unlearn", "--out", str(run), "--resume"]).exit_code == 0  # loads the finished run
