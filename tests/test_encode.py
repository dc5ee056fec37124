"""Encoding: exact prompt/completion boundary, templates, exact benchmark ids, collation."""

from __future__ import annotations

import torch

from obliviate.data.encode import PromptTemplate, collate, encode_record, tokenizer_fingerprint
from obliviate.data.records import QARecord, TextRecord


def test_text_record_boundary_is_exact(tiny_tokenizer):
    rec = TextRecord("a", "The quick brown", " fox jumps over the lazy dog.")
    enc = encode_record(rec, tiny_tokenizer)
    assert list(enc.ids[: enc.prompt_len]) == tiny_tokenizer("The quick brown")["input_ids"]
    assert list(enc.completion) == tiny_tokenizer(" fox jumps over the lazy dog.", add_special_tokens=False)["input_ids"]
    assert tiny_tokenizer.decode(enc.completion) == " fox jumps over the lazy dog."


def test_exact_ids_used_only_for_matching_tokenizer(tiny_tokenizer):
    fp = tokenizer_fingerprint(tiny_tokenizer)
    rec = TextRecord("a", "x", "y", prefix_ids=(5, 6, 7), target_ids=(8, 9), ids_tokenizer=fp)
    enc = encode_record(rec, tiny_tokenizer)
    assert enc.ids == (5, 6, 7, 8, 9) and enc.prompt_len == 3
    other = TextRecord("a", "The", " dog", prefix_ids=(5,), target_ids=(8,), ids_tokenizer="someone-else")
    assert encode_record(other, tiny_tokenizer).ids != (5, 8)


def test_qa_plain_template_with_eos(tiny_tokenizer):
    rec = QARecord("q", "Where was Alice born?", "Alice was born in Lyon.")
    enc = encode_record(rec, tiny_tokenizer, PromptTemplate(mode="plain"))
    assert tiny_tokenizer.decode(enc.ids[: enc.prompt_len]) == "Question: Where was Alice born?\nAnswer:"
    assert tiny_tokenizer.decode(enc.completion) == " Alice was born in Lyon.<|endoftext|>"
    alt = encode_record(rec, tiny_tokenizer, PromptTemplate(mode="plain", system_prompt="Be careful."), answer="No idea.")
    assert tiny_tokenizer.decode(alt.ids).startswith("Be careful.\nQuestion:")
    assert tiny_tokenizer.decode(alt.completion) == " No idea.<|endoftext|>"


def test_collate_left_padding_positions_and_labels(tiny_tokenizer):
    a = encode_record(TextRecord("a", "The quick", " fox"), tiny_tokenizer)
    b = encode_record(TextRecord("b", "It was the best of times,", " it was the worst of times."), tiny_tokenizer)
    batch = collate([a, b], pad_id=0, padding_side="left")
    width = max(len(a.ids), len(b.ids))
    assert batch.input_ids.shape == (2, width)
    pad = width - len(a.ids)
    assert batch.attention_mask[0, :pad].sum() == 0 and batch.attention_mask[0, pad:].all()
    assert batch.position_ids[0, pad:].tolist() == list(range(len(a.ids)))
    # labels only on completion tokens
    assert (batch.labels[0] != -100).sum() == len(a.completion)
    assert batch.labels[0, -len(a.completion):].tolist() == list(a.completion)
    right = collate([a, b], pad_id=0, loss_on_prompt=True)
    assert (right.labels[1] != -100).sum() == len(b.ids)
    assert torch.equal(right.position_ids[1], torch.arange(width))
