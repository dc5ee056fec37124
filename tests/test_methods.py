"""Methods: golden values of the pure loss pieces, and every method really forgetting on the
synthetic micro world while retain perplexity stays within a stated bound."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from obliviate.data.encode import Encoded, collate
from obliviate.methods import METHODS, get_method
from obliviate.methods import losses as L

GRADIENT_METHODS = ("icu", "kumpr", "graddiff", "kl", "npo", "simnpo", "idkdpo", "llmu",
                    "rmu", "undial", "wga", "satimp", "ceu", "pdu", "altpo")

# --------------------------------------------------------------------------- golden loss values


def _batch(tiny_tokenizer):
    examples = [Encoded((5, 6, 7, 8, 9), 2), Encoded((10, 11, 12), 1)]
    return collate(examples, tiny_tokenizer.pad_token_id)


def test_mean_nll_equals_huggingface_loss(tiny_model, tiny_tokenizer):
    batch = _batch(tiny_tokenizer)
    logits = L.forward_logits(tiny_model, batch)
    hf = tiny_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids,
                    labels=batch.labels).loss
    assert torch.allclose(L.mean_nll(logits, batch.labels), hf, atol=1e-6)


def test_sequence_logprob_by_hand():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 7)
    labels = torch.tensor([[-100, 3, 1, -100], [-100, -100, 6, 2]])
    logp = F.log_softmax(logits, -1)
    want = torch.tensor([logp[0, 0, 3] + logp[0, 1, 1], logp[1, 1, 6] + logp[1, 2, 2]])
    assert torch.allclose(L.sequence_logprob(logits, labels), want, atol=1e-6)
    assert torch.allclose(L.sequence_mean_nll(logits, labels), -want / 2, atol=1e-6)


def test_kl_to_reference_is_a_masked_true_kl():
    torch.manual_seed(0)
    ref, cur = torch.randn(1, 3, 5), torch.randn(1, 3, 5)
    labels = torch.tensor([[-100, 2, -100]])  # only position 0 (predicting token 1) counts
    p, q = F.softmax(ref[0, 0], -1), F.softmax(cur[0, 0], -1)
    want = (p * (p.log() - q.log())).sum()
    assert torch.allclose(L.kl_to_reference(ref, cur, labels), want, atol=1e-6)
    assert L.kl_to_reference(ref, ref, labels).abs() < 1e-6  # 0 when nothing changed
    # the reference code's term is the cross-entropy over every position: never 0
    ce_same = L.reference_cross_entropy(ref, ref)
    entropy = -(F.softmax(ref, -1) * F.log_softmax(ref, -1)).sum(-1).mean()
    assert torch.allclose(ce_same, entropy, atol=1e-5) and ce_same > 0.5


def test_preference_losses_by_hand():
    beta = 0.1
    zero = torch.zeros(3)
    assert torch.allclose(L.npo_loss(zero, zero, beta), torch.tensor(2 / beta * math.log(2)))
    # NPO decreases as the forget log-prob drops below the reference
    assert L.npo_loss(torch.full((1,), -5.0), zero[:1], beta) < L.npo_loss(zero[:1], zero[:1], beta)
    win, lose = torch.tensor([1.0]), torch.tensor([-2.0])
    want = -2 / beta * F.logsigmoid(torch.tensor(beta * 3.0))
    assert torch.allclose(L.dpo_loss(win, zero[:1], lose, zero[:1], beta), want)
    assert torch.allclose(L.simnpo_loss(torch.tensor([2.0]), 4.5, 0.0),
                          -2 / 4.5 * F.logsigmoid(torch.tensor(9.0)))


def test_registry_names_and_aliases():
    assert set(GRADIENT_METHODS) <= set(METHODS)
    assert get_method("ga").name == "kumpr" and get_method("DPO").name == "idkdpo"
    from obliviate.errors import ObliviateError

    with pytest.raises(ObliviateError, match="unknown method 'sgd'"):
        get_method("sgd")


def test_refusals_file_formats(tmp_path):
    from obliviate.data.refusals import load_refusals
    from obliviate.errors import DataError

    builtin, source = load_refusals(None)
    assert source == "builtin" and builtin[0] == "I'm sorry, but I can't help with that question."
    f = tmp_path / "idk.jsonl"
    f.write_text('I have no idea.\n"A JSON string."\n{"text": "An object."}\n\n')
    assert load_refusals(str(f))[0] == ["I have no idea.", "A JSON string.", "An object."]
    f.write_text('{"other": 1}\n')
    with pytest.raises(DataError, match="line 1"):
        load_refusals(str(f))


# --------------------------------------------------------------------------- every method forgets

# Retain perplexity after unlearning may be at most this many times the original model's.
RETAIN_PPL_BOUND = 1.5
COMMON = ["train.lr=1e-3", "train.gradient_accumulation_steps=1", "train.scheduler=constant", "train.batch_size=8",
          "stop.max_epochs=3", "eval.max_retain_samples=60"]
# A tiny model needs larger steps than the papers' (lr 5e-6 .. 5e-5 for 125M+ models); a few
# epochs each, as many as it takes to forget clearly without leaving the retain bound.
EXTRA = {
    "kumpr": ["stop.max_epochs=2"],  # one step per epoch (the whole forget set)
    "graddiff": ["stop.max_epochs=2"],
    "kl": ["stop.max_epochs=2"],
    "npo": ["train.lr=5e-4"],
    "simnpo": ["train.lr=3e-3"],  # its forget term is weighted by gamma = 0.125
    "idkdpo": ["train.lr=2e-3"],
    "llmu": ["train.batch_size=4", "method_args.mismatch_answers=2"],
    # the micro model has 2 decoder blocks: steer the last one, train both MLP output projections
    "rmu": ["train.lr=1e-2", "method_args.layer=1", "method_args.trainable_layers=[0,1]"],
    "pdu": ["method_args.dual_warmup_epochs=1"],
    "altpo": ["train.lr=2e-3", "method_args.alternates=2"],
}


@pytest.fixture(scope="module")
def micro_world():
    from obliviate.data.sources import load_data
    from obliviate.models import load_model

    model, tok = load_model("world-micro-target")
    return model, tok, load_data("world:micro:forget")[:20], load_data("world:micro:retain")[:60]


@pytest.fixture(scope="module")
def micro_analogous(micro_world):
    from obliviate.neighbors import build_analogous

    _, _, forget, retain = micro_world
    return build_analogous(forget, retain).records


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_method_forgets_on_micro_world(name, micro_world, micro_analogous):
    import obliviate

    model, tok, forget, retain = micro_world
    kwargs = {"analogous": micro_analogous} if name == "icu" else {}
    res = obliviate.unlearn(copy.deepcopy(model), forget, method=name, retain=retain, tokenizer=tok,
                            overrides=[*COMMON, *EXTRA.get(name, [])], **kwargs)
    before, after = res.history[0], res.history[-1]
    print(f"\n{name}: {len(res.history) - 1} epochs ({res.stop_reason}); MA {before['ma']:.3f} -> {after['ma']:.3f}, "
          f"EL10 {before['el_10']:.3f} -> {after['el_10']:.3f}, retain ppl {before['retain_ppl']:.4f} -> "
          f"{after['retain_ppl']:.4f} (bound x{RETAIN_PPL_BOUND})")
    assert after["ma"] < before["ma"] and after["el_10"] < before["el_10"]
    assert after["el_10"] < 0.6 * before["el_10"], "EL10 should drop substantially, not just move"
    assert after["retain_ppl"] <= RETAIN_PPL_BOUND * before["retain_ppl"]


def test_alternate_completions(micro_world):
    from obliviate.data.encode import DEFAULT_TEMPLATE, encode_records
    from obliviate.engine import mismatch_alternates, refusal_alternates

    _, tok, forget, retain = micro_world
    enc_f, enc_r = encode_records(forget[:3], tok), encode_records(retain[:10], tok)
    refusals = refusal_alternates(forget[:3], enc_f, ["I don't know."], tok, DEFAULT_TEMPLATE, seed=0)(0)
    for f, [alt] in zip(enc_f, refusals):
        assert alt.ids[:alt.prompt_len] == f.ids[:f.prompt_len] and alt.prompt_len == f.prompt_len
        assert tok.decode(alt.completion, skip_special_tokens=True).strip() == "I don't know."
        assert alt.completion[-1] == tok.eos_token_id  # QA completions end with eos, as the answers do
    draw = mismatch_alternates(enc_f, enc_r, k=2, seed=0)
    one, again, other = draw(1), draw(1), draw(2)
    assert one == again and one != other  # seeded by epoch: a resumed run redraws the same ones
    retain_completions = {e.completion for e in enc_r}
    for f, alts in zip(enc_f, one):
        assert len(alts) == 2
        assert all(a.ids[:a.prompt_len] == f.ids[:f.prompt_len] and a.completion in retain_completions for a in alts)


def test_icu_reference_code_options(micro_world, micro_analogous):
    """``loss_region=all`` + ``kl=reference_ce`` (the ICU code's loss) runs; its KL term is a
    cross-entropy that includes the reference's entropy, so it is far above the true KL."""
    import obliviate

    model, tok, forget, _ = micro_world
    res = obliviate.unlearn(copy.deepcopy(model), forget, method="icu", analogous=micro_analogous, tokenizer=tok,
                            overrides=[*COMMON, "stop.max_epochs=1", "method_args.loss_region=all",
                                       "method_args.kl=reference_ce", "refinement.enabled=false"])
    row = res.history[1]
    assert row["kl_term"] > row["kl"] + 0.05 and row["kl"] >= 0
    from obliviate.errors import ObliviateError

    with pytest.raises(ObliviateError, match=r"method_args\.kl"):
        obliviate.unlearn(copy.deepcopy(model), forget, method="icu", analogous=micro_analogous, tokenizer=tok,
                          overrides=["method_args.kl=ce"])
