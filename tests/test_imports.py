"""The model-zoo modules import in one direction: the registry describes, download fetches,
checkpoint reads, zoo (``load_model``) puts them together, convert builds on zoo.

Read from the source (every ``import`` of an ``rvos`` module, at the top or inside a function),
so a lazy import inside a function cannot hide a circle. A module's ``__getattr__`` (PEP 562) is
left out: there the registry keeps ``from rvos.registry import load_model`` working for older
scripts, an alias resolved only when a user asks for that name, never used by the registry itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ZOO_MODULES = {
    "rvos.registry",
    "rvos.download",
    "rvos.checkpoint",
    "rvos.hub",
    "rvos.zoo",
    "rvos.convert",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _rvos_imports(tree: ast.AST, known: set[str]) -> set[str]:
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("rvos."))
        elif (
            isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "rvos"
        ):
            for a in node.names:  # `from rvos import zoo` imports the module rvos.zoo
                sub = f"{node.module}.{a.name}"
                found.add(sub if sub in known else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    """{module: the rvos modules it imports}, the package itself (``rvos``) left out."""
    files = {_module_name(p): p for p in (ROOT / "rvos").rglob("*.py")}
    graph = {}
    for name, path in files.items():
        imports = _rvos_imports(ast.parse(path.read_text(encoding="utf-8")), set(files))
        graph[name] = {m for m in imports if m in files and m not in ("rvos", name)}
    return graph


def _reaches(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_no_model_zoo_module_imports_itself_back():
    graph = import_graph()
    circles = {m for m in ZOO_MODULES if m in _reaches(graph, m)}
    assert not circles, {m: sorted(graph[m]) for m in circles}


def test_each_layer_imports_only_the_layers_below_it():
    graph = import_graph()
    assert graph["rvos.registry"] == set()  # describes: nothing else from rvos
    assert graph["rvos.download"] == {"rvos.registry"}
    assert "rvos.download" not in _reaches(graph, "rvos.checkpoint")  # reading never fetches
    assert "rvos.zoo" not in _reaches(graph, "rvos.hub")
    assert {"rvos.registry", "rvos.download", "rvos.checkpoint", "rvos.hub"} <= graph["rvos.zoo"]


def test_old_import_paths_still_work():
    import rvos
    from rvos import zoo
    from rvos.registry import load_model, missing_file_message, resolve_local

    assert load_model is zoo.load_model is rvos.load_model
    assert resolve_local is zoo.resolve_local
    assert missing_file_message is zoo.missing_file_message
