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

All-reduce across nodes takes the faster of ring and tree, as NCCL's tuner does; inside a node
NCCL's tree is a chain through the node's GPUs (Jeaugey 2019, "Massively scale your deep
learning training with NCCL 2.4": double binary trees between nodes, a chain within), so a
group inside one node runs the ring. A group larger than a node
is hierarchical: reduce-scatter inside the node, the collective across nodes on 1/n of the data,
all-gather inside the node. ``local`` says how many of the group's chips share a node: a
packed group (tensor parallelism) fills nodes; a strided one (data parallelism behind TP 8) has
one chip per node, so all of it crosses the network, each chip on its own NIC.
"""

from __future__ import annotations

import math

from hardware.chip import Link, System


def _flat(kind: str, size: float, p: int, link: Link, tree: bool = True) -> float:
    if p <= 1 or size <= 0:
        return 0.0
    b = link.bandwidth_bytes_per_s * link.achievable_fraction
    if link.simple_latency_s is None:
        return _alpha_beta(kind, size, p, b, link.latency_s, tree)
    # NCCL's protocols: LL at half the bandwidth and the link's latency, Simple at the full
    # bandwidth and its own (larger) per-step latency; the tuner runs the faster
    return min(
        _alpha_beta(kind, size, p, b / 2, link.latency_s, tree),
        _alpha_beta(kind, size, p, b, link.simple_latency_s, tree),
    )


def _alpha_beta(kind: str, size: float, p: int, b: float, a: float, tree: bool) -> float:
    if kind == "all_reduce":
        ring = 2 * (p - 1) / p * size / b + 2 * (p - 1) * a
        if not tree:
            return ring
        return min(ring, 2 * size / b + 2 * math.ceil(math.log2(p)) * a)
    if kind in ("all_gather", "reduce_scatter", "all_to_all"):
        return (p - 1) / p * size / b + (p - 1) * a
    if kind == "send_recv":
        return size / b + a
    raise ValueError(
        f"collective kind must be all_reduce, all_gather, reduce_scatter, all_to_all or send_recv, got {kind!r}"
    )


def collective_time(
    kind: str, size_bytes: float, group: int, system: System, local: int | None = None
) -> float:
    """Seconds for one collective of ``size_bytes`` (the full per-chip buffer) over ``group`` chips.

    ``local``: members of the group inside one node (default: the group packed into nodes).
    """
    per_node = min(group, system.chips_per_node)
    if local is not None:
        per_node = max(1, min(per_node, local))
    if group <= per_node:
        # NCCL's tree is a chain inside a node (the double binary tree spans nodes): ring only
        return _flat(kind, size_bytes, group, system.intra_node, tree=False)
    nodes = math.ceil(group / per_node)
    if kind == "send_recv":
        return _flat(kind, size_bytes, 2, system.inter_node)
    if kind == "all_to_all":
        # each chip sends (p-1)/p of its buffer; the share leaving the node crosses the network
        inside = _flat(kind, size_bytes * per_node / group, per_node, system.intra_node)
        net = system.inter_node.bandwidth_bytes_per_s * system.inter_node.achievable_fraction
        outside = (nodes - 1) / nodes * size_bytes / net
        return inside + outside + (nodes - 1) * system.inter_node.latency_s
    shard = size_bytes / per_node
    if kind == "all_reduce":
        return (
            _flat("reduce_scatter", size_bytes, per_node, system.intra_node)
            + _flat("all_reduce", shard, nodes, system.inter_node)
            + _flat("all_gather", size_bytes, per_node, system.intra_node)
        )
    # reduce-scatter / all-gather: the intra-node stage on the full buffer, then across nodes
    return _flat(kind, size_bytes, per_node, system.intra_node) + _flat(
        kind, shard, nodes, system.inter_node
    )
