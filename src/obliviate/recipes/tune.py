"""``obliviate tune``: a budgeted hyper-parameter search for one method, judged only by what a user has.

    from obliviate.recipes.tune import TuneConfig, tune
    res = tune("world-micro-target", "world:micro:forget", heldout="world:micro:holdout",
               retain="world:micro:retain", utility="world:micro:world_facts", out="runs/tune-npo",
               tune_cfg=TuneConfig(method="npo", trials=8))
    res.best["params"], res.run_dir / "best_config.yaml"

Each trial is an ordinary ``obliviate.unlearn`` run with ``stop.rule=indistinguishable`` (stop
when the forget set scores like the held-out data, ``engine.target``) and sampled learning rate,
epoch limit and method weights. A trial is scored on two objectives, both minimised:

* **forgetting gap** = |AUC - 0.5| of forget vs held-out at the end of the run (0 = the forget set
  looks never-seen; over-unlearning counts as much as under-unlearning);
* **utility loss** = the mean increase of the answer NLL (nats per token) on the retain set and
  on the general-utility set, against the original model.

The chosen trial: among those that reached the target (verdict ``indistinguishable``), the one
losing the least utility; if none did, the one closest to the target. No retrain model is read
anywhere: the search is what a user without one can do.

Optuna (TPE, multi-objective) keeps the study in ``RUN/study.db`` (SQLite): after a kill, the
same command with ``resume=True`` continues the study -- a trial that was running is retried with
the same parameters -- until ``trials`` trials have finished. Output in the run folder:
``tune.json`` (inputs, then the outcome), ``trials.csv`` / ``trials.md`` (one row per trial),
``best_config.yaml`` (a full config for ``obliviate unlearn --config``), ``report.html`` (Pareto
plot of forgetting vs utility, the table), ``trials/trial-NNNN/`` (each trial's run folder, its
model deleted unless ``keep_models``) and ``best/`` (the chosen configuration run once more, a
complete run folder with the tuned model).
"""

from __future__ import annotations

import logging
import math
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from obliviate.errors import ObliviateError

log = logging.getLogger(__name__)
TUNE_FILE = "tune.json"
STUDY_FILE = "study.db"
STUDY_NAME = "obliviate-tune"
# The searched method arguments: the loss weights and, by name, beta (NPO/DPO's inverse temperature,
# ICU's KL weight), plus every field ending in "_weight"; each around its paper default.
WEIGHT_NAMES = ("alpha", "beta", "gamma")


@dataclass
class TuneConfig:
    """The search: method, budget and ranges."""

    method: str = field(default="npo", metadata={"help": "the method to tune"})
    trials: int = field(default=8, metadata={
        "help": "the budget: finished trials (a failed one counts, an interrupted one is retried)"})
    lr_min: float = field(default=1e-5, metadata={"help": "smallest learning rate searched (log-uniform)"})
    lr_max: float = field(default=1e-2, metadata={"help": "largest learning rate searched"})
    epochs_min: int = field(default=1, metadata={"help": "smallest epoch limit searched"})
    epochs_max: int = field(default=10, metadata={
        "help": "stop.max_epochs is searched in [epochs_min, epochs_max]; the target may stop earlier"})
    weights: bool = field(default=True, metadata={
        "help": "also search the method's weights (alpha, beta, gamma, *_weight) around their defaults"})
    weight_range: float = field(default=4.0, metadata={
        "help": "weights are searched log-uniformly in [default / range, default * range]"})
    seed: int = field(default=0, metadata={"help": "the sampler's seed"})
    keep_models: bool = field(default=False, metadata={
        "help": "keep every trial's model/ (disk) instead of only the final best/"})
    final_run: bool = field(default=True, metadata={"help": "run the chosen configuration into best/"})

    def check(self) -> None:
        if self.trials < 1:
            raise ObliviateError(f"tune.trials must be >= 1, got {self.trials}")
        if not 0 < self.lr_min <= self.lr_max:
            raise ObliviateError(f"tune needs 0 < lr_min <= lr_max, got {self.lr_min}, {self.lr_max}")
        if not 1 <= self.epochs_min <= self.epochs_max:
            raise ObliviateError(f"tune needs 1 <= epochs_min <= epochs_max, got {self.epochs_min}, {self.epochs_max}")
        if self.weight_range < 1:
            raise ObliviateError(f"tune.weight_range must be >= 1, got {self.weight_range}")


@dataclass
class TuneInputs:
    """What the trials run on (data specs, so that a resumed search sees the same data)."""

    model: str
    forget: str
    heldout: str
    retain: str | None = None
    utility: str | None = None  # general-utility data (QA or text); its NLL increase is part of the objective
    pool: str | None = None  # ICU's analogous candidates
    config: str | None = None  # a base YAML config (method defaults apply first)
    overrides: list[str] = field(default_factory=list)  # fixed for every trial


@dataclass
class TuneResult:
    run_dir: Path
    best: dict[str, Any]
    trials: list[dict[str, Any]]


# --------------------------------------------------------------------------- the search space

def weight_fields(method: str) -> dict[str, float]:
    """The method's loss weights with a positive default: name -> default."""
    from obliviate.methods import get_method

    cfg = get_method(method).config()
    out = {}
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if (f.name in WEIGHT_NAMES or f.name.endswith("_weight")) and isinstance(value, float) and value > 0:
            out[f.name] = value
    return out


def suggest(trial, cfg: TuneConfig) -> dict[str, Any]:
    """Sample one trial's parameters (names are config keys)."""
    params: dict[str, Any] = {"train.lr": trial.suggest_float("train.lr", cfg.lr_min, cfg.lr_max, log=True),
                              "stop.max_epochs": trial.suggest_int("stop.max_epochs", cfg.epochs_min, cfg.epochs_max)}
    if cfg.weights:
        for name, default in weight_fields(cfg.method).items():
            key = f"method_args.{name}"
            params[key] = trial.suggest_float(key, default / cfg.weight_range, default * cfg.weight_range, log=True)
    return params


def trial_overrides(inputs: TuneInputs, params: dict[str, Any]) -> list[str]:
    return [*inputs.overrides, "stop.rule=indistinguishable", f"data.heldout={inputs.heldout}",
            *(f"{k}={v}" for k, v in params.items())]


# --------------------------------------------------------------------------- the objective

def answer_nll(model, tokenizer, spec: str | None, template_mode: str) -> float | None:
    """Token-weighted mean NLL of the completions of ``spec`` (None when no spec)."""
    from obliviate.data.encode import PromptTemplate, encode_records
    from obliviate.data.sources import load_data
    from obliviate.metrics.likelihood import token_logprobs

    if spec is None:
        return None
    examples = encode_records(load_data(spec), tokenizer, PromptTemplate(mode=template_mode))  # type: ignore[arg-type]
    lps = token_logprobs(model, examples, region="completion", show_progress=False)
    return sum(t.nll_sum for t in lps) / max(sum(len(t.logprobs) for t in lps), 1)


def utility_loss(before: dict[str, float | None], after: dict[str, float | None]) -> float:
    """Mean NLL increase over the sets measured (0 when none is given)."""
    deltas = [after[k] - b for k, b in before.items() if b is not None and after.get(k) is not None]
    return sum(deltas) / len(deltas) if deltas else 0.0


def choose(trials: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Reached the target with the least utility loss; else the closest to the target."""
    done = [t for t in trials if t["state"] == "COMPLETE"]
    reached = [t for t in done if t["verdict"] == "indistinguishable"]
    if reached:
        return min(reached, key=lambda t: (t["utility_loss"], t["gap"]))
    return min(done, key=lambda t: (t["gap"], t["utility_loss"])) if done else None


# --------------------------------------------------------------------------- the recipe

def tune(model: str | None = None, forget: str | None = None, *, heldout: str | None = None, retain: str | None = None,
         utility: str | None = None, pool: str | None = None, out: str | Path, config: str | None = None,
         overrides: Sequence[str] = (), tune_cfg: TuneConfig | None = None, resume: bool = False,
         overwrite: bool = False) -> TuneResult:
    """Search ``tune_cfg.trials`` configurations of ``tune_cfg.method`` (see the module docstring)."""
    from obliviate.runfolder import RunFolder

    folder = RunFolder.prepare(out, "tune", overwrite=overwrite, resume=resume)  # checks only
    run_dir = folder.path
    if resume:
        if model or forget or heldout or tune_cfg is not None or overrides:
            raise ObliviateError(f"{run_dir}: a resumed search keeps its inputs ({TUNE_FILE}); give only --out")
        doc = folder.read_json(TUNE_FILE)
        inputs, cfg = TuneInputs(**doc["inputs"]), TuneConfig(**doc["tune"])
    else:
        if not model or not forget or not heldout:
            raise ObliviateError("tune needs --model, --forget and --heldout (held-out data of the same kind, "
                                 "never trained on)")
        cfg = tune_cfg or TuneConfig()
        inputs = TuneInputs(model, forget, heldout, retain, utility, pool, config, list(overrides))
        cfg.check()
        _validate(inputs, cfg)
        folder.begin()  # every input is valid: now the folder is created (or replaces the earlier search)
        folder.write_json(TUNE_FILE, {"inputs": asdict(inputs), "tune": asdict(cfg)})
    study = _study(run_dir, cfg)
    baseline = _baseline(run_dir, inputs, cfg)
    remaining = cfg.trials - _finished(study)
    if remaining > 0:
        study.optimize(lambda trial: _objective(trial, run_dir, inputs, cfg, baseline), n_trials=remaining)
    return _finish(run_dir, study, inputs, cfg)


def _validate(inputs: TuneInputs, cfg: TuneConfig) -> None:
    """Fail before any trial: the method exists, the config builds, the data load."""
    from obliviate.data.sources import load_data
    from obliviate.unlearning import build_config

    build_config(cfg.method, inputs.config, trial_overrides(inputs, {}))
    for spec in (inputs.forget, inputs.heldout, inputs.retain, inputs.utility, inputs.pool):
        if spec is not None and not load_data(spec):
            raise ObliviateError(f"{spec}: the data set is empty")


def _study(run_dir: Path, cfg: TuneConfig):
    """The Optuna study in RUN/study.db; trials a kill left RUNNING are marked failed and requeued."""
    try:
        import optuna
        from optuna.trial import TrialState
    except ImportError:
        raise ObliviateError("obliviate tune needs optuna: pip install 'obliviate[tune]'") from None

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{(run_dir / STUDY_FILE).resolve()}"
    study = optuna.create_study(study_name=STUDY_NAME, storage=storage, load_if_exists=True,
                                directions=["minimize", "minimize"],
                                sampler=optuna.samplers.TPESampler(seed=cfg.seed, n_startup_trials=min(4, cfg.trials)))
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        log.info("trial %d was interrupted: retrying its parameters", t.number)
        study.tell(t.number, state=TrialState.FAIL)
        study.enqueue_trial(t.params)
        shutil.rmtree(run_dir / "trials" / f"trial-{t.number:04d}", ignore_errors=True)  # its partial run
    return study


def _finished(study) -> int:
    """Trials that count against the budget: complete, or failed by a setting (pruned, with the error
    noted). A FAILed trial is one a kill interrupted; it was retried."""
    from optuna.trial import TrialState

    return sum(1 for t in study.get_trials(deepcopy=False) if t.state in (TrialState.COMPLETE, TrialState.PRUNED))


def _baseline(run_dir: Path, inputs: TuneInputs, cfg: TuneConfig) -> dict[str, float | None]:
    """The original model's NLL on the retain and utility sets (computed once, cached in tune.json)."""
    from obliviate.data.io import read_json, write_json
    from obliviate.models import load_model
    from obliviate.unlearning import build_config

    doc = read_json(run_dir / TUNE_FILE)
    if "baseline" in doc:
        return doc["baseline"]
    model, tok = load_model(inputs.model)
    mode = build_config(cfg.method, inputs.config, inputs.overrides).data.template
    doc["baseline"] = {"retain_nll": answer_nll(model, tok, inputs.retain, mode),
                       "utility_nll": answer_nll(model, tok, inputs.utility, mode)}
    write_json(run_dir / TUNE_FILE, doc)
    return doc["baseline"]


def _objective(trial, run_dir: Path, inputs: TuneInputs, cfg: TuneConfig, baseline: dict[str, float | None]):
    import optuna

    import obliviate

    params = suggest(trial, cfg)
    folder = run_dir / "trials" / f"trial-{trial.number:04d}"
    try:
        res = obliviate.unlearn(inputs.model, inputs.forget, method=cfg.method, retain=inputs.retain, pool=inputs.pool,
                                out=folder, config=inputs.config, overrides=[*trial_overrides(inputs, params),
                                                                             "report.enabled=false"])
    except ObliviateError as e:  # e.g. the loss diverged at this learning rate: a failed setting, not a crash
        trial.set_user_attr("error", str(e))
        log.info("trial %d failed: %s", trial.number, e)
        raise optuna.TrialPruned(str(e)) from None
    mode = res.config.data.template
    after = {"retain_nll": answer_nll(res.model, res.tokenizer, inputs.retain, mode),
             "utility_nll": answer_nll(res.model, res.tokenizer, inputs.utility, mode)}
    target = res.summary["target"]
    gap, loss = abs(target["auc"] - 0.5), utility_loss(baseline, after)
    for key, value in {**after, "auc": target["auc"], "ks_p": target["ks_p"], "verdict": target["verdict"],
                       "stop_reason": res.stop_reason, "epochs": res.summary["epochs"], "utility_loss": loss}.items():
        trial.set_user_attr(key, value)
    if not cfg.keep_models:
        shutil.rmtree(folder / "model", ignore_errors=True)
    log.info("trial %d: %s -> AUC %.3f (%s), utility loss %.4f", trial.number, params, target["auc"],
             target["verdict"], loss)
    return gap, loss


def trial_rows(study) -> list[dict[str, Any]]:
    """One plain row per trial (params, outcome, state), in trial order."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        rows.append({"number": t.number, "state": t.state.name, "params": dict(t.params),
                     "gap": t.values[0] if t.values else math.nan, "utility_loss": a.get("utility_loss", math.nan),
                     "auc": a.get("auc", math.nan), "ks_p": a.get("ks_p", math.nan), "verdict": a.get("verdict", ""),
                     "epochs": a.get("epochs"), "stop_reason": a.get("stop_reason", ""),
                     "retain_nll": a.get("retain_nll"), "utility_nll": a.get("utility_nll"),
                     "note": "interrupted, retried" if t.state.name == "FAIL" else a.get("error", "")})
    return rows


def _finish(run_dir: Path, study, inputs: TuneInputs, cfg: TuneConfig) -> TuneResult:
    """Tables, best config, the report, and (``final_run``) the chosen configuration into best/."""
    import obliviate
    from obliviate.data.io import atomic_write_text, read_json, write_json
    from obliviate.report.tune import trials_csv, trials_markdown, write_tune_report
    from obliviate.unlearning import build_config, config_yaml

    rows = trial_rows(study)
    best = choose(rows)
    if best is None:
        raise ObliviateError(f"{run_dir}: no trial finished; see trials.md for the errors")
    overrides = trial_overrides(inputs, best["params"])
    best_cfg = build_config(cfg.method, inputs.config, overrides)
    atomic_write_text(run_dir / "best_config.yaml", config_yaml(best_cfg))
    atomic_write_text(run_dir / "trials.csv", trials_csv(rows))
    atomic_write_text(run_dir / "trials.md", trials_markdown(rows, best["number"]))
    doc = read_json(run_dir / TUNE_FILE)
    doc["best"] = best
    write_json(run_dir / TUNE_FILE, doc)
    write_tune_report(run_dir, rows, best, inputs, cfg, best_cfg.stop.target.auc_band)
    if cfg.final_run:
        folder = run_dir / "best"
        if (folder / "config.yaml").is_file():
            obliviate.unlearn(out=folder, resume=True)
        else:
            obliviate.unlearn(inputs.model, inputs.forget, method=cfg.method, retain=inputs.retain, pool=inputs.pool,
                              out=folder, config=inputs.config, overrides=overrides)
    return TuneResult(run_dir, best, rows)
