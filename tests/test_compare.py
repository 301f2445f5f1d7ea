"""roofsim compare: one workload on several chips, a row each, refusals with their reason."""

from __future__ import annotations

import argparse
import json

import pytest

from hardware import ConfigError, load_system
from sim.cli import compare as compare_cli
from sim.cost.simulate import simulate
from sim.studies import compare
from workloads import Decode, WorkloadError, load_model


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roofsim")
    compare_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def _run(argv: list[str], capsys) -> str:
    assert compare_cli.run(_parser().parse_args(["compare", *argv])) == 0
    return capsys.readouterr().out


def test_llama2_70b_decode_table_gives_each_chip_its_chip_count_and_refuses_groq(capsys):
    out = _run(["--chip", "h100-sxm,mid-14nm-144g,groq-lpu", "--model", "llama-2-70b"], capsys)
    lines = out.splitlines()
    assert lines[0].startswith("decode llama-2-70b  batch 1  context 2048  bf16")
    assert "tokens/s" in lines[2] and "MFU" in lines[2] and "tokens/J" in lines[2]
    h100 = next(line for line in lines if line.startswith("h100-sxm"))
    mid = next(line for line in lines if line.startswith("mid-14nm-144g"))
    groq = next(line for line in lines if line.startswith("groq-lpu"))
    # 138 GB of bf16 weights: two 80 GB H100s (TP 2), one 144 GB chip, no TP degree for Groq
    assert h100.split()[1] == "2" and "memory" in h100 and "yes" in h100
    assert mid.split()[1] == "1"
    assert "refused" in groq
    assert "groq-lpu: does not fit at any TP degree dividing the 64 heads (up to 64 chips)" in out
    assert "but groq-lpu has 230 MB" in out


def test_rows_equal_simulate_and_perf_per_watt_and_dollar_come_from_the_preset():
    rows = compare.compare(["h100-sxm", "mid-14nm-144g"], model="llama-2-70b", batch=8)
    h100 = rows[0]
    ref = simulate(
        Decode(model=load_model("llama-2-70b"), batch=8, tp=2), load_system("h100-sxm", 2)
    )
    assert h100.n_chips == 2 and h100.time_s == ref.time_s and h100.mfu == ref.mfu
    # 8 sequences per step / time; per joule of the derived energy; per dollar over 2 x $3.78/h
    assert h100.tokens_per_s == pytest.approx(8 / ref.time_s)
    assert h100.tokens_per_j == pytest.approx(8 / ref.energy_j)
    assert h100.chip_power_w == pytest.approx(ref.energy_j / ref.time_s / 2)
    assert h100.chip_power_w < 700  # memory-bound decode stays under the TDP
    assert h100.tokens_per_usd == pytest.approx(h100.tokens_per_s * 3600 / (2 * 3.78))
    assert rows[1].usd_per_hour is None and rows[1].tokens_per_usd is None  # hypothetical chip


def test_chips_per_refuses_a_chip_that_cannot_hold_the_model_on_that_many(capsys):
    out = _run(["--chip", "h100-sxm,mid-14nm-144g", "--model", "llama-2-70b",
                "--chips", "1", "--json"], capsys)  # fmt: skip
    data = json.loads(out)
    h100, mid = data["rows"]
    assert h100["refused"].startswith("does not fit on 1 chip: needs 139 GB per chip")
    assert h100["time_s"] is None and h100["n_chips"] is None
    assert mid["refused"] is None and mid["n_chips"] == 1 and mid["fits"] is True
    assert data["workload"] == {"kind": "decode", "model": "llama-2-70b", "batch": 1,
                                "context": 2048, "dtype": "bf16", "kv_dtype": "bf16"}  # fmt: skip


def test_prefill_compares_prompt_throughput(capsys):
    out = _run(["--chip", "h100-sxm,l40s", "--model", "llama-2-7b", "--workload", "prefill",
                "--prompt", "512", "--batch", "4"], capsys)  # fmt: skip
    assert out.startswith("prefill llama-2-7b  batch 4  prompt 512  bf16")
    rows = compare.compare(["l40s"], model="llama-2-7b", kind="prefill", prompt=512, batch=4)
    assert rows[0].tokens_per_s == pytest.approx(4 * 512 / rows[0].time_s)


def test_input_no_chip_could_run_is_an_error_not_a_row():
    with pytest.raises(ConfigError, match="^--chip: unknown chip 'h1000'; available: a100"):
        compare.compare(["h1000"], model="llama-2-7b")
    with pytest.raises(WorkloadError, match="--tp 3 must divide the 32 attention heads"):
        compare.compare(["h100-sxm"], model="llama-2-7b", tp=3)
    with pytest.raises(ConfigError, match="--chips 4 must be a multiple of --tp 3"):
        compare.compare(["h100-sxm"], model="llama-2-7b", tp=3, chips_per=4)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--chips", "h100-sxm,b200"], "argument --chips: is a count of chips, got 'h100-sxm,b200'; "
         "list chips to compare with --chip A,B,C"),
        (["--chip", "h100-sxm", "--chips-per", "2"], "argument --chips-per: was renamed: use --chips N"),
        (["--chip", "h100-sxm", "--chips", "1e3"], "argument --chips: must be an integer, got '1e3'"),
    ],
)  # fmt: skip
def test_chips_is_a_count_here_too_and_the_old_list_form_says_so(argv, message, capsys):
    """--chips means a count in every command (issue 22): compare lists its chips with --chip;
    the old list form and --chips-per are refused in one line naming the new flag."""
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(["compare", "--model", "llama-2-7b", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"roofsim compare: error: {message}"
