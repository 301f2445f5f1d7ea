"""Decode throughput over batch 1..1024: where tokens/s falls as one more sequence joins (issue 22).

For each model x chip, decode at a short context (the KV cache small, so the batch fits far)
is costed at every batch size while it fits. A fall is a batch b whose tokens/s is below the
best of the smaller batches. Printed per pair: how many batches fall, the worst fall and, for
it, the GEMM whose time grew most, its tile before and after and what binds it after. A fall
bound by compute is tile padding; one bound by L2 or HBM is an operand read once more (its
rows no longer fit one cluster of tiles).

python benchmarks/decode_sawtooth.py [--context N] [--models a,b] [--chip c,d]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hardware import load_system  # noqa: E402
from sim.cost.simulate import simulate  # noqa: E402
from workloads.llm import Decode  # noqa: E402
from workloads.loader import load_model  # noqa: E402

MODELS = "llama-2-7b,llama-3-8b,mixtral-8x7b,llama-2-70b"
CHIPS = "a100-sxm-80gb,h100-sxm,h200,b200,mi300x"


def _gemms(result) -> dict[str, object]:
    return {c.op.name: c for c in result.costs if c.op.kind.value == "gemm"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--context", type=int, default=128)
    ap.add_argument("--models", default=MODELS)
    ap.add_argument("--chip", default=CHIPS)
    ap.add_argument("--max-batch", type=int, default=1024)
    args = ap.parse_args()
    print(f"decode, context {args.context}, batch 1..{args.max_batch} (tp 8 above 30B params)")
    head = f"{'model':14} {'chip':14} {'fits':>5} {'falls':>5} {'worst':>10} {'fall':>7}  cause"
    print(head)
    print("-" * len(head))
    for name in args.models.split(","):
        model = load_model(name)
        tp = 8 if model.n_params() > 3e10 else 1
        for chip in args.chip.split(","):
            system = load_system(chip, tp)
            best = None  # (batch, tokens/s, result) of the best smaller batch
            falls, worst, last = 0, None, 0
            for b in range(1, args.max_batch + 1):
                r = simulate(Decode(model=model, batch=b, context=args.context, tp=tp), system,
                             check_memory=False)  # fmt: skip
                if not r.memory.fits:
                    break
                last = b
                rate = r.throughput["tokens_per_s"]
                if best is not None and rate < best[1] * (1 - 1e-9):
                    falls += 1
                    drop = rate / best[1] - 1
                    if worst is None or drop < worst[0]:
                        worst = (drop, best[0], b, best[2], r)
                if best is None or rate > best[1]:
                    best = (b, rate, r)
            if worst is None:
                print(f"{name:14} {chip:14} {last:5d} {0:5d} {'-':>10} {'-':>7}  -")
                continue
            drop, b0, b1, r0, r1 = worst
            g0, g1 = _gemms(r0), _gemms(r1)
            op = max(g1, key=lambda k: g1[k].total_time_s - g0[k].total_time_s)
            c0, c1 = g0[op], g1[op]
            why = c1.binding_level if c1.bound == "memory" else c1.bound
            cause = (f"{op} {c1.time_s / c0.time_s - 1:+.0%}: tile {c0.tile} -> {c1.tile}, "
                     f"bound {why}")  # fmt: skip
            print(f"{name:14} {chip:14} {last:5d} {falls:5d} {b0:>4}->{b1:<4} {drop:+7.1%}"
                  f"  {cause}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
