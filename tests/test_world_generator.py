"""The synthetic world's generator, splits and export: deterministic, well-formed, no leaks.

Pure Python and fast (no model training here; see test_world_models.py for the models).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re

import pytest

from obliviate.data.io import load_records
from obliviate.data.records import QARecord, TextRecord, record_to_dict
from obliviate.data.sources import load_data
from obliviate.errors import ObliviateError
from obliviate.world import PROFILES, SPLITS, load_world_split
from obliviate.world import generator as gen

# sha256 of every split of each profile as JSONL. If you change the generator on purpose, bump
# GENERATOR_VERSION (the model cache is keyed by it) and paste the new hashes printed by the failure.
GOLDEN = {
    "micro": "843894060796a103999780192592714610fc6e83a7857d0f2fa9ecd987a01cb1",
    "full": "b188182ce4d178594fec3fb0e21d8ff160e844018ad203e8d34aab3fa91a14bc",
}


def _digest(profile: str) -> str:
    h = hashlib.sha256()
    for split in SPLITS:
        for rec in load_world_split(profile, split):
            h.update(json.dumps(record_to_dict(rec), sort_keys=True, ensure_ascii=False).encode())
            h.update(b"\n")
    return h.hexdigest()


def _fresh(profile: gen.WorldProfile) -> gen.World:
    gen._WORLDS.pop(repr(profile), None)  # bypass the memo: really generate again
    return gen.generate_world(profile)


def _contains(text: str, value: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(value)}(?!\w)", text) is not None


@pytest.mark.parametrize("profile", ["micro", "full"])
def test_golden_hash_pins_output_across_machines(profile):
    digest = _digest(profile)
    assert digest == GOLDEN[profile], (
        f"world '{profile}' changed (sha256 {digest}); if intended, bump GENERATOR_VERSION and update GOLDEN")


def test_same_seed_same_world_and_other_seed_differs():
    micro = PROFILES["micro"]
    a, b = _fresh(micro), _fresh(micro)
    assert a.people == b.people and a.qa == b.qa and a.bios == b.bios and a.facts == b.facts
    other = _fresh(dataclasses.replace(micro, seed=micro.seed + 1))
    assert [p.name for p in other.people] != [p.name for p in a.people]
    assert other.qa != a.qa


@pytest.mark.parametrize("profile,people,qa_per_person", [("full", 200, 20), ("micro", 16, 10)])
def test_split_sizes(profile, people, qa_per_person):
    p = PROFILES[profile]
    n = {split: len(load_world_split(profile, split)) for split in SPLITS}
    print(profile, n)
    assert p.n_forget + p.n_retain == people
    assert n["forget"] == p.n_forget * qa_per_person and n["retain"] == p.n_retain * qa_per_person
    assert n["holdout"] == p.n_holdout * qa_per_person and n["retain_eval"] == p.n_retain_eval * qa_per_person
    assert (n["forget_bio"], n["retain_bio"], n["holdout_bio"]) == (p.n_forget, p.n_retain, p.n_holdout)
    if profile == "full":  # TOFU's forget10 / retain90 / retain_perturbed shape
        assert (n["forget"], n["retain"], n["retain_eval"]) == (400, 3600, 400)
        assert n["holdout"] == 400 and n["world_facts"] >= 117
    else:
        assert n["world_facts"] == 24


@pytest.mark.parametrize("profile", ["micro", "full"])
def test_every_qa_has_paraphrases_and_distinct_wrong_answers(profile):
    ids = set()
    for split in SPLITS:
        for rec in load_world_split(profile, split):
            if split != "retain_eval":  # retain_eval is a subset of retain by design
                assert rec.id not in ids, f"duplicate id {rec.id}"
                ids.add(rec.id)
            if isinstance(rec, TextRecord):
                continue
            value = rec.meta["value"]
            want = gen.N_PERTURBED_WORLD if split == "world_facts" else gen.N_PERTURBED
            assert len(rec.perturbed_answers) == want, rec.id
            assert len(set(rec.perturbed_answers)) == want, rec.id
            assert rec.answer not in rec.perturbed_answers and rec.paraphrased_answer not in rec.perturbed_answers
            assert rec.paraphrased_answer != rec.answer and rec.paraphrased_question != rec.question
            assert _contains(rec.answer, value) and _contains(rec.paraphrased_answer, value), rec.id
            assert not any(_contains(p, value) for p in rec.perturbed_answers), rec.id
            if split != "world_facts":  # same shape: the paraphrase's wording with another value
                stem = rec.paraphrased_answer.replace(value, "")
                assert all(p != rec.paraphrased_answer and len(p) > len(stem) // 2 for p in rec.perturbed_answers)


def test_retain_eval_is_the_first_retain_people():
    retain, retain_eval = load_world_split("full", "retain"), load_world_split("full", "retain_eval")
    assert retain_eval == retain[: len(retain_eval)]
    assert len({r.meta["person"] for r in retain_eval}) == PROFILES["full"].n_retain_eval


def test_people_are_distinct_and_biographies_hold_their_facts():
    world = gen.generate_world("full")
    assert len({p.name for p in world.people}) == len(world.people)
    assert len({p.first for p in world.people}) == len(world.people)
    assert len({p.last for p in world.people}) == len(world.people)
    for p in world.people:
        bio = world.bios[p.id]
        assert bio.prefix == p.name and bio.text.startswith(p.name) and bio.target[0] in " '"
        for attr in PROFILES["full"].attributes:
            assert p.values[attr] in bio.text, (p.id, attr)
        assert p.values["email"].endswith(".example")  # reserved domain: reaches nobody
        assert p.values["phone"].startswith("+0")  # no real country code starts with 0


def test_fictional_world_is_consistent():
    for rec in load_world_split("full", "forget"):
        if rec.meta["attribute"] == "birthplace":
            city, country = rec.meta["value"].split(", ")
            assert gen.CITY_COUNTRY[city].name == country
        if rec.meta["attribute"] == "phone":
            assert rec.meta["value"].split()[0] in {c.calling_code for c in gen.COUNTRIES}


def test_forget_people_never_reach_the_retain_models_training_data():
    from obliviate.world.recipe import training_records

    for profile in PROFILES:
        world = gen.generate_world(profile)
        retain_text = "\n".join(r.text if isinstance(r, TextRecord) else f"{r.question} {r.answer}"
                                for r in training_records(profile, "retain"))
        target_text = "\n".join(r.text if isinstance(r, TextRecord) else f"{r.question} {r.answer}"
                                for r in training_records(profile, "target"))
        for p in world.people_with("forget"):
            assert p.last not in retain_text and p.last in target_text  # surnames are unique to a person
        for p in world.people_with("holdout"):
            assert p.last not in target_text


def test_load_data_spec_matches_direct_split():
    assert load_data("world:micro:forget") == load_world_split("micro", "forget")
    assert all(isinstance(r, QARecord) for r in load_data("world:micro:world_facts"))


@pytest.mark.parametrize("spec,needle", [("world:nope:forget", "choose from full, micro"),
                                         ("world:micro:nope", "choose from forget, retain"),
                                         ("world:micro", "expected world:<profile>:<split>")])
def test_bad_names_give_one_line_errors(spec, needle):
    with pytest.raises(ObliviateError) as info:
        load_data(spec)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_export_writes_both_schemas_and_refuses_to_overwrite(tmp_path):
    from obliviate.world.export import export_world

    out = tmp_path / "world"
    files = export_world("micro", out)
    assert (out / "manifest.json") in files
    for split in SPLITS:
        assert load_records(out / "obliviate" / f"{split}.jsonl") == load_world_split("micro", split)
    # 4 of 16 trained people are forget people: TOFU-style names forget25 / retain75 / holdout25.
    perturbed = [json.loads(line) for line in (out / "tofu" / "forget25_perturbed.json").read_text().splitlines()]
    forget = load_world_split("micro", "forget")
    assert len(perturbed) == len(forget)
    assert set(perturbed[0]) == {"question", "answer", "paraphrased_answer", "perturbed_answer", "paraphrased_question"}
    assert perturbed[0]["perturbed_answer"] == list(forget[0].perturbed_answers)
    tofu_loaded = load_records(out / "tofu" / "forget25_perturbed.json")  # the TOFU aliases load unchanged
    assert [(r.question, r.answer, r.perturbed_answers) for r in tofu_loaded] == \
        [(r.question, r.answer, r.perturbed_answers) for r in forget]
    for name in ("retain75.json", "retain_perturbed.json", "holdout25.json", "full.json",
                 "world_facts_perturbed.json"):
        assert (out / "tofu" / name).is_file()
    with pytest.raises(ObliviateError, match="not empty"):
        export_world("micro", out)
    export_world("micro", out, overwrite=True)


def test_cli_show_and_export(tmp_path):
    from typer.testing import CliRunner

    from obliviate.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["world", "show", "--profile", "micro", "--person", "p001"])
    assert result.exit_code == 0, result.output
    assert "world:micro:forget" in result.output and "Q: " in result.output
    result = runner.invoke(app, ["world", "export", "--profile", "micro", "--out", str(tmp_path / "x")])
    assert result.exit_code == 0 and (tmp_path / "x" / "tofu" / "forget25.json").is_file()
