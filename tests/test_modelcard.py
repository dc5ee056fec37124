"""``model/README.md``: a Hub model card (parsed with huggingface_hub) naming the forget set by hash only."""

from __future__ import annotations

import hashlib
import json

from huggingface_hub import ModelCard

import obliviate
from obliviate.data.records import QARecord, TextRecord
from obliviate.data.sources import load_data
from obliviate.modelcard import build_model_card, forget_set_sha256

FAST = ["data.max_forget=8", "data.max_retain=24", "train.lr=1e-3", "stop.max_epochs=2", "train.batch_size=4",
        "train.scheduler=constant", "report.enabled=false"]


def test_forget_set_hash_is_order_free_over_record_contents():
    records = [TextRecord("a", "Hé", " llo"), QARecord("q", "Who?", "Me", perturbed_answers=("You",))]
    per_record = sorted([hashlib.sha256('["Hé", " llo"]'.encode()).hexdigest(),
                         hashlib.sha256(b'["Who?", "Me"]').hexdigest()])
    assert forget_set_sha256(records) == hashlib.sha256("\n".join(per_record).encode()).hexdigest()
    assert forget_set_sha256(records[::-1]) == forget_set_sha256(records)  # order-free
    assert forget_set_sha256([TextRecord("other-id", "Hé", " llo")]) == forget_set_sha256(records[:1])  # ids excluded
    assert forget_set_sha256(records[:1]) != forget_set_sha256(records)


def test_run_writes_a_hub_model_card_without_forget_text(tmp_path):
    out = tmp_path / "run"
    result = obliviate.unlearn("world-micro-target", "world:micro:forget", method="graddiff",
                               retain="world:micro:retain", out=out, overrides=FAST)
    text = (out / "model" / "README.md").read_text(encoding="utf-8")
    card = ModelCard.load(out / "model" / "README.md")  # the Hub's parser: YAML metadata + Markdown
    forget = load_data("world:micro:forget")[:8]
    digest = forget_set_sha256(forget)
    meta = card.data.to_dict()
    assert meta["library_name"] == "transformers" and "unlearning" in meta["tags"] and "graddiff" in meta["tags"]
    assert "base_model" not in meta  # a local built-in model has no Hub id
    assert meta["unlearning"]["forget_set"] == {"count": 8, "sha256": digest}
    assert meta["unlearning"]["after"]["ma"] == result.summary["after"]["ma"]
    assert json.loads((out / "summary.json").read_text())["forget_sha256"] == digest
    assert digest in card.text and "| ma |" in card.text and "memorization accuracy" in card.text
    assert "forgotten (stopping thresholds)" in card.text and "obliviate unlearn --config config.yaml" in card.text
    assert "method: graddiff" in card.text  # the configuration
    for record in forget:  # no forget text, in any field
        fields = [record.question, record.answer] if isinstance(record, QARecord) else [record.prefix, record.target]
        assert not any(f and len(f) >= 8 and f in text for f in fields), record.id


def test_card_metadata_for_hub_and_adapter_models():
    summary = {"before": {"ma": 0.9, "el_10": 0.5}, "after": {"ma": 0.1, "el_10": float("nan")},
               "thresholds": {"ma": 0.5, "el_10": None}, "epochs": 3, "stop_reason": "thresholds", "n_forget": 4}
    attacks = [{"attack": "quantize8", "verdict": "held", "rule": "forget MA 0.11 <= held-out MA 0.40 + 0.02"}]
    card = build_model_card(model="smollm2-135m", method="npo", config_yaml="method: npo\n", summary=summary,
                            forget_sha256="ab" * 32, n_forget=4, adapter=True, attacks=attacks)
    parsed = ModelCard(str(card))
    assert parsed.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct" and parsed.data.library_name == "peft"
    assert parsed.data.to_dict()["unlearning"]["after"] == {"ma": 0.1, "el_10": None}  # NaN is not YAML
    assert "| forgotten (stopping thresholds) | yes | mean ma < 0.5" in parsed.text
    assert "| robustness: quantize8 | held | forget MA 0.11 <= held-out MA 0.40 + 0.02 |" in parsed.text
    assert parsed.data.to_dict()["unlearning"]["robustness"] == {"quantize8": "held"}
    hub = build_model_card(model="org/model-1", method="icu", config_yaml="", forget_sha256="0" * 64, n_forget=4,
                           summary={**summary, "forget": "<4 records given in Python>"})
    assert hub.data.base_model == "org/model-1" and "pass the same records to reproduce" in hub.text
