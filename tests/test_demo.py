"""`obliviate demo`: the table it prints, its folder rules, and (slow) the real run on SmolLM2-135M."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from obliviate.cli import app
from obliviate.demo import DEMO_SPLITS, SPLIT_METRICS, DemoConfig, build_table, run_demo
from obliviate.errors import ObliviateError
from obliviate.runfolder import RunFolder
from obliviate.unlearning import build_config


def _audits(ma: float, el: float) -> dict:
    summary = {"ma": ma, "el_4": el, "bleu_icu": ma / 2, "bertscore_f1": 0.5}
    return {name: {"summary": dict(summary)} for name in DEMO_SPLITS}


def test_table_pairs_before_and_after_per_split():
    rows = build_table(_audits(0.8, 0.3), _audits(0.2, 0.0), el_n=4)
    by = {(r["split"], r["metric"]): r for r in rows}
    assert by[("forget", "ma")]["before"] == 0.8 and by[("forget", "ma")]["after"] == 0.2
    assert by[("forget", "el_4")]["label"].endswith("EL_4") and by[("forget", "el_4")]["after"] == 0.0
    assert {r["split"] for r in rows} == set(DEMO_SPLITS)
    for r in rows:  # every row shows a metric the demo audits on that split
        assert r["metric"] in [f"el_{4}" if m == "el" else ("bertscore_f1" if m == "bertscore" else m)
                               for m in SPLIT_METRICS[r["split"]]]


def test_demo_config_is_a_valid_unlearning_config():
    cfg = build_config(DemoConfig().method, overrides=DemoConfig().overrides)
    assert cfg.method == "icu" and cfg.eval.el is False and cfg.stop.el_threshold is None
    assert cfg.stop.calibrate_on == "demo:heldout"


def test_demo_folder_is_never_overwritten_silently(tmp_path):
    out = RunFolder.create(tmp_path / "demo", "demo").path
    (out / "audit_before.json").write_text("{}")
    with pytest.raises(ObliviateError, match="already holds an obliviate demo"):
        run_demo(out)
    (out / "demo.json").write_text("{}")
    with pytest.raises(ObliviateError, match="already finished"):
        run_demo(out, resume=True)
    res = CliRunner().invoke(app, ["demo", "--out", str(out)])
    assert res.exit_code != 0 and "already holds an obliviate demo" in str(res.exception)
    assert (out / "demo.json").read_text() == "{}"  # untouched
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(ObliviateError, match="obliviate did not write"):
        run_demo(tmp_path / "mine", overwrite=True)
    with pytest.raises(ObliviateError, match="nothing to resume"):
        run_demo(tmp_path / "empty", resume=True)


@pytest.mark.slow
@pytest.mark.smollm
def test_demo_on_smollm_forgets_the_licences_and_keeps_the_rest(tmp_path):
    """The README's demo, end to end: the forget set's memorization drops, retain holds."""
    demo = run_demo(tmp_path / "demo")
    by = {(r["split"], r["metric"]): r for r in demo["table"]}
    forget_ma, retain_ma = by[("forget", "ma")], by[("retain", "ma")]
    heldout_ma = by[("heldout", "ma")]
    print(f"\nforget MA {forget_ma['before']:.3f} -> {forget_ma['after']:.3f}; retain MA "
          f"{retain_ma['before']:.3f} -> {retain_ma['after']:.3f}; held-out MA {heldout_ma['before']:.3f} -> "
          f"{heldout_ma['after']:.3f}; {demo['seconds']:.0f} s")
    assert forget_ma["before"] > heldout_ma["before"] + 0.15  # the model really memorized the notices
    assert forget_ma["after"] < forget_ma["before"] - 0.15  # ... and forgets them
    assert by[("forget", "el_4")]["after"] < by[("forget", "el_4")]["before"]
    assert retain_ma["after"] > retain_ma["before"] - 0.15  # famous passages survive
    saved = json.loads((tmp_path / "demo" / "demo.json").read_text())
    assert saved["table"] == demo["table"]
    # the cheap attacks ran on the unlearned model and gave one verdict each, whatever it is
    assert [a["attack"] for a in demo["attacks"]] == ["none", "sample", "quantize8", "quantize4"]
    assert all(a["verdict"] in ("held", "recovered") and "held-out" in a["rule"] for a in demo["attacks"])
    for name in ("audit_before.json", "audit_after.json", "attacks.json", "unlearn/summary.json",
                 "unlearn/model/config.json"):
        assert (tmp_path / "demo" / name).is_file(), name
