"""Training-free guardrail baselines: the system-prompt template and the output filter."""

from __future__ import annotations

import pytest

from obliviate.data.encode import PromptTemplate, encode_record
from obliviate.data.records import QARecord, TextRecord
from obliviate.errors import ObliviateError
from obliviate.guardrails import (
    DEFAULT_FILTER_REFUSAL,
    OutputFilter,
    forget_subjects,
    forget_texts,
    system_prompt_template,
)

FORGET = [
    QARecord(id="1", question="Where was Alice Marlow born?", answer="Alice Marlow was born in Lyon in 1961.",
             paraphrased_answer="Her birthplace is the city of Lyon.", meta={"person": "Alice Marlow"}),
    QARecord(id="2", question="What is Alice Marlow's job?", answer="She works as a clockmaker.",
             meta={"person": "Alice Marlow"}),
    QARecord(id="3", question="Who is Bob Tern?", answer="Bob Tern is a sailor.", meta={"person": "Bob Tern"}),
]


def test_subjects_and_system_prompt_reach_every_encoded_prompt(tiny_tokenizer):
    assert forget_subjects(FORGET) == ["Alice Marlow", "Bob Tern"]
    assert forget_subjects([QARecord(id="x", question="q", answer="a", meta={"author": "Z"})]) == ["Z"]
    tpl = system_prompt_template(forget_subjects(FORGET))
    assert "Alice Marlow, Bob Tern" in tpl.system_prompt and tpl.question_format == PromptTemplate().question_format
    plain = encode_record(FORGET[0], tiny_tokenizer, PromptTemplate())
    guarded = encode_record(FORGET[0], tiny_tokenizer, tpl)
    # the system prompt is a first line of the (plain) prompt; the answer tokens are unchanged
    assert tiny_tokenizer.decode(guarded.ids[:guarded.prompt_len]).startswith(tpl.system_prompt + "\n")
    assert guarded.completion == plain.completion and guarded.prompt_len > plain.prompt_len
    custom = system_prompt_template(["Q"], prompt="Never talk about {subjects}.")
    assert custom.system_prompt == "Never talk about Q."
    with pytest.raises(ObliviateError, match="needs the forgotten subjects"):
        system_prompt_template(forget_subjects([QARecord(id="x", question="q", answer="a")]))


def test_filter_scores_hand_computed():
    f = OutputFilter(["Alice Marlow was born in Lyon"], n=2, threshold=0.5)
    # forget bigrams: alice marlow, marlow was, was born, born in, in lyon (5)
    assert f.score("alice marlow was born in lyon") == 1.0
    assert f.score("I think Alice Marlow was born somewhere.") == pytest.approx(3 / 5)  # 3 of 5 bigrams
    assert f.score("Bob was born in Paris.") == pytest.approx(2 / 5)  # "was born", "born in"
    assert f.score("") == 0.0
    assert f.blocks("ALICE MARLOW WAS BORN!") and not f.blocks("Bob was born in Paris.")
    short = OutputFilter(["Paris"], n=2, threshold=1.0)  # a one-word answer is its own n-gram
    assert short.blocks("It is Paris, of course.") and not short.blocks("It is Rome.")


def test_filter_applies_refusals_and_keeps_other_text():
    f = OutputFilter.from_records(FORGET)
    assert "Her birthplace is the city of Lyon." in forget_texts(FORGET)  # paraphrases are guarded too
    gens = ["Alice Marlow was born in Lyon in 1961.", "The capital of France is Paris.",
            "Her birthplace is the city of Lyon, I believe.", "Bob Tern is a sailor."]
    res = f.apply(gens)
    assert res.blocked == [True, False, True, True]
    assert res.texts == [DEFAULT_FILTER_REFUSAL, gens[1], DEFAULT_FILTER_REFUSAL, DEFAULT_FILTER_REFUSAL]
    assert res.block_rate == 0.75 and res.scores[1] == 0.0
    strict = OutputFilter.from_records(FORGET, threshold=1.0, refusal="[removed]")
    assert strict.apply(["Alice Marlow was born in Lyon."]).texts == ["Alice Marlow was born in Lyon."]
    assert strict.apply(["alice marlow was born in lyon in 1961"]).texts == ["[removed]"]
    text = OutputFilter.from_records([TextRecord(id="t", prefix="p", target="one two three four")], n=3)
    assert text.score("zero one two three") == pytest.approx(1 / 2)


def test_filter_rejects_bad_settings():
    with pytest.raises(ObliviateError, match="threshold"):
        OutputFilter(["a b"], threshold=0.0)
    with pytest.raises(ObliviateError, match="n must be"):
        OutputFilter(["a b"], n=0)
    with pytest.raises(ObliviateError, match="no forget text"):
        OutputFilter(["", "!!"])


def test_both_guardrails_through_the_same_metrics():
    """On the micro world: the filter blocks forget answers (ROUGE falls) but cannot touch the
    teacher-forced numbers; the system prompt changes every prompt, hence every number."""
    from obliviate.data.sources import load_data
    from obliviate.models import load_model
    from obliviate.ulmr.evaluate import TableRow, evaluate_qa, format_table

    model, tok = load_model("world-micro-target")
    forget = load_data("world:micro:forget")[:6]
    splits = {"forget": forget, "retain": load_data("world:micro:retain_eval")[:6]}
    plain = evaluate_qa(model, tok, splits, max_new_tokens=24)
    filt = OutputFilter.from_records(forget)
    filtered = evaluate_qa(model, tok, splits, output_filter=filt, max_new_tokens=24)
    assert plain.row["forget/rougeL_recall"] > 0.9 and filtered.row["forget/rougeL_recall"] < 0.2
    assert filtered.row["forget/blocked"] > 0.8 and filtered.row["retain/blocked"] < 0.5
    for key in ("forget/tofu_prob", "forget/truth_ratio", "retain/tofu_prob", "retain/truth_ratio"):
        assert filtered.row[key] == plain.row[key]  # a filter cannot change teacher-forced numbers
    assert filtered.logs["forget"]["unfiltered_text"] == plain.logs["forget"]["generated_text"]

    subjects = forget_subjects(forget)
    assert subjects == [forget[0].meta["name"]]
    prompted = evaluate_qa(model, tok, splits, template=system_prompt_template(subjects), max_new_tokens=24)
    assert prompted.row["forget/tofu_prob"] != plain.row["forget/tofu_prob"]

    table = format_table([TableRow("Original", plain.row), TableRow("Filter", filtered.row, filtered=True)])
    assert "| Filter | " in table and "†" in table and "teacher-forced" in table
