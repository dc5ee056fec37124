"""How ICU's two refinement rules behave on the synthetic world with our MiniLM BERTScore.

    python benchmarks/refinement_rules.py [--profile micro] [--lr 1e-3] [--epochs 6]

Prints (1) the BERTScore-F1 / BLEU distribution of the original model's continuations on the
forget set (memorized) and on held-out people (never seen: what "not memorized" looks like),
and (2) ICU runs under the ``paper`` rule (AND, permanent) and the ``reference`` rule (OR,
recomputed each epoch): samples forgotten per epoch, samples that came back, final EL/MA and
retain perplexity. docs/methods.md section 6 quotes its output.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics

os.environ.setdefault("OBLIVIATE_QUIET", "1")


def describe(name: str, values: list[float]) -> str:
    qs = statistics.quantiles(values, n=10) if len(values) > 1 else values * 9
    return (f"{name}: mean {statistics.fmean(values):.3f}, p10 {qs[0]:.3f}, median {statistics.median(values):.3f}, "
            f"p90 {qs[-1]:.3f}, share < threshold {{}}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="micro")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--forget", default="forget", help="forget split: forget (QA) or forget_bio")
    args = ap.parse_args()

    import obliviate
    from obliviate.data.encode import encode_records
    from obliviate.data.sources import load_data
    from obliviate.engine.refinement import Refinement, RefinementConfig
    from obliviate.models import load_model
    from obliviate.neighbors import build_analogous

    model, tok = load_model(f"world-{args.profile}-target")
    forget = load_data(f"world:{args.profile}:{args.forget}")
    holdout = load_data(f"world:{args.profile}:{args.forget.replace('forget', 'holdout')}")
    retain = load_data(f"world:{args.profile}:{args.forget.replace('forget', 'retain')}")
    cfg = RefinementConfig(enabled=True)
    refiner = Refinement(cfg, tok)
    print(f"BERTScore backbone: {refiner.scorer.backbone}; thresholds F1 < {cfg.bertscore_threshold}, "
          f"BLEU < {cfg.bleu_threshold}")
    for name, records in (("forget (memorized)", forget), ("holdout (never seen)", holdout)):
        s = refiner.score(model, encode_records(records, tok))
        n = len(s.f1)
        low_f1 = sum(f < cfg.bertscore_threshold for f in s.f1) / n
        low_bleu = sum(b < cfg.bleu_threshold for b in s.bleu) / n
        both = sum(f < cfg.bertscore_threshold and b < cfg.bleu_threshold for f, b in zip(s.f1, s.bleu)) / n
        either = sum(f < cfg.bertscore_threshold or b < cfg.bleu_threshold for f, b in zip(s.f1, s.bleu)) / n
        print(f"  {name}, {n} samples:")
        print("    " + describe("BERTScore F1", s.f1).format(f"{low_f1:.0%}"))
        print("    " + describe("BLEU        ", s.bleu).format(f"{low_bleu:.0%}"))
        print(f"    forgotten under the paper rule (AND): {both:.0%}; under the reference rule (OR): {either:.0%}")

    analogous = build_analogous(forget, retain).records
    for rule in ("paper", "reference"):
        res = obliviate.unlearn(copy.deepcopy(model), forget, method="icu", retain=retain, analogous=analogous,
                                tokenizer=tok, overrides=[f"refinement.rule={rule}", f"train.lr={args.lr}",
                                                          f"stop.max_epochs={args.epochs}", "eval.max_retain_samples=120"])
        print(f"\nICU, rule={rule}: stopped after {len(res.history) - 1} epochs ({res.stop_reason})")
        for row in res.history:
            print(f"  epoch {row['epoch']}: active {row.get('active', len(forget)) if row['epoch'] else '-':>3}, "
                  f"newly forgotten {row.get('newly_forgotten', 0):>3}, came back {row.get('came_back', 0):>3}, "
                  f"MA {row['ma']:.3f}, EL10 {row['el_10']:.3f}, F1 {row['refine_bertscore_f1']:.3f}, "
                  f"BLEU {row['refine_bleu']:.3f}, retain ppl {row['retain_ppl']:.3f}")


if __name__ == "__main__":
    main()
