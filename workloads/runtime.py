"""Runtimes: the software an LLM runs under, as a handful of measurable, cited mechanisms.

The same chip runs the same model 1.5-2x apart under different software. A runtime preset
(``workloads/presets/runtimes/<name>.toml``, chosen with ``--runtime NAME``) says, each with its
source:

- ``elementwise``: ``fused`` (norm + residual, RoPE + KV-cache write and the activation each one
  kernel, as vLLM's and TensorRT-LLM's custom kernels and torch.compile do) or ``eager`` (eager
  PyTorch: every primitive of the reference model its own kernel, through memory; the
  primitives are those ``workloads.build.EAGER_PRIMITIVES`` counts);
- ``rms_norm``: how an eager RMSNorm runs: ``reference`` (the Meta reference's and Hugging
  Face's ``x.float(); pow; mean; rsqrt; * ; .type_as; * weight`` chain, one kernel a primitive)
  or ``native`` (``torch.nn.functional.rms_norm``, which PyTorch dispatches to one fused kernel,
  ``aten::_fused_rms_norm``, costed as LayerNorm's one kernel); only eager runtimes read it;
- ``rope``: how an eager RoPE runs: ``complex`` (the Meta reference's fp32 complex multiply, 3
  kernels a tensor), ``halves`` (multiplies and adds on the split halves, then a cat: 7
  kernels a tensor, as this repository's microbenchmark writes it) or ``rotate_half``
  (transformers' ``q * cos + rotate_half(q) * sin``: 5 kernels a tensor) or ``rotation``
  (IBM's foundation-model-stack: each pair of q's elements times a 2x2 rotation matrix by a
  broadcast fp32 multiply and a sum, 4 kernels a tensor); only eager runtimes read it;
- ``strided_cycles_per_element`` and ``cast_cycles_per_element``: core clock cycles eager
  PyTorch's unvectorised elementwise kernels spend per output element they write, which binds
  them before their bytes do: the strided kernel (TensorIterator's legacy path, where an
  operand is broadcast or strided) and the cast kernel (contiguous operands converted between
  dtypes, such as bf16 -> fp32 upcasts) (``workloads.build.EAGER_SCALAR`` counts them per
  primitive; ``sim.cost.roofline.cost_elementwise`` spreads the cycles over the chip's cores
  at its clock); 0 for a runtime that runs none;
- ``cuda_graphs``: whether a step's kernels are replayed from a captured graph (each costs the
  GPU-side gap the chip's ``overhead.kernel_s`` measures) or launched one by one from the host,
  which then takes ``host_launch_s`` per kernel (the model code's Python, dispatch and launch);
  ``prefill_graphs`` false: only decode steps replay graphs, a step with prompt tokens runs
  eager and takes ``host_launch_s`` per kernel (vLLM's V0 engine and SGLang capture decode
  batches only, as their prompts' lengths vary); ``graph_max_tokens``: graphs are captured for
  steps of up to that many token rows, a larger step launches eager (vLLM V1's capture sizes end
  at 512, vLLM 0.5's at 256, SGLang 0.4's at 160; 0: any size), and ``graph_max_tokens_tp4`` the
  same where the model runs over TP >= 4 (SGLang 0.5: 256, and 512 from TP 4);
  ``graph_counts``: what those limits count, ``tokens`` (token rows) or ``sequences`` (SGLang's
  batch size, whose graphs under speculative decoding hold each sequence's draft tokens);
  ``piecewise_break_s``: the graph is captured in pieces between the attention calls, which run eagerly (vLLM V1's piecewise CUDA graphs), each break costing
  this host time (the attention call's Python and metadata, its launch and the next piece's
  graph launch; 0: one graph for the whole step); ``decode_full_graphs``: a step without
  prompt tokens replays one full graph, only a step with prompts runs piecewise (vLLM 0.11's
  FULL_AND_PIECEWISE).
  The host enqueues launches while the chip runs long kernels, so the ops wait only for the
  part of their launches' host time that their chip time does not cover
  (``sim.cost.roofline._host_floor``): a batch-1 decode step of short kernels takes its
  launches' time, a long prefill its chip time;
- ``host_collective_s``: where launches come from the host, the host time of one
  torch.distributed collective call (the process group's Python, work objects, stream waits and
  the NCCL enqueue: several times a kernel launch's); 0: a kernel launch's ``host_launch_s``;
- ``step_overhead_s``: host time per step (one decode or prefill iteration) that the GPU waits
  for: scheduling, input preparation, sampling, detokenisation, Python; and
  ``step_overhead_per_seq_s`` more per sequence in the step (the scheduler's and the input
  preparation's loops over the sequences in Python);
- ``scheduler_steps``: multi-step scheduling (vLLM ``--num-scheduler-steps``): the scheduler and
  input preparation run once per that many decode steps, so the step's host time above is
  paid once per ``scheduler_steps`` decode steps (a step with prompts runs single-step and pays
  it in full);
- ``output_per_seq_s`` and ``async_output``: output processing per sequence (detokenise, stop
  checks, build the outputs); with ``async_output`` it runs on the host while the chip runs the
  next step (vLLM 0.6's asynchronous output processor), so a step waits only for the part longer
  than its chip time; otherwise it adds to the step;
- ``server_per_seq_s``: the OpenAI-compatible server's work per sequence per step (a streamed
  token's output object, queue hops, serialisation), on the critical path where the server
  shares the engine's process or its step loop (as measured against the offline engine);
- ``non_torch_bytes`` (one chip) and ``non_torch_bytes_tp`` (a chip of a tensor-parallel
  group; 0: the one-chip figure): device memory the engine holds outside its tensors (the CUDA
  context, library workspaces, NCCL and custom all-reduce buffers) that a serving engine takes
  off its KV-cache budget, as the engine's own memory profile reports it;
- ``attention_kernel``: the fused attention kernel the software calls where the workload names
  none (``fa2``: PyTorch's scaled_dot_product_attention flash backend and vLLM's
  vllm-flash-attn are FlashAttention-2, which on Hopper runs the previous generation's MMA
  instructions; empty: the chip's native kernel);
- ``allreduce_latency_s`` and ``allreduce_bus_bandwidth``: the runtime's own intra-node
  all-reduce kernel (vLLM's custom all-reduce, TensorRT-LLM's, PyTorch's IntraNodeComm: each chip
  reads its peers' buffers over NVLink in one launch, no ring), as a microbenchmark of that kernel
  measures it: time per call at small sizes, and bus bandwidth (bytes/s) over sizes up to 1 MB.
  A tensor-parallel all-reduce inside one node runs on it where it beats NCCL
  (``sim.cost.collectives.custom_all_reduce_s``); 0 (the default): NCCL only;
- ``paged_prefill`` (inference): the prefill attention reads all its K/V, the new chunk's
  own included, back through the KV cache's page table (vLLM V1's FLASH_ATTN backend:
  reshape_and_cache_flash, then one flash_attn_varlen_func over the cache with its block table,
  16-token blocks): FlashAttention-3 takes its TMA path for paged K/V only where the page size is
  a multiple of its key block (128), so a native Hopper kernel gathers K/V by pointer loads;
  false (the default): the new tokens' K/V are read contiguously;
- ``nccl_nvls``: whether NCCL may reduce in the switch (NVLS) where the chip's link has it
  (true, NCCL's default); false where the runtime turns it off (SGLang's NCCL_NVLS_ENABLE=0):
  its NCCL all-reduces then run on the ring;
- ``int4_group_bytes`` (inference, weight-only int4): the bytes of quantisation metadata each
  group of a weight column carries in the runtime's int4 layout (2, the default: one 16-bit
  scale a group, a symmetric GPTQ checkpoint; gpt-fast's and torchao's tinygemm layout a bf16
  scale and a bf16 zero point, 4; AWQ's fp16 scale and 4-bit zero point, 2.5), read beside the
  weights at the workload's group size (``int4_group``: the quantiser's, 128 by default);
- ``fp8_input_quant`` (inference with fp8 GEMMs): ``separate``: the 16-bit activation going
  into each fp8 GEMM is quantised by a kernel of its own (vLLM's ``ops.scaled_fp8_quant`` before
  ``cutlass_scaled_mm``, its and SGLang's ``per_token_group_quant_fp8`` for block-scaled
  weights, twice inside the fused MoE), reading it in 16 bits and writing it in 8; ``fused``
  (the default): the quantisation rides in the kernel before (TensorRT-LLM's plugins);
- ``kv_cache``: how a step's new K and V join the cache: ``inplace`` (the default: written into
  preallocated or paged blocks) or ``concat`` (Hugging Face transformers' DynamicCache: each
  layer's whole K and V re-allocated and copied with the new token appended, every step);
  ``gqa_repeat``: grouped-query K/V expanded to every query head in memory before attention
  (transformers' ``repeat_kv``), which then reads the expanded copy; ``separate_projections``:
  the model code runs q, k and v (and an MLP's gate and up) as separate linears, a launch each,
  where fused code runs one GEMM (costed as the one GEMM, with its launches);
- ``weight_only_kernel``: the kernel of the GEMMs whose weights are quantised and whose math is
  16-bit (``--dtype int4``; an MoE checkpoint's MXFP4 experts, ``MoEConfig.weight_format``):
  ``native`` (the default: the chip's own matrix path) or ``marlin`` (IST-DASLab's Marlin and
  vLLM's ports of it: weights dequantised in registers and multiplied with the warp-level
  ``mma.sync`` instruction, so on Hopper at the chip's ``mma_sync_fraction`` of peak, as
  FlashAttention-2);
- ``moe_kernel`` (inference): the kernel of the routed expert GEMMs: ``library`` (the
  default: a grouped GEMM with the chip's library tiles and thread-block clusters, as CUTLASS's
  grouped GEMMs in TensorRT-LLM) or ``triton`` (vLLM's ``fused_moe_kernel`` and SGLang's port
  of it: a Triton kernel, one CTA per output block and no clusters, so no multicast of the
  expert's weight tiles, with power-of-two M blocks, and each block's first loads and its
  output store exposed, nothing persistent to hide them, ``Gemm.clusters``, ``pow2_blocks``
  and ``tile_exposed``);
- ``grouped_topk_kernels`` (inference): the kernels a group-limited router's top-k
  (``MoEConfig.n_groups`` > 1: DeepSeek-V3's sigmoid, correction bias, top-2 sum a group, top
  groups, top-k among them, renormalisation) launches each MoE layer: 1 (the default: one fused
  kernel, SGLang's ``moe_fused_gate``, TensorRT-LLM's ``noaux_tc``), about 17 for the PyTorch
  ops run eagerly, 7 under torch.compile (Inductor's fused kernels and its three ``topk``
  calls); charged in place of the one top-k kernel of the routing op;
- ``deepep_num_sms`` (training): the cores DeepEP's dispatch and combine kernels hold while
  compute runs beside them (Megatron-Core's ``--moe-deepep-num-sms``, 20 by default); 0: the
  system's ``collective_cores``, as NCCL's;
- ``mla_decode_kernels`` (inference): the launches of an MLA attention block (DeepSeek-V2/V3)
  a layer in decode, at one token row and at more, from the input norm to the all-reduce, as
  the engine's code issues them (SGLang 0.4's fp8 quantisation chains before the absorbed
  bmms, its copies into the attention's inputs and its RoPE in PyTorch ops); those beyond
  roofsim's own ops are charged as launches (``workloads.llm`` ``mla_glue``); empty (the
  default): roofsim's ops only;
- ``mla_absorb`` (inference): how MLA decode applies the absorbed up-projections: ``bmm``
  (the default: q_nope times W_UK and the attention output times W_UV per head, between
  q_b_proj and o_proj) or ``premultiplied`` (vLLM 0.7: W_Q W_UK and W_UV W_O multiplied at
  load, so q_b_proj writes the latent query and o_proj reads the latent output, 512 wide a
  head, and the RoPE part of the query is a 16-bit GEMM of its own);
- ``sampler_greedy_bytes`` / ``_kernels``, ``sampler_random_bytes`` / ``_kernels`` and
  ``sampler_top_p_bytes`` / ``_kernels`` (inference): the sampler after the LM head, for
  greedy, random and top-k/top-p sampling (``SAMPLINGS``): bytes read and written per logit (each sampled row's whole vocabulary, on
  every chip of a TP group: the engines gather the logits and sample on each rank, or on one
  while the others wait) and its launches, as the engine's sampler code runs them (vLLM V1:
  a cast to fp32 and an argmax; vLLM V0: also softmax and log_softmax every step); the
  default: one kernel reading the 16-bit logits once;
- ``block_fp8_gemm`` and ``block_fp8_gemm_unaligned`` (inference): the kernel of a
  block-scaled fp8 checkpoint's dense linears (``ModelConfig.fp8_block_scales``, DeepSeek-V3's
  128 x 128 weight blocks), for the linears whose N and K are multiples of 128 and for the
  others (DeepSeek's kv_a_proj, N = 576): ``deepgemm`` (the default: DeepGEMM, and
  TensorRT-LLM's kernel built on it, hide the block scales' promotion behind the MMAs),
  ``cutlass`` (CUTLASS 3.x's SM90 blockwise kernel: one exposed fused multiply-add an element
  per 128-deep block) or ``triton`` (vLLM's and SGLang's w8a8_block_fp8_matmul: two, and a
  Triton kernel's structure); ``workloads.ops.BLOCK_FP8_PROMOTION``. The routed experts take
  ``moe_kernel``'s. ``block_fp8_native`` and ``block_fp8_fallback``: the compute capabilities
  (``Chip.compute_capability``) the engine's kernels for them are built for, and the kernel it
  runs on every other chip, those that are not NVIDIA GPUs included (``triton``: vLLM's and
  SGLang's ``w8a8_block_fp8_matmul``, which their ROCm and Ada builds run); neither (the
  default): the same kernels on every chip. A preset for a version without block-fp8 support
  keeps its base's;
- ``sinks_kernel`` and ``sinks_native`` (inference): the attention kernel the software runs
  for a model with attention sinks (``ModelConfig.attention_sinks``, gpt-oss) on a chip whose
  NVIDIA compute capability (``Chip.compute_capability``) is not among ``sinks_native``, where
  its default kernel takes no sinks: ``triton`` (vLLM's Triton unified attention,
  ``sim.cost.roofline``); empty: the default kernel everywhere;
- ``qkv_split_copies`` (training): the fused QKV projection's output is split into q, k and v
  views whose layout the attention kernel cannot take, so copies run around it (Megatron-Core
  with Transformer Engine: ``workloads.training`` ``_qkv_split_copies``); false (the default):
  q, k and v reach the kernel as they are;
- ``loss_kernel`` (training): how the step's cross-entropy over the LM head's logits runs
  (``workloads.training`` ``LOSS_KERNEL_BYTES``): ``eager`` (PyTorch's ``F.cross_entropy`` on
  the logits upcast to fp32, log_softmax and nll as separate passes:
  ``workloads.build.EAGER_PRIMITIVES``), ``megatron`` (Megatron-Core's vocab-parallel
  cross-entropy: the logits upcast to fp32 and five more passes over them forward, two back)
  or ``fused`` (one online-softmax kernel on the 16-bit logits forward and one writing their
  gradient: Transformer Engine's ``parallel_cross_entropy``, flash-attn's Triton
  ``CrossEntropyLoss``); empty (the default): ``eager`` for an eager runtime, else ``fused``;
- ``fsdp`` (training, ZeRO-3): the PyTorch FSDP implementation whose own memory kernels run on
  the compute path besides its collectives (``workloads.training``, ``fsdp_kernels``):
  ``fsdp2`` (``fully_shard``, per-parameter DTensors: each all-gather's output copied out into
  the parameters, ``foreach_all_gather_copy_out`` on the compute stream, and the gradients
  copied into the reduce-scatter's input in its dtype, ``torch._chunk_cat``, which the compute
  stream waits for in torch 2.4 and runs itself from 2.5), ``fsdp1``
  (``FullyShardedDataParallel``, flat parameters: the gradient of
  the flat parameter assembled from its views' gradients by autograd's cat, cast to the reduce
  dtype and pre-divided in place before the reduce-scatter, ``_post_backward_hook`` /
  ``_reduce_grad``; the last two on its post-backward stream, costed in series all the same:
  the GEMMs beside them hold every core, so this is the most they cost), or empty (the
  collectives only: Megatron-Core's and DeepSpeed's buffers take the gradients where the
  reduction reads them);
- ``admission`` (serving): when a waiting request may start: ``watermark`` (vLLM: its prompt's
  KV blocks fit with 1 % of the blocks left free, and a running sequence is preempted when the
  cache fills) or ``reserve`` (TensorRT-LLM's GUARANTEED_NO_EVICT: its prompt and output blocks
  fit, so nothing is ever evicted); ``serve --admission`` overrides it;
- ``mixed_prefill`` (serving, with chunked prefill): an iteration decodes every running
  sequence and fills the rest of its token budget with prompt chunks (true, the default: vLLM's
  chunked prefill, Sarathi-Serve; TensorRT-LLM's in-flight batching), or (false: SGLang, whose
  ``--enable-mixed-chunk`` is off by default) an iteration is either a prefill batch, new
  prompts up to the budget with a long one cut into chunks, or a decode batch of the running
  sequences, prefill first whenever a waiting prompt fits;
- ``memory_fraction_of`` (serving): what ``serve --memory-fraction`` is a share of: ``total``
  (vLLM's gpu_memory_utilization: the chip's memory, the weights, workspace and the engine's
  own memory inside it), ``free`` (TensorRT-LLM's kv_cache_free_gpu_mem_fraction: the memory
  left once those are loaded, all of it for the KV cache) or ``static`` (SGLang's
  mem_fraction_static: the chip's memory, the weights and KV pool inside it, the activation
  workspace and CUDA-graph buffers outside);
- ``ring_attention`` (sequence-parallel DiT, eager): how ring attention merges its partial
  outputs: ``yunchang`` (the default: ring-flash-attention's update_out_and_lse after each hop,
  an fp32 running output) or ``torch`` (torch 2.5's templated ring attention, which xfuser 0.4
  calls: the partial outputs kept and merged once at the end, and K/V concatenated per hop);
- ``fused_wgrad_accumulation`` (training): each weight-gradient GEMM adds its result into the
  gradient buffer in its epilogue (Megatron-LM's gradient accumulation fusion), so it reads and
  writes the buffer's element (fp32 for bf16 and fp8 training: 4 + 4 bytes; fp16: 2 + 2);
  false: it writes the 16-bit gradient once, as autograd does under PyTorch FSDP (NB: the
  separate accumulation kernel an unfused run adds over several micro-batches is not charged).

They live beside the workloads because they change how a workload lowers (its kernels, their
traffic) and add host time to it; the chip's cost model stays software-free (an op carries its
host time, ``Op.host_s``). The default runtime, ``fused-graphs``, is what roofsim modelled before
runtimes existed: fused kernels under CUDA graphs with no host time per step (and, since the
all-reduce fields, the serving engines' custom intra-node all-reduce).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

from hardware.chip import is_capability
from workloads.ops import BLOCK_FP8_KERNELS, Op, OpKind, WorkloadError

ELEMENTWISE = ("fused", "eager")
RMS_NORMS = ("reference", "native")
ROPES = ("complex", "halves", "rotate_half", "rotation")
FP8_INPUT_QUANTS = ("fused", "separate")
RING_ATTENTIONS = ("yunchang", "torch")
KV_CACHES = ("inplace", "concat")
WEIGHT_ONLY_KERNELS = ("native", "marlin")
#: an int4 weight group's metadata where the runtime names none: one 16-bit scale
INT4_GROUP_BYTES = 2.0
MOE_KERNELS = ("library", "triton")
ADMISSIONS = ("watermark", "reserve")
MEMORY_FRACTIONS_OF = ("total", "free", "static")
MLA_ABSORBS = ("bmm", "premultiplied")
#: what a graph size limit counts: a step's token rows (vLLM V1's capture sizes are numbers of
#: tokens) or its sequences (SGLang's cuda_graph_max_bs is a batch size: under speculative
#: decoding each captured graph covers its sequences' draft tokens too)
GRAPH_COUNTS = ("tokens", "sequences")
#: how a step picks its tokens: greedy (argmax; the serving benchmarks' requests,
#: temperature 0), random (sampled at temperature > 0 with no top-k or top-p: vLLM's
#: benchmark_throughput / benchmark_latency), top-p (sampled after top-k and/or top-p
#: filtering) or none (the step stops at the logits: a forward-pass benchmark)
SAMPLINGS = ("greedy", "random", "top-p", "none")
SAMPLED = ("greedy", "random", "top_p")  # the runtime's sampler_*_bytes / _kernels fields
FSDP_IMPLEMENTATIONS = ("", "fsdp1", "fsdp2")
LOSS_KERNELS = ("", "eager", "megatron", "fused")
DEFAULT_RUNTIME = "fused-graphs"
#: a diffusion transformer's default: the diffusers pipelines (and the models' reference repos)
#: run eager PyTorch; a compiled stack is --runtime torch-compile (or fused-graphs)
DEFAULT_DIT_RUNTIME = "diffusers"


@dataclass(frozen=True, slots=True, kw_only=True)
class Runtime:
    name: str
    full_name: str = ""
    elementwise: str = "fused"
    rms_norm: str = "reference"  # reference | native (RMS_NORMS): an eager RMSNorm's kernels
    rope: str = "complex"  # complex | halves | rotate_half | rotation (ROPES): eager RoPE's kernels
    cuda_graphs: bool = True
    prefill_graphs: bool = True  # false: steps with prompt tokens run eager (decode-only graphs)
    graph_max_tokens: int = 0  # steps of more token rows run eager (0: any size is graphed)
    graph_max_tokens_tp4: int = 0  # the same where the model runs over TP >= 4 (0: as above)
    graph_counts: str = "tokens"  # tokens | sequences (GRAPH_COUNTS): what the limits count
    piecewise_break_s: float = 0.0  # host time per attention call between graph pieces
    decode_full_graphs: bool = False  # decode-only steps replay one full graph (no breaks)
    host_launch_s: float = 0.0
    host_collective_s: float = 0.0  # one eager collective call's host time (0: host_launch_s)
    step_overhead_s: float = 0.0
    step_overhead_per_seq_s: float = 0.0
    scheduler_steps: int = 1
    output_per_seq_s: float = 0.0
    async_output: bool = False
    server_per_seq_s: float = 0.0
    attention_kernel: str = ""  # the fused attention kernel it runs ("": the chip's native one)
    sinks_kernel: str = ""  # the kernel for attention with sinks off ``sinks_native`` chips
    sinks_native: tuple[str, ...] = ()  # compute capabilities whose default kernel takes sinks
    allreduce_latency_s: float = 0.0  # 0: NCCL (no custom intra-node all-reduce)
    allreduce_bus_bandwidth: float = 0.0  # bytes/s
    nccl_nvls: bool = True  # NCCL may pick NVLS (in-switch reduction) for its all-reduces
    paged_prefill: bool = False  # prefill attention reads all its K/V through the page table
    non_torch_bytes: float = 0.0  # device memory outside the engine's tensors, one chip
    non_torch_bytes_tp: float = 0.0  # the same on a chip of a TP group (0: non_torch_bytes)
    training: bool = False  # a training stack (train --runtime takes only these)
    fused_wgrad_accumulation: bool = False  # wgrad GEMMs accumulate into fp32 in the epilogue
    ring_attention: str = "yunchang"  # yunchang | torch (RING_ATTENTIONS): a ring's merge
    kv_cache: str = "inplace"  # inplace | concat (KV_CACHES): how new K/V join the cache
    gqa_repeat: bool = False  # GQA K/V expanded to every query head in memory before attention
    separate_projections: bool = False  # q/k/v and gate/up as separate linears (launches)
    # core clock cycles eager PyTorch's unvectorised kernels spend per output element they
    # write: the strided kernel (broadcast or strided operands) and the cast kernel (contiguous
    # operands converted between dtypes) (0: the runtime runs none); the per-primitive counts
    # are workloads.build.EAGER_SCALAR's
    strided_cycles_per_element: float = 0.0
    cast_cycles_per_element: float = 0.0
    fp8_input_quant: str = "fused"  # fused | separate (FP8_INPUT_QUANTS): an fp8 GEMM's input cast
    weight_only_kernel: str = "native"  # native | marlin (WEIGHT_ONLY_KERNELS): W4A16 GEMMs
    int4_group_bytes: float = INT4_GROUP_BYTES  # an int4 group's scale (and zero point), bytes
    moe_kernel: str = "library"  # library | triton (MOE_KERNELS): routed expert GEMMs
    grouped_topk_kernels: int = 1  # launches of a group-limited router's top-k (n_groups > 1)
    deepep_num_sms: int = 0  # cores DeepEP's dispatch and combine hold (0: the system's NCCL count)
    # launches of an MLA attention block a layer in decode, (at one token row, at more), as
    # the engine's code runs it; (): roofsim's own ops
    mla_decode_kernels: tuple[int, ...] = ()
    mla_absorb: str = "bmm"  # bmm | premultiplied (MLA_ABSORBS): MLA decode's absorbed products
    # the sampler's traffic (bytes read and written per logit, a row's vocabulary each sampled
    # row) and launches, greedy, random and top-k/top-p (SAMPLINGS); the default: one kernel
    # reading the LM head's 16-bit logits once
    sampler_greedy_bytes: float = 2.0
    sampler_greedy_kernels: int = 1
    sampler_random_bytes: float = 2.0
    sampler_random_kernels: int = 1
    sampler_top_p_bytes: float = 2.0
    sampler_top_p_kernels: int = 1
    # deepgemm | cutlass | triton (BLOCK_FP8_KERNELS): a block-scaled fp8 checkpoint's dense
    # linears whose N and K are multiples of 128, and the others
    block_fp8_gemm: str = "deepgemm"
    block_fp8_gemm_unaligned: str = "deepgemm"
    # "" | triton: the kernel for both on a chip whose compute capability is not among
    # block_fp8_native (every chip that is not an NVIDIA GPU among them); "": the same kernels
    block_fp8_fallback: str = ""
    block_fp8_native: tuple[str, ...] = ()
    admission: str = "watermark"  # watermark | reserve (ADMISSIONS): a serving engine's policy
    mixed_prefill: bool = True  # chunked prefill: prompt chunks ride in decode steps (else apart)
    fsdp: str = ""  # "" | fsdp1 | fsdp2 (FSDP_IMPLEMENTATIONS): ZeRO-3's own memory kernels
    loss_kernel: str = ""  # "" | eager | megatron | fused (LOSS_KERNELS): training's loss
    qkv_split_copies: bool = False  # training: copies around the fused QKV output's split
    memory_fraction_of: str = (
        "total"  # total | free | static (MEMORY_FRACTIONS_OF): serve --memory-fraction
    )
    sources: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        for key, choices in (("rms_norm", RMS_NORMS), ("rope", ROPES),
                             ("fp8_input_quant", FP8_INPUT_QUANTS),
                             ("ring_attention", RING_ATTENTIONS),
                             ("kv_cache", KV_CACHES),
                             ("weight_only_kernel", WEIGHT_ONLY_KERNELS),
                             ("moe_kernel", MOE_KERNELS),
                             ("block_fp8_gemm", BLOCK_FP8_KERNELS),
                             ("block_fp8_gemm_unaligned", BLOCK_FP8_KERNELS),
                             ("block_fp8_fallback", ("", "triton")),
                             ("admission", ADMISSIONS),
                             ("mla_absorb", MLA_ABSORBS),
                             ("graph_counts", GRAPH_COUNTS),
                             ("memory_fraction_of", MEMORY_FRACTIONS_OF),
                             ("fsdp", FSDP_IMPLEMENTATIONS),
                             ("loss_kernel", LOSS_KERNELS)):  # fmt: skip
            value = getattr(self, key)
            if value not in choices:
                named = ", ".join(c for c in choices if c) + (" (or left out)" if "" in choices
                                                              else "")  # fmt: skip
                raise WorkloadError(f"runtime {self.name!r}: {key} must be one of {named}, "
                                    f"got {value!r}")  # fmt: skip
        if self.cuda_graphs and not self.prefill_graphs and not self.host_launch_s > 0:
            raise WorkloadError(f"runtime {self.name!r}: host_launch_s must be > 0 where "
                                "prefill_graphs = false (steps with prompts launch their kernels "
                                f"from the host), got {self.host_launch_s!r}")  # fmt: skip
        if self.cuda_graphs and self.graph_max_tokens and not self.host_launch_s > 0:
            raise WorkloadError(f"runtime {self.name!r}: host_launch_s must be > 0 where "
                                "graph_max_tokens > 0 (larger steps launch their kernels from the "
                                f"host), got {self.host_launch_s!r}")  # fmt: skip
        if self.training and self.rope not in ("complex", "rotation"):
            # the split halves' backward (slices, negation, accumulations) is not counted
            raise WorkloadError(f"runtime {self.name!r}: rope = {self.rope} has no training "
                                "backward in roofsim; a training runtime takes rope = complex "
                                "or rotation")  # fmt: skip

    def describe(self) -> dict:
        return {
            "name": self.name,
            "elementwise": self.elementwise,
            "rms_norm": self.rms_norm,
            "rope": self.rope,
            "cuda_graphs": self.cuda_graphs,
            "prefill_graphs": self.prefill_graphs,
            "graph_max_tokens": self.graph_max_tokens,
            "graph_max_tokens_tp4": self.graph_max_tokens_tp4,
            "graph_counts": self.graph_counts,
            "piecewise_break_s": self.piecewise_break_s,
            "decode_full_graphs": self.decode_full_graphs,
            "host_launch_s": self.host_launch_s,
            "host_collective_s": self.host_collective_s,
            "step_overhead_s": self.step_overhead_s,
            "step_overhead_per_seq_s": self.step_overhead_per_seq_s,
            "scheduler_steps": self.scheduler_steps,
            "output_per_seq_s": self.output_per_seq_s,
            "async_output": self.async_output,
            "server_per_seq_s": self.server_per_seq_s,
            "attention_kernel": self.attention_kernel,
            "sinks_kernel": self.sinks_kernel,
            "sinks_native": list(self.sinks_native),
            "allreduce_latency_s": self.allreduce_latency_s,
            "allreduce_bus_bandwidth": self.allreduce_bus_bandwidth,
            "nccl_nvls": self.nccl_nvls,
            "paged_prefill": self.paged_prefill,
            "non_torch_bytes": self.non_torch_bytes,
            "non_torch_bytes_tp": self.non_torch_bytes_tp,
            "training": self.training,
            "fused_wgrad_accumulation": self.fused_wgrad_accumulation,
            "fp8_input_quant": self.fp8_input_quant,
            "weight_only_kernel": self.weight_only_kernel,
            "int4_group_bytes": self.int4_group_bytes,
            "moe_kernel": self.moe_kernel,
            "grouped_topk_kernels": self.grouped_topk_kernels,
            "deepep_num_sms": self.deepep_num_sms,
            "mla_decode_kernels": list(self.mla_decode_kernels),
            "mla_absorb": self.mla_absorb,
            "sampler_greedy_bytes": self.sampler_greedy_bytes,
            "sampler_greedy_kernels": self.sampler_greedy_kernels,
            "sampler_random_bytes": self.sampler_random_bytes,
            "sampler_random_kernels": self.sampler_random_kernels,
            "sampler_top_p_bytes": self.sampler_top_p_bytes,
            "sampler_top_p_kernels": self.sampler_top_p_kernels,
            "block_fp8_gemm": self.block_fp8_gemm,
            "block_fp8_gemm_unaligned": self.block_fp8_gemm_unaligned,
            "block_fp8_fallback": self.block_fp8_fallback,
            "block_fp8_native": list(self.block_fp8_native),
            "admission": self.admission,
            "mixed_prefill": self.mixed_prefill,
            "fsdp": self.fsdp,
            "loss_kernel": self.loss_kernel,
            "qkv_split_copies": self.qkv_split_copies,
            "memory_fraction_of": self.memory_fraction_of,
            "ring_attention": self.ring_attention,
            "kv_cache": self.kv_cache,
            "gqa_repeat": self.gqa_repeat,
            "separate_projections": self.separate_projections,
            "strided_cycles_per_element": self.strided_cycles_per_element,
            "cast_cycles_per_element": self.cast_cycles_per_element,
        }

    def sampler(self, sampling: str) -> tuple[float, int]:
        """(bytes per logit, kernels) of this runtime's sampler for ``sampling`` (SAMPLINGS;
        none: no sampler, (0, 0))."""
        if sampling == "none":
            return 0.0, 0
        mode = sampling.replace("-", "_")
        return getattr(self, f"sampler_{mode}_bytes"), getattr(self, f"sampler_{mode}_kernels")

    def non_torch(self, tp: int) -> float:
        """Bytes a chip of a TP-``tp`` engine holds outside its tensors (``non_torch_bytes``)."""
        return (
            self.non_torch_bytes_tp if tp > 1 and self.non_torch_bytes_tp else self.non_torch_bytes
        )

    def loss(self, eager: bool) -> str:
        """The cross-entropy kernel a training step runs (``loss_kernel``; empty: ``eager``
        where the step's elementwise ops run ``eager``, else ``fused``)."""
        return self.loss_kernel or ("eager" if eager else "fused")

    def norm_primitive(self, norm: str) -> str:
        """The ``workloads.build.EAGER_PRIMITIVES`` key an eager ``norm`` (rmsnorm | layernorm)
        runs as: a native RMSNorm costs as LayerNorm's one kernel."""
        return "layernorm" if norm == "rmsnorm" and self.rms_norm == "native" else norm

    @property
    def scalar_rates(self) -> tuple[float, float]:
        """(strided, cast) kernels' core clock cycles an output element
        (``workloads.build.scalar``)."""
        return self.strided_cycles_per_element, self.cast_cycles_per_element

    @property
    def rope_primitive(self) -> str:
        """The ``EAGER_PRIMITIVES`` key an eager RoPE runs as."""
        return {"halves": "rope_halves", "rotate_half": "rope_rotate_half",
                "rotation": "rope_rotation"}.get(self.rope, "rope")  # fmt: skip

    def kernel_for_sinks(self, sinks: bool, kernel: str) -> str:
        """The kernel this runtime runs instead of ``kernel`` for attention with sinks where
        the chip's default takes none (``sinks_kernel``, resolved per chip at cost time); ""
        where it never does: no sinks, no such kernel, or a kernel the workload named."""
        return self.sinks_kernel if sinks and kernel == "native" else ""

    @property
    def default_attention_kernel(self) -> str:
        """The kernel a workload that names none runs under this runtime."""
        return self.attention_kernel or "native"

    def graph_limit(self, tp: int = 1) -> int:
        """The most token rows a step replays from a graph where the model runs tensor-parallel
        over ``tp`` chips (``graph_max_tokens``, ``graph_max_tokens_tp4`` from TP 4; 0: any)."""
        return self.graph_max_tokens_tp4 if tp >= 4 and self.graph_max_tokens_tp4 else (
            self.graph_max_tokens)  # fmt: skip

    def graphed(
        self, prompts: bool = False, tokens: Any = None, tp: int = 1, sequences: Any = None
    ) -> Any:
        """Whether a step's kernels replay from a CUDA graph; ``prompts``: the step carries
        prompt tokens (a prefill, or a serving iteration with prompt chunks); ``tokens``: its
        token rows (None: a size the runtime captures; an array gives one answer a point);
        ``tp``: the model's tensor-parallel degree (``graph_limit``); ``sequences``: its
        sequences, which the limit counts instead where ``graph_counts = "sequences"`` in a
        step without prompts (more rows than sequences under speculative decoding; None: as
        many as rows)."""
        graphed = self.cuda_graphs and (self.prefill_graphs or not prompts)
        limit = self.graph_limit(tp)
        if not graphed or not limit or tokens is None:
            return graphed
        # (a step with prompts counts its rows: a sequence-counted graph holds decodes only)
        by_seq = self.graph_counts == "sequences" and sequences is not None and not prompts
        counted = sequences if by_seq else tokens
        return np.asarray(counted) <= limit

    def break_s(self, prompts: bool = False) -> float:
        """Host time of each eager attention call between the pieces of a graphed step's
        piecewise graph (0: one graph, or a decode step under full decode graphs)."""
        return 0.0 if self.decode_full_graphs and not prompts else self.piecewise_break_s

    def host_step_s(
        self, sequences: Any, sampled: Any = None, decode_only: bool = True
    ) -> tuple[Any, Any]:
        """(host time a step waits for, host time that runs beside the step's chip work) in
        seconds, for a step over ``sequences`` sequences of which ``sampled`` (default: all)
        produce a token. The scheduler's part covers every sequence and is paid once per
        multi-step group only in ``decode_only`` steps (vLLM runs a step with prompts as a
        single step); output processing and the server's part cover the sampled ones."""
        sampled = sequences if sampled is None else sampled
        sched = self.step_overhead_s + self.step_overhead_per_seq_s * sequences
        critical = sched / (self.scheduler_steps if decode_only else 1)
        critical = critical + self.server_per_seq_s * sampled
        output = self.output_per_seq_s * sampled
        if self.async_output:
            return critical, output
        return critical + output, 0.0


def _folder():
    return resources.files("workloads") / "presets" / "runtimes"


def list_runtimes() -> list[str]:
    """Names of the runtime presets, sorted."""
    return sorted(p.name[:-5] for p in _folder().iterdir() if p.name.endswith(".toml"))


def runtime_aliases() -> dict[str, str]:
    """The preset each other name of a runtime stands for (a preset's ``aliases``: the bare
    software name for its newest modelled version, versions that run the same engine)."""
    return _aliases_in(str(_folder()))


@cache
def _aliases_in(folder: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in list_runtimes():
        aliases = tomllib.loads((_folder() / f"{name}.toml").read_text()).get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise WorkloadError(
                f"runtime {name!r}: aliases must be a list of names, got {aliases!r}"
            )
        out.update({a.lower(): name for a in aliases})
    return out


def runtime_preset(name: str) -> str | None:
    """The preset ``name`` or one of its aliases names (any case), else None."""
    lower = name.lower()
    return lower if lower in list_runtimes() else runtime_aliases().get(lower)


def runtime_name(name: Any) -> str:
    """The preset ``name`` or one of its aliases names (any case); WorkloadError naming the
    presets and aliases for an unknown one."""
    if not isinstance(name, str):
        raise WorkloadError(f"--runtime must be a runtime name, got {name!r}")
    presets = list_runtimes()
    found = runtime_preset(name)
    if found is None:
        aliases = ", ".join(f"{a} ({n})" for a, n in sorted(runtime_aliases().items()))
        raise WorkloadError(
            f"--runtime: unknown runtime {name!r}; available: {', '.join(presets)}; "
            f"aliases: {aliases}"
        )
    return found


@cache
def load_runtime(name: str = DEFAULT_RUNTIME) -> Runtime:
    """A runtime preset by name or alias, or a runtime TOML file (a path ending in ``.toml``:
    a what-if on the software, usually ``base = "<preset>"`` and the fields it changes, as the
    presets' variants are written); WorkloadError naming the presets for an unknown one."""
    if isinstance(name, str) and name.lower().endswith(".toml"):
        return _load_file(name)
    return _load(runtime_name(name), ())


def _load_file(path: str) -> Runtime:
    """A runtime from the TOML file at ``path``: the fields of a preset, checked as a preset's
    are; ``base`` may name a preset or one of its aliases. Its name is the file's stem."""
    from pathlib import Path

    file = Path(path)
    if not file.is_file():
        raise WorkloadError(f"--runtime: no runtime file {path!r}; give a preset name (roofsim "
                            "runtimes lists them) or a .toml file with a preset's fields")  # fmt: skip
    try:
        raw = tomllib.loads(file.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise WorkloadError(f"--runtime: {path!r} is not valid TOML: {e}") from None
    if "aliases" in raw:
        raise WorkloadError(f"runtime file {path!r}: aliases are names of a preset; remove them")
    base = raw.get("base")
    if isinstance(base, str) and runtime_preset(base) is not None:
        raw["base"] = runtime_preset(base)
        if "full_name" not in raw:  # the preset's, and what the file changes in it
            changed = sorted(k for k in raw if k != "base" and not k.endswith("_source"))
            raw["full_name"] = (f"{load_runtime(raw['base']).full_name}; {file.name}: "
                                f"{', '.join(changed) or 'no change'}")  # fmt: skip
    return _build(raw, file.stem, (str(path),), where=f"runtime file {path!r}")


def _count(value: Any) -> bool:
    """Whether a preset's ``value`` is an integer >= 1 (a TOML true is not)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _load(name: str, seen: tuple[str, ...]) -> Runtime:
    if name in seen:
        chain = " -> ".join((*seen, name))
        raise WorkloadError(f"runtime {seen[0]!r}: base presets form a cycle ({chain})")
    if name not in list_runtimes():
        raise WorkloadError(
            f"--runtime: unknown runtime {name!r}; available: {', '.join(list_runtimes())}"
        )
    raw = tomllib.loads((_folder() / f"{name}.toml").read_text())
    raw.pop("aliases", None)  # names of this preset, not a field (and never inherited)
    return _build(raw, name, seen)


def _build(raw: dict[str, Any], name: str, seen: tuple[str, ...], where: str = "") -> Runtime:
    """The runtime ``raw`` describes (a preset's or a runtime file's fields), checked."""
    where = where or f"runtime {name!r}"
    known = set(Runtime.__dataclass_fields__) | {"base", "source"}
    unknown = sorted(k for k in raw if k.removesuffix("_source") not in known)
    if unknown:  # a misspelt field would silently keep its default
        raise WorkloadError(f"{where}: unknown field {unknown[0]!r}; fields are "
                            f"{', '.join(sorted(known - {'sources'}))}")  # fmt: skip
    base = raw.pop("base", None)
    if base is not None:  # a variant: the base preset's fields and sources, then its own
        if base not in list_runtimes():
            raise WorkloadError(f"{where}: base must name another runtime preset, got {base!r}")
        if "full_name" not in raw:
            raise WorkloadError(f"{where}: a variant needs its own full_name")
        own = [k for k in raw if k.startswith("sampler_") and not k.endswith("_source")]
        if own and "sampler_greedy_bytes_source" not in raw:  # one citation covers all six
            raise WorkloadError(f"{where}: a variant that sets {own[0]} gives its own "
                                "sampler_greedy_bytes_source (the citation of all six sampler "
                                "fields)")  # fmt: skip
        parent = _load(base, (*seen, name))
        # a field the variant sets keeps no citation of the base's value
        kept = {k: v for k, v in parent.sources.items() if k.removesuffix("_source") not in raw}
        raw = {**parent.describe(), **kept, "name": name, **raw}
    elementwise = raw.get("elementwise", "fused")
    if elementwise not in ELEMENTWISE:
        raise WorkloadError(f"{where}: elementwise must be one of {', '.join(ELEMENTWISE)}")
    rms_norm = raw.get("rms_norm", "reference")  # checked by Runtime.__post_init__
    rope = raw.get("rope", "complex")
    fp8_quant = raw.get("fp8_input_quant", "fused")  # checked by Runtime.__post_init__
    ring = raw.get("ring_attention", "yunchang")
    kv_cache = raw.get("kv_cache", "inplace")  # checked by Runtime.__post_init__
    weight_only = raw.get("weight_only_kernel", "native")  # checked by Runtime.__post_init__
    moe_kernel = raw.get("moe_kernel", "library")  # checked by Runtime.__post_init__
    block_fp8 = {k: raw.get(k, "deepgemm")  # checked by Runtime.__post_init__
                 for k in ("block_fp8_gemm", "block_fp8_gemm_unaligned")}  # fmt: skip
    block_fp8["block_fp8_fallback"] = raw.get("block_fp8_fallback", "")  # checked below too
    admission = raw.get("admission", "watermark")  # checked by Runtime.__post_init__
    fraction_of = raw.get("memory_fraction_of", "total")  # checked by Runtime.__post_init__
    fsdp = raw.get("fsdp", "")  # checked by Runtime.__post_init__
    loss_kernel = raw.get("loss_kernel", "")  # checked by Runtime.__post_init__
    flags = {}
    for key, default in (("cuda_graphs", True), ("prefill_graphs", True), ("async_output", False),
                         ("training", False), ("fused_wgrad_accumulation", False),
                         ("decode_full_graphs", False), ("gqa_repeat", False),
                         ("separate_projections", False), ("mixed_prefill", True),
                         ("qkv_split_copies", False), ("nccl_nvls", True),
                         ("paged_prefill", False)):  # fmt: skip
        flags[key] = raw.get(key, default)
        if not isinstance(flags[key], bool):
            raise WorkloadError(f"{where}: {key} must be true or false, got {flags[key]!r}")
    steps = raw.get("scheduler_steps", 1)
    if not _count(steps):
        raise WorkloadError(f"{where}: scheduler_steps must be an integer >= 1, got {steps!r}")
    topk = raw.get("grouped_topk_kernels", 1)
    if not _count(topk):
        raise WorkloadError(f"{where}: grouped_topk_kernels must be an integer >= 1 (the "
                            f"kernels a group-limited top-k launches), got {topk!r}")  # fmt: skip
    deepep_sms = raw.get("deepep_num_sms", 0)
    if isinstance(deepep_sms, bool) or not isinstance(deepep_sms, int) or deepep_sms < 0:
        raise WorkloadError(f"{where}: deepep_num_sms must be an integer >= 0 (the cores "
                            "DeepEP's kernels hold; 0: the system's collective_cores), got "
                            f"{deepep_sms!r}")  # fmt: skip
    mla = raw.get("mla_decode_kernels", [])
    if not isinstance(mla, list) or len(mla) not in (0, 2) or not all(map(_count, mla)):
        raise WorkloadError(f"{where}: mla_decode_kernels must be two integers >= 1 (the MLA "
                            "block's launches a layer in decode at one token row and at more), "
                            f"or [] for roofsim's own ops; got {mla!r}")  # fmt: skip
    sampler = {}
    for mode in SAMPLED:
        b, k = raw.get(f"sampler_{mode}_bytes", 2.0), raw.get(f"sampler_{mode}_kernels", 1)
        if isinstance(b, bool) or not isinstance(b, int | float) or not 0 < b < math.inf:
            raise WorkloadError(f"{where}: sampler_{mode}_bytes must be a number of bytes > 0 "
                                f"(read and written per logit), got {b!r}")  # fmt: skip
        if not _count(k):
            raise WorkloadError(f"{where}: sampler_{mode}_kernels must be an integer >= 1, "
                                f"got {k!r}")  # fmt: skip
        sampler[f"sampler_{mode}_bytes"], sampler[f"sampler_{mode}_kernels"] = float(b), k
    max_tokens = raw.get("graph_max_tokens", 0)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 0:
        raise WorkloadError(f"{where}: graph_max_tokens must be an integer >= 0 (0: any step "
                            f"size replays a graph), got {max_tokens!r}")  # fmt: skip
    max_tokens_tp4 = raw.get("graph_max_tokens_tp4", 0)
    if (
        isinstance(max_tokens_tp4, bool)
        or not isinstance(max_tokens_tp4, int)
        or max_tokens_tp4 < 0
    ):
        raise WorkloadError(f"{where}: graph_max_tokens_tp4 must be an integer >= 0 (0: "
                            f"graph_max_tokens at any TP), got {max_tokens_tp4!r}")  # fmt: skip
    if max_tokens_tp4 and not max_tokens:
        raise WorkloadError(f"{where}: graph_max_tokens_tp4 = {max_tokens_tp4} needs "
                            "graph_max_tokens > 0 (the limit below TP 4); set both, or "
                            "graph_max_tokens_tp4 = 0 too")  # fmt: skip
    values = {}
    for key in (
        "host_launch_s",
        "host_collective_s",
        "piecewise_break_s",
        "step_overhead_s",
        "step_overhead_per_seq_s",
        "output_per_seq_s",
        "server_per_seq_s",
        "allreduce_latency_s",
        "non_torch_bytes",
        "non_torch_bytes_tp",
        "strided_cycles_per_element",
        "cast_cycles_per_element",
    ):
        v = raw.get(key, 0.0)
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v < math.inf:
            unit = ("seconds" if key.endswith("_s") else "cycles" if key.endswith("per_element")
                    else "bytes")  # fmt: skip
            raise WorkloadError(f"{where}: {key} must be a number of {unit} >= 0, got {v!r}")
        values[key] = float(v)
    group_bytes = raw.get("int4_group_bytes", INT4_GROUP_BYTES)
    if (isinstance(group_bytes, bool) or not isinstance(group_bytes, int | float)
            or not 0 < group_bytes < math.inf):  # fmt: skip
        raise WorkloadError(f"{where}: int4_group_bytes must be the bytes of an int4 weight "
                            f"group's scale and zero point (> 0; 2 for a 16-bit scale alone), "
                            f"got {group_bytes!r}")  # fmt: skip
    values["int4_group_bytes"] = float(group_bytes)
    kernel = raw.get("attention_kernel", "")
    if kernel not in ("", "native", "fa2"):
        raise WorkloadError(f"{where}: attention_kernel must be native or fa2, got {kernel!r}")
    sinks_kernel = raw.get("sinks_kernel", "")
    if sinks_kernel not in ("", "triton"):
        raise WorkloadError(f"{where}: sinks_kernel must be triton (or left out: the default "
                            f"kernel runs attention with sinks), got {sinks_kernel!r}")  # fmt: skip
    sinks_native = raw.get("sinks_native", [])
    if not isinstance(sinks_native, list) or not all(is_capability(c) for c in sinks_native):
        raise WorkloadError(f"{where}: sinks_native must be a list of compute capabilities like "
                            f"[\"9.0\", \"10.0\"], got {sinks_native!r}")  # fmt: skip
    if sinks_native and not sinks_kernel:
        raise WorkloadError(f"{where}: sinks_native names where the default kernel takes sinks; "
                            "it needs a sinks_kernel for the other chips (or remove it)")  # fmt: skip
    block_native = raw.get("block_fp8_native", [])
    if not isinstance(block_native, list) or not all(is_capability(c) for c in block_native):
        raise WorkloadError(f"{where}: block_fp8_native must be a list of compute capabilities "
                            f"like [\"9.0\"], got {block_native!r}")  # fmt: skip
    if bool(block_native) != bool(block_fp8["block_fp8_fallback"]):
        raise WorkloadError(f"{where}: give block_fp8_native (the compute capabilities the "
                            "block-fp8 kernels are built for) and block_fp8_fallback (the kernel "
                            "elsewhere) together, or neither")  # fmt: skip
    busbw = raw.get("allreduce_bus_bandwidth", 0.0)
    if isinstance(busbw, bool) or not isinstance(busbw, int | float) or not 0 <= busbw < math.inf:
        raise WorkloadError(f"{where}: allreduce_bus_bandwidth must be a number of bytes/s >= 0, "
                            f"got {busbw!r}")  # fmt: skip
    if bool(values["allreduce_latency_s"]) != bool(busbw):
        raise WorkloadError(f"{where}: give allreduce_latency_s and allreduce_bus_bandwidth "
                            "together (a custom all-reduce needs both), or set both to 0 for NCCL")  # fmt: skip
    values["allreduce_bus_bandwidth"] = float(busbw)
    if flags["decode_full_graphs"] and not (flags["cuda_graphs"] and values["piecewise_break_s"]):
        raise WorkloadError(f"{where}: decode_full_graphs needs cuda_graphs = true and "
                            "piecewise_break_s > 0 (it exempts decode steps from a piecewise "
                            "graph's breaks)")  # fmt: skip
    return Runtime(
        name=str(raw.get("name", name)),
        full_name=str(raw.get("full_name", name)),
        elementwise=elementwise,
        rms_norm=rms_norm,
        rope=rope,
        fp8_input_quant=fp8_quant,
        ring_attention=ring,
        kv_cache=kv_cache,
        weight_only_kernel=weight_only,
        moe_kernel=moe_kernel,
        **block_fp8,
        block_fp8_native=tuple(block_native),
        admission=admission,
        memory_fraction_of=fraction_of,
        fsdp=fsdp,
        loss_kernel=loss_kernel,
        attention_kernel=kernel,
        sinks_kernel=sinks_kernel,
        sinks_native=tuple(sinks_native),
        scheduler_steps=steps,
        graph_max_tokens=max_tokens,
        graph_max_tokens_tp4=max_tokens_tp4,
        grouped_topk_kernels=topk,
        deepep_num_sms=deepep_sms,
        mla_decode_kernels=tuple(mla),
        mla_absorb=raw.get("mla_absorb", "bmm"),  # checked by Runtime.__post_init__
        graph_counts=raw.get("graph_counts", "tokens"),  # checked by Runtime.__post_init__
        **sampler,
        **flags,
        sources={k: str(v) for k, v in raw.items() if k == "source" or k.endswith("_source")},
        **values,
    )


def launch(
    ops: list[Op] | tuple[Op, ...],
    runtime: Runtime,
    prompts: bool = False,
    tokens: Any = None,
    tp: int = 1,
    sequences: Any = None,
) -> list[Op]:
    """``ops`` with the host time of their launches where ``runtime`` issues kernels one by
    one (a collective is one call, at ``host_collective_s`` where the runtime gives it), or of
    the eager attention calls between the pieces of a piecewise graph; ``prompts``: the step
    carries prompt tokens; ``tokens``: its token rows, ``tp`` the model's tensor-parallel
    degree and ``sequences`` its sequences (``Runtime.graphed``)."""
    graphed = runtime.graphed(prompts, tokens, tp, sequences)
    if np.ndim(graphed):  # per point: a step larger than the captured sizes launches eager
        eager = launch(ops, replace(runtime, cuda_graphs=False), prompts)
        piece = launch(ops, runtime, prompts)
        return [replace(e, host_s=np.where(graphed, p.host_s, e.host_s))
                for e, p in zip(eager, piece, strict=True)]  # fmt: skip
    if graphed:
        brk = runtime.break_s(prompts)
        return [op.but(host_s=brk) if brk and op.kind is OpKind.ATTENTION else op
                for op in ops]  # fmt: skip
    if not runtime.host_launch_s:
        return list(ops)
    h = runtime.host_launch_s
    call = runtime.host_collective_s or h
    return [op.but(host_s=call if op.kind is OpKind.COLLECTIVE else op.kernels * h)
            for op in ops]  # fmt: skip


def all_reduces(ops: list[Op], runtime: Runtime) -> list[Op]:
    """``ops`` with their all-reduces marked to run on ``runtime``'s own intra-node kernel where
    it has one (the cost model takes it inside one node where it beats NCCL), and kept off
    NCCL's NVLS where the runtime turns it off (``nccl_nvls``)."""
    mark: dict[str, Any] = {} if runtime.nccl_nvls else {"nvls": False}
    if runtime.allreduce_latency_s:
        mark |= {"custom_latency_s": runtime.allreduce_latency_s,
                 "custom_bus_bandwidth": runtime.allreduce_bus_bandwidth}  # fmt: skip
    if not mark:
        return ops
    return [op.but(collective=replace(op.collective, **mark))
            if op.collective is not None and op.collective.kind == "all_reduce" else op
            for op in ops]  # fmt: skip


def step_op(
    runtime: Runtime, dtype: str, sequences: Any = 1, decode_only: bool = True
) -> Op | None:
    """The host work of one step over ``sequences`` sequences that the chip waits for, as an op
    (None if there is none); ``decode_only``: see ``Runtime.host_step_s``."""
    host, beside = runtime.host_step_s(sequences, decode_only=decode_only)
    if not (np.any(host) or np.any(beside)):
        return None
    return Op(name="host_step", kind=OpKind.ELEMENTWISE, family="other", dtype=dtype, flops=0.0,
              model_flops=0.0, kernels=0, host_s=host, host_beside_s=beside)  # fmt: skip
