"""Cost of the robustness attacks, measured side by side in one run.

    python benchmarks/bench_attacks.py                  # smollm2-135m, demo:forget (goal: suite < 3 min)
    python benchmarks/bench_attacks.py --samples 32 --new-tokens 32 --skip-suite

1. n sampled continuations of one prompt: the prompt prefilled once and its KV cache shared by
   the n rows (``obliviate.evaluation.sampling``) against ``generate`` on n independent rows
   (which prefills the prompt n times). Same n, same number of new tokens, same model.
2. The wall time of the whole attack suite (sample, quantize, relearn, prompts, mia; defaults)
   on the demo forget set against the demo held-out set, per attack.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OBLIVIATE_QUIET", "1")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--forget", default="demo:forget")
    ap.add_argument("--heldout", default="demo:heldout")
    ap.add_argument("--retain", default="demo:retain")
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--skip-suite", action="store_true")
    args = ap.parse_args(argv)

    import torch

    from obliviate.data.encode import encode_records
    from obliviate.data.sources import load_data
    from obliviate.evaluation.attacks import ATTACKS, PROBES, AttackConfig, Suite
    from obliviate.evaluation.sampling import sample_continuations
    from obliviate.models import load_model
    from obliviate.utils import default_device

    model, tok = load_model(args.model, device=default_device())  # CUDA when there is a GPU
    forget, heldout, retain = load_data(args.forget), load_data(args.heldout), load_data(args.retain)
    example = max(encode_records(forget, tok), key=lambda e: e.prompt_len)
    print(f"model {args.model} on {model.device}, torch threads {torch.get_num_threads()}; prompt of {example.prompt_len} tokens, "
          f"n={args.samples}, {args.new_tokens} new tokens")
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.repeats):
        for shared in (True, False):
            t = time.perf_counter()
            sample_continuations(model, tok, [example], n=args.samples, max_new_tokens=args.new_tokens,
                                 shared_prefill=shared)
            times[shared].append(time.perf_counter() - t)
    best = {k: min(v) for k, v in times.items()}
    print(f"shared prefill: {best[True]:.2f} s   independent rows: {best[False]:.2f} s   "
          f"ratio independent/shared: {best[False] / best[True]:.2f}x (best of {args.repeats})")
    if args.skip_suite:
        return 0

    suite = Suite(model, tok, forget, heldout, AttackConfig(), retain=retain)
    total = time.perf_counter()
    for name in ATTACKS:
        t = time.perf_counter()
        results = PROBES[name](suite)
        verdicts = ", ".join(f"{r.attack} {r.verdict}" for r in results)
        print(f"{name:9s} {time.perf_counter() - t:6.1f} s   {verdicts}", flush=True)
    elapsed = time.perf_counter() - total
    print(f"full suite on {args.forget} ({len(forget)} records) vs {args.heldout} ({len(heldout)}): {elapsed:.0f} s "
          f"(goal < 180 s: {'met' if elapsed < 180 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
