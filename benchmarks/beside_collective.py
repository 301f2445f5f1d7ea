"""How much slower compute runs beside a collective, as roofsim derives it, next to what was measured.

roofsim costs the compute that overlaps a collective again on what the collective leaves it
(``sim.cost.roofline.beside_slowdown``): its cores (``system.collective_cores``), the
main-memory bandwidth of its traffic (``System.collective_main_per_sent`` bytes per byte sent)
and the power of that traffic and its links. This prints, for each chip, the slowdown of a
training layer's GEMMs, its attention and its elementwise ops beside the ZeRO-3 all-gather of
the next layer's weights on 8 chips in one node, each mechanism alone and all together.

Published measurements to hold it against (none is a validation row: their shapes are not
printed):
- NVIDIA/nccl issue #1428 (A100-SXM4-80GB, GPT training under Nsight, kernels beside a NCCL
  AllGather): a GEMM 1.18 -> 2.08 ms (+76 %), attention 0.18 -> 0.33 ms (+83 %), an
  elementwise kernel 0.02 -> 0.05 ms.
- Lee et al. 2025, arXiv 2507.03114 (4x A100, H100, MI250, MI210; GPT and LLaMA training):
  overlapped compute is 18.9 % slower on average, 40 % at most.

python benchmarks/beside_collective.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hardware import load_system  # noqa: E402
from sim.cost.roofline import beside_slowdown, cost_ops  # noqa: E402
from workloads.loader import load_model  # noqa: E402
from workloads.ops import OpKind  # noqa: E402
from workloads.training import Training  # noqa: E402

CHIPS = ("a100-sxm-80gb", "h100-sxm", "h200", "b200", "mi300x", "gaudi3", "tpu-v5p")
KINDS = (OpKind.GEMM, OpKind.ATTENTION, OpKind.ELEMENTWISE)


def main() -> int:
    t = Training(model=load_model("llama-2-13b"), seq=4096, micro_batch=1, dp=8, zero=3)
    chunk = t.lower().stages[0][0]
    print("Llama-2-13B forward (seq 4096, micro-batch 1) beside its ZeRO-3 all-gathers on 8 chips "
          "in one node: how much slower the compute runs while a gather runs")  # fmt: skip
    print(f"{'chip':<15}{'GEMMs':>8}{'attention':>11}{'elementwise':>13}{'all':>8}"
          f"{'cores only':>12}{'memory only':>13}{'power only':>12}")  # fmt: skip
    for name in CHIPS:
        system = load_system(name, 8)
        costs = cost_ops(chunk.forward, system)
        gathers = cost_ops(chunk.fsdp_forward, system)
        kinds = [beside_slowdown([c for c in costs if c.op.kind is k], gathers, system)
                 for k in KINDS]  # fmt: skip
        whole = beside_slowdown(costs, gathers, system)
        alone = [beside_slowdown(costs, gathers, system, take=(r,))
                 for r in ("cores", "memory", "power")]  # fmt: skip
        print(f"{name:<15}{kinds[0]:>8.1%}{kinds[1]:>11.1%}{kinds[2]:>13.1%}{whole:>8.1%}"
              f"{alone[0]:>12.1%}{alone[1]:>13.1%}{alone[2]:>12.1%}")  # fmt: skip
    print("measured (NVIDIA/nccl #1428, A100 beside a NCCL all-gather): a GEMM +76 %, attention "
          "+83 %, an elementwise kernel +150 %; Lee et al. 2025 (arXiv 2507.03114, A100/H100/"
          "MI250/MI210): 18.9 % mean, 40 % max")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
