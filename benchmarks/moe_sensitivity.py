"""How the mixture-of-experts validation rows would move if the routed expert GEMMs took F times
as long: a diagnostic of where MoE's optimism sits, not a model change and not a fit.

    python benchmarks/moe_sensitivity.py [F ...] [--id PATTERN ...] [--use test|fit|all]

Each row of ``roofsim validate`` on an MoE model (``moe`` in its JSON) is run as it is (F = 1)
and with every GEMM whose op name holds ``experts`` (the routed experts' up/gate and down
projections, in inference and in training's forward, backward and recompute) taking F times
its time but for its launch overhead, at the clock the power model gives it (the factor is
applied after the power model, so a longer op does not shed part of it by drawing less
power), everything else as it is. Prints each row's signed error (> 0: roofsim
faster than measured) under each F and the median signed and absolute error over the rows. A
row whose error does not move has no expert GEMM on its critical path (or none named so). The
rows are the test rows by default: read what moves, never take an F from here into the model
(benchmarks/research/moe-expert-gemm-sensitivity-2026-12-05.md).
"""

from __future__ import annotations

import argparse
import fnmatch
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from sim.cost import roofline  # noqa: E402
from sim.studies import validate  # noqa: E402

_GEMMS, _POWER = roofline.cost_gemms, roofline._power
_TIME, _OVERHEAD = roofline._F["time"], roofline._F["overhead"]


def _is_expert(op: Any) -> bool:
    return op.gemm is not None and "experts" in op.name


def _stretch(time: np.ndarray, overhead: np.ndarray, factor: float) -> np.ndarray:
    """The busy part of an op's time (all but its launch overhead) ``factor`` times as long."""
    return overhead + factor * (time - overhead)


def _patch(factor: float) -> None:
    """Expert GEMMs ``factor`` times as long, after the power model where the chip has one
    (scaled before it, a longer op would draw less power and shed part of the factor)."""

    def cost_gemms(ops: list, chips: Any, weights_pinned: Any = False, steady: bool = False):
        part = _GEMMS(ops, chips, weights_pinned, steady)
        mask = np.array([_is_expert(op) for op in ops])
        if chips.structure.has_power or not mask.any():
            return part
        t = np.asarray(part["time"], dtype=float)
        if t.ndim == 0:
            return part
        m = mask.reshape((-1,) + (1,) * (t.ndim - 1))
        stretched = _stretch(t, np.asarray(part["overhead"], dtype=float), factor)
        return {**part, "time": np.where(m, stretched, t)}

    def power(data: np.ndarray, ops: list, chips: Any, steady: bool) -> None:
        _POWER(data, ops, chips, steady)
        for i, op in enumerate(ops):
            if _is_expert(op):
                data[_TIME, i] = _stretch(data[_TIME, i], data[_OVERHEAD, i], factor)

    roofline.cost_gemms, roofline._power = cost_gemms, power


def _run(args: tuple[dict, float]) -> tuple[str, float, float | None]:
    row, factor = args
    if factor != 1.0:
        _patch(factor)
    try:
        return row["id"], factor, validate.run_row(row).faster
    finally:
        roofline.cost_gemms, roofline._power = _GEMMS, _POWER


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("factors", nargs="*", type=float, default=[1.25, 1.5])
    ap.add_argument("--id", action="append", default=[], help="row id glob (repeatable)")
    ap.add_argument("--use", choices=("test", "fit", "all"), default="test")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    if any(not f > 0 for f in args.factors):
        print(f"moe_sensitivity: each F must be > 0, got {args.factors}", file=sys.stderr)
        return 2
    factors = [1.0] + [f for f in args.factors if f != 1.0]
    rows = [r for r in validate.load_rows() if validate.is_moe(r)]  # LLM rows on MoE models
    if args.use != "all":
        rows = [r for r in rows if r.get("use", "test") == args.use]
    if args.id:
        rows = [r for r in rows if any(fnmatch.fnmatch(r["id"], p) for p in args.id)]
    if not rows:
        print("moe_sensitivity: no MoE rows match", file=sys.stderr)
        return 2
    jobs = [(r, f) for r in rows for f in factors]
    with ProcessPoolExecutor(args.workers) as pool:
        got = {(i, f): e for i, f, e in pool.map(_run, jobs)}
    print(f"{'row':66s} " + " ".join(f"{'F=' + format(f, 'g'):>8s}" for f in factors))
    for r in rows:
        cells = [got[(r["id"], f)] for f in factors]
        shown = ("skipped".rjust(8) if e is None else f"{e * 100:+7.1f}%" for e in cells)
        print(f"{r['id'][:66]:66s} " + " ".join(shown))
    print(f"{len(rows)} rows ({args.use}); error = predicted / measured - 1 signed by speed")
    for f in factors:
        errs = [got[(r["id"], f)] for r in rows if got[(r["id"], f)] is not None]
        if errs:
            signed = statistics.median(errs) * 100
            size = statistics.median(abs(e) for e in errs) * 100
            print(f"  F={f:g}: median signed {signed:+.1f} %, median |err| {size:.1f} %"
                  f"  ({len(errs)} rows)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
