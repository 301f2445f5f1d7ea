"""Cost ops on chips, over arrays: tile/wave-quantised compute, tiled traffic per level, overhead.

    time = overhead + max(compute, transfer time of each memory level's traffic)

where a level's transfer time is traffic / achievable bandwidth plus its pipeline-fill latency
(``MemoryLevel.transfer_s``). This is roofsim's one cost model: every field below is an array
with ops along axis 0 and design points along axis 1 (a chip stack from ``ChipArrays``, and
workload shapes that may differ per point), so one op on one chip and a million-point sweep run
the same lines. Discrete choices (the tile shape, stream-K or not, the GEMV path, an operand
resident in L2 or not, processing in memory or not) are made per element: every candidate is
costed and the first fastest is taken (``np.argmin``), or the test is an ``np.where``.

Compute. A GEMM's output is cut into tiles (tm x tn from the chip's ``gemm_tiles``) spread over
``n_cores``; K is padded to ``tile_k``. When there are fewer tiles than cores, K is split
(split-K) while each split keeps >= 4 K granules. Time = waves x one tile's padded FLOPs at a
core's sustained rate (peak x sustained_clock_fraction / n_cores). A shape that pads tiles or
leaves a partial last wave loses FLOP/s; a shape that fills the machine runs at the sustained
rate. The library's tile choice is modelled as the tile that minimises the op's time. Where the
library ships tiles in steps of ``compute.tile_step`` (cuBLASLt on Hopper and Blackwell: 8), a
tile's side is cut to a step multiple (``_cut_tiles``): M = 257 runs as two 136-row tiles, not
three 128-row ones, and M = 384 as four 96-row tiles where that fills a wave of cores better.

On a chip whose GEMM library has a stream-K schedule (``compute.stream_k``: CUTLASS 3.x SM90+
``PersistentTileSchedulerSm90StreamK``; Osama et al. 2023, PPoPP), a shape with more tiles than
cores and a partial last wave may instead deal its K iterations out evenly over the cores,
paying an fp32 fix-up of one tile per core; the faster of the two is taken.

A kernel of one program per tile (Triton's fused MoE: ``Gemm.tile_exposed``; FlashAttention-2
and the other flash kernels without warp specialization, per query block) also waits, each
wave, for its tile's first operands and its output at its share of L2 (``_tile_edges``,
``_flash_edges``): added to the compute time, hidden where a memory level
binds. cuBLAS's and CUTLASS 3.x's persistent, warp-specialized kernels overlap both (FA3 its
loads).

Memory. Traffic from main memory uses the on-chip reuse level (L2 / global buffer):
- if the smaller operand fits in half of it, it stays resident and each operand moves once;
- otherwise one wave of tiles (gm x gn tiles, about square) shares its A and B panels through
  L2, so A is read ceil(N / (gn·tn)) times and B ceil(M / (gm·tm)) times;
- where that level is software-managed (a scratchpad: TPU VMEM, a global buffer; not one of the
  chip's caches), the compiler blocks the output instead in squares as large as half of it
  holds (``_scratchpad_block``), and the block is the gm x gn tiles (NB: weights pinned in
  that level do not shrink the half it is sized from).
Traffic into the cores from L2 is per tile: A·ceil(N/tn) + B·ceil(M/tm), where a chip with
thread-block clusters (Hopper, Blackwell: ``compute.cluster`` = [cm, cn]) multicasts one load
to the cluster's tiles, so the L2 tile is (cm·tm) x (cn·tn). A GEMV (M = 1)
therefore streams its weights exactly once. Flash attention never writes the score matrix:
Q and O move once, K and V once per query block unless the K/V of the heads in flight fit in L2.

Power (``_power``, coefficients from ``hardware.power``): each op's dynamic energy is its
FLOPs and bytes moved times their energies; in the steady state an op that would draw more
than the chip's power limit at the burst clock runs at the lower clock where it draws the limit.

NB: data handed from one op to the next is assumed to go through main memory (no cross-kernel
L2 residency). In attention the softmax (exp on the special-function units, the rest on the
vector units) runs after each block's matmuls, not overlapped: Shah et al. 2024
(FlashAttention-3, arXiv:2407.08608, Sec. 4.3 ablation) measure 570-580 TFLOP/s on H100
without the overlap and ~660 with it. On a chip whose MMA runs asynchronously with its
accumulators outside the registers (``compute.attention_overlap``: Blackwell's tcgen05 and
tensor memory) the native forward takes the longer of the two instead (FlashAttention-4,
Zadouri et al. 2026, Sec. 3.1), plus the share of the shorter that its per-tile hand-offs leave
exposed (``compute.attention_overlap_exposed``, fitted to FlashAttention-4's measured forward);
its backward stays in series.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from hardware.chip import ConfigError, System, members_per_node
from hardware.power import PIM_PJ_PER_BYTE
from sim.cost.chips import ChipArrays
from sim.cost.collectives import (
    LinkParams,
    collective_s,
    custom_all_reduce_s,
    measured_all_to_all,
)
from workloads.ops import (
    Attention,
    Op,
    OpKind,
    causal_pairs,
    for_chip,
    point_arrays,
    take_points,
    window_span,
)

# Softmax per score element: exp on the special-function units (``Chip.exp_per_s``) plus
# scale-subtract, max, sum and convert on the vector units. NB: where a chip gives no exp rate,
# an exp is counted as _EXP_FLOPS vector FLOPs (a polynomial approximation's cost).
_SOFTMAX_VECTOR_FLOPS = 4
_EXP_FLOPS = 4
# the backward recomputes P = exp(S - LSE) (the forward's work per score) and forms
# dS = P * (dP - D) * scale: a subtract, a multiply and the scale (FlashAttention-2, Alg. 2)
_DS_VECTOR_FLOPS = 3
_MIN_SPLIT_GRANULES = 4
#: a Triton tl.dot block is at least 16 a side: the smallest matrix instruction's rows (mma.sync
#: m16n8k16 / m16n8k32 on Ampere, Ada and Hopper), which Triton 2.x asserted (triton/language/
#: semantic.py, dot: "All non-batch values in both first input shape ... must be >= 16!") and
#: later versions pad to; the engines' Triton GEMM configs start at BLOCK_SIZE_M = 16 (vLLM's
#: and SGLang's fused MoE and w8a8_block_fp8_matmul). Fewer rows are padded to 16
_TL_DOT_MIN = 16.0


class Bound:
    COMPUTE = "compute"
    MEMORY = "memory"
    COMMUNICATION = "communication"
    OVERHEAD = "overhead"


#: bound codes, in ``Result.bound``'s order of preference on ties
BOUNDS = (Bound.COMPUTE, Bound.MEMORY, Bound.COMMUNICATION, Bound.OVERHEAD)
_COMPUTE, _MEMORY, _COMMUNICATION, _OVERHEAD = range(4)
#: binding-level codes: none, main memory, the reuse level (L2), main memory's PIM units
_NO_LEVEL, _MAIN, _REUSE, _PIM = range(4)

Array = np.ndarray


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
    tile_efficiency: float = 1.0  # useful / executed FLOPs after tile and wave padding (and
    # attention's masked key tiles: a causal diagonal's, a sliding window's)
    energy_j: float = 0.0  # dynamic energy (FLOPs and bytes moved; idle power not included)
    clock: float = 1.0  # clock over the burst clock: < 1 where the power limit held it down

    @property
    def total_time_s(self) -> float:
        return self.time_s * self.op.count


#: what the cost of one op on one point is made of, per instance: the fields of ``Costs``
FIELDS = ("time", "compute", "main_s", "reuse_s", "main_bytes", "reuse_bytes", "overhead",
          "comm", "bound", "level", "tile_m", "tile_n", "tile_efficiency", "energy",
          "clock")  # fmt: skip
_F = {f: i for i, f in enumerate(FIELDS)}
_DEFAULT = {"tile_efficiency": 1.0, "clock": 1.0}

#: one op kind's pass: each field as an array that broadcasts to [ops of that kind, points]
Part = dict[str, Any]


class Costs:
    """Every op on every point: ``data[field, op, point]`` with the fields of ``FIELDS`` (see the
    module docstring; per instance of the op). ``tile_m`` and ``tile_n`` are 0 where no matrix
    tile applies; ``bound`` and ``level`` hold the codes above."""

    __slots__ = ("data",)

    def __init__(self, data: Array) -> None:
        self.data = data

    def __getattr__(self, name: str) -> Array:
        try:
            return self.data[_F[name]]
        except KeyError:
            raise AttributeError(name) from None


# ---- the ops as arrays ---------------------------------------------------------------------------
def _table(rows: list[tuple]) -> list[Array]:
    """Rows of per-op values as columns [ops, 1], or [ops, points] where a workload lowered over
    arrays gave a value one entry per point."""
    try:
        table = np.array(rows, dtype=float)
    except ValueError:  # some values are arrays over points
        table = None
    if table is None or table.ndim > 2:  # (every value an array of one width stacks to 3-D)
        width = max(np.size(v) for row in rows for v in row)
        table = np.empty((len(rows), len(rows[0]), width))
        for i, row in enumerate(rows):
            table[i] = [np.broadcast_to(np.asarray(v, dtype=float), (width,)) for v in row]
        return list(table.transpose(1, 0, 2))
    return list(table.T[:, :, None])


def _rates(chips: ChipArrays, keys: list[tuple], rate: Any) -> Array:
    """One rate per op [ops, points]: ``rate(chips, *key)`` for each distinct key, in op order
    (so a missing dtype raises for the first op that needs it)."""
    distinct: dict[tuple, int] = {}
    rows = []
    for key in keys:
        if key not in distinct:
            distinct[key] = len(rows)
            memo = (rate, *key)
            if memo not in chips.memo:
                chips.memo[memo] = rate(chips, *key) + np.zeros(chips.n)
            rows.append(chips.memo[memo])
    if len(rows) == 1:
        return rows[0][None]
    return np.stack(rows)[[distinct[k] for k in keys]]


def _transfer_s(chips: ChipArrays, i: int, traffic_bytes: Array) -> Array:
    """``MemoryLevel.transfer_s`` of level ``i``: streaming at the achievable bandwidth plus the
    pipeline fill (at most the level's latency)."""
    key = ("level", i)
    if key not in chips.memo:
        chips.memo[key] = (
            chips.level(i, "bandwidth") * chips.level(i, "achievable"),
            chips.level(i, "latency"),
        )
    achievable, latency = chips.memo[key]
    stream = traffic_bytes / achievable
    return stream + np.minimum(stream, latency)


def _finish(
    chips: ChipArrays,
    compute: Array,
    main_bytes: Array,
    reuse_bytes: Array | None,
    kernels: Array,
    reuse_scale: Array | float = 1.0,
) -> tuple[Array, Array, Array, Array]:
    """overhead + max(compute, each level's transfer time): (time, main_s, reuse_s, overhead).
    The binding resource follows from these (``_bound_level``). ``reuse_scale``: the reuse
    level's transfers take that much longer (a kernel's own load path: ``cost_gemms``)."""
    main = _main(chips)
    main_s = _transfer_s(chips, main, main_bytes)
    if reuse_bytes is None:
        reuse_s, mem_s = 0.0, main_s
    else:
        reuse_s = _transfer_s(chips, main - 1, reuse_bytes) * reuse_scale
        mem_s = np.maximum(main_s, reuse_s)
    overhead = chips.values["kernel_overhead_s"] * kernels
    return overhead + np.maximum(compute, mem_s), main_s, reuse_s, overhead


def _bound_level(compute: Array, main_s: Array, reuse_s: Array, overhead: Array):
    """(bound, level) codes of ops costed by ``_finish``: overhead where it exceeds the busy
    time, else memory where a level's transfer exceeds compute (the slowest level binds; main
    memory on a tie), else compute."""
    mem_s = np.maximum(main_s, reuse_s)
    memory = mem_s > compute
    bound = np.where(overhead > np.maximum(compute, mem_s), _OVERHEAD,
                     np.where(memory, _MEMORY, _COMPUTE))  # fmt: skip
    level = np.where(bound == _MEMORY, np.where(reuse_s > main_s, _REUSE, _MAIN), _NO_LEVEL)
    return bound, level


def _main(chips: ChipArrays) -> int:
    return len(chips.structure.levels) - 1


def _has_reuse(chips: ChipArrays) -> bool:
    return len(chips.structure.levels) >= 2


# ---- GEMM ----------------------------------------------------------------------------------------
def _gemm_rate(chips: ChipArrays, dtype: str, split_accumulate: bool, mma_sync: bool,
               promotion: float = 0.0) -> Array:  # fmt: skip
    # a kernel of warp-level mma.sync instructions runs at that path's rate (FlashAttention-2's)
    rate = chips.attention_rate(dtype, "fa2") if mma_sync else chips.sustained(dtype)
    rate = rate / chips.structure.n_cores
    if split_accumulate and dtype == "fp8" and chips.structure.has_split_accumulate:
        rate = rate * chips.values["split_accumulate_fraction"]
    if promotion:
        rate = rate / (1.0 + promotion_share(chips, dtype, promotion))
    return rate


#: the depth of a fine-grained scale block along K (DeepSeek-V3's 128; the Triton and CUTLASS
#: block-fp8 kernels take BLOCK_SIZE_K <= 128, so at least one promotion each 128 deep)
_SCALE_BLOCK_K = 128


def promotion_share(chips: ChipArrays, dtype: str, promotion: float) -> Array:
    """The time a block-scaled GEMM's exposed promotion adds, as a share of its MMA time
    (``Gemm.promotion``): per output element and 128-deep block the matrix units do 128
    multiply-adds (256 FLOP at the dtype's peak) and the vector units ``promotion``
    instructions, each a lane-slot of the fp32 peak (2 FLOP a fused multiply-add):
    r = promotion x 2 x peak(dtype) / (256 x peak(fp32)), 0.46 on an H100 for Triton's 2
    (benchmarks/research/block-fp8-promotion-2026-12-06.md sec. 4). A chip without an fp32
    peak has no vector units to charge: 0."""
    if chips.peak_key("fp32") is None:
        return np.zeros(chips.n)
    return promotion * 2.0 * chips.peak(dtype) / (2.0 * _SCALE_BLOCK_K * chips.peak("fp32"))


@functools.cache
def _min_tile_m(tiles: tuple[tuple[int, int], ...]) -> int:
    return min(t[0] for t in tiles)


@functools.cache
def _candidates(
    tiles: tuple[tuple[int, int], ...], stream_k: bool, gemv: bool, step: int = 0
) -> dict[str, Array]:
    """A chip structure's GEMM candidates along axis 0: each tile, then its stream-K schedule
    where the chip's library has one (the order ties are broken in); where the library has
    tiles in ``step``s, each tile cut over one extra tile, and cut on M or on N to fill the
    last wave (``_cut_tiles``); then the GEMV path (tile 0 x 0) where some op has fewer rows
    than the smallest tile."""
    rows = [(t, 0, kind) for t in tiles for kind in ((0, 1) if stream_k else (0,))]
    # stream-K needs no fuller wave
    rows += [(t, cut, 0) for t in tiles for cut in (_ONE_MORE, _FILL_M, _FILL_N)] if step else []
    rows += [((0, 0), 0, 2)] if gemv else []
    tm = np.array([t[0] for t, _, _ in rows], dtype=float)[:, None, None]
    tn = np.array([t[1] for t, _, _ in rows], dtype=float)[:, None, None]
    kind = np.array([k for _, _, k in rows])[:, None, None]  # tile, stream-K, GEMV
    return {
        "tm": np.maximum(tm, 1.0),  # the GEMV row's tile is never used; 1 avoids 0/0
        "tn": np.maximum(tn, 1.0),
        "cut": np.array([c for _, c, _ in rows], dtype=float)[:, None, None],
        "sk": kind == 1,
        "gemv": kind == 2,
    }


#: ``_cut_tiles``' ways to cut a tile beyond the even split: one extra tile on the side that
#: saves more padding, or as many more on M (on N) as fill the last wave
_ONE_MORE, _FILL_M, _FILL_N = 1, 2, 3


def _cut_tiles(
    m: Array,
    n: Array,
    tm: Array,
    tn: Array,
    cut: Array,
    step: int,
    groups: Array,
    cores: int,
    least: tuple[int, int],
) -> tuple[Array, Array]:
    """Each tile with one side cut to a multiple of ``step``, as a library with tiles in steps
    of ``step`` has them (cuBLASLt's 64/128/192/256 x 8..256 tiles on Hopper and Blackwell,
    hipBLASLt's macro tiles in steps of 16 on CDNA 3; the other side stays a listed one): the
    side's rows dealt out evenly over as many tiles as the listed tile needs (M = 257: two
    tiles of 136, not three of 128), over one more (``cut`` _ONE_MORE: M = 384 over 28 column
    tiles, 112 tiles of 96 fill a wave of 132 cores that 84 of 128 leave a third idle), or
    over as many more as fill the cores' last wave (_FILL_M, _FILL_N: AMD's 4096 x 3648
    max-achievable-FLOPs shape, 16 x 19 tiles of 256 x 192 fill 304 CUs that 16 x 15 of 256
    leave a fifth idle). The even split and one more cut the side that saves more padded
    work; a filling cut is never shorter than ``least`` (the smallest listed tile side on M,
    on N). A grouped GEMM's ``groups`` repeat its tiles."""
    cut_m = np.minimum(tm, step * np.ceil(m / (np.ceil(m / tm) * step)))
    cut_n = np.minimum(tn, step * np.ceil(n / (np.ceil(n / tn) * step)))
    fill = cut >= _FILL_M
    on_m = np.where(fill, cut == _FILL_M, cut_m * tn <= tm * cut_n)
    size, side = np.where(on_m, m, n), np.where(on_m, tm, tn)
    base = np.ceil(size / side)
    others = groups * np.where(on_m, np.ceil(n / tn), np.ceil(m / tm))  # tiles beside each
    waves = np.ceil(base * others / cores)
    count = np.where(fill, np.maximum(base, np.floor(waves * cores / others)),
                     base + (cut == _ONE_MORE))  # fmt: skip
    floor = np.where(fill, np.where(on_m, least[0], least[1]), step)
    cut_side = np.minimum(side, np.maximum(floor, step * np.ceil(size / (count * step))))
    return np.where(on_m, cut_side, tm), np.where(on_m, tn, cut_side)


def cost_gemms(
    ops: list[Op], chips: ChipArrays, weights_pinned: Any = False, steady: bool = False
) -> Part:
    """GEMMs: every tile (and its stream-K variant) and the GEMV path costed, the first fastest
    taken. Axis 0 of every intermediate is the candidate. ``weights_pinned`` (per point): the model's
    weights are pinned in the on-chip reuse level (``weights_resident``), so the B operand's
    reads come from there, not from main memory. ``steady``: the fastest at the clock the power
    limit allows each candidate (``_steady_time``), as a tuned library measured under load
    picks; a tile that moves more bytes through L2 draws more power and may lose its lead."""
    st = chips.structure
    ops = for_chip(ops, st.compute_capability)  # a block-fp8 kernel where the engine's cannot run
    (m, n, k, groups, a_bytes, b_bytes, c_bytes, kernels, flops, r_tokens, r_p, one_cta, pow2,
     exposed, pointer, fixed_m, fixed_n) = (
        _table([(g.m, g.n, g.k, g.groups, g.a_bytes, g.b_bytes, g.c_bytes, op.kernels, op.flops,
                 g.routed_tokens, g.routed_p, not g.clusters, g.pow2_blocks, g.tile_exposed,
                 g.pointer_loads and not g.mma_sync, *g.tile)
                for op, g in ((op, op.gemm) for op in ops)])  # type: ignore[union-attr]
    )  # fmt: skip
    a = groups * m * k * a_bytes
    b = groups * k * n * b_bytes
    c = groups * m * n * c_bytes
    keys = [(op.dtype, op.gemm.split_accumulate, op.gemm.mma_sync, op.gemm.promotion)  # type: ignore[union-attr]
            for op in ops]  # fmt: skip
    core_rate = _rates(chips, keys, _gemm_rate)
    n_cores, tile_k = st.n_cores, st.tile_k
    min_tm = _min_tile_m(st.gemm_tiles)
    # a kernel's own tile (``Gemm.tile``) is the software's, whatever tiles the chip's library
    # lists: one the chip does not list is a candidate for those kernels alone
    own = sorted({op.gemm.tile for op in ops} - {(0, 0)} - set(st.gemm_tiles))  # type: ignore[union-attr]
    cand = _candidates(st.gemm_tiles + tuple(own), st.stream_k, bool(m.min() < min_tm),
                       st.tile_step)  # fmt: skip
    tm, tn, sk, gemv = cand["tm"], cand["tn"], cand["sk"], cand["gemv"]

    is_routed = r_tokens > 0
    # a grouped expert kernel runs one M tile over experts of different rows (none is cut to
    # fit one), chosen by the batch: vLLM's and SGLang's Triton fused MoE and Marlin take 16- to
    # 64-row blocks at small batches, on the tensor cores; so a routed tile is no taller than
    # the mean rows rounded up to the library's step (16 at least), and never the GEMV path
    # (a kernel of power-of-two blocks, Triton's: the mean rows' next power of two)
    step = st.tile_step or 16
    block = np.where(
        pow2 > 0, 2.0 ** np.ceil(np.log2(np.maximum(m, 1.0))), step * np.ceil(m / step)
    )
    routed_tm = np.where(is_routed, np.minimum(tm, np.maximum(16.0, block)), tm)
    if st.tile_step:  # one side cut to a step multiple: less padding, fuller waves
        least = (min(t[0] for t in st.gemm_tiles), min(t[1] for t in st.gemm_tiles))
        cut_m, cut_n = _cut_tiles(m, n, tm, tn, cand["cut"], st.tile_step, groups, n_cores,
                                  least)  # fmt: skip
        tm, tn = np.where(is_routed, routed_tm, cut_m), np.where(is_routed, tn, cut_n)
    else:
        tm = routed_tm
    fixed = fixed_m > 0
    if fixed.any():  # a kernel of one tile (``Gemm.tile``) runs it as it is, never cut
        tm, tn = np.where(fixed, cand["tm"], tm), np.where(fixed, cand["tn"], tn)
    if (pow2 > 0).any():  # a tl.dot block is 16 a side at least: fewer rows are padded to it
        tm = np.where((pow2 > 0) & ~gemv, np.maximum(tm, _TL_DOT_MIN), tm)
        tn = np.where((pow2 > 0) & ~gemv, np.maximum(tn, _TL_DOT_MIN), tn)
    tiles_m, tiles_n = np.ceil(m / tm), np.ceil(n / tn)
    if is_routed.any():  # each expert's rows padded to whole tiles, over their spread
        tiles_m = np.broadcast_to(tiles_m, np.broadcast_shapes(tiles_m.shape, m.shape)).copy()
        sel = np.broadcast_to(is_routed & ~gemv, tiles_m.shape)
        shape = tiles_m.shape
        tiles_m[sel] = _routed_tiles(np.broadcast_to(r_tokens, shape)[sel],
                                     np.broadcast_to(r_p, shape)[sel],
                                     np.broadcast_to(tm, shape)[sel])  # fmt: skip
    tiles = groups * tiles_m * tiles_n
    stream = st.stream_k & (tiles > n_cores) & (tiles % n_cores != 0)
    # a kernel of one program per tile (``Gemm.tile_exposed``) has no stream-K schedule, and a
    # Triton tl.dot kernel (power-of-two blocks) no GEMV path: it runs its matrix instructions
    # on padded blocks however few the rows
    gemv_ok = (m < min_tm) & ~is_routed & (pow2 <= 0)
    usable = np.where(sk, stream & (exposed <= 0), np.where(gemv, gemv_ok, True))
    if (pow2 > 0).any():
        # a Triton kernel's blocks are powers of two on both sides (tl.arange spans a power of
        # two: vLLM's and SGLang's fused-MoE configs take BLOCK_SIZE_M 16-256 and BLOCK_SIZE_N
        # 32-256), so a tile such as Hopper's 192 x 192 is not one it can run; where a chip
        # lists no power-of-two tile the op keeps them all
        sides = _power_of_two(tm) & _power_of_two(tn)
        allowed = usable & (sides | (pow2 <= 0))
        usable = np.where(allowed.any(axis=0, keepdims=True), allowed, usable)
    if fixed.any():  # that tile alone, as its own schedule (one row of candidates); the
        # chip's library never takes a kernel's own tile the chip does not list
        one = (tm == fixed_m) & (tn == fixed_n) & ~sk & ~gemv & (cand["cut"] == 0)
        usable = usable & np.where(fixed, one, True)
    if own:
        listed = np.ones(cand["tm"].shape, dtype=bool)
        for t in own:
            listed &= (cand["tm"] != t[0]) | (cand["tn"] != t[1])
        usable = usable & (listed | fixed)
    keep = usable.reshape(len(usable), -1).any(axis=1)
    if not keep.all():  # a candidate no op may use (stream-K with fewer tiles than cores) is
        # never picked: cost only the others, in their order (the same first fastest)
        rows = np.flatnonzero(keep)
        tm, tn, sk, gemv, tiles_m, tiles_n, tiles, usable = (
            x[rows] for x in (tm, tn, sk, gemv, tiles_m, tiles_n, tiles, usable)
        )
    flops_per_k = 2.0 * tm * tn * tile_k  # one K granule of one tile
    fixup = np.where(sk, 2.0 * n_cores * tm * tn * 4.0, 0.0)  # stream-K: fp32, write + read
    # one wave of tiles sharing A and B panels through L2: gm x gn tiles, about square
    gm0 = np.where(gemv, 1.0, np.round(np.sqrt(n_cores * tn / tm)))
    granules = np.ceil(k / tile_k)
    # split-K while there are fewer tiles than cores, each split keeping >= 4 K granules
    split = np.minimum(n_cores // tiles, granules // _MIN_SPLIT_GRANULES)
    split = np.where(sk | (tiles >= n_cores) | (split < 1) | (exposed > 0) | fixed, 1.0, split)
    waves = np.ceil(tiles * split / n_cores)
    # stream-K: the tiles' K iterations dealt out evenly over the cores, each core's boundary
    # tile fixed up through an fp32 workspace; only with more tiles than cores and a partial
    # last wave
    steps = np.where(sk, np.ceil(tiles * granules / n_cores), waves * np.ceil(granules / split))
    work = steps * flops_per_k  # a tile candidate's matrix work, FLOPs at its core's rate
    executed = tiles * (tm * tn) * granules * tile_k
    efficiency = np.where(gemv, 1.0, np.minimum(1.0, (groups * m * n * k) / executed))
    partials = np.where(split > 1, (split - 1) * (8.0 * groups * m * n), 0.0) + fixup
    # a kernel without clusters (``Gemm.clusters`` False) loads each tile's operands itself
    cm, cn = (np.where(one_cta > 0, 1.0, c) for c in st.cluster)
    tile_level = a * np.ceil(n / (cn * tn)) + b * np.ceil(m / (cm * tm)) + c + partials
    streamed = a + b + c  # each operand once: the GEMV path, or one resident in L2
    if _has_reuse(chips):
        half = chips.level(_main(chips) - 1, "capacity") / 2
        if half.size > 1 and (half == half[0]).all():  # one capacity: bytes alike on every chip
            half = half[:1]
        if st.scratchpad_reuse:  # the compiler blocks for the scratchpad's capacity
            side = _scratchpad_block(half, tile_k, a_bytes, b_bytes)
            gm = np.maximum(1, np.minimum(tiles_m, np.floor(side / tm)))
            gn = np.maximum(1, np.minimum(tiles_n, np.floor(side / tn)))
        else:
            gm = np.maximum(1, np.minimum(tiles_m, gm0))
            gn = np.maximum(1, np.minimum(tiles_n, np.ceil(n_cores / gm)))
        panels = a * np.ceil(n / (gn * tn)) + b * np.ceil(m / (gm * tm)) + c + partials
        resident = streamed + np.where(partials <= half, 0.0, partials)  # workspace in L2
        main_bytes = np.where(np.minimum(a, b) / groups <= half, resident, panels)
        main_bytes = np.where(gemv, streamed, main_bytes)
        reuse_bytes: Array | None = np.where(gemv, 0.0, tile_level)
        if np.any(weights_pinned):  # the weights are read on chip, never from main memory
            pinned = np.where(
                np.minimum(a, b) / groups <= half,
                a + c + np.where(partials <= half, 0.0, partials),
                a * np.ceil(n / (gn * tn)) + c + partials,
            )
            pinned = np.where(gemv, a + c, pinned)
            main_bytes = np.where(weights_pinned, pinned, main_bytes)
            reuse_bytes = np.where(weights_pinned, np.where(gemv, b, tile_level), reuse_bytes)
    else:
        main_bytes, reuse_bytes = np.where(gemv, streamed, tile_level), None
    if chips.n > 1 and not exposed.any() and not np.any(weights_pinned):
        # a candidate no faster than an earlier one on every chip is never picked: drop it
        # before the per-chip work (the same picks; a sweep over chips costs the few left; one
        # chip's few candidates cost less than the search for them)
        kept = _undominated(work, main_bytes, reuse_bytes, usable, gemv)
        if kept is not None:
            work, main_bytes, reuse_bytes, usable, gemv, tm, tn, efficiency = (
                None if x is None else _take(x, kept)
                for x in (work, main_bytes, reuse_bytes, usable, gemv, tm, tn, efficiency)
            )
    compute = np.where(gemv, flops / chips.values["vector_flops_per_s"], work / core_rate)
    if reuse_bytes is not None and exposed.any():  # the cores wait at each tile's edges
        edges = waves * _tile_edges(chips, tm, tn, a_bytes, b_bytes, c_bytes, tiles)
        compute = compute + np.where(gemv | (exposed <= 0), 0.0, edges)
    slow = 1.0
    if (pointer > 0).any() and _is_hopper(st):
        # a kernel that loads its tiles with pointer loads (cp.async: vLLM's Triton fused MoE),
        # not the chip's tensor memory accelerator: its on-chip work (the math and the reuse
        # level's traffic) runs slower by the measured ratio (_POINTER_LOADS); a Marlin GEMM
        # (mma_sync) has its own measured cap instead
        slow = np.where(gemv | (pointer <= 0), 1.0, _POINTER_LOADS)
        compute = compute * slow
    time, main_s, reuse_s, overhead = _finish(chips, compute, main_bytes, reuse_bytes, kernels,
                                              reuse_scale=slow)  # fmt: skip
    rank = time
    if steady and st.has_power:
        rank = _steady_time(chips, ops, flops, time, compute, main_s, reuse_s, overhead,
                            main_bytes, reuse_bytes)  # fmt: skip
    pick = np.argmin(np.where(usable, rank, np.inf), axis=0)
    names = ("time", "compute", "main_s", "reuse_s", "main_bytes", "reuse_bytes", "tile_m",
             "tile_n", "tile_efficiency")  # fmt: skip
    fields = (time, compute, main_s, reuse_s, main_bytes, reuse_bytes, np.where(gemv, 0.0, tm),
              np.where(gemv, 0.0, tn), efficiency)  # fmt: skip
    return {**dict(zip(names, _pick(fields, pick), strict=True)), "overhead": overhead}


def _undominated(
    work: Array, main_bytes: Array, reuse_bytes: Array | None, usable: Array, gemv: Array
) -> Array | None:
    """The GEMM candidates worth costing on each chip, as indices along axis 0 [kept, ops, 1]
    (an op's list padded with its last kept one), or None where none can be dropped or the
    candidates' costs differ by point. A tile candidate is dropped where an earlier usable one
    does no more matrix work and moves no more bytes through main memory and the reuse level,
    or a later one strictly less of each: a candidate's time, burst or at the clock its power
    limit allows, does not fall as any of the three rises, so the first fastest is never the
    dropped one (up to exact ties: where the steady clock is bisected, a dvfs_exponent other
    than 2, tied candidates differ by its rounding, ~1e-12, and the full search may pick a
    dominated one by that noise; the times are the same). The GEMV path runs at another rate
    and is kept where usable; an op with no usable candidate keeps them all (the first is its
    pick)."""
    parts = [work, main_bytes] + ([] if reuse_bytes is None else [reuse_bytes])
    if any(np.ndim(x) != 3 or x.shape[2] != 1 for x in parts) or usable.shape[2] != 1:
        return None
    n_cand = usable.shape[0]
    shape = np.broadcast_shapes(*(x.shape for x in parts), usable.shape)
    x = [np.broadcast_to(p, shape)[..., 0] for p in parts]  # [cand, ops]
    ok = np.broadcast_to(usable, shape)[..., 0] & ~np.broadcast_to(gemv, shape)[..., 0]
    no_more = np.ones((n_cand, n_cand, shape[1]), dtype=bool)  # [j, i, op]: j <= i on each
    less = np.ones_like(no_more)  # j < i on each
    for p in x:
        no_more &= p[:, None, :] <= p[None, :, :]
        less &= p[:, None, :] < p[None, :, :]
    earlier = np.tri(n_cand, k=-1, dtype=bool).T[:, :, None]  # [j, i]: j before i
    dominated = (ok[:, None, :] & (less | (no_more & earlier))).any(axis=0)
    gemv_rows = np.broadcast_to(gemv, shape)[..., 0]
    keep = np.broadcast_to(usable, shape)[..., 0] & (~dominated | gemv_rows)
    keep[:, ~keep.any(axis=0)] = True
    if keep.all():
        return None
    counts = keep.sum(axis=0)
    # each op's kept indices in order, then its last one repeated up to the longest list
    order = np.argsort(~keep, axis=0, kind="stable")[: counts.max()]
    pad = np.arange(counts.max())[:, None] >= counts[None, :]
    last = order[counts - 1, np.arange(shape[1])]
    return np.where(pad, last[None, :], order)[:, :, None]


def _take(x: Array, kept: Array) -> Array:
    """``x`` [candidates, ops | 1, points | 1] at the kept candidates of each op."""
    x = np.broadcast_to(x, (x.shape[0], kept.shape[1], x.shape[2]))
    return np.take_along_axis(x, kept, axis=0)


#: A Triton GEMM that loads its operand tiles with pointer ``tl.load``s (pipelined through
#: cp.async: vLLM's fused-MoE kernel, gathering its token rows through ``sorted_token_ids``)
#: against the same kernel loading them through the tensor memory accelerator, on Hopper, at
#: the burst clock: SGLang PR #36543 (H100 bf16, 5,034 tokens, E = 128, hidden 2048, top-8,
#: Triton 3.7.1) timed the up GEMM 625.611 vs 530.563 us and the down GEMM 316.475 vs
#: 283.427 us; Triton issue #5461 (H100, 8192 x 8192 x 4096 fp16) a 13 % uplift from TMA
#: descriptors over a pointer-load persistent matmul: the geometric mean of the three, 1.142
#: (benchmarks/research/triton-moe-large-m-2026-12-06.md sec. 4; not used: TileOPs #1567's
#: H200 1.20-1.28x, whose "triton" kernel is not identified and whose H200 ran power-capped at
#: ~1.4 GHz, and SGLang #10567's 1.69x on an H20, re-tuned apart). Looked for because the
#: tuned fused-MoE rows above 1,024 tokens ran 7-21 % slower than roofsim; none of the
#: validation rows is among the sources. Measured in bf16 (applied to fp8 Triton GEMMs too).
#: roofsim's tile model stands for a kernel that feeds its tiles by TMA, as the chip's libraries
#: do; under a power limit the slower kernel draws less and gets part of it back (1.06x at the
#: #36543 shape, steady) since its extra instructions' energy is not counted
_POINTER_LOADS = (625.611 / 530.563 * 316.475 / 283.427 * 1.13) ** (1.0 / 3.0)


def _is_hopper(st: Any) -> bool:
    """Whether the chip is a Hopper (compute capability 9.x): the one the pointer-load ratio was
    measured on (Blackwell's TMA path is not measured against pointer loads here; Ampere and
    older have no TMA, so pointer loads are every kernel's path)."""
    cc = st.compute_capability
    return bool(cc) and int(cc.split(".")[0]) == 9


def _power_of_two(x: Array) -> Array:
    """Whether each (whole, >= 1) value is a power of two."""
    x = np.asarray(x, dtype=float)
    return np.exp2(np.round(np.log2(np.maximum(x, 1.0)))) == x


def _tile_edges(
    chips: ChipArrays,
    tm: Array,
    tn: Array,
    a_bytes: Array,
    b_bytes: Array,
    c_bytes: Array,
    tiles: Array,
) -> Array:
    """The time a core waits at each tile of a kernel whose tiles' edges are exposed
    (``Gemm.tile_exposed``): one program per output tile, so before any math it waits for its
    first K-slab of A and B (``tile_k`` deep), and after the last it writes its output tile,
    both at its share of the reuse level's achievable bandwidth among the cores of a wave (they
    start and end their tiles together; no latency is charged: only some presets measure one).
    Added to the math: a GEMM bound by a memory level hides it, as the other cores keep that
    level busy; the bytes are part of the level's traffic already. A kernel that loads the next
    tile's operands and stores the last tile's output beside its math (cuBLAS and CUTLASS 3.x's
    warp-specialized persistent kernels) waits for neither."""
    tile_k = chips.structure.tile_k
    return (tile_k * (tm * a_bytes + tn * b_bytes) + tm * tn * c_bytes) / _wave_share(chips, tiles)


def _wave_share(chips: ChipArrays, units: Array) -> Array:
    """Each core's share of the reuse level's achievable bandwidth in a wave of ``units``
    programs (the cores of a wave start and end their tiles together)."""
    reuse = _main(chips) - 1
    cores = np.minimum(units, chips.structure.n_cores)
    return chips.level(reuse, "bandwidth") * chips.level(reuse, "achievable") / cores


def _routed_tiles(tokens: Array, p: Array, tile_m: Array) -> Array:
    """E[ceil(n / tile_m) | n > 0], n ~ Binomial(tokens, p): the M tiles of an expert that got
    tokens, where each of ``tokens`` tokens picks it with probability ``p`` and a grouped
    kernel (vLLM's and SGLang's Triton fused MoE: moe_align_block_size pads each expert's
    sorted rows to the block; CUTLASS and Transformer Engine grouped GEMMs: a tile grid per
    group) covers each expert's rows with whole tiles. Routing is taken as uniform (a trained
    router's imbalance is more spread, so more padding: this is the least).

    Three cases, element by element: no more tokens than a tile: exactly one tile; a spread of
    at least a tile (sd >= t): n mod t is uniform to ~1e-8, so E[ceil(n/t)] = (E[n] + (t-1)/2)/t;
    otherwise the sum E[ceil(n/t)] = sum_j P(n > j t) over the j within 10 standard deviations of
    the mean (every earlier term is 1), for each distinct (tokens, p, t): at most ~23 terms."""
    n, q, t = (np.asarray(x, dtype=float) for x in np.broadcast_arrays(tokens, p, tile_m))
    shape, (n, q, t) = n.shape, (n.ravel(), q.ravel(), t.ravel())
    out = np.ones(n.shape)
    mean, sd = n * q, np.sqrt(n * q * (1.0 - q))
    active = -np.expm1(n * np.log1p(-np.minimum(q, 1.0 - 1e-16)))  # P(n > 0)
    wide = (sd >= t) & (n > t)
    out[wide] = (mean[wide] + (t[wide] - 1.0) / 2.0) / t[wide] / active[wide]
    narrow = ~wide & (n > t)
    if narrow.any():
        out[narrow] = _routed_tiles_summed(n[narrow], q[narrow], t[narrow])
    return out.reshape(shape)


def _routed_tiles_summed(n: Array, q: Array, t: Array) -> Array:
    """``_routed_tiles`` by the sum over P(n > j t), for spreads narrower than a tile."""
    from scipy.special import betainc  # here: only such routed GEMMs pay scipy.special's import

    def above(x: Array, n: Array, q: Array) -> Array:  # P(n > x), x a whole number of rows
        return np.where(x < n, betainc(x + 1.0, np.maximum(n - x, 1e-9), q), 0.0)

    uniq, inverse = np.unique(np.stack([n, q, t], axis=1), axis=0, return_inverse=True)
    n, q, t = uniq.T
    mean, sd = n * q, np.sqrt(n * q * (1.0 - q))
    lo = np.maximum(0.0, np.floor((mean - 10.0 * sd - 1.0) / t))
    hi = np.ceil((mean + 10.0 * sd + 1.0) / t)
    j = lo[:, None] + np.arange(int((hi - lo).max()) + 1)[None, :]
    tail = np.where(j <= hi[:, None], above(j * t[:, None], n[:, None], q[:, None]), 0.0)
    tiles = (lo + tail.sum(axis=1)) / np.maximum(above(0.0, n, q), 1e-300)
    return tiles[inverse.ravel()]


def _scratchpad_block(half: Array, tile_k: int, a_bytes: Array, b_bytes: Array) -> Array:
    """The side s of the square output block a compiler keeps in a software-managed level
    (TPU VMEM, a global buffer): its fp32 accumulators (4 s^2 bytes) and double-buffered K-slabs
    of A and B (2 s tile_k (a + b bytes)) in ``half`` the level, the rest left for other data.
    A is then read from main memory once per block column and B once per block row."""
    p = 2.0 * tile_k * (a_bytes + b_bytes)
    return (np.sqrt(p * p + 16.0 * half) - p) / 8.0


def _steady_time(
    chips: ChipArrays,
    ops: list[Op],
    flops: Array,
    time: Array,
    compute: Array,
    main_s: Array,
    reuse_s: Any,
    overhead: Array,
    main_bytes: Array,
    reuse_bytes: Any,
) -> Array:
    """Each GEMM candidate's time at the clock its power limit allows: the same energy and
    clock as ``_power`` gives the candidate that is picked (candidates on axis 0)."""
    v = chips.values
    limit = v["limit_watts"]
    if np.isnan(limit).all():
        return time
    pj_flop, _ = _energy_rates(ops, chips)
    e_clk, e_fix = _op_energy(chips, pj_flop, flops, main_bytes, reuse_bytes)
    budget, exp = limit - v["idle_watts"], v["dvfs_exponent"] - 1.0
    if chips.n > 1:  # one chip per point on the last axis
        budget, exp = budget[None, None, :], exp[None, None, :]
    else:
        budget, exp = budget[0], exp[0]
    e_clk, e_fix, budget, exp, c, r, m, o, t = np.broadcast_arrays(
        e_clk, e_fix, budget, exp, compute, reuse_s, main_s, overhead, time
    )
    over = (e_clk + e_fix > budget * t) & (budget > 0)
    if not over.any():
        return time
    clocked = np.maximum(c, r)
    s = _clock_at_limit(e_clk[over], e_fix[over], budget[over], exp[over], clocked[over],
                        m[over], o[over])  # fmt: skip
    out = t.copy()
    out[over] = o[over] + np.maximum(clocked[over] / s, m[over])
    return out


def _pick(fields: tuple[Any, ...], pick: Array) -> list[Any]:
    """Each field at each element's picked candidate (axis 0). Small tables are stacked and
    gathered in one step; large ones field by field (no copy of every candidate)."""
    rows, cols = np.arange(pick.shape[0])[:, None], np.arange(pick.shape[1])[None, :]
    if pick.size <= 1024:
        stacked = np.empty((len(fields), fields[0].shape[0], *pick.shape))
        for i, f in enumerate(fields):
            stacked[i] = 0.0 if f is None else f
        return list(stacked[:, pick, rows, cols])
    out = []
    for f in fields:
        if f is None or np.ndim(f) < 3:  # no candidate axis: the same for all
            out.append(0.0 if f is None else f)
            continue
        c, r, p = f.shape
        out.append(f[pick if c > 1 else 0, rows if r > 1 else 0, cols if p > 1 else 0])
    return out


# ---- attention -----------------------------------------------------------------------------------
@functools.cache
def _flash_tiles(tiles: tuple[tuple[int, int], ...]) -> tuple[Array, int]:
    """A flash kernel's query-block heights (the tiles' M, ascending) and its key-block width."""
    return np.array(sorted({tm for tm, _ in tiles}), dtype=float), max(tn for _, tn in tiles)


def softmax_s(backward: Any, vector_rate: Any, exp_rate: Any | None) -> Any:
    """Seconds per attention score of the non-matmul work on one chip: the exp on the special
    function units where the chip has them (``exp_rate``; else as vector FLOPs) and the
    softmax's vector FLOPs, plus dS's in the backward."""
    vec_flops = _SOFTMAX_VECTOR_FLOPS + np.where(backward, _DS_VECTOR_FLOPS, 0)
    if exp_rate is None:
        return (vec_flops + _EXP_FLOPS) / vector_rate
    return 1.0 / exp_rate + vec_flops / vector_rate


#: vLLM's Triton unified attention: keys per tile (TILE_SIZE_PREFILL; TILE_SIZE_DECODE for
#: 16-bit queries) and the 3D decode kernel's key segments (NUM_SEGMENTS),
#: vllm/attention/ops/triton_unified_attention.py
_TRITON_TILE = 32.0
_TRITON_DECODE_TILE = 16.0
_TRITON_SEGMENTS = 16.0
#: FlashAttention-2's and -3's query block, kBlockM (FA2 Flash_fwd_kernel_traits at head dims
#: up to 128, csrc/flash_attn/src/flash_fwd_launch_template.h; FA3 hopper/tile_size.h: 128 rows
#: for head dims 64 to 256 forward): what a causal diagonal tile computes whole
_FLASH_BLOCK_M = 128.0
#: a Blackwell tensor memory's lanes (rows of 32-bit cells; NVIDIA's tcgen05 docs: 128 lanes x
#: 512 columns an SM): a 128-row accumulator tile of width w takes w columns
_TMEM_LANES = 128.0
#: FlashAttention-2's key block at head dims up to 128 on sm80/sm90, kBlockN
#: (Flash_fwd_kernel_traits<Headdim, 128, 64, 4, ...>, flash_fwd_launch_template.h): the first
#: K/V tile a query block waits for before its first MMA (``_flash_edges``)
_FLASH_BLOCK_N = 64.0


def _attention_kernel(a: Attention, st: Any) -> str:
    """The kernel an attention op runs on a chip of structure ``st``: its runtime's kernel for
    attention with sinks where the chip's compute capability is not one whose default kernel
    takes sinks (``Attention.sinks_kernel``), else its own."""
    cc = st.compute_capability  # "": not an NVIDIA part, where the rule does not apply
    if a.sinks_kernel and cc and cc not in a.sinks_native:
        return a.sinks_kernel
    return a.kernel


#: main-memory round trips a wave of a memory-bound FlashAttention-2-style kernel stalls for at its
#: edges (``_edge_modes`` 2), the chip's measured main-memory latency each: fitted (their mean log
#: error brought to zero, by bisection) to four of the project's H100 decode timings of PyTorch
#: SDPA's FlashAttention-2, 32 query and 32 KV heads of 128, batch 32 and 128 at 512 and 2048 cached
#: tokens (benchmarks/microbench/results/h100-sxm-2026-11-23/attention.csv; rows
#: microbench-h100-sdpa-flash-decode-b{32,128}-h32kv32-ctx{512,2048}, fit rows). The kernel keeps
#: one K or V block in flight per CTA (flash_fwd_kernel.h: wait K, load V, S = QK^T, wait V, load
#: the next K, softmax, O += PV), so a CTA's prologue (Q and the first K), its epilogue (O through
#: shared memory, the log-sum-exp) and the next CTA's start are round trips no other load overlaps:
#: the same 1.07 GB of K/V took 410 us at 2048 cached tokens a sequence and 468 us at 512 (the
#: table's b32 and b128 rows), 14 % longer for 4x the CTAs. Nothing else is fitted to it: FA2's
#: grouped-query rows, the end-to-end decode steps and another source's paged FA2 decode are its
#: tests. Compute-bound waves (a prefill's) hide the edges behind the co-resident CTAs' matrix work
#: (``_flash_edges`` charges their exposed inputs). A chip without a measured main-memory latency
#: stalls for none. NB: measured for FA2 alone; vLLM's Triton attention (software-pipelined,
#: num_stages >= 2) and the native kernels off Hopper and Blackwell (CK on MI300X, FA2 on Ampere)
#: take it by the edge rule they share with FA2 in ``_flash_edges``, untested
_FLASH_MEMORY_EDGE_ROUND_TRIPS = 2.37


def _edge_modes(kernel: list[str], st: Any) -> Array:
    """How each attention kernel meets its blocks' edges, on a chip of structure ``st``: 0 never
    waits (decode's per-head ``mmha`` kernel, ``unfused`` attention), 1 waits only for its store
    (a persistent, warp-specialized native kernel: FA3 and cuDNN on compute capability 9.0 and
    later), 2 waits for its inputs too (FlashAttention-2, vLLM's Triton attention, and the native
    kernel elsewhere)."""
    cc = st.compute_capability
    warp_specialized = bool(cc) and int(cc.split(".")[0]) >= 9
    return np.array([0 if k in ("mmha", "unfused") else 1 if k == "native" and warp_specialized
                     else 2 for k in kernel])  # fmt: skip


def _flash_edges(
    chips: ChipArrays,
    kernel: list[str],
    backward: Array,
    triton: Array,
    three_d: Array,
    heads: Array,
    rows: Array,
    br: Array,
    q_blocks: Array,
    split: Array,
    qk_dim: Array,
    v_dim: Array,
    act_bytes: Array,
    kv_bpt: Array,
) -> Array:
    """The time the cores wait at the edges of a flash kernel's blocks, as a GEMM's tiles
    (``_tile_edges``): a kernel of one program per block (FlashAttention-2, vLLM's Triton
    attention, and the native kernel off Hopper and Blackwell, where no warp specialization
    overlaps them) waits, each wave, for its own rows (Q; the backward's K and V) and its first
    key block (FA2's ``_FLASH_BLOCK_N`` keys of K and V; a Triton program's 32-key tile, 16 in
    its 3D decode kernel; the backward's Q and dO) before its first MMA, and stores its output
    rows (O; dK and dV; a split piece's fp32 partials) after the last. A persistent, warp-
    specialized kernel (the native one on compute capability 9.0 and later: FA3, cuDNN) loads
    the next block's inputs beside its math and waits only for its store. Decode's per-head
    kernel (``mmha``) and a software-managed scratchpad's compiler pipeline (TPU) wait for
    neither. A block holds FlashAttention's 128 query rows (``_FLASH_BLOCK_M``; a Triton program
    its ``br``), its real rows at most; each wave's cores share the reuse level's achievable
    bandwidth (no latency is charged: only some presets measure one). The backward's blocks are
    counted as the forward's (its key blocks: the same count where q_len = kv_len, as in
    training)."""
    st = chips.structure
    if st.scratchpad_reuse or not _has_reuse(chips):
        return np.zeros(1)
    modes = _edge_modes(kernel, st)
    if not modes.any():
        return np.zeros(1)
    block = np.where(triton, br, np.minimum(br, _FLASH_BLOCK_M))
    own = np.minimum(block, np.where(triton, br, rows))
    units = heads * np.where(triton, q_blocks, np.ceil(rows / block)) * split
    # the output (a split piece's fp32 partials), then the inputs where they are exposed too
    edge = np.where(split > 1, own * (v_dim + 2) * 4.0,
                    np.where(backward, qk_dim + v_dim, v_dim) * act_bytes * own)  # fmt: skip
    if 2 in modes:  # its own rows and its first key block
        keys = np.where(triton, np.where(three_d, _TRITON_DECODE_TILE, _TRITON_TILE),
                        _FLASH_BLOCK_N)  # fmt: skip
        inputs = (np.where(backward, qk_dim + v_dim, qk_dim) * act_bytes * own
                  + np.where(backward, (qk_dim + v_dim) * act_bytes, kv_bpt) * keys)  # fmt: skip
        edge = edge + (modes[:, None] > 1) * inputs
    edges = np.ceil(units / st.n_cores) * edge / _wave_share(chips, units)
    return edges if modes.min() > 0 else np.where(modes[:, None] > 0, edges, 0.0)


def cost_attentions(ops: list[Op], chips: ChipArrays) -> Part:
    """Fused attention: flash blocks over the cores, or in memory where that is faster."""
    st = chips.structure
    # "mmha" decode (FasterTransformer/TensorRT-LLM before XQA, vLLM PagedAttention): one thread
    # block per query head computes its one row on the CUDA cores; every query head of a GQA
    # group reads the group's K/V (through L2 when they fit there)
    kernel = [_attention_kernel(op.attention, st) for op in ops]  # type: ignore[arg-type]
    (batch, n_q, n_kv, q_len, kv_len, qk_dim, v_dim, causal, backward, kv_bpt, per_head, kernels,
     flops, q_o, window, triton, mixed, act_bytes, paged) = _table(
        [(a.batch, a.n_q_heads, a.n_kv_heads, a.q_len, a.kv_len, a.qk_dim, a.v_dim, a.causal,
          a.backward, a.kv_bytes_per_token, a.kernel == "mmha", op.kernels, op.flops,
          op.bytes.get("activation", 0.0), a.window if a.causal else 0, k == "triton", a.mixed,
          a.act_bytes, a.paged and k == "native")
         for op, a, k in ((op, op.attention, k) for op, k in zip(ops, kernel, strict=True))]  # type: ignore[union-attr]
    )  # fmt: skip
    group = n_q // n_kv
    # vLLM's Triton unified attention (vllm/attention/ops/triton_unified_attention.py): a program
    # per BLOCK_M = 16 rows (the next power of two of the group where it is larger), BLOCK_Q =
    # BLOCK_M / group tokens of every query head of one KV head, streaming its keys in tiles of
    # TILE_SIZE_PREFILL = 32; a decode-only call of at most 128 programs runs the 3D kernel,
    # its keys split over NUM_SEGMENTS = 16 in tiles of 16 (bf16) and a sliding window's
    # masked tiles computed too (vLLM <= 0.11), their freed blocks read as the null block
    triton, mixed = triton > 0, mixed > 0
    block_m = np.where(group <= 16, 16.0, 2.0 ** np.ceil(np.log2(np.maximum(group, 1))))
    block_q = np.maximum(1.0, np.floor(block_m / group))
    three_d = triton & ~mixed & (q_len == 1) & ((batch // block_q + batch) * n_kv <= 128)
    # a sliding window (``Attention.window``): a query block of br rows reads the window + br - 1
    # keys before its last row, the call the window + q_len - 1 latest once (a window no shorter
    # than the context never binds: full causal attention)
    windowed = (window > 0) & (window < kv_len)
    # flash-decoding packs the query heads that share a KV head into one tile's rows
    packed = (q_len == 1) > per_head
    rows = np.where(packed, group, q_len)
    heads = np.where(packed | triton, batch * n_kv, batch * n_q)
    tile_ms, bc = _flash_tiles(st.gemm_tiles)
    fit = np.minimum(np.searchsorted(tile_ms, rows, side="left"), len(tile_ms) - 1)
    br = np.where(triton, block_m, np.where(per_head, 1.0, tile_ms[fit]))
    q_blocks = np.where(triton, np.ceil(q_len / block_q), np.ceil(rows / br))
    units = heads * q_blocks
    touched = np.where(windowed, window_span(q_len, kv_len, window), kv_len)
    kv_blocks = np.ceil(touched / bc)
    n_cores = st.n_cores
    split = np.where(units < n_cores, np.maximum(1, np.minimum(n_cores // units, kv_blocks)), 1.0)
    split = np.where(triton, np.where(three_d, _TRITON_SEGMENTS, 1.0), split)
    waves = np.ceil(units * split / n_cores)
    # executed work: padded rows x the score pairs each row computes; causal: queries at
    # positions kv_len - q_len .. kv_len - 1 see the prefix and themselves (at most the window)
    pairs = np.where(causal, causal_pairs(q_len, kv_len, window), q_len * kv_len)
    # a sliding window's query block of pb positions spans its rows' keys, the masked ones
    # computed too: block j (of Q) min(prefix + (j + 1) pb, window + pb - 1) keys, the causal
    # diagonal while it is shorter than the band; summed in closed form over the J shorter ones
    pb = np.minimum(np.where(triton, block_q, br), q_len)  # query positions a block holds
    blocks_q = np.ceil(q_len / pb)
    first = kv_len - q_len + pb
    full_band = np.minimum(window + pb - 1, touched)
    short = np.clip(np.ceil((full_band - first) / pb), 0, blocks_q)
    spans = short * first + pb * short * (short - 1) / 2 + (blocks_q - short) * full_band
    # keys a block reads, on average: a causal block the prefix and its rows up to its last
    # (pairs / q_len + (pb - 1) / 2 over the blocks); a sliding window's its band
    causal_span = np.minimum(touched, pairs / q_len + (pb - 1) / 2)
    band = np.where(windowed, spans / blocks_q, np.where(causal > 0, causal_span, touched))
    # a causal query block computes its diagonal key tiles whole, their masked half too
    # (FlashAttention-2's n_block_max = ceil((m_block + 1) kBlockM / kBlockN) key blocks,
    # flash_fwd_kernel.h; FA3 the same): (kBlockM - 1) / 2 keys a row more than its useful
    # ones on average, in the kernels' own 128-row query blocks (_FLASH_BLOCK_M); a Triton
    # program's block_q positions round up to whole 32-key tiles
    diagonal = np.where(triton, (block_q - 1) / 2 + np.maximum(_TRITON_TILE - block_q, 0) / 2,
                        (np.minimum(_FLASH_BLOCK_M, q_len) - 1) / 2)  # fmt: skip
    computed = np.minimum(touched, pairs / q_len + np.where(q_len > 1, diagonal, 0.0))
    score_elems = heads * q_blocks * br * np.where(windowed | (causal <= 0), band, computed)
    # the 3D Triton kernel computes a window's masked keys too, all but the window's from the
    # null block (through L2)
    unpruned = three_d & windowed
    score_elems = np.where(unpruned, heads * q_blocks * br * kv_len, score_elems)
    # forward: S = QK^T and O = PV; backward (FlashAttention-2 Alg. 2, Dao 2023): S again, then
    # dV = P^T dO, dP = dO V^T, dQ = dS K, dK = dS^T Q: 3 products of width qk, 2 of width v
    width = np.where(backward, 3 * qk_dim + 2 * v_dim, qk_dim + v_dim)
    # a native backward on a core with tensor memory keeps its dK and dV accumulators there
    # (qk + v fp32 columns of a 128-row key tile) beside a 128-column score tile (S, with dP,
    # dS and dQ laid over it); where they leave no room for one it runs as a dQ kernel and a
    # dK/dV kernel, each computing S and dP again and the softmax with them (FlashAttention-4
    # at head dim 256: benchmarks/research/blackwell-attention-backward-smem-2026-12-07.md)
    columns = chips.values["tensor_memory"] / (_TMEM_LANES * 4.0)
    native = np.array([[k == "native"] for k in kernel])
    recompute = (backward > 0) & native & (qk_dim + v_dim + _FLASH_BLOCK_M > columns)
    width = width + np.where(recompute, qk_dim + v_dim, 0.0)
    matmul = 2.0 * score_elems * width
    per_unit = 1.0 / (units * split)
    keys = [(op.dtype, k, op.attention.backward) for op, k in zip(ops, kernel, strict=True)]  # type: ignore[union-attr]
    core_rate = _rates(chips, keys, ChipArrays.attention_rate) / n_cores
    vector = chips.values["vector_flops_per_s"]
    exp_rate = chips.values["exp_per_s"] if st.has_exp else None
    # one warpgroup's matmuls and softmax run one after the other (FlashAttention-2/3 without
    # ping-pong); FA3's ping-pong scheduling hides part of the softmax (NB: not modelled).
    # Per unit of work on one core: its share of the matmuls at the core's rate, and its share
    # of the softmax at the core's share of the exp and vector rates
    per_score = softmax_s(backward, vector, exp_rate) * np.where(recompute, 2.0, 1.0)
    mm_s, soft_s = matmul / core_rate, score_elems * per_score * n_cores
    # a chip whose native forward runs the softmax beside the matmuls (``attention_overlap``:
    # FlashAttention-4 and cuDNN on Blackwell, the MMA asynchronous with its accumulators in
    # tensor memory, Zadouri et al. 2026 Sec. 3.1) takes the longer of the two, not their sum.
    # NB: the backward stays in series (its dS feeds two of its five matmuls; FlashAttention-4
    # finds it bound by shared-memory traffic, Sec. 3.2, which roofsim does not model)
    if st.attention_overlap:
        # the per-tile hand-offs (S ready for the softmax, P ready for the next MMA) leave a
        # share of the shorter exposed (``attention_overlap_exposed``, from a measured forward)
        exposed = chips.values["attention_overlap_exposed"]
        hidden = np.maximum(mm_s, soft_s) + exposed * np.minimum(mm_s, soft_s)
        busy = np.where(native & (backward <= 0), hidden, mm_s + soft_s)
    else:
        busy = mm_s + soft_s
    compute = waves * (per_unit * busy)
    # causal: the query blocks do unequal work (the last sees every key, the first only its own
    # block), and a wave lasts as long as its longest block: the kernel takes at least the last
    # block's time, which the average above hides when the blocks fit in a wave or two (short
    # causal prefill; longer runs schedule the longest blocks first and even out). With the kv
    # split the ratio holds per piece: the last block's pieces are full, an early block's later
    # pieces are masked out and end at once
    # (a sliding window's longest block spans its band)
    longest = np.where(windowed,
                       np.minimum(full_band, first + (blocks_q - 1) * pb) / np.maximum(band, 1e-30),
                       np.where(causal > 0, kv_len / np.maximum(computed, 1e-30), 1.0))  # fmt: skip
    avg = compute / waves
    compute = np.maximum(compute, avg * longest)
    # FlashAttention-2's forward launches its blocks in order (grid = query block x batch x head,
    # the query block fastest: flash_fwd_launch_template.h), so under a causal mask each head's
    # longest blocks start last and the kernel ends about one longest-minus-average block after
    # the cores have done the average share (greedy list scheduling). Its backward's grid runs
    # over key blocks, the first of which sees the most queries: longest first, as the native
    # kernels schedule (the bound above). ``avg`` is one block's average time on a core
    # (vLLM's Triton kernels the same: their grid runs the query blocks fastest)
    in_order = np.array([[k in ("fa2", "triton") and not op.attention.backward]  # type: ignore[union-attr]
                         for op, k in zip(ops, kernel, strict=True)])  # fmt: skip
    tail = avg * np.maximum(longest - 1.0, 0.0) * (1.0 - 1.0 / n_cores)  # none on one core
    listed = units * split * avg / n_cores + tail
    compute = np.where((causal > 0) & in_order, np.maximum(compute, listed), compute)
    if (paged > 0).any() and _is_hopper(st):
        # paged K/V gathered by pointer loads where FlashAttention-3 would feed them by TMA
        # (hopper/flash_api.cpp get_pagedkv_tma: TMA for paged K/V only where the page size is
        # a multiple of kBlockN, 128 for causal head dims 64-128, and seqlen_q x group >
        # kBlockM, 128; a 16-token block never qualifies, benchmarks/research/
        # fa3-paged-kv-prefill-2026-12-07.md): the on-chip work slower by Hopper's measured
        # pointer-load ratio (_POINTER_LOADS, measured on GEMMs; no paged-against-contiguous
        # FA3 timing is published). A short query block (decode) takes the pointer path either
        # way: unchanged
        gathers = (paged > 0) & (backward <= 0) & (q_len * group > _FLASH_BLOCK_M)
        compute = np.where(gathers, compute * _POINTER_LOADS, compute)
    compute = compute + _flash_edges(chips, kernel, backward > 0, triton, three_d, heads, rows,
                                     br, q_blocks, split, qk_dim, v_dim, act_bytes,
                                     kv_bpt)  # fmt: skip
    useful = batch * n_q * pairs
    # memory: Q, O once; K/V once per reader unless the heads in flight fit in L2
    kv = batch * n_kv * touched * kv_bpt
    each = batch * n_kv * band * kv_bpt  # what one reader (query block) reads
    # (a Triton program reads its KV head's keys once for all the query heads it packs)
    readers = q_blocks * np.where(per_head, group, np.where((q_len > 1) & ~triton, group, 1))
    # (a 3D Triton program stores the rows of its token, not its padded 16)
    stored = np.where(three_d, np.minimum(br, group), br)
    partials = np.where(split > 1, 2 * (split - 1) * units * stored * (v_dim + 2) * 4.0, 0.0)
    main = _main(chips)
    tile_level = q_o + np.where(unpruned, batch * n_kv * kv_len * kv_bpt, each) * readers + partials
    if _has_reuse(chips):
        in_flight = np.minimum(batch * n_kv, np.ceil(n_cores / np.maximum(1, readers)))
        resident = in_flight * (touched * kv_bpt) <= chips.level(main - 1, "capacity") / 2
        main_bytes = q_o + np.where(resident, kv, np.maximum(kv, each * readers)) + partials
        reuse_bytes: Array | None = tile_level
    else:
        main_bytes, reuse_bytes = tile_level, None
    # a split decode call merges its pieces' partial outputs in a second kernel (FlashAttention-2's
    # flash_fwd_splitkv_combine_kernel, launched when num_splits > 1: flash_api.cpp run_mha_fwd;
    # FlashAttention-3's flash_fwd_combine; vLLM Triton's reduce_segments); a per-head (mmha)
    # kernel's multi-block mode reduces in the same kernel. Only a call of at most 64 queries a
    # sequence (decode, a speculative check: one of FlashAttention-2's 64-row split-KV blocks)
    # gets it: the split above is roofsim's estimate, and FA2 splits a longer prefill only when
    # its query blocks fill under 0.8 x 2 blocks a core (num_splits_heuristic), which a prefill
    # rarely does; a chip without a cache before main memory (a scratchpad's compiled pipeline,
    # a wafer) runs no such kernels (as _flash_edges)
    if not chips.structure.scratchpad_reuse and _has_reuse(chips):
        kernels = kernels + ((split > 1) & (per_head == 0) & (q_len <= 64))
    kernels = kernels + recompute  # a split backward's second kernel
    time, main_s, reuse_s, overhead = _finish(chips, compute, main_bytes, reuse_bytes, kernels)
    if (
        not st.scratchpad_reuse
        and _has_reuse(chips)
        and (modes := _edge_modes(kernel, st)).max() > 1
    ):
        # a memory-bound wave of a kernel that loads one K/V block at a time (``_edge_modes``
        # 2): its cores stall at each wave's edges for main memory's round trips, which the
        # streaming of the other cores does not cover (``_FLASH_MEMORY_EDGE_ROUND_TRIPS``)
        mem_s = main_s if reuse_bytes is None else np.maximum(main_s, reuse_s)
        bound = (modes[:, None] > 1) & (backward <= 0) & (mem_s > compute)
        stall = waves * _FLASH_MEMORY_EDGE_ROUND_TRIPS * chips.level(main, "latency")
        stall = np.where(bound, stall, 0.0)
        main_s, time = main_s + stall, time + stall
    out = dict(
        time=time, compute=compute, main_s=main_s, reuse_s=reuse_s, main_bytes=main_bytes,
        reuse_bytes=0.0 if reuse_bytes is None else reuse_bytes, overhead=overhead, comm=0.0,
        tile_m=br,
        tile_n=np.where(triton, np.where(three_d & (act_bytes >= 2), _TRITON_DECODE_TILE,
                                         _TRITON_TILE), float(bc)),
        tile_efficiency=np.minimum(1.0, useful / score_elems),
    )  # fmt: skip
    if "pim" not in chips.memo:
        chips.memo["pim"] = chips.level(main, "pim_flops") > 0
    has_pim = chips.memo["pim"]
    if has_pim.any() and (q_len == 1).any():
        _in_memory(out, chips, (q_len == 1) & has_pim, kv, q_o, flops)
    return out


def _in_memory(out: Part, chips: ChipArrays, can: Array, kv: Array, q_o: Array, flops: Array):
    """Decode attention is a GEMV over the cache: memory with compute beside its banks can run
    it where the cache lives, at the internal bandwidth and the in-memory FLOP rate; only Q and
    O cross the bus. The runtime places it wherever it is faster (``out`` updated in place)."""
    main = _main(chips)
    with np.errstate(divide="ignore", invalid="ignore"):
        in_memory = kv / chips.level(main, "pim_bandwidth")
        pim_compute = flops / chips.level(main, "pim_flops")
    q_o_s = _transfer_s(chips, main, q_o)
    overhead = chips.values["kernel_overhead_s"]
    time = overhead + np.maximum(np.maximum(in_memory, pim_compute), q_o_s)
    use = can & (time < out["time"])
    memory = pim_compute < in_memory
    out["bound"], out["level"] = _bound_level(
        out["compute"], out["main_s"], out["reuse_s"], out["overhead"]
    )
    for name, value in (
        ("time", time),
        ("compute", pim_compute),
        ("main_s", np.maximum(in_memory, q_o_s)),
        ("reuse_s", 0.0),
        ("main_bytes", q_o),
        ("reuse_bytes", 0.0),
        ("overhead", overhead),
        ("bound", np.where(memory, _MEMORY, _COMPUTE)),
        ("level", np.where(memory, _PIM, _NO_LEVEL)),
        ("tile_m", 0.0),
        ("tile_n", 0.0),
        ("tile_efficiency", 1.0),
    ):
        out[name] = np.where(use, value, out[name])


# ---- elementwise and collectives -----------------------------------------------------------------
def cost_elementwise(ops: list[Op], chips: ChipArrays) -> Part:
    """Vector FLOPs, main-memory bytes and launches. Where some of an op's kernels spend cycles
    per element issuing instructions (``Op.scalar_kernels``: eager PyTorch's unvectorised
    kernels, on a chip that runs CUDA's: one with a compute capability), each of those takes the
    longer of its bytes' transfer and its cycles spread over the chip's cores at its clock, the
    op's other kernels their bytes': where cycles bind one, the op takes its bytes' transfer
    plus what the cycles add (its compute time)."""
    flops, kernels, main_bytes = _table([(op.flops, op.kernels, op.total_bytes) for op in ops])
    compute = flops / chips.values["vector_flops_per_s"]
    if chips.structure.compute_capability and any(op.scalar_kernels for op in ops):
        excess = _scalar_excess_s(ops, chips)
        bound = _transfer_s(chips, _main(chips), main_bytes) + excess
        compute = np.where(excess > 0.0, np.maximum(compute, bound), compute)
    time, main_s, _, overhead = _finish(chips, compute, main_bytes, None, kernels)
    return dict(
        time=time, compute=compute, main_s=main_s, reuse_s=0.0, main_bytes=main_bytes,
        reuse_bytes=0.0, overhead=overhead, comm=0.0, tile_m=0.0, tile_n=0.0,
        tile_efficiency=1.0,
    )  # fmt: skip


def _scalar_excess_s(ops: list[Op], chips: ChipArrays) -> Array:
    """How much longer each op's scalar kernels take at max(bytes' transfer, cycles / (cores x
    clock)) than at their bytes' transfer alone (``cost_elementwise``)."""
    clock = chips.values["clock_hz"]
    if np.any(np.isnan(clock)):
        raise ConfigError(f"chip {chips.structure.name!r}: compute.clock_hz is needed to time "
                          "eager PyTorch's unvectorised elementwise kernels (cycles an element); "
                          "set it, e.g. --set compute.clock_hz=1.8e9")  # fmt: skip
    width = max(len(op.scalar_kernels) for op in ops)
    rows = [tuple(v for kernel in op.scalar_kernels for v in kernel)
            + (0.0,) * (2 * (width - len(op.scalar_kernels))) for op in ops]  # fmt: skip
    table = _table(rows)
    cycles_per_s = chips.structure.n_cores * clock
    main = _main(chips)
    excess = 0.0
    for cycles, nbytes in zip(table[0::2], table[1::2], strict=True):
        excess = excess + np.maximum(cycles / cycles_per_s - _transfer_s(chips, main, nbytes), 0.0)
    return excess


def links(chips: ChipArrays) -> tuple[LinkParams, LinkParams]:
    """The chips' intra- and inter-node links as arrays (as floats for one chip: a collective
    of one point is then plain arithmetic)."""
    v = chips.values

    def get(key: str) -> Any:
        return float(v[key][0]) if chips.n == 1 else v[key]

    return tuple(  # type: ignore[return-value]
        LinkParams(get(f"{side}.bandwidth"), get(f"{side}.latency"), get(f"{side}.achievable"),
                   get(f"{side}.simple_latency"), get(f"{side}.a2a_latency"),
                   get(f"{side}.a2a_busbw"), get(f"{side}.p2p_channel_bw"),
                   get(f"{side}.nvls_bw"), get(f"{side}.nvls_latency"),
                   get(f"{side}.nvls_chunk"))
        for side in ("intra", "inter")
    )  # fmt: skip


def cost_collectives(ops: list[Op], chips: ChipArrays) -> Part:
    intra, inter = links(chips)
    per_node = chips.structure.chips_per_node
    # a library's own exchange kernels (DeepEP) run on the links, not the measured all-to-all
    plain = (intra.alpha_beta(), inter.alpha_beta())
    # a runtime that turns NCCL's NVLS off reduces on the ring alone
    ring = (intra._replace(nvls_bw=math.nan), inter._replace(nvls_bw=math.nan))
    each = [
        collective_s(c.kind, c.bytes, c.group, c.local, per_node,
                     *(plain if c.library else (intra, inter) if c.nvls else ring),
                     comm=c.comm, messages=c.messages)
        for c in (op.collective for op in ops)  # type: ignore[union-attr]
    ]  # fmt: skip
    comm = np.empty((len(ops), max(chips.n, *(np.size(t) for t in each))))
    for i, t in enumerate(each):
        comm[i] = t
    overhead = chips.values["kernel_overhead_s"]
    overhead = np.broadcast_to(overhead, comm.shape).copy() if np.ndim(overhead) else (
        np.full(comm.shape, float(overhead)))  # fmt: skip
    for i, c in enumerate(op.collective for op in ops):  # type: ignore[union-attr]
        local = members_per_node(c.group, c.local, per_node)
        if not c.library and (
            (c.kind == "all_to_all" and local > 1) or (c.kind == "send_recv" and local == 2)
        ):  # a measured all-to-all's time per call includes its kernel's fixed cost
            overhead[i] = np.where(measured_all_to_all(intra), 0.0, overhead[i])
        # (8 chips at most; 2 on chips joined only by PCIe: ``System.peer_all_reduce_max_group``)
        inside = c.group <= min(per_node, c.local or per_node,
                                chips.structure.peer_all_reduce_max_group)  # fmt: skip
        if c.custom_latency_s and c.kind == "all_reduce" and inside:
            # the runtime's own kernel inside one node where it beats NCCL, never faster than
            # the link carries; its measured time includes a kernel's fixed cost, so none is
            # added to it
            link = intra.bandwidth_bytes_per_s * intra.achievable_fraction
            custom = custom_all_reduce_s(c.bytes, c.group, c.custom_latency_s,
                                         np.minimum(c.custom_bus_bandwidth, link))  # fmt: skip
            faster = custom < overhead[i] + comm[i]
            comm[i] = np.where(faster, custom, comm[i])
            overhead[i] = np.where(faster, 0.0, overhead[i])
    return dict(
        time=overhead + comm, compute=0.0, main_s=0.0, reuse_s=0.0, main_bytes=0.0,
        reuse_bytes=0.0, overhead=overhead, comm=comm,
        bound=np.where(comm >= overhead, _COMMUNICATION, _OVERHEAD), level=_NO_LEVEL,
        tile_m=0.0, tile_n=0.0, tile_efficiency=1.0,
    )  # fmt: skip


_BY_KIND = {
    OpKind.GEMM: cost_gemms,
    OpKind.ATTENTION: cost_attentions,
    OpKind.ELEMENTWISE: cost_elementwise,
    OpKind.COLLECTIVE: cost_collectives,
}
_KIND_ORDER = {kind: i for i, kind in enumerate(_BY_KIND)}


def cost_table(
    ops: list[Op] | tuple[Op, ...],
    chips: ChipArrays,
    *,
    overlap: bool = True,
    points: int = 1,
    steady: bool = True,
    resident: Any = False,
) -> Costs:
    """Every op on every chip of ``chips``: one array pass per op kind. ``points``: the ops'
    fields may be arrays of that many points (a workload lowered over arrays); chips then
    number 1 or ``points``. ``overlap``: hide work that runs beside the op before it
    (``Op.overlaps_previous``): such an op is exposed only by the part of its total time longer
    than the share of the previous op's total it runs beside (ring attention's K/V passing behind
    all but the last of the attention calls it feeds).
    ``steady``: the chip has run long enough for its power limit to hold (``_power``); false for
    a short burst from idle, which runs at the burst clock whatever it draws. ``resident`` (a
    bool, or one per point): the weights are pinned on chip (``weights_resident``)."""
    # ops grouped by kind so that each kind's pass writes one slice of every field
    kinds = [op.kind for op in ops]
    order = sorted(range(len(ops)), key=lambda i: _KIND_ORDER[kinds[i]])
    data = np.zeros((len(FIELDS), len(ops), max(chips.n, points)))
    data[_F["tile_efficiency"]] = 1.0
    data[_F["clock"]] = 1.0
    given: list[tuple[int, int, Part]] = []  # parts that say what binds themselves
    start = 0
    while start < len(order):
        kind = kinds[order[start]]
        stop = start
        while stop < len(order) and kinds[order[stop]] == kind:
            stop += 1
        part = _part(
            kind, [ops[i] for i in order[start:stop]], chips, data.shape[2], resident, steady
        )
        for f, value in part.items():
            if type(value) is not float or value != _DEFAULT.get(f, 0.0):
                data[_F[f], start:stop] = value
        if "bound" in part:
            given.append((start, stop, part))
        start = stop
    if chips.structure.has_power:  # data's ops are in kind order here
        _power(data, [ops[i] for i in order], chips, steady)
    # the ops costed by _finish: what binds follows from the parts (one pass for all)
    data[_F["bound"]], data[_F["level"]] = _bound_level(
        data[_F["compute"]], data[_F["main_s"]], data[_F["reuse_s"]], data[_F["overhead"]]
    )
    for start, stop, part in given:
        data[_F["bound"], start:stop] = part["bound"]
        data[_F["level"], start:stop] = part["level"]
    if order != sorted(order):
        data = data[:, np.argsort(order)]
    if overlap:
        time = data[0]
        for i, op in enumerate(ops):
            if op.overlaps_previous and i > 0:
                before = time[i - 1] * ops[i - 1].count * op.overlaps_previous
                time[i] = np.maximum(0.0, time[i] * op.count - before) / op.count
    _host_floor(data, ops)  # on the exposed times: a hidden op does not cover launches
    _host_beside(data, ops)
    return Costs(data)


def _counts(ops: list[Op] | tuple[Op, ...], time: Array) -> Array:
    """Each op's instance count, shaped to broadcast against ``time`` (ops on axis 0)."""
    return np.array([op.count for op in ops], dtype=float).reshape(-1, *[1] * (time.ndim - 1))


def _nonzero(x: Any) -> bool:
    """Whether a scalar or any element of an array is non-zero (a float's test without numpy's
    dispatch: most ops carry plain floats)."""
    return bool(x) if isinstance(x, float | int) else bool(np.any(x))


def _host_floor(data: Array, ops: list[Op] | tuple[Op, ...]) -> None:
    """The chip waits for the host time the ops carry (``Op.host_s``; ``workloads.runtime``).
    ``data`` (in op order) is updated in place; an op that waits has overhead added and, where
    the wait is most of it, overhead binds.

    - Launches (an op with kernels) are issued ahead of the chip: the host enqueues the next
      kernels while the chip runs the long ones, so the ops wait only for the part of their
      host time the chip's work does not cover, max(0, sum of host - sum of chip time) over
      the ops (the chip never starves while the host is ahead; NB: the first launch's latency
      and a queue of finite depth are not modelled). That wait falls on the ops whose launches
      outlast them (each by its share of the ops' summed shortfall), where the chip sits idle.
    - Host work without a kernel (a step's scheduling and sampling, ``workloads.runtime.step_op``)
      runs between the chip's work: the op takes all of it.
    """
    host = [op.host_s for op in ops]
    if not any(_nonzero(x) for x in host):
        return
    h = np.zeros(data.shape[1:])
    for i, x in enumerate(host):  # a scalar, or one value per point
        h[i] = x
    time = data[_F["time"]]
    counts = _counts(ops, time)
    queued = np.array([op.kernels > 0 for op in ops]).reshape(counts.shape)
    short = np.where(queued, np.maximum(0.0, h - time), 0.0) * counts  # launches outlasting ops
    excess = np.maximum(0.0, (np.where(queued, h, 0.0) * counts).sum(axis=0)
                        - (np.where(queued, time, 0.0) * counts).sum(axis=0))  # fmt: skip
    total = short.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(total > 0, short / total, 0.0)
    wait = np.where(queued, share * excess / counts, np.maximum(0.0, h - time))
    if not (wait > 0).any():
        return
    busy = time - data[_F["overhead"]]
    overhead = data[_F["overhead"]] + wait
    binds = (wait > 0) & (overhead > busy)
    data[_F["overhead"]] = overhead
    data[_F["bound"]] = np.where(binds, _OVERHEAD, data[_F["bound"]])
    data[_F["level"]] = np.where(binds, _NO_LEVEL, data[_F["level"]])
    data[_F["time"]] = time + wait


def _host_beside(data: Array, ops: list[Op] | tuple[Op, ...]) -> None:
    """An op's ``host_beside_s`` (host work that runs while the chip runs the step's other ops,
    such as asynchronous output processing) lengthens it only by the part longer than the other
    ops' total time; that part is overhead. ``data`` (in op order) is updated in place."""
    beside = [(i, op.host_beside_s) for i, op in enumerate(ops) if _nonzero(op.host_beside_s)]
    if not beside:
        return
    time = data[_F["time"]]
    counts = _counts(ops, time)
    total = (time * counts).sum(axis=0)
    for i, b in beside:
        extra = np.maximum(0.0, b - (total - time[i] * ops[i].count)) / ops[i].count
        waits = extra > 0
        data[_F["overhead"], i] = data[_F["overhead"], i] + extra
        data[_F["bound"], i] = np.where(waits, _OVERHEAD, data[_F["bound"], i])
        data[_F["level"], i] = np.where(waits, _NO_LEVEL, data[_F["level"], i])
        time[i] = time[i] + extra


# ---- power -----------------------------------------------------------------------------------
#: bytes each member sends per byte of the buffer, by collective (ring algorithms, large groups)
_SENT = {"all_reduce": 2.0, "all_gather": 1.0, "reduce_scatter": 1.0, "all_to_all": 1.0,
         "send_recv": 1.0}  # fmt: skip
_BISECTIONS = 40
_MIN_CLOCK = 1e-3


def _energy_rates(ops: list[Op] | tuple[Op, ...], chips: ChipArrays) -> tuple[Array, Array]:
    """Per op: pJ per executed FLOP (matrix units for GEMMs and attention, vector units for
    the rest and for "mmha" attention) [ops, 1|chips], and link bytes sent per instance
    [ops, 1|points]."""
    units = tuple(
        op.dtype
        if op.kind is OpKind.GEMM or (op.kind is OpKind.ATTENTION and op.attention.kernel != "mmha")  # type: ignore[union-attr]
        else None
        for op in ops
    )
    memo = ("energy_pj", units)
    if memo not in chips.memo:  # one lowering's op kinds repeat: look the rates up once
        v = chips.values
        keys = []
        for dtype in units:
            key = None if dtype is None else chips.peak_key(dtype)
            keys.append("vector_pj" if key is None else f"matrix_pj.{key}")
        if chips.n == 1:
            chips.memo[memo] = np.array([v[k][0] for k in keys])[:, None]
        else:
            chips.memo[memo] = np.stack([v[k] for k in keys])
    sent = [
        0.0 if c is None else _SENT.get(c.kind, 1.0) * c.bytes * (c.group - 1) / c.group
        for c in (op.collective for op in ops)
    ]
    if any(isinstance(x, np.ndarray) for x in sent):
        return chips.memo[memo], _table([(x,) for x in sent])[0]
    return chips.memo[memo], np.array(sent)[:, None]


def _power(data: Array, ops: list[Op] | tuple[Op, ...], chips: ChipArrays, steady: bool) -> None:
    """Each op's dynamic energy and, in ``steady`` state, the clock its power limit allows
    (``hardware.power``): where the op at the burst clock would draw more than the limit, the
    clock s falls until idle + (E_clocked s^(a-1) + E_fixed) / t(s) = limit, with compute and
    on-chip transfers stretched by 1/s. ``data`` is updated in place."""
    v = chips.values
    pj_flop, sent = _energy_rates(ops, chips)
    # NB: the op's own FLOPs, not the tile-padded ones: padding multiplies zeros, which toggle
    # almost no gates (a GEMM's power depends on its data; GEMM power benchmarks use random data)
    flops = [op.flops for op in ops]
    if any(isinstance(f, np.ndarray) for f in flops):
        (executed,) = _table([(f,) for f in flops])
    else:
        executed = np.array(flops)[:, None]
    clocked, fixed = _op_energy(
        chips, pj_flop, executed, data[_F["main_bytes"]], data[_F["reuse_bytes"]]
    )
    # a collective's links, and the main-memory traffic each byte it sends costs
    # (``System.collective_main_per_sent``)
    main_pj = chips.level(_main(chips), "pj_per_byte")
    fixed = fixed + 1e-12 * (v["link_pj"] + v["collective_main_per_sent"] * main_pj) * sent
    pim = data[_F["level"]] == _PIM if chips.memo.get("pim", np.zeros(1, bool)).any() else None
    if pim is not None and pim.any():  # decode attention in memory: its K/V read inside the DRAM
        kv = _table([
            (a.batch * a.n_kv_heads * a.kv_read_len * a.kv_bytes_per_token if a else 0.0,)
            for a in (op.attention for op in ops)
        ])[0]  # fmt: skip
        fixed = fixed + np.where(pim, 1e-12 * PIM_PJ_PER_BYTE * kv, 0.0)
    data[_F["energy"]] = clocked + fixed
    limit = v["limit_watts"]
    if not steady or np.isnan(limit).all():
        return
    idle, a = v["idle_watts"], v["dvfs_exponent"]
    # draws more than the limit; a collective's time is its links' and main memory's, which
    # the core clock does not set, so it keeps its time
    over = (data[_F["energy"]] > (limit - idle) * data[_F["time"]]) & (data[_F["comm"]] <= 0)
    if not over.any():
        return
    i, j = np.nonzero(over)
    jj = j if chips.n > 1 else np.zeros_like(j)
    compute, reuse_s = data[_F["compute"], i, j], data[_F["reuse_s"], i, j]
    main_s, overhead = data[_F["main_s"], i, j], data[_F["overhead"], i, j]
    e_clk, e_fix = clocked[i, j], np.broadcast_to(fixed, data.shape[1:])[i, j]
    budget, exp = limit[jj] - idle[jj], a[jj] - 1.0

    clocked_s = np.maximum(compute, reuse_s)  # the part of the op's time that the clock sets
    s = _clock_at_limit(e_clk, e_fix, budget, exp, clocked_s, main_s, overhead)
    data[_F["clock"], i, j] = s
    data[_F["compute"], i, j] = compute / s
    data[_F["reuse_s"], i, j] = reuse_s / s
    data[_F["time"], i, j] = overhead + np.maximum(clocked_s / s, main_s)
    data[_F["energy"], i, j] = e_clk * s**exp + e_fix


def _op_energy(
    chips: ChipArrays, pj_flop: Array, flops: Array, main_bytes: Array, reuse_bytes: Any
) -> tuple[Array, Array]:
    """(energy that scales with the clock, energy that does not) of ops in joules: the FLOPs
    and the on-chip traffic, then the main-memory traffic (links and PIM are the caller's).
    Every byte that reaches the cores crosses the reuse level (L2) and the core's local SRAM:
    the L2-to-core traffic of a tiled op, at least its main-memory traffic."""
    main = _main(chips)
    if "on_chip_pj" not in chips.memo:
        chips.memo["on_chip_pj"] = sum(chips.level(i, "pj_per_byte") for i in range(main)) + 0.0
    delivered = np.maximum(0.0 if reuse_bytes is None else reuse_bytes, main_bytes)
    clocked = 1e-12 * (pj_flop * flops + chips.memo["on_chip_pj"] * delivered)
    return clocked, 1e-12 * chips.level(main, "pj_per_byte") * main_bytes


def _clock_at_limit(
    e_clk: Array, e_fix: Array, budget: Array, exp: Array, c: Array, m: Array, o: Array
) -> Array:
    """The clock s in (0, 1] at which (e_clk s^exp + e_fix) / (o + max(c / s, m)) = budget, the
    dynamic power rising with s. For exp = 1 (power ~ clock^2) each branch of the max has a
    closed form: compute-bound, e_clk s^2 + (e_fix - budget o) s - budget c = 0; memory-bound,
    s = (budget (o + m) - e_fix) / e_clk; the root is the branch whose side of the max it lies on.
    Otherwise (or where neither applies) bisection."""
    s = np.full(len(c), np.nan)
    if (exp == 1.0).all():
        with np.errstate(divide="ignore", invalid="ignore"):
            b = e_fix - budget * o
            s_c = (np.sqrt(b * b + 4 * e_clk * budget * c) - b) / (2 * e_clk)
            s_m = (budget * (o + m) - e_fix) / e_clk
            s = np.where(c >= m * s_c, s_c, np.where(c <= m * s_m, s_m, np.nan))
        s[~((s > _MIN_CLOCK) & (s <= 1.0))] = np.nan
    todo = np.isnan(s)
    if todo.any():
        e_clk, e_fix, budget, exp, c, m, o = (x[todo] for x in (e_clk, e_fix, budget, exp, c, m, o))
        lo, hi = np.full(len(c), _MIN_CLOCK), np.ones(len(c))
        for _ in range(_BISECTIONS):  # the excess power rises with the clock
            mid = 0.5 * (lo + hi)
            high = e_clk * mid**exp + e_fix > budget * (o + np.maximum(c / mid, m))
            hi = np.where(high, mid, hi)
            lo = np.where(high, lo, mid)
        s[todo] = lo
    return s


def distinct_columns(columns: Array) -> tuple[Array, Array]:
    """The distinct columns of a 2-D array: the index of each one's first occurrence, and for
    every column the position of its distinct column in that list (``np.unique(columns, axis=1,
    return_index=True, return_inverse=True)`` without its lexicographic sort of whole columns:
    each row is coded on its own, the codes combined into one integer per column)."""
    codes = np.zeros(columns.shape[1], dtype=np.int64)
    span = 1
    for row in columns:
        values, code = np.unique(row, return_inverse=True)
        if span * len(values) >= 1 << 62:  # too many combinations to code: compact what we have
            _, codes = np.unique(codes, return_inverse=True)
            span = int(codes.max()) + 1
        codes = codes * len(values) + code.reshape(-1)
        span *= len(values)
    _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


def _part(
    kind: OpKind,
    ops: list[Op],
    chips: ChipArrays,
    n: int,
    resident: Any = False,
    steady: bool = False,
) -> Part:
    """One kind's pass. On one chip, ops lowered over arrays are costed once per distinct
    point (a decode grid's GEMMs depend on the batch, not the context) and spread back."""
    cost = _BY_KIND[kind]
    if kind is OpKind.GEMM:
        if np.any(resident):
            return cost_gemms(ops, chips, resident, steady)
        cost = functools.partial(cost_gemms, steady=steady)
    arrays = point_arrays(ops) if chips.n == 1 and n > 1 else []
    if arrays:
        columns = np.stack([np.asarray(a, dtype=float) for a in arrays])
        sample = columns[:, : 1 << 12]  # worth it only where few points are distinct
        if 2 * len(distinct_columns(sample)[0]) > sample.shape[1]:
            return cost(ops, chips)
        first, inverse = distinct_columns(columns)
        if 2 * len(first) <= n:
            part = cost(take_points(ops, first), chips)
            return {
                f: v[:, inverse] if np.ndim(v) == 2 and np.shape(v)[1] == len(first) else v
                for f, v in part.items()
            }
    return cost(ops, chips)


# ---- one chip: per-op records --------------------------------------------------------------------
def op_costs(
    ops: list[Op] | tuple[Op, ...], table: Costs, levels: tuple[str, ...], point: int = 0
) -> tuple[OpCost, ...]:
    """The per-op records of one point of a ``cost_table``; ``levels`` names the chip's memory
    levels (innermost first)."""
    main, reuse = levels[-1], levels[-2] if len(levels) >= 2 else ""
    level_names = ("", main, reuse, f"{main}-pim")
    out = []
    for op, row in zip(ops, table.data[:, :, point].T.tolist(), strict=True):
        time, compute, main_s, reuse_s, main_b, reuse_b, overhead, comm = row[:8]
        bound, level, tm, tn, eff = int(row[8]), int(row[9]), int(row[10]), int(row[11]), row[12]
        energy, clock = row[13], row[14]
        memory = {}
        if main_b > 0 or level == _PIM:
            memory[main] = main_s
        if reuse_b > 0:
            memory[reuse] = reuse_s
        out.append(
            OpCost(op=op, time_s=time, compute_s=compute, memory_s=memory, overhead_s=overhead,
                   comm_s=comm, bound=BOUNDS[bound], binding_level=level_names[level],
                   main_bytes=main_b, tile=(tm, tn) if tm else None, tile_efficiency=eff,
                   energy_j=energy, clock=clock)
        )  # fmt: skip
    return tuple(out)


def weights_resident(weights_bytes: Any, chips: ChipArrays) -> Any:
    """Whether a chip's share of the weights fits its on-chip reuse level (L2, global buffer)
    whole: then it is pinned there and every GEMM reads its weights on chip (the placement
    policy: weights first, all or nothing). False for chips with one memory level (their main
    memory is already where the weights live)."""
    if not _has_reuse(chips):
        return False
    return np.asarray(weights_bytes) <= chips.level(_main(chips) - 1, "capacity")


def cost_ops(
    ops: list[Op] | tuple[Op, ...],
    system: System,
    *,
    overlap: bool = False,
    steady: bool = True,
    resident: bool = False,
) -> tuple[OpCost, ...]:
    """Cost each op (one instance) on one chip of ``system`` (``overlap``, ``steady``,
    ``resident``: see ``cost_table``)."""
    if not ops:
        return ()
    chips = ChipArrays.of(system)
    table = cost_table(ops, chips, overlap=overlap, steady=steady, resident=resident)
    return op_costs(ops, table, chips.structure.levels)


def cost_op(op: Op, system: System) -> OpCost:
    """Cost one instance of ``op`` on one chip of ``system``."""
    return cost_ops([op], system)[0]


# ---- compute beside a collective ---------------------------------------------------------------
def beside_slowdown(
    compute: tuple[OpCost, ...] | list[OpCost],
    collectives: tuple[OpCost, ...] | list[OpCost],
    system: System,
    *,
    overlap: bool = False,
    take: tuple[str, ...] = ("cores", "memory", "power"),
) -> float:
    """How much longer ``compute`` (its costs on ``system``) takes while ``collectives`` (their
    costs on ``system``) run beside it, over its own time: the collectives hold
    ``System.collective_cores_of`` of the cores
    (NCCL's CTAs do not share an SM), the main-memory bandwidth of their own traffic, and the
    power of that traffic and of their links, out of the chip's limit (``Chip.beside``). A
    member moves ``System.collective_main_per_sent`` bytes through main memory per byte it
    sends. ``take`` names the resources the collectives take (all three by default; fewer to
    see what each costs: ``benchmarks/beside_collective.py``). The compute ops are costed
    again on what is left, with its waves, tiles and clock; collectives among ``compute`` are
    skipped."""
    work = [c for c in compute if c.op.kind is not OpKind.COLLECTIVE and c.total_time_s > 0]
    base = sum(c.total_time_s for c in work)
    if not work or not collectives or base <= 0:
        return 0.0
    chip = system.chip
    # the collectives beside it hold the cores the most demanding of them takes
    held = max((c.cores or system.collective_cores_of(c.kind, c.group, c.local)
                for x in collectives if (c := x.op.collective) is not None and c.group > 1),
               default=system.collective_cores)  # fmt: skip
    if held >= chip.n_cores and any(
        c.cores >= chip.n_cores for x in collectives if (c := x.op.collective) is not None
    ):
        raise ConfigError(
            f"chip {chip.name!r}: the runtime's deepep_num_sms must be below "
            f"compute.n_cores ({chip.n_cores}) for compute to run beside DeepEP's kernels, got "
            f"{max(c.cores for x in collectives if (c := x.op.collective) is not None)} (a "
            "runtime preset with fewer, or --no-overlap)"
        )
    if held >= chip.n_cores:
        ring = held != system.collective_cores
        field = "ring_collective_cores" if ring else "collective_cores"
        what = " (the cores an intra-node ring all-gather or reduce-scatter holds)" if ring else ""
        raise ConfigError(
            f"chip {chip.name!r}: system.{field}{what} must be below compute.n_cores "
            f"({chip.n_cores}) for compute to run beside a collective; got {held} "
            f"(--set system.{field}=N with N below {chip.n_cores}, or --no-overlap)"
        )
    span = sum(c.total_time_s for c in collectives)
    if span <= 0:
        return 0.0
    main_bytes = system.collective_main_per_sent * sum(
        _SENT.get(c.kind, 1.0) * c.bytes * (c.group - 1) / c.group * x.op.count
        for x in collectives if (c := x.op.collective) is not None and c.group > 1
    )  # fmt: skip
    # the collectives' energy: their links and their main-memory traffic (``_power``)
    watts = (sum(c.energy_j * c.op.count for c in collectives) / span
             if chip.has_power_model else 0.0)  # fmt: skip
    other = chip.beside(held if "cores" in take else 0,
                        main_bytes / span if "memory" in take else 0.0,
                        watts if "power" in take else 0.0)  # fmt: skip
    # the compute runs on what is left: no collective of its own holds cores there
    slowed = cost_ops([c.op for c in work],
                      replace(system, chip=other, collective_cores=0, ring_collective_cores=None),
                      overlap=overlap)  # fmt: skip
    return max(0.0, sum(c.total_time_s for c in slowed) / base - 1.0)
