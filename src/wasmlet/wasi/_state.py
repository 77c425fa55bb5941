"""Per-instance host state: the resource table and each capability's share.

A component instance runs on one thread from start to end, so host functions find the state
of the instance that called them through a thread-local (`current()`), set by the executor
around each call into the guest. A capability is found by its typed `Key`
(`current().get(KEY)`), which the factor that provides it defines.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Generic, TypeVar, cast

from ._calls import HostTrap

T = TypeVar("T")
log = logging.getLogger("wasmlet.wasi")


class Key(Generic[T]):
    """Names one capability in an instance's state; its type parameter is the capability's
    type, so `current().get(KEY)` is typed. Compared by identity."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Key({self.name!r})"


Capabilities = Mapping["Key[Any]", Any]


class _Local(threading.local):
    state: InstanceState | None = None  # the default on every thread


_local = _Local()


class ResourceTable:
    """Host objects handed to the guest, by rep. Reps are unique within an instance."""

    def __init__(self) -> None:
        self._items: dict[int, Any] = {}
        self._next = 1

    def push(self, obj: Any) -> int:
        rep = self._next
        self._next += 1
        self._items[rep] = obj
        return rep

    def get(self, rep: int, kind: type[T]) -> T:
        obj = self._items.get(rep)
        if not isinstance(obj, kind):
            raise HostTrap(f"unknown {kind.__name__} handle {rep}")
        return obj

    def pop(self, rep: int) -> Any:
        return self._items.pop(rep, None)

    def __len__(self) -> int:
        return len(self._items)

    def values(self) -> list[Any]:
        return list(self._items.values())


class InstanceState:
    """Everything the host keeps for one component instance (one request)."""

    def __init__(
        self,
        component_id: str,
        capabilities: Capabilities | None = None,
        deadline: float | None = None,
        clock_base: float | None = None,
        before_block: Callable[[], None] | None = None,
    ) -> None:
        self.component_id = component_id
        self.table = ResourceTable()
        self.capabilities: Capabilities = capabilities or {}
        self.deadline = deadline  # time.monotonic() by which blocking host calls give up
        # Called before the guest waits for anything (the trigger sends what the guest has
        # produced so far: see executors' ResponseSink.flush).
        self.before_block = before_block
        # time.monotonic() when its WASI context was built: monotonic-clock instants count
        # from here, as wasmtime's native `now` does.
        self.clock_base = time.monotonic() if clock_base is None else clock_base
        self._at_end: list[Callable[[], None]] = []

    def at_end(self, fn: Callable[[], None]) -> None:
        """Call `fn` when the instance ends (e.g. close a socket the guest left open)."""
        self._at_end.append(fn)

    def end(self) -> None:
        """The instance is gone: run the `at_end` callbacks, drop every host object."""
        callbacks, self._at_end = self._at_end, []
        for fn in callbacks:
            try:
                fn()
            except Exception:
                log.exception("cleaning up after component %s", self.component_id)
        self.table = ResourceTable()

    def get(self, key: Key[T]) -> T:
        """This instance's share of a capability; traps when the component has none."""
        try:
            return cast(T, self.capabilities[key])  # the factor keyed it with its own type
        except KeyError:
            raise HostTrap(
                f"{key.name} is not available to component {self.component_id!r}"
            ) from None

    def find(self, key: Key[T]) -> T | None:
        """This instance's share of a capability, or None."""
        return self.capabilities.get(key)


def current() -> InstanceState:
    state = _local.state
    if state is None:
        raise HostTrap("host function called outside a request")
    return state


@contextmanager
def active(state: InstanceState) -> Iterator[InstanceState]:
    """Run host calls for `state`'s instance; the instance ends with the block."""
    previous = _local.state
    _local.state = state
    try:
        yield state
    finally:
        try:
            state.end()
        finally:
            _local.state = previous


def table() -> ResourceTable:
    state = _local.state
    if state is None:
        raise HostTrap("host function called outside a request")
    return state.table
