"""Sweep speed: `roofsim sweep SPEC -o FILE.csv` end to end, against a plain closed form.

Two specs, each timed as the whole command (interpreter start, imports, the sweep, writing the
CSV) on every core (the default), best of a few runs:
- benchmarks/sweeps/decode-100k.toml: 100 000 chip designs (HBM bandwidth x bf16 peak x batch);
- benchmarks/sweeps/decode-grid.toml: 5 chip presets x batch 1..256 x 80 contexts (102 400
  workload points, with the capacity check).
The grid is also costed by a ten-line plain-Python closed-form roofline (4 GEMMs and attention
per layer, each max(FLOPs / peak, bytes / bandwidth); none of roofsim's tiling, overheads,
collectives or capacity work), timed in this process without writing anything. Exits non-zero
if a spec runs below 100 000 points/s, the grid below 0.4x the closed form, or a CSV is not one
header row and one row per point (issue 18).

python benchmarks/sweep_speed.py [--repeats N] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPECS = ("decode-100k.toml", "decode-grid.toml")
BAR_POINTS_PER_S = 100_000.0
BAR_VS_CLOSED_FORM = 0.4


def closed_form(chips: list[tuple[float, float]], batches, contexts, m) -> list[float]:
    """Seconds per decode step of every (chip, batch, context): plain Python, one point at a
    time, bf16 weights and KV (the peer calculators' model)."""
    q, kv = m.n_heads * m.head_dim, m.n_kv_heads * m.head_dim
    up = m.ffn * (2 if m.gated_mlp else 1)
    out = []
    for peak, bw in chips:
        for b in batches:
            for c in contexts:
                gemms = ((m.hidden, q + 2 * kv), (q, m.hidden), (m.hidden, up), (m.ffn, m.hidden))
                t = sum(max(2 * b * k * n / peak, 2 * (k * n + b * (k + n)) / bw) for k, n in gemms)
                t += max(4 * b * c * q / peak, (2 * b * c * kv * 2 + 4 * b * q) / bw)
                out.append(m.n_layers * t)
    return out


def _closed_form_rate(spec_path: Path) -> tuple[float, int]:
    from hardware import load_chip
    from sim.studies.sweep import load_spec
    from workloads import load_model

    spec = load_spec(spec_path)
    axes = {a.name: a.values for a in spec.axes}
    chips = [load_chip(c) for c in axes["chip"]]
    peaks = [(c.peak("bf16"), c.main_memory.bandwidth_bytes_per_s) for c in chips]
    model = load_model(spec.workload["model"])
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        times = closed_form(peaks, axes["batch"], axes["context"], model)
        best = min(best, time.perf_counter() - start)
    return len(times) / best, len(times)


def _run(spec: Path, extra: list[str], repeats: int) -> tuple[float, int, bool]:
    """(best wall seconds, points, whether the CSV has one header and one row per point)."""
    from sim.studies.sweep import load_spec

    n_points = load_spec(spec).n_points
    best = float("inf")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.csv"
        for _ in range(repeats):
            out.unlink(missing_ok=True)
            cmd = [sys.executable, "-m", "sim.cli", "sweep", str(spec.relative_to(ROOT)),
                   "-o", str(out), *extra]  # fmt: skip
            start = time.perf_counter()
            done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            wall = time.perf_counter() - start
            if done.returncode != 0:
                print(done.stderr, file=sys.stderr)
                raise SystemExit(1)
            best = min(best, wall)
        lines = out.read_text().count("\n")
    return best, n_points, lines == n_points + 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="default: every core")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    extra = ["--no-progress"] + (["--workers", str(args.workers)] if args.workers else [])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"command: python -m sim.cli sweep SPEC -o FILE.csv {' '.join(extra)}  ({cores} cores)")
    print(f"{'spec':<30}{'points':>10}{'wall (best)':>13}{'points/s':>12}{'bar':>10}  rows")
    ok = True
    rates = {}
    for name in SPECS:
        spec = ROOT / "benchmarks" / "sweeps" / name
        wall, n, rows_ok = _run(spec, extra, args.repeats)
        rates[name] = rate = n / wall
        ok &= rows_ok and rate >= BAR_POINTS_PER_S
        rows = "1 header + 1 per point" if rows_ok else "WRONG row count"
        print(f"{name:<30}{n:>10,}{wall:>12.2f}s{rate:>12,.0f}{BAR_POINTS_PER_S:>10,.0f}  {rows}")
    plain, n = _closed_form_rate(ROOT / "benchmarks" / "sweeps" / "decode-grid.toml")
    ratio = rates["decode-grid.toml"] / plain
    ok &= ratio >= BAR_VS_CLOSED_FORM
    print(f"{'closed form, same grid':<30}{n:>10,}{n / plain:>12.2f}s{plain:>12,.0f}"
          f"{'':>10}  in process, nothing written")  # fmt: skip
    print(f"decode-grid vs closed form: {ratio:.2f}x (bar {BAR_VS_CLOSED_FORM}x)")
    if not ok:
        print("sweep speed: bar missed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
