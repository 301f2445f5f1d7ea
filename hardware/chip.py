"""Chip and system descriptions: compute units per dtype, memory levels, overheads, links."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import StrEnum

#: the SRAM levels built as hardware caches where a chip's ``Silicon.caches`` names none
CACHE_LEVELS = ("l1", "l2", "l3", "llc")


class ConfigError(ValueError):
    """A chip, system or override that cannot describe real hardware; the message is one line."""


class DType(StrEnum):
    FP32 = "fp32"
    TF32 = "tf32"
    BF16 = "bf16"
    FP16 = "fp16"
    FP8 = "fp8"
    INT8 = "int8"
    INT4 = "int4"
    FP4 = "fp4"


#: storage bytes per element; tf32 is stored as fp32
DTYPE_BYTES: dict[str, float] = {
    "fp32": 4.0,
    "tf32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int4": 0.5,
    # NVFP4 (NVIDIA, Blackwell): E2M1 elements with an E4M3 scale per block of 16 (4 + 8 / 16
    # bits); the per-tensor FP32 scale is negligible
    "fp4": 0.5625,
}


def dtype_bytes(dtype: str) -> float:
    """Bytes per element of ``dtype``; raises ConfigError naming the accepted dtypes."""
    try:
        return DTYPE_BYTES[dtype]
    except KeyError:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPE_BYTES)}, got {dtype!r}") from None


def _positive(where: str, name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ConfigError(f"{where}: {name} must be > 0, got {value!r}")


def _rate(where: str, name: str, value: float) -> None:
    """A rate (bytes or FLOP per second): > 0, and at least 1 per second, which any hardware
    exceeds many times over (a denormal rate would overflow the times derived from it)."""
    _positive(where, name, value)
    if value < 1.0:
        raise ConfigError(f"{where}: {name} must be at least 1 per second, got {value!r}")


def _fraction(where: str, name: str, value: float) -> None:
    if not (isinstance(value, int | float) and 0 < value <= 1):
        raise ConfigError(f"{where}: {name} must be in (0, 1], got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryLevel:
    """One level of the memory hierarchy, whole-chip totals.

    ``achievable_fraction`` is what a streaming microbenchmark reaches of the datasheet
    bandwidth (e.g. STREAM copy on HBM); the roofline uses the achievable bandwidth.
    ``pim_*`` describe processing-in-memory (compute units beside the banks, as in Samsung's
    HBM-PIM): work placed there streams at the internal bandwidth and never crosses the bus.
    ``latency_s`` is the loaded access latency: a transfer pays it once more while the pipeline
    fills (Little's law: the level needs bandwidth x latency bytes in flight), so B bytes take
    B/bw + min(B/bw, latency): small transfers run at half the bandwidth, large ones at all of it.
    """

    name: str
    capacity_bytes: float
    bandwidth_bytes_per_s: float
    achievable_fraction: float = 1.0
    latency_s: float = 0.0
    pim_bandwidth_bytes_per_s: float = 0.0  # processing-in-memory: bank-level internal bandwidth
    pim_flops_per_s: float = 0.0  # processing-in-memory: compute units inside the memory
    # energy of one byte moved through this level (read or write, including its interface);
    # None until hardware.power derives it
    pj_per_byte: float | None = None
    technology: str = ""  # e.g. "hbm3", "sram" (hardware.power reads the energy per byte from it)
    source: str = ""

    def __post_init__(self) -> None:
        where = f"memory level {self.name!r}"
        if (self.pim_flops_per_s > 0) != (self.pim_bandwidth_bytes_per_s > 0):
            raise ConfigError(
                f"{where}: processing in memory needs both pim_flops and pim_bandwidth "
                "(set both, or neither)"
            )
        _positive(where, "capacity", self.capacity_bytes)
        _rate(where, "bandwidth", self.bandwidth_bytes_per_s)
        _fraction(where, "achievable_fraction", self.achievable_fraction)
        if not self.latency_s >= 0:
            raise ConfigError(f"{where}: latency must be >= 0, got {self.latency_s!r}")
        if self.pj_per_byte is not None and not (
            math.isfinite(self.pj_per_byte) and self.pj_per_byte >= 0
        ):
            raise ConfigError(f"{where}: pj_per_byte must be >= 0, got {self.pj_per_byte!r}")

    @property
    def achievable_bytes_per_s(self) -> float:
        return self.bandwidth_bytes_per_s * self.achievable_fraction

    def transfer_s(self, traffic_bytes: float) -> float:
        """Seconds to move ``traffic_bytes`` through this level."""
        stream = traffic_bytes / self.achievable_bytes_per_s
        return stream + min(stream, self.latency_s)


@dataclass(frozen=True, slots=True, kw_only=True)
class Silicon:
    """How a chip is built, for the area and cost models (``hardware.area``, ``hardware.cost``):
    what the die holds beyond what runs (cores and SRAM disabled for yield), what a preset's
    performance fields do not say. Every field is optional; the models derive the rest.

    ``node`` names a process-node preset (``hardware/nodes``; default: the chip's process_nm).
    ``dies`` is the number of compute dies the chip's resources are split over (reticle and
    yield apply per die). ``cores_on_die`` counts the cores the silicon has, disabled ones
    included (A100: 128 SMs, 108 enabled). ``sram_on_die`` gives a level's physical capacity
    where more is built than enabled (by level name). ``register_file_bytes``: the cores'
    register files, all of them. ``caches`` names the SRAM levels built as hardware caches
    (tags, wide ports: larger per bit than software-managed scratchpads); by default the
    levels named l1, l2, l3, llc. It also sets how a GEMM reuses the level before main memory:
    a cache shares panels among a wave of tiles, a scratchpad holds blocks sized by its
    capacity (``Chip.reuse_is_scratchpad``, ``sim.cost.roofline``). ``memory_sites``: the HBM stacks or DRAM channels the die has
    PHYs for (default: the fewest that reach main memory's bandwidth). ``link_bandwidth_bytes_per_s``:
    all the chip's SerDes links, per direction (default: the system's intra-node bandwidth).
    ``die_area_mm2`` is a published die area (all dies), for comparison only; never an input.
    """

    node: str = ""
    dies: int = 1
    cores_on_die: int | None = None
    sram_on_die: dict[str, float] = field(default_factory=dict)
    register_file_bytes: float = 0.0
    caches: tuple[str, ...] | None = None
    memory_sites: int | None = None
    link_bandwidth_bytes_per_s: float | None = None
    die_area_mm2: float | None = None
    sources: dict[str, str] = field(default_factory=dict)

    def check(self, where: str, n_cores: int) -> None:
        if not isinstance(self.dies, int) or self.dies < 1:
            raise ConfigError(f"{where}: silicon.dies must be an integer >= 1, got {self.dies!r}")
        if self.cores_on_die is not None and (
            not isinstance(self.cores_on_die, int) or self.cores_on_die < n_cores
        ):
            raise ConfigError(
                f"{where}: silicon.cores_on_die must be an integer >= compute.n_cores "
                f"({n_cores}), got {self.cores_on_die!r}"
            )
        if self.memory_sites is not None and (
            not isinstance(self.memory_sites, int) or self.memory_sites < 1
        ):
            raise ConfigError(
                f"{where}: silicon.memory_sites must be an integer >= 1, got {self.memory_sites!r}"
            )
        for key, value in (
            ("silicon.register_file", self.register_file_bytes),
            ("silicon.link_bandwidth", self.link_bandwidth_bytes_per_s or 0.0),
            *((f"silicon.sram_on_die.{k}", v) for k, v in self.sram_on_die.items()),
        ):
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{where}: {key} must be >= 0, got {value!r}")
        if self.die_area_mm2 is not None:
            _positive(where, "silicon.die_area", self.die_area_mm2)


@dataclass(frozen=True, slots=True, kw_only=True)
class Chip:
    """One accelerator.

    Compute: dense peak FLOP/s per dtype; GEMM output tiles are spread over ``n_cores`` cores in
    tiles from ``gemm_tiles`` (M x N) with K padded to ``tile_k``: this is what wave and tile
    quantisation are computed from; ``cluster`` (cm, cn) tiles share one L2 load by multicast
    (thread-block clusters; (1, 1) where the chip has none). ``sustained_clock_fraction`` is the best measured dense
    matmul rate over the datasheet peak (clock throttle under sustained load and issue limits);
    ``sustained_by_dtype`` overrides it for a dtype measured separately (fp8 GEMMs reach a
    smaller share of their peak than bf16 on Hopper); these are the rates of a short burst,
    before the chip reaches its power limit.
    Power (``hardware.power``): ``idle_watts`` is drawn whenever the chip is on;
    ``matrix_pj_per_flop`` is the energy of one dense 16-bit matrix FLOP (operand delivery from
    the core's SRAM included; other dtypes scale by the peak ratio: the matrix units draw the
    same power at full rate in every dtype), ``vector_pj_per_flop`` that of a vector-unit FLOP,
    each memory level's ``pj_per_byte`` that of a byte moved there and ``link_pj_per_byte`` that
    of a byte sent over a link. Where an op at full clock would draw more than
    ``power_limit_watts`` (the TDP, or ``power_cap_watts`` below it), the clock falls until it
    draws the limit, dynamic power falling as clock^``dvfs_exponent`` (voltage falls with it).
    ``mma_sync_fraction`` is the tensor rate over peak that kernels written with the previous
    generation's warp-level MMA instructions reach (FlashAttention-2 on Hopper uses mma.sync,
    not wgmma); None where that path runs at the full rate. Attention ops with kernel "fa2" use it.
    ``attention_bwd_fraction`` is the tensor rate over peak of the fused attention backward kernel
    (dQ, dK, dV: five matmuls per score tile, dQ accumulated in fp32), as a backward microbenchmark
    measures it; None where none was measured (the backward then runs at the forward's rate).
    A backward keeps that share of the sustained rate of its own kernel's forward matmul rate
    (``attention_rate``): a kernel whose forward runs below the sustained rate
    (FlashAttention-2's mma.sync on Hopper) loses the same share again in its backward, as
    measured kernels do (FA2 on H100, 370 forward and 322 backward TFLOP/s at head dim 128 and
    seq 16k; FA3 648 and 561: both 0.87, Shah et al. 2024). NB: the share slows the matmuls,
    not the softmax, so the modelled backward/forward ratio of FA2 is nearer 0.94.
    ``attention_overlap``: the chip's native attention forward runs the softmax beside the
    matmuls (an asynchronous MMA with its accumulators outside the registers, Blackwell's
    tcgen05 and tensor memory, as FlashAttention-4 and cuDNN use it), so a score costs the
    longer of its matmul and softmax time rather than their sum (``sim.cost.roofline``), plus
    ``attention_overlap_exposed`` times the shorter: the part of it the kernel's per-tile
    hand-offs leave exposed, as its measured forward rate shows. ``tensor_memory_bytes``: a
    core's accumulator memory for its asynchronous MMA (Blackwell's tensor memory); a fused
    attention backward whose dK and dV accumulators leave no room there for a score tile runs
    as two kernels that each recompute S and dP (``sim.cost.roofline``).
    ``split_accumulate_fraction`` is the rate of an fp8 matmul whose fp32 partial sums are
    promoted out of the tensor core every few MMAs (cuBLAS without CUBLASLT_MATMUL_DESC_FAST_ACCUM,
    Transformer Engine's default for the dgrad and wgrad GEMMs) over the fast-accumulating one;
    None where the tensor cores accumulate at full precision (no fast mode to lose).
    Memory: ``memory`` lists levels innermost first; the last level is main memory, which holds
    weights and the KV cache. ``kernel_overhead_s`` is the fixed cost of one op (launch, ramp,
    tail) as a small-kernel microbenchmark measures it. ``exp_per_s`` is the special-function
    (exp) rate that bounds softmax in attention, where known. ``usd_per_hour`` is a cited public
    cloud on-demand price of one chip for one hour (perf per dollar in ``roofsim compare``).
    """

    name: str
    full_name: str = ""
    vendor: str = ""
    year: int | None = None
    process_nm: float | None = None
    hypothetical: bool = False
    n_cores: int
    peak_flops_per_s: dict[str, float]
    vector_flops_per_s: float
    gemm_tiles: tuple[tuple[int, int], ...] = ((128, 128),)
    tile_k: int = 64
    tile_step: int = 0  # a tile side may be cut to a multiple of this (0: the listed tiles only)
    cluster: tuple[int, int] = (1, 1)
    sustained_clock_fraction: float = 1.0
    sustained_by_dtype: dict[str, float] = field(default_factory=dict)
    mma_sync_fraction: float | None = None
    attention_bwd_fraction: float | None = None
    split_accumulate_fraction: float | None = None
    stream_k: bool = False  # the GEMM library can schedule stream-K (sim/cost/roofline.py)
    # the chip's native attention forward runs the softmax beside the matmuls, not after them:
    # an asynchronous MMA whose accumulators live outside the registers (Blackwell's tcgen05 and
    # tensor memory) leaves the softmax warps free while the next tile multiplies
    attention_overlap: bool = False
    # with ``attention_overlap``: the share of the shorter of a native forward score's matmul and
    # softmax times that the kernel's pipeline does not hide (0: the longer of the two alone)
    attention_overlap_exposed: float = 0.0
    # the accumulator memory of a core's asynchronous MMA, bytes (Blackwell's tensor memory:
    # 128 lanes x 512 columns of 32 bits an SM); None where the accumulators live in registers
    tensor_memory_bytes: float | None = None
    # the NVIDIA compute capability ("8.0": Ampere GA100, "9.0": Hopper, "10.0": Blackwell B200;
    # "": not an NVIDIA part): software picks its kernels by it (a runtime's attention backend
    # for a model with attention sinks, ``workloads.runtime.Runtime.sinks_native``)
    compute_capability: str = ""
    memory: tuple[MemoryLevel, ...]
    exp_per_s: float | None = None
    kernel_overhead_s: float = 0.0
    tdp_watts: float | None = None
    power_cap_watts: float | None = None  # a board power limit set below the TDP (nvidia-smi -pl)
    idle_watts: float | None = None
    matrix_pj_per_flop: float | None = None  # one dense 16-bit matrix FLOP
    vector_pj_per_flop: float | None = None
    link_pj_per_byte: float | None = None
    dvfs_exponent: float | None = None  # dynamic power ~ clock^this while the clock is limited
    usd_per_hour: float | None = None  # public cloud on-demand price of one chip-hour, where known
    clock_hz: float | None = (
        None  # the clock the matrix peaks are quoted at (area: MACs = peak / 2f)
    )
    silicon: Silicon = field(default_factory=Silicon)
    sources: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"chip {self.name!r}"
        if not isinstance(self.n_cores, int) or self.n_cores < 1:
            raise ConfigError(
                f"{where}: compute.n_cores must be an integer >= 1, got {self.n_cores!r}"
            )
        if not self.peak_flops_per_s:
            raise ConfigError(f"{where}: compute.peak must list at least one dtype")
        for dtype, rate in self.peak_flops_per_s.items():
            dtype_bytes(dtype)
            _rate(where, f"compute.peak.{dtype}", rate)
        _rate(where, "compute.peak.vector", self.vector_flops_per_s)
        if self.exp_per_s is not None:
            _rate(where, "compute.exp_rate", self.exp_per_s)
        if not self.gemm_tiles:
            raise ConfigError(f"{where}: compute.gemm_tiles must list at least one [M, N] tile")
        for tile in self.gemm_tiles:
            if len(tile) != 2 or min(tile) < 1:
                raise ConfigError(
                    f"{where}: compute.gemm_tiles entries must be [M, N] >= 1, got {tile!r}"
                )
        if len(self.cluster) != 2 or min(self.cluster) < 1:
            raise ConfigError(
                f"{where}: compute.cluster must be [cm, cn] >= 1, got {self.cluster!r}"
            )
        if self.tile_k < 1:
            raise ConfigError(f"{where}: compute.tile_k must be >= 1, got {self.tile_k!r}")
        if self.tile_step < 0:
            raise ConfigError(
                f"{where}: compute.tile_step must be >= 0 (0: the listed tiles only), "
                f"got {self.tile_step!r}"
            )
        _fraction(where, "compute.sustained_clock_fraction", self.sustained_clock_fraction)
        for dtype, frac in self.sustained_by_dtype.items():
            dtype_bytes(dtype)
            _fraction(where, f"compute.sustained_fraction.{dtype}", frac)
        if self.mma_sync_fraction is not None:
            _fraction(where, "compute.mma_sync_fraction", self.mma_sync_fraction)
        cc = self.compute_capability
        if cc and not is_capability(cc):
            raise ConfigError(
                f'{where}: compute.compute_capability must be a version like "9.0" (major.minor), '
                f"or left out for a chip that is not an NVIDIA GPU; got {cc!r}"
            )
        if self.attention_bwd_fraction is not None:
            _fraction(where, "compute.attention_bwd_fraction", self.attention_bwd_fraction)
        if self.split_accumulate_fraction is not None:
            _fraction(where, "compute.split_accumulate_fraction", self.split_accumulate_fraction)
        if self.tensor_memory_bytes is not None and not (
            math.isfinite(self.tensor_memory_bytes) and self.tensor_memory_bytes > 0
        ):
            raise ConfigError(
                f"{where}: compute.tensor_memory must be a capacity > 0 (e.g. '256 KiB'), "
                f"got {self.tensor_memory_bytes!r}"
            )
        x = self.attention_overlap_exposed
        if not (isinstance(x, int | float) and 0 <= x <= 1):
            raise ConfigError(
                f"{where}: compute.attention_overlap_exposed must be in [0, 1], got {x!r}"
            )
        if not self.memory:
            raise ConfigError(f"{where}: at least one [[memory]] level is required")
        if not (math.isfinite(self.kernel_overhead_s) and self.kernel_overhead_s >= 0):
            raise ConfigError(
                f"{where}: overhead.kernel_s must be >= 0, got {self.kernel_overhead_s!r}"
            )
        for key, value in (
            ("power.tdp", self.tdp_watts),
            ("power.cap", self.power_cap_watts),
            ("power.dvfs_exponent", self.dvfs_exponent),
        ):
            if value is not None:
                _positive(where, key, value)
        for key, value in (
            ("power.idle", self.idle_watts),
            ("power.matrix_pj_per_flop", self.matrix_pj_per_flop),
            ("power.vector_pj_per_flop", self.vector_pj_per_flop),
            ("power.link_pj_per_byte", self.link_pj_per_byte),
        ):
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{where}: {key} must be >= 0, got {value!r}")
        limit = self.power_limit_watts
        if limit is not None and self.idle_watts is not None and self.idle_watts >= limit:
            raise ConfigError(
                f"{where}: the power limit ({limit:g} W) must exceed power.idle "
                f"({self.idle_watts:g} W); raise power.cap, or lower power.idle"
            )
        if self.usd_per_hour is not None:
            _positive(where, "price.usd_per_hour", self.usd_per_hour)
        if self.clock_hz is not None:
            _rate(where, "compute.clock_hz", self.clock_hz)
        self.silicon.check(where, self.n_cores)
        names = [lvl.name for lvl in self.memory]
        unknown = [c for c in self.silicon.caches or () if c not in names]
        if unknown:
            raise ConfigError(
                f"{where}: silicon.caches names {', '.join(map(repr, unknown))}, not a memory "
                f"level; the levels are {', '.join(names)}"
            )

    @property
    def main_memory(self) -> MemoryLevel:
        """The outermost level: where weights and the KV cache live."""
        return self.memory[-1]

    @property
    def reuse_level(self) -> MemoryLevel | None:
        """The largest on-chip level below main memory (L2 / global buffer), if any."""
        return self.memory[-2] if len(self.memory) >= 2 else None

    @property
    def reuse_is_scratchpad(self) -> bool:
        """Whether the reuse level is software-managed (TPU VMEM, a global buffer) rather than
        a hardware cache (``Silicon.caches``; by default the levels named l1, l2, l3, llc)."""
        lvl = self.reuse_level
        caches = self.silicon.caches if self.silicon.caches is not None else CACHE_LEVELS
        return lvl is not None and lvl.name not in caches

    def level(self, name: str) -> MemoryLevel:
        for lvl in self.memory:
            if lvl.name == name:
                return lvl
        names = ", ".join(lvl.name for lvl in self.memory)
        raise ConfigError(f"chip {self.name!r}: no memory level {name!r}; it has {names}")

    def peak(self, dtype: str) -> float:
        """Dense datasheet peak FLOP/s for ``dtype``; fp16/bf16 stand in for each other."""
        if dtype in self.peak_flops_per_s:
            return self.peak_flops_per_s[dtype]
        if dtype == "tf32":  # as sim.cost.chips.ChipArrays.peak_key: fp32 units, else 16-bit
            for d in ("fp32", "bf16", "fp16"):
                if d in self.peak_flops_per_s:
                    return self.peak_flops_per_s[d]
        twin = {"bf16": "fp16", "fp16": "bf16"}.get(dtype)
        if twin in self.peak_flops_per_s:
            return self.peak_flops_per_s[twin]
        has = ", ".join(self.peak_flops_per_s)
        raise ConfigError(
            f"chip {self.name!r} has no {dtype} matrix units (it has {has}); choose --dtype from those"
        )

    def sustained(self, dtype: str) -> float:
        """Achievable dense matmul FLOP/s for ``dtype``: peak x its sustained fraction."""
        return self.peak(dtype) * self.sustained_by_dtype.get(dtype, self.sustained_clock_fraction)

    def attention_rate(self, dtype: str, kernel: str = "native", backward: bool = False) -> float:
        """Matmul FLOP/s inside an attention kernel: ``sustained``, capped for "fa2" and "triton"
        kernels where the chip's warp-level MMA path is slower (``mma_sync_fraction``) and for the
        backward kernel where one was measured (``attention_bwd_fraction``: the backward keeps
        its share of the sustained rate of whatever rate its kernel's forward reaches); the
        vector rate for "mmha", which runs its dot products on the CUDA cores."""
        if kernel == "mmha":  # dot products as FMAs on the CUDA cores (vector units)
            return self.vector_flops_per_s
        sustained = self.sustained(dtype)
        rate = sustained
        if kernel in ("fa2", "triton") and self.mma_sync_fraction is not None:
            rate = min(rate, self.peak(dtype) * self.mma_sync_fraction)
        if backward and self.attention_bwd_fraction is not None:
            rate *= min(1.0, self.peak(dtype) * self.attention_bwd_fraction / sustained)
        return rate

    @property
    def power_limit_watts(self) -> float | None:
        """The power the chip may draw: its TDP, or a lower board cap."""
        limits = [w for w in (self.tdp_watts, self.power_cap_watts) if w is not None]
        return min(limits) if limits else None

    @property
    def has_power_model(self) -> bool:
        """Whether every coefficient of the power model is known (``hardware.power`` derives
        them for any chip with a process node and a TDP)."""
        return (
            None not in (self.idle_watts, self.matrix_pj_per_flop, self.vector_pj_per_flop,
                         self.link_pj_per_byte, self.dvfs_exponent)
            and all(lvl.pj_per_byte is not None for lvl in self.memory)
        )  # fmt: skip

    def matrix_pj(self, dtype: str) -> float:
        """Energy of one dense matrix FLOP in ``dtype``: the 16-bit figure scaled by the peak
        ratio (the matrix units draw the same power at full rate in every dtype)."""
        if self.matrix_pj_per_flop is None:
            raise ConfigError(f"chip {self.name!r} has no power.matrix_pj_per_flop")
        return self.matrix_pj_per_flop * self.reference_peak / self.peak(dtype)

    def beside(self, cores_taken: int, main_bytes_per_s: float, watts: float) -> Chip:
        """The chip as compute sees it while other work holds part of it: ``cores_taken`` cores
        (each core's rates and local memory kept, so the chip's rates shrink with the cores left),
        ``main_bytes_per_s`` of its main memory's achievable bandwidth (never more than 90 % of
        it) and ``watts`` of its power limit (never below its idle power plus a tenth of the
        headroom). The reuse level (L2) and main memory are shared; the levels inside the reuse
        level are the cores' own."""
        left = max(1, self.n_cores - max(0, cores_taken))
        f = left / self.n_cores
        main = self.main_memory
        taken = min(max(0.0, main_bytes_per_s), 0.9 * main.achievable_bytes_per_s)
        own = len(self.memory) - 2  # the levels inside the reuse level
        memory = tuple(
            replace(lvl, capacity_bytes=lvl.capacity_bytes * f,
                    bandwidth_bytes_per_s=lvl.bandwidth_bytes_per_s * f) if i < own
            else replace(lvl, bandwidth_bytes_per_s=lvl.bandwidth_bytes_per_s
                         - taken / lvl.achievable_fraction) if lvl is main
            else lvl
            for i, lvl in enumerate(self.memory)
        )  # fmt: skip
        cap = self.power_cap_watts
        limit = self.power_limit_watts
        if limit is not None and watts > 0:
            idle = self.idle_watts or 0.0
            cap = max(limit - watts, idle + 0.1 * (limit - idle))
        return replace(
            self, n_cores=left,
            peak_flops_per_s={k: v * f for k, v in self.peak_flops_per_s.items()},
            vector_flops_per_s=self.vector_flops_per_s * f,
            exp_per_s=None if self.exp_per_s is None else self.exp_per_s * f,
            memory=memory, power_cap_watts=cap,
        )  # fmt: skip

    @property
    def reference_peak(self) -> float:
        """The 16-bit dense matrix peak that ``matrix_pj_per_flop`` is quoted at (bf16, else
        fp16, else the fastest dtype the chip has)."""
        for dtype in ("bf16", "fp16"):
            if dtype in self.peak_flops_per_s:
                return self.peak_flops_per_s[dtype]
        return max(self.peak_flops_per_s.values())


@dataclass(frozen=True, slots=True, kw_only=True)
class Link:
    """A chip's link into a group: bandwidth per direction per chip, and per-message latency.

    ``achievable_fraction`` is the share of the datasheet bandwidth a collective library's
    large-message bus bandwidth reaches (nccl-tests ``busbw``). ``simple_latency_s``, where
    measured, splits the link into NCCL's two kinds of protocol: the low-latency one (LL: each
    8-byte store carries 4 bytes of data and a 4-byte flag, so half the bandwidth) at
    ``latency_s`` per step, and the bulk one (Simple) at the full bandwidth and
    ``simple_latency_s`` per step; a collective takes the faster, as NCCL's tuner does. None:
    one protocol, full bandwidth at ``latency_s``. ``all_to_all_latency_s`` and
    ``all_to_all_bus_bandwidth``, where measured: the collective library's all-to-all over the
    link (NCCL's is point-to-point sends and receives to every peer, which neither the ring's
    per-step latency nor an all-reduce's bandwidth describes) as a microbenchmark of it
    measures it: time per call (its kernel's fixed cost included) and bus bandwidth
    (nccl-tests' convention: (p-1)/p of the per-chip buffer over the time). None: the
    pairwise alpha-beta model on the link. ``p2p_channel_bandwidth``, where measured: what one
    NCCL channel (one CTA copying) carries of a point-to-point send over the link: a send to
    one peer runs on as many channels as NCCL's rules give it in its communicator
    (``sim.cost.collectives.p2p_channels``), so a ring hop in a large communicator is
    slower than the link. None: the link's rate alone. ``nvls_bandwidth_bytes_per_s`` and
    ``nvls_latency_s``, where measured: an all-reduce reduced in the switch (NCCL's NVLS on
    NVSwitch 3 and later: each chip sends its buffer into the switch, which sums the chips'
    copies, and takes its 1/p share of the sum back by a multicast store, (1 + 1/p) of the
    buffer over each direction of its links) at this rate over those bytes plus this time a
    call, taken where it beats the ring on groups of three chips or more, plus
    ``nvls_chunk_latency_s`` for each chunk each of NCCL's concurrent NVLS operations moves
    (``sim.cost.collectives._nvls``: NCCL shrinks the chunk for smaller buffers). None: the
    ring."""

    bandwidth_bytes_per_s: float
    latency_s: float = 0.0
    achievable_fraction: float = 1.0  # what NCCL-style collectives reach of the datasheet rate
    simple_latency_s: float | None = None
    all_to_all_latency_s: float | None = None
    all_to_all_bus_bandwidth: float | None = None
    p2p_channel_bandwidth: float | None = None
    nvls_bandwidth_bytes_per_s: float | None = None
    nvls_latency_s: float | None = None
    nvls_chunk_latency_s: float = 0.0

    def __post_init__(self) -> None:
        _rate("link", "bandwidth", self.bandwidth_bytes_per_s)
        nvls = (self.nvls_bandwidth_bytes_per_s, self.nvls_latency_s)
        if (nvls[0] is None) != (nvls[1] is None):
            raise ConfigError(
                "system: give intra_node_nvls_bandwidth and intra_node_nvls_latency together "
                "(an in-switch all-reduce needs both), or neither"
            )
        if nvls[0] is not None:
            _rate("system", "intra_node_nvls_bandwidth", nvls[0])
        if nvls[1] is not None and not (math.isfinite(nvls[1]) and nvls[1] >= 0):
            raise ConfigError(
                f"system: intra_node_nvls_latency must be a finite time >= 0, got {nvls[1]!r} s"
            )
        if not (math.isfinite(self.nvls_chunk_latency_s) and self.nvls_chunk_latency_s >= 0):
            raise ConfigError(
                "system: intra_node_nvls_chunk_latency must be a finite time >= 0, got "
                f"{self.nvls_chunk_latency_s!r} s"
            )
        if self.p2p_channel_bandwidth is not None:
            _rate("system", "intra_node_p2p_channel_bandwidth", self.p2p_channel_bandwidth)
        _fraction("link", "achievable_fraction", self.achievable_fraction)
        if not (math.isfinite(self.latency_s) and self.latency_s >= 0):
            raise ConfigError(
                f"system: *_node_latency must be a finite time >= 0, got {self.latency_s!r} s"
            )
        if self.simple_latency_s is not None and not math.isfinite(self.simple_latency_s):
            raise ConfigError(
                f"system: *_node_simple_latency must be a finite time, got {self.simple_latency_s!r}"
            )
        if self.simple_latency_s is not None and self.simple_latency_s < self.latency_s:
            raise ConfigError(
                f"system: *_node_simple_latency ({self.simple_latency_s!r} s) is the bulk "
                f"protocol's per-step latency and must be >= that link's *_node_latency "
                f"({self.latency_s!r} s); raise it or remove it"
            )
        a2a = (self.all_to_all_latency_s, self.all_to_all_bus_bandwidth)
        if (a2a[0] is None) != (a2a[1] is None):
            raise ConfigError(
                "system: give intra_node_all_to_all_latency and "
                "intra_node_all_to_all_bus_bandwidth together (a measured all-to-all needs "
                "both), or neither"
            )
        if a2a[0] is not None and not (math.isfinite(a2a[0]) and a2a[0] >= 0):
            raise ConfigError("system: intra_node_all_to_all_latency must be a finite time "
                              f">= 0, got {a2a[0]!r} s")  # fmt: skip
        if a2a[1] is not None:
            _rate("system", "intra_node_all_to_all_bus_bandwidth", a2a[1])


def is_capability(text: object) -> bool:
    """Whether ``text`` is an NVIDIA compute capability written major.minor ("9.0")."""
    return (isinstance(text, str) and text.count(".") == 1
            and all(part.isdigit() for part in text.split(".")))  # fmt: skip


def members_per_node(group: int, local: int | None, chips_per_node: int) -> int:
    """Members of a ``group`` of chips inside one node: ``local`` where the group is strided
    over nodes (its given count, at most a node's), else the group packed into nodes."""
    per_node = min(group, chips_per_node)
    return per_node if local is None else max(1, min(per_node, local))


@dataclass(frozen=True, slots=True, kw_only=True)
class System:
    """``n_chips`` identical chips, ``chips_per_node`` to a node; links inside and between nodes."""

    chip: Chip
    n_chips: int = 1
    chips_per_node: int = 8
    intra_node: Link
    inter_node: Link
    # cores a running collective holds (NCCL: one CTA per channel, each alone on its SM);
    # compute beside a collective runs on the rest. 0: collectives on DMA engines.
    collective_cores: int = 0
    # the cores of a ring all-gather or reduce-scatter inside one node where its channel count
    # differs (NCCL: 24 on 8 NVSwitch-connected H100s or A100s, against 16 across nodes and for
    # NVLS all-reduce); None: ``collective_cores``; unused where that is 0
    ring_collective_cores: int | None = None
    # the largest group inside a node on which a runtime's own all-reduce kernel (one-shot or
    # two-shot reads of the peers' buffers: vLLM's custom all-reduce, SGLang's, TensorRT-LLM's,
    # PyTorch's IntraNodeComm) runs: 8 on NVLink/NVSwitch (vLLM's custom_all_reduce.py supports
    # world sizes 2, 4, 6 and 8; TensorRT-LLM's and IntraNodeComm are single-node, at most 8
    # GPUs); 2 where chips share only PCIe (vLLM and SGLang refuse it on more than two PCIe-only
    # GPUs); a larger group reduces through NCCL
    peer_all_reduce_max_group: int = 8
    # the --set items this system was built with (PATH=VALUE), reported with every result
    overrides: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.n_chips, int) or self.n_chips < 1:
            raise ConfigError(f"system: chips must be an integer >= 1, got {self.n_chips!r}")
        if not isinstance(self.chips_per_node, int) or self.chips_per_node < 1:
            raise ConfigError(
                f"system: chips_per_node must be an integer >= 1, got {self.chips_per_node!r}"
            )
        c = self.collective_cores
        if isinstance(c, bool) or not isinstance(c, int) or c < 0:
            raise ConfigError(
                f"chip {self.chip.name!r}: system.collective_cores must be an integer >= 0 "
                f"(0: collectives run on DMA engines), got {c!r}"
            )
        g = self.peer_all_reduce_max_group
        if isinstance(g, bool) or not isinstance(g, int) or g < 1:
            raise ConfigError(
                f"chip {self.chip.name!r}: system.peer_all_reduce_max_group must be an integer "
                f">= 1 (2 for chips joined only by PCIe), got {g!r}"
            )
        r = self.ring_collective_cores
        if r is not None and (isinstance(r, bool) or not isinstance(r, int) or r < 1):
            raise ConfigError(
                f"chip {self.chip.name!r}: system.ring_collective_cores must be an integer >= 1 "
                f"(or left out: collective_cores), got {r!r}"
            )

    def collective_cores_of(self, kind: str, group: int, local: int | None) -> int:
        """The cores a collective of ``kind`` over ``group`` chips (``local`` of them in one
        node; None: packed) holds while it runs: ``ring_collective_cores`` for an all-gather
        or reduce-scatter inside one node where the system gives it, else
        ``collective_cores`` (0, collectives on DMA engines: none of either)."""
        in_node = members_per_node(group, local, self.chips_per_node) >= group
        if (self.collective_cores and self.ring_collective_cores is not None and in_node
                and kind in ("all_gather", "reduce_scatter")):  # fmt: skip
            return self.ring_collective_cores
        return self.collective_cores

    @property
    def collective_main_per_sent(self) -> float:
        """Main-memory bytes a collective moves per byte a chip sends. On the cores (NCCL,
        RCCL: ``collective_cores`` > 0) it stores what arrives to memory and reads it back, and
        reads or writes the user's buffers: 3 (NCCL maintainer S. Jeaugey,
        github.com/NVIDIA/nccl/issues/1428: "300GB/s needs to be multiplied by at least 2x for
        memory bandwidth ... If you add reading from or writing to user data, it can be 3x";
        there an A100's GEMMs beside an all-gather ran 1.76x longer). On DMA engines the
        sender's engine reads the user's buffer and the receiver's writes it: 2."""
        return 3.0 if self.collective_cores else 2.0

    @property
    def name(self) -> str:
        return f"{self.n_chips}x {self.chip.name}"

    def describe(self) -> dict:
        """The ``system`` entry of a result's JSON."""
        return {
            "name": self.name,
            "chip": self.chip.name,
            "n_chips": self.n_chips,
            "chips_per_node": self.chips_per_node,
            "overrides": list(self.overrides),
        }
