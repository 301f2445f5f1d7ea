"""Hold roofsim's flash-kernel block edges against a run's attention.csv at short sequences.

    python benchmarks/microbench/check_flash_edges.py DIR [--chip h100-sxm]
    python benchmarks/microbench/check_flash_edges.py --predict [--chip h100-sxm]

``microbench.py --sections attention --attention-grid short`` times PyTorch SDPA's flash backend
(FlashAttention-2) without a mask, 32 heads of 128, at 128..1024 tokens and batch 1..64
(``SHORT_PREFILL_L`` x ``SHORT_PREFILL_B``); the full attention grid holds 512 and 1024 at
batch 1 and 4 too. roofsim charges each wave of FA2's 128-row query blocks its own Q rows,
its first 64-key K/V block and its O rows at the wave's share of L2
(``sim.cost.roofline._flash_edges``); the question is whether that is the loss a short
sequence measures, or whether FA2's co-resident CTAs hide part of it (not modelled). For every
non-causal prefill row up to 1024 tokens this prints the measured time and roofsim's with and
without the edges (burst clock, as the validation's attention rows), their log errors (> 0:
roofsim slower) and the medians. Nothing is fitted.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from unittest import mock

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

from microbench_grid import (  # noqa: E402
    check_main,
    parsed_rows,
    print_with_without,
    read_constants,
)

from hardware import System, load_system  # noqa: E402
from sim.cost import roofline  # noqa: E402
from workloads.build import Builder  # noqa: E402
from workloads.ops import Attention  # noqa: E402

#: the longest sequence held against the edges: beyond it they are a few per cent of a block
LONGEST = 1024


def predicted(batch: int, heads: int, seq: int, head_dim: int, system: System,
              edges: bool = True) -> float:  # fmt: skip
    """Seconds of FA2's non-causal forward over ``seq`` tokens at the burst clock, with or
    without the block edges."""
    spec = Attention(batch=batch, n_q_heads=heads, n_kv_heads=heads, q_len=seq, kv_len=seq,
                     qk_dim=head_dim, v_dim=head_dim, causal=False, act_bytes=2.0,
                     kv_bytes_per_token=4.0 * head_dim)  # fmt: skip
    op = Builder("bf16", 2.0, 2.0, "fa2").attention("attention", spec)
    if edges:
        return roofline.cost_ops([op], system, steady=False)[0].time_s
    with mock.patch.object(roofline, "_flash_edges", lambda *a, **k: np.zeros(1)):
        return roofline.cost_ops([op], system, steady=False)[0].time_s


def _short_row(row: dict[str, str]) -> tuple[int, int, int, int, float] | None:
    """(batch, heads, seq, head_dim, seconds) of a flash-backend non-causal prefill row up to
    LONGEST tokens, checked; None for the others (a CPU logic test's rows among them)."""
    if row.get("phase") != "prefill" or row.get("causal") != "False":
        return None
    if not row["backend"].startswith("flash"):
        return None
    b, h, hkv, q, kv, d = (int(row[x]) for x in ("batch", "n_heads", "n_kv_heads", "q_len",
                                                  "kv_len", "head_dim"))  # fmt: skip
    if q != kv or h != hkv or q > LONGEST:
        return None
    if min(b, h, q, d) < 1:
        raise ValueError(f"batch, n_heads, q_len, head_dim must be >= 1, got {(b, h, q, d)}")
    t = float(row["time_s"])
    if not 0.0 < t < math.inf:
        raise ValueError(f"time_s must be a positive number, got {row['time_s']!r}")
    return b, h, q, d, t


def check(path: Path, chip: str) -> list[dict]:
    """One record per short non-causal prefill row: measured seconds and roofsim's with and
    without the edges."""
    system = load_system(chip, 1)
    out = []
    for _, got in parsed_rows(path, _short_row,
                              describe=lambda e: f"not an attention.csv row ({e!r})"):  # fmt: skip
        if got is None:
            continue
        b, h, q, d, t = got
        with_edges, without = (predicted(b, h, q, d, system, e) for e in (True, False))
        out.append({"batch": b, "heads": h, "seq": q, "head_dim": d, "measured_s": t,
                    "predicted_s": with_edges, "no_edges_s": without,
                    "log_error": math.log(with_edges / t),
                    "log_error_no_edges": math.log(without / t)})  # fmt: skip
    if not out:
        raise ValueError(f"{path} has no flash non-causal prefill rows up to {LONGEST} tokens: "
                         "run microbench.py --sections attention --attention-grid short on a "
                         "GPU")  # fmt: skip
    return out


def predict(chip: str) -> None:
    """roofsim's burst-clock TFLOP/s over the short grid, with / without the edges."""
    seqs, batches = read_constants("SHORT_PREFILL_L", "SHORT_PREFILL_B")
    system = load_system(chip, 1)
    print(f"{chip}: roofsim FA2 TFLOP/s at the burst clock, 32 heads of 128, no mask, with / "
          "without the block edges; rows seq, columns batch")  # fmt: skip
    print(f"{'seq':>5s} " + " ".join(f"{'b' + str(b):>13s}" for b in batches))
    for q in seqs:
        cells = []
        for b in batches:
            flops = 4.0 * b * 32 * q * q * 128
            w, wo = (flops / predicted(b, 32, q, 128, system, e) / 1e12 for e in (True, False))
            cells.append(f"{w:6.1f}/{wo:6.1f}")
        print(f"{q:5d} " + " ".join(cells))


def _report(records: list[dict]) -> None:
    print_with_without(
        records, (("batch", "batch", 5), ("heads", "heads", 5), ("seq", "seq", 5)), "edges"
    )


main = check_main("check_flash_edges", "attention", __doc__, predict, check, _report)


if __name__ == "__main__":
    raise SystemExit(main())
