"""``roofsim design SPEC.toml -o DIR``: the chip a workload mix wants, under budgets."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from sim.cli.args import dumps, positive_int


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``design`` to roofsim's subcommands."""
    p = sub.add_parser(
        "design", help="search chip designs under area, power and cost budgets for a workload mix"
    )
    p.add_argument("spec", help="design spec TOML (benchmarks/designs/14nm-inference.toml)")
    p.add_argument("-o", "--output", required=True, help="folder for best.toml, pareto.csv, plot")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="processes to evaluate each generation in (default: every core)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p


def summary(result) -> dict:
    """The best design against the reference, as JSON."""
    best = result.best
    spec = result.spec
    return {
        "design": spec.name,
        "objective": spec.objective,
        "reference": spec.reference,
        "score": best.score,
        "relative_throughput": best.relative_throughput,
        "values": best.values,
        "die_area_mm2": best.die_area_mm2,
        "per_die_mm2": best.per_die_mm2,
        "cost_usd": best.cost_usd,
        "reference_cost_usd": result.reference_cost,
        "tdp_w": best.tdp_w,
        "memory_gb": best.memory_gb,
        "workloads": {
            w.label: {
                "per_chip_per_s": best.throughput[w.label],
                "reference_per_chip_per_s": result.reference[w.label][0],
                "per_j": best.per_j[w.label],
                "reference_per_j": result.reference[w.label][1],
                "latency_s": best.latency_s[w.label],
                "slo_s": w.slo_s,
            }
            for w in spec.workloads
        },
        "designs_evaluated": len(result.evaluations),
        "pareto_designs": len(result.pareto),
        "overrides": result.sets,
    }


def write_outputs(result, out: Path) -> None:
    """``best.toml``, ``pareto.csv``, ``summary.json`` and ``pareto.png`` in ``out``."""
    from hardware import ConfigError
    from sim.studies.design import best_toml, columns, row

    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "best.toml").write_text(best_toml(result))
        labels = [w.label for w in result.spec.workloads]
        with (out / "pareto.csv").open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(columns(result))
            for e in result.pareto:
                writer.writerow(row(e, labels))
        (out / "summary.json").write_text(dumps(summary(result), indent=1) + "\n")
    except OSError as exc:
        raise ConfigError(f"-o {out}: cannot write ({exc.strerror})") from None
    from sim.plots.design import pareto_plot

    pareto_plot(result, out / "pareto.png")


def run(args: argparse.Namespace) -> int:
    from sim.studies.design import load_spec, search

    spec = load_spec(args.spec)
    result = search(spec, progress=not args.quiet, workers=args.workers)
    out = Path(args.output)
    write_outputs(result, out)
    s = summary(result)
    if args.json:
        print(dumps(s))
        return 0
    values = ", ".join(
        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in s["values"].items()
    )
    lines = [
        f"{spec.name}: {spec.objective} {s['score']:.2f}x {spec.reference} "
        f"({s['designs_evaluated']} designs, {s['pareto_designs']} on the Pareto front)",
        f"  {values}",
        f"  die {s['die_area_mm2']:.0f} mm2, cost ${s['cost_usd']:,.0f} "
        f"({spec.reference}: ${s['reference_cost_usd']:,.0f}), TDP {s['tdp_w']:.0f} W, "
        f"memory {s['memory_gb']:.0f} GB",
        f"  {'workload':<28}{'per chip/s':>12}{'vs ref':>8}{'per J':>10}{'vs ref':>8}"
        f"{'latency':>10}{'SLO':>9}",
    ]
    for label, w in s["workloads"].items():
        slo = f"{w['slo_s'] * 1e3:.0f} ms" if w["slo_s"] else "-"
        lines.append(
            f"  {label:<28}{w['per_chip_per_s']:>12,.1f}"
            f"{w['per_chip_per_s'] / w['reference_per_chip_per_s']:>8.2f}"
            f"{w['per_j']:>10.3g}{w['per_j'] / w['reference_per_j']:>8.2f}"
            f"{w['latency_s'] * 1e3:>8.1f}ms{slo:>9}"
        )
    lines.append(f"wrote {out}/best.toml, pareto.csv, summary.json, pareto.png")
    print("\n".join(lines))
    return 0
