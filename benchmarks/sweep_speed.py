"""Sweep speed: time `roofsim sweep benchmarks/sweeps/decode-100k.toml -o FILE.csv` end to end.

Wall clock of the whole command (interpreter start, imports, the sweep, writing the CSV) on
every core (the default), best of a few runs; exits non-zero below the issue's bar of 50 000
points/s or if the CSV is not one header row and one row per point.

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
SPEC = ROOT / "benchmarks" / "sweeps" / "decode-100k.toml"
BAR_POINTS_PER_S = 50_000.0


def _command() -> list[str]:
    """`roofsim sweep` through the package's front end (sim.cli), or the sweep module's own
    entry point while sim.cli does not list the command yet."""
    wired = subprocess.run(
        [sys.executable, "-m", "sim.cli", "sweep", "--help"], cwd=ROOT, capture_output=True
    )
    if wired.returncode == 0:
        return [sys.executable, "-m", "sim.cli", "sweep"]
    return [sys.executable, "-m", "sim.cli.sweep"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="default: every core")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from sim.studies.sweep import load_spec

    n_points = load_spec(SPEC).n_points
    base = _command()
    extra = ["--no-progress"] + (["--workers", str(args.workers)] if args.workers else [])
    best = float("inf")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "decode-100k.csv"
        for _ in range(args.repeats):
            out.unlink(missing_ok=True)
            cmd = [*base, str(SPEC.relative_to(ROOT)), "-o", str(out), *extra]
            start = time.perf_counter()
            done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            wall = time.perf_counter() - start
            if done.returncode != 0:
                print(done.stderr, file=sys.stderr)
                return 1
            best = min(best, wall)
        lines = out.read_text().splitlines()
    rows_ok = len(lines) == n_points + 1
    rate = n_points / best
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    shown = " ".join(c if c != sys.executable else "python" for c in base)
    print(f"command: {shown} {SPEC.relative_to(ROOT)} -o FILE.csv {' '.join(extra)}")
    print(f"{'points':>10}{'cores':>7}{'wall (best)':>13}{'points/s':>12}{'bar':>10}  rows")
    print(
        f"{n_points:>10,}{cores:>7}{best:>12.2f}s{rate:>12,.0f}{BAR_POINTS_PER_S:>10,.0f}"
        f"  {'1 header + 1 per point' if rows_ok else f'{len(lines)} lines: WRONG'}"
    )
    if rate < BAR_POINTS_PER_S or not rows_ok:
        print("sweep speed: bar missed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
