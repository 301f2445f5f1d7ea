"""Fit the matrix energy per FLOP of the power model's anchor chips (hardware/power.py; Blackwell's in its presets).

Each anchor's ``power.matrix_pj_per_flop`` is the value at which the steady-state cost of an
8192^3 GEMM (every other power coefficient derived by hardware/power.py's rules) equals the
rate measured while the chip sat at its power limit. Prints the fitted values; paste them into
hardware/power.py MATRIX_PJ_ANCHORS (these rows are then fit rows in validation).

python benchmarks/fit_power.py
"""

from __future__ import annotations

from dataclasses import replace

from hardware import load_system
from sim.cost.roofline import cost_ops
from sim.studies.calibrate import gemm_op

#: (chip, dtype, measured steady TFLOP/s of m=n=k=8192, source)
ANCHORS = (
    ("h100-sxm", "bf16", 685.0,
     "median while a bf16 8192^3 loop holds the card at 700 W for 10 s, "
     "benchmarks/microbench/results/h100-sxm-2026-11-23/clocks.csv"),
    ("a100-sxm-80gb", "fp16", 253.7,
     "Azure/AI-benchmarking-guide ND_A100_v4_results.md, GEMM CuBLASLt 8192^3 fp16 after "
     "10,000 warm-up iterations (row azure-nd-a100-v4-gemm-fp16-8192)"),
    ("gb200", "fp8", 2876.6,
     "Azure/AI-benchmarking-guide ND_GB200_v6_results.md, GEMM CuBLASLt 8192^3 fp8 after 10,000 "
     "warm-up iterations at 1200 W (row azure-nd-gb200-v6-gemm-fp8-8192): Blackwell's "
     "power.matrix_pj_per_flop in the b200 and gb200 presets"),
)  # fmt: skip


def steady_tflops(system, op) -> float:
    return op.flops / cost_ops([op], system)[0].time_s / 1e12


def fit(name: str, dtype: str, measured: float) -> tuple[float, float, float]:
    """(fitted pJ per 16-bit FLOP, burst TFLOP/s, steady TFLOP/s at the fit)."""
    system = load_system(name)
    op = gemm_op(8192, 8192, 8192, dtype)
    burst = op.flops / cost_ops([op], system, steady=False)[0].time_s / 1e12
    lo, hi = 1e-3, 10.0
    for _ in range(60):  # the steady rate falls as the energy per FLOP rises
        mid = (lo * hi) ** 0.5
        chip = replace(system.chip, matrix_pj_per_flop=mid)
        if steady_tflops(replace(system, chip=chip), op) > measured:
            lo = mid
        else:
            hi = mid
    chip = replace(system.chip, matrix_pj_per_flop=lo)
    return lo, burst, steady_tflops(replace(system, chip=chip), op)


def main() -> None:
    print(f"{'chip':<16}{'dtype':<6}{'measured':>10}{'burst':>8}{'fit':>8}  pJ/FLOP (16-bit)")
    for name, dtype, measured, _ in ANCHORS:
        pj, burst, steady = fit(name, dtype, measured)
        print(f"{name:<16}{dtype:<6}{measured:>10.1f}{burst:>8.1f}{steady:>8.1f}  {pj:.4f}")


if __name__ == "__main__":
    main()
