"""Training throughput of every method through the real engine vs a bare PyTorch loop, and peak
memory of LoRA's adapter-disabled reference vs a frozen copy (issue 7).

    .venv/bin/python benchmarks/bench_throughput.py                         # micro world model, CPU or GPU
    .venv/bin/python benchmarks/bench_throughput.py --model smollm2-135m --batch-size 4 --samples 8
    .venv/bin/python benchmarks/bench_throughput.py --lora --mixed-precision bf16   # the same, LoRA + autocast

**Throughput.** For each method, the same model, batches and optimizer run two ways:

* *engine*: ``Engine.train_epoch`` -- everything a real run does per step (batch collation,
  retain/alternate pairing, the method's loss and logs, the reference, accumulation logic,
  optimizer step), minus the per-epoch evaluation, which is not a training step;
* *bare*: a plain loop over the same pre-collated batches doing only the passes the method
  needs: one forward+backward over every batch part the method receives (forget, retain,
  analogous, alternates) with a cross-entropy, plus one no-grad reference forward and a KL when
  the method compares against the original model (ICU: on the analogous batch; KL/LLMU/RMU: on
  the retain batch; UNDIAL: on the forget batch). Cached reference log-probs (NPO, IdkDPO, AltPO)
  cost no forward in either. RMU trains the same parameters in both (on a model shallower than
  WMDP's block 7, its last block and the two before it).

"reference MiB" = what the engine holds for the original model (a frozen copy's weights, cached
log-probs); 0 for the methods that need none (WGA, SatImp, CE-U, SimNPO).

"cost" = engine seconds / bare seconds per epoch (goal: ICU <= 1.5x, i.e. no hidden overhead).
The engine's forward calls per step are counted (hooks on the transformer) and printed next to
what the method needs, so an extra pass would show. Timings are the best of ``--repeats``
interleaved epochs (the machine may be shared; the minimum is the least disturbed).

**Memory.** ICU four ways, each in a fresh process: full fine-tuning with the frozen reference
copy / without a reference (beta=0), LoRA with the adapter-disabled reference / without one.
Reported: the bytes of weights the engine holds (trained model + reference, distinct storages),
the training state (+ gradients + optimizer state), and the peak: ``torch.cuda.max_memory_allocated``
on a GPU; on CPU the peak RSS the engine adds on top of the loaded model (meaningful from ~100M
parameters; below, allocator noise dominates and the held-bytes columns are the measure). LoRA
with its reference must hold no more weights than LoRA without one (no second copy).

The device is whatever accelerate picks (CUDA when present), so the same command runs there.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from contextlib import nullcontext

os.environ.setdefault("OBLIVIATE_QUIET", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
import torch
import torch.nn.functional as F

from obliviate.engine import Engine, UnlearnData
from obliviate.engine import checkpoint as ckpt
from obliviate.engine.data import EpochSampler, RetainDraw, build_method_batch
from obliviate.engine.distributed import deal_batches
from obliviate.methods import METHODS, get_method

warnings.filterwarnings("ignore", category=FutureWarning)  # transformers' deprecation notices inside peft
PARTS = ("forget", "retain", "analogous", "alternate")


class StepOnlyEngine(Engine):
    """The real engine without the evaluation of the original model at setup (MA/EL/refinement
    are not training steps; on a 135M model on CPU they would take longer than the benchmark)."""

    def _start(self) -> None:
        n = self.n_forget
        self.state = ckpt.EngineState(active=[True] * n, forgotten_at=[None] * n,
                                      method_state=dict(self.method_cfg.initial_state()))


# --------------------------------------------------------------------------- setup

def build_run(model_spec: str, method: str, batch_size: int, samples: int, extra: list[str], dtype: str):
    """(model, tokenizer, method spec, method config, train config, data) as ``obliviate.unlearn``
    would build them, with the method's paper defaults and our batch settings."""
    from obliviate.data.encode import PromptTemplate, encode_records
    from obliviate.data.refusals import load_refusals
    from obliviate.data.sources import load_data
    from obliviate.engine import mismatch_alternates, refusal_alternates
    from obliviate.engine.data import fixed_alternates
    from obliviate.methods.altpo import sample_alternates
    from obliviate.methods.layers import decoder_layers
    from obliviate.models import load_model
    from obliviate.unlearning import build_config

    model, tok = load_model(model_spec, dtype=dtype)
    overrides = [f"train.batch_size={batch_size}", "train.gradient_accumulation_steps=1", "train.scheduler=constant",
                 "refinement.enabled=false", "eval.retain=false", *extra]
    if method == "ulmr":
        overrides.append("method_args.restructured=true")  # its SFT step (the pipeline's training)
    if method == "rmu":  # WMDP's blocks 5-7 / 7 where the model is deep enough, else its last three / last one
        depth = len(decoder_layers(model)[1])
        layer = min(7, depth - 1)
        overrides += [f"method_args.layer={layer}",
                      f"method_args.trainable_layers=[{','.join(map(str, range(max(0, layer - 2), layer + 1)))}]"]
    cfg = build_config(method, None, overrides)
    forget_records = load_data("world:micro:forget")[:samples]
    retain_records = load_data("world:micro:retain")
    template = PromptTemplate(mode="auto")
    req = cfg.method_args.requirements()
    data = UnlearnData(forget=encode_records(forget_records, tok, template),
                       retain=encode_records(retain_records, tok, template))
    if req.analogous:
        data.analogous = encode_records(retain_records[:len(forget_records)], tok, template)
    if req.alternates == "refusals":
        data.alternates = refusal_alternates(forget_records, data.forget, load_refusals(None)[0], tok, template,
                                             cfg.train.seed)
    elif req.alternates == "retain_completions":
        data.alternates = mismatch_alternates(data.forget, data.retain, req.alternates_per_sample, cfg.train.seed)
    elif req.alternates == "generated":
        texts = sample_alternates(model, tok, forget_records, data.forget, cfg.method_args, cfg.train.seed)
        data.alternates = fixed_alternates(forget_records, data.forget, texts, tok, template, "alt")
    if not req.retain:
        data.retain = None
    return model, tok, get_method(method), cfg, data


def options(mixed_precision: str, gradient_checkpointing: bool) -> list[str]:
    out = [f"train.gradient_checkpointing={str(gradient_checkpointing).lower()}"]
    if mixed_precision != "no":  # (the default; a bare `no` would read as YAML's false)
        out.append(f"train.mixed_precision={mixed_precision}")
    return out


def make_engine(model, tok, spec, cfg, data) -> StepOnlyEngine:
    engine = StepOnlyEngine(model, tok, spec, cfg.method_args, data, train=cfg.train, stop=cfg.stop,
                            refinement=cfg.refinement, evaluation=cfg.eval)
    engine.setup()
    return engine


def epoch_batches(engine: Engine, epoch: int) -> list:
    """The engine's micro-batches of ``epoch`` (one process), collated once, outside any timing."""
    train, data = engine.train_cfg, engine.data
    sampler = EpochSampler(engine.n_forget, train.seed)
    sampler.set_epoch(epoch)
    rounds = deal_batches(list(sampler), engine.micro, 1, 0)
    retain = RetainDraw(len(data.retain), train.seed, epoch, 0) if engine.req.retain and data.retain else None
    alternates = None
    if data.alternates is not None and engine.req.alternates:
        alternates = data.alternates(epoch if engine.req.resample_alternates else 0)
    return [build_method_batch(idx, data, engine.pad_id, engine.region, retain, alternates, engine.acc.device)
            for idx in rounds]


def reference_part(engine: Engine) -> str | None:
    """Which batch the method runs the original model on (None: it needs no reference forward)."""
    if not engine.req.reference_model:
        return None
    if engine.method.name == "undial":  # distils toward the original on the forget batch itself
        return "forget"
    return "analogous" if engine.req.analogous else "retain"


def reference_bytes(engine: Engine) -> int:
    """Bytes the engine holds for the original model: a frozen copy's weights and buffers plus the
    cached log-probs (a LoRA run's reference is the trained module itself: 0 extra)."""
    model = getattr(engine.ref, "model", None)
    copy_bytes = 0
    if model is not None and model is not engine.acc.unwrap_model(engine.prepared):
        copy_bytes = sum(t.untyped_storage().nbytes() for t in [*model.parameters(), *model.buffers()])
    return copy_bytes + sum(t.nbytes for t in engine.ref.cache.values())


# --------------------------------------------------------------------------- the bare loop

def bare_setup(original, engine: Engine, lora: bool):
    """A fresh copy of the model (LoRA-wrapped like the engine's), its reference and optimizer."""
    from obliviate.engine.lora import apply_lora

    device, train = engine.acc.device, engine.train_cfg
    torch.manual_seed(train.seed)
    model = copy.deepcopy(original)
    if lora:
        model = apply_lora(model, train.lora)
    trainable = engine.method_cfg.trainable_parameters(model)
    if trainable is not None:  # RMU: the same parameters as the engine trains
        for name, p in model.named_parameters():
            p.requires_grad_(name in set(trainable))
    if train.gradient_checkpointing:
        base = model.get_base_model() if lora else model
        if hasattr(base, "activation_checkpointing_enable"):  # transformers >= 5.x's name
            base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.train()  # transformers only checkpoints in training mode (these models have no dropout at 0)
    model.to(device)
    ref = None
    if reference_part(engine) and not lora:
        ref = copy.deepcopy(original).to(device).eval().requires_grad_(False)
    opt_cls = torch.optim.Adam if train.optimizer == "adam" else torch.optim.AdamW
    optimizer = opt_cls([p for p in model.parameters() if p.requires_grad], lr=train.lr, betas=tuple(train.betas),
                        eps=train.eps, weight_decay=train.weight_decay)
    return model, ref, optimizer


def _logits(model, batch) -> torch.Tensor:
    return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids,
                 use_cache=False).logits


def bare_epoch(model, ref, optimizer, batches, ref_part: str | None, lora: bool, autocast) -> None:
    for mb in batches:
        with autocast():
            loss, logits_of = 0.0, {}
            for part in PARTS:
                batch = getattr(mb, part)
                if batch is None:
                    continue
                logits = logits_of[part] = _logits(model, batch)
                loss = loss + F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), batch.labels[:, 1:].flatten(),
                                              ignore_index=-100)
            if ref_part is not None:
                batch = getattr(mb, ref_part)
                with torch.no_grad(), model.disable_adapter() if lora else nullcontext():
                    ref_logits = _logits(model if lora else ref, batch)
                loss = loss + F.kl_div(F.log_softmax(logits_of[ref_part].float(), -1),
                                       F.log_softmax(ref_logits.float(), -1), log_target=True, reduction="batchmean")
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


# --------------------------------------------------------------------------- measuring

def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


class ForwardCounter:
    """Forward calls of the transformer with and without gradients (training passes vs reference
    forwards). Registered on the model before the engine copies it, so a frozen reference copy
    carries the hook too (a closure: deepcopy shares functions, but would copy a bound method's object)."""

    def __init__(self, model: torch.nn.Module):
        self.grad = self.no_grad = 0
        self.on = False

        def hook(*_) -> None:
            if self.on:
                if torch.is_grad_enabled():
                    self.grad += 1
                else:
                    self.no_grad += 1

        model.base_model.register_forward_pre_hook(hook)


def throughput(args, method: str) -> dict:
    extra = ["train.lora.enabled=true"] if args.lora else []
    extra += options(args.mixed_precision, args.gradient_checkpointing)
    model, tok, spec, cfg, data = build_run(args.model, method, args.batch_size, args.samples, extra, args.dtype)
    original = copy.deepcopy(model)
    counter = ForwardCounter(model)
    engine = make_engine(model, tok, spec, cfg, data)
    device = engine.acc.device
    bare_model, ref, optimizer = bare_setup(original, engine, args.lora)
    ref_part = reference_part(engine)
    autocast = engine.acc.autocast

    steps = len(epoch_batches(engine, 1))
    tokens = sum(len(e.ids) for e in data.forget)  # forget tokens per epoch (both loops see the same)
    counter.on = True
    engine.train_epoch(1)  # warm-up (and counting)
    counter.on = False
    bare_epoch(bare_model, ref, optimizer, epoch_batches(engine, 1), ref_part, args.lora, autocast)  # warm-up
    engine_s, bare_s = [], []
    for epoch in range(2, 2 + args.repeats):
        batches = epoch_batches(engine, epoch)
        bare_s.append(timed(lambda b=batches: bare_epoch(bare_model, ref, optimizer, b, ref_part, args.lora,
                                                         autocast), device))
        engine_s.append(timed(lambda e=epoch: engine.train_epoch(e), device))
    mb = epoch_batches(engine, 1)[0]
    passes = [p for p in PARTS if getattr(mb, p) is not None]
    return {"method": method, "steps": steps, "tokens": tokens, "device": str(device),
            "passes": "+".join(passes) + (f" | ref:{ref_part}" if ref_part else ""),
            "needed_per_step": (len(passes), 1 if ref_part else 0),
            "engine_per_step": (counter.grad / steps, counter.no_grad / steps),
            "bare_s": min(bare_s), "engine_s": min(engine_s), "reference_bytes": reference_bytes(engine)}


def held_bytes(engine: Engine) -> tuple[int, int]:
    """(weights, weights + gradients + optimizer state) the engine holds, distinct storages only."""
    storages: dict[int, int] = {}

    def add(t) -> None:
        if isinstance(t, torch.Tensor):
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()

    for module in (engine.prepared, getattr(engine.ref, "model", None)):
        if module is not None:
            for t in [*module.parameters(), *module.buffers()]:
                add(t)
    weights = sum(storages.values())
    for p in engine.prepared.parameters():
        add(p.grad)
    for state in engine.optimizer.optimizer.state.values():
        for t in state.values():
            add(t)
    return weights, sum(storages.values())


def current_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss() -> None:
    """Start the kernel's peak-RSS counter (VmHWM) afresh (Linux >= 4.0): loading a model can
    peak far above what it keeps, and that peak is not the engine's."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_rss() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def memory_child(spec: dict) -> dict:
    """One configuration, measured in this (fresh) process."""
    extra = [f"train.lora.enabled={str(spec['lora']).lower()}", f"method_args.beta={spec['beta']}",
             *options(spec["mixed_precision"], spec["gradient_checkpointing"])]
    model, tok, method, cfg, data = build_run(spec["model"], "icu", spec["batch_size"], spec["samples"], extra,
                                              spec["dtype"])
    import importlib.util

    import accelerate  # noqa: F401  (libraries the engine loads are imported before the baseline)
    import peft  # noqa: F401

    if importlib.util.find_spec("deepspeed") is not None:  # accelerate imports it when installed
        import deepspeed  # noqa: F401

    rss_baseline = current_rss()  # the loaded model and the libraries; the engine's additions come on top
    reset_peak_rss()
    engine = make_engine(model, tok, method, cfg, data)
    cuda = engine.acc.device.type == "cuda"
    engine.train_epoch(1)
    # Gradients are freed at each step's end (zero_grad(set_to_none)); one more backward puts
    # them back so the training state counts them, as at the peak of a step.
    weights, _ = held_bytes(engine)
    mb = epoch_batches(engine, 2)[0]
    engine.method.loss(engine.prepared, mb, engine.method_cfg, engine.ref).loss.backward()
    _, state = held_bytes(engine)
    out = {"weights": weights, "state": state}
    if cuda:  # everything on the device, the model included
        out["peak"] = torch.cuda.max_memory_allocated()
    else:
        out["peak"] = max(peak_rss() - rss_baseline, 0)
    return out


MEMORY_CONFIGS = (("full fine-tune, frozen reference copy", False, 1.0),
                  ("full fine-tune, no reference (beta=0)", False, 0.0),
                  ("LoRA, adapter-disabled reference", True, 1.0),
                  ("LoRA, no reference (beta=0)", True, 0.0))


def memory(args, label: str, lora: bool, beta: float) -> dict:
    """One ``MEMORY_CONFIGS`` row, measured in a fresh process."""
    spec = {"model": args.model, "batch_size": args.batch_size, "samples": args.samples, "dtype": args.dtype,
            "lora": lora, "beta": beta, "mixed_precision": args.mixed_precision,
            "gradient_checkpointing": args.gradient_checkpointing}
    proc = subprocess.run([sys.executable, __file__, "--memory-child", json.dumps(spec)], capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"memory child failed ({label}):\n{proc.stderr[-2000:]}")
    return {"label": label, **json.loads(proc.stdout.strip().splitlines()[-1])}


# --------------------------------------------------------------------------- output

def mib(n: float) -> str:
    return f"{n / 2**20:9.2f}"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.3f}x" if b > 0 else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="world-micro-target", help="model spec (default: the micro world model)")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated (default: all)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--samples", type=int, default=40, help="forget samples per epoch (world:micro:forget, max 40)")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per loop (best one counts)")
    parser.add_argument("--dtype", default="float32", help="model weights dtype")
    parser.add_argument("--lora", action="store_true", help="train LoRA adapters (both loops)")
    parser.add_argument("--mixed-precision", default="no", choices=("no", "bf16", "fp16"))
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice; 1 is steadier on a shared machine)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory comparison")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        print(json.dumps(memory_child(json.loads(args.memory_child))))
        return

    device = "cuda" if torch.cuda.is_available() else "cpu"
    where = torch.cuda.get_device_name() if device == "cuda" else f"{platform.processor() or 'CPU'}, " \
                                                                   f"{torch.get_num_threads()} threads"
    print(f"model {args.model}, {args.dtype}, batch {args.batch_size}, {args.samples} forget samples/epoch, "
          f"lora={args.lora}, mixed_precision={args.mixed_precision}, "
          f"gradient_checkpointing={args.gradient_checkpointing}; device {device} ({where}); "
          f"torch {torch.__version__}")
    print("\nthroughput: engine step vs bare forward/backward loop (same model, batches, optimizer)")
    print(f"{'method':<9} {'passes per step (fwd+bwd | ref fwd)':<38} {'fwd/step need':>13} {'engine':>7} "
          f"{'bare tok/s':>11} {'engine tok/s':>12} {'cost':>6} {'reference MiB':>13}")
    results = []
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        r = throughput(args, method)
        results.append(r)
        need, got = r["needed_per_step"], r["engine_per_step"]
        print(f"{r['method']:<9} {r['passes']:<38} {need[0]:>6}+{need[1]:<6} {got[0]:>3g}+{got[1]:<3g} "
              f"{r['tokens'] / r['bare_s']:>11.0f} {r['tokens'] / r['engine_s']:>12.0f} "
              f"{r['engine_s'] / r['bare_s']:>5.2f}x {mib(r['reference_bytes']):>13}", flush=True)
    over = [r["method"] for r in results if r["engine_s"] / r["bare_s"] > 1.5]
    print(f"methods over the 1.5x goal: {', '.join(over) or 'none'}")
    free = [r["method"] for r in results if r["method"] in ("wga", "satimp", "ceu")]
    if free:
        held = {m: next(r["reference_bytes"] for r in results if r["method"] == m) for m in free}
        print("reference memory of the reference-free methods: " + ", ".join(f"{m} {b} bytes" for m, b in held.items()))
    icu = next((r for r in results if r["method"] == "icu"), None)
    if icu is not None:
        cost = icu["engine_s"] / icu["bare_s"]
        print(f"ICU step cost vs its own forward/backward passes: {cost:.2f}x (goal <= 1.5x: "
              f"{'met' if cost <= 1.5 else 'NOT met'})")
    if args.no_memory:
        return
    print("\npeak memory, ICU (each in a fresh process; MiB)")
    peak_name = "peak CUDA alloc" if device == "cuda" else "peak RSS added"
    print(f"{'configuration':<40} {'weights held':>12} {'+grads+optim':>12} {peak_name:>16}")
    rows = []
    for config in MEMORY_CONFIGS:
        row = memory(args, *config)
        rows.append(row)
        print(f"{row['label']:<40} {mib(row['weights']):>12} {mib(row['state']):>12} {mib(row['peak']):>16}",
              flush=True)
    full_ref, full_none, lora_ref, lora_none = rows
    print(f"LoRA reference / no reference: weights {ratio(lora_ref['weights'], lora_none['weights'])}, "
          f"peak {ratio(lora_ref['peak'], lora_none['peak'])}  (no second copy: weights 1.000x)")
    print(f"frozen copy / no reference:    weights {ratio(full_ref['weights'], full_none['weights'])}, "
          f"peak {ratio(full_ref['peak'], full_none['peak'])}  (the copy: weights ~2x)")
    print(f"LoRA / full fine-tune (both with reference): weights {ratio(lora_ref['weights'], full_ref['weights'])}, "
          f"training state {ratio(lora_ref['state'], full_ref['state'])}, peak {ratio(lora_ref['peak'], full_ref['peak'])}")
    if device == "cpu":
        print("(CPU: peak RSS the engine adds over the loaded model, activations included; for a tiny "
              "model that is allocator noise and the held-bytes columns are the measure)")


if __name__ == "__main__":
    main()
