"""``obliviate demo``: the end-to-end demo on the built-in model and forget set."""

from __future__ import annotations

import typer

from obliviate.cli.app import app


@app.command("demo")
def demo_command(
    out: str = typer.Option("runs/demo", "--out", help="demo folder (audits, the unlearning run, report)"),
    model: str = typer.Option("smollm2-135m", "--model", help="model to unlearn (the demo sets suit smollm2-135m)"),
    method: str = typer.Option("icu", "--method", help="unlearning method"),
    resume: bool = typer.Option(False, "--resume", help="continue a demo that was interrupted"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing demo folder"),
) -> None:
    """Audit SmolLM2-135M on six licence notices it has memorized, unlearn them with ICU, audit again.

    Prints a before/after table and writes the run folder with the unlearned model, per-epoch
    metrics, per-sample generations and report.html. 3-5 minutes on 2 CPU cores, offline.
    """
    from obliviate.demo import DemoConfig, run_demo

    run_demo(out, resume=resume, overwrite=overwrite, config=DemoConfig(model=model, method=method))
