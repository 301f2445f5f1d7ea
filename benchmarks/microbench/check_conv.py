"""Hold roofsim's VAE-decoder convolutions against a microbenchmark run's ``conv.csv``.

    python benchmarks/microbench/check_conv.py DIR [--chip h100-sxm]
    python benchmarks/microbench/check_conv.py --predict [--chip h100-sxm]

Each row of ``DIR/conv.csv`` (``microbench.py --sections conv``: one bf16 3x3 or 3x3x3
convolution, batch 1, zero padding inside the conv) is costed as the VAE lowering costs a
decoder convolution (``workloads.vae.conv_ops``: an implicit GEMM reading its input once, and
for the NCHW layout cuDNN's transposes to NHWC and back; channels-last rows skip them), on one
chip at its burst clock and at its power-limited one (pass ``--chip`` the chip the run was on:
the ``device`` column names it). Prints measured and predicted times and
the log error (> 0: roofsim slower) per row and its median per layout and dimensionality.
roofsim's VAE decodes run 1.9-3.5x faster than the published decode stages
(``benchmarks/vae_decode.py``); this says whether the convolutions are where. Nothing is fitted
here. ``--predict`` prints both predictions for the section's grid before any run.
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
from workloads.build import Builder  # noqa: E402
from workloads.ops import Op  # noqa: E402
from workloads.vae import conv_ops  # noqa: E402

LAYOUTS = {"nchw": "nchw", "channels_last": "nhwc"}  # microbench's name -> the VAE's


def conv(dims: int, c_in: int, c_out: int, voxels: float, layout: str) -> list[Op]:
    """One bf16 convolution of ``voxels`` output positions, as the VAE lowering builds it."""
    b = Builder("bf16", 2.0, 2.0)
    return conv_ops(b, b, "conv", voxels, c_in, c_out, 3**dims, layout=LAYOUTS[layout])


def costed(ops: list[Op], system: System) -> tuple[float, float]:
    """Seconds of ``ops`` at the burst clock and at the power-limited one."""
    burst = sum(c.time_s for c in cost_ops(ops, system, steady=False))
    held = sum(c.time_s for c in cost_ops(ops, system, steady=True))
    return burst, held


def _parse(row: dict[str, str]) -> tuple[int, int, int, int, str, float]:
    """(dims, voxels, c_in, c_out, layout, measured seconds) of a ``conv.csv`` row, checked."""
    if not row.get("shape"):
        raise ValueError("no shape: not a conv.csv row")
    if row.get("dtype", "bf16") != "bf16":
        raise ValueError(f"dtype must be bf16 (the GPU run's), got {row['dtype']!r}")
    dims = int(row["dims"])
    if dims not in (2, 3):
        raise ValueError(f"dims must be 2 or 3, got {dims}")
    sizes = [int(row[k]) for k in ("c_in", "c_out", "frames", "height", "width")]
    if min(sizes) < 1:
        raise ValueError(f"c_in, c_out, frames, height, width must be >= 1, got {sizes}")
    if row["layout"] not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {row['layout']!r}")
    measured = float(row["time_s"])
    if not 0.0 < measured < math.inf:
        raise ValueError(f"time_s must be a positive number of seconds, got {row['time_s']!r}")
    c_in, c_out, frames, height, width = sizes
    return dims, frames * height * width, c_in, c_out, row["layout"], measured


def check(path: Path, chip: str) -> list[dict]:
    """One record per row: measured and predicted seconds and log errors."""
    system = load_system(chip, 1)
    out = []
    for row, (dims, voxels, c_in, c_out, layout, measured) in parsed_rows(path, _parse):
        burst, held = costed(conv(dims, c_in, c_out, voxels, layout), system)
        out.append({
            "shape": row["shape"], "dims": dims, "layout": layout,
            "measured_s": measured, "burst_s": burst, "steady_s": held,
            "log_error": math.log(burst / measured),
            "log_error_steady": math.log(held / measured),
        })  # fmt: skip
    return out


def predict(chip: str) -> None:
    """roofsim's burst / power-limited times (us) for the section's grid, both layouts."""
    (shapes,) = read_constants("CONV_SHAPES")
    system = load_system(chip, 1)
    print(f"{chip}: roofsim us at the burst clock / at the power-limited clock")
    for shape, dims, c_in, c_out, frames, h, w in shapes:
        cells = []
        for layout in LAYOUTS:
            burst, held = costed(conv(dims, c_in, c_out, frames * h * w, layout), system)
            cells.append(f"{layout} {burst * 1e6:9.1f} / {held * 1e6:9.1f}")
        print(f"{shape:28s} " + "   ".join(cells))


def _report(records: list[dict]) -> None:
    print(LEGEND)
    print(f"{'shape':28s} {'layout':13s} {'measured':>10s} {'burst':>10s} {'steady':>10s} "
          f"{'err':>7s} {'err st':>7s}")  # fmt: skip
    for r in records:
        print(f"{r['shape'][:28]:28s} {r['layout']:13s} {r['measured_s'] * 1e6:10.1f} "
              f"{r['burst_s'] * 1e6:10.1f} {r['steady_s'] * 1e6:10.1f} {r['log_error']:+7.3f} "
              f"{r['log_error_steady']:+7.3f}")  # fmt: skip
    print_medians([(f"{layout:13s} {dims}D", [r for r in records
                                               if r["layout"] == layout and r["dims"] == dims])
                   for layout in LAYOUTS for dims in (2, 3)])  # fmt: skip


main = check_main("check_conv", "conv", __doc__, predict, check, _report)


if __name__ == "__main__":
    raise SystemExit(main())
