"""TOFU (Maini et al. 2024) and the synthetic world as a complete TOFU-protocol benchmark.

**TOFU** (``--benchmark tofu``). Splits in TOFU's JSON schema (``question``, ``answer``,
``paraphrased_answer``, ``perturbed_answer``, ``paraphrased_question``): the forget split
(``forget10_perturbed.json``), ``retain_perturbed.json``, ``real_authors_perturbed.json``,
``world_facts_perturbed.json``; from a local folder (``data=DIR``; each split can also be given
as a file) or from the hub (``locuslab/TOFU``) when it is reachable. Per split: the answer
probability, ROUGE-L recall of the greedy answer and the truth ratio (definitions and golden
tests: ``obliviate.metrics.tofu``). Forget quality is the KS-test p-value against a **retain
model's saved results** (``retain_results=``: the folder or ``tofu_log.json`` that ``obliviate
eval`` wrote for the retain model, or TOFU's own ``eval_log_aggregated.json``).

**Model utility is TOFU's harmonic mean of nine numbers**: {probability, ROUGE, truth ratio} x
{retain, real authors, world facts}. It is reported only when all three splits are evaluated.
TOFU's published numbers use TOFU's own retain split (``retain_perturbed``, 400 items of about 20
retain authors) and its real-authors and world-facts files; a utility computed on other splits
is not comparable to them.

**The synthetic world** (``--benchmark world``): the same protocol on the built-in world
(``obliviate.world``), fully offline, with its own exact-retrain reference: the model
``world[-micro]-retain`` never saw the forget people. Its evaluation is computed once, cached
(``~/.cache/obliviate/evals``) and used for forget quality and PrivLeak, so both work without
any extra step. The world has no real-authors split, so its utility is ``world_utility``: the
harmonic mean of the six {probability, ROUGE, truth ratio} x {retain, world facts} numbers (not
TOFU's model utility). It also measures what the ICU paper reports on the forget answers (MA,
EL_10, ICU's BLEU, BERTScore, entropy of the generated tokens), the retain perplexity, and
membership inference: Min-K% (k = 0.4) AUC of forget vs never-seen ``holdout`` people and
PrivLeak relative to the retain model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from obliviate.data.records import QARecord
from obliviate.errors import DataError, ObliviateError
from obliviate.protocols.base import EvalResult

TOFU_SPLITS = ("forget", "retain", "real_authors", "world_facts")
TOFU_FILES = {"retain": "retain_perturbed", "real_authors": "real_authors_perturbed",
              "world_facts": "world_facts_perturbed"}
HUB_ID = "locuslab/TOFU"
WORLD_EVAL_VERSION = 1  # bump when the world protocol changes: cached reference evaluations are keyed by it


@dataclass
class TofuOptions:
    data: str | None = None  # folder with TOFU's JSON files; None = the hub (locuslab/TOFU)
    forget_split: str = "forget10"  # forget01 | forget05 | forget10 (reads <split>_perturbed.json)
    forget: str | None = None  # any split given as a file wins over data=
    retain: str | None = None
    real_authors: str | None = None
    world_facts: str | None = None
    retain_results: str | None = None  # the retain model's saved results: forget quality
    limit: int | None = None  # first N items of each split (TOFU's legacy evaluation used 300)
    max_new_tokens: int = 200  # greedy answers for ROUGE (TOFU / open-unlearning: 200, stop at eos)
    batch_size: int = 16
    template: str = "auto"  # auto | chat | plain  (plain = "Question: {q}\nAnswer:")
    icu_metrics: bool = False  # also MA, EL_10, BLEU, BERTScore, entropy on the forget answers


@dataclass
class WorldOptions:
    profile: str = "auto"  # micro | full | auto (from the model)
    reference_model: str | None = None  # the exact-retrain model (default world[-micro]-retain)
    retain_results: str | None = None  # use these saved results instead of the cached reference evaluation
    limit: int | None = None
    max_new_tokens: int = 64  # world answers are one sentence
    batch_size: int = 32
    icu_metrics: bool = True
    mia: bool = True  # Min-K% AUC forget vs holdout + PrivLeak vs the reference model
    mink_k: float = 0.4  # PrivLeak's Min-40% (MUSE)


# --------------------------------------------------------------------------- evaluation of QA splits

def evaluate_qa_splits(model, tokenizer, splits: dict[str, list[QARecord]], *, template, max_new_tokens: int,
                       batch_size: int, icu_metrics: bool = False, el_n: int = 10, ppl: bool = False,
                       bert_scorer=None) -> tuple[dict[str, float], dict[str, Any], dict[str, Any], list[dict]]:
    """TOFU's three numbers for every split (plus the ICU metrics on the forget split).

    Returns ``(metrics, logs, details, rows)``: ``logs`` are TOFU-style per-item logs per split
    (``tofu_log.json``), ``rows`` the per-sample rows. The greedy answers and every metric on them
    come from one ``evaluate`` call per split (one generation shared by ROUGE and the ICU metrics).
    """
    from obliviate.evaluation import EvalOptions, evaluate
    from obliviate.metrics.tofu import evaluate_tofu_split, split_scores

    metrics: dict[str, float] = {}
    logs: dict[str, Any] = {}
    details: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    opts = EvalOptions(template=template, max_new_tokens=max_new_tokens, batch_size=batch_size, el_n=el_n,
                       strip_generations=True, bert_scorer=bert_scorer)
    for split, records in splits.items():
        if not records:
            continue
        kind = "forget" if split == "forget" else split if split in ("real_authors", "world_facts") else "retain"
        log = evaluate_tofu_split(model, tokenizer, records, kind, template=template, batch_size=batch_size,
                                  generate=False)
        icu = ICU_METRICS if split == "forget" and icu_metrics else []
        names = ["rougeL_recall", *(f"el_{el_n}" if m == "el" else m for m in icu),
                 *(["ppl"] if ppl and split == "retain" else [])]
        ev = evaluate(model, tokenizer, {split: records}, names, options=opts)
        texts = ev.generations[split]
        log["generated_text"] = texts
        log["rougeL_recall"] = ev.per_sample[f"{split}/rougeL_recall"]
        scores = split_scores(log, kind)  # type: ignore[arg-type]
        prob_name = "tofu_prob" if kind in ("forget", "retain") else "tofu_prob_options"
        for name, res in scores.items():
            metrics[f"{split}/{name}"] = res.value
        per = {"tofu_prob": scores[prob_name].per_sample, "rougeL_recall": scores["rougeL_recall"].per_sample,
               "truth_ratio": scores["truth_ratio"].per_sample}
        for key, value in ev.values.items():
            name = key.split("/", 1)[1]
            if name != "rougeL_recall":
                metrics[key] = value
                if name != "ppl":
                    per[name] = ev.per_sample[key]
        if f"{split}/el_{el_n}" in ev.values:
            details[f"forget/el_{el_n}"] = {"region": "completion (answer tokens)",
                                            "skipped_short": ev.results[f"{split}/el_{el_n}"].details["skipped"]}
        if icu:
            details["bertscore_backbone"] = ev.details[f"{split}/bertscore_backbone"]
        logs[split] = log
        for k, r in enumerate(records):
            row = {"split": split, "id": r.id, "prompt": r.question, "reference": r.answer, "generation": texts[k]}
            row.update({name: values[k] for name, values in per.items() if values is not None and k < len(values)})
            rows.append(row)
        details[f"{split}/items"] = len(records)
    return metrics, logs, details, rows


# The ICU paper's forget-set numbers on the answers: MA, EL_n (answers of at least n+1 tokens),
# ICU's BLEU, BERTScore F1 and the entropy of the generated ids.
ICU_METRICS = ("ma", "el", "bleu_icu", "bertscore_f1", "entropy")


def utility_numbers(metrics: dict[str, float], splits: tuple[str, ...]) -> list[float] | None:
    out = []
    for split in splits:
        prob = "tofu_prob" if split == "retain" else "tofu_prob_options"
        for key in (f"{split}/{prob}", f"{split}/rougeL_recall", f"{split}/truth_ratio"):
            if key not in metrics:
                return None
            out.append(metrics[key])
    return out


def add_forget_quality(metrics: dict[str, float], details: dict[str, Any], logs: dict[str, Any],
                       reference: dict[str, Any], source: str) -> None:
    from obliviate.metrics.tofu import forget_quality, log_ratios

    if "forget" not in logs:
        return
    if "forget" not in reference:
        raise DataError(source, "has no forget split; forget quality compares forget-split truth ratios")
    fq = forget_quality(log_ratios(logs["forget"]), log_ratios(reference["forget"], where=source))
    metrics["forget_quality"] = fq.value
    ours, theirs = logs["forget"].get("ids"), reference["forget"].get("ids")
    details["forget_quality"] = {"retain_results": source, **fq.details,
                                 "same_items": None if theirs is None else list(ours or []) == list(theirs)}


def resolve_retain_results(path: str | Path) -> Path:
    """A folder of ``obliviate eval`` (tofu_log.json inside), its eval.json, or a log file."""
    path = Path(path)
    if path.is_dir():
        path = path / "tofu_log.json"
    elif path.name == "eval.json":
        path = path.parent / "tofu_log.json"
    if not path.is_file():
        raise DataError(path, "retain results not found (expected the tofu_log.json that `obliviate eval` writes "
                        "for the retain model, or TOFU's eval_log_aggregated.json)")
    return path


def _limit(records: list, limit: int | None) -> list:
    return records[:limit] if limit is not None else records


# --------------------------------------------------------------------------- TOFU

def load_tofu_splits(opts: TofuOptions) -> tuple[dict[str, list[QARecord]], dict[str, str]]:
    """The four splits as QA records, and where each came from."""
    from obliviate.data.io import load_records

    names = {"forget": f"{opts.forget_split}_perturbed", **TOFU_FILES}
    splits: dict[str, list[QARecord]] = {}
    sources: dict[str, str] = {}
    for split in TOFU_SPLITS:
        explicit = getattr(opts, split)
        path = Path(explicit) if explicit else (Path(opts.data) / f"{names[split]}.json" if opts.data else None)
        if path is not None:
            if explicit is None and not path.is_file():
                continue  # a folder without this split: evaluate the others
            splits[split] = _qa(load_records(path), path)
            sources[split] = str(path)
        else:
            splits[split] = _qa(_from_hub(names[split]), f"{HUB_ID}:{names[split]}")
            sources[split] = f"{HUB_ID} ({names[split]})"
    if not splits:
        raise ObliviateError(f"{opts.data}: no TOFU split found (expected {', '.join(f'{n}.json' for n in names.values())})")
    return splits, sources


def _qa(records: list, where: object) -> list[QARecord]:
    for r in records:
        if not isinstance(r, QARecord):
            raise DataError(where, "TOFU splits hold question/answer records", record=r.id)
        if not r.perturbed_answers:
            raise DataError(where, "TOFU evaluation needs perturbed answers (use the *_perturbed files)",
                            record=r.id, field="perturbed_answer")
    return records


def _from_hub(config: str) -> list[QARecord]:
    """One TOFU config from the Hugging Face hub (needs network; HF_HUB_OFFLINE=1 blocks it)."""
    from obliviate.data.io import parse_record

    try:
        import datasets

        ds = datasets.load_dataset(HUB_ID, config, split="train")
    except Exception as e:  # offline, no such config, hub error: one clear line
        raise ObliviateError(f"{HUB_ID} ({config}) is not reachable ({type(e).__name__}); pass data=DIR with TOFU's "
                             "JSON files (forget10_perturbed.json, retain_perturbed.json, "
                             "real_authors_perturbed.json, world_facts_perturbed.json)") from None
    return [parse_record(dict(row), path=f"{HUB_ID}:{config}", where=str(i), index=i) for i, row in enumerate(ds)]


def run_tofu(model, tokenizer, opts: TofuOptions) -> EvalResult:
    from obliviate.data.encode import PromptTemplate
    from obliviate.metrics.tofu import load_tofu_logs, model_utility

    splits, sources = load_tofu_splits(opts)
    splits = {k: _limit(v, opts.limit) for k, v in splits.items()}
    template = PromptTemplate(mode=opts.template)  # type: ignore[arg-type]
    metrics, logs, details, rows = evaluate_qa_splits(model, tokenizer, splits, template=template,
                                                      max_new_tokens=opts.max_new_tokens,
                                                      batch_size=opts.batch_size, icu_metrics=opts.icu_metrics)
    nine = utility_numbers(metrics, ("retain", "real_authors", "world_facts"))
    if nine is not None:
        metrics["model_utility"] = model_utility(nine).value
    else:
        details["model_utility"] = ("not computed: TOFU's model utility is the harmonic mean of 9 numbers and needs "
                                    "the retain, real_authors and world_facts splits")
    if opts.retain_results:
        path = resolve_retain_results(opts.retain_results)
        add_forget_quality(metrics, details, logs, load_tofu_logs(path), str(path))
    else:
        details["forget_quality"] = "not computed: pass retain_results= (the retain model's saved evaluation)"
    details["sources"] = sources
    return EvalResult("tofu", metrics, details, rows, files={"tofu_log.json": logs}, settings=asdict(opts))


# --------------------------------------------------------------------------- the synthetic world

def world_profile_of(model_spec: str | None, model) -> str:
    """The world profile a model belongs to: its world.json (built-ins), else its name."""
    from obliviate.world import PROFILES

    folder = getattr(model, "name_or_path", None)
    for candidate in (folder, model_spec):
        if candidate and (Path(candidate) / "world.json").is_file():
            return json.loads((Path(candidate) / "world.json").read_text())["profile"]
    text = f"{model_spec} {folder}"
    for name in PROFILES:
        if name != "full" and f"world-{name}-" in text:
            return name
    if "world-" in text:
        return "full"
    raise ObliviateError("cannot tell which synthetic world this model belongs to; pass profile=micro or profile=full")


def reference_model_name(profile: str) -> str:
    return "world-retain" if profile == "full" else f"world-{profile}-retain"


def world_splits(profile: str, limit: int | None) -> dict[str, list]:
    from obliviate.data.sources import load_data

    names = {"forget": "forget", "retain": "retain_eval", "world_facts": "world_facts", "holdout": "holdout"}
    return {split: _limit(load_data(f"world:{profile}:{name}"), limit) for split, name in names.items()}


def _world_core(model, tokenizer, profile: str, opts: WorldOptions) -> tuple[dict, dict, dict, list, list]:
    """Everything but the comparison with the reference: (metrics, logs, details, rows, forget MIA scores)."""
    from obliviate.data.encode import DEFAULT_TEMPLATE, encode_records
    from obliviate.metrics.mia import mia_auc, mia_scores

    splits = world_splits(profile, opts.limit)
    holdout = splits.pop("holdout")
    metrics, logs, details, rows = evaluate_qa_splits(model, tokenizer, splits, template=DEFAULT_TEMPLATE,
                                                      max_new_tokens=opts.max_new_tokens, batch_size=opts.batch_size,
                                                      icu_metrics=opts.icu_metrics, ppl=True)
    six = utility_numbers(metrics, ("retain", "world_facts"))
    if six is not None:
        # scipy's hmean, as TOFU's model utility; 6 numbers because the world has no real-authors split.
        metrics["world_utility"] = _hmean(six)
    forget_scores: list[float] = []
    if opts.mia:
        tag = f"mia_mink_{round(opts.mink_k * 100)}"
        f_enc = encode_records(splits["forget"], tokenizer)
        h_enc = encode_records(holdout, tokenizer)
        fs = mia_scores(model, f_enc, attacks=("mink",), k=opts.mink_k, region="completion",
                        batch_size=opts.batch_size)[tag]
        hs = mia_scores(model, h_enc, attacks=("mink",), k=opts.mink_k, region="completion",
                        batch_size=opts.batch_size)[tag]
        auc = mia_auc(fs.per_sample, hs.per_sample, high_means_member=False)
        metrics["forget/mia_auc"] = auc.value
        details["forget/mia_auc"] = {**auc.details, "attack": f"Min-{round(opts.mink_k * 100)}% on answer tokens",
                                     "members": "forget QA", "non_members": "holdout QA (never trained)"}
        forget_scores = fs.per_sample
    return metrics, logs, details, rows, forget_scores


def _hmean(values: list[float]) -> float:
    from scipy.stats import hmean

    return float(hmean(values))


def _reference_cache(profile: str, reference: str, opts: WorldOptions) -> Path:
    from obliviate.models import cache_dir, resolve_model

    settings = {k: v for k, v in asdict(opts).items() if k in ("limit", "max_new_tokens", "icu_metrics", "mia",
                                                                "mink_k")}
    key = json.dumps({"v": WORLD_EVAL_VERSION, "profile": profile, **settings}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return cache_dir() / "evals" / f"{Path(resolve_model(reference)).name}-world-{digest}"


def world_reference(profile: str, opts: WorldOptions) -> Path:
    """The exact-retrain model's evaluation folder: computed once and cached."""
    from obliviate.models import load_model
    from obliviate.protocols.base import EVAL_FILE, write_eval
    from obliviate.utils import default_device

    reference = opts.reference_model or reference_model_name(profile)
    folder = _reference_cache(profile, reference, opts)
    if (folder / EVAL_FILE).is_file():
        return folder
    model, tok = load_model(reference, device=default_device())
    metrics, logs, details, rows, _ = _world_core(model, tok, profile, opts)
    from obliviate.metrics.tofu import forget_quality, log_ratios

    ratios = log_ratios(logs["forget"])
    metrics["forget_quality"] = forget_quality(ratios, ratios).value  # itself: 1.0 by definition
    if "forget/mia_auc" in metrics:
        metrics["forget/privleak"] = 0.0
    result = EvalResult("world", metrics, details, rows, files={"tofu_log.json": logs}, settings=asdict(opts))
    write_eval(folder, result, model=reference, label="retrain (exact)", reference=True, overwrite=True)
    return folder


def run_world(model, tokenizer, opts: WorldOptions, *, model_spec: str | None = None) -> EvalResult:
    from obliviate.metrics.mia import privleak
    from obliviate.metrics.tofu import load_tofu_logs
    from obliviate.protocols.base import read_eval

    profile = world_profile_of(model_spec, model) if opts.profile == "auto" else opts.profile
    metrics, logs, details, rows, _ = _world_core(model, tokenizer, profile, opts)
    if opts.retain_results:
        path = resolve_retain_results(opts.retain_results)
        ref_doc = read_eval(path.parent) if (path.parent / "eval.json").is_file() else None
    else:
        folder = world_reference(profile, opts)
        path, ref_doc = folder / "tofu_log.json", read_eval(folder)
    add_forget_quality(metrics, details, logs, load_tofu_logs(path), str(path))
    ref_auc = (ref_doc or {}).get("metrics", {}).get("forget/mia_auc")
    if "forget/mia_auc" in metrics and ref_auc is not None:
        pl = privleak(metrics["forget/mia_auc"], ref_auc)
        metrics["forget/privleak"] = pl.value
        details["forget/privleak"] = {**pl.details, "reference": str(path.parent)}
    details.update(profile=profile, reference=str(path.parent),
                   utility="world_utility = hmean of {prob, ROUGE, truth ratio} x {retain, world facts} (6 numbers; "
                           "TOFU's model utility also uses a real-authors split, which the world does not have)")
    return EvalResult("world", metrics, details, rows, files={"tofu_log.json": logs},
                      settings={**asdict(opts), "profile": profile})
