"""The power model's coefficients: what a chip draws idle, per FLOP and per byte moved.

A chip's power while an op runs at clock fraction s (1 = the clock its burst rates were
measured at) is

    P(s) = idle + (E_clocked * s**(a - 1) + E_fixed) / t(s)

where E_clocked is the energy of the op's matrix and vector FLOPs and of its on-chip traffic
(they run on the core clock, and their energy per operation falls with the voltage as the clock
falls: dynamic power ~ f V^2 ~ f^a, a = ``dvfs_exponent``), E_fixed that of its main-memory and
link traffic (their own clocks), and t(s) the op's time with its compute and on-chip transfers
stretched by 1/s. When P(1) exceeds the power limit the clock falls until P(s) equals it
(``sim.cost.roofline``); a memory-bound op draws little and keeps its clock, as GPUs do.

Every coefficient a preset does not give is derived here by a stated rule, so a chip with no
measurement, real or hypothetical, gets a power model the same way as a measured one:

- ``matrix_pj_per_flop`` (one dense 16-bit matrix FLOP, operand delivery from the core's SRAM
  included): the nearest of two fitted anchors, the H100 SXM (4 nm) and the A100 SXM (7 nm),
  each fitted to the steady rate of an 8192^3 GEMM at its TDP (``benchmarks/fit_power.py``;
  those rows are fit rows in validation), scaled to the chip's node by ``NODE_ENERGY``. A
  preset fitted the same way to its own architecture's steady GEMM gives the value itself
  (Blackwell: b200 and gb200, fitted to GB200's fp8 GEMM at 1200 W).
- ``vector_pj_per_flop``: ``VECTOR_OVER_MATRIX`` x the matrix figure at the same node.
- on-chip levels: ``REUSE_PJ_PER_BYTE`` for the level operands cross the die through (L2),
  ``LOCAL_PJ_PER_BYTE`` for a core's local SRAM (and an all-SRAM chip's main memory).
- main memory: by technology (``MEMORY_PJ_PER_BYTE``; the level's ``technology`` field, else
  read from its name).
- idle: ``IDLE_OVER_TDP`` x the TDP.
- links: ``LINK_PJ_PER_BYTE``.
"""

from __future__ import annotations

import math
from dataclasses import replace

from hardware.chip import Chip, ConfigError, MemoryLevel

# ---- anchors and rules (each value's source beside it; hardware/presets/SOURCES.md explains) ----
#: energy per operation at iso-speed by process node (nm), relative to 7 nm: TSMC's stated power
#: reductions chained node to node (16FF+ -> N7 -60 %, N10 -> N7 -40 %, N7 -> N5 -30 %,
#: N5 -> N3 -25..30 %; N4 taken as N5 less 10 %: tsmc.com 7nm/5nm technology pages, IEDM 2016
#: and 2019 reports); 28 nm: 16FF+ claims -50 % vs 28HPM. Interpolated log-log.
NODE_ENERGY = ((3.0, 0.50), (4.0, 0.63), (5.0, 0.70), (7.0, 1.0), (10.0, 1.67), (16.0, 2.5),
               (28.0, 5.0))  # fmt: skip

#: fitted matrix energy per dense 16-bit FLOP (pJ) of the anchor chips, by process node (nm):
#: benchmarks/fit_power.py fits each to its steady 8192^3 GEMM at the TDP (H100: 685 TFLOP/s at
#: 700 W, benchmarks/microbench/results/h100-sxm-2026-11-23/clocks.csv; A100: 253.7 TFLOP/s at
#: 400 W, Azure ND A100 v4 GEMM after 10,000 warm-ups). Another node takes the nearest anchor
#: scaled by NODE_ENERGY.
MATRIX_PJ_ANCHORS = ((4.0, 0.4689), (7.0, 0.5735))

#: main-memory energy per byte by technology (pJ/B = 8 x pJ/bit), the whole path a byte takes
#: from the DRAM to the chip's L2: Antepara et al., "Benchmark-driven Models for Energy Analysis
#: and Attribution of GPU-Accelerated Supercomputing" (SC'25), Table 3, regress it from board
#: power under microbenchmarks: 13.11 pJ/bit on the A100 (HBM2e), 11.68 on GH200's Hopper GPU
#: (HBM3), 14.72 on MI300A (HBM3); the DRAM device alone is ~4 pJ/bit of it (HBM2 3.97, O'Connor
#: et al., MICRO 2017; HBM3E 3.9, Samsung), the rest controller, PHY and fabric. HBM2 and HBM3e
#: take their neighbours' values. GDDR6: RTX 3090 GDDR6X 21.2 pJ/bit over L2 (NVML board energy
#: microbenchmark audit); DDR5 11.8 pJ/bit (DRAMsim3 with Micron IDD) plus ~6 of controller and
#: PHY as for HBM; LPDDR5 ~5 device + ~6
MEMORY_PJ_PER_BYTE: dict[str, float] = {
    "hbm2e": 105.0,
    "hbm2": 105.0,
    "hbm3e": 93.0,
    "hbm3": 93.0,
    "hbm": 93.0,
    "gddr6": 170.0,
    "gddr": 170.0,
    "lpddr5": 88.0,
    "ddr5": 142.0,
}
#: the on-chip level that operands cross the die through (L2, global buffer), per byte moved
#: to or from the cores: 4.71 (A100) and 4.87 (GH200) pJ/bit, SC'25 Table 3. Wire-dominated and
#: not scaled by node (7 nm and 4 nm measure alike)
REUSE_PJ_PER_BYTE = 38.0
#: a core's local SRAM (L1 / shared memory), per byte that reaches the cores: 1.59 (A100) and
#: 1.45 (GH200) pJ/bit, SC'25 Table 3; also an all-SRAM chip's main memory
LOCAL_PJ_PER_BYTE = 12.0
#: a byte read inside a processing-in-memory DRAM (bank to the in-memory units): the device's
#: row activation and on-die data movement, without its I/O, PHY, controller or fabric: HBM2
#: 1.21 + 2.24 pJ/bit of its 3.92 (O'Connor et al., "Fine-Grained DRAM", MICRO 2017)
PIM_PJ_PER_BYTE = 27.6
#: vector-unit FLOP over matrix FLOP energy at the same node: a SIMT FMA pays instruction fetch,
#: decode and register-file operand delivery for one or two FLOPs (Dally, Hot Chips 2023: ~30 pJ
#: overhead on a 1.5 pJ HFMA at 45 nm; HMMA amortises it to 22 %); measured V100 CUDA-core FP32
#: ~17 pJ/FLOP at 12 nm (te42kyfo/gpu-benches cuda-roofline) against ~1.4 pJ for a 7 nm
#: tensor-core FLOP here: ~10x
VECTOR_OVER_MATRIX = 10.0
#: the power floor of a chip that holds a running job (clocks up, context loaded) over its TDP:
#: H100 120 W / 700 (bare idle 71.8 W plus a CUDA context's +52 W, Vadari, arXiv 2605.23918),
#: A100 90 / 400, B200 185 / 1000, MI300X 191 / 750 (rocm-smi at 0 % with a model loaded,
#: ROCm/legacy-rocm-build #5231): 0.17-0.25, median 0.2
IDLE_OVER_TDP = 0.2
#: chip-to-chip link energy per byte sent: one 112G SerDes hop ~5.5 pJ/bit (VLSI 2022, 5 nm
#: 5.6 pJ/bit per lane), x2 through a switch, ~12 pJ/bit
LINK_PJ_PER_BYTE = 96.0
#: dynamic power ~ clock^DVFS_EXPONENT while a power limit holds the clock down: P ~ f V^2, with
#: V(f) from a production AI accelerator's V/f curve (Tenstorrent Blackhole firmware,
#: tenstorrent/tt-zephyr-platforms lib/tenstorrent/bh_arc/vf_curve.c): 2.03 over 0.8-1.0 of
#: the top clock (1.7 over 0.6-1.0)
DVFS_EXPONENT = 2.0


def node_scale(process_nm: float) -> float:
    """Energy per operation at ``process_nm`` over that at 7 nm (NODE_ENERGY, log-log)."""
    nodes = [math.log(n) for n, _ in NODE_ENERGY]
    energy = [math.log(e) for _, e in NODE_ENERGY]
    x = math.log(process_nm)
    if x <= nodes[0]:
        i = 0
    elif x >= nodes[-1]:
        i = len(nodes) - 2
    else:
        i = next(j for j in range(len(nodes) - 1) if nodes[j] <= x <= nodes[j + 1])
    w = (x - nodes[i]) / (nodes[i + 1] - nodes[i])
    return math.exp(energy[i] + w * (energy[i + 1] - energy[i]))


def matrix_pj_rule(process_nm: float) -> float:
    """Matrix energy per 16-bit FLOP at ``process_nm``: the nearest fitted anchor (in log node),
    scaled by NODE_ENERGY."""
    node, pj = min(MATRIX_PJ_ANCHORS, key=lambda a: abs(math.log(a[0] / process_nm)))
    return pj * node_scale(process_nm) / node_scale(node)


def memory_technology(level: MemoryLevel) -> str:
    """The technology of a memory level: its ``technology`` field, else read from its name."""
    name = (level.technology or level.name).lower()
    for tech in sorted(MEMORY_PJ_PER_BYTE, key=len, reverse=True):
        if name.startswith(tech):
            return tech
    return "sram" if name in ("sram", "l1", "l2", "smem", "vmem", "cmem", "llc") else ""


def derive(chip: Chip) -> Chip:
    """``chip`` with every power coefficient it does not give derived by the rules above, and
    ``sources`` saying which were derived. A chip without ``process_nm`` or a TDP keeps the
    coefficients it has (no power model: no energy, no power limit)."""
    if chip.process_nm is None or chip.tdp_watts is None:
        return chip
    node = float(chip.process_nm)
    derived: list[str] = []
    levels = []
    for lvl in chip.memory:
        if lvl.pj_per_byte is None:
            tech = memory_technology(lvl)
            if lvl is chip.reuse_level:
                pj = REUSE_PJ_PER_BYTE
            elif lvl is not chip.memory[-1] or tech == "sram":
                pj = LOCAL_PJ_PER_BYTE
            elif tech:
                pj = MEMORY_PJ_PER_BYTE[tech]
            else:
                raise ConfigError(
                    f"chip {chip.name!r}: memory level {lvl.name!r}: set its technology "
                    f"(one of {', '.join(MEMORY_PJ_PER_BYTE)}) or pj_per_byte"
                )
            lvl = replace(lvl, pj_per_byte=pj)
            derived.append(f"{lvl.name}.pj_per_byte")
        levels.append(lvl)
    values = {}
    matrix = chip.matrix_pj_per_flop
    if matrix is None:
        matrix = values["matrix_pj_per_flop"] = matrix_pj_rule(node)
    rules = {
        "vector_pj_per_flop": VECTOR_OVER_MATRIX * matrix,
        "idle_watts": IDLE_OVER_TDP * chip.tdp_watts,
        "link_pj_per_byte": LINK_PJ_PER_BYTE,
        "dvfs_exponent": DVFS_EXPONENT,
    }
    for key, value in rules.items():
        if getattr(chip, key) is None:
            values[key] = value
    derived += [f"power.{k.removesuffix('_watts')}" for k in values]
    sources = dict(chip.sources)
    if derived:
        sources["power_derived"] = ", ".join(derived)
    return replace(chip, memory=tuple(levels), sources=sources, **values)
