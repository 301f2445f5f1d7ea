"""Throughput and latency against offered load for one serving replica; writes the plot.

Llama-3 8B on one H100 (prompts lognormal median 500, answers exponential mean 250): as the
Poisson rate rises, throughput follows it and then saturates, while p99 TTFT and latency climb.

python benchmarks/serving_curve.py [-o docs/img/serving-curve.png]
Exits non-zero if throughput does not saturate or latency does not climb.
"""

from __future__ import annotations

import argparse
import sys


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", default="docs/img/serving-curve.png")
    ap.add_argument("--duration", type=float, default=120.0, help="seconds of arrivals per rate")
    args = ap.parse_args()

    import numpy as np

    from hardware import load_system
    from sim.engine.serve import simulate_serving
    from workloads import load_model
    from workloads.serving import LengthDist, Serving

    model = load_model("llama-3-8b")
    system = load_system("h100-sxm", 1)
    rates = [1, 2, 4, 8, 12, 16, 20, 24, 28, 32, 40, 48, 64]
    rows = []
    print(f"{'rate':>6}{'req/s':>8}{'tok/s':>9}{'p99 TTFT':>10}{'p99 TPOT':>10}{'p99 lat':>9}"
          f"{'MFU':>7}{'MBU':>7}{'batch':>7}")  # fmt: skip
    for rate in rates:
        w = Serving(
            model=model, rate=float(rate), duration_s=args.duration, seed=0,
            prompt=LengthDist.parse("lognormal:500,0.8", "p", model.max_seq),
            output=LengthDist.parse("exp:250", "o", model.max_seq),
        )  # fmt: skip
        r = simulate_serving(w, system)
        ttft, tpot, lat = (float(np.percentile(x, 99)) for x in (r.ttft, r.tpot, r.latency))
        rows.append((rate, r.requests_per_s, r.tokens_per_s, ttft, tpot, lat, r.mfu))
        print(f"{rate:>6}{r.requests_per_s:>8.2f}{r.tokens_per_s:>9,.0f}{ttft:>10.3f}{tpot:>10.4f}"
              f"{lat:>9.1f}{r.mfu:>7.1%}{r.mbu:>7.1%}{r.mean_decode_batch:>7.0f}")  # fmt: skip

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r[0] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(x, [r[1] for r in rows], "o-", color="tab:blue", label="throughput")
    ax.plot(x, x, ":", color="gray", label="offered load")
    ax.set_xlabel("arrival rate (requests/s, Poisson)")
    ax.set_ylabel("throughput (requests/s)", color="tab:blue")
    ax2 = ax.twinx()
    ax2.semilogy(x, [r[5] for r in rows], "s-", color="tab:red", label="p99 latency")
    ax2.semilogy(x, [r[3] for r in rows], "^--", color="tab:orange", label="p99 TTFT")
    ax2.set_ylabel("seconds (log)", color="tab:red")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper left", fontsize=8)
    ax.set_title("Llama-3 8B on 1x H100: roofsim serve, load sweep", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    plt.close(fig)
    print(f"wrote {args.output}")
    tput = [r[1] for r in rows]
    lat = [r[5] for r in rows]
    saturated = tput[-1] < 0.6 * x[-1]
    climbs = lat[-1] > 5 * lat[0]
    return 0 if saturated and climbs else 1


if __name__ == "__main__":
    sys.exit(main())
