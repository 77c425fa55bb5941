"""Waiting on sockets: one daemon thread turns socket readiness into futures, so that io.py's
`wait_any` can wait on sockets, pollables from HTTP and clocks together."""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import select
import selectors
import threading
from typing import Protocol

from ..io import Pollable

log = logging.getLogger("wasmlet.sockets")


def _resolve(future: concurrent.futures.Future[object]) -> None:
    with contextlib.suppress(concurrent.futures.InvalidStateError):  # done by another thread
        future.set_result(None)


class _Reactor:
    """One daemon thread that completes a future when a socket becomes readable or writable."""

    def __init__(self) -> None:
        self._lock = threading.RLock()  # a socket may be collected (and forgotten) anywhere
        self._selector: selectors.BaseSelector | None = None
        self._waiters: dict[int, list[tuple[int, concurrent.futures.Future[object]]]] = {}
        self._wake_r = self._wake_w = -1

    def _start(self) -> selectors.BaseSelector:
        if self._selector is None:
            self._selector = selectors.DefaultSelector()
            self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            self._selector.register(self._wake_r, selectors.EVENT_READ)
            threading.Thread(target=self._run, name="wasmlet-sockets", daemon=True).start()
        return self._selector

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # already awake
            os.write(self._wake_w, b"\0")

    def _update(self, selector: selectors.BaseSelector, fd: int) -> None:
        waiters = self._waiters.get(fd)
        mask = 0
        for events, _ in waiters or ():
            mask |= events
        registered = fd in selector.get_map()
        try:
            if not mask:
                self._waiters.pop(fd, None)
                if registered:
                    selector.unregister(fd)
            elif registered:
                selector.modify(fd, mask)
            else:
                selector.register(fd, mask)
        except (OSError, ValueError, KeyError):  # closed meanwhile: wake its waiters to see
            for _, future in self._waiters.pop(fd, []):
                _resolve(future)
            with contextlib.suppress(Exception):
                selector.unregister(fd)

    def wait(self, fd: int, events: int) -> concurrent.futures.Future[object]:
        future: concurrent.futures.Future[object] = concurrent.futures.Future()
        with self._lock:
            selector = self._start()
            self._waiters.setdefault(fd, []).append((events, future))
            self._update(selector, fd)
        self._wake()
        return future

    def forget(self, fd: int) -> None:
        """Before `fd` closes: drop its registration and wake whoever waits on it."""
        with self._lock:
            waiters = self._waiters.pop(fd, [])
            if self._selector is not None and fd in self._selector.get_map():
                self._selector.unregister(fd)
        for _, future in waiters:
            _resolve(future)
        if waiters:
            self._wake()

    def _run(self) -> None:
        while True:
            try:
                self._once()
            except Exception:  # keep serving the other sockets
                log.exception("sockets reactor")

    def _once(self) -> None:
        assert self._selector is not None
        ready = self._selector.select()
        done: list[concurrent.futures.Future[object]] = []
        with self._lock:
            for key, mask in ready:
                if key.fd == self._wake_r:
                    with contextlib.suppress(BlockingIOError):
                        while os.read(self._wake_r, 512):
                            pass
                    continue
                keep = []
                for events, future in self._waiters.get(key.fd, ()):
                    if events & mask:
                        done.append(future)
                    else:
                        keep.append((events, future))
                self._waiters[key.fd] = keep
                self._update(self._selector, key.fd)
        for future in done:
            _resolve(future)


_reactor = _Reactor()


def forget(fd: int) -> None:
    """Before `fd` closes: stop watching it and wake whoever waits on it."""
    _reactor.forget(fd)


def poll_now(fd: int, events: int) -> bool:
    """Whether `fd` is ready for `events` (select.POLLIN / POLLOUT) right now."""
    p = select.poll()
    p.register(fd, events)
    return bool(p.poll(0))


class Watched(Protocol):
    """What a `SocketPollable` watches: a socket's descriptor, -1 once it is closed."""

    fd: int


class SocketPollable(Pollable):
    """Ready when the socket is ready for `events` (select.POLLIN / POLLOUT) or closed."""

    def __init__(self, conn: Watched, events: int) -> None:
        self.conn = conn
        self.events = events
        self._future: concurrent.futures.Future[object] | None = None

    def ready(self) -> bool:
        return self.conn.fd < 0 or poll_now(self.conn.fd, self.events)

    def future(self) -> concurrent.futures.Future[object] | None:
        if self.conn.fd < 0:
            return None
        if self._future is None or self._future.done():
            kind = selectors.EVENT_READ if self.events & select.POLLIN else selectors.EVENT_WRITE
            self._future = _reactor.wait(self.conn.fd, kind)
        return self._future
