"""ULMR: unlearning via negative responses and model parameter averaging (Shi et al., EMNLP 2024
Industry Track). Algorithm 1:

1-4. Restructure the forget set: rewrite every instruction twice with the rewrite prompt and
     give every instruction of x_r = {x'_1, x'_2, x_i} a negative response (negative prompt)
     -> D_fr (``obliviate.ulmr.restructure``; cached and editable in the run folder).
5.   SFT of the original model p_θ on D_fr, maximising log p(y | x) of the response only
     (eq. 1) -> p_f. This file's loss: the mean NLL of the completion tokens.
6.   Parameter averaging θ_u = α·θ + (1−α)·θ_f (``obliviate.ulmr.merge``) -> p_u.

The paper's SFT settings (§4.4): AdamW, lr 1e-4, 5 epochs, batch 16 -- the defaults below. It
does not give α, the weight decay, the schedule or the generator's sampling settings; our
choices are in docs/ulmr.md.

``run_ulmr`` (``obliviate ulmr run``) runs all three steps; the registered method ``ulmr`` is
step 5 on the shared engine. Training it directly on raw forget data would *reinforce* that
data, so its config refuses to run unless the forget set is the restructured one
(``method_args.restructured=true``, which ``run_ulmr`` sets).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from obliviate.errors import ObliviateError
from obliviate.methods.base import LossOutput, MethodBatch, MethodConfig, MethodSpec, Reference, Requirements
from obliviate.methods.losses import forward_logits, mean_nll
from obliviate.runfolder import RunFolder
from obliviate.ulmr.generators import GeneratorConfig
from obliviate.ulmr.prompts import NEGATIVE_PROMPT, REWRITE_PROMPT
from obliviate.ulmr.restructure import RestructureConfig, Restructured

log = logging.getLogger(__name__)


@dataclass
class ULMRConfig(MethodConfig):
    alpha: float = 0.5  # θ_u = α·θ_original + (1−α)·θ_SFT; not given in the paper (see docs/ulmr.md)
    rewrites: int = 2  # §3.1: each instruction rewritten twice
    include_original: bool = True  # x_r = {x'_1, x'_2, x_i}
    rewrite_prompt: str = REWRITE_PROMPT
    negative_prompt: str = NEGATIVE_PROMPT
    seed: int = 0  # generation seed (rewrites are sampled)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    # True once the forget set *is* D_fr (run_ulmr sets it); SFT on raw forget data would reinforce it.
    restructured: bool = False

    def is_pipeline_step(self) -> bool:
        """Training on D_fr is the SFT step; otherwise ``obliviate.unlearn`` runs the whole pipeline."""
        return self.restructured

    def requirements(self) -> Requirements:
        if not self.restructured:
            raise ObliviateError(
                "ULMR fine-tunes on a restructured forget set (rewritten instructions + negative responses), "
                "not on the forget answers: run `obliviate ulmr run --model M --forget F --out DIR` (it builds "
                "that set, trains and averages), or train on a file made by `obliviate ulmr prepare` with "
                "method_args.restructured=true and average with `obliviate merge`")
        return Requirements()

    def restructure_config(self) -> RestructureConfig:
        return RestructureConfig(rewrites=self.rewrites, include_original=self.include_original,
                                 rewrite_prompt=self.rewrite_prompt, negative_prompt=self.negative_prompt,
                                 seed=self.seed, generator=self.generator)


def ulmr_loss(model: torch.nn.Module, batch: MethodBatch, cfg: ULMRConfig, ref: Reference) -> LossOutput:
    """Eq. 1: −log p(y^m | x^m), averaged over the response tokens (labels mask the instruction)."""
    nll = mean_nll(forward_logits(model, batch.forget), batch.forget.labels)
    return LossOutput(nll, {"sft_nll": nll.item()})


# §4.4 of the paper. Weight decay and schedule are not given: plain AdamW without decay, constant lr.
ULMR_TRAIN = {"optimizer": "adamw", "lr": 1e-4, "batch_size": 16, "gradient_accumulation_steps": 1,
              "weight_decay": 0.0, "scheduler": "constant", "warmup_epochs": 0.0}
ULMR_STOP = {"max_epochs": 5, "min_epochs": 1, "el_threshold": None, "ma_threshold": None}

def _pipeline(cfg: Any, **kwargs: Any) -> Any:  # resolved at call time: the function is defined below
    return ulmr_pipeline(cfg, **kwargs)


SPEC = MethodSpec(
    name="ulmr",
    config=ULMRConfig,
    loss=ulmr_loss,
    summary="rewritten instructions + negative responses, SFT, then weight averaging (the whole pipeline)",
    defaults={"train": ULMR_TRAIN, "stop": ULMR_STOP, "refinement": {"enabled": False}},
    pipeline=_pipeline,
)


# --------------------------------------------------------------------------- the whole pipeline

ULMR_INFO = "ulmr.json"
BASE_INFO = "base_model.json"  # which original weights the run started from (checked on --resume)


@dataclass
class ULMRResult:
    model: Any  # p_u (averaged)
    tokenizer: Any
    restructured: Restructured
    run_dir: Path
    summary: dict[str, Any]


def run_ulmr(model: str | Path, forget: Any, *, out: str | Path, config: Any = None, overrides: Sequence[str] = (),
             alpha: float | None = None, resume: bool = False, overwrite: bool = False,
             regenerate: bool = False) -> ULMRResult:
    """Restructure ``forget`` (or reuse ``out/restructured.jsonl``), SFT ``model`` on it, average.

    ``model`` is a model spec (the original weights are re-read from it for the averaging, so no
    second copy is kept in memory during training). ``config``/``overrides`` are those of
    ``obliviate.unlearn`` (``train.lr=...``, ``method_args.generator.kind=openai``, ...). The
    run folder holds ``restructured.jsonl``, ``sft/`` (the engine's run: θ_f in ``sft/model``),
    ``model/`` (θ_u) and ``ulmr.json``. ``overwrite`` replaces ``sft/`` and ``model/`` but
    never the restructured file (that takes ``regenerate``, which keeps a backup).
    """
    from obliviate.data.io import read_json, write_json
    from obliviate.data.sources import as_records
    from obliviate.models import load_model
    from obliviate.ulmr.merge import checkpoint_fingerprint, merge_checkpoints, parse_alphas
    from obliviate.ulmr.restructure import (
        CACHE_FILE,
        META_FILE,
        PARTIAL_FILE,
        PARTIAL_META_FILE,
        prepare_restructured,
    )
    from obliviate.unlearning import build_config, unlearn

    if resume and overwrite:
        raise ObliviateError("choose either resume or overwrite, not both")
    if not isinstance(model, str | Path):
        raise ObliviateError("run_ulmr needs a model spec (name or folder): the averaging re-reads the original "
                             "weights from it")
    started = time.perf_counter()
    out = Path(out)
    sft_dir, final_dir, info, base_info = out / "sft", out / "model", out / ULMR_INFO, out / BASE_INFO
    base_fp = checkpoint_fingerprint(model)
    if (info.is_file() or sft_dir.exists()) and resume and base_info.is_file():
        started_from = read_json(base_info)
        if started_from.get("fingerprint") != base_fp:
            raise ObliviateError(f"{out}: {model} is not the model this run started from (its weights changed: "
                                 "a rebuilt built-in or a re-trained folder); start a new run (--overwrite)")
    if info.is_file() and not overwrite:
        if resume:
            return _finished(out)
        raise ObliviateError(f"{out}: holds a finished ULMR run; pass --overwrite to redo it (the restructured "
                             f"data in {CACHE_FILE} is kept)")
    if sft_dir.exists() and not (resume or overwrite):
        raise ObliviateError(f"{out}: holds an unfinished ULMR run; pass --resume to continue it or --overwrite")
    cfg = build_config("ulmr", config, [*overrides, "method_args.restructured=true"])  # checked before any write
    margs: ULMRConfig = cfg.method_args  # type: ignore[assignment]
    if alpha is not None:
        margs.alpha = alpha
    parse_alphas(margs.alpha)
    # Never a folder obliviate did not write; only its own files are replaced below.
    RunFolder.claim(out, "run", redact=cfg.report.redact)
    if overwrite:
        for path in (sft_dir, final_dir):
            shutil.rmtree(path, ignore_errors=True)
        info.unlink(missing_ok=True)
    write_json(base_info, {"model": str(model), "fingerprint": base_fp})
    forget_records = as_records(forget)
    if cfg.data.max_forget is not None:
        forget_records = forget_records[:cfg.data.max_forget]

    # 1-4: D_fr. The model being unlearned is loaded for generation only if it must generate.
    gen_model = gen_tok = None
    needs_model = margs.generator.kind == "model" and margs.generator.model is None
    if needs_model and (regenerate or not (out / CACHE_FILE).exists()):
        gen_model, gen_tok = load_model(model, dtype=cfg.model_dtype)
    restructured = prepare_restructured(out, forget_records, margs.restructure_config(), model=gen_model,
                                        tokenizer=gen_tok, model_name=str(model), regenerate=regenerate)
    log.info("%s", restructured.summary())
    del gen_model, gen_tok

    # 5: SFT on D_fr with the shared engine.
    sft_resume = resume and (sft_dir / "config.yaml").is_file()  # a resumed engine run keeps its own config
    sft = unlearn(model, restructured.records, method=None if sft_resume else "ulmr", out=sft_dir,
                  config=None if sft_resume else cfg, resume=sft_resume)
    # 6: θ_u = α·θ + (1−α)·θ_f, streamed from the two checkpoints on disk.
    merge_checkpoints(model, sft_dir / "model", margs.alpha, final_dir, overwrite=True)
    final, tok = load_model(final_dir)
    data = {"path": str(restructured.path), "status": restructured.status, "examples": len(restructured.records),
            "forget_items": len(forget_records)}
    summary = {"method": "ulmr", "model": str(model), "model_fingerprint": base_fp, "alpha": margs.alpha,
               "restructured": data, "sft": sft.summary, "seconds": round(time.perf_counter() - started, 1)}
    write_json(info, summary)
    if cfg.report.redact:  # the rewritten forget text must not stay behind (it was only a cache for --resume)
        for name in (CACHE_FILE, META_FILE, PARTIAL_FILE, PARTIAL_META_FILE):
            (out / name).unlink(missing_ok=True)
    return ULMRResult(final, tok, restructured, out, summary)


def _finished(out: Path) -> ULMRResult:
    from obliviate.data.io import read_json
    from obliviate.models import load_model
    from obliviate.ulmr.restructure import CACHE_FILE, load_restructured

    summary = read_json(out / ULMR_INFO)
    model, tok = load_model(out / "model")
    path = out / CACHE_FILE
    # A redacted run deleted its restructured data once finished.
    restructured = Restructured(load_restructured(path), path, "cached") if path.is_file() else \
        Restructured([], path, "deleted (redacted run)")
    return ULMRResult(model, tok, restructured, out, summary)


# --------------------------------------------------------------------------- `obliviate unlearn --method ulmr`

def ulmr_pipeline(cfg: Any, *, model: Any, forget: Any, retain: Any = None, out: str | Path | None = None,
                  resume: bool = False, overwrite: bool = False, tokenizer: Any = None,
                  callbacks: Sequence[Any] = ()) -> Any:
    """``obliviate.unlearn(..., method="ulmr")``: the whole pipeline (``run_ulmr``), then the same core
    files as every other method's run folder: ``config.yaml``, ``summary.json`` (before/after MA,
    EL_n and retain perplexity on the *original* forget / retain sets, measured as the engine
    does), ``metrics.jsonl`` (epoch 0 = the original model, then the averaged model), ``trace.json``
    and ``report.html``; ``model/`` is the averaged model."""
    from obliviate.config import config_to_yaml
    from obliviate.data.io import atomic_write_text, read_json
    from obliviate.unlearning import CONFIG_FILE, SUMMARY_FILE, UnlearnResult, write_report

    if out is None:
        raise ObliviateError("ulmr writes its restructured data, SFT run and averaged model to a run folder: pass out=")
    if not isinstance(model, str | Path):
        raise ObliviateError("ulmr needs a model spec (name or folder): the averaging re-reads the original weights")
    out = Path(out)
    if resume and (out / SUMMARY_FILE).is_file():
        from obliviate.models import load_model

        final, tok = load_model(out / "model")
        history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
        return UnlearnResult(final, tok, cfg, read_json(out / SUMMARY_FILE), history, out)
    if not resume and (out / SUMMARY_FILE).is_file() and not overwrite:
        raise ObliviateError(f"{out}: holds a finished run; pass --overwrite to redo it or --resume to load it")
    folder = RunFolder.claim(out, "run", redact=cfg.report.redact)  # refuses a folder obliviate did not write
    if overwrite:  # run_ulmr redoes sft/ and model/ and keeps restructured.jsonl; the core files go too
        for name in (SUMMARY_FILE, "metrics.jsonl", "trace.json", "report.html", CONFIG_FILE):
            (out / name).unlink(missing_ok=True)
    started = time.perf_counter()
    atomic_write_text(out / CONFIG_FILE, config_to_yaml(cfg))
    result = run_ulmr(model, forget, out=out, config=cfg, resume=resume, overwrite=overwrite)
    sft = result.summary["sft"]
    before, after, trace = _measure_before_after(cfg, model, result.model, result.tokenizer, forget, retain,
                                                 final_epoch=sft.get("epochs") or 1)
    history = [{"epoch": 0, **before}, {"epoch": sft.get("epochs", 1), **after, "stage": f"averaged, alpha={cfg.method_args.alpha}"}]
    folder.write_jsonl(RunFolder.METRICS, history)
    folder.write_json(RunFolder.TRACE, trace)  # redacted with the folder
    summary = {"method": "ulmr", "model": str(model), "forget": cfg.data.forget, "n_forget": trace["n_forget"],
               "epochs": sft.get("epochs"), "optimizer_steps": sft.get("optimizer_steps"),
               "stop_reason": f"pipeline finished (SFT: {sft.get('stop_reason')}; averaged with alpha "
                              f"{cfg.method_args.alpha})",
               "thresholds": {}, "thresholds_source": "ULMR trains a fixed number of epochs",
               "alpha": cfg.method_args.alpha, "before": before, "after": after,
               "seconds": round(time.perf_counter() - started, 1), "pipeline": {"ulmr": ULMR_INFO, "sft": "sft/"}}
    folder.write_summary(summary)
    if cfg.report.enabled:
        write_report(out)
    return UnlearnResult(result.model, result.tokenizer, cfg, summary, history, out)


def _measure_before_after(cfg: Any, model_spec: Any, final: Any, tokenizer: Any, forget: Any, retain: Any, *,
                          final_epoch: int) -> tuple[dict, dict, dict]:
    """MA / EL_n of the original forget set and retain perplexity (the engine's settings), of the
    original and the averaged model, and the report's before/after generations."""

    from obliviate.data.encode import PromptTemplate, encode_records
    from obliviate.data.sources import as_records
    from obliviate.metrics import memorization_accuracy
    from obliviate.metrics.likelihood import perplexity_of, token_logprobs, token_weighted_nll
    from obliviate.metrics.memorization import extraction_likelihood_aligned
    from obliviate.models import load_model
    from obliviate.report.trace import generate_for, sample_texts

    ev = cfg.eval
    template = PromptTemplate(mode=cfg.data.template)
    forget_records = as_records(forget)
    forget_records = forget_records[: cfg.data.max_forget] if cfg.data.max_forget else forget_records
    retain_records = [] if retain is None else as_records(retain)
    enc = encode_records(forget_records, tokenizer, template, max_length=cfg.train.max_length)
    renc = encode_records(retain_records[: ev.max_retain_samples], tokenizer, template) if ev.retain else []
    n = cfg.report.samples if cfg.report.enabled else 0

    def measure(net: Any) -> tuple[dict, list[str]]:
        row = {"ma": memorization_accuracy(net, enc, region=ev.ma_region, batch_size=ev.batch_size).value}
        el = extraction_likelihood_aligned(net, enc, n=ev.el_n, region=ev.el_region, batch_size=ev.el_batch_size)
        if el is not None:
            row[f"el_{ev.el_n}"] = el.value
        if renc:
            lps = token_logprobs(net, renc, region="completion", batch_size=ev.batch_size, show_progress=False)
            nll = token_weighted_nll(lps)
            row.update(retain_nll=nll, retain_ppl=perplexity_of(nll))
        return row, generate_for(net, tokenizer, enc[:n]) if n else []

    original, _ = load_model(model_spec, dtype=cfg.model_dtype)
    before, gens_before = measure(original)
    del original
    after, gens_after = measure(final)
    trace = {"samples": [dict(zip(("prompt", "reference"), sample_texts(r)), id=r.id) for r in forget_records[:n]],
             "generations": {"0": gens_before, str(final_epoch): gens_after}, "below_thresholds": {}, "n_forget": len(enc)}
    return before, after, trace
