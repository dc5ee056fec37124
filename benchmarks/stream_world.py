"""Batch vs stream on the synthetic world: deletion requests unlearned one after another, against
the same people unlearned all at once and against the exact-retrain model, in one command.

    python benchmarks/stream_world.py --profile micro --out runs/stream-micro

The forget people are split into ``--requests`` requests (micro: 4 people -> one person each).
For every method (ICU, KUMPR, GradDiff, NPO, SimNPO, ULMR by default):

* stream: request after request, each run continuing the previous one's model
  (``obliviate.recipes.stream.run_stream``: lineage, overlap policy), with the cumulative
  evaluation after every request -- every forget set so far (relapse), retain people, world facts;
* batch: all the requests unlearned at once from the original model (one run);

and the original and exact-retrain models measured the same way. Every run uses Table I's
procedure (``benchmarks/table1_world.py``: its per-method learning rates and epoch limits, the same
retain data, the stopping rule calibrated on never-seen people) -- per request in the stream.

Measures (``obliviate.recipes.stream.measure_model``): per forget set MA, EL_10, answer probability,
ROUGE-L recall of the greedy answer, Min-K% AUC against never-seen people (0.5 = looks never seen)
and the verdict of the calibrated rule (mean MA and EL_10 below the original model's means on
never-seen people); retain people and world facts: answer probability and ROUGE-L recall.

Outputs in --out: ``stream_world.md`` (tables), ``stream_world.json`` (every number),
``stream_world.png`` (utility and the first request's memorization over the stream). Rerun the
same command after a kill: finished runs and evaluations are reused, an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OBLIVIATE_QUIET", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import table1_world as table1

SETTINGS = ["eval.max_retain_samples=200", "report.enabled=false"]


def split_requests(profile: str, n: int, out: Path) -> list[str]:
    """The forget people in ``n`` consecutive groups, one JSONL file per request (written once)."""
    from obliviate.data.io import write_records
    from obliviate.world import load_world_split

    records = load_world_split(profile, "forget")
    people = list(dict.fromkeys(r.meta["person"] for r in records))
    if len(people) < n:
        raise SystemExit(f"the {profile} world has {len(people)} forget people; ask for at most that many requests")
    size = -(-len(people) // n)
    paths = []
    for k in range(n):
        group = set(people[k * size:(k + 1) * size])
        path = out / "data" / f"request-{k + 1}.jsonl"
        if not path.is_file():
            write_records([r for r in records if r.meta["person"] in group], path)
        paths.append(str(path))
    return paths


def overrides(method: str, profile: str, extra: list[str]) -> list[str]:
    stop = [] if method == "ulmr" else [f"stop.calibrate_on=world:{profile}:holdout"]
    return [*table1.HPARAMS[profile][method], *stop, *SETTINGS, *extra]


def cached(path: Path, compute, *args: Any) -> Any:
    """``compute(*args)``, stored as JSON in ``path`` and reused."""
    from obliviate.data.io import read_json, write_json

    if path.is_file():
        return read_json(path)
    value = compute(*args)
    write_json(path, value)
    return value


def batch_run(method: str, profile: str, forget: str, retain: str, out: Path, extra: list[str]) -> Path:
    import obliviate

    run = out / method / "batch"
    if (run / "summary.json").is_file():
        return run
    if (run / "config.yaml").is_file():
        obliviate.unlearn(out=run, resume=True)
    else:
        target, _ = table1.model_names(profile)
        obliviate.unlearn(target, forget, method=method, retain=retain, pool=retain if method == "icu" else None,
                          out=run, overrides=overrides(method, profile, extra))
    return run


def summarize(values: dict[str, dict], sets: list[str]) -> dict[str, Any]:
    """Means over the forget sets, the number judged forgotten, retain and utility."""
    def mean(name: str) -> float | None:
        chosen = [values[s][name] for s in sets if values[s].get(name) is not None]
        return sum(chosen) / len(chosen) if chosen else None

    out = {f"forget_{name}": mean(name) for name in ("ma", "el_10", "tofu_prob", "rougeL_recall", "mia_auc")}
    out["forgotten"] = sum(bool(values[s].get("forgotten")) for s in sets)
    for kept in ("retain", "utility"):
        out[f"{kept}_rougeL_recall"] = values[kept]["rougeL_recall"]
        out[f"{kept}_tofu_prob"] = values[kept]["tofu_prob"]
    return out


def relapse(curve: list[dict[str, Any]], sets: list[str]) -> dict[str, Any]:
    """Earlier sets after the last request: how many were forgotten at their own request and are
    not any more, and the largest rise of an earlier set's MA since its own request."""
    final = curve[-1]["now"]
    relapsed, rise = 0, 0.0
    for j, key in enumerate(sets[:-1]):
        own = curve[j]["now"][key]
        relapsed += bool(own.get("forgotten")) and not final[key].get("forgotten")
        rise = max(rise, final[key]["ma"] - own["ma"])
    return {"relapsed": relapsed, "max_ma_rise": rise}


def stream_rows(method: str, curve: list[dict[str, Any]], sets: list[str]) -> list[dict[str, Any]]:
    rows = []
    for k, step in enumerate(curve, start=1):
        now, key = step["now"], sets[k - 1]
        earlier = [now[s]["ma"] for s in sets[: k - 1]]
        rows.append({"method": method, "after": k, "own_ma": now[key]["ma"], "own_el_10": now[key].get("el_10"),
                     "own_forgotten": now[key].get("forgotten"),
                     "earlier_ma": sum(earlier) / len(earlier) if earlier else None,
                     "earlier_forgotten": sum(bool(now[s].get("forgotten")) for s in sets[: k - 1]),
                     "retain_rougeL_recall": now["retain"]["rougeL_recall"],
                     "utility_rougeL_recall": now["utility"]["rougeL_recall"]})
    return rows


def fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def markdown(results: dict[str, Any], n_sets: int) -> str:
    end_cols = ["forget_ma", "forget_el_10", "forget_tofu_prob", "forget_rougeL_recall", "forget_mia_auc",
                "forgotten", "retain_rougeL_recall", "utility_rougeL_recall"]
    head = ["model", "forget MA ↓", "forget EL_10 ↓", "forget prob ↓", "forget ROUGE-L ↓", "forget MIA AUC (0.5)",
            f"sets forgotten (of {n_sets}) ↑", "retain ROUGE-L ↑", "world facts ROUGE-L ↑", "relapsed sets ↓",
            "max MA rise ↓", "seconds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def line(name: str, summary: dict, extra: dict | None = None, seconds: Any = None) -> None:
        extra = extra or {}
        lines.append("| " + " | ".join([name, *(fmt(summary[c]) for c in end_cols), fmt(extra.get("relapsed")),
                                        fmt(extra.get("max_ma_rise")), fmt(seconds)]) + " |")

    line("*original*", results["original"])
    for method, res in results["methods"].items():
        line(f"{method} stream ({n_sets} requests)", res["stream"], res["relapse"], res["seconds"]["stream"])
        line(f"{method} batch", res["batch"], None, res["seconds"]["batch"])
    line("*retrain (exact)*", results["retrain"])
    steps = ["", "| method | after request | own set MA | own set forgotten | earlier sets MA | earlier sets forgotten "
             "| retain ROUGE-L | world facts ROUGE-L |", "|---|---|---|---|---|---|---|---|"]
    for res in results["methods"].values():
        for row in res["steps"]:
            steps.append("| " + " | ".join(fmt(row[c]) if c != "earlier_forgotten" or row["after"] > 1 else "–" for c in (
                "method", "after", "own_ma", "own_forgotten", "earlier_ma", "earlier_forgotten",
                "retain_rougeL_recall", "utility_rougeL_recall")) + " |")
    return "\n".join(lines + steps) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    base_u, base_ma = results["original"]["utility_rougeL_recall"], results["original_first_ma"]
    colors = plt.cm.tab20.colors  # distinct colours for up to 20 methods
    for n, (method, res) in enumerate(results["methods"].items()):
        steps = res["steps"]
        xs = [0, *(r["after"] for r in steps)]
        line, = left.plot(xs, [base_u, *(r["utility_rougeL_recall"] for r in steps)], marker="os^v"[n % 4],
                          ls=("-", "--")[n // 10 % 2], color=colors[n % 20], label=method)
        left.plot([xs[-1]], [res["batch"]["utility_rougeL_recall"]], marker="x", ms=9, color=line.get_color())
        left.set_xticks(xs)
        right.set_xticks(xs)
        right.plot(xs, [base_ma, *res["first_set_ma"]], marker=line.get_marker(), ls=line.get_linestyle(),
                   color=line.get_color(), label=method)
    left.axhline(results["retrain"]["utility_rougeL_recall"], ls="--", color="grey", label="retrain")
    right.axhline(results["retrain_first_ma"], ls="--", color="grey", label="retrain")
    left.set(xlabel="after request", ylabel="world facts ROUGE-L recall", title="utility (x = batch)")
    right.set(xlabel="after request", ylabel="MA of request 1's set", title="relapse of the first request")
    left.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="micro", choices=("full", "micro"))
    ap.add_argument("--out", default=None, help="output folder (default runs/stream-<profile>)")
    ap.add_argument("--requests", type=int, default=4, help="number of deletion requests the forget people form")
    ap.add_argument("--methods", default=",".join(table1.METHODS), help="comma-separated subset of "
                    + ", ".join(table1.METHODS))
    ap.add_argument("--stop-thresholds", default="origin", choices=("origin", "parent"),
                    help="stream requests stop at thresholds calibrated on the original model (origin) or on "
                         "each request's parent (parent: Table I's procedure applied to each request as it is)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra override for every run, e.g. --set refinement.enabled=true")
    args = ap.parse_args(argv)
    out = Path(args.out or f"runs/stream-{args.profile}")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if any(m not in table1.METHODS for m in methods):
        ap.error(f"choose methods from {table1.METHODS}")

    from obliviate.data.sources import load_data
    from obliviate.lineage import chain_curve
    from obliviate.models import load_model
    from obliviate.recipes.stream import (
        CumulativeConfig,
        kept_sets,
        measure_model,
        original_values,
        run_stream,
    )

    out.mkdir(parents=True, exist_ok=True)
    target, retrain = table1.model_names(args.profile)
    retain, forget = table1.training_data(args.profile, out)
    files = split_requests(args.profile, args.requests, out)
    cfg = CumulativeConfig(heldout=f"world:{args.profile}:holdout", retain=f"world:{args.profile}:retain_eval",
                           utility=f"world:{args.profile}:world_facts")
    sets = {f"request-{k}": load_data(f) for k, f in enumerate(files, start=1)}
    names = list(sets)
    kept, heldout = kept_sets(cfg)
    original, thresholds = original_values(target, sets, kept, heldout, cfg, out / "original.json")

    def measure(spec: str) -> dict:
        model, tok = load_model(spec)
        return measure_model(model, tok, sets, kept, heldout, cfg, thresholds)

    retrain_values = cached(out / "retrain.json", measure, retrain)
    results: dict[str, Any] = {"profile": args.profile, "requests": files, "stop_thresholds": args.stop_thresholds, "thresholds": thresholds.to_dict(),
                               "original": summarize(original, names), "retrain": summarize(retrain_values, names),
                               "original_first_ma": original["request-1"]["ma"],
                               "retrain_first_ma": retrain_values["request-1"]["ma"], "methods": {}}
    for method in methods:
        print(f"{method}: {' '.join(overrides(method, args.profile, args.set))}", flush=True)
        t = time.perf_counter()
        stream = run_stream(files, model=target, out=out / method / "stream", method=method, retain=retain,
                            pool=retain if method == "icu" else None, overrides=overrides(method, args.profile, args.set),
                            evaluation=cfg, original_cache=out / "original.json", stop_thresholds=args.stop_thresholds)
        t_stream = time.perf_counter() - t
        last = [r for r in stream.runs if r is not None][-1]
        curve = chain_curve(last)
        t = time.perf_counter()
        batch = batch_run(method, args.profile, forget, retain, out, args.set)
        batch_values = cached(out / method / "batch-values.json", measure, str(batch / "model"))
        t_batch = time.perf_counter() - t
        times = cached(out / method / "seconds.json", dict, {"stream": round(t_stream), "batch": round(t_batch)})
        results["methods"][method] = {
            "stream": summarize(curve[-1]["now"], names), "batch": summarize(batch_values, names),
            "relapse": relapse(curve, names), "steps": stream_rows(method, curve, names),
            "first_set_ma": [step["now"]["request-1"]["ma"] for step in curve], "seconds": times,
            "skipped": stream.skipped}
        print(f"  stream {times['stream']} s, batch {times['batch']} s", flush=True)

    from obliviate.data.io import atomic_write_text, write_json

    write_json(out / "stream_world.json", results)
    table = markdown(results, len(names))
    thr = thresholds.to_dict()
    note = (f"\nForgotten = mean MA and mean EL_10 no higher than {thr['ma']:.3f} and {thr['el_10']:.3f}, the original "
            f"model's means on never-seen people ({cfg.heldout}). Stream requests stop at thresholds calibrated on "
            f"{'the original model' if args.stop_thresholds == 'origin' else 'their parent model'}.\n")
    atomic_write_text(out / "stream_world.md", table + note)
    plot(results, out / "stream_world.png")
    print(table + note)
    print(json.dumps({m: r["seconds"] for m, r in results["methods"].items()}))
    print(f"wrote {out / 'stream_world.md'}, {out / 'stream_world.json'}, {out / 'stream_world.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
