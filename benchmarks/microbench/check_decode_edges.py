"""Hold roofsim's memory-bound flash-decode edge stall against a run's attention.csv.

    python benchmarks/microbench/check_decode_edges.py DIR [--chip h100-sxm]
    python benchmarks/microbench/check_decode_edges.py --predict [--chip h100-sxm]

``microbench.py --sections attention --attention-grid decode-edges`` times PyTorch SDPA's flash
backend (FlashAttention-2) with one query a sequence over the same ``DECODE_EDGE_TOKENS``
cached tokens a call, split into batch = tokens / context sequences at each context of
``DECODE_EDGE_CTX``, 32 query heads of 128 over 32 and 8 KV heads (the full grid holds them
too). The bytes stay; the CTAs, and so the waves, grow as the context shrinks. roofsim charges
each memory-bound wave of FA2 ``_FLASH_MEMORY_EDGE_ROUND_TRIPS`` round trips of the chip's
main-memory latency (``sim.cost.roofline``), fitted to four rows of the H100 run of 2026-11-23
(512 and 2048 tokens, 32 KV heads); this grid's other contexts are its test. For every decode
row of the flash backend this prints the measured time and roofsim's with and without the
stall (burst clock, as the validation's attention rows), their log errors (> 0: roofsim
slower) and the medians. Nothing is fitted.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from unittest import mock

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


def predicted(batch: int, heads: int, kv_heads: int, context: int, head_dim: int,
              system: System, stall: bool = True) -> float:  # fmt: skip
    """Seconds of FA2's decode over ``context`` cached tokens a sequence at the burst clock,
    with or without the memory-bound waves' edge stall."""
    spec = Attention(batch=batch, n_q_heads=heads, n_kv_heads=kv_heads, q_len=1,
                     kv_len=context, qk_dim=head_dim, v_dim=head_dim, causal=False,
                     act_bytes=2.0, kv_bytes_per_token=4.0 * head_dim)  # fmt: skip
    op = Builder("bf16", 2.0, 2.0, "fa2").attention("attention", spec)
    if stall:
        return roofline.cost_ops([op], system, steady=False)[0].time_s
    with mock.patch.object(roofline, "_FLASH_MEMORY_EDGE_ROUND_TRIPS", 0.0):
        return roofline.cost_ops([op], system, steady=False)[0].time_s


def _decode_row(row: dict[str, str]) -> tuple[int, int, int, int, int, float] | None:
    """(batch, heads, kv heads, context, head_dim, seconds) of a flash-backend decode row,
    checked; None for the others (prefill rows, a CPU logic test's default-backend rows)."""
    if row.get("phase") != "decode" or not row["backend"].startswith("flash"):
        return None
    b, h, hkv, q, kv, d = (int(row[x]) for x in ("batch", "n_heads", "n_kv_heads", "q_len",
                                                  "kv_len", "head_dim"))  # fmt: skip
    if q != 1:
        raise ValueError(f"a decode row has q_len 1, got {q}")
    if min(b, h, hkv, kv, d) < 1 or h % hkv:
        raise ValueError(f"batch, n_heads, n_kv_heads (dividing n_heads), kv_len, head_dim must "
                         f"be >= 1, got {(b, h, hkv, kv, d)}")  # fmt: skip
    t = float(row["time_s"])
    if not 0.0 < t < math.inf:
        raise ValueError(f"time_s must be a positive number, got {row['time_s']!r}")
    return b, h, hkv, kv, d, t


def check(path: Path, chip: str) -> list[dict]:
    """One record per flash decode row: measured seconds and roofsim's with and without the
    edge stall."""
    system = load_system(chip, 1)
    out = []
    for _, got in parsed_rows(path, _decode_row,
                              describe=lambda e: f"not an attention.csv row ({e!r})"):  # fmt: skip
        if got is None:
            continue
        b, h, hkv, kv, d, t = got
        with_stall, without = (predicted(b, h, hkv, kv, d, system, s) for s in (True, False))
        out.append({"batch": b, "heads": h, "kv_heads": hkv, "context": kv, "head_dim": d,
                    "measured_s": t, "predicted_s": with_stall, "no_stall_s": without,
                    "log_error": math.log(with_stall / t),
                    "log_error_no_stall": math.log(without / t)})  # fmt: skip
    if not out:
        raise ValueError(f"{path} has no flash decode rows: run microbench.py --sections "
                         "attention --attention-grid decode-edges on a GPU")  # fmt: skip
    return out


def predict(chip: str) -> None:
    """roofsim's burst-clock microseconds over the decode-edge grid, with / without the stall."""
    tokens, contexts = read_constants("DECODE_EDGE_TOKENS", "DECODE_EDGE_CTX")
    system = load_system(chip, 1)
    print(f"{chip}: roofsim FA2 decode over {tokens} cached tokens a call, 32 query heads of "
          "128, microseconds at the burst clock with / without the edge stall")  # fmt: skip
    print(f"{'context':>7s} {'batch':>6s} {'32 KV heads':>17s} {'8 KV heads':>17s}")
    for kv in contexts:
        b = tokens // kv
        cells = [f"{predicted(b, 32, hkv, kv, 128, system, s) * 1e6:7.1f}"
                 for hkv in (32, 8) for s in (True, False)]  # fmt: skip
        print(f"{kv:7d} {b:6d} {cells[0]} /{cells[1]} {cells[2]} /{cells[3]}")


def _report(records: list[dict]) -> None:
    print_with_without(
        records, (("batch", "batch", 5), ("kv_h", "kv_heads", 4), ("ctx", "context", 6)), "stall"
    )


main = check_main("check_decode_edges", "attention", __doc__, predict, check, _report)


if __name__ == "__main__":
    raise SystemExit(main())
