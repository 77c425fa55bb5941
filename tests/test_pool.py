"""The guest pool (pool.py): threads inside host waits do not count, groups bound one app."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Future

import pytest

from wasmlet.pool import GuestPool, waiting


@pytest.fixture
def pools() -> Iterator[Callable[..., GuestPool]]:
    made: list[GuestPool] = []
    gates: list[threading.Event] = []

    def make(
        threads: int,
        max_waiting: int = 8,
        linger: float = 10.0,
        running: int | None = None,
        patience: float = 0.05,
    ) -> GuestPool:
        made.append(
            GuestPool(threads, max_waiting, linger=linger, running=running, patience=patience)
        )
        return made[-1]

    yield make
    for gate in gates:
        gate.set()
    for pool in made:
        pool.shutdown(wait=False, cancel_futures=True)


def blocked(gate: threading.Event, started: threading.Event | None = None) -> Callable[[], str]:
    """A task that blocks (holding its thread, not waiting) until `gate` is set."""

    def task() -> str:
        if started is not None:
            started.set()
        assert gate.wait(10)
        return "done"

    return task


def sleeper(gate: threading.Event, started: threading.Event | None = None) -> Callable[[], str]:
    """A task that waits in a 'host call' (`waiting()`) until `gate` is set."""

    def task() -> str:
        with waiting():
            if started is not None:
                started.set()
            assert gate.wait(10)
        return "woke"

    return task


def settle(pool: GuestPool, **expected: int) -> dict[str, int]:
    """The pool's stats once they show `expected` (or after a second)."""
    deadline = time.monotonic() + 1
    while True:
        stats = pool.stats()
        if all(stats[k] == v for k, v in expected.items()) or time.monotonic() > deadline:
            return stats


def test_waiting_threads_do_not_count_against_threads(pools: Callable[..., GuestPool]) -> None:
    pool = pools(2, max_waiting=4)
    gate = threading.Event()
    sleepers = [pool.submit(sleeper(gate)) for _ in range(4)]
    assert settle(pool, waiting=4)["waiting"] == 4
    assert pool.submit(lambda: "quick").result(2) == "quick"
    assert pool.stats()["threads"] == 5
    gate.set()
    assert [f.result(5) for f in sleepers] == ["woke"] * 4


def test_busy_threads_are_bounded(pools: Callable[..., GuestPool]) -> None:
    pool = pools(2, max_waiting=8)
    gate = threading.Event()
    futures = [pool.submit(blocked(gate)) for _ in range(3)]
    stats = settle(pool, busy=2, queued=1)
    assert (stats["busy"], stats["queued"], stats["threads"]) == (2, 1, 2)
    gate.set()
    assert [f.result(5) for f in futures] == ["done"] * 3


def test_waiters_beyond_max_waiting_queue(pools: Callable[..., GuestPool]) -> None:
    pool = pools(1, max_waiting=1)
    gate = threading.Event()
    futures = [pool.submit(sleeper(gate)) for _ in range(2)]
    settle(pool, waiting=2)
    late = pool.submit(lambda: "late")
    time.sleep(0.1)
    assert not late.done()  # two threads, both waiting: no third
    assert pool.stats()["threads"] == 2
    gate.set()
    assert late.result(5) == "late"
    assert [f.result(5) for f in futures] == ["woke"] * 2


def test_without_room_for_waiters_a_waiting_guest_holds_its_thread(
    pools: Callable[..., GuestPool],
) -> None:
    pool = pools(1, max_waiting=0)
    gate = threading.Event()
    first = pool.submit(sleeper(gate))
    settle(pool, waiting=1)
    second = pool.submit(lambda: "second")
    time.sleep(0.1)
    assert not second.done()
    gate.set()
    assert (first.result(5), second.result(5)) == ("woke", "second")


def test_nested_waits_count_once(pools: Callable[..., GuestPool]) -> None:
    pool = pools(1)
    gate = threading.Event()
    inside = threading.Event()

    def task() -> None:
        with waiting(), waiting():
            inside.set()
            assert gate.wait(10)
        with waiting():  # and a later wait counts again
            pass

    future = pool.submit(task)
    assert inside.wait(5)
    assert settle(pool, waiting=1)["waiting"] == 1
    gate.set()
    future.result(5)
    assert settle(pool, waiting=0, busy=0)["waiting"] == 0


def test_waiting_outside_a_pool_is_a_no_op() -> None:
    with waiting(), waiting():
        pass


def test_extra_threads_end_after_lingering(pools: Callable[..., GuestPool]) -> None:
    pool = pools(1, max_waiting=4, linger=0.1)
    gate = threading.Event()
    futures = [pool.submit(sleeper(gate)) for _ in range(4)]
    settle(pool, waiting=4)
    assert pool.stats()["threads"] == 4
    gate.set()
    for f in futures:
        f.result(5)
    assert settle(pool, threads=1)["threads"] == 1
    assert pool.submit(lambda: 7).result(5) == 7


def test_exceptions_reach_the_caller(pools: Callable[..., GuestPool]) -> None:
    pool = pools(1)

    def fails() -> None:
        raise ValueError("guest failed")

    with pytest.raises(ValueError, match="guest failed"):
        pool.submit(fails).result(5)
    assert pool.submit(lambda: "still serving").result(5) == "still serving"


def test_shutdown_cancels_queued_work(pools: Callable[..., GuestPool]) -> None:
    pool = pools(1, max_waiting=0)
    gate = threading.Event()
    running = pool.submit(blocked(gate))
    group = pool.group(1)
    queued: list[Future[int]] = [pool.submit(lambda: 1), group.submit(lambda: 2)]
    settle(pool, queued=2)
    gate.set()
    pool.shutdown(wait=True, cancel_futures=True)
    assert running.result(5) == "done"
    for f in queued:
        with pytest.raises(CancelledError):
            f.result(5)
    with pytest.raises(RuntimeError):
        pool.submit(lambda: 3)


# -- groups: one app of a multi-app host ---------------------------------------------------


def test_a_group_is_bounded_and_others_go_on(pools: Callable[..., GuestPool]) -> None:
    """A group of 2 with 5 looping requests: 2 run, 3 queue in the group, and work of another
    group (or of the pool itself) starts at once on the threads left."""
    pool = pools(4)
    busy_app, other_app = pool.group(2), pool.group(2)
    gate = threading.Event()
    loops = [busy_app.submit(blocked(gate)) for _ in range(5)]
    settle(pool, busy=2, queued=3)
    assert other_app.submit(lambda: "other").result(2) == "other"
    assert pool.submit(lambda: "own").result(2) == "own"
    assert pool.stats()["queued"] == 3
    gate.set()
    assert [f.result(5) for f in loops] == ["done"] * 5


def test_a_groups_waiting_work_does_not_count_against_it(
    pools: Callable[..., GuestPool],
) -> None:
    """A group of 1 whose request waits (sleeps in a host call): its next request starts."""
    pool = pools(2)
    app = pool.group(1)
    gate = threading.Event()
    sleeping = app.submit(sleeper(gate))
    settle(pool, waiting=1)
    assert app.submit(lambda: "next").result(2) == "next"
    gate.set()
    assert sleeping.result(5) == "woke"


def test_groups_take_turns_for_threads(pools: Callable[..., GuestPool]) -> None:
    """One thread, held; then group A queues 4 requests and group B one: once the thread is
    free, B's request is the second to run, not the fifth."""
    pool = pools(1, max_waiting=0)
    gate = threading.Event()
    holder = pool.submit(blocked(gate))
    settle(pool, busy=1)
    order: list[str] = []
    a, b = pool.group(8), pool.group(8)
    futures = [a.submit(order.append, f"a{i}") for i in range(4)]
    futures.append(b.submit(order.append, "b0"))
    gate.set()
    holder.result(5)
    for f in futures:
        f.result(5)
    assert order[:2] == ["a0", "b0"], order
    assert order[2:] == ["a1", "a2", "a3"]


def test_a_group_needs_room_for_one() -> None:
    pool = GuestPool(1)
    try:
        with pytest.raises(ValueError):
            pool.group(0)
    finally:
        pool.shutdown()


def test_the_instance_pool_is_sized_for_every_thread() -> None:
    """Each thread may hold an instance of 14 core modules (a Python component): the engine's
    pooling allocator gets 16 per thread, never fewer than its default, at most 8192."""
    from wasmlet.engine import EngineSettings
    from wasmlet.running import pool_sized

    default = EngineSettings(cache_dir=None)
    assert pool_sized(default, 8).pool_instances == 256
    assert pool_sized(default, 8 + 64).pool_instances == 1152
    assert pool_sized(default, 10_000).pool_instances == 8192


# -- `running`: how many start at once; the rest of `threads` once queued work is overdue --


def test_with_one_running_queued_work_runs_on_the_same_thread(
    pools: Callable[..., GuestPool],
) -> None:
    """Quick work queued behind a running one is not handed to other threads: one thread runs
    it all, one after the other (no thread switch per request)."""
    pool = pools(8, running=1, patience=5.0)
    gate = threading.Event()
    first = pool.submit(blocked(gate))
    rest = [pool.submit(threading.get_ident) for _ in range(20)]
    assert settle(pool, busy=1, queued=20) == {"threads": 1, "busy": 1, "waiting": 0, "queued": 20}
    gate.set()
    assert first.result(5) == "done"
    assert len({f.result(5) for f in rest}) == 1
    assert pool.stats()["threads"] == 1


def test_overdue_work_starts_on_another_thread_after_patience(
    pools: Callable[..., GuestPool],
) -> None:
    """A guest that computes for long holds up the queue for `patience`, not longer."""
    pool = pools(4, running=1, patience=0.2)
    gate = threading.Event()
    began = time.monotonic()
    pool.submit(blocked(gate))
    second = pool.submit(time.monotonic)
    try:
        started = second.result(5)
    finally:
        gate.set()
    assert 0.2 <= started - began < 1.5


def test_overdue_work_never_passes_threads(pools: Callable[..., GuestPool]) -> None:
    """However long the queue waits, at most `threads` run (not waiting) at once."""
    pool = pools(2, running=1, patience=0.05)
    gate = threading.Event()
    for _ in range(5):
        pool.submit(blocked(gate))
    time.sleep(0.5)
    assert settle(pool, busy=2, queued=3)["busy"] == 2
    gate.set()


def test_a_waiting_guest_lets_the_next_start_at_once(pools: Callable[..., GuestPool]) -> None:
    """`running` counts running guests: one inside a host wait is not running."""
    pool = pools(4, running=1, patience=10.0)
    gate = threading.Event()
    started = threading.Event()
    pool.submit(sleeper(gate, started))
    assert started.wait(5)
    began = time.monotonic()
    assert pool.submit(time.monotonic).result(5) - began < 1.0
    gate.set()
