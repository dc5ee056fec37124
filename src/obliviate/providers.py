"""Providers of built-in names: modules that, once imported, register models
(``models.register_builtin``) and data sources (``data.sources.register_source``).

``models`` and ``data.sources`` know none of them: on the first name they do not know (and before
listing their names) they call ``load_providers()``, which imports obliviate's own providers
(below) and those of installed packages (the ``obliviate.providers`` entry-point group), as
lm-eval finds its tasks. A provider imports the registries, never the other way round.
"""

from __future__ import annotations

import functools
import importlib
from importlib.metadata import entry_points

PROVIDERS = ("obliviate.world.provider",)  # the synthetic world's models and world:<profile>:<split>


@functools.cache
def load_providers() -> None:
    for name in PROVIDERS:
        importlib.import_module(name)
    for point in entry_points(group="obliviate.providers"):
        point.load()
