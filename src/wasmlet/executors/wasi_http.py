"""The wasi:http executor: components exporting `wasi:http/incoming-handler@0.2.x`.

Per request: a fresh store and instance, an `incoming-request` and a `response-outparam`
in the instance's resource table, one call of `handle`, then the response the guest set.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import wasmtime
import wasmtime.component

from ..engine import WasmEngine
from ..errors import EngineError
from ..trigger.http.headers import forwarded_headers, spin_headers
from ..trigger.http.router import RouteMatch
from ..trigger.http.streaming import ResponseChannel
from ..trigger.http.types import HttpRequest, HttpResponse
from ..wasi._abi import GuestError, HostTrap, Own, call_func
from ..wasi._iface import Interface
from ..wasi._state import InstanceState, active
from ..wasi.filesystem import FILES_ROOT
from ..wasi.host import build_linker
from ..wasi.http import (
    INCOMING_REQUEST,
    RESPONSE_OUTPARAM,
    IncomingRequest,
    ResponseOutparam,
    decode_fields,
)
from ..wasi.io import BEFORE_BLOCK

log = logging.getLogger("wasmlet.wasi_http")

HANDLER = "wasi:http/incoming-handler"
INBOUND_HTTP = "fermyon:spin/inbound-http"


def handler_exports(export_names: list[str]) -> list[str]:
    """The HTTP handler interfaces a component exports (by Spin's detection rules)."""
    found = []
    for name in export_names:
        base, _, version = name.partition("@")
        wasi_02 = base == HANDLER and version.startswith("0.2.")
        wasi_03 = base == "wasi:http/handler" and version.startswith("0.3")
        if wasi_02 or wasi_03 or base == INBOUND_HTTP:
            found.append(name)
    return found


CapabilityFactory = Callable[[], dict[str, Any]]


class ComponentExecutor:
    """What every component executor shares: linking, a fresh store per request, and the
    per-instance host state."""

    def __init__(
        self,
        engine: WasmEngine,
        component: wasmtime.component.Component,
        component_id: str,
        export: str,
        environment: dict[str, str],
        files_root: Any,
        capabilities: CapabilityFactory,
        host_interfaces: list[Interface],
    ) -> None:
        self.engine = engine
        self.component = component
        self.component_id = component_id
        self.environment = list(environment.items())
        self.files_root = str(files_root) if files_root is not None else None
        self.capabilities = capabilities
        self.linker = build_linker(engine.engine, component, host_interfaces)
        iface = component.get_export_index(export)
        func = component.get_export_index(self.entry, iface) if iface is not None else None
        if func is None:
            raise EngineError(f"component {component_id!r}: export {export} has no `{self.entry}`")
        self.handle_index = func

    entry = "handle"

    def _store(self) -> tuple[wasmtime.Store, float]:
        """A new store, and the monotonic time its WASI context (its clock) started."""
        store = wasmtime.Store(self.engine.engine)
        settings = self.engine.settings
        if settings.max_instance_memory is not None:
            store.set_limits(memory_size=settings.max_instance_memory)
        store.set_epoch_deadline(self.engine.deadline_ticks)
        wasi = wasmtime.WasiConfig()  # files are wasmlet's wasi:filesystem (FILES_ROOT)
        if self.environment:  # handing over even an empty list costs ~5 µs per request
            wasi.env = self.environment
        store.set_wasi(wasi)
        return store, time.monotonic()

    def _state(self, clock_base: float) -> InstanceState:
        capabilities = self.capabilities()
        if self.files_root is not None:
            capabilities = {**capabilities, FILES_ROOT: self.files_root}
        timeout = self.engine.settings.request_timeout
        deadline = time.monotonic() + timeout if timeout > 0 else None
        return InstanceState(self.component_id, capabilities, deadline, clock_base)

    def _log_failure(self, error: Exception) -> None:
        text = str(getattr(error, "cause", None) or error)
        if "interrupt" in text.lower() or "deadline" in text:
            log.error("component %s timed out", self.component_id)
        else:
            log.error("component %s trapped: %s", self.component_id, _trap_summary(text))


class WasiHttpExecutor(ComponentExecutor):
    """Serves requests with a component's `incoming-handler`, one instance per request."""

    streaming = True  # the HTTP trigger passes a ResponseChannel

    def handle(
        self, request: HttpRequest, match: RouteMatch, channel: ResponseChannel | None = None
    ) -> HttpResponse | None:
        """Run `handle`. With a `channel`, the response goes there (started as soon as the
        guest sets it, the body as it is written) and None is returned; without, the whole
        response is returned when the guest is done."""
        store, clock_base = self._store()
        state = self._state(clock_base)
        if channel is not None:  # the response goes out before the guest waits on anything
            state.capabilities = {**state.capabilities, BEFORE_BLOCK: channel.flush}
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
        outparam = ResponseOutparam(stream=channel)
        failure: Exception | None = None
        with active(state):
            try:
                instance = self.linker.instantiate(store, self.component)
                func = instance.get_func(store, self.handle_index)
                assert func is not None
                req_rep = state.table.push(incoming)
                out_rep = state.table.push(outparam)
                call_func(
                    store._context(),
                    func._func,
                    [(Own(INCOMING_REQUEST), req_rep), (Own(RESPONSE_OUTPARAM), out_rep)],
                    None,
                )
            except (GuestError, wasmtime.WasmtimeError, HostTrap) as e:
                failure = e
        if failure is not None:
            self._log_failure(failure)
        if channel is not None and channel.started:
            self._finish_stream(channel, outparam, failed=failure is not None)
            return None
        response = self._failed(outparam) if failure is not None else self._response(outparam)
        if channel is not None:
            channel.respond(response)
            return None
        return response

    def _finish_stream(
        self, channel: ResponseChannel, outparam: ResponseOutparam, failed: bool
    ) -> None:
        """The response has started: complete it, or cut it short."""
        body = outparam.response.body if outparam.response is not None else None
        if body is not None and body.finished:
            return  # the end went out with outgoing-body.finish
        if not failed and (body is None or not body.write_taken):
            channel.end()  # no body was ever written
            return
        if not failed:
            log.error(
                "component %s dropped the response body without finishing it", self.component_id
            )
        channel.abort()

    def _failed(self, outparam: ResponseOutparam) -> HttpResponse:
        response = outparam.response
        if response is not None and response.body is not None and response.body.stream.size:
            # The response had started: send what was written, then cut the body short.
            return HttpResponse(
                response.status,
                decode_fields(response.headers.entries),
                response.body.stream.getvalue(),
                truncated=True,
            )
        return HttpResponse(500)

    def _response(self, outparam: ResponseOutparam) -> HttpResponse:
        if not outparam.was_set:
            log.error("component %s did not set a response", self.component_id)
            return HttpResponse(500)
        if outparam.response is None:
            log.error("component %s responded with error %r", self.component_id, outparam.error)
            return HttpResponse(500)
        resp = outparam.response
        body = resp.body
        data = body.stream.getvalue() if body is not None else b""
        truncated = body is not None and not body.finished and body.write_taken
        if truncated:
            log.error(
                "component %s dropped the response body without finishing it", self.component_id
            )
        trailers = body.trailers if body is not None and body.finished else None
        return HttpResponse(
            resp.status,
            decode_fields(resp.headers.entries),
            data,
            truncated=truncated,
            trailers=decode_fields(trailers) if trailers else None,
        )


def _encoded(
    fields: Callable[[], list[tuple[str, str]]] | None,
) -> Callable[[], list[tuple[str, bytes]]] | None:
    if fields is None:
        return None
    return lambda: [(k, v.encode("latin-1")) for k, v in fields()]


def _trap_summary(text: str) -> str:
    """The informative part of a wasmtime error: what follows "Caused by:", else line one."""
    head, sep, cause = text.partition("Caused by:")
    lines = [line.strip() for line in (cause if sep else head).splitlines() if line.strip()]
    return "; ".join(lines) if lines else "unknown error"
