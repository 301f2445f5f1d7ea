"""Diffusion transformers (image and video): configs, presets, and lowering of a generation.

One generation = text encoder once + ``steps`` denoising forwards of the DiT + VAE decode once.
The latent token count follows from the request, never typed in:

    latent frames = 1 + (frames - 1) / vae_temporal   (causal video VAE: first frame alone)
                  = frames / vae_temporal              (non-causal VAE)
    tokens        = latent frames / patch_t · (H / vae_spatial / patch) · (W / vae_spatial / patch)

Per block (Peebles & Xie 2023, "Scalable Diffusion Models with Transformers", Sec. 3.2; Chen et
al. 2023 PixArt-α Sec. 2.3 for cross-attention and adaLN-single; Esser et al. 2024 SD3 Sec. 4
for MM-DiT joint attention): adaLN modulation, QKV, full attention over all tokens (4·L²·d FLOPs
per layer), output projection, optional cross-attention to the text tokens, MLP, each branch
added back to the residual stream through its adaLN-Zero gate (x + gate·y: read two, write one).
FLOPs are counted with multiply-add = 2; the DiT paper's "Gflops" count multiply-adds once.
How the elementwise work runs is the runtime's (``workloads.runtime``): ``fused`` (a norm with its
modulation, the gated residual add, the QK-norm with RoPE each one kernel, as torch.compile and
the serving engines generate them) or ``eager`` (each PyTorch primitive of the diffusers model
code its own kernel, through memory: ``EAGER_DIT`` below). Under a runtime without CUDA graphs
every kernel is launched from the host, ahead of the chip: a step waits for the part of its
launches' host time that its chip time does not cover.

Sequence parallelism (one request over ``sp`` chips) shards tokens. Ulysses (Jacobs et al.
2023, DeepSpeed-Ulysses, Sec. 3) re-shards Q, K, V from tokens to heads with an all-to-all before
attention and back after it (4 all-to-alls of B·L·h/sp elements per layer; heads % sp == 0).
Ring attention (Liu et al. 2023, Sec. 3) passes K/V blocks around the ring, sp - 1 hops per layer,
overlapped with the attention of the block in hand. Text tokens are replicated on every rank
(their projections are computed on each; their queries are split in ring attention).
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from hardware import files
from hardware.chip import dtype_bytes
from workloads.build import CAST, STRIDED, Builder, scalar
from workloads.llm import MemoryNeed, OpGraph
from workloads.ops import (
    Attention,
    Op,
    Role,
    WorkloadError,
    check_attention_kernel,
    check_choice,
    check_flags,
    check_ints,
)
from workloads.runtime import DEFAULT_DIT_RUNTIME, Runtime, launch, load_runtime
from workloads.vae import VAEDecoder, lower_decoder, vae_from_dict

_BLOCKS = ("adaln", "cross", "mmdit", "hybrid")
# DiTConfig fields by kind, checked in its __post_init__
_DIT_COUNTS = ("n_layers", "hidden", "n_heads", "patch", "patch_t", "in_channels",
               "vae_spatial", "vae_temporal", "default_height", "default_width",
               "default_frames", "default_steps")  # fmt: skip
_DIT_SIZES = ("n_single_layers", "head_dim", "adaln_dim", "text_tokens", "text_dim",
              "step_kernels")  # fmt: skip
_DIT_FLAGS = ("gated_mlp", "shared_text_weights", "vae_causal", "default_cfg",
              "cross_attn_norm", "fp32_residual", "diffusers_attention")  # fmt: skip
_DIT_AMOUNTS = ("mlp_ratio", "vae_decoder_flops_per_pixel", "vae_decoder_params",
                "text_encoder_params", "default_fps")  # fmt: skip
_NORM_FLOPS = 7  # layernorm + modulate (scale, shift) per element
_GELU_FLOPS = 8
_QK_FLOPS = 6  # per element of q and k: the norm's few ops and RoPE's two multiplies and add
QK_NORMS = ("none", "rms", "layer")
ROPES = ("none", "real", "complex")

# Eager PyTorch (diffusers, xDiT and the models' own repositories run their blocks unfused): per
# element of the op's tensor, (bytes moved, kernels) with 16-bit activations (2 B) and the code's
# fp32/fp64 upcasts. From huggingface/diffusers src/diffusers/models/ (normalization.py,
# embeddings.py, attention_processor.py, transformers/transformer_flux.py):
# - norm_modulate: AdaLayerNormZero's ``self.norm(x) * (1 + scale[:, None]) + shift[:, None]``:
#   F.layer_norm 2+2+2 (PyTorch's native kernel passes over each row twice: the statistics, then
#   the output; workloads.build EAGER_PRIMITIVES), multiply 2+2, add 2+2 = 14 B, 4 kernels
#   (``1 + scale`` one on the vector) (fused: 2+2 in one).
# - gated_residual: ``x + gate.unsqueeze(1) * y``: multiply 2+2, add 2+2+2 = 10 B, 2 kernels
#   (fused: 2+2+2 in one); plain_add (a cross-attention's ``x + y``): 2+2+2 = 6 B, 1 kernel.
# - plain_norm (a LayerNorm without modulation: Wan's cross-attention norm3): 2+2+2 = 6 B, 1 kernel.
# - A model whose residual stream is fp32 (``fp32_residual``: the official Wan2.1 blocks run
#   ``x = x + y * e`` under fp32 autocast and WanLayerNorm in fp32): norm_modulate_fp32: layer
#   norm 4+4+4, ``* (1 + e)`` 4+4, ``+ e`` 4+4, autocast's cast to bf16 for the linear 4+2 = 34 B,
#   5 kernels; gated_residual_fp32: ``y * e`` 2+4, ``x +`` 4+4+4 = 18 B, 2 kernels;
#   plain_norm_fp32: 4+4+4, cast 4+2 = 18 B, 2 kernels; plain_add_fp32: 4+2+4 = 10 B, 1 kernel.
# - rms (QK RMSNorm, per element of q and of k): ``x.to(float32).pow(2).mean(-1)`` 2+4, 4+4, 4;
#   ``x * rsqrt(var + eps)`` 2+4; ``.to(bf16)`` 4+2; ``* weight`` 2+2 = 34 B, 8 kernels (two of
#   them, ``+ eps`` and rsqrt, on one value per row).
# - layer (QK LayerNorm, CogVideoX): one F.layer_norm, 2+2+2 B, on the (batch, heads, seq, d)
#   view the processor transposes q and k to before norm_q (diffusers CogVideoXAttnProcessor2_0),
#   which layer_norm_cuda first copies contiguous (input.expect_contiguous(): 2+2 B, a kernel):
#   10 B, 2 kernels.
# - real (apply_rotary_emb, use_real: Flux, HunyuanVideo, CogVideoX): x_real, x_imag by unbind
#   (views); ``stack([-x_imag, x_real])`` neg 1+1 (half the elements), stack 2+2; ``x.float() *
#   cos`` 2+4, 4+4; ``x_rotated.float() * sin`` 2+4, 4+4; add 4+4+4; ``.to(x.dtype)`` 4+2 = 52 B,
#   9 kernels (the stack of two 4-D tensors along a new last dimension is a cat of 5-D ones,
#   which PyTorch's cat kernel takes only up to 4: a copy into a stride-2 slice for each).
# - complex (the official Wan2.1 rope_apply, wan/modules/model.py: ``x.to(float64)`` 2+8, the
#   complex multiply 8+8, ``torch.cat`` of the rotated parts 8+8, ``torch.stack`` over the batch
#   8+8, ``.float()`` 8+4, and flash_attention's cast back to bf16 4+2 = 76 B, 6 kernels;
#   diffusers' port, view_as_complex and type_as only, moves 36 B in 3).
# - copy: a layout copy, 2+2 B, 1 kernel; cat the same through torch.cat's own kernel: joint
#   attention's ``torch.cat`` of the text and image q, k and v, and a single-stream block's
#   ``cat([attn, mlp])``. SDPA's flash path returns its
#   output in q's layout (mha_fwd: empty_like(q)): where q keeps the linear's (B, S, heads, d)
#   storage the output's ``transpose(1, 2).reshape`` is a view, where a cat made q contiguous as
#   (B, heads, S, d) (joint attention) it copies (benchmarks/research/xdit-flux-eager-kernels-
#   2026-12-05.md).
# - ring_merge (ring attention, per output element after each K/V shard but the first; zhuzilin
#   ring-flash-attention utils.py _update_out_and_lse, which yunchang and xDiT call):
#   ``block_out.to(float32)`` 2+4; ``out - block_out`` 4+4+4; ``sigmoid(..) *`` 4+4; ``out - ..``
#   4+4+4 = 38 B, 4 kernels (the lse update touches one value per row; NB: the function is
#   torch.jit.script, whose fuser may merge some of these after its profiling runs). Fused:
#   4+2+4 = 10 B. ring_casts: the first shard's output to fp32 and the result back, 6+6 B, 2
#   kernels per attention.
# NB: ``--dtype fp32`` scales every byte count by 2, the fp32 intermediates too (an overcount).
EAGER_DIT = {
    "norm_modulate": (14.0, 4),
    "gated_residual": (10.0, 2),
    "plain_norm": (6.0, 1),
    "plain_add": (6.0, 1),
    "norm_modulate_fp32": (34.0, 5),
    "gated_residual_fp32": (18.0, 2),
    "plain_norm_fp32": (18.0, 2),
    "plain_add_fp32": (10.0, 1),
    "rms": (34.0, 8),
    "layer": (10.0, 2),
    "real": (52.0, 9),
    "complex": (76.0, 6),
    "copy": (4.0, 1),
    "cat": (4.0, 1),
    "ring_merge": (38.0, 4),
    "ring_casts": (12.0, 2),
}
# Of those kernels, the ones on eager PyTorch's unvectorised kernels (workloads.build
# EAGER_SCALAR): (output elements, bytes, strided or cast kernel) of each per element of the
# op's tensor (benchmarks/research/eager-broadcast-counts-2026-12-07.md
# section 2): the modulation's ``*`` and ``+`` (scale and shift broadcast over tokens, 2+2 B
# each; fp32 4+4), the gate's ``*`` (2+2; fp32 ``y * e`` 2+4); an fp32 stream's add of a bf16
# branch (cast, 4+2+4); the QK RMSNorm's upcast for the variance (cast, 2+4),
# ``x * rsqrt(var)`` (2+4) and ``* weight`` (2+2); the QK LayerNorm's contiguous copy of its
# transposed input (2+2); the real RoPE's negated strided half (1+1),
# the stack's two copies into stride-2 slices (2+2 in all), ``* cos`` and ``* sin`` (broadcast
# over heads, 4+4 each) and its two upcasts (cast, 2+4 each); the complex RoPE's multiply (one
# complex128 output per two elements, 8+8) and its casts to fp64 and back to fp32 (2+8, 8+4); a
# permuting copy (2+2); the ring merge's upcast of the shard's output (cast, 2+4) and
# ``sigmoid(..) * (..)`` (a value a row broadcast along it, 4+4), the first shard's upcast
# (2+4). LayerNorm is a native kernel, cat its own kernel, contiguous same-dtype adds and the
# casts to 16 bits vectorised. Not counted: torch's templated ring merge (``torch_ring``), whose
# chunk scaling is a broadcast multiply too.
_S, _C = STRIDED, CAST
EAGER_DIT_SCALAR: dict[str, tuple[tuple[float, float, str], ...]] = {
    "norm_modulate": ((2.0, 8.0, _S),),
    "gated_residual": ((1.0, 4.0, _S),),
    "plain_norm": (),
    "plain_add": (),
    "norm_modulate_fp32": ((2.0, 16.0, _S),),
    "gated_residual_fp32": ((1.0, 6.0, _S),),
    "plain_norm_fp32": (),
    "plain_add_fp32": ((1.0, 10.0, _C),),
    "rms": ((1.0, 6.0, _C), (1.0, 6.0, _S), (1.0, 4.0, _S)),
    "layer": ((1.0, 4.0, _S),),
    "real": ((0.5, 2.0, _S), (1.0, 4.0, _S), (1.0, 8.0, _S), (1.0, 8.0, _S), (2.0, 12.0, _C)),
    "complex": ((0.5, 16.0, _S), (1.0, 10.0, _C), (1.0, 12.0, _C)),
    "copy": ((1.0, 4.0, _S),),
    "cat": (),
    "ring_merge": ((1.0, 6.0, _C), (1.0, 8.0, _S)),
    "ring_casts": ((1.0, 6.0, _C),),
}  # (output elements, bytes, path) of each scalar kernel per element


@dataclass(frozen=True, slots=True, kw_only=True)
class DiTConfig:
    """A diffusion transformer with its VAE and text encoder (see docs/presets.md)."""

    name: str
    full_name: str = ""
    n_layers: int  # DiT / cross / MM-DiT blocks (dual-stream blocks for hybrid)
    n_single_layers: int = 0  # single-stream blocks after the dual-stream ones (hybrid)
    hidden: int
    n_heads: int
    head_dim: int = 0
    mlp_ratio: float = 4.0
    gated_mlp: bool = False
    block: str = "adaln"
    adaln: str = "per-block"  # per-block | single | none
    adaln_dim: int = 0  # width of the conditioning vector into adaLN (0: hidden)
    qk_norm: str = "none"  # none | rms | layer: the norm on q and k before attention
    rope: str = "none"  # none | real (cos/sin on real pairs) | complex (view_as_complex, fp64)
    cross_attn_norm: bool = True  # cross blocks: a LayerNorm before cross-attention (not PixArt)
    fp32_residual: bool = False  # the residual stream, norms and modulation in fp32 (Wan2.1)
    shared_text_weights: bool = False  # mmdit: text and image tokens share QKV/out/MLP weights
    # 3: the model code runs q, k and v (and a text stream's) as separate linears (diffusers'
    # Attention: to_q, to_k, to_v, add_q_proj, ...); 1: one fused QKV linear (DiT's timm
    # Attention, HunyuanVideo's repository). Separate linears launch three GEMMs, each reading
    # the input
    qkv_linears: int = 1
    # the attention runs through diffusers' attention processors (which xDiT wraps with its
    # USP): joint attention's output transpose then copies (``attn_out_copy``), and a runtime
    # with ``ring_attention = "torch"`` (xfuser 0.4) rings through torch's templated ring
    # attention; false: the model's own repository code (DiT-XL, HunyuanVideo, Wan), whose
    # sequence parallelism xDiT runs through yunchang
    diffusers_attention: bool = False
    # eager launches per denoising step outside the blocks that the lowering does not name
    # (timestep/guidance/text embeddings and position tables recomputed every step, the
    # scheduler's step), counted from the pipeline's code; 0 where nobody counted them
    step_kernels: int = 0
    patch: int = 2
    patch_t: int = 1
    in_channels: int = 4
    vae_spatial: int = 8
    vae_temporal: int = 1
    vae_causal: bool = True
    vae_decoder_flops_per_pixel: float = 0.0
    vae_decoder_params: float = 0.0
    text_tokens: int = 0
    text_dim: int = 0
    text_encoder_params: float = 0.0
    default_height: int = 256
    default_width: int = 256
    default_frames: int = 1
    default_fps: float = 0.0
    default_steps: int = 50
    default_cfg: bool = False
    n_params_published: float | None = None
    vae: VAEDecoder | None = None  # the decoder's layers ([vae] table; None: one implicit GEMM)
    source: str = ""

    def __post_init__(self) -> None:
        where = f"model {self.name!r}"
        check_ints(where, **{f: getattr(self, f) for f in _DIT_COUNTS})
        check_ints(where, 0, **{f: getattr(self, f) for f in _DIT_SIZES})
        for field_name in _DIT_AMOUNTS:
            value = getattr(self, field_name)
            if (isinstance(value, bool) or not isinstance(value, int | float)
                    or not math.isfinite(value) or value < 0):  # fmt: skip
                raise WorkloadError(
                    f"{where}: {field_name} must be a finite number >= 0, got {value!r}"
                )
        if not 1 <= self.hidden * self.mlp_ratio < 2**53:
            raise WorkloadError(
                f"{where}: mlp_ratio must make an MLP width (hidden x mlp_ratio) >= 1, got "
                f"{self.mlp_ratio!r}"
            )
        check_flags(where, **{f: getattr(self, f) for f in _DIT_FLAGS})
        if self.adaln not in ("per-block", "single", "none"):
            raise WorkloadError(
                f"{where}: adaln must be per-block, single or none, got {self.adaln!r}"
            )
        check_choice(where, "block", self.block, _BLOCKS)
        if self.qkv_linears not in (1, 3) or isinstance(self.qkv_linears, bool):
            raise WorkloadError(
                f"{where}: qkv_linears must be 1 (one fused QKV linear) or 3 (separate q, k, v "
                f"linears), got {self.qkv_linears!r}"
            )
        check_choice(where, "qk_norm", self.qk_norm, QK_NORMS)
        check_choice(where, "rope", self.rope, ROPES)
        if self.block in ("cross", "mmdit", "hybrid") and not (self.text_tokens and self.text_dim):
            raise WorkloadError(f"{where}: a {self.block} block needs text_tokens and text_dim")
        if not self.head_dim:
            object.__setattr__(self, "head_dim", self.hidden // self.n_heads)
        if not self.adaln_dim:
            object.__setattr__(self, "adaln_dim", self.hidden)
        if self.vae is not None:
            v = self.vae
            if 2 ** (len(v.channels) - 1) != self.vae_spatial or v.frame_div[-1] != max(
                1, self.vae_temporal
            ):
                raise WorkloadError(
                    f"{where}: [vae] must match the VAE's compression: {len(v.channels)} levels "
                    f"upsample {2 ** (len(v.channels) - 1)}x (vae_spatial is {self.vae_spatial}) "
                    f"and frame_div ends at {v.frame_div[-1]} (vae_temporal is "
                    f"{self.vae_temporal}); fix channels or frame_div"
                )
        if self.shared_text_weights and self.block != "mmdit":
            raise WorkloadError(f"{where}: shared_text_weights applies to block = 'mmdit' only")

    @property
    def ffn(self) -> int:
        return int(round(self.hidden * self.mlp_ratio))

    def latent_frames(self, frames: int) -> int:
        if frames == 1:
            return 1
        if self.vae_causal:
            return 1 + (frames - 1) // self.vae_temporal
        return frames // self.vae_temporal

    def tokens(self, height: int, width: int, frames: int) -> int:
        """Latent tokens of one sample; raises WorkloadError on sizes the VAE/patch cannot cut."""
        cut = self.vae_spatial * self.patch
        for label, size in (("--height", height), ("--width", width)):
            if size < cut or size % cut:
                raise WorkloadError(
                    f"dit: {label} {size} must be a multiple of VAE x patch = {cut} for {self.name}"
                )
        if frames < 1:
            raise WorkloadError(f"dit: --frames must be >= 1, got {frames}")
        if frames > 1 and self.vae_temporal > 1:
            rest = frames - 1 if self.vae_causal else frames
            if rest % self.vae_temporal:
                form = "1 + a multiple" if self.vae_causal else "a multiple"
                raise WorkloadError(
                    f"dit: --frames {frames} must be {form} of the VAE's temporal factor "
                    f"{self.vae_temporal} for {self.name}"
                )
        lf = self.latent_frames(frames)
        if lf % self.patch_t:
            raise WorkloadError(
                f"dit: {lf} latent frames must divide by the temporal patch {self.patch_t}"
            )
        return (lf // self.patch_t) * (height // cut) * (width // cut)

    def n_params(self) -> int:
        """DiT parameters (not the text encoder or VAE): attention, MLP, adaLN, embeddings."""
        h, f = self.hidden, self.ffn
        mlp = (3 if self.gated_mlp else 2) * h * f
        attn = 4 * h * h
        per_block = attn + mlp
        if self.block == "cross":
            per_block += 2 * h * h + 2 * h * h  # q, o on image tokens; k, v from the text
        streams = 2 if self.block in ("mmdit", "hybrid") else 1
        weight_streams = 1 if self.shared_text_weights else streams
        total = self.n_layers * per_block * weight_streams
        if self.adaln == "per-block":  # one modulation per stream, even when weights are shared
            total += self.n_layers * 6 * h * self.adaln_dim * streams
        if self.n_single_layers:
            # single-stream block: one linear for QKV + MLP-in, one for attention-out + MLP-out
            single = h * (3 * h + f) + (h + f) * h
            single += 3 * h * self.adaln_dim if self.adaln == "per-block" else 0
            total += self.n_single_layers * single
        total += self.in_channels * self.patch**2 * self.patch_t * h  # patch embed
        total += h * self.patch**2 * self.patch_t * self.in_channels  # final projection
        if self.text_dim:
            total += self.text_dim * h  # caption / context projection
        return total


_DIT_KEYS = set(DiTConfig.__dataclass_fields__)


def list_dits() -> list[str]:
    from workloads.loader import _slugs

    return _slugs("dit")


@cache
def load_dit(name_or_path: str) -> DiTConfig:
    """A DiT preset slug, a path to a DiT TOML file, or a diffusers transformer config.json
    (``workloads.diffusers``)."""
    from workloads.loader import preset_slug

    path = Path(name_or_path)
    if files.exists(path) and not files.is_file(path):
        # a downloaded diffusers folder: its transformer's config.json; else the repo id it is
        # named like
        if files.is_file(path / "transformer" / "config.json"):
            path = path / "transformer" / "config.json"
        elif files.is_file(path / "config.json"):  # the transformer's own folder
            path = path / "config.json"
        elif (slug := preset_slug(name_or_path, "dit")) is not None:
            return load_dit(slug)
    if path.suffix in (".toml", ".json") or files.exists(path):
        if not files.is_file(path):
            raise WorkloadError(f"--model: no file {name_or_path!r}")
        text = files.read_text(path, "--model")
        if path.suffix == ".json":
            import json

            from workloads.diffusers import dit_from_diffusers

            try:
                cfg = json.loads(text)
            except json.JSONDecodeError as exc:
                raise WorkloadError(f"{name_or_path}: malformed JSON: {exc}") from None
            # a diffusers folder's transformer/config.json: name it after the model folder
            # (not resolved: the Hugging Face cache links config.json into blobs/)
            parts = Path(os.path.abspath(path)).parts
            name = path.stem
            if len(parts) >= 3 and parts[-2] == "transformer":
                name = parts[-3]
                if len(parts) >= 5 and parts[-4] == "snapshots":  # cache: models--org--name/
                    name = parts[-5].removeprefix("models--").split("--")[-1]
            return dit_from_diffusers(cfg, name)
    else:
        slug = preset_slug(name_or_path, "dit")
        if slug is None:
            raise WorkloadError(
                f"--model: unknown DiT model {name_or_path!r}; available: {', '.join(list_dits())}"
                " (or a Hugging Face repo id one of them lists, `roofsim models --hf`; or a "
                "diffusers transformer config.json)"
            )
        text = (resources.files("workloads") / "presets" / "dit" / f"{slug}.toml").read_text()
    try:
        raw: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise WorkloadError(f"{name_or_path}: malformed TOML: {exc}") from None
    return dit_from_dict(raw, name_or_path)


def dit_from_dict(raw: dict[str, Any], where: str = "DiT model") -> DiTConfig:
    """A DiTConfig from a DiT TOML table (unknown keys are ignored, as in model TOMLs)."""
    fields = {k: v for k, v in raw.items() if k in _DIT_KEYS}
    fields["vae"] = vae_from_dict(raw.get("vae"), f"model {raw.get('name', where)!r}")
    try:
        return DiTConfig(**fields)
    except TypeError as exc:
        raise WorkloadError(f"model {raw.get('name', where)!r}: {exc}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class DiT:
    """One generation request: ``batch`` images or videos, ``steps`` denoising steps.

    ``cfg`` doubles the batch through the DiT (conditional + unconditional). ``sp`` chips share
    one request by sequence parallelism (``sp_method`` ulysses | ring); ``dp`` replicas split the
    batch. ``tokens`` overrides the latent token count for what-ifs.
    """

    model: DiTConfig
    height: int
    width: int
    frames: int = 1
    fps: float = 0.0
    steps: int = 50
    batch: int = 1
    cfg: bool = False
    dtype: str = "bf16"
    sp: int = 1
    sp_method: str = "ulysses"
    dp: int = 1
    tokens: int | None = None
    # the prompt's text tokens (the pipeline's max_sequence_length: T5 pads the prompt to it);
    # None: the model's (``DiTConfig.text_tokens``)
    text_tokens: int | None = None
    # native | fa2 (workloads.ops.ATTENTION_KERNELS); None: the runtime's, else native
    attention_kernel: str | None = None
    # the VAE decode split over the sp chips (xDiT's --use_parallel_vae, DistVAE); default: one
    # chip decodes the whole sample, as the HunyuanVideo repository's xDiT integration
    # (hyvideo/inference.py parallelizes the transformer only), diffusers and xDiT's default do
    parallel_vae: bool = False
    # the software (workloads.runtime): fused or eager elementwise work, graphed or host launches;
    # an LLM engine's per-step scheduler time (step_overhead_s ...) is not charged to a DiT
    # (default: diffusers, eager PyTorch, as the pipelines and the models' reference repos run)
    runtime: Runtime = field(default_factory=lambda: load_runtime(DEFAULT_DIT_RUNTIME))

    def __post_init__(self) -> None:
        if self.attention_kernel is None:
            kernel = self.runtime.default_attention_kernel
            object.__setattr__(self, "attention_kernel", kernel)

    @property
    def text_len(self) -> int:
        """The prompt's text tokens: ``text_tokens`` where given, else the model's."""
        return self.text_tokens or self.model.text_tokens

    def validate(self) -> int:
        """Checks the request; returns the latent tokens per sample."""
        for label, value in (("--steps", self.steps), ("--batch", self.batch), ("--sp", self.sp),
                             ("replicas", self.dp)):  # fmt: skip
            if not isinstance(value, int) or value < 1:
                raise WorkloadError(f"dit: {label} must be an integer >= 1, got {value!r}")
        check_attention_kernel("dit", self.attention_kernel, decode=False)
        if self.text_tokens is not None:
            t = self.text_tokens
            if not isinstance(t, int) or isinstance(t, bool) or t < 1:
                raise WorkloadError(f"dit: --text-tokens must be an integer >= 1, got {t!r}")
            if not self.model.text_tokens:
                raise WorkloadError(
                    f"dit: --text-tokens {t}: {self.model.name} takes no text tokens (a class- or "
                    "pooled-vector-conditioned model); drop --text-tokens"
                )
        if self.sp_method not in ("ulysses", "ring"):
            raise WorkloadError(f"dit: --sp must be ulysses or ring, got {self.sp_method!r}")
        if self.dtype not in ("fp32", "bf16", "fp16", "fp8"):
            raise WorkloadError(f"dit: --dtype must be fp32, bf16, fp16 or fp8, got {self.dtype!r}")
        if self.batch % self.dp:
            raise WorkloadError(f"dit: --batch {self.batch} must divide over {self.dp} replicas")
        m = self.model
        if self.sp_method == "ulysses" and m.n_heads % self.sp:
            raise WorkloadError(
                f"dit: {self.sp} chips of Ulysses sequence parallelism must divide the "
                f"{m.n_heads} heads of {m.name}; use --sp ring or a divisor of {m.n_heads}"
            )
        if self.tokens is not None and (not isinstance(self.tokens, int) or self.tokens < 1):
            raise WorkloadError(f"dit: --tokens must be an integer >= 1, got {self.tokens!r}")
        natural = m.tokens(self.height, self.width, self.frames)  # checks the resolution too
        tokens = natural if self.tokens is None else self.tokens
        if tokens < self.sp:
            raise WorkloadError(f"dit: {tokens} tokens cannot be split over {self.sp} chips")
        return tokens

    @property
    def is_video(self) -> bool:
        return self.frames > 1

    def lower(self) -> OpGraph:
        m = self.model
        L = self.validate()
        ab = 4.0 if self.dtype == "fp32" else 2.0
        b = Builder(self.dtype, ab, dtype_bytes(self.dtype), self.attention_kernel)
        B = (self.batch // self.dp) * (2 if self.cfg else 1)  # samples through the DiT per replica
        Ls = math.ceil(L / self.sp)  # tokens on one chip
        Lt = self.text_len
        h, f, hd = m.hidden, m.ffn, m.head_dim
        heads = m.n_heads
        step = self.steps

        def rep(op: Op | None, count: int) -> Op | None:
            return None if op is None else replace(op, count=op.count * count)

        def attention_core(prefix: str, joint_text: int) -> list[Op]:
            """Self-attention of this chip's tokens (plus replicated text tokens) over all L."""
            ops: list[Op | None] = []
            shard = B * Ls * h * ab  # one of Q, K, V (or the output) on this chip
            if self.sp_method == "ulysses" or self.sp == 1:
                # tokens -> heads: every chip attends all L (+ text) tokens with heads/sp heads;
                # one all-to-all each for q, k and v (xDiT's USP, yunchang's SeqAllToAll4D)
                a2a = b.collective(f"{prefix}a2a_qkv", "all_to_all", shard, self.sp)
                ops.append(None if a2a is None else replace(a2a, count=3))
                n = L + joint_text
                spec = Attention(batch=B, n_q_heads=heads // self.sp, n_kv_heads=heads // self.sp,
                                 q_len=n, kv_len=n, qk_dim=hd, v_dim=hd, causal=False,
                                 act_bytes=ab, kv_bytes_per_token=2 * hd * ab)  # fmt: skip
                ops.append(b.attention(f"{prefix}attention", spec))
                ops.append(b.collective(f"{prefix}a2a_out", "all_to_all", shard, self.sp))
                if eager and self.sp > 1:
                    # the layout copies around them (xfuser 0.4 usp.py: each input's reshape/
                    # permute after its all-to-all, and the output's before and after; a
                    # single-stream block's strided q, k, v and its output transpose too:
                    # benchmarks/research/xdit-flux-eager-kernels-2026-12-05.md)
                    n_copy = 9 if prefix == "single." else 5
                    copy = b.elementwise(f"{prefix}a2a_copies", "attention", shard / ab,
                                         shard / ab, 0.0)  # fmt: skip
                    ops.append(unfused(copy, ("copy",), shard / ab, times=n_copy))
            else:
                # ring: this chip's queries meet every K/V shard as it passes by, one attention
                # kernel per shard (sp of them, each over L/sp keys), the ring's next shard in
                # flight beside it; after each but the first the partial outputs are merged by
                # their log-sum-exp (yunchang / ring-flash-attention update_out_and_lse: the
                # running output in fp32 re-read and re-written)
                q = Ls + math.ceil(joint_text / self.sp)
                kv = math.ceil((L + joint_text) / self.sp)
                spec = Attention(batch=B, n_q_heads=heads, n_kv_heads=heads, q_len=q,
                                 kv_len=kv, qk_dim=hd, v_dim=hd, causal=False,
                                 act_bytes=ab, kv_bytes_per_token=2 * hd * ab)  # fmt: skip
                ops.append(replace(b.attention(f"{prefix}attention", spec), count=self.sp))
                # each hop passes this chip's K and V shard (image and text tokens alike); hop i
                # flies beside attention call i - 1 and call i waits for it, so the sp - 1 hops
                # hide behind all the calls but the last (a + (sp - 1) max(a, hop) in all)
                ring = b.collective(f"{prefix}ring_kv", "send_recv", 2 * B * kv * h * ab, 2,
                                    comm=self.sp)  # fmt: skip
                if ring is not None:
                    ops.append(replace(ring, count=self.sp - 1,
                                       overlaps_previous=(self.sp - 1) / self.sp))  # fmt: skip
                out = B * q * h  # output elements on this chip
                if eager and self.runtime.ring_attention == "torch" and m.diffusers_attention:
                    ops += torch_ring(prefix, out, B * kv * h)
                    return [op for op in ops if op]
                # fused: read the fp32 running output and the shard's 16-bit one, write fp32
                merge = b.elementwise(f"{prefix}ring_merge", "attention", 0.0, 0.0, 4 * out)
                merge = replace(merge, bytes={Role.ACTIVATION: 10.0 * out})
                if eager:
                    merge = unfused(merge, ("ring_merge",), out)
                    casts = b.elementwise(f"{prefix}ring_casts", "attention", out, out, 0.0)
                    ops.append(unfused(casts, ("ring_casts",), out))
                ops.append(replace(merge, count=self.sp - 1))
            return [op for op in ops if op]

        def torch_ring(prefix: str, out: float, kv_elems: float) -> list[Op]:
            """torch 2.5's templated ring attention, eager (xfuser 0.4's ring path; torch
            .distributed.tensor.experimental._attention): before each hop k and v are
            flattened into one buffer (a cat), and the sp partial outputs are kept and merged
            at the end by _merge_sdpa: sp exps of the LSEs, a stack, a sum and a log, then per
            chunk the LSE difference, its exp and cast and the scaled chunk, a stack and a sum
            (5 sp + 5 kernels over (5 sp + 1) output-sized 16-bit passes); a single-stream
            block's k and v are made contiguous first and its output transpose copies
            (benchmarks/research/xdit-flux-eager-kernels-2026-12-05.md)."""
            n = self.sp
            cat = b.elementwise(f"{prefix}ring_cat", "attention", 2 * kv_elems, 2 * kv_elems, 0.0)
            merge = b.elementwise(f"{prefix}ring_merge", "attention", 0.0, 0.0, 3.0 * n * out)
            merge = replace(merge, bytes={Role.ACTIVATION: (5 * n + 1) * out * ab},
                            kernels=5 * n + 5)  # fmt: skip
            ops = [replace(cat, count=n - 1), merge]
            # the merged output is contiguous (B, heads, S, d): the processor's transpose
            # copies it (a joint block's copy is attn_out_copy); a single block also makes
            # its strided k and v contiguous first
            copies_n = 3 if prefix == "single." else (0 if joint_block else 1)
            if copies_n:
                copy = b.elementwise(f"{prefix}ring_copies", "attention", out, out, 0.0)
                ops.append(unfused(copy, ("copy",), out, times=copies_n))
            return ops

        def mlp(prefix: str, rows: float) -> list[Op]:
            up = f * (2 if m.gated_mlp else 1)
            return [
                b.gemm(f"{prefix}mlp_up", "mlp", rows, up, h),
                b.elementwise(
                    f"{prefix}mlp_act", "mlp", rows * up, rows * f, _GELU_FLOPS * rows * f
                ),
                b.gemm(f"{prefix}mlp_down", "mlp", rows, h, f),
            ]

        eager = self.runtime.elementwise == "eager"
        ring = self.sp > 1 and self.sp_method == "ring"
        # the text stream has its own weights; its tokens join the image tokens in attention
        separate_text = m.block in ("mmdit", "hybrid") and not m.shared_text_weights
        # a joint (text + image) attention through diffusers' processors: its output copies
        joint_block = separate_text and m.diffusers_attention

        def unfused(op: Op, keys: tuple[str, ...], elems: float, times: int = 1) -> Op:
            """``op`` as eager PyTorch runs it: the primitives of ``EAGER_DIT[key]`` for each
            key over ``elems`` elements, ``times`` tensors of them."""
            per_element = sum(EAGER_DIT[k][0] for k in keys) * ab / 2.0
            kernels = times * sum(EAGER_DIT[k][1] for k in keys)
            by = {**op.bytes, Role.ACTIVATION: per_element * elems * times}
            on = [(e, by / e * ab / 2.0, path)
                  for k in keys for e, by, path in EAGER_DIT_SCALAR[k]]  # fmt: skip
            return scalar(replace(op, bytes=by, kernels=kernels), on, self.runtime.scalar_rates,
                          elems * times)  # fmt: skip

        f32 = "_fp32" if m.fp32_residual else ""

        def norm(name: str, rows: float, kind: str = "norm_modulate") -> Op:
            op = b.elementwise(name, "other", rows * h, rows * h, _NORM_FLOPS * rows * h)
            return unfused(op, (kind + f32,), rows * h) if eager else op

        def residual(name: str, rows: float, kind: str = "gated_residual") -> Op:
            # x + gate * y (adaLN-Zero's gated residual; a plain add without a gate): reads the
            # residual stream and the branch's output, writes the stream
            op = b.elementwise(name, "other", 2 * rows * h, rows * h, 2 * rows * h)
            return unfused(op, (kind + f32,), rows * h) if eager else op

        def qk_prep(name: str, rows: float, rope: bool = True, streams: int = 1) -> list[Op]:
            """The QK-norm (and RoPE) on this chip's q and k, ``rows`` of each (one kernel
            fused); ``streams`` = 2: a text stream normalises its own q and k with its own
            norms (Flux's norm_added_q/k) before the joint RoPE, twice the norm's launches."""
            keys = tuple(k for k in (m.qk_norm, m.rope if rope else "none") if k != "none")
            if not keys:
                return []
            n = 2 * rows * h  # q and k
            op = b.elementwise(name, "attention", n, n, _QK_FLOPS * n)
            if not eager:
                return [op]
            op = unfused(op, keys, rows * h, times=2)
            if streams > 1 and m.qk_norm != "none":
                op = replace(op, kernels=op.kernels + 2 * (streams - 1) * EAGER_DIT[m.qk_norm][1])
            return [op]

        def qkv(name: str, rows: float) -> Op:
            """The q, k and v projections: one fused linear, or three (each reading the
            input: ``qkv_linears``)."""
            op = b.gemm(name, "projection", rows, 3 * h, h)
            if m.qkv_linears == 1:
                return op
            by = {**op.bytes, Role.ACTIVATION: op.bytes[Role.ACTIVATION] + 2 * rows * h * ab}
            return replace(op, kernels=3, bytes=by)

        def adaln(name: str, streams: int, width: int) -> Op:
            """adaLN's modulation vectors: per stream silu(emb) then a linear of B rows (with
            one row torch's addmm skips cuBLASLt: the bias is copied, then the GEMM)."""
            op = b.gemm(name, "other", B, width * streams, m.adaln_dim)
            return replace(op, kernels=streams * (3 if B == 1 else 2)) if eager else op

        def copies(name: str, elems: float, tensors: int, key: str = "cat") -> list[Op]:
            """Eager copies of ``tensors`` tensors (by torch.cat, or ``copy``: a permuting
            copy): none fused."""
            if not eager:
                return []
            op = b.elementwise(name, "attention", elems, elems, 0.0)
            return [unfused(op, (key,), elems / tensors, times=tensors)]

        img_rows = rows = B * Ls
        block: list[Op] = []
        if m.adaln == "per-block":
            streams = 2 if m.block in ("mmdit", "hybrid") else 1
            block.append(adaln("adaln_modulation", streams, 6 * h))
        if m.shared_text_weights:
            # text tokens are concatenated with the image tokens and share every weight
            rows = B * (Ls + Lt)
        block += [norm("norm1_modulate", rows), qkv("qkv_proj", rows)]
        joint = Lt if m.shared_text_weights else 0
        if separate_text:
            text_rows = B * Lt
            block += [
                norm("text_norm1", text_rows),
                qkv("text_qkv_proj", text_rows),
            ]
            joint = Lt
        block += qk_prep("qk_norm_rope", rows + (B * Lt if separate_text else 0),
                         streams=2 if separate_text else 1)  # fmt: skip
        if separate_text:  # joint attention: torch.cat of the text and image q, k and v
            block += copies("joint_cat", 3 * (rows + B * Lt) * h, 3)
        block += attention_core("", joint)
        if joint_block:
            # the cat left q contiguous as (B, heads, S, d), flash attention's output takes its
            # layout, so diffusers' transpose(1, 2).reshape copies it (the chip's queries)
            q_rows = rows + (B * math.ceil(Lt / self.sp) if ring else B * Lt)
            block += copies("attn_out_copy", q_rows * h, 1, "copy")
        block += [b.gemm("out_proj", "projection", rows, h, h), residual("attn_residual", rows)]
        if separate_text:
            block += [b.gemm("text_out_proj", "projection", B * Lt, h, h),
                      residual("text_attn_residual", B * Lt)]  # fmt: skip
        if m.block == "cross":
            spec = Attention(batch=B, n_q_heads=heads, n_kv_heads=heads, q_len=Ls, kv_len=Lt,
                             qk_dim=hd, v_dim=hd, causal=False, act_bytes=ab,
                             kv_bytes_per_token=2 * hd * ab)  # fmt: skip
            block += [
                *([norm("norm_cross", rows, "plain_norm")] if m.cross_attn_norm else []),
                b.gemm("cross_q_proj", "projection", rows, h, h),
                b.gemm("cross_kv_proj", "projection", B * Lt, 2 * h, h),
                b.attention("cross_attention", spec),
                b.gemm("cross_out_proj", "projection", rows, h, h),
                residual("cross_residual", rows, "plain_add"),
            ]
            # Wan: the QK-norm on the cross-attention's q (image rows) and k (text rows) too
            block += qk_prep("cross_qk_norm", (rows + B * Lt) / 2, rope=False)
        block += [norm("norm2_modulate", rows), *mlp("", rows), residual("mlp_residual", rows)]
        if separate_text:
            block += [norm("text_norm2", B * Lt), *mlp("text_", B * Lt),
                      residual("text_mlp_residual", B * Lt)]  # fmt: skip
        ops: list[Op] = [op for op in (rep(o, m.n_layers * step) for o in block) if op]

        if m.n_single_layers:
            # single-stream: text and video tokens together; the attention's q, k, v and the MLP's
            # input linear side by side, one linear out over both
            srows = B * (Ls + Lt)  # text tokens replicated on every chip
            single: list[Op] = []
            if m.adaln == "per-block":
                single.append(adaln("single.adaln_modulation", 1, 3 * h))
            single += [
                norm("single.norm_modulate", srows),
                # the linears in: q, k, v (one fused, or three: qkv_linears) and the MLP's input
                # (HunyuanVideo's repository fuses all four into one linear1; the split by role
                # changes neither FLOPs nor tiling much)
                qkv("single.qkv_proj", srows),
                b.gemm("single.mlp_up", "mlp", srows, f, h),
                *qk_prep("single.qk_norm_rope", srows),
                *attention_core("single.", Lt),
                b.elementwise(
                    "single.mlp_act", "mlp", srows * f, srows * f, _GELU_FLOPS * srows * f
                ),
                # torch.cat([attention output, MLP activation]) into the one linear out
                *copies("single.cat", srows * (h + f), 1),
                # proj_out over cat([attn, mlp]): one GEMM of K = h + f
                b.gemm("single.proj_out", "projection", srows, h, h + f),
                residual("single.residual", srows),
            ]
            ops += [op for op in (rep(o, m.n_single_layers * step) for o in single) if op]

        patch_in = m.in_channels * m.patch**2 * m.patch_t
        head: list[Op] = [b.gemm("patch_embed", "other", img_rows, h, patch_in)]
        if m.adaln != "none":
            head.append(
                b.gemm("timestep_embed", "other", B, 6 * h if m.adaln == "single" else h, h)
            )
        head += [norm("final_norm", img_rows), b.gemm("final_proj", "other", img_rows, patch_in, h)]
        if eager and m.step_kernels:
            # the rest of a step's launches outside the blocks (embeddings, position tables,
            # the scheduler): small tensors, counted for their launches
            head.append(replace(b.elementwise("step_misc", "other", B * h, B * h, 0.0),
                                kernels=m.step_kernels))  # fmt: skip
        ops += [rep(op, step) for op in head]  # type: ignore[misc]

        ops += self._text_encoder(b) + self._vae(b)
        ops = launch(ops, self.runtime)
        weights = m.n_params() * b.weight_bytes
        acts = rows * max(3 * h, f) * ab * 3 + B * Lt * h * ab
        te = m.text_encoder_params * b.weight_bytes
        vae_bytes = 4.0 if m.vae is not None and m.vae.dtype == "fp32" else 2.0
        memory = MemoryNeed(
            weights_bytes=weights + te + m.vae_decoder_params * vae_bytes,
            kv_cache_bytes=0.0,
            activation_bytes=acts,
        )
        return OpGraph(
            ops=tuple(ops),
            n_chips=self.sp * self.dp,
            tokens=float(self.batch),  # samples (images or videos) per run
            memory=memory,
            describe={
                "kind": "dit",
                "model": m.name,
                "sample_unit": "videos" if self.is_video else "images",
                "batch": self.batch,
                "height": self.height,
                "width": self.width,
                "frames": self.frames,
                "video_s": self.frames / self.fps if self.is_video and self.fps else None,
                "steps": self.steps,
                "cfg": self.cfg,
                "latent_tokens": L,
                **({"text_tokens": self.text_len} if self.text_tokens else {}),
                "dtype": self.dtype,
                "sp": self.sp,
                "sp_method": self.sp_method,
                "parallel_vae": self.parallel_vae,
                "dp": self.dp,
                "attention_kernel": self.attention_kernel,
                "runtime": self.runtime.name,
            },
        )

    def _text_encoder(self, b: Builder) -> list[Op]:
        """The text encoder once per prompt, as one dense pass: 2·params FLOPs per token.

        NB: lowered as a single GEMM of the encoder's weights (params / text_dim columns) over
        the prompt tokens; its attention is a few percent of it at these lengths and omitted.
        """
        m = self.model
        if not (m.text_encoder_params and self.text_len):
            return []
        samples = self.batch // self.dp
        k = m.text_dim or m.hidden
        n = max(1, int(m.text_encoder_params // k))
        op = b.gemm("text_encoder", "text-encoder", samples * self.text_len, n, k)
        return [op]

    def _vae(self, b: Builder) -> list[Op]:
        """VAE decode once per sample: the decoder's layers (``workloads.vae``) where the model
        describes them, else flops_per_pixel x output pixels as one implicit GEMM.

        NB: the one-GEMM fallback has M = output pixels and a square N = K =
        sqrt(flops_per_pixel / 2); its bytes are the output frames and the weights.
        """
        m = self.model
        samples = (self.batch // self.dp) / (self.sp if self.parallel_vae else 1)
        if m.vae is not None:
            return lower_decoder(m.vae, m.in_channels, self.height, self.width, self.frames,
                                 samples, self.attention_kernel or "native",
                                 causal=m.vae_causal)  # fmt: skip
        if not m.vae_decoder_flops_per_pixel:
            return []
        pixels = (self.batch // self.dp) * self.height * self.width * self.frames
        pixels = pixels / self.sp if self.parallel_vae else pixels
        nk = max(1, int(math.sqrt(m.vae_decoder_flops_per_pixel / 2)))
        return [b.gemm("vae_decode", "vae", pixels, nk, nk)]
