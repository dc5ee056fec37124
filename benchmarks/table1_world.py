"""The ICU paper's Table I on the synthetic world: ICU, KUMPR, GradDiff, NPO, SimNPO, ULMR and
open-unlearning's RMU, UNDIAL, WGA, SatImp, CE-U, PDU and AltPO against the original model and the
exact-retrain model, in one command.

    python benchmarks/table1_world.py --profile full --out runs/table1     # the TOFU-sized world
    python benchmarks/table1_world.py --profile micro --out runs/table1-micro

Every method unlearns the forget people's QA (``world:<profile>:forget``) from
``world[-micro]-target``; each run is an ordinary run folder (``<out>/<method>/``) evaluated with
``obliviate eval --benchmark world`` (``<out>/<method>/eval/world/``). The original model and the
exact retrain (``world[-micro]-retain``, never saw the forget people) are evaluated the same way and
shown as reference rows. Finished runs and evaluations are reused, an interrupted run resumes
from its last checkpoint: rerun the same command after a kill.

One procedure for every method (as the ICU paper compares them): the same forget set, the same
retain data for the methods that use one (the retain people *outside* the 20 (micro: 4)
evaluation people, so retain numbers are measured on people no method trained on), and the same
stopping rule -- Jang et al.'s: stop when the forget set's mean MA and EL_10 are no higher than the
original model's on never-seen people (``stop.calibrate_on=world:<profile>:holdout``), or at the
method's own epoch limit. Learning rates are scaled for models of 0.18M-1.6M parameters trained at
lr 1e-2 / 4e-3 (the papers' values are for 125M-8B models and barely move these); see HPARAMS below, printed
with the table.

Outputs in ``--out``: the terminal table, ``table1.md``, ``table1.csv`` and ``report.html``
(the comparison report: curves per epoch, samples forgotten, generations side by side).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OBLIVIATE_QUIET", "1")

METHODS = ("icu", "kumpr", "graddiff", "npo", "simnpo", "ulmr", "rmu", "undial", "wga", "satimp", "ceu", "pdu",
           "altpo")
# Per method: config overrides for the tiny world models (shared stop rule added in `run_method`).
HPARAMS: dict[str, dict[str, list[str]]] = {
    "full": {
        "icu": ["train.lr=1e-4", "stop.max_epochs=30"],  # docs/methods.md section 8: ICU lr = KUMPR lr / 10
        "kumpr": ["train.lr=1e-3", "stop.max_epochs=20"],
        "graddiff": ["train.lr=1e-4", "stop.max_epochs=10", "train.warmup_epochs=0"],
        "npo": ["train.lr=1e-4", "stop.max_epochs=10", "train.warmup_epochs=0"],
        "simnpo": ["train.lr=1e-4", "stop.max_epochs=10", "train.warmup_epochs=0"],
        "ulmr": ["train.lr=1e-3", "stop.max_epochs=5", "method_args.alpha=0.3"],  # docs/ulmr.md: lr 1e-3, alpha 0.25-0.3
        # open-unlearning's methods: their own epoch limits; RMU steers the last of the 2 blocks
        # (WMDP's block 7 needs 8) and trains both MLP output projections.
        "rmu": ["train.lr=1e-3", "stop.max_epochs=10", "method_args.layer=1", "method_args.trainable_layers=[0,1]"],
        "undial": ["train.lr=1e-4", "stop.max_epochs=10", "train.warmup_epochs=0"],
        "wga": ["train.lr=1e-4", "stop.max_epochs=5", "train.warmup_epochs=0"],
        "satimp": ["train.lr=1e-4", "stop.max_epochs=5", "train.warmup_epochs=0"],
        "ceu": ["train.lr=1e-4", "stop.max_epochs=10", "train.warmup_epochs=0"],
        "pdu": ["train.lr=1e-4", "stop.max_epochs=10", "train.warmup_epochs=0"],
        "altpo": ["train.lr=1e-4", "stop.max_epochs=2", "train.warmup_epochs=0"],
    },
    "micro": {
        "icu": ["train.lr=1e-3", "stop.max_epochs=30"],
        "kumpr": ["train.lr=3e-3", "stop.max_epochs=20"],
        "graddiff": ["train.lr=1e-3", "stop.max_epochs=10", "train.warmup_epochs=0"],
        "npo": ["train.lr=1e-3", "stop.max_epochs=10", "train.warmup_epochs=0"],
        "simnpo": ["train.lr=1e-3", "stop.max_epochs=10", "train.warmup_epochs=0"],
        "ulmr": ["train.lr=1e-3", "stop.max_epochs=5", "method_args.alpha=0.3"],
        "rmu": ["train.lr=1e-2", "stop.max_epochs=10", "method_args.layer=1", "method_args.trainable_layers=[0,1]"],
        "undial": ["train.lr=1e-3", "stop.max_epochs=10", "train.warmup_epochs=0"],
        "wga": ["train.lr=1e-3", "stop.max_epochs=5", "train.warmup_epochs=0"],
        "satimp": ["train.lr=1e-3", "stop.max_epochs=5", "train.warmup_epochs=0"],
        "ceu": ["train.lr=1e-3", "stop.max_epochs=10", "train.warmup_epochs=0"],
        "pdu": ["train.lr=1e-3", "stop.max_epochs=10", "train.warmup_epochs=0"],
        "altpo": ["train.lr=1e-3", "stop.max_epochs=2", "train.warmup_epochs=0"],
    },
}
COLUMNS = ["forget/el_10", "forget/ma", "forget/bertscore_f1", "forget/rougeL_recall", "forget/tofu_prob",
           "forget/entropy", "forget_quality", "retain/rougeL_recall", "retain/tofu_prob", "retain/ppl",
           "world_facts/rougeL_recall", "world_utility"]


def model_names(profile: str) -> tuple[str, str]:
    return ("world-target", "world-retain") if profile == "full" else (f"world-{profile}-target",
                                                                        f"world-{profile}-retain")


def training_data(profile: str, out: Path) -> tuple[str, str]:
    """The retain people outside the evaluation people, written once: (retain file, forget spec)."""
    from obliviate.data.io import write_records
    from obliviate.data.sources import load_data

    path = out / "data" / "retain_train.jsonl"
    if not path.is_file():
        held = {r.id for r in load_data(f"world:{profile}:retain_eval")}
        write_records([r for r in load_data(f"world:{profile}:retain") if r.id not in held], path)
    return str(path), f"world:{profile}:forget"


def evaluate(model_spec: str, out: Path, label: str, *, reference: bool, eval_limit: int | None,
             origin: str | None = None) -> Path:
    """``obliviate eval --benchmark world`` (reused when its eval.json exists)."""
    from obliviate.models import load_model
    from obliviate.protocols.base import EVAL_FILE, write_eval
    from obliviate.protocols.tofu import WorldOptions, run_world

    if (out / EVAL_FILE).is_file():
        return out
    model, tok = load_model(model_spec)
    started = time.perf_counter()
    result = run_world(model, tok, WorldOptions(limit=eval_limit), model_spec=origin or model_spec)
    result.seconds = time.perf_counter() - started
    write_eval(out, result, model=model_spec, label=label, reference=reference)
    return out


def parse_methods(ap: argparse.ArgumentParser, text: str, allowed: tuple[str, ...]) -> list[str]:
    """``--methods a,b``: the names, or the parser's error naming the unknown ones."""
    methods = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in methods if m not in allowed]
    if unknown:
        ap.error(f"unknown method(s) {unknown}; choose from {allowed}")
    return methods


def references(profile: str, out: Path, eval_limit: int | None) -> float:
    """Evaluate the original and the exact-retrain model (reused when done); returns the seconds."""
    target, retrain = model_names(profile)
    t = time.perf_counter()
    evaluate(target, out / "original", "original (before)", reference=True, eval_limit=eval_limit)
    evaluate(retrain, out / "retrain", "retrain (exact)", reference=True, eval_limit=eval_limit)
    return time.perf_counter() - t


def write_tables(out: Path, stem: str, title: str, table, notes: list[str]) -> list[Path]:
    """``<stem>.md`` (table + notes), ``<stem>.csv`` and the comparison ``report.html``."""
    from obliviate.compare import to_csv, to_markdown
    from obliviate.data.io import atomic_write_text
    from obliviate.report import render_comparison

    bullets = "\n".join(f"- {s}" for s in notes)
    paths = [out / f"{stem}.md", out / f"{stem}.csv", out / "report.html"]
    atomic_write_text(paths[0], f"### {title}\n\n{to_markdown(table)}\nSettings:\n\n{bullets}\n")
    atomic_write_text(paths[1], to_csv(table))
    atomic_write_text(paths[2], render_comparison(table, title=title))
    return paths


def finish(console, out: Path, stem: str, title: str, table, rows, notes: list[str], timings: dict[str, float]) -> None:
    """Add each run's epochs / steps / stop reason to the notes, print them and write the tables."""
    for row in rows:
        summary = row.info.get("summary") or {}
        if summary:
            notes.append(f"{row.label}: {summary.get('epochs')} epochs, {summary.get('optimizer_steps')} steps, "
                         f"stopped: {summary.get('stop_reason')}, {summary.get('seconds')} s")
    console.print("\n".join(notes))
    paths = write_tables(out, stem, title, table, notes)
    console.print(f"wrote {', '.join(map(str, paths))}; time: {', '.join(f'{k} {v:.0f}s' for k, v in timings.items())}")


def run_method(method: str, profile: str, out: Path, *, max_epochs: int | None, extra: list[str]) -> Path:
    """One unlearning run folder: reused when finished, resumed when interrupted."""
    import obliviate

    run_dir = out / method
    if (run_dir / "summary.json").is_file():
        return run_dir
    target, _ = model_names(profile)
    retain, forget = training_data(profile, out)
    # ULMR trains a fixed number of epochs (its SFT learns refusals; MA/EL thresholds do not apply).
    stop = [] if method == "ulmr" else [f"stop.calibrate_on=world:{profile}:holdout"]
    overrides = [*HPARAMS[profile][method], *stop, "eval.max_retain_samples=200", *extra]
    if max_epochs is not None:
        overrides.append(f"stop.max_epochs={max_epochs}")
    resume = (run_dir / "config.yaml").is_file()
    if resume:
        obliviate.unlearn(out=run_dir, resume=True)
    else:
        obliviate.unlearn(target, forget, method=method, retain=retain, pool=retain if method == "icu" else None,
                          out=run_dir, overrides=overrides)
    return run_dir


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="full", choices=("full", "micro"))
    ap.add_argument("--out", default=None, help="output folder (default runs/table1-<profile>)")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ", ".join(METHODS))
    ap.add_argument("--max-epochs", type=int, default=None, help="cap every method's epochs (quick runs)")
    ap.add_argument("--eval-limit", type=int, default=None, help="evaluate only the first N items of each split")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra override for every run, e.g. --set refinement.enabled=false")
    args = ap.parse_args(argv)
    out = Path(args.out or f"runs/table1-{args.profile}")
    methods = parse_methods(ap, args.methods, METHODS)

    from rich.console import Console

    from obliviate.compare import build_table, load_rows, to_rich

    console = Console(width=220)
    target, _ = model_names(args.profile)
    timings = {"references": references(args.profile, out, args.eval_limit)}
    for method in methods:
        t = time.perf_counter()
        console.print(f"[bold]{method}[/bold]: {' '.join(HPARAMS[args.profile][method])}")
        run_dir = run_method(method, args.profile, out, max_epochs=args.max_epochs, extra=args.set)
        evaluate(str(run_dir / "model"), run_dir / "eval" / "world", method, reference=False,
                 eval_limit=args.eval_limit, origin=target)
        timings[method] = time.perf_counter() - t

    rows = load_rows([out / "original", *(out / m for m in methods), out / "retrain"])
    table = build_table(rows, columns=COLUMNS)
    title = f"Table I on the synthetic world ({args.profile}): {target} unlearns world:{args.profile}:forget"
    console.print(to_rich(table, title=title))
    stop = f"stop.calibrate_on=world:{args.profile}:holdout"
    cap = f" stop.max_epochs={args.max_epochs}" if args.max_epochs else ""
    settings = [f"{m}: {' '.join(HPARAMS[args.profile][m])}{'' if m == 'ulmr' else ' ' + stop}{cap}"
                f"{' ' + ' '.join(args.set) if args.set else ''}" for m in methods]
    finish(console, out, "table1", title, table, rows, settings, timings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
