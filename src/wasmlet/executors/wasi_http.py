"""The wasi:http executor: components exporting `wasi:http/incoming-handler@0.2.x`.

Per request: a fresh store and instance, an `incoming-request` and a `response-outparam`
in the instance's resource table, one call of `handle`. The response goes to the sink as the
guest produces it: started when the guest sets it, the body as it writes it.
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
from .types import HttpRequest, HttpResponse, ResponseSink, RouteMatch

log = logging.getLogger("wasmlet.wasi_http")


class WasiHttpExecutor:
    """Serves requests with a component's `incoming-handler`, one instance per request."""

    streaming = True

    def __init__(
        self, engine: WasmEngine, prepared: PreparedComponent, export: str, limits: Limits
    ) -> None:
        self.component = ComponentHandler(engine, prepared, export, "handle", limits)
        self.component_id = prepared.id

    def handle(self, request: HttpRequest, match: RouteMatch, sink: ResponseSink) -> None:
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
        )
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
