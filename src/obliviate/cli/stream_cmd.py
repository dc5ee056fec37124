"""``obliviate stream``: unlearn deletion requests one after another, with lineage and the
cumulative evaluation (every earlier forget set, retain, utility) after each request."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from obliviate.cli.app import app


@app.command("stream")
def stream_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="stream folder: request-<k>/ run folders + stream.json")],
    model: Annotated[str, typer.Option("--model", "-m", help="MODEL the first request starts from")],
    forget: Annotated[list[str], typer.Option("--forget", "-f", help="one forget set per request, in order "
                                              "(repeat the option); rerun with more to append requests")],
    overrides: Annotated[list[str] | None, typer.Argument(
        metavar="[KEY=VALUE]...", help="config overrides for every request, e.g. train.lr=1e-3 "
        "stop.calibrate_on=world:micro:holdout refinement.enabled=true")] = None,
    method: Annotated[str | None, typer.Option(help="unlearning method of every request (default icu)")] = None,
    retain: Annotated[str | None, typer.Option("--retain", "-r", help="retain set the methods train with")] = None,
    pool: Annotated[str | None, typer.Option(help="ICU: choose analogous samples from this set")] = None,
    config: Annotated[str | None, typer.Option("--config", "-c", help="YAML config of every request")] = None,
    overlap: Annotated[str, typer.Option(help="records an earlier request unlearned: skip | again")] = "skip",
    heldout: Annotated[str | None, typer.Option(help="never-seen records: the calibrated 'forgotten' rule and "
                                                "the MIA of the cumulative evaluation")] = None,
    check_retain: Annotated[str | None, typer.Option("--check-retain", help="retain records the cumulative "
                                                     "evaluation checks (default: none)")] = None,
    utility: Annotated[str | None, typer.Option(help="general-utility records the cumulative evaluation checks")] = None,
    stop_thresholds: Annotated[str, typer.Option("--stop-thresholds", help="with stop.calibrate_on: calibrate once "
                                                 "on the original model (origin) or per request on its parent "
                                                 "(parent)")] = "origin",
    evaluate: Annotated[bool, typer.Option("--evaluate/--no-evaluate", help="cumulative evaluation after each "
                                           "request")] = True,
) -> None:
    """Unlearn the --forget sets one after another (each run continues the previous one); resumable."""
    from obliviate.lineage import chain_curve
    from obliviate.recipes.stream import CumulativeConfig, format_curve, run_stream

    evaluation = CumulativeConfig(heldout=heldout, retain=check_retain, utility=utility) if evaluate else None
    result = run_stream(forget, model=model, out=out, method=method, retain=retain, pool=pool, config=config,
                        overrides=list(overrides or []), evaluation=evaluation, overlap=overlap,
                        stop_thresholds=stop_thresholds)
    for k, run in enumerate(result.runs, start=1):
        print(f"request {k}: {run if run is not None else 'skipped: ' + result.skipped[k]}")
    done = [r for r in result.runs if r is not None]
    if done and evaluation is not None:
        print(format_curve(chain_curve(done[-1])))
    print(f"stream in {result.out} (obliviate history {done[-1] if done else result.out} for the chain)")
