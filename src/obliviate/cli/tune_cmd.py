"""``obliviate tune``: a budgeted search of one method's hyper-parameters (``obliviate.recipes.tune``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from obliviate.cli.app import app


@app.command("tune")
def tune_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="search folder (study.db, trials, best config, report)")],
    overrides: Annotated[list[str] | None, typer.Argument(
        metavar="[KEY=VALUE]...", help="config overrides fixed for every trial, e.g. eval.el=false")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="MODEL: built-in name, folder, .gguf or hub id")] = None,
    forget: Annotated[str | None, typer.Option("--forget", "-f", help="forget set: a file or a built-in name")] = None,
    heldout: Annotated[str | None, typer.Option(help="held-out data of the same kind as the forget set, never trained on (the target)")] = None,
    retain: Annotated[str | None, typer.Option("--retain", "-r", help="retain set (trained on by methods that use one; its NLL is part of the objective)")] = None,
    utility: Annotated[str | None, typer.Option(help="general-utility data; its NLL increase is part of the objective")] = None,
    pool: Annotated[str | None, typer.Option(help="ICU: choose analogous samples from this set")] = None,
    method: Annotated[str, typer.Option(help="the method to tune")] = "npo",
    trials: Annotated[int, typer.Option(help="budget: number of finished trials")] = 8,
    lr_min: Annotated[float, typer.Option(help="smallest learning rate searched (log scale)")] = 1e-5,
    lr_max: Annotated[float, typer.Option(help="largest learning rate searched")] = 1e-2,
    epochs_max: Annotated[int, typer.Option(help="largest epoch limit searched (from 1)")] = 10,
    weights: Annotated[bool, typer.Option(help="also search the method's loss weights (alpha, beta, gamma, *_weight)")] = True,
    seed: Annotated[int, typer.Option(help="the sampler's seed")] = 0,
    config: Annotated[str | None, typer.Option("--config", "-c", help="base YAML config for every trial")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue the search in --out (after a kill)")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an existing search in --out")] = False,
) -> None:
    """Search learning rate, epochs and weights of METHOD; each trial stops when the forget set
    looks like --heldout and is judged by the utility it lost. No retrain model is used."""
    from obliviate.recipes.tune import TuneConfig, tune

    cfg = None if resume else TuneConfig(method=method, trials=trials, lr_min=lr_min, lr_max=lr_max,
                                         epochs_max=epochs_max, weights=weights, seed=seed)
    res = tune(model, forget, heldout=heldout, retain=retain, utility=utility, pool=pool, out=out, config=config,
               overrides=list(overrides or []), tune_cfg=cfg, resume=resume, overwrite=overwrite)
    b = res.best
    reached = sum(1 for t in res.trials if t["verdict"] == "indistinguishable")
    print(f"{len(res.trials)} trials, {reached} reached the target; chosen: trial {b['number']} "
          f"({b['verdict']}: AUC {b['auc']:.3f}, KS p {b['ks_p']:.3g}, utility loss {b['utility_loss']:.4f})")
    print(f"  {' '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}' for k, v in b['params'].items())}")
    print(f"best config in {res.run_dir / 'best_config.yaml'}, trials in {res.run_dir / 'trials.md'}, "
          f"report in {res.run_dir / 'report.html'}")
