"""Data in the forms users have it: Parquet, save_to_disk folders, hub ids, datasets.Dataset objects."""

from __future__ import annotations

import json
import time

import datasets
import pytest

from obliviate.data import hf
from obliviate.data.io import load_records
from obliviate.data.records import QARecord
from obliviate.data.sources import as_records, load_data
from obliviate.errors import DataError, ObliviateError

# One record per published schema (TOFU QA with perturbed answers, MUSE verbmem, RWKU query, plain text).
ROWS = [
    {"question": "Who wrote 'Romeo and Juliet'?", "answer": "William Shakespeare",
     "paraphrased_answer": "Shakespeare did", "perturbed_answer": ["Charles Dickens", "Mark Twain"]},
    {"id": "muse-0", "prompt": "Harry looked at", "gt": " the Dursleys — «ünïcode» 日本語"},
    {"id": "rwku-1", "query": "Who is ___?", "answer": "Ulla", "level": "1"},
    {"id": "txt", "text": "a long record " * 50},
]


@pytest.fixture
def jsonl(tmp_path):
    path = tmp_path / "forget.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS), encoding="utf-8")
    return path


def _dataset(rows):
    # Columns a row lacks become None, as in any Arrow table built from mixed records.
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return datasets.Dataset.from_dict({k: [r.get(k) for r in rows] for k in keys})


def test_parquet_and_saved_folder_load_the_jsonl_records(jsonl, tmp_path):
    expected = load_records(jsonl)
    ds = _dataset(ROWS)
    ds.to_parquet(str(tmp_path / "forget.parquet"))
    ds.save_to_disk(str(tmp_path / "saved"))
    assert load_data(tmp_path / "forget.parquet") == expected
    assert load_data(str(tmp_path / "saved")) == expected
    assert as_records(ds) == expected
    assert isinstance(expected[0], QARecord) and expected[0].perturbed_answers == ("Charles Dickens", "Mark Twain")
    assert expected[2].meta == {"level": "1"}


def test_tofu_file_round_trips_through_every_form(shared_data, tmp_path):
    path = shared_data / "tofu" / "real_authors_perturbed.json"
    expected = load_records(path)
    ds = datasets.Dataset.from_json(str(path), cache_dir=str(tmp_path / "cache"))
    ds.to_parquet(str(tmp_path / "tofu.parquet"))
    datasets.DatasetDict({"forget": ds}).save_to_disk(str(tmp_path / "dict"))
    assert load_data(tmp_path / "tofu.parquet") == expected
    assert load_data(tmp_path / "dict" / "forget") == expected
    assert as_records(ds) == expected
    with pytest.raises(DataError, match=r"saved DatasetDict with splits forget; give one split's folder"):
        load_data(tmp_path / "dict")


def test_dataset_errors_name_source_row_and_field(tmp_path):
    ds = datasets.Dataset.from_dict({"id": ["a", "b"], "prefix": ["p", "q"], "target": ["x", ""]})
    with pytest.raises(DataError, match=r"^<datasets.Dataset>, record 1 \(row 1\), field 'target': is empty$"):
        as_records(ds)
    ds.to_parquet(str(tmp_path / "bad.parquet"))
    with pytest.raises(DataError, match=r"bad.parquet, record 1 \(row 1\), field 'target': is empty"):
        load_data(tmp_path / "bad.parquet")
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(DataError, match=r"junk.parquet: not a readable Parquet file"):
        load_data(tmp_path / "junk.parquet")
    with pytest.raises(DataError, match=r"pick one split"):
        as_records(datasets.DatasetDict({"train": ds}))


def test_parquet_leaves_no_copy_in_the_datasets_cache(jsonl, tmp_path, monkeypatch):
    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    _dataset(ROWS).to_parquet(str(tmp_path / "forget.parquet"))
    assert len(load_data(tmp_path / "forget.parquet")) == len(ROWS)
    assert not cache.exists() or not any(cache.rglob("*.arrow"))


def test_hub_spec_parsing():
    assert hf.parse_hub_spec("locuslab/TOFU:forget10") == ("locuslab/TOFU", "forget10", "train")
    assert hf.parse_hub_spec("cais/wmdp") == ("cais/wmdp", None, "train")
    assert hf.parse_hub_spec("jinzhuoran/RWKU:forget_target:test") == ("jinzhuoran/RWKU", "forget_target", "test")
    with pytest.raises(ObliviateError, match="expected hf:<repo>"):
        hf.parse_hub_spec("a:b:c:d")


def test_hub_id_offline_fails_at_once_saying_data_must_be_local(monkeypatch):
    monkeypatch.setattr(hf.hub_constants, "HF_HUB_OFFLINE", True)
    started = time.perf_counter()
    with pytest.raises(ObliviateError) as err:
        load_data("hf:locuslab/TOFU:forget10")
    assert time.perf_counter() - started < 10
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("hf:locuslab/TOFU:forget10: offline")
    assert "the data must be local" in msg and "save_to_disk" in msg


def test_hub_id_unreachable_fails_at_once_without_retries(monkeypatch):
    # Not in offline mode, but the hub cannot be reached (port 9 on localhost refuses at once).
    monkeypatch.setattr(hf.hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf.hub_constants, "ENDPOINT", "http://127.0.0.1:9")
    started = time.perf_counter()
    with pytest.raises(ObliviateError, match=r"cannot be reached; the data must be local"):
        load_data("hf:locuslab/TOFU:forget10")
    assert time.perf_counter() - started < 5


def test_audit_takes_a_dataset_with_gpt2_bpe(shared_data, tiny_model):
    from obliviate.auditing import audit
    from obliviate.data.pile import load_gpt2_tokenizer

    tok = load_gpt2_tokenizer(shared_data / "gpt2-tokenizer")
    model = tiny_model.__class__(tiny_model.config.__class__(**{**tiny_model.config.to_dict(),
                                                                "vocab_size": len(tok)})).eval()
    rows = [r for r in ROWS if "question" not in r]  # MUSE, RWKU and plain rows: unicode, a long record
    by_dataset = audit(model, tok, _dataset(rows), metrics="ma")
    assert by_dataset.rows == audit(model, tok, load_records_of(rows), metrics="ma").rows
    assert [r["id"] for r in by_dataset.rows] == ["muse-0", "rwku-1", "txt"]


def load_records_of(rows):
    from obliviate.data.io import parse_record

    return [parse_record(r, index=i) for i, r in enumerate(rows)]


def test_cli_hub_id_offline_is_a_one_line_error(monkeypatch, capsys, tmp_path):
    import sys

    from obliviate.cli import main

    monkeypatch.setattr(hf.hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(sys, "argv", ["obliviate", "audit", "--model", "world-micro-target", "--data",
                                      "hf:locuslab/TOFU:forget10", "--out", str(tmp_path / "audit")])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and "\n" not in err and "Traceback" not in err
    assert err.startswith("error: hf:locuslab/TOFU:forget10: offline") and "the data must be local" in err
    assert not (tmp_path / "audit").exists()


def test_hub_spec_loads_through_load_dataset_from_a_local_clone(jsonl, tmp_path, monkeypatch):
    # A hub dataset repository cloned locally (offline): hf:<folder>[:<config>[:<split>]] reads it through
    # datasets.load_dataset, split "train" by default.
    monkeypatch.setattr(hf.hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    repo = tmp_path / "TOFU"
    (repo / "data").mkdir(parents=True)
    _dataset(ROWS).to_parquet(str(repo / "data" / "train-00000-of-00001.parquet"))
    _dataset(ROWS[:1]).to_parquet(str(repo / "data" / "test-00000-of-00001.parquet"))
    assert load_data(f"hf:{repo}") == load_records(jsonl)
    assert load_data(f"hf:{repo}::test") == load_records(jsonl)[:1]
    with pytest.raises(ObliviateError, match=r"^hf:.*: .*split"):
        load_data(f"hf:{repo}::validation")
