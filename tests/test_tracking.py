"""``train.report_to``: accelerate's trackers log what metrics.jsonl holds (TensorBoard read back)."""

from __future__ import annotations

import importlib.util
import json

import pytest

import obliviate
from obliviate.engine.tracking import parse_report_to
from obliviate.errors import ObliviateError

FAST = ["data.max_forget=8", "data.max_retain=24", "train.lr=1e-3", "stop.max_epochs=2", "train.batch_size=4",
        "train.gradient_accumulation_steps=1", "train.scheduler=constant", "report.enabled=false"]

needs_tensorboard = pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None,
                                       reason="tensorboard is not installed (pip install 'obliviate[tensorboard]')")


def _scalars(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc, {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@needs_tensorboard
def test_tensorboard_scalars_equal_metrics_jsonl(tmp_path):
    out = tmp_path / "run"
    result = obliviate.unlearn("world-micro-target", "world:micro:forget", method="graddiff",
                               retain="world:micro:retain", out=out,
                               overrides=[*FAST, "train.report_to=tensorboard", "audit.attacks=sample", "audit.samples=2",
                                          "audit.heldout=world:micro:holdout"])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    acc, scalars = _scalars(out / "logs" / "obliviate")

    # Every number of every epoch's row, at step = epoch (TensorBoard stores float32).
    for row in rows:
        for key, value in row.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                logged = dict(scalars[f"epoch/{key}"])
                assert logged[row["epoch"]] == pytest.approx(value, rel=1e-6, abs=1e-6), key
    assert [s for s, _ in scalars["epoch/ma"]] == [0, 1, 2]
    assert dict(scalars["epoch/forgotten"])[2] == 8 - rows[-1]["active"]

    # One point per optimizer step (8 samples / batch 4 = 2 per epoch); their mean is the epoch's loss.
    steps = scalars["train/loss"]
    assert [s for s, _ in steps] == [1, 2, 3, 4]
    for epoch in (1, 2):
        per_step = [v for s, v in steps if (s - 1) // 2 == epoch - 1]
        assert sum(per_step) / 2 == pytest.approx(rows[epoch]["loss"], rel=1e-5)
    terms = {t for t in scalars if t.startswith("train/")} - {"train/loss"}
    assert terms and all(len(scalars[t]) == 4 for t in terms)  # the method's logged terms, every step

    # The end: before/after as scalars and the table as text.
    for when in ("before", "after"):
        for key, value in result.summary[when].items():
            assert scalars[f"final/{when}/{key}"] == [(2, pytest.approx(value, rel=1e-6, abs=1e-6))]
    # The attack's verdict (audit.attacks) as a number, and in the text with its rule, as in the model card.
    held = result.summary["robust/sample/held"]
    assert scalars["final/robust/sample/held"] == [(2, held)]
    text = acc.Tensors("summary/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "| metric | before | after |" in text and "| ma |" in text
    verdict = "held" if held == 1.0 else "recovered"
    assert f"| robustness: sample | {verdict} |" in text
    assert f"| robustness: sample | {verdict} |" in (out / "model" / "README.md").read_text()


def test_report_to_is_checked_before_any_work(tmp_path):
    assert parse_report_to("none") == [] and parse_report_to(" ") == []
    with pytest.raises(ObliviateError, match=r"unknown tracker 'comet'; use tensorboard, wandb, mlflow or none"):
        parse_report_to("tensorboard,comet")
    missing = [n for n in ("wandb", "mlflow") if importlib.util.find_spec(n) is None]
    for name in missing:
        with pytest.raises(ObliviateError, match=rf"needs {name}: pip install 'obliviate\[{name}\]'"):
            parse_report_to(name)
    with pytest.raises(ObliviateError, match="unknown tracker"):
        obliviate.unlearn("world-micro-target", "world:micro:forget", method="graddiff", retain="world:micro:retain",
                          out=tmp_path / "bad", overrides=[*FAST, "train.report_to=comet"])


@needs_tensorboard
def test_tracking_needs_a_run_folder():
    with pytest.raises(ObliviateError, match=r"report_to=tensorboard needs a run folder"):
        obliviate.unlearn("world-micro-target", "world:micro:forget", method="graddiff", retain="world:micro:retain",
                          overrides=[*FAST, "train.report_to=tensorboard"])


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None or importlib.util.find_spec("wandb") is None,
                    reason="wandb and mlflow are optional extras (pip install 'obliviate[wandb,mlflow]')")
def test_wandb_offline_and_mlflow_local(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file:{tmp_path / 'mlruns'}")
    out = tmp_path / "run"
    obliviate.unlearn("world-micro-target", "world:micro:forget", method="graddiff", retain="world:micro:retain",
                      out=out, overrides=[*FAST, "train.report_to=wandb,mlflow"])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    client = mlflow.MlflowClient(tracking_uri=f"file:{tmp_path / 'mlruns'}")
    (run,) = client.search_runs([client.get_experiment_by_name("obliviate").experiment_id])
    history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "epoch/ma")}
    assert history == {r["epoch"]: pytest.approx(r["ma"], rel=1e-6) for r in rows}
    assert run.data.params["train.report_to"] == "wandb,mlflow"
    assert list((out / "logs" / "wandb").glob("offline-run-*/run-*.wandb"))  # W&B's offline run, in the run folder
