"""Read an AWS SAM template: its `AWS::Serverless::Function`s with a Python or Node.js runtime
and their HTTP events (`Api`, `HttpApi`, `FunctionUrlConfig`), with `Globals.Function`
applied.

Whatever is not ported is noted with where it is and why: other runtimes, non-HTTP events,
routes behind an authorizer (not enforced by wasmlet: skipped unless `without_auth`),
layers, code not in the project, other resources. Bad values (a missing `Handler`, a
`Method` that is not one, a `Path` API Gateway would refuse) are `PortError`s naming the
file, the key and the value.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .cfn import PortError, Resolver, load_template, resolved_strings
from .handlers import handler_problem, language, missing_handler, unsupported_runtime
from .model import (
    FUNCTION_URL,
    HTTP_API,
    HTTP_API_V1,
    REST,
    HttpEvent,
    LambdaFunction,
    Project,
)

_METHODS = {"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"}
_ANY = {"ANY", "X-AMAZON-APIGATEWAY-ANY-METHOD"}
# AWS SAM's event source types other than the HTTP ones.
_OTHER_EVENTS = {
    "S3", "SNS", "Kinesis", "DynamoDB", "SQS", "Schedule", "ScheduleV2", "CloudWatchEvent",
    "EventBridgeRule", "CloudWatchLogs", "IoTRule", "AlexaSkill", "Cognito", "MSK", "MQ",
    "SelfManagedKafka", "DocumentDB",
}  # fmt: skip
_SEGMENT = re.compile(r"[^{}/]+|\{[A-Za-z0-9_.-]+\}|\{[A-Za-z0-9_.-]+\+\}")
_IMPLICIT_STAGE = {REST: "Prod", HTTP_API: "$default", HTTP_API_V1: "$default"}
_API_TYPES = {REST: "AWS::Serverless::Api", HTTP_API: "AWS::Serverless::HttpApi"}


def kebab(name: str) -> str:
    """`HelloWorldFunction` → `hello-world-function` (a Spin id)."""
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1-\2", name)
    words = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1-\2", words)
    parts = [p for p in re.split(r"[^a-z0-9]+", words.lower()) if p]
    text = "-".join(parts) or "function"
    return text if text[0].isalpha() else f"fn-{text}"


def read_sam(
    path: Path,
    *,
    region: str = "us-east-1",
    overrides: dict[str, str] | None = None,
    without_auth: bool = False,
) -> Project:
    template = load_template(path)
    file = path.name
    project = Project(
        source=path.resolve(),
        name=kebab(path.resolve().parent.name),
        description=next(iter(str(template.get("Description") or "").strip().splitlines()), ""),
        region=region,
    )
    resolver = Resolver(
        template,
        file,
        region=region,
        stack_name=project.name,
        overrides=overrides or {},
        notes=project.notes,
    )
    reader = _Reader(template, file, path.resolve().parent, resolver, without_auth)
    other: list[str] = []
    for logical_id, resource in template["Resources"].items():
        kind = resource.get("Type") if isinstance(resource, dict) else None
        where = f"Resources.{logical_id}"
        if kind == "AWS::Serverless::Function":
            function = reader.function(str(logical_id), resource)
            if function is not None:
                project.functions.append(function)
        elif kind in ("AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion"):
            resolver.note(where, f"layer ({kind})", "layers are not ported; see the functions")
        elif kind == "AWS::Lambda::Function":
            resolver.note(
                where, kind, "only AWS::Serverless::Function resources are ported (AWS SAM)"
            )
        elif kind not in _API_TYPES.values():
            other.append(f"{logical_id} ({kind})")
    if other:
        resolver.note(
            "Resources",
            ", ".join(other),
            "wasmlet creates no AWS resources; code calling them (boto3, the AWS SDK) will fail",
        )
    return project


class _Reader:
    def __init__(
        self,
        template: dict[str, Any],
        file: str,
        base: Path,
        resolver: Resolver,
        without_auth: bool,
    ) -> None:
        self.template = template
        self.file = file
        self.base = base
        self.r = resolver
        self.without_auth = without_auth
        globals_ = template.get("Globals") or {}
        self.globals: dict[str, Any] = dict(globals_.get("Function") or {})

    def where(self, at: str) -> str:
        return f"{self.file}: {at}"

    def fail(self, where: str, problem: str) -> PortError:
        return PortError(f"{self.file}: {where}: {problem}")

    def _properties(self, resource: dict[str, Any], where: str) -> dict[str, Any]:
        props = resource.get("Properties") or {}
        if not isinstance(props, dict):
            raise self.fail(f"{where}.Properties", "expected a mapping")
        merged = {**self.globals, **props}
        env = dict((self.globals.get("Environment") or {}).get("Variables") or {})
        env.update((props.get("Environment") or {}).get("Variables") or {})
        merged["Environment"] = {"Variables": env}
        return merged

    def function(self, logical_id: str, resource: dict[str, Any]) -> LambdaFunction | None:
        where = f"Resources.{logical_id}"
        props = self._properties(resource, where)
        at = f"{where}.Properties"
        if props.get("PackageType") == "Image":
            self.r.note(at, "PackageType: Image", "container image functions are not ported")
            return None
        if "InlineCode" in props:
            self.r.note(at, "InlineCode", "write the code to a file and use CodeUri")
            return None
        runtime = (
            self.r.string(props.get("Runtime"), f"{at}.Runtime") if "Runtime" in props else None
        )
        if runtime is None:
            raise self.fail(f"{at}.Runtime", "missing (e.g. Runtime: python3.12)")
        if language(runtime) is None:
            self.r.note(
                f"{at}.Runtime", f"{runtime!r} is not supported", unsupported_runtime(runtime)
            )
            return None
        handler = self._handler(props, runtime, at)
        code_dir = self._code(props, at)
        if code_dir is None:
            return None
        self._check_handler(handler, runtime, code_dir, at)
        name = (
            self.r.string(props["FunctionName"], f"{at}.FunctionName")
            if "FunctionName" in props
            else None
        )
        function = LambdaFunction(
            logical_id=logical_id,
            name=name or logical_id,
            where=f"{self.file}: {where}",
            runtime=runtime,
            handler=handler,
            code_dir=code_dir,
            environment=self._environment(props, at),
            memory_mb=self._number(props, "MemorySize", at, 128, 128, 10240),
            timeout=self._number(props, "Timeout", at, 3, 1, 900),
            preload=self._preload(resource, where),
        )
        if props.get("Layers"):
            self.r.note(
                f"{at}.Layers",
                "layers",
                "not ported: put what the function needs from "
                "a layer in its requirements.txt or its code directory",
            )
        for name_, event in (props.get("Events") or {}).items():
            function.events += self._event(str(name_), event, f"{at}.Events.{name_}")
        function.events += self._url(props, at)
        if not function.events:
            self.r.note(where, "the function has no HTTP event", "wasmlet ports HTTP functions")
            return None
        return function

    def _handler(self, props: dict[str, Any], runtime: str, at: str) -> str:
        handler = (
            self.r.string(props.get("Handler"), f"{at}.Handler") if "Handler" in props else None
        )
        if not handler:
            raise self.fail(f"{at}.Handler", "missing (e.g. Handler: app.lambda_handler)")
        problem = handler_problem(runtime, handler)
        if problem is not None:
            raise self.fail(f"{at}.Handler", problem)
        return handler

    def _code(self, props: dict[str, Any], at: str) -> Path | None:
        uri = props.get("CodeUri", ".")
        if isinstance(uri, dict) or (isinstance(uri, str) and uri.startswith("s3://")):
            self.r.note(f"{at}.CodeUri", f"{uri!r}", "code in S3 is not in the project")
            return None
        text = self.r.string(uri, f"{at}.CodeUri")
        if text is None:
            raise self.fail(f"{at}.CodeUri", f"cannot resolve {uri!r}")
        code = (self.base / text).resolve()
        if not code.is_dir():
            raise self.fail(f"{at}.CodeUri", f"{text!r}: no such directory (next to {self.file})")
        return code

    def _check_handler(self, handler: str, runtime: str, code: Path, at: str) -> None:
        missing = missing_handler(runtime, handler, code)
        if missing is not None:
            raise self.fail(
                f"{at}.Handler", f"{handler!r}: {missing} in {shown_dir(code, self.base)}"
            )

    def _environment(self, props: dict[str, Any], at: str) -> dict[str, str]:
        variables = props["Environment"]["Variables"]
        if not isinstance(variables, dict):
            raise self.fail(f"{at}.Environment.Variables", "expected a mapping")
        return resolved_strings(variables, f"{at}.Environment.Variables", self.r.string)

    def _number(
        self, props: dict[str, Any], key: str, at: str, default: int, low: int, high: int
    ) -> int:
        if key not in props:
            return default
        text = self.r.string(props[key], f"{at}.{key}")
        if text is None or not text.isdigit() or not low <= int(text) <= high:
            raise self.fail(
                f"{at}.{key}", f"{props[key]!r}: expected a whole number from {low} to {high}"
            )
        return int(text)

    def _preload(self, resource: dict[str, Any], where: str) -> tuple[str, ...]:
        meta = (resource.get("Metadata") or {}).get("Wasmlet") or {}
        preload = meta.get("Preload") or []
        if not isinstance(preload, list) or not all(
            isinstance(m, str) and all(p.isidentifier() for p in m.split(".")) for m in preload
        ):
            raise self.fail(f"{where}.Metadata.Wasmlet.Preload", "expected a list of module names")
        return tuple(preload)

    def _event(self, name: str, event: object, at: str) -> list[HttpEvent]:
        if not isinstance(event, dict) or not isinstance(event.get("Type"), str):
            raise self.fail(f"{at}.Type", "missing (an event has a Type and Properties)")
        kind, props = event["Type"], event.get("Properties") or {}
        if kind in _OTHER_EVENTS:
            self.r.note(at, f"{kind} event", "not an HTTP event; wasmlet serves HTTP events only")
            return []
        if kind not in ("Api", "HttpApi"):
            raise self.fail(
                f"{at}.Type",
                f"{kind!r} is not an event type of AWS SAM (HTTP: Api, HttpApi; others: "
                f"{', '.join(sorted(_OTHER_EVENTS))})",
            )
        event_kind = REST if kind == "Api" else HTTP_API
        if kind == "HttpApi" and str(props.get("PayloadFormatVersion", "2.0")) == "1.0":
            event_kind = HTTP_API_V1
        api = self._api(props, "RestApiId" if kind == "Api" else "ApiId", event_kind, at)
        if self._guarded(props, api, at) and not self.without_auth:
            return []
        stage = self._stage(api, event_kind, at)
        if kind == "HttpApi" and "Path" not in props and "Method" not in props:
            return [HttpEvent(self.where(at), event_kind, "", None, stage)]
        try:
            path = api_path(props.get("Path"))
        except ValueError as e:
            raise self.fail(f"{at}.Properties.Path", str(e)) from None
        try:
            method = api_method(props.get("Method"))
        except ValueError as e:
            raise self.fail(f"{at}.Properties.Method", str(e)) from None
        return [HttpEvent(self.where(at), event_kind, path, method, stage)]

    def _api(self, props: dict[str, Any], key: str, kind: str, at: str) -> dict[str, Any]:
        ref = props.get(key)
        if ref is None:
            return {}
        name = ref.get("Ref") if isinstance(ref, dict) else ref
        resource = self.template["Resources"].get(name) if isinstance(name, str) else None
        wanted = _API_TYPES[REST if kind == REST else HTTP_API]
        if not isinstance(resource, dict) or resource.get("Type") != wanted:
            raise self.fail(f"{at}.Properties.{key}", f"{ref!r}: expected !Ref to an {wanted}")
        return dict(resource.get("Properties") or {})

    def _stage(self, api: dict[str, Any], kind: str, at: str) -> str:
        if "StageName" not in api:
            return _IMPLICIT_STAGE[kind]
        return (
            self.r.string(api["StageName"], f"{at} (its API's StageName)") or _IMPLICIT_STAGE[kind]
        )

    def _guarded(self, props: dict[str, Any], api: dict[str, Any], at: str) -> bool:
        """Whether the route needs an authorizer or API key; noted when it does."""
        auth = props.get("Auth") or {}
        api_auth = api.get("Auth") or {}
        authorizer = auth.get("Authorizer", api_auth.get("DefaultAuthorizer"))
        guard = None
        if authorizer not in (None, "NONE"):
            guard = f"authorizer {authorizer}"
        elif auth.get("ApiKeyRequired") or api_auth.get("ApiKeyRequired"):
            guard = "an API key"
        if guard is None:
            return False
        self.r.note(
            at,
            f"the route requires {guard}, {served(self.without_auth)}",
            "wasmlet does not enforce API Gateway auth",
        )
        return True

    def _url(self, props: dict[str, Any], at: str) -> list[HttpEvent]:
        config = props.get("FunctionUrlConfig")
        if not config:
            return []
        where = f"{at}.FunctionUrlConfig"
        auth = config.get("AuthType", "NONE") if isinstance(config, dict) else None
        if auth not in ("NONE", "AWS_IAM"):
            raise self.fail(f"{where}.AuthType", f"{auth!r}: expected NONE or AWS_IAM")
        if auth == "AWS_IAM":
            self.r.note(
                where,
                f"AuthType AWS_IAM, {served(self.without_auth)}",
                "wasmlet does not check SigV4",
            )
            if not self.without_auth:
                return []
        return [HttpEvent(self.where(where), FUNCTION_URL, "", None)]


def api_path(value: object) -> str:
    """An API Gateway route path, normalised (`/items/{id}`); ValueError saying what is wrong."""
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError(f"{value!r}: expected a path starting with / (e.g. /items/{{id}})")
    segments = [s for s in value.split("/") if s]
    for i, segment in enumerate(segments):
        if not _SEGMENT.fullmatch(segment) or (segment.endswith("+}") and i != len(segments) - 1):
            raise ValueError(
                f"{value!r}: segment {segment!r} is not a literal, {{name}} or a final {{name+}}"
            )
    return "/" + "/".join(segments)


def api_method(value: object) -> str | None:
    """An HTTP method, upper-case; None for any (`any`, `*`); ValueError when not one."""
    method = str(value).upper() if isinstance(value, str) else None
    if method in _ANY:
        return None
    if method not in _METHODS:
        raise ValueError(
            f"{value!r}: expected an HTTP method ({', '.join(sorted(_METHODS))} or any)"
        )
    return method


def served(without_auth: bool) -> str:
    """How a route that needs auth is ported (for its note)."""
    return "served WITHOUT it (--without-auth)" if without_auth else "not served"


def shown_dir(path: Path, base: Path) -> str:
    return path.relative_to(base).as_posix() + "/" if path.is_relative_to(base) else str(path)
