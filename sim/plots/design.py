"""The design search's chart: every feasible design's cost against its throughput, the Pareto
front and the chosen design marked, the reference chip for scale."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sim.plots.charts import _new_figure, _save


def pareto_plot(result: Any, path: Path) -> None:
    """Cost per chip (x) against throughput per chip over the reference (y); colour: energy."""
    import math

    feasible = [e for e in result.evaluations if e.feasible]
    fig = _new_figure(7.0, 4.6)
    ax = fig.add_subplot(1, 1, 1)

    def per_j(e) -> float:
        return math.exp(sum(math.log(v) for v in e.per_j.values()) / len(e.per_j))

    points = ax.scatter([e.cost_usd for e in feasible],
                        [e.relative_throughput for e in feasible],
                        c=[per_j(e) for e in feasible], s=10, cmap="viridis", alpha=0.6)  # fmt: skip
    front = result.pareto
    ax.plot([e.cost_usd for e in front], [e.relative_throughput for e in front], "o",
            mfc="none", mec="black", ms=7, label="Pareto front (throughput, cost, energy)")  # fmt: skip
    best = result.best
    ax.plot([best.cost_usd], [best.relative_throughput], "*", color="crimson", ms=16,
            label=f"best {result.spec.objective}")  # fmt: skip
    ax.plot([result.reference_cost], [1.0], "s", color="grey", ms=9,
            label=f"{result.spec.reference} (reference)")  # fmt: skip
    ax.set_xlabel("manufacturing cost per chip (US$)")
    ax.set_ylabel(f"throughput per chip / {result.spec.reference}")
    ax.set_title(f"{result.spec.name}: {len(feasible)} feasible designs", fontsize=10)
    fig.colorbar(points, ax=ax, label="units per joule (geometric mean)")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    _save(fig, path)
