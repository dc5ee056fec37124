"""``obliviate merge``: model parameter averaging θ_u = α·base + (1−α)·tuned (ULMR §3.3), one α or a sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from obliviate.cli.app import app


@app.command("merge")
def merge_command(
    base: Annotated[str, typer.Option("--base", help="the original model θ (MODEL spec); α=1 gives it back")],
    tuned: Annotated[str, typer.Option("--tuned", help="the fine-tuned / unlearned model θ' (MODEL spec); α=0 gives it")],
    alpha: Annotated[str, typer.Option("--alpha", "-a", help="α in [0, 1], or a comma list for a sweep: 0,0.25,0.5,0.75,1")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output model folder (one α, no evaluation) or sweep folder "
                                      "(alpha-<α>/ per point)")],
    forget: Annotated[str | None, typer.Option("--forget", "-f", help="QA forget set: evaluate every point (TOFU metrics)")] = None,
    retain: Annotated[str | None, typer.Option("--retain", "-r", help="QA retain set to evaluate (model utility)")] = None,
    world_facts: Annotated[str | None, typer.Option("--world-facts", help="world-facts QA set to evaluate")] = None,
    real_authors: Annotated[str | None, typer.Option("--real-authors", help="real-authors QA set to evaluate")] = None,
    reference: Annotated[str | None, typer.Option("--reference", help="exact-retrain MODEL: adds forget quality "
                                                  "(KS p-value of forget truth ratios)")] = None,
    template: Annotated[str, typer.Option("--template", help="QA prompt format: auto | chat | plain")] = "auto",
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", help="greedy answer length for ROUGE")] = 200,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an existing --out")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="continue a sweep in --out (finished points are kept)")] = False,
) -> None:
    """Average two compatible checkpoints; with several α (or --forget), write and evaluate each point and print a table."""
    from obliviate.data.encode import PromptTemplate
    from obliviate.data.io import write_json
    from obliviate.data.sources import load_data
    from obliviate.errors import ObliviateError
    from obliviate.ulmr.evaluate import TableRow, format_table, qa_records
    from obliviate.ulmr.merge import merge_checkpoints, parse_alphas
    from obliviate.ulmr.sweep import alpha_sweep, sweep_label

    alphas = parse_alphas(alpha)
    named = {"forget": forget, "retain": retain, "world_facts": world_facts, "real_authors": real_authors}
    if not forget and (reference or any(named[k] for k in ("retain", "world_facts", "real_authors"))):
        raise ObliviateError("evaluation needs --forget (the other sets are optional)")
    if template not in ("auto", "chat", "plain"):
        raise ObliviateError(f"--template must be auto, chat or plain, got {template!r}")
    splits = {k: qa_records(load_data(v), v) for k, v in named.items() if v}
    tpl = PromptTemplate(mode=template)  # type: ignore[arg-type]

    if len(alphas) == 1 and not splits:
        folder = merge_checkpoints(base, tuned, alphas[0], out, overwrite=overwrite)
        print(f"wrote θ_u = {alphas[0]:g}·base + {1 - alphas[0]:g}·tuned to {folder}")
        return
    ref_ratios = None
    if reference:
        from obliviate.models import load_model
        from obliviate.ulmr.evaluate import evaluate_qa, forget_truth_ratios

        ref_model, ref_tok = load_model(reference)
        ref_eval = evaluate_qa(ref_model, ref_tok, {"forget": splits["forget"]}, template=tpl,
                               max_new_tokens=max_new_tokens)
        ref_ratios = forget_truth_ratios(ref_eval.logs["forget"])
        del ref_model
    rows = alpha_sweep(base, tuned, alphas, out, splits=splits or None, template=tpl,
                       reference_forget_ratios=ref_ratios, max_new_tokens=max_new_tokens,
                       overwrite=overwrite, resume=resume)
    if splits:
        table = format_table([TableRow(sweep_label(r["alpha"]), r) for r in rows])
        (out / "sweep.md").write_text(table + "\n", encoding="utf-8")
        write_json(out / "sweep_config.json", {"base": base, "tuned": tuned, "alphas": alphas, **named,
                                                "reference": reference, "template": template,
                                                "max_new_tokens": max_new_tokens})
        print(table)
    print(f"{len(rows)} merged model(s) in {out}/alpha-*/" + (" (table: sweep.md, rows: sweep.json)" if splits else ""))
