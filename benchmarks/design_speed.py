"""Design-search speed: `roofsim design 14nm-inference -o DIR` end to end (interpreter start,
imports, the search, writing best.toml, pareto.csv and the plot), and the cost of one design
evaluation (chip built from overrides, area, cost, two 8-chip Llama-3-70B simulations).
Exits non-zero if the whole command takes more than 5 minutes (issue 20's bar on 2 cores).

python benchmarks/design_speed.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BAR_S = 300.0


def main() -> int:
    import numpy as np

    from sim.studies.design import Designer, load_spec

    spec = load_spec("14nm-inference")
    designer = Designer(spec)
    rng = np.random.default_rng(0)
    xs = [[rng.uniform(v.low, v.high) for v in spec.variables] for _ in range(300)]
    t0 = time.perf_counter()
    for x in xs:
        designer.loss(x)
    per_eval = (time.perf_counter() - t0) / len(xs)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "sim.cli", "design", "14nm-inference", "-o", out,
                        "--quiet"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)  # fmt: skip
        wall = time.perf_counter() - t0
    print(f"one design evaluation: {per_eval * 1e3:.2f} ms")
    print(f"roofsim design 14nm-inference: {wall:.1f} s wall ({BAR_S:.0f} s bar: "
          f"{'met' if wall <= BAR_S else 'MISSED'})")  # fmt: skip
    return 0 if wall <= BAR_S else 1


if __name__ == "__main__":
    sys.exit(main())
