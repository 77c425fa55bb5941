"""The request (or message) being handled, for structured log lines (`--log-format json`).

A trigger that handles a request with JSON logs or tracing on makes a `RequestContext` (app,
component, a request id, the trace id) and `enter`s it on the event loop's task and on the
guest's thread, so that every log record made meanwhile, by wasmlet or from the guest's
stdout and stderr, carries it (`logs.JsonFormatter` reads `current()`). With text logs and no
tracing, nothing here runs on the request path.

Request ids are 16 hex digits: 8 random per process, then a per-process counter. Unique
across workers and restarts (with overwhelming probability) and much cheaper than a UUID.
"""

from __future__ import annotations

import contextvars
import itertools
import os

_enabled = False  # JSON logs are on: requests carry a context


class RequestContext:
    """Who handles the request: its app, component ("" if none), id and trace (hex; "" if
    none)."""

    __slots__ = ("app", "component", "request_id", "span_id", "trace_id")

    def __init__(
        self, app: str, component: str, request_id: str, trace_id: str = "", span_id: str = ""
    ) -> None:
        self.app = app
        self.component = component
        self.request_id = request_id
        self.trace_id = trace_id
        self.span_id = span_id

    def for_component(self, component: str) -> RequestContext:
        """The same request, handled by `component` (a message fanned out to several)."""
        return RequestContext(self.app, component, self.request_id, self.trace_id, self.span_id)


_current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "wasmlet_request", default=None
)


def enable() -> None:
    """Requests carry a context from now on (`--log-format json`; before the app is built)."""
    global _enabled
    _enabled = True


def enabled() -> bool:
    return _enabled


def current() -> RequestContext | None:
    """The request handled on this thread (or asyncio task), if any."""
    return _current.get()


def enter(ctx: RequestContext) -> contextvars.Token[RequestContext | None]:
    return _current.set(ctx)


def leave(token: contextvars.Token[RequestContext | None]) -> None:
    _current.reset(token)


def _new_prefix() -> None:
    global _prefix, _counter
    _prefix = os.urandom(4).hex()
    _counter = itertools.count(1)


_prefix = ""
_counter = itertools.count(1)
_new_prefix()
os.register_at_fork(after_in_child=_new_prefix)  # a forked child must not repeat its parent's


def new_request_id() -> str:
    """A new request id (16 hex digits; ~0.2 µs)."""
    return f"{_prefix}{next(_counter) & 0xFFFFFFFF:08x}"


_HEX = frozenset("0123456789abcdef")


def traceparent_ids(value: str) -> tuple[str, str] | None:
    """(trace id, parent span id) of a W3C `traceparent` header value, or None when it is not
    a valid one (W3C Trace Context, level 1: version 00, or a later version's first fields)."""
    value = value.strip()
    if len(value) < 55 or value[2] != "-" or value[35] != "-" or value[52] != "-":
        return None
    version, trace_id, span_id = value[:2], value[3:35], value[36:52]
    if version == "ff" or (version == "00" and len(value) != 55):
        return None
    if not _HEX.issuperset(version + trace_id + span_id + value[53:55]):
        return None
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return trace_id, span_id
