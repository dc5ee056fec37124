"""What the engine measures before training and after every epoch (``eval`` section).

* the forget set, per sample: MA everywhere, EL_n where it is defined (a completion needs at
  least ``el_n`` tokens: short answers and refusals are skipped and counted, as ``audit`` does);
* the retain set: token-weighted NLL and perplexity of the completions;
* with refinement enabled: each forget prompt's continuation scored by BERTScore-F1 and BLEU
  (``Refinement.score``); ``RefinementCallback`` turns the scores into the next active set.

MA and EL_n are the evaluation layer's (``evaluate`` on pre-encoded examples, ``measure_ma_el``).
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
from obliviate.evaluation import EvalOptions, Prepared, evaluate
from obliviate.metrics.likelihood import TokenLogProbs, perplexity_of, token_logprobs, token_weighted_nll

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


def measure_ma_el(model, examples: Sequence[Encoded], ev: EvalConfig):
    """MA (and EL_n with ``eval.el``) of pre-encoded examples through the evaluation layer, each on its
    own region; keys ``g/ma``, ``g/el_<n>`` (absent when no example is long enough for EL_n)."""
    names = ["ma", f"el_{ev.el_n}"] if ev.el else ["ma"]
    opts = EvalOptions(region=ev.ma_region, el_region=ev.el_region, el_n=ev.el_n, batch_size=ev.batch_size,
                       el_batch_size=ev.el_batch_size)
    return evaluate(model, None, {"g": Prepared(list(examples))}, names, options=opts)


def _forget_metrics(model, forget: list[Encoded], ev: EvalConfig, share: Share) -> dict[str, list[Any]]:
    def measure(examples: list[Encoded]) -> list[tuple[float, float | None]]:
        if not examples:  # a process with no share of the forget set
            return []
        per = measure_ma_el(model, examples, ev).per_sample
        return list(zip(per["g/ma"], per.get(f"g/el_{ev.el_n}", [None] * len(examples))))

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
    measured = measure_ma_el(model, heldout, ev).values
    ma, el = measured["g/ma"], math.nan
    if ev.el:
        if f"g/el_{ev.el_n}" not in measured:
            raise ObliviateError(f"{stop.calibrate_on}: no held-out record is long enough for EL_{ev.el_n}")
        el = measured[f"g/el_{ev.el_n}"]
    source = f"calibrated: the original model's means on {stop.calibrate_on} ({len(heldout)} records)"
    # The rule compares with a strict <, so store the next float up (a held-out EL of exactly 0
    # is common and would otherwise be a threshold no model can pass).
    ma, el = math.nextafter(ma, math.inf), math.nextafter(el, math.inf)
    return {"ma": ma if stop.ma_threshold is not None else None,
            el_name: el if stop.el_threshold is not None else None}, source
