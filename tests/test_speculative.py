"""Speculative decoding (workloads.llm.Speculation): a drafter proposes k tokens, the target
checks k + 1 per sequence in one pass, and a step yields (1 - a^(k+1)) / (1 - a) tokens."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware import load_system
from sim import simulate
from sim.cli import main
from workloads import Decode, load_model
from workloads.llm import Speculation
from workloads.ops import WorkloadError

H100 = load_system("h100-sxm", 1)
LLAMA8 = load_model("llama-3-8b")


def _step(batch: int = 1, spec: Speculation | None = None, model=LLAMA8, context: int = 1024):
    w = Decode(model=model, batch=batch, context=context, spec=spec)
    return w, simulate(w, H100, check_memory=False)


@given(k=st.integers(1, 12), a=st.floats(0.0, 1.0))
@settings(max_examples=60, deadline=None)
def test_tokens_per_step_is_leviathans_expectation(k, a):
    e = Speculation(tokens=k, acceptance=a, draft="ngram").tokens_per_step
    # between the check's own token and every drafted token accepted
    assert 1.0 - 1e-9 <= e <= k + 1 + 1e-9
    # the sum over i of a^i, i = 0..k: the chance the first i drafts are all accepted
    assert e == pytest.approx(sum(a**i for i in range(k + 1)), rel=1e-9)


def test_acceptance_raises_the_tokens_per_step():
    es = [Speculation(tokens=4, acceptance=a, draft="ngram").tokens_per_step
          for a in (0.0, 0.3, 0.6, 0.9, 1.0)]  # fmt: skip
    assert es[0] == 1.0 and es[-1] == 5.0
    assert all(x < y for x, y in zip(es, es[1:], strict=False))


def test_the_check_is_one_pass_over_k_plus_one_tokens_per_sequence():
    plain, _ = _step(batch=2)
    spec, _ = _step(batch=2, spec=Speculation(tokens=3, acceptance=0.5, draft="ngram"))
    by_name = {op.name: op for op in spec.lower().ops}
    base = {op.name: op for op in plain.lower().ops}
    assert by_name["mlp_up"].gemm.m == 4 * base["mlp_up"].gemm.m
    assert by_name["lm_head"].gemm.m == 4 * base["lm_head"].gemm.m  # logits for every position
    att = by_name["attention"].attention
    assert (att.q_len, att.kv_len) == (4, 1024 + 3)
    assert not any(op.name.startswith("draft.") for op in spec.lower().ops)  # n-gram: host only


def test_memory_bound_speculation_pays_back_nearly_its_tokens_per_step():
    """At batch 1 the check of k + 1 tokens reads the same weights as one token: the speed-up
    approaches tokens_per_step, and never exceeds it."""
    spec = Speculation(tokens=3, acceptance=0.8, draft="ngram")
    w0, r0 = _step()
    w1, r1 = _step(spec=spec)
    speedup = r1.throughput["tokens_per_s"] / r0.throughput["tokens_per_s"]
    assert 0.85 * spec.tokens_per_step < speedup < spec.tokens_per_step


def test_speculation_gains_less_where_the_step_is_compute_bound():
    spec = Speculation(tokens=4, acceptance=0.7, draft="ngram")
    gains = []
    for batch in (1, 256):
        _, r0 = _step(batch=batch)
        _, r1 = _step(batch=batch, spec=spec)
        gains.append(r1.throughput["tokens_per_s"] / r0.throughput["tokens_per_s"])
    assert gains[1] < gains[0]


def test_with_nothing_accepted_speculation_only_costs():
    _, r0 = _step(batch=8)
    _, r1 = _step(batch=8, spec=Speculation(tokens=4, acceptance=0.0, draft="ngram"))
    assert r1.throughput["tokens_per_s"] < r0.throughput["tokens_per_s"]


def test_a_draft_model_runs_k_decode_steps_of_its_own():
    draft = load_model("llama-3-8b")
    target = load_model("llama-3-70b")
    spec = Speculation(tokens=3, acceptance=0.7, draft=draft)
    w = Decode(model=target, batch=1, context=512, tp=4, spec=spec)
    ops = w.lower().ops
    drafted = [op for op in ops if op.name.startswith("draft.")]
    assert {op.name for op in drafted} >= {"draft.mlp_up", "draft.lm_head", "draft.attention"}
    up = next(op for op in drafted if op.name == "draft.mlp_up")
    assert up.count == 3 * draft.n_layers  # k passes of every draft layer
    assert not any(op.name == "draft.host_step" for op in ops)  # one engine step's host work
    # its weights and cache are held beside the target's
    plain = Decode(model=target, batch=1, context=512, tp=4).lower().memory
    assert w.lower().memory.weights_bytes > plain.weights_bytes + 0.9 * 16e9 / 4


def test_mtp_drafts_with_one_block_of_the_target_and_its_lm_head():
    ds = load_model("deepseek-v3")
    w = Decode(model=ds, batch=4, context=2048, tp=8, dtype="fp8",
               spec=Speculation(tokens=1, acceptance=0.85, draft="mtp"))  # fmt: skip
    names = [op.name for op in w.lower().ops]
    assert "draft.draft_fc" in names and "draft.lm_head" in names
    assert any(n.startswith("draft.") and "experts" in n for n in names)  # an MoE block
    layers = {op.name: op.count for op in w.lower().ops}
    assert layers["draft.attention"] == 1  # one block, one proposal
    plain = Decode(model=ds, batch=4, context=2048, tp=8, dtype="fp8").lower().memory
    extra = w.lower().memory.weights_bytes - plain.weights_bytes
    # one MoE block and the projection, not a second embedding and head
    assert 0 < extra < 2 * ds.layer_params(True) / 8


def test_a_draft_with_another_vocabulary_is_refused():
    spec = Speculation(tokens=2, acceptance=0.6, draft=load_model("llama-2-7b"))
    with pytest.raises(WorkloadError, match="share the target's tokenizer"):
        Decode(model=LLAMA8, spec=spec).lower()


@pytest.mark.parametrize("a", [-0.1, 1.5, float("nan")])
def test_acceptance_outside_a_probability_is_refused(a):
    with pytest.raises(WorkloadError, match="--acceptance"):
        Speculation(tokens=2, acceptance=a)


def test_cli_decode_reports_tokens_per_step_and_counts_them(capsys):
    args = ["decode", "--model", "llama-3-8b", "--chip", "h100-sxm", "--context", "1024", "--json"]
    assert main(args) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main([*args, "--spec-tokens", "3", "--acceptance", "0.8", "--draft", "ngram"]) == 0
    spec = json.loads(capsys.readouterr().out)
    assert spec["workload"]["tokens_per_step"] == pytest.approx(2.952)
    ratio = spec["throughput"]["tokens_per_s"] / plain["throughput"]["tokens_per_s"]
    assert 2.0 < ratio < 2.952


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--spec-tokens", "3"], "--spec-tokens needs --acceptance"),
        (["--spec-tokens", "3", "--accepted-length", "5"], "--accepted-length must be between"),
        (["--spec-tokens", "3", "--acceptance", "0.5", "--accepted-length", "2"], "not both"),
        (["--acceptance", "0.7"], "--acceptance needs --spec-tokens"),
        (["--spec-tokens", "3", "--acceptance", "2"], "--acceptance must be a probability"),
        (
            ["--spec-tokens", "3", "--acceptance", "0.7", "--draft", "nonesuch"],
            "--draft: unknown model",
        ),
    ],
)
def test_cli_speculation_bad_input_is_one_line(extra, match, capsys):
    code = main(["decode", "--model", "llama-3-8b", "--chip", "h100-sxm", *extra])
    err = capsys.readouterr().err
    assert code != 0
    assert match in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_sweep_takes_the_speculation_fields(tmp_path, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_text(
        '[system]\nchip = "h100-sxm"\nchips = 1\n\n[workload]\nkind = "decode"\n'
        'model = "llama-3-8b"\ncontext = 1024\nspec_tokens = 3\ndraft = "ngram"\n\n'
        "[axes]\nacceptance = [0.0, 0.5, 0.9]\nbatch = [1, 64]\n"
    )
    out = tmp_path / "out.csv"
    assert main(["sweep", str(spec), "-o", str(out), "--no-progress"]) == 0
    import csv

    rows = list(csv.DictReader(out.open()))
    assert [r["status"] for r in rows] == ["ok"] * 6
    for batch in ("1", "64"):
        rates = [float(r["throughput"]) for r in rows if r["batch"] == batch]
        assert rates == sorted(rates) and rates[-1] > 2 * rates[0]


def test_mfu_counts_the_kept_tokens_not_the_drafts_or_the_rejected():
    spec = Speculation(tokens=4, accepted_length=2.5, draft="mtp")
    w = Decode(model=LLAMA8, batch=4, context=512, spec=spec)
    ops = w.lower().ops
    assert all(op.model_flops == 0 for op in ops if op.name.startswith("draft."))
    up = next(op for op in ops if op.name == "mlp_up")
    assert up.model_flops == pytest.approx(up.flops * 2.5 / 5)


# ---- serving -----------------------------------------------------------------------------------


def _serve(spec=None, **kw):
    from workloads.serving import LengthDist, Serving

    base = dict(model=LLAMA8, rate=2.0, duration_s=40.0, seed=1, spec=spec,
                prompt=LengthDist.parse("lognormal:400,0.6", "--prompt-dist"),
                output=LengthDist.parse("exp:150", "--output-dist"))  # fmt: skip
    return Serving(**(base | kw))


def _run(serving):
    from sim.engine.serve import simulate_serving

    return simulate_serving(serving, H100)


def test_serving_at_light_load_speculation_cuts_the_time_per_token():
    import numpy as np

    plain = _run(_serve())
    spec = _run(_serve(Speculation(tokens=3, acceptance=0.8, draft="ngram")))
    assert spec.completed == plain.completed == len(plain.arrival_s)
    # the same requests, every token delivered
    assert float(spec.output.sum()) == float(plain.output.sum())
    assert np.mean(spec.tpot) < 0.5 * np.mean(plain.tpot)
    # TTFT is a prefill either way
    assert np.median(spec.ttft) == pytest.approx(np.median(plain.ttft), rel=0.25)


def test_serving_kv_blocks_all_return_with_speculation_and_preemption():
    from workloads.serving import LengthDist

    # a small cache (24 % of the H100 after 16 GB of weights) under a heavy load: preemptions
    w = _serve(Speculation(tokens=4, acceptance=0.6, draft="mtp"), rate=20.0, duration_s=20.0,
               memory_fraction=0.24, prompt=LengthDist.parse("1500", "p"),
               output=LengthDist.parse("600", "o"))  # fmt: skip
    r = _run(w)
    assert r.preemptions > 0
    assert r.completed == len(r.arrival_s)
    assert r.kv_used.max() <= 1.0 + 1e-9
    assert r.kv_used[-1] == pytest.approx(0.0, abs=1e-9)


def test_serving_speculation_with_nothing_accepted_only_costs_throughput():
    heavy = dict(rate=40.0, duration_s=20.0)
    plain = _run(_serve(**heavy))
    spec = _run(_serve(Speculation(tokens=3, acceptance=0.0, draft="mtp"), **heavy))
    assert spec.tokens_per_s < plain.tokens_per_s
    assert spec.mfu < plain.mfu  # its extra rows and drafts are not model FLOPs


def test_serve_cli_speculates(capsys):
    args = ["serve", "--model", "llama-3-8b", "--chip", "h100-sxm", "--rate", "2", "--duration",
            "20", "--json"]  # fmt: skip
    assert main(args) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main([*args, "--spec-tokens", "3", "--accepted-length", "2.5"]) == 0
    spec = json.loads(capsys.readouterr().out)
    assert spec["workload"]["tokens_per_step"] == 2.5
    assert spec["tpot_s"]["mean"] < plain["tpot_s"]["mean"]


def test_plan_takes_the_speculation_flags(capsys):
    args = ["plan", "--model", "llama-3-8b", "--chip", "h100-sxm", "--rate", "5", "--tp", "1",
            "--json", "--spec-tokens", "3", "--accepted-length", "2.5", "--draft", "ngram"]  # fmt: skip
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["speculation"] == "3 drafts (ngram), 2.5 tokens a step"
    assert out["best"] is not None


# ---- review fixes (2026-12-05) -----------------------------------------------------------------


def test_chunked_prefill_counts_the_checks_rows_against_the_token_budget(monkeypatch):
    from sim.engine.serve import IterationCost

    seen = []
    real = IterationCost.iteration

    def record(self, n_decode, decode_context, chunks, sampled):
        seen.append(n_decode * self.q + sum(q for q, _ in chunks))
        return real(self, n_decode, decode_context, chunks, sampled)

    monkeypatch.setattr(IterationCost, "iteration", record)
    w = _serve(Speculation(tokens=7, acceptance=0.6, draft="ngram"), chunked_prefill=True,
               rate=30.0, duration_s=10.0)  # fmt: skip
    _run(w)
    assert seen and max(seen) <= w.token_budget


def test_a_draft_model_prefills_the_prompt_too():
    import numpy as np

    from workloads.serving import LengthDist

    l70 = load_model("llama-3-70b")
    sys4 = load_system("h100-sxm", 4)
    from sim.engine.serve import simulate_serving

    def ttft(spec):
        w = _serve(spec, model=l70, tp=4, rate=0.2, duration_s=60.0,
                   prompt=LengthDist.parse("4000", "p"), output=LengthDist.parse("4", "o"))  # fmt: skip
        return float(np.median(simulate_serving(w, sys4).ttft))

    plain = ttft(None)
    drafted = ttft(Speculation(tokens=3, acceptance=0.7, draft=load_model("llama-3-8b")))
    assert drafted > 1.05 * plain


def test_a_dense_draft_beside_an_moe_target_with_ep():
    spec = Speculation(tokens=3, acceptance=0.7, draft=load_model("llama-2-7b"))
    w = Decode(model=load_model("mixtral-8x7b"), batch=8, context=512, tp=1, dp=8, ep=8,
               spec=spec)  # fmt: skip
    assert any(op.name == "draft.mlp_up" for op in w.lower().ops)


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--draft", "ngram"], "--draft needs --spec-tokens"),
        (
            ["--chips", "2", "--tp", "1", "--pp", "2", "--spec-tokens", "3", "--acceptance", "0.7"],
            "speculative decoding with --pp is not modelled",
        ),
    ],
)
def test_more_speculation_input_errors_are_one_line(extra, match, capsys):
    code = main(["decode", "--model", "llama-3-8b", "--chip", "h100-sxm", *extra])
    err = capsys.readouterr().err
    assert code != 0 and match in err and len(err.strip().splitlines()) == 1


def test_a_draft_the_layout_cannot_run_is_named(capsys):
    code = main(["decode", "--model", "llama-3-70b", "--chip", "h100-sxm", "--tp", "64",
                 "--spec-tokens", "2", "--acceptance", "0.5", "--draft", "llama-3-8b"])  # fmt: skip
    err = capsys.readouterr().err
    assert code != 0 and len(err.strip().splitlines()) == 1
    assert "--draft llama-3-8b cannot run where the target does" in err and "--tp 64" in err


@pytest.mark.parametrize(
    ("draft", "match"), [("3", "draft must be"), ('"nonesuch"', "draft: unknown model")]
)
def test_sweep_draft_errors_are_point_errors(tmp_path, draft, match):
    spec = tmp_path / "spec.toml"
    spec.write_text(
        '[system]\nchip = "h100-sxm"\nchips = 1\n\n[workload]\nkind = "decode"\n'
        f'model = "llama-3-8b"\nspec_tokens = 3\nacceptance = 0.5\ndraft = {draft}\n\n'
        "[axes]\nbatch = [1, 2]\n"
    )
    out = tmp_path / "out.csv"
    main(["sweep", str(spec), "-o", str(out), "--no-progress"])
    import csv

    rows = list(csv.DictReader(out.open()))
    assert rows and all(r["status"] == "error" and match in r["error"] for r in rows)
