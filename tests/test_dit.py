"""Diffusion transformers: token counts, FLOPs against the papers, bounds, sequence parallelism."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from hardware import load_system
from sim import Bound, simulate
from sim.cli import main
from workloads.dit import DiT, list_dits, load_dit
from workloads.ops import OpKind, WorkloadError


def _denoise_flops(result, kinds=None, families=None) -> float:
    """FLOPs of the denoising ops (not text encoder or VAE), optionally of some kinds/families."""
    total = 0.0
    for c in result.costs:
        op = c.op
        if op.family in ("text-encoder", "vae"):
            continue
        if kinds is not None and op.kind not in kinds:
            continue
        if families is not None and op.family not in families:
            continue
        total += op.flops * op.count
    return total


def test_every_preset_loads_cites_a_source_and_lowers_at_its_defaults():
    names = list_dits()
    for required in ("dit-xl-2", "video-dit-20b"):
        assert required in names
    for name in names:
        m = load_dit(name)
        assert m.source, name
        w = DiT(model=m, height=m.default_height, width=m.default_width,
                frames=m.default_frames, steps=m.default_steps, cfg=m.default_cfg)  # fmt: skip
        graph = w.lower()
        assert graph.ops and graph.describe["latent_tokens"] > 0
        if m.n_params_published:
            assert m.n_params() == pytest.approx(m.n_params_published, rel=0.15), name


def test_dit_xl2_forward_flops_match_the_paper_within_2_percent():
    # Peebles & Xie 2023, Table 4: DiT-XL/2 at 256x256 = 118.6 Gflops per forward, counting a
    # multiply-add once (so half of our 2-FLOPs-per-MAC count)
    m = load_dit("dit-xl-2")
    r = simulate(DiT(model=m, height=256, width=256, steps=1), load_system("a100-sxm-80gb", 1))
    assert r.workload["latent_tokens"] == 256
    assert _denoise_flops(r) / 2 == pytest.approx(118.6e9, rel=0.02)


def test_dit_xl2_at_batch_1_is_not_compute_bound_and_mfu_rises_with_batch():
    m = load_dit("dit-xl-2")
    system = load_system("a100-sxm-80gb", 1)
    runs = [simulate(DiT(model=m, height=256, width=256, steps=250, batch=b), system)
            for b in (1, 4, 16, 64)]  # fmt: skip
    assert runs[0].bound != Bound.COMPUTE
    by = runs[0].time_by_bound
    assert by.get(Bound.MEMORY, 0) + by.get(Bound.OVERHEAD, 0) > by.get(Bound.COMPUTE, 0)
    assert runs[0].mfu < 0.35
    mfus = [r.mfu for r in runs]
    assert all(a < b for a, b in zip(mfus, mfus[1:], strict=False)), mfus
    assert runs[-1].bound == Bound.COMPUTE


def test_tokens_follow_resolution_frames_vae_and_patch():
    v = load_dit("video-dit-20b")
    # 1440 frames / 4 (VAE) / 3 (patch_t) x 1088/16 x 1920/16
    assert v.tokens(1088, 1920, 1440) == 120 * 68 * 120
    assert v.tokens(1088, 1920, 1440) == pytest.approx(1e6, rel=0.05)
    m = load_dit("dit-xl-2")
    assert m.tokens(512, 512, 1) == 1024


def test_20b_video_dit_at_1m_tokens_is_compute_bound_and_attention_follows_l_over_6d():
    v = load_dit("video-dit-20b")
    w = DiT(model=v, height=1088, width=1920, frames=1440, steps=20, sp=8)
    r = simulate(w, load_system("a100-sxm-80gb", 8))
    assert r.bound == Bound.COMPUTE
    assert 0.3 < r.mfu < 0.9
    L, d = r.workload["latent_tokens"], v.hidden
    attention = _denoise_flops(r, kinds={OpKind.ATTENTION})
    linear = _denoise_flops(r, families={"projection", "mlp"}, kinds={OpKind.GEMM})
    # per layer: attention 4·L²·d, linear 24·L·d² -> ratio L / (6·d)
    assert attention / linear == pytest.approx(L / (6 * d), rel=0.05)
    assert r.time_per_step_s * 20 < r.time_s


def test_sequence_parallel_speeds_up_and_ring_hides_its_kv_passing_behind_attention():
    v = load_dit("video-dit-20b")
    times = {}
    for n in (1, 2, 4, 8):
        for method in ("ulysses", "ring"):
            w = DiT(model=v, height=1088, width=1920, frames=1440, steps=20, sp=n, sp_method=method)
            r = simulate(w, load_system("h100-sxm", n), check_memory=False)
            times[n, method] = r.time_s
            if method == "ring" and n > 1:
                ring = [c for c in r.costs if c.op.name == "ring_kv"]
                assert ring and ring[0].total_time_s < 0.01 * r.time_s
    for method in ("ulysses", "ring"):
        speedups = [times[1, method] / times[n, method] for n in (2, 4, 8)]
        assert all(a < b for a, b in zip(speedups, speedups[1:], strict=False))
        assert 6.0 < speedups[-1] <= 8.0


def test_ulysses_all_to_all_grows_with_chips_and_is_exposed():
    m = load_dit("dit-xl-2")
    w = DiT(model=m, height=512, width=512, steps=50, sp=4)
    r = simulate(w, load_system("h100-sxm", 4))
    comm = r.time_by_family.get("communication", 0.0)
    assert comm > 0
    # a small image split four ways is dominated by overheads and communication, not compute
    single = simulate(DiT(model=m, height=512, width=512, steps=50), load_system("h100-sxm", 1))
    assert r.time_s > single.time_s / 4


def test_cfg_doubles_the_denoising_work_but_not_the_vae():
    m = load_dit("dit-xl-2")
    system = load_system("h100-sxm", 1)
    off = simulate(DiT(model=m, height=256, width=256, steps=10), system)
    on = simulate(DiT(model=m, height=256, width=256, steps=10, cfg=True), system)
    assert _denoise_flops(on) == pytest.approx(2 * _denoise_flops(off), rel=1e-9)
    vae = [sum(c.op.flops for c in r.costs if c.op.family == "vae") for r in (off, on)]
    assert vae[0] == vae[1] > 0


def test_tokens_override_changes_the_sequence_only():
    v = load_dit("video-dit-20b")
    w = DiT(model=v, height=1088, width=1920, frames=1440, steps=1, sp=8, tokens=250_000)
    assert w.lower().describe["latent_tokens"] == 250_000


def test_text_tokens_set_the_prompt_length_of_the_joint_attention_and_the_encoder():
    """xDiT runs Flux with max_sequence_length 256, the preset's pipeline with 512: fewer text
    tokens shorten the joint sequence (mmdit) and the T5 encoder's GEMM, not the image part."""
    flux = load_dit("flux-1-dev")
    full = DiT(model=flux, height=1024, width=1024, steps=28)
    short = replace(full, text_tokens=256)
    same = DiT(model=replace(flux, text_tokens=256), height=1024, width=1024, steps=28)
    g_full, g_short = full.lower(), short.lower()
    assert [(o.name, o.flops) for o in g_short.ops] == [(o.name, o.flops) for o in same.lower().ops]
    assert g_short.describe["latent_tokens"] == g_full.describe["latent_tokens"] == 4096
    assert g_short.describe["text_tokens"] == 256 and "text_tokens" not in g_full.describe
    enc = {o.name: o.flops for o in g_full.ops}["text_encoder"]
    assert {o.name: o.flops for o in g_short.ops}["text_encoder"] == pytest.approx(enc / 2)
    assert sum(o.flops * o.count for o in g_short.ops) < sum(o.flops * o.count for o in g_full.ops)
    with pytest.raises(WorkloadError, match="dit-xl-2 takes no text tokens"):
        DiT(model=load_dit("dit-xl-2"), height=256, width=256, text_tokens=77).lower()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"height": 250}, "--height 250 must be a multiple of VAE x patch = 16"),
        ({"steps": 0}, "--steps must be an integer >= 1"),
        ({"sp": 5}, "must divide the 16 heads"),
        ({"batch": 0}, "--batch must be an integer >= 1"),
        ({"tokens": 0}, "--tokens must be an integer >= 1"),
        ({"text_tokens": 0}, "--text-tokens must be an integer >= 1"),
    ],
)
def test_bad_requests_get_one_line_errors(kwargs, message):
    m = load_dit("dit-xl-2")
    args = {"model": m, "height": 256, "width": 256, **kwargs}
    with pytest.raises(WorkloadError, match=message) as info:
        DiT(**args).lower()
    assert "\n" not in str(info.value)


def test_video_frames_must_fit_the_temporal_vae():
    v = load_dit("video-dit-20b")
    with pytest.raises(WorkloadError, match="--frames 1441 must be a multiple of"):
        v.tokens(1088, 1920, 1441)


def test_cli_dit_json_has_throughput_step_time_and_family_breakdown(capsys):
    code = main(["dit", "--model", "video-dit-20b", "--chip", "a100-sxm-80gb", "--chips", "8",
                 "--json"])  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["throughput"]["videos_per_s"] == pytest.approx(1 / out["time_s"])
    assert out["time_per_step_s"] > 0
    fam = out["time_by_family_s"]
    assert {"attention", "mlp", "other", "communication", "text-encoder", "vae"} <= set(fam)
    assert fam["attention"] > 10 * fam["mlp"]
    code = main(["dit", "--model", "dit-xl-2", "--chip", "h100-sxm", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["throughput"]["images_per_s"] > 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--height", "300"], "--height 300 must be a multiple of VAE x patch = 16"),
        (["--steps", "0"], "--steps must be an integer >= 1"),
        (["--chips", "5"], "must divide the 16 heads"),
        (["--model", "nope"], "unknown DiT model 'nope'"),
    ],
)
def test_cli_dit_bad_input_is_one_line_exit_2(argv, message, capsys):
    base = {"--model": "dit-xl-2", "--chip": "h100-sxm"}
    for flag, value in zip(argv[::2], argv[1::2], strict=True):
        base[flag] = value
    code = main(["dit", *[x for kv in base.items() for x in kv]])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1


def test_cli_dit_zero_height_is_an_error_not_the_default(capsys):
    assert main(["dit", "--model", "dit-xl-2", "--chip", "h100-sxm", "--height", "0"]) == 2
    assert "--height 0 must be a multiple" in capsys.readouterr().err


DIFFUSERS = Path(__file__).parent / "fixtures" / "diffusers"
# fixture -> the roofsim preset of the same model (None: no preset; published parameter count)
DIFFUSERS_MODELS = {
    "pixart-xl-2-1024-ms.json": "pixart-alpha",
    "sd3-medium.json": "sd3-medium",
    "cogvideox-5b.json": "cogvideox-5b",
    "hunyuanvideo.json": "hunyuanvideo",
    "wan2.1-t2v-14b.json": "wan2.1-14b",
    "flux-1-dev.json": "flux-1-dev",
}


@pytest.mark.parametrize(("fixture", "preset"), DIFFUSERS_MODELS.items())
def test_diffusers_transformer_configs_load_as_the_same_model(fixture, preset):
    dit = load_dit(str(DIFFUSERS / fixture))
    ref = load_dit(preset)
    assert dit.n_params() == ref.n_params()  # the same blocks, widths and patch
    assert dit.tokens(ref.default_height, ref.default_width, ref.default_frames) == (
        ref.tokens(ref.default_height, ref.default_width, ref.default_frames)
    )
    assert (dit.qk_norm, dit.rope) == (ref.qk_norm, ref.rope)  # read from the config or class
    assert dit.qkv_linears == 3  # diffusers' processors: to_q, to_k, to_v
    if preset == "flux-1-dev":
        # FLUX.1 [dev]: "a 12 billion parameter rectified flow transformer" (model card)
        assert dit.n_params() == pytest.approx(12e9, rel=0.02)
    w = DiT(model=dit, steps=2, height=dit.default_height, width=dit.default_width, frames=1)
    r = simulate(w, load_system("h100-sxm", 1), check_memory=False)
    assert r.time_s > 0


def test_flux_packed_latents_are_patch_2_tokens_on_the_16_channel_latent():
    flux = load_dit(str(DIFFUSERS / "flux-1-dev.json"))
    # 1024 px / VAE 8 = 128 latent; 2 x 2 packing -> 64 x 64 = 4096 tokens
    assert (flux.patch, flux.in_channels, flux.tokens(1024, 1024, 1)) == (2, 16, 4096)
    assert (flux.n_layers, flux.n_single_layers, flux.block) == (19, 38, "hybrid")


def test_an_unknown_diffusers_class_is_one_line(tmp_path, capsys):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    assert main(["dit", "--model", str(path), "--chip", "h100-sxm"]) == 2
    err = capsys.readouterr().err
    assert "_class_name 'UNet2DConditionModel' is not a diffusers transformer" in err
    assert "FluxTransformer2DModel" in err and err.count("\n") == 1


def test_the_vae_decodes_on_one_chip_unless_split_over_the_sequence_parallel_chips():
    """HunyuanVideo's xDiT integration parallelises the transformer only: with 8 chips the VAE
    still decodes the whole video; --parallel-vae (xDiT's DistVAE) splits it 8 ways."""
    m = load_dit("hunyuanvideo")
    kw = dict(model=m, height=720, width=1280, frames=129, steps=2, sp=8)
    system = load_system("h100-sxm", 8)
    vae = [sum(c.op.flops * c.op.count for c in simulate(DiT(**kw, parallel_vae=p), system).costs
               if c.op.family == "vae") for p in (False, True)]  # fmt: skip
    assert vae[0] == pytest.approx(8 * vae[1], rel=1e-9) and vae[1] > 0


def _elementwise(result) -> tuple[float, int]:
    """(bytes, kernel launches) of the denoising elementwise ops."""
    ops = [
        c.op
        for c in result.costs
        if c.op.kind is OpKind.ELEMENTWISE and c.op.family not in ("text-encoder", "vae")
    ]
    return (sum(op.total_bytes * op.count for op in ops),
            sum(op.kernels * op.count for op in ops))  # fmt: skip


def test_eager_runtimes_run_the_diffusers_primitives_unfused_and_launch_them_from_the_host():
    """xDiT / diffusers without torch.compile: a norm with its modulation is 3 kernels, the
    gated residual 2, QK RMSNorm 6 and real RoPE 8 per tensor, each through memory; the same
    FLOPs of matmul and attention. torch.compile fuses them back (one kernel each)."""
    from workloads.runtime import load_runtime

    m = load_dit("flux-1-dev")
    system = load_system("h100-sxm", 1)
    runs = {rt: simulate(DiT(model=m, height=1024, width=1024, steps=4,
                             runtime=load_runtime(rt)), system)
            for rt in ("fused-graphs", "torch-compile", "xdit", "diffusers")}  # fmt: skip
    fused, eager = _elementwise(runs["fused-graphs"]), _elementwise(runs["xdit"])
    assert eager[0] > 4 * fused[0] and eager[1] > 4 * fused[1]
    assert _denoise_flops(runs["xdit"], kinds=(OpKind.GEMM, OpKind.ATTENTION)) == pytest.approx(
        _denoise_flops(runs["fused-graphs"], kinds=(OpKind.GEMM, OpKind.ATTENTION)), rel=1e-12
    )
    assert runs["xdit"].time_s > 1.2 * runs["torch-compile"].time_s
    assert runs["diffusers"].time_s == pytest.approx(runs["xdit"].time_s, rel=1e-12)
    # without CUDA graphs every launch carries host time
    assert any(c.op.host_s > 0 for c in runs["xdit"].costs)
    assert not any(c.op.host_s for c in runs["fused-graphs"].costs)


def test_qk_norm_and_rope_are_lowered_where_the_model_has_them():
    with_both = DiT(model=load_dit("hunyuanvideo"), height=720, width=1280, frames=129, steps=1)
    names = {op.name for op in with_both.lower().ops}
    assert {"qk_norm_rope", "single.qk_norm_rope"} <= names
    without = DiT(model=load_dit("pixart-alpha"), height=1024, width=1024, steps=1)
    assert not any("qk_norm" in op.name for op in without.lower().ops)


@pytest.mark.parametrize(("field", "value"), [("qk_norm", "l2"), ("rope", "yes")])
def test_unknown_qk_norm_or_rope_is_a_one_line_error(field, value):
    import dataclasses

    with pytest.raises(WorkloadError, match=f"{field} must be one of"):
        dataclasses.replace(load_dit("flux-1-dev"), **{field: value})


def test_an_unknown_diffusers_qk_norm_is_refused(tmp_path, capsys):
    cfg = json.loads((DIFFUSERS / "hunyuanvideo.json").read_text())
    cfg["qk_norm"] = "l2_norm"
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    assert main(["dit", "--model", str(path), "--chip", "h100-sxm"]) == 2
    err = capsys.readouterr().err
    assert "qk_norm 'l2_norm' is not one roofsim reads" in err and err.count("\n") == 1


def test_ring_attention_runs_a_kernel_per_shard_and_merges_the_partial_outputs():
    """Ring over n chips: n attention kernels per layer over L/n keys each (the same FLOPs as
    one over all keys), n - 1 log-sum-exp merges; Ulysses has neither."""
    m = load_dit("flux-1-dev")
    system = load_system("h100-sxm", 4)
    ring = simulate(DiT(model=m, height=1024, width=1024, steps=1, sp=4, sp_method="ring"),
                    system)  # fmt: skip
    uly = simulate(DiT(model=m, height=1024, width=1024, steps=1, sp=4), system)
    att = [c.op for c in ring.costs if c.op.name == "attention"][0]
    merge = [c.op for c in ring.costs if c.op.name == "ring_merge"][0]
    assert att.count == 4 * m.n_layers and merge.count == 3 * m.n_layers
    assert att.attention.kv_len == -(-(4096 + 512) // 4)
    assert _denoise_flops(ring, kinds=(OpKind.ATTENTION,)) == pytest.approx(
        _denoise_flops(uly, kinds=(OpKind.ATTENTION,)), rel=0.01
    )
    assert not any(c.op.name.endswith("ring_merge") for c in uly.costs)


def test_cli_dit_names_its_runtime(capsys):
    assert main(["dit", "--model", "flux-1-dev", "--chip", "h100-sxm", "--steps", "2",
                 "--runtime", "xdit", "--json"]) == 0  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert out["workload"]["runtime"] == "xdit"


def _launches(sp: int, method: str = "ulysses"):
    """Flux.1-dev under xDiT, eager, one step: (per double block, per single block, outside
    the blocks) kernel launches, and collective calls per step."""
    from workloads.runtime import load_runtime

    m = load_dit("flux-1-dev")
    w = DiT(model=m, height=1024, width=1024, steps=1, sp=sp, sp_method=method,
            runtime=load_runtime("xdit"), attention_kernel="fa2")  # fmt: skip
    ops = [o for o in w.lower().ops if not o.name.startswith(("vae", "text_encoder"))]
    kernels = ops  # a collective call is one launch (NCCL) in the blocks' counts
    single = sum(o.kernels * o.count for o in kernels if o.name.startswith("single."))
    outside = sum(o.kernels * o.count for o in kernels if o.count == 1)
    double = sum(o.kernels * o.count for o in kernels) - single - outside
    calls = sum(o.count for o in ops if o.kind is OpKind.COLLECTIVE)
    return double / m.n_layers, single / m.n_single_layers, outside, calls


def test_flux_eager_launches_are_the_ones_its_code_makes():
    """diffusers 0.31's Flux blocks under xfuser 0.4, counted line by line and on CPU under a
    dispatch counter (benchmarks/research/xdit-flux-eager-kernels-2026-12-05.md): 97 per
    double-stream block, 49 per single-stream block, 105 per step outside them, and on CUDA
    two more in each block: the real RoPE's ``torch.stack`` of two 4-D tensors along a new
    last dimension is one aten::cat on CPU but on CUDA a copy into a stride-2 slice for each
    (cat_out_cuda batches only up to 4 dimensions; benchmarks/research/eager-broadcast-counts-
    2026-12-07.md), for q and for k; Ulysses adds an all-to-all for each of q, k, v and the
    output and the layout copies around them."""
    assert _launches(1) == (99, 51, 105, 0)
    assert _launches(4) == (108, 64, 105, 4 * (19 + 38))
    assert _launches(2)[:3] == _launches(4)[:3]  # the same launches, smaller messages
    # ring: torch 2.5's templated ring attention (xfuser 0.4): a cat and a send per hop, the
    # partial outputs merged once (5N + 5 kernels), the single block's k, v and output copies
    assert _launches(2, "ring")[:2] == (117, 72)
    assert _launches(4, "ring")[:2] == (133, 88)


def test_eager_collective_calls_cost_their_measured_host_time():
    """Under xDiT (eager, functional collectives) a collective call takes 164 us of host time
    (pytorch#138773), not a kernel launch's 23.2 us: Ulysses-4's step waits for its host."""
    from workloads.runtime import load_runtime

    rt = load_runtime("xdit")
    assert rt.host_collective_s == pytest.approx(164e-6)
    assert load_runtime("pytorch-eager").host_collective_s == pytest.approx(122e-6)
    w = DiT(model=load_dit("flux-1-dev"), height=1024, width=1024, steps=2, sp=4, runtime=rt,
            attention_kernel="fa2")  # fmt: skip
    calls = [o for o in w.lower().ops if o.kind is OpKind.COLLECTIVE]
    assert calls and all(o.host_s == pytest.approx(164e-6) for o in calls)
    cheap = DiT(model=w.model, height=1024, width=1024, steps=2, sp=4, attention_kernel="fa2",
                runtime=replace(rt, host_collective_s=0.0))  # fmt: skip
    h100 = load_system("h100-sxm", 4)
    assert simulate(w, h100).time_s > simulate(cheap, h100).time_s


def test_qkv_linears_is_one_or_three():
    from dataclasses import replace as _r

    with pytest.raises(WorkloadError, match="qkv_linears must be 1"):
        _r(load_dit("flux-1-dev"), qkv_linears=2)


def test_an_unknown_ring_attention_is_a_one_line_error():
    from workloads.runtime import Runtime

    with pytest.raises(WorkloadError, match="ring_attention must be one of yunchang, torch"):
        Runtime(name="x", ring_attention="spiral")


def test_torch_ring_only_for_diffusers_attention():
    """xfuser 0.4 rings diffusers models through torch's templated ring attention; a model's
    own repository code (HunyuanVideo's) goes through yunchang's merge per hop."""
    from workloads.runtime import load_runtime

    def names(model):
        w = DiT(model=load_dit(model), height=512, width=512, frames=1, steps=1, sp=2,
                sp_method="ring", runtime=load_runtime("xdit"), attention_kernel="fa2")  # fmt: skip
        return {o.name for o in w.lower().ops}

    assert load_dit("flux-1-dev").diffusers_attention
    assert not load_dit("hunyuanvideo").diffusers_attention
    assert "ring_cat" in names("flux-1-dev") and "ring_casts" not in names("flux-1-dev")
    assert "ring_cat" not in names("hunyuanvideo") and "ring_casts" in names("hunyuanvideo")


def test_eager_dit_broadcasts_run_on_the_strided_kernel():
    """adaLN's ``x * (1 + scale[:, None]) + shift[:, None]`` broadcasts over tokens: two strided
    elements an element; the joint attention's cat is cat's own kernel, the output's transpose
    copy is strided; under torch.compile none."""
    from workloads.runtime import load_runtime

    m = load_dit("flux-1-dev")
    rt = load_runtime("xdit")
    ops = {o.name: o for o in DiT(model=m, height=1024, width=1024, steps=1, runtime=rt,
                                  attention_kernel="fa2").lower().ops}  # fmt: skip
    norm = ops["norm1_modulate"]
    elements = norm.flops / 7  # _NORM_FLOPS an element
    ((cycles, nbytes),) = norm.scalar_kernels  # the multiply and the add alike: one entry
    assert cycles == pytest.approx(2 * elements * rt.strided_cycles_per_element)
    assert nbytes == pytest.approx(8 * elements)
    assert ops["joint_cat"].scalar_kernels == () and ops["attn_out_copy"].scalar_kernels
