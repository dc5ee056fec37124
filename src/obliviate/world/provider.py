"""The synthetic world as a provider of built-in names (``obliviate.providers``): its four models
(``world-target``, ``world-retain``, ``world-micro-target``, ``world-micro-retain``; trained by
``world.recipe`` on first use, then cached) and the data source ``world:<profile>:<split>``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from obliviate.data.records import Record
from obliviate.data.sources import register_source
from obliviate.errors import ObliviateError
from obliviate.models import Builtin, register_builtin
from obliviate.world import load_world_split


def _builder(profile: str, which: str) -> Callable[[Path], None]:
    def build(out: Path) -> None:
        from obliviate.world.recipe import build_world_model  # torch and training: only when building

        build_world_model(profile, which, out)

    return build


def _version(profile: str) -> Callable[[], str]:
    def version() -> str:
        from obliviate.world.recipe import world_version

        return world_version(profile)

    return version


def _world(rest: str) -> list[Record]:
    profile, _, split = rest.partition(":")
    if not split:
        raise ObliviateError(f"world:{rest}: expected world:<profile>:<split>, e.g. world:full:forget")
    return load_world_split(profile, split)


register_builtin("world-target", Builtin("tiny GPT trained on the whole synthetic world (forget + retain people)",
                                         _builder("full", "target"), _version("full")))
register_builtin("world-retain", Builtin("tiny GPT trained on the synthetic world's retain people only "
                                         "(exact retrain)", _builder("full", "retain"), _version("full")))
register_builtin("world-micro-target", Builtin("micro synthetic world, target model (for tests; trains in seconds)",
                                               _builder("micro", "target"), _version("micro")))
register_builtin("world-micro-retain", Builtin("micro synthetic world, exact-retrain model (for tests)",
                                               _builder("micro", "retain"), _version("micro")))
register_source("world", _world, "synthetic world, world:<micro|full>:<split>")
