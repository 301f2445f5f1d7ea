"""The op record every workload lowers to: shapes, dtype, exact FLOPs and bytes per tensor role."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from typing import Any

import numpy as np


class WorkloadError(ValueError):
    """A workload that cannot be lowered as asked; the message is one line naming the field."""


def check_ints(where: str, minimum: int = 1, **fields: object) -> None:
    """Each field an integer (not a bool) >= ``minimum``; else WorkloadError naming it."""
    for name, value in fields.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise WorkloadError(f"{where}: {name} must be an integer >= {minimum}, got {value!r}")


def check_flags(where: str, **fields: object) -> None:
    """Each field a bool; else WorkloadError naming it."""
    for name, value in fields.items():
        if not isinstance(value, bool):
            raise WorkloadError(f"{where}: {name} must be true or false, got {value!r}")


def check_choice(where: str, name: str, value: object, choices: tuple[str, ...]) -> None:
    """``value`` one of ``choices``; else WorkloadError naming the field and the choices."""
    if value not in choices:
        raise WorkloadError(f"{where}: {name} must be one of {', '.join(choices)}, got {value!r}")


class Role(StrEnum):
    """What a tensor is, for memory placement and for the per-role byte counts."""

    WEIGHT = "weight"
    ACTIVATION = "activation"
    KV = "kv"
    GRADIENT = "gradient"
    OPTIMIZER = "optimizer"


class OpKind(StrEnum):
    GEMM = "gemm"
    ATTENTION = "attention"
    ELEMENTWISE = "elementwise"
    COLLECTIVE = "collective"


@dataclass(frozen=True, slots=True, kw_only=True)
class Gemm:
    """``groups`` independent products C[m, n] = A[m, k] @ B[k, n] (groups > 1: batched/grouped).

    ``m`` may be fractional for grouped expert GEMMs (mean tokens per active expert).
    """

    m: float
    n: int
    k: int
    groups: int = 1
    a_bytes: float = 2.0  # bytes per element of A (activations)
    b_bytes: float = 2.0  # bytes per element of B (weights)
    c_bytes: float = 2.0  # bytes per element of C (output)
    # fp8 partial sums promoted to fp32 every few MMAs (no fast accumulation): Transformer
    # Engine's dgrad and wgrad GEMMs (chip.split_accumulate_fraction)
    split_accumulate: bool = False
    # written with the warp-level mma.sync instruction (Marlin's weight-only kernels): at the
    # chip's mma_sync_fraction of peak where its newer path is faster (Hopper)
    mma_sync: bool = False
    # routed expert GEMMs: each group's rows are the tokens, of ``routed_tokens``, that chose
    # its expert, each with probability ``routed_p`` (top-k of E under uniform routing: k/E),
    # so they vary from expert to expert and a grouped kernel pads each expert's rows to whole
    # tiles (``sim.cost.roofline._routed_tiles``); ``m`` stays the mean over the ``groups``
    # experts that got tokens. 0: every group has exactly ``m`` rows
    routed_tokens: float = 0.0
    routed_p: float = 0.0
    # the kernel's thread-block structure (Gemm of a library that has the chip's tiles and its
    # clusters, ``compute.cluster``, where it has them: cuBLAS, CUTLASS 3.x); ``clusters``
    # False: one CTA per output tile, each loading its own operand tiles through L2, no
    # multicast (Triton kernels launch no clusters); ``pow2_blocks``: the tile's sides are
    # powers of two (Triton's tl.arange spans a power of two: vLLM's fused-MoE configs take
    # BLOCK_SIZE_M 16-256 and BLOCK_SIZE_N 32-256), a routed GEMM's M block 16 to the chip's
    # tile; ``pointer_loads``: the kernel loads its operand tiles with pointer loads (cp.async),
    # not a tensor memory accelerator (vLLM's Triton fused MoE; ``sim.cost.roofline``
    # _POINTER_LOADS)
    clusters: bool = True
    pow2_blocks: bool = False
    pointer_loads: bool = False
    # each output tile's prologue and epilogue are exposed: a kernel that runs one program per
    # output tile (no persistent loop, no warp specialization) waits for its first operands
    # before any math and stores its output after the last (Triton's tl.dot kernels: vLLM's
    # and SGLang's fused MoE), where cuBLAS and CUTLASS 3.x on Hopper and Blackwell load the
    # next tile's operands and store the last tile's output beside the math
    # (``sim.cost.roofline.cost_gemms``)
    tile_exposed: bool = False
    # fp8 with fine-grained block scales (DeepSeek-V3's 1 x 128 activation groups and 128 x 128
    # weight blocks) on matrix units without block-scaled MMA: each 128-deep K block's partial
    # product is scaled and added into fp32 accumulators on the vector units. ``promotion``:
    # the vector instructions an output element takes per 128-deep block in series with the
    # MMAs, by kernel (``BLOCK_FP8_PROMOTION``); 0: none, or hidden behind the MMAs (DeepGEMM)
    promotion: float = 0.0
    # a block-scaled fp8 GEMM's kernel (``BLOCK_FP8_KERNELS``) on a chip whose compute capability
    # is not in ``block_native`` (a chip that is not an NVIDIA GPU among them), where the engine's
    # own kernel does not build and it runs this one instead (``Runtime.block_fp8_fallback``;
    # resolved per chip at cost time by ``for_chip``); "": the same kernel on every chip
    block_fallback: str = ""
    block_native: tuple[str, ...] = ()
    # a kernel with one tile shape (M x N), scheduled persistently over it: no split-K, no
    # stream-K, no GEMV path and no cut tile (``BLOCK_FP8_TILE``); (0, 0): the library's tiles
    tile: tuple[int, int] = (0, 0)


#: the vector instructions a block-scaled fp8 GEMM kernel spends on each output element per
#: 128-deep K block in series with its matrix instructions (``Gemm.promotion``), read from the
#: kernels' code: Triton's tl.dot kernels (vLLM's and SGLang's w8a8_block_fp8_matmul and fused
#: MoE: ``acc += tl.dot(a, b) * a_scale[:, None] * b_scale[None, :]``, a multiply and a fused
#: multiply-add, after waiting for the dot) 2; CUTLASS 3.x's SM90 blockwise mainloop 1 (its
#: GmmaFP8Accumulation::scale_core: ``warpgroup_wait<0>()``, then ``accum += temp * scale`` per
#: element, the row x column scale product formed once per row; both consumer warpgroups of
#: the cooperative kernel wait on the same stage, so neither hides the other's, include/cutlass/
#: gemm/collective/fp8_accumulation.hpp); DeepGEMM 0 (its FFMA promotion interleaved with the
#: WGMMAs, and TensorRT-LLM's fp8_blockscale_gemm built on it)
BLOCK_FP8_PROMOTION = {"deepgemm": 0.0, "cutlass": 1.0, "triton": 2.0}
BLOCK_FP8_KERNELS = tuple(BLOCK_FP8_PROMOTION)
#: the one tile a block-scaled fp8 kernel runs, where its dispatch has one (``Gemm.tile``):
#: vLLM's SM90 CUTLASS blockwise kernel is one hard-coded configuration, TileShape 128 x 128 x
#: 128 under the cooperative warp-specialized schedule with the default persistent tile
#: scheduler ("// TODO: better heuristics", csrc/quantization/cutlass_w8a8/c3x/
#: scaled_mm_blockwise_sm90_fp8_dispatch.cuh, cutlass_gemm_blockwise_sm90_fp8_dispatch), and
#: sgl-kernel's copy the same tile (sm90_fp8_blockwise_dispatch_shape; NB its later versions
#: take a stream-K scheduler where K > 3 N, not modelled). Fewer rows than 128 are padded to it
BLOCK_FP8_TILE = {"cutlass": (128, 128)}


def triton_gemm(g: Gemm, promotion: float = 0.0) -> Gemm:
    """``g`` as a Triton ``tl.dot`` kernel runs it: one CTA per output block and no clusters,
    power-of-two blocks, each block's first loads and its output store exposed, operands by
    pointer loads (vLLM's and SGLang's fused MoE and block-fp8 GEMM), ``promotion`` its
    block-scale promotion."""
    return replace(g, clusters=False, pow2_blocks=True, tile_exposed=True, pointer_loads=True,
                   promotion=promotion, tile=(0, 0))  # fmt: skip


def block_fp8_gemm(g: Gemm, kernel: str) -> Gemm:
    """``g`` with DeepSeek-style block scales (128 x 128 weight blocks, 1 x 128 activation
    groups) run by ``kernel`` (``BLOCK_FP8_KERNELS``): its promotion, its one tile where it has
    one (``BLOCK_FP8_TILE``), and a Triton kernel's structure."""
    promotion = BLOCK_FP8_PROMOTION[kernel]
    if kernel == "triton":
        return triton_gemm(g, promotion)
    # a library-structured kernel: clusters, its tiles, nothing exposed (whatever ran before)
    return replace(g, clusters=True, pow2_blocks=False, tile_exposed=False, pointer_loads=False,
                   promotion=promotion, tile=BLOCK_FP8_TILE.get(kernel, (0, 0)))  # fmt: skip


def for_chip(ops: list[Op], compute_capability: str) -> list[Op]:
    """``ops`` as they run on a chip of ``compute_capability`` ("": not an NVIDIA GPU): a
    block-scaled fp8 GEMM whose engine's kernel does not build there (``Gemm.block_native``)
    takes its fallback kernel's promotion and structure (``Gemm.block_fallback``)."""

    def moved(g: Gemm | None) -> bool:
        return g is not None and bool(g.block_fallback) and compute_capability not in g.block_native

    if not any(moved(op.gemm) for op in ops):
        return ops
    return [replace(op, gemm=block_fp8_gemm(op.gemm, op.gemm.block_fallback))  # type: ignore[union-attr]
            if moved(op.gemm) else op for op in ops]  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class Attention:
    """Fused (flash) attention of ``q_len`` queries over ``kv_len`` keys per sequence.

    ``kv_bytes_per_token`` is what one cached token costs to read per KV head group (K and V
    together; for MLA the shared latent). Causal prefill computes only the lower triangle.
    """

    batch: int
    n_q_heads: int
    n_kv_heads: int
    q_len: int
    kv_len: int
    qk_dim: int
    v_dim: int
    causal: bool
    act_bytes: float
    kv_bytes_per_token: float  # per kv head
    backward: bool = False  # the training backward kernel (dQ, dK, dV), see sim/cost/roofline.py
    kernel: str = "native"  # "native": the chip's fastest fused kernel; "fa2": FlashAttention-2
    # attention with sinks (``ModelConfig.attention_sinks``) under a runtime whose default kernel
    # takes none on some chips (``Runtime.sinks_kernel``): the kernel it runs on a chip whose
    # compute capability is not among ``sinks_native`` ("": ``kernel`` everywhere)
    sinks_kernel: str = ""
    sinks_native: tuple[str, ...] = ()
    # decode rows attended in one call with a serving step's prompt chunks (a unified kernel
    # then runs its prefill form: vLLM's Triton attention picks its 2D kernel)
    mixed: bool = False
    # sliding-window attention (causal): each query sees the ``window`` latest keys, itself
    # included (0: every key before it)
    window: int = 0
    # K/V read through the KV cache's page table (the runtime's ``paged_prefill``): a native
    # kernel that would feed its tiles by the chip's tensor memory accelerator gathers them by
    # pointer loads instead (FlashAttention-3's paged path below its TMA page size)
    paged: bool = False

    @property
    def score_pairs(self) -> Any:
        """Query-key pairs computed per (sequence, q head)."""
        if self.causal:
            # queries at positions kv_len - q_len .. kv_len - 1 see prefix + themselves (at
            # most the window)
            return causal_pairs(self.q_len, self.kv_len, self.window)
        return self.q_len * self.kv_len * 1.0

    @property
    def kv_read_len(self) -> Any:
        """Cached tokens the call reads (``window_span``)."""
        return window_span(self.q_len, self.kv_len, self.window if self.causal else 0)


def window_span(q_len: Any, kv_len: Any, window: Any) -> Any:
    """Cached tokens ``q_len`` causal queries over ``kv_len`` keys reach: all of them, or under a
    sliding ``window`` (0: none) the ``window + q_len - 1`` latest; numbers or arrays."""
    if not np.any(window):
        return kv_len
    span = np.where(window > 0, np.minimum(kv_len, window + q_len - 1), kv_len)
    return span if np.ndim(span) else span.item()


def causal_pairs(q_len: Any, kv_len: Any, window: Any = 0) -> Any:
    """Query-key pairs of ``q_len`` causal queries at positions kv_len - q_len .. kv_len - 1,
    each seeing the keys up to itself, at most ``window`` of them (0: no window); numbers or
    arrays. sum_{p} min(p + 1, window) = S(kv_len) - S(kv_len - q_len), S(x) = sum_1^x min(j, w)."""
    full = q_len * (kv_len - q_len) + q_len * (q_len + 1) / 2
    if not np.any(window):
        return full

    def upto(x: Any) -> Any:
        return np.where(
            x <= window, x * (x + 1) / 2, window * (window + 1) / 2 + window * (x - window)
        )

    pairs = np.where(window > 0, upto(kv_len) - upto(kv_len - q_len), full)
    return pairs if np.ndim(pairs) else float(pairs)


# the attention kernels a workload can name: the chip's native fused kernel (FlashAttention-3 /
# cuDNN on Hopper), FlashAttention-2 (the warp-level MMA path everywhere); for inference
# "mmha", the decode kernel of FasterTransformer / TensorRT-LLM before XQA (and of vLLM's
# PagedAttention v1/v2): one thread block per query head, the dot products on the CUDA cores,
# so a GQA group's query heads each read their K/V (prefill runs the native fused kernel); or -
# for training - the pre-flash "unfused" attention of 2020-22 Megatron-LM: batched QK^T and PV
# GEMMs with the score matrix written to memory and a fused scale-mask-softmax kernel between;
# or - for inference - "triton", vLLM's Triton unified attention (its TRITON_ATTN backend): a
# program per 16 rows of packed query heads and tokens, streaming its K/V span in tiles of 32
# keys on the warp-level MMA path (``sim.cost.roofline.cost_attentions``)
ATTENTION_KERNELS = ("native", "fa2", "mmha", "unfused", "triton")


def check_attention_kernel(
    where: str, kernel: str, training: bool = False, decode: bool = True
) -> None:
    """``training``: the unfused kernel is allowed, mmha not; ``decode``: mmha is allowed;
    inference also takes unfused (eager matmul-softmax-matmul, as Hugging Face's 'eager'
    attention) where ``decode`` (an LLM; not a DiT)."""
    allowed = (("native", "fa2", "unfused") if training
               else ("native", "fa2", "mmha", "unfused", "triton"))  # fmt: skip
    if not decode:
        allowed = tuple(k for k in allowed if k not in ("mmha", "unfused", "triton"))
    if kernel not in allowed:
        raise WorkloadError(
            f"{where}: --attention-kernel must be one of {', '.join(allowed)}, got {kernel!r}"
        )


#: who runs a collective: NCCL/RCCL (""), or DeepEP's own kernels
COLLECTIVE_LIBRARIES = ("", "deepep")


@dataclass(frozen=True, slots=True, kw_only=True)
class Collective:
    """A collective over ``group`` chips; ``bytes`` is the per-chip message (the full buffer)."""

    kind: str  # all_reduce | all_gather | reduce_scatter | all_to_all | send_recv
    bytes: float
    group: int
    local: int | None = (
        None  # members of the group inside one node (None: packed, min(group, node))
    )
    # an all-reduce inside one node by the runtime's own kernel (``workloads.runtime``: vLLM's,
    # TensorRT-LLM's, PyTorch's IntraNodeComm) instead of NCCL: its measured time per call and
    # bus bandwidth; 0 = NCCL
    custom_latency_s: float = 0.0
    custom_bus_bandwidth: float = 0.0
    # whether NCCL may reduce in the switch (NVLS) where the link has it: false where the
    # runtime turns it off (``workloads.runtime.Runtime.nccl_nvls``)
    nvls: bool = True
    # the library whose kernels run it where it is not NCCL's (RCCL's) collective: "deepep"
    # (DeepEP's dispatch and combine, its own NVLink and RDMA copies), costed on the links'
    # alpha-beta model, not the link's measured NCCL all-to-all (COLLECTIVE_LIBRARIES)
    library: str = ""
    # the cores its kernels hold while compute runs beside it (0: the system's collective_cores)
    cores: int = 0
    # a point-to-point transfer (send_recv): the size of the communicator it runs in (NCCL
    # gives a peer fewer channels in a larger one: ``sim.cost.collectives.p2p_channels``; 0: the
    # group) and how many equal messages ``bytes`` carries one after another (a context-
    # parallel ring's cp - 1 hops in one op: each message is ``bytes / messages``)
    comm: int = 0
    messages: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.comm, bool) or not isinstance(self.comm, int) or self.comm < 0:
            raise WorkloadError(f"collective comm must be a whole number of ranks >= 0 (0: the "
                                f"group), got {self.comm!r}")  # fmt: skip
        if (
            isinstance(self.messages, bool)
            or not isinstance(self.messages, int)
            or self.messages < 1
        ):
            raise WorkloadError(f"collective messages must be a whole number >= 1, got "
                                f"{self.messages!r}")  # fmt: skip
        if self.library not in COLLECTIVE_LIBRARIES:
            raise WorkloadError(f"collective library must be one of "
                                f"{', '.join(map(repr, COLLECTIVE_LIBRARIES))}, got {self.library!r}")  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class Op:
    """One kernel (or collective) on one chip, repeated ``count`` times (e.g. once per layer).

    ``flops`` are the FLOPs the chip executes (multiply-add = 2); ``model_flops`` the part that
    counts toward MFU (matmul and attention math; 0 for norms and elementwise). ``bytes`` is the
    minimum traffic per tensor role (each tensor read or written once); the roofline's tiling
    model decides how much more a given chip really moves. Timing never lives on the op.
    ``overlaps_previous`` marks work on another stream (a link) that runs beside the op before
    it: the share of that op's time it can hide behind (1: all of it; a ring's n - 1 K/V hops
    beside its n attention calls hide behind n - 1 of them, the last call waiting for the last
    hop), only the part longer than that is exposed. ``recompute`` marks forward work re-run
    for the backward (activation recomputation): its ``model_flops`` are 0, its ``flops`` count
    toward hardware FLOPs utilisation (HFU). ``host_s`` is host time the chip waits for
    (``workloads.runtime``): a step's host work without a kernel the op takes whole; an eager
    op's launches run ahead of the chip, so its wait is its share of the part of the ops'
    summed launch time their chip time does not cover (``sim.cost.roofline._host_floor``). ``host_beside_s`` is host work that
    runs while the chip runs the other ops of the step (asynchronous output processing): the op
    takes longer only by the part of it longer than their total time. ``scalar_kernels`` are
    (cycles summed over cores, bytes) of each of the op's kernels (or group of kernels alike)
    whose per-element work may bind before its bytes: each takes the longer of its bytes' transfer and its cycles spread over
    the cores at the clock, the op's other kernels their bytes'
    (``sim.cost.roofline.cost_elementwise``).
    """

    name: str
    kind: OpKind
    family: str  # attention | mlp | moe | norm | embedding | head | communication | other
    dtype: str
    flops: float
    model_flops: float
    bytes: dict[Role, float] = field(default_factory=dict)
    gemm: Gemm | None = None
    attention: Attention | None = None
    collective: Collective | None = None
    count: int = 1
    kernels: int = 1  # kernel launches per instance (an eager-mode op is several primitives)
    overlaps_previous: float = 0.0  # share of the op before it that it runs beside (ring K/V)
    recompute: bool = False  # re-run of forward work for the backward: in HFU, not in MFU
    # host time to issue the op's kernels (eager launches, a step's scheduling: workloads.runtime);
    # launches run ahead of the chip (sim.cost.roofline._host_floor)
    host_s: float = 0.0
    # host work beside the step's chip work: only the part longer than the other ops is exposed
    host_beside_s: float = 0.0
    # (core clock cycles summed over the chip's cores, bytes) of each of the op's kernels (or
    # group of kernels alike) that per-element work may bind before their bytes do (eager
    # PyTorch's unvectorised kernels: workloads.build.scalar); their bytes are part of ``bytes``
    scalar_kernels: tuple[tuple[Any, Any], ...] = ()

    @property
    def total_bytes(self) -> float:
        return sum(self.bytes.values())

    def repeated(self, times: int, prefix: str = "") -> Op:
        """This op ``times`` times as often (once per layer, say), named ``prefix.name``."""
        count = self.count * times
        return self._with({"count": count, "name": f"{prefix}.{self.name}"} if prefix
                          else {"count": count})  # fmt: skip

    def but(self, **changes: Any) -> Op:
        """This op with ``changes`` to its fields: ``dataclasses.replace`` without its
        ``__init__`` round trip (an Op has no ``__post_init__`` to run), for the lowering's hot
        paths that re-mark every op of a step."""
        unknown = changes.keys() - _OP_FIELD_SET
        if unknown:
            raise TypeError(f"Op has no field(s) {', '.join(sorted(unknown))}")
        return self._with(changes)

    def _with(self, changes: dict[str, Any]) -> Op:
        """A copy with ``changes`` (known field names), field by field."""
        new = object.__new__(Op)
        for name in _OP_FIELDS:
            object.__setattr__(new, name, changes[name] if name in changes else getattr(self, name))
        return new


_OP_FIELDS = tuple(f.name for f in fields(Op))
_OP_FIELD_SET = frozenset(_OP_FIELDS)


# ---- ops over arrays of points (workloads lowered with numpy arrays for batch, context ...) ----
def point_arrays(x: Any) -> list[np.ndarray]:
    """The arrays inside ``x`` (an op, a list of ops, a graph): one entry per point each."""
    if isinstance(x, np.ndarray):
        return [x] if x.ndim else []
    if isinstance(x, tuple | list):
        return [v for item in x for v in point_arrays(item)]
    if isinstance(x, dict):
        return [v for item in x.values() for v in point_arrays(item)]
    if hasattr(x, "__dataclass_fields__"):
        return [v for f in fields(x) for v in point_arrays(getattr(x, f.name))]
    return []


def take_points(x: Any, idx: Any) -> Any:
    """``x`` at the points ``idx`` (indices or a mask): every array inside it indexed."""
    if isinstance(x, np.ndarray):
        return x[idx] if x.ndim else x
    if isinstance(x, tuple | list):
        return type(x)(take_points(v, idx) for v in x)
    if isinstance(x, dict):
        return {k: take_points(v, idx) for k, v in x.items()}
    if hasattr(x, "__dataclass_fields__"):
        changed = {f.name: take_points(getattr(x, f.name), idx) for f in fields(x) if f.init}
        return replace(x, **changed)
    return x
