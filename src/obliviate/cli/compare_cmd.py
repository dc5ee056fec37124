"""``obliviate compare``: the ICU paper's Table I for any set of runs (terminal, Markdown, CSV, HTML)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from obliviate.cli.app import app


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
) -> None:
    """Table I of the ICU paper for RUNS: every metric with its arrow, s_z and s_m, best bold, second underlined."""
    from rich.console import Console

    from obliviate.compare import compare, to_csv, to_markdown, to_rich
    from obliviate.data.io import atomic_write_text

    cols = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
    table = compare(runs, before=before, references=ref or (), columns=cols)
    Console().print(to_rich(table, title=title))
    if markdown is not None:
        atomic_write_text(markdown, (f"### {title}\n\n" if title else "") + to_markdown(table))
    if csv is not None:
        atomic_write_text(csv, to_csv(table))
    if html is not None:
        from obliviate.report import render_comparison

        atomic_write_text(html, render_comparison(table, title=title))
    for path in (markdown, csv, html):
        if path is not None:
            print(f"wrote {path}")
