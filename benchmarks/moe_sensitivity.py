"""How the mixture-of-experts validation rows would move if the routed expert GEMMs took F times
as long: a diagnostic of where MoE's optimism sits, not a model change and not a fit.

    python benchmarks/moe_sensitivity.py [F ...] [--id PATTERN ...] [--use test|fit|all]

Each row of ``roofsim validate`` on an MoE model (``moe`` in its JSON) is run as it is (F = 1)
and with every GEMM whose op name holds ``experts`` (the routed experts' up/gate and down
projections, in inference and in training's forward, backward and recompute) costed at F times
its roofline time, everything else as it is. Prints each row's signed error (> 0: roofsim
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

_ORIGINAL = roofline.cost_gemms
_TIMES = ("time", "compute", "main_s", "reuse_s")


def _scaled(factor: float):
    def cost_gemms(ops: list, chips: Any, weights_pinned: Any = False, steady: bool = False):
        part = _ORIGINAL(ops, chips, weights_pinned, steady)
        mask = np.array(["experts" in op.name for op in ops])
        if not mask.any():
            return part
        # the time and the parts it is made of (the power model recomputes the time of an op
        # over the power limit from them), all F times as long
        out = dict(part)
        for key in _TIMES:
            if out.get(key) is None:
                continue
            t = np.asarray(out[key], dtype=float)
            m = mask.reshape((-1,) + (1,) * (t.ndim - 1)) if t.ndim else mask
            out[key] = np.where(m, t * factor, t)
        return out

    return cost_gemms


def _run(args: tuple[dict, float]) -> tuple[str, float, float | None]:
    row, factor = args
    roofline.cost_gemms = _ORIGINAL if factor == 1.0 else _scaled(factor)
    try:
        return row["id"], factor, validate.run_row(row).faster
    finally:
        roofline.cost_gemms = _ORIGINAL


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("factors", nargs="*", type=float, default=[1.25, 1.5])
    ap.add_argument("--id", action="append", default=[], help="row id glob (repeatable)")
    ap.add_argument("--use", choices=("test", "fit", "all"), default="test")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    if any(not f > 0 for f in args.factors):
        print("moe_sensitivity: each F must be > 0", file=sys.stderr)
        return 2
    factors = [1.0] + [f for f in args.factors if f != 1.0]
    rows = [r for r in validate.load_rows() if validate._is_moe(r) or r["kind"] == "moe-kernel"]
    rows = [r for r in rows if r["kind"] != "moe-kernel"]
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
        print(f"{r['id'][:66]:66s} "
              + " ".join("skipped".rjust(8) if e is None else f"{e * 100:+7.1f}%" for e in cells))  # fmt: skip
    print(f"{len(rows)} rows ({args.use}); error = predicted / measured - 1 signed by speed")
    for f in factors:
        errs = [got[(r["id"], f)] for r in rows if got[(r["id"], f)] is not None]
        if errs:
            print(f"  F={f:g}: median signed {statistics.median(errs) * 100:+.1f} %, median |err| "
                  f"{statistics.median(abs(e) for e in errs) * 100:.1f} %  ({len(errs)} rows)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
