"""The numbers the call sites produced before the evaluation layer, unchanged after it.

tests/fixtures/evaluation_golden.json was recorded with the code before ``obliviate.evaluation``
existed (audit of QA and text records of the micro world, the ULMR QA evaluation, the TOFU/world
protocol's split evaluation, audit and the
pile-extraction protocol on a 2-layer GPT-2); its ``muse`` and ``rwku`` sections were recorded with
those protocols' code before they measured through ``evaluate()``, its ``engine_epoch`` section
with the engine's per-epoch MA / EL_n code before it did. Keys renamed on purpose are
listed in RENAMED.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

GOLDEN = json.loads((Path(__file__).parent / "fixtures" / "evaluation_golden.json").read_text())
# ULMR's table said "rouge"/"prob"; every other call site said rougeL_recall/tofu_prob.
RENAMED = {"ulmr": {"forget/rouge": "forget/rougeL_recall", "forget/prob": "forget/tofu_prob",
                    "retain/rouge": "retain/rougeL_recall", "retain/prob": "retain/tofu_prob"}}


pytestmark = pytest.mark.usefixtures("one_thread")


def _same(section: str, new: dict) -> None:
    old = {RENAMED.get(section, {}).get(k, k): v for k, v in GOLDEN[section].items()}
    assert set(new) == set(old), f"{section}: keys differ: {set(new) ^ set(old)}"
    for key, value in old.items():
        assert new[key] == pytest.approx(value, rel=1e-6, abs=1e-9) or (math.isnan(value) and math.isnan(new[key])), key


@pytest.fixture(scope="module")
def micro():
    from obliviate.data.sources import load_data
    from obliviate.models import load_model

    model, tok = load_model("world-micro-target")
    return model, tok, load_data("world:micro:forget")[:6], load_data("world:micro:retain")[:6]


def test_audit_of_qa_records_unchanged(micro):
    from obliviate.auditing import audit

    model, tok, forget, _ = micro
    res = audit(model, tok, forget)
    _same("audit_qa", {k: v for k, v in res.summary.items() if k != "meta"})
    rows = [{k: v for k, v in r.items() if k not in ("id", "type", "generation")} for r in res.rows]
    assert len(rows) == len(GOLDEN["audit_qa_rows"])
    for new, old in zip(rows, GOLDEN["audit_qa_rows"]):
        assert new == pytest.approx(old, rel=1e-6)


def test_audit_of_text_records_unchanged(micro):
    from obliviate.auditing import audit
    from obliviate.data.sources import load_data

    model, tok, _, _ = micro
    res = audit(model, tok, load_data("world:micro:forget_bio")[:4])
    _same("audit_bio", {k: v for k, v in res.summary.items() if k != "meta"})


def test_ulmr_evaluation_unchanged_under_the_common_names(micro):
    from obliviate.ulmr.evaluate import evaluate_qa

    model, tok, forget, retain = micro
    _same("ulmr", evaluate_qa(model, tok, {"forget": forget, "retain": retain}, max_new_tokens=64).row)


def test_pile_audit_and_protocol_unchanged(shared_data):
    from transformers import GPT2Config, GPT2LMHeadModel

    from obliviate.auditing import audit
    from obliviate.data.pile import PileExtraction, load_gpt2_tokenizer
    from obliviate.protocols.pile import PileOptions, run_pile

    gtok = load_gpt2_tokenizer(shared_data / "gpt2-tokenizer")
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(gtok), n_positions=256, n_embd=32, n_layer=2, n_head=2,
                     bos_token_id=gtok.eos_token_id, eos_token_id=gtok.eos_token_id, pad_token_id=gtok.eos_token_id)
    model = GPT2LMHeadModel(cfg).eval()
    pile = PileExtraction.open(shared_data / "pile-extraction")
    res = audit(model, pile.tokenizer, pile.forget_records(0)[:3], region="completion", el_batch_size=128)
    _same("audit_text", {k: v for k, v in res.summary.items() if k != "meta"})
    opts = PileOptions(folder=str(shared_data / "pile-extraction"), limit=3, wiki_docs=2, el_batch_size=128)
    _same("pile", run_pile(model, gtok, opts).metrics)


def test_tofu_protocol_splits_unchanged():
    from obliviate.data.encode import DEFAULT_TEMPLATE
    from obliviate.data.sources import load_data
    from obliviate.models import load_model
    from obliviate.protocols.tofu import evaluate_qa_splits

    model, tok = load_model("world-micro-retain")  # never saw the forget people: non-trivial numbers
    splits = {"forget": load_data("world:micro:forget")[:6], "retain": load_data("world:micro:retain")[:6],
              "world_facts": load_data("world:micro:world_facts")[:6]}
    metrics, _, details, rows = evaluate_qa_splits(model, tok, splits, template=DEFAULT_TEMPLATE, max_new_tokens=64,
                                                   batch_size=32, icu_metrics=True, ppl=True)
    _same("tofu_splits", metrics)
    assert "all-MiniLM-L6-v2" in details["bertscore_backbone"] and len(rows) == 18


def test_muse_and_rwku_protocols_unchanged(micro):
    from obliviate.protocols.muse import MuseOptions, run_muse
    from obliviate.protocols.rwku import RwkuOptions, run_rwku

    model, tok = micro[:2]
    fixtures = Path(__file__).parent / "fixtures"
    _same("muse", run_muse(model, tok, MuseOptions(data=str(fixtures / "muse"), verbmem_tokens=48,
                                                   knowmem_tokens=24)).metrics)
    _same("rwku", run_rwku(model, tok, RwkuOptions(data=str(fixtures / "rwku"), target="1", rouge="rouge-score",
                                                   fluency_tokens=32)).metrics)


def test_prepared_group_scores_cleaned_generations_against_its_references(micro):
    from obliviate.data.encode import Encoded
    from obliviate.errors import ObliviateError
    from obliviate.evaluation import EvalOptions, Prepared, evaluate

    model, tok = micro[:2]
    ids = tuple(tok("Ulla Dunewick was born in", add_special_tokens=True)["input_ids"])
    examples = [Encoded((*ids, 0), len(ids), "0"), Encoded((*ids, 0), len(ids), "1")]
    seen: list[str] = []

    def clean(text: str) -> str:  # keeps the raw generation, scores a fixed answer
        seen.append(text)
        return "Lyon France" if len(seen) == 1 else "Paris"

    ev = evaluate(model, tok, {"g": Prepared(examples, ["Lyon", "Lyon"], clean)}, ["rougeL_f1", "rougeL_recall"],
                  options=EvalOptions(max_new_tokens=4, stemmer=False))
    assert len(seen) == 2 and seen[0] == seen[1] and seen[0] != "Lyon France"  # greedy: both rows alike
    assert ev.generations["g"] == ["Lyon France", "Paris"]
    assert ev.per_sample["g/rougeL_f1"] == [pytest.approx(2 / 3), 0.0]  # P 1/2, R 1
    assert ev.per_sample["g/rougeL_recall"] == [1.0, 0.0]
    with pytest.raises(ObliviateError, match="recall only"):
        evaluate(model, tok, {"g": Prepared(examples, ["Lyon", "Lyon"])}, ["rougeL_f1"],
                 options=EvalOptions(max_new_tokens=2, rouge="rouge-score"))


def test_engine_epoch_ma_el_and_thresholds_unchanged(micro):
    from obliviate.data.encode import encode_records
    from obliviate.data.sources import load_data
    from obliviate.engine.config import EvalConfig, StopConfig
    from obliviate.engine.evaluation import _forget_metrics, thresholds

    model, tok = micro[:2]
    examples = encode_records(load_data("world:micro:forget")[:8], tok)
    new: dict[str, float] = {}
    for ma_region in ("all", "completion"):
        for el_region in ("all", "completion"):
            ev = EvalConfig(ma_region=ma_region, el_region=el_region, el=True, el_n=5)
            per = _forget_metrics(model, examples, ev, lambda f, xs: f(list(xs)))  # one process
            for name, values in per.items():
                measured = [v for v in values if v is not None]
                new[f"{ma_region}-{el_region}/{name}"] = math.fsum(measured) / len(measured)
                new[f"{ma_region}-{el_region}/{name}_measured"] = float(len(measured))
            levels, _ = thresholds(model, examples, ev, StopConfig(calibrate_on="held-out", ma_threshold=0.1,
                                                                   el_threshold=0.1))
            new.update({f"{ma_region}-{el_region}/threshold_{k}": v for k, v in levels.items()})
    _same("engine_epoch", new)
