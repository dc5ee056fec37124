"""obliviate: make a trained language model forget specific data, and prove it with measurements.

    import obliviate
    result = obliviate.unlearn("smollm2-135m", "demo:forget", method="icu", pool="demo:pool", out="runs/icu")
    report = obliviate.audit(model, tokenizer, records)

``unlearn`` lives in ``obliviate.recipes`` (one ``obliviate.unlearning.unlearn`` run, or the recipe
of a method that is several runs, ULMR) and ``audit`` in ``obliviate.auditing``; they are imported
on first use so that ``import obliviate`` (and ``obliviate --help``) stays instant.
"""

from __future__ import annotations

from typing import Any

from obliviate.errors import DataError, ObliviateError

__version__ = "0.1.0"
__all__ = ["DataError", "ObliviateError", "__version__", "audit", "unlearn"]

_LAZY = {"unlearn": ("obliviate.recipes", "unlearn"), "audit": ("obliviate.auditing", "audit")}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'obliviate' has no attribute {name!r}")
