"""The HTML report: one self-contained file per run, or per comparison of runs.

    from obliviate.report import write_run_report, write_comparison_report
    write_run_report("runs/icu")                                   # -> runs/icu/report.html
    write_comparison_report(["runs/icu", "runs/kumpr"], "cmp.html", before=True)

A run report shows: the run's settings, its before/after numbers, the comparison table
(``obliviate.compare``: the original model, the run, and every evaluation saved in the run
folder), metric curves per epoch (MA, EL_n, retain perplexity, loss terms, refinement scores),
how many samples were forgotten per epoch, before/after generations next to the reference text,
and the per-sample numbers. A comparison report shows the table for all runs, the curves of all
runs overlaid, and each run's generation for the same prompts side by side.

Plots are PNGs embedded as data URIs and the CSS is inline: no JavaScript, no external file, no
network; any browser opens the file from disk. ``obliviate unlearn`` writes ``report.html`` at
the end of every run; ``obliviate report`` re-renders it.
"""

from __future__ import annotations

import difflib
import html
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from obliviate.lineage import chain_curve
from obliviate.runfolder import RunFolder

REPORT_FILE = "report.html"
MAX_SAMPLE_ROWS = 200  # per-sample table rows shown in a run report
MAX_GENERATIONS = 8


# --------------------------------------------------------------------------- public API

def write_run_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Render ``run_dir`` (a run folder of ``obliviate unlearn`` / ULMR) to ``out``
    (default ``run_dir/report.html``) and return the path."""
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / REPORT_FILE
    _write(out, render_run_report(run_dir))
    return out


def write_comparison_report(paths: Iterable[str | Path], out: str | Path, *, title: str | None = None,
                            before: bool = False, references: Iterable[str | Path] = (),
                            columns: Sequence[str] | None = None) -> Path:
    """Render a comparison of run / evaluation folders (see ``obliviate.compare``) to ``out``."""
    from obliviate.compare import build_table, load_rows

    rows = load_rows(paths, before=before, references=references)
    table = build_table(rows, columns=columns)
    out = Path(out)
    _write(out, render_comparison(table, title=title))
    return out


def _write(out: Path, text: str) -> None:
    from obliviate.data.io import atomic_write_text

    atomic_write_text(out, text)


# --------------------------------------------------------------------------- reading a run folder

def run_history(run_dir: Path) -> list[dict[str, Any]]:
    return RunFolder.open(run_dir).read_jsonl(RunFolder.METRICS)


def run_trace(run_dir: Path) -> dict[str, Any]:
    folder = RunFolder.open(run_dir)  # an evaluation row's folder has none: {}
    return folder.read_json(RunFolder.TRACE) if folder.has(RunFolder.TRACE) else {}


# --------------------------------------------------------------------------- formatting helpers

def fmt(value: Any) -> str:
    from obliviate.compare import format_value

    if isinstance(value, bool) or value is None:
        return "–" if value is None else str(value)
    if isinstance(value, int | float):
        return format_value("", float(value), None)
    return str(value)


def highlight(text: str, reference: str, min_words: int = 2) -> str:
    """HTML of ``text`` with <mark> around runs of >= ``min_words`` words that also occur, in
    order, in ``reference`` (difflib's matching blocks over word lists)."""
    words, ref = text.split(), reference.split()
    if not words:
        return '<span class="empty">(empty)</span>'
    norm = [re.sub(r"\W+", "", w.lower()) for w in words]
    ref_norm = [re.sub(r"\W+", "", w.lower()) for w in ref]
    marked = [False] * len(words)
    for block in difflib.SequenceMatcher(None, norm, ref_norm, autojunk=False).get_matching_blocks():
        if block.size >= min_words:
            for k in range(block.a, block.a + block.size):
                marked[k] = True
    out, k = [], 0
    while k < len(words):
        j = k
        while j < len(words) and marked[j] == marked[k]:
            j += 1
        chunk = html.escape(" ".join(words[k:j]))
        out.append(f"<mark>{chunk}</mark>" if marked[k] else chunk)
        k = j
    return " ".join(out)


def _clip(text: str, limit: int = 600) -> str:
    return text if len(text) <= limit else "…" + text[-limit:]


def _table_context(table) -> dict[str, Any]:
    from obliviate.compare import SCORES, header
    from obliviate.evaluation.registry import describe

    headers = [{"text": header(c), "description": describe(c) if c not in SCORES else
                "ICU eq. 11 normalised score"} for c in table.all_columns]
    rows = []
    for i, r in enumerate(table.rows):
        rows.append({"label": r.label, "reference": r.reference,
                     "cells": [{"text": table.cell(i, c), "mark": table.mark(i, c)} for c in table.all_columns]})
    return {"headers": headers, "rows": rows, "caption": table.caption()}


def _render(**context: Any) -> str:
    import jinja2

    import obliviate

    env = jinja2.Environment(loader=jinja2.PackageLoader("obliviate", "report"),
                             autoescape=jinja2.select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
    context.setdefault("version", obliviate.__version__)
    context.setdefault("created", time.strftime("%Y-%m-%d %H:%M"))
    for key in ("meta", "before_after", "verdict", "figures", "generations", "per_sample", "runs", "config_text",
                "subtitle", "table", "table_title", "per_sample_title"):
        context.setdefault(key, None)
    return env.get_template("template.html").render(**context)


# --------------------------------------------------------------------------- run report

def render_run_report(run_dir: str | Path) -> str:
    from markupsafe import Markup

    from obliviate.compare import build_table, rows_from_run
    from obliviate.evaluation.registry import arrow
    from obliviate.report import plots

    folder = RunFolder.open(run_dir, "run")
    run_dir = folder.path
    summary = folder.read_summary()
    history = run_history(run_dir)
    trace = run_trace(run_dir)
    method = summary.get("method") or "run"
    label = summary.get("label") or method
    rows = rows_from_run(run_dir, before=True)
    table = build_table(rows)

    meta = [("method", method), ("model", summary.get("model")),
            ("forget set", f"{summary.get('forget')} ({summary.get('n_forget')} samples)" if summary else None),
            ("epochs / optimizer steps", f"{summary.get('epochs')} / {summary.get('optimizer_steps')}"
             if "epochs" in summary else None),
            ("stopped because", summary.get("stop_reason")),
            ("thresholds", _thresholds_text(summary.get("thresholds"), summary.get("thresholds_source"))),
            ("refinement", _refinement_text(summary.get("refinement"))),
            ("forget vs held-out", _target_text(summary.get("target"))),
            ("ULMR α", summary.get("alpha")),
            ("time", f"{summary.get('seconds')} s" if summary.get("seconds") is not None else None)]
    meta = [(k, v) for k, v in meta if v not in (None, "", "None / None")]

    before_after = []
    for key, b in (summary.get("before") or {}).items():
        a = (summary.get("after") or {}).get(key)
        if not isinstance(b, int | float):
            continue
        up = {"ma": False, "retain_ppl": False, "retain_nll": False}.get(key, False if key.startswith("el_") else None)
        change, css = "", ""
        if isinstance(a, int | float):
            d = a - b
            change = f"{d:+.4g}"
            if up is not None and d != 0:
                css = "good" if (d > 0) == up else "bad"
        before_after.append({"name": key, "arrow": arrow(f"run/{key}"), "before": fmt(b), "after": fmt(a),
                             "change": change, "css": css})

    runs = {label: history} if history else {}
    thresholds = {label: summary.get("thresholds") or {}}
    figures = [f for f in (
        plots.memorization_curves(runs, thresholds) if runs else None,
        plots.forgotten_curves(runs, {label: trace.get("below_thresholds") or {}},
                               {label: summary.get("n_forget") or trace.get("n_forget") or 0}) if runs else None,
        plots.retain_curve(runs) if runs else None,
        plots.loss_curves(history) if history else None,
        plots.refinement_curves(history) if history else None,
        plots.target_curve(history, summary.get("target")) if history else None,
        plots.stream_curves(chain_curve(run_dir)) if folder.has(RunFolder.LINEAGE) else None,
    ) if f is not None]

    attacks = folder.read_json(RunFolder.ATTACKS) if folder.has(RunFolder.ATTACKS) else []
    chart = plots.robustness_chart(attacks) if attacks else None
    # A redacted run keeps no text to show (its files hold only lengths and hashes of it).
    generations = None if folder.redact else _run_generations(run_dir, trace, Markup)
    model = model_title(summary.get("model"))
    return _render(title=f"obliviate report: {label} on {model}",
                   subtitle=str(run_dir.resolve()), meta=meta, before_after=before_after,
                   verdict=_verdict(summary), robustness=_robustness(attacks), robustness_chart=chart, table=_table_context(table) if table.columns else None,
                   table_title="Comparison table (original model vs this run, with every saved evaluation)",
                   figures=figures, generations=generations, per_sample=_per_sample(run_dir),
                   config_text=(run_dir / "config.yaml").read_text() if (run_dir / "config.yaml").is_file() else None)


def _robustness(attacks: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per attack and measure: original / unlearned / attacked, the calibrated level, recovery."""
    rows = []
    for a in attacks:
        for n, (key, value) in enumerate(a.get("forget", {}).items()):
            rows.append({"attack": a["attack"] if n == 0 else "", "verdict": a["verdict"] if n == 0 else "",
                         "css": ("good" if a["verdict"] == "held" else "bad") if n == 0 else "", "measure": key,
                         "original": fmt((a.get("original") or {}).get(key)),
                         "unlearned": fmt((a.get("unlearned") or {}).get(key)), "attacked": fmt(value),
                         "level": fmt(a.get("heldout", {}).get(key)),
                         "recovery": fmt((a.get("recovery") or {}).get(key))})
    return rows


def model_title(spec: Any) -> str:
    """A run's model as a title names it: "<model X given in Python>" -> "X"."""
    text = str(spec)
    match = re.fullmatch(r"<model (.+) given in Python>", text)
    return match.group(1) if match else text


def _thresholds_text(th: Mapping[str, Any] | None, source: str | None) -> str | None:
    if not th:
        return None
    parts = [f"{k} < {v:.4g}" for k, v in th.items() if isinstance(v, int | float)]
    return (" and ".join(parts) or "none") + (f" ({source})" if source else "")


def _target_text(target: Mapping[str, Any] | None) -> str | None:
    if not target or "auc" not in target:
        return None
    return (f"{target['verdict']}: AUC {target['auc']:.3f} (band 0.5 ± {target['auc_band']}), KS p "
            f"{target['ks_p']:.3g} (level {target['ks_alpha']}) on {target['statistic']}, "
            f"{target['n_forget']} forget vs {target['n_heldout']} held-out samples")


def _refinement_text(ref: Mapping[str, Any] | None) -> str | None:
    if not ref or not ref.get("enabled"):
        return "off" if ref else None
    return f"rule {ref.get('rule')}: {ref.get('forgotten')} samples judged forgotten, {ref.get('active')} still active"


def _verdict(summary: Mapping[str, Any]) -> str | None:
    th, after = summary.get("thresholds") or {}, summary.get("after") or {}
    checks = [(k, after.get(k), t) for k, t in th.items() if isinstance(t, int | float)]
    if not checks or any(a is None for _, a, _ in checks):
        return None
    ok = all(a < t for _, a, t in checks)
    detail = ", ".join(f"{k} {a:.4g} {'<' if a < t else '>='} {t:.4g}" for k, a, t in checks)
    return f"{'Forgotten' if ok else 'Not forgotten'} by the thresholds: {detail}."


def _run_generations(run_dir: Path, trace: Mapping[str, Any], safe) -> dict[str, Any] | None:
    """Before/after greedy continuations from trace.json (epoch 0 and the last epoch)."""
    gens = trace.get("generations") or {}
    samples = trace.get("samples") or []
    if not gens or not samples:
        return _generations_from_per_sample(run_dir, safe)
    epochs = sorted(int(e) for e in gens)
    first, last = epochs[0], epochs[-1]
    columns = [f"before (epoch {first})"] + ([f"after (epoch {last})"] if last != first else [])
    out = []
    for k, s in enumerate(samples[:MAX_GENERATIONS]):
        outputs = [safe(highlight(gens[str(first)][k], s["reference"]))]
        if last != first:
            outputs.append(safe(highlight(gens[str(last)][k], s["reference"])))
        out.append({"id": s["id"], "prompt": _clip(s["prompt"]), "reference": s["reference"], "outputs": outputs})
    return {"columns": columns, "samples": out,
            "legend": "Greedy continuations of the first forget prompts, before and after unlearning."}


def _generations_from_per_sample(run_dir: Path, safe) -> dict[str, Any] | None:
    """Older runs: the refinement step's beam continuations kept in per_sample.jsonl."""
    rows = [r for r in RunFolder.open(run_dir, "run").read_jsonl(RunFolder.PER_SAMPLE)
            if "generation_before" in r][:MAX_GENERATIONS]
    if not rows:
        return None
    return {"columns": ["before", "after"], "legend": "Beam continuations recorded by the refinement step "
            "(the prompts and references are in the forget set).",
            "samples": [{"id": r["id"], "prompt": "", "reference": "",
                         "outputs": [safe(html.escape(r.get("generation_before") or "")),
                                     safe(html.escape(r.get("generation_after") or ""))]} for r in rows]}


def _per_sample(run_dir: Path) -> dict[str, Any] | None:
    rows = RunFolder.open(run_dir, "run").read_jsonl(RunFolder.PER_SAMPLE)
    if not rows:
        return None
    keys = [k for k in rows[0] if k.endswith("_before") and not k.startswith("generation")]
    headers = ["id"]
    for k in keys:
        base = k[: -len("_before")]
        headers += [f"{base} before", f"{base} after"]
    headers += ["still active", "forgotten at epoch"]
    table = []
    for r in rows[:MAX_SAMPLE_ROWS]:
        cells = [r.get("id")]
        for k in keys:
            base = k[: -len("_before")]
            cells += [fmt(r.get(k)), fmt(r.get(f"{base}_after"))]
        cells += [fmt(r.get("active")), fmt(r.get("forgotten_at"))]
        table.append(cells)
    more = f"First {MAX_SAMPLE_ROWS} of {len(rows)} samples; all of them are in per_sample.jsonl." \
        if len(rows) > MAX_SAMPLE_ROWS else None
    return {"headers": headers, "rows": table, "more": more}


# --------------------------------------------------------------------------- comparison report

def render_comparison(table, *, title: str | None = None) -> str:
    from markupsafe import Markup

    from obliviate.report import plots

    histories: dict[str, list[dict[str, Any]]] = {}
    thresholds: dict[str, Any] = {}
    below: dict[str, Any] = {}
    totals: dict[str, int] = {}
    for r in table.rows:
        if r.kind == "unlearn" and r.path is not None:
            h = run_history(r.path)
            if len(h) > 1:
                histories[r.label] = h
                summary = r.info.get("summary") or {}
                thresholds[r.label] = summary.get("thresholds") or {}
                below[r.label] = run_trace(r.path).get("below_thresholds") or {}
                totals[r.label] = summary.get("n_forget") or 0
    figures = [f for f in (plots.memorization_curves(histories, thresholds) if histories else None,
                           plots.forgotten_curves(histories, below, totals) if histories else None,
                           plots.retain_curve(histories) if histories else None) if f is not None]
    if table.scores:
        for key in ("s_z",):
            values = {table.rows[i].label: table.scores[i][key] for i in table.ranked}
            fig = plots.bar_chart(key, values, higher_is_better=True)
            if fig is not None:
                fig.caption = f"ICU eq. 11 score over {len(table.score_columns)} columns (see the table)."
                figures.append(fig)
    runs = [{"label": r.label + (" (reference)" if r.reference else ""), "kind": r.kind, "path": str(r.path or ""),
             "notes": r.notes} for r in table.rows]
    return _render(title=title or f"obliviate comparison of {len(table.rows)} runs", subtitle="",
                   table=_table_context(table), table_title="Comparison table", figures=figures,
                   generations=_comparison_generations(table, Markup), runs=runs)


def _final_generations(row) -> dict[str, tuple[str, str, str]]:
    """id -> (prompt, reference, generation) of a row's model on the forget set: its saved
    evaluations' forget rows first, else the run's trace (last epoch; epoch 0 for "before" rows)."""
    from obliviate.compare import run_evals
    from obliviate.protocols.base import read_per_sample

    if row.path is None:
        return {}
    folders = [row.path] if row.kind == "eval" else (run_evals(row.path) if row.kind != "before" else [])
    out: dict[str, tuple[str, str, str]] = {}
    for folder in folders:
        for r in read_per_sample(folder):
            if r.get("split") == "forget" and r.get("generation") is not None and "id" in r:
                out.setdefault(str(r["id"]), (r.get("prompt", ""), r.get("reference", ""), r["generation"]))
    if out:
        return out
    trace = run_trace(row.path)
    gens, samples = trace.get("generations") or {}, trace.get("samples") or []
    if gens and samples:
        epoch = "0" if row.kind == "before" else str(max(int(e) for e in gens))
        return {s["id"]: (s["prompt"], s["reference"], gens[epoch][k]) for k, s in enumerate(samples)}
    return {}


def _comparison_generations(table, safe) -> dict[str, Any] | None:
    per_row = [(r.label, _final_generations(r)) for r in table.rows
               if r.path is not None and not RunFolder.open(r.path).redact]
    per_row = [(label, g) for label, g in per_row if g]
    if not per_row:
        return None
    counts: dict[str, int] = {}
    for _, g in per_row:
        for sid in g:
            counts[sid] = counts.get(sid, 0) + 1
    order = list(dict.fromkeys(sid for _, g in per_row for sid in g))
    chosen = sorted(order, key=lambda s: (-counts[s], order.index(s)))[:MAX_GENERATIONS]
    samples = []
    for sid in chosen:
        prompt, reference = next((g[sid][0], g[sid][1]) for _, g in per_row if sid in g)
        outputs = [safe(highlight(g[sid][2], reference)) if sid in g else safe('<span class="empty">–</span>')
                   for _, g in per_row]
        samples.append({"id": sid, "prompt": _clip(prompt), "reference": reference, "outputs": outputs})
    return {"columns": [label for label, _ in per_row], "samples": samples,
            "legend": "Each model's greedy answer to the same forget prompts."}



__all__ = ["REPORT_FILE", "highlight", "render_comparison", "render_run_report", "write_comparison_report",
           "write_run_report"]
