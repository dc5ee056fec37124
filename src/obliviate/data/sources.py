"""Data specs: wherever a command asks for data it accepts a file or a built-in name.

* a file: ``forget.jsonl`` / ``.json`` / ``.csv`` (see ``io.load_records``) or ``.parquet``
* a folder written by ``datasets``' ``save_to_disk`` (a ``DatasetDict``'s split: ``folder/<split>``)
* ``hf:<repo>[:<config>[:<split>]]``: a Hugging Face hub dataset, e.g. ``hf:locuslab/TOFU:forget10``
  (split ``train`` by default; offline, only a copy already in the datasets cache loads)
* ``demo:<split>``: the built-in demo sets shipped with the package (``obliviate/builtin/demo``)
* ``world:<profile>:<split>``: the synthetic world, e.g. ``world:full:forget`` (registered by its
  provider, ``obliviate.world.provider``; see ``obliviate.providers``)
* ``pile:<set>[:row][@<folder>]``: a pile-extraction forget set (0-4) from the benchmark folder
  (default ``$OBLIVIATE_PILE_DIR``), e.g. ``pile:0@data/pile-extraction`` (where to get it: docs/benchmarks.md);
  the prompt is the 50-token benchmark prefix, or with ``:row`` (aliases ``:icu``, ``:kumpr``) the
  150 tokens before the suffix, so a record is the whole 200-token row the papers measure

In Python, ``as_records`` also takes a
``datasets.Dataset`` or a list of records. Field names map the same way in every form (``data.io``).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from obliviate.data import hf
from obliviate.data.io import load_records
from obliviate.data.records import Record
from obliviate.errors import ObliviateError
from obliviate.providers import load_providers

Loader = Callable[[str], list[Record]]
_SOURCES: dict[str, tuple[Loader, str]] = {}


def register_source(prefix: str, loader: Loader, help: str) -> None:
    _SOURCES[prefix] = (loader, help)


def builtin_path(*parts: str) -> Path:
    return Path(str(resources.files("obliviate").joinpath("builtin", *parts)))


def _demo(split: str) -> list[Record]:
    path = builtin_path("demo", f"{split}.jsonl")
    if not path.is_file():
        names = sorted(p.stem for p in builtin_path("demo").glob("*.jsonl"))
        raise ObliviateError(f"demo:{split}: no such built-in demo split; have {', '.join(names)}")
    return load_records(path)


# pile:<set>[:layout]: how much of each 200-token benchmark row is the prompt. "" / "benchmark":
# the 50-token benchmark prefix; "row" (= "icu" = "kumpr"): pre-prefix + prefix, 150 tokens, so
# the record is the whole row, as both papers set their thresholds (see docs/methods.md).
PILE_LAYOUTS = {"": 50, "benchmark": 50, "row": 150, "icu": 150, "kumpr": 150}


def _pile(rest: str) -> list[Record]:
    from obliviate.data.pile import PileExtraction

    which, _, folder = rest.partition("@")
    which, _, layout = which.partition(":")
    folder = folder or os.environ.get("OBLIVIATE_PILE_DIR", "")
    if not folder:
        raise ObliviateError("pile:<set>: give the benchmark folder as pile:<set>@<folder> or set $OBLIVIATE_PILE_DIR")
    if layout not in PILE_LAYOUTS:
        raise ObliviateError(f"pile:{rest}: unknown row layout {layout!r}; use {' or '.join(filter(None, PILE_LAYOUTS))}")
    key: int | str = int(which) if which.isdigit() else which
    return PileExtraction.open(folder).forget_records(key, context=PILE_LAYOUTS[layout])


register_source("demo", _demo, "built-in demo sets (demo:forget, demo:retain, demo:heldout, demo:pool)")
register_source("pile", _pile, "pile-extraction forget set, pile:<0-4>[:row]@<folder> (:row = the whole "
                "200-token row, the ICU/KUMPR papers' layout)")
register_source("hf", hf.load_hub_dataset, "Hugging Face hub dataset, hf:<repo>[:<config>[:<split>]] (needs network)")


def load_data(spec: str | os.PathLike) -> list[Record]:
    """Records from a file, a saved dataset folder or a named spec (``demo:forget``, ``hf:locuslab/TOFU:forget10``)."""
    text = str(spec)
    prefix, sep, rest = text.partition(":")
    if sep and prefix not in _SOURCES:
        load_providers()
    if sep and prefix in _SOURCES and not Path(text).exists():
        return _SOURCES[prefix][0](rest)
    if text.lower().endswith(".parquet"):
        return hf.load_parquet(text)
    if hf.is_saved_dataset(text):
        return hf.load_saved_dataset(text)
    if sep and not Path(text).exists() and "/" not in prefix and "\\" not in prefix and len(prefix) > 1:
        close = difflib.get_close_matches(prefix, _SOURCES, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}:{rest}? " if close else ""
        raise ObliviateError(f"{text}: no such file, and {prefix + ':'!r} is not a data source; {hint}"
                             f"sources: {', '.join(p + ':' for p in _SOURCES)}")
    return load_records(text)


def as_records(data: Any) -> list[Record]:
    """Records from a data spec (see ``load_data``), a ``datasets.Dataset`` or an iterable of records."""
    if isinstance(data, str | os.PathLike):
        return load_data(data)
    if hf.is_dataset(data):
        return hf.records_from_dataset(data)
    return list(data)

