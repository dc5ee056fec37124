"""``obliviate.unlearn(...)``: run one unlearning method end to end, with a run folder.

    import obliviate
    result = obliviate.unlearn("smollm2-135m", "demo:forget", method="icu", pool="demo:pool", out="runs/icu")
    result.summary["after"]["el_10"], result.model

Configuration is one typed dataclass (``UnlearnConfig``) built from: the defaults below <- the
method's paper defaults (``MethodSpec.defaults``) <- a YAML file <- ``key=value`` overrides.
The run folder (``out``) holds::

    config.yaml          the complete configuration (what --resume continues)
    model/               the unlearned model (AutoModelForCausalLM.from_pretrained loads it)
    metrics.jsonl        one row per epoch (epoch 0 = before unlearning), rewritten every epoch
    per_sample.jsonl     per forget sample: metrics before/after, when it was forgotten
    forgotten.json       refinement events: which samples were forgotten (or came back) when
    summary.json         method, stop reason, thresholds, before/after means, timings
    analogous.jsonl      ICU's analogous samples + neighbors.json (how the builder chose them)
    trace.json           greedy continuations of a few forget prompts per epoch, samples below thresholds
    report.html          the HTML report (obliviate.report), written when the run finishes
    lineage.json         the chain of deletion requests back to the original model (obliviate.lineage)
    checkpoints/         the latest epoch's checkpoint (removed when the run finishes, unless kept)

An existing run folder is never overwritten: pass ``resume=True`` to continue it (after a kill)
or ``overwrite=True`` to replace it.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from obliviate import modelcard
from obliviate.data.encode import Encoded
from obliviate.engine import Callback, Control, Engine, UnlearnData, mismatch_alternates, refusal_alternates
from obliviate.engine.config import EvalConfig, StopConfig, TrainConfig
from obliviate.engine.refinement import RefinementConfig
from obliviate.errors import DataError, ObliviateError
from obliviate.evaluation.attacks import parse_attacks
from obliviate.evaluation.attacks import summary as attack_summary
from obliviate.lineage import LineageConfig, Plan, parent_run, plan_request, record_hash, write_lineage
from obliviate.methods import get_method
from obliviate.methods.base import MethodConfig
from obliviate.runfolder import RunFolder, format_name

log = logging.getLogger(__name__)
CONFIG_FILE, SUMMARY_FILE = RunFolder.CONFIG, RunFolder.SUMMARY


@dataclass
class NeighborsConfig:
    """How analogous samples are picked from ``data.pool`` (``obliviate.neighbors``)."""

    ngram: int = field(default=5, metadata={"help": "n of the n-gram overlap test against forget targets"})
    max_overlap: float = field(default=0.5, metadata={
        "help": "skip candidates holding >= this fraction of a forget target's n-grams"})
    unique: bool = field(default=True, metadata={"help": "no pool item serves two forget samples"})
    model_path: str | None = field(default=None, metadata={
        "help": "sentence-transformers folder; None = all-MiniLM-L6-v2"})


@dataclass
class DataConfig:
    forget: str | None = field(default=None, metadata={
        "help": "data spec: a file or a built-in name (demo:forget, world:micro:forget, pile:0@DIR)"})
    retain: str | None = field(default=None, metadata={"help": "retain set: a data spec (needed by methods with a retain term; measured every epoch)"})
    analogous: str | None = field(default=None, metadata={
        "help": "one analogous record per forget record, in the same order"})
    pool: str | None = field(default=None, metadata={
        "help": "candidates from which analogous samples are chosen (ICU)"})
    heldout: str | None = field(default=None, metadata={
        "help": "Held-out records of the same kind as the forget set, never trained on: the "
                "indistinguishability target compares the forget set with them every epoch "
                "(stop.rule=indistinguishable stops on it)"})
    max_forget: int | None = field(default=None, metadata={"help": "use only the first N forget records"})
    max_retain: int | None = field(default=None, metadata={"help": "use only the first N retain records"})
    max_pool: int | None = field(default=None, metadata={"help": "use only the first N pool records"})
    template: str = field(default="auto", metadata={
        "help": "how QA records become prompts: auto | chat | plain"})
    neighbors: NeighborsConfig = field(default_factory=NeighborsConfig, metadata={"help": "how analogous samples are picked from data.pool"})


@dataclass
class ReportConfig:
    """The run folder's HTML report (``obliviate.report``): written when the run finishes."""

    enabled: bool = field(default=True, metadata={"help": "write report.html when the run finishes"})
    samples: int = field(default=8, metadata={
        "help": "forget prompts whose greedy continuation is recorded after every epoch (trace.json)"})
    redact: bool = field(default=False, metadata={
        "help": "No text of the data (prompts, references, generations) in any file of the run folder: ids, "
                "numbers and hashes only (a deletion request may forbid keeping copies). Also --redact."})


@dataclass
class AuditConfig:
    """Robustness attacks on the unlearned model when the run finishes (``obliviate.evaluation.attacks``)."""

    attacks: str = field(default="", metadata={
        "help": "\"\" (none) | sample,quantize,relearn,prompts,mia | cheap | all"})
    heldout: str | None = field(default=None, metadata={
        "help": "never-seen data of the forget set's kind (default: data.heldout, else stop.calibrate_on)"})
    samples: int = field(default=32, metadata={"help": "samples per prompt of the sampling attack (leak@k)"})
    relearn_lr: float = field(default=1e-5, metadata={"help": "learning rate of the relearning attack"})
    relearn_steps: int = field(default=20, metadata={"help": "optimizer steps of the relearning attack"})


@dataclass
class UnlearnConfig:
    model: str | None = field(default=None, metadata={
        "help": "model spec (built-in name, folder, .gguf, hub id)"})
    model_dtype: str = field(default="float32", metadata={"help": "dtype the model is loaded in (float32 | bfloat16 | float16)"})
    method: str = field(default="icu", metadata={"help": "unlearning method (see `obliviate methods`)"})
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "what is unlearned and kept"})
    train: TrainConfig = field(default_factory=TrainConfig, metadata={"help": "optimizer, batches, precision, LoRA"})
    stop: StopConfig = field(default_factory=StopConfig, metadata={"help": "when unlearning stops"})
    refinement: RefinementConfig = field(default_factory=RefinementConfig, metadata={"help": "ICU's iterative refinement (drop samples once forgotten)"})
    eval: EvalConfig = field(default_factory=EvalConfig, metadata={"help": "what is measured every epoch"})
    method_args: MethodConfig = field(default_factory=MethodConfig, metadata={"help": "the method's own arguments (see `obliviate methods NAME`)"})
    report: ReportConfig = field(default_factory=ReportConfig, metadata={"help": "report.html and trace.json"})
    audit: AuditConfig = field(default_factory=AuditConfig, metadata={"help": "robustness attacks when the run finishes"})
    lineage: LineageConfig = field(default_factory=LineageConfig, metadata={"help": "continuing an earlier run (chains of requests)"})
    keep_checkpoints: int = field(default=1, metadata={"help": "newest checkpoints kept while running"})
    keep_final_checkpoint: bool = field(default=False, metadata={
        "help": "keep checkpoints/ once the run has finished"})


@dataclass
class UnlearnResult:
    model: Any
    tokenizer: Any
    config: UnlearnConfig
    summary: dict[str, Any]
    history: list[dict[str, Any]]
    run_dir: Path | None

    @property
    def stop_reason(self) -> str | None:
        return self.summary.get("stop_reason")


# --------------------------------------------------------------------------- configuration

def shipped_config(name: str) -> Path | None:
    """``configs/<name>.yaml`` shipped with the package (the methods' paper defaults)."""
    path = Path(__file__).parent / "configs" / f"{name}.yaml"
    return path if path.is_file() else None


def _config_source(config: str | Path | UnlearnConfig | dict | None) -> tuple[Path | None, dict[str, Any]]:
    """(the YAML file, its raw mapping) of ``config``: a path, a shipped name, a dict or an ``UnlearnConfig``."""
    import yaml

    from obliviate.config import config_to_dict

    if config is None:
        return None, {}
    if isinstance(config, UnlearnConfig):
        return None, config_to_dict(config)
    if isinstance(config, dict):
        return None, config
    path = Path(config)
    if not path.is_file() and shipped_config(str(config)) is not None:
        path = shipped_config(str(config))  # type: ignore[assignment]
    if not path.is_file():
        raise ObliviateError(f"{config}: config file not found")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ObliviateError(f"{path}: a config file must hold a mapping of keys")
    return path, raw


def requested_method(method: str | None = None, config: Any = None, overrides: Sequence[str] = (),
                     out: str | Path | None = None, resume: bool = False) -> str:
    """The canonical name of the method a call asks for, decided in one place: ``method`` <- a
    ``method=`` override <- the config's ``method`` <- a resumed run's config.yaml <- icu."""
    from obliviate.methods import get_method

    from_overrides = [o.split("=", 1)[1] for o in overrides if o.startswith("method=")]
    name = method or (from_overrides[-1] if from_overrides else None) or _config_source(config)[1].get("method")
    if name is None and resume and out is not None and (Path(out) / CONFIG_FILE).is_file():
        name = _config_source(Path(out) / CONFIG_FILE)[1].get("method")
    return get_method(str(name or "icu")).name


def build_config(method: str | None = None, config: str | Path | UnlearnConfig | dict | None = None,
                 overrides: Sequence[str] = ()) -> UnlearnConfig:
    """Defaults <- the method's paper defaults <- ``config`` (YAML path, shipped name, dict) <- overrides."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from obliviate.config import load_config
    from obliviate.methods import get_method

    path, raw = _config_source(config)
    spec = get_method(requested_method(method, config, overrides))
    # The method's paper defaults, with its own config class as the schema of method_args.
    base: dict[str, Any] = {key: dict(value) for key, value in spec.defaults.items()}
    base.update(method=spec.name, method_args=spec.config())
    try:
        node = OmegaConf.merge(OmegaConf.structured(UnlearnConfig), OmegaConf.create(base))
        if raw and path is None:  # a dict / UnlearnConfig given in Python
            node = OmegaConf.merge(node, OmegaConf.create({k: v for k, v in raw.items() if k != "method"}))
        base_cfg = OmegaConf.to_object(node)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None)
        raise ObliviateError(f"config error{f' at {key!r}' if key else ''}: {str(e).splitlines()[0]}") from None
    cfg = load_config(UnlearnConfig, path, [o for o in overrides if not o.startswith("method=")], base=base_cfg)
    cfg.method = spec.name  # canonical name (aliases resolved)
    return cfg


def config_yaml(cfg: UnlearnConfig) -> str:
    from obliviate.config import config_to_yaml

    return config_to_yaml(cfg)


# --------------------------------------------------------------------------- inputs

ROLES = ("forget", "retain", "analogous", "pool")


@dataclass
class Inputs:
    """A run's inputs, resolved once at the boundary: the config (built once; specs of records
    given in Python are descriptions) and, per data role, what was given in Python, if anything."""

    cfg: UnlearnConfig
    folder: RunFolder | None  # prepared (checked), begun only once every input is valid
    given: dict[str, Any]  # role -> records / Dataset given in Python (specs live in cfg.data)
    plan: Plan | None  # the forget records this request unlearns, and its lineage (None: a finished run)
    truncated: dict[str, int] = field(default_factory=dict)  # role -> records cut to train.max_length

    @property
    def run_dir(self) -> Path | None:
        return self.folder.path if self.folder is not None else None

    def records(self, role: str, limit: int | None = None) -> list:
        """The records of ``role`` (given in Python, else loaded from its spec); [] when none."""
        source = self.given.get(role)
        if source is None:
            source = getattr(self.cfg.data, role)
        return _records(source, role, limit) if source is not None else []


def _records(source: Any, what: str, limit: int | None = None) -> list:
    from obliviate.data.sources import as_records

    records = as_records(source)
    if limit is not None:
        records = records[:limit]
    if not records:
        raise ObliviateError(f"{_spec_name(source)}: the {what} set is empty")
    return records


def _model_name(model: Any) -> str:
    """The spec, or for a model object "<model NAME given in Python>" (NAME from its config), so
    that summaries and reports still say which model it was."""
    if isinstance(model, str | Path):
        return str(model)
    name = getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__
    return f"<model {name} given in Python>"


def _spec_name(value: Any) -> str | None:
    if value is None:
        return None
    return str(value) if isinstance(value, str | Path) else f"<{len(value)} records given in Python>"


def resolve_inputs(model: Any, data: dict[str, Any], *, method: str | None, config: Any, overrides: Sequence[str],
                   out: str | Path | None, resume: bool, overwrite: bool, after: str | Path | None,
                   redact: bool | None = None) -> Inputs:
    """Check the inputs and build the config (once); the run folder is checked, not yet written."""
    from obliviate.engine.distributed import on_main

    if resume and after is not None:
        raise ObliviateError("a resumed run keeps the parent in its config.yaml; drop --after")
    if resume and out is None:
        raise ObliviateError("resume needs the run folder (out=...)")
    folder: RunFolder | None = None
    if out is not None:
        # Checks only (the main process's answer, or its error, for all): nothing is written until
        # every input has been validated, so a failed start leaves an earlier run untouched.
        folder = on_main(lambda: RunFolder.prepare(out, "run", overwrite=overwrite, resume=resume))
    if resume:
        if config is not None or overrides or method is not None:
            raise ObliviateError(f"{out}: a resumed run keeps its config.yaml; drop --config/--method/overrides "
                                 "(or start a new run)")
        cfg = build_config(None, folder / CONFIG_FILE)  # type: ignore[operator]
        if folder.finished:  # type: ignore[union-attr]  # nothing to check, nothing to run
            return Inputs(cfg, folder, {}, None)
        _check_same(cfg, model, data)
    else:
        cfg = run_config(model, data, method=method, config=config, overrides=overrides, after=after)
    if cfg.model is None:
        raise ObliviateError("no model given (--model)")
    if cfg.data.forget is None:
        raise ObliviateError("no forget set given (--forget)")
    _check_options(cfg, folder, redact if not resume else None)
    given = {role: value for role, value in data.items() if value is not None and not isinstance(value, str | Path)}
    plan = _plan(cfg, given.get("forget", cfg.data.forget), Path(out) if out is not None else None)
    return Inputs(cfg, folder, given, plan)


def run_config(model: Any, data: dict[str, Any], *, method: str | None = None, config: Any = None,
               overrides: Sequence[str] = (), after: str | Path | None = None) -> UnlearnConfig:
    """The complete config of a new run (what config.yaml will hold; ``--print-config`` shows it)."""
    cfg = build_config(method, config, overrides)
    if model is not None:
        cfg.model = _model_name(model)
    for role, value in data.items():
        if value is not None:
            setattr(cfg.data, role, _spec_name(value))
    cfg.lineage.after = str(after) if after is not None else cfg.lineage.after
    return cfg


def _check_options(cfg: UnlearnConfig, folder: RunFolder | None, redact: bool | None) -> None:
    """Every section's ranges and the options that only make sense together (checked before
    anything is loaded or written)."""
    for section in (cfg.method_args, cfg.train, cfg.stop, cfg.refinement, cfg.eval):
        section.check()
    if redact is not None:
        cfg.report.redact = redact
    if cfg.report.redact and cfg.keep_final_checkpoint:
        raise ObliviateError("report.redact=true and keep_final_checkpoint=true: checkpoints hold the forget set's "
                             "per-sample values and generations; keep one or the other")
    if folder is not None:
        folder.redact = folder.redact or cfg.report.redact
    if parse_attacks(cfg.audit.attacks or None) and not (cfg.audit.heldout or cfg.data.heldout or cfg.stop.calibrate_on):
        raise ObliviateError("audit.attacks needs audit.heldout (or data.heldout, stop.calibrate_on): records of the forget "
                             "set's kind the model never saw, the calibrated level of every verdict")


def _plan(cfg: UnlearnConfig, forget: Any, run_dir: Path | None) -> Plan:
    """The forget records this request unlearns (the lineage's overlap policy) and its lineage."""
    if cfg.lineage.after:
        cfg.model = str(Path(cfg.lineage.after) / "model")
    records = _records(forget, "forget", cfg.data.max_forget)
    plan = plan_request(records, run_dir=run_dir, method=cfg.method, forget=cfg.data.forget,
                        max_forget=cfg.data.max_forget, origin=cfg.model, cfg=cfg.lineage)
    if plan.message:
        log.warning(plan.message)
    return plan


def _check_same(cfg: UnlearnConfig, model: Any, data: dict[str, Any]) -> None:
    """On resume, explicitly given specs must match the ones the run started with."""
    for key, value in {"model": model, **data}.items():
        stored = cfg.model if key == "model" else getattr(cfg.data, key)
        if value is None and stored is not None and stored.startswith("<"):
            raise ObliviateError(f"this run was started with its {key} given in Python ({stored}); "
                                 f"pass it again to resume")
        if isinstance(value, str | Path) and stored is not None and str(value) != stored:
            raise ObliviateError(f"--{key} {value} differs from the run's {stored!r}; a resumed run keeps its data")


# --------------------------------------------------------------------------- the run

def unlearn(model: Any = None, forget: Any = None, *, method: str | None = None, retain: Any = None,
            analogous: Any = None, pool: Any = None, out: str | Path | None = None,
            config: str | Path | UnlearnConfig | dict | None = None, overrides: Sequence[str] = (),
            resume: bool = False, overwrite: bool = False, tokenizer: Any = None,
            callbacks: Sequence[Any] = (), after: str | Path | None = None,
            redact: bool | None = None) -> UnlearnResult:
    """Unlearn ``forget`` from ``model`` with ``method`` (one training run); see the module docstring.

    ``model``: a spec (``"smollm2-135m"``, a folder, a .gguf, a run folder to continue) or a loaded
    model (+ ``tokenizer``); data: specs, ``datasets.Dataset``s or lists of records; ``out``: the run
    folder (None: nothing written); ``config``: YAML, shipped name, dict or ``UnlearnConfig``;
    ``overrides``: ``key=value``; ``after``: a finished run to continue (``lineage.json``);
    ``redact``: no text of the data in the folder. Recipes (ULMR) run through ``obliviate.unlearn``.
    """
    started = time.perf_counter()
    model, after = parent_run(model, after)
    inputs = resolve_inputs(model, {"forget": forget, "retain": retain, "analogous": analogous, "pool": pool},
                            method=method, config=config, overrides=overrides, out=out, resume=resume,
                            overwrite=overwrite, after=after, redact=redact)
    cfg, run_dir, plan = inputs.cfg, inputs.run_dir, inputs.plan
    if plan is None:
        return load_finished(cfg, run_dir)  # type: ignore[arg-type]
    hashes = [record_hash(r) for r in plan.records]
    previous_seconds = _resumed_progress(inputs, hashes) if resume else 0.0
    model, tokenizer = _model(cfg, model, tokenizer)
    cfg.method_args.trainable_parameters(model)  # checks layer indices (RMU) before anything is written
    data, analogous = build_data(inputs, model, tokenizer, resume)
    target = _target(cfg, plan.records, data.forget, tokenizer)
    writers = _run_writers(inputs, data, tokenizer, hashes, started, previous_seconds)
    engine = Engine(model, tokenizer, get_method(cfg.method), cfg.method_args, data, train=cfg.train, stop=cfg.stop,
                    refinement=cfg.refinement, evaluation=cfg.eval, run_dir=run_dir,
                    callbacks=[*([target] if target else []), *writers, *callbacks],
                    keep_checkpoints=cfg.keep_checkpoints)  # checks the config
    if inputs.folder is not None and not resume:
        _start_folder(inputs.folder, cfg, analogous)
    engine.setup(resume=resume)
    if engine.state.before.get("id") and engine.state.before["id"] != [e.id for e in data.forget]:
        raise ObliviateError(f"{run_dir}: the forget set differs from the one this run started with")
    for writer in writers[:1]:  # the run folder reflects the (resumed) state before the first new epoch
        writer.on_checkpoint(engine.args, engine.report(), Control())
    result = engine.run()
    # Collective: saves model/ (main process) and hashes what was saved; see Engine.export_model.
    exported = engine.export_model(run_dir / "model" if run_dir is not None else None, tokenizer)
    # Every segment of a resumed run counts (up to its last checkpoint), not only the last one.
    summary = run_summary(cfg, engine, exported, plan.records, previous_seconds + time.perf_counter() - started)
    if inputs.truncated:
        summary["truncated"] = {"max_length": cfg.train.max_length, **inputs.truncated}
    attacks = _measure_after(inputs, target, engine, exported, tokenizer, data, summary)
    if inputs.folder is not None and engine.acc.is_main_process:
        _finish_folder(inputs.folder, cfg, summary, writers, engine, plan, attacks)
    engine.tracker.finish(summary, modelcard.tables_markdown(summary, attacks))
    engine.acc.wait_for_everyone()
    if exported.model is not None:  # None on the other processes of a ZeRO-3/FSDP run
        exported.model.eval()
    return UnlearnResult(exported.model, tokenizer, cfg, summary, result.history, run_dir)


def _resumed_progress(inputs: Inputs, hashes: list[str]) -> float:
    """A resumed run: check it unlearns the records it started with (before anything that pairs
    samples, like ICU's analogous set, can fail on them); the seconds its earlier segments took."""
    folder = inputs.folder
    assert folder is not None
    _check_same_forget(folder, inputs.plan.records, hashes, inputs.cfg.data.forget)  # type: ignore[union-attr]
    return float((folder.read_json(RunFolder.PROGRESS) if folder.has(RunFolder.PROGRESS) else {}).get("seconds", 0.0))


def _model(cfg: UnlearnConfig, model: Any, tokenizer: Any) -> tuple[Any, Any]:
    from obliviate.models import load_model

    if model is None or isinstance(model, str | Path):
        return load_model(model if model is not None else cfg.model, dtype=cfg.model_dtype)
    if tokenizer is None:
        raise ObliviateError("a model object needs its tokenizer (tokenizer=...)")
    return model, tokenizer


def build_data(inputs: Inputs, model: Any, tokenizer: Any, resume: bool) -> tuple[UnlearnData, tuple[list, dict | None] | None]:
    """Encode what the method needs: forget, retain, analogous samples, alternates, held-out text.
    Also returns the analogous records and how they were chosen (for the run folder), if any."""
    from obliviate.data.encode import PromptTemplate, encode_records
    from obliviate.engine.distributed import on_main

    cfg = inputs.cfg
    req = cfg.method_args.requirements()
    template = PromptTemplate(mode=cfg.data.template)  # type: ignore[arg-type]

    context = model_context(model)

    def encode(records: list, role: str = "forget") -> list:
        source = str(getattr(cfg.data, role, None) or cfg.stop.calibrate_on)
        return fit_context(encode_records(records, tokenizer, template), source, role, cfg.train.max_length, context,
                           inputs.truncated)

    forget = inputs.plan.records  # type: ignore[union-attr]
    retain: list = []
    if req.retain or (cfg.eval.retain and cfg.data.retain is not None):
        if cfg.data.retain is None:
            raise ObliviateError(f"method {cfg.method!r} needs a retain set (--retain)")
        retain = inputs.records("retain", cfg.data.max_retain)
    data = UnlearnData(forget=encode(forget), retain=encode(retain, "retain") or None)
    analogous = None
    if req.analogous:
        # Chosen once (main process) and shared, so every process pairs the same samples.
        analogous = on_main(lambda: _analogous(inputs, forget, retain, resume))
        data.analogous = encode(analogous[0], "analogous")
    if req.alternates == "refusals":
        from obliviate.data.refusals import load_refusals

        data.alternates = refusal_alternates(forget, data.forget, load_refusals(req.refusals)[0], tokenizer,
                                             template, cfg.train.seed)
    elif req.alternates == "generated":
        from obliviate.engine.data import fixed_alternates
        from obliviate.methods.altpo import sample_alternates

        # Sampled once from the original model (main process) and shared, so every process agrees.
        texts = on_main(lambda: sample_alternates(model, tokenizer, forget, data.forget, cfg.method_args,
                                                  cfg.train.seed))
        data.alternates = fixed_alternates(forget, data.forget, texts, tokenizer, template, "alt")
    elif req.alternates == "retain_completions":
        data.alternates = mismatch_alternates(data.forget, data.retain or [], req.alternates_per_sample, cfg.train.seed)
    if cfg.stop.calibrate_on:
        data.heldout = encode(_records(cfg.stop.calibrate_on, "held-out"), "held-out")
    return data, analogous


def model_context(model: Any) -> int | None:
    """The longest row the model takes (its position embeddings), when its config says."""
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def fit_context(examples: list[Encoded], source: str, role: str, max_length: int | None, context: int | None,
                truncated: dict[str, int]) -> list[Encoded]:
    """Rows longer than the model's context are refused (naming the record) unless
    ``train.max_length`` asks to cut completions from the right; cuts are counted in ``truncated``
    (logged, and in summary.json)."""
    if max_length is not None and context is not None and max_length > context:
        raise ObliviateError(f"train.max_length={max_length} exceeds the model's context of {context} tokens")
    limit = max_length or context
    if limit is None:
        return examples
    out, cut = [], 0
    for e in examples:
        if len(e.ids) > limit:
            if max_length is None:
                raise DataError(source, f"{role} record has {len(e.ids)} tokens, more than the model's context of "
                                f"{context}; pass train.max_length={context} to truncate completions", record=e.id)
            if e.prompt_len >= limit:
                raise DataError(source, f"{role} record's prompt alone has {e.prompt_len} tokens > "
                                f"train.max_length {limit}", record=e.id)
            e, cut = Encoded(e.ids[:limit], e.prompt_len, e.id), cut + 1
        out.append(e)
    if cut:
        truncated[role] = truncated.get(role, 0) + cut
        log.warning("%d %s record(s) truncated to train.max_length=%d tokens", cut, role, limit)
    return out


def _analogous(inputs: Inputs, forget: list, retain: list, resume: bool) -> tuple[list, dict | None]:
    """ICU's analogous samples (given, reused from the run folder, or built from a pool) and, when
    built, how the builder chose them (neighbors.json; written once the run folder starts)."""
    from obliviate.data.io import load_records
    from obliviate.neighbors import build_analogous

    cfg, run_dir = inputs.cfg, inputs.run_dir
    if run_dir is not None and resume and (run_dir / RunFolder.ANALOGOUS).is_file():
        return load_records(run_dir / RunFolder.ANALOGOUS), None
    records = inputs.records("analogous")
    if records:
        if len(records) != len(forget):
            raise ObliviateError(f"{cfg.data.analogous}: {len(records)} analogous records for {len(forget)} "
                                 "forget records; they pair by position")
        return records, None
    pool = inputs.records("pool", cfg.data.max_pool)
    if not pool:
        if not retain:
            raise ObliviateError(f"method {cfg.method!r} needs analogous samples: give --analogous, or --pool "
                                 "(or --retain) to pick nearest neighbours from")
        log.info("no --pool given: choosing analogous samples among the retain set")
        pool = retain
    nb = cfg.data.neighbors
    built = build_analogous(forget, pool, model_path=nb.model_path, ngram=nb.ngram, max_overlap=nb.max_overlap,
                            unique=nb.unique)
    return built.records, {**built.report.to_dict(),
                           "pairs": [{"forget": f.id, "analogous": a.id, "similarity": s}
                                     for f, a, s in zip(forget, built.records, built.similarity)]}


def _start_folder(folder: RunFolder, cfg: UnlearnConfig, analogous: tuple[list, dict | None] | None) -> None:
    """Every input is valid: create the run folder (replacing an earlier run with overwrite) and
    write what the run starts from. Main process only; the others wait for the folder."""
    from obliviate.data.io import write_records
    from obliviate.engine.distributed import on_main

    def start() -> None:
        folder.begin()
        folder.write_text(CONFIG_FILE, config_yaml(cfg))
        if analogous is not None:
            write_records(analogous[0], folder / RunFolder.ANALOGOUS)
            if analogous[1] is not None:
                folder.write_json(RunFolder.NEIGHBORS, analogous[1])

    on_main(start)


def _measure_after(inputs: Inputs, target: Any, engine: Any, exported: Any, tokenizer: Any, data: UnlearnData,
                   summary: dict[str, Any]) -> list[dict[str, Any]]:
    """What the summary adds once training is over: the target's verdict, the attacks' results
    (returned too, for the model card and the trackers)."""
    if target is not None:
        summary["target"] = target.summary()
    if inputs.cfg.audit.attacks and engine.acc.is_main_process and exported.model is not None:
        return _attacks(inputs.cfg, inputs, exported.model, tokenizer, data, summary)
    return []


def _attacks(cfg: UnlearnConfig, inputs: Inputs, model: Any, tokenizer: Any, data: UnlearnData,
             summary: dict[str, Any]) -> list[dict[str, Any]]:
    """``audit.attacks`` on the unlearned model (attacks.json, robust/* in the summary); the original
    (``cfg.model``, reloaded: the engine trained the first copy) gives the recovery ratios."""
    from obliviate.data.encode import PromptTemplate
    from obliviate.evaluation.attacks import AttackConfig, run_attacks
    from obliviate.models import load_model

    heldout = cfg.audit.heldout or cfg.data.heldout or cfg.stop.calibrate_on
    # A model given in Python has no spec to reload: no recovery ratios then (verdicts still).
    given = not cfg.model or cfg.model.startswith("<model ")
    original = None if given else load_model(cfg.model, dtype=cfg.model_dtype)[0]
    attack_cfg = AttackConfig(n_samples=cfg.audit.samples, relearn_lr=cfg.audit.relearn_lr,
                              relearn_steps=cfg.audit.relearn_steps, el_n=cfg.eval.el_n, region=cfg.eval.ma_region)
    log.info("attacking the unlearned model: %s", cfg.audit.attacks)
    model.eval()
    retain = inputs.records("retain", cfg.data.max_retain) if data.retain else []
    found = run_attacks(model, tokenizer, inputs.plan.records, _records(heldout, "held-out"),  # type: ignore[union-attr]
                        cfg.audit.attacks, original=original, retain=retain, config=attack_cfg,
                        template=PromptTemplate(mode=cfg.data.template))  # type: ignore[arg-type]
    summary.update(attack_summary(found))
    attacks = [r.to_dict() for r in found]
    if inputs.folder is not None:
        inputs.folder.write_json(RunFolder.ATTACKS, attacks)
    return attacks


def _target(cfg: UnlearnConfig, forget_records: list, forget_examples: list, tokenizer: Any):
    """The indistinguishability target (``engine.target``) when held-out data are given: it measures
    every epoch, and stops the run under ``stop.rule=indistinguishable``."""
    from obliviate.data.encode import PromptTemplate, encode_records
    from obliviate.engine.target import IndistinguishabilityTarget

    if cfg.data.heldout is None:
        if cfg.stop.rule == "indistinguishable":
            raise ObliviateError("stop.rule=indistinguishable needs held-out data of the same kind as the forget set "
                                 "(data.heldout=SPEC, never trained on)")
        return None
    template = PromptTemplate(mode=cfg.data.template)  # type: ignore[arg-type]
    heldout = _records(cfg.data.heldout, "held-out", cfg.stop.target.max_heldout)
    examples = encode_records(heldout, tokenizer, template, max_length=cfg.train.max_length)
    return IndistinguishabilityTarget(cfg.stop.target, forget_records, heldout, forget_examples, examples, tokenizer,
                                      template=template, controls=cfg.stop.rule == "indistinguishable")


def _run_writers(inputs: Inputs, data: UnlearnData, tokenizer: Any, hashes: list[str], started: float,
                 previous_seconds: float) -> list[Callback]:
    """The callbacks that keep the run folder current (none without a folder)."""
    cfg, run_dir = inputs.cfg, inputs.run_dir
    if run_dir is None:
        return []
    writers: list[Callback] = [_RunWriter(inputs.folder, data.forget, hashes, started,  # type: ignore[arg-type]
                                          previous_seconds)]
    if cfg.report.enabled and cfg.report.samples > 0:
        from obliviate.report.trace import TraceRecorder

        writers.append(TraceRecorder(run_dir, inputs.plan.records, data.forget,  # type: ignore[union-attr]
                                     tokenizer, cfg.report.samples))
    return writers


def run_summary(cfg: UnlearnConfig, engine: Any, exported: Any, forget: list, seconds: float) -> dict[str, Any]:
    """summary.json: what ran, why it stopped, before/after means, the saved weights' hash."""
    state = engine.state
    before, after = state.history[0], state.history[-1]
    el_name = f"el_{cfg.eval.el_n}"
    keys = [k for k in ("ma", el_name, f"{el_name}_skipped", "retain_nll", "retain_ppl", "refine_bertscore_f1",
                        "refine_bleu") if k in before]
    n = len(state.active)
    summary = {
        "format": format_name("run"), "method": cfg.method, "model": cfg.model, "forget": cfg.data.forget, "n_forget": n,
        "epochs": state.epoch, "optimizer_steps": state.steps, "stop_reason": state.stop_reason,
        "thresholds": state.thresholds, "thresholds_source": state.thresholds_source,
        "before": {k: before[k] for k in keys}, "after": {k: after.get(k) for k in keys},
        "refinement": {"enabled": cfg.refinement.enabled, "rule": cfg.refinement.rule,
                       "forgotten": sum(1 for a in state.active if not a), "active": sum(state.active)} if n else {},
        "seconds": round(seconds, 1), "weights_sha256": exported.sha256, "model_format": exported.format,
        "forget_sha256": modelcard.forget_set_sha256(forget),
    }
    if engine.acc.num_processes > 1 or engine.sharded:  # a one-process ZeRO-3 run is sharded too
        summary["distributed"] = {"num_processes": engine.acc.num_processes,
                                  "distributed_type": str(engine.acc.distributed_type.value),
                                  "sharded_weights": engine.sharded,
                                  "weights_sha256_per_process": exported.per_process_sha256}
    return summary


def _finish_folder(folder: RunFolder, cfg: UnlearnConfig, summary: dict[str, Any], writers: list[Callback],
                   engine: Any, plan: Plan, attacks: list[dict[str, Any]]) -> None:
    """The run folder's last files: per-sample results, the model card, lineage, summary.json (last:
    it means "finished"), the report."""
    writers[0].on_checkpoint(engine.args, engine.report(), Control())
    if folder.has(RunFolder.NEIGHBORS):
        summary["neighbors"] = folder.read_json(RunFolder.NEIGHBORS)
    if folder.has(RunFolder.MODEL):
        modelcard.write_model_card(folder / RunFolder.MODEL, model=cfg.model, method=cfg.method,
                                   config_yaml=config_yaml(cfg), summary=summary,
                                   forget_sha256=summary["forget_sha256"], n_forget=summary["n_forget"],
                                   adapter=summary["model_format"] == "peft_adapter", attacks=attacks)
    write_lineage(folder.path, plan.lineage)
    folder.write_summary(summary)
    if not cfg.keep_final_checkpoint:
        shutil.rmtree(folder / RunFolder.CHECKPOINTS, ignore_errors=True)
    if cfg.report.enabled:
        write_report(folder.path)


def write_report(run_dir: Path) -> Path | None:
    """``report.html`` of a finished run; a failure is logged, never fatal (the run is saved)."""
    from obliviate.report import write_run_report

    try:
        return write_run_report(run_dir)
    except Exception as e:  # the run's files are complete; `obliviate report RUN` can retry
        log.warning("could not write %s/report.html (%s: %s); retry with `obliviate report %s`", run_dir,
                    type(e).__name__, e, run_dir)
        return None


def _check_same_forget(folder: RunFolder, records: Sequence[Any], hashes: Sequence[str], spec: Any) -> None:
    """A resumed run must unlearn the records it started with: per_sample.jsonl keeps their ids and
    content hashes (written at the first checkpoint)."""
    stored = folder.read_jsonl(RunFolder.PER_SAMPLE)
    if not stored:
        return
    now = [(r.id, h) for r, h in zip(records, hashes)]
    then = [(row.get("id"), row.get("sha256", h)) for row, (_, h) in zip(stored, now)]
    if len(stored) != len(now) or then != now:
        changed = next((i for (i, h), (j, g) in zip(then, now) if i != j or h != g), None)
        what = (f"{len(stored)} records then, {len(now)} now" if len(stored) != len(now)
                else f"record {changed!r} differs")
        raise ObliviateError(f"{spec}: the forget set differs from the one this run started with ({what}); a resumed "
                             "run keeps its data: restore the file or start a new run")


def load_finished(cfg: UnlearnConfig, run_dir: Path) -> UnlearnResult:
    """A finished run folder: its config, model, summary and history."""
    import json

    from obliviate.data.io import read_json
    from obliviate.models import load_model

    log.info("%s already finished; loading its model", run_dir)
    if cfg.report.enabled and not (run_dir / RunFolder.REPORT).is_file():
        write_report(run_dir)  # killed after summary.json, before the report was written
    model, tokenizer = load_model(run_dir / "model")
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return UnlearnResult(model, tokenizer, cfg, read_json(run_dir / SUMMARY_FILE), history, run_dir)


class _RunWriter(Callback):
    """Keeps metrics.jsonl, per_sample.jsonl and forgotten.json of the run folder current."""

    def __init__(self, folder: RunFolder, forget: Sequence[Any], hashes: Sequence[str], started: float,
                 previous_seconds: float = 0.0):
        self.folder, self.ids, self.hashes = folder, [e.id for e in forget], list(hashes)
        self.started, self.previous_seconds = started, previous_seconds

    def on_checkpoint(self, args: Any, report: Any, control: Any, **kwargs: Any) -> None:
        if report.is_main_process:
            self.write(report)
            # Time spent so far, read back by --resume so the summary counts every segment.
            self.folder.write_json(RunFolder.PROGRESS, {
                "epoch": report.epoch, "seconds": round(self.previous_seconds + time.perf_counter() - self.started, 1)})

    def write(self, report: Any) -> None:
        self.folder.write_jsonl(RunFolder.METRICS, (dict(row) for row in report.history))
        rows = []
        for k, sample_id in enumerate(self.ids):
            row: dict[str, Any] = {"id": sample_id, "sha256": self.hashes[k]}
            for key, values in report.before.items():
                if key != "id" and isinstance(values, tuple) and len(values) == len(self.ids):
                    row[f"{key}_before"] = values[k]
            for key, values in report.per_sample.items():
                if key != "id" and isinstance(values, tuple) and len(values) == len(self.ids):
                    row[f"{key}_after"] = values[k]
            row.update(active=report.active[k] if report.active else True,
                       forgotten_at=report.forgotten_at[k] if report.forgotten_at else None)
            rows.append(row)
        self.folder.write_jsonl(RunFolder.PER_SAMPLE, rows)
        self.folder.write_json(RunFolder.FORGOTTEN, {
            "epoch": report.epoch,
            "forgotten_at": {sample_id: report.forgotten_at[k] for k, sample_id in enumerate(self.ids)
                             if report.forgotten_at and report.forgotten_at[k] is not None},
            "events": [dict(e) for e in report.events]})


__all__ = ["DataConfig", "NeighborsConfig", "ReportConfig", "UnlearnConfig", "UnlearnResult", "build_config", "unlearn"]
