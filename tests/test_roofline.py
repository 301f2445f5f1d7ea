"""The per-op roofline: hand-computed cases, quantisation, tiling, and properties."""

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware import Chip, ConfigError, Link, MemoryLevel, System
from sim.cost.collectives import collective_time
from sim.cost.roofline import Bound, cost_op, distinct_columns
from workloads.ops import Attention, Gemm, Op, OpKind, Role


def toy_chip(**kw) -> Chip:
    """4 cores, 100 TFLOP/s bf16, 1 MB L2 at 10 TB/s, 1 GB HBM at 1 TB/s, no overhead."""
    base = dict(
        name="toy",
        n_cores=4,
        peak_flops_per_s={"bf16": 100e12},
        vector_flops_per_s=10e12,
        gemm_tiles=((128, 128),),
        tile_k=64,
        sustained_clock_fraction=1.0,
        memory=(
            MemoryLevel(name="l2", capacity_bytes=1e6, bandwidth_bytes_per_s=10e12),
            MemoryLevel(name="hbm", capacity_bytes=1e9, bandwidth_bytes_per_s=1e12),
        ),
        kernel_overhead_s=0.0,
    )
    base.update(kw)
    return Chip(**base)


def system_of(chip: Chip, n: int = 1) -> System:
    link = Link(bandwidth_bytes_per_s=100e9, latency_s=1e-6)
    return System(chip=chip, n_chips=n, chips_per_node=8, intra_node=link, inter_node=link)


def gemm_op(m, n, k, dtype="bf16", groups=1) -> Op:
    flops = 2.0 * m * n * k * groups
    return Op(
        name="g", kind=OpKind.GEMM, family="mlp", dtype=dtype, flops=flops, model_flops=flops,
        bytes={Role.WEIGHT: groups * k * n * 2.0, Role.ACTIVATION: groups * m * (k + n) * 2.0},
        gemm=Gemm(m=m, n=n, k=k, groups=groups),
    )  # fmt: skip


def test_full_waves_of_full_tiles_run_at_peak():
    # 256 x 256 x 1024: 4 tiles of 128x128 on 4 cores = 1 wave; 2·256·256·1024 / 100e12 = 1.342 us
    cost = cost_op(gemm_op(256, 256, 1024), system_of(toy_chip()))
    assert cost.compute_s == pytest.approx(2 * 256 * 256 * 1024 / 100e12)
    assert cost.tile_efficiency == 1.0


def test_one_extra_tile_costs_a_whole_wave():
    # 384 x 256: 6 tiles on 4 cores -> 2 waves, each a 128x128x1024 tile per core
    cost = cost_op(gemm_op(384, 256, 1024), system_of(toy_chip()))
    assert cost.compute_s == pytest.approx(2 * 2 * 128 * 128 * 1024 / 25e12)


def test_stream_k_deals_the_partial_last_wave_out_over_the_cores():
    # the same 6 tiles x 16 K granules = 96 granules on 4 cores: 24 each instead of 2 waves of 16;
    # the fix-up writes and reads one fp32 tile per core
    chip = toy_chip(stream_k=True)
    cost = cost_op(gemm_op(384, 256, 1024), system_of(chip))
    assert cost.compute_s == pytest.approx(24 * 2 * 128 * 128 * 64 / 25e12)
    wave = cost_op(gemm_op(384, 256, 1024), system_of(toy_chip()))
    assert cost.time_s < wave.time_s
    fixup = 2 * 4 * 128 * 128 * 4.0
    assert cost.memory_s["l2"] == pytest.approx(wave.memory_s["l2"] + fixup / 10e12)
    # full waves and single waves keep the data-parallel schedule
    full = gemm_op(256, 512, 1024)
    assert cost_op(full, system_of(chip)).time_s == cost_op(full, system_of(toy_chip())).time_s


def test_padding_m_to_the_tile_loses_flops():
    # M = 129 pads to 256 rows: same time as M = 256, half the useful FLOPs
    c129 = cost_op(gemm_op(129, 256, 1024), system_of(toy_chip()))
    c256 = cost_op(gemm_op(256, 256, 1024), system_of(toy_chip()))
    assert c129.compute_s == pytest.approx(c256.compute_s)
    assert c129.tile_efficiency == pytest.approx(129 / 256)


def test_a_library_with_tiles_in_steps_cuts_the_partial_row_of_tiles():
    # tile_step 8: M = 129 in two tiles of 72 rows (144 padded rows, not 256). 2 x 2 tiles of
    # 72 x 128 on 4 cores = 1 wave of 72·128·1024 per core at 25 TFLOP/s; the side cut is M (N
    # = 256 has no partial tile)
    stepped = cost_op(gemm_op(129, 256, 1024), system_of(toy_chip(tile_step=8)))
    assert stepped.tile == (72, 128)
    assert stepped.compute_s == pytest.approx(2 * 72 * 128 * 1024 / 25e12)
    assert stepped.tile_efficiency == pytest.approx(129 / 144)
    # the cut is on the side that saves more: N = 200 (one tile of 200 -> 200) over M = 256
    wide = cost_op(gemm_op(256, 200, 1024), system_of(toy_chip(tile_step=8)))
    assert wide.tile == (128, 104) and wide.tile_efficiency == pytest.approx(200 / 208)
    # a shape the listed tiles already fit is not changed
    fit = gemm_op(256, 256, 1024)
    assert cost_op(fit, system_of(toy_chip(tile_step=8))) == cost_op(fit, system_of(toy_chip()))
    with pytest.raises(ConfigError, match="compute.tile_step"):
        toy_chip(tile_step=-8)


def test_a_stepped_library_cuts_tiles_that_fill_the_last_wave():
    # AMD's max-achievable-FLOPs shape, 4096 x 3648 on an MI300X's 304 CUs: 256 x 256 tiles make
    # 16 x 15 = 240 (a fifth of the CUs idle); hipBLASLt's tiles in steps of 16 deal N over 19
    # tiles of 192: 16 x 19 = 304, one full wave, no padding
    from hardware import load_system
    from sim.cost.roofline import cost_ops

    op = gemm_op(4096, 3648, 32896, dtype="fp8")
    (cost,) = cost_ops([op], load_system("mi300x", 1), steady=False)  # at the burst clock
    assert cost.tile == (256, 192)
    assert cost.tile_efficiency == pytest.approx(1.0)
    (unstepped,) = cost_ops([op], load_system("mi300x", 1, ["compute.tile_step=0"]), steady=False)
    assert unstepped.tile_efficiency < 0.96
    assert cost.compute_s < 0.85 * unstepped.compute_s


def test_gemv_streams_its_weights_exactly_once():
    # M = 1, 8192 x 8192 bf16 weights = 134 MB >> L2: weights read once, time = bytes / bw
    op = gemm_op(1, 8192, 8192)
    cost = cost_op(op, system_of(toy_chip()))
    weights = 8192 * 8192 * 2
    assert cost.main_bytes == pytest.approx(weights + (8192 + 8192) * 2)
    assert cost.bound == Bound.MEMORY and cost.binding_level == "hbm"
    assert cost.time_s == pytest.approx(cost.main_bytes / 1e12)


def test_large_gemm_rereads_operands_that_do_not_fit_on_chip():
    # 4096^3: A and B are 33.5 MB each, L2 1 MB: a wave of 2x2 tiles (256 x 256) shares panels,
    # so A is read 4096/256 = 16 times and B 16 times: 2·16·33.5 MB + C
    op = gemm_op(4096, 4096, 4096)
    cost = cost_op(op, system_of(toy_chip()))
    size = 4096 * 4096 * 2
    assert cost.main_bytes == pytest.approx(16 * size + 16 * size + size)


def test_operand_that_fits_in_l2_is_read_once():
    # B (weights) 256x256 bf16 = 131 kB fits in half the 1 MB L2: A + B + C once
    op = gemm_op(65536, 256, 256)
    cost = cost_op(op, system_of(toy_chip()))
    assert cost.main_bytes == pytest.approx(65536 * 256 * 2 * 2 + 256 * 256 * 2)


def test_flash_attention_never_moves_the_score_matrix():
    # 8 heads x 4096² scores would be 268 MB in bf16; the kernel moves Q, K, V, O only
    spec = Attention(batch=1, n_q_heads=8, n_kv_heads=8, q_len=4096, kv_len=4096, qk_dim=128,
                     v_dim=128, causal=False, act_bytes=2, kv_bytes_per_token=512)  # fmt: skip
    flops = 2.0 * 8 * 4096 * 4096 * 256
    qo = 2 * 8 * 4096 * 128 * 2
    op = Op(name="attn", kind=OpKind.ATTENTION, family="attention", dtype="bf16", flops=flops,
            model_flops=flops, bytes={Role.ACTIVATION: qo, Role.KV: 8 * 4096 * 512},
            attention=spec)  # fmt: skip
    chip = toy_chip(memory=(
        MemoryLevel(name="l2", capacity_bytes=64e6, bandwidth_bytes_per_s=10e12),
        MemoryLevel(name="hbm", capacity_bytes=1e9, bandwidth_bytes_per_s=1e12),
    ))  # fmt: skip
    cost = cost_op(op, system_of(chip))
    assert cost.main_bytes == pytest.approx(qo + 8 * 4096 * 512)
    assert cost.bound == Bound.COMPUTE


def test_kernel_overhead_binds_tiny_ops():
    chip = toy_chip(kernel_overhead_s=5e-6)
    cost = cost_op(gemm_op(1, 64, 64), system_of(chip))
    assert cost.bound == Bound.OVERHEAD
    assert cost.time_s >= 5e-6


def test_ring_all_reduce_matches_the_alpha_beta_formula():
    chip = toy_chip()
    link = Link(bandwidth_bytes_per_s=100e9, latency_s=0.0)
    system = System(chip=chip, n_chips=8, chips_per_node=8, intra_node=link, inter_node=link)
    # 2(p-1)/p · S / b = 2·7/8 · 1 GB / 100 GB/s = 17.5 ms (ring beats tree's 2·S/b = 20 ms)
    assert collective_time("all_reduce", 1e9, 8, system) == pytest.approx(17.5e-3)
    assert collective_time("all_gather", 1e9, 8, system) == pytest.approx(8.75e-3)
    assert collective_time("all_reduce", 1e9, 1, system) == 0.0


def test_small_all_reduce_across_nodes_is_latency_bound_and_takes_the_tree():
    chip = toy_chip()
    link = Link(bandwidth_bytes_per_s=100e9, latency_s=2e-6)
    system = System(chip=chip, n_chips=8, chips_per_node=1, intra_node=link, inter_node=link)
    # 16 kB over 8 nodes: tree = 2·16e3/100e9 + 2·3·2 us = 12.32 us; ring = 0.28 us + 28 us
    assert collective_time("all_reduce", 16e3, 8, system) == pytest.approx(12.32e-6)
    # inside one node NCCL's tree is a chain: the ring it is
    node = System(chip=chip, n_chips=8, chips_per_node=8, intra_node=link, inter_node=link)
    assert collective_time("all_reduce", 16e3, 8, node) == pytest.approx(0.28e-6 + 28e-6)


def test_all_reduce_across_nodes_is_hierarchical_and_slower():
    chip = toy_chip()
    fast = Link(bandwidth_bytes_per_s=400e9, latency_s=1e-6)
    slow = Link(bandwidth_bytes_per_s=50e9, latency_s=5e-6)
    system = System(chip=chip, n_chips=16, chips_per_node=8, intra_node=fast, inter_node=slow)
    inside = collective_time("all_reduce", 1e9, 8, system)
    across = collective_time("all_reduce", 1e9, 16, system)
    assert across > inside


dims = st.integers(min_value=1, max_value=20000)


@settings(max_examples=60, deadline=None)
@given(m=dims, n=dims, k=dims, scale=st.floats(min_value=1.01, max_value=10))
def test_more_bandwidth_or_flops_never_makes_an_op_slower(m, n, k, scale):
    op = gemm_op(m, n, k)
    base = toy_chip()
    t0 = cost_op(op, system_of(base)).time_s
    hbm = base.memory[1]
    more_bw = toy_chip(memory=(base.memory[0], MemoryLevel(
        name="hbm", capacity_bytes=hbm.capacity_bytes,
        bandwidth_bytes_per_s=hbm.bandwidth_bytes_per_s * scale)))  # fmt: skip
    more_flops = toy_chip(peak_flops_per_s={"bf16": 100e12 * scale})
    assert cost_op(op, system_of(more_bw)).time_s <= t0 * (1 + 1e-12)
    assert cost_op(op, system_of(more_flops)).time_s <= t0 * (1 + 1e-12)


@settings(max_examples=60, deadline=None)
@given(m=dims, n=dims, k=dims, overhead=st.floats(min_value=0, max_value=1e-5))
def test_op_time_is_at_least_each_roofline_bound(m, n, k, overhead):
    chip = toy_chip(kernel_overhead_s=overhead)
    op = gemm_op(m, n, k)
    cost = cost_op(op, system_of(chip))
    minimum_bytes = op.total_bytes
    assert cost.time_s >= op.flops / 100e12 * (1 - 1e-12)
    assert cost.time_s >= minimum_bytes / 1e12 * (1 - 1e-12)
    assert cost.time_s >= overhead
    assert math.isfinite(cost.time_s)


def _fa2_forward(chip: str, kernel: str, cap: str | None = None) -> float:
    """TFLOP/s of a non-causal attention forward (head dim 128, seq 8192, batch 2, 16 heads):
    a short burst, or in the steady state under a power cap."""
    from hardware import load_system
    from sim.cost.roofline import cost_ops
    from workloads.build import Builder

    system = load_system(chip, 1, [] if cap is None else [f"power.cap={cap}"])
    spec = Attention(batch=2, n_q_heads=16, n_kv_heads=16, q_len=8192, kv_len=8192, qk_dim=128,
                     v_dim=128, causal=False, act_bytes=2.0, kv_bytes_per_token=512.0)  # fmt: skip
    op = Builder("bf16", 2.0, 2.0, kernel).attention("attention", spec)
    assert op.attention.kernel == kernel
    return op.flops / cost_ops([op], system, steady=cap is not None)[0].time_s / 1e12


def test_flash_attention_2_runs_on_hoppers_slower_warp_level_mma_path():
    # FA2 on H100 reproduces the microbenchmark its mma_sync_fraction was fitted to (327.9
    # TFLOP/s, Azure ND H100 v5) and is far below the native (FA3-class) kernel; on A100 the
    # warp-level path is the native one, so the kernel choice changes nothing
    fa2, native = _fa2_forward("h100-sxm", "fa2"), _fa2_forward("h100-sxm", "native")
    assert fa2 == pytest.approx(327.9, rel=0.02)
    assert native > 1.5 * fa2
    assert _fa2_forward("a100-sxm-80gb", "fa2") == _fa2_forward("a100-sxm-80gb", "native")
    # under a tight power cap the clock falls below what the warp-level path allows
    assert _fa2_forward("h100-sxm", "fa2", cap="200W") < 0.6 * fa2


def test_mmha_decode_reads_a_gqa_groups_kv_once_per_query_head():
    """The MMHA decode kernel (TensorRT-LLM before XQA, vLLM PagedAttention) runs a thread
    block per query head: with 8 query heads per KV head the K/V crosses L2 eight times (once
    from HBM when the heads in flight fit in L2), where flash-decoding packs the group into one
    tile and reads it once. For MHA (a group of 1) the two move the same bytes."""
    from hardware import load_system
    from workloads.build import Builder

    system = load_system("h100-sxm", 1)

    def cost(kernel: str, n_kv: int):
        spec = Attention(batch=64, n_q_heads=16, n_kv_heads=n_kv, q_len=1, kv_len=2048,
                         qk_dim=128, v_dim=128, causal=True, act_bytes=2.0,
                         kv_bytes_per_token=512.0)  # fmt: skip
        return cost_op(Builder("bf16", 2.0, 2.0, kernel).attention("attention", spec), system)

    native, mmha = cost("native", 2), cost("mmha", 2)
    kv = 64 * 2 * 2048 * 512.0
    assert mmha.main_bytes == pytest.approx(native.main_bytes)
    assert mmha.memory_s["l2"] > 7 * native.memory_s["l2"] * kv / (kv + 64 * 16 * 256 * 2)
    assert mmha.time_s > 2 * native.time_s
    assert cost("mmha", 16).main_bytes == pytest.approx(cost("native", 16).main_bytes)
    # a prefill keeps the native fused kernel: mmha is a decode kernel only
    spec = Attention(batch=1, n_q_heads=16, n_kv_heads=2, q_len=512, kv_len=512, qk_dim=128,
                     v_dim=128, causal=True, act_bytes=2.0, kv_bytes_per_token=512.0)  # fmt: skip
    assert Builder("bf16", 2.0, 2.0, "mmha").attention("a", spec).attention.kernel == "native"


def _attention_backward_rate(chip: str, seq: int, head_dim: int, kernel: str = "native") -> float:
    """TFLOP/s of the fused attention backward (main kernel + pre/post passes) in the flash
    papers' setup: batch x seq = 16k tokens, heads x head_dim = 2048, no causal mask."""
    from hardware import load_system
    from workloads.build import Builder
    from workloads.training import attention_backward

    system = load_system(chip, 1)
    heads = 2048 // head_dim
    spec = Attention(batch=16384 // seq, n_q_heads=heads, n_kv_heads=heads, q_len=seq,
                     kv_len=seq, qk_dim=head_dim, v_dim=head_dim, causal=False, act_bytes=2.0,
                     kv_bytes_per_token=4.0 * head_dim)  # fmt: skip
    ops = attention_backward(Builder("bf16", 2.0, 2.0, kernel).attention("attention", spec), 2.0)
    assert [o.name for o in ops] == ["attention.bwd", "attention.bwd_passes"]
    return ops[0].flops / sum(cost_op(o, system).time_s for o in ops) / 1e12


def _flash_forward_rate(chip: str, seq: int, causal: bool, kernel: str = "fa2") -> float:
    """TFLOP/s of a flash attention forward in the flash papers' setup (batch x seq = 16k,
    16 heads of 128), FLOPs halved under a causal mask."""
    from hardware import load_system
    from workloads.build import Builder

    spec = Attention(batch=16384 // seq, n_q_heads=16, n_kv_heads=16, q_len=seq, kv_len=seq,
                     qk_dim=128, v_dim=128, causal=causal, act_bytes=2.0,
                     kv_bytes_per_token=512.0)  # fmt: skip
    op = Builder("bf16", 2.0, 2.0, kernel).attention("attention", spec)
    return op.flops / cost_op(op, load_system(chip, 1)).time_s / 1e12


def test_a_flash_kernel_waits_at_each_query_blocks_edges_most_at_short_sequences():
    # FlashAttention-2 (one program per query block) waits for its Q and first K/V tile and
    # stores its O tile once per block: at seq 512 a block's main loop is 32x shorter than at
    # 16k, so the rate falls there and not at 16k; FlashAttention-3 (native on Hopper: warp-
    # specialized and persistent) waits only for its store, so it loses less
    from hardware import load_system
    from sim.cost.chips import ChipArrays
    from sim.cost.roofline import _flash_edges

    h100 = load_system("h100-sxm", 1)
    chips = ChipArrays.of(h100)
    # a forward of 64 heads x 512 query rows (4 blocks of 128 each), head dim 128, bf16
    no, one = np.array([[False]]), np.array([[1.0]])
    args = (no, no, no, np.array([[64.0]]), np.array([[512.0]]), np.array([[256.0]]),
            np.array([[2.0]]), one, np.array([[128.0]]), np.array([[128.0]]), np.array([[2.0]]),
            np.array([[512.0]]))  # fmt: skip
    fa2, fa3 = (float(np.ravel(_flash_edges(chips, [k], *args))[0]) for k in ("fa2", "native"))
    none = float(np.ravel(_flash_edges(chips, ["mmha"], *args))[0])
    assert fa2 > 2 * fa3 > 0.0 and none == 0.0
    # the edges' share of a block's time: large at 512 keys, small at 16k
    fa2_512, fa2_16k = (
        _flash_forward_rate("h100-sxm", 512, False),
        _flash_forward_rate("h100-sxm", 16384, False),
    )
    assert fa2_512 < 0.9 * fa2_16k
    # a chip whose compiler pipelines its scratchpad (TPU) waits at no block's edge
    tpu = ChipArrays.of(load_system("tpu-v5e", 1))
    assert not np.any(_flash_edges(tpu, ["fa2"], *args))


def _decode_attention_s(system: System, kernel: str, batch: int, context: int) -> float:
    """Seconds of one decode step's attention, 32 query and KV heads of 128, bf16."""
    from workloads.build import Builder

    spec = Attention(batch=batch, n_q_heads=32, n_kv_heads=32, q_len=1, kv_len=context,
                     qk_dim=128, v_dim=128, causal=False, act_bytes=2.0,
                     kv_bytes_per_token=512.0)  # fmt: skip
    return cost_op(Builder("bf16", 2.0, 2.0, kernel).attention("attention", spec), system).time_s


def test_a_memory_bound_flash_decode_stalls_at_each_waves_edges(monkeypatch):
    # FlashAttention-2 keeps one K/V block in flight per CTA, so a memory-bound wave stalls for
    # main memory's round trips at its edges: the same bytes over 4x the CTAs (batch 128 at 512
    # cached tokens against batch 32 at 2048) take longer, by the extra waves' stalls at the
    # chip's measured latency (the H100's calibrated 0.81 us); FlashAttention-3 (warp-
    # specialized) and a chip with no measured latency do not; nor does a compute-bound prefill
    from hardware import load_system
    from sim.cost import roofline

    h100 = load_system("h100-sxm", 1)
    latency = h100.chip.memory[-1].latency_s
    assert latency > 0

    def gap(system, kernel):  # batch 128 at 512 tokens less batch 32 at 2048: the same bytes
        return _decode_attention_s(system, kernel, 128, 512) - _decode_attention_s(
            system, kernel, 32, 2048
        )

    waves = (128 - 32) * 32 / h100.chip.n_cores  # the short run's extra CTAs, in waves
    stall = waves * roofline._FLASH_MEMORY_EDGE_ROUND_TRIPS * latency
    assert gap(h100, "fa2") == pytest.approx(stall, rel=0.1)
    assert abs(gap(h100, "native")) < 0.2 * stall
    assert abs(gap(load_system("h100-sxm", 1, ["hbm.latency=0"]), "fa2")) < 0.2 * stall
    # a compute-bound forward (8192 tokens, as the FA2 rate above) is not charged the stall
    charged = _fa2_forward("h100-sxm", "fa2")
    monkeypatch.setattr(roofline, "_FLASH_MEMORY_EDGE_ROUND_TRIPS", 0.0)
    assert _fa2_forward("h100-sxm", "fa2") == charged
    assert gap(h100, "fa2") < 0.2 * stall


def test_a_backward_keeps_its_share_of_its_own_kernels_forward_rate():
    # FlashAttention-2 on H100 (Shah et al. 2024, FA3 paper charts): 370 TFLOP/s forward and
    # 322 backward at head dim 128, seq 16k, the same 0.87 as FA3's 648 and 561. The backward
    # was capped by the smaller of the mma.sync and backward rates, and so ran faster than its
    # own forward (363 against 328); it now loses the backward's share of the warp-level rate
    from hardware import load_chip

    h100 = load_chip("h100-sxm")
    share = h100.attention_rate("bf16", "native", True) / h100.attention_rate("bf16", "native")
    assert share < 0.9
    fa2_bwd, fa2 = h100.attention_rate("bf16", "fa2", True), h100.attention_rate("bf16", "fa2")
    assert fa2_bwd == pytest.approx(share * fa2)
    fwd = _flash_forward_rate("h100-sxm", 16384, causal=False)
    bwd = _attention_backward_rate("h100-sxm", 16384, 128, kernel="fa2")
    assert bwd < 0.97 * fwd
    assert bwd == pytest.approx(322, rel=0.1)
    # a chip whose FA2 is its native path (A100: no mma_sync_fraction) keeps its fitted backward
    assert _attention_backward_rate("a100-sxm-80gb", 16384, 128, kernel="fa2") == pytest.approx(
        _attention_backward_rate("a100-sxm-80gb", 16384, 128)
    )


def test_a_causal_block_computes_its_diagonal_tiles_whole():
    # FA2 on H100 (FA3 paper): causal over non-causal TFLOP/s (FLOPs halved) is 0.62 at seq
    # 512, 0.74 at 1k, 0.82 at 2k, 0.91 at 16k. The diagonal key tiles computed whole (about
    # 64 keys a row in 128-row query blocks) are part of that loss, fading as the sequence grows
    ratio = {s: _flash_forward_rate("h100-sxm", s, True) / _flash_forward_rate("h100-sxm", s, False)
             for s in (512, 2048, 16384)}  # fmt: skip
    assert ratio[512] < 0.8
    assert ratio[512] < ratio[2048] < ratio[16384]
    assert ratio[16384] > 0.85


def test_attention_backward_reproduces_its_fit_and_the_measured_fall_off_at_short_sequences():
    # attention_bwd_fraction is fitted to one bar (FA3, H100, head dim 128, seq 16k: 561
    # TFLOP/s); the fp32 dQ accumulator's pre/post passes, not a fit, give the fall-off at short
    # sequences the paper measures (501 at 2k, 316 at 512) and the head-dim-64 bar (474)
    assert _attention_backward_rate("h100-sxm", 16384, 128) == pytest.approx(561, rel=0.01)
    assert _attention_backward_rate("h100-sxm", 2048, 128) == pytest.approx(501, rel=0.03)
    assert _attention_backward_rate("h100-sxm", 16384, 64) == pytest.approx(474, rel=0.06)
    assert _attention_backward_rate("h100-sxm", 512, 128) < 0.7 * 561
    # without a measured backward rate the backward runs at the forward's matmul rate
    from dataclasses import replace

    from hardware import load_system

    h100 = load_system("h100-sxm", 1).chip
    assert h100.attention_rate("bf16", backward=True) < h100.attention_rate("bf16")
    bare = replace(h100, attention_bwd_fraction=None)
    assert bare.attention_rate("bf16", backward=True) == bare.attention_rate("bf16")


def test_a_chip_with_twice_the_compute_and_on_chip_bandwidth_runs_a_large_gemm_1_7x_faster():
    # issue 17's what-if check on a real preset: matrix and vector peaks, the exp rate, the
    # SRAM and L2 bandwidths and the power (TDP and idle) all doubled, in the steady state
    from hardware import load_chip, load_system

    chip = load_chip("h100-sxm")
    doubled = [f"compute.peak.{d}={2 * r!r}" for d, r in chip.peak_flops_per_s.items()]
    doubled += [f"compute.peak.vector={2 * chip.vector_flops_per_s!r}",
                f"compute.exp_rate={2 * chip.exp_per_s!r}"]  # fmt: skip
    doubled += [
        f"{lvl.name}.bandwidth={2 * lvl.bandwidth_bytes_per_s!r}" for lvl in chip.memory[:-1]
    ]
    doubled += [f"power.tdp={2 * chip.tdp_watts!r}", f"power.idle={2 * chip.idle_watts!r}"]
    op = gemm_op(8192, 8192, 8192)
    base = cost_op(op, load_system("h100-sxm"))
    fast = cost_op(op, load_system("h100-sxm", 1, doubled))
    # NB: the preset's 8192^3 GEMM sits just on its L2 roof (the fitted L2 fraction, issue 17)
    assert base.time_s / fast.time_s >= 1.7


def test_a_causal_wave_lasts_as_long_as_its_last_query_block():
    """Causal flash attention: the last query block sees every key. When the blocks fit in one
    wave the kernel takes that block's time (about the non-causal time), not the average (half
    of it, and the masked half of the diagonal tiles); over many waves the average holds."""
    from hardware import load_system
    from sim.cost.simulate import cost_ops
    from workloads.build import Builder

    system = load_system("h100-sxm", 1)

    def compute(batch: int, causal: bool, heads: int = 16, seq: int = 4096) -> float:
        spec = Attention(batch=batch, n_q_heads=heads, n_kv_heads=heads, q_len=seq, kv_len=seq,
                         qk_dim=128, v_dim=128, causal=causal, act_bytes=2.0,
                         kv_bytes_per_token=512.0)  # fmt: skip
        op = Builder("bf16", 2.0, 2.0).attention("attention", spec)
        return cost_ops([op], system)[0].compute_s

    # 8 heads x 4096 rows in 256-row blocks: 128 blocks, one wave on 132 SMs
    assert compute(1, True, heads=8) == pytest.approx(compute(1, False, heads=8), rel=0.01)
    # (half, and the diagonal tiles computed whole: 127 / 2 keys a row more in FlashAttention's
    # 128-row query blocks)
    assert compute(64, True) == pytest.approx((0.5 + 63.5 / 4096) * compute(64, False), rel=0.02)
    # 32 heads x 512 rows: 64 blocks, the kv split in two over idle cores; the last block's
    # pieces are still the longest
    assert compute(1, True, heads=32, seq=512) == pytest.approx(
        compute(1, False, heads=32, seq=512), rel=0.01
    )


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 6),
    n=st.integers(1, 400),
    values=st.integers(1, 2**20),
    seed=st.integers(0, 2**32 - 1),
)
def test_distinct_columns_partitions_as_numpy_unique_does(rows, n, values, seed):
    """The fast column dedup that costs a decode grid's distinct shapes once: the same distinct
    columns as np.unique(axis=1), and every column mapped back to its equal."""
    rng = np.random.default_rng(seed)
    columns = rng.integers(0, values, (rows, n)).astype(float) * 0.5
    first, inverse = distinct_columns(columns)
    assert np.array_equal(columns[:, first][:, inverse], columns)
    assert sorted(first.tolist()) == sorted(
        np.unique(columns, axis=1, return_index=True)[1].tolist()
    )


def _flash_rate(kernel: str, seq: int, causal: bool) -> float:
    """FLOP/s of one forward attention of batch 1, 32 heads of 128 on an H100, as the
    microbenchmark runs it (tests of the causal tail below)."""
    from hardware import load_system
    from sim.cost.roofline import cost_ops
    from workloads.build import Builder

    spec = Attention(batch=1, n_q_heads=32, n_kv_heads=32, q_len=seq, kv_len=seq, qk_dim=128,
                     v_dim=128, causal=causal, act_bytes=2.0, kv_bytes_per_token=512.0,
                     kernel=kernel)  # fmt: skip
    op = Builder("bf16", 2.0, 2.0).attention("attention", spec)
    return op.flops / cost_ops([op], load_system("h100-sxm"))[0].time_s


def test_flash_attention_2_pays_a_causal_tail_that_long_sequences_hide():
    """FlashAttention-2 launches its query blocks in order, so under a causal mask each head's
    longest blocks start last: at 2048 tokens (512 blocks on 132 SMs) the causal rate is about
    0.6 of the full one (0.61 measured on H100, benchmarks/microbench/results/h100-sxm-2026-11-23/
    attention.csv), at 16384 it nearly evens out (0.98 measured). A kernel that starts its
    longest blocks first (native) keeps more of its rate at 2048."""
    short = _flash_rate("fa2", 2048, True) / _flash_rate("fa2", 2048, False)
    long = _flash_rate("fa2", 16384, True) / _flash_rate("fa2", 16384, False)
    assert 0.5 < short < 0.75
    assert long > 0.9
    native = _flash_rate("native", 2048, True) / _flash_rate("native", 2048, False)
    assert native > short + 0.15


@settings(max_examples=60, deadline=None)
@given(
    batch=st.integers(1, 16),
    heads=st.sampled_from([8, 32, 40, 64]),
    q_len=st.integers(1, 8192),
    extra=st.integers(0, 8192),
)
def test_launching_in_order_never_makes_causal_attention_faster(batch, heads, q_len, extra):
    """On an A100, where FlashAttention-2 is the native kernel class (the same rate), the fa2
    kernel differs only in launching its causal blocks in order: it may take longer than the
    longest-first schedule, never less (chunked prefill's q < kv and decode included)."""
    from hardware import load_system
    from sim.cost.roofline import cost_ops
    from workloads.build import Builder

    system = load_system("a100-sxm-80gb")

    def time(kernel: str, causal: bool) -> float:
        spec = Attention(batch=batch, n_q_heads=heads, n_kv_heads=heads, q_len=q_len,
                         kv_len=q_len + extra, qk_dim=128, v_dim=128, causal=causal,
                         act_bytes=2.0, kv_bytes_per_token=512.0, kernel=kernel)  # fmt: skip
        op = Builder("bf16", 2.0, 2.0).attention("attention", spec)
        return cost_ops([op], system)[0].time_s

    assert time("fa2", False) == pytest.approx(time("native", False), rel=1e-12)
    assert time("fa2", True) >= time("native", True) * (1 - 1e-12)


def test_a_scratchpad_blocks_a_gemm_for_its_capacity():
    """Where the level before main memory is software-managed (TPU v5e's VMEM), the compiler
    blocks the output for that level's capacity, not for one wave of tiles sharing a cache:
    XLA's bf16 8192^3 matmul is compute-bound on a v5e (it measures 181.8 TFLOP/s, row
    jax-pallas-tpu-v5e-xla-matmul-bf16-8192), and a larger scratchpad never takes longer to
    move the GEMM's bytes from main memory. A cache (the H100's L2) keeps the wave rule: its capacity does not set
    the panels."""
    from hardware import load_system

    op = gemm_op(8192, 8192, 8192)
    tpu = load_system("tpu-v5e", 1).chip
    assert tpu.reuse_is_scratchpad and not load_system("h100-sxm", 1).chip.reuse_is_scratchpad
    cost = cost_op(op, load_system("tpu-v5e", 1))
    assert cost.bound == Bound.COMPUTE
    traffic = [cost_op(op, load_system("tpu-v5e", 1, [f"sram.capacity={mib}MiB"])).memory_s["hbm"]
               for mib in (4, 16, 64, 128, 512)]  # fmt: skip
    assert all(a >= b for a, b in zip(traffic, traffic[1:], strict=False)), traffic
    assert traffic[0] > 2 * traffic[-1]
    h100 = [cost_op(op, load_system("h100-sxm", 1, [f"l2.capacity={mib}MiB"])).memory_s["hbm"]
            for mib in (50, 100)]  # fmt: skip
    assert h100[0] == pytest.approx(h100[1])


def test_routed_tiles_are_the_binomial_expectation_of_whole_tiles():
    from sim.cost.roofline import _routed_tiles

    def exact(tokens, p, t):  # E[ceil(n / t) | n > 0] summed over the binomial's pmf
        def log_pmf(n):
            log_comb = math.lgamma(tokens + 1) - math.lgamma(n + 1) - math.lgamma(tokens - n + 1)
            return log_comb + n * math.log(p) + (tokens - n) * math.log1p(-p)

        pmf = [math.exp(log_pmf(n)) for n in range(tokens + 1)]
        return sum(w * math.ceil(n / t) for n, w in enumerate(pmf)) / (1 - pmf[0])

    # summed (spread under a tile), the closed form (spread of a tile or more: 20000 x 0.5
    # has sd 71 over 16-row tiles), and no more tokens than a tile (exactly one)
    cases = [(20, 0.3, 4), (64, 1 / 16, 8), (300, 0.25, 64), (2048, 0.25, 128), (1, 0.1, 64),
             (20000, 0.5, 16), (40, 0.5, 64)]  # fmt: skip
    got = _routed_tiles(*(np.array([c[i] for c in cases], dtype=float) for i in range(3)))
    assert got == pytest.approx([exact(*c) for c in cases], rel=1e-9)
    # far more rows than a tile: the mean's tiles plus about half a tile of padding
    spread = _routed_tiles(np.array([4096.0 * 64]), np.array([1 / 8]), np.array([128.0]))
    assert 256 + 0.3 < spread[0] < 256 + 0.7


def test_routed_expert_gemm_pads_each_experts_rows_to_whole_tiles():
    # 8 experts of 128 rows on average (1024 tokens, top-2 of 8): most experts get 113..143
    # rows, so a 128-row tile covers about half of them in one tile and the rest in two
    exact = gemm_op(128, 4096, 4096, groups=8)
    routed = replace(exact, gemm=replace(exact.gemm, routed_tokens=512.0, routed_p=0.25))
    system = system_of(toy_chip())
    a, b = cost_op(exact, system), cost_op(routed, system)
    assert b.compute_s > 1.3 * a.compute_s
    assert b.tile_efficiency < 0.8 * a.tile_efficiency


def test_a_routed_expert_gemm_takes_a_block_as_short_as_its_rows_on_the_tensor_cores():
    # Mixtral decode at batch 16 (top-2 of 8: 4 rows an expert on average) on an H100: a fused
    # MoE kernel runs 16-row blocks on the tensor cores (Triton's BLOCK_SIZE_M, Marlin's 16-row
    # steps), not cuBLAS's 64-row tiles nor the vector-unit GEMV path
    from hardware import load_system
    from sim.cost.simulate import simulate
    from workloads.llm import Decode
    from workloads.loader import load_model

    w = Decode(model=load_model("mixtral-8x7b"), batch=16, context=128, tp=2)
    costs = [c for c in simulate(w, load_system("h100-sxm", 2)).costs
             if c.op.name.endswith("experts_up")]  # fmt: skip
    assert costs and all(c.tile is not None and c.tile[0] == 16 for c in costs)


def _sink_attention(chip: str, q_len: int, kv_len: int, runtime: str = "vllm-0.11", batch: int = 1):
    """gpt-oss-20b's full-attention op (64 query heads of 64, 8 KV heads) under ``runtime``,
    costed on ``chip``."""
    from hardware import load_system
    from workloads import Prefill, load_model
    from workloads.runtime import load_runtime

    model = load_model("gpt-oss-20b")
    wl = Prefill(model=model, batch=batch, prompt=q_len, runtime=load_runtime(runtime))
    op = next(o for o in wl.lower().ops if o.name == "attention")
    op = replace(op, attention=replace(op.attention, q_len=q_len, kv_len=kv_len))
    return op, cost_op(op, load_system(chip, 1))


def test_vllm_runs_attention_with_sinks_on_its_triton_kernel_where_fa3_cannot():
    """vLLM sends a model with attention sinks (gpt-oss) to its Triton unified attention on
    chips other than Hopper and Blackwell (FlashAttention-2 takes no sinks): there a program
    packs 2 tokens x 8 query heads into 16 rows and streams the KV head's keys once per 2 tokens
    through L2 in tiles of 32, so a long prefill is L2-bound and several times slower than the
    flash kernel; Hopper keeps FlashAttention-3, and a runtime without the rule, or a model
    without sinks, keeps the native kernel everywhere."""
    op, a100 = _sink_attention("a100-sxm-80gb", 2048, 16384)
    assert op.attention.sinks_kernel == "triton" and op.attention.sinks_native == ("9.0", "10.0")
    assert a100.tile == (16, 32)
    # L2 traffic: Q and O once, each 2-token block reading its keys (the causal span up to the
    # block's last token) once for its 8 heads
    keys = 16384 - 2048 + (2048 + 2) / 2
    kv = 8 * keys * 2 * 64 * 2.0
    q_o = 2048 * 64 * 2 * 64 * 2.0
    assert a100.memory_s["l2"] > 0
    reuse = q_o + kv * 2048 / 2
    _, native = _sink_attention("a100-sxm-80gb", 2048, 16384, runtime="sglang-0.4")
    assert native.tile[1] > 32
    assert a100.time_s > 2 * native.time_s
    assert a100.binding_level == "l2"
    # on an L2 at the A100's 4.4 TB/s achievable (7.22 TB/s x 0.61), the traffic takes at least
    assert a100.time_s >= reuse / (7.22e12 * 0.61)
    _, h100 = _sink_attention("h100-sxm", 2048, 16384)
    assert h100.tile[1] > 32  # FlashAttention-3 with sinks
    from workloads import Prefill, load_model
    from workloads.runtime import load_runtime

    dense = Prefill(model=load_model("llama-3-8b"), batch=1, prompt=512,
                    runtime=load_runtime("vllm-0.11"))  # fmt: skip
    assert all(not o.attention.sinks_kernel for o in dense.lower().ops if o.attention)


def test_triton_decode_splits_a_small_batch_over_sixteen_segments():
    """A decode-only call of at most 128 programs runs vLLM's 3D Triton kernel: each sequence's
    keys split over 16 segments (more parallel than one program per KV head), a sliding
    window's masked tiles computed too: its freed blocks read as the null block, so the work
    and the L2 traffic are the whole context's and only the window comes from HBM. In a step
    with prompt chunks the decode rows ride the 2D kernel (``Attention.mixed``)."""
    from hardware import load_system
    from workloads.build import Builder

    system = load_system("a100-sxm-80gb", 1)

    def cost(window: int, batch: int = 4, mixed: bool = False):
        spec = Attention(batch=batch, n_q_heads=64, n_kv_heads=8, q_len=1, kv_len=8192,
                         qk_dim=64, v_dim=64, causal=True, act_bytes=2.0,
                         kv_bytes_per_token=256.0, window=window, mixed=mixed)  # fmt: skip
        return cost_op(Builder("bf16", 2.0, 2.0, "triton").attention("attention", spec), system)

    full, windowed = cost(0), cost(128)
    assert full.tile == (16, 16)
    assert windowed.main_bytes < full.main_bytes / 10  # the window's blocks from HBM
    assert windowed.memory_s["l2"] == pytest.approx(full.memory_s["l2"], rel=0.02)
    assert windowed.compute_s == pytest.approx(full.compute_s, rel=0.02)
    # in a mixed step the 2D kernel prunes the window and runs one program per KV head
    pruned = cost(128, mixed=True)
    assert pruned.tile == (16, 32) and pruned.compute_s < windowed.compute_s / 10
    # 4 x 8 programs would fill a third of the 108 cores; 16 segments fill them all
    assert cost(0, batch=64).time_s > full.time_s


def test_the_sinks_rule_leaves_chips_without_a_compute_capability_alone():
    """The runtime's sinks kernel replaces the default only on NVIDIA parts that lack one with
    sinks: a chip without a compute capability (TPU, Gaudi, MI300X) keeps its native kernel."""
    for chip in ("mi300x", "gaudi3"):
        _, cost = _sink_attention(chip, 2048, 16384)
        assert cost.tile[1] != 32


def _routed_kernels(rows: int, n: int, tokens: float, **kernel) -> tuple[Op, Op]:
    """A routed expert GEMM of 8 experts (top-2: p = 1/4, ``rows`` an expert on average, K
    4096) on the library's kernel, and the same GEMM with the kernel fields ``kernel``."""
    base = gemm_op(rows, n, 4096, groups=8)
    library = replace(base, gemm=replace(base.gemm, routed_tokens=tokens, routed_p=0.25))
    return library, replace(library, gemm=replace(library.gemm, **kernel))


def test_a_routed_gemm_without_clusters_reads_each_experts_weights_per_tile_row():
    # Mixtral's gate/up GEMM at 224 rows an expert (batch 896, top-2 of 8) on an H100, whose
    # library kernels multicast each B tile to a 2-CTA cluster along M: a kernel without
    # clusters (Triton's fused MoE) loads the expert's weight tile once per M block from L2,
    # so it moves more L2 traffic and is never faster; A100 has no clusters, so nothing changes
    from hardware import load_system

    library, triton = _routed_kernels(224, 28672, 896.0, clusters=False)
    h100 = load_system("h100-sxm", 1)
    a, b = cost_op(library, h100), cost_op(triton, h100)
    assert b.memory_s["l2"] > 1.2 * a.memory_s["l2"]
    assert b.time_s >= a.time_s
    a100 = load_system("a100-sxm-80gb", 1)
    assert cost_op(triton, a100).time_s == pytest.approx(cost_op(library, a100).time_s)


def test_a_kernel_with_exposed_tile_edges_waits_at_each_tile_where_the_math_binds():
    # one program per tile (Triton's fused MoE): each wave waits for its
    # first K-slab and output tile at its share of L2; a compute-bound GEMM pays that per
    # wave, less of it the deeper its K; a GEMM bound by streaming its weights hides it
    from hardware import load_system

    h100 = load_system("h100-sxm", 1)

    def ratio(m: int, k: int) -> float:
        base = gemm_op(m, 4096, k)
        edged = replace(base, gemm=replace(base.gemm, tile_exposed=True))
        a, b = cost_op(base, h100), cost_op(edged, h100)
        assert b.time_s >= a.time_s
        return b.time_s / a.time_s

    shallow, deep = ratio(8192, 1024), ratio(8192, 8192)
    assert shallow > 1.05
    assert 1.0 < deep < 1.0 + (shallow - 1.0) / 3
    assert ratio(16, 8192) == pytest.approx(1.0)


def test_exposed_tile_edges_cost_the_edge_bytes_at_a_waves_share_of_l2():
    from hardware import load_system
    from sim.cost.chips import ChipArrays
    from sim.cost.roofline import _tile_edges

    h100 = load_system("h100-sxm", 1)
    chips, chip = ChipArrays.of(h100), h100.chip
    l2 = chip.memory[-2]
    tile_k = chips.structure.tile_k
    edge = tile_k * (128 * 2 + 256 * 2) + 128 * 256 * 2
    for tiles, cores in ((1000.0, chip.n_cores), (10.0, 10)):  # a partial wave: fewer share
        one = _tile_edges(chips, 128.0, 256.0, 2.0, 2.0, 2.0, tiles)
        share = l2.bandwidth_bytes_per_s * l2.achievable_fraction / cores
        assert float(np.ravel(one)[0]) == pytest.approx(edge / share)


def test_exposed_tile_edges_never_make_a_routed_gemm_faster():
    # the edges' bytes stay in the L2 stream: an expert GEMM bound by L2 or HBM is never
    # faster for waiting at its tiles, and one program per tile runs neither stream-K nor
    # split-K
    from hardware import load_system

    for chip in ("h100-sxm", "a100-sxm-80gb", "mi300x"):
        system = load_system(chip, 1)
        for rows, tokens in ((1500, 12000.0), (40, 320.0), (6, 48.0), (4000, 32000.0)):
            library, exposed = _routed_kernels(rows, 2048, tokens, clusters=False,
                                               tile_exposed=True)  # fmt: skip
            plain = replace(exposed, gemm=replace(exposed.gemm, tile_exposed=False))
            assert cost_op(exposed, system).time_s >= cost_op(plain, system).time_s * (1 - 1e-12)


def test_a_power_of_two_kernel_covers_routed_rows_with_power_of_two_blocks():
    # 40 rows an expert: a library with 8-row tile steps (cuBLASLt on Hopper) cuts a 40-row
    # block; Triton's BLOCK_SIZE_M is a power of two, so a 64-row block, more of it padding
    from hardware import load_system

    library, pow2 = _routed_kernels(40, 4096, 160.0, pow2_blocks=True)
    h100 = load_system("h100-sxm", 1)
    cut, whole = cost_op(library, h100), cost_op(pow2, h100)
    assert cut.tile is not None and cut.tile[0] == 40
    assert whole.tile is not None and whole.tile[0] == 64
    assert whole.tile_efficiency < cut.tile_efficiency
    assert whole.time_s >= cut.time_s


def test_ops_whose_every_value_is_an_array_over_points_cost_as_each_point_alone():
    # one attention op lowered over three (q_len, kv_len) points, alone in the table: a table
    # of values that are all arrays of one width (its FLOPs, in the power model) used to stack
    # to 3-D and fail to unpack
    from hardware import load_system
    from sim.cost.chips import ChipArrays
    from sim.cost.roofline import _F, cost_table
    from workloads.build import Builder

    def spec(q, kv):
        return Attention(batch=4, n_q_heads=32, n_kv_heads=8, q_len=q, kv_len=kv, qk_dim=128,
                         v_dim=128, causal=True, act_bytes=2.0, kv_bytes_per_token=512.0)  # fmt: skip

    chips = ChipArrays.of(load_system("h100-sxm", 1))
    points = ((1, 4096), (512, 512), (4096, 4096))
    q, kv = (np.array([p[i] for p in points]) for i in (0, 1))
    op = Builder("bf16", 2.0, 2.0, "fa2").attention("attention", spec(q, kv))
    table = cost_table([op], chips, overlap=False, steady=True, points=3)
    for j, (qj, kvj) in enumerate(points):
        one = Builder("bf16", 2.0, 2.0, "fa2").attention("attention", spec(qj, kvj))
        alone = cost_table([one], chips, overlap=False, steady=True)
        assert table.data[_F["time"], 0, j] == pytest.approx(alone.data[_F["time"], 0, 0])


def test_a_split_decode_call_launches_its_combine_kernel_and_a_prefill_none():
    """A decode call whose keys split over the cores merges the pieces in a second kernel
    (FlashAttention-2's splitkv combine): one more kernel's overhead than a call that fills the
    chip unsplit; a prefill pays none, and mmha's multi-block mode reduces in place."""
    from hardware import load_system
    from workloads.build import Builder

    system = load_system("h100-sxm", 1)
    k_s = system.chip.kernel_overhead_s

    def cost(batch: int, q: int = 1, kernel: str = "fa2"):
        spec = Attention(batch=batch, n_q_heads=32, n_kv_heads=8, q_len=q, kv_len=2048,
                         qk_dim=128, v_dim=128, causal=q > 1, act_bytes=2.0,
                         kv_bytes_per_token=512.0)  # fmt: skip
        return cost_op(Builder("bf16", 2.0, 2.0, kernel).attention("attention", spec), system)

    assert cost(1).overhead_s == pytest.approx(2 * k_s)  # 8 KV heads split: two kernels
    assert cost(128).overhead_s == pytest.approx(k_s)  # 1,024 units fill 132 cores: one
    assert cost(1, q=4).overhead_s == pytest.approx(2 * k_s)  # a speculative check splits too
    assert cost(1, q=256).overhead_s == pytest.approx(k_s)  # a prefill: no combine kernel
    assert cost(1, kernel="mmha").overhead_s == pytest.approx(k_s)


def _triton_expert_up(tokens: int, **flags):
    """A Qwen3-30B-shaped routed expert up-projection (128 experts, top-8, hidden 2048, 768
    wide) over ``tokens`` tokens, as vLLM's Triton fused MoE runs it (with ``flags`` changed)."""
    from workloads.build import Builder, routed

    up = routed([Builder("bf16", 2.0, 2.0).gemm("experts_up", "moe", tokens * 8 / 128, 1536,
                                                 2048, 128)], tokens, 8 / 128)[0]  # fmt: skip
    kernel = dict(clusters=False, pow2_blocks=True, tile_exposed=True, pointer_loads=True)
    return replace(up, gemm=replace(up.gemm, **(kernel | flags)))


def test_a_triton_expert_gemm_runs_power_of_two_blocks_only():
    """vLLM's and SGLang's Triton fused MoE take power-of-two blocks on both sides (tl.arange
    spans a power of two): never a 192-row or -column tile (a chip that lists no other still
    costs it); its choice does not depend on what else is costed beside it."""
    from hardware import load_system
    from sim.cost.roofline import cost_ops

    system = load_system("h100-sxm", 1)
    odd = replace(system, chip=replace(system.chip, gemm_tiles=((192, 192), (128, 256))))
    only = replace(system, chip=replace(system.chip, gemm_tiles=((192, 192),)))
    for tokens in (1536, 4096, 16384):
        triton = _triton_expert_up(tokens)
        for chip in (system, odd):
            tile = cost_op(triton, chip).tile
            assert all(side & (side - 1) == 0 for side in tile), (tokens, tile)
        assert math.isfinite(cost_op(triton, only).time_s)  # no power-of-two tile: its own
        library = _triton_expert_up(tokens, pow2_blocks=False, pointer_loads=False)
        alone = [cost_op(op, odd).time_s for op in (library, triton)]
        assert [c.time_s for c in cost_ops([library, triton], odd)] == pytest.approx(alone)


def test_a_triton_gemm_pays_its_pointer_loads_on_a_hopper_only_where_on_chip_work_binds():
    """vLLM's Triton fused MoE loads its tiles with pointer loads, not Hopper's TMA: its math and
    L2 traffic take the measured 1.14x (SGLang PR #36543, Triton #5461) at the burst clock on a
    9.0 chip, not on the same chip read as 8.0 (no TMA), not where streaming the weights from
    HBM binds (a few tokens an expert), not for a library kernel or Marlin (its own cap); under
    the power limit part of it comes back."""
    from hardware import load_system
    from sim.cost.roofline import _POINTER_LOADS, cost_ops

    hopper = load_system("h100-sxm", 1)
    no_tma = replace(hopper, chip=replace(hopper.chip, compute_capability="8.0"))

    def timed(op: Op, system: System, steady: bool = False) -> float:
        return cost_ops([op], system, steady=steady)[0].time_s - system.chip.kernel_overhead_s

    big = _triton_expert_up(5034)
    assert timed(big, hopper) == pytest.approx(_POINTER_LOADS * timed(big, no_tma), rel=1e-9)
    assert 1.12 < _POINTER_LOADS < 1.16
    assert 1.0 < timed(big, hopper, True) / timed(big, no_tma, True) < _POINTER_LOADS
    few = _triton_expert_up(64)
    assert cost_ops([few], hopper, steady=False)[0].binding_level == "hbm"
    for op in (few, _triton_expert_up(5034, pointer_loads=False),
               _triton_expert_up(5034, mma_sync=True)):  # fmt: skip
        assert timed(op, hopper) == pytest.approx(timed(op, no_tma), rel=1e-9), op.gemm


# ---- a stack of chips costs only the GEMM candidates that can win ---------------------------------
def test_undominated_drops_a_candidate_an_earlier_one_matches_or_a_later_one_beats():
    from sim.cost.roofline import _undominated

    # candidates on axis 0, one op: (work, main bytes, reuse bytes)
    work = np.array([4.0, 4.0, 6.0, 3.0, 9.0])[:, None, None]
    main = np.array([2.0, 2.0, 2.0, 1.0, 0.5])[:, None, None]
    reuse = np.array([5.0, 5.0, 5.0, 4.0, 1.0])[:, None, None]
    usable = np.ones((5, 1, 1), dtype=bool)
    gemv = np.zeros((5, 1, 1), dtype=bool)
    kept = _undominated(work, main, reuse, usable, gemv)
    # 1 ties 0 (earlier kept), 2 is beaten by 0, 0 by 3 on all three; 4 trades work for bytes
    assert kept[:, 0, 0].tolist() == [3, 4]
    # an unusable candidate dominates nothing and is dropped; a GEMV row is always kept
    usable[3] = False
    gemv[2] = True
    assert _undominated(work, main, reuse, usable, gemv)[:, 0, 0].tolist() == [0, 2, 4]
    # costs that differ by chip are not compared
    assert _undominated(work, np.broadcast_to(main, (5, 1, 3)), reuse, usable, gemv) is None


@settings(max_examples=15, deadline=None)
@given(
    peak=st.lists(st.floats(0.2, 5.0), min_size=3, max_size=3),
    hbm=st.lists(st.floats(0.3, 4.0), min_size=3, max_size=3),
    l2=st.lists(st.floats(0.3, 4.0), min_size=3, max_size=3),
)
def test_a_stack_of_chips_picks_what_each_chip_alone_picks(peak, hbm, l2):
    """Candidates are dropped for a stack of chips (``_undominated``), never for one: each
    chip's time, bound and traffic in the stack equal its own simulation's."""
    from hardware import load_system
    from sim import simulate
    from sim.cost.chips import ChipArrays
    from sim.cost.roofline import BOUNDS
    from sim.cost.simulate import evaluate
    from workloads import Decode, Prefill, load_model

    systems = [
        load_system("h100-sxm", 1, [f"compute.peak.bf16={989 * p}TFLOP/s",
                                    f"hbm.bandwidth={3.35 * h}TB/s", f"l2.bandwidth={9.37 * c}TB/s"])
        for p, h, c in zip(peak, hbm, l2, strict=True)
    ]  # fmt: skip
    chips = ChipArrays.from_systems(systems)
    for workload in (
        Decode(model=load_model("llama-2-7b"), batch=24, context=2048),
        Prefill(model=load_model("mixtral-8x7b"), batch=1, prompt=3000),
    ):
        res = evaluate(workload.lower(), 1, chips, check_memory=False)
        for i, system in enumerate(systems):
            ref = simulate(workload, system, check_memory=False)
            assert res.time_s[i] == pytest.approx(ref.time_s, rel=1e-12)
            assert res.mbu[i] == pytest.approx(ref.mbu, rel=1e-12)
            assert BOUNDS[res.bound[i]] == ref.bound


@pytest.mark.parametrize("kv_tokens", [1024, 16384])
def test_a_rings_hops_hide_behind_all_its_attention_calls_but_the_last(kv_tokens):
    """Ring attention over n chips: hop i flies beside attention call i - 1 and call i waits
    for it, so the whole is a + (n - 1) max(a, h): the hops are exposed by (n - 1) max(0, h - a),
    not by the part of their total longer than all n calls'."""
    from hardware import load_system
    from sim.cost.roofline import cost_ops
    from workloads.build import Builder

    n, heads, d = 4, 24, 128
    b = Builder("bf16", 2.0, 2.0)
    spec = Attention(batch=1, n_q_heads=heads, n_kv_heads=heads, q_len=kv_tokens,
                     kv_len=kv_tokens, qk_dim=d, v_dim=d, causal=False, act_bytes=2.0,
                     kv_bytes_per_token=2 * d * 2.0)  # fmt: skip
    attn = replace(b.attention("attention", spec), count=n)
    hop = b.collective("ring_kv", "send_recv", 2 * kv_tokens * heads * d * 2.0, 2)
    ring = replace(hop, count=n - 1, overlaps_previous=(n - 1) / n)
    system = load_system("h100-sxm", n)
    a, h = (c.time_s for c in cost_ops([attn, ring], system))
    _, exposed = cost_ops([attn, ring], system, overlap=True)
    assert exposed.time_s * (n - 1) == pytest.approx((n - 1) * max(0.0, h - a), abs=1e-12)
    # the short shards are passed slower than they are attended, the long ones faster
    assert (h > a) == (kv_tokens == 1024)


def test_a_send_gets_the_channels_nccls_rules_give_it_in_its_communicator():
    from sim.cost.collectives import p2p_channels

    mib = 1 << 20
    # NVIDIA/nccl enqueue.cc on an NVSwitch node (32 p2p channels; 64 KiB to 16 MiB parts):
    # 16 channels a peer among 2 ranks, 8 among 4, 4 among 8, doubling past 16 MiB a channel
    sizes = [64 << 10, 512 << 10, mib, 64 * mib, 128 * mib, 256 * mib, 512 * mib, 1024 * mib]
    assert [p2p_channels(s, 2) for s in sizes] == [1, 8, 16, 16, 16, 16, 32, 32]
    assert [p2p_channels(s, 4) for s in sizes] == [1, 8, 8, 8, 8, 16, 32, 32]
    assert [p2p_channels(s, 8) for s in sizes] == [1, 4, 4, 4, 8, 16, 32, 32]
    assert list(p2p_channels(np.array(sizes, dtype=float), 8)) == [1, 4, 4, 4, 8, 16, 32, 32]


def test_a_ring_hop_among_8_ranks_runs_on_a_quarter_of_the_channels_of_one_among_2():
    from hardware import load_system

    h100 = load_system("h100-sxm", 8)
    hop = 32e6  # a ring-attention K/V shard: 4 channels among 8 ranks, 16 among 2
    two, four, eight = (collective_time("send_recv", hop, 2, h100, comm=n) for n in (2, 4, 8))
    lat = h100.intra_node.all_to_all_latency_s
    per = h100.intra_node.p2p_channel_bandwidth
    assert eight == pytest.approx(lat + hop / (4 * per))
    assert four == pytest.approx(lat + hop / (8 * per))
    # two ranks: 16 channels (289.6 GB/s) or the measured all-to-all's bus bandwidth, the lower
    assert two == pytest.approx(lat + hop / min(16 * per, h100.intra_node.all_to_all_bus_bandwidth))
    # a chip without a measured channel rate keeps the link's rate for any communicator
    mi300x = load_system("mi300x", 8)
    assert mi300x.intra_node.p2p_channel_bandwidth is None
    assert collective_time("send_recv", hop, 2, mi300x, comm=8) == collective_time(
        "send_recv", hop, 2, mi300x, comm=2
    )
    # a context-parallel ring's hops in one op: each message's channels, not the sum's
    five = collective_time("send_recv", 5 * hop, 2, h100, comm=8, messages=5)
    assert five == pytest.approx(lat + 5 * hop / (4 * per))


def test_an_exposed_block_promotion_costs_its_vector_instructions_where_compute_binds():
    from hardware import load_system
    from sim.cost.roofline import cost_ops

    h100 = load_system("h100-sxm")

    def time(m, promotion, system=h100):
        g = Gemm(m=m, n=8192, k=8192, a_bytes=1.0, b_bytes=1.0, c_bytes=2.0, promotion=promotion)
        op = Op(name="g", kind=OpKind.GEMM, family="mlp", dtype="fp8", flops=2.0 * m * 8192 * 8192,
                model_flops=2.0 * m * 8192 * 8192,
                bytes={Role.ACTIVATION: m * 8192.0 + 2 * m * 8192.0, Role.WEIGHT: 8192.0 * 8192.0},
                gemm=g)  # fmt: skip
        (c,) = cost_ops([op], system, steady=False)
        return c

    # compute-bound: 2 instructions a 128-deep block against 256 FP8 FLOPs an element:
    # r = 2 x 2 x 1979 / (256 x 66.9) = 0.46 of the MMA time on an H100
    r = 2 * 2 * h100.chip.peak("fp8") / (256 * h100.chip.peak("fp32"))
    big, big_promoted = time(8192, 0.0), time(8192, 2.0)
    assert big.bound is Bound.COMPUTE
    assert big_promoted.compute_s == pytest.approx(big.compute_s * (1 + r), rel=1e-9)
    # weight streaming (one token): the promotion hides under the HBM time
    assert time(1, 2.0).time_s == pytest.approx(time(1, 0.0).time_s, rel=1e-9)
    # what-if: twice the vector units halve the exposed share
    wide = load_system("h100-sxm", overrides=["compute.peak.fp32=133.8TFLOP/s"])
    assert time(8192, 2.0, wide).compute_s == pytest.approx(big.compute_s * (1 + r / 2), rel=1e-9)


def test_a_communicator_across_nodes_keeps_the_links_model_and_a_library_its_own_kernels():
    from dataclasses import replace as dc_replace

    from hardware import load_system
    from sim.cost.collectives import LinkParams

    h100 = load_system("h100-sxm", 16)
    hop = 32e6
    # a 16-rank communicator over two nodes: NCCL's NVLink channel rule does not apply
    plain = dc_replace(h100, intra_node=dc_replace(h100.intra_node, p2p_channel_bandwidth=None))
    assert collective_time("send_recv", hop, 2, h100, comm=16) == pytest.approx(
        collective_time("send_recv", hop, 2, plain, comm=16)
    )
    assert collective_time("send_recv", hop, 2, h100, comm=8) > collective_time(
        "send_recv", hop, 2, plain, comm=8
    )
    assert np.isnan(LinkParams.of(h100.intra_node).alpha_beta().p2p_channel_bw)
    with pytest.raises(Exception, match="messages must be a whole number >= 1"):
        from workloads.build import Builder

        Builder("bf16", 2, 2).collective("x", "send_recv", 1e6, 2, messages=0)


def test_a_triton_dot_kernel_pads_a_few_rows_to_sixteen_and_never_takes_the_gemv_path():
    """A Triton tl.dot block is 16 rows at least: a Triton GEMM of 1 to 16 rows (vLLM's
    w8a8_block_fp8_matmul at decode) runs the same 16-row blocks on the matrix units, so its
    math is the same at 1, 4 or 16 rows, where a library GEMM of 4 rows streams its weights
    through the GEMV path or an 8-row tile and is never slower than it."""
    from hardware import load_system
    from workloads.ops import triton_gemm

    system = load_system("h200", 1)

    def costs(m: int):
        op = gemm_op(m, 576, 7168, dtype="fp8")
        return cost_op(op, system), cost_op(replace(op, gemm=triton_gemm(op.gemm)), system)

    library, triton = costs(4)
    assert triton.tile is not None and triton.tile[0] == 16
    assert library.tile is None or library.tile[0] < 16
    # the same padded math at 1, 4 and 16 rows (only the activations' few bytes differ)
    assert [costs(m)[1].compute_s for m in (1, 16)] == pytest.approx([triton.compute_s] * 2,
                                                                      rel=1e-12)  # fmt: skip
    assert triton.compute_s > library.compute_s and triton.time_s >= library.time_s


def test_vllms_cutlass_blockwise_kernel_runs_its_one_tile_without_splitting_k():
    """vLLM's SM90 CUTLASS blockwise fp8 kernel is one hard-coded configuration (128 x 128 x
    128, persistent): 4 rows run a 128-row tile, and with fewer tiles than cores each CTA runs
    the whole K loop, so the time grows with K at a fixed N (the library splits K instead);
    with many rows it is the 128 x 128 tile's wave count. A kernel's own tile the chip does not
    list is still its tile, and never one the chip's library takes for another GEMM."""
    from hardware import load_system
    from sim.cost.roofline import cost_ops
    from workloads.ops import block_fp8_gemm

    system = load_system("h200", 1)

    def cutlass(m: int, n: int, k: int, tile: tuple[int, int] = (128, 128)) -> Op:
        op = gemm_op(m, n, k, dtype="fp8")
        return replace(op, gemm=replace(block_fp8_gemm(op.gemm, "cutlass"), tile=tile))

    short, long = (cost_op(cutlass(4, 1536, k), system) for k in (1792, 7168))
    assert short.tile == long.tile == (128, 128)
    assert long.compute_s == pytest.approx(4 * short.compute_s, rel=1e-9)
    op = gemm_op(4, 1536, 7168, dtype="fp8")
    assert long.time_s > 3 * cost_op(replace(op, gemm=block_fp8_gemm(op.gemm, "deepgemm")),
                                     system).time_s  # fmt: skip
    assert cost_op(cutlass(4096, 7168, 2048), system).tile == (128, 128)
    odd, plain = cost_ops([cutlass(4, 1536, 7168, (96, 96)), gemm_op(4096, 4096, 4096)], system)
    assert odd.tile == (96, 96) and plain.tile != (96, 96)
    assert plain.time_s == cost_op(gemm_op(4096, 4096, 4096), system).time_s


def test_a_one_tile_kernel_costs_the_same_in_a_sweep_over_chips():
    """The one-tile path over a stack of chips (a sweep: candidates dropped per chip where
    they can never win) gives each chip what it gives alone."""
    from hardware import load_system
    from sim.cost.chips import ChipArrays
    from sim.cost.roofline import cost_ops, cost_table
    from workloads.ops import block_fp8_gemm

    systems = [load_system("h200", 1), load_system("h200", 1, ["hbm.bandwidth=2.4TB/s"])]
    ops = []
    for m, n, k in ((4, 1536, 7168), (4096, 7168, 2048)):
        op = gemm_op(m, n, k, dtype="fp8")
        ops.append(replace(op, gemm=block_fp8_gemm(op.gemm, "cutlass")))
    table = cost_table(ops, ChipArrays.from_systems(systems), steady=False)
    for i, system in enumerate(systems):
        alone = [c.time_s for c in cost_ops(ops, system, steady=False)]
        assert [float(t) for t in table.time[:, i]] == pytest.approx(alone, rel=1e-12)


def test_a_sweep_over_tensor_memory_and_exposed_share_costs_each_chip_as_alone():
    """Chips that differ in ``tensor_memory`` (the backward's split) and
    ``attention_overlap_exposed`` (the forward's share) cost in one stack what they cost alone,
    at head dims that split (256) and that do not (128)."""
    from hardware import load_system
    from sim.cost.chips import ChipArrays
    from sim.cost.roofline import cost_ops, cost_table
    from workloads.build import Builder
    from workloads.training import attention_backward

    systems = [
        load_system("b200", 1, [f"compute.tensor_memory={t}KiB",
                                f"compute.attention_overlap_exposed={x}"])
        for t, x in ((256, 0.129), (512, 0.129), (256, 0.0), (512, 0.5))
    ]  # fmt: skip
    for hd in (128, 256):
        spec = Attention(batch=1, n_q_heads=32, n_kv_heads=2, q_len=8192, kv_len=8192,
                         qk_dim=hd, v_dim=hd, causal=True, act_bytes=2.0,
                         kv_bytes_per_token=4.0 * hd)  # fmt: skip
        op = Builder("bf16", 2.0, 2.0).attention("attention", spec)
        ops = [op, *attention_backward(op, 2.0)]
        table = cost_table(ops, ChipArrays.from_systems(systems), steady=False)
        for i, system in enumerate(systems):
            alone = [c.time_s for c in cost_ops(ops, system, steady=False)]
            assert [float(t) for t in table.time[:, i]] == pytest.approx(alone, rel=1e-12)


def test_an_overlapping_chip_runs_the_forward_softmax_beside_the_matmuls_not_the_backward():
    """``attention_overlap`` (Blackwell): a native forward score costs the longer of its matmul
    and softmax time, not their sum; FlashAttention-2 (mma.sync) and the backward keep the sum."""
    from hardware import load_system
    from sim.cost.simulate import cost_ops
    from workloads.build import Builder
    from workloads.training import attention_backward

    def costs(overlap: bool, kernel: str) -> tuple[float, float]:
        system = load_system("b200", 1, [f"compute.attention_overlap={str(overlap).lower()}"])
        spec = Attention(batch=2, n_q_heads=16, n_kv_heads=16, q_len=16384, kv_len=16384,
                         qk_dim=128, v_dim=128, causal=False, act_bytes=2.0,
                         kv_bytes_per_token=512.0, kernel=kernel)  # fmt: skip
        op = Builder("bf16", 2.0, 2.0).attention("attention", spec)
        fwd, bwd = (cost_ops([o], system)[0].time_s for o in (op, attention_backward(op, 2)[0]))
        return fwd, bwd

    (f_on, b_on), (f_off, b_off) = costs(True, "native"), costs(False, "native")
    # the chip's matmul and softmax shares of a score are of one order (about 0.29 and 0.25 ps):
    # hiding the shorter nearly halves the forward
    assert f_on < 0.7 * f_off
    assert b_on == pytest.approx(b_off)
    assert costs(True, "fa2") == pytest.approx(costs(False, "fa2"))


def test_the_exposed_share_runs_the_forward_between_the_longer_part_and_the_sum():
    """``attention_overlap_exposed`` (fitted to FlashAttention-4's forward on B200): a native
    forward score costs the longer of its matmul and softmax plus that share of the shorter, so
    0 is the longer alone, 1 the serial sum; the fp8 forward, whose softmax is the longer part,
    pays the share of its matmul; the backward does not change."""
    from hardware import load_system
    from sim.cost.simulate import cost_ops
    from workloads.build import Builder
    from workloads.training import attention_backward

    def times(sets: list[str], dtype: str = "bf16") -> tuple[float, float]:
        system = load_system("b200", 1, sets)
        spec = Attention(batch=2, n_q_heads=16, n_kv_heads=16, q_len=16384, kv_len=16384,
                         qk_dim=128, v_dim=128, causal=False, act_bytes=2.0,
                         kv_bytes_per_token=512.0)  # fmt: skip
        op = Builder(dtype, 2.0, 2.0).attention("attention", spec)
        fwd, bwd = (cost_ops([o], system, steady=False)[0].time_s
                    for o in (op, attention_backward(op, 2)[0]))  # fmt: skip
        return fwd, bwd

    exposed = load_system("b200", 1).chip.attention_overlap_exposed
    assert 0.0 < exposed < 0.5
    hidden, _ = times(["compute.attention_overlap_exposed=0"])
    preset, b_preset = times([])
    serial, b_serial = times(["compute.attention_overlap_exposed=1"])
    apart, b_apart = times(["compute.attention_overlap=false"])
    assert hidden < preset < serial
    assert serial == pytest.approx(apart, rel=1e-6)  # all of the shorter exposed: the sum
    assert b_preset == pytest.approx(b_serial) == pytest.approx(b_apart)
    # linear in the share: the preset sits at its share of the way from hidden to serial
    assert (preset - hidden) / (serial - hidden) == pytest.approx(exposed, rel=1e-3)
    # fp8: twice the matmul rate, the same softmax: the share costs less of its (shorter) matmul
    f8_hidden, _ = times(["compute.attention_overlap_exposed=0"], "fp8")
    f8_preset, _ = times([], "fp8")
    assert f8_preset / f8_hidden - 1 < preset / hidden - 1
    with pytest.raises(ConfigError, match="attention_overlap_exposed must be in \\[0, 1\\]"):
        load_system("b200", 1, ["compute.attention_overlap_exposed=1.2"])


def test_a_backward_whose_accumulators_fill_the_tensor_memory_recomputes_its_scores():
    """``tensor_memory`` (Blackwell): at head dim 256 a native backward's dK and dV fill the
    SM's 512 columns, so it runs as two kernels that each compute S and dP again (7 matmuls for
    the 5 counted, the softmax twice): twice the tensor memory fuses it again; head dim 128 and
    a chip without tensor memory are unchanged; the forward never splits."""
    from hardware import load_system
    from sim.cost.simulate import cost_ops
    from workloads.build import Builder
    from workloads.training import attention_backward

    def times(chip: str, hd: int, sets: list[str]) -> tuple[float, float]:
        system = load_system(chip, 1, sets)
        spec = Attention(batch=1, n_q_heads=32, n_kv_heads=2, q_len=32768, kv_len=32768,
                         qk_dim=hd, v_dim=hd, causal=True, act_bytes=2.0,
                         kv_bytes_per_token=4.0 * hd)  # fmt: skip
        op = Builder("bf16", 2.0, 2.0).attention("attention", spec)
        fwd, bwd = (
            cost_ops([o], system, steady=False)[0] for o in (op, attention_backward(op, 2)[0])
        )
        return fwd.time_s, bwd.time_s

    f256, b256 = times("b200", 256, [])
    f256_big, b256_big = times("b200", 256, ["compute.tensor_memory=512KiB"])
    assert f256 == pytest.approx(f256_big)
    assert 1.3 < b256 / b256_big < 1.6  # 7 of 5 matmuls and the softmax twice
    assert times("b200", 128, []) == pytest.approx(
        times("b200", 128, ["compute.tensor_memory=512KiB"])
    )
    assert load_system("h100-sxm", 1).chip.tensor_memory_bytes is None
    with pytest.raises(ConfigError, match="tensor_memory"):
        load_system("b200", 1, ["compute.tensor_memory=-1KiB"])


def test_attention_overlap_takes_true_or_false_and_nothing_else():
    from hardware import load_system

    assert load_system("h100-sxm", 1, ["compute.attention_overlap=true"]).chip.attention_overlap
    with pytest.raises(ConfigError, match="attention_overlap.*true or false"):
        load_system("h100-sxm", 1, ["compute.attention_overlap=1"])


def _scalar_op(*kernels: tuple[float, float]) -> Op:
    """1 GB of elementwise traffic, with ``kernels`` (cycles, bytes) of it scalar kernels."""
    return Op(name="eager", kind=OpKind.ELEMENTWISE, family="norm", dtype="bf16", flops=0.0,
              model_flops=0.0, bytes={Role.ACTIVATION: 1e9},
              scalar_kernels=tuple(kernels))  # fmt: skip


def test_scalar_kernels_take_the_longer_of_their_bytes_and_their_cycles():
    """An eager op's unvectorised kernels (Op.scalar_kernels) each take the longer of their
    bytes' transfer and their cycles over the cores at the clock; its other kernels take their
    bytes'. Only a chip that runs CUDA's kernels (a compute capability) has them."""
    cuda = toy_chip(clock_hz=1e9, compute_capability="9.0")  # 4e9 core cycles a second
    # 0.25 GB (0.25 ms at 1 TB/s) taking 4e6 cycles (1 ms): 0.75 ms more than the bytes' 1 ms
    c = cost_op(_scalar_op((4e6, 0.25e9)), system_of(cuda))
    assert c.time_s == pytest.approx(1e-3 + 0.75e-3)
    assert c.bound == Bound.COMPUTE
    # at 1e5 cycles (25 us) the bytes bind: the op streams 1 GB
    c = cost_op(_scalar_op((1e5, 0.25e9)), system_of(cuda))
    assert c.time_s == pytest.approx(1e-3) and c.bound == Bound.MEMORY
    # each kernel on its own: one cycle-bound (+0.75 ms), one bytes-bound (+0)
    c = cost_op(_scalar_op((4e6, 0.25e9), (1e5, 0.25e9)), system_of(cuda))
    assert c.time_s == pytest.approx(1e-3 + 0.75e-3)
    # twice the clock halves the cycles: 0.5 ms against 0.25 ms of bytes
    fast = cost_op(_scalar_op((4e6, 0.25e9)), system_of(replace(cuda, clock_hz=2e9)))
    assert fast.time_s == pytest.approx(1e-3 + 0.25e-3)
    # a chip without CUDA's kernels streams the bytes
    assert cost_op(_scalar_op((4e6, 0.25e9)), system_of(toy_chip(clock_hz=1e9))).time_s == (
        pytest.approx(1e-3)
    )


def test_scalar_kernels_on_a_cuda_chip_without_a_clock_name_the_field():
    with pytest.raises(ConfigError, match=r"compute\.clock_hz is needed"):
        cost_op(_scalar_op((4e6, 0.25e9)), system_of(toy_chip(compute_capability="9.0")))
