"""Runtimes (issue 17): the software an LLM runs under, as cited mechanisms."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from hardware import load_system
from sim import simulate
from sim.cli import main
from workloads import Decode, Prefill, load_model
from workloads.ops import WorkloadError
from workloads.runtime import DEFAULT_RUNTIME, Runtime, list_runtimes, load_runtime


def _decode(runtime: Runtime, batch: int = 1, **kw):
    w = Decode(model=load_model("llama-2-7b"), batch=batch, context=512, runtime=runtime, **kw)
    return simulate(w, load_system("h100-sxm"))


def test_the_default_runtime_is_what_roofsim_modelled_before_runtimes():
    default = load_runtime()
    assert default.name == DEFAULT_RUNTIME and default.elementwise == "fused"
    assert default.cuda_graphs and default.step_overhead_s == 0
    assert default.allreduce_latency_s > 0  # serving engines' custom intra-node all-reduce
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


def test_an_eager_norm_and_rope_run_the_kernels_their_code_calls(tmp_path, monkeypatch):
    # the Meta reference's RMSNorm chain (9 kernels with the residual add) against F.rms_norm's
    # one fused kernel plus the add; its complex RoPE (3 kernels a tensor) against the split
    # halves' 7, each with the two KV-cache copies
    ref = load_runtime("pytorch-eager")
    assert (ref.rms_norm, ref.rope) == ("reference", "complex")
    mine = replace(ref, name="mine", rms_norm="native", rope="halves", training=False)
    ops = {rt.name: {op.name: op for op in Decode(model=load_model("llama-3-8b"), context=512,
                                                  runtime=rt).lower().ops}
           for rt in (ref, mine)}  # fmt: skip
    assert (ops["pytorch-eager"]["attn_norm"].kernels, ops["mine"]["attn_norm"].kernels) == (9, 2)
    assert ops["mine"]["attn_norm"].total_bytes < ops["pytorch-eager"]["attn_norm"].total_bytes
    rope = ops["pytorch-eager"]["rope_kv_write"], ops["mine"]["rope_kv_write"]
    assert (rope[0].kernels, rope[1].kernels) == (6 + 2, 14 + 2)
    assert rope[0].flops == rope[1].flops
    assert load_runtime("pytorch-graph").rms_norm == "native"  # this repository's microbenchmark
    # another kind is refused, however the runtime is made; so is the halves' missing backward
    with pytest.raises(WorkloadError, match="rope must be one of complex, halves"):
        replace(mine, rope="rotary")
    with pytest.raises(WorkloadError, match="rope = halves has no training backward"):
        replace(ref, rope="halves")
    # a preset naming another kind is refused in one line
    from workloads import runtime as runtime_module

    (tmp_path / "bad.toml").write_text('name = "bad"\nelementwise = "eager"\nrms_norm = "apex"\n')
    monkeypatch.setattr(runtime_module, "_folder", lambda: tmp_path)
    with pytest.raises(WorkloadError, match="rms_norm must be one of reference, native"):
        runtime_module._load("bad", ())


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
    assert r.time_s >= kernels * eager.host_launch_s * (1 - 1e-9)
    assert r.bound == "overhead"
    graph = _decode(replace(eager, name="eager-graphed", cuda_graphs=True))
    assert r.time_s > 1.5 * graph.time_s
    # long kernels hide the launches: a 4k-token prefill is barely slower launched from the host
    # than the same kernels graphed
    m = load_model("llama-2-7b")
    pre = [simulate(Prefill(model=m, prompt=4096, runtime=rt), load_system("h100-sxm"))
           for rt in (eager, replace(eager, name="eager-graphed", cuda_graphs=True))]  # fmt: skip
    assert pre[0].time_s < 1.05 * pre[1].time_s


def test_eager_launches_run_ahead_of_the_chip():
    """The host enqueues launches while the chip runs long kernels: an eager step takes the
    larger of its launches' host time and its chip time (the graphed twin's), not the sum of
    each op's larger one; the wait falls on the short ops, never on a GEMM that outlasts its
    launch."""
    eager = load_runtime("pytorch-eager")
    graphed = replace(eager, name="eager-graphed", cuda_graphs=True)
    m, system = load_model("llama-2-7b"), load_system("h100-sxm")
    for batch in (1, 64, 256):
        r, g = (simulate(Decode(model=m, batch=batch, context=512, runtime=rt), system,
                         check_memory=False) for rt in (eager, graphed))  # fmt: skip
        host = sum(c.op.kernels * c.op.count for c in r.costs) * eager.host_launch_s
        assert r.time_s == pytest.approx(max(host, g.time_s), rel=1e-9), batch
        per_op = sum(c.op.count * max(c.op.kernels * eager.host_launch_s, gc.time_s)
                     for c, gc in zip(r.costs, g.costs, strict=True))  # fmt: skip
        assert r.time_s <= per_op * (1 + 1e-9)
        for c, gc in zip(r.costs, g.costs, strict=True):
            if c.op.kernels * eager.host_launch_s <= gc.time_s:  # outlasts its launches
                assert c.time_s == pytest.approx(gc.time_s, rel=1e-9), c.op.name
    assert r.time_s < per_op  # batch 256: long GEMMs hide short ops' launches


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
        for key in (
            "step_overhead_s",
            "step_overhead_per_seq_s",
            "output_per_seq_s",
            "server_per_seq_s",
            "async_output",
            "allreduce_latency_s",
            "allreduce_bus_bandwidth",
            "attention_kernel",
            "graph_max_tokens",
            "piecewise_break_s",
            "decode_full_graphs",
            "gqa_repeat",
            "separate_projections",
        ):
            if getattr(r, key):
                assert r.sources.get(f"{key}_source"), (name, key)
        if r.scheduler_steps > 1:
            assert r.sources.get("scheduler_steps_source"), name
        if r.kv_cache != "inplace":
            assert r.sources.get("kv_cache_source"), name
        if r.fsdp:
            assert r.sources.get("fsdp_source"), name
        for key in ("block_fp8_gemm", "block_fp8_gemm_unaligned"):  # off the default: cited
            if getattr(r, key) != "deepgemm":
                assert r.sources.get(f"{key}_source"), (name, key)
        if r.block_fp8_fallback:
            assert r.sources.get("block_fp8_fallback_source"), name
            assert r.sources.get("block_fp8_native_source"), name
        if r.grouped_topk_kernels != 1:
            assert r.sources.get("grouped_topk_kernels_source"), name
        if r.mla_decode_kernels:
            assert r.sources.get("mla_decode_kernels_source"), name
        if {r.sampler(m) for m in ("greedy", "random", "top-p")} != {(2.0, 1)}:  # the sampler's
            assert r.sources.get("sampler_greedy_bytes_source"), name  # citation covers all three


def test_async_output_processing_shows_only_where_longer_than_the_step():
    """vLLM 0.6's output processor runs beside the next step: a step waits only for the part of
    it longer than its chip time (a batch-1 step hides it, a slow host shows through)."""
    base = load_runtime()
    on = replace(base, name="async", output_per_seq_s=1e-4, async_output=True)
    off = replace(on, name="sync", async_output=False)
    t0, t_on, t_off = (_decode(r, batch=8).time_s for r in (base, on, off))
    assert t_on == pytest.approx(t0, rel=1e-12)  # 0.8 ms of output beside a ~7 ms step
    assert t_off == pytest.approx(t0 + 8e-4, rel=1e-9)
    slow = replace(on, output_per_seq_s=2e-3)  # 16 ms of output: longer than the step
    assert _decode(slow, batch=8).time_s == pytest.approx(16e-3, rel=1e-9)


def test_multi_step_scheduling_pays_the_scheduler_once_per_group():
    base = replace(load_runtime(), name="host", step_overhead_s=4e-3, step_overhead_per_seq_s=2e-5)
    t0 = _decode(load_runtime(), batch=16).time_s
    one, ten = (_decode(replace(base, scheduler_steps=n), batch=16).time_s for n in (1, 10))
    assert one - t0 == pytest.approx(4e-3 + 16 * 2e-5, rel=1e-9)
    assert ten - t0 == pytest.approx((4e-3 + 16 * 2e-5) / 10, rel=1e-9)
    served = replace(base, scheduler_steps=10, server_per_seq_s=3e-5)  # per step, every step
    assert _decode(served, batch=16).time_s - ten == pytest.approx(16 * 3e-5, rel=1e-9)


def test_a_variant_preset_takes_its_bases_fields_and_sources():
    base, server = load_runtime("vllm-0.5"), load_runtime("vllm-0.5-server")
    assert server.name == "vllm-0.5-server" and server.server_per_seq_s > 0
    assert server.step_overhead_s == base.step_overhead_s
    assert server.step_overhead_per_seq_s == base.step_overhead_per_seq_s
    assert server.sources["step_overhead_s_source"] == base.sources["step_overhead_s_source"]
    assert server.sources["source"] != base.sources["source"]
    multi = load_runtime("vllm-0.6-multistep-server")
    assert multi.scheduler_steps == 10 and multi.async_output


def test_serving_charges_host_time_per_sequence_not_per_prompt_token():
    """A serving iteration's host time counts the sequences in it: a 2048-token prompt chunk
    is one sequence to the scheduler, not 2048."""
    from sim.engine.serve import IterationCost
    from workloads.serving import LengthDist, Serving

    m = load_model("llama-3-8b")
    host = replace(load_runtime(), name="host", step_overhead_s=1e-3, step_overhead_per_seq_s=1e-4)
    kw = dict(model=m, rate=1.0, duration_s=1.0,
              prompt=LengthDist.parse("100", "--prompt-dist", m.max_seq),
              output=LengthDist.parse("10", "--output-dist", m.max_seq))  # fmt: skip
    costs = [IterationCost(Serving(**kw, runtime=r), load_system("h100-sxm"))
             for r in (load_runtime(), host)]  # fmt: skip
    plain, slow = (c.iteration(4, 4 * 300, [(2048, 2048)], 5).time_s for c in costs)
    assert slow - plain == pytest.approx(1e-3 + 5 * 1e-4, rel=1e-9)


def test_multi_step_does_not_discount_a_step_with_prompts():
    """vLLM runs a step that prefills as a single step: its scheduler time is paid in full."""
    multi = replace(load_runtime(), name="multi", step_overhead_s=4e-3, scheduler_steps=10)
    m = load_model("llama-2-7b")
    pre = [simulate(Prefill(model=m, prompt=128, runtime=r), load_system("h100-sxm")).time_s
           for r in (load_runtime(), multi)]  # fmt: skip
    assert pre[1] - pre[0] == pytest.approx(4e-3, rel=1e-9)
    assert multi.host_step_s(8) == pytest.approx((4e-4, 0.0))
    assert multi.host_step_s(8, decode_only=False) == pytest.approx((4e-3, 0.0))


def test_a_pipelined_decode_charges_the_host_for_every_sequence_of_the_round():
    host = replace(load_runtime(), name="host", step_overhead_per_seq_s=1e-4)
    m, system = load_model("llama-2-7b"), load_system("h100-sxm", 4)
    for pp in (1, 2, 4):
        w = Decode(model=m, batch=64, context=512, pp=pp, runtime=host)
        (step,) = [op for op in w.lower().ops if op.name == "host_step"]
        assert step.host_s == pytest.approx(64 * 1e-4), pp
    assert simulate(Decode(model=m, batch=64, context=512, pp=4, runtime=host), system).time_s


def test_variant_presets_need_their_own_name_and_cite_only_what_they_keep(tmp_path, monkeypatch):
    import workloads.runtime as rt

    folder = tmp_path / "runtimes"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "base.toml").write_text('name = "base"\nsource = "s"\nstep_overhead_s = 3e-3\n'
                                      'step_overhead_s_source = "3 ms, cited"\n')  # fmt: skip
    (folder / "v.toml").write_text('base = "base"\nfull_name = "V"\nstep_overhead_s = 1e-3\n')
    (folder / "nameless.toml").write_text('base = "base"\n')
    (folder / "a.toml").write_text('base = "b"\nfull_name = "A"\n')
    (folder / "b.toml").write_text('base = "a"\nfull_name = "B"\n')
    monkeypatch.setattr(rt, "_folder", lambda: folder)
    rt.load_runtime.cache_clear()
    try:
        v = rt.load_runtime("v")
        assert v.step_overhead_s == 1e-3 and "step_overhead_s_source" not in v.sources
        assert v.full_name == "V" and v.sources["source"] == "s"
        with pytest.raises(WorkloadError, match="needs its own full_name"):
            rt.load_runtime("nameless")
        with pytest.raises(WorkloadError, match="cycle"):
            rt.load_runtime("a")
        (folder / "typo.toml").write_text(
            'base = "base"\nfull_name = "T"\nring_atention = "torch"\n'
        )
        with pytest.raises(WorkloadError, match="unknown field 'ring_atention'"):
            rt.load_runtime("typo")
    finally:
        rt.load_runtime.cache_clear()


def test_a_training_runtime_sets_how_elementwise_work_runs(capsys):
    """`train --runtime` names the training software: its elementwise mode is the runtime's, an
    --elementwise that contradicts it is one line, and the JSON and header name it."""
    base = ["train", "--model", "llama-3-8b", "--chip", "h100-sxm", "--chips", "8", "--zero", "3"]
    steps = {}
    for runtime in ("megatron-core", "pytorch-eager"):
        assert main([*base, "--runtime", runtime, "--json"]) == 0
        d = json.loads(capsys.readouterr().out)
        assert d["workload"]["runtime"] == runtime
        assert d["workload"]["elementwise"] == load_runtime(runtime).elementwise
        steps[runtime] = d["step_time_s"]
    assert steps["pytorch-eager"] > steps["megatron-core"]  # unfused primitives move more bytes
    assert main([*base, "--runtime", "pytorch-eager", "--elementwise", "fused"]) == 2
    err = capsys.readouterr().err.strip()
    assert "contradicts --runtime pytorch-eager" in err and "\n" not in err
    assert main([*base, "--runtime", "torch-compile"]) == 0
    assert "runtime torch-compile" in capsys.readouterr().out.splitlines()[0]


def test_training_takes_only_training_runtimes_and_defaults_to_the_runtimes_mode(capsys):
    from workloads.training import Training

    m = load_model("llama-3-8b")
    t = Training(model=m, dp=8, global_batch=8, runtime="pytorch-eager")
    t.validate()
    assert t.elementwise == "eager"  # no --elementwise given: the runtime's
    assert Training(model=m, dp=8, global_batch=8).elementwise == "fused"
    with pytest.raises(WorkloadError, match="not a training runtime; training runtimes: "):
        Training(model=m, dp=8, global_batch=8, runtime="vllm-0.6").validate()
    argv = ["train", "--model", "llama-3-8b", "--chip", "h100-sxm", "--chips", "8", "--zero", "3",
            "--runtime", "vllm-0.6"]  # fmt: skip
    assert main(argv) == 2
    assert "megatron-core" in capsys.readouterr().err


def test_a_custom_all_reduce_is_flat_in_the_group_inside_a_node_and_nccl_beyond():
    """vLLM's / TensorRT-LLM's / IntraNodeComm's all-reduce reads the peers' buffers in one
    launch: its small-message time hardly grows with the group, where NCCL's ring pays 2(p-1)
    steps; a large message, or a group across nodes, runs on NCCL as before."""
    from sim.cost.roofline import cost_ops
    from workloads.build import Builder
    from workloads.runtime import all_reduces

    custom, nccl = load_runtime("gpt-fast"), load_runtime("pytorch-graph")
    assert custom.allreduce_latency_s > 0 and nccl.allreduce_latency_s == 0

    def t(size: float, p: int, runtime: Runtime, chips_per_node: int = 8) -> float:
        op = Builder(dtype="bf16", act_bytes=2.0, weight_bytes=2.0).collective(
            "ar", "all_reduce", size, p
        )
        system = load_system("a100-sxm-80gb", max(p, 1))
        if chips_per_node != 8:
            system = replace(system, chips_per_node=chips_per_node)
        return cost_ops(all_reduces([op], runtime), system)[0].time_s

    small = 8192.0  # one token's hidden state of a 4096-wide model in bf16
    assert t(small, 8, custom) < 0.5 * t(small, 8, nccl)  # ring: 14 steps
    assert t(small, 8, custom) < 1.2 * t(small, 2, custom)  # flat in the group
    assert t(small, 8, custom) == pytest.approx(custom.allreduce_latency_s, rel=0.05)
    big = 256e6
    assert t(big, 8, custom) == pytest.approx(t(big, 8, nccl), rel=1e-12)  # NCCL is faster
    # the kernels run on at most 8 GPUs: a 16-chip group inside a larger node stays on NCCL
    assert t(small, 16, custom, chips_per_node=16) == pytest.approx(
        t(small, 16, nccl, chips_per_node=16), rel=1e-12
    )
    # a group spanning nodes never takes the intra-node kernel
    assert t(small, 8, custom, chips_per_node=4) == pytest.approx(
        t(small, 8, nccl, chips_per_node=4), rel=1e-12
    )


def test_sglang_keeps_nccl_off_the_switch_reduction_and_vllm_does_not():
    """SGLang sets NCCL_NVLS_ENABLE=0 unless --enable-nccl-nvls (PR #631, #3502): a TP8
    prefill's all-reduce too large for its custom kernel runs on NCCL's ring, where vLLM's
    (NCCL's default) may reduce in the H100's NVSwitch. PR #3502 measured NVLS's all-reduce
    ~18 % faster (1023 -> 844 us) on 8 H100; roofsim's fitted ring and NVLS give a 64 MiB
    all-reduce 1.3-1.5x apart."""
    from sim.cost.roofline import cost_ops
    from workloads.build import Builder
    from workloads.runtime import all_reduces

    sglang, vllm = load_runtime("sglang-0.4"), load_runtime("vllm-0.6")
    assert not sglang.nccl_nvls and vllm.nccl_nvls
    assert not load_runtime("sglang-0.5").nccl_nvls  # inherited
    system = load_system("h100-sxm", 8)

    def t(size: float, p: int, runtime: Runtime) -> float:
        op = Builder(dtype="bf16", act_bytes=2.0, weight_bytes=2.0).collective(
            "ar", "all_reduce", size, p
        )
        return cost_ops(all_reduces([op], runtime), system)[0].time_s

    big = 64 * 2**20  # 4096 tokens x 8192 hidden in bf16: beyond the custom kernels' 8 MiB
    link = system.intra_node
    ring = (2 * 7 / 8 * big / (link.bandwidth_bytes_per_s * link.achievable_fraction)
            + 14 * link.simple_latency_s)  # fmt: skip
    assert t(big, 8, sglang) == pytest.approx(ring + system.chip.kernel_overhead_s, rel=0.02)
    assert 1.3 < t(big, 8, sglang) / t(big, 8, vllm) < 1.5
    # below three chips NCCL has no NVLS anyway, and a small message takes the custom kernel
    assert t(big, 2, sglang) == pytest.approx(t(big, 2, vllm), rel=1e-12)
    assert t(8192.0, 8, sglang) == pytest.approx(t(8192.0, 8, vllm), rel=1e-12)


def test_vllm_v1_prefill_gathers_paged_kv_by_pointer_loads_on_hopper_only():
    """vLLM V1 writes a chunk's K/V into the 16-token-block cache and attends over the cache
    through its block table; FlashAttention-3 feeds paged K/V by TMA only at page sizes that
    are multiples of its 128-key block, so on Hopper the prefill attention's on-chip work runs
    at the pointer-load ratio measured for Hopper's GEMMs (~1.14x). Decode (a short query
    block: the pointer path either way), an Ampere chip (no TMA) and V0 (FlashAttention-2)
    are unchanged."""
    from sim.cost.roofline import _POINTER_LOADS, cost_ops

    m, v1 = load_model("llama-3-8b"), load_runtime("vllm-v1")
    assert v1.paged_prefill and not load_runtime("vllm-0.6").paged_prefill
    contiguous = replace(v1, paged_prefill=False)

    def attention(runtime, chip, **kw):
        w = (Prefill(model=m, prompt=8192, runtime=runtime) if not kw
             else Decode(model=m, runtime=runtime, **kw))  # fmt: skip
        op = next(o for o in w.lower().ops if o.attention is not None)
        return cost_ops([op], load_system(chip, 1))[0]

    paged, plain = attention(v1, "h100-sxm"), attention(contiguous, "h100-sxm")
    assert paged.compute_s == pytest.approx(plain.compute_s * _POINTER_LOADS, rel=0.02)
    assert paged.time_s > 1.08 * plain.time_s  # a long prompt's attention is compute-bound
    for chip, kw in (("a100-sxm-80gb", {}), ("h100-sxm", {"batch": 64, "context": 4096})):
        assert attention(v1, chip, **kw).time_s == pytest.approx(
            attention(contiguous, chip, **kw).time_s, rel=1e-12
        )
    # MLA's prefill attends the K/V it up-projected (contiguous), not the cache
    mla = Prefill(model=load_model("deepseek-v3"), prompt=1024, tp=8, runtime=v1).lower()
    assert not any(o.attention.paged for o in mla.ops if o.attention is not None)


def test_gpt_fast_decode_at_tp8_is_faster_than_at_tp4():
    """Issue 17: Llama-2-7B at batch 1 on 8 A100s under gpt-fast (IntraNodeComm all-reduces)
    measured 328 tokens/s at TP8 against 254 at TP4; with NCCL's ring latency roofsim had TP8
    no faster than TP4."""
    m, gpt_fast = load_model("llama-2-7b"), load_runtime("gpt-fast")
    rate = {}
    for tp in (4, 8):
        w = Decode(model=m, batch=1, context=105, tp=tp, runtime=gpt_fast)
        rate[tp] = simulate(w, load_system("a100-sxm-80gb", tp)).throughput["tokens_per_s"]
    assert rate[8] > 1.2 * rate[4]


def _preset_refused(tmp_path, monkeypatch, text: str, match: str) -> None:
    """A runtime preset of ``text`` fails to load with an error matching ``match``."""
    import workloads.runtime as rt

    folder = tmp_path / "runtimes"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "odd.toml").write_text(text)
    monkeypatch.setattr(rt, "_folder", lambda: folder)
    rt.load_runtime.cache_clear()
    try:
        with pytest.raises(WorkloadError, match=match):
            rt.load_runtime("odd")
    finally:
        rt.load_runtime.cache_clear()


def test_a_custom_all_reduce_runs_on_two_pcie_chips_at_most():
    """vLLM's and SGLang's custom all-reduce refuse more than two GPUs that share only PCIe
    (``System.peer_all_reduce_max_group``): on four PCIe L40S a small all-reduce costs NCCL's
    ring, on two it may take the runtime's kernel, and on NVLink parts any group of a node."""
    from sim.cost.roofline import cost_ops
    from workloads.build import Builder
    from workloads.runtime import all_reduces

    custom, nccl = load_runtime("vllm-0.6"), load_runtime("pytorch-graph")

    def t(chip: str, p: int, runtime: Runtime, **changes: int) -> float:
        op = Builder(dtype="bf16", act_bytes=2.0, weight_bytes=2.0).collective(
            "ar", "all_reduce", 65536.0, p
        )
        system = replace(load_system(chip, p), **changes)
        return cost_ops(all_reduces([op], runtime), system)[0].time_s

    assert load_system("l40s", 4).peer_all_reduce_max_group == 2
    assert t("l40s", 4, custom) == pytest.approx(t("l40s", 4, nccl), rel=1e-12)
    assert t("l40s", 4, custom, peer_all_reduce_max_group=8) < 0.7 * t("l40s", 4, nccl)
    assert t("l40s", 2, custom) < t("l40s", 2, nccl)
    assert t("h100-sxm", 4, custom) < 0.8 * t("h100-sxm", 4, nccl)


def test_a_custom_all_reduce_needs_its_latency_and_bandwidth_together(tmp_path, monkeypatch):
    _preset_refused(tmp_path, monkeypatch, 'name = "odd"\nsource = "s"\nint4_group_bytes = 0\n',
                    "int4_group_bytes must be the bytes")  # fmt: skip
    _preset_refused(tmp_path, monkeypatch, 'name = "odd"\nsource = "s"\nallreduce_latency_s = 5e-6\n',
                    "allreduce_latency_s and allreduce_bus_bandwidth")  # fmt: skip


def test_the_runtimes_attention_kernel_applies_where_the_workload_names_none():
    """PyTorch's SDPA and vLLM 0.5-0.6 run FlashAttention-2: on an H100 a prefill under them is
    slower than under the chip's native kernel, unless the workload names its kernel."""
    m, system = load_model("llama-3-8b"), load_system("h100-sxm")
    vllm, native = load_runtime("vllm-0.6"), load_runtime("tensorrt-llm")
    assert vllm.attention_kernel == "fa2" and native.attention_kernel == ""
    w = Prefill(model=m, prompt=8192, runtime=vllm)
    assert w.attention_kernel == "fa2"
    assert Prefill(model=m, prompt=8192, runtime=native).attention_kernel == "native"
    named = Prefill(model=m, prompt=8192, runtime=vllm, attention_kernel="native")
    assert named.attention_kernel == "native"

    def attention_s(w):
        return sum(c.time_s for c in simulate(w, system).costs if c.op.kind.value == "attention")

    assert attention_s(w) > 1.3 * attention_s(named)
    # mmha is a decode kernel: a prefill that names it runs the runtime's kernel, not native
    mmha = Prefill(model=m, prompt=8192, runtime=vllm, attention_kernel="mmha")
    assert attention_s(mmha) == pytest.approx(attention_s(w), rel=1e-12)


def test_decode_only_graphs_run_a_step_with_prompts_eager():
    """vLLM's V0 engine and SGLang replay CUDA graphs for decode batches only: a prefill, and a
    serving iteration with prompt chunks, launches its kernels from the host (host_launch_s
    each, running ahead of the chip); a decode step is unchanged."""
    from sim.engine.serve import IterationCost
    from workloads.serving import LengthDist, Serving

    graphs = load_runtime()
    split = replace(graphs, name="split", prefill_graphs=False, host_launch_s=40e-6)
    eager = replace(split, name="eager", cuda_graphs=False)
    m, system = load_model("llama-3-8b"), load_system("h100-sxm")
    dec = [simulate(Decode(model=m, batch=4, context=512, runtime=r), system).time_s
           for r in (graphs, split)]  # fmt: skip
    assert dec[1] == dec[0]
    pre = [simulate(Prefill(model=m, prompt=64, runtime=r), system) for r in (graphs, split, eager)]
    kernels = sum(c.op.kernels * c.op.count for c in pre[1].costs if c.op.kernels > 0)
    assert pre[1].time_s == pytest.approx(max(pre[0].time_s, kernels * 40e-6), rel=1e-6)
    assert pre[1].time_s > pre[0].time_s and pre[1].time_s == pytest.approx(pre[2].time_s)
    kw = dict(model=m, rate=1.0, duration_s=1.0,
              prompt=LengthDist.parse("100", "--prompt-dist", m.max_seq),
              output=LengthDist.parse("10", "--output-dist", m.max_seq))  # fmt: skip
    g, s = (IterationCost(Serving(**kw, runtime=r), system) for r in (graphs, split))
    assert s.iteration(4, 4 * 300, [], 4).time_s == g.iteration(4, 4 * 300, [], 4).time_s
    mixed = s.iteration(4, 4 * 300, [(64, 64)], 5)
    assert mixed.time_s > g.iteration(4, 4 * 300, [(64, 64)], 5).time_s
    # a long chunk's chip time covers its launches
    long = [c.iteration(0, 0, [(4096, 4096)], 1).time_s for c in (g, s)]
    assert long[1] == pytest.approx(long[0], rel=1e-9)


def test_decode_only_graphs_need_the_eager_launch_time():
    with pytest.raises(WorkloadError, match="host_launch_s must be > 0 where prefill_graphs"):
        replace(load_runtime(), name="x", prefill_graphs=False)


def test_a_bad_prefill_graphs_value_is_a_one_line_error(tmp_path, monkeypatch):
    _preset_refused(tmp_path, monkeypatch, 'name = "odd"\nprefill_graphs = "no"\n',
                    "prefill_graphs must be true or false, got 'no'")  # fmt: skip


def test_an_eager_iteration_launches_one_attention_for_all_its_prompt_chunks():
    """Under decode-only graphs, an iteration with two prompt chunks launches the same kernels
    as one with a single chunk: the chunks share one variable-length attention launch a layer."""
    from sim.engine.serve import IterationCost
    from workloads.serving import LengthDist, Serving

    m = load_model("llama-3-8b")
    split = replace(load_runtime(), name="split", prefill_graphs=False, host_launch_s=200e-6)
    kw = dict(model=m, rate=1.0, duration_s=1.0,
              prompt=LengthDist.parse("100", "--prompt-dist", m.max_seq),
              output=LengthDist.parse("10", "--output-dist", m.max_seq))  # fmt: skip
    cost = IterationCost(Serving(**kw, runtime=split), load_system("h100-sxm"))
    one = cost.iteration(0, 0, [(64, 64)], 1)
    two = cost.iteration(0, 0, [(32, 32), (32, 32)], 2)
    # host-bound at 200 us a kernel: the same launches, so the same time
    assert two.time_s == pytest.approx(one.time_s, rel=1e-9)


def test_a_separate_fp8_quant_kernel_precedes_each_fp8_linear_where_the_runtime_has_one():
    """vLLM/SGLang quantise an fp8 linear's input in a kernel of its own (ops.scaled_fp8_quant,
    per_token_group_quant_fp8); TensorRT-LLM fuses it into the kernel before; bf16 has none."""

    def ops(model, runtime, dtype="fp8", batch=4):
        w = Decode(model=load_model(model), batch=batch, context=512, dtype=dtype,
                   runtime=load_runtime(runtime), tp=2 if model == "mixtral-8x7b" else 1)  # fmt: skip
        return w.lower().ops

    vllm = ops("llama-3-8b", "vllm-0.6")
    quant = [op for op in vllm if op.name.endswith("_fp8_quant")]
    assert sorted(op.name for op in quant) == sorted(
        f"{n}_fp8_quant" for n in ("qkv_proj", "o_proj", "mlp_up", "mlp_down")
    )
    by = {op.name: op for op in vllm}
    for op in quant:  # one kernel reading the GEMM's 16-bit input, writing it in fp8
        g = by[op.name.removesuffix("_fp8_quant")].gemm
        assert op.kernels == 1 and op.count == by[op.name.removesuffix("_fp8_quant")].count
        assert op.bytes["activation"] == pytest.approx(g.m * g.k * (2 + 1))
        assert g.a_bytes == 1.0  # and the GEMM reads its input in fp8
    trt = ops("llama-3-8b", "tensorrt-llm")
    assert not any(op.name.endswith("_fp8_quant") for op in trt)
    # fused: the kernel before wrote the input in fp8, so the GEMM reads it so (tensor cores
    # take fp8 operands); the 16-bit LM head reads 16 bits
    gemms = {op.name: op.gemm for op in trt if op.gemm is not None}
    assert {gemms[n].a_bytes for n in ("qkv_proj", "o_proj", "mlp_up", "mlp_down")} == {1.0}
    assert gemms["lm_head"].a_bytes == 2.0
    fp4 = {op.name: op.gemm for op in ops("llama-3-8b", "tensorrt-llm", "fp4") if op.gemm}
    assert fp4["mlp_up"].a_bytes == pytest.approx(0.5625)  # 4 bits and a scale per 16
    assert not any(op.name.endswith("_fp8_quant") for op in ops("llama-3-8b", "vllm-0.6", "bf16"))
    # plain PyTorch casts before torch._scaled_mm in kernels of its own (and its variants)
    for eager in ("pytorch-eager", "hf-transformers", "pytorch-graph"):
        assert sum(op.name.endswith("_fp8_quant") for op in ops("llama-3-8b", eager)) == 4
    # the MoE gate and the LM head stay 16-bit; the fused MoE quantises each token once
    moe = ops("mixtral-8x7b", "vllm-0.6")
    names = {op.name for op in moe}
    assert "router_fp8_quant" not in names and "lm_head_fp8_quant" not in names
    up = next(op for op in moe if op.name == "experts_up_fp8_quant")
    assert up.bytes["activation"] == pytest.approx(4 * 4096 * 3)  # T x hidden, not x top-k
    # and it costs time: the step is slower than without the kernels
    sys = load_system("h100-sxm")
    w = Decode(model=load_model("llama-3-8b"), batch=4, context=512, dtype="fp8",
               runtime=load_runtime("vllm-0.6"))  # fmt: skip
    fused = replace(w, runtime=replace(w.runtime, fp8_input_quant="fused"))
    assert simulate(w, sys).time_s > simulate(fused, sys).time_s


def test_an_unknown_fp8_input_quant_is_a_one_line_error():
    with pytest.raises(WorkloadError, match="fp8_input_quant must be one of fused, separate"):
        Runtime(name="x", fp8_input_quant="sometimes")


def test_piecewise_graphs_charge_each_attention_break_and_hide_it_behind_long_layers():
    """vLLM V1 captures the step in pieces between the attention calls, which run eagerly
    (``piecewise_break_s`` of host time each): the host runs ahead of the chip, so a layer whose
    chip time outlasts the break hides it, and a model of short layers waits for it."""
    v1 = load_runtime("vllm-v1")
    assert v1.piecewise_break_s > 0 and v1.cuda_graphs
    full = replace(v1, name="full", piecewise_break_s=0.0)
    ops = Decode(model=load_model("llama-3-8b"), context=512, runtime=v1).lower().ops
    assert {op.host_s for op in ops if op.kind.value == "attention"} == {v1.piecewise_break_s}
    assert all(op.host_s == 0 for op in ops if op.kind.value == "gemm")
    system = load_system("h100-sxm")
    t = [simulate(Decode(model=load_model("llama-3-8b"), context=512, runtime=r), system).time_s
         for r in (full, v1)]  # fmt: skip
    assert t[1] == pytest.approx(t[0], rel=1e-9)  # 32 breaks of 14 us behind 5 ms of weights
    slow = replace(v1, name="slow", piecewise_break_s=1e-3)  # a break longer than a layer
    t_slow = simulate(Decode(model=load_model("llama-3-8b"), context=512, runtime=slow),
                      system).time_s  # fmt: skip
    # host-bound: the 32 breaks outlast the chip's work, then the step's own host time
    assert t_slow == pytest.approx(32 * 1e-3 + float(v1.host_step_s(1)[0]), rel=1e-6)


def test_steps_larger_than_the_captured_sizes_launch_eagerly():
    """V1 replays graphs for steps of up to 512 token rows; a larger step launches every kernel
    from the host (``host_launch_s``), hidden behind a long step's chip time."""
    v1 = load_runtime("vllm-v1")
    assert v1.graph_max_tokens == 512
    assert v1.graphed(tokens=512) and not v1.graphed(tokens=513) and v1.graphed()
    m = load_model("llama-3-8b")
    small = Prefill(model=m, prompt=512, runtime=v1).lower().ops
    large = Prefill(model=m, prompt=1024, runtime=v1).lower().ops
    assert all(op.host_s == 0 for op in small if op.kind.value == "gemm")
    assert all(op.host_s == op.kernels * v1.host_launch_s for op in large
               if op.kernels > 0 and op.kind.value != "collective")  # fmt: skip
    # per point: a vector of batches across the limit gets each side's launches
    import numpy as np

    from workloads.llm import Decode as D

    ops = D(model=m, batch=np.array([256, 1024]), context=512, runtime=v1).lower().ops
    gemm = next(op for op in ops if op.kind.value == "gemm")
    assert np.allclose(gemm.host_s, [0.0, gemm.kernels * v1.host_launch_s])


@pytest.mark.parametrize("value", ["-1", "true", "512.0"])
def test_a_bad_graph_max_tokens_is_a_one_line_error(tmp_path, monkeypatch, value):
    _preset_refused(tmp_path, monkeypatch, f'name = "odd"\ngraph_max_tokens = {value}\n',
                    "graph_max_tokens must be an integer >= 0")  # fmt: skip


def test_graph_limits_and_full_decode_graphs_need_what_they_refer_to(tmp_path, monkeypatch):
    with pytest.raises(WorkloadError, match="host_launch_s must be > 0 where graph_max_tokens"):
        replace(load_runtime(), name="x", graph_max_tokens=512, host_launch_s=0.0)
    _preset_refused(
        tmp_path,
        monkeypatch,
        'name = "odd"\ndecode_full_graphs = true\n',
        "decode_full_graphs needs cuda_graphs = true and piecewise_break_s > 0",
    )


def test_serving_pays_a_piecewise_graphs_breaks_once_per_iteration():
    """A serving iteration under piecewise graphs makes one eager attention call per layer for
    all its decodes and prompt chunks (vLLM V1's varlen attention): the breaks are charged once,
    a decode-only iteration under full decode graphs (vLLM 0.11) pays none and its mixed ones
    do; an iteration of more rows than the graphs capture launches every kernel eagerly."""
    from sim.engine.serve import IterationCost
    from workloads.serving import LengthDist, Serving

    m, system = load_model("llama-3-8b"), load_system("h100-sxm")
    v1, v11 = load_runtime("vllm-v1"), load_runtime("vllm-0.11")
    none = replace(v1, name="none", piecewise_break_s=0.0)
    kw = dict(model=m, rate=1.0, duration_s=1.0,
              prompt=LengthDist.parse("100", "--prompt-dist", m.max_seq),
              output=LengthDist.parse("10", "--output-dist", m.max_seq))  # fmt: skip
    cost = {r.name: IterationCost(Serving(**kw, runtime=r), system) for r in (v1, none)}
    slow = replace(v1, name="slow", piecewise_break_s=1e-3)  # breaks that outlast the chip
    cost["slow"] = IterationCost(Serving(**kw, runtime=slow), system)
    layers = m.n_layers
    # host-bound by the breaks: the iteration takes them once, mixed or not
    for chunks in ([], [(64, 64)], [(64, 64), (32, 32)]):
        w = cost["slow"].iteration(4, 4 * 300, chunks, 4 + len(chunks))
        assert w.time_s == pytest.approx(layers * 1e-3 + float(slow.host_step_s(4 + len(chunks),
                                         decode_only=not chunks)[0]), rel=1e-6)  # fmt: skip
    slow11 = replace(v11, name="slow11", piecewise_break_s=1e-3)
    c11 = IterationCost(Serving(**kw, runtime=slow11), system)
    # vLLM 0.11: a decode-only iteration replays one full graph (no breaks), a mixed one pays
    assert c11.iteration(4, 4 * 300, [], 4).time_s == pytest.approx(
        cost["none"].iteration(4, 4 * 300, [], 4).time_s, rel=1e-12
    )
    assert c11.iteration(4, 4 * 300, [(64, 64)], 5).time_s == pytest.approx(
        layers * 1e-3 + float(slow11.host_step_s(5, decode_only=False)[0]), rel=1e-6
    )
    # 600 rows > 512: every kernel launched from the host (a slow launch shows it)
    eager = replace(none, name="eager", host_launch_s=1e-3)
    ce = IterationCost(Serving(**kw, runtime=eager), system)
    kernels = (
        ce.linear(600).kernels + ce.head(1).kernels + ce.prefill_attention([(600, 600)]).kernels
    )
    assert ce.iteration(0, 0, [(600, 600)], 1).time_s == pytest.approx(
        kernels * 1e-3 + float(eager.host_step_s(1, decode_only=False)[0]), rel=1e-6
    )
    assert ce.iteration(0, 0, [(500, 500)], 1).time_s < 0.1 * kernels * 1e-3  # graphed


def test_full_and_piecewise_graphs_break_only_steps_with_prompts():
    """vLLM 0.11 replays a decode-only step as one full graph (no eager attention calls) and runs
    a step with prompt tokens piecewise, as vLLM V1 runs every step."""
    v1, v11 = load_runtime("vllm-v1"), load_runtime("vllm-0.11")
    assert v11.decode_full_graphs and v11.piecewise_break_s == v1.piecewise_break_s
    m = load_model("llama-3-8b")
    for rt, decode_breaks in ((v1, True), (v11, False)):
        dec = Decode(model=m, batch=8, context=512, runtime=rt).lower().ops
        pre = Prefill(model=m, prompt=256, runtime=rt).lower().ops
        attn = [op.host_s for op in dec if op.kind.value == "attention"]
        assert attn and all((h == rt.piecewise_break_s) is decode_breaks for h in attn)
        assert {op.host_s for op in pre if op.kind.value == "attention"} == {rt.piecewise_break_s}


def test_a_concatenating_cache_copies_the_whole_cache_every_decode_step():
    """Hugging Face's DynamicCache appends each step's K and V with torch.cat: every decode step
    re-reads and re-writes the layer's cache (its cost grows with the context), a first prefill
    has none to copy; repeat_kv expands a grouped cache to every query head before attention."""
    eager = load_runtime("pytorch-eager")
    hf = replace(eager, name="hf", kv_cache="concat", gqa_repeat=True)
    system = load_system("h100-sxm")
    m = load_model("llama-3-8b")  # 32 query heads over 8 KV heads

    def ops(rt, context, **kw):
        return {op.name: op for op in Decode(model=m, context=context, runtime=rt,
                                             **kw).lower().ops}  # fmt: skip

    short, long = ops(hf, 512), ops(hf, 4096)
    per_token = 2 * 8 * 128 * 2.0  # K and V of one token in one layer, bf16
    assert long["kv_concat"].total_bytes == pytest.approx(2 * (4096 - 1 + 1) * per_token)
    assert long["kv_concat"].kernels == 2 and "kv_concat" not in ops(eager, 4096)
    # the append is the cat: no separate write of the new K and V into a cache
    assert long["rope_kv_write"].kernels < ops(eager, 4096)["rope_kv_write"].kernels
    assert "kv" not in long["rope_kv_write"].bytes
    sep = replace(eager, name="sep", separate_projections=True)
    assert (ops(sep, 512)["qkv_proj"].kernels, ops(sep, 512)["mlp_up"].kernels) == (3, 2)
    # serving costs the copies with the attention at its context, also in mixed-layer models
    from sim.engine.serve import IterationCost
    from workloads.serving import LengthDist, Serving

    kw = dict(rate=1.0, duration_s=1.0, prompt=LengthDist.parse("100", "--prompt-dist", 8192),
              output=LengthDist.parse("10", "--output-dist", 8192))  # fmt: skip
    cost = {
        rt.name: IterationCost(Serving(model=m, runtime=rt, **kw), system) for rt in (eager, hf)
    }
    grow = {n: c.decode_attention(1, 4096).hbm_bytes - c.decode_attention(1, 512).hbm_bytes
            for n, c in cost.items()}  # fmt: skip
    assert grow["hf"] > 3 * grow["pytorch-eager"]  # the copies ride with the context
    assert cost["hf"].decode_attention(1, 512).kernels >= 1 + 2 + 2  # attention, cat, repeat
    # the expanded copy: the cache read once, written 4x, and attention reads the 4x copy
    assert long["repeat_kv"].total_bytes == pytest.approx(4096 * per_token * (1 + 4))
    assert long["attention"].total_bytes > 3.5 * ops(eager, 4096)["attention"].total_bytes
    mha = {op.name for op in Decode(model=load_model("llama-2-7b"), context=512,
                                    runtime=hf).lower().ops}  # fmt: skip
    assert "repeat_kv" not in mha and "kv_concat" in mha  # MHA: nothing to expand
    first = {op.name for op in Prefill(model=m, prompt=512, runtime=hf).lower().ops}
    assert "kv_concat" not in first  # an empty cache: appended, not copied
    # under a graph (no host-bound launches) the copies cost more the longer the context
    graph = load_runtime("pytorch-graph")
    copying = replace(graph, name="copying", kv_cache="concat", gqa_repeat=True)
    t = {(rt.name, c): simulate(Decode(model=m, context=c, runtime=rt), system).time_s
         for rt in (graph, copying) for c in (512, 4096)}  # fmt: skip
    extra = [t["copying", c] - t["pytorch-graph", c] for c in (512, 4096)]
    assert extra[1] > 4 * extra[0] > 0
    assert short["kv_concat"].total_bytes < long["kv_concat"].total_bytes


def test_a_bad_kv_cache_is_a_one_line_error(tmp_path, monkeypatch):
    _preset_refused(
        tmp_path,
        monkeypatch,
        'name = "odd"\nkv_cache = "append"\n',
        "kv_cache must be one of inplace, concat",
    )


def test_a_bad_fsdp_is_a_one_line_error(tmp_path, monkeypatch):
    _preset_refused(
        tmp_path,
        monkeypatch,
        'name = "odd"\nfsdp = "fsdp3"\n',
        r"^runtime 'odd': fsdp must be one of fsdp1, fsdp2 \(or left out\), got 'fsdp3'$",
    )


def test_eager_attention_in_inference_costs_the_score_matrix_and_its_launches():
    """--attention-kernel unfused at inference: FlashAttention-2's arithmetic plus the score
    matrix written, scaled, masked, soft-maxed in fp32, cast and read back (10 passes) in 6 more
    launches; a DiT refuses it (its kernels are the diffusers code's)."""
    m = load_model("llama-2-7b")
    fused = {op.name: op for op in Decode(model=m, context=1024, batch=4,
                                          attention_kernel="fa2").lower().ops}  # fmt: skip
    eager = {op.name: op for op in Decode(model=m, context=1024, batch=4,
                                          attention_kernel="unfused").lower().ops}  # fmt: skip
    assert "attn_scores_eager" not in fused
    s = eager["attn_scores_eager"]
    assert s.kernels == 5 and s.total_bytes == pytest.approx(12 * 4 * 32 * 1 * 1024 * 2.0)
    assert eager["attention"].attention.kernel == "fa2"
    from workloads.dit import DiT, list_dits, load_dit

    with pytest.raises(WorkloadError, match="must be one of native, fa2, got 'unfused'"):
        DiT(
            model=load_dit(list_dits()[0]), height=512, width=512, attention_kernel="unfused"
        ).lower()


def test_a_runtime_alias_names_its_preset_in_any_case():
    from workloads.runtime import runtime_aliases, runtime_name
    from workloads.training import Training

    assert load_runtime("vllm") == load_runtime("vllm-0.11")
    assert load_runtime("VLLM").name == "vllm-0.11"
    assert runtime_name("TRTLLM") == "tensorrt-llm" and runtime_name("nemo") == "megatron-core"
    assert runtime_name("VLLM-V1") == "vllm-v1"  # a preset's own name in any case too
    with pytest.raises(WorkloadError, match="--runtime must be a runtime name, got 3"):
        runtime_name(3)
    assert Training(model=load_model("llama-2-7b"), runtime="Megatron-Core").runtime == (
        "megatron-core"
    )
    # an alias is never a preset's own name, and each names one preset that exists
    assert not set(runtime_aliases()) & set(list_runtimes())
    assert set(runtime_aliases().values()) <= set(list_runtimes())
    # a training workload records the preset, not the alias
    t = Training(model=load_model("llama-2-7b"), runtime="megatron")
    assert t.runtime == "megatron-core"
    with pytest.raises(WorkloadError, match=r"aliases: .*vllm \(vllm-0\.11\)"):
        load_runtime("not-a-runtime")


def test_runtimes_lists_the_aliases(capsys):
    assert main(["runtimes", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert "vllm" in rows["vllm-0.11"]["aliases"] and rows["gpt-fast"]["aliases"] == []
    assert main(["decode", "--model", "llama-2-7b", "--chip", "h100-sxm", "--runtime", "sglang",
                 "--batch", "1", "--context", "10"]) == 0  # fmt: skip
    assert "runtime=sglang-0.4" in capsys.readouterr().out


def test_fp8_training_casts_its_gemm_inputs_itself():
    """Training's forward is the prefill lowering without inference's quantised inputs:
    Transformer Engine's cast-transpose kernel before each fp8 GEMM (training ``_fp8_inputs``)."""
    from workloads.training import Training

    t = Training(model=load_model("llama-3-8b"), seq=2048, dtype="fp8", runtime="megatron-core")
    fwd = t.lower().stages[0][0].forward
    casts = {op.name for op in fwd if op.name.endswith("_fp8_cast")}
    assert casts == {f"{n}_fp8_cast" for n in ("qkv_proj", "o_proj", "mlp_up", "mlp_down")}
    assert all(op.gemm.a_bytes == 1.0 for op in fwd if op.gemm is not None and op.dtype == "fp8")


def test_sglang_05_is_its_own_preset_whose_block_fp8_linears_run_deepgemm():
    # SGLang 0.5 keeps 0.4's engine but runs DeepGEMM where 0.4.3 ran CUTLASS's blockwise kernel
    s05, s04 = load_runtime("sglang-0.5.3"), load_runtime("sglang-0.4")
    assert s05.name == "sglang-0.5" and load_runtime("sglang").name == "sglang-0.4"
    assert (s04.block_fp8_gemm, s05.block_fp8_gemm) == ("cutlass", "deepgemm")
    # and one fused gate kernel (moe_fused_gate, 0.4.5.post1 on) for DeepSeek's grouped top-k
    assert (s04.grouped_topk_kernels, s05.grouped_topk_kernels) == (7, 1)
    # and decode graphs up to 160 rows in 0.4, in 0.5 up to 256, or 512 from TP 4
    assert (s04.graph_max_tokens, s05.graph_max_tokens, s05.graph_max_tokens_tp4) == (160, 256, 512)
    assert [s05.graph_limit(tp) for tp in (1, 2, 3, 4, 8)] == [256, 256, 256, 512, 512]
    assert s04.graph_limit(8) == 160
    # a decode step of 300 sequences replays a graph at TP 8 and launches from the host at TP 2
    # (the workload's own TP decides, however it was made)
    model = load_model("llama-3-70b")

    def host(w):
        return sum(op.host_s * op.count for op in w.lower().ops if op.kernels)

    at8 = Decode(model=model, batch=300, context=512, tp=8, runtime=s05)
    assert host(at8) == 0 and host(replace(at8, tp=2)) > 0
    own = ("name", "block_fp8", "grouped_topk", "mla_decode", "graph_max_tokens")  # (and _tp4)
    same = {k: v for k, v in s04.describe().items() if not k.startswith(own)}
    assert same == {k: v for k, v in s05.describe().items() if not k.startswith(own)}


def test_grouped_topk_kernels_must_be_a_count_of_launches(tmp_path, monkeypatch):
    for i, bad in enumerate(("0", "2.5", "true", '"seven"')):
        _preset_refused(tmp_path / str(i), monkeypatch,
                        f'name = "odd"\ngrouped_topk_kernels = {bad}\n',
                        "grouped_topk_kernels must be an integer >= 1")  # fmt: skip


def test_mla_decode_kernels_are_two_launch_counts(tmp_path, monkeypatch):
    for i, bad in enumerate(("[58]", "[0, 4]", "[true, 2]", '"many"')):
        _preset_refused(tmp_path / str(i), monkeypatch,
                        f'name = "odd"\nmla_decode_kernels = {bad}\n',
                        "mla_decode_kernels must be two integers >= 1")  # fmt: skip


def test_mla_absorb_names_how_the_products_run(tmp_path, monkeypatch):
    _preset_refused(tmp_path, monkeypatch, 'name = "odd"\nmla_absorb = "folded"\n',
                    "mla_absorb must be one of bmm, premultiplied")  # fmt: skip


def test_sampler_fields_are_bytes_and_launch_counts_cited_anew_by_a_variant(tmp_path, monkeypatch):
    for i, (text, match) in enumerate((
        ("sampler_greedy_bytes = 0\n", "sampler_greedy_bytes must be a number of bytes > 0"),
        ("sampler_top_p_kernels = 0\n", "sampler_top_p_kernels must be an integer >= 1"),
    )):  # fmt: skip
        _preset_refused(tmp_path / str(i), monkeypatch, f'name = "odd"\n{text}', match)
    # a variant that changes one sampler value cites the sampler anew
    (tmp_path / "v" / "runtimes").mkdir(parents=True)
    (tmp_path / "v" / "runtimes" / "base.toml").write_text(
        'name = "base"\nsource = "s"\nsampler_random_bytes = 40\n'
        'sampler_greedy_bytes_source = "s"\n'
    )
    _preset_refused(tmp_path / "v", monkeypatch,
                    'name = "odd"\nbase = "base"\nfull_name = "x"\nsampler_random_bytes = 50\n',
                    "gives its own sampler_greedy_bytes_source")  # fmt: skip


def test_a_server_always_picks_a_token(capsys):
    assert main(["serve", "--model", "llama-3-8b", "--chip", "h100-sxm", "--rate", "1",
                 "--duration", "2", "--sampling", "none"]) != 0  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--sampling none stops at the logits" in err[0]


def test_eager_broadcasts_and_casts_run_on_the_scalar_kernels_and_fused_code_has_none():
    """Eager RMSNorm's x * rsqrt(var) and weight * h broadcast (the strided kernel, 0.62
    cycles an element) and its x.to(float32) converts (the cast kernel, 0.77): two strided
    elements an element over a prompt, one at a single token row where the weight's broadcast
    drops out, and one cast either way; fused code runs none."""
    ref = load_runtime("pytorch-eager")
    strided, cast = ref.scalar_rates
    assert (strided, cast) == pytest.approx((0.62, 0.77))
    hidden = load_model("llama-3-8b").hidden

    def norm(w):
        return {op.name: op for op in w.lower().ops}["attn_norm"]

    def cycles_and_bytes(op):
        return tuple(sum(k[i] for k in op.scalar_kernels) for i in (0, 1))

    prompt = norm(Prefill(model=load_model("llama-3-8b"), batch=1, prompt=512, runtime=ref))
    # the upcast (2+4 B), x * rsqrt (fp32 4+4) and weight * h (2+2): three kernels
    assert len(prompt.scalar_kernels) == 3
    assert cycles_and_bytes(prompt) == pytest.approx(
        (512 * hidden * (2 * strided + cast), (2 + 4 + 4 + 4 + 2 + 2) * 512 * hidden)
    )
    token = norm(Decode(model=load_model("llama-3-8b"), context=512, runtime=ref))
    assert cycles_and_bytes(token)[0] == pytest.approx(hidden * (strided + cast))
    assert norm(Decode(model=load_model("llama-3-8b"), context=512)).scalar_kernels == ()
    # the strided kernels make an eager prompt's norms slower on the same chip
    slow = simulate(Prefill(model=load_model("llama-3-8b"), batch=1, prompt=2048, runtime=ref),
                    load_system("h100-sxm"))  # fmt: skip
    none = simulate(Prefill(model=load_model("llama-3-8b"), batch=1, prompt=2048,
                            runtime=replace(ref, strided_cycles_per_element=0.0,
                                            cast_cycles_per_element=0.0)),
                    load_system("h100-sxm"))  # fmt: skip
    assert slow.time_s > none.time_s


def test_transformers_rotate_half_rope_is_five_kernels_a_tensor():
    hf = load_runtime("hf-transformers")
    assert hf.rope == "rotate_half"
    op = {o.name: o for o in Decode(model=load_model("llama-3-8b"), context=512,
                                    runtime=hf).lower().ops}["rope_kv_write"]  # fmt: skip
    assert op.kernels == 2 * 5  # q and k; DynamicCache appends by torch.cat elsewhere
    with pytest.raises(WorkloadError, match="rope = rotate_half has no training backward"):
        replace(load_runtime("pytorch-eager"), rope="rotate_half")


@pytest.mark.parametrize("field", ["strided_cycles_per_element", "cast_cycles_per_element"])
def test_a_bad_scalar_rate_is_a_one_line_error(tmp_path, monkeypatch, field):
    _preset_refused(
        tmp_path,
        monkeypatch,
        f'name = "odd"\n{field} = -1\n',
        f"{field} must be a number of cycles >= 0",
    )


def test_eager_prompts_copy_the_attention_output_and_chunked_halves_are_strided():
    """Over a prompt the attention output's transpose(1, 2).reshape is a permuting copy (a
    view at one query row); the microbenchmark's one gate/up GEMM is chunked, so its SiLU and
    multiply read strided halves, where the reference's separate projections do not."""
    m = load_model("llama-3-8b")
    graph, ref = load_runtime("pytorch-graph"), load_runtime("pytorch-eager")
    cycles = graph.strided_cycles_per_element

    def core_cycles(op):
        return sum(c for c, _ in op.scalar_kernels)

    def ops(w):
        return {op.name: op for op in w.lower().ops}

    prompt = ops(Prefill(model=m, batch=1, prompt=512, runtime=graph))
    copy = prompt["attn_out_copy"]
    assert copy.kernels == 1 and copy.total_bytes == pytest.approx(4 * 512 * m.hidden)
    assert core_cycles(copy) == pytest.approx(512 * m.hidden * cycles)
    assert core_cycles(prompt["mlp_act"]) == pytest.approx(2 * 512 * m.ffn * cycles)
    assert "attn_out_copy" not in ops(Decode(model=m, batch=4, context=512, runtime=graph))
    assert ops(Decode(model=m, context=512, runtime=graph))["mlp_act"].scalar_kernels == ()
    assert ops(Prefill(model=m, batch=1, prompt=512, runtime=ref))["mlp_act"].scalar_kernels == ()
    assert "attn_out_copy" not in ops(Prefill(model=m, batch=1, prompt=512))  # fused


@pytest.mark.parametrize(
    "line, match",
    [
        ("graph_max_tokens_tp4 = 512", "graph_max_tokens_tp4 = 512 needs graph_max_tokens > 0"),
        ("graph_max_tokens_tp4 = -1", "graph_max_tokens_tp4 must be an integer >= 0"),
        ("graph_max_tokens_tp4 = true", "graph_max_tokens_tp4 must be an integer >= 0"),
    ],
)
def test_a_bad_tp_graph_limit_is_a_one_line_error(tmp_path, monkeypatch, line, match):
    _preset_refused(tmp_path, monkeypatch, f'name = "odd"\n{line}\n', match)


def test_fms_rotation_rope_charges_its_product_over_a_prompt():
    """An fms-fsdp prompt's RoPE is the rotation product's 36 B a rotated element (against the
    complex multiply's 20 B), its upcast and broadcast product on the scalar kernels (beside
    the cache write's)."""
    m = load_model("llama-2-7b")
    ops = {rt: {o.name: o for o in Prefill(model=m, prompt=2048, runtime=load_runtime(rt))
                .lower().ops}
           for rt in ("fms-fsdp", "pytorch-fsdp1")}  # fmt: skip
    rotated = 2048 * 2 * 4096  # q and k elements of a layer
    fms, ref = ops["fms-fsdp"]["rope_kv_write"], ops["pytorch-fsdp1"]["rope_kv_write"]
    assert fms.total_bytes - ref.total_bytes == pytest.approx((36 - 20) * rotated)
    assert fms.kernels - ref.kernels == 2  # 4 kernels a tensor against 3
    # the upcast (6 B) and the product (12 B, two outputs an element) among the scalar kernels
    bytes_of = sorted(b for _, b in fms.scalar_kernels)
    assert 6 * rotated in bytes_of and 12 * rotated in bytes_of


def test_sglang_graph_limit_counts_sequences_not_draft_rows():
    """SGLang's cuda_graph_max_bs is a batch size (CudaGraphRunner.can_run: batch_size <=
    max_bs; each graph holds its sequences' draft tokens): 100 sequences checking 3 drafts
    each (400 rows) replay a graph under its 160 limit, where a limit on rows launches them."""
    from workloads.llm import Speculation

    s04 = load_runtime("sglang-0.4")
    assert s04.graph_counts == "sequences" and load_runtime("vllm-v1").graph_counts == "tokens"
    spec = Speculation(tokens=3, acceptance=0.7, draft="ngram")
    w = Decode(model=load_model("llama-3-8b"), batch=100, context=512, runtime=s04, spec=spec)

    def host(w):
        return sum(op.host_s * op.count for op in w.lower().ops if op.kernels)

    assert host(w) == 0
    assert host(replace(w, runtime=replace(s04, graph_counts="tokens"))) > 0
    assert host(replace(w, batch=161)) > 0  # more sequences than captured
    with pytest.raises(WorkloadError, match="graph_counts must be one of"):
        replace(s04, graph_counts="rows")


def test_a_bad_graph_counts_is_a_one_line_error_and_prompts_count_rows(tmp_path, monkeypatch):
    # a step with prompts counts its rows even where decode graphs count sequences
    s = replace(load_runtime("sglang-0.4"), prefill_graphs=True)
    assert not s.graphed(prompts=True, tokens=4096, sequences=2)
    assert s.graphed(prompts=False, tokens=400, sequences=100)
    _preset_refused(tmp_path, monkeypatch, 'name = "odd"\ngraph_counts = "rows"\n',
                    "graph_counts must be one of")  # fmt: skip


def test_a_bad_loss_kernel_is_a_one_line_error(tmp_path, monkeypatch):
    _preset_refused(
        tmp_path,
        monkeypatch,
        'name = "odd"\nloss_kernel = "liger"\n',
        r"^runtime 'odd': loss_kernel must be one of eager, megatron, fused \(or left out\), "
        r"got 'liger'$",
    )


def test_lmdeploy_01_runs_turbomind_eager_on_nccl_and_samples_top_k():
    """LMDeploy 0.1's TurboMind (benchmarks/research/lmdeploy-turbomind-v01-2026-12-07.md):
    kernels launched from C++ without CUDA graphs, the tensor-parallel all-reduce on NCCL (no
    custom kernel until 2025), FlashAttention-2 for prompts and FasterTransformer's top-k
    sampler. At TP 4 a batch-1 decode step of Llama-2-70B pays NCCL's ring for each of its 160
    all-reduces, where the default (a serving engine's custom all-reduce) does not; at TP 1
    the two differ only in the sampler and the launches (Llama-2-7B)."""
    turbomind = load_runtime("lmdeploy-0.1")
    assert load_runtime("turbomind-0.1") == turbomind
    assert not turbomind.cuda_graphs and turbomind.allreduce_latency_s == 0.0
    assert turbomind.attention_kernel == "fa2"
    assert turbomind.sampler("top-p") == (12.0, 4) and turbomind.sampler("greedy") == (4.0, 3)
    default = load_runtime(DEFAULT_RUNTIME)
    m = load_model("llama-2-70b")

    def step(runtime: Runtime, tp: int, model=m) -> tuple[float, float]:
        w = Decode(model=model, batch=1, context=65, tp=tp, runtime=runtime)
        r = simulate(w, load_system("a100-sxm-80gb", tp))
        ar = sum(c.total_time_s for c in r.costs if "all_reduce" in c.op.name)
        return r.time_s, ar

    (t_tm, ar_tm), (t_def, ar_def) = step(turbomind, 4), step(default, 4)
    assert ar_tm > 2.0 * ar_def  # NCCL's 6 ring steps against one launch
    assert t_tm - t_def == pytest.approx(ar_tm - ar_def, rel=0.1)  # the all-reduces the gap
    small = load_model("llama-2-7b")
    assert step(turbomind, 1, small)[0] == pytest.approx(step(default, 1, small)[0], rel=0.02)


def test_a_runtime_file_is_a_what_if_on_a_preset(tmp_path, capsys):
    """--runtime takes a TOML file: a preset (or alias) as base and the fields it changes,
    checked as a preset's are; the rest, citations included, is the base's."""
    f = tmp_path / "vllm-quiet-host.toml"
    f.write_text('base = "vllm"\nstep_overhead_per_seq_s = 0.0\n')
    what_if, base = load_runtime(str(f)), load_runtime("vllm-0.11")
    assert what_if.name == "vllm-quiet-host" and what_if.step_overhead_per_seq_s == 0.0
    assert base.step_overhead_per_seq_s > 0
    assert what_if.step_overhead_s == base.step_overhead_s
    assert what_if.sources["step_overhead_s_source"] == base.sources["step_overhead_s_source"]
    assert "step_overhead_per_seq_s_source" not in what_if.sources  # its value is the file's
    assert base.full_name in what_if.full_name and "step_overhead_per_seq_s" in what_if.full_name
    # the host work a running sequence adds to a step is gone: a saturated serve runs faster
    argv = ["serve", "--model", "llama-3-8b", "--chip", "h100-sxm", "--rate", "40",
            "--duration", "20", "--json", "--runtime"]  # fmt: skip
    ends = []
    for runtime in ("vllm-0.11", str(f)):
        assert main([*argv, runtime]) == 0
        ends.append(json.loads(capsys.readouterr().out)["end_s"])
    assert ends[1] < ends[0]  # the same requests done sooner


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (None, "no runtime file"),
        ('base = "vllm\n', "is not valid TOML"),
        ('base = "vllm"\nstep_overhead_per_seq = 0\n', "unknown field 'step_overhead_per_seq'"),
        ('base = "vllm"\nstep_overhead_s = -1\n', "step_overhead_s must be a number of seconds"),
        ('base = "nope"\n', "base must name another runtime preset"),
        ('base = "vllm"\naliases = ["mine"]\n', "aliases are names of a preset"),
    ],
)
def test_a_bad_runtime_file_is_a_one_line_error(tmp_path, capsys, text, match):
    f = tmp_path / "mine.toml"
    if text is not None:
        f.write_text(text)
    with pytest.raises(WorkloadError, match=match):
        load_runtime(str(f))
    assert main(["decode", "--model", "llama-2-7b", "--chip", "h100-sxm", "--runtime", str(f)]) == 2
    err = capsys.readouterr().err
    assert match.split("'")[0] in err and "Traceback" not in err and err.count("\n") == 1


def test_training_takes_a_runtime_file_only_on_a_training_stack(tmp_path, capsys):
    serving, stack = tmp_path / "serving.toml", tmp_path / "slow-launch.toml"
    serving.write_text('base = "vllm"\n')
    stack.write_text('base = "megatron"\nhost_launch_s = 50e-6\n')
    argv = ["train", "--model", "llama-3-8b", "--chip", "h100-sxm", "--chips", "8", "--zero", "1",
            "--runtime"]  # fmt: skip
    assert main([*argv, str(serving)]) == 2
    assert "not a training runtime" in capsys.readouterr().err
    assert main([*argv, str(stack)]) == 0
    assert "runtime " in capsys.readouterr().out.splitlines()[0]
