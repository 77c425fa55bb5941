"""The run gate (gate.py): fair, soft admission of running guests, released while waiting."""

from __future__ import annotations

import threading
import time

import pytest

from wasmlet.gate import RunGate, released, running


def test_slots_are_handed_over_in_arrival_order() -> None:
    gate = RunGate(1, patience=5)
    assert gate.acquire()
    order: list[int] = []

    def waiter(i: int) -> None:
        assert gate.acquire()
        order.append(i)
        gate.release()

    threads = []
    for i in range(5):
        t = threading.Thread(target=waiter, args=(i,))
        t.start()
        threads.append(t)
        while gate.waiting < i + 1:  # queued in this order
            time.sleep(0.001)
    gate.release()
    for t in threads:
        t.join(5)
    assert order == [0, 1, 2, 3, 4]


def test_a_waiter_runs_anyway_after_its_patience() -> None:
    gate = RunGate(1, patience=0.05)
    assert gate.acquire()  # held "forever" (a guest that loops)
    t0 = time.monotonic()
    assert gate.acquire() is False  # admitted without a slot
    assert 0.04 <= time.monotonic() - t0 < 1
    assert gate.waiting == 0
    gate.release()
    assert gate.acquire()  # the slot is free again


def test_released_lets_another_guest_run_while_one_waits() -> None:
    gate = RunGate(1, patience=5)
    inside = threading.Event()
    proceed = threading.Event()
    ran: list[str] = []

    def waits() -> None:
        with running(gate):
            ran.append("waiting guest started")
            with released():  # e.g. blocked on a database
                inside.set()
                proceed.wait(5)
            ran.append("waiting guest resumed")

    def runs() -> None:
        with running(gate):
            ran.append("other guest ran")

    a = threading.Thread(target=waits)
    a.start()
    assert inside.wait(5)
    b = threading.Thread(target=runs)
    b.start()
    b.join(5)  # got the slot although the first guest has not finished
    assert ran == ["waiting guest started", "other guest ran"]
    proceed.set()
    a.join(5)
    assert ran[-1] == "waiting guest resumed"
    assert gate.acquire()  # every slot came back


def test_nested_waits_give_back_exactly_one_slot() -> None:
    gate = RunGate(1, patience=0.05)
    with running(gate):
        with released(), released():  # e.g. a blocking call that polls inside
            assert gate.acquire()  # the slot was free meanwhile
            gate.release()
        assert gate.acquire() is False  # held again by this guest, once
    assert gate.acquire()  # and given back when it finished
    assert gate.acquire() is False  # one slot, not two


def test_no_gate_means_no_waiting_and_no_slot_given_away() -> None:
    gate = RunGate(1, patience=0.05)
    assert gate.acquire()  # held by this thread, but not as a running guest
    t0 = time.monotonic()
    with running(None), released():
        assert gate.acquire() is False  # released() gave nothing away …
    assert time.monotonic() - t0 < 0.5  # … and nothing waited for a slot but that acquire
    assert gate.waiting == 0


def test_a_gate_needs_a_slot() -> None:
    with pytest.raises(ValueError):
        RunGate(0)
