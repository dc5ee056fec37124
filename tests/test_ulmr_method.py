"""ULMR end to end on the micro synthetic world: restructure -> SFT on the shared engine -> averaging.

It must lower what the model knows about the forget person (greedy ROUGE-L and answer
probability) while the α sweep brings the retain people back as α grows.
"""

from __future__ import annotations

import json

import pytest

from obliviate.data.sources import load_data
from obliviate.errors import ObliviateError
from obliviate.methods import get_method
from obliviate.methods.ulmr import ULMRConfig
from obliviate.models import load_model
from obliviate.recipes.ulmr import run_ulmr
from obliviate.ulmr.evaluate import evaluate_qa
from obliviate.ulmr.merge import average_state_dicts

pytestmark = pytest.mark.slow

# One forget person (10 QA -> 30 SFT examples); a tiny model needs a larger lr than the paper's
# 1e-4 for an 8B model (see docs/ulmr.md).
OVERRIDES = ["data.max_forget=10", "train.lr=2e-3", "stop.max_epochs=4", "train.batch_size=8", "eval.el_n=2"]


def test_registered_and_guarded():
    spec = get_method("ulmr")
    assert spec.defaults["train"]["lr"] == 1e-4 and spec.defaults["train"]["batch_size"] == 16
    assert spec.defaults["stop"]["max_epochs"] == 5 and spec.defaults["train"]["optimizer"] == "adamw"
    with pytest.raises(ObliviateError, match="obliviate ulmr run"):  # SFT on raw forget answers would reinforce them
        ULMRConfig().requirements()
    assert ULMRConfig(restructured=True).requirements().retain is False


def test_ulmr_on_the_micro_world_forgets_and_averaging_restores_utility(tmp_path):
    forget = load_data("world:micro:forget")[:10]
    people = {r.meta["person"] for r in forget}
    retain = [r for r in load_data("world:micro:retain_eval")][:10]
    splits = {"forget": forget, "retain": retain}
    base, tok = load_model("world-micro-target")
    before = evaluate_qa(base, tok, splits, max_new_tokens=24).row

    result = run_ulmr("world-micro-target", "world:micro:forget", out=tmp_path / "run", alpha=0.0,
                      overrides=OVERRIDES)
    assert result.restructured.status == "generated" and len(result.restructured.records) == 30
    assert {r.meta["source_id"] for r in result.restructured.records} == {r.id for r in forget}
    assert len(people) == 1
    info = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert info["alpha"] == 0.0 and info["sft"]["epochs"] == 4

    sft = evaluate_qa(result.model, result.tokenizer, splits, max_new_tokens=24).row
    assert sft["forget/rougeL_recall"] < before["forget/rougeL_recall"] - 0.5
    assert sft["forget/tofu_prob"] < before["forget/tofu_prob"] / 2

    # α sweep: utility comes back as α grows, α = 1 is the original model exactly
    tuned = result.model.state_dict()
    original = base.state_dict()
    rows = {}
    for alpha in (0.5, 1.0):
        model, _ = load_model("world-micro-target")
        model.load_state_dict(average_state_dicts(original, tuned, alpha))
        rows[alpha] = evaluate_qa(model, tok, splits, max_new_tokens=24).row
    assert rows[0.5]["retain/rougeL_recall"] >= sft["retain/rougeL_recall"]
    assert rows[1.0] == before

    # the run folder: a second call refuses to redo it, --resume loads it
    with pytest.raises(ObliviateError, match="finished ULMR run"):
        run_ulmr("world-micro-target", "world:micro:forget", out=tmp_path / "run", overrides=OVERRIDES)
    again = run_ulmr("world-micro-target", "world:micro:forget", out=tmp_path / "run", resume=True)
    assert again.summary == info
