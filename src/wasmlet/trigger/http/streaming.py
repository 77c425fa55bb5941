"""Carrying a response from the Wasm worker thread to the event loop while it is produced.

A component sets its response and writes the body while its `handle` call runs on a worker
thread. `ResponseChannel` lets that thread hand over the start of the response and the body
as it comes; the event loop sends them to the client. Small, quick responses are not split:
the start and the body are held until the guest finishes (then they go out as one response
with a content-length), until 64 KiB are pending, or until the guest is about to wait for
something (`flush()`, called from the host's blocking points). A whole response is handed
to the event loop when the worker is done (`done()`, after the instance is freed) or when
the guest, still running, is about to wait for something: waking the loop while the worker
cleans up only makes the two threads contend for the GIL (measured: ~30% more CPU per
request for a tiny component). A slow client blocks the writer (at most `max_pending`
chunks wait); a client that goes away unblocks it.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from ...executors import HttpResponse
from ...gate import released

Event = tuple[Any, ...]


class ChannelClosed(Exception):
    """The client is gone: nothing more can be sent."""


class ResponseChannel:
    HOLD = 64 * 1024  # bytes held back before the body starts streaming

    def __init__(self, loop: asyncio.AbstractEventLoop, max_pending: int = 16) -> None:
        self._loop = loop
        self._events: collections.deque[Event] = collections.deque()
        self._wake = asyncio.Event()
        self._space = threading.Semaphore(max_pending)
        self._closed = False
        self.started = False  # the guest has set its response (start() was called)
        self._head: tuple[int, list[tuple[str, str]]] | None = None
        self._held: list[bytes] = []
        self._held_size = 0
        self._streaming = False  # the start has been handed to the event loop
        self._whole: HttpResponse | None = None  # a complete response not handed over yet
        self._complete = False  # the whole response is known (end, abort or respond)

    # -- the worker thread ----------------------------------------------------------------
    def start(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.started = True
        self._head = (status, headers)

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self._closed:
            raise ChannelClosed
        if not self._streaming:
            self._held.append(data)
            self._held_size += len(data)
            if self._held_size >= self.HOLD:
                self.flush()
            return
        self._send_chunk(data)

    def flush(self) -> None:
        """Start streaming now: send the start and whatever body is held (or the whole
        response, if it is complete)."""
        if self._whole is not None:
            self._put(("response", self._whole))
            self._whole = None
            return
        if self._streaming or self._head is None or self._complete:
            return
        self._streaming = True
        status, headers = self._head
        self._put(("start", status, headers))
        held, self._held = self._held, []
        for chunk in held:
            self._send_chunk(chunk)

    def _send_chunk(self, data: bytes) -> None:
        if not self._space.acquire(blocking=False):
            with released():  # a slow client: let another guest run meanwhile
                while not self._space.acquire(timeout=0.5):
                    if self._closed:
                        raise ChannelClosed
        if self._closed:
            raise ChannelClosed
        self._put(("body", data))

    def end(self, trailers: list[tuple[str, str]] | None = None) -> None:
        if not self._streaming and self._head is not None:
            status, headers = self._head
            self.respond(HttpResponse(status, headers, b"".join(self._held), trailers=trailers))
            return
        self._put(("end", trailers))

    def abort(self) -> None:
        """The guest failed after the response started: cut the body short."""
        if self._complete:
            return  # the whole response was known already: it goes out as it is
        if not self._streaming and self._head is not None:
            status, headers = self._head
            self.respond(HttpResponse(status, headers, b"".join(self._held), truncated=True))
            return
        self._put(("abort",))

    def respond(self, response: HttpResponse) -> None:
        """A complete response (nothing was streamed): handed over by `done()`, or by
        `flush()` if the guest waits for something first."""
        self._whole = response
        self._complete = True

    def done(self) -> None:
        """The worker has finished (called last, whatever happened)."""
        if self._whole is not None:
            self.flush()

    def _put(self, event: Event) -> None:
        self._events.append(event)
        self._loop.call_soon_threadsafe(self._wake.set)

    # -- the event loop -------------------------------------------------------------------
    def overdue(self) -> None:
        """The guest is past its deadline: the response ends with an `overdue` event."""
        self._events.append(("overdue",))
        self._wake.set()

    async def events(self) -> AsyncIterator[Event]:
        """Events until the response is complete (`end`, `abort`, `response`, or
        `overdue`)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._events:
                event = self._events.popleft()
                if event[0] == "body":
                    self._space.release()
                yield event
                if event[0] in ("end", "abort", "response", "overdue"):
                    return

    def close(self) -> None:
        """Stop accepting chunks (the client is gone or the response is done)."""
        self._closed = True
        self._space.release()


class RequestBodyReader:
    """The rest of a request body, read on demand from a worker thread: each call returns the
    next non-empty chunk, or None at the end. Raises when the client goes away, the body
    passes `limit` bytes, or no chunk arrives by `deadline(bytes received)` (a
    time.monotonic(); None: no limit): the guest sees a stream error."""

    def __init__(
        self,
        receive: Any,
        loop: asyncio.AbstractEventLoop,
        limit: int,
        received: int,
        deadline: Callable[[int], float | None] = lambda _: None,
    ) -> None:
        self._receive = receive
        self._loop = loop
        self._limit = limit
        self._received = received
        self._deadline = deadline
        self._done = False

    def __call__(self) -> bytes | None:
        while not self._done:
            message = self._next()
            if message["type"] == "http.disconnect":
                raise ConnectionError("the client went away before the body was complete")
            chunk = message.get("body", b"")
            self._received += len(chunk)
            if self._received > self._limit:
                raise ValueError(f"request body larger than {self._limit} bytes")
            self._done = not message.get("more_body", False)
            if chunk:
                return bytes(chunk)
        return None

    def _next(self) -> Any:
        future = asyncio.run_coroutine_threadsafe(self._receive(), self._loop)
        deadline = self._deadline(self._received)
        try:
            return future.result(
                None if deadline is None else max(0.0, deadline - time.monotonic())
            )
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError("the rest of the request body did not arrive in time") from None
