"""The package's shape, read from the source with `ast` (nothing under rvos/ is imported):

* no import circles among rvos modules (imports at the top and inside functions both count);
* imports run only downward through the layers of docs/ARCHITECTURE.md;
* every import inside a function that pulls in rvos or a heavy library says why it is lazy
  (a ``# lazy: <reason>`` comment on its line or the line above);
* no module over `MAX_LINES` lines unless `LONG_MODULES` says why;
* ``rvos --help``, ``rvos models`` and the ``--help`` of download, convert and synth start
  without torch (run for real, in a subprocess).

Set RVOS_REPO to check another checkout than the one this file lies in (or run it from the
checkout's root when this file lies outside one).
"""

from __future__ import annotations

import ast
import io
import os
import subprocess
import sys
import tokenize
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(os.environ.get("RVOS_REPO") or Path(__file__).resolve().parents[1]).resolve()
if not (ROOT / "rvos").is_dir() and "RVOS_REPO" not in os.environ:
    ROOT = Path.cwd().resolve()  # this file copied elsewhere and run from a checkout
PACKAGE = ROOT / "rvos"

# Lowest first. A module's layer is its folder's; rvos/errors.py and rvos/paths.py are below
# everything, rvos/__init__.py and rvos/__main__.py above everything. Folders on one line are
# peers: one may import the other (viz draws with media's palette), never both ways (that is a
# circle).
LAYERS: list[tuple[str, ...]] = [
    ("rvos.errors", "rvos.paths"),
    ("modeling",),
    ("media", "viz"),
    ("result",),
    ("predictor",),
    ("zoo", "data"),
    ("eval",),
    ("training",),
    ("app", "cli"),
    ("rvos", "rvos.__main__"),
]
LAYER_OF = {name: i for i, names in enumerate(LAYERS) for name in names}

# Libraries whose import costs start-up time (seconds for torch): an import of one of these,
# or of any rvos module, inside a function must say why it is lazy.
HEAVY = {"torch", "transformers", "gradio", "cv2", "scipy"}
LAZY_MARK = "lazy:"

MAX_LINES = 600
# {"rvos/x/y.py": "why one concern needs more than MAX_LINES lines"}
LONG_MODULES: dict[str, str] = {
    "rvos/zoo/download.py": "one concern: a resumable, locked, mirrored download of one file, "
    "with the pages Google Drive answers instead of the file",
}

# Commands that must start without these (`rvos models` runs for real, offline).
TORCH_FREE_COMMANDS = [
    ["--help"],
    ["models"],
    ["download", "--help"],
    ["convert", "--help"],
    ["synth", "--help"],
]
NOT_AT_START = ("torch", "transformers", "gradio")


@dataclass(frozen=True)
class Import:
    module: str  # the importing rvos module
    path: Path
    line: int
    end_line: int
    target: str  # an rvos module, or the top-level name of another package
    in_function: bool

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT).as_posix()}:{self.line}"

    @property
    def is_rvos(self) -> bool:
        return self.target == "rvos" or self.target.startswith("rvos.")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    found = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
    assert found, f"no modules under {PACKAGE} (set RVOS_REPO to the repository root)"
    return found


def _resolve(name: str, known: dict[str, Path]) -> str:
    """The rvos module that importing ``name`` loads: itself, else its longest known prefix."""
    while name not in known and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


class _Collector(ast.NodeVisitor):
    def __init__(self, module: str, path: Path, known: dict[str, Path]) -> None:
        self.module, self.path, self.known = module, path, known
        self.depth = 0
        self.found: list[Import] = []

    def _add(self, node: ast.stmt, target: str) -> None:
        self.found.append(
            Import(
                self.module,
                self.path,
                node.lineno,
                node.end_lineno or node.lineno,
                target,
                self.depth > 0,
            )
        )

    def _function(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            top = alias.name.split(".")[0]
            self._add(node, _resolve(alias.name, self.known) if top == "rvos" else top)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:  # relative: from the importing module's package
            package = (
                self.module if self.path.name == "__init__.py" else self.module.rsplit(".", 1)[0]
            )
            for _ in range(node.level - 1):
                package = package.rsplit(".", 1)[0]
            base = f"{package}.{base}" if base else package
        if base.split(".")[0] != "rvos":
            self._add(node, base.split(".")[0])
            return
        for alias in node.names:
            if base == "rvos" and alias.name == "__version__":
                continue  # a constant of the package, which every `import rvos.x` loads first
            sub = f"{base}.{alias.name}"
            self._add(node, sub if sub in self.known else _resolve(base, self.known))


@cache
def imports() -> tuple[Import, ...]:
    known = modules()
    found: list[Import] = []
    for name, path in known.items():
        collector = _Collector(name, path, known)
        collector.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        found.extend(collector.found)
    return tuple(found)


def rvos_edges() -> dict[tuple[str, str], Import]:
    """(importer, imported) -> the first import that makes that edge."""
    edges: dict[tuple[str, str], Import] = {}
    for imp in imports():
        if imp.is_rvos and imp.target != imp.module:
            edges.setdefault((imp.module, imp.target), imp)
    return edges


def layer(module: str) -> int | None:
    if module in LAYER_OF:
        return LAYER_OF[module]
    name = folder(module)
    return LAYER_OF.get(name) if name != module or module in _packages() else None


@cache
def _packages() -> frozenset[str]:
    return frozenset(m for m, p in modules().items() if p.name == "__init__.py")


def folder(module: str) -> str:
    """The role folder of a module (``modeling``), or the module itself at the package top."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and module in _packages()) else module


def find_cycles(edges: dict[tuple[str, str], Import]) -> list[list[str]]:
    """One circle per strongly connected component of the import graph (Tarjan)."""
    graph: dict[str, list[str]] = {}
    for a, b in edges:
        graph.setdefault(a, []).append(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    cycles = []
    for component in components:  # a shortest circle through the component's first module
        members, start = set(component), min(component)
        paths, seen, todo = {start: [start]}, {start}, [start]
        circle = None
        while todo and circle is None:
            nxt = []
            for v in todo:
                for w in sorted(graph.get(v, ())):
                    if w == start:
                        circle = paths[v] + [start]
                        break
                    if w in members and w not in seen:
                        seen.add(w)
                        paths[w] = paths[v] + [w]
                        nxt.append(w)
                if circle:
                    break
            todo = nxt
        cycles.append(circle)
    return sorted(cycles)


def describe_cycle(circle: list[str], edges: dict[tuple[str, str], Import]) -> str:
    steps = [
        f"{a} ({edges[a, b].where}{', in a function' if edges[a, b].in_function else ''})"
        for a, b in zip(circle, circle[1:], strict=False)
    ]
    return " -> ".join([*steps, circle[-1]])


def upward_imports() -> list[str]:
    found = []
    for (a, b), imp in sorted(rvos_edges().items()):
        la, lb = layer(a), layer(b)
        if la is None or lb is None or folder(a) == folder(b):
            continue
        if lb > la:
            found.append(f"{imp.where}: {a} (layer {la}) imports {b} (layer {lb}), a higher layer")
    return found


@cache
def _comments(path: Path) -> dict[int, str]:
    source = path.read_text(encoding="utf-8")
    return {
        tok.start[0]: tok.string
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT
    }


def unexplained_lazy_imports() -> list[Import]:
    """Imports inside functions of rvos or a `HEAVY` library with no ``# lazy:`` comment on
    their lines or the line above; consecutive imports under one such comment share it."""
    lazy = [i for i in imports() if i.in_function and (i.is_rvos or i.target in HEAVY)]
    ok_ends: dict[Path, set[int]] = {}  # last lines of explained function-level imports
    by_place = sorted(
        {(i.path, i.line, i.end_line): i for i in lazy}.values(),
        key=lambda i: (str(i.path), i.line),
    )
    missing = []
    for imp in by_place:
        comments = _comments(imp.path)
        lines = range(imp.line - 1, imp.end_line + 1)
        explained = any(LAZY_MARK in comments.get(n, "") for n in lines) or (
            imp.line - 1
        ) in ok_ends.get(imp.path, set())
        if explained:
            ok_ends.setdefault(imp.path, set()).add(imp.end_line)
        else:
            missing.append(imp)
    return missing


def _listing(items: list[str], limit: int = 200) -> str:
    more = f"\n  ... and {len(items) - limit} more" if len(items) > limit else ""
    return "\n  " + "\n  ".join(items[:limit]) + more


def test_every_module_has_a_layer():
    lost = [
        f"{p.relative_to(ROOT).as_posix()}:1: {m} is in no layer (add its folder to LAYERS)"
        for m, p in modules().items()
        if layer(m) is None
    ]
    assert not lost, "modules outside the layers:" + _listing(lost)


def test_no_import_cycles():
    edges = rvos_edges()
    cycles = find_cycles(edges)
    assert not cycles, f"{len(cycles)} import circle(s) among rvos modules:" + _listing(
        [describe_cycle(c, edges) for c in cycles]
    )


def test_imports_only_run_downward():
    found = upward_imports()
    assert not found, (
        f"{len(found)} import(s) against the layers "
        f"{' < '.join(', '.join(n) for n in LAYERS)}:" + _listing(found)
    )


def test_lazy_imports_say_why():
    missing = [
        f"{i.where}: {i.module} imports {i.target} inside a function"
        for i in unexplained_lazy_imports()
    ]
    assert not missing, (
        f"{len(missing)} import(s) inside functions without a '# {LAZY_MARK} <reason>' comment "
        "(import at the top unless start-up time needs it):" + _listing(missing)
    )


def test_no_module_is_too_long():
    long = []
    for name, path in modules().items():
        rel = path.relative_to(ROOT).as_posix()
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > MAX_LINES and rel not in LONG_MODULES:
            long.append(
                f"{rel}:1: {n} lines > {MAX_LINES} ({name}; split it or say why in LONG_MODULES)"
            )
    stale = [
        f"{rel}: listed in LONG_MODULES but missing or short now"
        for rel in LONG_MODULES
        if not (ROOT / rel).is_file()
        or len((ROOT / rel).read_text(encoding="utf-8").splitlines()) <= MAX_LINES
    ]
    assert not long + stale, "module length:" + _listing(long + stale)


_START_PROBE = """
import contextlib, io, runpy, sys
for argv in {commands!r}:
    sys.argv = ["rvos", *argv]
    out = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            runpy.run_module("rvos", run_name="__main__", alter_sys=True)
        except SystemExit as stop:
            code = stop.code
    heavy = [m for m in {heavy!r} if m in sys.modules]
    print("RESULT", " ".join(argv), "|", code, "|", ",".join(heavy))
    if code not in (0, None):
        print(out.getvalue()[-2000:])
"""


def test_light_commands_do_not_import_torch(tmp_path):
    """`rvos --help`, `rvos models`, `rvos download --help` (and convert's and synth's help)
    start in a fraction of a second: nothing on their way imports torch, transformers or
    gradio. Each command runs as `python -m rvos` runs it, one after the other in one process,
    and the libraries loaded are read from sys.modules after each."""
    code = _START_PROBE.format(commands=TORCH_FREE_COMMANDS, heavy=NOT_AT_START)
    env = dict(
        os.environ,
        RVOS_CACHE=str(tmp_path / "cache"),
        RVOS_OFFLINE="1",
        HF_HUB_OFFLINE="1",
        PYTHONPATH=str(ROOT),
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr[-3000:]
    results = [
        line.split(" ", 1)[1].split(" | ")
        for line in run.stdout.splitlines()
        if line.startswith("RESULT ")
    ]
    assert len(results) == len(TORCH_FREE_COMMANDS), run.stdout[-3000:] + run.stderr[-3000:]
    failed = [
        f"rvos {cmd}: exit status {status}"
        for cmd, status, _ in results
        if status not in ("0", "None")
    ]
    assert not failed, "commands failed:" + _listing(failed) + "\n" + run.stdout[-3000:]
    heavy = [f"rvos {cmd}: imports {libs}" for cmd, _, libs in results if libs]
    assert not heavy, (
        "start-up rule (rvos/__main__.py:1): light commands must not import "
        + "/".join(NOT_AT_START)
        + ";"
        + _listing(heavy)
        + "\n(python -X importtime -m rvos ... shows who imports them)"
    )
