"""The event engine: a simpy timeline of a pipelined training step, and its Chrome trace.

One representative chip per pipeline stage (every chip of a stage does the same work at the
same time: tensor, context and data parallelism are symmetric), each with three streams:

- compute: the stage's forward (F) and backward (B) chunks, in the order of the schedule;
- pipeline link: activations to the next stage after F, gradients to the previous after B
  (point-to-point, beside compute unless overlap is off);
- data-parallel link: the gradient reduction, in buckets as the last micro-batch's backward
  produces them (Megatron-LM ``overlap_grad_reduce``; PyTorch DDP buckets), then the
  optimizer step and the ZeRO parameter all-gather.

Schedules (Narayanan et al. 2021, "Efficient Large-Scale Language Model Training on GPU
Clusters Using Megatron-LM", Sec. 2.2; order as in Megatron-LM's
``forward_backward_pipelining_with_interleaving``): stage s runs
warm-up = (p - s - 1)·2 + (v - 1)·p forward chunks (p - s - 1 for plain 1F1B), then alternates
one forward and one backward, then drains the backwards. With equal chunk times and free links
the bubble is (p - 1)/(m + p - 1) of the step for 1F1B and (p - 1)/(v·m + p - 1) interleaved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hardware import files

Part = tuple[str, float, str]  # (name, seconds, category) inside a chunk, for the trace


@dataclass(frozen=True, slots=True, kw_only=True)
class StageWork:
    """Durations one stage's chip needs; ``forward[c]``/``backward[c]`` per virtual chunk."""

    forward: tuple[float, ...]
    backward: tuple[float, ...]
    grad_sync: tuple[float, ...] = ()  # per chunk: DP gradient reduction after its last B
    layers: tuple[int, ...] = ()  # per chunk: buckets of the gradient reduction
    optimizer: float = 0.0
    param_gather: float = 0.0  # ZeRO 1/2: parameters gathered after the optimizer
    # how much slower compute runs beside a collective (``sim.cost.roofline.beside_slowdown``):
    # per chunk, its backward beside the gradient reduction; the first forward beside the
    # parameter gather
    grad_sync_slowdown: tuple[float, ...] = ()
    param_gather_slowdown: float = 0.0
    forward_parts: tuple[tuple[Part, ...], ...] = ()
    backward_parts: tuple[tuple[Part, ...], ...] = ()
    # per chunk, a pass that runs with no pass of another micro-batch beside it, where
    # ``forward``/``backward`` are paired ones (Megatron-Core's combined 1F1B overlap): the
    # warm-up forwards and the cool-down backwards (``unpaired``); empty: no pairing
    forward_alone: tuple[float, ...] = ()
    backward_alone: tuple[float, ...] = ()
    forward_alone_parts: tuple[tuple[Part, ...], ...] = ()
    backward_alone_parts: tuple[tuple[Part, ...], ...] = ()


@dataclass(slots=True)
class StageTimes:
    """What happened on one stage's representative chip."""

    busy_s: float = 0.0  # compute-stream time spent in F and B
    backward_end_s: float = 0.0  # end of its last backward
    sync_end_s: float = 0.0  # end of its gradient reduction (>= backward_end_s)
    optimizer_s: float = 0.0
    gather_exposed_s: float = 0.0
    contention_s: float = 0.0  # compute lost to the collectives running beside it
    end_s: float = 0.0
    # (F|B, chunk) -> passes that ran alone (``StageWork.forward_alone``)
    unpaired: dict[tuple[str, int], int] = field(default_factory=dict)


@dataclass(slots=True)
class Timeline:
    step_s: float
    stages: list[StageTimes]
    events: list[dict] = field(default_factory=list)  # Chrome trace 'X' events (µs)

    @property
    def critical_stage(self) -> int:
        return max(range(len(self.stages)), key=lambda s: self.stages[s].end_s)

    def chrome_trace(self, meta: dict | None = None) -> dict:
        names = []
        for s in range(len(self.stages)):
            names.append({"ph": "M", "name": "process_name", "pid": s, "tid": 0,
                          "args": {"name": f"pipeline stage {s}"}})  # fmt: skip
            for tid, stream in enumerate(("compute", "pipeline link", "data-parallel link")):
                names.append({"ph": "M", "name": "thread_name", "pid": s, "tid": tid,
                              "args": {"name": stream}})  # fmt: skip
        return {"traceEvents": names + self.events, "displayTimeUnit": "ms",
                "otherData": meta or {}}  # fmt: skip

    def write_trace(self, path: str | Path, meta: dict | None = None) -> None:
        files.write_text(path, files.dumps(self.chrome_trace(meta)), "--trace")


def schedule(
    p: int, v: int, m: int, stage: int, combined: bool = False
) -> list[tuple[str, int, int]]:
    """The (F|B, micro-batch, chunk) order of ``stage`` for 1F1B (v = 1) or interleaved;
    ``combined``: Megatron-Core's combined 1F1B (the EP all-to-all overlap), which warms up
    with one more forward so that each steady forward pairs with the backward of another
    micro-batch (schedules.py: 'if overlap_moe_expert_parallel_comm: num_warmup_microbatches
    += 1'; without a pipeline, forward i + 1 beside backward i)."""
    total = m * v

    def task(k: int, forward: bool) -> tuple[str, int, int]:
        in_group = k % (p * v)
        chunk = in_group // p
        if not forward:
            chunk = v - 1 - chunk
        mb = (k // (p * v)) * p + k % p
        return ("F" if forward else "B", mb, chunk)

    warm = min(p - stage - 1, m) if v == 1 else min((p - stage - 1) * 2 + (v - 1) * p, total)
    if combined:
        warm = min(warm + 1, total)
    order = [task(k, True) for k in range(warm)]
    for i in range(total - warm):
        order += [task(warm + i, True), task(i, False)]
    order += [task(k, False) for k in range(total - warm, total)]
    return order


def unpaired(order: list[tuple[str, int, int]]) -> set[int]:
    """The positions in a stage's combined-1F1B ``order`` (``schedule(..., combined=True)``)
    of the passes that run alone (Megatron-Core's combined 1F1B,
    megatron/core/pipeline_parallel/combined_1f1b.py): the warm-up forwards before the first
    steady (forward, backward) pair and as many cool-down backwards after the last; every pass
    where the warm-up takes all the forwards."""
    first_b = next((i for i, task in enumerate(order) if task[0] == "B"), None)
    if first_b is None:
        raise ValueError("unpaired: the order has no backward (a training schedule has one)")
    if not any(task[0] == "F" for task in order[first_b:]):
        return set(range(len(order)))
    warm = first_b - 1  # the forward just before the first backward is its pair
    return set(range(warm)) | set(range(len(order) - warm, len(order)))


#: gradient buckets per chunk at most: one per layer up to this many (every preset's stage
#: has fewer layers), then layers share buckets, so the step's events stay bounded however
#: deep the model (the exposed tail, one bucket's reduce, is then total / MAX_BUCKETS)
MAX_BUCKETS = 128


def beside(busy: float, comm: float, slowdown: float) -> tuple[float, float]:
    """(comm exposed, compute added) when ``comm`` seconds of a collective start beside
    ``busy`` seconds of compute that runs ``slowdown`` longer while the collective runs
    (``sim.cost.roofline.beside_slowdown``): the compute advances at 1 / (1 + slowdown) under
    the collective, so the pair takes max(comm, busy + comm x slowdown / (1 + slowdown)) - never
    longer than one after the other. Where the collective outlasts the slowed compute, what is
    left of it is exposed and the compute's slowdown hides under it."""
    if comm <= 0.0:
        return 0.0, 0.0
    if comm >= busy * (1.0 + slowdown):
        return comm - busy, 0.0
    return 0.0, comm * slowdown / (1.0 + slowdown)


def _buckets(layers: int) -> int:
    return max(1, min(int(layers), MAX_BUCKETS))


def run_pipeline(
    stages: list[StageWork],
    micro_batches: int,
    p2p_s: float = 0.0,
    *,
    overlap: bool = True,
    trace: bool = False,
) -> Timeline:
    """Simulate one step; returns the step time, per-stage times and (optionally) trace events."""
    import simpy  # lazily: the CLI starts without it

    p = len(stages)
    v = len(stages[0].forward)
    m = micro_batches
    env = simpy.Environment()
    done: dict[tuple[str, int, int, int], simpy.Event] = {}
    arrived: dict[tuple[str, int, int, int], simpy.Event] = {}
    links = {(s, d): simpy.Resource(env, capacity=1) for s in range(p) for d in ("F", "B")}
    times = [StageTimes() for _ in range(p)]
    events: list[dict] = []

    def ev(key: tuple[str, int, int, int], table: dict) -> simpy.Event:
        if key not in table:
            table[key] = env.event()
        return table[key]

    def upstream(kind: str, mb: int, c: int, s: int) -> tuple[str, int, int, int] | None:
        """The task whose output this one consumes, on another stage."""
        if kind == "F":
            if s > 0:
                return ("F", mb, c, s - 1)
            return ("F", mb, c - 1, p - 1) if c > 0 else None
        if s < p - 1:
            return ("B", mb, c, s + 1)
        return ("B", mb, c + 1, 0) if c < v - 1 else None

    def record(s: int, tid: int, name: str, start: float, dur: float, cat: str, args=None):
        if trace and dur > 0:
            events.append({"ph": "X", "name": name, "cat": cat, "pid": s, "tid": tid,
                           "ts": start * 1e6, "dur": dur * 1e6, "args": args or {}})  # fmt: skip

    def send(s: int, key: tuple[str, int, int, int]):
        kind, mb, c, _ = key
        with links[(s, kind)].request() as req:
            yield req
            start = env.now
            yield env.timeout(p2p_s)
            record(s, 1, f"send {kind}{mb}.{c}", start, p2p_s, "pipeline")
        ev(key, arrived).succeed()

    def grad_sync(s: int, c: int, b_start: float, b_dur: float, comm: simpy.Resource):
        work = stages[s]
        total = work.grad_sync[c] if work.grad_sync else 0.0
        n = _buckets(work.layers[c] if work.layers else 1)
        for j in range(n):
            ready = b_start + b_dur * (j + 1) / n  # bucket j's layers are done
            if overlap and env.now < ready:
                yield env.timeout(ready - env.now)
            with comm.request() as req:
                yield req
                start = env.now
                yield env.timeout(total / n)
                record(s, 2, f"grad reduce chunk {c} bucket {j}", start, total / n, "data-parallel")

    def stage_proc(s: int):
        work = stages[s]
        comm = simpy.Resource(env, capacity=1)
        syncs = []
        order = schedule(p, v, m, s, combined=bool(work.forward_alone))
        last_b = {c: max(mb for kind, mb, cc in order if kind == "B" and cc == c) for c in range(v)}
        alone = unpaired(order) if work.forward_alone else set()
        assert bool(work.forward_alone) == bool(stages[0].forward_alone), (
            "every stage runs the combined 1F1B or none does"
        )
        for i, (kind, mb, c) in enumerate(order):
            up = upstream(kind, mb, c, s)
            if up is not None:
                yield ev(up, arrived)
            if i in alone:
                dur = work.forward_alone[c] if kind == "F" else work.backward_alone[c]
                times[s].unpaired[kind, c] = times[s].unpaired.get((kind, c), 0) + 1
            else:
                dur = work.forward[c] if kind == "F" else work.backward[c]
            if overlap and kind == "B" and mb == last_b[c] and work.grad_sync:
                # the gradient buckets reduce beside this backward (all but the last bucket,
                # which waits for its end), slowing the backward (its cores, memory and power)
                n = _buckets(work.layers[c] if work.layers else 1)
                slow = work.grad_sync_slowdown[c] if work.grad_sync_slowdown else 0.0
                # the reduction's own exposure is the comm resource's (grad_sync below)
                _, added = beside(dur, work.grad_sync[c] * (n - 1) / n, slow)
                dur += added
                times[s].contention_s += added
            start = env.now
            last = kind == "B" and mb == last_b[c]
            if overlap and last:
                # reduce this chunk's buckets as its last backward produces them
                syncs.append(env.process(grad_sync(s, c, start, dur, comm)))
            yield env.timeout(dur)
            times[s].busy_s += dur
            if trace:
                record(s, 0, f"{kind}{mb}.{c}", start, dur, "forward" if kind == "F" else "backward",
                       {"micro_batch": mb, "chunk": c})  # fmt: skip
                if i in alone:
                    parts = work.forward_alone_parts if kind == "F" else work.backward_alone_parts
                else:
                    parts = work.forward_parts if kind == "F" else work.backward_parts
                t = start
                for name, d, cat in parts[c] if parts else ():
                    record(s, 0, name, t, d, cat)
                    t += d
            key = (kind, mb, c, s)
            ev(key, done).succeed()
            consumer_needs = (kind == "F" and (s < p - 1 or c < v - 1)) or (
                kind == "B" and (s > 0 or c > 0)
            )
            if consumer_needs:
                proc = env.process(send(s, key))
                if not overlap:
                    yield proc
            if last and not overlap:
                syncs.append((c, start, dur))
        times[s].backward_end_s = env.now
        for sync in syncs:
            yield sync if overlap else env.process(grad_sync(s, *sync, comm))
        times[s].sync_end_s = env.now
        start = env.now
        yield env.timeout(work.optimizer)
        record(s, 0, "optimizer step", start, work.optimizer, "optimizer")
        times[s].optimizer_s = work.optimizer
        # ZeRO 1/2 parameter all-gather: behind the next step's first forward when overlapped
        if overlap:  # the forward it hides behind runs on what the gather leaves it
            exposed, slowed = beside(work.forward[0], work.param_gather, work.param_gather_slowdown)
        else:
            exposed, slowed = work.param_gather, 0.0
        times[s].contention_s += slowed
        if overlap:  # drawn beside this step's first forward, where the previous one's ran
            record(
                s, 2, "param all-gather (previous step)", 0.0, work.param_gather, "data-parallel"
            )
        else:
            record(s, 2, "param all-gather", env.now, work.param_gather, "data-parallel")
        record(s, 0, "forward beside the param all-gather (slowed)", env.now + exposed, slowed,
               "compute")  # fmt: skip
        yield env.timeout(exposed + slowed)
        times[s].gather_exposed_s = exposed
        times[s].end_s = env.now

    for s in range(p):
        env.process(stage_proc(s))
    env.run()
    step = max(t.end_s for t in times)
    return Timeline(step_s=step, stages=times, events=events)
