"""``benchmarks/gpu_check.py --quick``: the GPU check's every step works on a CPU, in CI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_quick_measures_every_step_on_cpu(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--quick", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=1200, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    table = (tmp_path / "table.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    by_step: dict[str, list[str]] = {}
    for row in rows[1:]:  # after the header
        by_step.setdefault(row.split(" | ")[0][2:], []).append(row)
    # Batched metrics equal the per-position loops (a real comparison, measured in this run).
    metrics = "\n".join(by_step["metrics"])
    assert "MA forward pass" in metrics and "values identical: True" in metrics
    assert "EL_10 batched" in metrics and "identical at every position: True" in metrics
    # Engine vs bare loop for ICU, NPO and LoRA ICU, and the reference's memory: no second copy with LoRA.
    throughput = "\n".join(by_step["throughput"])
    for label in ("icu: engine", "npo: engine", "icu LoRA: engine"):
        assert label in throughput and "tok/s" in throughput
    assert "LoRA weights held with its reference 1.000x" in throughput and "no second copy" in throughput
    assert "frozen reference copy" in throughput
    # Sampling n continuations: the shared prefill and n independent rows, both timed in this run.
    assert "shared prefill" in by_step["attacks"][0] and "independent rows" in by_step["attacks"][0]
    # Steps the CPU mode leaves out say so, and why; nothing failed.
    assert "skipped in --quick" in by_step["demo"][0]
    assert {"demo", "metrics", "throughput", "attacks", "zero3"} <= set(by_step)
    assert "FAIL" not in table


def test_demo_rows_checked_against_goals_and_the_published_cpu_run(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import gpu_check
    from obliviate.demo import build_table

    cpu = gpu_check.published_demo_table()  # README's table of the CPU run
    assert cpu["forget MA"] == (0.746, 0.394) and cpu["held-out MA"] == (0.412, 0.412)
    splits = {"forget": {"ma": 0.75, "el_4": 0.16, "bleu_icu": 0.2, "bertscore_f1": 0.58},
              "retain": {"ma": 0.82, "bleu_icu": 0.18}, "heldout": {"ma": 0.41}}
    after = {"forget": {"ma": 0.40, "el_4": 0.01, "bleu_icu": 0.02, "bertscore_f1": 0.60},
             "retain": {"ma": 0.70, "bleu_icu": 0.17}, "heldout": {"ma": 0.41}}
    table = build_table({k: {"summary": v} for k, v in splits.items()}, {k: {"summary": v} for k, v in after.items()}, 4)
    rows = {figure.split(":")[0]: (versus, verdict) for figure, versus, verdict in gpu_check.demo_rows(table, cpu, 0.05)}
    assert rows["forget MA"] == ("CPU 0.746 -> 0.394", "drops to the held-out level: ok")
    assert rows["forget BLEU"][0] == "CPU 0.195 -> 0.021"  # README names it "... of the continuation"
    assert rows["forget BERTScore F1"][1] == "drops: NOT met"  # 0.58 -> 0.60 rose
    assert rows["retain MA"][1] == "stays: NOT met" and rows["held-out MA"][1] == "stays: ok"
