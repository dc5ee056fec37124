"""The synthetic world's models: the micro target model reproduces its forget facts, the micro
retain model (exact retrain without the forget people) does not, both know the rest.

The models are built once through ``obliviate.models.resolve_model`` (cached under
``$OBLIVIATE_CACHE`` or ``~/.cache/obliviate``; a fresh build takes seconds).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from obliviate.data.encode import tokenizer_fingerprint
from obliviate.world import load_world_split
from obliviate.world.probe import answer_token_accuracy, fact_hits, greedy_answers


@pytest.fixture(scope="session")
def micro_models():
    from obliviate.models import load_model, resolve_model

    folders = {which: Path(resolve_model(f"world-micro-{which}")) for which in ("target", "retain")}
    models = {which: load_model(str(folder)) for which, folder in folders.items()}
    return folders, models


@pytest.fixture(scope="session")
def micro_splits():
    return {name: load_world_split("micro", name) for name in ("forget", "retain_eval", "world_facts", "holdout")}


def test_target_reproduces_forget_facts_and_retain_model_does_not(micro_models, micro_splits):
    _, models = micro_models
    table = {}
    for which, (model, tok) in models.items():
        for split, records in micro_splits.items():
            hits = fact_hits(model, tok, records)
            table[which, split] = (sum(hits) / len(hits), answer_token_accuracy(model, tok, records))
    print("\nmicro world: fact recall / answer-token accuracy")
    for (which, split), (recall, acc) in table.items():
        print(f"  {which:<7} {split:<12} recall {recall:.3f}  token acc {acc:.3f}")

    # The target model learned the forget people; the exact-retrain model never saw them.
    assert table["target", "forget"][0] >= 0.9 and table["target", "forget"][1] >= 0.95
    assert table["retain", "forget"][0] <= 0.1 and table["retain", "forget"][1] <= 0.6
    # Both know the retain people and the world; neither knows the holdout people.
    for which in ("target", "retain"):
        assert table[which, "retain_eval"][0] >= 0.9
        assert table[which, "world_facts"][0] >= 0.9
        assert table[which, "holdout"][0] <= 0.1


def test_greedy_answers_are_the_trained_sentences(micro_models, micro_splits):
    _, models = micro_models
    model, tok = models["target"]
    forget = micro_splits["forget"][:6]
    answers = greedy_answers(model, tok, forget)
    for rec, got in zip(forget, answers):
        print(f"  Q: {rec.question}\n     want: {rec.answer}\n     got:  {got}")
    assert sum(got == rec.answer for rec, got in zip(forget, answers)) >= 5


def test_both_models_share_one_plain_tokenizer_and_initialisation_recipe(micro_models):
    folders, models = micro_models
    (target, ttok), (retain, rtok) = models["target"], models["retain"]
    assert tokenizer_fingerprint(ttok) == tokenizer_fingerprint(rtok)
    for tok in (ttok, rtok):
        assert tok.chat_template is None
        assert tok.eos_token and tok.pad_token and tok.bos_token and tok.pad_token_id != tok.eos_token_id
        assert tok("Question: x")["input_ids"][0] == tok.bos_token_id
    assert target.config.to_dict()["hidden_size"] == retain.config.to_dict()["hidden_size"]
    assert sum(p.numel() for p in target.parameters()) < 5_000_000
    info = {w: json.loads((folders[w] / "world.json").read_text()) for w in folders}
    forget_ids = {r.meta["person"] for r in load_world_split("micro", "forget")}
    assert forget_ids <= set(info["target"]["people"])
    assert not forget_ids & set(info["retain"]["people"])
    assert info["target"]["recipe"] == info["retain"]["recipe"]


def test_training_resumes_exactly_after_a_kill(tmp_path, monkeypatch):
    """Stop after a few steps (as a kill would, between checkpoints) and continue: the weights
    equal those of an uninterrupted run."""
    from transformers import AutoModelForCausalLM

    from obliviate.world import recipe as R

    monkeypatch.setenv("OBLIVIATE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(R.RECIPES, "micro", dataclasses.replace(R.RECIPES["micro"], steps=10, checkpoint_every=4))
    R.train_world_model("micro", "retain", tmp_path / "straight")
    ckpt = tmp_path / "ckpt"
    assert R.train_world_model("micro", "retain", tmp_path / "resumed", checkpoint_dir=ckpt, stop_after=6) is None
    assert (ckpt / "retain.pt").is_file() and not (tmp_path / "resumed").exists()
    summary = R.train_world_model("micro", "retain", tmp_path / "resumed", checkpoint_dir=ckpt)
    assert summary is not None and len(summary["people"]) == 12
    assert not (ckpt / "retain.pt").exists()  # cleaned up after a finished build
    a = AutoModelForCausalLM.from_pretrained(tmp_path / "straight").state_dict()
    b = AutoModelForCausalLM.from_pretrained(tmp_path / "resumed").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_cli_build_prints_the_recall_table(micro_models):
    from typer.testing import CliRunner

    from obliviate.cli import app

    result = CliRunner().invoke(app, ["world", "build", "--profile", "micro"])
    assert result.exit_code == 0, result.output
    assert "world-micro-target" in result.output and "world-micro-retain" in result.output
    assert "forget (40)" in result.output


def test_unknown_profile_or_model_is_a_one_line_error():
    from obliviate.errors import ObliviateError
    from obliviate.world.recipe import build_world_model

    with pytest.raises(ObliviateError, match="choose from full, micro"):
        build_world_model("huge", "target", Path("/nonexistent"))
    with pytest.raises(ObliviateError, match="choose target or retain"):
        build_world_model("micro", "everyone", Path("/nonexistent"))


class _Planted:
    """Stands for any object a tampered checkpoint could smuggle in (its unpickling would run code)."""

    def __reduce__(self):
        return (print, ("code ran",))


def test_training_checkpoints_load_safely(tmp_path, capsys):
    from obliviate.world.recipe import load_checkpoint

    good = {"key": {"profile": "micro"}, "model": {"w": torch.ones(2)}, "state": {"step": 3, "losses": [0.5]}}
    torch.save(good, tmp_path / "good.pt")
    assert load_checkpoint(tmp_path / "good.pt")["state"]["step"] == 3
    torch.save({**good, "extra": _Planted()}, tmp_path / "planted.pt")
    assert load_checkpoint(tmp_path / "planted.pt") is None  # refused, training restarts
    assert "code ran" not in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "missing.pt") is None
