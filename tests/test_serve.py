"""Serving simulation: queueing laws, low-load limits, saturation, KV pressure, planning, CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from hardware import load_system
from sim.cli import main
from sim.cost.result import CapacityError
from sim.cost.simulate import simulate
from sim.engine.serve import IterationCost, simulate_serving
from sim.studies.plan import SLO, Demand, max_rate, plan
from workloads import Decode, Prefill, load_model
from workloads.ops import WorkloadError
from workloads.serving import LengthDist, Serving, load_trace


@pytest.fixture(scope="module")
def l8b():
    return load_model("llama-3-8b")


@pytest.fixture(scope="module")
def h100():
    return load_system("h100-sxm", 1, [])


def _serving(model, **kw) -> Serving:
    base = dict(
        model=model,
        rate=2.0,
        duration_s=60.0,
        prompt=LengthDist.parse("lognormal:400,0.6", "--prompt-dist", model.max_seq),
        output=LengthDist.parse("exp:150", "--output-dist", model.max_seq),
    )
    return Serving(**(base | kw))


def test_littles_law_holds_mean_in_system_equals_rate_times_latency(l8b, h100):
    # L (time-average of requests in the engine) vs lambda x W (per-request timestamps):
    # two independent tallies of one run; 1800 s at 4 req/s is ~7200 requests
    r = simulate_serving(_serving(l8b, rate=4.0, duration_s=1800.0, seed=3), h100)
    assert r.completed == len(r.arrival_s) > 6500
    little = 4.0 * float(np.mean(r.latency))
    assert r.mean_in_system == pytest.approx(little, rel=0.05)


def test_low_load_ttft_is_one_prefill_and_tpot_one_batch1_decode_step(l8b, h100):
    # one request every ~50 s never meets another: each sees an empty engine
    w = _serving(l8b, rate=0.02, duration_s=3000.0, prompt=LengthDist.parse("512", "p"),
                 output=LengthDist.parse("65", "o"))  # fmt: skip
    r = simulate_serving(w, h100)
    prefill = simulate(Prefill(model=l8b, prompt=512), h100).time_s
    # the mean decode context over 64 steps: 512 prompt + 1..64 generated
    step = simulate(Decode(model=l8b, context=512 + 32), h100).time_s
    assert np.median(r.ttft) == pytest.approx(prefill, rel=1e-6)
    assert np.median(r.tpot) == pytest.approx(step, rel=0.01)


def test_throughput_saturates_and_latency_climbs_as_load_rises(l8b, h100):
    rows = []
    for rate in (2.0, 8.0, 32.0, 128.0):
        r = simulate_serving(_serving(l8b, rate=rate, duration_s=30.0, seed=1), h100)
        rows.append((r.requests_per_s, *np.percentile(r.latency, [50, 99])))
    tput, p50, p99 = zip(*rows, strict=True)
    assert tput[1] > 3 * tput[0]  # light load: throughput follows the arrival rate
    assert tput[3] < 0.5 * 128.0  # overload: throughput far below the arrival rate
    # median latency never falls with load (p99 of 60 requests is one long answer: noisy)
    assert all(b >= a for a, b in zip(p50[:-1], p50[1:], strict=True))
    assert p99[3] > 5 * p99[0] and p50[3] > 20 * p50[0]


def test_same_seed_same_run_other_seed_other_run(l8b, h100):
    a = simulate_serving(_serving(l8b, seed=7), h100).to_dict()
    b = simulate_serving(_serving(l8b, seed=7), h100).to_dict()
    c = simulate_serving(_serving(l8b, seed=8), h100).to_dict()
    assert a == b
    assert a["latency_s"] != c["latency_s"]


def test_runs_of_one_engine_on_one_system_share_its_costs_and_give_what_a_fresh_run_gives(
    l8b, h100
):
    from sim.engine import serve

    serve._COSTERS.clear()
    simulate_serving(_serving(l8b, rate=2.0), h100)
    coster = serve._COSTERS[0][2]
    shared = simulate_serving(_serving(l8b, rate=5.0, seed=3), h100).to_dict()
    assert serve._COSTERS[0][2] is coster  # a plan's bisection over rates costs its pieces once
    with pytest.MonkeyPatch.context() as mp:  # a coster of its own, from the run's own serving
        mp.setattr(serve, "iteration_cost", IterationCost)
        assert simulate_serving(_serving(l8b, rate=5.0, seed=3), h100).to_dict() == shared
    # another engine, or the same one on another system object, gets its own
    simulate_serving(_serving(l8b, dtype="fp8"), h100)
    simulate_serving(_serving(l8b), load_system("h100-sxm", 1))
    assert len({id(c) for _, _, c in serve._COSTERS}) == 3


def test_every_request_finishes_once_with_its_tokens(l8b, h100):
    r = simulate_serving(_serving(l8b, rate=6.0, duration_s=40.0), h100)
    assert r.completed == len(r.arrival_s)
    assert np.all(r.first_token_s >= r.arrival_s)
    assert np.all(r.finish_s >= r.first_token_s)
    assert r.tokens_per_s * r.end_s == pytest.approx(float(r.output.sum()))
    assert 0 < r.mfu < 1 and 0 < r.mbu < 1


def test_full_kv_cache_preempts_and_recomputes_without_losing_requests(l8b, h100):
    # 8B bf16 weights (16 GB) in 24 % of the H100's 85.5 GB leave ~4 GB: ~30k tokens of KV, ~15
    # of these 2100-token requests at a time; they must queue and be preempted, and all finish
    w = _serving(l8b, rate=20.0, duration_s=20.0, memory_fraction=0.24,
                 prompt=LengthDist.parse("1500", "p"), output=LengthDist.parse("600", "o"))  # fmt: skip
    r = simulate_serving(w, h100)
    assert r.preemptions > 0
    assert r.completed == len(r.arrival_s)
    assert r.kv_used.max() <= 1.0
    assert r.to_dict()["kv_cache"]["max_occupancy"] > 0.9


def test_chunked_prefill_keeps_decode_steps_short_under_load(l8b, h100):
    # Sarathi-Serve's point: long prompts stall every decoding sequence when prefilled whole
    w = _serving(l8b, rate=3.0, duration_s=60.0, prompt=LengthDist.parse("3000", "p"),
                 output=LengthDist.parse("200", "o"))  # fmt: skip
    whole = simulate_serving(w, h100)
    chunked = simulate_serving(replace(w, chunked_prefill=True, max_num_batched_tokens=512), h100)
    gaps = [float(np.percentile(r.tpot, 99)) for r in (whole, chunked)]
    assert gaps[1] < gaps[0]
    assert chunked.completed == len(chunked.arrival_s)


def test_sglang_keeps_prompt_chunks_apart_from_decode_steps_and_prefills_first(
    l8b, h100, monkeypatch
):
    # SGLang (enable_mixed_chunk off by default): an iteration is a prefill batch of up to the
    # token budget, a long prompt cut into chunks, or a decode of the running sequences; vLLM's
    # chunked prefill decodes every running sequence in each iteration and fills the rest
    from workloads.runtime import load_runtime

    seen: list[tuple[int, list]] = []
    real = IterationCost.iteration

    def record(self, n_decode, cache, chunks, finishing):
        seen.append((n_decode, list(chunks)))
        return real(self, n_decode, cache, chunks, finishing)

    monkeypatch.setattr(IterationCost, "iteration", record)
    from sim.engine.serve import _Replica

    plans: list[tuple[bool, bool, bool]] = []  # (a prompt could go, decode?, chunks?)
    plan = _Replica._plan

    def planned(self):
        running = len(self.decoding) + len(self.prefilling)
        could = bool(self.prefilling) or bool(
            self.waiting and self._can_admit(self.waiting[0], running)
        )
        decode, chunks = plan(self)
        plans.append((could, decode, bool(chunks)))
        return decode, chunks

    monkeypatch.setattr(_Replica, "_plan", planned)
    w = _serving(l8b, rate=6.0, duration_s=20.0, prompt=LengthDist.parse("700", "p"),
                 output=LengthDist.parse("100", "o"), chunked_prefill=True,
                 max_num_batched_tokens=512)  # fmt: skip
    runs = {}
    for name in ("sglang-0.4", "vllm-0.11"):
        seen.clear()
        plans.clear()
        res = simulate_serving(replace(w, runtime=load_runtime(name)), h100)
        assert res.completed == len(res.arrival_s)
        runs[name] = list(seen)
        if name == "sglang-0.4":
            # prefill first: a step decodes only when no prompt is under way or fits
            assert all(chunks for could, _, chunks in plans if could)
            assert any(decode and not chunks for _, decode, chunks in plans)
            assert "chunked prefill, steps apart" in res.title()
        else:
            assert "steps apart" not in res.title()
    sg, vl = runs["sglang-0.4"], runs["vllm-0.11"]
    assert not load_runtime("sglang-0.4").mixed_prefill and load_runtime("vllm-0.11").mixed_prefill
    assert all(not (n and chunks) for n, chunks in sg)  # never both in one iteration
    assert any(n and chunks for n, chunks in vl)  # vLLM mixes them
    # a 700-token prompt takes two chunks of at most the 512-token budget, in prefill-only steps
    assert max(sum(n for n, _ in chunks) for _, chunks in sg) == 512
    assert sum(1 for n, chunks in sg if chunks) > sum(1 for n, chunks in vl if chunks and not n)


def test_interpolated_iteration_costs_stay_within_one_percent_of_exact(l8b, h100):
    cost = IterationCost(_serving(l8b), h100)
    for prompt in (700, 1500, 3000):
        exact = simulate(Prefill(model=l8b, prompt=prompt), h100).time_s
        assert cost.iteration(0, 0, [(prompt, prompt)], 1).time_s == pytest.approx(exact, rel=0.01)
    # (100 sequences: between two points of the batch grid above 64)
    for batch, ctx in ((8, 777), (64, 1913), (100, 1913)):
        exact = simulate(Decode(model=l8b, batch=batch, context=ctx), h100).time_s
        got = cost.iteration(batch, batch * ctx, [], batch).time_s
        assert got == pytest.approx(exact, rel=0.01)


def test_an_eager_iteration_waits_for_its_launches_as_the_decode_step_does(l8b, h100):
    """An iteration is costed in pieces (the linear layers, the LM head, the attention), but the
    host issues all their launches ahead of the chip: under an eager runtime an iteration takes
    what the same decode step takes, not the sum of each piece's larger of host and chip."""
    from workloads.runtime import load_runtime

    eager = load_runtime("pytorch-eager")
    cost = IterationCost(_serving(l8b, runtime=eager), h100)
    for batch, ctx in ((1, 512), (64, 512), (256, 512)):
        exact = simulate(Decode(model=l8b, batch=batch, context=ctx, runtime=eager), h100)
        got = cost.iteration(batch, batch * ctx, [], batch).time_s
        assert got == pytest.approx(exact.time_s, rel=0.01), batch
    # prompt chunks share one variable-length attention launch per layer: its host time too
    one, four = (cost.prefill_attention([(16, 16)] * n).launch_s for n in (1, 4))
    assert four == pytest.approx(one, rel=1e-12) and one > 0


def test_replicas_share_the_load(l8b):
    one = simulate_serving(
        _serving(l8b, rate=10.0, duration_s=30.0), load_system("h100-sxm", 1, [])
    )
    for router in ("least-loaded", "round-robin"):
        two = simulate_serving(
            _serving(l8b, rate=10.0, duration_s=30.0, replicas=2, router=router),
            load_system("h100-sxm", 2, []),
        )
        assert two.completed == len(two.arrival_s)
        assert np.mean(two.latency) < np.mean(one.latency)


def test_trace_file_drives_the_run(l8b, h100, tmp_path):
    f = tmp_path / "trace.csv"
    f.write_text("arrival_s,prompt_tokens,output_tokens\n0.5,100,10\n0.0,200,5\n3.0,50,1\n")
    trace = load_trace(f)
    assert list(trace.arrival_s) == [0.0, 0.5, 3.0]  # sorted by arrival
    r = simulate_serving(_serving(l8b, trace=trace), h100)
    assert r.completed == 3
    assert r.tokens_per_s * r.end_s == 16


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (dict(rate=0.0), "--rate must be > 0"),
        (dict(duration_s=-1.0), "--duration must be > 0"),
        (dict(replicas=0), "--replicas must be an integer >= 1"),
        (dict(memory_fraction=1.5), r"--memory-fraction must be in \(0, 1\]"),
        (dict(router="random"), "--router must be"),
    ],
)
def test_bad_serving_settings_name_the_flag(l8b, h100, kw, match):
    with pytest.raises(WorkloadError, match=match):
        simulate_serving(_serving(l8b, **kw), h100)


@pytest.mark.parametrize(
    "text", ["normal:5", "uniform:10", "exp:-3", "lognormal:a,b", "uniform:9,3", "exp:nan"]
)
def test_bad_length_distribution_is_one_line(text):
    with pytest.raises(WorkloadError, match="--prompt-dist"):
        LengthDist.parse(text, "--prompt-dist")


def test_length_distributions_have_their_means():
    rng = np.random.default_rng(0)
    for text, mean in (("300", 300), ("uniform:100,300", 200), ("exp:250", 250),
                       ("lognormal:500,0.5", 500 * np.exp(0.125))):  # fmt: skip
        d = LengthDist.parse(text, "x")
        assert d.mean == pytest.approx(mean)
        assert d.sample(rng, 40_000).mean() == pytest.approx(mean, rel=0.02)


def test_a_model_that_leaves_no_kv_room_is_refused(h100):
    w = _serving(load_model("llama-2-70b"))
    with pytest.raises(CapacityError, match="does not fit"):
        simulate_serving(w, h100)


def test_demand_from_tokens_per_day():
    # 8.64e9 output tokens a day = 1e5 tokens/s; at 250 tokens per request, 400 req/s mean
    d = Demand.from_tokens_per_day(8.64e9, 250.0, peak_to_mean=5.0)
    assert d.mean_rate == pytest.approx(400.0)
    assert d.peak_rate == pytest.approx(2000.0)


def test_plan_finds_a_rate_one_replica_serves_within_the_slo(l8b):
    w = _serving(l8b, prompt=LengthDist.parse("300", "p"), output=LengthDist.parse("100", "o"))
    slo = SLO(ttft_s=0.5, tpot_s=0.02)
    system = load_system("h100-sxm", 1, [])
    r = max_rate(w, system, slo, min_requests=300, min_duration_s=10.0, rel_tol=0.1)
    assert r > 0
    ok = simulate_serving(replace(w, rate=r, duration_s=max(10.0, 300 / r)), system)
    assert slo.met(ok)
    p = plan(w, "h100-sxm", Demand(mean_rate=3 * r), slo, tps=(1,), min_requests=300,
             min_duration_s=10.0)  # fmt: skip
    assert p.best is not None and p.best.replicas >= 3


def test_cli_serve_json_has_the_contract_keys(capsys):
    code = main(["serve", "--model", "llama-3-8b", "--chip", "h100-sxm", "--rate", "2",
                 "--duration", "20", "--json"])  # fmt: skip
    assert code == 0
    d = json.loads(capsys.readouterr().out)
    for key in ("ttft_s", "tpot_s", "latency_s"):
        assert set(d[key]) >= {"mean", "p50", "p90", "p99"}
    assert {"requests_per_s", "tokens_per_s"} <= set(d["throughput"])
    for key in ("mean_in_system", "mfu", "mbu", "completed"):
        assert key in d
    assert d["workload"]["runtime"] == "fused-graphs"  # the inputs name their software


def test_a_served_runtime_waits_for_its_host_and_says_which(capsys):
    """Under vLLM 0.6's runtime the same load runs with longer steps than under the default,
    and the output names the runtime."""
    argv = ["serve", "--model", "llama-3-8b", "--chip", "h100-sxm", "--rate", "4", "--duration",
            "20", "--json"]  # fmt: skip
    runs = []
    for extra in ([], ["--runtime", "vllm-0.6"]):
        assert main(argv + extra) == 0
        runs.append(json.loads(capsys.readouterr().out))
    assert runs[1]["workload"]["runtime"] == "vllm-0.6"
    assert runs[1]["tpot_s"]["mean"] > runs[0]["tpot_s"]["mean"] + 3e-3  # >= 3.8 ms a step
    assert main(argv[:-1] + ["--runtime", "vllm-0.6"]) == 0
    assert "runtime vllm-0.6" in capsys.readouterr().out.splitlines()[0]


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--chips", "3", "--tp", "2"], "--chips 3 must be a multiple of --tp 2"),
        (["--prompt-dist", "gauss:3"], "--prompt-dist must be"),
        (["--trace-file", "/nonexistent.csv"], "--trace-file"),
    ],
)
def test_cli_serve_errors_are_one_line(capsys, argv, match):
    code = main(["serve", "--model", "llama-3-8b", "--chip", "h100-sxm", *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert match.split()[0] in err


def test_serve_plot_draws_requests_and_kv_over_time(tmp_path, capsys):
    out = tmp_path / "serve.png"
    code = main(["serve", "--model", "llama-3-8b", "--chip", "h100-sxm", "--rate", "4",
                 "--duration", "10", "--plot", str(out)])  # fmt: skip
    assert code == 0 and out.stat().st_size > 10_000
    assert f"wrote {out}" in capsys.readouterr().out
    code = main(["serve", "--model", "llama-3-8b", "--chip", "h100-sxm", "--plot", "x.gif"])
    assert code == 2 and "--plot 'x.gif'" in capsys.readouterr().err


def test_closed_loop_never_has_more_requests_in_flight_than_clients(l8b, h100):
    w = _serving(l8b, rate=1.0, duration_s=200.0, concurrency=16)
    r = simulate_serving(w, h100)
    assert r.completed == len(r.arrival_s)
    # each client sends its next request the moment its last one finishes
    # (at equal times a finish counts before the send it triggers)
    times = np.concatenate([r.arrival_s, r.finish_s])
    steps = np.concatenate([np.ones(len(r.arrival_s)), -np.ones(len(r.finish_s))])
    assert np.cumsum(steps[np.lexsort((steps, times))]).max() <= 16
    assert r.mean_in_system <= 16 and r.mean_in_system > 8


def test_reserve_on_admit_never_preempts_and_holds_fewer_sequences(l8b, h100):
    # the KV-pressure run of the preemption test, with TensorRT-LLM's no-evict admission
    w = _serving(l8b, rate=20.0, duration_s=20.0, memory_fraction=0.24,
                 prompt=LengthDist.parse("1500", "p"), output=LengthDist.parse("600", "o"))  # fmt: skip
    watermark = simulate_serving(w, h100)
    reserve = simulate_serving(replace(w, admission="reserve"), h100)
    assert reserve.preemptions == 0 and watermark.preemptions > 0
    assert reserve.completed == len(reserve.arrival_s)
    assert reserve.mean_decode_batch < watermark.mean_decode_batch
    assert reserve.kv_used.max() <= 1.0


def test_admission_follows_the_runtime_unless_given(l8b, h100):
    from workloads.runtime import load_runtime

    trt = load_runtime("tensorrt-llm")
    assert trt.admission == "reserve" and load_runtime("vllm-v1").admission == "watermark"
    assert _serving(l8b).admission_policy == "watermark"
    assert _serving(l8b, runtime=trt).admission_policy == "reserve"
    assert _serving(l8b, runtime=trt, admission="watermark").admission_policy == "watermark"
    # a runtime swapped in later brings its own policy
    swapped = replace(_serving(l8b, runtime=trt), runtime=load_runtime("vllm-v1"))
    assert swapped.admission_policy == "watermark"
    out = main(["serve", "--model", "llama-3-8b", "--chip", "h100-sxm", "--rate", "1",
                "--duration", "5", "--runtime", "tensorrt-llm", "--json"])  # fmt: skip
    assert out == 0
    with pytest.raises(WorkloadError, match="admission must be one of watermark, reserve"):
        replace(trt, admission="evict")


def test_tensorrt_llm_takes_its_kv_fraction_of_the_memory_left_after_the_weights(l8b, h100):
    from sim.engine.serve import kv_capacity_blocks
    from workloads.runtime import load_runtime

    trt = load_runtime("tensorrt-llm")
    assert trt.memory_fraction_of == "free"
    total = replace(trt, memory_fraction_of="total")
    w = _serving(l8b, runtime=trt, memory_fraction=0.9)
    free_blocks, per_token = kv_capacity_blocks(w, h100)
    total_blocks, _ = kv_capacity_blocks(replace(w, runtime=total), h100)
    # 0.9 of what is left (~64 GB) beats 0.9 of the chip less the weights (~61 GB)
    assert free_blocks > total_blocks
    left = h100.chip.main_memory.capacity_bytes - w.resident_weight_bytes()
    assert free_blocks * w.block_size * per_token < 0.9 * left


def test_sglang_static_fraction_holds_weights_and_kv_pool_only(l8b, h100):
    """SGLang's mem_fraction_static is (weights + KV pool) / memory: the activation workspace
    sits outside it, so the pool is exactly the fraction less the weights (and the engine's
    own memory), more than vLLM's reading of the same fraction leaves."""
    from sim.engine.serve import kv_capacity_blocks
    from workloads.runtime import load_runtime

    sgl = load_runtime("sglang-0.4")
    assert sgl.memory_fraction_of == "static"
    w = _serving(l8b, runtime=sgl, memory_fraction=0.835, max_num_batched_tokens=8192)
    blocks, per_token = kv_capacity_blocks(w, h100)
    pool = 0.835 * h100.chip.main_memory.capacity_bytes - w.resident_weight_bytes()
    pool -= sgl.non_torch(w.tp)
    assert blocks == int(pool // (per_token * w.block_size))
    total_blocks, _ = kv_capacity_blocks(
        replace(w, runtime=replace(sgl, memory_fraction_of="total")), h100
    )
    assert blocks > total_blocks  # the same share, but no workspace taken out of it
    with pytest.raises(
        WorkloadError, match="memory_fraction_of must be one of total, free, static"
    ):
        replace(sgl, memory_fraction_of="pool")
    # a sliding-window model's windows come out of the pool sequence by sequence (not a
    # window for each of max_num_seqs set aside), under every reading of it
    gemma = load_model("gemma-2-9b")
    for runtime in (sgl, load_runtime("vllm-0.6")):
        blocks, _ = kv_capacity_blocks(_serving(gemma, runtime=runtime, memory_fraction=0.835),
                                       h100)  # fmt: skip
        assert blocks > 1000


def test_a_plan_summary_without_the_occupancy_series_does_not_divide_by_zero(l8b, h100):
    r = simulate_serving(_serving(l8b, rate=2.0, duration_s=10.0), h100)
    full, bare = r.to_dict(), r.to_dict(kv_points=0)
    assert full["kv_cache"]["t_s"] and bare["kv_cache"]["t_s"] == []
    assert bare["throughput"] == full["throughput"]


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["serve", "--rate", "0"], "argument --rate: must be a finite number > 0, got 0"),
        (["serve", "--slo-ttft", "-1"], "argument --slo-ttft: must be a finite number > 0"),
        (["serve", "--memory-fraction", "1.5"], "argument --memory-fraction: must be in (0, 1]"),
        (["plan", "--rate", "nan"], "argument --rate: must be a finite number > 0, got nan"),
        (["plan", "--rate", "1", "--usd-per-chip-hour", "-2"],
         "argument --usd-per-chip-hour: must be a finite number > 0, got -2"),
    ],
)  # fmt: skip
def test_a_rate_price_or_slo_that_is_not_positive_is_refused_not_reinterpreted(argv, match, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([argv[0], "--model", "llama-3-8b", "--chip", "h100-sxm", *argv[1:]])
    assert exit_.value.code == 2
    assert match in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--rate", "0.01", "--duration", "1"], "no request arrives in 1 s at 0.01 req/s"),
        (["--seed", "-1"], "--seed must be an integer >= 0, got -1"),
    ],
)
def test_a_stream_without_requests_or_a_negative_seed_is_one_line(argv, match, capsys):
    assert main(["serve", "--model", "llama-3-8b", "--chip", "h100-sxm", *argv]) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err


def test_a_loose_slo_stops_the_search_where_the_replica_stops_keeping_up(l8b, h100):
    # any latency meets this SLO; the search must still end, at a rate the replica drains
    w = _serving(l8b, prompt=LengthDist.parse("300", "p"), output=LengthDist.parse("100", "o"))
    loose = SLO(ttft_s=1e6, tpot_s=1e6)
    r = max_rate(w, h100, loose, min_requests=300, min_duration_s=10.0, rel_tol=0.1)
    assert 0 < r < 1e4
    duration = max(10.0, 300 / r)
    kept = simulate_serving(replace(w, rate=r, duration_s=duration), h100)
    assert kept.end_s <= 2 * duration  # it keeps up at the rate it reports
    over = simulate_serving(replace(w, rate=4 * r, duration_s=max(10.0, 300 / (4 * r))), h100)
    assert over.end_s > 2 * max(10.0, 300 / (4 * r))  # and not at four times it


def test_a_plan_stops_searching_at_the_demand_peak_and_says_so(l8b):
    # any latency meets this SLO: one replica serving the 2 req/s peak is all the plan needs
    w = _serving(l8b, prompt=LengthDist.parse("300", "p"), output=LengthDist.parse("100", "o"))
    loose = SLO(ttft_s=1e6, tpot_s=1e6)
    p = plan(w, "h100-sxm", Demand(mean_rate=2.0), loose, tps=(1,), min_requests=200,
             min_duration_s=10.0)  # fmt: skip
    (o,) = p.options
    assert o.replicas == 1 and o.max_rate_is_floor and o.max_rate_per_replica == 2.0
    assert ">= 2" in p.summary() and "the rate search stopped" in p.summary()
    assert p.to_dict()["options"][0]["max_rate_is_floor"] is True


def test_a_plan_costs_disaggregated_units_beside_colocated_replicas(l8b, capsys):
    # issue 21: --split 1:1 sizes units of one prefill and one decode replica; the fleet is
    # ceil(peak / a unit's rate) units of 2 x TP chips, and a unit at that share of the peak
    # meets the SLO
    w = _serving(l8b, prompt=LengthDist.parse("2000", "p"), output=LengthDist.parse("50", "o"))
    slo = SLO(ttft_s=1.0, tpot_s=0.05)
    p = plan(w, "h100-sxm", Demand(mean_rate=20.0), slo, tps=(1,), min_requests=200,
             min_duration_s=10.0, splits=((1, 1),))  # fmt: skip
    colocated, unit = p.options
    assert (colocated.label, unit.label) == ("TP1", "TP1 1P:1D")
    assert unit.chips == unit.replicas * 2 and unit.max_rate_per_replica > 0
    assert unit.at_peak is not None and slo.met(unit.at_peak)
    assert unit.at_peak.to_dict(kv_points=0)["disaggregated"]["kv_transfer_mean_s"] > 0
    assert "1P:1D" in p.summary()
    d = p.to_dict()["options"][1]
    assert (d["prefill_replicas_per_unit"], d["decode_replicas_per_unit"]) == (1, 1)
    assert d["units"] == unit.replicas and d["replicas"] == 2 * unit.replicas
    assert d["max_rate_per_unit"] == pytest.approx(2 * d["max_rate_per_replica"])
    # a split given twice is searched once
    twice = plan(w, "h100-sxm", Demand(mean_rate=20.0), slo, tps=(1,), min_requests=200,
                 min_duration_s=10.0, splits=((1, 1), (1, 1)))  # fmt: skip
    assert len(twice.options) == 2
    # a malformed split: argparse's usage, then one line naming the flag and the form
    with pytest.raises(SystemExit) as exit_:
        main(["plan", "--model", "llama-3-8b", "--chip", "h100-sxm", "--rate", "2", "--split",
              "1-1"])  # fmt: skip
    assert exit_.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--split" in last and "P:D" in last and "Traceback" not in last


def test_plan_json_works_when_an_option_succeeds(capsys):
    # issue 23: plan --json raised ZeroDivisionError (kv_points=0) whenever a TP option succeeded
    code = main(["plan", "--model", "llama-3-8b", "--chip", "h100-sxm", "--rate", "2", "--tp", "1",
                 "--json"])  # fmt: skip
    assert code == 0
    d = json.loads(capsys.readouterr().out)
    assert d["best"]["tp"] == 1 and d["options"][0]["replicas"] >= 1


def test_a_trace_file_that_is_not_utf8_is_one_line(tmp_path, capsys):
    bad = tmp_path / "trace.csv"
    bad.write_bytes(b"arrival_s,prompt_tokens,output_tokens\n\xff,1,1\n")
    code = main(["serve", "--model", "llama-3-8b", "--chip", "h100-sxm", "--trace-file", str(bad)])
    err = capsys.readouterr().err
    assert code == 2 and "--trace-file" in err and "not UTF-8 text" in err


def test_disaggregated_serving_moves_each_kv_cache_once_and_reports_both_pools(l8b):
    # 4 replicas: 2 only prefill, 2 only decode; every request crosses once
    w = _serving(l8b, rate=8.0, duration_s=30.0, replicas=4, prefill_replicas=2,
                 prompt=LengthDist.parse("1000", "p"), output=LengthDist.parse("50", "o"))  # fmt: skip
    system = load_system("h100-sxm", 4, [])
    r = simulate_serving(w, system)
    assert r.completed == len(r.arrival_s) > 0
    # 1000 tokens x 128 kB of bf16 KV per token (llama-3-8b, one chip) over 50 GB/s NDR at the
    # link's achievable fraction, plus its latency
    link = system.inter_node
    kv_per_token = 32 * 2 * 8 * 128 * 2
    expect = link.latency_s + 1000 * kv_per_token / (
        link.bandwidth_bytes_per_s * link.achievable_fraction
    )
    assert r.kv_transfer_mean_s == pytest.approx(expect)
    d = r.to_dict()["disaggregated"]
    assert (d["prefill_chips"], d["decode_chips"]) == (2, 2)
    assert 0 < d["prefill_busy_fraction"] < 1 and 0 < d["decode_busy_fraction"] <= 1
    # the first token comes from the prefill pool, the rest after the transfer
    assert (r.ttft >= 0).all() and (r.tpot * 49 >= r.kv_transfer_mean_s * 0.99).all()
    colocated = simulate_serving(replace(w, prefill_replicas=0), system)
    assert "disaggregated" not in colocated.to_dict()


def test_prefill_chips_must_leave_a_decode_pool(capsys):
    argv = ["serve", "--model", "llama-3-8b", "--chip", "h100-sxm", "--chips", "4", "--tp", "2"]
    for pre, match in (("4", "below --chips 4"), ("1", "a multiple of --tp 2")):
        assert main([*argv, "--prefill-chips", pre]) == 2
        assert match in capsys.readouterr().err
    assert main([*argv, "--prefill-chips", "2", "--duration", "10", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)["disaggregated"]
    assert d["prefill_chips"] == 2 and d["decode_chips"] == 2 and d["kv_transfer_mean_s"] > 0


def test_a_vllm_engine_leaves_its_non_torch_memory_out_of_the_kv_cache(l8b, h100):
    # vLLM sizes its KV cache as gpu_memory_utilization x the device total less the weights, the
    # activation peak and the memory outside its tensors (vllm-project/vllm PR #10511's profile:
    # 1.79 GiB on one H100, 3.58 GiB per GPU at TP 2)
    from sim.engine.serve import kv_capacity_blocks
    from workloads.runtime import load_runtime

    vllm = load_runtime("vllm-0.6")
    assert vllm.non_torch(1) == pytest.approx(1.79 * 2**30, rel=1e-3)
    assert vllm.non_torch(2) == vllm.non_torch(8) == pytest.approx(3.58 * 2**30, rel=1e-3)
    bare = replace(vllm, name="no-non-torch", non_torch_bytes=0.0, non_torch_bytes_tp=0.0)
    (with_it, per_token), (without, _) = (
        kv_capacity_blocks(_serving(l8b, runtime=rt), h100) for rt in (vllm, bare)
    )
    block = per_token * _serving(l8b).block_size
    assert without - with_it == pytest.approx(vllm.non_torch(1) / block, abs=1)
    assert load_runtime("tensorrt-llm").non_torch(1) == 0  # no cited profile: none taken


def test_async_output_hands_every_token_out_one_host_step_late(l8b, h100, monkeypatch):
    """vLLM 0.6 V0 processes step n's outputs inside step n+1, after its scheduling: a lone
    request's first and last tokens both reach the client that host time late, so TTFT and
    latency grow by it and TPOT does not move; a runtime without async output is untouched."""
    from workloads.runtime import load_runtime

    vllm = load_runtime("vllm-0.6")
    w = _serving(l8b, rate=0.02, duration_s=600.0, prompt=LengthDist.parse("512", "p"),
                 output=LengthDist.parse("33", "o"), runtime=vllm)  # fmt: skip
    late = simulate_serving(w, h100)
    monkeypatch.setattr(IterationCost, "emit_delay", lambda self, n: 0.0)
    prompt = simulate_serving(w, h100)
    delay = float(vllm.host_step_s(1, decode_only=True)[0])
    assert delay > 0
    np.testing.assert_allclose(late.ttft - prompt.ttft, delay, rtol=1e-9)
    np.testing.assert_allclose(late.latency - prompt.latency, delay, rtol=1e-9)
    np.testing.assert_allclose(late.tpot, prompt.tpot, rtol=1e-9)
    monkeypatch.undo()
    sync = replace(vllm, async_output=False)
    assert IterationCost(replace(w, runtime=sync), h100).emit_delay(8) == 0.0


def test_serve_mixed_prefill_flag_overrides_the_runtime(capsys):
    # SGLang's --enable-mixed-chunk: the engine's own flag over its runtime's default
    base = ["serve", "--model", "llama-3-8b", "--chip", "h100-sxm", "--runtime", "sglang-0.4",
            "--rate", "2", "--duration", "3", "--chunked-prefill", "--json"]  # fmt: skip
    seen = {}
    for flag in ([], ["--mixed-prefill", "yes"], ["--mixed-prefill", "no"]):
        assert main(base + flag) == 0
        seen[tuple(flag)] = json.loads(capsys.readouterr().out)["workload"]["mixed_prefill"]
    assert seen == {(): False, ("--mixed-prefill", "yes"): True, ("--mixed-prefill", "no"): False}
    with pytest.raises(SystemExit) as bad:
        main(base + ["--mixed-prefill", "maybe"])
    assert bad.value.code == 2 and "--mixed-prefill" in capsys.readouterr().err


def test_a_step_with_prompts_runs_mla_without_the_decode_paths_launches_and_shapes():
    """vLLM 0.7 and SGLang send a step's prompt tokens through MLA's prefill path: a serving
    iteration with prompt chunks carries neither the decode path's extra launches nor vLLM 0.7's
    premultiplied projections; a decode-only one carries both."""
    from workloads.runtime import load_runtime

    ds, h200 = load_model("deepseek-v3"), load_system("h200", 8)
    for name in ("sglang-0.4", "vllm-0.6"):
        rt = load_runtime(name)
        plain = replace(rt, mla_absorb="bmm", mla_decode_kernels=())
        cost, ref = (IterationCost(_serving(ds, dtype="fp8", tp=8, runtime=r), h200)
                     for r in (rt, plain))  # fmt: skip
        assert cost.linear(512, prompts=True).time_s == pytest.approx(
            ref.linear(512, prompts=True).time_s, rel=1e-9
        )
        assert cost.linear(64).time_s > 1.02 * ref.linear(64).time_s, name
