"""``audit`` and ``obliviate audit``: per-record rows and summaries agree with the metric
functions, files are written (never silently overwritten), and the pile forget sets run."""

from __future__ import annotations

import json

import pytest
import torch

from obliviate.auditing import audit
from obliviate.data.encode import encode_records
from obliviate.data.records import QARecord, TextRecord
from obliviate.errors import ObliviateError
from obliviate.metrics import extraction_likelihood, memorization_accuracy
from obliviate.metrics.memorization import ForgetThresholds

pytestmark = pytest.mark.usefixtures("one_thread")


TEXTS = [
    TextRecord("a", "Alice was born in 1961 in Lyon", " and worked as a clockmaker for many years."),
    TextRecord("b", "Bob Smith lives at 12 Harbour Road", " and his phone number is 555-0199, call him."),
    TextRecord("c", "It was the best of times,", " it was the worst of times, it was the age of wisdom."),
]
QAS = [
    QARecord("q1", "Where was Alice born?", "Alice was born in Lyon.", paraphrased_answer="In Lyon.",
             perturbed_answers=("Alice was born in Paris.", "Alice was born in Rome.")),
    QARecord("q2", "What does Bob do?", "Bob is a clockmaker.", paraphrased_answer="He makes clocks.",
             perturbed_answers=("Bob is a baker.",)),
]


def test_text_audit_rows_match_the_metric_functions(tiny_model, tiny_tokenizer):
    res = audit(tiny_model, tiny_tokenizer, TEXTS, metrics="ma,el_5,exact,bleu_icu,rougeL_f1,entropy,bleu")
    examples = encode_records(TEXTS, tiny_tokenizer)
    ma = memorization_accuracy(tiny_model, examples)
    el = extraction_likelihood(tiny_model, examples, n=5)
    assert [r["id"] for r in res.rows] == ["a", "b", "c"]
    assert [r["ma"] for r in res.rows] == ma.per_sample and res.summary["ma"] == ma.value
    assert [r["el_5"] for r in res.rows] == el.per_sample and res.summary["el_5"] == el.value
    for key in ("exact", "bleu_icu", "rougeL_f1", "entropy", "bleu"):
        assert key in res.summary and all(key in r for r in res.rows)
    assert all(isinstance(r["generation"], str) for r in res.rows)
    assert res.summary["meta"]["region"] == "all"


def test_thresholds_verdict(tiny_model, tiny_tokenizer):
    loose = ForgetThresholds(ma=1.01, el=1.01, n=5, source="test")
    res = audit(tiny_model, tiny_tokenizer, TEXTS, metrics="ma,el_5", thresholds=loose)
    assert res.summary["forgotten"] is True and all(r["below_thresholds"] for r in res.rows)
    strict = ForgetThresholds(ma=0.0, el=0.0, n=5)
    assert audit(tiny_model, tiny_tokenizer, TEXTS, metrics="ma,el_5", thresholds=strict).summary["forgotten"] is False


def test_qa_audit_has_tofu_numbers(tiny_model, tiny_tokenizer):
    from obliviate.metrics import tofu

    res = audit(tiny_model, tiny_tokenizer, QAS, max_new_tokens=8)
    assert {"tofu_prob", "rougeL_recall", "ma", "truth_ratio_forget", "truth_ratio_retain"} <= set(res.summary)
    log = res.summary["meta"]["tofu_log"]
    ratios = tofu.truth_ratios(log["avg_paraphrased_loss"], log["average_perturb_loss"])
    assert [r["truth_ratio"] for r in res.rows] == ratios
    assert res.summary["truth_ratio_forget"] == pytest.approx(sum(min(r, 1 / r) for r in ratios) / 2)
    # short answers: EL_10 cannot be measured on them and says so instead of failing
    assert res.summary["meta"].get("el_10_skipped", 0) + sum(r.get("el_10") is not None for r in res.rows) == 2


def test_audit_accepts_a_data_spec(tiny_model, tiny_tokenizer, tmp_path):
    from obliviate.data.io import write_records

    path = tmp_path / "texts.jsonl"
    write_records(TEXTS, path)
    by_spec = audit(tiny_model, tiny_tokenizer, str(path), metrics="ma")
    assert by_spec.rows == audit(tiny_model, tiny_tokenizer, TEXTS, metrics="ma").rows
    with pytest.raises(ObliviateError, match=r"empty\.jsonl"):
        (tmp_path / "empty.jsonl").write_text("")
        audit(tiny_model, tiny_tokenizer, tmp_path / "empty.jsonl")


def test_unknown_metric_is_a_clear_error(tiny_model, tiny_tokenizer):
    with pytest.raises(ObliviateError, match="unknown metric 'el10'"):
        audit(tiny_model, tiny_tokenizer, TEXTS, metrics="ma,el10")


def test_cli_writes_files_refuses_overwrite_and_calibrates(tmp_path, tiny_model, tiny_tokenizer):
    from typer.testing import CliRunner

    from obliviate.cli import app
    from obliviate.data.io import write_records

    model_dir = tmp_path / "model"
    tiny_model.save_pretrained(model_dir)
    tiny_tokenizer.save_pretrained(model_dir)
    write_records(TEXTS, tmp_path / "forget.jsonl")
    write_records(TEXTS[::-1], tmp_path / "heldout.jsonl")
    out = tmp_path / "audit"
    args = ["audit", "--model", str(model_dir), "--data", str(tmp_path / "forget.jsonl"), "--out", str(out),
            "--metrics", "ma,el_5,exact,entropy", "--el-n", "5", "--calibrate", str(tmp_path / "heldout.jsonl"),
            "--device", "cpu"]
    runner = CliRunner()
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "per_sample.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    assert [r["id"] for r in rows] == ["a", "b", "c"]
    assert summary["meta"]["thresholds"]["source"].startswith("calibrated on")
    assert isinstance(summary["forgotten"], bool) and "el_5" in result.output
    again = runner.invoke(app, args)
    assert isinstance(again.exception, ObliviateError) and "--overwrite" in str(again.exception)
    assert json.loads((out / "summary.json").read_text()) == summary  # untouched
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0


def _gpt2_vocab_model(seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=50257, n_positions=256, n_embd=32, n_layer=1, n_head=2,
                     bos_token_id=50256, eos_token_id=50256, pad_token_id=50256)
    return GPT2LMHeadModel(cfg).eval()


def test_pile_extraction_forget_set_audit(shared_data):
    from obliviate.data.pile import PileExtraction

    pile = PileExtraction.open(shared_data / "pile-extraction")
    records = pile.forget_records(0)[:3]
    assert all(len(r.prefix_ids) == 50 and len(r.target_ids) == 50 for r in records)
    model = _gpt2_vocab_model()
    res = audit(model, pile.tokenizer, records, metrics="ma,el_10,exact,bleu_icu,bertscore,entropy",
                region="completion", el_batch_size=128)
    examples = encode_records(records, pile.tokenizer)
    assert [e.ids for e in examples] == [r.prefix_ids + r.target_ids for r in records]  # exact benchmark ids
    el = extraction_likelihood(model, examples, n=10, region="completion", batch_size=128)
    assert res.summary["el_10"] == el.value and el.details["starts"][0] == [50, 90]
    assert "all-MiniLM-L6-v2" in res.summary["meta"]["bertscore_backbone"]
    assert 0.0 <= res.summary["ma"] < 0.05  # a random model has memorized nothing


def test_cli_forget_quality_against_a_saved_retain_audit(tmp_path, tiny_model, tiny_tokenizer):
    from typer.testing import CliRunner

    from obliviate.cli import app
    from obliviate.data.io import write_records

    model_dir = tmp_path / "model"
    tiny_model.save_pretrained(model_dir)
    tiny_tokenizer.save_pretrained(model_dir)
    write_records(QAS, tmp_path / "qa.jsonl")
    base = ["audit", "--model", str(model_dir), "--data", str(tmp_path / "qa.jsonl"), "--metrics",
            "tofu_prob,truth_ratio", "--device", "cpu"]
    runner = CliRunner()
    first = runner.invoke(app, [*base, "--out", str(tmp_path / "retain")])
    assert first.exit_code == 0, first.output
    saved = tmp_path / "retain" / "tofu_log.json"
    assert saved.is_file()
    second = runner.invoke(app, [*base, "--out", str(tmp_path / "again"), "--retain-results", str(saved)])
    assert second.exit_code == 0, second.output
    summary = json.loads((tmp_path / "again" / "summary.json").read_text())
    assert summary["forget_quality"] == pytest.approx(1.0)  # same model: identical truth ratios


def test_pure_text_records_skip_generation_metrics_by_default(shared_data):
    from obliviate.data.pile import PileExtraction

    tok = PileExtraction.open(shared_data / "pile-extraction").tokenizer  # GPT-2: no BOS, so no prompt
    records = [TextRecord("p", "", "It was the best of times, it was the worst of times, it was the age.")]
    res = audit(_gpt2_vocab_model(), tok, records)
    assert "ma" in res.summary and "el_10" in res.summary and "bleu_icu" not in res.summary
    assert "generation_skipped" in res.summary["meta"]
    from obliviate.errors import DataError

    with pytest.raises(DataError, match="no prompt tokens"):
        audit(_gpt2_vocab_model(), tok, records, metrics="bleu_icu")


def test_cli_audit_redacts_and_takes_a_run_folder(tmp_path, tiny_model, tiny_tokenizer):
    from typer.testing import CliRunner

    from obliviate.cli import app
    from obliviate.data.io import write_records
    from obliviate.runfolder import RunFolder

    run = RunFolder.create(tmp_path / "run", "run")  # what `obliviate unlearn` leaves: the model in RUN/model
    tiny_model.save_pretrained(run / "model")
    tiny_tokenizer.save_pretrained(run / "model")
    run.write_summary({"method": "graddiff"})
    write_records(TEXTS, tmp_path / "forget.jsonl")
    base = ["audit", "--model", str(run.path), "--data", str(tmp_path / "forget.jsonl"), "--metrics",
            "ma,exact,bleu", "--device", "cpu"]
    runner = CliRunner()
    plain = runner.invoke(app, [*base, "--out", str(tmp_path / "plain")])
    assert plain.exit_code == 0, plain.output
    rows = [json.loads(line) for line in (tmp_path / "plain" / "per_sample.jsonl").read_text().splitlines()]
    assert isinstance(rows[0]["generation"], str) and not rows[0]["generation"].startswith("<redacted")
    red = runner.invoke(app, [*base, "--out", str(tmp_path / "red"), "--redact"])
    assert red.exit_code == 0, red.output
    rows = [json.loads(line) for line in (tmp_path / "red" / "per_sample.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", "b", "c"] and isinstance(rows[0]["ma"], float)
    assert all(r["generation"].startswith("<redacted: ") for r in rows)
    summary = json.loads((tmp_path / "red" / "summary.json").read_text())
    assert summary["format"] == "obliviate-audit/1"
    text = "".join(p.read_text() for p in (tmp_path / "red").iterdir() if p.is_file())
    assert not any(t.target.strip() in text or t.prefix in text for t in TEXTS)
