"""The threads guests run on: a pool that grows for guests waiting in host calls.

A guest runs on one thread from start to end, and a guest that sleeps, waits for a socket,
a database or a slow client keeps its thread meanwhile (wasmtime-py cannot suspend a call
into Wasm and resume it on another thread). With a fixed pool, a few dozen such guests took
every thread and requests to other routes queued behind them (issue 18). So `GuestPool`
counts a thread inside a host wait (`waiting()`, entered by `gate.released()` at every
blocking point) as not busy: `threads` threads may be busy at once, and while some of them
wait, queued requests start on further threads, at most `max_waiting` of them beyond
`threads`. Threads beyond `threads` that have been idle for `linger` seconds end. Measured
against a bigger fixed pool and a per-route bound in docs/benchmarks.md (bench/waiters.py).

Of those `threads`, only `running` start at once (default: all): one more starts when the
oldest queued request has waited `patience` seconds. Python runs one thread at a time, so
starting every request on its own thread only made the threads take turns at the run gate
(gate.py), each turn a thread switch: with `running=1` one thread runs the queued requests
one after the other, and a guest that computes for long still holds up the others for at
most `patience` (measured in docs/benchmarks.md, "Per-request cost").

A `group` (one app of a multi-app host) may also have at most `limit` of its requests busy
at once, waiting ones not counted; its other requests queue in the group, and groups with
queued requests take turns for free threads, so a busy or looping app cannot take every
thread and one whose guests wait is not held up by them.
"""

from __future__ import annotations

import collections
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_MAX_WAITING = 64  # guests waiting in host calls on threads of their own, per process
DEFAULT_PATIENCE = 0.05  # seconds queued work waits for one of `running` before it starts anyway


class _Work:
    __slots__ = ("args", "fn", "future", "group", "kwargs", "queued")

    def __init__(self, group: PoolGroup, fn: Callable[..., Any], args: Any, kwargs: Any) -> None:
        self.group, self.fn, self.args, self.kwargs = group, fn, args, kwargs
        self.future: Future[Any] = Future()
        self.queued = time.monotonic()

    def run(self) -> None:
        if not self.future.set_running_or_notify_cancel():
            return
        try:
            result = self.fn(*self.args, **self.kwargs)
        except BaseException as e:  # the caller gets it through the future
            self.future.set_exception(e)
        else:
            self.future.set_result(result)


class _Idle:
    """An idle thread, woken with work (or None: end)."""

    __slots__ = ("event", "work")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.work: _Work | None = None


class _Worker(threading.local):
    pool: GuestPool | None = None
    group: PoolGroup | None = None  # of the work this thread runs
    depth = 0  # nested waits count once


_worker = _Worker()


class PoolGroup(Executor):
    """Work of one app on a `GuestPool`: at most `limit` of it busy at once, waiting work not
    counted. Its state is guarded by the pool's lock."""

    def __init__(self, pool: GuestPool, limit: int) -> None:
        if limit < 1:
            raise ValueError("a pool group needs room for one request")
        self.pool = pool
        self.limit = limit
        self.busy = 0  # its work running on a thread, waiting work included
        self.waiting = 0  # … of which inside a host wait
        self.queue: collections.deque[_Work] = collections.deque()
        self.taking_turns = False  # in the pool's round of groups with work to start

    def room(self) -> bool:
        return self.busy - self.waiting < self.limit

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        return self.pool._submit(_Work(self, fn, args, kwargs))

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """The pool is shared: its owner shuts it down."""


class GuestPool(Executor):
    """An executor whose threads inside host waits do not count against `threads`."""

    def __init__(
        self,
        threads: int,
        max_waiting: int = DEFAULT_MAX_WAITING,
        name: str = "wasmlet-wasm",
        linger: float = 10.0,
        running: int | None = None,
        patience: float = DEFAULT_PATIENCE,
    ) -> None:
        if threads < 1 or max_waiting < 0:
            raise ValueError("a guest pool needs a thread, and cannot wait on fewer than none")
        self.threads = threads
        self.running = threads if running is None else max(1, min(running, threads))
        self.patience = patience
        self.max_waiting = max_waiting
        self._name = name
        self._linger = linger
        self._lock = threading.Lock()
        self._overdue = threading.Condition(self._lock)  # wakes the watch for overdue work
        self._watch: threading.Thread | None = None
        self._watch_idle = False  # the watch waits for work to be queued (not timed)
        self._own = PoolGroup(self, sys.maxsize)  # work submitted to the pool itself
        self._turns: collections.deque[PoolGroup] = collections.deque()  # groups, in turn
        self._groups: weakref.WeakSet[PoolGroup] = weakref.WeakSet({self._own})
        self._queued = 0
        self._idle: list[_Idle] = []  # the last one idled is woken first
        self._alive: set[threading.Thread] = set()
        self._busy = 0  # threads running work, waiting ones included
        self._waiting = 0  # … of which inside a host wait
        self._shutdown = False
        self._serial = 0

    # -- what callers see -----------------------------------------------------------------
    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        return self._submit(_Work(self._own, fn, args, kwargs))

    def group(self, limit: int) -> PoolGroup:
        """An executor on this pool for one app's work: at most `limit` of it busy at once
        (waiting work not counted), the rest queued in turn with other groups."""
        group = PoolGroup(self, limit)
        with self._lock:
            self._groups.add(group)
        return group

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                for group in list(self._groups):
                    while group.queue:
                        group.queue.popleft().future.cancel()
                        self._queued -= 1
            idle, self._idle = self._idle, []
            threads = list(self._alive)
            self._overdue.notify()
        for waiter in idle:
            waiter.event.set()  # no work: the thread ends
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()

    def stats(self) -> dict[str, int]:
        """Threads alive, busy (running work), waiting (in a host wait), work queued."""
        with self._lock:
            return {
                "threads": len(self._alive),
                "busy": self._busy,
                "waiting": self._waiting,
                "queued": self._queued,
            }

    # -- inside (the lock held) -------------------------------------------------------------
    def _submit(self, work: _Work) -> Future[Any]:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new work after shutdown")
            work.group.queue.append(work)
            self._queued += 1
            self._turn(work.group)
            self._dispatch()
        return work.future

    def _turn(self, group: PoolGroup) -> None:
        """Let `group` take turns for threads, if it has work to start and room for it."""
        if not group.taking_turns and group.queue and group.room():
            group.taking_turns = True
            self._turns.append(group)

    def _take(self) -> _Work | None:
        """The next work to start, from the next group in turn with room, counted busy in
        its group; None when there is none."""
        while self._turns:
            group = self._turns.popleft()
            if not group.queue or not group.room():
                group.taking_turns = False  # back when it has work and room (`_turn`)
                continue
            work = group.queue.popleft()
            self._queued -= 1
            group.busy += 1
            if group.queue and group.room():
                self._turns.append(group)
            else:
                group.taking_turns = False
            return work
        return None

    def _room(self) -> bool:
        """Whether queued work may start now: fewer than `running` busy threads are not
        waiting, or fewer than `threads` and the next work has waited `patience`."""
        running = self._busy - self._waiting
        if running < self.running:
            return True
        if running >= self.threads or not self._turns:
            return False
        head = self._turns[0].queue
        return bool(head) and time.monotonic() - head[0].queued >= self.patience

    def _dispatch(self) -> None:
        """Start queued work while there is room (`_room`): on an idle thread, else on a new
        one while the waiters' allowance lasts."""
        while self._turns and self._room():
            if not self._idle and len(self._alive) >= self.threads + self.max_waiting:
                return
            work = self._take()
            if work is None:
                return
            self._busy += 1
            if self._idle:
                waiter = self._idle.pop()
                waiter.work = work
                waiter.event.set()
            else:
                self._serial += 1
                thread = threading.Thread(
                    target=self._work,
                    args=(work,),
                    name=f"{self._name}_{self._serial}",
                    daemon=True,  # a guest stuck in a host call must not hold up exit
                )
                self._alive.add(thread)
                thread.start()
        self._watch_overdue()

    def _watch_overdue(self) -> None:
        """If queued work is left (and may start beyond `running`), have the watch start it
        once it has waited `patience`."""
        if not self._turns or self.running >= self.threads:
            return
        if self._watch is None:
            self._watch = threading.Thread(
                target=self._watching, name=f"{self._name}-watch", daemon=True
            )
            self._watch.start()
        elif self._watch_idle:  # else it is timed to look at the oldest work already
            self._overdue.notify()

    def _watching(self) -> None:
        """Start work that has waited `patience` while `running` threads were busy."""
        with self._lock:
            while not self._shutdown:
                self._dispatch()
                if not self._turns or self._busy - self._waiting >= self.threads:
                    self._watch_idle = True
                    self._overdue.wait()  # until work is queued, or a thread is free
                    self._watch_idle = False
                    continue
                head = self._turns[0].queue
                waited = time.monotonic() - head[0].queued if head else 0.0
                self._overdue.wait(max(self.patience - waited, self.patience / 10))

    def _work(self, work: _Work | None) -> None:
        _worker.pool = self
        while work is not None:
            _worker.group = work.group
            work.run()
            group = work.group
            del work  # drop the request before idling
            work = self._next(group)
        _worker.pool = _worker.group = None

    def _next(self, done: PoolGroup) -> _Work | None:
        """The next work for this thread, after its last (of group `done`) is finished;
        None: the thread ends."""
        with self._lock:
            self._busy -= 1
            done.busy -= 1
            self._turn(done)
            if self._room() and (work := self._take()) is not None:
                self._busy += 1
                self._watch_overdue()  # what is left may start elsewhere when overdue
                return work
            if self._shutdown:
                self._alive.discard(threading.current_thread())
                return None
            self._watch_overdue()
            waiter = _Idle()
            self._idle.append(waiter)
        while True:
            woken = waiter.event.wait(self._linger)
            with self._lock:
                if woken or waiter.work is not None:
                    if waiter.work is None:
                        self._alive.discard(threading.current_thread())
                    return waiter.work
                if len(self._alive) > self.threads:  # an extra thread, idle too long: end
                    self._idle.remove(waiter)
                    self._alive.discard(threading.current_thread())
                    return None

    def _wait_begins(self, group: PoolGroup) -> None:
        with self._lock:
            self._waiting += 1
            group.waiting += 1
            self._turn(group)
            self._dispatch()

    def _wait_ends(self, group: PoolGroup) -> None:
        with self._lock:
            self._waiting -= 1
            group.waiting -= 1


@contextmanager
def waiting() -> Iterator[None]:
    """Around a wait inside a guest's host call: on a `GuestPool` thread, let queued work
    start on another thread meanwhile. Elsewhere (and when nested), a no-op."""
    pool, group = _worker.pool, _worker.group
    if pool is None or group is None or _worker.depth:
        _worker.depth += 1
        try:
            yield
        finally:
            _worker.depth -= 1
        return
    _worker.depth = 1
    pool._wait_begins(group)
    try:
        yield
    finally:
        pool._wait_ends(group)
        _worker.depth = 0
