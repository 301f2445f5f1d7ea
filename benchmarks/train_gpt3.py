"""GPT-3 175B on 1024 A100s (TP 8, PP 16, DP 8, batch 1536): derived vs Megatron-LM's published rate.

python benchmarks/train_gpt3.py

The published number (Narayanan et al. 2021, arXiv:2104.04473, Sec. 5.1: 140 TFLOP/s per GPU,
about 34 days for 300B tokens) and its configuration live in sim/studies/data/published.toml
(row narayanan-gpt3-175b-a100-1024gpu-sec5.1); this script prints roofsim's derivation beside it
and the error. Exits 1 if the error is above the training bar of the validation harness.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

ROW = "narayanan-gpt3-175b-a100-1024gpu-sec5.1"
DATA = Path(__file__).resolve().parents[1] / "sim" / "studies" / "data" / "published.toml"


def main() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from hardware import load_system
    from hardware.units import format_si
    from sim.engine.train import simulate_training
    from sim.studies.validate import BARS, _convention_flops, _training_for

    row = next(r for r in tomllib.loads(DATA.read_text())["row"] if r["id"] == ROW)
    t = _training_for(row)
    r = simulate_training(t, load_system(row["chip"], row["chips"]), check_memory=False)
    paper_flops = _convention_flops(t, hardware=True)
    tflops = paper_flops / r.step_time_s / r.n_chips / 1e12
    days = 300e9 / r.tokens_per_s / 86400
    err = (tflops - row["measured"]) / row["measured"]
    b = r.breakdown
    print(f"GPT-3 175B, {row['chips']}x A100-80GB, TP{t.tp} PP{t.pp} DP{t.dp}, batch "
          f"{t.batch} x {t.seq}, micro-batch {t.micro_batch}, recompute {t.recompute}")  # fmt: skip
    print(f"  step time            {format_si(r.step_time_s, 's')}")
    print(f"  MFU / HFU            {r.mfu:.1%} / {r.hfu:.1%}")
    print(f"  bubble               {format_si(b['pipeline_bubble_s'], 's')}   exposed TP "
          f"{format_si(b['communication_s']['tp'], 's')}   DP tail "
          f"{format_si(b['communication_s']['dp_tail'], 's')}")  # fmt: skip
    print(f"  300B tokens          {days:.1f} days   (paper: about 34)")
    print(f"  TFLOP/s per GPU      {tflops:.1f} derived   {row['measured']:.0f} published "
          f"(Eq. 3 count)   error {err:+.1%}")  # fmt: skip
    print(f"  source: {row['source']}")
    return 0 if abs(err) <= BARS["train"] else 1


if __name__ == "__main__":
    sys.exit(main())
