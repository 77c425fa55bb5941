"""The runtimes a port supports, and a function's handler setting as Lambda's runtime for its
language reads it, checked against the function's code at port time (the build would fail
later and less clearly): Python `module.function` (`pkg/mod.fn`), Node.js `file.export`
(`src/handlers/users.get`: the file `src/handlers/users.{js,mjs,cjs,ts}`, its export `get`,
or a property path `users.routes.get`)."""

from __future__ import annotations

import re
from pathlib import Path

PYTHON = "python"
NODE = "node"
_PYTHON_RUNTIME = re.compile(r"python3\.\d+")
_NODE_RUNTIME = re.compile(r"nodejs(\d+)\.x")
NODE_MIN_MAJOR = 18  # the oldest Node.js runtime Lambda still runs
SUPPORTED = "python3.x and nodejs18.x or later"
# Lambda's Node.js runtime looks for the handler's file with these extensions, in this
# order; `.ts` is wasmlet's (esbuild compiles it), as SAM's and the Serverless Framework's
# esbuild builds do.
NODE_EXTENSIONS = (".js", ".mjs", ".cjs", ".ts")


def language(runtime: str) -> str | None:
    """PYTHON, NODE, or None for a runtime wasmlet does not port."""
    if _PYTHON_RUNTIME.fullmatch(runtime):
        return PYTHON
    node = _NODE_RUNTIME.fullmatch(runtime)
    if node and int(node.group(1)) >= NODE_MIN_MAJOR:
        return NODE
    return None


def unsupported_runtime(runtime: str) -> str:
    """Why `runtime` is not ported (after "'java21' is not supported: ")."""
    if _NODE_RUNTIME.fullmatch(runtime):
        return f"Lambda no longer runs it; wasmlet ports {SUPPORTED} functions"
    return f"wasmlet ports {SUPPORTED} functions"


def handler_problem(runtime: str, handler: str) -> str | None:
    """What is wrong with the shape of `handler`, or None."""
    if language(runtime) == NODE:
        module, _, attr = handler.rpartition("/")[2].partition(".")
        if not module or not attr or not all(attr.split(".")):
            return f"{handler!r} is not file.export (e.g. app.handler, src/api.get)"
        return None
    module, _, attr = handler.replace("/", ".").rpartition(".")
    parts = [*module.split("."), attr]
    if not module or not all(p.isidentifier() for p in parts):
        return f"{handler!r} is not module.function (e.g. app.lambda_handler)"
    return None


def node_handler_file(code_dir: Path, handler: str) -> Path | None:
    """The file of a Node.js handler (`src/api.get` → code_dir/src/api.js, .mjs, ...)."""
    directory, _, base = handler.rpartition("/")
    stem = base.partition(".")[0]
    for extension in NODE_EXTENSIONS:
        path = code_dir / directory / f"{stem}{extension}"
        if path.is_file():
            return path
    return None


def missing_handler(runtime: str, handler: str, code_dir: Path) -> str | None:
    """Why the handler's code is not in `code_dir` (a message), or None when it is."""
    if language(runtime) == NODE:
        if node_handler_file(code_dir, handler) is not None:
            return None
        directory, _, base = handler.rpartition("/")
        stem = (f"{directory}/" if directory else "") + base.partition(".")[0]
        return f"no {stem}.js, .mjs, .cjs or .ts"
    module = handler.replace("/", ".").rpartition(".")[0].replace(".", "/")
    if (code_dir / f"{module}.py").is_file() or (code_dir / module / "__init__.py").is_file():
        return None
    return f"no {module}.py"
