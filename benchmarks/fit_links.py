"""Fit a chip's intra-node all-reduce link parameters to measured NCCL all-reduce tables.

The link model (``sim/cost/collectives.py``): NCCL's ring with its low-latency protocol (LL) at
half the link bandwidth and ``intra_node_latency`` per ring step, or its bulk protocol (Simple) at
the full bandwidth x ``intra_node_achievable_fraction`` and ``intra_node_simple_latency`` per
step; with ``--nvls``, also the all-reduce reduced in the switch (NVLS) at
``intra_node_nvls_bandwidth`` over (1 + 1/p) of the buffer plus ``intra_node_nvls_latency`` and
``intra_node_nvls_chunk_latency`` a chunk step (NCCL's chunk by buffer size), on groups of three
or more; the fastest taken, plus one kernel's fixed cost (the chip's
``overhead.kernel_s``), as validation's all-reduce rows cost it. The parameters minimise the
squared log error of that time over the rows of the groups fitted; the other groups are held out
and reported.

    python benchmarks/fit_links.py CHIP TABLE.csv [TABLE.csv ...] [--fit 2,6,8] [--nvls]

TABLE.csv: ``devices,bytes,time_s`` (one all-reduce of ``bytes`` per device over ``devices``
GPUs of one node; optional columns ``chip`` (rows of another chip are skipped) and ``nvls``
(``forced_ring`` / ``forced_nvls``: NCCL_ALGO forced, costed on that algorithm alone;
``forced_tree`` rows are skipped; anything else: NCCL's own choice)), or XLA's collective table
(``read_table``). Prints the fitted values (paste them into the chip's preset with their source)
and each row's time error before and after the fit (+ = the model slower).

Run on XLA's sm_90 NCCL table (benchmarks/research/xla-collective-table-2026-12-07.md) it shows
large-message bus bandwidth of ~250, ~302 and ~402 GB/s over 2, 4 and 8 GPUs, which nccl-tests
on H100 nodes does not reproduce (~337, ~361 and ~472: the ring's rate at 2 and 4 GPUs, NVLS at
8; benchmarks/research/nccl-allreduce-2-4-gpu-h100-2026-12-07.md).
"""

from __future__ import annotations

import argparse
import csv
import math
from dataclasses import replace

import numpy as np
from scipy.optimize import least_squares

from hardware import load_system
from sim.cost.collectives import LinkParams, _nvls, collective_time


def model_s(system, devices: int, size: float, algo: str = "auto") -> float:
    """One all-reduce as validation's ``allreduce`` rows cost it (``algo``: NCCL's choice, or
    the ring or NVLS alone as NCCL_ALGO forces it)."""
    if algo == "nvls":
        link = LinkParams.of(system.intra_node)
        return float(_nvls(size, devices, link)) + system.chip.kernel_overhead_s
    if algo == "ring":
        link = replace(system.intra_node, nvls_bandwidth_bytes_per_s=None, nvls_latency_s=None)
        system = replace(system, intra_node=link)
    return collective_time("all_reduce", size, devices, system) + system.chip.kernel_overhead_s


def with_link(system, x: np.ndarray, held: tuple[float | None, float | None], nvls: bool):
    """``system`` with the link parameters ``x`` (us, us, fraction[, GB/s, us, us]), the LL and
    Simple latencies ``held`` where given."""
    lat = held[0] if held[0] is not None else x[0]
    simple = held[1] if held[1] is not None else x[1]
    extra = dict(nvls_bandwidth_bytes_per_s=x[3] * 1e9, nvls_latency_s=x[4] * 1e-6,
                 nvls_chunk_latency_s=x[5] * 1e-6) if nvls else {}  # fmt: skip
    link = replace(system.intra_node, latency_s=lat * 1e-6, simple_latency_s=simple * 1e-6,
                   achievable_fraction=min(1.0, float(x[2])), **extra)  # fmt: skip
    return replace(system, intra_node=link)


_ALGO = {"forced_ring": "ring", "forced_nvls": "nvls"}


def read_table(path: str, chip: str) -> list[tuple[int, float, float, str]]:
    """(devices, bytes, seconds, algorithm) of each all-reduce: a ``devices,bytes,time_s`` CSV
    (``chip`` and ``nvls`` columns optional, see the module's docstring), or XLA's collective
    table as benchmarks/research/xla-collective-table-2026-12-07.csv holds it (its all-reduce
    rows of file 487186480, one node; time = bytes / network throughput, the generator's
    definition)."""
    with open(path) as f:
        rows = list(csv.DictReader(f))
    if rows and "network_throughput_bytes_per_sec" in rows[0]:
        return [(int(r["devices_per_group"]), float(r["bytes"]),
                 float(r["bytes"]) / float(r["network_throughput_bytes_per_sec"]), "auto")
                for r in rows
                if r["file_id"] == "487186480" and r["opcode"] == "all-reduce"]  # fmt: skip
    return [(int(r["devices"]), float(r["bytes"]), float(r["time_s"]),
             _ALGO.get(r.get("nvls", ""), "auto"))
            for r in rows
            if r.get("chip", chip) == chip and r.get("nvls") != "forced_tree"]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("chip")
    ap.add_argument("tables", nargs="+")
    ap.add_argument("--fit", default="2,8", help="group sizes fitted (the rest held out)")
    ap.add_argument("--min-bytes", type=float, default=4096.0)
    ap.add_argument("--latency-us", type=float, default=None,
                    help="hold intra_node_latency (LL, per step) at this value, not fitted")  # fmt: skip
    ap.add_argument("--simple-us", type=float, default=None,
                    help="hold intra_node_simple_latency (Simple, per step) at this value")  # fmt: skip
    ap.add_argument("--nvls", action="store_true",
                    help="also fit the in-switch all-reduce (intra_node_nvls_bandwidth, "
                         "intra_node_nvls_latency)")  # fmt: skip
    args = ap.parse_args(argv)
    rows = [r for path in args.tables for r in read_table(path, args.chip)
            if r[1] >= args.min_bytes]  # fmt: skip
    fit_groups = {int(g) for g in args.fit.split(",")}
    base = load_system(args.chip, max(r[0] for r in rows))
    fitted_rows = [r for r in rows if r[0] in fit_groups]
    held = (args.latency_us, args.simple_us)

    def residuals(x: np.ndarray) -> np.ndarray:
        s = with_link(base, x, held, args.nvls)
        return np.array([math.log(model_s(s, d, b, a) / t) for d, b, t, a in fitted_rows])

    link = base.intra_node
    x0 = [link.latency_s * 1e6, (link.simple_latency_s or 10e-6) * 1e6,
          min(0.9, link.achievable_fraction)]  # fmt: skip
    lo, hi = [0.1, 0.1, 0.3], [50.0, 100.0, 1.0]
    if args.nvls:
        x0 += [(link.nvls_bandwidth_bytes_per_s or 0.6 * link.bandwidth_bytes_per_s) / 1e9,
               (link.nvls_latency_s or 20e-6) * 1e6, link.nvls_chunk_latency_s * 1e6 or 4.0]  # fmt: skip
        lo, hi = lo + [10.0, 0.1, 0.0], hi + [link.bandwidth_bytes_per_s / 1e9, 200.0, 50.0]
    sol = least_squares(residuals, x0, bounds=(lo, hi))
    x = sol.x
    fitted = with_link(base, x, held, args.nvls)
    lat = held[0] if held[0] is not None else x[0]
    simple = held[1] if held[1] is not None else x[1]
    print(f"{args.chip}: intra_node_latency {lat:.2f} us, intra_node_simple_latency "
          f"{simple:.2f} us, intra_node_achievable_fraction {min(1.0, x[2]):.3f}"
          + (f", intra_node_nvls_bandwidth {x[3]:.1f} GB/s, intra_node_nvls_latency "
             f"{x[4]:.2f} us, intra_node_nvls_chunk_latency {x[5]:.2f} us"
             if args.nvls else ""))  # fmt: skip
    print(f"{'devices':>7} {'bytes':>12} {'algo':>5} {'measured us':>12} {'before':>8} "
          f"{'after':>8}  (time error)")  # fmt: skip
    errs: dict[str, list[float]] = {"before": [], "after": [], "held before": [], "held after": []}
    for d, b, t, a in rows:
        before, after = model_s(base, d, b, a) / t - 1, model_s(fitted, d, b, a) / t - 1
        tag = "" if d in fit_groups else "held "
        errs[f"{tag}before"].append(abs(before))
        errs[f"{tag}after"].append(abs(after))
        print(f"{d:>7} {b:>12.0f} {a:>5} {t * 1e6:>12.1f} {before:>+8.1%} {after:>+8.1%}  "
              f"{'held out' if tag else 'fit'}")  # fmt: skip
    for key, v in errs.items():
        if v:
            v = [e for e in v if e == e]  # a forced NVLS row on a link without it: NaN
            print(f"median |error| {key}: {np.median(v):.1%} over {len(v)} rows")


if __name__ == "__main__":
    main()
