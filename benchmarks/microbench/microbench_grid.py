"""The point grids microbench.py defines, read from its source as literals.

``MOE_SHAPES``, ``CONV_SHAPES`` and the like: microbench.py needs PyTorch, the scripts that check
its results against roofsim do not."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

MICROBENCH = Path(__file__).resolve().parent / "microbench.py"


def read_constants(*names: str) -> tuple[Any, ...]:
    """The values of microbench.py's module-level ``names``, in order."""
    found = {}
    for node in ast.parse(MICROBENCH.read_text()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            name = getattr(node.targets[0], "id", "")
            if name in names:
                found[name] = ast.literal_eval(node.value)
    missing = [n for n in names if n not in found]
    if missing:
        raise ValueError(f"{MICROBENCH} defines no {', '.join(missing)} (a module-level literal)")
    return tuple(found[n] for n in names)
