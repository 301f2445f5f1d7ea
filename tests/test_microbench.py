"""benchmarks/microbench/check_moe.py costs a grouped-GEMM microbenchmark's rows as the MoE
lowering costs expert GEMMs."""

import importlib.util
import math
from pathlib import Path

import pytest

from hardware import load_system
from sim.cost.roofline import cost_ops
from workloads.build import Builder

ROOT = Path(__file__).parents[1]
_spec = importlib.util.spec_from_file_location(
    "check_moe", ROOT / "benchmarks/microbench/check_moe.py"
)
check_moe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_moe)

HEADER = "device,date,layout,shape,dtype,experts,top_k,m_mean,n,k,tokens,rows_max,time_s,rows\n"


def _write(tmp_path: Path, rows: list[str]) -> Path:
    path = tmp_path / "moe.csv"
    path.write_text(HEADER + "".join(r + "\n" for r in rows))
    return path


def test_uniform_rows_cost_as_a_grouped_gemm(tmp_path):
    path = _write(tmp_path, ["gpu,d,batched,mixtral,bf16,8,2,256.0,14336,4096,1024,256,4e-4,"])
    (rec,) = check_moe.check(path, "h100-sxm")
    op = Builder("bf16", 2.0, 2.0).gemm("experts", "moe", 256, 14336, 4096, 8)
    (c,) = cost_ops([op], load_system("h100-sxm", 1), steady=False)
    assert rec["predicted_s"] == pytest.approx(c.time_s)
    assert rec["log_error"] == pytest.approx(math.log(c.time_s / 4e-4))


def test_routed_rows_pay_for_their_spread(tmp_path):
    """The same 2048 rows over 8 experts, dealt evenly or as routing deals them (one expert
    idle): the routed row counts only the experts that got rows and pads each to whole tiles
    over the routing spread, so it is never cheaper than the even split."""
    even = "gpu,d,grouped,mixtral,bf16,8,2,256.0,14336,4096,1024,256,4e-4,"
    rows = "600;300;0;248;300;200;200;200"
    spread = f"gpu,d,routed,mixtral,bf16,8,2,256.0,14336,4096,1024,600,4e-4,{rows}"
    a, b = check_moe.check(_write(tmp_path, [even, spread]), "h100-sxm")
    op = check_moe.expert_op({"layout": "routed", "experts": "8", "n": "14336", "k": "4096",
                              "m_mean": "256.0", "tokens": "1024", "top_k": "2",
                              "rows": rows})  # fmt: skip
    assert op.gemm.groups == 7 and op.gemm.m == pytest.approx(2048 / 7)
    assert op.gemm.routed_tokens == 1024 and op.gemm.routed_p == pytest.approx(2 / 8)
    assert b["predicted_s"] >= a["predicted_s"]


def test_regimes_split_at_half_and_twice_the_memory_time():
    assert check_moe.regime(1.0, 3.0) == "stream"
    assert check_moe.regime(1.0, 1.5) == "ridge"
    assert check_moe.regime(3.0, 1.0) == "compute"


def test_the_grid_is_read_from_microbench_without_torch(capsys):
    shapes, ms = check_moe.section_grid()
    assert ("mixtral-8x7b-w13-tp2", 8, 2, 14336, 4096) in shapes and 2048 in ms
    check_moe.predict("h100-sxm")
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 + len(shapes) and out[2].startswith(shapes[0][0])
