"""Outbound HTTP: wasi:http's `outgoing-handler` under `allowed_outbound_hosts`.

The app state is the app's transport: how its components' allowed requests are sent (by
default an `HttpxSender`: one httpx client and its threads per app, made on the first
request), and the app's own origin, where a relative request (Spin's `self`) goes. Each
component's `OutboundHttp` pairs its `allowed_outbound_hosts` with that transport.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..observe import metrics, spans
from ..wasi.http import (
    OUTBOUND_HTTP,
    OUTGOING_INTERFACES,
    HttpxSender,
    IncomingResponse,
    OutboundHttp,
    OutboundRequest,
    SendOutcome,
    SendRequest,
)
from ._factor import AppContext, ComponentContext, Factor


class Transport(SendRequest, Protocol):
    """A `SendRequest` the app owns: closed when the app stops."""

    def close(self) -> None: ...


@dataclass
class OutboundHttpApp:
    """The factor's app state."""

    self_origin: str | None  # the app's own base URL; None: relative requests are refused
    transport: Transport
    self_host: str | None = None  # the Host header of relative requests (a multi-app host)

    def close(self) -> None:
        """Release the app's client and threads (once no guest of the app runs)."""
        self.transport.close()


class TimedTransport:
    """A transport whose requests are counted (with metrics on): `handle` only starts a
    request, so the time measured is from the start to the response head (or the error)."""

    def __init__(self, inner: Transport, calls: metrics.OutboundCalls) -> None:
        self.inner = inner
        self.calls = calls

    def __call__(self, request: OutboundRequest) -> concurrent.futures.Future[SendOutcome]:
        caller = self.calls.caller()  # on the guest's thread; the future ends on another
        began = time.perf_counter()
        future = self.inner(request)

        def done(f: concurrent.futures.Future[SendOutcome]) -> None:
            failed = f.cancelled() or f.exception() is not None
            failed = failed or not isinstance(f.result(), IncomingResponse)
            self.calls.record(caller, time.perf_counter() - began, failed)

        future.add_done_callback(done)
        return future

    def close(self) -> None:
        self.inner.close()


class TracedTransport:
    """A transport whose requests are traced (with traces on): a client span per request,
    from the start to the response head (or the error), and the request carries the trace
    (`traceparent`, `tracestate`: what the guest set under those names is replaced)."""

    def __init__(self, inner: Transport, traced: spans.OutboundHttpSpans) -> None:
        self.inner = inner
        self.spans = traced

    def __call__(self, request: OutboundRequest) -> concurrent.futures.Future[SendOutcome]:
        span, trace_headers = self.spans.start(request.method, request.url)  # the guest's thread
        names = {k for k, _ in trace_headers}
        headers = [(k, v) for k, v in request.headers if k.lower() not in names]
        headers += [(k, v.encode("latin-1")) for k, v in trace_headers]
        try:
            future = self.inner(dataclasses.replace(request, headers=headers))
        except BaseException as e:
            self.spans.finish(span, None, type(e).__qualname__)
            raise

        def done(f: concurrent.futures.Future[SendOutcome]) -> None:
            if f.cancelled() or f.exception() is not None:
                self.spans.finish(span, None, "cancelled" if f.cancelled() else "exception")
                return
            outcome = f.result()
            if isinstance(outcome, IncomingResponse):
                self.spans.finish(span, outcome.status, None)
            else:  # a wasi:http error-code: its case name
                self.spans.finish(span, None, outcome if isinstance(outcome, str) else outcome[0])

        future.add_done_callback(done)
        return future

    def close(self) -> None:
        self.inner.close()


class OutboundHttpFactor(Factor[OutboundHttpApp, OutboundHttp]):
    key = OUTBOUND_HTTP
    interfaces = tuple(OUTGOING_INTERFACES)

    def __init__(self, transport: Callable[[], Transport] = HttpxSender) -> None:
        self.transport = transport  # makes each app's transport (tests inject their own)

    def configure_app(self, ctx: AppContext) -> OutboundHttpApp:
        transport = self.transport()
        calls = metrics.outbound("http")
        if calls is not None:
            transport = TimedTransport(transport, calls)
        traced = spans.outbound_http()
        if traced is not None:
            transport = TracedTransport(transport, traced)
        return OutboundHttpApp(ctx.self_origin, transport, ctx.self_host)

    def prepare(self, state: OutboundHttpApp, ctx: ComponentContext) -> OutboundHttp:
        return OutboundHttp(ctx.policy, state.self_origin, state.transport, state.self_host)

    def close_app(self, state: OutboundHttpApp) -> None:
        """The app has stopped: close its transport (called by `AppFactors.close`)."""
        state.close()


FACTOR = OutboundHttpFactor()
