"""Fuzzing: generated chip overrides, model configs, DiT tables, sweep specs and CLI arguments
either run to sane numbers or fail with roofsim's own one-line error, never a traceback.

Over 10,000 cases per run (the counts are in ``CASES``). Hypothesis is derandomised and its
version pinned (pyproject.toml) so CI is reproducible: the same cases every run and machine; a
failure prints the case that broke.
"""

from __future__ import annotations

import contextlib
import io
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hardware import ConfigError, load_system
from hardware.units import UnitError
from sim.cli.app import main
from sim.cost.result import CapacityError
from sim.cost.simulate import simulate
from sim.studies.sweep import spec_from_dict
from workloads.dit import DiT, dit_from_dict
from workloads.llm import Decode
from workloads.loader import load_model, model_from_dict, model_from_hf
from workloads.ops import WorkloadError

# a NaN or inf met by numpy on the way is a failure too, not a warning
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

USER_ERRORS = (ConfigError, WorkloadError, CapacityError, UnitError)
CASES = {"chip": 4000, "hf": 2500, "model": 1000, "dit": 800, "sweep": 1000, "cli": 800}


def _fuzz(n: int):
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


# values a hand-written file or a typo produces: wrong types, zeros, negatives, NaN, huge numbers
NASTY = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20),
    st.sampled_from([0, -1, 1, 2, 3, 7, 64, 4096, 10**9, 10**18]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 0.5, 2.5, 1e-300, 1e300]),
    st.text(max_size=12),
    st.sampled_from(["4096", "abc", "", "nan", "inf", "-3", "2 TB/s", "1e400", "0x10", "5 GiB"]),
    st.booleans(),
    st.none(),
    st.lists(st.integers(0, 8), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(0, 4), max_size=2),
)

CHIP_PATHS = [
    "hbm.bandwidth", "hbm.capacity", "hbm.achievable_fraction", "l2.capacity", "l2.bandwidth",
    "compute.peak.bf16", "compute.peak.fp8", "compute.vector", "compute.n_cores",
    "compute.tile_m", "compute.tile_n", "compute.tile_k", "compute.gemm_tiles",
    "compute.clock_ghz", "overhead.kernel_s", "system.chips_per_node",
    "system.intra_node_bandwidth", "system.intra_node_latency", "system.inter_node_latency",
    "power.tdp", "power.cap", "power.idle", "compute", "hbm", "nosuch.field", "compute.peak",
]  # fmt: skip
UNITS = ["", " TB/s", "TB/s", " GB", "GiB", " TFLOP/s", "us", " W", " GHz", "%", " MiB"]


def _finite_json(text: str) -> object:
    def refuse(token: str) -> None:
        raise AssertionError(f"non-finite JSON value {token}")

    return json.loads(text, parse_constant=refuse)


def _sane(result) -> None:
    """What every successful run must satisfy."""
    assert math.isfinite(result.time_s) and result.time_s > 0, result.time_s
    assert 0 <= result.mfu <= 1 + 1e-9, result.mfu
    assert 0 <= result.mbu <= 1 + 1e-9, result.mbu
    for c in result.costs:
        assert c.total_time_s >= 0 and math.isfinite(c.total_time_s), c.op.name


SMALL = model_from_dict(
    {"name": "fuzz-tiny", "n_layers": 2, "hidden": 256, "n_heads": 4, "ffn": 512, "vocab": 1000}
)


@_fuzz(CASES["chip"])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(CHIP_PATHS),
            st.one_of(
                st.tuples(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(UNITS)),
                st.tuples(st.integers(-(10**12), 10**12), st.sampled_from(UNITS)),
                st.tuples(st.text(max_size=8), st.just("")),
            ),
        ),
        min_size=1,
        max_size=3,
    ),
    st.sampled_from(["h100-sxm", "a100-sxm-80gb", "mi300x", "tpu-v5e", "groq-lpu"]),
)
def test_chip_overrides_load_to_a_sane_chip_or_fail_with_one_line(sets, chip):
    overrides = [f"{path}={value}{unit}" for path, (value, unit) in sets]
    try:
        system = load_system(chip, 1, overrides)
    except USER_ERRORS as exc:
        assert "\n" not in str(exc)
        return
    c = system.chip
    assert c.kernel_overhead_s >= 0 and math.isfinite(c.kernel_overhead_s)
    try:
        result = simulate(Decode(model=SMALL, batch=1, context=64), system)
    except USER_ERRORS as exc:
        assert "\n" not in str(exc)
        return
    _sane(result)


HF_KEYS = [
    "model_type", "hidden_size", "num_attention_heads", "num_key_value_heads",
    "num_hidden_layers", "intermediate_size", "vocab_size", "head_dim",
    "max_position_embeddings", "tie_word_embeddings", "num_local_experts",
    "num_experts_per_tok", "n_routed_experts", "moe_intermediate_size", "n_embd", "n_layer",
    "n_head", "hidden_act", "kv_lora_rank", "q_lora_rank", "torch_dtype",
]  # fmt: skip
HF_BASE = {
    "model_type": "llama", "hidden_size": 512, "num_attention_heads": 8,
    "num_key_value_heads": 8, "num_hidden_layers": 2, "intermediate_size": 1024,
    "vocab_size": 1000,
}  # fmt: skip


@_fuzz(CASES["hf"])
@given(
    st.dictionaries(st.sampled_from(HF_KEYS), NASTY, max_size=4),
    st.sampled_from(
        [
            "llama",
            "mistral",
            "qwen2",
            "mixtral",
            "gpt2",
            "gpt_neox",
            "opt",
            "bloom",
            "falcon",
            "deepseek_v3",
            "qwen2_moe",
            "gemma2",
            "phi3",
            "mpt",
            "nosuch",
            5,
            None,
        ]  # fmt: skip
    ),
)
def test_hf_configs_map_to_a_sane_model_or_fail_with_one_line(changes, model_type):
    cfg = {**HF_BASE, "model_type": model_type, **changes}
    try:
        m = model_from_hf(cfg, name="fuzz")
    except USER_ERRORS as exc:
        assert "\n" not in str(exc)
        return
    assert m.n_layers >= 1 and m.hidden >= 1 and m.n_heads >= 1 and m.head_dim >= 1
    assert m.n_params() > 0 and math.isfinite(m.n_params())
    try:
        _sane(simulate(Decode(model=m, batch=1, context=16), load_system("h100-sxm", 1)))
    except USER_ERRORS as exc:
        assert "\n" not in str(exc)


MODEL_KEYS = ["n_layers", "hidden", "n_heads", "n_kv_heads", "head_dim", "ffn", "vocab",
              "gated_mlp", "max_seq", "moe", "mla", "position", "norm", "activation"]  # fmt: skip


@_fuzz(CASES["model"])
@given(st.dictionaries(st.sampled_from(MODEL_KEYS), NASTY, max_size=3))
def test_model_tables_build_a_sane_model_or_fail_with_one_line(changes):
    raw = {"name": "fuzz", "n_layers": 2, "hidden": 256, "n_heads": 4, "ffn": 512, "vocab": 1000}
    try:
        m = model_from_dict({**raw, **changes})
    except USER_ERRORS as exc:
        assert "\n" not in str(exc)
        return
    assert m.hidden % m.n_heads == 0 or m.head_dim >= 1
    try:
        _sane(simulate(Decode(model=m, batch=2, context=32), load_system("h100-sxm", 1)))
    except USER_ERRORS as exc:
        assert "\n" not in str(exc)


DIT_KEYS = ["n_layers", "hidden", "n_heads", "mlp_ratio", "patch", "patch_t", "vae_spatial",
            "vae_temporal", "in_channels", "text_tokens", "block", "adaln",
            "vae_decoder_flops_per_pixel", "text_encoder_params", "height", "width"]  # fmt: skip


@_fuzz(CASES["dit"])
@given(st.dictionaries(st.sampled_from(DIT_KEYS), NASTY, max_size=3))
def test_dit_tables_build_or_fail_with_one_line(changes):
    raw = {"name": "fuzz-dit", "n_layers": 2, "hidden": 256, "n_heads": 4, "patch": 2,
           "in_channels": 4, "height": 256, "width": 256}  # fmt: skip
    try:
        dit = dit_from_dict({**raw, **changes})
    except USER_ERRORS as exc:
        assert "\n" not in str(exc)
        return
    assert dit.hidden >= 1 and dit.n_layers >= 1
    try:
        _sane(simulate(DiT(model=dit, steps=2, height=256, width=256), load_system("h100-sxm", 1)))
    except USER_ERRORS as exc:
        assert "\n" not in str(exc)


SWEEP_FIELDS = ["model", "batch", "context", "tp", "chips", "dtype", "seq", "global_batch",
                "micro_batch", "prompt", "steps", "runtime"]  # fmt: skip


@_fuzz(CASES["sweep"])
@given(
    st.sampled_from(["decode", "prefill", "train", "dit", "nosuch", 3]),
    st.dictionaries(st.sampled_from(SWEEP_FIELDS), NASTY, max_size=3),
    st.dictionaries(
        st.sampled_from(["batch", "hbm.bandwidth", "tp", "l2.capacity", "chip", "context"]),
        st.one_of(st.lists(NASTY, max_size=3), NASTY),
        max_size=2,
    ),
    st.one_of(st.just({}), st.dictionaries(st.sampled_from(["chip", "chips", "set"]), NASTY)),
)
def test_sweep_specs_parse_or_fail_with_one_line(kind, workload, axes, system):
    raw = {
        "system": {"chip": "h100-sxm", **system},
        "workload": {"kind": kind, "model": "llama-2-7b", **workload},
        "axes": axes,
    }
    try:
        spec = spec_from_dict(raw)
    except USER_ERRORS as exc:
        assert "\n" not in str(exc)
        return
    assert spec.n_points >= 1


def _run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse's usage errors
            rc = exc.code if isinstance(exc.code, int) else 2
    return rc, out.getvalue(), err.getvalue()


NUMBER_TEXT = st.one_of(
    st.integers(-5, 10**6).map(str),
    st.sampled_from(["0", "-1", "nan", "inf", "1e30", "2.5", "abc", "", "1_000", "0x10"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
CLI_FLAGS = {
    "decode": ["--batch", "--context", "--tp", "--chips", "--pp", "--top"],
    "prefill": ["--batch", "--prompt", "--tp", "--chips", "--top"],
    "dit": ["--steps", "--height", "--width", "--frames", "--batch", "--chips", "--tokens"],
    "train": ["--seq", "--micro-batch", "--global-batch", "--tp", "--pp", "--chips", "--tokens"],
}
CLI_MODELS = {"decode": "llama-3-8b", "prefill": "llama-3-8b", "dit": "dit-xl-2",
              "train": "llama-2-7b"}  # fmt: skip


@_fuzz(CASES["cli"])
@given(
    st.sampled_from(sorted(CLI_FLAGS)).flatmap(
        lambda cmd: st.tuples(
            st.just(cmd),
            st.lists(st.tuples(st.sampled_from(CLI_FLAGS[cmd]), NUMBER_TEXT), max_size=3),
        )
    ),
    st.sampled_from(["h100-sxm", "a100-sxm-80gb", "mi300x", "nosuch-chip"]),
)
def test_cli_numbers_run_or_fail_with_one_line_and_strict_json(case, chip):
    cmd, flags = case
    argv = [cmd, "--model", CLI_MODELS[cmd], "--chip", chip, "--json"]
    if cmd == "train":
        argv += ["--chips", "8"]
    for flag, value in flags:
        argv += [f"{flag}={value}"]
    rc, out, err = _run_cli(argv)
    assert "Traceback" not in err, err
    if rc == 0:
        _finite_json(out)
    else:
        assert rc == 2 and err.strip(), (rc, err)
        assert "error" in err.strip().splitlines()[-1]


def test_the_campaign_is_at_least_ten_thousand_cases():
    assert sum(CASES.values()) >= 10_000


@pytest.mark.parametrize("name", ["llama-3-8b", "mixtral-8x7b"])
def test_presets_load(name):  # the fuzz above rests on these loading
    assert load_model(name).n_layers >= 1
