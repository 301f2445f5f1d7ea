"""Charts of results: roofline, metric vs an axis, sweep heatmap, Pareto front, timeline Gantt.

Every function draws on a ``matplotlib.figure.Figure`` of its own (no pyplot state, Agg
canvas, headless), writes PNG or SVG by the suffix of ``path`` and returns the figure, so a
caller or a test can inspect the axes; ``path=None`` draws without writing (the HTML report,
``sim/plots/report.py``, inlines the figure as SVG itself). matplotlib is imported inside the functions: ``import
sim`` and the CLI start without it.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hardware import files
from hardware.chip import Chip, ConfigError, System
from hardware.units import format_si
from workloads.ops import OpKind

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from sim.cost.result import Result
    from sim.cost.roofline import OpCost
    from sim.engine.events import Timeline

FORMATS = (".png", ".svg")
DPI = 150

# Fixed colours for the common op families, so one family has one colour in every chart
# (tab10 order); other families take the remaining colours in the order they appear.
_FAMILY_COLOURS = {
    "attention": "tab:blue",
    "mlp": "tab:orange",
    "moe": "tab:green",
    "head": "tab:red",
    "norm": "tab:purple",
    "embedding": "tab:brown",
    "optimizer": "tab:pink",
    "other": "tab:gray",
}
_SPARE_COLOURS = ("tab:olive", "tab:cyan", "black", "gold", "navy", "teal", "crimson")

# Timeline categories: chunk-level bars fill a row; ops inside a chunk ("parts") are drawn as a
# thin strip at the bottom of the compute row (plain compute parts are the chunk itself).
_TIMELINE_COLOURS = {
    "forward": "tab:blue",
    "backward": "tab:orange",
    "optimizer": "tab:brown",
    "pipeline": "tab:cyan",
    "data-parallel": "tab:green",
    "recompute": "tab:purple",
    "tp": "tab:red",
    "cp": "tab:pink",
    "ep": "tab:olive",
    "dp": "darkgreen",
}
_PART_CATEGORIES = frozenset({"compute", "recompute", "tp", "cp", "ep", "dp"})
_BUBBLE_COLOUR = "0.88"


# ---- output ------------------------------------------------------------------------------------


def check_output(path: str | Path | None, flag: str = "-o/--output") -> Path | None:
    """``path`` as a Path (None: draw only); raises ConfigError unless its suffix is .png or .svg."""
    if path is None:
        return None
    p = Path(path)
    if p.suffix.lower() not in FORMATS:
        raise ConfigError(
            f"{flag} {str(path)!r}: unsupported suffix {p.suffix or '(none)'!r}; "
            "end the file name in .png or .svg"
        )
    return p


def _new_figure(width_in: float, height_in: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), dpi=DPI)


def _save(fig: Figure, path: Path | None) -> None:
    """Write PNG or SVG; SVG keeps its text as text (searchable, editable, smaller). None: no file."""
    if path is None:
        return
    import matplotlib

    try:
        with matplotlib.rc_context({"svg.fonttype": "none"}):
            fig.savefig(path, format=path.suffix.lower()[1:], dpi=DPI)
    except OSError as exc:
        raise ConfigError(
            f"-o/--output {str(path)!r}: cannot write ({exc.strerror}); check the folder exists"
        ) from None


# ---- roofline ------------------------------------------------------------------------------


def _op_times(result: Any) -> list[tuple[OpCost, float]]:
    """(cost of one instance, total seconds in the run) per op of a Result or a TrainResult."""
    if hasattr(result, "op_costs"):  # TrainResult: (cost, times per step) on the critical stage
        return [(c, c.total_time_s * n) for c, n in result.op_costs]
    return [(c, c.total_time_s) for c in result.costs]


def _roofline_title(result: Any) -> str:
    w = result.workload
    bits = [str(w.get(k)) for k in ("model", "kind") if w.get(k)]
    extra = [f"{k} {w[k]}" for k in ("batch", "context", "prompt", "seq", "steps") if w.get(k)]
    return (
        " ".join(bits) + (", " + ", ".join(extra) if extra else "") + f" on {result.system['name']}"
    )


def _label_spot(lo: float, hi: float, bw: float, pts: list[tuple[float, float]]) -> float:
    """An x in [lo, hi] where a label above the line y = bw·x covers the fewest points.

    The label spans about 1.5 decades of x to the right of its start; a point counts when it
    lies in that span no lower than half the line (memory-bound ops sit just under it, large
    markers reach over it). Ties go to the smallest x, where plots are emptiest.
    """
    if hi <= lo:
        return lo
    n = 24
    best, best_cost = lo, math.inf
    for i in range(n + 1):
        x = lo * (hi / lo) ** (i / n)
        cost = sum(1 for px, py in pts if x / 1.5 <= px <= x * 30 and py >= bw * px / 2)
        if cost < best_cost:
            best, best_cost = x, cost
    return best


def _line_angle_deg(ax: Axes, x0: float, y0: float, x1: float, y1: float) -> float:
    """Screen angle of the segment (x0, y0)-(x1, y1) in data coordinates (layout must be fixed)."""
    (a, b), (c, d) = ax.transData.transform([(x0, y0), (x1, y1)])
    return math.degrees(math.atan2(d - b, c - a))


def roofline_chart(
    result: Result,
    system: System | Chip,
    path: str | Path | None,
    *,
    title: str | None = None,
) -> Figure:
    """A log-log roofline of one simulated run, per chip.

    x = arithmetic intensity of each op, its FLOPs per byte moved to or from main memory
    (``OpCost.main_bytes``: the tiling model's traffic, not the minimum); y = the FLOP/s one
    chip achieves on it (FLOPs / time of one instance, overhead included). Ceilings: a sloped
    line per memory level at its achievable bandwidth (datasheet x ``achievable_fraction``),
    bent flat at the workload dtype's peak; a flat line per distinct dtype peak, the workload
    dtype's sustained rate (``Chip.sustained``) and the vector units' peak. NB: points sit at
    their main-memory intensity, so the lines of inner levels (L2, SRAM) are references for
    how much on-chip bandwidth there is, not the roof of each point. Collectives and ops with
    no FLOPs or no main-memory traffic have no intensity and are not drawn (the footnote
    counts them). Marker area is proportional to the op's share of the run's time, colour is
    the op family. ``result`` may be a ``Result`` or a ``TrainResult`` (critical stage).
    """
    out = check_output(path)
    chip = system.chip if isinstance(system, System) else system
    dtype = result.workload.get("dtype", "bf16")
    times = _op_times(result)
    total_s = sum(t for _, t in times) or 1.0
    points: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    left_out = 0
    for cost, op_total_s in times:
        op = cost.op
        if op.kind == OpKind.COLLECTIVE or min(op.flops, cost.main_bytes, cost.time_s) <= 0:
            left_out += 1
            continue
        points[op.family].append(
            (op.flops / cost.main_bytes, op.flops / cost.time_s, op_total_s / total_s)
        )
    peak = chip.peak(dtype)
    sustained = chip.sustained(dtype)
    xs = [x for pts in points.values() for x, _, _ in pts]
    ys = [y for pts in points.values() for _, y, _ in pts]
    ridges = [peak / lvl.achievable_bytes_per_s for lvl in chip.memory]
    x_lo = 10 ** math.floor(math.log10(min([*xs, min(ridges)]) / 3))
    x_hi = 10 ** math.ceil(math.log10(max([*xs, max(ridges)]) * 3))
    top = max(chip.peak_flops_per_s.values())
    y_lo = 10 ** math.floor(math.log10(min([*ys, chip.vector_flops_per_s, x_lo * min(
        lvl.achievable_bytes_per_s for lvl in chip.memory)]) / 2))  # fmt: skip
    y_hi = top * 3

    fig = _new_figure(8.0, 5.4)
    fig.subplots_adjust(left=0.11, right=0.97, bottom=0.12, top=0.91)  # fixed: label angles
    ax = fig.add_subplot()
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_lo, y_hi)
    ax.set_xlabel("arithmetic intensity (FLOP per main-memory byte)")
    ax.set_ylabel("achieved FLOP/s per chip")
    ax.set_title(title or _roofline_title(result), fontsize=10)
    ax.grid(True, which="major", color="0.9", linewidth=0.6)

    # flat ceilings: each distinct dtype peak (equal peaks share a line), sustained, vector
    by_rate: dict[float, list[str]] = defaultdict(list)
    for name, rate in chip.peak_flops_per_s.items():
        by_rate[rate].append(name)
    for rate, names in sorted(by_rate.items()):
        mine = rate == peak
        ax.axhline(rate, color="black" if mine else "0.6", linewidth=1.6 if mine else 0.8,
                   linestyle="-" if mine else ":")  # fmt: skip
        ax.annotate(f"{'/'.join(names)} peak {format_si(rate, 'FLOP/s')}", (x_lo, rate),
                    xytext=(4, 2), textcoords="offset points", ha="left", va="bottom",
                    fontsize=7, color="black" if mine else "0.45")  # fmt: skip
    if sustained < peak:
        ax.axhline(sustained, color="black", linewidth=1.0, linestyle="--")
        # on the right, away from the peak labels on the left (tf32 sits just under it)
        ax.annotate(f"{dtype} sustained {format_si(sustained, 'FLOP/s')}", (x_hi, sustained),
                    xytext=(-4, -2), textcoords="offset points", ha="right", va="top",
                    fontsize=7)  # fmt: skip
    ax.axhline(chip.vector_flops_per_s, color="0.6", linewidth=0.8, linestyle="-.")
    ax.annotate(f"vector peak {format_si(chip.vector_flops_per_s, 'FLOP/s')}",
                (x_hi, chip.vector_flops_per_s), xytext=(-4, 2), textcoords="offset points",
                ha="right", va="bottom", fontsize=7, color="0.45")  # fmt: skip

    # sloped ceilings: one per memory level, up to the workload dtype's peak; each label sits
    # where the fewest points are near its line
    all_points = [(p[0], p[1]) for pts in points.values() for p in pts]
    main = chip.main_memory
    for lvl in chip.memory:
        bw = lvl.achievable_bytes_per_s
        ridge = peak / bw
        is_main = lvl is main
        ax.plot([x_lo, ridge], [bw * x_lo, peak], color="black" if is_main else "0.5",
                linewidth=1.6 if is_main else 0.9, linestyle="-" if is_main else "--")  # fmt: skip
        x_text = _label_spot(x_lo * 2, ridge / 8, bw, all_points)
        angle = _line_angle_deg(ax, x_text, bw * x_text, ridge, peak)
        frac = f" = {lvl.achievable_fraction:g} x {format_si(lvl.bandwidth_bytes_per_s, 'B/s')}"
        ax.annotate(
            f"{lvl.name} {format_si(bw, 'B/s')}" + (frac if lvl.achievable_fraction < 1 else ""),
            (x_text, bw * x_text), xytext=(0, 3), textcoords="offset points", rotation=angle,
            rotation_mode="anchor", ha="left", va="bottom", fontsize=7,
            color="black" if is_main else "0.4",
        )  # fmt: skip

    # one scatter, largest markers first so small ones stay visible on top of them
    spare = iter(_SPARE_COLOURS)
    colours = {f: _FAMILY_COLOURS.get(f) or next(spare, "0.3") for f in points}
    flat = sorted(((p, f) for f, pts in points.items() for p in pts), key=lambda t: -t[0][2])
    if flat:
        ax.scatter([p[0] for p, _ in flat], [p[1] for p, _ in flat],
                   s=[max(4.0, 2000.0 * p[2]) for p, _ in flat],
                   color=[colours[f] for _, f in flat], alpha=0.75, edgecolors="black",
                   linewidths=0.4, zorder=3)  # fmt: skip
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], marker="o", linestyle="", markersize=6, color=colours[f],
                          markeredgecolor="black", markeredgewidth=0.4, label=f)
                   for f in points]  # fmt: skip
        ax.legend(handles=handles, loc="lower right", fontsize=8, title="op family",
                  title_fontsize=8)  # fmt: skip
    note = "marker area ∝ share of the run's time"
    if left_out:
        ops = "op" if left_out == 1 else "ops"
        note += f"; {left_out} {ops} not drawn (collectives, no FLOPs or no main-memory bytes)"
    fig.text(0.01, 0.01, note, fontsize=7, color="0.4")
    _save(fig, out)
    return fig


# ---- metric vs an axis ---------------------------------------------------------------------


def metric_vs_axis(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path: str | Path | None,
    *,
    x_label: str,
    y_label: str,
    logx: bool = False,
    logy: bool = False,
    title: str | None = None,
    note: str | None = None,
) -> Figure:
    """One line per ``label -> (xs, ys)``; a NaN y (a point that does not fit) breaks the line.

    ``note`` is a footnote under the axes (e.g. why some lines end early).
    """
    out = check_output(path)
    if not series:
        raise ConfigError("metric_vs_axis: series must hold at least one label -> (xs, ys)")
    fig = _new_figure(7.0, 4.5)
    ax = fig.add_subplot()
    for label, (xs, ys) in series.items():
        if len(xs) != len(ys):
            raise ConfigError(
                f"metric_vs_axis: series {label!r} has {len(xs)} x values but {len(ys)} y values"
            )
        ax.plot(list(xs), list(ys), marker="o", markersize=4, label=label)
    if logx:
        from matplotlib.ticker import FuncFormatter

        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(True, color="0.9", linewidth=0.6)
    ax.legend(fontsize=8)
    fig.tight_layout()
    if note:
        fig.subplots_adjust(bottom=fig.subplotpars.bottom + 0.04)
        fig.text(0.01, 0.01, note, fontsize=7, color="0.4")
    _save(fig, out)
    return fig


#: decode metrics for ``decode_batch_series``: name -> (axis label, value of a Result)
DECODE_METRICS: dict[str, tuple[str, Callable[[Any], float]]] = {
    "mfu": ("MFU (model FLOPs / peak)", lambda r: r.mfu),
    "time": ("decode step time (s)", lambda r: r.time_s),
    "tokens_per_s": ("tokens/s (all chips)", lambda r: r.tokens / r.time_s),
}


def decode_batch_series(
    model: str,
    chips: Sequence[str],
    batches: Sequence[int],
    *,
    metric: str = "mfu",
    context: int = 2048,
    dtype: str = "bf16",
    kv_dtype: str | None = None,
    tp: int = 1,
    overrides: Sequence[str] = (),
) -> dict[str, tuple[list[int], list[float]]]:
    """``metric`` of one decode step at each batch size, per chip (``tp`` chips each).

    A batch that does not fit in memory gets NaN (the line stops there). Raises ConfigError
    for an unknown metric, chip or model.
    """
    from hardware import load_system
    from sim.cost.result import CapacityError
    from sim.cost.simulate import simulate
    from workloads import Decode, load_model

    if metric not in DECODE_METRICS:
        raise ConfigError(f"--metric must be one of {', '.join(DECODE_METRICS)}, got {metric!r}")
    value = DECODE_METRICS[metric][1]
    cfg = load_model(model)
    out: dict[str, tuple[list[int], list[float]]] = {}
    for name in chips:
        system = load_system(name, tp, list(overrides))
        ys = []
        for batch in batches:
            workload = Decode(model=cfg, batch=batch, context=context, dtype=dtype,
                              kv_dtype=kv_dtype, tp=tp, dp=1)  # fmt: skip
            try:
                ys.append(value(simulate(workload, system)))
            except CapacityError:
                ys.append(math.nan)
        out[system.name if tp > 1 else name] = (list(batches), ys)
    return out


# ---- sweep tables --------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    """A finite float from a CSV cell or a number; None for text, empty or non-finite."""
    if isinstance(value, bool):
        return float(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _failed(row: Mapping[str, Any]) -> bool:
    """A failed sweep point: a non-empty ``error`` or a ``status`` other than empty/ok."""
    error = row.get("error")
    status = str(row.get("status", "") or "").strip().lower()
    return bool(error not in (None, "") and str(error).strip()) or status not in ("", "ok")


def read_rows(source: str | Path | Iterable[Mapping[str, Any]], flag: str = "--csv") -> list[dict]:
    """Rows of a sweep result: a CSV file (one header row) or already-parsed mappings."""
    if isinstance(source, str | Path):
        text = files.read_text(source, flag)
        rows = [dict(r) for r in csv.DictReader(io.StringIO(text, newline=""))]
    else:
        rows = [dict(r) for r in source]
    if not rows:
        raise ConfigError(f"{flag}: no rows; give a sweep result CSV with a header and points")
    return rows


def _check_columns(rows: list[dict], wanted: Mapping[str, str]) -> None:
    """Raise ConfigError naming the flag of the first column (flag -> name) no row has."""
    have = list(rows[0])
    for flag, name in wanted.items():
        if name not in have:
            raise ConfigError(f"{flag} {name!r}: no such column; choose one of {', '.join(have)}")


def _good_rows(rows: list[dict], columns: Sequence[str]) -> list[dict]:
    """Rows that did not fail and have a number in each of ``columns``."""
    return [
        r for r in rows if not _failed(r) and all(_number(r.get(c)) is not None for c in columns)
    ]


def _lower_is_better(metric: str) -> bool:
    """Times are minimised: a name ending in ``_s`` (not ``_per_s``) or starting with time/latency."""
    m = metric.lower()
    return (m.endswith("_s") and not m.endswith("_per_s")) or m.startswith(("time", "latency"))


_REDUCERS: dict[str, Callable[[list[float]], float]] = {
    "max": max, "min": min, "mean": lambda v: sum(v) / len(v),
}  # fmt: skip


def _reducer(metric: str, reduce: str | None) -> tuple[str, Callable[[list[float]], float]]:
    """(name, function) of ``--reduce``; by default the best: min for a time, max otherwise."""
    how = reduce or ("min" if _lower_is_better(metric) else "max")
    if how not in _REDUCERS:
        raise ConfigError(f"--reduce must be one of max, min, mean, got {how!r}")
    return how, _REDUCERS[how]


def _axis_values(values: Iterable[Any]) -> list[Any]:
    """Distinct axis values, numeric ascending when all are numbers, else in order of appearance."""
    distinct = list(dict.fromkeys(values))
    if all(_number(v) is not None for v in distinct):
        return sorted(distinct, key=lambda v: _number(v))
    return distinct


def _tick(value: Any) -> str:
    number = _number(value)
    if number is None:
        return str(value)
    if abs(number) >= 1e4:
        return format_si(number, "").strip()
    return f"{number:g}"


def sweep_heatmap(
    source: str | Path | Iterable[Mapping[str, Any]],
    x: str,
    y: str,
    metric: str,
    path: str | Path | None,
    *,
    reduce: str | None = None,
    log_color: bool = False,
    title: str | None = None,
) -> Figure:
    """A heatmap of ``metric`` over the values of columns ``x`` and ``y`` of a sweep result.

    Failed points (a ``status`` other than ok, or an ``error``) and rows without a number in
    x, y or the metric are skipped. When other axes vary too, a cell holds several points and
    shows their ``reduce``: max, min or mean; by default the best one (min for a time, a
    metric named ``*_s`` other than ``*_per_s``; max otherwise), and the title says so.
    """
    out = check_output(path)
    rows = read_rows(source)
    _check_columns(rows, {"--x": x, "--y": y, "--metric": metric})
    good = [r for r in rows if not _failed(r) and _number(r.get(metric)) is not None]
    if not good:
        raise ConfigError(f"--metric {metric!r}: no successful point has a number there")
    how, reducer = _reducer(metric, reduce)
    cells: dict[tuple[Any, Any], list[float]] = defaultdict(list)
    for r in good:
        cells[(r[x], r[y])].append(_number(r[metric]))
    xs = _axis_values(k[0] for k in cells)
    ys = _axis_values(k[1] for k in cells)
    import numpy as np

    grid = np.full((len(ys), len(xs)), np.nan)
    xi = {v: i for i, v in enumerate(xs)}
    yi = {v: i for i, v in enumerate(ys)}
    per_cell = max(len(v) for v in cells.values())
    for (vx, vy), values in cells.items():
        grid[yi[vy], xi[vx]] = reducer(values)

    from matplotlib.colors import LogNorm

    fig = _new_figure(
        max(5.5, min(11.0, 2.5 + 0.45 * len(xs))), max(4.0, min(9.0, 1.8 + 0.35 * len(ys)))
    )
    ax = fig.add_subplot()
    norm = LogNorm() if log_color and np.nanmin(grid) > 0 else None
    image = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis", norm=norm,
                      interpolation="nearest")  # fmt: skip
    colorbar = fig.colorbar(image, ax=ax)
    colorbar.set_label(metric)
    for values, setter, labeller in ((xs, ax.set_xticks, ax.set_xticklabels),
                                     (ys, ax.set_yticks, ax.set_yticklabels)):  # fmt: skip
        step = max(1, math.ceil(len(values) / 12))
        idx = list(range(0, len(values), step))
        setter(idx)
        labeller([_tick(values[i]) for i in idx], fontsize=8)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    if len(xs) <= 16 and len(ys) <= 16:
        finite = grid[np.isfinite(grid)]
        mid = (finite.min() + finite.max()) / 2 if finite.size else 0.0
        for (j, i), v in np.ndenumerate(grid):
            if np.isfinite(v):
                ax.text(i, j, _tick(v), ha="center", va="center", fontsize=6,
                        color="black" if v > mid else "white")  # fmt: skip
    notes = []
    if per_cell > 1:
        notes.append(f"{how} of up to {per_cell} points per cell: other axes vary")
    skipped = len(rows) - len(good)
    if skipped:
        notes.append(f"{skipped} failed points skipped")
    heading = title or f"{metric} over {x} x {y}"
    ax.set_title(heading + ("\n" + "; ".join(notes) if notes else ""), fontsize=9)
    fig.tight_layout()
    _save(fig, out)
    return fig


def sweep_series(
    source: str | Path | Iterable[Mapping[str, Any]],
    x: str,
    y: str,
    color: str | None = None,
    *,
    reduce: str | None = None,
    where: Sequence[str] = (),
) -> dict[str, tuple[list[float], list[float]]]:
    """Lines for ``metric_vs_axis`` from a sweep result: ``y`` at each value of ``x``, one line
    per value of ``color`` (one line without it), over the successful points. ``where`` keeps
    the rows whose ``COLUMN=VALUE`` hold (each a string as written in the CSV, or an equal
    number). Where other axes vary, a point of a line is the ``reduce`` of its rows (max, min
    or mean; by default the best: min for a time, max otherwise), as in ``sweep_heatmap``."""
    rows = read_rows(source)
    wanted = {"--x": x, "--y": y, **({"--color": color} if color else {})}
    filters = []
    for item in where:
        column, sep, value = item.partition("=")
        if not sep or not column:
            raise ConfigError(f"--where must be COLUMN=VALUE, got {item!r}")
        filters.append((column, value))
        wanted[f"--where {item}:"] = column
    _check_columns(rows, wanted)

    def keep(r: dict) -> bool:
        for column, value in filters:
            cell = r.get(column, "")
            if cell != value and not (
                _number(cell) is not None and _number(cell) == _number(value)
            ):
                return False
        return True

    good = [r for r in _good_rows(rows, [x, y]) if keep(r)]
    if not good:
        raise ConfigError(f"--y {y!r}: no successful point (after --where) has numbers in {x}, {y}")
    _, reducer = _reducer(y, reduce)
    lines: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in good:
        lines[str(r[color]) if color else y][_number(r[x])].append(_number(r[y]))
    return {
        label: (sorted(points), [reducer(points[v]) for v in sorted(points)])
        for label, points in lines.items()
    }


# ---- Pareto front --------------------------------------------------------------------------


def pareto_front(
    points: Sequence[tuple[float, float]], maximize: tuple[bool, bool] = (True, True)
) -> list[int]:
    """Indices of the points that no other point dominates, in ascending order of x.

    q dominates p when q is at least as good in both metrics and better in one ("good" per
    ``maximize``). Equal points do not dominate each other: all of them stay. Points with a
    NaN are never on the front. O(n log n): sort best-x first, then a running best y.
    """
    sx = 1.0 if maximize[0] else -1.0
    sy = 1.0 if maximize[1] else -1.0
    keyed = [
        (sx * px, sy * py, i)
        for i, (px, py) in enumerate(points)
        if not (math.isnan(px) or math.isnan(py))
    ]
    keyed.sort(key=lambda t: (-t[0], -t[1]))
    front: list[int] = []
    best_y_better_x = -math.inf  # best y among points with a strictly better x
    i = 0
    while i < len(keyed):
        j = i
        while j < len(keyed) and keyed[j][0] == keyed[i][0]:
            j += 1
        group_best = keyed[i][1]  # same x: sorted best y first
        for _, gy, idx in keyed[i:j]:
            if gy > best_y_better_x and gy == group_best:
                front.append(idx)
        best_y_better_x = max(best_y_better_x, group_best)
        i = j
    return sorted(front, key=lambda k: (points[k][0], points[k][1]))


def pareto_frontier(
    source: str | Path | Iterable[Mapping[str, Any]],
    x_metric: str,
    y_metric: str,
    path: str | Path | None,
    *,
    maximize: tuple[bool, bool] = (True, True),
    label: str | None = None,
    title: str | None = None,
    log: bool = False,
) -> tuple[list[dict], Figure]:
    """Scatter every successful point, highlight and join the Pareto-optimal ones.

    Returns (the frontier rows in ascending x, the figure). ``label`` names a column to write
    beside each frontier point (e.g. the chip); ``log`` draws both axes logarithmic.
    """
    out = check_output(path)
    rows = read_rows(source)
    wanted = {"--x": x_metric, "--y": y_metric} | ({"--label": label} if label else {})
    _check_columns(rows, wanted)
    good = _good_rows(rows, (x_metric, y_metric))
    if not good:
        raise ConfigError(f"--x {x_metric!r} / --y {y_metric!r}: no successful point has both")
    pts = [(_number(r[x_metric]), _number(r[y_metric])) for r in good]
    front_idx = pareto_front(pts, maximize)
    front = [good[i] for i in front_idx]

    fig = _new_figure(7.0, 4.8)
    ax = fig.add_subplot()
    ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=10, color="0.65", alpha=0.6,
               linewidths=0, label=f"all points ({len(pts)})")  # fmt: skip
    fx = [pts[i][0] for i in front_idx]
    fy = [pts[i][1] for i in front_idx]
    ax.plot(fx, fy, color="tab:red", linewidth=1.2, drawstyle="default", zorder=3)
    ax.scatter(fx, fy, s=36, color="tab:red", edgecolors="black", linewidths=0.5, zorder=4,
               label=f"Pareto front ({len(front_idx)})")  # fmt: skip
    if label:
        for row, px, py in zip(front, fx, fy, strict=True):
            ax.annotate(str(row[label]), (px, py), xytext=(4, 4), textcoords="offset points",
                        fontsize=7)  # fmt: skip
    sense = ["higher is better" if m else "lower is better" for m in maximize]
    ax.set_xlabel(f"{x_metric} ({sense[0]})")
    ax.set_ylabel(f"{y_metric} ({sense[1]})")
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_title(title or f"Pareto front of {y_metric} vs {x_metric}", fontsize=10)
    ax.grid(True, color="0.9", linewidth=0.6)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, out)
    return front, fig


# ---- timeline ------------------------------------------------------------------------------


def load_trace(source: Timeline | Mapping[str, Any] | str | Path) -> dict:
    """A Chrome trace dict from a Timeline, a trace dict, or a JSON file written by ``--trace``."""
    if isinstance(source, str | Path):
        try:
            return json.loads(files.read_text(source, "--from-trace"))
        except OSError as exc:
            raise ConfigError(
                f"--from-trace {str(source)!r}: cannot read ({exc.strerror})"
            ) from None
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"--from-trace {str(source)!r}: not JSON ({exc.msg}, line {exc.lineno}); give "
                "a file written by roofsim train --trace"
            ) from None
    if isinstance(source, Mapping):
        return dict(source)
    return source.chrome_trace()


def _idle(busy: list[tuple[float, float]], end: float) -> list[tuple[float, float]]:
    """(start, width) of the gaps in [0, end] not covered by the (start, width) intervals."""
    gaps, t = [], 0.0
    for start, width in sorted(busy):
        if start > t:
            gaps.append((t, start - t))
        t = max(t, start + width)
    if end > t:
        gaps.append((t, end - t))
    return gaps


def timeline_gantt(
    timeline: Timeline | Mapping[str, Any] | str | Path,
    path: str | Path | None,
    *,
    title: str | None = None,
    parts: bool = True,
) -> Figure:
    """The event engine's timeline as a Gantt chart: a row per stage and stream.

    Bars are coloured by kind: forward and backward chunks, pipeline sends, the data-parallel
    gradient reduction and parameter gather, the optimizer. Idle time on a compute stream
    before the step ends is drawn grey as the bubble. With ``parts``, communication and
    recomputation inside a chunk (tp, cp, ep, dp, recompute) are a thin strip under its bar.
    A bar is drawn at least 0.2 % of the step wide so that short transfers stay visible.
    ``timeline`` is a ``Timeline`` simulated with ``trace=True``, its ``chrome_trace()`` dict,
    or the JSON file that ``roofsim train --trace FILE`` writes.
    """
    out = check_output(path)
    trace = load_trace(timeline)
    events = [e for e in trace.get("traceEvents", []) if e.get("ph") == "X"]
    if not events:
        raise ConfigError(
            "timeline: no events to draw; simulate with trace=True (roofsim train --trace FILE)"
        )
    stage_names: dict[Any, str] = {}
    thread_names: dict[tuple[Any, Any], str] = {}
    for e in trace.get("traceEvents", []):
        if e.get("ph") == "M" and e.get("name") == "process_name":
            stage_names[e["pid"]] = e["args"]["name"]
        elif e.get("ph") == "M" and e.get("name") == "thread_name":
            thread_names[(e["pid"], e["tid"])] = e["args"]["name"]

    # seconds from the trace's microseconds
    def span(e: dict) -> tuple[float, float]:
        return e["ts"] * 1e-6, e["dur"] * 1e-6

    step_s = getattr(timeline, "step_s", None) or max(sum(span(e)) for e in events)
    rows = sorted({(e["pid"], e["tid"]) for e in events})
    row_of = {key: n for n, key in enumerate(rows)}
    top: dict[tuple[int, str], list[tuple[float, float]]] = defaultdict(list)
    strip: dict[tuple[int, str], list[tuple[float, float]]] = defaultdict(list)
    chunk_labels: list[tuple[int, float, float, str]] = []
    multi_chunk = any(e.get("args", {}).get("chunk", 0) for e in events)
    for e in events:
        n, cat = row_of[(e["pid"], e["tid"])], e.get("cat", "other")
        if cat in _PART_CATEGORIES:
            if parts and cat != "compute":
                strip[(n, cat)].append(span(e))
            continue
        top[(n, cat)].append(span(e))
        if cat in ("forward", "backward"):
            name = e["name"] if multi_chunk else e["name"].removesuffix(".0")
            chunk_labels.append((n, *span(e), name))

    scale, unit = (1e3, "ms") if step_s < 10 else (1.0, "s")
    min_w = 0.002 * step_s  # short sends stay visible
    fig = _new_figure(10.0, 1.4 + 0.38 * len(rows))
    ax = fig.add_subplot()
    spare = iter(_SPARE_COLOURS)
    colours = dict(_TIMELINE_COLOURS)
    handles: dict[str, Any] = {}
    from matplotlib.patches import Patch

    for n, key in enumerate(rows):
        is_compute = thread_names.get(key, "compute" if key[1] == 0 else "") == "compute"
        if is_compute:
            busy = [iv for (m, _), ivs in top.items() if m == n for iv in ivs]
            gaps = _idle(busy, step_s)
            if gaps:
                ax.broken_barh([(s * scale, w * scale) for s, w in gaps], (n - 0.4, 0.8),
                               facecolors=_BUBBLE_COLOUR, hatch="///", edgecolor="0.75",
                               linewidth=0)  # fmt: skip
                handles["bubble (idle)"] = Patch(facecolor=_BUBBLE_COLOUR, hatch="///",
                                                 edgecolor="0.75")  # fmt: skip
    for (n, cat), ivs in sorted(top.items()):
        colour = colours.setdefault(cat, next(spare, "0.3"))
        edge = "white" if cat in ("forward", "backward", "optimizer") else colour
        ax.broken_barh([(s * scale, max(w, min_w) * scale) for s, w in ivs], (n - 0.4, 0.8),
                       facecolors=colour, edgecolor=edge, linewidth=0.3)  # fmt: skip
        handles.setdefault(cat, Patch(facecolor=colour))
    for (n, cat), ivs in sorted(strip.items()):
        colour = colours.setdefault(cat, next(spare, "0.3"))
        ax.broken_barh([(s * scale, w * scale) for s, w in ivs], (n + 0.12, 0.28),
                       facecolors=colour, linewidth=0)  # fmt: skip
        handles.setdefault(f"{cat} (inside chunk)", Patch(facecolor=colour))
    if len(chunk_labels) <= 200:
        for n, start, width, name in chunk_labels:
            if width > 0.015 * step_s:
                ax.text((start + width / 2) * scale, n - 0.1, name, ha="center", va="center",
                        fontsize=6, color="white")  # fmt: skip
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(
        [f"{stage_names.get(p, f'stage {p}')} · {thread_names.get((p, t), f'stream {t}')}"
         for p, t in rows], fontsize=7,
    )  # fmt: skip
    ax.set_ylim(len(rows) - 0.5, -0.5)  # first stage on top
    ax.set_xlim(0, step_s * scale * 1.01)
    ax.set_xlabel(f"time ({unit})")
    ax.set_ylabel("pipeline stage · stream")
    ax.set_title(title or f"timeline of one step: {format_si(step_s, 's')}", fontsize=10)
    ax.grid(True, axis="x", color="0.9", linewidth=0.6)
    ax.legend(handles=list(handles.values()), labels=list(handles), fontsize=7,
              loc="upper left", bbox_to_anchor=(1.0, 1.0))  # fmt: skip
    fig.tight_layout()
    _save(fig, out)
    return fig


def serving_timeline(result: Any, path: str | Path | None, *, title: str | None = None) -> Figure:
    """A serving run over time: requests in the system and KV-cache occupancy (two panels).

    ``result`` is a ``sim.engine.serve.ServeResult``; requests in system are counted from each
    request's arrival and finish times, KV occupancy is sampled at every engine iteration.
    """
    import numpy as np

    out = check_output(path)
    fig = _new_figure(7.0, 4.8)
    top, bottom = fig.subplots(2, 1, sharex=True)
    events = np.concatenate([result.arrival_s, result.finish_s[~np.isnan(result.finish_s)]])
    steps = np.concatenate(
        [np.ones(len(result.arrival_s)), -np.ones(int((~np.isnan(result.finish_s)).sum()))]
    )
    order = np.argsort(events, kind="stable")
    top.step(events[order], np.cumsum(steps[order]), where="post", color="tab:blue", lw=0.8)
    top.set_ylabel("requests in system")
    top.grid(True, color="0.9", linewidth=0.6)
    bottom.plot(result.kv_t, 100 * np.asarray(result.kv_used), color="tab:purple", lw=0.8)
    bottom.set_ylabel("KV cache used (%)")
    bottom.set_ylim(0, 105)
    bottom.set_xlabel("time (s)")
    bottom.grid(True, color="0.9", linewidth=0.6)
    w = result.workload
    top.set_title(
        title
        or f"{w['model']} on {result.system['name']}: {w.get('rate', '')} req/s, "
        f"p99 TTFT {np.percentile(result.ttft, 99):.3g} s, MFU {result.mfu:.1%}",
        fontsize=10,
    )
    fig.tight_layout()
    _save(fig, out)
    return fig
