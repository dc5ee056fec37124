"""``obliviate unlearn``: run an unlearning method on a model and a forget set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from obliviate.cli.app import app

METHOD_NAMES = "icu, kumpr (ga), graddiff, kl, npo, simnpo, idkdpo (dpo), llmu, ulmr (the whole recipe)"


@app.command("unlearn")
def unlearn_command(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="run folder (config, model, metrics, "
                                             "checkpoints); required unless listing or printing")] = None,
    overrides: Annotated[list[str] | None, typer.Argument(
        metavar="[KEY=VALUE]...", help="config overrides, e.g. train.lr=1e-5 stop.max_epochs=5 method_args.alpha=0.3")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="MODEL: built-in name, folder, .gguf, hub id, or a run folder to continue")] = None,
    forget: Annotated[str | None, typer.Option("--forget", "-f", help="forget set (DATA): a file, a datasets folder, hf:<repo>[:<config>[:<split>]] or a built-in name (demo:forget, ...)")] = None,
    retain: Annotated[str | None, typer.Option("--retain", "-r", help="retain set (graddiff, kl, npo, simnpo, idkdpo, llmu need one)")] = None,
    analogous: Annotated[str | None, typer.Option(help="ICU: one analogous record per forget record, in the same order")] = None,
    pool: Annotated[str | None, typer.Option(help="ICU: choose analogous samples from this set by nearest neighbour")] = None,
    method: Annotated[str | None, typer.Option(help=f"unlearning method: {METHOD_NAMES} (default icu)")] = None,
    config: Annotated[str | None, typer.Option("--config", "-c", help="YAML config, or a shipped one by method name (icu, kumpr, ...)")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue the run in --out from its last checkpoint")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace the obliviate run in --out (only a folder "
                                            "obliviate wrote; checked after every input is valid)")] = False,
    redact: Annotated[bool, typer.Option("--redact", help="keep no text of the data in the run folder: ids, numbers "
                                         "and hashes only (= report.redact=true)")] = False,
    after: Annotated[str | None, typer.Option("--after", help="continue this finished run's model (a run folder as "
                                              "--model does the same); lineage.json records the chain of requests")] = None,
    list_options: Annotated[bool, typer.Option("--list-options", help="list the method's options (method_args.*) "
                                               "with defaults and help, then exit")] = False,
    print_config: Annotated[bool, typer.Option("--print-config", help="print the complete resolved config of this "
                                               "run (what config.yaml will hold), then exit")] = False,
) -> None:
    """Make MODEL forget the --forget set with one unlearning method; writes a run folder."""
    from obliviate.errors import ObliviateError
    from obliviate.recipes import unlearn

    if list_options:
        from obliviate.cli.methods_cmd import methods_command

        return methods_command(method or "icu")
    if print_config:
        from obliviate.unlearning import config_yaml, run_config

        data = {"forget": forget, "retain": retain, "analogous": analogous, "pool": pool}
        print(config_yaml(run_config(model, data, method=method, config=config, overrides=list(overrides or []),
                                     after=after)), end="")
        return None
    if out is None:
        raise ObliviateError("--out is required: the run folder (config, model, metrics, checkpoints)")

    result = unlearn(model, forget, method=method, retain=retain, analogous=analogous, pool=pool, out=out,
                     config=config, overrides=list(overrides or []), resume=resume, overwrite=overwrite,
                     after=after, redact=True if redact else None)
    from obliviate.engine.distributed import is_main_process

    if not is_main_process():  # under `accelerate launch`, one report is enough
        return
    s = result.summary
    print(f"{s['method']}: stopped after {s['epochs']} epoch(s), {s['optimizer_steps']} optimizer step(s) "
          f"({s['stop_reason']})")
    for key, before in s["before"].items():
        after = s["after"].get(key)
        print(f"  {key:<20} {before:10.4f} -> {after:10.4f}" if after is not None else f"  {key:<20} {before:10.4f}")
    target = s.get("target") or {}
    if "auc" in target:
        print(f"  forget vs held-out ({target['statistic']}): AUC {target['auc']:.3f}, KS p {target['ks_p']:.3g} "
              f"-> {target['verdict']}")
    print(f"model and metrics in {result.run_dir}")
