"""``obliviate history``: the chain of deletion requests behind a run, and how each earlier
forget set, the retain data and utility fared after every request."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from obliviate.cli.app import app


@app.command("history")
def history_command(
    run: Annotated[Path, typer.Argument(help="a run folder of `obliviate unlearn`")],
    evaluate: Annotated[bool, typer.Option("--evaluate", help="measure every request's forget set, retain and utility "
                                           "on this run's model and the original (RUN/eval/cumulative)")] = False,
    heldout: Annotated[str | None, typer.Option(help="never-seen records: calibrates the 'forgotten' rule "
                                                "(e.g. world:micro:holdout)")] = None,
    retain: Annotated[str | None, typer.Option(help="retain records to check (e.g. world:micro:retain_eval)")] = None,
    utility: Annotated[str | None, typer.Option(help="general-utility records (e.g. world:micro:world_facts)")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="redo an existing cumulative evaluation")] = False,
) -> None:
    """Print RUN's chain of requests (parent runs, forget sets, hashes, overlaps) and the cumulative
    evaluations saved along it."""
    from obliviate.lineage import chain_curve, read_lineage
    from obliviate.recipes.stream import CumulativeConfig, evaluate_cumulative, format_curve

    lineage = read_lineage(run)
    if evaluate:
        evaluate_cumulative(run, CumulativeConfig(heldout=heldout, retain=retain, utility=utility), overwrite=overwrite)
    # Plain lines, not a table: run folders and data specs are long paths that must stay whole.
    print(f"{run}: {len(lineage.requests)} request(s) after {lineage.origin}")
    for k, req in enumerate(lineage.requests, start=1):
        overlap = ", ".join(f"#{j}: {n}" for j, n in sorted(req.overlap.items(), key=lambda kv: int(kv[0])))
        print(f"  #{k} {req.run}  {req.method}  forget={req.forget}  {req.n_requested} record(s), "
              f"{req.n_unlearned} unlearned{f' (already unlearned by {overlap})' if overlap else ''}  "
              f"sha256 {req.forget_sha256[:12]}")
    curve = format_curve(chain_curve(run))
    if curve:
        print(curve)
    elif not evaluate:
        print("no cumulative evaluation saved; add --evaluate --heldout SPEC --retain SPEC")
