"""Per-instance host state: the resource table and each capability's instance state.

A component instance runs on one thread from start to end, so host functions find the state
of the instance that called them through a thread-local (`current()`), set by the executor
around each call into the guest.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from ._abi import HostTrap

T = TypeVar("T")

_local = threading.local()


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
        capabilities: dict[str, Any] | None = None,
        deadline: float | None = None,
    ) -> None:
        self.component_id = component_id
        self.table = ResourceTable()
        self.capabilities = capabilities or {}
        self.deadline = deadline  # time.monotonic() by which blocking host calls give up

    def capability(self, name: str) -> Any:
        try:
            return self.capabilities[name]
        except KeyError:
            raise HostTrap(f"{name} is not available to component {self.component_id!r}") from None


def current() -> InstanceState:
    state = getattr(_local, "state", None)
    if state is None:
        raise HostTrap("host function called outside a request")
    return state


@contextmanager
def active(state: InstanceState) -> Iterator[InstanceState]:
    previous = getattr(_local, "state", None)
    _local.state = state
    try:
        yield state
    finally:
        _local.state = previous


def table() -> ResourceTable:
    return current().table
