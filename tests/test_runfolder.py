"""RunFolder: the one owner of obliviate's folders; overwrite safety and format detection."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from obliviate.errors import ObliviateError
from obliviate.runfolder import MARKER, RunFolder, kind_of, safe_output_file


def test_modes_and_marker(tmp_path):
    path = tmp_path / "run"
    folder = RunFolder.prepare(path, "run")
    assert not path.exists()  # prepare only checks
    folder.begin().write_text(RunFolder.CONFIG, "x: 1\n")
    assert kind_of(path) == "run" and json.loads((path / MARKER).read_text())["format"] == "obliviate-run/1"
    with pytest.raises(ObliviateError, match="already holds an obliviate run; pass --resume"):
        RunFolder.prepare(path, "run")
    assert RunFolder.prepare(path, "run", resume=True).begin().path == path
    assert (path / RunFolder.CONFIG).exists()
    again = RunFolder.prepare(path, "run", overwrite=True)
    assert (path / RunFolder.CONFIG).exists()  # nothing replaced before begin()
    again.begin()
    assert not (path / RunFolder.CONFIG).exists() and kind_of(path) == "run"
    assert not any(p.name.startswith(".run.") for p in tmp_path.iterdir())  # the old run is gone, not parked
    with pytest.raises(ObliviateError, match="nothing to resume"):
        RunFolder.prepare(tmp_path / "fresh", "run", resume=True)
    with pytest.raises(ObliviateError, match="holds an obliviate run, not a audit"):
        RunFolder.prepare(path, "audit", resume=True)


def test_foreign_folders_and_files_are_refused(tmp_path):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "train.py").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(ObliviateError, match="obliviate did not write") as info:
            RunFolder.prepare(proj, "run", overwrite=overwrite)
        assert "--overwrite" not in str(info.value)
    with pytest.raises(ObliviateError, match="obliviate did not write"):
        RunFolder.claim(proj, "run")
    assert [p.name for p in proj.iterdir()] == ["train.py"]
    (tmp_path / "file").write_text("data")
    with pytest.raises(ObliviateError, match="is a file, not a folder"):
        RunFolder.prepare(tmp_path / "file", "eval")
    with pytest.raises(ObliviateError, match="is a file, not a folder"):  # --out below a file
        RunFolder.prepare(tmp_path / "file" / "run", "run")
    assert (tmp_path / "file").read_text() == "data"
    (tmp_path / "empty").mkdir()
    assert RunFolder.create(tmp_path / "empty", "audit").kind == "audit"


def test_read_only_parent_fails_before_any_work(tmp_path):
    if os.geteuid() == 0:  # root may write to any mode-0500 folder; a pseudo file system refuses it too
        locked = Path("/sys")
        if not locked.is_dir():
            pytest.skip("no read-only place for root on this machine")
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
    try:
        with pytest.raises(ObliviateError, match="not writable"):
            RunFolder.prepare(locked / "obliviate-run", "run")
        assert not (locked / "obliviate-run").exists()
    finally:
        if locked != Path("/sys"):
            locked.chmod(0o700)


def test_format_field_tells_kinds_apart_and_newer_formats_are_refused(tmp_path):
    run = RunFolder.create(tmp_path / "r", "run")
    run.write_summary({"method": "icu"})
    assert run.read_summary() == {"format": "obliviate-run/1", "method": "icu"}
    (tmp_path / "r" / MARKER).unlink()  # the summary's format field alone still identifies it
    assert kind_of(tmp_path / "r") == "run"
    assert RunFolder.open(tmp_path / "r", "run").finished
    with pytest.raises(ObliviateError, match="not an obliviate eval"):
        RunFolder.open(tmp_path / "r", "eval")
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "summary.json").write_text('{"method": "icu"}')  # no format: not guessed from file names
    assert kind_of(legacy) is None
    (legacy / "summary.json").write_text('{"format": "obliviate-run/99"}')
    with pytest.raises(ObliviateError, match="newer obliviate"):
        kind_of(legacy)


def test_safe_output_file(tmp_path):
    data = tmp_path / "data.csv"
    data.write_text("id,text\n1,hello\n")
    with pytest.raises(ObliviateError, match="not written by obliviate"):
        safe_output_file(data)
    assert safe_output_file(data, overwrite=True) == data
    ours = tmp_path / "table.csv"
    ours.write_text("run,reference,kind,path,ma\n")
    assert safe_output_file(ours) == ours
    with pytest.raises(ObliviateError, match="is a folder"):
        safe_output_file(tmp_path)


def test_redaction_keeps_ids_numbers_and_hashes(tmp_path):
    from obliviate.protocols.base import EvalResult, read_per_sample, write_eval
    from obliviate.runfolder import redact

    row = {"id": "p1", "prompt": "Where was Ada born?", "generation": "Ada was born in Lyon.", "ma": 0.5,
           "generation_before": "Lyon", "sha256": "ab12", "nested": {"reference": ["Lyon", "Paris"]}}
    out = redact(row)
    assert (out["id"], out["ma"], out["sha256"]) == ("p1", 0.5, "ab12")
    assert out["prompt"].startswith("<redacted: 19 chars, sha256 ") and "Lyon" not in json.dumps(out)
    assert redact({"generation": "x"}) == redact({"generation": "x"}) != redact({"generation": "y"})
    write_eval(tmp_path / "ev", EvalResult("t", {"forget/ma": 0.5}, rows=[row]), model="m", label="m", redact=True)
    assert "Lyon" not in (tmp_path / "ev" / "per_sample.jsonl").read_text()
    assert read_per_sample(tmp_path / "ev")[0]["ma"] == 0.5 and RunFolder.open(tmp_path / "ev").redact
