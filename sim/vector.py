"""The per-op roofline of ``sim/roofline.py`` over numpy arrays of chips: one workload, many designs.

``evaluate(graph, n_chips, chips)`` gives, for every chip in ``chips``, what
``simulate(workload, system)`` gives for that one chip: time, MFU, MBU, the binding resource and
the memory fit. The op list depends only on the workload, so it is lowered once; what varies
from design point to design point is the chip's continuous parameters (peak FLOP/s, sustained
fractions, bandwidths, capacities, latencies, overheads, links), held as arrays in
``ChipArrays``. Choices that depend only on the chip's discrete structure (core count, tile
shapes, tile_k, the memory levels present) are made once per op in plain Python, with the very
functions the scalar roofline uses; choices that depend on a continuous parameter (whether an
operand fits in half of L2, whether processing in memory is faster, which tile is fastest) are
made per point with ``np.where``. Every array expression repeats the scalar expression's
operations in the same order, so results agree to rounding (tests/test_sweep.py checks
1e-9 relative on a random sample), including ``hide_overlapped`` and the re-cost at the power
limit for runs longer than ``POWER_SETTLE_S``.

NB: ``Result.bound``'s tie rule (the first of compute, memory, communication, overhead with the
largest share) is kept by ``np.argmax``, which returns the first maximum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from hardware.chip import ConfigError, Link, System
from sim.collectives import collective_time
from sim.result import capacity_message
from sim.roofline import (
    Bound,
    _tiling,
    softmax_s,
    stream_k,
)
from sim.simulate import POWER_SETTLE_S
from workloads.llm import OpGraph
from workloads.ops import Op, OpKind

#: bound codes, in ``Result.bound``'s order of preference on ties
BOUNDS = (Bound.COMPUTE, Bound.MEMORY, Bound.COMMUNICATION, Bound.OVERHEAD)
_COMPUTE, _MEMORY, _COMMUNICATION, _OVERHEAD = range(4)

_LEVEL_FIELDS = ("capacity", "bandwidth", "achievable", "latency", "pim_bandwidth", "pim_flops")
_LINK_FIELDS = ("bandwidth", "latency", "achievable", "simple_latency")


def chip_leaves(system: System) -> dict[str, Any]:
    """Every parameter of ``system`` that the roofline reads, flattened to one level.

    Structural leaves (names, counts, tile shapes, which dtypes and levels exist) are hashable
    Python values; the rest are floats, with NaN for an optional value the chip does not have.
    """
    c = system.chip
    out: dict[str, Any] = {
        "name": c.name,
        "n_cores": c.n_cores,
        "gemm_tiles": c.gemm_tiles,
        "tile_k": c.tile_k,
        "cluster": c.cluster,
        "levels": tuple(lvl.name for lvl in c.memory),
        "peak_dtypes": tuple(c.peak_flops_per_s),
        "sustained_dtypes": tuple(c.sustained_by_dtype),
        "power_limited_dtypes": tuple(c.power_limited_by_dtype),
        "has_exp": c.exp_per_s is not None,
        "has_power_limit": c.has_power_limit,
        "has_mma_sync": c.mma_sync_fraction is not None,
        "has_attention_bwd": c.attention_bwd_fraction is not None,
        "stream_k": c.stream_k,
        "chips_per_node": system.chips_per_node,
        "sustained_clock_fraction": c.sustained_clock_fraction,
        "power_limited_fraction": _float(c.power_limited_fraction),
        "mma_sync_fraction": _float(c.mma_sync_fraction),
        "attention_bwd_fraction": _float(c.attention_bwd_fraction),
        "vector_flops_per_s": c.vector_flops_per_s,
        "exp_per_s": _float(c.exp_per_s),
        "kernel_overhead_s": c.kernel_overhead_s,
        "tdp_watts": _float(c.tdp_watts),
        "usd_per_hour": _float(c.usd_per_hour),
    }
    for dtype, rate in c.peak_flops_per_s.items():
        out[f"peak.{dtype}"] = rate
    for dtype, frac in c.sustained_by_dtype.items():
        out[f"sustained.{dtype}"] = frac
    for dtype, frac in c.power_limited_by_dtype.items():
        out[f"power_limited.{dtype}"] = frac
    for i, lvl in enumerate(c.memory):
        values = (
            lvl.capacity_bytes,
            lvl.bandwidth_bytes_per_s,
            lvl.achievable_fraction,
            lvl.latency_s,
            lvl.pim_bandwidth_bytes_per_s,
            lvl.pim_flops_per_s,
        )
        for name, value in zip(_LEVEL_FIELDS, values, strict=True):
            out[f"memory.{i}.{name}"] = value
    for side, link in (("intra", system.intra_node), ("inter", system.inter_node)):
        values = (
            link.bandwidth_bytes_per_s,
            link.latency_s,
            link.achievable_fraction,
            _float(link.simple_latency_s),
        )
        for name, value in zip(_LINK_FIELDS, values, strict=True):
            out[f"{side}.{name}"] = value
    return out


STRUCTURE_LEAVES = (
    "name",
    "n_cores",
    "gemm_tiles",
    "tile_k",
    "cluster",
    "levels",
    "peak_dtypes",
    "sustained_dtypes",
    "power_limited_dtypes",
    "has_exp",
    "has_power_limit",
    "has_mma_sync",
    "has_attention_bwd",
    "stream_k",
    "chips_per_node",
)


def _float(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _none(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


@dataclass(frozen=True, slots=True)
class ChipStructure:
    """What chips must share to be costed together: the discrete part of a chip."""

    name: str
    n_cores: int
    gemm_tiles: tuple[tuple[int, int], ...]
    tile_k: int
    cluster: tuple[int, int]
    levels: tuple[str, ...]
    peak_dtypes: tuple[str, ...]
    sustained_dtypes: tuple[str, ...]
    power_limited_dtypes: tuple[str, ...]
    has_exp: bool
    has_power_limit: bool
    has_mma_sync: bool
    has_attention_bwd: bool
    stream_k: bool
    chips_per_node: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ChipArrays:
    """``n`` chips of one structure; ``values[leaf]`` holds each continuous leaf as an array.

    ``template`` is any System of this structure: collectives are costed by the scalar
    ``collective_time`` on it with each distinct set of link parameters substituted.
    """

    structure: ChipStructure
    values: dict[str, np.ndarray]
    template: System

    @property
    def n(self) -> int:
        return len(self.values["kernel_overhead_s"])

    @classmethod
    def from_leaves(
        cls, structure: ChipStructure, values: dict[str, np.ndarray], template: System
    ) -> ChipArrays:
        return cls(structure=structure, values=values, template=template)

    @classmethod
    def from_systems(cls, systems: list[System]) -> ChipArrays:
        """Stack systems that share one structure (raises ValueError otherwise)."""
        leaves = [chip_leaves(s) for s in systems]
        structure = structure_of(leaves[0])
        if any(structure_of(lv) != structure for lv in leaves[1:]):
            raise ValueError("ChipArrays.from_systems: the systems differ in structure")
        keys = [k for k in leaves[0] if k not in STRUCTURE_LEAVES]
        values = {k: np.array([lv[k] for lv in leaves], dtype=float) for k in keys}
        return cls(structure=structure, values=values, template=systems[0])

    def take(self, where: np.ndarray) -> ChipArrays:
        """The chips at the indices (or boolean mask) ``where``."""
        return replace(self, values={k: v[where] for k, v in self.values.items()})

    # ---- what the roofline asks of a chip ------------------------------------------------------
    def peak_key(self, dtype: str) -> str | None:
        """The peak entry ``Chip.peak(dtype)`` reads (fp16/bf16 stand in for each other)."""
        have = self.structure.peak_dtypes
        if dtype in have:
            return dtype
        twin = {"bf16": "fp16", "fp16": "bf16"}.get(dtype)
        return twin if twin in have else None

    def peak(self, dtype: str) -> np.ndarray:
        key = self.peak_key(dtype)
        if key is None:
            raise ConfigError(self._no_dtype(dtype))
        return self.values[f"peak.{key}"]

    def sustained(self, dtype: str) -> np.ndarray:
        """``Chip.sustained``: peak x the dtype's sustained fraction."""
        if dtype in self.structure.sustained_dtypes:
            frac = self.values[f"sustained.{dtype}"]
        else:
            frac = self.values["sustained_clock_fraction"]
        return self.peak(dtype) * frac

    def at_power_limit(self) -> ChipArrays:
        """``Chip.at_power_limit``: sustained fractions capped by the power-limited fraction."""
        if not self.structure.has_power_limit:
            return self
        p = self.values["power_limited_fraction"]
        values = dict(self.values)
        # fmin: a NaN cap (no general power-limited fraction) leaves the rate as it is
        values["sustained_clock_fraction"] = np.fmin(values["sustained_clock_fraction"], p)
        for dtype in self.structure.sustained_dtypes:
            cap = (
                values[f"power_limited.{dtype}"]
                if dtype in self.structure.power_limited_dtypes
                else p
            )
            values[f"sustained.{dtype}"] = np.fmin(values[f"sustained.{dtype}"], cap)
        if self.structure.has_mma_sync:
            values["mma_sync_fraction"] = np.fmin(values["mma_sync_fraction"], p)
        return replace(self, values=values)

    def attention_rate(self, dtype: str, kernel: str, backward: bool = False) -> np.ndarray:
        """``Chip.attention_rate``: sustained, capped by the warp-level MMA path for "fa2" and
        by the measured backward kernel rate for the backward."""
        if kernel == "mmha":
            return self.values["vector_flops_per_s"]
        rate = self.sustained(dtype)
        if kernel == "fa2" and self.structure.has_mma_sync:
            rate = np.minimum(rate, self.peak(dtype) * self.values["mma_sync_fraction"])
        if backward and self.structure.has_attention_bwd:
            rate = np.minimum(rate, self.peak(dtype) * self.values["attention_bwd_fraction"])
        return rate

    def level(self, i: int, name: str) -> np.ndarray:
        return self.values[f"memory.{i}.{name}"]

    def transfer_s(self, i: int, traffic_bytes: np.ndarray | float) -> np.ndarray:
        """``MemoryLevel.transfer_s`` of level ``i``."""
        achievable = self.level(i, "bandwidth") * self.level(i, "achievable")
        stream = traffic_bytes / achievable
        return stream + np.minimum(stream, self.level(i, "latency"))

    def _no_dtype(self, dtype: str) -> str:
        """The exact message ``Chip.peak`` raises for a dtype the chip lacks."""
        chip = replace(
            self.template.chip,
            name=self.structure.name,
            peak_flops_per_s={d: 1.0 for d in self.structure.peak_dtypes},
        )
        try:
            chip.peak(dtype)
        except ConfigError as exc:
            return str(exc)
        raise AssertionError(f"{dtype} is available on {chip.name}")  # pragma: no cover


def structure_of(leaves: dict[str, Any]) -> ChipStructure:
    return ChipStructure(**{k: leaves[k] for k in STRUCTURE_LEAVES})


@dataclass(frozen=True, slots=True, kw_only=True)
class VectorResult:
    """Per-chip results of one workload; ``error[i]`` is None where point i ran."""

    time_s: np.ndarray
    mfu: np.ndarray
    mbu: np.ndarray
    throughput: np.ndarray
    bound: np.ndarray  # index into BOUNDS
    fits: np.ndarray
    required_bytes: float
    throughput_unit: str
    error: list[str | None]


@dataclass(frozen=True, slots=True)
class _Cost:
    """One instance of an op on every chip: its time, binding resource and main-memory bytes."""

    time: np.ndarray
    bound: np.ndarray
    main_bytes: np.ndarray | float


def evaluate(
    graph: OpGraph, n_chips: int, chips: ChipArrays, *, check_memory: bool = True
) -> VectorResult:
    """``simulate`` of one lowered workload on every chip of ``chips`` (see the module docstring).

    ``n_chips`` is the system's chip count (ConfigError if it is not the workload's). A chip
    that the workload does not fit gets the CapacityError message in ``error`` (unless
    ``check_memory`` is false); a chip without the workload's dtype gets ConfigError's message.
    """
    if n_chips != graph.n_chips:
        raise ConfigError(
            f"--chips {n_chips} must equal the workload's parallel degree "
            f"(tp x replicas = {graph.n_chips})"
        )
    n = chips.n
    need = graph.memory
    main = len(chips.structure.levels) - 1
    capacity = chips.level(main, "capacity")
    required = need.weights_bytes + need.kv_cache_bytes + need.activation_bytes
    fits = required <= capacity
    error: list[str | None] = [None] * n
    if check_memory and not fits.all():
        for i in np.flatnonzero(~fits).tolist():
            error[i] = capacity_message(
                need.weights_bytes,
                need.kv_cache_bytes,
                need.activation_bytes,
                float(capacity[i]),
                chips.structure.name,
            )
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
        bound=np.zeros(n, dtype=np.int8),
        fits=fits,
        required_bytes=required,
        throughput_unit=f"{unit}_per_s",
        error=error,
    )
    if not run.any():
        return out
    idx = np.flatnonzero(run)
    sub = chips if len(idx) == n else chips.take(idx)
    time_s, hbm, by_bound = _simulate(graph, sub)
    if sub.structure.has_power_limit:
        slow = time_s > POWER_SETTLE_S
        if slow.any():
            at_limit = sub.take(slow).at_power_limit()
            t2, h2, b2 = _simulate(graph, at_limit)
            time_s[slow], hbm[slow], by_bound[:, slow] = t2, h2, b2
    model_flops = sum(op.model_flops * op.count for op in graph.ops) * graph.n_chips
    peak = sub.peak(dtype)
    out.time_s[idx] = time_s
    out.mfu[idx] = model_flops / (time_s * graph.n_chips * peak)
    out.mbu[idx] = hbm / (time_s * sub.level(main, "bandwidth"))
    out.throughput[idx] = graph.tokens / time_s
    out.bound[idx] = np.argmax(by_bound, axis=0)
    return out


def _missing_dtype(graph: OpGraph, chips: ChipArrays, result_dtype: str) -> str | None:
    """ConfigError's message for the first dtype, in the order simulate asks, the chips lack."""
    for op in graph.ops:
        if op.kind in (OpKind.GEMM, OpKind.ATTENTION) and chips.peak_key(op.dtype) is None:
            return chips._no_dtype(op.dtype)
    if chips.peak_key(result_dtype) is None:
        return chips._no_dtype(result_dtype)
    return None


def _simulate(graph: OpGraph, chips: ChipArrays) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per chip: time (the sum of op totals), main-memory bytes, and time per bound [4, n]."""
    costs = [_cost_op(op, chips) for op in graph.ops]
    # hide_overlapped: an op beside the previous one is exposed only where it is longer
    totals = [c.time * op.count for c, op in zip(costs, graph.ops, strict=True)]
    for i, op in enumerate(graph.ops):
        if op.overlaps_previous and i > 0:
            exposed = np.maximum(0.0, totals[i] - totals[i - 1])
            costs[i] = replace(costs[i], time=exposed / op.count)
            totals[i] = costs[i].time * op.count
    n = chips.n
    time_s = np.zeros(n)
    hbm = np.zeros(n)
    by_bound = np.zeros((len(BOUNDS), n))
    for c, op, total in zip(costs, graph.ops, totals, strict=True):
        time_s = time_s + total
        hbm = hbm + c.main_bytes * op.count
        for b in range(len(BOUNDS)):
            by_bound[b] = by_bound[b] + np.where(c.bound == b, total, 0.0)
    return time_s, hbm, by_bound


def _cost_op(op: Op, chips: ChipArrays) -> _Cost:
    if op.kind == OpKind.GEMM:
        return _gemm(op, chips)
    if op.kind == OpKind.ATTENTION:
        return _attention(op, chips)
    if op.kind == OpKind.COLLECTIVE:
        return _collective(op, chips)
    compute = op.flops / chips.values["vector_flops_per_s"]
    return _finish(chips, compute, {_main(chips): op.total_bytes}, op.kernels)


def _main(chips: ChipArrays) -> int:
    return len(chips.structure.levels) - 1


def _reuse(chips: ChipArrays) -> int | None:
    return len(chips.structure.levels) - 2 if len(chips.structure.levels) >= 2 else None


def _finish(
    chips: ChipArrays, compute: np.ndarray, traffic: dict[int, Any], kernels: int = 1
) -> _Cost:
    """``roofline._finish``: overhead + max(compute, each level's transfer time)."""
    mem_s: np.ndarray | float = 0.0
    first = True
    for i, t in traffic.items():
        if np.ndim(t) == 0 and not t > 0:
            continue  # the scalar roofline skips levels without traffic
        s = chips.transfer_s(i, t)
        mem_s = s if first else np.maximum(mem_s, s)
        first = False
    overhead = chips.values["kernel_overhead_s"] * kernels
    busy = np.maximum(compute, mem_s)
    bound = np.where(overhead > busy, _OVERHEAD, np.where(mem_s > compute, _MEMORY, _COMPUTE))
    return _Cost(
        time=overhead + busy,
        bound=bound.astype(np.int8),
        main_bytes=traffic.get(_main(chips), 0.0),
    )


def _better(best: _Cost | None, cand: _Cost) -> _Cost:
    """The candidate where strictly faster, else the incumbent (the scalar loop's ``<``)."""
    if best is None:
        return cand
    win = cand.time < best.time
    return _Cost(
        time=np.where(win, cand.time, best.time),
        bound=np.where(win, cand.bound, best.bound),
        main_bytes=np.where(win, cand.main_bytes, best.main_bytes),
    )


def _gemm(op: Op, chips: ChipArrays) -> _Cost:
    """``roofline.cost_gemm``: the fastest tile per chip, or the GEMV path where faster."""
    g = op.gemm
    assert g is not None
    st = chips.structure
    core_rate = chips.sustained(op.dtype) / st.n_cores
    main, reuse = _main(chips), _reuse(chips)
    a = g.groups * g.m * g.k * g.a_bytes
    b = g.groups * g.k * g.n * g.b_bytes
    c = g.groups * g.m * g.n * g.c_bytes
    best: _Cost | None = None
    candidates = []
    for tm, tn in st.gemm_tiles:
        waves, k_unit, split, tiles_m, tiles_n = _tiling(g.m, g.n, g.k, g.groups, tm, tn, st)
        candidates.append((tm, tn, waves * 2.0 * tm * tn * k_unit, split, 0.0))
        sk = stream_k(g.groups * tiles_m * tiles_n, g.k, tm, tn, st.n_cores, st.tile_k)
        if st.stream_k and sk is not None:
            candidates.append((tm, tn, sk[0], 1, sk[1]))
    for tm, tn, work, split, fixup in candidates:
        compute = work / core_rate
        # roofline.gemm_traffic with L2 capacity as an array
        partials = 2 * (split - 1) * g.groups * g.m * g.n * 4.0 if split > 1 else 0.0
        partials += fixup
        cm, cn = st.cluster
        tile_level = a * math.ceil(g.n / (cn * tn)) + b * math.ceil(g.m / (cm * tm)) + c + partials
        if reuse is None:
            traffic: dict[int, Any] = {main: tile_level}
        else:
            half = chips.level(reuse, "capacity") / 2
            partials_main = np.where(partials <= half, 0.0, partials)
            per_group_min = min(a, b) / g.groups
            tiles_m, tiles_n = math.ceil(g.m / tm), math.ceil(g.n / tn)
            gm = max(1, min(tiles_m, round(math.sqrt(st.n_cores * tn / tm))))
            gn = max(1, min(tiles_n, math.ceil(st.n_cores / gm)))
            panels = a * math.ceil(g.n / (gn * tn)) + b * math.ceil(g.m / (gm * tm)) + c + partials
            resident = a + b + c + partials_main
            traffic = {main: np.where(per_group_min <= half, resident, panels), reuse: tile_level}
        best = _better(best, _finish(chips, compute, traffic))
    if g.m < min(tm for tm, _ in st.gemm_tiles):
        compute = op.flops / chips.values["vector_flops_per_s"]
        best = _better(best, _finish(chips, compute, {main: a + b + c}))
    assert best is not None
    return best


def _attention(op: Op, chips: ChipArrays) -> _Cost:
    """``roofline.cost_attention``, with the L2 residency test and the PIM choice per chip."""
    a = op.attention
    assert a is not None
    st = chips.structure
    group = a.n_q_heads // a.n_kv_heads
    per_head = a.kernel == "mmha"  # roofline.cost_attention: a block per query head
    if a.q_len == 1 and not per_head:
        rows, heads = group, a.batch * a.n_kv_heads
    else:
        rows, heads = a.q_len, a.batch * a.n_q_heads
    tile_ms = sorted({tm for tm, _ in st.gemm_tiles})
    br = 1 if per_head else next((tm for tm in tile_ms if tm >= rows), tile_ms[-1])
    bc = max(tn for _, tn in st.gemm_tiles)
    q_blocks = math.ceil(rows / br)
    units = heads * q_blocks
    kv_blocks = math.ceil(a.kv_len / bc)
    split = 1
    if units < st.n_cores:
        split = max(1, min(st.n_cores // units, kv_blocks))
    waves = math.ceil(units * split / st.n_cores)
    pairs_per_row = a.score_pairs / a.q_len
    score_elems = heads * q_blocks * br * pairs_per_row
    width = (3 * a.qk_dim + 2 * a.v_dim) if a.backward else (a.qk_dim + a.v_dim)
    matmul = 2.0 * score_elems * width
    per_unit = 1.0 / (units * split)
    core_rate = chips.attention_rate(op.dtype, a.kernel, a.backward) / st.n_cores
    vector = chips.values["vector_flops_per_s"]
    exp_rate = chips.values["exp_per_s"] if st.has_exp else None
    softmax_s_per_score = softmax_s(a.backward, vector, exp_rate)
    unit_s = per_unit * (matmul / core_rate + score_elems * softmax_s_per_score * st.n_cores)
    compute = waves * unit_s
    q_o = op.bytes.get("activation", 0.0)
    kv = a.batch * a.n_kv_heads * a.kv_len * a.kv_bytes_per_token
    readers = q_blocks * (group if a.q_len > 1 or per_head else 1)
    partials = 2 * (split - 1) * units * br * (a.v_dim + 2) * 4.0 if split > 1 else 0.0
    main, reuse = _main(chips), _reuse(chips)
    tile_level = q_o + kv * readers + partials
    if reuse is None:
        traffic: dict[int, Any] = {main: tile_level}
    else:
        kv_head = a.kv_len * a.kv_bytes_per_token
        in_flight = min(a.batch * a.n_kv_heads, math.ceil(st.n_cores / max(1, readers)))
        resident = in_flight * kv_head <= chips.level(reuse, "capacity") / 2
        traffic = {
            main: q_o + np.where(resident, kv, kv * readers) + partials,
            reuse: tile_level,
        }
    on_chip = _finish(chips, compute, traffic)
    pim_flops = chips.level(main, "pim_flops")
    if a.q_len == 1 and (pim_flops > 0).any():
        has_pim = pim_flops > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            in_memory = kv / chips.level(main, "pim_bandwidth")
            pim_compute = op.flops / pim_flops
        q_o_s = chips.transfer_s(main, q_o)
        busy = np.maximum(np.maximum(in_memory, pim_compute), q_o_s)
        time = chips.values["kernel_overhead_s"] + busy
        use = has_pim & (time < on_chip.time)
        pim_bound = np.where(pim_compute >= in_memory, _COMPUTE, _MEMORY)
        return _Cost(
            time=np.where(use, time, on_chip.time),
            bound=np.where(use, pim_bound, on_chip.bound).astype(np.int8),
            main_bytes=np.where(use, q_o, on_chip.main_bytes),
        )
    return on_chip


def _collective(op: Op, chips: ChipArrays) -> _Cost:
    """``roofline.cost_collective``: the scalar ``collective_time`` per distinct set of links."""
    coll = op.collective
    assert coll is not None
    names = [f"{side}.{f}" for side in ("intra", "inter") for f in _LINK_FIELDS]
    links = np.stack([chips.values[k] for k in names], axis=1)
    distinct, inverse = np.unique(links, axis=0, return_inverse=True)
    comm_each = np.empty(len(distinct))
    for j, row in enumerate(distinct.tolist()):
        system = replace(
            chips.template,
            chips_per_node=chips.structure.chips_per_node,
            intra_node=Link(bandwidth_bytes_per_s=row[0], latency_s=row[1],
                            achievable_fraction=row[2], simple_latency_s=_none(row[3])),
            inter_node=Link(bandwidth_bytes_per_s=row[4], latency_s=row[5],
                            achievable_fraction=row[6], simple_latency_s=_none(row[7])),
        )  # fmt: skip
        comm_each[j] = collective_time(coll.kind, coll.bytes, coll.group, system, coll.local)
    comm = comm_each[inverse.reshape(-1)]
    overhead = chips.values["kernel_overhead_s"]
    return _Cost(
        time=overhead + comm,
        bound=np.where(comm >= overhead, _COMMUNICATION, _OVERHEAD).astype(np.int8),
        main_bytes=0.0,
    )
