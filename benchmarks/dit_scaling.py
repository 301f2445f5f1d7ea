"""Sequence-parallel scaling of one DiT generation over 1, 2, 4, 8 chips (Ulysses vs ring).

    python benchmarks/dit_scaling.py [--model video-dit-20b] [--chip h100-sxm] [--runtime NAME]
                                     [--plot out.png] [--markdown]

Prints seconds per generation, speed-up and parallel efficiency for each method and chip
count, and the exposed communication share; --plot saves the speed-up curves; --markdown prints
the table README.md shows (tests/test_docs.py re-runs it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hardware import ConfigError, load_system  # noqa: E402
from hardware.units import format_si  # noqa: E402
from sim import simulate  # noqa: E402
from workloads.dit import DiT, load_dit  # noqa: E402
from workloads.ops import WorkloadError  # noqa: E402
from workloads.runtime import DEFAULT_DIT_RUNTIME, load_runtime  # noqa: E402

CHIPS = (1, 2, 4, 8)
METHODS = ("ulysses", "ring")


def scaling(model: str, chip: str, height: int | None, width: int | None,
            frames: int | None, steps: int | None,
            runtime: str = DEFAULT_DIT_RUNTIME) -> dict[tuple[int, str], dict]:  # fmt: skip
    m = load_dit(model)
    rows = {}
    for method in METHODS:
        for n in CHIPS:
            w = DiT(model=m, height=height or m.default_height, width=width or m.default_width,
                    frames=frames or m.default_frames, steps=steps or m.default_steps,
                    cfg=m.default_cfg, sp=n, sp_method=method,
                    runtime=load_runtime(runtime))  # fmt: skip
            r = simulate(w, load_system(chip, n), check_memory=False)
            rows[n, method] = {
                "time_s": r.time_s,
                "mfu": r.mfu,
                "comm_share": r.time_by_family.get("communication", 0.0) / r.time_s,
                "fits": r.memory.fits,
                "tokens": r.workload["latent_tokens"],
            }
    return rows


def markdown(rows: dict[tuple[int, str], dict]) -> str:
    """The README's table: seconds and speed-up per chip count, Ulysses beside ring."""
    out = ["| chips | Ulysses | speed-up | ring | speed-up |", "|---:|---:|---:|---:|---:|"]
    for n in CHIPS:
        cells = []
        for method in METHODS:
            t = rows[n, method]["time_s"]
            cells += [f"{t:,.0f} s", f"{rows[1, method]['time_s'] / t:.2f}"]
        out.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="video-dit-20b")
    p.add_argument("--chip", default="h100-sxm")
    p.add_argument("--height", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--frames", type=int)
    p.add_argument("--steps", type=int)
    p.add_argument(
        "--runtime", default=DEFAULT_DIT_RUNTIME, help="runtime preset (roofsim runtimes)"
    )
    p.add_argument("--plot", help="save the speed-up plot here (PNG/SVG)")
    p.add_argument("--markdown", action="store_true", help="print the README's table only")
    args = p.parse_args(argv)
    try:
        rows = scaling(args.model, args.chip, args.height, args.width, args.frames, args.steps,
                       args.runtime)  # fmt: skip
    except (ConfigError, WorkloadError) as exc:
        print(f"dit_scaling: error: {exc}", file=sys.stderr)
        return 2
    if args.markdown:
        print(markdown(rows))
        return 0
    tokens = rows[1, METHODS[0]]["tokens"]
    print(f"{args.model} on {args.chip}: {tokens:,} latent tokens per sample")
    print(f"{'chips':>5}  {'method':<8}{'time':>12}{'speed-up':>10}{'efficiency':>12}"
          f"{'MFU':>8}{'comm':>8}  fits")  # fmt: skip
    for method in METHODS:
        base = rows[1, method]["time_s"]
        for n in CHIPS:
            r = rows[n, method]
            s = base / r["time_s"]
            print(f"{n:>5}  {method:<8}{format_si(r['time_s'], 's'):>12}{s:>10.2f}{s / n:>12.1%}"
                  f"{r['mfu']:>8.1%}{r['comm_share']:>8.1%}  {'yes' if r['fits'] else 'no'}")  # fmt: skip
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 4))
        ax.plot(CHIPS, CHIPS, "k:", label="linear")
        for method in METHODS:
            base = rows[1, method]["time_s"]
            ax.plot(CHIPS, [base / rows[n, method]["time_s"] for n in CHIPS], "o-", label=method)
        ax.set_xlabel("chips (sequence parallel)")
        ax.set_ylabel("speed-up")
        ax.set_title(f"{args.model} on {args.chip}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
