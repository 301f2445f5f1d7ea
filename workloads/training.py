"""Training steps of dense and MoE LLMs: forward, backward, recompute, optimizer, parallelism.

A step is ``global_batch`` sequences of ``seq`` tokens on tp x cp x pp x dp chips. Each of
the dp replicas runs m = global_batch / (micro_batch x dp) micro-batches through a pipeline of
pp stages (each stage ``vp`` virtual chunks for the interleaved schedule). The lowering here
makes, per pipeline stage and chunk, the ops of one micro-batch's forward and backward on one
chip; ``sim/engine/train.py`` costs them and ``sim/engine/events.py`` places them on a timeline.

Conventions (tests/test_training.py checks them):
- Forward per layer is the prefill lowering of ``workloads/llm.py`` (same GEMMs, flash attention).
- Backward of a GEMM C = A·B is the data gradient dA = dC·Bᵀ and the weight gradient
  dB = Aᵀ·dC: 2x the forward FLOPs. Flash-attention backward (Dao 2023, FlashAttention-2,
  Alg. 2) recomputes S = QKᵀ and runs four more products: 2.5x the forward matmul FLOPs
  executed, of which 2x count as model FLOPs. An elementwise op's backward reads the saved input
  and the output gradient and writes the input gradient: 2x its bytes and FLOPs (NB: an
  approximation of the kernels' mix; these ops are a few % of a step).
- Every collective in the forward has its mirror in the backward (Megatron-LM, Shoeybi et al.
  2019, Sec. 3: the f/g conjugate pair; with sequence parallelism, Korthikanti et al. 2022,
  Sec. 4.2.2, all-gather <-> reduce-scatter; MoE dispatch <-> combine all-to-all).
- Recompute (Korthikanti et al. 2022, Sec. 5): ``full`` re-runs each layer's forward before its
  backward; ``selective`` re-runs only the attention core. ``selective-op`` is torchtitan's
  per-op policy (torchtitan/models/llama/parallelize_llama.py, ``_save_list``): a layer saves the
  attention kernel's output and every odd-numbered matmul's (of wq, wk, wv, wo, w1, w3, w2 in
  call order: wq, wv, w1, w2) and re-runs the rest - wk, wo, w3 and every non-matmul op. Re-run
  ops have ``recompute`` set, so they count in HFU and not in MFU.
- Mixed-precision Adam keeps per parameter: 16-bit weights (2 B), gradients (4 B: fp32 for bf16
  training, as Megatron-LM accumulates and reduces bf16 gradients in fp32; 2 B for fp16), and
  fp32 master weights, momentum and variance (12 B): Megatron-LM docs, "Distributed Optimizer"
  (bf16 param + fp32 grads: 18 B/param; 6 + 12/d with the distributed optimizer); Rajbhandari et
  al. 2020 (ZeRO, Sec. 3.1 and Fig. 1: K = 12; stage 1 shards optimizer states, 2 gradients,
  3 parameters over data parallelism; with context parallelism the cp ranks hold the same
  weights too, so gradients are reduced and states sharded over dp x cp ranks: ``dp_cp``).
- Activations saved for the backward are counted tensor by tensor from the forward ops (below),
  the structure of Korthikanti et al. 2022 Sec. 4 with flash attention (no s x s scores saved).
  1F1B keeps pp - s micro-batches in flight on stage s; the interleaved schedule keeps its warm-up
  count + 1 chunks (stage 0: 1 + (pp-1)/(pp·vp) times the layers, Korthikanti Sec. 4.2.3).
- Rank order (Megatron-LM): tensor innermost, then context, then data (expert parallelism is
  carved out of data), then pipeline. So a TP group is packed in a node, a DP group strides by
  tp x cp (the gradients' dp x cp group by tp), and neighbouring pipeline stages are
  tp x cp x dp ranks apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from workloads.build import (
    EAGER_PRIMITIVES,
    STRIDED,
    Builder,
    eager_without_residual,
    fp8_input,
    routed,
    scalar,
    scalar_per,
    scaled_scalar,
)
from workloads.llm import _ACT_FLOPS, _NORM_FLOPS, _ROPE_FLOPS, Prefill, _Lowering
from workloads.model import ModelConfig
from workloads.ops import (
    Op,
    OpKind,
    Role,
    WorkloadError,
    causal_pairs,
    check_attention_kernel,
    check_choice,
)
from workloads.runtime import list_runtimes, load_runtime, runtime_preset

#: Bytes read and written per logit, and kernels, of a training step's cross-entropy over the
#: LM head's 16-bit logits (``Runtime.loss_kernel``), forward then backward (``eager``: PyTorch's
#: own, ``workloads.build.EAGER_PRIMITIVES``):
#: - ``megatron``: Megatron-Core's vocab-parallel cross-entropy (megatron/core/tensor_parallel/
#:   cross_entropy.py ``VocabParallelCrossEntropy``): the logits upcast ``.float()`` (2+4), their
#:   row max (4), the max subtracted in place (4+4), ``torch.exp(out=)`` in place (4+4), the row
#:   sum (4) and the division in place (4+4): 38 B in 6 kernels; backward the saved softmax
#:   scaled in place by the loss's gradient (4+4) and autograd's cast of the fp32 gradient to the
#:   logits' dtype (4+2): 14 B in 2 (the target's scatter is per row). Its
#:   ``cross_entropy_loss_fusion`` variant compiles the same steps (fused_cross_entropy.py) and
#:   moves no fewer bytes: Inductor writes an in-place update that a reduction or a scatter also
#:   reads to a fresh buffer and copies it back (that file's own note, fixed in 2026);
#: - ``fused``: one online-softmax pass over the 16-bit logits (2) and a per-row loss kernel
#:   forward, and one kernel reading them again and writing the gradient in place (2+2)
#:   backward (Transformer Engine's transformer_engine/pytorch/triton/cross_entropy.py as of
#:   2025, ``online_softmax_kernel``, ``cross_entropy_backward_kernel``, which only a loss
#:   gradient of exactly 1.0 skips; flash-attn's Triton ``CrossEntropyLoss`` the same). Older
#:   kernels move a little more: TE 2.x's first version wrote the gradient in its forward kernel
#:   and scaled it in the backward (2+2+2, 2+2: 10 B), flash-attn 1.0's apex-derived xentropy
#:   reads each row twice forward (4 + 4 B).
LOSS_KERNEL_BYTES = {"megatron": (38.0, 6, 14.0, 2), "fused": (2.0, 2, 4.0, 1)}

TRAIN_DTYPES = ("bf16", "fp16", "fp8")
RECOMPUTE = ("none", "selective", "selective-op", "full")
EP_DISPATCHERS = ("alltoall", "deepep")
ELEMENTWISE = ("fused", "eager")

_ADAM_FLOPS = 12  # per parameter: two moment updates, bias corrections, sqrt, divide, decay
# GEMMs whose input is already saved as a norm's output or attention's O (counted once)
_UNFUSED = ("attn_scores", "attn_softmax", "attn_values")  # the unfused attention core
_FED_BY_SAVED = ("qkv_proj", "q_proj", "q_a_proj", "kv_a_proj", "mlp_up", "shared_expert_up",
                 "router", "o_proj")  # fmt: skip


def attention_backward(op: Op, act_bytes: float) -> list[Op]:
    """The fused attention backward of forward ``op``: the main kernel (FlashAttention-2,
    Alg. 2: S and P again, then dV, dP, dQ, dK, 2.5x the forward's matmul FLOPs; reads Q, K, V,
    O, dO, writes dQ, dK, dV) and its two helper kernels (FlashAttention-2 and -3, cuDNN). The
    main kernel adds each KV block's share of dQ into an fp32 accumulator, so a pre-pass reads
    O and dO for D = rowsum(dO * O) and zeroes the accumulator, and a post-pass turns it into
    dQ: per query row and head, O and dO read (16-bit), D written (fp32), the accumulator
    written and read back (fp32) and dQ written (16-bit)."""
    a = op.attention
    assert a is not None
    width = 3 * a.qk_dim + 2 * a.v_dim
    main = replace(
        op, name=f"{op.name}.bwd", attention=replace(a, backward=True),
        flops=op.flops * width / (a.qk_dim + a.v_dim), model_flops=2 * op.model_flops,
        bytes={k: 2 * v for k, v in op.bytes.items()},
    )  # fmt: skip
    rows = a.batch * a.n_q_heads * a.q_len
    per_row = 2 * a.v_dim * act_bytes + 4 + 2 * 4 * a.qk_dim + a.qk_dim * act_bytes
    passes = Op(
        name=f"{op.name}.bwd_passes", kind=OpKind.ELEMENTWISE, family=op.family, dtype=op.dtype,
        flops=2.0 * rows * a.v_dim, model_flops=0.0, bytes={Role.ACTIVATION: rows * per_row},
        count=op.count, kernels=2,
    )  # fmt: skip
    return [main, passes]


@dataclass(frozen=True, slots=True, kw_only=True)
class Chunk:
    """One (stage, virtual chunk) of the pipeline on one chip: one micro-batch's work."""

    stage: int
    chunk: int
    layers: int
    forward: tuple[Op, ...]
    backward: tuple[Op, ...]  # includes the recompute ops, in execution order
    params: float  # parameters this chip holds for the chunk (before ZeRO sharding)
    dense_params: float  # of which replicated over all dp x cp ranks (the rest: experts)
    fsdp_forward: tuple[Op, ...] = ()  # ZeRO-3 parameter gathers, beside the forward compute
    fsdp_backward: tuple[Op, ...] = ()  # ZeRO-3 gathers + gradient reduce-scatters
    grad_sync: tuple[Op, ...] = ()  # DP gradient reduction after the last micro-batch
    param_gather: tuple[Op, ...] = ()  # ZeRO 1/2: updated parameters all-gathered
    activation_bytes: float = 0.0  # saved for the backward, one micro-batch
    checkpointed: int = 0  # blocks a full recompute re-runs in this chunk


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainMemory:
    """Bytes one chip of the fullest pipeline stage holds."""

    weights_bytes: float
    gradient_bytes: float
    optimizer_bytes: float
    activation_bytes: float
    temporary_bytes: float
    stage: int = 0

    @property
    def total_bytes(self) -> float:
        return (
            self.weights_bytes
            + self.gradient_bytes
            + self.optimizer_bytes
            + self.activation_bytes
            + self.temporary_bytes
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainPlan:
    """A training step lowered: per stage its chunks, its optimizer op, the pipeline traffic."""

    stages: tuple[tuple[Chunk, ...], ...]  # [stage][chunk]
    optimizer: tuple[Op, ...]  # per stage
    p2p: Op | None  # activations (and their gradients) between neighbouring stages
    micro_batches: int
    n_chips: int
    tokens: float  # tokens per step over all chips
    memory: tuple[TrainMemory, ...]  # per stage
    model_flops_closed_form: float  # 6·N·tokens + attention, per step, all chips
    describe: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Training:
    """One optimizer step of a training run (see the module docstring)."""

    model: ModelConfig
    seq: int = 2048
    micro_batch: int = 1
    global_batch: int | None = None  # None: one micro-batch per data-parallel replica
    dtype: str = "bf16"  # bf16 | fp16 | fp8 (fp8 GEMMs, bf16 elsewhere)
    recompute: str = "none"
    # the share of the transformer blocks that full recompute checkpoints, evenly spaced (1: all
    # of them). IBM fms-fsdp's selective_checkpointing p (fms_fsdp/policies/ac_handler.py: block
    # i, counted from 1, is checkpointed when i*p first reaches the next half-integer, so
    # p = 1/2 is [ac, no-ac, ac, ...]); torchtitan's selective_ac_option = "N" is 1/N; Megatron's
    # --recompute-method uniform --recompute-num-layers is whole layers, not this
    recompute_blocks: float = 1.0
    zero: int = 0
    # hybrid sharding (PyTorch FSDP's HYBRID_SHARD, FSDP2's 2-D mesh: torchtitan's
    # data_parallel_shard_degree, fms-fsdp's sharding_group_size): ZeRO shards the dense weights,
    # gradients and optimizer states over groups of this many adjacent dp x cp ranks, and the
    # dp_cp / dp_shard groups replicate them, all-reducing the sharded gradients (ZeRO-3: beside
    # each layer's reduce-scatter; ZeRO-1/2: once a step); dense models only; 0 = one group of
    # every dp x cp rank (plain ZeRO / FULL_SHARD)
    dp_shard: int = 0
    # the dtype gradients accumulate and reduce in: "fp32" (Megatron-Core's
    # --accumulate-allreduce-grads-in-fp32 / grad_reduce_in_fp32, PyTorch FSDP's default for
    # fp32 parameters) or "bf16" (NeMo 2.0 / Megatron-Bridge performance recipes'
    # grad_reduce_in_fp32 = False, FSDP MixedPrecision(reduce_dtype=bfloat16)); "" = fp32, or
    # fp16 for fp16 training
    grad_reduce: str = ""
    tp: int = 1
    sp: bool = False  # sequence parallelism in the TP region's norms and dropouts
    pp: int = 1
    vp: int = 1  # virtual stages per device (interleaved 1F1B)
    dp: int = 1
    ep: int = 1
    cp: int = 1
    capacity_factor: float = 0.0  # 0: dropless (the mean load)
    chips_per_node: int = 8
    tokens: float = 0.0  # training-run tokens, for the run totals (0: none)
    # native | fa2 | unfused (workloads.ops.ATTENTION_KERNELS); None: the runtime's, else native
    attention_kernel: str | None = None
    # fused | eager (ELEMENTWISE: eager PyTorch, one kernel a primitive); None: the runtime's
    # (fused without one)
    elementwise: str | None = None
    # packed sequences: each holds seq / sample_len samples and attention stays inside a sample
    # (variable-length / THD flash attention); 0: one sample per sequence
    sample_len: int = 0
    # Megatron-Core's --overlap-moe-expert-parallel-comm ("combined 1F1B", MCore 0.14): one
    # micro-batch's expert-parallel dispatch/combine all-to-all runs on its own stream beside
    # another micro-batch's compute (Megatron-LM docs/user-guide/features/moe_a2a_overlap.md;
    # benchmarks/research/moe-ep-overlap-2026-12-03.md)
    ep_overlap: bool = False
    # Transformer Engine's userbuffers tensor-parallel overlap (NeMo ub_tp_comm_overlap,
    # Megatron-LM --tp-comm-overlap, Megatron-Bridge CommOverlapConfig(tp_comm_overlap=True)):
    # sequence parallelism's all-gathers and reduce-scatters split into chunks that run beside
    # the GEMMs they feed or drain (``_TrainLowering.tp_overlaps``); needs sp and tp > 1
    tp_overlap: bool = False
    # how tokens reach their experts across nodes: "alltoall" (one all-to-all of every token
    # copy, Megatron's alltoall dispatcher) or "deepep" (DeepSeek's DeepEP normal kernels, the
    # flex dispatcher: a token crosses the network once per destination node, to the GPU of
    # the same in-node index, then NVLink forwards it to each expert: deepseek-ai/DeepEP
    # README; DeepSeek-V3 report Sec 3.2.2)
    ep_dispatcher: str = "alltoall"
    # the training software, as a runtime preset's name (workloads.runtime; "" = none named):
    # it sets how elementwise work runs (an explicit elementwise must agree: validate). A
    # training step's kernels run long enough that its host launch and step times hide behind
    # them: not charged
    runtime: str = ""
    # expert tensor parallelism: 0 = --tp (the experts split over the TP group like the dense
    # MLP), or 1: Megatron-Core's MoE parallel folding (--expert-tensor-parallel-size 1), every
    # expert whole on its rank and the expert-parallel group laid over adjacent TP, CP and DP
    # ranks (ep divides tp x cp x dp), so a TP group's ranks hold different experts
    etp: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.runtime, str) and self.runtime:
            # an alias or another case names its preset (an unknown name fails where it loads)
            object.__setattr__(self, "runtime", runtime_preset(self.runtime) or self.runtime)
        if self.elementwise is None:
            mode = load_runtime(self.runtime).elementwise if self.runtime else "fused"
            object.__setattr__(self, "elementwise", mode)
        if self.attention_kernel is None:
            kernel = (
                load_runtime(self.runtime).default_attention_kernel if self.runtime else "native"
            )
            object.__setattr__(self, "attention_kernel", kernel)

    # ---- derived sizes -----------------------------------------------------------------------
    @property
    def n_chips(self) -> int:
        return self.tp * self.cp * self.pp * self.dp

    @property
    def batch(self) -> int:
        return self.global_batch or self.micro_batch * self.dp

    @property
    def expert_tp(self) -> int:
        return self.etp or self.tp

    @property
    def folded(self) -> bool:
        """MoE parallel folding (``--etp 1`` with TP or CP): each expert whole on its rank, an
        EP group ep adjacent ranks across the TP, CP and DP ones (Megatron-Core's expert rank
        generator). Without it an EP group sits inside the data-parallel ranks, tp x cp apart."""
        return self.etp == 1 and (self.tp > 1 or self.cp > 1)

    @property
    def dp_cp(self) -> int:
        """The ranks that hold the same (dense) weights and see different tokens: data parallelism
        times context parallelism. Their gradients are reduced together and ZeRO shards over
        them: Megatron-Core builds DDP's gradient buffers and the distributed optimizer on
        ``parallel_state.get_data_parallel_group(with_context_parallel=True)``
        (megatron/core/optimizer/__init__.py), torchtitan shards FSDP over its ``dp_shard_cp``
        mesh."""
        return self.dp * self.cp

    @property
    def shard(self) -> int:
        """The dp x cp ranks ZeRO shards the dense weights, gradients and optimizer states over:
        ``dp_shard`` (hybrid sharding), else all of them."""
        return self.dp_shard or self.dp_cp

    @property
    def edp(self) -> int:
        """Expert data parallelism: the replicas of each expert, context-parallel ranks included
        (tp x cp x dp = etp x ep x edp)."""
        return self.tp * self.cp * self.dp // (self.expert_tp * self.ep)

    @property
    def window(self) -> int:
        """The sliding window of the model's windowed layers where it is shorter than the
        attention span (a sample), else 0: a window no shorter attends to the whole span."""
        m = self.model
        span = self.sample_len or self.seq
        return m.sliding_window if m.sliding_layers and m.sliding_window < span else 0

    def sliding_among(self, first: int, count: int) -> int:
        """How many of the layers ``first`` .. ``first + count - 1`` are sliding-window ones, the
        model's ``sliding_layers`` spread evenly over its layers (the pattern is not modelled:
        every second layer comes out exactly)."""
        if not self.window:
            return 0
        m = self.model
        # layer i slides where ceil((i + 1) S / L) > ceil(i S / L): the first one does (layers
        # 0, 2, 4, ... of Gemma 2 and gpt-oss)
        s, n = m.sliding_layers, m.n_layers

        def ceil(i: int) -> int:
            return -(-i * s // n)

        return ceil(first + count) - ceil(first)

    def checkpointed(self, first: int, count: int) -> int:
        """How many of the blocks ``first`` .. ``first + count - 1`` (counted from 0 over the
        model) full recompute checkpoints: all of them, or the evenly spaced share
        ``recompute_blocks`` (fms-fsdp's rule: the first n blocks hold round(n*p), halves up);
        none without full recompute."""
        if self.recompute != "full":
            return 0
        p = self.recompute_blocks
        if p >= 1:
            return count
        return math.floor((first + count) * p + 0.5) - math.floor(first * p + 0.5)

    @property
    def micro_batches(self) -> int:
        return self.batch // (self.micro_batch * self.dp)

    @property
    def grad_bytes(self) -> float:
        """Bytes of a gradient as it accumulates and reduces (``grad_reduce``)."""
        if self.grad_reduce:
            return 4.0 if self.grad_reduce == "fp32" else 2.0
        return 2.0 if self.dtype == "fp16" else 4.0

    def _local(self, stride: int, group: int) -> int:
        """Members of a group whose ranks are ``stride`` apart that share one node."""
        return max(1, min(group, self.chips_per_node // stride)) if stride else group

    # ---- checks ------------------------------------------------------------------------------
    def validate(self) -> None:
        m, w = self.model, "train"
        check_attention_kernel(w, self.attention_kernel, training=True)
        for name in ("seq", "micro_batch", "tp", "pp", "vp", "dp", "ep", "cp"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                flag = name.replace("_", "-")
                raise WorkloadError(f"{w}: --{flag} must be an integer >= 1, got {value!r}")
        if self.vp > 1 and self.pp == 1:
            raise WorkloadError(
                f"{w}: --vp {self.vp} interleaves virtual stages over pipeline stages; "
                "it needs --pp > 1 (or drop --vp)"
            )
        if not (self.tokens >= 0 and math.isfinite(self.tokens)):
            raise WorkloadError(
                f"{w}: --tokens (training-run tokens) must be >= 0, got {self.tokens!r}"
            )
        check_choice(w, "--dtype", self.dtype, TRAIN_DTYPES)
        if m.moe is not None and m.moe.weight_format:
            raise WorkloadError(
                f"{w}: {m.name}'s quantised ({m.moe.weight_format}) experts are modelled for "
                "inference only (decode, prefill, serve); train a model without them"
            )
        check_choice(w, "--recompute", self.recompute, RECOMPUTE)
        p = self.recompute_blocks
        if not (isinstance(p, (int, float)) and 0 < p <= 1):
            raise WorkloadError(
                f"{w}: --recompute-blocks is the share of blocks full recompute checkpoints, "
                f"in (0, 1]; got {p!r}"
            )
        if p != 1 and self.recompute != "full":
            raise WorkloadError(
                f"{w}: --recompute-blocks {p:g} checkpoints whole blocks; it needs "
                f"--recompute full (got --recompute {self.recompute})"
            )
        if self.elementwise not in ELEMENTWISE:
            raise WorkloadError(
                f"{w}: --elementwise must be one of {', '.join(ELEMENTWISE)}, "
                f"got {self.elementwise!r}"
            )
        if self.runtime and not load_runtime(self.runtime).training:
            stacks = ", ".join(n for n in list_runtimes() if load_runtime(n).training)
            raise WorkloadError(
                f"{w}: --runtime {self.runtime} is not a training runtime; training runtimes: "
                f"{stacks}"
            )
        if self.runtime and load_runtime(self.runtime).elementwise != self.elementwise:
            raise WorkloadError(
                f"{w}: --elementwise {self.elementwise} contradicts --runtime {self.runtime} "
                f"({load_runtime(self.runtime).elementwise}); give one of them"
            )
        if self.zero not in (0, 1, 2, 3):
            raise WorkloadError(f"{w}: --zero must be 0, 1, 2 or 3, got {self.zero!r}")
        if self.grad_reduce not in ("", "fp32", "bf16", "fp16"):
            raise WorkloadError(
                f"{w}: --grad-reduce must be fp32, bf16 or fp16 (the dtype gradients accumulate "
                f"and reduce in), got {self.grad_reduce!r}"
            )
        if self.dp_shard:
            g = self.dp_shard
            bad = not isinstance(g, int) or isinstance(g, bool) or g < 1
            if bad or self.dp_cp % g or g % self.cp:
                raise WorkloadError(
                    f"{w}: --dp-shard must be an integer that divides dp x cp ({self.dp_cp}) and "
                    f"is a multiple of cp ({self.cp}), or 0: shard over all of them; got {g!r}"
                )
            if m.moe is not None:
                raise WorkloadError(
                    f"{w}: --dp-shard (hybrid sharding) is modelled for dense models only; "
                    f"{m.name}'s experts would need their own hybrid groups: drop --dp-shard"
                )
            if not self.zero:
                raise WorkloadError(
                    f"{w}: --dp-shard {g} shards ZeRO's states, but --zero is 0; give --zero 1-3 "
                    "(3 = FSDP's HYBRID_SHARD) or drop --dp-shard"
                )
        if self.sample_len:
            s = self.sample_len
            if not isinstance(s, int) or s < 1 or self.seq % s:
                raise WorkloadError(
                    f"{w}: --sample-len must be an integer that divides --seq {self.seq} "
                    f"(or 0: unpacked), got {s!r}"
                )
            if self.cp > 1:
                raise WorkloadError(
                    f"{w}: --sample-len (packed samples) has no context parallelism; use --cp 1"
                )
        if self.window and self.cp > 1:
            raise WorkloadError(
                f"{w}: {m.name}'s {m.sliding_window}-token sliding window is shorter than the "
                f"{self.sample_len or self.seq}-token sequences, and ring attention (--cp "
                f"{self.cp}) over a window is not modelled; use --cp 1"
            )
        if self.window and self.attention_kernel == "unfused":
            raise WorkloadError(
                f"{w}: {m.name}'s sliding window needs a flash attention kernel; "
                "--attention-kernel unfused computes the full square (use native or fa2)"
            )
        if m.n_heads % self.tp:
            divisors = [t for t in range(1, min(m.n_heads, 64) + 1) if m.n_heads % t == 0]
            raise WorkloadError(
                f"{w}: --tp {self.tp} must divide the {m.n_heads} attention heads of {m.name}; "
                f"choose one of {', '.join(map(str, divisors))}"
            )
        if self.seq % (self.cp * (self.tp if self.sp else 1)):
            raise WorkloadError(
                f"{w}: --seq {self.seq} must divide by --cp {self.cp}"
                + (f" x --tp {self.tp} (sequence parallelism)" if self.sp else "")
            )
        if self.pp * self.vp > m.n_layers:
            raise WorkloadError(
                f"{w}: --pp {self.pp} x --vp {self.vp} must be <= the {m.n_layers} layers of {m.name}"
            )
        if self.global_batch is not None and (
            isinstance(self.global_batch, bool)
            or not isinstance(self.global_batch, int)
            or self.global_batch < 1
        ):
            raise WorkloadError(
                f"{w}: --global-batch must be an integer >= 1, got {self.global_batch!r} "
                "(leave it out for one micro-batch per data-parallel replica)"
            )
        if self.global_batch and self.global_batch % (self.micro_batch * self.dp):
            raise WorkloadError(
                f"{w}: --global-batch {self.global_batch} must be a multiple of --micro-batch "
                f"{self.micro_batch} x --dp {self.dp} = {self.micro_batch * self.dp}"
            )
        if self.vp > 1 and self.micro_batches % self.pp:
            raise WorkloadError(
                f"{w}: the interleaved schedule (--vp {self.vp}) needs the micro-batch count "
                f"({self.micro_batches}) to be a multiple of --pp {self.pp}"
            )
        if self.etp not in (0, 1, self.tp):
            raise WorkloadError(
                f"{w}: --etp must be 1 (MoE parallel folding) or --tp {self.tp}, got {self.etp!r}"
            )
        folded = self.folded
        if folded:
            if m.moe is None:
                raise WorkloadError(f"{w}: --etp 1 lays experts out; {m.name} is dense")
            if self.tp > 1 and not self.sp:
                raise WorkloadError(
                    f"{w}: --etp 1 with --tp {self.tp} needs --sp (each TP rank dispatches "
                    "its share of the sequence, as Megatron-Core requires)"
                )
        if self.ep > 1:
            if m.moe is None:
                raise WorkloadError(f"{w}: --ep {self.ep} needs an MoE model; {m.name} is dense")
            if folded:
                if (self.tp * self.cp * self.dp) % self.ep:
                    raise WorkloadError(
                        f"{w}: --ep {self.ep} must divide --tp {self.tp} x --cp {self.cp} x --dp "
                        f"{self.dp} with --etp 1 (experts are sharded over the TP, context- and "
                        "data-parallel ranks)"
                    )
            elif self.dp % self.ep:
                raise WorkloadError(
                    f"{w}: --ep {self.ep} must divide --dp {self.dp} (experts are sharded over "
                    "data-parallel ranks; --etp 1 lays them over --tp as well)"
                )
            if m.moe.n_experts % self.ep:
                raise WorkloadError(
                    f"{w}: --ep {self.ep} must divide the {m.moe.n_experts} experts of {m.name}"
                )
        if self.ep_dispatcher not in EP_DISPATCHERS:
            raise WorkloadError(
                f"{w}: --ep-dispatcher must be one of {', '.join(EP_DISPATCHERS)}, "
                f"got {self.ep_dispatcher!r}"
            )
        if self.ep_overlap:
            if self.ep == 1:
                raise WorkloadError(
                    f"{w}: --ep-overlap hides expert-parallel all-to-all; it needs --ep > 1"
                )
            if self.pp > 1 and self.vp == 1:
                raise WorkloadError(
                    f"{w}: --ep-overlap with --pp {self.pp} needs the interleaved schedule "
                    "(--vp > 1), as Megatron-Core's combined 1F1B does"
                )
        if self.tp_overlap and not (self.sp and self.tp > 1):
            raise WorkloadError(
                f"{w}: --tp-comm-overlap overlaps sequence parallelism's all-gathers and "
                f"reduce-scatters with the GEMMs; it needs --sp and --tp > 1 (got --tp {self.tp}"
                f"{' with --sp' if self.sp else ' without --sp'})"
            )
        cf = self.capacity_factor
        if not (cf == 0 or (cf >= 1 and math.isfinite(cf))):
            raise WorkloadError(
                f"{w}: --capacity-factor must be >= 1 (or 0 for dropless), "
                f"got {self.capacity_factor!r}"
            )

    # ---- lowering ------------------------------------------------------------------------------
    def layer_split(self) -> list[int]:
        """Layers per virtual stage (stage-major within a chunk), as even as the count allows."""
        n = self.pp * self.vp
        base, extra = divmod(self.model.n_layers, n)
        return [base + (1 if i < extra else 0) for i in range(n)]

    def lower(self) -> TrainPlan:
        self.validate()
        low = _TrainLowering(self)
        split = self.layer_split()
        stages = []
        for s in range(self.pp):
            chunks = []
            for c in range(self.vp):
                virtual = c * self.pp + s
                first_layer = sum(split[:virtual])
                chunks.append(
                    low.chunk(
                        s,
                        c,
                        first_layer,
                        split[virtual],
                        first=virtual == 0,
                        last=virtual == len(split) - 1,
                    )
                )
            stages.append(tuple(chunks))
        optimizer = tuple(low.optimizer(chunks) for chunks in stages)
        memory = tuple(low.memory(s, chunks) for s, chunks in enumerate(stages))
        return TrainPlan(
            stages=tuple(stages),
            optimizer=optimizer,
            p2p=low.p2p(),
            micro_batches=self.micro_batches,
            n_chips=self.n_chips,
            tokens=float(self.batch * self.seq),
            memory=memory,
            model_flops_closed_form=self.closed_form_model_flops(),
            describe=self.describe(),
        )

    def closed_form_model_flops(self) -> float:
        """6·N_active·tokens + 3 x the causal attention forward (Kaplan et al. 2020, Table 1)."""
        m = self.model
        tokens = self.batch * self.seq
        attn = 0.0
        if m.mla is None:
            qk = v = m.head_dim
        else:
            qk, v = m.mla.qk_nope_head_dim + m.mla.qk_rope_head_dim, m.mla.v_head_dim
        s = self.sample_len or self.seq
        # causal within each sample (a sliding layer's within its window), per sequence and head
        full = m.n_layers - self.sliding_among(0, m.n_layers)
        pairs = self.seq / s * (full * causal_pairs(s, s) + (m.n_layers - full)
                                * causal_pairs(s, s, self.window))  # fmt: skip
        attn = 2 * pairs * (qk + v) * m.n_heads * self.batch
        return 6.0 * m.n_matmul_params(active=True) * tokens + 3.0 * attn

    def describe(self) -> dict:
        return {
            "kind": "train",
            "model": self.model.name,
            "seq": self.seq,
            "micro_batch": self.micro_batch,
            "global_batch": self.batch,
            "micro_batches": self.micro_batches,
            "dtype": self.dtype,
            "recompute": self.recompute,
            **({"recompute_blocks": self.recompute_blocks} if self.recompute_blocks != 1 else {}),
            "zero": self.zero,
            **({"dp_shard": self.dp_shard} if self.dp_shard and self.shard < self.dp_cp else {}),
            **({"grad_reduce": self.grad_reduce} if self.grad_reduce else {}),
            "tp": self.tp,
            "sp": self.sp,
            "pp": self.pp,
            "vp": self.vp,
            "dp": self.dp,
            "ep": self.ep,
            "cp": self.cp,
            **({"capacity_factor": self.capacity_factor} if self.capacity_factor else {}),
            "attention_kernel": self.attention_kernel,
            "elementwise": self.elementwise,
            **({"runtime": self.runtime} if self.runtime else {}),
            **({"sample_len": self.sample_len} if self.sample_len else {}),
            **({"ep_overlap": True} if self.ep_overlap else {}),
            **({"tp_overlap": True} if self.tp_overlap else {}),
            **({"ep_dispatcher": self.ep_dispatcher} if self.ep > 1 else {}),
            **({"etp": self.expert_tp} if self.expert_tp != self.tp else {}),
        }


def _output_bytes(op: Op, c_bytes: float) -> Op:
    """GEMM ``op`` writing (and, accumulating, reading) ``c_bytes`` per output element."""
    g = op.gemm
    assert g is not None
    extra = g.groups * g.m * g.n * (c_bytes - g.c_bytes)
    by = {**op.bytes, Role.ACTIVATION: op.bytes[Role.ACTIVATION] + extra}
    return replace(op, gemm=replace(g, c_bytes=c_bytes), bytes=by)


def _scale(op: Op, f: float) -> Op:
    """The op on a fraction ``f`` of its rows (sequence-parallel norms)."""
    return replace(
        op,
        flops=op.flops * f,
        model_flops=op.model_flops * f,
        bytes={k: v if k == Role.WEIGHT else v * f for k, v in op.bytes.items()},
        scalar_kernels=scaled_scalar(op, f),
    )


class _TrainLowering:
    """Per-chip ops of one micro-batch, built on the prefill lowering of workloads/llm.py."""

    def __init__(self, t: Training) -> None:
        self.t, self.m = t, t.model
        self.rows = t.micro_batch * t.seq // t.cp  # token rows through every GEMM on a chip
        # the forward is a prefill of micro_batch sequences of seq / cp tokens each (packed:
        # of micro_batch x seq / sample_len samples of sample_len tokens each)
        span = t.sample_len or t.seq // t.cp
        pre = Prefill(model=t.model, batch=self.rows // span, dtype=t.dtype, tp=t.tp,
                      attention_kernel="native" if t.attention_kernel == "unfused"
                      else t.attention_kernel)  # fmt: skip
        # (fp8: Transformer Engine's cast-transpose kernels, ``_fp8_inputs``, not inference's)
        self.fwd = _Lowering(pre, q_len=span, kv_len=span, phase="prefill",
                             quantised_inputs=False)  # fmt: skip
        self.ab = 2.0
        self.b = Builder(t.dtype, self.ab, 1.0 if t.dtype == "fp8" else 2.0)
        self.b16 = Builder("bf16" if t.dtype == "fp8" else t.dtype, self.ab, 2.0)
        self.tp_local = t._local(1, t.tp)
        self.cp_local = t._local(t.tp, t.cp)
        # the EP group's ranks are tp x cp apart, or, folded over the TP ranks, adjacent
        self.ep_local = t._local(1 if t.folded else t.tp * t.cp, t.ep)
        # attention stays 16-bit under fp8 training (Transformer Engine's fused attention)
        self.fp8 = t.dtype == "fp8"
        self.eager = t.elementwise == "eager"
        # the eager norm's and RoPE's kernels are the runtime's (the reference's without one)
        runtime = load_runtime(t.runtime) if t.runtime else load_runtime()
        self.norm_key = runtime.norm_primitive(self.m.norm)
        self.rope_key = runtime.rope_primitive
        self.deepep_sms = runtime.deepep_num_sms  # the cores DeepEP's kernels hold
        self.loss = runtime.loss(self.eager)  # the cross-entropy's kernels (LOSS_KERNEL_BYTES)
        # Megatron-Core's DDP adds a parameter's 16-bit gradient into its main_grad buffer in a
        # backward hook (distributed_data_parallel.py _make_backward_post_hook:
        # param.main_grad.add_(param.grad.data)) unless the wgrad GEMM accumulated it there
        # (fused_wgrad_accumulation): the embedding's, each micro-batch
        self.main_grad_hook = runtime.fused_wgrad_accumulation
        # _qkv_split_copies (MLA splits its own way: a cat of the RoPE and non-RoPE parts)
        self.split_copies = runtime.qkv_split_copies and self.m.mla is None
        # cycles an element of the eager primitives' scalar kernels (--elementwise eager under
        # a fused runtime: plain PyTorch's, whose primitives these are)
        eager_rt = runtime if runtime.elementwise == "eager" else load_runtime("pytorch-eager")
        self.scalar_rates = eager_rt.scalar_rates
        # bytes per element a weight-gradient GEMM moves for its output: a read and a write of
        # the gradient buffer (fp32; fp16 for fp16 training) where the runtime fuses the
        # accumulation into the GEMM, else the 16-bit gradient written once (fp8 GEMMs too:
        # Transformer Engine returns a 16-bit weight gradient)
        self.wgrad_out = 2.0 * t.grad_bytes if runtime.fused_wgrad_accumulation else 2.0
        # PyTorch FSDP's own kernels (fsdp_kernels): ZeRO-3 over a shard group of 2 or more
        self.fsdp = runtime.fsdp if t.zero == 3 and t.shard > 1 else ""
        # eager ops' backward: (bytes as a multiple of the forward's, the scalar kernels (output
        # elements per byte of the forward's activations, bytes per output element, path),
        # kernels), by op name
        self._eager_bwd: dict[str, tuple[float, tuple, int]] = {}

    # ---- forward of one layer ----------------------------------------------------------------
    def _tp_comm(self, op: Op) -> list[Op]:
        """TP all-reduce as is, or with sequence parallelism a reduce-scatter (the forward g)."""
        t = self.t
        c = op.collective
        assert c is not None
        kind = "reduce_scatter" if t.sp else "all_reduce"
        made = self.b.collective(op.name.replace("all_reduce", kind), kind, c.bytes, c.group,
                                 self.tp_local)  # fmt: skip
        return [made] if made else []

    def _sp_gather(self, name: str) -> list[Op]:
        t = self.t
        if not t.sp:
            return []
        op = self.b.collective(name, "all_gather", self.rows * self.m.hidden * self.ab, t.tp,
                               self.tp_local)  # fmt: skip
        return [op] if op else []

    def _fix(self, ops: list[Op]) -> list[Op]:
        """Adapt prefill ops to training: SP norms, TP collectives, CP attention, fp8 attention."""
        t, out = self.t, []
        for op in ops:
            if op.kind == OpKind.COLLECTIVE:
                out += self._tp_comm(op)
                continue
            if op.family == "norm":
                if self.eager:
                    op = self._eager(op, self.norm_key, op.flops / _NORM_FLOPS[self.m.norm])
                out.append(_scale(op, 1 / t.tp) if t.sp else op)
                out += self._sp_gather(op.name.replace("norm", "sp_all_gather"))
                continue
            if op.kind == OpKind.ATTENTION:
                out += self._eager_attention(op) if self.eager else self._attention(op)
                continue
            if op.name == "rope_kv_write":  # training writes no cache: K, V stay activations
                if not op.flops:  # learned or ALiBi positions: no rotary kernel, nothing to run
                    continue
                by = dict(op.bytes)
                by[Role.ACTIVATION] = by.get(Role.ACTIVATION, 0.0) + by.pop(Role.KV, 0.0)
                op = replace(op, name="rope", bytes=by)
                if self.eager:
                    op = self._eager(op, self.rope_key, op.flops / _ROPE_FLOPS)
                if self.split_copies:
                    out += [op, self._qkv_split_copies()]
                    continue
            elif self.eager and op.name.split(".")[-1] in ("q_a_norm", "kv_a_norm"):
                op = self._eager(op, self.norm_key, op.flops / _NORM_FLOPS[self.m.norm], False)
            elif self.eager and op.name.endswith("_act"):
                key = "gated_act" if self.m.gated_mlp else "act"
                op = self._eager(op, key, op.flops / _ACT_FLOPS.get(self.m.activation, 5))
            out.append(op)
        return out

    def _qkv_split_copies(self) -> Op:
        """The copies around Megatron-Core's split of the fused QKV projection's output
        (megatron/core/transformer/attention.py ``get_query_key_value_tensors``): q, k and v are
        views of [s, b, groups, (q per group + 2) x head dim] (``SplitAlongDim``); with GQA the
        query's ``reshape`` to [s, b, heads, head dim] cannot be a view where a rank holds more
        than one KV group (with one it merges a size-1 dimension: a view), so it copies; RoPE writes
        new q and k while v stays a strided view, a layout Transformer Engine's
        ``get_qkv_layout`` refuses ('not_supported': it makes q, k and v ``.contiguous()``), so v
        is copied (16-bit, read and written). The backward ``SplitAlongDim`` finds the three
        gradients in separate buffers and concatenates them into the fused output's gradient
        (read and written). A model without RoPE and with as many KV heads as query heads keeps
        the views (TE's interleaved sbh3d layout): it runs no rope op, so none of this.
        NB: under selective recompute Megatron re-runs the v copy with the core attention
        (get_qkv_layout runs inside it); not charged."""
        f = self.fwd
        nq, nkv = f.heads()
        hd = self.m.head_dim
        per = 2.0 * self.ab * f.T * hd  # bytes a head's column moves, read and written
        query = nq > nkv > 1  # the query's reshape copies
        fwd = per * (nkv + (nq if query else 0))
        bwd = per * (nq + 2 * nkv)
        op = replace(self.b16.elementwise("qkv_split_copy", "attention", 0, 0, 0.0),
                     bytes={Role.ACTIVATION: fwd}, kernels=2 if query else 1)  # fmt: skip
        self._eager_bwd["qkv_split_copy"] = (bwd / fwd, (), 1)
        return op

    def _eager(self, op: Op, key: str, elems: float, residual: bool = True) -> Op:
        """``op`` as eager PyTorch runs it: the primitives of ``EAGER_PRIMITIVES[key]`` on ``elems``
        (``residual`` false: a norm with no residual add beside it, MLA's latent norms: less the
        add's 6 B and one kernel each way)."""
        fwd, fwd_k, bwd, bwd_k = EAGER_PRIMITIVES[key] if residual else eager_without_residual(key)
        base = op.name.split(".")[-1]
        sums = {"attn_norm": 2, "mlp_norm": 1 if self.m.gated_mlp else 0}.get(base, 0)
        bwd, bwd_k = bwd + 6.0 * sums, bwd_k + sums
        by = {Role.ACTIVATION: fwd * elems}
        if Role.WEIGHT in op.bytes:
            by[Role.WEIGHT] = op.bytes[Role.WEIGHT]
        # the backward's scalar kernels per byte of the forward's activations (which an SP norm's
        # forward scales with its rows)
        per_byte = tuple((e / fwd, per, path) for e, per, path in scalar_per(key, backward=True))
        self._eager_bwd[base] = (bwd / fwd, per_byte, bwd_k)
        # (the residual add beside a norm runs contiguous: none of it scalar)
        return scalar(replace(op, bytes=by, kernels=fwd_k), scalar_per(key), self.scalar_rates,
                      elems)  # fmt: skip

    def _eager_attention(self, op: Op) -> list[Op]:
        """Attention with eager PyTorch's copies around it: GQA's repeat_kv before the kernel,
        and after the matmul attention (``--attention-kernel unfused``) the output's
        transpose(1, 2).contiguous() (``EAGER_PRIMITIVES``). A flash kernel through SDPA writes
        its output in the queries' layout (mha_fwd: empty_like(q)), and training code passes
        q as a transposed view of the projection's (batch, seq, heads, dim) output (torchtitan,
        fms-fsdp; llm-foundry calls flash-attn on that layout directly), so there the
        transpose back is already contiguous and .contiguous() launches nothing
        (benchmarks/research/eager-broadcast-counts-2026-12-07.md section 1.5)."""
        a = op.attention
        assert a is not None
        ops = []
        rep = a.n_q_heads // max(1, a.n_kv_heads)
        if rep > 1:
            kv = a.batch * a.q_len * a.n_kv_heads * (a.qk_dim + a.v_dim)
            copy = self.b16.elementwise("repeat_kv", "attention", kv, rep * kv, 0.0)
            # K and V: read once, write rep copies, every element on the strided kernel (the
            # expanded source has stride 0 over the repeats); the backward sums them (a reduction)
            ops.append(scalar(replace(copy, kernels=2), [(1.0, 2.0 + 2.0 / rep, STRIDED)],
                              self.scalar_rates, rep * kv))  # fmt: skip
            self._eager_bwd["repeat_kv"] = (1.0, (), 2)
        ops += self._attention(op)
        if self.t.attention_kernel == "unfused":
            o = a.batch * a.q_len * a.n_q_heads * a.v_dim
            copy = self.b16.elementwise("attn_out_copy", "attention", 0, 0, 0.0)
            ops.append(self._eager(copy, "attn_out_copy", o))
        return ops

    def _attention(self, op: Op) -> list[Op]:
        """Causal flash attention; with context parallelism a ring over cp chips (Megatron CP).

        Each of cp ranks holds 2 of 2·cp sequence chunks of c tokens (load-balanced), so it
        computes 1/cp of the causal pairs against the whole sequence's K/V, passing K/V around
        the ring beside the attention (cp - 1 hops). Transformer Engine's ring
        (AttnFuncWithCPAndKVP2P, TE 1.11-2.1 transformer_engine/pytorch/attention.py) calls the
        kernel once per step on 2c² pairs (the local chunks causal, then full queries against
        half the K/V or half the queries against all of it), then merges the steps' outputs in
        16-bit: per layer, on the rank that merges most (the last), a zeroed output and cp
        corrections of it (read it and a step's output, write it: 2 + 6·cp bytes per output
        element) and K, V concatenated into the send buffer (4 bytes per K/V element). Its
        backward accumulates dQ over cp steps (6·cp - 2 bytes per element) and dK, dV as they
        ride the ring back (concatenated and added each step, 10·cp + 4 bytes per K/V element,
        rank 0 the most) (``_cp_merge``).
        """
        t, a = self.t, op.attention
        assert a is not None
        dt = "bf16" if self.fp8 else op.dtype
        if t.attention_kernel == "unfused":
            if t.cp > 1:
                raise WorkloadError(
                    "train: --attention-kernel unfused has no context "
                    "parallelism (ring attention is a flash kernel); use --cp 1"
                )
            return self._unfused_attention(a, dt)
        if t.cp == 1:
            return [replace(op, dtype=dt)]
        # cp kernel calls of 2c² pairs each: a.q_len = 2c local queries against c keys
        chunk = max(1, math.ceil(t.seq / (2 * t.cp)))
        spec = replace(a, causal=False, kv_len=chunk)
        b = Builder(dt, self.ab, self.ab)
        attn = replace(b.attention("attention", spec), count=t.cp, kernels=1)
        hop = a.batch * a.n_kv_heads * a.q_len * a.kv_bytes_per_token
        # each hop a pair's own send and receive: Transformer Engine batches them on the CP
        # group only for cp = 2 (batch_p2p_comm = NVTE_BATCH_MHA_P2P_COMM or cp_size == 2), else
        # plain isend/irecv, which PyTorch runs on a 2-rank communicator per pair: 2 ranks'
        # NCCL channels either way
        ring = b.collective("cp_ring_kv", "send_recv", (t.cp - 1) * hop, 2,
                            2 if self.cp_local > 1 else 1, comm=2, messages=t.cp - 1)  # fmt: skip
        # the cp - 1 hops fly beside all the attention calls but the last, which waits for
        # the last hop (TE's AttnFuncWithCPAndKVP2P: step i's K/V arrive during step i - 1)
        ring_ops = [replace(ring, overlaps_previous=(t.cp - 1) / t.cp)] if ring else []
        return [attn] + ring_ops + [self._cp_merge(a)]

    def _cp_merge(self, a) -> Op:
        """Transformer Engine's ring-attention merge work per layer (``_attention``), forward,
        with its backward's bytes and kernels registered for ``backward``."""
        cp = self.t.cp
        out = a.batch * a.q_len * a.n_q_heads * a.v_dim
        kv = a.batch * a.q_len * a.n_kv_heads * (a.qk_dim + a.v_dim)
        fwd = (2 + 6 * cp) * out + 4 * kv  # bytes, 16-bit tensors
        bwd = (6 * cp - 2) * out + (10 * cp + 4) * kv
        op = Op(name="cp_merge", kind=OpKind.ELEMENTWISE, family="attention", dtype="bf16",
                flops=float(cp * out), model_flops=0.0, bytes={Role.ACTIVATION: float(fwd)},
                kernels=cp + 2)  # fmt: skip
        self._eager_bwd["cp_merge"] = (bwd / fwd, (), 3 * cp + 1)
        return op

    def _unfused_attention(self, a, dt: str) -> list[Op]:
        """Attention as 2020-22 Megatron-LM ran it (before FlashAttention): S = QK^T over the
        full square (the causal mask is applied after), a fused scale-mask-softmax that reads S
        and writes P, then O = PV. The score matrix goes through memory three times and P is kept
        for the backward (Korthikanti et al. 2022, Sec. 4.1: the 2·a·s²·b softmax-output term;
        no attention dropout is modelled). Model FLOPs count only the causal pairs."""
        b = Builder(dt, self.ab, self.ab)
        heads = a.batch * a.n_q_heads
        useful = a.score_pairs / (a.q_len * a.kv_len)
        scores = b.gemm("attn_scores", "attention", a.q_len, a.kv_len, a.qk_dim, heads)
        elems = heads * a.q_len * a.kv_len
        softmax = b.elementwise("attn_softmax", "attention", elems, elems, 5.0 * elems)
        values = b.gemm("attn_values", "attention", a.q_len, a.v_dim, a.kv_len, heads)
        return [replace(scores, model_flops=scores.flops * useful), softmax,
                replace(values, model_flops=values.flops * useful)]  # fmt: skip

    def _fp8_inputs(self, ops: list[Op]) -> list[Op]:
        """fp8 training casts both GEMM inputs to fp8 (the cast fused into the op before);
        outputs stay 16-bit (Micikevicius et al. 2022, "FP8 formats for deep learning", Sec. 4)."""
        if not self.fp8:
            return ops
        out = []
        for op in ops:
            g = op.gemm
            if g is not None and op.dtype == "fp8" and g.a_bytes != 1.0:
                elems = g.groups * g.m * g.k
                op = fp8_input(op)
                # Transformer Engine's cast-transpose: read the 16-bit input, write it as fp8
                # and as transposed fp8 (for the weight gradient), with its amax. Its backward
                # twin casts the output gradient. NB: charged as a separate kernel even where TE
                # fuses the cast into the norm before (qkv, fc1): a few % pessimistic there.
                out.append(self.b16.elementwise(f"{op.name.split('.')[-1]}_fp8_cast", op.family,
                                                elems, elems, 2.0 * elems))  # fmt: skip
            out.append(op)
        return out

    def _attention_layer(self, window: int) -> list[Op]:
        """One layer's attention block (a sliding-window layer's named ``sliding.*``)."""
        ops = self._fix(self.fwd.attention_block(window))
        return [op.repeated(1, "sliding") for op in ops] if window else ops

    def dense_layer(self, window: int = 0) -> list[Op]:
        return self._fp8_inputs(
            self._attention_layer(window) + self._fix(self.fwd.dense_mlp_block())
        )

    def _ep_exchange(self, what: str, tokens: float) -> list[Op]:
        """The expert-parallel all-to-all that sends (dispatch) or returns (combine) each
        token's top-k copies: one all-to-all over the group, or, with DeepEP across nodes,
        each token once per destination node over the network (the expected distinct nodes
        of its experts, ``MoEConfig.nodes_per_token``) and then over NVLink inside it."""
        t, moe = self.t, self.m.moe
        assert moe is not None
        copies = tokens * moe.top_k * self.m.hidden * self.ab
        if t.ep_dispatcher != "deepep" or self.ep_local >= t.ep:
            op = self.b.collective(f"ep_{what}_all_to_all", "all_to_all", copies, t.ep,
                                   self.ep_local)  # fmt: skip
            if op and t.ep_dispatcher == "deepep":  # DeepEP's own NVLink kernels, not NCCL's
                op = replace(op, collective=replace(op.collective, library="deepep",  # type: ignore[arg-type]
                                                    cores=self.deepep_sms))  # fmt: skip
            return [op] if op else []
        nodes = -(-t.ep // self.ep_local)
        once = tokens * self.m.hidden * self.ab * moe.nodes_per_token(nodes)
        net = self.b.collective(f"ep_{what}_network", "all_to_all", once, nodes, 1)
        nvl = self.b.collective(f"ep_{what}_nvlink", "all_to_all", copies, self.ep_local,
                                self.ep_local)  # fmt: skip
        return [replace(op, collective=replace(op.collective, library="deepep",  # type: ignore[arg-type]
                                               cores=self.deepep_sms))
                for op in (net, nvl) if op]  # fmt: skip

    def moe_layer(self, window: int = 0) -> list[Op]:
        """Router, EP dispatch all-to-all, grouped expert GEMMs at the capacity, combine."""
        t, m, moe = self.t, self.m, self.m.moe
        assert moe is not None
        T, h = self.rows, m.hidden
        ops = self._attention_layer(window)
        # with sequence parallelism each TP rank holds seq / tp of the tokens at the MoE input:
        # it routes and dispatches only those, and the TP group all-gathers the token copies its
        # experts received (each rank runs expert_ffn / tp of every local expert) and
        # reduce-scatters their outputs before the combine (Megatron-Core's token dispatchers,
        # which require SP with TP and MoE); the SP gather and reduce-scatter of the hidden
        # states stay only for the shared experts, a dense MLP under SP
        split = t.sp and t.tp > 1
        folded = t.folded  # each rank's experts whole: no TP gather around them
        norm = self._fix([self.fwd.norm("mlp_norm", h)])
        if split and not moe.n_shared_experts:
            norm = [op for op in norm if op.kind != OpKind.COLLECTIVE]
        ops += norm
        sent = T / t.tp if split else T
        ops.append(self.b16.gemm("router", "moe", sent, moe.n_experts, h))
        # top-k, the permute before the experts and the unpermute after them: three kernels at
        # least (Megatron-Core's router and token dispatcher run more, as PyTorch ops)
        ops.append(replace(
            self.b16.elementwise("route_permute", "moe", sent * (moe.n_experts + h * moe.top_k),
                                 sent * h * moe.top_k * 2, 5.0 * sent * moe.n_experts),
            kernels=3))  # fmt: skip
        ops += self._ep_exchange("dispatch", sent)
        copies = T * moe.top_k * h * self.ab  # the TP group's token copies, gathered
        if split and not folded:
            gather = self.b.collective("moe_tp_all_gather", "all_gather", copies, t.tp,
                                       self.tp_local)  # fmt: skip
            ops += [gather] if gather else []
        local = moe.n_experts // t.ep
        cf = t.capacity_factor or 1.0
        # per local expert, its share of the tokens the group sends: the TP group's all T
        # (gathered), or, folded, this rank's own (as many arrive as it sends)
        rows = (sent if folded else T) * moe.top_k * cf / local
        expert_ffn = math.ceil(moe.expert_ffn / t.expert_tp)
        experts = self.fwd.mlp("experts", "moe", expert_ffn, rows, local)
        if cf > 1:  # padding to the capacity is executed, not model, work
            experts = [replace(op, model_flops=op.model_flops / cf) for op in experts]
        elif not t.capacity_factor:  # dropless: each expert gets the tokens that chose it, of
            # the ep ranks' tokens (each rank's sent ones)
            experts = routed(experts, (sent if folded else T) * t.ep, moe.top_k / moe.n_experts)
        ops += experts
        if split and not folded:
            scatter = self.b.collective("moe_tp_reduce_scatter", "reduce_scatter", copies, t.tp,
                                        self.tp_local)  # fmt: skip
            ops += [scatter] if scatter else []
        ops += self._ep_exchange("combine", sent)
        if moe.n_shared_experts:
            shared = math.ceil(moe.n_shared_experts * moe.expert_ffn / t.tp)
            ops += self.fwd.mlp("shared_expert", "moe", shared, T)
        ar = self.fwd.all_reduce("mlp_all_reduce", h)
        if split and not moe.n_shared_experts:
            ar = None
        return self._fp8_inputs(ops + (self._tp_comm(ar) if ar else []))

    # ---- backward ------------------------------------------------------------------------------
    def backward(self, ops: list[Op]) -> list[Op]:
        """The backward of ``ops`` in reverse order (module docstring). A collective beside
        the op before it (``Op.overlaps_previous``: the only one is context parallelism's ring)
        runs beside that op's backward kernel too, so it follows it."""
        out: list[Op] = []
        beside: Op | None = None  # a ring's backward, waiting for the op it runs beside
        for op in reversed(ops):
            start = len(out)
            if op.overlaps_previous and op.kind == OpKind.COLLECTIVE:
                c = op.collective
                assert c is not None and beside is None
                # the backward ring carries K, V and the dK, dV accumulated so far: twice the
                # forward's bytes over its hops (TE AttnFuncWithCPAndKVP2P.backward: the
                # first hop sends K/V, the last dK/dV, the others both), each step's hop beside
                # that step's kernel, the last one's too: beside all cp calls
                beside = replace(op, name=f"{op.name}.bwd", overlaps_previous=1.0,
                                 collective=replace(c, bytes=2 * c.bytes))  # fmt: skip
                continue
            if op.kind == OpKind.GEMM:
                g = op.gemm
                assert g is not None
                b = Builder(op.dtype, g.a_bytes, g.b_bytes)
                # the input gradient is 16-bit (fp8 GEMMs too: Transformer Engine's dgrad output)
                dgrad = _output_bytes(
                    b.gemm(f"{op.name}.dgrad", op.family, g.m, g.k, g.n, g.groups), 2.0
                )
                # dW[k, n] = A^T[k, m] dC[m, n]: the token dimension is the reduction
                wgrad = b.gemm(f"{op.name}.wgrad", op.family, g.k, g.n, math.ceil(g.m), g.groups)
                # the unfused attention's B is K or V, not a weight: its gradient is 16-bit
                unfused = op.name.split(".")[-1] in _UNFUSED
                wgrad = _output_bytes(wgrad, 2.0 if unfused else self.wgrad_out)
                ratio = op.model_flops / op.flops if op.flops else 1.0
                # Transformer Engine runs fp8 dgrad/wgrad without fast accumulation
                # (_2X_ACC_DGRAD = _2X_ACC_WGRAD = True; the forward keeps the fast mode)
                split = op.dtype == "fp8"
                # dgrad has the forward's rows (a routed expert's too); wgrad reduces over them
                # (a routed expert's rows padded along K: not modelled)
                (dgrad,) = routed([dgrad], g.routed_tokens, g.routed_p)
                out += [replace(x, model_flops=x.flops * ratio, count=op.count,
                                gemm=replace(x.gemm, split_accumulate=split))
                        for x in (dgrad, wgrad)]  # fmt: skip
            elif op.kind == OpKind.ATTENTION:
                out += attention_backward(op, self.ab)
            elif op.kind == OpKind.COLLECTIVE:
                c = op.collective
                assert c is not None
                mirror = {"all_gather": "reduce_scatter", "reduce_scatter": "all_gather"}
                kind = mirror.get(c.kind, c.kind)
                out.append(replace(op, name=f"{op.name}.bwd", collective=replace(c, kind=kind)))
            elif op.name.split(".")[-1] == "embedding":
                out.append(self._embedding_backward(op))
            else:
                # softmax backward reads P and dP and writes dS: 1.5x its forward traffic;
                # other elementwise ops read the input and the output gradient (2x)
                # (eager ops: their own, EAGER_PRIMITIVES)
                f, per_byte, kernels = self._eager_bwd.get(
                    op.name.split(".")[-1],
                    (1.5 if op.name.endswith("attn_softmax") else 2.0, (), 1),
                )
                bwd = replace(op, name=f"{op.name}.bwd", flops=2 * op.flops, kernels=kernels,
                              bytes={k: f * v for k, v in op.bytes.items()},
                              scalar_kernels=())  # fmt: skip
                out.append(scalar(bwd, per_byte, self.scalar_rates,
                                  op.bytes.get(Role.ACTIVATION, 0.0)))  # fmt: skip
            if beside is not None:  # right after this op's first (main) backward kernel
                out.insert(start + 1, beside)
                beside = None
        assert beside is None, "a collective beside the op before it cannot come first"
        return out

    def _embedding_backward(self, op: Op) -> Op:
        """The embedding lookup's backward as PyTorch's dense one runs it
        (aten/src/ATen/native/cuda/Embedding.cu ``embedding_dense_backward_cuda``): a zeroed
        gradient of the whole (vocabulary-parallel) table, then the looked-up rows' gradients
        summed into it (read, fp32 partial sums per index segment written and read back, the
        rows written: 2 + 4 + 4 + 2 B per element of the lookup, an upper bound: the partials
        and the output go per segment and per distinct row, fewer where tokens repeat); under
        Megatron-Core's DDP the table's gradient is then added into its main_grad buffer (2 B
        read, the buffer read and written at its own width) each micro-batch (``main_grad_hook``:
        the runtimes whose wgrad GEMMs accumulate into main_grad, fused_wgrad_accumulation)."""
        t, m = self.t, self.m
        table = math.ceil(m.vocab / t.tp) * m.hidden
        lookup = self.rows * m.hidden
        grad = 2.0 * table + (table * (2.0 + 2.0 * t.grad_bytes) if self.main_grad_hook else 0.0)
        return replace(op, name=f"{op.name}.bwd", flops=op.flops, kernels=3 + self.main_grad_hook,
                       bytes={Role.ACTIVATION: 12.0 * lookup, Role.GRADIENT: grad},
                       scalar_kernels=())  # fmt: skip

    def recompute(self, forward: list[Op]) -> list[Op]:
        policy = self.t.recompute
        if policy == "none":
            return []
        if policy == "selective-op":
            return [replace(op, name=f"recompute.{op.name}", model_flops=0.0, recompute=True)
                    for op in self._op_recompute(forward)]  # fmt: skip
        keep = (
            forward
            if policy == "full"
            else [
                op
                for op in forward
                if op.kind == OpKind.ATTENTION or op.name.split(".")[-1] in _UNFUSED
            ]
        )
        return [replace(op, name=f"recompute.{op.name}", model_flops=0.0, recompute=True)
                for op in keep]  # fmt: skip

    def _mm_calls(self, op: Op, before: int) -> list[tuple[int, bool]]:
        """(output width, re-run by per-op checkpointing) of each matmul call of ``op``, after
        ``before`` calls in the layer: every second call in order is re-run."""
        widths = self._mm_widths(op)
        return [(n, (before + i + 1) % 2 == 0) for i, n in enumerate(widths)]

    def _mm_widths(self, op: Op) -> list[int]:
        """The output widths of the matmuls an eager model calls for one of our GEMM ops: the
        reference runs wq, wk, wv and w1, w3 as separate matmuls where we merge them."""
        g = op.gemm
        assert g is not None
        base = op.name.split(".")[-1]
        if base == "qkv_proj":
            nq, nkv = self.fwd.heads()
            hd = self.m.head_dim
            return [nq * hd, nkv * hd, nkv * hd]
        if base.endswith("_up") and self.m.gated_mlp and g.n % 2 == 0:
            return [g.n // 2, g.n // 2]
        return [g.n]

    def _op_recompute(self, forward: list[Op]) -> list[Op]:
        """What torchtitan's per-op checkpointing re-runs (module docstring): every second matmul
        of a layer in call order, every elementwise op and every collective but reduce-scatter;
        never the attention kernel."""
        out, calls = [], 0
        for op in forward:
            if op.kind == OpKind.ATTENTION or op.family in ("embedding", "head"):
                continue
            if op.kind == OpKind.COLLECTIVE:
                c = op.collective
                # a ring feeds the attention, which is not re-run
                if c is not None and c.kind != "reduce_scatter" and not op.overlaps_previous:
                    out.append(op)
                continue
            if op.gemm is None:
                out.append(op)
                continue
            made_calls = self._mm_calls(op, calls)
            calls += len(made_calls)
            again = [n for n, rerun in made_calls if rerun]
            if again:
                g = op.gemm
                b = Builder(op.dtype, g.a_bytes, g.b_bytes)
                made = b.gemm(op.name, op.family, g.m, sum(again), g.k, g.groups)
                (made,) = routed([made], g.routed_tokens, g.routed_p)
                out.append(replace(made, count=op.count))
        return out

    # ---- one chunk -----------------------------------------------------------------------------
    def chunk(self, stage: int, chunk: int, first_layer: int, layers: int, *, first: bool,
              last: bool) -> Chunk:  # fmt: skip
        t, m = self.t, self.m
        # the chunk's MoE layers (after the first dense ones, every moe.interleave-th); built as
        # its dense layers, then its MoE ones (NB: an interleaved model's sliding-window and
        # checkpointed layers are then placed as if the two kinds were contiguous)
        n_moe = m.moe_layers_in(first_layer, layers)
        n_dense = layers - n_moe
        forward: list[Op] = []
        backward: list[Op] = []
        act = 0.0
        params = 0.0
        dense_params = 0.0
        if first:
            emb = self.embedding()
            forward += emb
            backward = self.backward(emb) + backward
            act += self.rows * m.hidden * self.ab
            p = m.vocab * m.hidden / t.tp + (m.max_seq * m.hidden if m.position == "learned" else 0)
            params += p
            dense_params += p
        blocks = []
        for n, first_of, build, kind in (
            (n_dense, first_layer, self.dense_layer, "dense"),
            (n_moe, first_layer + n_dense, self.moe_layer, "moe"),
        ):
            if not n:
                continue
            # the kind's layers of full attention, then its sliding-window ones
            sliding = t.sliding_among(first_of, n)
            ck = t.checkpointed(first_of, n) if t.recompute == "full" else n
            # the checkpointed layers among the sliding ones, layer by layer (both rules place
            # their layers evenly, so a share would miscount them)
            ck_sliding = sliding if ck == n else sum(
                1 for i in range(first_of, first_of + n)
                if t.sliding_among(i, 1) and t.checkpointed(i, 1)
            )  # fmt: skip
            for count, checked, window in (
                (n - sliding, ck - ck_sliding, 0),
                (sliding, ck_sliding, t.window),
            ):
                if count:
                    blocks.append((count, checked, build(window), kind))
        tag = m.moe is not None and m.n_dense_layers and m.n_moe_layers
        recomputed = 0
        for count, ck, layer, kind in blocks:
            fwd = [op.repeated(count, kind if tag else "") for op in layer]
            forward += fwd
            # a share of the blocks checkpointed (recompute_blocks < 1): only theirs re-run,
            # the others keep their activations
            again = fwd if ck == count else [op.repeated(ck, kind if tag else "") for op in layer]
            bwd = (self.recompute(again) if ck else []) + self.backward(fwd)
            backward = bwd + backward
            act += ck * self.saved_activations(layer, kind == "moe")
            recomputed += ck if t.recompute == "full" else 0
            if ck < count:
                act += (count - ck) * self.saved_activations(layer, kind == "moe", "none")
            lp = self.layer_params(kind == "moe")
            params += count * lp[0]
            dense_params += count * lp[1]
        if last:
            head = self.head()
            forward += head
            backward = self.backward(head) + backward
            p = m.norm_params()
            if not m.tied_embeddings or not first:  # tied: the last stage keeps a copy
                p += m.vocab * m.hidden / t.tp
            params += p
            dense_params += p
        if t.sp and t.tp > 1:
            forward, backward = self.tp_overlaps(forward, backward)
        fsdp_f, fsdp_b, grad_sync, gather = self.dp_comm(params, dense_params, layers)
        kernels_f, kernels_b = self.fsdp_kernels(params, layers)
        forward += kernels_f
        backward += kernels_b
        return Chunk(
            stage=stage, chunk=chunk, layers=layers, forward=tuple(forward),
            backward=tuple(backward), params=params, dense_params=dense_params,
            fsdp_forward=fsdp_f, fsdp_backward=fsdp_b, grad_sync=grad_sync,
            param_gather=gather, activation_bytes=act, checkpointed=recomputed,
        )  # fmt: skip

    #: Transformer Engine's userbuffers defaults (``initialize_ub``, get_default_config): the
    #: pipelined reduce-scatter's chunks, and the cores its pipeline and bulk overlaps hold
    _UB_PIPELINE_SPLITS = 4
    _UB_CORES = 16

    def tp_overlaps(self, forward: list[Op], backward: list[Op]) -> tuple[list[Op], list[Op]]:
        """Sequence parallelism's collectives beside the GEMMs, as Transformer Engine's linear
        layers run them (``Op.overlaps_previous``: hidden up to the share of the GEMM before).

        Always: a column-parallel linear (QKV, the MLP's up) saves only its rank's shard of the
        input, so its backward gathers the input again for the weight gradient beside the
        input-gradient GEMM, and reduce-scatters that input gradient beside the weight-gradient
        GEMM (TE ``_LayerNormLinear.backward``: 'Overlap input AG with dgrad', 'Overlap
        dgrad-RS/AR with wgrad'; Megatron-LM's own linear alike). With ``tp_overlap``
        (userbuffers, TE ``initialize_ub``'s defaults): the forward's all-gathers by
        ring-exchange, ``tp`` chunks, the first exposed, the others beside the GEMM on one
        core and the copy engines; the forward's reduce-scatters pipelined in 4 chunks on 16
        cores, the last exposed; the backward's all-gathers of the output gradient before the
        row-parallel input-gradient GEMMs by ring-exchange; the two bulk overlaps above on 16
        cores (benchmarks/research/tp-comm-overlap-2026-12-07.md, Part B). MoE layers' expert
        collectives are not TE linears: unchanged."""
        t = self.t

        def base(op: Op) -> str:
            return op.name.split(".")[-2 if op.name.endswith((".bwd", ".dgrad", ".wgrad")) else -1]

        def sp_gather(op: Op) -> bool:
            return op.kind == OpKind.COLLECTIVE and base(op) in ("attn_sp_all_gather",
                                                                "mlp_sp_all_gather")  # fmt: skip

        def sp_scatter(op: Op) -> bool:
            return op.kind == OpKind.COLLECTIVE and base(op) in ("attn_reduce_scatter",
                                                                "mlp_reduce_scatter")  # fmt: skip

        def chunked(op: Op, parts: int, cores: int) -> tuple[Op, Op]:
            """(the exposed chunk, the rest beside the GEMM before it)."""
            c = op.collective
            assert c is not None
            first = replace(op, collective=replace(c, bytes=c.bytes / parts))
            rest = replace(op, name=f"{op.name}.beside", overlaps_previous=(parts - 1) / parts,
                           collective=replace(c, bytes=c.bytes * (parts - 1) / parts,
                                              cores=cores))  # fmt: skip
            return first, rest

        def split(op: Op, parts: int) -> Op:
            """A GEMM run as ``parts`` GEMMs of 1/parts of its rows each, one after another, as
            userbuffers feeds or drains it chunk by chunk: each re-reads the weight and fills
            its own waves of tiles."""
            g = op.gemm
            assert g is not None
            by = {r: v if r is Role.WEIGHT else v / parts for r, v in op.bytes.items()}
            return replace(op, count=op.count * parts, flops=op.flops / parts,
                           model_flops=op.model_flops / parts, bytes=by,
                           gemm=replace(g, m=g.m / parts))  # fmt: skip

        ub = t.tp_overlap
        fwd: list[Op] = []
        i = 0
        while i < len(forward):
            op = forward[i]
            gemm = next((j for j in range(i + 1, min(i + 3, len(forward)))
                         if forward[j].kind == OpKind.GEMM), None)  # fmt: skip
            if ub and sp_gather(op) and not op.recompute and gemm is not None:
                # (an fp8 input's cast between them runs first, exposed)
                first, rest = chunked(op, t.tp, 1)
                fwd += [first, *forward[i + 1 : gemm], split(forward[gemm], t.tp), rest]
                i = gemm + 1
                continue
            if ub and sp_scatter(op) and not op.recompute and fwd and fwd[-1].kind == OpKind.GEMM:
                first, rest = chunked(op, self._UB_PIPELINE_SPLITS, self._UB_CORES)
                fwd[-1] = split(fwd[-1], self._UB_PIPELINE_SPLITS)
                fwd += [rest, first]
            else:
                fwd.append(op)
            i += 1
        bwd: list[Op] = []
        i = 0
        while i < len(backward):
            op = backward[i]
            dgrad = i + 1 < len(backward) and backward[i + 1].name.endswith(".dgrad")
            if ub and sp_scatter(op) and not op.recompute and dgrad:
                first, rest = chunked(op, t.tp, 1)
                bwd += [first, split(backward[i + 1], t.tp), rest]
                i += 2
                continue
            w = next((j for j in range(len(bwd) - 1, max(-1, len(bwd) - 3), -1)
                      if bwd[j].name.endswith(".wgrad")), None)  # fmt: skip
            if sp_gather(op) and not op.recompute and w is not None:
                # the input gradient's reduce-scatter beside the weight gradient (an fp8
                # cast's backward after it moves behind), and the input's gather again beside
                # the input gradient before it
                c = op.collective
                assert c is not None
                cores = self._UB_CORES if ub else 0
                wgrad, after = bwd[w], bwd[w + 1 :]
                del bwd[w:]
                twin = wgrad.name.replace(".wgrad", ".dgrad")
                at = next((j for j in range(len(bwd) - 1, -1, -1) if bwd[j].name == twin), None)
                if at is not None:
                    again = replace(op, name=op.name.replace(".bwd", ".regather"),
                                    overlaps_previous=1.0,
                                    collective=replace(c, kind="all_gather", cores=cores))  # fmt: skip
                    bwd.insert(at + 1, again)
                bwd += [wgrad, replace(op, overlaps_previous=1.0,
                                       collective=replace(c, cores=cores)), *after]  # fmt: skip
            else:
                bwd.append(op)
            i += 1
        return fwd, bwd

    def layer_params(self, moe_layer: bool) -> tuple[float, float]:
        """(params on this chip, of which replicated over dp x cp) for one layer."""
        t, m = self.t, self.m
        norms = 2 * m.norm_params()
        if not moe_layer or m.moe is None:
            total = m.layer_params(False)
            return (total - norms) / t.tp + norms, (total - norms) / t.tp + norms
        moe = m.moe
        expert = m.mlp_params(moe.expert_ffn)
        routed = moe.n_experts * expert
        dense = m.layer_params(True) - routed - norms - m.hidden * moe.n_experts
        replicated = dense / t.tp + norms + m.hidden * moe.n_experts
        return replicated + routed / (t.expert_tp * t.ep), replicated

    def embedding(self) -> list[Op]:
        t, m = self.t, self.m
        T = self.rows
        op = self.b16.elementwise("embedding", "embedding", 0, T * m.hidden, 0.0,
                                  weight_bytes=T * m.hidden * 2.0)  # fmt: skip
        # vocabulary-parallel embedding: each rank looks up its slice, then an all-reduce
        ar = self.b.collective("embedding_all_reduce", "all_reduce", T * m.hidden * self.ab, t.tp,
                               self.tp_local)  # fmt: skip
        return [op] + ([ar] if ar else [])

    def head(self) -> list[Op]:
        t, m = self.t, self.m
        T = self.rows
        v = math.ceil(m.vocab / t.tp)
        ops = self._fix([self.fwd.norm("final_norm", m.hidden)])
        # the output layer stays 16-bit under fp8 training (Transformer Engine casts only the
        # transformer layers' linears)
        ops.append(self.b16.gemm("lm_head", "head", T, v, m.hidden))
        # vocabulary-parallel cross-entropy over the local logits, in the runtime's kernels
        # (LOSS_KERNEL_BYTES; eager: EAGER_PRIMITIVES), and two small all-reduces (max, sum)
        # across the TP group
        ce = self.b16.elementwise("cross_entropy", "head", T * v, 0, 6.0 * T * v)
        if self.loss == "eager":
            ce = self._eager(ce, "cross_entropy", T * v)
        else:  # the runtime's own kernels (LOSS_KERNEL_BYTES)
            fwd, fwd_k, bwd, bwd_k = LOSS_KERNEL_BYTES[self.loss]
            ce = replace(ce, bytes={Role.ACTIVATION: fwd * T * v}, kernels=fwd_k)
            self._eager_bwd["cross_entropy"] = (bwd / fwd, (), bwd_k)
        ops.append(ce)
        ar = self.b.collective("loss_all_reduce", "all_reduce", 2 * T * 4.0, t.tp, self.tp_local)
        return ops + ([ar] if ar else [])

    def saved_activations(self, layer: list[Op], moe_layer: bool, policy: str = "") -> float:
        """Bytes one layer keeps for its backward, for one micro-batch (module docstring).

        Every GEMM keeps its input (A), every attention Q, K, V and O (+ fp32 log-sum-exp),
        every activation function its input, every norm its input; an input shared by several
        ops (the normed x into Q/K/V, O into o_proj) is counted once. With full recompute a
        layer keeps only its input. ``policy`` overrides the run's recompute policy (a block
        that a partial full recompute leaves alone keeps everything: "none").
        """
        t, m = self.t, self.m
        policy = policy or t.recompute
        sp = t.tp if t.sp else 1
        x = self.rows * m.hidden * self.ab
        if policy == "full":
            return x / sp
        if policy == "selective-op":
            return x / sp + self._op_saved(layer)
        total = 0.0
        up_out = 0.0
        for op in layer:
            if op.kind == OpKind.COLLECTIVE or op.family == "embedding":
                continue
            if op.family == "norm":
                total += 2 * x / sp  # its input, and its output (the next GEMM's input)
                if self.eager and self.norm_key == "rmsnorm":
                    total += 2 * x / sp  # + x.float() (fp32) and the bf16 normed x before *weight
            elif op.kind == OpKind.ATTENTION:
                a = op.attention
                assert a is not None
                q = a.batch * a.q_len * a.n_q_heads
                kv = a.batch * a.q_len * a.n_kv_heads
                total += (q * (a.qk_dim + a.v_dim) + kv * (a.qk_dim + a.v_dim)) * self.ab
                total += q * 4.0  # fp32 log-sum-exp per query row
            elif op.name in ("attn_scores", "attn_values"):  # unfused: Q and K; P and V
                g = op.gemm
                assert g is not None
                # selective recompute re-runs the core instead of keeping P (Korthikanti Sec. 5)
                a_kept = not (op.name == "attn_values" and policy == "selective")
                total += g.groups * ((g.m * g.k if a_kept else 0) + g.k * g.n) * self.ab
            elif op.name.split(".")[-1] in ("q_a_norm", "kv_a_norm"):  # MLA's latent norms:
                # their input (the output is the up-projection's input, counted there)
                latent = op.flops / _NORM_FLOPS[m.norm] * self.ab
                if self.eager and self.norm_key == "rmsnorm":
                    latent *= 3.0  # + x.float() (fp32) and the bf16 normed x before *weight
                total += latent
            elif op.name.endswith("_act"):
                total += up_out  # the activation function's input
                if self.eager and m.gated_mlp:
                    total += up_out / 2  # + silu's output, the multiply's other operand
            elif op.gemm is not None:
                g = op.gemm
                if op.name.endswith("_up"):
                    up_out = g.m * g.n * g.groups * self.ab
                if not op.name.endswith(_FED_BY_SAVED):
                    total += g.m * g.k * g.groups * self.ab
        return total

    def _op_saved(self, layer: list[Op]) -> float:
        """Per-op checkpointing keeps the outputs of the matmuls it does not re-run and the
        attention kernel's output with its fp32 log-sum-exp."""
        kept, calls = 0.0, 0
        for op in layer:
            if op.kind == OpKind.ATTENTION:
                a = op.attention
                assert a is not None
                q = a.batch * a.q_len * a.n_q_heads
                kept += q * (a.v_dim * self.ab + 4.0)
            elif op.gemm is not None:
                g, made_calls = op.gemm, self._mm_calls(op, calls)
                calls += len(made_calls)
                kept += sum(g.m * n * g.groups * self.ab for n, rerun in made_calls if not rerun)
        return kept

    # ---- data parallelism ----------------------------------------------------------------------
    def dp_comm(self, params: float, dense_params: float, layers: int):
        """ZeRO-3 per-layer gathers, or the gradient reduction and parameter gather at the end."""
        t = self.t
        expert = params - dense_params
        edp = t.edp
        gb, pb = t.grad_bytes, 2.0
        b = self.b16

        def coll(name: str, kind: str, dense: float, experts: float) -> tuple[Op, ...]:
            # the dense part over ZeRO's shard group (all dp x cp ranks without hybrid sharding)
            out = [b.collective(name, kind, dense, t.shard, t._local(t.tp, t.shard))]
            if experts:
                if t.folded:
                    # folded (MoE parallel folding): an EP group is ep adjacent ranks across the
                    # TP and context-parallel ones, and an expert's replicas are ep apart
                    local = t._local(t.ep, edp)
                else:
                    # its cp ranks (tp apart), and copies an EP group (tp x cp apart) apart
                    local = t._local(t.tp, t.cp) * t._local(t.ep * t.tp * t.cp, edp // t.cp)
                out.append(b.collective(f"expert_{name}", kind, experts, edp, local))
            return tuple(op for op in out if op)

        def replicas(per: int = 1) -> tuple[Op, ...]:
            """Hybrid sharding: each shard's reduced gradients all-reduced over its replicas
            (the same shard on every group, dp_shard x tp apart), in ``per`` pieces: per layer
            after each ZeRO-3 reduce-scatter (FSDP's HYBRID_SHARD all-reduces every
            reduce-scatter it runs, so every micro-batch's), or once a step."""
            if t.shard == t.dp_cp:
                return ()
            group, stride = t.dp_cp // t.shard, t.tp * t.shard
            op = b.collective("hsdp_grad_all_reduce", "all_reduce",
                              dense_params * gb / t.shard / per, group,
                              t._local(stride, group))  # fmt: skip
            return (replace(op, count=per),) if op else ()

        if t.zero == 3:
            n = max(1, layers)
            gather = [
                replace(op, count=n)
                for op in coll(
                    "fsdp_all_gather", "all_gather", dense_params * pb / n, expert * pb / n
                )
            ]
            scatter = [replace(op, count=n) for op in
                       coll("fsdp_reduce_scatter", "reduce_scatter", dense_params * gb / n,
                            expert * gb / n)]  # fmt: skip
            return tuple(gather), tuple(gather + scatter) + replicas(n), (), ()
        if t.zero == 0:
            return (
                (),
                (),
                coll("dp_grad_all_reduce", "all_reduce", dense_params * gb, expert * gb),
                (),
            )
        sync = coll("dp_grad_reduce_scatter", "reduce_scatter", dense_params * gb, expert * gb)
        gather = coll("dp_param_all_gather", "all_gather", dense_params * pb, expert * pb)
        return (), (), sync + replicas(), gather

    def fsdp_kernels(self, params: float, layers: int) -> tuple[list[Op], list[Op]]:
        """The memory kernels PyTorch FSDP runs on the compute path around ZeRO-3's collectives
        (``Runtime.fsdp``), per micro-batch over the chunk's unsharded ``params``, one of each a
        layer (forward, backward): FSDP2 copies each all-gather's output out into the
        parameters (2 bytes read and written a parameter, the forward's gather and the
        backward's) and the gradients into the reduce-scatter's input in the reduce dtype;
        FSDP1's flat parameter takes its gradient from a cat of its views' gradients, which is
        then cast to the reduce dtype (where that differs) and divided in place. Shard-sized
        work (the gather's copy-in, the sharded gradient's accumulation) is left out."""
        if not self.fsdp:
            return [], []
        pb, gb = 2.0, self.t.grad_bytes  # the gathered parameters' and the reduction's bytes
        n = max(1, layers)

        def kernel(name: str, role: Role, per_param: float, kernels: int) -> Op:
            return Op(name=name, kind=OpKind.ELEMENTWISE, family="other", dtype="bf16",
                      flops=0.0, model_flops=0.0, count=n, kernels=kernels,
                      bytes={role: per_param * params / n})  # fmt: skip

        if self.fsdp == "fsdp2":
            copy_out = kernel("fsdp_copy_out", Role.WEIGHT, 2 * pb, 1)
            grads = kernel("fsdp_grad_copy_in", Role.GRADIENT, pb + gb, 1)
            return [copy_out], [replace(copy_out, name="fsdp_copy_out.bwd"), grads]
        # fsdp1: the cat, then the cast (if any) and the pre-divide in the reduce dtype
        cast = pb + gb if gb != pb else 0.0
        flatten = kernel("fsdp_grad_flatten", Role.GRADIENT, 2 * pb + cast + 2 * gb,
                         3 if cast else 2)  # fmt: skip
        return [], [flatten]

    def optimizer(self, chunks: tuple[Chunk, ...]) -> Op:
        """Adam over the parameters this chip updates: a streaming pass over its states."""
        t = self.t
        dense = sum(c.dense_params for c in chunks)
        expert = sum(c.params - c.dense_params for c in chunks)
        if t.zero >= 1:
            dense, expert = dense / t.shard, expert / t.edp
        p = dense + expert
        # read grad, master, m, v; write master, m, v and the 16-bit weights
        by = {Role.OPTIMIZER: p * 24.0, Role.GRADIENT: p * t.grad_bytes, Role.WEIGHT: p * 2.0}
        return Op(name="optimizer_step", kind=OpKind.ELEMENTWISE, family="optimizer",
                  dtype="fp32", flops=_ADAM_FLOPS * p, model_flops=0.0, bytes=by)  # fmt: skip

    def p2p(self) -> Op | None:
        """One micro-batch's boundary activations (and, backward, their gradients)."""
        t = self.t
        if t.pp == 1:
            return None
        size = self.rows * self.m.hidden * self.ab
        if t.tp > 1:  # scatter/gather optimisation (Narayanan et al. 2021, Sec. 4.1)
            size /= t.tp
        stride = t.tp * t.cp * t.dp
        return self.b.collective("pp_send_recv", "send_recv", size, 2,
                                 2 if stride < t.chips_per_node else 1, comm=t.pp)  # fmt: skip

    # ---- memory --------------------------------------------------------------------------------
    def memory(self, stage: int, chunks: tuple[Chunk, ...]) -> TrainMemory:
        t, m = self.t, self.m
        dense = sum(c.dense_params for c in chunks)
        expert = sum(c.params - c.dense_params for c in chunks)

        def shard(on: bool) -> float:
            return dense / t.shard + expert / t.edp if on else dense + expert

        weights = 2.0 * shard(t.zero >= 3)
        grads = t.grad_bytes * shard(t.zero >= 2)
        optim = 12.0 * shard(t.zero >= 1)
        # micro-batches whose activations are alive at the peak of the schedule; the combined
        # 1F1B (--ep-overlap) warms up with one forward more, so one more is alive
        # (schedules.py: 'if overlap_moe_expert_parallel_comm: num_warmup_microbatches += 1';
        # without a pipeline forward i + 1 runs beside backward i)
        extra = 1 if t.ep_overlap else 0
        if t.vp == 1:
            in_flight = min(t.micro_batches, t.pp - stage + extra)
            act = in_flight * sum(c.activation_bytes for c in chunks)
        else:
            warm = min((t.pp - stage - 1) * 2 + (t.vp - 1) * t.pp + 1 + extra,
                       t.micro_batches * t.vp)  # fmt: skip
            per_chunk = sum(c.activation_bytes for c in chunks) / t.vp
            act = warm * per_chunk
        # transient: one layer's full activations during recompute, fp32 logits and their grad
        temp = 0.0
        if t.recompute == "full" and any(c.checkpointed for c in chunks):
            layer = self.dense_layer() if m.moe is None else self.moe_layer()
            saved = replace(t, recompute="none")
            temp += _TrainLowering(saved).saved_activations(layer, m.moe is not None)
        if any(c.stage == t.pp - 1 and c.chunk == t.vp - 1 for c in chunks):
            temp += 2 * self.rows * math.ceil(m.vocab / t.tp) * 4.0
        if t.zero == 3:  # the layer in use and the one being prefetched, gathered whole
            layer = (dense + expert) / max(1, sum(c.layers for c in chunks))
            temp += 2 * 2.0 * layer
            # a layer's gradient as FSDP reduces it: FSDP2's reduce-scatter input in the
            # reduce dtype, FSDP1's 16-bit flat gradient and its cast (fsdp_kernels)
            gb = t.grad_bytes
            if self.fsdp == "fsdp2":
                temp += layer * gb
            elif self.fsdp == "fsdp1":
                temp += layer * (2.0 + (gb if gb != 2.0 else 0.0))
        return TrainMemory(weights_bytes=weights, gradient_bytes=grads, optimizer_bytes=optim,
                           activation_bytes=act, temporary_bytes=temp, stage=stage)  # fmt: skip
