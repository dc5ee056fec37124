"""``obliviate world``: build the synthetic world's models, export its data, look at it."""

from __future__ import annotations

from pathlib import Path

import typer

from obliviate.cli.app import app

world_app = typer.Typer(help="The built-in synthetic world of fictitious people (see docs/world.md).",
                        no_args_is_help=True)
app.add_typer(world_app, name="world")

PROFILE_HELP = "world profile: full (200 people, the world-target/world-retain models) or micro (tests)"


def _model_names(profile: str) -> tuple[str, str]:
    stem = "world" if profile == "full" else f"world-{profile}"
    return f"{stem}-target", f"{stem}-retain"


@world_app.command("build")
def build_command(
    profile: str = typer.Option("full", "--profile", "-p", help=PROFILE_HELP),
) -> None:
    """Build (once; cached) the target and retain models of a profile and show what each knows."""
    import json

    from obliviate.models import load_model, resolve_model
    from obliviate.world import get_profile, load_world_split
    from obliviate.world.probe import probe

    get_profile(profile)
    splits = {name: load_world_split(profile, name) for name in ("forget", "retain_eval", "world_facts", "holdout")}
    rows = []
    for name in _model_names(profile):
        folder = Path(resolve_model(name))
        model, tokenizer = load_model(name)
        info = json.loads((folder / "world.json").read_text(encoding="utf-8"))
        cells = [f"{k.recall:.3f} / {k.token_accuracy:.3f}" for k in probe(model, tokenizer, splits)]
        rows.append([name, *cells, f"{info['train_seconds']:.0f}"])
    print(f"synthetic world '{profile}': fact recall (greedy answer contains the fact) / "
          "teacher-forced answer-token accuracy")
    header = ["model", *(f"{name} ({len(recs)})" for name, recs in splits.items()), "train s"]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(w) if i == 0 else str(cell).rjust(w)
                        for i, (cell, w) in enumerate(zip(row, widths))))


@world_app.command("export")
def export_command(
    out: str = typer.Option(..., "--out", "-o", help="folder to write the splits into"),
    profile: str = typer.Option("full", "--profile", "-p", help=PROFILE_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="write into a non-empty folder, replacing world files"),
) -> None:
    """Write every split as obliviate JSONL and as TOFU-schema JSON (question/answer/paraphrased_answer/...)."""
    from obliviate.world.export import export_world

    files = export_world(profile, out, overwrite=overwrite)
    print(f"wrote {len(files)} files under {out}")


@world_app.command("show")
def show_command(
    profile: str = typer.Option("full", "--profile", "-p", help=PROFILE_HELP),
    person: str = typer.Option(None, "--person", help="person id (p000, ...); default: the first forget person"),
) -> None:
    """Print the split sizes and one person's biography and QA pairs."""
    from obliviate.errors import ObliviateError
    from obliviate.world import SPLITS, generate_world, get_profile, load_world_split

    world = generate_world(get_profile(profile))
    for name, what in SPLITS.items():
        print(f"  world:{profile}:{name:<12} {len(load_world_split(profile, name)):>5}  {what}")
    pid = person or world.people[0].id
    if pid not in world.qa:
        raise ObliviateError(f"world:{profile}: no person {pid!r}; ids run from p000 to {world.people[-1].id}")
    who = next(p for p in world.people if p.id == pid)
    print(f"\n{who.id} ({who.role}): {world.bios[pid].text}\n")
    for qa in world.qa[pid]:
        print(f"  Q: {qa.question}\n  A: {qa.answer}\n     paraphrase: {qa.paraphrased_answer}\n"
              f"     perturbed:  {qa.perturbed_answers[0]} (+{len(qa.perturbed_answers) - 1})")
