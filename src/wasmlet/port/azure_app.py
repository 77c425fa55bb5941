"""`wasmlet port azure-functions`: read an Azure Functions app, write its spin.toml and build
directory `.wasmlet/azure/`, and the report.

One component serves the whole app, whatever its model: on Azure one worker process loads
all of an app's functions (they share modules and state) and the host routes among them;
the component does the same with the adapter (wasmlet_azure for Python, lib/core.js for
Node.js), which routes by Azure's route templates, constraints and methods. spin.toml has a
`[[trigger.http]]` per route the functions name (`/api/items/:id`), all to that component,
and the prefix's catch-all (`/api/...`) when a route is only known once the app is built.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import tomli_w

from . import azure_js, azure_python
from .azure import (
    NODE_V4,
    PYTHON_V1,
    PYTHON_V2,
    AzureApp,
    auth_note,
    read_app,
    read_v1_functions,
    spin_routes,
)
from .cfn import PortError
from .lambda_python import _TEMPLATE as LAMBDA_TEMPLATE
from .lambda_python import MARKER, _copy_tree, _write

WORKDIR = ".wasmlet/azure"
_MODELS = {
    PYTHON_V1: "Python, v1 model (function.json)",
    PYTHON_V2: "Python, v2 model (function_app.py)",
    NODE_V4: "Node.js, v4 model (@azure/functions)",
}


def read(root: Path, *, without_auth: bool = False) -> AzureApp:
    """The app in `root`, with its HTTP functions and notes on what is not ported."""
    app = read_app(root, without_auth=without_auth)
    if app.model == PYTHON_V1:
        read_v1_functions(app)
    elif app.model == PYTHON_V2:
        azure_python.read_v2(app)
    else:
        azure_js.read_v4(app)
    for function in app.functions:
        note = auth_note(function, without_auth)
        if note is not None:
            app.notes.append(note)
    if not app.functions:
        reasons = "".join(f"\n  {note}" for note in app.notes) or "\n  (no functions)"
        raise PortError(f"{app.root.name}: nothing to port: no HTTP function:{reasons}")
    return app


def routes(app: AzureApp) -> list[str]:
    """spin.toml's routes of the app's functions, each once."""
    found: list[str] = []
    for function in app.functions:
        for route in spin_routes(app.route_prefix, function.route, function.where):
            if route not in found:
                found.append(route)
    return found


def manifest(app: AzureApp, table: dict[str, Any]) -> str:
    data = {
        "spin_manifest_version": 2,
        "application": {
            "name": app.name,
            "version": "0.1.0",
            "description": f"Azure Functions app {app.root.name}, ported by wasmlet",
        },
        "trigger": {"http": [{"route": r, "component": app.name} for r in routes(app)]},
        "component": {app.name: table},
    }
    header = (
        f"{MARKER} azure-functions`: run it again after changing host.json,\n"
        "# local.settings.json or the functions (it rewrites this file and .wasmlet/azure/).\n"
    )
    return header + tomli_w.dumps(data)


def _template(*parts: str) -> Any:
    return resources.files("wasmlet").joinpath(*parts)


def write(app: AzureApp, *, force: bool = False) -> None:
    """spin.toml and .wasmlet/azure/ in the app's directory."""
    spin = app.root / "spin.toml"
    if spin.is_file() and not force and not spin.read_text(encoding="utf-8").startswith(MARKER):
        raise PortError(
            f"{spin}: exists and was not written by wasmlet port; move it away or pass --force"
        )
    workdir = app.root / WORKDIR
    cid = app.name
    if app.model == NODE_V4:
        _copy_tree(_template("templates", "azure-js", "content", "dot-wasmlet", "azure"), workdir)
        _write(workdir / cid / "entry.js", azure_js.entry_source(app, cid, workdir).encode())
        _write(workdir / cid / "build.json", azure_js.build_config(app, workdir).encode())
        table = azure_js.component(app, cid, workdir)
    else:
        # the Lambda adapter's wasi:http side, build step and tools pins, then the Azure one
        _copy_tree(_template(*LAMBDA_TEMPLATE), workdir)
        _copy_tree(
            _template("templates", "azure-python", "content", "dot-wasmlet", "azure"), workdir
        )
        source = azure_python.entry_source(app, cid)
        _write(workdir / cid / "wasmlet_entry.py", source.encode())
        table = azure_python.component(app, cid, workdir)
    table = {
        "description": table["description"],
        "source": f"{WORKDIR}/{cid}/app.wasm",
        "environment": app.environment,
        "build": table["build"],
    }
    _write(spin, manifest(app, table).encode())


def port_azure_functions(
    root: Path, *, without_auth: bool = False, force: bool = False
) -> AzureApp:
    """Port the Azure Functions app in `root`: spin.toml and .wasmlet/azure/ there."""
    app = read(root, without_auth=without_auth)
    write(app, force=force)
    return app


def report(app: AzureApp) -> str:
    """What was ported, what was not and why."""
    lines = [
        f"Ported Azure Functions app {app.root.name} ({_MODELS[app.model]}) to spin.toml "
        f"(build directory {WORKDIR}/): {len(app.functions)} function(s) in component "
        f"{app.name}, route prefix /{app.route_prefix}"
    ]
    for f in app.functions:
        methods = ",".join(f.methods) or "ANY"
        shown = spin_routes(app.route_prefix, f.route, f.where)
        route = f"(route known at build time) {shown[0]}" if f.route is None else " ".join(shown)
        lines.append(f"  {methods} {route}  <- {f.name} ({f.where}; authLevel {f.auth})")
    if app.notes:
        lines.append("Not ported (or not as on Azure):")
        lines += [f"  {note}" for note in app.notes]
    lines.append("Next: wasmlet build && wasmlet up")
    return "\n".join(lines)
