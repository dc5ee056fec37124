"""The one owner of the folders obliviate writes: run, audit, evaluation, demo, sweep, merge.

    folder = RunFolder.prepare("runs/icu", "run", overwrite=True)   # checks only; writes nothing
    ...validate the config, load the model and the data...
    folder.begin()                                                   # now the old run is replaced
    folder.write_json(RunFolder.NEIGHBORS, doc); folder.write_summary({...})
    RunFolder.open("runs/icu", "run").read_summary()

Every folder gets a marker file (``.obliviate``: its kind and format version) when it is created,
and every summary (``summary.json``, ``eval.json``) carries the same ``format`` field, e.g.
``"obliviate-run/1"``. Readers (``compare``, ``report``, ``eval``) tell the kinds apart by that
field, never by which files happen to be present, and a folder written by a newer format is
refused instead of misread.

Safety rules (why this module exists):

* ``--overwrite`` only ever replaces a folder that holds obliviate's marker; a non-empty folder
  without it is somebody else's and is refused (without suggesting ``--overwrite``).
* ``prepare`` writes nothing; ``begin`` (called once every input has been validated) creates the
  folder and only then removes the run it replaces. A failed validation leaves the disk as it was.
* ``redact=True`` (``--redact``; kept in the marker, so later writers into the folder honour it)
  replaces every string under a text field (``TEXT_FIELDS``: prompts, references, generations)
  by its length and a hash prefix in every JSON file written here.
* ``safe_output_file`` guards single output files (``report --out``, ``compare --csv``): an
  existing file is replaced only when obliviate wrote it, or when the caller says ``overwrite``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from obliviate.errors import DataError, ObliviateError

log = logging.getLogger(__name__)

MARKER = ".obliviate"
FORMAT_VERSION = 1
KINDS = ("run", "audit", "eval", "demo", "sweep", "merge", "stream", "tune")
RESUMABLE = ("run", "demo", "sweep", "stream", "tune")
# Fields whose strings are text of the data or generated from it: what redaction removes.
TEXT_FIELDS = frozenset({
    "prompt", "reference", "generation", "generations", "generation_before", "generation_after", "prefix",
    "target", "question", "answer", "paraphrased_answer", "paraphrased_question", "perturbed_answers", "text",
    "completion", "output", "response", "gt", "context", "suffix", "rewritten", "negative", "positive"})
MD_SIGNATURE = "<!-- written by obliviate -->"
# Text near the start by which output files written by obliviate are recognised (safe_output_file).
SIGNATURES = ('<meta name="generator" content="obliviate', "run,reference,kind,path,", MD_SIGNATURE)


def format_name(kind: str, version: int = FORMAT_VERSION) -> str:
    return f"obliviate-{kind}/{version}"


def parse_format(value: Any) -> tuple[str, int] | None:
    """``"obliviate-run/1"`` -> ("run", 1); anything else -> None."""
    if not isinstance(value, str) or not value.startswith("obliviate-") or "/" not in value:
        return None
    kind, _, version = value[len("obliviate-"):].partition("/")
    return (kind, int(version)) if version.isdigit() and kind in KINDS else None


class RunFolder:
    """A folder obliviate writes; file names live here and nowhere else."""

    CONFIG = "config.yaml"
    SUMMARY = "summary.json"  # written last by a run: its presence means "finished"
    METRICS = "metrics.jsonl"
    PER_SAMPLE = "per_sample.jsonl"
    FORGOTTEN = "forgotten.json"
    PROGRESS = "progress.json"  # epoch and seconds at the last checkpoint (what --resume adds to)
    TRACE = "trace.json"
    REPORT = "report.html"
    MODEL = "model"
    CHECKPOINTS = "checkpoints"
    ANALOGOUS = "analogous.jsonl"
    NEIGHBORS = "neighbors.json"
    LINEAGE = "lineage.json"  # the chain of deletion requests behind a run (obliviate.lineage)
    STREAM = "stream.json"  # a stream folder's requests and their status (obliviate.recipes.stream)
    EVAL = "eval.json"  # an evaluation folder's summary
    EVALS = "eval"  # RUN/eval/<benchmark>/: evaluations saved inside a run folder
    ATTACKS = "attacks.json"  # robustness attacks on the unlearned model (audit.attacks; evaluation.attacks)
    LOGS = "logs"  # experiment-tracker logs (train.report_to; engine.tracking)

    def __init__(self, path: str | Path, kind: str, *, overwrite: bool = False, resume: bool = False,
                 redact: bool = False):
        if kind not in KINDS:
            raise ValueError(f"unknown folder kind {kind!r}")
        self.path, self.kind = Path(path), kind
        self.overwrite, self.resume = overwrite, resume
        # No text of the data (prompts, references, generations) in any file written here; kept in
        # the marker, so every later writer (eval, report, resume) honours it too.
        self.redact = redact or (not overwrite and bool(_marker(self.path).get("redact", False)))
        self.started = resume or ((self.path / MARKER).is_file() and not overwrite)

    # ------------------------------------------------------------------ creating

    @classmethod
    def prepare(cls, path: str | Path, kind: str, *, overwrite: bool = False, resume: bool = False,
                redact: bool = False) -> RunFolder:
        """Check that ``path`` may receive a new (or resumed) folder of ``kind``; writes nothing."""
        if resume and overwrite:
            raise ObliviateError("choose either resume or overwrite, not both")
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise ObliviateError(f"{path}: is a file, not a folder; give --out a folder path")
        found = kind_of(path)
        if resume:
            if found is None:
                raise ObliviateError(f"{path}: nothing to resume (no obliviate {kind} there); start a new run "
                                     "without --resume")
            if found != kind:
                raise ObliviateError(f"{path}: holds an obliviate {found}, not a {kind}; cannot resume it as one")
        elif path.is_dir() and any(path.iterdir()):
            if found is None:
                raise ObliviateError(f"{path}: holds files obliviate did not write; obliviate never replaces them, "
                                     "choose a new or empty folder for --out")
            if not overwrite:
                how = "--resume to continue it or " if found == kind and kind in RESUMABLE else ""
                raise ObliviateError(f"{path}: already holds an obliviate {found}; pass {how}--overwrite to replace "
                                     "it, or choose another --out")
        check_writable(path)
        return cls(path, kind, overwrite=overwrite, resume=resume, redact=redact)

    @classmethod
    def create(cls, path: str | Path, kind: str, *, overwrite: bool = False, resume: bool = False,
               redact: bool = False) -> RunFolder:
        """``prepare`` + ``begin``, for writers that have validated their inputs already."""
        return cls.prepare(path, kind, overwrite=overwrite, resume=resume, redact=redact).begin()

    @classmethod
    def claim(cls, path: str | Path, kind: str, *, redact: bool = False) -> RunFolder:
        """A new, empty or existing obliviate folder of ``kind``, marked and never emptied: for
        writers that manage the files inside themselves (ULMR keeps its costly restructured data
        across --overwrite). A foreign folder is refused as by ``prepare``."""
        found = kind_of(path)
        if found is None:
            return cls.prepare(path, kind, redact=redact).begin()
        if found != kind:
            raise ObliviateError(f"{path}: holds an obliviate {found}, not a {kind}")
        folder = cls.open(path, kind)
        if redact and not folder.redact:  # redaction, once asked for, stays on for the folder
            folder.redact = True
            folder._write_marker()
        return folder

    def begin(self) -> RunFolder:
        """Create the folder (replacing the obliviate folder there with ``overwrite``) and mark it."""
        if self.started:
            return self
        path = self.path
        aside = None
        if self.overwrite and (path / MARKER).is_file():
            # Moved aside first, deleted once the new folder exists: never a moment with neither.
            aside = path.with_name(f".{path.name}.replaced-{os.getpid()}")
            shutil.rmtree(aside, ignore_errors=True)
            os.replace(path, aside)
            log.warning("replacing the obliviate %s in %s (--overwrite)", kind_of(aside) or self.kind, path)
        try:
            path.mkdir(parents=True, exist_ok=True)
            self._write_marker()
        except OSError as e:
            if aside is not None:  # put the old folder back
                shutil.rmtree(path, ignore_errors=True)
                os.replace(aside, path)
            raise ObliviateError(f"{path}: cannot write there ({e.strerror or e})") from None
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
        self.started = True
        return self

    def _write_marker(self) -> None:
        _write_text(self.path / MARKER, json.dumps({"format": format_name(self.kind), "redact": self.redact,
                                                    "created": time.strftime("%Y-%m-%d %H:%M:%S")}) + "\n")

    # ------------------------------------------------------------------ reading an existing folder

    @classmethod
    def open(cls, path: str | Path, *kinds: str) -> RunFolder:
        """An existing folder of one of ``kinds`` (any kind when none is given)."""
        path = Path(path)
        if not path.exists():
            raise ObliviateError(f"{path}: no such folder")
        found = kind_of(path)
        if found is None or (kinds and found not in kinds):
            wanted = " or ".join(kinds) if kinds else "folder"
            held = f"it holds an obliviate {found}" if found else f"no {MARKER} marker or format field"
            raise ObliviateError(f"{path}: not an obliviate {wanted} ({held})")
        folder = cls(path, found)
        folder.started = True
        return folder

    # ------------------------------------------------------------------ files

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def path_of(self, name: str) -> Path:
        return self.path / name

    def has(self, name: str) -> bool:
        return (self.path / name).exists()

    @property
    def format(self) -> str:
        return format_name(self.kind)

    def write_text(self, name: str, text: str) -> Path:
        self.begin()
        _write_text(self.path / name, text)
        return self.path / name

    def write_json(self, name: str, obj: Any) -> Path:
        from obliviate.data.io import write_json

        self.begin()
        write_json(self.path / name, redact(obj) if self.redact else obj)
        return self.path / name

    def write_jsonl(self, name: str, rows: Iterable[Any]) -> Path:
        from obliviate.data.io import json_default

        rows = (redact(r) for r in rows) if self.redact else rows
        return self.write_text(name, "".join(json.dumps(r, ensure_ascii=False, default=json_default) + "\n"
                                             for r in rows))

    def write_summary(self, summary: dict[str, Any], name: str | None = None) -> Path:
        """The folder's summary with its ``format`` field first."""
        return self.write_json(name or self.summary_name, {"format": self.format, **summary})

    @property
    def summary_name(self) -> str:
        return self.EVAL if self.kind == "eval" else self.SUMMARY

    def read_json(self, name: str) -> Any:
        from obliviate.data.io import read_json

        return read_json(self.path / name)

    def read_jsonl(self, name: str) -> list[dict[str, Any]]:
        path = self.path / name
        if not path.is_file():
            return []
        rows = []
        for k, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise DataError(path, f"malformed JSON at line {k}: {e.msg}") from None
        return rows

    def read_summary(self) -> dict[str, Any]:
        """The summary (``{}`` while a run is unfinished)."""
        return self.read_json(self.summary_name) if self.has(self.summary_name) else {}

    @property
    def finished(self) -> bool:
        return self.has(self.summary_name)

    def evaluations(self) -> list[Path]:
        """Evaluation folders saved inside this run folder (``obliviate eval --model RUN``)."""
        root = self.path / self.EVALS
        return sorted(p for p in root.iterdir() if kind_of(p) == "eval") if root.is_dir() else []

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r}, {self.kind!r})"


def redact(obj: Any, key: str = "") -> Any:
    """``obj`` with every string under a text field (``TEXT_FIELDS``, at any depth) replaced by
    its length and a hash prefix: ids, numbers and hashes stay, the text of the data does not."""
    if isinstance(obj, dict):
        return {k: redact(v, str(k) if key not in TEXT_FIELDS else key) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [redact(v, key) for v in obj]
    if isinstance(obj, str) and (key in TEXT_FIELDS or key.startswith(("generation", "prompt"))):
        return f"<redacted: {len(obj)} chars, sha256 {hashlib.sha256(obj.encode()).hexdigest()[:12]}>"
    return obj


def _marker(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads((path / MARKER).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return doc if isinstance(doc, dict) else {}


def kind_of(path: str | Path) -> str | None:
    """What obliviate wrote at ``path`` ("run", "audit", "eval", ...), from its marker or the
    ``format`` field of its summary; None for anything else. A newer format is an error."""
    path = Path(path)
    if not path.is_dir():
        return None
    for name in (MARKER, RunFolder.SUMMARY, RunFolder.EVAL):
        file = path / name
        if not file.is_file():
            continue
        try:
            doc = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        parsed = parse_format(doc.get("format")) if isinstance(doc, dict) else None
        if parsed is None:
            continue
        kind, version = parsed
        if version > FORMAT_VERSION:
            raise ObliviateError(f"{path}: written by a newer obliviate (format {doc['format']}); upgrade obliviate "
                                 "to read it")
        return kind
    return None


def check_writable(path: str | Path) -> None:
    """Fail now, not after an hour of training, when ``path`` cannot be created or written."""
    probe = Path(path)
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ObliviateError(f"{path}: {probe} is a file, not a folder")
    # Try for real: os.access says yes to root on read-only mounts and pseudo file systems.
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".obliviate-probe-", dir=probe))
    except OSError as e:
        raise ObliviateError(f"{path}: not writable ({probe}: {e.strerror})") from None


def safe_output_file(path: str | Path, *, overwrite: bool = False) -> Path:
    """Check that a single output file may be written: not a folder, and an existing file only
    when obliviate wrote it (its signature, see SIGNATURES) or with ``overwrite``."""
    path = Path(path)
    if path.is_dir():
        raise ObliviateError(f"{path}: is a folder; give a file name (e.g. {path / 'report'}{path.suffix or '.html'})")
    if path.exists() and not overwrite and not written_by_obliviate(path):
        raise ObliviateError(f"{path}: exists and was not written by obliviate; choose another file name or pass "
                             "--overwrite to replace it")
    check_writable(path.parent if str(path.parent) else ".")
    return path


def written_by_obliviate(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8") as fh:
            head = fh.read(4096)
    except (OSError, UnicodeDecodeError):
        return False
    return head.startswith(SIGNATURES[1:]) or SIGNATURES[0] in head


def _write_text(path: Path, text: str) -> None:
    from obliviate.data.io import atomic_write_text

    atomic_write_text(path, text)


__all__ = ["KINDS", "MARKER", "MD_SIGNATURE", "RunFolder", "check_writable", "format_name", "kind_of", "parse_format", "redact",
           "safe_output_file", "written_by_obliviate"]
