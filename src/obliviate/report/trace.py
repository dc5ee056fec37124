"""What the HTML report needs from a run that the engine does not keep: ``trace.json``.

* the greedy continuation of a few forget prompts after every epoch (epoch 0 = the original
  model), so the report can show before/after generations next to the reference text even for
  methods without ICU's refinement step (which only keeps beam continuations of its own);
* per epoch, how many forget samples are individually below both forgetting thresholds (the
  engine keeps only the means of MA and EL_n per epoch).

``TraceRecorder`` is an engine ``Callback`` that ``obliviate.unlearn`` adds to every run with a
run folder (``report.samples`` of them, default 8; ``report.enabled=false`` turns it off). It
generates only on the main process, with the same greedy settings as the metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from obliviate.data.encode import Encoded
from obliviate.data.records import QARecord, Record
from obliviate.engine import Callback, Control, EpochReport, RunArgs

TRACE_FILE = "trace.json"
MAX_NEW_TOKENS = 128  # longer references are continued up to this many tokens


def sample_texts(record: Record) -> tuple[str, str]:
    """(prompt, reference) as a reader should see them."""
    if isinstance(record, QARecord):
        return record.question, record.answer
    return record.prefix, record.target


def generate_for(model, tokenizer, examples: Sequence[Encoded], batch_size: int = 16) -> list[str]:
    """Greedy continuations as long as each reference (at most ``MAX_NEW_TOKENS``), stop at eos."""
    from obliviate.metrics.generation import generate_completions

    capped = [Encoded(e.ids[:e.prompt_len + MAX_NEW_TOKENS], e.prompt_len, e.id) for e in examples]
    return [g.text for g in generate_completions(model, tokenizer, capped, batch_size=batch_size)]


def below_thresholds(per_sample: dict[str, Any], thresholds: dict[str, float | None]) -> int | None:
    """How many samples have every set threshold's metric strictly below it (None: no thresholds)."""
    active = {k: v for k, v in (thresholds or {}).items() if v is not None and k in per_sample}
    if not active:
        return None
    n = len(per_sample[next(iter(active))])
    return sum(all(per_sample[k][i] is not None and per_sample[k][i] < t for k, t in active.items())
               for i in range(n))


class TraceRecorder(Callback):
    """Keeps ``trace.json`` of a run folder current (see the module docstring)."""

    def __init__(self, run_dir: Path, records: Sequence[Record], examples: Sequence[Encoded], tokenizer,
                 samples: int = 8):
        from obliviate.data.io import read_json

        self.path = Path(run_dir) / TRACE_FILE
        self.tokenizer = tokenizer
        self.examples = list(examples)[:samples]
        self.data: dict[str, Any] = {
            "samples": [dict(zip(("prompt", "reference"), sample_texts(r)), id=r.id) for r in list(records)[:samples]],
            "generations": {}, "below_thresholds": {}, "n_forget": len(examples)}
        if self.path.is_file():  # a resumed run keeps what earlier epochs recorded
            old = read_json(self.path)
            if [s["id"] for s in old.get("samples", [])] == [s["id"] for s in self.data["samples"]]:
                self.data["generations"] = old.get("generations", {})
                self.data["below_thresholds"] = old.get("below_thresholds", {})

    def on_evaluate(self, args: RunArgs, report: EpochReport, control: Control, *, model, **kwargs) -> None:
        # A sharded model (FSDP) needs every process in each forward: no main-only generation then.
        if self.examples and report.is_main_process and not report.sharded:
            texts = self._from_refinement(args, report)
            self.data["generations"][str(report.epoch)] = texts or generate_for(model, self.tokenizer, self.examples)
        return None

    def _from_refinement(self, args: RunArgs, report: EpochReport) -> list[str] | None:
        """Refinement's greedy continuations of the same prompts, when it made exactly these
        (greedy, each completion's own length): generating them twice costs minutes on big models."""
        cfg, generated = args.refinement, report.per_sample.get("generation")
        if not cfg.enabled or not generated or cfg.num_beams != 1 or cfg.max_new_tokens is not None:
            return None
        if any(len(e.ids) - e.prompt_len > MAX_NEW_TOKENS for e in self.examples):
            return None
        return list(generated[:len(self.examples)])

    def on_checkpoint(self, args: RunArgs, report: EpochReport, control: Control, **kwargs) -> None:
        if not report.is_main_process:
            return
        self.data["thresholds"] = dict(report.thresholds)
        if "0" not in self.data["below_thresholds"] and report.before:
            self.data["below_thresholds"]["0"] = below_thresholds(report.before, report.thresholds)
        if report.epoch > 0 and report.per_sample:
            self.data["below_thresholds"][str(report.epoch)] = below_thresholds(report.per_sample, report.thresholds)
        self.write()

    def write(self) -> None:
        from obliviate.runfolder import RunFolder

        RunFolder.open(self.path.parent, "run").write_json(TRACE_FILE, self.data)  # redacted where the run is
