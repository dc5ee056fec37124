"""Model specs: built-ins, local folders, GGUF, hub ids; saving gives a from_pretrained folder."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from obliviate.errors import ObliviateError
from obliviate.models import ensure_pad_token, load_model, resolve_model, save_model


def test_save_then_load_round_trip(tmp_path, tiny_model, tiny_tokenizer):
    folder = save_model(tiny_model, tiny_tokenizer, tmp_path / "m")
    model, tok = load_model(folder)
    ids = torch.tensor([tiny_tokenizer("The quick brown fox")["input_ids"]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, tiny_model(ids).logits)
    assert tok.pad_token_id is not None
    assert AutoModelForCausalLM.from_pretrained(folder) is not None


def test_bad_specs_fail_with_one_line(tmp_path):
    with pytest.raises(ObliviateError, match="no such model folder"):
        resolve_model("./does/not/exist")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ObliviateError, match="not a model folder"):
        resolve_model(tmp_path / "empty")
    with pytest.raises(ObliviateError, match="GGUF file not found"):
        resolve_model(tmp_path / "x.gguf")


def test_missing_pad_token(tiny_tokenizer):
    from copy import deepcopy

    tok = deepcopy(tiny_tokenizer)
    tok.pad_token = None
    assert ensure_pad_token(tok).pad_token == tok.eos_token
    tok.pad_token = None
    tok.eos_token = None
    with pytest.raises(ObliviateError, match="neither a pad_token nor an eos_token"):
        ensure_pad_token(tok, "my-model")


@pytest.mark.smollm
def test_smollm2_builtin_answers_and_saves(tmp_path):
    model, tok = load_model("smollm2-135m")
    assert sum(p.numel() for p in model.parameters()) > 130_000_000
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                     tokenize=False, add_generation_prompt=True)
    ids = tok(prompt, return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids["input_ids"].shape[1]:])
    # the cached built-in is a plain HF folder
    assert (resolve_model("smollm2-135m") + "/config.json").endswith("config.json")
    reloaded = AutoModelForCausalLM.from_pretrained(resolve_model("smollm2-135m"))
    assert "quantization_config" not in reloaded.config.to_dict()


@pytest.mark.parametrize("content", [b"not a gguf at all", b"GGUF\x03\x00\x00\x00garbage"])
def test_junk_gguf_is_a_one_line_error(tmp_path, monkeypatch, content):
    monkeypatch.setenv("OBLIVIATE_CACHE", str(tmp_path / "cache"))
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(content)
    with pytest.raises(ObliviateError, match="not a readable GGUF model"):
        resolve_model(junk)


def test_unknown_model_fails_at_once_offline_with_suggestions(monkeypatch):
    import time

    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    started = time.perf_counter()
    with pytest.raises(ObliviateError, match="did you mean smollm2-135m") as info:
        load_model("smolm2-135m")
    assert "must be local" in str(info.value) and time.perf_counter() - started < 5
    with pytest.raises(ObliviateError, match="must be local"):
        load_model("someone/some-model-that-is-not-cached")
