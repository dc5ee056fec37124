"""Typed configs: dataclasses, loadable from YAML, overridable with ``key=value`` on the command line.

OmegaConf does the merging and type checking (a string for a float field is an error that
names the key), so a config is always an instance of its dataclass when it reaches our code.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from obliviate.errors import ObliviateError

T = TypeVar("T")


def load_config(cls: type[T], path: str | os.PathLike | None = None, overrides: Sequence[str] = (),
                base: T | dict[str, Any] | None = None) -> T:
    """Build ``cls`` from defaults <- ``base`` <- YAML file <- ``overrides`` (later wins)."""
    try:
        merged = OmegaConf.structured(cls)
        if base is not None:
            merged = OmegaConf.merge(merged, OmegaConf.structured(base) if dataclasses.is_dataclass(base)
                                     else OmegaConf.create(base))
        if path is not None:
            p = Path(path)
            if not p.is_file():
                raise ObliviateError(f"{p}: config file not found")
            merged = OmegaConf.merge(merged, OmegaConf.load(p))
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise ObliviateError(f"override {bad[0]!r} is not of the form key=value")
        if overrides:
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(list(overrides)))
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as e:
        where = f"{path}: " if path else ""
        msg = str(e).splitlines()[0]
        key = getattr(e, "full_key", None)
        raise ObliviateError(f"{where}config error{f' at {key!r}' if key else ''}: {msg}") from None


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]


def config_to_yaml(cfg: Any) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


# --------------------------------------------------------------------------- field metadata

# A config field documents itself as trl's do: ``field(default=..., metadata={"help": "..."})``;
# optional ``"min"`` / ``"max"`` (inclusive), ``"gt"`` (exclusive) and ``"choices"`` are checked by
# ``check_fields``.

def check_fields(cfg: Any, prefix: str = "") -> None:
    """Every field's declared range / choices (nested dataclasses too); one-line error naming the key."""
    for f in dataclasses.fields(cfg):
        value, key, meta = getattr(cfg, f.name), f"{prefix}{f.name}", f.metadata
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_fields(value, f"{key}.")
            continue
        if value is None:
            continue
        if "choices" in meta and value not in meta["choices"]:
            raise ObliviateError(f"{key} must be one of {', '.join(map(str, meta['choices']))}, got {value!r}")
        if "gt" in meta and value <= meta["gt"]:
            raise ObliviateError(f"{key} must be > {meta['gt']}, got {value}")
        if "min" in meta and value < meta["min"]:
            raise ObliviateError(f"{key} must be >= {meta['min']}, got {value}")
        if "max" in meta and value > meta["max"]:
            raise ObliviateError(f"{key} must be <= {meta['max']}, got {value}")


def describe_fields(cfg: Any, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(key, default or current value, help) of every field, nested dataclasses flattened."""
    rows: list[tuple[str, Any, str]] = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            rows.extend(describe_fields(value, f"{prefix}{f.name}."))
            continue
        rows.append((f"{prefix}{f.name}", value, _help(f)))
    return rows


def _help(f: dataclasses.Field) -> str:
    meta = f.metadata
    text = meta.get("help", "")
    limits = [f"{k} {meta[k]}" for k in ("gt", "min", "max") if k in meta]
    if "choices" in meta:
        limits.append("one of " + " | ".join(map(str, meta["choices"])))
    return f"{text} [{', '.join(limits)}]" if limits else text
