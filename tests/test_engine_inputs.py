"""What the engine accepts: short answers with a real BPE tokenizer (EL_n where defined, MA
everywhere), declared ranges of method arguments, discoverable options, the resolved config."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import obliviate
from obliviate.data.records import QARecord
from obliviate.errors import ObliviateError
from obliviate.methods import METHODS, get_method

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def gpt2_tiny(shared_data):
    """A random 2-layer GPT-2 with GPT-2's real BPE tokenizer."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from obliviate.data.pile import load_gpt2_tokenizer

    tok = load_gpt2_tokenizer(shared_data / "gpt2-tokenizer")
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=128, n_embd=32, n_layer=2, n_head=2,
                     eos_token_id=tok.eos_token_id, bos_token_id=tok.eos_token_id)
    return GPT2LMHeadModel(cfg).eval(), tok


def test_short_answers_get_ma_everywhere_and_el_where_defined(gpt2_tiny, tmp_path):
    model, tok = gpt2_tiny
    forget = [QARecord("short-1", "Where was Alice born?", "Lyon."),  # a few tokens + eos: no EL_10
              QARecord("short-2", "When was Bob born?", "In 1961."),
              QARecord("long", "What did Carol write?", "Carol wrote a long essay about the rivers of the north, "
                                                       "their bridges, mills and the towns that grew along them.")]
    answer_tokens = [len(tok(r.answer)["input_ids"]) + 1 for r in forget]  # + eos
    assert answer_tokens[0] < 10 and answer_tokens[1] < 10 and answer_tokens[2] > 10
    res = obliviate.unlearn(model, forget, method="kumpr", tokenizer=tok, out=tmp_path / "run",
                            overrides=["train.lr=1e-4", "stop.max_epochs=1", "eval.retain=false",
                                       "report.enabled=false", "eval.ma_region=completion",
                                       "eval.el_region=completion"])  # the answers only
    before = res.history[0]
    assert before["el_10_skipped"] == 2 and res.summary["before"]["el_10_skipped"] == 2
    rows = [json.loads(line) for line in (tmp_path / "run" / "per_sample.jsonl").read_text().splitlines()]
    assert [r["el_10_before"] is None for r in rows] == [True, True, False]
    assert all(0.0 <= r["ma_before"] <= 1.0 for r in rows)  # MA for every record
    assert before["el_10"] == rows[2]["el_10_before"]  # the mean is over the records where EL is defined
    assert before["ma"] == pytest.approx(sum(r["ma_before"] for r in rows) / 3)


def test_method_arguments_are_range_checked_before_anything_is_written(tmp_path):
    out = tmp_path / "run"
    for override, key in (("method_args.alpha=-1", "method_args.alpha"), ("method_args.kl=nope", "method_args.kl"),
                          ("method_args.loss_region=prompt", "method_args.loss_region")):
        with pytest.raises(ObliviateError, match=key):
            obliviate.unlearn("world-micro-target", "world:micro:forget", method="icu", out=out,
                              overrides=[override])
        assert not out.exists()
    with pytest.raises(ObliviateError, match=r"method_args\.beta must be > 0"):
        obliviate.unlearn("world-micro-target", "world:micro:forget", method="npo", overrides=["method_args.beta=0"])
    get_method("icu").config(alpha=0.0).check()  # the bounds themselves are allowed


def test_every_method_option_has_help_text():
    from obliviate.config import describe_fields
    from obliviate.engine.config import EvalConfig, RefinementConfig, StopConfig, TrainConfig

    for spec in METHODS.values():
        missing = [key for key, _, help_ in describe_fields(spec.config()) if not help_.strip()]
        assert not missing, f"{spec.name}: fields without help: {missing}"
    for cls in (TrainConfig, StopConfig, EvalConfig, RefinementConfig):
        missing = [f.name for f in dataclasses.fields(cls) if not f.metadata.get("help")]
        assert not missing, f"{cls.__name__}: fields without help: {missing}"


def test_cli_lists_a_methods_options_and_prints_the_resolved_config(monkeypatch, capsys, tmp_path):
    from obliviate.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr("sys.argv", ["obliviate", *args])
        try:
            main()
            code = 0
        except SystemExit as e:
            code = int(e.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    code, out, _ = run("methods", "icu")
    assert code == 0 and "method_args.alpha=0.5" in out and "[min 0.0]" in out and "train.lr=5e-06" in out
    code, same, _ = run("unlearn", "--method", "icu", "--list-options")
    assert code == 0 and same == out
    code, out, _ = run("unlearn", "--method", "kumpr", "--model", "world-micro-target", "--forget",
                       "world:micro:forget", "--print-config", "train.lr=3e-4")
    assert code == 0 and "method: kumpr" in out and "lr: 0.0003" in out and "forget: world:micro:forget" in out
    assert not any(tmp_path.iterdir())  # nothing run, nothing written
    code, _, err = run("unlearn", "--method", "icu", "--model", "world-micro-target", "--forget", "world:micro:forget",
                       "--out", str(tmp_path / "run"), "method_args.alpha=-1")
    assert code == 2 and err.startswith("error: method_args.alpha must be >= 0") and not (tmp_path / "run").exists()


def test_records_longer_than_the_context_are_refused_or_truncated_when_asked(gpt2_tiny, tmp_path):
    model, tok = gpt2_tiny  # n_positions=128
    long = QARecord("essay", "Tell me everything.", " ".join(["the rivers of the north and their bridges"] * 30))
    forget = [QARecord("short", "Where was Alice born?", "She was born in Lyon, France."), long]
    assert len(tok(long.answer)["input_ids"]) > 128
    common = ["train.lr=1e-4", "stop.max_epochs=1", "eval.retain=false", "report.enabled=false", "eval.el_n=2"]
    with pytest.raises(ObliviateError, match=r"record essay: forget record has \d+ tokens, more than the model's "
                                             r"context of 128; pass train.max_length=128"):
        obliviate.unlearn(model, forget, method="kumpr", tokenizer=tok, out=tmp_path / "refused", overrides=common)
    assert not (tmp_path / "refused").exists()  # refused at load time, before the run folder
    with pytest.raises(ObliviateError, match="exceeds the model's context of 128"):
        obliviate.unlearn(model, forget, method="kumpr", tokenizer=tok, overrides=[*common, "train.max_length=512"])
    res = obliviate.unlearn(model, forget, method="kumpr", tokenizer=tok, out=tmp_path / "cut",
                            overrides=[*common, "train.max_length=64"])
    assert res.summary["truncated"] == {"max_length": 64, "forget": 1}


def test_pile_row_layout_and_the_papers_measurement_regions(shared_data):
    from obliviate.data.sources import load_data
    from obliviate.unlearning import build_config

    folder = shared_data / "pile-extraction"
    benchmark = load_data(f"pile:0@{folder}")
    row = load_data(f"pile:0:row@{folder}")
    assert [r.id for r in row] == [r.id for r in benchmark] and len(row) == 128
    assert len(benchmark[0].prefix_ids) == 50 and len(row[0].prefix_ids) == 150  # the whole 200-token row
    assert row[0].prefix_ids[-50:] == benchmark[0].prefix_ids and row[0].target_ids == benchmark[0].target_ids
    assert [r.prefix_ids for r in load_data(f"pile:0:icu@{folder}")] == [r.prefix_ids for r in row]
    with pytest.raises(ObliviateError, match="unknown row layout 'rows'"):
        load_data(f"pile:0:rows@{folder}")
    # ICU's thresholds: MA over the whole row, EL over the suffix; KUMPR's: both over the whole row.
    icu, kumpr = build_config("icu"), build_config("kumpr")
    assert (icu.eval.ma_region, icu.eval.el_region) == ("all", "completion")
    assert (kumpr.eval.ma_region, kumpr.eval.el_region) == ("all", "all")
    assert build_config("npo").eval.ma_region == "completion"  # other methods keep the engine's default


def test_a_resumed_ulmr_run_refuses_options_that_change_its_config(tmp_path):
    from obliviate.config import config_to_yaml
    from obliviate.recipes.ulmr import run_ulmr
    from obliviate.unlearning import build_config

    out = tmp_path / "ulmr"
    out.mkdir()
    stored = build_config("ulmr", None, ["data.max_forget=4"])
    stored.model, stored.data.forget = "world-micro-target", "world:micro:forget"
    (out / "config.yaml").write_text(config_to_yaml(stored))
    with pytest.raises(ObliviateError, match=r"a resumed run keeps its config\.yaml"):  # not silently ignored
        run_ulmr("world-micro-target", "world:micro:forget", out=out, resume=True,
                 overrides=["data.max_forget=4", "eval.el=false"])
