"""What Azure's Python worker and the Functions host do with an HTTP function, in the
component: index the app's functions (v1: `function.json` per folder, imported as
`__app__.<Folder>`; v2: the `FunctionApp` of `function_app.py`, indexed by the real
`azure-functions` library), route requests by the functions' route templates and methods,
and call each function with the real library's `HttpRequest` (built by its own converter
from the request data the host would send) and `HttpResponse` (read by its converter).

`App.load` runs at build time (componentize-py imports the entry module then): functions
are imported and indexed once, as a warm worker would have them, and a function that cannot
be imported fails the build with Python's error.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import logging
import os
import random
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import azure.functions as func
from azure.functions import meta
from azure.functions.http import HttpRequestConverter, HttpResponseConverter
from wasmlet_lambda.app import App as LambdaApp
from wasmlet_lambda.app import _request_id
from wasmlet_lambda.events import Request
from wasmlet_lambda.responses import Response

from .routes import RouteError, Segment, match, parse, precedence

_KEYED = ("function", "admin", "system")  # auth levels that need a key on Azure


class AzureInitError(Exception):
    """A function that cannot be imported or indexed (fails the build)."""


@dataclass(frozen=True)
class Function:
    """A v1 function: its folder (a package under the app root) and function.json."""

    script: str  # the module under the app root: "HttpExample" or "HttpExample.main"
    entry: str = "main"  # function.json's entryPoint
    bindings: tuple[Mapping[str, Any], ...] = ()


@dataclass
class _Served:
    """An indexed HTTP function, as the host routes to it."""

    name: str
    call: Callable[..., Any]
    template: str
    segments: tuple[Segment, ...]
    methods: frozenset[str]  # upper-case; empty: any
    auth: str
    trigger: str  # the trigger binding's name (the request parameter)
    output: str  # the http output binding's name ("$return" or e.g. "res")
    context: str | None  # the parameter that gets the Context, if any
    directory: str = ""
    key: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.key = precedence(self.segments)


class _Context(func.Context):
    """azure.functions.Context, as the worker fills it."""

    def __init__(self, invocation_id: str, served: _Served, traceparent: str) -> None:
        self._id = invocation_id
        self._served = served
        self._trace = types.SimpleNamespace(trace_parent=traceparent, trace_state="", attributes={})
        self._retry = types.SimpleNamespace(retry_count=0, max_retry_count=0, exception=None)
        self._local = threading.local()

    @property
    def invocation_id(self) -> str:
        return self._id

    @property
    def thread_local_storage(self) -> Any:
        return self._local

    @property
    def function_name(self) -> str:
        return self._served.name

    @property
    def function_directory(self) -> str:
        return self._served.directory

    @property
    def trace_context(self) -> Any:
        return self._trace

    @property
    def retry_context(self) -> Any:
        return self._retry


class _Out(func.Out):  # type: ignore[type-arg]
    """An output parameter (`res: func.Out[func.HttpResponse]`)."""

    def __init__(self) -> None:
        self.value: Any = None

    def set(self, val: Any) -> None:
        self.value = val

    def get(self) -> Any:
        return self.value


class App:
    """The functions of one Azure Functions app (one component)."""

    def __init__(
        self,
        *,
        root: str,
        route_prefix: str = "api",
        functions: Mapping[str, Function] | None = None,
        script: str | None = None,
        environment: Mapping[str, str] | None = None,
        without_auth: bool = False,
    ) -> None:
        self.root = root
        self.prefix = "/" + route_prefix.strip("/") if route_prefix.strip("/") else ""
        self.v1 = dict(functions or {})
        self.script = script  # the v2 module ("function_app"), else None
        self.environment = dict(environment or {})
        self.without_auth = without_auth
        self.served: list[_Served] = []
        self.new_loop: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop

    # -- init (build time) ---------------------------------------------------------------

    def load(self) -> None:
        os.environ.update(self.environment)
        _logging()
        if self.root not in sys.path:
            sys.path.insert(0, self.root)
        package = types.ModuleType("__app__")  # v1 functions are __app__.<Folder>, as on Azure
        package.__path__ = [self.root]
        sys.modules.setdefault("__app__", package)
        found: list[tuple[str, Callable[..., Any], list[Mapping[str, Any]], str]] = []
        for name, function in self.v1.items():
            module = _import(f"__app__.{function.script}", f"the {name} function")
            call = getattr(module, function.entry, None)
            if not callable(call):
                raise AzureInitError(
                    f"FunctionLoadError: cannot load the {name} function: the "
                    f"{function.entry!r} function is not present in {function.script}"
                )
            folder = os.path.join(self.root, function.script.split(".")[0])
            found.append((name, call, list(function.bindings), folder))
        if self.script is not None:
            module = _import(self.script, f"{self.script}.py")
            registers = [v for v in vars(module).values() if isinstance(v, func.FunctionRegister)]
            if not registers:
                raise AzureInitError(
                    f"{self.script}.py: no FunctionApp (app = func.FunctionApp()) at module level"
                )
            for register in registers:
                for fn in register.get_functions():
                    bindings = json.loads(fn.get_function_json())["bindings"]
                    name = fn.get_function_name()
                    found.append((name, fn.get_user_function(), bindings, self.root))
        for name, call, bindings, folder in found:
            served = self._index(name, call, bindings, folder)
            if served is not None:
                self.served.append(served)
        self.served.sort(key=lambda s: s.key)

    def _index(
        self, name: str, call: Callable[..., Any], bindings: list[Mapping[str, Any]], folder: str
    ) -> _Served | None:
        trigger = next((b for b in bindings if str(b.get("type", "")).endswith("Trigger")), None)
        if trigger is None or trigger.get("type") != "httpTrigger":
            kind = trigger.get("type") if trigger else "no trigger"
            print(
                f"wasmlet_azure: function {name} ({kind}) is not served: wasmlet serves "
                "HTTP triggers",
                file=sys.stderr,
            )
            return None
        others = [b for b in bindings if b is not trigger and b.get("type") != "http"]
        if others:
            kinds = ", ".join(f"{b.get('type')} {b.get('name')!r}" for b in others)
            print(
                f"wasmlet_azure: function {name} is not served: its bindings {kinds} are not "
                "supported (wasmlet serves HTTP in and HTTP out)",
                file=sys.stderr,
            )
            return None
        outputs = [b for b in bindings if b.get("type") == "http"]
        output = str(outputs[0].get("name", "$return")) if outputs else "$return"
        template = str(trigger.get("route") or name)
        try:
            segments = parse(template)
        except RouteError as error:
            raise AzureInitError(f"function {name}: {error}") from None
        parameters = inspect.signature(call).parameters
        declared = {str(b.get("name")) for b in bindings if b.get("name") != "$return"}
        context = next(
            (p for p, v in parameters.items() if p == "context" or v.annotation is func.Context),
            None,
        )
        extra = set(parameters) - declared - {context}
        missing = declared - set(parameters)
        if extra or missing:
            side = (
                f"declared in Python but not in function.json: {sorted(extra)}"
                if extra
                else f"declared in function.json but not in Python: {sorted(missing)}"
            )
            raise AzureInitError(
                f"FunctionLoadError: cannot load the {name} function: the following parameters "
                f"are {side}"
            )
        methods = frozenset(str(m).upper() for m in trigger.get("methods") or ())
        auth = str(trigger.get("authLevel") or "function").lower()
        return _Served(
            name, call, template, segments, methods, auth, str(trigger["name"]), output,
            context, folder,
        )  # fmt: skip

    # -- a request ------------------------------------------------------------------------

    def route(self, request: Request) -> tuple[_Served, dict[str, str]] | None:
        """The function serving `request` and its route values, as the host routes."""
        path = request.path
        if self.prefix:
            head = path[: len(self.prefix)]
            if head.lower() != self.prefix.lower() or path[len(self.prefix) :][:1] not in ("", "/"):
                return None
            path = path[len(self.prefix) :]
        for served in self.served:
            values = match(served.segments, path)
            if values is not None and (not served.methods or request.method in served.methods):
                return served, values
        return None

    def invoke(self, request: Request, route: str) -> Response:
        found = self.route(request)
        if found is None:  # no route, or not this method: the host answers 404
            return Response(404, [], b"")
        served, values = found
        if served.auth in _KEYED and not self.without_auth:
            # wasmlet has no function keys: the host's answer to a request without one
            return Response(401, [], b"")
        return self._serve(request, served, values)

    def _serve(self, request: Request, served: _Served, values: dict[str, str]) -> Response:
        started = time.monotonic()
        raw = os.urandom(32)
        invocation_id = _request_id(raw[:16])
        if "random" in sys.modules:  # the snapshot holds one seed: reseed per request
            random.seed(raw[16:])
        kwargs: dict[str, Any] = {served.trigger: _http_request(request, values)}
        if served.context:
            kwargs[served.context] = _Context(
                invocation_id, served, request.last.get("traceparent", "")
            )
        out = None
        if served.output != "$return":
            out = kwargs[served.output] = _Out()
        try:
            result = self._call(served.call, kwargs)
            if out is not None:
                result = out.get()
            return _http_response(result)
        except Exception as error:
            took = (time.monotonic() - started) * 1000
            print(
                f"Executed 'Functions.{served.name}' (Failed, Id={invocation_id}, "
                f"Duration={took:.0f}ms)\nResult: Failure\nException: "
                f"{type(error).__name__}: {error}\nStack: "
                + "".join(traceback.format_tb(error.__traceback__)),
                file=sys.stderr,
                flush=True,
            )
            return Response(500, [], b"")

    def _call(self, call: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        # the Lambda adapter's call: an awaitable result runs on a loop made for it
        return LambdaApp._call(self, lambda _event, _context: call(**kwargs), None, None)  # type: ignore[arg-type]

    def warm_up(self) -> None:
        """Serve a request at build time through a function that does nothing (not yours),
        so that the snapshot holds this code warm (see wasmlet_lambda's App.warm_up)."""

        def nothing(req: func.HttpRequest) -> func.HttpResponse:
            req.get_json()
            response = func.HttpResponse(b"{}", status_code=201, mimetype="application/json")
            response.headers.add("Set-Cookie", "a=1; Path=/")
            return response

        served = _Served("warm", nothing, "", (), frozenset(), "anonymous", "req", "$return", None)
        sample = Request(
            "POST",
            f"{self.prefix}/warm",
            "a=1&a=2&b=",
            (("host", "localhost"), ("content-type", "application/json"), ("x", "1")),
            b'{"warm": true}',
            "127.0.0.1",
        )
        self.route(sample)
        self._serve(sample, served, {})


def _import(module: str, what: str) -> types.ModuleType:
    try:
        return importlib.import_module(module)
    except Exception as error:
        raise AzureInitError(
            f"FunctionLoadError: cannot load {what}: {type(error).__name__}: "
            f"{error}\n{traceback.format_exc()}"
        ) from error


def _http_request(request: Request, values: dict[str, str]) -> func.HttpRequest:
    """The request as the host sends it to the worker (header values and repeated query
    values joined with `,`, empty query values dropped), decoded by the library."""
    headers: dict[str, str] = {}
    for key, value in request.headers:
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    query: dict[str, str] = {}
    for key, value in parse_qsl(request.query, keep_blank_values=True):
        if value:
            query[key] = f"{query[key]},{value}" if key in query else value
    host = request.last.get("host", "localhost")
    url = f"{request.scheme}://{host}{request.path}" + (
        f"?{request.query}" if request.query else ""
    )

    def s(value: str) -> meta.Datum:
        return meta.Datum(value, "string")

    data = {
        "method": s(request.method),
        "url": s(url),
        "headers": {k: s(v) for k, v in headers.items()},
        "query": {k: s(v) for k, v in query.items()},
        "params": {k: s(v) for k, v in values.items()},
        "body": meta.Datum(request.body, "bytes"),
    }
    return HttpRequestConverter.decode(meta.Datum(data, "http"), trigger_metadata=None)  # type: ignore[no-any-return]


def _http_response(result: Any) -> Response:
    """The function's result as the host answers it."""
    if result is None:
        return Response(204, [], b"")
    datum = HttpResponseConverter.encode(result, expected_type=None)
    if datum.type == "string":
        return Response(200, [("content-type", "text/plain; charset=utf-8")], datum.value.encode())
    value = datum.value
    headers = [(k, v.value) for k, v in value["headers"].items()]
    for cookie in value.get("cookies") or ():
        headers += [("set-cookie", morsel.OutputString()) for morsel in cookie.values()]
    return Response(int(value["status_code"].value), headers, bytes(value["body"].value or b""))


def _logging() -> None:
    """The worker sends log records at Information and above to the host's log."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[%(levelname)s] %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
