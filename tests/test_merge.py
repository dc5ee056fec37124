"""Model parameter averaging θ_u = α·θ + (1−α)·θ': arithmetic, checkpoints on disk, errors."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors.torch import load_file

from obliviate.errors import ObliviateError
from obliviate.models import load_model, save_model
from obliviate.ulmr.merge import (
    average_into,
    average_state_dicts,
    check_compatible,
    merge_checkpoints,
    parse_alphas,
)


def _perturbed(model: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    tuned = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in tuned.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    return tuned


def test_average_state_dicts_arithmetic():
    base = {"w": torch.tensor([1.0, 2.0, -4.0]), "step": torch.tensor([3])}
    tuned = {"w": torch.tensor([3.0, 0.0, 4.0]), "step": torch.tensor([3])}
    assert torch.equal(average_state_dicts(base, tuned, 1.0)["w"], base["w"])
    assert torch.equal(average_state_dicts(base, tuned, 0.0)["w"], tuned["w"])
    assert torch.equal(average_state_dicts(base, tuned, 0.5)["w"], torch.tensor([2.0, 1.0, 0.0]))
    # hand-computed: 0.25*[1,2,-4] + 0.75*[3,0,4] = [2.5, 0.5, 2.0]
    assert torch.allclose(average_state_dicts(base, tuned, 0.25)["w"], torch.tensor([2.5, 0.5, 2.0]))
    assert torch.equal(average_state_dicts(base, tuned, 0.3)["step"], torch.tensor([3]))  # integer buffer copied
    half = {"w": base["w"].to(torch.bfloat16)}
    assert average_state_dicts(half, {"w": tuned["w"]}, 0.5)["w"].dtype == torch.bfloat16  # base's dtype
    with pytest.raises(ObliviateError, match="tensor 'step': non-floating tensor differs"):
        average_state_dicts(base, {"w": tuned["w"], "step": torch.tensor([4])}, 0.5)


def test_alpha_endpoints_are_exact_on_a_model(tiny_model):
    tuned = _perturbed(tiny_model)
    base_sd = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    tuned_sd = {k: v.clone() for k, v in tuned.state_dict().items()}
    for alpha, want in ((1.0, base_sd), (0.0, tuned_sd)):
        merged = average_state_dicts(base_sd, tuned_sd, alpha)
        assert all(torch.equal(merged[k], want[k]) for k in want)
    mean = average_state_dicts(base_sd, tuned_sd, 0.5)
    assert all(torch.equal(mean[k], (base_sd[k] + tuned_sd[k]) / 2) for k in base_sd)

    # in place, with tied embeddings (one tensor under two names): averaged once, not twice
    assert tuned.lm_head.weight is tuned.model.embed_tokens.weight
    model = copy.deepcopy(tuned)
    average_into(model, base_sd, 0.5)
    after = model.state_dict()
    assert all(torch.equal(after[k], mean[k]) for k in base_sd)
    model = copy.deepcopy(tuned)
    average_into(model, base_sd, 1.0)
    assert all(torch.equal(model.state_dict()[k], base_sd[k]) for k in base_sd)


def test_incompatible_checkpoints_name_the_first_mismatch():
    a = {"emb": torch.zeros(4, 2), "head": torch.zeros(2, 4)}
    with pytest.raises(ObliviateError, match=r"'head' has shape \(2, 4\) in base but \(3, 4\) in tuned"):
        check_compatible(a, {"emb": torch.zeros(4, 2), "head": torch.zeros(3, 4)})
    with pytest.raises(ObliviateError, match="'head' is in base but not in tuned"):
        check_compatible(a, {"emb": torch.zeros(4, 2)})
    with pytest.raises(ObliviateError, match="'extra' is in tuned but not in base"):
        check_compatible(a, {**a, "extra": torch.zeros(1)})


def test_parse_alphas():
    assert parse_alphas("0,0.25,0.5,0.75,1") == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert parse_alphas(0.3) == [0.3]
    for bad, msg in (("1.5", r"\[0, 1\]"), ("a,b", "numbers"), ("", "at least one"), ("0.5,0.5", "repeated")):
        with pytest.raises(ObliviateError, match=msg):
            parse_alphas(bad)


def test_merge_checkpoints_on_disk(tiny_model, tiny_tokenizer, tmp_path):
    base_dir = save_model(tiny_model, tiny_tokenizer, tmp_path / "base")
    tuned_dir = save_model(_perturbed(tiny_model), tiny_tokenizer, tmp_path / "tuned")
    base_sd, tuned_sd = load_file(base_dir / "model.safetensors"), load_file(tuned_dir / "model.safetensors")
    for alpha in (0.0, 0.5, 1.0):
        out = merge_checkpoints(base_dir, tuned_dir, alpha, tmp_path / f"m{alpha}")
        merged = load_file(out / "model.safetensors")
        assert set(merged) == set(base_sd)
        want = average_state_dicts(base_sd, tuned_sd, alpha)
        assert all(torch.equal(merged[k], want[k]) for k in want)
        assert json.loads((out / "merge.json").read_text())["alpha"] == alpha
    model, _ = load_model(tmp_path / "m1.0")  # a normal HF folder that loads back = the original
    ids = torch.tensor([[1, 2, 3, 4]])
    assert torch.equal(model(ids).logits, tiny_model(ids).logits)
    with pytest.raises(ObliviateError, match=r"already holds an obliviate merge.*--overwrite"):
        merge_checkpoints(base_dir, tuned_dir, 0.5, tmp_path / "m0.5")
    merge_checkpoints(base_dir, tuned_dir, 0.25, tmp_path / "m0.5", overwrite=True)
    # --overwrite replaces an earlier merge only, never a folder obliviate did not write.
    for overwrite in (False, True):
        with pytest.raises(ObliviateError, match="obliviate did not write"):
            merge_checkpoints(base_dir, tuned_dir, 0.5, base_dir, overwrite=overwrite)
    assert (base_dir / "config.json").is_file()


def test_merge_refuses_other_architectures_and_shapes(tiny_model, tiny_tokenizer, tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaForCausalLM

    base_dir = save_model(tiny_model, tiny_tokenizer, tmp_path / "base")
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(tiny_tokenizer), n_embd=32, n_layer=1, n_head=2))
    save_model(gpt2, tiny_tokenizer, tmp_path / "gpt2")
    with pytest.raises(ObliviateError, match=r"model_type is 'llama' in .* but 'gpt2'"):
        merge_checkpoints(base_dir, tmp_path / "gpt2", 0.5, tmp_path / "out")
    cfg = copy.deepcopy(tiny_model.config)
    cfg.intermediate_size = 96
    save_model(LlamaForCausalLM(cfg), tiny_tokenizer, tmp_path / "wider")
    with pytest.raises(ObliviateError, match=r"tensor 'model\.layers\.0\.mlp\.down_proj\.weight' has shape"):
        merge_checkpoints(base_dir, tmp_path / "wider", 0.5, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing written before the check


def _tofu_file(records, path):
    """Records in TOFU's own schema (JSON lines under .json, no ids), as TOFU's HF files are."""
    lines = [json.dumps({"question": r.question, "answer": r.answer, "paraphrased_answer": r.paraphrased_answer,
                         "perturbed_answer": list(r.perturbed_answers),
                         "paraphrased_question": r.paraphrased_question}) for r in records]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cli_sweep_writes_and_evaluates_every_point_on_tofu_files(tmp_path):
    from typer.testing import CliRunner

    from obliviate.cli import app
    from obliviate.data.sources import load_data
    from obliviate.ulmr.evaluate import evaluate_qa

    base, tok = load_model("world-micro-target")
    tuned_dir = save_model(_perturbed(base, seed=3), tok, tmp_path / "tuned")
    forget = _tofu_file(load_data("world:micro:forget")[:4], tmp_path / "forget.json")
    retain = _tofu_file(load_data("world:micro:retain_eval")[:4], tmp_path / "retain.json")
    out = tmp_path / "sweep"
    args = ["merge", "--base", "world-micro-target", "--tuned", str(tuned_dir), "--alpha", "0,0.5,1", "--out", str(out),
            "--forget", str(forget), "--retain", str(retain), "--max-new-tokens", "16"]
    runner = CliRunner()
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "| α=1 (= base) |" in result.output and "Retain TR" in result.output
    rows = json.loads((out / "sweep.json").read_text())["rows"]
    assert [r["alpha"] for r in rows] == [0.0, 0.5, 1.0]
    assert all((out / f"alpha-{a:g}" / "model.safetensors").is_file() for a in (0, 0.5, 1))
    from obliviate.data.io import load_records

    want = evaluate_qa(base, tok, {"forget": load_records(forget), "retain": load_records(retain)},
                       max_new_tokens=16).row
    assert {k: v for k, v in rows[2].items() if "/" in k} == want  # α = 1 is the original, metric for metric
    assert rows[0]["forget/tofu_prob"] != want["forget/tofu_prob"]

    again = runner.invoke(app, args)  # never overwritten silently
    assert isinstance(again.exception, ObliviateError) and "--resume" in str(again.exception)
    resumed = runner.invoke(app, [*args, "--resume"])
    assert resumed.exit_code == 0 and json.loads((out / "sweep.json").read_text())["rows"] == rows
    bad = runner.invoke(app, ["merge", "--base", "world-micro-target", "--tuned", str(tuned_dir), "--alpha", "2",
                              "--out", str(tmp_path / "x")])
    assert isinstance(bad.exception, ObliviateError) and "[0, 1]" in str(bad.exception)


def test_sweep_resume_refuses_a_changed_checkpoint(tiny_model, tiny_tokenizer, tmp_path):
    from obliviate.ulmr.merge import checkpoint_fingerprint
    from obliviate.ulmr.sweep import alpha_sweep

    base_dir = save_model(tiny_model, tiny_tokenizer, tmp_path / "base")
    tuned_dir = save_model(_perturbed(tiny_model), tiny_tokenizer, tmp_path / "tuned")
    before = checkpoint_fingerprint(base_dir)
    rows = alpha_sweep(base_dir, tuned_dir, [0.0, 1.0], tmp_path / "sweep")
    assert [r["alpha"] for r in rows] == [0.0, 1.0] and "forget/rougeL_recall" not in rows[0]
    assert alpha_sweep(base_dir, tuned_dir, [0.0, 0.5, 1.0], tmp_path / "sweep", resume=True)[2] == rows[1]
    save_model(_perturbed(tiny_model, seed=9), tiny_tokenizer, base_dir)  # "the same" base, rebuilt
    assert checkpoint_fingerprint(base_dir) != before
    with pytest.raises(ObliviateError, match="base_fingerprint"):
        alpha_sweep(base_dir, tuned_dir, [0.0, 1.0], tmp_path / "sweep", resume=True)
    # --overwrite replaces an earlier sweep, never a folder obliviate did not write
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "todo.txt").write_text("mine")
    with pytest.raises(ObliviateError, match="obliviate did not write"):
        alpha_sweep(base_dir, tuned_dir, [0.0], mine, overwrite=True)
    assert [p.name for p in mine.iterdir()] == ["todo.txt"]
    assert [r["alpha"] for r in alpha_sweep(base_dir, tuned_dir, [0.5], tmp_path / "sweep", overwrite=True)] == [0.5]
