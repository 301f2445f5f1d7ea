"""Simulation: the cost model, event engines, studies, plots and CLI. ``from sim import simulate``.

Layers (each imports only those before it): ``cost`` -> ``engine`` -> ``studies`` -> ``plots``
-> ``cli``. The names below load on first use, so ``roofsim --help`` imports no numpy.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

_LAZY = {
    "Bound": "sim.cost.roofline",
    "OpCost": "sim.cost.roofline",
    "cost_op": "sim.cost.roofline",
    "CapacityError": "sim.cost.result",
    "MemoryReport": "sim.cost.result",
    "Result": "sim.cost.result",
    "simulate": "sim.cost.simulate",
}

__all__ = sorted([*_LAZY, "version"])


@functools.cache
def version() -> str:
    """The installed roofsim distribution's version (``unknown (not installed)`` when run from a
    bare checkout): the CLI's --version, a report's footer, a sweep's fingerprint."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("roofsim")
    except PackageNotFoundError:
        return "unknown (not installed)"


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sim' has no attribute {name!r}")
