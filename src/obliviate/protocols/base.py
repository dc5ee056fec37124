"""What every benchmark protocol returns, and the ``eval.json`` folder it is saved as.

A benchmark is a function ``run(model, tokenizer, options) -> EvalResult`` plus a typed options
dataclass (``BenchmarkSpec``). ``EvalResult.metrics`` is a flat ``{key: value}`` mapping with
keys such as ``forget/el_10`` or ``forget_quality`` (their directions are declared in
``obliviate.evaluation.registry``); everything needed to read the numbers (settings, data
sources, backbones, orientations) goes in ``details``.

An evaluation folder (``obliviate eval --out DIR``) holds::

    eval.json          format, benchmark, model, label, reference flag, metrics, directions, details
    per_sample.jsonl   one row per evaluated item: split, id, prompt, reference, generation, values
    <extra files>      e.g. tofu_log.json (per-item TOFU losses: what --retain-results reads)

``obliviate compare`` and the HTML report read these folders.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from obliviate.data.io import json_safe
from obliviate.errors import DataError

EVAL_FILE = "eval.json"
PER_SAMPLE_FILE = "per_sample.jsonl"
FORMAT = "obliviate-eval/1"


@dataclass
class EvalResult:
    benchmark: str
    metrics: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)  # per-sample rows (per_sample.jsonl)
    files: dict[str, Any] = field(default_factory=dict)  # extra JSON files to write: name -> object
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None
    directions: dict[str, bool | None] = field(default_factory=dict)  # for keys the registry does not know


@dataclass(frozen=True)
class BenchmarkSpec:
    """A registered benchmark: ``run(model, tokenizer, options)`` and its options dataclass;
    ``offline`` says what it needs to run without the hub."""

    name: str
    options: type
    run: Callable[..., EvalResult]
    summary: str
    offline: str = "yes"


def directions_of(metrics: Mapping[str, float]) -> dict[str, bool | None]:
    from obliviate.evaluation.registry import direction

    return {key: direction(key) for key in metrics}


def write_eval(out: str | Path, result: EvalResult, *, model: str, label: str, reference: bool = False,
               overwrite: bool = False, directions: Mapping[str, bool | None] | None = None,
               redact: bool = False) -> Path:
    """Write an evaluation folder; an earlier evaluation is replaced only with ``overwrite``, and a
    folder obliviate did not write never (``obliviate.runfolder``)."""
    from obliviate.runfolder import RunFolder

    folder = RunFolder.create(out, "eval", overwrite=overwrite, redact=redact)  # redact: no prompts/generations
    dirs = dict(directions_of(result.metrics))
    dirs.update({k: v for k, v in result.directions.items() if dirs.get(k) is None})
    dirs.update(directions or {})
    for name, obj in result.files.items():
        folder.write_json(name, json_safe(obj))
    folder.write_jsonl(PER_SAMPLE_FILE, (json_safe(r) for r in result.rows))
    doc = {"format": FORMAT, "benchmark": result.benchmark, "model": model, "label": label,
           "reference": bool(reference), "metrics": json_safe(result.metrics), "directions": dirs,
           "details": json_safe(result.details), "settings": json_safe(result.settings),
           "seconds": None if result.seconds is None else round(result.seconds, 1),
           "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    return folder.write_json(EVAL_FILE, doc)  # written last: its presence means the evaluation finished


def read_eval(path: str | Path) -> dict[str, Any]:
    """An ``eval.json`` (or the folder holding one), checked for the fields compare needs."""
    from obliviate.data.io import read_json

    path = Path(path)
    if path.is_dir():
        path = path / EVAL_FILE
    doc = read_json(path)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("metrics"), dict):
        raise DataError(path, f"not an obliviate evaluation (expected format {FORMAT!r} with a 'metrics' object)")
    return doc


def read_per_sample(folder: str | Path) -> list[dict[str, Any]]:
    path = Path(folder) / PER_SAMPLE_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
