"""A diffusion pipeline's VAE decode as roofsim lowers it (workloads/vae.py), next to the
decode-stage times published for it.

roofsim lowers the decoder layer by layer (convolutions as implicit GEMMs at each level's
width, the norms, activations, causal pads, adds and upsampling as eager memory-bound kernels,
the pipeline's tiles and windows). The measurements are stage timings from serving engines'
pull requests and model READMEs (benchmarks/research/vae-decode-measurements-2026-12-04.md);
none is a validation row: each is one engine's decode path, whose tiling, dtype and cache
handling are only partly printed (sglang's Wan path, for one, keeps channels_last_3d tensors
where the preset, as diffusers, is channels-first). This prints predicted and published seconds
and their ratio.

python benchmarks/vae_decode.py
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hardware import load_system  # noqa: E402
from sim.cost.simulate import simulate  # noqa: E402
from workloads.dit import DiT, load_dit  # noqa: E402
from workloads.runtime import load_runtime  # noqa: E402

# (label, preset, chip, height, width, frames, VAE dtype or None for the preset's, published s,
#  source)
CASES = (
    ("FLUX.1 VAE 1024x1024", "flux-1-dev", "h200", 1024, 1024, 1, "bf16", 0.0899,
     "sgl-project/sglang PR #33818: FLUX.1-schnell decode 89.9 ms, H200, bf16"),
    ("HunyuanVideo VAE 848x480x77, tiled", "hunyuanvideo", "h200", 480, 848, 77, None, 5.713,
     "sgl-project/sglang PR #36012: sequential tiled decode 5.713 s on one H200 (main)"),
    ("Wan-VAE 704x1280x61 (LongLive2)", "wan2.1-14b", "h200", 704, 1280, 61, "bf16", 2.80,
     "sgl-project/sglang PR #34125: LongLive2 decode 2.80 s, H200, bf16"),
    ("Wan-VAE 832x480x81 (Wan2.1 1.3B)", "wan2.1-14b", "h200", 480, 832, 81, None, 2.6314,
     "sgl-project/sglang PR #27875: decode 2631.4 ms on main (H200; VAE dtype not printed)"),
)  # fmt: skip


def decode_s(preset: str, chip: str, h: int, w: int, f: int, dtype: str | None) -> float:
    model = load_dit(preset)
    if dtype is not None:
        model = replace(model, vae=replace(model.vae, dtype=dtype))
    dit = DiT(model=model, height=h, width=w, frames=f, steps=1,
              runtime=load_runtime("diffusers"))  # fmt: skip
    result = simulate(dit, load_system(chip, 1), check_memory=False)
    return sum(c.time_s * c.op.count for c in result.costs if c.op.name.startswith("vae."))


def main() -> int:
    print(f"{'case':36s} {'chip':6s} {'roofsim s':>10s} {'published s':>12s} {'ratio':>6s}")
    for label, preset, chip, h, w, f, dtype, published, source in CASES:
        s = decode_s(preset, chip, h, w, f, dtype)
        print(f"{label:36s} {chip:6s} {s:10.3f} {published:12.3f} {published / s:6.2f}x  {source}")
    print("ratio: published / roofsim (> 1: roofsim's decode is faster than measured)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
