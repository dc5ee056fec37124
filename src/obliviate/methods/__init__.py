"""Unlearning methods: one small file each (config dataclass + pure loss), registered here.

``get_method(name)`` returns the ``MethodSpec``; ``obliviate unlearn --method NAME`` uses it.
"""

from __future__ import annotations

from obliviate.errors import ObliviateError
from obliviate.methods import (
    altpo,
    ceu,
    dpo,
    graddiff,
    icu,
    kl,
    kumpr,
    llmu,
    npo,
    pdu,
    rmu,
    satimp,
    simnpo,
    ulmr,
    undial,
    wga,
)
from obliviate.methods.base import (
    LossOutput,
    MethodBatch,
    MethodConfig,
    MethodSpec,
    Reference,
    Requirements,
)

METHODS: dict[str, MethodSpec] = {spec.name: spec for spec in (
    icu.SPEC, kumpr.SPEC, graddiff.SPEC, kl.SPEC, npo.SPEC, simnpo.SPEC, dpo.SPEC, llmu.SPEC, ulmr.SPEC,
    rmu.SPEC, undial.SPEC, wga.SPEC, satimp.SPEC, ceu.SPEC, pdu.SPEC, altpo.SPEC,
)}
_ALIASES = {alias: spec.name for spec in METHODS.values() for alias in spec.aliases}


def get_method(name: str) -> MethodSpec:
    key = name.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in METHODS:
        raise ObliviateError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    return METHODS[key]


def describe_methods() -> str:
    return "\n".join(f"  {spec.name:<9} {spec.summary}" for spec in METHODS.values())


__all__ = ["METHODS", "LossOutput", "MethodBatch", "MethodConfig", "MethodSpec", "Reference", "Requirements",
           "describe_methods", "get_method"]
