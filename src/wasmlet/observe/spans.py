"""What the request path calls to trace and log-tag requests and messages: Spin's spans (names
and attributes as Spin's `spin_trigger_http`, `spin_trigger_redis` and `spin_outbound_http`
make them), the OTLP metrics, and the `context.RequestContext` of JSON log lines.

Every accessor (`http`, `messages`, `outbound_http`, `host_calls`) returns None when neither
traces, OTLP metrics nor JSON logs are on, and the request path keeps that None: off, it costs
one attribute check and nothing here imports OpenTelemetry (`_api` does, the first time a span
is made).

Threads: a request's server (or consumer) span starts on the event loop; the guest runs on a
pool thread, where `on_thread` wraps the call in the `execute_*_component` span, made current
there (OpenTelemetry's context is a contextvar, and a pool thread starts with none), so that
the guest's outbound calls are its children and carry its `traceparent`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from . import context, tracing
from .context import RequestContext
from .metrics import KNOWN_METHODS

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

    from .tracing import Meters

R = TypeVar("R")
Headers = Sequence[tuple[bytes, bytes]]  # an ASGI request's (lower-case names)
Scope = MutableMapping[str, Any]  # an ASGI request's

# Spin's prefix of each host API's spans (`spin_key_value.get`, …), by `metrics` API label.
HOST_API_SPANS = {
    "kv": "spin_key_value",
    "redis": "spin_outbound_redis",
    "pg": "spin_outbound_pg",
    "mysql": "spin_outbound_mysql",
    "mqtt": "spin_outbound_mqtt",
    "sqlite": "spin_sqlite",
}


class _Api:
    """The OpenTelemetry functions the request path calls (imported on first use only)."""

    def __init__(self) -> None:
        from opentelemetry import context as otel_context
        from opentelemetry import propagate, trace
        from opentelemetry.propagators.textmap import Getter
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self.attach, self.detach = otel_context.attach, otel_context.detach
        self.in_context = trace.set_span_in_context
        self.extract, self.inject = propagate.extract, propagate.inject
        self.SERVER, self.CLIENT = SpanKind.SERVER, SpanKind.CLIENT
        self.CONSUMER, self.INTERNAL = SpanKind.CONSUMER, SpanKind.INTERNAL
        self.error = Status(StatusCode.ERROR)
        self.current_span = trace.get_current_span

        class AsgiGetter(Getter[Headers]):
            def get(self, carrier: Headers, key: str) -> list[str] | None:
                name = key.encode("latin-1")
                found = [v.decode("latin-1") for k, v in carrier if k == name]
                return found or None

            def keys(self, carrier: Headers) -> list[str]:
                return [k.decode("latin-1") for k, _ in carrier]

        self.getter = AsgiGetter()


@functools.cache
def _api() -> _Api:
    return _Api()


def _hex_ids(span: Span) -> tuple[str, str]:
    ids = span.get_span_context()
    return f"{ids.trace_id:032x}", f"{ids.span_id:016x}"


def _fail(span: Span, error_type: str) -> None:
    span.set_attribute("error.type", error_type)
    span.set_status(_api().error)


def _on_thread(
    fn: Callable[..., R],
    ctx: RequestContext | None,
    tracer: Tracer | None,
    parent: Span | None,
    name: str,
    component: str,
) -> Callable[..., R]:
    """`fn` as a pool thread runs it: in the request's log context and its execute span."""

    def run(*args: Any) -> R:
        token = context.enter(ctx) if ctx is not None else None
        span = attached = None
        if tracer is not None and parent is not None:
            api = _api()
            span = tracer.start_span(
                name, api.in_context(parent), attributes={"wasmlet.component": component}
            )
            attached = api.attach(api.in_context(span))
        try:
            result = fn(*args)
            if result is False and span is not None:  # a message handler that failed
                span.set_status(_api().error)
            return result
        except BaseException as e:
            if span is not None:
                _fail(span, type(e).__qualname__)
            raise
        finally:
            if span is not None and attached is not None:
                _api().detach(attached)
                span.end()
            if token is not None:
                context.leave(token)

    return run


# -- HTTP requests -----------------------------------------------------------------------------


class HttpObserver:
    """One app's HTTP requests: spans, OTLP metrics, log context (whichever are on)."""

    __slots__ = ("_logs", "_meters", "_tracer", "app")

    def __init__(self, app: str, tracer: Tracer | None, meters: Meters | None, logs: bool) -> None:
        self.app = app
        self._tracer, self._meters, self._logs = tracer, meters, logs

    def begin(
        self, scope: Scope, path: str, route: str | None, component: str, execute: str
    ) -> HttpCall:
        """A request to `route` (None: no route matched) has arrived: on the event loop, in
        the request's task. `execute` names the guest's span (`execute_wasm_component ID`)."""
        return HttpCall(self, scope, path, route, component, execute)


class HttpCall:
    """One request, from its arrival to the end of its response."""

    __slots__ = ("_ctx", "_execute", "_obs", "_route", "_token", "component", "method", "span")

    def __init__(
        self,
        obs: HttpObserver,
        scope: Scope,
        path: str,
        route: str | None,
        component: str,
        execute: str,
    ) -> None:
        self._obs, self._route, self.component, self._execute = obs, route, component, execute
        method = scope["method"]
        self.method = method if method in KNOWN_METHODS else "_OTHER"
        self.span: Span | None = None
        trace_id = span_id = ""
        tracer = obs._tracer
        if tracer is not None:
            self.span = self._start(tracer, scope, path, route)
            trace_id, span_id = _hex_ids(self.span)
        self._ctx: RequestContext | None = None
        self._token = None
        if obs._logs:
            if tracer is None:  # not traced: the caller's trace, if it sent one
                trace_id = _caller_trace(scope["headers"])
            self._ctx = RequestContext(
                obs.app, component, context.new_request_id(), trace_id, span_id
            )
            self._token = context.enter(self._ctx)

    def _start(self, tracer: Tracer, scope: Scope, path: str, route: str | None) -> Span:
        api = _api()
        method = self.method
        attributes: dict[str, str | int] = {
            "http.request.method": method,
            "url.path": path,
            "url.scheme": scope.get("scheme", "http"),
            "network.protocol.name": "http",
            "network.protocol.version": scope.get("http_version", "1.1"),
            "wasmlet.app": self._obs.app,
        }
        if method == "_OTHER":
            attributes["http.request.method_original"] = scope["method"]
        query = scope.get("query_string", b"")
        if query:
            attributes["url.query"] = query.decode("latin-1")
        client = scope.get("client")
        if client:
            attributes["network.peer.address"] = client[0]
            attributes["network.peer.port"] = client[1]
        for k, v in scope["headers"]:
            if k == b"x-forwarded-for":  # the original client, as Spin reports it
                attributes["client.address"] = v.decode("latin-1").split(",", 1)[0].strip()
                break
        if route is not None:
            attributes["http.route"] = route
        name = f"{method if method != '_OTHER' else 'HTTP'} {route}" if route else method
        parent = api.extract(scope["headers"], getter=api.getter)
        return tracer.start_span(name, parent, kind=api.SERVER, attributes=attributes)

    def on_thread(self, fn: Callable[..., R]) -> Callable[..., R]:
        """`fn` (the guest's run) wrapped for its pool thread."""
        return _on_thread(
            fn, self._ctx, self._obs._tracer, self.span, self._execute, self.component
        )

    def end(self, status: int, took: float, failure: BaseException | None) -> None:
        """The response has been sent with `status` (or failed with `failure`)."""
        error_type = type(failure).__qualname__ if failure is not None else None
        if error_type is None and status >= 500:
            error_type = str(status)  # OpenTelemetry's HTTP conventions: the status code
        span = self.span
        if span is not None:
            span.set_attribute("http.response.status_code", status)
            if error_type is not None:
                _fail(span, error_type)
            span.end()
        meters = self._obs._meters
        if meters is not None:
            self._measure(meters, status, took, error_type)
        if self._token is not None:
            context.leave(self._token)

    def _measure(self, meters: Meters, status: int, took: float, error: str | None) -> None:
        ids = {"app_id": self._obs.app, "component_id": self.component}
        attributes: dict[str, str | int] = {
            "http.request.method": self.method,
            "http.response.status_code": status,
            **ids,
        }
        if self._route is not None:
            attributes["http.route"] = self._route
            meters.request_count.add(1, {"trigger_type": "http", **ids})
        if error is not None:
            attributes["error.type"] = error
        meters.http_duration.record(took, attributes)


def _caller_trace(headers: Headers) -> str:
    for k, v in headers:
        if k == b"traceparent":
            ids = context.traceparent_ids(v.decode("latin-1"))
            return ids[0] if ids is not None else ""
    return ""


# -- message triggers --------------------------------------------------------------------------


class MessageObserver:
    """One app's messages of one trigger type (redis, mqtt, cron)."""

    __slots__ = ("_logs", "_meters", "_tracer", "app", "trigger")

    def __init__(
        self, app: str, trigger: str, tracer: Tracer | None, meters: Meters | None, logs: bool
    ) -> None:
        self.app, self.trigger = app, trigger
        self._tracer, self._meters, self._logs = tracer, meters, logs

    def received(self, destination: str) -> MessageCall:
        """A message from `destination` (a channel or topic): Spin's consumer span."""
        attributes: dict[str, str | int] = {
            "messaging.system": self.trigger,
            "messaging.operation": "receive",
            "messaging.destination.name": destination,
        }
        return MessageCall(self, f"{destination} receive", True, attributes)

    def fired(self, expression: str, tick: int) -> MessageCall:
        """A cron tick (no Spin span to follow: named after the schedule)."""
        attributes: dict[str, str | int] = {
            "wasmlet.cron.expression": expression,
            "wasmlet.cron.tick": tick,
        }
        return MessageCall(self, f"cron {expression}", False, attributes)


class MessageCall:
    """One message, handled by one component or several."""

    __slots__ = ("_ctx", "_obs", "failed", "span")

    def __init__(
        self, obs: MessageObserver, name: str, consumer: bool, attributes: dict[str, str | int]
    ) -> None:
        self._obs = obs
        self.failed = False
        self.span: Span | None = None
        trace_id = span_id = ""
        if obs._tracer is not None:
            api = _api()
            kind = api.CONSUMER if consumer else api.INTERNAL
            attributes["wasmlet.app"] = obs.app
            self.span = obs._tracer.start_span(name, None, kind=kind, attributes=attributes)
            trace_id, span_id = _hex_ids(self.span)
        self._ctx = None
        if obs._logs:
            self._ctx = RequestContext(obs.app, "", context.new_request_id(), trace_id, span_id)

    def on_thread(self, fn: Callable[..., bool], component: str) -> Callable[..., bool]:
        """`fn` (one component's handling, True when it succeeded) for its pool thread."""
        ctx = self._ctx.for_component(component) if self._ctx is not None else None
        obs = self._obs
        run = _on_thread(
            fn, ctx, obs._tracer, self.span, f"execute_wasm_component {component}", component
        )

        def counted(*args: Any) -> bool:
            ok = run(*args)
            if not ok:
                self.failed = True
            if obs._meters is not None:
                ids = {"trigger_type": obs.trigger, "app_id": obs.app, "component_id": component}
                obs._meters.request_count.add(1, ids)
            return ok

        return counted

    def end(self) -> None:
        """Every component has handled the message."""
        if self.span is not None:
            if self.failed:
                _fail(self.span, "handler_failed")
            self.span.end()


# -- host calls ----------------------------------------------------------------------------------


class OutboundHttpSpans:
    """`spin_outbound_http.send_request` spans: one per request a guest sends, from the call
    until the response head (or the error), as the outbound-http factor's transport sees it."""

    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer

    def start(self, method: str, url: str) -> tuple[Span, list[tuple[str, str]]]:
        """A request is being sent: its span (a child of the guest's, on the guest's thread)
        and the trace headers (`traceparent`, `tracestate`) it must carry."""
        api = _api()
        method = method if method in KNOWN_METHODS else "_OTHER"
        attributes: dict[str, str | int] = {"http.request.method": method}
        try:
            parts = urlsplit(url)
            if parts.hostname:
                attributes["server.address"] = parts.hostname
                attributes["server.port"] = parts.port or (443 if parts.scheme == "https" else 80)
            if "@" in parts.netloc:  # OpenTelemetry: never export credentials
                netloc = "REDACTED:REDACTED@" + parts.netloc.rsplit("@", 1)[1]
                url = parts._replace(netloc=netloc).geturl()
        except ValueError:
            pass
        attributes["url.full"] = url
        name = method if method != "_OTHER" else "HTTP"
        span = self._tracer.start_span(name, kind=api.CLIENT, attributes=attributes)
        carrier: dict[str, str] = {}
        api.inject(carrier, api.in_context(span))
        return span, list(carrier.items())

    @staticmethod
    def finish(span: Span, status: int | None, error: str | None) -> None:
        """The response head came with `status`, or the request failed with `error`."""
        if status is not None:
            span.set_attribute("http.response.status_code", status)
            if status >= 400 and error is None:  # a client span's error, by the conventions
                error = str(status)
        if error is not None:
            _fail(span, error)
        span.end()


def host_call(api: str, name: str, fn: Callable[..., R]) -> Callable[..., R]:
    """`fn`, a host function of outbound API `api`, in a `spin_<api>.<func>` client span (with
    traces on; else `fn` itself). `name` is the WIT name (`[method]store.get-keys` → get_keys).
    A WIT `err` result is not an exception here: the API's metrics count those."""
    tracer = tracing.tracer()
    prefix = HOST_API_SPANS.get(api)
    if tracer is None or prefix is None:
        return fn
    span_name = f"{prefix}.{name.rsplit(']', 1)[-1].rsplit('.', 1)[-1].replace('-', '_')}"

    @functools.wraps(fn)
    def traced(*args: Any) -> R:
        with tracer.start_as_current_span(span_name, kind=_api().CLIENT):
            return fn(*args)

    return traced


def failed(kind: str) -> None:
    """The guest running on this thread failed (`kind`: trap, timeout, …): its span says so."""
    if tracing.tracer() is not None:
        _fail(_api().current_span(), kind)


# -- accessors -----------------------------------------------------------------------------------


def http(app: str) -> HttpObserver | None:
    """`app`'s HTTP request observer, or None when traces, OTLP metrics and JSON logs are off."""
    tracer, meters, logs = tracing.tracer(), tracing.meters(), context.enabled()
    if tracer is None and meters is None and not logs:
        return None
    return HttpObserver(app, tracer, meters, logs)


def messages(app: str, trigger: str) -> MessageObserver | None:
    """`app`'s observer of `trigger`'s messages, or None when all is off."""
    tracer, meters, logs = tracing.tracer(), tracing.meters(), context.enabled()
    if tracer is None and meters is None and not logs:
        return None
    return MessageObserver(app, trigger, tracer, meters, logs)


def outbound_http() -> OutboundHttpSpans | None:
    """Outbound HTTP spans, or None when traces are off."""
    tracer = tracing.tracer()
    return OutboundHttpSpans(tracer) if tracer is not None else None
