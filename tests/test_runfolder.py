"""RunFolder: the one owner of obliviate's folders; overwrite safety and format detection."""

from __future__ import annotations

import json
import os

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
    (tmp_path / "empty").mkdir()
    assert RunFolder.create(tmp_path / "empty", "audit").kind == "audit"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_read_only_parent_fails_before_any_work(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ObliviateError, match="not writable"):
            RunFolder.prepare(locked / "run", "run")
    finally:
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
