"""What the scripts that check microbench.py's results share: its point grids, read from its
source as literals (``MOE_SHAPES``, ``CONV_SHAPES``: microbench.py needs PyTorch, the checks do
not), and their command line."""

from __future__ import annotations

import argparse
import ast
import csv
import statistics
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

MICROBENCH = Path(__file__).resolve().parent / "microbench.py"
LEGEND = "us; err: log of roofsim / measured at the burst clock, st: at the power-limited one"


def read_constants(*names: str) -> tuple[Any, ...]:
    """The values of microbench.py's module-level ``names``, in order."""
    found = {}
    for node in ast.parse(MICROBENCH.read_text()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            name = getattr(node.targets[0], "id", "")
            if name in names:
                found[name] = ast.literal_eval(node.value)
    missing = [n for n in names if n not in found]
    if missing:
        raise ValueError(f"{MICROBENCH} defines no {', '.join(missing)} (a module-level literal)")
    return tuple(found[n] for n in names)


def parsed_rows(
    path: Path,
    parse: Callable[[dict[str, str]], Any],
    errors: tuple[type[Exception], ...] = (KeyError, TypeError, ValueError),
    describe: Callable[[Exception], str] = str,
) -> Iterator[tuple[dict[str, str], Any]]:
    """Each row of the CSV at ``path`` with ``parse(row)``; a parse error (one of ``errors``)
    raised as a one-line ValueError naming the file and the line (``describe`` words it)."""
    with open(path) as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            try:
                got = parse(row)
            except errors as exc:
                raise ValueError(f"{path} line {line}: {describe(exc)}") from None
            yield row, got


def check_cli(
    argv: list[str] | None,
    *,
    tool: str,
    section: str,
    description: str,
    predict: Callable[[str], None],
    check: Callable[[Path, str], list[dict]],
    report: Callable[[list[dict]], None],
) -> int:
    """A check script's command line: ``DIR`` (a microbench.py --out directory holding
    ``<section>.csv``) or ``--predict``, with ``--chip``; every error one line, exit code 2."""
    from hardware import ConfigError  # the caller put the repository on sys.path

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("dir", nargs="?", help=f"a microbench.py --out directory holding {section}.csv")
    ap.add_argument("--chip", default="h100-sxm", help="the chip preset the run was on")
    ap.add_argument("--predict", action="store_true", help="roofsim's times for the grid")
    args = ap.parse_args(argv)
    try:
        if args.predict:
            predict(args.chip)
            return 0
        if not args.dir:
            print(f"{tool}: give a microbench.py --out directory, or --predict", file=sys.stderr)
            return 2
        path = Path(args.dir) / f"{section}.csv"
        if not path.is_file():
            print(f"{tool}: {path} not found; run microbench.py --sections {section} --out "
                  f"{args.dir}", file=sys.stderr)  # fmt: skip
            return 2
        report(check(path, args.chip))
    except (ConfigError, ValueError, FileNotFoundError, PermissionError) as exc:
        print(f"{tool}: {exc}", file=sys.stderr)
        return 2
    return 0


def check_main(
    tool: str,
    section: str,
    doc: str,
    predict: Callable[[str], None],
    check: Callable[[Path, str], list[dict]],
    report: Callable[[list[dict]], None],
) -> Callable[[list[str] | None], int]:
    """A check script's ``main(argv)``: ``check_cli`` with its parts, its ``--help`` the first
    line of its docstring ``doc``."""

    def main(argv: list[str] | None = None) -> int:
        return check_cli(argv, tool=tool, section=section, description=doc.split("\n")[0],
                         predict=predict, check=check, report=report)  # fmt: skip

    return main


def print_medians(groups: list[tuple[str, list[dict]]]) -> None:
    """Each labelled group's median log error against the burst and the power-limited
    prediction (records' ``log_error`` and ``log_error_steady``); empty groups are left out."""
    print("median log error against the burst / power-limited prediction (> 0: roofsim slower):")
    for label, got in groups:
        if got:
            burst = statistics.median(r["log_error"] for r in got)
            held = statistics.median(r["log_error_steady"] for r in got)
            print(f"  {label} {burst:+.3f} / {held:+.3f}  n={len(got):3d}")


def print_with_without(
    records: list[dict], keys: tuple[tuple[str, str, int], ...], tag: str
) -> None:
    """Each record's key columns (``keys``: header, field, width), its measured and roofsim's
    microseconds and log error with and without the mechanism ``tag`` names (the records'
    ``predicted_s`` / ``log_error`` and ``no_<tag>_s`` / ``log_error_no_<tag>``), then the
    medians."""
    without = f"no_{tag}_s"
    print(f"us; err: log of roofsim / measured (> 0: roofsim slower), with and without the {tag}")
    print(" ".join(f"{h:>{w}s}" for h, _, w in keys)
          + f" {'measured':>9s} {'roofsim':>9s} {'err':>7s} {'no ' + tag:>9s} {'err':>7s}")  # fmt: skip
    for r in records:
        print(" ".join(f"{r[f]:{w}d}" for _, f, w in keys)
              + f" {r['measured_s'] * 1e6:9.1f} {r['predicted_s'] * 1e6:9.1f} "
              f"{r['log_error']:+7.3f} {r[without] * 1e6:9.1f} "
              f"{r['log_error_no_' + tag]:+7.3f}")  # fmt: skip
    print(
        f"median log error: {statistics.median(r['log_error'] for r in records):+.3f} with the "
        f"{tag}, {statistics.median(r['log_error_no_' + tag] for r in records):+.3f} without"
    )
