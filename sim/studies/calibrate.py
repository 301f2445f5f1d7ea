"""Fit a chip's microbenchmark-measurable parameters to microbenchmark CSVs with scipy.

What is fitted, and from what (each a quantity a microbenchmark measures, never a workload's
efficiency):

- ``hbm`` (main memory) ``achievable_fraction`` and ``overhead.kernel_s`` from a bandwidth sweep
  (``membw.csv``: op, bytes, time_s) of one access pattern (``op``; reads by default, the
  pattern of weight streaming): the roofline's transfer model t = t0 + B/bw + min(B/bw, latency)
  where tiny transfers give t0 (the per-kernel fixed cost) and large ones bw and the
  pipeline-fill latency (``hbm.latency``).
- ``compute.sustained_clock_fraction`` from a GEMM sweep (``gemm.csv``: dtype, m, n, k, time_s)
  as the best measured FLOP/s over the datasheet peak (the "maximum achievable matmul FLOPS"
  definition); then the main memory's and the reuse level's (L2) ``achievable_fraction`` as
  GEMM kernels reach them, the pair that minimises the mean |log error| of the roofline's own
  GEMM cost (tiles, waves, tiling traffic) over every row. With a GEMM file, the main-memory
  fraction comes from it (weights streamed by GEMMs, what inference is bound by) rather than
  from the plain read sweep, which stays the source of t0 and the latency.

The CSV formats are what ``benchmarks/microbench/microbench.py`` writes.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path

from hardware import files
from hardware.chip import Chip, ConfigError, Link, MemoryLevel, System, dtype_bytes
from workloads.ops import Gemm, Op, OpKind


@dataclass(frozen=True, slots=True, kw_only=True)
class Fit:
    """One fitted parameter: its TOML path, value, and the error of the fit it came from."""

    path: str
    value: float
    note: str


#: the columns read as numbers: counts as integers >= 1, measurements as finite numbers > 0
_INT_COLUMNS = ("m", "n", "k")
_NUMBER_COLUMNS = ("bytes", "time_s")


def _read_csv(path: str | Path, needed: tuple[str, ...]) -> list[dict[str, str]]:
    """The CSV's rows, each needed numeric cell checked (ConfigError naming line and column)."""
    if not files.is_file(path):
        raise ConfigError(f"calibrate: no file {str(path)!r}")
    rows = list(csv.DictReader(io.StringIO(files.read_text(path, "calibrate"))))
    if not rows:
        raise ConfigError(f"calibrate: {path}: no rows")
    missing = [c for c in needed if c not in rows[0]]
    if missing:
        raise ConfigError(f"calibrate: {path}: missing column(s) {', '.join(missing)}")
    for line, row in enumerate(rows, start=2):
        for col in needed:
            cell = row.get(col) or ""
            if col in _INT_COLUMNS:
                ok = re.fullmatch(r"\s*[0-9]+\s*", cell) is not None and int(cell) >= 1
                want = "an integer >= 1"
            elif col in _NUMBER_COLUMNS:
                try:
                    ok = math.isfinite(float(cell)) and float(cell) > 0
                except ValueError:
                    ok = False
                want = "a finite number > 0"
            else:
                continue
            if not ok:
                raise ConfigError(
                    f"calibrate: {path} line {line}: {col} must be {want}, got {cell!r}"
                )
    return rows


def fit_bandwidth(
    rows: list[dict[str, str]], peak_bytes_per_s: float
) -> tuple[float, float, float, float]:
    """(t0_s, bw_bytes_per_s, latency_s, median |log error|) of the roofline's transfer model,

        t = t0 + B/bw + min(B/bw, latency)

    in two transparent steps: t0 is the median time of the transfers of <= 64 KiB (pure fixed
    cost); bw and latency come from a line through (B, t - t0) over the transfers of >= 16 MiB,
    fitted with relative weights (slope 1/bw, intercept = the pipeline-fill latency).
    """
    import numpy as np

    size = np.array([float(r["bytes"]) for r in rows])
    time = np.array([float(r["time_s"]) for r in rows])
    small, large = size <= 64 * 1024, size >= 16 * 2**20
    if small.sum() < 1 or large.sum() < 2:
        raise ConfigError(
            "calibrate: the bandwidth file needs transfers of <= 64 KiB and >= 2 of >= 16 MiB"
        )
    t0 = float(np.median(time[small]))
    slope, intercept = np.polyfit(size[large], time[large] - t0, 1, w=1.0 / time[large])
    bw = float(min(1.0 / max(slope, 1e-30), peak_bytes_per_s))
    lat = float(max(intercept, 0.0))
    stream = size / bw
    pred = t0 + stream + np.minimum(stream, lat)
    return t0, bw, lat, float(np.median(np.abs(np.log(pred / time))))


def _pick_op(rows: list[dict[str, str]], op: str | None) -> list[dict[str, str]]:
    """Rows of one access pattern: ``op`` if given, else the read pattern that reaches the
    highest bandwidth at its largest transfer (the best streaming-read kernel measured)."""
    ops = list(dict.fromkeys(r["op"] for r in rows))
    if op is None:

        def peak_rate(o: str) -> float:
            top = max((r for r in rows if r["op"] == o), key=lambda r: float(r["bytes"]))
            return float(top["bytes"]) / float(top["time_s"])

        reads = [o for o in ops if o.startswith("read")] or ops
        op = max(reads, key=peak_rate)
    if op not in ops:
        raise ConfigError(f"calibrate: --membw-op {op!r} not in the file; it has {', '.join(ops)}")
    return [r for r in rows if r["op"] == op]


def gemm_op(m: int, n: int, k: int, dtype: str) -> Op:
    e = dtype_bytes(dtype)
    c = 4.0 if dtype in ("fp32", "tf32") else 2.0
    flops = 2.0 * m * n * k
    return Op(
        name="gemm", kind=OpKind.GEMM, family="mlp", dtype=dtype, flops=flops,
        model_flops=flops, gemm=Gemm(m=m, n=n, k=k, a_bytes=e, b_bytes=e, c_bytes=c),
    )  # fmt: skip


def gemm_times(chip: Chip, ops: list[Op]) -> list[float]:
    """Predicted seconds of each GEMM on ``chip`` alone (one array pass)."""
    from sim.cost.roofline import cost_ops

    link = Link(bandwidth_bytes_per_s=1.0)  # a GEMM crosses no link
    return [
        c.time_s
        for c in cost_ops(ops, System(chip=chip, intra_node=link, inter_node=link), steady=False)
    ]


def gemm_errors(chip: Chip, rows: list[tuple[Op, float]]) -> list[float]:
    """log(predicted / measured) for each (op, measured seconds)."""
    times = gemm_times(chip, [op for op, _ in rows])
    return [math.log(p / t) for p, (_, t) in zip(times, rows, strict=True)]


def _with_fractions(
    chip: Chip, sustained: float, l2_fraction: float | None, hbm_fraction: float | None = None
) -> Chip:
    memory = list(chip.memory)
    if l2_fraction is not None and chip.reuse_level is not None:
        memory[-2] = replace(memory[-2], achievable_fraction=l2_fraction)
    if hbm_fraction is not None:
        memory[-1] = replace(memory[-1], achievable_fraction=hbm_fraction)
    return replace(chip, sustained_clock_fraction=sustained, memory=tuple(memory))


def fit_gemm(chip: Chip, rows: list[dict[str, str]], dtype: str = "bf16") -> tuple[Chip, float]:
    """Sustained fraction = best measured FLOP/s / peak (the MAMF definition); then the main
    memory's and the L2's achievable fractions as GEMM kernels reach them (weight streaming in
    GEMV-shaped GEMMs, panel re-reads in large ones): the pair that minimises the mean |log
    error| of the roofline over all rows (Nelder-Mead)."""
    import numpy as np
    from scipy.optimize import minimize

    data = [
        (gemm_op(int(r["m"]), int(r["n"]), int(r["k"]), dtype), float(r["time_s"]))
        for r in rows
        if r["dtype"] == dtype
    ]
    if not data:
        raise ConfigError(f"calibrate: the GEMM file has no {dtype} rows")
    best = max(op.flops / t for op, t in data)
    sustained = min(1.0, best / chip.peak(dtype))
    has_l2 = chip.reuse_level is not None

    def build(x: np.ndarray) -> Chip:
        hbm = float(np.clip(x[0], 0.05, 1.0))
        l2 = float(np.clip(x[1], 0.05, 1.0)) if has_l2 else None
        return _with_fractions(chip, sustained, l2, hbm)

    def loss(x: np.ndarray) -> float:
        return float(np.mean(np.abs(gemm_errors(build(x), data))))

    l2_0 = chip.reuse_level.achievable_fraction if has_l2 else 1.0
    x0 = [chip.main_memory.achievable_fraction, l2_0]
    sol = minimize(loss, x0, method="Nelder-Mead", options={"xatol": 1e-3, "fatol": 1e-6})
    fitted = build(sol.x)
    return fitted, float(np.median(np.abs(gemm_errors(fitted, data))))


def calibrate(
    chip: Chip,
    gemm_csv: str | None = None,
    membw_csv: str | None = None,
    dtype: str = "bf16",
    membw_op: str | None = None,
) -> tuple[Chip, list[Fit]]:
    """Return the chip with fitted parameters and a list of what was fitted."""
    fits: list[Fit] = []
    if membw_csv:
        rows = _pick_op(_read_csv(membw_csv, ("op", "bytes", "time_s")), membw_op)
        main = chip.main_memory
        t0, bw, lat, err = fit_bandwidth(rows, main.bandwidth_bytes_per_s)
        fraction = min(1.0, bw / main.bandwidth_bytes_per_s)
        level = replace(main, achievable_fraction=fraction, latency_s=lat)
        chip = replace(chip, memory=(*chip.memory[:-1], level), kernel_overhead_s=t0)
        note = (
            f"fit t = t0 + B/bw + min(B/bw, latency) to {len(rows)} sizes of {membw_csv} "
            f"({rows[0]['op']}): "
            f"median |log err| {err:.3f}"
        )
        fits += [
            Fit(path=f"{main.name}.achievable_fraction", value=fraction, note=note),
            Fit(path=f"{main.name}.latency", value=lat, note=note),
            Fit(path="overhead.kernel_s", value=t0, note=note),
        ]
    if gemm_csv:
        rows = _read_csv(gemm_csv, ("dtype", "m", "n", "k", "time_s"))
        chip, err = fit_gemm(chip, rows, dtype)
        note = f"fit to {dtype} rows of {gemm_csv}: median |log err| {err:.3f}"
        fits = [f for f in fits if f.path != f"{chip.main_memory.name}.achievable_fraction"]
        fits.append(
            Fit(
                path="compute.sustained_clock_fraction",
                value=chip.sustained_clock_fraction,
                note=note,
            )
        )
        fits.append(
            Fit(path=f"{chip.main_memory.name}.achievable_fraction",
                value=chip.main_memory.achievable_fraction, note=note)
        )  # fmt: skip
        reuse: MemoryLevel | None = chip.reuse_level
        if reuse is not None:
            fits.append(
                Fit(
                    path=f"{reuse.name}.achievable_fraction",
                    value=reuse.achievable_fraction,
                    note=note,
                )
            )
    return chip, fits


def write_calibrated_toml(base_text: str, fits: list[Fit], out: str | Path) -> None:
    """Write the base chip TOML with a ``[calibration]`` table of the fitted values (replacing
    any earlier one); the loader applies the table's values over the datasheet ones."""
    kept, skipping = [], False
    for line in base_text.splitlines():  # drop an earlier [calibration] table: this one replaces it
        if line.strip().startswith("["):
            skipping = line.strip() == "[calibration]"
        if not skipping:
            kept.append(line)
    lines = [
        "\n".join(kept).rstrip(),
        "",
        "# Fitted by `roofsim calibrate` (sim/studies/calibrate.py)",
        "[calibration]",
    ]
    for fit in fits:
        lines.append(f'"{fit.path}" = {fit.value!r}')
        lines.append(f'"{fit.path}_source" = "{fit.note}"')
    files.write_text(out, "\n".join(lines) + "\n", "-o")
