"""Fit a chip's intra-node all-reduce link parameters to a measured NCCL all-reduce table.

The link model (``sim/cost/collectives.py``): NCCL's low-latency protocol (LL) at half the link
bandwidth and ``intra_node_latency`` per ring step, its bulk protocol (Simple) at the full
bandwidth x ``intra_node_achievable_fraction`` and ``intra_node_simple_latency`` per step, the
faster of the two taken, plus one kernel's fixed cost (the chip's ``overhead.kernel_s``), as
validation's all-reduce rows cost it. The three parameters minimise the squared log error of
that time over the rows of the groups fitted; the other groups are held out and reported.

    python benchmarks/fit_links.py CHIP TABLE.csv [--fit 2,8] [--min-bytes 4096]

TABLE.csv: ``devices,bytes,time_s`` (one all-reduce of ``bytes`` per device over ``devices``
GPUs of one node), or XLA's collective table (``read_table``). Prints the fitted values (paste them into the chip's preset with their
source) and each row's time error before and after the fit (+ = the model slower).

Run on XLA's sm_90 NCCL table (benchmarks/research/xla-collective-table-2026-12-07.md, 2026-12-07)
it shows that this model, one bandwidth for every group size, cannot fit H100's measured
all-reduces: large-message bus bandwidth is ~250, ~302 and ~402 GB/s over 2, 4 and 8 GPUs.
"""

from __future__ import annotations

import argparse
import csv
import math
from dataclasses import replace

import numpy as np
from scipy.optimize import least_squares

from hardware import load_system
from sim.cost.collectives import collective_time


def model_s(system, devices: int, size: float) -> float:
    """One all-reduce as validation's ``allreduce`` rows cost it."""
    return collective_time("all_reduce", size, devices, system) + system.chip.kernel_overhead_s


def with_link(system, latency: float, simple: float, fraction: float):
    link = replace(system.intra_node, latency_s=latency, simple_latency_s=simple,
                   achievable_fraction=min(1.0, float(fraction)))  # fmt: skip
    return replace(system, intra_node=link)


def read_table(path: str) -> list[tuple[int, float, float]]:
    """(devices, bytes, seconds) of each all-reduce: a ``devices,bytes,time_s`` CSV, or XLA's
    collective table as benchmarks/research/xla-collective-table-2026-12-07.csv holds it (its
    all-reduce rows of file 487186480, one node; time = bytes / network throughput, the
    generator's definition)."""
    with open(path) as f:
        rows = list(csv.DictReader(f))
    if rows and "network_throughput_bytes_per_sec" in rows[0]:
        return [(int(r["devices_per_group"]), float(r["bytes"]),
                 float(r["bytes"]) / float(r["network_throughput_bytes_per_sec"]))
                for r in rows
                if r["file_id"] == "487186480" and r["opcode"] == "all-reduce"]  # fmt: skip
    return [(int(r["devices"]), float(r["bytes"]), float(r["time_s"])) for r in rows]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("chip")
    ap.add_argument("table")
    ap.add_argument("--fit", default="2,8", help="group sizes fitted (the rest held out)")
    ap.add_argument("--min-bytes", type=float, default=4096.0)
    ap.add_argument("--latency-us", type=float, default=None,
                    help="hold intra_node_latency (LL, per step) at this value, not fitted")  # fmt: skip
    args = ap.parse_args(argv)
    rows = [r for r in read_table(args.table) if r[1] >= args.min_bytes]
    fit_groups = {int(g) for g in args.fit.split(",")}
    base = load_system(args.chip, max(d for d, _, _ in rows))
    fitted_rows = [r for r in rows if r[0] in fit_groups]

    held = args.latency_us

    def residuals(x: np.ndarray) -> np.ndarray:
        s = with_link(base, (held if held is not None else x[0]) * 1e-6, x[1] * 1e-6, x[2])
        return np.array([math.log(model_s(s, d, b) / t) for d, b, t in fitted_rows])

    link = base.intra_node
    x0 = [
        link.latency_s * 1e6,
        (link.simple_latency_s or 10e-6) * 1e6,
        min(0.9, link.achievable_fraction),
    ]
    sol = least_squares(residuals, x0, bounds=([0.1, 0.1, 0.3], [50.0, 100.0, 1.0]))
    lat, simple, frac = sol.x
    lat = held if held is not None else lat
    fitted = with_link(base, lat * 1e-6, simple * 1e-6, frac)
    print(f"{args.chip}: intra_node_latency {lat:.2f} us, intra_node_simple_latency "
          f"{simple:.2f} us, intra_node_achievable_fraction {frac:.3f}")  # fmt: skip
    print(
        f"{'devices':>7} {'bytes':>12} {'measured us':>12} {'before':>8} {'after':>8}  (time error)"
    )
    errs: dict[str, list[float]] = {"before": [], "after": [], "held before": [], "held after": []}
    for d, b, t in rows:
        before, after = model_s(base, d, b) / t - 1, model_s(fitted, d, b) / t - 1
        held = "" if d in fit_groups else "held "
        errs[f"{held}before"].append(abs(before))
        errs[f"{held}after"].append(abs(after))
        print(f"{d:>7} {b:>12.0f} {t * 1e6:>12.1f} {before:>+8.1%} {after:>+8.1%}  "
              f"{'fit' if not held else 'held out'}")  # fmt: skip
    for key, v in errs.items():
        if v:
            print(f"median |error| {key}: {np.median(v):.1%} over {len(v)} rows")


if __name__ == "__main__":
    main()
