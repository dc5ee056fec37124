"""ULMR's restructured set: counts (each instruction rewritten twice), provenance, caching, editing,
regeneration with backup, and resuming after a kill."""

from __future__ import annotations

import json

import pytest

from obliviate.data.records import QARecord, TextRecord
from obliviate.errors import DataError, ObliviateError
from obliviate.ulmr.generators import Generator, GeneratorConfig, TemplateGenerator
from obliviate.ulmr.prompts import REWRITE_PROMPT
from obliviate.ulmr.restructure import (
    CACHE_FILE,
    META_FILE,
    PARTIAL_FILE,
    RestructureConfig,
    prepare_restructured,
    restructure_chunk,
)

FORGET = [QARecord(id=f"f{i}", question=f"What is fact number {i} about Alice?", answer=f"Fact {i} is secret.")
          for i in range(5)]


def test_each_instruction_is_rewritten_twice_and_every_line_says_who_made_it(tmp_path):
    out = prepare_restructured(tmp_path, FORGET, RestructureConfig())
    assert out.status == "generated" and len(out.records) == 3 * len(FORGET)
    rows = [json.loads(line) for line in (tmp_path / CACHE_FILE).read_text().splitlines()]
    for rec in FORGET:
        mine = [r for r in rows if r["source_id"] == rec.id]
        assert [r["kind"] for r in mine] == ["original", "rewrite-1", "rewrite-2"]
        assert mine[0]["question"] == rec.question and mine[0]["question_generator"] == "input"
        assert len({r["question"] for r in mine}) == 3  # two distinct rewrites + the original
        assert all(r["original_question"] == rec.question for r in mine)
        assert all(r["answer_generator"] == "template" and r["answer_prompt"].startswith("refusal:builtin#")
                   for r in mine)
        assert all(r["question_prompt"].startswith("template:paraphrase#") for r in mine[1:])
    meta = json.loads((tmp_path / META_FILE).read_text())
    assert meta["rows"] == 15 and meta["inputs"]["rewrites"] == 2 and meta["generator"]["name"] == "template"
    assert meta["inputs"]["rewrite_prompt"] == REWRITE_PROMPT
    assert not (tmp_path / PARTIAL_FILE).exists()
    # the records are QA records whose answer is the negative response
    assert all(isinstance(r, QARecord) for r in out.records)
    assert out.records[0].meta["kind"] == "original"

    no_orig = prepare_restructured(tmp_path / "b", FORGET, RestructureConfig(include_original=False, rewrites=3))
    assert len(no_orig.records) == 3 * len(FORGET)
    assert {r.meta["kind"] for r in no_orig.records} == {"rewrite-1", "rewrite-2", "rewrite-3"}


def test_cache_reuse_edits_kept_and_mismatch_refused(tmp_path):
    first = prepare_restructured(tmp_path, FORGET, RestructureConfig())
    assert prepare_restructured(tmp_path, FORGET, RestructureConfig()).status == "cached"

    # the user edits a line: the edit is used as-is, on every later run, whatever the settings
    path = tmp_path / CACHE_FILE
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[1]["answer"] = "Edited by hand: I have no idea."
    rows = rows[:-1]  # and deletes a line
    edited = "".join(json.dumps(r) + "\n" for r in rows)
    path.write_text(edited)
    for cfg in (RestructureConfig(), RestructureConfig(seed=5, rewrites=1)):
        again = prepare_restructured(tmp_path, FORGET, cfg)
        assert again.status == "edited" and len(again.records) == len(first.records) - 1
        assert again.records[1].answer == "Edited by hand: I have no idea."
    assert path.read_text() == edited  # never rewritten

    # an unedited cache made with other settings is not silently replaced
    other = tmp_path / "other"
    prepare_restructured(other, FORGET, RestructureConfig())
    with pytest.raises(ObliviateError, match=r"other forget data or generator settings \(forget: .*--regenerate"):
        prepare_restructured(other, FORGET[:3], RestructureConfig())
    with pytest.raises(ObliviateError, match="seed: 0 -> 1"):
        prepare_restructured(other, FORGET, RestructureConfig(seed=1))
    # ... unless asked: the old file is kept as a backup
    before = (other / CACHE_FILE).read_text()
    regen = prepare_restructured(other, FORGET[:3], RestructureConfig(), regenerate=True)
    assert regen.status == "generated" and len(regen.records) == 9
    assert (other / f"{CACHE_FILE}.bak").read_text() == before

    # regenerating over a hand-edited file also keeps it
    prepare_restructured(tmp_path, FORGET, RestructureConfig(), regenerate=True)
    assert (tmp_path / f"{CACHE_FILE}.bak").read_text() == edited


def test_hand_written_file_and_bad_edits(tmp_path):
    path = tmp_path / CACHE_FILE
    path.write_text('{"id": "a", "question": "Who is Alice?", "answer": "No idea."}\n')
    out = prepare_restructured(tmp_path, FORGET, RestructureConfig())
    assert out.status == "user-file" and [r.answer for r in out.records] == ["No idea."]
    path.write_text('{"id": "a", "question": "Who is Alice?", "answer": "No idea."}\n'
                    '{"id": "b", "question": "Who is Bob?", "answer": "   "}\n')
    with pytest.raises(DataError, match=r"restructured.jsonl, record b, field 'answer': is empty"):
        prepare_restructured(tmp_path, FORGET, RestructureConfig())
    path.write_text('{"id": "a", "question": "Who?"}\n')
    with pytest.raises(DataError, match=r"line 1.*answer"):
        prepare_restructured(tmp_path, FORGET, RestructureConfig())


def test_text_records_are_refused_with_a_clear_error(tmp_path):
    with pytest.raises(DataError, match=r"record t1, field 'question'.*question/answer"):
        prepare_restructured(tmp_path, [TextRecord(id="t1", prefix="", target="some text")], RestructureConfig())


class _Dies(TemplateGenerator):
    """Raises after ``ok`` chunks, like a run killed in the middle."""

    def __init__(self, ok: int):
        super().__init__()
        self.ok, self.calls = ok, 0

    def negative(self, instructions, *, prompt, seed):
        self.calls += 1
        if self.calls > self.ok:
            raise KeyboardInterrupt
        return super().negative(instructions, prompt=prompt, seed=seed)


def test_generation_resumes_after_a_kill(tmp_path):
    cfg = RestructureConfig(chunk_size=2)
    full = prepare_restructured(tmp_path / "full", FORGET, cfg)
    dying = _Dies(ok=2)
    with pytest.raises(KeyboardInterrupt):
        prepare_restructured(tmp_path / "run", FORGET, cfg, generator=dying)
    partial = (tmp_path / "run" / PARTIAL_FILE).read_text().splitlines()
    assert len(partial) == 2 * 2 * 3 and not (tmp_path / "run" / CACHE_FILE).exists()

    class Counting(TemplateGenerator):
        def __init__(self):
            super().__init__()
            self.seen: list[str] = []

        def rewrite(self, instructions, *, n, prompt, seed):
            self.seen.extend(instructions)
            return super().rewrite(instructions, n=n, prompt=prompt, seed=seed)

    counting = Counting()
    resumed = prepare_restructured(tmp_path / "run", FORGET, cfg, generator=counting)
    assert counting.seen == [FORGET[4].question]  # only the unfinished chunk was generated
    assert [(r.id, r.question, r.answer) for r in resumed.records] == \
        [(r.id, r.question, r.answer) for r in full.records]


def test_custom_generator_plugs_in(tmp_path):
    class Shouty(Generator):
        name = "shouty"

        def rewrite(self, instructions, *, n, prompt, seed):
            from obliviate.ulmr.generators import Generation
            return [[Generation(x.upper() + "!" * (k + 1), self.name, "shout") for k in range(n)] for x in instructions]

        def negative(self, instructions, *, prompt, seed):
            from obliviate.ulmr.generators import Generation
            return [Generation("NO.", self.name, "shout") for _ in instructions]

    rows = restructure_chunk([("a", "who?")], Shouty(), RestructureConfig())
    assert [(r["question"], r["answer"]) for r in rows] == [("who?", "NO."), ("WHO?!", "NO."), ("WHO?!!", "NO.")]
    out = prepare_restructured(tmp_path, FORGET, RestructureConfig(), generator=Shouty())
    assert json.loads((tmp_path / META_FILE).read_text())["generator"] == {"name": "shouty"}
    assert out.records[1].meta["question_generator"] == "shouty"


def test_model_generator_through_the_config(tmp_path, tiny_model, tiny_tokenizer):
    cfg = RestructureConfig(generator=GeneratorConfig(kind="model", max_new_tokens=4))
    out = prepare_restructured(tmp_path, FORGET[:2], cfg, model=tiny_model, tokenizer=tiny_tokenizer,
                               model_name="tiny")
    assert len(out.records) == 6
    for r in out.records:  # the model's output, or a template fallback that says so
        assert (r.meta["answer_generator"], r.meta["answer_prompt"]) == ("model:tiny", "ulmr:negative_prompt") \
            or "fallback" in r.meta["note"]
    meta = json.loads((tmp_path / META_FILE).read_text())
    assert meta["generator"]["name"] == "model:tiny"
    # same model name -> cached; another model being unlearned -> refused (not silently reused)
    assert prepare_restructured(tmp_path, FORGET[:2], cfg, model_name="tiny").status == "cached"
    with pytest.raises(ObliviateError, match=r"generator\.model: 'tiny' -> 'another-model'"):
        prepare_restructured(tmp_path, FORGET[:2], cfg, model_name="another-model")


def test_cli_prepare_then_edit(tmp_path, shared_data):
    from typer.testing import CliRunner

    from obliviate.cli import app

    runner = CliRunner()
    out = tmp_path / "run"
    args = ["ulmr", "prepare", "--forget", "world:micro:forget", "--out", str(out), "--show", "2",
            "--refusals", str(shared_data / "tofu" / "idontknow.jsonl")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "120 restructured examples" in result.output and "[rewrite-1]" in result.output
    rows = [json.loads(line) for line in (out / CACHE_FILE).read_text().splitlines()]
    assert all(r["answer_prompt"].startswith("refusal:idontknow.jsonl#") for r in rows)
    assert "reused" in runner.invoke(app, args).output
    # other settings on an unedited file: refused, naming what differs
    other = runner.invoke(app, ["ulmr", "prepare", "--forget", "world:micro:forget", "--out", str(out)])
    assert isinstance(other.exception, ObliviateError) and "generator.refusals" in str(other.exception)
    # after an edit, any settings use the file as-is
    path = out / CACHE_FILE
    path.write_text(path.read_text().replace(rows[0]["answer"], "EDITED", 1))
    edited = runner.invoke(app, ["ulmr", "prepare", "--forget", "world:micro:forget", "--out", str(out)])
    assert edited.exit_code == 0 and "edited file, used as-is" in edited.output and "EDITED" in edited.output
