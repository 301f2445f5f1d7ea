"""The ``roofsim`` command line: decode, prefill, dit, train, serve, plan, sweep, compare, plot,
validate, claims, calibrate, chips, models (lazy imports)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from sim import version
from sim.cli import area, compare, design, plot, sweep  # argparse only; heavy imports load when run
from sim.cli.args import (
    ATTN_HELP,
    DECODE_ATTN_HELP,
    DIT_RUNTIME_HELP,
    SET_HELP,
    add_html_arg,
    add_int4_group_arg,
    add_llm_args,
    add_run_output_args,
    add_runtime_arg,
    add_sampling_arg,
    add_spec_args,
    add_train_args,
    check_html,
    dumps,
    fraction,
    int_arg,
    llm_workload,
    positive_float,
    positive_int,
    speculation,
    split_arg,
    training_workload,
    write_html,
)


def _add_dit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        required=True,
        help="DiT preset slug, a DiT TOML file or a diffusers transformer config.json",
    )
    p.add_argument("--chip", required=True, help="chip preset slug or a chip TOML file")
    p.add_argument("--chips", type=positive_int, default=1, help="chips in all (default 1)")
    p.add_argument(
        "--sp", choices=("ulysses", "ring"), default="ulysses",
        help="sequence parallelism over chips/replicas chips per request (default ulysses)",
    )  # fmt: skip
    p.add_argument("--replicas", type=positive_int, default=1, help="data-parallel replicas")
    p.add_argument("--parallel-vae", action="store_true",
                   help="split the VAE decode over the sequence-parallel chips (xDiT's "
                   "--use_parallel_vae); default: one chip decodes the whole sample")  # fmt: skip
    p.add_argument("--height", type=int_arg, default=None, help="pixels (default: the model's)")
    p.add_argument("--width", type=int_arg, default=None, help="pixels (default: the model's)")
    p.add_argument("--frames", type=int_arg, default=None, help="video frames (1 = image)")
    p.add_argument("--fps", type=float, default=None, help="frames per second (for reporting)")
    p.add_argument("--steps", type=int_arg, default=None, help="denoising steps")
    p.add_argument("--batch", type=int_arg, default=1, help="images/videos per run")
    p.add_argument(
        "--cfg", action=argparse.BooleanOptionalAction, default=None,
        help="classifier-free guidance as a doubled batch (default: the model's pipeline)",
    )  # fmt: skip
    p.add_argument("--tokens", type=int_arg, default=None, help="override latent tokens")
    p.add_argument("--text-tokens", type=int_arg, default=None,
                   help="text tokens in the joint or cross attention (Flux: the pipeline's "
                   "max_sequence_length; SD3: 77 CLIP + max_sequence_length T5; default: the "
                   "model's)")  # fmt: skip
    p.add_argument("--dtype", default="bf16", help="compute dtype (bf16, fp16, fp8, fp32)")
    p.add_argument("--attention-kernel", default=None, help=ATTN_HELP)
    add_runtime_arg(p, "diffusers", DIT_RUNTIME_HELP)
    add_run_output_args(p)


def _simulate_and_print(workload, system, args: argparse.Namespace) -> int:
    from sim.cost.simulate import simulate

    result = simulate(workload, system, check_memory=not args.no_memory_check)
    if args.json:
        print(dumps(result.to_dict()))
    else:
        print(result.summary(top=args.top))
    write_html(args, lambda: _report().run_report(result, system, command=args.argv))
    return 0


def _report():
    """``sim.plots.report``, imported when a page is written (it loads matplotlib to draw)."""
    from sim.plots import report

    return report


def _run_llm(args: argparse.Namespace, kind: str) -> int:
    workload, system = llm_workload(args, kind)
    return _simulate_and_print(workload, system, args)


def _run_dit(args: argparse.Namespace) -> int:
    from hardware import ConfigError, load_system
    from workloads.dit import DiT, load_dit
    from workloads.runtime import load_runtime

    model = load_dit(args.model)
    chips = args.chips
    if chips % args.replicas:
        raise ConfigError(f"--chips {chips} must be a multiple of --replicas {args.replicas}")
    workload = DiT(
        model=model,
        height=model.default_height if args.height is None else args.height,
        width=model.default_width if args.width is None else args.width,
        frames=model.default_frames if args.frames is None else args.frames,
        fps=model.default_fps if args.fps is None else args.fps,
        steps=model.default_steps if args.steps is None else args.steps,
        batch=args.batch,
        cfg=model.default_cfg if args.cfg is None else args.cfg,
        dtype=args.dtype,
        sp=chips // args.replicas,
        sp_method=args.sp,
        parallel_vae=args.parallel_vae,
        dp=args.replicas,
        tokens=args.tokens,
        text_tokens=args.text_tokens,
        attention_kernel=args.attention_kernel,
        runtime=load_runtime(args.runtime),
    )
    system = load_system(args.chip, chips, args.set)
    return _simulate_and_print(workload, system, args)


def _run_train(args: argparse.Namespace) -> int:
    from hardware import ConfigError
    from sim.engine.train import simulate_training

    workload, system = training_workload(args)
    result = simulate_training(workload, system, overlap=not args.no_overlap,
                               check_memory=not args.no_memory_check,
                               trace=bool(args.trace or args.html))  # fmt: skip
    if args.trace:
        try:
            result.timeline.write_trace(args.trace, {"workload": result.workload})
        except OSError as exc:
            raise ConfigError(f"--trace {args.trace}: cannot write ({exc.strerror})") from None
    if args.json:
        print(dumps(result.to_dict()))
    else:
        print(result.summary(top=args.top))
        if args.trace:
            print(f"wrote {args.trace} (open in ui.perfetto.dev or chrome://tracing)")
    write_html(args, lambda: _report().run_report(result, system, command=args.argv))
    return 0


def _add_serve_args(p: argparse.ArgumentParser, plan: bool = False) -> None:
    p.add_argument("--model", required=True, help="preset slug, model TOML or HF config.json")
    p.add_argument("--chip", required=True, help="chip preset slug or a chip TOML file")
    if not plan:
        p.add_argument("--chips", type=positive_int, default=None,
                       help="chips in all = replicas x tp (default: --tp)")  # fmt: skip
        p.add_argument("--tp", type=positive_int, default=1, help="tensor-parallel degree")
        p.add_argument("--rate", type=positive_float, default=1.0,
                       help="Poisson arrivals per second")  # fmt: skip
        p.add_argument("--duration", type=positive_float, default=60.0,
                       help="seconds of arrivals")  # fmt: skip
        p.add_argument("--trace-file", default=None, metavar="CSV",
                       help="arrivals from a CSV: arrival_s,prompt_tokens,output_tokens")  # fmt: skip
        p.add_argument("--prefill-chips", type=int_arg, default=0, metavar="N",
                       help="disaggregated serving: N of the chips (a multiple of --tp) only "
                       "prefill, the rest only decode; each request's KV cache moves between "
                       "the pools over the inter-node link (default 0: colocated)")  # fmt: skip
        p.add_argument("--router", default="least-loaded",
                       help="least-loaded (default) or round-robin")  # fmt: skip
        p.add_argument("--concurrency", type=int_arg, default=None,
                       help="closed loop: N clients, each sends its next request on completion "
                       "(the stream's arrival times are ignored)")  # fmt: skip
        p.add_argument("--plot", default=None, metavar="FILE.png|svg",
                       help="draw requests in system and KV-cache occupancy over time")  # fmt: skip
    p.add_argument("--prompt-dist", default="lognormal:500,0.8",
                   help="prompt tokens: N, uniform:LO,HI, exp:MEAN, lognormal:MEDIAN,SIGMA "
                   "(default lognormal:500,0.8)")  # fmt: skip
    p.add_argument("--output-dist", default="exp:250",
                   help="output tokens, same forms (default exp:250)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same run)")
    p.add_argument(
        "--dtype", default="bf16", help="weights/compute dtype (bf16, fp8, fp4, int8, int4)"
    )
    p.add_argument("--kv-dtype", default=None, help="KV-cache dtype (default: bf16)")
    add_int4_group_arg(p)
    p.add_argument("--attention-kernel", default=None, help=DECODE_ATTN_HELP)
    add_sampling_arg(p)
    add_runtime_arg(p)
    p.add_argument("--max-num-seqs", type=int_arg, default=256, help="running sequences cap")
    p.add_argument("--max-batched-tokens", type=int_arg, default=None,
                   help="tokens per iteration (default 8192, 2048 with chunked prefill)")  # fmt: skip
    p.add_argument("--chunked-prefill", action="store_true",
                   help="decode first, fill the token budget with prompt chunks")  # fmt: skip
    p.add_argument("--mixed-prefill", choices=("yes", "no"), default=None,
                   help="with --chunked-prefill: prompt chunks ride in decode steps (yes: vLLM, "
                   "SGLang --enable-mixed-chunk) or take steps of their own, prefill first (no: "
                   "SGLang's default); default: the runtime's")  # fmt: skip
    p.add_argument("--block-size", type=int_arg, default=16, help="KV block tokens")
    p.add_argument("--admission", default=None,
                   help="watermark (vLLM: prompt blocks, preempt when full) or reserve "
                   "(TensorRT-LLM no-evict: prompt + output blocks at admission); default: "
                   "the runtime's")  # fmt: skip
    p.add_argument("--memory-fraction", type=fraction, default=0.9,
                   help="the engine's memory share (default 0.9), read as the runtime reads it: "
                   "of the chip (vLLM), of the memory left after the weights (TensorRT-LLM), or "
                   "of the chip for weights and KV only (SGLang): roofsim runtimes")  # fmt: skip
    p.add_argument(
        "--slo-ttft",
        type=positive_float,
        default=None if not plan else 2.0,
        help="TTFT limit in seconds" + (" (p-th percentile, default 2)" if plan else ""),
    )
    p.add_argument("--slo-tpot", type=positive_float, default=None if not plan else 0.1,
                   help="TPOT limit in seconds" + (" (default 0.1)" if plan else ""))  # fmt: skip
    p.add_argument("--set", action="append", default=[], metavar="PATH=VALUE", help=SET_HELP)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_html_arg(p)


def _serving(args: argparse.Namespace, tp: int, replicas: int):
    from workloads import load_model
    from workloads.runtime import load_runtime
    from workloads.serving import LengthDist, Serving, load_trace

    model = load_model(args.model)
    trace = load_trace(args.trace_file) if getattr(args, "trace_file", None) else None
    runtime = load_runtime(args.runtime)
    if getattr(args, "mixed_prefill", None) is not None:  # the engine's flag over its default
        runtime = replace(runtime, mixed_prefill=args.mixed_prefill == "yes")
    return Serving(
        model=model, dtype=args.dtype, kv_dtype=args.kv_dtype, int4_group=args.int4_group,
        tp=tp, replicas=replicas,
        rate=args.rate if getattr(args, "rate", None) is not None else 1.0,
        duration_s=getattr(args, "duration", 60.0),
        prompt=LengthDist.parse(args.prompt_dist, "--prompt-dist", model.max_seq),
        output=LengthDist.parse(args.output_dist, "--output-dist", model.max_seq),
        trace=trace, seed=args.seed, max_num_seqs=args.max_num_seqs,
        max_num_batched_tokens=args.max_batched_tokens, chunked_prefill=args.chunked_prefill,
        block_size=args.block_size, memory_fraction=args.memory_fraction,
        router=getattr(args, "router", "least-loaded"),
        concurrency=getattr(args, "concurrency", None), admission=args.admission,
        attention_kernel=args.attention_kernel, runtime=runtime, spec=speculation(args, model),
        sampling=args.sampling,
    )  # fmt: skip


def _run_serve(args: argparse.Namespace) -> int:
    from hardware import ConfigError, load_system
    from sim.engine.serve import simulate_serving

    chips = args.chips or args.tp
    if chips % args.tp:
        raise ConfigError(f"--chips {chips} must be a multiple of --tp {args.tp}")
    if args.plot:
        from sim.plots.charts import check_output

        check_output(args.plot, "--plot")  # a wrong suffix fails before the run
    pre = args.prefill_chips
    if pre and (pre < 0 or pre % args.tp or pre >= chips):
        raise ConfigError(
            f"--prefill-chips {pre} must be a multiple of --tp {args.tp} below --chips {chips} "
            "(the rest decode)"
        )
    serving = replace(_serving(args, args.tp, chips // args.tp), prefill_replicas=pre // args.tp)
    system = load_system(args.chip, chips, args.set)
    result = simulate_serving(serving, system, slo_ttft_s=args.slo_ttft, slo_tpot_s=args.slo_tpot)
    print(dumps(result.to_dict()) if args.json else result.summary())
    if args.plot:
        from sim.plots.charts import serving_timeline

        serving_timeline(result, args.plot)
        if not args.json:
            print(f"wrote {args.plot}")
    write_html(args, lambda: _report().run_report(result, system, command=args.argv))
    return 0


def _run_plan(args: argparse.Namespace) -> int:
    from sim.studies.plan import SLO, Demand, plan

    serving = _serving(args, 1, 1)
    if (args.rate is None) == (args.tokens_per_day is None):
        from hardware import ConfigError

        raise ConfigError("plan: give exactly one of --rate (req/s) and --tokens-per-day")
    if args.rate is not None:
        demand = Demand(mean_rate=args.rate, peak_to_mean=args.peak_to_mean)
    else:
        demand = Demand.from_tokens_per_day(
            args.tokens_per_day, serving.output.mean, args.peak_to_mean
        )
    slo = SLO(ttft_s=args.slo_ttft, tpot_s=args.slo_tpot, percentile=args.percentile)
    result = plan(
        serving, args.chip, demand, slo, tps=tuple(args.tp) if args.tp else None, sets=args.set,
        usd_per_chip_hour=args.usd_per_chip_hour, splits=tuple(args.split or ()),
    )  # fmt: skip
    print(dumps(result.to_dict()) if args.json else result.summary())
    inputs = _given(args) | {"split": ", ".join(f"{p}:{d}" for p, d in args.split or ()) or None}
    write_html(args, lambda: _report().plan_report(result, inputs=inputs, command=args.argv))
    return 0


def _given(args: argparse.Namespace) -> dict[str, Any]:
    """The command's options as given or defaulted, for a report's inputs table."""
    return {k.replace("_", "-"): v for k, v in vars(args).items()
            if k not in ("command", "json", "html", "argv")}  # fmt: skip


def _run_validate(args: argparse.Namespace) -> int:
    from hardware import ConfigError
    from sim.studies.validate import (
        DEFAULT_DATA,
        KINDS,
        check_group_by,
        compare_baseline,
        format_baseline,
        format_table,
        group_errors,
        group_table,
        read_baseline,
        summary_table,
        validate,
        write_report,
    )

    unknown = [k for k in args.kind or () if k not in KINDS]
    if unknown:
        raise ConfigError(
            f"--kind {unknown[0]}: not a validation kind; choose from {', '.join(KINDS)}"
        )
    if args.by is not None:  # fail before minutes of rows
        check_group_by(args.by)
    # read before the run: a bad baseline fails in a moment, not after minutes of rows
    baseline = read_baseline(args.baseline) if args.baseline else None
    results, summary = validate(
        args.data or DEFAULT_DATA,
        args.kind or None,
        fast=args.fast,
        progress=True,
        ids=args.id,
        workers=args.workers,
    )
    if args.report:
        write_report(args.report, results, summary)
    diff = compare_baseline(baseline, results, summary) if baseline is not None else None
    groups = group_errors(results, args.by) if args.by is not None else None
    if args.json:
        out = {"summary": [s.to_dict() for s in summary], "rows": [r.to_dict() for r in results]}
        out |= {"groups": [g.to_dict() for g in groups]} if groups is not None else {}
        print(dumps(out | ({"baseline": diff} if diff is not None else {})))
    else:
        print(summary_table(summary) if args.summary else format_table(results, summary))
        if groups is not None:
            print("\n" + group_table(groups, args.by))
        if diff is not None:
            print(format_baseline(diff, args.baseline))
        if args.report:
            print(f"wrote {args.report}")
    write_html(args, lambda: _report().validate_report(results, summary, inputs=_given(args),
                                                       command=args.argv))  # fmt: skip
    failed = [s.kind for s in summary if s.passed is False]
    if failed and not args.no_fail:
        print(f"roofsim: median error above the bar for: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _run_claims(args: argparse.Namespace) -> int:
    from hardware import ConfigError
    from sim.studies.claims import CLAIMS, check_all, format_claims

    unknown = [k for k in args.claim or [] if k not in CLAIMS]
    if unknown:
        raise ConfigError(f"--claim {unknown[0]!r} unknown; one of {', '.join(CLAIMS)}")
    claims = check_all(args.claim or None, progress=True, workers=args.workers)
    if args.json:
        print(dumps([c.to_dict() for c in claims]))
    else:
        print(format_claims(claims))
    write_html(args, lambda: _report().claims_report(claims, command=args.argv))
    return 0


def _check_chip(args: argparse.Namespace) -> int:
    """``roofsim chips --check CHIP``: the chip loads (or fails with one line), and each field
    that may be omitted says whether it was given or defaulted, and why; derived power
    coefficients are listed."""
    from hardware import load_system
    from hardware.loader import field_origins, load_chip_dict

    chip = load_system(args.check).chip  # validates the whole chip
    rows = [
        {"field": f, "value": v, "origin": o}
        for f, v, o in field_origins(load_chip_dict(args.check))
    ]
    derived = chip.sources.get("power_derived", "")
    if args.json:
        print(dumps({"chip": chip.name, "fields": rows, "power_derived": derived}))
        return 0
    print(f"{chip.name}: loads; fields that may be omitted:")
    for r in rows:
        print(f"  {r['field']:<36}{r['value']:>20}  {r['origin']}")
    if derived:
        print(f"  power coefficients derived by hardware/power.py rules: {derived}")
    return 0


def _run_chips(args: argparse.Namespace) -> int:
    if args.check:
        return _check_chip(args)
    from hardware import list_chips, load_system
    from hardware.loader import chip_aliases
    from hardware.units import format_si
    from sim.cost.simulate import matmul_fractions

    aliases: dict[str, list[str]] = {}
    for alias, preset in sorted(chip_aliases().items()):
        aliases.setdefault(preset, []).append(alias)
    rows = []
    for name in list_chips():
        system = load_system(name)
        c = system.chip
        fractions = matmul_fractions(system)
        rows.append(
            {
                "name": name,
                "aliases": aliases.get(name, []),
                "full_name": c.full_name,
                "bf16_flops_per_s": c.peak_flops_per_s.get("bf16", c.peak_flops_per_s.get("fp16")),
                "main_memory": c.main_memory.name,
                "capacity_bytes": c.main_memory.capacity_bytes,
                "bandwidth_bytes_per_s": c.main_memory.bandwidth_bytes_per_s,
                "hypothetical": c.hypothetical,
                "tdp_w": c.tdp_watts,
                "idle_w": c.idle_watts,
                "matrix_pj_per_flop": c.matrix_pj_per_flop,
                # a dense 8192^3 GEMM over the peak: a short burst, and steady at the TDP
                "burst_matmul_fraction": fractions[0] if fractions else None,
                "steady_matmul_fraction": fractions[1] if fractions else None,
                "power_derived": c.sources.get("power_derived", ""),
            }
        )
    if args.json:
        print(dumps(rows))
        return 0
    print(f"{'chip':<16}{'bf16 dense':>14}{'memory':>12}{'bandwidth':>13}{'TDP':>8}"
          f"{'steady':>8}  name")  # fmt: skip
    for r in rows:
        bf16 = format_si(r["bf16_flops_per_s"], "FLOP/s") if r["bf16_flops_per_s"] else "-"
        tdp = f"{r['tdp_w']:.0f} W" if r["tdp_w"] else "-"
        steady = f"{r['steady_matmul_fraction']:.2f}" if r["steady_matmul_fraction"] else "-"
        print(
            f"{r['name']:<16}{bf16:>14}{format_si(r['capacity_bytes'], 'B'):>12}"
            f"{format_si(r['bandwidth_bytes_per_s'], 'B/s'):>13}{tdp:>8}{steady:>8}  {r['full_name']}"
            + ("  (hypothetical)" if r["hypothetical"] else "")
        )
    print(
        "aliases (--chip takes them too, any case): "
        + "; ".join(f"{r['name']}: {', '.join(r['aliases'])}" for r in rows if r["aliases"])
    )
    return 0


def _run_runtimes(args: argparse.Namespace) -> int:
    """Runtime presets (workloads/presets/runtimes), a row each."""
    from workloads.runtime import FSDP_IMPLEMENTATIONS, list_runtimes, load_runtime, runtime_aliases

    aliases: dict[str, list[str]] = {}
    for alias, name in sorted(runtime_aliases().items()):
        aliases.setdefault(name, []).append(alias)
    rows = [{**load_runtime(n).describe(), "full_name": load_runtime(n).full_name,
             "aliases": aliases.get(n, [])} for n in list_runtimes()]  # fmt: skip
    if args.json:
        print(dumps(rows))
        return 0
    width = max(len(r["name"]) for r in rows) + 2
    print(f"{'runtime':<{width}}{'elementwise':>11}{'graphs':>18}{'launch':>9}"
          f"{'host per step (waits)':>27}{'beside':>14}{'all-reduce':>12}{'attention':>11}  name")  # fmt: skip
    for r in rows:
        eager = not r["cuda_graphs"] or not r["prefill_graphs"] or r["graph_max_tokens"]
        launch = f"{r['host_launch_s'] * 1e6:.1f} us" if eager else "-"
        graphs = "no" if not r["cuda_graphs"] else "yes" if r["prefill_graphs"] else "decode"
        if r["cuda_graphs"] and r["piecewise_break_s"]:
            graphs = "full+piece" if r["decode_full_graphs"] else "piece"
        if r["cuda_graphs"] and r["graph_max_tokens"]:
            graphs += f"<={r['graph_max_tokens']}"
            if r["graph_max_tokens_tp4"]:
                graphs += f"/{r['graph_max_tokens_tp4']}"
            if r["graph_counts"] == "sequences":
                graphs += "s"
        # a decode step's host time is linear in its sequences: its fixed part and per sequence
        (fixed, _), (one, beside) = (load_runtime(r["name"]).host_step_s(n) for n in (0, 1))
        step = f"{fixed * 1e3:.2f} ms"
        if one - fixed:
            step += f" + {(one - fixed) * 1e3:.3f} ms/seq"
        side = f"{beside * 1e3:.3f} ms/seq" if beside else "-"
        ar = f"{r['allreduce_latency_s'] * 1e6:.1f} us" if r["allreduce_latency_s"] else "NCCL"
        attn = r["attention_kernel"] or "native"
        plain = (
            r["rms_norm"],
            r["rope"],
            r["kv_cache"],
            r["gqa_repeat"],
            r["separate_projections"],
        ) == ("reference", "complex", "inplace", False, False)
        mode = r["elementwise"] + ("" if r["elementwise"] != "eager" or plain else "+")
        print(f"{r['name']:<{width}}{mode:>11}{graphs:>18}"
              f"{launch:>9}{step:>27}{side:>14}{ar:>12}{attn:>11}  {r['full_name']}")  # fmt: skip
    print(
        "eager+: eager with its own RMSNorm or RoPE kernels, or its own cache handling and "
        "linears (--json: rms_norm, rope, kv_cache, gqa_repeat, separate_projections); "
        "graphs decode: CUDA graphs for decode steps only, a step with prompts launched at "
        "'launch' a kernel; piece: graphs captured between the attention calls, which run "
        "eagerly (piecewise), full+piece: decode steps in one graph, steps with prompts piecewise; <=N: steps of up to N token rows replay graphs, larger ones "
        "launch eager (<=N/M: M from TP 4; <=Ns: N sequences, their draft tokens beside); "
        "host per step: host time a decode step waits for (the scheduler's part averaged over "
        "multi-step groups); beside: output processing that runs while the chip runs the next "
        "step, exposed only where longer; all-reduce: the runtime's own intra-node all-reduce "
        "kernel (time per call; taken where it beats NCCL) or NCCL; attention: the fused attention "
        "kernel where the workload names none"
    )
    marlin = [r["name"] for r in rows if r["weight_only_kernel"] != "native"]
    reserve = [r["name"] for r in rows if r["admission"] != "watermark"]
    triton = [r["name"] for r in rows if r["moe_kernel"] != "library"]
    fsdp = {v: [r["name"] for r in rows if r["training"] and r["fsdp"] == v]
            for v in FSDP_IMPLEMENTATIONS if v}  # fmt: skip
    block = []
    for r in rows:
        kernels = (r["block_fp8_gemm"], r["block_fp8_gemm_unaligned"], r["block_fp8_fallback"])
        if kernels == ("deepgemm", "deepgemm", ""):
            continue
        native = "/".join(r["block_fp8_native"])
        elsewhere = f", {r['block_fp8_fallback']} off {native}" if r["block_fp8_fallback"] else ""
        block.append(f"{r['name']} ({kernels[0]}, off-grid {kernels[1]}{elsewhere})")
    topk = [f"{r['name']} {r['grouped_topk_kernels']}" for r in rows
            if r["grouped_topk_kernels"] != 1]  # fmt: skip
    print(f"weight_only_kernel marlin (W4A16 GEMMs on mma.sync): {', '.join(marlin) or '-'}; "
          f"admission reserve (no-evict serving): {', '.join(reserve) or '-'}; "
          f"moe_kernel triton (expert GEMMs without clusters): {', '.join(triton) or '-'}; "
          f"ZeRO-3 as FSDP1 (flat-parameter gradient cat, cast, pre-divide): "
          f"{', '.join(fsdp['fsdp1']) or '-'}; as FSDP2 (parameter copy-out, gradient "
          f"copy-in): {', '.join(fsdp['fsdp2']) or '-'}; block-scaled fp8 linears not all "
          f"on DeepGEMM (cutlass: 1 exposed FMA an element a 128-deep block, triton: 2; "
          f"'triton off 9.0': Triton's on a chip of any other compute capability or none): "
          f"{', '.join(block) or '-'}; launches of a group-limited top-k router (DeepSeek's "
          f"grouped top-k; 1 elsewhere): {', '.join(topk) or '-'}")  # fmt: skip
    print(
        "aliases (--runtime takes them too): "
        + "; ".join(f"{r['name']}: {', '.join(r['aliases'])}" for r in rows if r["aliases"])
    )
    return 0


def _run_models(args: argparse.Namespace) -> int:
    """LLM presets (decode, prefill, train, serve) and DiT presets (dit), a row each."""
    from workloads import list_models, load_model
    from workloads.dit import list_dits, load_dit
    from workloads.loader import hf_ids

    repos: dict[str, list[str]] = {}
    for repo, slug in [*hf_ids().items(), *hf_ids("dit").items()]:
        repos.setdefault(slug, []).append(repo)

    def row(name: str, kind: str, m: Any, active: float, layers: int, moe: bool) -> dict:
        return {"name": name, "kind": kind, "full_name": m.full_name, "params": m.n_params(),
                "active_params": active, "layers": layers, "hidden": m.hidden, "moe": moe,
                "hf_ids": sorted(repos.get(name, []))}  # fmt: skip

    rows = []
    for name in list_models():
        m = load_model(name)
        rows.append(row(name, "llm", m, m.n_params(active=True), m.n_layers, m.moe is not None))
    for name in list_dits():
        d = load_dit(name)
        rows.append(row(name, "dit", d, d.n_params(), d.n_layers + d.n_single_layers, False))
    if getattr(args, "hf", False) and not args.json:
        for r in rows:
            print(f"{r['name']:<18}{', '.join(r['hf_ids']) or '-'}")
        return 0
    if args.json:
        print(dumps(rows))
        return 0
    print(f"{'model':<16}{'kind':>5}{'params':>10}{'active':>10}{'layers':>8}{'hidden':>8}  name")
    for r in rows:
        print(
            f"{r['name']:<16}{r['kind']:>5}{r['params'] / 1e9:>9.1f}B"
            f"{r['active_params'] / 1e9:>9.1f}B{r['layers']:>8}{r['hidden']:>8}  {r['full_name']}"
        )
    return 0


def _run_calibrate(args: argparse.Namespace) -> int:
    from hardware import ConfigError, load_chip
    from hardware.loader import chip_source_text
    from sim.studies.calibrate import calibrate, write_calibrated_toml

    if not (args.gemm or args.membw):
        raise ConfigError("calibrate: give --gemm FILE and/or --membw FILE")
    chip, fits = calibrate(
        load_chip(args.chip), args.gemm, args.membw, dtype=args.dtype, membw_op=args.membw_op
    )
    if args.output:
        write_calibrated_toml(chip_source_text(args.chip), fits, args.output)
    if args.json:
        print(dumps([{"path": f.path, "value": f.value, "note": f.note} for f in fits]))
    else:
        for f in fits:
            print(f"{f.path:<36} {f.value:.4g}   ({f.note})")
        if args.output:
            print(f"wrote {args.output}: use it as --chip {args.output}")
    return 0


class _Version(argparse.Action):
    """``--version``, looked up only when asked (importlib.metadata costs a CLI start ~20 ms)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        print(f"roofsim {version()}")  # to stdout, as argparse's own version action
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="roofsim",
        description="Roofline and event simulator of AI accelerators: time, MFU and the binding "
        "resource, derived from the chip and the workload.",
    )
    parser.add_argument("--version", action=_Version, nargs=0,
                        help="show the installed roofsim's version and exit")  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("decode", help="one autoregressive decode step of an LLM")
    add_llm_args(p)
    p.add_argument("--context", type=positive_int, default=2048, help="cached tokens per sequence")
    add_spec_args(p)
    p = sub.add_parser("prefill", help="prefill of a batch of prompts (time to first token)")
    add_llm_args(p)
    p.add_argument("--prompt", type=positive_int, default=2048, help="prompt tokens per sequence")
    p = sub.add_parser("dit", help="one diffusion-transformer generation (image or video)")
    _add_dit_args(p)
    p = sub.add_parser("train", help="one training step: step time, MFU/HFU, bubble, memory")
    add_train_args(p)
    p = sub.add_parser("serve", help="a request stream through continuous-batching replicas")
    _add_serve_args(p)
    add_spec_args(p)
    p = sub.add_parser("plan", help="fewest chips (replicas x TP) meeting a demand and an SLO")
    _add_serve_args(p, plan=True)
    add_spec_args(p)
    p.add_argument("--rate", type=positive_float, default=None, help="mean requests per second")
    p.add_argument("--tokens-per-day", type=positive_float, default=None,
                   help="output tokens per day")  # fmt: skip
    p.add_argument("--peak-to-mean", type=positive_float, default=1.0,
                   help="peak over mean load")  # fmt: skip
    p.add_argument("--percentile", type=float, default=99.0, help="SLO percentile (default 99)")
    p.add_argument("--tp", type=positive_int, action="append", default=None,
                   help="TP degree to try (repeatable; default powers of two up to a node)")  # fmt: skip
    p.add_argument("--usd-per-chip-hour", type=positive_float, default=None,
                   help="price per chip-hour")  # fmt: skip
    p.add_argument("--split", type=split_arg, action="append", default=None, metavar="P:D",
                   help="also try disaggregated units of P prefill and D decode replicas "
                        "(repeatable, e.g. --split 1:1 --split 1:2)")  # fmt: skip
    p = sub.add_parser("validate", help="error against published measurements, per row and kind")
    p.add_argument(
        "--data",
        help="published-measurement TOML (default: the packaged sim/studies/data/published.toml)",
    )
    p.add_argument("--kind", action="append", help="only this kind (repeatable)")
    p.add_argument("--id", action="append", metavar="GLOB",
                   help="only rows whose id matches this glob (repeatable), e.g. "
                        "--id 'moek-*-h100-*' (a ratio row runs its member rows too)")  # fmt: skip
    p.add_argument("--fast", action="store_true", help="three rows per kind")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="processes to run the rows in (default: every core)")  # fmt: skip
    p.add_argument("--report", help="write the JSON report here")
    p.add_argument("--baseline", metavar="FILE.json",
                   help="an earlier run's --json or --report output: also print each kind's "
                   "test-row |err| and bias before -> after and the rows that moved")  # fmt: skip
    p.add_argument("--summary", action="store_true", help="print only the per-kind summary")
    p.add_argument("--by", metavar="FIELD",
                   help="also break each kind's test rows down by family (the source: the id's "
                   "first word), runtime, chip or model (the row's fields as written; ratio rows "
                   "name no runtime or model): each group's median |err|, bias and worst row, "
                   "in --json as groups")  # fmt: skip
    p.add_argument("--no-fail", action="store_true", help="exit 0 even when a bar is missed")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_html_arg(p)
    p = sub.add_parser("claims", help="check widely repeated compute claims against derivation")
    p.add_argument("--claim", action="append", help="only this claim (repeatable)")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="processes to check the claims in (default: every core)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print JSON")
    add_html_arg(p)
    p = sub.add_parser("calibrate", help="fit chip parameters to microbenchmark CSVs")
    p.add_argument("--chip", required=True, help="chip preset slug or chip TOML to start from")
    p.add_argument("--gemm", help="GEMM timings CSV (dtype,m,n,k,time_s)")
    p.add_argument("--membw", help="bandwidth sweep CSV (op,bytes,time_s)")
    p.add_argument("--membw-op", default=None, help="access pattern to fit (default: first read*)")
    p.add_argument("--dtype", default="bf16", help="GEMM dtype rows to fit")
    p.add_argument("-o", "--output", help="write the chip TOML with a [calibration] table")
    p.add_argument("--json", action="store_true", help="print JSON")
    for name, helptext in (("chips", "list chip presets"), ("models", "list model presets"),
                           ("runtimes", "list runtime presets")):  # fmt: skip
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--json", action="store_true", help="print JSON")
        if name == "chips":
            p.add_argument("--check", metavar="CHIP",
                           help="a chip preset or TOML: each field given or defaulted, and why")  # fmt: skip
        if name == "models":
            p.add_argument("--hf", action="store_true",
                           help="the Hugging Face repo ids each preset stands for (--model takes "
                                "them too)")  # fmt: skip
    plot.add_parser(sub)
    sweep.add_parser(sub)
    compare.add_parser(sub)
    area.add_parser(sub)
    design.add_parser(sub)
    return parser


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "decode": lambda a: _run_llm(a, "decode"),
    "prefill": lambda a: _run_llm(a, "prefill"),
    "dit": _run_dit,
    "train": _run_train,
    "serve": _run_serve,
    "plot": plot.run,
    "sweep": sweep.run,
    "compare": compare.run,
    "area": area.run,
    "design": design.run,
    "plan": _run_plan,
    "validate": _run_validate,
    "claims": _run_claims,
    "calibrate": _run_calibrate,
    "chips": _run_chips,
    "models": _run_models,
    "runtimes": _run_runtimes,
}


def _note_defaults(args: argparse.Namespace) -> None:
    """One stderr line when a user's chip file leaves fields to their defaults (presets are
    complete where their sources are)."""
    from hardware.files import is_file

    chip = getattr(args, "chip", None)
    if not isinstance(chip, str) or not is_file(chip):
        return  # a preset, or the command's own loading names the missing file
    from hardware.loader import field_origins, load_chip_dict

    missing = [f for f, _, o in field_origins(load_chip_dict(chip)) if o != "given"]
    if missing:
        print(f"roofsim: note: {chip} leaves {len(missing)} fields to defaults ({', '.join(missing[:4])}"
              f"{', ...' if len(missing) > 4 else ''}); roofsim chips --check {chip} lists them",
              file=sys.stderr)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # the report's footer repeats the command
    from concurrent.futures.process import BrokenProcessPool

    from hardware.chip import ConfigError
    from hardware.units import UnitError
    from sim.cost.result import CapacityError
    from workloads.ops import WorkloadError

    try:
        _note_defaults(args)
        check_html(args)
        return _COMMANDS[args.command](args)
    except (ConfigError, WorkloadError, CapacityError, UnitError) as exc:
        print(f"roofsim: error: {exc}", file=sys.stderr)
        return 2
    except BrokenProcessPool:
        print(f"roofsim: error: {args.command}: a worker process died (out of memory?); rerun "
              "with fewer --workers", file=sys.stderr)  # fmt: skip
        return 2
    except BrokenPipeError:
        # the reader went away (roofsim ... | head): stop quietly, as Unix tools do; point
        # stdout at /dev/null so the interpreter's final flush raises nothing either
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
