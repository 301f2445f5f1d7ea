"""Flags and argparse types the command-line modules share, and the workloads they build
(argparse only at import; the rest loads when a command runs)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def positive_float(text: str) -> float:
    """A finite number > 0, or argparse's one-line error."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def fraction(text: str) -> float:
    """A number in (0, 1], or argparse's one-line error."""
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1, or argparse's one-line error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def chip_count(text: str) -> int:
    """``compare --chips``: a count of chips (>= 1), as ``--chips`` is in every command. Chip
    names given to it (the old ``compare --chips A,B``) are refused in one line that names
    ``--chip A,B``; anything else gets the count's own error."""
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        from hardware.loader import chip_name

        names = [t.strip() for t in text.split(",")]
        if "," in text or chip_name(names[0]) is not None or names[0].endswith(".toml"):
            raise argparse.ArgumentTypeError(
                f"is a count of chips, got {text!r}; list chips to compare with --chip A,B,C"
            ) from None
        raise


def renamed(new: str) -> Callable[[str], Any]:
    """The type of a retired flag: refuse it in one line naming the flag that replaced it."""

    def refuse(text: str) -> Any:
        raise argparse.ArgumentTypeError(f"was renamed: use {new}")

    return refuse


def split_arg(text: str) -> tuple[int, int]:
    """P:D, prefill and decode replicas of a disaggregated unit (each >= 1), or argparse's
    one-line error."""
    parts = text.split(":")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"must be P:D (prefill:decode replicas), got {text!r}")
    p, d = (positive_int(x) for x in parts)
    return p, d


def dumps(obj: object, **kwargs) -> str:
    """Strict JSON (``hardware.files.dumps``: a NaN or infinity is written as null)."""
    from hardware.files import dumps as strict

    return strict(obj, **kwargs)


SET_HELP = (
    "override a chip field, PATH=VALUE, repeatable: hbm.bandwidth=6TB/s, l2.capacity=256MB, "
    "compute.peak.bf16=500TFLOP/s, compute.n_cores=64, overhead.kernel_s=2us, "
    "system.intra_node_bandwidth=900GB/s"
)


HTML_HELP = (
    "also write a self-contained HTML report of this run here (one file: charts, tables, the "
    "command; opens offline)"
)


def add_html_arg(p: argparse.ArgumentParser) -> None:
    """``--html FILE``: the report of what the command computes (``sim/plots/report.py``)."""
    p.add_argument("--html", default=None, metavar="FILE.html", help=HTML_HELP)


def check_html(args: argparse.Namespace) -> None:
    """Fail before the run, not after it, when ``--html`` cannot be written (one line)."""
    if getattr(args, "html", None):
        from sim.plots.report import check_html_path

        check_html_path(args.html)


def write_html(args: argparse.Namespace, make) -> None:
    """Write ``make()`` (the page) to ``--html`` if given; say so unless the output is JSON."""
    if not getattr(args, "html", None):
        return
    from sim.plots.report import write_html as write

    write(args.html, make())
    if not getattr(args, "json", False):
        print(f"wrote {args.html}")


def add_run_output_args(p: argparse.ArgumentParser) -> None:
    """Flags every simulated run shares: chip overrides, output form, the memory check."""
    p.add_argument("--set", action="append", default=[], metavar="PATH=VALUE", help=SET_HELP)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_html_arg(p)
    p.add_argument("--top", type=positive_int, default=10, help="ops to list (human output)")
    p.add_argument(
        "--no-memory-check", action="store_true", help="simulate even if it does not fit"
    )


_ATTN_DEFAULT = " (default: the runtime's kernel, fa2 under PyTorch and vLLM runtimes, else native)"
ATTN_HELP = (
    "attention kernel: native (the chip's fastest fused kernel, FlashAttention-3/cuDNN on "
    "Hopper) or fa2 (FlashAttention-2: warp-level MMA, slower on Hopper)" + _ATTN_DEFAULT
)
DECODE_ATTN_HELP = ATTN_HELP.removesuffix(_ATTN_DEFAULT) + (
    "; or mmha (decode: a thread block per query head on the CUDA cores, as TensorRT-LLM "
    "before XQA and vLLM's PagedAttention: a GQA group's K/V read once per query head); or "
    "unfused (eager matmul, softmax, matmul: the score matrix through memory, as Hugging "
    "Face's 'eager' attention); or triton (vLLM's Triton unified attention: 16-row programs "
    "stream their K/V through L2, what vLLM runs for a model with sinks off Hopper/Blackwell, "
    "native included; fa2 overrides it)" + _ATTN_DEFAULT
)


def add_llm_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="preset slug, model TOML or HF config.json")
    p.add_argument("--chip", required=True, help="chip preset slug or a chip TOML file")
    p.add_argument("--chips", type=positive_int, default=None, help="chips (default: --tp)")
    p.add_argument("--tp", type=positive_int, default=None, help="tensor-parallel degree")
    p.add_argument("--pp", type=int_arg, default=1,
                   help="pipeline stages (layers split over stages, each --tp chips wide)")  # fmt: skip
    p.add_argument("--ep", type=int_arg, default=1,
                   help="expert parallelism: MoE experts sharded over this many replicas")  # fmt: skip
    p.add_argument("--batch", type=positive_int, default=1, help="sequences in the batch")
    p.add_argument(
        "--dtype", default="bf16", help="weights/compute dtype (bf16, fp8, fp4, int8, int4)"
    )
    p.add_argument("--kv-dtype", default=None, help="KV-cache dtype (default: bf16)")
    add_int4_group_arg(p)
    p.add_argument("--attention-kernel", default=None, help=DECODE_ATTN_HELP)
    add_sampling_arg(p)
    add_runtime_arg(p)
    add_run_output_args(p)


def add_int4_group_arg(p: argparse.ArgumentParser) -> None:
    """decode, prefill and serve: a weight-only int4 checkpoint's quantisation group size."""
    p.add_argument("--int4-group", type=int_arg, default=None,
                   help="with --dtype int4: weights per quantisation group (the quantiser's "
                   "group size; default 128); each group's scale and zero point, in the "
                   "runtime's layout, are read beside the weights")  # fmt: skip


def add_sampling_arg(p: argparse.ArgumentParser) -> None:
    """decode, prefill and serve: the sampler's path (``workloads.runtime.SAMPLINGS``)."""
    p.add_argument("--sampling", default="greedy",
                   help="how tokens are picked: greedy (argmax; the serving benchmarks send "
                   "temperature 0; default), random (temperature > 0, no top-k/p: vLLM's "
                   "benchmark_throughput), top-p (after top-k and/or top-p filtering) or none "
                   "(stop at the logits); the runtime's sampler costs each")  # fmt: skip


def add_spec_args(p: argparse.ArgumentParser) -> None:
    """decode and serve: speculative decoding (``workloads.llm.Speculation``)."""
    p.add_argument("--spec-tokens", type=positive_int, default=None,
                   help="speculative decoding: tokens the drafter proposes per step (k); the "
                        "target checks k + 1 per sequence in one pass")  # fmt: skip
    p.add_argument("--acceptance", type=float, default=None,
                   help="with --spec-tokens: the probability that the target accepts a drafted "
                        "token (alpha, the source's measured acceptance rate)")  # fmt: skip
    p.add_argument("--accepted-length", type=float, default=None,
                   help="with --spec-tokens, in place of --acceptance: the mean tokens a step "
                        "yields per sequence, as engines print it (acceptance length, tau)")  # fmt: skip
    p.add_argument("--draft", default=None,
                   help="with --spec-tokens: mtp (one block of the target with its LM head: "
                        "DeepSeek MTP, EAGLE; default), ngram (prompt lookup, no chip work) or a "
                        "draft model (preset, TOML or config.json)")  # fmt: skip


def speculation(args: argparse.Namespace, target: Any) -> Any:
    """The ``Speculation`` the decode flags ask for (None without --spec-tokens); a flag that
    only means something with --spec-tokens is refused without it."""
    from workloads.llm import Speculation, draft_from
    from workloads.ops import WorkloadError

    k = getattr(args, "spec_tokens", None)
    if k is None:
        for flag in ("acceptance", "accepted_length", "draft"):
            if getattr(args, flag, None) is not None:
                raise WorkloadError(f"--{flag.replace('_', '-')} needs --spec-tokens K "
                                    "(the drafted tokens per step)")  # fmt: skip
        return None
    if args.acceptance is None and args.accepted_length is None:
        raise WorkloadError("--spec-tokens needs --acceptance A, the probability the "
                            "target accepts a drafted token (e.g. --acceptance 0.7), or "
                            "--accepted-length L, the mean tokens per step")  # fmt: skip
    return Speculation(tokens=k, acceptance=args.acceptance,
                       accepted_length=args.accepted_length,
                       draft=draft_from(args.draft or "mtp"))  # fmt: skip


RUNTIME_HELP = (
    "the software it runs under: a runtime preset (roofsim runtimes lists them; default "
    "fused-graphs: fused kernels under CUDA graphs, no host time per step) or a runtime "
    "TOML file (base = PRESET and the fields it changes: a what-if on the software)"
)


def add_runtime_arg(p: argparse.ArgumentParser, default: str = "fused-graphs",
                    help: str = RUNTIME_HELP) -> None:  # fmt: skip
    p.add_argument("--runtime", default=default, help=help)


DIT_RUNTIME_HELP = (
    "the software it runs under: a runtime preset (roofsim runtimes lists them; default "
    "diffusers: eager PyTorch, as the diffusers pipelines and the models' reference code run; "
    "torch-compile or fused-graphs for a compiled stack) or a runtime TOML file"
)


def int_arg(text: str) -> int:
    """An integer checked later by the workload, so zero or negative gets its one-line error."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


def llm_workload(args: argparse.Namespace, kind: str):
    """(Decode or Prefill, System) from the flags of ``roofsim decode|prefill``."""
    from hardware import ConfigError, load_system
    from workloads import Decode, Prefill, load_model
    from workloads.runtime import load_runtime

    pp = args.pp
    if not isinstance(pp, int) or pp < 1:
        raise ConfigError(f"--pp must be an integer >= 1, got {pp!r}")
    tp = args.tp or (args.chips // pp if args.chips and args.chips % pp == 0 else 1)
    chips = args.chips or tp * pp
    if chips % (tp * pp):
        given = " x ".join(f for f, v in (("--tp", args.tp), ("--pp", args.pp if pp > 1 else None))
                           if v) or "--tp"  # fmt: skip
        raise ConfigError(
            f"--chips {chips} must be a multiple of {given} ({tp * pp} chips per replica)"
        )
    model = load_model(args.model)
    if not args.tp and tp > 1 and model.n_heads % tp:
        # tp came from --chips: blame the flag the user gave, not --tp
        per = f"the {tp} chips" if pp == 1 else f"the {tp} chips of each of the {pp} stages"
        raise ConfigError(
            f"--chips {chips}: with no --tp, {per} run tensor-parallel, and {tp} does not divide "
            f"the {model.n_heads} attention heads of {model.name}; give --tp (dividing "
            f"{model.n_heads}) with --chips a multiple of --tp x --pp"
        )
    system = load_system(args.chip, chips, args.set)
    common = dict(
        model=model,
        batch=args.batch,
        dtype=args.dtype,
        kv_dtype=args.kv_dtype,
        int4_group=args.int4_group,
        tp=tp,
        pp=pp,
        ep=args.ep,
        dp=chips // (tp * pp),
        attention_kernel=args.attention_kernel,
        runtime=load_runtime(args.runtime),
        sampling=args.sampling,
    )
    if kind == "decode":
        return Decode(context=args.context, spec=speculation(args, model), **common), system
    return Prefill(prompt=args.prompt, **common), system


def add_train_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--model", required=required, help="preset slug, model TOML or HF config.json")
    p.add_argument("--chip", required=required, help="chip preset slug or a chip TOML file")
    p.add_argument("--chips", type=int_arg, required=required, help="chips in all")
    for flag, text in (("--tp", "tensor-parallel degree"), ("--pp", "pipeline stages"),
                       ("--vp", "virtual stages per device (interleaved 1F1B)"),
                       ("--ep", "expert-parallel degree (carved out of --dp; with --etp 1 of tp x cp x dp)"),
                       ("--cp", "context-parallel degree (ring attention)")):  # fmt: skip
        p.add_argument(flag, type=int_arg, default=1, help=f"{text} (default 1)")
    p.add_argument("--dp", type=int_arg, default=None,
                   help="data-parallel degree (default: chips / (tp x cp x pp))")  # fmt: skip
    p.add_argument("--sp", action="store_true", help="sequence parallelism with TP")
    p.add_argument("--seq", type=int_arg, default=2048, help="sequence length (default 2048)")
    p.add_argument("--micro-batch", type=int_arg, default=1, help="sequences per micro-batch")
    p.add_argument("--sample-len", type=int_arg, default=0,
                   help="packed sequences: samples of this many tokens, attention inside each "
                   "(default 0: one sample per sequence)")  # fmt: skip
    p.add_argument("--global-batch", type=int_arg, default=None,
                   help="sequences per step (default: micro-batch x dp)")  # fmt: skip
    p.add_argument("--dtype", default="bf16", help="bf16, fp16, or fp8 (fp8 GEMMs)")
    p.add_argument("--recompute", default="none",
                   help="none, selective (the attention core), selective-op (torchtitan's per-op "
                   "policy: every second matmul and the non-matmul ops) or full")  # fmt: skip
    p.add_argument("--recompute-blocks", type=float, default=1.0,
                   help="with --recompute full: the share of blocks checkpointed, evenly spaced "
                   "(IBM fms-fsdp's selective_checkpointing p; torchtitan's every-N-th layer is "
                   "1/N; default 1: every block)")  # fmt: skip
    p.add_argument("--attention-kernel", default=None,
                   help=ATTN_HELP.removesuffix(_ATTN_DEFAULT) + "; or unfused (pre-FlashAttention "
                   "Megatron: the score matrix through memory)" + _ATTN_DEFAULT)  # fmt: skip
    p.add_argument("--elementwise", default=None,
                   help="how norms, RoPE, activations and residual adds run: fused (Megatron / "
                   "Transformer Engine kernels, torch.compile; default) or eager (PyTorch eager "
                   "mode: one kernel per primitive, fp32 upcasts); --runtime sets it")  # fmt: skip
    p.add_argument("--runtime", default=None,
                   help="the training software as a runtime preset (roofsim runtimes): "
                   "megatron-core, torch-compile, pytorch-eager, ...; or a runtime TOML file "
                   "(base = PRESET and the fields it changes); sets --elementwise and the default "
                   "--attention-kernel")  # fmt: skip
    p.add_argument("--zero", type=int_arg, default=0, help="ZeRO stage 0-3 (3 = FSDP)")
    p.add_argument("--grad-reduce", default="",
                   help="the dtype gradients accumulate and reduce in: fp32 (Megatron's "
                   "grad_reduce_in_fp32; the default, fp16 under --dtype fp16) or bf16 (NeMo 2.0 "
                   "performance recipes, FSDP reduce_dtype=bfloat16): halves the gradient buffers "
                   "and their reduction")  # fmt: skip
    p.add_argument("--dp-shard", type=int_arg, default=0,
                   help="hybrid sharding (FSDP HYBRID_SHARD / HSDP, dense models): ZeRO shards "
                   "over groups of this many adjacent dp x cp ranks (a multiple of --cp) and the "
                   "groups replicate, all-reducing the shards' gradients (default 0: shard over "
                   "all of them)")  # fmt: skip
    p.add_argument("--capacity-factor", type=float, default=0.0,
                   help="MoE expert capacity factor (default: dropless)")  # fmt: skip
    p.add_argument("--ep-overlap", action="store_true",
                   help="expert-parallel all-to-all beside another micro-batch's compute "
                   "(Megatron-Core --overlap-moe-expert-parallel-comm; needs --ep > 1, and "
                   "--vp > 1 with --pp > 1)")  # fmt: skip
    p.add_argument("--tp-comm-overlap", action="store_true",
                   help="Transformer Engine's userbuffers overlap of sequence parallelism's "
                   "all-gathers and reduce-scatters with the GEMMs (NeMo ub_tp_comm_overlap, "
                   "Megatron-LM --tp-comm-overlap; needs --sp and --tp > 1)")  # fmt: skip
    p.add_argument("--etp", type=int_arg, default=0,
                   help="expert tensor parallelism: 1 = MoE parallel folding (each expert whole, "
                   "the EP group over adjacent TP, CP and DP ranks; Megatron-Core "
                   "--expert-tensor-parallel-size 1); default: --tp")  # fmt: skip
    p.add_argument("--ep-dispatcher", default="alltoall",
                   help="how tokens reach experts on other nodes: alltoall (every token copy "
                   "in one all-to-all; default) or deepep (DeepEP: once per destination node "
                   "over the network, then NVLink)")  # fmt: skip
    p.add_argument("--no-overlap", action="store_true",
                   help="no communication beside compute (DP sync, p2p, ZeRO-3 gathers, "
                   "--ep-overlap)")  # fmt: skip
    p.add_argument("--tokens", type=float, default=0.0, help="training-run tokens (run totals)")
    p.add_argument("--trace", default=None, metavar="FILE", help="write a Chrome/Perfetto trace")
    add_run_output_args(p)


def training_workload(args: argparse.Namespace):
    """(Training, System) from the flags of ``roofsim train``."""
    from hardware import ConfigError, load_system
    from workloads import load_model
    from workloads.training import Training

    if args.chips < 1:
        raise ConfigError(f"--chips must be an integer >= 1, got {args.chips}")
    dp = args.dp
    if dp is None:
        inner = max(1, args.tp) * max(1, args.cp) * max(1, args.pp)
        if args.chips % inner:
            raise ConfigError(f"--chips {args.chips} must be a multiple of tp x cp x pp = {inner}")
        dp = args.chips // inner
    workload = Training(
        model=load_model(args.model), seq=args.seq, micro_batch=args.micro_batch,
        global_batch=args.global_batch, dtype=args.dtype, recompute=args.recompute,
        recompute_blocks=args.recompute_blocks, zero=args.zero, dp_shard=args.dp_shard, grad_reduce=args.grad_reduce, tp=args.tp, sp=args.sp, pp=args.pp, vp=args.vp, dp=dp, ep=args.ep,
        cp=args.cp, capacity_factor=args.capacity_factor, tokens=args.tokens,
        attention_kernel=args.attention_kernel, runtime=args.runtime or "", elementwise=args.elementwise,
        sample_len=args.sample_len, ep_overlap=args.ep_overlap, tp_overlap=args.tp_comm_overlap,
        ep_dispatcher=args.ep_dispatcher, etp=args.etp,
    )  # fmt: skip
    workload.validate()
    return workload, load_system(args.chip, args.chips, args.set)
