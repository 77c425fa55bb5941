"""Lambda Python functions as a Spin app: which component serves which route, and the files.

One component per function; functions whose events share a path (with different methods:
Spin routes by path only) are served by one component, whose entry picks the function by
method. What the app gets:

- `spin.toml`, one `[[trigger.http]]` per route, one component per group of functions;
- `.wasmlet/lambda/`, the components' build directory: the adapter (`lib/wasmlet_lambda`,
  vendored from wasmlet's lambda-python template), the build tools' `requirements.txt`, and
  per component `<id>/wasmlet_entry.py` (its functions and routes); a build adds
  `<id>/deps/` (the functions' requirements) and `<id>/app.wasm`.

The functions' own code is not touched: the build reads it where it is.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import tomli_w

from .cfn import PortError
from .model import FUNCTION_URL, HttpEvent, LambdaFunction, Project
from .sam import kebab

WORKDIR = ".wasmlet/lambda"
ENTRY = "wasmlet_entry"
MARKER = "# Written by `wasmlet port"
_TEMPLATE = ("templates", "lambda-python", "content", "dot-wasmlet", "lambda")


@dataclass
class RouteSpec:
    """One route of a component: a Spin route, the function and how its events look."""

    route: str  # the Spin route
    function: str  # the function's logical id
    kind: str
    methods: list[str]  # upper-case; empty: any
    path: str  # the API's route path ("" for $default and function URLs)
    params: tuple[str, ...]
    stage: str
    strip: bool = False


@dataclass
class Component:
    id: str
    functions: list[LambdaFunction]
    routes: list[RouteSpec] = field(default_factory=list)


def spin_route(path: str) -> tuple[str, tuple[str, ...]]:
    """An API route path as a Spin route and its parameter names: `/items/{id}` →
    (`/items/:id`, ("id",)), `/files/{proxy+}` → (`/files/...`, ("proxy",)), "" → `/...`."""
    if not path:
        return "/...", ()
    out: list[str] = []
    names: list[str] = []
    for segment in (s for s in path.split("/") if s):
        if segment.startswith("{"):
            name = segment.strip("{}+")
            names.append(name)
            if segment.endswith("+}"):
                out.append("...")
            else:
                safe = re.sub(r"\W", "_", name)
                out.append(":" + (safe if safe[:1].isalpha() else f"p{safe}"))
        else:
            out.append(segment)
    return "/" + "/".join(out), tuple(names)


def _shape(route: str) -> str:
    return "/".join(":" if s.startswith(":") else s for s in route.split("/"))


def plan(project: Project) -> list[Component]:
    """The components serving `project`'s functions, and their routes."""
    by_shape: dict[str, str] = {}
    by_key: dict[tuple[str, str, str, str], RouteSpec] = {}
    claims: dict[str, list[tuple[str | None, str, HttpEvent]]] = {}
    functions = {f.logical_id: f for f in project.functions}
    for function in project.functions:
        for event in function.events:
            if event.kind == FUNCTION_URL:
                continue
            route, names = spin_route(event.path)
            route = by_shape.setdefault(_shape(route), route)
            _check_clash(claims, route, function, event)
            key = (route, function.logical_id, event.kind, event.path)
            spec = by_key.get(key)
            methods = [] if event.method is None else [event.method]
            if spec is None:
                by_key[key] = RouteSpec(*key[:3], methods, event.path, names, event.stage)
            elif spec.methods and methods:
                spec.methods += methods
            else:
                spec.methods = []  # some event takes any method
    specs = list(by_key.values())
    # Functions that share a route share a component (union-find by route).
    group = {f.logical_id: f.logical_id for f in project.functions}

    def root(name: str) -> str:
        while group[name] != name:
            name = group[name]
        return name

    owners: dict[str, str] = {}
    for spec in specs:
        first = owners.setdefault(spec.route, spec.function)
        group[root(spec.function)] = root(first)
    components: dict[str, Component] = {}
    ids: set[str] = set()
    for function in project.functions:
        top = root(function.logical_id)
        if top not in components:
            cid = kebab(functions[top].logical_id)
            while cid in ids:
                cid += "-2"
            ids.add(cid)
            components[top] = Component(cid, [])
        components[top].functions.append(function)
    for spec in specs:
        components[root(spec.function)].routes.append(spec)
    _url_routes(project, components, root, {s.route for s in specs})
    return list(components.values())


def _check_clash(
    claims: dict[str, list[tuple[str | None, str, HttpEvent]]],
    route: str,
    function: LambdaFunction,
    event: HttpEvent,
) -> None:
    """One route and method is served by one function."""
    for method, owner, other in claims.setdefault(route, []):
        overlap = method is None or event.method is None or method == event.method
        if overlap and owner != function.logical_id:
            shown = event.method or method or "ANY"
            raise PortError(
                f"{event.where} and {other.where.split(': ', 1)[-1]}: both serve {shown} "
                f"{event.path or '/'} "
                "(one function per route and method)"
            )
    claims[route].append((event.method, function.logical_id, event))


def _url_routes(
    project: Project,
    components: dict[str, Component],
    root: Callable[[str], str],
    taken: set[str],
) -> None:
    """Function URLs: at `/...` when there is one and nothing else has `/...`, else each at
    `/<function>/...` (the function sees the path under it, as on its own URL)."""
    with_url = [f for f in project.functions if any(e.kind == FUNCTION_URL for e in f.events)]
    alone = len(with_url) == 1 and "/..." not in taken
    for function in with_url:
        route = "/..." if alone else f"/{kebab(function.logical_id)}/..."
        if route in taken:
            raise PortError(
                f"{function.where}: its function URL would be served at {route}, "
                "which another event already uses"
            )
        components[root(function.logical_id)].routes.append(
            RouteSpec(route, function.logical_id, FUNCTION_URL, [], "", (), "$default", not alone)
        )


# --- files ---------------------------------------------------------------------------------


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


def aws_environment(function: LambdaFunction, region: str) -> dict[str, str]:
    """The variables Lambda's runtime sets, as the adapter and handlers read them."""
    return {
        "AWS_LAMBDA_FUNCTION_NAME": function.name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
        "AWS_LAMBDA_FUNCTION_TIMEOUT": str(int(function.timeout)),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function.name}",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{function.runtime}",
        "_HANDLER": function.handler,
    }


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
    code_dirs = _code_dirs(component)
    separate = len(code_dirs) > 1
    envs = {
        f.logical_id: {**f.environment, **aws_environment(f, project.region)}
        for f in component.functions
    }
    shared = _shared_environment(list(envs.values()))
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
            kwargs["code_path"] = f"/{2 + code_dirs.index(f.code_dir)}"
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
        "Written by `wasmlet port aws-sam` (or `wasmlet new lambda-python`): after changing\n"
        'template.yaml, port again rather than edit this file."""\n\n'
        "from wasmlet_lambda import App, Function, Route\n"
        "from wasmlet_lambda.runtime import serve\n\n"
        "APP = App(\n"
        "    functions={\n" + body + "    },\n"
        "    routes=[\n" + "".join(f"        {r},\n" for r in routes) + "    ],\n"
        ")\n"
        "IncomingHandler = serve(APP)\n"
    )


def _code_dirs(component: Component) -> list[Path]:
    dirs: list[Path] = []
    for f in component.functions:
        if f.code_dir not in dirs:
            dirs.append(f.code_dir)
    return dirs


def _shared_environment(envs: list[dict[str, str]]) -> dict[str, str]:
    """The variables every function of a component has with the same value."""
    first, rest = envs[0], envs[1:]
    return {k: v for k, v in first.items() if all(e.get(k) == v for e in rest)}


def component_table(component: Component, project: Project, out: Path) -> dict[str, Any]:
    workdir = out / WORKDIR
    cid = component.id
    rels = [Path(os.path.relpath(d, workdir)).as_posix() for d in _code_dirs(component)]
    envs = [{**f.environment, **aws_environment(f, project.region)} for f in component.functions]
    deps = f"python3 lib/wasmlet_lambda/deps.py {cid}/deps " + " ".join(
        shlex.quote(f"{r}/requirements.txt") for r in rels
    )
    paths = " ".join(f"-p {shlex.quote(p)}" for p in [cid, "lib", *rels, f"{cid}/deps"])
    build = f"componentize-py -w spin-http componentize {paths} {ENTRY} -o {cid}/app.wasm"
    watch = [f"{cid}/*.py", "lib/wasmlet_lambda/*.py"]
    for r in rels:
        watch += [f"{r}/**/*.py", f"{r}/requirements.txt"]
    names = ", ".join(f"{f.logical_id} ({f.runtime}, {f.handler})" for f in component.functions)
    return {
        "description": f"Lambda: {names}",
        "source": f"{WORKDIR}/{cid}/app.wasm",
        "environment": _shared_environment(envs),
        "build": {"workdir": WORKDIR, "command": [deps.strip(), build], "watch": watch},
    }


def manifest(project: Project, components: list[Component], out: Path) -> str:
    """spin.toml's text."""
    triggers = [{"route": r.route, "component": c.id} for c in components for r in c.routes]
    unique = list({t["route"]: t for t in triggers}.values())
    data = {
        "spin_manifest_version": 2,
        "application": {
            "name": project.name,
            "version": "0.1.0",
            "description": project.description or f"{project.source.name}, ported by wasmlet",
        },
        "trigger": {"http": unique},
        "component": {c.id: component_table(c, project, out) for c in components},
    }
    header = (
        f"{MARKER} aws-sam {project.source.name}`: run it again after changing\n"
        f"# {project.source.name} (it rewrites this file and .wasmlet/lambda/; your code stays).\n"
    )
    return header + tomli_w.dumps(data)


def write(project: Project, components: list[Component], out: Path, *, force: bool) -> None:
    """Write spin.toml and .wasmlet/lambda/ into `out`."""
    spin = out / "spin.toml"
    if spin.is_file() and not force and not spin.read_text(encoding="utf-8").startswith(MARKER):
        raise PortError(
            f"{spin}: exists and was not written by wasmlet port; move it away or pass --force"
        )
    workdir = out / WORKDIR
    _copy_tree(_template_dir(), workdir)
    wanted = {c.id for c in components}
    for old in workdir.iterdir() if workdir.is_dir() else []:
        if old.is_dir() and old.name not in wanted and (old / f"{ENTRY}.py").is_file():
            shutil.rmtree(old)  # a component the template no longer has
    for component in components:
        _write(workdir / component.id / f"{ENTRY}.py", entry_source(component, project).encode())
    _write(spin, manifest(project, components, out).encode())
