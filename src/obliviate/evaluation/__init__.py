"""The evaluation layer: one metric registry, one ``evaluate()``, attacks as probes, one verdict rule.

* ``registry`` -- every metric and reported key with its direction, aggregation and needs
* ``evaluate`` -- ``evaluate(model, tokenizer, groups, metrics)`` -> ``Evaluation`` (``<group>/<metric>``)
"""

from __future__ import annotations

from obliviate.evaluation.evaluate import EvalOptions, Evaluation, Prepared, evaluate
from obliviate.evaluation.registry import (
           arrow,
           describe,
           direction,
           key_info,
           metric_spec,
           registered_metrics,
)

__all__ = ["EvalOptions", "Evaluation", "Prepared", "arrow", "describe", "direction", "evaluate", "key_info", "metric_spec",
           "registered_metrics"]
