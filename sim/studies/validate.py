"""Run roofsim on every published measurement and report the error per row and per kind.

The rows live in ``sim/studies/data/published.toml``, each with its citation and the full
configuration (its header states the conventions). A row becomes a prediction here and nowhere
else: no per-row or per-kind factor exists, so the error is the model's.

Request metrics follow the data file's conventions:

    request time     = prefill(batch, prompt) + output x decode step(batch, prompt + output/2)
    tokens_per_s     = output / request time                (one sequence's rate)
    throughput_*     = batch x output / request time        (/ chips for *_per_gpu)
    itl_s            = decode step at the mean context;  ttft_s = prefill time

The decode step at the mean context is exact for the GEMMs (independent of context) and for
attention (linear in context). Microbenchmark rows cost one op on one chip (GEMM, fused
attention, a STREAM-style copy/triad) or one all-reduce (NCCL bus bandwidth).
"""

from __future__ import annotations

import fnmatch
import math
import statistics
import tomllib
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hardware import ConfigError, files, load_system
from hardware.chip import dtype_bytes
from sim.cost.collectives import collective_time
from sim.cost.result import CapacityError
from sim.cost.roofline import cost_ops
from sim.cost.simulate import simulate
from sim.engine.train import simulate_training
from workloads.build import (
    EAGER_PRIMITIVES,
    EAGER_SCALAR,
    STRIDED,
    Builder,
    eager_without_residual,
    scalar,
    scalar_per,
)
from workloads.loader import load_model
from workloads.ops import (
    BLOCK_FP8_KERNELS,
    Attention,
    Role,
    WorkloadError,
    block_fp8_gemm,
    triton_gemm,
)
from workloads.training import RECOMPUTE, Training, attention_backward

DEFAULT_DATA = Path(__file__).resolve().parent / "data" / "published.toml"  # package data

# the bar each kind's median |error| must meet (issue 5: training MFU and decode latency 10 %,
# prefill and DiT 15 %, "at first"; issue 17: serve 25 %); kinds without a bar are reported,
# not judged
BARS: dict[str, float] = {"train": 0.10, "decode": 0.10, "prefill": 0.15, "dit": 0.15,
                          "energy": 0.20, "area": 0.15, "ratio": 0.08,
                          "serve": 0.25}  # fmt: skip
#: issue 17's done-when also bounds every judged kind's bias: the median signed error of its
#: test rows within +-5 % (a model right on average only by luck of the spread does not pass)
BIAS_BAR = 0.05
KINDS = ("decode", "prefill", "serve", "dit", "train", "energy", "ratio", "gemm", "attention",
         "moe-kernel", "eager-kernel", "membw", "allreduce", "alltoall", "area", "cost")  # fmt: skip
#: LLM kinds whose rows name a model preset (a row of these on an MoE model is ``RowResult.moe``)
_LLM_KINDS = ("decode", "prefill", "serve", "train", "energy")
# slices across kinds, reported below the kinds with their own bars (issue 17's done-when:
# dense training 10 %, MoE 15 %); their rows are counted in their kinds as well
SLICES: dict[str, tuple[Callable[[RowResult], bool], float]] = {
    "train-dense": (lambda r: r.kind == "train" and not r.moe, 0.10),
    "moe": (lambda r: r.moe, 0.15),
}


class Skip(Exception):
    """A row roofsim cannot simulate yet; the message says why."""


@dataclass(slots=True)
class RowResult:
    id: str
    kind: str
    metric: str
    measured: float
    predicted: float | None = None
    skipped: str = ""
    source: str = ""
    detail: dict = field(default_factory=dict)
    # "fit": something in the model was fitted, bisected or chosen against this row; "test": not
    use: str = "test"
    assumed: tuple[str, ...] = ()  # the row's fields that are a reading, not the source's
    moe: bool = False  # an LLM row on a mixture-of-experts model
    # the row's chip, model and runtime fields as written ("" where it names none): ``--by``
    chip: str = ""
    model: str = ""
    runtime: str = ""

    @property
    def family(self) -> str:
        """The source family: the id's first dash-separated word (rows are named source first:
        ``mlperf41-...``, ``gpustack-...``), the second where the first is a kind's tag
        (``moek-vllm24700-...``, ``ratio-gptfast-...``, ``area-...``, ``cost-...``)."""
        words = self.id.split("-")
        return words[1] if words[0] in _KIND_TAGS and len(words) > 1 else words[0]

    @property
    def faster(self) -> float | None:
        """The error signed by speed: > 0 where roofsim predicts the work faster than measured
        (a rate too high, or a time too low: the sign of ``error`` flipped for times)."""
        if self.error is None:
            return None
        time_like = self.metric.endswith("_s") and not self.metric.endswith("_per_s")
        return -self.error if time_like else self.error

    @property
    def sourced(self) -> bool:
        """A test row whose every configuration field is the source's."""
        return self.use == "test" and not self.assumed

    @property
    def error(self) -> float | None:
        """Signed relative error (predicted - measured) / measured."""
        if self.predicted is None:
            return None
        return (self.predicted - self.measured) / self.measured

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "metric": self.metric,
            "measured": self.measured,
            "predicted": self.predicted,
            "error": self.error,
            "faster": self.faster,
            "skipped": self.skipped or None,
            "use": self.use,
            "assumed": list(self.assumed),
            "moe": self.moe,
            "chip": self.chip,
            "model": self.model,
            "runtime": self.runtime,
            "source": self.source,
            **({"detail": self.detail} if self.detail else {}),
        }


def _system(row: dict, n_chips: int):
    """The row's system: its chip with the row's ``set`` overrides (the source's cluster)."""
    return load_system(row["chip"], n_chips, row.get("set", []))


def load_rows(path: Path | str = DEFAULT_DATA) -> list[dict]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--data: no file {str(p)!r}; give the published-measurement TOML")
    try:
        rows = tomllib.loads(files.read_text(p, "--data")).get("row", [])
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--data {p}: malformed TOML: {exc}") from None
    return rows


# --- LLM rows -------------------------------------------------------------------------------


def _row_model(row: dict):
    """The row's model preset, with the checkpoint's fp8 block scales where the row says it
    ran a block-scaled fp8 checkpoint of a preset whose weights are 16-bit (``fp8_block_scales
    = true``: Qwen's -FP8 checkpoints); Skip where the model has no preset."""
    from workloads import load_model

    try:
        model = load_model(row["model"])
    except WorkloadError as exc:
        raise Skip(f"no model preset ({exc})") from None
    blocks = row.get("fp8_block_scales")
    if blocks is None:
        return model
    if not isinstance(blocks, bool):
        raise ConfigError(f"validation row {row['id']!r}: fp8_block_scales must be true or "
                          f"false, got {blocks!r}")  # fmt: skip
    return replace(model, fp8_block_scales=blocks)


def _llm_setup(row: dict):
    """(model, system, layout, dtype) of an LLM row, ``layout`` its tp, pp and dp (the chips
    over tp x pp); Skip where the model has no preset."""
    model = _row_model(row)
    chips, tp, pp = row.get("chips", 1) or 1, row.get("tp", 1) or 1, row.get("pp", 1) or 1
    dtype = {"fp16": "bf16"}.get(row.get("dtype", "bf16"), row.get("dtype", "bf16"))
    return model, _system(row, chips), dict(tp=tp, pp=pp, dp=chips // (tp * pp)), dtype


def _runtime(row: dict, default: str = ""):
    """The runtime preset the row's software is (``runtime = "..."``; the default otherwise)."""
    from workloads.runtime import DEFAULT_RUNTIME, load_runtime

    return load_runtime(row.get("runtime", default or DEFAULT_RUNTIME))


def _llm(row: dict):
    from workloads import Decode, Prefill

    model, system, layout, dtype = _llm_setup(row)
    common = dict(model=model, batch=row.get("batch", 1) or 1, dtype=dtype, **layout,
                  kv_dtype=row.get("kv_dtype"), int4_group=row.get("int4_group"),
                  attention_kernel=row.get("attention_kernel"),
                  runtime=_runtime(row), sampling=row.get("sampling", "greedy"))  # fmt: skip

    def prefill(prompt: int) -> float:
        return simulate(Prefill(prompt=prompt, **common), system, check_memory=False).time_s

    spec = _speculation(row, model)

    def step(context: int) -> float:
        """Time per generated token of a sequence: a decode step, or with speculative decoding
        a step over the tokens it yields on average."""
        t = simulate(Decode(context=context, spec=spec, **common), system, check_memory=False)
        return t.time_s / (spec.tokens_per_step if spec else 1.0)

    return common, prefill, step


def _speculation(row: dict, model):
    """The row's speculative decoding (``spec_tokens``, ``acceptance``, ``draft``), or None."""
    from workloads.llm import Speculation, draft_from

    if not row.get("spec_tokens"):
        return None
    return Speculation(tokens=row["spec_tokens"], acceptance=row.get("acceptance"),
                       accepted_length=row.get("accepted_length"),
                       draft=draft_from(row.get("draft", "mtp"), "draft"))  # fmt: skip


def _predict_decode(row: dict) -> tuple[float, dict]:
    common, prefill, step = _llm(row)
    batch, prompt, output = common["batch"], row.get("prompt", 0), row.get("output", 0)
    context = max(1, row.get("context") or (prompt + output // 2))
    t_step = step(context)
    metric = row["metric"]
    if metric == "itl_s":
        return t_step, {"step_s": t_step}
    if not output:
        raise Skip("decode row without an output length")
    t_prefill = prefill(prompt) if prompt else 0.0
    request = t_prefill + output * t_step
    detail = {"prefill_s": t_prefill, "step_s": t_step, "request_s": request}
    chips = row.get("chips", 1) or 1
    if metric == "time_s":
        return request, detail
    if metric == "tokens_per_s":
        return output / request, detail
    if metric == "throughput_tokens_per_s":
        return batch * output / request, detail
    if metric == "throughput_tokens_per_s_per_gpu":
        return batch * output / request / chips, detail
    raise Skip(f"decode metric {metric!r} not known")


def _predict_prefill(row: dict) -> tuple[float, dict]:
    if row["metric"] != "ttft_s":
        raise Skip(f"prefill metric {row['metric']!r} not known")
    _, prefill, step = _llm(row)
    if row.get("first_token") == "decode":
        # the engine prefills all but the last prompt token and emits the first token from a
        # decode step over that one (LMDeploy TurboMind: 'skip last input token (will process
        # with decoder later)')
        p = row["prompt"] - 1
        first, last = prefill(p), step(p)
        return first + last, {"prefill_s": first, "decode_s": last}
    t = prefill(row["prompt"])
    return t, {"prefill_s": t}


# --- energy rows -----------------------------------------------------------------------------


def _serving_cycle(row: dict, system) -> tuple[float, float, float, dict]:
    """(time, energy, output tokens, detail) of one turnover of servers kept full with
    ``batch`` requests per replica (continuous batching): ``output`` decode steps of the whole batch and
    ``batch`` prefills, one at a time, in the steady state, over all the row's chips."""
    from workloads import Decode, Prefill

    model, _, layout, dtype = _llm_setup(row)
    if not system.chip.has_power_model:
        raise Skip(f"chip {system.chip.name!r} has no power model")
    batch, prompt, output = row["batch"], row["prompt"], row["output"]
    dp = layout["dp"]  # replicas, each with ``batch`` requests
    common = dict(model=model, dtype=dtype, **layout, kv_dtype=row.get("kv_dtype"),
                  int4_group=row.get("int4_group"), runtime=_runtime(row),
                  sampling=row.get("sampling", "greedy"))  # fmt: skip
    step = simulate(Decode(batch=batch * dp, context=int(prompt + output / 2), **common), system,
                    check_memory=False)  # fmt: skip
    pre = simulate(Prefill(batch=dp, prompt=prompt, **common), system, check_memory=False)
    time_s = output * step.time_s + batch * pre.time_s
    energy = output * step.energy_j + batch * pre.energy_j  # type: ignore[operator]
    tokens = batch * output * dp  # output tokens of all replicas
    detail = {"step_s": step.time_s, "prefill_s": pre.time_s, "power_w": energy / time_s,
              "clock": step.clock}  # fmt: skip
    return time_s, energy, tokens, detail


def _predict_energy(row: dict) -> tuple[float, dict]:
    """Energy and power of a full server (``_serving_cycle``); ``throughput_ratio_capped``:
    its throughput with every chip capped at ``cap`` over its throughput uncapped."""
    _, system, _, _ = _llm_setup(row)
    time_s, energy, tokens, detail = _serving_cycle(row, system)
    metric = row["metric"]
    if metric == "avg_power_w":
        return energy / time_s, detail
    if metric == "joules_per_token":
        return energy / tokens, detail
    if metric == "joules_per_request":
        return energy * row["output"] / tokens, detail
    if metric == "throughput_ratio_capped":
        capped = load_system(row["chip"], row.get("chips", 1) or 1,
                             [*row.get("set", []), f"power.cap={row['cap']}"])  # fmt: skip
        t_cap, _, _, d_cap = _serving_cycle(row, capped)
        return time_s / t_cap, {**detail, "capped_power_w": d_cap["power_w"]}
    raise Skip(f"energy metric {metric!r} not known")


def _predict_silicon(row: dict) -> tuple[float, dict]:
    """Die area (``die_area_mm2``: all the chip's dies) or manufacturing cost (``cost_usd``)
    of the row's chip, from hardware.area and hardware.cost."""
    from hardware.area import estimate_area
    from hardware.cost import estimate_cost

    system = _system(row, 1)
    area = estimate_area(system.chip, system)
    detail = {"node": area.node.name, "die_area_band_mm2": list(area.band_mm2)}
    if row["metric"] == "die_area_mm2":
        return area.die_area_mm2, detail
    if row["metric"] == "cost_usd":
        cost = estimate_cost(area, system.chip)
        return cost.total_usd, {**detail, "cost_band_usd": list(cost.band_usd)}
    raise Skip(f"{row['kind']} metric {row['metric']!r} not known")


# --- DiT rows -------------------------------------------------------------------------------


def _predict_dit(row: dict) -> tuple[float, dict]:
    from workloads.dit import DiT, load_dit
    from workloads.runtime import DEFAULT_DIT_RUNTIME

    if row["metric"] != "time_s":
        raise Skip(f"dit metric {row['metric']!r} not known")
    try:
        model = load_dit(row["model"])
    except WorkloadError as exc:
        raise Skip(f"no DiT preset ({exc})") from None
    chips = row.get("chips", 1) or 1
    w = DiT(model=model, height=row["height"], width=row["width"], frames=row.get("frames", 1),
            steps=row["steps"], batch=row.get("batch", 1) or 1, cfg=bool(row.get("cfg", False)),
            dtype={"fp16": "bf16"}.get(row.get("dtype", "bf16"), row.get("dtype", "bf16")),
            sp=chips, sp_method=row.get("sp_method", "ulysses"),
            parallel_vae=bool(row.get("parallel_vae", False)),
            text_tokens=row.get("text_tokens"),
            attention_kernel=row.get("attention_kernel"),
            runtime=_runtime(row, DEFAULT_DIT_RUNTIME))  # fmt: skip
    r = simulate(w, _system(row, chips), check_memory=False)
    return r.time_s, {"mfu": r.mfu, "bound": r.bound, "per_step_s": r.time_per_step_s}


# --- microbenchmark rows --------------------------------------------------------------------


def _fp8_scales(row: dict) -> str:
    """A kernel row's fp8 scaling: per-tensor (the default) or block-128 (DeepSeek-V3's
    128 x 128 weight blocks); a one-line ConfigError naming the field otherwise."""
    scales = row.get("fp8_scales", "per-tensor")
    if scales not in ("per-tensor", "block-128"):
        raise ConfigError(f"validation row {row['id']!r}: fp8_scales must be per-tensor or "
                          f"block-128 (DeepSeek-V3's 128 x 128 weight blocks), got {scales!r}")  # fmt: skip
    return scales


def _predict_gemm(row: dict) -> tuple[float, dict]:
    system = _system(row, 1)
    dtype = {"fp16": "bf16"}.get(row["dtype"], row["dtype"])
    nbytes = dtype_bytes(dtype) if dtype in ("fp8", "int8", "fp4", "int4") else 2.0
    groups, out = row.get("groups", 1), row.get("out_bytes", nbytes)
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ConfigError(f"validation row {row['id']!r}: groups must be an integer >= 1 (the "
                          f"grouped GEMM's groups), got {groups!r}")  # fmt: skip
    if isinstance(out, bool) or not isinstance(out, int | float) or not out > 0:
        raise ConfigError(f"validation row {row['id']!r}: out_bytes must be a number of bytes "
                          f"> 0 per output element, got {out!r}")  # fmt: skip
    op = Builder(dtype, nbytes, nbytes).gemm("gemm", "gemm", row["m"], row["n"], row["k"], groups)
    g = op.gemm
    assert g is not None
    # an output wider than the inputs (fp8 in, bf16 out); fp8 partial sums promoted to fp32 in
    # the kernel (split_accumulate)
    acts = groups * row["m"] * (row["k"] * nbytes + row["n"] * out)
    g = replace(g, c_bytes=float(out), split_accumulate=bool(row.get("split_accumulate")))
    kernel, scales = row.get("kernel", "library"), _fp8_scales(row)
    if kernel not in ("library", *BLOCK_FP8_KERNELS):
        raise ConfigError(f"validation row {row['id']!r}: kernel must be library, "
                          f"{', '.join(BLOCK_FP8_KERNELS)}, got {kernel!r}")  # fmt: skip
    blocks = scales == "block-128" and dtype == "fp8"
    if blocks and kernel == "library":
        raise ConfigError(f"validation row {row['id']!r}: a block-128 fp8 row names its "
                          f"kernel: {', '.join(BLOCK_FP8_KERNELS)}")  # fmt: skip
    if not blocks and kernel not in ("library", "triton"):
        raise ConfigError(f"validation row {row['id']!r}: kernel {kernel} is a block-scaled fp8 "
                          "kernel: give dtype fp8 and fp8_scales block-128, or kernel library")  # fmt: skip
    if blocks:  # the block scales' promotion, by kernel
        g = block_fp8_gemm(g, kernel)
    elif kernel == "triton":  # a tl.dot kernel (vLLM's w8a8_block_fp8_matmul): as the Triton MoE
        g = triton_gemm(g)
    op = replace(op, gemm=g, bytes={**op.bytes, Role.ACTIVATION: float(acts)})
    # a kernel timed in a short loop runs at the burst clock; one measured after seconds of
    # back-to-back runs (steady = true) at the clock its power limit allows
    (c,) = cost_ops([op], system, steady=bool(row.get("steady")))
    return op.flops / c.time_s / 1e12, {"time_s": c.time_s, "bound": c.bound}


def _predict_moe_kernel(row: dict) -> tuple[float, dict]:
    """A fused MoE layer (vLLM's ``benchmark_moe.py``, SGLang's tuning script): the routing
    of ``batch`` tokens given their gate scores, both expert GEMMs, the activation and the
    combine, as the serving lowering builds them (``_Lowering.moe_block`` less the router
    GEMM, whose scores the harness passes in) on one chip at its burst clock."""
    from workloads.llm import Decode
    from workloads.model import ModelConfig, MoEConfig
    from workloads.runtime import load_runtime

    h, ffn = row["hidden"], row["expert_ffn"]
    # experts stored 4-bit with 16-bit math (weight-only: the runtime's kernel for it, Marlin
    # under vLLM): "int4" (GPTQ/AWQ) as the run's dtype, "mxfp4" as the experts' own format
    stored = row.get("expert_weight_format", "")
    if stored not in ("", "int4", "mxfp4"):
        raise ConfigError(f"validation row {row['id']!r}: expert_weight_format must be int4 or "
                          f"mxfp4 (or absent), got {stored!r}")  # fmt: skip
    dtype = "int4" if stored == "int4" else row["dtype"]
    moe = MoEConfig(n_experts=row["experts"], top_k=row["top_k"], expert_ffn=ffn,
                    weight_format="mxfp4" if stored == "mxfp4" else "")  # fmt: skip
    scales = _fp8_scales(row)
    model = ModelConfig(name="moe-kernel", n_layers=1, hidden=h, n_heads=1, n_kv_heads=1,
                        head_dim=128, ffn=ffn, vocab=1, moe=moe,
                        fp8_block_scales=scales == "block-128")  # fmt: skip
    work = Decode(model=model, batch=row["batch"], context=1, dtype=dtype,
                  runtime=load_runtime(row["runtime"]))  # fmt: skip
    # the harnesses time the kernels on the device (CUDA events around graph replays): no host
    # time, whatever size the runtime itself would graph
    ops = [replace(op, host_s=0.0) for op in work.lower().ops
           if op.family == "moe" and op.name != "router"]  # fmt: skip
    if work.runtime.name.startswith("sglang"):  # SGLang's tuner selects the experts (top-k)
        # before its timed graph: the routing op runs its other two kernels there
        ops = [replace(op, kernels=op.kernels - 1) if op.name == "route_permute" else op
               for op in ops]  # fmt: skip
    costs = cost_ops(ops, _system(row, 1), steady=False)
    t = sum(c.time_s for c in costs)
    detail = {"time_s": t, "ops": {op.name: c.time_s for op, c in zip(ops, costs, strict=True)}}
    if row.get("fp8_scales"):  # block scales: promoted per 128 deep where the kernel exposes it
        detail["fp8_scales"] = row["fp8_scales"]
    return t, detail


def _predict_attention(row: dict) -> tuple[float, dict]:
    system = _system(row, 1)
    hd = row["head_dim"]
    # heads x head_dim = 2048 when the source does not print heads (the flash-attention
    # benchmark scripts' default model width)
    heads = row.get("heads") or 2048 // hd
    causal = bool(row.get("causal", False))
    kv_heads = row.get("kv_heads") or heads  # grouped-query rows print their K/V heads
    # q = kv = seq (prefill) unless the row gives them (decode: one query over kv_len keys)
    q_len, kv_len = row.get("q_len", row["seq"]), row.get("kv_len", row["seq"])
    # the row's dtype: 16-bit, or fp8 (Q, K, V in fp8 and both matmuls on the fp8 units, as
    # cuDNN's fp8 SDPA runs them; the softmax in fp32 as ever)
    dtype = row.get("dtype", "bf16")
    width = 1.0 if dtype == "fp8" else 2.0
    # a value head narrower than the query/key head (MLA's prefill form: qk 192, v 128)
    v = row.get("v_head_dim", hd)
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ConfigError(f"validation row {row.get('id')!r}: v_head_dim must be an integer "
                          f">= 1 (the value head's width; omit it where it equals head_dim), "
                          f"got {v!r}")  # fmt: skip
    spec = Attention(batch=row.get("batch", 1) or 1, n_q_heads=heads, n_kv_heads=kv_heads,
                     q_len=q_len, kv_len=kv_len, qk_dim=hd, v_dim=v, causal=causal,
                     act_bytes=width, kv_bytes_per_token=(hd + v) * width,
                     kernel=row.get("attention_kernel", "native"))  # fmt: skip
    op = Builder(dtype, width, width).attention("attention", spec)
    # sources count 4·seq²·hd·heads·batch (2.5x that for the backward), halved for causal —
    # the ops' FLOPs are the same count
    ops = attention_backward(op, width) if row.get("backward") else [op]
    t = sum(c.time_s for c in cost_ops(ops, system, steady=bool(row.get("steady"))))
    if row["metric"] == "time_s":
        return t, {"time_s": t, "heads": heads}
    return ops[0].flops / t / 1e12, {"time_s": t, "heads": heads}


#: the eager ops an ``eager-kernel`` row may time, with the input dtypes each is read for
_EAGER_KERNELS = {"layer_norm": ("bf16", "fp32"), "rms_norm": ("bf16",),
                  "add_rms_norm": ("fp32",), "cross_entropy": ("fp32",),
                  "rope_complex": ("bf16",), "relu_squared": ("bf16", "fp32")}  # fmt: skip
_EAGER_MODES = ("forward", "backward", "full")


def _eager_kernel_row(row: dict) -> tuple[str, str, float, str]:
    """(kernel, mode, elements, dtype) of an ``eager-kernel`` row; a one-line ConfigError
    naming the field where one is missing or wrong."""
    where = f"validation row {row.get('id')!r}"
    kernel, mode, dtype = row.get("kernel"), row.get("mode"), row.get("dtype")
    if kernel not in _EAGER_KERNELS:
        raise ConfigError(f"{where}: kernel must be one of {', '.join(_EAGER_KERNELS)}, "
                          f"got {kernel!r}")  # fmt: skip
    if mode not in _EAGER_MODES:
        raise ConfigError(f"{where}: mode must be one of {', '.join(_EAGER_MODES)}, got {mode!r}")
    if dtype not in _EAGER_KERNELS[kernel]:
        raise ConfigError(f"{where}: dtype must be {' or '.join(_EAGER_KERNELS[kernel])} for "
                          f"{kernel} (the primitives read), got {dtype!r}")  # fmt: skip
    for name in ("rows", "cols"):
        v = row.get(name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{where}: {name} must be an integer >= 1 (the op's elements are "
                              f"rows x cols), got {v!r}")  # fmt: skip
    if row.get("metric") != "time_s":
        raise ConfigError(f"{where}: metric must be time_s for an eager-kernel row, "
                          f"got {row.get('metric')!r}")  # fmt: skip
    return kernel, mode, float(row["rows"]) * float(row["cols"]), dtype


def _eager_kernel_passes(row: dict) -> list[tuple[float, int, tuple]]:
    """(bytes per element, kernels, scalar kernels: (output elements per element, bytes per
    output element, path)) of each pass an ``eager-kernel`` row times (its forward, its backward, or both for
    ``mode = "full"``): the primitives the lowerings charge an eager PyTorch op
    (``workloads.build.EAGER_PRIMITIVES`` and ``EAGER_SCALAR``, written for 16-bit
    activations), scaled to the row's dtype and adjusted only where the benchmark's code differs
    from a model's."""
    kernel, mode, _, dtype = _eager_kernel_row(row)
    scale = dtype_bytes(dtype) / 2.0
    bwd: tuple[float, int, tuple] | None
    if kernel == "layer_norm":  # torch.nn.LayerNorm: the native kernels, no residual beside
        f, fk, b, bk = eager_without_residual("layernorm")
        fwd = (f * scale, fk, scalar_per("layernorm"))
        bwd = (b * scale, bk, scalar_per("layernorm", backward=True))
    elif kernel == "cross_entropy":  # torch.nn.CrossEntropyLoss on logits already in fp32
        f, fk, b, bk = EAGER_PRIMITIVES["cross_entropy"]
        # without the model's .float() cast (2+4 B, the cast kernel) and the gradient's cast back
        # (4+2 B)
        fwd, bwd = (f - 6.0, fk - 1, ()), (b - 6.0, bk - 1, ())
        if row.get("grad_accumulates"):  # .grad += the new gradient: 4+4+4 B, one kernel
            bwd = (bwd[0] + 12.0, bwd[1] + 1, ())
    elif kernel == "rms_norm":  # Llama's RMSNorm in PyTorch primitives, no residual beside
        f, fk = eager_without_residual("rmsnorm")[:2]
        # an fp32 weight promotes the last multiply's output to fp32: 2 B more an element, on
        # the strided kernel (its broadcast multiply, casting: 2+4 B)
        extra = 2.0 if row.get("weight_dtype") == "fp32" else 0.0
        kernels = tuple((e, (b + extra if (b, vec) == (4.0, True) else b) / e, path)
                        for e, b, vec, path in EAGER_SCALAR["rmsnorm"][0])  # fmt: skip
        fwd, bwd = (f + extra, fk, kernels), None
    elif kernel == "add_rms_norm":  # x + residual, then RMSNorm's primitives, all in fp32
        f, fk = EAGER_PRIMITIVES["rmsnorm"][:2]
        # the entry's two casts (2+4 on the cast kernel, 4+2 B) are no-ops on fp32; its 16-bit
        # weight multiply (2+2, strided) and residual add (2+2+2) move 4-byte elements here:
        # +4 and +6 B
        kernels = ((1.0, 8.0, STRIDED), (1.0, 8.0, STRIDED))
        fwd, bwd = (f - 12.0 + 4.0 + 6.0, fk - 2, kernels), None
    elif kernel == "rope_complex":  # the Meta/Llama-4 complex RoPE on q and k (rows x cols)
        f, fk, b, bk = EAGER_PRIMITIVES["rope"]  # 3 kernels for each of q and k
        fwd, bwd = (f, fk, scalar_per("rope")), (b, bk, scalar_per("rope", backward=True))
    else:  # relu_squared: square(relu(x)), two one-kernel activations
        f, fk = EAGER_PRIMITIVES["act"][:2]
        fwd, bwd = (2 * f * scale, 2 * fk, scalar_per("act")), None
    if bwd is None and mode != "forward":
        raise Skip(f"{kernel} rows: the backward's primitives are not read")
    return {"forward": [fwd], "backward": [bwd], "full": [fwd, bwd]}[mode]  # type: ignore[list-item]


def _predict_eager_kernel(row: dict) -> tuple[float, dict]:
    """One eager PyTorch op on one chip, as a kernel benchmark times it (Liger-Kernel's
    ``benchmark/scripts``: CUDA events around each call, L2 flushed before it, the burst
    clock): each pass an elementwise op of the primitives' bytes, kernels and scalar kernels
    (at plain eager PyTorch's cycles an element), costed as the lowerings cost it
    (``cost_ops``). No host time: a call too small to cover its launches is predicted fast."""
    elems = _eager_kernel_row(row)[2]
    system = _system(row, 1)
    rates = _runtime(row, "pytorch-eager").scalar_rates
    ops = [scalar(replace(Builder("bf16", 2.0, 2.0).elementwise(f"pass{i}", "eager",
                                                                per * elems / 2.0, 0.0, 0.0),
                          kernels=k), kernels, rates, elems)
           for i, (per, k, kernels) in enumerate(_eager_kernel_passes(row))]  # fmt: skip
    t = sum(c.time_s for c in cost_ops(ops, system, steady=False))
    return t, {"time_s": t, "bytes": sum(op.total_bytes for op in ops)}


def _predict_membw(row: dict) -> tuple[float, dict]:
    chip = _system(row, 1).chip
    hbm = chip.main_memory
    # a large streaming kernel: read + write traffic far above the latency term
    nbytes = 4 * 2**30
    t = chip.kernel_overhead_s + hbm.transfer_s(nbytes)
    return nbytes / t, {"bytes": nbytes}


def _predict_allreduce(row: dict) -> tuple[float, dict]:
    n = row["chips"]
    system = _system(row, n)
    size = row["bytes"]
    t = collective_time("all_reduce", size, n, system) + system.chip.kernel_overhead_s
    algbw = size / t
    return algbw * 2 * (n - 1) / n, {"time_s": t}


def _predict_alltoall(row: dict) -> tuple[float, dict]:
    """One all-to-all of ``bytes`` per chip over ``chips`` chips of one node, as the training
    and DiT lowerings cost it (``cost_ops`` on a collective op: the link's measured all-to-all
    where it has one, its kernel's fixed cost inside; else the alpha-beta model plus a
    kernel's overhead)."""
    n = row["chips"]
    system = _system(row, n)
    if not 2 <= n <= system.chips_per_node:
        raise ConfigError(f"validation row {row['id']!r}: an alltoall row is one node's "
                          f"all-to-all: chips must be 2 to {system.chips_per_node}, got {n!r}")  # fmt: skip
    op = Builder("bf16", 2.0, 2.0).collective("all_to_all", "all_to_all", row["bytes"], n)
    (c,) = cost_ops([op], system)
    return c.time_s, {"time_s": c.time_s}


def _convention_flops(t: Training, hardware: bool) -> float:
    """FLOPs per step as the sources count them: PaLM's 6·N + 6·L·H·(dqk + dv)·seq per token
    (Chowdhery et al. 2022, App. B; the same as Megatron-LM's Eq. 3 in Narayanan et al. 2021),
    i.e. attention over the full (not causal) sequence; ``hardware`` adds what recomputation
    re-runs (Korthikanti et al. 2022, Sec. 6.3: full = one more forward, selective = the
    attention core), as the Megatron throughput logs count it."""
    m = t.model
    qk, v = (
        (m.head_dim, m.head_dim)
        if m.mla is None
        else (m.mla.qk_nope_head_dim + m.mla.qk_rope_head_dim, m.mla.v_head_dim)
    )
    n = m.n_matmul_params(active=True)
    attn = 2 * m.n_layers * m.n_heads * (qk + v) * t.seq  # one forward, per token
    per_token = 6 * n + 3 * attn
    if hardware and t.recompute == "full":
        ck = t.checkpointed(0, m.n_layers) / m.n_layers  # all blocks, or a share of them
        per_token += ck * (2 * n + attn)
    elif hardware and t.recompute == "selective":
        per_token += attn
    return per_token * t.batch * t.seq


def _training_for(row: dict) -> Training:
    """The row's run; an unprinted micro-batch is 1, an unprinted recompute policy the
    lightest that fits in memory (what a practitioner would choose)."""
    model = load_model(row["model"])
    base = Training(
        model=model, seq=row["seq"], micro_batch=row.get("micro_batch") or 1,
        global_batch=row["global_batch"], dtype=row["dtype"], zero=row["zero"],
        dp_shard=row.get("dp_shard", 0), grad_reduce=row.get("grad_reduce", ""),
        tp=row["tp"], sp=bool(row.get("sp", False)), pp=row["pp"], vp=row.get("vp", 1),
        dp=row["dp"], ep=row["ep"], cp=row["cp"],
        recompute=row["recompute"] if row["recompute"] in RECOMPUTE else "none",
        recompute_blocks=row.get("recompute_blocks", 1.0),
        attention_kernel=row.get("attention_kernel"),
        runtime=row.get("runtime", ""), elementwise=row.get("elementwise"), sample_len=row.get("sample_len", 0),
        ep_overlap=bool(row.get("ep_overlap", False)),
        tp_overlap=bool(row.get("tp_comm_overlap", False)),
        ep_dispatcher=row.get("ep_dispatcher", "alltoall"), etp=row.get("etp", 0),
        capacity_factor=row.get("capacity_factor", 0.0),
    )  # fmt: skip
    if row["recompute"] in RECOMPUTE:
        return base
    system = _system(row, row["chips"])
    capacity = system.chip.main_memory.capacity_bytes
    # (with the combined 1F1B EP overlap Megatron-Core 0.14-0.15 refuses full recomputation,
    # TransformerConfig: 'disable full recomputation when enabling
    # overlap_moe_expert_parallel_comm', and later versions take it only with an explicit
    # method and layer count: its recipes recompute selectively)
    policies = ("none", "selective") if base.ep_overlap else ("none", "selective", "full")
    for policy in policies:
        t = replace(base, recompute=policy, chips_per_node=system.chips_per_node)
        if max(m.total_bytes for m in t.lower().memory) <= capacity:
            return t
    return replace(base, recompute=policies[-1])


def _predict_train(row: dict) -> tuple[float, dict]:
    t = _training_for(row)
    if t.vp > 1 and t.micro_batches % t.pp:
        t = replace(t, vp=1)  # the interleaved schedule needs m % pp == 0
    system = _system(row, row["chips"])
    # the run existed, so it fitted: simulate it even where the memory model is stricter
    r = simulate_training(t, system, check_memory=False)
    metric = row["metric"]
    detail = {"step_time_s": r.step_time_s, "mfu": r.mfu, "recompute": t.recompute,
              "fits": r.fits, "bound": r.bound}  # fmt: skip
    if metric == "time_s":
        return r.step_time_s, detail
    if metric == "tokens_per_s_per_gpu":
        return r.tokens_per_s / r.n_chips, detail
    hardware = metric == "hfu" or row.get("flops_counted") == "hardware"
    per_chip = _convention_flops(t, hardware) / r.step_time_s / r.n_chips
    if metric in ("mfu", "hfu"):
        return per_chip / system.chip.peak("bf16"), detail
    if metric == "tflops_per_s":
        return per_chip / 1e12, detail
    raise Skip(f"train metric {metric!r} has no predictor")


# --- serving rows ---------------------------------------------------------------------------


def _trtllm_bench_settings(
    serving, system, isl: int, osl: int, engine_gib: bool
) -> tuple[int, int]:
    """(max batch size, max num tokens) as trtllm-bench picks them (NVIDIA/TensorRT-LLM
    tensorrt_llm/bench/build/tuning.py, calc_engine_setting + finetune_setting), from its own
    estimate of the KV memory, not the runtime's: 0.95 of every GPU's total memory (nvml, GiB)
    less the engine (parameters x bytes per element: 1 for FP8, 0.5 for NVFP4, else 2), over
    2 x layers x max(TP, KV heads) x head size x KV bytes per token; the requests of ISL + OSL
    tokens it holds, capped at 4096 and rounded up; tokens = that batch x (1 + ISL / OSL),
    capped at 32768 and rounded up. ``engine_gib``: the engine size in GiB (param_count x
    bytes / 1024^3, the v1.0-era code, commit 04cba882); releases 0.14-0.17 took
    param_count / 1000^3 x bytes as GB against the GiB of memory (their 0.17 log: 'Estimated
    total available memory for KV cache: 132.37 GB' = 140.40 - 8.03 for an 8.03 B FP8 model)."""
    m = serving.model
    per = {"fp8": 1.0, "fp4": 0.5} if engine_gib else {"fp8": 1.0}  # NVFP4: v1.0-era code
    elem = per.get(serving.dtype, 2.0)
    kv_elem = 1.0 if serving.kv_dtype == "fp8" else 2.0
    engine = m.n_params() * elem / (2**30 if engine_gib else 1e9)
    memory = system.chip.main_memory.capacity_bytes / 2**30 * serving.tp
    per_token = 2 * m.n_layers * max(serving.tp, m.n_kv_heads) * m.head_dim * kv_elem / 2**30
    requests = (memory - engine) * 0.95 / per_token / (isl + osl)
    raw_bs = min(requests, 4096)
    raw_token = min(raw_bs * (1 + isl / osl), 32768)
    bs = _round_up(raw_bs, 64, ((256, 32), (1024, 128), (math.inf, 256)))
    tokens = _round_up(raw_token, 2048, ((4096, 256), (8192, 512), (math.inf, 1024)))
    return bs, tokens


def _round_up(raw: float, floor: int, ladder: tuple[tuple[float, int], ...]) -> int:
    """``raw`` rounded up to the step of the first rung it is below, at least ``floor``."""
    step = next(step for below, step in ladder if raw < below)
    return max(floor, step * math.ceil(raw / step))


_OFFLINE_TURNOVERS = 16


def _serve_requests(row: dict, model) -> tuple:
    """The row's request set: exactly ``n_requests`` with fixed or drawn lengths, sent all at
    once (offline), as a Poisson stream at ``rate``, or by ``concurrency`` clients."""
    import numpy as np

    from workloads.serving import LengthDist, Requests, streams

    n = row.get("n_requests") or 4 * (row.get("concurrency") or 64)
    if row.get("steady_state") and row.get("mode", "offline") == "offline":
        # an offline query of up to millions of samples (MLPerf's samples_per_query) runs as its
        # first 16 turnovers of every replica's batch: its steady state, to within 0.5 % on the
        # MLPerf rows (the whole query against these, measured 2026-12-05), at a fifth of the time
        tp = row.get("tp") or 1
        replicas = max(1, (row.get("chips") or tp) // tp)
        n = min(n, _OFFLINE_TURNOVERS * replicas * row.get("max_num_seqs", 256))
    gaps, prompts, outputs = streams(row.get("seed", 0))
    lengths = []
    for key, rng in (("prompt", prompts), ("output", outputs)):
        value = row.get(key)
        text = value if isinstance(value, int) and value > 0 else row.get(f"{key}_dist")
        if text is None:
            raise Skip(f"serve row needs an integer {key} or a {key}_dist")
        lengths.append(LengthDist.parse(text, f"{key}_dist", model.max_seq).sample(rng, n))
    prompt, output = lengths
    if row.get("max_prompt"):
        prompt = np.minimum(prompt, row["max_prompt"])
    output = np.minimum(output, (row.get("max_total") or model.max_seq) - prompt)
    mode = row.get("mode", "offline")
    if mode == "poisson":
        arrival = np.cumsum(gaps.exponential(1.0 / row["rate"], size=n))
    else:
        arrival = np.zeros(n)
    return Requests(arrival, prompt, output), mode


def _predict_serve(row: dict) -> tuple[float, dict]:
    import numpy as np

    from sim.engine.serve import simulate_serving
    from workloads.serving import Serving

    model = _row_model(row)
    tp = row.get("tp", 1) or 1
    replicas = (row.get("chips", tp) or tp) // tp
    system = _system(row, tp * replicas)
    trace, mode = _serve_requests(row, model)
    dtype = {"fp16": "bf16"}.get(row.get("dtype", "bf16"), row.get("dtype", "bf16"))
    serving = Serving(
        model=model, dtype=dtype, kv_dtype=row.get("kv_dtype"), int4_group=row.get("int4_group"),
        tp=tp, replicas=replicas, trace=trace, max_num_seqs=row.get("max_num_seqs", 256),
        max_num_batched_tokens=row.get("max_num_batched_tokens"),
        chunked_prefill=row.get("chunked_prefill", False),
        memory_fraction=row.get("memory_fraction", 0.9),
        concurrency=row.get("concurrency") if mode == "closed-loop" else None,
        attention_kernel=row.get("attention_kernel"), runtime=_runtime(row),
        admission=row.get("admission"), sampling=row.get("sampling", "greedy"),
    )  # fmt: skip
    if row.get("engine") == "trtllm-bench":
        isl, osl = int(np.mean(trace.prompt)), int(np.mean(trace.output))
        # the v1.0-era tuning code sizes the engine in GiB; 0.14-0.17 and NIM's in GB
        gib = "v1.0" in row.get("software", "")
        bs, tokens = _trtllm_bench_settings(serving, system, isl, osl, gib)
        # in-flight batching: context and generation requests share each iteration's tokens
        # (its no-evict admission is the tensorrt-llm runtime's: Runtime.admission)
        serving = replace(serving, max_num_seqs=bs, max_num_batched_tokens=tokens,
                          chunked_prefill=True)  # fmt: skip
    r = simulate_serving(serving, system)
    detail = {
        "end_s": r.end_s,
        "mean_decode_batch": r.mean_decode_batch,
        "max_num_seqs": serving.max_num_seqs,
        "max_num_batched_tokens": serving.token_budget,
        "preemptions": r.preemptions,
        "mfu": r.mfu,
    }
    metric = row["metric"]
    stat = np.median if row.get("statistic") == "median" else np.mean
    if metric == "throughput_tokens_per_s":
        return r.tokens_per_s, detail
    if metric == "requests_per_s":
        return r.requests_per_s, detail
    if metric == "total_tokens_per_s":  # the finished requests' prompt and output tokens
        done = ~np.isnan(r.finish_s)
        return float((r.prompt + r.output)[done].sum()) / r.end_s, detail
    if metric == "ttft_s":
        return float(stat(r.ttft)), detail
    if metric in ("tpot_s", "itl_s"):
        return float(stat(r.tpot)), detail
    raise Skip(f"serve metric {metric!r} not known")


PREDICTORS: dict[str, Callable[[dict], tuple[float, dict]]] = {
    "decode": _predict_decode,
    "prefill": _predict_prefill,
    "dit": _predict_dit,
    "train": _predict_train,
    "gemm": _predict_gemm,
    "attention": _predict_attention,
    "moe-kernel": _predict_moe_kernel,
    "eager-kernel": _predict_eager_kernel,
    "membw": _predict_membw,
    "allreduce": _predict_allreduce,
    "alltoall": _predict_alltoall,
    "serve": _predict_serve,
    "energy": _predict_energy,
    "area": _predict_silicon,
    "cost": _predict_silicon,
}


USES = ("fit", "test")


def run_row(row: dict) -> RowResult:
    use = row.get("use", "test")  # a row nobody tuned against (e.g. a user's own data) is a test
    if use not in USES:
        raise ConfigError(f"validation row {row.get('id')!r}: use must be fit or test, got {use!r}")
    res = RowResult(id=row["id"], kind=row["kind"], metric=row["metric"],
                    measured=float(row["measured"]), source=row.get("source", ""), use=use,
                    assumed=tuple(row.get("assumed", ())), moe=is_moe(row),
                    **_labels(row))  # fmt: skip
    withdrawn = row.get("withdrawn")
    if withdrawn is not None:  # a measurement its own source contradicts: kept, not scored
        if not isinstance(withdrawn, str) or not withdrawn.strip():
            raise ConfigError(f"validation row {row.get('id')!r}: withdrawn must say why the "
                              f"measurement cannot stand (a sentence), got {withdrawn!r}")  # fmt: skip
        res.skipped = f"withdrawn: {withdrawn}"
        return res
    predictor = PREDICTORS.get(row["kind"])
    if predictor is None:
        res.skipped = f"kind {row['kind']!r} has no predictor"
        return res
    try:
        res.predicted, res.detail = predictor(row)
    except Skip as exc:
        res.skipped = str(exc)
    except (ConfigError, WorkloadError, CapacityError) as exc:
        res.skipped = f"cannot simulate: {exc}"
    return res


def _labels(row: dict) -> dict[str, str]:
    """The row's chip, model and runtime fields as written, for ``--by``."""
    return {k: str(row.get(k, "")) for k in ("chip", "model", "runtime")}


def run_rows(rows: list[dict], workers: int | None = None, bar: Any = None) -> list[RowResult]:
    """``run_row`` of each row, in order, spread over ``workers`` processes (None: every core;
    1: this process); ``bar`` (a ``Progress``) advances as each row finishes. A row's result
    does not depend on where it ran: each is simulated from its own fields alone."""
    from sim.studies.pool import pool_size, process_pool

    workers = pool_size(workers, len(rows))
    if workers <= 1:
        out = []
        for r in rows:
            out.append(run_row(r))
            if bar is not None:
                bar.update(1, r["id"][:40])
        return out
    from concurrent.futures import as_completed

    results: dict[int, RowResult] = {}
    with process_pool(workers) as pool:
        futures = {pool.submit(run_row, r): i for i, r in enumerate(rows)}
        for future in as_completed(futures):
            i = futures[future]
            results[i] = future.result()
            if bar is not None:
                bar.update(1, rows[i]["id"][:40])
    return [results[i] for i in range(len(rows))]


def is_moe(row: dict) -> bool:
    """Whether ``row`` is an LLM row on a mixture-of-experts model (False where its model does
    not load: the row is then skipped with that error)."""
    if row["kind"] not in _LLM_KINDS or not row.get("model"):
        return False
    try:
        return load_model(row["model"]).moe is not None
    except (ConfigError, WorkloadError, OSError):
        return False


def select(
    rows: list[dict],
    kinds: Iterable[str] | None = None,
    fast: bool = False,
    ids: Iterable[str] | None = None,
) -> list[dict]:
    """Rows of the given kinds whose id matches one of the globs ``ids`` (``fnmatch``, case
    sensitive; none: every id); ``fast`` keeps the first three simulatable-looking rows per
    kind. A glob that matches no row is a ``ConfigError`` naming it."""
    wanted = set(kinds) if kinds else None
    globs = list(ids or ())
    for glob in globs:
        if not any(fnmatch.fnmatchcase(row["id"], glob) for row in rows
                   if wanted is None or row["kind"] in wanted):  # fmt: skip
            of = f" of --kind {', '.join(sorted(wanted))}" if wanted else ""
            raise ConfigError(f"--id {glob}: matches no validation row id{of}; give a glob of "
                              "the rows' id fields (e.g. 'moek-*-h100-*')")  # fmt: skip
    out, seen = [], defaultdict(int)
    for row in rows:
        if wanted is not None and row["kind"] not in wanted:
            continue
        if globs and not any(fnmatch.fnmatchcase(row["id"], g) for g in globs):
            continue
        if fast and seen[row["kind"]] >= 3:
            continue
        seen[row["kind"]] += 1
        out.append(row)
    return out


@dataclass(frozen=True, slots=True)
class Errors:
    """Median |error| and the bias of some rows: the median error signed by speed (> 0:
    roofsim predicts faster than measured, ``RowResult.faster``)."""

    rows: int
    median_abs_error: float | None
    median_signed_error: float | None

    @classmethod
    def of(cls, results: list[RowResult]) -> Errors:
        done = [r for r in results if r.error is not None]
        if not done:
            return cls(0, None, None)
        return cls(len(done), statistics.median(abs(r.error) for r in done),  # type: ignore[arg-type]
                   statistics.median(r.faster for r in done))  # type: ignore[type-var]  # fmt: skip

    def to_dict(self) -> dict:
        return {"rows": self.rows, "median_abs_error": self.median_abs_error,
                "median_signed_error": self.median_signed_error}  # fmt: skip


@dataclass(slots=True)
class KindSummary:
    """One kind's errors. The headline (and the bar) is the test rows: those nothing was fitted
    or chosen against; ``sourced`` the test rows without an assumed field; ``fit`` the rest.
    ``smoke``: a --fast subset, reported without a verdict."""

    kind: str
    rows: int
    simulated: int
    test: Errors
    sourced: Errors
    fit: Errors
    everything: Errors
    worst_abs_error: float | None
    worst_id: str
    bar: float | None
    smoke: bool = False
    slice: bool = False  # a slice across kinds (``SLICES``), not a kind

    @property
    def median_abs_error(self) -> float | None:
        return self.test.median_abs_error

    @property
    def median_signed_error(self) -> float | None:
        return self.test.median_signed_error

    @property
    def passed(self) -> bool | None:
        if self.bar is None or self.median_abs_error is None or self.smoke:
            return None
        bias = self.median_signed_error or 0.0
        return self.median_abs_error <= self.bar and abs(bias) <= BIAS_BAR

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "slice": self.slice,
            "rows": self.rows,
            "simulated": self.simulated,
            "test_rows": self.test.rows,
            "fit_rows": self.fit.rows,
            "assumed_rows": self.test.rows - self.sourced.rows,
            "median_abs_error": self.median_abs_error,
            "median_signed_error": self.median_signed_error,
            "sourced": self.sourced.to_dict(),
            "fit": self.fit.to_dict(),
            "all": self.everything.to_dict(),
            "worst_abs_error": self.worst_abs_error,
            "worst_id": self.worst_id,
            "bar": self.bar,
            "passed": self.passed,
        }


def summarise(
    results: list[RowResult], smoke: bool = False, subset: bool = False
) -> list[KindSummary]:
    """Per kind, then per slice (``SLICES``): errors of the test rows (the headline and the
    bar), of the test rows without assumed fields, of the fit rows, and of all; the worst test
    row. A slice without rows in ``results`` is left out; ``subset`` (some kinds were run, not
    all): a slice is reported without its bar, being only the run kinds' share of it."""
    by: dict[str, list[RowResult]] = defaultdict(list)
    for r in results:
        by[r.kind].append(r)
    out = [
        _summary(kind, by[kind], BARS.get(kind), smoke)
        for kind in sorted(by, key=lambda k: KINDS.index(k) if k in KINDS else len(KINDS))
    ]
    for name, (member, bar) in SLICES.items():
        rs = [r for r in results if member(r)]
        if rs:
            out.append(replace(_summary(name, rs, None if subset else bar, smoke), slice=True))
    return out


def _summary(kind: str, rs: list[RowResult], bar: float | None, smoke: bool) -> KindSummary:
    tests = [r for r in rs if r.use == "test" and r.error is not None]
    worst = max(tests, key=lambda r: abs(r.error), default=None)  # type: ignore[arg-type]
    return KindSummary(
        kind=kind,
        rows=len(rs),
        simulated=sum(r.error is not None for r in rs),
        test=Errors.of(tests),
        sourced=Errors.of([r for r in tests if r.sourced]),
        fit=Errors.of([r for r in rs if r.use == "fit"]),
        everything=Errors.of(rs),
        worst_abs_error=abs(worst.error) if worst else None,  # type: ignore[arg-type]
        worst_id=worst.id if worst else "",
        bar=bar,
        smoke=smoke,
    )


#: what ``--by`` groups the test rows of each kind by: a RowResult attribute
GROUP_BY = ("family", "runtime", "chip", "model")
#: id prefixes that name a kind, not a source (``RowResult.family`` skips them)
_KIND_TAGS = ("moek", "ratio", "area", "cost")


def check_group_by(by: str) -> None:
    """A ConfigError, one line naming --by, unless ``by`` is one of ``GROUP_BY``."""
    if by not in GROUP_BY:
        raise ConfigError(f"--by {by}: not a row field to group by; choose from "
                          f"{', '.join(GROUP_BY)}")  # fmt: skip


@dataclass(frozen=True, slots=True)
class GroupSummary:
    """The test rows of one kind that share a value of a ``GROUP_BY`` field: where in a kind
    its error sits (a bias that one source, runtime or chip carries rather than the kind)."""

    kind: str
    by: str
    value: str  # "-" where the rows name none (the kind's default runtime, say)
    test: Errors
    worst_abs_error: float | None
    worst_id: str

    def to_dict(self) -> dict:
        return {"kind": self.kind, "by": self.by, "value": self.value, **self.test.to_dict(),
                "worst_abs_error": self.worst_abs_error, "worst_id": self.worst_id}  # fmt: skip


def group_errors(results: list[RowResult], by: str) -> list[GroupSummary]:
    """Per kind (in ``KINDS`` order), the simulated test rows grouped by ``by`` (one of
    ``GROUP_BY``): each group's median |error|, bias and worst row, the largest groups
    first (ties by value). Fit rows and skipped rows are left out, as in the kind's headline."""
    check_group_by(by)
    groups: dict[tuple[str, str], list[RowResult]] = defaultdict(list)
    for r in results:
        if r.use == "test" and r.error is not None:
            groups[(r.kind, getattr(r, by) or "-")].append(r)
    rank = {k: i for i, k in enumerate(KINDS)}
    out: list[GroupSummary] = []
    for (kind, value), rs in sorted(groups.items(), key=lambda kv: (
            rank.get(kv[0][0], len(KINDS)), kv[0][0], -len(kv[1]), kv[0][1])):  # fmt: skip
        worst = max(rs, key=lambda r: abs(r.error))  # type: ignore[arg-type]
        worst_abs = abs(worst.error)  # type: ignore[arg-type]
        out.append(GroupSummary(kind, by, value, Errors.of(rs), worst_abs, worst.id))
    return out


def group_table(groups: list[GroupSummary], by: str) -> str:
    """``group_errors(..., by)`` as text: a line per (kind, value)."""
    width = max([len(by), *(len(g.value) for g in groups)]) + 2
    lines = [
        f"{'kind':<14}{by:<{width}}{'n':>5}{'|err|':>8}{'bias':>8}{'worst':>8}  worst test row"
    ]
    for g in groups:
        lines.append(f"{g.kind:<14}{g.value:<{width}}{g.test.rows:>5}"
                     f"{_pct(g.test.median_abs_error):>8}"
                     f"{_pct(g.test.median_signed_error, True):>8}"
                     f"{_pct(g.worst_abs_error):>8}  {g.worst_id}")  # fmt: skip
    if not groups:
        lines.append("(no simulated test rows)")
    lines.append(f"test rows of each kind by {by}"
                 + (" (the source: the id's first word, past a kind's tag)" if by == "family" else "")
                 + "; - = the rows name none; bias > 0: predicted faster than measured")  # fmt: skip
    return "\n".join(lines)


def _num(x: float) -> str:
    if x == 0:
        return "0"
    mag = math.floor(math.log10(abs(x)))
    if -3 <= mag < 6:
        return f"{x:.4g}"
    return f"{x:.3e}"


def format_table(results: list[RowResult], summary: list[KindSummary]) -> str:
    lines = [f"{'id':<52}{'use':<6}{'metric':<33}{'measured':>12}{'predicted':>12}{'error':>9}"]
    for r in results:
        use = r.use + ("*" if r.assumed else "")
        if r.predicted is None:
            lines.append(f"{r.id:<52}{use:<6}{r.metric:<33}{_num(r.measured):>12}{'-':>12}"
                         f"{'-':>9}  skipped: {r.skipped}")  # fmt: skip
        else:
            lines.append(f"{r.id:<52}{use:<6}{r.metric:<33}{_num(r.measured):>12}"
                         f"{_num(r.predicted):>12}{r.error:>+9.1%}")  # fmt: skip
    lines += ["", "use: test = nothing fitted or chosen against the row, fit = something was; "
              "* = some configuration fields are a reading (assumed)", "", summary_table(summary)]  # fmt: skip
    return "\n".join(lines)


def _pct(x: float | None, signed: bool = False) -> str:
    return "-" if x is None else (f"{x:+.1%}" if signed else f"{x:.1%}")


def summary_table(summary: list[KindSummary]) -> str:
    """Per kind: test rows (the bar), test rows with only the source's fields, fit rows."""
    lines = [
        f"{'':<12}{'':>5}{'test rows (out of sample)':^32}{'sourced':^18}{'fit rows':^18}".rstrip(),
        f"{'kind':<12}{'rows':>5}{'n':>5}{'|err|':>8}{'bias':>8}{'worst':>8}{'n':>5}{'|err|':>8}"
        f"{'bias':>8}{'n':>5}{'|err|':>8}{'bias':>8}{'bar':>6}  verdict  worst test row",
    ]
    sliced = False
    for s in summary:
        if s.slice and not sliced:
            lines.append("slices across the kinds above (their rows are counted there too):")
            sliced = True
        bar = f"{s.bar:.0%}" if s.bar is not None else "-"
        verdict = {True: "pass", False: "FAIL", None: "-"}[s.passed]
        if s.smoke and s.bar is not None:
            verdict = "smoke"
        lines.append(
            f"{s.kind:<12}{s.rows:>5}{s.test.rows:>5}{_pct(s.test.median_abs_error):>8}"
            f"{_pct(s.test.median_signed_error, True):>8}{_pct(s.worst_abs_error):>8}"
            f"{s.sourced.rows:>5}{_pct(s.sourced.median_abs_error):>8}"
            f"{_pct(s.sourced.median_signed_error, True):>8}{s.fit.rows:>5}"
            f"{_pct(s.fit.median_abs_error):>8}{_pct(s.fit.median_signed_error, True):>8}"
            f"{bar:>6}  {verdict:<7}  {s.worst_id}"
        )
    lines.append(
        "|err|: median absolute error; bias: median error signed by speed (> 0: predicted "
        "faster than measured); the bar applies to the test rows, and a kind passes where their "
        f"|err| is within it and their bias within +-{BIAS_BAR:.0%}; moe = the LLM rows on "
        "mixture-of-experts models, train-dense = the training rows on dense ones"
        + ("; --fast runs a few rows per kind: a smoke check, no verdict" if any(
            s.smoke for s in summary) else "")
    )  # fmt: skip
    return "\n".join(lines)


def validate(
    data: Path | str = DEFAULT_DATA,
    kinds: Iterable[str] | None = None,
    fast: bool = False,
    progress: bool = False,
    ids: Iterable[str] | None = None,
    workers: int | None = None,
) -> tuple[list[RowResult], list[KindSummary]]:
    """Run the rows of ``kinds`` whose id matches a glob of ``ids`` (``select``; ``progress``: a
    bar on a terminal's stderr) in ``workers`` processes (``run_rows``; None: every core)."""
    from sim.studies.progress import Progress

    every = load_rows(data)
    rows = select(every, kinds, fast, ids)
    by_id = {r["id"]: r for r in every}
    ratios = [r for r in rows if r["kind"] == "ratio"]
    plain = [r for r in rows if r["kind"] != "ratio"]
    # the member rows of the ratio rows that were not selected themselves run beside them
    chosen = {r["id"] for r in plain}
    members = [by_id[i] for i in dict.fromkeys(i for r in ratios for i in r.get("of", ()))
               if i in by_id and i not in chosen and by_id[i]["kind"] != "ratio"]  # fmt: skip
    bar = Progress(len(rows) + len(members), progress, "rows")
    ran = run_rows(plain + members, workers, bar)
    bar.update(len(ratios))
    bar.close()
    results = ran[: len(plain)]
    if ratios:
        done = {r.id: r for r in ran}
        ratio_results = [ratio_row(r, by_id, done) for r in ratios]
        order = {r["id"]: i for i, r in enumerate(rows)}
        results = sorted(results + ratio_results, key=lambda r: order[r.id])
    # rows picked by id are a sample, not a kind: reported without a verdict, as --fast
    return results, summarise(results, smoke=fast or bool(ids), subset=bool(kinds) or bool(ids))


def _speed(metric: str, value: float) -> float:
    """A measurement as a speed: a time inverted, a rate as it is."""
    return 1.0 / value if metric.endswith("_s") and not metric.endswith("_per_s") else value


def ratio_row(row: dict, by_id: dict[str, dict], done: dict[str, RowResult]) -> RowResult:
    """A ``ratio`` row: the speed of its second member row over its first (``of``), measured and
    predicted; the members are run here unless ``done`` has them."""
    res = RowResult(id=row["id"], kind="ratio", metric="speedup", measured=float(row["measured"]),
                    source=row.get("source", ""), use=row.get("use", "test"),
                    assumed=tuple(row.get("assumed", ())), **_labels(row))  # fmt: skip
    members = []
    for rid in row["of"]:
        if rid not in by_id:
            res.skipped = f"ratio member {rid!r} is not a row"
            return res
        members.append(done.get(rid) or run_row(by_id[rid]))
    a, b = members
    res.moe = a.moe or b.moe
    if a.predicted is None or b.predicted is None:
        res.skipped = f"a member was not simulated ({a.skipped or b.skipped})"
        return res
    res.predicted = _speed(b.metric, b.predicted) / _speed(a.metric, a.predicted)
    res.detail = {"what": row.get("what", ""), "of": list(row["of"])}
    return res


def read_baseline(path: Path | str) -> dict:
    """An earlier run's ``validate --json`` or ``--report`` file: its summary and rows.
    ConfigError, one line naming --baseline, when it is not one."""
    import json

    text = files.read_text(path, "--baseline")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--baseline {path}: not JSON ({exc.msg}, line {exc.lineno}); give "
                          "the output of roofsim validate --json or --report") from None  # fmt: skip

    def listed(key: str, field_: str) -> bool:  # a list of objects, each with this field
        items = data.get(key) if isinstance(data, dict) else None
        return isinstance(items, list) and all(isinstance(x, dict) and field_ in x for x in items)

    if not (listed("summary", "kind") and listed("rows", "id")):
        raise ConfigError(f"--baseline {path}: no 'summary' and 'rows' of a validation run; "
                          "give the output of roofsim validate --json or --report")  # fmt: skip
    return data


def compare_baseline(
    baseline: dict, results: list[RowResult], summary: list[KindSummary], moved_by: float = 0.005
) -> dict:
    """This run against ``baseline`` (``read_baseline``), as a change's commit message reports
    it: each kind's (and slice's) median |error| and bias before and after over the test rows
    both runs simulated (the same rows on both sides, so a run of a few ids compares those), and
    the rows whose error signed by speed moved by at least ``moved_by``, each toward its
    measurement (a smaller |error|) or away. Rows only this run has are counted, not compared."""
    was = {r["id"]: r.get("faster") for r in baseline["rows"]}
    paired = {r.id: (was[r.id], r.faster) for r in results
              if isinstance(was.get(r.id), int | float) and r.faster is not None}  # fmt: skip

    def medians(values: list[float]) -> list[float | None]:
        if not values:
            return [None, None]
        return [statistics.median(abs(v) for v in values), statistics.median(values)]

    out_kinds = []
    for s in summary:
        inside = SLICES[s.kind][0] if s.slice else (lambda r, k=s.kind: r.kind == k)
        pairs = [paired[r.id] for r in results if r.use == "test" and inside(r) and r.id in paired]
        (e0, b0), (e1, b1) = medians([p[0] for p in pairs]), medians([p[1] for p in pairs])
        out_kinds.append({"kind": s.kind, "test_rows": len(pairs), "median_abs_error": [e0, e1],
                          "median_signed_error": [b0, b1]})  # fmt: skip
    moved = []
    for r in results:
        if r.id in paired and abs(paired[r.id][1] - paired[r.id][0]) >= moved_by:
            before, now = paired[r.id]
            moved.append({"id": r.id, "kind": r.kind, "use": r.use, "before": before,
                          "after": now, "toward": abs(now) < abs(before)})  # fmt: skip
    moved.sort(key=lambda m: (m["kind"], m["id"]))
    return {
        "kinds": out_kinds,
        "moved": moved,
        "new_rows": sum(1 for r in results if r.id not in was),
        "moved_by": moved_by,
    }


def format_baseline(diff: dict, name: str) -> str:
    """``compare_baseline`` as text: the kinds whose test rows changed, then the rows moved."""
    lines = [f"against {name} (test rows; bias signed by speed, > 0: predicted faster):",
             f"{'kind':<14}{'rows':>9}{'|err| before -> after':>26}{'bias before -> after':>26}"]  # fmt: skip
    for k in diff["kinds"]:
        (e0, e1), (b0, b1) = k["median_abs_error"], k["median_signed_error"]
        if (e0, b0) == (e1, b1):
            continue
        lines.append(f"{k['kind']:<14}{k['test_rows']:>9}{_pct(e0):>12} -> {_pct(e1):<9}"
                     f"{_pct(b0, True):>14} -> {_pct(b1, True)}")  # fmt: skip
    if len(lines) == 2:
        lines.append("(no kind's test rows changed)")
    moved = diff["moved"]
    toward = sum(m["toward"] for m in moved)
    lines.append(f"{len(moved)} row(s) moved by {diff['moved_by']:.1%} or more: {toward} toward "
                 f"their measurement, {len(moved) - toward} away"
                 + (f"; {diff['new_rows']} row(s) not in the baseline" if diff["new_rows"] else ""))  # fmt: skip
    for m in moved:
        lines.append(f"  {m['id']:<62} {m['kind']:<12} {m['use']:<4} {m['before']:+.1%} -> "
                     f"{m['after']:+.1%}  {'toward' if m['toward'] else 'away'}")  # fmt: skip
    return "\n".join(lines)


def write_report(path: Path | str, results: list[RowResult], summary: list[KindSummary]) -> None:
    report = {
        "summary": [s.to_dict() for s in summary],
        "rows": [r.to_dict() for r in results],
    }
    files.write_text(path, files.dumps(report, indent=1) + "\n", "--report")
