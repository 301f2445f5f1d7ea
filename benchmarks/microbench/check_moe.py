"""Hold roofsim's grouped GEMMs against a microbenchmark run's ``moe.csv``.

    python benchmarks/microbench/check_moe.py DIR [--chip h100-sxm]
    python benchmarks/microbench/check_moe.py --predict [--chip h100-sxm]

Each row of ``DIR/moe.csv`` (``microbench.py --sections moe``: E experts' bf16 GEMMs, batched
through cuBLAS, grouped or routed through CUTLASS) is costed as the lowering costs an MoE
layer's expert GEMMs: ``groups`` = the experts that got rows, ``m`` their mean rows, and for the
routed layout the routing spread (``workloads.build.routed``: T tokens each choosing an expert
with probability top_k / E), on one chip twice: at its burst clock and at the clock its power
limit allows (the run times each point for ~0.15 s of back-to-back calls, long enough for the
longest to throttle; each row records the SM clock after it). Prints each point's measured and
predicted times, the regime roofsim puts it in (``stream``: compute under half the main-memory
time, ``ridge``: within 2x of it, ``compute``: over twice it), and per layout and regime the
median log error against each prediction (> 0: roofsim slower): a point is over the model only
where it is slower than the power-limited time too. Nothing is fitted here. ``--predict``
prints both predictions for the section's whole grid (every expert the same rows) before any
run: what a measurement is then held to.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

from microbench_grid import LEGEND, check_main, parsed_rows, print_medians, read_constants  # noqa: E402

from hardware import System, load_system  # noqa: E402
from sim.cost.roofline import cost_ops  # noqa: E402
from workloads.build import Builder, routed  # noqa: E402
from workloads.ops import Op  # noqa: E402

REGIMES = ("stream", "ridge", "compute")


def section_grid() -> tuple[list[tuple], list[int]]:
    """``MOE_SHAPES`` and ``MOE_M`` as microbench.py defines them."""
    return read_constants("MOE_SHAPES", "MOE_M")


def uniform_op(experts: int, m: float, n: int, k: int) -> Op:
    """``experts`` bf16 GEMMs of exactly ``m`` rows each (the batched and grouped layouts)."""
    return Builder("bf16", 2.0, 2.0).gemm("experts", "moe", m, n, k, experts)


def expert_op(row: dict[str, str]) -> Op:
    """The expert GEMM of one ``moe.csv`` row, as ``_Lowering.moe_block`` builds it."""
    experts, n, k = int(row["experts"]), int(row["n"]), int(row["k"])
    if row["layout"] != "routed":
        return uniform_op(experts, float(row["m_mean"]), n, k)
    rows = [int(r) for r in row["rows"].split(";")]
    groups = sum(1 for r in rows if r > 0)
    (op,) = routed([uniform_op(groups, sum(rows) / groups, n, k)], float(row["tokens"]),
                   int(row["top_k"]) / experts)  # fmt: skip
    return op


def regime(compute_s: float, memory_s: float) -> str:
    """Where an op sits against the ridge: its compute time under half its main-memory time
    (``stream``), over twice it (``compute``), or between (``ridge``)."""
    ratio = compute_s / memory_s if memory_s > 0 else math.inf
    return "stream" if ratio < 0.5 else "compute" if ratio > 2.0 else "ridge"


def costed(op: Op, system: System) -> tuple[float, float, str]:
    """``op``'s seconds at the burst clock and at the power-limited one, and its regime."""
    (burst,) = cost_ops([op], system, steady=False)
    (held,) = cost_ops([op], system, steady=True)
    memory = burst.memory_s.get(system.chip.main_memory.name, 0.0)
    return burst.time_s, held.time_s, regime(burst.compute_s, memory)


def check(path: Path, chip: str) -> list[dict]:
    """One record per row: measured and predicted seconds, log errors, regime."""
    system = load_system(chip, 1)
    out = []
    rows = parsed_rows(path, lambda row: (expert_op(row), float(row["time_s"])),
                       errors=(KeyError, TypeError, ValueError, ZeroDivisionError, AttributeError),
                       describe=lambda exc: f"not a moe.csv row ({exc!r})")  # fmt: skip
    for row, (op, measured) in rows:
        burst, held, where = costed(op, system)
        out.append({
            "layout": row["layout"], "shape": row["shape"], "m": float(row["m_mean"]),
            "measured_s": measured, "burst_s": burst, "steady_s": held,
            "log_error": math.log(burst / measured),
            "log_error_steady": math.log(held / measured),
            "regime": where, "clock_mhz": row.get("clocks_sm_mhz") or "",
        })  # fmt: skip
    return out


def predict(chip: str) -> None:
    """roofsim's burst / power-limited times (us) and regime for the section's whole grid."""
    shapes, ms = section_grid()
    system = load_system(chip, 1)
    print(f"{chip}: roofsim us at the burst clock / at the power-limited clock (regime: s stream, "
          f"r ridge, c compute), every expert M rows")  # fmt: skip
    for shape, experts, _top_k, n, k in shapes:
        print(shape)
        for m in ms:
            burst, held, where = costed(uniform_op(experts, m, n, k), system)
            print(f"  M={m:5d} {burst * 1e6:9.1f} / {held * 1e6:9.1f}  {where}")


def _report(records: list[dict]) -> None:
    print(LEGEND)
    print(f"{'layout':8s} {'shape':22s} {'m':>7s} {'measured':>9s} {'burst':>9s} {'steady':>9s} "
          f"{'err':>7s} {'err st':>7s} {'MHz':>5s}  regime")  # fmt: skip
    for r in records:
        print(f"{r['layout']:8s} {r['shape'][:22]:22s} {r['m']:7.1f} {r['measured_s'] * 1e6:9.2f} "
              f"{r['burst_s'] * 1e6:9.2f} {r['steady_s'] * 1e6:9.2f} {r['log_error']:+7.3f} "
              f"{r['log_error_steady']:+7.3f} {r['clock_mhz']:>5s}  {r['regime']}")  # fmt: skip
    layouts = sorted({r["layout"] for r in records})
    print_medians([(f"{layout:8s} {name:8s}", [r for r in records
                                               if r["layout"] == layout and r["regime"] == name])
                   for layout in layouts for name in REGIMES])  # fmt: skip


main = check_main("check_moe", "moe", __doc__, predict, check, _report)


if __name__ == "__main__":
    raise SystemExit(main())
