"""``roofsim sweep SPEC.toml -o results.csv``: the command-line face of ``sim.studies.sweep`` (lazy imports)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sim.cli.args import add_html_arg, check_html, dumps, positive_int, write_html


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="sweep spec TOML (docs/sweeps.md)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="results CSV")
    p.add_argument(
        "--resume", action="store_true", help="keep the rows in FILE and compute only the rest"
    )
    p.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    p.add_argument(
        "--executor", choices=("local", "dask"), default="local",
        help="local processes (default) or a Dask cluster",
    )  # fmt: skip
    p.add_argument(
        "--scheduler", default=None, metavar="ADDRESS",
        help="Dask scheduler address (default: a local Dask cluster)",
    )  # fmt: skip
    p.add_argument(
        "--workers", type=positive_int, default=None,
        help="processes (local) or workers of a local Dask cluster (default: every core)",
    )  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    add_html_arg(p)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``sweep`` to roofsim's subcommands."""
    p = sub.add_parser("sweep", help="evaluate a design-space sweep (TOML spec) into a CSV")
    add_arguments(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Run the sweep ``args`` describe; print a one-line summary (or JSON) to stdout."""
    from sim.studies.sweep import load_spec, run_sweep

    spec = load_spec(args.spec)
    summary = run_sweep(
        spec,
        args.output,
        resume=args.resume,
        force=args.force,
        executor=args.executor,
        workers=args.workers,
        scheduler=args.scheduler,
        progress=not args.no_progress,
    )
    if args.json:
        print(dumps(summary.to_dict()))
    else:
        resumed = f", {summary.n_resumed:,} already there" if summary.n_resumed else ""
        print(
            f"wrote {summary.output}: {summary.n_computed:,} of {summary.n_points:,} points"
            f"{resumed} ({summary.n_errors:,} errors) in {summary.elapsed_s:.2f} s, "
            f"{summary.points_per_s:,.0f} points/s"
        )

    def page() -> str:
        from pathlib import Path

        from sim.plots.charts import read_rows
        from sim.plots.report import sweep_report

        return sweep_report(spec, read_rows(args.output, "-o"),
                            spec_text=Path(args.spec).read_text(), summary=summary,
                            command=getattr(args, "argv", None))  # fmt: skip

    write_html(args, page)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sim.cli.sweep``: the same command without the roofsim front end."""
    parser = argparse.ArgumentParser(prog="roofsim sweep", description=__doc__)
    add_arguments(parser)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = ["sweep", *argv]
    from hardware.chip import ConfigError
    from hardware.units import UnitError
    from sim.cost.result import CapacityError
    from workloads.ops import WorkloadError

    try:
        check_html(args)
        return run(args)
    except (ConfigError, WorkloadError, CapacityError, UnitError) as exc:
        print(f"roofsim: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
