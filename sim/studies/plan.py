"""Capacity planning: the fewest chips (replicas x TP) that serve a demand within an SLO.

For each tensor-parallel degree that fits the model, bisect the largest Poisson arrival rate one
replica can take while the simulated percentile TTFT and TPOT stay within the SLO; the fleet
needs ceil(peak rate / that rate) replicas. Why one replica is enough to simulate: a router that
sends each arrival to a random replica splits a Poisson stream into independent Poisson streams
of rate R / N (Poisson splitting), so N replicas meet the SLO exactly when one does at R / N. A
least-loaded router only does better, so the count is an upper bound for it.

Every rate tried replays the same requests (common random numbers, ``Serving.requests``), so
the bisection compares like with like.

Disaggregated serving (``splits``): a unit of P prefill and D decode replicas (DistServe, Zhong
et al. OSDI 2024; Splitwise, Patel et al. ISCA 2024) is bisected the same way, its KV caches
moved over the link (``sim.engine.serve``); the fleet needs ceil(peak / a unit's rate) units,
by the same splitting argument. Each split is costed beside the colocated replica of each TP.
NB: inside a unit requests go to the least-loaded replica of each pool, which only does better
than the random routing the colocated fleet is sized for, so larger units are slightly favoured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from hardware import load_system
from hardware.chip import ConfigError
from sim.cost.result import CapacityError
from sim.engine.serve import ServeResult, simulate_serving
from workloads.ops import WorkloadError
from workloads.serving import Serving

DAY_S = 86_400.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Demand:
    """Mean request rate and how much higher the busiest hour runs (peak-to-mean factor)."""

    mean_rate: float  # requests per second over the day
    peak_to_mean: float = 1.0

    @property
    def peak_rate(self) -> float:
        return self.mean_rate * self.peak_to_mean

    @classmethod
    def from_tokens_per_day(
        cls, tokens_per_day: float, tokens_per_request: float, peak_to_mean: float = 1.0
    ) -> Demand:
        """Tokens per day over the tokens each request counts -> requests per second (the CLI
        counts output tokens; a caller may count prompt tokens too)."""
        if tokens_per_day <= 0:
            raise WorkloadError(f"plan: --tokens-per-day must be > 0, got {tokens_per_day!r}")
        return cls(mean_rate=tokens_per_day / DAY_S / tokens_per_request, peak_to_mean=peak_to_mean)

    def __post_init__(self) -> None:
        if not (self.mean_rate > 0 and math.isfinite(self.mean_rate)):
            raise WorkloadError(f"plan: the request rate must be > 0, got {self.mean_rate!r}")
        if not self.peak_to_mean >= 1:
            raise WorkloadError(f"plan: --peak-to-mean must be >= 1, got {self.peak_to_mean!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class SLO:
    """Percentile limits on time to first token and time per output token (None: no limit)."""

    ttft_s: float | None = 2.0
    tpot_s: float | None = 0.1
    percentile: float = 99.0

    def __post_init__(self) -> None:
        if self.ttft_s is None and self.tpot_s is None:
            raise WorkloadError("plan: give at least one of --slo-ttft and --slo-tpot")
        for name, v in (("--slo-ttft", self.ttft_s), ("--slo-tpot", self.tpot_s)):
            if v is not None and not v > 0:
                raise WorkloadError(f"plan: {name} must be > 0 s, got {v!r}")
        if not 0 < self.percentile <= 100:
            raise WorkloadError(f"plan: --percentile must be in (0, 100], got {self.percentile!r}")

    def met(self, r: ServeResult) -> bool:
        import numpy as np

        if r.completed < len(r.arrival_s):
            return False
        if self.ttft_s is not None and np.percentile(r.ttft, self.percentile) > self.ttft_s:
            return False
        tpot = r.tpot
        return not (
            self.tpot_s is not None
            and len(tpot)
            and np.percentile(tpot, self.percentile) > self.tpot_s
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TPOption:
    """One tensor-parallel degree: what one replica sustains and the fleet it implies."""

    tp: int
    max_rate_per_replica: float  # requests/s within the SLO (0: cannot meet it at any rate)
    replicas: int
    chips: int
    at_peak: ServeResult | None  # one replica at peak rate / replicas
    at_mean: ServeResult | None  # one replica at mean rate / replicas
    reason: str = ""  # why this TP is out (does not fit, SLO not met at any rate)
    # the rate search stopped at the first served rate >= the demand's peak: one replica
    # serves the demand, and max_rate_per_replica is a lower bound
    max_rate_is_floor: bool = False
    # disaggregated: each replica above is a unit of this many prefill and decode replicas
    # (0 and 0: colocated, every replica does both)
    prefill_replicas: int = 0
    decode_replicas: int = 0

    @property
    def split(self) -> str:
        """1P:2D for a unit of one prefill and two decode replicas; - for a colocated one."""
        return f"{self.prefill_replicas}P:{self.decode_replicas}D" if self.prefill_replicas else "-"

    @property
    def label(self) -> str:
        """TP4, or TP4 1P:2D."""
        return f"TP{self.tp}" + (f" {self.split}" if self.prefill_replicas else "")

    @classmethod
    def refused(cls, tp: int, reason: str, split: tuple[int, int] = (0, 0)) -> TPOption:
        """A TP degree (and split) that cannot serve the demand, and why."""
        return cls(tp=tp, max_rate_per_replica=0.0, replicas=0, chips=0, at_peak=None,
                   at_mean=None, reason=reason, prefill_replicas=split[0],
                   decode_replicas=split[1])  # fmt: skip

    def to_dict(self) -> dict:
        d: dict = {
            "tp": self.tp,
            "max_rate_per_replica": self.max_rate_per_replica,
            "max_rate_is_floor": self.max_rate_is_floor,
            "replicas": self.replicas,
            "chips": self.chips,
        }
        if self.prefill_replicas:  # the fields above count units; say so, and the replicas
            per_unit = self.prefill_replicas + self.decode_replicas
            d |= {
                "units": self.replicas,
                "max_rate_per_unit": self.max_rate_per_replica,
                "replicas": self.replicas * per_unit,
                "max_rate_per_replica": self.max_rate_per_replica / per_unit,
                "prefill_replicas_per_unit": self.prefill_replicas,
                "decode_replicas_per_unit": self.decode_replicas,
            }
        if self.reason:
            d["reason"] = self.reason
        for name, r in (("at_peak", self.at_peak), ("at_mean", self.at_mean)):
            if r is not None:
                full = r.to_dict(kv_points=0)
                d[name] = {
                    k: full[k]
                    for k in ("ttft_s", "tpot_s", "latency_s", "throughput", "mfu", "mbu")
                } | {"busy_fraction": r.busy_fraction, "mean_decode_batch": r.mean_decode_batch}
        return d


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    demand: Demand
    slo: SLO
    chip: str
    options: tuple[TPOption, ...]
    usd_per_chip_hour: float | None
    mean_output_tokens: float
    model: str = ""
    runtime: str = ""
    speculation: str = ""  # the serving's speculative decoding, in words ('' without)
    spec_fields: dict = field(default_factory=dict)  # its spec_tokens, draft, acceptance ...

    @property
    def best(self) -> TPOption | None:
        ok = [o for o in self.options if o.chips > 0]
        return min(ok, key=lambda o: (o.chips, o.tp, o.prefill_replicas)) if ok else None

    def costs(self, o: TPOption) -> dict:
        """$/hour and $ per million output tokens at mean load, and the derived energy per
        output token there: a replica at the mean rate (its idle power while it waits, plus
        its iterations; ``hardware.power``) over the tokens it serves, and the fleet's power."""
        tokens_per_s = self.demand.mean_rate * self.mean_output_tokens
        out: dict = {}
        if self.usd_per_chip_hour is not None:
            per_hour = o.chips * self.usd_per_chip_hour
            out["usd_per_hour"] = per_hour
            out["usd_per_million_tokens"] = per_hour / (tokens_per_s * 3600) * 1e6
        mean = o.at_mean
        energy = None if mean is None else mean.energy_j
        if energy and mean is not None and mean.output.sum() > 0:
            out["joules_per_token"] = energy / float(mean.output.sum())
            out["fleet_power_w"] = o.chips * energy / mean.n_chips / mean.end_s
        return out

    def to_dict(self) -> dict:
        best = self.best
        return {
            "chip": self.chip,
            "model": self.model,
            "runtime": self.runtime,
            **({"speculation": self.speculation, **self.spec_fields} if self.speculation else {}),
            "demand": {
                "mean_rate": self.demand.mean_rate,
                "peak_to_mean": self.demand.peak_to_mean,
                "peak_rate": self.demand.peak_rate,
                "mean_output_tokens": self.mean_output_tokens,
            },
            "slo": {
                "ttft_s": self.slo.ttft_s,
                "tpot_s": self.slo.tpot_s,
                "percentile": self.slo.percentile,
            },
            "options": [o.to_dict() | self.costs(o) for o in self.options],
            "best": None if best is None else best.to_dict() | self.costs(best),
        }

    def summary(self) -> str:
        d, s = self.demand, self.slo
        lim = ", ".join(
            f"p{s.percentile:g} {k} <= {v * 1e3:g} ms"
            for k, v in (("TTFT", s.ttft_s), ("TPOT", s.tpot_s))
            if v is not None
        )
        splits = [o.split for o in self.options if o.prefill_replicas]
        width = max(len("split"), *map(len, splits)) if splits else 0
        per = "unit" if splits else "replica"
        lines = [
            f"plan {self.model} on {self.chip} (runtime {self.runtime}"
            f"{', speculative ' + self.speculation if self.speculation else ''}): mean {d.mean_rate:.4g} req/s, peak x{d.peak_to_mean:g} = "
            f"{d.peak_rate:.4g} req/s (~{self.mean_output_tokens:.0f} output tokens each); SLO {lim}",
            f"  {'TP':>3}{' ' + 'split'.rjust(width) if splits else ''} {'req/s/' + per:>14} "
            f"{per + 's':>9} {'chips':>7} {'MFU peak':>9} {'MFU mean':>9} {'$/h':>10} "
            f"{'$/M tok':>8} {'J/token':>8}",
        ]
        for o in self.options:
            split = f" {o.split:>{width}}" if splits else ""
            if o.chips == 0:
                lines.append(f"  {o.tp:>3}{split}  -- {o.reason}")
                continue
            c = self.costs(o)
            rate = (">= " if o.max_rate_is_floor else "") + f"{o.max_rate_per_replica:.3g}"
            lines.append(
                f"  {o.tp:>3}{split} {rate:>14} {o.replicas:>9,} {o.chips:>7,} "
                f"{o.at_peak.mfu if o.at_peak else 0:>9.1%} {o.at_mean.mfu if o.at_mean else 0:>9.1%} "
                f"{c.get('usd_per_hour', float('nan')):>10,.0f} "
                f"{c.get('usd_per_million_tokens', float('nan')):>8.3g} "
                f"{c.get('joules_per_token', float('nan')):>8.3g}"
            )
        if any(o.max_rate_is_floor for o in self.options):
            lines.append(
                f"  >= : the rate search stopped at the first served rate at or above the "
                f"{d.peak_rate:.4g} req/s peak (one replica or unit serves it; its limit is higher)"
            )
        best = self.best
        if splits:
            lines.append("  a unit: one replica (split -), or P prefill + D decode replicas "
                         "(P:D); a replica is TP chips")  # fmt: skip
        if best is None:
            lines.append("  no option meets the SLO")
        else:
            unit = (f"{best.replicas:,} units of {best.prefill_replicas} prefill + "
                    f"{best.decode_replicas} decode replicas x TP{best.tp}"
                    if best.prefill_replicas else f"{best.replicas:,} replicas x TP{best.tp}")  # fmt: skip
            lines.append(
                f"  best: {best.chips:,} chips ({unit}); "
                f"MFU {best.at_peak.mfu if best.at_peak else 0:.1%} at peak, "
                f"{best.at_mean.mfu if best.at_mean else 0:.1%} over the day"
            )
        return "\n".join(lines)


def _run(
    serving: Serving, system, rate: float, min_requests: int, slo: SLO, min_duration_s: float = 60.0
) -> ServeResult:
    # at least min_requests and min_duration_s, but never more than 10 x min_requests: a high
    # rate (a large demand) would otherwise simulate min_duration_s x rate requests
    duration = min(max(min_duration_s, min_requests / rate), 10 * min_requests / rate)
    w = replace(serving, rate=rate, duration_s=duration)  # one replica, or one disaggregated unit
    return simulate_serving(w, system, slo_ttft_s=slo.ttft_s, slo_tpot_s=slo.tpot_s)


#: a replica keeps up with a rate when its last request finishes within this many arrival
#: windows (a long output's drain fits; a queue that grows for the whole window does not)
KEEP_UP_WINDOWS = 2.0


def _served(r: ServeResult, slo: SLO) -> bool:
    return slo.met(r) and r.end_s <= KEEP_UP_WINDOWS * r.workload["duration_s"]


def max_rate(
    serving: Serving,
    system,
    slo: SLO,
    *,
    min_requests: int = 1500,
    min_duration_s: float = 60.0,
    rel_tol: float = 0.03,
    cap: float | None = None,
) -> float:
    """The largest Poisson rate (req/s) one replica serves within ``slo`` (0 if none); one
    disaggregated unit where ``serving`` has ``prefill_replicas`` (``system`` then holds the
    unit's chips).

    A rate is served when the SLO holds and the replica keeps up with it (``_served``): under
    a loose SLO an overloaded replica would otherwise "meet" it in a finite window, and the
    search would double the rate without end. ``cap``: stop at the first served rate at or
    above it (a plan needs no more than the demand's peak from one replica); the result is
    then a lower bound.
    """
    lo, hi = 0.0, None
    rate = 1.0 if cap is None else cap  # with a cap, one run settles "the peak is served"
    for _ in range(40):  # bracket by doubling / halving
        if _served(_run(serving, system, rate, min_requests, slo, min_duration_s), slo):
            lo = rate
            if cap is not None and lo >= cap:
                return lo
            rate *= 2
        else:
            hi = rate
            if lo > 0:
                break
            rate /= 4
            if rate < 1e-3:
                return 0.0
        if hi is not None and lo > 0:
            break
    if hi is None:
        return lo
    while hi - lo > rel_tol * lo:
        mid = math.sqrt(lo * hi)
        if _served(_run(serving, system, mid, min_requests, slo, min_duration_s), slo):
            lo = mid
        else:
            hi = mid
    return lo


def plan(
    serving: Serving,
    chip: str,
    demand: Demand,
    slo: SLO,
    *,
    tps: tuple[int, ...] | None = None,
    sets: tuple[str, ...] | list[str] = (),
    usd_per_chip_hour: float | None = None,
    min_requests: int = 1500,
    min_duration_s: float = 60.0,
    splits: tuple[tuple[int, int], ...] = (),
) -> Plan:
    """Search tensor-parallel degrees (default: the powers of two up to a node that divide the
    heads) for the fewest chips meeting ``slo`` at the peak of ``demand``; with ``splits``
    ((prefill, decode) replicas per unit), each TP's disaggregated units too."""
    splits = tuple(dict.fromkeys(splits))  # a split given twice is searched once
    for p, d in splits:
        if not (isinstance(p, int) and isinstance(d, int) and p >= 1 and d >= 1):
            raise WorkloadError(
                f"plan: --split {p}:{d}: a unit needs >= 1 prefill and >= 1 decode replica"
            )
    m = serving.model
    base = load_system(chip, 1, list(sets))
    node = base.chips_per_node
    if tps is None:
        tps = tuple(t for t in (1, 2, 4, 8, 16) if t <= max(1, node) and m.n_heads % t == 0)
    options = []
    for tp in tps:
        for split in ((0, 0), *splits):
            p, d = split
            w = replace(serving, tp=tp, replicas=max(1, p + d), prefill_replicas=p)
            system = load_system(chip, tp * w.replicas, list(sets))
            try:
                w.validate()
                r_max = max_rate(
                    w, system, slo, min_requests=min_requests, min_duration_s=min_duration_s,
                    cap=demand.peak_rate,
                )  # fmt: skip
            except (CapacityError, WorkloadError, ConfigError) as exc:
                options.append(TPOption.refused(tp, str(exc).split(";")[0], split))
                continue
            if r_max <= 0:
                options.append(TPOption.refused(tp, "the SLO is missed even at 0.001 req/s", split))
                continue
            n = math.ceil(demand.peak_rate / r_max)
            floor = r_max >= demand.peak_rate  # the search stopped there: one unit serves it
            at_peak = _run(w, system, demand.peak_rate / n, min_requests, slo, min_duration_s)
            at_mean = _run(w, system, demand.mean_rate / n, min_requests, slo, min_duration_s)
            options.append(
                TPOption(
                    tp=tp,
                    max_rate_per_replica=r_max,
                    replicas=n,
                    chips=n * w.replicas * tp,
                    at_peak=at_peak,
                    at_mean=at_mean,
                    max_rate_is_floor=floor,
                    prefill_replicas=p,
                    decode_replicas=d,
                )  # fmt: skip
            )
    c = base.chip
    price = usd_per_chip_hour
    if price is None:
        price = getattr(c, "usd_per_hour", None)
    return Plan(
        demand=demand,
        slo=slo,
        chip=c.name,
        options=tuple(options),
        usd_per_chip_hour=price,
        mean_output_tokens=serving.output.mean,
        model=serving.model.name,
        runtime=serving.runtime.name,
        speculation=""
        if serving.spec is None
        else f"{serving.spec.tokens} drafts ({serving.spec.draft_name}), "
        f"{serving.spec.tokens_per_step:g} tokens a step",
        spec_fields={
            k: v
            for k, v in serving.describe().items()
            if k in ("spec_tokens", "draft", "acceptance", "accepted_length", "tokens_per_step")
        },  # fmt: skip
    )
