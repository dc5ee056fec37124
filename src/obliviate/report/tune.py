"""The pages and tables of ``obliviate tune`` (``recipes.tune``): trials as CSV / Markdown and a
self-contained report.html with the Pareto plot of forgetting vs utility."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

COLUMNS = ("number", "state", "params", "auc", "ks_p", "verdict", "gap", "utility_loss", "retain_nll", "utility_nll",
           "epochs", "stop_reason", "note")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        return " ".join(f"{k.split('.')[-1]}={_cell(v)}" for k, v in value.items())
    return "" if value is None else str(value)


def trials_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """One line per trial, full precision; params as JSON."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([json.dumps(r[c], sort_keys=True) if c == "params" else r.get(c) for c in COLUMNS])
    return buf.getvalue()


def trials_markdown(rows: Sequence[Mapping[str, Any]], chosen: int | None) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        cells = [_cell(r.get(c)) for c in COLUMNS]
        if r["number"] == chosen:
            cells[0] = f"**{cells[0]}** (chosen)"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_tune_report(run_dir: Path, rows: Sequence[Mapping[str, Any]], best: Mapping[str, Any], inputs: Any,
                      cfg: Any, band: float | None = None) -> Path:
    """``report.html`` of a search: overview, Pareto plot (``band``: the target's AUC half-width), trials."""
    from obliviate.data.io import atomic_write_text
    from obliviate.report import REPORT_FILE, _render
    from obliviate.report.plots import pareto_plot

    reached = sum(1 for r in rows if r.get("verdict") == "indistinguishable")
    meta = [("method", cfg.method), ("model", inputs.model), ("forget / held-out", f"{inputs.forget} / {inputs.heldout}"),
            ("retain / utility", f"{inputs.retain} / {inputs.utility}"),
            ("budget", f"{cfg.trials} trials; lr in [{cfg.lr_min:g}, {cfg.lr_max:g}] (log), epochs in "
                       f"[{cfg.epochs_min}, {cfg.epochs_max}]" + (f", weights x/÷ {cfg.weight_range:g}" if cfg.weights
                                                                  else "")),
            ("reached the target", f"{reached} of {len(rows)} trials"),
            ("chosen", f"trial {best['number']}: {_cell(best['params'])} -> AUC {best['auc']:.3f}, KS p "
                       f"{best['ks_p']:.3g} ({best['verdict']}), utility loss {best['utility_loss']:.4f}")]
    fig = pareto_plot(rows, best["number"], band)
    table = {"headers": list(COLUMNS), "rows": [[_cell(r.get(c)) for c in COLUMNS] for r in rows], "more": None}
    config = run_dir / "best_config.yaml"
    page = _render(title=f"obliviate tune: {cfg.method} on {inputs.model}", subtitle=str(run_dir.resolve()), meta=meta,
                   figures=[fig] if fig else None, generations=False, per_sample=table, per_sample_title="Trials",
                   config_text=config.read_text() if config.is_file() else None)
    out = run_dir / REPORT_FILE
    atomic_write_text(out, page)
    return out
