"""The command line: JSON contract, one-line errors with no traceback, fast start."""

import json
import subprocess
import sys

import pytest

from sim.cli import main

RUN_KEYS = {"workload", "system", "time_s", "flops", "model_flops", "mfu", "mbu", "bound",
            "hbm_bytes", "memory", "throughput", "ops"}  # fmt: skip


def test_decode_json_has_the_contract_keys(capsys):
    code = main(["decode", "--model", "llama-2-7b", "--chip", "h100-sxm", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert RUN_KEYS <= set(out)
    assert {"required_bytes", "capacity_bytes", "fits"} <= set(out["memory"])
    assert out["throughput"]["tokens_per_s"] > 0
    assert out["bound"] in ("compute", "memory", "communication", "overhead")
    assert out["ops"] and {"name", "flops", "bytes", "time_s", "bound"} <= set(out["ops"][0])


def test_prefill_human_output_lists_top_ops(capsys):
    code = main(["prefill", "--model", "llama-3-8b", "--chip", "h100-sxm", "--prompt", "1024"])
    text = capsys.readouterr().out
    assert code == 0
    assert "MFU" in text and "mlp_up" in text


def test_set_override_changes_the_answer(capsys):
    main(["decode", "--model", "llama-2-7b", "--chip", "h100-sxm", "--json"])
    base = json.loads(capsys.readouterr().out)["time_s"]
    main(["decode", "--model", "llama-2-7b", "--chip", "h100-sxm", "--json", "--set",
          "hbm.bandwidth=6.7TB/s"])  # fmt: skip
    faster = json.loads(capsys.readouterr().out)["time_s"]
    assert faster < 0.7 * base


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--model", "llama-2-70b", "--chip", "h100-sxm"], "does not fit: needs"),
        (["--model", "nope", "--chip", "h100-sxm"], "unknown model 'nope'"),
        (["--model", "llama-2-7b", "--chip", "nope"], "unknown chip 'nope'"),
        (["--model", "llama-2-7b", "--chip", "h100-sxm", "--set", "hbm.bandwidth=-1TB/s"],
         "bandwidth must be > 0"),
        (["--model", "llama-2-70b", "--chip", "h100-sxm", "--chips", "3"],
         "--chips 3: with no --tp, the 3 chips run tensor-parallel, and 3 does not divide the 64"),
        (["--model", "llama-2-7b", "--chip", "h100-sxm", "--chips", "4", "--tp", "3"],
         "multiple of --tp"),
        (["--model", "llama-2-7b", "--chip", "h100-sxm", "--attention-kernel", "fa3"],
         "--attention-kernel must be one of native, fa2"),
        (["--model", "llama-2-7b", "--chip", "h100-sxm", "--tp", "2",
          "--set", "system.intra_node_latency=nan"], "*_node_latency must be a finite time"),
        (["--model", "llama-2-7b", "--chip", "h100-sxm", "--set", "overhead.kernel_s=inf"],
         "overhead.kernel_s must be >= 0"),
        (["--model", "llama-2-7b", "--chip", "h100-sxm", "--runtime", "sglang-9"],
         "unknown runtime 'sglang-9'"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_on_stderr_and_exit_2(args, match, capsys):
    code = main(["decode", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert match in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_malformed_toml_and_zero_batch_through_the_real_entry_point(tmp_path):
    bad = tmp_path / "chip.toml"
    bad.write_text("[compute\n")
    proc = subprocess.run(
        [sys.executable, "-m", "sim.cli", "decode", "--model", "llama-2-7b", "--chip", str(bad)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "malformed TOML" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "sim.cli", "decode", "--model", "llama-2-7b", "--chip", "h100-sxm",
         "--batch", "0"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2 and "--batch" in proc.stderr and "Traceback" not in proc.stderr


def test_help_imports_nothing_heavy():
    # what --help costs is measured in benchmarks/speed.py (bar 500 ms), never asserted here
    code = (
        "import sys; import sim.cli.app as c; c.build_parser().format_help(); "
        "print('matplotlib' in sys.modules, 'simpy' in sys.modules, 'numpy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert out.split() == ["False", "False", "False"]
    proc = subprocess.run([sys.executable, "-m", "sim.cli", "--help"], capture_output=True)
    assert proc.returncode == 0


def test_chips_and_models_list_presets(capsys):
    assert main(["chips"]) == 0
    assert "h100-sxm" in capsys.readouterr().out
    assert main(["models", "--json"]) == 0
    names = [row["name"] for row in json.loads(capsys.readouterr().out)]
    assert "deepseek-v3" in names


def test_version_names_the_installed_distribution(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"roofsim {version('roofsim')}"


def test_models_lists_the_dit_presets_too(capsys):
    assert main(["models", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["deepseek-v3"]["kind"] == "llm" and rows["wan2.1-14b"]["kind"] == "dit"


def test_a_closed_pipe_ends_the_command_quietly():
    # roofsim ... | head -1 with the reader already gone: the first write fails with EPIPE
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run([sys.executable, "-m", "sim.cli", "models"], stdout=write_end,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    finally:
        os.close(write_end)
    assert proc.returncode == 0 and proc.stderr == ""


def test_set_overrides_are_in_the_json_system_and_the_header(capsys):
    args = ["decode", "--model", "llama-2-7b", "--chip", "h100-sxm", "--set", "hbm.bandwidth=6TB/s"]
    assert main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["system"]["overrides"] == ["hbm.bandwidth=6TB/s"]
    assert main(args) == 0
    assert "  set         hbm.bandwidth=6TB/s" in capsys.readouterr().out.splitlines()
    assert main(args[:-2] + ["--json"]) == 0
    assert json.loads(capsys.readouterr().out)["system"]["overrides"] == []


def test_a_chip_file_that_leaves_fields_to_defaults_says_which(tmp_path, capsys):
    chip = tmp_path / "mini.toml"
    chip.write_text(
        'name = "mini"\n[compute]\n[compute.peak]\nbf16 = "400 TFLOP/s"\n'
        '[[memory]]\nname = "hbm"\ncapacity = "96 GB"\nbandwidth = "4 TB/s"\n'
    )
    assert main(["chips", "--check", str(chip), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    origins = {r["field"]: r["origin"] for r in report["fields"]}
    assert origins["hbm.achievable_fraction"].startswith("default")
    assert origins["overhead.kernel_s"].startswith("default")
    assert main(["decode", "--model", "llama-3-8b", "--chip", str(chip)]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "leaves 11 fields to defaults" in err
    assert f"roofsim chips --check {chip}" in err
    # a measured preset gives them (its on-chip levels' latencies stay at the default: listed)
    assert main(["chips", "--check", "h100-sxm", "--json"]) == 0
    origins = {r["field"]: r["origin"] for r in json.loads(capsys.readouterr().out)["fields"]}
    for field in ("compute.n_cores", "compute.sustained_clock_fraction", "hbm.achievable_fraction",
                  "overhead.kernel_s", "power.tdp", "process_nm"):  # fmt: skip
        assert origins[field] == "given", field
    assert origins["l2.latency"].startswith("default")


def test_an_explicit_zero_global_batch_is_refused_not_read_as_the_default(capsys):
    code = main(["train", "--model", "llama-2-7b", "--chip", "h100-sxm", "--chips", "8",
                 "--global-batch", "0"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "--global-batch must be an integer >= 1, got 0" in err


def test_json_output_is_strict_with_non_finite_numbers_as_null():
    from sim.cli.args import dumps

    text = dumps({"t": float("nan"), "rows": [1.0, float("inf"), -float("inf")], "n": (2, 3)})
    assert text == '{"t": null, "rows": [1.0, null, null], "n": [2, 3]}'

    def refuse(token: str) -> None:
        raise AssertionError(token)

    json.loads(text, parse_constant=refuse)  # no bare NaN / Infinity


@pytest.mark.parametrize("flag", ["--model", "--chip"])
def test_unreadable_files_are_one_line_naming_the_flag(flag, tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"\xff\xfe\x00not utf-8")
    long = str(tmp_path / ("a" * 5000)) + ".toml"  # longer than the system allows a name
    for path, match in ((bad, "not UTF-8 text (byte 0xff at offset 0)"), (long, "no file")):
        argv = ["--model", "llama-2-7b", "--chip", "h100-sxm"]
        argv[argv.index(flag) + 1] = str(path)
        assert main(["decode", *argv]) == 2
        err = capsys.readouterr().err
        assert f"{flag}" in err and match in err and err.count("\n") == 1, err


def test_an_unwritable_report_is_one_line(capsys):
    code = main(["validate", "--kind", "membw", "--report", "/nonexistent-dir/r.json"])
    err = capsys.readouterr().err
    assert code == 2 and "--report /nonexistent-dir/r.json: cannot write it" in err


# issue 23's list of inputs found by hand: each is one line naming the field, exit 2
HAND_FOUND = [
    (["plan", "--model", "llama-3-8b", "--chip", "h100-sxm", "--rate", "10",
      "--usd-per-chip-hour", "-2"], "--usd-per-chip-hour: must be a finite number > 0"),
    (["plan", "--model", "llama-3-8b", "--chip", "h100-sxm", "--rate", "10", "--slo-ttft", "-1"],
     "--slo-ttft: must be a finite number > 0"),
    (["serve", "--model", "llama-3-8b", "--chip", "h100-sxm", "--rate", "0"],
     "--rate: must be a finite number > 0"),
    (["train", "--model", "llama-2-7b", "--chip", "h100-sxm", "--chips", "8", "--tokens", "-5"],
     "--tokens (training-run tokens) must be >= 0"),
    (["train", "--model", "llama-2-7b", "--chip", "h100-sxm", "--chips", "8", "--vp", "2"],
     "it needs --pp > 1"),
    (["train", "--model", "llama-2-7b", "--chip", "h100-sxm", "--chips", "8",
      "--capacity-factor", "nan"], "--capacity-factor must be >= 1 (or 0 for dropless), got nan"),
    (["validate", "--kind", "nosuch"], "--kind nosuch: not a validation kind"),
    (["validate", "--data", "/nonexistent.toml", "--by", "vendor"],  # before the rows are read
     "--by vendor: not a row field to group by; choose from family, runtime, chip, model"),
    (["decode", "--model", "llama-2-7b", "--chip", "h100-sxm", "--set", "compute.tile_k=abc"],
     "compute.tile_k must be an integer, got 'abc'"),
    (["decode", "--model", "llama-2-7b", "--chip", "h100-sxm", "--set", "compute=5"],
     "compute must be a table of fields, got 5"),
    (["decode", "--model", "llama-2-7b", "--chip", "h100-sxm", "--set",
      "system.chips_per_node=nan"], "system.chips_per_node must be an integer, got nan"),
    (["decode", "--model", "llama-2-7b", "--chip", "h100-sxm", "--set", "compute.gemm_tiles=2.5"],
     "compute.gemm_tiles must be [[M, N], ...] of integers, got 2.5"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "match"), HAND_FOUND)
def test_inputs_found_by_hand_are_one_line(argv, match, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and match in err and "Traceback" not in err, err


def test_config_files_found_by_hand_are_one_line(tmp_path, capsys):
    cases = {
        "list.json": ("[1, 2]", "must be a JSON object of fields, got list"),
        "zero.json": ('{"num_attention_heads": 0, "hidden_size": 64, "num_hidden_layers": 1, '
                      '"intermediate_size": 8, "vocab_size": 8}',
                      "num_attention_heads must be an integer >= 1, got 0"),
        "text.json": ('{"num_attention_heads": 8, "hidden_size": "4096", "num_hidden_layers": 1, '
                      '"intermediate_size": 8, "vocab_size": 8}',
                      "hidden_size must be an integer >= 1, got '4096'"),
    }  # fmt: skip
    for name, (text, match) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        assert main(["decode", "--model", str(path), "--chip", "h100-sxm"]) == 2
        assert match in capsys.readouterr().err


def test_a_non_numeric_calibration_cell_is_one_line(tmp_path, capsys):
    csv_path = tmp_path / "gemm.csv"
    csv_path.write_text("dtype,m,n,k,time_s\nbf16,x,1,1,1\n")
    assert main(["calibrate", "--chip", "h100-sxm", "--gemm", str(csv_path)]) == 2
    assert "line 2: m must be an integer >= 1, got 'x'" in capsys.readouterr().err
