"""Serving simulation: a request stream through continuous-batching engines, on the simpy clock.

Each replica is a continuous-batching server (vLLM / Orca style, Yu et al. OSDI'22): every
iteration runs one forward pass over the batch it has formed right then, and its time is the
per-op roofline of exactly that batch (``IterationCost``). The KV cache is paged (Kwon et al.
SOSP'23, vLLM): blocks of ``block_size`` tokens out of what memory leaves after the weights.

Scheduling, as the servers do it:
- prefill-first (vLLM's default without chunked prefill): when requests wait and their prompt
  blocks fit (keeping a 1 % watermark of blocks free), the iteration prefills as many as fit in
  ``max_num_batched_tokens`` and ``max_num_seqs``; decoding sequences wait that iteration;
- chunked prefill (Sarathi-Serve, Agrawal et al. OSDI'24; vLLM's ``enable_chunked_prefill``):
  every iteration decodes all running sequences first and fills the rest of the token budget
  with prompt chunks, oldest request first; under a runtime that keeps them apart
  (``Runtime.mixed_prefill`` false: SGLang) an iteration is prompt chunks up to the budget,
  whenever one is under way or a waiting prompt fits, or else a decode of the running ones;
- when a decode step needs a block and none is free, the most recently admitted sequence is
  preempted: its blocks are freed and it is recomputed later (vLLM's recompute mode).
A router sends each arrival to the replica with the fewest requests in it (or round-robin).

Metrics: time to first token (TTFT), time per output token after the first (TPOT), end-to-end
latency, throughput, goodput under an SLO, KV-cache occupancy over time, and MFU / MBU over the
run (model FLOPs and HBM bytes of every iteration over run time x chips x datasheet peaks).

NB (deliberate approximations):
- An iteration's ops run back to back on the replica. The host time between iterations is the
  runtime's (``workloads.runtime``): its scheduler and server per step and per sequence in the
  iteration (a prompt chunk is one sequence) on the critical path, its output processing either
  added or, where asynchronous, exposed only where longer than the iteration. The default
  runtime has none (servers with CUDA graphs and async scheduling hide most of it).
  Where output processing is asynchronous (vLLM 0.6 V0) the tokens of an iteration reach the
  client after the next iteration's scheduling (``IterationCost.emit_delay``): TTFT and the
  end-to-end latency carry that host interval, TPOT does not. The HTTP server, tokenizer and
  detokenizer's own time per request is not modelled.
- Decode attention over sequences of different lengths is costed as the batch at the mean
  length, interpolated between grid points 1/16 of an octave apart, and above 64 sequences
  between batch sizes on a 1/32-octave grid (a speculative drafter's proposals too); GEMM-side
  costs above 512 token rows are interpolated on a 1/32-octave grid. An iteration stays within
  ~1 % of exact (tested; one grid interval can hold a kernel's jump, e.g. the split of
  DeepSeek-V3's MLA decode between 66 and 67 sequences, which it then spreads over the interval).
- Prompt chunks in one iteration share one variable-length attention launch per layer.
- For MLA models every token goes through the absorbed (decode) projections.
- Disaggregated (``prefill_replicas`` > 0): prefill replicas hand each request on after its
  first token; its KV cache crosses the inter-node link (each TP rank its shard, not overlapped
  with the prefill) and a decode replica admits it when its blocks fit. The least-loaded decode
  replica takes it whatever the router.
- Chips run in the steady state: each op at the clock the chip's power limit allows
  (``hardware.power``); memory-bound decode iterations draw less and keep their clock. Energy is
  the chips' idle power over the whole run (a chip waiting for requests holds its floor) plus
  every iteration's dynamic energy.
"""

from __future__ import annotations

import heapq
import math
import operator
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from hardware.chip import System
from hardware.units import format_si
from sim.cost.chips import ChipArrays
from sim.cost.html import Item, percent, rate_text, summary_fragment
from sim.cost.result import CapacityError, overrides_line
from sim.cost.roofline import cost_table
from workloads.llm import _Lowering
from workloads.model import ModelConfig
from workloads.ops import Op, OpKind
from workloads.runtime import launch
from workloads.serving import LengthDist, Requests, Serving

_HEAD_OPS = ("lm_head", "logits_all_gather", "sampler")  # the final norm runs over every row
#: ops whose cost follows the attention's context (the eager score matrix, a concatenating
#: cache's copies, repeat_kv's expanded K/V): costed with the attention, per context
_CONTEXT_OPS = ("attn_scores_eager", "kv_concat", "repeat_kv")


def _context_op(op: Op) -> bool:
    """One of ``_CONTEXT_OPS``, under its plain or its layer-group name (``moe.kv_concat``)."""
    return op.name.rsplit(".", 1)[-1] in _CONTEXT_OPS


_EXACT_ROWS = 512  # token rows costed exactly; above, on a 1/32-octave grid
_EXACT_SEQS = 64  # decoding sequences whose attention is costed exactly; above, the same grid
_WATERMARK = 0.01  # vLLM keeps 1 % of KV blocks free when admitting prompts


def _watermark(blocks: int) -> int:
    """The blocks a replica of ``blocks`` keeps free when it admits a prompt."""
    return max(1, int(_WATERMARK * blocks)) if blocks > 100 else 0


@dataclass(frozen=True, slots=True)
class Work:
    """Time and the work done in it, for one piece of an iteration on one replica's chip."""

    time_s: float  # a piece's chip time (its launches apart, in launch_s); an iteration's all
    model_flops: float  # over the replica's chips
    hbm_bytes: float  # per chip
    energy_j: float = 0.0  # dynamic energy per chip (idle power not included)
    launch_s: float = 0.0  # host time of the kernel launches (an eager runtime's)
    kernels: float = 0.0  # kernel launches (what an eager step's host pays per kernel)

    def __add__(self, o: Work) -> Work:
        return Work(
            self.time_s + o.time_s, self.model_flops + o.model_flops,
            self.hbm_bytes + o.hbm_bytes, self.energy_j + o.energy_j, self.launch_s + o.launch_s,
            self.kernels + o.kernels,
        )  # fmt: skip

    def scale(self, f: float) -> Work:
        return Work(self.time_s * f, self.model_flops * f, self.hbm_bytes * f, self.energy_j * f,
                    self.launch_s * f, self.kernels * f)  # fmt: skip


_ZERO = Work(0.0, 0.0, 0.0)


def _lerp(a: Work, b: Work, f: float) -> Work:
    return a.scale(1.0 - f) + b.scale(f)


def _grid(x: float, exact: int, per_octave: int) -> tuple[int, int, float]:
    """Grid points below and above ``x`` and the interpolation weight (exact below ``exact``)."""
    if x <= exact:
        lo = int(x)
        return lo, lo + 1, x - lo
    step = 2 ** max(0, math.floor(math.log2(x)) - int(math.log2(per_octave)))
    lo = int(x // step) * step
    return lo, lo + step, (x - lo) / step


class IterationCost:
    """The time of one engine iteration from the per-op roofline of the batch it runs.

    An iteration over ``rows`` token rows (decode tokens plus prompt-chunk tokens) costs the
    GEMM/norm/collective ops at ``rows`` rows, the LM head at the rows that sample a token, the
    decode attention of the running sequences over their cached context, and one causal
    attention per prompt chunk over its prefix. Each piece is memoised.
    """

    def __init__(self, serving: Serving, system: System) -> None:
        self.w, self.system, self.chip = serving, system, system.chip
        self.chips = ChipArrays.of(system)
        self.n_layers = serving.model.n_layers
        self.tp = serving.tp
        # speculative decoding: each decoding sequence runs q = k + 1 rows through the check
        self.spec = serving.spec
        self.q = 1 + (serving.spec.tokens if serving.spec else 0)
        self._by_rows: dict[tuple[int, bool], Work] = {}
        self._heads: dict[int, Work] = {}
        self._dec: dict[tuple[int, int], Work] = {}
        self._dec_mixed: dict[tuple[int, int], Work] = {}
        # whether a step's prompt chunks change how its decode rows attend: only where the
        # attention may run vLLM's Triton kernel (``Attention.mixed``)
        kernel = serving.attention_kernel or "native"
        self._unified = kernel == "triton" or bool(
            serving.runtime.kernel_for_sinks(serving.model.attention_sinks, kernel)
        )
        self._pre: dict[tuple[int, int], Work] = {}
        # a step with prompt rows: the engines run those through MLA's prefill path (vLLM 0.7
        # and SGLang split a step's decode and prompt tokens), so neither the decode path's
        # premultiplied projections nor its extra launches (``mla_absorb``,
        # ``mla_decode_kernels``) are charged to it (NB: nor to its decode rows' share)
        self._prompt_runtime = replace(serving.runtime, mla_absorb="bmm", mla_decode_kernels=())
        self._draft: dict[tuple[int, int], Work] = {}
        # a drafter that is a model (mtp: one block of the target) also prefills every prompt,
        # to hold its own cache: costed as a serving of it over the chunks' rows
        dm = serving.spec.draft_model(serving.model) if serving.spec is not None else None
        self._drafter = None if dm is None else IterationCost(
            replace(serving, model=dm, spec=None, ep=serving.ep if dm.moe else 1), system
        )  # fmt: skip

    def _cost(self, ops: tuple[Op, ...] | list[Op], count: int = 1) -> Work:
        """The chip's time for ``ops`` and, apart, their launches' host time: an iteration's
        pieces are costed one by one, and the host runs ahead of the chip over all of them
        (``iteration``; ``sim.cost.roofline._host_floor`` within one list of ops)."""
        if not ops:
            return _ZERO
        launch = sum(op.host_s * op.count for op in ops if op.kernels > 0) * count
        kernels = sum(op.kernels * op.count for op in ops if op.kernels > 0) * count
        table = cost_table([replace(op, host_s=0.0) if op.kernels > 0 else op for op in ops],
                           self.chips)  # fmt: skip
        n = [float(op.count) for op in ops]
        t = sum((table.time[:, 0] * n).tolist()) * count
        flops = sum(op.model_flops * op.count for op in ops) * count * self.tp
        hbm = sum((table.main_bytes[:, 0] * n).tolist()) * count
        energy = sum((table.energy[:, 0] * n).tolist()) * count
        return Work(t, flops, hbm, energy, launch, kernels)

    def _rows(self, rows: int, prompts: bool = False) -> Work:
        """Every op but attention and the LM head at ``rows`` token rows; ``prompts``: the
        step carries prompt rows, so its MLA runs the prefill path's projections
        (``_prompt_runtime``)."""
        got = self._by_rows.get((rows, prompts))
        if got is None:
            ops = self._lowered(rows, prompts)
            body = [
                o
                for o in ops
                if o.kind != OpKind.ATTENTION
                and o.name not in _HEAD_OPS
                and o.name != "host_step"
                and not _context_op(o)
            ]  # the host's time is per sequence: iteration()
            if not prompts:  # the decode path's head, while its lowering is at hand
                self._head_at(rows, ops)
            got = self._by_rows[rows, prompts] = self._cost(body)
        return got

    def _lowered(self, rows: int, prompts: bool = False) -> list[Op]:
        engine = self.w.engine(batch=rows)
        if prompts:
            engine = replace(engine, runtime=self._prompt_runtime)
        return engine.lower().ops

    def _head_at(self, rows: int, ops: list[Op] | None = None) -> Work:
        """The LM head's ops at ``rows`` sampled rows (of the decode path's lowering), memoised
        apart from the body: an iteration samples a count of rows its body rarely has."""
        got = self._heads.get(rows)
        if got is None:
            ops = ops if ops is not None else self._lowered(rows)
            got = self._heads[rows] = self._cost([o for o in ops if o.name in _HEAD_OPS])
        return got

    def linear(self, rows: int, prompts: bool = False) -> Work:
        """Every op but attention and the LM head, over ``rows`` token rows (``prompts``: some
        are prompt rows, ``_rows``)."""
        if rows <= 0:
            return _ZERO
        lo, hi, f = _grid(rows, _EXACT_ROWS, 32)
        if f == 0.0:
            return self._rows(lo, prompts)
        return _lerp(self._rows(lo, prompts), self._rows(hi, prompts), f)

    def head(self, rows: int) -> Work:
        """LM head and logits gather for the ``rows`` sequences that sample a token."""
        return self._head_at(rows) if rows > 0 else _ZERO

    def _attention(self, batch: int, q: int, kv: int, phase: str, mixed: bool = False) -> Work:
        """``batch`` sequences' attention (``mixed``: decode rows in one call with prompt chunks,
        ``Attention.mixed``) with the context ops beside it, over every layer."""
        low = _Lowering(self.w.engine(batch=batch), q_len=q, kv_len=kv, phase=phase)
        # the breaks of a piecewise graph are the iteration's (one attention call per layer for
        # all its sequences and chunks: ``iteration``)
        runtime = replace(self.w.runtime, piecewise_break_s=0.0)
        total = _ZERO
        for block, layers in low.attention_blocks():  # full-attention and sliding layers
            ops = [
                o
                for o in block
                if o.kind == OpKind.ATTENTION
                or _context_op(o)
                or (phase == "prefill" and o.name.startswith("kv_b_proj"))  # and its quant kernel
            ]  # with their launches' host time, as the step's lowering gives its other ops
            if mixed:
                ops = [replace(o, attention=replace(o.attention, mixed=True)) if o.attention
                       else o for o in ops]  # fmt: skip
            total = total + self._cost(launch(ops, runtime), count=layers)
        return total

    def _over_context(self, memo: dict[tuple[int, int], Work], n: int, mean_context: float,
                      cost: Callable[[int, int], Work]) -> Work:  # fmt: skip
        """``cost(n, ctx)`` at a mean context of ``mean_context`` tokens: memoised in ``memo`` on
        a 1/16-octave grid of contexts and, above ``_EXACT_SEQS`` sequences, a 1/32-octave grid
        of ``n``, and interpolated between the nearest points."""
        lo, hi, f = _grid(mean_context, 64, 16)
        lo = max(lo, 1)
        n_lo, n_hi, g = _grid(n, _EXACT_SEQS, 32)

        def at(b: int, ctx: int) -> Work:
            if (b, ctx) not in memo:
                memo[(b, ctx)] = cost(b, ctx)
            return memo[(b, ctx)]

        def over(b: int) -> Work:
            return at(b, lo) if f == 0.0 else _lerp(at(b, lo), at(b, hi), f)

        return over(n_lo) if g == 0.0 else _lerp(over(n_lo), over(n_hi), g)

    def decode_attention(self, n: int, mean_context: float, mixed: bool = False) -> Work:
        """Attention of ``n`` decoding sequences whose cached context (incl. the new token)
        averages ``mean_context`` tokens; a speculative check runs q tokens per sequence over
        the context and the drafts; ``mixed``: in a step that also carries prompt chunks."""
        if n <= 0:
            return _ZERO
        memo = self._dec_mixed if mixed else self._dec
        return self._over_context(memo, n, mean_context, lambda b, ctx: self._attention(
            b, self.q, ctx + self.q - 1, "decode", mixed))  # fmt: skip

    def draft(self, n: int, mean_context: float) -> Work:
        """The drafter's k proposals for ``n`` decoding sequences (speculative decoding; zero
        without it, or for n-gram lookup), at their mean cached context."""
        if n <= 0 or self.spec is None:
            return _ZERO

        def proposals(b: int, ctx: int) -> Work:
            return self._cost(
                replace(self.w.engine(batch=b), context=ctx, spec=self.spec).drafter()[0]
            )

        return self._over_context(self._draft, n, mean_context, proposals)

    def _chunk(self, q: int, kv: int) -> Work:
        """One prompt chunk's causal attention (q new tokens over kv), memoised."""
        got = self._pre.get((q, kv))
        if got is None:
            got = self._pre[q, kv] = self._attention(1, q, kv, "prefill")
        return got

    def prefill_attention(self, chunks: list[tuple[int, int]]) -> Work:
        """Causal attention of prompt chunks (q new tokens over kv = prefix + q), one launch."""
        if not chunks:
            return _ZERO
        if len(chunks) == 1:
            return self._chunk(*chunks[0])  # one chunk: one launch, nothing to take off
        total = _ZERO
        for q, kv in chunks:
            total = total + self._chunk(q, kv)
        # one variable-length launch per layer, not one per chunk
        saved = (len(chunks) - 1) * self.n_layers * self.chip.kernel_overhead_s
        # and one launch's host time: every chunk's launches are the same kernels
        k = len(chunks)
        return Work(total.time_s - saved, total.model_flops, total.hbm_bytes, total.energy_j,
                    total.launch_s / k, total.kernels / k)  # fmt: skip

    def iteration(
        self, n_decode: int, decode_context: int, chunks: list[tuple[int, int]], sampled: int
    ) -> Work:
        """One iteration: ``n_decode`` sequences decode with ``decode_context`` cached tokens in
        all (including the token each writes now), plus prompt ``chunks``; ``sampled`` rows go
        through the LM head."""
        # with speculation each decoding sequence checks q tokens: q rows, q logits
        rows = n_decode * self.q + sum(q for q, _ in chunks)
        heads = sampled + n_decode * (self.q - 1)
        lin, head = self.linear(rows, prompts=bool(chunks)), self.head(heads)
        mixed = bool(chunks) and self._unified
        att = (self.decode_attention(n_decode, decode_context / n_decode, mixed=mixed)
               if n_decode else _ZERO)  # fmt: skip
        if self.spec is not None and n_decode:
            # model FLOPs count the tokens a check keeps (Decode.lower): of its q rows per
            # sequence, the mean accepted
            lost = n_decode * (self.q - self.spec.tokens_per_step)
            lin = replace(lin, model_flops=lin.model_flops * (1 - lost / rows))
            head = replace(head, model_flops=head.model_flops * (1 - lost / heads))
            att = replace(att, model_flops=att.model_flops * self.spec.tokens_per_step / self.q)
        w = lin + head + att
        if n_decode:
            w = w + self.draft(n_decode, decode_context / n_decode)
        if chunks and self._drafter is not None:  # the drafter's prefill: no model FLOPs
            d = self._drafter
            pre = d.linear(sum(q for q, _ in chunks), prompts=True) + d.prefill_attention(chunks)
            w = w + replace(pre, model_flops=0.0)
        w = w + self.prefill_attention(chunks)
        # the runtime's host work per step: its scheduler per sequence in it (not per token
        # row), once per multi-step group only without prompts; output processing and the
        # server per sampled sequence; the part that runs beside the chip (asynchronous output
        # processing) shows only where longer
        host, beside = self.w.runtime.host_step_s(
            n_decode + len(chunks), sampled, decode_only=not chunks
        )
        # the launches run ahead of the chip: the chip waits only for the part of their host
        # time its own time does not cover (an eager runtime; 0 under CUDA graphs). A runtime
        # that graphs decode steps only runs an iteration with prompt chunks eager
        launch = w.launch_s
        runtime = self.w.runtime
        graphed = runtime.graphed(
            prompts=bool(chunks), tokens=rows, tp=self.tp, sequences=n_decode + len(chunks)
        )
        if runtime.graphed() and not graphed:  # decode-only graphs, or more rows than captured
            launch = w.kernels * runtime.host_launch_s
        elif graphed:
            # a piecewise graph: one eager attention call per layer (vLLM V1's varlen call
            # covers the decodes and the prompt chunks alike)
            launch = launch + self.n_layers * runtime.break_s(prompts=bool(chunks))
        busy = max(w.time_s, launch)
        wait = host + max(0.0, beside - busy)
        return Work(busy + wait, w.model_flops, w.hbm_bytes, w.energy_j)

    def emit_delay(self, sequences: int) -> float:
        """Seconds from the end of an iteration to its tokens leaving the engine: with
        asynchronous output processing (``Runtime.async_output``, vLLM 0.6-0.7 V0) step n's
        outputs are processed by a callback inside step n+1, after that step's scheduling and
        input preparation and the launch of its forward (vllm/engine/llm_engine.py step() and
        the model runner's async_callback), so every token, the first among them, leaves one
        such host interval late; estimated as a decode step's over the ``sequences`` just
        sampled. Without it the outputs are processed at the end of their own step (0)."""
        runtime = self.w.runtime
        if not runtime.async_output or sequences <= 0:
            return 0.0
        return float(runtime.host_step_s(sequences, decode_only=True)[0])


def _sampling_text(w: dict, sep: str = " ") -> str:
    """The sampling mode where it is not greedy (the default), for a run's title."""
    return f"{sep} sampling {w['sampling']}" if "sampling" in w else ""


def _spec_text(w: dict, sep: str = " ") -> str:
    """The speculative decoding of a serve run, for its header ('' without)."""
    if "spec_tokens" not in w:
        return ""
    return (f"{sep} speculative: {w['spec_tokens']} drafts ({w['draft']}), "
            f"{w['tokens_per_step']:g} tokens a step")  # fmt: skip


def _windowed(m: ModelConfig) -> bool:
    """Some layers slide and some attend to everything: the paged blocks hold the latter's
    cache. NB: a model whose every layer slides (Mistral-7B v0.1) keeps the linear count of a
    full cache, an upper bound past the window."""
    return bool(m.sliding_layers and m.full_attention_layers)


def _kv_token_bytes(m: ModelConfig, serving: Serving) -> float:
    """A chip's cache bytes of one token over all of ``m``'s layers (an MLA latent is
    replicated, K/V heads shard over TP)."""
    shard = 1 if m.mla is not None else min(serving.tp, m.n_kv_heads)
    return m.kv_elements_per_token() * serving.kv_bytes / shard


def _paged_token_bytes(m: ModelConfig, serving: Serving) -> float:
    """What one token takes of the paged blocks: every layer's cache, or only the
    full-attention layers' where others slide (each sequence takes its window's blocks beside:
    ``window_blocks``)."""
    per_token = _kv_token_bytes(m, serving)
    return per_token / m.n_layers * m.full_attention_layers if _windowed(m) else per_token


def sliding_kv_bytes(serving: Serving, tokens: float) -> float:
    """A chip's bytes of one sequence's sliding-window layers' cache at ``tokens`` tokens (0
    where no layer slides beside full ones: those are counted in the blocks)."""
    m = serving.model
    if not _windowed(m):
        return 0.0
    per_layer = _kv_token_bytes(m, serving) / m.n_layers
    return per_layer * m.sliding_layers * min(tokens, m.sliding_window)


def kv_capacity_blocks(serving: Serving, system: System) -> tuple[int, float]:
    """(KV blocks per replica, KV bytes per token per chip) after weights and the workspace.

    Raises CapacityError when the weights and workspace leave no room for one block.
    """
    chip = system.chip
    m = serving.model
    budget = chip.main_memory.capacity_bytes * serving.memory_fraction
    weights = serving.resident_weight_bytes()
    # the activation workspace of the largest iteration (vLLM profiles this at start-up)
    # (with speculation each sequence's check runs and scores q = k + 1 positions)
    q = 1 + (serving.spec.tokens if serving.spec is not None else 0)
    rows = serving.token_budget + serving.max_num_seqs * q
    widest = max(3 * m.hidden, (3 if m.gated_mlp else 2) * m.ffn // serving.tp)
    workspace = (rows * widest * serving.act_bytes
                 + serving.max_num_seqs * q * m.vocab / serving.tp * 4)  # fmt: skip
    # blocks are counted in the full-attention layers' cache; a sequence's sliding-window
    # layers keep only their window (vLLM V1's hybrid KV cache manager, 0.10+, frees the blocks
    # that leave it) and take that from the same pool while it runs (``window_blocks``)
    per_token = _paged_token_bytes(m, serving)
    draft = serving.spec.draft_model(m) if serving.spec is not None else None
    if draft is not None:  # the drafter's weights, and its own cache beside each token's
        weights += replace(serving.engine(batch=1), context=1, spec=serving.spec).drafter()[1]
        per_token += _paged_token_bytes(
            draft, serving
        )  # NB: a windowed drafter's window is not counted
    # the engine's memory outside its tensors (CUDA context, NCCL buffers) comes off the budget;
    # TensorRT-LLM's fraction is of the memory left once those are loaded; SGLang's holds the
    # weights and the KV pool, its activations and graph buffers reserved outside it
    static = serving.runtime.memory_fraction_of == "static"
    if serving.runtime.memory_fraction_of == "free":
        left = chip.main_memory.capacity_bytes - weights - workspace
        free = (left - serving.runtime.non_torch(serving.tp)) * serving.memory_fraction
    elif static:  # the activation workspace is reserved outside SGLang's fraction
        free = budget - weights - serving.runtime.non_torch(serving.tp)
    else:
        free = budget - weights - workspace - serving.runtime.non_torch(serving.tp)
    blocks = int(free // (per_token * serving.block_size)) if free > 0 else 0
    # room for one token's block, and its sliding layers' share
    if blocks < 1 + window_blocks(serving, 1):
        taken = "" if static else f" and {format_si(workspace, 'B')} of workspace"
        fix = "" if static else ", or a smaller --max-batched-tokens"
        raise CapacityError(
            f"does not fit: {m.name} needs {format_si(weights, 'B')} of weights{taken} per "
            f"chip, leaving no KV cache in {serving.memory_fraction:.0%} of {chip.name}'s "
            f"{format_si(chip.main_memory.capacity_bytes, 'B')}; use a larger --tp or a lower "
            f"--dtype{fix}"
        )
    return blocks, per_token


def window_blocks(serving: Serving, tokens: float) -> float:
    """The blocks, in units of a full-attention layers' block and fractional where the sliding
    layers are not as many as the full ones, that a sequence of ``tokens`` tokens holds for its
    sliding-window layers: the window's, and the block being filled past it (0 where no layer
    slides beside full ones)."""
    m = serving.model
    if not _windowed(m):
        return 0.0
    bs = serving.block_size
    held = -(-min(tokens, m.sliding_window + bs) // bs)
    # in 1/1024ths of a block (a dyadic fraction: sums and differences of them are exact, so
    # a replica's count returns to 0 and never drifts across a comparison)
    return round(held * m.sliding_layers / m.full_attention_layers * 1024) / 1024


# ---- the engine ------------------------------------------------------------------------------


_load = operator.attrgetter("load")  # a replica's requests in flight (the routers' key)


class _Stats:
    """Run-wide tallies shared by the replicas."""

    def __init__(self, n: int) -> None:
        self.first_token_s = np.full(n, np.nan)
        self.finish_s = np.full(n, np.nan)
        self.preemptions = 0
        self.iterations = 0
        self.model_flops = 0.0
        self.hbm_bytes = 0.0  # per chip, summed over replicas
        self.energy_j = 0.0  # dynamic, per chip, summed over replicas
        self.busy_s = 0.0  # replica-seconds of iterations
        self.decode_rows = 0  # sequence-iterations of decode (mean batch = this / decode its)
        self.decode_iterations = 0
        self.in_system = 0
        self.in_system_area = 0.0  # integral of requests in system over time
        self.last_change_s = 0.0
        self.used_blocks = 0  # KV blocks in use over all replicas
        self.kv_t: list[float] = []
        self.kv_used: list[float] = []
        self.kv_transfer_s = 0.0  # disaggregated: KV cache transfers, summed
        self.kv_transfers = 0

    def change_in_system(self, now: float, delta: int) -> None:
        self.in_system_area += self.in_system * (now - self.last_change_s)
        self.last_change_s = now
        self.in_system += delta


class _Replica:
    """One continuous-batching engine: waiting queue, running sequences, paged KV blocks."""

    def __init__(self, env, idx: int, sim: _ServeRun, role: str = "both") -> None:
        self.env, self.idx, self.sim = env, idx, sim
        self.role = role  # both | prefill (hands each request on) | decode (takes them in)
        self.incoming: deque[int] = deque()  # decode role: prefilled requests waiting for blocks
        self.busy_s = 0.0
        w = sim.serving
        self.bs, self.total_blocks = w.block_size, sim.blocks
        self.watermark = _watermark(sim.blocks)
        self.waiting: deque[int] = deque()
        self.prefilling: dict[int, int] = {}  # rid -> prompt tokens done (chunked prefill)
        self.decoding: dict[int, tuple[int, int, int]] = {}  # rid -> (t0, c0, g0), by admission
        self.heap: list[tuple[int, int]] = []  # (finishing decode iteration, rid)
        self.it = 0  # decode iterations done
        self.cache_sum = 0  # cached tokens of the decoding sequences
        self.phase = [0] * self.bs  # decoding sequences needing a block when it % bs == p
        self.used = 0  # blocks in use
        self.generated: dict[int, int] = {}  # rid -> tokens emitted before a preemption
        self.wake = env.event()
        self.load = 0  # requests routed here and not finished
        # how long after an iteration its tokens reach the client: with asynchronous output
        # processing (vLLM 0.6 V0) step n's outputs are processed inside step n+1, after its
        # scheduling and input preparation (the next iteration's critical host time)
        self.emit_delay = 0.0
        # reserve-on-admit (TensorRT-LLM's GUARANTEED_NO_EVICT): a request takes the blocks of
        # its prompt and its whole output when admitted, so a running sequence never waits
        self.reserve = w.admission_policy == "reserve"
        self.reserved: dict[int, int] = {}
        # a sequence's sliding-window layers take their window's blocks from the same pool,
        # held from admission (for the length it will reach, at most the window) to its end
        self.windows: dict[int, float] = {}
        self.windowed = _windowed(w.model)
        # speculative decoding: a decode iteration advances each sequence by the mean tokens a
        # step yields (``Speculation.tokens_per_step``), a fluid count; the cache is then held
        # in fractional blocks (bytes / block bytes), allocated as it grows
        self.e = w.spec.tokens_per_step if w.spec is not None else 1.0
        self.fluid = w.spec is not None

    def _blocks(self, tokens: float) -> float:
        if self.fluid:
            return tokens / self.bs
        return -(-tokens // self.bs)

    def _finish_it(self, entry: tuple[int, int, int], rid: int) -> int:
        """The decode iteration that emits the last token of ``rid`` (``entry``: t0, c0, g0)."""
        t0, _, g0 = entry
        left = self.sim.output[rid] - g0
        return t0 + (math.ceil(left / self.e - 1e-9) if self.fluid else left)

    def _tokens_since(self, t0: int, rid: int, g0: int) -> float:
        """Tokens ``rid`` has generated in decode iterations since ``t0`` (at most its output
        less the ``g0`` it had)."""
        n = self.it - t0
        if not self.fluid:
            return n
        return min(n * self.e, self.sim.output[rid] - g0)

    def _alloc(self, blocks: float) -> None:
        self.used += blocks
        self.sim.stats.used_blocks += blocks

    # -- requests in and out -----------------------------------------------------------------
    def add(self, rid: int) -> None:
        self.waiting.append(rid)
        self.load += 1
        if not self.wake.triggered:
            self.wake.succeed()

    def _prefill_len(self, rid: int) -> int:
        return self.sim.prompt[rid] + self.generated.get(rid, 0)

    def _finish(self, rid: int, cache: int) -> None:
        self._alloc(-self.reserved.pop(rid) if self.reserve else -self._blocks(cache))
        self._alloc(-self.windows.pop(rid, 0.0))
        now = self.env.now
        self.sim.stats.finish_s[rid] = now + self.emit_delay
        self.generated.pop(rid, None)
        self.load -= 1
        done = self.sim.done.pop(rid, None)
        if self.emit_delay > 0:  # the client hears of it (and leaves) a little later
            self.env.process(self._later(done, self.emit_delay))
            return
        self.sim.stats.change_in_system(now, -1)
        if done is not None:
            done.succeed()

    def add_prefilled(self, rid: int) -> None:
        """Decode role: ``rid`` arrives with its KV cache from a prefill replica."""
        self.incoming.append(rid)
        self.load += 1
        if not self.wake.triggered:
            self.wake.succeed()

    def _take_incoming(self) -> None:
        """Decode role: admit arrived requests while their caches fit, each decoding at once."""
        while self.incoming:
            rid = self.incoming[0]
            if not self._can_admit(rid, len(self.decoding)):
                break
            self.incoming.popleft()
            self._admit(rid)
            self._start_decode(rid, self.it)

    def _later(self, done, delay: float):
        """A finished request's last token reaches its client ``delay`` later: it leaves the
        system then (and a closed-loop client sends its next request)."""
        yield self.env.timeout(delay)
        self.sim.stats.change_in_system(self.env.now, -1)
        if done is not None:
            done.succeed()

    def _handoff(self, rid: int) -> None:
        """Prefill role: the first token is out; send the KV cache to the decode pool."""
        st = self.sim.stats
        if math.isnan(st.first_token_s[rid]):
            st.first_token_s[rid] = self.env.now + self.emit_delay
        cache = self._prefill_len(rid)
        if self.sim.output[rid] <= 1:
            self._finish(rid, cache)
            return
        self.env.process(self._send(rid, cache))

    def _send(self, rid: int, cache: int):
        """The KV transfer: the cache's blocks stay here until it has arrived."""
        t = self.sim.kv_transfer_s(cache)
        yield self.env.timeout(t)
        self.sim.stats.kv_transfer_s += t
        self.sim.stats.kv_transfers += 1
        self._alloc(-self.reserved.pop(rid) if self.reserve else -self._blocks(cache))
        self._alloc(-self.windows.pop(rid, 0.0))
        self.load -= 1
        self.sim.to_decode(rid)
        if self.waiting and not self.wake.triggered:  # freed blocks may admit a waiting prompt
            self.wake.succeed()

    def _start_decode(self, rid: int, t0: int) -> None:
        """``rid`` finished its prefill (first token sampled): decode from iteration ``t0``."""
        if self.role == "prefill":
            self._handoff(rid)
            return
        st = self.sim.stats
        if math.isnan(st.first_token_s[rid]):
            st.first_token_s[rid] = self.env.now + self.emit_delay
        c0 = self._prefill_len(rid)
        g0 = self.generated.get(rid, 0) + 1
        out = self.sim.output[rid]
        if g0 >= out:
            self._finish(rid, c0)
            return
        self.decoding[rid] = (t0, c0, g0)
        self.cache_sum += c0
        if not self.fluid:
            self.phase[(t0 - c0) % self.bs] += 1
        heapq.heappush(self.heap, (self._finish_it((t0, c0, g0), rid), rid))

    def _drop_decode(self, rid: int) -> float:
        """Remove ``rid`` from the decoding set; returns its cached tokens now."""
        t0, c0, g0 = self.decoding.pop(rid)
        if self.fluid:  # the cache grew by e a decode iteration (cache_sum's count)
            self.cache_sum -= c0 + (self.it - t0) * self.e
            return c0 + self._tokens_since(t0, rid, g0)
        cache = c0 + self.it - t0
        self.cache_sum -= cache
        self.phase[(t0 - c0) % self.bs] -= 1
        return cache

    def _preempt_one(self) -> None:
        rid = next(reversed(self.decoding))
        t0, c0, g0 = self.decoding[rid]
        grown = (self.it - t0) * self.e if self.fluid else 0.0
        cache = self._drop_decode(rid)
        # fluid: free the blocks its growth took (e a decode iteration), not its token count
        self._alloc(-self._blocks(c0 + grown) if self.fluid else -self._blocks(cache))
        self._alloc(-self.windows.pop(rid, 0.0))
        self.generated[rid] = g0 + int(self._tokens_since(t0, rid, g0))
        self.waiting.appendleft(rid)
        self.sim.stats.preemptions += 1

    def _admission_blocks(self, rid: int) -> int:
        """Blocks taken at admission: the prompt's, or with ``reserve`` the whole request's."""
        if self.reserve:
            return self._blocks(self.sim.prompt[rid] + self.sim.output[rid])
        return self._blocks(self._prefill_len(rid))

    def _window_blocks(self, rid: int) -> float:
        """``rid``'s sliding-window blocks (``window_blocks``), for the length it will reach
        here: its prompt on a prefill replica (its cache leaves with its first token), its
        whole request elsewhere."""
        if not self.windowed:
            return 0.0
        sim = self.sim
        tokens = sim.prompt[rid] + (0 if self.role == "prefill" else sim.output[rid])
        return window_blocks(sim.serving, tokens)

    def _can_admit(self, rid: int, running: int) -> bool:
        if running >= self.sim.serving.max_num_seqs:
            return False
        watermark = 0 if self.reserve else self.watermark
        need = self._admission_blocks(rid) + self._window_blocks(rid)
        return self.used + need <= self.total_blocks - watermark

    def _admit(self, rid: int) -> None:
        blocks = self._admission_blocks(rid)
        self._alloc(blocks)
        if self.reserve:
            self.reserved[rid] = blocks
        window = self._window_blocks(rid)
        if window:
            self.windows[rid] = window
            self._alloc(window)

    # -- one iteration -------------------------------------------------------------------------
    def _plan(self) -> tuple[bool, list[tuple[int, int, int]]]:
        """(decode the running sequences?, prompt chunks as (rid, done before, tokens))."""
        w = self.sim.serving
        budget = w.token_budget
        running = len(self.decoding) + len(self.prefilling)
        chunks: list[tuple[int, int, int]] = []
        if not w.chunked_prefill:
            used_tokens = 0
            while self.waiting:
                rid = self.waiting[0]
                n = self._prefill_len(rid)
                if chunks and used_tokens + n > budget:
                    break
                if not self._can_admit(rid, running + len(chunks)):
                    break
                self.waiting.popleft()
                self._admit(rid)
                chunks.append((rid, 0, n))
                used_tokens += n
            return (not chunks), chunks
        # a decoding sequence's rows: 1, or with speculation the k + 1 its check runs; a runtime
        # that keeps prompt chunks out of decode steps (SGLang) runs a prefill batch of the whole
        # budget whenever a prompt is under way or fits, and decodes only when none does
        apart = not w.runtime.mixed_prefill
        left = budget if apart else budget - len(self.decoding) * self.sim.coster.q
        for rid, done in self.prefilling.items():
            if left <= 0:
                break
            n = min(left, self._prefill_len(rid) - done)
            chunks.append((rid, done, n))
            left -= n
        while left > 0 and self.waiting:
            rid = self.waiting[0]
            if not self._can_admit(rid, running):
                break
            self.waiting.popleft()
            total = self._prefill_len(rid)
            self._admit(rid)
            self.prefilling[rid] = 0
            running += 1
            n = min(left, total)
            chunks.append((rid, 0, n))
            left -= n
        return not (apart and chunks), chunks

    def run(self):
        env, st, coster = self.env, self.sim.stats, self.sim.coster
        chunked = self.sim.serving.chunked_prefill
        while True:
            if self.incoming:
                self._take_incoming()
            if not (self.waiting or self.decoding or self.prefilling):
                self.wake = env.event()
                yield self.wake
                continue
            decode, chunks = self._plan()
            if not chunks and not (decode and self.decoding):
                # a prefill replica whose blocks are all on their way out (KV transfers in
                # flight): wait for one to arrive and free its blocks
                self.wake = env.event()
                yield self.wake
                continue
            n_dec = len(self.decoding) if decode else 0
            if n_dec and not self.reserve and self.fluid:
                # each sequence's cache grows by e tokens: e / block size blocks each
                while self.decoding and len(self.decoding) * self.e / self.bs > (
                    self.total_blocks - self.used
                ):
                    self._preempt_one()
                n_dec = len(self.decoding)
                self._alloc(n_dec * self.e / self.bs)
            elif n_dec and not self.reserve:
                # a block for every sequence whose cache is at a block boundary; preempt if full
                while self.phase[self.it % self.bs] > self.total_blocks - self.used:
                    self._preempt_one()
                n_dec = len(self.decoding)
                self._alloc(self.phase[self.it % self.bs])
            assert n_dec or chunks, "serving engine formed an empty iteration"
            finishing = [rid for rid, done, n in chunks if done + n >= self._prefill_len(rid)]
            work = coster.iteration(
                n_dec,
                self.cache_sum + n_dec,
                [(n, done + n) for _, done, n in chunks],
                n_dec + len(finishing),
            )
            yield env.timeout(work.time_s)
            self.emit_delay = coster.emit_delay(n_dec + len(finishing))
            st.iterations += 1
            st.busy_s += work.time_s
            self.busy_s += work.time_s
            st.model_flops += work.model_flops
            st.hbm_bytes += work.hbm_bytes
            st.energy_j += work.energy_j
            if n_dec:
                st.decode_rows += n_dec
                st.decode_iterations += 1
                self.it += 1
                self.cache_sum += n_dec * self.e
                while self.heap and self.heap[0][0] <= self.it:
                    _, rid = heapq.heappop(self.heap)
                    entry = self.decoding.get(rid)
                    if entry is None or self._finish_it(entry, rid) != self.it:
                        continue  # preempted (and maybe re-admitted with a new finish)
                    t0, c0, _ = entry
                    cache = self._drop_decode(rid)
                    # fluid: free what its growth took (e a decode iteration)
                    self._finish(rid, c0 + (self.it - t0) * self.e if self.fluid else cache)
            for rid, done, n in chunks:
                if chunked:
                    if done + n >= self._prefill_len(rid):
                        del self.prefilling[rid]
                        self._start_decode(rid, self.it)
                    else:
                        self.prefilling[rid] = done + n
                else:
                    self._start_decode(rid, self.it)
            st.kv_t.append(env.now)
            st.kv_used.append(st.used_blocks / self.sim.all_blocks)


def _batching(w: dict) -> str:
    """How a run's engine forms its iterations, as its header names it."""
    if not w["chunked_prefill"]:
        return "prefill-first"
    return "chunked prefill" if w.get("mixed_prefill", True) else "chunked prefill, steps apart"


#: the iteration costers of recent runs, newest first: (the serving they cost, its requests
#: left out; the system; the coster). A plan's bisection over rates simulates the same engine on
#: the same system many times; its pieces are costed once for all of them
_COSTERS: list[tuple[Serving, System, IterationCost]] = []
_KEEP_COSTERS = 8
_ANY_LENGTH = LengthDist(kind="const", a=1)


def iteration_cost(serving: Serving, system: System) -> IterationCost:
    """``IterationCost(serving, system)``, shared by runs of the same serving on the same
    ``system`` object that differ only in their requests (rate, duration, lengths, trace, seed,
    clients): its memos are pure functions of their arguments, so a run costs the same either
    way. Every other field is compared, so a field a later coster reads never shares wrongly."""
    key = replace(serving, rate=1.0, duration_s=1.0, prompt=_ANY_LENGTH, output=_ANY_LENGTH,
                  trace=None, seed=0, concurrency=None)  # fmt: skip
    for i, (k, sys_, coster) in enumerate(_COSTERS):
        if sys_ is system and k == key:
            _COSTERS.insert(0, _COSTERS.pop(i))
            return coster
    coster = IterationCost(key, system)
    _COSTERS.insert(0, (key, system, coster))
    del _COSTERS[_KEEP_COSTERS:]
    return coster


class _ServeRun:
    def __init__(self, serving: Serving, system: System, req: Requests) -> None:
        self.serving, self.system, self.req = serving, system, req
        # each request's lengths as Python ints: the replicas read them per request many times
        self.prompt: list[int] = [int(x) for x in req.prompt]
        self.output: list[int] = [int(x) for x in req.output]
        self.coster = iteration_cost(serving, system)
        self.blocks, self.kv_bytes_per_token = kv_capacity_blocks(serving, system)
        self.all_blocks = self.blocks * serving.replicas
        self.done: dict = {}  # rid -> completion event (closed-loop clients wait on it)
        self.stats = _Stats(len(req))
        self.to_decode: Callable[[int], None] = lambda rid: None  # set by simulate_serving

    def kv_transfer_s(self, tokens: int) -> float:
        """One request's KV cache from a prefill to a decode replica: each of the tp chips
        sends its shard over its own inter-node link (the pools sit on different nodes, as in
        DistServe's and Splitwise's deployments): latency + shard / achievable bandwidth.
        NB: not overlapped with the prefill's layers (DistServe pulls the cache after prefill)."""
        link = self.system.inter_node
        # the blocks' tokens, and the window a sliding layer holds
        shard = tokens * self.kv_bytes_per_token + sliding_kv_bytes(self.serving, tokens)
        return link.latency_s + shard / (link.bandwidth_bytes_per_s * link.achievable_fraction)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeResult:
    """What a serving run derives; times in seconds, per request unless said."""

    workload: dict
    system: dict
    n_chips: int
    arrival_s: np.ndarray
    prompt: np.ndarray
    output: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    end_s: float  # the last completion (the run's length)
    window_s: float  # the arrival window (duration, or the trace's last arrival)
    model_flops: float
    hbm_bytes_per_chip: float  # summed over replicas
    peak_flops_per_s: float
    main_bandwidth_bytes_per_s: float
    mean_in_system: float
    preemptions: int
    iterations: int
    mean_decode_batch: float
    busy_fraction: float  # share of replica-time spent in iterations
    kv_blocks: int
    kv_bytes_per_token: float
    kv_t: np.ndarray = field(default_factory=lambda: np.zeros(0))
    kv_used: np.ndarray = field(default_factory=lambda: np.zeros(0))
    slo_ttft_s: float | None = None
    slo_tpot_s: float | None = None
    dynamic_j_per_chip: float = 0.0  # summed over replicas
    idle_watts: float | None = None  # per chip; None: no power model
    prefill_replicas: int = 0  # disaggregated: replicas that only prefill (0: colocated)
    prefill_busy_fraction: float = 0.0  # disaggregated: each pool's share of time in iterations
    decode_busy_fraction: float = 0.0
    kv_transfer_mean_s: float = 0.0  # disaggregated: one request's KV cache between the pools

    @property
    def energy_j(self) -> float | None:
        """Joules drawn by all chips over the run: idle power throughout (a chip waiting for
        requests still holds its floor) plus each iteration's dynamic energy."""
        if self.idle_watts is None:
            return None
        tp = self.n_chips // self.workload["replicas"]
        return self.n_chips * self.idle_watts * self.end_s + tp * self.dynamic_j_per_chip

    @property
    def completed(self) -> int:
        return int(np.count_nonzero(~np.isnan(self.finish_s)))

    @property
    def ttft(self) -> np.ndarray:
        return self.first_token_s - self.arrival_s

    @property
    def latency(self) -> np.ndarray:
        return self.finish_s - self.arrival_s

    @property
    def tpot(self) -> np.ndarray:
        """Mean time per output token after the first, for requests of more than one token."""
        many = self.output > 1
        return (self.finish_s[many] - self.first_token_s[many]) / (self.output[many] - 1)

    @property
    def mfu(self) -> float:
        return self.model_flops / (self.end_s * self.n_chips * self.peak_flops_per_s)

    @property
    def mbu(self) -> float:
        replicas = self.workload["replicas"]
        return self.hbm_bytes_per_chip / (self.end_s * replicas * self.main_bandwidth_bytes_per_s)

    @property
    def requests_per_s(self) -> float:
        return self.completed / self.end_s

    @property
    def tokens_per_s(self) -> float:
        return float(self.output.sum()) / self.end_s

    def good(self) -> np.ndarray:
        """Requests meeting the SLO (TTFT and mean TPOT within their limits)."""
        ok = ~np.isnan(self.finish_s)
        if self.slo_ttft_s is not None:
            ok &= self.ttft <= self.slo_ttft_s
        if self.slo_tpot_s is not None:
            tpot = np.zeros(len(self.output))
            many = self.output > 1
            tpot[many] = self.tpot
            ok &= tpot <= self.slo_tpot_s
        return ok

    def to_dict(self, kv_points: int = 200) -> dict:
        """The run as JSON; ``kv_points`` samples of the KV occupancy series (0: none)."""

        def stats(x: np.ndarray) -> dict:
            if len(x) == 0:
                return {"mean": None, "p50": None, "p90": None, "p99": None}
            p50, p90, p99 = np.percentile(x, [50, 90, 99])
            return {
                "mean": float(x.mean()),
                "p50": float(p50),
                "p90": float(p90),
                "p99": float(p99),
            }

        step = max(1, len(self.kv_t) // kv_points) if kv_points > 0 else 0
        good = self.good()
        return {
            "workload": self.workload,
            "system": self.system,
            "requests": len(self.arrival_s),
            "completed": self.completed,
            "end_s": self.end_s,
            "ttft_s": stats(self.ttft),
            "tpot_s": stats(self.tpot),
            "latency_s": stats(self.latency),
            "throughput": {
                "requests_per_s": self.requests_per_s,
                "tokens_per_s": self.tokens_per_s,
                "prompt_tokens_per_s": float(self.prompt.sum()) / self.end_s,
            },
            "goodput": {
                "slo_ttft_s": self.slo_ttft_s,
                "slo_tpot_s": self.slo_tpot_s,
                "requests_per_s": float(good.sum()) / self.end_s,
                "fraction": float(good.mean()) if len(good) else None,
            },
            "arrival_rate": len(self.arrival_s) / self.window_s if self.window_s else None,
            "mean_in_system": self.mean_in_system,
            "mfu": self.mfu,
            "mbu": self.mbu,
            "busy_fraction": self.busy_fraction,
            **({"energy": self._energy()} if self.energy_j else {}),
            "mean_decode_batch": self.mean_decode_batch,
            "iterations": self.iterations,
            "preemptions": self.preemptions,
            "kv_cache": {
                "blocks_per_replica": self.kv_blocks,
                "tokens_per_replica": self.kv_blocks * self.workload["block_size"],
                # the paged blocks' bytes (of the full-attention layers where others slide)
                "bytes_per_token_per_chip": self.kv_bytes_per_token,
                "mean_occupancy": float(self.kv_used.mean()) if len(self.kv_used) else 0.0,
                "max_occupancy": float(self.kv_used.max()) if len(self.kv_used) else 0.0,
                "t_s": self.kv_t[::step].tolist() if step else [],
                "occupancy": self.kv_used[::step].tolist() if step else [],
            },
            **({"disaggregated": self._pools()} if self.prefill_replicas else {}),
        }

    def _pools(self) -> dict:
        """The prefill and decode pools of a disaggregated run."""
        replicas = int(self.workload["replicas"])
        tp = int(self.workload["tp"])
        return {
            "prefill_replicas": self.prefill_replicas,
            "decode_replicas": replicas - self.prefill_replicas,
            "prefill_chips": self.prefill_replicas * tp,
            "decode_chips": (replicas - self.prefill_replicas) * tp,
            "prefill_busy_fraction": self.prefill_busy_fraction,
            "decode_busy_fraction": self.decode_busy_fraction,
            "kv_transfer_mean_s": self.kv_transfer_mean_s,
        }

    def _energy(self) -> dict:
        total = self.energy_j
        assert total is not None
        tokens = float(self.output.sum())
        return {
            "total_j": total,
            "avg_power_w": total / self.end_s,
            "chip_avg_power_w": total / self.end_s / self.n_chips,
            "tokens_per_j": tokens / total,
            "j_per_request": total / self.completed if self.completed else None,
        }

    def title(self) -> str:
        """One line naming the run: model, system, replicas and batching."""
        w = self.workload
        return (
            f"serve {w['model']} on {self.system['name']}  {w['replicas']} replica(s) x "
            f"TP{w['tp']}  {_batching(w)}  "
            f"{w['dtype']}  runtime {w['runtime']}{_sampling_text(w)}{_spec_text(w)}"
        )

    def summary_items(self) -> list[Item]:
        """The summary as (label, value with its unit, note): ``_repr_html_`` and the report."""
        d = self.to_dict(kv_points=0)

        def pct(stats: dict, what: str) -> Item:
            if stats["p50"] is None:
                return (what, "-", "no request")
            return (f"{what} p50", format_si(stats["p50"], "s"),
                    f"p90 {format_si(stats['p90'], 's')}, p99 {format_si(stats['p99'], 's')}")  # fmt: skip

        items: list[Item] = [
            ("completed", f"{self.completed} of {len(self.arrival_s)} requests",
             f"in {format_si(self.end_s, 's')}"),
            ("throughput", f"{rate_text(self.tokens_per_s)} output tokens/s",
             f"{self.requests_per_s:.3g} requests/s"),
            pct(d["ttft_s"], "TTFT"),
            pct(d["tpot_s"], "TPOT"),
            pct(d["latency_s"], "latency"),
            ("MFU", percent(self.mfu), f"MBU {percent(self.mbu)}, busy {self.busy_fraction:.0%}"),
            ("KV cache", f"{d['kv_cache']['max_occupancy']:.0%} at most",
             f"mean {d['kv_cache']['mean_occupancy']:.0%} of "
             f"{d['kv_cache']['tokens_per_replica']:,} tokens per replica; "
             f"{self.preemptions} preemptions"),
        ]  # fmt: skip
        g = d["goodput"]
        if self.slo_ttft_s is not None or self.slo_tpot_s is not None:
            limits = ", ".join(
                f"{k} <= {format_si(v, 's')}"
                for k, v in (("TTFT", self.slo_ttft_s), ("TPOT", self.slo_tpot_s))
                if v is not None
            )
            items.append(("goodput", f"{g['requests_per_s']:.3g} requests/s",
                          f"{percent(g['fraction'])} of requests meet {limits}"))  # fmt: skip
        if "energy" in d:
            e = d["energy"]
            items.append(("energy", format_si(e["total_j"], "J"),
                          f"{format_si(e['chip_avg_power_w'], 'W')} per chip, "
                          f"{rate_text(e['tokens_per_j'])} output tokens/J"))  # fmt: skip
        return items

    def _repr_html_(self) -> str:
        """The summary as HTML (``sim.cost.html``), for notebooks."""
        return summary_fragment(self.title(), self.summary_items())

    def summary(self) -> str:
        d = self.to_dict()
        w = self.workload
        t, p, lat = d["ttft_s"], d["tpot_s"], d["latency_s"]

        def ms(x: float | None) -> str:
            return "-" if x is None else format_si(x, "s")

        if "concurrency" in w:
            load = f"closed loop, {w['concurrency']} clients, {len(self.arrival_s)} requests"
        elif "rate" in w:
            load = f"{w['rate']:g} req/s for {w['duration_s']:g} s"
        else:
            load = f"trace of {w['trace_requests']} requests"
        if "prompt" in w:
            load += f", prompt {w['prompt']}, output {w['output']}"
        lines = [
            f"serve {w['model']} on {self.system['name']}  ({w['replicas']} replica(s) x TP{w['tp']}"
            f", {_batching(w)}, {w['dtype']}"
            f", runtime {w['runtime']}{_sampling_text(w, ',')}{_spec_text(w, ',')})",
            *overrides_line(self.system),
            f"  load        {load}",
            f"  completed   {self.completed} of {len(self.arrival_s)} in {format_si(self.end_s, 's')}"
            f"   {self.requests_per_s:.3g} req/s   {self.tokens_per_s:,.1f} output tokens/s",
            f"  {'':<10}{'mean':>10}{'p50':>10}{'p90':>10}{'p99':>10}",
        ]
        for name, s in (("TTFT", t), ("TPOT", p), ("latency", lat)):
            lines.append(
                f"  {name:<10}" + "".join(f"{ms(s[k]):>10}" for k in ("mean", "p50", "p90", "p99"))
            )
        g = d["goodput"]
        if self.slo_ttft_s is not None or self.slo_tpot_s is not None:
            lines.append(
                f"  goodput     {g['requests_per_s']:.3g} req/s ({g['fraction']:.1%} of requests "
                f"meet TTFT <= {ms(self.slo_ttft_s)}, TPOT <= {ms(self.slo_tpot_s)})"
            )
        kv = d["kv_cache"]
        lines += [
            f"  MFU {self.mfu:.1%}   MBU {self.mbu:.1%}   busy {self.busy_fraction:.0%}   "
            f"mean decode batch {self.mean_decode_batch:.1f}   in system {self.mean_in_system:.1f}",
            *(
                [
                    f"  energy      {format_si(d['energy']['total_j'], 'J')}   output tokens/J "
                    f"{d['energy']['tokens_per_j']:.3g}   power "
                    f"{format_si(d['energy']['chip_avg_power_w'], 'W')}/chip"
                ]
                if "energy" in d
                else []
            ),  # fmt: skip
            f"  KV cache    {kv['tokens_per_replica']:,} tokens per replica, occupancy mean "
            f"{kv['mean_occupancy']:.0%} max {kv['max_occupancy']:.0%}, "
            f"{self.preemptions} preemptions",
        ]
        if self.prefill_replicas:
            pools = d["disaggregated"]
            lines.append(
                f"  pools       prefill {pools['prefill_chips']} chips busy "
                f"{pools['prefill_busy_fraction']:.0%}, decode {pools['decode_chips']} chips busy "
                f"{pools['decode_busy_fraction']:.0%}; KV transfer "
                f"{format_si(pools['kv_transfer_mean_s'], 's')} per request (inter-node link)"
            )
        return "\n".join(lines)


def simulate_serving(
    serving: Serving,
    system: System,
    *,
    slo_ttft_s: float | None = None,
    slo_tpot_s: float | None = None,
) -> ServeResult:
    """Run the request stream of ``serving`` through its replicas on ``system``'s chips.

    ``system`` holds all the chips (replicas x tp). Raises CapacityError when a replica cannot
    hold the weights plus the longest request's KV cache, ConfigError/WorkloadError for bad
    settings. The run goes on until every request has finished.
    """
    import simpy

    from hardware.chip import ConfigError

    serving.validate()
    if system.n_chips != serving.tp * serving.replicas:
        raise ConfigError(
            f"--chips {system.n_chips} must equal --tp {serving.tp} x --replicas "
            f"{serving.replicas} = {serving.tp * serving.replicas}"
        )
    req = serving.requests()
    run = _ServeRun(serving, system, req)
    longest = int((req.prompt + req.output).max()) if len(req) else 0
    bs = serving.block_size
    capacity = run.blocks * bs
    # the longest request whole, its sliding layers' window beside (in full-layer tokens)
    window_tokens = window_blocks(serving, longest) * bs
    need = -(-longest // bs) * bs + window_tokens
    if longest and need > (run.blocks - _watermark(run.blocks)) * bs:
        window = (
            f" ({need - longest:,.0f} of them its sliding layers' window)" if window_tokens else ""
        )
        raise CapacityError(
            f"does not fit: a request of {longest:,} tokens needs {need:,.0f} tokens of KV "
            f"cache{window}, more than the {capacity:,} tokens a replica holds after the "
            "weights; use a larger --tp, --kv-dtype fp8, or shorter --prompt-dist/--output-dist"
        )
    env = simpy.Environment()
    n_pre = serving.prefill_replicas
    roles = ["prefill"] * n_pre + ["decode" if n_pre else "both"] * (serving.replicas - n_pre)
    replicas = [_Replica(env, i, run, role) for i, role in enumerate(roles)]
    entry = replicas[:n_pre] if n_pre else replicas  # where requests arrive
    decoders = replicas[n_pre:]
    st = run.stats

    rr = [0]

    def route(rid: int) -> None:
        if serving.router == "round-robin":
            target = entry[rr[0] % len(entry)]
            rr[0] += 1
        else:
            target = min(entry, key=_load)
        st.change_in_system(env.now, +1)
        target.add(rid)

    def to_decode(rid: int) -> None:
        min(decoders, key=_load).add_prefilled(rid)

    run.to_decode = to_decode

    def arrivals():
        for rid in range(len(req)):
            dt = req.arrival_s[rid] - env.now
            if dt > 0:
                yield env.timeout(dt)
            route(rid)

    issued = iter(range(len(req)))

    def client():
        # closed loop: send the next request the moment the previous one finishes
        for rid in issued:
            req.arrival_s[rid] = env.now
            run.done[rid] = env.event()
            route(rid)
            yield run.done[rid]

    if serving.concurrency is None:
        procs = [env.process(arrivals())]
    else:
        req = Requests(req.arrival_s.copy(), req.prompt, req.output)  # arrival = send time
        run.req = req
        procs = [env.process(client()) for _ in range(serving.concurrency)]
    for r in replicas:
        env.process(r.run())
    env.run(until=env.all_of(procs))
    while st.in_system > 0:
        env.step()
    end = float(env.now) if len(req) else 0.0
    st.change_in_system(end, 0)
    if serving.concurrency is not None or serving.trace is not None:
        window = float(req.arrival_s.max())
    else:
        window = serving.duration_s
    chip = system.chip
    dtype = serving.compute_dtype
    return ServeResult(
        workload=serving.describe(),
        system=system.describe(),
        n_chips=system.n_chips,
        arrival_s=req.arrival_s,
        prompt=req.prompt,
        output=req.output,
        first_token_s=st.first_token_s,
        finish_s=st.finish_s,
        end_s=end,
        window_s=window,
        model_flops=st.model_flops,
        hbm_bytes_per_chip=st.hbm_bytes,
        dynamic_j_per_chip=st.energy_j,
        idle_watts=chip.idle_watts if chip.has_power_model else None,
        peak_flops_per_s=chip.peak(dtype),
        main_bandwidth_bytes_per_s=chip.main_memory.bandwidth_bytes_per_s,
        mean_in_system=st.in_system_area / end if end else 0.0,
        preemptions=st.preemptions,
        iterations=st.iterations,
        mean_decode_batch=st.decode_rows / st.decode_iterations if st.decode_iterations else 0.0,
        busy_fraction=st.busy_s / (end * serving.replicas) if end else 0.0,
        kv_blocks=run.blocks,
        kv_bytes_per_token=run.kv_bytes_per_token,
        kv_t=np.asarray(st.kv_t),
        kv_used=np.asarray(st.kv_used),
        slo_ttft_s=slo_ttft_s,
        slo_tpot_s=slo_tpot_s,
        prefill_replicas=n_pre,
        prefill_busy_fraction=(
            sum(r.busy_s for r in replicas[:n_pre]) / (end * n_pre) if n_pre and end else 0.0
        ),
        decode_busy_fraction=(
            sum(r.busy_s for r in decoders) / (end * len(decoders)) if n_pre and end else 0.0
        ),
        kv_transfer_mean_s=st.kv_transfer_s / st.kv_transfers if st.kv_transfers else 0.0,
    )
