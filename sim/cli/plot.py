"""The ``roofsim plot`` subcommands (roofline, batch, heatmap, pareto, timeline); argparse only.

matplotlib and the simulator load when a plot runs, so building the parser stays fast.
"""

from __future__ import annotations

import argparse
import math

from sim.cli.args import dumps, renamed

_KINDS = ("roofline", "batch", "heatmap", "pareto", "timeline")
_DEFAULT_BATCHES = "1,2,4,8,16,32,64,128,256"


def _names(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"must list at least one name, got {text!r}")
    return names


def _ints(text: str) -> list[int]:
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be integers separated by commas, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"must be integers >= 1 separated by commas, got {text!r}")
    return values


def _add_output(p: argparse.ArgumentParser, *, json_flag: bool = True) -> None:
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="image to write: FILE.png or FILE.svg")  # fmt: skip
    if json_flag:
        p.add_argument("--json", action="store_true", help="print one JSON object")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``plot`` and its kinds to the subparsers ``sub`` of the ``roofsim`` parser."""
    # lazily: sim.cli imports this module to build its parser
    from sim.cli.args import add_llm_args, add_train_args
    from sim.cli.args import positive_int as _positive_int

    p = sub.add_parser("plot", help="charts: roofline, metric vs batch, heatmap, Pareto, timeline")
    kinds = p.add_subparsers(dest="plot_kind", required=True, metavar="{" + ",".join(_KINDS) + "}")

    k = kinds.add_parser("roofline", help="roofline chart of every op of a decode or prefill run")
    add_llm_args(k)
    k.add_argument("--kind", choices=("decode", "prefill"), default="decode",
                   help="which LLM workload (default decode)")  # fmt: skip
    k.add_argument("--context", type=_positive_int, default=2048,
                   help="decode: cached tokens per sequence")  # fmt: skip
    k.add_argument("--prompt", type=_positive_int, default=2048,
                   help="prefill: prompt tokens per sequence")  # fmt: skip
    k.add_argument("--title", default=None, help="chart title (default: the run)")
    _add_output(k, json_flag=False)  # add_llm_args has --json

    k = kinds.add_parser("batch", help="a metric vs batch, a line per chip: simulated, or "
                         "read from a sweep CSV (--csv)")  # fmt: skip
    k.add_argument("--model", default=None, help="preset slug, model TOML or HF config.json")
    k.add_argument("--chip", type=_names, default=None, metavar="CHIP,CHIP,...",
                   help="chip presets to compare, e.g. h100-sxm,a100-sxm-80gb")  # fmt: skip
    k.add_argument("--chips-list", type=renamed("--chip A,B,C"), help=argparse.SUPPRESS)
    k.add_argument("--chips", type=renamed("--chip A,B,C"), help=argparse.SUPPRESS)
    k.add_argument("--csv", default=None,
                   help="draw from a sweep result CSV instead of simulating (--x, --y, --color)")  # fmt: skip
    k.add_argument("--x", default="batch", help="--csv: column for the x axis (default batch)")
    k.add_argument("--y", default="throughput",
                   help="--csv: column for the y axis (default throughput)")  # fmt: skip
    k.add_argument("--color", default=None,
                   help="--csv: a line per value of this column (default chip, if the CSV has it)")  # fmt: skip
    k.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE",
                   help="--csv: keep rows where COLUMN is VALUE, repeatable (context=2048)")  # fmt: skip
    k.add_argument("--reduce", choices=("max", "min", "mean"), default=None,
                   help="--csv: per point where other axes vary (default: best; min for times)")  # fmt: skip
    k.add_argument("--batches", type=_ints, default=_ints(_DEFAULT_BATCHES), metavar="B,B,...",
                   help=f"batch sizes (default {_DEFAULT_BATCHES})")  # fmt: skip
    k.add_argument("--metric", choices=("mfu", "time", "tokens_per_s"), default="mfu",
                   help="what to plot (default mfu)")  # fmt: skip
    k.add_argument("--context", type=_positive_int, default=2048, help="cached tokens per sequence")
    k.add_argument("--tp", type=_positive_int, default=1, help="chips per model copy (default 1)")
    k.add_argument(
        "--dtype", default="bf16", help="weights/compute dtype (bf16, fp8, fp4, int8, int4)"
    )
    k.add_argument("--kv-dtype", default=None, help="KV-cache dtype (default: bf16)")
    k.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                   help="override a field of every chip, as in roofsim decode")  # fmt: skip
    k.add_argument("--title", default=None, help="chart title")
    _add_output(k)

    k = kinds.add_parser("heatmap", help="heatmap of a metric over two axes of a sweep CSV")
    k.add_argument("--csv", required=True, help="sweep result CSV (one header row)")
    k.add_argument("--x", required=True, help="column for the x axis")
    k.add_argument("--y", required=True, help="column for the y axis")
    k.add_argument("--metric", required=True, help="column to colour by")
    k.add_argument("--reduce", choices=("max", "min", "mean"), default=None,
                   help="when other axes vary: per cell (default: best; min for times)")  # fmt: skip
    k.add_argument("--log-color", action="store_true", help="logarithmic colour scale")
    k.add_argument("--title", default=None, help="chart title")
    _add_output(k)

    k = kinds.add_parser("pareto", help="Pareto front of two metrics of a sweep CSV")
    k.add_argument("--csv", required=True, help="sweep result CSV (one header row)")
    k.add_argument("--x", required=True, help="first metric column (higher is better)")
    k.add_argument("--y", required=True, help="second metric column (higher is better)")
    k.add_argument("--minimize-x", action="store_true", help="lower x is better")
    k.add_argument("--minimize-y", action="store_true", help="lower y is better")
    k.add_argument("--label", default=None, help="column written beside frontier points")
    k.add_argument("--log", action="store_true", help="logarithmic axes")
    k.add_argument("--title", default=None, help="chart title")
    _add_output(k)

    k = kinds.add_parser("timeline", help="Gantt chart of a training step's event timeline")
    add_train_args(k, required=False)  # --from-trace replaces the workload flags
    k.add_argument("--from-trace", default=None, metavar="FILE",
                   help="draw a trace JSON written by roofsim train --trace (no training flags)")  # fmt: skip
    k.add_argument("--no-parts", action="store_true",
                   help="do not draw communication inside chunks")  # fmt: skip
    k.add_argument("--title", default=None, help="chart title")
    _add_output(k, json_flag=False)  # add_train_args has --json
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``roofsim plot KIND``; bad input raises ConfigError (one line, naming the flag)."""
    from sim.plots.charts import check_output

    check_output(args.output)  # before any simulation: a wrong suffix fails fast
    info = {"roofline": _roofline, "batch": _batch, "heatmap": _heatmap, "pareto": _pareto,
            "timeline": _timeline}[args.plot_kind](args)  # fmt: skip
    if args.json:
        print(dumps({"plot": args.plot_kind, "output": args.output, **info}))
    else:
        print(f"wrote {args.output}")
    return 0


def _roofline(args: argparse.Namespace) -> dict:
    from sim.cli.args import llm_workload
    from sim.cost.simulate import simulate
    from sim.plots.charts import roofline_chart

    workload, system = llm_workload(args, args.kind)
    result = simulate(workload, system, check_memory=not args.no_memory_check)
    roofline_chart(result, system, args.output, title=args.title)
    return {"time_s": result.time_s, "mfu": result.mfu, "bound": result.bound}


def _batch(args: argparse.Namespace) -> dict:
    from hardware import ConfigError
    from sim.plots.charts import DECODE_METRICS, decode_batch_series, metric_vs_axis

    if args.csv:
        return _batch_from_csv(args)
    if not args.model or not args.chip:
        raise ConfigError(
            "plot batch: give --model and --chip A,B,C to simulate, or --csv FILE to draw a sweep"
        )

    series = decode_batch_series(args.model, args.chip, args.batches, metric=args.metric,
                                 context=args.context, dtype=args.dtype, kv_dtype=args.kv_dtype,
                                 tp=args.tp, overrides=args.set)  # fmt: skip
    title = args.title or f"{args.model} decode, context {args.context}"
    metric_vs_axis(series, args.output, x_label="batch (sequences)",
                   y_label=DECODE_METRICS[args.metric][0], logx=True,
                   logy=args.metric != "mfu", title=title,
                   note="a line ends where the batch's KV cache no longer fits in memory")  # fmt: skip
    return {"metric": args.metric,
            "series": {k: {"x": xs, "y": [None if math.isnan(y) else y for y in ys]}
                       for k, (xs, ys) in series.items()}}  # fmt: skip


def _batch_from_csv(args: argparse.Namespace) -> dict:
    from sim.plots.charts import metric_vs_axis, read_rows, sweep_series

    color = args.color
    if color is None and "chip" in read_rows(args.csv)[0]:
        color = "chip"
    series = sweep_series(args.csv, args.x, args.y, color, reduce=args.reduce, where=args.where)
    shown = ", ".join(args.where)
    metric_vs_axis(series, args.output, x_label=args.x, y_label=args.y, logx=True,
                   logy=args.y != "mfu",
                   title=args.title or f"{args.y} vs {args.x}" + (f" ({shown})" if shown else ""))  # fmt: skip
    return {"series": {k: {"x": xs, "y": ys} for k, (xs, ys) in series.items()}}


def _heatmap(args: argparse.Namespace) -> dict:
    from sim.plots.charts import sweep_heatmap

    sweep_heatmap(args.csv, args.x, args.y, args.metric, args.output, reduce=args.reduce,
                  log_color=args.log_color, title=args.title)  # fmt: skip
    return {}


def _pareto(args: argparse.Namespace) -> dict:
    from sim.plots.charts import pareto_frontier

    front, _ = pareto_frontier(args.csv, args.x, args.y, args.output,
                               maximize=(not args.minimize_x, not args.minimize_y),
                               label=args.label, title=args.title, log=args.log)  # fmt: skip
    return {"frontier": front}


def _timeline(args: argparse.Namespace) -> dict:
    from hardware import ConfigError
    from sim.plots.charts import timeline_gantt

    given = [f"--{d}" for d in ("model", "chip", "chips") if getattr(args, d) is not None]
    if args.from_trace:
        if given:
            raise ConfigError(
                f"--from-trace draws a saved trace; drop {', '.join(given)} (or drop --from-trace "
                "to simulate)"
            )
        timeline_gantt(args.from_trace, args.output, title=args.title, parts=not args.no_parts)
        return {"trace": args.from_trace}
    if len(given) < 3:
        raise ConfigError(
            "plot timeline: give --model, --chip and --chips to simulate a step, or "
            "--from-trace FILE"
        )
    result = _simulate_training(args)
    if args.trace:
        try:
            result.timeline.write_trace(args.trace, {"workload": result.workload})
        except OSError as exc:
            raise ConfigError(f"--trace {args.trace}: cannot write ({exc.strerror})") from None
    timeline_gantt(result.timeline, args.output, parts=not args.no_parts,
                   title=args.title or _timeline_title(result))  # fmt: skip
    return {"step_time_s": result.step_time_s, "mfu": result.mfu}


def _timeline_title(result) -> str:
    from hardware.units import format_si

    w = result.workload
    par = " ".join(f"{k}{w[k]}" for k in ("tp", "pp", "vp", "dp") if w.get(k, 1) != 1)
    return (f"{w.get('model', '')} training step on {result.system['name']}"
            f"{' (' + par + ')' if par else ''}: {format_si(result.step_time_s, 's')}, "
            f"MFU {result.mfu:.1%}")  # fmt: skip


def _simulate_training(args: argparse.Namespace):
    """The training run the flags of ``roofsim train`` describe, traced."""
    from sim.cli.args import training_workload
    from sim.engine.train import simulate_training

    workload, system = training_workload(args)
    return simulate_training(workload, system, overlap=not args.no_overlap,
                             check_memory=not args.no_memory_check, trace=True)  # fmt: skip
