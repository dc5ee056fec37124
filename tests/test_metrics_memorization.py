"""MA and EL_n: hand-computed golden values, and the fast versions equal the reference loops.

The golden values use a *successor model*: a real GPT-2 module (no transformer blocks) whose
weights are set so that its greedy next token is (current token + 1) mod V, whatever the
position. Its continuations can be written down by hand.
"""

from __future__ import annotations

import random
from fractions import Fraction

import pytest
import torch

from obliviate.data.encode import Encoded
from obliviate.errors import DataError
from obliviate.metrics import extraction_likelihood, memorization_accuracy, ngram_overlap
from obliviate.metrics._model import greedy_generation_config
from obliviate.metrics.memorization import ForgetThresholds, batched_greedy_continuations, el_starts
from obliviate.metrics.reference_loops import (
    reference_extraction_likelihood,
    reference_greedy_continuations,
    reference_memorization_accuracy,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run fastest on one thread; with other processes on the same cores, a second
    thread turns every op into a wait for a free core (10 ms instead of 10 us)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def successor_model(vocab: int, eos: int | None = None):
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=vocab, n_positions=256, n_embd=vocab, n_layer=0, n_head=1,
                     tie_word_embeddings=False, bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    model = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        model.transformer.wte.weight.copy_(torch.eye(vocab) * 10)
        model.transformer.wpe.weight.zero_()
        succ = torch.zeros(vocab, vocab)
        for u in range(vocab):
            succ[(u + 1) % vocab, u] = 1.0
        model.lm_head.weight.copy_(succ)
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = eos
    return model


def enc(ids, prompt_len=0, rid="r"):
    return Encoded(tuple(ids), prompt_len, rid)


# --------------------------------------------------------------------------- golden values

def test_ngram_overlap_hand_computed():
    # label bigrams {(1,2),(2,2),(2,0),(0,1)} (5 with repeats); every predicted bigram is in the set,
    # (1,2) and (2,0) twice each: multiplicity in the numerator, 5/5.
    assert ngram_overlap([1, 2, 0, 1, 2, 0], [1, 2, 2, 2, 0, 1], 2) == 1.0
    assert ngram_overlap([2, 0, 1, 2, 0], [2, 2, 2, 0, 1], 2) == 0.75
    assert ngram_overlap([5, 6, 7], [1, 2, 3], 2) == 0.0
    assert ngram_overlap([1, 2, 3, 4], [1, 2, 3, 4], 4) == 1.0
    with pytest.raises(ValueError):
        ngram_overlap([1], [1], 2)


def test_successor_model_is_what_the_goldens_assume():
    model = successor_model(5)
    assert model(torch.tensor([[0, 3, 4]])).logits.argmax(-1).tolist() == [[1, 4, 0]]


def test_perfect_reproduction_gives_one_and_disjoint_gives_zero():
    model = successor_model(7)
    perfect = enc([(3 + t) % 7 for t in range(20)])
    jumps = enc([(2 * t) % 7 for t in range(20)])  # the model predicts +1, the text goes +2
    el = extraction_likelihood(model, [perfect, jumps], n=3)
    ma = memorization_accuracy(model, [perfect, jumps])
    assert el.per_sample == [1.0, 0.0]
    assert ma.per_sample == [1.0, 0.0]
    assert el.name == "el_3" and ma.name == "ma"
    assert el.value == 0.5


def test_el_and_ma_hand_computed_with_repeated_ngrams():
    model = successor_model(3)
    x = enc([0, 1, 2, 2, 2, 0, 1])
    el = extraction_likelihood(model, [x], n=2)
    # start i=1..5: overlaps 5/5, 3/4, 2/3, 1/2, 1/1 (worked out in the module docstring of this test)
    expected = [Fraction(1), Fraction(3, 4), Fraction(2, 3), Fraction(1, 2), Fraction(1)]
    assert el.details["per_position"][0] == pytest.approx([float(f) for f in expected], abs=0)
    assert el.value == pytest.approx(float(sum(expected) / 5), abs=1e-15)  # 47/60, denominator T - n = 5
    assert el.details["starts"] == [[1, 5]]
    ma = memorization_accuracy(model, [x])
    assert ma.value == pytest.approx(4 / 6)  # wrong only at t=3 and t=4


def test_eos_stop_versus_ignore_hand_computed():
    model = successor_model(4, eos=3)
    x = enc([0, 1, 2, 3, 0, 1, 2, 3])
    ignore = extraction_likelihood(model, [x], n=2, eos="ignore")
    stop = extraction_likelihood(model, [x], n=2, eos="stop")
    assert ignore.value == 1.0
    # after a generated eos the row is filled with eos: i=1 -> 1,2,3,3,3,3,3 (2 of 6 bigrams), i=2 -> 1/5,
    # i=3 -> 0; i>=4 start after the eos *in the prefix*, which does not stop anything.
    assert stop.details["per_position"][0] == pytest.approx([2 / 6, 1 / 5, 0.0, 1.0, 1.0, 1.0], abs=1e-15)
    assert stop.value == pytest.approx(53 / 90, abs=1e-15)
    ref = reference_extraction_likelihood(model, [x], n=2, eos="stop")
    assert ref.details["per_position"] == stop.details["per_position"]


def test_completion_region_is_icu_positions():
    model = successor_model(11)
    row = enc([t % 11 for t in range(200)], prompt_len=150)
    assert list(el_starts(row, 10, "completion")) == list(range(150, 191))  # 41 positions, as ICU
    assert len(el_starts(row, 10, "all")) == 190
    el = extraction_likelihood(model, [row], n=10, region="completion")
    assert len(el.details["per_position"][0]) == 41 and el.value == 1.0
    ma = memorization_accuracy(model, [row], region="completion")
    assert ma.details["positions"] == [50] and ma.value == 1.0


def test_short_sequences_raise_naming_the_record():
    model = successor_model(5)
    with pytest.raises(DataError, match=r"rec-7.*at least 11"):
        extraction_likelihood(model, [enc(range(5), rid="rec-7")], n=10)
    with pytest.raises(DataError, match=r"rec-8.*no start position"):
        extraction_likelihood(model, [enc([0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1], prompt_len=8, rid="rec-8")],
                              n=10, region="completion")
    with pytest.raises(DataError, match=r"rec-9.*no scorable positions"):
        memorization_accuracy(model, [enc([1, 2, 3], prompt_len=3, rid="rec-9")], region="completion")


def test_thresholds_are_strict():
    th = ForgetThresholds(ma=0.5, el=0.05, n=10)
    assert th.forgotten(0.49, 0.049) and not th.forgotten(0.5, 0.01) and not th.forgotten(0.1, 0.05)
    assert th.to_dict()["el_10"] == 0.05


# --------------------------------------------------------------------------- fast == reference

def _partly_memorized(model, vocab: int, shapes, seed: int, flips: int = 3):
    """Sequences the model half-reproduces: its own greedy output with a few tokens replaced."""
    rng = random.Random(seed)
    out = []
    for k, (length, prompt_len) in enumerate(shapes):
        start = torch.tensor([[rng.randrange(1, vocab) for _ in range(3)]])
        cfg = greedy_generation_config(max_new_tokens=length - 3, pad_token_id=0, eos_token_id=[])
        seq = model.generate(input_ids=start, attention_mask=torch.ones_like(start), generation_config=cfg)[0].tolist()
        for _ in range(flips):
            seq[rng.randrange(3, length)] = rng.randrange(1, vocab)
        out.append(enc(seq, prompt_len, f"s{k}"))
    return out


SHAPES = [(30, 10), (30, 10), (24, 5), (36, 20), (30, 12), (18, 9)]


def _gpt2_random():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(1)  # learned absolute positions: what breaks under wrong left-padding positions
    return GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=128, n_embd=48, n_layer=2, n_head=4,
                                      bos_token_id=0, eos_token_id=0, pad_token_id=0)).eval()


@pytest.fixture(scope="module")
def models(tiny_model):
    return {"llama": tiny_model, "gpt2": _gpt2_random()}


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_batched_el_equals_reference_loop_exactly(models, arch):
    model = models[arch]
    vocab = model.config.vocab_size
    examples = _partly_memorized(model, vocab, SHAPES, seed=3)
    # make eos a token the model actually emits, so "stop" matters
    counts = torch.bincount(torch.tensor([t for e in examples for t in e.ids]), minlength=vocab)
    eos = int(counts.argsort(descending=True)[1])
    old = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = eos
    try:
        for region in ("all", "completion"):
            for eos_mode in ("stop", "ignore"):
                fast = extraction_likelihood(model, examples, n=4, region=region, batch_size=23, eos=eos_mode)
                ref = reference_extraction_likelihood(model, examples, n=4, region=region, batch_size=4, eos=eos_mode)
                assert fast.details["per_position"] == ref.details["per_position"], (region, eos_mode)
                assert fast.per_sample == ref.per_sample and fast.value == ref.value
                assert 0.05 < fast.value < 0.95  # a real mix of reproduced and diverging continuations
    finally:
        model.generation_config.eos_token_id = old


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_batched_continuations_equal_generate(models, arch):
    model = models[arch]
    examples = _partly_memorized(model, model.config.vocab_size, SHAPES[:3], seed=5)
    starts = [list(range(1, len(e.ids))) for e in examples]
    ref = reference_greedy_continuations(model, examples, starts, eos="ignore")
    seqs = [e.ids for e, s in zip(examples, starts) for _ in s]
    flat_starts = [i for s in starts for i in s]
    fast = batched_greedy_continuations(model, seqs, flat_starts, batch_size=7, eos="ignore")
    expected = [ref[k][i] for k, s in enumerate(starts) for i in s]
    assert fast == expected


def test_rows_with_distinct_unsorted_prefixes_keep_their_own_continuations(models):
    """Rows of different texts decoded together: their shared-prefix pass must not swap them
    (torch.unique sorts the prefixes)."""
    model = models["llama"]
    a, b = [9, 8, 7, 6, 5, 4], [1, 2, 3, 4, 5, 6]  # a > b lexicographically: unique() reorders them
    ref = reference_greedy_continuations(model, [enc(a), enc(b)], [[3], [3]], eos="ignore")
    fast = batched_greedy_continuations(model, [a, b], [3, 3], batch_size=2, eos="ignore")
    assert fast == [ref[0][3], ref[1][3]]


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_forward_ma_equals_per_position_generation(models, arch):
    model = models[arch]
    examples = _partly_memorized(model, model.config.vocab_size, SHAPES, seed=7, flips=6)
    for region in ("all", "completion"):
        fast = memorization_accuracy(model, examples, region=region, batch_size=4)
        ref = reference_memorization_accuracy(model, examples, region=region)
        assert fast.per_sample == ref.per_sample
        assert 0.1 < fast.value < 0.95


def test_metrics_restore_training_mode(tiny_model):
    tiny_model.train()
    try:
        memorization_accuracy(tiny_model, [enc(range(1, 12))])
        assert tiny_model.training
    finally:
        tiny_model.eval()
