"""A stream of deletion requests: unlearn request after request, each on top of the model the
previous one left, and after every request check *every* forget set so far (relapse), the
retain data and general utility against the original model.

    from obliviate.recipes.stream import CumulativeConfig, run_stream
    run_stream(["req1.jsonl", "req2.jsonl"], model="world-micro-target", out="runs/stream",
               method="graddiff", retain="world:micro:retain",
               evaluation=CumulativeConfig(heldout="world:micro:holdout", retain="world:micro:retain_eval"))

The stream folder holds::

    stream.json          the requests, the settings, what happened to each request (done / skipped: why)
    request-<k>/         an ordinary run folder; request k continues request k-1 (lineage.json)
    request-<k>/eval/cumulative/eval.json   the cumulative evaluation after request k
    original.json        the original model's values on every set (measured once, reused)

Rerun the same call after a kill: finished requests and evaluations are reused, an interrupted
request resumes from its checkpoint.

Every forget set is judged by one calibrated rule: it counts as forgotten when its mean MA and
mean EL_n are below the *original* model's means on never-seen records of the same kind
(``heldout``; Jang et al.'s rule, the same as ``stop.calibrate_on``: "below" means "no higher"). The Min-K% AUC of each set
against those never-seen records says how far it is from looking never-seen (0.5).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from obliviate.auditing import audit
from obliviate.data.encode import PromptTemplate, encode_records
from obliviate.data.io import read_json, write_json
from obliviate.data.records import Record
from obliviate.data.sources import load_data
from obliviate.errors import DataError, ObliviateError
from obliviate.lineage import (
    CUMULATIVE,
    LineageConfig,
    NothingToUnlearn,
    Request,
    is_run_folder,
    read_lineage,
    records_sha256,
)
from obliviate.metrics import memorization_accuracy
from obliviate.metrics.memorization import (
    ForgetThresholds,
    calibrate_thresholds,
    extraction_likelihood_aligned,
)
from obliviate.metrics.mia import mia_auc, mia_scores
from obliviate.models import load_model
from obliviate.protocols.base import EVAL_FILE, EvalResult, write_eval
from obliviate.runfolder import RunFolder, format_name, kind_of
from obliviate.unlearning import build_config, unlearn, write_report

log = logging.getLogger(__name__)
STREAM_FILE = RunFolder.STREAM
ORIGINAL_FILE = "original.json"
THRESHOLDS_FILE = "stop_thresholds.json"
CACHE_VERSION = 2  # bump when the original model's cached values would change
SET_MEASURES = ("ma", "el", "tofu_prob", "rougeL_recall")
KEPT_MEASURES = ("tofu_prob", "rougeL_recall")


@dataclass
class CumulativeConfig:
    """What the cumulative evaluation after each request measures."""

    heldout: str | None = field(default=None, metadata={
        "help": "never-seen records of the forget sets' kind: the 'forgotten' thresholds (the original model's mean "
                "MA and EL_n on them) and the Min-K% AUC of each forget set against them"})
    retain: str | None = field(default=None, metadata={"help": "retain records whose knowledge must stay"})
    utility: str | None = field(default=None, metadata={"help": "general-utility records (e.g. world_facts)"})
    max_retain: int | None = field(default=200, metadata={"help": "evaluate the first N retain / utility records"})
    el_n: int = field(default=10, metadata={"help": "n of EL_n"})
    mink_k: float = field(default=0.4, metadata={"help": "Min-K% fraction of the MIA (MUSE's PrivLeak: 0.4)"})
    max_new_tokens: int | None = field(default=64, metadata={
        "help": "greedy answer budget for ROUGE-L (None: QA 200 tokens, text the target's length)"})
    batch_size: int = field(default=32, metadata={"help": "sequences per forward pass / generate"})


# --------------------------------------------------------------------------- measuring one model

def _mean(values: Sequence[Any]) -> float | None:
    chosen = [float(v) for v in values if v is not None]
    return sum(chosen) / len(chosen) if chosen else None


def measure_set(model: Any, tokenizer: Any, records: Sequence[Record], cfg: CumulativeConfig, *,
                measures: Sequence[str], thresholds: Any = None, heldout_scores: Sequence[float] | None = None
                ) -> dict[str, Any]:
    """Means of ``measures`` over ``records`` (answer / target tokens), the verdict of ``thresholds``
    and, with ``heldout_scores``, the Min-K% AUC of the set against never-seen records."""
    names = [f"el_{cfg.el_n}" if m == "el" else m for m in measures]
    result = audit(model, tokenizer, list(records), metrics=names, region="completion", el_n=cfg.el_n,
                   batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens)
    out: dict[str, Any] = {"n": len(records)}
    for name in names:
        out[name] = _mean([row.get(name) for row in result.rows])
    if thresholds is not None and out.get("ma") is not None and out.get(f"el_{cfg.el_n}") is not None:
        out["forgotten"] = bool(thresholds.forgotten(out["ma"], out[f"el_{cfg.el_n}"]))
    if heldout_scores:
        out["mia_auc"] = mia_auc(_mink(model, tokenizer, records, cfg), heldout_scores, high_means_member=False).value
    return out


def _mink(model: Any, tokenizer: Any, records: Sequence[Record], cfg: CumulativeConfig) -> list[float]:
    scores = mia_scores(model, encode_records(list(records), tokenizer), attacks=("mink",), k=cfg.mink_k,
                        region="completion", batch_size=cfg.batch_size)
    return scores[f"mia_mink_{round(cfg.mink_k * 100)}"].per_sample


def measure_model(model: Any, tokenizer: Any, sets: dict[str, list[Record]], kept: dict[str, list[Record]],
                  heldout: list[Record], cfg: CumulativeConfig, thresholds: Any) -> dict[str, dict[str, Any]]:
    """Every forget set (``sets``, by key), and the retain / utility sets (``kept``), on one model."""
    heldout_scores = _mink(model, tokenizer, heldout, cfg) if heldout else None
    out = {key: measure_set(model, tokenizer, records, cfg, measures=SET_MEASURES, thresholds=thresholds,
                            heldout_scores=heldout_scores) for key, records in sets.items()}
    out.update({key: measure_set(model, tokenizer, records, cfg, measures=KEPT_MEASURES)
                for key, records in kept.items()})
    return out


# --------------------------------------------------------------------------- the sets of a chain

def request_records(request: Request, number: int) -> list[Record]:
    """The records request ``number`` asked to unlearn, re-read from its data spec and checked
    against the hash its run recorded."""
    if not request.forget or request.forget.startswith("<"):
        raise ObliviateError(f"request {number} ({request.run}): its forget set was given in Python; "
                             "the cumulative evaluation re-reads every request's forget set from its data spec")
    records = load_data(request.forget)
    records = records[: request.max_forget] if request.max_forget else records
    if records_sha256(records) != request.forget_sha256:
        raise DataError(request.forget, f"differs from the forget set request {number} ({request.run}) unlearned "
                        "(its hash changed)")
    return records


def kept_sets(cfg: CumulativeConfig) -> tuple[dict[str, list[Record]], list[Record]]:
    kept = {name: load_data(spec)[: cfg.max_retain] for name, spec in (("retain", cfg.retain),
                                                                       ("utility", cfg.utility)) if spec}
    return kept, load_data(cfg.heldout) if cfg.heldout else []


def _settings_key(cfg: CumulativeConfig) -> str:
    doc = {"version": CACHE_VERSION, **asdict(cfg)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:12]


# --------------------------------------------------------------------------- the cumulative evaluation

def original_values(origin: str, sets: dict[str, list[Record]], kept: dict[str, list[Record]],
                    heldout: list[Record], cfg: CumulativeConfig, cache: Path | None) -> tuple[dict, Any]:
    """The original model's values on every set, and its calibrated thresholds; ``cache`` (a JSON
    file) keeps them by set hash so that a stream measures the original model once per set."""
    stored = read_json(cache) if cache is not None and cache.is_file() else {}
    if stored.get("origin") != origin or stored.get("settings") != _settings_key(cfg):
        stored = {"origin": origin, "settings": _settings_key(cfg), "values": {}, "thresholds": None}
    keys = {name: records_sha256(records) for name, records in {**sets, **kept}.items()}
    missing_sets = {n: r for n, r in sets.items() if keys[n] not in stored["values"]}
    missing_kept = {n: r for n, r in kept.items() if keys[n] not in stored["values"]}
    need_thresholds = bool(heldout) and stored["thresholds"] is None
    if missing_sets or missing_kept or need_thresholds:
        model, tok = load_model(origin)
        if need_thresholds:
            thr = calibrate_thresholds(model, tok, heldout, n=cfg.el_n, region="completion",
                                       batch_size=cfg.batch_size, source=cfg.heldout or "")
            # "No more memorized than never-seen text" is mean <= held-out mean, as the engine's
            # stop.calibrate_on: the rule compares with a strict <, so store the next float up (a
            # held-out EL of exactly 0 is common and would be a threshold not even the retrain passes).
            thr = replace(thr, ma=math.nextafter(thr.ma, math.inf), el=math.nextafter(thr.el, math.inf))
            stored["thresholds"] = thr.to_dict()
        thr = _thresholds(stored["thresholds"], cfg)
        measured = measure_model(model, tok, missing_sets, missing_kept, heldout, cfg, thr)
        stored["values"].update({keys[name]: values for name, values in measured.items()})
        if cache is not None:
            write_json(cache, stored)
    return {name: stored["values"][keys[name]] for name in keys}, _thresholds(stored["thresholds"], cfg)


def _thresholds(doc: dict | None, cfg: CumulativeConfig) -> Any:
    if not doc:
        return None
    return ForgetThresholds(ma=doc["ma"], el=doc[f"el_{cfg.el_n}"], n=cfg.el_n, region="completion",
                            source=doc.get("source", ""))


def evaluate_cumulative(run_dir: str | Path, cfg: CumulativeConfig, *, original_cache: str | Path | None = None,
                        overwrite: bool = False) -> Path:
    """After the last request of ``run_dir``'s chain: every request's forget set, retain and
    utility, on this run's model and on the original; written to ``run_dir/eval/cumulative``."""
    run_dir = Path(run_dir)
    if not is_run_folder(run_dir):
        raise ObliviateError(f"{run_dir}: not a finished run folder of `obliviate unlearn` (summary.json, model/)")
    out = run_dir / RunFolder.EVALS / CUMULATIVE
    if (out / EVAL_FILE).is_file() and not overwrite:
        return out
    lineage = read_lineage(run_dir)
    if not lineage.origin or lineage.origin.startswith("<"):
        raise ObliviateError(f"{run_dir}: the chain's original model was given in Python; the cumulative evaluation "
                             "compares with it and needs its spec")
    sets = {f"request-{k}": request_records(req, k) for k, req in enumerate(lineage.requests, start=1)}
    kept, heldout = kept_sets(cfg)
    cache = Path(original_cache) if original_cache is not None else out / ORIGINAL_FILE
    original, thresholds = original_values(lineage.origin, sets, kept, heldout, cfg, cache)
    model, tok = load_model(run_dir / RunFolder.MODEL)
    now = measure_model(model, tok, sets, kept, heldout, cfg, thresholds)
    result = _result(now, original, lineage.requests, thresholds, cfg)
    write_eval(out, result, model=str(run_dir / RunFolder.MODEL), label=f"{run_dir.name} (cumulative)", overwrite=True)
    return out


def _result(now: dict, original: dict, requests: Sequence[Request], thresholds: Any,
            cfg: CumulativeConfig) -> Any:
    metrics: dict[str, float] = {}
    directions: dict[str, bool | None] = {}
    for key, values in now.items():
        for name, value in values.items():
            if name == "n" or value is None:
                continue
            metrics[f"{key}/{name}"] = float(value)
            lower = key.startswith("request-") and name != "forgotten"
            directions[f"{key}/{name}"] = None if name == "mia_auc" else not lower
    verdicts = [now[k].get("forgotten") for k in now if k.startswith("request-")]
    if verdicts and all(v is not None for v in verdicts):
        metrics["forgotten_sets"] = sum(bool(v) for v in verdicts) / len(verdicts)
        directions["forgotten_sets"] = True
    details = {"requests": [{"request": k, "run": r.run, "forget": r.forget, "n_requested": r.n_requested,
                             "n_unlearned": r.n_unlearned, "overlap": r.overlap}
                            for k, r in enumerate(requests, start=1)],
               "original": original, "now": now,
               "thresholds": thresholds.to_dict() if thresholds is not None else
               "none: pass heldout= to judge each forget set by the calibrated rule",
               "measures": "means over answer/target tokens; mia_auc = Min-K% AUC of the set vs the held-out "
                           "records (0.5 = looks never seen)"}
    return EvalResult(CUMULATIVE, metrics, details, settings=asdict(cfg), directions=directions)


# --------------------------------------------------------------------------- the stream

@dataclass
class StreamResult:
    out: Path
    runs: list[Path | None]  # per request: its run folder, None when skipped
    skipped: dict[int, str]  # request number -> why


def run_stream(requests: Sequence[str], *, model: str, out: str | Path, method: str | None = None,
               retain: str | None = None, pool: str | None = None, config: str | None = None,
               overrides: Sequence[str] = (), evaluation: CumulativeConfig | None = None,
               overlap: str = "skip", original_cache: str | Path | None = None,
               stop_thresholds: str = "origin") -> StreamResult:
    """Unlearn ``requests`` (data specs) one after another from ``model``; see the module docstring.
    ``overrides`` apply to every request (e.g. ICU's refinement, a stopping rule); ``original_cache``
    (default ``out/original.json``) can be shared by streams that start from the same model.
    ``stop_thresholds``: with ``stop.calibrate_on`` set, ``origin`` (default) calibrates the stopping
    thresholds once on the original model and gives them to every request; ``parent`` lets each
    request calibrate on the model it starts from (which earlier requests have already degraded)."""
    out = Path(out)
    if not requests:
        raise ObliviateError("a stream needs at least one request (forget set)")
    if stop_thresholds not in ("origin", "parent"):
        raise ObliviateError(f"stop_thresholds must be 'origin' or 'parent', got {stop_thresholds!r}")
    # Every input is checked before the stream folder is made: the config, the policy, each request's data.
    LineageConfig(overlap=overlap).check()
    build_config(method, config, [*overrides, f"lineage.overlap={overlap}"])
    for spec in requests:
        if not load_data(spec):
            raise DataError(spec, "the forget set of this request is empty")
    plan = {"format": format_name("stream"), "model": model, "method": method, "requests": list(requests),
            "retain": retain, "pool": pool, "config": config, "overrides": list(overrides), "overlap": overlap,
            "evaluation": asdict(evaluation) if evaluation is not None else None, "stop_thresholds": stop_thresholds}
    folder, status = _stream_folder(out, plan)
    fixed = origin_stop_overrides(model, method, config, overrides, out / THRESHOLDS_FILE) \
        if stop_thresholds == "origin" else []
    parent: Path | None = None
    runs: list[Path | None] = []
    skipped: dict[int, str] = {}
    for k, spec in enumerate(requests, start=1):
        run = out / f"request-{k}"
        if status.get(str(k), {}).get("skipped"):
            skipped[k] = status[str(k)]["skipped"]
        elif (run / RunFolder.SUMMARY).is_file():
            pass
        elif (run / RunFolder.CONFIG).is_file():
            unlearn(out=run, resume=True)
        else:
            try:
                unlearn(model if parent is None else None, spec, after=parent, method=method, retain=retain,
                        pool=pool, out=run, config=config,
                        overrides=[*overrides, f"lineage.overlap={overlap}", *(fixed if parent else [])])
            except NothingToUnlearn as e:
                log.warning("request %d skipped: %s", k, e)
                skipped[k] = str(e)
        if k in skipped:
            status[str(k)] = {"skipped": skipped[k]}
            runs.append(None)
        else:
            status[str(k)] = {"run": run.name}
            if evaluation is not None and not (run / RunFolder.EVALS / CUMULATIVE / EVAL_FILE).is_file():
                evaluate_cumulative(run, evaluation, original_cache=original_cache or out / ORIGINAL_FILE)
                if (run / RunFolder.REPORT).is_file():  # redrawn with the stream's curve
                    write_report(run)
            parent = run
            runs.append(run)
        folder.write_json(STREAM_FILE, {**plan, "status": status})
    return StreamResult(out, runs, skipped)


def origin_stop_overrides(model: str, method: str | None, config: str | None, overrides: Sequence[str],
                          cache: Path) -> list[str]:
    """Overrides that give a request the stopping thresholds ``stop.calibrate_on`` yields on the
    stream's *original* model (measured once, as the engine does, and kept in ``cache``), so that
    every request stops where never-seen text lies for the original model -- not for a parent that
    earlier requests have degraded, whose lower held-out means would push each request further."""
    cfg = build_config(method, config, overrides)
    if not cfg.stop.calibrate_on:
        return []
    ev = cfg.eval
    key = {"model": model, "heldout": cfg.stop.calibrate_on, "el_n": ev.el_n, "ma_region": ev.ma_region,
           "el_region": ev.el_region, "el": ev.el, "template": cfg.data.template, "max_length": cfg.train.max_length}
    stored = read_json(cache) if cache.is_file() else {}
    if stored.get("key") != key:
        net, tok = load_model(model, dtype=cfg.model_dtype)
        heldout = encode_records(load_data(cfg.stop.calibrate_on), tok, PromptTemplate(mode=cfg.data.template),  # type: ignore[arg-type]
                                 max_length=cfg.train.max_length)
        ma = memorization_accuracy(net, heldout, region=ev.ma_region, batch_size=ev.batch_size).value
        el = extraction_likelihood_aligned(net, heldout, n=ev.el_n, region=ev.el_region,
                                           batch_size=ev.el_batch_size) if ev.el else None
        stored = {"key": key, "ma": ma, "el": el.value if el is not None else None}
        write_json(cache, stored)
    # The same nudge as the engine's calibration: its rule is a strict <, "no higher" is meant.
    out = ["stop.calibrate_on=null"]
    if cfg.stop.ma_threshold is not None:
        out.append(f"stop.ma_threshold={math.nextafter(stored['ma'], math.inf)!r}")
    if cfg.stop.el_threshold is not None and stored["el"] is not None:
        out.append(f"stop.el_threshold={math.nextafter(stored['el'], math.inf)!r}")
    return out


def _stream_folder(out: Path, plan: dict[str, Any]) -> tuple[RunFolder, dict[str, Any]]:
    """The stream folder (created, or continued) and the status of its requests; refuses a folder
    that holds anything else, or another stream."""
    if kind_of(out) != "stream":
        folder = RunFolder.prepare(out, "stream").begin()  # refuses foreign and other obliviate folders
        folder.write_json(STREAM_FILE, {**plan, "status": {}})
        return folder, {}
    folder = RunFolder.open(out, "stream")
    stored = folder.read_json(STREAM_FILE) if folder.has(STREAM_FILE) else {**plan, "requests": []}
    for key in ("model", "method", "overlap", "retain", "pool", "config", "overrides", "evaluation",
                "stop_thresholds"):
        if stored.get(key) != plan[key]:
            raise ObliviateError(f"{out}: holds a stream with another {key} ({stored.get(key)!r}); "
                                 "choose another folder")
    done = list(stored.get("requests", []))
    if done[: len(plan["requests"])] != plan["requests"][: len(done)]:
        raise ObliviateError(f"{out}: holds a stream of other requests; new requests can only be appended")
    return folder, dict(stored.get("status") or {})


# --------------------------------------------------------------------------- reading a chain back

def curve_table(curve: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """``(header, rows)``: after each request, every forget set's MA (with its verdict: ✓ forgotten,
    ✗ not) and the retain / utility ROUGE-L; the first row is the original model."""
    if not curve:
        return [], []
    last = curve[-1]
    sets = [key for key in last["now"] if key.startswith("request-")]
    kept = [key for key in last["now"] if not key.startswith("request-")]
    header = ["after", *(f"#{key.split('-')[1]} MA" for key in sets), *(f"{key} ROUGE-L" for key in kept)]

    def cells(values: dict[str, Any], upto: int | None) -> list[str]:
        row = []
        for j, key in enumerate(sets, start=1):
            v = values.get(key) if upto is None or j <= upto else None
            mark = "" if v is None or v.get("forgotten") is None else (" ✓" if v["forgotten"] else " ✗")
            row.append("" if v is None or v.get("ma") is None else f"{v['ma']:.3f}{mark}")
        return row + [f"{values[key]['rougeL_recall']:.3f}" if values.get(key) else "" for key in kept]

    rows = [["original", *cells(last["original"], None)]]
    rows += [[f"request {c['request']}", *cells(c["now"], c["request"])] for c in curve]
    return header, rows


def format_curve(curve: Sequence[dict[str, Any]]) -> str:
    """``curve_table`` as aligned plain text (one line per model), empty when there is no curve."""
    header, rows = curve_table(curve)
    if not rows:
        return ""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in [header, *rows]]
    return "\n".join(["cumulative evaluation: MA of each request's forget set (✓ forgotten by the calibrated "
                      "rule, ✗ not), retain / utility ROUGE-L", *lines])


__all__ = [
    "CumulativeConfig",
    "StreamResult",
    "evaluate_cumulative",
    "format_curve",
    "kept_sets",
    "measure_model",
    "measure_set",
    "origin_stop_overrides",
    "request_records",
    "run_stream",
]
