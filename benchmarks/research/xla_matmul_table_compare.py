"""Compare roofsim's burst GEMM model with XLA's sm_90 / sm_100 matmul table (bf16).

Run from the repository root with the project installed; prints the 40 largest shapes. Written
2026-12-07 after the table was extracted (its entries are not validation rows).
"""

from __future__ import annotations

import csv
from pathlib import Path

from sim.studies.validate import _predict_gemm

TABLE = Path(__file__).with_name("xla-matmul-table-sm100-2026-12-07.csv")
CHIPS = {"sm_100": "b200", "sm_90": "h100-sxm"}


def main() -> None:
    with TABLE.open() as f:
        rows = list(csv.DictReader(f))
    rates: dict[tuple, tuple[float, float]] = {}
    for r in rows:
        if r["dtype"].lower() != "bf16xbf16->bf16":
            continue
        b, m, n, k = (int(r[x]) for x in "bmnk")
        row = dict(id="xla", chip=CHIPS[r["sm"]], chips=1, dtype="bf16", m=m, n=n, k=k,
                   groups=b, out_bytes=2)  # fmt: skip
        predicted, _ = _predict_gemm(row)
        rates[(r["sm"], b, m, n, k)] = (float(r["flops_per_s"]) / 1e12, predicted)
    shapes = sorted({key[1:] for key in rates}, key=lambda s: -s[0] * s[1] * s[2] * s[3])
    print("  b     m     n     k |  H100 meas  pred   err |  B200 meas  pred   err | B200/H100")
    for s in shapes[:40]:
        (hm, hp), (bm, bp) = rates[("sm_90", *s)], rates[("sm_100", *s)]
        print(f"{s[0]:3d} {s[1]:5d} {s[2]:5d} {s[3]:5d} | {hm:10.0f} {hp:5.0f} {hp / hm - 1:+5.0%} "
              f"| {bm:10.0f} {bp:5.0f} {bp / bm - 1:+5.0%} | {bm / hm:.2f} (roofsim {bp / hp:.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
