"""simulate(workload, system) -> Result: lower, check capacity, cost every op, add up."""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

from hardware.chip import ConfigError, System
from sim.result import CapacityError, MemoryReport, Result, capacity_message
from sim.roofline import OpCost, cost_op
from workloads.llm import OpGraph


class Workload(Protocol):
    def lower(self) -> OpGraph: ...


# Seconds of continuous work after which a chip runs at its power limit: the measured H100
# clock falls from 1980 to ~1300-1400 MHz within the first second of a GEMM loop
# (benchmarks/microbench/results/h100-sxm-2026-11-23/clocks.csv, first 1 s sample under load).
POWER_SETTLE_S = 1.0


def at_power_limit(system: System) -> System:
    """The system with its chips at their power-limited matmul rate (if the preset has one)."""
    chip = system.chip.at_power_limit()
    return system if chip is system.chip else replace(system, chip=chip)


def simulate(workload: Workload, system: System, *, check_memory: bool = True) -> Result:
    """See ``_simulate``; a run longer than POWER_SETTLE_S is re-costed at the power limit."""
    result = _simulate(workload, system, check_memory=check_memory)
    if result.time_s > POWER_SETTLE_S and system.chip.has_power_limit:
        result = _simulate(workload, at_power_limit(system), check_memory=check_memory)
    return result


def _simulate(workload: Workload, system: System, *, check_memory: bool = True) -> Result:
    """Derive time, MFU, MBU, the binding resource and memory fit of ``workload`` on ``system``.

    Ops run one after another on each chip (the per-op roofline; overlap between ops is the
    event engine's job). Raises CapacityError when the workload does not fit per chip (unless
    ``check_memory`` is false) and ConfigError when the system's chip count does not match the
    workload's parallelism.
    """
    graph = workload.lower()
    if system.n_chips != graph.n_chips:
        raise ConfigError(
            f"--chips {system.n_chips} must equal the workload's parallel degree "
            f"(tp x replicas = {graph.n_chips})"
        )
    chip = system.chip
    need = graph.memory
    memory = MemoryReport(
        weights_bytes=need.weights_bytes,
        kv_cache_bytes=need.kv_cache_bytes,
        activation_bytes=need.activation_bytes,
        capacity_bytes=chip.main_memory.capacity_bytes,
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
    costs = hide_overlapped(tuple(cost_op(op, system) for op in graph.ops))
    per_chip_time = sum(c.total_time_s for c in costs)
    dtype = graph.ops[0].dtype if graph.ops else "bf16"
    return Result(
        workload=graph.describe,
        system=system.describe(),
        time_s=per_chip_time,
        flops=sum(op.flops * op.count for op in graph.ops) * graph.n_chips,
        model_flops=sum(op.model_flops * op.count for op in graph.ops) * graph.n_chips,
        peak_flops_per_s=chip.peak(dtype),
        main_bandwidth_bytes_per_s=chip.main_memory.bandwidth_bytes_per_s,
        n_chips=graph.n_chips,
        hbm_bytes=sum(c.main_bytes * c.op.count for c in costs),
        memory=memory,
        tokens=graph.tokens,
        costs=costs,
    )


def hide_overlapped(costs: tuple[OpCost, ...]) -> tuple[OpCost, ...]:
    """Hide work that runs beside the op before it (``Op.overlaps_previous``).

    Such an op is exposed only by the part of its total time longer than the previous op's
    total (ring attention's K/V passing behind the attention it feeds).
    """
    out = list(costs)
    for i, c in enumerate(costs):
        if not c.op.overlaps_previous or i == 0:
            continue
        exposed = max(0.0, c.total_time_s - out[i - 1].total_time_s)
        out[i] = replace(c, time_s=exposed / c.op.count)
    return tuple(out)
