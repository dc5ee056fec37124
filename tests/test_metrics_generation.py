"""generate_completions: batched, left-padded generation equals one-at-a-time generation (the
place where position ids under left padding break); exact extraction on hand-made cases."""

from __future__ import annotations

import pytest
import torch

from obliviate.data.encode import Encoded
from obliviate.metrics import exact_extraction, generate_completions
from obliviate.metrics._model import greedy_generation_config

pytestmark = pytest.mark.usefixtures("one_thread")


def _gpt2(vocab: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(2)  # learned absolute positions
    return GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=128, n_embd=48, n_layer=2, n_head=4,
                                      bos_token_id=0, eos_token_id=0, pad_token_id=0)).eval()


def _one_by_one(model, example: Encoded, new: int, beams: int, eos: int) -> list[int]:
    prompt = torch.tensor([example.ids[:example.prompt_len]])
    cfg = greedy_generation_config(max_new_tokens=new, pad_token_id=eos, eos_token_id=[eos], num_beams=beams)
    out = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), generation_config=cfg)
    ids = out[0, prompt.shape[1]:].tolist()
    return ids[:ids.index(eos) + 1] if eos in ids else ids


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("beams", [1, 2])
def test_batched_left_padded_generation_equals_unpadded(arch, beams, tiny_model, tiny_tokenizer):
    model = tiny_model if arch == "llama" else _gpt2(len(tiny_tokenizer))
    texts = ["The quick brown fox", "Alice was born in 1961 in Lyon and worked", "It was",
             "Bob Smith lives at 12 Harbour Road and"]
    examples = []
    for k, t in enumerate(texts):
        ids = tiny_tokenizer(t)["input_ids"]
        # prompts and completions of different lengths (greedy rows of several lengths share a batch)
        examples.append(Encoded(tuple(ids) + (5,) * (3 + 2 * k), len(ids), f"t{k}"))
    gens = generate_completions(model, tiny_tokenizer, examples, num_beams=beams, batch_size=4)
    eos = tiny_tokenizer.eos_token_id
    for e, g in zip(examples, gens):
        assert g.ids == _one_by_one(model, e, len(e.ids) - e.prompt_len, beams, eos)
        assert g.text == tiny_tokenizer.decode(g.ids, skip_special_tokens=True)


def test_exact_extraction_hand_made():
    examples = [Encoded((1, 2, 3, 4), 2, "a"), Encoded((1, 2, 3, 4), 2, "b"), Encoded((7, 8, 9), 1, "c")]
    res = exact_extraction([[3, 4], [3, 5], [8]], examples)
    assert res.per_sample == [1.0, 0.0, 0.0] and res.value == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        exact_extraction([[3, 4]], examples)


def test_generation_without_a_prompt_is_a_clear_error(tiny_model, tiny_tokenizer):
    from obliviate.errors import DataError

    with pytest.raises(DataError, match="no prompt tokens"):
        generate_completions(tiny_model, tiny_tokenizer, [Encoded((1, 2, 3), 0, "x")])
