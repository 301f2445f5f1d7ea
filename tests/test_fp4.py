"""FP4 (NVFP4) inference: 4-bit weights and GEMM inputs with an 8-bit scale per 16 elements,
on the chips whose matrix units have an fp4 rate (B200); attention stays at the KV precision."""

import pytest

from hardware import load_system
from hardware.area import MULTIPLIER_BITS
from hardware.chip import dtype_bytes
from sim import simulate
from sim.cli import main
from workloads import Decode, Prefill, load_model
from workloads.runtime import load_runtime

B200 = load_system("b200", 1)
L70 = load_model("llama-3-70b")
L8 = load_model("llama-3-8b")


def test_nvfp4_bytes_carry_the_block_scales():
    assert dtype_bytes("fp4") == pytest.approx(0.5 + 1 / 16)
    assert MULTIPLIER_BITS["fp4"] < MULTIPLIER_BITS["fp8"]


def test_fp4_weights_are_held_at_their_bytes():
    fp4 = Decode(model=L70, dtype="fp4", batch=1, context=512).lower().memory
    bf16 = Decode(model=L70, dtype="bf16", batch=1, context=512).lower().memory
    table = L70.embedding_params() * 2  # the embedding and LM head stay 16-bit
    assert fp4.weights_bytes - table == pytest.approx((bf16.weights_bytes - table) * 0.5625 / 2)


def test_batch1_decode_in_fp4_reads_fewer_bytes_than_fp8():
    t = {d: simulate(Decode(model=L70, dtype=d, batch=1, context=512), B200).time_s
         for d in ("fp8", "fp4")}  # fmt: skip
    # weights dominate: nearly the 1 / 0.5625 byte ratio, less the fixed costs
    assert 1.4 < t["fp8"] / t["fp4"] < 1 / 0.5625


def test_fp4_gemms_run_at_the_fp4_rate_and_attention_does_not():
    ops = {op.name: op for op in Prefill(model=L8, dtype="fp4", prompt=4096).lower().ops}
    assert ops["mlp_up"].dtype == "fp4"
    assert ops["attention"].dtype == "bf16"  # the KV cache's precision (bf16 here)
    ops8 = {op.name: op for op in
            Prefill(model=L8, dtype="fp4", kv_dtype="fp8", prompt=4096).lower().ops}  # fmt: skip
    assert ops8["attention"].dtype == "fp8"
    up = {d: simulate(Prefill(model=L8, dtype=d, prompt=8192), B200).costs for d in ("fp8", "fp4")}
    t = {d: sum(c.total_time_s for c in cs if c.op.name == "mlp_up") for d, cs in up.items()}
    # the big GEMMs are faster, though far from 2x: their L2 traffic binds (0.81 of fp8's time on
    # the B200 preset as of 2026-12-05)
    assert t["fp4"] < 0.9 * t["fp8"]


def test_a_separate_quant_kernel_writes_fp4_and_the_gemm_reads_it():
    w = Decode(model=L8, dtype="fp4", batch=8, context=512, runtime=load_runtime("vllm-0.6"))
    ops = {op.name: op for op in w.lower().ops}
    quant, up = ops["mlp_up_fp4_quant"], ops["mlp_up"]
    elems = up.gemm.m * up.gemm.k
    # reads the 16-bit activation, writes it in fp4 with its scales
    assert sum(quant.bytes.values()) == pytest.approx(elems * (2 + 0.5625))
    assert up.gemm.a_bytes == pytest.approx(0.5625)
    assert "mlp_up_fp8_quant" not in ops


def test_fp4_on_a_chip_without_fp4_units_is_one_line(capsys):
    code = main(["decode", "--model", "llama-3-8b", "--chip", "h100-sxm", "--dtype", "fp4"])
    err = capsys.readouterr().err
    assert code != 0 and "no fp4 matrix units" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("dtype", ["fp8", "fp4"])
def test_fp8_and_fp4_checkpoints_keep_the_lm_head_router_and_absorption_16_bit(dtype):
    ops = {op.name.split(".")[-1]: op
           for op in Decode(model=load_model("deepseek-v3"), dtype=dtype, tp=8).lower().ops}  # fmt: skip
    for name in ("lm_head", "router", "q_absorb", "v_absorb"):
        assert ops[name].dtype == "bf16" and ops[name].gemm.b_bytes == 2.0, name
    assert ops["experts_up"].dtype == dtype
    # their weights are held 16-bit too
    w8 = Decode(model=L8, dtype=dtype).lower().memory.weights_bytes
    head = L8.embedding_params() * (2.0 - dtype_bytes(dtype))
    body = (L8.n_params() - L8.embedding_params()) * dtype_bytes(dtype)
    assert w8 == pytest.approx(body + L8.embedding_params() * dtype_bytes(dtype) + head, rel=1e-3)


def test_weight_only_int4_quantises_the_lm_head_too():
    ops = {op.name: op for op in Decode(model=L8, dtype="int4").lower().ops}
    # 4 bits and the default layout's 16-bit scale over each group of 128 (workloads.llm)
    assert ops["lm_head"].gemm.b_bytes == 0.5 + 2 / 128
