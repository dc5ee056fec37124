"""The indistinguishability target as an engine callback: unlearn until the forget set looks
never-seen, and no further.

After every evaluation (epoch 0 = the original model) ``IndistinguishabilityTarget`` scores the
forget set and the held-out records (same kind, never trained on) under the current model with
one per-sample statistic, compares the two samples (``metrics.indistinguishability``: MIA AUC and
a KS test) and adds ``target_auc``, ``target_ks_p``, ``target_ks_stat`` and
``target_heldout_like`` (fraction of forget samples already scoring like held-out data) to the
epoch's row, and each sample's score (``target_score``) to the per-sample metrics. Under
``stop.rule=indistinguishable`` it asks the engine to stop when the verdict is
``indistinguishable`` or ``over_unlearned`` (``control.stop``); with ``stop.target.per_sample``
it also drops the samples that already look held-out-like (``EpochUpdate.active``). Without
refinement that choice is made afresh every epoch (a sample that drifts back is unlearned
again); with refinement it narrows refinement's active set (so under refinement's paper rule it
is permanent like refinement's own).

The held-out data are scored again at every evaluation: unlearning moves the model on them too,
and the question is whether the two sets differ *under the current model*.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from obliviate.data.encode import DEFAULT_TEMPLATE, Encoded, PromptTemplate
from obliviate.data.records import QARecord, Record
from obliviate.engine.callbacks import Callback, Control, EpochReport, EpochUpdate, RunArgs
from obliviate.engine.config import TargetConfig
from obliviate.errors import ObliviateError
from obliviate.metrics.indistinguishability import (
    DISTINGUISHABLE,
    TwoSample,
    heldout_like,
    two_sample,
    verdict,
)

log = logging.getLogger(__name__)
# Per statistic: does a high score mean "member" (seen in training)? (orientation of metrics.mia)
HIGH_MEANS_MEMBER = {"loss": False, "mink": False, "minkpp": True, "truth_ratio": True}


def _has_truth_ratio(records: Sequence[Record]) -> bool:
    return all(isinstance(r, QARecord) and r.paraphrased_answer and r.perturbed_answers for r in records)


def resolve_statistic(name: str, forget: Sequence[Record], heldout: Sequence[Record]) -> str:
    """``auto`` -> TOFU's truth ratio when every record is QA with a paraphrase and perturbed
    answers (the statistic forget quality is judged on), else the loss."""
    both = [*forget, *heldout]
    if name == "auto":
        return "truth_ratio" if _has_truth_ratio(both) else "loss"
    if name == "truth_ratio" and not _has_truth_ratio(both):
        bad = next(r for r in both if not _has_truth_ratio([r]))
        raise ObliviateError(f"stop.target.statistic=truth_ratio needs QA records with paraphrased_answer and "
                             f"perturbed_answer; record {bad.id!r} has not")
    return name


def sample_scores(model, statistic: str, records: Sequence[Record], examples: Sequence[Encoded], tokenizer, *,
                  template: PromptTemplate, k: float, batch_size: int) -> list[float]:
    """One score per record under ``model`` (orientation: ``HIGH_MEANS_MEMBER``)."""
    from obliviate.metrics.mia import mia_scores
    from obliviate.metrics.tofu import evaluate_tofu_split, truth_ratios

    if statistic == "truth_ratio":
        logs = evaluate_tofu_split(model, tokenizer, records, "forget", template=template, batch_size=batch_size,
                                   generate=False)
        return truth_ratios(logs["avg_paraphrased_loss"], logs["average_perturb_loss"])
    scores = mia_scores(model, examples, attacks=(statistic,), k=k, region="completion", batch_size=batch_size)
    return next(iter(scores.values())).per_sample


class IndistinguishabilityTarget(Callback):
    """Measures forget vs held-out after every evaluation; under ``stop.rule=indistinguishable``
    stops the run (and, per sample, drops held-out-like samples)."""

    def __init__(self, cfg: TargetConfig, forget: Sequence[Record], heldout: Sequence[Record],
                 forget_examples: Sequence[Encoded], heldout_examples: Sequence[Encoded], tokenizer, *,
                 template: PromptTemplate = DEFAULT_TEMPLATE, controls: bool = True):
        cfg.check()
        if not heldout:
            raise ObliviateError("the indistinguishability target needs held-out records (data.heldout)")
        limit = cfg.max_heldout
        self.cfg, self.tokenizer, self.template, self.controls = cfg, tokenizer, template, controls
        self.forget, self.forget_examples = list(forget), list(forget_examples)
        self.heldout, self.heldout_examples = list(heldout)[:limit], list(heldout_examples)[:limit]
        self.statistic = resolve_statistic(cfg.statistic, self.forget, self.heldout)
        self.high_means_member = HIGH_MEANS_MEMBER[self.statistic]
        self.last: TwoSample | None = None
        self.last_verdict: str | None = None

    def measure(self, model) -> tuple[TwoSample, list[float], list[float]]:
        """(two-sample statistics, forget scores, held-out scores) under ``model``."""
        kw = dict(template=self.template, k=self.cfg.k, batch_size=self.cfg.batch_size)
        with torch.no_grad():
            f = sample_scores(model, self.statistic, self.forget, self.forget_examples, self.tokenizer, **kw)
            h = sample_scores(model, self.statistic, self.heldout, self.heldout_examples, self.tokenizer, **kw)
        return two_sample(f, h, high_means_member=self.high_means_member), f, h

    def on_evaluate(self, args: RunArgs, report: EpochReport, control: Control, *, model: torch.nn.Module,
                    **kwargs: Any) -> EpochUpdate:
        cfg, epoch = self.cfg, report.epoch
        stats, f, h = self.measure(model)
        like = heldout_like(f, h, high_means_member=self.high_means_member, quantile=cfg.quantile)
        self.last, self.last_verdict = stats, verdict(stats, auc_band=cfg.auc_band, ks_alpha=cfg.ks_alpha,
                                                      overshoot=cfg.overshoot)
        log.info("epoch %d: forget vs held-out (%s): AUC %.3f, KS p %.3g -> %s", epoch, self.statistic, stats.auc,
                 stats.ks_p, self.last_verdict)
        active = None
        if self.controls and (epoch > 0 or cfg.before_training):
            if self.last_verdict != DISTINGUISHABLE:
                control.stop(self.last_verdict)
            if cfg.per_sample:
                base = report.active if args.refinement.enabled else [True] * len(like)
                active = [a and not x for a, x in zip(base, like)]
        return EpochUpdate(metrics={**stats.as_row(), "target_heldout_like": sum(like) / len(like)},
                           per_sample={"target_score": f, "target_heldout_like": like}, active=active)

    def summary(self) -> dict[str, Any]:
        """The last measurement, for the run's summary.json."""
        cfg = self.cfg
        out: dict[str, Any] = {"statistic": self.statistic, "n_forget": len(self.forget),
                               "n_heldout": len(self.heldout), "auc_band": cfg.auc_band, "ks_alpha": cfg.ks_alpha,
                               "overshoot": cfg.overshoot, "per_sample": cfg.per_sample}
        if self.last is not None:
            out.update(auc=self.last.auc, ks_p=self.last.ks_p, ks_statistic=self.last.ks_statistic,
                       verdict=self.last_verdict)
        return out
