"""Experiment trackers (``train.report_to``) through accelerate's tracker integration.

``train.report_to=tensorboard`` (or ``wandb``, ``mlflow``, several comma-separated, ``none``)
makes the engine's ``Accelerator`` log, on the main process only:

* ``train/loss`` and ``train/<term>`` (the method's logged terms) at every optimizer step,
  averaged over the micro-batches of the step's accumulation window on the main process;
* ``epoch/<key>`` for every number of the epoch's row of ``metrics.jsonl`` (epoch 0 = before
  unlearning), at step = epoch, plus ``epoch/forgotten`` (samples refinement has dropped so far);
* at the end ``final/before/<metric>``, ``final/after/<metric>`` and, when the run attacked its model
  (``audit.attacks``), ``final/robust/<attack>/held|recovery`` (step = last epoch), and a text
  ``summary``: the model card's tables of measurements and verdicts.

TensorBoard event files go to ``RUN/logs/obliviate/``, W&B's run files to ``RUN/logs/wandb/`` (offline
with ``WANDB_MODE=offline``; ``wandb sync`` uploads them later); MLflow logs where
``MLFLOW_TRACKING_URI`` points (a server, or a local ``sqlite:///mlflow.db``), as MLflow always does.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from obliviate.errors import ObliviateError
from obliviate.runfolder import RunFolder

PROJECT = "obliviate"
# tracker name -> (the package it needs, the extra that installs it)
TRACKERS = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb"),
            "mlflow": ("mlflow", "mlflow")}


def parse_report_to(value: str | None) -> list[str]:
    """``"tensorboard,wandb"`` -> ``["tensorboard", "wandb"]``; ``"none"``/empty -> ``[]``."""
    names = [n.strip().lower() for n in str(value or "none").split(",") if n.strip()]
    if names == ["none"]:
        return []
    for name in names:
        if name not in TRACKERS:
            raise ObliviateError(f"train.report_to: unknown tracker {name!r}; use {', '.join(TRACKERS)} or none "
                                 "(several comma-separated)")
        package, extra = TRACKERS[name]
        if importlib.util.find_spec(package) is None:
            raise ObliviateError(f"train.report_to={name} needs {package}: pip install 'obliviate[{extra}]'")
    return list(dict.fromkeys(names))


def accelerator_kwargs(report_to: str | None, run_dir: Path | None) -> dict[str, Any]:
    """``log_with``/``project_dir`` for ``Accelerator(...)``; empty when nothing is tracked."""
    names = parse_report_to(report_to)
    if not names:
        return {}
    if run_dir is None:
        raise ObliviateError(f"train.report_to={','.join(names)} needs a run folder (--out) to log into")
    return {"log_with": names, "project_dir": str(Path(run_dir) / RunFolder.LOGS)}


def flat_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config -> ``{"train.lr": 1e-5, ...}`` with values every tracker stores (lists, None as text)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_config(value, f"{name}."))
        else:
            out[name] = value if isinstance(value, bool | int | float | str) else str(value)
    return out


def numbers(row: Mapping[str, Any], prefix: str) -> dict[str, float]:
    return {f"{prefix}{k}": float(v) for k, v in row.items() if isinstance(v, int | float) and not isinstance(v, bool)}


class RunTracker:
    """Logs one run to the Accelerator's trackers; a no-op when ``train.report_to`` is none."""

    def __init__(self, acc: Any, config: Mapping[str, Any], run_dir: Path | None = None):
        self.acc = acc
        self.enabled = bool(getattr(acc, "log_with", None))
        if self.enabled and run_dir is not None:
            logs = Path(run_dir) / RunFolder.LOGS
            if acc.is_main_process:
                logs.mkdir(parents=True, exist_ok=True)
            init = {"wandb": {"name": Path(run_dir).name, "dir": str(logs)}}
            acc.init_trackers(PROJECT, config=flat_config(config), init_kwargs=init)

    def log_step(self, step: int, logs: Mapping[str, float]) -> None:
        if self.enabled and logs:
            self.acc.log(numbers(logs, "train/"), step=step)

    def log_epoch(self, row: Mapping[str, Any], n_forget: int) -> None:
        if not self.enabled:
            return
        values = numbers(row, "epoch/")
        if "active" in row:
            values["epoch/forgotten"] = float(n_forget - row["active"])
        self.acc.log(values, step=int(row["epoch"]))

    def finish(self, summary: Mapping[str, Any], text: str = "") -> None:
        """The run's before/after means, ``text`` (the Markdown tables of measurements and verdicts) as
        ``summary``; closes the trackers."""
        if not self.enabled:
            return
        step = int(summary.get("epochs") or 0)
        values: dict[str, Any] = {**numbers(summary.get("before") or {}, "final/before/"),
                                  **numbers(summary.get("after") or {}, "final/after/"),
                                  **numbers({k: v for k, v in summary.items() if k.startswith("robust/")}, "final/")}
        if text:
            values["summary"] = text
        self.acc.log(values, step=step)
        # Not acc.end_training(): that also tears down the process group the run still uses.
        for tracker in self.acc.trackers:
            tracker.finish()
        self.enabled = False
