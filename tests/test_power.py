"""The derived power model: clocks under a power limit, energy in every result (issue 19)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from hardware import ConfigError, load_system
from sim import simulate
from sim.cli import main
from sim.cost.roofline import cost_ops
from sim.cost.simulate import matmul_fractions
from sim.studies.calibrate import gemm_op
from workloads import Decode, Prefill, load_model


def _tflops(system, op, steady=True) -> float:
    return op.flops / cost_ops([op], system, steady=steady)[0].time_s / 1e12


def test_the_anchor_gemms_settle_where_they_were_measured():
    # fit rows: the H100's 8192^3 bf16 loop at 700 W (clocks.csv), the A100's at 400 W (Azure)
    assert _tflops(load_system("h100-sxm"), gemm_op(8192, 8192, 8192, "bf16")) == pytest.approx(
        685.0, rel=0.01
    )
    a100 = load_system("a100-sxm-80gb")
    assert _tflops(a100, gemm_op(8192, 8192, 8192, "fp16")) == pytest.approx(253.7, rel=0.01)
    # a short burst runs faster than the steady state
    assert _tflops(a100, gemm_op(8192, 8192, 8192, "fp16"), steady=False) > 260


def test_a_throttled_op_draws_exactly_its_limit_and_a_memory_bound_one_keeps_its_clock():
    system = load_system("h100-sxm")
    chip = system.chip
    (c,) = cost_ops([gemm_op(8192, 8192, 8192, "bf16")], system)
    assert c.clock < 0.95
    power = chip.idle_watts + c.energy_j / c.time_s
    assert power == pytest.approx(chip.tdp_watts, rel=1e-3)
    decode = simulate(Decode(model=load_model("llama-3-8b"), batch=1, context=1024), system)
    assert all(x.clock == 1.0 for x in decode.costs)
    assert decode.energy_j / decode.time_s < chip.tdp_watts


def test_a_power_cap_slows_prefill_and_leaves_batch_1_decode():
    """issue 19's what-if: A100 at 330 W (gpt-fast's setting)."""
    m = load_model("llama-3-8b")
    base, capped = load_system("a100-sxm-80gb"), load_system("a100-sxm-80gb", 1, ["power.cap=330W"])
    pre = Prefill(model=m, prompt=2048)
    assert simulate(pre, capped).time_s >= 1.10 * simulate(pre, base).time_s
    dec = Decode(model=m, batch=1, context=1024)
    assert simulate(dec, capped).time_s <= 1.03 * simulate(dec, base).time_s
    with pytest.raises(ConfigError, match="must exceed power.idle"):
        load_system("a100-sxm-80gb", 1, ["power.cap=50W"])


def test_energy_adds_up_and_reaches_the_json(capsys):
    system = load_system("h100-sxm")
    r = simulate(Decode(model=load_model("llama-3-8b"), batch=8, context=1024), system)
    dynamic = sum(c.energy_j * c.op.count for c in r.costs)
    assert r.energy_j == pytest.approx(system.chip.idle_watts * r.time_s + dynamic)
    assert r.throughput["tokens_per_j"] == pytest.approx(r.tokens / r.energy_j)
    assert main(["decode", "--model", "llama-3-8b", "--chip", "h100-sxm", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["energy"]["total_j"] > 0 and out["energy"]["avg_power_w"] > 0
    assert out["throughput"]["tokens_per_j"] > 0
    assert main(["train", "--model", "llama-2-7b", "--chip", "h100-sxm", "--chips", "8",
                 "--dp", "8", "--zero", "1", "--tokens", "1e9", "--json"]) == 0  # fmt: skip
    train = json.loads(capsys.readouterr().out)
    assert train["energy"]["step_j"] > 0 and train["energy"]["run_kwh"] > 0


def test_a_chip_without_coefficients_derives_them_by_rule_and_more_energy_per_flop_throttles():
    system = load_system("h100-sxm")
    assert system.chip.has_power_model
    assert "power.vector_pj_per_flop" in system.chip.sources["power_derived"]
    bare = replace(system.chip, process_nm=None)
    assert bare.has_power_model  # the loaded values stay; derive() needs a node only to fill
    op = gemm_op(8192, 8192, 8192, "bf16")
    hot = load_system("h100-sxm", 1, ["power.matrix_pj_per_flop=2.0"])
    assert _tflops(hot, op) < 0.8 * _tflops(system, op)
    assert _tflops(hot, op, steady=False) == _tflops(system, op, steady=False)


def test_every_preset_derives_a_steady_matmul_fraction_below_its_burst_rate(capsys):
    assert main(["chips", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    for row in rows:
        assert 0 < row["steady_matmul_fraction"] <= row["burst_matmul_fraction"] + 1e-9, row
    fractions = matmul_fractions(load_system("h100-sxm"))
    assert fractions is not None and fractions[1] == pytest.approx(685 / 989.4, rel=0.01)


def test_serving_energy_is_idle_power_over_the_run_plus_the_iterations(capsys):
    """A lightly loaded replica sits between its idle floor and a busy one's power, and both
    stay under the TDP (decode is memory-bound)."""
    powers = []
    for rate in ("0.2", "20"):
        assert main(["serve", "--model", "llama-3-8b", "--chip", "h100-sxm", "--rate", rate,
                     "--duration", "30", "--seed", "1", "--json"]) == 0  # fmt: skip
        out = json.loads(capsys.readouterr().out)
        e = out["energy"]
        assert e["total_j"] == pytest.approx(e["avg_power_w"] * out["end_s"])
        assert e["tokens_per_j"] == pytest.approx(out["throughput"]["tokens_per_s"]
                                                  * out["end_s"] / e["total_j"])  # fmt: skip
        powers.append(e["chip_avg_power_w"])
    idle, tdp = 120.0, 700.0
    assert idle < powers[0] < powers[1] < tdp


def test_the_closed_form_clock_equals_bisection():
    """_clock_at_limit: the exp = 1 closed forms (compute- and memory-bound branches) find the
    same clock as bisecting the power equation."""
    import numpy as np

    from sim.cost.roofline import _clock_at_limit

    rng = np.random.default_rng(0)
    n = 2000
    e_clk, e_fix = rng.uniform(0.1, 2.0, n), rng.uniform(0.0, 0.5, n)
    c, m, o = rng.uniform(0.1, 1.0, n), rng.uniform(0.0, 1.5, n), rng.uniform(0.0, 0.05, n)
    budget = 0.5 * (e_clk + e_fix) / (o + np.maximum(c, m))  # below the power at s = 1
    exp = np.ones(n)
    closed = _clock_at_limit(e_clk, e_fix, budget, exp, c, m, o)
    pad = [np.append(x, x[0]) for x in (e_clk, e_fix, budget, exp, c, m, o)]
    pad[3][-1] = 1.5  # one other exponent: everything bisects
    bisected = _clock_at_limit(*pad)[:n]
    assert np.allclose(closed, bisected, rtol=1e-7, atol=1e-9)
    power = (e_clk * closed + e_fix) / (o + np.maximum(c / closed, m))
    assert np.allclose(power, budget, rtol=1e-9)


def test_a_chip_without_a_power_model_leaves_the_energy_cells_empty(tmp_path):
    """No process node: nothing to derive the coefficients from; results carry no energy and
    a sweep's energy columns stay empty but in place."""
    from hardware.loader import chip_source_text
    from sim.studies.sweep import evaluate_lines, spec_from_dict

    text = chip_source_text("h100-sxm").replace("process_nm = 4\n", "")
    path = tmp_path / "no-node.toml"
    path.write_text(text)
    system = load_system(str(path))
    assert not system.chip.has_power_model
    r = simulate(Decode(model=load_model("llama-3-8b"), batch=1, context=128), system)
    assert r.energy_j is None and "energy" not in r.to_dict()
    for kind in ("decode", "prefill"):
        spec = spec_from_dict({"system": {"chip": str(path)},
                               "workload": {"kind": kind, "model": "llama-3-8b"},
                               "axes": {"batch": [1, 2]}})  # fmt: skip
        lines = evaluate_lines(spec, [0, 1])
        header = spec.header
        for line in lines:
            cells = line.split(",")
            assert len(cells) == len(header)
            assert cells[header.index("energy_j")] == ""
            assert cells[header.index("status")] == "ok"
