"""Write a world's splits to disk: obliviate's JSONL record schema and TOFU's JSON schema.

Layout of ``out``::

    manifest.json                    profile, versions, split sizes, file list
    obliviate/<split>.jsonl          every split of ``obliviate.world.SPLITS`` (load_records reads them)
    tofu/forget{P}.json              question, answer                       (TOFU forget10 for 'full')
    tofu/forget{P}_perturbed.json    + paraphrased_answer, perturbed_answer, paraphrased_question
    tofu/retain{100-P}.json          question, answer                       (retain90)
    tofu/retain_perturbed.json       the retain_eval split, all five fields
    tofu/holdout{P}.json             question, answer                       (holdout10)
    tofu/full.json                   forget + retain, question, answer
    tofu/world_facts_perturbed.json  question, answer, perturbed_answer

TOFU files are JSON lines under a ``.json`` name, as on the Hugging Face hub.
"""

from __future__ import annotations

import json
from pathlib import Path

from obliviate.data.io import atomic_write_text, write_json, write_records
from obliviate.data.records import QARecord
from obliviate.errors import ObliviateError
from obliviate.world import SPLITS, get_profile, load_world_split
from obliviate.world.generator import GENERATOR_VERSION

TOFU_FIELDS = ("question", "answer", "paraphrased_answer", "perturbed_answer", "paraphrased_question")


def tofu_row(record: QARecord, fields: tuple[str, ...] = TOFU_FIELDS) -> dict:
    row = {"question": record.question, "answer": record.answer,
           "paraphrased_answer": record.paraphrased_answer, "perturbed_answer": list(record.perturbed_answers),
           "paraphrased_question": record.paraphrased_question}
    return {k: row[k] for k in fields}


def _write_tofu(path: Path, records: list, fields: tuple[str, ...]) -> None:
    lines = [json.dumps(tofu_row(r, fields), ensure_ascii=False) for r in records]
    atomic_write_text(path, "\n".join(lines) + "\n")


def export_world(profile: str, out: str | Path, *, overwrite: bool = False) -> list[Path]:
    """Write every split of ``profile`` under ``out``; returns the files written."""
    spec = get_profile(profile)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ObliviateError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ObliviateError(f"{out}: folder is not empty; pass --overwrite to replace the world files in it")
    splits = {name: load_world_split(profile, name) for name in SPLITS}
    written = [write_records(records, out / "obliviate" / f"{name}.jsonl") for name, records in splits.items()]

    pct = round(100 * spec.n_forget / (spec.n_forget + spec.n_retain))
    qa_only = ("question", "answer")
    tofu = {
        f"forget{pct:02d}.json": (splits["forget"], qa_only),
        f"forget{pct:02d}_perturbed.json": (splits["forget"], TOFU_FIELDS),
        f"retain{100 - pct:02d}.json": (splits["retain"], qa_only),
        "retain_perturbed.json": (splits["retain_eval"], TOFU_FIELDS),
        f"holdout{pct:02d}.json": (splits["holdout"], qa_only),
        "full.json": (splits["forget"] + splits["retain"], qa_only),
        "world_facts_perturbed.json": (splits["world_facts"], ("question", "answer", "perturbed_answer")),
    }
    for name, (records, fields) in tofu.items():
        _write_tofu(out / "tofu" / name, records, fields)
        written.append(out / "tofu" / name)

    manifest = out / "manifest.json"
    write_json(manifest, {
        "profile": profile, "generator_version": GENERATOR_VERSION,
        "splits": {name: len(records) for name, records in splits.items()},
        "forget_percent": pct,
        "files": [str(p.relative_to(out)) for p in written],
    })
    return [*written, manifest]
