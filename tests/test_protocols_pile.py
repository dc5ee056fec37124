"""The pile-extraction protocol end to end (`obliviate eval --benchmark pile`) on a tiny GPT-2-vocabulary model.

The benchmark's rows are GPT-2 token ids, so a GPT-2-vocabulary model sees exactly the benchmark
tokens. The model here is a randomly initialised 2-layer GPT-2 (nothing memorized): the test checks
the protocol's wiring -- which rows, which positions, which prompts -- against direct computations
from the raw ``.npy`` arrays, and the thresholds verdict against the per-row numbers.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from obliviate.protocols.base import read_eval, read_per_sample

LIMIT = 3  # forget-set rows evaluated


@pytest.fixture(scope="module")
def pile(shared_data):
    return shared_data / "pile-extraction"


@pytest.fixture(scope="module")
def tiny_gpt2(pile, tmp_path_factory):
    """A random 2-layer GPT-2 with GPT-2's 50,257-token vocabulary, saved as an ordinary HF folder."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from obliviate.data.pile import load_gpt2_tokenizer
    from obliviate.models import save_model

    tok = load_gpt2_tokenizer(pile.parent / "gpt2-tokenizer")
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=256, n_embd=32, n_layer=2, n_head=2,
                     bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id)
    return save_model(GPT2LMHeadModel(cfg).eval(), tok, tmp_path_factory.mktemp("gpt2") / "tiny-gpt2")


def raw_rows(pile) -> np.ndarray:
    """The first LIMIT rows of lm_extraction_128_0 straight from the benchmark files: [pre-prefix | prefix | suffix]."""
    ids = json.loads((pile / "forget_sets.json").read_text())["sets"]["lm_extraction_128_0"][:LIMIT]
    parts = [np.load(pile / f"train_{name}.npy")[ids] for name in ("preprefix", "prefix", "suffix")]
    return np.concatenate(parts, axis=1).astype(np.int64)


@pytest.mark.slow
def test_cli_pile_protocol_on_a_tiny_gpt2(pile, tiny_gpt2, tmp_path):
    from typer.testing import CliRunner

    from obliviate.cli import app
    from obliviate.models import load_model

    out = tmp_path / "eval"
    res = CliRunner().invoke(app, ["eval", "--model", str(tiny_gpt2), "--benchmark", "pile", "--data", str(pile),
                                   "--limit", str(LIMIT), "--out", str(out), "wiki_docs=2"])
    assert res.exit_code == 0, res.output
    doc = read_eval(out)
    m, details = doc["metrics"], doc["details"]
    assert doc["benchmark"] == "pile-extraction"
    assert {"forget/ma", "forget/el_10", "forget/bleu_icu", "forget/bertscore_f1",
            "forget/entropy", "forget/exact", "forget/forgotten", "wiki/ppl"} <= set(m)
    assert details["exact_ids"] is True and details["rows"] == LIMIT  # the benchmark's own GPT-2 ids
    assert details["forget_set"] == "lm_extraction_128_0"
    assert "forget/el_10_kumpr" not in m  # KUMPR's positions (every start, ~4.6x the decoding) only on request
    assert details["bertscore_backbone"]  # the offline backbone is named

    # MA over every position of the 200-token rows, computed here from the raw arrays
    model, _ = load_model(tiny_gpt2)
    rows = torch.from_numpy(raw_rows(pile))
    assert rows.shape == (LIMIT, 200)
    with torch.no_grad():
        hits = (model(input_ids=rows).logits[:, :-1].argmax(-1) == rows[:, 1:]).float()
    per = read_per_sample(out)
    assert [r["id"] for r in per] == [str(i) for i in
                                      json.loads((pile / "forget_sets.json").read_text())["sets"]["lm_extraction_128_0"][:LIMIT]]
    assert [r["ma"] for r in per] == pytest.approx(hits.mean(1).tolist(), abs=1e-9)
    assert m["forget/ma"] == pytest.approx(hits.mean().item())

    # generation: greedy, 50 new tokens from the 50-token benchmark prefix, scored against the suffix
    from obliviate.data.pile import load_gpt2_tokenizer

    tok = load_gpt2_tokenizer(pile.parent / "gpt2-tokenizer")
    with torch.no_grad():
        gen = model.generate(rows[:1, 100:150], attention_mask=torch.ones(1, 50, dtype=torch.long), do_sample=False,
                             max_new_tokens=50, min_new_tokens=50, pad_token_id=tok.eos_token_id)[0, 50:]
    assert per[0]["prompt"] == tok.decode(rows[0, 100:150].tolist(), clean_up_tokenization_spaces=False)
    assert per[0]["reference"] == tok.decode(rows[0, 150:].tolist(), clean_up_tokenization_spaces=False)
    assert per[0]["generation"] == tok.decode(gen.tolist(), skip_special_tokens=True)

    # the thresholds verdict (ICU: MA 0.5994, EL_10 0.0499): an untrained model has memorized nothing
    verdict = details["verdict"]
    assert (verdict["ma"], verdict["el_10"]) == (0.5994, 0.0499) and verdict["forgotten"] is True
    below = [r["ma"] < 0.5994 and r["el_10"] < 0.0499 for r in per]
    assert m["forget/forgotten"] == sum(below) / LIMIT == 1.0
    assert m["forget/exact"] == 0.0
    # a near-uniform next-token distribution over 50,257 ids: perplexity close to the vocabulary size
    assert 0.7 * 50257 < m["wiki/ppl"] < 1.3 * 50257
    assert math.isfinite(m["forget/entropy"]) and 0 <= m["forget/entropy"] <= math.log2(50)

    # the same folder again without --overwrite: refused, nothing replaced
    before = (out / "eval.json").read_text()
    res = CliRunner().invoke(app, ["eval", "--model", str(tiny_gpt2), "--benchmark", "pile", "--data", str(pile),
                                   "--limit", "1", "--out", str(out)])
    assert res.exit_code != 0 and "--overwrite" in str(res.exception)
    assert (out / "eval.json").read_text() == before


def test_pile_options_are_checked(pile, tiny_gpt2, monkeypatch):
    from obliviate.errors import ObliviateError
    from obliviate.models import load_model
    from obliviate.protocols.pile import PileOptions, run_pile

    model, tok = load_model(tiny_gpt2)
    with pytest.raises(ObliviateError, match="set must be 0-4"):
        run_pile(model, tok, PileOptions(folder=str(pile), set=7))
    with pytest.raises(ObliviateError, match="convention"):
        run_pile(model, tok, PileOptions(folder=str(pile), convention="sometimes"))
    monkeypatch.delenv("OBLIVIATE_PILE_DIR", raising=False)
    with pytest.raises(ObliviateError, match="benchmark folder"):
        run_pile(model, tok, PileOptions())
