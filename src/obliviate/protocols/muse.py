"""MUSE (Shi et al. 2024, "Machine Unlearning Six-Way Evaluation"): verbmem, knowmem, privleak.

Data in MUSE's published schema: ``<data>/verbmem/forget.json`` (``prompt``, ``gt``),
``<data>/knowmem/{forget,retain}_qa[_icl].json`` (``question``, ``answer``),
``<data>/privleak/{forget,retain,holdout}.json`` (``text``; a bare list of strings also works),
each a JSON list or JSON lines -- the layout of swj0419/muse_bench's ``data/<corpus>``; or the
hub datasets ``muse-bench/MUSE-News`` / ``MUSE-Books`` (same configs and fields) when reachable.

What is measured (as MUSE's original ``eval.py``):

* **VerbMem** (``verbmem_f/rougeL_f1``): greedy 128 new tokens after each ``prompt``; ROUGE-L F1
  (rouge-score, no stemmer) against ``gt`` cut to its first 128 tokens;
* **KnowMem** (``knowmem_f`` / ``knowmem_r`` ``/rougeL_f1``): the in-context examples as
  "Question: {q}\\nAnswer: {a}\\n\\n", then "Question: {q}\\nAnswer: "; greedy 32 new tokens cut at the
  first "\\n\\n", "\\nQuestion" or "Question:"; ROUGE-L F1 against the answer. ``knowmem_r`` is
  MUSE's utility;
* **PrivLeak** (``forget/privleak``): Min-K% (k = 0.4) scores of the full texts (with BOS), ROC
  AUC of forget (members) vs holdout (non-members) = ``forget/mia_auc`` in obliviate's
  orientation (``obliviate.metrics.mia``), and PrivLeak = (AUC - AUC_retrain) / AUC_retrain x 100 in
  MUSE's orientation. AUC_retrain comes from the retain model's saved MUSE evaluation
  (``retain_results=``), else MUSE's hard-coded values for its Llama-2 retrain models (News
  0.4772, Books 0.5393), which only mean something with MUSE's own data and models.

MUSE prints ROUGE x 100; obliviate keeps every ROUGE in [0, 1]. The ``stemmer`` option gives
open-unlearning's variant (it stems). Min-K% keeps at least one token (MUSE does not, which is
only different for texts of fewer than 3 tokens).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from obliviate.errors import DataError, ObliviateError
from obliviate.protocols.base import EvalResult

HUB = {"news": "muse-bench/MUSE-News", "books": "muse-bench/MUSE-Books"}
STOPS = ("\n\n", "\nQuestion", "Question:")


@dataclass
class MuseOptions:
    data: str | None = None  # folder in MUSE's layout; None = the hub (muse-bench/MUSE-<corpus>)
    corpus: str = "news"  # news | books: hub id and MUSE's default retrain AUC
    retain_results: str | None = None  # the retain model's MUSE evaluation (its forget/mia_auc) for PrivLeak
    limit: int | None = None  # first N items of every split
    verbmem_tokens: int = 128
    knowmem_tokens: int = 32
    mink_k: float = 0.4
    stemmer: bool = False  # MUSE: no stemmer; open-unlearning: stemmer
    max_length: int | None = None  # privleak texts are cut to this many tokens (default: the model's context)
    batch_size: int = 8


def load_split(opts: MuseOptions, config: str, split: str, *, required: bool = True) -> list[dict[str, Any]] | None:
    """One MUSE split as a list of dicts (a bare string becomes {"text": ...})."""
    if opts.data:
        folder = Path(opts.data) / config
        path = next((p for p in (folder / f"{split}.json", folder / f"{split}.jsonl") if p.is_file()), None)
        if path is None:
            if required:
                raise DataError(folder / f"{split}.json", "MUSE split not found")
            return None
        text = path.read_text(encoding="utf-8")
        try:
            rows = json.loads(text)
        except json.JSONDecodeError:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        where = path
    else:
        rows, where = _from_hub(opts.corpus, config, split, required), f"{HUB.get(opts.corpus)}:{config}/{split}"
        if rows is None:
            return None
    if not isinstance(rows, list):
        raise DataError(where, "expected a JSON list of items")
    out = [{"text": r} if isinstance(r, str) else r for r in rows]
    for i, r in enumerate(out):
        if not isinstance(r, dict):
            raise DataError(where, "must be an object or a string", record=i)
    return out[: opts.limit] if opts.limit is not None else out


def _from_hub(corpus: str, config: str, split: str, required: bool) -> list[dict[str, Any]] | None:
    if corpus not in HUB:
        raise ObliviateError(f"corpus must be one of {', '.join(HUB)}, got {corpus!r}")
    try:
        import datasets

        return [dict(r) for r in datasets.load_dataset(HUB[corpus], config, split=split)]
    except Exception as e:
        if not required:
            return None
        raise ObliviateError(f"{HUB[corpus]} ({config}/{split}) is not reachable ({type(e).__name__}); pass data=DIR "
                             "with MUSE's files (verbmem/forget.json, knowmem/forget_qa.json, ...)") from None


def _field(item: dict[str, Any], name: str, where: str, i: int) -> str:
    value = item.get(name)
    if not isinstance(value, str):
        raise DataError(where, "missing or not a string", record=i, field=name)
    return value


def _encode_prompt(tokenizer, prompt: str, reserve: int, context: int):
    """Prompt ids with BOS, cut from the left so that prompt + ``reserve`` new tokens fit."""
    ids = list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
    keep = max(1, context - reserve)
    return ids[-keep:], len(ids) > keep


def _context(model, opts: MuseOptions) -> int:
    return opts.max_length or int(getattr(model.config, "max_position_embeddings", 2048) or 2048)


def _rouge_f1(model, tokenizer, group: str, prepared, max_new_tokens: int, opts: MuseOptions):
    """ROUGE-L F1 of greedy generations through the evaluation layer: (result, generations)."""
    from obliviate.evaluation import EvalOptions, evaluate

    ev = evaluate(model, tokenizer, {group: prepared}, ["rougeL_f1"],
                  options=EvalOptions(max_new_tokens=max_new_tokens, batch_size=opts.batch_size,
                                      stemmer=opts.stemmer))
    return ev.results[f"{group}/rougeL_f1"], ev.generations[group]


def verbmem(model, tokenizer, items: list[dict[str, Any]], opts: MuseOptions) -> tuple[float, list[dict]]:
    from obliviate.data.encode import Encoded
    from obliviate.evaluation import Prepared

    examples, gts, cut = [], [], 0
    for i, item in enumerate(items):
        prompt, gt = _field(item, "prompt", "verbmem", i), _field(item, "gt", "verbmem", i)
        gt_ids = list(tokenizer(gt, add_special_tokens=False)["input_ids"])[: opts.verbmem_tokens]
        ids, was_cut = _encode_prompt(tokenizer, prompt, opts.verbmem_tokens, _context(model, opts))
        cut += was_cut
        examples.append(Encoded(tuple(ids) + tuple(gt_ids), len(ids), str(i)))
        gts.append(tokenizer.decode(gt_ids, skip_special_tokens=True))
    res, texts = _rouge_f1(model, tokenizer, "verbmem_f", Prepared(examples, gts), opts.verbmem_tokens, opts)
    rows = [{"split": "verbmem_f", "id": str(i), "prompt": _field(it, "prompt", "verbmem", i), "reference": gt,
             "generation": t, "rougeL_f1": v} for i, (it, gt, t, v) in enumerate(zip(items, gts, texts, res.per_sample))]
    return res.value, rows


def knowmem(model, tokenizer, items: list[dict[str, Any]], icl: list[dict[str, Any]], opts: MuseOptions,
            split: str) -> tuple[float, list[dict]]:
    from obliviate.data.encode import Encoded
    from obliviate.evaluation import Prepared

    shots = "".join(f"Question: {_field(x, 'question', 'icl', i)}\nAnswer: {_field(x, 'answer', 'icl', i)}\n\n"
                    for i, x in enumerate(icl))
    examples, answers, questions = [], [], []
    for i, item in enumerate(items):
        q, a = _field(item, "question", split, i), _field(item, "answer", split, i)
        ids, _ = _encode_prompt(tokenizer, f"{shots}Question: {q}\nAnswer: ", opts.knowmem_tokens, _context(model, opts))
        examples.append(Encoded((*tuple(ids), 0), len(ids), str(i)))  # placeholder completion: length is knowmem_tokens
        answers.append(a)
        questions.append(q)
    res, texts = _rouge_f1(model, tokenizer, split, Prepared(examples, answers, _cut), opts.knowmem_tokens, opts)
    rows = [{"split": split, "id": str(i), "prompt": q, "reference": a, "generation": t, "rougeL_f1": v}
            for i, (q, a, t, v) in enumerate(zip(questions, answers, texts, res.per_sample))]
    return res.value, rows


def _cut(text: str) -> str:
    for stop in STOPS:
        if stop in text:
            text = text[: text.index(stop)]
    return text.strip()


def privleak_auc(model, tokenizer, forget: list[dict[str, Any]], holdout: list[dict[str, Any]],
                 opts: MuseOptions) -> tuple[Any, list[float], list[float]]:
    from obliviate.data.encode import encode_records
    from obliviate.data.records import TextRecord
    from obliviate.metrics.mia import mia_auc, mia_scores

    def scores(items: list[dict[str, Any]], name: str) -> list[float]:
        records = [TextRecord(f"{name}-{i}", "", _field(x, "text", f"privleak/{name}", i)) for i, x in enumerate(items)]
        enc = encode_records(records, tokenizer, max_length=_context(model, opts))
        tag = f"mia_mink_{round(opts.mink_k * 100)}"
        return mia_scores(model, enc, attacks=("mink",), k=opts.mink_k, region="all",
                          batch_size=opts.batch_size)[tag].per_sample

    fs, hs = scores(forget, "forget"), scores(holdout, "holdout")
    return mia_auc(fs, hs, high_means_member=False), fs, hs


def run_muse(model, tokenizer, opts: MuseOptions) -> EvalResult:
    from obliviate.metrics.mia import MUSE_RETAIN_AUC, privleak
    from obliviate.protocols.base import read_eval

    metrics: dict[str, float] = {}
    details: dict[str, Any] = {"source": opts.data or HUB.get(opts.corpus),
                               "rouge": f"rouge-score ROUGE-L F1, stemmer={opts.stemmer}"}
    rows: list[dict[str, Any]] = []
    # From the hub, verbmem/forget (present in MUSE-News and MUSE-Books) is required: an unreachable hub
    # then fails here in one clear line instead of every split quietly coming back empty.
    vm = load_split(opts, "verbmem", "forget", required=opts.data is None)
    if vm:
        metrics["verbmem_f/rougeL_f1"], r = verbmem(model, tokenizer, vm, opts)
        rows += r
    for split, key in (("forget_qa", "knowmem_f"), ("retain_qa", "knowmem_r")):
        items = load_split(opts, "knowmem", split, required=False)
        if items:
            icl = load_split(opts, "knowmem", f"{split}_icl", required=False) or []
            metrics[f"{key}/rougeL_f1"], r = knowmem(model, tokenizer, items, icl, opts, key)
            rows += r
            details[f"{key}/icl_examples"] = len(icl)
    forget, holdout = load_split(opts, "privleak", "forget", required=False), \
        load_split(opts, "privleak", "holdout", required=False)
    if forget and holdout:
        auc, fs, hs = privleak_auc(model, tokenizer, forget, holdout, opts)
        metrics["forget/mia_auc"] = auc.value
        if opts.retain_results:
            ref = read_eval(opts.retain_results)
            if "forget/mia_auc" not in ref["metrics"]:
                raise DataError(opts.retain_results, "has no forget/mia_auc (evaluate the retain model with "
                                "--benchmark muse first)")
            ref_auc, source = ref["metrics"]["forget/mia_auc"], str(opts.retain_results)
        else:
            ref_auc, source = 1.0 - MUSE_RETAIN_AUC[opts.corpus], f"MUSE's hard-coded retrain AUC ({opts.corpus})"
        pl = privleak(auc.value, ref_auc)
        metrics["forget/privleak"] = pl.value
        details["privleak"] = {**pl.details, "reference": source, "attack": f"Min-{round(opts.mink_k * 100)}%",
                               **auc.details}
        rows += [{"split": "privleak_forget", "id": str(i), "mink": s} for i, s in enumerate(fs)]
        rows += [{"split": "privleak_holdout", "id": str(i), "mink": s} for i, s in enumerate(hs)]
    if not metrics:
        raise ObliviateError(f"{opts.data}: no MUSE split found (verbmem/, knowmem/, privleak/)")
    return EvalResult("muse", metrics, details, rows, settings=asdict(opts))
