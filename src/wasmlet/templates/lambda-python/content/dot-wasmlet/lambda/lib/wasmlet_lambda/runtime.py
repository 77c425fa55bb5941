"""The component side: wasi:http's incoming handler (on the Spin Python SDK's bindings) that
hands each request to `App.invoke`, and the asyncio loop handlers run on.

The SDK's own `IncomingHandler.handle_request` keeps one value per header name, which would
lose repeated request headers and all but one `Set-Cookie`; this handler reads and writes
wasi:http's header lists itself. The SDK's `PollLoop` has no timers and stays "running"
after `run_until_complete`; `Loop` adds timers (`asyncio.sleep`, timeouts) on wasi:clocks,
runs `run_in_executor` work inline (a component has no threads) and stops properly, and the
loop policy makes `asyncio.run()` and `new_event_loop()` use it.
"""

from __future__ import annotations

import asyncio
import gc
import heapq
import itertools
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from spin_sdk.http.poll_loop import PollLoop  # type: ignore[import-not-found]
from spin_sdk.wit import exports  # type: ignore[import-not-found]
from spin_sdk.wit.imports import monotonic_clock, poll  # type: ignore[import-not-found]
from spin_sdk.wit.imports.streams import StreamError_Closed  # type: ignore[import-not-found]
from spin_sdk.wit.imports.types import (  # type: ignore[import-not-found]
    Fields,
    IncomingBody,
    IncomingRequest,
    Method_Connect,
    Method_Delete,
    Method_Get,
    Method_Head,
    Method_Options,
    Method_Other,
    Method_Patch,
    Method_Post,
    Method_Put,
    Method_Trace,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)
from spin_sdk.wit.types import Err, Ok  # type: ignore[import-not-found]

from .app import App
from .events import Request
from .responses import Response

_METHODS = {
    Method_Get: "GET",
    Method_Head: "HEAD",
    Method_Post: "POST",
    Method_Put: "PUT",
    Method_Delete: "DELETE",
    Method_Connect: "CONNECT",
    Method_Options: "OPTIONS",
    Method_Trace: "TRACE",
    Method_Patch: "PATCH",
}
_WRITE = 4096  # wasi:io's blocking-write-and-flush takes at most 4096 bytes


class Loop(PollLoop):  # type: ignore[misc]
    """spin-sdk's wasi:io/poll loop with timers, inline executor work and a proper stop."""

    handles: list[asyncio.Handle]  # PollLoop's: callbacks ready to run
    wakers: list[tuple[Any, asyncio.Future[None]]]  # PollLoop's: (pollable, its future)
    exception: BaseException | None
    running: bool

    def __init__(self) -> None:
        super().__init__()
        self._timers: list[tuple[float, int, asyncio.TimerHandle]] = []
        self._seq = itertools.count()
        self._closed = False

    def time(self) -> float:
        return time.monotonic()

    def call_at(
        self, when: float, callback: Callable[..., Any], *args: Any, context: Any = None
    ) -> asyncio.TimerHandle:
        handle = asyncio.TimerHandle(when, callback, args, self, context)
        heapq.heappush(self._timers, (when, next(self._seq), handle))
        return handle

    def call_later(
        self, delay: float, callback: Callable[..., Any], *args: Any, context: Any = None
    ) -> asyncio.TimerHandle:
        return self.call_at(self.time() + delay, callback, *args, context=context)

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        pass  # cancelled timers are skipped when they come due

    def call_soon_threadsafe(
        self, callback: Callable[..., Any], *args: Any, context: Any = None
    ) -> asyncio.Handle:
        return self.call_soon(callback, *args, context=context)  # type: ignore[no-any-return]

    def run_in_executor(self, executor: Any, func: Callable[..., Any], *args: Any) -> Any:
        future = self.create_future()
        try:
            future.set_result(func(*args))
        except Exception as error:
            future.set_exception(error)
        return future

    def run_until_complete(self, future: Any) -> Any:
        future = asyncio.ensure_future(future, loop=self)
        self.running = True
        asyncio.events._set_running_loop(self)
        try:
            while not future.done():
                self._step(future)
            return future.result()
        finally:
            self.running = False
            asyncio.events._set_running_loop(None)

    def _step(self, future: asyncio.Future[Any]) -> None:
        now = self.time()
        while self._timers and self._timers[0][0] <= now:
            _, _, timer = heapq.heappop(self._timers)
            if not timer.cancelled():
                self.handles.append(timer)
        handles, self.handles = self.handles, []
        for handle in handles:
            if not handle._cancelled:
                handle._run()
        if self.exception is not None:
            error, self.exception = self.exception, None
            raise error
        if self.handles or future.done():
            return
        pollables = [p for p, _ in self.wakers]
        timer_index = -1
        if self._timers:
            delay = max(0, int((self._timers[0][0] - self.time()) * 1e9))
            timer_index = len(pollables)
            pollables.append(monotonic_clock.subscribe_duration(delay))
        if not pollables:
            raise RuntimeError("the event loop has nothing to wait for: the coroutine is stuck")
        ready = set(poll.poll(pollables))
        if timer_index >= 0:
            pollables[timer_index].__exit__(None, None, None)
        waiting = []
        for index, (pollable, waker) in enumerate(self.wakers):
            if index in ready:
                pollable.__exit__(None, None, None)
                waker.set_result(None)
            else:
                waiting.append((pollable, waker))
        self.wakers = waiting

    def is_running(self) -> bool:
        return bool(self.running)

    def is_closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self.running = False
        self._closed = True

    async def shutdown_asyncgens(self) -> None:
        pass

    async def shutdown_default_executor(self, timeout: float | None = None) -> None:
        pass

    def get_exception_handler(self) -> None:
        return None

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        print(f"wasmlet_lambda: asyncio: {context.get('message')}", file=sys.stderr)


class _Policy(asyncio.DefaultEventLoopPolicy):
    """Loops are `Loop`s, and `get_event_loop()` makes one when none is set (as Python did
    before 3.14), so that code calling it outside a running loop (mangum) works."""

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        return Loop()

    def get_event_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._local._loop  # type: ignore[attr-defined]
        if loop is None or loop.is_closed():
            loop = self.new_event_loop()
            self.set_event_loop(loop)
        return loop  # type: ignore[no-any-return]


def _request(incoming: Any) -> tuple[Request, str]:
    method = incoming.method()
    name = method.value if isinstance(method, Method_Other) else _METHODS[type(method)]
    body_handle = incoming.consume()
    stream = body_handle.stream()
    body = bytearray()
    while True:
        try:
            body += stream.blocking_read(64 * 1024)
        except Err as error:
            if isinstance(error.value, StreamError_Closed):
                break
            raise
    stream.__exit__(None, None, None)
    IncomingBody.finish(body_handle)
    entries = incoming.headers().entries()
    return _parse(name, incoming.path_with_query() or "/", entries, bytes(body))


def _parse(
    method: str, target: str, entries: list[tuple[str, bytes]], body: bytes
) -> tuple[Request, str]:
    """The request from what wasi:http gave, and the Spin route it matched (from wasmlet's
    `spin-*` headers, which the function does not see)."""
    path, _, query = target.partition("?")
    headers = []
    route = "/"
    client = full_url = ""
    for key, raw in entries:
        value = raw.decode("utf-8", "replace")
        if key == "spin-raw-component-route":
            route = value
        elif key == "spin-client-addr":
            client = value
        elif key == "spin-full-url":
            full_url = value
        elif not key.startswith("spin-"):
            headers.append((key.lower(), value))
    scheme = "https" if full_url.startswith("https:") else "http"
    source_ip = client.rsplit(":", 1)[0].strip("[]") if client else "127.0.0.1"
    return Request(method, path, query, tuple(headers), body, source_ip, scheme), route


def _send(response: Response, out: Any) -> None:
    pairs = [(k, v.encode("utf-8")) for k, v in response.headers]
    pairs.append(("content-length", str(len(response.body)).encode()))
    outgoing = OutgoingResponse(Fields.from_list(pairs))
    outgoing.set_status_code(response.status)
    body = outgoing.body()
    ResponseOutparam.set(out, Ok(outgoing))
    stream = body.write()
    data = response.body
    for offset in range(0, len(data), _WRITE):
        stream.blocking_write_and_flush(data[offset : offset + _WRITE])
    stream.__exit__(None, None, None)
    OutgoingBody.finish(body, None)


def serve(app: App) -> type:
    """Load `app` (its handlers are imported now: at build time) and return the component's
    `IncomingHandler` class."""
    asyncio.set_event_loop_policy(_Policy())
    app.new_loop = Loop
    app.load()
    _parse(  # the header parsing warm in the snapshot too (see App.warm_up)
        "GET",
        "/warm?a=1",
        [("host", b"localhost"), ("spin-raw-component-route", b"/..."), ("x", b"1")],
        b"",
    )
    app.warm_up()
    # Every request starts from this heap: collected now, and frozen out of the collector's
    # sight, so that a request does not pay for a collection the build's allocations were
    # about to trigger, nor for scanning the snapshot's objects (and dirtying their pages).
    gc.collect()
    gc.freeze()

    class IncomingHandler(exports.IncomingHandler):  # type: ignore[misc]
        def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
            try:
                req, route = _request(request)
                response = app.invoke(req, route)
            except Exception:
                traceback.print_exc()
                response = Response(500, [], b"")
            try:
                _send(response, response_out)
            except Exception:  # e.g. a header value wasi:http refuses
                traceback.print_exc()
                _send(Response(500, [], b""), response_out)

    return IncomingHandler
