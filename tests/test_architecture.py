"""The shape of src/wasmlet (docs/architecture.md): no import cycles, layers import only
downwards, and wasmtime-py's private API stays in the modules that own it."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.env import ROOT

SRC = ROOT / "src"
PACKAGE = SRC / "wasmlet"
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if "proto" in path.relative_to(PACKAGE).parts:
            continue  # generated protobuf modules
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _runtime_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import that runs (at module level or in a function), not `if TYPE_CHECKING:`."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _imports(name: str) -> set[str]:
    """The wasmlet modules `name` imports."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in _runtime_imports(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # `from pkg import mod` imports pkg.mod; `from mod import name`, mod
            targets = [
                f"{source}.{a.name}" if f"{source}.{a.name}" in MODULES else source
                for a in node.names
            ]
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


GRAPH = {name: _imports(name) for name in MODULES}


def _cycle() -> list[str] | None:
    """One import cycle, if there is any (depth-first search)."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(GRAPH[node]):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state and (found := visit(dep)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(GRAPH):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_no_import_cycles() -> None:
    assert _cycle() is None, " -> ".join(_cycle() or [])


def test_the_graph_sees_imports() -> None:
    # The checks below mean something only if the graph finds real edges.
    assert "wasmlet.executors" in GRAPH["wasmlet.trigger.http.app"]
    assert "wasmlet.wasi" in GRAPH["wasmlet.factors.key_value"]


# Which packages a layer must not import (it sits below them).
PLATFORM = ("wasmlet.kube", "wasmlet.shim", "wasmlet.cli")  # the top: nothing imports them
FORBIDDEN = {
    "wasmlet.apphost": PLATFORM,
    "wasmlet.trigger": ("wasmlet.apphost", *PLATFORM),
    "wasmlet.running": ("wasmlet.apphost", "wasmlet.trigger.http.server", *PLATFORM),
    "wasmlet.wasi": ("wasmlet.factors", "wasmlet.executors", "wasmlet.trigger", "wasmlet.running"),
    "wasmlet.factors": ("wasmlet.executors", "wasmlet.trigger", "wasmlet.running"),
    "wasmlet.runtime": ("wasmlet.executors", "wasmlet.trigger", "wasmlet.running"),
    "wasmlet.executors": ("wasmlet.trigger", "wasmlet.running"),
    "wasmlet.engine": ("wasmlet.wasi", "wasmlet.factors", "wasmlet.executors", "wasmlet.trigger"),
    "wasmlet.manifest": ("wasmlet.engine", "wasmlet.wasi", "wasmlet.executors", "wasmlet.trigger"),
}


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layers_import_only_downwards(layer: str) -> None:
    wrong = [
        f"{name} imports {dep}"
        for name, deps in GRAPH.items()
        if name == layer or name.startswith(layer + ".")
        for dep in deps
        if any(dep == f or dep.startswith(f + ".") for f in FORBIDDEN[layer])
    ]
    assert wrong == []


def test_outside_wasi_only_its_public_names_are_imported() -> None:
    private = (
        "wasmlet.wasi._abi",
        "wasmlet.wasi._calls",
        "wasmlet.wasi._state",
        "wasmlet.wasi._iface",
    )
    wrong = [
        f"{name} imports {dep}"
        for name, deps in GRAPH.items()
        if not name.startswith("wasmlet.wasi")
        for dep in deps
        if dep in private
    ]
    assert wrong == []


def test_wasmtime_private_api_stays_where_it_belongs() -> None:
    # `Store._context()` / `Func._func`: only where components are called; the raw C API
    # (`wasmtime._ffi`): only the engine, the Wagi hot path and the component ABI.
    abi = {"wasmlet.wasi._abi", "wasmlet.wasi._calls"}
    ffi_owners = {"wasmlet.engine", "wasmlet.executors._wasi_command", *abi}
    wrong = []
    for name, path in MODULES.items():
        text = path.read_text()
        if name != "wasmlet.wasi._calls" and ("._context()" in text or "._func" in text):
            wrong.append(f"{name} uses Store._context()/Func._func")
        if name not in ffi_owners and "_ffi" in text:
            wrong.append(f"{name} uses wasmtime._ffi")
    assert wrong == []


def test_files_stay_readable() -> None:
    long = {
        name: n
        for name, path in MODULES.items()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}
