"""The result of a simulation: totals, MFU/MBU, binding resource, memory fit, per-op rows."""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass, field

from hardware.units import format_si
from sim.cost.html import (
    Item,
    memory_item,
    on_chips,
    percent,
    rate_text,
    shares_note,
    summary_fragment,
)
from sim.cost.roofline import Bound, OpCost


class CapacityError(ValueError):
    """A workload that does not fit in the memory of the chips it was given."""


def overrides_line(system: dict) -> list[str]:
    """The human output's line naming the run's ``--set`` overrides (none: no line)."""
    items = system.get("overrides") or []
    return [f"  set         {', '.join(items)}"] if items else []


def capacity_message(
    weights_bytes: float,
    kv_cache_bytes: float,
    activation_bytes: float,
    capacity_bytes: float,
    chip_name: str,
) -> str:
    """The one-line refusal of a workload that does not fit one chip (simulate and sweeps)."""
    required = weights_bytes + kv_cache_bytes + activation_bytes
    return (
        f"does not fit: needs {_bytes(required)} per chip "
        f"(weights {_bytes(weights_bytes)}, KV cache {_bytes(kv_cache_bytes)}, activations "
        f"{_bytes(activation_bytes)}) but {chip_name} has {_bytes(capacity_bytes)}; use more "
        "chips (--chips/--tp), a lower precision (--dtype fp8/int4, --kv-dtype fp8), or a "
        "smaller batch/context"
    )


@functools.lru_cache(maxsize=1 << 16)
def _bytes(value: float) -> str:
    """``format_si(value, "B")``, memoised: a sweep's refusals repeat the weights and capacity."""
    return format_si(value, "B")


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryReport:
    """Per-chip memory: what the workload needs against what main memory holds."""

    weights_bytes: float
    kv_cache_bytes: float
    activation_bytes: float
    capacity_bytes: float
    level: str = ""  # the main memory's name: where the weights and the KV cache live

    @property
    def required_bytes(self) -> float:
        return self.weights_bytes + self.kv_cache_bytes + self.activation_bytes

    @property
    def fits(self) -> bool:
        return self.required_bytes <= self.capacity_bytes

    def to_dict(self) -> dict:
        return {
            "required_bytes": self.required_bytes,
            "capacity_bytes": self.capacity_bytes,
            "fits": self.fits,
            "weights_bytes": self.weights_bytes,
            "kv_cache_bytes": self.kv_cache_bytes,
            "activation_bytes": self.activation_bytes,
            "level": self.level,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """What one evaluation derives. Totals are over all chips; ``hbm_bytes`` is per chip.

    MFU = model FLOPs / (time x chips x datasheet dense peak of the dtype) — the PaLM definition
    (Chowdhery et al. 2022, App. B), with model FLOPs from the op shapes, not from 6·N.
    MBU = main-memory bytes moved per chip / (time x datasheet bandwidth), as in Databricks'
    "LLM inference performance engineering" (2023).
    """

    workload: dict
    system: dict
    time_s: float
    flops: float
    model_flops: float
    peak_flops_per_s: float  # per chip, for the workload's dtype
    main_bandwidth_bytes_per_s: float  # per chip, datasheet
    n_chips: int
    hbm_bytes: float
    memory: MemoryReport
    tokens: float
    costs: tuple[OpCost, ...] = field(default_factory=tuple)
    idle_watts: float | None = None  # per chip; None: the chip has no power model
    power_limit_watts: float | None = None  # per chip

    @property
    def energy_j(self) -> float | None:
        """Joules drawn by all chips: idle power for the whole time plus each op's dynamic
        energy (``hardware.power``); None where the chip has no power model."""
        if self.idle_watts is None:
            return None
        dynamic = sum(c.energy_j * c.op.count for c in self.costs)
        return self.n_chips * (self.idle_watts * self.time_s + dynamic)

    @property
    def clock(self) -> float:
        """The time-weighted clock over the burst clock (< 1: the power limit held it down)."""
        busy = sum(c.total_time_s for c in self.costs)
        return sum(c.clock * c.total_time_s for c in self.costs) / busy if busy else 1.0

    def energy(self) -> dict | None:
        """The ``energy`` entry of the JSON: totals over all chips, and power per chip."""
        total = self.energy_j
        if total is None:
            return None
        unit = self.workload.get("sample_unit", "tokens")
        out = {
            "total_j": total,
            "avg_power_w": total / self.time_s,
            "chip_avg_power_w": total / self.time_s / self.n_chips,
            "chip_power_limit_w": self.power_limit_watts,
            "clock_fraction": self.clock,
        }
        if self.tokens:
            out[f"j_per_{unit.removesuffix('s')}"] = total / self.tokens
        return out

    @property
    def mfu(self) -> float:
        return self.model_flops / (self.time_s * self.n_chips * self.peak_flops_per_s)

    @property
    def mbu(self) -> float:
        return self.hbm_bytes / (self.time_s * self.main_bandwidth_bytes_per_s)

    @property
    def time_by_bound(self) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for c in self.costs:
            out[c.bound] += c.total_time_s
        return dict(out)

    @property
    def time_by_family(self) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for c in self.costs:
            out[c.op.family] += c.total_time_s
        return dict(out)

    @property
    def bound(self) -> str:
        """The resource that binds the largest share of the time."""
        shares = self.time_by_bound
        order = (Bound.COMPUTE, Bound.MEMORY, Bound.COMMUNICATION, Bound.OVERHEAD)
        return max(order, key=lambda b: shares.get(b, 0.0))

    @property
    def throughput(self) -> dict[str, float]:
        unit = self.workload.get("sample_unit", "tokens")
        out = {f"{unit}_per_s": self.tokens / self.time_s}
        energy = self.energy_j
        if energy:
            out[f"{unit}_per_j"] = self.tokens / energy
        return out

    @property
    def time_per_step_s(self) -> float | None:
        """Denoising time per step (generation minus the one-off text encoder and VAE)."""
        steps = self.workload.get("steps") if self.workload.get("kind") == "dit" else None
        if not steps:
            return None
        by = self.time_by_family
        once = by.get("text-encoder", 0.0) + by.get("vae", 0.0)
        return (self.time_s - once) / steps

    def op_rows(self) -> list[dict]:
        rows = []
        for c in self.costs:
            op = c.op
            total_bytes = op.total_bytes
            rows.append(
                {
                    "name": op.name,
                    "kind": str(op.kind),
                    "family": op.family,
                    "count": op.count,
                    "flops": op.flops * op.count,
                    "bytes": total_bytes * op.count,
                    "hbm_bytes": c.main_bytes * op.count,
                    "intensity": op.flops / c.main_bytes if c.main_bytes else None,
                    "time_s": c.total_time_s,
                    "share": c.total_time_s / self.time_s,
                    "bound": c.bound,
                    "binding_level": c.binding_level,
                    "compute_s": c.compute_s * op.count,
                    "memory_s": {k: v * op.count for k, v in c.memory_s.items()},
                    "overhead_s": c.overhead_s * op.count,
                    "comm_s": c.comm_s * op.count,
                    "tile": list(c.tile) if c.tile else None,
                    "tile_efficiency": c.tile_efficiency,
                    "energy_j": c.energy_j * op.count + (self.idle_watts or 0.0) * c.total_time_s,
                    "clock": c.clock,
                }
            )
        return rows

    def to_dict(self) -> dict:
        return {
            "workload": self.workload,
            "system": self.system,
            "time_s": self.time_s,
            "flops": self.flops,
            "model_flops": self.model_flops,
            "mfu": self.mfu,
            "mbu": self.mbu,
            "bound": self.bound,
            "time_by_bound_s": self.time_by_bound,
            "time_by_family_s": self.time_by_family,
            "hbm_bytes": self.hbm_bytes,
            "memory": self.memory.to_dict(),
            "throughput": self.throughput,
            **({"energy": self.energy()} if self.energy_j is not None else {}),
            **({"time_per_step_s": self.time_per_step_s} if self.time_per_step_s else {}),
            "ops": self.op_rows(),
        }

    def title(self) -> str:
        """One line naming the run: kind, model, system and the workload's fields."""
        w = self.workload
        fields = "  ".join(
            f"{k}={v}" for k, v in w.items() if k not in ("kind", "model") and v is not None
        )
        return f"{w.get('kind', 'run')} {w.get('model', '')} on {self.system['name']}  {fields}"

    def summary_items(self) -> list[Item]:
        """The summary as (label, value with its unit, note): what ``_repr_html_`` and the HTML
        report (``sim/plots/report.py``) show first."""
        unit = self.workload.get("sample_unit", "tokens")
        rate = self.tokens / self.time_s
        step = self.time_per_step_s
        items: list[Item] = [
            ("time", format_si(self.time_s, "s"),
             f"per step {format_si(step, 's')}" if step else on_chips(self.n_chips)),
            ("throughput", f"{rate_text(rate)} {unit}/s",
             f"{rate_text(rate / self.n_chips)} {unit}/s per chip"),
            ("MFU", percent(self.mfu), "model FLOPs / (time x chips x dtype peak)"),
            ("MBU", percent(self.mbu), "main-memory bytes / (time x bandwidth), per chip"),
            ("bound", str(self.bound), shares_note(self.time_by_bound, self.time_s)),
            memory_item(self.memory.required_bytes, self.memory.capacity_bytes,
                         f"weights {_bytes(self.memory.weights_bytes)}, KV "
                         f"{_bytes(self.memory.kv_cache_bytes)}, activations "
                         f"{_bytes(self.memory.activation_bytes)}"),
        ]  # fmt: skip
        energy = self.energy()
        if energy:
            per_j = self.throughput.get(f"{unit}_per_j")
            items.append(
                ("energy", format_si(energy["total_j"], "J"),
                 f"{format_si(energy['chip_avg_power_w'], 'W')} per chip"
                 + (f", {rate_text(per_j)} {unit}/J" if per_j else ""))
            )  # fmt: skip
        return items

    def _repr_html_(self) -> str:
        """The summary as HTML: a notebook shows ``simulate(...)`` this way."""
        return summary_fragment(self.title(), self.summary_items())

    def _energy_lines(self) -> list[str]:
        unit = self.workload.get("sample_unit", "tokens")
        return _energy_line(self.energy(), unit, self.throughput.get(f"{unit}_per_j"))

    def summary(self, top: int = 10) -> str:
        """A short human summary plus the top ops by time."""
        w, m = self.workload, self.memory
        shares = self.time_by_bound
        by = ", ".join(
            f"{k} {v / self.time_s:.0%}" for k, v in sorted(shares.items(), key=lambda kv: -kv[1])
        )
        tp = self.throughput
        lines = [
            f"{w.get('kind', 'run')} {w.get('model', '')} on {self.system['name']}  "
            + "  ".join(
                f"{k}={v}" for k, v in w.items() if k not in ("kind", "model") and v is not None
            ),
            *overrides_line(self.system),
            f"  time        {format_si(self.time_s, 's')}   "
            + "  ".join(
                f"{k.replace('_per_s', '/s')} {rate_text(v)}"
                for k, v in tp.items()
                if k.endswith("_s")
            )
            + (
                f"   per step {format_si(self.time_per_step_s, 's')}"
                if self.time_per_step_s
                else ""
            ),
            f"  MFU {self.mfu:.1%}   MBU {self.mbu:.1%}   bound: {self.bound} ({by})",
            *self._energy_lines(),
            f"  memory/chip {format_si(m.required_bytes, 'B')} of "
            f"{format_si(m.capacity_bytes, 'B')}{' ' + m.level if m.level else ''}  (weights {format_si(m.weights_bytes, 'B')}, "
            f"KV {format_si(m.kv_cache_bytes, 'B')}, act {format_si(m.activation_bytes, 'B')})",
            "",
            f"  {'op':<24}{'count':>6}{'FLOPs':>12}{'bytes':>12}{'FLOP/B':>9}{'time':>11}"
            f"{'share':>7}  bound",
        ]
        for row in sorted(self.op_rows(), key=lambda r: -r["time_s"])[:top]:
            inten = f"{row['intensity']:.1f}" if row["intensity"] is not None else "-"
            bound = row["bound"] + (f" ({row['binding_level']})" if row["binding_level"] else "")
            lines.append(
                f"  {row['name']:<24}{row['count']:>6}{format_si(row['flops'], 'F'):>12}"
                f"{format_si(row['hbm_bytes'], 'B'):>12}{inten:>9}"
                f" {format_si(row['time_s'], 's'):>10}{row['share']:>7.1%}  {bound}"
            )
        return "\n".join(lines)


def _energy_line(energy: dict | None, unit: str, per_j: float | None) -> list[str]:
    """The human output's energy line (none without a power model)."""
    if not energy:
        return []
    limit = energy.get("chip_power_limit_w")
    clock = energy.get("clock_fraction", 1.0)
    held = (
        f", clock {clock:.0%} (held by the {limit:.0f} W limit)" if clock < 0.995 and limit else ""
    )
    return [
        f"  energy      {format_si(energy['total_j'], 'J')}   "
        f"{unit}/J {rate_text(per_j) if per_j else '-'}   "
        f"power {format_si(energy['chip_avg_power_w'], 'W')}/chip{held}"
    ]
