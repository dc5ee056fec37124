"""Many processes, one code path: ``obliviate unlearn`` under ``accelerate launch`` with two CPU
processes (DDP over gloo), plus the pure pieces of the distributed engine.

The launched run records which forget samples each process trained on (``train.record_samples``)
and stores a SHA-256 of the saved weights; the test checks that the processes saw disjoint
samples, that both processes ended with the same weights, that ``model/`` holds exactly them,
and that the metrics the run gathered across processes equal a single-process evaluation of
the saved model.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from obliviate.engine.data import RetainDraw
from obliviate.engine.distributed import accelerate_configs, deal_batches, weights_sha256

N_FORGET = 8
OVERRIDES = [f"data.max_forget={N_FORGET}", "train.lr=1e-3", "train.batch_size=2", "stop.max_epochs=2",
             "stop.el_threshold=null", "stop.ma_threshold=null", "train.record_samples=true",
             "eval.max_retain_samples=8", "report.enabled=false"]


# --------------------------------------------------------------------------- pure pieces

def test_deal_batches_gives_each_process_different_samples():
    order = [5, 3, 9, 0, 1, 7, 2, 8, 6, 4, 10]  # 11 samples, micro-batches of 2 -> 6 batches
    per_rank = [deal_batches(order, 2, 4, r) for r in range(4)]
    assert all(len(rounds) == 2 for rounds in per_rank)  # same number of rounds everywhere (lockstep)
    assert per_rank[0] == [[5, 3], [6, 4]] and per_rank[1] == [[9, 0], [10]]
    assert per_rank[2] == [[1, 7], []] and per_rank[3] == [[2, 8], []]  # no sample repeated to pad
    seen = [i for rounds in per_rank for batch in rounds for i in batch]
    assert sorted(seen) == sorted(order)
    assert deal_batches(order, 2, 1, 0) == [order[s:s + 2] for s in range(0, 11, 2)]  # one process: unchanged


def test_retain_draws_differ_by_rank_and_are_seeded():
    a, b = RetainDraw(50, seed=1, epoch=3, rank=0).take(20), RetainDraw(50, seed=1, epoch=3, rank=1).take(20)
    assert a != b and a == RetainDraw(50, seed=1, epoch=3, rank=0).take(20)


def test_weights_sha256_sees_every_byte():
    sd = {"a": torch.zeros(3), "b": torch.ones(2, 2, dtype=torch.bfloat16)}
    h = weights_sha256(sd)
    assert h == weights_sha256({"b": sd["b"].clone(), "a": sd["a"].clone()})  # order-free
    sd["a"][1] = 1e-30
    assert weights_sha256(sd) != h
    assert weights_sha256({"a": torch.zeros(3, dtype=torch.float64), "b": sd["b"]}) != h  # dtype counts


def test_shipped_accelerate_configs():
    configs = accelerate_configs()
    assert {"cpu", "ddp", "zero2", "zero3", "fsdp"} <= set(configs)
    import yaml

    zero3 = yaml.safe_load(Path(configs["zero3"][0]).read_text())
    assert zero3["distributed_type"] == "DEEPSPEED" and zero3["deepspeed_config"]["zero_stage"] == 3
    assert yaml.safe_load(Path(configs["fsdp"][0]).read_text())["fsdp_config"]["fsdp_version"] == 2


# --------------------------------------------------------------------------- two processes

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(args: list[str], timeout: int = 240, config: str = "cpu") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "FSDP_"))}
    env.update(OMP_NUM_THREADS="1", OBLIVIATE_QUIET="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", accelerate_configs()[config][0],
           "--num_processes", "2", "--main_process_port", str(_free_port()), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def analogous_file(tmp_path_factory):
    """Analogous samples given as a file (one per forget record), so the run skips the embedding model."""
    from obliviate.data.io import write_records
    from obliviate.data.sources import load_data

    path = tmp_path_factory.mktemp("data") / "analogous.jsonl"
    write_records(load_data("world:micro:retain")[:N_FORGET], path)
    return path


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory, analogous_file):
    out = tmp_path_factory.mktemp("ddp") / "run"
    proc = _launch(["-m", "obliviate.cli", "unlearn", "--model", "world-micro-target", "--forget",
                    "world:micro:forget", "--analogous", str(analogous_file), "--retain", "world:micro:retain",
                    "--method", "icu", "--out", str(out), *OVERRIDES])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


@pytest.mark.slow
def test_two_processes_train_on_different_samples_and_save_what_they_report(two_process_run):
    out, proc = two_process_run
    assert proc.stdout.count("icu: stopped after") == 1  # only the main process reports
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["distributed"]["num_processes"] == 2
    assert summary["distributed"]["distributed_type"] == "MULTI_CPU"

    # Each epoch, the two processes trained on disjoint forget samples that together cover the
    # samples still being unlearned, each exactly once (refinement may have dropped some).
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for epoch in (1, 2):
        by_rank = {r: [i for row in rows if row["epoch"] == epoch and row["rank"] == r for i in row["forget"]]
                   for r in (0, 1)}
        assert by_rank[0] and by_rank[1] and not set(by_rank[0]) & set(by_rank[1])
        together = by_rank[0] + by_rank[1]
        active = history[epoch - 1]["active"] if epoch > 1 else N_FORGET - history[0].get("newly_forgotten", 0)
        assert len(together) == len(set(together)) == active

    # Both processes hold the same final weights, model/ holds exactly them.
    from transformers import AutoModelForCausalLM

    per_process = summary["distributed"]["weights_sha256_per_process"]
    assert per_process == [summary["weights_sha256"]] * 2
    saved = AutoModelForCausalLM.from_pretrained(out / "model", dtype=torch.float32)
    assert weights_sha256(saved.state_dict()) == summary["weights_sha256"]

    # The metrics gathered across processes are those of the saved model measured in one process.
    from obliviate.data.encode import PromptTemplate, encode_records
    from obliviate.data.sources import load_data
    from obliviate.metrics import extraction_likelihood, memorization_accuracy
    from obliviate.models import load_tokenizer

    tok = load_tokenizer(out / "model")
    examples = encode_records(load_data("world:micro:forget")[:N_FORGET], tok, PromptTemplate(mode="auto"))
    per_sample = [json.loads(line) for line in (out / "per_sample.jsonl").read_text().splitlines()]
    assert [r["id"] for r in per_sample] == [e.id for e in examples]
    ev = yaml.safe_load((out / "config.yaml").read_text())["eval"]  # ICU: MA over the row, EL over the completion
    ma = memorization_accuracy(saved, examples, region=ev["ma_region"]).per_sample
    el = extraction_likelihood(saved, examples, n=10, region=ev["el_region"]).per_sample
    assert [r["ma_after"] for r in per_sample] == pytest.approx(ma, abs=1e-6)
    assert [r["el_10_after"] for r in per_sample] == pytest.approx(el, abs=1e-6)
    assert history[-1]["ma"] == pytest.approx(sum(ma) / len(ma), abs=1e-6)
    print(f"\n2 processes: {summary['seconds']} s, MA {history[0]['ma']:.3f} -> {history[-1]['ma']:.3f}, "
          f"EL10 {history[0]['el_10']:.3f} -> {history[-1]['el_10']:.3f}, active {history[-1]['active']}/{N_FORGET}")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None,
                    reason="DeepSpeed is not installed (pip install 'obliviate[deepspeed]')")
def test_zero3_trains_like_ddp_and_saves_what_it_reports(two_process_run, analogous_file, tmp_path):
    """DeepSpeed ZeRO-3 over gloo: weights sharded, ICU's frozen reference in its own DeepSpeed
    engine, evaluation in lockstep, the final weights gathered on the main process and saved."""
    ddp, _ = two_process_run
    out = tmp_path / "run"
    proc = _launch(["-m", "obliviate.cli", "unlearn", "--model", "world-micro-target", "--forget", "world:micro:forget",
                    "--analogous", str(analogous_file), "--retain", "world:micro:retain", "--method", "icu",
                    "--out", str(out), *OVERRIDES], config="zero3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["distributed"]["distributed_type"] == "DEEPSPEED" and summary["distributed"]["sharded_weights"]
    from transformers import AutoModelForCausalLM

    saved = AutoModelForCausalLM.from_pretrained(out / "model", dtype=torch.float32)
    assert weights_sha256(saved.state_dict()) == summary["weights_sha256"]
    # Same samples per process and, up to the order of floating-point reductions, the same training.
    assert (out / "samples.jsonl").read_text() == (ddp / "samples.jsonl").read_text()
    rows = [[json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()] for run in (ddp, out)]
    for a, b in zip(*rows, strict=True):
        assert a.get("active") == b.get("active")
        for key in ("ma", "el_10", "retain_nll"):
            assert b[key] == pytest.approx(a[key], abs=1e-3), (a["epoch"], key)


KILL_AND_RESUME = '''
import sys

import obliviate
from obliviate.engine import Callback


class KillAfterFirstEpoch(Callback):
    def on_checkpoint(self, args, report, control, **kwargs):
        if report.epoch == 1:  # both processes stop right after the first checkpoint is complete
            raise SystemExit(3)


out, mode = sys.argv[1], sys.argv[2]
if mode == "kill":
    obliviate.unlearn("world-micro-target", "world:micro:forget", method="icu", analogous=sys.argv[3],
                      retain="world:micro:retain", out=out, overrides=sys.argv[4:], callbacks=[KillAfterFirstEpoch()])
else:
    obliviate.unlearn(out=out, resume=True)
'''


@pytest.mark.slow
def test_two_processes_resume_after_a_kill_like_an_uninterrupted_run(two_process_run, analogous_file, tmp_path):
    full, _ = two_process_run
    script, out = tmp_path / "kill_and_resume.py", tmp_path / "run"
    script.write_text(KILL_AND_RESUME)
    killed = _launch([str(script), str(out), "kill", str(analogous_file), *OVERRIDES])
    assert killed.returncode != 0 and (out / "checkpoints" / "epoch-0001").is_dir(), killed.stderr[-3000:]
    assert not (out / "summary.json").exists()
    resumed = _launch([str(script), str(out), "resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    a, b = (json.loads((run / "summary.json").read_text()) for run in (full, out))
    assert b["weights_sha256"] == a["weights_sha256"] and b["epochs"] == 2
    strip = [{k: v for k, v in json.loads(line).items() if k != "time_s"}
             for run in (full, out) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert strip[:3] == strip[3:]  # same metrics, epoch by epoch
    assert (out / "samples.jsonl").read_text() == (full / "samples.jsonl").read_text()  # same batches per process
