"""Azure Functions Python apps: the v2 model's `function_app.py` read for its functions, and
the component (entry module, build commands) that runs a v1 or v2 app with wasmlet's Azure
adapter (`wasmlet_azure`, on the wasi:http side of the Lambda adapter `wasmlet_lambda`).

The v2 functions are read from the decorators without running the code: enough to name the
routes in spin.toml and list what is not ported. The adapter indexes the app with the real
azure-functions library at build time and routes by what it registers, so a route the
decorators do not spell out literally (a variable, a blueprint in another module) is served
too, through the prefix's catch-all route.
"""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path
from typing import Any

from .azure import (
    AzureApp,
    AzureFunction,
    check_auth,
    check_methods,
    spin_routes,
)
from .cfn import PortError
from .lambda_python import _call, _lit
from .model import Note

SCRIPT = "function_app.py"
_APPS = ("FunctionApp", "AsgiFunctionApp", "WsgiFunctionApp", "Blueprint")
_BINDING_SUFFIXES = ("_input", "_output", "_input_binding", "_output_binding")


def _attr(node: ast.expr) -> str:
    """`func.AuthLevel.ANONYMOUS` → "ANONYMOUS"; `app.route` → "route"; "x" → "x"."""
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return ""


def _literal(node: ast.expr | None) -> Any:
    """A decorator argument's value: a literal, an enum member's name (`func.HttpMethod.GET`
    → "GET"), or `...` when it is computed at run time."""
    if node is None:
        return None
    if isinstance(node, ast.List | ast.Tuple):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.Attribute):
        return node.attr
    try:
        return ast.literal_eval(node)
    except ValueError:
        return ...


def _argument(call: ast.Call, name: str, position: int) -> ast.expr | None:
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value
    return call.args[position] if len(call.args) > position else None


def read_v2(app: AzureApp) -> None:
    """The HTTP functions of function_app.py's decorators (and notes on the others)."""
    path = app.root / SCRIPT
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), SCRIPT)
    except SyntaxError as error:
        raise PortError(f"{SCRIPT}:{error.lineno}: {error.msg}") from None
    default_auth: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            kind = _attr(node.value.func)
            if kind in _APPS:
                level = _literal(
                    _argument(node.value, "http_auth_level", 1 if kind != "FunctionApp" else 0)
                )
                for target in node.targets:
                    where = f"{SCRIPT}:{node.lineno}: {kind}(http_auth_level)"
                    default_auth[_attr(target)] = check_auth(None if level is ... else level, where)
                if kind in ("AsgiFunctionApp", "WsgiFunctionApp"):
                    # one function, http_app_func, on the route /{*route}, any method
                    app.functions.append(
                        AzureFunction(
                            "http_app_func",
                            f"{SCRIPT}:{node.lineno}",
                            "{*route}",
                            auth=default_auth[_attr(node.targets[0])],
                        )
                    )
        registers = isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
        if registers and _attr(node.value.func) == "register_functions":  # type: ignore[attr-defined]
            app.functions.append(AzureFunction("(blueprints)", f"{SCRIPT}:{node.lineno}", None))
            app.notes.append(
                Note(
                    f"{SCRIPT}:{node.lineno}",
                    "register_functions",
                    "the blueprints' functions are indexed at build time and served under "
                    f"the route prefix's catch-all route (/{app.route_prefix}/...)",
                )
            )
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.decorator_list:
            function = _decorated(app, node, default_auth)
            if function is not None:
                app.functions.append(function)


def _decorated(
    app: AzureApp, node: ast.FunctionDef | ast.AsyncFunctionDef, default_auth: dict[str, str]
) -> AzureFunction | None:
    name = node.name
    route_call: ast.Call | None = None
    owner = ""
    others: list[tuple[str, int]] = []
    trigger = ""
    for decorator in node.decorator_list:
        if not isinstance(decorator, ast.Call) or not isinstance(decorator.func, ast.Attribute):
            continue
        kind = decorator.func.attr
        if kind == "function_name":
            value = _literal(_argument(decorator, "name", 0))
            if isinstance(value, str):
                name = value
        elif kind == "route":
            route_call, owner = decorator, _attr(decorator.func.value)
        elif kind.endswith("_trigger") or kind == "schedule":
            trigger = kind
        elif kind.endswith(_BINDING_SUFFIXES):
            others.append((kind, decorator.lineno))
    where = f"{SCRIPT}:{node.lineno}"
    if trigger:
        app.notes.append(
            Note(
                where,
                f"@{trigger} of function {name}",
                "not an HTTP trigger: wasmlet serves HTTP triggers, not ported",
            )
        )
        return None
    if route_call is None:
        return None
    if others:
        kinds = ", ".join(f"@{kind} (line {line})" for kind, line in others)
        app.notes.append(
            Note(
                where,
                f"{kinds} of function {name}",
                "not supported: wasmlet serves HTTP in "
                "and HTTP out bindings only: the function is not served",
            )
        )
        return None
    route = _literal(_argument(route_call, "route", 0))
    methods = _literal(_argument(route_call, "methods", 3))
    level = _literal(_argument(route_call, "auth_level", 4))
    if route is ... or methods is ... or (isinstance(methods, list) and ... in methods):
        route = None  # computed: known at build time, served by the catch-all route
    else:
        route = route or name
        spin_routes(app.route_prefix, route, f"{where}: route")
    return AzureFunction(
        name=name,
        where=where,
        route=route,
        methods=check_methods(None if methods is ... else methods, f"{where}: methods"),
        auth=check_auth(
            None if level is ... else level,
            f"{where}: auth_level",
            default_auth.get(owner, "function"),
        ),
    )


# --- the component ---------------------------------------------------------------------------


def _tuples(value: Any) -> Any:
    """JSON values as the literals the entry module holds (lists as tuples)."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def entry_source(app: AzureApp, cid: str) -> str:
    """The component's entry module: the app for wasmlet_azure."""
    kwargs: dict[str, object] = {
        # componentize-py mounts its -p directories as /0, /1, ...: the app's root is the third
        "root": "/2",
        "route_prefix": app.route_prefix,
    }
    if app.model == "python-v2":
        kwargs["script"] = Path(SCRIPT).stem
    else:
        functions = {
            f.name: _call(
                "Function",
                [],
                {"script": f.script, "entry": f.entry, "bindings": _tuples(list(f.bindings))},
                "        ",
            )
            for f in app.functions
        }
        body = "".join(f"        {json.dumps(k)}: {v},\n" for k, v in functions.items())
        kwargs["functions"] = "{\n" + body + "    }"
    kwargs["environment"] = app.environment
    kwargs["without_auth"] = app.without_auth
    names = "App" if app.model == "python-v2" else "App, Function"
    lines = []
    for key, value in kwargs.items():
        shown = value if key == "functions" else _lit(value, "    ")
        lines.append(f"    {key}={shown},\n")
    return (
        f'"""The entry of component {cid}: the Azure Functions app for wasmlet\'s adapter\n'
        "(wasmlet_azure; see wasmlet's docs/serverless.md). Written by `wasmlet port\n"
        'azure-functions`: after changing the app, port again rather than edit this file."""\n\n'
        f"from wasmlet_azure import {names}\n"
        "from wasmlet_lambda.runtime import serve\n\n"
        "APP = App(\n" + "".join(lines) + ")\n"
        "IncomingHandler = serve(APP)\n"
    )


def component(app: AzureApp, cid: str, workdir: Path) -> dict[str, Any]:
    """spin.toml's table of the component (built in `workdir`)."""
    rel = Path(os.path.relpath(app.root, workdir)).as_posix()
    deps = (
        f"python3 lib/wasmlet_lambda/deps.py {cid}/deps lib/wasmlet_azure/requirements.txt "
        f"{rel}/requirements.txt"
    )
    paths = f"-p {cid} -p lib -p {rel} -p {cid}/deps"
    build = f"componentize-py -w spin-http componentize {paths} wasmlet_entry -o {cid}/app.wasm"
    model = "v2, function_app.py" if app.model == "python-v2" else "v1, function.json"
    return {
        "description": f"Azure Functions app {app.root.name} (Python, {model})",
        "build": {
            "workdir": workdir.relative_to(app.root).as_posix(),
            "command": [deps, build],
            "watch": [
                f"{cid}/*.py",
                "lib/**/*.py",
                f"{rel}/**/*.py",
                f"{rel}/**/function.json",
                f"{rel}/requirements.txt",
            ],
        },
    }
