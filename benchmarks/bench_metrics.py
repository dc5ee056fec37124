"""Batched EL_n and forward-pass MA vs the straightforward per-position loops, side by side.

    .venv/bin/python benchmarks/bench_metrics.py                       # tiny GPT-2-vocab model, 128 x 200
    .venv/bin/python benchmarks/bench_metrics.py --model smollm2-135m --records 4 --length 64

Data: rows the model half-memorizes (its own greedy text with a few tokens replaced), so EL and
MA are a real mix of reproduced and diverging continuations; on real text a random model scores
0 everywhere and "the values agree" would say nothing. Both implementations run on the same
model and rows. The KUMPR-style EL loop costs O(T^2) sequential generate steps, so it runs on a
subset (``--loop-records``, default 32 of 128); the EL speed-up is measured on that same subset,
and the output also extrapolates to all rows (and says so).

Goal (issue 3): EL_10 >= 20x faster than the loop, MA >= 50x.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OBLIVIATE_QUIET", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from obliviate.data.encode import Encoded
from obliviate.metrics import extraction_likelihood, memorization_accuracy
from obliviate.metrics.reference_loops import reference_extraction_likelihood, reference_memorization_accuracy


def tiny_model(vocab: int, seed: int = 0):
    """A 2-layer GPT-2 (learned absolute positions, like GPT-Neo) with a small vocabulary."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=256, n_embd=64, n_layer=2, n_head=4,
                                      bos_token_id=0, eos_token_id=0, pad_token_id=0)).eval()


def partly_memorized_rows(model, records: int, length: int, vocab: int, flips: int, seed: int = 0) -> list[Encoded]:
    """The model's own greedy text from random 8-token starts, with ``flips`` tokens per row
    replaced: continuations reproduce the row until they hit a replaced token, so EL/MA are a
    real mix (a random model on real text scores 0 everywhere and agreement would mean nothing)."""
    from obliviate.metrics._model import greedy_generation_config

    gen = torch.Generator().manual_seed(seed)
    starts = torch.randint(1, vocab, (records, 8), generator=gen)
    cfg = greedy_generation_config(max_new_tokens=length - 8, pad_token_id=0, eos_token_id=[])
    with torch.no_grad():
        seqs = model.generate(input_ids=starts, attention_mask=torch.ones_like(starts), generation_config=cfg)
    rows = []
    for k, seq in enumerate(seqs.tolist()):
        for pos in torch.randint(8, length, (flips,), generator=gen).tolist():
            seq[pos] = int(torch.randint(1, vocab, (1,), generator=gen))
        rows.append(Encoded(tuple(seq), length - 50, str(k)))
    return rows


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny", help="'tiny' (built here) or any model spec, e.g. smollm2-135m")
    ap.add_argument("--vocab", type=int, default=2048, help="vocabulary of the tiny model")
    ap.add_argument("--records", type=int, default=128)
    ap.add_argument("--length", type=int, default=200, help="tokens per row (the last 50 are the 'suffix')")
    ap.add_argument("--flips", type=int, default=6, help="tokens replaced per row")
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--region", default="all", choices=["all", "completion"])
    ap.add_argument("--loop-records", type=int, default=None,
                    help="records for the reference loops (default: all for MA, 32 for EL)")
    ap.add_argument("--el-batch-size", type=int, default=1024, help="rows decoded together by batched EL")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for the tiny model)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    if args.model == "tiny":
        model = tiny_model(args.vocab)
        desc = f"tiny GPT-2 (2 layers, d=64, vocab {args.vocab}, learned absolute positions), random init"
    else:
        from obliviate.models import load_model

        model, _ = load_model(args.model)
        desc = args.model
    model.to(args.device)
    rows = partly_memorized_rows(model, args.records, args.length, model.config.vocab_size, args.flips)
    loop_el = min(args.loop_records or 32, len(rows))
    loop_ma = min(args.loop_records or len(rows), len(rows))
    print(f"model : {desc}\ndata  : {len(rows)} rows x {args.length} tokens: the model's own greedy text with "
          f"{args.flips} tokens replaced per row\nthreads {torch.get_num_threads()}, device {args.device}, "
          f"region {args.region}, EL n={args.n}, batched EL rows/chunk {args.el_batch_size}\n", flush=True)

    # ---- MA
    ma_fast, t_ma_fast = timed(lambda: memorization_accuracy(model, rows, region=args.region))
    sub = rows[:loop_ma]
    ma_ref, t_ma_ref = timed(lambda: reference_memorization_accuracy(model, sub, region=args.region))
    per_fast, per_ref = t_ma_fast / len(rows), t_ma_ref / loop_ma
    print(f"MA   forward pass : {t_ma_fast:8.2f} s for {len(rows)} records  (mean MA {ma_fast.value:.4f})")
    print(f"MA   loop         : {t_ma_ref:8.2f} s for {loop_ma} records  (one generate per position)")
    print(f"MA   speed-up     : {per_ref / per_fast:8.1f}x per record;  values identical: "
          f"{ma_fast.per_sample[:loop_ma] == ma_ref.per_sample}\n", flush=True)

    # ---- EL
    sub = rows[:loop_el]
    el_sub, t_el_sub = timed(lambda: extraction_likelihood(model, sub, n=args.n, region=args.region,
                                                           batch_size=args.el_batch_size))
    el_ref, t_el_ref = timed(lambda: reference_extraction_likelihood(model, sub, n=args.n, region=args.region))
    pairs = [(a, b) for pa, pb in zip(el_sub.details["per_position"], el_ref.details["per_position"])
             for a, b in zip(pa, pb)]
    differ = sum(a != b for a, b in pairs)
    print(f"EL_{args.n} batched    : {t_el_sub:8.2f} s for {loop_el} records  (mean EL {el_sub.value:.4f})")
    print(f"EL_{args.n} loop       : {t_el_ref:8.2f} s for {loop_el} records  (one generate per start position)")
    print(f"EL_{args.n} speed-up   : {t_el_ref / t_el_sub:8.1f}x on the same {loop_el} records;  identical at "
          f"every position: {differ == 0} ({differ} of {len(pairs)} positions differ)", flush=True)
    if loop_el < len(rows):
        el_all, t_el_all = timed(lambda: extraction_likelihood(model, rows, n=args.n, region=args.region,
                                                               batch_size=args.el_batch_size))
        est = t_el_ref / loop_el * len(rows)
        print(f"EL_{args.n} batched, all {len(rows)} records: {t_el_all:.2f} s (mean EL {el_all.value:.4f}); "
              f"the loop would need ~{est:.0f} s (extrapolated linearly from {loop_el} records) -> {est / t_el_all:.1f}x")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
