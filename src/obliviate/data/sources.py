"""Data specs: wherever a command asks for data it accepts a file or a built-in name.

* a file: ``forget.jsonl`` / ``.json`` / ``.csv`` (see ``io.load_records``)
* ``demo:<split>``: the built-in demo sets shipped with the package (``obliviate/builtin/demo``)
* ``world:<profile>:<split>``: the synthetic world (``obliviate.world``), e.g. ``world:full:forget``
* ``pile:<set>[@<folder>]``: a pile-extraction forget set (0-4) from the benchmark folder
  (default ``$OBLIVIATE_PILE_DIR``), e.g. ``pile:0@../shared/data/pile-extraction``

``obliviate data list`` prints the built-in names.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from obliviate.data.io import load_records
from obliviate.data.records import Record
from obliviate.errors import ObliviateError

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


def _world(rest: str) -> list[Record]:
    from obliviate.world import load_world_split

    profile, _, split = rest.partition(":")
    if not split:
        raise ObliviateError(f"world:{rest}: expected world:<profile>:<split>, e.g. world:full:forget")
    return load_world_split(profile, split)


def _pile(rest: str) -> list[Record]:
    from obliviate.data.pile import PileExtraction

    which, _, folder = rest.partition("@")
    folder = folder or os.environ.get("OBLIVIATE_PILE_DIR", "")
    if not folder:
        raise ObliviateError("pile:<set>: give the benchmark folder as pile:<set>@<folder> or set $OBLIVIATE_PILE_DIR")
    key: int | str = int(which) if which.isdigit() else which
    return PileExtraction.open(folder).forget_records(key)


register_source("demo", _demo, "built-in demo sets (demo:forget, demo:retain, demo:heldout, demo:pool)")
register_source("world", _world, "synthetic world, world:<micro|full>:<split>")
register_source("pile", _pile, "pile-extraction forget set, pile:<0-4>@<folder>")


def load_data(spec: str | os.PathLike) -> list[Record]:
    """Records from a file path or a built-in spec (``demo:forget``, ``world:full:forget``, ...)."""
    text = str(spec)
    prefix, sep, rest = text.partition(":")
    if sep and prefix in _SOURCES and not Path(text).exists():
        return _SOURCES[prefix][0](rest)
    return load_records(text)


def describe_sources() -> str:
    return "\n".join(f"  {p + ':':<8} {h}" for p, (_, h) in _SOURCES.items())
