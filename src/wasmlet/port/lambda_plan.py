"""Lambda functions as a Spin app, whatever their language: which component serves which
route. One component per function; functions whose events share a path (with different
methods: Spin routes by path only) are served by one component, whose entry picks the
function by method, so they must share a language too. The writers of the components' files:
`lambda_python.py` and `lambda_js.py`; spin.toml: `lambda_app.py`."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cfn import PortError
from .handlers import PYTHON, language
from .model import FUNCTION_URL, HttpEvent, LambdaFunction, Project
from .sam import kebab


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

    @property
    def language(self) -> str:
        """PYTHON or NODE: its functions share one (plan() sees to it)."""
        return language(self.functions[0].runtime) or PYTHON


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
        _check_language(functions[first], functions[spec.function], spec.route)
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


def _check_language(first: LambdaFunction, other: LambdaFunction, route: str) -> None:
    """Functions on one path share a component, and a component has one language."""
    if language(first.runtime) != language(other.runtime):
        raise PortError(
            f"{first.where} ({first.runtime}) and {other.where.split(': ', 1)[-1]} "
            f"({other.runtime}) serve the same path ({route}): Spin routes by path, so they "
            "would share a component, which has one language; give them different paths"
        )


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


def code_dirs(component: Component) -> list[Path]:
    dirs: list[Path] = []
    for f in component.functions:
        if f.code_dir not in dirs:
            dirs.append(f.code_dir)
    return dirs


def shared_environment(envs: list[dict[str, str]]) -> dict[str, str]:
    """The variables every function of a component has with the same value."""
    first, rest = envs[0], envs[1:]
    return {k: v for k, v in first.items() if all(e.get(k) == v for e in rest)}


def environments(
    component: Component, project: Project
) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """Each function's environment (its variables, then those Lambda's runtime sets) by
    logical id, and the variables they all share (the component's `environment`)."""
    envs = {
        f.logical_id: {**f.environment, **aws_environment(f, project.region)}
        for f in component.functions
    }
    return envs, shared_environment(list(envs.values()))


def relative_code_dirs(component: Component, workdir: Path) -> list[str]:
    """The functions' code directories as the build (in `workdir`) names them."""
    return [Path(os.path.relpath(d, workdir)).as_posix() for d in code_dirs(component)]


def component_table(
    component: Component,
    project: Project,
    workdir: str,
    command: str | list[str],
    watch: list[str],
) -> dict[str, Any]:
    """The component's table in spin.toml, built by `command` in `workdir` (relative)."""
    names = ", ".join(f"{f.logical_id} ({f.runtime}, {f.handler})" for f in component.functions)
    return {
        "description": f"Lambda: {names}",
        "source": f"{workdir}/{component.id}/app.wasm",
        "environment": environments(component, project)[1],
        "build": {"workdir": workdir, "command": command, "watch": watch},
    }
