"""Lineage: the chain of deletion requests a model has been through, back to the original model.

A run that starts from an earlier run (``obliviate unlearn --after RUN`` or ``--model RUN``)
continues RUN's unlearned model. Every run folder holds ``lineage.json``::

    format      "obliviate-lineage/1"
    origin      the original model spec (before any request)
    parent      the parent run folder, relative to this run folder (null for a first request)
    requests    the whole chain, oldest first; the last entry is this run's request:
                run, method, forget (data spec), max_forget, n_requested, n_unlearned,
                forget_sha256 (order-free hash of the requested set), record_sha256 (per record),
                overlap ({earlier request number: records it had already unlearned})

Records are identified by their content (prefix + target, or question + answer), never by their
id, so the same text under another id is the same data. Only hashes are stored: lineage never
keeps a copy of forget text.

Overlap policy (``lineage.overlap``): ``skip`` (default) unlearns only the records no earlier
request unlearned, and refuses a request whose every record was already unlearned (an identical
request included): pushing already-forgotten records further down over-unlearns them, which makes
them stand out from never-seen data again. ``again`` unlearns every requested record, e.g. to
repair a relapse.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from obliviate.data.records import QARecord, Record
from obliviate.data.sources import load_data
from obliviate.errors import DataError, ObliviateError
from obliviate.protocols.base import EVAL_FILE, read_eval
from obliviate.runfolder import RunFolder, kind_of

LINEAGE_FILE = RunFolder.LINEAGE
CUMULATIVE = "cumulative"  # the cumulative evaluation of a chain (obliviate.recipes.stream): RUN/eval/cumulative/
FORMAT = "obliviate-lineage/1"
OVERLAP_POLICIES = ("skip", "again")


class NothingToUnlearn(ObliviateError):
    """A request whose every record an earlier request already unlearned (``overlap=skip``)."""


@dataclass
class LineageConfig:
    """``lineage``: which run this one continues, and what to do with records unlearned before."""

    after: str | None = field(default=None, metadata={
        "help": "parent run folder: unlearn on top of its model and record the chain of requests"})
    overlap: str = field(default="skip", metadata={
        "help": "records an earlier request already unlearned: skip (unlearn only new records; refuse a request "
                "with none) | again (unlearn them again)"})

    def check(self) -> None:
        if self.overlap not in OVERLAP_POLICIES:
            raise ObliviateError(f"lineage.overlap must be one of {', '.join(OVERLAP_POLICIES)}, got {self.overlap!r}")


@dataclass
class Request:
    """One deletion request of a chain."""

    run: str
    method: str
    forget: str | None
    max_forget: int | None
    n_requested: int
    n_unlearned: int
    forget_sha256: str
    record_sha256: list[str]
    overlap: dict[str, int] = field(default_factory=dict)


@dataclass
class Lineage:
    origin: str | None
    parent: str | None
    requests: list[Request]

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "origin": self.origin, "parent": self.parent,
                "requests": [asdict(r) for r in self.requests]}


@dataclass
class Plan:
    """What a new request unlearns: ``records`` (after the overlap policy) and its lineage."""

    records: list[Record]
    lineage: Lineage
    message: str | None = None  # what the overlap policy did, for the log


def record_hash(record: Record) -> str:
    """SHA-256 of what is unlearned: question + answer, or prefix + target (ids and metadata excluded)."""
    content = [record.question, record.answer] if isinstance(record, QARecord) else [record.prefix, record.target]
    return hashlib.sha256(json.dumps(content, ensure_ascii=False).encode("utf-8")).hexdigest()


def set_hash(hashes: Sequence[str]) -> str:
    """Order-free hash of a set of records (duplicates count once)."""
    return hashlib.sha256("\n".join(sorted(set(hashes))).encode()).hexdigest()


def records_sha256(records: Sequence[Record]) -> str:
    """The hash that names a forget set everywhere (lineage, model card, stream caches)."""
    return set_hash([record_hash(r) for r in records])


def is_run_folder(path: str | Path) -> bool:
    """A finished run of ``obliviate unlearn`` (its model can be continued)."""
    path = Path(path)
    return kind_of(path) == "run" and (path / RunFolder.SUMMARY).is_file() and (path / RunFolder.MODEL).is_dir()


def parent_run(model: Any, after: str | Path | None) -> tuple[Any, str | None]:
    """``(model spec, parent run)``: a run folder given as the model means "after that run"."""
    if isinstance(model, str | Path) and is_run_folder(model):
        if after is not None and Path(after).resolve() != Path(model).resolve():
            raise ObliviateError(f"--model {model} is a run folder and --after {after} another one; give one of them")
        after = model
    if after is None:
        return model, None
    if not is_run_folder(after):
        raise ObliviateError(f"{after}: --after needs a finished run folder of `obliviate unlearn` "
                             "(summary.json and model/)")
    if model is not None and not (isinstance(model, str | Path) and
                                  Path(model).resolve() in (Path(after).resolve(), (Path(after) / "model").resolve())):
        raise ObliviateError(f"--after {after} continues that run's model; drop --model {model}")
    return str(Path(after) / "model"), str(after)


def read_lineage(run_dir: str | Path) -> Lineage:
    """The chain of a run folder: its lineage.json, or a one-request chain rebuilt from the run's
    config for a run written before lineage existed."""
    run_dir = Path(run_dir)
    path = run_dir / LINEAGE_FILE
    if path.is_file():
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("requests"), list):
            raise DataError(path, f"not an obliviate lineage file (expected format {FORMAT!r})")
        try:
            requests = [Request(**r) for r in doc["requests"]]
        except TypeError as e:
            raise DataError(path, f"malformed request entry ({e})", field="requests") from None
        return Lineage(doc.get("origin"), doc.get("parent"), requests)
    return _rebuilt(run_dir)


def _rebuilt(run_dir: Path) -> Lineage:
    config = run_dir / RunFolder.CONFIG
    if not config.is_file():
        raise ObliviateError(f"{run_dir}: not a run folder of `obliviate unlearn` (no {LINEAGE_FILE}, no config.yaml)")
    cfg = yaml.safe_load(config.read_text()) or {}
    data = cfg.get("data") or {}
    spec, limit = data.get("forget"), data.get("max_forget")
    if not spec or str(spec).startswith("<"):
        raise DataError(config, "the forget set was given in Python; its lineage cannot be rebuilt", field="data.forget")
    records = load_data(spec)[:limit] if limit else load_data(spec)
    hashes = [record_hash(r) for r in records]
    request = Request(str(run_dir), str(cfg.get("method")), str(spec), limit, len(records), len(records),
                      set_hash(hashes), hashes)
    return Lineage(cfg.get("model"), None, [request])


def plan_request(records: Sequence[Record], *, run_dir: str | Path | None, method: str, forget: str | None,
                 max_forget: int | None, origin: str | None, cfg: LineageConfig) -> Plan:
    """Apply the overlap policy to a new request and build its lineage (nothing is written).

    Raises ``NothingToUnlearn`` for a request with nothing new to unlearn under ``overlap=skip``.
    """
    cfg.check()
    parent = read_lineage(cfg.after) if cfg.after else None
    earlier = parent.requests if parent else []
    hashes = [record_hash(r) for r in records]
    digest = set_hash(hashes)
    seen: dict[str, int] = {}
    for k, req in enumerate(earlier, start=1):
        for h in req.record_sha256:
            seen.setdefault(h, k)
    overlap: dict[str, int] = {}
    for h in set(hashes):
        if h in seen:
            overlap[str(seen[h])] = overlap.get(str(seen[h]), 0) + 1
    keep = records if cfg.overlap == "again" else [r for r, h in zip(records, hashes) if h not in seen]
    name = forget or f"<{len(records)} records>"
    message = None
    if cfg.overlap == "skip" and not keep:
        same = next((k for k, req in enumerate(earlier, start=1) if req.forget_sha256 == digest), None)
        why = (f"it is identical to request {same} ({earlier[same - 1].run})" if same else
               f"every record was already unlearned by request(s) {', '.join(sorted(overlap, key=int))}")
        raise NothingToUnlearn(f"{name}: nothing to unlearn after {cfg.after}: {why}; "
                             "pass lineage.overlap=again to unlearn these records again")
    if overlap:
        done = sum(overlap.values())
        message = (f"{name}: {done} of {len(set(hashes))} record(s) were already unlearned by earlier requests "
                   f"({', '.join(f'request {k}: {n}' for k, n in sorted(overlap.items(), key=lambda kv: int(kv[0])))}); "
                   + ("unlearning them again (lineage.overlap=again)" if cfg.overlap == "again"
                      else f"unlearning the {len(keep)} new one(s)"))
    request = Request(str(run_dir) if run_dir is not None else "", method, forget, max_forget, len(records),
                      len(keep), digest, hashes, overlap)
    parent_rel = None
    if cfg.after and run_dir is not None:
        parent_rel = os.path.relpath(Path(cfg.after).resolve(), Path(run_dir).resolve())
    lineage = Lineage(parent.origin if parent else origin, parent_rel, [*earlier, request])
    return Plan(list(keep), lineage, message)


def write_lineage(run_dir: str | Path, lineage: Lineage) -> Path:
    return RunFolder.open(run_dir, "run").write_json(LINEAGE_FILE, lineage.to_dict())


def chain_curve(run_dir: str | Path) -> list[dict[str, Any]]:
    """Per request of ``run_dir``'s chain (oldest first) whose run folder is still there and holds a
    cumulative evaluation: the request number, the run, and that evaluation's ``now`` values."""
    run_dir = Path(run_dir)
    lineage = read_lineage(run_dir)
    rows = []
    for k, req in enumerate(lineage.requests, start=1):
        folder = run_dir if k == len(lineage.requests) else Path(req.run)
        path = folder / RunFolder.EVALS / CUMULATIVE / EVAL_FILE
        if path.is_file():
            doc = read_eval(path)
            rows.append({"request": k, "run": str(folder), "now": doc["details"].get("now", {}),
                         "original": doc["details"].get("original", {}),
                         "thresholds": doc["details"].get("thresholds")})
    return rows


def origin_model(run_dir: str | Path) -> str | None:
    """The original model a run's chain started from (None when the folder holds no lineage)."""
    path = Path(run_dir) / LINEAGE_FILE
    if not path.is_file():
        return None
    return read_lineage(run_dir).origin


__all__ = [
    "CUMULATIVE",
    "LINEAGE_FILE",
    "Lineage",
    "LineageConfig",
    "NothingToUnlearn",
    "Plan",
    "Request",
    "chain_curve",
    "is_run_folder",
    "origin_model",
    "parent_run",
    "plan_request",
    "read_lineage",
    "record_hash",
    "set_hash",
    "write_lineage",
]
