"""BLEU (ICU rule + sacrebleu), ROUGE-L, entropy and BERTScore on hand-made strings."""

from __future__ import annotations

import math

import pytest

from obliviate.metrics import bleu_icu, get_bert_scorer, rouge_l, sacrebleu_sentence, token_entropy


def test_bleu_icu_hand_computed():
    # clipped n-gram precisions 5/6, 3/5, 2/4, 1/3, equal lengths (BP = 1): BLEU = (1/12)^(1/4)
    res = bleu_icu(["The cat sat on the mat"], ["the cat sat on a mat"])
    assert res.name == "bleu_icu"
    assert res.value == pytest.approx((5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25, abs=1e-12)


def test_bleu_icu_is_unsmoothed_and_lowercased():
    res = bleu_icu(["the cat sat", "A B C D E", "completely different words here"],
                   ["the cat sat down", "a b c d e", "nothing in common at all"])
    # No shared 4-gram -> NLTK's unsmoothed value is ~1e-78 (the "largest value below 0.01" the
    # ICU paper reports), i.e. 0 for every threshold.
    assert res.per_sample[0] < 1e-70 and res.per_sample[2] < 1e-70
    assert res.per_sample[1] == pytest.approx(1.0)  # case does not matter
    assert res.value == pytest.approx(1 / 3)


def test_bleu_icu_tokenizer_splits_sentences_and_punctuation():
    from obliviate.metrics.text import _word_tokenizer

    tok = _word_tokenizer("punkt-untrained")
    assert tok("he went home. she didn't.") == ["he", "went", "home", ".", "she", "did", "n't", "."]
    # without the sentence split the inner period sticks to its word
    assert _word_tokenizer("treebank")("he went home. she left.")[2] == "home."


def test_sacrebleu_sentence_scale():
    res = sacrebleu_sentence(["the cat sat on the mat", "x"], ["the cat sat on the mat", "y z"])
    assert res.name == "bleu" and res.per_sample[0] == pytest.approx(100.0)
    assert res.per_sample[1] < 10 and res.details["scale"] == "0-100"


def test_rouge_l_hand_computed():
    ref, cand = "the cat sat on the mat", "the cat on mat"  # LCS = 4 tokens
    assert rouge_l([cand], [ref]).value == pytest.approx(4 / 6)  # recall: over the reference
    assert rouge_l([cand], [ref], kind="precision").value == pytest.approx(1.0)
    assert rouge_l([cand], [ref], kind="f1").value == pytest.approx(0.8)
    assert rouge_l([cand], [ref], kind="f1").name == "rougeL_f1"


def test_rouge_l_stemmer_option():
    assert rouge_l(["cats running"], ["cat run"], stemmer=True).value == pytest.approx(1.0)
    assert rouge_l(["cats running"], ["cat run"], stemmer=False).value == 0.0


def test_token_entropy_hand_computed():
    res = token_entropy([[1, 1, 2, 2], [7] * 50, list(range(50)), [1, 2, 3, 3], []])
    assert res.per_sample[:4] == pytest.approx([1.0, 0.0, math.log2(50), 1.5])
    assert res.per_sample[4] == 0.0
    assert res.details["distinct"][:4] == pytest.approx([0.5, 1 / 50, 1.0, 0.75])
    assert res.value == pytest.approx((1 + 0 + math.log2(50) + 1.5) / 5)


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError):
        bleu_icu(["a"], [])


def test_bertscore_with_local_minilm_backbone():
    scorer = get_bert_scorer()
    assert get_bert_scorer() is scorer  # loaded once
    assert "all-MiniLM-L6-v2" in scorer.backbone and "no baseline rescaling" in scorer.backbone
    res = scorer.score(["the cat sat on the mat", "a cat was sitting on the mat", "stock markets fell sharply"],
                       ["the cat sat on the mat"] * 3)
    assert res.name == "bertscore_f1" and res.details["backbone"] == scorer.backbone
    same, para, other = res.per_sample
    assert same == pytest.approx(1.0, abs=1e-5)
    assert same > para > other
    assert len(res.details["precision"]) == 3
