"""Carrying a response from the Wasm worker thread to the event loop while it is produced.

A component sets its response and writes the body while its `handle` call runs on a worker
thread. `ResponseChannel` lets that thread hand over the start of the response and each body
chunk as they come; the event loop sends them to the client. A slow client blocks the writer
(at most `max_pending` chunks wait), and a client that goes away unblocks it.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import AsyncIterator
from typing import Any

from .types import HttpResponse

Event = tuple[Any, ...]


class ChannelClosed(Exception):
    """The client is gone: nothing more can be sent."""


class ResponseChannel:
    def __init__(self, loop: asyncio.AbstractEventLoop, max_pending: int = 16) -> None:
        self._loop = loop
        self._events: collections.deque[Event] = collections.deque()
        self._wake = asyncio.Event()
        self._space = threading.Semaphore(max_pending)
        self._closed = False
        self.started = False  # set on the worker side by start()

    # -- the worker thread ----------------------------------------------------------------
    def start(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.started = True
        self._put(("start", status, headers))

    def write(self, data: bytes) -> None:
        if not data:
            return
        while not self._space.acquire(timeout=0.5):
            if self._closed:
                raise ChannelClosed
        if self._closed:
            raise ChannelClosed
        self._put(("body", data))

    def end(self) -> None:
        self._put(("end",))

    def abort(self) -> None:
        """The guest failed after the response started: cut the body short."""
        self._put(("abort",))

    def respond(self, response: HttpResponse) -> None:
        """A complete response (nothing was streamed)."""
        self._put(("response", response))

    def _put(self, event: Event) -> None:
        self._events.append(event)
        self._loop.call_soon_threadsafe(self._wake.set)

    # -- the event loop -------------------------------------------------------------------
    async def events(self) -> AsyncIterator[Event]:
        """Events until the response is complete (`end`, `abort` or `response`)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._events:
                event = self._events.popleft()
                if event[0] == "body":
                    self._space.release()
                yield event
                if event[0] in ("end", "abort", "response"):
                    return

    def close(self) -> None:
        """Stop accepting chunks (the client is gone or the response is done)."""
        self._closed = True
        self._space.release()
