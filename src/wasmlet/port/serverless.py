"""Read a Serverless Framework project (`serverless.yml`): its functions with a Python or
Node.js runtime (`provider` settings applied: `runtime`, `environment`, `memorySize`,
`timeout`; each function's own win) and their HTTP events: `httpApi` (HTTP API, payload 2.0,
or 1.0 with `provider.httpApi.payload`), `http` (REST API, payload 1.0, stage
`provider.stage`), `alb`, and function URLs (`url`). Variables (`${...}`): slsvars.py.

What is not ported is noted with where it is and why: other runtimes, non-HTTP events,
routes behind an authorizer or API key (skipped unless `without_auth`), layers, plugins,
`resources`, variables without a value. Bad values are `PortError`s naming the file, the key
and the value. The functions' code is the service's directory, as the framework packages it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cfn import PortError, Resolver, load_yaml, resolved_strings
from .handlers import handler_problem, language, missing_handler, unsupported_runtime
from .model import (
    ALB,
    ALB_MULTI,
    FUNCTION_URL,
    HTTP_API,
    HTTP_API_V1,
    REST,
    HttpEvent,
    LambdaFunction,
    Note,
    Project,
)
from .sam import api_method, api_path, kebab, served
from .slsvars import Unresolved, Variables

FILES = ("serverless.yml", "serverless.yaml", "serverless.json")
_OTHER_EVENTS = {
    "websocket", "s3", "schedule", "sns", "sqs", "stream", "alexaSkill", "alexaSmartHome",
    "iot", "iotFleetProvisioning", "cloudwatchEvent", "cloudwatchLog", "cognitoUserPool",
    "eventBridge", "msk", "activemq", "rabbitmq", "kafka", "cloudFront",
}  # fmt: skip
_HTTP_EVENTS = ("httpApi", "http", "alb")
# Plugins whose work wasmlet's build does itself.
_BUILT_IN = {
    "serverless-python-requirements": "wasmlet installs requirements.txt itself",
    "serverless-esbuild": "wasmlet bundles with esbuild itself (TypeScript included)",
    "serverless-plugin-typescript": "wasmlet bundles with esbuild itself (TypeScript included)",
    "serverless-offline": "`wasmlet up` serves the functions locally",
}
_ALB_PATH = re.compile(r"/[A-Za-z0-9._~/{}-]*(/\*)?|\*")


def read_serverless(
    path: Path,
    *,
    stage: str | None = None,
    region: str | None = None,
    without_auth: bool = False,
) -> Project:
    file = path.name
    config = _load(path)
    base = path.resolve().parent
    provider = config.get("provider") or {}
    if not isinstance(provider, dict) or provider.get("name", "aws") != "aws":
        shown = provider.get("name") if isinstance(provider, dict) else provider
        raise PortError(f"{file}: provider.name: {shown!r} is not supported: wasmlet ports aws")
    given = {k: v for k, v in (("stage", stage), ("region", region)) if v is not None}
    variables = Variables(config, base, file, given)
    for key in ("stage", "region"):
        value = given.get(key) or provider.get(key) or getattr(variables, key)
        setattr(variables, key, _text(variables, value, f"provider.{key}", file))
    stage_, region_ = variables.stage, variables.region
    service = _text(variables, config.get("service"), "service", file)
    project = Project(
        source=path.resolve(),
        name=kebab(service),
        description=f"{service} (Serverless Framework, stage {stage_})",
        region=region_,
        kind="serverless",
    )
    reader = _Reader(config, file, base, variables, project, without_auth, service, stage_)
    reader.top_level()
    functions = config.get("functions") or {}
    if not isinstance(functions, dict):
        raise PortError(f"{file}: functions: expected a mapping of functions")
    for key, spec in functions.items():
        function = reader.function(str(key), spec)
        if function is not None:
            project.functions.append(function)
    return project


def find(given: Path | None) -> Path:
    """The project file: `given`, or serverless.yml (.yaml, .json) in the current directory."""
    if given is not None:
        if not given.is_file():
            raise PortError(f"{given}: no such file")
        return given
    for name in FILES:
        if Path(name).is_file():
            return Path(name)
    for name in ("serverless.ts", "serverless.js"):
        if Path(name).is_file():
            raise PortError(
                f"{name}: a configuration in code is not supported: wasmlet reads "
                "serverless.yml, serverless.yaml or serverless.json"
            )
    raise PortError("no serverless.yml, serverless.yaml or serverless.json here: name the file")


def _load(path: Path) -> dict[str, Any]:
    data = load_yaml(path)
    if not isinstance(data, dict) or "service" not in data:
        raise PortError(f"{path.name}: service: missing (is this a Serverless Framework project?)")
    return data


def _text(variables: Variables, value: object, where: str, file: str) -> str:
    try:
        resolved = variables.resolve(value)
    except Unresolved as e:
        raise PortError(f"{file}: {where}: {e.variable} cannot be resolved: {e.why}") from None
    if isinstance(resolved, dict):
        resolved = resolved.get("name")  # `service: {name: ...}` (framework v1)
    if not isinstance(resolved, str | int | float) or isinstance(resolved, bool) or resolved == "":
        raise PortError(f"{file}: {where}: expected a string, got {resolved!r}")
    return str(resolved)


@dataclass
class _Reader:
    config: dict[str, Any]
    file: str
    base: Path  # the service's directory: every function's code
    vars: Variables
    project: Project
    without_auth: bool
    service: str
    stage: str
    provider_env: dict[str, str] | None = None  # resolved once (and noted once)

    def __post_init__(self) -> None:
        self.notes = self.project.notes
        self.provider: dict[str, Any] = self.config.get("provider") or {}
        resources = (self.config.get("resources") or {}).get("Resources") or {}
        self.cfn = Resolver(
            {"Resources": resources},
            self.file,
            region=self.project.region,
            stack_name=f"{self.service}-{self.stage}",
            overrides={},
            notes=self.notes,
            other_resources="a resource of the stack; wasmlet creates no AWS resources",
        )

    def note(self, where: str, what: str, why: str) -> None:
        self.notes.append(Note(f"{self.file}: {where}", what, why))

    def fail(self, where: str, problem: str) -> PortError:
        return PortError(f"{self.file}: {where}: {problem}")

    def value(self, value: object, where: str) -> Any:
        """`value` with its variables resolved; None (noted) when one has no value."""
        try:
            return self.vars.resolve(value)
        except Unresolved as e:
            self.note(where, f"{e.variable} is not resolved", f"{e.why}; it is not set")
            return None

    def string(self, value: object, where: str) -> str | None:
        resolved = self.value(value, where)
        return None if resolved is None else self.cfn.string(resolved, where)

    def top_level(self) -> None:
        for plugin in self._list(self.config.get("plugins"), "plugins"):
            why = _BUILT_IN.get(str(plugin), "plugins are not run by wasmlet")
            self.note("plugins", f"plugin {plugin}", why)
        if self.config.get("layers"):
            self.note("layers", "layers", "not ported: put their code in the service")
        resources = (self.config.get("resources") or {}).get("Resources") or {}
        if resources:
            shown = ", ".join(f"{k} ({(v or {}).get('Type', '?')})" for k, v in resources.items())
            self.note("resources", shown, "wasmlet creates no AWS resources")
        if self.config.get("useDotenv"):
            self.note("useDotenv", ".env files", "not read: set the variables when porting")

    def _list(self, value: object, where: str) -> list[Any]:
        if value is None:
            return []
        if isinstance(value, dict) and "modules" in value:
            value = value["modules"]  # plugins: {localPath, modules}
        if not isinstance(value, list):
            raise self.fail(where, "expected a list")
        return value

    def _setting(self, spec: dict[str, Any], key: str, at: str) -> Any:
        if key in spec:
            return self.value(spec[key], f"{at}.{key}")
        if key in self.provider:
            return self.value(self.provider[key], f"provider.{key}")
        return None

    def function(self, key: str, spec: object) -> LambdaFunction | None:
        at = f"functions.{key}"
        if not isinstance(spec, dict):
            raise self.fail(at, "expected a mapping (handler, events, ...)")
        if "image" in spec:
            self.note(
                f"{at}.image", "a container image", "container image functions are not ported"
            )
            return None
        runtime = self._setting(spec, "runtime", at)
        if not isinstance(runtime, str):
            raise self.fail(f"{at}.runtime", "missing, and no provider.runtime (e.g. nodejs22.x)")
        if language(runtime) is None:
            where = f"{at}.runtime" if "runtime" in spec else f"provider.runtime (for {at})"
            self.note(where, f"{runtime!r} is not supported", unsupported_runtime(runtime))
            return None
        handler = self.value(spec.get("handler"), f"{at}.handler")
        if not isinstance(handler, str) or not handler:
            raise self.fail(f"{at}.handler", "missing (e.g. handler: handler.hello)")
        problem = handler_problem(runtime, handler) or missing_handler(runtime, handler, self.base)
        if problem is not None:
            raise self.fail(
                f"{at}.handler", problem if "'" in problem else f"{handler!r}: {problem}"
            )
        name = self.value(spec.get("name"), f"{at}.name") if "name" in spec else None
        function = LambdaFunction(
            logical_id=key,
            name=str(name or f"{self.service}-{self.stage}-{key}"),
            where=f"{self.file}: {at}",
            runtime=runtime,
            handler=handler,
            code_dir=self.base,
            environment=self._environment(spec, at),
            memory_mb=self._number(spec, "memorySize", at, 1024, 128, 10240),
            timeout=self._number(spec, "timeout", at, 6, 1, 900),
        )
        if spec.get("layers"):
            self.note(f"{at}.layers", "layers", "not ported: put their code in the service")
        for i, event in enumerate(self._list(spec.get("events"), f"{at}.events")):
            function.events += self._event(event, f"{at}.events[{i}]")
        function.events += self._url(spec.get("url"), f"{at}.url")
        if not function.events:
            self.note(at, "the function has no HTTP event", "wasmlet ports HTTP functions")
            return None
        return function

    def _environment(self, spec: dict[str, Any], at: str) -> dict[str, str]:
        if self.provider_env is None:  # resolved once: its notes once
            self.provider_env = self._variables(self.provider, "provider")
        return {**self.provider_env, **self._variables(spec, at)}

    def _variables(self, spec: dict[str, Any], at: str) -> dict[str, str]:
        values = spec.get("environment") or {}
        if not isinstance(values, dict):
            raise self.fail(f"{at}.environment", "expected a mapping")
        return resolved_strings(values, f"{at}.environment", self.string)

    def _number(
        self, spec: dict[str, Any], key: str, at: str, default: int, low: int, high: int
    ) -> int:
        value = self._setting(spec, key, at)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
            raise self.fail(
                f"{at}.{key}", f"{value!r}: expected a whole number from {low} to {high}"
            )
        if not low <= int(value) <= high:
            raise self.fail(
                f"{at}.{key}", f"{value!r}: expected a whole number from {low} to {high}"
            )
        return int(value)

    def _event(self, event: object, at: str) -> list[HttpEvent]:
        if not isinstance(event, dict) or len(event) != 1:
            raise self.fail(at, "expected one event type with its settings (e.g. httpApi: ...)")
        ((kind, raw),) = event.items()
        at = f"{at}.{kind}"
        if kind in _OTHER_EVENTS:
            self.note(at, f"{kind} event", "not an HTTP event; wasmlet serves HTTP events only")
            return []
        if kind not in _HTTP_EVENTS:
            raise self.fail(
                at,
                f"{kind!r} is not an event type of the Serverless Framework (HTTP: "
                f"{', '.join(_HTTP_EVENTS)}; others: {', '.join(sorted(_OTHER_EVENTS))})",
            )
        settings = self.value(raw, at)
        if settings is None:
            return []
        if kind == "alb":
            return self._alb(settings, at)
        rest = kind == "http"
        if isinstance(settings, str):
            if not rest and settings.strip() == "*":
                return [self._http(HTTP_API_V1 if self._v1() else HTTP_API, "", None, at)]
            verb, _, route = settings.strip().partition(" ")
            settings = {"method": verb, "path": route.strip()}
        if not isinstance(settings, dict):
            raise self.fail(at, f"expected 'METHOD /path' or a mapping, got {settings!r}")
        if self._guarded(settings, at, rest):
            return []
        if settings.get("cors"):
            self.note(f"{at}.cors", "CORS", "wasmlet adds no CORS headers or OPTIONS answers")
        kind_ = REST if rest else (HTTP_API_V1 if self._v1() else HTTP_API)
        path = self._path(settings.get("path"), f"{at}.path", rest)
        method = self._method(settings.get("method"), f"{at}.method")
        return [self._http(kind_, path, method, at)]

    def _http(self, kind: str, path: str, method: str | None, at: str) -> HttpEvent:
        stage = self.stage if kind == REST else "$default"
        return HttpEvent(f"{self.file}: {at}", kind, path, method, stage)

    def _v1(self) -> bool:
        settings = self.provider.get("httpApi") or {}
        return str(self.value(settings.get("payload", "2.0"), "provider.httpApi.payload")) == "1.0"

    def _guarded(self, settings: dict[str, Any], at: str, rest: bool) -> bool:
        """Whether the route needs an authorizer or API key; noted when it does."""
        authorizer = settings.get("authorizer")
        if authorizer is not None:
            name: object = (
                authorizer.get("name") or authorizer.get("type")
                if isinstance(authorizer, dict)
                else authorizer
            )
            guard = f"authorizer {name}"
        elif rest and settings.get("private"):
            guard = "an API key (private: true)"
        else:
            return False
        self.note(
            at,
            f"the route requires {guard}, {served(self.without_auth)}",
            "wasmlet does not enforce API Gateway auth",
        )
        return not self.without_auth

    def _path(self, value: object, at: str, rest: bool) -> str:
        if rest and isinstance(value, str) and not value.startswith("/"):
            value = "/" + value  # `http` paths may leave the slash out
        try:
            return api_path(value)
        except ValueError as e:
            raise self.fail(at, str(e)) from None

    def _method(self, value: object, at: str) -> str | None:
        try:
            return api_method("any" if value == "*" else value)
        except ValueError as e:
            raise self.fail(at, f"{e} (or *)") from None

    def _alb(self, settings: object, at: str) -> list[HttpEvent]:
        conditions = settings.get("conditions") if isinstance(settings, dict) else None
        if not isinstance(conditions, dict) or "path" not in conditions:
            raise self.fail(f"{at}.conditions.path", "missing (an ALB event needs conditions.path)")
        assert isinstance(settings, dict)
        kind = ALB_MULTI if settings.get("multiValueHeaders") else ALB
        other = sorted(set(conditions) - {"path", "method"})
        if other:
            self.note(
                f"{at}.conditions", f"conditions {', '.join(other)}", "not checked by wasmlet"
            )
        paths = conditions["path"] if isinstance(conditions["path"], list) else [conditions["path"]]
        methods = conditions.get("method") or [None]
        events = []
        for pattern in paths:
            if not isinstance(pattern, str) or not _ALB_PATH.fullmatch(pattern) or "{" in pattern:
                why = "only exact paths, /prefix/* and * are ported"
                self.note(f"{at}.conditions.path", f"path pattern {pattern!r}", why)
                continue
            path = "/{proxy+}" if pattern == "*" else pattern.replace("/*", "/{proxy+}")
            for method in methods if isinstance(methods, list) else [methods]:
                m = self._method(method, f"{at}.conditions.method") if method else None
                events.append(HttpEvent(f"{self.file}: {at}", kind, path, m))
        return events

    def _url(self, value: object, at: str) -> list[HttpEvent]:
        settings = self.value(value, at)
        if not settings:
            return []
        auth = settings.get("authorizer") if isinstance(settings, dict) else None
        if auth is not None:
            self.note(
                at,
                f"authorizer {auth}, {served(self.without_auth)}",
                "wasmlet does not check SigV4",
            )
            if not self.without_auth:
                return []
        return [HttpEvent(f"{self.file}: {at}", FUNCTION_URL, "", None)]
