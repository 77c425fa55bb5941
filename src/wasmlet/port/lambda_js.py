"""Lambda Node.js functions' build directory: `.wasmlet/lambda-js/`.

It holds the JS adapter (`lib/wasmlet-lambda/`, vendored from wasmlet's lambda-js template),
its build script (`lib/build.mjs`: esbuild, then the Spin JS SDK's j2w), the npm packages of
the build (`package.json`, `package-lock.json`: `wasmlet build` runs `npm install` here) and
per component `<id>/entry.mjs`: its functions (each a `require` of its handler's file, which
esbuild bundles) and routes. A build adds `<id>/build/` (the bundle) and `<id>/app.wasm`.
The functions' own code is not touched: the build reads it where it is.
"""

from __future__ import annotations

import json
import os
import shlex
from importlib import resources
from pathlib import Path
from typing import Any

from . import lambda_plan
from .handlers import NODE_EXTENSIONS, node_handler_file
from .lambda_plan import Component, environments, relative_code_dirs
from .lambda_python import sync_workdir
from .model import LambdaFunction, Project

WORKDIR = ".wasmlet/lambda-js"
ENTRY = "entry.mjs"
_TEMPLATE = ("templates", "lambda-js", "content", "dot-wasmlet", "lambda-js")


def _js(value: object, indent: str) -> str:
    """A JS literal (JSON, one item a line for objects and lists that do not fit)."""
    inline = json.dumps(value, ensure_ascii=False)
    if len(indent) + len(inline) < 100 or not isinstance(value, dict | list) or not value:
        return inline
    inner = indent + "    "
    if isinstance(value, list):
        return "[\n" + "".join(f"{inner}{_js(v, inner)},\n" for v in value) + indent + "]"
    items = "".join(f"{inner}{json.dumps(k)}: {_js(v, inner)},\n" for k, v in value.items())
    return "{\n" + items + indent + "}"


def _handler_file(function: LambdaFunction) -> Path:
    path = node_handler_file(function.code_dir, function.handler)
    if path is None:  # the readers checked it
        raise AssertionError(f"{function.where}: no handler file for {function.handler}")
    return path


def entry_source(component: Component, project: Project, out: Path) -> str:
    """The component's entry module: its functions and routes for the adapter."""
    here = out / WORKDIR / component.id
    envs, shared = environments(component, project)
    functions = []
    for f in component.functions:
        env = envs[f.logical_id]
        source = Path(os.path.relpath(_handler_file(f), here)).as_posix()
        fields: dict[str, object] = {
            "name": f.name,
            "handler": f.handler,
            "memoryMb": f.memory_mb,
            "timeout": f.timeout,
            "environment": env,
        }
        overlay = [k for k in env if k not in shared]
        if overlay:
            fields["overlay"] = overlay
        pad = " " * 16
        body = "".join(f"{pad}{k}: {_js(v, pad)},\n" for k, v in fields.items())
        body += f"{pad}load: () => require({json.dumps(source)}),\n"
        functions.append(f"{' ' * 12}{json.dumps(f.logical_id)}: {{\n{body}{' ' * 12}}},\n")
    routes = []
    for r in component.routes:
        route: dict[str, object] = {"route": r.route, "function": r.function, "kind": r.kind}
        if r.methods:
            route["methods"] = r.methods
        if r.path:
            route["path"] = r.path
        if r.params:
            route["params"] = list(r.params)
        if r.stage != "$default":
            route["stage"] = r.stage
        if r.strip:
            route["strip"] = True
        fields_ = ", ".join(f"{k}: {json.dumps(v, ensure_ascii=False)}" for k, v in route.items())
        routes.append(f"{' ' * 12}{{ {fields_} }},\n")
    return (
        f"// The entry of component {component.id}: its Lambda functions and the routes they\n"
        "// serve, for wasmlet's Lambda adapter (lib/wasmlet-lambda; see wasmlet's\n"
        f"// docs/serverless.md). Written by `wasmlet port {project.kind}`: after changing\n"
        f"// {project.source.name}, port again rather than edit this file.\n\n"
        'import { App } from "../lib/wasmlet-lambda/app.mjs";\n'
        'import { serve } from "../lib/wasmlet-lambda/runtime.mjs";\n\n'
        "export const incomingHandler = serve(\n"
        "    new App({\n"
        "        functions: {\n" + "".join(functions) + "        },\n"
        "        routes: [\n" + "".join(routes) + "        ],\n"
        "    }),\n"
        ");\n"
    )


def component_table(component: Component, project: Project, out: Path) -> dict[str, Any]:
    rels = relative_code_dirs(component, out / WORKDIR)
    build = " ".join(["node lib/build.mjs", component.id, *(shlex.quote(r) for r in rels)])
    watch = [f"{component.id}/*.mjs", "lib/**/*.mjs"]
    for r in rels:
        watch += [f"{r}/**/*{ext}" for ext in NODE_EXTENSIONS]
        watch += [f"{r}/package.json", f"{r}/package-lock.json"]
    return lambda_plan.component_table(component, project, WORKDIR, build, watch)


def write_workdir(project: Project, components: list[Component], out: Path) -> None:
    """Write .wasmlet/lambda-js/ for the Node.js `components`."""
    entries = {c.id: entry_source(c, project, out) for c in components}
    template = resources.files("wasmlet").joinpath(*_TEMPLATE)
    sync_workdir(template, out / WORKDIR, ENTRY, entries)
