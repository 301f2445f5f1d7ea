"""Hold roofsim's grouped GEMMs against a microbenchmark run's ``moe.csv``.

    python benchmarks/microbench/check_moe.py DIR [--chip h100-sxm]
    python benchmarks/microbench/check_moe.py --predict [--chip h100-sxm]

Each row of ``DIR/moe.csv`` (``microbench.py --sections moe``: E experts' bf16 GEMMs, batched
through cuBLAS, grouped or routed through CUTLASS) is costed as the lowering costs an MoE
layer's expert GEMMs: ``groups`` = the experts that got rows, ``m`` their mean rows, and for the
routed layout the routing spread (``workloads.build.routed``: T tokens each choosing an expert
with probability top_k / E), on one chip at its burst clock. Prints each point's measured and
predicted time, the regime roofsim puts it in (``stream``: compute under half the main-memory
time, ``ridge``: within 2x of it, ``compute``: over twice it), and the median log error (> 0: roofsim
slower) and its spread per layout and regime. Nothing is fitted here. ``--predict`` prints
roofsim's time for the section's whole grid (every expert the same rows) before any run: the
predictions a measurement is then held to.
"""

from __future__ import annotations

import argparse
import ast
import csv
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from hardware import load_system  # noqa: E402
from sim.cost.roofline import cost_ops  # noqa: E402
from workloads.build import Builder, routed  # noqa: E402
from workloads.ops import Op  # noqa: E402

REGIMES = ("stream", "ridge", "compute")
MICROBENCH = Path(__file__).resolve().parent / "microbench.py"


def section_grid() -> tuple[list[tuple], list[int]]:
    """``MOE_SHAPES`` and ``MOE_M`` as microbench.py defines them (read from its source: that
    script needs PyTorch, this one does not)."""
    found = {}
    for node in ast.parse(MICROBENCH.read_text()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            name = getattr(node.targets[0], "id", "")
            if name in ("MOE_SHAPES", "MOE_M"):
                found[name] = ast.literal_eval(node.value)
    return found["MOE_SHAPES"], found["MOE_M"]


def expert_op(row: dict[str, str]) -> Op:
    """The expert GEMM of one ``moe.csv`` row, as ``_Lowering.moe_block`` builds it."""
    experts, n, k = int(row["experts"]), int(row["n"]), int(row["k"])
    b = Builder("bf16", 2.0, 2.0)
    if row["layout"] != "routed":  # every expert exactly m rows
        return b.gemm("experts", "moe", float(row["m_mean"]), n, k, experts)
    rows = [int(r) for r in row["rows"].split(";")]
    groups = sum(1 for r in rows if r > 0)
    op = b.gemm("experts", "moe", sum(rows) / groups, n, k, groups)
    (op,) = routed([op], float(row["tokens"]), int(row["top_k"]) / experts)
    return op


def regime(compute_s: float, memory_s: float) -> str:
    ratio = compute_s / memory_s if memory_s > 0 else math.inf
    return "stream" if ratio < 0.5 else "compute" if ratio > 2.0 else "ridge"


def check(path: Path, chip: str) -> list[dict]:
    """One record per row: measured and predicted seconds, log error, regime."""
    system = load_system(chip, 1)
    main = system.chip.main_memory.name
    out = []
    with open(path) as f:
        for row in csv.DictReader(f):
            (c,) = cost_ops([expert_op(row)], system, steady=False)
            measured = float(row["time_s"])
            out.append({
                "layout": row["layout"], "shape": row["shape"], "m": float(row["m_mean"]),
                "measured_s": measured, "predicted_s": c.time_s,
                "log_error": math.log(c.time_s / measured),
                "regime": regime(c.compute_s, c.memory_s.get(main, 0.0)),
            })  # fmt: skip
    return out


def predict(chip: str) -> None:
    """roofsim's time (us) and regime for every shape and M of the section's grid."""
    shapes, ms = section_grid()
    system = load_system(chip, 1)
    main = system.chip.main_memory.name
    print(f"{chip}: roofsim us (regime: s stream, r ridge, c compute), every expert M rows")
    print(f"{'shape':24s} " + " ".join(f"{'M=' + str(m):>10s}" for m in ms))
    for shape, experts, _top_k, n, k in shapes:
        cells = []
        for m in ms:
            op = Builder("bf16", 2.0, 2.0).gemm("experts", "moe", m, n, k, experts)
            (c,) = cost_ops([op], system, steady=False)
            cells.append(f"{c.time_s * 1e6:8.1f} {regime(c.compute_s, c.memory_s[main])[0]}")
        print(f"{shape:24s} " + " ".join(cells))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir", nargs="?", help="a microbench.py --out directory holding moe.csv")
    ap.add_argument("--chip", default="h100-sxm", help="the chip preset the run was on")
    ap.add_argument("--predict", action="store_true", help="roofsim's times for the grid")
    args = ap.parse_args(argv)
    if args.predict:
        predict(args.chip)
        return 0
    if not args.dir:
        print("check_moe: give a microbench.py --out directory, or --predict", file=sys.stderr)
        return 2
    path = Path(args.dir) / "moe.csv"
    if not path.is_file():
        print(f"check_moe: {path} not found; run microbench.py --sections moe --out {args.dir}",
              file=sys.stderr)  # fmt: skip
        return 2
    records = check(path, args.chip)
    print(f"{'layout':8s} {'shape':24s} {'m':>7s} {'measured us':>12s} {'roofsim us':>11s} "
          f"{'log err':>8s}  regime")  # fmt: skip
    for r in records:
        print(f"{r['layout']:8s} {r['shape']:24s} {r['m']:7.1f} {r['measured_s'] * 1e6:12.2f} "
              f"{r['predicted_s'] * 1e6:11.2f} {r['log_error']:+8.3f}  {r['regime']}")  # fmt: skip
    print("median log error (> 0: roofsim slower), points, spread (min .. max):")
    for layout in sorted({r["layout"] for r in records}):
        for name in REGIMES:
            errs = [r["log_error"] for r in records
                    if r["layout"] == layout and r["regime"] == name]  # fmt: skip
            if errs:
                print(f"  {layout:8s} {name:8s} {statistics.median(errs):+.3f}  n={len(errs):3d}"
                      f"  {min(errs):+.3f} .. {max(errs):+.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
