"""The folders are the layers of the flow: each imports only the layers below it (tinygrad-style).

workloads, hardware -> sim.cost -> sim.engine -> sim.studies -> sim.plots -> sim.cli
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: rank of each layer; a module may import its own layer and lower ranks only
RANK = {
    "hardware": 0,
    "workloads": 0,
    "sim.cost": 1,
    "sim.engine": 2,
    "sim.studies": 3,
    "sim.plots": 4,
    "sim.cli": 5,
}


def _layer(module: str) -> str | None:
    for name in sorted(RANK, key=len, reverse=True):
        if module == name or module.startswith(name + "."):
            return name
    return None


def _imports(path: Path) -> list[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
            out += [f"{node.module}.{a.name}" for a in node.names]
    return out


def _modules() -> list[tuple[str, Path]]:
    files = [
        *ROOT.glob("sim/**/*.py"),
        *ROOT.glob("hardware/**/*.py"),
        *ROOT.glob("workloads/**/*.py"),
    ]
    return [(".".join(p.relative_to(ROOT).with_suffix("").parts), p) for p in files]


def test_every_sim_module_sits_in_a_layer_subpackage():
    loose = [
        m
        for m, _ in _modules()
        if m.startswith("sim.") and m != "sim.__init__" and _layer(m) is None
    ]
    assert loose == [], f"modules outside sim's layer packages: {loose}"


def test_no_module_imports_a_layer_above_its_own():
    upward = []
    for module, path in _modules():
        own = _layer(module)
        if own is None:
            continue
        for target in _imports(path):
            layer = _layer(target)
            if layer is not None and RANK[layer] > RANK[own]:
                upward.append(f"{module} imports {target}")
    assert upward == []


def test_each_layer_says_what_it_holds_and_may_import():
    for name in RANK:
        if not name.startswith("sim."):
            continue
        init = ROOT / name.replace(".", "/") / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and "import" in doc.lower(), f"{init} needs a docstring naming its imports"
