"""Cost one collective on a system's links with the alpha-beta model, ring vs tree, hierarchical.

For a buffer of S bytes over p chips with per-direction link bandwidth b and per-step latency a
(Thakur, Rabenseifner & Gropp 2005, "Optimization of collective communication operations in
MPICH", Table 1; NCCL's ring and double-binary-tree algorithms, Jeaugey 2019):

    ring all-reduce        2(p-1)/p · S/b + 2(p-1)·a
    tree all-reduce        2 · S/b + 2·ceil(log2 p)·a       (pipelined double binary tree)
    reduce-scatter,
    all-gather (ring)      (p-1)/p · S/b + (p-1)·a
    all-to-all (pairwise)  (p-1)/p · S/b + (p-1)·a
    send/recv              S/b + a

An all-to-all on a link whose library all-to-all was measured (``Link.all_to_all_latency_s``,
``all_to_all_bus_bandwidth``: NCCL's is point-to-point sends to every peer, slow to reach the
link's rate) costs that measurement instead: latency + (p-1)/p · S / busbw (its kernel's fixed
cost inside the latency); a send/recv inside the node is the same point-to-point transfer (a
2-chip all-to-all of 2S): latency + S / busbw.

All-reduce across nodes takes the faster of ring and tree, as NCCL's tuner does; inside a node
NCCL's tree is a chain through the node's GPUs (Jeaugey 2019, "Massively scale your deep
learning training with NCCL 2.4": double binary trees between nodes, a chain within), so a
group inside one node runs the ring. A group larger than a node
is hierarchical: reduce-scatter inside the node, the collective across nodes on 1/n of the data,
all-gather inside the node. ``local`` says how many of the group's chips share a node: a
packed group (tensor parallelism) fills nodes; a strided one (data parallelism behind TP 8) has
one chip per node, so all of it crosses the network, each chip on its own NIC.

An all-reduce inside one node may instead run on the runtime's own kernel (vLLM's custom
all-reduce, TensorRT-LLM's, PyTorch's IntraNodeComm: one-shot or two-shot reads of the peers'
buffers over NVLink, one launch, no ring): ``latency + 2(p-1)/p · S / busbw`` with the latency and
bus bandwidth measured for that kernel (``custom_all_reduce_s``), taken where it beats NCCL, as
the runtimes' size thresholds intend.

Link parameters may be numpy arrays (one entry per design point): every expression broadcasts,
so one chip and a sweep of link designs run the same lines. A link without NCCL's bulk protocol
carries NaN as its ``simple_latency_s`` here; ``np.fmin`` then ignores that path.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from hardware.chip import Link, System, members_per_node

Value = float | np.ndarray


class LinkParams(NamedTuple):
    """A link's parameters, each a float or an array over design points (``hardware.Link``)."""

    bandwidth_bytes_per_s: Value
    latency_s: Value
    achievable_fraction: Value
    simple_latency_s: Value  # NaN: no separate bulk protocol
    a2a_latency_s: Value = math.nan  # a measured all-to-all (NaN: the alpha-beta model)
    a2a_bus_bandwidth: Value = math.nan
    p2p_channel_bw: Value = math.nan  # one NCCL channel's point-to-point rate (NaN: uncapped)
    nvls_bw: Value = math.nan  # an in-switch all-reduce's rate over (1 + 1/p) S (NaN: none)
    nvls_latency: Value = math.nan
    nvls_chunk: Value = 0.0  # time per chunk step of each concurrent NVLS operation

    @classmethod
    def of(cls, link: Link) -> LinkParams:
        def nan(x: float | None) -> float:
            return math.nan if x is None else x

        return cls(link.bandwidth_bytes_per_s, link.latency_s, link.achievable_fraction,
                   nan(link.simple_latency_s), nan(link.all_to_all_latency_s),
                   nan(link.all_to_all_bus_bandwidth), nan(link.p2p_channel_bandwidth),
                   nan(link.nvls_bandwidth_bytes_per_s), nan(link.nvls_latency_s),
                   link.nvls_chunk_latency_s)  # fmt: skip

    def alpha_beta(self) -> LinkParams:
        """The link without its measured all-to-all and NCCL's point-to-point channels (a
        library's own exchange kernels)."""
        return self._replace(a2a_latency_s=math.nan, a2a_bus_bandwidth=math.nan,
                             p2p_channel_bw=math.nan)  # fmt: skip


def measured_all_to_all(link: LinkParams) -> Value:
    """Where ``link`` carries a measured all-to-all (bool, or an array over points)."""
    lat = link.a2a_latency_s
    return not math.isnan(lat) if isinstance(lat, float) else ~np.isnan(lat)


#: NCCL's point-to-point channels on an NVLink/NVSwitch node (the rule of NCCL 2.19 and
#: later; before it an 8-rank communicator stopped at 16 channels a peer): ``p2pnChannels`` (32, as NCCL
#: logs it on 8 x H100: "32 p2p channels, 32 p2p channels per peer"), the smallest part a
#: channel takes (``stepSize / 8`` with the NVLink chunk ``NCCL_P2P_NVL_CHUNKSIZE`` = 512 KiB)
#: and the largest before the channels double (``stepSize * 32``) (NVIDIA/nccl src/enqueue.cc,
#: src/init.cc, src/graph/paths.cc; benchmarks/research/nccl-p2p-sendrecv-2026-12-06.md sec. 2)
_P2P_CHANNELS = 32
_P2P_MIN_PART = 64 * 1024
_P2P_MAX_PART = 16 * 1024 * 1024


def p2p_channels(message: Value, comm: int) -> Value:
    """The channels NCCL runs one send to one peer on, in a communicator of ``comm`` ranks
    inside a node (enqueue.cc): it starts from the channels per peer (32) halved while they
    times the ranks exceed the 32 p2p channels (16 for 2 ranks, 8 for 4, 4 for 8: every rank
    may send to every other at once), takes no more than one per 64 KiB of the message, and
    doubles them while a channel's part is over 16 MiB, up to 32."""
    start = _P2P_CHANNELS
    while start * max(comm, 2) > _P2P_CHANNELS and start > 1:
        start //= 2
    m = np.maximum(np.asarray(message, dtype=float), 1.0)
    n = np.minimum(start, np.ceil(m / _P2P_MIN_PART))
    over = np.ceil(np.log2(np.maximum(m / (n * _P2P_MAX_PART), 1.0)))
    n = np.minimum(n * 2.0**over, np.maximum(n, _P2P_CHANNELS))
    return float(n) if np.ndim(n) == 0 else n


def _p2p_capped(link: LinkParams, size: Value, comm: int, messages: int) -> LinkParams:
    """``link`` for a send/recv of ``size`` bytes in ``messages`` equal messages in a
    communicator of ``comm`` ranks: its bandwidths no more than the message's channels carry
    (``p2p_channels`` x the measured per-channel rate; a link without one is unchanged)."""
    per = link.p2p_channel_bw
    if isinstance(per, float) and math.isnan(per):
        return link
    rate = p2p_channels(np.asarray(size, dtype=float) / messages, comm) * per
    if np.ndim(rate) == 0 and np.ndim(per) == 0:
        rate = float(rate)
    achievable = link.bandwidth_bytes_per_s * link.achievable_fraction
    cap = np.where(np.isnan(rate), achievable, np.minimum(achievable, rate))
    busbw = np.where(np.isnan(rate), link.a2a_bus_bandwidth,
                     np.minimum(link.a2a_bus_bandwidth, rate))  # fmt: skip
    if np.ndim(cap) == 0:
        cap, busbw = float(cap), float(busbw)
    # the capped rate as the link's whole rate (its achievable fraction folded in)
    return link._replace(
        bandwidth_bytes_per_s=cap, achievable_fraction=1.0, a2a_bus_bandwidth=busbw
    )


def _all_to_all(size: Value, p: int, link: LinkParams, kind: str = "all_to_all") -> Value:
    """An all-to-all over ``p`` chips of one link: the measured library's time per call plus
    (p-1)/p of the buffer at its measured bus bandwidth, where the link has one; else the
    pairwise alpha-beta model. ``kind`` send_recv: each chip sends ``size`` to a peer and
    receives as much (a ring's hop, a pipeline's hand-off): NCCL's same point-to-point
    transfers, a 2-chip all-to-all of twice the buffer, so the latency plus size / busbw."""
    model = _flat(kind, size, p, link)
    lat, busbw = link.a2a_latency_s, link.a2a_bus_bandwidth
    if p <= 1 or (isinstance(lat, float) and math.isnan(lat)):
        return model
    share = 1.0 if kind == "send_recv" else (p - 1) / p
    # never faster than the link carries (a what-if link slower than the measured one)
    busbw = np.minimum(busbw, link.bandwidth_bytes_per_s * link.achievable_fraction)
    measured = lat + share * size / busbw
    if isinstance(lat, float) and isinstance(size, float):
        return measured if size > 0 else 0.0
    return np.where(np.isnan(lat), model, np.where(np.asarray(size) > 0, measured, 0.0))


#: the smallest group NCCL reduces in the switch (NVLS): its init refuses NVLS on two GPUs
#: through 2.2x (``gpuCount <= 2``), and 2.29's tuner rates it below the ring there
_NVLS_MIN_GROUP = 3


#: NCCL's NVLS channels on an NVSwitch node ('16 nvls channels' in NCCL's init log on 8 H100,
#: benchmarks/research/nccl-allreduce-2-4-gpu-h100-2026-12-07.md), each with one head a rank
_NVLS_CHANNELS = 16


def _nvls_chunk(size: Value, p: int) -> Value:
    """The chunk NCCL's NVLS all-reduce moves per step (src/enqueue.cc, NCCL_ALGO_NVLS: at most
    128 KiB, 64 KiB below 64 x concurrentOps x 128 KiB, 32 KiB below 8 x ops x 64 KiB, 16 KiB
    below 2 x ops x 32 KiB; concurrentOps = NVLS channels x heads, one head a rank)."""
    ops = _NVLS_CHANNELS * p
    if isinstance(size, float | int):  # one size: the rule in plain floats (the single point)
        return (16384.0 if size < 2 * ops * 32768 else 32768.0 if size < 8 * ops * 65536
                else 65536.0 if size < 64 * ops * 131072 else 131072.0)  # fmt: skip
    s = np.asarray(size, dtype=float)
    chunk = np.where(s < 64 * ops * 131072, 65536.0, 131072.0)
    chunk = np.where(s < 8 * ops * 65536, 32768.0, chunk)
    chunk = np.where(s < 2 * ops * 32768, 16384.0, chunk)
    return float(chunk) if chunk.ndim == 0 else chunk


def _nvls(size: Value, p: int, link: LinkParams) -> Value:
    """An all-reduce reduced in the switch (NCCL's NVLS): each chip's buffer into the switch
    and its 1/p share of the sum back to every chip, (1 + 1/p) S over each direction of a
    chip's links, plus the call's time and the link's time per chunk step of each of NCCL's
    concurrent operations (more steps of smaller chunks for a smaller buffer); infinite where
    the link has none (NaN: fmin skips it)."""
    per_step = _NVLS_CHANNELS * p * _nvls_chunk(size, p)
    steps = (math.ceil(size / per_step) if isinstance(size, float | int)
             else np.ceil(np.asarray(size, dtype=float) / per_step))  # fmt: skip
    return (1 + 1 / p) * size / link.nvls_bw + link.nvls_latency + link.nvls_chunk * steps


def _flat(kind: str, size: Value, p: int, link: LinkParams, tree: bool = True) -> Value:
    if p <= 1:
        return 0.0
    ring = _ring(kind, size, p, link, tree)
    if kind != "all_reduce" or p < _NVLS_MIN_GROUP:
        return ring
    nvls = link.nvls_bw
    if isinstance(nvls, float) and isinstance(size, float):
        return ring if nvls != nvls or size <= 0 else min(ring, _nvls(size, p, link))
    if not np.any(np.isfinite(nvls)):
        return ring
    return np.where(np.asarray(size) > 0, np.fmin(ring, _nvls(size, p, link)), ring)


def _ring(kind: str, size: Value, p: int, link: LinkParams, tree: bool) -> Value:
    b = link.bandwidth_bytes_per_s * link.achievable_fraction
    # NCCL's protocols: LL at half the bandwidth and the link's latency, Simple at the full
    # bandwidth and its own (larger) per-step latency; the tuner runs the faster (fmin: a NaN
    # Simple latency means the link has one protocol, at full bandwidth and latency_s)
    simple_latency = link.simple_latency_s
    if isinstance(simple_latency, float) and isinstance(size, float):  # one point: plain floats
        if size <= 0:
            return 0.0
        if simple_latency != simple_latency:  # NaN: one protocol
            return _alpha_beta(kind, size, p, b, link.latency_s, tree)
        return min(
            _alpha_beta(kind, size, p, b / 2, link.latency_s, tree),
            _alpha_beta(kind, size, p, b, simple_latency, tree),
        )
    one = _alpha_beta(kind, size, p, b, link.latency_s, tree)
    ll = _alpha_beta(kind, size, p, b / 2, link.latency_s, tree)
    simple = _alpha_beta(kind, size, p, b, simple_latency, tree)
    t = np.where(np.isnan(simple_latency), one, np.fmin(ll, simple))
    return np.where(size > 0, t, 0.0)


def _alpha_beta(kind: str, size: Value, p: int, b: Value, a: Value, tree: bool) -> Value:
    if kind == "all_reduce":
        ring = 2 * (p - 1) / p * size / b + 2 * (p - 1) * a
        if not tree:
            return ring
        tree_s = 2 * size / b + 2 * math.ceil(math.log2(p)) * a
        return min(ring, tree_s) if isinstance(ring, float) else np.minimum(ring, tree_s)
    if kind in ("all_gather", "reduce_scatter", "all_to_all"):
        return (p - 1) / p * size / b + (p - 1) * a
    if kind == "send_recv":
        return size / b + a
    raise ValueError(
        f"collective kind must be all_reduce, all_gather, reduce_scatter, all_to_all or send_recv, got {kind!r}"
    )


#: the largest in-node group whose all-reduce NCCL runs as a ring (an 8-GPU NVLink node)
_RING_NODE = 8


def custom_all_reduce_s(size: Value, p: int, latency_s: float, bus_bandwidth: float) -> Value:
    """An intra-node all-reduce on a runtime's own kernel: its measured per-call time (launch and
    the peers' flag handshake included) plus the bytes at its measured bus bandwidth (nccl-tests'
    busbw convention: 2(p-1)/p of the buffer crosses each chip's links)."""
    return latency_s + 2 * (p - 1) / p * size / bus_bandwidth


def collective_time(
    kind: str, size_bytes: float, group: int, system: System, local: int | None = None,
    comm: int = 0, messages: int = 1,
) -> float:  # fmt: skip
    """Seconds for one collective of ``size_bytes`` (the full per-chip buffer) over ``group`` chips.

    ``local``: members of the group inside one node (default: the group packed into nodes);
    ``comm``, ``messages``: a send_recv's communicator size and message count (``collective_s``).
    """
    intra, inter = LinkParams.of(system.intra_node), LinkParams.of(system.inter_node)
    return float(collective_s(kind, size_bytes, group, local, system.chips_per_node, intra, inter,
                              comm, messages))  # fmt: skip


def collective_s(
    kind: str,
    size_bytes: Value,
    group: int,
    local: int | None,
    chips_per_node: int,
    intra: LinkParams,
    inter: LinkParams,
    comm: int = 0,
    messages: int = 1,
) -> Value:
    """``collective_time`` over arrays: sizes and link parameters broadcast together. A
    send_recv inside a node runs on the channels NCCL gives it in its communicator of ``comm``
    ranks (0: the group), each of its ``messages`` messages alike (``p2p_channels``)."""
    per_node = members_per_node(group, local, chips_per_node)
    if group <= per_node:
        # NCCL's tree is a chain inside an 8-GPU node (the double binary tree spans nodes): ring
        # only. A larger one-hop domain (GB200 NVL72's NVLink switches, a TPU pod's ICI) reduces
        # in log depth (NCCL's NVLS and tree span the NVL72), not over a ring's 2(p - 1) steps
        if kind == "send_recv":
            # NCCL's channel rule for NVLink peers: a communicator across nodes gives its
            # peers other (network) channels, left to the link's model
            within = (comm or group) <= chips_per_node
            link = _p2p_capped(intra, size_bytes, comm or group, messages) if within else intra
            return _all_to_all(size_bytes, group, link, kind)
        if kind == "all_to_all":
            return _all_to_all(size_bytes, group, intra, kind)
        return _flat(kind, size_bytes, group, intra, tree=group > _RING_NODE)
    nodes = math.ceil(group / per_node)
    if kind == "send_recv":
        return _flat(kind, size_bytes, 2, inter)
    if kind == "all_to_all":
        # each chip sends (p-1)/p of its buffer; the share leaving the node crosses the network
        inside = _all_to_all(size_bytes * per_node / group, per_node, intra)
        net = inter.bandwidth_bytes_per_s * inter.achievable_fraction
        outside = (nodes - 1) / nodes * size_bytes / net
        return inside + outside + (nodes - 1) * inter.latency_s
    shard = size_bytes / per_node
    if kind == "all_reduce":
        return (
            _flat("reduce_scatter", size_bytes, per_node, intra)
            + _flat("all_reduce", shard, nodes, inter)
            + _flat("all_gather", size_bytes, per_node, intra)
        )
    # reduce-scatter / all-gather: the intra-node stage on the full buffer, then across nodes
    return _flat(kind, size_bytes, per_node, intra) + _flat(kind, shard, nodes, inter)
