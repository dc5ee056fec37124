"""Memorization accuracy (MA) and extraction likelihood (EL_n), exact and fast.

Definitions (Jang et al. 2023, "KUMPR"; ICU reuses them), for a token sequence x_0..x_{T-1}:

* MA = mean over positions t of 1[argmax_v p(v | x_<t) = x_t].
* EL_n = mean over start positions i of OVERLAP_n(g_i, x_{i:T}), where g_i is the greedy
  continuation of the true prefix x_<i up to total length T, and OVERLAP_n(a, b) is the number
  of n-grams of ``a`` (with multiplicity) that occur in the SET of n-grams of ``b``, divided by
  the number of n-grams of ``b`` (T - i - n + 1). N-grams are over token ids.

Positions (``region``):

* ``"all"`` (KUMPR): MA over t = 1..T-1, EL over i = 1..T-n.
* ``"completion"`` (ICU's EL): MA over the completion tokens t = prompt_len..T-1, EL over
  i = prompt_len..T-n, so every prefix contains the whole prompt (ICU's 200-token rows with a
  150-token context give i = 150..190, 41 positions). Note that ICU's *MA* is the ``"all"`` one.

How it is fast (the reference loops in ``reference_loops.py`` are the slow, obvious versions):

* MA is one teacher-forced forward pass per batch: the argmax of the logits at t-1 *is* what a
  one-token ``generate(x_<t)`` returns, so no generation is needed at all.
* EL needs a greedy decode only where the model's teacher-forced prediction is wrong (see
  ``extraction_likelihood``): a start whose next tokens are predicted correctly continues
  exactly like a later start. Those decodes run together in ONE greedy loop with a KV cache.
  Every row of a sample has the same total length T and starts at column 0; rows only differ
  in where teacher forcing stops. At column c a row feeds the true token x_c while c < i and its
  own greedy prediction afterwards. So no row needs any padding at all (positions are simply
  0..T-1 and the attention mask is all ones), which is both the cheapest layout -- each row
  costs exactly T token-steps, where left-padding prefixes to a common width would add
  padding work -- and the one that cannot get position ids wrong. Rows are sorted by start
  position, so a chunk of rows first runs one parallel forward over the part every row still
  teacher-forces (computed once per distinct sample and copied into the cache), then decodes
  only the remaining columns.

EOS inside a greedy continuation (``eos``): ``"stop"`` (default, what ``generate()`` does and
what KUMPR/ICU measured): once a row emits an eos id, the rest of its continuation is filled
with the first eos id, exactly as ``generate(..., pad_token_id=eos)`` pads finished rows.
``"ignore"``: keep decoding through eos as if it were an ordinary token.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from obliviate.data.encode import Encoded, collate
from obliviate.errors import DataError
from obliviate.metrics._model import eos_ids, evaluating, model_device, resolve_pad_id
from obliviate.metrics.base import MetricResult, mean
from obliviate.utils import progress

Region = Literal["all", "completion"]
EosMode = Literal["stop", "ignore"]

# Thresholds for "forgotten" published with the methods (mean over the forget set, strict <).
KUMPR_THRESHOLDS_125M = {"ma": 0.2994, "el_10": 0.0499}  # Jang et al., GPT-Neo-125M
ICU_THRESHOLDS = {"ma": 0.5994, "el_10": 0.0499}  # ICU paper, Sec. IV-D


# --------------------------------------------------------------------------- positions

def _record_name(example: Encoded, index: int) -> str:
    return example.id or f"#{index}"


def ma_positions(example: Encoded, region: Region, index: int = 0) -> range:
    """Target positions t scored by MA (the model predicts x_t from x_<t)."""
    T = len(example.ids)
    first = 1 if region == "all" else max(1, example.prompt_len)
    if region not in ("all", "completion"):
        raise ValueError(f"region must be 'all' or 'completion', got {region!r}")
    if T - first < 1:
        raise DataError("<examples>", f"no scorable positions for MA (length {T}, prompt {example.prompt_len}, "
                        f"region {region!r})", record=_record_name(example, index), field="ids")
    return range(first, T)


def el_starts(example: Encoded, n: int, region: Region, index: int = 0) -> range:
    """Start positions i (prefix = x_<i) scored by EL_n."""
    if region not in ("all", "completion"):
        raise ValueError(f"region must be 'all' or 'completion', got {region!r}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    T = len(example.ids)
    if len(example.ids) <= n:
        raise DataError("<examples>", f"sequence has {T} tokens; EL_{n} needs at least {n + 1}",
                        record=_record_name(example, index), field="ids")
    first = 1 if region == "all" else max(1, example.prompt_len)
    if first > T - n:
        raise DataError("<examples>", f"no start position for EL_{n}: completion has {T - example.prompt_len} "
                        f"tokens, needs at least {n}", record=_record_name(example, index), field="ids")
    return range(first, T - n + 1)


# --------------------------------------------------------------------------- n-gram overlap

def ngram_overlap(prediction: Sequence[int], label: Sequence[int], n: int) -> float:
    """OVERLAP_n, the reference definition: predicted n-grams (with multiplicity) found in the
    SET of label n-grams, over the number of label n-grams."""
    label_grams = [tuple(label[j:j + n]) for j in range(len(label) - n + 1)]
    if not label_grams:
        raise ValueError(f"label has {len(label)} tokens, fewer than n={n}")
    label_set = set(label_grams)
    pred_grams = [tuple(prediction[j:j + n]) for j in range(len(prediction) - n + 1)]
    return sum(g in label_set for g in pred_grams) / len(label_grams)


class _SuffixGrams:
    """For one sequence x, answers "is this n-gram among the n-grams of x[i:]?" in O(1).

    An n-gram occurs in x[i:] iff its LAST start position in x is >= i, so one dict of last
    start positions serves every suffix (instead of building a set per start position).
    """

    def __init__(self, ids: Sequence[int], n: int):
        self.n = n
        self.last: dict[tuple[int, ...], int] = {}
        for j, gram in enumerate(zip(*(ids[k:] for k in range(n)))):
            self.last[gram] = j
        self.T = len(ids)

    def overlap(self, prediction: Sequence[int], start: int) -> float:
        n, get = self.n, self.last.get
        hits = sum(get(g, -1) >= start for g in zip(*(prediction[k:] for k in range(n))))
        return hits / (self.T - start - n + 1)


# --------------------------------------------------------------------------- MA

def memorization_accuracy(model, examples: Sequence[Encoded], *, region: Region = "all",
                          batch_size: int = 32, pad_id: int | None = None) -> MetricResult:
    """MA per sample from ONE teacher-forced forward pass per batch (name ``"ma"``).

    The aggregate is the mean over samples (KUMPR micro-averages within a batch of equal-length
    rows, which is the same number for its 200-token rows); ``details["micro"]`` is the
    position-weighted mean.
    """
    examples = list(examples)
    spans = [ma_positions(e, region, k) for k, e in enumerate(examples)]
    pad = resolve_pad_id(model, pad_id)
    device = model_device(model)
    correct = [0] * len(examples)
    order = sorted(range(len(examples)), key=lambda k: len(examples[k].ids))  # less padding per batch
    with evaluating(model):
        for start in progress(range(0, len(order), batch_size), desc="MA", total=math.ceil(len(order) / batch_size)):
            chunk = order[start:start + batch_size]
            # Right padding: real tokens keep positions 0..T-1 and never attend to the padding.
            batch = collate([examples[k] for k in chunk], pad, padding_side="right").to(device)
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                           position_ids=batch.position_ids).logits
            hits = (logits[:, :-1].argmax(-1) == batch.input_ids[:, 1:]).cpu()
            del logits
            for row, k in enumerate(chunk):
                span = spans[k]
                correct[k] = int(hits[row, span.start - 1:span.stop - 1].sum())
    per_sample = [c / len(s) for c, s in zip(correct, spans)]
    total = sum(len(s) for s in spans)
    return MetricResult("ma", mean(per_sample), per_sample,
                        {"region": region, "positions": [len(s) for s in spans],
                         "micro": sum(correct) / total if total else float("nan")})


# --------------------------------------------------------------------------- EL

@dataclass(frozen=True)
class _Row:
    example: int  # index into examples
    start: int  # prefix length i
    length: int  # T of its example


def batched_greedy_continuations(model, sequences: Sequence[Sequence[int]], starts: Sequence[int], *,
                                 batch_size: int = 64, pad_id: int | None = None,
                                 eos: EosMode = "stop", show_progress: bool = True) -> list[list[int]]:
    """Greedy continuations of many prefixes at once: row r continues ``sequences[r][:starts[r]]``
    to the full length of ``sequences[r]`` and returns the ``len - start`` new tokens.

    See the module docstring for the layout (no padding; teacher forcing switches to greedy
    decoding at each row's own start column). ``batch_size`` is the number of rows decoded
    together (memory: rows x T x the model's KV size).
    """
    if len(sequences) != len(starts):
        raise ValueError("sequences and starts must have the same length")
    device = model_device(model)
    stop_ids = eos_ids(model) if eos == "stop" else []
    fill = stop_ids[0] if stop_ids else None
    pad = resolve_pad_id(model, pad_id)
    out: list[list[int]] = [[] for _ in sequences]
    chunks = _chunk_rows([len(s) for s in sequences], list(starts), batch_size)
    with evaluating(model):
        for chunk in progress(chunks, desc="EL decode", total=len(chunks)) if show_progress else chunks:
            seqs = [sequences[r] for r in chunk]
            row_starts = torch.tensor([starts[r] for r in chunk], device=device)
            width = max(len(s) for s in seqs)
            truth = torch.full((len(chunk), width), pad, dtype=torch.long)
            for j, s in enumerate(seqs):
                truth[j, :len(s)] = torch.as_tensor(list(s), dtype=torch.long)
            truth = truth.to(device)
            first = int(row_starts.min())
            if first < 1:
                raise ValueError("every start must be >= 1 (a prefix needs at least one token)")
            tokens = _decode_rows(model, truth, row_starts, first, width, stop_ids, fill)
            for j, r in enumerate(chunk):
                out[r] = tokens[j, starts[r]:len(sequences[r])].tolist()
    return out


# Cost of one decoding step in row units: a step streams all the weights once, whatever the
# number of rows (measured on CPU for 135M fp32: a 1-row step ~ 1/8 of a 64-row step).
_STEP_OVERHEAD_ROWS = 8


def _chunk_rows(lengths: Sequence[int], starts: Sequence[int], batch_size: int) -> list[list[int]]:
    """Rows decoded together. A chunk runs max(length) - min(start) steps over all its rows, so
    rows of one sample (sorted by start) go together, and a row of another sample joins only
    when that is cheaper than opening a new chunk (a short text with an early start would
    otherwise drag every row of a long text through its teacher-forced columns)."""
    order = sorted(range(len(lengths)), key=lambda r: (lengths[r], starts[r], r))
    chunks: list[list[int]] = []
    first = width = 0
    for r in order:
        if chunks and len(chunks[-1]) < batch_size:
            n, steps = len(chunks[-1]), width - first
            merged = (n + 1 + _STEP_OVERHEAD_ROWS) * (max(width, lengths[r]) - min(first, starts[r]))
            apart = (n + _STEP_OVERHEAD_ROWS) * steps + (1 + _STEP_OVERHEAD_ROWS) * (lengths[r] - starts[r])
            if merged <= apart:
                chunks[-1].append(r)
                first, width = min(first, starts[r]), max(width, lengths[r])
                continue
        chunks.append([r])
        first, width = starts[r], lengths[r]
    return chunks


def _decode_rows(model, truth: torch.Tensor, row_starts: torch.Tensor, first: int, width: int,
                 stop_ids: list[int], fill: int | None) -> torch.Tensor:
    """Run the mixed teacher-forced / greedy loop for one chunk; returns the filled token matrix."""
    device = truth.device
    R = truth.shape[0]
    # 1) One parallel forward over columns 0..first-1, which every row teacher-forces. Rows of
    #    the same sample share that prefix, so compute it once per distinct prefix and copy.
    prefix = truth[:, :first]
    uniq, inverse = torch.unique(prefix, dim=0, return_inverse=True)
    positions = torch.arange(first, device=device).unsqueeze(0)
    # No row is ever padded, so no attention mask is passed (= all ones): the model uses its
    # plain causal attention, the fastest kernel.
    out = model(input_ids=uniq, attention_mask=None,
                position_ids=positions.expand(uniq.shape[0], -1), past_key_values=_new_cache(model, width),
                use_cache=True)
    cache = out.past_key_values
    logits = out.logits[:, -1]
    # torch.unique sorts: map back to the rows' order even when every prefix is distinct.
    if uniq.shape[0] != R or not torch.equal(inverse, torch.arange(R, device=device)):
        cache.reorder_cache(inverse)
        logits = logits[inverse]
    tokens = truth.clone()
    finished = torch.zeros(R, dtype=torch.bool, device=device)
    stop = torch.tensor(stop_ids, dtype=torch.long, device=device)
    # 2) Column by column: predict column c from the cache, keep it where the row is generating.
    for c in range(first, width):
        pred = logits.argmax(-1)
        generating = row_starts <= c
        if fill is not None:
            pred = torch.where(finished, torch.full_like(pred, fill), pred)
            finished |= generating & torch.isin(pred, stop)
        tokens[:, c] = torch.where(generating, pred, truth[:, c])
        if c == width - 1:
            break
        step = tokens[:, c:c + 1]
        out = model(input_ids=step, attention_mask=None,
                    position_ids=torch.full((R, 1), c, dtype=torch.long, device=device),
                    past_key_values=cache, use_cache=True)
        cache, logits = out.past_key_values, out.logits[:, -1]
    return tokens


def _new_cache(model, length: int):
    """A preallocated KV cache of ``length`` positions: a growing (concatenating) cache copies
    all rows' keys and values at every step, which dominates the time for hundreds of rows."""
    from transformers import StaticCache

    try:
        return StaticCache(config=model.config, max_cache_len=length)
    except Exception:  # an architecture without static-cache support: the default cache still works
        return None


def teacher_forced_predictions(model, examples: Sequence[Encoded], *, batch_size: int = 32,
                               pad_id: int | None = None) -> list[list[int]]:
    """``pred[k][t]`` = argmax p(. | x_<t) for t = 1..T-1 (index 0 is a -1 placeholder), from one
    forward pass per batch -- the first token ``generate(x_<t)`` would produce."""
    examples = list(examples)
    pad = resolve_pad_id(model, pad_id)
    device = model_device(model)
    out: list[list[int]] = [[] for _ in examples]
    order = sorted(range(len(examples)), key=lambda k: len(examples[k].ids))
    with evaluating(model):
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            batch = collate([examples[k] for k in chunk], pad, padding_side="right").to(device)
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                           position_ids=batch.position_ids).logits
            argmax = logits[:, :-1].argmax(-1).cpu()
            del logits
            for row, k in enumerate(chunk):
                out[k] = [-1, *argmax[row, :len(examples[k].ids) - 1].tolist()]
    return out


def extraction_likelihood(model, examples: Sequence[Encoded], *, n: int = 10, region: Region = "all",
                          batch_size: int = 64, pad_id: int | None = None, eos: EosMode = "stop",
                          return_continuations: bool = False) -> MetricResult:
    """EL_n per sample (name ``f"el_{n}"``).

    Every start position's greedy continuation is built from (1) one teacher-forced forward
    pass and (2) one batched greedy loop over the *divergence points* only:

    * if the model's greedy token at t equals x_t, the continuation of x_<t has consumed x_t
      and is from then on the continuation of x_<t+1 (greedy decoding depends only on the
      context). So the continuation of x_<i is x_i..x_{j-1} followed by the continuation of
      x_<j, where j >= i is the first position whose teacher-forced prediction is wrong;
    * only those j (the MA misses) are decoded, each once, however many starts lead to it.
      The more a text is memorized, the fewer rows need decoding. With ``eos="stop"`` a
      correctly predicted eos ends the chain (the continuation stops there, filled with eos).

    ``batch_size`` = continuations decoded together. ``details["per_position"]`` holds each
    sample's overlap at every start; ``details["decoded"]`` the number of decoded rows;
    ``return_continuations`` keeps the continuations (``details["continuations"]``).
    """
    examples = list(examples)
    starts = [el_starts(e, n, region, k) for k, e in enumerate(examples)]
    preds = teacher_forced_predictions(model, examples, batch_size=max(1, min(batch_size, 32)), pad_id=pad_id)
    stop_ids = set(eos_ids(model)) if eos == "stop" else set()
    fill = eos_ids(model)[0] if stop_ids else None

    # next_break[k][t]: first position u >= t where the chain through the truth stops (wrong
    # prediction, or a correctly predicted eos that ends the generation); T if none.
    rows: list[_Row] = []
    next_break: list[list[int]] = []
    for k, e in enumerate(examples):
        T, x, pred = len(e.ids), e.ids, preds[k]
        nb = [T] * (T + 1)
        for t in range(T - 1, starts[k].start - 1, -1):
            nb[t] = t if (pred[t] != x[t] or x[t] in stop_ids) else nb[t + 1]
        next_break.append(nb)
        needed = sorted({nb[i] for i in starts[k] if nb[i] < T and pred[nb[i]] != x[nb[i]]})
        rows.extend(_Row(k, j, T) for j in needed)
    decoded = batched_greedy_continuations(model, [examples[r.example].ids for r in rows], [r.start for r in rows],
                                           batch_size=batch_size, pad_id=pad_id, eos=eos)
    tails = {(r.example, r.start): c for r, c in zip(rows, decoded)}

    grams = [_SuffixGrams(e.ids, n) for e in examples]
    per_position: list[list[float]] = []
    continuations: list[list[list[int]]] = []
    for k, e in enumerate(examples):
        T, x = len(e.ids), list(e.ids)
        scores, conts = [], []
        for i in starts[k]:
            j = next_break[k][i]
            if j == T:
                cont = x[i:]
            elif (k, j) in tails:
                cont = x[i:j] + tails[(k, j)]
            else:  # a correctly predicted eos: the generation stops there
                cont = x[i:j + 1] + [fill] * (T - j - 1)  # type: ignore[list-item]
            scores.append(grams[k].overlap(cont, i))
            if return_continuations:
                conts.append(cont)
        per_position.append(scores)
        continuations.append(conts)
    per_sample = [mean(p) for p in per_position]
    details = {"n": n, "region": region, "eos": eos, "starts": [[s.start, s.stop - 1] for s in starts],
               "per_position": per_position, "decoded": len(rows),
               "positions": sum(len(s) for s in starts)}
    if return_continuations:
        details["continuations"] = continuations
    return MetricResult(f"el_{n}", mean(per_sample), per_sample, details)


def extraction_likelihood_aligned(model, examples: Sequence[Encoded], *, n: int, region: Region = "all",
                                  batch_size: int = 64) -> MetricResult | None:
    """EL_n over the examples long enough for it, per-sample values aligned with the input (None
    for the others: QA answers are often shorter than n); None when no example is long enough."""
    examples = list(examples)

    def eligible(e: Encoded) -> bool:
        first = 1 if region == "all" else max(1, e.prompt_len)
        return len(e.ids) > n and first <= len(e.ids) - n

    keep = [k for k, e in enumerate(examples) if eligible(e)]
    if not keep:
        return None
    res = extraction_likelihood(model, [examples[k] for k in keep], n=n, region=region, batch_size=batch_size)
    aligned: list[float | None] = [None] * len(examples)
    for k, v in zip(keep, res.per_sample):
        aligned[k] = v
    res.details.pop("per_position", None)  # large; the per-sample values are kept
    res.details["skipped"] = len(examples) - len(keep)
    return MetricResult(res.name, res.value, aligned, res.details)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- thresholds

@dataclass(frozen=True)
class ForgetThresholds:
    """Mean MA and EL_n below which a forget set counts as forgotten (strict <, as KUMPR)."""

    ma: float
    el: float
    n: int = 10
    region: Region = "all"
    source: str = ""  # where they came from: "calibrated on <data> (k records)", "KUMPR 125M", ...

    @property
    def el_name(self) -> str:
        return f"el_{self.n}"

    def forgotten(self, ma: float, el: float) -> bool:
        return ma < self.ma and el < self.el

    def to_dict(self) -> dict:
        return {"ma": self.ma, self.el_name: self.el, "n": self.n, "region": self.region, "source": self.source}


def calibrate_thresholds(model, tokenizer, heldout_records, *, n: int = 10, region: Region = "all",
                         template=None, max_length: int | None = None, batch_size: int = 32,
                         el_batch_size: int = 64, source: str = "held-out text") -> ForgetThresholds:
    """Jang et al.'s rule: the thresholds are the model's own mean MA and EL_n on text it never
    saw. A forget set whose means fall below them is memorized no more than unseen text."""
    from obliviate.data.encode import DEFAULT_TEMPLATE, encode_records

    examples = encode_records(list(heldout_records), tokenizer, template or DEFAULT_TEMPLATE, max_length=max_length)
    if not examples:
        raise DataError(source, "no held-out records to calibrate thresholds on")
    ma = memorization_accuracy(model, examples, region=region, batch_size=batch_size)
    el = extraction_likelihood(model, examples, n=n, region=region, batch_size=el_batch_size)
    return ForgetThresholds(ma=ma.value, el=el.value, n=n, region=region,
                            source=f"calibrated on {source} ({len(examples)} records)")
