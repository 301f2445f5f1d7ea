"""simulate(workload, system) -> Result, and evaluate(graph, chips) over a stack of chips.

Both lower once, check capacity, cost every op with ``sim.cost.roofline.cost_table`` and add up;
``simulate`` is the one-point evaluation that keeps the per-op records, ``evaluate`` keeps the
totals of every point of a chip stack (sweeps). Runs are costed in the steady state, where the
chip's power limit holds its clock (``hardware.power``), unless ``steady`` is false: a short
burst from idle, as a kernel microbenchmark times it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from hardware.chip import ConfigError, System, dtype_bytes
from sim.cost.chips import ChipArrays
from sim.cost.result import CapacityError, MemoryReport, Result, capacity_message
from sim.cost.roofline import BOUNDS, cost_ops, cost_table, weights_resident
from workloads.llm import OpGraph
from workloads.ops import OpKind


class Workload(Protocol):
    def lower(self) -> OpGraph: ...


def matmul_fractions(system: System, dtype: str | None = None) -> tuple[float, float] | None:
    """(burst, steady) rate of a dense 8192^3 GEMM over the chip's peak in ``dtype`` (its 16-bit
    dtype by default): the steady one under its power limit, derived by the power model. None
    where the chip has no power model."""
    from sim.cost.roofline import cost_ops
    from workloads.build import Builder

    chip = system.chip
    if not chip.has_power_model:
        return None
    if dtype is None:
        dtype = next((d for d in ("bf16", "fp16") if d in chip.peak_flops_per_s),
                     max(chip.peak_flops_per_s, key=chip.peak_flops_per_s.__getitem__))  # fmt: skip
    nbytes = dtype_bytes(dtype) if dtype not in ("fp32", "tf32") else 2.0
    op = Builder(dtype, nbytes, nbytes).gemm("gemm", "gemm", 8192, 8192, 8192)
    peak = chip.peak(dtype)
    burst, steady = (op.flops / cost_ops([op], system, steady=s)[0].time_s / peak
                     for s in (False, True))  # fmt: skip
    return burst, steady


def _check_chips(n_chips: int, graph: OpGraph) -> None:
    if n_chips != graph.n_chips:
        raise ConfigError(
            f"--chips {n_chips} must equal the workload's parallel degree "
            f"(tp x replicas = {graph.n_chips})"
        )


def simulate(
    workload: Workload, system: System, *, check_memory: bool = True, steady: bool = True
) -> Result:
    """Derive time, MFU, MBU, the binding resource and memory fit of ``workload`` on ``system``.

    Ops run one after another on each chip (the per-op roofline; overlap between ops is the
    event engine's job). Raises CapacityError when the workload does not fit per chip (unless
    ``check_memory`` is false) and ConfigError when the system's chip count does not match the
    workload's parallelism. ``steady``: the chip has been busy long enough for its power limit
    to hold its clock (serving, training, any benchmark with warm-up); false for one short
    burst from idle, which runs at the burst clock (the measured H100 clock falls from 1980 to
    ~1300-1400 MHz within the first second of a GEMM loop: benchmarks/microbench/results/
    h100-sxm-2026-11-23/clocks.csv).
    """
    graph = workload.lower()
    _check_chips(system.n_chips, graph)
    chip = system.chip
    need = graph.memory
    memory = MemoryReport(
        weights_bytes=need.weights_bytes,
        kv_cache_bytes=need.kv_cache_bytes,
        activation_bytes=need.activation_bytes,
        capacity_bytes=chip.main_memory.capacity_bytes,
        level=chip.main_memory.name,
    )
    if check_memory and not memory.fits:
        raise CapacityError(
            capacity_message(
                memory.weights_bytes,
                memory.kv_cache_bytes,
                memory.activation_bytes,
                memory.capacity_bytes,
                chip.name,
            )
        )
    return _result(graph, system, memory, steady)


def _result(graph: OpGraph, system: System, memory: MemoryReport, steady: bool) -> Result:
    resident = bool(weights_resident(graph.memory.weights_bytes, ChipArrays.of(system)))
    costs = cost_ops(graph.ops, system, overlap=True, steady=steady, resident=resident)
    dtype = graph.ops[0].dtype if graph.ops else "bf16"
    chip = system.chip
    return Result(
        workload=graph.describe,
        system=system.describe(),
        time_s=sum(c.total_time_s for c in costs),
        flops=sum(op.flops * op.count for op in graph.ops) * graph.n_chips,
        model_flops=sum(op.model_flops * op.count for op in graph.ops) * graph.n_chips,
        peak_flops_per_s=chip.peak(dtype),
        main_bandwidth_bytes_per_s=chip.main_memory.bandwidth_bytes_per_s,
        n_chips=graph.n_chips,
        hbm_bytes=sum(c.main_bytes * c.op.count for c in costs),
        memory=memory,
        tokens=graph.tokens,
        costs=costs,
        idle_watts=chip.idle_watts if chip.has_power_model else None,
        power_limit_watts=chip.power_limit_watts,
    )


# ---- many chips ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class VectorResult:
    """Per-point results of ``evaluate``; ``error[i]`` is None where point i ran."""

    time_s: np.ndarray
    mfu: np.ndarray
    mbu: np.ndarray
    throughput: np.ndarray
    energy_j: np.ndarray  # all chips; NaN where the chip has no power model
    avg_power_w: np.ndarray  # all chips
    per_j: np.ndarray  # throughput per joule (tokens, images, ...)
    bound: np.ndarray  # index into BOUNDS
    fits: np.ndarray
    required_bytes: np.ndarray
    throughput_unit: str
    error: list[str | None]


def evaluate(
    graph: OpGraph, n_chips: int, chips: ChipArrays, *, check_memory: bool = True
) -> VectorResult:
    """``simulate`` of one lowered workload on every point: the chips of ``chips`` and, where
    the workload was lowered over arrays (``graph.points`` > 1), its shapes; each is 1 or the
    number of points.

    ``n_chips`` is the system's chip count (ConfigError if it is not the workload's). A point
    that the workload does not fit gets the CapacityError message in ``error`` (unless
    ``check_memory`` is false); a chip without the workload's dtype gets ConfigError's message.
    """
    _check_chips(n_chips, graph)
    n = max(chips.n, graph.points)
    need = graph.memory
    main = len(chips.structure.levels) - 1
    capacity = np.broadcast_to(chips.level(main, "capacity"), (n,))
    weights, kv, act = (
        np.broadcast_to(np.asarray(x, dtype=float), (n,))
        for x in (need.weights_bytes, need.kv_cache_bytes, need.activation_bytes)
    )
    required = weights + kv + act
    fits = required <= capacity
    error: list[str | None] = [None] * n
    if check_memory and not fits.all():
        for i in np.flatnonzero(~fits).tolist():
            error[i] = capacity_message(
                float(weights[i]), float(kv[i]), float(act[i]), float(capacity[i]),
                chips.structure.name,
            )  # fmt: skip
    run = np.array([e is None for e in error], dtype=bool)
    dtype = graph.ops[0].dtype if graph.ops else "bf16"
    missing = _missing_dtype(graph, chips, dtype)
    if missing is not None:
        for i in np.flatnonzero(run).tolist():
            error[i] = missing
        run[:] = False
    unit = graph.describe.get("sample_unit", "tokens")
    nan = np.full(n, np.nan)
    out = VectorResult(
        time_s=nan.copy(),
        mfu=nan.copy(),
        mbu=nan.copy(),
        throughput=nan.copy(),
        energy_j=nan.copy(),
        avg_power_w=nan.copy(),
        per_j=nan.copy(),
        bound=np.zeros(n, dtype=np.int8),
        fits=fits,
        required_bytes=required,
        throughput_unit=f"{unit}_per_s",
        error=error,
    )
    if not run.any():
        return out
    idx = np.flatnonzero(run)
    sub_chips, sub_graph = _points(chips, graph, idx, n)
    time_s, hbm, by_bound, dynamic = _totals(sub_graph, sub_chips, len(idx))
    model_flops = sum(op.model_flops * op.count for op in sub_graph.ops) * graph.n_chips
    out.time_s[idx] = time_s
    out.mfu[idx] = model_flops / (time_s * graph.n_chips * sub_chips.peak(dtype))
    out.mbu[idx] = hbm / (time_s * sub_chips.level(main, "bandwidth"))
    out.throughput[idx] = sub_graph.tokens / time_s
    if sub_chips.structure.has_power:
        energy = graph.n_chips * (sub_chips.values["idle_watts"] * time_s + dynamic)
        out.energy_j[idx] = energy
        out.avg_power_w[idx] = energy / time_s
        out.per_j[idx] = sub_graph.tokens / energy
    # Result.bound's tie rule (the first of BOUNDS with the largest share) is np.argmax's
    out.bound[idx] = np.argmax(by_bound, axis=0)
    return out


#: points costed together; more would spill the GEMM candidates' arrays out of cache
_BLOCK = 8192


def _points(chips: ChipArrays, graph: OpGraph, idx: np.ndarray | slice, n: int):
    """The chips and the graph of the points ``idx`` of ``n`` (either may hold one for all)."""
    everything = isinstance(idx, np.ndarray) and len(idx) == n
    return (
        chips if chips.n == 1 or everything else chips.take(idx),
        graph if graph.points == 1 or everything else graph.take(idx),
    )


def _missing_dtype(graph: OpGraph, chips: ChipArrays, result_dtype: str) -> str | None:
    """ConfigError's message for the first dtype, in the order simulate asks, the chips lack."""
    for op in graph.ops:
        if op.kind in (OpKind.GEMM, OpKind.ATTENTION) and chips.peak_key(op.dtype) is None:
            return chips._no_dtype(op.dtype)
    if chips.peak_key(result_dtype) is None:
        return chips._no_dtype(result_dtype)
    return None


def _totals(graph: OpGraph, chips: ChipArrays, n: int) -> tuple[np.ndarray, ...]:
    """Per point: time (the sum of op totals), main-memory bytes, time per bound [4, n] and
    dynamic energy per chip."""
    if not graph.ops:
        return np.zeros(n), np.zeros(n), np.zeros((len(BOUNDS), n)), np.zeros(n)
    if chips.n > _BLOCK:  # blocks of chips: the GEMM candidates' arrays stay in cache
        blocks = []
        for i in range(0, n, _BLOCK):
            block_chips, block_graph = _points(chips, graph, slice(i, i + _BLOCK), n)
            blocks.append(_totals(block_graph, block_chips, min(_BLOCK, n - i)))
        return tuple(np.concatenate(parts, axis=-1) for parts in zip(*blocks, strict=True))
    resident = weights_resident(graph.memory.weights_bytes, chips)
    t = cost_table(graph.ops, chips, overlap=True, points=graph.points, resident=resident)
    count = np.array([op.count for op in graph.ops], dtype=float)[:, None]
    totals, hbm, energy = t.time * count, t.main_bytes * count, t.energy * count
    # added op by op, in order: a point's sums do not depend on how many points ride along
    time_s, hbm_bytes, dynamic = np.zeros(n), np.zeros(n), np.zeros(n)
    by_bound = np.zeros((len(BOUNDS), n))
    columns = np.arange(n)
    for i in range(len(graph.ops)):
        time_s += totals[i]
        hbm_bytes += hbm[i]
        dynamic += energy[i]
        by_bound[t.bound[i].astype(int), columns] += totals[i]
    return time_s, hbm_bytes, by_bound, dynamic
