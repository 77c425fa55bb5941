"""Azure Functions Node.js apps of the v4 model (`app.http('name', { route, methods,
handler })` from @azure/functions 4.x): their modules (package.json's `main`, a file or a
glob) read for the functions, and the component (entry module, build command) that runs
them with the real @azure/functions library, bundled, on wasmlet's `@azure/functions-core`.

The functions are read from the source text without running it, to name the routes in
spin.toml and list what is not ported; the component registers them when it is built (the
library calls `registerFunction`) and routes by what was registered, so a route that is not
a literal in the source is served too, through the prefix's catch-all route.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from .azure import AzureApp, AzureFunction, check_auth, check_methods, load_json, spin_routes
from .cfn import PortError
from .model import Note

_HTTP = {
    "http": None,
    "get": "GET",
    "post": "POST",
    "put": "PUT",
    "patch": "PATCH",
    "deleteRequest": "DELETE",
}
_OTHER = (
    "timer",
    "storageBlob",
    "storageQueue",
    "serviceBusQueue",
    "serviceBusTopic",
    "eventHub",
    "eventGrid",
    "cosmosDB",
    "warmup",
    "sql",
    "mySql",
    "webPubSub",
    "generic",
    "mcpTool",
    "mcpResource",
    "mcpPrompt",
    "connectorTrigger",
)
_CALL = re.compile(r"\bapp\s*\.\s*(\w+)\s*\(\s*(['\"`])([^'\"`]+)\2")
_STRING = r"""(['"`])((?:(?!\1).)*)\1"""


def _options(text: str, start: int) -> str:
    """The text of a call's arguments from `start` (after the name) to its closing paren."""
    depth = 1
    quote = ""
    for i in range(start, len(text)):
        c = text[i]
        if quote:
            if c == quote and text[i - 1] != "\\":
                quote = ""
        elif c in "'\"`":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                return text[start:i]
    return text[start:]


def _key(options: str, key: str) -> tuple[bool, Any]:
    """Whether the options name `key`, and its literal value (`...` when it is computed)."""
    m = re.search(rf"\b{key}\s*:\s*", options)
    if m is None:
        return False, None
    rest = options[m.end() :]
    literal = re.match(_STRING, rest)
    if literal:
        return True, literal.group(2)
    array = re.match(r"\[([^\]]*)\]", rest)
    if array:
        items = [s.strip() for s in array.group(1).split(",") if s.strip()]
        values = [re.fullmatch(_STRING, s) for s in items]
        return True, ... if not all(values) else [v.group(2) for v in values if v]
    return True, ...


def js_files(app: AzureApp) -> list[Path]:
    """The modules package.json's `main` names (a file or a glob), checked."""
    package = load_json(app.root / "package.json", app.root)
    if not isinstance(package, dict):
        raise PortError("package.json: expected an object")
    deps = {**package.get("devDependencies", {}), **package.get("dependencies", {})}
    version = deps.get("@azure/functions")
    if not isinstance(version, str):
        raise PortError(
            "package.json: dependencies: no @azure/functions: wasmlet ports Node.js apps of the "
            "v4 model (@azure/functions 4.x; function.json with index.js is the v3 model, not "
            "supported)"
        )
    if not re.match(r"^[\^~>=v ]*4(\.|$|\s)", version):
        raise PortError(
            f"package.json: dependencies.@azure/functions: {json.dumps(version)}: wasmlet ports "
            "the v4 model (@azure/functions 4.x)"
        )
    main = package.get("main", "index.js")
    if not isinstance(main, str) or not main:
        raise PortError(f"package.json: main: {json.dumps(main)}: expected a file or glob")
    files = sorted(p for p in app.root.glob(main.removeprefix("./")) if p.is_file())
    if not files:
        raise PortError(
            f"package.json: main: {json.dumps(main)}: matches no file (a TypeScript app: "
            "compile it first, wasmlet bundles the JavaScript that main names)"
        )
    for path in files:
        if path.suffix not in (".js", ".mjs", ".cjs"):
            raise PortError(
                f"package.json: main: {json.dumps(main)}: {path.relative_to(app.root)} is not "
                "JavaScript (.js, .mjs or .cjs)"
            )
    return files


def read_v4(app: AzureApp) -> None:
    """The functions the app's modules register (and notes on the others)."""
    app.js_files = js_files(app)
    for path in app.js_files:
        rel = path.relative_to(app.root).as_posix()
        text = path.read_text(encoding="utf-8")
        for m in _CALL.finditer(text):
            kind, name = m.group(1), m.group(3)
            line = text.count("\n", 0, m.start()) + 1
            where = f"{rel}:{line}"
            if kind in _OTHER:
                app.notes.append(
                    Note(
                        where,
                        f"app.{kind}('{name}')",
                        "not an HTTP trigger: wasmlet serves HTTP triggers, not ported",
                    )
                )
            elif kind in _HTTP:
                function = _http(app, kind, name, _options(text, m.end()), where)
                if function is not None:
                    app.functions.append(function)


def _http(app: AzureApp, kind: str, name: str, options: str, where: str) -> AzureFunction | None:
    for key in ("extraInputs", "extraOutputs"):
        if _key(options, key)[0]:
            app.notes.append(
                Note(
                    where,
                    f"{key} of function {name}",
                    "not supported: wasmlet serves HTTP in "
                    "and HTTP out bindings only: the function is not served",
                )
            )
            return None
    _, route = _key(options, "route")
    has_methods, methods = _key(options, "methods")
    _, level = _key(options, "authLevel")
    if route is ... or methods is ...:
        route = None
    else:
        route = route or name
        spin_routes(app.route_prefix, route, f"{where}: route")
    fixed = _HTTP[kind]
    if fixed is not None:
        methods = [fixed]
    elif not has_methods:
        methods = ["GET", "POST"]  # @azure/functions' default for app.http
    return AzureFunction(
        name=name,
        where=where,
        route=route,
        methods=check_methods(None if methods is ... else methods, f"{where}: methods"),
        auth=check_auth(None if level is ... else level, f"{where}: authLevel", "anonymous"),
    )


def entry_source(app: AzureApp, cid: str, workdir: Path) -> str:
    imports = "".join(
        f"import {json.dumps(Path(os.path.relpath(p, workdir / cid)).as_posix())};\n"
        for p in app.js_files
    )
    config = {"routePrefix": app.route_prefix, "withoutAuth": app.without_auth}
    return (
        f"// The entry of component {cid}: the Azure Functions app's modules, which register\n"
        "// their functions with @azure/functions, then wasmlet's worker (lib/core.js). Written\n"
        "// by `wasmlet port azure-functions`: port again rather than edit this file.\n"
        "import { serve } from '../lib/core.js';\n"
        f"{imports}\n"
        f"await serve({json.dumps(config)});\n"
    )


def build_config(app: AzureApp, workdir: Path) -> str:
    return json.dumps({"app": Path(os.path.relpath(app.root, workdir)).as_posix()}) + "\n"


def component(app: AzureApp, cid: str, workdir: Path) -> dict[str, Any]:
    """spin.toml's table of the component (built in `workdir`)."""
    rel = Path(os.path.relpath(app.root, workdir)).as_posix()
    sources = sorted({Path(os.path.relpath(p.parent, workdir)).as_posix() for p in app.js_files})
    return {
        "description": f"Azure Functions app {app.root.name} (Node.js, v4 model)",
        "build": {
            "workdir": workdir.relative_to(app.root).as_posix(),
            "command": f"node build.mjs {cid}",
            "watch": [
                f"{cid}/entry.js",
                "lib/**/*.js",
                "build.mjs",
                f"{rel}/package.json",
                *(f"{s}/**/*.js" for s in sources),
            ],
        },
    }
