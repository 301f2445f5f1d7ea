"""``roofsim design SPEC.toml -o DIR``: search a chip design space under area, power and cost
budgets for the design that serves a workload mix best.

A spec names a **base** chip (every field a design does not vary is the base's), the **variables**
and their ranges, the **budgets**, the **objective** and the **workloads** (each with a weight
and, optionally, a latency SLO). Each candidate chip is built from the base with the variables'
values as overrides, its die area and cost come from ``hardware.area`` / ``hardware.cost``, its
power model from ``hardware.power`` (a chip runs under its TDP, clocks falling where an op would
draw more), and each workload is simulated on it.

Variables (any subset; ``[low, high]``, or a list of choices for ``memory_technology``):

- ``matrix_tflops``: the dense 16-bit matrix peak; every other matrix dtype, the vector rate and
  the on-chip levels' bandwidths scale with it (the base's ratios kept: more cores, not
  faster ones);
- ``clock_ghz``: the clock the peaks run at (more MACs at a lower clock cost area);
- ``<level>_mib`` for an on-chip memory level (``sram_mib``, ``l2_mib``): its capacity;
- ``memory_sites`` (integer): HBM stacks or DRAM channels; capacity and bandwidth are
  ``memory_sites`` x the technology's per-site figures (``SITE_CAPACITY``,
  ``hardware.area.SITE_BANDWIDTH``);
- ``memory_technology``: a list of choices among those;
- ``tdp_w``: the power limit the chip is built to;
- ``link_gbps``: the chip-to-chip link bandwidth inside a node, GB/s per direction (SerDes
  area follows it; at or below a PCIe x16 host link, the chips talk over PCIe).

``design.node`` names the process node the designs are built on (a ``hardware/nodes`` preset:
its densities, wafer price and defect density; its feature size sets the power model's energy
per operation); by default the base chip's.

Budgets: ``die_area_mm2`` (per die; the reticle always applies), ``cost_usd`` (per chip),
``tdp_w`` (the TDP; when no ``tdp_w`` variable is given the chip is built to it),
``memory_gb`` (the least main-memory capacity). Workloads (``kind`` decode, prefill, dit or
train) run on ``chips`` chips (tensor / sequence parallel across them; a training step takes
``tp``, ``pp``, ``seq``, ``micro_batch``, ``global_batch``, ``recompute``, ``zero``, data parallel
over the rest) with ``weight`` in the objective, and ``slo_ms``: the most a decode step (TPOT),
a prefill (TTFT), a DiT generation or a training step may take.

The objective is a weighted geometric mean over the workloads of each one's throughput per chip
over the **reference** chip's on the same workload (unitless: 1.2 = 20 % better than the
reference), per US dollar of chip cost (``tokens_per_usd``), per joule (``tokens_per_j``, the
derived energy), per mm2 of die (``tokens_per_mm2``) or as it is (``tokens_per_s``). The
search is scipy's differential evolution (integer variables as integers, a fixed seed: the same
spec gives the same design); an infeasible design scores by how far it misses its budgets.
"""

from __future__ import annotations

import copy
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hardware import ConfigError, files
from hardware.area import SITE_BANDWIDTH, estimate_area
from hardware.cost import estimate_cost
from hardware.loader import apply_overrides, chip_source_text, load_chip_dict, system_from_dict
from hardware.units import UnitError, parse_quantity

OBJECTIVES = ("tokens_per_usd", "tokens_per_j", "tokens_per_mm2", "tokens_per_s")
KINDS = ("decode", "prefill", "dit", "train")
#: capacity of one stack / channel by technology, bytes: 8-high HBM2e (16 GB), 12-high HBM3
#: (24 GB, SK hynix), 12-high HBM3E (36 GB, Micron), a x32 GDDR6 channel of two 16 Gb devices
#: in clamshell (4 GB), LPDDR5 x32 (8 GB), DDR5 64-bit RDIMM channel (64 GB): vendor parts,
#: whose "GB" are binary (DRAM dies come in 2^n-bit densities: a 16 GB stack holds 16 GiB), as
#: the presets' device-reported capacities are (hardware/presets/SOURCES.md)
SITE_CAPACITY = {"hbm2": 8 * 2**30, "hbm2e": 16 * 2**30, "hbm3": 24 * 2**30,
                 "hbm3e": 36 * 2**30, "gddr6": 4 * 2**30, "lpddr5": 8 * 2**30,
                 "ddr5": 64 * 2**30}  # fmt: skip
INFEASIBLE = 1e3  # an infeasible design's score starts here, plus how far it misses


@dataclass(frozen=True, slots=True)
class Variable:
    name: str
    low: float
    high: float
    integer: bool = False
    choices: tuple[str, ...] = ()

    def value(self, x: float) -> Any:
        if self.choices:
            return self.choices[min(int(round(x)), len(self.choices) - 1)]
        return int(round(x)) if self.integer else float(x)


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadSpec:
    kind: str
    model: str
    chips: int = 1
    weight: float = 1.0
    slo_s: float | None = None
    fields: dict = field(default_factory=dict)  # batch, context, prompt, dtype ... as given

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.model}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Spec:
    name: str
    base: str
    node: str  # a process-node preset the designs are built on ("": the base chip's)
    objective: str
    reference: str
    seed: int
    generations: int
    population: int
    variables: tuple[Variable, ...]
    budgets: dict[str, float]
    workloads: tuple[WorkloadSpec, ...]


def _err(where: str, msg: str) -> ConfigError:
    return ConfigError(f"design spec: {where}: {msg}")


def _number(value: Any, kind: str, where: str) -> float:
    try:
        return float(parse_quantity(value, kind))
    except (UnitError, TypeError, ValueError) as exc:
        raise _err(where, str(exc)) from None


DESIGNS = Path(__file__).resolve().parent / "data" / "designs"  # package data


def list_designs() -> list[str]:
    """The design specs shipped with roofsim (``roofsim design NAME``)."""
    return sorted(p.stem for p in DESIGNS.glob("*.toml"))


def load_spec(path: str | Path) -> Spec:
    """Read and check a design spec, a file or a shipped spec's name (every problem is one
    line naming the field)."""
    p = Path(path)
    if not p.is_file() and not str(path).endswith(".toml") and (DESIGNS / f"{path}.toml").is_file():
        p = DESIGNS / f"{path}.toml"
    if not p.is_file():
        raise ConfigError(
            f"design: no spec file {str(path)!r} (shipped specs: {', '.join(list_designs())})"
        )
    try:
        raw = tomllib.loads(files.read_text(p, "design spec"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"design spec {str(path)!r}: malformed TOML: {exc}") from None
    head = raw.get("design", {})
    base = head.get("base")
    if not base:
        raise _err("design.base", "name the chip preset or TOML a design starts from")
    base_raw = load_chip_dict(str(base) if not str(base).endswith(".toml")
                              else str(p.parent / base))  # fmt: skip
    node = str(head.get("node", ""))
    if node:
        from hardware.area import load_node

        try:
            load_node(node)
        except ConfigError as exc:
            raise _err("design.node", str(exc).removeprefix("silicon.node: ")) from None
    objective = head.get("objective", "tokens_per_usd")
    if objective not in OBJECTIVES:
        raise _err("design.objective", f"one of {', '.join(OBJECTIVES)}, got {objective!r}")
    levels = [lvl["name"] for lvl in base_raw.get("memory", [])[:-1]]
    variables = []
    for name, rng in raw.get("variables", {}).items():
        where = f"variables.{name}"
        if name == "memory_technology":
            if not (isinstance(rng, list) and rng and all(t in SITE_CAPACITY for t in rng)):
                raise _err(where, f"a list of technologies among {', '.join(SITE_CAPACITY)}")
            variables.append(Variable(name, 0, len(rng) - 1 + 0.499, choices=tuple(rng)))
            continue
        known = ("matrix_tflops", "clock_ghz", "memory_sites", "tdp_w", "link_gbps",
                 *(f"{lvl}_mib" for lvl in levels))  # fmt: skip
        if name not in known:
            raise _err(where, f"unknown variable; known: {', '.join(known)}, memory_technology")
        if not (isinstance(rng, list) and len(rng) == 2):
            raise _err(where, f"give [low, high], got {rng!r}")
        low, high = (float(v) if isinstance(v, int | float) else math.nan for v in rng)
        if not (0 < low < high):
            raise _err(where, f"need 0 < low < high, got {rng!r}")
        variables.append(Variable(name, low, high, integer=name == "memory_sites"))
    if not variables:
        raise _err("variables", "give at least one variable to search")
    budgets = {}
    units = {"die_area_mm2": "number", "cost_usd": "number", "tdp_w": "watts",
             "memory_gb": "number"}  # fmt: skip
    for key, value in raw.get("budgets", {}).items():
        if key not in units:
            raise _err(f"budgets.{key}", f"unknown budget; known: {', '.join(units)}")
        budgets[key] = _number(value, units[key], f"budgets.{key}")
        if budgets[key] <= 0:
            raise _err(f"budgets.{key}", f"must be > 0, got {value!r}")
    workloads = []
    for i, w in enumerate(raw.get("workload", [])):
        where = f"workload[{i}]"
        kind = w.get("kind")
        if kind not in KINDS:
            raise _err(f"{where}.kind", f"one of {', '.join(KINDS)}, got {kind!r}")
        if "model" not in w:
            raise _err(f"{where}.model", "name a model preset")
        chips = w.get("chips", 1)
        weight = w.get("weight", 1.0)
        if not (isinstance(chips, int) and chips >= 1):
            raise _err(f"{where}.chips", f"an integer >= 1, got {chips!r}")
        if not (isinstance(weight, int | float) and weight > 0):
            raise _err(f"{where}.weight", f"must be > 0, got {weight!r}")
        slo = w.get("slo_ms")
        if slo is not None and not (isinstance(slo, int | float) and slo > 0):
            raise _err(f"{where}.slo_ms", f"must be > 0 (milliseconds), got {slo!r}")
        extra = {k: v for k, v in w.items()
                 if k not in ("kind", "model", "chips", "weight", "slo_ms")}  # fmt: skip
        workloads.append(WorkloadSpec(kind=kind, model=str(w["model"]), chips=chips,
                                      weight=float(weight), fields=extra,
                                      slo_s=None if slo is None else slo / 1e3))  # fmt: skip
    if not workloads:
        raise _err("workload", "give at least one [[workload]]")
    for key, default in (("seed", 0), ("generations", 30), ("population", 12)):
        value = head.get(key, default)
        if not (isinstance(value, int) and value >= (0 if key == "seed" else 1)):
            raise _err(f"design.{key}", f"an integer, got {value!r}")
    return Spec(
        name=str(head.get("name", p.stem)),
        base=str(base) if not str(base).endswith(".toml") else str(p.parent / base),
        node=node,
        objective=objective,
        reference=str(head.get("reference", "h100-sxm")),
        seed=head.get("seed", 0),
        generations=head.get("generations", 30),
        population=head.get("population", 12),
        variables=tuple(variables),
        budgets=budgets,
        workloads=tuple(workloads),
    )


def design_overrides(spec: Spec, base_raw: dict, values: dict[str, Any]) -> list[str]:
    """The ``--set`` items that turn the base chip into the design with ``values``."""
    sets: list[str] = []
    if spec.node:  # the node sets the area, cost and (through process_nm) power coefficients
        from hardware.area import load_node

        node = load_node(spec.node)
        nm = float(base_raw.get("process_nm") or 0)
        if nm not in node.process_nm:
            nm = sorted(node.process_nm)[len(node.process_nm) // 2]
        sets += [f"silicon.node='{node.name}'", f"process_nm={nm:g}"]
    compute = base_raw["compute"]
    peaks = compute["peak"]
    base_ref = next(
        (parse_quantity(peaks[d], "flops_per_s") for d in ("bf16", "fp16") if d in peaks), None
    )
    if "matrix_tflops" in values:
        if base_ref is None:
            raise ConfigError(f"design: base chip {spec.base!r} has no bf16 or fp16 peak to scale")
        scale = values["matrix_tflops"] * 1e12 / base_ref
        for dtype, text in peaks.items():
            if dtype == "source" or dtype.endswith("_source"):
                continue
            sets.append(f"compute.peak.{dtype}={parse_quantity(text, 'flops_per_s') * scale!r}")
        for lvl in base_raw["memory"][:-1]:
            bw = parse_quantity(lvl["bandwidth"], "bytes_per_s")
            sets.append(f"{lvl['name']}.bandwidth={bw * scale!r}")
    # more matrix throughput is more cores of the base's kind; a faster clock, fewer of them
    base_clock = float(compute.get("clock_hz", 0) or 0)
    if base_clock and ("matrix_tflops" in values or "clock_ghz" in values):
        clock = values.get("clock_ghz", base_clock / 1e9) * 1e9
        peak = values.get("matrix_tflops", (base_ref or 0) / 1e12) * 1e12
        cores = max(1, round(compute["n_cores"] * peak / base_ref * base_clock / clock))
        sets.append(f"compute.n_cores={cores}")
        built = base_raw.get("silicon", {}).get("cores_on_die")
        if built:
            sets.append(
                f"silicon.cores_on_die={max(cores, round(built * cores / compute['n_cores']))}"
            )
        # a collective keeps the share of the cores it holds on the base (its channels drive
        # the links; fewer, larger cores drive them with fewer), and leaves compute at least one
        for key in ("collective_cores", "ring_collective_cores"):
            held = base_raw.get("system", {}).get(key, 0)
            if held:
                share = round(held * cores / compute["n_cores"])
                # (a one-core design runs its collectives on DMA engines: collective_cores 0,
                # and the ring count, at least 1, unused)
                floor = 1 if key == "ring_collective_cores" else 0
                sets.append(f"system.{key}={max(floor, min(max(1, share), cores - 1))}")
    if "clock_ghz" in values:
        sets.append(f"compute.clock_hz={values['clock_ghz'] * 1e9!r}")
    for lvl in base_raw["memory"][:-1]:
        key = f"{lvl['name']}_mib"
        if key in values:
            sets.append(f"{lvl['name']}.capacity={values[key] * 2**20!r}")
    main = base_raw["memory"][-1]["name"]
    if "memory_sites" in values or "memory_technology" in values:
        tech = values.get("memory_technology") or base_raw["memory"][-1].get("technology", "hbm3")
        if tech not in SITE_CAPACITY:
            raise ConfigError(f"design: the base's main memory technology {tech!r} has no "
                              f"per-site figures; add variables.memory_technology")  # fmt: skip
        sites = values.get("memory_sites")
        if sites is None:
            bw = parse_quantity(base_raw["memory"][-1]["bandwidth"], "bytes_per_s")
            sites = math.ceil(bw / SITE_BANDWIDTH[tech] - 1e-9)
        sets += [
            f"{main}.technology='{tech}'",
            f"{main}.capacity={sites * SITE_CAPACITY[tech]!r}",
            f"{main}.bandwidth={sites * SITE_BANDWIDTH[tech]!r}",
            f"silicon.memory_sites={sites}",
        ]
    if "link_gbps" in values:
        sets.append(f"system.intra_node_bandwidth={values['link_gbps'] * 1e9!r}")
        if "link_bandwidth" in base_raw.get("silicon", {}):
            sets.append(f"silicon.link_bandwidth={values['link_gbps'] * 1e9!r}")
    tdp = values.get("tdp_w", spec.budgets.get("tdp_w"))
    if tdp is not None:
        sets.append(f"power.tdp={tdp!r}")
    sets.append(f"name='{spec.name}'")
    return sets


def _workload(w: WorkloadSpec) -> Any:
    """The workload of a spec entry, built as a sweep builds it (its fields are the sweep
    workload's; decode and prefill are tensor parallel over all their chips)."""
    from sim.studies.sweep import build_workload
    from workloads.dit import load_dit

    fields = {"model": w.model, "chips": w.chips, **w.fields}
    if w.kind in ("decode", "prefill"):
        fields.setdefault("tp", w.chips)
    return build_workload(w.kind, fields, load_dit)[0]


@dataclass(slots=True)
class Evaluation:
    """One candidate: its variables, silicon, per-workload results and score."""

    values: dict[str, Any]
    die_area_mm2: float = math.nan
    per_die_mm2: float = math.nan
    cost_usd: float = math.nan
    tdp_w: float = math.nan
    memory_gb: float = math.nan
    throughput: dict[str, float] = field(default_factory=dict)  # per chip, units/s
    per_j: dict[str, float] = field(default_factory=dict)
    latency_s: dict[str, float] = field(default_factory=dict)
    violations: dict[str, float] = field(default_factory=dict)  # relative miss per budget/SLO
    score: float = math.nan  # the objective (vs the reference); nan when infeasible
    relative_throughput: float = math.nan  # geometric mean of throughput per chip vs reference

    @property
    def feasible(self) -> bool:
        return not self.violations


def evaluate_system(system, workloads: tuple[WorkloadSpec, ...], sets: list[str] | None = None):
    """Per-workload throughput per chip, units per joule and latency of ``system``'s chip
    (``sets``: the overrides that built it); a workload that does not fit raises CapacityError."""
    from sim.cost.simulate import simulate

    out = {}
    for w in workloads:
        sys_w = system if system.n_chips == w.chips else _resize(system, w.chips)
        if w.kind == "train":  # the event engine: a step's tokens per second, its energy
            from sim.engine.train import simulate_training

            t = simulate_training(_workload(w), sys_w)
            energy = t.step_energy_j
            out[w.label] = (t.tokens_per_s / w.chips,
                            t.tokens / energy if energy else math.nan, t.step_time_s)  # fmt: skip
            continue
        r = simulate(_workload(w), sys_w)
        units = next(iter(r.throughput.values()))
        energy = r.energy_j
        out[w.label] = (units / w.chips, units * r.time_s / energy if energy else math.nan,
                        r.time_s)  # fmt: skip
    return out


def _resize(system, n: int):
    from dataclasses import replace

    return replace(system, n_chips=n)


class Designer:
    """Evaluates candidate designs of one spec, remembering every one it has seen."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.base_raw = load_chip_dict(spec.base)
        self.seen: dict[tuple, Evaluation] = {}
        from hardware import load_system

        ref = load_system(spec.reference, 1)
        try:
            self.reference = evaluate_system(ref, spec.workloads)
            ref_area = estimate_area(ref.chip, ref)
            self.reference_cost = estimate_cost(ref_area, ref.chip).total_usd
            self.reference_area = ref_area.die_area_mm2
        except Exception as exc:  # noqa: BLE001 - the reference must run every workload
            raise ConfigError(
                f"design: the reference chip {spec.reference!r} cannot run the workloads "
                f"({str(exc).splitlines()[0]}); choose another design.reference"
            ) from None

    def values(self, x) -> dict[str, Any]:
        return {v.name: v.value(xi) for v, xi in zip(self.spec.variables, x, strict=True)}

    def sets(self, values: dict[str, Any]) -> list[str]:
        return design_overrides(self.spec, self.base_raw, values)

    def key(self, x, values: dict[str, Any] | None = None) -> tuple:
        """The design ``x`` stands for (its ``values`` where already read), as a key of
        ``seen``."""
        return tuple(sorted((k, round(v, 9) if isinstance(v, float) else v)
                            for k, v in (values or self.values(x)).items()))  # fmt: skip

    def evaluate(self, x) -> Evaluation:
        from sim.cost.result import CapacityError
        from workloads import WorkloadError

        values = self.values(x)
        key = self.key(x, values)
        if key in self.seen:
            return self.seen[key]
        ev = Evaluation(values=values)
        self.seen[key] = ev
        raw = apply_overrides(copy.deepcopy(self.base_raw), self.sets(values))
        system = system_from_dict(raw, 1)
        chip = system.chip
        area = estimate_area(chip, system)
        cost = estimate_cost(area, chip)
        ev.die_area_mm2, ev.per_die_mm2 = area.die_area_mm2, area.per_die_mm2
        ev.cost_usd = cost.total_usd
        ev.tdp_w = chip.tdp_watts or math.nan
        ev.memory_gb = chip.main_memory.capacity_bytes / 1e9
        b = self.spec.budgets
        limits = {"die_area_mm2": min(b.get("die_area_mm2", math.inf), 858.0)}
        if "cost_usd" in b:
            limits["cost_usd"] = b["cost_usd"]
        for key_, limit in limits.items():
            got = ev.per_die_mm2 if key_ == "die_area_mm2" else getattr(ev, key_)
            if got > limit:
                ev.violations[key_] = got / limit - 1
        if "memory_gb" in b and ev.memory_gb < b["memory_gb"]:
            ev.violations["memory_gb"] = b["memory_gb"] / ev.memory_gb - 1
        try:
            results = evaluate_system(system, self.spec.workloads)
        except (CapacityError, WorkloadError, ConfigError):
            ev.violations["runs"] = 1.0  # it cannot hold or run a workload
            return ev
        for w in self.spec.workloads:
            thr, per_j, t = results[w.label]
            ev.throughput[w.label], ev.per_j[w.label], ev.latency_s[w.label] = thr, per_j, t
            if w.slo_s is not None and t > w.slo_s:
                ev.violations[f"slo:{w.label}"] = t / w.slo_s - 1
        if ev.feasible:
            ev.relative_throughput = self._mean(
                ev.throughput, {k: v[0] for k, v in self.reference.items()}
            )
            ev.score = self._score(ev)
        return ev

    def _mean(self, mine: dict[str, float], ref: dict[str, float]) -> float:
        total = sum(w.weight for w in self.spec.workloads)
        log = sum(w.weight * math.log(mine[w.label] / ref[w.label]) for w in self.spec.workloads)
        return math.exp(log / total)

    def _score(self, ev: Evaluation) -> float:
        obj = self.spec.objective
        if obj == "tokens_per_j":
            return self._mean(ev.per_j, {k: v[1] for k, v in self.reference.items()})
        rel = ev.relative_throughput
        if obj == "tokens_per_usd":
            return rel * self.reference_cost / ev.cost_usd
        if obj == "tokens_per_mm2":
            return rel * self.reference_area / ev.die_area_mm2
        return rel

    def loss(self, x) -> float:
        return self._loss(self.evaluate(x))

    @staticmethod
    def _loss(ev: Evaluation) -> float:
        if ev.feasible:
            return -math.log(ev.score)
        return INFEASIBLE + sum(min(v, 10.0) for v in ev.violations.values())

    def losses(self, xs, pool: Any = None, workers: int = 1) -> Any:
        """``loss`` of each column of ``xs`` (a generation: variables x designs), the designs
        not seen yet evaluated in ``pool`` (a process pool of ``workers`` whose workers hold
        this designer: ``_designer_worker``) or here; ``seen`` fills in the same order either
        way."""
        import numpy as np

        cols = [xs[:, j] for j in range(xs.shape[1])]
        keys = [self.key(x) for x in cols]
        new = {k: x for k, x in zip(keys, cols, strict=True) if k not in self.seen}
        if pool is not None and len(new) > 1:
            size = max(1, len(new) // (4 * workers))
            self.seen.update(zip(new, pool.map(_evaluate_in_worker, new.values(),
                                               chunksize=size), strict=True))  # fmt: skip
        else:
            for x in new.values():
                self.evaluate(x)
        return np.array([self._loss(self.seen[k]) for k in keys])


#: the designer of a search's worker process (``_designer_worker``)
_WORKER_DESIGNER: Designer | None = None


def _designer_worker(designer: Designer) -> None:
    global _WORKER_DESIGNER
    _WORKER_DESIGNER = designer


def _evaluate_in_worker(x) -> Evaluation:
    assert _WORKER_DESIGNER is not None
    return _WORKER_DESIGNER.evaluate(x)


@dataclass(slots=True)
class DesignResult:
    spec: Spec
    best: Evaluation
    evaluations: list[Evaluation]
    pareto: list[Evaluation]
    reference: dict
    reference_cost: float
    sets: list[str]


def search(spec: Spec, progress: bool = True, workers: int | None = None) -> DesignResult:
    """Differential evolution over the spec's variables; the best feasible design and the
    Pareto front of every feasible design seen. Each generation's new designs are evaluated in
    ``workers`` processes (None: every core; 1: this one): the same designs, in the same order,
    whatever the count."""
    from contextlib import nullcontext

    import numpy as np
    from scipy.optimize import differential_evolution

    from sim.studies.pool import pool_size, process_pool
    from sim.studies.progress import Progress

    designer = Designer(spec)
    bounds = [(v.low, v.high) for v in spec.variables]
    integrality = np.array([v.integer or bool(v.choices) for v in spec.variables])
    bar = Progress(spec.generations, progress, "generations")

    def callback(intermediate_result) -> None:
        best = intermediate_result.fun
        shown = f"{math.exp(-best):.3f}" if best < INFEASIBLE / 2 else "none feasible yet"
        bar.update(1, f"best {shown}x {spec.reference}, {len(designer.seen):,} designs")

    # no more workers than a generation has designs (scipy's population: popsize x variables)
    workers = pool_size(workers, spec.population * len(spec.variables))
    pooled = process_pool(workers, _designer_worker, (designer,)) if workers > 1 else None
    with pooled or nullcontext() as pool:
        out = differential_evolution(
            designer.losses, bounds, args=(pool, workers), integrality=integrality,
            rng=spec.seed, maxiter=spec.generations, popsize=spec.population, polish=False,
            tol=0, init="sobol", updating="deferred", vectorized=True, callback=callback,
        )  # fmt: skip
    bar.close()
    evaluations = list(designer.seen.values())
    feasible = [e for e in evaluations if e.feasible]
    if not feasible:
        worst = max(evaluations, key=lambda e: 0)
        raise ConfigError(
            f"design: no design meets the budgets and SLOs (e.g. it missed "
            f"{', '.join(sorted(worst.violations))}); widen the variables' ranges or the budgets"
        )
    best = designer.evaluate(out.x)
    if not best.feasible:
        best = max(feasible, key=lambda e: e.score)
    return DesignResult(spec=spec, best=best, evaluations=evaluations,
                        pareto=pareto_front(feasible), reference=designer.reference,
                        reference_cost=designer.reference_cost,
                        sets=designer.sets(best.values))  # fmt: skip


def pareto_front(designs: list[Evaluation]) -> list[Evaluation]:
    """The designs no other beats on throughput, cost and energy at once (throughput per chip
    and units per joule: higher is better; cost: lower), sorted by cost."""

    def key(e: Evaluation) -> tuple[float, float, float]:
        per_j = math.exp(sum(math.log(v) for v in e.per_j.values()) / len(e.per_j))
        return (e.relative_throughput, -e.cost_usd, per_j)

    keys = [key(e) for e in designs]
    front = []
    for i, ki in enumerate(keys):
        dominated = any(
            all(a >= b for a, b in zip(kj, ki, strict=True)) and kj != ki for kj in keys
        )
        if not dominated:
            front.append(designs[i])
    return sorted(front, key=lambda e: e.cost_usd)


def columns(result: DesignResult) -> list[str]:
    labels = [w.label for w in result.spec.workloads]
    return [*(v.name for v in result.spec.variables), "die_area_mm2", "per_die_mm2", "cost_usd",
            "tdp_w", "memory_gb", "relative_throughput", "score",
            *(f"{lab}:per_chip_per_s" for lab in labels), *(f"{lab}:per_j" for lab in labels),
            *(f"{lab}:latency_s" for lab in labels)]  # fmt: skip


def row(e: Evaluation, labels: list[str]) -> list[Any]:
    return [*e.values.values(), e.die_area_mm2, e.per_die_mm2, e.cost_usd, e.tdp_w, e.memory_gb,
            e.relative_throughput, e.score, *(e.throughput[lab] for lab in labels),
            *(e.per_j[lab] for lab in labels), *(e.latency_s[lab] for lab in labels)]  # fmt: skip


def best_toml(result: DesignResult) -> str:
    """A chip TOML every command accepts: the base's text with the design as a [design] table
    of overrides (the loader applies it as it applies [calibration])."""
    spec = result.spec
    text = chip_source_text(spec.base)
    lines = [
        "",
        f"# Found by `roofsim design` (spec {spec.name!r}, objective {spec.objective}, seed "
        f"{spec.seed}): {result.best.score:.3f}x the reference {spec.reference} on the",
        "# workload mix. The overrides below turn the base chip into the design; the loader",
        "# applies them over the fields above (as it applies a [calibration] table).",
        "[design]",
    ]
    for item in [*result.sets, "hypothetical=true", f"full_name='{spec.name} (roofsim design)'"]:
        key, value = item.split("=", 1)
        lines.append(f'"{key}" = {value}')
    return text.rstrip("\n") + "\n" + "\n".join(lines) + "\n"
