"""The foundation's claims, derived end to end on real presets."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware import load_system
from sim import Bound, CapacityError, simulate
from workloads import Decode, Prefill, load_model


def test_llama2_70b_does_not_fit_on_one_h100(llama70b):
    with pytest.raises(CapacityError, match=r"needs 1\d\d GB per chip .* has 85.5 GB"):
        simulate(Decode(model=llama70b, batch=1, context=2048), load_system("h100-sxm", 1))


def test_llama2_70b_on_two_h100_is_memory_bound_and_no_faster_than_weights_over_bandwidth(
    llama70b,
):
    system = load_system("h100-sxm", 2)
    r = simulate(Decode(model=llama70b, batch=1, context=2048, tp=2), system)
    hbm = system.chip.main_memory
    assert r.memory.fits
    assert r.bound == Bound.MEMORY
    assert r.time_s >= r.memory.weights_bytes / hbm.bandwidth_bytes_per_s
    assert r.mfu < 0.02


def _decode_70b_tp8(batch):
    m = load_model("llama-2-70b")
    return simulate(Decode(model=m, batch=batch, context=512, tp=8), load_system("h100-sxm", 8))


def test_decode_mfu_rises_with_batch_and_the_bound_flips_where_the_ridge_says():
    batches = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
    results = [_decode_70b_tp8(b) for b in batches]
    mfus = [r.mfu for r in results]
    assert all(a < b for a, b in zip(mfus, mfus[1:], strict=False))
    # The GEMMs are the chip-level question: each bf16 weight (2 bytes) does 2·B FLOPs, so the
    # weight GEMMs turn compute-bound at B ≈ sustained FLOP/s / achievable bytes/s.
    chip = load_system("h100-sxm", 1).chip
    ridge = chip.sustained("bf16") / chip.main_memory.achievable_bytes_per_s
    flip = None
    for b, r in zip(batches, results, strict=True):
        gemm_time = {Bound.COMPUTE: 0.0, Bound.MEMORY: 0.0}
        for c in r.costs:
            if c.op.gemm is not None and c.bound in gemm_time:
                gemm_time[c.bound] += c.total_time_s
        if flip is None and gemm_time[Bound.COMPUTE] > gemm_time[Bound.MEMORY]:
            flip = b
    assert flip is not None
    assert ridge / 2 <= flip <= ridge * 2, (flip, ridge)
    assert results[0].bound == Bound.MEMORY


def test_mid_chip_matches_h100_on_decode_but_loses_prefill_by_3x(llama70b):
    def run(chip, workload):
        return simulate(workload, load_system(chip, 2)).time_s

    decode = Decode(model=llama70b, batch=1, context=2048, tp=2)
    prefill = Prefill(model=llama70b, batch=1, prompt=2048, tp=2)
    d_mid, d_h100 = run("mid-14nm-144g", decode), run("h100-sxm", decode)
    assert abs(d_mid / d_h100 - 1) <= 0.15
    assert run("mid-14nm-144g", prefill) >= 3 * run("h100-sxm", prefill)


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 512),
    context=st.integers(1, 8192),
    model=st.sampled_from(["llama-2-7b", "llama-3-8b", "mixtral-8x7b"]),
    chip=st.sampled_from(["h100-sxm", "a100-sxm-80gb", "mid-14nm-144g"]),
)
def test_mfu_is_a_fraction_and_totals_add_up(batch, context, model, chip):
    m = load_model(model)
    r = simulate(
        Decode(model=m, batch=batch, context=context), load_system(chip, 1), check_memory=False
    )
    assert 0 < r.mfu <= 1
    assert 0 < r.mbu <= 1
    assert r.time_s == pytest.approx(sum(row["time_s"] for row in r.op_rows()))
    assert sum(r.time_by_bound.values()) == pytest.approx(r.time_s)


def test_fp8_decode_is_faster_than_bf16_on_h100_and_refused_on_a100(llama7b):
    h100 = load_system("h100-sxm", 1)
    bf16 = simulate(Decode(model=llama7b, batch=1, context=1024), h100).time_s
    fp8 = simulate(Decode(model=llama7b, batch=1, context=1024, dtype="fp8"), h100).time_s
    assert fp8 < 0.7 * bf16
    from hardware import ConfigError

    with pytest.raises(ConfigError, match="no fp8 matrix units"):
        simulate(
            Decode(model=llama7b, batch=1, context=1024, dtype="fp8"), load_system("a100-sxm-80gb")
        )


def test_moe_decode_reads_fewer_weights_at_batch_1_than_at_batch_64():
    m = load_model("mixtral-8x7b")
    h100 = load_system("h100-sxm", 2)  # 93 GB of bf16 weights: two chips
    one = simulate(Decode(model=m, batch=1, context=512, tp=2), h100)
    many = simulate(Decode(model=m, batch=64, context=512, tp=2), h100)
    # batch 1 reads 2 of 8 experts: ~13 GB of 47 GB; batch 64 reads all of them
    assert one.hbm_bytes < 0.4 * many.hbm_bytes
