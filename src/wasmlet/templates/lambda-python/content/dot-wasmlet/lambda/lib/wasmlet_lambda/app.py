"""The adapter's configuration (`Function`, `Route`, `App`) and one invocation: a request in,
the handler called with its event and context, the response out.

`App.load` runs when the component is built: componentize-py pre-initializes the component
by importing its entry module, and each request starts from that snapshot. So handlers are
imported then, as Lambda imports them in its init phase, with the function's environment
set; and only modules imported then exist at run time (a component has no files to import
from), which is why `load` also imports each function's `preload` modules.
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
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .context import LambdaContext, timeout_seconds
from .events import DEFAULT_STAGE, KINDS, Request, Target, build_event, path_parameters
from .responses import MalformedResult, Response, error_document, failed, no_route, to_response

Handler = Callable[[Any, LambdaContext], Any]
_PLAIN = (dict, list, str, int, float, bool, type(None))  # results that cannot be awaited


@dataclass(frozen=True)
class Function:
    """A Lambda function: its handler and settings."""

    name: str  # FunctionName, else the template's logical id
    handler: str  # "app.lambda_handler" (a module path with dots or slashes, a function)
    memory_mb: int = 128
    timeout: float = 3.0
    environment: Mapping[str, str] = field(default_factory=dict)  # set before it is imported
    overlay: tuple[str, ...] = ()  # variables set at each request (they differ per function)
    code_path: str | None = None  # its python-path entry, when its code has a directory of its own
    preload: tuple[str, ...] = ()  # modules to import at build time beyond the handler's


@dataclass(frozen=True)
class Route:
    """A Spin route of the component and the function that serves it, for some methods."""

    route: str  # as in spin.toml: "/items/:id", "/..."
    function: str  # a key of `App.functions`
    kind: str = "http-api"
    methods: tuple[str, ...] = ()  # upper-case; empty: any method
    path: str = ""  # the API's route path, "/items/{id}"; "" for "$default"
    params: tuple[str, ...] = ()  # the path's parameter names, in order
    stage: str = DEFAULT_STAGE
    strip: bool = False  # the function sees only the path under the route's prefix

    def target(self, method: str, params: dict[str, str] | None, rest: str) -> Target:
        if self.path and self.kind != "function-url":
            key = f"{method if self.methods else 'ANY'} {self.path}"
        else:
            key = "$default"
        return Target(
            kind=self.kind,
            route_key=key,
            resource=self.path or "/{proxy+}",
            path_parameters=params,
            stage=self.stage,
            path=(rest or "/") if self.strip else None,
        )


class LambdaInitError(Exception):
    """A handler that cannot be imported or found (fails the build, as Lambda's init does)."""


class _RequestIdFilter(logging.Filter):
    request_id = ""

    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = _RequestIdFilter.request_id
        return True


class App:
    """The functions and routes one component serves."""

    def __init__(
        self,
        functions: Mapping[str, Function],
        routes: list[Route],
        api_id: str = "wasmlet",
    ) -> None:
        self.functions = dict(functions)
        self.routes: dict[str, list[Route]] = {}
        for route in routes:
            if route.kind not in KINDS:
                raise LambdaInitError(
                    f"route {route.route}: unknown event kind {route.kind!r} "
                    f"(kinds: {', '.join(KINDS)})"
                )
            if route.function not in self.functions:
                raise LambdaInitError(f"route {route.route}: no function {route.function!r}")
            self.routes.setdefault(route.route, []).append(route)
        self.api_id = api_id
        self.handlers: dict[str, Handler] = {}
        self.new_loop: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop

    # -- init (build time) ---------------------------------------------------------------

    def load(self) -> None:
        """Import every function's handler (and its preload modules)."""
        _lambda_logging()
        separate = len({f.code_path for f in self.functions.values()}) > 1
        for key, function in self.functions.items():
            os.environ.update(function.environment)
            self.handlers[key] = _import_handler(function, isolate=separate)

    # -- a request ------------------------------------------------------------------------

    def invoke(self, request: Request, route: str) -> Response:
        """Serve `request`, which the Spin route `route` matched."""
        candidates = self.routes.get(route)
        if not candidates:
            print(f"wasmlet_lambda: no function for route {route}", file=sys.stderr)
            return no_route("http-api")
        chosen = next((r for r in candidates if request.method in r.methods), None)
        chosen = chosen or next((r for r in candidates if not r.methods), None)
        if chosen is None:
            return no_route(candidates[0].kind)
        return self._invoke(request, chosen, self.handlers[chosen.function])

    def _invoke(self, request: Request, chosen: Route, handler: Handler) -> Response:
        function = self.functions[chosen.function]
        now = time.time()
        raw = os.urandom(32)  # one host call: the request id, and a seed for `random`
        request_id = _request_id(raw[:16])
        if chosen.params or chosen.strip:
            params, rest = path_parameters(chosen.route, chosen.params, request.path)
        else:
            params, rest = None, ""
        target = chosen.target(request.method, params, rest)
        event = build_event(
            request,
            target,
            request_id=request_id,
            now=now,
            api_id=self.api_id,
            region=os.environ.get("AWS_REGION") or "us-east-1",
        )
        deadline = int((now + timeout_seconds(function.timeout)) * 1000)
        day = time.strftime("%Y/%m/%d", time.gmtime(now))
        stream = f"{day}/[$LATEST]{request_id.replace('-', '')}"
        defaults = {"name": function.name, "memory": str(function.memory_mb)}
        context = LambdaContext(request_id, deadline, defaults, stream)
        for name in function.overlay:
            os.environ[name] = function.environment[name]
        headers = event.get("headers") or event.get("multiValueHeaders") or {}
        trace = headers.get("x-amzn-trace-id") or headers.get("X-Amzn-Trace-Id")
        os.environ["_X_AMZN_TRACE_ID"] = trace[-1] if isinstance(trace, list) else str(trace)
        _RequestIdFilter.request_id = request_id
        if "random" in sys.modules:  # the snapshot holds one seed: reseed per request
            random.seed(raw[16:])  # 128 fresh bits (seed() would read 2.5 KB more)
        try:
            result = self._call(handler, event, context)
        except Exception as error:  # the handler failed: Lambda's error JSON goes to the log
            print(json.dumps(error_document(error, request_id)), file=sys.stderr, flush=True)
            return failed(target.kind)
        try:
            return to_response(target.kind, result)
        except (TypeError, ValueError) as error:  # what json.dumps refuses
            doc = {"errorMessage": f"Unable to marshal response: {error}"}
            doc |= {"errorType": "Runtime.MarshalError", "requestId": request_id}
            print(json.dumps(doc), file=sys.stderr, flush=True)
        except MalformedResult as error:
            print(
                f"wasmlet_lambda: {function.name}: malformed Lambda proxy response: {error}",
                file=sys.stderr,
                flush=True,
            )
        return failed(target.kind)

    def warm_up(self) -> None:
        """Serve a request on each route's kind at build time, to a handler that does nothing.

        Every request starts from the build's snapshot, so code that first runs during a
        request runs cold each time (CPython's specializing interpreter, lazily compiled
        regular expressions and caches); run here once, the snapshot has it warm. Measured:
        this roughly halves the adapter's time per request (docs/benchmarks.md)."""
        sample = Request(
            "POST",
            "/warm/up%20x",
            "a=1&a=2&b=",
            (
                ("host", "localhost:3000"),
                ("user-agent", "warm-up"),
                ("content-type", "application/json"),
                ("cookie", "a=1; b=2"),
            ),
            b'{"warm": true}',
            "127.0.0.1",
        )
        result = {
            "statusCode": 200,
            "headers": {"content-type": "text/plain"},
            "multiValueHeaders": {"x-warm": ["1", "2"]},
            "cookies": ["a=1"],
            "body": "d2FybQ==",
            "isBase64Encoded": True,
        }

        async def later(event: Any, context: LambdaContext) -> Any:
            await asyncio.sleep(0)
            return result

        seen: set[str] = set()
        saved = dict(os.environ)
        try:
            for routes in self.routes.values():
                for route in routes:
                    if route.kind in seen:
                        continue
                    seen.add(route.kind)
                    self._invoke(sample, route, lambda event, context: result)
                    self._invoke(sample, route, later)
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def _call(self, handler: Handler, event: Any, context: LambdaContext) -> Any:
        # An `async def` handler runs on a loop made for it. A synchronous one that drives
        # asyncio itself (mangum) gets one from `asyncio.get_event_loop()`: in a component,
        # runtime.py's loop policy makes it then (not for every request: it costs).
        result = handler(event, context)
        if type(result) in _PLAIN or not inspect.isawaitable(result):
            return result
        loop = self.new_loop()
        asyncio.set_event_loop(loop)
        try:
            return loop.run_until_complete(result)
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _request_id(random_bytes: bytes) -> str:
    """A random (version 4) UUID as text; uuid.uuid4() costs twice as much in a component."""
    raw = bytearray(random_bytes)
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _lambda_logging() -> None:
    """Lambda's runtime logs the root logger's records with the request id; do the same."""
    root = logging.getLogger()
    if any(getattr(h, "_wasmlet_lambda", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(
            "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
            "%Y-%m-%dT%H:%M:%S",
        )
    )
    handler.addFilter(_RequestIdFilter())
    handler._wasmlet_lambda = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    level = os.environ.get("AWS_LAMBDA_LOG_LEVEL", "").upper()
    if level in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        root.setLevel(level)


def _import_handler(function: Function, *, isolate: bool) -> Handler:
    """The handler function, imported as Lambda's runtime imports it."""
    spec = function.handler
    module_name, _, attr = spec.replace("/", ".").rpartition(".")
    if not module_name or not attr:
        raise LambdaInitError(
            f"Runtime.MalformedHandlerName: Bad handler '{spec}' of function {function.name}: "
            "expected module.function, e.g. app.lambda_handler"
        )
    saved_path = list(sys.path)
    if function.code_path is not None and function.code_path in sys.path:
        sys.path.remove(function.code_path)
        sys.path.insert(0, function.code_path)
    try:
        module = importlib.import_module(module_name)
        for name in function.preload:
            importlib.import_module(name)
    except Exception as error:
        missing = f" (No module named '{error.name}')" if isinstance(error, ImportError) else ""
        raise LambdaInitError(
            f"Runtime.ImportModuleError: Unable to import module '{module_name}' of function "
            f"{function.name}{missing}: {type(error).__name__}: {error}"
        ) from error
    finally:
        sys.path[:] = saved_path
    handler = getattr(module, attr, None)
    if not callable(handler):
        raise LambdaInitError(
            f"Runtime.HandlerNotFound: Handler '{attr}' missing on module '{module_name}' "
            f"(function {function.name})"
        )
    if isolate and function.code_path is not None:
        # Functions sharing this component keep their own modules: the next one's `app`
        # must not be this one's. Its modules stay alive through the handler's references.
        prefix = function.code_path.rstrip("/") + "/"
        for name, mod in list(sys.modules.items()):
            if (getattr(mod, "__file__", None) or "").startswith(prefix):
                del sys.modules[name]
    return handler  # type: ignore[no-any-return]
