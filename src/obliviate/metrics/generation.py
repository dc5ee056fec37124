"""Generate continuations of the prompts of encoded records, and exact extraction.

``generate_completions`` is what the text metrics (BLEU, BERTScore, ROUGE, entropy), ICU's
refinement step and exact extraction consume. It is ``model.generate`` with a fully explicit
greedy/beam config, prompts ``ids[:prompt_len]`` left-padded with an attention mask (HF
derives position ids from the mask), generation stopped at eos.

Batches hold only examples with the same number of new tokens: for greedy decoding a longer
run would just be cut, but beam search results are not prefixes of each other, so a shared
``max_new_tokens`` would change them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from obliviate.data.encode import Encoded, collate
from obliviate.errors import DataError
from obliviate.metrics._model import eos_ids, evaluating, greedy_generation_config, model_device
from obliviate.metrics.base import MetricResult, mean
from obliviate.utils import progress


@dataclass
class Generation:
    ids: list[int]  # new tokens only, up to and including the first eos (nothing after it)
    text: str  # ids decoded with skip_special_tokens=True


def generate_completions(model, tokenizer, examples: Sequence[Encoded], *, max_new_tokens: int | None = None,
                         num_beams: int = 1, batch_size: int = 32) -> list[Generation]:
    """Continue every example's prompt; ``max_new_tokens=None`` -> the example's completion length."""
    examples = list(examples)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos_ids(model) or [0])[0]
    stop = eos_ids(model)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in stop:
        stop.append(int(tokenizer.eos_token_id))
    wanted: list[int] = []  # new tokens per example
    groups: dict[int, list[int]] = defaultdict(list)
    for k, e in enumerate(examples):
        if e.prompt_len < 1:
            raise DataError("<examples>", "has no prompt tokens to generate from (empty prefix and no BOS)",
                            record=e.id or f"#{k}", field="prefix")
        wanted.append(max_new_tokens if max_new_tokens is not None else len(e.ids) - e.prompt_len)
        # Greedy rows of different lengths share a batch (generate the longest, cut each row to its
        # own length: greedy tokens do not depend on how far decoding goes). Beam search does
        # depend on the length limit, so beams are batched per length.
        groups[wanted[-1] if num_beams > 1 else 0].append(k)
    # Similar prompt lengths together: less left padding.
    batches = [ks[s:s + batch_size] for ks in groups.values()
               for ks in [sorted(ks, key=lambda k: examples[k].prompt_len)] for s in range(0, len(ks), batch_size)]
    device = model_device(model)
    out: list[Generation | None] = [None] * len(examples)
    with evaluating(model):
        for chunk in progress(batches, desc="generate", total=len(batches)):
            new = max(wanted[k] for k in chunk)
            prompts = [Encoded(examples[k].ids[:examples[k].prompt_len], examples[k].prompt_len) for k in chunk]
            batch = collate(prompts, pad, padding_side="left").to(device)
            if new < 1:
                gen = torch.empty((len(chunk), 0), dtype=torch.long)
            else:
                cfg = greedy_generation_config(max_new_tokens=new, pad_token_id=pad, eos_token_id=stop,
                                               num_beams=num_beams)
                gen = model.generate(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                     generation_config=cfg)[:, batch.input_ids.shape[1]:].cpu()
            for row, k in enumerate(chunk):
                ids = gen[row, :wanted[k]].tolist()
                for j, t in enumerate(ids):
                    if t in stop:
                        ids = ids[:j + 1]
                        break
                out[k] = Generation(ids, tokenizer.decode(ids, skip_special_tokens=True))
    return out  # type: ignore[return-value]


def exact_extraction(generations: Sequence[Generation] | Sequence[Sequence[int]], examples: Sequence[Encoded], *,
                     name: str = "exact") -> MetricResult:
    """1 per sample whose generated tokens equal its completion ``ids[prompt_len:]`` exactly.

    Compares token ids, so a QA answer's trailing eos must be generated too (it is part of the
    completion). Pass generations made with ``num_beams>1`` and ``name="exact_beam2"`` for the
    beam variant.
    """
    if len(generations) != len(examples):
        raise ValueError(f"{len(generations)} generations for {len(examples)} examples")
    per_sample = []
    for g, e in zip(generations, examples):
        ids = g.ids if isinstance(g, Generation) else list(g)
        per_sample.append(float(list(ids) == list(e.completion)))
    return MetricResult(name, mean(per_sample), per_sample, {"compares": "token ids of the completion"})


def exact_extraction_rate(model, tokenizer, examples: Sequence[Encoded], *, num_beams: int = 1,
                          batch_size: int = 32) -> MetricResult:
    """Generate (greedy or beam) and score exact extraction in one call."""
    gens = generate_completions(model, tokenizer, examples, num_beams=num_beams, batch_size=batch_size)
    name = "exact" if num_beams == 1 else f"exact_beam{num_beams}"
    result = exact_extraction(gens, examples, name=name)
    result.details["num_beams"] = num_beams
    return result
