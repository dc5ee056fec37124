"""``obliviate compare``: the ICU paper's Table I for any set of runs.

Every metric is a column with its direction arrow (from the metric registry); every run is a
row; s_z and s_m (ICU eq. 11) sum the normalised metrics; in each column the best value is
bold and the second best underlined.

**References.** Rows marked as references -- the original model ("before unlearning") and, by
the caller's choice, an exact-retrain model -- are shown for context but are neither ranked
(no bold/underline) nor part of the normalisation (no s_z/s_m, and they do not shift the
others' scores). This is the paper's rule for its "NEO (before unlearning)" rows. (The paper
*does* rank and normalise its OPT rows -- a deduplication baseline it treats as a competitor:
in the 2.7B block ICU's Cls Avg 52.1 is underlined as second behind OPT's 53.9.)

**Normalisation set.** s_z / s_m sum over every shown column that has a direction and a value
in every ranked row; perplexities above 1000 count as 1000 and print as ">1000" (the paper's
convention). The scores depend on which runs are compared, so the table always lists them.

Rows come from:

* run folders of ``obliviate unlearn`` / ``obliviate ulmr run`` (the same format): the method's name, the run's own
  after-unlearning measurements (``run/ma``, ``run/el_10``, ``run/retain_ppl``) and every
  evaluation saved inside it (``RUN/eval/<benchmark>/eval.json``); with ``before=True`` also
  the run's original model as a reference row;
* evaluation folders of ``obliviate eval`` (``eval.json``), e.g. of the original or the
  exact-retrain model (``obliviate eval --reference`` marks the row as a reference);
* a folder holding such folders (one level down).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from obliviate.errors import ObliviateError
from obliviate.evaluation.registry import arrow, direction
from obliviate.protocols.base import EVAL_FILE, read_eval
from obliviate.runfolder import MARKER, RunFolder, kind_of

RUN_KEYS = ("ma", "el_", "retain_ppl", "retain_nll")  # summary keys shown as run/<key>
PPL_CAP = 1000.0
SCORES = ("s_z", "s_m")


@dataclass
class Row:
    label: str
    metrics: dict[str, float]
    reference: bool = False
    kind: str = "eval"  # unlearn | eval | before
    path: Path | None = None
    notes: str = ""
    info: dict[str, Any] = field(default_factory=dict)  # summary / eval settings, for the report


# --------------------------------------------------------------------------- loading

def folder_kind(path: Path) -> str | None:
    """"run" or "eval" for what obliviate wrote at ``path`` (an ``eval.json`` counts as its folder),
    from the folder's marker / ``format`` field (``obliviate.runfolder``); None otherwise."""
    if path.is_file() and path.name == EVAL_FILE:
        path = path.parent
    kind = kind_of(path)
    return kind if kind in ("run", "eval") else None


def run_evals(run_dir: Path) -> list[Path]:
    """Evaluation folders saved inside a run folder (``obliviate eval --model RUN`` puts them there)."""
    return RunFolder.open(run_dir, "run").evaluations()


def row_from_eval(path: Path, *, reference: bool | None = None) -> Row:
    doc = read_eval(path)
    folder = path if path.is_dir() else path.parent
    metrics = {k: float(v) for k, v in doc["metrics"].items() if isinstance(v, int | float)}
    return Row(doc.get("label") or str(doc.get("model")), metrics,
               reference=doc.get("reference", False) if reference is None else reference,
               kind="eval", path=folder, info={"benchmark": doc.get("benchmark"), "model": doc.get("model"),
                                               "settings": doc.get("settings", {}),
                                               # keys computed at run time (lm-eval tasks) carry their direction
                                               "directions": doc.get("directions") or {}})


def run_label(run_dir: Path) -> str:
    folder = RunFolder.open(run_dir, "run")
    summary = folder.read_summary()
    return str(summary.get("label") or summary.get("method") or run_dir.name)


def rows_from_run(run_dir: Path, *, before: bool = False) -> list[Row]:
    """The run's row (its own measurements + saved evaluations) and optionally its "before" row."""
    summary = RunFolder.open(run_dir, "run").read_summary()
    metrics: dict[str, float] = {}
    for key, value in (summary.get("after") or {}).items():
        if key.startswith(RUN_KEYS) and isinstance(value, int | float):
            metrics[f"run/{key}"] = float(value)
    # Robustness attacks of the run (audit.attacks): robust/<attack>/held (1/0, up) and recovery.
    metrics.update({k: float(v) for k, v in summary.items() if k.startswith("robust/") and isinstance(v, int | float)})
    benchmarks = []
    for folder in run_evals(run_dir):
        ev = row_from_eval(folder)
        metrics.update(ev.metrics)
        benchmarks.append(ev.info.get("benchmark"))
    note = f"{summary.get('epochs')} epochs, stop: {summary.get('stop_reason')}" if summary.get("epochs") else ""
    rows = [Row(run_label(run_dir), metrics, kind="unlearn", path=run_dir, notes=note,
                info={"summary": summary, "benchmarks": benchmarks})]
    if before and summary.get("before"):
        base = {f"run/{k}": float(v) for k, v in summary["before"].items()
                if k.startswith(RUN_KEYS) and isinstance(v, int | float)}
        rows.insert(0, Row(f"original ({summary.get('model')})", base, reference=True, kind="before", path=run_dir,
                           notes="before unlearning", info={"summary": summary}))
    return rows


def load_rows(paths: Iterable[str | Path], *, before: bool = False,
              references: Iterable[str | Path] = ()) -> list[Row]:
    """Rows for every path (run folders, evaluation folders, folders of either); ``references``
    are loaded as reference rows. Labels are made unique by appending the folder name."""
    rows: list[Row] = []
    seen_before: set[tuple] = set()
    for path, is_ref in [*((Path(p), False) for p in paths), *((Path(p), True) for p in references)]:
        for item in _expand(path):
            if folder_kind(item) == "run":
                new = rows_from_run(item, before=before and not is_ref)
                for r in new:
                    if r.kind == "before":  # one "original" row per (model, forget set)
                        key = (r.info["summary"].get("model"), r.info["summary"].get("forget"))
                        if key in seen_before:
                            continue
                        seen_before.add(key)
                    r.reference = r.reference or is_ref
                    rows.append(r)
            else:
                rows.append(row_from_eval(item, reference=True if is_ref else None))
    if not rows:
        raise ObliviateError("nothing to compare: give run folders or evaluation folders")
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.label] = counts.get(r.label, 0) + 1
    for r in rows:
        if counts[r.label] > 1 and r.path is not None and r.kind != "before":
            r.label = f"{r.label} ({r.path.name})"
    return rows


def _expand(path: Path) -> list[Path]:
    if not path.exists():
        raise ObliviateError(f"{path}: no such run or evaluation folder")
    if folder_kind(path):
        return [path]
    if path.is_dir():
        children = sorted(p for p in path.iterdir() if p.is_dir() and folder_kind(p))
        if children:
            return children
    raise ObliviateError(f"{path}: not a run folder or an evaluation of obliviate (no {MARKER} marker or summary "
                         "with a format field), nor a folder holding them")


# --------------------------------------------------------------------------- the table

@dataclass
class ComparisonTable:
    rows: list[Row]
    columns: list[str]  # metric keys, in display order (s_z / s_m are separate)
    scores: dict[int, dict[str, float]] = field(default_factory=dict)  # ranked row index -> s_z, s_m
    score_columns: list[str] = field(default_factory=list)  # the metrics s_z / s_m sum over
    best: dict[str, set[int]] = field(default_factory=dict)
    second: dict[str, set[int]] = field(default_factory=dict)
    ppl_cap: float | None = PPL_CAP
    declared: dict[str, bool | None] = field(default_factory=dict)  # directions the eval.json files carry
    warnings: list[str] = field(default_factory=list)  # rows that should not be ranked together, and why

    def direction(self, column: str) -> bool | None:
        return True if column in SCORES else direction(column, self.declared)

    @property
    def ranked(self) -> list[int]:
        return [i for i, r in enumerate(self.rows) if not r.reference]

    @property
    def all_columns(self) -> list[str]:
        return [*self.columns, *(SCORES if self.scores else ())]

    def value(self, i: int, column: str) -> float | None:
        if column in SCORES:
            return self.scores.get(i, {}).get(column)
        v = self.rows[i].metrics.get(column)
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else v

    def cell(self, i: int, column: str) -> str:
        return format_value(column, self.value(i, column), self.ppl_cap)

    def mark(self, i: int, column: str) -> str:
        """"best", "second" or ""."""
        if i in self.best.get(column, ()):
            return "best"
        if i in self.second.get(column, ()):
            return "second"
        return ""

    def caption(self) -> list[str]:
        ranked = [self.rows[i].label for i in self.ranked]
        refs = [r.label for r in self.rows if r.reference]
        lines = [*(f"Warning: {w}" for w in self.warnings),
                 "↑ higher is better, ↓ lower is better (directions: obliviate.evaluation.registry); "
                 "best of each column in bold, second underlined."]
        if self.scores:
            lines.append(f"s_z / s_m (ICU eq. 11: z-score / min-max normalisation, summed with the signs of the "
                         f"arrows) over {len(self.score_columns)} columns: {', '.join(self.score_columns)}; "
                         f"computed among the {len(ranked)} ranked rows: {', '.join(ranked)}.")
        elif len(ranked) < 2:
            lines.append("s_z / s_m need at least two ranked rows.")
        if refs:
            lines.append(f"References (shown, not ranked, not normalised): {', '.join(refs)}.")
        if self.ppl_cap and any(c.endswith("ppl") for c in self.columns):
            lines.append(f"Perplexities above {self.ppl_cap:g} print as >{self.ppl_cap:g} and count as "
                         f"{self.ppl_cap:g} (the paper's convention).")
        return lines


def format_value(column: str, value: float | None, ppl_cap: float | None = PPL_CAP) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if ppl_cap and column.endswith("ppl") and value > ppl_cap:
        return f">{ppl_cap:g}"
    if column.endswith("forget_quality") and 0 < abs(value) < 0.01:
        return f"{value:.2e}"
    mag = abs(value)
    if mag >= 1000:
        return f"{value:.0f}"
    if mag >= 100:
        return f"{value:.1f}"
    if mag >= 10:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _shown(column: str, value: float | None, ppl_cap: float | None) -> float | None:
    """The value as printed (what best/second compare): rounded, capped."""
    text = format_value(column, value, ppl_cap)
    if text == "–":
        return None
    return float(text.lstrip(">"))


def build_table(rows: Sequence[Row], *, columns: Sequence[str] | None = None,
                ppl_cap: float | None = PPL_CAP) -> ComparisonTable:
    """Columns default to every metric some row has, directional ones first (in first-seen order)."""
    declared = {k: v for r in rows for k, v in (r.info.get("directions") or {}).items()}
    if columns is None:
        seen: list[str] = []
        for r in rows:
            seen += [k for k in r.metrics if k not in seen]
        columns = [c for c in seen if direction(c, declared) is not None] + \
                  [c for c in seen if direction(c, declared) is None]
    else:
        columns = expand_columns(columns, rows)
    table = ComparisonTable(list(rows), list(columns), ppl_cap=ppl_cap, declared=declared)
    ranked = table.ranked
    table.score_columns = [c for c in table.columns if table.direction(c) is not None
                           and all(table.value(i, c) is not None for i in ranked)]
    table.warnings = _mismatches([rows[i] for i in ranked])
    different_data = any(w.startswith("different forget sets") for w in table.warnings)
    if len(ranked) >= 2 and table.score_columns and not different_data:
        from obliviate.metrics.normalize import normalized_scores

        values = {str(i): {c: _capped(c, table.value(i, c), ppl_cap) for c in table.score_columns} for i in ranked}
        scores = normalized_scores(values, metrics=table.score_columns,
                                   directions={c: table.direction(c) for c in table.score_columns})
        table.scores = {int(k): v for k, v in scores.items()}
    for column in table.all_columns:
        up = table.direction(column)
        if up is None:
            continue
        shown = {i: _shown(column, table.value(i, column), ppl_cap) for i in ranked}
        distinct = sorted({v for v in shown.values() if v is not None}, reverse=up)
        if len(distinct) < 2:
            continue  # nothing to tell apart
        table.best[column] = {i for i, v in shown.items() if v == distinct[0]}
        table.second[column] = {i for i, v in shown.items() if v == distinct[1]}
    return table


def _mismatches(ranked: Sequence[Row]) -> list[str]:
    """Runs ranked together should have unlearned the same data from the same model: different
    forget sets make s_z / s_m meaningless (they are not computed); different models are flagged."""
    runs = [r for r in ranked if r.kind == "unlearn"]
    out = []
    for key, what, consequence in (("forget", "different forget sets", "s_z / s_m are not computed"),
                                   ("model", "different models", "rank them with care")):
        seen: dict[str, list[str]] = {}
        for r in runs:
            summary = r.info.get("summary") or {}
            value = str(summary.get(key)) + (f" ({summary.get('n_forget')} records)" if key == "forget" else "")
            seen.setdefault(value, []).append(r.label)
        if len(seen) > 1:
            listed = "; ".join(f"{', '.join(labels)}: {value}" for value, labels in seen.items())
            out.append(f"{what} among the ranked runs ({listed}); {consequence}.")
    return out


def _capped(column: str, value: float | None, cap: float | None) -> float:
    assert value is not None
    return min(value, cap) if cap and column.endswith("ppl") else value


def expand_columns(patterns: Sequence[str], rows: Sequence[Row]) -> list[str]:
    """``--columns`` entries are keys or shell-style patterns (``forget/*``), in the order given."""
    import fnmatch

    present: list[str] = []
    for r in rows:
        present += [k for k in r.metrics if k not in present]
    out: list[str] = []
    for pat in patterns:
        hits = [k for k in present if fnmatch.fnmatchcase(k, pat)] if any(ch in pat for ch in "*?[") else [pat]
        out += [h for h in hits if h not in out]
    return out


# --------------------------------------------------------------------------- output

def header(column: str, declared: Mapping[str, bool | None] | None = None) -> str:
    a = arrow(column, declared) if column not in SCORES else "↑"
    return f"{column} {a}".strip()


def to_markdown(table: ComparisonTable) -> str:
    cols = table.all_columns
    lines = ["| run | " + " | ".join(header(c, table.declared) for c in cols) + " |",
             "|---|" + "|".join("---:" for _ in cols) + "|"]
    for i, r in enumerate(table.rows):
        cells = []
        for c in cols:
            text, mark = table.cell(i, c), table.mark(i, c)
            text = text.replace(">", "&gt;")
            cells.append(f"**{text}**" if mark == "best" else f"<u>{text}</u>" if mark == "second" else text)
        label = f"*{r.label}* (reference)" if r.reference else r.label
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + "\n".join(f"{line}  " for line in table.caption()) + "\n"


def to_csv(table: ComparisonTable) -> str:
    """Plain values at full precision; ``reference`` = 1 for reference rows."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    cols = table.all_columns
    writer.writerow(["run", "reference", "kind", "path", *cols])
    for i, r in enumerate(table.rows):
        values = ["" if (v := table.value(i, c)) is None else repr(float(v)) for c in cols]
        writer.writerow([r.label, int(r.reference), r.kind, str(r.path or ""), *values])
    return buf.getvalue()


def to_rich(table: ComparisonTable, title: str | None = None):
    from rich.table import Table

    out = Table(title=title, caption="\n".join(table.caption()), caption_justify="left")
    out.add_column("run", no_wrap=True)
    for c in table.all_columns:
        split, _, metric = c.rpartition("/")
        out.add_column(f"{split}\n{metric} {arrow(c, table.declared) if c not in SCORES else '↑'}" if split
                       else header(c, table.declared),
                       justify="right")
    for i, r in enumerate(table.rows):
        cells = []
        for c in table.all_columns:
            mark = table.mark(i, c)
            style = "bold" if mark == "best" else "underline" if mark == "second" else ""
            text = table.cell(i, c)
            cells.append(f"[{style}]{text}[/{style}]" if style else text)
        label = f"[dim italic]{r.label} (ref)[/dim italic]" if r.reference else r.label
        out.add_row(label, *cells)
    return out


def compare(paths: Iterable[str | Path], *, before: bool = False, references: Iterable[str | Path] = (),
            columns: Sequence[str] | None = None, ppl_cap: float | None = PPL_CAP) -> ComparisonTable:
    """Load the runs and build the table (Python entry point of ``obliviate compare``)."""
    return build_table(load_rows(paths, before=before, references=references), columns=columns, ppl_cap=ppl_cap)


__all__ = ["ComparisonTable", "Row", "build_table", "compare", "format_value", "load_rows", "to_csv",
           "to_markdown", "to_rich"]
