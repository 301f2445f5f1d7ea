"""Lowering is exact: FLOPs and bytes against the closed forms they must equal."""

import pytest

from hardware import load_system
from sim import simulate
from workloads import Decode, Prefill, Role, WorkloadError, load_model
from workloads.runtime import load_runtime


def _sum(graph, attr):
    return sum(getattr(op, attr) * op.count for op in graph.ops)


def _weight_bytes(graph):
    return sum(op.bytes.get(Role.WEIGHT, 0.0) * op.count for op in graph.ops)


@pytest.mark.parametrize("name", ["llama-2-7b", "llama-3-70b", "gpt3-175b", "bloom-176b"])
def test_decode_model_flops_are_2n_per_token_plus_attention(name):
    m = load_model(name)
    B, L = 4, 1024
    g = Decode(model=m, batch=B, context=L).lower()
    # attention: 2 (QK) + 2 (PV) FLOPs per head dim per cached token per q head per layer
    attn = 4 * B * m.n_layers * m.n_heads * m.head_dim * L
    expected = 2 * m.n_matmul_params() * B + attn
    assert _sum(g, "model_flops") == pytest.approx(expected, rel=1e-3)


def test_prefill_model_flops_are_2n_per_token_plus_causal_attention():
    m = load_model("llama-2-7b")
    B, S = 2, 2048
    g = Prefill(model=m, batch=B, prompt=S).lower()
    # causal: S(S+1)/2 pairs per head; LM head only on each prompt's last token
    attn = 4 * B * m.n_layers * m.n_heads * m.head_dim * S * (S + 1) / 2
    body = 2 * (m.n_matmul_params() - m.vocab * m.hidden) * B * S
    head = 2 * m.vocab * m.hidden * B
    assert _sum(g, "model_flops") == pytest.approx(body + head + attn, rel=1e-6)


@pytest.mark.parametrize("dtype", ["bf16", "fp8", "int4"])
def test_dense_decode_reads_every_weight_once(dtype):
    m = load_model("llama-2-7b")
    g = Decode(model=m, batch=1, context=128, dtype=dtype).lower()
    # weight-only int4: half a byte and its group's 16-bit scale (the default runtime's layout)
    # over the default 128 weights a group
    per_el = {"bf16": 2, "fp8": 1, "int4": 0.5 + 2 / 128}[dtype]
    # an fp8 checkpoint keeps the LM head and the embedding table 16-bit (weight-only int4
    # quantises the head too)
    wide = 2 if dtype == "fp8" else per_el
    head = m.vocab * m.hidden
    # all matmul weights + one embedding row (the lookup) + norm scales, which stay 16-bit
    norms = (2 * m.n_layers + 1) * m.hidden * 2
    expected = (m.n_matmul_params() - head) * per_el + (head + m.hidden) * wide
    assert _weight_bytes(g) == pytest.approx(expected + norms, rel=1e-9)
    held = (m.n_params() - m.embedding_params()) * per_el + m.embedding_params() * wide
    assert g.memory.weights_bytes == pytest.approx(held)


def test_int4_groups_carry_their_scales_and_zero_points_in_the_runtimes_layout():
    """gpt-fast's int4 (tinygemm) keeps a bf16 scale and a bf16 zero point for each group of 32
    weights along K of a column (quantize.py pack_scales_and_zeros; the README's 'G=32'):
    0.5 + 4 / 32 bytes a weight, read by every decode step, where the default layout's one
    16-bit scale over 128 weights adds 2 / 128. Its A100 decode rows were 53-69 % too fast
    without them."""
    m, gpt_fast = load_model("llama-2-7b"), load_runtime("gpt-fast")
    assert gpt_fast.int4_group_bytes == 4.0 and load_runtime("vllm-0.6").int4_group_bytes == 2.0

    def step(group, runtime=gpt_fast):
        w = Decode(model=m, batch=1, context=105, dtype="int4", int4_group=group, runtime=runtime)
        return w, w.lower()

    w32, g32 = step(32)
    assert w32.weight_bytes == 0.5 + 4 / 32
    w128, g128 = step(None)  # the quantisers' default group
    assert w128.weight_bytes == 0.5 + 4 / 128
    linear = m.n_matmul_params()
    grew = _weight_bytes(g32) - _weight_bytes(g128)
    assert grew == pytest.approx(linear * (4 / 32 - 4 / 128), rel=0.01)
    a100 = load_system("a100-sxm-80gb", 1)
    t32, t128 = (simulate(w, a100).time_s for w in (w32, w128))
    # memory-bound: slower by most of the weights' bytes ratio, 0.625 / 0.531 (the step's
    # launches, attention and sampler do not grow)
    assert 1.08 < t32 / t128 < (0.5 + 4 / 32) / (0.5 + 4 / 128)
    # a group size is an int4 checkpoint's: refused with any other --dtype, and below 1
    with pytest.raises(WorkloadError, match="--int4-group .* needs --dtype int4"):
        Decode(model=m, dtype="fp8", int4_group=32).lower()
    with pytest.raises(WorkloadError, match="--int4-group must be a whole number"):
        Decode(model=m, dtype="int4", int4_group=0).lower()


def test_tensor_parallel_shards_flops_and_weights_evenly():
    m = load_model("llama-2-70b")
    one = Decode(model=m, batch=8, context=512).lower()
    eight = Decode(model=m, batch=8, context=512, tp=8).lower()
    # matmul work splits 8 ways; norms stay replicated (tiny)
    assert _sum(eight, "model_flops") * 8 == pytest.approx(_sum(one, "model_flops"), rel=1e-3)
    assert eight.memory.weights_bytes * 8 == pytest.approx(one.memory.weights_bytes, rel=1e-3)
    reduces = [op for op in eight.ops if op.collective and op.collective.kind == "all_reduce"]
    assert sum(op.count for op in reduces) == 2 * m.n_layers


def test_kv_heads_replicate_when_tp_exceeds_them():
    m = load_model("llama-2-70b")  # 8 KV heads
    g16 = Decode(model=m, batch=1, context=4096, tp=16).lower()
    g8 = Decode(model=m, batch=1, context=4096, tp=8).lower()
    assert g16.memory.kv_cache_bytes == pytest.approx(g8.memory.kv_cache_bytes)


def test_moe_decode_touches_the_expected_number_of_distinct_experts():
    m = load_model("mixtral-8x7b")  # 8 experts, top-2
    expert = 3 * m.hidden * m.moe.expert_ffn * 2  # bytes of one expert (bf16)

    def expert_bytes(batch):
        g = Decode(model=m, batch=batch, context=128).lower()
        return (
            sum(
                op.bytes.get(Role.WEIGHT, 0.0) * op.count
                for op in g.ops
                if op.name.startswith("experts_")
            )
            / m.n_layers
        )

    # batch 1 touches exactly k = 2 experts; batch 4: 8·(1 − (6/8)^4) = 5.47 → 5 groups
    assert expert_bytes(1) == pytest.approx(2 * expert)
    assert expert_bytes(4) == pytest.approx(5 * expert)
    assert expert_bytes(256) == pytest.approx(8 * expert)


def test_moe_expert_gemms_carry_the_tokens_that_route_to_them():
    m = load_model("mixtral-8x7b")  # top-2 of 8: each token picks an expert with p = 1/4
    for ep, batch in ((1, 16), (2, 64)):
        g = Decode(model=m, batch=batch, context=128, ep=ep, dp=ep).lower()
        experts = [op for op in g.ops if op.name.startswith("experts_") and op.gemm]
        assert experts and all(op.gemm.routed_p == 0.25 for op in experts)
        # the EP group's tokens meet the experts: each replica's batch / dp, ep times
        assert all(op.gemm.routed_tokens == batch // ep * ep for op in experts)
    dense = Decode(model=load_model("llama-3-8b"), batch=16, context=128).lower()
    assert not any(op.gemm.routed_tokens for op in dense.ops if op.gemm)


def test_moe_routing_launches_top_k_permute_and_combine():
    # the serving engines' fused MoE runs three routing kernels around the expert GEMMs
    g = Decode(model=load_model("mixtral-8x7b"), batch=4, context=128).lower()
    (route,) = [op for op in g.ops if op.name == "route_permute"]
    assert route.kernels == 3


def test_a_group_limited_router_launches_its_runtimes_top_k_kernels():
    """DeepSeek-V3's grouped top-k (n_groups 8) takes the runtime's launches in place of one
    top-k kernel; a plain top-k router (Mixtral) is the same under every runtime."""
    from dataclasses import replace

    from hardware import load_system
    from sim import simulate
    from workloads.runtime import load_runtime

    ds, mixtral = load_model("deepseek-v3"), load_model("mixtral-8x7b")
    assert ds.moe.n_groups > 1 and mixtral.moe.n_groups == 1

    def route_kernels(m, runtime):
        g = Decode(model=m, batch=4, context=128, dtype="fp8",
                   runtime=load_runtime(runtime)).lower()  # fmt: skip
        return {op.kernels for op in g.ops if op.name.endswith("route_permute")}

    assert route_kernels(ds, "sglang-0.5") == {3}  # one fused gate (moe_fused_gate)
    assert route_kernels(ds, "sglang-0.4") == {2 + 7}  # torch.compile'd: 7 launches
    assert route_kernels(ds, "vllm-0.11") == {2 + 4}
    assert route_kernels(mixtral, "sglang-0.4") == route_kernels(mixtral, "sglang-0.5") == {3}
    # under CUDA graphs each extra launch costs the chip's per-kernel time, every MoE layer
    system, rt = load_system("h200", 8), load_runtime("sglang-0.4")
    t = [simulate(Decode(model=ds, batch=1, context=256, dtype="fp8", tp=8,
                         runtime=replace(rt, grouped_topk_kernels=k)), system).time_s
         for k in (1, 7)]  # fmt: skip
    extra = 6 * ds.n_moe_layers * system.chip.kernel_overhead_s
    assert t[1] - t[0] == pytest.approx(extra, rel=1e-6)


def test_moe_flops_use_top_k_experts_per_token():
    m = load_model("mixtral-8x7b")
    g = Decode(model=m, batch=16, context=1).lower()
    attn = 4 * 16 * m.n_layers * m.n_heads * m.head_dim * 1
    router = 2 * 16 * m.hidden * m.moe.n_experts * m.n_layers
    expected = 2 * (m.n_matmul_params(active=True) - m.hidden * m.moe.n_experts * m.n_layers) * 16
    assert _sum(g, "model_flops") == pytest.approx(expected + router + attn, rel=1e-6)


def test_mla_normalises_each_latent_before_its_up_projection():
    ds = load_model("deepseek-v3")  # q latent 1536 wide, kv latent 512 (+ 64 RoPE key)
    g = Decode(model=ds, batch=2, context=100, dtype="fp8", tp=8, dp=1).lower()
    names = [op.name.split(".")[-1] for op in g.ops]
    order = names[names.index("q_a_proj") : names.index("kv_a_norm") + 1]
    assert order == ["q_a_proj", "q_a_norm", "q_b_proj", "kv_a_proj", "kv_a_norm"]
    q_norm = next(op for op in g.ops if op.name.endswith("q_a_norm"))
    # read and write each row of 1536 once (bf16 activations), no residual beside it
    assert q_norm.bytes[Role.ACTIVATION] == pytest.approx(2 * 2 * 1536 * 2)
    lite = Decode(model=load_model("deepseek-v2-lite"), batch=2, context=100).lower()
    lite_names = {op.name.split(".")[-1] for op in lite.ops}
    assert "kv_a_norm" in lite_names and "q_a_norm" not in lite_names  # no q latent


def test_mla_decode_caches_the_latent_and_replicates_it_over_tp():
    ds = load_model("deepseek-v3")
    g = Decode(model=ds, batch=1, context=1000, dtype="fp8", tp=8, dp=1).lower()
    # (512 latent + 64 rope) x 61 layers x 1000 tokens x 2 bytes (bf16 cache), not divided by TP
    assert g.memory.kv_cache_bytes == pytest.approx(576 * 61 * 1000 * 2)
    attn = [op for op in g.ops if op.attention is not None][0]
    assert attn.attention.n_kv_heads == 1 and attn.attention.qk_dim == 576


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tp": 3}, "must divide the 64 attention heads"),
        ({"batch": 0}, "--batch must be an integer >= 1"),
        ({"dtype": "fp64"}, "--dtype must be one of"),
        ({"batch": 3, "dp": 2}, "must divide evenly"),
    ],
)
def test_bad_workloads_raise_one_clear_error(kwargs, match):
    with pytest.raises(WorkloadError, match=match):
        Decode(model=load_model("llama-2-70b"), **kwargs).lower()


def test_lowering_over_arrays_gives_each_points_own_graph():
    import numpy as np

    from workloads import Decode, Prefill, load_model

    for name, kind in (("mixtral-8x7b", Decode), ("deepseek-v3", Prefill), ("llama-2-7b", Decode)):
        model = load_model(name)
        batch, length = np.array([1, 7, 64, 300]), np.array([100, 2048, 9000, 333])
        extent = {"context": length} if kind is Decode else {"prompt": length}
        grid = kind(model=model, batch=batch, tp=2, **extent).lower()
        assert grid.points == 4
        for i in range(4):
            alone = kind(model=model, batch=int(batch[i]), tp=2,
                         **{k: int(v[i]) for k, v in extent.items()}).lower()  # fmt: skip
            picked = grid.take(np.array([i]))
            assert [op.name for op in picked.ops] == [op.name for op in alone.ops]
            for a, b in zip(picked.ops, alone.ops, strict=True):
                assert float(np.squeeze(a.flops)) == b.flops, a.name
                assert float(np.squeeze(a.total_bytes)) == b.total_bytes, a.name
            assert float(np.squeeze(picked.memory.kv_cache_bytes)) == alone.memory.kv_cache_bytes
            assert float(np.squeeze(picked.tokens)) == alone.tokens


def test_a_bad_entry_in_an_array_is_named():
    import numpy as np
    import pytest

    from workloads import Decode, WorkloadError, load_model

    with pytest.raises(WorkloadError, match="--context must be an integer >= 1, got 0"):
        Decode(model=load_model("llama-2-7b"), context=np.array([5, 0])).lower()


def test_triton_moe_runtimes_mark_their_expert_gemms_as_one_cta_power_of_two_blocks():
    # vLLM's and SGLang's fused MoE is a Triton kernel (no clusters, power-of-two blocks);
    # TensorRT-LLM's grouped GEMM is a library kernel; the other GEMMs are the library's
    from workloads.runtime import load_runtime

    m = load_model("mixtral-8x7b")
    for name, triton in (("vllm-0.11", True), ("sglang-0.4", True), ("vllm-0.5", True),
                         ("tensorrt-llm", False), ("fused-graphs", False)):  # fmt: skip
        assert (load_runtime(name).moe_kernel == "triton") == triton
        g = Decode(model=m, batch=64, context=128, runtime=load_runtime(name)).lower()
        experts = [op.gemm for op in g.ops if op.name.startswith("experts_") and op.gemm]
        others = [op.gemm for op in g.ops if op.gemm and not op.name.startswith("experts_")]
        assert experts and others
        assert all(e.clusters is not triton and e.pow2_blocks is triton for e in experts)
        assert all(e.tile_exposed is triton for e in experts)
        assert all(o.clusters and not o.pow2_blocks and not o.tile_exposed for o in others)


def test_marlin_runtimes_store_and_multiply_mxfp4_experts_padded_to_the_kernels_alignment():
    # vLLM's Marlin MoE needs n % 256 and k % 128 on each linear: gpt-oss's 2880-wide experts
    # are stored 2944 (intermediate) x 3072 (hidden); vLLM logs 65.9651 GiB of weights for
    # gpt-oss-120b on one H100 under it (issue #23278), the checkpoint holds 60.8 GiB
    from workloads.runtime import load_runtime

    m = load_model("gpt-oss-120b")
    marlin, native = (Decode(model=m, batch=64, context=512, runtime=load_runtime(name))
                      for name in ("vllm-0.11", "fused-graphs"))  # fmt: skip
    assert marlin.expert_shape() == (3072, 2944) and native.expert_shape() == (2880, 2880)
    assert marlin.resident_weight_bytes() / 2**30 == pytest.approx(65.9651, rel=0.005)
    assert native.resident_weight_bytes() / 2**30 == pytest.approx(60.8, rel=0.005)
    # each chip's share is padded after the TP split: 2880 / 2 = 1440 -> 1536
    assert Decode(model=m, tp=2, runtime=load_runtime("vllm-0.11")).expert_shape() == (3072, 1536)
    shapes = {name: {op.name: (op.gemm.n, op.gemm.k) for op in d.lower().ops
                     if op.name.startswith("experts_") and op.gemm}
              for name, d in (("marlin", marlin), ("native", native))}  # fmt: skip
    assert shapes["marlin"] == {"experts_up": (2 * 2944, 3072), "experts_down": (3072, 2944)}
    assert shapes["native"] == {"experts_up": (2 * 2880, 2880), "experts_down": (2880, 2880)}
    # the padded zeros are executed, not model, FLOPs (MFU counts the 2880 x 2880 work)
    ratio = 2880 * 2880 / (2944 * 3072)
    for name in shapes["marlin"]:
        (op,) = [op for op in marlin.lower().ops if op.name == name]
        assert op.model_flops == pytest.approx(op.flops * ratio)
    # a whole-model int4 checkpoint (GPTQ / AWQ) is not padded: vLLM runs another kernel there
    assert Decode(model=m, dtype="int4", runtime=load_runtime("vllm-0.11")).expert_shape() == (
        2880,
        2880,
    )
    # nor is a native runtime's at TP > 1: its weights are the checkpoint's share
    tp2 = (Decode(model=m, tp=2, runtime=load_runtime(n)) for n in ("fused-graphs", "vllm-0.11"))
    native2, marlin2 = tp2
    unpadded = Decode(model=m, tp=2, runtime=load_runtime("vllm-0.5")).resident_weight_bytes()
    assert native2.resident_weight_bytes() == unpadded < marlin2.resident_weight_bytes()


def test_a_block_scaled_checkpoints_triton_experts_promote_their_blocks_and_others_do_not():
    from workloads.runtime import load_runtime

    r1 = load_model("deepseek-r1")

    def experts(dtype, runtime):
        ops = Decode(model=r1, batch=64, context=512, dtype=dtype, tp=8,
                     runtime=load_runtime(runtime)).lower().ops  # fmt: skip
        return [op for op in ops if op.gemm is not None and ".experts_" in op.name]

    # vLLM's Triton fused MoE scales each dot by the blocks' scales in series: 2 instructions
    assert {op.gemm.promotion for op in experts("fp8", "vllm-0.11")} == {2.0}
    # a 16-bit run, or a runtime whose MoE GEMMs hide the promotion (TensorRT-LLM's): none
    assert {op.gemm.promotion for op in experts("bf16", "vllm-0.11")} == {0.0}
    assert {op.gemm.promotion for op in experts("fp8", "tensorrt-llm")} == {0.0}
    mixtral = load_model("mixtral-8x7b")  # an fp8 run of a checkpoint without block scales
    ops = Decode(model=mixtral, batch=64, context=512, dtype="fp8", tp=2,
                 runtime=load_runtime("vllm-0.11")).lower().ops  # fmt: skip
    assert all(op.gemm.promotion == 0.0 for op in ops if op.gemm is not None)


def test_a_block_scaled_checkpoints_dense_linears_take_the_runtimes_kernel_for_their_shape():
    from workloads.runtime import load_runtime

    r1 = load_model("deepseek-r1")

    def dense(runtime, dtype="fp8"):
        ops = Prefill(model=r1, batch=1, prompt=2048, dtype=dtype, tp=8,
                      runtime=load_runtime(runtime)).lower().ops  # fmt: skip
        return {op.name.split(".")[-1]: op.gemm for op in ops
                if op.gemm is not None and ".experts_" not in op.name}  # fmt: skip

    # vLLM 0.7: CUTLASS's blockwise kernel (one exposed FMA an element a block) on the 128 grid,
    # Triton (two, and its one-CTA tiles) for kv_a_proj's N = 576
    v07 = dense("vllm-0.6")
    assert v07["q_a_proj"].promotion == 1.0 and v07["q_a_proj"].clusters
    assert v07["kv_a_proj"].promotion == 2.0 and v07["kv_a_proj"].pow2_blocks
    assert not v07["kv_a_proj"].clusters and v07["kv_a_proj"].tile_exposed
    # vLLM 0.11 runs DeepGEMM on the grid (hidden) and pads the rest for CUTLASS
    v11 = dense("vllm-0.11")
    assert v11["q_a_proj"].promotion == 0.0 and v11["kv_a_proj"].promotion == 1.0
    # SGLang 0.5: DeepGEMM for both; 16-bit linears of an fp8 run and a bf16 run: none
    assert {g.promotion for g in dense("sglang-0.5").values()} == {0.0}
    assert v07["router"].promotion == 0.0
    assert {g.promotion for g in dense("vllm-0.6", "bf16").values()} == {0.0}
    # the exposed promotion costs time where compute binds: the same runtime with DeepGEMM for
    # its dense linears runs a prefill faster
    from dataclasses import replace

    from hardware import load_system
    from sim import simulate

    system = load_system("h100-sxm", 8)
    v06 = load_runtime("vllm-0.6")
    hid = replace(v06, block_fp8_gemm="deepgemm", block_fp8_gemm_unaligned="deepgemm")
    t = {rt.block_fp8_gemm: simulate(Prefill(model=r1, batch=1, prompt=2048, dtype="fp8", tp=8,
                                             runtime=rt), system, check_memory=False).time_s
         for rt in (v06, hid)}  # fmt: skip
    assert t["cutlass"] > 1.01 * t["deepgemm"]
    # a checkpoint without block scales run in fp8: no promotion under any runtime
    llama = Prefill(model=load_model("llama-3-8b"), batch=1, prompt=512, dtype="fp8",
                    runtime=v06).lower().ops  # fmt: skip
    assert all(op.gemm.promotion == 0.0 for op in llama if op.gemm is not None)


def test_a_runtimes_block_fp8_kernel_must_be_one_it_knows():
    from workloads.runtime import Runtime

    for key in ("block_fp8_gemm", "block_fp8_gemm_unaligned"):
        with pytest.raises(WorkloadError) as err:
            Runtime(name="odd", **{key: "cublas"})
        msg = str(err.value)
        assert f"{key} must be one of deepgemm, cutlass, triton, got 'cublas'" in msg
        assert "\n" not in msg
    with pytest.raises(WorkloadError, match="block_fp8_fallback must be one of triton "
                       r"\(or left out\), got 'cutlass'"):  # fmt: skip
        Runtime(name="odd", block_fp8_fallback="cutlass")


def test_block_fp8_linears_run_the_engines_fallback_where_its_kernels_are_not_built():
    """vLLM 0.7 builds its CUTLASS blockwise kernel for SM90 only (and not at all off CUDA), and
    DeepGEMM is a CUDA library: elsewhere (an AMD chip, an Ada L40S) the block-scaled linears
    run Triton's w8a8_block_fp8_matmul (two exposed vector instructions an element a block and
    a Triton kernel's structure), resolved per chip at cost time; a Hopper keeps the CUDA
    kernel; a runtime without a fallback runs its own kernel everywhere."""
    from dataclasses import replace

    from hardware import load_system
    from sim.cost.roofline import cost_ops
    from workloads.ops import for_chip
    from workloads.runtime import load_runtime

    r1 = load_model("deepseek-r1")
    v06 = load_runtime("vllm-0.6")
    assert (v06.block_fp8_fallback, v06.block_fp8_native) == ("triton", ("9.0",))
    assert load_runtime("vllm-0.11").block_fp8_native == ("9.0", "10.0")
    assert load_runtime("sglang-0.4").block_fp8_fallback == "triton"
    assert load_runtime("tensorrt-llm").block_fp8_fallback == ""
    ops = Prefill(model=r1, batch=1, prompt=4096, dtype="fp8", tp=8, runtime=v06).lower().ops
    q_a = next(op for op in ops if op.name.endswith("q_a_proj"))
    kv_a = next(op for op in ops if op.name.endswith("kv_a_proj"))  # off the grid: Triton
    assert (q_a.gemm.promotion, q_a.gemm.tile, q_a.gemm.block_fallback) == (1.0, (128, 128),
                                                                            "triton")  # fmt: skip
    assert kv_a.gemm.block_fallback == ""
    for cc in ("", "8.9", "10.0"):
        (moved,) = for_chip([q_a], cc)
        g = moved.gemm
        assert (g.promotion, g.tile_exposed, g.clusters, g.pow2_blocks, g.tile) == (
            2.0, True, False, True, (0, 0))  # fmt: skip
    assert for_chip([q_a], "9.0") == [q_a]
    # Triton's two exposed instructions cost more than the same kernel without them (4096
    # rows: the math binds) on an AMD chip
    (amd,) = for_chip([q_a], "")
    hidden = replace(amd, gemm=replace(amd.gemm, promotion=0.0, block_fallback=""))
    t = [c.time_s for c in cost_ops([q_a, hidden], load_system("mi300x", 8))]
    assert t[0] > 1.01 * t[1]
    # on a Hopper nothing moves
    h200 = load_system("h200", 8)
    assert cost_ops([q_a], h200)[0].time_s == cost_ops(for_chip([q_a], "9.0"), h200)[0].time_s


def test_the_sampler_moves_each_sampled_rows_vocabulary_through_the_runtimes_kernels():
    """vLLM V0 reads and writes 42 bytes a logit greedily (fp32 cast, softmax and log_softmax
    every step), V1 10 (cast, argmax): over batch x vocab on every chip of the TP group."""
    from workloads.ops import Role
    from workloads.runtime import load_runtime

    m = load_model("llama-3-8b")

    def sampler(runtime, sampling="greedy", tp=1):
        g = Decode(model=m, batch=64, context=128, tp=tp, runtime=load_runtime(runtime),
                   sampling=sampling).lower()  # fmt: skip
        return [op for op in g.ops if op.name == "sampler"]

    for runtime, sampling, per_logit, kernels in (("vllm-0.6", "greedy", 42, 6),
                                                  ("vllm-v1", "greedy", 10, 2),
                                                  ("vllm-v1", "random", 42, 6),
                                                  ("vllm-0.6", "top-p", 218, 20)):  # fmt: skip
        for tp in (1, 4):  # the logits are gathered: each chip samples the whole vocabulary
            (op,) = sampler(runtime, sampling, tp)
            assert op.bytes[Role.ACTIVATION] == 64 * m.vocab * per_logit
            assert op.kernels == kernels
    assert sampler("vllm-v1", "none") == []  # a forward-pass benchmark stops at the logits
    with pytest.raises(WorkloadError, match="--sampling must be one of"):
        Decode(model=m, batch=1, context=1, sampling="beam").lower()


def test_an_mla_decode_block_launches_what_the_runtimes_code_launches():
    """SGLang 0.4.3's MLA decode block issues 58 launches a layer at one token row and 62 at
    more (its fp8 quantisation chains, copies and PyTorch RoPE): the block's ops carry exactly
    that many kernels; prefill and a runtime without a count keep roofsim's own ops."""
    from workloads.runtime import load_runtime

    ds = load_model("deepseek-v3")
    sglang, trt = load_runtime("sglang-0.4"), load_runtime("tensorrt-llm")
    assert sglang.mla_decode_kernels == (58, 62) and trt.mla_decode_kernels == ()

    def block(w):
        return [op for op in w.lower().ops if op.name.startswith("moe.")
                and (op.family == "attention"
                     or op.name in ("moe.attn_norm", "moe.attn_all_reduce", "moe.mla_glue"))]  # fmt: skip

    for batch, launches in ((1, 58), (4, 62)):
        ops = block(Decode(model=ds, batch=batch, context=256, dtype="fp8", tp=8, runtime=sglang))
        assert sum(op.kernels for op in ops) == launches
        (glue,) = [op for op in ops if op.name == "moe.mla_glue"]
        assert glue.total_bytes == 0 and glue.kernels > 30
    own = block(Decode(model=ds, batch=4, context=256, dtype="fp8", tp=8, runtime=trt))
    assert not any(op.name == "moe.mla_glue" for op in own) and sum(op.kernels for op in own) < 30
    pre = Prefill(model=ds, prompt=256, dtype="fp8", tp=8, runtime=sglang).lower().ops
    assert not any(op.name.endswith("mla_glue") for op in pre)


def test_vllm_07_decodes_mla_through_premultiplied_projections():
    """vLLM 0.7 multiplies W_UK into q_b_proj and W_UV into o_proj at load: decode reads the
    latent-wide weights (16 heads x 512 at TP8) and runs no bmm; prefill keeps the plain ones."""
    from workloads.runtime import load_runtime

    ds, a = load_model("deepseek-v3"), load_model("deepseek-v3").mla
    nq = ds.n_heads // 8

    def gemms(w):
        return {op.name.split(".")[-1]: op.gemm for op in w.lower().ops
                if op.gemm is not None and op.name.startswith("moe.")}  # fmt: skip

    pre = gemms(Decode(model=ds, batch=4, context=256, dtype="fp8", tp=8,
                       runtime=load_runtime("vllm-0.6")))  # fmt: skip
    bmm = gemms(Decode(model=ds, batch=4, context=256, dtype="fp8", tp=8,
                       runtime=load_runtime("vllm-v1")))  # fmt: skip
    assert (pre["q_b_proj"].n, pre["o_proj"].k) == (nq * a.kv_lora_rank, nq * a.kv_lora_rank)
    assert pre["q_rope_proj"].n == nq * a.qk_rope_head_dim and pre["q_rope_proj"].b_bytes == 2
    assert not {"q_absorb", "v_absorb"} & set(pre) and {"q_absorb", "v_absorb"} <= set(bmm)
    assert (bmm["q_b_proj"].n, bmm["o_proj"].k) == (
        nq * (a.qk_nope_head_dim + a.qk_rope_head_dim),
        nq * a.v_head_dim,
    )
    prefill = gemms(Prefill(model=ds, prompt=256, dtype="fp8", tp=8,
                            runtime=load_runtime("vllm-0.6")))  # fmt: skip
    assert "q_rope_proj" not in prefill and prefill["o_proj"].k == nq * a.v_head_dim


def test_mla_launch_counts_apply_to_the_checkpoint_they_were_read_on():
    """The counts were read on DeepSeek-V3's block-scaled fp8 checkpoint (its quantisation
    chains among them): a bf16 run keeps roofsim's own ops."""
    from workloads.runtime import load_runtime

    ds, sglang = load_model("deepseek-v3"), load_runtime("sglang-0.4")
    for dtype, glued in (("fp8", True), ("bf16", False)):
        ops = Decode(model=ds, batch=4, context=256, dtype=dtype, tp=8, runtime=sglang).lower().ops
        assert any(op.name.endswith("mla_glue") for op in ops) == glued


def test_premultiplied_projections_keep_the_models_flops_and_hold_both_copies():
    from workloads.runtime import load_runtime

    ds = load_model("deepseek-v3")
    pre, bmm = (Decode(model=ds, batch=8, context=256, dtype="fp8", tp=8,
                       runtime=load_runtime(r)) for r in ("vllm-0.6", "vllm-v1"))  # fmt: skip
    assert _sum(pre.lower(), "model_flops") == pytest.approx(_sum(bmm.lower(), "model_flops"))
    a, nq = ds.mla, ds.n_heads / 8
    folded = ds.n_layers * nq * (a.kv_lora_rank * (a.q_lora_rank + ds.hidden)
                                 + 2 * a.qk_rope_head_dim * a.q_lora_rank)  # fmt: skip
    assert pre.resident_weight_bytes() - bmm.resident_weight_bytes() == pytest.approx(folded)


@pytest.mark.parametrize("runtime", ["pytorch-graph", "hf-transformers", "pytorch-eager"])
def test_eager_lowering_over_arrays_gives_each_points_own_scalar_kernels(runtime):
    """Eager runtimes' unvectorised kernels depend on the rows (one token row vectorises a
    broadcast; a prompt copies the attention output): a sweep's point lowers as it does alone."""
    import numpy as np

    from workloads import Decode, Prefill, load_model
    from workloads.runtime import load_runtime

    rt, model = load_runtime(runtime), load_model("llama-3-8b")
    for kind, extent in ((Decode, {"batch": np.array([1, 4, 64]), "context": np.array([9, 512, 99])}),
                         (Prefill, {"batch": np.array([1, 2, 1]), "prompt": np.array([2, 77, 2048])})):  # fmt: skip
        grid = kind(model=model, runtime=rt, **extent).lower()
        for i in range(3):
            alone = kind(model=model, runtime=rt,
                         **{k: int(v[i]) for k, v in extent.items()}).lower()  # fmt: skip
            picked = grid.take(np.array([i]))
            assert [op.name for op in picked.ops] == [op.name for op in alone.ops]
            for a, b in zip(picked.ops, alone.ops, strict=True):
                assert float(np.squeeze(a.total_bytes)) == pytest.approx(b.total_bytes), a.name
                # (a kernel a point does not run is a zero entry in the sweep's op)
                got = [x for k in ((float(np.squeeze(c)), float(np.squeeze(n)))
                                   for c, n in a.scalar_kernels) if k != (0.0, 0.0) for x in k]  # fmt: skip
                assert got == pytest.approx([x for k in b.scalar_kernels for x in k]), a.name
