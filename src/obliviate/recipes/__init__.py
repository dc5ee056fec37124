"""Workflows of several runs built on ``obliviate.unlearning.unlearn`` (one module each):
``ulmr`` (restructure -> SFT -> average -> evaluate), ``stream`` (deletion request after request).

``unlearn`` here is ``obliviate.unlearn`` (and ``obliviate unlearn``): a method that is a recipe
runs its recipe, every other method one ``unlearning.unlearn`` run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from obliviate.recipes.ulmr import unlearn_ulmr
from obliviate.unlearning import requested_method
from obliviate.unlearning import unlearn as unlearn_method

RECIPES: dict[str, Callable[..., Any]] = {"ulmr": unlearn_ulmr}  # method name -> its recipe


def unlearn(model: Any = None, forget: Any = None, **kwargs: Any) -> Any:
    """``obliviate.unlearn``: see ``obliviate.unlearning.unlearn`` for the arguments."""
    name = requested_method(kwargs.get("method"), kwargs.get("config"), kwargs.get("overrides") or (),
                            kwargs.get("out"), kwargs.get("resume", False))
    return RECIPES.get(name, unlearn_method)(model, forget, **kwargs)
