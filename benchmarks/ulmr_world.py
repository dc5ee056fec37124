"""ULMR and the training-free guardrail baselines on QA forget data: one command, one table.

    .venv/bin/python benchmarks/ulmr_world.py --profile micro     # the micro synthetic world (minutes on 2 cores)
    .venv/bin/python benchmarks/ulmr_world.py --profile full      # the full world (TOFU-sized: 20 forget people)
    .venv/bin/python benchmarks/ulmr_world.py --model M --reference R \
        --forget forget.json --retain retain.json --world-facts world_facts.json   # any TOFU-schema files

Rows (TOFU's metrics on each split: ROUGE-L recall of the greedy answer, answer probability,
truth ratio; forget quality = KS p-value against the exact-retrain model):

* the original model (= ULMR with α = 1) and the exact-retrain reference (never saw the forget set);
* guardrails without training: a system prompt naming the forget subjects, an output filter
  (word-bigram containment of a forget answer >= threshold -> refusal), and both;
* ULMR: restructured forget set (template generator by default: offline, deterministic), SFT
  with the paper's optimiser settings except the learning rate (see --lr), then parameter
  averaging θ_u = α·θ + (1−α)·θ_SFT for every α of --alphas (α = 0 is the SFT model itself);
  optionally (--paper-lr-row) the same SFT at the paper's lr 1e-4.

Everything lands in --out (restructured data, SFT run, merged models, results.json, table.md);
``--resume`` reuses what is there.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OBLIVIATE_QUIET", "1")

PROFILES = {
    "micro": {"model": "world-micro-target", "reference": "world-micro-retain", "forget": "world:micro:forget",
              "retain": "world:micro:retain_eval", "world_facts": "world:micro:world_facts"},
    "full": {"model": "world-target", "reference": "world-retain", "forget": "world:full:forget",
             "retain": "world:full:retain_eval", "world_facts": "world:full:world_facts"},
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--profile", choices=sorted(PROFILES), default="micro", help="synthetic-world defaults")
    for name in ("model", "reference", "forget", "retain", "world_facts", "real_authors"):
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None,
                       help=f"override the profile's {name} (model spec / data spec or TOFU-schema file)")
    p.add_argument("--out", type=Path, default=None, help="results folder (default runs/ulmr-<profile>)")
    p.add_argument("--resume", action="store_true", help="reuse the SFT run and sweep points already in --out")
    p.add_argument("--alphas", default="0,0.25,0.3,0.4,0.5,0.75", help="averaging weights of the original model")
    p.add_argument("--lr", type=float, default=None,
                   help="SFT learning rate (default: 1e-3 for the tiny world models, else the paper's 1e-4)")
    p.add_argument("--epochs", type=int, default=5, help="SFT epochs (paper: 5)")
    p.add_argument("--batch-size", type=int, default=16, help="SFT batch (paper: 16)")
    p.add_argument("--paper-lr-row", action="store_true", help="also run SFT at the paper's lr 1e-4")
    p.add_argument("--generator", default="template", help="ULMR generator: template | model | openai")
    p.add_argument("--gen-model", default=None, help="generator model (model spec, or the endpoint's model name)")
    p.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint for --generator openai")
    p.add_argument("--refusals", default=None, help="refusal file for the template generator (e.g. idontknow.jsonl)")
    p.add_argument("--filter-threshold", type=float, default=0.5, help="output filter: containment threshold")
    p.add_argument("--filter-n", type=int, default=2, help="output filter: word n-gram size")
    p.add_argument("--max-new-tokens", type=int, default=64, help="greedy answer length for ROUGE")
    args = p.parse_args(argv)
    spec = {k: getattr(args, k) or v for k, v in PROFILES[args.profile].items()}
    spec["real_authors"] = args.real_authors
    out = args.out or Path("runs") / f"ulmr-{args.profile}"
    tiny = spec["model"] in ("world-micro-target", "world-target")
    lr = args.lr if args.lr is not None else (1e-3 if tiny else 1e-4)

    from obliviate.data.encode import DEFAULT_TEMPLATE
    from obliviate.data.sources import load_data
    from obliviate.guardrails import OutputFilter, forget_subjects, system_prompt_template
    from obliviate.models import load_model, resolve_model
    from obliviate.recipes.ulmr import run_ulmr
    from obliviate.ulmr.evaluate import TableRow, evaluate_qa, forget_truth_ratios, format_table, qa_records
    from obliviate.ulmr.merge import parse_alphas
    from obliviate.ulmr.sweep import alpha_sweep

    # Pin the checkpoints: a built-in name could be rebuilt (new recipe) while this runs.
    for key in ("model", "reference"):
        if spec.get(key):
            spec[key] = resolve_model(spec[key])
    out.mkdir(parents=True, exist_ok=True)
    splits = {k: qa_records(load_data(spec[k]), spec[k]) for k in ("forget", "retain", "world_facts", "real_authors")
              if spec.get(k)}
    sizes = ", ".join(f"{k} {len(v)}" for k, v in splits.items())
    print(f"data: {sizes}; model {spec['model']}, reference {spec['reference']}", flush=True)
    kw = {"max_new_tokens": args.max_new_tokens}
    rows: list[TableRow] = []
    timings: dict[str, float] = {}

    def timed(label: str, fn):
        t0 = time.perf_counter()
        value = fn()
        timings[label] = round(time.perf_counter() - t0, 1)
        print(f"  {label}: {timings[label]:.1f}s", flush=True)
        return value

    ref_ratios = None
    if spec["reference"]:
        ref, ref_tok = load_model(spec["reference"])
        ref_eval = timed("eval reference", lambda: evaluate_qa(ref, ref_tok, splits, **kw))
        ref_ratios = forget_truth_ratios(ref_eval.logs["forget"])
        ref_eval.row["forget_quality"] = 1.0  # KS test of the reference against itself
        rows.append(TableRow("Retain model (exact retrain)", ref_eval.row, note="never saw the forget set"))
        del ref
    model, tok = load_model(spec["model"])
    kw["reference_forget_ratios"] = ref_ratios
    original = timed("eval original", lambda: evaluate_qa(model, tok, splits, **kw))
    rows.append(TableRow("Original (= ULMR α=1)", original.row))

    subjects = forget_subjects(splits["forget"])
    guard_tpl = system_prompt_template(subjects, base=DEFAULT_TEMPLATE) if subjects else None
    out_filter = OutputFilter.from_records(splits["forget"], n=args.filter_n, threshold=args.filter_threshold)
    if guard_tpl is not None:
        ev = timed("eval system prompt", lambda: evaluate_qa(model, tok, splits, template=guard_tpl, **kw))
        rows.append(TableRow("Guardrail: system prompt", ev.row, note=f"names {len(subjects)} subject(s)"))
    ev = timed("eval output filter", lambda: evaluate_qa(model, tok, splits, output_filter=out_filter, **kw))
    rows.append(TableRow("Guardrail: output filter", ev.row, filtered=True,
                         note=_blocked(ev.row) + f"; bigram containment >= {args.filter_threshold}"))
    if guard_tpl is not None:
        ev = timed("eval prompt + filter", lambda: evaluate_qa(model, tok, splits, template=guard_tpl,
                                                               output_filter=out_filter, **kw))
        rows.append(TableRow("Guardrail: prompt + filter", ev.row, filtered=True, note=_blocked(ev.row)))

    gen = [f"method_args.generator.kind={args.generator}"]
    for key, value in (("model", args.gen_model), ("base_url", args.base_url), ("refusals", args.refusals)):
        if value:
            gen.append(f"method_args.generator.{key}={value}")
    runs = [("ULMR", lr, out / "ulmr")]
    if args.paper_lr_row and lr != 1e-4:
        runs.append(("ULMR (paper lr 1e-4)", 1e-4, out / "ulmr-paper-lr"))
    alphas = parse_alphas(args.alphas)
    for label, run_lr, run_dir in runs:
        overrides = [*gen, f"train.lr={run_lr}", f"stop.max_epochs={args.epochs}", f"train.batch_size={args.batch_size}"]
        if run_dir != out / "ulmr" and (out / "ulmr" / "restructured.jsonl").is_file() and not args.resume:
            run_dir.mkdir(parents=True, exist_ok=True)  # same D_fr for both runs
            for name in ("restructured.jsonl", "restructured.meta.json"):
                (run_dir / name).write_bytes((out / "ulmr" / name).read_bytes())
        result = timed(f"{label}: restructure + SFT", lambda rd=run_dir, ov=overrides: run_ulmr(
            spec["model"], spec["forget"], out=rd, alpha=0.0, overrides=ov, resume=args.resume))
        n_fr = len(result.restructured.records)
        sweep = timed(f"{label}: α sweep", lambda rd=run_dir: alpha_sweep(
            spec["model"], rd / "sft" / "model", alphas, rd / "sweep", splits=splits, resume=args.resume, **kw))
        for r in sweep:
            note = f"SFT on {n_fr} restructured examples, lr {run_lr:g}" if r["alpha"] == 0 else ""
            rows.append(TableRow(f"{label} α={r['alpha']:g}" + (" (SFT only)" if r["alpha"] == 0 else ""), r,
                                 note=note))

    table = format_table(rows)
    header = (f"{args.profile if not args.model else spec['model']}: forget {len(splits['forget'])} QA, "
              f"retain {len(splits.get('retain', []))}, world facts {len(splits.get('world_facts', []))}; "
              f"generator {args.generator}; SFT AdamW lr {lr:g}, {args.epochs} epochs, batch {args.batch_size}; "
              f"greedy answers of <= {args.max_new_tokens} tokens")
    (out / "table.md").write_text(f"{header}\n\n{table}\n", encoding="utf-8")
    (out / "results.json").write_text(json.dumps({
        "spec": spec, "args": {k: str(v) for k, v in vars(args).items()}, "lr": lr, "timings_s": timings,
        "rows": [{"label": r.label, "values": dict(r.values), "filtered": r.filtered, "note": r.note} for r in rows],
    }, indent=2, default=float) + "\n", encoding="utf-8")
    print(f"\n{header}\n\n{table}\n\n(saved to {out / 'table.md'} and {out / 'results.json'})")
    return 0


def _blocked(row: dict[str, float]) -> str:
    parts = [f"{k.split('/')[0]} {100 * v:.0f}%" for k, v in row.items() if k.endswith("/blocked")]
    return "blocked: " + ", ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
