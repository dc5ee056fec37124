"""Shared fixtures: real (tiny) tokenizers and models, built offline in seconds.

* ``tiny_tokenizer`` / ``tiny_model``: a byte-level BPE trained here and a randomly initialised
  2-layer Llama -- for exactness tests (batched vs reference loops) where weights don't matter.
* ``shared_data``: ../shared/data when present; tests that need it skip cleanly otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OBLIVIATE_QUIET", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("OBLIVIATE_SHARED_DATA", REPO.parent / "shared" / "data"))

TINY_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Alice was born in 1961 in Lyon and worked as a clockmaker.",
    "Bob Smith lives at 12 Harbour Road and his phone number is 555-0199.",
    "Permission is hereby granted, free of charge, to any person obtaining a copy.",
    "It was the best of times, it was the worst of times.",
    "def add(a, b):\n    return a + b\n",
    "Question: Where was Alice born?\nAnswer: Alice was born in Lyon.",
] * 4


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(TINY_CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                   bos_token="<|endoftext|>")


@pytest.fixture(scope="session")
def tiny_model(tiny_tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tiny_tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                      pad_token_id=tiny_tokenizer.pad_token_id, eos_token_id=tiny_tokenizer.eos_token_id,
                      bos_token_id=tiny_tokenizer.bos_token_id, tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg).eval()
    return model


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder not present ({SHARED_DATA})")
    return SHARED_DATA


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models on a busy 2-core machine: a second torch thread only waits for a core.
    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
