"""Lower LLM decode and prefill steps to per-chip ops with exact FLOPs and bytes.

Conventions (checked in tests/test_llm_lowering.py):
- A GEMM C[m,n] = A[m,k] B[k,n] costs 2·m·n·k FLOPs; its minimum traffic is A + B + C once.
- Attention of q queries over kv keys costs 2·pairs·(qk_dim + v_dim) FLOPs per head, with
  pairs = q·kv, or for causal prefill the lower triangle q·(q+1)/2 that a flash kernel computes.
  So forward FLOPs per token = 2·N_matmul + attention, the closed form of Kaplan et al. 2020
  (Table 1) with the causal half made explicit.
- Tensor parallelism (Megatron-LM, Shoeybi et al. 2019, Sec. 3): QKV and up/gate split by
  columns, output and down projections by rows, one all-reduce after each; the LM head is split
  over the vocabulary. When TP exceeds the KV heads, KV heads are replicated (as vLLM does).
- MoE decode touches E·(1 − (1 − k/E)^T) distinct experts for T tokens routed top-k uniformly:
  the expected count, not all E and not just k.
- Batch, context and prompt may be integer numpy arrays (one entry per point of a sweep): the
  op list keeps its structure and every shape, FLOP and byte count becomes an array, so a grid
  of batch x context is costed in one pass (``OpGraph.take`` selects points).
- MLA (DeepSeek-V2, Liu et al. 2024, Sec. 2.1.2; DeepSeek-V3 report Sec. 2.1.1): decode uses the
  weight-absorbed form (attention over the cached 512-d latent + 64-d rope key as a single KV
  head, per-head absorption GEMMs before and after); prefill uses the plain form (K and V
  up-projected, 192-d keys and 128-d values per head). The latent cache is replicated across TP.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from hardware.chip import dtype_bytes
from workloads.build import (
    EAGER_PRIMITIVES,
    STRIDED,
    Builder,
    eager_without_residual,
    fp8_input,
    routed,
    scalar,
    scalar_per,
)
from workloads.model import ModelConfig
from workloads.ops import (
    Attention,
    Op,
    OpKind,
    Role,
    WorkloadError,
    block_fp8_gemm,
    check_attention_kernel,
    point_arrays,
    take_points,
    triton_gemm,
    window_span,
)
from workloads.runtime import SAMPLINGS, Runtime, all_reduces, launch, load_runtime, step_op

# Non-matmul FLOPs per element, counted on the vector units (small next to matmuls).
# NB: an approximation of the instruction mix, not a measurement; they never bind on real chips.
_NORM_FLOPS = {"rmsnorm": 4, "layernorm": 7}  # square, sum, scale, weight (+ mean, shift, bias)
_ACT_FLOPS = {
    "silu": 5,
    "gelu": 8,
    "relu": 1,
    "relu2": 2,
}  # sigmoid ~4 + multiply; tanh-gelu ~8; relu²
_ROPE_FLOPS = 3  # a rotation: 2 multiplies + 1 add per element
_QUANT_FLOPS = 3  # an fp8 cast: |x| and the group's max, then the scaled cast per element
# linears that stay 16-bit in an fp8 model (vLLM and SGLang build the MoE gate and the LM head
# without the quant config; the MLA absorption products are 16-bit bmm, and vLLM 0.7 keeps the
# RoPE part of a premultiplied W_Q in 16 bits)
_UNQUANTISED = ("router", "lm_head", "q_absorb", "v_absorb", "q_rope_proj")
#: the float formats whose checkpoints keep those layers 16-bit (ModelOpt and vLLM fp8 / NVFP4:
#: lm_head and the gate excluded from quantisation); weight-only int8 / int4 (gpt-fast's
#: handlers) quantise the LM head too
_LOW_FLOAT = ("fp8", "fp4")
#: Marlin's MoE kernel takes a linear only where n % 256 == 0 and k % 128 == 0, so vLLM's
#: MXFP4 experts under Marlin are stored padded: each chip's intermediate size (the up
#: projection's n / 2 and the down projection's k) to a multiple of 128, the hidden size (the up
#: projection's k, the down projection's n) to a multiple of 256, zeros the GEMMs still read and
#: multiply (vllm/model_executor/layers/quantization/mxfp4.py, Mxfp4MoEMethod.create_weights,
#: the MARLIN backend, vLLM 0.10.1-0.11: "The moe marlin kernel requires that for each linear
#: n % 256 == 0 and k % 128 == 0"). gpt-oss's 2880 becomes 2944 x 3072, and vLLM logs
#: "Model loading took 65.9651 GiB" for gpt-oss-120b on one H100 (vllm-project/vllm issue #23278,
#: 0.10.1, Marlin): roofsim holds 65.84 GiB padded (60.71 GiB unpadded), its experts' biases at
#: the experts' 4.25 bits where vLLM keeps them 16-bit (~0.06 GiB more: 65.90)
_MARLIN_MOE_ALIGN = {"hidden": 256, "ffn": 128}
_INFER_DTYPES = ("fp32", "bf16", "fp16", "fp8", "fp4", "int8", "int4")


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryNeed:
    """Bytes one chip must hold for the workload."""

    weights_bytes: float
    kv_cache_bytes: float
    activation_bytes: float

    @property
    def total_bytes(self) -> float:
        return self.weights_bytes + self.kv_cache_bytes + self.activation_bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class OpGraph:
    """A workload lowered for one chip: ops in execution order (``count`` repeats each)."""

    ops: tuple[Op, ...]
    n_chips: int  # chips doing this work in parallel (TP x DP), each the same ops
    tokens: float  # tokens produced (decode) or processed (prefill) by all chips per step
    memory: MemoryNeed
    describe: dict = field(default_factory=dict)
    _points: int = field(init=False, default=0, repr=False, compare=False)

    @property
    def points(self) -> int:
        """How many points the graph holds (1 unless it was lowered over arrays)."""
        if not self._points:
            arrays = point_arrays((self.ops, self.tokens, self.memory))
            object.__setattr__(self, "_points", max([1, *(np.size(v) for v in arrays)]))
        return self._points

    def take(self, idx: Any) -> OpGraph:
        """The graph of the points ``idx`` (indices or a mask) of a graph lowered over arrays."""
        return take_points(self, idx)


def check_counts(where: str, flag: str, value: Any) -> None:
    """An integer >= 1, or an integer array of them (a sweep's points); else WorkloadError."""
    if isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in "iu":
        bad = value[value < 1]
        if len(bad):
            raise WorkloadError(f"{where}: {flag} must be an integer >= 1, got {int(bad[0])}")
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise WorkloadError(f"{where}: {flag} must be an integer >= 1, got {value!r}")


#: the quantisers' default group size for weight-only int4 (gpt-fast's group_quantize_tensor,
#: AutoAWQ's and AutoGPTQ's q_group_size / group_size, torchao's int4_weight_only: 128)
INT4_GROUP = 128


def int4_metadata_bytes(group: int | None, group_bytes: float) -> float:
    """Bytes per weight of a group-quantised int4 checkpoint's scales and zero points: each
    group of ``group`` weights along K of a column (None: ``INT4_GROUP``) carries
    ``group_bytes`` (the runtime's layout, ``Runtime.int4_group_bytes``): gpt-fast's G=32 with a
    bf16 scale and a bf16 zero adds 4 / 32 = 0.125 bytes to the 0.5 of the weight."""
    return group_bytes / (group or INT4_GROUP)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Common:
    model: ModelConfig
    batch: int = 1
    dtype: str = "bf16"
    kv_dtype: str | None = None
    tp: int = 1
    dp: int = 1
    # workloads.ops.ATTENTION_KERNELS; None: the runtime's, else native (native attention with
    # sinks runs the runtime's sinks kernel where the chip's default takes none)
    attention_kernel: str | None = None
    runtime: Runtime = field(default_factory=load_runtime)  # the software (workloads.runtime)
    pp: int = 1  # pipeline stages: the layers split over pp chips (each TP-wide)
    ep: int = 1  # expert parallelism: the experts sharded over ep of the dp replicas
    sampling: str = "greedy"  # greedy | random | top-p | none (runtime.SAMPLINGS): the sampler
    # weight-only int4: weights per quantisation group along K (the quantiser's group size;
    # None: INT4_GROUP), each group of a column carrying the runtime's scale (and zero point)
    int4_group: int | None = None

    def __post_init__(self) -> None:
        if self.attention_kernel is None:
            kernel = self.runtime.default_attention_kernel
            object.__setattr__(self, "attention_kernel", kernel)

    def _validate(self, where: str) -> None:
        check_attention_kernel(where, self.attention_kernel)
        check_counts(where, "--batch", self.batch)
        if self.sampling not in SAMPLINGS:
            raise WorkloadError(f"{where}: --sampling must be one of {', '.join(SAMPLINGS)}, "
                                f"got {self.sampling!r}")  # fmt: skip
        if self.dtype not in _INFER_DTYPES:
            raise WorkloadError(
                f"{where}: --dtype must be one of {', '.join(_INFER_DTYPES)}, got {self.dtype!r}"
            )
        if self.int4_group is not None:
            if self.dtype != "int4":
                raise WorkloadError(f"{where}: --int4-group is the group size of a weight-only "
                                    f"int4 checkpoint; it needs --dtype int4, got {self.dtype!r}")  # fmt: skip
            g = self.int4_group
            if isinstance(g, bool) or not isinstance(g, int) or g < 1:
                raise WorkloadError(f"{where}: --int4-group must be a whole number of weights "
                                    f"per scale group >= 1 (32, 64, 128), got {g!r}")  # fmt: skip
        if self.kv_dtype is not None and self.kv_dtype not in _INFER_DTYPES:
            raise WorkloadError(
                f"{where}: --kv-dtype must be one of {', '.join(_INFER_DTYPES)}, got {self.kv_dtype!r}"
            )
        if not isinstance(self.tp, int) or self.tp < 1:
            raise WorkloadError(f"{where}: --tp must be an integer >= 1, got {self.tp!r}")
        if not isinstance(self.pp, int) or self.pp < 1:
            raise WorkloadError(f"{where}: --pp must be an integer >= 1, got {self.pp!r}")
        if self.pp > self.model.n_layers:
            raise WorkloadError(
                f"{where}: --pp {self.pp} exceeds the {self.model.n_layers} layers of "
                f"{self.model.name}; choose at most {self.model.n_layers} stages"
            )
        if not isinstance(self.ep, int) or self.ep < 1:
            raise WorkloadError(f"{where}: --ep must be an integer >= 1, got {self.ep!r}")
        if self.ep > 1:
            if self.model.moe is None:
                raise WorkloadError(f"{where}: --ep {self.ep} needs an MoE model; "
                                    f"{self.model.name} is dense")  # fmt: skip
            if self.dp % self.ep:
                raise WorkloadError(
                    f"{where}: --ep {self.ep} must divide the {self.dp} replicas (--chips / "
                    "(--tp x --pp)): the experts are sharded over replicas that share them"
                )
            if self.model.moe.n_experts % self.ep:
                raise WorkloadError(f"{where}: --ep {self.ep} must divide the "
                                    f"{self.model.moe.n_experts} experts of {self.model.name}")  # fmt: skip
        if not isinstance(self.dp, int) or self.dp < 1:
            raise WorkloadError(f"{where}: data-parallel replicas must be >= 1, got {self.dp!r}")
        m = self.model
        if m.n_heads % self.tp:
            options = [t for t in range(1, m.n_heads + 1) if m.n_heads % t == 0 and t <= 64]
            raise WorkloadError(
                f"{where}: --tp {self.tp} must divide the {m.n_heads} attention heads of "
                f"{m.name}; choose one of {', '.join(map(str, options))}"
            )
        if m.n_kv_heads % self.tp and self.tp % m.n_kv_heads:
            raise WorkloadError(
                f"{where}: --tp {self.tp} must divide, or be a multiple of, the {m.n_kv_heads} KV "
                f"heads of {m.name}"
            )
        uneven = np.asarray(self.batch)[np.asarray(self.batch) % self.dp != 0]
        if len(uneven.reshape(-1)):
            raise WorkloadError(
                f"{where}: --batch {int(uneven.reshape(-1)[0])} must divide evenly over "
                f"{self.dp} replicas (--chips / --tp)"
            )

    @property
    def weight_bytes(self) -> float:
        """Bytes a weight takes: the dtype's, plus for weight-only int4 its group's share of the
        quantisation metadata stored beside it (``int4_metadata_bytes``)."""
        b = dtype_bytes(self.dtype)
        if self.dtype == "int4":
            b += int4_metadata_bytes(self.int4_group, self.runtime.int4_group_bytes)
        return b

    @property
    def expert_weight_bytes(self) -> float:
        """Bytes of a routed expert's weight: the checkpoint's expert format where it stores the
        experts more compactly than --dtype (gpt-oss's MXFP4 experts under a 16-bit or fp8
        run), else --dtype's."""
        moe = self.model.moe
        if moe is None or not moe.weight_format:
            return self.weight_bytes
        return min(self.weight_bytes, moe.weight_bytes)

    @property
    def act_bytes(self) -> float:
        """Activations stay 16-bit when weights are 8-bit or 4-bit (W8A16 / FP8 GEMM outputs)."""
        return 4.0 if self.dtype == "fp32" else 2.0

    @property
    def kv_bytes(self) -> float:
        if self.kv_dtype is not None:
            return dtype_bytes(self.kv_dtype)
        return self.act_bytes

    @property
    def compute_dtype(self) -> str:
        """Matrix-unit dtype: weight-only int4 runs its math in bf16."""
        return "bf16" if self.dtype == "int4" else self.dtype

    @property
    def local_batch(self) -> int:
        return self.batch // self.dp

    @property
    def stage_layers(self) -> int:
        """Layers on the fullest pipeline stage."""
        return -(-self.model.n_layers // self.pp)

    @property
    def stage_share(self) -> float:
        """The fullest stage's share of the layers (1 without pipelining)."""
        return self.stage_layers / self.model.n_layers

    @property
    def n_chips(self) -> int:
        return self.tp * self.pp * self.dp

    def expert_shape(self, padded: bool = True) -> tuple[int, int]:
        """(hidden, intermediate) of one routed expert's GEMMs on one chip, as the runtime
        stores the expert: the intermediate size split over TP, both padded where the kernel
        needs it (``_MARLIN_MOE_ALIGN``: an expert format such as MXFP4 on a Marlin runtime;
        NB: vLLM's int4 GPTQ / AWQ MoE checkpoints do not pad, they take another kernel where
        Marlin cannot run them, and keep their shape here). ``padded`` false: the model's."""
        m = self.model
        assert m.moe is not None
        hidden, ffn = m.hidden, math.ceil(m.moe.expert_ffn / self.tp)
        if (
            padded
            and self.runtime.weight_only_kernel == "marlin"
            and self.expert_weight_bytes != self.weight_bytes
        ):
            a = _MARLIN_MOE_ALIGN
            hidden, ffn = -(-hidden // a["hidden"]) * a["hidden"], -(-ffn // a["ffn"]) * a["ffn"]
        return hidden, ffn

    def resident_weight_bytes(self) -> float:
        """Weights one chip holds: sharded over TP except norms (and MLA down-projections)."""
        m = self.model
        replicated = (2 * m.n_layers + 1) * m.norm_params()
        if m.mla is not None:
            replicated += (
                m.n_layers
                * m.hidden
                * (m.mla.q_lora_rank + m.mla.kv_lora_rank + m.mla.qk_rope_head_dim)
            )
        if m.moe is not None:
            replicated += m.n_moe_layers * m.hidden * m.moe.n_experts  # routers
        sharded = m.n_params() - replicated
        if m.moe is not None and self.ep > 1:  # each chip holds 1/ep of the routed experts
            routed = m.n_moe_layers * m.moe.n_experts * m.mlp_params(m.moe.expert_ffn)
            sharded -= routed * (1 - 1 / self.ep)
        held = (sharded / self.tp + replicated) * self.weight_bytes
        expert = self.expert_weight_bytes
        if m.moe is not None and expert != self.weight_bytes:  # experts in their own format
            routed = m.n_moe_layers * m.moe.n_experts * m.mlp_params(m.moe.expert_ffn)
            held += routed / self.ep / self.tp * (expert - self.weight_bytes)
            # and in the runtime's shape: the padding it stores beside them (``expert_shape``)
            (h, f), (h0, f0) = self.expert_shape(), self.expert_shape(padded=False)
            pad = m.mlp_params(f, h) - m.mlp_params(f0, h0)  # one expert's share on a chip
            held += m.n_moe_layers * m.moe.n_experts / self.ep * pad * expert
        if self.dtype in _LOW_FLOAT:  # the embedding, LM head and routers stay 16-bit
            wide = m.embedding_params() / self.tp
            if m.moe is not None:
                wide += m.n_moe_layers * m.hidden * m.moe.n_experts
            held += wide * (2.0 - self.weight_bytes)
        a = m.mla
        if a is not None and self.runtime.mla_absorb == "premultiplied":
            # vLLM 0.7 keeps the premultiplied decode weights beside the plain ones (prefill):
            # W_Q_UK and W_UV_O in the checkpoint's format, W_QR in 16 bits, a layer a chip
            nq = m.n_heads / self.tp
            q_in = a.q_lora_rank or m.hidden
            held += m.n_layers * nq * a.kv_lora_rank * (q_in + m.hidden) * self.weight_bytes
            held += m.n_layers * nq * a.qk_rope_head_dim * q_in * 2.0
        return held

    def kv_cache_bytes(self, tokens_per_seq: int) -> float:
        """A chip's cache of ``local_batch`` sequences of ``tokens_per_seq`` tokens (a sliding
        layer holds only its window: ``ModelConfig.kv_elements``)."""
        m = self.model
        shard = 1 if m.mla is not None else min(self.tp, m.n_kv_heads)
        return self.local_batch * m.kv_elements(tokens_per_seq) * self.kv_bytes / shard


class _Lowering:
    """Builds the per-chip op list of one forward pass over ``tokens`` new tokens per sequence."""

    def __init__(self, w: _Common, q_len: int, kv_len: int, phase: str,
                 quantised_inputs: bool = True) -> None:  # fmt: skip
        self.w, self.m = w, w.model
        # fp8 GEMMs read their inputs quantised (``fp8_quant``); training casts them itself
        self.quantised_inputs = quantised_inputs
        self.B = w.local_batch
        if phase == "decode" and getattr(w, "pp", 1) > 1:
            # a pipeline keeps pp micro-batches in flight, one per stage: each step of a stage
            # runs batch / pp sequences (a request's next token needs its previous one)
            self.B = -(-w.local_batch // w.pp)
        self.q_len, self.kv_len, self.phase = q_len, kv_len, phase
        self.T = self.B * q_len  # token rows through every GEMM
        self.eager = w.runtime.elementwise == "eager"  # one kernel per primitive (runtime)
        self.tp = w.tp
        self.ab, self.wb, self.kvb = w.act_bytes, w.weight_bytes, w.kv_bytes
        self.dt = w.compute_dtype
        # eager attention (unfused) costs as FlashAttention-2's arithmetic plus the score
        # matrix's trips through memory and its launches (``eager_scores``)
        self.unfused = w.attention_kernel == "unfused"
        kernel = "fa2" if self.unfused else w.attention_kernel
        self.b = Builder(self.dt, self.ab, self.wb, kernel,
                         w.runtime.default_attention_kernel)  # fmt: skip
        # fp8 / fp4 checkpoints keep the MoE router, the LM head and the MLA absorption
        # products 16-bit (_UNQUANTISED): their GEMMs read 16-bit weights at the 16-bit rate
        self.b16 = Builder("bf16", self.ab, 2.0) if self.dt in _LOW_FLOAT else self.b
        # routed experts stored in their own format (``MoEConfig.weight_format``) read its
        # bytes and upcast in the kernel: the math stays at the run's dtype (weight-only)
        xb = w.expert_weight_bytes
        self.bx = self.b if xb == self.wb else Builder(self.dt, self.ab, xb, kernel,
                                                      w.runtime.default_attention_kernel)  # fmt: skip
        self.window = 0  # the sliding window of the layer being built (``attention_block``)

    # ---- op builders (workloads/build.py) -----------------------------------------------------
    def gemm(self, name: str, family: str, m: float, n: int, k: int, groups: int = 1) -> Op:
        experts = name.startswith("experts")  # the routed experts: ``moe_block``'s kernel
        b = self.b16 if name in _UNQUANTISED else self.bx if experts else self.b
        op = b.gemm(name, family, m, n, k, groups)
        # weight-only GEMMs (int4, the experts' own format) on the runtime's kernel for them:
        # Marlin is W4A16, 16-bit activations and math on mma.sync (the 16-bit layers of the
        # checkpoint, router and LM head among them, keep the native path)
        weight_only = self.w.dtype == "int4" or (b is self.bx and self.bx is not self.b)
        if (weight_only and name not in _UNQUANTISED
                and self.w.runtime.weight_only_kernel == "marlin"):  # fmt: skip
            g = op.gemm
            op = replace(op, dtype="bf16", gemm=replace(g, mma_sync=True, a_bytes=self.ab))
        elif self.dt == "fp8" and self.m.fp8_block_scales and b is self.b and not experts:
            # a block-scaled checkpoint's dense linear on the runtime's kernel for its shape
            # (vLLM and SGLang send an N or K off the 128 grid to another kernel), and on a
            # chip its kernels are not built for the engine's fallback (resolved per chip at
            # cost time, ``workloads.ops.for_chip``). NB: vLLM 0.11 fuses q_a_proj with
            # kv_a_proj (N = 2112, off the grid: CUTLASS, one 128 x 128 tile) where this lowers
            # them apart (kv_a_proj's N = 576 alone)
            rt = self.w.runtime
            aligned = n % 128 == 0 and k % 128 == 0
            kernel = rt.block_fp8_gemm if aligned else rt.block_fp8_gemm_unaligned
            g = block_fp8_gemm(op.gemm, kernel)
            if rt.block_fp8_fallback and rt.block_fp8_fallback != kernel:
                g = replace(
                    g, block_fallback=rt.block_fp8_fallback, block_native=rt.block_fp8_native
                )
            op = replace(op, gemm=g)
        return op

    def norm(self, name: str, width: int) -> Op:
        m = self.m
        # residual add fused in (vLLM fused_add_rms_norm): read x and residual, write both
        op = self.b.elementwise(name, "norm", 2 * self.T * width, 2 * self.T * width,
                                _NORM_FLOPS[m.norm] * self.T * width,
                                weight_bytes=m.norm_params() * self.ab)  # fmt: skip
        if self.eager:  # the reference's primitives, the residual add among them
            op = self._eager(op, self.w.runtime.norm_primitive(m.norm), self.T * width,
                             one_row=self.T == 1)  # fmt: skip
        return op

    def latent_norm(self, name: str, width: int) -> Op:
        """An RMSNorm of a ``width``-wide latent with no residual beside it (MLA's q_a_layernorm
        and kv_a_layernorm): reads and writes each row once. Eager: the norm's primitives less
        the residual add (``EAGER_PRIMITIVES``: 6 B and one kernel an element)."""
        m = self.m
        op = self.b.elementwise(name, "attention", self.T * width, self.T * width,
                                _NORM_FLOPS[m.norm] * self.T * width,
                                weight_bytes=width * (2 if m.norm == "layernorm" else 1)
                                * self.ab)  # fmt: skip
        if self.eager:
            key = self.w.runtime.norm_primitive(m.norm)
            per_element, kernels = eager_without_residual(key)[:2]
            by = {**op.bytes, Role.ACTIVATION: per_element * self.T * width}
            op = self._scalar(replace(op, bytes=by, kernels=kernels),
                              scalar_per(key, one_row=self.T == 1), self.T * width)  # fmt: skip
        return op

    def _eager(self, op: Op, key: str, elems: float, extra_bytes: float = 0.0,
               extra_kernels: int = 0, one_row: Any = False,
               extra_strided: tuple[Any, float] = (0.0, 0.0), scalar_key: str = "") -> Op:  # fmt: skip
        """``op`` as eager PyTorch runs it: the primitives of ``EAGER_PRIMITIVES[key]`` over
        ``elems`` elements (plus ``extra_bytes`` of activations in ``extra_kernels`` more, which
        write ``extra_strided`` = (elements, bytes an element) on the strided kernel);
        ``one_row``: at one token row, where size-1 dimensions drop out; ``scalar_key``: the
        ``build.EAGER_SCALAR`` entry where the code's layout differs from ``key``'s."""
        per_element, kernels = EAGER_PRIMITIVES[key][:2]
        by = dict(op.bytes)
        by[Role.ACTIVATION] = per_element * elems + extra_bytes
        op = replace(op, bytes=by, kernels=kernels + extra_kernels)
        op = self._scalar(op, scalar_per(scalar_key or key, one_row=one_row), elems)
        return self._strided(op, *extra_strided)

    def _scalar(self, op: Op, kernels: Any, n: Any) -> Op:
        """``op`` with ``kernels`` ((output elements per unit of ``n``, bytes per output
        element, path) each) run on eager PyTorch's unvectorised kernels, at the runtime's
        cycles an element (``build.scalar``)."""
        return scalar(op, kernels, self.w.runtime.scalar_rates, n)

    def _strided(self, op: Op, elements: Any, per_element: float) -> Op:
        """``op`` with one more kernel on eager PyTorch's strided kernel, writing ``elements``
        output elements and moving ``per_element`` bytes each."""
        return self._scalar(op, [(1.0, per_element, STRIDED)], elements)

    def all_reduce(self, name: str, width: int) -> Op | None:
        return self.b.collective(name, "all_reduce", self.T * width * self.ab, self.tp)

    def attention(self, n_q: int, n_kv: int, qk: int, v: int, kv_per_token: float) -> Op:
        spec = Attention(
            batch=self.B, n_q_heads=n_q, n_kv_heads=n_kv, q_len=self.q_len, kv_len=self.kv_len,
            qk_dim=qk, v_dim=v, causal=True, act_bytes=self.ab, kv_bytes_per_token=kv_per_token,
            window=self.window,
            # MLA's prefill attends the up-projected K/V it computed (contiguous), not the cache
            paged=self.w.runtime.paged_prefill and self.m.mla is None,
        )  # fmt: skip
        op = self.b.attention("attention", spec)
        rt = self.w.runtime
        fallback = rt.kernel_for_sinks(self.m.attention_sinks, op.attention.kernel)  # type: ignore[union-attr]
        if fallback:  # a kernel without sinks cannot run it (resolved per chip at cost time)
            op = replace(op, attention=replace(op.attention, sinks_kernel=fallback,
                                               sinks_native=rt.sinks_native))  # fmt: skip
        if self.dt == "fp4":  # no fp4 attention kernel: it runs at the KV cache's precision
            op = replace(op, dtype="fp8" if self.kvb <= 1.0 else "bf16")
        return op

    # ---- blocks ------------------------------------------------------------------------------
    def heads(self) -> tuple[int, int]:
        """(q heads, kv heads) on one chip; KV heads replicate when TP exceeds them."""
        m, tp = self.m, self.tp
        return m.n_heads // tp, max(1, m.n_kv_heads // tp)

    def fp8_quant(self, ops: list[Op]) -> list[Op]:
        """``ops`` with each fp8 (fp4) GEMM reading its input quantised, as tensor cores take
        it: where the runtime quantises it in a kernel of its own (``Runtime.fp8_input_quant``
        separate), that kernel before the GEMM reads the 16-bit activation and writes it in fp8
        with its scales; fused, the kernel before writes it so. Not the router and the LM head
        (16-bit linears) nor the MLA absorption products (16-bit bmm). The fused MoE's first
        GEMM quantises the tokens once (T rows, before they are gathered to the experts), its
        second the expert rows."""
        if self.dt not in ("fp8", "fp4") or not self.quantised_inputs:
            return ops
        separate = self.w.runtime.fp8_input_quant == "separate"
        out: list[Op] = []
        q_bytes = dtype_bytes(self.dt)  # fp8: 1; fp4: 0.5625 with its block scales
        for op in ops:
            g = op.gemm
            if g is not None and op.dtype == self.dt and op.name not in _UNQUANTISED:
                if not separate:
                    # fused: the kernel before wrote the input quantised (NB: that kernel's own
                    # write is still counted at 16 bits), and the GEMM reads it so
                    out.append(fp8_input(op, q_bytes))
                    continue
                elems = g.m * g.k * g.groups
                if op.name.endswith("experts_up") and self.m.moe is not None:
                    elems = elems / self.m.moe.top_k  # each token once, not once per expert
                # 16-bit in, quantised out: the write in activation elements is the bytes' share
                out.append(self.b.elementwise(f"{op.name}_{self.dt}_quant", op.family, elems,
                                              elems * q_bytes / self.ab, _QUANT_FLOPS * elems))  # fmt: skip
                op = fp8_input(op, q_bytes)  # and the GEMM reads its input quantised
            out.append(op)
        return out

    @property
    def kv_seen(self) -> Any:
        """Cached tokens a query of this layer reaches: all, or under a sliding window the
        ``window + q_len - 1`` latest (what the layer's cache holds)."""
        return window_span(self.q_len, self.kv_len, self.window)

    def attention_block(self, window: int = 0) -> list[Op]:
        """One layer's attention; ``window``: a sliding-window layer's (``ModelConfig``)."""
        self.window = window
        try:
            return self.mla_glue(self.fp8_quant(self._attention_block()))
        finally:
            self.window = 0

    def mla_glue(self, ops: list[Op]) -> list[Op]:
        """``ops`` (an MLA block in decode, of a block-scaled fp8 checkpoint: DeepSeek-V3's, on
        which the counts were read) with the launches the runtime's code makes beyond them
        (``Runtime.mla_decode_kernels``: its quantisation chains, copies into the attention's
        inputs, unfused RoPE, a separate cache write, a split-KV combine), as one
        launch-bound op: at decode sizes each moves at most a few [rows, heads, 576] 16-bit
        tensors (1 MB at 64 rows: 0.2 us at HBM rate against the launch), so no bytes are
        counted. None where the runtime gives no count or its count is not above roofsim's."""
        counts = self.w.runtime.mla_decode_kernels
        fp8_blocks = self.dt == "fp8" and self.m.fp8_block_scales  # what the counts were read on
        if self.m.mla is None or self.phase != "decode" or not counts or not fp8_blocks:
            return ops
        one, more = counts
        own = sum(op.kernels for op in ops)
        extra = np.where(np.asarray(self.T) <= 1, one, more) - own
        if np.ndim(extra) and np.all(extra == extra.flat[0]):
            extra = extra.flat[0]
        if not np.any(extra > 0):
            return ops
        extra = int(extra) if not np.ndim(extra) else np.maximum(extra, 0)
        glue = Op(name="mla_glue", kind=OpKind.ELEMENTWISE, family="attention", dtype=self.dt,
                  flops=0.0, model_flops=0.0, bytes={}, kernels=extra)  # fmt: skip
        return ops + [glue]

    def attention_blocks(self) -> list[tuple[list[Op], int]]:
        """(attention ops, layers) for each kind of layer: the full-attention layers, then the
        sliding-window ones (their ops named ``sliding.*``)."""
        m = self.m
        out = [(self.attention_block(), m.full_attention_layers)]
        if m.sliding_layers:
            ops = [op.repeated(1, "sliding") for op in self.attention_block(m.sliding_window)]
            out.append((ops, m.sliding_layers))
        return [(ops, n) for ops, n in out if n]

    def _attention_block(self) -> list[Op]:
        m, T = self.m, self.T
        if m.mla is not None:
            return self.mla_block()
        nq, nkv = self.heads()
        hd = m.head_dim
        ops = [
            self.norm("attn_norm", m.hidden),
            # q_proj, k_proj and v_proj as three launches where the code keeps them apart
            replace(self.gemm("qkv_proj", "attention", T, (nq + 2 * nkv) * hd, m.hidden),
                    kernels=3 if self.w.runtime.separate_projections else 1),
            # rotary embedding on q and k, and the write of k and v into the cache
            self.rope_kv_write(nq, nkv, hd),
        ]  # fmt: skip
        ops += self.cache_copies(nq, nkv, hd)
        # attention reads the compact cache, or its copy expanded to every query head
        expanded = self.w.runtime.gqa_repeat and nq > nkv
        kv_heads, kv_token = (nq, 2 * hd * self.ab) if expanded else (nkv, 2 * hd * self.kvb)
        ops.append(self.attention(nq, kv_heads, hd, hd, kv_token))
        ops += self.eager_scores(nq)
        ops += self.out_copy(nq * hd)
        ops.append(self.gemm("o_proj", "attention", T, m.hidden, nq * hd))
        return ops + [op for op in [self.all_reduce("attn_all_reduce", m.hidden)] if op]

    def out_copy(self, width: int) -> list[Op]:
        """Eager code's ``attn_output.transpose(1, 2).contiguous()`` (or ``.reshape``) before
        the output projection: attention writes its output (batch, heads, q, d) where the
        queries are laid out so (the reference's matmuls; transformers' SDPA path, which makes
        q contiguous; this repository's microbenchmark, whose RoPE cat does), so over a prompt
        it is a permuting copy (``EAGER_PRIMITIVES`` attn_out_copy: 2+2 B, one kernel, the
        strided kernel); at one query row the transpose is a view. None for fused runtimes."""
        # (over a sweep of prompts, points of one token keep the launch, not the bytes, as the
        # cache copies do)
        if not self.eager:
            return []
        prompt = np.asarray(self.q_len) > 1
        if not prompt.any():
            return []
        op = self.b.elementwise("attn_out_copy", "attention", 0.0, 0.0, 0.0)
        return [self._eager(op, "attn_out_copy", self.T * width * prompt)]

    def eager_scores(self, nq: int) -> list[Op]:
        """Eager attention (``--attention-kernel unfused``: Hugging Face's 'eager', the
        reference's matmul / softmax / matmul): the fused kernel's arithmetic (costed as
        FlashAttention-2's) plus the score matrix through memory: written by QK^T, then the
        scale, the mask, the fp32 softmax and the cast each read and write it, and PV reads it
        (16-bit but the fp32 softmax output: 24 bytes an element, 12 of 16-bit), in 5 more
        launches than the attention op's one (QK^T, scale, mask, softmax, cast, PV). NB: the
        fused arithmetic counts a causal prefill's half square, eager computes all of it. None
        for other kernels."""
        if not self.unfused:
            return []
        scores = self.B * nq * self.q_len * self.kv_seen  # per layer, on this chip
        op = self.b.elementwise("attn_scores_eager", "attention", 6 * scores, 6 * scores,
                                5.0 * scores)  # fmt: skip
        # the mask add broadcasts the (batch, 1, q, kv) mask over heads: the strided kernel
        return [self._strided(replace(op, kernels=5), scores, 2 * self.ab)]

    def cache_copies(self, nq: int, nkv: int, hd: int) -> list[Op]:
        """The copies a runtime makes of a layer's K/V cache each step (``Runtime.kv_cache``,
        ``Runtime.gqa_repeat``): Hugging Face's DynamicCache appends the step's K and V with
        ``torch.cat``, re-reading the cached tokens and writing them all anew (two kernels, K and
        V; none in a first prefill, whose cache is empty); ``repeat_kv`` expands grouped K and V
        to every query head (reads the cache, writes nq / nkv times its tokens' K and V). NB: an
        MLA model's latent cache is not given these copies, a MoE layer's per-expert loop of
        the transformers code not its launches, and the memory check not the copies' transient
        buffers."""
        rt, B = self.w.runtime, self.B
        per_token = 2 * nkv * hd * self.kvb  # K and V of one token, cached
        ops: list[Op] = []
        if rt.kv_cache == "concat" and np.any(np.asarray(self.kv_seen) > self.q_len):
            old = B * np.maximum(np.asarray(self.kv_seen) - self.q_len, 0)
            new = B * self.q_len
            op = self.b.elementwise("kv_concat", "attention", 0.0, 0.0, 0.0,
                                    kv_bytes=2 * (old + new) * per_token)  # fmt: skip
            ops.append(replace(op, kernels=2))
        if rt.gqa_repeat and nq > nkv:
            tokens = B * self.kv_seen
            op = self.b.elementwise("repeat_kv", "attention", 0.0, tokens * 2 * nq * hd, 0.0,
                                    kv_bytes=tokens * per_token)  # fmt: skip
            # expand (stride 0 over the repeats) then reshape: every element on the strided kernel
            # (each written element: its 16-bit write and nkv / nq of a cached element's read)
            ops.append(self._strided(replace(op, kernels=2), tokens * 2 * nq * hd,
                                     self.ab + self.kvb * nkv / nq))  # fmt: skip
        return ops

    def rope_kv_write(self, nq: int, nkv: int, hd: int) -> Op:
        m, T = self.m, self.T
        rotated = T * (nq + nkv) * hd
        op = self.b.elementwise(
            "rope_kv_write", "attention", rotated, rotated,
            _ROPE_FLOPS * rotated if m.position == "rope" else 0.0,
            kv_bytes=T * 2 * nkv * hd * self.kvb,
        )  # fmt: skip
        concat = self.w.runtime.kv_cache == "concat"
        if concat:  # torch.cat is the append (``cache_copies``): no write into a cache here
            op = replace(op, bytes={k: v for k, v in op.bytes.items() if k != Role.KV})
        if not self.eager:
            return op
        # eager: RoPE's primitives on q and k, then K and V copied into the cache (two kernels
        # reading the new K and V; none where the cache is concatenated) into a strided slice
        # of it: the strided kernel (this repository's microbenchmark's (batch, heads, seq,
        # dim) cache; the Meta reference's (batch, seq, heads, dim) slice is contiguous at
        # batch 1, a memcpy there: not told apart)
        copied = 0.0 if concat else T * 2 * nkv * hd
        copies, n_copies = copied * self.ab, 0 if concat else 2
        if m.position == "rope":
            return self._eager(op, self.w.runtime.rope_primitive, rotated, copies, n_copies,
                               one_row=self.q_len == 1,
                               extra_strided=(copied, self.ab + self.kvb))  # fmt: skip
        op = replace(op, bytes={**op.bytes, Role.ACTIVATION: copies}, kernels=n_copies)
        return self._strided(op, copied, self.ab + self.kvb)

    def mla_block(self) -> list[Op]:
        m, T = self.m, self.T
        a = m.mla
        assert a is not None
        nq = m.n_heads // self.tp
        qk = a.qk_nope_head_dim + a.qk_rope_head_dim
        latent = a.kv_lora_rank + a.qk_rope_head_dim
        ops = [self.norm("attn_norm", m.hidden)]
        # decode with the absorbed products premultiplied into the projections (vLLM 0.7's
        # MLA: W_Q_UK = W_Q W_UK and W_UV_O = W_UV W_O at load, the RoPE part of W_Q apart in
        # 16 bits): q goes straight to the latent space and o_proj reads it, no bmm between
        pre = self.phase == "decode" and self.w.runtime.mla_absorb == "premultiplied"
        q_n = nq * a.kv_lora_rank if pre else nq * qk
        q_in = a.q_lora_rank or m.hidden
        # each latent is normalised before its up-projection (DeepSeek-V2/V3's q_a_layernorm
        # and kv_a_layernorm; the kv one over the compressed part, not the RoPE key)
        if a.q_lora_rank:
            ops += [
                self.gemm("q_a_proj", "attention", T, a.q_lora_rank, m.hidden),
                self.latent_norm("q_a_norm", a.q_lora_rank),
                self.gemm("q_b_proj", "attention", T, q_n, a.q_lora_rank),
            ]
        else:
            ops.append(self.gemm("q_proj", "attention", T, q_n, m.hidden))
        if pre:  # model FLOPs: the plain decode's (q_b_proj, then q_absorb), not the folded
            q_plain = 2.0 * T * nq * (qk * q_in + a.qk_nope_head_dim * a.kv_lora_rank)
            ops[-1] = replace(ops[-1], model_flops=q_plain)
            rope = self.gemm("q_rope_proj", "attention", T, nq * a.qk_rope_head_dim, q_in)
            ops.append(replace(rope, model_flops=0.0))
        ops.append(self.gemm("kv_a_proj", "attention", T, latent, m.hidden))
        ops.append(self.latent_norm("kv_a_norm", a.kv_lora_rank))
        ops.append(
            self.b.elementwise(
                "rope_kv_write",
                "attention",
                T * (nq * qk + latent),
                T * (nq * qk + latent),
                _ROPE_FLOPS * T * (nq + 1) * a.qk_rope_head_dim,
                kv_bytes=T * latent * self.kvb,
            )
        )
        if pre:  # the latent attended as one KV head, between the premultiplied projections
            ops += [self.attention(nq, 1, latent, a.kv_lora_rank, latent * self.kvb),
                    *self.eager_scores(nq)]  # fmt: skip
        elif self.phase == "decode":
            # absorbed: q_nope @ W_UK per head -> latent space; attend the latent as one KV head
            ops += [
                self.gemm("q_absorb", "attention", T, a.kv_lora_rank, a.qk_nope_head_dim, nq),
                self.attention(nq, 1, latent, a.kv_lora_rank, latent * self.kvb),
                *self.eager_scores(nq),
                self.gemm("v_absorb", "attention", T, a.v_head_dim, a.kv_lora_rank, nq),
            ]
        else:
            # plain: up-project the latent to per-head K (nope part) and V
            kv_tokens = self.B * self.kv_len
            ops += [
                self.gemm("kv_b_proj", "attention", kv_tokens,
                          nq * (a.qk_nope_head_dim + a.v_head_dim), a.kv_lora_rank),
                self.attention(nq, nq, qk, a.v_head_dim, (qk + a.v_head_dim) * self.ab),
            ]  # fmt: skip
            ops += self.eager_scores(nq)
        o_in = nq * (a.kv_lora_rank if pre else a.v_head_dim)
        o_proj = self.gemm("o_proj", "attention", T, m.hidden, o_in)
        if pre:  # the plain decode's model FLOPs: v_absorb, then o_proj
            plain = 2.0 * T * nq * a.v_head_dim * (a.kv_lora_rank + m.hidden)
            o_proj = replace(o_proj, model_flops=plain)
        ops.append(o_proj)
        return ops + [op for op in [self.all_reduce("attn_all_reduce", m.hidden)] if op]

    def mlp(self, name: str, family: str, ffn: int, m_rows: float, groups: int = 1,
            hidden: int | None = None) -> list[Op]:  # fmt: skip
        """Up (gate+up merged when gated), activation, down; ``ffn`` already per chip;
        ``hidden``: the GEMMs' hidden size where the weights are stored padded (the model's)."""
        m = self.m
        hidden = m.hidden if hidden is None else hidden
        up_n = ffn * (2 if m.gated_mlp else 1)
        rows = m_rows * groups
        act = self.b.elementwise(f"{name}_act", family, rows * up_n, rows * ffn,
                                 _ACT_FLOPS.get(m.activation, 5) * rows * ffn)  # fmt: skip
        if self.eager:
            # one gate/up GEMM whose output is chunked (not separate projections): the gated
            # activation reads strided halves (``EAGER_SCALAR`` gated_act_chunked)
            chunked = m.gated_mlp and not self.w.runtime.separate_projections
            act = self._eager(act, "gated_act" if m.gated_mlp else "act", rows * ffn,
                              one_row=np.asarray(m_rows) <= 1,
                              scalar_key="gated_act_chunked" if chunked else "")  # fmt: skip
        up = self.gemm(f"{name}_up", family, m_rows, up_n, hidden, groups)
        if self.w.runtime.separate_projections and m.gated_mlp:  # gate_proj and up_proj
            up = replace(up, kernels=2)
        return [
            up,
            act,
            self.gemm(f"{name}_down", family, m_rows, hidden, ffn, groups),
        ]

    def dense_mlp_block(self) -> list[Op]:
        m = self.m
        ops = [self.norm("mlp_norm", m.hidden)]
        ops += self.mlp("mlp", "mlp", math.ceil(m.ffn / self.tp), self.T)
        return self.fp8_quant(
            ops + [op for op in [self.all_reduce("mlp_all_reduce", m.hidden)] if op]
        )

    def expected_active_experts(self) -> float:
        """E·(1 − (1 − k/E)^T): distinct experts T tokens touch under uniform top-k routing."""
        moe = self.m.moe
        assert moe is not None
        e, k = moe.n_experts, moe.top_k
        ep = getattr(self.w, "ep", 1)
        # with expert parallelism the ep chips' tokens meet the experts; a chip holds e / ep
        return e / ep * (1.0 - (1.0 - k / e) ** (self.T * ep))

    def moe_block(self) -> list[Op]:
        m, moe = self.m, self.m.moe
        assert moe is not None
        active = self.expected_active_experts()
        groups = np.maximum(1, np.round(active)) if np.ndim(active) else max(1, round(active))
        # mean tokens per active expert (with ep, the group's ep x T tokens over all its chips'
        # experts: T x top_k arrive at each chip under uniform routing)
        rows = self.T * moe.top_k / groups
        ep = getattr(self.w, "ep", 1)
        # dispatch and combine: each chip sends its tokens' top_k copies to their experts' chips
        # and gets the results back (all-to-all over the ep group)
        a2a = [self.b.collective(f"ep_{what}", "all_to_all",
                                 self.T * moe.top_k * m.hidden * self.ab, ep)
               for what in ("dispatch", "combine")] if ep > 1 else [None, None]  # fmt: skip
        ops = [
            self.norm("mlp_norm", m.hidden),
            self.gemm("router", "moe", self.T, moe.n_experts, m.hidden),
            # softmax/top-k, then permute tokens to experts and back (read+write each row):
            # three kernels, the top-k, the permute before the experts and the weighted sum
            # after them (vLLM and SGLang's fused MoE: topk_softmax, moe_align_block_size,
            # moe_sum; TensorRT-LLM's MoE plugin: top-k, expandInputRows, finalizeMoeRouting);
            # a group-limited top-k takes the runtime's launches (grouped_topk_kernels)
            replace(self.b.elementwise("route_permute", "moe",
                                       self.T * (moe.n_experts + m.hidden * moe.top_k),
                                       self.T * m.hidden * moe.top_k * 2,
                                       5.0 * self.T * moe.n_experts),
                    kernels=2 + (self.w.runtime.grouped_topk_kernels if moe.n_groups > 1
                                 else 1)),
        ]  # fmt: skip
        ops += [op for op in a2a[:1] if op]
        # each expert's rows: the tokens, of the ep chips' T each, that chose it (k of E)
        # (in the runtime's stored shape: padded zeros are read and multiplied, ``expert_shape``)
        (hidden, ffn), (h0, f0) = self.w.expert_shape(), self.w.expert_shape(padded=False)
        experts = routed(self.mlp("experts", "moe", ffn, rows, groups, hidden),
                         self.T * ep, moe.top_k / moe.n_experts)  # fmt: skip
        useful = h0 * f0 / (hidden * ffn)
        if useful < 1:  # the padded zeros are executed work, not the model's (MFU)
            experts = [replace(op, model_flops=op.model_flops * useful) if op.gemm else op
                       for op in experts]  # fmt: skip
        if self.w.runtime.moe_kernel == "triton":  # one CTA a block, power-of-two blocks
            # fed by pointer loads (vLLM's fused_moe_kernel; NB: SGLang builds that switch a
            # TMA path on for some token bins are not told apart); a block-scaled fp8
            # checkpoint's blocks scale each dot in series with the MMAs (fused_moe_kernel's
            # ``accumulator += tl.dot(a, b) * a_scale[:, None] * b_scale[None, :]``: 2 vector
            # instructions an element, benchmarks/research/block-fp8-promotion-2026-12-06.md)
            blocks = self.dt == "fp8" and self.m.fp8_block_scales
            experts = [replace(op, gemm=block_fp8_gemm(op.gemm, "triton") if blocks
                               else triton_gemm(op.gemm))
                       if op.gemm is not None else op for op in experts]  # fmt: skip
        ops += experts + [op for op in a2a[1:] if op]
        if moe.n_shared_experts:
            shared_ffn = math.ceil(moe.n_shared_experts * moe.expert_ffn / self.tp)
            ops += self.mlp("shared_expert", "moe", shared_ffn, self.T)
        return self.fp8_quant(
            ops + [op for op in [self.all_reduce("mlp_all_reduce", m.hidden)] if op]
        )

    def head(self, rows: int) -> list[Op]:
        m = self.m
        ops = [
            self.norm("final_norm", m.hidden),
            self.gemm("lm_head", "head", rows, math.ceil(m.vocab / self.tp), m.hidden),
        ]
        gather = self.b.collective("logits_all_gather", "all_gather", rows * m.vocab * 4.0, self.tp)
        # the sampler: each sampled row's whole vocabulary through the runtime's kernels (on
        # every chip of the TP group: the logits are gathered first), one operation an element
        # a pass
        per_logit, kernels = self.w.runtime.sampler(self.w.sampling)
        if not kernels:  # sampling none: the step stops at the logits
            return ops + [op for op in [gather] if op]
        sampler = Op(name="sampler", kind=OpKind.ELEMENTWISE, family="head", dtype=self.dt,
                     flops=rows * m.vocab * kernels, model_flops=0.0,
                     bytes={Role.ACTIVATION: rows * m.vocab * per_logit}, kernels=kernels)  # fmt: skip
        return ops + [op for op in [gather] if op] + [sampler]

    def embedding(self) -> Op:
        m = self.m
        # a lookup: read one row per token, write it as an activation
        wb = 2.0 if self.dt in _LOW_FLOAT else self.wb  # fp8 / fp4 checkpoints: a 16-bit table
        return self.b.elementwise("embedding", "embedding", 0, self.T * m.hidden, 0.0,
                                  weight_bytes=self.T * m.hidden * wb)  # fmt: skip

    def build(self, head_rows: int) -> tuple[Op, ...]:
        m = self.m
        blocks = self.attention_blocks()
        ops: list[Op] = [self.embedding()]
        both = m.n_dense_layers and m.n_moe_layers
        # with pp stages the fullest stage sets the pace: each chip runs its stage_layers layers
        # for each of the pp micro-batches (decode) or once per stage in turn (prefill): as if
        # stage_layers x pp layers ran on one chip
        pp = getattr(self.w, "pp", 1)
        scale = self.w.stage_layers * pp / m.n_layers if pp > 1 else 1.0
        groups = [(round(layers * scale), mlp, tag if both else "")
                  for layers, mlp, tag in ((m.n_dense_layers, self.dense_mlp_block, "dense"),
                                           (m.n_moe_layers, self.moe_block, "moe"))
                  if layers]  # fmt: skip
        # each kind of attention layer (full, sliding) in its share of the layers built, split
        # over the MLP groups so that every kind's total holds (NB: with pp > 1 the fullest
        # stage takes the model's mix, not its own layers' pattern)
        total = sum(n for n, _, _ in groups)
        left = [round(total * k / m.n_layers) for _, k in blocks]
        left[0] += total - sum(left)
        for g, (n, mlp, prefix) in enumerate(groups):
            room = n
            for i, (attn, _) in enumerate(blocks):
                last = g == len(groups) - 1 or i == len(blocks) - 1
                share = min(room, left[i] if last else round(n * left[i] / max(1, total)))
                left[i] -= share
                room -= share
                ops += [op.repeated(share, prefix) for op in attn if share]
            total -= n
            ops += [op.repeated(n, prefix) for op in mlp()]
        ops += self.head(head_rows)
        if pp > 1:
            # activations handed to the next stage: pp hops a decode round (the last stage's
            # token returns to the first), pp - 1 for a prefill
            hops = pp if self.phase == "decode" else pp - 1
            send = self.b.collective("pp_send", "send_recv", self.T * m.hidden * self.ab, 2,
                                     comm=pp)  # fmt: skip
            if send is not None and hops:
                ops.append(send.repeated(hops))
        ops = all_reduces(launch(ops, self.w.runtime, prompts=self.phase != "decode",
                                 tokens=self.T, tp=self.tp, sequences=self.B),
                          self.w.runtime)  # fmt: skip
        # the host's work covers every sequence of the step (with pp > 1: of the round of
        # micro-batches the step's time stands for; NB its fixed part is charged once a round)
        step = step_op(self.w.runtime, self.dt, self.w.local_batch,
                       decode_only=self.phase == "decode")  # fmt: skip
        return tuple(ops + [step] if step else ops)


#: the drafters of speculative decoding (``Speculation.draft``): ``ngram`` proposes from the
#: text already seen on the host (prompt lookup; no chip work), ``mtp`` one block of the target
#: (DeepSeek-V3 MTP, EAGLE); a ModelConfig is a separate draft model
DRAFTS = ("ngram", "mtp")


def draft_from(value: Any, flag: str = "--draft") -> str | ModelConfig:
    """A drafter as a flag or a file names it: ``mtp``, ``ngram``, or a model (preset slug,
    model TOML or config.json); WorkloadError naming ``flag`` otherwise."""
    from workloads.loader import load_model

    if not isinstance(value, str):
        raise WorkloadError(f"speculative decoding: {flag} must be {', '.join(DRAFTS)} or a model "
                            f"name, got {value!r}")  # fmt: skip
    if value in DRAFTS:
        return value
    try:
        return load_model(value)
    except WorkloadError as exc:  # the loader names --model; the user gave the drafter
        raise WorkloadError(
            f"{exc}".replace("--model", flag, 1) + f" (or {', '.join(DRAFTS)})"
        ) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Speculation:
    """Speculative decoding (Leviathan et al. 2023; Chen et al. 2023): a drafter proposes
    ``tokens`` (k) tokens one after another, and the target model checks all of them, with the
    last accepted token, in one forward pass of k + 1 query tokens per sequence. Each drafted
    token is accepted with probability ``acceptance`` (alpha, i.i.d. as in Leviathan et al.,
    Sec. 3.1), until the first rejection; the check always yields one token of its own. So a
    step makes (1 - alpha^(k+1)) / (1 - alpha) tokens per sequence on average (their Eq. 1).
    alpha is a property of the draft and the text (the source's measured acceptance), an input
    like the output length, not a chip's.

    ``draft``: ``"ngram"`` (prompt lookup: the proposal costs the chip nothing), ``"mtp"`` (one
    block of the target model with its embedding and LM head, fed through a 2h -> h projection
    of [hidden state; embedding]: DeepSeek-V3's multi-token-prediction module, Sec. 2.2, and
    EAGLE's draft head, Li et al. 2024, Sec. 4), or a ModelConfig: a separate, smaller model
    sharing the target's vocabulary, run as its own decode step k times (as vLLM and gpt-fast
    run a draft model)."""

    tokens: int
    acceptance: float | None = None
    #: or the mean tokens a step yields per sequence, as engines print it ("acceptance length",
    #: "mean accepted tokens", tau: the check's own token included), in place of acceptance
    accepted_length: float | None = None
    draft: str | ModelConfig = "mtp"

    def __post_init__(self) -> None:
        check_counts("speculative decoding", "--spec-tokens", self.tokens)
        a, al = self.acceptance, self.accepted_length
        if (a is None) == (al is None):
            raise WorkloadError("speculative decoding needs one of --acceptance (the "
                                "probability a drafted token is accepted) or --accepted-length "
                                "(mean tokens per step), not both")  # fmt: skip
        if a is not None and (
            isinstance(a, bool) or not isinstance(a, (int, float)) or not 0.0 <= a <= 1.0
        ):
            raise WorkloadError(
                f"speculative decoding: --acceptance must be a probability in [0, 1] (the share of drafted "
                f"tokens the target accepts), got {a!r}"
            )
        if al is not None and (
            isinstance(al, bool)
            or not isinstance(al, (int, float))
            or not 1.0 <= al <= self.tokens + 1
        ):
            raise WorkloadError(
                f"speculative decoding: --accepted-length must be between 1 and --spec-tokens + 1 "
                f"({self.tokens + 1}): the check's own token plus the accepted drafts, got {al!r}"
            )
        if isinstance(self.draft, str) and self.draft not in DRAFTS:
            raise WorkloadError(f"speculative decoding: --draft must be {', '.join(DRAFTS)} or a model "
                                f"(preset, TOML or config.json), got {self.draft!r}")  # fmt: skip

    @property
    def tokens_per_step(self) -> float:
        """Expected tokens a sequence gains per step: the accepted length where given, else
        (1 - a^(k+1)) / (1 - a), k + 1 at a = 1."""
        if self.accepted_length is not None:
            return float(self.accepted_length)
        a, k = float(self.acceptance or 0.0), self.tokens
        return k + 1.0 if a >= 1.0 else (1.0 - a ** (k + 1)) / (1.0 - a)

    @property
    def draft_name(self) -> str:
        return self.draft if isinstance(self.draft, str) else self.draft.name

    def draft_model(self, target: ModelConfig) -> ModelConfig | None:
        """The model the drafter runs (None for n-gram lookup): for ``mtp`` one block of the
        target, an MoE block where the target's last layer is one."""
        if self.draft == "ngram":
            return None
        if not isinstance(self.draft, str):
            if self.draft.vocab != target.vocab:
                raise WorkloadError(
                    f"speculative decoding: --draft {self.draft.name} has a vocabulary of {self.draft.vocab} "
                    f"tokens and {target.name} of {target.vocab}: a draft model must share "
                    "the target's tokenizer"
                )
            return self.draft
        moe = target.moe
        return replace(target, name=f"{target.name}-mtp", n_layers=1, sliding_window=0,
                       sliding_layers=0,
                       moe=replace(moe, first_dense_layers=0, interleave=1) if moe else None)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class Decode(_Common):
    """One autoregressive decode step: ``batch`` sequences, each with ``context`` cached tokens.
    With ``spec`` (speculative decoding) one step is the drafter's k proposals and the target's
    check of k + 1 tokens per sequence, and it yields ``Speculation.tokens_per_step`` tokens
    per sequence on average."""

    context: int = 2048
    spec: Speculation | None = None

    def lower(self) -> OpGraph:
        self._validate("decode")
        check_counts("decode", "--context", self.context)
        if self.spec is not None and self.pp > 1:
            raise WorkloadError("decode: speculative decoding with --pp is not modelled (each "
                                "micro-batch would draft on its own); use --pp 1")  # fmt: skip
        q = 1 + (self.spec.tokens if self.spec else 0)
        low = _Lowering(self, q_len=q, kv_len=self.context + q - 1, phase="decode")
        # the check scores every position it verifies: logits for all q tokens of a sequence
        ops = low.build(head_rows=low.B * q)
        m = self.model
        act = low.B * q * max(2 * m.hidden, 2 * m.ffn // self.tp, m.vocab // self.tp) * 4.0
        memory = MemoryNeed(
            # the fullest stage's share of the layers (the embedding or the head beside it: not
            # counted apart)
            weights_bytes=self.resident_weight_bytes() * self.stage_share,
            kv_cache_bytes=self.kv_cache_bytes(self.context + q - 1) * self.stage_share,
            activation_bytes=act,
        )
        tokens, extra = self.batch * 1.0, {}
        if self.spec is not None:
            draft_ops, draft_weights, draft_kv = self.drafter()
            memory = replace(memory, weights_bytes=memory.weights_bytes + draft_weights,
                             kv_cache_bytes=memory.kv_cache_bytes + draft_kv)  # fmt: skip
            # model FLOPs are the work of the tokens a step keeps: the check's FLOPs over its
            # q rows scaled to the tokens accepted, none of the drafter's (as training counts
            # recompute in HFU, not MFU)
            kept = self.spec.tokens_per_step / q
            ops = tuple(replace(op, model_flops=op.model_flops * kept) for op in ops)
            # the proposals come first, then the check (its host step, if any, ends the step)
            ops = draft_ops + ops
            tokens = self.batch * self.spec.tokens_per_step
            extra = {"spec_tokens": self.spec.tokens, "draft": self.spec.draft_name,
                     "acceptance": self.spec.acceptance,
                     "tokens_per_step": round(self.spec.tokens_per_step, 3)}  # fmt: skip
            if self.spec.acceptance is None:
                del extra["acceptance"]
        return OpGraph(
            ops=ops,
            n_chips=self.n_chips,
            tokens=tokens,
            memory=memory,
            describe=_describe(self, "decode", context=self.context, **extra),
        )

    def drafter(self) -> tuple[tuple[Op, ...], float, float]:
        """The drafter of a speculative step: its ops (its k forward passes, each one token per
        sequence at the context the target has; no model FLOPs) and the weight and KV-cache
        bytes one chip holds for it beside the target's. ``roofsim serve`` costs its iterations'
        proposals and sizes its KV budget with it."""
        spec = self.spec
        assert spec is not None
        dm = spec.draft_model(self.model)
        if dm is None:  # n-gram lookup runs on the host, beside the chip
            return (), 0.0, 0.0
        # the drafter runs on the target's chips and layout (a dense drafter beside an MoE target
        # shards no experts)
        # (its proposals are the argmax of its logits: vLLM V1's and SGLang's drafters; NB vLLM
        # V0 samples them with the request's settings)
        draft = replace(self, model=dm, spec=None, ep=self.ep if dm.moe else 1, sampling="greedy")
        try:
            graph = draft.lower()
        except WorkloadError as exc:
            raise WorkloadError(f"speculative decoding: --draft {dm.name} cannot run where the "
                                f"target does: {exc}") from None  # fmt: skip
        # one engine step: the runtime's host work is charged once, with the check
        ops = [op for op in graph.ops if op.name != "host_step"]
        mtp = spec.draft == "mtp"
        if mtp:
            # the 2h -> h projection of [hidden state; embedding of the previous token]
            low = _Lowering(draft, q_len=1, kv_len=self.context, phase="decode")
            ops[1:1] = low.fp8_quant([low.gemm("draft_fc", "mlp", low.B, dm.hidden, 2 * dm.hidden)])
        # the MTP / EAGLE head shares the target's embedding and LM head: only its block and
        # projection are new weights
        shared = dm.embedding_params() * self.weight_bytes / self.tp if mtp else 0.0
        fc = 2 * dm.hidden * dm.hidden * self.weight_bytes / self.tp if mtp else 0.0
        drafted = tuple(replace(op.repeated(spec.tokens, "draft"), model_flops=0.0) for op in ops)
        return drafted, graph.memory.weights_bytes - shared + fc, graph.memory.kv_cache_bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Prefill(_Common):
    """Prefill of ``batch`` prompts of ``prompt`` tokens: the time to the first token."""

    prompt: int = 2048

    def lower(self) -> OpGraph:
        self._validate("prefill")
        check_counts("prefill", "--prompt", self.prompt)
        low = _Lowering(self, q_len=self.prompt, kv_len=self.prompt, phase="prefill")
        # logits only for each prompt's last position (what a server samples from)
        ops = low.build(head_rows=low.B)
        m = self.model
        widest = max(3 * m.hidden, (3 if m.gated_mlp else 2) * m.ffn // self.tp)
        act = low.T * widest * self.act_bytes + low.B * m.vocab / self.tp * 4.0
        memory = MemoryNeed(
            weights_bytes=self.resident_weight_bytes() * self.stage_share,
            kv_cache_bytes=self.kv_cache_bytes(self.prompt) * self.stage_share,
            activation_bytes=act,
        )
        return OpGraph(
            ops=ops,
            n_chips=self.n_chips,
            tokens=self.batch * self.prompt * 1.0,
            memory=memory,
            describe=_describe(self, "prefill", prompt=self.prompt),
        )


def _sinks(w: _Common) -> dict:
    """The runtime's own kernel for attention with sinks, where the chip's default lacks them."""
    rt = w.runtime
    fallback = rt.kernel_for_sinks(w.model.attention_sinks, w.attention_kernel or "native")
    return (
        {"sinks_kernel": f"{fallback} (native on {'/'.join(rt.sinks_native)})"} if fallback else {}
    )


def int4_group_field(w: _Common) -> dict:
    """A weight-only int4 run's group size (the weights a scale and zero point cover)."""
    return {"int4_group": w.int4_group or INT4_GROUP} if w.dtype == "int4" else {}


def _describe(w: _Common, kind: str, **extra: Any) -> dict:
    return {
        "kind": kind,
        "model": w.model.name,
        "batch": w.batch,
        **extra,
        "dtype": w.dtype,
        **int4_group_field(w),
        "kv_dtype": w.kv_dtype or ("fp32" if w.kv_bytes == 4 else "bf16"),
        "tp": w.tp,
        **({"pp": w.pp} if w.pp > 1 else {}),
        **({"ep": w.ep} if w.ep > 1 else {}),
        "dp": w.dp,
        "attention_kernel": w.attention_kernel,
        **_sinks(w),
        "runtime": w.runtime.name,
        **({"sampling": w.sampling} if w.sampling != "greedy" else {}),
    }
