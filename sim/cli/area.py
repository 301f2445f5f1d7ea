"""``roofsim area CHIP``: die area, manufacturing cost and power of a chip, block by block."""

from __future__ import annotations

import argparse

from sim.cli.args import dumps


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``area`` to roofsim's subcommands."""
    p = sub.add_parser("area", help="die area, cost and power of a chip, block by block")
    p.add_argument("chip", help="chip preset slug or chip TOML")
    p.add_argument(
        "--set", action="append", default=[], metavar="PATH=VALUE",
        help="override a field, repeatable (silicon.node=n5, compute.peak.bf16=500TFLOP/s)",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def report(system) -> dict:
    """The area, cost and power of ``system``'s chip as one JSON-ready dict."""
    from hardware.area import estimate_area
    from hardware.cost import estimate_cost
    from sim.cost.simulate import matmul_fractions

    chip = system.chip
    area = estimate_area(chip, system)
    cost = estimate_cost(area, chip)
    fractions = matmul_fractions(system)
    return {
        **area.to_dict(),
        **cost.to_dict(),
        "tdp_w": chip.tdp_watts,
        "power": {
            "limit_w": chip.power_limit_watts,
            "idle_w": chip.idle_watts,
            "matrix_pj_per_flop": chip.matrix_pj_per_flop,
            "steady_matmul_fraction": fractions[1] if fractions else None,
            "derived": chip.sources.get("power_derived", ""),
        },
        "overrides": list(system.overrides),
    }


def run(args: argparse.Namespace) -> int:
    from hardware import load_system

    system = load_system(args.chip, 1, args.set)
    r = report(system)
    if args.json:
        print(dumps(r))
        return 0
    lo, hi = r["die_area_band_mm2"]
    published = r["published_die_area_mm2"]
    lines = [
        f"{r['chip']} on {r['node']}: {r['die_area_mm2']:.0f} mm2 (band {lo:.0f}-{hi:.0f})"
        + (f", published {published:g} mm2" if published else "")
        + (f"; {r['dies']} dies of {r['per_die_mm2']:.0f} mm2" if r["dies"] > 1 else ""),
        "" if r["fits_reticle"] else f"  over the {r['reticle_mm2']:.0f} mm2 reticle per die",
        f"{'block':<20}{'mm2':>8}{'share':>8}",
    ]
    for name, mm2 in r["blocks_mm2"].items():
        lines.append(f"{name:<20}{mm2:>8.1f}{mm2 / r['die_area_mm2']:>8.1%}")
    clo, chi = r["cost_band_usd"]
    lines += [
        "",
        f"cost ${r['cost_usd']:,.0f} (band ${clo:,.0f}-${chi:,.0f}): dies ${r['die_usd']:,.0f} "
        f"({r['dies_per_wafer']:.0f} per wafer, {r['yield']:.0%} sellable), memory "
        f"${r['memory_usd']:,.0f}, package ${r['package_usd']:,.0f}, board ${r['board_usd']:,.0f}",
    ]
    p = r["power"]
    if p["limit_w"]:
        steady = p["steady_matmul_fraction"]
        lines.append(
            f"power: {p['limit_w']:.0f} W limit, {p['idle_w']:.0f} W idle, "
            f"{p['matrix_pj_per_flop']:.3f} pJ per 16-bit matrix FLOP"
            + (f", steady 8192^3 GEMM at {steady:.2f} of peak" if steady else "")
        )
    print("\n".join(lines))
    return 0
