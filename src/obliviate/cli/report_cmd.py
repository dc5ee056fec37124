"""``obliviate report``: the self-contained HTML report of a run, or of a comparison of runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from obliviate.cli.app import app


@app.command("report")
def report_command(
    runs: Annotated[list[Path], typer.Argument(help="one run folder (re-renders RUN/report.html), or several run / "
                                               "evaluation folders (a comparison; needs --out)")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="the HTML file to write")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an existing --out file that obliviate did "
                                            "not write (a report it wrote is always replaced)")] = False,
    before: Annotated[bool, typer.Option("--before", help="comparison: add the runs' original model as a reference "
                                         "row")] = False,
    ref: Annotated[list[Path] | None, typer.Option("--ref", help="comparison: a reference row; repeatable")] = None,
    columns: Annotated[str | None, typer.Option("--columns", help="comparison: metric keys or patterns")] = None,
    title: Annotated[str | None, typer.Option("--title", help="comparison: the report's title")] = None,
) -> None:
    """Write the HTML report: plots, before/after generations, the comparison table (opens without a server)."""
    from obliviate.errors import ObliviateError
    from obliviate.report import write_comparison_report, write_run_report
    from obliviate.runfolder import kind_of, safe_output_file

    if out is not None:
        safe_output_file(out, overwrite=overwrite)
    if len(runs) == 1 and kind_of(runs[0]) == "run" and not ref:
        path = write_run_report(runs[0], out)
    else:
        if out is None:
            raise ObliviateError("a comparison report needs --out FILE.html")
        cols = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
        path = write_comparison_report(runs, out, title=title, before=before, references=ref or (), columns=cols)
    print(f"wrote {path}")
