"""How many guests run at once in one worker process.

Every host call is Python, and Python runs one thread at a time (the GIL). When several
guests run on a worker's threads at once, they mostly take turns for the GIL, and each
turn costs a thread switch: measured on 2 cores at concurrency 16, a JS component used 1.9 ms
of CPU per request with one thread and 3.5 ms with four. So a worker lets `slots` guests run
at a time (default 1) and queues the others, first come first served. A guest that waits
(for I/O, a timer, a slow client: `released()` at the host's blocking points) gives its slot
to the next one meanwhile, so waiting guests do not hold up running ones; other cores are
used with `--workers N`.

The gate is soft: a guest that has waited `patience` seconds for a slot runs anyway. A guest
that computes for long (or loops until its deadline) therefore slows the others down but
never stops them, as before the gate.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from .pool import waiting

DEFAULT_PATIENCE = 0.05  # seconds


class RunGate:
    """A fair, soft semaphore: slots handed over in arrival order, waits bounded."""

    def __init__(self, slots: int = 1, patience: float = DEFAULT_PATIENCE) -> None:
        if slots < 1:
            raise ValueError("a run gate needs at least one slot")
        self.patience = patience
        self._lock = threading.Lock()
        self._free = slots
        self._queue: collections.deque[threading.Lock] = collections.deque()

    def acquire(self) -> bool:
        """Wait for a slot. True when one was taken; False when `patience` ran out first
        (the caller runs without one)."""
        with self._lock:
            if self._free and not self._queue:
                self._free -= 1
                return True
            waiter = threading.Lock()
            waiter.acquire()
            self._queue.append(waiter)
        if waiter.acquire(timeout=self.patience):
            return True  # release() handed its slot over
        with self._lock:
            try:
                self._queue.remove(waiter)
                return False
            except ValueError:
                pass  # handed a slot just as the wait ran out
        waiter.acquire()  # already released: returns at once
        return True

    def try_acquire(self) -> bool:
        """Take a slot if one is free now and nobody is waiting for one."""
        with self._lock:
            if self._free and not self._queue:
                self._free -= 1
                return True
            return False

    def release(self) -> None:
        """Give a slot back: to the longest waiter, if any."""
        with self._lock:
            if self._queue:
                self._queue.popleft().release()
            else:
                self._free += 1

    @property
    def waiting(self) -> int:
        return len(self._queue)


class _Held(threading.local):
    gate: RunGate | None = None
    holding = False


_held = _Held()


@contextmanager
def running(gate: RunGate | None) -> Iterator[None]:
    """Run a guest on this thread under `gate` (None: no gate)."""
    if gate is None:
        yield
        return
    _held.gate, _held.holding = gate, gate.acquire()
    try:
        yield
    finally:
        if _held.holding:
            gate.release()
        _held.gate, _held.holding = None, False


@contextmanager
def released() -> Iterator[None]:
    """Around a wait inside a guest's host call: let another guest run meanwhile, and let
    the guest pool start queued requests on other threads (pool.py). Gives no slot away
    when this thread holds none (no gate, admitted without one, or nested)."""
    with waiting():
        gate = _held.gate
        if gate is None or not _held.holding:
            yield
            return
        gate.release()
        _held.holding = False
        try:
            yield
        finally:
            _held.holding = gate.acquire()
