"""Manufacturing cost of a chip: good dies from wafers, memory, packaging and the board.

- **Dies per wafer** on a 300 mm wafer: pi (d/2)^2 / S - pi d / sqrt(2 S) (the usual gross-die
  formula, as LLMCompass and ttm-cas use it).
- **Yield**, negative binomial (clustered defects): Y(A) = (1 + A D0 / alpha)^-alpha, alpha = 3
  (LLMCompass / ttm-cas, Ning et al., ISCA 2023). A die with spare cores is sold when its
  non-core area is clean and no more cores are bad than it has spares (each core clean with
  probability Y(core area)): harvesting, as the A100 sells 108 of 128 SMs.
- **Cost per good die** = wafer price / (dies per wafer x yield), per die of a multi-die chip.
- **Memory** (off-chip DRAM) at a price per GB by technology; **packaging**: a silicon
  interposer (CoWoS-class) for HBM at a price per mm2 of interposer, or an organic flip-chip
  package otherwise; **board, test and assembly** a flat figure.

Every price carries a band; the chip's band adds the parts' bands in quadrature (the die's
from the node's wafer price, defect density and the area band).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hardware.area import AreaEstimate, main_memory_sites
from hardware.chip import ConfigError

WAFER_DIAMETER_MM = 300.0
#: defect clustering of the negative-binomial yield model (LLMCompass / ttm-cas)
CLUSTERING_ALPHA = 3.0

#: DRAM price per GB by technology (value, low, high), US dollars
MEMORY_USD_PER_GB: dict[str, tuple[float, float, float]] = {
    # LLMCompass cost_model.py: HBM2e $7/GB ("consumer estimates", Oct 2023) to analysts' BOMs
    "hbm2e": (10.0, 7.0, 15.0),
    "hbm2": (10.0, 7.0, 15.0),
    # Raymond James / Silicon Analysts H100 BOM: ~$1,350 for 80 GB HBM3 (~$17/GB)
    "hbm3": (16.9, 12.0, 20.0),
    "hbm": (16.9, 12.0, 20.0),
    # Silicon Analysts B200 / MI300X BOMs: ~$2,900 for 192 GB (~$15/GB); TrendForce: HBM3E +20 %
    # over its predecessor in 2024-25 contracts
    "hbm3e": (15.1, 12.0, 20.0),
    # DRAMeXchange DDR5 spot $2.4/GB (Oct 2023, LLMCompass); GDDR6 and LPDDR5: estimate, no
    # price found (taken at 1.5x DDR5 with a wide band)
    "ddr5": (2.4, 2.0, 4.0),
    "lpddr5": (3.6, 2.4, 6.0),
    "gddr6": (3.6, 2.4, 8.0),
    "gddr": (3.6, 2.4, 8.0),
}
#: CoWoS-class interposer packaging per mm2 of interposer: H100's ~$750 (Raymond James /
#: Silicon Analysts) over its 1,546 mm2 interposer as this model sizes it (fitted to the H100:
#: its cost row is a fit row); band: estimate. B200's ~$1,100 and MI300X's ~$1,200 (Silicon
#: Analysts) are not fitted
INTERPOSER_USD_PER_MM2 = (0.485, 0.35, 0.60)
#: an HBM stack's footprint on the interposer (JEDEC HBM3 package 11 x 10 mm)
HBM_FOOTPRINT_MM2 = 110.0
#: interposer area over the dies and stacks it carries (routing, keep-outs): estimate
INTERPOSER_OVERHEAD = 1.1
#: an organic flip-chip package with assembly and test, no interposer: CSET 'AI Chips' (2020)
#: $80 per 5 nm chip; band: estimate
FLIP_CHIP_USD = (80.0, 50.0, 150.0)
#: the board (SXM/OAM module or PCIe card: VRMs, components), final test and assembly:
#: Silicon Analysts' MI300X test line $600; Raymond James' H100 split puts $920 on test and
#: assembly; CSET's $80 is the bare-chip floor
BOARD_USD = (600.0, 300.0, 950.0)


def dies_per_wafer(die_mm2: float, diameter_mm: float = WAFER_DIAMETER_MM) -> float:
    """Gross dies of ``die_mm2`` on a round wafer (edge loss included)."""
    return math.pi * (diameter_mm / 2) ** 2 / die_mm2 - math.pi * diameter_mm / math.sqrt(
        2 * die_mm2
    )


def yield_fraction(
    area_mm2: float, defects_per_cm2: float, alpha: float = CLUSTERING_ALPHA
) -> float:
    """Negative-binomial yield of ``area_mm2`` at ``defects_per_cm2``."""
    return (1 + area_mm2 / 100 * defects_per_cm2 / alpha) ** -alpha


def harvested_yield(
    die_mm2: float, core_mm2: float, cores: int, spares: int, defects_per_cm2: float
) -> float:
    """Share of dies sellable with up to ``spares`` of their ``cores`` bad: the rest of the
    die clean, and at most ``spares`` cores hit (each clean with its own yield)."""
    rest = max(die_mm2 - cores * core_mm2, 0.0)
    good = yield_fraction(rest, defects_per_cm2)
    q = yield_fraction(core_mm2, defects_per_cm2)
    cores_ok = sum(math.comb(cores, k) * (1 - q) ** k * q ** (cores - k) for k in range(spares + 1))
    return good * cores_ok


@dataclass(frozen=True, slots=True, kw_only=True)
class CostEstimate:
    """One chip's manufacturing cost, by part, with the band."""

    die_usd: float  # all dies
    dies_per_wafer: float
    yield_fraction: float
    memory_usd: float
    package_usd: float
    board_usd: float
    band_usd: tuple[float, float]

    @property
    def total_usd(self) -> float:
        return self.die_usd + self.memory_usd + self.package_usd + self.board_usd

    def to_dict(self) -> dict:
        return {
            "cost_usd": self.total_usd,
            "cost_band_usd": list(self.band_usd),
            "die_usd": self.die_usd,
            "dies_per_wafer": self.dies_per_wafer,
            "yield": self.yield_fraction,
            "memory_usd": self.memory_usd,
            "package_usd": self.package_usd,
            "board_usd": self.board_usd,
        }


def _die_cost(
    area: AreaEstimate, die_mm2: float, wafer: float, d0: float
) -> tuple[float, float, float]:
    per_die = die_mm2 / area.dies
    cores = area.cores_on_die // area.dies
    spares = (area.cores_on_die - area.cores_enabled) // area.dies
    y = harvested_yield(per_die, area.core_mm2 * per_die / area.per_die_mm2, cores, spares, d0)
    dpw = dies_per_wafer(per_die)
    if not dpw > 0 or not y > 0:
        raise ConfigError(f"a die of {per_die:.3g} mm2 fits no wafer (no working die): its "
                          "blocks' rates or sizes are beyond any chip; lower the override")  # fmt: skip
    return area.dies * wafer / (dpw * y), dpw, y


def estimate_cost(area: AreaEstimate, chip) -> CostEstimate:
    """The cost of the chip whose die ``area`` describes (``chip``: its memory)."""
    node = area.node
    die, dpw, y = _die_cost(area, area.die_area_mm2, node.wafer_usd, node.defect_density_per_cm2)
    tech, sites = main_memory_sites(chip)
    # DRAM is sold, and its price per GB quoted, in the binary GB of its dies (an "80 GB" H100
    # holds 80 GiB). The presets give capacity as the device reports it: ~1 % below the DRAM on
    # the package for most parts, but 7 % below on the B200 (179 of 192 GiB reported) and 6 % on
    # the ECC-GDDR6 parts (L40S, L20: 45 of 48 GiB), whose memory cost is that much low here
    gb = chip.main_memory.capacity_bytes / 2**30
    price = MEMORY_USD_PER_GB.get(tech, (0.0, 0.0, 0.0)) if sites else (0.0, 0.0, 0.0)
    memory = gb * price[0]
    if tech.startswith("hbm"):
        interposer = INTERPOSER_OVERHEAD * (area.die_area_mm2 + sites * HBM_FOOTPRINT_MM2)
        pack = tuple(interposer * p for p in INTERPOSER_USD_PER_MM2)
    else:
        pack = tuple(p * area.dies for p in FLIP_CHIP_USD)
    deltas = [
        # the die: wafer price, defect density and area, each to both ends
        *(_die_cost(area, area.die_area_mm2, w, node.defect_density_per_cm2)[0] - die
          for w in node.wafer_band),
        *(_die_cost(area, area.die_area_mm2, node.wafer_usd, d)[0] - die for d in node.defect_band),
        *(_die_cost(area, a, node.wafer_usd, node.defect_density_per_cm2)[0] - die
          for a in area.band_mm2),
        gb * (price[1] - price[0]), gb * (price[2] - price[0]),
        pack[1] - pack[0], pack[2] - pack[0],
        BOARD_USD[1] - BOARD_USD[0], BOARD_USD[2] - BOARD_USD[0],
    ]  # fmt: skip
    total = die + memory + pack[0] + BOARD_USD[0]
    low = math.sqrt(sum(d * d for d in deltas if d < 0))
    high = math.sqrt(sum(d * d for d in deltas if d > 0))
    return CostEstimate(
        die_usd=die,
        dies_per_wafer=dpw,
        yield_fraction=y,
        memory_usd=memory,
        package_usd=pack[0],
        board_usd=BOARD_USD[0],
        band_usd=(total - low, total + high),
    )
