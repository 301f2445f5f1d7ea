"""Op builders shared by every workload's lowering: GEMM, elementwise, attention, collective."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from workloads.ops import Attention, Collective, Gemm, Op, OpKind, Role


@dataclass(frozen=True, slots=True)
class Builder:
    """Makes ops in one compute dtype with fixed bytes per activation and per weight element."""

    dtype: str
    act_bytes: float
    weight_bytes: float
    attention_kernel: str = "native"  # stamped on every attention op this builder makes

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
        if self.attention_kernel != "native" and (
            self.attention_kernel != "mmha" or _all_equal(spec.q_len, 1)
        ):
            spec = replace(spec, kernel=self.attention_kernel)  # mmha is a decode kernel
        flops = 2.0 * spec.batch * spec.n_q_heads * spec.score_pairs * (spec.qk_dim + spec.v_dim)
        q_o = spec.batch * spec.q_len * spec.n_q_heads * (spec.qk_dim + spec.v_dim) * spec.act_bytes
        kv = spec.batch * spec.n_kv_heads * spec.kv_len * spec.kv_bytes_per_token
        return Op(
            name=name, kind=OpKind.ATTENTION, family="attention", dtype=self.dtype,
            flops=flops, model_flops=flops,
            bytes={Role.ACTIVATION: q_o, Role.KV: kv}, attention=spec,
        )  # fmt: skip

    def collective(
        self, name: str, kind: str, size_bytes: float, group: int, local: int | None = None
    ) -> Op | None:
        """A collective of ``size_bytes`` per chip over ``group`` chips; None for a group of 1.

        ``local`` is how many of the group's chips share a node (None: the group is packed).
        """
        if group <= 1:
            return None
        return Op(
            name=name, kind=OpKind.COLLECTIVE, family="communication", dtype=self.dtype,
            flops=0.0, model_flops=0.0, bytes={},
            collective=Collective(kind=kind, bytes=size_bytes, group=group, local=local),
        )  # fmt: skip


def _nonzero(x: Any) -> bool:
    """A byte count worth a role entry: non-zero, or an array over points (workloads/llm.py)."""
    return isinstance(x, np.ndarray) or bool(x)


def _all_equal(x: Any, value: float) -> bool:
    return bool(np.all(np.asarray(x) == value))
