"""Sweeps: the spec, vectorised results equal to single-point runs, streaming, resume, executors."""

from __future__ import annotations

import argparse
import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hardware import ConfigError, load_system
from sim.cli import sweep as sweep_cli
from sim.cost.simulate import simulate
from sim.engine.train import simulate_training
from sim.studies import sweep
from sim.studies.sweep import (
    build_workload,
    evaluate_lines,
    evaluate_points,
    load_spec,
    plan_chunks,
    run_sweep,
    spec_from_dict,
    vector_axes,
)
from workloads.dit import load_dit

ROOT = Path(__file__).resolve().parent.parent
DECODE_100K = ROOT / "benchmarks" / "sweeps" / "decode-100k.toml"


def _spec(axes: dict, workload: dict | None = None, chip: str = "h100-sxm", **top) -> object:
    wl = {"kind": "decode", "model": "llama-2-7b", **(workload or {})}
    return spec_from_dict({"system": {"chip": chip}, "workload": wl, "axes": axes, **top})


def _single_point(spec, point: int):
    """The point as one ``simulate``/``simulate_training`` run, the CLI's way (the reference)."""
    vidx = [int(v[0]) for v in spec.value_indices(np.array([point]))]
    fields, sets, chip = dict(spec.workload), list(spec.sets), spec.chip
    for axis, j in zip(spec.axes, vidx, strict=True):
        value = axis.values[j]
        if axis.target == "system":
            chip = value
        elif axis.target == "chip":
            sets.append(
                f"{axis.name}={value!r}" if not isinstance(value, str) else f"{axis.name}={value}"
            )
        else:
            fields[axis.name] = value
    workload, n_chips = build_workload(spec.kind, fields, load_dit)
    system = load_system(chip, n_chips, sets)
    if spec.kind == "train":
        return simulate_training(workload, system, check_memory=spec.check_memory)
    return simulate(workload, system, check_memory=spec.check_memory)


def _assert_rows_equal_single_points(spec, points) -> int:
    """Each row equals its single-point run within 1e-9 (errors: the same message); ok rows."""
    ok = 0
    for point, row in zip(points, evaluate_points(spec, points), strict=True):
        try:
            ref = _single_point(spec, point)
        except (ConfigError, ValueError) as exc:
            assert (row["status"], row["error"]) == ("error", " ".join(str(exc).split()))
            continue
        assert row["status"] == "ok", row
        time_s = ref.step_time_s if spec.kind == "train" else ref.time_s
        want = {"time_s": time_s, "mfu": ref.mfu}
        if spec.kind != "train":
            want["throughput"] = next(iter(ref.throughput.values()))
            want["required_bytes"] = ref.memory.required_bytes
        energy = ref.step_energy_j if spec.kind == "train" else ref.energy_j
        if energy is not None:
            want["energy_j"] = energy
        for key, value in want.items():
            assert float(row[key]) == pytest.approx(value, rel=1e-9), key
        assert row["bound"] == ref.bound
        ok += 1
    return ok


# ---- the spec --------------------------------------------------------------------------------------
def test_axes_expand_lists_ranges_and_log_ranges_in_product_order():
    spec = _spec(
        {
            "hbm.bandwidth": {"start": "1 TB/s", "stop": "3 TB/s", "num": 3},
            "compute.peak.bf16": {"start": 1e14, "stop": 1e16, "num": 3, "log": True},
            "batch": {"start": 1, "stop": 8, "num": 4, "log": True},  # 1, 2, 4, 8 (integers)
            "l2.capacity": ["50 MiB", 1e8],
        }
    )
    bw, peak, batch, l2 = (a.values for a in spec.axes)
    assert bw == (1e12, 2e12, 3e12)
    assert peak == pytest.approx((1e14, 1e15, 1e16))
    assert batch == (1, 2, 4, 8)
    assert l2 == (50 * 2**20, 1e8)  # a quantity string is read in SI units
    assert spec.n_points == 3 * 3 * 4 * 2
    # product: the last axis fastest; point 9 = (0, 0, 0+... ) -> bw 0, peak 1, batch 0, l2 1
    vidx = [int(v[0]) for v in spec.value_indices(np.array([9]))]
    assert vidx == [0, 1, 0, 1]
    assert spec.header[:7] == [
        "hbm.bandwidth",
        "compute.peak.bf16",
        "batch",
        "l2.capacity",
        "chip",  # what ran, where no axis names it
        "model",
        "point",
    ]
    assert spec.header[-4:] == ["energy_j", "avg_power_w", "tokens_per_j", "tokens_per_usd_hour"]


def test_integer_log_range_keeps_each_integer_once():
    # geomspace(1, 4, 6) rounds to 1, 1, 2, 2, 3, 4: duplicates dropped
    spec = _spec({"batch": {"start": 1, "stop": 4, "num": 6, "log": True}})
    assert spec.axes[0].values == (1, 2, 3, 4)


def test_zip_pairs_axes_by_position():
    spec = _spec({"batch": [1, 2, 4], "hbm.bandwidth": ["1 TB/s", "2 TB/s", "4 TB/s"]}, mode="zip")
    assert spec.n_points == 3
    assert [int(v[2]) for v in spec.value_indices(np.arange(3))] == [2, 2]


def test_nested_dotted_keys_are_chip_paths():
    # unquoted `hbm.bandwidth = [...]` in TOML is a nested table: read as the path it spells
    spec = _spec({"hbm": {"bandwidth": ["1 TB/s"]}})
    assert spec.axes[0].name == "hbm.bandwidth" and spec.axes[0].target == "chip"


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ({"workload": {"kind": "decode", "model": "llama-2-7b"}}, r"\[system\] needs chip"),
        ({"system": {"chip": "h100-sxm"}, "workload": {"kind": "serve"}}, "kind must be one of"),
        ({"system": {"chip": "h100-sxm"}, "workload": {"kind": "decode", "model": "x", "prompt": 1}},
         "unknown field 'prompt'.*allowed: model"),
        ({"system": {"chip": "h100-sxm"}, "workload": {"kind": "decode", "model": "llama-2-7b"},
          "axes": {"hbm.bandwith": [1e12]}}, r"'hbm.bandwith'.*unknown field.*<level>.capacity\|bandwidth"),
        ({"system": {"chip": "h100-sxm"}, "workload": {"kind": "decode", "model": "llama-2-7b"},
          "axes": {"batches": [1]}}, r"'batches': not a decode field \(model, chips"),
        ({"system": {"chip": "h100-sxm"}, "workload": {"kind": "decode", "model": "llama-2-7b"},
          "axes": {"batch": {"start": 1, "stop": 4}}}, r"a range is \{start = A, stop = B, num = N\}"),
        ({"system": {"chip": "h100-sxm"}, "workload": {"kind": "decode", "model": "llama-2-7b"},
          "axes": {"batch": {"start": 0, "stop": 4, "num": 3, "log": True}}}, "log range needs start and stop > 0"),
        ({"system": {"chip": "h100-sxm"}, "workload": {"kind": "decode", "model": "llama-2-7b"},
          "axes": {"batch": 4}}, "give a list of values"),
        ({"system": {"chip": "h100-sxm"}, "workload": {"kind": "decode", "model": "llama-2-7b"},
          "mode": "zip", "axes": {"batch": [1, 2], "context": [1]}}, "zip needs axes of one length, got batch 2, context 1"),
        ({"system": {"chip": "h100-sxm"}, "workload": {"kind": "decode", "model": "llama-2-7b", "batch": 2},
          "axes": {"batch": [1]}}, "also fixed in \\[workload\\]"),
        ({"system": {"chip": "h100-sxm"}, "workload": {"kind": "decode"}}, "needs model"),
        ({"system": {"chip": "h100-sxm"}, "workload": {"kind": "train", "model": "llama-2-7b"}}, "train sweep needs chips"),
        ({"system": {"chip": "nope"}, "workload": {"kind": "decode", "model": "llama-2-7b"}}, "unknown chip 'nope'"),
        ({"system": {"chip": "h100-sxm"}, "workload": {"kind": "decode", "model": "llama-2-7b"},
          "constraints": {"max_watts": 1}}, "unknown key 'max_watts'; allowed: max_power_w"),
        ({"sweep": 1, "system": {"chip": "h100-sxm"}}, "unknown top-level key 'sweep'"),
    ],
)  # fmt: skip
def test_a_bad_spec_is_one_config_error_line_naming_the_field(raw, match):
    with pytest.raises(ConfigError, match=match) as info:
        spec_from_dict(raw)
    assert "\n" not in str(info.value)


def test_load_spec_reports_missing_file_and_malformed_toml(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_spec(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[system\nchip = 1")
    with pytest.raises(ConfigError, match="malformed TOML"):
        load_spec(bad)


# ---- vectorised results equal single-point runs -------------------------------------------------
def test_decode_100k_spec_has_100k_points_and_a_random_sample_equals_simulate():
    spec = load_spec(DECODE_100K)
    assert spec.n_points >= 100_000
    points = np.random.default_rng(1).choice(spec.n_points, size=40, replace=False).tolist()
    assert _assert_rows_equal_single_points(spec, points) == 40


def test_decode_sample_equals_simulate_across_chip_structure_l2_and_tp_links():
    # n_cores changes tiling, l2.capacity flips operand residency, TP brings all-reduces over
    # the swept link, batch 600 does not fit, tp 3 does not divide the heads
    spec = _spec(
        {
            "compute.n_cores": [16, 132],
            "l2.capacity": ["8 MB", "50 MiB", "1 GB"],
            "system.intra_node_bandwidth": ["50 GB/s", "900 GB/s"],
            "overhead.kernel_s": [0.0, "4 us"],
            "tp": [1, 3, 4],
            "batch": [1, 24, 600],
        },
        {"model": "llama-2-13b", "context": 4096},
    )
    points = np.random.default_rng(2).choice(spec.n_points, size=60, replace=False).tolist()
    assert _assert_rows_equal_single_points(spec, points) > 20


def test_prefill_and_dit_samples_equal_simulate_including_the_power_limit_recost():
    prefill = _spec(
        {"compute.peak.bf16": ["200 TFLOP/s", "2 PFLOP/s"], "prompt": [256, 8192], "batch": [1, 8]},
        {"kind": "prefill", "model": "mixtral-8x7b", "tp": 2},
    )
    assert _assert_rows_equal_single_points(prefill, list(range(prefill.n_points))) == 8
    # the power model's coefficients are swept like any field (the clock the limit allows
    # follows); ring sequence parallelism hides its K/V passing behind attention
    dit = _spec(
        {"power.cap": ["300 W", "700 W"], "steps": [2, 30]},
        {"kind": "dit", "model": "hunyuanvideo", "chips": 8, "sp": "ring"},
    )
    assert _assert_rows_equal_single_points(dit, list(range(dit.n_points))) == 4
    # and the energy per FLOP (fp8 scales from the 16-bit figure)
    fp8 = _spec(
        {"power.matrix_pj_per_flop": [0.5, 1.5], "batch": [1, 64]},
        {"kind": "prefill", "model": "llama-3-70b", "tp": 8, "prompt": 8192,
         "dtype": "fp8"},
    )  # fmt: skip
    assert _assert_rows_equal_single_points(fp8, list(range(fp8.n_points))) == 4
    # another chip, both dtypes
    b200 = _spec(
        {"dtype": ["bf16", "fp8"], "batch": [1, 64]},
        {"kind": "prefill", "model": "llama-3-70b", "tp": 8, "prompt": 8192},
        chip="b200",
    )
    assert _assert_rows_equal_single_points(b200, list(range(b200.n_points))) == 4


def test_attention_kernel_axis_equals_simulate():
    # FlashAttention-2 vs the native kernel on Hopper: the vectorised path caps the attention
    # matmuls by mma_sync_fraction exactly as the scalar roofline does
    spec = _spec(
        {"attention_kernel": ["native", "fa2"], "prompt": [1024, 16384]},
        {"kind": "prefill", "model": "llama-3-8b"},
    )
    _assert_rows_equal_single_points(spec, range(spec.n_points))
    rows = evaluate_points(spec, range(spec.n_points))
    by = {(r["attention_kernel"], int(r["prompt"])): float(r["time_s"]) for r in rows}
    assert by[("fa2", 16384)] > 1.1 * by[("native", 16384)]
    # the per-query-head decode kernel: GQA's K/V read once per query head
    spec = _spec(
        {"attention_kernel": ["native", "mmha"], "batch": [1, 64]},
        {"kind": "decode", "model": "llama-3-8b", "context": 4096},
    )
    _assert_rows_equal_single_points(spec, range(spec.n_points))


def test_runtime_axis_equals_simulate():
    # host time per step (a constant and a per-sequence part over a batch axis) and eager
    # launches bind the same ops in the vectorised path as in simulate
    spec = _spec(
        {"runtime": ["fused-graphs", "vllm-0.5", "pytorch-eager", "pytorch-graph"],
         "batch": [1, 8, 64]},
        {"kind": "decode", "model": "llama-3-8b", "context": 1024},
    )  # fmt: skip
    assert _assert_rows_equal_single_points(spec, range(spec.n_points)) == spec.n_points
    rows = evaluate_points(spec, range(spec.n_points))
    by = {(r["runtime"], int(r["batch"])): float(r["time_s"]) for r in rows}
    assert by[("vllm-0.5", 64)] > by[("fused-graphs", 64)] + 3.8e-3


def test_int4_group_axis_equals_simulate_and_smaller_groups_read_more():
    spec = _spec({"int4_group": [32, 128], "batch": [1, 16]},
                 {"kind": "decode", "model": "llama-2-7b", "dtype": "int4", "runtime": "gpt-fast",
                  "context": 512})  # fmt: skip
    assert _assert_rows_equal_single_points(spec, range(spec.n_points)) == spec.n_points
    by = {(int(r["int4_group"]), int(r["batch"])): float(r["time_s"])
          for r in evaluate_points(spec, range(spec.n_points))}  # fmt: skip
    assert by[(32, 1)] > by[(128, 1)] and by[(32, 16)] > by[(128, 16)]


def test_eager_prompt_axis_equals_simulate():
    # eager prompts' unvectorised kernels (the attention output's copy, the chunked gate/up
    # halves, casts and broadcasts) in the vectorised path
    spec = _spec(
        {"runtime": ["pytorch-graph", "hf-transformers"], "prompt": [2, 16, 512], "batch": [1, 4]},
        {"kind": "prefill", "model": "llama-3-8b"},
    )  # fmt: skip
    assert _assert_rows_equal_single_points(spec, range(spec.n_points)) == spec.n_points


def test_dit_runtime_axis_equals_simulate():
    # eager DiT primitives with host launches, in the vectorised path as in simulate
    spec = _spec(
        {"runtime": ["fused-graphs", "xdit", "torch-compile"], "sp": ["ulysses", "ring"]},
        {"kind": "dit", "model": "flux-1-dev", "steps": 2, "chips": 2},
    )
    assert _assert_rows_equal_single_points(spec, range(spec.n_points)) == spec.n_points
    rows = evaluate_points(spec, range(spec.n_points))
    by = {(r["runtime"], r["sp"]): float(r["time_s"]) for r in rows}
    assert by[("xdit", "ring")] > 1.2 * by[("torch-compile", "ring")]


def test_pinned_weights_axis_equals_simulate():
    # an L2 large enough to hold the weights reads them on chip, in the vectorised path too
    spec = _spec({"l2.capacity": ["50MiB", "20GB"], "batch": [1, 16]},
                 {"kind": "decode", "model": "llama-3-8b", "context": 1024})  # fmt: skip
    assert _assert_rows_equal_single_points(spec, range(spec.n_points)) == spec.n_points
    rows = evaluate_points(spec, range(spec.n_points))
    small, big = (float(r["time_s"]) for r in rows if int(r["batch"]) == 1)
    assert small > 1.9 * big


def test_coupled_axes_are_built_in_full_and_still_equal_simulate():
    # processing in memory needs pim_flops and pim_bandwidth together: a value of one axis fails
    # alone but not beside the other's, so the two axes cannot be composed from single builds
    spec = _spec(
        {"hbm.pim_flops": [0, "6 TFLOP/s"], "hbm.pim_bandwidth": [0, "13 TB/s"]},
        {"batch": 8},
    )
    rows = evaluate_points(spec, range(4))
    assert [r["status"] for r in rows] == ["ok", "error", "error", "ok"]
    assert "both pim_flops and pim_bandwidth" in rows[1]["error"]
    _assert_rows_equal_single_points(spec, range(4))


def test_train_points_run_the_event_engine_one_by_one():
    spec = _spec(
        {"micro_batch": [1, 2], "hbm.bandwidth": ["2 TB/s", "3.35 TB/s"]},
        {"kind": "train", "model": "llama-2-7b", "chips": 8, "tp": 8, "global_batch": 8},
    )
    assert _assert_rows_equal_single_points(spec, range(4)) == 4


def test_vector_evaluate_costs_one_lowering_on_a_stack_of_chips_as_simulate_does():
    from sim.cost.chips import ChipArrays
    from sim.cost.roofline import BOUNDS
    from sim.cost.simulate import evaluate
    from workloads import Decode, load_model

    workload = Decode(model=load_model("llama-2-13b"), batch=4, context=4096, tp=2)
    systems = [
        load_system("h100-sxm", 2),
        load_system("h100-sxm", 2, ["hbm.bandwidth=8TB/s", "system.intra_node_bandwidth=50GB/s"]),
    ]
    res = evaluate(workload.lower(), 2, ChipArrays.from_systems(systems))
    for i, system in enumerate(systems):
        ref = simulate(workload, system)
        assert res.time_s[i] == pytest.approx(ref.time_s, rel=1e-12)
        assert res.mbu[i] == pytest.approx(ref.mbu, rel=1e-12)
        assert BOUNDS[res.bound[i]] == ref.bound and res.error[i] is None
    with pytest.raises(ValueError, match="differ in structure"):
        ChipArrays.from_systems([systems[0], load_system("b200", 2)])


# ---- failures are rows, not stops ------------------------------------------------------------------
def test_failing_points_are_recorded_with_their_reason_and_the_sweep_goes_on():
    spec = _spec({"hbm.bandwidth": ["3 TB/s", -1], "tp": [1, 3], "batch": [1, 400]})
    rows = {int(r["point"]): r for r in evaluate_points(spec, range(spec.n_points))}
    assert rows[0]["status"] == "ok" and float(rows[0]["time_s"]) > 0
    assert rows[1]["error"].startswith("does not fit: needs")  # batch 400 at context 2048
    assert "--tp 3 must divide the 32 attention heads" in rows[2]["error"]
    assert rows[4]["error"] == "memory level 'hbm': bandwidth must be > 0, got -1.0"
    for r in rows.values():
        if r["status"] == "error":
            assert r["time_s"] == r["mfu"] == ""


def test_a_power_constraint_excludes_points_before_they_run():
    spec = _spec(
        {"chips": [1, 2, 8]},
        {"tp": 1, "batch": 8},
        constraints={"max_power_w": "1500 W"},
    )
    rows = evaluate_points(spec, range(3))
    # tp 1 on 2 or 8 chips: data-parallel replicas; 2 x 700 W fits the budget, 8 x 700 W not
    assert [r["status"] for r in rows] == ["ok", "ok", "error"]
    assert rows[2]["error"] == "excluded by constraint max_power_w: 8 x 700 W = 5600 W > 1500 W"
    priced = _spec({"chips": [1]}, chip="b200", constraints={"max_usd_per_hour": 100})
    assert evaluate_points(priced, [0])[0]["error"] == (
        "excluded by constraint max_usd_per_hour: b200 has no price.usd_per_hour"
    )


# ---- streaming, resume, kill -----------------------------------------------------------------------
def _read(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as f:
        header, *rows = list(csv.reader(f))
    return header, rows


SMALL = {
    "hbm.bandwidth": ["2 TB/s", "3.35 TB/s", "5 TB/s"],
    "l2.capacity": ["25 MiB", "50 MiB"],
    "batch": [1, 16, 256],
}


def test_run_writes_one_header_and_each_point_once(tmp_path):
    spec = _spec(SMALL)
    out = tmp_path / "r.csv"
    summary = run_sweep(spec, out, workers=1, progress=False)
    header, rows = _read(out)
    assert header == spec.header
    assert sorted(int(r[header.index("point")]) for r in rows) == list(range(spec.n_points))
    assert summary.n_computed == spec.n_points == 18 and summary.n_errors == 6  # batch 256
    with pytest.raises(ConfigError, match="exists; add --resume to finish it or --force"):
        run_sweep(spec, out, workers=1, progress=False)


def test_resume_cuts_a_partial_last_line_and_computes_only_the_missing_points(tmp_path):
    spec = _spec(SMALL)
    full = tmp_path / "full.csv"
    run_sweep(spec, full, workers=1, progress=False)
    lines = full.read_text().splitlines(keepends=True)
    part = tmp_path / "part.csv"
    part.write_text("".join(lines[:8]) + lines[8][:20])  # 7 rows and a line cut by a kill
    summary = run_sweep(spec, part, resume=True, workers=1, progress=False)
    assert summary.n_resumed == 7 and summary.n_computed == spec.n_points - 7
    assert sorted(full.read_text().splitlines()) == sorted(part.read_text().splitlines())


def test_resume_refuses_a_file_from_another_spec(tmp_path):
    out = tmp_path / "r.csv"
    run_sweep(_spec(SMALL), out, workers=1, progress=False)
    other = _spec({**SMALL, "batch": [2, 16, 256]})
    with pytest.raises(ConfigError, match="written by a spec with other axes;"):
        run_sweep(other, out, resume=True, workers=1, progress=False)
    # a file without a fingerprint (an older roofsim's) is still checked row by row
    (tmp_path / "r.csv.spec.json").unlink()
    with pytest.raises(ConfigError, match="point 0 .* has batch=1 but this spec gives 2"):
        run_sweep(other, out, resume=True, workers=1, progress=False)
    with pytest.raises(ConfigError, match="has columns .* another spec"):
        run_sweep(_spec({"batch": [1]}), out, resume=True, workers=1, progress=False)


def test_resume_refuses_a_spec_whose_fixed_fields_changed_naming_what_changed(tmp_path):
    out = tmp_path / "r.csv"
    run_sweep(_spec(SMALL), out, workers=1, progress=False)
    assert (tmp_path / "r.csv.spec.json").is_file()
    # same axes, same columns: only the fingerprint tells these specs apart
    changes = {
        "workload": _spec(SMALL, {"model": "llama-3-8b"}),
        "system.chip": _spec(SMALL, chip="h200"),
        "system.set": spec_from_dict(
            {
                "system": {"chip": "h100-sxm", "set": ["hbm.capacity=40GB"]},
                "workload": {"kind": "decode", "model": "llama-2-7b"},
                "axes": SMALL,
            }
        ),  # fmt: skip
    }
    for part, changed in changes.items():
        with pytest.raises(ConfigError, match=f"written by a spec with other {part};"):
            run_sweep(changed, out, resume=True, workers=1, progress=False)
    before = out.read_text()
    summary = run_sweep(_spec(SMALL), out, resume=True, workers=1, progress=False)
    assert summary.n_computed == 0 and out.read_text() == before  # nothing the user had is lost


def test_resume_refuses_a_fingerprint_file_it_cannot_read(tmp_path):
    out = tmp_path / "r.csv"
    run_sweep(_spec(SMALL), out, workers=1, progress=False)
    (tmp_path / "r.csv.spec.json").write_text("not json")
    with pytest.raises(ConfigError, match="is not a roofsim sweep fingerprint; remove it"):
        run_sweep(_spec(SMALL), out, resume=True, workers=1, progress=False)


def _children(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (Linux /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_no_worker_outlives_a_killed_sweep(tmp_path):
    spec_path = tmp_path / "train.toml"
    spec_path.write_text(KILL_SPEC)
    out = tmp_path / "killed.csv"
    cmd = [sys.executable, "-m", "sim.cli.sweep", str(spec_path), "-o", str(out),
           "--workers", "2", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    workers: list[int] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and len(workers) < 2:
        workers = _children(proc.pid)
        time.sleep(0.02)
    assert proc.poll() is None and workers, f"no worker seen: {proc.stderr.read()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 20
    alive = workers
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [w for w in workers if Path(f"/proc/{w}").exists()
                 and "Z" not in (Path(f"/proc/{w}/stat").read_text().rsplit(")", 1)[1].split()[:1])]  # fmt: skip
    assert not alive, f"workers {alive} outlived the killed sweep"


KILL_SPEC = """\
[system]
chip = "h100-sxm"
chips = 16

[workload]
kind = "train"
model = "llama-2-7b"
tp = 4
pp = 4
seq = 2048

[axes]
"hbm.bandwidth" = ["2 TB/s", "3.35 TB/s"]
global_batch = [64, 96, 128, 160]
micro_batch = [1, 2]
"""


def test_a_killed_sweep_resumes_to_every_point_once_with_the_uninterrupted_values(tmp_path):
    spec_path = tmp_path / "train.toml"
    spec_path.write_text(KILL_SPEC)
    spec = load_spec(spec_path)
    out = tmp_path / "killed.csv"
    cmd = [sys.executable, "-m", "sim.cli.sweep", str(spec_path), "-o", str(out),
           "--workers", "1", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and out.read_text().count("\n") >= 3:  # header and two rows
            break
        time.sleep(0.005)
    assert proc.poll() is None, f"the sweep ended before it could be killed: {proc.stderr.read()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_rows = out.read_text().count("\n") - 1
    assert 0 < killed_rows < spec.n_points
    summary = run_sweep(spec, out, resume=True, workers=1, progress=False)
    assert summary.n_resumed + summary.n_computed == spec.n_points
    header, rows = _read(out)
    assert sorted(int(r[header.index("point")]) for r in rows) == list(range(spec.n_points))
    uninterrupted = evaluate_lines(spec, range(spec.n_points))
    assert sorted(out.read_text().splitlines()[1:]) == sorted(uninterrupted)


# ---- executors -------------------------------------------------------------------------------------
def test_chunks_keep_workload_shapes_together_and_cover_every_point():
    spec = load_spec(DECODE_100K)
    chunks = plan_chunks(spec, np.arange(spec.n_points), workers=2)
    assert 2 <= len(chunks) <= 40
    assert np.array_equal(np.sort(np.concatenate(chunks)), np.arange(spec.n_points))
    batch = spec.value_indices(chunks[0])[2]
    assert len(np.unique(batch)) < len(chunks[0]) / 100  # few shapes per chunk


def test_a_process_pool_gives_the_same_rows_as_one_process():
    spec = _spec({**SMALL, "context": [512, 1024, 2048, 4096]})
    chunks = np.array_split(np.arange(spec.n_points), 5)
    pooled = "".join(c.csv_text for c in sweep._run_local(spec, chunks, workers=2))
    assert sorted(pooled.splitlines()) == sorted(evaluate_lines(spec, range(spec.n_points)))
    assert sweep.default_workers() >= 1


def test_a_local_dask_cluster_gives_identical_results(tmp_path):
    pytest.importorskip("distributed")
    spec = _spec(SMALL)
    local, dask = tmp_path / "local.csv", tmp_path / "dask.csv"
    run_sweep(spec, local, workers=1, progress=False)
    run_sweep(spec, dask, executor="dask", workers=2, dask_processes=False, progress=False)
    assert sorted(local.read_text().splitlines()) == sorted(dask.read_text().splitlines())


def test_without_dask_the_executor_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(
        ConfigError, match=r"^--executor dask needs Dask: pip install roofsim\[distributed\]$"
    ):
        run_sweep(_spec(SMALL), tmp_path / "r.csv", executor="dask", progress=False)


# ---- the command line ------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roofsim")
    sweep_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def test_sweep_command_writes_the_csv_and_a_summary_without_a_bar_off_a_terminal(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text(
        '[system]\nchip = "h100-sxm"\n[workload]\nkind = "decode"\nmodel = "llama-2-7b"\n'
        "[axes]\nbatch = [1, 2, 4]\n"
    )
    out = tmp_path / "r.csv"
    args = _parser().parse_args(["sweep", str(spec), "-o", str(out), "--workers", "1"])
    assert sweep_cli.run(args) == 0
    printed = capsys.readouterr()
    assert printed.out.startswith(f"wrote {out}: 3 of 3 points (0 errors)")
    assert printed.err == ""  # no progress bar: stderr is not a terminal
    assert len(_read(out)[1]) == 3
    args = _parser().parse_args(["sweep", str(spec), "-o", str(out), "--resume", "--json"])
    assert sweep_cli.run(args) == 0
    assert '"resumed": 3, "computed": 0' in capsys.readouterr().out


def test_sweep_command_error_is_one_line(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text('[system]\nchip = "h100-sxm"\n[workload]\nkind = "decode"\nmodel = "x"\n'
                    '[axes]\n"hbm.bandwith" = [1]\n')  # fmt: skip
    assert sweep_cli.main([str(spec), "-o", str(tmp_path / "r.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("roofsim: error: sweep spec") and err.count("\n") == 1
    assert "'hbm.bandwith'" in err


# ---- workload grids and chip presets (issue 18) ---------------------------------------------------
def test_a_batch_by_context_grid_over_chip_presets_is_one_lowering_and_equals_simulate():
    # Mixtral (MoE: the active-expert count, hence the GEMM groups, varies with the batch) on
    # 2 chips of three presets; batch and context are costed as arrays
    spec = spec_from_dict(
        {
            "system": {"chips": 2},
            "workload": {"kind": "decode", "model": "mixtral-8x7b", "tp": 2},
            "axes": {
                "chip": ["h100-sxm", "mi300x", "a100-sxm-80gb"],
                "batch": {"start": 1, "stop": 300, "num": 40},
                "context": {"start": 128, "stop": 65536, "num": 30, "log": True},
            },
        }
    )
    assert vector_axes(spec) == (1, 2)
    assert spec.header[:4] == ["chip", "batch", "context", "model"]
    points = np.random.default_rng(7).choice(spec.n_points, 60, replace=False)
    ok = _assert_rows_equal_single_points(spec, points.tolist())
    assert 20 < ok < 60  # some fit, some (large batch x context) do not


def test_a_prefill_grid_of_an_mla_model_equals_simulate():
    spec = _spec(
        {"batch": [1, 2, 4], "prompt": [128, 1000, 4096, 8192]},
        {"kind": "prefill", "model": "deepseek-v3", "chips": 8, "tp": 8},
        check_memory=False,
    )
    assert vector_axes(spec) == (0, 1)
    assert _assert_rows_equal_single_points(spec, list(range(spec.n_points))) == spec.n_points


def test_chip_presets_with_a_chip_field_axis_equal_simulate():
    spec = spec_from_dict(
        {
            "system": {"set": ["overhead.kernel_s=3us"]},
            "workload": {"kind": "decode", "model": "llama-2-7b"},
            "axes": {"chip": ["h100-sxm", "b200"], "hbm.bandwidth": ["2 TB/s", "6 TB/s"],
                     "batch": [1, 72]},
        }
    )  # fmt: skip
    # batch 72 at context 2048 needs 90.8 GB: it fits the B200 only (the H100 has 85 GB)
    assert _assert_rows_equal_single_points(spec, list(range(spec.n_points))) == 6


def test_a_chip_axis_and_a_system_chip_are_one_too_many():
    with pytest.raises(ConfigError, match="chip is in \\[system\\] and \\[axes\\]; keep one"):
        spec_from_dict({"system": {"chip": "h100-sxm"}, "workload": {"kind": "decode",
                        "model": "llama-2-7b"}, "axes": {"chip": ["b200"]}})  # fmt: skip
    with pytest.raises(ConfigError, match="\\[axes\\] 'chip': unknown chip 'h1OO'"):
        spec_from_dict({"workload": {"kind": "decode", "model": "llama-2-7b"},
                        "axes": {"chip": ["h100-sxm", "h1OO"]}})  # fmt: skip


def test_a_bad_value_on_a_vector_axis_fails_its_points_only():
    # two replicas (chips 2, tp 1): batch 3 cannot be split, 2 and 4 can
    spec = _spec({"batch": [2, 3, 4], "context": [512, 4096]}, {"chips": 2, "tp": 1})
    assert vector_axes(spec) == (0, 1)
    rows = evaluate_points(spec, list(range(6)))
    assert [r["status"] for r in rows] == ["ok", "ok", "error", "error", "ok", "ok"]
    assert "--batch 3 must divide evenly over 2 replicas" in rows[2]["error"]
    assert _assert_rows_equal_single_points(spec, list(range(6))) == 4


def test_per_joule_and_per_dollar_columns_come_from_the_power_model_and_the_preset():
    from hardware import load_chip, load_system
    from sim import simulate
    from workloads import Decode, load_model

    spec = spec_from_dict({"workload": {"kind": "decode", "model": "llama-2-7b"},
                           "axes": {"chip": ["h100-sxm", "mid-14nm-144g"]}})  # fmt: skip
    h100, mid = evaluate_points(spec, [0, 1])
    chip = load_chip("h100-sxm")
    tokens = float(h100["throughput"])
    ref = simulate(Decode(model=load_model("llama-2-7b")), load_system("h100-sxm"))
    assert float(h100["energy_j"]) == pytest.approx(ref.energy_j, rel=1e-9)
    assert float(h100["avg_power_w"]) == pytest.approx(ref.energy_j / ref.time_s, rel=1e-9)
    assert float(h100["tokens_per_j"]) == pytest.approx(ref.tokens / ref.energy_j, rel=1e-9)
    assert float(h100["tokens_per_usd_hour"]) == pytest.approx(
        tokens * 3600 / chip.usd_per_hour, rel=1e-12
    )
    assert mid["tokens_per_j"] != "" and mid["tokens_per_usd_hour"] == ""  # no cited price
    assert (h100["chip"], h100["model"]) == ("h100-sxm", "llama-2-7b")


def test_shapes_fewer_than_chip_designs_are_lowered_one_by_one():
    # decode-100k: 40 batches against 2,500 chip designs; each batch's graph over its chips
    assert vector_axes(load_spec(DECODE_100K)) == ()


def test_a_spec_too_large_for_one_run_is_refused_up_front_with_the_estimate(tmp_path):
    big = _spec({"batch": list(range(1, 20_001)), "context": list(range(1, 20_001))})
    assert big.n_points == 4 * 10**8
    with pytest.raises(ConfigError, match=r"4e\+08 points is more than the 1e\+08 .* h here and"):
        run_sweep(big, tmp_path / "big.csv", workers=1, progress=False)
    assert not (tmp_path / "big.csv").exists()  # refused before anything was written


def test_resume_refuses_when_a_model_file_the_spec_names_was_edited(tmp_path):
    model = tmp_path / "m.toml"
    model.write_text(
        'name = "m"\nn_layers = 4\nhidden = 256\nn_heads = 4\nffn = 512\nvocab = 1000\n'
    )
    spec = _spec({"batch": [1, 2, 4]}, {"model": str(model)})
    out = tmp_path / "r.csv"
    run_sweep(spec, out, workers=1, progress=False)
    model.write_text(model.read_text().replace("n_layers = 4", "n_layers = 40"))
    with pytest.raises(ConfigError, match="written by a spec with other workload;"):
        run_sweep(_spec({"batch": [1, 2, 4]}, {"model": str(model)}), out, resume=True,
                  workers=1, progress=False)  # fmt: skip


def test_a_file_from_before_fingerprints_gets_one_on_resume(tmp_path):
    out = tmp_path / "r.csv"
    run_sweep(_spec(SMALL), out, workers=1, progress=False)
    (tmp_path / "r.csv.spec.json").unlink()
    run_sweep(_spec(SMALL), out, resume=True, workers=1, progress=False)
    assert (tmp_path / "r.csv.spec.json").is_file()  # protected from now on
    with pytest.raises(ConfigError, match="other workload"):
        run_sweep(_spec(SMALL, {"dtype": "fp8"}), out, resume=True, workers=1, progress=False)


def test_a_range_axis_too_long_for_one_run_is_refused_before_its_values_are_made():
    with pytest.raises(ConfigError, match=r"num 1e\+12 is more than the 1e\+08 points"):
        _spec({"batch": {"start": 1, "stop": 10**12, "num": 10**12}})
