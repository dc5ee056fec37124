"""``evaluate(model, tokenizer, groups, metrics)``: every metric of every group, shared work done once.

A group is a named list of records (``forget``, ``retain``, ``holdout``...). Per group, the
things several metrics need are computed once, lazily, in ``GroupData``: the encoded examples,
the teacher-forced log-probs of the completions (loss, answer probability, perplexity), the
greedy generations (exact, BLEU, BERTScore, ROUGE-L, entropy) and TOFU's paraphrase/perturbed
losses (truth ratio). Each metric is then one small function of ``GroupData`` (``COMPUTE``),
registered with its direction in ``registry.py``. Results come back under ``<group>/<metric>``.

A protocol whose prompts are built its own way (MUSE's in-context questions, RWKU's chat-templated
probes) passes a group as ``Prepared``: its encoded examples, the references generations are
scored against and the clean-up of each generation (stop strings); the metrics are the same.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from obliviate.data.encode import DEFAULT_TEMPLATE, Encoded, PromptTemplate, encode_records
from obliviate.data.records import QARecord, Record, TextRecord
from obliviate.errors import ObliviateError
from obliviate.evaluation.registry import ALIASES, metric_spec
from obliviate.metrics import generation, memorization, text, tofu
from obliviate.metrics.base import MetricResult, mean
from obliviate.metrics.likelihood import perplexity_of, token_logprobs, token_weighted_nll
from obliviate.metrics.memorization import Region

TEXT_DEFAULT = ("ma", "el", "exact", "bleu_icu", "bertscore", "rougeL_f1", "entropy")
QA_DEFAULT = ("tofu_prob", "rougeL_recall", "truth_ratio", "ma", "el")
GREEDY = {"exact", "exact_beam", "bleu_icu", "bleu", "bertscore_f1", "rougeL_recall", "rougeL_f1", "entropy"}


@dataclass
class EvalOptions:
    template: PromptTemplate = DEFAULT_TEMPLATE
    region: Region = "all"  # MA/EL positions of text records (QA records: always the answer)
    el_region: Region | None = None  # EL_n positions where they differ from MA's (engine: eval.el_region)
    el_n: int = 10
    batch_size: int = 32
    el_batch_size: int = 64
    num_beams: int = 1
    max_new_tokens: int | None = None  # None: the target's length (text), 200 (QA)
    strip_generations: bool = False  # score generations with surrounding whitespace removed (TOFU protocol)
    bert_scorer: Any = None
    stemmer: bool = True  # ROUGE-L with rouge-score's stemmer (TOFU); MUSE: False
    # ROUGE-L recall as RWKU scores it: "rouge" (RWKU's package), "auto" (it if installed) or "rouge-score"
    # (no stemmer); None: rouge-score with ``stemmer``.
    rouge: str | None = None


@dataclass
class Prepared:
    """A group its protocol has already encoded (its own prompt format and generation budget)."""

    examples: list[Encoded]
    references: list[str] | None = None  # what generations are scored against (None: the decoded completions)
    clean: Callable[[str], str] | None = None  # applied to every generation before scoring (stop strings)

    def __len__(self) -> int:
        return len(self.examples)


@dataclass
class Evaluation:
    values: dict[str, float] = field(default_factory=dict)  # "<group>/<metric>" -> aggregate
    per_sample: dict[str, list] = field(default_factory=dict)  # "<group>/<metric>" -> values in record order
    results: dict[str, MetricResult] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)  # "<group>/<what>" -> metadata
    generations: dict[str, list[str]] = field(default_factory=dict)  # group -> greedy generations

    def group(self, name: str) -> dict[str, float]:
        """The aggregates of one group without its prefix."""
        return {k.split("/", 1)[1]: v for k, v in self.values.items() if k.startswith(f"{name}/")}


class GroupData:
    """What the metrics of one group share, each computed on first use and kept."""

    def __init__(self, model, tokenizer, records: Sequence[Record] | Prepared, opts: EvalOptions):
        self.model, self.tokenizer, self.opts = model, tokenizer, opts
        self.prepared = records if isinstance(records, Prepared) else None
        self.records = [] if self.prepared else list(records)  # type: ignore[arg-type]
        if self.prepared:
            self.examples = list(self.prepared.examples)
        self.kind = "text" if all(isinstance(r, TextRecord) for r in self.records) else "qa"
        self.region: Region = opts.region if self.kind == "text" else "completion"
        self.details: dict[str, Any] = {}

    @cached_property
    def examples(self) -> list[Encoded]:
        return encode_records(self.records, self.tokenizer, self.opts.template)

    @cached_property
    def logprobs(self):
        return token_logprobs(self.model, self.examples, region="completion", batch_size=self.opts.batch_size,
                              show_progress=False)

    @cached_property
    def greedy(self) -> list[generation.Generation]:
        o = self.opts
        budget = o.max_new_tokens if o.max_new_tokens is not None else (None if self.kind == "text" else 200)
        self.details["generation"] = {"num_beams": o.num_beams,
                                      "max_new_tokens": budget if budget is not None else "target length"}
        return generation.generate_completions(self.model, self.tokenizer, self.examples, max_new_tokens=budget,
                                               num_beams=o.num_beams, batch_size=o.batch_size)

    @cached_property
    def texts(self) -> list[str]:
        texts = [g.text.strip() if self.opts.strip_generations else g.text for g in self.greedy]
        clean = self.prepared.clean if self.prepared else None
        return [clean(t) for t in texts] if clean else texts

    @cached_property
    def references(self) -> list[str]:
        if self.prepared and self.prepared.references is not None:
            return list(self.prepared.references)
        if self.kind == "qa":
            return [r.answer for r in self.records]  # type: ignore[union-attr]
        return [self.tokenizer.decode(e.completion, skip_special_tokens=True) for e in self.examples]

    @cached_property
    def tofu_log(self) -> dict[str, list] | None:
        qa = [r for r in self.records if isinstance(r, QARecord)]
        if not qa or not all(r.perturbed_answers for r in qa):
            self.details["truth_ratio_skipped"] = "records have no perturbed answers"
            return None
        split = "forget" if all(r.paraphrased_answer for r in qa) else "real_authors"
        self.details["truth_ratio_paraphrase"] = "paraphrased_answer" if split == "forget" else "answer"
        return tofu.evaluate_tofu_split(self.model, self.tokenizer, qa, split, template=self.opts.template,
                                        batch_size=self.opts.batch_size, generate=False)


# --------------------------------------------------------------------------- one function per metric

def _el(d: GroupData, name: str) -> MetricResult | None:
    return memorization.extraction_likelihood_aligned(d.model, d.examples, n=int(name[3:]),
                                                      region=d.opts.el_region or d.region,
                                                      batch_size=d.opts.el_batch_size)


def _losses(d: GroupData) -> list[float]:
    return [t.mean_nll for t in d.logprobs]


def _nll(d: GroupData) -> MetricResult:
    return MetricResult("nll", token_weighted_nll(d.logprobs), _losses(d), {"aggregate": "token-weighted mean"})


def _ppl(d: GroupData) -> MetricResult:
    nll = _nll(d)
    return MetricResult("ppl", perplexity_of(nll.value), [perplexity_of(x) for x in nll.per_sample],
                        {"aggregate": "exp(token-weighted mean NLL), capped at exp(50)"})


def _truth_ratio(d: GroupData, orientation: str) -> MetricResult | None:
    log = d.tofu_log
    if log is None:
        return None
    return tofu.truth_ratio(log["avg_paraphrased_loss"], log["average_perturb_loss"], split=orientation)


def _bertscore(d: GroupData) -> MetricResult:
    scorer = d.opts.bert_scorer or text.get_bert_scorer()
    d.details["bertscore_backbone"] = scorer.backbone
    return scorer.score(d.texts, d.references)


def _rouge(d: GroupData, kind: text.RougeKind) -> MetricResult:
    if d.opts.rouge is None:
        return text.rouge_l(d.texts, d.references, kind=kind, stemmer=d.opts.stemmer)
    if kind != "recall":
        raise ObliviateError(f"rouge={d.opts.rouge!r} gives ROUGE-L recall only, not rougeL_{kind}")
    res = text.rouge_l_recall_package(d.texts, d.references, implementation=d.opts.rouge)
    d.details["rouge"] = res.details["implementation"]
    return res


def _exact(d: GroupData) -> MetricResult:
    nb = d.opts.num_beams
    return generation.exact_extraction(d.greedy, d.examples, name="exact" if nb == 1 else f"exact_beam{nb}")


COMPUTE: dict[str, Callable[[GroupData], MetricResult | None]] = {
    "ma": lambda d: memorization.memorization_accuracy(d.model, d.examples, region=d.region,
                                                       batch_size=d.opts.batch_size),
    "loss": lambda d: MetricResult("loss", mean(_losses(d)), _losses(d), {"region": "completion"}),
    "nll": _nll,
    "ppl": _ppl,
    "tofu_prob": lambda d: tofu.answer_probability(_losses(d)),
    "truth_ratio_forget": lambda d: _truth_ratio(d, "forget"),
    "truth_ratio_retain": lambda d: _truth_ratio(d, "retain"),
    "exact": _exact,
    "bleu_icu": lambda d: text.bleu_icu(d.texts, d.references),
    "bleu": lambda d: text.sacrebleu_sentence(d.texts, d.references),
    "bertscore_f1": _bertscore,
    "rougeL_recall": lambda d: _rouge(d, "recall"),
    "rougeL_f1": lambda d: _rouge(d, "f1"),
    "entropy": lambda d: text.token_entropy([g.ids for g in d.greedy]),
}


def resolve(names: Sequence[str], el_n: int = 10) -> list[str]:
    """User names -> metric names (``el`` -> ``el_<n>``, ``bertscore`` -> ``bertscore_f1``, ``truth_ratio``
    -> both orientations); unknown or not computable here -> ObliviateError."""
    out: list[str] = []
    for raw in names:
        name = f"el_{el_n}" if raw == "el" else ALIASES.get(raw, raw)
        if name == "exact_beam":
            name = "exact"
        expanded = ["truth_ratio_forget", "truth_ratio_retain"] if name == "truth_ratio" else [name]
        for n in expanded:
            ok = n in COMPUTE or (n.startswith("el_") and n[3:].isdigit())
            try:
                metric_spec(n)
            except KeyError:
                ok = False
            if not ok:
                raise ObliviateError(f"unknown metric {raw!r}; choose from {', '.join(sorted(KNOWN))}")
            if n not in out:
                out.append(n)
    return out


KNOWN = {*COMPUTE, "el", "el_<n>", "bertscore", "truth_ratio", "exact_beam"} - {"truth_ratio_forget",
                                                                                  "truth_ratio_retain"}


def evaluate(model, tokenizer, groups: Mapping[str, Sequence[Record] | Prepared], metrics: Sequence[str] | None = None, *,
             options: EvalOptions | None = None, skip_generation_without_prompt: bool = False) -> Evaluation:
    """Every metric of ``metrics`` (default: per record type, ``TEXT_DEFAULT`` / ``QA_DEFAULT``) on
    every group. Keys: ``<group>/<metric>``; a metric a group cannot have (EL_n on answers all
    shorter than n, truth ratio without perturbed answers) is left out and said in ``details``."""
    opts = options or EvalOptions()
    ev = Evaluation()
    for gname, records in groups.items():
        if not records:
            continue
        d = GroupData(model, tokenizer, records, opts)
        names = resolve(metrics if metrics is not None else (TEXT_DEFAULT if d.kind == "text" else QA_DEFAULT),
                        opts.el_n)
        if skip_generation_without_prompt and any(e.prompt_len < 1 for e in d.examples):
            # Pure text (no prefix, no BOS): nothing to prompt a generation with.
            names = [n for n in names if n not in GREEDY]
            d.details["generation_skipped"] = "records without a prefix: nothing to generate from"
        for name in names:
            res = _el(d, name) if name.startswith("el_") else COMPUTE[name](d)
            if res is None:
                continue
            key = f"{gname}/{res.name}"
            ev.values[key], ev.per_sample[key], ev.results[key] = res.value, list(res.per_sample), res
            if name.startswith("el_") and res.details["skipped"]:
                d.details[f"{res.name}_skipped"] = res.details["skipped"]
        if "greedy" in d.__dict__:
            ev.generations[gname] = d.texts
        if "tofu_log" in d.__dict__ and d.tofu_log is not None:
            d.details["tofu_log"] = d.tofu_log
        ev.details.update({f"{gname}/{k}": v for k, v in d.details.items()})
        ev.details[f"{gname}/region"] = d.region
    return ev
