"""Read and write record files: JSONL, JSON (a list, or ``{"data": [...]}``) and CSV.

Every problem is reported as one line naming the file, the record (line number for JSONL and
CSV, index for JSON) and the field, e.g.::

    forget.jsonl, record 3 (line 3), field 'target': must be a string, got int
"""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from obliviate.data.records import QARecord, Record, TextRecord, record_to_dict
from obliviate.errors import DataError

# Accepted spellings of each field, so that the published schemas load unchanged
# (TOFU: question/answer/perturbed_answer; RWKU: query; MUSE verbmem: prompt/gt; plain text: text).
TEXT_ALIASES = {"prefix": ("prefix", "prompt", "context"), "target": ("target", "suffix", "gt", "completion")}
QA_ALIASES = {"question": ("question", "query", "instruction"), "answer": ("answer", "output", "response")}
_KNOWN = {"id", "prefix", "prompt", "context", "target", "suffix", "gt", "completion", "text", "question",
          "query", "instruction", "answer", "output", "response", "paraphrased_answer",
          "paraphrased_question", "perturbed_answer", "perturbed_answers", "prefix_ids", "target_ids",
          "ids_tokenizer"}


def _first(raw: dict[str, Any], names: Sequence[str]) -> tuple[str, Any] | None:
    for name in names:
        if name in raw and raw[name] is not None:
            return name, raw[name]
    return None


def _string(path: object, where: str, name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise DataError(path, f"must be a string, got {type(value).__name__}", record=where, field=name)
    return value


def _ids(path: object, where: str, name: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, str):  # CSV cells hold JSON lists
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise DataError(path, "must be a list of token ids", record=where, field=name) from None
    if not isinstance(value, list) or not all(isinstance(v, int) and v >= 0 for v in value):
        raise DataError(path, "must be a list of non-negative token ids", record=where, field=name)
    return tuple(value)


def parse_record(raw: Any, *, path: object = "<memory>", where: str = "?", index: int = 0) -> Record:
    """Turn one raw mapping into a ``TextRecord`` or ``QARecord`` (decided by its fields)."""
    if not isinstance(raw, dict):
        raise DataError(path, f"must be a JSON object, got {type(raw).__name__}", record=where)
    rid = raw.get("id", index)
    if not isinstance(rid, str | int) or isinstance(rid, bool) or str(rid) == "":
        raise DataError(path, "must be a non-empty string or integer", record=where, field="id")
    rid = str(rid)
    meta = {k: v for k, v in raw.items() if k not in _KNOWN}

    question = _first(raw, QA_ALIASES["question"])
    if question is not None:
        answer = _first(raw, QA_ALIASES["answer"])
        if answer is None:
            raise DataError(path, "QA record has a question but no answer", record=where, field="answer")
        perturbed = raw.get("perturbed_answer", raw.get("perturbed_answers", ()))
        if isinstance(perturbed, str):
            perturbed = [perturbed]
        if not isinstance(perturbed, list | tuple) or not all(isinstance(p, str) for p in perturbed):
            raise DataError(path, "must be a list of strings", record=where, field="perturbed_answer")
        para, para_q = raw.get("paraphrased_answer"), raw.get("paraphrased_question")
        return QARecord(
            id=rid,
            question=_string(path, where, question[0], question[1]),
            answer=_string(path, where, answer[0], answer[1]),
            paraphrased_answer=None if para is None else _string(path, where, "paraphrased_answer", para),
            paraphrased_question=None if para_q is None else _string(path, where, "paraphrased_question", para_q),
            perturbed_answers=tuple(perturbed),
            meta=meta,
        )

    target = _first(raw, TEXT_ALIASES["target"])
    prefix = _first(raw, TEXT_ALIASES["prefix"])
    if target is None and "text" in raw:
        prefix, target = ("prefix", ""), ("text", raw["text"])
    if target is None:
        raise DataError(path, "needs either 'prefix' + 'target' (or 'text') or 'question' + 'answer'",
                        record=where, field="target")
    prefix_s = "" if prefix is None else _string(path, where, prefix[0], prefix[1])
    target_s = _string(path, where, target[0], target[1])
    if target_s == "":
        raise DataError(path, "is empty", record=where, field=target[0])
    prefix_ids = target_ids = ids_tok = None
    if raw.get("prefix_ids") is not None or raw.get("target_ids") is not None:
        prefix_ids = _ids(path, where, "prefix_ids", raw.get("prefix_ids", []))
        target_ids = _ids(path, where, "target_ids", raw.get("target_ids"))
        ids_tok = raw.get("ids_tokenizer")
        if not isinstance(ids_tok, str):
            raise DataError(path, "token ids need the fingerprint of their tokenizer", record=where,
                            field="ids_tokenizer")
    return TextRecord(id=rid, prefix=prefix_s, target=target_s, prefix_ids=prefix_ids, target_ids=target_ids,
                      ids_tokenizer=ids_tok, meta=meta)


def _iter_raw(path: Path) -> Iterator[tuple[str, Any]]:
    """Yield (location, raw object) pairs; location names the line or index for error messages."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        with path.open(encoding="utf-8") as fh:
            yield from _iter_json_lines(path, fh)
    elif suffix == ".json":
        text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            if e.msg == "Extra data" and text.lstrip().startswith("{"):
                # JSON lines under a .json name (TOFU's HF files are like that).
                yield from _iter_json_lines(path, text.splitlines())
                return
            raise DataError(path, f"malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            data = data["data"]
        if not isinstance(data, list):
            raise DataError(path, 'must hold a JSON list of records (or {"data": [...]})')
        for i, raw in enumerate(data):
            yield f"{i} (index {i})", raw
    elif suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            for lineno, row in enumerate(reader, 2):
                if None in row:
                    raise DataError(path, "has more cells than the header", record=f"{lineno} (line {lineno})")
                yield f"{lineno} (line {lineno})", {k: v for k, v in row.items() if v != ""}
    else:
        raise DataError(path, f"unsupported file type {suffix!r}; use .jsonl, .json or .csv")


def _iter_json_lines(path: Path, lines: Iterable[str]) -> Iterator[tuple[str, Any]]:
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield f"{lineno} (line {lineno})", json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(path, f"malformed JSON: {e.msg} (column {e.colno})",
                            record=f"{lineno} (line {lineno})") from None


def load_records(path: str | os.PathLike, *, kind: type | None = None, allow_empty: bool = False) -> list[Record]:
    """Load all records of a file. ``kind`` (TextRecord/QARecord) enforces one schema."""
    path = Path(path)
    if path.is_dir():
        raise DataError(path, "is a folder, not a data file (give a .jsonl, .json, .csv or .parquet file, a "
                        "datasets save_to_disk folder, or a built-in name such as demo:forget)")
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        return parse_records(_iter_raw(path), path=path, kind=kind, allow_empty=allow_empty)
    except csv.Error as e:  # e.g. NUL bytes: a binary file that happens to decode
        raise DataError(path, f"is not a readable CSV file ({e})") from None
    except UnicodeDecodeError as e:
        raise DataError(path, f"is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); a binary "
                        "file, or text in another encoding: save it as UTF-8") from None


def parse_records(rows: Iterable[tuple[str, Any]], *, path: object, kind: type | None = None,
                  allow_empty: bool = False) -> list[Record]:
    """Records from (location, raw mapping) pairs: every row parsed, ids unique, ``kind`` enforced."""
    records: list[Record] = []
    seen: dict[str, str] = {}
    for i, (where, raw) in enumerate(rows):
        rec = parse_record(raw, path=path, where=where, index=i)
        if kind is not None and not isinstance(rec, kind):
            want = "prefix/target text" if kind is TextRecord else "question/answer"
            raise DataError(path, f"expected {want} records, got a {type(rec).__name__}", record=where)
        if rec.id in seen:
            raise DataError(path, f"duplicate id {rec.id!r} (first at record {seen[rec.id]})", record=where,
                            field="id")
        seen[rec.id] = where
        records.append(rec)
    if not records and not allow_empty:
        raise DataError(path, "holds no records")
    return records


def write_records(records: Iterable[Record], path: str | os.PathLike) -> Path:
    """Write records as JSONL, atomically (a partial file never replaces a complete one)."""
    path = Path(path)
    lines = [json.dumps(record_to_dict(r), ensure_ascii=False) for r in records]
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except json.JSONDecodeError as e:
        raise DataError(path, f"malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None


def json_default(obj: Any) -> Any:
    import dataclasses

    import numpy as np

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, np.integer | np.floating):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def json_safe(value: Any) -> Any:
    """NaN/inf -> None, tuples -> lists, numpy scalars -> floats, so the files stay standard JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        return json_safe(value.item())
    return value
