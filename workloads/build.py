"""Op builders shared by every workload's lowering: GEMM, elementwise, attention, collective."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from workloads.ops import Attention, Collective, Gemm, Op, OpKind, Role

# Eager PyTorch runs every primitive of a non-matmul op as its own kernel, through memory. The
# kernels are those of the Meta Llama reference model.py (which torchtitan and IBM's
# foundation-model-stack follow): per element of the op's tensor, (forward bytes, forward
# kernels, backward bytes, backward kernels) with 16-bit activations (2 B) and the reference's
# fp32 upcasts (4 B). Backward by autograd's rule: each primitive reads its output gradient and
# the saved operand it needs and writes its input gradient; a broadcast operand's gradient is a
# further reduction; a tensor used twice gets an accumulation kernel (read both, write one).
# - RMSNorm (x.float(); pow(2); mean; +eps; rsqrt; x * r; .type_as(x); * weight) and the residual
#   add beside it. Forward: cast 2+4, pow 4+4, mean 4, x*r 4+4, cast 4+2, weight 2+2, residual
#   2+2+2 = 42 B (eps and rsqrt touch one value per row: launches only). Backward: weight 2+2 (dx)
#   + 2+2+2+2 (dw: product, row sum), cast 2+4, x*r 4+4 (dx) + 4+4+4+4 (dr: product, row sum),
#   mean 4 (expand / n), pow 4+4+4, x's two uses summed 4+4+4, cast 4+2, residual stream 2+2+2
#   = 82 B.
# - LayerNorm is one native kernel in eager too (F.layer_norm), a thread block a row that passes
#   over the row twice (pytorch aten/src/ATen/native/cuda/layer_norm_kernel.cu:
#   vectorized_layer_norm_kernel runs compute_stats, a Welford pass over X, then re-reads X to
#   write Y; the unvectorized path is two kernels, RowwiseMoments then LayerNormForward, each
#   reading X): 2+2+2 = 6 B + the residual add 6 B; backward: layer_norm_grad_input_kernel reads
#   dY and X for the row's two sums, then both again to write dX (2 (2+2) + 2 = 10 B), the
#   gamma/beta kernel reads dY and X (4 B), residual stream 6 B = 20 B. Every pass is charged
#   from main memory (the eager-kernel rows of Liger-Kernel's LayerNorm on A100 and H100 time
#   it so: validation kind eager-kernel). A runtime whose RMSNorm is F.rms_norm's fused kernel
#   (``rms_norm = "native"``) costs as this entry; that kernel's own passes were not read.
# - RoPE (complex: xq.float(); view_as_complex; * freqs_cis; view_as_real; .type_as(xq)) per
#   rotated q/k element: cast 2+4, complex multiply 4+4, cast 4+2 = 20 B, each of q and k; the
#   backward is its mirror.
# - RoPE on split halves (x1, x2 = x[..., :d/2], x[..., d/2:]; cat(x1*cos - x2*sin,
#   x2*cos + x1*sin), as this repository's microbenchmark writes it, in 16 bits): four
#   multiplies read a half and write a half, the subtract and the add read two and write one, the
#   cat reads and writes the whole: 9 element-reads-or-writes per element, 18 B, 7 kernels for
#   each of q and k. Inference only: its backward (slice gradients, negation, accumulations)
#   is not counted, so a training runtime refuses it (workloads.runtime); the backward columns
#   repeat the forward as placeholders.
# - RoPE by rotate_half (transformers' apply_rotary_pos_emb: q * cos + rotate_half(q) * sin,
#   rotate_half = cat((-x2, x1), -1)): q * cos 2+2, the negated half 1+1, the cat 2+2,
#   rot * sin 2+2, the add 2+2+2 = 20 B, 5 kernels for each of q and k (cos and sin, one row a
#   position, are read once). Inference only, as the split halves above.
# - RoPE by 2x2 rotation matrices (IBM foundation-model-stack fms/modules/positions.py
#   RotaryEmbedding.adjusted_qk, as fms-fsdp trains with it): on token-major q and k (B, L, H,
#   D; since FMS PR #191, Feb. 2024, before the transpose for attention), ``q.float()`` (2+4),
#   ``freqs.mul(q_.unsqueeze(-2))`` (an fp32 [.., D/2, 2, 2] product, two outputs an element:
#   4+8), ``.sum(5)`` (8+4) and ``.type_as(q)`` (4+2) = 36 B, 4 kernels for each of q and k.
#   Backward: the gradient's upcast (2+4), ``grad.expand * freqs`` (4+8), the sum over the
#   broadcast pairs (8+4) and the downcast (4+2): 36 B, 4 kernels. (Before PR #191 it rotated
#   heads-first q and returned it contiguous, which made the attention output and the q, k
#   gradients permuting copies; not modelled.)
# - attention output transpose(1, 2).contiguous() before wo: 2+2 B each way; GQA repeat_kv
#   (expand + reshape) copies K and V n_rep times: 2 + 2·n_rep B per KV element, its backward
#   sums the copies.
# - SwiGLU F.silu(w1(x)) * w3(x) per ffn element: silu 2+2, multiply 2+2+2 = 10 B; backward
#   multiply 2+2+2 twice, silu 2+2+2 = 18 B. An ungated F.gelu is one kernel either way.
# - wq/wk/wv and w1/w3 are separate GEMMs, so autograd sums their data gradients: 2+2+2 B per
#   hidden element each (2 kernels before attention, 1 before a gated MLP), charged to the
#   norm's backward.
# - cross entropy of .float() logits (log_softmax, nll) per logit: cast 2+4, then log_softmax
#   (pytorch aten/src/ATen/native/cuda/SoftMax.cu host_softmax): a row longer than the default
#   48 KiB of shared memory a block holds (12,256 fp32 logits: an LLM's vocabulary) runs
#   cunn_SoftMaxForward, which reads the row for its max, again for the sum of exponentials and
#   again to write the output: 4+4+4+4 = 22 B. (A shorter row of over 1,024 is cached in shared
#   memory, cunn_SoftMaxForwardSmem, one read; Liger-Kernel's A100 rows at 4k and 8k logits run
#   no faster than three reads even so, each block taking all 48 KiB, so no vocabulary slice is
#   credited the one read.) Backward: nll 4 (scatter into zeros); cunn_SoftMaxBackward sums the
#   gradient row, then reads it and the output to write the input's gradient (rows beyond shared
#   memory; newer PyTorch caches shorter ones), 4+4+4+4; cast 4+2 = 26 B.
EAGER_PRIMITIVES = {
    "rmsnorm": (42.0, 9, 82.0, 12),
    "layernorm": (12.0, 2, 20.0, 3),
    "rope": (20.0, 6, 20.0, 6),  # per rotated element of q and k; 3 kernels for each tensor
    "rope_halves": (18.0, 14, 18.0, 14),  # per rotated element; 7 kernels for each tensor
    "rope_rotate_half": (20.0, 10, 20.0, 10),  # per rotated element; 5 kernels for each tensor
    "rope_rotation": (36.0, 8, 36.0, 8),  # per rotated element; 4 kernels for each tensor
    "attn_out_copy": (4.0, 1, 4.0, 1),
    "gated_act": (10.0, 2, 18.0, 3),
    "act": (4.0, 1, 6.0, 1),
    "cross_entropy": (22.0, 2, 26.0, 3),
}
# Of those primitives' kernels, the ones eager PyTorch runs on one of its two unvectorised
# ("scalar") kernels, which the element count binds before the bytes do (``scalar``): the
# strided kernel, where an operand is broadcast or strided so not one contiguous run
# (CUDALoops.cuh launch_legacy_kernel, an OffsetCalculator per element; the runtime's
# ``strided_cycles_per_element``), and the cast kernel, where contiguous operands need a dtype
# conversion (bf16 -> fp32 upcasts, mixed-dtype operands: launch_unrolled_kernel with
# LoadWithCast, scalar loads; only fp32 -> 16-bit casts have vectorised kernels on CUDA through
# torch 2.13; the runtime's ``cast_cycles_per_element``). Per element of the op's tensor,
# (output elements, bytes, vectorised at one token row, path) of each such kernel, forward and
# backward (at one row size-1 dimensions drop out and a broadcast along them with it). From the
# models' code and PyTorch's TensorIterator (coalesce_dimensions, is_contiguous),
# derivatives.yaml, CUDALoops.cuh and Copy.cu (benchmarks/research/eager-broadcast-counts-
# 2026-12-07.md, eager-cast-rate-2026-12-07.md):
# - rmsnorm: the upcast ``x.to(float32)`` (cast, 2+4 B), ``x * rsqrt(var)`` (the row's scale
#   broadcast along it; fp32 4+4) and ``weight * h`` (the weight broadcast over rows; 2+2);
#   backward the gradient's upcast (2+4), ``grad * weight`` (2+2), ``grad * rsqrt`` (4+4) and
#   mean's ``grad.expand(..) / n`` (writes 4). The cast back to 16 bits is vectorised.
#   LayerNorm and F.rms_norm are native kernels: none.
# - rope (complex): ``xq.float()`` (cast, 2+4) and ``xq_ * freqs_cis`` (freqs broadcast over
#   heads: one complex64 output per two rotated elements, 4+4 B an element), each way.
# - rope_halves (this repository's microbenchmark, 16-bit throughout): the four half-width
#   multiplies by cos and sin broadcast over heads (each 1+1 B an element); the subtract and
#   add are contiguous, the cat its own kernel.
# - rope_rotate_half (transformers): ``q * cos`` (2+2), the negated strided half (1+1),
#   ``rot * sin`` (2+2) and the add of a permuted and a default-contiguous tensor (2+2+2;
#   contiguous at one query row).
# - rope_rotation (fms): the upcast (cast, 2+4) and the product with the rotation matrices
#   broadcast over heads (two fp32 outputs an element, 4+8), each way; the sum over the pairs
#   is a reduction (its bytes), the downcast vectorised.
# - attn_out_copy (a permuting copy where it runs: after matmul attention, or SDPA on queries
#   made contiguous): 2+2 forward; after matmul attention its backward copies too (matmul's
#   backward reshapes the gradient).
# - cross_entropy: the logits' ``.float()`` (cast, 2+4); its gradient's cast back is vectorised.
# - gated_act with separate gate and up projections, act, the residual add: contiguous, none;
#   gated_act_chunked, where one gate/up GEMM's output is chunked (this repository's
#   microbenchmark): SiLU reads the strided gate half (2+2) and the multiply the strided up half
#   (2+2+2), contiguous at one row (inference only: its backward is not counted).
STRIDED, CAST = "strided", "cast"
ScalarKernels = tuple[tuple[float, float, bool, str], ...]
EAGER_SCALAR: dict[str, tuple[ScalarKernels, ScalarKernels]] = {
    "rmsnorm": (((1.0, 6.0, False, CAST), (1.0, 8.0, False, STRIDED), (1.0, 4.0, True, STRIDED)),
                ((1.0, 6.0, False, CAST), (1.0, 4.0, True, STRIDED), (1.0, 8.0, False, STRIDED),
                 (1.0, 4.0, False, STRIDED))),
    "layernorm": ((), ()),
    "rope": (((1.0, 6.0, False, CAST), (0.5, 8.0, False, STRIDED)),) * 2,
    "rope_halves": (((0.5, 2.0, False, STRIDED),) * 4,) * 2,
    "rope_rotate_half": (((1.0, 4.0, False, STRIDED), (0.5, 2.0, False, STRIDED),
                          (1.0, 4.0, False, STRIDED), (1.0, 6.0, True, STRIDED)),) * 2,
    "rope_rotation": (((1.0, 6.0, False, CAST), (2.0, 12.0, False, STRIDED)),) * 2,
    "attn_out_copy": (((1.0, 4.0, False, STRIDED),),) * 2,
    "gated_act": ((), ()),
    "gated_act_chunked": (((1.0, 4.0, True, STRIDED), (1.0, 6.0, True, STRIDED)), ()),
    "act": ((), ()),
    "cross_entropy": (((1.0, 6.0, False, CAST),), ()),
}  # fmt: skip


def scalar_per(key: str, backward: bool = False,
               one_row: Any = False) -> tuple[tuple[Any, float, str], ...]:  # fmt: skip
    """(output elements per element of its tensor, bytes per output element, path) of each of
    an eager primitive's scalar kernels (``EAGER_SCALAR``; ``one_row``: at one token row, an
    array over points where the rows are)."""
    kernels = EAGER_SCALAR[key][1 if backward else 0]
    off = np.asarray(one_row)
    return tuple((e * np.where(off, 0.0, 1.0) if vector_at_one and off.ndim else
                  0.0 if vector_at_one and one_row else e, b / e, path)
                 for e, b, vector_at_one, path in kernels)  # fmt: skip


def scalar(op: Op, kernels: Iterable[tuple[Any, float, str]], rates: tuple[float, float],
           n: Any = 1.0) -> Op:  # fmt: skip
    """``op`` with more kernels run by eager PyTorch's unvectorised kernels: ``kernels`` are
    (output elements per unit of ``n``, bytes per output element, path ``STRIDED`` or
    ``CAST``), at ``rates`` (core clock cycles an element on the strided and the cast kernel:
    the runtime's ``scalar_rates``) (``Op.scalar_kernels``). Kernels alike (one path, one size
    an element) are one entry: their cycles and bytes scale together."""
    if not any(np.any(r) for r in rates) or not np.any(n):  # (arrays over points too)
        return op
    merged: dict[tuple[str, float], Any] = {}
    for elements, per, path in kernels:
        if np.any(elements):
            merged[(path, per)] = merged.get((path, per), 0.0) + elements
    if not merged:
        return op
    rate = {STRIDED: rates[0], CAST: rates[1]}
    new = tuple((e * n * rate[path], e * n * per) for (path, per), e in merged.items())
    return replace(op, scalar_kernels=op.scalar_kernels + new)


def scaled_scalar(op: Op, f: Any) -> tuple[tuple[Any, Any], ...]:
    """``op``'s scalar kernels on ``f`` times the elements."""
    return tuple((c * f, b * f) for c, b in op.scalar_kernels)


#: the residual add a norm entry above carries beside the norm (2+2+2 B and one kernel, each
#: way): a norm with none beside it (MLA's latent norms, a norm timed alone) is the entry less it
EAGER_RESIDUAL = (6.0, 1, 6.0, 1)


def eager_without_residual(key: str) -> tuple[float, int, float, int]:
    """``EAGER_PRIMITIVES[key]`` (a norm's) less the residual add beside it."""
    f, fk, b, bk = (x - r for x, r in zip(EAGER_PRIMITIVES[key], EAGER_RESIDUAL, strict=True))
    return f, int(fk), b, int(bk)


@dataclass(frozen=True, slots=True)
class Builder:
    """Makes ops in one compute dtype with fixed bytes per activation and per weight element."""

    dtype: str
    act_bytes: float
    weight_bytes: float
    attention_kernel: str = "native"  # stamped on every attention op this builder makes
    prefill_kernel: str = "native"  # where attention_kernel is mmha (a decode kernel), prefill's

    def gemm(self, name: str, family: str, m: float, n: int, k: int, groups: int = 1) -> Op:
        """C[m,n] = A[m,k] B[k,n] (A activations, B weights): 2·m·n·k FLOPs per group."""
        flops = 2.0 * m * n * k * groups
        return Op(
            name=name, kind=OpKind.GEMM, family=family, dtype=self.dtype,
            flops=flops, model_flops=flops,
            bytes={
                Role.WEIGHT: groups * k * n * self.weight_bytes,
                Role.ACTIVATION: groups * m * (k + n) * self.act_bytes,
            },
            gemm=Gemm(m=m, n=n, k=k, groups=groups, a_bytes=self.act_bytes,
                      b_bytes=self.weight_bytes, c_bytes=self.act_bytes),
        )  # fmt: skip

    def elementwise(
        self,
        name: str,
        family: str,
        read: float,
        write: float,
        flops: float,
        weight_bytes: float = 0.0,
        kv_bytes: float = 0.0,
    ) -> Op:
        """``read``/``write`` in activation elements; weights and KV in bytes."""
        by = {Role.ACTIVATION: (read + write) * self.act_bytes}
        if _nonzero(weight_bytes):
            by[Role.WEIGHT] = weight_bytes
        if _nonzero(kv_bytes):
            by[Role.KV] = kv_bytes
        return Op(
            name=name, kind=OpKind.ELEMENTWISE, family=family, dtype=self.dtype,
            flops=flops, model_flops=0.0, bytes=by,
        )  # fmt: skip

    def attention(self, name: str, spec: Attention) -> Op:
        """Fused attention: 2·pairs·(qk + v) FLOPs per head; Q, O and the K/V it reads."""
        kernel = self.attention_kernel
        if kernel == "mmha" and not _all_equal(spec.q_len, 1):
            kernel = self.prefill_kernel  # mmha is a decode kernel: prefill runs the runtime's
        if kernel != "native":
            spec = replace(spec, kernel=kernel)
        flops = 2.0 * spec.batch * spec.n_q_heads * spec.score_pairs * (spec.qk_dim + spec.v_dim)
        q_o = spec.batch * spec.q_len * spec.n_q_heads * (spec.qk_dim + spec.v_dim) * spec.act_bytes
        kv = spec.batch * spec.n_kv_heads * spec.kv_read_len * spec.kv_bytes_per_token
        return Op(
            name=name, kind=OpKind.ATTENTION, family="attention", dtype=self.dtype,
            flops=flops, model_flops=flops,
            bytes={Role.ACTIVATION: q_o, Role.KV: kv}, attention=spec,
        )  # fmt: skip

    def collective(
        self, name: str, kind: str, size_bytes: float, group: int, local: int | None = None,
        comm: int = 0, messages: int = 1,
    ) -> Op | None:  # fmt: skip
        """A collective of ``size_bytes`` per chip over ``group`` chips; None for a group of 1.

        ``local`` is how many of the group's chips share a node (None: the group is packed);
        ``comm`` and ``messages``: a send_recv's communicator size and message count
        (``Collective``).
        """
        if group <= 1:
            return None
        return Op(
            name=name, kind=OpKind.COLLECTIVE, family="communication", dtype=self.dtype,
            flops=0.0, model_flops=0.0, bytes={},
            collective=Collective(kind=kind, bytes=size_bytes, group=group, local=local,
                                  comm=comm, messages=messages),
        )  # fmt: skip


def fp8_input(op: Op, a_bytes: float = 1.0) -> Op:
    """GEMM ``op`` reading its input (A) in fp8 (or at ``a_bytes`` an element: fp4's 0.5625
    with its block scales): an upstream kernel wrote it so (a cast before it, or one fused into
    the op before); its activation bytes lose the 16-bit read's excess."""
    g = op.gemm
    assert g is not None
    excess = g.groups * g.m * g.k * (g.a_bytes - a_bytes)
    by = {**op.bytes, Role.ACTIVATION: op.bytes[Role.ACTIVATION] - excess}
    return op.but(gemm=replace(g, a_bytes=a_bytes), bytes=by)


def routed(ops: list[Op], tokens: Any, p: float) -> list[Op]:
    """``ops`` with their GEMMs marked as routed expert GEMMs: each expert's rows are the
    tokens, of ``tokens``, that chose it, each with probability ``p`` (``Gemm.routed_tokens``)."""
    return [replace(op, gemm=replace(op.gemm, routed_tokens=tokens, routed_p=p))
            if op.gemm is not None else op for op in ops]  # fmt: skip


def _nonzero(x: Any) -> bool:
    """A byte count worth a role entry: non-zero, or an array over points (workloads/llm.py)."""
    return isinstance(x, np.ndarray) or bool(x)


def _all_equal(x: Any, value: float) -> bool:
    return bool(np.all(np.asarray(x) == value))
