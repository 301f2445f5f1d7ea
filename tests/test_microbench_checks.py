"""The scripts that hold roofsim against microbench.py's results: check_moe.py costs grouped-GEMM
rows as the MoE lowering costs expert GEMMs, check_conv.py convolution rows as the VAE lowering
costs decoder convolutions, check_steady.py a sustained FlashAttention-2 run as the attention
lowering costs it; benchmarks/moe_sensitivity.py stretches only the expert GEMMs."""

import importlib.util
import math
from pathlib import Path

import pytest

from hardware import load_system
from sim.cost.roofline import cost_ops
from workloads.build import Builder

ROOT = Path(__file__).parents[1]


def _load(name: str, path: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_moe = _load("check_moe", "benchmarks/microbench/check_moe.py")
check_conv = _load("check_conv", "benchmarks/microbench/check_conv.py")

HEADER = "device,date,layout,shape,dtype,experts,top_k,m_mean,n,k,tokens,rows_max,time_s,rows\n"


def _write(tmp_path: Path, rows: list[str]) -> Path:
    path = tmp_path / "moe.csv"
    path.write_text(HEADER + "".join(r + "\n" for r in rows))
    return path


def test_uniform_rows_cost_as_a_grouped_gemm(tmp_path):
    path = _write(tmp_path, ["gpu,d,batched,mixtral,bf16,8,2,256.0,14336,4096,1024,256,4e-4,"])
    (rec,) = check_moe.check(path, "h100-sxm")
    op = Builder("bf16", 2.0, 2.0).gemm("experts", "moe", 256, 14336, 4096, 8)
    system = load_system("h100-sxm", 1)
    (burst,) = cost_ops([op], system, steady=False)
    (held,) = cost_ops([op], system, steady=True)
    assert rec["burst_s"] == pytest.approx(burst.time_s)
    assert rec["log_error"] == pytest.approx(math.log(burst.time_s / 4e-4))
    # near the ridge the power limit binds: the power-limited prediction is the slower one
    assert rec["steady_s"] == pytest.approx(held.time_s) and held.time_s > burst.time_s


def test_routed_rows_pay_for_their_spread(tmp_path):
    """The same 2048 rows over 8 experts, dealt evenly or as routing deals them (one expert
    idle): the routed row counts only the experts that got rows and pads each to whole tiles
    over the routing spread, which here costs more than the even split (at some M the spread
    can cost less: its mean rows may fill the last tile better)."""
    even = "gpu,d,grouped,mixtral,bf16,8,2,256.0,14336,4096,1024,256,4e-4,"
    rows = "600;300;0;248;300;200;200;200"
    spread = f"gpu,d,routed,mixtral,bf16,8,2,256.0,14336,4096,1024,600,4e-4,{rows}"
    a, b = check_moe.check(_write(tmp_path, [even, spread]), "h100-sxm")
    op = check_moe.expert_op({"layout": "routed", "experts": "8", "n": "14336", "k": "4096",
                              "m_mean": "256.0", "tokens": "1024", "top_k": "2",
                              "rows": rows})  # fmt: skip
    assert op.gemm.groups == 7 and op.gemm.m == pytest.approx(2048 / 7)
    assert op.gemm.routed_tokens == 1024 and op.gemm.routed_p == pytest.approx(2 / 8)
    assert b["burst_s"] > a["burst_s"]


def test_regimes_split_at_half_and_twice_the_memory_time():
    assert check_moe.regime(1.0, 3.0) == "stream"
    assert check_moe.regime(1.0, 1.5) == "ridge"
    assert check_moe.regime(3.0, 1.0) == "compute"


def test_the_grid_is_read_from_microbench_without_torch(capsys):
    shapes, ms = check_moe.section_grid()
    assert ("mixtral-8x7b-w13-tp2", 8, 2, 14336, 4096) in shapes and 2048 in ms
    check_moe.predict("h100-sxm")
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 + len(shapes) * (1 + len(ms)) and out[1] == shapes[0][0]
    assert out[2].split()[0] == "M=" and out[2].split()[1] == str(ms[0])


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert check_moe.main([]) == 2
    assert check_moe.main([str(tmp_path)]) == 2  # no moe.csv there
    (tmp_path / "moe.csv").write_text(HEADER + "gpu,d,batched,x,bf16,8,2,not-a-number\n")
    assert check_moe.main([str(tmp_path)]) == 2
    assert check_moe.main(["--predict", "--chip", "no-such-chip"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("check_moe: ") for line in err)
    assert "line 2" in err[2] and "no-such-chip" in err[3]


def test_sensitivity_stretches_expert_gemms_only_and_restores():
    """F = 2 doubles an expert GEMM's busy time at the power-limited clock (launch overhead
    kept) and leaves a dense GEMM as it was; the cost functions are restored afterwards."""
    spec = importlib.util.spec_from_file_location(
        "moe_sens", ROOT / "benchmarks/moe_sensitivity.py"
    )
    sens = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sens)
    from sim.cost import roofline

    b = Builder("bf16", 2.0, 2.0)
    ops = [
        b.gemm("experts_up", "moe", 256, 14336, 4096, 8),
        b.gemm("qkv_proj", "attention", 256, 6144, 4096),
    ]
    system = load_system("h100-sxm", 1)
    before = cost_ops(ops, system, steady=True)
    sens._patch(2.0)
    try:
        after = cost_ops(ops, system, steady=True)
    finally:
        roofline.cost_gemms, roofline._power = sens._GEMMS, sens._POWER
    busy = before[0].time_s - before[0].overhead_s
    assert after[0].time_s == pytest.approx(before[0].overhead_s + 2.0 * busy)
    assert after[1].time_s == pytest.approx(before[1].time_s)
    assert cost_ops(ops, system, steady=True)[0].time_s == pytest.approx(before[0].time_s)


CONV_HEADER = "device,date,shape,dims,layout,c_in,c_out,frames,height,width,time_s\n"


def test_a_conv_row_costs_as_the_vae_lowering_costs_that_conv(tmp_path):
    """FLUX.1's decoder at 1024 px: the top level's first ResNet conv (3x3, 128 channels over
    1024 x 1024) as lower_decoder builds it, in the pipeline's NCHW (cuDNN's NHWC transposes
    around the implicit GEMM), is what a conv.csv row of that shape costs."""
    from workloads.dit import load_dit
    from workloads.vae import lower_decoder

    vae = load_dit("flux-1-dev").vae
    ops = lower_decoder(vae, 16, 1024, 1024, 1, 1.0, causal=False)
    lowered = [op for op in ops if op.name.startswith("vae.l0.conv1")]
    assert [op.name for op in lowered] == ["vae.l0.conv1_to_nhwc", "vae.l0.conv1",
                                           "vae.l0.conv1_to_nchw"]  # fmt: skip
    system = load_system("h100-sxm", 1)
    expected = sum(c.time_s for c in cost_ops(lowered, system, steady=False))
    rows = [
        f"gpu,d,flux-l0,2,{layout},128,128,1,1024,1024,0.01" for layout in ("nchw", "channels_last")
    ]
    (tmp_path / "conv.csv").write_text(CONV_HEADER + "\n".join(rows) + "\n")
    nchw, last = check_conv.check(tmp_path / "conv.csv", "h100-sxm")
    assert nchw["burst_s"] == pytest.approx(expected)
    (gemm,) = cost_ops([lowered[1]], system, steady=False)
    assert last["burst_s"] == pytest.approx(gemm.time_s)
    assert last["burst_s"] < nchw["burst_s"]
    assert nchw["log_error"] == pytest.approx(math.log(nchw["burst_s"] / 0.01))


def test_conv_ops_pads_and_transposes_only_where_asked():
    from workloads.ops import WorkloadError
    from workloads.vae import conv_ops

    b = Builder("bf16", 2.0, 2.0)
    plain = conv_ops(b, b, "c", 1000.0, 64, 64, 27, layout="nhwc")
    assert [op.name for op in plain] == ["c"]
    padded = conv_ops(b, b, "c", 1000.0, 64, 64, 27, layout="nchw", pad=1.5)
    assert [op.name for op in padded] == ["c_pad", "c_to_nhwc", "c", "c_to_nchw"]
    # the transpose reads the padded copy: 1.5 x the input's 64 000 elements, 2 bytes each
    assert sum(padded[1].bytes.values()) == pytest.approx(2 * 2 * 1.5 * 64_000)
    with pytest.raises(WorkloadError, match="pad must be 0"):
        conv_ops(b, b, "c", 1000.0, 64, 64, 27, layout="nchw", pad=0.5)
    with pytest.raises(WorkloadError, match="layout"):
        conv_ops(b, b, "c", 1000.0, 64, 64, 27, layout="ncdhw")


@pytest.mark.parametrize(
    ("row", "why"),
    [
        ("gpu,d,x,three,nchw,1,1,1,1,1,0.01", "line 2"),
        ("gpu,d,x,7,nchw,1,1,1,1,1,0.01", "dims must be 2 or 3, got 7"),
        ("gpu,d,x,2,nchw,0,1,1,1,1,0.01", "must be >= 1"),
        ("gpu,d,x,2,nchw,1,1,1,1,1,0", "time_s must be a positive number"),
        ("gpu,d,,2,nchw,1,1,1,1,1,0.01", "no shape"),
    ],
)
def test_check_conv_refuses_a_bad_row_in_one_line(tmp_path, capsys, row, why):
    (tmp_path / "conv.csv").write_text(CONV_HEADER + row + "\n")
    assert check_conv.main([str(tmp_path)]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert err.startswith("check_conv: ") and why in err


def test_check_conv_cli(tmp_path, capsys):
    assert check_conv.main([]) == 2
    assert check_conv.main([str(tmp_path)]) == 2  # no conv.csv there
    (tmp_path / "conv.csv").write_text(
        "device,date,shape,dims,layout,dtype,c_in,c_out,frames,height,width,time_s\n"
        "cpu,d,x,2,nchw,fp32,1,1,1,1,1,0.01\n"
    )
    assert check_conv.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "dtype must be bf16" in err[2]
    check_conv.predict("h100-sxm")
    (shapes,) = check_conv.read_constants("CONV_SHAPES")
    assert len(capsys.readouterr().out.splitlines()) == 1 + len(shapes)


check_steady = _load("check_steady", "benchmarks/microbench/check_steady.py")
STEADY = ("device,date,kernel,dtype,batch,heads,seq,head_dim,causal,phase,t_s,tflops,"
          "clocks_sm_mhz,clocks_max_sm_mhz,power_draw_w,power_limit_w,temperature_c,"
          "clocks_event_reasons\n")  # fmt: skip


def _steady(tmp_path: Path, runs: dict[bool, tuple[list[float], list[float]]]) -> Path:
    """A steady.csv: per mask an idle sample, the burst calls, the sustained samples."""
    lines = []
    for causal, (bursts, sustained) in runs.items():
        phases = (
            [("idle", "")] + [("burst", r) for r in bursts] + [("sustained", r) for r in sustained]
        )
        for i, (phase, rate) in enumerate(phases):
            lines.append(f"H100,2026-12-06,sdpa_flash,bfloat16,4,32,16384,128,{causal},{phase},"
                         f"{i}.0,{rate},{1980 - 40 * i},1980,{600 + 10 * i},700,60,0x4\n")  # fmt: skip
    path = tmp_path / "steady.csv"
    path.write_text(STEADY + "".join(lines))
    return path


def test_steady_rows_hold_the_burst_calls_and_the_late_half_against_roofsims_fa2(tmp_path):
    # the single calls from idle against the burst prediction, the sustained run's second half
    # against the power-limited one, each from the same FA2 op roofsim's lowering costs
    path = _steady(tmp_path, {False: ([366.0, 364.0, 365.0], [360.0, 350.0, 340.0, 330.0]),
                              True: ([350.0], [345.0, 344.0])})  # fmt: skip
    records = {r["causal"]: r for r in check_steady.check(path, "h100-sxm")}
    burst, held = check_steady.rates((4, 32, 16384, 128), False, load_system("h100-sxm", 1))
    full = records[False]
    assert (full["burst_measured"], full["late_measured"], full["late_n"]) == (365.0, 335.0, 2)
    assert full["log_error"] == pytest.approx(math.log(365.0 / burst))
    assert full["log_error_steady"] == pytest.approx(math.log(335.0 / held))
    # the late half's clock: rows 6 and 7 of the mask (idle, 3 bursts, 4 sustained)
    assert full["mhz"] == pytest.approx(1980 - 40 * 6.5)
    # the causal FLOPs are halved, so its predicted rate stays close to the full one's
    assert records[True]["burst_pred"] == pytest.approx(burst, rel=0.1)


@pytest.mark.parametrize(
    "edit, why",
    [(("sdpa_flash", "math"), "kernel must be sdpa_flash"),
     (("bfloat16", "float32"), "dtype must be bfloat16"),
     ((",burst,", ",warm,"), "phase of sdpa_flash must be one of idle, burst, sustained")],
)  # fmt: skip
def test_check_steady_refuses_a_bad_row_in_one_line(tmp_path, capsys, edit, why):
    path = _steady(tmp_path, {False: ([365.0], [360.0, 350.0])})
    path.write_text(path.read_text().replace(*edit, 1))
    assert check_steady.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and why in err


def test_check_steady_says_what_is_missing(tmp_path, capsys):
    assert check_steady.main([str(tmp_path / "nowhere")]) == 2
    assert "steady.csv not found" in capsys.readouterr().err
    (tmp_path / "steady.csv").write_text(STEADY)
    assert check_steady.main([str(tmp_path)]) == 2
    assert "has no rows" in capsys.readouterr().err
    # an unsupported nvidia-smi reading is no number, not an error
    path = _steady(tmp_path, {False: ([365.0], [360.0, 350.0])})
    path.write_text(path.read_text().replace(",600,", ",[Not Supported],"))
    assert check_steady.main([str(tmp_path)]) == 0


def test_a_duty_cycle_is_held_against_idle_power_plus_the_matmuls_dynamic_energy(tmp_path):
    # an 8192^3 matmul then a 5 ms host gap: roofsim's average power is the chip's idle power
    # plus the matmul's dynamic energy over the measured cycle (the first sample is left out)
    flop = 2.0 * 8192**3
    period = 7e-3
    rows = [f"H100,2026-12-06,matmul_gap,bfloat16,1,8192,8192,8192,False,gap_5ms,{i}.0,"
            f"{flop / period / 1e12},1980,1980,{watts},700,60,0x0\n"
            for i, watts in enumerate((500.0, 320.0, 300.0, 310.0))]  # fmt: skip
    path = tmp_path / "steady.csv"
    path.write_text(STEADY + "".join(rows))
    (record,) = check_steady.check(path, "h100-sxm")
    system = load_system("h100-sxm", 1)
    (cost,) = cost_ops([Builder("bf16", 2.0, 2.0).gemm("m", "gemm", 8192, 8192, 8192)], system,
                       steady=False)  # fmt: skip
    expected = system.chip.idle_watts + cost.energy_j / period
    assert record["period_ms"] == pytest.approx(7.0)
    assert record["watts"] == 310.0
    assert record["watts_pred"] == pytest.approx(expected)
    assert record["log_error"] == pytest.approx(math.log(310.0 / expected))


check_edge = _load("check_edge", "benchmarks/microbench/check_edge.py")
GEMM = "device,date,dtype,m,n,k,time_s,flops_per_s,group,n_buffer_sets,inner,reps,time_min_s,time_max_s\n"


def test_edge_rows_give_each_steps_measured_and_predicted_ratio(tmp_path):
    # issue 22: the time ratio from one batch to the next across a tile edge, measured and
    # roofsim's (burst clock); rows of other groups are left alone
    rows = [f"A100,2026-12-06,bf16,{m},28672,4096,{t},0,batch_edge,1,1,1,0,0\n"
            for m, t in ((128, 160e-6), (129, 170e-6))]  # fmt: skip
    rows.append("A100,2026-12-06,bf16,64,64,64,1e-6,0,square,1,1,1,0,0\n")
    path = tmp_path / "gemm.csv"
    path.write_text(GEMM + "".join(rows))
    first, second = check_edge.check(path, "a100-sxm-80gb")
    system = load_system("a100-sxm-80gb", 1)
    t128, t129 = (check_edge.predicted(m, 28672, 4096, system) for m in (128, 129))
    assert first["step"] is None and first["predicted_s"] == t128
    m0, measured, predicted = second["step"]
    assert (m0, measured) == (128, pytest.approx(170 / 160))
    assert predicted == pytest.approx(t129 / t128)
    assert second["log_error"] == pytest.approx(math.log(t129 / 170e-6))


def test_check_edge_says_what_is_missing(tmp_path, capsys):
    (tmp_path / "gemm.csv").write_text(
        GEMM + "A100,2026-12-06,bf16,64,64,64,1e-6,0,square,1,1,1,0,0\n"
    )
    assert check_edge.main([str(tmp_path)]) == 2
    assert "no batch_edge rows" in capsys.readouterr().err


check_flash_edges = _load("check_flash_edges", "benchmarks/microbench/check_flash_edges.py")
ATTENTION = ("device,date,phase,batch,n_heads,n_kv_heads,q_len,kv_len,head_dim,causal,time_s,flops,"
             "bytes,backend,n_buffer_sets\n")  # fmt: skip


def test_flash_edge_rows_give_roofsims_time_with_and_without_the_edges(tmp_path):
    # a short non-causal prefill row is held against roofsim's FA2 with and without the block
    # edges (the edges only ever add time); causal, decode and long rows are left alone
    rows = ["H100,d,prefill,4,32,32,512,512,128,False,63e-6,0,0,flash,1\n",
            "H100,d,prefill,4,32,32,512,512,128,True,40e-6,0,0,flash,1\n",
            "H100,d,decode,4,32,8,1,512,128,False,9e-6,0,0,flash,1\n",
            "H100,d,prefill,4,32,32,4096,4096,128,False,2e-3,0,0,flash,1\n",
            "H100,d,prefill,4,32,8,512,512,128,False,5e-5,0,0,flash+gqa,1\n",
            "H100,d,prefill,1,32,32,256,512,128,False,9e-6,0,0,flash,1\n",
            "cpu,d,prefill,1,8,8,256,256,32,False,5e-4,0,0,default,1\n"]  # fmt: skip
    path = tmp_path / "attention.csv"
    path.write_text(ATTENTION + "".join(rows))
    (rec,) = check_flash_edges.check(path, "h100-sxm")
    system = load_system("h100-sxm", 1)
    assert (rec["batch"], rec["seq"]) == (4, 512)
    assert rec["predicted_s"] == check_flash_edges.predicted(4, 32, 512, 128, system)
    assert rec["no_edges_s"] < rec["predicted_s"]
    assert rec["log_error"] == pytest.approx(math.log(rec["predicted_s"] / 63e-6))
    # the patch is undone: the model keeps its edges after a check
    assert check_flash_edges.predicted(4, 32, 512, 128, system) == rec["predicted_s"]


def test_check_flash_edges_says_what_is_missing(tmp_path, capsys):
    (tmp_path / "attention.csv").write_text(
        ATTENTION + "H100,d,prefill,1,32,32,512,512,128,True,2e-5,0,0,flash,1\n"
    )
    assert check_flash_edges.main([str(tmp_path)]) == 2
    assert "no flash non-causal prefill rows" in capsys.readouterr().err


check_decode_edges = _load("check_decode_edges", "benchmarks/microbench/check_decode_edges.py")


def test_decode_edge_rows_give_roofsims_time_with_and_without_the_stall(tmp_path):
    # a flash decode row is held against roofsim's FA2 with and without the memory-bound
    # waves' edge stall (the stall only ever adds time, most at short contexts); prefill rows
    # and a CPU logic test's default-backend rows are left alone
    rows = ["H100,d,decode,128,32,32,1,512,128,False,468e-6,0,0,flash,1\n",
            "H100,d,decode,32,32,32,1,2048,128,False,410e-6,0,0,flash,1\n",
            "H100,d,decode,128,32,8,1,512,128,False,117e-6,0,0,flash+gqa,1\n",
            "H100,d,prefill,4,32,32,512,512,128,False,63e-6,0,0,flash,1\n",
            "cpu,d,decode,16,8,8,1,64,32,False,1e-4,0,0,default,1\n"]  # fmt: skip
    path = tmp_path / "attention.csv"
    path.write_text(ATTENTION + "".join(rows))
    short, long, gqa = check_decode_edges.check(path, "h100-sxm")
    system = load_system("h100-sxm", 1)
    assert (short["batch"], short["context"], gqa["kv_heads"]) == (128, 512, 8)
    assert short["predicted_s"] == check_decode_edges.predicted(128, 32, 32, 512, 128, system)
    assert short["log_error"] == pytest.approx(math.log(short["predicted_s"] / 468e-6))
    # the same bytes: without the stall the two contexts cost alike, with it the short one more
    assert short["no_stall_s"] == pytest.approx(long["no_stall_s"], rel=0.02)
    assert short["predicted_s"] - short["no_stall_s"] > 3 * (
        long["predicted_s"] - long["no_stall_s"]
    )
    # the patch is undone: the model keeps its stall after a check
    assert check_decode_edges.predicted(128, 32, 32, 512, 128, system) == short["predicted_s"]


def test_check_decode_edges_says_what_is_missing(tmp_path, capsys):
    (tmp_path / "attention.csv").write_text(
        ATTENTION + "H100,d,prefill,1,32,32,512,512,128,True,2e-5,0,0,flash,1\n"
    )
    assert check_decode_edges.main([str(tmp_path)]) == 2
    assert "no flash decode rows" in capsys.readouterr().err


def test_the_microbench_readmes_pre_registered_figures_are_the_checks_own():
    # benchmarks/microbench/README.md quotes two pre-registered predictions: they are what the
    # check scripts compute now (docs cannot drift). Where a model change moves them, add the
    # new figures beside the old ones with the commit they were registered at: the old ones are
    # the record of what was predicted before the measurement
    readme = (ROOT / "benchmarks/microbench/README.md").read_text()
    a100, h100 = load_system("a100-sxm-80gb", 1), load_system("h100-sxm", 1)
    t128, t129 = (check_edge.predicted(m, 28672, 4096, a100) * 1e6 for m in (128, 129))
    assert f"roofsim {t128:.1f} -> {t129:.1f} us" in readme
    flops = 4.0 * 16 * 32 * 256 * 256 * 128
    with_edges, without = (flops / check_flash_edges.predicted(16, 32, 256, 128, h100, e) / 1e12
                           for e in (True, False))  # fmt: skip
    assert f"b16 s256: {with_edges:.1f} TFLOP/s with them, {without:.1f} without" in readme
    stalled, free = (check_decode_edges.predicted(1024, 32, 32, 64, 128, h100, s) * 1e6
                     for s in (True, False))  # fmt: skip
    assert f"kv 64, 32 KV heads: {stalled:.1f} us with it, {free:.1f} without" in readme
