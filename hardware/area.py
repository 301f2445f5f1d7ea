"""Die area of a chip, from what it holds and the process node it is built on.

The die is the sum of its blocks, each costed at 7 nm and scaled to the chip's node (a
process-node preset, ``hardware/nodes/*.toml``): logic by transistor density, SRAM by the
high-density bit cell, PHYs not at all (analog and I/O do not shrink). The blocks:

- **matrix units**: the multiply-accumulators the peaks imply, peak / (2 x clock) per dtype,
  each at the area of an FP16 MAC scaled by (multiplier bits / 11)^2 (a multiplier grows with
  the square of its mantissa); the dtype needing the most area sizes the array (GPUs run every
  dtype on one array);
- **vector units and control**: per FMA lane at the quoted vector rate (vector / 2 x clock);
- **register files**, **caches** (tags and wide ports) and **scratchpads** (software-managed
  SRAM), per MiB; a core's **tensor memory** (``compute.tensor_memory``: the accumulators of an
  asynchronous MMA, Blackwell's TMEM) on every core built, costed as register file (no tags,
  read and written at the tensor cores' rate), so that a what-if on its size costs area;
- **core interconnect**: a crossbar share per core;
- **memory PHYs and controllers**: per HBM stack or DRAM channel;
- **links**: SerDes lanes for the link bandwidth at the node's lane rate, plus controllers;
- **host interface**: a PCIe x16 PHY and controller.

Per-core blocks are built for every core on the die, disabled ones included (``Silicon``).
The coefficients are LLMCompass's 7 nm component model (Zhang et al., "LLMCompass", ISCA 2024,
Table II and ``cost_model/cost_model.py``; read in benchmarks/research/area-cost-2026-12-03.md),
whose per-lane and per-core overheads were fitted there to the GA100 and Aldebaran die areas:
the A100 is therefore a fit row of the area validation, every other chip a test. Scratchpad
SRAM, which LLMCompass does not model, takes a dense-macro figure (below). Each coefficient
carries a relative uncertainty; the die's band is the root sum of squares of the one-at-a-time
changes each coefficient's band makes (node density included), the published value's
customary uncertainty propagation.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from hardware.chip import CACHE_LEVELS, Chip, ConfigError, System

#: the transistor density and SRAM bit cell the 7 nm coefficients are quoted at (CSET 7 nm;
#: TSMC N7 high-density cell)
REF_LOGIC_MTR_PER_MM2 = 96.3
REF_BITCELL_UM2 = 0.027
#: one exposure field: 26 x 33 mm (the lithography scanners' reticle limit)
RETICLE_MM2 = 858.0
#: the PCIe lanes of the host interface every chip has
HOST_LANES = 16
#: multiplier width in bits per dtype (significand with its hidden bit; integers as they are):
#: matrix-unit area scales with its square (LLMCompass scales its FPUs by (mantissa / 52)^2)
MULTIPLIER_BITS = {"fp32": 24, "tf32": 11, "fp16": 11, "bf16": 8, "fp8": 4, "int8": 8, "int4": 4,
                   "fp4": 2}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Coefficient:
    """A 7 nm block coefficient, its relative uncertainty (the band is value x (1 +- rel)) and
    its source."""

    value: float
    rel: float
    source: str


COEFFICIENTS: dict[str, Coefficient] = {
    "mac_fp16_mm2": Coefficient(
        263e-6, 0.3,
        "LLMCompass: FP64 FMA 685,300 transistors scaled by (11/52)^2 = 25.3 k transistors, "
        "263 um2 at 96.3 MTr/mm2 (a 16x16 FP16 array: 0.067 mm2)"),
    "vector_lane_mm2": Coefficient(
        1.72e-3, 0.3,
        "LLMCompass's GA100 SM vector units, 0.44 mm2, over its 256 FMA lanes at the quoted "
        "78 TFLOP/s 16-bit vector rate (78e12 / (2 x 1.41 GHz x 108 SMs))"),
    "control_lane_mm2": Coefficient(
        5.16e-3, 0.3,
        "LLMCompass's per-lane control overhead (996,200 transistors = 10,344 um2 per lane of a "
        "32-wide sub-core; fitted there to GA100 and Aldebaran): 1.32 mm2 per GA100 SM over "
        "the same 256 lanes"),
    "core_mm2": Coefficient(
        0.46, 0.3,
        "LLMCompass's per-core crossbar overhead, 44.3 M transistors (fitted there to GA100 and "
        "Aldebaran)"),
    "register_mm2_per_mib": Coefficient(
        6.24, 0.3,
        "LLMCompass (EMPIRE register-file model at 7 nm): 1.56 mm2 per GA100 SM's 256 KiB"),
    "cache_mm2_per_mib": Coefficient(
        2.37, 0.3,
        "LLMCompass: 1.70e-7 mm2 per bit over a CACTI array efficiency of 0.56-0.60 for large "
        "caches (48 MiB of GA100 L2 = 113.7 mm2)"),
    "scratchpad_mm2_per_mib": Coefficient(
        0.45, 0.4,
        "a chiplet TCO model's 7 nm SRAM density, 0.45 mm2/MB 'from real implementations' "
        "(Chiplet Cloud-style model, GitHub file id 4575481750 in the search index; estimate); "
        "2x the N7 bit cell per bit, against 11x for LLMCompass's caches"),
    "hbm_phy_mm2": Coefficient(
        10.45, 0.2,
        "LLMCompass: HBM2e PHY per 1024-bit stack from annotated A100/MI210 die photos; held "
        "for HBM3/3e (the interface width is the same)"),
    "hbm_controller_mtr": Coefficient(
        552.7, 0.3, "LLMCompass: HBM controller per stack, 552.7 M transistors (5.74 mm2 at 7 nm)"),
    "dram_channel_phy_mm2": Coefficient(
        3.0, 0.5,
        "estimate: a GDDR6/DDR5 x32 channel PHY; LLMCompass's DDR5 PHY unit is 1.45 mm2 and a "
        "GDDR6X PHY at 21 Gb/s is larger; no vendor figure was found"),
    "dram_channel_controller_mtr": Coefficient(
        69.0, 0.5, "estimate: LLMCompass's HBM controller per 128 bits (552.7 M / 8)"),
    "serdes_lane_mm2": Coefficient(
        0.236, 0.2,
        "LLMCompass: NVLink3 PHY 1.888 mm2 per link of 4 lanes each way (0.236 per lane and "
        "direction); NVLink4's 0.965 mm2 per 2 + 2 lanes gives 0.241"),
    "link_controller_mtr": Coefficient(
        80.6, 0.3,
        "LLMCompass: NVLink3 / NVLink4 controller 74.6 / 86.6 M transistors per link (25 GB/s "
        "per direction)"),
    "pcie_controller_mtr": Coefficient(
        5.37, 0.3, "LLMCompass: PCIe 5 controller 5.37 M transistors per lane"),
}  # fmt: skip

#: per-stack (HBM) or per-x32-channel (GDDR, LPDDR) or per-64-bit-channel (DDR) peak bandwidth,
#: bytes/s: the JEDEC pin rates x width (HBM2 2.0, HBM2e 3.6, HBM3 6.4, HBM3e 9.6 Gb/s x 1024;
#: GDDR6 16 Gb/s x 32; LPDDR5 6400 MT/s x 32; DDR5 4800 MT/s x 64)
SITE_BANDWIDTH = {
    "hbm2": 256e9, "hbm2e": 461e9, "hbm3": 819e9, "hbm3e": 1229e9, "hbm": 819e9,
    "gddr6": 64e9, "gddr": 64e9, "lpddr5": 25.6e9, "ddr5": 38.4e9,
}  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    """A process node: the densities that scale blocks from 7 nm, and what a wafer costs."""

    name: str
    full_name: str
    process_nm: tuple[float, ...]
    logic_mtr_per_mm2: float
    logic_band: tuple[float, float]
    sram_bitcell_um2: float
    serdes_gbps: float
    pcie_lane_mm2: float
    wafer_usd: float
    wafer_band: tuple[float, float]
    defect_density_per_cm2: float
    defect_band: tuple[float, float]
    sources: dict[str, str] = field(default_factory=dict)


def list_nodes() -> list[str]:
    """Names of the process-node presets, sorted by feature size (largest first)."""
    folder = resources.files("hardware") / "nodes"
    names = [p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml")]
    return sorted(names, key=lambda n: -load_node(n).process_nm[-1])


@cache
def load_node(name: str) -> Node:
    """A process-node preset by name (``n7``), or the one covering a feature size (``"7"``)."""
    folder = resources.files("hardware") / "nodes"
    files = {p.name[: -len(".toml")]: p for p in folder.iterdir() if p.name.endswith(".toml")}
    if name not in files:
        try:
            nm = float(name.removesuffix("nm"))
        except ValueError:
            raise ConfigError(
                f"silicon.node: unknown node {name!r}; available: {', '.join(sorted(files))}"
            ) from None
        return node_for_nm(nm)
    raw = tomllib.loads(files[name].read_text())
    return Node(
        name=raw["name"],
        full_name=raw["full_name"],
        process_nm=tuple(float(x) for x in raw["process_nm"]),
        logic_mtr_per_mm2=float(raw["logic_mtr_per_mm2"]),
        logic_band=tuple(raw["logic_band"]),
        sram_bitcell_um2=float(raw["sram_bitcell_um2"]),
        serdes_gbps=float(raw["serdes_gbps"]),
        pcie_lane_mm2=float(raw["pcie_lane_mm2"]),
        wafer_usd=float(raw["wafer_usd"]),
        wafer_band=tuple(raw["wafer_band"]),
        defect_density_per_cm2=float(raw["defect_density_per_cm2"]),
        defect_band=tuple(raw["defect_band"]),
        sources={k: v for k, v in raw.items() if k == "source" or k.endswith("_source")},
    )


def node_for_nm(process_nm: float) -> Node:
    """The node preset whose feature sizes are nearest ``process_nm`` (in log scale)."""
    folder = resources.files("hardware") / "nodes"
    nodes = [load_node(p.name[:-5]) for p in folder.iterdir() if p.name.endswith(".toml")]
    return min(nodes, key=lambda n: min(abs(math.log(nm / process_nm)) for nm in n.process_nm))


def chip_node(chip: Chip) -> Node:
    """The node a chip is built on: ``silicon.node``, else the preset nearest its process_nm."""
    if chip.silicon.node:
        return load_node(chip.silicon.node)
    if chip.process_nm is None:
        raise ConfigError(
            f"chip {chip.name!r}: the area model needs a process node; set process_nm or "
            "silicon.node"
        )
    return node_for_nm(float(chip.process_nm))


@dataclass(frozen=True, slots=True)
class Block:
    """One block of the die: its area and the coefficients it depends on (for the band)."""

    name: str
    mm2: float
    params: tuple[str, ...]
    per_core: bool = False  # built once per core (disabled cores included)


@dataclass(frozen=True, slots=True, kw_only=True)
class AreaEstimate:
    """The die area of one chip: blocks, total, band, and the per-die figure against the reticle."""

    chip: str
    node: Node
    dies: int
    blocks: tuple[Block, ...]
    die_area_mm2: float  # all dies
    band_mm2: tuple[float, float]
    published_mm2: float | None
    core_mm2: float  # one core's blocks (the unit that yield harvesting disables)
    cores_on_die: int
    cores_enabled: int

    @property
    def per_die_mm2(self) -> float:
        return self.die_area_mm2 / self.dies

    @property
    def fits_reticle(self) -> bool:
        return self.per_die_mm2 <= RETICLE_MM2

    def to_dict(self) -> dict:
        return {
            "chip": self.chip,
            "node": self.node.name,
            "dies": self.dies,
            "die_area_mm2": self.die_area_mm2,
            "die_area_band_mm2": list(self.band_mm2),
            "per_die_mm2": self.per_die_mm2,
            "reticle_mm2": RETICLE_MM2,
            "fits_reticle": self.fits_reticle,
            "published_die_area_mm2": self.published_mm2,
            "cores_on_die": self.cores_on_die,
            "cores_enabled": self.cores_enabled,
            "blocks_mm2": {b.name: b.mm2 for b in self.blocks},
        }


def main_memory_sites(chip: Chip) -> tuple[str, int]:
    """Main memory's technology and how many PHY sites (HBM stacks or DRAM channels) it needs;
    ("sram", 0) for a chip whose main memory is on the die."""
    from hardware.power import memory_technology

    main = chip.main_memory
    tech = memory_technology(main)
    if tech in ("sram", "") and not main.technology:
        return "sram", 0
    if tech not in SITE_BANDWIDTH:
        raise ConfigError(
            f"chip {chip.name!r}: memory level {main.name!r}: the area model knows the PHYs of "
            f"{', '.join(SITE_BANDWIDTH)}; set its technology"
        )
    sites = chip.silicon.memory_sites or math.ceil(
        main.bandwidth_bytes_per_s / SITE_BANDWIDTH[tech] - 1e-9
    )
    return tech, sites


def _link_bandwidth(system: System | None, chip: Chip, node: Node) -> float:
    """SerDes bandwidth per direction beyond the PCIe host link: ``silicon.link_bandwidth``,
    else the system's intra-node link where it is faster than the x16 host link (a chip whose
    peers talk over PCIe has no other links)."""
    if chip.silicon.link_bandwidth_bytes_per_s is not None:
        return chip.silicon.link_bandwidth_bytes_per_s
    if system is None:
        return 0.0
    host = HOST_LANES * (32e9 if node.pcie_lane_mm2 > 0.5 else 16e9) / 8  # gen5 / gen4 per lane
    link = system.intra_node.bandwidth_bytes_per_s
    return link if link > host * 1.01 else 0.0


def estimate_area(chip: Chip, system: System | None = None) -> AreaEstimate:
    """The die area of ``chip`` (``system``: the links it drives; see the module docstring)."""
    if chip.clock_hz is None:
        raise ConfigError(
            f"chip {chip.name!r}: the area model needs compute.clock_hz (the clock the peaks "
            "are quoted at: MACs = peak / (2 x clock)); set it"
        )
    si = chip.silicon
    if si.die_area_mm2:
        from hardware.cost import dies_per_wafer  # cost builds on area: imported here

        if dies_per_wafer(si.die_area_mm2) < 1:
            raise ConfigError(
                f"chip {chip.name!r}: a wafer-scale die ({si.die_area_mm2:,.0f} mm2) is outside "
                "the area and cost models, which are built from reticle-sized dies (GPU-class "
                "cores, many dies per wafer, yield without wafer-scale redundancy)"
            )
    node = chip_node(chip)
    c = {k: v.value for k, v in COEFFICIENTS.items()}
    logic = REF_LOGIC_MTR_PER_MM2 / node.logic_mtr_per_mm2  # 7 nm area -> this node
    sram = node.sram_bitcell_um2 / REF_BITCELL_UM2
    cores = si.cores_on_die or chip.n_cores
    built = cores / chip.n_cores  # per-core blocks are built for every core on the die
    f = 2 * chip.clock_hz
    macs = max(
        rate / f * (MULTIPLIER_BITS.get(dtype, 11) / 11) ** 2
        for dtype, rate in chip.peak_flops_per_s.items()
    )
    lanes = chip.vector_flops_per_s / f
    blocks = [
        Block("matrix", macs * built * c["mac_fp16_mm2"] * logic, ("mac_fp16_mm2", "logic"),
              True),
        Block("vector", lanes * built * c["vector_lane_mm2"] * logic, ("vector_lane_mm2", "logic"),
              True),
        Block("control", lanes * built * c["control_lane_mm2"] * logic,
              ("control_lane_mm2", "logic"), True),
        Block("core_interconnect", cores * c["core_mm2"] * logic, ("core_mm2", "logic"), True),
    ]  # fmt: skip
    if si.register_file_bytes:
        mib = si.register_file_bytes / 2**20
        blocks.append(Block("register_files", mib * c["register_mm2_per_mib"] * sram,
                            ("register_mm2_per_mib",), True))  # fmt: skip
    if chip.tensor_memory_bytes:
        mib = chip.tensor_memory_bytes * cores / 2**20
        blocks.append(Block("tensor_memory", mib * c["register_mm2_per_mib"] * sram,
                            ("register_mm2_per_mib",), True))  # fmt: skip
    tech, sites = main_memory_sites(chip)
    caches = si.caches if si.caches is not None else CACHE_LEVELS
    on_chip = chip.memory if tech == "sram" else chip.memory[:-1]
    for i, lvl in enumerate(on_chip):
        capacity = si.sram_on_die.get(lvl.name)
        local = i == 0 and len(chip.memory) > 1  # the innermost of several levels is per core
        if capacity is None:
            capacity = lvl.capacity_bytes * (built if local else 1)
        key = "cache_mm2_per_mib" if lvl.name in caches else "scratchpad_mm2_per_mib"
        blocks.append(Block(f"sram_{lvl.name}", capacity / 2**20 * c[key] * sram, (key,), local))
    if tech.startswith("hbm"):
        blocks += [
            Block("memory_phy", sites * c["hbm_phy_mm2"], ("hbm_phy_mm2",)),
            Block("memory_controller", sites * c["hbm_controller_mtr"] / node.logic_mtr_per_mm2,
                  ("hbm_controller_mtr", "logic_abs")),
        ]  # fmt: skip
    elif sites:
        blocks += [
            Block("memory_phy", sites * c["dram_channel_phy_mm2"], ("dram_channel_phy_mm2",)),
            Block("memory_controller",
                  sites * c["dram_channel_controller_mtr"] / node.logic_mtr_per_mm2,
                  ("dram_channel_controller_mtr", "logic_abs")),
        ]  # fmt: skip
    link = _link_bandwidth(system, chip, node)
    if link > 0:
        lanes_per_direction = link * 8 / (node.serdes_gbps * 1e9)
        blocks += [
            Block("link_phy", 2 * lanes_per_direction * c["serdes_lane_mm2"], ("serdes_lane_mm2",)),
            Block("link_controller", link / 25e9 * c["link_controller_mtr"]
                  / node.logic_mtr_per_mm2, ("link_controller_mtr", "logic_abs")),
        ]  # fmt: skip
    blocks += [
        Block("host_phy", HOST_LANES * node.pcie_lane_mm2, ()),
        Block("host_controller", HOST_LANES * c["pcie_controller_mtr"] / node.logic_mtr_per_mm2,
              ("pcie_controller_mtr", "logic_abs")),
    ]  # fmt: skip
    total = sum(b.mm2 for b in blocks)
    if not total < 1e9:  # a billion mm2 (a square metre) is no chip; nor is an overflow
        raise ConfigError(f"chip {chip.name!r}: its blocks come to {total:.3g} mm2 of silicon: "
                          "its rates or sizes are beyond any chip; lower the override")  # fmt: skip
    # the band: each coefficient (and the node's logic density) moved to each end of its band,
    # one at a time; the changes add in quadrature
    lo_sq = hi_sq = 0.0
    lo_d, hi_d = node.logic_band
    d = node.logic_mtr_per_mm2
    for param in (*COEFFICIENTS, "logic"):
        if param == "logic":  # a denser node shrinks every logic block
            ends = (d / hi_d, d / lo_d)
            keys = ("logic", "logic_abs")
        else:
            rel = COEFFICIENTS[param].rel
            ends = (1 - rel, 1 + rel)
            keys = (param,)
        for end in ends:
            delta = sum(b.mm2 * (end - 1) for b in blocks if any(k in b.params for k in keys))
            if delta < 0:
                lo_sq += delta**2
            else:
                hi_sq += delta**2
    per_core = sum(b.mm2 for b in blocks if b.per_core) / cores
    return AreaEstimate(
        chip=chip.name,
        node=node,
        dies=si.dies,
        blocks=tuple(blocks),
        die_area_mm2=total,
        band_mm2=(total - math.sqrt(lo_sq), total + math.sqrt(hi_sq)),
        published_mm2=si.die_area_mm2,
        core_mm2=per_core,
        cores_on_die=cores,
        cores_enabled=chip.n_cores,
    )
