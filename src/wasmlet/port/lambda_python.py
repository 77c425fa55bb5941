"""Lambda Python functions' build directory, and the file helpers the writers share.

What a ported app's Python components get (`lambda_app.py` writes spin.toml):
`.wasmlet/lambda/`, their build directory: the adapter (`lib/wasmlet_lambda`, vendored from
wasmlet's lambda-python template), the build tools' `requirements.txt`, and per component
`<id>/wasmlet_entry.py` (its functions and routes); a build adds `<id>/deps/` (the
functions' requirements) and `<id>/app.wasm`. The functions' own code is not touched: the
build reads it where it is.
"""

from __future__ import annotations

import json
import shlex
import shutil
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from . import lambda_plan
from .lambda_plan import Component, code_dirs, environments, relative_code_dirs
from .model import Project

WORKDIR = ".wasmlet/lambda"
ENTRY = "wasmlet_entry"
MARKER = "# Written by `wasmlet port"
_TEMPLATE = ("templates", "lambda-python", "content", "dot-wasmlet", "lambda")


def _template_dir() -> Traversable:
    return resources.files("wasmlet").joinpath(*_TEMPLATE)


def _copy_tree(source: Traversable, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        if entry.name == "__pycache__" or "{{" in entry.name:
            continue
        name = "." + entry.name[4:] if entry.name.startswith("dot-") else entry.name
        if entry.is_dir():
            _copy_tree(entry, dest / name)
        else:
            _write(dest / name, entry.read_bytes())


def _write(path: Path, data: bytes) -> None:
    """Write only what changed: an unchanged file keeps its mtime (and the build its state)."""
    if path.is_file() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _lit(value: object, indent: str) -> str:
    """A Python literal in ruff's format (double quotes, one item a line when long)."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool) or value is None or isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple):
        if not value:
            return "()"
        inline = (
            "(" + ", ".join(_lit(v, indent) for v in value) + ("," if len(value) == 1 else "") + ")"
        )
        if len(indent) + len(inline) < 80:
            return inline
        inner = indent + "    "
        return "(\n" + "".join(f"{inner}{_lit(v, inner)},\n" for v in value) + indent + ")"
    if isinstance(value, dict):
        if not value:
            return "{}"
        inner = indent + "    "
        items = "".join(f"{inner}{_lit(k, inner)}: {_lit(v, inner)},\n" for k, v in value.items())
        return "{\n" + items + indent + "}"
    raise TypeError(type(value))


def _call(name: str, args: list[object], kwargs: dict[str, object], indent: str) -> str:
    inner = indent + "    "
    lines = [f"{inner}{_lit(a, inner)},\n" for a in args]
    lines += [f"{inner}{k}={_lit(v, inner)},\n" for k, v in kwargs.items()]
    return f"{name}(\n" + "".join(lines) + indent + ")"


def entry_source(component: Component, project: Project) -> str:
    """The component's entry module: its functions and routes for the adapter."""
    dirs = code_dirs(component)
    separate = len(dirs) > 1
    envs, shared = environments(component, project)
    functions = {}
    for f in component.functions:
        env = envs[f.logical_id]
        kwargs: dict[str, object] = {
            "name": f.name,
            "handler": f.handler,
            "memory_mb": f.memory_mb,
            "timeout": f.timeout,
            "environment": env,
        }
        overlay = tuple(k for k in env if k not in shared)
        if overlay:
            kwargs["overlay"] = overlay
        if separate:
            # componentize-py mounts its -p directories as /0, /1, ...: this function's code
            kwargs["code_path"] = f"/{2 + dirs.index(f.code_dir)}"
        if f.preload:
            kwargs["preload"] = f.preload
        functions[f.logical_id] = _call("Function", [], kwargs, "        ")
    routes = []
    for r in component.routes:
        kwargs = {"kind": r.kind}
        if r.methods:
            kwargs["methods"] = tuple(r.methods)
        if r.path:
            kwargs["path"] = r.path
        if r.params:
            kwargs["params"] = r.params
        if r.stage != "$default":
            kwargs["stage"] = r.stage
        if r.strip:
            kwargs["strip"] = True
        routes.append(_call("Route", [r.route, r.function], kwargs, "        "))
    body = "".join(f"        {json.dumps(k)}: {v},\n" for k, v in functions.items())
    return (
        f'"""The entry of component {component.id}: its Lambda functions and the routes they\n'
        "serve, for wasmlet's Lambda adapter (wasmlet_lambda; see wasmlet's docs/serverless.md).\n"
        f"Written by `wasmlet port {project.kind}`: after changing {project.source.name},\n"
        'port again rather than edit this file."""\n\n'
        "from wasmlet_lambda import App, Function, Route\n"
        "from wasmlet_lambda.runtime import serve\n\n"
        "APP = App(\n"
        "    functions={\n" + body + "    },\n"
        "    routes=[\n" + "".join(f"        {r},\n" for r in routes) + "    ],\n"
        ")\n"
        "IncomingHandler = serve(APP)\n"
    )


def component_table(component: Component, project: Project, out: Path) -> dict[str, Any]:
    cid = component.id
    rels = relative_code_dirs(component, out / WORKDIR)
    deps = f"python3 lib/wasmlet_lambda/deps.py {cid}/deps " + " ".join(
        shlex.quote(f"{r}/requirements.txt") for r in rels
    )
    paths = " ".join(f"-p {shlex.quote(p)}" for p in [cid, "lib", *rels, f"{cid}/deps"])
    build = f"componentize-py -w spin-http componentize {paths} {ENTRY} -o {cid}/app.wasm"
    watch = [f"{cid}/*.py", "lib/wasmlet_lambda/*.py"]
    for r in rels:
        watch += [f"{r}/**/*.py", f"{r}/requirements.txt"]
    return lambda_plan.component_table(component, project, WORKDIR, [deps.strip(), build], watch)


def sync_workdir(template: Traversable, workdir: Path, entry: str, entries: dict[str, str]) -> None:
    """Bring a build directory up to date: the template's files, one `<id>/<entry>` per
    component, and no directory of a component the project no longer has."""
    _copy_tree(template, workdir)
    for old in workdir.iterdir() if workdir.is_dir() else []:
        if old.is_dir() and old.name not in entries and (old / entry).is_file():
            shutil.rmtree(old)
    for cid, text in entries.items():
        _write(workdir / cid / entry, text.encode())


def write_workdir(project: Project, components: list[Component], out: Path) -> None:
    """Write .wasmlet/lambda/ for the Python `components`."""
    entries = {c.id: entry_source(c, project) for c in components}
    sync_workdir(_template_dir(), out / WORKDIR, f"{ENTRY}.py", entries)
