"""LLM architecture configs (dense, MoE, MLA) and their exact parameter counts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from workloads.ops import WorkloadError, check_flags, check_ints

#: the MLP activations lowered (their FLOPs per element: workloads/llm.py ``_ACT_FLOPS``) and
#: the position encodings (rope adds the rotation; learned adds a max_seq x hidden table)
ACTIVATIONS = ("silu", "gelu", "relu", "relu2")
POSITIONS = ("rope", "learned", "alibi")
#: how a checkpoint stores its routed experts' weights apart from the rest ("": as the workload's
#: --dtype): "mxfp4" is the OCP microscaling format, 4-bit e2m1 values with one 8-bit e8m0 scale
#: per 32 (OCP Microscaling Formats (MX) v1.0 spec, 2023), 4.25 bits a weight (gpt-oss)
EXPERT_FORMATS = {"": 0.0, "mxfp4": 4.25 / 8}


@dataclass(frozen=True, slots=True, kw_only=True)
class MoEConfig:
    """Routed experts (top-k of n_experts) plus always-on shared experts, per MoE layer."""

    n_experts: int
    top_k: int
    expert_ffn: int
    n_shared_experts: int = 0
    first_dense_layers: int = 0
    # after the first dense layers, every ``interleave``-th layer is MoE and the others dense
    # (Llama 4 Maverick: 2, layers 1, 3, 5, ...; transformers Llama4TextConfig moe_layers =
    # range(interleave_moe_layer_step - 1, n_layers, interleave_moe_layer_step))
    interleave: int = 1
    # group-limited routing (DeepSeek-V2/V3 n_group / topk_group): the experts fall into
    # ``n_groups`` equal groups and a token's top-k come from its best ``groups_per_token``
    # groups (0: no limit)
    n_groups: int = 1
    groups_per_token: int = 0
    # the routed experts' storage where the checkpoint quantises only them (``EXPERT_FORMATS``):
    # their GEMMs read weights of this size and upcast them in the kernel (weight-only)
    weight_format: str = ""

    @property
    def weight_bytes(self) -> float:
        """Bytes per routed-expert weight of ``weight_format`` (0: the workload's dtype)."""
        return EXPERT_FORMATS[self.weight_format]

    def __post_init__(self) -> None:
        if self.weight_format not in EXPERT_FORMATS:
            raise WorkloadError(
                f"moe: weight_format must be one of {', '.join(repr(f) for f in EXPERT_FORMATS)}, "
                f"got {self.weight_format!r}"
            )
        check_ints("moe", n_experts=self.n_experts, top_k=self.top_k, expert_ffn=self.expert_ffn,
                   n_groups=self.n_groups, interleave=self.interleave)  # fmt: skip
        check_ints("moe", 0, n_shared_experts=self.n_shared_experts,
                   first_dense_layers=self.first_dense_layers,
                   groups_per_token=self.groups_per_token)  # fmt: skip
        if self.top_k > self.n_experts:
            raise WorkloadError(
                f"moe: top_k must be <= n_experts ({self.n_experts}), got {self.top_k!r}"
            )
        if self.n_experts % self.n_groups or self.groups_per_token > self.n_groups:
            raise WorkloadError(
                f"moe: n_groups ({self.n_groups}) must divide n_experts ({self.n_experts}) and "
                f"groups_per_token ({self.groups_per_token}) be <= n_groups"
            )

    def nodes_per_token(self, nodes: int) -> float:
        """Expected distinct nodes a token's top-k experts sit on, the experts spread evenly
        over ``nodes`` (expert parallelism) and chosen uniformly (balanced routing): at most
        ``g`` nodes, g (1 - (1 - 1/g)^k) (k picks with replacement: a slight undercount of
        distinct nodes). With group-limited routing whose groups fill whole nodes (or whose
        nodes hold whole groups), g is the nodes of ``groups_per_token`` groups; else all."""
        g = nodes
        if self.groups_per_token:
            if nodes % self.n_groups == 0:  # each group spans nodes / n_groups nodes
                g = self.groups_per_token * nodes // self.n_groups
            elif self.n_groups % nodes == 0:  # each node holds n_groups / nodes groups
                g = min(nodes, self.groups_per_token)
        return g * (1.0 - (1.0 - 1.0 / g) ** self.top_k)


@dataclass(frozen=True, slots=True, kw_only=True)
class MLAConfig:
    """Multi-head latent attention (DeepSeek-V2/V3): K and V come from a shared low-rank latent."""

    q_lora_rank: int  # 0: queries projected directly from the hidden state
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int

    def __post_init__(self) -> None:
        check_ints("mla", kv_lora_rank=self.kv_lora_rank, v_head_dim=self.v_head_dim,
                   qk_rope_head_dim=self.qk_rope_head_dim)  # fmt: skip
        check_ints("mla", 0, q_lora_rank=self.q_lora_rank, qk_nope_head_dim=self.qk_nope_head_dim)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelConfig:
    """A decoder-only transformer. ``ffn`` is the dense MLP's intermediate size."""

    name: str
    full_name: str = ""
    n_layers: int
    hidden: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    ffn: int
    gated_mlp: bool = True
    activation: str = "silu"
    vocab: int
    tied_embeddings: bool = False
    norm: str = "rmsnorm"
    position: str = "rope"
    max_seq: int = 4096
    attn_bias: bool = False
    mlp_bias: bool = False
    moe: MoEConfig | None = None
    mla: MLAConfig | None = None
    # sliding-window attention: ``sliding_layers`` of the layers (interleaved with the others)
    # let each token attend to the ``sliding_window`` latest tokens, itself included, and cache
    # only those (Mistral-7B v0.1: every layer; Gemma 2, gpt-oss: every second one)
    sliding_window: int = 0
    sliding_layers: int = 0
    # a learned sink logit per query head joins every softmax (gpt-oss): no FLOPs to speak of,
    # but a runtime runs it only on kernels that take sinks (``Runtime.sinks_kernel``)
    attention_sinks: bool = False
    # the checkpoint's fp8 weights carry fine-grained block scales (DeepSeek-V3's 128 x 128
    # weight blocks, 1 x 128 activation groups: quantization_config weight_block_size): an fp8
    # run's GEMMs are block-scaled (``Gemm.promotion`` where the runtime's kernel exposes it)
    fp8_block_scales: bool = False
    n_params_published: float | None = None
    source: str = ""

    def __post_init__(self) -> None:
        where = f"model {self.name!r}"
        check_ints(
            where,
            n_layers=self.n_layers,
            hidden=self.hidden,
            n_heads=self.n_heads,
            n_kv_heads=self.n_kv_heads,
            head_dim=self.head_dim,
            ffn=self.ffn,
            vocab=self.vocab,
            max_seq=self.max_seq,
        )
        check_flags(where, gated_mlp=self.gated_mlp, tied_embeddings=self.tied_embeddings,
                    attn_bias=self.attn_bias, mlp_bias=self.mlp_bias,
                    attention_sinks=self.attention_sinks,
                    fp8_block_scales=self.fp8_block_scales)  # fmt: skip
        if self.n_heads % self.n_kv_heads:
            raise WorkloadError(
                f"{where}: n_heads ({self.n_heads}) must be a multiple of n_kv_heads, "
                f"got {self.n_kv_heads}"
            )
        if self.activation not in ACTIVATIONS:
            raise WorkloadError(
                f"{where}: activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}"
            )
        if self.position not in POSITIONS:
            raise WorkloadError(
                f"{where}: position must be one of {', '.join(POSITIONS)}, got {self.position!r}"
            )
        if self.norm not in ("rmsnorm", "layernorm"):
            raise WorkloadError(f"{where}: norm must be rmsnorm or layernorm, got {self.norm!r}")
        if self.moe and self.moe.first_dense_layers > self.n_layers:
            raise WorkloadError(f"{where}: moe.first_dense_layers must be <= n_layers")
        check_ints(where, 0, sliding_window=self.sliding_window,
                   sliding_layers=self.sliding_layers)  # fmt: skip
        if self.sliding_layers > self.n_layers or (self.sliding_window > 0) != (
            self.sliding_layers > 0
        ):
            raise WorkloadError(
                f"{where}: sliding_layers ({self.sliding_layers}) must be 1..n_layers "
                f"({self.n_layers}) with a sliding_window >= 1 (got {self.sliding_window}), or "
                "both 0 (every layer attends to the whole context)"
            )
        if self.sliding_layers and self.mla is not None:
            raise WorkloadError(f"{where}: sliding-window attention with MLA is not modelled")

    # ---- layer structure -------------------------------------------------------------------
    @property
    def n_moe_layers(self) -> int:
        return self.moe_layers_in(0, self.n_layers)

    def moe_layers_in(self, first: int, count: int) -> int:
        """MoE layers among layers ``first`` .. ``first + count - 1``: after the first dense
        layers, every ``moe.interleave``-th one (the last of each group of that many)."""
        if self.moe is None or count <= 0:
            return 0
        k, start = self.moe.interleave, self.moe.first_dense_layers

        def upto(end: int) -> int:  # MoE layers below ``end``
            return max(0, end - start) // k

        return upto(min(first + count, self.n_layers)) - upto(first)

    @property
    def n_dense_layers(self) -> int:
        return self.n_layers - self.n_moe_layers

    @property
    def mlp_matrices(self) -> int:
        """Weight matrices in one MLP: 3 for gated (SwiGLU/GeGLU), 2 otherwise."""
        return 3 if self.gated_mlp else 2

    # ---- parameter counts --------------------------------------------------------------------
    def attention_params(self) -> int:
        """Parameters of one attention block (projections and biases, not norms)."""
        h, hd = self.hidden, self.head_dim
        if self.mla is not None:
            m = self.mla
            qk = m.qk_nope_head_dim + m.qk_rope_head_dim
            q = (
                h * m.q_lora_rank + m.q_lora_rank + m.q_lora_rank * self.n_heads * qk
                if m.q_lora_rank
                else h * self.n_heads * qk
            )
            kv = (
                h * (m.kv_lora_rank + m.qk_rope_head_dim)
                + m.kv_lora_rank  # latent norm
                + m.kv_lora_rank * self.n_heads * (m.qk_nope_head_dim + m.v_head_dim)
            )
            return q + kv + self.n_heads * m.v_head_dim * h
        q_out, kv_out = self.n_heads * hd, self.n_kv_heads * hd
        params = h * q_out + 2 * h * kv_out + q_out * h
        if self.attn_bias:
            params += q_out + 2 * kv_out + h
        return params

    def mlp_params(self, ffn: int, hidden: int | None = None) -> int:
        """Parameters of one MLP of intermediate size ``ffn`` (``hidden``: a padded copy's hidden
        size where a runtime stores it so; the model's by default)."""
        hidden = self.hidden if hidden is None else hidden
        params = self.mlp_matrices * hidden * ffn
        if self.mlp_bias:
            params += (self.mlp_matrices - 1) * ffn + hidden
        return params

    def norm_params(self) -> int:
        return self.hidden * (2 if self.norm == "layernorm" else 1)

    def embedding_params(self) -> int:
        """Token embedding, learned positions and (untied) output head."""
        params = self.vocab * self.hidden
        if self.position == "learned":
            params += self.max_seq * self.hidden
        if not self.tied_embeddings:
            params += self.vocab * self.hidden
        return params

    def layer_params(self, moe_layer: bool, active: bool = False) -> int:
        params = self.attention_params() + 2 * self.norm_params()
        if moe_layer and self.moe is not None:
            m = self.moe
            routed = m.top_k if active else m.n_experts
            params += self.hidden * m.n_experts  # router
            params += (routed + m.n_shared_experts) * self.mlp_params(m.expert_ffn)
        else:
            params += self.mlp_params(self.ffn)
        return params

    def n_params(self, active: bool = False) -> int:
        """Total parameters, or with ``active`` those one token uses (top-k experts only)."""
        layers = self.n_dense_layers * self.layer_params(
            False
        ) + self.n_moe_layers * self.layer_params(True, active)
        return layers + self.embedding_params() + self.norm_params()

    def n_matmul_params(self, active: bool = True) -> int:
        """Parameters that multiply activations per token: the '2N' in 2·N FLOPs per token.

        Excludes the input embedding (a lookup), learned positions, norms and biases.
        """
        n = self.n_params(active)
        n -= self.vocab * self.hidden if not self.tied_embeddings else 0
        if self.position == "learned":
            n -= self.max_seq * self.hidden
        n -= (2 * self.n_layers + 1) * self.norm_params()
        return n

    # ---- KV cache ------------------------------------------------------------------------------
    def kv_elements_per_token(self) -> int:
        """Cached elements per token over all layers (K and V; for MLA the latent + rope key)."""
        if self.mla is not None:
            return self.n_layers * (self.mla.kv_lora_rank + self.mla.qk_rope_head_dim)
        return self.n_layers * 2 * self.n_kv_heads * self.head_dim

    @property
    def full_attention_layers(self) -> int:
        """Layers that attend to (and cache) the whole context."""
        return self.n_layers - self.sliding_layers

    def kv_elements(self, tokens: Any) -> Any:
        """Cached elements of one sequence holding ``tokens`` tokens (a number or an array):
        every token in the full-attention layers, the ``sliding_window`` latest in the others."""
        if not self.sliding_layers:
            return self.kv_elements_per_token() * tokens
        per_layer = self.kv_elements_per_token() // self.n_layers
        windowed = np.minimum(tokens, self.sliding_window)
        out = per_layer * (self.full_attention_layers * tokens + self.sliding_layers * windowed)
        return out if np.ndim(out) else out.item()  # a plain number for one point
