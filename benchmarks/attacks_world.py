"""Every attack on the synthetic world: the original model, each method's unlearned model and the
exact-retrain model, judged against never-seen people by one calibrated rule.

    python benchmarks/attacks_world.py --profile micro --out runs/attacks-micro

The unlearning runs are table1_world.py's (same hyper-parameters, same stopping rule, reused from
``--out`` when finished). Each model then goes through ``obliviate.evaluation.attacks.run_attacks``
with the forget people's QA (``world:<profile>:forget``), the never-seen people as held-out
(``world:<profile>:holdout``: the calibrated level) and the retain people (benign relearning,
few-shot prompts). The relearning learning rate is scaled like the methods' (the literature's
1e-5 is for 125M-8B models and does not move models of 0.2M-1.6M parameters trained at 1e-2):
``--relearn-lr`` (default 1e-3, the methods' own lr here).

Outputs: the table (method x attack: verdict and mean recovery) on the terminal and in
``<out>/attacks.md``; every number in ``<out>/attacks.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OBLIVIATE_QUIET", "1")

HERE = Path(__file__).resolve().parent
DEFAULT_METHODS = ("graddiff", "npo", "simnpo", "kumpr", "icu")


def _table1():
    spec = importlib.util.spec_from_file_location("table1_world", HERE / "table1_world.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def cell(r: dict) -> str:
    rec = r.get("recovery") or {}
    mean = sum(rec.values()) / len(rec) if rec else None
    return r["verdict"] + (f" ({mean:+.2f})" if mean is not None else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="micro", choices=("micro", "full"))
    ap.add_argument("--out", default=None, help="output folder (default runs/attacks-<profile>)")
    ap.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    ap.add_argument("--attacks", default="all")
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--relearn-lr", type=float, default=1e-3)
    ap.add_argument("--relearn-steps", type=int, default=20)
    ap.add_argument("--limit", type=int, default=None, help="first N forget / held-out / retain records")
    args = ap.parse_args(argv)
    out = Path(args.out or f"runs/attacks-{args.profile}")
    t1 = _table1()

    from obliviate.data.sources import load_data
    from obliviate.evaluation.attacks import AttackConfig, run_attacks
    from obliviate.models import load_model

    target_name, retrain_name = t1.model_names(args.profile)
    retain_file, forget_spec = t1.training_data(args.profile, out)
    lim = slice(args.limit)
    forget, heldout = load_data(forget_spec)[lim], load_data(f"world:{args.profile}:holdout")[lim]
    retain = load_data(retain_file)[lim]
    cfg = AttackConfig(n_samples=args.samples, relearn_lr=args.relearn_lr, relearn_steps=args.relearn_steps)
    original, tok = load_model(target_name)
    models: dict[str, str] = {"original": target_name}
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        run_dir = t1.run_method(method, args.profile, out, max_epochs=None, extra=[])
        models[method] = str(run_dir / "model")
    models["retrain"] = retrain_name

    results: dict[str, list[dict]] = {}
    seconds: dict[str, float] = {}
    done = out / "attacks.json"
    if done.is_file():
        results = json.loads(done.read_text())["results"]
    for label, spec in models.items():
        if label in results:
            continue
        t = time.perf_counter()
        model = original if label == "original" else load_model(spec)[0]
        res = run_attacks(model, tok, forget, heldout, args.attacks, original=original, retain=retain, config=cfg)
        results[label] = [r.to_dict() for r in res]
        seconds[label] = time.perf_counter() - t
        print(f"{label}: {seconds[label]:.0f}s " + ", ".join(f"{r.attack} {r.verdict}" for r in res), flush=True)
        done.parent.mkdir(parents=True, exist_ok=True)
        done.write_text(json.dumps({"settings": vars(args), "results": results}, indent=1))

    attacks = [r["attack"] for r in next(iter(results.values()))]
    lines = ["| model | " + " | ".join(attacks) + " |", "|---|" + "---|" * len(attacks)]
    for label, res in results.items():
        by = {r["attack"]: r for r in res}
        lines.append(f"| {label} | " + " | ".join(cell(by[a]) if a in by else "–" for a in attacks) + " |")
    table = "\n".join(lines)
    note = (f"verdict: held / recovered by the calibrated rule against {len(heldout)} never-seen people's QA; "
            f"(x) = mean recovery (attacked - unlearned) / (original - unlearned) over MA and EL_10 "
            f"(sampling: none, it attacks the unlearned model's own decoding). forget records: {len(forget)}; "
            f"n={args.samples} samples; relearning lr {args.relearn_lr}, {args.relearn_steps} steps, batch 4.")
    print(table + "\n\n" + note)
    (out / "attacks.md").write_text(f"{table}\n\n{note}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
