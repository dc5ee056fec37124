"""The one training loop every unlearning method shares.

    engine = Engine(model, tokenizer, method_spec, method_cfg, data, train=..., stop=..., refinement=..., evaluation=...)
    result = engine.run(resume=False)

One run:

1. ``setup``: accelerate (mixed precision, gradient accumulation, devices), the optimizer, the
   seeded forget sampler, the reference (frozen copy and/or cached log-probs); either a fresh
   start -- thresholds (given or calibrated), metrics of the original model ("before"), and
   under the reference refinement rule a first refinement check -- or the latest checkpoint.
2. Each epoch: forget micro-batches of the *active* samples (refinement may have dropped some;
   a batch left empty is skipped, no optimizer step), paired with retain / analogous / alternate
   batches as the method requires; then evaluation (``engine.evaluation``: MA and EL_n of the
   forget set, retain perplexity, refinement scores), the callbacks (``engine.callbacks``;
   refinement's decides the next active set), the stopping rule, and a checkpoint.
3. The result: the unwrapped model and the engine state (history, per-sample metrics before
   and after, when each sample was forgotten, why it stopped); ``export_model`` saves it
   (``engine.export``).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from obliviate.data.encode import Encoded
from obliviate.engine import checkpoint as ckpt
from obliviate.engine import distributed as dist
from obliviate.engine import evaluation, lora, tracking
from obliviate.engine.callbacks import Callback, Control, EpochReport, RunArgs, as_update, freeze
from obliviate.engine.config import EvalConfig, StopConfig, TrainConfig
from obliviate.engine.data import EpochSampler, RetainDraw, UnlearnData, build_method_batch
from obliviate.engine.export import ExportedModel, export_model
from obliviate.engine.reference import (
    AdapterReference,
    FrozenReference,
    frozen_copy,
    precompute_sequence_logprobs,
    prepare_frozen,
)
from obliviate.engine.refinement import Refinement, RefinementCallback, RefinementConfig
from obliviate.engine.stopping import mean_over, stop_reason
from obliviate.errors import ObliviateError
from obliviate.methods.base import MethodConfig, MethodSpec
from obliviate.utils import progress, seed_everything

SAMPLES_FILE = "samples.jsonl"

log = logging.getLogger(__name__)


@dataclass
class EngineResult:
    model: torch.nn.Module
    state: ckpt.EngineState

    @property
    def stop_reason(self) -> str | None:
        return self.state.stop_reason

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.state.history


@dataclass
class _EpochPlan:
    rounds: list[list[int]]  # this process's forget indices, round by round
    order: list[int]  # the epoch's seeded order of the whole forget set
    retain_draw: RetainDraw | None
    spare_draw: RetainDraw | None  # placeholder batches of processes without data
    alternates: list[list[Encoded]] | None


@dataclass
class _Tally:
    sums: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    window: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # since the last optimizer step
    window_batches: int = 0
    micro_batches: int = 0
    skipped: int = 0
    steps: int = 0
    record: list[dict[str, Any]] = field(default_factory=list)


@contextmanager
def plain_forward(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """The model with its own forward, for evaluation under mixed precision.

    accelerate wraps ``forward`` in autocast (keeping the original as ``_original_forward``);
    metrics measure the model as it will be saved and used, in its own dtype (and their KV
    caches would otherwise mix dtypes). Training gets the wrapper back afterwards.
    """
    original = model.__dict__.get("_original_forward")
    if original is None:
        yield model
        return
    wrapped = model.__dict__["forward"]
    model.forward = original
    try:
        yield model
    finally:
        model.forward = wrapped


def make_accelerator(train: TrainConfig, run_dir: Path | None = None):
    """An ``Accelerator`` for this run.

    accelerate keeps process-wide singletons and refuses a second Accelerator with another
    mixed precision; in a plain single process (tests, notebooks, ``obliviate demo``) a new run
    must be free to choose, so we reset them there. Under ``accelerate launch`` nothing is reset.
    ``train.mixed_precision`` decides autocast (the launch config's ``mixed_precision`` does not).
    ``train.report_to`` adds accelerate's trackers, logging under ``run_dir`` (``engine.tracking``).
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState
    from accelerate.utils import DistributedType, InitProcessGroupKwargs

    extra = dist.accelerator_kwargs()
    if dist.partial_state().num_processes == 1:
        AcceleratorState._reset_state()
        GradientState._reset_state()
    try:
        acc = Accelerator(mixed_precision=train.mixed_precision,
                          gradient_accumulation_steps=train.gradient_accumulation_steps,
                          step_scheduler_with_optimizer=False, cpu=extra.get("cpu", False),
                          **tracking.accelerator_kwargs(train.report_to, run_dir),
                          kwargs_handlers=[InitProcessGroupKwargs(backend=extra["backend"])] if "backend" in extra else None)
    except ValueError as e:  # e.g. fp16 without a GPU
        raise ObliviateError(f"train.mixed_precision={train.mixed_precision}: {str(e).splitlines()[0]}") from None
    if acc.distributed_type == DistributedType.FSDP and not acc.is_fsdp2:
        raise ObliviateError("obliviate runs FSDP version 2 only (fsdp_version: 2 in the accelerate config; "
                             "see `obliviate accelerate-config fsdp`)")
    return acc


def checkpointed_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The layers transformers checkpoints when gradient checkpointing is on."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    return [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer) and m.gradient_checkpointing]


class Engine:
    def __init__(self, model: torch.nn.Module, tokenizer, method: MethodSpec, method_cfg: MethodConfig,
                 data: UnlearnData, *, train: TrainConfig | None = None, stop: StopConfig | None = None,
                 refinement: RefinementConfig | None = None, evaluation: EvalConfig | None = None,
                 run_dir: str | Path | None = None, callbacks: Sequence[Callback] = (), keep_checkpoints: int = 1):
        self.model, self.tokenizer, self.method, self.method_cfg, self.data = model, tokenizer, method, method_cfg, data
        self.train_cfg, self.stop_cfg = train or TrainConfig(), stop or StopConfig()
        self.refine_cfg, self.eval_cfg = refinement or RefinementConfig(), evaluation or EvalConfig()
        for cfg in (self.train_cfg, self.stop_cfg, self.refine_cfg, self.eval_cfg):
            cfg.check()
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.keep_checkpoints = keep_checkpoints
        self.req = method_cfg.requirements()
        method_cfg.check()
        self.region = method_cfg.loss_region
        self._check_data()
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.refiner = Refinement(self.refine_cfg, tokenizer) if self.refine_cfg.enabled else None
        # Refinement decides the active set before any other callback sees the epoch.
        self.callbacks = [*([RefinementCallback(self.refine_cfg)] if self.refiner else []), *callbacks]
        self.args = RunArgs(method=method.name, method_cfg=method_cfg, train=self.train_cfg, stop=self.stop_cfg,
                            refinement=self.refine_cfg, eval=self.eval_cfg, forget_ids=tuple(e.id for e in data.forget),
                            run_dir=self.run_dir)
        self.state = ckpt.EngineState()
        self._ready = False

    def _check_data(self) -> None:
        name, data = self.method.name, self.data
        if not data.forget:
            raise ObliviateError("the forget set is empty")
        if self.req.retain and not data.retain:
            raise ObliviateError(f"method {name!r} needs a retain set (--retain)")
        if self.req.analogous and (data.analogous is None or len(data.analogous) != len(data.forget)):
            raise ObliviateError(f"method {name!r} needs one analogous sample per forget sample (--analogous or --pool)")
        if self.req.alternates and data.alternates is None:
            raise ObliviateError(f"method {name!r} needs alternate completions ({self.req.alternates})")
        if self.stop_cfg.calibrate_on and not data.heldout:
            raise ObliviateError("stop.calibrate_on is set but no held-out records were loaded")

    # ------------------------------------------------------------------ setup

    @property
    def n_forget(self) -> int:
        return len(self.data.forget)

    def setup(self, resume: bool = False) -> None:
        """Prepare everything; continue from the latest checkpoint when ``resume`` finds one."""
        train = self.train_cfg
        self.acc = acc = make_accelerator(train, self.run_dir)
        self.sharded = dist.is_sharded(acc)
        seed_everything(train.seed)
        self.use_lora = train.lora.enabled
        if self.use_lora:
            self.model = lora.apply_lora(self.model, train.lora)
        if train.gradient_checkpointing:
            base = self.model.get_base_model() if self.use_lora else self.model
            if hasattr(base, "activation_checkpointing_enable"):  # transformers >= 5.x's name
                base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        # The frozen copy is taken before prepare() wraps or moves the model. A LoRA run needs
        # none: its reference is the same module with the adapter switched off.
        ref_model = None
        if self.req.reference_model and not self.use_lora:
            ref_model = frozen_copy(self.model, train.reference_dtype)
        self._freeze_untrained()
        self._train_mode(self.model)
        optimizer_cls = torch.optim.Adam if train.optimizer == "adam" else torch.optim.AdamW
        optimizer = optimizer_cls([p for p in self.model.parameters() if p.requires_grad], lr=train.lr,
                                  betas=tuple(train.betas), eps=train.eps, weight_decay=train.weight_decay)
        self.micro = train.batch_size or math.ceil(self.n_forget / (train.gradient_accumulation_steps
                                                                     * acc.num_processes))
        self.rounds_per_epoch = len(dist.deal_batches(range(self.n_forget), self.micro, acc.num_processes, 0))
        self._configure_deepspeed()
        self.prepared, self.optimizer = acc.prepare(self.model, optimizer)
        if ref_model is not None:
            ref_model = prepare_frozen(acc, ref_model)
        self.scheduler = None
        if train.scheduler == "linear":  # linear warm-up then decay to 0 at max_epochs (HF's schedule, as TOFU)
            from transformers import get_linear_schedule_with_warmup

            per_epoch = math.ceil(self.rounds_per_epoch / train.gradient_accumulation_steps)
            total = per_epoch * self.stop_cfg.max_epochs
            self.scheduler = acc.prepare(get_linear_schedule_with_warmup(
                self.optimizer.optimizer, round(per_epoch * train.warmup_epochs), total))
        self.tracker = tracking.RunTracker(acc, self._tracked_config(), self.run_dir)
        if self.use_lora:  # checkpoints hold the adapters only: the base weights never change
            acc.register_save_state_pre_hook(_adapter_weights_only)
        latest = ckpt.latest_checkpoint(self.run_dir) if resume and self.run_dir is not None else None
        if latest is not None:
            log.info("resuming from %s", latest)
            acc.load_state(str(latest), **({"strict": False} if self.use_lora else {}))
            self.state = ckpt.read_state(latest)
            cache = torch.load(latest / ckpt.CACHE_FILE) if (latest / ckpt.CACHE_FILE).is_file() else {}
            self.ref = self._reference(ref_model, cache)
            self._truncate_samples_log(self.state.epoch)
        else:
            self.ref = self._reference(ref_model, self._reference_cache())
            self._start()
        self._ready = True

    def _reference(self, ref_model: torch.nn.Module | None, cache: dict[str, torch.Tensor]):
        if self.use_lora and self.req.reference_model:
            return AdapterReference(self.acc.unwrap_model(self.prepared), cache, self.acc.autocast)
        return FrozenReference(ref_model, cache, self.acc.autocast)

    def _freeze_untrained(self) -> None:
        """Train only the parameters the method names (``MethodConfig.trainable_parameters``)."""
        names = self.method_cfg.trainable_parameters(self.model)
        if names is None:
            return
        keep = set(names)
        for name, p in self.model.named_parameters():
            p.requires_grad_(name in keep)
        log.info("training %d parameter tensors only: %s", len(keep), ", ".join(sorted(keep)[:6]))

    def _train_mode(self, model: torch.nn.Module) -> None:
        """Dropout off (eval mode, as the references load their models) unless ``train.dropout``;
        adapter dropout on when ``train.lora.dropout`` > 0; checkpointed layers flagged as training,
        because transformers only checkpoints a layer whose ``training`` is set (their submodules stay
        in eval mode, so this turns on no dropout). Evaluation's ``model.eval()`` undoes the flags,
        so generation keeps its KV cache."""
        model.train(self.train_cfg.dropout)
        if self.use_lora:
            lora.set_adapter_dropout(model, self.train_cfg.lora.dropout > 0)
        for layer in checkpointed_layers(model):
            layer.training = True

    def _configure_deepspeed(self) -> None:
        """Our config decides batch size, accumulation and clipping, not DeepSpeed's "auto" defaults
        (accelerate would otherwise clip at 1.0 and needs a dataloader to size the micro-batch)."""
        from accelerate.utils import DistributedType

        if self.acc.distributed_type != DistributedType.DEEPSPEED:
            return
        train, plugin = self.train_cfg, self.acc.state.deepspeed_plugin
        ds = plugin.deepspeed_config
        ds["train_micro_batch_size_per_gpu"] = self.micro
        ds["gradient_accumulation_steps"] = train.gradient_accumulation_steps
        ds["train_batch_size"] = self.micro * train.gradient_accumulation_steps * self.acc.num_processes
        ds["gradient_clipping"] = float(train.max_grad_norm or 0.0)
        if plugin.zero_stage == 3:  # export_model gathers the full weights
            ds.setdefault("zero_optimization", {})["stage3_gather_16bit_weights_on_model_save"] = True

    def _reference_cache(self) -> dict[str, torch.Tensor]:
        """Per-sequence log-probs of the fixed data the method compares against, computed with the
        model before its first update (it *is* the original model then; with LoRA the adapters start
        as a no-op). Processes share the work."""
        cache: dict[str, torch.Tensor] = {}
        for part in self.req.cached_logprobs:
            if part == "forget":
                examples = self.data.forget
            elif part == "alternate" and self.data.alternates is not None:
                if self.req.resample_alternates:
                    raise ObliviateError("cached reference log-probs need fixed alternates")
                examples = [a for alts in self.data.alternates(0) for a in alts]
            else:
                raise ObliviateError(f"cannot cache reference log-probs of {part!r}")
            model = self.acc.unwrap_model(self.prepared)

            def logprobs(chunk: list[Encoded], model=model) -> list[float]:
                return precompute_sequence_logprobs(model, chunk, self.pad_id, self.region, self.eval_cfg.batch_size,
                                         self.acc.device, self.acc.autocast).tolist()

            cache[part] = torch.tensor(self._shared(logprobs, examples), dtype=torch.float32)
        self._train_mode(self.acc.unwrap_model(self.prepared))
        return cache

    def _tracked_config(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {"method": self.method.name, "method_args": asdict(self.method_cfg), "train": asdict(self.train_cfg),
                "stop": asdict(self.stop_cfg), "eval": asdict(self.eval_cfg), "n_forget": self.n_forget}

    def _start(self) -> None:
        """Thresholds and the original model's metrics (epoch 0); callbacks see them too (under the
        reference rule, refinement makes its first check here)."""
        n = self.n_forget
        self.state = state = ckpt.EngineState(active=[True] * n, forgotten_at=[None] * n,
                                              method_state=dict(self.method_cfg.initial_state()))
        model = self.acc.unwrap_model(self.prepared)
        with plain_forward(model):
            state.thresholds, state.thresholds_source = evaluation.thresholds(
                model, self.data.heldout or [], self.eval_cfg, self.stop_cfg)
        control = self._evaluate_epoch(0, {"epoch": 0}, before=True)
        if control.should_stop:  # a callback's verdict on the original model: nothing to unlearn
            state.stop_reason = state.history[-1]["stop_reason"] = control.stop_reason or "callback"
        self.tracker.log_epoch(state.history[-1], n)
        log.info("before unlearning: %s", _fmt(state.history[-1]))

    # ------------------------------------------------------------------ run

    def run(self, resume: bool = False) -> EngineResult:
        if not self._ready:
            self.setup(resume)
        state = self.state
        while state.stop_reason is None:
            epoch = state.epoch + 1
            started = time.perf_counter()
            logs = self.train_epoch(epoch)
            self.end_epoch(epoch, logs, started)
            self.save_checkpoint()
            report = self.report()
            for cb in self.callbacks:
                cb.on_checkpoint(self.args, report, Control())
        # Training is over: drop accelerate's autocast wrapper so the model is plainly itself.
        return EngineResult(self.acc.unwrap_model(self.prepared, keep_fp32_wrapper=False), state)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the forget set (active samples only). Returns the epoch's training logs.

        Each process trains on its own micro-batches (``distributed.deal_batches``); all processes
        run the same rounds in lockstep. Gradients of ``gradient_accumulation_steps`` rounds are
        accumulated, then one optimizer step -- unless no process had an active sample in any of
        them (a batch of forgotten samples never moves the weights).
        """
        acc, train = self.acc, self.train_cfg
        plan = self._epoch_plan(epoch)
        self._train_mode(acc.unwrap_model(self.prepared))
        tally = _Tally()
        window_has_data = False
        acc.sync_gradients = True  # accelerate's optimizer wrapper only zeroes/steps when this is set
        self.optimizer.zero_grad(set_to_none=True)
        for k, idx in enumerate(progress(plan.rounds, desc=f"epoch {epoch}", total=len(plan.rounds))):
            boundary = (k + 1) % train.gradient_accumulation_steps == 0 or k + 1 == len(plan.rounds)
            acc.sync_gradients = boundary
            window_has_data = self._train_round(epoch, k, idx, boundary, window_has_data, plan, tally)
            if boundary:
                if window_has_data:
                    self._optimizer_step()
                    tally.steps += 1
                    self.tracker.log_step(self.state.steps + tally.steps,
                                          {k: v / max(tally.window_batches, 1) for k, v in tally.window.items()})
                    self._update_method_state(epoch, tally)
                tally.window.clear()
                tally.window_batches = 0
                self.optimizer.zero_grad(set_to_none=True)
                window_has_data = False
        self.state.steps += tally.steps
        logs = self._reduce_logs(tally.sums, tally.micro_batches)
        logs.update(steps=tally.steps, skipped_batches=int(sum(dist.gather_objects(acc, tally.skipped))),
                    lr=self.optimizer.param_groups[0]["lr"])
        if train.record_samples:
            self._write_samples([row for part in dist.gather_objects(acc, tally.record) for row in part])
        return logs

    def _epoch_plan(self, epoch: int) -> _EpochPlan:
        """This process's rounds of forget indices and the epoch's seeded draws."""
        acc, train = self.acc, self.train_cfg
        sampler = EpochSampler(self.n_forget, train.seed)
        sampler.set_epoch(epoch)
        order = list(sampler)
        rank = acc.process_index
        retain = self.data.retain if self.req.retain else None
        alternates = None
        if self.data.alternates is not None and self.req.alternates:
            alternates = self.data.alternates(epoch if self.req.resample_alternates else 0)
        return _EpochPlan(rounds=dist.deal_batches(order, self.micro, acc.num_processes, rank), order=order,
                          retain_draw=RetainDraw(len(retain), train.seed, epoch, rank) if retain else None,
                          spare_draw=RetainDraw(len(retain), train.seed, epoch, rank + 7919) if retain else None,
                          alternates=alternates)

    def _train_round(self, epoch: int, k: int, idx: list[int], boundary: bool, window_has_data: bool,
                     plan: _EpochPlan, tally: _Tally) -> bool:
        """Forward and backward of one round's micro-batch; returns whether the accumulation
        window has data now."""
        from accelerate.utils import DistributedType

        acc, model = self.acc, self.prepared
        chosen = [i for i in idx if self.state.active[i]]
        if idx and not chosen:
            # Every sample of this batch is forgotten: no forward, no backward -- and no
            # optimizer step (the ICU reference takes a momentum-only Adam step on a NaN loss here).
            tally.skipped += 1
        with_data = dist.count_ranks(acc, bool(chosen))
        window_has_data = window_has_data or with_data > 0
        # DeepSpeed steps inside backward at a boundary; if this round is empty everywhere but
        # earlier rounds of the window had data, a zero-weight pass lets it take that step.
        flush = acc.distributed_type == DistributedType.DEEPSPEED and boundary and window_has_data and with_data == 0
        if not (with_data or flush):
            return window_has_data
        with nullcontext() if boundary else acc.no_sync(model):
            # A process without data runs a placeholder batch with weight 0, so that every
            # process makes the same collective calls (DDP, ZeRO-3 and FSDP need that).
            rows = chosen or [idx[0] if idx else plan.order[0]]
            batch = build_method_batch(rows, self.data, self.pad_id, self.region,
                                       plan.retain_draw if chosen else plan.spare_draw, plan.alternates, acc.device)
            batch.state = self.state.method_state
            out = self.method.loss(model, batch, self.method_cfg, self.ref)
            if not torch.isfinite(out.loss):
                raise ObliviateError(f"epoch {epoch}: the {self.method.name} loss became {out.loss.item()}; "
                                     "lower train.lr or use mixed_precision=no")
            # Processes' gradients are averaged; scale so that a round where only some
            # processes had data weighs as much as a full one.
            acc.backward(out.loss * (acc.num_processes / with_data if chosen else 0.0))
        if chosen:
            tally.micro_batches += 1
            tally.window_batches += 1
            for key, value in {"loss": out.loss.item(), **out.logs}.items():
                tally.sums[key] += value
                tally.window[key] += value
            if self.train_cfg.record_samples:
                tally.record.append(_sample_row(epoch, k, acc.process_index, chosen, plan.retain_draw, self.data))
        return window_has_data

    def _optimizer_step(self) -> None:
        from accelerate.utils import DistributedType

        if self.acc.distributed_type != DistributedType.DEEPSPEED:  # DeepSpeed clipped and stepped inside backward
            if self.train_cfg.max_grad_norm:
                self.acc.clip_grad_norm_(self.prepared.parameters(), self.train_cfg.max_grad_norm)
            self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()

    def _update_method_state(self, epoch: int, tally: _Tally) -> None:
        """``MethodSpec.update_state`` after an optimizer step, from the step's logs averaged over its
        micro-batches and every process (so every process computes the same new state)."""
        if self.method.update_state is not None:
            stats = self._reduce_logs(tally.window, tally.window_batches)
            self.state.method_state = self.method.update_state(self.method_cfg, self.state.method_state, stats, epoch)

    def _reduce_logs(self, sums: dict[str, float], micro_batches: int) -> dict[str, float]:
        """Means over every process's micro-batches (each process logged only its own)."""
        parts = dist.gather_objects(self.acc, (dict(sums), micro_batches))
        total = sum(n for _, n in parts)
        keys = sorted({key for part, _ in parts for key in part})
        return {key: sum(part.get(key, 0.0) for part, _ in parts) / max(total, 1) for key in keys}

    def _write_samples(self, rows: list[dict[str, Any]]) -> None:
        if self.run_dir is None or not self.acc.is_main_process:
            return
        rows.sort(key=lambda r: (r["round"], r["rank"]))
        with open(self.run_dir / SAMPLES_FILE, "a", encoding="utf-8") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)

    def _truncate_samples_log(self, epoch: int) -> None:
        """After a resume, forget what the killed epoch had recorded (it is trained again)."""
        path = self.run_dir / SAMPLES_FILE if self.run_dir is not None else None
        if path is None or not path.is_file() or not self.acc.is_main_process:
            return
        from obliviate.data.io import atomic_write_text

        keep = [line for line in path.read_text().splitlines() if line and json.loads(line)["epoch"] <= epoch]
        atomic_write_text(path, "".join(line + "\n" for line in keep))

    def end_epoch(self, epoch: int, train_logs: dict[str, float], started: float) -> dict[str, Any]:
        """Evaluate, run the callbacks, decide whether to stop; appends the epoch's row to the history."""
        state = self.state
        control = self._evaluate_epoch(epoch, {"epoch": epoch, **train_logs, **state.method_state})
        row = state.history[-1]
        el_name = f"el_{self.eval_cfg.el_n}"
        active = state.active if self.stop_cfg.average_over == "active" else None
        stop_means = {k: mean_over(state.last[k], active) for k in ("ma", el_name) if k in state.last}
        requested = (control.stop_reason or "callback") if control.should_stop else None
        state.stop_reason = stop_reason(epoch, stop_means, state.thresholds, sum(state.active), self.stop_cfg,
                                        self.refine_cfg.enabled, requested)
        row.update(active=sum(state.active), time_s=round(time.perf_counter() - started, 2))
        if state.stop_reason:
            row["stop_reason"] = state.stop_reason
        self.tracker.log_epoch(row, self.n_forget)
        log.info("epoch %d: %s", epoch, _fmt(row))
        return row

    def _evaluate_epoch(self, epoch: int, row: dict[str, Any], before: bool = False) -> Control:
        """Measure the model, then let the callbacks add to the epoch (in order, each seeing the
        others' updates). Appends ``row`` to the history; returns what the callbacks asked for."""
        state, model = self.state, self.acc.unwrap_model(self.prepared)
        with plain_forward(model), dist.evaluation_context(self.acc, model):
            measured = evaluation.evaluate_epoch(model, self.data, self.eval_cfg, self.refiner, self._shared)
            row.update(measured.means)
            per_sample = measured.per_sample
            if before:
                state.before = per_sample
            state.epoch, state.last = epoch, per_sample
            dist.check_agreement(self.acc, row, f"the metrics of epoch {epoch}")
            control = Control()
            for cb in self.callbacks:
                update = as_update(cb.on_evaluate(self.args, self.report(row), control, model=model,
                                                  tokenizer=self.tokenizer, reference=self.ref))
                if update.active is not None:
                    self._apply_active(epoch, list(update.active), row)
                row.update(update.metrics)
                per_sample.update({k: list(v) for k, v in update.per_sample.items()})
        dist.check_agreement(self.acc, state.active, f"the active set of epoch {epoch}")
        state.history.append(row)
        return control

    def _apply_active(self, epoch: int, new_active: list[bool], row: dict[str, Any]) -> None:
        """A callback's new active set: record who was forgotten or came back."""
        state = self.state
        if len(new_active) != self.n_forget:
            raise ObliviateError(f"a callback returned an active set of {len(new_active)} for {self.n_forget} samples")
        gone = [i for i in range(self.n_forget) if state.active[i] and not new_active[i]]
        back = [i for i in range(self.n_forget) if not state.active[i] and new_active[i]]
        for i in gone:
            state.forgotten_at[i] = epoch
        for i in back:
            state.forgotten_at[i] = None
        if gone or back:
            ids = [e.id for e in self.data.forget]
            state.events.append({"epoch": epoch, "forgotten": [ids[i] for i in gone],
                                 "back": [ids[i] for i in back]})
        state.active = new_active
        row.update(newly_forgotten=len(gone), came_back=len(back))

    def report(self, row: dict[str, Any] | None = None) -> EpochReport:
        """The run as callbacks see it: an immutable snapshot of the state (``row``: the epoch
        being evaluated, not yet in the history)."""
        state = self.state
        return EpochReport(
            epoch=state.epoch, metrics=freeze(row if row is not None else (state.history[-1] if state.history else {})),
            per_sample=freeze(state.last), before=freeze(state.before), active=tuple(state.active),
            forgotten_at=tuple(state.forgotten_at), thresholds=freeze(state.thresholds),
            history=tuple(freeze(r) for r in state.history), events=tuple(freeze(e) for e in state.events),
            stop_reason=state.stop_reason, is_main_process=self.acc.is_main_process, sharded=self.sharded)

    def _shared(self, fn: Callable[[list], list], items: Sequence) -> list:
        """``fn`` over ``items`` by all processes together, in order (``distributed.gather_in_order``)."""
        return dist.gather_in_order(self.acc, fn, items, self.sharded)

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self) -> None:
        """Write ``checkpoints/epoch-NNNN`` for the last finished epoch (complete or not at all)."""
        if self.run_dir is None:
            return
        acc, state = self.acc, self.state
        final = ckpt.checkpoint_path(self.run_dir, state.epoch)
        partial = final.with_name(final.name + ".partial")
        acc.wait_for_everyone()
        with ckpt.quiet_tied_weights():
            acc.save_state(str(partial))  # collective; every process writes its own RNG state (and shards)
        acc.wait_for_everyone()  # ... all of which must be in the folder before it is renamed
        if acc.is_main_process:
            torch.save(self.ref.cache, partial / ckpt.CACHE_FILE)
            ckpt.write_state(partial, state)
            ckpt.finish(partial, final, self.run_dir, self.keep_checkpoints)
        acc.wait_for_everyone()

    # ------------------------------------------------------------------ the final model

    def export_model(self, out: str | Path | None, tokenizer) -> ExportedModel:
        """Save the final model to ``out`` (main process only; None: save nothing); every process
        must call this (``engine.export``)."""
        return export_model(self.acc, self.prepared, tokenizer, out, sharded=self.sharded, lora_opts=self.train_cfg.lora)


def _sample_row(epoch: int, round_: int, rank: int, chosen: list[int], retain_draw: RetainDraw | None,
                data: UnlearnData) -> dict[str, Any]:
    """One line of samples.jsonl: the ids a process trained on in one micro-batch."""
    row: dict[str, Any] = {"epoch": epoch, "round": round_, "rank": rank, "forget": [data.forget[i].id for i in chosen]}
    if data.analogous is not None:
        row["analogous"] = [data.analogous[i].id for i in chosen]
    if retain_draw is not None and data.retain:
        row["retain"] = [data.retain[j].id for j in retain_draw.last]
    return row


def _adapter_weights_only(models: list[torch.nn.Module], weights: list[dict[str, torch.Tensor]], output_dir: str) -> None:
    """accelerate save_state hook for LoRA runs: keep only adapter tensors in the checkpoint (the
    frozen base weights are the original model, reloaded from its spec on resume)."""
    for state in weights:
        for key in [k for k in state if "lora_" not in k]:
            del state[key]


def _fmt(row: dict[str, Any]) -> str:
    keys = ("loss", "ma", "el_10", "retain_ppl", "active", "steps", "stop_reason")
    return ", ".join(f"{k}={row[k]:.4g}" if isinstance(row[k], float) else f"{k}={row[k]}" for k in keys if k in row)
