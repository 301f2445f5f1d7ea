"""Die area and manufacturing cost (issue 20): hardware.area, hardware.cost, ``roofsim area``."""

from __future__ import annotations

import json
import math

import pytest

from hardware import ConfigError, load_chip, load_system
from hardware.area import RETICLE_MM2, chip_node, estimate_area, list_nodes, load_node
from hardware.cost import dies_per_wafer, estimate_cost, harvested_yield, yield_fraction
from sim.cli import main


def _area(chip: str, *sets: str):
    system = load_system(chip, 1, list(sets))
    return estimate_area(system.chip, system)


@pytest.mark.parametrize("chip, published", [("h100-sxm", 814), ("a100-sxm-80gb", 826)])
def test_area_json_lands_near_the_published_die_with_the_band_around_it(chip, published, capsys):
    assert main(["area", chip, "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert abs(r["die_area_mm2"] / published - 1) <= 0.15
    low, high = r["die_area_band_mm2"]
    assert low < published < high
    assert low < r["die_area_mm2"] < high
    assert r["published_die_area_mm2"] == published
    clow, chigh = r["cost_band_usd"]
    assert clow < r["cost_usd"] < chigh
    parts = r["die_usd"] + r["memory_usd"] + r["package_usd"] + r["board_usd"]
    assert parts == pytest.approx(r["cost_usd"])
    assert sum(r["blocks_mm2"].values()) == pytest.approx(r["die_area_mm2"])


def test_dies_per_wafer_and_yield_follow_their_textbook_forms():
    # pi 150^2 / 826 - pi 300 / sqrt(2 x 826) = 62.4 (benchmarks/research/area-cost-2026-12-03.md)
    assert dies_per_wafer(826) == pytest.approx(62.4, abs=0.05)
    # negative binomial: (1 + A D0 / 3)^-3; a tiny die yields like Poisson e^-AD0
    assert yield_fraction(826, 0.15) == pytest.approx((1 + 8.26 * 0.15 / 3) ** -3)
    assert yield_fraction(1.0, 0.1) == pytest.approx(math.exp(-0.001), rel=1e-5)
    # spares sell dies a defect would otherwise scrap; none: the die must be clean everywhere
    plain = harvested_yield(800, 4, 128, 0, 0.1)
    assert harvested_yield(800, 4, 128, 20, 0.1) > plain
    assert plain == pytest.approx(yield_fraction(800 - 512, 0.1) * yield_fraction(4, 0.1) ** 128)


def test_a_smaller_node_shrinks_logic_more_than_sram_and_phys_not_at_all():
    at7 = _area("h100-sxm", "silicon.node=n7")
    at3 = _area("h100-sxm", "silicon.node=n3")
    b7 = {b.name: b.mm2 for b in at7.blocks}
    b3 = {b.name: b.mm2 for b in at3.blocks}
    assert b3["memory_phy"] == b7["memory_phy"]
    logic = b3["matrix"] / b7["matrix"]
    sram = b3["sram_l2"] / b7["sram_l2"]
    assert logic < sram < 1
    assert at3.die_area_mm2 < at7.die_area_mm2


def test_more_sram_or_compute_costs_area_and_money():
    base = _area("mid-14nm-144g")
    bigger = _area("mid-14nm-144g", "sram.capacity=128MiB")
    faster = _area("mid-14nm-144g", "compute.peak.bf16=376TFLOP/s", "compute.peak.fp16=376TFLOP/s")
    assert bigger.die_area_mm2 > base.die_area_mm2
    assert faster.die_area_mm2 > base.die_area_mm2
    chip = load_system("mid-14nm-144g").chip
    assert estimate_cost(bigger, chip).die_usd > estimate_cost(base, chip).die_usd


def test_tensor_memory_is_a_block_of_every_core_built_and_a_what_if_on_it_costs_area():
    """Blackwell's tensor memory (``compute.tensor_memory``) is costed as register file on
    every core built: doubling it adds as much as its first 256 KiB an SM, the same area the
    register-file figure held it in before; a chip without it has no such block."""
    base = _area("b200")
    tmem = {b.name: b.mm2 for b in base.blocks}["tensor_memory"]
    regs = {b.name: b.mm2 for b in base.blocks}["register_files"]
    assert tmem == pytest.approx(regs)  # 256 KiB of each an SM
    double = _area("b200", "compute.tensor_memory=512KiB")
    assert double.die_area_mm2 - base.die_area_mm2 == pytest.approx(tmem)
    assert "tensor_memory" not in {b.name for b in _area("h100-sxm").blocks}


def test_two_dies_split_the_area_and_a_die_past_the_reticle_says_so(capsys):
    b200 = _area("b200")
    assert b200.dies == 2 and b200.per_die_mm2 == pytest.approx(b200.die_area_mm2 / 2)
    huge = _area("h100-sxm", "sram.capacity=400MiB")
    assert huge.per_die_mm2 > RETICLE_MM2 and not huge.fits_reticle
    assert main(["area", "h100-sxm", "--set", "sram.capacity=400MiB"]) == 0
    assert "over the 858 mm2 reticle" in capsys.readouterr().out


def test_nodes_load_by_name_or_feature_size():
    assert list_nodes()[0] == "n16" and list_nodes()[-1] == "n3"
    assert load_node("14").name == "n16"
    assert load_node("6nm").name == "n7"
    # Samsung's 8 nm class (GA102) has its own node, between the 16 nm and 7 nm classes
    s8, n7, n16 = load_node("8"), load_node("n7"), load_node("n16")
    assert s8.name == "s8" and chip_node(load_chip("a10g")).name == "s8"
    assert n16.logic_mtr_per_mm2 < s8.logic_mtr_per_mm2 < n7.logic_mtr_per_mm2
    assert n7.sram_bitcell_um2 < s8.sram_bitcell_um2 < n16.sram_bitcell_um2


@pytest.mark.parametrize(
    "argv, words",
    [
        (["area", "h100-sxm", "--set", "silicon.node=n9"], "silicon.node: unknown node 'n9'"),
        (["area", "h100-sxm", "--set", "silicon.dies=0"], "silicon.dies must be an integer"),
        (["area", "h100-sxm", "--set", "silicon.cores_on_die=100"], "silicon.cores_on_die"),
        (["area", "ascend-910b"], "compute.clock_hz"),
        (["area", "h100-sxm", "--set", 'silicon.caches=["slc"]'], "silicon.caches names 'slc'"),
    ],
)
def test_bad_silicon_input_is_one_line_naming_the_field(argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "\n" not in err and "Traceback" not in err


def test_unknown_silicon_field_is_refused():
    with pytest.raises(ConfigError, match="unknown field 'silicon.area'"):
        from hardware import load_chip

        load_chip("h100-sxm", ["silicon.area=1"])


def test_every_preset_has_a_positive_area_and_cost_or_a_one_line_refusal(capsys):
    # a wafer-scale die (Cerebras) gave -1 dies per wafer and a cost of -2e147 dollars
    from hardware import list_chips

    for name in list_chips():
        system = load_system(name, 1)
        try:
            area = estimate_area(system.chip, system)
        except ConfigError as exc:
            assert "\n" not in str(exc) and name in str(exc)
            continue
        cost = estimate_cost(area, system.chip)
        assert area.die_area_mm2 > 0 and cost.dies_per_wafer >= 1, name
        assert 0 < cost.yield_fraction <= 1 and 0 < cost.total_usd < math.inf, name
    assert main(["area", "cerebras-wse3"]) == 2
    assert "wafer-scale die (46,225 mm2)" in capsys.readouterr().err
