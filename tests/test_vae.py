"""The VAE decoder lowered layer by layer (workloads/vae.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from hardware import load_system
from sim.cost.simulate import simulate
from workloads.dit import DiT, dit_from_dict, list_dits, load_dit
from workloads.ops import OpKind, WorkloadError
from workloads.vae import _coverage, lower_decoder, vae_from_dict

DEFAULT_SIZES = {"hunyuanvideo": (720, 1280, 129), "cogvideox-5b": (480, 720, 49),
                 "wan2.1-14b": (720, 1280, 81)}  # fmt: skip


def _untiled(vae):
    return replace(vae, tile=(0, 0), tile_stride=(0, 0), window=0, window_stride=0)


@pytest.mark.parametrize("name", [n for n in list_dits() if load_dit(n).vae is not None])
def test_the_decoders_convolutions_match_the_presets_hand_counts(name):
    """Each preset's [vae] structure gives the convolution FLOPs its hand count sums (the hand
    count adds a little mid-block attention over the default tiles)."""
    m = load_dit(name)
    h, w, f = DEFAULT_SIZES.get(name, (m.default_height, m.default_width, m.default_frames))
    ops = lower_decoder(_untiled(m.vae), m.in_channels, h, w, f, 1.0)
    convs = sum(op.flops * op.count for op in ops if op.kind is OpKind.GEMM) / (h * w * f)
    assert 0.92 <= convs / m.vae_decoder_flops_per_pixel <= 1.0


def test_tiles_and_windows_decode_their_overlap_again():
    assert _coverage(720, 256, 192) == pytest.approx((3 * 256 + 144) / 720)
    assert _coverage(240, 256, 192) == pytest.approx((240 + 48) / 240)  # the other side tiled
    assert _coverage(720, 0, 0) == 1.0
    m = load_dit("hunyuanvideo")
    tiled = lower_decoder(m.vae, 16, 720, 1280, 129, 1.0)
    flat = lower_decoder(_untiled(m.vae), 16, 720, 1280, 129, 1.0)
    spread = _coverage(720, 256, 192) * _coverage(1280, 256, 192)
    conv = {op.name: op.flops * op.count for op in tiled if op.kind is OpKind.GEMM}
    conv_flat = {op.name: op.flops * op.count for op in flat if op.kind is OpKind.GEMM}
    # diffusers' temporal windows take 4 + 1 latent frames every 3 (33 -> 53 at the bottom)
    # and so 17 output frames every 12 at the top (129 -> 179)
    assert conv["vae.l0.conv1"] == pytest.approx(spread * 179 / 129 * conv_flat["vae.l0.conv1"])
    assert conv["vae.l3.conv1"] == pytest.approx(spread * 53 / 33 * conv_flat["vae.l3.conv1"])
    # the mid-block attention runs over each tile's latent tokens, not the whole clip's
    attn = [op for op in tiled if op.kind is OpKind.ATTENTION][0].attention
    assert attn.q_len == (256 // 8) ** 2 * (16 // 4 + 1)


def test_the_decode_is_mostly_memory_bound_kernels_around_compute_bound_convolutions():
    """Doubling main-memory bandwidth speeds the decode up, less than 2x; doubling the tensor
    rate too; a video with twice the frames takes about twice as long."""
    m = load_dit("hunyuanvideo")

    def vae_s(system, frames=129):
        w = DiT(model=m, height=720, width=1280, frames=frames, steps=1)
        r = simulate(w, system, check_memory=False)
        return sum(c.time_s * c.op.count for c in r.costs if c.op.family == "vae")

    base = vae_s(load_system("h100-sxm", 1))
    faster_hbm = vae_s(load_system("h100-sxm", 1, ["hbm.bandwidth=6.7TB/s"]))
    faster_math = vae_s(load_system("h100-sxm", 1, ["compute.peak.fp16=1978.8TFLOP/s"]))
    assert base / 2 < faster_hbm < base and base / 2 < faster_math < base
    assert vae_s(load_system("h100-sxm", 1), frames=257) == pytest.approx(2 * base, rel=0.15)


def test_an_fp32_decoder_moves_twice_the_bytes_and_runs_its_convolutions_in_tf32():
    m = load_dit("wan2.1-14b")
    fp32 = lower_decoder(m.vae, 16, 480, 832, 81, 1.0)
    bf16 = lower_decoder(replace(m.vae, dtype="bf16"), 16, 480, 832, 81, 1.0)
    assert {op.dtype for op in fp32 if op.kind is OpKind.GEMM} == {"tf32"}
    by = [sum(op.total_bytes * op.count for op in ops) for ops in (fp32, bf16)]
    assert by[0] == pytest.approx(2 * by[1])


@pytest.mark.parametrize(
    ("table", "field"),
    [
        ({"channels": [128, 256], "colour": 1}, "colour"),
        ({"channels": []}, "channels"),
        ({"channels": [128, 256], "frame_div": [1]}, "frame_div"),
        ({"channels": [128], "kernel_t": 2}, "kernel_t"),
        ({"channels": [128], "tile": 256}, "tile_stride"),
        ({"channels": [128], "window": 16, "window_stride": 32}, "window_stride"),
        ({"channels": [128], "dtype": "fp8"}, "dtype"),
        ({"channels": [128], "tile": [256, 256, 256], "tile_stride": 192}, "tile"),
        ({"channels": [128, 64], "frame_div": [1, 4], "window": 6, "window_stride": 4}, "window"),
    ],
)
def test_a_bad_vae_table_is_a_one_line_error_naming_the_field(table, field):
    with pytest.raises(WorkloadError, match=field) as err:
        vae_from_dict(table, "model 'x'")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("chip", ["tpu-v5e", "groq-lpu", "v100-sxm2", "ascend-910b"])
def test_an_fp32_decoder_runs_where_the_chip_has_no_tf32_units(chip):
    """TF32 convolutions fall back to the chip's fp32 matrix rate, else one 16-bit pass."""
    m = load_dit("wan2.1-14b")
    w = DiT(model=m, height=480, width=832, frames=17, steps=1)
    r = simulate(w, load_system(chip, 1), check_memory=False)
    assert sum(c.time_s for c in r.costs if c.op.family == "vae") > 0


def test_a_vae_table_without_channels_or_with_a_bad_field_names_the_model():
    for table, field in (({"resnets": 3}, "channels"), ({"channels": [8], "kernel_t": 3.0},
                                                          "kernel_t")):  # fmt: skip
        with pytest.raises(WorkloadError, match=field) as err:
            dit_from_dict({"name": "mine", "n_layers": 2, "hidden": 256, "n_heads": 4,
                           "vae": table})  # fmt: skip
        assert "mine" in str(err.value) and "\n" not in str(err.value)


def test_a_dit_toml_without_a_vae_table_keeps_the_one_gemm_decoder():
    raw = {"name": "x", "n_layers": 2, "hidden": 256, "n_heads": 4,
           "vae_decoder_flops_per_pixel": 1e7}  # fmt: skip
    m = dit_from_dict(raw)
    ops = DiT(model=m, height=256, width=256, steps=1).lower().ops
    vae = [op for op in ops if op.family == "vae"]
    assert m.vae is None and [op.name for op in vae] == ["vae_decode"]


def test_a_channels_first_decoder_pays_cudnns_layout_transposes_around_each_conv():
    """NCHW (PyTorch's default) tensors are transposed to NHWC for cuDNN's tensor-core kernels
    and back: a read and a write of each conv's input and output; channels_last skips them."""
    m = load_dit("flux-1-dev")
    nchw = lower_decoder(m.vae, 16, 1024, 1024, 1, 1.0, causal=False)
    nhwc = lower_decoder(replace(m.vae, layout="nhwc"), 16, 1024, 1024, 1, 1.0, causal=False)
    convs = [op for op in nchw if op.kind is OpKind.GEMM and "attn" not in op.name]
    added = {op.name for op in nchw} - {op.name for op in nhwc}
    assert added == {f"{op.name}_{to}" for op in convs for to in ("to_nhwc", "to_nchw")}
    by_name = {op.name: op for op in nchw}
    for op in convs:  # the output: read and written once more, 2-byte elements
        back = by_name[f"{op.name}_to_nchw"]
        assert back.total_bytes == pytest.approx(2 * 2 * op.gemm.m * op.gemm.n)
    assert sum(op.total_bytes * op.count for op in nchw) > sum(
        op.total_bytes * op.count for op in nhwc
    )


def test_every_tile_window_and_cached_chunk_is_a_decoder_call_and_pads_its_own_frames():
    """HunyuanVideo 720x1280x129: 4 x 7 tiles x 11 windows = 308 calls, each op launched per
    call; Wan decodes one latent frame a call, so a causal conv's pad writes 3 frames a frame at
    the bottom level (two cached frames in front), a pixel each side."""
    m = load_dit("hunyuanvideo")
    ops = lower_decoder(m.vae, 16, 720, 1280, 129, 1.0)
    assert {op.kernels for op in ops} == {4 * 7 * 11}
    wan = load_dit("wan2.1-14b")
    ops = {op.name: op for op in lower_decoder(wan.vae, 16, 480, 832, 81, 1.0)}
    assert {op.kernels for op in ops.values()} == {21}
    pad = ops["vae.l3.mid.conv1_pad"]  # read the input once, write it padded
    h, w = 480 / 8, 832 / 8
    ratio = 3 * (h + 2) * (w + 2) / (h * w)
    read = pad.total_bytes / (1 + ratio)
    assert pad.total_bytes - read == pytest.approx(ratio * read)


def test_a_vae_table_must_match_the_models_compression():
    raw = {"name": "mine", "n_layers": 2, "hidden": 256, "n_heads": 4, "vae_spatial": 8,
           "vae": {"channels": [64, 128]}}  # fmt: skip
    with pytest.raises(WorkloadError, match="vae_spatial") as err:
        dit_from_dict(raw)
    assert "\n" not in str(err.value)
