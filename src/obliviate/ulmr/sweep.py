"""An α sweep of parameter averaging: write θ_u(α) for several α and evaluate each point.

    out/alpha-0/ out/alpha-0.25/ ...   merged checkpoints (normal HF folders)
    out/sweep.json                     one row per α: the metrics of ``evaluate_qa`` (updated per point)

A sweep killed half-way continues with ``resume=True``: points whose folder and row exist are
kept, the rest are (re)done.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from obliviate.data.encode import DEFAULT_TEMPLATE, PromptTemplate
from obliviate.data.records import QARecord
from obliviate.errors import ObliviateError
from obliviate.runfolder import RunFolder, kind_of
from obliviate.ulmr.merge import MERGE_INFO, checkpoint_fingerprint, merge_checkpoints, parse_alphas

log = logging.getLogger(__name__)
SWEEP_FILE = "sweep.json"


def point_dir(out: Path, alpha: float) -> Path:
    return out / f"alpha-{alpha:g}"


def alpha_sweep(base: str | os.PathLike, tuned: str | os.PathLike, alphas: Sequence[float], out: str | os.PathLike, *,
                splits: Mapping[str, Sequence[QARecord]] | None = None, template: PromptTemplate = DEFAULT_TEMPLATE,
                reference_forget_ratios: Sequence[float] | None = None, max_new_tokens: int = 200,
                batch_size: int = 16, overwrite: bool = False, resume: bool = False) -> list[dict[str, Any]]:
    """Merge (and, with ``splits``, evaluate) every α; returns one row per α, in the given order."""
    from obliviate.data.io import read_json
    from obliviate.models import load_model
    from obliviate.ulmr.evaluate import evaluate_qa
    from obliviate.utils import progress

    alphas = parse_alphas(alphas)
    out = Path(out)
    # Resuming a sweep that never started is starting it; only an earlier sweep is ever replaced.
    folder = RunFolder.prepare(out, "sweep", overwrite=overwrite, resume=resume and kind_of(out) is not None)
    done: dict[float, dict[str, Any]] = {}
    inputs = {"base": str(base), "tuned": str(tuned), "base_fingerprint": checkpoint_fingerprint(base),
              "tuned_fingerprint": checkpoint_fingerprint(tuned)}
    folder.begin()
    if resume and (out / SWEEP_FILE).is_file():
        stored = read_json(out / SWEEP_FILE)
        changed = [k for k, v in inputs.items() if stored.get(k) != v]
        if changed:
            raise ObliviateError(f"{out}: this sweep was made from other checkpoints ({', '.join(changed)} differ: "
                                 "a rebuilt or re-trained model); use another --out or --overwrite")
        done = {row["alpha"]: row for row in stored["rows"] if (point_dir(out, row["alpha"]) / MERGE_INFO).is_file()}
    rows: list[dict[str, Any]] = []
    for alpha in progress(alphas, desc="alpha sweep"):
        if alpha in done and (splits is None or "forget/rougeL_recall" in done[alpha]):
            rows.append(done[alpha])
            continue
        folder = merge_checkpoints(base, tuned, alpha, point_dir(out, alpha), overwrite=True)
        row: dict[str, Any] = {"alpha": alpha, "path": str(folder)}
        if splits:
            model, tok = load_model(folder)
            row.update(evaluate_qa(model, tok, splits, template=template,
                                   reference_forget_ratios=reference_forget_ratios, max_new_tokens=max_new_tokens,
                                   batch_size=batch_size).row)
            del model
        rows.append(row)
        log.info("alpha %g: %s", alpha, {k: round(v, 4) for k, v in row.items() if isinstance(v, float)})
        later = [done[a] for a in alphas[len(rows):] if a in done]  # finished points not reached yet
        _write(out, inputs, rows + later)
    _write(out, inputs, rows)
    return rows


def _write(out: Path, inputs: dict[str, str], rows: list[dict[str, Any]]) -> None:
    from obliviate.data.io import write_json

    write_json(out / SWEEP_FILE, {**inputs, "formula": "alpha*base + (1-alpha)*tuned", "rows": rows})


def sweep_label(alpha: float) -> str:
    return {1.0: "α=1 (= base)", 0.0: "α=0 (= tuned)"}.get(alpha, f"α={alpha:g}")
