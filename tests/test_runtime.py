"""Runtimes (issue 17): the software an LLM runs under, as cited mechanisms."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from hardware import load_system
from sim import simulate
from sim.cli import main
from workloads import Decode, Prefill, load_model
from workloads.runtime import DEFAULT_RUNTIME, Runtime, list_runtimes, load_runtime


def _decode(runtime: Runtime, batch: int = 1, **kw):
    w = Decode(model=load_model("llama-2-7b"), batch=batch, context=512, runtime=runtime, **kw)
    return simulate(w, load_system("h100-sxm"))


def test_the_default_runtime_is_what_roofsim_modelled_before_runtimes():
    default = load_runtime()
    assert default.name == DEFAULT_RUNTIME and default.elementwise == "fused"
    assert default.cuda_graphs and default.step_overhead_s == 0
    w = Decode(model=load_model("llama-2-7b"), context=512)
    assert w.runtime == default
    assert all(op.host_s == 0 for op in w.lower().ops)


def test_eager_elementwise_runs_the_primitives_as_kernels_through_memory():
    fused = Decode(model=load_model("llama-3-8b"), context=512).lower().ops
    eager = Decode(model=load_model("llama-3-8b"), context=512,
                   runtime=load_runtime("pytorch-graph")).lower().ops  # fmt: skip
    by_name = {op.name: op for op in fused}
    for op in eager:
        if op.name.endswith(("attn_norm", "mlp_act", "rope_kv_write")):
            before = by_name[op.name]
            assert op.kernels > before.kernels and op.total_bytes > before.total_bytes
            assert op.flops == before.flops  # the same arithmetic, more launches and traffic
    assert sum(op.model_flops * op.count for op in eager) == sum(
        op.model_flops * op.count for op in fused
    )


def test_a_step_overhead_adds_exactly_its_host_time():
    base = load_runtime()
    slow = replace(base, name="slow-host", step_overhead_s=3e-3)
    a, b = _decode(base), _decode(slow)
    assert b.time_s - a.time_s == pytest.approx(3e-3, rel=1e-9)
    assert b.flops == a.flops and b.hbm_bytes == a.hbm_bytes


def test_eager_launches_bind_small_decode_and_not_large_prefill():
    eager = load_runtime("pytorch-eager")
    r = _decode(eager)
    kernels = sum(c.op.kernels * c.op.count for c in r.costs)
    assert r.time_s >= kernels * eager.host_launch_s
    assert r.bound == "overhead"
    graph = _decode(load_runtime("pytorch-graph"))
    assert r.time_s > 1.5 * graph.time_s
    # long kernels hide the launches: a 4k-token prefill is barely slower eager than graphed
    m = load_model("llama-2-7b")
    pre = [simulate(Prefill(model=m, prompt=4096, runtime=load_runtime(n)), load_system("h100-sxm"))
           for n in ("pytorch-eager", "pytorch-graph")]  # fmt: skip
    assert pre[0].time_s < 1.05 * pre[1].time_s


def test_runtime_cli_json_list_and_unknown(capsys):
    assert main(["decode", "--model", "llama-2-7b", "--chip", "h100-sxm", "--runtime",
                 "pytorch-eager", "--json"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["workload"]["runtime"] == "pytorch-eager"
    assert main(["runtimes", "--json"]) == 0
    names = [r["name"] for r in json.loads(capsys.readouterr().out)]
    assert names == list_runtimes() and DEFAULT_RUNTIME in names
    assert main(["decode", "--model", "llama-2-7b", "--chip", "h100-sxm", "--runtime", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--runtime: unknown runtime 'nope'" in err and "\n" not in err


def test_every_runtime_preset_cites_its_mechanisms():
    for name in list_runtimes():
        r = load_runtime(name)
        assert r.sources.get("source"), name
        if not r.cuda_graphs:
            assert r.sources.get("host_launch_s_source"), name
        if r.step_overhead_s:
            assert r.sources.get("step_overhead_s_source"), name
