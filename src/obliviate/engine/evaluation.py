"""What the engine measures before training and after every epoch (``eval`` section).

* the forget set, per sample: MA everywhere, EL_n where it is defined (a completion needs at
  least ``el_n`` tokens: short answers and refusals are skipped and counted, as ``audit`` does);
* the retain set: token-weighted NLL and perplexity of the completions;
* with refinement enabled: each forget prompt's continuation scored by BERTScore-F1 and BLEU
  (``Refinement.score``); ``RefinementCallback`` turns the scores into the next active set.

Processes share the work (``share`` = ``distributed.gather_in_order``). Thresholds calibrated on
held-out text (``stop.calibrate_on``) are measured here too, with the same settings.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from obliviate.data.encode import Encoded
from obliviate.engine.config import EvalConfig, StopConfig
from obliviate.engine.data import UnlearnData
from obliviate.engine.refinement import Refinement
from obliviate.engine.stopping import mean_over
from obliviate.errors import ObliviateError
from obliviate.metrics import memorization_accuracy
from obliviate.metrics.likelihood import TokenLogProbs, perplexity_of, token_logprobs, token_weighted_nll
from obliviate.metrics.memorization import extraction_likelihood_aligned

Share = Callable[[Callable[[list], list], Sequence], list]


@dataclass
class Evaluation:
    per_sample: dict[str, list[Any]]  # aligned with the forget set; "id" first
    means: dict[str, float]  # the epoch's row: means over the forget set, retain perplexity, counts


def evaluate_epoch(model, data: UnlearnData, ev: EvalConfig, refiner: Refinement | None, share: Share) -> Evaluation:
    """Per-sample MA / EL_n of the forget set, retain perplexity and refinement scores."""
    forget = data.forget
    per_sample: dict[str, list[Any]] = {"id": [e.id for e in forget]}
    per_sample.update(_forget_metrics(model, forget, ev, share))
    means = {k: mean_over(v, None) for k, v in per_sample.items() if k != "id"}
    el_name = f"el_{ev.el_n}"
    if el_name in per_sample:
        means[f"{el_name}_skipped"] = sum(v is None for v in per_sample[el_name])
    if ev.retain and data.retain:
        means.update(_retain_perplexity(model, data.retain[: ev.max_retain_samples], ev, share))
    if refiner is not None:
        triples = share(lambda chunk: _refinement_scores(refiner, model, chunk), forget)
        f1, bleu, texts = (list(column) for column in zip(*triples))
        per_sample.update(refine_bertscore_f1=f1, refine_bleu=bleu, generation=texts)
        means.update(refine_bertscore_f1=mean_over(f1, None), refine_bleu=mean_over(bleu, None))
    return Evaluation(per_sample, means)


def _forget_metrics(model, forget: list[Encoded], ev: EvalConfig, share: Share) -> dict[str, list[Any]]:
    def measure(examples: list[Encoded]) -> list[tuple[float, float | None]]:
        ma = memorization_accuracy(model, examples, region=ev.ma_region, batch_size=ev.batch_size).per_sample
        if not ev.el:
            return [(v, None) for v in ma]
        el = extraction_likelihood_aligned(model, examples, n=ev.el_n, region=ev.el_region,
                                           batch_size=ev.el_batch_size)
        return list(zip(ma, el.per_sample if el is not None else [None] * len(examples)))

    pairs = share(measure, forget)
    out: dict[str, list[Any]] = {"ma": [p[0] for p in pairs]}
    if ev.el:
        out[f"el_{ev.el_n}"] = [p[1] for p in pairs]
    return out


def _retain_perplexity(model, retain: list[Encoded], ev: EvalConfig, share: Share) -> dict[str, float]:
    def nll(examples: list[Encoded]) -> list[TokenLogProbs]:
        return token_logprobs(model, examples, region="completion", batch_size=ev.batch_size, show_progress=False)

    mean_nll = token_weighted_nll(share(nll, retain))  # the one perplexity (evaluation registry: "ppl")
    return {"retain_nll": mean_nll, "retain_ppl": perplexity_of(mean_nll)}


def _refinement_scores(refiner: Refinement, model, examples: list[Encoded]) -> list[tuple[float, float, str]]:
    s = refiner.score(model, examples)
    return list(zip(s.f1, s.bleu, s.texts))


def thresholds(model, heldout: Sequence[Encoded], ev: EvalConfig, stop: StopConfig) -> tuple[dict[str, float | None], str]:
    """The stopping thresholds and where they come from: configured, or calibrated as the
    original model's means on held-out text ("no more memorized than never-seen text")."""
    el_name = f"el_{ev.el_n}"
    if not ev.el and stop.el_threshold is not None:
        raise ObliviateError("eval.el=false measures no EL_n, so it cannot stop on it: set stop.el_threshold=null too")
    if not stop.calibrate_on:
        return {"ma": stop.ma_threshold, el_name: stop.el_threshold}, "configured"
    heldout = list(heldout)
    ma = memorization_accuracy(model, heldout, region=ev.ma_region, batch_size=ev.batch_size).value
    el = math.nan
    if ev.el:
        measured = extraction_likelihood_aligned(model, heldout, n=ev.el_n, region=ev.el_region,
                                                 batch_size=ev.el_batch_size)
        if measured is None:
            raise ObliviateError(f"{stop.calibrate_on}: no held-out record is long enough for EL_{ev.el_n}")
        el = measured.value
    source = f"calibrated: the original model's means on {stop.calibrate_on} ({len(heldout)} records)"
    # The rule compares with a strict <, so store the next float up (a held-out EL of exactly 0
    # is common and would otherwise be a threshold no model can pass).
    ma, el = math.nextafter(ma, math.inf), math.nextafter(el, math.inf)
    return {"ma": ma if stop.ma_threshold is not None else None,
            el_name: el if stop.el_threshold is not None else None}, source
