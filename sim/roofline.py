"""Cost one op on one chip: tile/wave-quantised compute, tiled memory traffic per level, overhead.

    time = overhead + max(compute, transfer time of each memory level's traffic)

where a level's transfer time is traffic / achievable bandwidth plus its pipeline-fill latency
(``MemoryLevel.transfer_s``).

Compute. A GEMM's output is cut into tiles (tm x tn from the chip's ``gemm_tiles``) spread over
``n_cores``; K is padded to ``tile_k``. When there are fewer tiles than cores, K is split
(split-K) while each split keeps >= 4 K granules. Time = waves x one tile's padded FLOPs at a
core's sustained rate (peak x sustained_clock_fraction / n_cores). A shape that pads tiles or
leaves a partial last wave loses FLOP/s; a shape that fills the machine runs at the sustained
rate. The library's tile choice is modelled as the tile that minimises the op's time.

On a chip whose GEMM library has a stream-K schedule (``compute.stream_k``: CUTLASS 3.x SM90+
``PersistentTileSchedulerSm90StreamK``; Osama et al. 2023, PPoPP), a shape with more tiles than
cores and a partial last wave may instead deal its K iterations out evenly over the cores,
paying an fp32 fix-up of one tile per core; the faster of the two is taken.

Memory. Traffic from main memory uses the on-chip reuse level (L2 / global buffer):
- if the smaller operand fits in half of it, it stays resident and each operand moves once;
- otherwise one wave of tiles (gm x gn tiles, about square) shares its A and B panels through
  L2, so A is read ceil(N / (gn·tn)) times and B ceil(M / (gm·tm)) times.
Traffic into the cores from L2 is per tile: A·ceil(N/tn) + B·ceil(M/tm), where a chip with
thread-block clusters (Hopper, Blackwell: ``compute.cluster`` = [cm, cn]) multicasts one load
to the cluster's tiles, so the L2 tile is (cm·tm) x (cn·tn). A GEMV (M = 1)
therefore streams its weights exactly once. Flash attention never writes the score matrix:
Q and O move once, K and V once per query block unless the K/V of the heads in flight fit in L2.

NB: data handed from one op to the next is assumed to go through main memory (no cross-kernel
L2 residency). In attention the softmax (exp on the special-function units, the rest on the
vector units) runs after each block's matmuls, not overlapped: Shah et al. 2024
(FlashAttention-3, arXiv:2407.08608, Sec. 4.3 ablation) measure 570-580 TFLOP/s on H100
without the overlap and ~660 with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hardware.chip import Chip, System
from sim.collectives import collective_time
from workloads.ops import Attention, Gemm, Op, OpKind

if TYPE_CHECKING:
    import numpy as np

    Rate = float | np.ndarray  # a chip's rate, or one per chip of a stack (sim/vector.py)

# Softmax per score element: exp on the special-function units (``Chip.exp_per_s``) plus
# scale-subtract, max, sum and convert on the vector units. NB: where a chip gives no exp rate,
# an exp is counted as _EXP_FLOPS vector FLOPs (a polynomial approximation's cost).
_SOFTMAX_VECTOR_FLOPS = 4
_EXP_FLOPS = 4
# the backward recomputes P = exp(S - LSE) (the forward's work per score) and forms
# dS = P * (dP - D) * scale: a subtract, a multiply and the scale (FlashAttention-2, Alg. 2)
_DS_VECTOR_FLOPS = 3
_MIN_SPLIT_GRANULES = 4


class Bound:
    COMPUTE = "compute"
    MEMORY = "memory"
    COMMUNICATION = "communication"
    OVERHEAD = "overhead"


@dataclass(frozen=True, slots=True, kw_only=True)
class OpCost:
    """The time of one instance of ``op`` and what it is made of (all per instance)."""

    op: Op
    time_s: float
    compute_s: float
    memory_s: dict[str, float] = field(default_factory=dict)  # per memory level
    overhead_s: float = 0.0
    comm_s: float = 0.0
    bound: str = Bound.COMPUTE
    binding_level: str = ""  # the memory level that binds, when bound == memory
    main_bytes: float = 0.0  # traffic to/from main memory
    tile: tuple[int, int] | None = None
    tile_efficiency: float = 1.0  # useful / executed FLOPs after tile and wave padding

    @property
    def total_time_s(self) -> float:
        return self.time_s * self.op.count


def _finish(op: Op, chip: Chip, compute: float, traffic: dict[str, float], **extra) -> OpCost:
    memory = {
        name: chip.level(name).transfer_s(traffic[name]) for name in traffic if traffic[name] > 0
    }
    mem_s = max(memory.values(), default=0.0)
    level = max(memory, key=memory.get) if memory else ""
    overhead = chip.kernel_overhead_s * op.kernels
    busy = max(compute, mem_s)
    if overhead > busy:
        bound = Bound.OVERHEAD
    elif mem_s > compute:
        bound = Bound.MEMORY
    else:
        bound = Bound.COMPUTE
    return OpCost(
        op=op,
        time_s=overhead + busy,
        compute_s=compute,
        memory_s=memory,
        overhead_s=overhead,
        bound=bound,
        binding_level=level if bound == Bound.MEMORY else "",
        main_bytes=traffic.get(chip.main_memory.name, 0.0),
        **extra,
    )


def _tiling(m: float, n: int, k: int, groups: int, tm: int, tn: int, chip: Chip):
    """(waves, per-unit K, split, tiles_m, tiles_n) for one tile shape."""
    tiles_m, tiles_n = math.ceil(m / tm), math.ceil(n / tn)
    tiles = groups * tiles_m * tiles_n
    granules = math.ceil(k / chip.tile_k)
    split = 1
    if tiles < chip.n_cores:
        split = max(1, min(chip.n_cores // tiles, granules // _MIN_SPLIT_GRANULES))
    waves = math.ceil(tiles * split / chip.n_cores)
    k_unit = math.ceil(granules / split) * chip.tile_k
    return waves, k_unit, split, tiles_m, tiles_n


def stream_k(
    tiles: int, k: int, tm: int, tn: int, n_cores: int, tile_k: int
) -> tuple[float, float] | None:
    """(FLOPs one core executes, fix-up bytes) of a stream-K schedule, or None where it does
    not apply (a single wave, or whole waves): the tiles' K iterations are dealt out evenly over
    the cores, and each core's boundary tile is fixed up through an fp32 workspace (written
    once, read once)."""
    if tiles <= n_cores or tiles % n_cores == 0:
        return None
    per_core = math.ceil(tiles * math.ceil(k / tile_k) / n_cores)
    return per_core * 2.0 * tm * tn * tile_k, 2.0 * n_cores * tm * tn * 4.0


def gemm_traffic(
    g: Gemm, tm: int, tn: int, split: int, chip: Chip, fixup: float = 0.0
) -> dict[str, float]:
    """Bytes moved per memory level for a GEMM tiled tm x tn (see the module docstring);
    ``fixup`` is a stream-K schedule's partial-tile workspace traffic."""
    a = g.groups * g.m * g.k * g.a_bytes
    b = g.groups * g.k * g.n * g.b_bytes
    c = g.groups * g.m * g.n * g.c_bytes
    partials = 2 * (split - 1) * g.groups * g.m * g.n * 4.0 if split > 1 else 0.0  # fp32 partials
    partials += fixup
    cm, cn = chip.cluster
    tile_level = a * math.ceil(g.n / (cn * tn)) + b * math.ceil(g.m / (cm * tm)) + c + partials
    main, reuse = chip.main_memory, chip.reuse_level
    if reuse is None:
        return {main.name: tile_level}
    # the split-K workspace stays in L2 when it fits
    partials_main = 0.0 if partials <= reuse.capacity_bytes / 2 else partials
    per_group_min = min(a, b) / g.groups
    if per_group_min <= reuse.capacity_bytes / 2:
        main_traffic = a + b + c + partials_main
    else:
        tiles_m, tiles_n = math.ceil(g.m / tm), math.ceil(g.n / tn)
        gm = max(1, min(tiles_m, round(math.sqrt(chip.n_cores * tn / tm))))
        gn = max(1, min(tiles_n, math.ceil(chip.n_cores / gm)))
        main_traffic = (
            a * math.ceil(g.n / (gn * tn)) + b * math.ceil(g.m / (gm * tm)) + c + partials
        )
    return {main.name: main_traffic, reuse.name: tile_level}


def cost_gemm(op: Op, chip: Chip) -> OpCost:
    g = op.gemm
    assert g is not None
    core_rate = chip.sustained(op.dtype) / chip.n_cores
    if g.split_accumulate and op.dtype == "fp8" and chip.split_accumulate_fraction is not None:
        core_rate *= chip.split_accumulate_fraction
    best: OpCost | None = None
    for tm, tn in chip.gemm_tiles:
        waves, k_unit, split, tiles_m, tiles_n = _tiling(g.m, g.n, g.k, g.groups, tm, tn, chip)
        compute = waves * 2.0 * tm * tn * k_unit / core_rate
        executed = (
            g.groups * tiles_m * tm * tiles_n * tn * math.ceil(g.k / chip.tile_k) * chip.tile_k
        )
        efficiency = min(1.0, (g.groups * g.m * g.n * g.k) / executed)
        candidates = [(compute, gemm_traffic(g, tm, tn, split, chip))]
        sk = stream_k(g.groups * tiles_m * tiles_n, g.k, tm, tn, chip.n_cores, chip.tile_k)
        if chip.stream_k and sk is not None:
            candidates.append((sk[0] / core_rate, gemm_traffic(g, tm, tn, 1, chip, sk[1])))
        for compute, traffic in candidates:
            cost = _finish(op, chip, compute, traffic, tile=(tm, tn), tile_efficiency=efficiency)
            if best is None or cost.time_s < best.time_s:
                best = cost
    if g.m < min(tm for tm, _ in chip.gemm_tiles):
        # GEMV path: rows too few for a matrix tile run on the vector units, weights streamed once
        a = g.groups * g.m * g.k * g.a_bytes
        b = g.groups * g.k * g.n * g.b_bytes
        c = g.groups * g.m * g.n * g.c_bytes
        traffic = {chip.main_memory.name: a + b + c}
        gemv = _finish(op, chip, op.flops / chip.vector_flops_per_s, traffic)
        if best is None or gemv.time_s < best.time_s:
            best = gemv
    assert best is not None
    return best


def softmax_s(backward: bool, vector_rate: Rate, exp_rate: Rate | None) -> Rate:
    """Seconds per attention score of the non-matmul work on one chip: the exp on the special
    function units where the chip has them (``exp_rate``; else as vector FLOPs) and the
    softmax's vector FLOPs, plus dS's in the backward."""
    vec_flops = _SOFTMAX_VECTOR_FLOPS + (_DS_VECTOR_FLOPS if backward else 0)
    if exp_rate is None:
        return (vec_flops + _EXP_FLOPS) / vector_rate
    return 1.0 / exp_rate + vec_flops / vector_rate


def cost_attention(op: Op, chip: Chip) -> OpCost:
    a: Attention = op.attention  # type: ignore[assignment]
    assert a is not None
    group = a.n_q_heads // a.n_kv_heads
    # "mmha" decode (FasterTransformer/TensorRT-LLM before XQA, vLLM PagedAttention): one thread
    # block per query head computes its one row on the CUDA cores; every query head of a GQA
    # group reads the group's K/V (through L2 when they fit there)
    per_head = a.kernel == "mmha"
    if a.q_len == 1 and not per_head:
        # flash-decoding packs the query heads that share a KV head into one tile's rows
        rows, heads = group, a.batch * a.n_kv_heads
    else:
        rows, heads = a.q_len, a.batch * a.n_q_heads
    tile_ms = sorted({tm for tm, _ in chip.gemm_tiles})
    br = 1 if per_head else next((tm for tm in tile_ms if tm >= rows), tile_ms[-1])
    bc = max(tn for _, tn in chip.gemm_tiles)
    q_blocks = math.ceil(rows / br)
    units = heads * q_blocks
    kv_blocks = math.ceil(a.kv_len / bc)
    split = 1
    if units < chip.n_cores:
        split = max(1, min(chip.n_cores // units, kv_blocks))
    waves = math.ceil(units * split / chip.n_cores)
    # executed work: padded rows x the score pairs each row computes
    pairs_per_row = a.score_pairs / a.q_len
    score_elems = heads * q_blocks * br * pairs_per_row
    # forward: S = QK^T and O = PV; backward (FlashAttention-2 Alg. 2, Dao 2023): S again, then
    # dV = P^T dO, dP = dO V^T, dQ = dS K, dK = dS^T Q: 3 products of width qk, 2 of width v
    width = (3 * a.qk_dim + 2 * a.v_dim) if a.backward else (a.qk_dim + a.v_dim)
    matmul = 2.0 * score_elems * width
    per_unit = 1.0 / (units * split)
    core_rate = chip.attention_rate(op.dtype, a.kernel, a.backward) / chip.n_cores
    softmax_s_per_score = softmax_s(a.backward, chip.vector_flops_per_s, chip.exp_per_s)
    # one warpgroup's matmuls and softmax run one after the other (FlashAttention-2/3 without
    # ping-pong); FA3's ping-pong scheduling hides part of the softmax (NB: not modelled)
    # per unit of work on one core: its share of the matmuls at the core's rate, and its share
    # of the softmax at the core's share of the exp and vector rates
    unit_s = per_unit * (matmul / core_rate + score_elems * softmax_s_per_score * chip.n_cores)
    compute = waves * unit_s
    useful = a.batch * a.n_q_heads * a.score_pairs
    # memory: Q, O once; K/V once per reader unless the heads in flight fit in L2
    q_o = op.bytes.get("activation", 0.0)
    kv = a.batch * a.n_kv_heads * a.kv_len * a.kv_bytes_per_token
    readers = q_blocks * (group if a.q_len > 1 or per_head else 1)  # units reading a KV head
    partials = 2 * (split - 1) * units * br * (a.v_dim + 2) * 4.0 if split > 1 else 0.0
    main, reuse = chip.main_memory, chip.reuse_level
    tile_level = q_o + kv * readers + partials
    if reuse is None:
        traffic = {main.name: tile_level}
    else:
        kv_head = a.kv_len * a.kv_bytes_per_token
        in_flight = min(a.batch * a.n_kv_heads, math.ceil(chip.n_cores / max(1, readers)))
        resident = in_flight * kv_head <= reuse.capacity_bytes / 2
        traffic = {
            main.name: q_o + (kv if resident else kv * readers) + partials,
            reuse.name: tile_level,
        }
    on_chip = _finish(
        op, chip, compute, traffic, tile=(br, bc), tile_efficiency=min(1.0, useful / score_elems)
    )
    if a.q_len == 1 and main.pim_flops_per_s > 0:
        # decode attention is a GEMV over the cache: memory with compute beside its banks can
        # run it where the cache lives, at the internal bandwidth and the in-memory FLOP rate;
        # only Q and O cross the bus. The runtime places it wherever it is faster.
        in_memory = kv / main.pim_bandwidth_bytes_per_s
        pim_compute = op.flops / main.pim_flops_per_s
        busy = max(in_memory, pim_compute, main.transfer_s(q_o))
        if chip.kernel_overhead_s + busy < on_chip.time_s:
            return OpCost(
                op=op,
                time_s=chip.kernel_overhead_s + busy,
                compute_s=pim_compute,
                memory_s={main.name: max(in_memory, main.transfer_s(q_o))},
                overhead_s=chip.kernel_overhead_s,
                bound=Bound.COMPUTE if pim_compute >= in_memory else Bound.MEMORY,
                binding_level=f"{main.name}-pim" if pim_compute < in_memory else "",
                main_bytes=q_o,
            )
    return on_chip


def cost_elementwise(op: Op, chip: Chip) -> OpCost:
    compute = op.flops / chip.vector_flops_per_s
    return _finish(op, chip, compute, {chip.main_memory.name: op.total_bytes})


def cost_collective(op: Op, system: System) -> OpCost:
    c = op.collective
    assert c is not None
    comm = collective_time(c.kind, c.bytes, c.group, system, c.local)
    overhead = system.chip.kernel_overhead_s
    return OpCost(
        op=op,
        time_s=overhead + comm,
        compute_s=0.0,
        overhead_s=overhead,
        comm_s=comm,
        bound=Bound.COMMUNICATION if comm >= overhead else Bound.OVERHEAD,
    )


def cost_op(op: Op, system: System) -> OpCost:
    """Cost one instance of ``op`` on one chip of ``system``."""
    chip = system.chip
    if op.kind == OpKind.GEMM:
        return cost_gemm(op, chip)
    if op.kind == OpKind.ATTENTION:
        return cost_attention(op, chip)
    if op.kind == OpKind.COLLECTIVE:
        return cost_collective(op, system)
    return cost_elementwise(op, chip)
