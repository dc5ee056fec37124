"""The open-unlearning methods (RMU, UNDIAL, WGA, SatImp, CE-U, PDU, AltPO): golden values of their
pure losses on tiny tensors, decoder blocks by index on four architectures, and the engine
pieces they need (trainable-parameter selection, no reference held, PDU's dual state)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from obliviate.methods import get_method
from obliviate.methods import losses as L
from obliviate.methods.layers import capture_hidden, decoder_layers, mlp_out_module, select_parameters

# One row of 4 tokens, vocabulary of 3: positions 0, 1 predict labels 2 (token 1) and 3 (token 2).
LOGITS = torch.tensor([[[1.0, 2.0, 0.0], [0.0, 0.0, 3.0], [2.0, 1.0, 1.0], [0.0, 0.0, 0.0]]])
LABELS = torch.tensor([[-100, 1, 2, -100]])


def _p(row: list[float]) -> torch.Tensor:
    return torch.tensor(row).softmax(-1)


def test_wga_and_satimp_weights_by_hand():
    p1, p2 = _p([1.0, 2.0, 0.0])[1], _p([0.0, 0.0, 3.0])[2]
    lp1, lp2 = p1.log(), p2.log()
    assert torch.allclose(L.wga_loss(LOGITS, LABELS, 1.0), (p1 * lp1 + p2 * lp2) / 2, atol=1e-6)
    assert torch.allclose(L.wga_loss(LOGITS, LABELS, 0.0), (lp1 + lp2) / 2, atol=1e-6)  # beta 0 = plain ascent
    want = (p1 ** 5 * (1 - p1) * lp1 + p2 ** 5 * (1 - p2) * lp2) / 2
    assert torch.allclose(L.satimp_loss(LOGITS, LABELS, 5.0, 1.0), want, atol=1e-6)
    # the weights are detached: the gradient is w * d(log p), not d(w log p)
    logits = LOGITS.clone().requires_grad_(True)
    L.wga_loss(logits, LABELS, 1.0).backward()
    want_grad = p1 / 2 * (F.one_hot(torch.tensor(1), 3) - _p([1.0, 2.0, 0.0]))
    assert torch.allclose(logits.grad[0, 0], want_grad, atol=1e-6)


def test_undial_target_lowers_the_true_token_by_beta():
    ref = torch.tensor([[[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    beta = 2.0
    t1, t2 = _p([0.0, 1.0 - beta, 0.0]), _p([1.0, 0.0, -beta])
    q1, q2 = F.log_softmax(LOGITS[0, 0], -1), F.log_softmax(LOGITS[0, 1], -1)
    want = (-(t1 * q1).sum() - (t2 * q2).sum()) / 2
    assert torch.allclose(L.undial_loss(LOGITS, ref, LABELS, beta), want, atol=1e-6)
    # prompt and padding never count: a label-free row changes nothing
    two = torch.cat([LOGITS, LOGITS]), torch.cat([ref, ref]), torch.cat([LABELS, torch.full_like(LABELS, -100)])
    assert torch.allclose(L.undial_loss(*two, beta), want, atol=1e-6)


def test_ceu_target_drops_the_true_token_and_skips_the_first_answer_tokens():
    t2 = torch.tensor([1.0, 1.0, 0.0]).softmax(-1) * torch.tensor([1.0, 1.0, 0.0])
    t2 = t2 / t2.sum()  # position 1's own distribution without token 2: uniform on {0, 1}
    q2 = F.log_softmax(LOGITS[0, 1], -1)
    assert torch.allclose(L.ceu_loss(LOGITS, LABELS, ignore_first=1), -(t2 * q2).sum(), atol=1e-6)
    p1 = _p([1.0, 2.0, 0.0])
    t1 = torch.tensor([p1[0], 0.0, p1[2]]) / (p1[0] + p1[2])
    q1 = F.log_softmax(LOGITS[0, 0], -1)
    assert torch.allclose(L.ceu_loss(LOGITS, LABELS, ignore_first=0), (-(t1 * q1).sum() - (t2 * q2).sum()) / 2,
                          atol=1e-6)
    assert L.ceu_loss(LOGITS, LABELS, ignore_first=2) == 0  # nothing left to count


def test_logit_margin_flattening_and_masked_mse_by_hand():
    # position 0: max 2 - mean 1 = 1; position 1: 3 - 1 = 2 -> (1 + 4) / 2
    assert torch.allclose(L.logit_margin_flattening(LOGITS, LABELS), torch.tensor(2.5))
    assert L.logit_margin_flattening(torch.zeros(1, 4, 3), LABELS) == 0  # uniform: nothing to flatten
    h = torch.tensor([[[1.0, 1.0], [3.0, 1.0], [9.0, 9.0]], [[0.0, 0.0], [1.0, 4.0], [0.0, 0.0]]])
    mask = torch.tensor([[True, True, False], [False, True, False]])
    # against (1, 1): row 0 = (0 + (4 + 0) / 2) / 2 = 1 (position 2 masked); row 1 = (0 + 9) / 2 = 4.5
    assert torch.allclose(L.masked_mse(h, torch.tensor([1.0, 1.0]).expand_as(h), mask), torch.tensor(2.75))


def test_pdu_dual_update():
    from obliviate.methods.pdu import PDUConfig, dual_update

    cfg = PDUConfig(alpha=2.0, dual_step_size=0.5, dual_warmup_epochs=1)
    state = cfg.initial_state()
    assert state == {"lambda": 2.0}
    state = dual_update(cfg, state, {"pdu_retain": 1.5}, epoch=1)  # warm-up: epsilon taken, lambda kept
    assert state == {"lambda": 2.0, "epsilon": 1.5}
    state = dual_update(cfg, state, {"pdu_retain": 2.5}, epoch=2)
    assert state["lambda"] == 2.5  # 2 + 0.5 * (2.5 - 1.5)
    state = dual_update(cfg, state, {"pdu_retain": 0.0}, epoch=2)
    assert state["lambda"] == 1.75
    state = dual_update(cfg, {**state, "lambda": 0.1}, {"pdu_retain": 0.0}, epoch=3)
    assert state["lambda"] == 0.0  # projected onto lambda >= 0
    assert dual_update(PDUConfig(epsilon=0.3), {"lambda": 1.0}, {"pdu_retain": 9.0}, 1)["epsilon"] == 0.3


def test_altpo_pairs_every_alternate_with_its_owner():
    """AltPO's loss is IdkDPO's DPO loss over (alternate, owner's answer) pairs."""
    beta = 0.1
    win, lose = torch.tensor([-1.0, -3.0, -2.0]), torch.tensor([-4.0, -1.0])
    owner = torch.tensor([0, 0, 1])
    want = torch.stack([-2 / beta * F.logsigmoid(torch.tensor(beta * m)) for m in (3.0, 1.0, -1.0)]).mean()
    assert torch.allclose(L.dpo_loss(win, torch.zeros(3), lose[owner], torch.zeros(3), beta), want)


# --------------------------------------------------------------------------- decoder blocks by index

def _tiny(kind: str) -> torch.nn.Module:
    import transformers as T

    common = {"vocab_size": 50}
    torch.manual_seed(0)
    if kind == "llama":
        cfg = T.LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2, **common)
        return T.LlamaForCausalLM(cfg)
    if kind == "qwen2":
        cfg = T.Qwen2Config(hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2,
                            num_key_value_heads=1, **common)
        return T.Qwen2ForCausalLM(cfg)
    if kind == "gpt2":
        return T.GPT2LMHeadModel(T.GPT2Config(n_embd=16, n_layer=3, n_head=2, n_positions=32, **common))
    cfg = T.GPTNeoConfig(hidden_size=16, num_layers=3, num_heads=2, attention_types=[[["global", "local"], 1],
                                                                                     [["global"], 1]],
                         max_position_embeddings=32, **common)
    return T.GPTNeoForCausalLM(cfg)


MLP_OUT_NAME = {"llama": "mlp.down_proj", "qwen2": "mlp.down_proj", "gpt2": "mlp.c_proj", "gpt_neo": "mlp.c_proj"}
BLOCKS = {"llama": "model.layers", "qwen2": "model.layers", "gpt2": "transformer.h", "gpt_neo": "transformer.h"}


@pytest.mark.parametrize("kind", ["llama", "qwen2", "gpt2", "gpt_neo"])
def test_decoder_blocks_and_mlp_out_by_index(kind):
    model = _tiny(kind)
    prefix, blocks = decoder_layers(model)
    assert prefix == BLOCKS[kind] and len(blocks) == 3
    assert mlp_out_module(blocks[0]) == MLP_OUT_NAME[kind]
    names = select_parameters(model, [0, -1], "mlp_out")
    assert names == [f"{prefix}.0.{MLP_OUT_NAME[kind]}.weight", f"{prefix}.2.{MLP_OUT_NAME[kind]}.weight"]
    assert all(n in dict(model.named_parameters()) for n in names)
    # the hook sees exactly what output_hidden_states reports for that block
    ids = torch.tensor([[1, 2, 3, 4]])
    with capture_hidden(model, 1) as captured:
        out = model(input_ids=ids, output_hidden_states=True)
    assert len(captured) == 1 and torch.allclose(captured[0], out.hidden_states[2])
    from obliviate.errors import ObliviateError

    with pytest.raises(ObliviateError, match="has 3 decoder layers"):
        select_parameters(model, [5], "mlp_out")


def test_select_parameters_under_lora_and_by_regex():
    from peft import LoraConfig, get_peft_model

    model = _tiny("llama")
    assert select_parameters(model, [1], r"self_attn\.q_proj") == ["model.layers.1.self_attn.q_proj.weight"]
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["down_proj", "q_proj"]))
    names = select_parameters(peft_model, [1], "mlp_out")
    assert names and all("layers.1.mlp.down_proj.lora_" in n for n in names)
    from obliviate.errors import ObliviateError

    no_mlp = get_peft_model(_tiny("llama"), LoraConfig(r=2, target_modules=["q_proj"]))
    with pytest.raises(ObliviateError, match=r"train\.lora"):
        select_parameters(no_mlp, [1], "mlp_out")


# --------------------------------------------------------------------------- the engine pieces they use

@pytest.fixture(scope="module")
def micro():
    from obliviate.data.sources import load_data
    from obliviate.models import load_model

    model, tok = load_model("world-micro-target")
    return model, tok, load_data("world:micro:forget")[:16], load_data("world:micro:retain")[:32]


RMU_MICRO = ["train.lr=1e-2", "method_args.layer=1", "method_args.trainable_layers=[0,1]"]


def test_rmu_trains_only_the_selected_parameters(micro):
    import obliviate

    model, tok, forget, retain = micro
    res = obliviate.unlearn(copy.deepcopy(model), forget, method="rmu", retain=retain, tokenizer=tok,
                            overrides=[*RMU_MICRO, "stop.max_epochs=1", "train.batch_size=8", "eval.el=false",
                                       "stop.el_threshold=null", "train.gradient_accumulation_steps=1"])
    before, after = model.state_dict(), res.model.state_dict()
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert changed == ["model.layers.0.mlp.down_proj.weight", "model.layers.1.mlp.down_proj.weight"]
    assert res.history[1]["rmu_forget"] > 0 and res.history[1]["rmu_retain"] > 0


@pytest.mark.parametrize("name", ["wga", "satimp", "ceu"])
def test_reference_free_methods_hold_no_reference(name, micro):
    from obliviate.data.encode import encode_records
    from obliviate.engine import Engine, EvalConfig, StopConfig, TrainConfig, UnlearnData

    model, tok, forget, retain = micro
    spec = get_method(name)
    data = UnlearnData(forget=encode_records(forget, tok), retain=encode_records(retain, tok))
    engine = Engine(copy.deepcopy(model), tok, spec, spec.config(), data, train=TrainConfig(batch_size=8),
                    stop=StopConfig(el_threshold=None), evaluation=EvalConfig(retain=False, el=False))
    engine.setup()
    assert engine.ref.model is None and engine.ref.cache == {}
    with_ref = get_method("undial")
    engine = Engine(copy.deepcopy(model), tok, with_ref, with_ref.config(), data, train=TrainConfig(batch_size=8),
                    stop=StopConfig(el_threshold=None), evaluation=EvalConfig(retain=False, el=False))
    engine.setup()
    assert engine.ref.model is not None  # the check above can fail


def test_altpo_alternates_differ_from_the_answer_and_are_seeded(micro):
    from obliviate.data.encode import encode_records
    from obliviate.methods.altpo import AltPOConfig, sample_alternates

    model, tok, forget, _ = micro
    enc = encode_records(forget[:6], tok)
    cfg = AltPOConfig(alternates=3, max_new_tokens=24)
    alts = sample_alternates(model, tok, forget[:6], enc, cfg, seed=0)
    assert alts == sample_alternates(model, tok, forget[:6], enc, cfg, seed=0)
    assert [len(a) for a in alts] == [3] * 6
    for r, row in zip(forget, alts):  # a wrong answer, or None (= the true answer) when no sample differed
        assert all(a is None or a.strip().lower() != r.answer.strip().lower() for a in row)
    assert sum(a is not None for row in alts for a in row) >= 6, f"the micro model answers wrongly at T=1: {alts}"
    # None becomes the forget sample's own ids (a zero-gradient pair), anything else a new completion
    from obliviate.data.encode import DEFAULT_TEMPLATE
    from obliviate.engine.data import fixed_alternates

    built = fixed_alternates(forget[:1], enc[:1], [[None, "Somewhere else."]], tok, DEFAULT_TEMPLATE, "alt")(0)[0]
    assert built[0].ids == enc[0].ids and built[1].ids[:enc[0].prompt_len] == enc[0].ids[:enc[0].prompt_len]
    assert built[1].completion != enc[0].completion


def test_altpo_alternates_with_gpt2_tokenizer_keep_the_prompt(shared_data):
    """GPT-2's BPE, unicode: the prompt text is decoded from the encoded ids and re-encodes to them."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from obliviate.data.encode import DEFAULT_TEMPLATE, encode_records
    from obliviate.data.pile import load_gpt2_tokenizer
    from obliviate.data.records import QARecord
    from obliviate.engine.data import fixed_alternates
    from obliviate.methods.altpo import AltPOConfig, sample_alternates

    gpt2_tokenizer = load_gpt2_tokenizer(shared_data / "gpt2-tokenizer")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(gpt2_tokenizer), n_embd=16, n_layer=1, n_head=2)).eval()
    recs = [QARecord("q1", "Où est né Zoë Ångström?", "À Malmö — près de la mer."), QARecord("q2", "Why?", "Yes.")]
    enc = encode_records(recs, gpt2_tokenizer)
    alts = sample_alternates(model, gpt2_tokenizer, recs, enc, AltPOConfig(alternates=2, max_new_tokens=8), seed=1)
    built = fixed_alternates(recs, enc, alts, gpt2_tokenizer, DEFAULT_TEMPLATE, "alt")(0)
    for e, row in zip(enc, built):
        assert [a.ids[:a.prompt_len] for a in row] == [e.ids[:e.prompt_len]] * 2
        assert all(a.completion[-1] == gpt2_tokenizer.eos_token_id for a in row)


def test_pdu_lambda_moves_and_is_logged(micro):
    import obliviate

    model, tok, forget, retain = micro
    res = obliviate.unlearn(copy.deepcopy(model), forget, method="pdu", retain=retain, tokenizer=tok,
                            overrides=["train.lr=1e-3", "train.batch_size=8", "train.gradient_accumulation_steps=1",
                                       "train.scheduler=constant", "stop.max_epochs=2", "stop.el_threshold=null",
                                       "stop.ma_threshold=null", "method_args.dual_warmup_epochs=1",
                                       "method_args.dual_step_size=10", "eval.el=false"])
    first, second = res.history[1], res.history[2]
    assert first["lambda"] == 1.0 and math.isfinite(first["epsilon"])  # warm-up: lambda unchanged
    assert second["lambda"] != 1.0  # then the dual step moves it


def test_rmu_under_lora_trains_only_the_selected_adapters(micro):
    """Under LoRA the reference is the adapter-disabled model and only the adapters of the selected
    projections move (merged into the saved weights: only those two matrices differ)."""
    import obliviate

    model, tok, forget, retain = micro
    res = obliviate.unlearn(copy.deepcopy(model), forget, method="rmu", retain=retain, tokenizer=tok,
                            overrides=[*RMU_MICRO, "stop.max_epochs=1", "train.batch_size=8", "eval.el=false",
                                       "stop.el_threshold=null", "train.gradient_accumulation_steps=1",
                                       "train.lora.enabled=true"])
    before, after = model.state_dict(), res.model.state_dict()
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert changed == ["model.layers.0.mlp.down_proj.weight", "model.layers.1.mlp.down_proj.weight"]
    row = res.history[1]
    assert row["rmu_forget"] > 0 and row["rmu_retain"] > 0  # the retain activations moved, a little


def test_rmu_layer_beyond_the_model_fails_before_writing(micro, tmp_path):
    import obliviate
    from obliviate.errors import ObliviateError

    model, tok, forget, retain = micro
    with pytest.raises(ObliviateError, match=r"method_args\.layer=7, but the model has 2 decoder layers"):
        obliviate.unlearn(copy.deepcopy(model), forget, method="rmu", retain=retain, tokenizer=tok,
                          out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_rmu_direction_is_a_fixed_unit_vector():
    from obliviate.methods.rmu import random_direction

    u = random_direction(64, seed=0)
    assert torch.allclose(u.norm(), torch.tensor(1.0)) and (u >= 0).all()  # U[0, 1) entries, normalised
    assert torch.equal(u, random_direction(64, seed=0)) and not torch.equal(u, random_direction(64, seed=1))


def _tiny_batches(tok):
    from obliviate.data.encode import Encoded, collate

    forget = collate([Encoded((5, 6, 7, 8, 9), 2), Encoded((10, 11, 12), 1)], tok.pad_token_id)
    alternate = collate([Encoded((5, 6, 20, 21), 2), Encoded((5, 6, 22), 2), Encoded((10, 30, 31), 1)],
                        tok.pad_token_id)
    retain = collate([Encoded((40, 41, 42, 43), 1), Encoded((44, 45, 46), 2)], tok.pad_token_id)
    return forget, alternate, retain


def test_altpo_loss_on_a_tiny_model_by_hand(tiny_model, tiny_tokenizer):
    """Cached reference log-probs offset by known amounts give known DPO margins per (alternate, owner) pair."""
    from obliviate.engine.reference import FrozenReference
    from obliviate.methods.altpo import AltPOConfig, altpo_loss
    from obliviate.methods.base import MethodBatch

    forget, alternate, _ = _tiny_batches(tiny_tokenizer)
    with torch.no_grad():
        lose = L.sequence_logprob(L.forward_logits(tiny_model, forget), forget.labels)
        win = L.sequence_logprob(L.forward_logits(tiny_model, alternate), alternate.labels)
    a, b = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 3.0, -1.0])  # log-ratio = -offset
    ref = FrozenReference(None, {"forget": lose + a, "alternate": win + b})
    batch = MethodBatch(forget=forget, index=torch.tensor([0, 1]), alternate=alternate,
                        alternate_owner=torch.tensor([0, 0, 1]), alternate_index=torch.tensor([0, 1, 2]))
    cfg = AltPOConfig(beta=0.5, alpha=0.0)
    margins = torch.tensor([a[0] - b[0], a[0] - b[1], a[1] - b[2]])  # (w - w_ref) - (l - l_ref) = a - b
    want = (-2 / 0.5 * F.logsigmoid(0.5 * margins)).mean()
    assert torch.allclose(altpo_loss(tiny_model, batch, cfg, ref).loss, want, atol=1e-5)


def test_pdu_loss_on_a_tiny_model_by_hand(tiny_model, tiny_tokenizer):
    from obliviate.engine.reference import FrozenReference
    from obliviate.methods.base import MethodBatch
    from obliviate.methods.pdu import PDUConfig, pdu_loss

    forget, _, retain = _tiny_batches(tiny_tokenizer)
    batch = MethodBatch(forget=forget, index=torch.tensor([0, 1]), retain=retain, state={"lambda": 2.5})
    with torch.no_grad():
        logits = L.forward_logits(tiny_model, forget)[0, 1:4]  # row 0 predicts labels 2..4 from positions 1..3
        flat = ((logits.max(-1).values - logits.mean(-1)) ** 2)
        logits1 = L.forward_logits(tiny_model, forget)[1, 0:2]  # row 1 predicts labels 1..2 from positions 0..1
        flat = torch.cat([flat, (logits1.max(-1).values - logits1.mean(-1)) ** 2]).mean()
        nll = L.mean_nll(L.forward_logits(tiny_model, retain), retain.labels)
    out = pdu_loss(tiny_model, batch, PDUConfig(gamma=0.5), FrozenReference(None))
    assert torch.allclose(out.loss, 0.5 * flat + 2.5 * nll, atol=1e-5)
    assert out.logs["pdu_retain"] == pytest.approx(nll.item(), abs=1e-6)
