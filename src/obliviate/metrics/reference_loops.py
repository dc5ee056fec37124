"""The straightforward MA / EL loops, written the way KUMPR and ICU run them.

They exist to check the fast versions in ``memorization.py`` (golden tests) and to time them
(``benchmarks/bench_metrics.py``); use the fast ones for real work.

* MA: one ``generate(x_<t, max_new_tokens=1)`` per position t, batched over samples.
* EL_n: one ``generate(x_<i)`` to total length T per start position i, batched over samples,
  then ``ngram_overlap`` (the set-based reference definition) per row.

Samples are batched only with samples of the same length and prompt length, so no prompt is
ever padded: these loops test the fast versions' padding and position handling, they must not
depend on the same machinery. Finished rows are padded with the first eos id (``eos="stop"``),
as ``generate(..., pad_token_id=eos)`` does in the reference code; ``eos="ignore"`` gives
``generate`` no eos at all.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch

from obliviate.data.encode import Encoded
from obliviate.metrics._model import eos_ids, evaluating, greedy_generation_config, model_device
from obliviate.metrics.base import MetricResult, mean
from obliviate.metrics.memorization import EosMode, Region, el_starts, ma_positions, ngram_overlap


def _groups(examples: Sequence[Encoded], batch_size: int) -> list[list[int]]:
    by_shape: dict[tuple[int, int], list[int]] = defaultdict(list)
    for k, e in enumerate(examples):
        by_shape[(len(e.ids), e.prompt_len)].append(k)
    return [ks[s:s + batch_size] for ks in by_shape.values() for s in range(0, len(ks), batch_size)]


def reference_memorization_accuracy(model, examples: Sequence[Encoded], *, region: Region = "all",
                                    batch_size: int = 32) -> MetricResult:
    examples = list(examples)
    spans = [ma_positions(e, region, k) for k, e in enumerate(examples)]
    device = model_device(model)
    stop = eos_ids(model)
    fill = stop[0] if stop else 0
    per_sample = [0.0] * len(examples)
    with evaluating(model):
        for group in _groups(examples, batch_size):
            ids = torch.tensor([examples[k].ids for k in group], device=device)
            span = spans[group[0]]
            correct = torch.zeros(len(group))
            for t in span:
                cfg = greedy_generation_config(max_new_tokens=1, pad_token_id=fill, eos_token_id=stop)
                out = model.generate(input_ids=ids[:, :t], attention_mask=torch.ones_like(ids[:, :t]),
                                     generation_config=cfg)
                correct += (out[:, t] == ids[:, t]).float().cpu()
            for row, k in enumerate(group):
                per_sample[k] = float(correct[row]) / len(span)
    return MetricResult("ma", mean(per_sample), per_sample, {"region": region, "implementation": "reference loop"})


def reference_greedy_continuations(model, examples: Sequence[Encoded], starts_of: Sequence[Sequence[int]], *,
                                   batch_size: int = 32, eos: EosMode = "stop") -> list[dict[int, list[int]]]:
    """For each example, {start i: greedy continuation of ids[:i] to total length T}."""
    device = model_device(model)
    stop = eos_ids(model) if eos == "stop" else []
    fill = eos_ids(model)[0] if eos_ids(model) else 0
    out: list[dict[int, list[int]]] = [{} for _ in examples]
    with evaluating(model):
        for group in _groups(examples, batch_size):
            ids = torch.tensor([examples[k].ids for k in group], device=device)
            T = ids.shape[1]
            for i in starts_of[group[0]]:
                cfg = greedy_generation_config(max_new_tokens=T - i, pad_token_id=fill, eos_token_id=stop)
                gen = model.generate(input_ids=ids[:, :i], attention_mask=torch.ones_like(ids[:, :i]),
                                     generation_config=cfg)[:, i:]
                if gen.shape[1] < T - i:  # every row hit eos: generate stopped early; pad like it pads
                    gen = torch.cat([gen, gen.new_full((len(group), T - i - gen.shape[1]), fill)], dim=1)
                for row, k in enumerate(group):
                    out[k][i] = gen[row].tolist()
    return out


def reference_extraction_likelihood(model, examples: Sequence[Encoded], *, n: int = 10, region: Region = "all",
                                    batch_size: int = 32, eos: EosMode = "stop") -> MetricResult:
    examples = list(examples)
    starts = [el_starts(e, n, region, k) for k, e in enumerate(examples)]
    conts = reference_greedy_continuations(model, examples, starts, batch_size=batch_size, eos=eos)
    per_position = [[ngram_overlap(conts[k][i], e.ids[i:], n) for i in starts[k]] for k, e in enumerate(examples)]
    per_sample = [mean(p) for p in per_position]
    return MetricResult(f"el_{n}", mean(per_sample), per_sample,
                        {"n": n, "region": region, "eos": eos, "per_position": per_position,
                         "implementation": "reference loop"})
