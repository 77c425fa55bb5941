"""The HTTP trigger as an ASGI application: route, run the component off the event loop, reply.

It knows nothing about any executor's ABI: each route maps to an `HttpExecutor` (chosen by
`executors.http_executor`) or a static response, built once at startup from the locked app.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, cast

from ...executors import (
    CollectedResponse,
    HttpExecutor,
    HttpRequest,
    HttpResponse,
    InlineExecutor,
    RouteMatch,
    http_executor,
)
from ...executors.wagi import WagiExecutor
from ...gate import RunGate, running
from ...locked import LockedApp, LockedTrigger
from ...observe import metrics, spans
from ...runtime import AppRuntime
from .protocol import BODY_FOLLOWS, REQUEST_TRAILERS, RESPONSE_TRAILERS, accepts_trailers
from .router import Router
from .streaming import RequestBodyReader, ResponseChannel

log = logging.getLogger("wasmlet.http")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

WELL_KNOWN = "/.well-known/spin/"
LOAD_PATH = "/.well-known/wasmlet/load"  # this process's requests in flight and served
DEFAULT_MAX_BODY = 100 * 1024 * 1024
# A request body must arrive within this many seconds of the request head, plus one second
# for every BODY_MIN_RATE bytes that arrived (Apache's mod_reqtimeout rule: `body=20,
# MinRate=500`): a slow but steady upload goes on, a trickle gets 408 and costs no thread.
DEFAULT_BODY_READ_TIMEOUT = 20.0
BODY_MIN_RATE = 500
# A streaming executor (wasi:http) starts once this much of the body, or all of it, is here,
# so a slow client costs no thread and no run-gate slot while its first bytes trickle in.
STREAM_HOLD = 64 * 1024
# How late past its deadline a guest may answer before the trigger answers for it (a guest
# blocked in a host call that no deadline reaches, e.g. a database query): 500.
OVERDUE_GRACE = 1.0


def _encode(fields: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in fields]


async def _send_response(
    response: HttpResponse, send: Send, trailers_accepted: bool = False
) -> None:
    headers = _encode(response.headers)
    with_trailers = bool(response.trailers) and trailers_accepted and not response.truncated
    framed = any(k.lower() in (b"content-length", b"transfer-encoding") for k, _ in headers)
    if not framed and not with_trailers:
        headers.append((b"content-length", str(len(response.body)).encode()))
    if response.truncated:
        headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
    start = {"type": "http.response.start", "status": response.status, "headers": headers}
    if with_trailers:
        start["trailers"] = True
    else:
        start[BODY_FOLLOWS] = True  # one write for head and body (protocol.py)
    await send(start)
    if response.truncated:
        await send({"type": "http.response.body", "body": response.body, "more_body": True})
        raise GuestFailedMidBody("response body cut short: the component failed", response.status)
    await send({"type": "http.response.body", "body": response.body})
    if with_trailers:
        await send({"type": RESPONSE_TRAILERS, "headers": _encode(response.trailers or [])})


class GuestFailedMidBody(Exception):
    """Raised after a partial body so the server aborts the response (as Spin does);
    `status`: the one that went out (for metrics and spans)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


TIMED_OUT_BODY = HttpResponse(
    408,
    [("content-type", "text/plain"), ("connection", "close")],
    b"request body not received in time\n",
)


class _Overdue:
    """Calls `act` (on the event loop) once a guest that started at `started[0]` has run
    `limit` seconds plus OVERDUE_GRACE; a guest still queued for a thread is not late."""

    __slots__ = ("_act", "_handle", "_limit", "_loop", "_started", "fired")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        limit: float,
        started: list[float],
        act: Callable[[], object],
    ) -> None:
        self._loop, self._limit, self._started, self._act = loop, limit, started, act
        self.fired = False
        self._handle = loop.call_later(limit + OVERDUE_GRACE, self._check)

    def _check(self) -> None:
        late = self._limit + OVERDUE_GRACE
        if self._started:
            late += self._started[0] - time.monotonic()
            if late <= 0:
                self.fired = True
                self._act()
                return
        self._handle = self._loop.call_later(late, self._check)

    def cancel(self) -> None:
        self._handle.cancel()


@dataclass(frozen=True)
class StaticResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


Handler = HttpExecutor | StaticResponse


@dataclass(frozen=True)
class RouteInfo:
    """A route as printed at startup."""

    trigger_id: str
    component: str | None
    route: str
    private: bool


def route_infos(app: LockedApp) -> list[RouteInfo]:
    infos = []
    for t in app.triggers_of("http"):
        route = t.trigger_config.get("route")
        private = isinstance(route, dict)
        infos.append(
            RouteInfo(
                t.id, t.trigger_config.get("component"), "" if private else str(route), private
            )
        )
    return infos


def build_handler(runtime: AppRuntime, trigger: LockedTrigger) -> Handler:
    """Turn one `[[trigger.http]]` into its handler."""
    config = trigger.trigger_config
    static = config.get("static_response")
    if static is not None:
        return StaticResponse(
            int(static.get("status_code", 200)),
            [(str(k), str(v)) for k, v in (static.get("headers") or {}).items()],
            str(static.get("body", "")).encode(),
        )
    executor = config.get("executor") or {"type": "http"}
    return http_executor(runtime, trigger.id, config["component"], executor)


def _log_overdue(request: HttpRequest, match: RouteMatch) -> None:
    log.error(
        "%s %s (route %s): the guest is still blocked past its deadline; answered for it",
        request.method,
        request.path,
        match.route,
    )


def _trailers_accepted(scope: Scope) -> bool:
    """The server can send response trailers and the client said it takes them."""
    extensions = scope.get("extensions") or {}
    return RESPONSE_TRAILERS in extensions and accepts_trailers(scope["headers"])


def _request_trailers(scope: Scope) -> Callable[[], list[tuple[str, str]]] | None:
    fields = (scope.get("extensions") or {}).get(REQUEST_TRAILERS)
    if fields is None:
        return None
    return lambda: [(k.decode("latin-1"), v.decode("latin-1")) for k, v in fields]


class HttpTrigger:
    """ASGI app serving one locked app."""

    def __init__(
        self,
        runtime: AppRuntime,
        pool: Executor,
        max_body: int = DEFAULT_MAX_BODY,
        gate: RunGate | None = None,
        body_read_timeout: float = DEFAULT_BODY_READ_TIMEOUT,
    ) -> None:
        self.app = runtime.app
        self.runtime = runtime
        self.pool = pool
        self.max_body = max_body
        self.body_read_timeout = body_read_timeout  # seconds; 0 = none
        self.request_timeout = runtime.limits.request_timeout  # seconds; 0 = none
        self.gate = gate  # how many guests run at once (see gate.py)
        self.in_flight = 0  # the app's requests being answered now (not /.well-known/ ones)
        self.requests = 0  # … and since start
        self.busy = 0.0  # seconds of requests in flight, summed over time
        self._since = time.monotonic()
        self.router: Router[Handler] = Router()
        self.metrics = metrics.http(self.app.name)  # None: metrics are off
        # None: traces, OTLP metrics and JSON logs are off
        self.observer = spans.http(self.app.name)
        self._component_of: dict[int, str] = {}  # id(handler) -> its component (a label)
        self._execute_of: dict[int, str] = {}  # id(handler) -> its guest's span name
        for trigger in self.app.triggers_of("http"):
            route = trigger.trigger_config.get("route")
            handler = build_handler(runtime, trigger)
            if isinstance(route, str):  # private routes are not routable
                self.router.add(route, handler)
                component = str(trigger.trigger_config.get("component", ""))
                self._component_of[id(handler)] = component
                kind = "wagi" if isinstance(handler, WagiExecutor) else "wasm"
                self._execute_of[id(handler)] = f"execute_{kind}_component {component}"
        info: dict[str, Any] = {"name": self.app.name}
        if self.app.version is not None:
            info["version"] = self.app.version
        self._info = json.dumps(info).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        path = raw_path.decode("latin-1").split("?", 1)[0]
        if path.startswith(WELL_KNOWN) or path == LOAD_PATH:
            await _send_response(self._well_known(path), send)
            return
        found = self.router.match(path)
        # With metrics, traces or JSON logs on: the request's duration, by method, route (as
        # written in the manifest: bounded), component and the status sent; its spans; its
        # log context.
        observe, watch = self.metrics, self.observer
        route, component, execute, method, call = None, "", "", "", None
        if observe is not None or watch is not None:
            if found is not None:
                route, component = found[0].route, self._component_of.get(id(found[1]), "")
                execute = self._execute_of.get(id(found[1]), "")
            if observe is not None:
                method = observe.started(scope["method"])
            if watch is not None:
                call = watch.begin(scope, path, route, component, execute)
        status = 500  # if no response starts: the client got none (e.g. it went away)
        failure: BaseException | None = None
        began = self._account(+1)
        try:
            response = await self._respond(scope, path, found, receive, send, call)
            if isinstance(response, int):  # streamed already
                status = response
            else:
                status = response.status
                await _send_response(response, send, _trailers_accepted(scope))
        except BaseException as e:
            failure = e
            if isinstance(e, GuestFailedMidBody):
                status = e.status
            raise
        finally:
            took = self._account(-1) - began
            if observe is not None:
                observe.finished(method, route or "", component, status, took)
            if call is not None:
                call.end(status, took, failure)

    def _account(self, change: int) -> float:
        """Requests in flight, and their sum over time (what an autoscaler averages); returns
        the time now (monotonic)."""
        now = time.monotonic()
        self.busy += self.in_flight * (now - self._since)
        self._since = now
        self.in_flight += change
        if change > 0:
            self.requests += 1
        return now

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _respond(
        self,
        scope: Scope,
        path: str,
        found: tuple[RouteMatch, Handler] | None,
        receive: Receive,
        send: Send,
        call: spans.HttpCall | None = None,
    ) -> HttpResponse | int:
        """The response to send, or the status of the one streamed already (`call`: the
        request's spans and log context, if on)."""
        if found is None:
            return HttpResponse(404)
        match, handler = found

        streaming = not isinstance(handler, StaticResponse) and handler.streaming
        started: list[float] = []  # when the guest started (set on its worker thread)
        read = await self._read_body(scope, receive, not streaming, started)
        if read == 413:
            return HttpResponse(413, [("content-type", "text/plain")], b"request body too large\n")
        if read == 408:
            log.info("%s %s: request body not received in time", scope["method"], path)
            return TIMED_OUT_BODY
        assert not isinstance(read, int)
        body, body_rest = read
        if isinstance(handler, StaticResponse):
            return HttpResponse(handler.status, list(handler.headers), handler.body)

        client = scope.get("client") or ("0.0.0.0", 0)
        request = HttpRequest(
            method=scope["method"],
            path=path,
            query=scope.get("query_string", b"").decode("latin-1"),
            headers=[
                (k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]
            ],
            body=body,
            client=(client[0], client[1]),
            scheme=scope.get("scheme", "http"),
            http_version=scope.get("http_version", "1.1"),
            body_rest=body_rest,
            trailers=_request_trailers(scope),
        )
        if streaming:
            trailers_ok = _trailers_accepted(scope)
            return await self._stream(handler, request, match, send, trailers_ok, started, call)
        try:
            return await self._call(handler, request, match, started, call)
        except Exception:
            log.exception("error handling %s %s", request.method, path)
            return HttpResponse(500)

    async def _call(
        self,
        handler: HttpExecutor,
        request: HttpRequest,
        match: RouteMatch,
        started: list[float],
        call: spans.HttpCall | None = None,
    ) -> HttpResponse:
        """Run a whole-response executor on the pool; answer 500 for a guest past its
        deadline (plus grace) that has not returned."""
        loop = asyncio.get_running_loop()
        run = self._run if call is None else call.on_thread(self._run)
        future = loop.run_in_executor(self.pool, run, handler, request, match, started)
        if self.request_timeout <= 0:
            return await future
        overdue = _Overdue(loop, self.request_timeout, started, future.cancel)
        try:
            return await future
        except asyncio.CancelledError:
            if not overdue.fired:
                raise
            _log_overdue(request, match)
            return HttpResponse(500)
        finally:
            overdue.cancel()

    def _run(
        self,
        handler: HttpExecutor,
        request: HttpRequest,
        match: RouteMatch,
        started: list[float],
    ) -> HttpResponse:
        started.append(time.monotonic())
        sink = CollectedResponse()
        with running(self.gate):
            handler.handle(request, match, sink)
        if sink.response is None:
            raise RuntimeError("the executor produced no response")
        return sink.response

    def _inline(
        self,
        handler: InlineExecutor,
        request: HttpRequest,
        match: RouteMatch,
        started: list[float],
        call: spans.HttpCall | None,
    ) -> HttpResponse | None:
        """Run a guest that cannot wait for anything right here, on the event loop's thread,
        when the run gate has a slot free now: no hand-over to a worker thread and back, which
        cost a tiny component more CPU than its run. Its response, or None: run it on the
        pool (the gate is busy, or the guest overran its inline budget: wasi_http.py)."""
        gate = self.gate
        if gate is not None and not gate.try_acquire():
            return None
        started.append(time.monotonic())
        try:
            run = handler.handle_inline if call is None else call.on_thread(handler.handle_inline)
            whole = run(request, match)
        except Exception:
            log.exception("error handling %s %s", request.method, request.path)
            whole = HttpResponse(500)
        finally:
            if gate is not None:
                gate.release()
        if whole is None:
            started.clear()  # its run on a thread starts the deadline afresh
        return whole

    async def _stream(
        self,
        handler: HttpExecutor,
        request: HttpRequest,
        match: RouteMatch,
        send: Send,
        trailers_ok: bool,
        started: list[float],
        call: spans.HttpCall | None = None,
    ) -> int:
        """Run a streaming executor and send its response as the worker produces it; a
        guest past its deadline (plus grace) gets 500, or its body cut short. Returns the
        status that went out."""
        if getattr(handler, "inline", False) and request.body_rest is None:
            whole = self._inline(cast(InlineExecutor, handler), request, match, started, call)
            if whole is not None:
                await _send_response(whole, send, trailers_ok)
                return whole.status
        loop = asyncio.get_running_loop()
        channel = ResponseChannel(loop)

        def run() -> None:
            started.append(time.monotonic())
            try:
                with running(self.gate):
                    handler.handle(request, match, channel)
            except Exception:
                log.exception("error handling %s %s", request.method, request.path)
                if channel.started:
                    channel.abort()
                else:
                    channel.respond(HttpResponse(500))
            finally:
                channel.done()

        self.pool.submit(run if call is None else call.on_thread(run))
        overdue = None
        if self.request_timeout > 0:
            overdue = _Overdue(loop, self.request_timeout, started, channel.overdue)
        status = 0  # the one that went out, once the response has started
        try:
            async for event in channel.events():
                kind = event[0]
                if kind == "overdue":
                    _log_overdue(request, match)
                    if status:
                        cut = "response body cut short: past the deadline"
                        raise GuestFailedMidBody(cut, status)
                    status = 500
                    await _send_response(HttpResponse(status), send)
                elif kind == "response":
                    status = event[1].status
                    await _send_response(event[1], send, trailers_ok)
                elif kind == "start":
                    start = {
                        "type": "http.response.start",
                        "status": event[1],
                        "headers": _encode(event[2]),
                    }
                    if trailers_ok:  # whether there will be any is known only at the end
                        start["trailers"] = True
                    await send(start)
                    status = event[1]
                elif kind == "body":
                    await send({"type": "http.response.body", "body": event[1], "more_body": True})
                elif kind == "end":
                    await send({"type": "http.response.body", "body": b""})
                    if trailers_ok:
                        await send({"type": RESPONSE_TRAILERS, "headers": _encode(event[1] or [])})
                else:  # abort
                    cut = "response body cut short: the component failed"
                    raise GuestFailedMidBody(cut, status)
            return status or 500  # 500: none went out
        finally:
            channel.close()  # a client that went away must not block the guest
            if overdue is not None:
                overdue.cancel()

    async def _read_body(
        self, scope: Scope, receive: Receive, whole: bool, started: list[float]
    ) -> tuple[bytes, RequestBodyReader | None] | int:
        """The request body; 413 when it exceeds the limit, 408 when it does not arrive in
        time. With `whole=False`, at least STREAM_HOLD bytes of it (or all) plus a reader
        for the rest, which the guest reads as it arrives."""
        for k, v in scope["headers"]:
            if k.lower() == b"content-length" and v.isdigit() and int(v) > self.max_body:
                return 413
        chunks: list[bytes] = []
        size = 0
        began = time.monotonic()
        limit = self.body_read_timeout
        try:
            async with asyncio.timeout_at(began + limit if limit > 0 else None) as window:
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        break
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_body:
                        return 413
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
                    if not whole and size >= STREAM_HOLD:
                        rest = self._body_reader(receive, size, began, started)
                        return b"".join(chunks), rest
                    if limit > 0:
                        window.reschedule(began + limit + size / BODY_MIN_RATE)
        except TimeoutError:
            return 408
        return b"".join(chunks), None

    def _body_reader(
        self, receive: Receive, size: int, began: float, started: list[float]
    ) -> RequestBodyReader:
        """The rest of a body, for the guest: each wait for more ends at the body's time
        limit or at the guest's deadline, whichever is first."""
        body_limit, run_limit = self.body_read_timeout, self.request_timeout

        def deadline(received: int) -> float | None:
            ends = []
            if body_limit > 0:
                ends.append(began + body_limit + received / BODY_MIN_RATE)
            if run_limit > 0 and started:
                ends.append(started[0] + run_limit)
            return min(ends, default=None)

        loop = asyncio.get_running_loop()
        return RequestBodyReader(receive, loop, self.max_body, size, deadline)

    def _well_known(self, path: str) -> HttpResponse:
        if path == WELL_KNOWN + "health":
            return HttpResponse(200, [("content-type", "text/plain")], b"OK")
        if path == WELL_KNOWN + "info":
            return HttpResponse(200, [("content-type", "application/json")], self._info)
        if path == LOAD_PATH:  # what an autoscaler samples (the wasmlet activator)
            self._account(0)
            load = {"in_flight": self.in_flight, "requests": self.requests, "busy": self.busy}
            return HttpResponse(
                200, [("content-type", "application/json")], json.dumps(load).encode()
            )
        return HttpResponse(404)
