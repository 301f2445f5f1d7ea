"""Where speculative decoding stops paying: its speed-up over plain decode by batch, per chip.

At batch 1 a decode step reads every weight for one token, so checking K+1 tokens costs about
what one costs and speculation pays nearly its tokens per step. As the batch grows the check's
K+1 rows per sequence push the GEMMs toward compute-bound, the drafter's passes grow with the
batch, and the gain shrinks, then turns into a loss. Printed per chip and drafter: the speed-up
at each batch and the largest batch at which speculation still wins (tokens/s over plain
decode, both at the same batch and context).

python benchmarks/speculative_batch.py [--model M] [--chips a,b] [--k K] [--acceptance A]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hardware import load_system  # noqa: E402
from sim.cost.simulate import simulate  # noqa: E402
from workloads.llm import Decode, Speculation  # noqa: E402
from workloads.loader import load_model  # noqa: E402

BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="llama-3-8b")
    ap.add_argument("--chips", default="a100-sxm-80gb,h100-sxm,b200")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--acceptance", type=float, default=0.7)
    ap.add_argument("--context", type=int, default=1024)
    args = ap.parse_args()
    model = load_model(args.model)
    drafts = ("ngram", "mtp")
    print(f"{args.model}, context {args.context}, k = {args.k}, acceptance {args.acceptance}: "
          "speculative tokens/s over plain decode, by batch")  # fmt: skip
    print(f"{'chip':15} {'draft':6} " + " ".join(f"{b:>6}" for b in BATCHES) + "  wins up to")
    for chip in args.chips.split(","):
        system = load_system(chip, 1)
        for draft in drafts:
            spec = Speculation(tokens=args.k, acceptance=args.acceptance, draft=draft)
            gains = []
            for b in BATCHES:
                plain = simulate(Decode(model=model, batch=b, context=args.context), system,
                                 check_memory=False)  # fmt: skip
                fast = simulate(Decode(model=model, batch=b, context=args.context, spec=spec),
                                system, check_memory=False)  # fmt: skip
                gains.append(fast.throughput["tokens_per_s"] / plain.throughput["tokens_per_s"])
            wins = [b for b, g in zip(BATCHES, gains, strict=True) if g > 1.0]
            last = str(max(wins)) if wins else "-"
            print(f"{chip:15} {draft:6} " + " ".join(f"{g:6.2f}" for g in gains) + f"  {last}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
