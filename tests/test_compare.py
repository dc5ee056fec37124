"""`obliviate compare`: Table I from run / evaluation folders -- golden against the ICU paper."""

from __future__ import annotations

import csv
import io
import json

import pytest

from obliviate.compare import build_table, compare, format_value, load_rows, to_csv, to_markdown, to_rich
from obliviate.errors import ObliviateError
from obliviate.protocols.base import EvalResult, read_eval, write_eval
from obliviate.runfolder import RunFolder

# ICU paper, Table I, 125M block; "NEO (before unlearning)" is the reference row. KUMPR's PPLs print
# as ">1000" in the paper: any value above 1000 counts as 1000 in the normalisation.
PAPER = {
    "NEO (before unlearning)": [51.9, 76.8, 70.3, 4.139, 43.5, 10.0, 20.1, 38.0, None],
    "OPT": [7.5, 52.9, 49.2, 3.014, 42.7, 10.8, 29.1, 38.0, 3.08],
    "NEO + KUMPR": [0.7, 19.1, 29.7, 0.712, 35.1, 3.7, 3519.0, 714900.0, 1.05],
    "NEO + DPO": [17.4, 49.4, 42.2, 1.643, 39.0, 1.8, 61.2, 158.5, 1.99],
    "NEO + KL": [4.9, 56.2, 54.3, 3.670, 42.6, 9.9, 27.0, 54.0, 3.64],
    "NEO + LLMU": [3.3, 58.7, 43.1, 1.825, 42.7, 10.3, 23.6, 47.4, 2.98],
    "NEO + ICU (ours)": [4.4, 55.6, 53.3, 3.833, 43.3, 10.3, 21.6, 40.1, 3.92],
}
KEYS = ["forget/el_10", "forget/ma", "forget/bertscore_f1", "forget/entropy", "paper/cls_acc", "paper/dia_f1",
        "pile/ppl", "wikitext/ppl", "gpt"]
# Keys the registry does not know carry their direction in eval.json (as lm-eval tasks do).
DECLARED = {"paper/cls_acc": True, "paper/dia_f1": True, "pile/ppl": False, "wikitext/ppl": False}
PAPER_SZ = [2.23, -5.72, -5.01, 2.69, 2.03, 3.78]
PAPER_SM = [1.31, -1.79, -1.34, 1.45, 1.19, 1.84]


@pytest.fixture(scope="module")
def paper_evals(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper")
    for k, (label, values) in enumerate(PAPER.items()):
        metrics = {key: v for key, v in zip(KEYS, values) if v is not None}
        result = EvalResult("paper", metrics, directions=DECLARED)
        write_eval(root / f"{k}-row", result, model=label, label=label, reference=label.startswith("NEO (before"))
    return root


def test_table_one_reproduces_the_paper(paper_evals):
    table = compare([paper_evals])
    labels = [r.label for r in table.rows]
    assert labels == list(PAPER)
    ranked = table.ranked
    assert [table.rows[i].label for i in ranked] == list(PAPER)[1:]  # the before row is not ranked
    assert [round(table.scores[i]["s_z"], 2) for i in ranked] == PAPER_SZ
    assert [round(table.scores[i]["s_m"], 2) for i in ranked] == PAPER_SM
    icu, kl, kumpr, llmu = (labels.index(x) for x in ("NEO + ICU (ours)", "NEO + KL", "NEO + KUMPR", "NEO + LLMU"))
    # s_z / s_m: ICU best, KL second (the paper underlines KL's s_m 1.45)
    assert table.best["s_z"] == {icu} and table.second["s_z"] == {kl}
    assert table.best["s_m"] == {icu} and table.second["s_m"] == {kl}
    # EL10 (lower is better): KUMPR 0.7 best, LLMU 3.3 second; the reference row never gets a mark
    assert table.best["forget/el_10"] == {kumpr} and table.second["forget/el_10"] == {llmu}
    assert all(0 not in marks for marks in (*table.best.values(), *table.second.values()))
    assert table.cell(kumpr, "pile/ppl") == ">1000"


def test_references_do_not_move_the_scores(paper_evals, tmp_path):
    with_ref = compare([paper_evals])
    # the same rows without the before row: identical scores (references are outside the normalisation)
    rows = [r for r in load_rows([paper_evals]) if not r.reference]
    without = build_table(rows)
    assert [with_ref.scores[i]["s_z"] for i in with_ref.ranked] == pytest.approx(
        [without.scores[i]["s_z"] for i in without.ranked])
    # --ref marks an evaluation folder as a reference whatever its own flag says
    opt = next(p for p in paper_evals.iterdir() if read_eval(p)["label"] == "OPT")
    table = compare([p for p in sorted(paper_evals.iterdir()) if p != opt], references=[opt])
    assert next(r for r in table.rows if r.label == "OPT").reference


def test_markdown_and_csv(paper_evals):
    table = compare([paper_evals])
    md = to_markdown(table)
    header = md.splitlines()[0]
    assert "forget/el_10 ↓" in header and "paper/cls_acc ↑" in header and "s_z ↑" in header
    assert "forget/entropy ↑" in header  # entropy counts as "higher is better" in s (ICU eq. 11)
    icu_line = next(line for line in md.splitlines() if line.startswith("| NEO + ICU"))
    # the paper's marks of its ICU row: best entropy, Cls, Pile PPL, GPT, s_z, s_m; second Dia and Wikitext
    assert icu_line == ("| NEO + ICU (ours) | 4.400 | 55.60 | 53.30 | **3.833** | **43.30** | <u>10.30</u> | **21.60** "
                        "| <u>40.10</u> | **3.920** | **3.778** | **1.840** |")
    kl_line = next(line for line in md.splitlines() if line.startswith("| NEO + KL"))
    assert "<u>1.454</u>" in kl_line  # second-best s_m underlined (the paper: 1.45, underlined)
    assert "*NEO (before unlearning)* (reference)" in md and "&gt;1000" in md
    assert "References (shown, not ranked, not normalised): NEO (before unlearning)" in md
    rows = list(csv.DictReader(io.StringIO(to_csv(table))))
    assert rows[0]["reference"] == "1" and rows[2]["pile/ppl"] == "3519.0"  # plain values, uncapped, no marks
    assert float(rows[-1]["s_z"]) == pytest.approx(3.78, abs=0.005)
    from rich.console import Console

    console = Console(width=250, record=True)
    console.print(to_rich(table))
    text = console.export_text()
    assert "NEO + ICU (ours)" in text and "(ref)" in text and "s_z" in text


def test_format_and_column_patterns(paper_evals):
    assert format_value("forget_quality", 1.834e-21) == "1.83e-21"
    assert format_value("x", 0.12345) == "0.123" and format_value("x", 123.45) == "123.5"
    assert format_value("retain/ppl", 3519.0) == ">1000" and format_value("retain/ppl", 3519.0, None) == "3519"
    table = compare([paper_evals], columns=["forget/*", "gpt"])
    assert table.columns == ["forget/el_10", "forget/ma", "forget/bertscore_f1", "forget/entropy", "gpt"]
    assert table.score_columns == table.columns


def _fake_run(path, method, before, after, evals=None):
    folder = RunFolder.create(path, "run")
    (path / "model").mkdir()
    folder.write_text("config.yaml", f"method: {method}\n")
    summary = {"method": method, "model": "tiny", "forget": "f.jsonl", "n_forget": 4, "epochs": 2,
               "optimizer_steps": 2, "stop_reason": "max_epochs", "before": before, "after": after}
    folder.write_summary(summary)
    for name, metrics in (evals or {}).items():
        write_eval(path / "eval" / name, EvalResult(name, metrics), model=str(path / "model"), label=method)
    return path


def test_run_folders_before_rows_and_unique_labels(tmp_path):
    before = {"ma": 0.9, "el_10": 0.8, "retain_ppl": 2.0, "refine_bleu": 0.9}
    a = _fake_run(tmp_path / "a", "icu", before, {"ma": 0.5, "el_10": 0.04, "retain_ppl": 2.5},
                  {"world": {"forget/rougeL_recall": 0.2, "world_utility": 0.8}})
    b = _fake_run(tmp_path / "b", "icu", before, {"ma": 0.3, "el_10": 0.01, "retain_ppl": 9.0})
    table = compare([a, b], before=True)
    labels = [r.label for r in table.rows]
    assert labels == ["original (tiny)", "icu (a)", "icu (b)"]  # one before row for the same model + data
    assert table.rows[0].reference and table.rows[0].metrics == {"run/ma": 0.9, "run/el_10": 0.8, "run/retain_ppl": 2.0}
    assert table.rows[1].metrics["forget/rougeL_recall"] == 0.2  # evaluations saved in the run folder
    assert set(table.score_columns) == {"run/ma", "run/el_10", "run/retain_ppl"}  # the columns both runs have
    assert table.best["run/retain_ppl"] == {1} and table.best["run/ma"] == {2}
    with pytest.raises(ObliviateError, match="not a run folder"):
        compare([tmp_path / "a" / "model"])
    with pytest.raises(ObliviateError, match="no such"):
        compare([tmp_path / "missing"])


def test_cli_compare_writes_markdown_and_csv(paper_evals, tmp_path):
    from typer.testing import CliRunner

    from obliviate.cli import app

    res = CliRunner().invoke(app, ["compare", str(paper_evals), "--markdown", str(tmp_path / "t.md"),
                                   "--csv", str(tmp_path / "t.csv"), "--html", str(tmp_path / "t.html")])
    assert res.exit_code == 0, res.output
    assert "**" in (tmp_path / "t.md").read_text()
    assert (tmp_path / "t.csv").read_text().startswith("run,reference,kind,path,")
    html = (tmp_path / "t.html").read_text()
    assert 'id="comparison"' in html and "<strong>" in html and "<u>" in html


def _cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    import sys

    from obliviate.cli import main

    monkeypatch.setattr(sys, "argv", ["obliviate", *args])
    with pytest.raises(SystemExit) as info:
        main()
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def test_outputs_never_replace_foreign_files(paper_evals, tmp_path, monkeypatch, capsys):
    data = tmp_path / "data.csv"
    data.write_text("id,text\n1,mine\n")
    code, _, err = _cli(monkeypatch, capsys, "compare", str(paper_evals), "--csv", str(data))
    assert code == 2 and "not written by obliviate" in err and "Traceback" not in err
    assert data.read_text() == "id,text\n1,mine\n"
    code, _, err = _cli(monkeypatch, capsys, "compare", str(paper_evals), "--markdown", str(tmp_path))
    assert code == 2 and "is a folder" in err and "Traceback" not in err
    outputs = ["--csv", str(tmp_path / "t.csv"), "--markdown", str(tmp_path / "t.md"), "--html", str(tmp_path / "t.html")]
    for _ in range(2):  # obliviate's own outputs are replaced without asking
        code, _, err = _cli(monkeypatch, capsys, "compare", str(paper_evals), *outputs)
        assert code == 0, err
    code, _, err = _cli(monkeypatch, capsys, "compare", str(paper_evals), "--csv", str(data), "--overwrite")
    assert code == 0 and data.read_text().startswith("run,reference")
    notes = tmp_path / "notes.html"
    notes.write_text("<html>my notes</html>")
    code, _, err = _cli(monkeypatch, capsys, "report", str(paper_evals), "--out", str(notes))
    assert code == 2 and "not written by obliviate" in err and notes.read_text() == "<html>my notes</html>"
    code, _, err = _cli(monkeypatch, capsys, "report", str(paper_evals), "--out", str(tmp_path))
    assert code == 2 and "is a folder" in err and "Traceback" not in err


def test_piped_output_prints_every_cell(paper_evals, monkeypatch, capsys):
    code, out, _ = _cli(monkeypatch, capsys, "compare", str(paper_evals))  # captured: not a terminal
    assert code == 0
    kumpr = next(line for line in out.splitlines() if "NEO + KUMPR" in line)
    for cell in ("0.700", "19.10", "29.70", "0.712", "35.10", "3.700", ">1000", "1.050"):
        assert cell in kumpr, kumpr


def test_runs_on_different_forget_sets_are_not_scored_together(tmp_path):
    before = {"ma": 0.9, "el_10": 0.8}
    a = _fake_run(tmp_path / "a", "icu", before, {"ma": 0.5, "el_10": 0.04})
    b = _fake_run(tmp_path / "b", "kumpr", before, {"ma": 0.3, "el_10": 0.01})
    assert compare([a, b]).scores  # same forget set and model: ranked and scored
    summary = json.loads((b / "summary.json").read_text())
    (b / "summary.json").write_text(json.dumps({**summary, "forget": "other.jsonl", "model": "other"}))
    table = compare([a, b])
    assert not table.scores and len(table.warnings) == 2
    assert "different forget sets" in table.warnings[0] and "f.jsonl" in table.warnings[0]
    assert "different models" in table.warnings[1]
    assert table.caption()[0].startswith("Warning: different forget sets")
