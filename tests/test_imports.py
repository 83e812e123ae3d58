"""The model-zoo modules import in one direction: the registry describes, download fetches,
checkpoint reads, the loader (``load_model``) puts them together, convert builds on the loader.
The public entry points stay where the README uses them.

Read from the source (every ``import`` of an ``rvos`` module, at the top or inside a function),
so a lazy import inside a function cannot hide a circle. tests/test_layers.py checks the whole
package's layering; these are the zoo's own rules inside its layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """{module: the rvos modules it imports}, the package itself (``rvos``) left out."""
    files = {_module_name(p): p for p in (ROOT / "rvos").rglob("*.py")}
    graph = {}
    for name, path in files.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("rvos."))
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rvos"):
                for a in node.names:  # `from rvos.zoo import loader` imports rvos.zoo.loader
                    sub = f"{node.module}.{a.name}"
                    found.add(sub if sub in files else node.module)
        graph[name] = {m for m in found if m in files and m not in ("rvos", name)}
    return graph


def _reaches(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_the_zoo_imports_in_one_direction():
    graph = import_graph()
    # the registry describes: nothing else from rvos but the error base
    assert graph["rvos.zoo.registry"] <= {"rvos.errors"}
    assert graph["rvos.zoo.download"] <= {"rvos.zoo.registry", "rvos.errors", "rvos.paths"}
    # reading a checkpoint never goes back up to the loader; the hub never loads models
    assert "rvos.zoo.loader" not in _reaches(graph, "rvos.zoo.checkpoint")
    assert "rvos.zoo.loader" not in _reaches(graph, "rvos.zoo.hub")
    loader_parts = {"rvos.zoo.registry", "rvos.zoo.download", "rvos.zoo.checkpoint", "rvos.zoo.hub"}
    assert loader_parts <= graph["rvos.zoo.loader"]


def test_public_entry_points_stay():
    import rvos
    from rvos import load_model
    from rvos.predictor import Predictor
    from rvos.zoo.loader import load_model as the_loader

    assert load_model is rvos.load_model is the_loader
    assert Predictor.__module__ == "rvos.predictor.predictor"
