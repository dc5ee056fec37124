"""Build, cache and reload ULMR's restructured forget set D_fr (§3.1, Algorithm 1 steps 1-4).

For every forget instruction x_i the generator writes ``rewrites`` (paper: 2) rewritten
instructions with the rewrite prompt; the instruction set is x_r = {x'_1, x'_2, x_i} (the paper's
notation keeps the original), and every instruction in it gets a negative response from the
negative prompt. Each (instruction, negative response) pair is one SFT example.

The set is written to ``<folder>/restructured.jsonl``, one QA record per line, with the
generator and prompt that made its question and its answer::

    {"id": "f3:rewrite-1", "question": "...", "answer": "I don't know ...", "source_id": "f3",
     "kind": "rewrite-1", "original_question": "...", "question_generator": "template",
     "question_prompt": "template:paraphrase#2", "answer_generator": "template",
     "answer_prompt": "refusal:builtin#17", "note": ""}

Caching rules (``restructured.meta.json`` keeps a fingerprint of the inputs and the file's hash):

* unchanged file, same inputs -> reused;
* the file was edited (hash differs) or was put there by hand (no meta) -> used as-is, never
  regenerated or overwritten;
* unchanged file but other forget data / generator / prompts -> error: pass ``regenerate=True``
  (``--regenerate``), which keeps the old file as ``restructured.jsonl.bak``;
* generation is written chunk by chunk to ``restructured.partial.jsonl``; a killed run resumes
  from the last finished chunk.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from obliviate.data.io import atomic_write_text, load_records, read_json, write_json
from obliviate.data.records import QARecord, Record
from obliviate.errors import DataError, ObliviateError
from obliviate.ulmr.generators import (
    Generation,
    Generator,
    GeneratorConfig,
    build_generator,
    generator_config_key,
)
from obliviate.ulmr.prompts import NEGATIVE_PROMPT, REWRITE_PROMPT

log = logging.getLogger(__name__)

CACHE_FILE = "restructured.jsonl"
META_FILE = "restructured.meta.json"
PARTIAL_FILE = "restructured.partial.jsonl"
PARTIAL_META_FILE = "restructured.partial.meta.json"


@dataclass
class RestructureConfig:
    rewrites: int = field(default=2, metadata={"help": "§3.1: \"We rewrite each instruction x_i twice\""})
    include_original: bool = field(default=True, metadata={
        "help": "x_r = {x_1, x_2, x_i}: the original instruction stays in the set"})
    rewrite_prompt: str = field(default=REWRITE_PROMPT, metadata={"help": "Table 1"})
    negative_prompt: str = field(default=NEGATIVE_PROMPT, metadata={"help": "Table 2"})
    seed: int = field(default=0, metadata={"help": "generation seed (rewrites are sampled)"})
    chunk_size: int = field(default=16, metadata={"help": "forget items per resumable step"})
    generator: GeneratorConfig = field(default_factory=GeneratorConfig, metadata={"help": "who writes rewrites and negative responses"})


@dataclass
class Restructured:
    records: list[QARecord]
    path: Path
    status: Literal["generated", "cached", "edited", "user-file"]

    def summary(self) -> str:
        how = {"generated": "generated now", "cached": "reused (unchanged cache)",
               "edited": "your edited file, used as-is", "user-file": "your file (no meta), used as-is"}
        return f"{len(self.records)} restructured examples in {self.path} ({how[self.status]})"


def forget_instructions(records: Sequence[Record]) -> list[tuple[str, str]]:
    """(id, instruction) of each forget record; ULMR rewrites instructions, so it needs QA data."""
    out = []
    for rec in records:
        if not isinstance(rec, QARecord):
            raise DataError("<forget data>", "ULMR rewrites instructions and needs question/answer records "
                            "(TOFU-style); got a prefix/target text record", record=rec.id, field="question")
        if not rec.question.strip():
            raise DataError("<forget data>", "is empty", record=rec.id, field="question")
        out.append((rec.id, rec.question))
    if not out:
        raise ObliviateError("ULMR: the forget set is empty")
    return out


def restructure_chunk(items: Sequence[tuple[str, str]], generator: Generator, cfg: RestructureConfig,
                      chunk_index: int = 0) -> list[dict[str, Any]]:
    """The restructured rows for some forget items (pure apart from the generator's sampling)."""
    seed = cfg.seed + 7919 * chunk_index  # fixed per chunk, so a resumed run draws the same seeds
    instructions = [x for _, x in items]
    rewrites = generator.rewrite(instructions, n=cfg.rewrites, prompt=cfg.rewrite_prompt, seed=seed) \
        if cfg.rewrites > 0 else [[] for _ in items]
    questions: list[tuple[str, str, str, Generation]] = []  # (source id, original, kind, question)
    for (sid, x), rws in zip(items, rewrites):
        if len(rws) != cfg.rewrites:
            raise ObliviateError(f"generator {generator.name!r} returned {len(rws)} rewrites for {sid!r}, "
                                 f"expected {cfg.rewrites}")
        if cfg.include_original:
            questions.append((sid, x, "original", Generation(x, "input", "input")))
        questions.extend((sid, x, f"rewrite-{k}", g) for k, g in enumerate(rws, 1))
    negatives = generator.negative([q.text for *_, q in questions], prompt=cfg.negative_prompt, seed=seed + 1)
    rows = []
    for (sid, x, kind, q), neg in zip(questions, negatives, strict=True):
        rows.append({"id": f"{sid}:{kind}", "question": q.text, "answer": neg.text, "source_id": sid,
                     "kind": kind, "original_question": x, "question_generator": q.generator,
                     "question_prompt": q.prompt, "answer_generator": neg.generator, "answer_prompt": neg.prompt,
                     "note": "; ".join(n for n in (q.note, neg.note) if n)})
    return rows


def cache_inputs(items: Sequence[tuple[str, str]], cfg: RestructureConfig,
                 generator_key: dict[str, Any]) -> dict[str, Any]:
    """What a cached file is made from: forget data (hashed), prompts, counts, seed, generator."""
    forget = hashlib.sha256(json.dumps(list(items), ensure_ascii=False).encode()).hexdigest()[:16]
    return {"forget": f"{len(items)} items, sha256 {forget}", "rewrites": cfg.rewrites,
            "include_original": cfg.include_original, "rewrite_prompt": cfg.rewrite_prompt,
            "negative_prompt": cfg.negative_prompt, "seed": cfg.seed,
            **{f"generator.{k}": v for k, v in generator_key.items()}}


def fingerprint(inputs: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:20]


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys[:3]) or "?"


def file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _backup(path: Path) -> Path:
    backup = path.with_name(path.name + ".bak")
    n = 2
    while backup.exists():
        backup = path.with_name(f"{path.name}.bak{n}")
        n += 1
    os.replace(path, backup)
    return backup


def load_restructured(path: str | os.PathLike) -> list[QARecord]:
    """Read a restructured file (also a hand-edited one); errors name the line and field."""
    records = load_records(path, kind=QARecord)
    for rec in records:
        for name, value in (("question", rec.question), ("answer", rec.answer)):
            if not value.strip():
                raise DataError(path, "is empty", record=rec.id, field=name)
    return records  # type: ignore[return-value]


def prepare_restructured(folder: str | os.PathLike, records: Sequence[Record], cfg: RestructureConfig, *,
                         generator: Generator | None = None, model: Any = None, tokenizer: Any = None,
                         model_name: str = "model", regenerate: bool = False) -> Restructured:
    """Return D_fr from ``folder``'s cache, or generate it there (see the module docstring).

    ``generator`` plugs in any ``Generator``; without it one is built from ``cfg.generator``
    (only when something must be generated), with ``model``/``tokenizer`` as the model being
    unlearned for ``kind="model"``.
    """
    folder = Path(folder)
    path, meta_path = folder / CACHE_FILE, folder / META_FILE
    items = forget_instructions(records)
    if generator is not None:
        gen_key = generator.describe()
    else:
        gen_key = generator_config_key(cfg.generator)
        if cfg.generator.kind == "model" and cfg.generator.model is None:
            gen_key["model"] = model_name
        if cfg.generator.kind == "template" and cfg.generator.refusals:  # the file's content, not its path
            gen_key["refusals"] = file_sha(Path(cfg.generator.refusals))[:16]
    inputs = cache_inputs(items, cfg, gen_key)
    fp = fingerprint(inputs)

    if path.exists() and not regenerate:
        meta = read_json(meta_path) if meta_path.is_file() else None
        if meta is None:
            log.info("%s has no %s: treating it as your own file, used as-is", path, META_FILE)
            return Restructured(load_restructured(path), path, "user-file")
        if file_sha(path) != meta.get("sha256"):
            log.info("%s was edited since it was generated: using your edits as-is", path)
            return Restructured(load_restructured(path), path, "edited")
        if meta.get("fingerprint") != fp:
            raise ObliviateError(
                f"{path} was generated for other forget data or generator settings "
                f"({_differences(meta.get('inputs', {}), inputs)}); use the same settings, edit the file "
                "(an edited file is used as-is), or pass --regenerate (regenerate=True; the old file is kept as .bak)")
        return Restructured(load_restructured(path), path, "cached")

    if path.exists():  # regenerate=True: explicit, but never lose the old (maybe hand-edited) file
        log.warning("regenerating %s; the previous file is kept as %s", path, _backup(path).name)
    folder.mkdir(parents=True, exist_ok=True)
    gen = generator if generator is not None else build_generator(cfg.generator, model=model, tokenizer=tokenizer,
                                                                  model_name=model_name)
    rows = _generate_resumable(folder, items, gen, cfg, fp)
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    atomic_write_text(path, text)
    write_json(meta_path, {"fingerprint": fp, "sha256": file_sha(path), "rows": len(rows), "forget_items": len(items),
                           "generator": gen.describe(), "inputs": inputs})
    (folder / PARTIAL_FILE).unlink(missing_ok=True)
    (folder / PARTIAL_META_FILE).unlink(missing_ok=True)
    return Restructured(load_restructured(path), path, "generated")


def _generate_resumable(folder: Path, items: Sequence[tuple[str, str]], generator: Generator,
                        cfg: RestructureConfig, fp: str) -> list[dict[str, Any]]:
    """Generate chunk by chunk, appending to a partial file that a later call resumes from."""
    from obliviate.utils import progress

    partial, partial_meta = folder / PARTIAL_FILE, folder / PARTIAL_META_FILE
    done: list[dict[str, Any]] = []
    same = partial_meta.is_file() and read_json(partial_meta) == {"fingerprint": fp, "chunk_size": cfg.chunk_size}
    if partial.is_file() and same:
        with partial.open(encoding="utf-8") as fh:
            for line in fh:
                try:
                    done.append(json.loads(line))
                except json.JSONDecodeError:  # a line cut off by the kill: redo its chunk
                    break
        finished = {r["source_id"] for r in done}
        # keep only whole chunks (a chunk's rows are written in one go, but be safe)
        n_chunks = sum(1 for c in range(0, len(items), cfg.chunk_size)
                       if all(sid in finished for sid, _ in items[c:c + cfg.chunk_size]))
        keep = {sid for sid, _ in items[:n_chunks * cfg.chunk_size]}
        done = [r for r in done if r["source_id"] in keep]
        if done:
            log.info("resuming restructuring: %d of %d forget items already done", len(keep), len(items))
    else:
        n_chunks = 0
    atomic_write_text(partial, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in done))
    write_json(partial_meta, {"fingerprint": fp, "chunk_size": cfg.chunk_size})
    starts = list(range(n_chunks * cfg.chunk_size, len(items), cfg.chunk_size))
    with partial.open("a", encoding="utf-8") as fh:
        for start in progress(starts, desc="ULMR restructuring", total=len(starts)):
            rows = restructure_chunk(items[start:start + cfg.chunk_size], generator, cfg, start // cfg.chunk_size)
            fh.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
            fh.flush()
            done.extend(rows)
    return done
