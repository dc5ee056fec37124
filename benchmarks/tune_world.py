"""Tuned vs fixed settings on the synthetic world, judged against exact retraining, in one command.

    python benchmarks/tune_world.py --profile micro --out runs/tune-micro --trials 10 --epochs-max 15
    python benchmarks/tune_world.py --profile micro --out runs/tune-micro ... --fixed --attacks all  # + fixed-lr rows, attacks

Every method is tuned by ``obliviate tune`` under the same budget (``--trials`` trials; lr
log-uniform in [--lr-min, --lr-max], epoch limit in [1, --epochs-max], the method's weights x/÷ 4)
with the retrain-free objective: each trial stops when the forget people's truth ratios look like
those of never-seen people (``stop.rule=indistinguishable`` against ``world:<profile>:holdout``), and
the search prefers the trial that reached that target with the least NLL increase on the retain
people and on world facts. The retrain model is never read during the search.

Then the chosen model of each method (``<out>/tune-<method>/best``) is evaluated with
``--benchmark world`` like Table I: forget quality is the KS p-value of its forget truth ratios
against the *exact-retrain* model's, world utility the harmonic mean of the retain / world-facts
numbers. The goal line says, per method, whether forget quality >= 0.05 with world utility >= 95 %
of the original model's. ``--fixed`` adds Table I's fixed-learning-rate runs (``table1_world.py``'s
settings) as rows; ``--attacks all`` runs ``obliviate.evaluation.attacks`` on each tuned model
with attacks_world.py's settings (verdicts against never-seen people). Everything resumes: rerun the same command after a kill (finished searches and
evaluations are reused, an interrupted search continues its Optuna study).

Outputs in ``--out``: the terminal table, ``tune_world.md``, ``tune_world.csv``, ``report.html`` (the
comparison) and each method's search folder (``tune-<method>/``: trials.md, report.html with the
Pareto plot, best_config.yaml).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OBLIVIATE_QUIET", "1")

from table1_world import (
    COLUMNS,
    evaluate,
    finish,
    model_names,
    parse_methods,
    references,
    run_method,
    training_data,
)
from table1_world import (
    METHODS as TABLE1_METHODS,
)

METHODS = tuple(m for m in TABLE1_METHODS if m != "ulmr")  # ULMR is a fixed recipe of runs, not a stopping run
DEFAULT = ("icu", "kumpr", "graddiff", "npo", "simnpo")  # Table I's methods
GOAL_QUALITY, GOAL_UTILITY = 0.05, 0.95
# Fixed for every trial: EL_n is not needed by the target rule (and costs a decode per epoch).
TRIAL_OVERRIDES = ["eval.el=false", "stop.el_threshold=null", "eval.max_retain_samples=200", "train.warmup_epochs=0"]


def tune_method(method: str, profile: str, out: Path, args) -> Path:
    """``obliviate tune`` for one method (resumed when its folder exists)."""
    from obliviate.recipes.tune import TUNE_FILE, TuneConfig, tune

    folder = out / f"tune-{method}"
    if (folder / TUNE_FILE).is_file():
        tune(out=folder, resume=True)
        return folder
    target, _ = model_names(profile)
    retain, forget = training_data(profile, out)
    cfg = TuneConfig(method=method, trials=args.trials, lr_min=args.lr_min, lr_max=args.lr_max,
                     epochs_max=args.epochs_max, seed=args.seed)
    tune(target, forget, heldout=f"world:{profile}:holdout", retain=retain, utility=f"world:{profile}:world_facts",
         pool=retain if method == "icu" else None, out=folder, overrides=[*TRIAL_OVERRIDES, *args.set], tune_cfg=cfg)
    return folder


def attack_table(profile: str, out: Path, models: dict[str, Path], spec: str) -> list[str]:
    """``evaluation.attacks`` on each model (attacks_world.py's settings), reused from
    ``<out>/attacks.json``: a Markdown table of verdicts (held / recovered, mean recovery)."""
    import json

    from attacks_world import cell
    from obliviate.data.sources import load_data
    from obliviate.evaluation.attacks import AttackConfig, run_attacks
    from obliviate.models import load_model

    target, _ = model_names(profile)
    retain, forget_spec = training_data(profile, out)
    forget, heldout = load_data(forget_spec), load_data(f"world:{profile}:holdout")
    original, tok = load_model(target)
    done = out / "attacks.json"
    results = json.loads(done.read_text()) if done.is_file() else {}
    for label, folder in models.items():
        if label not in results:
            found = run_attacks(load_model(str(folder / "model"))[0], tok, forget, heldout, spec, original=original,
                                retain=load_data(retain), config=AttackConfig(relearn_lr=1e-3))
            results[label] = [r.to_dict() for r in found]
            done.write_text(json.dumps(results, indent=1))
    names = [r["attack"] for r in next(iter(results.values()))]
    lines = ["| model | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label, res in results.items():
        by = {r["attack"]: r for r in res}
        lines.append(f"| {label} | " + " | ".join(cell(by[a]) if a in by else "–" for a in names) + " |")
    return lines


def goal_lines(rows, original_utility: float | None) -> list[str]:
    """Per ranked row: forget quality vs retrain, utility vs the original, and whether the goal is met."""
    lines = []
    for r in rows:
        if r.reference:
            continue
        fq, wu = r.metrics.get("forget_quality"), r.metrics.get("world_utility")
        if fq is None or wu is None or not original_utility:
            continue
        share = wu / original_utility
        met = fq >= GOAL_QUALITY and share >= GOAL_UTILITY
        lines.append(f"{r.label}: forget quality {fq:.3g} ({'>=' if fq >= GOAL_QUALITY else '<'} {GOAL_QUALITY}), "
                     f"world utility {wu:.3f} = {share:.1%} of the original ({'>=' if share >= GOAL_UTILITY else '<'} "
                     f"{GOAL_UTILITY:.0%}) -> {'goal met' if met else 'goal not met'}")
    return lines


def search_lines(method: str, folder: Path) -> list[str]:
    """What the search itself saw (retrain-free): trials, how many reached the target, the choice."""
    from obliviate.data.io import read_json

    doc = read_json(folder / "tune.json")
    best, n = doc["best"], doc["tune"]["trials"]
    rows = (folder / "trials.csv").read_text().splitlines()[1:]
    reached = sum(1 for line in rows if ",indistinguishable," in line)
    params = " ".join(f"{k.split('.')[-1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                      for k, v in best["params"].items())
    return [f"{method} search: {n} trials, {reached} reached the target; chosen trial {best['number']} ({params}): "
            f"AUC forget vs held-out {best['auc']:.3f}, KS p {best['ks_p']:.3g} ({best['verdict']}, "
            f"{best['epochs']} epochs), utility loss {best['utility_loss']:.4f} nats/token"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="micro", choices=("full", "micro"))
    ap.add_argument("--out", default=None, help="output folder (default runs/tune-<profile>)")
    ap.add_argument("--methods", default=",".join(DEFAULT), help="comma-separated subset of " + ", ".join(METHODS))
    ap.add_argument("--trials", type=int, default=8, help="the budget: trials per method")
    ap.add_argument("--lr-min", type=float, default=1e-4)
    ap.add_argument("--lr-max", type=float, default=1e-2)
    ap.add_argument("--epochs-max", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0, help="the sampler's seed")
    ap.add_argument("--fixed", action="store_true", help="also run Table I's fixed-lr settings (table1_world.py)")
    ap.add_argument("--eval-limit", type=int, default=None, help="evaluate only the first N items of each split")
    ap.add_argument("--attacks", default=None, help="also attack each tuned model (evaluation.attacks spec, e.g. all)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra override for every trial, e.g. --set stop.target.per_sample=true")
    args = ap.parse_args(argv)
    out = Path(args.out or f"runs/tune-{args.profile}")
    methods = parse_methods(ap, args.methods, METHODS)

    from rich.console import Console

    from obliviate.compare import build_table, load_rows, to_rich

    console = Console(width=220)
    target, _ = model_names(args.profile)
    timings = {"references": references(args.profile, out, args.eval_limit)}
    folders: list[tuple[str, Path]] = []
    for method in methods:
        if args.fixed:
            t = time.perf_counter()
            run_dir = run_method(method, args.profile, out, max_epochs=None, extra=[])
            evaluate(str(run_dir / "model"), run_dir / "eval" / "world", method, reference=False,
                     eval_limit=args.eval_limit, origin=target)
            timings[f"{method} fixed"] = time.perf_counter() - t
            folders.append((f"{method} (fixed lr)", run_dir))
        t = time.perf_counter()
        console.print(f"[bold]{method}[/bold]: tuning, {args.trials} trials")
        best = tune_method(method, args.profile, out, args) / "best"
        evaluate(str(best / "model"), best / "eval" / "world", f"{method} tuned", reference=False,
                 eval_limit=args.eval_limit, origin=target)
        timings[f"{method} tuned"] = time.perf_counter() - t
        folders.append((f"{method} (tuned)", best))

    rows = load_rows([out / "original", *(f for _, f in folders), out / "retrain"])
    labels = {f.resolve(): label for label, f in folders}
    for r in rows:
        if r.path is not None and r.path.resolve() in labels:
            r.label = labels[r.path.resolve()]
    table = build_table(rows, columns=COLUMNS)
    title = (f"Tuned (retrain-free target) vs fixed settings on the synthetic world ({args.profile}): "
             f"{target} unlearns world:{args.profile}:forget")
    console.print(to_rich(table, title=title))
    original = next((r.metrics.get("world_utility") for r in rows if r.path == out / "original"), None)
    budget = (f"budget per method: {args.trials} trials, lr in [{args.lr_min:g}, {args.lr_max:g}] (log), epoch limit "
              f"in [1, {args.epochs_max}], loss weights x/÷ 4 around the paper defaults; TPE seed {args.seed}; "
              f"fixed per trial: {' '.join([*TRIAL_OVERRIDES, *args.set])}")
    notes = [budget, *(line for m in methods for line in search_lines(m, out / f"tune-{m}")),
             *goal_lines(rows, original)]
    finish(console, out, "tune_world", title, table, rows, notes, timings)
    if args.attacks:
        tuned = {label: folder for label, folder in folders if label.endswith("(tuned)")}
        lines = attack_table(args.profile, out, tuned, args.attacks)
        text = ("\nRobustness attacks on the tuned models (attacks_world.py's settings; verdict against the never-seen "
                "people, in brackets the mean recovery over MA and EL_10):\n\n" + "\n".join(lines) + "\n")
        console.print(text)
        with open(out / "tune_world.md", "a", encoding="utf-8") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
