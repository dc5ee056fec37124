"""The report's figures: matplotlib (Agg, no display) rendered to PNG and embedded as data URIs,
so a report is one self-contained HTML file that opens anywhere without a server or network.

Every function takes plain numbers (one run's ``metrics.jsonl`` history, or several runs'
histories by label) and returns a ``Figure`` record (title, caption, data URI) or None when there
is nothing to draw.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Keys of a history row that are evaluation results or bookkeeping, not loss terms.
NOT_LOSS = ("epoch", "ma", "retain_nll", "retain_ppl", "refine_bertscore_f1", "refine_bleu", "active",
            "time_s", "steps", "skipped_batches", "lr", "newly_forgotten", "came_back", "stop_reason",
            "target_auc", "target_ks_p", "target_ks_stat", "target_heldout_like")
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
          "#bcbd22"]


@dataclass
class Figure:
    key: str
    title: str
    caption: str
    uri: str  # data:image/png;base64,...
    wide: bool = False  # spans the report's full width


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _encode(fig) -> str:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _style(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.grid(True, alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs


def _new(width: float = 6.4, height: float = 3.4):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(width, height))
    _style(ax)
    return fig, ax


def el_key(row: Mapping[str, Any]) -> str | None:
    return next((k for k in row if k.startswith("el_") and k[3:].isdigit()), None)


def _series(history: Sequence[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for row in history:
        v = row.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            xs.append(int(row["epoch"]))
            ys.append(float(v))
    return xs, ys


def memorization_curves(runs: Mapping[str, Sequence[Mapping[str, Any]]],
                        thresholds: Mapping[str, Mapping[str, float | None]] | None = None) -> Figure | None:
    """MA and EL_n per epoch (epoch 0 = before), one colour per run; dashed lines = thresholds."""
    if not any(_series(h, "ma")[0] for h in runs.values()):
        return None
    plt = _pyplot()
    el_name = next((el_key(h[0]) for h in runs.values() if h and el_key(h[0])), None)
    if el_name is not None and not any(_series(h, el_name)[0] for h in runs.values()):
        el_name = None  # eval.el=false: no empty EL panel
    panels = [("ma", "MA"), *([(el_name, el_name.replace("el_", "EL"))] if el_name else [])]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.4), squeeze=False)
    axes = list(axes[0])
    for ax, (key, title) in zip(axes, panels):
        _style(ax)
        for n, (label, history) in enumerate(runs.items()):
            xs, ys = _series(history, key)
            if xs:
                ax.plot(xs, ys, marker="o", ms=3, color=COLORS[n % len(COLORS)], label=label)
        shown = set()
        for th in (thresholds or {}).values():
            t = (th or {}).get(key)
            if t is not None and t not in shown:
                shown.add(t)
                ax.axhline(t, ls="--", lw=1, color="#555555")
                ax.annotate(f"threshold {t:.3g}", (0, t), textcoords="offset points", xytext=(2, 3), fontsize=7,
                            color="#555555")
        ax.set_title(f"forget set: mean {title} per epoch (lower = more forgotten)", fontsize=9)
        ax.set_xlabel("epoch (0 = before unlearning)")
        ax.set_ylim(bottom=0)
    if len(runs) > 1:
        axes[-1].legend(fontsize=7, loc="upper right")
    what = "MA and EL_n" if el_name else "MA (EL_n was not measured: eval.el=false)"
    return Figure("memorization", "Memorization per epoch", f"Mean {what} of the forget set after every epoch; "
                  "dashed: the stopping thresholds.", _encode(fig), wide=True)


def retain_curve(runs: Mapping[str, Sequence[Mapping[str, Any]]]) -> Figure | None:
    if not any(_series(h, "retain_ppl")[0] for h in runs.values()):
        return None
    fig, ax = _new()
    lo, hi = math.inf, 0.0
    for n, (label, history) in enumerate(runs.items()):
        xs, ys = _series(history, "retain_ppl")
        if xs:
            ax.plot(xs, ys, marker="o", ms=3, color=COLORS[n % len(COLORS)], label=label)
            lo, hi = min(lo, *ys), max(hi, *ys)
    if hi / max(lo, 1e-9) > 20:
        ax.set_yscale("log")
    ax.set_title("retain set: perplexity per epoch (lower = kept)", fontsize=9)
    ax.set_xlabel("epoch (0 = before unlearning)")
    if len(runs) > 1:
        ax.legend(fontsize=7)
    return Figure("retain", "Retain perplexity per epoch", "Perplexity of the retain answers/texts, measured "
                  "after every epoch (the run's own retain sample).", _encode(fig))


def loss_curves(history: Sequence[Mapping[str, Any]]) -> Figure | None:
    """Every loss term the method logged, per epoch (means over the epoch's micro-batches)."""
    keys: list[str] = []
    for row in history[1:]:
        keys += [k for k, v in row.items() if k not in keys and k not in NOT_LOSS and not k.startswith("el_")
                 and isinstance(v, int | float) and not isinstance(v, bool)]
    if not keys:
        return None
    fig, ax = _new()
    for n, key in enumerate(keys):
        xs, ys = _series(history, key)
        ax.plot(xs, ys, marker="o", ms=3, color=COLORS[n % len(COLORS)], label=key)
    ax.axhline(0, lw=0.8, color="#999999")
    ax.set_title("loss terms per epoch (mean over the epoch's batches)", fontsize=9)
    ax.set_xlabel("epoch")
    ax.legend(fontsize=7)
    return Figure("loss", "Loss terms", "The minimised loss and every term the method logs (a negative NLL term "
                  "is gradient ascent on the forget set).", _encode(fig))


def forgotten_curves(runs: Mapping[str, Sequence[Mapping[str, Any]]],
                     below: Mapping[str, Mapping[str, int | None]],
                     totals: Mapping[str, int]) -> Figure | None:
    """Per epoch: samples individually below both thresholds (solid) and samples dropped by
    refinement (dashed: n - active)."""
    fig, ax = _new()
    drawn = False
    for n, (label, history) in enumerate(runs.items()):
        color = COLORS[n % len(COLORS)]
        dropped_color = color if len(runs) > 1 else COLORS[1]
        counts = {int(e): v for e, v in (below.get(label) or {}).items() if v is not None}
        if counts:
            xs = sorted(counts)
            ax.plot(xs, [counts[x] for x in xs], marker="o", ms=3, color=color,
                    label=f"{label}: below both thresholds" if len(runs) > 1 else "below both thresholds")
            drawn = True
        total = totals.get(label)
        xs, active = _series(history, "active")
        if total and xs and any(a != total for a in active):
            ax.plot(xs, [total - a for a in active], ls="--", marker="s", ms=3, color=dropped_color,
                    label=f"{label}: dropped by refinement" if len(runs) > 1 else "dropped by refinement")
            drawn = True
    if not drawn:
        import matplotlib.pyplot as plt

        plt.close(fig)
        return None
    ax.set_ylim(bottom=0)
    ax.set_title("forget samples counted as forgotten, per epoch", fontsize=9)
    ax.set_xlabel("epoch (0 = before unlearning)")
    ax.set_ylabel("samples")
    ax.legend(fontsize=7)
    return Figure("forgotten", "Samples forgotten per epoch", "Solid: samples whose own MA and EL_n are both below "
                  "the thresholds. Dashed: samples the refinement step judged forgotten and stopped training on.",
                  _encode(fig))


def refinement_curves(history: Sequence[Mapping[str, Any]]) -> Figure | None:
    if not _series(history, "refine_bertscore_f1")[0]:
        return None
    fig, ax = _new()
    for n, (key, label) in enumerate((("refine_bertscore_f1", "BERTScore F1"), ("refine_bleu", "BLEU (ICU)"))):
        xs, ys = _series(history, key)
        if xs:
            ax.plot(xs, ys, marker="o", ms=3, color=COLORS[n], label=label)
    ax.set_ylim(bottom=0)
    ax.set_title("refinement: similarity of beam continuations to the targets", fontsize=9)
    ax.set_xlabel("epoch")
    ax.legend(fontsize=7)
    return Figure("refinement", "Refinement scores", "Mean BERTScore F1 and BLEU of the forget set's 2-beam "
                  "continuations against their targets (ICU's iterative refinement).", _encode(fig))


def bar_chart(key: str, values: Mapping[str, float], *, higher_is_better: bool | None) -> Figure | None:
    """One metric across runs (comparison reports)."""
    items = [(k, v) for k, v in values.items() if v is not None and math.isfinite(v)]
    if len(items) < 2:
        return None
    from matplotlib.ticker import AutoLocator

    fig, ax = _new(6.4, 0.35 * len(items) + 1.0)
    ax.xaxis.set_major_locator(AutoLocator())  # values, not epochs
    labels, vals = zip(*items)
    ax.barh(range(len(vals)), vals, color=[COLORS[i % len(COLORS)] for i in range(len(vals))])
    ax.set_yticks(range(len(vals)), labels, fontsize=7)
    ax.invert_yaxis()
    arrow = {True: " (higher is better)", False: " (lower is better)", None: ""}[higher_is_better]
    ax.set_title(f"{key}{arrow}", fontsize=9)
    return Figure(f"bar-{key}", key, "", _encode(fig))


def target_curve(history: Sequence[Mapping[str, Any]], target: Mapping[str, Any] | None) -> Figure | None:
    """Forget vs held-out AUC per epoch, with the indistinguishability band (``engine.target``)."""
    xs, ys = _series(history, "target_auc")
    if not xs:
        return None
    band = float((target or {}).get("auc_band", 0.1))
    over = float((target or {}).get("overshoot", band))
    fig, ax = _new()
    ax.axhspan(0.5 - band, 0.5 + band, color="#2ca02c", alpha=0.15, label="indistinguishable band")
    ax.axhline(0.5 - over, lw=0.8, ls="--", color="#d62728", label="over-unlearning below")
    ax.plot(xs, ys, marker="o", ms=3, color=COLORS[0], label="AUC forget vs held-out")
    px, py = _series(history, "target_ks_p")
    if px:
        ax.plot(px, py, marker="s", ms=3, color=COLORS[3], label="KS p-value")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("forget set vs held-out data under the current model", fontsize=9)
    ax.set_xlabel("epoch")
    ax.legend(fontsize=7)
    return Figure("target", "Forget vs never-seen data", "MIA AUC of telling forget from held-out samples (1 = the "
                  "forget set is still recognised, 0.5 = indistinguishable, below the band = over-unlearned) and "
                  "the KS test's p-value, on the statistic named in the overview.", _encode(fig))


def stream_curves(curve: Sequence[Mapping[str, Any]]) -> Figure | None:
    """After each request of a chain (``lineage.chain_curve``): every request's forget-set MA, and
    the retain / utility ROUGE-L; the original model at x = 0."""
    if len(curve) < 2:
        return None
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.6, 3.4))
    last = curve[-1]
    xs = [0, *(int(c["request"]) for c in curve)]
    for n, key in enumerate(k for k in last["now"] if k.startswith("request-")):
        j = int(key.split("-")[1])
        points = [(0, last["original"].get(key, {}).get("ma"))]
        points += [(int(c["request"]), c["now"].get(key, {}).get("ma")) for c in curve if int(c["request"]) >= j]
        px, py = zip(*[(x, y) for x, y in points if y is not None])
        left.plot(px, py, marker="o", ms=3, color=COLORS[n % len(COLORS)], label=f"request {j}'s set")
    kept = [k for k in last["now"] if not k.startswith("request-")]
    for n, key in enumerate(kept):
        ys = [last["original"].get(key, {}).get("rougeL_recall"), *(c["now"].get(key, {}).get("rougeL_recall")
                                                                    for c in curve)]
        right.plot(xs, ys, marker="o", ms=3, color=COLORS[n % len(COLORS)], label=key)
    for ax, title in ((left, "MA of each forget set (relapse check)"), (right, "ROUGE-L recall (utility)")):
        _style(ax)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("after request (0 = original model)")
        if ax.lines:
            ax.legend(fontsize=7)
    return Figure("stream", "A stream of requests", "Measured after each request of this run's chain by the "
                  "cumulative evaluation: every earlier forget set again (a rising line is a relapse) and the "
                  "retain / utility sets.", _encode(fig), wide=True)


def pareto_plot(points: Sequence[Mapping[str, Any]], chosen: int | None, band: float | None = None) -> Figure | None:
    """Trials of a search: forgetting gap |AUC - 0.5| against utility loss, the Pareto front
    joined, the chosen trial circled (``recipes.tune``)."""
    pts = [p for p in points if p.get("state") == "COMPLETE"]
    if not pts:
        return None
    from matplotlib.ticker import AutoLocator

    fig, ax = _new()
    ax.xaxis.set_major_locator(AutoLocator())  # a continuous axis, not epochs
    if band is not None:
        ax.axvspan(0, band, color="#2ca02c", alpha=0.12, label="within the AUC band")
    front = sorted(_pareto_front(pts), key=lambda p: p["gap"])
    ax.scatter([p["gap"] for p in pts], [p["utility_loss"] for p in pts], s=18, color="#7f7f7f", label="trial")
    ax.plot([p["gap"] for p in front], [p["utility_loss"] for p in front], marker="o", ms=4, color=COLORS[0],
            label="Pareto front")
    for p in pts:
        ax.annotate(str(p["number"]), (p["gap"], p["utility_loss"]), fontsize=6, xytext=(3, 2),
                    textcoords="offset points")
    best = [p for p in pts if p["number"] == chosen]
    if best:
        ax.scatter([best[0]["gap"]], [best[0]["utility_loss"]], s=120, facecolors="none", edgecolors=COLORS[1],
                   linewidths=1.5, label="chosen")
    ax.set_xlabel("forgetting gap |AUC(forget vs held-out) - 0.5|  (0 = looks never-seen)")
    ax.set_ylabel("utility loss (NLL increase, nats/token)")
    ax.legend(fontsize=7)
    return Figure("pareto", "Forgetting vs utility", "Every finished trial; lower-left is better on both. The "
                  "chosen trial reached the target with the least utility loss (or, if none reached it, came "
                  "closest).", _encode(fig))


def _pareto_front(points: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Points no other point beats on both axes (both minimised)."""
    return [p for p in points if not any(q["gap"] <= p["gap"] and q["utility_loss"] <= p["utility_loss"]
                                         and (q["gap"], q["utility_loss"]) != (p["gap"], p["utility_loss"])
                                         for q in points)]


def robustness_chart(attacks: Sequence[Mapping[str, Any]]) -> Figure | None:
    """Per attack and measure: original, unlearned and attacked values on the forget set, the
    calibrated level (the attacked model on held-out records) drawn as a black tick."""
    bars = [(a["attack"], key, a) for a in attacks for key in a.get("forget", {})
            if key in a.get("heldout", {}) and not key.startswith("leak_rate")]
    if not bars:
        return None
    plt = _pyplot()
    fig, ax = _new(width=max(6.4, 0.75 * len(bars) + 1.5), height=3.6)
    for i, (_, key, a) in enumerate(bars):
        for j, (what, color) in enumerate((("original", COLORS[1]), ("unlearned", COLORS[0]), ("forget", COLORS[2]))):
            value = (a.get(what) or {}).get(key)
            if value is not None:
                ax.bar(i + (j - 1) * 0.27, value, width=0.25, color=color,
                       label={"forget": "attacked"}.get(what, what) if i == 0 else None)
        ax.plot([i - 0.42, i + 0.42], [a["heldout"][key]] * 2, color="black", lw=1.5,
                label="held-out level (calibrated)" if i == 0 else None)
    ax.set_xticks(range(len(bars)), [f"{name}\n{key}" for name, key, _ in bars], fontsize=7)
    ax.set_title("robustness: forget set under each attack (lower than the black tick = held)", fontsize=9)
    ax.legend(fontsize=7)
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    return Figure("robustness", "Robustness attacks", "Original, unlearned and attacked values of each measure on "
                  "the forget set; the black tick is the attacked model's value on held-out records, the calibrated "
                  "level of the verdict.", _encode(fig))
