"""Host time per kernel of eager PyTorch model code, from the project's H100 eager LLM runs.

The microbenchmark's Llama decoder (benchmarks/microbench/microbench.py section_llm) ran each
configuration twice: eagerly, every primitive launched from Python with steps issued back to
back, and as one CUDA graph. A batch-1 decode step's launches take two to three times its chip
time (the chip waits on the host, which runs ahead of it), so the eager step takes the host's
time: step time / kernels is the host time per kernel of the model code (Python, dispatch and
launch). The kernels are the ones roofsim lowers
for that code (runtime pytorch-eager-native). Printed per eager row, with roofsim's chip time
for the step (the graph-mode prediction); the runtimes' ``host_launch_s`` is the median over
the batch-1 decode rows (the fit rows of validation; the other eager rows test it).

python benchmarks/eager_host.py [--csv PATH]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hardware import load_system  # noqa: E402
from sim.cost.simulate import simulate  # noqa: E402
from workloads.llm import Decode, Prefill  # noqa: E402
from workloads.loader import load_model  # noqa: E402
from workloads.runtime import Runtime, load_runtime  # noqa: E402

CSV = ROOT / "benchmarks/microbench/results/h100-sxm-2026-11-23/llm.csv"


def _step(row: dict[str, str], runtime: Runtime) -> Decode | Prefill:
    """The row's step (a decode step or a batch-1 prefill) under ``runtime``."""
    model, batch = load_model(row["model"]), int(row["batch"])
    if row["phase"] == "decode":
        return Decode(model=model, batch=batch, context=int(row["context"]), runtime=runtime,
                      attention_kernel="fa2")  # fmt: skip
    return Prefill(model=model, batch=batch, prompt=int(row["prompt"]), runtime=runtime,
                   attention_kernel="fa2")  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path, default=CSV)
    args = ap.parse_args()
    eager, graph = load_runtime("pytorch-eager-native"), load_runtime("pytorch-graph")
    system = load_system("h100-sxm", 1)
    head = f"{'model':11} {'phase':7} {'batch':>5} {'ctx':>5} {'prompt':>6} {'kernels':>7} " \
           f"{'eager ms':>9} {'chip ms':>8} {'us/kernel':>9}"  # fmt: skip
    print(head)
    print("-" * len(head))
    fit = []
    for row in csv.DictReader(args.csv.open()):
        if row["cuda_graph"] != "False":
            continue
        batch = int(row["batch"])
        kernels = sum(op.kernels * op.count for op in _step(row, eager).lower().ops)
        chip = simulate(_step(row, graph), system, check_memory=False).time_s
        t = float(row["time_s"])
        per = t / kernels
        is_fit = row["phase"] == "decode" and batch == 1
        if is_fit:
            fit.append(per)
        print(f"{row['model']:11} {row['phase']:7} {batch:5d} {row['context']:>5} "
              f"{row['prompt']:>6} {kernels:7d} {t * 1e3:9.2f} {chip * 1e3:8.2f} "
              f"{per * 1e6:9.1f}{'  fit' if is_fit else ''}")  # fmt: skip
    print(
        f"host time per kernel, median of the {len(fit)} batch-1 decode rows: "
        f"{statistics.median(fit) * 1e6:.1f} us (range {min(fit) * 1e6:.1f}-{max(fit) * 1e6:.1f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
