"""ICU's analogous set: for every forget sample, its nearest neighbour in a pool of other text.

ICU (section IV-C) embeds texts with all-MiniLM-L6-v2 and takes, for each forget sample, the
pool sample with the most similar embedding (K=1) as its "analogous" partner; the model then
*learns* the partner while it *unlearns* the forget sample. Embeddings come from
sentence-transformers, the exact search from faiss (inner product of unit vectors = cosine).

What we add to the reference (``datasets/data_prep.py``): the benchmark holds near-duplicates
(licence headers, boilerplate), and the reference pairs 20-27 of 128 forget samples with a
neighbour that has the *same* prefix and suffix -- so ICU re-teaches exactly what it ascends on.
Here a candidate is skipped when it

* has the same id as a forget sample (the pool must exclude the forget set),
* is textually identical to a forget sample (whole text, or the same target), or
* contains at least ``max_overlap`` of the word n-grams of some forget sample's target,

checked against *every* forget sample, not only the one being paired. With ``unique=True``
no pool item serves two forget samples. The report says how many candidates were skipped and
why, and how many forget samples' plain top-1 neighbour (the reference's choice) was rejected.
"""

from __future__ import annotations

import functools
import logging
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from obliviate.data.records import QARecord, Record
from obliviate.errors import ObliviateError

log = logging.getLogger(__name__)


def record_text(record: Record) -> str:
    """The text that is embedded: prefix + target (ICU: the decoded prefix and suffix), or Q + A."""
    if isinstance(record, QARecord):
        return f"{record.question} {record.answer}"
    return record.prefix + record.target


def _target(record: Record) -> str:
    return record.answer if isinstance(record, QARecord) else record.target


_WORD = re.compile(r"\w+|[^\w\s]")


def word_ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    """Lowercased word/punctuation n-grams (a text shorter than n gives its whole token tuple)."""
    words = _WORD.findall(text.lower())
    if len(words) < n:
        return {tuple(words)} if words else set()
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def _normalise(text: str) -> str:
    return " ".join(text.split())


@dataclass
class NeighborReport:
    n_forget: int
    n_pool: int
    paired: int = 0
    skipped_same_id: int = 0  # candidates that are forget samples themselves (by id)
    skipped_exact: int = 0  # candidates whose text or target equals a forget sample's
    skipped_overlap: int = 0  # candidates containing >= max_overlap of a forget target's n-grams
    skipped_taken: int = 0  # candidates already paired with another forget sample (unique=True)
    top1_rejected: int = 0  # forget samples whose plain nearest neighbour (the reference's pick) was rejected
    top1_rejected_own: int = 0  # ... because it duplicates that very forget sample
    shared_top1: int = 0  # pool items that are the plain top-1 of several forget samples (reference reuses them)
    mean_similarity: float = float("nan")
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return (f"{self.paired}/{self.n_forget} forget samples paired from a pool of {self.n_pool}; skipped "
                f"{self.skipped_exact} exact duplicates, {self.skipped_overlap} high-overlap, {self.skipped_same_id} "
                f"forget-set members, {self.skipped_taken} already taken; the plain nearest neighbour was rejected "
                f"for {self.top1_rejected} ({self.top1_rejected_own} duplicating their own forget sample)")


@dataclass
class AnalogousSet:
    pool_index: list[int]  # pool position of each forget sample's partner
    records: list[Record]  # the partners, aligned with the forget set
    similarity: list[float]  # cosine similarity of each pair
    report: NeighborReport


@functools.lru_cache(maxsize=2)
def _encoder(model_path: str | None):
    from sentence_transformers import SentenceTransformer

    if model_path is None:
        from obliviate.models import minilm_path

        model_path = minilm_path("the analogous-set builder")
    return SentenceTransformer(model_path, device="cpu")


def embed(texts: Sequence[str], model_path: str | None = None, batch_size: int = 64) -> np.ndarray:
    """Unit-norm sentence embeddings, float32 [N, d]."""
    from obliviate.utils import default_device

    model = _encoder(model_path)
    vecs = model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                        show_progress_bar=False, device=str(default_device()))
    return np.ascontiguousarray(vecs, dtype=np.float32)


class _Duplicates:
    """Decides whether a pool text duplicates any forget sample, with an n-gram inverted index."""

    def __init__(self, forget: Sequence[Record], n: int, max_overlap: float):
        self.n, self.max_overlap = n, max_overlap
        self.ids = {r.id for r in forget}
        self.texts = {_normalise(record_text(r)): k for k, r in enumerate(forget)}
        self.targets = {_normalise(_target(r)): k for k, r in enumerate(forget)}
        self.sizes, self.index = [], defaultdict(list)
        for k, rec in enumerate(forget):
            grams = word_ngrams(_target(rec), n)
            self.sizes.append(len(grams))
            for g in grams:
                self.index[g].append(k)

    def check(self, rec: Record) -> tuple[str | None, set[int]]:
        """(reason, forget samples it duplicates); reason None = a usable neighbour."""
        if rec.id in self.ids:
            return "same_id", set()
        hits = {self.texts[t] for t in [_normalise(record_text(rec))] if t in self.texts}
        hits |= {self.targets[t] for t in [_normalise(_target(rec))] if t in self.targets}
        if hits:
            return "exact", hits
        counts: dict[int, int] = defaultdict(int)
        for g in word_ngrams(record_text(rec), self.n):
            for k in self.index.get(g, ()):
                counts[k] += 1
        over = {k for k, c in counts.items() if self.sizes[k] and c / self.sizes[k] >= self.max_overlap}
        return ("overlap", over) if over else (None, set())


def build_analogous(forget: Sequence[Record], pool: Sequence[Record], *, model_path: str | None = None,
                    ngram: int = 5, max_overlap: float = 0.5, unique: bool = True, k_search: int = 16,
                    batch_size: int = 64, forget_vectors: np.ndarray | None = None,
                    pool_vectors: np.ndarray | None = None) -> AnalogousSet:
    """Pair every forget sample with its nearest usable pool sample (see the module doc).

    ``forget_vectors``/``pool_vectors`` skip the embedding step (unit-norm float32 arrays).
    """
    import faiss

    if not forget:
        raise ObliviateError("the forget set is empty")
    if not pool:
        raise ObliviateError("the pool for analogous samples is empty")
    fv = forget_vectors if forget_vectors is not None else embed([record_text(r) for r in forget], model_path, batch_size)
    pv = pool_vectors if pool_vectors is not None else embed([record_text(r) for r in pool], model_path, batch_size)
    index = faiss.IndexFlatIP(pv.shape[1])
    index.add(pv)
    dup = _Duplicates(forget, ngram, max_overlap)
    verdicts: dict[int, tuple[str | None, set[int]]] = {}  # pool position -> duplicate check (memoised)
    report = NeighborReport(n_forget=len(forget), n_pool=len(pool),
                            settings={"ngram": ngram, "max_overlap": max_overlap, "unique": unique,
                                      "embedder": model_path or "all-MiniLM-L6-v2", "search": "faiss IndexFlatIP"})
    skipped: dict[str, set[int]] = defaultdict(set)  # reason -> pool positions skipped for it

    k = min(k_search, len(pool))
    sims, ids = index.search(fv, k)
    top1 = ids[:, 0].tolist()
    report.shared_top1 = sum(1 for c in np.unique(ids[:, 0], return_counts=True)[1] if c > 1)
    for f, cand in enumerate(top1):
        verdicts[cand] = dup.check(pool[cand])
        reason, hits = verdicts[cand]
        if reason is not None:
            report.top1_rejected += 1
            report.top1_rejected_own += int(f in hits or reason == "same_id")

    # Greedy assignment, most similar pairs first, so ``unique`` costs the least similarity.
    order = sorted(range(len(forget)), key=lambda f: -float(sims[f, 0]))
    taken: set[int] = set()
    chosen: list[int | None] = [None] * len(forget)
    chosen_sim: list[float] = [float("nan")] * len(forget)
    for f in order:
        row_sims, row_ids, depth = sims[f], ids[f], k
        while chosen[f] is None:
            for s, cand in zip(row_sims.tolist(), row_ids.tolist()):
                if cand < 0:
                    continue
                if cand not in verdicts:
                    verdicts[cand] = dup.check(pool[cand])
                reason, _ = verdicts[cand]
                if reason is not None:
                    skipped[reason].add(cand)
                elif unique and cand in taken:
                    skipped["taken"].add(cand)
                else:
                    chosen[f], chosen_sim[f] = cand, s
                    taken.add(cand)
                    break
            if chosen[f] is None:
                if depth >= len(pool):
                    raise ObliviateError(f"forget sample {forget[f].id!r}: no usable analogous sample in the pool "
                                         f"({len(pool)} items; all duplicates{' or taken' if unique else ''})")
                depth = min(depth * 4, len(pool))  # search deeper
                deeper_sims, deeper_ids = index.search(fv[f:f + 1], depth)
                row_sims, row_ids = deeper_sims[0], deeper_ids[0]
    report.skipped_same_id = len(skipped["same_id"])
    report.skipped_exact = len(skipped["exact"])
    report.skipped_overlap = len(skipped["overlap"])
    report.skipped_taken = len(skipped["taken"] - skipped["same_id"] - skipped["exact"] - skipped["overlap"])
    pairs = [int(c) for c in chosen]  # type: ignore[arg-type]
    report.paired = len(pairs)
    report.mean_similarity = float(np.mean(chosen_sim))
    log.info("analogous set: %s", report.summary())
    return AnalogousSet(pairs, [pool[c] for c in pairs], chosen_sim, report)
