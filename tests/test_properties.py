"""Physics as properties: generated workloads and chips never break what any real machine obeys.

More chips never breaks a fit; more bandwidth or compute never slows a run; a larger decode
batch never lowers throughput while it fits; utilisations stay in [0, 1]. Hypothesis is
derandomised so CI sees the same cases every run.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hardware import load_system
from sim.cost.simulate import simulate
from sim.engine.train import simulate_training
from workloads.dit import DiT, load_dit
from workloads.llm import Decode, Prefill
from workloads.loader import load_model
from workloads.training import Training

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

PROPS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
MODELS = st.sampled_from(["llama-2-7b", "llama-3-8b", "mixtral-8x7b", "llama-2-70b"])
CHIPS = st.sampled_from(["h100-sxm", "a100-sxm-80gb", "mi300x", "h200", "b200"])


@PROPS
@given(model=MODELS, chip=CHIPS, batch=st.integers(1, 256), context=st.integers(1, 32768))
def test_more_chips_never_breaks_a_fit(model, chip, batch, context):
    m = load_model(model)
    fits = []
    for tp in (1, 2, 4, 8):
        if m.n_heads % tp or m.n_kv_heads % tp and tp > m.n_kv_heads:
            continue
        r = simulate(Decode(model=m, batch=batch, context=context, tp=tp),
                     load_system(chip, tp), check_memory=False)  # fmt: skip
        fits.append((tp, r.memory.fits))
    for (tp_a, a), (tp_b, b) in zip(fits, fits[1:], strict=False):
        assert b or not a, f"fits on TP{tp_a} but not on TP{tp_b}"


SCALES = st.sampled_from([1.25, 1.5, 2.0, 4.0])
FIELDS = st.sampled_from(["hbm.bandwidth", "compute.peak.bf16", "l2.bandwidth"])


def _scaled(chip: str, field: str, scale: float) -> list[str]:
    base = load_system(chip, 1).chip
    value = {
        "hbm.bandwidth": base.main_memory.bandwidth_bytes_per_s,
        "compute.peak.bf16": base.peak("bf16"),
        "l2.bandwidth": next(
            (lvl.bandwidth_bytes_per_s for lvl in base.memory if lvl.name == "l2"), None
        ),
    }[field]
    if value is None:
        return []
    unit = "FLOP/s" if "peak" in field else "B/s"
    sets = [f"{field}={value * scale:.6g}{unit}"]
    if field == "compute.peak.bf16" and base.peak("fp16") == value:
        # the same 16-bit matrix units run both (a run may mix them: an fp16 VAE after bf16)
        sets.append(f"compute.peak.fp16={value * scale:.6g}{unit}")
    return sets


@PROPS
@given(
    kind=st.sampled_from(["decode", "prefill", "train", "dit"]),
    model=st.sampled_from(["llama-2-7b", "llama-3-8b", "mixtral-8x7b"]),
    chip=st.sampled_from(["h100-sxm", "a100-sxm-80gb", "mi300x"]),
    field=FIELDS,
    scale=SCALES,
    size=st.integers(1, 64),
)
def test_more_bandwidth_or_compute_never_slows_a_run(kind, model, chip, field, scale, size):
    sets = _scaled(chip, field, scale)
    if not sets:
        return
    times = []
    for overrides in ([], sets):
        system = load_system(chip, 8 if kind == "train" else 1, overrides)
        if kind == "train":
            w = Training(model=load_model(model), seq=2048, micro_batch=1,
                         global_batch=8 * size, tp=8, dp=1)  # fmt: skip
            times.append(simulate_training(w, system, check_memory=False).step_time_s)
            continue
        if kind == "dit":
            w = DiT(model=load_dit("dit-xl-2"), height=256, width=256, steps=2, batch=size)
        elif kind == "decode":
            w = Decode(model=load_model(model), batch=size * 4, context=64 * size)
        else:
            w = Prefill(model=load_model(model), batch=1 + size // 16, prompt=32 * size)
        times.append(simulate(w, system, check_memory=False).time_s)
    assert times[1] <= times[0] * (1 + 1e-9), f"{sets}: {times[0]} s -> {times[1]} s"


@PROPS
@given(model=MODELS, chip=CHIPS, batch=st.integers(1, 1024), context=st.integers(16, 8192))
def test_a_larger_decode_batch_never_lowers_throughput_while_it_fits(model, chip, batch, context):
    """Where no GEMM is compute-bound, a step reads the same weights and a KV cache growing
    with the batch: tokens/s = b / (W + b k) only grows. NB: a compute-bound GEMM steps up at
    a tile boundary (M = 129 pads to the next tile row, as cuBLAS does), so there a larger batch
    can lower throughput; that is tile quantisation (NVIDIA, Matrix Multiplication Background
    User's Guide, DU-09799-001, sec. 3.1), not asserted away here."""
    m = load_model(model)
    tp = 8 if m.n_params() > 3e10 else 1
    system = load_system(chip, tp)
    rates = []
    for b in (batch, batch + 1 + batch // 8):
        r = simulate(Decode(model=m, batch=b, context=context, tp=tp), system, check_memory=False)
        if not r.memory.fits:
            return
        if any(c.op.kind.value == "gemm" and c.bound == "compute" for c in r.costs):
            return
        rates.append(r.throughput["tokens_per_s"])
    assert rates[1] >= rates[0] * (1 - 1e-9), (
        f"batch {batch}: {rates[0]:.1f} -> {rates[1]:.1f} tok/s"
    )


@PROPS
@given(
    model=MODELS,
    chip=st.sampled_from(["h100-sxm", "h200", "b200", "mi300x"]),
    batch=st.integers(1, 1024),
    prompt=st.integers(1, 4096),
)
def test_a_library_with_tiles_in_steps_never_pads_a_tile_by_a_step(model, chip, batch, prompt):
    """On a chip whose GEMM library has tiles in steps (8 for cuBLASLt on Hopper/Blackwell, 16 for
    hipBLASLt on MI300X), a decode or prefill GEMM whose N its tile divides pads fewer than a
    step of token rows per tile: batch 257 is not three 128-row tiles (42 padded rows per tile,
    the compute cliff of issue 22)."""
    m = load_model(model)
    tp = 8 if m.n_params() > 3e10 else 1
    system = load_system(chip, tp)
    step = system.chip.tile_step
    assert step == (16 if chip == "mi300x" else 8)
    listed = set(system.chip.gemm_tiles)
    listed_m, listed_n = {tm for tm, _ in listed}, {tn for _, tn in listed}
    for w in (Decode(model=m, batch=batch, context=128, tp=tp), Prefill(model=m, batch=1,
              prompt=prompt, tp=tp)):  # fmt: skip
        for c in simulate(w, system, check_memory=False).costs:
            if c.op.kind.value != "gemm" or not c.tile or not c.tile[0]:
                continue  # the GEMV path: no tiles
            g, (tm, tn) = c.op.gemm, c.tile
            if g.n % tn or tn not in listed_n or ((tm, tn) not in listed and tm in listed_m):
                continue  # N padded, or N the side cut (to fill a wave): M may keep its tile
            if g.routed_tokens:
                continue  # a grouped expert GEMM: one tile over experts of different rows,
                # each padded to whole tiles (tests/test_roofline.py), never cut to a mean
            rows = math.ceil(g.m / tm)
            pad = (rows * tm - g.m) / rows
            assert pad < step, f"{c.op.name}: M {g.m} in tiles of {tm} pads {pad:.0f} rows each"


@PROPS
@given(
    kind=st.sampled_from(["decode", "prefill", "dit", "train"]),
    chip=CHIPS,
    size=st.integers(1, 128),
)
def test_utilisations_stay_between_zero_and_one(kind, chip, size):
    if kind == "train":
        w = Training(model=load_model("llama-3-8b"), seq=1024 * (1 + size % 8), micro_batch=1,
                     global_batch=8 * size, tp=8, dp=1)  # fmt: skip
        r = simulate_training(w, load_system(chip, 8), check_memory=False)
        assert 0 < r.mfu <= 1 and 0 < r.hfu <= 1
        return
    if kind == "dit":
        w = DiT(model=load_dit("pixart-alpha"), height=512, width=512, steps=1 + size, batch=size)
    elif kind == "decode":
        w = Decode(model=load_model("llama-3-8b"), batch=size, context=16 * size)
    else:
        w = Prefill(model=load_model("llama-3-8b"), batch=1, prompt=64 * size)
    r = simulate(w, load_system(chip, 1), check_memory=False)
    assert 0 < r.mfu <= 1 and 0 < r.mbu <= 1
