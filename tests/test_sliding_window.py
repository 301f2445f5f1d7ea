"""Sliding-window attention and checkpoints with quantised experts (gpt-oss): the pair count,
the cache a window keeps, what decode, prefill and serving read, the HF config mapping."""

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware import load_system
from sim import simulate
from workloads import Decode, Prefill, WorkloadError, load_model
from workloads.loader import model_from_hf
from workloads.ops import causal_pairs
from workloads.runtime import load_runtime

FIXTURES = Path(__file__).parent / "fixtures" / "hf"


@settings(max_examples=200, deadline=None, derandomize=True)
@given(q=st.integers(1, 300), prefix=st.integers(0, 300), w=st.integers(0, 400))
def test_windowed_pairs_match_counting_them(q, prefix, w):
    kv = prefix + q
    # query at position p (0-based) sees keys max(0, p - w + 1) .. p
    counted = sum(min(p + 1, w) if w else p + 1 for p in range(prefix, kv))
    assert causal_pairs(q, kv, w) == pytest.approx(counted)
    # and as arrays of points, window or not
    got = causal_pairs(np.array([q, q]), np.array([kv, kv]), w)
    assert got.tolist() == pytest.approx([counted, counted])


@pytest.mark.parametrize("name", ["gpt-oss-20b", "gpt-oss-120b"])
def test_gpt_oss_counts_match_the_model_card(name):
    m = load_model(name)
    assert m.n_params() == pytest.approx(m.n_params_published, rel=0.001)
    # active without the input embedding: 3.61e9 / 5.13e9 (model card Table 1)
    active = m.n_params(active=True) - m.vocab * m.hidden
    assert active == pytest.approx({"gpt-oss-20b": 3.61e9, "gpt-oss-120b": 5.13e9}[name], rel=0.01)
    assert (m.sliding_window, m.sliding_layers, m.full_attention_layers) == (
        128,
        m.n_layers // 2,
        m.n_layers // 2,
    )
    assert m.moe is not None and m.moe.weight_format == "mxfp4"


def test_hf_config_of_gpt_oss_is_the_preset():
    hf = load_model(str(FIXTURES / "gpt-oss-120b.config.json"))
    preset = load_model("gpt-oss-120b")
    for field in ("n_layers", "hidden", "n_heads", "n_kv_heads", "head_dim", "attn_bias",
                  "mlp_bias", "sliding_window", "sliding_layers", "vocab"):  # fmt: skip
        assert getattr(hf, field) == getattr(preset, field), field
    assert hf.moe == preset.moe
    assert hf.n_params() == preset.n_params()


def _hf(kind: str, **extra) -> dict:
    return dict(model_type=kind, hidden_size=1024, num_attention_heads=8,
                num_key_value_heads=8, num_hidden_layers=12, intermediate_size=4096,
                vocab_size=32000, **extra)  # fmt: skip


@pytest.mark.parametrize(
    ("cfg", "window", "layers"),
    [
        (_hf("mistral", sliding_window=4096), 4096, 12),  # Mistral-7B v0.1: every layer
        (_hf("mixtral", sliding_window=None), 0, 0),
        (_hf("gemma2", sliding_window=4096), 4096, 6),  # even-indexed layers
        (_hf("gemma3_text", sliding_window=512, sliding_window_pattern=6), 512, 10),
        (_hf("qwen2", sliding_window=131072, use_sliding_window=False), 0, 0),
        # transformers' Qwen2: layers from max_window_layers on slide
        (_hf("qwen2", sliding_window=4096, use_sliding_window=True, max_window_layers=8), 4096, 4),
        (_hf("phi3", sliding_window=2047), 2047, 12),
        # transformers' default max_window_layers is 28: none of 12 layers slides
        (_hf("qwen2", sliding_window=4096, use_sliding_window=True), 0, 0),
        (_hf("llama", sliding_window=4096), 0, 0),  # a key Llama does not read
        (_hf("gpt_oss", sliding_window=128,
             layer_types=["sliding_attention", "full_attention"] * 6), 128, 6),
    ],
)  # fmt: skip
def test_hf_configs_say_which_layers_slide(cfg, window, layers):
    m = model_from_hf(cfg)
    assert (m.sliding_window, m.sliding_layers) == (window, layers)


def test_bad_window_fields_are_one_line_errors():
    m = load_model("llama-2-7b")
    with pytest.raises(WorkloadError, match="sliding_layers"):
        replace(m, sliding_window=128, sliding_layers=0)
    with pytest.raises(WorkloadError, match="sliding_layers"):
        replace(m, sliding_window=128, sliding_layers=m.n_layers + 1)
    with pytest.raises(WorkloadError, match="weight_format"):
        replace(load_model("gpt-oss-20b").moe, weight_format="nf4")


def _attention_ops(graph, sliding: bool):
    return [op for op in graph.ops if op.attention is not None
            and ("sliding." in op.name) == sliding]  # fmt: skip


def test_a_sliding_layer_reads_its_window_however_long_the_context():
    m = load_model("gpt-oss-120b")
    short, long = (Decode(model=m, batch=4, context=c).lower() for c in (4096, 65536))
    (s_short,), (s_long,) = _attention_ops(short, True), _attention_ops(long, True)
    assert s_short.attention.kv_read_len == s_long.attention.kv_read_len == 128
    assert s_short.flops == s_long.flops and s_short.bytes == s_long.bytes
    (f_short,), (f_long,) = _attention_ops(short, False), _attention_ops(long, False)
    assert f_long.bytes["kv"] == pytest.approx(16 * f_short.bytes["kv"], rel=1e-3)
    assert s_short.count == f_short.count == 18
    # the cache: the full layers hold every token, the sliding ones 128
    assert long.memory.kv_cache_bytes == pytest.approx(4 * (18 * 65536 + 18 * 128) * 2 * 8 * 64 * 2)
    # a window makes decode faster than the same model attending to everything
    chip = load_system("h100-sxm", 1, [])
    full = replace(m, sliding_window=0, sliding_layers=0)
    assert (simulate(Decode(model=m, batch=8, context=65536), chip).time_s
            < simulate(Decode(model=full, batch=8, context=65536), chip, check_memory=False).time_s)  # fmt: skip


def test_prefill_of_a_sliding_layer_costs_the_band():
    m = load_model("gpt-oss-20b")
    graph = Prefill(model=m, prompt=8192).lower()
    (s,), (f,) = _attention_ops(graph, True), _attention_ops(graph, False)
    heads, width = 64, 2 * 64  # q heads; qk + v
    band = sum(min(p + 1, 128) for p in range(8192))
    assert s.flops == pytest.approx(2 * heads * band * width)
    assert f.flops == pytest.approx(2 * heads * 8192 * 8193 / 2 * width)
    chip = load_system("h100-sxm", 1, [])
    costs = {c.op.name: c for c in simulate(Prefill(model=m, prompt=8192), chip).costs}
    assert costs["sliding.attention"].time_s < costs["attention"].time_s / 10


def test_each_kind_of_layer_keeps_its_count_beside_dense_and_moe_groups():
    from dataclasses import replace as rep

    base = load_model("gpt-oss-20b")
    m = rep(base, n_layers=26, sliding_layers=13, moe=rep(base.moe, first_dense_layers=1))
    for pp in (1, 2):
        graph = Decode(model=m, batch=2 * pp, pp=pp).lower()
        full = sum(op.count for op in _attention_ops(graph, False))
        sliding = sum(op.count for op in _attention_ops(graph, True))
        mlps = sum(op.count for op in graph.ops if op.name.endswith(("mlp_down", "experts_down")))
        assert full + sliding == mlps
        assert full == sliding  # half each, however the dense layer rounds


def test_a_windowed_prefill_block_computes_its_masked_keys():
    m = load_model("gpt-oss-20b")
    chip = load_system("h100-sxm", 1, [])
    costs = {c.op.name: c for c in simulate(Prefill(model=m, prompt=4096), chip).costs}
    # a query block of br rows spans 128 + br - 1 keys a row, 128 of them (at most) unmasked
    s = costs["sliding.attention"]
    br = s.tile[0]
    assert s.tile_efficiency == pytest.approx(128 / (128 + br - 1), rel=0.02)
    assert costs["attention"].tile_efficiency > 0.9


@pytest.mark.parametrize("prompt", [2048, 4096])
def test_a_window_no_shorter_than_the_context_costs_full_causal_attention(prompt):
    base = load_model("gpt-oss-20b")
    m = replace(base, sliding_window=4096)
    chip = load_system("h100-sxm", 1, [])
    costs = {c.op.name: c for c in simulate(Prefill(model=m, prompt=prompt), chip).costs}
    s, f = costs["sliding.attention"], costs["attention"]
    assert s.time_s == pytest.approx(f.time_s) and s.op.flops == pytest.approx(f.op.flops)
    # a window half the prompt: the diagonal blocks, then the band
    costs = {c.op.name: c for c in simulate(Prefill(model=m, prompt=8192), chip).costs}
    ratio = costs["sliding.attention"].time_s / costs["attention"].time_s
    exact = causal_pairs(8192, 8192, 4096) / causal_pairs(8192, 8192)  # 0.75
    assert exact == pytest.approx(0.75, rel=0.01)
    assert 0.7 < ratio < 0.85


def test_mxfp4_experts_are_read_at_four_and_a_quarter_bits():
    m = load_model("gpt-oss-120b")
    graph = Decode(model=m, batch=1, context=128).lower()
    up = next(op for op in graph.ops if op.name == "experts_up")
    qkv = next(op for op in graph.ops if op.name == "qkv_proj")
    g = up.gemm
    assert up.bytes["weight"] == pytest.approx(g.groups * g.k * g.n * 4.25 / 8)
    assert qkv.bytes["weight"] == pytest.approx(qkv.gemm.k * qkv.gemm.n * 2)  # bf16 attention
    assert up.dtype == "bf16"  # weight-only: the math at the run's dtype
    # the weights one H100 holds: ~61 GB of MXFP4 experts + ~4 GB of bf16 (vLLM serves it on one)
    assert graph.memory.weights_bytes == pytest.approx(65.2e9, rel=0.01)
    # --dtype sets the math and the other layers; the experts keep the more compact of the two
    # (fp8: the checkpoint's MXFP4; int4 at 4 bits and a 16-bit scale over each group of 128,
    # 4.125 bits against MXFP4's 4.25: int4)
    fp8 = next(op for op in Decode(model=m, dtype="fp8").lower().ops if op.name == "experts_up")
    assert fp8.bytes["weight"] == up.bytes["weight"] and fp8.dtype == "fp8"
    i4 = next(op for op in Decode(model=m, dtype="int4").lower().ops if op.name == "experts_up")
    assert i4.bytes["weight"] == pytest.approx(g.groups * g.k * g.n * (0.5 + 2 / 128))


def test_serving_a_windowed_model_counts_blocks_of_its_full_layers():
    from hardware import load_system
    from sim.engine.serve import kv_capacity_blocks, simulate_serving
    from workloads.serving import LengthDist, Serving

    h100 = load_system("h100-sxm", 1, [])
    m = load_model("gpt-oss-20b")
    serving = Serving(model=m, rate=4.0, duration_s=20.0, runtime=load_runtime("vllm-0.11"),
                      prompt=LengthDist(kind="const", a=2000),
                      output=LengthDist(kind="const", a=100))  # fmt: skip
    blocks, per_token = kv_capacity_blocks(serving, h100)
    assert per_token == pytest.approx(12 * 2 * 8 * 64 * 2)  # 12 full-attention layers, bf16
    full = replace(serving, model=replace(m, sliding_window=0, sliding_layers=0))
    assert blocks > kv_capacity_blocks(full, h100)[0]
    res = simulate_serving(serving, h100)
    assert np.isfinite(res.finish_s).all() and res.preemptions == 0
    # disaggregated: a request's cache moves whole, its sliding layers' window included
    from sim.engine.serve import sliding_kv_bytes

    assert sliding_kv_bytes(serving, 2000) == pytest.approx(12 * 128 * 2 * 8 * 64 * 2)
    assert sliding_kv_bytes(full, 2000) == 0.0


def test_a_sequence_holds_its_sliding_layers_window_from_the_pool_while_it_runs():
    """Gemma 2 (half its layers in a 4096-token window) serves on one H100: each sequence takes
    its window's blocks beside its full layers' (vLLM V1's hybrid KV cache manager), so long
    requests fit about half as many at once as the full layers alone would; no window is set
    aside for sequences that are not there."""
    from hardware import load_system
    from sim.engine.serve import kv_capacity_blocks, simulate_serving, window_blocks
    from workloads.runtime import load_runtime
    from workloads.serving import LengthDist, Serving

    h100 = load_system("h100-sxm", 1, [])
    gemma = load_model("gemma-2-9b")
    assert (gemma.sliding_layers, gemma.full_attention_layers) == (21, 21)
    serving = Serving(model=gemma, rate=50.0, duration_s=20.0, runtime=load_runtime("vllm-0.11"),
                      prompt=LengthDist(kind="const", a=6000),
                      output=LengthDist(kind="const", a=200))  # fmt: skip
    bs = serving.block_size
    assert window_blocks(serving, 100) == -(-100 // bs)  # within the window: as the full layers
    assert window_blocks(serving, 6200) == -(-(4096 + bs) // bs)  # the window and one block
    blocks, _ = kv_capacity_blocks(serving, h100)
    per_seq = -(-6200 // bs) + window_blocks(serving, 6200)
    res = simulate_serving(serving, h100)
    assert np.isfinite(res.finish_s).all()
    # the pool bounds the batch: its sequences' blocks and windows (the full layers' blocks
    # alone would hold twice as many)
    assert blocks / per_seq * 0.6 < res.mean_decode_batch <= blocks / per_seq


def _windowed(window: int = 1024, layers: int = 16):
    """Llama-3-8B with ``layers`` of its 32 layers in a sliding window (Gemma 2's pattern)."""
    return replace(load_model("llama-3-8b"), sliding_window=window, sliding_layers=layers)


def _step(model, **kw):
    from sim.engine.train import simulate_training
    from workloads.training import Training

    base = dict(model=model, seq=8192, micro_batch=1, global_batch=64, dp=8, zero=2)
    t = Training(**(base | kw))
    system = load_system("h100-sxm", t.tp * t.pp * t.dp * t.cp)
    return t, simulate_training(t, system, check_memory=False)


def test_training_a_window_no_shorter_than_the_sequence_is_full_attention():
    _, full = _step(load_model("llama-3-8b"), seq=4096)
    _, same = _step(_windowed(window=4096, layers=32), seq=4096)
    assert same.step_time_s == full.step_time_s
    assert not [c for c, _ in same.op_costs if c.op.name.startswith("sliding.")]


@pytest.mark.parametrize("kw", [dict(), dict(pp=2, dp=4, recompute="full", recompute_blocks=0.5)])
def test_training_a_windowed_model_costs_its_band_in_both_passes(kw):
    t, run = _step(_windowed(), **kw)
    _, full = _step(load_model("llama-3-8b"), **kw)
    plan = t.lower()
    ops = [op for st in plan.stages for c in st for op in c.forward + c.backward]
    # every layer once a micro-batch: half of them in the window, the other half full
    fwd_sliding = sum(op.count for op in ops if op.name == "sliding.attention")
    fwd_full = sum(op.count for op in ops if op.name == "attention")
    assert fwd_sliding == fwd_full == 16
    assert sum(op.count for op in ops if op.name == "sliding.attention.bwd") == 16
    # model FLOPs: the windowed causal pairs, as the closed form counts them
    per_mb = sum(op.model_flops * op.count for op in ops)
    assert per_mb * plan.micro_batches * t.dp == pytest.approx(plan.model_flops_closed_form)
    pairs = causal_pairs(8192, 8192, 1024) / causal_pairs(8192, 8192)
    sliding = next(op for op in ops if op.name == "sliding.attention")
    whole = next(op for op in ops if op.name == "attention")
    assert sliding.model_flops == pytest.approx(whole.model_flops * pairs)
    assert run.step_time_s < full.step_time_s


def test_training_refuses_what_a_window_does_not_model_in_one_line():
    from workloads.training import Training

    m = _windowed()
    with pytest.raises(WorkloadError, match="--cp 1"):
        Training(model=m, seq=8192, micro_batch=1, global_batch=8, cp=2, dp=4).validate()
    with pytest.raises(WorkloadError, match="flash attention"):
        Training(model=m, seq=8192, micro_batch=1, global_batch=8,
                 attention_kernel="unfused").validate()  # fmt: skip
    Training(model=m, seq=1024, micro_batch=1, global_batch=8, cp=2, dp=4).validate()
    out = subprocess.run(
        [sys.executable, "-m", "sim.cli", "train", "--model", "gpt-oss-20b", "--chip",
         "h100-sxm", "--chips", "8"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode != 0
    assert "quantised (mxfp4) experts" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_decode_json_of_gpt_oss():
    out = subprocess.run(
        [sys.executable, "-m", "sim.cli", "decode", "--model", "gpt-oss-120b", "--chip",
         "h100-sxm", "--batch", "8", "--context", "4096", "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    d = json.loads(out.stdout)
    assert d["memory"]["fits"]
    names = {op["name"] for op in d["ops"]}
    assert {"attention", "sliding.attention", "experts_up"} <= names


def test_a_sweep_over_context_costs_the_window_as_single_points_do(tmp_path):
    spec = tmp_path / "oss.toml"
    spec.write_text('[system]\nchip = "h100-sxm"\nchips = 1\n[workload]\nkind = "decode"\n'
                    'model = "gpt-oss-20b"\nbatch = 8\n[axes]\ncontext = [100, 1000, 30000]\n')  # fmt: skip
    out = tmp_path / "oss.csv"
    subprocess.run([sys.executable, "-m", "sim.cli", "sweep", str(spec), "-o", str(out),
                    "--no-progress"], check=True, capture_output=True)  # fmt: skip
    lines = out.read_text().splitlines()
    head = lines[0].split(",")
    swept = [float(line.split(",")[head.index("time_s")]) for line in lines[1:]]
    chip = load_system("h100-sxm", 1, [])
    m = load_model("gpt-oss-20b")
    single = [
        simulate(Decode(model=m, batch=8, context=c), chip).time_s for c in (100, 1000, 30000)
    ]
    assert swept == pytest.approx(single, rel=1e-12)
    assert swept[0] < swept[1] < swept[2]


def test_marlin_runs_weight_only_gemms_at_the_mma_sync_rate_on_hopper_only():
    m = load_model("gpt-oss-20b")
    marlin = load_runtime("vllm-0.11")
    assert marlin.weight_only_kernel == "marlin"
    native = replace(marlin, weight_only_kernel="native")

    def experts_s(chip: str, runtime) -> float:
        system = load_system(chip, 1, [])
        res = simulate(Prefill(model=m, prompt=8192, runtime=runtime), system)
        return sum(c.time_s * c.op.count for c in res.costs if c.op.name.startswith("experts_"))

    for chip, slower in (("h100-sxm", True), ("a100-sxm-80gb", False)):
        ratio = experts_s(chip, marlin) / experts_s(chip, native)
        if slower:  # mma.sync at 0.422 of peak against wgmma's sustained rate, where compute binds
            assert ratio > 1.3
        else:  # Ampere's own path is mma.sync: only the padded zeros (2944 x 3072 of 2880 x
            # 2880 on Marlin, test_llm_lowering) cost more, and no more than their share
            assert 1.0 < ratio <= 2944 * 3072 / 2880**2
    # only the quantised experts: the bf16 attention projections keep the native path
    ops = Prefill(model=m, prompt=8192, runtime=marlin).lower().ops
    flags = {op.name: op.gemm.mma_sync for op in ops if op.gemm is not None}
    assert flags["experts_up"] and flags["experts_down"] and not flags["qkv_proj"]
    with pytest.raises(WorkloadError, match="weight_only_kernel"):
        replace(marlin, weight_only_kernel="machete")
    # W4A16: with --dtype fp8 the Marlin experts still take 16-bit activations and math
    fp8 = {
        op.name: op for op in Prefill(model=m, prompt=512, dtype="fp8", runtime=marlin).lower().ops
    }
    assert fp8["experts_up"].dtype == "bf16" and fp8["experts_up"].gemm.mma_sync
    assert fp8["qkv_proj"].dtype == "fp8"
    # --dtype int4: every linear but the 16-bit router and LM head of vLLM's checkpoints
    i4 = {op.name: op for op in Prefill(model=load_model("mixtral-8x7b"), prompt=512,
                                         dtype="int4", runtime=marlin).lower().ops}  # fmt: skip
    assert i4["qkv_proj"].gemm.mma_sync and i4["experts_up"].gemm.mma_sync
    assert not i4["lm_head"].gemm.mma_sync and not i4["router"].gemm.mma_sync


def _training_ops(t):
    plan = t.lower()
    return plan, [op for st in plan.stages for c in st for op in c.forward + c.backward]


@pytest.mark.parametrize(
    "kw",
    [
        dict(pp=4, dp=2),
        dict(pp=2, vp=3, dp=4, global_batch=48),
        dict(pp=7, dp=1, recompute="full", recompute_blocks=0.5),
    ],
)
def test_training_places_every_second_layer_in_the_window_from_the_first(kw):
    """Gemma 2's pattern (layers 0, 2, 4, ... slide) over uneven stages, virtual stages and
    partial recompute: each stage's sliding layers are those of its own layer range, and a
    checkpointed layer re-runs the attention its layer has."""
    from workloads.training import Training

    m = replace(load_model("gemma-2-9b"), n_layers=42)  # 4096-token window on 21 layers
    t = Training(model=m, seq=8192, micro_batch=1, **({"global_batch": 64} | kw))
    plan, ops = _training_ops(t)
    assert sum(op.count for op in ops if op.name == "sliding.attention") == 21
    assert sum(op.count for op in ops if op.name == "attention") == 21
    for stage in plan.stages:
        for c in stage:
            first = sum(
                x.layers for s in plan.stages for x in s if (x.chunk, x.stage) < (c.chunk, c.stage)
            )
            want = sum(1 for i in range(first, first + c.layers) if i % 2 == 0)
            assert sum(op.count for op in c.forward if op.name == "sliding.attention") == want
    if t.recompute == "full":
        # half the blocks checkpointed (even ones, fms-fsdp's rule), the sliding ones are even:
        # the recomputed attention is the checkpointed layers' own
        def redo(name: str) -> int:
            return sum(op.count for op in ops if op.name == name)

        ck = [i for i in range(42) if t.checkpointed(i, 1)]
        assert redo("recompute.sliding.attention") == sum(1 for i in ck if i % 2 == 0)
        assert redo("recompute.attention") == sum(1 for i in ck if i % 2)
    per_mb = sum(op.model_flops * op.count for op in ops)
    assert per_mb * plan.micro_batches * t.dp * t.tp == pytest.approx(plan.model_flops_closed_form)


def test_training_a_windowed_moe_with_dense_first_layers_counts_its_window_in_both():
    from workloads.training import Training

    base = load_model("qwen3-30b-a3b")
    m = replace(base, sliding_window=1024, sliding_layers=24,
                moe=replace(base.moe, first_dense_layers=3))  # fmt: skip
    t = Training(model=m, seq=4096, micro_batch=1, global_batch=8, dp=2, ep=2)
    plan, ops = _training_ops(t)
    per_mb = sum(op.model_flops * op.count for op in ops)
    assert per_mb * plan.micro_batches * t.dp == pytest.approx(plan.model_flops_closed_form)
    sliding = [op for op in ops if op.name.endswith("sliding.attention")]
    assert sum(op.count for op in sliding) == 24


def test_a_packed_sample_no_longer_than_the_window_attends_fully():
    from workloads.training import Training

    m = _windowed(window=1024)
    packed = Training(model=m, seq=8192, micro_batch=1, sample_len=1024)
    assert packed.window == 0  # each 1024-token sample sees all of itself
    longer = Training(model=m, seq=8192, micro_batch=1, sample_len=4096)
    assert longer.window == 1024
    with pytest.raises(WorkloadError, match="--sample-len must be an integer"):
        Training(model=m, seq=8192, micro_batch=1, sample_len="x").validate()


def test_a_sequence_returns_its_window_blocks_on_every_way_out(monkeypatch):
    """Finish, preemption, a disaggregated hand-off (and one whose output is its first token),
    reserve-on-admit and speculative (fluid) decoding each free what the sequence took: every
    replica's count of used blocks is back to 0 at the end, no window left held."""
    import sim.engine.serve as serve
    from workloads.llm import Speculation
    from workloads.runtime import load_runtime
    from workloads.serving import LengthDist, Serving

    made = []
    init = serve._Replica.__init__

    def keep(self, *a, **k):
        init(self, *a, **k)
        made.append(self)

    monkeypatch.setattr(serve._Replica, "__init__", keep)
    base = dict(model=load_model("gemma-2-9b"), rate=40.0, duration_s=6.0,
                runtime=load_runtime("vllm-0.11"), prompt=LengthDist(kind="const", a=3000),
                output=LengthDist(kind="const", a=800))  # fmt: skip
    cases = {
        "preempt": dict(memory_fraction=0.45),
        "disaggregated": dict(replicas=2, prefill_replicas=1),
        "first token only": dict(replicas=2, prefill_replicas=1,
                                 output=LengthDist(kind="const", a=1)),
        "reserve": dict(admission="reserve", memory_fraction=0.45),
        "speculative": dict(spec=Speculation(tokens=3, acceptance=0.7, draft="ngram"),
                            memory_fraction=0.6),
    }  # fmt: skip
    for name, kw in cases.items():
        made.clear()
        s = Serving(**{**base, **kw})
        r = serve.simulate_serving(s, load_system("h100-sxm", s.replicas * s.tp, []))
        assert np.isfinite(r.finish_s).all(), name
        if name == "preempt":
            assert r.preemptions > 0
        # exact where whole blocks and window blocks (dyadic fractions) are counted; speculative
        # decoding counts a fluid e / block size a step, which rounds
        tol = 1e-6 if name == "speculative" else 0.0
        assert all(abs(x.used) <= tol for x in made), (name, [x.used for x in made])
        assert not any(x.windows for x in made), name


def test_a_request_whose_window_does_not_fit_is_refused_before_the_run():
    from sim.cost.result import CapacityError
    from sim.engine.serve import simulate_serving
    from workloads.runtime import load_runtime
    from workloads.serving import LengthDist, Serving

    s = Serving(model=load_model("gemma-2-9b"), rate=5.0, duration_s=2.0,
                runtime=load_runtime("vllm-0.11"), memory_fraction=0.27,
                prompt=LengthDist(kind="const", a=6000), output=LengthDist(kind="const", a=50))  # fmt: skip
    # 6,050 tokens fit the full layers' blocks; with their 4,096-token window they do not
    with pytest.raises(
        CapacityError, match=r"6,050 tokens needs .* of them its sliding layers' window"
    ):
        simulate_serving(s, load_system("h100-sxm", 1, []))
