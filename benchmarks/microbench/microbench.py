#!/usr/bin/env python3
"""Microbenchmarks of one GPU for roofsim's chip model (PyTorch only).

Usage:
    python benchmarks/microbench/microbench.py --out DIR [--quick] [--device cuda|cpu]
        [--sections env,gemm,membw,launch,attention,llm (default; moe, conv, steady only when named)]
        [--gemm-groups square,llm,awkward,llm_extra,batch_edge (default all)]
        [--attention-grid full|short|decode-edges[,...] (default full)] [--budget-s 520]

Writes into DIR (each CSV with a header row, flushed after every point so a
killed run still leaves its partial results):
    env.json       device, SM count, L2, memory, versions, clock summary
    clocks.csv     nvidia-smi samples idle / under a sustained bf16 8192^3 matmul loop
    gemm.csv       bf16 / fp8 / tf32 matrix products (A[M,K] @ W[N,K]^T, nn.Linear layout)
    moe.csv        grouped (mixture-of-experts) bf16 GEMMs: batched, grouped and routed rows
    conv.csv       VAE-decoder bf16 3x3 / 3x3x3 convolutions, NCHW and channels-last
    membw.csv      device copy / read / write bandwidth, 4 KiB .. 4 GiB
    launch.csv     per-kernel fixed cost: eager issue rate, GPU back-to-back, CUDA graph
    attention.csv  flash SDPA prefill and decode (GQA) times
    llm.csv        end-to-end Llama-style decoder (random weights) decode/prefill step times
    steady.csv     FlashAttention-2 back to back, then matmul + host-gap cycles, with clock and power (opt-in)

Never changes any GPU setting; only reads nvidia-smi.

Timing method (GEMM, membw, attention, launch 'gpu_backtoback'): warm-up, then
batches of `inner` back-to-back calls between two CUDA events, median over
batches.  Before each batch a spin kernel (torch.cuda._sleep) holds the GPU
long enough for the host to enqueue the whole batch, so the number is the GPU
time per call (kernel + the hardware gap between kernels), not the host's
Python/dispatcher issue rate.  Inputs rotate over several buffer sets whenever
one set would fit in L2, so the data comes from HBM as it would in a model.
The LLM section instead measures wall time per step (host-synchronised), since
there the host issue cost is part of what is being measured (eager vs graph).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
import traceback

import torch
import torch.nn.functional as F

try:  # optional: a plain streaming-read kernel for membw (torch.sum is a poor read probe)
    import triton
    import triton.language as tl

    @triton.jit
    def _triton_read_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
        pid = tl.program_id(0)
        offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + offs, mask=offs < n, other=0.0)
        tl.store(out_ptr + pid, tl.sum(x, axis=0))
except Exception:  # noqa: BLE001
    triton = None

TRITON_READ_BLOCK = 4096

GiB = 1 << 30
MiB = 1 << 20
KiB = 1 << 10


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


# --------------------------------------------------------------------------- output
class CSVOut:
    def __init__(self, path, cols, device_name, date):
        self.cols = ["device", "date"] + list(cols)
        self.device_name = device_name
        self.date = date
        self.f = open(path, "w", buffering=1)
        self.f.write(",".join(self.cols) + "\n")
        self.f.flush()
        self.n = 0

    @staticmethod
    def _fmt(v):
        if v is None:
            return ""
        if isinstance(v, bool):
            return "True" if v else "False"
        if isinstance(v, float):
            return repr(v) if math.isfinite(v) else ""
        s = str(v)
        if "," in s or '"' in s:
            s = '"' + s.replace('"', '""') + '"'
        return s

    def row(self, **kw):
        kw.setdefault("device", self.device_name)
        kw.setdefault("date", self.date)
        self.f.write(",".join(self._fmt(kw.get(c)) for c in self.cols) + "\n")
        self.f.flush()
        self.n += 1

    def close(self):
        self.f.close()


# --------------------------------------------------------------------------- timing
class Bench:
    CLOCK_HZ = 2.0e9  # cycles/s used to turn a wanted spin time into _sleep cycles

    def __init__(self, device):
        self.device = device
        self.cuda = device.type == "cuda"
        self.has_sleep = self.cuda and hasattr(torch.cuda, "_sleep")
        if self.cuda:
            self.e0 = torch.cuda.Event(enable_timing=True)
            self.e1 = torch.cuda.Event(enable_timing=True)

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def _batch(self, fns, start, inner, sleep_s):
        n = len(fns)
        if self.cuda:
            if sleep_s > 0 and self.has_sleep:
                torch.cuda._sleep(int(sleep_s * self.CLOCK_HZ))
            self.e0.record()
            h0 = time.perf_counter()
            for i in range(inner):
                fns[(start + i) % n]()
            h1 = time.perf_counter()
            self.e1.record()
            self.e1.synchronize()
            return self.e0.elapsed_time(self.e1) * 1e-3 / inner, (h1 - h0) / inner
        t0 = time.perf_counter()
        for i in range(inner):
            fns[(start + i) % n]()
        t1 = time.perf_counter()
        return (t1 - t0) / inner, (t1 - t0) / inner

    def time(
        self,
        fns,
        target_s=0.25,
        min_rep=3,
        max_rep=20,
        max_inner=200,
        batch_target_s=1e-3,
        sleep=True,
    ):
        """Median GPU seconds per call of fns (cycled).  Returns (median, info)."""
        if callable(fns):
            fns = [fns]
        n = len(fns)
        for i in range(min(n, 64) + 2):
            fns[i % n]()
        self.sync()
        use_sleep = sleep and self.has_sleep
        s0 = 200e-6 if use_sleep else 0.0
        t_a, h_a = self._batch(fns, 0, 1, s0)
        t_b, h_b = self._batch(fns, 1, 1, s0)
        est = max(min(t_a, t_b), 1e-7)
        host = max(h_a, h_b)
        inner = int(min(max(math.ceil(batch_target_s / est), 1), max_inner))
        sleep_s = min(1.5 * inner * host + 50e-6, 0.05) if use_sleep else 0.0
        reps = int(min(max(target_s / (inner * est + sleep_s), min_rep), max_rep))
        times = []
        idx = 2
        for _ in range(reps):
            t, h = self._batch(fns, idx, inner, sleep_s)
            idx += inner
            times.append(t)
            if use_sleep:
                sleep_s = min(max(sleep_s, 1.5 * inner * h + 50e-6), 0.05)
        med = statistics.median(times)
        info = dict(inner=inner, reps=reps, min=min(times), max=max(times))
        return med, info


def clamp(x, lo, hi):
    return max(lo, min(hi, x))


def free_bytes(device):
    if device.type == "cuda":
        f, _t = torch.cuda.mem_get_info()
        return f
    return 8 * GiB


def cleanup(device):
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def randn(shape, dtype, device, std=1.0):
    t = torch.empty(shape, dtype=dtype, device=device)
    t.normal_(0.0, std)
    return t


def is_oom(e):
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower()


# --------------------------------------------------------------------------- nvidia-smi
SMI_BASE = [
    "clocks.sm",
    "clocks.max.sm",
    "clocks.mem",
    "power.draw",
    "power.limit",
    "temperature.gpu",
]
SMI_EXTRA = ["clocks_event_reasons.active", "utilization.gpu"]


class Smi:
    def __init__(self):
        self.exe = shutil.which("nvidia-smi")
        self.fields = None
        if self.exe:
            for fields in (SMI_BASE + SMI_EXTRA, SMI_BASE + ["utilization.gpu"], SMI_BASE):
                r = self._raw(fields)
                if r is not None:
                    self.fields = fields
                    break

    def _raw(self, fields):
        try:
            p = subprocess.run(
                [
                    self.exe,
                    "--query-gpu=" + ",".join(fields),
                    "--format=csv,noheader,nounits",
                    "-i",
                    "0",
                ],
                capture_output=True,
                text=True,
                timeout=10,
            )
        except Exception:
            return None
        if p.returncode != 0:
            return None
        return p.stdout.strip().splitlines()[0] if p.stdout.strip() else None

    def sample(self):
        if not self.fields:
            return None
        r = self._raw(self.fields)
        if r is None:
            return None
        vals = [v.strip() for v in r.split(",")]
        return dict(zip(self.fields, vals))

    def text(self, args):
        if not self.exe:
            return None
        try:
            p = subprocess.run([self.exe] + args, capture_output=True, text=True, timeout=20)
            return p.stdout
        except Exception as e:  # noqa: BLE001
            return "error: %r" % (e,)


def _sustain(bench, fn, flop, seconds, sample, per_chunk=20):
    """Run ``fn`` back to back for ``seconds`` in chunks of ``per_chunk`` calls timed by CUDA
    events (host clock on CPU), at least one chunk, while a thread calls ``sample(tflops)``
    every second with the TFLOP/s of the chunks finished since the last sample (None before
    the first; no thread where ``sample`` is None). Returns the chunks as (host end time, calls,
    seconds)."""
    chunks = []
    stop = threading.Event()
    lock = threading.Lock()

    def sampler():
        last_i = 0
        while not stop.is_set():
            time.sleep(1.0)
            if stop.is_set():
                break
            with lock:
                cur = chunks[last_i:]
                last_i = len(chunks)
            tfl = None
            if cur:
                nn = sum(x[1] for x in cur)
                ss = sum(x[2] for x in cur)
                tfl = flop * nn / ss / 1e12 if ss > 0 else None
            sample(tfl)

    th = threading.Thread(target=sampler, daemon=True)
    if sample is not None:
        th.start()
    t0 = time.perf_counter()
    while not chunks or time.perf_counter() - t0 < seconds:
        if bench.cuda:
            e0 = torch.cuda.Event(enable_timing=True)
            e1 = torch.cuda.Event(enable_timing=True)
            e0.record()
            for _ in range(per_chunk):
                fn()
            e1.record()
            e1.synchronize()
            dt = e0.elapsed_time(e1) * 1e-3
        else:
            h0 = time.perf_counter()
            for _ in range(per_chunk):
                fn()
            dt = time.perf_counter() - h0
        with lock:
            chunks.append((time.perf_counter(), per_chunk, dt))
    stop.set()
    if sample is not None:
        th.join(timeout=15)
    bench.sync()
    return chunks


# --------------------------------------------------------------------------- sections
def section_env(ctx):
    dev, bench, out = ctx["device"], ctx["bench"], ctx["out"]
    env = dict(ctx["env"])
    smi = Smi()
    env["nvidia_smi_fields"] = smi.fields
    clk_cols = [
        "phase",
        "t_s",
        "clocks_sm_mhz",
        "clocks_max_sm_mhz",
        "clocks_mem_mhz",
        "power_draw_w",
        "power_limit_w",
        "temperature_c",
        "utilization_gpu_pct",
        "clocks_event_reasons",
        "matmul_tflops",
    ]
    clk = CSVOut(os.path.join(out, "clocks.csv"), clk_cols, ctx["dname"], ctx["date"])
    keymap = {
        "clocks.sm": "clocks_sm_mhz",
        "clocks.max.sm": "clocks_max_sm_mhz",
        "clocks.mem": "clocks_mem_mhz",
        "power.draw": "power_draw_w",
        "power.limit": "power_limit_w",
        "temperature.gpu": "temperature_c",
        "utilization.gpu": "utilization_gpu_pct",
        "clocks_event_reasons.active": "clocks_event_reasons",
    }
    samples = []
    t_start = time.perf_counter()

    def take(phase, tflops=None):
        s = smi.sample()
        if s is None:
            return
        row = {keymap[k]: v for k, v in s.items() if k in keymap}
        row.update(phase=phase, t_s=round(time.perf_counter() - t_start, 3), matmul_tflops=tflops)
        clk.row(**row)
        samples.append(row)

    if smi.fields:
        env["nvidia_smi_q_clock"] = smi.text(["-q", "-d", "CLOCK,POWER,PERFORMANCE"])
        env["nvidia_smi_L"] = smi.text(["-L"])
        env["nvidia_smi_summary"] = smi.text([])
    n_idle = 2 if ctx["quick"] else 4
    for _ in range(n_idle):
        take("idle")
        time.sleep(1.0)

    # sustained bf16 matmul loop, sampled every second by a thread
    load_s = 3.0 if ctx["quick"] else 10.0
    nmat = 256 if ctx["quick"] or dev.type != "cuda" else 8192
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    a = randn((nmat, nmat), dtype, dev)
    b = randn((nmat, nmat), dtype, dev)
    c = torch.empty((nmat, nmat), dtype=dtype, device=dev)
    flop = 2.0 * nmat**3
    for _ in range(3):
        torch.mm(a, b, out=c)
    bench.sync()

    def mm():
        torch.mm(a, b, out=c)

    chunks = _sustain(bench, mm, flop, load_s, lambda t: take("load", t))
    for _ in range(2):
        take("after")
        time.sleep(1.0)
    clk.close()

    tot_n = sum(x[1] for x in chunks)
    tot_s = sum(x[2] for x in chunks)
    env["sustained_matmul"] = dict(
        n=nmat,
        dtype=str(dtype),
        seconds=tot_s,
        matmuls=tot_n,
        tflops_mean=flop * tot_n / tot_s / 1e12 if tot_s else None,
        tflops_first_chunk=flop * chunks[0][1] / chunks[0][2] / 1e12 if chunks else None,
        tflops_last_chunk=flop * chunks[-1][1] / chunks[-1][2] / 1e12 if chunks else None,
    )

    def med(phase, key):
        vals = []
        for s in samples:
            if s.get("phase") == phase:
                try:
                    vals.append(float(s[key]))
                except (KeyError, TypeError, ValueError):
                    pass
        return statistics.median(vals) if vals else None

    env["clock_summary"] = {
        ph: {
            k: med(ph, k)
            for k in (
                "clocks_sm_mhz",
                "clocks_max_sm_mhz",
                "clocks_mem_mhz",
                "power_draw_w",
                "power_limit_w",
                "temperature_c",
            )
        }
        for ph in ("idle", "load", "after")
    }
    a = b = c = None  # free the matmul buffers (the closure mm holds names, not tensors)
    cleanup(dev)
    ctx["env"] = env
    write_env(ctx)
    log(
        "env: sustained matmul %.1f TFLOP/s; clocks %s"
        % (env["sustained_matmul"]["tflops_mean"] or -1, env["clock_summary"].get("load"))
    )


def write_env(ctx):
    with open(os.path.join(ctx["out"], "env.json"), "w") as f:
        json.dump(ctx["env"], f, indent=1, default=str)


def _gemm_sizes(quick, cpu):
    if quick:
        sq = [64, 128, 256] if cpu else [256, 1024, 4096]
        llm_m = [1, 16, 64]
        llm_nk = [(256, 128), (128, 256)] if cpu else [(4096, 4096), (11008, 4096)]
        awk = (
            [(m, 256, 256) for m in (192, 256, 320)]
            if cpu
            else [(m, 8192, 8192) for m in (7936, 8192, 8256)]
        )
        return sq, llm_m, llm_nk, awk, sq[:2], sq[:2]
    sq = [256, 512, 1024, 1536, 2048, 3072, 4096, 6144, 8192, 12288, 16384]
    llm_m = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192]
    llm_nk = [
        (4096, 4096),
        (11008, 4096),
        (4096, 11008),
        (12288, 4096),
        (8192, 8192),
        (28672, 8192),
        (8192, 28672),
        (1024, 8192),
    ]
    awk = [(m, 8192, 8192) for m in range(7936, 8448 + 1, 64)]
    awk += [(s, s, s) for s in range(4000, 4200 + 1, 40)]
    fp8_sq = [1024, 2048, 4096, 8192, 16384]
    tf32_sq = [1024, 4096, 8192, 16384]
    return sq, llm_m, llm_nk, awk, fp8_sq, tf32_sq


# decode GEMMs just past a tile/cluster edge (issue 22): roofsim predicts the weights are read
# from L2 once more at M = 257 and 513 on Hopper (a step in time), which only a measurement
# of M across the edge can confirm or refute
# the attention section's short prefill grid (--attention-grid short; also in the full grid):
# non-causal, 32 heads of 128, where a flash kernel's per-block edges are a large share of a
# block's time (benchmarks/microbench/check_flash_edges.py)
SHORT_PREFILL_L = [128, 256, 384, 512, 768, 1024]
SHORT_PREFILL_B = [1, 4, 16, 64]
# the attention section's decode-edge grid (--attention-grid decode-edges; also in the full
# grid): one query a sequence over the same DECODE_EDGE_TOKENS cached tokens a call, split into
# batch = tokens / context sequences, 32 query heads of 128 over 32 and 8 KV heads: the bytes
# stay, the CTAs grow as the context shrinks, so a memory-bound FlashAttention-2 wave's edge
# stall (sim/cost/roofline.py _FLASH_MEMORY_EDGE_ROUND_TRIPS, fitted to four decode rows) is
# the only thing that moves the time (benchmarks/microbench/check_decode_edges.py)
DECODE_EDGE_TOKENS = 65536
DECODE_EDGE_CTX = [64, 128, 256, 512, 1024, 2048, 4096]
BATCH_EDGE_M = [120, 128, 129, 136, 144, 240, 248, 256, 257, 264, 272, 288, 320, 384, 448, 504,
                512, 513, 520, 544]  # fmt: skip
# Llama-3-8B's gate/up, the 70B's down and o, Llama-2-7B's fused gate/up and down (issue 22's
# A100 fall at batch 128 -> 129)
BATCH_EDGE_NK = [(28672, 4096), (14336, 4096), (4096, 14336), (7168, 8192), (22016, 4096),
                 (4096, 11008)]  # fmt: skip
# fused projections of the two decoders in the llm section (qkv, gate+up, down, LM heads)
LLM_EXTRA_NK = [
    (6144, 4096),
    (28672, 4096),
    (4096, 14336),
    (22016, 4096),
    (32000, 4096),
    (128256, 4096),
]


def section_gemm(ctx):
    dev, bench, out = ctx["device"], ctx["bench"], ctx["out"]
    cpu = dev.type != "cuda"
    L2 = ctx["l2_bytes"]
    csv = CSVOut(
        os.path.join(out, "gemm.csv"),
        [
            "dtype",
            "m",
            "n",
            "k",
            "time_s",
            "flops_per_s",
            "group",
            "n_buffer_sets",
            "inner",
            "reps",
            "time_min_s",
            "time_max_s",
        ],
        ctx["dname"],
        ctx["date"],
    )
    sq, llm_m, llm_nk, awk, fp8_sq, tf32_sq = _gemm_sizes(ctx["quick"], cpu)
    deadline = ctx["section_deadline"]

    points = []
    points += [("bf16", s, s, s, "square") for s in sq]
    points += [("bf16", m, n, k, "llm") for (n, k) in llm_nk for m in llm_m]
    points += [("bf16", m, n, k, "awkward") for (m, n, k) in awk]
    if not ctx["quick"]:
        points += [("bf16", m, n, k, "llm_extra") for (n, k) in LLM_EXTRA_NK for m in llm_m]
        points += [
            ("bf16", m, n, k, "batch_edge") for (n, k) in BATCH_EDGE_NK for m in BATCH_EDGE_M
        ]
    elif ctx["gemm_groups"] == {
        "batch_edge"
    }:  # the edge grid's first shape, small, for a logic test
        points += [("bf16", m, 256, 256, "batch_edge") for m in BATCH_EDGE_M[:4]]
    points += [("fp8_e4m3", s, s, s, "square") for s in fp8_sq]
    points += [("fp8_e4m3_fastacc", s, s, s, "square") for s in fp8_sq]
    points += [("tf32", s, s, s, "square") for s in tf32_sq]
    if ctx["gemm_groups"]:
        points = [p for p in points if p[4] in ctx["gemm_groups"]]

    fp8_ok = [True]
    bf16 = torch.bfloat16 if not cpu else torch.float32

    def tf32_mode(on):
        m = torch.backends.cuda.matmul
        if hasattr(m, "fp32_precision"):
            try:
                m.fp32_precision = "tf32" if on else "ieee"
                return
            except Exception:  # noqa: BLE001
                pass
        m.allow_tf32 = on

    for dt, m, n, k, group in points:
        if time.perf_counter() > deadline():
            log("gemm: section deadline reached, skipping the rest")
            break
        if dt.startswith("fp8") and not fp8_ok[0]:
            continue
        try:
            if dt == "bf16":
                esz, osz = (2, 2) if not cpu else (4, 4)
            elif dt.startswith("fp8"):
                esz, osz = 1, 2
            else:
                esz, osz = 4, 4
            set_bytes = (m * k + n * k) * esz + m * n * osz
            nsets = int(clamp(math.ceil(4 * L2 / set_bytes), 1, 64))
            if nsets * set_bytes > 0.5 * free_bytes(dev):
                nsets = 1
            if set_bytes > 0.8 * free_bytes(dev):
                log("gemm: skip %s %dx%dx%d (memory)" % (dt, m, n, k))
                continue
            fns = []
            keep = []
            if dt in ("bf16", "tf32"):
                tdt = bf16 if dt == "bf16" else torch.float32
                for _ in range(nsets):
                    A = randn((m, k), tdt, dev)
                    W = randn((n, k), tdt, dev)
                    C = torch.empty((m, n), dtype=tdt, device=dev)
                    keep.append((A, W, C))
                    fns.append(lambda A=A, W=W, C=C: torch.mm(A, W.t(), out=C))
            else:
                f8 = torch.float8_e4m3fn
                fast = dt.endswith("fastacc")
                sa = torch.tensor(1.0, device=dev, dtype=torch.float32)
                sb = torch.tensor(1.0, device=dev, dtype=torch.float32)
                for _ in range(nsets):
                    A = randn((m, k), torch.bfloat16, dev).to(f8)
                    W = randn((n, k), torch.bfloat16, dev).to(f8)
                    keep.append((A, W))
                    fns.append(
                        lambda A=A, W=W: torch._scaled_mm(
                            A,
                            W.t(),
                            scale_a=sa,
                            scale_b=sb,
                            out_dtype=torch.bfloat16,
                            use_fast_accum=fast,
                        )
                    )
            if dt == "tf32":
                tf32_mode(True)
            try:
                t, info = bench.time(fns, target_s=0.15 if not ctx["quick"] else 0.02, max_rep=20)
            finally:
                if dt == "tf32":
                    tf32_mode(False)
            fl = 2.0 * m * n * k
            csv.row(
                dtype=dt,
                m=m,
                n=n,
                k=k,
                time_s=t,
                flops_per_s=fl / t,
                group=group,
                n_buffer_sets=nsets,
                inner=info["inner"],
                reps=info["reps"],
                time_min_s=info["min"],
                time_max_s=info["max"],
            )
            if group == "square" or (m == 1 and group == "llm"):
                log(
                    "gemm %-16s %5d x %5d x %5d  %9.3f us  %7.1f TFLOP/s"
                    % (dt, m, n, k, t * 1e6, fl / t / 1e12)
                )
        except Exception as e:  # noqa: BLE001
            if dt.startswith("fp8"):
                fp8_ok[0] = False
                log("gemm: fp8 failed, skipping fp8: %r" % (e,))
                ctx["env"].setdefault("failures", []).append("fp8 gemm: %r" % (e,))
            else:
                log("gemm: %s %dx%dx%d failed: %r" % (dt, m, n, k, e))
        finally:
            fns = keep = None
            cleanup(dev)
    csv.close()


# grouped (mixture-of-experts) GEMMs where MoE serving runs them: each of E experts multiplies
# its own rows (M per expert, 8 .. 2048) by its own weights W[e] (N x K, nn.Linear layout), from
# the weight-streaming regime through the ridge, where compute, HBM and L2 times are close and
# roofsim's grouped GEMMs run faster than the serving and kernel measurements it is held
# against (benchmarks/research/moe-expert-gemm-sensitivity-2026-12-05.md). Three layouts:
# - batched: torch.bmm over [E, M, K] x [E, K, N] (cuBLAS strided-batched; every expert M rows);
# - grouped: torch._grouped_mm (CUTLASS grouped GEMM, PyTorch >= 2.8 on sm_90+), the same rows;
# - routed: torch._grouped_mm with each expert's rows as top-k routing deals them (T tokens
#   each picking top_k of E experts uniformly at random, seeded; T x top_k / E rows on average).
MOE_SHAPES = [  # (shape, experts, top_k, n, k)
    ("mixtral-8x7b-w13-tp2", 8, 2, 14336, 4096),  # gate+up, 2 x 14336 / TP 2
    ("mixtral-8x7b-w2-tp2", 8, 2, 4096, 7168),  # down, 14336 / TP 2
    ("qwen3-30b-a3b-w13", 128, 8, 1536, 2048),  # gate+up, 2 x 768
    ("qwen3-30b-a3b-w2", 128, 8, 2048, 768),
    # DeepSeek-R1/V3 at TP 8: 256 experts of 2048 / 8 = 256 columns, a K loop of four 64-deep
    # bf16 steps in w2 (too short to hide a tile's first loads behind its MMAs?)
    ("deepseek-r1-w13-tp8", 256, 8, 512, 7168),
    ("deepseek-r1-w2-tp8", 256, 8, 7168, 256),
]
MOE_M = [8, 16, 32, 64, 96, 128, 192, 256, 384, 512, 1024, 2048]


def _moe_points(quick, cpu):
    if quick:
        shapes = [("tiny-w13", 4, 2, 64, 32)] if cpu else MOE_SHAPES[:1] + MOE_SHAPES[2:3]
        return shapes, [4, 16] if cpu else [16, 256]
    return MOE_SHAPES, MOE_M


def section_moe(ctx):
    dev, bench, out = ctx["device"], ctx["bench"], ctx["out"]
    cpu = dev.type != "cuda"
    L2 = ctx["l2_bytes"]
    csv = CSVOut(
        os.path.join(out, "moe.csv"),
        [
            "layout",
            "shape",
            "dtype",
            "experts",
            "top_k",
            "m_mean",
            "n",
            "k",
            "tokens",
            "rows_max",
            "time_s",
            "flops_per_s",
            "n_buffer_sets",
            "inner",
            "reps",
            "time_min_s",
            "time_max_s",
            "clocks_sm_mhz",
            "power_draw_w",
            "rows",
        ],
        ctx["dname"],
        ctx["date"],
    )
    shapes, ms = _moe_points(ctx["quick"], cpu)
    deadline = ctx["section_deadline"]
    dt = torch.bfloat16
    smi = Smi() if not cpu else None
    # torch._grouped_mm is one CUTLASS grouped kernel on sm_90 and sm_100 only (elsewhere a loop
    # of GEMMs, which these rows must not be mistaken for)
    grouped = hasattr(torch, "_grouped_mm") and (
        cpu or torch.cuda.get_device_capability(dev)[0] in (9, 10)
    )
    disabled = set() if grouped else {"grouped", "routed"}
    if disabled:
        log("moe: no CUTLASS grouped GEMM here (torch._grouped_mm, sm_90/sm_100): batched only")
    gen = torch.Generator(device="cpu").manual_seed(0)
    for shape, E, top_k, n, k in shapes:
        for m in ms:
            for layout in ("batched", "grouped", "routed"):
                if time.perf_counter() > deadline():
                    log("moe: section deadline reached, skipping the rest")
                    csv.close()
                    return
                if layout in disabled:
                    continue
                fns = keep = None
                try:
                    if layout == "routed":  # each token picks top_k distinct experts
                        tokens = max(1, round(m * E / top_k))
                        picks = torch.rand((tokens, E), generator=gen).topk(top_k, dim=1).indices
                        rows = torch.bincount(picks.reshape(-1), minlength=E).tolist()
                    else:
                        tokens, rows = m * E // top_k, [m] * E
                    total = sum(rows)
                    set_bytes = 2 * (E * n * k + total * (k + n))
                    nsets = int(clamp(math.ceil(4 * L2 / set_bytes), 1, 16))
                    if nsets * set_bytes > 0.5 * free_bytes(dev):
                        nsets = 1
                    if set_bytes > 0.8 * free_bytes(dev):
                        log("moe: skip %s %s m=%d (memory)" % (layout, shape, m))
                        continue
                    offs = torch.tensor(rows, dtype=torch.int32).cumsum(0).to(torch.int32)
                    offs = offs.to(dev)
                    fns, keep = [], []
                    for _ in range(nsets):
                        W = randn((E, n, k), dt, dev, std=0.02)
                        if layout == "batched":
                            A = randn((E, m, k), dt, dev)
                            C = torch.empty((E, m, n), dtype=dt, device=dev)
                            keep.append((A, W, C))
                            fns.append(lambda A=A, W=W, C=C: torch.bmm(A, W.transpose(1, 2), out=C))
                        else:
                            A = randn((total, k), dt, dev)
                            keep.append((A, W))
                            fns.append(
                                lambda A=A, W=W: torch._grouped_mm(
                                    A, W.transpose(-2, -1), offs=offs
                                )
                            )
                    t, info = bench.time(fns, target_s=0.15 if not ctx["quick"] else 0.02)
                    # the clock right after the timed batches: long kernels run power-limited
                    clock = smi.sample() if smi else None
                    fl = 2.0 * total * n * k
                    csv.row(
                        layout=layout,
                        shape=shape,
                        dtype="bf16",
                        experts=E,
                        top_k=top_k,
                        m_mean=total / E,
                        n=n,
                        k=k,
                        tokens=tokens,
                        rows_max=max(rows),
                        time_s=t,
                        flops_per_s=fl / t,
                        n_buffer_sets=nsets,
                        inner=info["inner"],
                        reps=info["reps"],
                        time_min_s=info["min"],
                        time_max_s=info["max"],
                        clocks_sm_mhz=(clock or {}).get("clocks.sm"),
                        power_draw_w=(clock or {}).get("power.draw"),
                        rows=";".join(str(r) for r in rows) if layout == "routed" else "",
                    )
                    log(
                        "moe %-7s %-22s m=%5d  %9.2f us  %7.1f TFLOP/s"
                        % (layout, shape, m, t * 1e6, fl / t / 1e12)
                    )
                except Exception as e:  # noqa: BLE001
                    if is_oom(e):
                        log("moe: skip %s %s m=%d (out of memory)" % (layout, shape, m))
                    elif layout != "batched":
                        disabled.add(layout)
                        log("moe: torch._grouped_mm failed, skipping %s rows: %r" % (layout, e))
                        ctx["env"].setdefault("failures", []).append("moe %s: %r" % (layout, e))
                    else:
                        log("moe: %s %s m=%d failed: %r" % (layout, shape, m, e))
                finally:
                    fns = keep = None
                    cleanup(dev)
    csv.close()


# VAE-decoder convolutions (benchmarks/vae_decode.py: roofsim decodes 1.9-3.5x faster than the
# published decode stages): bf16 3x3 (2D, image VAEs) and 3x3x3 (3D, video VAEs) convolutions,
# batch 1, C in = C out at each decoder level's width and grid (FLUX.1's VAE at 1024 px;
# HunyuanVideo's at 480 x 848 x 17 output frames' levels, untiled: frames 5, 5, 9, 17 from the
# bottom, its frame_div 4, 4, 2, 1), zero padding 1 inside the conv (a causal VAE's pad copy is
# not timed here), in PyTorch's default memory format (NCHW / NCDHW, what the diffusers
# pipelines keep) and channels-last; ``backend``: the convolution PyTorch dispatched to
# (cuDNN, or an im2col/vol2col fallback).
CONV_SHAPES = [  # (shape, dims, c_in, c_out, frames, height, width)
    ("flux-vae-l3-512c-128px", 2, 512, 512, 1, 128, 128),
    ("flux-vae-l2-512c-256px", 2, 512, 512, 1, 256, 256),
    ("flux-vae-l1-256c-512px", 2, 256, 256, 1, 512, 512),
    ("flux-vae-l0-128c-1024px", 2, 128, 128, 1, 1024, 1024),
    ("flux-vae-out-128to3-1024px", 2, 128, 3, 1, 1024, 1024),
    ("hyv-vae-l3-512c-5x60x106", 3, 512, 512, 5, 60, 106),
    ("hyv-vae-l2-512c-5x120x212", 3, 512, 512, 5, 120, 212),
    ("hyv-vae-l1-256c-9x240x424", 3, 256, 256, 9, 240, 424),
    ("hyv-vae-l0-128c-17x480x848", 3, 128, 128, 17, 480, 848),
]


def _conv_points(quick, cpu):
    if quick:
        return (
            [("tiny-2d", 2, 16, 16, 1, 32, 32), ("tiny-3d", 3, 16, 16, 3, 16, 16)]
            if cpu
            else [
                c
                for c in CONV_SHAPES
                if c[0] in ("flux-vae-l3-512c-128px", "hyv-vae-l3-512c-5x60x106")
            ]
        )
    return CONV_SHAPES


def _conv_backend(x, wt):
    """The convolution PyTorch dispatches ``x`` (N, C, ...) and ``wt`` to, stride and dilation
    1, padding 1 (a private API: empty where this PyTorch lacks it)."""
    d = x.dim() - 2
    try:
        ones = [1] * d
        b = torch._C._select_conv_backend(x, wt, None, ones, ones, ones, False, [0] * d, 1, None)
        return str(b).split(".")[-1]
    except Exception:  # noqa: BLE001
        return ""


def section_conv(ctx):
    dev, bench, out = ctx["device"], ctx["bench"], ctx["out"]
    cpu = dev.type != "cuda"
    L2 = ctx["l2_bytes"]
    csv = CSVOut(
        os.path.join(out, "conv.csv"),
        [
            "shape",
            "dims",
            "layout",
            "dtype",
            "backend",
            "c_in",
            "c_out",
            "frames",
            "height",
            "width",
            "time_s",
            "flops_per_s",
            "n_buffer_sets",
            "inner",
            "reps",
            "time_min_s",
            "time_max_s",
            "clocks_sm_mhz",
            "power_draw_w",
        ],
        ctx["dname"],
        ctx["date"],
    )
    deadline = ctx["section_deadline"]
    dt = torch.bfloat16 if not cpu else torch.float32
    esz = 2 if not cpu else 4
    smi = Smi() if not cpu else None
    ctx["env"]["conv_cudnn_benchmark"] = bool(torch.backends.cudnn.benchmark)
    for shape, dims, c_in, c_out, frames, h, w in _conv_points(ctx["quick"], cpu):
        for layout in ("nchw", "channels_last"):
            if time.perf_counter() > deadline():
                log("conv: section deadline reached, skipping the rest")
                csv.close()
                return
            fns = keep = None
            try:
                grid = (frames, h, w) if dims == 3 else (h, w)
                voxels = frames * h * w
                set_bytes = esz * (voxels * (c_in + c_out) + c_out * c_in * 3**dims)
                nsets = int(clamp(math.ceil(4 * L2 / set_bytes), 1, 16))
                # 0.4, not gemm's 0.8: cuDNN's workspace and a fallback's columns need room
                if set_bytes > 0.4 * free_bytes(dev):
                    log("conv: skip %s %s (memory)" % (shape, layout))
                    continue
                if nsets * set_bytes > 0.4 * free_bytes(dev):
                    nsets = 1
                fmt = torch.channels_last_3d if dims == 3 else torch.channels_last
                conv = F.conv3d if dims == 3 else F.conv2d
                fns, keep = [], []
                for _ in range(nsets):
                    x = randn((1, c_in, *grid), dt, dev)
                    wt = randn((c_out, c_in, *([3] * dims)), dt, dev, std=0.02)
                    if layout == "channels_last":
                        x, wt = x.to(memory_format=fmt), wt.to(memory_format=fmt)
                    keep.append((x, wt))
                    fns.append(lambda x=x, wt=wt: conv(x, wt, padding=1))
                t, info = bench.time(fns, target_s=0.15 if not ctx["quick"] else 0.02)
                clock = smi.sample() if smi else None
                fl = 2.0 * voxels * c_out * c_in * 3**dims
                csv.row(
                    shape=shape,
                    dims=dims,
                    layout=layout,
                    dtype="bf16" if not cpu else "fp32",
                    backend=_conv_backend(keep[0][0], keep[0][1]),
                    c_in=c_in,
                    c_out=c_out,
                    frames=frames,
                    height=h,
                    width=w,
                    time_s=t,
                    flops_per_s=fl / t,
                    n_buffer_sets=nsets,
                    inner=info["inner"],
                    reps=info["reps"],
                    time_min_s=info["min"],
                    time_max_s=info["max"],
                    clocks_sm_mhz=(clock or {}).get("clocks.sm"),
                    power_draw_w=(clock or {}).get("power.draw"),
                )
                log(
                    "conv %-13s %-28s %9.1f us  %7.1f TFLOP/s"
                    % (layout, shape, t * 1e6, fl / t / 1e12)
                )
            except Exception as e:  # noqa: BLE001
                if is_oom(e):  # an im2col/vol2col fallback's column buffer: 27 x the input
                    log("conv: skip %s %s (out of memory)" % (shape, layout))
                else:
                    log("conv: %s %s failed: %r" % (shape, layout, e))
                    ctx["env"].setdefault("failures", []).append(
                        "conv %s %s: %r" % (shape, layout, e)
                    )
            finally:
                fns = keep = None
                cleanup(dev)
    csv.close()


def section_membw(ctx):
    dev, bench, out = ctx["device"], ctx["bench"], ctx["out"]
    cpu = dev.type != "cuda"
    csv = CSVOut(
        os.path.join(out, "membw.csv"),
        ["op", "bytes", "time_s", "bytes_per_s", "n_buffer_sets", "inner", "reps"],
        ctx["dname"],
        ctx["date"],
    )
    max_size = 64 * MiB if ctx["quick"] else 4 * GiB
    sizes = []
    s = 4 * KiB
    while s <= max_size:
        sizes.append(s)
        s *= 2
    POOL = 64 * MiB if ctx["quick"] else 512 * MiB
    deadline = ctx["section_deadline"]
    pool_src = randn((POOL // 4,), torch.float32, dev)
    pool_dst = randn((POOL // 4,), torch.float32, dev)

    def views(pool, size):
        n_el = size // 4
        if size * 4 > POOL:
            return None
        nsl = int(min(POOL // size, 1024))
        stride = (POOL // 4 // nsl) // 128 * 128
        return [pool[i * stride : i * stride + n_el] for i in range(nsl)]

    ops = ["copy", "read_sum_fp32", "write_fill"]
    if triton is not None and dev.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1":
        ops.append("read_triton_fp32")
    for size in sizes:
        if time.perf_counter() > deadline():
            log("membw: deadline reached")
            break
        for op in ops:
            try:
                need = size * (2 if op == "copy" else 1)
                if size * 4 > POOL and need > 0.8 * free_bytes(dev):
                    log("membw: skip %s %d (memory)" % (op, size))
                    continue
                srcs = views(pool_src, size)
                dsts = views(pool_dst, size)
                if srcs is None:
                    srcs = [randn((size // 4,), torch.float32, dev)]
                    dsts = (
                        [torch.empty((size // 4,), dtype=torch.float32, device=dev)]
                        if op == "copy"
                        else srcs
                    )
                if op == "copy":
                    fns = [lambda s_=s_, d_=d_: d_.copy_(s_) for s_, d_ in zip(srcs, dsts)]
                    moved = 2 * size
                elif op == "read_triton_fp32":
                    nel = size // 4
                    nprog = triton.cdiv(nel, TRITON_READ_BLOCK)
                    part = torch.empty((nprog,), dtype=torch.float32, device=dev)
                    fns = [
                        lambda s_=s_: _triton_read_kernel[(nprog,)](
                            s_, part, nel, BLOCK=TRITON_READ_BLOCK, num_warps=8
                        )
                        for s_ in srcs
                    ]
                    fns[0]()
                    ref = torch.sum(srcs[0].double()).item()
                    got = torch.sum(part.double()).item()
                    if abs(got - ref) > 1e-3 * max(1.0, abs(ref)) + 1e-2 * math.sqrt(nel):
                        raise RuntimeError("triton read kernel wrong: %r vs %r" % (got, ref))
                    moved = size
                elif op == "read_sum_fp32":
                    fns = [lambda s_=s_: torch.sum(s_) for s_ in srcs]
                    moved = size
                else:
                    fns = [lambda d_=d_: d_.fill_(1.5) for d_ in dsts]
                    moved = size
                t, info = bench.time(fns, target_s=0.1 if not ctx["quick"] else 0.02, max_rep=15)
                csv.row(
                    op=op,
                    bytes=moved,
                    time_s=t,
                    bytes_per_s=moved / t,
                    n_buffer_sets=len(fns),
                    inner=info["inner"],
                    reps=info["reps"],
                )
                if size in (4 * KiB, 1 * MiB, 64 * MiB, 1 * GiB, 4 * GiB) or size == sizes[-1]:
                    log(
                        "membw %-14s %11d B  %10.3f us  %8.1f GB/s"
                        % (op, moved, t * 1e6, moved / t / 1e9)
                    )
            except Exception as e:  # noqa: BLE001
                log("membw: %s %d failed: %r" % (op, size, e))
            finally:
                fns = srcs = dsts = None
                if size * 4 > POOL:
                    cleanup(dev)
    del pool_src, pool_dst
    cleanup(dev)
    csv.close()


def section_launch(ctx):
    dev, bench, out = ctx["device"], ctx["bench"], ctx["out"]
    csv = CSVOut(
        os.path.join(out, "launch.csv"),
        ["mode", "n_kernels", "time_per_kernel_s", "time_total_s", "reps"],
        ctx["dname"],
        ctx["date"],
    )
    x = randn((1,), torch.float32, dev)
    N = 1000
    reps = 7

    def step():
        x.add_(1e-3)

    for _ in range(50):
        step()
    bench.sync()
    # 1) eager issue rate, host timed with synchronize
    ts = []
    for _ in range(reps):
        bench.sync()
        t0 = time.perf_counter()
        for _ in range(N):
            step()
        bench.sync()
        ts.append(time.perf_counter() - t0)
    t = statistics.median(ts)
    csv.row(mode="eager_host", n_kernels=N, time_per_kernel_s=t / N, time_total_s=t, reps=reps)
    log("launch eager_host: %.2f us/kernel" % (t / N * 1e6))

    # 1b) launch + synchronize round trip of a single kernel (host timed)
    ts = []
    for _ in range(200):
        bench.sync()
        t0 = time.perf_counter()
        step()
        bench.sync()
        ts.append(time.perf_counter() - t0)
    t = statistics.median(ts)
    csv.row(
        mode="single_launch_sync_host", n_kernels=1, time_per_kernel_s=t, time_total_s=t, reps=200
    )
    log("launch single kernel + sync: %.2f us" % (t * 1e6))

    if bench.cuda:
        # 2) eager, event timed without pre-fill (what the GPU sees when host-bound)
        ts = []
        for _ in range(reps):
            t_, _h = bench._batch([step], 0, N, 0.0)
            ts.append(t_)
        t = statistics.median(ts)
        csv.row(mode="eager_event", n_kernels=N, time_per_kernel_s=t, time_total_s=t * N, reps=reps)
        log("launch eager_event: %.2f us/kernel" % (t * 1e6))
        # 3) GPU back-to-back with the queue pre-filled behind a spin kernel
        ts = []
        for _ in range(reps):
            t_, _h = bench._batch([step], 0, N, 0.03)
            ts.append(t_)
        t = statistics.median(ts)
        csv.row(
            mode="gpu_backtoback", n_kernels=N, time_per_kernel_s=t, time_total_s=t * N, reps=reps
        )
        log("launch gpu_backtoback: %.2f us/kernel" % (t * 1e6))
        # 4) CUDA graph replay of n kernels, event timed, and host-timed replay
        for n in (1, 10, 100, 1000):
            try:
                s = torch.cuda.Stream()
                s.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(s):
                    for _ in range(3):
                        step()
                torch.cuda.current_stream().wait_stream(s)
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g):
                    for _ in range(n):
                        step()
                for _ in range(3):
                    g.replay()
                bench.sync()
                R = max(1, 2000 // n)
                t, _info = bench.time(
                    [g.replay],
                    target_s=0.1,
                    min_rep=reps,
                    max_rep=reps,
                    max_inner=R,
                    batch_target_s=2e-3,
                )
                csv.row(
                    mode="graph_replay",
                    n_kernels=n,
                    time_per_kernel_s=t / n,
                    time_total_s=t,
                    reps=reps,
                )
                log(
                    "launch graph_replay n=%d: %.2f us/kernel (%.2f us/replay)"
                    % (n, t / n * 1e6, t * 1e6)
                )
                ts = []
                for _ in range(reps):
                    bench.sync()
                    t0 = time.perf_counter()
                    for _ in range(R):
                        g.replay()
                    bench.sync()
                    ts.append((time.perf_counter() - t0) / R)
                t = statistics.median(ts)
                csv.row(
                    mode="graph_replay_host",
                    n_kernels=n,
                    time_per_kernel_s=t / n,
                    time_total_s=t,
                    reps=reps,
                )
                del g
            except Exception as e:  # noqa: BLE001
                log("launch: graph n=%d failed: %r" % (n, e))
    csv.close()
    cleanup(dev)


_GQA_MODE = {}


def sdpa_ctx(dev):
    if dev.type != "cuda":
        return contextlib.nullcontext()
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel(SDPBackend.FLASH_ATTENTION)
    except Exception:  # noqa: BLE001
        return torch.backends.cuda.sdp_kernel(
            enable_flash=True, enable_math=False, enable_mem_efficient=False
        )


def gqa_mode(dev):
    """'gqa' if SDPA(flash) accepts enable_gqa=True, else 'repeat'."""
    if dev.type in _GQA_MODE:
        return _GQA_MODE[dev.type]
    dt = torch.bfloat16 if dev.type == "cuda" else torch.float32
    q = randn((1, 8, 1, 64), dt, dev)
    k = randn((1, 2, 16, 64), dt, dev)
    mode = "repeat"
    try:
        with sdpa_ctx(dev):
            F.scaled_dot_product_attention(q, k, k, enable_gqa=True)
        mode = "gqa"
    except Exception as e:  # noqa: BLE001
        log("SDPA enable_gqa not usable (%r): K/V will be repeated" % (e,))
    _GQA_MODE[dev.type] = mode
    return mode


def attn(q, k, v, causal, mode):
    if k.shape[1] != q.shape[1]:
        if mode == "gqa":
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
        r = q.shape[1] // k.shape[1]
        k = k.repeat_interleave(r, dim=1)
        v = v.repeat_interleave(r, dim=1)
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal)


def section_attention(ctx):
    dev, bench, out = ctx["device"], ctx["bench"], ctx["out"]
    cpu = dev.type != "cuda"
    dt = torch.bfloat16 if not cpu else torch.float32
    esz = 2 if not cpu else 4
    L2 = ctx["l2_bytes"]
    csv = CSVOut(
        os.path.join(out, "attention.csv"),
        [
            "phase",
            "batch",
            "n_heads",
            "n_kv_heads",
            "q_len",
            "kv_len",
            "head_dim",
            "causal",
            "time_s",
            "flops",
            "bytes",
            "backend",
            "n_buffer_sets",
        ],
        ctx["dname"],
        ctx["date"],
    )
    mode = gqa_mode(dev)
    deadline = ctx["section_deadline"]
    d = 128 if not (ctx["quick"] and cpu) else 32
    if ctx["quick"]:
        pre_L = [128, 256] if cpu else [512, 2048]
        dec_kv, dec_b = ([128, 512], [1, 4]) if cpu else ([512, 8192], [1, 32])
        H = 8 if cpu else 32
    else:
        pre_L = [512, 1024, 2048, 4096, 8192, 16384]
        dec_kv, dec_b = [512, 2048, 8192, 32768], [1, 8, 32, 128]
        H = 32
    pts = []
    grids = set(str(ctx.get("attention_grid", "full")).split(","))
    full = "full" in grids
    if full:
        for B in (1, 4):
            for L in pre_L:
                for causal in (True, False):
                    pts.append(("prefill", B, H, H, L, L, causal))
        for hkv in (H // 4, H):
            for B in dec_b:
                for kv in dec_kv:
                    pts.append(("decode", B, H, hkv, 1, kv, False))
    if not ctx["quick"] and (full or "short" in grids):  # the short grid, less full's points
        pts += [p for p in (("prefill", B, H, H, L, L, False) for B in SHORT_PREFILL_B
                            for L in SHORT_PREFILL_L) if p not in pts]  # fmt: skip
    elif "short" in grids:  # the short grid's first lengths
        short_L = pre_L if cpu else SHORT_PREFILL_L[:2]
        pts += [("prefill", B, H, H, L, L, False) for B in (1, 4) for L in short_L]
    if full or "decode-edges" in grids:  # the decode-edge grid (its first two contexts quick)
        edge_ctx = DECODE_EDGE_CTX[:2] if ctx["quick"] else DECODE_EDGE_CTX
        tokens = 1024 if cpu else DECODE_EDGE_TOKENS
        pts += [p for p in (("decode", tokens // kv, H, hkv, 1, kv, False)
                            for hkv in (H, H // 4) for kv in edge_ctx) if p not in pts]  # fmt: skip
    for phase, B, h, hkv, ql, kvl, causal in pts:
        if time.perf_counter() > deadline():
            log("attention: deadline reached")
            break
        try:
            qb = B * h * ql * d * esz
            kvb = 2 * B * hkv * kvl * d * esz
            set_bytes = 2 * qb + kvb
            if mode == "repeat" and hkv != h:
                set_bytes += 2 * B * h * kvl * d * esz
            if set_bytes > 0.7 * free_bytes(dev):
                log(
                    "attention: skip %s B=%d hkv=%d kv=%d (memory %.1f GB)"
                    % (phase, B, hkv, kvl, set_bytes / 1e9)
                )
                continue
            nsets = 1
            if phase == "decode":
                nsets = int(clamp(math.ceil(4 * L2 / set_bytes), 1, 32))
                if nsets * set_bytes > 0.5 * free_bytes(dev):
                    nsets = 1
            fns = []
            keep = []
            for _ in range(nsets):
                q = randn((B, h, ql, d), dt, dev)
                k = randn((B, hkv, kvl, d), dt, dev)
                v = randn((B, hkv, kvl, d), dt, dev)
                keep.append((q, k, v))
                fns.append(lambda q=q, k=k, v=v: attn(q, k, v, causal, mode))
            with sdpa_ctx(dev):
                t, info = bench.time(fns, target_s=0.15 if not ctx["quick"] else 0.02, max_rep=15)
            flops = 4.0 * B * h * ql * kvl * d
            if causal:
                flops /= 2
            nbytes = 2 * qb + kvb
            backend = ("flash" if not cpu else "default") + (
                "+gqa" if (hkv != h and mode == "gqa") else "+repeat" if hkv != h else ""
            )
            csv.row(
                phase=phase,
                batch=B,
                n_heads=h,
                n_kv_heads=hkv,
                q_len=ql,
                kv_len=kvl,
                head_dim=d,
                causal=causal,
                time_s=t,
                flops=flops,
                bytes=nbytes,
                backend=backend,
                n_buffer_sets=nsets,
            )
            log(
                "attn %-7s B=%-3d H=%d Hkv=%-2d q=%-5d kv=%-5d causal=%d %9.1f us  %6.1f TFLOP/s"
                "  %7.1f GB/s"
                % (phase, B, h, hkv, ql, kvl, causal, t * 1e6, flops / t / 1e12, nbytes / t / 1e9)
            )
        except Exception as e:  # noqa: BLE001
            log("attention: %s B=%d hkv=%d q=%d kv=%d failed: %r" % (phase, B, hkv, ql, kvl, e))
        finally:
            fns = keep = None
            cleanup(dev)
    csv.close()


# --------------------------------------------------------------------------- LLM
LLM_CONFIGS = {
    "llama-2-7b": dict(layers=32, hidden=4096, heads=32, kv_heads=32, ffn=11008, vocab=32000),
    "llama-3-8b": dict(layers=32, hidden=4096, heads=32, kv_heads=8, ffn=14336, vocab=128256),
    "tiny": dict(layers=2, hidden=256, heads=4, kv_heads=2, ffn=512, vocab=1000),
}


def _rmsnorm(x, w, eps=1e-5):
    if hasattr(F, "rms_norm"):
        return F.rms_norm(x, (x.shape[-1],), w, eps)
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * w


def _rope(x, cos, sin):
    # x: (B, H, L, d); cos/sin: (L, d/2)
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


class Llama:
    """Llama-style decoder in plain PyTorch, random weights (std 0.02)."""

    def __init__(self, cfg, dev, dtype):
        self.cfg = cfg
        self.dev = dev
        self.dtype = dtype
        D, H, Hkv, Ff, V = cfg["hidden"], cfg["heads"], cfg["kv_heads"], cfg["ffn"], cfg["vocab"]
        self.hd = D // H
        self.layers = []
        for _ in range(cfg["layers"]):
            self.layers.append(
                dict(
                    wqkv=randn(((H + 2 * Hkv) * self.hd, D), dtype, dev, 0.02),
                    wo=randn((D, H * self.hd), dtype, dev, 0.02),
                    w13=randn((2 * Ff, D), dtype, dev, 0.02),
                    w2=randn((D, Ff), dtype, dev, 0.02),
                    n1=torch.ones(D, dtype=dtype, device=dev),
                    n2=torch.ones(D, dtype=dtype, device=dev),
                )
            )
        self.emb = randn((V, D), dtype, dev, 0.02)
        self.norm = torch.ones(D, dtype=dtype, device=dev)
        self.lm_head = randn((V, D), dtype, dev, 0.02)
        self.gqa = gqa_mode(dev)

    @staticmethod
    def weight_bytes(cfg, esz=2):
        D, H, Hkv, Ff, V = cfg["hidden"], cfg["heads"], cfg["kv_heads"], cfg["ffn"], cfg["vocab"]
        hd = D // H
        per = ((H + 2 * Hkv) * hd * D + D * H * hd + 3 * Ff * D + 2 * D) * esz
        return cfg["layers"] * per + 2 * V * D * esz + D * esz

    @staticmethod
    def kv_bytes(cfg, batch, max_len, esz=2):
        hd = cfg["hidden"] // cfg["heads"]
        return 2 * cfg["layers"] * batch * cfg["kv_heads"] * max_len * hd * esz

    def alloc_cache(self, batch, max_len):
        c = self.cfg
        cache = torch.empty(
            (2, c["layers"], batch, c["kv_heads"], max_len, self.hd),
            dtype=self.dtype,
            device=self.dev,
        )
        cache.normal_(0.0, 1.0)
        return cache

    def rope_tables(self, pos0, L):
        half = self.hd // 2
        inv = 1.0 / (
            500000.0 ** (torch.arange(0, half, device=self.dev, dtype=torch.float32) / half)
        )
        pos = torch.arange(pos0, pos0 + L, device=self.dev, dtype=torch.float32)
        ang = torch.outer(pos, inv)
        return ang.cos().to(self.dtype), ang.sin().to(self.dtype)

    def forward(self, tokens, pos0, cache, cos, sin):
        c = self.cfg
        B, L = tokens.shape
        H, Hkv, hd = c["heads"], c["kv_heads"], self.hd
        x = F.embedding(tokens, self.emb)
        for i, ly in enumerate(self.layers):
            h = _rmsnorm(x, ly["n1"])
            qkv = F.linear(h, ly["wqkv"])
            q, k, v = qkv.split([H * hd, Hkv * hd, Hkv * hd], dim=-1)
            q = q.view(B, L, H, hd).transpose(1, 2)
            k = k.view(B, L, Hkv, hd).transpose(1, 2)
            v = v.view(B, L, Hkv, hd).transpose(1, 2)
            q = _rope(q, cos, sin)
            k = _rope(k, cos, sin)
            kc, vc = cache[0, i], cache[1, i]
            kc[:, :, pos0 : pos0 + L].copy_(k)
            vc[:, :, pos0 : pos0 + L].copy_(v)
            o = attn(q, kc[:, :, : pos0 + L], vc[:, :, : pos0 + L], L > 1, self.gqa)
            o = o.transpose(1, 2).reshape(B, L, H * hd)
            x = x + F.linear(o, ly["wo"])
            h = _rmsnorm(x, ly["n2"])
            g, u = F.linear(h, ly["w13"]).chunk(2, dim=-1)
            x = x + F.linear(F.silu(g) * u, ly["w2"])
        x = _rmsnorm(x[:, -1:], self.norm)
        return F.linear(x, self.lm_head)


def _wall_time(bench, fn, n_inner, reps):
    ts = []
    for _ in range(reps):
        bench.sync()
        t0 = time.perf_counter()
        for _ in range(n_inner):
            fn()
        bench.sync()
        ts.append((time.perf_counter() - t0) / n_inner)
    return statistics.median(ts)


def section_llm(ctx):
    dev, bench, out = ctx["device"], ctx["bench"], ctx["out"]
    cpu = dev.type != "cuda"
    dt = torch.bfloat16 if not cpu else torch.float32
    esz = 2 if not cpu else 4
    csv = CSVOut(
        os.path.join(out, "llm.csv"),
        [
            "model",
            "phase",
            "batch",
            "context",
            "prompt",
            "cuda_graph",
            "time_s",
            "tokens_per_s",
            "weight_bytes",
            "kv_cache_bytes",
            "gqa_mode",
        ],
        ctx["dname"],
        ctx["date"],
    )
    deadline = ctx["section_deadline"]
    if ctx["quick"]:
        models = ["tiny"] if cpu else ["tiny", "llama-3-8b"]
        ctxs, batches, prompts = [64, 256], [1, 4], [32, 128]
    else:
        models = ["llama-2-7b", "llama-3-8b"]
        ctxs, batches, prompts = [512, 2048], [1, 4, 16, 64, 128, 256], [128, 512, 2048, 4096]
    for name in models:
        if time.perf_counter() > deadline():
            break
        cfg = LLM_CONFIGS[name]
        model = None
        try:
            wb = Llama.weight_bytes(cfg, esz)
            if wb > 0.9 * free_bytes(dev):
                log("llm: skip %s (weights %.1f GB do not fit)" % (name, wb / 1e9))
                continue
            t0 = time.perf_counter()
            model = Llama(cfg, dev, dt)
            bench.sync()
            log(
                "llm: %s built (%.1f GB weights, %.1f s)"
                % (name, wb / 1e9, time.perf_counter() - t0)
            )
            with torch.inference_mode(), sdpa_ctx(dev):
                # ---- decode
                for C in ctxs:
                    for B in batches:
                        if time.perf_counter() > deadline():
                            log("llm: deadline reached")
                            break
                        kvb = Llama.kv_bytes(cfg, B, C + 1, esz)
                        act = B * (cfg["vocab"] + 4 * cfg["ffn"]) * esz * 4 + 256 * MiB
                        if kvb + act > 0.92 * free_bytes(dev):
                            log(
                                "llm: skip %s decode B=%d ctx=%d (KV %.1f GB does not fit)"
                                % (name, B, C, kvb / 1e9)
                            )
                            continue
                        cache = None
                        g = None
                        try:
                            cache = model.alloc_cache(B, C + 1)
                            tok = torch.randint(0, cfg["vocab"], (B, 1), device=dev)
                            cos, sin = model.rope_tables(C, 1)

                            def step():
                                return model.forward(tok, C, cache, cos, sin)

                            for _ in range(3):
                                step()
                            bench.sync()
                            t1 = _wall_time(bench, step, 1, 2)
                            n_in = int(clamp(0.1 / max(t1, 1e-6), 1, 10))
                            t = _wall_time(bench, step, n_in, 7 if not ctx["quick"] else 2)
                            csv.row(
                                model=name,
                                phase="decode",
                                batch=B,
                                context=C,
                                prompt=0,
                                cuda_graph=False,
                                time_s=t,
                                tokens_per_s=B / t,
                                weight_bytes=wb,
                                kv_cache_bytes=kvb,
                                gqa_mode=model.gqa,
                            )
                            log(
                                "llm %s decode B=%-3d ctx=%-5d eager %8.3f ms  %9.1f tok/s"
                                % (name, B, C, t * 1e3, B / t)
                            )
                            if bench.cuda:
                                s = torch.cuda.Stream()
                                s.wait_stream(torch.cuda.current_stream())
                                with torch.cuda.stream(s):
                                    for _ in range(2):
                                        step()
                                torch.cuda.current_stream().wait_stream(s)
                                g = torch.cuda.CUDAGraph()
                                with torch.cuda.graph(g):
                                    step()
                                for _ in range(3):
                                    g.replay()
                                bench.sync()
                                t1 = _wall_time(bench, g.replay, 1, 2)
                                n_in = int(clamp(0.1 / max(t1, 1e-6), 1, 20))
                                t = _wall_time(bench, g.replay, n_in, 5 if not ctx["quick"] else 2)
                                csv.row(
                                    model=name,
                                    phase="decode",
                                    batch=B,
                                    context=C,
                                    prompt=0,
                                    cuda_graph=True,
                                    time_s=t,
                                    tokens_per_s=B / t,
                                    weight_bytes=wb,
                                    kv_cache_bytes=kvb,
                                    gqa_mode=model.gqa,
                                )
                                log(
                                    "llm %s decode B=%-3d ctx=%-5d graph %8.3f ms  %9.1f tok/s"
                                    % (name, B, C, t * 1e3, B / t)
                                )
                        except Exception as e:  # noqa: BLE001
                            log(
                                "llm: %s decode B=%d ctx=%d failed%s: %r"
                                % (name, B, C, " (OOM)" if is_oom(e) else "", e)
                            )
                        finally:
                            g = None
                            cache = None
                            cleanup(dev)
                # ---- prefill, batch 1, eager
                for P in prompts:
                    if time.perf_counter() > deadline():
                        log("llm: deadline reached")
                        break
                    cache = None
                    try:
                        kvb = Llama.kv_bytes(cfg, 1, P, esz)
                        tok = torch.randint(0, cfg["vocab"], (1, P), device=dev)
                        cache = model.alloc_cache(1, P)
                        cos, sin = model.rope_tables(0, P)

                        def pstep():
                            return model.forward(tok, 0, cache, cos, sin)

                        for _ in range(2):
                            pstep()
                        bench.sync()
                        t1 = _wall_time(bench, pstep, 1, 1)
                        n_in = int(clamp(0.1 / max(t1, 1e-6), 1, 10))
                        t = _wall_time(bench, pstep, n_in, 5 if not ctx["quick"] else 2)
                        csv.row(
                            model=name,
                            phase="prefill",
                            batch=1,
                            context=0,
                            prompt=P,
                            cuda_graph=False,
                            time_s=t,
                            tokens_per_s=P / t,
                            weight_bytes=wb,
                            kv_cache_bytes=kvb,
                            gqa_mode=model.gqa,
                        )
                        log(
                            "llm %s prefill P=%-5d eager %8.3f ms  %9.1f tok/s"
                            % (name, P, t * 1e3, P / t)
                        )
                        if bench.cuda:
                            g = None
                            try:
                                s = torch.cuda.Stream()
                                s.wait_stream(torch.cuda.current_stream())
                                with torch.cuda.stream(s):
                                    for _ in range(2):
                                        pstep()
                                torch.cuda.current_stream().wait_stream(s)
                                g = torch.cuda.CUDAGraph()
                                with torch.cuda.graph(g):
                                    pstep()
                                for _ in range(2):
                                    g.replay()
                                bench.sync()
                                t1 = _wall_time(bench, g.replay, 1, 1)
                                n_in = int(clamp(0.1 / max(t1, 1e-6), 1, 10))
                                t = _wall_time(bench, g.replay, n_in, 5)
                                csv.row(
                                    model=name,
                                    phase="prefill",
                                    batch=1,
                                    context=0,
                                    prompt=P,
                                    cuda_graph=True,
                                    time_s=t,
                                    tokens_per_s=P / t,
                                    weight_bytes=wb,
                                    kv_cache_bytes=kvb,
                                    gqa_mode=model.gqa,
                                )
                                log(
                                    "llm %s prefill P=%-5d graph %8.3f ms  %9.1f tok/s"
                                    % (name, P, t * 1e3, P / t)
                                )
                            finally:
                                g = None
                    except Exception as e:  # noqa: BLE001
                        log("llm: %s prefill P=%d failed: %r" % (name, P, e))
                    finally:
                        cache = None
                        cleanup(dev)
        except Exception as e:  # noqa: BLE001
            log("llm: %s failed: %r" % (name, e))
            traceback.print_exc()
        finally:
            model = None
            cleanup(dev)
    csv.close()


# --------------------------------------------------------------------------- summary
def summarize(out):
    """Headline numbers from the CSVs in out (dict; also printed)."""
    import csv as _csv

    def rows(name):
        p = os.path.join(out, name)
        if not os.path.exists(p):
            return []
        with open(p) as f:
            return list(_csv.DictReader(f))

    def fl(r, k):
        try:
            return float(r[k])
        except (KeyError, TypeError, ValueError):
            return float("nan")

    h = {}
    g = rows("gemm.csv")
    for dt in sorted({r["dtype"] for r in g}):
        rr = [r for r in g if r["dtype"] == dt]
        b = max(rr, key=lambda r: fl(r, "flops_per_s"))
        h["gemm_best_" + dt] = dict(
            tflops=fl(b, "flops_per_s") / 1e12,
            m=int(b["m"]),
            n=int(b["n"]),
            k=int(b["k"]),
            group=b.get("group"),
        )
        for r in rr:
            if r["m"] == r["n"] == r["k"] == "8192":
                h["gemm_8192_" + dt + "_tflops"] = fl(r, "flops_per_s") / 1e12
    m = rows("membw.csv")
    for op in sorted({r["op"] for r in m}):
        rr = sorted([r for r in m if r["op"] == op], key=lambda r: int(r["bytes"]))
        h["membw_" + op] = dict(
            largest_bytes=int(rr[-1]["bytes"]),
            largest_GBps=fl(rr[-1], "bytes_per_s") / 1e9,
            best_GBps=max(fl(r, "bytes_per_s") for r in rr) / 1e9,
            smallest_bytes=int(rr[0]["bytes"]),
            smallest_time_us=fl(rr[0], "time_s") * 1e6,
        )
    for r in rows("launch.csv"):
        h["launch_%s_n%s_us" % (r["mode"], r["n_kernels"])] = fl(r, "time_per_kernel_s") * 1e6
    c = rows("clocks.csv")
    for ph in ("idle", "load"):
        v = [fl(r, "clocks_sm_mhz") for r in c if r["phase"] == ph]
        v = [x for x in v if math.isfinite(x)]
        if v:
            h["sm_clock_%s_median_mhz" % ph] = statistics.median(v)
        p = [fl(r, "power_draw_w") for r in c if r["phase"] == ph]
        p = [x for x in p if math.isfinite(x)]
        if p:
            h["power_%s_median_w" % ph] = statistics.median(p)
    mx = [fl(r, "clocks_max_sm_mhz") for r in c]
    mx = [x for x in mx if math.isfinite(x)]
    if mx:
        h["sm_clock_max_mhz"] = max(mx)
    tf = [fl(r, "matmul_tflops") for r in c if r["phase"] == "load"]
    tf = [x for x in tf if math.isfinite(x)]
    if tf:
        h["sustained_matmul_tflops_per_second"] = tf
    for r in rows("llm.csv"):
        if r["phase"] == "decode" and r["batch"] == "1":
            h[
                "llm_%s_decode_b1_ctx%s_%s_ms"
                % (r["model"], r["context"], "graph" if r["cuda_graph"] == "True" else "eager")
            ] = fl(r, "time_s") * 1e3
    log("HEADLINE " + json.dumps(h, indent=1, default=str))
    return h


def section_steady(ctx):
    """FlashAttention-2 (SDPA's flash backend) run back to back for seconds, non-causal and
    causal, with nvidia-smi's clock and power each second: whether the isolated kernel rate
    (attention.csv, a burst) holds once the chip has run long enough for its power limit to
    act (benchmarks/research/fa2-rate-absorber-2026-12-06.md). Before each mask the chip idles
    a few seconds (our H100 is back at its top clock 2 s after a load: clocks.csv), then the
    first calls are timed one by one (``phase`` burst: the power limit acts within the first
    second of a heavy load), then the sustained run's samples (``phase`` sustained). Last, an
    n^3 matmul followed by a 1, 5 or 20 ms host gap, repeated for 4 s each (1.5 s with --quick)
    (``kernel`` matmul_gap, ``phase`` gap_<ms>ms; heads = seq = head_dim = n; ``tflops`` the
    cycle's rate): the power drawn when short gaps separate the kernels, as in a host-bound
    serving loop (the energy rows of benchmarks/research/fa2-rate-absorber-2026-12-06.md)."""
    dev, bench, out = ctx["device"], ctx["bench"], ctx["out"]
    cpu = dev.type != "cuda"
    dt = torch.bfloat16 if not cpu else torch.float32
    b, h, sq, d = (1, 2, 256, 64) if cpu or ctx["quick"] else (4, 32, 16384, 128)
    seconds, idle_s = (2.0, 0.5) if ctx["quick"] else (10.0, 3.0)
    cols = ["kernel", "dtype", "batch", "heads", "seq", "head_dim", "causal", "phase", "t_s",
            "tflops", "clocks_sm_mhz", "clocks_max_sm_mhz", "power_draw_w", "power_limit_w",
            "temperature_c", "clocks_event_reasons"]  # fmt: skip
    csv = CSVOut(os.path.join(out, "steady.csv"), cols, ctx["dname"], ctx["date"])
    smi = Smi()
    keymap = {"clocks.sm": "clocks_sm_mhz", "clocks.max.sm": "clocks_max_sm_mhz",
              "power.draw": "power_draw_w", "power.limit": "power_limit_w",
              "temperature.gpu": "temperature_c",
              "clocks_event_reasons.active": "clocks_event_reasons"}  # fmt: skip
    q, k, v = (randn((b, h, sq, d), dt, dev) for _ in range(3))
    a = w = c = None
    t_start = time.perf_counter()
    try:
        with torch.inference_mode(), sdpa_ctx(dev):
            for causal in (False, True):
                if time.perf_counter() > ctx["section_deadline"]():
                    log("steady: section deadline reached")
                    break
                flop = 4.0 * b * h * sq * sq * d / (2 if causal else 1)

                def fn(causal=causal):
                    return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

                def sample(tfl, phase="sustained", causal=causal):
                    got = smi.sample() or {}
                    row = {keymap[x]: val for x, val in got.items() if x in keymap}
                    csv.row(kernel="sdpa_flash", dtype=str(dt).replace("torch.", ""), batch=b,
                            heads=h, seq=sq, head_dim=d, causal=causal, phase=phase,
                            t_s=round(time.perf_counter() - t_start, 3), tflops=tfl,
                            **row)  # fmt: skip
                    log("steady causal=%d %s %s TFLOP/s, %s MHz, %s W"
                        % (causal, phase, "-" if tfl is None else "%.1f" % tfl,
                           row.get("clocks_sm_mhz"), row.get("power_draw_w")))  # fmt: skip

                fn()  # allocation and first-call work, untimed
                bench.sync()
                time.sleep(idle_s)
                sample(None, "idle")
                for _ in range(3):  # the burst: single calls from an idle chip
                    (t_one,) = [c[2] for c in _sustain(bench, fn, flop, 0.0, None, per_chunk=1)]
                    sample(flop / t_one / 1e12, "burst")
                _sustain(bench, fn, flop, seconds, sample, per_chunk=5)
        q = k = v = None
        # duty cycles: one bf16 matmul, then the host idles (a host-bound serving loop's
        # gaps): the power the chip draws when short gaps separate its kernels
        n = 256 if cpu or ctx["quick"] else 8192
        a, w, c = (
            randn((n, n), dt, dev),
            randn((n, n), dt, dev),
            torch.empty((n, n), dtype=dt, device=dev),
        )
        mm_flop = 2.0 * n**3
        for gap_ms in (1.0, 5.0, 20.0):
            if time.perf_counter() > ctx["section_deadline"]():
                log("steady: section deadline reached")
                break

            def cycle(gap_s=gap_ms / 1e3):
                torch.mm(a, w, out=c)
                bench.sync()
                time.sleep(gap_s)

            def gap_sample(tfl, gap_ms=gap_ms):
                got = smi.sample() or {}
                row = {keymap[x]: val for x, val in got.items() if x in keymap}
                csv.row(kernel="matmul_gap", dtype=str(dt).replace("torch.", ""), batch=1,
                        heads=n, seq=n, head_dim=n, causal=False, phase="gap_%gms" % gap_ms,
                        t_s=round(time.perf_counter() - t_start, 3), tflops=tfl, **row)  # fmt: skip
                log("steady matmul + %g ms gap: %s TFLOP/s, %s MHz, %s W"
                    % (gap_ms, "-" if tfl is None else "%.1f" % tfl, row.get("clocks_sm_mhz"),
                       row.get("power_draw_w")))  # fmt: skip

            cycle()
            _sustain(bench, cycle, mm_flop, max(seconds / 2.5, 1.5), gap_sample, per_chunk=1)
    finally:
        csv.close()
        q = k = v = a = w = c = None
        cleanup(dev)


# --------------------------------------------------------------------------- main
# run only when named: a full run keeps its budget for the sections it always had
OPT_IN = ("moe", "conv", "steady")
SECTIONS = [
    ("env", section_env, 40),
    ("gemm", section_gemm, 150),
    ("moe", section_moe, 150),
    ("conv", section_conv, 60),
    ("membw", section_membw, 60),
    ("launch", section_launch, 20),
    ("attention", section_attention, 60),
    ("llm", section_llm, 150),
    ("steady", section_steady, 60),
]


def collect_env(dev, dname):
    env = dict(
        device=dname,
        date=_dt.date.today().isoformat(),
        time=_dt.datetime.now().isoformat(timespec="seconds"),
        host=platform.node(),
        python=sys.version.split()[0],
        platform=platform.platform(),
        torch=torch.__version__,
        torch_cuda=torch.version.cuda,
        cpu_count=os.cpu_count(),
    )
    try:
        import triton  # noqa: F401

        env["triton"] = triton.__version__
    except Exception:  # noqa: BLE001
        pass
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        props = {}
        for a in dir(p):
            if a.startswith("_"):
                continue
            try:
                v = getattr(p, a)
            except Exception:  # noqa: BLE001
                continue
            if isinstance(v, (int, float, str, bool)):
                props[a] = v
            elif a == "uuid":
                props[a] = str(v)
        env["device_properties"] = props
        env["sm_count"] = p.multi_processor_count
        env["l2_bytes"] = getattr(p, "L2_cache_size", None)
        env["total_memory_bytes"] = p.total_memory
        env["compute_capability"] = "%d.%d" % (p.major, p.minor)
        try:
            env["cudnn"] = torch.backends.cudnn.version()
        except Exception:  # noqa: BLE001
            pass
        try:
            env["cuda_driver_version"] = (
                torch.cuda.driver_version() if hasattr(torch.cuda, "driver_version") else None
            )
        except Exception:  # noqa: BLE001
            pass
        smi = shutil.which("nvidia-smi")
        if smi:
            try:
                q = subprocess.run(
                    [
                        smi,
                        "--query-gpu=name,driver_version,vbios_version,memory.total,"
                        "clocks.max.sm,clocks.max.mem,power.default_limit,power.max_limit,"
                        "pstate,persistence_mode,compute_mode",
                        "--format=csv",
                        "-i",
                        "0",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=10,
                )
                env["nvidia_smi_query"] = q.stdout.strip() or q.stderr.strip()
                lines = q.stdout.strip().splitlines()
                if len(lines) >= 2:
                    env["driver_version"] = lines[1].split(",")[1].strip()
            except Exception as e:  # noqa: BLE001
                env["nvidia_smi_query"] = "error %r" % (e,)
    return env


ATTENTION_GRIDS = ("full", "short", "decode-edges")


def _attention_grids(text: str) -> str:
    """--attention-grid: grids of ATTENTION_GRIDS joined by commas, checked."""
    bad = [g for g in text.split(",") if g not in ATTENTION_GRIDS]
    if bad or not text:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give one or more of {', '.join(ATTENTION_GRIDS)} joined by commas"
        )
    return text


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument(
        "--sections",
        default=",".join(s[0] for s in SECTIONS if s[0] not in OPT_IN),
        help="sections to run (default: all but %s, which run only when named)" % ", ".join(OPT_IN),
    )
    ap.add_argument(
        "--gemm-groups",
        default="",
        help="gemm section: only these point groups (square, llm, awkward, llm_extra, "
        "batch_edge; default all)",
    )
    ap.add_argument(
        "--attention-grid",
        default="full",
        type=_attention_grids,
        help="attention section, one or more grids joined by commas: full (prefill, decode, "
        "the short prefill grid and the decode-edge grid), short (the short non-causal prefill "
        "grid, SHORT_PREFILL_L x SHORT_PREFILL_B), decode-edges (DECODE_EDGE_TOKENS cached "
        "tokens a call over DECODE_EDGE_CTX)",
    )
    ap.add_argument(
        "--budget-s",
        type=float,
        default=520.0,
        help="overall wall-clock budget; sections stop starting points after it",
    )
    args = ap.parse_args(argv)
    groups = {"square", "llm", "awkward", "llm_extra", "batch_edge"}
    unknown = sorted({g for g in args.gemm_groups.split(",") if g} - groups)
    if unknown:
        sys.exit("microbench: --gemm-groups: no group %s; the groups are %s"
                 % (", ".join(unknown), ", ".join(sorted(groups))))  # fmt: skip
    os.makedirs(args.out, exist_ok=True)
    t_start = time.perf_counter()
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        sys.exit("CUDA not available; use --device cpu for a logic test")
    dname = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu-" + platform.machine()
    torch.manual_seed(0)
    env = collect_env(dev, dname)
    env["args"] = vars(args)
    ctx = dict(
        device=dev,
        dname=dname,
        date=env["date"],
        out=args.out,
        quick=args.quick,
        gemm_groups={g for g in args.gemm_groups.split(",") if g},
        attention_grid=args.attention_grid,
        bench=Bench(dev),
        env=env,
        l2_bytes=env.get("l2_bytes") or 50 * MiB,
    )
    write_env(ctx)
    log(
        "device %s, torch %s, cuda %s, SMs %s, L2 %s"
        % (dname, torch.__version__, torch.version.cuda, env.get("sm_count"), env.get("l2_bytes"))
    )
    wanted = [s.strip() for s in args.sections.split(",") if s.strip()]
    timings = {}
    for name, fn, share in SECTIONS:
        if name not in wanted:
            continue
        now = time.perf_counter()
        left = args.budget_s - (now - t_start)
        if left <= 5:
            log("budget exhausted; skipping section", name)
            env.setdefault("skipped_sections", []).append(name)
            continue
        # each section gets up to 1.3x its share, but leaves 60% of their share to the
        # sections still to come
        later = [b for n, _f, b in SECTIONS[SECTIONS.index((name, fn, share)) + 1 :] if n in wanted]
        allow = min(share * 1.3, left - 0.6 * sum(later))
        allow = max(allow, min(0.5 * share, left))
        sec_deadline = now + allow
        ctx["section_deadline"] = lambda d=sec_deadline: d
        log("=== section %s (allow %.0f s)" % (name, allow))
        try:
            fn(ctx)
        except Exception as e:  # noqa: BLE001
            log("section %s FAILED: %r" % (name, e))
            traceback.print_exc()
            ctx["env"].setdefault("failures", []).append("section %s: %r" % (name, e))
        finally:
            cleanup(dev)
        timings[name] = time.perf_counter() - now
        ctx["env"]["section_seconds"] = timings
        write_env(ctx)
        log("=== section %s done in %.1f s" % (name, timings[name]))
    try:
        ctx["env"]["headline"] = summarize(args.out)
    except Exception as e:  # noqa: BLE001
        log("summary failed: %r" % (e,))
    ctx["env"]["total_seconds"] = time.perf_counter() - t_start
    write_env(ctx)
    log("all done in %.1f s" % (time.perf_counter() - t_start))


if __name__ == "__main__":
    main()
