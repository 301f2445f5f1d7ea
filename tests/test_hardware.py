"""Chip presets load, carry sources, validate, and take --set overrides."""

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from hardware import ConfigError, list_chips, load_chip, load_system
from hardware.loader import load_chip_dict
from workloads import load_model

REQUIRED = [
    "a100-sxm-40gb", "a100-sxm-80gb", "a800", "h100-sxm", "h100-pcie", "h800", "h200", "b200",
    "l20", "l40s", "mi300x", "tpu-v5e", "tpu-v5p", "gaudi3", "ascend-910b", "groq-lpu",
    "cerebras-wse3", "mid-14nm-144g", "gb200", "mi325x", "mi355x",
]  # fmt: skip


def test_every_required_preset_is_shipped():
    assert set(REQUIRED) <= set(list_chips())


@pytest.mark.parametrize("name", REQUIRED)
def test_preset_loads_with_sources_and_sane_numbers(name):
    chip = load_chip(name)
    raw = load_chip_dict(name)
    assert raw["source"], "the chip as a whole cites a source"
    assert raw["compute"]["source"] and raw["compute"]["peak"]["source"]
    for level in raw["memory"]:
        assert level.get("source"), f"memory level {level['name']} cites a source"
    assert chip.main_memory.capacity_bytes > 1e8
    # dense 16-bit peaks of shipping chips lie between 50 TFLOP/s and 5 PFLOP/s (a wafer: 20)
    assert 50e12 < chip.peak("bf16") < (2e16 if name == "cerebras-wse3" else 5e15)
    assert 0 < chip.sustained_clock_fraction <= 1


@pytest.mark.parametrize("name", REQUIRED)
def test_a_dram_capacity_is_what_the_device_reports_with_its_source(name):
    # hardware/presets/SOURCES.md: main memory in DRAM is the device's total (binary units),
    # never a binary label read as decimal GB; an all-SRAM chip's memory is its die's
    main = load_chip_dict(name)["memory"][-1]
    if main["name"] == "sram":
        return
    assert main.get("capacity_source"), f"{name}: the main memory's capacity cites its report"
    assert re.search(r"(MiB|GiB| B)$", main["capacity"]), f"{name}: {main['capacity']!r}"


def test_groq_is_sram_only_and_mid_chip_matches_the_what_if():
    groq = load_chip("groq-lpu")
    assert groq.main_memory.name == "sram" and len(groq.memory) == 1
    mid = load_chip("mid-14nm-144g")
    assert mid.hypothetical
    assert mid.peak("bf16") == pytest.approx(188e12)
    assert mid.main_memory.capacity_bytes == pytest.approx(
        144 * 2**30
    )  # the what-if's 144 GB, binary
    assert mid.main_memory.bandwidth_bytes_per_s == pytest.approx(3.35e12)


def test_set_overrides_memory_level_and_nested_fields():
    chip = load_chip(
        "h100-sxm",
        [
            "hbm.bandwidth=6TB/s",
            "compute.peak.bf16=500TFLOP/s",
            "compute.n_cores=66",
            "l2.capacity=256MB",
        ],
    )
    assert chip.main_memory.bandwidth_bytes_per_s == 6e12
    assert chip.peak("bf16") == 500e12
    assert chip.n_cores == 66
    assert chip.level("l2").capacity_bytes == 256e6


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("hbm.bandwidth=0TB/s", "bandwidth must be > 0"),
        ("hbm.bandwidth=-1TB/s", "bandwidth must be > 0"),
        ("hbm.bandwidth=fast", "cannot read"),
        ("nonsense.field=1", "unknown field"),
        ("hbm.achievable_fraction=1.5", r"must be in \(0, 1\]"),
        ("compute.n_cores=0", "n_cores must be an integer >= 1"),
        ("no-equals-sign", "PATH=VALUE"),
    ],
)
def test_bad_overrides_raise_one_clear_error(override, match):
    with pytest.raises(ConfigError, match=match):
        load_chip("h100-sxm", [override])


def test_unknown_chip_lists_the_available_names():
    with pytest.raises(ConfigError, match="unknown chip 'h1000'.*h100-sxm"):
        load_chip("h1000")


def test_chip_from_user_toml_and_malformed_toml(tmp_path):
    good = tmp_path / "my.toml"
    good.write_text(
        'name = "mine"\n[compute]\nn_cores = 4\n[compute.peak]\nbf16 = "100 TFLOP/s"\n'
        '[[memory]]\nname = "hbm"\ncapacity = "16 GB"\nbandwidth = "1 TB/s"\n'
    )
    chip = load_chip(str(good))
    assert chip.name == "mine" and chip.peak("bf16") == 100e12
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [unclosed\n")
    with pytest.raises(ConfigError, match="malformed TOML"):
        load_chip(str(bad))


def test_missing_dtype_is_refused_by_name():
    with pytest.raises(ConfigError, match="no fp8 matrix units"):
        load_chip("a100-sxm-80gb").peak("fp8")


def test_system_takes_links_from_the_preset():
    system = load_system("h100-sxm", 8)
    assert system.n_chips == 8 and system.chips_per_node == 8
    assert system.intra_node.bandwidth_bytes_per_s > system.inter_node.bandwidth_bytes_per_s


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("compute.tile_k=abc", "compute.tile_k must be an integer, got 'abc'"),
        ("system.chips_per_node=nan", "system.chips_per_node must be an integer, got nan"),
        ("compute.gemm_tiles=2.5", "compute.gemm_tiles must be [[M, N], ...] of integers"),
        ("compute.cluster=[2]", "compute.cluster must be [cm, cn] of integers"),
        ("compute=5", "compute must be a table of fields, got 5"),
    ],
)
def test_a_chip_field_of_the_wrong_type_is_a_config_error_not_a_traceback(override, match):
    from hardware import ConfigError, load_system

    with pytest.raises(ConfigError, match=re.escape(match)):
        load_system("h100-sxm", 1, [override])


def test_a_chip_beside_other_work_keeps_each_cores_rates_and_loses_what_is_taken():
    chip = load_chip("h100-sxm")
    other = chip.beside(16, 1e12, 100.0)
    f = 116 / 132
    assert other.n_cores == 116
    assert other.peak("bf16") == pytest.approx(f * chip.peak("bf16"))
    assert other.vector_flops_per_s == pytest.approx(f * chip.vector_flops_per_s)
    assert other.memory[0].bandwidth_bytes_per_s == pytest.approx(
        f * chip.memory[0].bandwidth_bytes_per_s
    )  # a core's own SRAM goes with it
    assert other.level("l2") == chip.level("l2")  # shared
    hbm, hbm0 = other.main_memory, chip.main_memory
    assert hbm.achievable_bytes_per_s == pytest.approx(hbm0.achievable_bytes_per_s - 1e12)
    assert other.power_limit_watts == pytest.approx(chip.power_limit_watts - 100.0)
    # never all of the memory, nor the power below idle plus a tenth of the headroom
    starved = chip.beside(0, 1e15, 1e4)
    assert starved.n_cores == chip.n_cores
    assert starved.main_memory.achievable_bytes_per_s == pytest.approx(
        0.1 * hbm0.achievable_bytes_per_s
    )
    idle = chip.idle_watts
    assert starved.power_limit_watts == pytest.approx(idle + 0.1 * (chip.power_limit_watts - idle))


def test_beside_on_a_one_level_chip_and_one_without_a_power_model():
    from sim.cost.roofline import beside_slowdown, cost_ops
    from workloads.training import Training

    t = Training(model=load_model("llama-2-7b"), seq=2048, micro_batch=1, dp=8, zero=3)
    chunk = t.lower().stages[0][0]
    h100 = load_system("h100-sxm", 8)
    unpowered = replace(h100, chip=replace(h100.chip, matrix_pj_per_flop=None))
    assert not unpowered.chip.has_power_model
    # an all-SRAM chip's collectives take a sliver of its memory (no cores, no power limit hit)
    groq = load_system("groq-lpu", 8)
    assert (
        0.0
        <= beside_slowdown(cost_ops(chunk.forward, groq), cost_ops(chunk.fsdp_forward, groq), groq)
        < 1e-3
    )
    # without a power model the cores and the memory traffic are still taken, the power not
    ratio = beside_slowdown(
        cost_ops(chunk.forward, unpowered), cost_ops(chunk.fsdp_forward, unpowered), unpowered
    )
    cores = beside_slowdown(cost_ops(chunk.forward, unpowered), cost_ops(chunk.fsdp_forward, unpowered), unpowered,
                            take=("cores", "memory"))  # fmt: skip
    assert ratio > 0.01 and ratio == pytest.approx(cores, rel=1e-9)
    lpu = load_chip("groq-lpu")
    one = lpu.beside(0, 0.5 * lpu.main_memory.achievable_bytes_per_s, 0.0)
    assert one.main_memory.achievable_bytes_per_s == pytest.approx(
        0.5 * lpu.main_memory.achievable_bytes_per_s
    )


def test_a_72_gpu_nvlink_domain_reduces_in_log_depth_not_over_a_72_step_ring():
    """GB200 NVL72: a TP-64 all-reduce inside the NVLink domain must not cost more than the
    same group spread over 8-GPU B200 nodes and InfiniBand (it did with a ring-only domain)."""
    from sim.cost.collectives import collective_time

    gb, b = load_system("gb200", 64), load_system("b200", 64)
    small = 2e6
    assert collective_time("all_reduce", small, 64, gb) < collective_time(
        "all_reduce", small, 64, b
    )
    # an 8-GPU node still runs its ring, as NCCL does there
    ring8 = collective_time("all_reduce", small, 8, b)
    bw = b.intra_node.bandwidth_bytes_per_s * b.intra_node.achievable_fraction
    assert ring8 >= 2 * 7 / 8 * small / bw


def test_a_chip_alias_names_its_preset_in_any_case(capsys):
    from hardware.loader import chip_aliases, chip_name
    from sim.cli import main

    assert load_chip("h100") == load_chip("h100-sxm") and load_chip("A100").name == "a100-sxm-80gb"
    assert chip_name("TRILLIUM") == "tpu-v6e" and chip_name("H100-SXM") == "h100-sxm"
    assert chip_name("not-a-chip") is None
    # an alias is never a preset's own name, and names one that exists
    assert not set(chip_aliases()) & set(list_chips())
    assert set(chip_aliases().values()) <= set(list_chips())
    with pytest.raises(ConfigError, match="unknown chip 'h999'"):
        load_chip("h999")
    assert main(["decode", "--model", "llama-2-7b", "--chip", "a100", "--batch", "1",
                 "--context", "10"]) == 0  # fmt: skip
    assert "on 1x a100-sxm-80gb" in capsys.readouterr().out
    assert main(["chips"]) == 0
    assert "a100-sxm-80gb: a100, a100-80gb" in capsys.readouterr().out


def test_a_chip_name_is_a_file_only_where_it_is_one(tmp_path, monkeypatch, capsys):
    """A folder named like an alias does not hide the preset; a file named like one is the
    user's chip, and compare labels it as given (an alias: as its preset)."""
    from hardware.loader import chip_label, chip_source_text
    from sim.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "h100").mkdir()
    assert load_chip("h100").name == "h100-sxm"
    text = (Path(__file__).parents[1] / "hardware" / "presets" / "h100-sxm.toml").read_text()
    (tmp_path / "a100").write_text(text.replace('name = "h100-sxm"', 'name = "mine"', 1))
    assert load_chip("a100").name == "mine" and chip_label("a100") == "a100"
    assert chip_label("H100") == "h100-sxm"
    assert chip_source_text("v6e").startswith(chip_source_text("tpu-v6e")[:40])
    assert main(["compare", "--model", "llama-2-7b", "--chip", "a100,h100", "--batch", "8",
                 "--json"]) == 0  # fmt: skip
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["chip"] for r in rows] == ["a100", "h100-sxm"]
    with pytest.raises(ConfigError, match="--chip must be a chip name"):
        load_chip_dict(5)


def test_every_gh100_part_carries_the_dies_per_clock_fractions():
    # one die, one warp-level MMA path and one backward kernel: the GH100 fits (H100 SXM) hold
    # for every part built on it, whatever its SM count, clock or memory
    parts = ["h100-sxm", "h100-pcie", "h200", "h800", "gh200"]
    chips = [load_chip(name) for name in parts]
    for field in ("mma_sync_fraction", "attention_bwd_fraction", "split_accumulate_fraction"):
        values = {getattr(chip, field) for chip in chips}
        assert len(values) == 1 and None not in values, (field, values)


def test_every_gpu_pays_its_main_memory_latency_by_one_rule():
    # hardware/presets/SOURCES.md: the H100 SXM's calibrated 0.81 us, and every other GPU the
    # same scaled by its published pointer-chase latency over the H100 SXM's: none spared the
    # pipeline fill (and a memory-bound FlashAttention-2 wave's edges) that the H100 pays. The
    # ratios hold the chase's order: Ada's GDDR6 below V100, below Hopper, below A100 and the
    # big-cache parts
    latency = {name: load_chip(name).memory[-1].latency_s for name in list_chips()}
    kept_none = {"gaudi3", "tpu-v5e", "tpu-v5p", "tpu-v6e", "ascend-910b", "groq-lpu",
                 "cerebras-wse3"}  # fmt: skip
    assert {n for n, v in latency.items() if v == 0.0} == kept_none
    for name in set(latency) - kept_none - {"h100-sxm"}:
        main = [m for m in load_chip_dict(name)["memory"] if m.get("latency")]
        assert len(main) == 1 and main[0].get("latency_source"), name
    assert latency["h100-sxm"] == pytest.approx(0.81e-6)
    assert latency["l40s"] < latency["v100-sxm2"] < latency["h100-sxm"] < latency["a100-sxm-80gb"]
    assert latency["a100-sxm-80gb"] < latency["mi300x"] < latency["b200"]


def test_every_shipping_scale_up_link_has_its_measured_fraction():
    # the rule of hardware/presets/SOURCES.md for every vendor: a large all-reduce's bus
    # bandwidth over the per-direction link, measured where published, never the raw link
    # silently (NCCL's ring: ~0.75 of NVLink on H100 and A100, 0.69 of PCIe Gen4 on L40S); the
    # parts that keep 1.0 say why in SOURCES.md. On every Ampere-or-later NVIDIA part a large
    # all-reduce therefore takes longer than its raw link gives
    from sim.cost.collectives import collective_time

    raw_kept = {"v100-sxm2", "groq-lpu", "cerebras-wse3", "mid-14nm-144g"}
    nvidia = 0
    for name in sorted(set(list_chips()) - raw_kept):
        system = load_system(name, 8)
        link = system.intra_node
        assert 0.5 < link.achievable_fraction < 1.0, name
        assert load_chip_dict(name)["system"].get("intra_node_achievable_fraction_source"), name
        cc = system.chip.compute_capability
        if cc and float(cc) >= 8.0:
            raw = 64e6 * 2 * 7 / 8 / link.bandwidth_bytes_per_s  # a 64 MB ring, the raw link
            assert collective_time("all_reduce", 64e6, 8, system) > raw / 0.99, name
            nvidia += 1
    assert nvidia >= 15
