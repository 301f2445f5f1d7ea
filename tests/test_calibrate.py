"""Calibration recovers known chip parameters from synthetic microbenchmarks, and fits the H100."""

import csv
import json
from dataclasses import replace
from pathlib import Path

import pytest

from hardware import ConfigError, load_chip
from sim.cli import main
from sim.studies.calibrate import calibrate, gemm_op, gemm_times

H100 = Path(__file__).parents[1] / "benchmarks/microbench/results/h100-sxm-2026-11-23"


def _write(path: Path, rows: list[dict]) -> str:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return str(path)


def test_bandwidth_fit_recovers_t0_bandwidth_and_latency(tmp_path):
    t0, bw, lat = 2e-6, 3.0e12, 0.8e-6
    rows = []
    for p in range(12, 33):
        size = 2.0**p
        stream = size / bw
        rows.append({"op": "read", "bytes": size, "time_s": t0 + stream + min(stream, lat)})
    chip, fits = calibrate(load_chip("h100-sxm"), membw_csv=_write(tmp_path / "bw.csv", rows))
    got = {f.path: f.value for f in fits}
    assert got["overhead.kernel_s"] == pytest.approx(t0, rel=0.02)
    assert got["hbm.latency"] == pytest.approx(lat, rel=0.05)
    assert got["hbm.achievable_fraction"] == pytest.approx(bw / 3.35e12, rel=0.01)


def test_gemm_fit_recovers_the_fractions_it_was_generated_with(tmp_path):
    truth = load_chip("h100-sxm")
    memory = (
        truth.memory[0],
        replace(truth.memory[1], achievable_fraction=0.7),
        replace(truth.memory[2], achievable_fraction=0.8),
    )
    truth = replace(truth, sustained_clock_fraction=0.75, memory=memory)
    shapes = [(m, n, k) for m in (1, 16, 256, 1024, 4096, 8192) for n, k in
              ((4096, 4096), (28672, 8192), (8192, 28672), (1024, 8192))]  # fmt: skip
    rows = [
        {"dtype": "bf16", "m": m, "n": n, "k": k,
         "time_s": gemm_times(truth, [gemm_op(m, n, k, "bf16")])[0]}
        for m, n, k in shapes
    ]  # fmt: skip
    start = replace(load_chip("h100-sxm"), sustained_clock_fraction=0.5)
    chip, _ = calibrate(start, gemm_csv=_write(tmp_path / "gemm.csv", rows))
    # the best generated rate is at most the true sustained rate (tile padding only loses)
    assert chip.sustained_clock_fraction == pytest.approx(0.75, rel=0.03)
    assert chip.main_memory.achievable_fraction == pytest.approx(0.8, rel=0.05)


def test_h100_preset_carries_the_fitted_values():
    chip = load_chip("h100-sxm")
    assert chip.sustained_clock_fraction == pytest.approx(0.828)
    assert chip.kernel_overhead_s == pytest.approx(2.38e-6)
    assert chip.main_memory.latency_s == pytest.approx(0.81e-6)


def test_measured_h100_gemms_are_reproduced_within_5_percent_median():
    chip = load_chip("h100-sxm")
    with (H100 / "gemm.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["dtype"] == "bf16"]
    errors = sorted(
        abs(gemm_times(chip, [gemm_op(int(r["m"]), int(r["n"]), int(r["k"]), "bf16")])[0]
            / float(r["time_s"]) - 1)
        for r in rows
    )  # fmt: skip
    assert len(errors) > 200
    assert errors[len(errors) // 2] < 0.05


def test_calibrate_cli_writes_a_loadable_chip(tmp_path, capsys):
    out = tmp_path / "h100-cal.toml"
    code = main(["calibrate", "--chip", "h100-sxm", "--gemm", str(H100 / "gemm.csv"),
                 "--membw", str(H100 / "membw.csv"), "-o", str(out), "--json"])  # fmt: skip
    assert code == 0
    fits = {f["path"]: f["value"] for f in json.loads(capsys.readouterr().out)}
    assert 0.78 < fits["compute.sustained_clock_fraction"] < 0.86
    assert 1e-6 < fits["overhead.kernel_s"] < 4e-6
    chip = load_chip(str(out))
    assert chip.sustained_clock_fraction == pytest.approx(fits["compute.sustained_clock_fraction"])


def test_calibrate_rejects_missing_files_and_columns(tmp_path, capsys):
    with pytest.raises(ConfigError, match="no file"):
        calibrate(load_chip("h100-sxm"), gemm_csv=str(tmp_path / "none.csv"))
    bad = _write(tmp_path / "bad.csv", [{"m": 1, "n": 2}])
    with pytest.raises(ConfigError, match="missing column"):
        calibrate(load_chip("h100-sxm"), gemm_csv=bad)
    assert main(["calibrate", "--chip", "h100-sxm"]) == 2
    assert "--gemm" in capsys.readouterr().err
