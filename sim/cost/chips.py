"""A chip as arrays: the continuous parameters of one or many chips of one structure.

The cost model (``sim.cost.roofline``) reads a chip only through ``ChipArrays``: ``values[leaf]``
holds each continuous parameter (peak FLOP/s, sustained fractions, bandwidths, capacities,
latencies, overheads, links) as an array over design points, and ``structure`` the discrete part
that points must share to be costed together (core count, tile shapes, tile_k, the memory levels
present, which optional fields exist). One chip is an array of one point (``ChipArrays.of``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from hardware.chip import ConfigError, System

_LEVEL_FIELDS = ("capacity", "bandwidth", "achievable", "latency", "pim_bandwidth", "pim_flops",
                 "pj_per_byte")  # fmt: skip
_LINK_FIELDS = ("bandwidth", "latency", "achievable", "simple_latency", "a2a_latency", "a2a_busbw",
                "p2p_channel_bw", "nvls_bw", "nvls_latency", "nvls_chunk")  # fmt: skip


def chip_leaves(system: System) -> dict[str, Any]:
    """Every parameter of ``system`` that the roofline reads, flattened to one level.

    Structural leaves (names, counts, tile shapes, which dtypes and levels exist) are hashable
    Python values; the rest are floats, with NaN for an optional value the chip does not have.
    """
    c = system.chip
    out: dict[str, Any] = {
        "name": c.name,
        "n_cores": c.n_cores,
        "gemm_tiles": c.gemm_tiles,
        "tile_k": c.tile_k,
        "tile_step": c.tile_step,
        "cluster": c.cluster,
        "levels": tuple(lvl.name for lvl in c.memory),
        "peak_dtypes": tuple(c.peak_flops_per_s),
        "sustained_dtypes": tuple(c.sustained_by_dtype),
        "has_exp": c.exp_per_s is not None,
        "has_power": c.has_power_model,
        "has_mma_sync": c.mma_sync_fraction is not None,
        "has_attention_bwd": c.attention_bwd_fraction is not None,
        "has_split_accumulate": c.split_accumulate_fraction is not None,
        "scratchpad_reuse": c.reuse_is_scratchpad,
        "stream_k": c.stream_k,
        "attention_overlap": c.attention_overlap,
        "compute_capability": c.compute_capability,
        "chips_per_node": system.chips_per_node,
        "peer_all_reduce_max_group": system.peer_all_reduce_max_group,
        "collective_main_per_sent": system.collective_main_per_sent,
        "sustained_clock_fraction": c.sustained_clock_fraction,
        "mma_sync_fraction": _float(c.mma_sync_fraction),
        "attention_bwd_fraction": _float(c.attention_bwd_fraction),
        "split_accumulate_fraction": _float(c.split_accumulate_fraction),
        "attention_overlap_exposed": c.attention_overlap_exposed,
        "tensor_memory": _float(c.tensor_memory_bytes),
        "vector_flops_per_s": c.vector_flops_per_s,
        "clock_hz": _float(c.clock_hz),
        "exp_per_s": _float(c.exp_per_s),
        "kernel_overhead_s": c.kernel_overhead_s,
        "tdp_watts": _float(c.tdp_watts),
        "limit_watts": _float(c.power_limit_watts),
        "idle_watts": _float(c.idle_watts),
        "vector_pj": _float(c.vector_pj_per_flop),
        "link_pj": _float(c.link_pj_per_byte),
        "dvfs_exponent": _float(c.dvfs_exponent),
        "usd_per_hour": _float(c.usd_per_hour),
    }
    for dtype, rate in c.peak_flops_per_s.items():
        out[f"peak.{dtype}"] = rate
    for dtype, frac in c.sustained_by_dtype.items():
        out[f"sustained.{dtype}"] = frac
    for dtype in c.peak_flops_per_s:
        out[f"matrix_pj.{dtype}"] = (
            c.matrix_pj(dtype) if c.matrix_pj_per_flop is not None else math.nan
        )
    for i, lvl in enumerate(c.memory):
        values = (
            lvl.capacity_bytes,
            lvl.bandwidth_bytes_per_s,
            lvl.achievable_fraction,
            lvl.latency_s,
            lvl.pim_bandwidth_bytes_per_s,
            lvl.pim_flops_per_s,
            _float(lvl.pj_per_byte),
        )
        for name, value in zip(_LEVEL_FIELDS, values, strict=True):
            out[f"memory.{i}.{name}"] = value
    for side, link in (("intra", system.intra_node), ("inter", system.inter_node)):
        values = (
            link.bandwidth_bytes_per_s,
            link.latency_s,
            link.achievable_fraction,
            _float(link.simple_latency_s),
            _float(link.all_to_all_latency_s),
            _float(link.all_to_all_bus_bandwidth),
            _float(link.p2p_channel_bandwidth),
            _float(link.nvls_bandwidth_bytes_per_s),
            _float(link.nvls_latency_s),
            link.nvls_chunk_latency_s,
        )
        for name, value in zip(_LINK_FIELDS, values, strict=True):
            out[f"{side}.{name}"] = value
    return out


STRUCTURE_LEAVES = (
    "name",
    "n_cores",
    "gemm_tiles",
    "tile_k",
    "tile_step",
    "cluster",
    "levels",
    "peak_dtypes",
    "sustained_dtypes",
    "has_exp",
    "has_power",
    "has_mma_sync",
    "has_attention_bwd",
    "has_split_accumulate",
    "scratchpad_reuse",
    "stream_k",
    "attention_overlap",
    "compute_capability",
    "chips_per_node",
    "peer_all_reduce_max_group",
)


def _float(value: float | None) -> float:
    return math.nan if value is None else float(value)


@dataclass(frozen=True, slots=True)
class ChipStructure:
    """What chips must share to be costed together: the discrete part of a chip."""

    name: str
    n_cores: int
    gemm_tiles: tuple[tuple[int, int], ...]
    tile_k: int
    tile_step: int
    cluster: tuple[int, int]
    levels: tuple[str, ...]
    peak_dtypes: tuple[str, ...]
    sustained_dtypes: tuple[str, ...]
    has_exp: bool
    has_power: bool
    has_mma_sync: bool
    has_attention_bwd: bool
    has_split_accumulate: bool
    scratchpad_reuse: bool
    stream_k: bool
    attention_overlap: bool
    compute_capability: str
    chips_per_node: int
    peer_all_reduce_max_group: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ChipArrays:
    """``n`` chips of one structure; ``values[leaf]`` holds each continuous leaf as an array.

    ``template`` is any System of this structure (the messages of errors name its chip).
    """

    structure: ChipStructure
    values: dict[str, np.ndarray]
    template: System
    # rates already derived from ``values`` (sim.cost.roofline); not copied by ``replace``
    memo: dict[Any, np.ndarray] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def n(self) -> int:
        return len(self.values["kernel_overhead_s"])

    @classmethod
    def from_leaves(
        cls, structure: ChipStructure, values: dict[str, np.ndarray], template: System
    ) -> ChipArrays:
        return cls(structure=structure, values=values, template=template)

    @classmethod
    def from_systems(cls, systems: list[System]) -> ChipArrays:
        """Stack systems that share one structure (raises ValueError otherwise)."""
        leaves = [chip_leaves(s) for s in systems]
        structure = structure_of(leaves[0])
        if any(structure_of(lv) != structure for lv in leaves[1:]):
            raise ValueError("ChipArrays.from_systems: the systems differ in structure")
        keys = [k for k in leaves[0] if k not in STRUCTURE_LEAVES]
        values = {k: np.array([lv[k] for lv in leaves], dtype=float) for k in keys}
        return cls(structure=structure, values=values, template=systems[0])

    @classmethod
    def of(cls, system: System) -> ChipArrays:
        """One system as a stack of one (memoised: a system is immutable)."""
        hit = _ONE.get(id(system))
        if hit is not None and hit[0] is system:
            return hit[1]
        arrays = cls.from_systems([system])
        if len(_ONE) >= 256:
            _ONE.clear()
        _ONE[id(system)] = (system, arrays)
        return arrays

    def take(self, where: np.ndarray) -> ChipArrays:
        """The chips at the indices (or boolean mask) ``where``."""
        return replace(self, values={k: v[where] for k, v in self.values.items()})

    # ---- what the roofline asks of a chip ------------------------------------------------------
    def peak_key(self, dtype: str) -> str | None:
        """The peak entry ``Chip.peak(dtype)`` reads (fp16/bf16 stand in for each other; a tf32
        matmul takes fp32 units, else the 16-bit ones)."""
        have = self.structure.peak_dtypes
        if dtype in have:
            return dtype
        if dtype == "tf32":  # an fp32 matmul: fp32 units, else one 16-bit pass (XLA's default
            # precision on TPUs; NB: optimistic where a library runs several passes)
            return next((d for d in ("fp32", "bf16", "fp16") if d in have), None)
        twin = {"bf16": "fp16", "fp16": "bf16"}.get(dtype)
        return twin if twin in have else None

    def peak(self, dtype: str) -> np.ndarray:
        key = self.peak_key(dtype)
        if key is None:
            raise ConfigError(self._no_dtype(dtype))
        return self.values[f"peak.{key}"]

    def sustained(self, dtype: str) -> np.ndarray:
        """``Chip.sustained``: peak x the dtype's sustained fraction."""
        key = self.peak_key(dtype) or dtype
        if dtype in self.structure.sustained_dtypes:
            frac = self.values[f"sustained.{dtype}"]
        elif key in self.structure.sustained_dtypes:  # the units a tf32 matmul falls back to
            frac = self.values[f"sustained.{key}"]
        else:
            frac = self.values["sustained_clock_fraction"]
        return self.peak(dtype) * frac

    def attention_rate(self, dtype: str, kernel: str, backward: bool = False) -> np.ndarray:
        """``Chip.attention_rate``: sustained, capped by the warp-level MMA path for "fa2" and
        "triton" (Triton's 16-row dots are too short for Hopper's warpgroup MMA), and for the
        backward by the measured backward kernel's share of the sustained rate."""
        if kernel == "mmha":
            return self.values["vector_flops_per_s"]
        sustained = self.sustained(dtype)
        rate = sustained
        if kernel in ("fa2", "triton") and self.structure.has_mma_sync:
            rate = np.minimum(rate, self.peak(dtype) * self.values["mma_sync_fraction"])
        if backward and self.structure.has_attention_bwd:
            share = self.peak(dtype) * self.values["attention_bwd_fraction"] / sustained
            rate = rate * np.minimum(1.0, share)
        return rate

    def level(self, i: int, name: str) -> np.ndarray:
        return self.values[f"memory.{i}.{name}"]

    def _no_dtype(self, dtype: str) -> str:
        """The exact message ``Chip.peak`` raises for a dtype the chip lacks."""
        chip = replace(
            self.template.chip,
            name=self.structure.name,
            peak_flops_per_s={d: 1.0 for d in self.structure.peak_dtypes},
        )
        try:
            chip.peak(dtype)
        except ConfigError as exc:
            return str(exc)
        raise AssertionError(f"{dtype} is available on {chip.name}")  # pragma: no cover


_ONE: dict[int, tuple[System, ChipArrays]] = {}


def structure_of(leaves: dict[str, Any]) -> ChipStructure:
    return ChipStructure(**{k: leaves[k] for k in STRUCTURE_LEAVES})
