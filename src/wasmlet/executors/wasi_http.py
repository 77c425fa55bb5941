"""The wasi:http executor: components exporting `wasi:http/incoming-handler@0.2.x`.

Per request: a fresh store and instance, an `incoming-request` and a `response-outparam`
in the instance's resource table, one call of `handle`. The response goes to the sink as the
guest produces it: started when the guest sets it, the body as it writes it.

A component that cannot wait for anything (`ComponentHandler.can_wait`) may also run where
its caller is, the event loop's thread, which saves the hand-over to a worker thread and
back (`handle_inline`): its response is held whole, and it gets INLINE_TICKS of the epoch.
One that runs longer, or writes more than INLINE_MAX_BODY, is stopped, run again on a thread
(the client sees only that run), and from then on always runs on threads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..engine import Limits, WasmEngine
from ..runtime import PreparedComponent
from ..wasi import Own
from ..wasi.http import INCOMING_REQUEST, RESPONSE_OUTPARAM, IncomingRequest, ResponseOutparam
from ._component import ComponentHandler
from .headers import forwarded_headers, spin_headers
from .types import CollectedResponse, HttpRequest, HttpResponse, ResponseSink, RouteMatch

log = logging.getLogger("wasmlet.wasi_http")

INLINE_TICKS = 2  # epoch ticks (10-20 ms) a guest may run inline before it is stopped
INLINE_MAX_BODY = 1 << 20  # bytes of response body an inline run may hold


class _Overflow(Exception):
    """An inline run wrote more than INLINE_MAX_BODY."""


class _HeldResponse(CollectedResponse):
    """The response of an inline run, held whole up to INLINE_MAX_BODY bytes of body."""

    __slots__ = ("overflowed", "size")

    def __init__(self) -> None:
        super().__init__()
        self.size = 0
        self.overflowed = False

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > INLINE_MAX_BODY:
            self.overflowed = True
            raise _Overflow(f"an inline response body is held up to {INLINE_MAX_BODY} bytes")
        super().write(data)


class WasiHttpExecutor:
    """Serves requests with a component's `incoming-handler`, one instance per request."""

    streaming = True

    def __init__(
        self, engine: WasmEngine, prepared: PreparedComponent, export: str, limits: Limits
    ) -> None:
        self.component = ComponentHandler(engine, prepared, export, "handle", limits)
        self.component_id = prepared.id
        #: May run on the caller's thread (`handle_inline`); cleared once a run overran.
        self.inline = not self.component.can_wait

    def handle_inline(self, request: HttpRequest, match: RouteMatch) -> HttpResponse | None:
        """The whole response of a run on this thread (the request body must be whole), or
        None when the guest ran past INLINE_TICKS or wrote more than INLINE_MAX_BODY: then
        run it with `handle` on a thread (this executor no longer runs inline)."""
        sink = _HeldResponse()
        if self._run(request, match, sink, INLINE_TICKS) or sink.overflowed:
            if self.inline:
                self.inline = False
                log.info(
                    "component %s ran longer than %d ms inline (or answered more than %d "
                    "bytes): it runs on threads from now on",
                    self.component_id,
                    INLINE_TICKS * 10,
                    INLINE_MAX_BODY,
                )
            return None
        if sink.response is None:
            raise RuntimeError("the executor produced no response")
        return sink.response

    def handle(self, request: HttpRequest, match: RouteMatch, sink: ResponseSink) -> None:
        self._run(request, match, sink, None)

    def _run(
        self, request: HttpRequest, match: RouteMatch, sink: ResponseSink, budget: int | None
    ) -> bool:
        """Run the guest, its response into `sink`; True when it overran its `budget`."""
        headers = [(k, v.encode("latin-1")) for k, v in forwarded_headers(request)]
        headers += [(k, v.encode("latin-1")) for k, v in spin_headers(request, match)]
        incoming = IncomingRequest(
            method=request.method,
            path_with_query=request.path_and_query,
            scheme=request.scheme,
            authority=request.host,
            headers=headers,
            body=request.body,
            body_rest=request.body_rest,
            trailers=_encoded(request.trailers),
        )
        outparam = ResponseOutparam(stream=sink)
        outcome = self.component.call(
            lambda table: [
                (Own(INCOMING_REQUEST), table.push(incoming)),
                (Own(RESPONSE_OUTPARAM), table.push(outparam)),
            ],
            None,
            before_block=sink.flush,  # what the guest produced goes out before it waits
            budget=budget,
            abandoned=(lambda: sink.overflowed) if isinstance(sink, _HeldResponse) else None,
        )
        if outcome.overran:
            return True
        failed = outcome.failure is not None
        if outparam.response is not None:  # the response started (went to the sink)
            self._finish_stream(sink, outparam, failed)
        elif failed:
            sink.respond(HttpResponse(500))
        elif not outparam.was_set:
            log.error("component %s did not set a response", self.component_id)
            sink.respond(HttpResponse(500))
        else:
            log.error("component %s responded with error %r", self.component_id, outparam.error)
            sink.respond(HttpResponse(500))
        return False

    def _finish_stream(self, sink: ResponseSink, outparam: ResponseOutparam, failed: bool) -> None:
        """The response has started: complete it, or cut it short."""
        assert outparam.response is not None
        body = outparam.response.body
        if body is not None and body.finished:
            return  # the end went out with outgoing-body.finish
        if not failed and (body is None or not body.write_taken):
            sink.end()  # no body was ever written
            return
        if not failed:
            log.error(
                "component %s dropped the response body without finishing it", self.component_id
            )
        sink.abort()


def _encoded(
    fields: Callable[[], list[tuple[str, str]]] | None,
) -> Callable[[], list[tuple[str, bytes]]] | None:
    if fields is None:
        return None
    return lambda: [(k, v.encode("latin-1")) for k, v in fields()]
