"""The indistinguishability target: two-sample statistics on hand-made scores (golden values), and the
stopping rule on the micro world (forget people vs never-seen people), with a real BPE tokenizer."""

from __future__ import annotations

import copy

import pytest
import torch

import obliviate
from obliviate.engine.config import StopConfig, TargetConfig
from obliviate.engine.stopping import MAX_EPOCHS, stop_reason
from obliviate.errors import ObliviateError
from obliviate.metrics.indistinguishability import (
    DISTINGUISHABLE,
    INDISTINGUISHABLE,
    OVER_UNLEARNED,
    TwoSample,
    heldout_like,
    two_sample,
    verdict,
)

# ------------------------------------------------------------------ pure statistics, hand-computed


def test_two_sample_hand_computed():
    # members 0.9, 0.8, 0.3 vs non-members 0.1, 0.4 (high = member): 5 of 6 pairs ordered -> AUC 5/6.
    # ECDFs at 0.1, 0.3, 0.4, 0.8, 0.9: forget 0, 1/3, 1/3, 2/3, 1; held-out 1/2, 1/2, 1, 1, 1 -> D = 2/3.
    # Exact p: of the C(5, 2) = 10 ways to place the two held-out ranks, 6 give D >= 2/3 -> 0.6.
    s = two_sample([0.9, 0.8, 0.3], [0.1, 0.4], high_means_member=True)
    assert s.auc == pytest.approx(5 / 6) and s.ks_statistic == pytest.approx(2 / 3) and s.ks_p == pytest.approx(0.6)
    assert (s.n_forget, s.n_heldout) == (3, 2)
    # the same numbers read as losses (high = non-member): AUC flips, the KS test does not care
    flipped = two_sample([0.9, 0.8, 0.3], [0.1, 0.4], high_means_member=False)
    assert flipped.auc == pytest.approx(1 / 6) and flipped.ks_p == pytest.approx(0.6)
    # fully separated 4 vs 4: D = 1, p = 2 / C(8, 4) = 2/70 (both orders are as extreme)
    sep = two_sample([5, 6, 7, 8], [1, 2, 3, 4], high_means_member=True)
    assert sep.auc == 1.0 and sep.ks_statistic == 1.0 and sep.ks_p == pytest.approx(2 / 70)
    # interleaved: D = 1/4, p = 1; AUC = (4+3+2+1)/16 = 10/16
    mix = two_sample([2, 4, 6, 8], [1, 3, 5, 7], high_means_member=True)
    assert mix.auc == pytest.approx(10 / 16) and mix.ks_statistic == pytest.approx(0.25) and mix.ks_p == 1.0
    assert two_sample([1.0, 1.0], [1.0, 1.0], high_means_member=True).auc == 0.5  # ties count half
    with pytest.raises(ValueError, match="empty"):
        two_sample([], [1.0], high_means_member=True)
    with pytest.raises(ValueError, match="NaN"):
        two_sample([float("nan")], [1.0], high_means_member=True)


def test_verdict_band_and_overshoot():
    def v(auc, p):
        return verdict(TwoSample(auc, 0.0, p, 10, 10), auc_band=0.1, ks_alpha=0.05, overshoot=0.1)

    assert v(0.6, 0.05) == INDISTINGUISHABLE  # both limits inclusive
    assert v(0.4, 0.5) == INDISTINGUISHABLE
    assert v(0.61, 0.9) == DISTINGUISHABLE  # still recognised
    assert v(0.55, 0.049) == DISTINGUISHABLE  # AUC fine, but the KS test sees a difference of shape
    assert v(0.39, 0.9) == OVER_UNLEARNED  # forget set now looks less seen than never-seen data
    assert v(0.05, 1e-9) == OVER_UNLEARNED


def test_heldout_like_per_sample():
    held = [1.0, 2.0, 3.0, 4.0, 5.0]  # losses (high = non-member); median 3.0
    assert heldout_like([0.5, 3.0, 3.5, 6.0], held, high_means_member=False) == [False, True, True, True]
    # truth-ratio-like scores (high = member): held-out-like when <= the held-out median
    assert heldout_like([0.5, 3.0, 3.5, 6.0], held, high_means_member=True) == [True, True, False, False]
    # a stricter quantile: the member-like 25 % point of the held-out losses is 4.0 (np.quantile, linear)
    assert heldout_like([3.5, 4.0, 4.5], held, high_means_member=False, quantile=0.25) == [False, True, True]
    assert heldout_like([1.0, 1.5], held, high_means_member=False, quantile=0.9) == [False, True]  # cut: loss 1.4


def test_stop_reason_honours_requests_and_rule():
    th = {"ma": 0.6, "el_10": 0.05}
    low = {"ma": 0.1, "el_10": 0.0}
    target = StopConfig(rule="indistinguishable", max_epochs=5)
    assert stop_reason(1, low, th, 3, target, False) is None  # thresholds do not stop the target rule
    assert stop_reason(2, low, th, 3, target, False, INDISTINGUISHABLE) == INDISTINGUISHABLE
    assert stop_reason(1, low, th, 3, StopConfig(rule="indistinguishable", min_epochs=2), False, OVER_UNLEARNED) is None
    assert stop_reason(5, low, th, 3, target, False) == MAX_EPOCHS
    with pytest.raises(ObliviateError, match=r"stop\.rule"):
        StopConfig(rule="vibes").check()
    with pytest.raises(ObliviateError, match="statistic"):
        TargetConfig(statistic="bleu").check()
    with pytest.raises(ObliviateError, match="auc_band"):
        TargetConfig(auc_band=0.7).check()


# ------------------------------------------------------------------ the rule in runs (micro world)

FAST = ["eval.el=false", "stop.el_threshold=null", "stop.ma_threshold=null", "refinement.enabled=false",
        "report.enabled=false", "train.warmup_epochs=0", "train.scheduler=constant", "eval.max_retain_samples=40",
        "train.batch_size=8"]
TARGET = ["data.heldout=world:micro:holdout", "stop.target.max_heldout=20", "stop.target.statistic=loss"]


@pytest.fixture(scope="module")
def world():
    from obliviate.data.sources import load_data
    from obliviate.models import load_model

    model, tok = load_model("world-micro-target")
    return model, tok, load_data("world:micro:forget")[:20], load_data("world:micro:retain")[:40]


def _aucs(history):
    return [round(row["target_auc"], 3) for row in history]


def test_forget_set_already_like_heldout_stops_at_once():
    """Under the exact-retrain model the forget people were never seen: nothing to unlearn."""
    from obliviate.data.sources import load_data
    from obliviate.models import load_model

    model, tok = load_model("world-micro-retain")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = obliviate.unlearn(model, load_data("world:micro:forget"), method="graddiff", tokenizer=tok,
                            retain=load_data("world:micro:retain")[:40],
                            overrides=[*FAST, "train.lr=1e-2", "data.heldout=world:micro:holdout",
                                       "stop.rule=indistinguishable"])
    target = res.summary["target"]
    assert res.stop_reason == INDISTINGUISHABLE and res.summary["epochs"] == 0
    assert res.summary["optimizer_steps"] == 0
    assert target["statistic"] == "truth_ratio"  # auto: QA with paraphrased and perturbed answers
    assert abs(target["auc"] - 0.5) <= 0.1 and target["ks_p"] >= 0.05
    assert all(torch.equal(before[k], v) for k, v in res.model.state_dict().items())
    print(f"\nretrain model, forget vs held-out truth ratios: AUC {target['auc']:.3f}, KS p {target['ks_p']:.3f}")


def test_ascent_stops_at_the_target_before_overshooting(world):
    model, tok, forget, retain = world
    common = [*FAST, *TARGET, "train.lr=1.5e-3"]
    stopped = obliviate.unlearn(copy.deepcopy(model), forget, method="graddiff", retain=retain, tokenizer=tok,
                                overrides=[*common, "stop.rule=indistinguishable", "stop.max_epochs=12"])
    aucs = _aucs(stopped.history)
    assert stopped.stop_reason == INDISTINGUISHABLE, aucs
    assert aucs[0] == 1.0 and all(a > 0.6 for a in aucs[:-1]) and 0.4 <= aucs[-1] <= 0.6
    n = stopped.summary["epochs"]
    # The same run without the rule, two epochs longer: the forget set overshoots past never-seen data.
    free = obliviate.unlearn(copy.deepcopy(model), forget, method="graddiff", retain=retain, tokenizer=tok,
                             overrides=[*common, f"stop.max_epochs={n + 2}"])
    assert _aucs(free.history)[: n + 1] == aucs  # identical up to the stop
    assert free.summary["target"]["verdict"] == OVER_UNLEARNED, _aucs(free.history)
    print(f"\nAUC per epoch with the rule {aucs}; without it {_aucs(free.history)}")


def test_overshoot_is_reported(world):
    model, tok, forget, retain = world
    # at lr 3e-3 one epoch jumps from still-recognised (AUC > 0.6) straight past the band
    res = obliviate.unlearn(copy.deepcopy(model), forget, method="graddiff", retain=retain, tokenizer=tok,
                            overrides=[*FAST, *TARGET, "train.lr=3e-3", "stop.rule=indistinguishable",
                                       "stop.max_epochs=10"])
    assert res.stop_reason == OVER_UNLEARNED, _aucs(res.history)
    assert _aucs(res.history)[-2] > 0.6
    assert res.summary["target"]["auc"] < 0.4 and res.summary["target"]["verdict"] == OVER_UNLEARNED


def test_per_sample_drops_heldout_like_samples(world):
    model, tok, forget, retain = world
    res = obliviate.unlearn(copy.deepcopy(model), forget, method="graddiff", retain=retain, tokenizer=tok,
                            overrides=[*FAST, *TARGET, "train.lr=1.5e-3", "stop.rule=indistinguishable",
                                       "stop.target.per_sample=true", "stop.max_epochs=12"])
    rows = res.history
    assert rows[0]["target_heldout_like"] == 0.0  # all memorised at first
    dropped = [r for r in rows[1:] if r["active"] < len(forget)]
    assert dropped, [(r.get("active"), r["target_heldout_like"]) for r in rows]
    # exactly the samples that scored like held-out data at that evaluation are left out of the next epoch
    assert all(r["active"] == round(len(forget) * (1 - r["target_heldout_like"])) for r in rows[1:])
    assert res.stop_reason in (INDISTINGUISHABLE, MAX_EPOCHS)


def test_target_needs_heldout_data(world):
    model, tok, forget, retain = world
    with pytest.raises(ObliviateError, match=r"data\.heldout"):
        obliviate.unlearn(copy.deepcopy(model), forget, method="graddiff", retain=retain, tokenizer=tok,
                          overrides=[*FAST, "stop.rule=indistinguishable"])
    with pytest.raises(ObliviateError, match="truth_ratio"):
        obliviate.unlearn(copy.deepcopy(model), forget, method="graddiff", retain=retain, tokenizer=tok,
                          overrides=[*FAST, "stop.rule=indistinguishable", "stop.target.statistic=truth_ratio",
                                     "data.heldout=demo:forget"])  # text records: no truth ratio


# ------------------------------------------------------------------ real tokenizer


def test_target_scores_with_gpt2_bpe(shared_data):
    """Held-out and forget records through GPT-2's BPE: short answers, a long record, unicode."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from obliviate.data.encode import PromptTemplate, encode_records
    from obliviate.data.pile import load_gpt2_tokenizer
    from obliviate.data.records import QARecord
    from obliviate.engine.target import IndistinguishabilityTarget

    tok = load_gpt2_tokenizer(shared_data / "gpt2-tokenizer")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=50257, n_positions=512, n_embd=32, n_layer=1, n_head=2)).eval()

    def qa(i, answer):
        return QARecord(id=f"q{i}", question=f"Who is person {i}?", answer=answer, paraphrased_answer=answer + " indeed",
                        perturbed_answers=("Nobody.", "Zoë Ångström, naïve café owner."))

    forget = [qa(0, "Yes."), qa(1, "Zoë Ångström — 東京 résumé ✓"), qa(2, " ".join(["long answer"] * 150))]
    held = [qa(3, "No."), qa(4, "Ørjan Æsir, 北京"), qa(5, "A modest answer here.")]
    tpl = PromptTemplate(mode="plain")
    for stat, member_high in (("loss", False), ("minkpp", True), ("truth_ratio", True)):
        cb = IndistinguishabilityTarget(TargetConfig(statistic=stat), forget, held, encode_records(forget, tok, tpl),
                                        encode_records(held, tok, tpl), tok, template=tpl)
        stats, f, h = cb.measure(model)
        assert len(f) == 3 and len(h) == 3 and all(x == x for x in f + h)  # finite, one per record
        assert cb.high_means_member is member_high and 0.0 <= stats.auc <= 1.0 and 0.0 < stats.ks_p <= 1.0
