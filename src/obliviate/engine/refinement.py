"""Iterative unlearning refinement (ICU's IUR, paper section IV-D) as a callback any method can use.

After each epoch the model continues every forget prompt (2-beam search, as many new tokens as
the target has), the continuation is scored against the target with BERTScore-F1 and ICU's
BLEU, and samples that count as forgotten stop being unlearned -- which keeps the unlearning
from eroding the model further on samples it already dropped.

Two rules, because the paper and its code disagree:

* ``paper`` (eq. 5 and the text): a sample is forgotten when BERTScore < a **and** BLEU < b,
  and "samples deemed forgotten are excluded from subsequent epochs" -- a permanent decision.
  Checked after each epoch only.
* ``reference`` (himalalps/ICU ``val_score``): forgotten when BERTScore < a **or** BLEU < b,
  recomputed from scratch every epoch, so a sample can come back; the check also runs once
  before training (dropping samples the original model does not reproduce).

The default is ``reference``: with our offline BERTScore backbone (all-MiniLM-L6-v2) its notion
of "forgotten" matches what never-seen text looks like (80 % of held-out people's answers count
as forgotten, vs 22 % under the paper rule), while the paper rule can keep unlearning samples
that are long gone (``benchmarks/refinement_rules.py``; numbers in docs/methods.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from obliviate.engine.callbacks import Callback, Control, EpochReport, EpochUpdate, RunArgs
from obliviate.engine.config import RefinementConfig


def is_forgotten(f1: float, bleu: float, cfg: RefinementConfig) -> bool:
    """Eq. (5): below both thresholds (paper) or below either (reference code)."""
    below_f1, below_bleu = f1 < cfg.bertscore_threshold, bleu < cfg.bleu_threshold
    return (below_f1 and below_bleu) if cfg.rule == "paper" else (below_f1 or below_bleu)


def next_active(active: Sequence[bool], forgotten: Sequence[bool], rule: str) -> list[bool]:
    """Which samples are unlearned in the next epoch.

    ``paper``: once out, always out. ``reference``: exactly the samples not forgotten now.
    """
    if rule == "reference":
        return [not f for f in forgotten]
    return [a and not f for a, f in zip(active, forgotten)]


@dataclass
class RefinementScores:
    """Per-sample scores of one refinement check, aligned with the forget set."""

    f1: list[float]
    bleu: list[float]
    texts: list[str]
    forgotten: list[bool] = field(default_factory=list)

    def means(self) -> dict[str, float]:
        n = max(len(self.f1), 1)
        return {"refine_bertscore_f1": sum(self.f1) / n, "refine_bleu": sum(self.bleu) / n,
                "refine_forgotten": sum(self.forgotten) / n}


class Refinement:
    """Scores continuations of forget prompts; the engine's evaluation calls ``score`` (on every
    evaluation, when refinement is enabled) and ``RefinementCallback`` decides from the scores."""

    def __init__(self, cfg: RefinementConfig, tokenizer):
        cfg.check()
        self.cfg, self.tokenizer = cfg, tokenizer
        self._scorer = None

    @property
    def scorer(self):
        if self._scorer is None:
            from obliviate.metrics import get_bert_scorer

            self._scorer = get_bert_scorer(self.cfg.bertscore_model)
        return self._scorer

    def score(self, model, examples: Sequence) -> RefinementScores:
        """Generate from each example's prompt and score against its completion."""
        from obliviate.metrics import bleu_icu, generate_completions

        if not examples:
            return RefinementScores([], [], [], [])
        gens = generate_completions(model, self.tokenizer, examples, max_new_tokens=self.cfg.max_new_tokens,
                                    num_beams=self.cfg.num_beams, batch_size=self.cfg.batch_size)
        texts = [g.text for g in gens]
        refs = [self.tokenizer.decode(e.completion, skip_special_tokens=True) for e in examples]
        f1 = self.scorer.score(texts, refs).per_sample
        bleu = bleu_icu(texts, refs).per_sample
        forgotten = [is_forgotten(f, b, self.cfg) for f, b in zip(f1, bleu)]
        return RefinementScores([float(v) for v in f1], [float(v) for v in bleu], texts, forgotten)


class RefinementCallback(Callback):
    """IUR as a callback: from this evaluation's ``refine_*`` scores, the next epoch's active set.

    The scores come from the engine's evaluation (``Refinement.score``, shared by every process);
    this callback only applies eq. 5 and the rule, so any method can use it. Before training
    (epoch 0) it acts only when ``checks_before_training`` (the reference rule)."""

    def __init__(self, cfg: RefinementConfig):
        self.cfg = cfg

    def on_evaluate(self, args: RunArgs, report: EpochReport, control: Control, **kwargs) -> EpochUpdate | None:
        if report.epoch == 0 and not self.cfg.checks_before_training:
            return None
        f1, bleu = report.per_sample["refine_bertscore_f1"], report.per_sample["refine_bleu"]
        forgotten = [is_forgotten(f, b, self.cfg) for f, b in zip(f1, bleu)]
        return EpochUpdate(active=next_active(report.active, forgotten, self.cfg.rule))
