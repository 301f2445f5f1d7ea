"""``roofsim compare --chip A,B,C``: one LLM decode or prefill on several chips, a row per chip.

Each chip runs the same workload (model, batch, context or prompt, dtype). The chip count per
chip is ``--chips N`` when given (a chip that cannot hold the workload on N chips is
refused with the capacity reason), ``--tp`` when given, and otherwise the smallest tensor-
parallel degree that both divides the model's heads (the lowering's own check) and fits the
workload in each chip's main memory; a chip that holds it at no such degree is refused with
the capacity reason at the largest degree. Tokens per joule and the average power per chip come
from the derived power model (``hardware.power``: idle + energy per FLOP and per byte, under
the TDP), for every chip alike; tokens per dollar divide throughput by chips x the preset's
cited on-demand ``price.usd_per_hour`` (docs/presets.md), only where the preset has one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class CompareRow:
    """One chip's result (``refused`` set and the metrics None when it cannot run the workload)."""

    chip: str
    n_chips: int | None
    time_s: float | None = None
    tokens_per_s: float | None = None
    mfu: float | None = None
    mbu: float | None = None
    bound: str | None = None
    fits: bool = False
    required_bytes: float | None = None
    capacity_bytes: float | None = None
    tdp_watts: float | None = None
    usd_per_hour: float | None = None
    tokens_per_j: float | None = None
    chip_power_w: float | None = None  # average power per chip, derived
    tokens_per_usd: float | None = None
    refused: str | None = None
    # the run itself (sim.cost.result.Result) and its System, for the op-by-op HTML report;
    # not part of the JSON row
    result: Any = field(default=None, repr=False, compare=False)
    system: Any = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _RUN}


_RUN = ("result", "system")


def _workload(kind: str, model: Any, tp: int, dp: int, **fields: Any) -> Any:
    from workloads import Decode, Prefill

    common = dict(model=model, batch=fields["batch"], dtype=fields["dtype"],
                  kv_dtype=fields["kv_dtype"], tp=tp, dp=dp)  # fmt: skip
    if kind == "decode":
        return Decode(context=fields["context"], **common)
    return Prefill(prompt=fields["prompt"], **common)


def compare(
    chips: list[str],
    *,
    model: str,
    kind: str = "decode",
    batch: int = 1,
    context: int = 2048,
    prompt: int = 2048,
    dtype: str = "bf16",
    kv_dtype: str | None = None,
    tp: int | None = None,
    chips_per: int | None = None,
    sets: list[str] | tuple[str, ...] = (),
) -> list[CompareRow]:
    """Simulate the workload on each chip (see the module docstring for the chip count).

    Raises ConfigError / WorkloadError for input that no chip could run (unknown chip or model,
    a bad ``--tp``); a chip that cannot hold the workload gets a row with ``refused`` set.
    """
    from hardware import ConfigError, load_system
    from sim.cost.result import CapacityError
    from sim.cost.simulate import simulate
    from workloads import WorkloadError, load_model

    if kind not in ("decode", "prefill"):
        raise ConfigError(f"compare: --workload must be decode or prefill, got {kind!r}")
    if not chips:
        raise ConfigError("compare: --chip needs at least one chip, e.g. --chip h100-sxm,b200")
    config = load_model(model)
    fields = dict(batch=batch, context=context, prompt=prompt, dtype=dtype, kv_dtype=kv_dtype)
    if chips_per is not None:
        t = tp or chips_per
        if chips_per % t:
            raise ConfigError(f"--chips {chips_per} must be a multiple of --tp {t}")
        plans = [(t, chips_per // t)]
    elif tp is not None:
        plans = [(tp, 1)]
    else:
        heads = config.n_heads
        plans = [(t, 1) for t in range(1, heads + 1) if heads % t == 0]
    rows = []
    from hardware.loader import chip_label

    for name in chips:
        chip = load_system(name, 1, sets).chip
        label = chip_label(name)  # an alias shows as its preset; a file as given
        row = None
        refusal = ""
        for t, dp in plans:
            workload = _workload(kind, config, t, dp, **fields)
            try:
                workload.lower()
            except WorkloadError:
                if len(plans) == 1:
                    raise
                continue  # this TP degree does not divide the heads: the next one
            system = load_system(name, t * dp, sets)
            try:
                result = simulate(workload, system)
            except CapacityError as exc:
                refusal = str(exc)
                continue
            tokens_per_s = result.throughput[next(iter(result.throughput))]
            n = system.n_chips
            row = CompareRow(
                chip=label,
                n_chips=n,
                time_s=result.time_s,
                tokens_per_s=tokens_per_s,
                mfu=result.mfu,
                mbu=result.mbu,
                bound=result.bound,
                fits=result.memory.fits,
                required_bytes=result.memory.required_bytes,
                capacity_bytes=result.memory.capacity_bytes,
                tdp_watts=chip.tdp_watts,
                usd_per_hour=chip.usd_per_hour,
                tokens_per_j=tokens_per_s * result.time_s / result.energy_j
                if result.energy_j
                else None,
                chip_power_w=result.energy_j / result.time_s / n if result.energy_j else None,
                tokens_per_usd=tokens_per_s * 3600 / (n * chip.usd_per_hour)
                if chip.usd_per_hour
                else None,
                result=result,
                system=system,
            )
            break
        if row is None:
            last = plans[-1][0] * plans[-1][1]
            scope = (
                f"on {last} chip{'s' if last > 1 else ''}"
                if len(plans) == 1
                else f"at any TP degree dividing the {config.n_heads} heads (up to {last} chips)"
            )
            row = CompareRow(
                chip=label,
                n_chips=None,
                capacity_bytes=chip.main_memory.capacity_bytes,
                tdp_watts=chip.tdp_watts,
                usd_per_hour=chip.usd_per_hour,
                refused=f"does not fit {scope}: {refusal.removeprefix('does not fit: ')}",
            )
        rows.append(row)
    return rows


def format_table(rows: list[CompareRow], title: str) -> str:
    """The human table: a row per chip, refusals spelled out below it."""
    from hardware.units import format_si

    def num(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    head = (
        f"{'chip':<16}{'chips':>6}{'time':>11}{'tokens/s':>12}{'MFU':>7}{'MBU':>7}"
        f"  {'bound':<13}{'fits':<6}{'W/chip':>7}{'tokens/J':>9}{'tokens/$':>11}"
    )
    lines = [title, "", head]
    for r in rows:
        if r.refused:
            lines.append(f"{r.chip:<16}{'-':>6}{'refused (see below)':>30}")
            continue
        assert r.time_s is not None and r.tokens_per_s is not None
        lines.append(
            f"{r.chip:<16}{r.n_chips:>6}{format_si(r.time_s, 's'):>11}"
            f"{r.tokens_per_s:>12,.1f}{num(r.mfu, '.1%'):>7}{num(r.mbu, '.1%'):>7}"
            f"  {r.bound:<13}{'yes' if r.fits else 'no':<6}"
            f"{num(r.chip_power_w, '.0f'):>7}{num(r.tokens_per_j, '.3g'):>9}"
            f"{num(r.tokens_per_usd, ',.0f'):>11}"
        )
    notes = [f"  {r.chip}: {r.refused}" for r in rows if r.refused]
    if notes:
        lines += ["", "refused:", *notes]
    missing = [r.chip for r in rows if not r.refused and r.usd_per_hour is None]
    if missing:
        lines.append(f"\nno cited price for {', '.join(missing)}: tokens/$ left out")
    return "\n".join(lines)
