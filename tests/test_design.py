"""``roofsim design``: the chip a workload mix wants under budgets (issue 20)."""

from __future__ import annotations

import copy
import csv
import json
import math
from pathlib import Path

import pytest

from hardware.area import estimate_area
from hardware.loader import apply_overrides, load_chip_dict, system_from_dict
from sim.cli import main
from sim.studies.design import design_overrides, load_spec, search

SPEC = Path(__file__).resolve().parents[1] / "benchmarks" / "designs" / "14nm-inference.toml"

CLOSED_FORM = """
[design]
name = "closed-form"
base = "mid-14nm-144g"
objective = "tokens_per_s"
reference = "mid-14nm-144g"
seed = 1
generations = 15
population = 6

[variables]
matrix_tflops = [50, 2000]

[budgets]
die_area_mm2 = 600
tdp_w = 5000

[[workload]]
kind = "prefill"
model = "llama-3-8b"
chips = 1
prompt = 4096
"""


def _write(tmp_path: Path, text: str, name: str = "spec.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_optimiser_finds_the_closed_form_optimum(tmp_path):
    # compute-bound prefill with power no object: throughput rises with the matrix rate, so the
    # best design is the fastest whose die fits the budget; die area is affine in the rate
    # (matrix, vector, control and crossbar blocks all scale with the cores), so that rate is
    # (budget - A0) / slope, from two area evaluations
    spec = load_spec(_write(tmp_path, CLOSED_FORM))
    base = load_chip_dict(spec.base)

    def area(tflops: float) -> float:
        sets = design_overrides(spec, base, {"matrix_tflops": tflops})
        system = system_from_dict(apply_overrides(copy.deepcopy(base), sets))
        return estimate_area(system.chip, system).die_area_mm2

    slope = (area(1000.0) - area(200.0)) / 800
    optimum = 200.0 + (600 - area(200.0)) / slope
    found = search(spec, progress=False).best
    assert found.values["matrix_tflops"] == pytest.approx(optimum, rel=0.01)
    assert found.die_area_mm2 <= 600


def _small_14nm(tmp_path: Path) -> Path:
    text = SPEC.read_text()
    text = text.replace("generations = 60", "generations = 4").replace(
        "population = 12", "population = 5"
    )
    assert "generations = 4" in text and "population = 5" in text
    return _write(tmp_path, text)


def test_design_writes_a_chip_every_command_accepts_and_a_pareto_front(tmp_path, capsys):
    spec_path = _small_14nm(tmp_path)
    out = tmp_path / "out"
    assert main(["design", str(spec_path), "-o", str(out), "--quiet", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (out / "pareto.png").stat().st_size > 0
    with (out / "pareto.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    # a front: more than one design, none beaten on throughput, cost and energy at once
    assert len(rows) >= 2
    per_j = [c for c in rows[0] if c.endswith(":per_j")]

    def key(r: dict) -> tuple[float, float, float]:
        geo = math.exp(sum(math.log(float(r[c])) for c in per_j) / len(per_j))
        return (float(r["relative_throughput"]), -float(r["cost_usd"]), geo)

    keys = [key(r) for r in rows]
    for i, ki in enumerate(keys):
        assert not any(all(a >= b for a, b in zip(kj, ki, strict=True)) and kj != ki
                       for kj in keys), f"pareto.csv row {i} is dominated"  # fmt: skip
    assert {"die_area_mm2", "cost_usd", "tdp_w"} <= set(rows[0])
    # the best design respects every budget and SLO of the spec
    spec = load_spec(spec_path)
    assert summary["per_die_mm2"] <= spec.budgets["die_area_mm2"]
    assert summary["memory_gb"] >= spec.budgets["memory_gb"]
    assert summary["tdp_w"] <= spec.budgets["tdp_w"]
    for w in summary["workloads"].values():
        assert w["latency_s"] <= w["slo_s"]
    # best.toml is a chip: decode runs on it, and its area is the summary's
    best = str(out / "best.toml")
    assert main(["decode", "--chip", best, "--model", "llama-3-70b", "--chips", "8",
                 "--batch", "32", "--context", "4096", "--json"]) == 0  # fmt: skip
    decode = json.loads(capsys.readouterr().out)
    label = "decode:llama-3-70b"
    assert decode["throughput"]["tokens_per_s"] / 8 == pytest.approx(
        summary["workloads"][label]["per_chip_per_s"], rel=1e-9
    )
    assert main(["area", best, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["die_area_mm2"] == pytest.approx(
        summary["die_area_mm2"], rel=1e-9
    )


def test_same_spec_and_seed_give_the_same_design_on_any_number_of_workers(tmp_path):
    spec = load_spec(_small_14nm(tmp_path))
    a, b = search(spec, progress=False, workers=1), search(spec, progress=False, workers=2)
    assert a.best.values == b.best.values and a.best.score == b.best.score

    # every design seen, in the order seen, with the same figures (an infeasible one's score
    # is NaN)
    def seen(result):
        return [(e.values, e.violations, e.score if e.feasible else None, e.cost_usd)
                for e in result.evaluations]  # fmt: skip

    assert len(a.evaluations) > 50 and seen(a) == seen(b)


@pytest.mark.parametrize(
    "edit, words",
    [
        (('objective = "tokens_per_usd"', 'objective = "mfu"'), "design.objective"),
        (("matrix_tflops = [50, 800]", "matrix_flops = [50, 800]"), "variables.matrix_flops"),
        (("matrix_tflops = [50, 800]", "matrix_tflops = [800, 50]"), "need 0 < low < high"),
        (("memory_gb = 144", "memory_gb = -1"), "budgets.memory_gb"),
        (('kind = "decode"', 'kind = "nope"'), "workload[0].kind"),
        (("slo_ms = 50 ", "slo_ms = 0.0001 "), "no design meets"),
    ],
)
def test_a_bad_spec_is_one_line_naming_the_field(tmp_path, capsys, edit, words):
    text = _small_14nm(tmp_path).read_text()
    assert edit[0] in text
    spec = _write(tmp_path, text.replace(edit[0], edit[1]), "bad.toml")
    assert main(["design", str(spec), "-o", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "\n" not in err and "Traceback" not in err


def test_a_dit_workload_and_another_node(tmp_path):
    text = CLOSED_FORM.replace('kind = "prefill"\nmodel = "llama-3-8b"\nchips = 1\nprompt = 4096',
                               'kind = "dit"\nmodel = "dit-xl-2"\nchips = 1\nsteps = 4')  # fmt: skip
    text = text.replace("generations = 15", "generations = 2")
    assert 'model = "dit-xl-2"' in text
    spec = load_spec(_write(tmp_path, text))
    result = search(spec, progress=False)
    assert result.best.throughput["dit:dit-xl-2"] > 0
    # the same design on a denser node is a smaller die
    at7 = load_spec(_write(tmp_path, text.replace('base = "mid-14nm-144g"',
                                                  'base = "mid-14nm-144g"\nnode = "n7"'), "n7.toml"))  # fmt: skip
    base = load_chip_dict(spec.base)
    areas = []
    for s in (spec, at7):
        sets = design_overrides(s, base, {"matrix_tflops": 400.0})
        system = system_from_dict(apply_overrides(copy.deepcopy(base), sets))
        areas.append(estimate_area(system.chip, system))
    assert areas[1].node.name == "n7" and areas[1].die_area_mm2 < areas[0].die_area_mm2


def test_a_training_step_in_the_mix_runs_the_event_engine(tmp_path):
    text = """
[design]
name = "train-mix"
base = "mid-14nm-144g"
objective = "tokens_per_j"
reference = "h100-sxm"
generations = 2
population = 3

[variables]
matrix_tflops = [100, 600]

[budgets]
tdp_w = 700

[[workload]]
kind = "train"
model = "gpt3-5b"
chips = 8
tp = 2
seq = 2048
global_batch = 64
zero = 1
slo_ms = 60000
"""
    spec = load_spec(_write(tmp_path, text))
    result = search(spec, progress=False)
    best = result.best
    label = "train:gpt3-5b"
    from hardware import load_system
    from sim.engine.train import simulate_training
    from sim.studies.design import _workload, best_toml

    (tmp_path / "best.toml").write_text(best_toml(result))
    ref = simulate_training(
        _workload(spec.workloads[0]), load_system(str(tmp_path / "best.toml"), 8)
    )
    assert best.throughput[label] == pytest.approx(ref.tokens_per_s / 8, rel=1e-9)
    assert best.latency_s[label] == pytest.approx(ref.step_time_s, rel=1e-9)


def test_a_design_keeps_the_share_of_cores_its_collectives_hold(tmp_path):
    """Scaled from an H100 (16 of 132 SMs held by NCCL), a design with a tenth of the matrix
    throughput holds a tenth of the collective cores, and always leaves compute a core."""
    spec = load_spec(_write(tmp_path, CLOSED_FORM.replace("mid-14nm-144g", "h100-sxm")))
    base = load_chip_dict("h100-sxm")
    for tflops, cores, held in ((989.4, 132, 16), (98.94, 13, 2), (15.0, 2, 1), (4.0, 1, 0)):
        got = dict(x.split("=", 1) for x in design_overrides(spec, base, {"matrix_tflops": tflops}))
        assert (int(got["compute.n_cores"]), int(got["system.collective_cores"])) == (cores, held)
