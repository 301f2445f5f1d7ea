"""A serving workload: a request stream (arrivals, prompt and output lengths) and a server config.

Requests come from a Poisson process at ``rate`` for ``duration_s`` seconds with prompt and output
lengths drawn from named distributions, or from a trace file (CSV: ``arrival_s,prompt_tokens,
output_tokens``). The same seed gives the same stream. The server is a continuous-batching engine
(vLLM / SGLang style) whose knobs are the ones those servers expose: ``max_num_seqs``,
``max_num_batched_tokens``, ``block_size``, the fraction of memory it may use, and chunked prefill.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from hardware import files
from workloads.llm import Decode, Speculation, _Common, int4_group_field
from workloads.ops import WorkloadError

_DISTS = ("const", "uniform", "exp", "lognormal")


@dataclass(frozen=True, slots=True, kw_only=True)
class LengthDist:
    """Token counts drawn i.i.d., rounded and clipped to [1, ``max_tokens``].

    ``const:N``; ``uniform:LO,HI`` (inclusive); ``exp:MEAN`` (geometric-like, heavy tail of chat
    answers); ``lognormal:MEDIAN,SIGMA`` (ShareGPT-like prompts: median and log-space sigma).
    """

    kind: str
    a: float
    b: float = 0.0
    max_tokens: int = 1 << 20

    @classmethod
    def parse(cls, text: str | int, flag: str, max_tokens: int = 1 << 20) -> LengthDist:
        """``"512"``, ``"const:512"``, ``"uniform:100,1000"``, ``"exp:300"``, ``"lognormal:500,0.8"``."""
        s = str(text).strip()
        kind, _, rest = s.partition(":") if ":" in s else ("const", "", s)
        fix = f"{flag} must be N, const:N, uniform:LO,HI, exp:MEAN or lognormal:MEDIAN,SIGMA"
        if kind not in _DISTS:
            raise WorkloadError(f"serve: {fix}, got {s!r}")
        try:
            nums = [float(x) for x in rest.split(",")] if rest else []
        except ValueError:
            raise WorkloadError(f"serve: {fix}, got {s!r}") from None
        want = 2 if kind in ("uniform", "lognormal") else 1
        if len(nums) != want or any(x <= 0 for x in nums) or not all(map(math.isfinite, nums)):
            raise WorkloadError(f"serve: {fix} with positive numbers, got {s!r}")
        if kind == "uniform" and nums[1] < nums[0]:
            raise WorkloadError(f"serve: {flag} uniform:LO,HI needs LO <= HI, got {s!r}")
        return cls(kind=kind, a=nums[0], b=nums[1] if want == 2 else 0.0, max_tokens=max_tokens)

    @property
    def mean(self) -> float:
        """The mean before clipping and rounding (for planning and reports)."""
        if self.kind == "const":
            return self.a
        if self.kind == "uniform":
            return (self.a + self.b) / 2
        if self.kind == "exp":
            return self.a
        return self.a * math.exp(self.b**2 / 2)

    @property
    def upper(self) -> int:
        """The largest value it can draw."""
        if self.kind == "const":
            return min(self.max_tokens, max(1, round(self.a)))
        if self.kind == "uniform":
            return min(self.max_tokens, max(1, round(self.b)))
        return self.max_tokens

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.kind == "const":
            x = np.full(n, self.a)
        elif self.kind == "uniform":
            x = rng.integers(round(self.a), round(self.b) + 1, size=n).astype(float)
        elif self.kind == "exp":
            x = rng.exponential(self.a, size=n)
        else:
            x = rng.lognormal(math.log(self.a), self.b, size=n)
        return np.clip(np.rint(x), 1, self.max_tokens).astype(np.int64)

    def __str__(self) -> str:
        if self.kind in ("uniform", "lognormal"):
            return f"{self.kind}:{self.a:g},{self.b:g}"
        return f"{self.kind}:{self.a:g}"


def streams(seed: int) -> tuple[np.random.Generator, ...]:
    """Independent generators for arrival gaps, prompt lengths and output lengths: the i-th
    request's lengths do not depend on how many gaps were drawn (common random numbers)."""
    return tuple(np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))


@dataclass(frozen=True, slots=True)
class Requests:
    """A request stream, sorted by arrival: times in seconds, lengths in tokens."""

    arrival_s: np.ndarray
    prompt: np.ndarray
    output: np.ndarray

    def __len__(self) -> int:
        return len(self.arrival_s)


def load_trace(path: str | Path) -> Requests:
    """Read ``arrival_s,prompt_tokens,output_tokens`` rows (a header row is required)."""
    p = Path(path)
    if not p.is_file():
        raise WorkloadError(f"serve: --trace-file {str(p)!r} does not exist")
    cols = ("arrival_s", "prompt_tokens", "output_tokens")
    text = files.read_text(p, "serve: --trace-file")
    with io.StringIO(text, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in cols if c not in (reader.fieldnames or [])]
        if missing:
            raise WorkloadError(
                f"serve: --trace-file needs a header with {', '.join(cols)}; missing {missing}"
            )
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                t, a, b = float(row[cols[0]]), int(row[cols[1]]), int(row[cols[2]])
            except (TypeError, ValueError):
                raise WorkloadError(
                    f"serve: --trace-file line {line}: arrival_s must be a number and token "
                    f"counts integers, got {row!r}"
                ) from None
            if t < 0 or a < 1 or b < 1 or not math.isfinite(t):
                raise WorkloadError(
                    f"serve: --trace-file line {line}: arrival_s >= 0 and token counts >= 1 "
                    f"required, got {row!r}"
                )
            rows.append((t, a, b))
    if not rows:
        raise WorkloadError(f"serve: --trace-file {str(p)!r} has no requests")
    rows.sort(key=lambda r: r[0])
    arr = np.array(rows, dtype=float)
    return Requests(arr[:, 0], arr[:, 1].astype(np.int64), arr[:, 2].astype(np.int64))


@dataclass(frozen=True, slots=True, kw_only=True)
class Serving(_Common):
    """An LLM served by ``replicas`` copies of a TP-``tp`` engine behind one router.

    ``batch`` and ``dp`` of the base descriptor are unused (the batch forms at run time).
    ``memory_fraction`` is the share of each chip's memory the engine may fill (vLLM's
    ``gpu_memory_utilization``, default 0.9); what the weights and the activation workspace leave
    of it holds the paged KV cache in blocks of ``block_size`` tokens.
    """

    rate: float = 1.0  # requests per second, Poisson
    duration_s: float = 60.0
    prompt: LengthDist = LengthDist(kind="const", a=512)
    output: LengthDist = LengthDist(kind="const", a=128)
    trace: Requests | None = None
    seed: int = 0
    replicas: int = 1
    max_num_seqs: int = 256
    max_num_batched_tokens: int | None = None  # None: 8192, or 2048 with chunked prefill
    chunked_prefill: bool = False
    block_size: int = 16
    memory_fraction: float = 0.9
    router: str = "least-loaded"  # or "round-robin"
    concurrency: int | None = None  # closed loop: this many clients, each sends on completion
    # vLLM: prompt blocks + 1 % free; "reserve": prompt + output; None: the runtime's policy
    admission: str | None = None
    # disaggregated serving (DistServe, Splitwise): the first prefill_replicas replicas only
    # prefill, the rest only decode, each request's KV cache moved between them over the
    # inter-node link; 0: every replica does both (colocated)
    prefill_replicas: int = 0
    # speculative decoding: every decode iteration drafts and checks (workloads.llm.Speculation)
    spec: Speculation | None = None

    @property
    def admission_policy(self) -> str:
        """``admission`` where given, else the engine's own (``Runtime.admission``)."""
        return self.admission or self.runtime.admission

    def validate(self) -> None:
        self._validate("serve")
        if self.sampling == "none":
            raise WorkloadError("serve: --sampling none stops at the logits (a forward-pass "
                                "benchmark); a server picks a token every step: use greedy, "
                                "random or top-p")  # fmt: skip
        if self.spec is not None:
            # a drafter with another vocabulary, or one the layout cannot run, is refused
            replace(self.engine(batch=1), context=1, spec=self.spec).lower()
        if self.trace is None:
            if not (self.rate > 0 and math.isfinite(self.rate)):
                raise WorkloadError(f"serve: --rate must be > 0 requests/s, got {self.rate!r}")
            if not (self.duration_s > 0 and math.isfinite(self.duration_s)):
                raise WorkloadError(f"serve: --duration must be > 0 s, got {self.duration_s!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise WorkloadError(f"serve: --seed must be an integer >= 0, got {self.seed!r}")
        for name in ("replicas", "max_num_seqs", "block_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                flag = name.replace("_", "-")
                raise WorkloadError(f"serve: --{flag} must be an integer >= 1, got {v!r}")
        if self.concurrency is not None and (
            not isinstance(self.concurrency, int) or self.concurrency < 1
        ):
            raise WorkloadError(
                f"serve: --concurrency must be an integer >= 1, got {self.concurrency!r}"
            )
        if self.max_num_batched_tokens is not None and self.max_num_batched_tokens < 1:
            raise WorkloadError(
                "serve: --max-batched-tokens must be an integer >= 1, got "
                f"{self.max_num_batched_tokens!r}"
            )
        if not 0 < self.memory_fraction <= 1:
            raise WorkloadError(
                f"serve: --memory-fraction must be in (0, 1], got {self.memory_fraction!r}"
            )
        if self.admission not in (None, "watermark", "reserve"):
            raise WorkloadError(
                f"serve: --admission must be watermark or reserve, got {self.admission!r}"
            )
        if self.router not in ("least-loaded", "round-robin"):
            raise WorkloadError(
                f"serve: --router must be least-loaded or round-robin, got {self.router!r}"
            )
        p = self.prefill_replicas
        if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p < self.replicas:
            raise WorkloadError(
                f"serve: --prefill-chips must leave at least one decode replica: prefill "
                f"replicas must be in 0..{self.replicas - 1} of the {self.replicas}, got {p!r}"
            )

    @property
    def token_budget(self) -> int:
        """Tokens one iteration may process (vLLM ``max_num_batched_tokens``)."""
        if self.max_num_batched_tokens is not None:
            return self.max_num_batched_tokens
        return 2048 if self.chunked_prefill else 8192

    def requests(self) -> Requests:
        """The request stream: the trace, or Poisson arrivals drawn from ``seed``."""
        if self.trace is not None:
            return self.trace
        # three independent streams, so the i-th request's lengths do not depend on the rate
        # (common random numbers: runs at different rates see the same requests, rescaled)
        gaps, prompts, outputs = streams(self.seed)
        # Poisson process: exponential gaps; draw a few sigma more than the mean count
        mean = self.rate * self.duration_s
        n = int(mean + 6 * math.sqrt(mean) + 16)
        t = np.cumsum(gaps.exponential(1.0 / self.rate, size=n))
        t = t[t < self.duration_s]
        k = len(t)
        if k == 0:
            raise WorkloadError(
                f"serve: no request arrives in {self.duration_s:g} s at {self.rate:g} req/s "
                f"(expected {mean:.2g}); raise --rate or --duration"
            )
        # a server caps prompt + output at the model's context window
        window = self.model.max_seq
        prompt = np.minimum(self.prompt.sample(prompts, k), window - 1)
        output = np.minimum(self.output.sample(outputs, k), window - prompt)
        return Requests(t, prompt, output)

    def engine(self, batch: int = 1) -> Decode:
        """The base LLM descriptor of one replica (for lowering one iteration's ops)."""
        return Decode(
            model=self.model, batch=batch, dtype=self.dtype, kv_dtype=self.kv_dtype, tp=self.tp,
            attention_kernel=self.attention_kernel, runtime=self.runtime, sampling=self.sampling,
            int4_group=self.int4_group,
        )  # fmt: skip

    def describe(self) -> dict:
        d = {
            "kind": "serve",
            "model": self.model.name,
            "dtype": self.dtype,
            **int4_group_field(self),
            "kv_dtype": self.kv_dtype or ("fp32" if self.kv_bytes == 4 else "bf16"),
            "tp": self.tp,
            "replicas": self.replicas,
            "max_num_seqs": self.max_num_seqs,
            "max_num_batched_tokens": self.token_budget,
            "chunked_prefill": self.chunked_prefill,
            # chunked prefill: prompt chunks in decode steps (vLLM) or steps of their own (SGLang)
            "mixed_prefill": self.runtime.mixed_prefill,
            "block_size": self.block_size,
            "router": self.router,
            "admission": self.admission_policy,
            "prefill_replicas": self.prefill_replicas,
            "seed": self.seed,
            "attention_kernel": self.attention_kernel,
            "runtime": self.runtime.name,
        }
        if self.sampling != "greedy":
            d["sampling"] = self.sampling
        if self.concurrency is not None:
            d["concurrency"] = self.concurrency
        if self.spec is not None:
            d |= {"spec_tokens": self.spec.tokens, "draft": self.spec.draft_name,
                  "acceptance": self.spec.acceptance,
                  "accepted_length": self.spec.accepted_length,
                  "tokens_per_step": round(self.spec.tokens_per_step, 3)}  # fmt: skip
        if self.trace is None:
            d |= {
                "rate": self.rate,
                "duration_s": self.duration_s,
                "prompt": str(self.prompt),
                "output": str(self.output),
            }
        else:
            d |= {"trace_requests": len(self.trace)}
        return d
