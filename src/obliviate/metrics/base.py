"""The result type every metric returns (directions live in ``obliviate.evaluation.registry``).

A metric is a pure function of a model/tokenizer and records (or of plain numbers/strings)
that returns a ``MetricResult``: one aggregate ``value`` and the ``per_sample`` values it was
computed from, aligned with the input order, so reports can show both and nothing has to be
recomputed to drill down.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MetricResult", "mean"]


@dataclass
class MetricResult:
    name: str  # "ma", "el_10", "bleu_icu", "bertscore_f1", ...
    value: float  # aggregate (mean over samples unless ``details["aggregate"]`` says otherwise)
    per_sample: list[float]  # aligned with the input order ([] for aggregate-only metrics)
    details: dict[str, Any] = field(default_factory=dict)  # thresholds, backbone used, orientation, ...

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "per_sample": list(self.per_sample),
                "details": dict(self.details)}

    def __float__(self) -> float:
        return float(self.value)


def mean(values: Sequence[float]) -> float:
    """Plain mean; NaN for an empty list (an empty evaluation is not a score of 0)."""
    return math.fsum(values) / len(values) if len(values) else float("nan")
