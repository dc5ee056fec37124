"""Refusal answers ("I don't know"-style): IdkDPO's preferred answers and ULMR's template negatives.

One loader, one built-in list (``builtin/refusals.jsonl``, written for obliviate, not copied from
any dataset); any file of lines works too, e.g. TOFU's ``idontknow.jsonl``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from obliviate.data.sources import builtin_path
from obliviate.errors import DataError


def load_refusals(path: str | os.PathLike | None = None) -> tuple[list[str], str]:
    """Refusal answers from a file (``None`` = the built-in list) -> (answers, short source name).

    Each non-empty line is either plain text (TOFU's ``idontknow.jsonl`` is plain text despite
    its name), a JSON string, or a JSON object with a ``text``/``answer``/``response`` field.
    """
    if path is None:
        path, source = builtin_path("refusals.jsonl"), "builtin"
    else:
        source = Path(path).name
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "refusals file not found")
    out: list[str] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        text: Any = line
        if line[0] in "{\"":
            try:
                text = json.loads(line)
            except json.JSONDecodeError:
                text = line
        if isinstance(text, dict):
            field = next((k for k in ("text", "answer", "response", "output") if k in text), None)
            if field is None:
                raise DataError(path, "JSON object needs a 'text' field", record=f"{lineno} (line {lineno})",
                                field="text")
            text = text[field]
        if not isinstance(text, str) or not text.strip():
            raise DataError(path, "must be a non-empty string", record=f"{lineno} (line {lineno})", field="text")
        out.append(text.strip())
    if not out:
        raise DataError(path, "holds no refusal answers")
    return out, source
