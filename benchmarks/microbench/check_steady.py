"""Hold roofsim's FlashAttention-2 rate and power between kernels against a run's steady.csv.

    python benchmarks/microbench/check_steady.py DIR [--chip h100-sxm]
    python benchmarks/microbench/check_steady.py --predict [--chip h100-sxm]

``microbench.py --sections steady`` runs PyTorch SDPA's flash backend (FlashAttention-2) on
an idle chip, first call by call (``phase`` burst), then back to back for seconds (``phase``
sustained), without and then with a causal mask, sampling nvidia-smi's SM clock and power once
a second with the TFLOP/s of the calls finished since the last sample. This script costs the
same attention op as roofsim's lowering does (kernel ``fa2``), at the burst clock and at the
power-limited one, and prints, for each mask: the burst calls' median rate against the burst
prediction, the median of the sustained run's second half against the power-limited one, and
the clock and power the chip held then. The question it answers
(``benchmarks/research/fa2-rate-absorber-2026-12-06.md``): FA2 measured alone runs at 364.8
TFLOP/s (0.369 of the H100's dense bf16 peak; ``mma_sync_fraction`` 0.472 reproduces it), the
preset keeps 0.422 because end-to-end rows run slower; if FA2 loses its rate to the power limit
once the chip is hot, the power model should carry it. The section's last rows (``kernel``
matmul_gap) are an 8192^3 bf16 matmul followed by a 1, 5 or 20 ms host gap: their measured
average power is held against roofsim's, the chip's idle power plus the matmul's dynamic energy
over the measured cycle (the energy rows' question in the same note). Nothing is fitted here.
``--predict`` prints the predictions for the section's shapes first.
"""

from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

from microbench_grid import check_main, parsed_rows  # noqa: E402

from hardware import System, load_system  # noqa: E402
from sim.cost.roofline import cost_ops  # noqa: E402
from workloads.build import Builder  # noqa: E402
from workloads.ops import Attention  # noqa: E402

#: microbench.py section_steady's shape on a GPU: batch, heads, seq, head dim
SHAPE = (4, 32, 16384, 128)


def rates(shape: tuple[int, int, int, int], causal: bool, system: System) -> tuple[float, float]:
    """roofsim's TFLOP/s (the microbenchmark's FLOP count: 4 b h s^2 d, halved when causal) of
    one FA2 forward at the burst clock and at the power-limited one."""
    b, h, s, d = shape
    spec = Attention(batch=b, n_q_heads=h, n_kv_heads=h, q_len=s, kv_len=s, qk_dim=d, v_dim=d,
                     causal=causal, act_bytes=2.0, kv_bytes_per_token=4.0 * d)  # fmt: skip
    op = Builder("bf16", 2.0, 2.0, "fa2").attention("attention", spec)
    flop = 4.0 * b * h * s * s * d / (2 if causal else 1)
    burst = cost_ops([op], system, steady=False)[0].time_s
    held = cost_ops([op], system, steady=True)[0].time_s
    return flop / burst / 1e12, flop / held / 1e12


def _number(row: dict[str, str], key: str) -> float | None:
    """The row's ``key`` as a number; None where nvidia-smi or the run gave none (empty,
    None, N/A or any bracketed reply such as [Not Supported])."""
    text = (row.get(key) or "").strip()
    if text in ("", "None", "N/A") or text.startswith("["):
        return None
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{key} must be a non-negative number, got {text!r}")
    return value


GAPS = {"gap_1ms": 1e-3, "gap_5ms": 5e-3, "gap_20ms": 20e-3}


def _row(row: dict[str, str]) -> tuple[tuple, dict]:
    """(run key, sample) of a ``steady.csv`` row, checked: the key is ("fa2", shape, causal)
    or ("gap", n, gap seconds)."""
    kernel, phase = row.get("kernel"), row.get("phase")
    if kernel not in ("sdpa_flash", "matmul_gap"):
        raise ValueError(f"kernel must be sdpa_flash or matmul_gap, got {kernel!r}")
    shape = tuple(int(row[k]) for k in ("batch", "heads", "seq", "head_dim"))
    if min(shape) < 1:
        raise ValueError(f"batch, heads, seq, head_dim must be >= 1, got {shape}")
    if row.get("dtype") != "bfloat16":
        raise ValueError(f"dtype must be bfloat16 (a GPU run's), got {row.get('dtype')!r}")
    if row["causal"] not in ("True", "False"):
        raise ValueError(f"causal must be True or False, got {row['causal']!r}")
    phases = ("idle", "burst", "sustained") if kernel == "sdpa_flash" else tuple(GAPS)
    if phase not in phases:
        raise ValueError(f"phase of {kernel} must be one of {', '.join(phases)}, got {phase!r}")
    sample = {"phase": phase, "tflops": _number(row, "tflops"),
              "mhz": _number(row, "clocks_sm_mhz"), "watts": _number(row, "power_draw_w")}  # fmt: skip
    if kernel == "matmul_gap":
        return ("gap", shape[1], GAPS[phase]), sample
    return ("fa2", shape, row["causal"] == "True"), sample


def _median(values: list) -> float | None:
    got = [v for v in values if v is not None]
    return statistics.median(got) if got else None


def check(path: Path, chip: str) -> list[dict]:
    """One record per FA2 mask (the burst calls' and the sustained run's late rates against
    roofsim's) and per matmul duty cycle (the power drawn against roofsim's idle power plus the
    matmul's dynamic energy over the measured cycle)."""
    system = load_system(chip, 1)
    runs: dict[tuple, list[dict]] = {}
    for _, (key, sample) in parsed_rows(path, _row):
        runs.setdefault(key, []).append(sample)
    if not runs:
        raise ValueError(f"{path} has no rows: the steady section did not run (see run.log)")
    out = []
    for key, samples in runs.items():
        if key[0] == "gap":
            out.append(_gap_record(key[1], key[2], samples, system, path))
            continue
        _, shape, causal = key
        bursts = [s["tflops"] for s in samples if s["phase"] == "burst" and s["tflops"]]
        timed = [s for s in samples if s["phase"] == "sustained" and s["tflops"]]
        if not bursts or not timed:
            raise ValueError(f"{path}: causal={causal} needs burst and sustained timed rows")
        tail = timed[len(timed) // 2 :]
        burst, held = rates(shape, causal, system)
        measured = statistics.median(bursts)
        late = statistics.median(s["tflops"] for s in tail)
        out.append({
            "kind": "fa2", "shape": shape, "causal": causal, "burst_measured": measured,
            "late_measured": late, "burst_pred": burst, "steady_pred": held,
            "late_n": len(tail), "mhz": _median([s["mhz"] for s in tail]),
            "watts": _median([s["watts"] for s in tail]),
            "log_error": math.log(measured / burst), "log_error_steady": math.log(late / held),
        })  # fmt: skip
    return out


def _gap_record(n: int, gap_s: float, samples: list[dict], system: System, path: Path) -> dict:
    """A duty cycle's measured power (the median of its samples after the first) against
    roofsim's: idle power plus the n^3 bf16 matmul's dynamic energy over the measured cycle."""
    late = samples[1:] if len(samples) > 1 else samples
    timed = [s for s in late if s["tflops"] and s["watts"] is not None]
    if not timed:
        raise ValueError(
            f"{path}: the {gap_s * 1e3:g} ms duty cycle has no timed sample with power"
        )
    flop = 2.0 * n**3
    period = statistics.median(flop / (s["tflops"] * 1e12) for s in timed)
    op = Builder("bf16", 2.0, 2.0).gemm("matmul", "gemm", n, n, n)
    (cost,) = cost_ops([op], system, steady=False)
    idle = system.chip.idle_watts or 0.0
    watts = statistics.median(s["watts"] for s in timed)
    predicted = idle + cost.energy_j / period
    return {"kind": "gap", "gap_ms": gap_s * 1e3, "period_ms": period * 1e3,
            "busy_ms": cost.time_s * 1e3, "watts": watts, "watts_pred": predicted,
            "idle_w": idle, "log_error": math.log(watts / predicted),
            "mhz": _median([s["mhz"] for s in timed])}  # fmt: skip


def predict(chip: str) -> None:
    """roofsim's FA2 TFLOP/s for the section's GPU shape, both masks and clocks."""
    system = load_system(chip, 1)
    print(f"{chip}: roofsim FA2 TFLOP/s at the burst clock / at the power-limited clock, "
          f"batch {SHAPE[0]}, {SHAPE[1]} heads of {SHAPE[3]}, seq {SHAPE[2]}")  # fmt: skip
    for causal in (False, True):
        burst, held = rates(SHAPE, causal, system)
        print(f"  {'causal' if causal else 'full  '} {burst:7.1f} / {held:7.1f}")
    op = Builder("bf16", 2.0, 2.0).gemm("m", "gemm", 8192, 8192, 8192)
    (cost,) = cost_ops([op], system, steady=False)
    idle = system.chip.idle_watts or 0.0
    print(f"  8192^3 bf16 matmul {cost.time_s * 1e3:.2f} ms, {cost.energy_j:.2f} J dynamic; average "
          f"W with a host gap after each (cycle = matmul + gap; idle {idle:.0f} W):")  # fmt: skip
    for gap in GAPS.values():
        print(f"    {gap * 1e3:4g} ms gap: {idle + cost.energy_j / (cost.time_s + gap):6.1f} W")


def _report(records: list[dict]) -> None:
    fa2 = [r for r in records if r["kind"] == "fa2"]
    gaps = [r for r in records if r["kind"] == "gap"]
    if fa2:
        print("FA2 TFLOP/s; err: log of measured / roofsim (> 0: roofsim slower), against the "
              "burst prediction (single calls from idle) and the power-limited one (the "
              "sustained run's second half, n samples)")  # fmt: skip
        print(f"{'mask':7s} {'burst':>8s} {'roofsim':>8s} {'err':>7s} {'late':>8s} {'roofsim':>8s} "
              f"{'err st':>7s} {'n':>3s} {'MHz':>6s} {'W':>6s}")  # fmt: skip
    for r in fa2:
        mhz = "-" if r["mhz"] is None else f"{r['mhz']:.0f}"
        watts = "-" if r["watts"] is None else f"{r['watts']:.0f}"
        print(f"{'causal' if r['causal'] else 'full':7s} {r['burst_measured']:8.1f} "
              f"{r['burst_pred']:8.1f} {r['log_error']:+7.3f} {r['late_measured']:8.1f} "
              f"{r['steady_pred']:8.1f} {r['log_error_steady']:+7.3f} {r['late_n']:3d} "
              f"{mhz:>6s} {watts:>6s}")  # fmt: skip
    if gaps:
        print("matmul + host gap: average power, W; roofsim = idle + the matmul's dynamic "
              "energy / the measured cycle; err: log of measured / roofsim")  # fmt: skip
        print(f"{'gap ms':>7s} {'cycle ms':>9s} {'busy ms':>8s} {'W':>7s} {'roofsim':>8s} "
              f"{'idle':>6s} {'err':>7s}")  # fmt: skip
    for r in gaps:
        print(f"{r['gap_ms']:7g} {r['period_ms']:9.2f} {r['busy_ms']:8.2f} {r['watts']:7.1f} "
              f"{r['watts_pred']:8.1f} {r['idle_w']:6.0f} {r['log_error']:+7.3f}")  # fmt: skip


main = check_main("check_steady", "steady", __doc__, predict, check, _report)


if __name__ == "__main__":
    raise SystemExit(main())
