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
