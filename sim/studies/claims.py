"""Widely repeated compute claims, each restated as a check: the assumption, what roofsim derives,
and a verdict (holds / off by ×k / wrong because ...).

Training claims simulate the training step (``sim/engine/train.py``: forward, backward, recompute,
optimizer, pipeline schedule, collectives) of a stated cluster layout. The 1 TB claim still
quotes the forward pass of a 13B model (a prefill), an upper bound on its training MFU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cache

from hardware import load_system
from sim.cost.simulate import simulate

DAY = 86_400.0
A100_BF16 = 312e12  # dense BF16 peak, A100 datasheet (the figure the claims divide by)


@dataclass(frozen=True, slots=True)
class Claim:
    key: str
    title: str
    assumed: str
    derived: str
    verdict: str
    numbers: dict

    def to_dict(self) -> dict:
        return asdict(self)


def _ratio_verdict(derived: float, assumed: float, tolerance: float = 0.25) -> str:
    """ "holds" within ``tolerance``, else "off by ×k" (k = derived / assumed)."""
    k = derived / assumed
    if abs(k - 1) <= tolerance:
        return f"holds (derived/assumed = {k:.2f})"
    return f"off by ×{k:.2f}" if k > 1 else f"off by ×{k:.2f} (÷{1 / k:.1f})"


def _train(model: str, chip: str, chips: int, dtype: str = "bf16", **kw):
    """One training step of ``model`` on ``chips`` chips (a Megatron-style layout)."""
    from sim.engine.train import simulate_training
    from workloads import load_model
    from workloads.training import Training

    t = Training(model=load_model(model), dtype=dtype, **kw)
    return simulate_training(t, load_system(chip, chips), check_memory=False)


def _forward_mfu(model: str, chip: str, tp: int, seq: int, batch: int, dtype: str = "bf16"):
    """Forward pass at a training shape: MFU and tokens/s per chip (upper bound for training)."""
    from workloads import Prefill, load_model

    w = Prefill(model=load_model(model), batch=batch, prompt=seq, tp=tp, dtype=dtype)
    r = simulate(w, load_system(chip, tp), check_memory=False)
    return r.mfu, batch * seq / r.time_s / tp


def _decode(model: str, chip: str, tp: int, batch: int, context: int, **kw):
    from workloads import Decode, load_model

    w = Decode(model=load_model(model), batch=batch, context=context, tp=tp)
    return simulate(w, load_system(chip, tp, kw.get("set", ())), check_memory=kw.get("check", True))


def _video_20b():
    from workloads.dit import DiT, load_dit

    m = load_dit("video-dit-20b")
    w = DiT(model=m, height=1088, width=1920, frames=1440, steps=20, sp=8)
    return m, simulate(w, load_system("a100-sxm-80gb", 8))


# --- the claims -----------------------------------------------------------------------------


def gpt4_training() -> Claim:
    flops = 6 * 400e9 * 20e12
    days = flops / (25_000 * A100_BF16 * 0.40) / DAY
    # a 405B dense stand-in on 2048 chips: TP8 (SP) x PP16 (interleaved x2) x DP16, seq 8192,
    # 16M-token batches, full recompute, distributed optimizer
    layout = dict(seq=8192, micro_batch=1, global_batch=2048, tp=8, sp=True, pp=16, vp=2,
                  dp=16, recompute="full", zero=1)  # fmt: skip
    a100 = _train("llama-3-405b", "a100-sxm-80gb", 2048, **layout)
    h100 = _train("llama-3-405b", "h100-sxm", 2048, **layout)
    h100_fp8 = _train("llama-3-405b", "h100-sxm", 2048, "fp8", **layout)
    bf16 = h100.tokens_per_s / a100.tokens_per_s
    fp8 = h100_fp8.tokens_per_s / a100.tokens_per_s
    derived_days = flops / (25_000 * A100_BF16 * a100.mfu) / DAY
    # energy: the usual estimate draws every A100's 400 W TDP for the whole run; the derived one
    # is the step's energy (idle + every op's FLOPs and bytes, hardware/power.py) per model FLOP
    tdp_mwh = 25_000 * 400.0 * days * DAY / 3.6e9
    derived_mwh = flops * a100.step_energy_j / a100.model_flops / 3.6e9
    return Claim(
        "gpt4-training",
        "GPT-4-class training: 6 x 400B active x 20T tokens on 25,000 A100; H100 2.5x (BF16) / 3.5x (FP8)",
        f"4.8e25 FLOPs / (25,000 x 312 TFLOP/s x 40 % MFU) = {days:.0f} days; H100 = 2.5x / 3.5x",
        f"arithmetic {flops:.2e} FLOPs -> {days:.0f} days at 40 %. A 405B dense training step "
        f"(TP8 PP16x2 DP16, seq 8192, full recompute) reaches {a100.mfu:.0%} MFU on A100 "
        f"-> {derived_days:.0f} days; H100/A100 tokens/s = {bf16:.2f}x BF16, {fp8:.2f}x FP8; "
        f"chip energy {derived_mwh:,.0f} MWh (at 400 W TDP for {days:.0f} days: {tdp_mwh:,.0f})",
        f"arithmetic holds; 40 % MFU {_ratio_verdict(a100.mfu, 0.40)}; speed-ups: BF16 "
        f"{_ratio_verdict(bf16, 2.5)}, FP8 {_ratio_verdict(fp8, 3.5)}; energy at TDP "
        f"{_ratio_verdict(derived_mwh, tdp_mwh)}",
        {
            "flops": flops,
            "days_at_40pct": days,
            "train_mfu_a100": a100.mfu,
            "days_at_derived_mfu": derived_days,
            "h100_over_a100_bf16": bf16,
            "h100_over_a100_fp8": fp8,
            "energy_mwh_at_tdp": tdp_mwh,
            "energy_mwh_derived": derived_mwh,
        },  # fmt: skip
    )


def gpt3_training() -> Claim:
    flops = 6 * 175e9 * 300e9
    pf_days = flops / (1e15 * DAY)
    days = flops / (760 * A100_BF16 * 0.514) / DAY
    # Megatron-LM's layout for 768 A100s (Narayanan et al. 2021, Table 2): TP8 x PP12 x DP8
    r = _train("gpt3-175b", "a100-sxm-80gb", 768, seq=2048, micro_batch=1, global_batch=1536,
               tp=8, pp=12, dp=8, recompute="full")  # fmt: skip
    derived_days = 300e9 / r.tokens_per_s / DAY
    return Claim(
        "gpt3-training",
        "GPT-3 175B: 3640 PF-days; one month on ~760 A100 at Megatron's 51.4 %",
        "6 x 175B x 300B tokens = 3640 PF-days; 760 A100 x 312 TFLOP/s x 51.4 % -> ~30 days",
        f"{flops:.3e} FLOPs = {pf_days:.0f} PF-days; {days:.1f} days on 760 A100 at 51.4 %; "
        f"the training step on 768 A100 (TP8 PP12 DP8, full recompute) reaches {r.mfu:.0%} MFU "
        f"({r.hfu:.0%} HFU) -> {derived_days:.0f} days",
        f"PF-days {_ratio_verdict(pf_days, 3640, 0.02)}; 51.4 % MFU "
        f"{_ratio_verdict(r.mfu, 0.514, 0.10)} (51.4 % is Korthikanti et al.'s selective-recompute "
        "run; full recompute costs a forward)",
        {
            "flops": flops,
            "pf_days": pf_days,
            "days": days,
            "train_mfu": r.mfu,
            "train_hfu": r.hfu,
            "days_derived": derived_days,
        },  # fmt: skip
    )


def tokens_in_a_terabyte() -> Claim:
    # ~4 bytes of English text per BPE token: OpenAI tokenizer guide ("one token generally
    # corresponds to ~4 characters of text for common English text")
    tokens = 1e12 / 4.0
    total = 3 * tokens
    flops = 6 * 10e9 * total
    mfu, _ = _forward_mfu("llama-2-13b", "a100-sxm-80gb", 1, 4096, 1)
    days_1 = flops / (A100_BF16 * mfu) / DAY
    return Claim(
        "1tb-text",
        "A 10B model on 1 TB of text for 3 epochs ('1e9 tokens')",
        "1 TB of text = 1e9 tokens",
        f"1 TB / ~4 bytes per token = {tokens:.1e} tokens per epoch, {total:.1e} for 3; "
        f"6 x 10B x {total:.1e} = {flops:.1e} FLOPs: >= {days_1:,.0f} days on 1 A100, "
        f">= {days_1 / 100:,.1f} days on 100 (at the forward-pass MFU {mfu:.0%} of a 13B model)",
        f"wrong: off by ×{tokens / 1e9:.0f} per epoch (1e9 tokens is ~4 GB of text)",
        {
            "tokens_per_epoch": tokens,
            "flops": flops,
            "days_1_a100": days_1,
            "days_100_a100": days_1 / 100,
        },  # fmt: skip
    )


CHATGPT_USERS, CHATGPT_WORDS, WORDS_PER_TOKEN, CHATGPT_PEAK = 13e6, 1000, 0.75, 5.0


def chatgpt_setup():
    """(Serving template, Demand, assumed A100 count) of the ChatGPT-scale estimate.

    13 M users x ~1000 words a day at ~0.75 words per token (OpenAI's tokenizer rule of thumb)
    is 1.73e10 tokens a day. The claim's 2·N FLOPs per token covers prompt and answer tokens
    alike, so they arrive as requests of a lognormal prompt (median 400) and an exponential answer
    (mean 250) of GPT-3 175B, clipped to its 2048-token context: requests per day = tokens /
    (prompt + answer) per request, and the peak is x5 the mean.
    """
    from dataclasses import replace

    from sim.studies.plan import Demand
    from workloads import load_model
    from workloads.serving import LengthDist, Serving

    tokens_per_day = CHATGPT_USERS * CHATGPT_WORDS / WORDS_PER_TOKEN
    model = load_model("gpt3-175b")
    base = Serving(
        model=model,
        prompt=LengthDist.parse("lognormal:400,0.8", "--prompt-dist", model.max_seq),
        output=LengthDist.parse("exp:250", "--output-dist", model.max_seq),
    )
    drawn = replace(base, rate=100.0, duration_s=1000.0).requests()  # 100k requests' mean
    per_request = float((drawn.prompt + drawn.output).mean())
    demand = Demand.from_tokens_per_day(tokens_per_day, per_request, CHATGPT_PEAK)
    tokens_per_s = tokens_per_day / DAY
    assumed = 2 * 175e9 * tokens_per_s * CHATGPT_PEAK / (A100_BF16 * 0.51)
    return base, demand, assumed


def chatgpt_serving() -> Claim:
    from sim.studies.plan import SLO, plan

    base, demand, assumed = chatgpt_setup()
    slo = SLO(ttft_s=2.0, tpot_s=0.1)
    best = plan(base, "a100-sxm-80gb", demand, slo, tps=(8,)).best
    assert best is not None and best.at_peak is not None and best.at_mean is not None
    peak = best.at_peak
    # a day of the fleet: every chip at the power it draws at the mean load (idle floor while it
    # waits, plus its iterations), against the TDP estimate of the assumed fleet
    mean_energy = best.at_mean.energy_j
    day_mwh = (
        best.chips * mean_energy / best.at_mean.n_chips / best.at_mean.end_s * DAY / 3.6e9
        if mean_energy
        else float("nan")
    )
    tdp_day_mwh = assumed * 400.0 * DAY / 3.6e9
    return Claim(
        "chatgpt-serving",
        "ChatGPT-scale serving: 13 M daily users x ~1000 words",
        f"~2,200 A100 at 51 % utilisation with a x5 peak (2 x 175B FLOPs per token at "
        f"{demand.mean_rate:,.0f} req/s mean over 312 TFLOP/s x 51 % gives {assumed:,.0f})",
        f"roofsim plan, GPT-3 175B TP8 on A100-80GB, p99 TTFT <= 2 s and p99 TPOT <= 100 ms at "
        f"{demand.peak_rate:,.0f} req/s: {best.max_rate_per_replica:.2f} req/s per replica -> "
        f"{best.chips:,} A100; MFU {peak.mfu:.1%} at peak, {best.at_mean.mfu:.1%} over the day "
        f"(mean decode batch {peak.mean_decode_batch:.0f}); the fleet draws {day_mwh:,.0f} MWh a "
        f"day (chips only; {tdp_day_mwh:,.0f} for the assumed fleet at 400 W)",
        f"{_ratio_verdict(best.chips, assumed)}: the simulated utilisation at an interactive SLO "
        f"is {peak.mfu:.0%}, not 51 % (benchmarks/serving_chatgpt.py tries chunked prefill and a "
        "looser SLO)",
        {
            "mean_rate": demand.mean_rate,
            "assumed_a100": assumed,
            "derived_a100": best.chips,
            "mfu_peak": peak.mfu,
            "mfu_day": best.at_mean.mfu,
            "max_rate_per_replica": best.max_rate_per_replica,
            "fleet_mwh_per_day": day_mwh,
            "assumed_fleet_mwh_per_day_at_tdp": tdp_day_mwh,
        },  # fmt: skip
    )


def decode_vs_video() -> Claim:
    decode = _decode("llama-2-70b", "a100-sxm-80gb", 8, 1, 1024)
    decode64 = _decode("llama-2-70b", "a100-sxm-80gb", 8, 64, 1024)
    m, video = _video_20b()
    answer_chip_s = 1000 * decode.time_s * 8
    answer_chip_s_64 = 1000 * decode64.time_s * 8 / 64
    video_chip_s = video.time_s * 8
    video_kwh = video.energy_j / 3.6e6
    answer_j, answer_j_64 = 1000 * decode.energy_j, 1000 * decode64.energy_j / 64
    return Claim(
        "decode-vs-video",
        "Decode is memory-bound at ~5 % MFU; a 20B video DiT at 1 M tokens is compute-bound at "
        "~50 %; a minute of video costs ~1,500x a 1k-token answer",
        "5 % and 50 % MFU; ratio ~1,500x",
        f"Llama-2-70B decode on 8 A100: {decode.mfu:.1%} MFU at batch 1, {decode64.mfu:.1%} at "
        f"batch 64 ({decode.bound}-bound); video-dit-20b, 979,200 tokens, 20 steps on 8 A100: "
        f"{video.mfu:.0%} MFU ({video.bound}-bound), {video.time_s:,.0f} s; a minute of video = "
        f"{video_chip_s / answer_chip_s:,.0f}x a 1k-token answer at batch 1, "
        f"{video_chip_s / answer_chip_s_64:,.0f}x at batch 64; energy: a minute of video "
        f"{video_kwh:,.1f} kWh (chips), a 1k-token answer {answer_j / 1e3:.2f} kJ at batch 1, "
        f"{answer_j_64 / 1e3:.3f} kJ at batch 64",
        f"bounds hold; decode MFU {_ratio_verdict(decode64.mfu, 0.05)} at batch 64 "
        f"(×{decode.mfu / 0.05:.2f} at batch 1); DiT MFU {_ratio_verdict(video.mfu, 0.50)}; "
        f"the ratio {_ratio_verdict(video_chip_s / answer_chip_s, 1500)} at batch 1 and grows "
        "with the decode batch",
        {
            "decode_mfu_b1": decode.mfu,
            "decode_mfu_b64": decode64.mfu,
            "video_mfu": video.mfu,
            "ratio_b1": video_chip_s / answer_chip_s,
            "ratio_b64": video_chip_s / answer_chip_s_64,
            "video_minute_kwh": video_kwh,
            "energy_ratio_b1": video.energy_j / answer_j,
            "energy_ratio_b64": video.energy_j / answer_j_64,
        },  # fmt: skip
    )


def million_token_attention() -> Claim:
    from workloads.ops import OpKind

    m, r = _video_20b()
    L = r.workload["latent_tokens"]
    attn_flops = sum(c.op.flops * c.op.count for c in r.costs if c.op.kind == OpKind.ATTENTION)
    linear = [c for c in r.costs
              if c.op.kind == OpKind.GEMM and c.op.family in ("projection", "mlp")]  # fmt: skip
    lin_flops = sum(c.op.flops * c.op.count for c in linear)
    attn_time = sum(c.total_time_s for c in r.costs if c.op.kind == OpKind.ATTENTION)
    lin_time = sum(c.total_time_s for c in linear)
    factor_flops = (attn_flops + lin_flops) / lin_flops
    # the same ratio in time: the attention and the linear layers' GEMMs, nothing else (the
    # VAE, norms and communication are in neither side of the FLOP ratio)
    factor_time = (attn_time + lin_time) / lin_time
    break_even = 14 * 6 * m.hidden  # L at which 1 + L/(6d) = 15
    return Claim(
        "1m-attention",
        "1 M-token attention multiplies DiT training cost by ~15x",
        "x15",
        f"video-dit-20b at {L:,} tokens: (attention + linear) / linear FLOPs = {factor_flops:.1f}x "
        f"(closed form 1 + L/(6d) = {1 + L / (6 * m.hidden):.1f}); time {factor_time:.1f}x on "
        f"A100 (forward; the backward's attention/linear ratio is about the same)",
        f"{_ratio_verdict(factor_flops, 15)}: ~15x holds near L = {break_even:,} tokens for d = "
        f"{m.hidden}",
        {"tokens": L, "flops_factor": factor_flops, "time_factor": factor_time},
    )


def mid_chip_vs_h100() -> Claim:
    from workloads import Decode, Prefill, load_model

    m = load_model("llama-2-70b")
    out, joules = {}, {}
    for chip in ("mid-14nm-144g", "h100-sxm"):
        system = load_system(chip, 2)
        dec = simulate(Decode(model=m, batch=1, context=2048, tp=2), system)
        pre = simulate(Prefill(model=m, batch=1, prompt=2048, tp=2), system)
        out[chip] = (dec.time_s, pre.time_s)
        joules[chip] = (dec.energy_j, pre.energy_j)
    d = out["mid-14nm-144g"][0] / out["h100-sxm"][0]
    p = out["mid-14nm-144g"][1] / out["h100-sxm"][1]
    # tokens per joule, 14 nm over H100 (> 1: the 14 nm chip spends less energy per token)
    d_j = joules["h100-sxm"][0] / joules["mid-14nm-144g"][0]
    p_j = joules["h100-sxm"][1] / joules["mid-14nm-144g"][1]
    return Claim(
        "mid-chip",
        "A 14 nm, 188 TFLOP/s, 144 GB-HBM chip serves LLM decode about as well as an H100",
        "decode time ratio ~1",
        f"Llama-2-70B on 2 chips, context 2048: decode {out['mid-14nm-144g'][0] * 1e3:.1f} vs "
        f"{out['h100-sxm'][0] * 1e3:.1f} ms ({d:.2f}x); prefill of 2048 tokens "
        f"{out['mid-14nm-144g'][1] * 1e3:.0f} vs {out['h100-sxm'][1] * 1e3:.0f} ms ({p:.1f}x); "
        f"tokens per joule (14 nm / H100): decode {d_j:.2f}x, prefill {p_j:.2f}x",
        f"decode {_ratio_verdict(d, 1.0, 0.10)}; but prefill is {p:.1f}x slower: time to first "
        "token and large batches are where the FLOPs show",
        {
            "decode_ratio": d,
            "prefill_ratio": p,
            "decode_tokens_per_j_ratio": d_j,
            "prefill_tokens_per_j_ratio": p_j,
        },  # fmt: skip
    )


def pim_decode() -> Claim:
    # Samsung HBM-PIM (Aquabolt-XL, ISSCC 2021): "four times the processing bandwidth" of the
    # off-chip path from bank-level parallelism, 1.2 TFLOP/s FP16 per cube; an H100 has 5 stacks
    h100 = load_system("h100-sxm").chip.main_memory
    pim = (
        f"hbm.pim_bandwidth={4 * h100.bandwidth_bytes_per_s:.4g}",
        "hbm.pim_flops=6TFLOP/s",
    )
    rows, energy = {}, {}
    for model in ("llama-2-7b", "llama-3-8b"):
        base = _decode(model, "h100-sxm", 1, 16, 4096)
        with_pim = _decode(model, "h100-sxm", 1, 16, 4096, set=pim)
        rows[model] = base.time_s / with_pim.time_s
        energy[model] = base.energy_j / with_pim.energy_j  # tokens per joule, PIM over plain
    return Claim(
        "pim",
        "Processing-in-memory HBM (attention GEMV in memory) lifts decode throughput",
        "PIM lifts decode throughput",
        f"H100 with HBM-PIM (internal bandwidth 4x = {4 * h100.bandwidth_bytes_per_s / 1e12:.1f} "
        f"TB/s, 6 TFLOP/s in memory), batch 16, context 4096: Llama-2-7B (MHA) "
        f"{rows['llama-2-7b']:.2f}x tokens/s; Llama-3-8B (GQA, 4 query heads per KV head) "
        f"{rows['llama-3-8b']:.2f}x; tokens per joule {energy['llama-2-7b']:.2f}x and "
        f"{energy['llama-3-8b']:.2f}x (the K/V read inside the DRAM skips its interface and the "
        "chip's memory path)",
        f"holds for multi-head attention (×{rows['llama-2-7b']:.2f}); with GQA the attention does "
        "4x the FLOPs per cached byte and the in-memory units, not the banks, bind: no gain",
        {
            "speedup_mha": rows["llama-2-7b"],
            "speedup_gqa": rows["llama-3-8b"],
            "energy_gain_mha": energy["llama-2-7b"],
            "energy_gain_gqa": energy["llama-3-8b"],
        },  # fmt: skip
    )


@cache
def _best_14nm_search():
    from sim.studies.design import load_spec, search

    return search(load_spec("14nm-inference"), progress=False, workers=1 if _WORKER else None)


def best_14nm_chip() -> Claim:
    """The 14 nm question answered by search: the best 14 nm chip under the reticle with 144 GB
    of HBM (``roofsim design 14nm-inference``), against the H100 per $ and per joule."""
    result = _best_14nm_search()
    best = result.best
    dec, pre = (f"{k}:llama-3-70b" for k in ("decode", "prefill"))
    ref = result.reference
    d, p = (best.throughput[k] / ref[k][0] for k in (dec, pre))
    d_j, p_j = (best.per_j[k] / ref[k][1] for k in (dec, pre))
    per_usd = result.reference_cost / best.cost_usd
    v = best.values
    return Claim(
        "best-14nm-chip",
        "The best 14 nm inference chip (reticle-limited die, >= 144 GB HBM) matches an H100",
        "a 14 nm chip can match the H100 for LLM inference, per chip or per dollar",
        f"search over {len(result.evaluations):,} designs (benchmarks/designs/"
        f"14nm-inference.toml): {v['matrix_tflops']:.0f} TFLOP/s bf16 at "
        f"{v['clock_ghz']:.2f} GHz, {v['sram_mib']:.0f} MiB SRAM, {v['memory_sites']} x "
        f"{v['memory_technology'].upper()}, {v['link_gbps']:.0f} GB/s links; "
        f"{best.die_area_mm2:.0f} mm2, ${best.cost_usd:,.0f} to make (H100 "
        f"${result.reference_cost:,.0f}). Llama-3-70B on 8 chips, per chip: decode (batch 32) "
        f"{d:.2f}x the H100, prefill (8k) {p:.2f}x; per $ of chip {d * per_usd:.2f}x and "
        f"{p * per_usd:.2f}x; per joule {d_j:.2f}x and {p_j:.2f}x",
        f"decode {_ratio_verdict(d, 1.0, 0.15)} per chip; prefill off by ×{p:.2f}: the reticle "
        "caps a 14 nm die's FLOPs",
        {
            "decode_ratio": d,
            "prefill_ratio": p,
            "decode_per_usd_ratio": d * per_usd,
            "prefill_per_usd_ratio": p * per_usd,
            "decode_per_j_ratio": d_j,
            "prefill_per_j_ratio": p_j,
            "score": best.score,
            "die_area_mm2": best.die_area_mm2,
            "cost_usd": best.cost_usd,
            "values": v,
        },  # fmt: skip
    )


CLAIMS: dict[str, Callable[[], Claim]] = {
    "gpt4-training": gpt4_training,
    "gpt3-training": gpt3_training,
    "1tb-text": tokens_in_a_terabyte,
    "chatgpt-serving": chatgpt_serving,
    "decode-vs-video": decode_vs_video,
    "1m-attention": million_token_attention,
    "mid-chip": mid_chip_vs_h100,
    "pim": pim_decode,
    "best-14nm-chip": best_14nm_chip,
}


#: each claim checked in this process, by key: a claim takes no input, so it is checked once
_CHECKED: dict[str, Claim] = {}


#: whether this process is one of check_all's workers (a claim's own search then runs in it
#: alone: the other claims hold the other cores)
_WORKER = False


def _in_worker() -> None:
    global _WORKER
    _WORKER = True


def _check(key: str) -> Claim:
    return CLAIMS[key]()


def check_all(
    keys: list[str] | None = None, progress: bool = False, workers: int | None = None
) -> list[Claim]:
    """The claims ``keys`` (all by default), each checked once a process, those left over in
    ``workers`` processes (None: every core; 1: this one); ``progress``: a bar on a terminal's
    stderr."""
    from sim.studies.pool import pool_size, process_pool
    from sim.studies.progress import Progress

    keys = keys or list(CLAIMS)
    todo = [k for k in dict.fromkeys(keys) if k not in _CHECKED]
    bar = Progress(len(keys), progress, "claims")
    bar.update(len(keys) - len(todo))
    workers = pool_size(workers, len(todo))
    if workers <= 1:
        for k in todo:
            bar.update(0, k)
            _CHECKED[k] = _check(k)
            bar.update(1, k)
    else:
        from concurrent.futures import as_completed

        with process_pool(workers, _in_worker) as pool:
            futures = {pool.submit(_check, k): k for k in todo}
            for future in as_completed(futures):
                _CHECKED[futures[future]] = future.result()
                bar.update(1, futures[future])
    bar.close()
    return [_CHECKED[k] for k in keys]


def format_claims(claims: list[Claim]) -> str:
    out = []
    for c in claims:
        out += [f"[{c.key}] {c.title}", f"  assumed: {c.assumed}", f"  derived: {c.derived}",
                f"  verdict: {c.verdict}", ""]  # fmt: skip
    return "\n".join(out).rstrip()
