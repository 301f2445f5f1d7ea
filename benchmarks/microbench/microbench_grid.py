"""The point grids microbench.py defines (``MOE_SHAPES``, ``CONV_SHAPES``, ...), read from its
source as literals: that script needs PyTorch, the scripts that check its results against
roofsim do not."""

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
    return tuple(found[n] for n in names)
