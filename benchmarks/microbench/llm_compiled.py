#!/usr/bin/env python3
"""Fused Llama decode/prefill step times: torch.compile (inductor) plus a manual CUDA graph.

This is the fused companion of microbench.py's `llm` section, which is plain eager PyTorch with
about 27 kernels per layer. Here each decoder layer is written the way a production engine
(vLLM-style) structures it, and inductor fuses the elementwise work:

    res = h + res ; x = rmsnorm(res)          -> one fused add+RMSNorm kernel
    qkv = x @ Wqkv^T                           -> one GEMM (cuBLAS)
    rope(q), rope(k), k/v -> KV cache          -> fused pointwise/scatter kernel(s)
    attention over the static KV cache         -> flash SDPA (one kernel, or split-KV + combine)
    o = attn @ Wo^T                            -> one GEMM
    res = res + o ; x = rmsnorm(res)           -> one fused add+RMSNorm kernel
    gu = x @ W13^T                             -> one GEMM (merged gate/up)
    a = silu(g) * u                            -> one pointwise kernel
    h = a @ W2^T                               -> one GEMM

The layer function is compiled once per shape (torch.compile, mode "default", dynamic=False,
fullgraph=True) and called for all layers with that layer's weights and KV cache as arguments,
so one compile serves every layer. The whole step (embedding, 32 compiled layer calls, compiled
final add+norm+LM head) is then captured in one CUDA graph by hand, and the graph's replays are
timed with CUDA events (median over repeats of many replays).

KV cache: static, preallocated per (batch, context), one [B, n_kv, context+1, 128] K and V
tensor per layer, filled with random values. Decode writes position `context` (index_put with a
position tensor, as gpt-fast does) and attends over cache[:, :, :context+1] with flash SDPA; the
query heads of a GQA group are packed into the query-length dimension ([B, n_kv, group, 128]),
which is exact for a one-token decode and needs no mask and no K/V repeat. Prefill (batch 1) runs
causal flash SDPA on the fresh K/V with enable_gqa=True.

Usage:
    python benchmarks/microbench/llm_compiled.py --out DIR [--budget-s 420]
        [--models llama-3-8b,llama-2-7b] [--batches 1,8,32,64] [--contexts 512,2048]
        [--prompts 512,2048] [--profile llama-3-8b:1:512,llama-3-8b:32:512]
    python benchmarks/microbench/llm_compiled.py --out DIR --device cpu --models tiny  # logic test

On the lent H100 (device tool), the intended command is
    set -o pipefail; export PYTHONUNBUFFERED=1; timeout 470 python3 \
        benchmarks/microbench/llm_compiled.py --out $OUT --budget-s 430 2>&1 | tee $OUT/run.log
Each result row is flushed as soon as it is measured; --budget-s stops starting new points.

Outputs in DIR: llm_compiled.csv, kernels.csv (per-step kernel counts and GPU time by name, from
torch.profiler over graph replays), kernel_sequence.csv (the ordered kernels of one compiled
layer call), and the console log.
"""

import argparse
import contextlib
import csv
import datetime
import math
import os
import statistics
import sys
import time
import traceback

import torch
import torch.nn.functional as F

CONFIGS = {
    "llama-2-7b": dict(layers=32, hidden=4096, heads=32, kv_heads=32, ffn=11008, vocab=32000),
    "llama-3-8b": dict(layers=32, hidden=4096, heads=32, kv_heads=8, ffn=14336, vocab=128256),
    "tiny": dict(layers=2, hidden=256, heads=4, kv_heads=2, ffn=512, vocab=1000),
}

T0 = time.perf_counter()


def log(*a):
    print(time.strftime("%H:%M:%S"), "[%6.1fs]" % (time.perf_counter() - T0), *a, flush=True)


class CSVW:
    def __init__(self, path, cols, device_name, date):
        self.cols = ["device", "date"] + list(cols)
        self.dn, self.date = device_name, date
        self.f = open(path, "w", newline="", buffering=1)
        self.w = csv.writer(self.f)
        self.w.writerow(self.cols)
        self.f.flush()

    @staticmethod
    def _fmt(v):
        if v is None:
            return ""
        if isinstance(v, float):
            return repr(v) if math.isfinite(v) else ""
        return v

    def row(self, **kw):
        kw.setdefault("device", self.dn)
        kw.setdefault("date", self.date)
        self.w.writerow([self._fmt(kw.get(c)) for c in self.cols])
        self.f.flush()

    def close(self):
        self.f.close()


# --------------------------------------------------------------------------- model
def weight_bytes(cfg, esz=2):
    D, H, Hkv, Ff, V = cfg["hidden"], cfg["heads"], cfg["kv_heads"], cfg["ffn"], cfg["vocab"]
    hd = D // H
    per = ((H + 2 * Hkv) * hd * D + D * H * hd + 3 * Ff * D + 2 * D) * esz
    return cfg["layers"] * per + 2 * V * D * esz + D * esz


def kv_bytes(cfg, batch, max_len, esz=2):
    hd = cfg["hidden"] // cfg["heads"]
    return 2 * cfg["layers"] * batch * cfg["kv_heads"] * max_len * hd * esz


def randn(shape, dtype, dev, std):
    t = torch.empty(shape, dtype=dtype, device=dev)
    t.normal_(0.0, std)
    return t


class Model:
    """Random-weight Llama (std 0.02), weights kept as plain tensors per layer."""

    def __init__(self, name, cfg, dev, dtype):
        self.name, self.cfg, self.dev, self.dtype = name, cfg, dev, dtype
        D, H, Hkv, Ff, V = cfg["hidden"], cfg["heads"], cfg["kv_heads"], cfg["ffn"], cfg["vocab"]
        self.hd = D // H
        self.layers = []
        for _ in range(cfg["layers"]):
            self.layers.append(
                (
                    randn(((H + 2 * Hkv) * self.hd, D), dtype, dev, 0.02),  # wqkv
                    randn((D, H * self.hd), dtype, dev, 0.02),  # wo
                    randn((2 * Ff, D), dtype, dev, 0.02),  # w13 (gate; up)
                    randn((D, Ff), dtype, dev, 0.02),  # w2
                    torch.ones(D, dtype=dtype, device=dev),  # n1
                    torch.ones(D, dtype=dtype, device=dev),  # n2
                )
            )
        self.emb = randn((V, D), dtype, dev, 0.02)
        self.norm = torch.ones(D, dtype=dtype, device=dev)
        self.lm_head = randn((V, D), dtype, dev, 0.02)
        self.layer_fn, self.head_fn = make_fns(cfg)
        self.clayer = None
        self.chead = None

    def compile(self, mode):
        kw = dict(fullgraph=True, dynamic=False)
        if mode:
            kw["mode"] = mode
        self.clayer = torch.compile(self.layer_fn, **kw)
        self.chead = torch.compile(self.head_fn, **kw)

    def rope_tables(self, pos0, L):
        half = self.hd // 2
        inv = 1.0 / (
            500000.0 ** (torch.arange(0, half, device=self.dev, dtype=torch.float32) / half)
        )
        pos = torch.arange(pos0, pos0 + L, device=self.dev, dtype=torch.float32)
        ang = torch.outer(pos, inv)
        return ang.cos().to(self.dtype).contiguous(), ang.sin().to(self.dtype).contiguous()

    def alloc_cache(self, batch, max_len):
        c = self.cfg
        kcs, vcs = [], []
        for _ in range(c["layers"]):
            for lst in (kcs, vcs):
                t = torch.empty(
                    (batch, c["kv_heads"], max_len, self.hd), dtype=self.dtype, device=self.dev
                )
                t.normal_(0.0, 1.0)
                lst.append(t)
        return kcs, vcs


def make_fns(cfg):
    D, H, Hkv = cfg["hidden"], cfg["heads"], cfg["kv_heads"]
    hd = D // H
    G = H // Hkv
    eps = 1e-5
    half = hd // 2

    def rope(x, cos, sin):
        # x: (B, L, nh, hd); cos/sin: (L, hd/2)
        c = cos.view(1, cos.shape[0], 1, half)
        s = sin.view(1, sin.shape[0], 1, half)
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1)

    def layer(h, res, wqkv, wo, w13, w2, n1, n2, kc, vc, cos, sin, pos, B, L, kv_len, decode, gqa):
        # h, res: (B*L, D). Returns (mlp_out, residual), vLLM-style (the next layer adds them).
        res = h + res
        x = F.rms_norm(res, (D,), n1, eps)
        qkv = F.linear(x, wqkv)
        q, k, v = qkv.split([H * hd, Hkv * hd, Hkv * hd], dim=-1)
        q = rope(q.view(B, L, H, hd), cos, sin)
        k = rope(k.view(B, L, Hkv, hd), cos, sin)
        v = v.view(B, L, Hkv, hd)
        kc[:, :, pos] = k.transpose(1, 2)
        vc[:, :, pos] = v.transpose(1, 2)
        if decode:
            # L == 1: pack the G query heads of each KV head into the query-length dim.
            qg = q.view(B, Hkv, G, hd)
            o = F.scaled_dot_product_attention(qg, kc[:, :, :kv_len], vc[:, :, :kv_len])
        else:
            qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
            if G > 1 and gqa == "gqa":
                o = F.scaled_dot_product_attention(qt, kt, vt, is_causal=True, enable_gqa=True)
            else:
                if G > 1:
                    kt = kt.repeat_interleave(G, dim=1)
                    vt = vt.repeat_interleave(G, dim=1)
                o = F.scaled_dot_product_attention(qt, kt, vt, is_causal=True)
            o = o.transpose(1, 2)
        o = o.reshape(B * L, H * hd)
        res = res + F.linear(o, wo)
        x = F.rms_norm(res, (D,), n2, eps)
        g, u = F.linear(x, w13).chunk(2, dim=-1)
        return F.linear(F.silu(g) * u, w2), res

    def head(h, res, nw, lm, last_only):
        if last_only:
            h, res = h[-1:], res[-1:]
        x = F.rms_norm(h + res, (D,), nw, eps)
        return F.linear(x, lm)

    return layer, head


class Step:
    """One decode (L=1) or prefill (B=1, L=P) step over a static cache."""

    def __init__(self, model, B, L, pos0, gqa="gqa"):
        self.m = model
        self.B, self.L, self.pos0 = B, L, pos0
        self.decode = L == 1
        self.kv_len = pos0 + L
        self.gqa = gqa
        dev = model.dev
        self.kcs, self.vcs = model.alloc_cache(B, pos0 + L)
        self.tok = torch.randint(0, model.cfg["vocab"], (B * L,), device=dev)
        self.cos, self.sin = model.rope_tables(pos0, L)
        self.pos = torch.arange(pos0, pos0 + L, device=dev, dtype=torch.long)
        self.zres = torch.zeros((B * L, model.cfg["hidden"]), dtype=model.dtype, device=dev)

    def layer_args(self, i, h, res):
        return (
            (h, res)
            + self.m.layers[i]
            + (
                self.kcs[i],
                self.vcs[i],
                self.cos,
                self.sin,
                self.pos,
                self.B,
                self.L,
                self.kv_len,
                self.decode,
                self.gqa,
            )
        )

    def run(self, compiled=True):
        m = self.m
        lf = m.clayer if compiled else m.layer_fn
        hf = m.chead if compiled else m.head_fn
        h = F.embedding(self.tok, m.emb)
        res = self.zres
        for i in range(len(m.layers)):
            h, res = lf(*self.layer_args(i, h, res))
        return hf(h, res, m.norm, m.lm_head, not self.decode)

    def one_layer(self, h):
        return self.m.clayer(*self.layer_args(0, h, self.zres))


# --------------------------------------------------------------------------- timing
def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def time_fn(dev, fn, target_s, reps, max_inner=200):
    """Median per-call time. CUDA: events around n back-to-back calls; CPU: perf_counter."""
    if dev.type == "cuda":
        e0 = torch.cuda.Event(enable_timing=True)
        e1 = torch.cuda.Event(enable_timing=True)

        def measure(n):
            e0.record()
            for _ in range(n):
                fn()
            e1.record()
            e1.synchronize()
            return e0.elapsed_time(e1) / 1e3 / n

    else:

        def measure(n):
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            return (time.perf_counter() - t0) / n

    fn()
    sync(dev)
    t1 = measure(1)
    n = int(min(max(target_s / max(t1, 1e-6), 2), max_inner))
    ts = [measure(n) for _ in range(reps)]
    return statistics.median(ts), min(ts), max(ts), n, reps


def capture_graph(fn):
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        out = fn()
    torch.cuda.synchronize()
    return g, out


def rel_err(a, b):
    a, b = a.float(), b.float()
    return (torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b).clamp_min(1e-30)).item()


# --------------------------------------------------------------------------- profiling
def profile_kernels(dev, fn, nsteps):
    """Run fn nsteps times under torch.profiler; return [(name, duration_us)] of GPU activity."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU]
    if dev.type == "cuda":
        acts.append(ProfilerActivity.CUDA)
    sync(dev)
    with profile(activities=acts) as prof:
        for _ in range(nsteps):
            fn()
        sync(dev)
    out = []
    for e in prof.events():
        dt = getattr(e, "device_type", None)
        if dt is not None and "CUDA" in str(dt):
            out.append((e.name, float(e.time_range.elapsed_us()), e.time_range.start))
    out.sort(key=lambda r: r[2])
    return [(n, d) for n, d, _ in out]


def is_kernel(name):
    n = name.lower()
    return not (n.startswith("memcpy") or n.startswith("memset"))


def summarize_kernels(evts, nsteps):
    agg = {}
    for n, d in evts:
        c, t = agg.get(n, (0, 0.0))
        agg[n] = (c + 1, t + d)
    rows = [(n, c / nsteps, t / nsteps) for n, (c, t) in agg.items()]
    rows.sort(key=lambda r: -r[2])
    nk = sum(1 for n, _ in evts if is_kernel(n)) / nsteps
    nall = len(evts) / nsteps
    tsum = sum(d for _, d in evts) / nsteps
    return rows, nk, nall, tsum


def short(name, n=110):
    return name if len(name) <= n else name[: n - 3] + "..."


# --------------------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--models", default="llama-3-8b,llama-2-7b")
    ap.add_argument("--batches", default="1,8,32,64")
    ap.add_argument("--contexts", default="512,2048")
    ap.add_argument("--prompts", default="512,2048")
    ap.add_argument(
        "--profile",
        default="llama-3-8b:1:512,llama-3-8b:32:512,llama-2-7b:1:512",
        help="model:batch:context decode points to profile (empty: none)",
    )
    ap.add_argument(
        "--mode", default="default", help="torch.compile mode (default, max-autotune-no-cudagraphs)"
    )
    ap.add_argument("--budget-s", type=float, default=420.0)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--target-s", type=float, default=0.08, help="GPU time per timed repeat")
    ap.add_argument(
        "--no-nograph", action="store_true", help="skip the compiled-without-graph timing"
    )
    args = ap.parse_args(argv)

    os.makedirs(args.out, exist_ok=True)
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32
    esz = 2 if cuda else 4
    deadline = T0 + args.budget_s
    left = lambda: deadline - time.perf_counter()  # noqa: E731

    import torch._dynamo as dynamo
    import torch._inductor.config as icfg

    for k in ("cache_size_limit", "recompile_limit"):
        if hasattr(dynamo.config, k):
            setattr(dynamo.config, k, 256)
    for k in ("accumulated_cache_size_limit", "accumulated_recompile_limit"):
        if hasattr(dynamo.config, k):
            setattr(dynamo.config, k, 4096)
    dynamo.config.automatic_dynamic_shapes = False
    if hasattr(icfg, "triton") and hasattr(icfg.triton, "unique_kernel_names"):
        icfg.triton.unique_kernel_names = True

    dname = torch.cuda.get_device_name(dev) if cuda else "cpu"
    date = datetime.date.today().isoformat()
    try:
        import triton

        tv = triton.__version__
    except Exception:  # noqa: BLE001
        tv = None
    log(
        "device=%s torch=%s cuda=%s triton=%s python=%s mode=%s budget=%.0fs"
        % (
            dname,
            torch.__version__,
            torch.version.cuda,
            tv,
            sys.version.split()[0],
            args.mode,
            args.budget_s,
        )
    )
    mode_name = "inductor-%s" % (args.mode or "default")

    res_csv = CSVW(
        os.path.join(args.out, "llm_compiled.csv"),
        [
            "model",
            "phase",
            "batch",
            "context",
            "prompt",
            "mode",
            "time_s",
            "tokens_per_s",
            "kernels_per_step",
        ],
        dname,
        date,
    )
    kfile = open(os.path.join(args.out, "kernels.csv"), "w", newline="", buffering=1)
    kw = csv.writer(kfile)
    kw.writerow(["model", "batch", "context", "kernel", "count", "total_time_s"])
    sfile = open(os.path.join(args.out, "kernel_sequence.csv"), "w", newline="", buffering=1)
    sw = csv.writer(sfile)
    sw.writerow(["model", "batch", "context", "scope", "index", "kernel", "time_s"])

    sdpa_ctx = contextlib.nullcontext()
    if cuda:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        sdpa_ctx = sdpa_kernel(SDPBackend.FLASH_ATTENTION)

    models = [m for m in args.models.split(",") if m]
    batches = [int(x) for x in args.batches.split(",") if x]
    ctxs = [int(x) for x in args.contexts.split(",") if x]
    prompts = [int(x) for x in args.prompts.split(",") if x]
    prof_pts = set()
    for p in args.profile.split(","):
        if p:
            n, b, c = p.split(":")
            prof_pts.add((n, int(b), int(c)))

    # Task order: all decode points, then prefill (needs least priority).
    tasks = [(n, "decode", b, c) for n in models for c in ctxs for b in batches]
    tasks += [(n, "prefill", 1, p) for n in reversed(models) for p in prompts]  # no model rebuild
    summary = []
    model = None
    gqa_prefill = "gqa"
    # reduce-overhead already replays CUDA graphs (cudagraph trees) inside each compiled call, so
    # the step is then timed as called ("-nograph" rows) and not captured again by hand.
    use_graph = cuda and args.mode != "reduce-overhead"

    def free_bytes():
        if not cuda:
            return 64 << 30
        f, _ = torch.cuda.mem_get_info()
        return f

    def cleanup():
        import gc

        gc.collect()
        if cuda:
            torch.cuda.empty_cache()

    with torch.no_grad(), sdpa_ctx:
        for name, phase, B, C in tasks:
            need = 40.0 if phase == "decode" else (30.0 if C <= 512 else 45.0)
            if left() < need:
                log("deadline: skip %s %s B=%d %d (%.0f s left)" % (name, phase, B, C, left()))
                continue
            cfg = CONFIGS[name]
            if model is None or model.name != name:
                model = None
                cleanup()
                t0 = time.perf_counter()
                model = Model(name, cfg, dev, dtype)
                model.compile(args.mode)
                sync(dev)
                log(
                    "%s built: %.2f GB weights (%.1f s)"
                    % (name, weight_bytes(cfg, esz) / 1e9, time.perf_counter() - t0)
                )
            L, pos0 = (1, C) if phase == "decode" else (C, 0)
            kvb = kv_bytes(cfg, B, pos0 + L, esz)
            act = B * L * (cfg["vocab"] + 8 * cfg["ffn"] + 16 * cfg["hidden"]) * esz * 3 + (
                512 << 20
            )
            if kvb + act > 0.9 * free_bytes():
                log(
                    "skip %s %s B=%d ctx/prompt=%d: KV %.1f GB + act %.1f GB > 0.9 x free %.1f GB"
                    % (name, phase, B, C, kvb / 1e9, act / 1e9, free_bytes() / 1e9)
                )
                continue
            tag = "%s %s B=%d %s=%d" % (name, phase, B, "ctx" if phase == "decode" else "prompt", C)
            st = g = out = None
            try:
                st = Step(model, B, L, pos0, gqa_prefill)
                t0 = time.perf_counter()
                try:
                    out_c = st.run(True)
                    sync(dev)
                except Exception as e:  # noqa: BLE001
                    if phase == "prefill" and st.gqa == "gqa":
                        log(
                            "%s: compile with enable_gqa failed (%r); retrying with repeat_interleave"
                            % (tag, e)
                        )
                        gqa_prefill = st.gqa = "repeat"
                        out_c = st.run(True)
                        sync(dev)
                    else:
                        raise
                tc = time.perf_counter() - t0
                out_r = st.run(False)
                sync(dev)
                err = rel_err(out_c, out_r)
                log("%s: compiled in %.1f s; rel err compiled vs eager %.2e" % (tag, tc, err))
                del out_c, out_r

                kps = None
                nograph_t = None
                if not args.no_nograph or not use_graph:
                    t, tmin, tmax, n, r = time_fn(
                        dev, lambda: st.run(True), args.target_s, max(3, args.reps // 3)
                    )
                    nograph_t = t
                    log(
                        "%s: compiled, no graph: %.3f ms (min %.3f max %.3f, %dx%d)"
                        % (tag, t * 1e3, tmin * 1e3, tmax * 1e3, r, n)
                    )
                    toks = B if phase == "decode" else C
                    res_csv.row(
                        model=name,
                        phase=phase,
                        batch=B,
                        context=C if phase == "decode" else 0,
                        prompt=0 if phase == "decode" else C,
                        mode=mode_name + "-nograph",
                        time_s=nograph_t,
                        tokens_per_s=toks / nograph_t,
                    )

                if use_graph:
                    try:
                        g, out = capture_graph(lambda: st.run(True))
                    except Exception as e:  # noqa: BLE001
                        use_graph = False
                        log(
                            "%s: CUDA-graph capture failed (%r); timing without graphs from here on"
                            % (tag, e)
                        )
                        traceback.print_exc()
                        continue
                    t, tmin, tmax, n, r = time_fn(dev, g.replay, args.target_s, args.reps)
                    toks = B if phase == "decode" else C
                    # profile (graph replays, plus one compiled layer call on its own)
                    if phase == "decode" and (name, B, C) in prof_pts and left() > 20:
                        try:
                            nst = 3
                            ev = profile_kernels(dev, g.replay, nst)
                            rows, nk, nall, tsum = summarize_kernels(ev, nst)
                            if nk == 0:  # the profiler saw no kernels inside graph replays
                                ev = profile_kernels(dev, lambda: st.run(True), nst)
                                rows, nk, nall, tsum = summarize_kernels(ev, nst)
                                src = "compiled step without graph"
                            else:
                                src = "CUDA-graph replays"
                            kps = nk
                            for kn, cnt, tt in rows:
                                kw.writerow([name, B, C, kn, "%g" % cnt, repr(tt * 1e-6)])
                            kfile.flush()
                            h0 = F.embedding(st.tok, model.emb)
                            st.one_layer(h0)
                            ev1 = profile_kernels(dev, lambda: st.one_layer(h0), 1)
                            nl_k = sum(1 for kn, _ in ev1 if is_kernel(kn))
                            for i, (kn, d) in enumerate(ev1):
                                sw.writerow([name, B, C, "one_layer", i, kn, repr(d * 1e-6)])
                            sfile.flush()
                            log(
                                "%s: PROFILE (%s, %d steps): %.0f kernels per step (%.0f GPU ops incl. memcpy/memset), "
                                "kernel time sum %.3f ms per step vs step %.3f ms; one compiled layer call = %d kernels "
                                "per layer; the other %.0f kernels per step are embedding + final norm + LM head"
                                % (
                                    tag,
                                    src,
                                    nst,
                                    nk,
                                    nall,
                                    tsum / 1e3,
                                    t * 1e3,
                                    nl_k,
                                    nk - nl_k * cfg["layers"],
                                )
                            )
                            log(
                                "%s: one layer, in order: %s"
                                % (tag, " | ".join(short(kn, 70) for kn, _ in ev1))
                            )
                            for kn, cnt, tt in rows[:15]:
                                log("    %6.1f x %9.1f us  %s" % (cnt, tt, short(kn)))
                            t2 = time_fn(dev, g.replay, args.target_s, 5)[0]
                            log(
                                "%s: graph re-timed after profiling: %.3f ms (before: %.3f ms)"
                                % (tag, t2 * 1e3, t * 1e3)
                            )
                        except Exception as e:  # noqa: BLE001
                            log("%s: profiling failed: %r" % (tag, e))
                            traceback.print_exc()
                    res_csv.row(
                        model=name,
                        phase=phase,
                        batch=B,
                        context=C if phase == "decode" else 0,
                        prompt=0 if phase == "decode" else C,
                        mode=mode_name + "+cudagraph",
                        time_s=t,
                        tokens_per_s=toks / t,
                        kernels_per_step=kps,
                    )
                    log(
                        "RESULT %s: graph %.3f ms (min %.3f max %.3f, %dx%d replays)  %.1f tok/s  KV %.2f GB"
                        % (tag, t * 1e3, tmin * 1e3, tmax * 1e3, r, n, toks / t, kvb / 1e9)
                    )
                    summary.append((name, phase, B, C, t, kps, nograph_t))
            except Exception as e:  # noqa: BLE001
                log("%s failed: %r" % (tag, e))
                traceback.print_exc()
            finally:
                g = out = st = None
                cleanup()

    res_csv.close()
    kfile.close()
    sfile.close()
    log("SUMMARY (CUDA-graph replay of the compiled step, median)")
    log(
        "%-11s %-7s %5s %6s %10s %10s %8s"
        % ("model", "phase", "batch", "ctx/P", "graph ms", "nograph ms", "kern/step")
    )
    for name, phase, B, C, t, kps, ng in summary:
        log(
            "%-11s %-7s %5d %6d %10.3f %10s %8s"
            % (
                name,
                phase,
                B,
                C,
                t * 1e3,
                "%.3f" % (ng * 1e3) if ng else "",
                "%.0f" % kps if kps else "",
            )
        )
    log("done in %.1f s" % (time.perf_counter() - T0))


if __name__ == "__main__":
    main()
