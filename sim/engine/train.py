"""simulate_training(training, system) -> TrainResult: cost every chunk, run the timeline.

Each op of a chunk is costed by the per-op roofline (``sim/cost/roofline.py``); tensor-, expert- and
context-parallel collectives sit inline in the chunk (exposed, as Megatron-LM runs them without
communication overlap), except ring K/V passing (beside the attention) and sequence
parallelism's gathers and reduce-scatters that Transformer Engine runs beside a GEMM
(``Op.overlaps_previous``; the GEMM then runs on what they leave it, ``_tp_beside``). ZeRO-3 parameter
gathers and gradient reduce-scatters run beside the chunk's compute: only what is longer than
the compute, plus the first layer's gather, is exposed. The event engine (``sim/engine/events.py``)
places the chunks of every stage on its timeline with the pipeline schedule, the
point-to-point transfers, the bucketed data-parallel gradient reduction and the optimizer.

MFU = model FLOPs / (step time x chips x dense peak of the GEMM dtype) — PaLM's definition
(Chowdhery et al. 2022, App. B) with the FLOPs from the op shapes. HFU adds the recomputed
forward work (Korthikanti et al. 2022, Sec. 6.3).
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from dataclasses import dataclass, field, replace

from hardware.chip import ConfigError, System
from hardware.units import format_si
from sim.cost.html import Item, memory_item, percent, rate_text, shares_note, summary_fragment
from sim.cost.result import CapacityError, overrides_line
from sim.cost.roofline import Bound, OpCost, beside_slowdown, cost_op, cost_ops
from sim.engine.events import Part, StageWork, Timeline, beside, run_pipeline
from workloads.ops import Op, OpKind, WorkloadError
from workloads.training import RECOMPUTE as RECOMPUTE_ORDER
from workloads.training import Training, TrainMemory, TrainPlan

COMM_KINDS = ("tp", "cp", "ep", "pp", "dp")


def comm_kind(op: Op) -> str:
    """Which parallelism a collective serves, from its name (``recompute.moe.ep_x.bwd``: ep)."""
    name = op.name.removeprefix("recompute.").removesuffix(".bwd").split(".")[-1]
    for prefix, kind in (("ep_", "ep"), ("cp_", "cp"), ("pp_", "pp"), ("fsdp", "dp"),
                         ("dp_", "dp"), ("expert_", "dp")):  # fmt: skip
        if name.startswith(prefix):
            return kind
    return "tp"


@dataclass(frozen=True, slots=True)
class _Costed:
    time_s: float
    costs: tuple[OpCost, ...]
    parts: tuple[Part, ...]
    by_category: dict[str, float]  # compute | recompute | tp | cp | ep | dp
    ep_exposed: float = 1.0  # the share of the EP all-to-all time on the critical path
    # the same share for the dispatches and for the combines where they are paired apart
    ep_role_exposed: dict[str, float] = field(default_factory=dict)
    beside_s: float = 0.0  # compute slowed by collectives beside it (in by_category compute)
    side: tuple[OpCost, ...] = ()  # the ZeRO-3 collectives beside the pass, costed


def _category(op: Op) -> str:
    if op.kind == OpKind.COLLECTIVE:
        return comm_kind(op)
    return "recompute" if op.recompute else "compute"


def _cost_pass(ops: tuple[Op, ...], side: tuple[Op, ...], layers: int, system: System,
               overlap: bool) -> _Costed:  # fmt: skip
    """One chunk's forward or backward; ``side`` = ZeRO-3 traffic beside its compute."""
    costs = cost_ops(ops, system, overlap=overlap)
    by: dict[str, float] = defaultdict(float)
    parts: list[Part] = []
    for c in costs:
        cat = _category(c.op)
        by[cat] += c.total_time_s
        parts.append((c.op.name, c.total_time_s, cat))
    total = sum(c.total_time_s for c in costs)
    slowed = _tp_beside(costs, system) if overlap else 0.0
    if slowed:
        by["compute"] += slowed
        parts.append(("compute beside tp collectives", slowed, "compute"))
        total += slowed
    side_costs = cost_ops(side, system)
    if side:
        comm = sum(c.total_time_s for c in side_costs)
        busy = by.get("compute", 0.0) + by.get("recompute", 0.0)
        if overlap:
            # the first layer's gather precedes any compute; the rest run beside it, which runs
            # on what the collectives leave it
            first = comm / max(1, layers)
            ratio = beside_slowdown(costs, side_costs, system, overlap=overlap)
            exposed, fsdp_slowed = beside(busy, comm - first, ratio)
            exposed += first
        else:
            exposed, fsdp_slowed = comm, 0.0
        by["dp"] += exposed
        parts.append(("fsdp exposed", exposed, "dp"))
        total += exposed
        if fsdp_slowed:
            by["compute"] += fsdp_slowed
            parts.append(("compute beside collectives", fsdp_slowed, "compute"))
            total += fsdp_slowed
            slowed += fsdp_slowed
    return _Costed(total, costs, tuple(parts), dict(by), beside_s=slowed, side=side_costs)


def _tp_beside(costs: tuple[OpCost, ...], system: System) -> float:
    """What the GEMMs lose to the tensor-parallel collectives beside them (sequence
    parallelism's gathers and reduce-scatters that ``Op.overlaps_previous`` hides behind the
    GEMM before them, ``_TrainLowering.tp_overlaps``): each GEMM runs on what its collective
    leaves it (``beside_slowdown``: the cores the collective holds, its memory traffic and
    power) while the hidden part of the collective runs."""
    slowed = 0.0
    for i, c in enumerate(costs):
        op = c.op
        if not (i and op.overlaps_previous and _category(op) == "tp"):
            continue
        (full,) = cost_ops([replace(op, overlaps_previous=0.0)], system)
        hidden = full.total_time_s - c.total_time_s
        if hidden <= 0:
            continue
        c_op = op.collective
        assert c_op is not None
        if c_op.kind == "reduce_scatter" and op.name.endswith(".beside"):
            # a pipelined forward reduce-scatter holds its cores from the GEMM for the GEMM's
            # whole run (Transformer Engine's set_sm_margin)
            ratio = beside_slowdown([costs[i - 1]], [full], system, overlap=True,
                                    take=("cores",))  # fmt: skip
            slowed += costs[i - 1].total_time_s * ratio
            continue
        ratio = beside_slowdown([costs[i - 1]], [full], system, overlap=True)
        slowed += hidden * ratio / (1.0 + ratio)
    return slowed


def _ep_costs(x: _Costed) -> list[OpCost]:
    """A pass's expert-parallel all-to-alls, costed."""
    return [c for c in x.costs if c.op.kind is OpKind.COLLECTIVE and comm_kind(c.op) == "ep"]


def _ep_roles(x: _Costed) -> dict[str, float] | None:
    """A pass's time by its part in Megatron-Core's combined 1F1B, over its layers with
    experts (the ops that repeat as often as its all-to-alls): ``dispatch`` and ``combine``
    (the all-to-alls), ``experts`` (the compute between them in the pass's order: the
    forward's dispatch -> combine, the backward's combine -> dispatch) and ``rest`` (the
    attention block and the router); compute outside those layers (the embedding, the head
    and loss, layers without experts) runs outside the pairs and hides nothing. None where the
    pass has no dispatch or combine."""
    roles = {"dispatch": 0.0, "combine": 0.0, "experts": 0.0, "rest": 0.0,
             "dispatch_alone": 0.0, "combine_alone": 0.0}  # fmt: skip
    ep = [i for i, c in enumerate(x.costs) if _category(c.op) == "ep" and not c.op.recompute]
    names = [x.costs[i].op.name for i in ep]
    if not any("dispatch" in n for n in names) or not any("combine" in n for n in names):
        return None
    if len({x.costs[i].op.count for i in ep}) > 1:
        return None  # (all-to-alls of different layer counts: pair the totals)
    first, last, layers = ep[0], ep[-1], x.costs[ep[0]].op.count
    group = _layer_group(x.costs[first].op)
    # a recomputed forward's all-to-alls (full recompute) pair with nothing, nor its compute
    full = any(_category(c.op) == "ep" and c.op.recompute for c in x.costs)
    for i, c in enumerate(x.costs):
        cat = _category(c.op)
        if cat == "ep":
            roles[_ep_role(c.op) + ("_alone" if c.op.recompute else "")] += c.total_time_s
        elif (cat in ("compute", "recompute") and c.op.count == layers
              and _layer_group(c.op) == group and not (full and c.op.recompute)):  # fmt: skip
            roles["experts" if first < i < last else "rest"] += c.total_time_s
    return roles


def _layer_group(op: Op) -> str:
    """The layer kind an op belongs to: its name's ``moe.`` / ``dense.`` prefix where a chunk
    mixes them (``Op.repeated``), empty where it does not."""
    head = op.name.removeprefix("recompute.").split(".", 1)[0]
    return head if head in ("moe", "dense") else ""


def _ep_role(op: Op) -> str:
    """An expert-parallel all-to-all's part: ``dispatch`` or ``combine``."""
    return "dispatch" if "dispatch" in op.name else "combine"


def _ep_beside(f: _Costed, b: _Costed, slow_f: float, slow_b: float) -> tuple[_Costed, _Costed]:
    """A chunk's forward and backward with their expert-parallel all-to-alls beside the other
    pass's compute, as Megatron-Core's combined 1F1B runs them (``Training.ep_overlap``;
    megatron/core/models/common/model_chunk_schedule_plan.py ``schedule_layer_1f1b``): layer
    by layer, a forward micro-batch and a backward one alternate on a compute and a
    communication stream, so each all-to-all runs beside one sub-module of the other pass:
    the forward's attention block beside the backward's combine, the forward's dispatch beside
    the backward's experts, the forward's experts beside the backward's dispatch, the
    forward's combine beside the backward's attention block. Each pair takes the longer of
    its two (``events.beside``), the compute on what the collectives leave: ``slow_f`` and
    ``slow_b`` longer, over its own time (``beside_slowdown``); an all-to-all longer than the
    sub-module it is paired with is exposed, however much compute the rest of the layer has;
    a recomputed forward's all-to-alls (full recompute, which Megatron-Core's TransformerConfig
    refused with the overlap and its later docs allow only with an explicit method and layer
    count: benchmarks/research/moe-ep-overlap-2026-12-03.md) pair with nothing. A pass
    without both all-to-alls pairs its totals. These are the paired passes; the
    warm-up forwards and cool-down backwards run alone (``events.unpaired``: the pipeline
    takes the passes as costed before this); compute that also hides ZeRO-3 gathers
    (``side``) is counted for both."""
    busy_f, busy_b = (x.by_category.get("compute", 0.0) + x.by_category.get("recompute", 0.0)
                      for x in (f, b))  # fmt: skip
    a2a_f, a2a_b = (x.by_category.get("ep", 0.0) for x in (f, b))

    def moved(x: _Costed, a2a: float, exposed: float, slowed: float,
              roles: dict[str, float] | None = None) -> _Costed:  # fmt: skip
        by = {**x.by_category, "ep": exposed, "compute": x.by_category.get("compute", 0.0) + slowed}
        parts = [p for p in x.parts if p[2] != "ep"] + [
            ("ep all-to-all exposed", exposed, "ep"),
            ("compute beside ep all-to-all", slowed, "compute")]  # fmt: skip
        return replace(x, time_s=x.time_s - a2a + exposed + slowed, parts=tuple(parts),
                       by_category=by, ep_exposed=exposed / a2a if a2a else 1.0,
                       ep_role_exposed=roles or {}, beside_s=x.beside_s + slowed)  # fmt: skip

    rf, rb = _ep_roles(f), _ep_roles(b)
    if rf is None or rb is None:
        # each pass's compute runs beside the other pass's all-to-all
        exp_f, added_b = beside(busy_b, a2a_f, slow_b)
        exp_b, added_f = beside(busy_f, a2a_b, slow_f)
        return moved(f, a2a_f, exp_f, added_f), moved(b, a2a_b, exp_b, added_b)
    exp_b1, add_f1 = beside(rf["rest"], rb["combine"], slow_f)
    exp_f2, add_b2 = beside(rb["experts"], rf["dispatch"], slow_b)
    exp_b3, add_f3 = beside(rf["experts"], rb["dispatch"], slow_f)
    exp_f4, add_b4 = beside(rb["rest"], rf["combine"], slow_b)

    def shares(r: dict[str, float], dispatch: float, combine: float) -> dict[str, float]:
        out = {}
        for role, exposed in (("dispatch", dispatch), ("combine", combine)):
            alone, total = r[role + "_alone"], r[role] + r[role + "_alone"]
            out[role] = (exposed + alone) / total if total else 1.0
        return out

    lone_f = rf["dispatch_alone"] + rf["combine_alone"]
    lone_b = rb["dispatch_alone"] + rb["combine_alone"]
    return (moved(f, a2a_f, exp_f2 + exp_f4 + lone_f, add_f1 + add_f3,
                  shares(rf, exp_f2, exp_f4)),
            moved(b, a2a_b, exp_b1 + exp_b3 + lone_b, add_b2 + add_b4,
                  shares(rb, exp_b3, exp_b1)))  # fmt: skip


def _expert_context(w: dict) -> str:
    """The expert- and context-parallel part of a layout line ("" where neither is used)."""
    return ((f" EP{w['ep']}" if w["ep"] > 1 else "") + (f" ETP{w['etp']}" if "etp" in w else "")
            + (f" CP{w['cp']}" if w["cp"] > 1 else ""))  # fmt: skip


#: grid carbon intensity for tCO2e: US utility-scale generation 2022, 0.86 lb CO2 per kWh (EIA,
#: "How much carbon dioxide is produced per kilowatthour of U.S. electricity generation?",
#: eia.gov/tools/faqs/faq.php?id=74); chip energy only (no PUE, host or network)
GRID_KG_CO2_PER_KWH = 0.390


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainResult:
    """One training step derived. Totals over all chips; ``hbm_bytes`` per chip per step."""

    workload: dict
    system: dict
    step_time_s: float
    model_flops: float
    hardware_flops: float
    flops: float
    peak_flops_per_s: float
    n_chips: int
    tokens: float
    breakdown: dict
    memory: TrainMemory
    capacity_bytes: float
    hbm_bytes: float
    critical_stage: int
    op_costs: tuple[tuple[OpCost, int], ...]  # (cost, times per step) on the critical stage
    timeline: Timeline
    run_tokens: float = 0.0
    closed_form_model_flops: float = 0.0
    notes: list[str] = field(default_factory=list)
    # exposed communication outside the chunks' ops: ZeRO-3 gathers beside compute, the ZeRO
    # parameter gather before the step, the data-parallel gradient tail after it
    side_comm_s: float = 0.0
    side_compute_s: float = 0.0  # compute slowed by collectives beside it (critical stage)
    # all chips, one step: idle power for the step plus every op's dynamic energy (None: the
    # chip has no power model)
    step_energy_j: float | None = None

    @property
    def mfu(self) -> float:
        return self.model_flops / (self.step_time_s * self.n_chips * self.peak_flops_per_s)

    @property
    def hfu(self) -> float:
        return self.hardware_flops / (self.step_time_s * self.n_chips * self.peak_flops_per_s)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.step_time_s

    @property
    def model_flops_per_chip_s(self) -> float:
        return self.model_flops / self.step_time_s / self.n_chips

    @property
    def fits(self) -> bool:
        return self.memory.total_bytes <= self.capacity_bytes

    @property
    def bound(self) -> str:
        """What the critical stage spends most of its step on: compute, communication, ..."""
        share = self.time_by_bound
        order = (Bound.COMPUTE, Bound.MEMORY, Bound.COMMUNICATION, Bound.OVERHEAD)
        return max(order, key=lambda b: share.get(b, 0.0))

    def run_totals(self) -> dict | None:
        if not self.run_tokens:
            return None
        seconds = self.run_tokens / self.tokens_per_s
        return {
            "tokens": self.run_tokens,
            "steps": self.run_tokens / self.tokens,
            "seconds": seconds,
            "days": seconds / 86400,
            "chip_hours": seconds * self.n_chips / 3600,
            "model_flops": self.model_flops * self.run_tokens / self.tokens,
            **(
                {}
                if self.step_energy_j is None
                else {
                    "kwh": self.step_energy_j * self.run_tokens / self.tokens / 3.6e6,
                    "tco2e": self.step_energy_j
                    * self.run_tokens
                    / self.tokens
                    / 3.6e6
                    * GRID_KG_CO2_PER_KWH
                    / 1000,
                }
            ),
        }

    def op_rows(self) -> list[dict]:
        """One row per op of the critical stage's step. The same op in several model chunks
        (--vp) is one row: counts, FLOPs, bytes and time summed; its bound and tile efficiency
        are those of the chunk where it takes longest."""
        rows: dict[tuple[str, bool], dict] = {}
        longest: dict[tuple[str, bool], float] = {}
        for c, n in self.op_costs:
            op = c.op
            row = {
                "name": op.name, "kind": str(op.kind), "family": op.family,
                "count": op.count * n, "flops": op.flops * op.count * n,
                "hbm_bytes": c.main_bytes * op.count * n, "time_s": c.total_time_s * n,
                "share": c.total_time_s * n / self.step_time_s, "bound": c.bound,
                "recompute": op.recompute,
                "tile_efficiency": c.tile_efficiency,
            }  # fmt: skip
            key = (op.name, op.recompute)
            seen = rows.setdefault(key, row)
            if seen is not row:
                for field_ in ("count", "flops", "hbm_bytes", "time_s", "share"):
                    seen[field_] += row[field_]
            if row["time_s"] > longest.get(key, -1.0):
                longest[key] = row["time_s"]
                seen["bound"], seen["tile_efficiency"] = row["bound"], row["tile_efficiency"]
        return list(rows.values())

    def energy(self) -> dict | None:
        """The ``energy`` entry of the JSON: one step over all chips, and per run when
        ``--tokens`` was given (kWh, and tCO2e at GRID_KG_CO2_PER_KWH)."""
        if self.step_energy_j is None:
            return None
        out = {
            "step_j": self.step_energy_j,
            "total_j": self.step_energy_j,
            "avg_power_w": self.step_energy_j / self.step_time_s,
            "chip_avg_power_w": self.step_energy_j / self.step_time_s / self.n_chips,
            "tokens_per_j": self.tokens / self.step_energy_j,
        }
        totals = self.run_totals()
        if totals:
            out["run_kwh"] = totals["kwh"]
            out["run_tco2e"] = totals["tco2e"]
            out["grid_kg_co2_per_kwh"] = GRID_KG_CO2_PER_KWH
        return out

    def to_dict(self) -> dict:
        mem = self.memory
        out = {
            "workload": self.workload,
            "system": self.system,
            "time_s": self.step_time_s,
            "step_time_s": self.step_time_s,
            "flops": self.flops,
            "model_flops": self.model_flops,
            "hardware_flops": self.hardware_flops,
            "closed_form_model_flops": self.closed_form_model_flops,
            "mfu": self.mfu,
            "hfu": self.hfu,
            "model_flops_per_chip_per_s": self.model_flops_per_chip_s,
            "bound": self.bound,
            "hbm_bytes": self.hbm_bytes,
            "throughput": {"tokens_per_s": self.tokens_per_s,
                           "tokens_per_s_per_chip": self.tokens_per_s / self.n_chips},
            "time_breakdown": self.breakdown,
            **({"energy": self.energy()} if self.step_energy_j is not None else {}),
            "critical_stage": self.critical_stage,
            "memory": {
                "required_bytes": mem.total_bytes,
                "capacity_bytes": self.capacity_bytes,
                "fits": self.fits,
                "stage": mem.stage,
                "weights_bytes": mem.weights_bytes,
                "gradient_bytes": mem.gradient_bytes,
                "optimizer_bytes": mem.optimizer_bytes,
                "activation_bytes": mem.activation_bytes,
                "temporary_bytes": mem.temporary_bytes,
            },
            "ops": self.op_rows(),
        }  # fmt: skip
        totals = self.run_totals()
        if totals:
            out["run"] = totals
        return out

    @property
    def time_by_bound(self) -> dict[str, float]:
        """Seconds of the critical stage's step per binding resource (exposed side
        communication counts as communication)."""
        share: dict[str, float] = defaultdict(float)
        for c, n in self.op_costs:
            share[c.bound] += c.total_time_s * n
        share[Bound.COMMUNICATION] += self.side_comm_s
        share[Bound.COMPUTE] += self.side_compute_s
        return dict(share)

    @property
    def time_by_family(self) -> dict[str, float]:
        """Seconds of the critical stage's ops per op family (one step)."""
        out: dict[str, float] = defaultdict(float)
        for c, n in self.op_costs:
            out[c.op.family] += c.total_time_s * n
        return dict(out)

    def title(self) -> str:
        """One line naming the run: model, system and parallelism."""
        w = self.workload
        return (
            f"train {w['model']} on {self.system['name']}  TP{w['tp']} PP{w['pp']} DP{w['dp']}"
            + _expert_context(w)
            + f"  seq {w['seq']}  global batch {w['global_batch']}  {w['dtype']}"
            + (f"  runtime {w['runtime']}" if w.get("runtime") else "")
        )

    def summary_items(self) -> list[Item]:
        """The summary as (label, value with its unit, note): ``_repr_html_`` and the report."""
        m, b = self.memory, self.breakdown
        items: list[Item] = [
            ("step time", format_si(self.step_time_s, "s"),
             f"pipeline bubble {format_si(b['pipeline_bubble_s'], 's')}"),
            ("throughput", f"{rate_text(self.tokens_per_s)} tokens/s",
             f"{rate_text(self.tokens_per_s / self.n_chips)} tokens/s per chip"),
            ("MFU", percent(self.mfu), f"HFU {percent(self.hfu)} (with recomputation)"),
            ("model FLOP/s per chip", format_si(self.model_flops_per_chip_s, "FLOP/s"), ""),
            ("bound", str(self.bound),
             shares_note(self.time_by_bound, sum(self.time_by_bound.values()) or 1.0)
             + f" on stage {self.critical_stage}"),
            memory_item(m.total_bytes, self.capacity_bytes,
                        f"stage {m.stage}: weights {format_si(m.weights_bytes, 'B')}, gradients "
                        f"{format_si(m.gradient_bytes, 'B')}, optimizer "
                        f"{format_si(m.optimizer_bytes, 'B')}, activations "
                        f"{format_si(m.activation_bytes, 'B')}"),
        ]  # fmt: skip
        energy = self.energy()
        if energy:
            items.append(
                ("energy per step", format_si(energy["step_j"], "J"),
                 f"{format_si(energy['chip_avg_power_w'], 'W')} per chip, "
                 f"{rate_text(energy['tokens_per_j'])} tokens/J")
            )  # fmt: skip
        return items

    def _repr_html_(self) -> str:
        """The summary as HTML (``sim.cost.html``), for notebooks."""
        return summary_fragment(self.title(), self.summary_items())

    def summary(self, top: int = 10) -> str:
        w, m, b = self.workload, self.memory, self.breakdown
        par = (
            f"TP{w['tp']}{'+SP' if w['sp'] else ''}{'+overlap' if w.get('tp_overlap') else ''} PP{w['pp']}"
            + (f"x{w['vp']}" if w["vp"] > 1 else "")
            + f" DP{w['dp']}"
            + _expert_context(w)
        )
        comm = ", ".join(f"{k} {format_si(v, 's')}" for k, v in b["communication_s"].items() if v)
        lines = [
            f"train {w['model']} on {self.system['name']}  {par}  seq {w['seq']}  "
            f"micro-batch {w['micro_batch']} x {w['micro_batches']}  global batch "
            f"{w['global_batch']}  {w['dtype']}  recompute {w['recompute']}"
            + (f" ({w['recompute_blocks']:.0%} of blocks)" if "recompute_blocks" in w else "")
            + f"  ZeRO-{w['zero']}"
            + (f" (hybrid: shard over {w['dp_shard']})" if w.get("dp_shard") else "")
            + (f"  {w['grad_reduce']} gradients" if w.get("grad_reduce") else "")
            + (f"  runtime {w['runtime']}" if w.get("runtime") else "")
            + (f"  {w['elementwise']} elementwise" if w.get("elementwise") == "eager" else ""),
            *overrides_line(self.system),
            f"  step        {format_si(self.step_time_s, 's')}   tokens/s {self.tokens_per_s:,.0f}"
            f"   ({self.tokens_per_s / self.n_chips:,.1f} per chip)",
            f"  MFU {self.mfu:.1%}   HFU {self.hfu:.1%}   "
            f"{format_si(self.model_flops_per_chip_s, 'FLOP/s')} model per chip   bound: {self.bound}",
            f"  breakdown   compute {format_si(b['compute_s'], 's')}"
            + (f"  recompute {format_si(b['recompute_s'], 's')}" if b["recompute_s"] else "")
            + f"  bubble {format_si(b['pipeline_bubble_s'], 's')}"
            f"  optimizer {format_si(b['optimizer_s'], 's')}"
            + (f"  exposed comm: {comm}" if comm else ""),
            f"  memory/chip {format_si(m.total_bytes, 'B')} of {format_si(self.capacity_bytes, 'B')}"
            f" (stage {m.stage}: weights {format_si(m.weights_bytes, 'B')}, grads "
            f"{format_si(m.gradient_bytes, 'B')}, optimizer {format_si(m.optimizer_bytes, 'B')}, "
            f"activations {format_si(m.activation_bytes, 'B')}, temp "
            f"{format_si(m.temporary_bytes, 'B')})",
        ]
        totals = self.run_totals()
        energy = self.energy()
        if energy:
            lines.append(
                f"  energy      {format_si(energy['step_j'], 'J')} per step   tokens/J "
                f"{energy['tokens_per_j']:.3g}   power {format_si(energy['chip_avg_power_w'], 'W')}"
                "/chip"
            )
        if totals:
            lines.append(
                f"  run         {format_si(totals['tokens'], 'tokens')}: {totals['days']:,.1f} days"
                f", {totals['chip_hours']:,.0f} chip-hours"
                + (
                    f", {totals['kwh'] / 1000:,.0f} MWh of chip energy, {totals['tco2e']:,.0f} "
                    f"tCO2e at {GRID_KG_CO2_PER_KWH * 1000:.0f} g/kWh"
                    if "kwh" in totals
                    else ""
                )
            )
        lines += ["", f"  {'op (critical stage ' + str(self.critical_stage) + ')':<34}"
                      f"{'count':>7}{'FLOPs':>12}{'time':>11}{'share':>7}  bound"]  # fmt: skip
        for row in sorted(self.op_rows(), key=lambda r: -r["time_s"])[:top]:
            lines.append(
                f"  {row['name']:<34}{row['count']:>7}{format_si(row['flops'], 'F'):>12}"
                f" {format_si(row['time_s'], 's'):>10}{row['share']:>7.1%}  {row['bound']}"
            )
        return "\n".join(lines)


def memory_error(t: Training, mem: TrainMemory, capacity: float, chip: str) -> str:
    """The one-line refusal: the breakdown, and the nearest configuration that fits."""
    parts = (
        f"weights {format_si(mem.weights_bytes, 'B')}, gradients "
        f"{format_si(mem.gradient_bytes, 'B')}, optimizer {format_si(mem.optimizer_bytes, 'B')}, "
        f"activations {format_si(mem.activation_bytes, 'B')}, temporary "
        f"{format_si(mem.temporary_bytes, 'B')}"
    )
    hint = nearest_fit(t, capacity)
    return (
        f"does not fit: pipeline stage {mem.stage} needs {format_si(mem.total_bytes, 'B')} per "
        f"chip ({parts}) but {chip} has {format_si(capacity, 'B')}; {hint}"
    )


def _worst_memory(t: Training) -> TrainMemory:
    return max(t.lower().memory, key=lambda m: m.total_bytes)


def nearest_fit(t: Training, capacity: float) -> str:
    """The configuration with the fewest changed settings (same chip count) that fits."""
    n = t.n_chips
    order = list(RECOMPUTE_ORDER)
    # (policy, share of blocks): the run's own, then heavier policies over every block
    recomputes = [(t.recompute, t.recompute_blocks)]
    recomputes += [(r, 1.0) for r in order[order.index(t.recompute) :] if (r, 1.0) != recomputes[0]]
    zeros = list(range(t.zero, 4))
    # hybrid sharding as given, or dropped (ZeRO over every dp x cp rank)
    shards = [t.dp_shard, 0] if t.dp_shard else [0]
    mbs = sorted({t.micro_batch >> i for i in range(8) if t.micro_batch >> i >= 1}, reverse=True)
    node = max(t.tp, t.chips_per_node)  # tensor parallelism stays inside a node
    tps = [
        x for x in (t.tp, 2 * t.tp, 4 * t.tp, 8 * t.tp) if t.model.n_heads % x == 0 and x <= node
    ]
    pps = [x for x in (t.pp, 2 * t.pp, 4 * t.pp, 8 * t.pp) if x * t.vp <= t.model.n_layers]
    best: tuple[tuple, Training] | None = None
    for (rc, blocks), z, mb, tp, pp, g in itertools.product(recomputes, zeros, mbs, tps, pps,
                                                            shards):  # fmt: skip
        rest = n // (tp * pp * t.cp)
        # experts shard over the data-parallel ranks, or, folded (--etp 1), over TP x CP x DP
        folded = t.etp == 1 and (tp > 1 or t.cp > 1)
        if rest * tp * pp * t.cp != n or (rest * tp * t.cp if folded else rest) % t.ep:
            continue
        # fewest changes; among equals, change ZeRO, then recompute, micro-batch, PP, TP
        changed = (tp != t.tp, pp != t.pp, mb != t.micro_batch,
                   (rc, blocks) != (t.recompute, t.recompute_blocks), z != t.zero,
                   g != t.dp_shard)  # fmt: skip
        key = (sum(changed), *changed)
        if best is not None and key >= best[0]:
            continue
        cand = replace(t, recompute=rc, recompute_blocks=blocks, zero=z, micro_batch=mb, tp=tp,
                       pp=pp, dp=rest, global_batch=t.batch, dp_shard=g)  # fmt: skip
        if cand.global_batch % (mb * rest) or (cand.vp > 1 and cand.micro_batches % pp):
            continue
        try:
            cand.validate()  # e.g. a --dp-shard that no longer divides dp x cp
            if _worst_memory(cand).total_bytes <= capacity:
                best = (key, cand)
        except WorkloadError:  # a candidate the workload rejects is simply skipped
            continue
    if best is None:
        states = t.model.n_params() * (2 + t.grad_bytes + 12)
        need = math.ceil(states / capacity)
        return (
            f"no setting of --recompute/--zero/--micro-batch/--tp/--pp fits on {n} chips; "
            f"weights, gradients and Adam states alone need at least {need} chips"
        )
    c = best[1]
    flags = [f"--{k.replace('_', '-')} {getattr(c, k)}" for k in
             ("recompute", "recompute_blocks", "zero", "dp_shard", "micro_batch", "tp", "pp", "dp")
             if getattr(c, k) != getattr(t, k)]  # fmt: skip
    return "nearest that fits: " + " ".join(flags)


def simulate_training(
    training: Training,
    system: System,
    *,
    overlap: bool = True,
    check_memory: bool = True,
    trace: bool = False,
) -> TrainResult:
    """Derive step time, MFU/HFU, the exposed communication and bubble, and memory fit.

    A training run is thousands of steps back to back, so the chip sits at its power limit
    whatever one step's length: ops are costed in the steady state (``hardware.power``).
    """
    return _simulate_training(training, system, overlap=overlap, check_memory=check_memory,
                              trace=trace)  # fmt: skip


def _simulate_training(
    training: Training, system: System, *, overlap: bool, check_memory: bool, trace: bool
) -> TrainResult:
    t = replace(training, chips_per_node=system.chips_per_node)
    if system.n_chips != t.n_chips:
        raise ConfigError(
            f"--chips {system.n_chips} must equal tp x cp x pp x dp = "
            f"{t.tp} x {t.cp} x {t.pp} x {t.dp} = {t.n_chips}"
        )
    plan: TrainPlan = t.lower()
    chip = system.chip
    capacity = chip.main_memory.capacity_bytes
    worst = max(plan.memory, key=lambda m: m.total_bytes)
    if check_memory and worst.total_bytes > capacity:
        raise CapacityError(memory_error(t, worst, capacity, chip.name))

    def total(costs: tuple[OpCost, ...]) -> float:
        return sum(c.total_time_s for c in costs)

    works, costed, comms, alone = [], [], [], []
    for chunks in plan.stages:
        per = [(_cost_pass(c.forward, c.fsdp_forward, c.layers, system, overlap),
                _cost_pass(c.backward, c.fsdp_backward, c.layers, system, overlap))
               for c in chunks]  # fmt: skip
        plain = per  # (each pass alone: the combined 1F1B's warm-up and cool-down passes)
        if t.ep_overlap and overlap:
            per = [
                _ep_beside(
                    f,
                    b,
                    beside_slowdown(f.costs, _ep_costs(b), system),
                    beside_slowdown(b.costs, _ep_costs(f), system),
                )
                for f, b in per
            ]
        costed.append(per)
        alone.append(plain)
        lone = plain if plain is not per else []  # passes that run alone: only when paired
        syncs = [cost_ops(c.grad_sync, system) for c in chunks]
        gathers = cost_ops(tuple(op for c in chunks for op in c.param_gather), system)
        comms.append(syncs + [gathers])
        # the backward beside its chunk's gradient reduction, the first forward beside the
        # parameter gather (what each runs beside when overlapped)
        sync_slow = tuple(beside_slowdown(b.costs, sync, system) if overlap else 0.0
                          for (_, b), sync in zip(per, syncs, strict=True))  # fmt: skip
        gather_slow = beside_slowdown(per[0][0].costs, gathers, system) if overlap else 0.0
        works.append(
            StageWork(
                forward=tuple(f.time_s for f, _ in per),
                backward=tuple(b.time_s for _, b in per),
                grad_sync=tuple(total(sync) for sync in syncs),
                layers=tuple(max(1, c.layers) for c in chunks),
                optimizer=0.0,
                param_gather=total(gathers),
                grad_sync_slowdown=sync_slow,
                param_gather_slowdown=gather_slow,
                forward_parts=tuple(f.parts for f, _ in per),
                backward_parts=tuple(b.parts for _, b in per),
                forward_alone=tuple(f.time_s for f, _ in lone),
                backward_alone=tuple(b.time_s for _, b in lone),
                forward_alone_parts=tuple(f.parts for f, _ in lone),
                backward_alone_parts=tuple(b.parts for _, b in lone),
            )
        )
    opt_costs = cost_ops(plan.optimizer, system)
    step_energy = None
    if chip.has_power_model:

        def dynamic(costs: tuple[OpCost, ...]) -> float:
            return sum(c.energy_j * c.op.count for c in costs)

        per_stage = [
            # every micro-batch's passes with ZeRO-3's gathers and reduce-scatters beside them
            plan.micro_batches * sum(dynamic(x.costs) + dynamic(x.side) for fb in per for x in fb)
            + opt.energy_j * opt.op.count
            + sum(dynamic(c) for c in comm)  # the gradient reductions and the parameter gather
            for per, opt, comm in zip(costed, opt_costs, comms, strict=True)
        ]
    works = [replace(w, optimizer=o.total_time_s) for w, o in zip(works, opt_costs, strict=True)]
    p2p = cost_op(plan.p2p, system).total_time_s if plan.p2p is not None else 0.0
    timeline = run_pipeline(works, plan.micro_batches, p2p, overlap=overlap, trace=trace)

    s = timeline.critical_stage
    st = timeline.stages[s]
    m = plan.micro_batches
    cats: dict[str, float] = defaultdict(float)
    for c, (f, b) in enumerate(costed[s]):
        for k, v in list(f.by_category.items()) + list(b.by_category.items()):
            cats[k] += v * m
        # the passes that ran alone: their all-to-all whole, their compute not slowed
        for kind, x, lone in (("F", f, alone[s][c][0]), ("B", b, alone[s][c][1])):
            n = st.unpaired.get((kind, c), 0)
            for k in ("ep", "compute"):
                cats[k] += n * (lone.by_category.get(k, 0.0) - x.by_category.get(k, 0.0))
    comm = {k: cats.get(k, 0.0) for k in COMM_KINDS}
    comm["dp"] += st.gather_exposed_s
    comm["dp_tail"] = st.sync_end_s - st.backward_end_s
    breakdown = {
        "compute_s": cats.get("compute", 0.0) + st.contention_s,
        "recompute_s": cats.get("recompute", 0.0),
        "communication_s": comm,
        "pipeline_bubble_s": max(0.0, st.backward_end_s - st.busy_s),
        "optimizer_s": st.optimizer_s,
    }
    # FLOPs: every chip of a stage does the same work; m micro-batches per step
    replicas = t.tp * t.cp * t.dp
    model = hw = executed = 0.0
    for chunks in plan.stages:
        for c in chunks:
            for op in c.forward + c.backward:
                model += op.model_flops * op.count
                executed += op.flops * op.count
                if op.recompute and op.kind in (OpKind.GEMM, OpKind.ATTENTION):
                    hw += op.flops * op.count
    scale = m * replicas
    op_costs = []
    for ci, (f, b) in enumerate(costed[s]):
        for kind, x in (("F", f), ("B", b)):
            # an EP all-to-all beside compute is listed by its exposed part, whole in the
            # passes that ran alone
            n = st.unpaired.get((kind, ci), 0)
            for c in x.costs:
                if x.ep_exposed != 1.0 and _category(c.op) == "ep":
                    exposed = x.ep_role_exposed.get(_ep_role(c.op), x.ep_exposed)
                    op_costs.append((replace(c, time_s=c.time_s * exposed), m - n))
                    if n:
                        op_costs.append((c, n))
                else:
                    op_costs.append((c, m))
    op_costs.append((opt_costs[s], 1))
    fsdp = sum(
        v for f, b in costed[s] for name, v, _ in f.parts + b.parts if name == "fsdp exposed"
    )
    if chip.has_power_model:
        step_energy = replicas * sum(per_stage) + t.n_chips * chip.idle_watts * timeline.step_s
    return TrainResult(
        step_energy_j=step_energy,
        side_comm_s=fsdp * m + st.gather_exposed_s + comm["dp_tail"],
        side_compute_s=sum(
            (m - st.unpaired.get((kind, c), 0)) * x.beside_s
            + st.unpaired.get((kind, c), 0) * lone.beside_s
            for c, (fb, lone_fb) in enumerate(zip(costed[s], alone[s], strict=True))
            for kind, x, lone in (("F", fb[0], lone_fb[0]), ("B", fb[1], lone_fb[1]))
        ),
        workload=plan.describe,
        system=system.describe(),
        step_time_s=timeline.step_s,
        model_flops=model * scale,
        hardware_flops=(model + hw) * scale,
        flops=executed * scale,
        peak_flops_per_s=chip.peak(t.dtype),
        n_chips=t.n_chips,
        tokens=plan.tokens,
        breakdown=breakdown,
        memory=worst,
        capacity_bytes=capacity,
        hbm_bytes=sum(c.main_bytes * c.op.count * n for c, n in op_costs),
        critical_stage=s,
        op_costs=tuple(op_costs),
        timeline=timeline,
        run_tokens=t.tokens,
        closed_form_model_flops=plan.model_flops_closed_form,
    )
