"""Hold roofsim's GEMM tile quantisation at decode batch edges against a run's gemm.csv.

    python benchmarks/microbench/check_edge.py DIR [--chip h100-sxm]
    python benchmarks/microbench/check_edge.py --predict [--chip h100-sxm]

``microbench.py --sections gemm --gemm-groups batch_edge`` times bf16 GEMMs of decode shapes
(M = the batch, N x K a layer's weight) at M around the tile edges, 120..144, 240..288 and
504..544. Issue 22's open question: roofsim's decode throughput falls where one more sequence
opens a new row of output tiles (A100 Llama-2-7B 128 -> 129: -19.7 %; Hopper -4..-12 %,
``benchmarks/decode_sawtooth.py``), and no measurement says whether cuBLAS falls there too.
For every (N, K) this prints each M's measured and predicted time (burst clock, as the
validation's GEMM rows) and, at each step M -> M', the measured and predicted time ratio
t(M') / t(M), with the log error of the prediction (> 0: roofsim slower). Nothing is fitted.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

from microbench_grid import check_main, parsed_rows, read_constants  # noqa: E402

from hardware import System, load_system  # noqa: E402
from sim.cost.roofline import cost_ops  # noqa: E402
from workloads.build import Builder  # noqa: E402


def predicted(m: int, n: int, k: int, system: System) -> float:
    """Seconds of a bf16 M x N x K GEMM (activations M x K, weights K x N) at the burst clock."""
    op = Builder("bf16", 2.0, 2.0).gemm("gemm", "gemm", m, n, k)
    return cost_ops([op], system, steady=False)[0].time_s


def _edge_row(row: dict[str, str]) -> tuple[int, int, int, float] | None:
    """(n, k, m, seconds) of a batch_edge row, checked; None for the other groups' rows."""
    if row.get("group") != "batch_edge":
        return None
    if row.get("dtype") != "bf16":
        raise ValueError(f"dtype must be bf16 (a GPU run's), got {row.get('dtype')!r}")
    m, n, k = (int(row[x]) for x in ("m", "n", "k"))
    if min(m, n, k) < 1:
        raise ValueError(f"m, n, k must be >= 1, got {(m, n, k)}")
    t = float(row["time_s"])
    if not 0.0 < t < math.inf:
        raise ValueError(f"time_s must be a positive number, got {row['time_s']!r}")
    return n, k, m, t


def check(path: Path, chip: str) -> list[dict]:
    """One record per batch_edge row: measured and predicted seconds, and the step from the
    previous M of the same (N, K)."""
    system = load_system(chip, 1)
    shapes: dict[tuple[int, int], dict[int, float]] = {}
    for _, got in parsed_rows(path, _edge_row):
        if got is not None:
            n, k, m, t = got
            shapes.setdefault((n, k), {})[m] = t
    if not shapes:
        raise ValueError(f"{path} has no batch_edge rows: run microbench.py --sections gemm "
                         "--gemm-groups batch_edge")  # fmt: skip
    out = []
    for (n, k), times in shapes.items():
        prev = None
        for m in sorted(times):
            pred = predicted(m, n, k, system)
            rec = {"n": n, "k": k, "m": m, "measured_s": times[m], "predicted_s": pred,
                   "log_error": math.log(pred / times[m]), "step": None}  # fmt: skip
            if prev is not None:
                measured_step = times[m] / prev["measured_s"]
                predicted_step = pred / prev["predicted_s"]
                rec["step"] = (prev["m"], measured_step, predicted_step)
            out.append(rec)
            prev = rec
    return out


def predict(chip: str) -> None:
    """roofsim's burst-clock times (us) over the edge grid."""
    ms, nks = read_constants("BATCH_EDGE_M", "BATCH_EDGE_NK")
    system = load_system(chip, 1)
    print(f"{chip}: roofsim us at the burst clock; rows M, columns N x K")
    print(f"{'M':>5s} " + " ".join(f"{n:>5d}x{k:<5d}" for n, k in nks))
    for m in ms:
        print(f"{m:5d} " + " ".join(f"{predicted(m, n, k, system) * 1e6:11.1f}" for n, k in nks))


def _report(records: list[dict]) -> None:
    print("us; step: t(M) / t(previous M), measured and roofsim's; err: log of roofsim / measured "
          "(> 0: roofsim slower)")  # fmt: skip
    print(f"{'N x K':>12s} {'M':>5s} {'measured':>9s} {'roofsim':>9s} {'err':>7s} "
          f"{'from':>5s} {'step':>6s} {'roofsim':>7s}")  # fmt: skip
    for r in records:
        step = ""
        if r["step"]:
            m0, got, pred = r["step"]
            step = f"{m0:5d} {got:6.3f} {pred:7.3f}"
        shape = f"{r['n']}x{r['k']}"
        print(f"{shape:>12s} {r['m']:5d} {r['measured_s'] * 1e6:9.1f} "
              f"{r['predicted_s'] * 1e6:9.1f} {r['log_error']:+7.3f} {step}")  # fmt: skip


main = check_main("check_edge", "gemm", __doc__, predict, check, _report)


if __name__ == "__main__":
    raise SystemExit(main())
