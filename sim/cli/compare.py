"""``roofsim compare``: one LLM decode/prefill on several chips, a row per chip."""

from __future__ import annotations

import argparse

from sim.cli.args import add_html_arg, chip_count, dumps, positive_int, renamed, write_html


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``compare`` to roofsim's subcommands."""
    p = sub.add_parser("compare", help="one LLM decode/prefill on several chips, a row per chip")
    p.add_argument("--chip", required=True, metavar="CHIP,CHIP,...",
                   help="the chips to compare: comma-separated presets or chip TOMLs")  # fmt: skip
    p.add_argument("--model", required=True, help="preset slug, model TOML or HF config.json")
    p.add_argument("--workload", choices=("decode", "prefill"), default="decode")
    p.add_argument("--batch", type=positive_int, default=1, help="sequences in the batch")
    p.add_argument("--context", type=positive_int, default=2048, help="decode: cached tokens")
    p.add_argument("--prompt", type=positive_int, default=2048, help="prefill: prompt tokens")
    p.add_argument(
        "--dtype", default="bf16", help="weights/compute dtype (bf16, fp8, fp4, int8, int4)"
    )
    p.add_argument("--kv-dtype", default=None, help="KV-cache dtype (default: bf16)")
    p.add_argument(
        "--tp", type=positive_int, default=None,
        help="tensor-parallel degree for every chip (default: the smallest that fits)",
    )  # fmt: skip
    p.add_argument(
        "--chips", type=chip_count, default=None, metavar="N",
        help="chips per system for every chip (default: the fewest that hold the workload); "
        "a chip that cannot hold it on N is refused",
    )  # fmt: skip
    p.add_argument("--chips-per", type=renamed("--chips N"), help=argparse.SUPPRESS)
    p.add_argument(
        "--set", action="append", default=[], metavar="PATH=VALUE",
        help="override a field on every chip, repeatable (hbm.bandwidth=6TB/s)",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_html_arg(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Print the comparison table (or JSON) for ``args``."""
    chips = [c.strip() for c in args.chip.split(",") if c.strip()]
    from sim.studies.compare import compare, format_table

    rows = compare(
        chips,
        model=args.model,
        kind=args.workload,
        batch=args.batch,
        context=args.context,
        prompt=args.prompt,
        dtype=args.dtype,
        kv_dtype=args.kv_dtype,
        tp=args.tp,
        chips_per=args.chips,
        sets=args.set,
    )
    workload = {
        "kind": args.workload,
        "model": args.model,
        "batch": args.batch,
        **({"context": args.context} if args.workload == "decode" else {"prompt": args.prompt}),
        "dtype": args.dtype,
        "kv_dtype": args.kv_dtype or "bf16",
    }
    if args.json:
        print(dumps({"workload": workload, "rows": [r.to_dict() for r in rows]}))
    else:
        size = f"context {args.context}" if args.workload == "decode" else f"prompt {args.prompt}"
        title = f"{args.workload} {args.model}  batch {args.batch}  {size}  {args.dtype}"
        print(format_table(rows, title))

    def page() -> str:
        from sim.plots.report import compare_report

        return compare_report(rows, workload=workload, sets=args.set,
                              command=getattr(args, "argv", None))  # fmt: skip

    write_html(args, page)
    return 0
