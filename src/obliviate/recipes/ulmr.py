"""ULMR as one recipe above ``unlearn()`` (Shi et al., EMNLP 2024 Industry Track, Algorithm 1):

1-4. restructure the forget set into D_fr (``obliviate.ulmr.restructure``; cached and editable);
5.   SFT of the original model on D_fr through ``obliviate.unlearning.unlearn`` (the ``ulmr``
     method's loss, ``method_args.restructured=true``) -> ``sft/``, an ordinary run folder;
6.   parameter averaging θ_u = α·θ + (1−α)·θ_f (``obliviate.ulmr.merge``) -> ``model/``;
7.   the engine's evaluation (``engine.evaluation``) of the original and the averaged model on the
     *original* forget / retain sets -> ``metrics.jsonl`` (epoch 0 = original), ``trace.json``.

``obliviate ulmr run`` and ``obliviate unlearn --method ulmr`` both call ``run_ulmr`` and write the
same run folder: ``config.yaml``, ``restructured.jsonl``, ``sft/``, ``model/``, ``metrics.jsonl``,
``trace.json``, ``summary.json`` (written last: the run finished) and ``report.html``, which
``compare``, ``report`` and ``eval`` read like any other run folder.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from obliviate.config import config_to_yaml
from obliviate.data.encode import PromptTemplate, encode_records
from obliviate.data.io import read_json
from obliviate.engine.data import UnlearnData
from obliviate.engine.evaluation import evaluate_epoch
from obliviate.errors import ObliviateError
from obliviate.methods.ulmr import ULMRConfig
from obliviate.models import load_model
from obliviate.report.trace import TRACE_FILE, generate_for, sample_texts
from obliviate.runfolder import RunFolder
from obliviate.ulmr.merge import checkpoint_fingerprint, merge_checkpoints, parse_alphas
from obliviate.ulmr.restructure import (
    CACHE_FILE,
    META_FILE,
    PARTIAL_FILE,
    PARTIAL_META_FILE,
    Restructured,
    load_restructured,
    prepare_restructured,
)
from obliviate.unlearning import (
    CONFIG_FILE,
    SUMMARY_FILE,
    UnlearnConfig,
    UnlearnResult,
    build_config,
    unlearn,
    write_report,
)

log = logging.getLogger(__name__)
BASE_INFO = "base_model.json"  # which original weights the run started from (checked on --resume)
WRITTEN = ("sft", "model", SUMMARY_FILE, "metrics.jsonl", TRACE_FILE, "report.html", CONFIG_FILE, BASE_INFO)


@dataclass
class ULMRResult(UnlearnResult):
    restructured: Restructured | None = None


def run_ulmr(model: str | Path, forget: Any, *, out: str | Path, retain: Any = None, config: Any = None,
             overrides: Sequence[str] = (), alpha: float | None = None, resume: bool = False, overwrite: bool = False,
             regenerate: bool = False, callbacks: Sequence[Any] = ()) -> ULMRResult:
    """Restructure ``forget`` (or reuse ``out/restructured.jsonl``), SFT ``model`` on it, average, evaluate.

    ``model`` is a model spec (the original weights are re-read from it for the averaging, so no
    second copy is kept in memory during training). ``config``/``overrides`` are those of
    ``obliviate.unlearn`` (``train.lr=...``, ``method_args.generator.kind=openai``, ...); a resumed
    run keeps its config.yaml. ``overwrite`` redoes ``sft/`` and ``model/`` but never the
    restructured file (that takes ``regenerate``, which keeps a backup). ``callbacks`` go to the SFT run.
    """
    if resume and overwrite:
        raise ObliviateError("choose either resume or overwrite, not both")
    if not isinstance(model, str | Path):
        raise ObliviateError("ulmr needs a model spec (name or folder): the averaging re-reads the original weights")
    started, out = time.perf_counter(), Path(out)
    cfg = _config(out, model, forget, retain, config, overrides, alpha, resume)
    margs: ULMRConfig = cfg.method_args  # type: ignore[assignment]
    base_fp = checkpoint_fingerprint(model)
    if _check_folder(out, str(model), base_fp, resume, overwrite):
        return _finished(out, cfg)
    forget_records = _forget_records(forget, cfg)
    folder = _prepare_folder(out, cfg, str(model), base_fp, overwrite)
    restructured = _restructure(out, model, forget_records, cfg, regenerate)
    # 5: SFT on D_fr with the shared engine (a resumed SFT run keeps its own config).
    sft_dir = out / "sft"
    sft_resume = resume and (sft_dir / CONFIG_FILE).is_file()
    sft = unlearn(model, restructured.records, method=None if sft_resume else "ulmr", out=sft_dir,
                  config=None if sft_resume else _sft_config(cfg), resume=sft_resume, callbacks=callbacks)
    # 6: θ_u = α·θ + (1−α)·θ_f, streamed from the two checkpoints on disk.
    merge_checkpoints(model, sft_dir / "model", margs.alpha, out / "model", overwrite=True)
    final, tok = load_model(out / "model")
    history, n_eval = _evaluate(folder, cfg, model, final, tok, forget_records, retain, sft.summary.get("epochs") or 1)
    summary = {"method": "ulmr", "label": f"ulmr α={margs.alpha}", "model": str(model), "model_fingerprint": base_fp,
               "forget": cfg.data.forget, "n_forget": n_eval, "epochs": sft.summary.get("epochs"),
               "optimizer_steps": sft.summary.get("optimizer_steps"),
               "stop_reason": f"pipeline finished (SFT: {sft.summary.get('stop_reason')}; averaged with alpha "
                              f"{margs.alpha})",
               "thresholds": {}, "thresholds_source": "ULMR trains a fixed number of epochs", "alpha": margs.alpha,
               "before": _means(history[0], cfg), "after": _means(history[-1], cfg),
               "restructured": {"path": str(restructured.path), "status": restructured.status,
                                "examples": len(restructured.records), "forget_items": len(forget_records)},
               "sft": sft.summary, "seconds": round(time.perf_counter() - started, 1)}
    folder.write_summary(summary)  # written last: the run finished
    if cfg.report.redact:  # the rewritten forget text must not stay behind (it was only a cache for --resume)
        for name in (CACHE_FILE, META_FILE, PARTIAL_FILE, PARTIAL_META_FILE):
            (out / name).unlink(missing_ok=True)
    if cfg.report.enabled:
        write_report(out)
    return ULMRResult(final, tok, cfg, summary, history, out, restructured)


def _config(out: Path, model: Any, forget: Any, retain: Any, config: Any, overrides: Sequence[str],
            alpha: float | None, resume: bool) -> UnlearnConfig:
    """The recipe's config, built once; a resumed run keeps its config.yaml (a different one is refused)."""
    cfg = build_config("ulmr", config, [o for o in overrides if not o.startswith("method=")])
    cfg.model = str(model)
    for role, value in (("forget", forget), ("retain", retain)):
        if value is not None:
            setattr(cfg.data, role, str(value) if isinstance(value, str | Path) else f"<{len(value)} records given "
                    "in Python>")
    if alpha is not None:
        cfg.method_args.alpha = alpha  # type: ignore[attr-defined]
    parse_alphas(cfg.method_args.alpha)  # type: ignore[attr-defined]
    stored = out / CONFIG_FILE
    if resume and stored.is_file():
        kept = build_config(None, stored)
        if (config is not None or overrides or alpha is not None) and config_to_yaml(kept) != config_to_yaml(cfg):
            raise ObliviateError(f"{out}: a resumed run keeps its {CONFIG_FILE}; these options or overrides "
                                     "change it (drop them, or start a new run with --overwrite)")
        return kept
    return cfg


def _check_folder(out: Path, model: str, base_fp: str, resume: bool, overwrite: bool) -> bool:
    """True when ``out`` holds a finished run to load (resume); refuses what must not be redone."""
    started_here = (out / SUMMARY_FILE).is_file() or (out / "sft").exists()
    if started_here and resume and (out / BASE_INFO).is_file() and \
            read_json(out / BASE_INFO).get("fingerprint") != base_fp:
        raise ObliviateError(f"{out}: {model} is not the model this run started from (its weights changed: "
                             "a rebuilt built-in or a re-trained folder); start a new run (--overwrite)")
    if (out / SUMMARY_FILE).is_file() and not overwrite:
        if resume:
            return True
        raise ObliviateError(f"{out}: holds a finished ULMR run; pass --overwrite to redo it (the restructured "
                             f"data in {CACHE_FILE} is kept) or --resume to load it")
    if (out / "sft").exists() and not (resume or overwrite):
        raise ObliviateError(f"{out}: holds an unfinished ULMR run; pass --resume to continue it or --overwrite")
    return False


def _forget_records(forget: Any, cfg: UnlearnConfig) -> list:
    from obliviate.data.sources import as_records

    records = as_records(forget if forget is not None else cfg.data.forget)
    records = records[:cfg.data.max_forget] if cfg.data.max_forget is not None else records
    if not records:
        raise ObliviateError(f"{cfg.data.forget}: the forget set is empty")
    return records


def _prepare_folder(out: Path, cfg: UnlearnConfig, model: str, base_fp: str, overwrite: bool) -> RunFolder:
    """Inputs are valid: claim the folder (never one obliviate did not write) and clear what an
    earlier run wrote (--overwrite; never the costly restructured.jsonl)."""
    folder = RunFolder.claim(out, "run", redact=cfg.report.redact)
    if overwrite:
        for name in WRITTEN:
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    if not folder.has(CONFIG_FILE):
        folder.write_text(CONFIG_FILE, config_to_yaml(cfg))
    folder.write_json(BASE_INFO, {"model": model, "fingerprint": base_fp})
    return folder


def _restructure(out: Path, model: Any, forget_records: list, cfg: UnlearnConfig, regenerate: bool) -> Restructured:
    """1-4: D_fr. The model being unlearned is loaded for generation only if it must generate."""
    margs: ULMRConfig = cfg.method_args  # type: ignore[assignment]
    gen_model = gen_tok = None
    if margs.generator.kind == "model" and margs.generator.model is None and (
            regenerate or not (out / CACHE_FILE).exists()):
        gen_model, gen_tok = load_model(model, dtype=cfg.model_dtype)
    restructured = prepare_restructured(out, forget_records, margs.restructure_config(), model=gen_model,
                                        tokenizer=gen_tok, model_name=str(model), regenerate=regenerate)
    log.info("%s", restructured.summary())
    return restructured


def _sft_config(cfg: UnlearnConfig) -> UnlearnConfig:
    """The SFT step's config: the recipe's, training on D_fr (given as records)."""
    sft = build_config("ulmr", cfg, ["method_args.restructured=true"])
    sft.data.forget = None
    if sft.data.retain is not None and sft.data.retain.startswith("<"):  # records given in Python: not reloadable
        sft.data.retain = None
    return sft


def _evaluate(folder: RunFolder, cfg: UnlearnConfig, model_spec: Any, final: Any, tokenizer: Any, forget_records: list,
              retain: Any, final_epoch: int) -> tuple[list[dict[str, Any]], int]:
    """The engine's evaluation of the original and the averaged model on the original sets
    (metrics.jsonl, epoch 0 = original), and the report's before/after generations (trace.json)."""
    from obliviate.data.sources import as_records

    ev = cfg.eval
    template = PromptTemplate(mode=cfg.data.template)  # type: ignore[arg-type]
    retain_source = retain if retain is not None else cfg.data.retain
    retain_records = as_records(retain_source)[: ev.max_retain_samples] if retain_source is not None else []
    data = UnlearnData(forget=encode_records(forget_records, tokenizer, template, max_length=cfg.train.max_length),
                       retain=encode_records(retain_records, tokenizer, template) or None)
    n = cfg.report.samples if cfg.report.enabled else 0

    def measure(net: Any) -> tuple[dict[str, Any], list[str]]:
        means = evaluate_epoch(net, data, ev, None, lambda fn, items: fn(list(items))).means
        return means, generate_for(net, tokenizer, data.forget[:n]) if n else []

    original, _ = load_model(model_spec, dtype=cfg.model_dtype)
    before, gens_before = measure(original)
    del original
    after, gens_after = measure(final)
    alpha = cfg.method_args.alpha  # type: ignore[attr-defined]
    history = [{"epoch": 0, **before}, {"epoch": final_epoch, **after, "stage": f"averaged, alpha={alpha}"}]
    folder.write_jsonl(RunFolder.METRICS, history)
    folder.write_json(TRACE_FILE, {  # redacted with the folder
        "samples": [dict(zip(("prompt", "reference"), sample_texts(r)), id=r.id) for r in forget_records[:n]],
        "generations": {"0": gens_before, str(final_epoch): gens_after}, "below_thresholds": {},
        "n_forget": len(data.forget)})
    return history, len(data.forget)


def _means(row: dict[str, Any], cfg: UnlearnConfig) -> dict[str, Any]:
    el_name = f"el_{cfg.eval.el_n}"
    return {k: row[k] for k in ("ma", el_name, f"{el_name}_skipped", "retain_nll", "retain_ppl") if k in row}


def _finished(out: Path, cfg: UnlearnConfig) -> ULMRResult:
    summary = read_json(out / SUMMARY_FILE)
    model, tok = load_model(out / "model")
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    path = out / CACHE_FILE
    # A redacted run deleted its restructured data once finished.
    restructured = Restructured(load_restructured(path), path, "cached") if path.is_file() else \
        Restructured([], path, "deleted (redacted run)")
    return ULMRResult(model, tok, cfg, summary, history, out, restructured)


def unlearn_ulmr(model: Any = None, forget: Any = None, *, out: str | Path | None = None, retain: Any = None,
                 config: Any = None, overrides: Sequence[str] = (), resume: bool = False, overwrite: bool = False,
                 callbacks: Sequence[Any] = (), redact: bool | None = None, **unused: Any) -> ULMRResult:
    """``obliviate.unlearn(..., method="ulmr")`` / ``obliviate unlearn --method ulmr``: ``run_ulmr``."""
    given = [k for k, v in unused.items() if v is not None and k not in ("method", "tokenizer")]
    if given:
        raise ObliviateError(f"ulmr does not take {', '.join(given)}")
    if out is None:
        raise ObliviateError("ulmr writes its restructured data, SFT run and averaged model to a run folder: pass out=")
    if resume and model is None and (Path(out) / CONFIG_FILE).is_file():
        model = build_config(None, Path(out) / CONFIG_FILE).model
    if model is None:
        raise ObliviateError("no model given (--model)")
    if redact and not resume:
        overrides = [*overrides, "report.redact=true"]
    return run_ulmr(model, forget, out=out, retain=retain, config=config, overrides=overrides, resume=resume,
                    overwrite=overwrite, callbacks=callbacks)
