"""``model/README.md``: a Hugging Face model card for every unlearned model obliviate saves.

What a reviewer of a deletion request reads, in the Hub's format (YAML metadata + Markdown, built
with ``huggingface_hub.ModelCard``): the base model, the method and its configuration, what was
unlearned as a count and a SHA-256 of the forget set -- never its text --, the before/after
measurements and the verdicts with their definitions, and the command that reproduces the run.

The forget-set hash is ``forget_set_sha256(records)``, the hash ``lineage.json`` uses: an order-free
SHA-256 over the records' content hashes (question + answer, or prefix + target; ids excluded), so
whoever holds the data can recompute it::

    from obliviate.data.sources import load_data
    from obliviate.modelcard import forget_set_sha256
    forget_set_sha256(load_data("forget.jsonl"))
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

from obliviate.data.records import Record
from obliviate.evaluation.registry import describe
from obliviate.lineage import records_sha256

CARD_FILE = "README.md"
# Built-in model names whose upstream lives on the Hub (the card's base_model must be a Hub id).
UPSTREAM = {"smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct"}
# The engine's own measurements, which the metric registry (benchmark metrics) does not list.
ENGINE_METRICS = {
    "retain_nll": "mean token negative log-likelihood of the retain set's completions (lower = more utility kept)",
    "retain_ppl": "retain perplexity, exp(retain_nll)",
    "refine_bertscore_f1": "BERTScore F1 of greedy continuations vs the forget targets (ICU refinement)",
    "refine_bleu": "BLEU of greedy continuations vs the forget targets (ICU refinement)",
}


def forget_set_sha256(records: Sequence[Record]) -> str:
    """Names the forget set without holding its text (``lineage.records_sha256``)."""
    return records_sha256(records)


def describe_metric(name: str) -> str:
    return ENGINE_METRICS.get(name) or describe(name) or "-"


def build_model_card(*, model: str | None, method: str, config_yaml: str, summary: Mapping[str, Any],
                     forget_sha256: str, n_forget: int, adapter: bool = False,
                     attacks: Sequence[Mapping[str, Any]] = ()) -> ModelCard:
    """The card as a ``ModelCard`` (``str(card)`` is the README text). ``attacks``: the robustness
    attacks' results (``AttackResult.to_dict()``), when the run made them."""
    base = _hub_id(model)
    data = ModelCardData(
        base_model=base, library_name="peft" if adapter else "transformers", pipeline_tag="text-generation",
        tags=["obliviate", "unlearning", method],
        unlearning={"method": method, "forget_set": {"count": n_forget, "sha256": forget_sha256},
                    "stop_reason": summary.get("stop_reason"), "epochs": summary.get("epochs"),
                    "before": _clean(summary.get("before")), "after": _clean(summary.get("after")),
                    "robustness": {a["attack"]: a["verdict"] for a in attacks}},
    )
    body = "\n".join([
        f"# {method} unlearning of {model or 'a model'}",
        "",
        f"This model is `{model}` after the **{method}** unlearning method, made with "
        "[obliviate](https://pypi.org/project/obliviate/)"
        f"{' (a peft adapter on the base model)' if adapter else ''}.",
        "",
        "## What was unlearned",
        "",
        f"- **{n_forget}** forget records (their text is not part of this card).",
        f"- Forget-set SHA-256: `{forget_sha256}` -- order-free, over the SHA-256 of each record's content "
        "(question + answer, or prefix + target; ids excluded), as in `lineage.json`; recompute it with "
        "`obliviate.modelcard.forget_set_sha256(load_data(SPEC))`.",
        f"- Data spec: `{summary.get('forget') or '-'}`"
        f"{' (records given in Python: pass the same records to reproduce the run)' if _in_python(summary) else ''}.",
        "",
        "## Measurements before and after unlearning",
        "",
        "Means over the forget set (retain metrics over the retain set), measured by the run itself:",
        "",
        measurements_markdown(summary),
        "",
        "## Verdicts",
        "",
        verdicts_markdown(summary, attacks),
        "",
        "## Configuration",
        "",
        "```yaml",
        config_yaml.rstrip(),
        "```",
        "",
        "## Reproduce",
        "",
        "Save the configuration above as `config.yaml` (the data specs must resolve to the same records: "
        "compare the forget-set hash), then:",
        "",
        "```bash",
        "obliviate unlearn --config config.yaml --out reproduced-run",
        "```",
        "",
    ])
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


def write_model_card(model_dir: str | Path, **kwargs: Any) -> Path:
    """Write ``model_dir/README.md`` (see ``build_model_card`` for the arguments)."""
    from obliviate.data.io import atomic_write_text

    path = Path(model_dir) / CARD_FILE
    atomic_write_text(path, str(build_model_card(**kwargs)))
    return path


def _in_python(summary: Mapping[str, Any]) -> bool:
    return str(summary.get("forget") or "").startswith("<")


def _hub_id(model: str | None) -> str | None:
    if model in UPSTREAM:
        return UPSTREAM[model]
    if model and re.fullmatch(r"[\w.-]+/[\w.-]+", model) and not Path(model).exists():
        return model
    return None


def _clean(values: Mapping[str, Any] | None) -> dict[str, Any]:
    """Numbers YAML can hold (NaN/inf become null)."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in (values or {}).items()}


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else ("-" if value is None else str(value))


def measurements_markdown(summary: Mapping[str, Any]) -> str:
    before, after = summary.get("before") or {}, summary.get("after") or {}
    lines = ["| metric | before | after | definition |", "|---|---|---|---|"]
    lines += [f"| {k} | {_fmt(before.get(k))} | {_fmt(after.get(k))} | {describe_metric(k)} |" for k in before]
    return "\n".join(lines)


def verdicts_markdown(summary: Mapping[str, Any], attacks: Sequence[Mapping[str, Any]] = ()) -> str:
    """The stopping rule's verdict (thresholds on the forget means) and the robustness attacks' verdicts,
    each with the rule it follows."""
    after, thresholds = summary.get("after") or {}, summary.get("thresholds") or {}
    lines = ["| check | verdict | definition |", "|---|---|---|"]
    set_thresholds = {k: t for k, t in thresholds.items() if t is not None}
    if set_thresholds:
        below = all(after.get(k) is not None and after[k] < t for k, t in set_thresholds.items())
        rule = " and ".join(f"mean {k} < {t:.4g}" for k, t in set_thresholds.items())
        lines.append(f"| forgotten (stopping thresholds) | {'yes' if below else 'no'} | {rule} after unlearning "
                     f"({summary.get('thresholds_source') or 'configured'}) |")
    refinement = summary.get("refinement") or {}
    if refinement.get("enabled"):
        lines.append(f"| samples forgotten (refinement) | {refinement.get('forgotten')} of "
                     f"{summary.get('n_forget')} | samples whose greedy continuation no longer reproduces the "
                     "target; they were dropped from training |")
    for attack in attacks:
        lines.append(f"| robustness: {attack['attack']} | {attack['verdict']} | {attack.get('rule') or '-'} |")
    if not attacks:
        lines.append("| robustness attacks | not run | sampling, quantization, relearning, prompt and membership "
                     "attacks were not part of this run (audit.attacks) |")
    return "\n".join(lines)


def tables_markdown(summary: Mapping[str, Any], attacks: Sequence[Mapping[str, Any]] = ()) -> str:
    """The card's two tables (measurements, verdicts): what trackers get as the run's text summary."""
    return f"{measurements_markdown(summary)}\n\n{verdicts_markdown(summary, attacks)}"
