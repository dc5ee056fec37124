"""The analogous-set builder: exact KNN, duplicate exclusion, one partner per pool item, and
the duplicates of the real pile-extraction benchmark."""

from __future__ import annotations

import numpy as np
import pytest

from obliviate.data.records import QARecord, TextRecord
from obliviate.errors import ObliviateError
from obliviate.neighbors import build_analogous, record_text, word_ngrams


def _unit(rows):
    v = np.asarray(rows, dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_selection_logic_with_given_vectors():
    forget = [TextRecord("f0", "Alpha ", "one two three four five six"),
              TextRecord("f1", "Beta ", "seven eight nine ten eleven twelve")]
    pool = [
        TextRecord("f1", "Beta ", "seven eight nine ten eleven twelve"),  # the forget sample itself (same id)
        TextRecord("p-dup", "Alpha ", "one two three four five six"),  # exact duplicate of f0
        TextRecord("p-suffix", "Other context ", "one two three four five six"),  # same target as f0
        TextRecord("p-overlap", "x ", "one two three four five six and more words"),  # holds all of f0's 5-grams
        TextRecord("p-good", "Gamma ", "a different text about something else"),
        TextRecord("p-good2", "Delta ", "yet another text with other words"),
    ]
    # f0 is closest to its duplicates, then p-good; f1 to itself, then p-good, then p-good2
    fv = _unit([[1, 0, 0], [0, 1, 0]])
    pv = _unit([[0, 1, 0.05], [1, 0, 0.01], [1, 0, 0.02], [1, 0, 0.03], [1, 1, 0], [0.3, 0.5, 0.8]])
    res = build_analogous(forget, pool, forget_vectors=fv, pool_vectors=pv)
    # unique: f0 (the more similar top-1) is served first and takes p-good; f1 gets the next one
    assert [r.id for r in res.records] == ["p-good", "p-good2"]
    rep = res.report
    assert (rep.skipped_same_id, rep.skipped_exact, rep.skipped_overlap, rep.skipped_taken) == (1, 2, 1, 1)
    assert rep.top1_rejected == 2 and rep.top1_rejected_own == 2 and rep.paired == 2
    # without de-duplication both take the same, nearest usable item
    shared = build_analogous(forget, pool, forget_vectors=fv, pool_vectors=pv, unique=False)
    assert [r.id for r in shared.records] == ["p-good", "p-good"]


def test_no_usable_neighbour_is_an_error():
    forget = [TextRecord("f0", "A ", "same text here for all")]
    pool = [TextRecord("p0", "A ", "same text here for all")]
    with pytest.raises(ObliviateError, match="no usable analogous sample"):
        build_analogous(forget, pool, forget_vectors=_unit([[1, 0]]), pool_vectors=_unit([[1, 0]]))


def test_real_embeddings_pick_the_semantic_neighbour():
    forget = [QARecord("q0", "Where was Ada Fenwick born?", "Ada Fenwick was born in Lisbon."),
              QARecord("q1", "What does Tom Hale do for a living?", "Tom Hale works as a carpenter.")]
    pool = [QARecord("r0", "What is Mia Stone's job?", "Mia Stone works as a baker."),
            QARecord("r1", "Where was Leo Brandt born?", "Leo Brandt was born in Oslo."),
            QARecord("r2", "Where was Ada Fenwick born?", "Ada Fenwick was born in Lisbon."),  # duplicate
            QARecord("r3", "What colour is the sky?", "The sky is blue.")]
    res = build_analogous(forget, pool)
    assert [r.id for r in res.records] == ["r1", "r0"]
    assert res.report.top1_rejected == 1 and res.report.skipped_exact == 1
    assert all(0 < s <= 1 for s in res.similarity)
    assert record_text(forget[0]) == "Where was Ada Fenwick born? Ada Fenwick was born in Lisbon."
    assert ("ada", "fenwick", "was", "born", "in") in word_ngrams(forget[0].answer, 5)


@pytest.mark.slow
def test_pile_extraction_duplicates_are_excluded(shared_data):
    """Forget set 0 against a pool that holds every benchmark row sharing a forget suffix (the
    reference's leaks) plus 400 random rows; embedding all 14,872 rows would take minutes on CPU."""
    from obliviate.data.pile import PileExtraction

    px = PileExtraction.open(shared_data / "pile-extraction")
    forget_ids = px.forget_ids(0)
    rows, skip = px.rows, set(forget_ids)
    suffixes = {tuple(rows[i, 150:]) for i in forget_ids}
    prefix_suffix = {tuple(rows[i, 100:]) for i in forget_ids}
    sharing = [i for i in range(len(rows)) if i not in skip and tuple(rows[i, 150:]) in suffixes]
    identical = [i for i in sharing if tuple(rows[i, 100:]) in prefix_suffix]
    rng = np.random.default_rng(0)
    others = [int(i) for i in rng.permutation(len(rows)) if int(i) not in skip and int(i) not in set(sharing)][:400]
    forget, pool = px.records(forget_ids), px.records(sorted(sharing + others))
    res = build_analogous(forget, pool)
    rep = res.report
    print(f"\npile-extraction set 0: {len(sharing)} pool rows share a forget suffix ({len(identical)} share prefix+suffix); "
          f"{rep.summary()}; mean similarity {rep.mean_similarity:.3f}")
    for f, a in zip(forget, res.records):
        assert a.id not in skip
        assert a.target != f.target and a.text != f.text
    assert rep.top1_rejected_own >= 20  # the reference pairs 20-27 of 128 with an identical row
    assert len({r.id for r in res.records}) == len(forget)  # unique partners
