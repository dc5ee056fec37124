"""``obliviate compare``: the ICU paper's Table I for any set of runs (terminal, Markdown, CSV, HTML)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from obliviate.cli.app import app

WIDE = 400  # columns when stdout is not a terminal (rich would otherwise assume 80)


@app.command("compare")
def compare_command(
    runs: Annotated[list[Path], typer.Argument(help="run folders (obliviate unlearn / ulmr), evaluation folders "
                                               "(obliviate eval), or folders holding them")],
    before: Annotated[bool, typer.Option("--before", help="add each run's original model as a reference row")] = False,
    ref: Annotated[list[Path] | None, typer.Option("--ref", help="a reference row (shown, not ranked or normalised); "
                                                   "repeatable")] = None,
    columns: Annotated[str | None, typer.Option("--columns", help="comma-separated metric keys or patterns, in "
                                                "order (e.g. 'forget/*,retain/rougeL_recall,forget_quality')")] = None,
    markdown: Annotated[Path | None, typer.Option("--markdown", help="also write the table as Markdown")] = None,
    csv: Annotated[Path | None, typer.Option("--csv", help="also write the plain values as CSV")] = None,
    html: Annotated[Path | None, typer.Option("--html", help="also write an HTML comparison report")] = None,
    title: Annotated[str | None, typer.Option("--title", help="table title")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace existing --markdown/--csv/--html files "
                                            "that obliviate did not write (its own are always replaced)")] = False,
) -> None:
    """Table I of the ICU paper for RUNS: every metric with its arrow, s_z and s_m, best bold, second underlined."""
    from rich.console import Console

    from obliviate.compare import compare, to_csv, to_markdown, to_rich
    from obliviate.runfolder import MD_SIGNATURE, safe_output_file

    outputs = {path: None for path in (markdown, csv, html) if path is not None}
    for path in outputs:  # checked before any work, so a refused file costs nothing
        safe_output_file(path, overwrite=overwrite)
    cols = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
    table = compare(runs, before=before, references=ref or (), columns=cols)
    console = Console()
    if not console.is_terminal:  # piped or logged: the whole table, not squeezed into 80 columns
        console = Console(width=WIDE, soft_wrap=True)
    console.print(to_rich(table, title=title))
    for warning in table.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if markdown is not None:
        _write(markdown, MD_SIGNATURE + "\n" + (f"### {title}\n\n" if title else "") + to_markdown(table))
    if csv is not None:
        _write(csv, to_csv(table))
    if html is not None:
        from obliviate.report import render_comparison

        _write(html, render_comparison(table, title=title))


def _write(path: Path, text: str) -> None:
    from obliviate.data.io import atomic_write_text

    atomic_write_text(path, text)
    print(f"wrote {path}")
