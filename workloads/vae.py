"""A diffusion model's VAE decoder lowered layer by layer: convolutions at each level's width as
implicit GEMMs, the norms, activations, causal pads, residual adds and upsampling between them
as the memory-bound kernels eager PyTorch runs, and the tiles and temporal windows the pipeline
decodes separately.

The decoders of the presets (diffusers ``Decoder`` of AutoencoderKL, HunyuanVideo's and
CogVideoX's causal 3D decoders, the Wan-VAE) share one shape, described by a ``[vae]`` table:

- ``channels``: the widths of the levels from the top (output resolution) to the bottom (the
  latent grid); ``block_out_channels`` read in order. Each level below the top has half its
  spatial size; ``frame_div`` gives each level's frames as output frames / level frames.
- ``resnets``: ResNet blocks per level (``layers_per_block + 1`` in diffusers); each is norm,
  SiLU, conv, norm, SiLU, conv and the residual add (a 1x1 shortcut conv where the width
  changes). The bottom level first runs ``conv_in`` (latent channels -> width) and the mid block
  (ResNet, ``mid_attention``, ResNet).
- Between levels an upsampler: nearest interpolation to the upper grid, then a conv at the upper
  grid keeping the lower width (``up_halves``: halving it, as the Wan-VAE's Resample); the upper
  level's first ResNet takes that width to its own.
- ``kernel_t``: 3 for causal 3x3x3 convolutions (each preceded by the causal pad's copy of its
  input), 1 for 2D 3x3 ones per frame; ``up_kernel_t`` the same for the upsamplers' convs.
- The top ends in norm, SiLU and ``conv_out`` (width -> 3 RGB channels).
- ``tile``/``tile_stride`` (output pixels) and ``window``/``window_stride`` (output frames): the
  pipeline decodes overlapping spatial tiles and temporal windows one by one, so the decoder
  runs over every tile's and window's extent (the overlap is computed again, then blended).

A convolution is an implicit GEMM, M = output voxels, N = output channels, K = taps x input
channels, reading its input tensor once from main memory (the taps reuse it on chip). With
``layout = "nchw"`` (PyTorch's default memory format, which the diffusers pipelines keep) cuDNN
transposes the input to NHWC for its tensor-core kernels and the output back, a read and a write
of each (NVIDIA via chainer/chainer issue #5076: 'the Convolution operator of cuDNN will
internally convert the input tensor to NHWC order from NCHW first ... and convert back the
resulting tensor'; pytorch/pytorch issue #54324: an fp16 NCHW conv's profile led by cuDNN's
genericTranspose kernels); ``nhwc`` (channels_last) skips them. NB: the
kernels' own efficiency (cuDNN's implicit-GEMM convolution, channels-last conversions) is the
chip's GEMM model's; published decode times (benchmarks/research/vae-decode-measurements-
2026-12-04.md) run slower than that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from workloads.build import Builder
from workloads.ops import Attention, Op, Role, WorkloadError, check_choice, check_flags, check_ints

VAE_DTYPES = ("bf16", "fp16", "fp32")
_SILU_FLOPS = 4  # per element: exp, add, divide, multiply
_NORM_FLOPS = 6  # per element: mean and variance passes, normalise, scale and shift


@dataclass(frozen=True, slots=True, kw_only=True)
class VAEDecoder:
    channels: tuple[int, ...]
    latent_channels: int = 0  # the latent's channels into conv_in (0: the DiT's in_channels)
    resnets: int = 3
    frame_div: tuple[int, ...] = ()
    kernel_t: int = 1
    up_kernel_t: int = 1
    up_halves: bool = False
    mid_attention: bool = True
    attention_per_frame: bool = False
    norm_passes: int = 3  # GroupNorm reads its input twice (statistics, normalise) and writes once
    dtype: str = "bf16"
    layout: str = "nchw"  # nchw: PyTorch's default memory format; nhwc: channels_last
    chunk: int = 0  # latent frames per decoder call with a causal cache (Wan 1, CogVideoX 2)
    tile: tuple[int, int] = (0, 0)  # (height, width) of a spatial tile in output pixels
    tile_stride: tuple[int, int] = (0, 0)
    window: int = 0
    window_stride: int = 0
    source: str = ""

    def __post_init__(self) -> None:
        where = "[vae]"
        if not self.channels:
            raise WorkloadError(f"{where}: channels must list the decoder's widths, top to bottom")
        check_ints(where, **{f"channels[{i}]": c for i, c in enumerate(self.channels)})
        if not self.frame_div:
            object.__setattr__(self, "frame_div", (1,) * len(self.channels))
        if len(self.frame_div) != len(self.channels):
            raise WorkloadError(f"{where}: frame_div needs one entry per level of channels "
                                f"({len(self.channels)}), got {len(self.frame_div)}")  # fmt: skip
        check_ints(where, **{f"frame_div[{i}]": d for i, d in enumerate(self.frame_div)})
        check_ints(where, resnets=self.resnets, norm_passes=self.norm_passes)
        check_ints(where, 0, latent_channels=self.latent_channels, chunk=self.chunk)
        for name in ("tile", "tile_stride"):  # one size for both sides, or [height, width]
            v = getattr(self, name)
            v = (v, v) if isinstance(v, int) and not isinstance(v, bool) else tuple(v)
            if len(v) != 2:
                raise WorkloadError(f"{where}: {name} must be one integer or [height, width]")
            check_ints(where, 0, **{f"{name}[{i}]": x for i, x in enumerate(v)})
            object.__setattr__(self, name, v)
        check_ints(where, 0, window=self.window, window_stride=self.window_stride)
        for name in ("kernel_t", "up_kernel_t"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v not in (1, 3):
                raise WorkloadError(f"{where}: {name} must be 1 (2D convs) or 3 (causal 3D), "
                                    f"got {getattr(self, name)!r}")  # fmt: skip
        check_flags(where, up_halves=self.up_halves, mid_attention=self.mid_attention,
                    attention_per_frame=self.attention_per_frame)  # fmt: skip
        check_choice(where, "dtype", self.dtype, VAE_DTYPES)
        check_choice(where, "layout", self.layout, ("nchw", "nhwc"))
        if self.window and (self.window % self.frame_div[-1] or
                            self.window_stride % self.frame_div[-1]):  # fmt: skip
            raise WorkloadError(f"{where}: window and window_stride must be multiples of the "
                                f"bottom level's frame_div ({self.frame_div[-1]}), got "
                                f"{self.window} and {self.window_stride}")  # fmt: skip
        pairs = [("tile", "tile_stride", self.tile[i], self.tile_stride[i]) for i in (0, 1)]
        for size, stride, a, s in [*pairs, ("window", "window_stride", self.window,
                                            self.window_stride)]:  # fmt: skip
            if bool(a) != bool(s) or s > a:
                raise WorkloadError(f"{where}: give {size} and {stride} together, 0 < {stride} "
                                    f"<= {size} (or both 0: no {size}s), got {a} and {s}")  # fmt: skip


def vae_from_dict(raw: Any, where: str) -> VAEDecoder | None:
    """The ``[vae]`` table of a DiT TOML (None without one)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise WorkloadError(f"{where}: [vae] must be a table")
    keys = set(VAEDecoder.__dataclass_fields__)
    unknown = sorted(set(raw) - keys - {k for k in raw if k.endswith("_source")})
    if unknown:
        raise WorkloadError(f"{where}: [vae] has unknown keys {', '.join(unknown)}; known: "
                            f"{', '.join(sorted(keys))}")  # fmt: skip
    fields = {k: v for k, v in raw.items() if k in keys}
    if "channels" not in fields:
        raise WorkloadError(f"{where}: [vae] needs channels (the decoder's widths, top to bottom)")
    for k in ("channels", "frame_div", "tile", "tile_stride"):
        if k in fields:
            if isinstance(fields[k], list):
                fields[k] = tuple(fields[k])
            elif (
                k in ("channels", "frame_div")
                or isinstance(fields[k], bool)
                or not isinstance(fields[k], int)
            ):
                raise WorkloadError(f"{where}: [vae] {k} must be a list of integers")
    try:
        return VAEDecoder(**fields)
    except WorkloadError as exc:
        raise WorkloadError(f"{where}: {exc}") from None


def _coverage(size: float, tile: float, stride: float) -> float:
    """Extent decoded, over ``size``: tiles of ``tile`` starting every ``stride``, cut at the
    edge (diffusers' tiled_decode and temporal windows); 1 without tiling."""
    if not tile or size <= 0:
        return 1.0
    starts = range(0, math.ceil(size / stride))
    return sum(min(tile, size - i * stride) for i in starts) / size


def conv_ops(
    b: Builder,
    bg: Builder,
    name: str,
    voxels: float,
    c_in: int,
    c_out: int,
    taps: int,
    *,
    layout: str,
    pad: float = 0.0,
) -> list[Op]:
    """One convolution of ``voxels`` output positions as the decoder runs it: an implicit GEMM
    (M = voxels, N = c_out, K = taps x c_in) reading its input once from main memory, ``bg``
    its matrix dtype; with ``layout = "nchw"`` cuDNN's transposes to NHWC and back around it
    (a read and a write of each); ``pad`` > 0: a causal conv's copy of its input with padding
    frames and pixels (``pad``: padded over unpadded elements) before it, which the transpose
    then reads."""
    check_choice("conv", "layout", layout, ("nchw", "nhwc"))
    if not (pad == 0.0 or pad >= 1.0):
        raise WorkloadError(f"conv {name!r}: pad must be 0 (no pad copy) or >= 1 (padded over "
                            f"unpadded elements), got {pad!r}")  # fmt: skip
    act = b.act_bytes
    out: list[Op] = []
    if pad:
        out.append(b.elementwise(f"{name}_pad", "vae", voxels * c_in, voxels * c_in * pad, 0.0))
    g = bg.gemm(name, "vae", voxels, c_out, taps * c_in)
    g = replace(
        g,
        gemm=replace(g.gemm, a_bytes=act / taps),
        bytes={Role.WEIGHT: g.bytes[Role.WEIGHT], Role.ACTIVATION: voxels * (c_in + c_out) * act},
    )
    out.append(g)
    if layout == "nchw":  # cuDNN's tensor-core kernels take NHWC: the input is transposed to
        # it and the output back (a read and a write of each)
        e_in = voxels * c_in * (pad or 1.0)
        out.insert(len(out) - 1, b.elementwise(f"{name}_to_nhwc", "vae", e_in, e_in, 0.0))
        out.append(b.elementwise(f"{name}_to_nchw", "vae", voxels * c_out, voxels * c_out, 0.0))
    return out


def lower_decoder(
    vae: VAEDecoder,
    latent_channels: int,
    height: int,
    width: int,
    frames: int,
    samples: float,
    attention_kernel: str = "native",
    causal: bool = True,
) -> list[Op]:
    """The decoder's ops for ``samples`` outputs of ``height`` x ``width`` x ``frames``
    (``causal``: a causal video VAE, whose level of frame_div d holds 1 + (frames - 1) / d
    frames)."""
    ab = 4.0 if vae.dtype == "fp32" else 2.0
    # cuDNN runs fp32 convolutions on TF32 tensor cores by default (torch.backends.cudnn
    # .allow_tf32 = True; PyTorch docs 'TensorFloat-32 (TF32) on Ampere (and later) devices')
    gemm_dtype = "tf32" if vae.dtype == "fp32" else vae.dtype
    b = Builder(vae.dtype, ab, ab, attention_kernel)
    bg = Builder(gemm_dtype, ab, ab, attention_kernel)
    levels = len(vae.channels)
    # spatial tiles: once either side exceeds its tile, diffusers tiles both sides
    tiled = any(t and n > t for n, t in zip((height, width), vae.tile, strict=True))
    spread = 1.0
    if tiled:
        spread = _coverage(height, vae.tile[0], vae.tile_stride[0]) * _coverage(
            width, vae.tile[1], vae.tile_stride[1]
        )

    windowed = bool(vae.window) and frames > vae.window
    extra = 1 if causal else 0  # a causal window's extra (first) frame

    def level_frames(j: int) -> float:
        d = vae.frame_div[j]
        return 1.0 + (frames - 1) / d if causal else max(1.0, frames / d)

    def windows(j: int) -> float:
        """Temporal windows' cover of level ``j``'s frames: a window of ``window`` output
        frames every ``window_stride`` carries one more frame (diffusers' temporal tiled decode
        takes ``tile_latent_min_num_frames + 1`` latent frames: the causal decoder's first)."""
        if not windowed:
            return 1.0
        d = vae.frame_div[j]
        return _coverage(level_frames(j), vae.window / d + extra, vae.window_stride / d)

    ops: list[Op] = []

    def voxels(j: int) -> float:
        """Decoded voxels of level ``j`` (0 = top), tiles and windows included."""
        return samples * spread * windows(j) * height * width / 4**j * level_frames(j)

    # decoder calls per sample: tiles x temporal windows (or cached chunks of latent frames);
    # each op is launched once per call
    bottom_d = vae.frame_div[-1]
    latent_frames = level_frames(levels - 1)
    calls = 1
    if tiled:
        calls *= math.ceil(height / vae.tile_stride[0]) * math.ceil(width / vae.tile_stride[1])
    if windowed:
        calls *= math.ceil(latent_frames / (vae.window_stride / bottom_d))
    elif vae.chunk:
        calls *= math.ceil(latent_frames / vae.chunk)

    def padded(j: int) -> float:
        """A causal 3D conv's padded input over its input, at level ``j``: two more frames
        per call's frames and a pixel each side of its tile (the F.pad / cache cat copy)."""
        d = vae.frame_div[j]
        if windowed:
            f = vae.window / d + extra
        elif vae.chunk:
            f = vae.chunk * bottom_d / d
        else:
            f = level_frames(j)
        h = (vae.tile[0] if tiled and vae.tile[0] else height) / 2**j
        w = (vae.tile[1] if tiled and vae.tile[1] else width) / 2**j
        return (f + 2) / f * (h + 2) * (w + 2) / (h * w)

    def conv(name: str, j: int, c_in: int, c_out: int, kt: int, count: int = 1,
             k: int = 3) -> list[Op]:  # fmt: skip
        # the causal pad copies the input with its padding frames and pixels
        pad = padded(j) if kt == 3 else 0.0
        out = conv_ops(b, bg, name, voxels(j), c_in, c_out, kt * k * k, layout=vae.layout, pad=pad)
        return [replace(op, count=op.count * count) for op in out]

    def elementwise(name: str, j: int, c: int, passes: int, flops: int, count: int) -> Op:
        e = voxels(j) * c
        op = b.elementwise(name, "vae", e * (passes - 1), e, flops * e)
        return replace(op, count=count)

    def resnet(j: int, c_in: int, c_out: int, count: int, tag: str) -> list[Op]:
        p = f"vae.l{j}.{tag}"
        out = [elementwise(f"{p}norm1", j, c_in, vae.norm_passes, _NORM_FLOPS, count),
               elementwise(f"{p}silu1", j, c_in, 2, _SILU_FLOPS, count),
               *conv(f"{p}conv1", j, c_in, c_out, vae.kernel_t, count),
               elementwise(f"{p}norm2", j, c_out, vae.norm_passes, _NORM_FLOPS, count),
               elementwise(f"{p}silu2", j, c_out, 2, _SILU_FLOPS, count),
               *conv(f"{p}conv2", j, c_out, c_out, vae.kernel_t, count)]  # fmt: skip
        if c_in != c_out:
            out += conv(f"{p}shortcut", j, c_in, c_out, 1, count, k=1)
        out.append(elementwise(f"{p}add", j, c_out, 3, 1, count))
        return out

    bottom = levels - 1
    cb = vae.channels[bottom]
    ops += conv("vae.conv_in", bottom, vae.latent_channels or latent_channels, cb, vae.kernel_t)
    ops += resnet(bottom, cb, cb, 2, "mid.")
    if vae.mid_attention:
        ops += _mid_attention(vae, b, bg, voxels(bottom), cb, height, width, frames, causal)
    width_in = cb
    for j in range(bottom, -1, -1):
        c = vae.channels[j]
        if j < bottom:  # the upsampler from level j + 1 to this level's grid
            low = voxels(j + 1) * width_in
            ops.append(b.elementwise(f"vae.l{j}.upsample", "vae", low, voxels(j) * width_in, 0.0))
            up_out = max(1, width_in // 2) if vae.up_halves else width_in
            ops += conv(f"vae.l{j}.up_conv", j, width_in, up_out, vae.up_kernel_t)
            width_in = up_out
        ops += resnet(j, width_in, c, 1, "first.") if width_in != c else []
        rest = vae.resnets - (1 if width_in != c else 0)
        ops += resnet(j, c, c, rest, "") if rest else []
        width_in = c
    c0 = vae.channels[0]
    ops += [elementwise("vae.norm_out", 0, c0, vae.norm_passes, _NORM_FLOPS, 1),
            elementwise("vae.silu_out", 0, c0, 2, _SILU_FLOPS, 1)]  # fmt: skip
    ops += conv("vae.conv_out", 0, c0, 3, vae.kernel_t)
    return [replace(op, kernels=calls) for op in ops]


def _mid_attention(vae: VAEDecoder, b: Builder, bg: Builder, vox: float, c: int, height: int,
                   width: int, frames: int, causal: bool) -> list[Op]:  # fmt: skip
    """Single-head self-attention at the bottom level's width over each tile's (window's, or
    with ``attention_per_frame`` each frame's) latent tokens, with its norm, the q, k, v and out
    projections and the residual add."""
    scale = 2 ** (len(vae.channels) - 1)
    h = math.ceil(min(height, vae.tile[0] or height) / scale)
    w = math.ceil(min(width, vae.tile[1] or width) / scale)
    d = vae.frame_div[-1]
    if vae.attention_per_frame:
        t = 1
    elif vae.window and frames > vae.window:  # a window's latent frames, its extra one included
        t = vae.window // d + (1 if causal else 0)
    else:
        t = math.ceil(1 + (frames - 1) / d if causal else max(1, frames / d))
    tokens = h * w * t
    groups = vox / tokens  # attention problems: samples x tiles x windows (x frames)
    ab = b.act_bytes
    spec = Attention(batch=groups, n_q_heads=1, n_kv_heads=1, q_len=tokens, kv_len=tokens,
                     qk_dim=c, v_dim=c, causal=False, act_bytes=ab, kv_bytes_per_token=2 * c * ab)  # fmt: skip
    e = vox * c
    return [b.elementwise("vae.mid.attn_norm", "vae", e * (vae.norm_passes - 1), e,
                          _NORM_FLOPS * e),
            bg.gemm("vae.mid.attn_qkv", "vae", vox, 3 * c, c),
            replace(bg.attention("vae.mid.attention", spec), family="vae"),
            bg.gemm("vae.mid.attn_out", "vae", vox, c, c),
            b.elementwise("vae.mid.attn_add", "vae", 2 * e, e, e)]  # fmt: skip
