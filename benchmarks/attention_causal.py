"""Causal over full attention rate: the project's H100 measurements against roofsim.

    python benchmarks/attention_causal.py [--csv PATH] [--chip h100-sxm]

Reads the prefill rows of an attention microbenchmark CSV (benchmarks/microbench, default the
2026-11-23 H100 run: PyTorch SDPA's flash backend, FlashAttention-2) and prints, for each batch
and sequence length measured both ways, the causal run's FLOP rate over the full run's, measured
and as roofsim costs the same shape with the ``fa2`` kernel (whose causal tail is the in-order
block launch, sim/cost/roofline.py cost_attentions). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_CSV = ROOT / "benchmarks/microbench/results/h100-sxm-2026-11-23/attention.csv"


def predicted_rate(system, batch: int, heads: int, seq: int, head_dim: int, causal: bool) -> float:
    """roofsim's FLOP/s for one forward flash attention of this shape (fa2 kernel)."""
    from sim.cost.roofline import cost_ops
    from workloads.build import Builder
    from workloads.ops import Attention

    spec = Attention(batch=batch, n_q_heads=heads, n_kv_heads=heads, q_len=seq, kv_len=seq,
                     qk_dim=head_dim, v_dim=head_dim, causal=causal, act_bytes=2.0,
                     kv_bytes_per_token=4.0 * head_dim, kernel="fa2")  # fmt: skip
    op = Builder("bf16", 2.0, 2.0).attention("attention", spec)
    return op.flops / cost_ops([op], system)[0].time_s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", default=str(DEFAULT_CSV), help="attention microbenchmark CSV")
    ap.add_argument("--chip", default="h100-sxm", help="chip preset the CSV was measured on")
    args = ap.parse_args(argv)
    from hardware import ConfigError, load_system

    try:
        system = load_system(args.chip)
        with open(args.csv, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("phase") == "prefill"]
    except (ConfigError, OSError) as exc:
        print(f"attention_causal: {exc}", file=sys.stderr)
        return 2
    measured: dict[tuple[int, int, int, int, bool], float] = {}
    for r in rows:
        key = (int(r["batch"]), int(r["n_heads"]), int(r["q_len"]), int(r["head_dim"]),
               r["causal"] == "True")  # fmt: skip
        measured[key] = float(r["flops"]) / float(r["time_s"])
    print("| batch | heads | seq | measured causal/full | roofsim causal/full |")
    print("|---|---|---|---|---|")
    for b, h, s, d, causal in sorted(measured):
        if not causal or (b, h, s, d, False) not in measured:
            continue
        m = measured[(b, h, s, d, True)] / measured[(b, h, s, d, False)]
        p = predicted_rate(system, b, h, s, d, True) / predicted_rate(system, b, h, s, d, False)
        print(f"| {b} | {h} | {s} | {m:.2f} | {p:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
