"""Declaring a host interface once and installing it into a component linker."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from wasmtime.component import LinkerInstance

from ..gate import released
from ._abi import HostFunc, Ty, add_func, add_resource

_type_ids: dict[str, int] = {}


def resource_type_id(qualified_name: str) -> int:
    """A stable small integer per resource type (e.g. `wasi:io/streams#input-stream`)."""
    if qualified_name not in _type_ids:
        _type_ids[qualified_name] = len(_type_ids) + 1
    return _type_ids[qualified_name]


@dataclass
class Interface:
    """One WIT interface's host side: its resources and functions."""

    name: str  # without version, e.g. "wasi:io/streams"
    resources: dict[str, tuple[int, Callable[[int], None] | None]] = field(default_factory=dict)
    funcs: list[HostFunc] = field(default_factory=list)
    # Its functions wait on the network (a database, a broker): another guest runs meanwhile.
    blocking: bool = False
    # WASI only: the versions to define it at (None: every version wasmlet serves).
    versions: tuple[str, ...] | None = None

    def resource(self, name: str, on_drop: Callable[[int], None] | None = None) -> int:
        type_id = resource_type_id(f"{self.name}#{name}")
        self.resources[name] = (type_id, on_drop)
        return type_id

    def func(
        self, name: str, params: tuple[Ty, ...] = (), result: Ty | None = None
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            call = _releasing(fn) if self.blocking else fn
            self.funcs.append(HostFunc(name, params, result, call, f"{self.name}#{name}"))
            return fn

        return register

    def install(self, root: LinkerInstance, version: str) -> None:
        with root.add_instance(f"{self.name}@{version}" if version else self.name) as inst:
            for rname, (type_id, on_drop) in self.resources.items():
                add_resource(inst, rname, type_id, on_drop)
            for f in self.funcs:
                add_func(inst, f)


def _releasing(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def call(*args: Any) -> Any:
        with released():
            return fn(*args)

    return call
