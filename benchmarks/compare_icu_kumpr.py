"""ICU vs KUMPR vs the exact-retrain model on the full synthetic world.

    python benchmarks/compare_icu_kumpr.py [--kumpr-lr 1e-3] [--icu-lr 1e-4] [--out results.json]

Both methods unlearn the 400 forget QA of ``world-target``. ICU runs with its own rules
(refinement; stop when the forget set's mean EL10 and MA are no higher than the original
model's on people it never saw, ``world:full:holdout`` -- Jang et al.'s rule -- or when
refinement has dropped every sample). KUMPR then runs until it has forgotten at least as much
as ICU did (mean EL10 and MA no higher than ICU's final values): a comparable level of
forgetting, reached by each method's own updates.
ICU's analogous samples are chosen from the retain people *outside* the evaluation people, so
its retain numbers are not measured on data it trained on. Then every model is measured:

* forget: EL10, MA, TOFU probability, ROUGE-L recall, truth ratio, forget quality (KS test
  against the retrain model), fact recall (the greedy answer contains the fact);
* retain (the 20 evaluation people, 400 QA) and world facts: perplexity, probability, ROUGE-L,
  truth ratio, fact recall -- how much general quality is left.

It prints one table and, per retain/world metric, the distance of ICU and of KUMPR to the
original model (smaller = the method kept more).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import time

os.environ.setdefault("OBLIVIATE_QUIET", "1")


def measure(model, tok, splits: dict, retrain_forget_log=None) -> dict[str, float]:
    from obliviate.data.encode import encode_records
    from obliviate.metrics import extraction_likelihood, memorization_accuracy
    from obliviate.metrics.likelihood import token_logprobs
    from obliviate.metrics.tofu import evaluate_tofu_split, forget_quality, log_ratios, split_scores
    from obliviate.world.probe import contains_fact

    out: dict[str, float] = {}
    logs = {}
    for name, records in splits.items():
        kind = "world_facts" if name == "world_facts" else ("forget" if name == "forget" else "retain")
        log = evaluate_tofu_split(model, tok, records, kind, batch_size=32, max_new_tokens=48)
        logs[name] = log
        for key, res in split_scores(log, kind).items():
            out[f"{name}/{key}"] = res.value
        hits = [contains_fact(text, str(r.meta["value"])) for text, r in zip(log["generated_text"], records)]
        out[f"{name}/fact_recall"] = sum(hits) / len(hits)
        enc = encode_records(records, tok)
        lps = token_logprobs(model, enc, region="completion", batch_size=32, show_progress=False)
        out[f"{name}/ppl"] = math.exp(sum(t.nll_sum for t in lps) / sum(len(t.logprobs) for t in lps))
        if name == "forget":
            out["forget/ma"] = memorization_accuracy(model, enc, region="completion").value
            out["forget/el_10"] = extraction_likelihood(model, enc, n=10, region="completion").value
    if retrain_forget_log is not None:
        out["forget/forget_quality"] = forget_quality(log_ratios(logs["forget"]),
                                                      log_ratios(retrain_forget_log)).value
    return out, logs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kumpr-lr", type=float, default=1e-3,
                    help="KUMPR's learning rate (its paper: 5e-5 for 125M+ models; a tiny model needs more)")
    ap.add_argument("--icu-lr", type=float, default=None,
                    help="ICU's learning rate (default: KUMPR's / 10, the papers' ratio 5e-6 : 5e-5)")
    ap.add_argument("--out", default=None, help="write all numbers as JSON here")
    ap.add_argument("--profile", default="full", help="world profile (micro: a quick dry run)")
    ap.add_argument("--target", default=None, help="model spec of the original model (default: world-<profile>-target)")
    ap.add_argument("--retrain", default=None, help="model spec of the exact-retrain model (default: world-<profile>-retain)")
    args = ap.parse_args()
    icu_lr = args.icu_lr if args.icu_lr is not None else args.kumpr_lr / 10

    import obliviate
    from obliviate.data.sources import load_data
    from obliviate.models import load_model

    world = f"world:{args.profile}"
    target, tok = load_model(args.target or f"world-{args.profile}-target".replace("-full", ""))
    retrain, _ = load_model(args.retrain or f"world-{args.profile}-retain".replace("-full", ""))
    forget = load_data(f"{world}:forget")
    retain_eval = load_data(f"{world}:retain_eval")
    eval_ids = {r.id for r in retain_eval}
    pool = [r for r in load_data(f"{world}:retain") if r.id not in eval_ids]
    splits = {"forget": forget, "retain": retain_eval, "world_facts": load_data(f"{world}:world_facts")}
    icu_overrides = [f"train.lr={icu_lr}", f"stop.calibrate_on={world}:holdout", "eval.max_retain_samples=200",
                     "stop.max_epochs=100"]

    results, timings, runs = {}, {}, {}
    t = time.perf_counter()
    results["retrain"], retrain_logs = measure(retrain, tok, splits)
    results["original"], _ = measure(target, tok, splits, retrain_logs["forget"])
    results["retrain"]["forget/forget_quality"] = 1.0
    # 1. ICU with its own rules: refinement, and stop at the never-seen level (or when refinement
    #    has dropped every sample). 2. KUMPR until it has forgotten at least as much as ICU did
    #    (mean EL10 and MA no higher than ICU's final ones): a comparable level of forgetting.
    plans = [("icu", {"pool": pool}, icu_overrides),
             ("kumpr", {}, [f"train.lr={args.kumpr_lr}", "stop.max_epochs=200", "eval.max_retain_samples=200"])]
    for method, extra, overrides in plans:
        if method == "kumpr":
            icu_after = runs["icu"]["after"]
            overrides = [*overrides, f"stop.el_threshold={math.nextafter(icu_after['el_10'], math.inf)!r}",
                         f"stop.ma_threshold={math.nextafter(icu_after['ma'], math.inf)!r}"]
        t = time.perf_counter()
        res = obliviate.unlearn(copy.deepcopy(target), forget, method=method, retain=pool[:400], tokenizer=tok,
                                overrides=overrides, **extra)
        timings[method] = time.perf_counter() - t
        runs[method] = {"epochs": res.summary["epochs"], "steps": res.summary["optimizer_steps"],
                        "stop_reason": res.stop_reason, "thresholds": res.summary["thresholds"],
                        "after": res.summary["after"]}
        results[method], _ = measure(res.model, tok, splits, retrain_logs["forget"])

    th, ka = runs["icu"]["thresholds"], runs["kumpr"]["thresholds"]
    print(f"\nICU: stop at mean EL10 <= {th['el_10']:.4f} and MA <= {th['ma']:.4f} (the original model's means on "
          f"never-seen people) or when refinement has dropped every sample; KUMPR: until EL10 <= {ka['el_10']:.4f} "
          f"and MA <= {ka['ma']:.4f} (ICU's final values)")
    for m, r in runs.items():
        print(f"  {m}: {r['epochs']} epochs, {r['steps']} optimizer steps, stopped by {r['stop_reason']}, "
              f"{timings[m]:.0f}s")
    cols = ["original", "icu", "kumpr", "retrain"]
    print(f"\n{'metric':<28}" + "".join(f"{c:>11}" for c in cols) + f"{'|icu-orig|':>12}{'|kumpr-orig|':>13}")
    for key in results["original"]:
        row = f"{key:<28}" + "".join(f"{results[c][key]:>11.4f}" for c in cols)
        if not key.startswith("forget/"):
            d_icu = abs(results["icu"][key] - results["original"][key])
            d_kumpr = abs(results["kumpr"][key] - results["original"][key])
            row += f"{d_icu:>12.4f}{d_kumpr:>13.4f}" + ("  ICU closer" if d_icu < d_kumpr else "")
        print(row)
    kept = [k for k in results["original"] if not k.startswith("forget/")]
    closer = sum(abs(results["icu"][k] - results["original"][k]) < abs(results["kumpr"][k] - results["original"][k])
                 for k in kept)
    print(f"\nICU is closer to the original than KUMPR on {closer}/{len(kept)} retain/world metrics.")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"results": results, "runs": runs, "seconds": timings,
                       "lr": {"icu": icu_lr, "kumpr": args.kumpr_lr}}, fh, indent=2)


if __name__ == "__main__":
    main()
