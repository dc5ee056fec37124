"""``obliviate demo``: audit -> unlearn -> audit, end to end, on a real model and real memorized text.

The built-in forget set (``demo:forget``) is six open-source licence notices that
SmolLM2-135M-Instruct has partly memorized; ``demo:retain`` holds famous public-domain passages
it also knows (they must survive), ``demo:heldout`` text it never saw (it calibrates what
"forgotten" means for this model: no more memorized than unseen text, Jang et al.'s rule) and
``demo:pool`` the candidates from which ICU picks one analogous sample per forget sample.

The demo folder holds ``audit_before.json`` and ``audit_after.json`` (every split, per record),
``demo.json`` (the before/after table), ``attacks.json`` (the cheap robustness attacks on the
unlearned model: sampling and 8/4-bit quantization, judged against the held-out text), and ``unlearn/``: the ``obliviate unlearn`` run
(config.yaml, model/, metrics.jsonl, per_sample.jsonl, summary.json, report.html). A killed
demo continues with ``--resume``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from obliviate.errors import ObliviateError
from obliviate.utils import default_device

log = logging.getLogger(__name__)

DEMO_SPLITS = {"forget": "demo:forget", "retain": "demo:retain", "heldout": "demo:heldout"}
# What each split is audited for. EL_n (a greedy decode from every divergence point) is the
# costly metric on a 135M model on CPU, so it is measured where the claim is: the forget set.
SPLIT_METRICS = {"forget": ["ma", "el", "bleu_icu", "bertscore"], "retain": ["ma", "bleu_icu", "bertscore"],
                 "heldout": ["ma"]}


@dataclass
class DemoConfig:
    model: str = "smollm2-135m"
    method: str = "icu"
    el_n: int = 4  # SmolLM2-135M reproduces short runs, not 10-token stretches (EL_10 is ~0 already)
    # Unlearning settings sized for a 135M model on 2 CPU cores (the ICU paper's lr 5e-6 and
    # batch 8 were tuned for GPT-Neo on a GPU and would need dozens of epochs here).
    # The run stops on MA alone (Jang et al.'s rule: no more memorized than never-seen text, here
    # demo:heldout); EL_n is audited before and after, not after every epoch (eval.el=false).
    overrides: list[str] = field(default_factory=lambda: [
        "train.lr=3e-5", "train.batch_size=6", "stop.max_epochs=6", "stop.calibrate_on=demo:heldout",
        "eval.el=false", "stop.el_threshold=null", "eval.ma_region=completion",
        # Greedy instead of ICU's 2 beams for refinement's generations: one batch for all six
        # samples (beam search batches per length) and half the decoding work.
        "refinement.num_beams=1",
        # The paper's rule (BERTScore AND BLEU below their thresholds). The reference code's OR rule
        # drops every notice after one step here: unsmoothed BLEU-4 of a greedy continuation is 0 as
        # soon as it leaves the text, long before the notice is no more memorized than unseen text.
        "refinement.rule=paper",
    ])
    # The cheap attacks at the end: sampling leak@k (n=8 instead of the default 32, to keep the demo
    # within minutes) and 8/4-bit weight quantization, judged on MA like the run. "" skips them.
    attacks: str = "sample,quantize"
    attack_samples: int = 8


def _audit_split(model, tokenizer, name: str, el_n: int, bert_scorer) -> dict[str, Any]:
    from obliviate.auditing import audit

    metrics = [f"el_{el_n}" if m == "el" else m for m in SPLIT_METRICS[name]]
    result = audit(model, tokenizer, DEMO_SPLITS[name], metrics=metrics, el_n=el_n, region="completion",
                   bert_scorer=bert_scorer)
    return {"spec": DEMO_SPLITS[name], "summary": result.summary, "rows": result.rows}


def _audit_all(model, tokenizer, el_n: int, path: Path, bert_scorer) -> dict[str, Any]:
    """Audit every demo split once; the result is cached in ``path`` (a resumed demo reuses it)."""
    from obliviate.data.io import read_json, write_json

    if path.is_file():
        return read_json(path)
    audits = {name: _audit_split(model, tokenizer, name, el_n, bert_scorer) for name in DEMO_SPLITS}
    write_json(path, audits)
    return audits


# Rows of the before/after table: (split, metric key, label, what a good unlearning does).
TABLE = [
    ("forget", "ma", "forget MA", "drops to the held-out level"),
    ("forget", "el", "forget EL_{n}", "drops"),
    ("forget", "bleu_icu", "forget BLEU", "drops"),
    ("forget", "bertscore_f1", "forget BERTScore F1", "drops"),
    ("retain", "ma", "retain MA", "stays"),
    ("retain", "bleu_icu", "retain BLEU", "stays"),
    ("heldout", "ma", "held-out MA", "stays"),
]
LEGEND = ("MA: memorization accuracy (greedy next token = true token); EL_n: extraction likelihood; "
          "BLEU / BERTScore: greedy continuation vs the true text.")


def build_table(before: dict[str, Any], after: dict[str, Any], el_n: int) -> list[dict[str, Any]]:
    rows = []
    for split, key, label, goal in TABLE:
        name = f"el_{el_n}" if key == "el" else key
        rows.append({"split": split, "metric": name, "label": label.format(n=el_n), "goal": goal,
                     "before": before[split]["summary"].get(name), "after": after[split]["summary"].get(name)})
    return rows


def _attack(model, tokenizer, cfg: DemoConfig, path: Path) -> list[dict[str, Any]]:
    """The cheap attacks on the unlearned model, judged against demo:heldout; cached in ``path``."""
    from obliviate.data.io import read_json, write_json
    from obliviate.data.sources import load_data
    from obliviate.evaluation.attacks import AttackConfig, run_attacks
    from obliviate.models import load_model

    if path.is_file():
        return read_json(path)
    log.info("attacking the unlearned model: %s", cfg.attacks)
    original, _ = load_model(cfg.model, device=default_device())  # the run trained the first copy in place
    n = cfg.attack_samples
    # MA only, as the demo's own stopping rule (EL_n from every prefix is the costly metric here).
    attack_cfg = AttackConfig(n_samples=n, el=False, region="completion")
    results = run_attacks(model, tokenizer, load_data(DEMO_SPLITS["forget"]), load_data(DEMO_SPLITS["heldout"]),
                          cfg.attacks, original=original, config=attack_cfg)
    found = [r.to_dict() for r in results]
    write_json(path, found)
    return found


def print_table(rows: list[dict[str, Any]], thresholds: dict[str, Any], seconds: float,
                attacks: list[dict[str, Any]] = ()) -> None:  # type: ignore[assignment]
    from rich.console import Console
    from rich.table import Table

    table = Table(title="obliviate demo: SmolLM2-135M-Instruct forgets six licence notices")
    for col in ("measure", "before", "after", "goal"):
        table.add_column(col, justify="right" if col in ("before", "after") else "left")
    for r in rows:
        table.add_row(r["label"], f"{r['before']:.3f}", f"{r['after']:.3f}", r["goal"])
    console = Console()
    console.print(table)
    console.print(LEGEND)
    if thresholds:
        shown = ", ".join(f"{k} < {v:.3f}" for k, v in thresholds.items() if isinstance(v, float))
        console.print(f"'forgotten' thresholds (calibrated on held-out text): {shown}")
    if attacks:
        robust = Table(title="Does the forgetting survive the cheap attacks? (judged against held-out text)")
        for col in ("attack", "verdict", "the numbers behind it"):
            robust.add_column(col)
        for a in attacks:
            style = "green" if a["verdict"] == "held" else "red"
            robust.add_row(a["attack"], f"[{style}]{a['verdict']}[/{style}]", a["rule"])
        console.print(robust)
        console.print("held: the forget set is reproduced no more than never-seen text under the attack; "
                      "recovered: the attack brings it back. sample: n=8 samples per prompt (leak@k); "
                      "quantize8/4: the unlearned weights rounded to 8/4-bit integers.")
    console.print(f"finished in {seconds / 60:.1f} min")


def run_demo(out: str | Path = "runs/demo", *, resume: bool = False, overwrite: bool = False,
             config: DemoConfig | None = None) -> dict[str, Any]:
    """Run the demo into ``out``; returns the before/after table and where everything was written."""
    import obliviate
    from obliviate.data.io import read_json, write_json
    from obliviate.metrics import get_bert_scorer
    from obliviate.models import load_model
    from obliviate.runfolder import RunFolder

    cfg = config or DemoConfig()
    started = time.perf_counter()
    out = Path(out)
    if resume and (out / "demo.json").is_file():
        raise ObliviateError(f"{out}: the demo already finished there; see {out / 'demo.json'} "
                             "(or run again with --overwrite)")
    folder = RunFolder.prepare(out, "demo", overwrite=overwrite, resume=resume)
    run = out / "unlearn"
    resume_run = resume and (run / "config.yaml").is_file()

    log.info("loading %s", cfg.model)
    model, tokenizer = load_model(cfg.model, device=default_device())  # the audits run on the GPU too
    scorer = get_bert_scorer()
    folder.begin()
    log.info("auditing before unlearning (BERTScore backbone: %s)", scorer.backbone)
    before = _audit_all(model, tokenizer, cfg.el_n, out / "audit_before.json", scorer)

    if resume_run:
        result = obliviate.unlearn(model, tokenizer=tokenizer, out=run, resume=True)
    else:
        result = obliviate.unlearn(model, "demo:forget", tokenizer=tokenizer, method=cfg.method, pool="demo:pool",
                                   retain="demo:retain", out=run, overrides=cfg.overrides, overwrite=True)
    log.info("auditing after unlearning")
    after = _audit_all(result.model, tokenizer, cfg.el_n, out / "audit_after.json", scorer)

    attacks = _attack(result.model, tokenizer, cfg, out / "attacks.json") if cfg.attacks else []
    rows = build_table(before, after, cfg.el_n)
    summary = read_json(run / "summary.json")
    seconds = time.perf_counter() - started
    demo = {"model": cfg.model, "method": cfg.method, "el_n": cfg.el_n, "bertscore_backbone": scorer.backbone,
            "table": rows, "thresholds": summary.get("thresholds", {}), "stop_reason": summary.get("stop_reason"),
            "epochs": summary.get("epochs"), "seconds": round(seconds, 1),
            "attacks": [{"attack": a["attack"], "verdict": a["verdict"], "rule": a["rule"]} for a in attacks]}
    write_json(out / "demo.json", demo)
    report = run / "report.html"  # written by the unlearning run itself
    if report.is_file():
        demo["report"] = str(report)
    print_table(rows, demo["thresholds"], seconds, attacks)
    log.info("run folder: %s%s", out, f" (open {report})" if "report" in demo else "")
    return demo

