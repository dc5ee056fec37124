"""The pile-extraction protocol end to end on a small model, offline, in one command.

    python benchmarks/pile_small_model.py --out runs/pile-small                 # train + evaluate
    python benchmarks/pile_small_model.py --out runs/pile-small --unlearn kumpr # + unlearn, evaluate, compare

No GPT-Neo weights can be downloaded here, so the "model that memorized the forget set" is made
in place: a 2-layer GPT-2 with GPT-2's 50,257-token vocabulary (so it sees the benchmark's own
token ids) is trained from scratch on the first ``--rows`` rows of ``lm_extraction_128_<set>``
until it reproduces them. Then, each step an ordinary CLI command (printed before it runs):

1. ``obliviate eval --benchmark pile`` on the first ``--eval-rows`` rows (trained + never seen ones);
2. with ``--unlearn METHOD``: ``obliviate unlearn`` on the trained rows (full 200-token rows, as
   MA/EL see them), ``obliviate eval`` of the run folder, ``obliviate compare`` of before/after.

Everything lands in ``--out`` and is reused when the command is run again.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OBLIVIATE_QUIET", "1")
DATA = Path(os.environ.get("OBLIVIATE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "pile-extraction"


def train_memorizer(data: Path, out: Path, *, set_: int, rows: int, steps: int, seed: int = 0) -> Path:
    """A tiny GPT-2 trained on ``rows`` benchmark rows (all 200 tokens) until it reproduces them."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from obliviate.data.pile import PileExtraction
    from obliviate.models import save_model

    if (out / "config.json").is_file():
        return out
    bench = PileExtraction.open(data)
    batch = torch.from_numpy(bench.rows[bench.forget_ids(set_)[:rows]])
    tok = bench.tokenizer
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=256, n_embd=64, n_layer=2, n_head=2,
                     bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id)
    model = GPT2LMHeadModel(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    started = time.perf_counter()
    for step in range(1, steps + 1):
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        if step % 20 == 0 or step == steps:
            print(f"  step {step}/{steps}: loss {loss.item():.3f} ({time.perf_counter() - started:.0f} s)", flush=True)
    model.eval()
    with torch.no_grad():
        ma = (model(input_ids=batch).logits[:, :-1].argmax(-1) == batch[:, 1:]).float().mean().item()
    print(f"  trained: MA on its {rows} rows = {ma:.3f}")
    return save_model(model, tok, out)


def obliviate(*args: str) -> None:
    cmd = [sys.executable, "-m", "obliviate.cli", *args]
    print("$ obliviate " + " ".join(shlex.quote(a) for a in args), flush=True)
    subprocess.run(cmd, check=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/pile-small")
    ap.add_argument("--data", default=str(DATA), help="the pile-extraction folder (see docs/benchmarks.md, Data files)")
    ap.add_argument("--set", type=int, default=0, help="forget set 0-4")
    ap.add_argument("--rows", type=int, default=4, help="rows the small model memorizes")
    ap.add_argument("--eval-rows", type=int, default=8, help="rows evaluated (the first --rows are memorized)")
    ap.add_argument("--steps", type=int, default=120, help="training steps of the small model")
    ap.add_argument("--unlearn", default=None, help="also unlearn the memorized rows with this method (e.g. kumpr)")
    args = ap.parse_args(argv)
    out, data = Path(args.out), Path(args.data)
    if not (data / "forget_sets.json").is_file():
        ap.error(f"{data}: not the pile-extraction folder (no forget_sets.json); pass --data")

    print(f"1. a small GPT-2 memorizes {args.rows} rows of lm_extraction_128_{args.set}")
    model = train_memorizer(data, out / "model", set_=args.set, rows=args.rows, steps=args.steps)
    common = ["--benchmark", "pile", "--data", str(data), "--limit", str(args.eval_rows), f"set={args.set}"]
    before = out / "eval-before"
    if not (before / "eval.json").is_file():
        obliviate("eval", "--model", str(model), *common, "--out", str(before), "--reference",
                  "--label", "small GPT-2 (before)")
    if not args.unlearn:
        return 0

    from obliviate.data.io import write_records
    from obliviate.data.pile import PileExtraction

    forget = out / "forget.jsonl"  # 150-token context + 50-token suffix: the whole row, as MA/EL score it
    if not forget.is_file():
        bench = PileExtraction.open(data)
        write_records(bench.records(bench.forget_ids(args.set)[:args.rows], context=150), forget)
    run = out / args.unlearn
    if not (run / "summary.json").is_file():
        resume = ["--resume"] if (run / "config.yaml").is_file() else \
            ["--model", str(model), "--forget", str(forget), "--method", args.unlearn, "train.lr=1e-3",
             "stop.ma_threshold=0.5994", "stop.el_threshold=0.0499", "stop.max_epochs=30", "report.samples=2"]
        obliviate("unlearn", "--out", str(run), *resume)
    if not (run / "eval" / "pile" / "eval.json").is_file():
        obliviate("eval", "--model", str(run), *common)
    obliviate("compare", str(before), str(run), "--columns", "forget/*,wiki/ppl",
              "--markdown", str(out / "table.md"), "--csv", str(out / "table.csv"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
