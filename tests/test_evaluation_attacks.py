"""Attacks as probes on real tiny models: leak@k, sampling, quantization, relearning, prompts, verdicts."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from obliviate.data.encode import collate, encode_records
from obliviate.data.records import QARecord, TextRecord
from obliviate.errors import ObliviateError
from obliviate.evaluation.attacks import (
    AttackConfig,
    calibrated_verdict,
    measure,
    parse_attacks,
    prompt_variants,
    quantized_copy,
    run_attacks,
    summary,
)
from obliviate.evaluation.sampling import sample_continuations
from obliviate.metrics.generation import generate_completions
from obliviate.metrics.leakage import auc_standard_error, leak_at_k, leakage

pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------- pure functions (hand-computed)

def test_leak_at_k_golden_values():
    assert leak_at_k(32, 0, 8) == 0.0
    assert leak_at_k(5, 1, 1) == pytest.approx(0.2)  # c/n
    assert leak_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)
    assert leak_at_k(10, 3, 4) == pytest.approx(1 - 35 / 210)  # 1 - C(7,4)/C(10,4)
    assert leak_at_k(4, 3, 2) == 1.0  # fewer than k clean samples: some leak is certain
    assert leak_at_k(200, 7, 128) == pytest.approx(1 - math.comb(193, 128) / math.comb(200, 128))
    with pytest.raises(ValueError):
        leak_at_k(4, 5, 1)


def test_leakage_summary_hand_computed():
    scores = [[0.9, 0.1, 0.2, 0.8], [0.0, 0.1, 0.2, 0.3]]  # prompt 1: 2 of 4 leak at 0.5; prompt 2: none
    res = leakage(scores, threshold=0.5, ks=(1, 2))
    assert res["leak@1"].per_sample == pytest.approx([0.5, 0.0]) and res["leak@1"].value == pytest.approx(0.25)
    assert res["leak@2"].per_sample[0] == pytest.approx(1 - 1 / 6)  # 1 - C(2,2)/C(4,2)
    assert res["max"].per_sample == [0.9, 0.3] and res["leak_rate"].value == pytest.approx(0.25)


def test_auc_standard_error_hanley_mcneil():
    # AUC 0.5, 10 + 10: Q1 = Q2 = 1/3, var = (0.25 + 9 x 1/12 + 9 x 1/12) / 100
    assert auc_standard_error(0.5, 10, 10) == pytest.approx(math.sqrt(0.0175))


def test_verdict_follows_the_calibrated_rule():
    # forget mean above the held-out mean and no spread: recovered
    assert calibrated_verdict({"ma": [0.5, 0.5]}, {"ma": [0.4, 0.4]})[0] == "recovered"
    # equal means: held (reproduced no more than never-seen records)
    assert calibrated_verdict({"ma": [0.2, 0.4]}, {"ma": [0.3, 0.3]})[0] == "held"
    # within 1.645 standard errors of the difference: SE = sqrt(0.02 / 2) = 0.1, diff 0.1 -> held
    assert calibrated_verdict({"ma": [0.3, 0.5]}, {"ma": [0.3, 0.3]})[0] == "held"
    # diff 0.3 > 0.1645 -> recovered; every measure must hold
    assert calibrated_verdict({"ma": [0.5, 0.7]}, {"ma": [0.3, 0.3]})[0] == "recovered"
    assert calibrated_verdict({"ma": [0.3, 0.3], "el_10": [0.9, 0.9]},
                              {"ma": [0.3, 0.3], "el_10": [0.1, 0.1]})[0] == "recovered"


def test_attack_names_are_checked():
    assert parse_attacks("cheap") == ["sample", "quantize"]
    assert parse_attacks("all") == ["sample", "quantize", "relearn", "prompts", "mia"]
    with pytest.raises(ObliviateError, match="unknown attack 'jailbreak'"):
        parse_attacks("sample,jailbreak")


# --------------------------------------------------------------------------- sampling with a shared prefill

def test_shared_prefill_sampling_is_the_model_distribution(tiny_model, tiny_tokenizer):
    records = [TextRecord("a", "The quick brown", " fox jumps over the lazy dog."),
               TextRecord("b", "Alice was born", " in 1961 in Lyon and worked as a clockmaker.")]
    examples = encode_records(records, tiny_tokenizer)
    # Near-zero temperature: every sample is the greedy continuation.
    cold = sample_continuations(tiny_model, tiny_tokenizer, examples, n=3, temperature=1e-4)
    greedy = generate_completions(tiny_model, tiny_tokenizer, examples)
    for rows, g in zip(cold, greedy):
        assert all(r.ids == g.ids for r in rows)
    # Temperature 1: seeded, reproducible, and the n rows differ (they are samples).
    a = sample_continuations(tiny_model, tiny_tokenizer, examples, n=6, seed=1)
    b = sample_continuations(tiny_model, tiny_tokenizer, examples, n=6, seed=1)
    assert [[r.ids for r in rows] for rows in a] == [[r.ids for r in rows] for rows in b]
    assert len({tuple(r.ids) for r in a[1]}) > 1


@pytest.fixture(scope="module")
def world():
    from obliviate.data.sources import load_data
    from obliviate.models import load_model

    target, tok = load_model("world-micro-target")
    retrain, _ = load_model("world-micro-retain")
    return (target, retrain, tok, load_data("world:micro:forget")[:8], load_data("world:micro:holdout")[:8],
            load_data("world:micro:retain")[:6])


def test_sampling_a_memorizing_model_leaks_and_the_retrain_does_not(world):
    target, retrain, tok, forget, heldout, _ = world
    cfg = AttackConfig(n_samples=8, ks=(1, 8))
    baseline, leaked = run_attacks(target, tok, forget, heldout, "sample", config=cfg)
    assert baseline.attack == "none" and baseline.verdict == "recovered"  # the target never forgot anything
    assert leaked.forget["leak@8"] > 0.9 and leaked.heldout["leak@8"] < 0.2
    assert leaked.verdict == "recovered" and "leak@8" in leaked.rule
    clean = run_attacks(retrain, tok, forget, heldout, "sample", config=cfg, original=target)[1]
    assert clean.forget["leak@8"] < 0.2 and clean.verdict == "held"
    assert clean.original["leak@8"] > 0.9  # the same samples from the original model leak


# --------------------------------------------------------------------------- quantization

def test_quantizing_updates_smaller_than_a_step_returns_the_original(tiny_model, tiny_tokenizer):
    original = quantized_copy(tiny_model, 8)  # weights on the int8 grid
    again = quantized_copy(original, 8)
    for (name, p), q in zip(original.named_parameters(), again.parameters()):
        assert torch.allclose(p, q, atol=1e-6), name  # the grid is a fixed point: the rounding we assume
    unlearned = copy.deepcopy(original)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, mod in unlearned.named_modules():
            if isinstance(mod, torch.nn.Linear) and "lm_head" not in name:
                w = mod.weight
                step = w.abs().amax(dim=1, keepdim=True) / 127  # symmetric int8, one scale per output row
                delta = 0.4 * step * (torch.randint(0, 2, w.shape, generator=gen) * 2 - 1)
                delta[w.abs() == w.abs().amax(dim=1, keepdim=True)] = 0  # keep each row's scale
                w += delta
    ids = encode_records([TextRecord("x", "Alice was born", " in 1961 in Lyon.")], tiny_tokenizer)[0].ids
    x = torch.tensor([ids])
    with torch.no_grad():
        lo, lu = original(input_ids=x).logits, unlearned(input_ids=x).logits
        lq = quantized_copy(unlearned, 8)(input_ids=x).logits
    assert (lu - lo).abs().max() > 1e-3  # the update changed the model's outputs
    assert torch.allclose(lq, lo, atol=1e-5)  # quantization gave the original back
    q4 = quantized_copy(unlearned, 4)
    assert any(not torch.equal(a, b) for a, b in zip(q4.parameters(), unlearned.parameters()))


# --------------------------------------------------------------------------- relearning

def _ascent(model, tok, records, *, lr: float, steps: int):
    m = copy.deepcopy(model)
    m.train()
    batch = collate(encode_records(records, tok), tok.pad_token_id)
    opt = torch.optim.AdamW(m.parameters(), lr=lr)
    for _ in range(steps):
        loss = -m(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids,
                  labels=batch.labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    return m.eval()


def test_relearning_half_the_forget_set_restores_the_other_half(world):
    target, _, tok, forget, heldout, _ = world
    unlearned = _ascent(target, tok, forget, lr=5e-4, steps=16)
    cfg = AttackConfig(relearn_lr=1e-3, relearn_steps=20)
    before = measure(unlearned, tok, {"forget": forget[1::2], "heldout": heldout}, cfg)
    assert calibrated_verdict(before["forget"], before["heldout"])[0] == "held"  # forgotten by the ascent
    baseline, res = run_attacks(unlearned, tok, forget, heldout, "relearn", original=target, config=cfg)
    assert baseline.attack == "none" and baseline.verdict == "held"
    assert res.attack == "relearn_half" and res.verdict == "recovered"
    assert res.forget["ma"] > res.unlearned["ma"] + 0.3 and res.recovery["ma"] > 0.5
    # the calibrated level is the same attack on never-seen people: relearning half of their facts
    # teaches something about the other half too, and only what goes beyond that counts
    assert baseline.heldout["ma"] + 0.2 < res.heldout["ma"] < res.forget["ma"] - 0.1
    assert res.details["trained_on"].startswith("4 forget records")
    flat = summary([res])
    assert flat["robust/relearn_half/held"] == 0.0 and flat["robust/relearn_half/recovery"] == pytest.approx(
        sum(res.recovery.values()) / len(res.recovery))


# --------------------------------------------------------------------------- prompts, MIA, GPT-2's tokenizer

def test_prompt_probes_rewrite_the_questions():
    r = QARecord("q", "Where was Alice born?", "In Lyon.", paraphrased_question="What is Alice's birthplace?")
    shots = [QARecord("s", "Who is Bob?", "A baker.")]
    variants = prompt_variants([r], shots, AttackConfig(few_shot=1))
    assert variants["paraphrase"](r).question == "What is Alice's birthplace?"
    assert variants["few_shot"](r).question == "Question: Who is Bob?\nAnswer: A baker.\n\nWhere was Alice born?"
    assert "Sure, here is" in variants["prefix_injection"](r).question and variants["role_play"](r).answer == "In Lyon."
    text = TextRecord("t", "one two three four", " five six seven eight nine")
    tv = prompt_variants([text], [], AttackConfig())
    assert tv["shortened_prefix"](text).prefix == "three four"
    shifted = tv["shifted_prefix"](text)
    assert shifted.prefix + shifted.target == text.prefix + text.target and len(shifted.target) < len(text.target)


def test_suite_on_gpt2_bpe_with_unicode_records(shared_data):
    from transformers import GPT2Config, GPT2LMHeadModel

    from obliviate.data.pile import load_gpt2_tokenizer

    tok = load_gpt2_tokenizer(shared_data / "gpt2-tokenizer")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=128, n_embd=32, n_layer=1, n_head=2,
                                       eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id)).eval()
    forget = [TextRecord("f1", "Zoë Çelik lives at", " 12 Rue de la Paix, Genève — call +41 22 555 0199."),
              TextRecord("f2", "東京の住所は", "千代田区1-1、電話番号は03-5555-0199です。")]
    heldout = [TextRecord("h1", "Müller's café opens", " at 7:30 on weekdays – closed on Sundays ☕."),
               TextRecord("h2", "Le numéro de Zoé", " est le 06 55 55 01 99, après 18 h.")]
    res = run_attacks(model, tok, forget, heldout, "sample,prompts,mia", config=AttackConfig(n_samples=4, el_n=3))
    assert [r.attack for r in res] == ["none", "sample", "prompt_shortened_prefix", "prompt_shifted_prefix", "mia"]
    assert all(r.verdict in ("held", "recovered") and r.rule for r in res)
    assert res[1].details["threshold"] == 0.5 and set(res[1].forget) == {"leak@1", "leak@4", "leak_rate", "max"}


def test_attacks_need_heldout_records_of_the_same_kind(world):
    target, _, tok, forget, _, _ = world
    with pytest.raises(ObliviateError, match="held-out"):
        run_attacks(target, tok, forget, [], "sample")
    with pytest.raises(ObliviateError, match="one kind"):
        run_attacks(target, tok, forget, [TextRecord("t", "a", "b")], "sample")


def test_cli_audit_with_attacks(tmp_path):
    import json

    from typer.testing import CliRunner

    from obliviate.cli import app

    runner = CliRunner()
    base = ["audit", "--model", "world-micro-retain", "--data", "world:micro:forget", "--limit", "6",
            "--metrics", "ma,el"]
    refused = runner.invoke(app, [*base, "--attacks", "sample"])
    assert isinstance(refused.exception, ObliviateError) and "--heldout" in str(refused.exception)
    out = tmp_path / "audit"
    res = runner.invoke(app, [*base, "--attacks", "sample,quantize", "--heldout", "world:micro:holdout",
                              "--samples", "4", "--original", "world-micro-target", "--out", str(out)])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    attacks = {a["attack"]: a for a in summary["meta"]["attacks"]}
    assert set(attacks) == {"none", "sample", "quantize8", "quantize4"}
    assert summary["robust/sample/held"] == 1.0  # the exact-retrain model never saw these people
    assert set(attacks["sample"]["forget"]) == {"leak@1", "leak@4", "leak_rate", "max"}
    assert attacks["quantize8"]["original"]["ma"] > 0.9 and "recovery" in attacks["quantize8"]
    assert "robustness" in res.output and "held" in res.output


@pytest.mark.slow
def test_unlearn_runs_the_attacks_at_the_end(tmp_path, world):
    import json

    import obliviate

    target, _, tok, forget, _, _ = world
    common = ["train.lr=1e-3", "train.batch_size=8", "stop.max_epochs=2", "stop.el_threshold=null",
              "stop.ma_threshold=null", "stop.when_all_forgotten=false", "audit.attacks=sample,quantize",
              "audit.samples=4"]
    with pytest.raises(ObliviateError, match=r"audit\.heldout"):
        obliviate.unlearn(copy.deepcopy(target), forget, method="graddiff", retain=forget, tokenizer=tok,
                          out=tmp_path / "refused", overrides=["method_args.retain_loss=nll", *common])
    assert not (tmp_path / "refused").exists()  # refused before anything was written
    res = obliviate.unlearn("world-micro-target", forget, method="kumpr", out=tmp_path / "run",
                            overrides=[*common, "audit.heldout=world:micro:holdout"])
    saved = json.loads((tmp_path / "run" / "attacks.json").read_text())
    assert [a["attack"] for a in saved] == ["none", "sample", "quantize8", "quantize4"]
    assert saved[2]["original"]["ma"] > 0.9  # the original model was reloaded for the recovery ratios
    assert res.summary["robust/quantize8/held"] == (1.0 if saved[2]["verdict"] == "held" else 0.0)
    assert "robust/quantize8/recovery" in res.summary
    from obliviate.compare import build_table, header, load_rows

    table = build_table(load_rows([tmp_path / "run"]))
    assert "robust/quantize8/held" in table.columns and "robust/sample/held" in table.columns
    assert header("robust/quantize8/held").endswith("↑") and header("robust/quantize8/recovery").endswith("↓")
    report = (tmp_path / "run" / "report.html").read_text()
    assert "Robustness: does the forgetting survive" in report and "quantize4" in report
