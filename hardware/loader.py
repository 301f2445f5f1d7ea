"""Load chips and systems from TOML presets or user files, with ``--set`` overrides applied."""

from __future__ import annotations

import copy
import os
import tomllib
from dataclasses import replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from hardware import files
from hardware import power as power_model
from hardware.chip import Chip, ConfigError, Link, MemoryLevel, Silicon, System
from hardware.units import UnitError, parse_quantity

_PRESETS = "presets"


def list_chips() -> list[str]:
    """Names of the chip presets shipped with roofsim, sorted."""
    folder = resources.files("hardware") / _PRESETS
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


@cache
def chip_aliases() -> dict[str, str]:
    """The preset each other name of a chip stands for (a preset's ``aliases``: the bare
    product name for its common form, as ``h100`` for the SXM part; vendors' spellings)."""
    out: dict[str, str] = {}
    for name in list_chips():
        aliases = tomllib.loads(_preset_text(name)).get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise ConfigError(f"chip {name!r}: aliases must be a list of names, got {aliases!r}")
        for alias in aliases:
            if alias.lower() in out:
                raise ConfigError(f"chip alias {alias!r} names both {out[alias.lower()]!r} and "
                                  f"{name!r}")  # fmt: skip
            out[alias.lower()] = name
    return out


def chip_name(name: str) -> str | None:
    """The preset a chip slug or one of its aliases names (any case), else None."""
    lowered = name.lower()
    return lowered if lowered in list_chips() else chip_aliases().get(lowered)


@cache
def _preset_text(name: str) -> str:
    return (resources.files("hardware") / _PRESETS / f"{name}.toml").read_text()


def chip_source_text(name_or_path: str) -> str:
    """The TOML text of a preset or a user's chip file."""
    if name_or_path.endswith(".toml") or files.exists(name_or_path):
        return files.read_text(name_or_path, "--chip")
    load_chip_dict(name_or_path)  # validates the name
    return _preset_text(chip_name(name_or_path))  # type: ignore[arg-type]


def _is_chip_file(name: str) -> bool:
    """``--chip name`` means a user's file: a TOML name, a path, or a file that exists (a folder
    named like a preset or an alias does not hide it)."""
    return name.endswith(".toml") or "/" in name or os.sep in name or files.is_file(Path(name))


def chip_label(name: str) -> str:
    """The name a result shows for ``--chip name``: a preset's slug for an alias, a file as
    given."""
    return name if _is_chip_file(name) else chip_name(name) or name


def load_chip_dict(name_or_path: str) -> dict[str, Any]:
    """The raw TOML table of a preset name or a path to a user's TOML file (a fresh copy)."""
    if not isinstance(name_or_path, str):
        raise ConfigError(f"--chip must be a chip name or a TOML file, got {name_or_path!r}")
    path = Path(name_or_path)
    if _is_chip_file(name_or_path) or (files.exists(path) and chip_name(name_or_path) is None):
        if not files.is_file(path):
            raise ConfigError(f"--chip: no file {name_or_path!r}")
        text, origin = files.read_text(path, "--chip"), name_or_path
    else:
        preset = chip_name(name_or_path)
        if preset is None:
            raise ConfigError(
                f"--chip: unknown chip {name_or_path!r}; available: {', '.join(list_chips())} "
                "(or an alias one of them lists, `roofsim chips`; or a path to a chip TOML file)"
            )
        text, origin = _preset_text(preset), preset
    try:
        raw = copy.deepcopy(_parse_toml(text, origin))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin}: malformed TOML: {exc}") from None
    # a [calibration] table (written by `roofsim calibrate`) overrides the datasheet values
    fitted = raw.pop("calibration", {})
    apply_overrides(raw, [f"{k}={v!r}" for k, v in fitted.items() if not k.endswith("_source")])
    # a [design] table (written by `roofsim design`) turns the chip above into the design found
    design = raw.pop("design", {})
    apply_overrides(raw, [f"{k}={v!r}" for k, v in design.items() if not k.endswith("_source")])
    return raw


@cache
def _parse_toml(text: str, origin: str) -> dict[str, Any]:
    return tomllib.loads(text)


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply ``--set path=value`` overrides to a raw chip table, in place, and return it.

    ``path`` is a dotted TOML path; its first part may name a memory level
    (``hbm.bandwidth=6TB/s``, ``l2.capacity=256MB``) or a table (``compute.peak.bf16=500TFLOP/s``,
    ``overhead.kernel_s=2us``, ``system.intra_node_bandwidth=900GB/s``). Values are read as TOML
    where they parse (numbers, lists) and as unit strings otherwise.
    """
    for item in overrides:
        if "=" not in item:
            raise ConfigError(
                f"--set: expected PATH=VALUE (e.g. hbm.bandwidth=6TB/s), got {item!r}"
            )
        path, text = (part.strip() for part in item.split("=", 1))
        keys = path.split(".")
        value = _read_value(text)
        levels = {lvl.get("name"): lvl for lvl in raw.get("memory", [])}
        if keys[0] in levels:
            table, keys = levels[keys[0]], keys[1:]
        else:
            table = raw
            if keys[0] == "silicon":  # every field of [silicon] is optional, the table too
                raw.setdefault("silicon", {})
        if not keys:
            raise ConfigError(
                f"--set: {path!r} names a memory level; add a field, e.g. {path}.bandwidth"
            )
        for key in keys[:-1]:
            if not isinstance(table.get(key), dict):
                raise ConfigError(f"--set: unknown field {path!r}; {_known(raw)}")
            table = table[key]
        if keys[-1] not in table and keys[-1] not in _OPTIONAL_FIELDS:
            raise ConfigError(f"--set: unknown field {path!r}; {_known(raw)}")
        table[keys[-1]] = value
    paths = {item.split("=", 1)[0].strip() for item in overrides}
    if "system.collective_cores" in paths and "system.ring_collective_cores" not in paths:
        # a collective core count set alone holds for every collective: the preset's count for
        # an intra-node ring (cited for its own default) no longer applies
        for key in ("ring_collective_cores", "ring_collective_cores_source"):
            raw.get("system", {}).pop(key, None)
    return raw


_OPTIONAL_FIELDS = {
    "ring_collective_cores",
    "peer_all_reduce_max_group",
    "achievable_fraction",
    "int4",
    "fp4",
    "fp8",
    "int8",
    "tf32",
    "fp16",
    "latency",
    "cluster",
    "tile_step",
    "pim_bandwidth",
    "pim_flops",
    "cap",
    "idle",
    "matrix_pj_per_flop",
    "vector_pj_per_flop",
    "link_pj_per_byte",
    "dvfs_exponent",
    "pj_per_byte",
    "technology",
    "mma_sync_fraction",
    "attention_bwd_fraction",
    "split_accumulate_fraction",
    "stream_k",
    "attention_overlap",
    "attention_overlap_exposed",
    "tensor_memory",
    "compute_capability",
    "intra_node_achievable_fraction",
    "inter_node_achievable_fraction",
    "intra_node_simple_latency",
    "inter_node_simple_latency",
    "intra_node_all_to_all_latency",
    "intra_node_all_to_all_bus_bandwidth",
    "intra_node_p2p_channel_bandwidth",
    "intra_node_nvls_bandwidth",
    "intra_node_nvls_latency",
    "intra_node_nvls_chunk_latency",
    "clock_hz",
    "process_nm",
    # [silicon] (hardware.chip.Silicon)
    "node",
    "dies",
    "cores_on_die",
    "register_file",
    "caches",
    "memory_sites",
    "link_bandwidth",
    "die_area",
}


def _known(raw: dict[str, Any]) -> str:
    levels = [lvl.get("name") for lvl in raw.get("memory", [])]
    return (
        "use compute.<field>, compute.peak.<dtype>, overhead.kernel_s, "
        "power.tdp|cap|idle|matrix_pj_per_flop|vector_pj_per_flop|link_pj_per_byte|dvfs_exponent, "
        "price.usd_per_hour, system.<field>, silicon.<field>, or "
        "<level>.capacity|bandwidth|achievable_fraction|latency|pim_bandwidth|pim_flops|pj_per_byte "
        "with "
        f"level one of {', '.join(levels)}"
    )


def _read_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _q(table: dict[str, Any], key: str, kind: str, where: str, default: Any = ...) -> Any:
    if key not in table:
        if default is ...:
            raise ConfigError(f"{where}: missing field {key!r}")
        return default
    try:
        return parse_quantity(table[key], kind)
    except UnitError as exc:
        raise ConfigError(f"{where}.{key}: {exc}") from None


def _bool(table: dict[str, Any], key: str, where: str) -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.{key} must be true or false, got {value!r}")
    return value


def _capability(table: dict[str, Any], where: str) -> str:
    """``compute_capability`` as "major.minor" text: TOML's "9.0", or a number a --set gave
    (9 or 9.0; one decimal at most, nothing re-interpreted)."""
    value = table.get("compute_capability", "")
    if isinstance(value, str):
        return value  # checked as major.minor by Chip
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        text = f"{float(value):.1f}"
        if 0 < value < 100 and float(text) == value:
            return text
    raise ConfigError(
        f'{where}.compute_capability must be a version like "9.0" (major.minor), got {value!r}'
    )


def _int(table: dict[str, Any], key: str, where: str, default: int) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}.{key} must be an integer, got {value!r}")
    return value


def _int_lists(table: dict[str, Any], key: str, where: str, default: Any, size: int) -> Any:
    """``key`` as a list of ``size``-integer lists (a list of one for ``size`` given once)."""
    value = table.get(key, default)
    rows = value if key == "gemm_tiles" else [value]
    if not isinstance(rows, list | tuple) or not all(
        isinstance(r, list | tuple) and len(r) == size
        and all(isinstance(x, int) and not isinstance(x, bool) for x in r)
        for r in rows
    ):  # fmt: skip
        shape = "[[M, N], ...]" if key == "gemm_tiles" else "[cm, cn]"
        raise ConfigError(f"{where}.{key} must be {shape} of integers, got {value!r}")
    tuples = tuple(tuple(r) for r in rows)
    return tuples if key == "gemm_tiles" else tuples[0]


def _fractions(table: dict[str, Any], key: str, where: str) -> dict[str, float]:
    """A table of per-dtype fractions (its ``*source`` entries skipped)."""
    value = _table(table, key, where)
    out = {}
    for k, v in value.items():
        if k.endswith("source"):
            continue
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ConfigError(f"{where}.{key}.{k} must be a number, got {v!r}")
        out[k] = float(v)
    return out


def _table(raw: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {key} must be a table of fields, got {value!r}")
    return value


def chip_from_dict(raw: dict[str, Any]) -> Chip:
    """Build a validated Chip from a raw TOML table."""
    name = str(raw.get("name", "custom"))
    chip = f"chip {name!r}"
    compute = _table(raw, "compute", chip)
    peaks = _table(compute, "peak", f"{chip}: compute")
    where = f"chip {name!r}: compute.peak"
    peak = {
        k: _q(peaks, k, "flops_per_s", where)
        for k in peaks
        if k not in ("vector", "source") and not k.endswith("_source")
    }
    memory = []
    for i, lvl in enumerate(raw.get("memory", [])):
        lw = f"chip {name!r}: memory[{i}] ({lvl.get('name', '?')})"
        memory.append(
            MemoryLevel(
                name=str(lvl.get("name", f"level{i}")),
                capacity_bytes=_q(lvl, "capacity", "bytes", lw),
                bandwidth_bytes_per_s=_q(lvl, "bandwidth", "bytes_per_s", lw),
                achievable_fraction=_q(lvl, "achievable_fraction", "fraction", lw, 1.0),
                latency_s=_q(lvl, "latency", "s", lw, 0.0),
                pim_bandwidth_bytes_per_s=_q(lvl, "pim_bandwidth", "bytes_per_s", lw, 0.0),
                pim_flops_per_s=_q(lvl, "pim_flops", "flops_per_s", lw, 0.0),
                pj_per_byte=_q(lvl, "pj_per_byte", "number", lw, None),
                technology=str(lvl.get("technology", "")),
                source=str(lvl.get("source", "")),
            )
        )
    overhead = _table(raw, "overhead", chip)
    power = _table(raw, "power", chip)
    price = _table(raw, "price", chip)
    usd_per_hour = price.get("usd_per_hour")
    if usd_per_hour is not None and (
        isinstance(usd_per_hour, bool) or not isinstance(usd_per_hour, int | float)
    ):
        raise ConfigError(
            f"chip {name!r}: price.usd_per_hour must be a number (US dollars per chip-hour), "
            f"got {usd_per_hour!r}"
        )
    tiles = _int_lists(compute, "gemm_tiles", f"{chip}: compute", [[128, 128]], 2)
    sources = {
        key: str(table["source"])
        for key, table in (("chip", raw), ("compute", compute), ("peak", peaks), ("price", price))
        if isinstance(table, dict) and "source" in table
    }
    pw = f"chip {name!r}: power"
    made = Chip(
        clock_hz=_q(compute, "clock_hz", "number", f"chip {name!r}: compute", None),
        silicon=_silicon(_table(raw, "silicon", chip), f"chip {name!r}: silicon"),
        name=name,
        full_name=str(raw.get("full_name", name)),
        vendor=str(raw.get("vendor", "")),
        year=raw.get("year"),
        process_nm=raw.get("process_nm"),
        hypothetical=bool(raw.get("hypothetical", False)),
        n_cores=_int(compute, "n_cores", f"{chip}: compute", 1),
        peak_flops_per_s=peak,
        vector_flops_per_s=_q(
            peaks, "vector", "flops_per_s", where, min(peak.values(), default=1.0)
        ),
        gemm_tiles=tiles,
        tile_k=_int(compute, "tile_k", f"{chip}: compute", 64),
        tile_step=_int(compute, "tile_step", f"{chip}: compute", 0),
        cluster=_int_lists(compute, "cluster", f"{chip}: compute", [1, 1], 2),
        sustained_clock_fraction=_q(
            compute, "sustained_clock_fraction", "fraction", f"chip {name!r}: compute", 1.0
        ),
        sustained_by_dtype=_fractions(compute, "sustained_fraction", f"{chip}: compute"),
        stream_k=_bool(compute, "stream_k", f"chip {name!r}: compute"),
        attention_overlap=_bool(compute, "attention_overlap", f"chip {name!r}: compute"),
        attention_overlap_exposed=_q(
            compute, "attention_overlap_exposed", "fraction", f"chip {name!r}: compute", 0.0
        ),
        tensor_memory_bytes=_q(compute, "tensor_memory", "bytes", f"chip {name!r}: compute", None),
        compute_capability=_capability(compute, f"chip {name!r}: compute"),
        mma_sync_fraction=_q(
            compute, "mma_sync_fraction", "fraction", f"chip {name!r}: compute", None
        ),
        attention_bwd_fraction=_q(
            compute, "attention_bwd_fraction", "fraction", f"chip {name!r}: compute", None
        ),
        split_accumulate_fraction=_q(
            compute, "split_accumulate_fraction", "fraction", f"chip {name!r}: compute", None
        ),
        memory=tuple(memory),
        exp_per_s=_q(compute, "exp_rate", "flops_per_s", f"chip {name!r}: compute", None),
        kernel_overhead_s=_q(overhead, "kernel_s", "s", f"chip {name!r}: overhead", 0.0),
        tdp_watts=_q(power, "tdp", "watts", pw, None),
        power_cap_watts=_q(power, "cap", "watts", pw, None),
        idle_watts=_q(power, "idle", "watts", pw, None),
        matrix_pj_per_flop=_q(power, "matrix_pj_per_flop", "number", pw, None),
        vector_pj_per_flop=_q(power, "vector_pj_per_flop", "number", pw, None),
        link_pj_per_byte=_q(power, "link_pj_per_byte", "number", pw, None),
        dvfs_exponent=_q(power, "dvfs_exponent", "number", pw, None),
        usd_per_hour=None if usd_per_hour is None else float(usd_per_hour),
        sources=sources,
    )
    return power_model.derive(made)


def _silicon(table: dict[str, Any], where: str) -> Silicon:
    """The ``[silicon]`` table: how the chip is built (hardware.chip.Silicon)."""
    known = {"node", "dies", "cores_on_die", "sram_on_die", "register_file", "caches",
             "memory_sites", "link_bandwidth", "die_area", "source"}  # fmt: skip
    for key in table:
        if key not in known and not key.endswith("_source"):
            raise ConfigError(f"{where}: unknown field {key!r}; known: {', '.join(sorted(known))}")
    caches = table.get("caches")
    if caches is not None and not (
        isinstance(caches, list) and all(isinstance(c, str) for c in caches)
    ):
        raise ConfigError(f"{where}: caches must be a list of memory level names, got {caches!r}")
    sram = table.get("sram_on_die", {})
    if not isinstance(sram, dict):
        raise ConfigError(f"{where}: sram_on_die must be a table of level = capacity")
    return Silicon(
        node=str(table.get("node", "")),
        dies=_int(table, "dies", where, 1),
        cores_on_die=table.get("cores_on_die"),
        sram_on_die={
            k: _q(sram, k, "bytes", f"{where}.sram_on_die")
            for k in sram
            if not k.endswith("source")
        },
        register_file_bytes=_q(table, "register_file", "bytes", where, 0.0),
        caches=None if caches is None else tuple(caches),
        memory_sites=table.get("memory_sites"),
        link_bandwidth_bytes_per_s=_q(table, "link_bandwidth", "bytes_per_s", where, None),
        die_area_mm2=_q(table, "die_area", "number", where, None),
        sources={k: str(v) for k, v in table.items() if k == "source" or k.endswith("_source")},
    )


#: fields a chip file may omit, the value then used, and why (``roofsim chips --check``)
DEFAULTS: tuple[tuple[str, str, str], ...] = (
    ("compute.n_cores", "1", "one core: no wave or tile quantisation across cores"),
    ("compute.clock_hz", "none", "no area model (roofsim area needs it), and on a CUDA chip no "
     "eager PyTorch runtime (its unvectorised kernels' cycles need it)"),
    ("compute.sustained_clock_fraction", "1.0", "the datasheet peak (measured chips: 0.7-0.87)"),
    ("compute.peak.vector", "the smallest matrix peak", "vector work at a matrix rate"),
    ("memory.*.achievable_fraction", "1.0",
     "the datasheet bandwidth (measured HBM: 0.82-0.89 streaming)"),
    ("memory.*.latency", "0 s", "no pipeline-fill cost on small transfers"),
    ("overhead.kernel_s", "0 s", "no per-op launch cost (measured GPUs: 1-4 us)"),
    ("power.tdp", "none", "no power model: no clock limit, no energy"),
    ("process_nm", "none", "no power model or node for the area model"),
    ("system.intra_node_bandwidth", "32 GB/s", "PCIe Gen4 x16, the floor for TP"),
    ("system.intra_node_latency", "2 us", "an estimate per step"),
)  # fmt: skip


def field_origins(raw: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(field, value, origin) for the fields of ``DEFAULTS``: "given" where the chip table has
    it, else "default: <why>"."""
    out = []
    levels = raw.get("memory", [])
    for path, value, why in DEFAULTS:
        if path.startswith("memory.*."):
            key = path.split(".")[-1]
            for lvl in levels:
                name = f"{lvl.get('name', '?')}.{key}"
                if key in lvl:
                    out.append((name, str(lvl[key]), "given"))
                else:
                    out.append((name, value, f"default: {why}"))
            continue
        table: Any = raw
        for part in path.split("."):
            table = table.get(part) if isinstance(table, dict) else None
        out.append((path, str(table), "given") if table is not None
                   else (path, value, f"default: {why}"))  # fmt: skip
    return out


def load_chip(name_or_path: str, overrides: list[str] | tuple[str, ...] = ()) -> Chip:
    """A preset (by slug) or a user TOML file, with ``--set`` overrides applied."""
    raw = apply_overrides(load_chip_dict(name_or_path), overrides)
    return chip_from_dict(raw)


def load_system(
    chip: str,
    n_chips: int = 1,
    overrides: list[str] | tuple[str, ...] = (),
) -> System:
    """A system of ``n_chips`` of one chip, with the links of the preset's ``[system]`` table."""
    raw = apply_overrides(load_chip_dict(chip), overrides)
    system = system_from_dict(raw, n_chips)
    return replace(system, overrides=tuple(overrides)) if overrides else system


def system_from_dict(raw: dict[str, Any], n_chips: int = 1) -> System:
    chip = chip_from_dict(raw)
    table = _table(raw, "system", f"chip {chip.name!r}")
    where = f"chip {chip.name!r}: system"
    # A chip without a described fabric still needs a link for TP: PCIe Gen4 x16 is the floor.
    intra_bw = _q(table, "intra_node_bandwidth", "bytes_per_s", where, 32e9)
    return System(
        chip=chip,
        n_chips=n_chips,
        chips_per_node=_int(table, "chips_per_node", where, 8),
        collective_cores=table.get("collective_cores", 0),
        ring_collective_cores=table.get("ring_collective_cores"),
        peer_all_reduce_max_group=table.get("peer_all_reduce_max_group", 8),
        intra_node=Link(
            bandwidth_bytes_per_s=intra_bw,
            latency_s=_q(table, "intra_node_latency", "s", where, 2e-6),
            achievable_fraction=_q(table, "intra_node_achievable_fraction", "fraction", where, 1.0),
            simple_latency_s=_q(table, "intra_node_simple_latency", "s", where, None),
            all_to_all_latency_s=_q(table, "intra_node_all_to_all_latency", "s", where, None),
            all_to_all_bus_bandwidth=_q(
                table, "intra_node_all_to_all_bus_bandwidth", "bytes_per_s", where, None
            ),
            p2p_channel_bandwidth=_q(
                table, "intra_node_p2p_channel_bandwidth", "bytes_per_s", where, None
            ),
            nvls_bandwidth_bytes_per_s=_q(
                table, "intra_node_nvls_bandwidth", "bytes_per_s", where, None
            ),
            nvls_latency_s=_q(table, "intra_node_nvls_latency", "s", where, None),
            nvls_chunk_latency_s=_q(table, "intra_node_nvls_chunk_latency", "s", where, 0.0),
        ),
        inter_node=Link(
            bandwidth_bytes_per_s=_q(table, "inter_node_bandwidth", "bytes_per_s", where, intra_bw),
            latency_s=_q(table, "inter_node_latency", "s", where, 5e-6),
            achievable_fraction=_q(table, "inter_node_achievable_fraction", "fraction", where, 1.0),
            simple_latency_s=_q(table, "inter_node_simple_latency", "s", where, None),
        ),
    )
