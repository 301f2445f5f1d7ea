"""Design-space sweeps: a TOML spec of axes over chip and workload fields, evaluated vectorised,
streamed to CSV as points finish, resumable, on local processes or a Dask cluster.

A spec names a base chip (a preset slug or chip TOML, with fixed ``--set`` overrides), a
workload (``decode``, ``prefill``, ``dit`` or ``train`` with the fields of the matching
``roofsim`` command), and axes: chip fields by their ``--set`` path (``hbm.bandwidth``,
``compute.peak.bf16``) and workload fields by name (``batch``, ``context``, ``tp``), each a
list, a ``{start, stop, num}`` range or a ``{start, stop, num, log = true}`` log-range,
combined as a product (the last axis fastest) or zipped. Point ``i`` is the i-th combination in
that order: the index is stable, which is what ``--resume`` relies on. docs/sweeps.md has the
format and an example.

Decode, prefill and DiT points run through ``sim.cost.simulate.evaluate`` (the one cost model over arrays of
chips, one lowering per workload shape); training points run ``simulate_training`` one by one.
Either way chunks of points go to a ``ProcessPoolExecutor`` (every core by default) or a Dask
cluster, and each finished chunk is appended to the output and flushed.

A point's chip is the base chip with the point's chip-axis overrides. Building one chip per
distinct combination of chip-axis values is what a loop per point would do; instead one chip is
built per value of each axis and a point's chip parameters are the base chip's with each axis's
changes applied, which is exact when the axes change disjoint parameters (checked, with two
combinations also built in full to compare). Otherwise (an axis whose change couples with
another's, or a value that fails validation) every distinct combination is built in full.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import math
import re
import threading
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from hardware import files
from hardware.chip import ConfigError, System
from hardware.loader import apply_overrides, load_chip_dict, system_from_dict
from hardware.units import UnitError, parse_quantity
from sim import version
from sim.cost.chips import STRUCTURE_LEAVES, ChipArrays, chip_leaves, structure_of
from sim.cost.result import CapacityError
from sim.cost.roofline import BOUNDS
from sim.cost.simulate import evaluate
from sim.studies.pool import default_workers, process_pool
from sim.studies.progress import Progress
from workloads.ops import WorkloadError

KINDS = ("decode", "prefill", "dit", "train")
VECTOR_KINDS = ("decode", "prefill", "dit")
MODES = ("product", "zip")

#: workload fields per kind: the flags of the matching roofsim command, as TOML keys
WORKLOAD_FIELDS: dict[str, tuple[str, ...]] = {
    "decode": ("model", "chips", "tp", "batch", "context", "dtype", "kv_dtype", "int4_group",
               "attention_kernel", "runtime", "sampling", "spec_tokens", "acceptance",
               "accepted_length", "draft"),
    "prefill": ("model", "chips", "tp", "batch", "prompt", "dtype", "kv_dtype", "int4_group",
                "attention_kernel", "runtime", "sampling"),
    "dit": ("model", "chips", "replicas", "sp", "height", "width", "frames", "fps", "steps",
            "batch", "cfg", "tokens", "text_tokens", "dtype", "attention_kernel", "parallel_vae",
            "runtime"),
    "train": ("model", "chips", "tp", "pp", "vp", "ep", "cp", "dp", "sp", "seq", "micro_batch",
              "global_batch", "dtype", "recompute", "recompute_blocks", "zero", "dp_shard", "grad_reduce", "capacity_factor", "overlap",
              "tokens", "attention_kernel", "elementwise", "runtime", "sample_len", "etp"),
}  # fmt: skip

#: columns after the axes, in order: what ran (unless an axis names it already), the point, ...
IDENTITY = ("chip", "model")
META = ("point", "status", "error")
METRICS = ("time_s", "throughput", "mfu", "mbu", "bound", "fits", "required_bytes")
#: ... the derived energy of the run (all chips), its average power and tokens per joule (empty
#: where the chip has no power model; tokens_per_j empty for DiT) ...
ENERGY = ("energy_j", "avg_power_w", "tokens_per_j")
#: ... and the tokens per dollar of on-demand chip time, where the chip preset cites a price
#: (empty otherwise, and for DiT, whose unit is not tokens). Performance per watt is
#: tokens_per_j (derived energy), not throughput over the TDP
ECONOMY = ("tokens_per_usd_hour",)
#: workload fields a decode/prefill sweep costs as arrays (one lowering for the whole grid)
VECTOR_FIELDS = {"decode": ("batch", "context"), "prefill": ("batch", "prompt")}
CONSTRAINTS = ("max_power_w", "max_usd_per_hour")

_POINT_ERRORS = (CapacityError, WorkloadError, ConfigError, UnitError)
_RANGE_KEYS = {"start", "stop", "num", "log"}
_UNIT_KINDS = ("bytes_per_s", "flops_per_s", "bytes", "s", "watts", "hz")


# ---- the spec -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class Axis:
    """One swept field: a chip ``--set`` path (``target == "chip"``) or a workload field."""

    name: str
    values: tuple[Any, ...]
    target: str  # chip | workload

    @property
    def labels(self) -> tuple[str, ...]:
        """Each value as written to the CSV: numbers in SI units, lists as JSON."""
        return tuple(_label(v) for v in self.values)


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepSpec:
    """A parsed sweep spec (see the module docstring and docs/sweeps.md).

    ``chip_raw`` is the base chip's TOML table, so workers on other machines need no chip file;
    with a ``chip`` axis, ``chip_raws`` holds each of its chips' tables (and ``chip`` is "").
    """

    chip: str
    chip_raw: dict[str, Any]
    chip_raws: tuple[dict[str, Any], ...] = ()
    sets: tuple[str, ...] = ()
    kind: str
    workload: dict[str, Any]
    axes: tuple[Axis, ...] = ()
    mode: str = "product"
    check_memory: bool = True
    max_power_w: float | None = None
    max_usd_per_hour: float | None = None

    @property
    def n_points(self) -> int:
        if not self.axes:
            return 1
        if self.mode == "zip":
            return len(self.axes[0].values)
        return math.prod(len(a.values) for a in self.axes)

    @property
    def identity(self) -> list[str]:
        """The IDENTITY columns no axis names."""
        names = {a.name for a in self.axes}
        return [c for c in IDENTITY if c not in names]

    @property
    def header(self) -> list[str]:
        return (
            [a.name for a in self.axes] + self.identity + list(META) + list(METRICS)
            + list(ENERGY) + list(ECONOMY)
        )  # fmt: skip

    @property
    def chip_axis(self) -> int | None:
        """The position of the ``chip`` axis, if the spec sweeps chip presets."""
        return next((i for i, a in enumerate(self.axes) if a.target == "system"), None)

    @property
    def fingerprint(self) -> dict[str, str]:
        """A hash per part of the spec that decides the results: what ``--resume`` compares
        (``sidecar_path``) to refuse a file written by a changed spec, naming the part."""
        parts = {
            "system.chip": [self.chip, self.chip_raw, self.chip_raws],
            "system.set": list(self.sets),
            "workload": [self.kind, self.workload, _file_digests(self.workload.values())],
            "axes": [
                self.mode,
                [(a.name, a.target, a.labels) for a in self.axes],
                _file_digests(v for a in self.axes for v in a.values),
            ],
            "constraints": [self.check_memory, self.max_power_w, self.max_usd_per_hour],
            "roofsim": version(),
        }
        return {
            key: hashlib.sha256(json.dumps(v, sort_keys=True, default=repr).encode()).hexdigest()
            for key, v in parts.items()
        }

    @property
    def digest(self) -> str:
        """A hash of everything that decides the results (the per-process cache key)."""
        blob = json.dumps(self.fingerprint, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def value_indices(self, points: np.ndarray) -> list[np.ndarray]:
        """For each axis, the index of each point's value along it."""
        points = np.asarray(points, dtype=np.int64)
        if not self.axes:
            return []
        if self.mode == "zip":
            return [points for _ in self.axes]
        return list(np.unravel_index(points, [len(a.values) for a in self.axes]))


def load_spec(path: str | Path) -> SweepSpec:
    """Read and check a sweep spec; raises ConfigError naming the field and the fix."""
    path = Path(path)
    where = f"sweep spec {path}"
    if not files.is_file(path):
        raise ConfigError(f"{where}: no such file")
    try:
        raw = tomllib.loads(files.read_text(path, "sweep spec"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: malformed TOML: {exc}") from None
    return spec_from_dict(raw, where)


def spec_from_dict(raw: dict[str, Any], where: str = "sweep spec") -> SweepSpec:
    """Check a spec table (the parsed TOML) and expand its axes."""
    allowed = ("mode", "check_memory", "system", "workload", "axes", "constraints")
    _only(raw, allowed, where, "top-level key")
    mode = raw.get("mode", "product")
    if mode not in MODES:
        raise ConfigError(f"{where}: mode must be product or zip, got {mode!r}")
    check_memory = raw.get("check_memory", True)
    if not isinstance(check_memory, bool):
        raise ConfigError(f"{where}: check_memory must be true or false, got {check_memory!r}")

    system = _table(raw, "system", where)
    _only(system, ("chip", "chips", "set"), f"{where}: [system]", "key")
    sets = system.get("set", [])
    if not isinstance(sets, list) or not all(isinstance(s, str) for s in sets):
        raise ConfigError(f'{where}: [system] set must be a list of "PATH=VALUE" strings')
    raw_axes = list(_flatten_axes(_table(raw, "axes", where)))
    chip_axis = [value for name, value in raw_axes if name == "chip"]
    if "chip" in system and chip_axis:
        raise ConfigError(f"{where}: chip is in [system] and [axes]; keep one")
    if "chip" not in system and not chip_axis:
        raise ConfigError(
            f'{where}: [system] needs chip = "<preset slug or chip TOML>" '
            '(or sweep chips: [axes] chip = ["h100-sxm", "mi300x"])'
        )
    chips_named = (
        _axis_values(chip_axis[0], f"{where}: [axes] 'chip'") if chip_axis else (system["chip"],)
    )
    chip_raws = []
    for name in chips_named:
        what = f"{where}: [axes] 'chip'" if chip_axis else f"{where}: [system] chip"
        if not isinstance(name, str):
            raise ConfigError(f"{what}: give a preset slug or a chip TOML path, got {name!r}")
        try:
            chip_raws.append(load_chip_dict(name))
        except ConfigError as exc:
            raise ConfigError(f"{what}: {_strip(exc)}") from None
        try:
            apply_overrides(copy.deepcopy(chip_raws[-1]), sets)
        except ConfigError as exc:
            raise ConfigError(f"{where}: [system] set (on {name}): {_strip(exc)}") from None
    chip = "" if chip_axis else str(system["chip"])
    chip_raw = chip_raws[0]

    workload = dict(_table(raw, "workload", where))
    kind = workload.pop("kind", None)
    if kind not in KINDS:
        raise ConfigError(
            f"{where}: [workload] kind must be one of {', '.join(KINDS)}, got {kind!r}"
        )
    fields = WORKLOAD_FIELDS[kind]
    _only(workload, fields, f"{where}: [workload] ({kind})", "field")
    if "chips" in system:
        if "chips" in workload:
            raise ConfigError(f"{where}: chips is in [system] and [workload]; keep one")
        workload["chips"] = system["chips"]

    axes = []
    for name, value in raw_axes:
        axis_where = f"{where}: [axes] {name!r}"
        if name in ("mode", "check_memory"):
            raise ConfigError(f"{axis_where} goes at the top of the spec, before [system]")
        if name == "chip":
            axes.append(Axis(name=name, values=chips_named, target="system"))
            continue
        if "." in name:
            target = "chip"
        elif name in fields:
            target = "workload"
            if name in workload:
                raise ConfigError(
                    f"{axis_where} is also fixed in [workload]; remove one of the two"
                )
        else:
            raise ConfigError(
                f"{axis_where}: not a {kind} field ({', '.join(fields)}) nor a chip path "
                "such as hbm.bandwidth or compute.peak.bf16"
            )
        values = _axis_values(value, axis_where)
        if target == "chip":
            for one in chip_raws:
                try:
                    apply_overrides(copy.deepcopy(one), [_override(name, values[0])])
                except ConfigError as exc:
                    raise ConfigError(f"{axis_where}: {_strip(exc)}") from None
        axes.append(Axis(name=name, values=values, target=target))
    if mode == "zip" and len({len(a.values) for a in axes}) > 1:
        lengths = ", ".join(f"{a.name} {len(a.values)}" for a in axes)
        raise ConfigError(f"{where}: mode = zip needs axes of one length, got {lengths}")
    swept = {a.name for a in axes}
    if "model" not in workload and "model" not in swept:
        raise ConfigError(f'{where}: [workload] needs model = "<preset slug or file>"')
    if kind == "train" and "chips" not in workload and "chips" not in swept:
        raise ConfigError(f"{where}: a train sweep needs chips (in [system] or as an axis)")

    cons = _table(raw, "constraints", where)
    _only(cons, CONSTRAINTS, f"{where}: [constraints]", "key")
    limits = {}
    for key, kind_of in (("max_power_w", "watts"), ("max_usd_per_hour", None)):
        if key in cons:
            try:
                value = parse_quantity(cons[key], kind_of) if kind_of else float(cons[key])
            except (UnitError, TypeError, ValueError):
                raise ConfigError(
                    f"{where}: [constraints] {key} must be a number, got {cons[key]!r}"
                ) from None
            if not value > 0:
                raise ConfigError(f"{where}: [constraints] {key} must be > 0, got {value!r}")
            limits[key] = value
    return SweepSpec(
        chip=chip,
        chip_raw=chip_raw,
        chip_raws=tuple(chip_raws) if chip_axis else (),
        sets=tuple(sets),
        kind=kind,
        workload=workload,
        axes=tuple(axes),
        mode=mode,
        check_memory=check_memory,
        **limits,
    )


def _table(raw: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {key} must be a table ([{key}]), got {value!r}")
    return value


def _only(table: dict[str, Any], allowed: tuple[str, ...], where: str, what: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown {what} {key!r}; allowed: {', '.join(allowed)}")


def _strip(exc: Exception) -> str:
    """A loader message without the command-line flag it starts with (``--set: ``)."""
    return re.sub(r"^--[a-z-]+: ", "", str(exc))


def _flatten_axes(table: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Axis names and values; an unquoted dotted key (hbm.bandwidth = ...) nests in TOML."""
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and not (set(value) & _RANGE_KEYS):
            yield from _flatten_axes(value, f"{name}.")
        else:
            yield name, value


def _axis_values(value: Any, where: str) -> tuple[Any, ...]:
    """A list as given (unit strings read as SI numbers), or a range expanded."""
    if isinstance(value, list):
        if not value:
            raise ConfigError(f"{where}: the list of values is empty")
        return tuple(_normalise(v) for v in value)
    if not isinstance(value, dict):
        raise ConfigError(
            f"{where}: give a list of values, {{start, stop, num}} or {{start, stop, num, "
            f"log = true}}, got {value!r}"
        )
    unknown = set(value) - _RANGE_KEYS
    if unknown or not {"start", "stop", "num"} <= set(value):
        raise ConfigError(
            f"{where}: a range is {{start = A, stop = B, num = N}} (optionally log = true), "
            f"got keys {', '.join(sorted(value))}"
        )
    num, log = value["num"], value.get("log", False)
    if not isinstance(num, int) or isinstance(num, bool) or num < 1:
        raise ConfigError(f"{where}: num must be an integer >= 1, got {num!r}")
    if num > MAX_POINTS:  # refused before the values are made (check_size sees the product)
        raise ConfigError(
            f"{where}: num {num:.3g} is more than the {MAX_POINTS:.0e} points one run takes; "
            "use a smaller num, or split the range into several runs"
        )
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: log must be true or false, got {log!r}")
    start, stop = (_number(value[k], f"{where}: {k}") for k in ("start", "stop"))
    if log and not (start > 0 and stop > 0):
        raise ConfigError(f"{where}: a log range needs start and stop > 0, got {start}, {stop}")
    grid = np.geomspace(start, stop, num) if log else np.linspace(start, stop, num)
    if all(isinstance(value[k], int) and not isinstance(value[k], bool) for k in ("start", "stop")):
        # integer endpoints: integer values, each once (a log range of small integers repeats)
        return tuple(dict.fromkeys(int(round(x)) for x in grid.tolist()))
    return tuple(grid.tolist())


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{where} must be a number or a quantity such as '3.35 TB/s'")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        quantity = _quantity(value)
        if quantity is not None:
            return quantity
    raise ConfigError(f"{where} must be a number or a quantity such as '3.35 TB/s', got {value!r}")


def _quantity(text: str) -> float | None:
    """A unit string in SI base units, trying each kind of unit; None if it is not one."""
    for kind in _UNIT_KINDS:
        try:
            return parse_quantity(text, kind)
        except UnitError:
            continue
    return None


def _normalise(value: Any) -> Any:
    """List entries: quantities become SI floats, everything else stays as written."""
    if isinstance(value, str):
        quantity = _quantity(value)
        return value if quantity is None else quantity
    return value


def _label(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list | tuple | dict):
        return json.dumps(value)
    return str(value)


def _override(path: str, value: Any) -> str:
    """A ``--set`` item whose value reads back as ``value`` (TOML for numbers, lists, strings)."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float):
        text = repr(value) if math.isfinite(value) else str(value)
    else:
        text = json.dumps(value)
    return f"{path}={text}"


# ---- evaluating points ----------------------------------------------------------------------------
def _codes(columns: list[np.ndarray], sizes: list[int]) -> np.ndarray:
    """One integer per point for its tuple of value indices (equal tuples, equal codes)."""
    if not columns:
        return np.zeros(0, dtype=np.int64)
    if math.prod(sizes) < 2**62:
        return np.ravel_multi_index(columns, sizes)
    _, inverse = np.unique(np.stack(columns, axis=1), axis=0, return_inverse=True)
    return inverse.reshape(-1)


def vector_axes(spec: SweepSpec) -> tuple[int, ...]:
    """Workload axes costed as arrays: integer batch/context/prompt of decode and prefill, unless
    the spec has at least as many chip designs as such shapes (then each shape is lowered once
    and costed over its chips, the cheaper way round)."""
    axes = tuple(
        i for i, a in enumerate(spec.axes)
        if a.target == "workload" and a.name in VECTOR_FIELDS.get(spec.kind, ())
        and all(type(v) is int for v in a.values)
    )  # fmt: skip
    shapes = math.prod(len(spec.axes[i].values) for i in axes)
    designs = math.prod(len(a.values) for a in spec.axes if a.target == "chip")
    return axes if spec.mode == "zip" or shapes > designs else ()


def _split_by(codes: np.ndarray) -> list[np.ndarray]:
    """Positions grouped by equal code, each group in increasing order, groups by first position."""
    order = np.argsort(codes, kind="stable")
    groups = np.split(order, np.flatnonzero(np.diff(codes[order])) + 1)
    groups.sort(key=lambda g: g[0])
    return groups


class _Factor:
    """Chip axes built together: each distinct combination of their values is one chip build.

    ``entries[j]`` is combination j's change to the base chip's leaves, or the error building it.
    A factor of one axis builds every value up front, so its entry j is value j.
    """

    def __init__(self, axes: tuple[int, ...], sizes: tuple[int, ...]) -> None:
        self.axes = axes  # positions in spec.axes
        self.sizes = sizes
        self.keys: dict[int, int] = {}  # combination code -> entry
        self.entries: list[dict[str, Any] | str] = []
        self.direct = False
        self._cache: dict[str, Any] = {}
        self._cache_for = -1

    def prebuild(self, ctx: _Context) -> None:
        for j in range(self.sizes[0]):
            self._entry(ctx, j)
        self.direct = True

    def ids(self, ctx: _Context, vidx: list[np.ndarray]) -> np.ndarray:
        if self.direct:
            return vidx[self.axes[0]]
        codes = _codes([vidx[a] for a in self.axes], list(self.sizes))
        distinct, inverse = np.unique(codes, return_inverse=True)
        local = np.array([self._entry(ctx, c) for c in distinct.tolist()], dtype=np.int64)
        return local[inverse.reshape(-1)]

    def _entry(self, ctx: _Context, code: int) -> int:
        if code not in self.keys:
            values = [int(v) for v in np.unravel_index(code, self.sizes)]
            self.keys[code] = len(self.entries)
            self.entries.append(ctx.build_delta(dict(zip(self.axes, values, strict=True))))
        return self.keys[code]

    def values_of(self, entry: int) -> dict[int, int]:
        """The axis value indices of an entry."""
        code = next(c for c, e in self.keys.items() if e == entry)
        values = [int(v) for v in np.unravel_index(code, self.sizes)]
        return dict(zip(self.axes, values, strict=True))

    def _cached(self, key: str, make: Callable[[], Any]) -> Any:
        if self._cache_for != len(self.entries):
            self._cache, self._cache_for = {}, len(self.entries)
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def touched(self) -> set[str]:
        """Leaves some entry changes."""
        return self._cached(
            " touched", lambda: {k for e in self.entries if isinstance(e, dict) for k in e}
        )

    def failed(self) -> np.ndarray:
        return self._cached(
            " failed", lambda: np.array([isinstance(e, str) for e in self.entries], dtype=bool)
        )

    def structure_codes(self) -> np.ndarray:
        """Per entry, a code for its change to the chip's structure (0: none)."""

        def make() -> np.ndarray:
            seen: dict[tuple, int] = {(): 0}
            out = []
            for e in self.entries:
                key = (
                    tuple((k, e[k]) for k in STRUCTURE_LEAVES if k in e)
                    if isinstance(e, dict)
                    else ()
                )
                out.append(seen.setdefault(key, len(seen)))
            return np.array(out, dtype=np.int64)

        return self._cached(" structure", make)

    def table(self, leaf: str, base: float) -> np.ndarray:
        """``leaf`` for every entry (the base value where the entry leaves it alone)."""
        return self._cached(
            leaf,
            lambda: np.array(
                [e.get(leaf, base) if isinstance(e, dict) else math.nan for e in self.entries],
                dtype=float,
            ),
        )


class _Context:
    """What one process needs to evaluate a spec's points: the base chip, built axes, caches."""

    def __init__(self, spec: SweepSpec, chip: int = 0) -> None:
        """``chip``: which of a ``chip`` axis's presets is the base (sub-contexts per preset)."""
        self.spec = spec
        raw = spec.chip_raws[chip] if spec.chip_raws else spec.chip_raw
        self.base_raw = apply_overrides(copy.deepcopy(raw), list(spec.sets))
        self.base_system = system_from_dict(copy.deepcopy(self.base_raw), 1)
        self.base = chip_leaves(self.base_system)
        self.cells = [tuple(_cell(label) for label in a.labels) for a in spec.axes]
        self.sizes = [len(a.values) for a in spec.axes]
        self.chip_axes = tuple(i for i, a in enumerate(spec.axes) if a.target == "chip")
        self.workload_axes = tuple(i for i, a in enumerate(spec.axes) if a.target == "workload")
        self.vector_axes = vector_axes(spec)
        self.identity = [
            _cell(spec.chip) if c == "chip" else _cell(str(spec.workload.get("model", "")))
            for c in spec.identity
        ]
        self.subs: dict[int, _Context] = {chip: self}
        self.systems: dict[tuple[int, ...], System | str] = {}
        self.factors = self._factors()
        self._dits: dict[str, Any] = {}
        self._lock = threading.Lock()  # threads of one Dask worker share a context

    # ---- chips ----------------------------------------------------------------------------------
    def build(self, values: dict[int, int]) -> System:
        """The system of one combination of chip-axis values (axis position -> value index)."""
        axes = self.spec.axes
        items = [_override(axes[a].name, axes[a].values[j]) for a, j in values.items()]
        return system_from_dict(apply_overrides(copy.deepcopy(self.base_raw), items), 1)

    def build_delta(self, values: dict[int, int]) -> dict[str, Any] | str:
        """The leaves a chip build changes from the base chip, or the build's error."""
        try:
            leaves = chip_leaves(self.build(values))
        except (ConfigError, UnitError) as exc:
            return _one_line(exc)
        delta = {k: v for k, v in leaves.items() if not _same(self.base.get(k, _MISSING), v)}
        for k in self.base.keys() - leaves.keys():
            delta[k] = math.nan  # a leaf the build no longer has (never for --set paths)
        return delta

    def _factors(self) -> list[_Factor]:
        """One factor per chip axis when their changes compose exactly, else one for all."""
        if not self.chip_axes:
            return []
        single = [_Factor(axes=(a,), sizes=(self.sizes[a],)) for a in self.chip_axes]
        for f in single:
            f.prebuild(self)
        if len(single) == 1:
            return single
        errors = any(f.failed().any() for f in single)
        touched = [f.touched() for f in single]
        disjoint = sum(len(t) for t in touched) == len(set().union(*touched))
        if not errors and disjoint and self._composes(single):
            return single
        return [_Factor(axes=self.chip_axes, sizes=tuple(self.sizes[a] for a in self.chip_axes))]

    def _composes(self, single: list[_Factor]) -> bool:
        """Build two combinations in full and compare them with their composed leaves."""
        rng = np.random.default_rng(0)
        for _ in range(2):
            pick = {a: int(rng.integers(self.sizes[a])) for a in self.chip_axes}
            composed = dict(self.base)
            for f in single:
                entry = f.entries[pick[f.axes[0]]]
                assert isinstance(entry, dict)
                composed.update(entry)
            try:
                full = chip_leaves(self.build(pick))
            except (ConfigError, UnitError):
                return False
            if full.keys() != composed.keys() or not all(_same(full[k], composed[k]) for k in full):
                return False
        return True

    def chip_groups(
        self, vidx: list[np.ndarray], n: int
    ) -> Iterator[tuple[np.ndarray, ChipArrays | str]]:
        """Positions of points that share a chip structure with their chips, or a build error."""
        if not self.factors:  # one chip for every point
            values = {
                k: np.full(1, v, dtype=float)
                for k, v in self.base.items()
                if k not in STRUCTURE_LEAVES
            }
            structure = structure_of(self.base)
            yield np.arange(n), ChipArrays.from_leaves(structure, values, self.base_system)
            return
        ids = [f.ids(self, vidx) for f in self.factors]
        bad = np.zeros(n, dtype=bool)
        for f, fid in zip(self.factors, ids, strict=True):
            failed = f.failed()[fid] & ~bad
            for p in np.flatnonzero(failed).tolist():
                yield np.array([p]), f.entries[fid[p]]  # type: ignore[misc]
            bad |= failed
        good = np.flatnonzero(~bad)
        if not len(good):
            return
        codes = [f.structure_codes()[fid[good]] for f, fid in zip(self.factors, ids, strict=True)]
        sizes = [int(c.max()) + 1 for c in codes]
        groups = _split_by(_codes(codes, sizes)) if max(sizes) > 1 else [np.arange(len(good))]
        owner = {k: f for f in self.factors for k in f.touched()}
        for g in groups:
            pos = good[g]
            first = [int(fid[pos[0]]) for fid in ids]
            leaves = dict(self.base)
            for f, e in zip(self.factors, first, strict=True):
                entry = f.entries[e]
                assert isinstance(entry, dict)
                leaves.update(entry)
            values = {}
            for k, v in leaves.items():
                if k in STRUCTURE_LEAVES:
                    continue
                f = owner.get(k)
                if f is None:
                    values[k] = np.full(len(pos), v, dtype=float)
                else:
                    fid = ids[self.factors.index(f)]
                    values[k] = f.table(k, self.base.get(k, math.nan))[fid[pos]]
            template = self._template(first)
            yield pos, ChipArrays.from_leaves(structure_of(leaves), values, template)

    def _template(self, entries: list[int]) -> System:
        """A real System of a group's structure (for collectives and dtype messages)."""
        values: dict[int, int] = {}
        for f, e in zip(self.factors, entries, strict=True):
            values.update(f.values_of(e))
        return self._system(values)

    def _system(self, values: dict[int, int]) -> System:
        key = tuple(values[a] for a in self.chip_axes)
        if key not in self.systems:
            try:
                self.systems[key] = self.build(values)
            except (ConfigError, UnitError) as exc:
                self.systems[key] = _one_line(exc)
        system = self.systems[key]
        if isinstance(system, str):
            raise ConfigError(system)
        return system

    def system(self, vidx: list[np.ndarray], p: int) -> System:
        """The full System of the point at position ``p`` (scalar path); raises its build error."""
        return self._system({a: int(vidx[a][p]) for a in self.chip_axes})

    # ---- workloads ------------------------------------------------------------------------------
    def fields(self, vidx: list[np.ndarray], p: int) -> dict[str, Any]:
        out = dict(self.spec.workload)
        for a in self.workload_axes:
            axis = self.spec.axes[a]
            out[axis.name] = axis.values[int(vidx[a][p])]
        return out

    def _load_dit(self, name: str) -> Any:
        from workloads.dit import load_dit

        if name not in self._dits:
            self._dits[name] = load_dit(name)
        return self._dits[name]

    # ---- rows -----------------------------------------------------------------------------------
    def lines(self, points: np.ndarray) -> tuple[list[str], int]:
        """One CSV line per point (in the order of ``points``) and how many are errors."""
        with self._lock:  # the caches below grow as new chips and workloads appear
            return self._lines(np.asarray(points, dtype=np.int64))

    def _lines(self, points: np.ndarray) -> tuple[list[str], int]:
        vidx = self.spec.value_indices(points)
        cols = [[cells[j] for j in v.tolist()] for cells, v in zip(self.cells, vidx, strict=True)]
        cols += [[cell] * len(points) for cell in self.identity]
        cols.append([str(p) for p in points.tolist()])
        prefix = [",".join(row) for row in zip(*cols, strict=True)]
        out: list[str] = [""] * len(points)
        axis = self.spec.chip_axis
        if axis is None:
            groups = [(self, np.arange(len(points)))]
        else:  # a context per chip preset
            groups = [(self.sub(int(vidx[axis][g[0]])), g) for g in _split_by(vidx[axis])]
        errors = 0
        for ctx, pos in groups:
            errors += ctx._fill(pos, [v[pos] for v in vidx], prefix, out, ctx.vector_axes)
        return out, errors

    def sub(self, chip: int) -> _Context:
        """The context of the ``chip`` axis's preset number ``chip``."""
        if chip not in self.subs:
            self.subs[chip] = _Context(self.spec, chip)
        return self.subs[chip]

    def _fill(
        self,
        pos: np.ndarray,
        vidx: list[np.ndarray],
        prefix: list[str],
        out: list[str],
        vector: tuple[int, ...],
    ) -> int:
        """Fill ``out`` at ``pos``: points grouped by every workload field but the ``vector``
        axes (costed as arrays); count errors."""
        grouping = [a for a in self.workload_axes if a not in vector]
        if grouping:
            codes = _codes([vidx[a] for a in grouping], [self.sizes[a] for a in grouping])
            groups = _split_by(codes)
        else:
            groups = [np.arange(len(pos))]
        errors = 0
        for g in groups:
            errors += self._group_lines(pos[g], [v[g] for v in vidx], prefix, out, vector)
        return errors

    def _group_lines(
        self,
        pos: np.ndarray,
        vidx: list[np.ndarray],
        prefix: list[str],
        out: list[str],
        vector: tuple[int, ...] = (),
    ) -> int:
        """Fill ``out`` at ``pos``, points that share every workload field but the ``vector``
        axes, which are lowered as integer arrays (one op list for the whole group)."""
        where = pos.tolist()
        fields = self.fields(vidx, 0)
        for a in vector:
            axis = self.spec.axes[a]
            fields[axis.name] = np.array(axis.values, dtype=np.int64)[vidx[a]]
        try:
            workload, n_chips = build_workload(self.spec.kind, fields, self._load_dit)
            graph = workload.lower() if self.spec.kind in VECTOR_KINDS else None
        except _POINT_ERRORS as exc:
            if vector:  # a bad value on a vector axis: each shape alone, its own error
                return self._fill(pos, vidx, prefix, out, ())
            for p in where:
                out[p] = _error_line(prefix[p], exc)
            return len(where)
        if graph is None:
            overlap = bool(fields.get("overlap", True))
            errors = 0
            for i, p in enumerate(where):
                out[p] = self._scalar_line(prefix[p], workload, n_chips, overlap, vidx, i)
                errors += out[p].startswith(f"{prefix[p]},error,")
            return errors
        errors = 0
        for sub, chips in self.chip_groups(vidx, len(where)):
            at = [where[i] for i in sub.tolist()]
            if isinstance(chips, str):
                for p in at:
                    out[p] = _error_line(prefix[p], chips)
                errors += len(at)
                continue
            shape = graph if graph.points == 1 or len(at) == len(where) else graph.take(sub)
            try:
                res = evaluate(shape, n_chips, chips, check_memory=self.spec.check_memory)
            except _POINT_ERRORS as exc:
                for p in at:
                    out[p] = _error_line(prefix[p], exc)
                errors += len(at)
                continue
            k = len(at)  # results of one point (one chip, one shape) stand for all k
            excluded = _spread(self._excluded(chips, n_chips), k)
            t, thr = _spread(res.time_s.tolist(), k), _spread(res.throughput.tolist(), k)
            mfu, mbu = _spread(res.mfu.tolist(), k), _spread(res.mbu.tolist(), k)
            bound, fits = _spread(res.bound.tolist(), k), _spread(res.fits.tolist(), k)
            req, errs = _spread(_reprs(res.required_bytes), k), _spread(res.error, k)
            economy = _spread(self._economy(res.throughput, chips, n_chips, res.throughput_unit), k)
            energy = _spread(_energy_cells(res.energy_j, res.avg_power_w, res.per_j,
                                           res.throughput_unit), k)  # fmt: skip
            for i, p in enumerate(at):
                why = excluded[i] or errs[i]
                if why is not None:
                    out[p] = _error_line(prefix[p], why)
                    errors += 1
                else:
                    out[p] = (
                        f"{prefix[p]},ok,,{t[i]!r},{thr[i]!r},{mfu[i]!r},{mbu[i]!r},"
                        f"{BOUNDS[bound[i]]},{'true' if fits[i] else 'false'},{req[i]},"
                        f"{energy[i]},{economy[i]}"
                    )
        return errors

    @staticmethod
    def _economy(throughput: np.ndarray, chips: ChipArrays, n_chips: int, unit: str) -> list[str]:
        """The ECONOMY cell of each point: tokens per dollar of on-demand chip time, empty
        where the preset cites no price (or the unit is not tokens)."""
        if unit != "tokens_per_s":
            return [""] * len(throughput)
        with np.errstate(invalid="ignore"):
            per_usd = throughput * 3600.0 / (n_chips * chips.values["usd_per_hour"])
        return ["" if u != u else repr(u) for u in per_usd.tolist()]

    def _excluded(self, chips: ChipArrays, n_chips: int) -> list[str | None]:
        """The constraint each chip breaks, if any (checked before it is costed)."""
        out: list[str | None] = [None] * chips.n
        for key, leaf in (("max_power_w", "tdp_watts"), ("max_usd_per_hour", "usd_per_hour")):
            limit = getattr(self.spec, key)
            if limit is None:
                continue
            for i, v in enumerate(chips.values[leaf].tolist()):
                out[i] = out[i] or _constraint(key, limit, v, n_chips, chips.structure.name)
        return out

    def _scalar_line(
        self,
        prefix: str,
        workload: Any,
        n_chips: int,
        overlap: bool,
        vidx: list[np.ndarray],
        i: int,
    ) -> str:
        """The line of one training point (the event engine has no vector form)."""
        from sim.engine.train import simulate_training

        try:
            base = self.system(vidx, i)
            chip = base.chip
            for key, value in (("max_power_w", chip.tdp_watts),
                               ("max_usd_per_hour", chip.usd_per_hour)):  # fmt: skip
                why = _constraint(key, getattr(self.spec, key), value, n_chips, chip.name)
                if why:
                    return _error_line(prefix, why)
            system = replace(base, n_chips=n_chips)
            r = simulate_training(workload, system, overlap=overlap,
                                  check_memory=self.spec.check_memory)  # fmt: skip
        except _POINT_ERRORS as exc:
            return _error_line(prefix, exc)
        mbu = r.hbm_bytes / (r.step_time_s * chip.main_memory.bandwidth_bytes_per_s)
        per_usd = (
            "" if chip.usd_per_hour is None
            else repr(r.tokens_per_s * 3600.0 / (n_chips * chip.usd_per_hour))
        )  # fmt: skip
        energy = ",," if r.step_energy_j is None else (
            f"{r.step_energy_j!r},{r.step_energy_j / r.step_time_s!r},"
            f"{r.tokens_per_s * r.step_time_s / r.step_energy_j!r}"
        )  # fmt: skip
        return (
            f"{prefix},ok,,{r.step_time_s!r},{r.tokens_per_s!r},{r.mfu!r},{mbu!r},{r.bound},"
            f"{'true' if r.fits else 'false'},{float(r.memory.total_bytes)!r},{energy},{per_usd}"
        )


def _cell(text: str) -> str:
    """``text`` as one CSV field (quoted where it holds a comma, quote or line break)."""
    if '"' in text:
        return '"' + text.replace('"', '""') + '"'
    if "," in text or "\n" in text or "\r" in text:
        return f'"{text}"'
    return text


_EMPTY = "," * (len(METRICS) + len(ENERGY) + len(ECONOMY))


def _energy_cells(energy: np.ndarray, power: np.ndarray, per_j: np.ndarray, unit: str) -> list[str]:
    """The ENERGY cells of each point (empty where NaN: no power model)."""
    if unit == "tokens_per_s":
        return [
            ",," if e != e else f"{e!r},{w!r},{t!r}"
            for e, w, t in zip(energy.tolist(), power.tolist(), per_j.tolist(), strict=True)
        ]
    pairs = zip(energy.tolist(), power.tolist(), strict=True)
    return [",," if e != e else f"{e!r},{w!r}," for e, w in pairs]


def _reprs(values: np.ndarray) -> list[str]:
    """repr of each value, each distinct value formatted once (a decode grid's memory need
    takes one value per batch)."""
    distinct, inverse = np.unique(values, return_inverse=True)
    if 4 * len(distinct) > len(values):
        return [repr(v) for v in values.tolist()]
    text = [repr(v) for v in distinct.tolist()]
    return [text[i] for i in inverse.reshape(-1).tolist()]


def _spread(values: list[Any], k: int) -> list[Any]:
    """A list of k values: as it is, or its one value k times."""
    return values * k if len(values) == 1 and k > 1 else values


def _error_line(prefix: str, why: Exception | str) -> str:
    text = str(why)
    if "\n" in text or "  " in text or "\t" in text or "\r" in text:
        text = _one_line(text)
    return f"{prefix},error,{_cell(text)}{_EMPTY}"


_MISSING = object()


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a is not _MISSING and type(a) is type(b) and a == b


def _one_line(why: Exception | str) -> str:
    return " ".join(str(why).split())


def _constraint(
    key: str, limit: float | None, per_chip: float | None, n_chips: int, chip: str
) -> str | None:
    """Why a point breaks ``[constraints] key = limit`` (chips x the chip's value), or None."""
    if limit is None:
        return None
    what, unit = ("power.tdp", "W") if key == "max_power_w" else ("price.usd_per_hour", "$/h")
    if per_chip is None or math.isnan(per_chip):
        return f"excluded by constraint {key}: {chip} has no {what}"
    total = n_chips * per_chip
    if total > limit:
        return (
            f"excluded by constraint {key}: {n_chips} x {per_chip:g} {unit} = {total:g} {unit} "
            f"> {limit:g} {unit}"
        )
    return None


def _speculation(f: dict[str, Any]) -> Any:
    """A decode point's speculative decoding (``spec_tokens``, ``acceptance`` or
    ``accepted_length``, ``draft``), as ``roofsim decode`` builds it from its flags; None without
    spec_tokens."""
    from workloads.llm import Speculation, draft_from

    if f.get("spec_tokens") is None:
        for key in ("acceptance", "accepted_length", "draft"):
            if f.get(key) is not None:
                raise WorkloadError(
                    f"decode: {key} needs spec_tokens (the drafted tokens per step)"
                )
        return None
    return Speculation(tokens=f["spec_tokens"], acceptance=f.get("acceptance"),
                       accepted_length=f.get("accepted_length"),
                       draft=draft_from(f.get("draft", "mtp"), "draft"))  # fmt: skip


def build_workload(kind: str, f: dict[str, Any], load_dit: Callable[[str], Any]) -> tuple[Any, int]:
    """The descriptor the matching ``roofsim`` command builds from these fields, and its chips."""
    from workloads import Decode, Prefill, load_model
    from workloads.runtime import DEFAULT_DIT_RUNTIME, DEFAULT_RUNTIME, load_runtime

    if kind in ("decode", "prefill"):
        tp = f.get("tp") or f.get("chips") or 1
        chips = f.get("chips") or tp
        if isinstance(chips, int) and isinstance(tp, int) and chips % tp:
            raise ConfigError(f"--chips {chips} must be a multiple of --tp {tp}")
        common = dict(model=load_model(f["model"]), batch=f.get("batch", 1),
                      dtype=f.get("dtype", "bf16"), kv_dtype=f.get("kv_dtype"),
                      int4_group=f.get("int4_group"), tp=tp,
                      attention_kernel=f.get("attention_kernel"),
                      runtime=load_runtime(f.get("runtime", DEFAULT_RUNTIME)),
                      sampling=f.get("sampling", "greedy"),
                      dp=chips // tp if isinstance(chips, int) and isinstance(tp, int) else chips)  # fmt: skip
        if kind == "decode":
            return Decode(context=f.get("context", 2048), spec=_speculation(f), **common), chips
        return Prefill(prompt=f.get("prompt", 2048), **common), chips
    if kind == "dit":
        from workloads.dit import DiT

        model = load_dit(f["model"])
        chips, replicas = f.get("chips", 1), f.get("replicas", 1)
        if chips % replicas:
            raise ConfigError(f"--chips {chips} must be a multiple of --replicas {replicas}")
        workload = DiT(
            model=model,
            height=f.get("height", model.default_height),
            width=f.get("width", model.default_width),
            frames=f.get("frames", model.default_frames),
            fps=f.get("fps", model.default_fps),
            steps=f.get("steps", model.default_steps),
            batch=f.get("batch", 1),
            cfg=f.get("cfg", model.default_cfg),
            dtype=f.get("dtype", "bf16"),
            sp=chips // replicas,
            sp_method=f.get("sp", "ulysses"),
            parallel_vae=f.get("parallel_vae", False),
            dp=replicas,
            tokens=f.get("tokens"),
            text_tokens=f.get("text_tokens"),
            attention_kernel=f.get("attention_kernel"),
            runtime=load_runtime(f.get("runtime", DEFAULT_DIT_RUNTIME)),
        )
        return workload, chips
    from workloads.training import Training

    chips = f["chips"]
    if not isinstance(chips, int) or chips < 1:
        raise ConfigError(f"--chips must be an integer >= 1, got {chips}")
    tp, cp, pp = f.get("tp", 1), f.get("cp", 1), f.get("pp", 1)
    dp = f.get("dp")
    if dp is None:
        inner = max(1, tp) * max(1, cp) * max(1, pp)
        if chips % inner:
            raise ConfigError(f"--chips {chips} must be a multiple of tp x cp x pp = {inner}")
        dp = chips // inner
    workload = Training(
        model=load_model(f["model"]), seq=f.get("seq", 2048), micro_batch=f.get("micro_batch", 1),
        global_batch=f.get("global_batch"), dtype=f.get("dtype", "bf16"),
        recompute=f.get("recompute", "none"), recompute_blocks=f.get("recompute_blocks", 1.0),
        zero=f.get("zero", 0), dp_shard=f.get("dp_shard", 0), grad_reduce=f.get("grad_reduce", ""), tp=tp, sp=f.get("sp", False),
        pp=pp, vp=f.get("vp", 1), dp=dp, ep=f.get("ep", 1), cp=cp,
        capacity_factor=f.get("capacity_factor", 0.0), tokens=f.get("tokens", 0.0),
        attention_kernel=f.get("attention_kernel"),
        runtime=f.get("runtime", ""), elementwise=f.get("elementwise"), sample_len=f.get("sample_len", 0),
        etp=f.get("etp", 0),
    )  # fmt: skip
    workload.validate()
    return workload, chips


# ---- chunks and executors -------------------------------------------------------------------------
_CONTEXTS: dict[str, _Context] = {}
_CONTEXT_LOCK = threading.Lock()


def _context(spec: SweepSpec) -> _Context:
    """This process's context for ``spec`` (built once; threads of a Dask worker share it)."""
    key = spec.digest
    ctx = _CONTEXTS.get(key)
    if ctx is None:
        with _CONTEXT_LOCK:
            ctx = _CONTEXTS.get(key)
            if ctx is None:
                if len(_CONTEXTS) > 4:
                    _CONTEXTS.clear()
                ctx = _CONTEXTS[key] = _Context(spec)
    return ctx


@dataclass(frozen=True, slots=True)
class ChunkResult:
    """A finished chunk: how many points, how many of them errors, and their CSV lines."""

    n_points: int
    n_errors: int
    csv_text: str


def evaluate_lines(spec: SweepSpec, points: np.ndarray | list[int]) -> list[str]:
    """The CSV lines (no header, no line ends) of ``points``, in that order."""
    return _context(spec).lines(np.asarray(points, dtype=np.int64))[0]


def evaluate_points(spec: SweepSpec, points: np.ndarray | list[int]) -> list[dict[str, str]]:
    """The result rows of ``points`` as dicts keyed by the CSV header (strings, as written)."""
    text = "\n".join([",".join(spec.header), *evaluate_lines(spec, points)]) + "\n"
    return list(csv.DictReader(io.StringIO(text)))


def simulate_point(spec: SweepSpec, point: int) -> tuple[Any, System]:
    """One point run alone through ``simulate`` (``simulate_training`` for train): its full
    result, with per-op rows, and its System. The CSV row of the point is the same run
    summarised (tested equal). Raises the point's error (capacity, bad value) as itself."""
    from sim.cost.simulate import simulate
    from sim.engine.train import simulate_training

    if not 0 <= point < spec.n_points:
        raise ConfigError(f"sweep: point must be in [0, {spec.n_points}), got {point}")
    ctx = _context(spec)
    vidx = spec.value_indices(np.array([point], dtype=np.int64))
    if spec.chip_axis is not None:
        ctx = ctx.sub(int(vidx[spec.chip_axis][0]))
    fields = ctx.fields(vidx, 0)
    workload, n_chips = build_workload(spec.kind, fields, ctx._load_dit)
    system = replace(ctx.system(vidx, 0), n_chips=n_chips)
    if spec.kind == "train":
        result = simulate_training(workload, system, overlap=bool(fields.get("overlap", True)),
                                   check_memory=spec.check_memory, trace=True)  # fmt: skip
    else:
        result = simulate(workload, system, check_memory=spec.check_memory)
    return result, system


def evaluate_chunk(spec: SweepSpec, points: np.ndarray | list[int]) -> ChunkResult:
    """Evaluate a chunk of points into CSV text (what executors run, here or on a worker)."""
    lines, errors = _context(spec).lines(np.asarray(points, dtype=np.int64))
    return ChunkResult(len(lines), errors, "\n".join(lines) + "\n" if lines else "")


def plan_chunks(spec: SweepSpec, points: np.ndarray, workers: int) -> list[np.ndarray]:
    """Split ``points`` into chunks for ``workers``: whole workload shapes where possible."""
    points = np.asarray(points, dtype=np.int64)
    if not len(points):
        return []
    if spec.kind not in VECTOR_KINDS:
        size = min(64, max(1, math.ceil(len(points) / (8 * workers))))
        return np.array_split(points, math.ceil(len(points) / size))
    target = min(20_000, max(512, math.ceil(len(points) / (4 * workers))))
    # whole workload shapes, but the axes costed as arrays need no grouping
    vector = vector_axes(spec)
    wl = [i for i, a in enumerate(spec.axes) if a.target == "workload" and i not in vector]
    if wl:
        vidx = spec.value_indices(points)
        codes = _codes([vidx[a] for a in wl], [len(spec.axes[a].values) for a in wl])
        groups = [points[g] for g in _split_by(codes)]
    else:
        groups = [points]
    chunks: list[np.ndarray] = []
    current: list[np.ndarray] = []
    size = 0
    for group in groups:
        for piece in np.array_split(group, math.ceil(len(group) / target)):
            if current and size + len(piece) > target:
                chunks.append(np.concatenate(current))
                current, size = [], 0
            current.append(piece)
            size += len(piece)
    if current:
        chunks.append(np.concatenate(current))
    return chunks


_WORKER_SPEC: SweepSpec | None = None


def _init_worker(spec: SweepSpec) -> None:
    global _WORKER_SPEC
    _WORKER_SPEC = spec


def _worker_chunk(points: np.ndarray) -> ChunkResult:
    assert _WORKER_SPEC is not None
    return evaluate_chunk(_WORKER_SPEC, points)


def _run_local(spec: SweepSpec, chunks: list[np.ndarray], workers: int) -> Iterator[ChunkResult]:
    """Chunks in this process (one worker) or a process pool, as they finish."""
    if workers == 1 or len(chunks) <= 1:
        for chunk in chunks:
            yield evaluate_chunk(spec, chunk)
        return
    with process_pool(min(workers, len(chunks)), _init_worker, (spec,)) as pool:
        todo = iter(chunks)
        pending = set()
        for chunk in todo:
            pending.add(pool.submit(_worker_chunk, chunk))
            if len(pending) >= 2 * workers:
                break
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
                chunk = next(todo, None)
                if chunk is not None:
                    pending.add(pool.submit(_worker_chunk, chunk))


def _run_dask(
    spec: SweepSpec,
    chunks: list[np.ndarray],
    scheduler: str | None,
    workers: int,
    processes: bool,
) -> Iterator[ChunkResult]:
    """Chunks on a Dask cluster (``scheduler``'s, or a LocalCluster of ``workers``)."""
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise ConfigError("--executor dask needs Dask: pip install roofsim[distributed]") from None
    cluster = None
    try:
        if scheduler:
            client = Client(scheduler, timeout="10s")
        else:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=processes,
                                   dashboard_address=None)  # fmt: skip
            client = Client(cluster)
    except (OSError, TimeoutError) as exc:
        raise ConfigError(
            f"--scheduler {scheduler}: cannot reach the Dask scheduler ({exc})"
        ) from None
    try:
        remote_spec = client.scatter(spec, broadcast=True)
        futures = [client.submit(evaluate_chunk, remote_spec, c, pure=False) for c in chunks]
        for future in as_completed(futures):
            yield future.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# ---- the output file ------------------------------------------------------------------------------
#: the most points one run takes: past it the point indices alone need gigabytes and the CSV
#: tens of gigabytes; such a spec is refused before anything runs, with the estimate
MAX_POINTS = 10**8
#: bytes per CSV row and points per second per worker, for the refusal's estimate (the
#: decode-100k example in docs/sweeps.md: ~200 B rows, ~150,000 points/s on 2 cores)
_ROW_BYTES, _POINTS_PER_S = 200, 75_000


def check_size(spec: SweepSpec, max_points: int = MAX_POINTS) -> None:
    """Refuse a spec too large to run in one go (ConfigError with the estimate)."""
    n = spec.n_points
    if n <= max_points:
        return
    hours = n / (_POINTS_PER_S * default_workers()) / 3600
    raise ConfigError(
        f"sweep: {n:.3g} points is more than the {max_points:.0e} one run takes (about "
        f"{hours:,.3g} h here and {n * _ROW_BYTES / 1e12:,.3g} TB of CSV); use fewer axis values, "
        "or split the spec into several runs"
    )


def _file_digests(values: Iterable[Any]) -> dict[str, str]:
    """A hash of each file a spec names (a model TOML, an HF or diffusers config.json): an
    edited file changes the results though its name does not."""
    out = {}
    for v in values:
        if isinstance(v, str) and v.endswith((".toml", ".json")) and files.is_file(v):
            try:
                out[v] = hashlib.sha256(Path(v).read_bytes()).hexdigest()
            except OSError:
                out[v] = "unreadable"
    return out


def sidecar_path(output: str | Path) -> Path:
    """Where a results file keeps the fingerprint of the spec that wrote it."""
    output = Path(output)
    return output.with_name(output.name + ".spec.json")


def write_fingerprint(output: str | Path, spec: SweepSpec) -> None:
    path = sidecar_path(output)
    try:
        path.write_text(json.dumps({"roofsim_sweep": 1, "fingerprint": spec.fingerprint}) + "\n")
    except OSError as exc:
        raise ConfigError(f"-o {output}: cannot write {path.name} ({exc.strerror})") from None


def check_fingerprint(output: str | Path, spec: SweepSpec) -> None:
    """Refuse to resume ``output`` when the spec that wrote it differs from ``spec`` in any part
    (the chip, a --set, a fixed workload field, the axes, a constraint). A file without a
    fingerprint (written before roofsim kept one) is checked by its rows only (``read_done``)."""
    path = sidecar_path(output)
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text())["fingerprint"]
        assert isinstance(old, dict)
    except (OSError, ValueError, KeyError, TypeError, AssertionError):
        raise ConfigError(
            f"--resume: {path} is not a roofsim sweep fingerprint; remove it to resume by the "
            "rows alone"
        ) from None
    new = spec.fingerprint
    changed = [key for key in new if old.get(key) != new[key]]
    if changed:
        raise ConfigError(
            f"--resume: {output} was written by a spec with other {', '.join(changed)}; resume "
            "with the spec that wrote it, choose another -o, or drop --resume and give --force "
            "to start it again"
        )


def read_done(path: str | Path, spec: SweepSpec) -> np.ndarray:
    """Point indices already in ``path`` (sorted, each once), after cutting a partial last line.

    Raises ConfigError when the file was written by another spec (other columns, or a point
    whose axis values differ from this spec's).
    """
    path = Path(path)
    with open(path, "rb+") as f:
        data = f.read()
        cut = data.rfind(b"\n") + 1
        if cut < len(data):
            f.truncate(cut)  # a line cut short by a kill: its point is computed again
    reader = csv.reader(io.StringIO(data[:cut].decode()))
    header = next(reader, None)
    if header is None:
        return np.zeros(0, dtype=np.int64)
    if header != spec.header:
        raise ConfigError(
            f"--resume: {path} has columns {','.join(header)} but this spec writes "
            f"{','.join(spec.header)}; it came from another spec: choose another -o"
        )
    n_axes = len(spec.axes)
    at = header.index("point")
    points, labels = [], []
    for line, row in enumerate(reader, start=2):
        if len(row) != len(header) or row[at + 1] not in ("ok", "error"):
            raise ConfigError(f"--resume: {path} line {line} is not a result row; fix or remove it")
        try:
            point = int(row[at])
        except ValueError:
            raise ConfigError(
                f"--resume: {path} line {line}: point {row[at]!r} is not an index"
            ) from None
        if not 0 <= point < spec.n_points:
            raise ConfigError(
                f"--resume: {path} line {line}: point {point} is outside this spec's "
                f"{spec.n_points} points; it came from another spec: choose another -o"
            )
        points.append(point)
        labels.append(row[:n_axes])
    done = np.array(points, dtype=np.int64)
    if len(done):
        vidx = spec.value_indices(done)
        all_labels = [a.labels for a in spec.axes]
        for a, (axis_labels, v) in enumerate(zip(all_labels, vidx, strict=True)):
            expected = [axis_labels[j] for j in v.tolist()]
            for i, (want, got) in enumerate(zip(expected, (r[a] for r in labels), strict=True)):
                if want != got:
                    raise ConfigError(
                        f"--resume: point {points[i]} in {path} has {spec.axes[a].name}={got} "
                        f"but this spec gives {want}; it came from another spec: choose another -o"
                    )
    return np.unique(done)


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepSummary:
    """What a run of ``run_sweep`` did."""

    output: str
    n_points: int
    n_resumed: int  # already in the file before this run
    n_computed: int
    n_errors: int  # of those computed
    elapsed_s: float

    @property
    def points_per_s(self) -> float:
        return self.n_computed / self.elapsed_s if self.elapsed_s > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "points": self.n_points,
            "resumed": self.n_resumed,
            "computed": self.n_computed,
            "errors": self.n_errors,
            "elapsed_s": self.elapsed_s,
            "points_per_s": self.points_per_s,
        }


def run_sweep(
    spec: SweepSpec,
    output: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    executor: str = "local",
    workers: int | None = None,
    scheduler: str | None = None,
    dask_processes: bool = True,
    progress: bool = True,
) -> SweepSummary:
    """Evaluate every point of ``spec`` not yet in ``output`` and append each chunk as it finishes.

    A new file gets one header row; with ``resume`` an existing file keeps its rows and only
    the missing points run. An existing file without ``resume`` is an error (unless ``force``:
    it is rewritten), so a forgotten ``--resume`` never throws finished work away.
    """
    start = time.perf_counter()
    if executor not in ("local", "dask"):
        raise ConfigError(f"--executor must be local or dask, got {executor!r}")
    check_size(spec)
    workers = workers or default_workers()
    output = Path(output)
    _context(spec)  # builds (and checks) the base chip and each axis once, before any worker
    exists = output.is_file() and output.stat().st_size > 0
    if exists and not resume and not force:
        raise ConfigError(
            f"-o {output} exists; add --resume to finish it or --force to start it again"
        )
    if exists and resume:
        check_fingerprint(output, spec)
    done = read_done(output, spec) if exists and resume else np.zeros(0, dtype=np.int64)
    if exists and resume and not sidecar_path(output).is_file():
        write_fingerprint(output, spec)  # a file from before fingerprints: protected from now on
    missing = np.setdiff1d(np.arange(spec.n_points, dtype=np.int64), done, assume_unique=True)
    chunks = plan_chunks(spec, missing, workers)
    if executor == "dask":
        results = _run_dask(spec, chunks, scheduler, workers, dask_processes)
    else:
        results = _run_local(spec, chunks, workers)
    bar = Progress(len(missing), progress)
    computed = errors = 0
    fresh = not (exists and resume) or output.stat().st_size == 0
    try:
        with open(output, "w" if fresh else "a", newline="") as f:
            if fresh:
                write_fingerprint(output, spec)
                f.write(",".join(spec.header) + "\n")
                f.flush()
            for chunk in results:
                f.write(chunk.csv_text)
                f.flush()
                computed += chunk.n_points
                errors += chunk.n_errors
                bar.update(chunk.n_points)
    except OSError as exc:
        raise ConfigError(f"-o {output}: cannot write ({exc.strerror})") from None
    finally:
        bar.close()
    return SweepSummary(
        output=str(output),
        n_points=spec.n_points,
        n_resumed=len(done),
        n_computed=computed,
        n_errors=errors,
        elapsed_s=time.perf_counter() - start,
    )
