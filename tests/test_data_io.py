"""Record loading: every schema and format, and one-line errors naming file, record and field."""

from __future__ import annotations

import json

import pytest

from obliviate.data.io import load_records, write_records
from obliviate.data.records import QARecord, TextRecord
from obliviate.data.sources import load_data
from obliviate.errors import DataError, ObliviateError


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_jsonl_text_and_qa_records(tmp_path):
    path = _write(tmp_path, "mixed.jsonl", "\n".join([
        json.dumps({"id": "a", "prefix": "Hello", "target": " world", "source": "x"}),
        "",  # blank lines are allowed
        json.dumps({"id": 7, "question": "Who?", "answer": "Me", "perturbed_answer": ["You", "Them"],
                    "paraphrased_answer": "It is me"}),
        json.dumps({"text": "just text"}),
    ]))
    text, qa, plain = load_records(path)
    assert text == TextRecord(id="a", prefix="Hello", target=" world")
    assert text.meta == {"source": "x"}
    assert isinstance(qa, QARecord) and qa.id == "7" and qa.perturbed_answers == ("You", "Them")
    assert qa.paraphrased_answer == "It is me"
    assert plain.prefix == "" and plain.target == "just text" and plain.id == "2"


def test_aliases_of_published_schemas(tmp_path):
    path = _write(tmp_path, "aliases.jsonl", "\n".join([
        json.dumps({"id": "m", "prompt": "Once", "gt": " upon"}),  # MUSE verbmem
        json.dumps({"id": "r", "query": "Who wrote ___?", "answer": "King", "level": "1"}),  # RWKU
    ]))
    muse, rwku = load_records(path)
    assert (muse.prefix, muse.target) == ("Once", " upon")
    assert rwku.question == "Who wrote ___?" and rwku.meta == {"level": "1"}


def test_json_list_and_json_lines_named_json(tmp_path):
    as_list = _write(tmp_path, "list.json", json.dumps({"data": [{"id": 1, "prefix": "a", "target": "b"}]}))
    assert load_records(as_list)[0].target == "b"
    lines = _write(tmp_path, "tofu_like.json", '{"question": "Q1", "answer": "A1"}\n{"question": "Q2", "answer": "A2"}\n')
    assert [r.answer for r in load_records(lines)] == ["A1", "A2"]


def test_csv_records(tmp_path):
    path = _write(tmp_path, "data.csv", "id,prefix,target\nx,Hello,\" world, again\"\n")
    (rec,) = load_records(path)
    assert rec.target == " world, again"


def test_round_trip(tmp_path):
    records = [TextRecord("t", "p", "q", prefix_ids=(1, 2), target_ids=(3,), ids_tokenizer="abc"),
               QARecord("q", "Q?", "A.", paraphrased_answer="A!", perturbed_answers=("B.", "C."))]
    path = write_records(records, tmp_path / "out.jsonl")
    assert load_records(path) == records


@pytest.mark.parametrize(("name", "content", "expected"), [
    ("empty.jsonl", "", "empty.jsonl: holds no records"),
    ("bad.jsonl", '{"id": 1, "prefix": "a", "target": "b"}\n{"id": 2, "prefix": "a" "target": "b"}\n',
     "bad.jsonl, record 2 (line 2): malformed JSON"),
    ("types.jsonl", '{"id": "x", "prefix": "a", "target": 5}\n',
     "types.jsonl, record 1 (line 1), field 'target': must be a string, got int"),
    ("missing.jsonl", '{"id": "x", "prefix": "a"}\n', "missing.jsonl, record 1 (line 1), field 'target'"),
    ("noanswer.jsonl", '{"id": "x", "question": "Q"}\n', "noanswer.jsonl, record 1 (line 1), field 'answer'"),
    ("dup.jsonl", '{"id": "x", "text": "a"}\n{"id": "x", "text": "b"}\n',
     "dup.jsonl, record 2 (line 2), field 'id': duplicate id 'x' (first at record 1 (line 1))"),
    ("blank.jsonl", '{"id": "x", "prefix": "a", "target": ""}\n', "field 'target': is empty"),
    ("ids.jsonl", '{"id": "x", "prefix": "a", "target": "b", "target_ids": [1, -2], "ids_tokenizer": "f"}\n',
     "field 'target_ids': must be a list of non-negative token ids"),
    ("notobj.json", "[1, 2]", "notobj.json, record 0 (index 0): must be a JSON object, got int"),
    ("data.txt", "hello", "unsupported file type '.txt'"),
])
def test_bad_input_is_one_line_naming_the_place(tmp_path, name, content, expected):
    path = _write(tmp_path, name, content)
    with pytest.raises(DataError) as err:
        load_records(path)
    message = str(err.value)
    assert expected in message
    assert "\n" not in message


def test_missing_file_and_kind_check(tmp_path):
    with pytest.raises(DataError, match=r"nope\.jsonl: file not found"):
        load_records(tmp_path / "nope.jsonl")
    path = _write(tmp_path, "qa.jsonl", '{"question": "Q", "answer": "A"}\n')
    with pytest.raises(DataError, match="expected prefix/target text records, got a QARecord"):
        load_records(path, kind=TextRecord)


def test_builtin_specs(monkeypatch):
    monkeypatch.delenv("OBLIVIATE_PILE_DIR", raising=False)
    forget = load_data("demo:forget")
    assert len(forget) >= 4 and all(isinstance(r, TextRecord) for r in forget)
    with pytest.raises(ObliviateError, match="no such built-in demo split"):
        load_data("demo:nonsense")
    with pytest.raises(ObliviateError, match="give the benchmark folder"):
        load_data("pile:0")


@pytest.mark.parametrize(("name", "content", "message"), [
    ("latin1.jsonl", '{"id": "a", "prefix": "caf\xe9", "target": "x"}\n'.encode("latin-1"), "is not UTF-8 text"),
    ("binary.csv", bytes(range(256)) * 4, "is not UTF-8 text"),
    ("huge.csv", b"id,prefix,target\n1,a,\"" + b"x" * 200_000 + b"\"\n", "not a readable CSV file"),
    ("binary.json", b"\x89PNG\r\n\x1a\n\x00\x00", "is not UTF-8 text"),
])
def test_unreadable_files_are_one_line_errors(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        load_data(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_folders_and_misspelt_sources_say_what_is_wrong(tmp_path):
    with pytest.raises(DataError, match="is a folder, not a data file"):
        load_data(tmp_path)
    with pytest.raises(ObliviateError, match="did you mean demo:forget"):
        load_data("dmeo:forget")
