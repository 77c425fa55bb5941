"""Azure Functions apps as wasmlet reads them: host.json (route prefix), local.settings.json
(the app settings, which become the component's environment; the worker runtime), and the
functions: v1 Python folders with `function.json` (read here), a v2 `function_app.py`
(`azure_python.py`) or a Node.js v4 app (`azure_js.py`); and Azure's route templates as Spin
routes.

What cannot be served is either an error naming the file, the field and the value (a
language wasmlet does not port, a malformed route or binding) or a `Note` in the report (a
timer or queue trigger, a Storage binding, an authLevel that needs keys).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cfn import PortError
from .model import Note
from .sam import kebab

PYTHON_V1 = "python-v1"
PYTHON_V2 = "python-v2"
NODE_V4 = "node-v4"
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE")
AUTH_LEVELS = ("anonymous", "function", "admin")
KEYED = ("function", "admin")
# The route constraints the adapters check (wasmlet_azure/routes.py, lib/routes.js).
CONSTRAINTS = (
    "int",
    "long",
    "bool",
    "guid",
    "alpha",
    "double",
    "float",
    "decimal",
    "datetime",
    "required",
    "minlength",
    "maxlength",
    "length",
    "min",
    "max",
    "range",
    "regex",
)
_PARAM = re.compile(r"\{(\*{0,2})([A-Za-z_]\w*)((?::[^{}=?]+(?:\([^)]*\))?)*)(\?|=[^{}]*)?\}")
_OTHER_LANGUAGES = {
    "dotnet": ".NET (C#, F#)",
    "dotnet-isolated": ".NET (C#, F#)",
    "java": "Java",
    "powershell": "PowerShell",
    "custom": "custom handlers",
}
SUPPORTED = (
    "wasmlet ports Python apps (the v1 model, function.json folders, and the v2 model, "
    "function_app.py) and Node.js apps of the v4 model (@azure/functions 4.x)"
)


@dataclass
class AzureFunction:
    """An HTTP function to serve."""

    name: str
    where: str  # "Items/function.json" or "function_app.py:12"
    route: str | None  # Azure's route template (under the prefix); None: known at build time
    methods: tuple[str, ...] = ()  # upper-case; empty: any method
    auth: str = "function"
    script: str = ""  # v1: its module under the app root ("Items" or "Items.main")
    entry: str = "main"  # v1: function.json's entryPoint
    bindings: tuple[dict[str, Any], ...] = ()  # v1: function.json's bindings


@dataclass
class AzureApp:
    """An Azure Functions app read by the port."""

    root: Path  # absolute
    name: str  # the Spin app and component id
    model: str  # PYTHON_V1, PYTHON_V2 or NODE_V4
    route_prefix: str
    environment: dict[str, str]
    functions: list[AzureFunction] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    js_files: list[Path] = field(default_factory=list)  # NODE_V4: the modules `main` names
    without_auth: bool = False


def load_json(path: Path, root: Path) -> Any:
    """A JSON file of the app, or an error naming it and where it is malformed."""
    rel = path.relative_to(root).as_posix()
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as error:
        raise PortError(f"{rel}: line {error.lineno} column {error.colno}: {error.msg}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise PortError(f"{rel}: cannot be read: {error}") from None


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PortError(f"{where}: expected an object, got {json.dumps(value)}")
    return value


def read_app(root: Path, *, without_auth: bool = False) -> AzureApp:
    """host.json and local.settings.json of the app in `root`, and its model (the functions
    are read by `read_v1_functions`, `azure_python.read_v2` or `azure_js.read_v4`)."""
    root = root.resolve()
    if not (root / "host.json").is_file():
        raise PortError(f"{root}: no host.json: not an Azure Functions app directory")
    host = _object(load_json(root / "host.json", root), "host.json")
    version = host.get("version")
    if version != "2.0":
        raise PortError(
            f"host.json: version: {json.dumps(version)}: wasmlet ports apps of Functions "
            'runtime 2.x and later (version "2.0")'
        )
    for key in ("customHandler", "httpWorker"):
        if key in host:
            raise PortError(f"host.json: {key}: custom handlers are not supported: {SUPPORTED}")
    http = _object(
        _object(host.get("extensions", {}), "host.json: extensions").get("http", {}),
        "host.json: extensions.http",
    )
    prefix = http.get("routePrefix", "api")
    if not isinstance(prefix, str) or not re.fullmatch(r"[\w./-]*", prefix):
        raise PortError(
            f"host.json: extensions.http.routePrefix: {json.dumps(prefix)}: expected a path "
            'such as "api" (or "" for none)'
        )
    values = _settings(root)
    runtime = values.get("FUNCTIONS_WORKER_RUNTIME", "").lower() or _infer_runtime(root)
    where = "local.settings.json: Values.FUNCTIONS_WORKER_RUNTIME"
    if runtime in _OTHER_LANGUAGES:
        raise PortError(
            f"{where}: {json.dumps(values.get('FUNCTIONS_WORKER_RUNTIME', runtime))}: "
            f"{_OTHER_LANGUAGES[runtime]} is not supported: {SUPPORTED}"
        )
    if runtime == "python":
        model = PYTHON_V2 if (root / "function_app.py").is_file() else PYTHON_V1
    elif runtime == "node":
        if not (root / "package.json").is_file():
            raise PortError(f"{root}: a Node.js app without package.json: {SUPPORTED}")
        model = NODE_V4
    else:
        raise PortError(f"{where}: {json.dumps(runtime)} is not a worker runtime: {SUPPORTED}")
    values.setdefault("FUNCTIONS_WORKER_RUNTIME", runtime)
    return AzureApp(
        root, kebab(root.name), model, prefix.strip("/"), values, without_auth=without_auth
    )


def _settings(root: Path) -> dict[str, str]:
    path = root / "local.settings.json"
    if not path.is_file():
        return {}
    data = _object(load_json(path, root), "local.settings.json")
    if data.get("IsEncrypted") is True:
        raise PortError(
            "local.settings.json: IsEncrypted: true: the settings are encrypted; decrypt them "
            "(func settings decrypt) before porting"
        )
    values = _object(data.get("Values", {}), "local.settings.json: Values")
    out = {}
    for key, value in values.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        if not isinstance(value, str | int | float):
            raise PortError(
                f"local.settings.json: Values.{key}: {json.dumps(value)}: app settings are strings"
            )
        out[key] = str(value)
    return out


def _infer_runtime(root: Path) -> str:
    """The worker runtime of an app whose local.settings.json does not say it."""
    for pattern, runtime in (
        ("*.csproj", "dotnet"),
        ("*.fsproj", "dotnet"),
        ("pom.xml", "java"),
        ("build.gradle", "java"),
        ("profile.ps1", "powershell"),
    ):
        found = next(root.glob(pattern), None)
        if found is not None:
            raise PortError(
                f"{found.name}: a {_OTHER_LANGUAGES[runtime]} app is not supported: {SUPPORTED}"
            )
    if (root / "function_app.py").is_file() or (root / "requirements.txt").is_file():
        return "python"
    if (root / "package.json").is_file():
        return "node"
    for folder in sorted(p for p in root.iterdir() if (p / "function.json").is_file()):
        if any(folder.glob("*.py")):
            return "python"
        if any(folder.glob("*.ps1")):
            raise PortError(f"{folder.name}/run.ps1: PowerShell is not supported: {SUPPORTED}")
    raise PortError(
        "local.settings.json: Values.FUNCTIONS_WORKER_RUNTIME is not set and the app has "
        f"neither function_app.py, requirements.txt nor package.json: {SUPPORTED}"
    )


# --- routes ---------------------------------------------------------------------------------


def spin_routes(prefix: str, template: str | None, where: str) -> list[str]:
    """The Spin routes that reach an Azure route template (checked as the adapters parse
    it): `items/{id:int}` → `/api/items/:id`; `files/{*path}` → `/api/files/...`; an
    optional last parameter (`{id?}`, `{id=1}`) gives the route with and without it;
    None (a route known only at build time) → `/api/...`."""
    base = f"/{prefix}" if prefix else ""
    if template is None:
        return [f"{base}/..."]
    out = [base]
    parts = [p for p in template.strip("/").split("/") if p]
    for index, part in enumerate(parts):
        if "{" not in part and "}" not in part:
            if not re.fullmatch(r"[\w.~!$&'()+,;=@%-]+", part):
                raise PortError(f"{where}: {json.dumps(template)}: segment {part!r} is not a path")
            out = [r + "/" + part for r in out]
            continue
        m = _PARAM.fullmatch(part)
        if m is None:
            raise PortError(
                f"{where}: {json.dumps(template)}: segment {part!r} is not supported (a "
                "segment is a literal or one {parameter})"
            )
        stars, name, constraints, tail = m.groups()
        for c in re.findall(r":(\w+)", re.sub(r"\([^)]*\)", "", constraints or "")):
            if c not in CONSTRAINTS:
                raise PortError(
                    f"{where}: {json.dumps(template)}: route constraint {c!r} is not supported "
                    f"(supported: {', '.join(CONSTRAINTS)})"
                )
        if stars:
            if index != len(parts) - 1:
                raise PortError(f"{where}: {json.dumps(template)}: {part} must be the last segment")
            return [r + "/..." for r in out]
        safe = re.sub(r"\W", "_", name)
        with_param = [f"{r}/:{safe}" for r in out]
        if tail:  # optional or defaulted: the route without it reaches it too
            if index != len(parts) - 1:
                raise PortError(
                    f"{where}: {json.dumps(template)}: only the last parameter may be optional"
                )
            return [r or "/" for r in out] + with_param
        out = with_param
    return [r or "/" for r in out]


def check_methods(methods: Any, where: str) -> tuple[str, ...]:
    if methods is None:
        return ()
    if not isinstance(methods, list) or not all(isinstance(m, str) for m in methods):
        raise PortError(f"{where}: {json.dumps(methods)}: expected a list of HTTP methods")
    upper = tuple(m.upper() for m in methods)
    for m in upper:
        if m not in METHODS:
            raise PortError(f"{where}: {m!r}: expected an HTTP method ({', '.join(METHODS)})")
    return upper


def check_auth(level: Any, where: str, default: str = "function") -> str:
    if level is None:
        return default
    if not isinstance(level, str) or level.lower() not in AUTH_LEVELS:
        raise PortError(f"{where}: {json.dumps(level)}: expected {', '.join(AUTH_LEVELS)}")
    return level.lower()


def auth_note(function: AzureFunction, without_auth: bool) -> Note | None:
    """What an authLevel that needs a key means in wasmlet."""
    if function.auth not in KEYED:
        return None
    if without_auth:
        why = "served WITHOUT any key check (--without-auth)"
    else:
        why = (
            "wasmlet has no function keys: its requests are answered 401, as Azure answers a "
            "request without a key; --without-auth serves it without a check"
        )
    return Note(function.where, f"authLevel {function.auth!r} of function {function.name}", why)


# --- v1 Python: a folder with function.json per function ------------------------------------


def read_v1_functions(app: AzureApp) -> None:
    """The functions of a v1 app: each folder with a function.json."""
    folders = sorted(p for p in app.root.iterdir() if (p / "function.json").is_file())
    for folder in folders:
        where = f"{folder.name}/function.json"
        data = _object(load_json(folder / "function.json", app.root), where)
        if data.get("disabled") in (True, "true"):
            app.notes.append(Note(where, f"function {folder.name}", "disabled: not ported"))
            continue
        function = _v1_function(app, folder, data, where)
        if function is not None:
            app.functions.append(function)


def _v1_function(
    app: AzureApp, folder: Path, data: dict[str, Any], where: str
) -> AzureFunction | None:
    bindings = data.get("bindings")
    if not isinstance(bindings, list) or not bindings:
        raise PortError(f"{where}: bindings: expected a list of bindings")
    for i, b in enumerate(bindings):
        b = _object(b, f"{where}: bindings[{i}]")
        for key in ("type", "name"):
            if not isinstance(b.get(key), str):
                raise PortError(f"{where}: bindings[{i}].{key}: missing or not a string")
    triggers = [i for i, b in enumerate(bindings) if b["type"].lower().endswith("trigger")]
    if len(triggers) != 1:
        raise PortError(f"{where}: bindings: expected one trigger, found {len(triggers)}")
    t = triggers[0]
    trigger = bindings[t]
    if trigger["type"] != "httpTrigger":
        app.notes.append(
            Note(
                f"{where}: bindings[{t}].type",
                f"{trigger['type']} of function {folder.name}",
                "not an HTTP trigger: wasmlet serves HTTP triggers (its Redis, MQTT and cron "
                "triggers call components with their own interfaces), not ported",
            )
        )
        return None
    for i, b in enumerate(bindings):
        if i != t and b["type"] != "http":
            app.notes.append(
                Note(
                    f"{where}: bindings[{i}].type",
                    f"{b['type']} binding {b['name']!r} of function {folder.name}",
                    "not supported: wasmlet serves HTTP in and HTTP out bindings only (no "
                    "Azure Storage, Cosmos DB, Service Bus...): the function is not ported",
                )
            )
            return None
    if sum(1 for b in bindings if b["type"] == "http") > 1:
        raise PortError(f"{where}: bindings: more than one http output")
    route = trigger.get("route")
    if route is not None and not isinstance(route, str):
        raise PortError(f"{where}: bindings[{t}].route: {json.dumps(route)}: expected a string")
    template = route if route else folder.name
    spin_routes(app.route_prefix, template, f"{where}: bindings[{t}].route")
    script = data.get("scriptFile", "__init__.py")
    entry = data.get("entryPoint", "main")
    if not isinstance(script, str) or not (folder / script).is_file():
        raise PortError(
            f"{where}: scriptFile: {json.dumps(script)}: no such file in {folder.name}/"
        )
    if Path(script).suffix != ".py" or "/" in script.strip("./"):
        raise PortError(
            f"{where}: scriptFile: {json.dumps(script)}: expected a .py file in the function's "
            "folder"
        )
    if not isinstance(entry, str) or not entry.isidentifier():
        raise PortError(f"{where}: entryPoint: {json.dumps(entry)}: expected a function name")
    stem = Path(script).stem
    return AzureFunction(
        name=folder.name,
        where=where,
        route=template,
        methods=check_methods(trigger.get("methods"), f"{where}: bindings[{t}].methods"),
        auth=check_auth(trigger.get("authLevel"), f"{where}: bindings[{t}].authLevel"),
        script=folder.name if stem == "__init__" else f"{folder.name}.{stem}",
        entry=entry,
        bindings=tuple(bindings),
    )
