"""``obliviate ulmr prepare|run``: ULMR's restructured data (inspect/edit it first), then SFT + averaging."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from obliviate.cli.app import app

ulmr_app = typer.Typer(help="ULMR (Shi et al. 2024): rewritten instructions + negative responses, SFT, then weight "
                            "averaging. `prepare` writes the restructured data for you to inspect or edit; `run` "
                            "does everything (reusing prepared or edited data).", no_args_is_help=True)
app.add_typer(ulmr_app, name="ulmr")

# Options shared by both commands (how the restructured data is generated).
Overrides = Annotated[list[str] | None, typer.Argument(
    metavar="[KEY=VALUE]...", help="config overrides, e.g. train.lr=1e-4 method_args.generator.temperature=0.7")]
Generator = Annotated[str | None, typer.Option(
    "--generator", "-g", help="who writes rewrites and negative responses: template (offline, default), model, openai")]
GenModel = Annotated[str | None, typer.Option(
    "--gen-model", help="model: a MODEL spec to generate with (default: the model being unlearned); "
    "openai: the model name the endpoint serves")]
BaseUrl = Annotated[str | None, typer.Option("--base-url", help="openai: the endpoint, e.g. http://localhost:8000/v1")]
ApiKeyEnv = Annotated[str | None, typer.Option(
    "--api-key-env", help="openai: environment variable holding the key (default OPENAI_API_KEY; optional for local "
    "servers)")]
Refusals = Annotated[str | None, typer.Option(
    "--refusals", help="template: refusal answers file (e.g. TOFU's idontknow.jsonl); default: the built-in list")]
Rewrites = Annotated[int | None, typer.Option("--rewrites", help="rewrites per instruction (paper: 2)")]
Seed = Annotated[int | None, typer.Option("--seed", help="generation seed")]
MaxNew = Annotated[int | None, typer.Option("--max-new-tokens", help="model/openai: tokens per generation")]
Config = Annotated[str | None, typer.Option("--config", "-c", help="YAML config (train / stop / method_args sections)")]
Regenerate = Annotated[bool, typer.Option("--regenerate", help="replace an existing restructured.jsonl (kept as .bak)")]


def _overrides(generator: str | None, gen_model: str | None, base_url: str | None, api_key_env: str | None,
               refusals: str | None, rewrites: int | None, seed: int | None, max_new_tokens: int | None,
               extra: list[str] | None) -> list[str]:
    """CLI options -> ``method_args.*`` overrides of the ULMR config (explicit ``KEY=VALUE`` ones win)."""
    pairs = {"generator.kind": generator, "generator.model": gen_model, "generator.base_url": base_url,
             "generator.api_key_env": api_key_env, "generator.refusals": refusals, "rewrites": rewrites,
             "seed": seed, "generator.max_new_tokens": max_new_tokens}
    return [f"method_args.{k}={v}" for k, v in pairs.items() if v is not None] + list(extra or [])


@ulmr_app.command("prepare")
def prepare_command(
    forget: Annotated[str, typer.Option("--forget", "-f", help="QA forget set: a file (TOFU schema) or a built-in name")],
    out: Annotated[Path, typer.Option("--out", "-o", help="run folder: restructured.jsonl is written here")],
    overrides: Overrides = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="the model being unlearned (--generator model)")] = None,
    generator: Generator = None,
    gen_model: GenModel = None,
    base_url: BaseUrl = None,
    api_key_env: ApiKeyEnv = None,
    refusals: Refusals = None,
    rewrites: Rewrites = None,
    seed: Seed = None,
    max_new_tokens: MaxNew = None,
    config: Config = None,
    regenerate: Regenerate = False,
    show: Annotated[int, typer.Option("--show", help="print this many restructured examples")] = 6,
) -> None:
    """Generate (or check) the restructured forget set D_fr in --out, to inspect or edit before `ulmr run`."""
    from obliviate.data.sources import load_data
    from obliviate.errors import ObliviateError
    from obliviate.methods.ulmr import ULMRConfig
    from obliviate.ulmr.restructure import CACHE_FILE, prepare_restructured
    from obliviate.unlearning import build_config

    cfg = build_config("ulmr", config, _overrides(generator, gen_model, base_url, api_key_env, refusals, rewrites,
                                                  seed, max_new_tokens, overrides))
    margs: ULMRConfig = cfg.method_args  # type: ignore[assignment]
    gen_model_obj = gen_tok = None
    if margs.generator.kind == "model" and margs.generator.model is None:
        if model is None:
            raise ObliviateError("--generator model needs --model (the model being unlearned) or --gen-model")
        if regenerate or not (out / CACHE_FILE).exists():
            from obliviate.models import load_model

            gen_model_obj, gen_tok = load_model(model)
    result = prepare_restructured(out, load_data(forget), margs.restructure_config(), model=gen_model_obj,
                                  tokenizer=gen_tok, model_name=str(model), regenerate=regenerate)
    print(result.summary())
    for rec in result.records[:show]:
        print(f"  [{rec.meta.get('kind', '?')}] {rec.question}\n      -> {rec.answer}")
    print(f"Inspect or edit {result.path}; an edited file is used as-is by `obliviate ulmr run --out {out} ...` "
          "(never regenerated). Unedited, it is reused when run is given the same generator options.")


@ulmr_app.command("run")
def run_command(
    model: Annotated[str, typer.Option("--model", "-m", help="MODEL to unlearn (built-in name, folder, .gguf)")],
    forget: Annotated[str, typer.Option("--forget", "-f", help="QA forget set: a file (TOFU schema) or a built-in name")],
    out: Annotated[Path, typer.Option("--out", "-o", help="run folder (restructured data, sft/, model/)")],
    overrides: Overrides = None,
    alpha: Annotated[float | None, typer.Option("--alpha", "-a", help="θ_u = α·θ + (1−α)·θ_SFT (default: "
                                                "method_args.alpha = 0.5)")] = None,
    generator: Generator = None,
    gen_model: GenModel = None,
    base_url: BaseUrl = None,
    api_key_env: ApiKeyEnv = None,
    refusals: Refusals = None,
    rewrites: Rewrites = None,
    seed: Seed = None,
    max_new_tokens: MaxNew = None,
    config: Config = None,
    regenerate: Regenerate = False,
    resume: Annotated[bool, typer.Option("--resume", help="continue an interrupted run in --out")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="redo training in --out (the restructured data is "
                                            "kept)")] = False,
    redact: Annotated[bool, typer.Option("--redact", help="no text of the forget data left in --out: files hold ids, "
                                         "numbers and hashes; the restructured data is deleted once the run has "
                                         "finished (= report.redact=true)")] = False,
) -> None:
    """Restructure the forget set (or reuse --out's prepared/edited file), SFT on it, then average weights."""
    from obliviate.recipes.ulmr import run_ulmr

    result = run_ulmr(model, forget, out=out, config=config, alpha=alpha, resume=resume, overwrite=overwrite,
                      regenerate=regenerate, overrides=_overrides(generator, gen_model, base_url, api_key_env,
                                                                  refusals, rewrites, seed, max_new_tokens,
                                                                  [*(overrides or []), *(["report.redact=true"] if redact
                                                                                         else [])]))
    s = result.summary
    print(result.restructured.summary())
    print(f"SFT: {s['sft']['epochs']} epoch(s), {s['sft']['optimizer_steps']} optimizer step(s); averaged with "
          f"α={s['alpha']:g}")
    print(f"unlearned model: {out / 'model'}  (SFT model: {out / 'sft' / 'model'})")
    print(f"sweep α: obliviate merge --base {model} --tuned {out / 'sft' / 'model'} --alpha 0,0.25,0.5,0.75,1 "
          f"--forget {forget} --out {out / 'sweep'}")
