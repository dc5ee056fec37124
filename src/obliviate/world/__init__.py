"""The built-in synthetic world: fictitious people, their QA pairs and biographies, and two tiny
models trained on them -- ``world-target`` (everyone) and ``world-retain`` (everyone but the
forget people: the exact-retrain reference). See docs/world.md.

Data: ``obliviate.data.sources.load_data("world:<profile>:<split>")`` or ``load_world_split``.
Models: the built-in names ``world-target``, ``world-retain``, ``world-micro-target``,
``world-micro-retain`` (``obliviate.models.load_model``); built by ``world.recipe`` on first use.

This module stays free of torch so that loading data is instant.
"""

from __future__ import annotations

from obliviate.data.records import Record
from obliviate.errors import ObliviateError
from obliviate.world.generator import GENERATOR_VERSION, PROFILES, World, WorldProfile, generate_world

# split name -> what it holds
SPLITS: dict[str, str] = {
    "forget": "QA of the forget people (trained by the target model only)",
    "retain": "QA of the retain people (trained by both models)",
    "holdout": "QA of the holdout people (trained by neither model; for membership inference)",
    "retain_eval": "QA of the first retain people (TOFU's retain_perturbed: 20 people, 400 QA in 'full')",
    "world_facts": "general facts of the fictional world (trained by both; model utility)",
    "forget_bio": "biographies of the forget people (prefix = full name, target = the rest)",
    "retain_bio": "biographies of the retain people",
    "holdout_bio": "biographies of the holdout people (trained by neither model)",
}


def get_profile(profile: str) -> WorldProfile:
    if profile not in PROFILES:
        raise ObliviateError(f"unknown synthetic-world profile {profile!r}; choose from {', '.join(PROFILES)}")
    return PROFILES[profile]


def load_world_split(profile: str, split: str) -> list[Record]:
    """The records of one split of the synthetic world (``world:<profile>:<split>``)."""
    if profile not in PROFILES:
        raise ObliviateError(f"world:{profile}:{split}: unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
    world = generate_world(PROFILES[profile])
    if split not in SPLITS:
        raise ObliviateError(f"world:{profile}:{split}: unknown split; choose from {', '.join(SPLITS)}")
    if split == "world_facts":
        return list(world.facts)
    if split == "retain_eval":
        people = world.people_with("retain")[: world.profile.n_retain_eval]
        return [qa for p in people for qa in world.qa[p.id]]
    role, _, kind = split.partition("_")
    people = world.people_with(role)
    if kind == "bio":
        return [world.bios[p.id] for p in people]
    return [qa for p in people for qa in world.qa[p.id]]


__all__ = ["GENERATOR_VERSION", "PROFILES", "SPLITS", "World", "WorldProfile", "generate_world", "get_profile",
           "load_world_split"]
