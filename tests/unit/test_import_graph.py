"""No import cycle in ``python/hetero``: modules are parsed (not imported), and every
``import``/``from ... import`` counts, at module level or inside a function.

Importing ``a.b.c`` also runs the ``__init__`` of the packages ``a.b`` and ``a``, so
those count as imported too — except the packages that contain the importing module
(its own package's ``__init__`` is already being imported when it runs) and ``hetero``
itself, which every module implies.
"""

from __future__ import annotations

import ast
from pathlib import Path

import hetero

ROOT = Path(hetero.__file__).parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The hetero modules ``name`` imports, anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names
                           if f"{base}.{alias.name}" in modules)
    implied = set()
    for target in targets:
        parts = target.split(".")
        implied.update(".".join(parts[:i]) for i in range(2, len(parts) + 1))
    own = {".".join(name.split(".")[:i]) for i in range(1, len(name.split(".")) + 1)}
    return {t for t in implied if t in modules and t not in own} - {name}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph``, as the path that closes it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert sum(map(len, graph.values())) > 100  # the parse found the imports
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_every_triton_kernel_uses_the_one_launcher():
    modules = _modules()
    triton = "hetero.kernels.triton"
    graph = {name.removeprefix(triton + "."): {t.removeprefix(triton + ".") for t in
                                               _imports(name, path, modules)}
             for name, path in modules.items() if name.startswith(triton + ".")}
    for kernel_module in ("gemm", "attention", "attention_backward"):
        assert "launch" in graph[kernel_module]
    assert {"common", "attention_configs"} <= graph["attention"] & graph["attention_backward"]
    assert "attention" not in graph["attention_backward"]


def test_a_cycle_is_found():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
