"""``obliviate audit``: measure memorization of a data set by a model; JSON files + a table."""

from __future__ import annotations

from pathlib import Path

import typer

from obliviate.cli.app import app


@app.command("audit")
def audit_command(
    model: str = typer.Option(..., "--model", "-m", help="MODEL: built-in name, local folder, .gguf, hub id, or a "
                              "run folder (its model/)"),
    data: str = typer.Option(..., "--data", "-d", help="DATA: a record file (.jsonl/.json/.csv/.parquet), a datasets folder, hf:<repo>[:<config>[:<split>]] or built-in spec (demo:forget, pile:0@DIR)"),
    metrics: str = typer.Option(None, "--metrics", help="comma-separated, e.g. ma,el_10,exact,bleu_icu,bertscore,"
                                "rougeL_f1,entropy,tofu_prob,rougeL_recall,truth_ratio,loss,bleu "
                                "(default: by record type)"),
    out_dir: str = typer.Option(None, "--out", "-o", help="folder for per_sample.jsonl and summary.json"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the obliviate audit in --out (never a folder "
                                   "obliviate did not write)"),
    redact: bool = typer.Option(False, "--redact", help="no text of the data in --out (generations, references): "
                                "ids, numbers and hashes only"),
    calibrate: str = typer.Option(None, "--calibrate", help="HELDOUT data the model never saw: its mean MA and EL "
                                  "become the 'forgotten' thresholds"),
    el_n: int = typer.Option(10, "--el-n", help="n of EL_n"),
    region: str = typer.Option("all", "--region", help="positions of MA/EL on text records: all | completion"),
    limit: int = typer.Option(None, "--limit", help="audit only the first N records"),
    num_beams: int = typer.Option(1, "--num-beams", help="beams for the generation-based metrics (ICU: 2)"),
    max_new_tokens: int = typer.Option(None, "--max-new-tokens", help="generation length (default: the target's; "
                                       "200 for QA, as TOFU)"),
    batch_size: int = typer.Option(32, "--batch-size", help="sequences per forward/generate batch"),
    el_batch_size: int = typer.Option(64, "--el-batch-size", help="(record, prefix) rows decoded together for EL"),
    retain_results: str = typer.Option(None, "--retain-results", help="a retain model's tofu_log.json (or TOFU "
                                       "eval_log_aggregated.json): adds forget quality"),
    bertscore_model: str = typer.Option(None, "--bertscore-model", help="local BERTScore backbone (default "
                                        "all-MiniLM-L6-v2)"),
    bertscore_layers: int = typer.Option(None, "--bertscore-layers", help="backbone layer for BERTScore"),
    attacks: str = typer.Option(None, "--attacks", help="robustness probes: sample,quantize,relearn,prompts,mia "
                                "(or cheap = sample,quantize; all); needs --heldout"),
    heldout: str = typer.Option(None, "--heldout", help="HELDOUT data of the same kind the model never saw: the "
                                "calibrated level of every attack verdict"),
    original: str = typer.Option(None, "--original", help="the model before unlearning: recovery ratios of the attacks"),
    retain: str = typer.Option(None, "--retain", help="retain data: benign relearning and few-shot prompts"),
    # --limit also caps --heldout and --retain: the same number of records on every side
    samples: int = typer.Option(32, "--samples", help="samples per prompt of the sampling attack (leak@k)"),
    relearn_steps: int = typer.Option(20, "--relearn-steps", help="optimizer steps of the relearning attack"),
    relearn_lr: float = typer.Option(1e-5, "--relearn-lr", help="learning rate of the relearning attack"),
    dtype: str = typer.Option("float32", "--dtype", help="float32 | bfloat16 | float16"),
    device: str = typer.Option(None, "--device", help="cpu, cuda, cuda:1 (default: cuda if available)"),
) -> None:
    """Audit how much MODEL has memorized DATA: MA, EL_n, extraction, BLEU, BERTScore, ROUGE, ..."""
    from rich.console import Console

    from obliviate.auditing import audit, parse_metrics
    from obliviate.data.io import json_safe
    from obliviate.data.sources import load_data
    from obliviate.errors import ObliviateError
    from obliviate.evaluation.attacks import AttackConfig, parse_attacks
    from obliviate.metrics.memorization import calibrate_thresholds
    from obliviate.models import load_model
    from obliviate.runfolder import RunFolder, kind_of
    from obliviate.utils import default_device

    out = Path(out_dir) if out_dir else None
    if region not in ("all", "completion"):
        raise ObliviateError(f"--region must be 'all' or 'completion', got {region!r}")
    for name in parse_metrics(metrics) or ():  # fail on a typo before loading anything
        if name.startswith("el_"):
            el_n = int(name[3:])  # --metrics el_5 wins over --el-n
    if parse_attacks(attacks) and not heldout:  # fail before loading anything
        raise ObliviateError("--attacks needs --heldout: records of the same kind the model never saw")
    folder = RunFolder.prepare(out, "audit", overwrite=overwrite, redact=redact) if out is not None else None
    model_path = str(Path(model) / RunFolder.MODEL) if kind_of(model) == "run" else model  # as `obliviate eval`

    console = Console(stderr=False)
    records = load_data(data)
    if limit is not None:
        records = records[:limit]
    net, tok = load_model(model_path, dtype=dtype, device=device or default_device())
    bert = None
    if bertscore_model or bertscore_layers:
        from obliviate.metrics.text import get_bert_scorer

        bert = get_bert_scorer(bertscore_model, bertscore_layers)
    thresholds = None
    if calibrate:
        held = load_data(calibrate)
        thresholds = calibrate_thresholds(net, tok, held, n=el_n, region=region, source=calibrate)  # type: ignore[arg-type]
    before = load_model(original, dtype=dtype, device=device or default_device())[0] if original else None
    cfg = AttackConfig(n_samples=samples,
                       relearn_steps=relearn_steps, relearn_lr=relearn_lr, el_n=el_n, region=region)  # type: ignore[arg-type]
    result = audit(net, tok, records, metrics=metrics, thresholds=thresholds, el_n=el_n, region=region,  # type: ignore[arg-type]
                   batch_size=batch_size, el_batch_size=el_batch_size, num_beams=num_beams,
                   max_new_tokens=max_new_tokens, bert_scorer=bert, retain_results=retain_results,
                   attacks=attacks,
                   heldout=load_data(heldout)[:limit] if heldout else None, original=before,
                   retain=load_data(retain)[:limit] if retain else None, attack_config=cfg)
    meta = result.summary["meta"]
    meta.update({"model": model, "data": data, "dtype": dtype})
    tofu_log = {key: meta.pop(key) for key in list(meta) if key.endswith("tofu_log")}

    if folder is not None:
        folder.begin()
        folder.write_jsonl(RunFolder.PER_SAMPLE, (json_safe(r) for r in result.rows))
        if tofu_log:
            # The forget split of this file is what --retain-results reads for forget quality.
            folder.write_json("tofu_log.json", {"forget": next(iter(tofu_log.values()))})
        folder.write_summary(json_safe(result.summary))  # written last: the audit finished
    _print_table(console, result.summary, out)
    if result.attacks:
        print_attacks(console, result.attacks)


def print_attacks(console, results) -> None:
    """One line per attack: verdict, the numbers behind it, the recovery ratios."""
    from rich.table import Table

    table = Table(title="robustness: does the forgetting survive? (verdict: the calibrated rule vs held-out records)")
    for col in ("attack", "verdict", "forget (attacked)", "held-out (attacked)", "recovery"):
        table.add_column(col)
    for r in results:
        style = "green" if r.verdict == "held" else "red"
        table.add_row(r.attack, f"[{style}]{r.verdict}[/{style}]", _numbers(r.forget), _numbers(r.heldout),
                      _numbers(r.recovery) or "–")
    console.print(table)


def _numbers(values: dict) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in values.items())


def _print_table(console, summary: dict, out: Path | None) -> None:
    from rich.table import Table

    from obliviate.evaluation.registry import arrow, describe

    meta = summary["meta"]
    table = Table(title=f"audit of {meta.get('model')} on {meta.get('data')} ({meta['num_records']} records)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("better", justify="center")
    table.add_column("what it is")
    for name, value in summary.items():
        if name == "meta":
            continue
        base = name.split("/", 1)[-1]  # "text/ma", "qa/ma": the record kind, not a group
        shown = str(value) if isinstance(value, bool) else (f"{value:.4g}" if isinstance(value, float) else str(value))
        table.add_row(name, shown, arrow(base), describe(base))
    console.print(table)
    for key, value in meta.items():
        if key.endswith("bertscore_backbone"):
            console.print(f"BERTScore backbone: {value}")
    if "thresholds" in meta:
        th = meta["thresholds"]
        el_key = f"el_{th['n']}"
        console.print(f"'forgotten' thresholds ({th['source']}): MA < {th['ma']:.4f} and EL_{th['n']} < "
                      f"{th[el_key]:.4f}")
    for key, value in meta.items():
        if key.endswith("_skipped"):
            console.print(f"note: {key}: {value}")
    if out is not None:
        console.print(f"wrote {out / 'per_sample.jsonl'} and {out / 'summary.json'}")
