"""ULMR prompts and generators: verbatim prompts, template/model/OpenAI-endpoint generators.

The OpenAI-compatible path runs against a real HTTP server on loopback (tests/openai_server.py)
serving the tiny model, through the real ``openai`` client.
"""

from __future__ import annotations

import json

import pytest

from obliviate.errors import DataError, ObliviateError
from obliviate.ulmr.generators import (
    PARAPHRASE_TEMPLATES,
    GeneratorConfig,
    ModelGenerator,
    OpenAIGenerator,
    TemplateGenerator,
    build_generator,
    clean_response,
    clean_rewrite,
    load_refusals,
)
from obliviate.ulmr.prompts import NEGATIVE_PROMPT, REWRITE_PROMPT, fill, prompt_name
from openai_server import OpenAICompatibleServer

QUESTIONS = ["Where was Alice born?", "What does Bob Smith do for a living?", "When was Alice born?"]


def test_prompts_are_the_papers_verbatim():
    # Table 1 and Table 2 of Shi et al. (2024), character for character.
    assert REWRITE_PROMPT == ('Please rewrite the provided instruction to ensure that the given answer can still '
                              'satisfy the requirement of your revised instruction. Instruction:"{instruction}" '
                              'Rewrite Instruction:')
    assert NEGATIVE_PROMPT == ('Please generate a response based on the Instruction indicating that you are unable '
                               'to answer the question or that the relevant content is not available in your '
                               'knowledge base. Instruction:"{instruction}"\nAnswer:')
    assert fill(REWRITE_PROMPT, "Where is {x}?").endswith('Instruction:"Where is {x}?" Rewrite Instruction:')
    assert prompt_name(REWRITE_PROMPT, "custom") == "ulmr:prompt_rewrite"
    assert prompt_name("My {instruction}", "custom") == "custom"
    with pytest.raises(ObliviateError, match="instruction"):
        fill("no slot here", "x")


def test_template_generator_is_deterministic_and_gives_distinct_rewrites():
    gen = TemplateGenerator()
    a = gen.rewrite(QUESTIONS, n=2, prompt=REWRITE_PROMPT, seed=0)
    b = gen.rewrite(QUESTIONS, n=2, prompt=REWRITE_PROMPT, seed=0)
    assert a == b
    for q, rws in zip(QUESTIONS, a):
        assert len(rws) == 2 and rws[0].text != rws[1].text
        assert all(q in g.text and g.text != q for g in rws)  # the question is kept, the surface changes
        assert all(g.generator == "template" and g.prompt.startswith("template:paraphrase#") for g in rws)
    negs = gen.negative(QUESTIONS, prompt=NEGATIVE_PROMPT, seed=0)
    assert [n.text for n in negs] == [n.text for n in gen.negative(QUESTIONS, prompt=NEGATIVE_PROMPT, seed=0)]
    assert all(n.text in gen.refusals and n.prompt.startswith("refusal:builtin#") for n in negs)
    with pytest.raises(ObliviateError, match="paraphrase templates"):
        gen.rewrite(QUESTIONS, n=len(PARAPHRASE_TEMPLATES) + 1, prompt=REWRITE_PROMPT, seed=0)


def test_refusals_builtin_and_tofu_file(shared_data, tmp_path):
    builtin, source = load_refusals(None)
    assert source == "builtin" and len(builtin) >= 30 and len(set(builtin)) == len(builtin)
    tofu, source = load_refusals(shared_data / "tofu" / "idontknow.jsonl")  # plain text lines
    assert source == "idontknow.jsonl" and len(tofu) == 100
    assert not set(tofu) & set(builtin)  # ours are our own words
    gen = TemplateGenerator(tofu, source)
    assert gen.negative(["Who?"], prompt=NEGATIVE_PROMPT, seed=1)[0].text in tofu
    mixed = tmp_path / "refusals.jsonl"
    mixed.write_text('"A json string."\n{"text": "An object."}\n\nplain line\n', encoding="utf-8")
    assert load_refusals(mixed)[0] == ["A json string.", "An object.", "plain line"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('ok\n{"other": 1}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.jsonl, record 2 \(line 2\), field 'text'"):
        load_refusals(bad)


def test_cleaning_of_llm_outputs():
    assert clean_rewrite('  "Where was Alice born?"\nsecond line') == "Where was Alice born?"
    assert clean_rewrite("Rewrite Instruction: Tell me Alice's birthplace.") == "Tell me Alice's birthplace."
    assert clean_rewrite("Rewritten instruction: “In which city was Alice born?”") == "In which city was Alice born?"
    assert clean_rewrite("   \n  ") == ""
    assert clean_response('Answer: "I do not know."') == "I do not know."
    assert clean_response("I can't say.\nReally.") == "I can't say.\nReally."


def test_model_generator_counts_provenance_and_fallback(tiny_model, tiny_tokenizer):
    gen = ModelGenerator(tiny_model, tiny_tokenizer, name="tiny", max_new_tokens=8, batch_size=2)
    assert not gen.chat  # the tiny tokenizer has no chat template: the raw prompt is used
    rws = gen.rewrite(QUESTIONS, n=2, prompt=REWRITE_PROMPT, seed=3)
    assert [len(r) for r in rws] == [2, 2, 2]
    for q, (a, b) in zip(QUESTIONS, rws):
        assert a.text and b.text and a.text != b.text and q not in (a.text, b.text)
        for g in (a, b):  # either the model's sample or a marked template fallback
            assert (g.generator, g.prompt) == ("model:tiny", "ulmr:prompt_rewrite") or \
                (g.generator == "template" and g.note.startswith("fallback: model:tiny"))
    assert rws == gen.rewrite(QUESTIONS, n=2, prompt=REWRITE_PROMPT, seed=3)  # seeded
    negs = gen.negative(QUESTIONS, prompt=NEGATIVE_PROMPT, seed=0)
    assert len(negs) == 3 and all(n.text for n in negs)


def test_model_generator_uses_the_chat_template(tiny_model, tiny_tokenizer):
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=tiny_tokenizer.backend_tokenizer, eos_token="<|endoftext|>",
                                  pad_token="<|endoftext|>")
    tok.chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}<assistant>"
    gen = ModelGenerator(tiny_model, tok, max_new_tokens=4)
    assert gen.chat and gen._format("Hi") == "<user>Hi\n<assistant>"
    assert len(gen.complete(["Hi", "Hello there"], seed=0, sample=True)) == 2


def test_openai_generator_against_a_real_loopback_server(tiny_model, tiny_tokenizer, monkeypatch, tmp_path):
    monkeypatch.setenv("ULMR_TEST_KEY", "sk-local-test")
    with OpenAICompatibleServer(tiny_model, tiny_tokenizer, name="tiny-chat", api_key="sk-local-test") as server:
        cfg = GeneratorConfig(kind="openai", base_url=server.base_url, model="tiny-chat",
                              api_key_env="ULMR_TEST_KEY", max_new_tokens=8, concurrency=2)
        gen = build_generator(cfg)
        assert isinstance(gen, OpenAIGenerator) and gen.name == f"openai:tiny-chat@{server.base_url}"
        rws = gen.rewrite(QUESTIONS, n=2, prompt=REWRITE_PROMPT, seed=11)
        negs = gen.negative([g.text for r in rws for g in r], prompt=NEGATIVE_PROMPT, seed=12)

        sent = [r["messages"][-1]["content"] for r in server.requests]
        for q in QUESTIONS:  # the paper's rewrite prompt reached the server verbatim
            assert fill(REWRITE_PROMPT, q) in sent
        for r in rws:
            for g in r:
                assert fill(NEGATIVE_PROMPT, g.text) in sent
        rewrite_reqs = [r for r in server.requests if r["messages"][-1]["content"].endswith("Rewrite Instruction:")]
        assert {r["seed"] for r in rewrite_reqs} >= {11, 1011}  # two rewrites, two seeds
        assert all(r["model"] == "tiny-chat" and r["max_tokens"] == 8 for r in server.requests)
        neg_reqs = [r for r in server.requests if r["messages"][-1]["content"].endswith("\nAnswer:")]
        assert neg_reqs and all(r["temperature"] == 0.0 for r in neg_reqs)  # greedy negatives by default
        assert [len(r) for r in rws] == [2, 2, 2] and len(negs) == 6
        served = [g for r in rws for g in r if g.generator == gen.name]
        assert all(g.prompt == "ulmr:prompt_rewrite" for g in served)
        assert all(n.prompt == "ulmr:negative_prompt" for n in negs if n.generator == gen.name)

        # the key really comes from the named environment variable
        monkeypatch.setenv("ULMR_TEST_KEY", "wrong")
        with pytest.raises(ObliviateError, match=r"authentication failed.*\$ULMR_TEST_KEY") as info:
            build_generator(cfg).complete(["x"], seed=0, sample=False)
        assert "invalid api key" not in str(info.value)  # the server's response body is not echoed
        monkeypatch.setenv("ULMR_TEST_KEY", "sk-local-test")
        with pytest.raises(ObliviateError, match="HTTP 404"):
            OpenAIGenerator(server.base_url, "no-such-model", api_key_env="ULMR_TEST_KEY").complete(
                ["x"], seed=0, sample=False)
        # the whole restructured set through the endpoint, cached with provenance
        from obliviate.data.records import QARecord
        from obliviate.ulmr.restructure import RestructureConfig, prepare_restructured

        forget = [QARecord(id=f"q{i}", question=q, answer="secret") for i, q in enumerate(QUESTIONS[:2])]
        out = prepare_restructured(tmp_path, forget, RestructureConfig(generator=cfg))
        assert out.status == "generated" and len(out.records) == 6
        assert all(r.meta["answer_generator"] == gen.name or "fallback" in r.meta["note"] for r in out.records)
        n_requests = len(server.requests)
        assert prepare_restructured(tmp_path, forget, RestructureConfig(generator=cfg)).status == "cached"
        assert len(server.requests) == n_requests  # reused: no new request
        url = server.base_url
    with pytest.raises(ObliviateError, match="cannot reach"):  # server stopped
        OpenAIGenerator(url, "tiny-chat", timeout_s=5).complete(["x"], seed=0, sample=False)


def test_build_generator_errors_and_config_fields():
    with pytest.raises(ObliviateError, match="unknown generator kind"):
        build_generator(GeneratorConfig(kind="magic"))  # type: ignore[arg-type]
    with pytest.raises(ObliviateError, match="needs a model"):
        build_generator(GeneratorConfig(kind="model"))
    with pytest.raises(ObliviateError, match="base URL and a model name"):
        build_generator(GeneratorConfig(kind="openai"))
    assert isinstance(build_generator(GeneratorConfig()), TemplateGenerator)
    assert json.dumps(TemplateGenerator().describe())  # serialisable for the cache meta


def test_credentials_in_the_base_url_are_never_shown_or_saved(tmp_path):
    from obliviate.ulmr.generators import generator_config_key, strip_credentials
    from obliviate.ulmr.restructure import RestructureConfig, prepare_restructured

    url = "http://alice:s3cret-PASS@127.0.0.1:9/v1"
    assert strip_credentials(url) == "http://127.0.0.1:9/v1"
    assert strip_credentials("http://127.0.0.1:9/v1") == "http://127.0.0.1:9/v1"
    gen = OpenAIGenerator(url, "tiny-chat", timeout_s=2)
    assert "s3cret" not in gen.name and "s3cret" not in json.dumps(gen.describe())
    cfg = GeneratorConfig(kind="openai", base_url=url, model="tiny-chat", timeout_s=2)
    assert "s3cret" not in json.dumps(generator_config_key(cfg))
    with pytest.raises(ObliviateError, match="cannot reach") as info:  # nothing listens on port 9
        gen.complete(["x"], seed=0, sample=False)
    assert "s3cret" not in str(info.value) and "alice" not in str(info.value)
    from obliviate.data.records import QARecord

    forget = [QARecord(id="q0", question=QUESTIONS[0], answer="secret")]
    with pytest.raises(ObliviateError):
        prepare_restructured(tmp_path, forget, RestructureConfig(generator=cfg))
    assert not any("s3cret" in p.read_text() for p in tmp_path.rglob("*") if p.is_file())
