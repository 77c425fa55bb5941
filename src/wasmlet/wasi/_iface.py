"""Declaring a host interface once and installing it into a component linker.

An interface is named either with its version (`fermyon:spin/key-value@2.0.0`: defined under
exactly that name) or without (`wasi:io/streams`: a WASI interface, defined at every WASI
version wasmlet serves, `WASI_VERSIONS`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from wasmtime.component import LinkerInstance

from ..gate import released
from ..observe import metrics, spans
from ._abi import Err, Ty
from ._calls import HostFunc, add_func, add_resource

# wasmtime 50's native WASI is at 0.2.x; a definition at the highest 0.2 patch serves guests
# importing any 0.2.x by semver. The 2023-11-10 release candidate is a separate name.
WASI_NATIVE_VERSION = "0.2.12"
WASI_RC_VERSION = "0.2.0-rc-2023-11-10"
WASI_VERSIONS = (WASI_NATIVE_VERSION, WASI_RC_VERSION)

_type_ids: dict[str, int] = {}


def semver_serves(defined: str, imported: str) -> bool:
    """Whether a definition at version `defined` serves an import at `imported` (0.2.x
    releases are compatible with each other; anything else must match exactly)."""
    if defined == imported:
        return True
    release = defined.startswith("0.2.") and "-" not in defined
    return release and imported.startswith("0.2.") and "-" not in imported


def resource_type_id(qualified_name: str) -> int:
    """A stable small integer per resource type (e.g. `wasi:io/streams#input-stream`)."""
    if qualified_name not in _type_ids:
        _type_ids[qualified_name] = len(_type_ids) + 1
    return _type_ids[qualified_name]


@dataclass
class Interface:
    """One WIT interface's host side: its resources and functions."""

    name: str  # "wasi:io/streams" (WASI) or "fermyon:spin/key-value@2.0.0"
    resources: dict[str, tuple[int, Callable[[int], None] | None]] = field(default_factory=dict)
    funcs: list[HostFunc] = field(default_factory=list)
    # Its functions wait on the network (a database, a broker): another guest runs meanwhile.
    blocking: bool = False
    # WASI only: the versions to define it at (None: every version in WASI_VERSIONS).
    versions: tuple[str, ...] | None = None
    # The outbound host API it is (`kv`, `redis`, …): with metrics on, its calls are timed
    # and its errors counted (`observe.metrics.OUTBOUND_APIS`).
    api: str | None = None

    def full_names(self) -> tuple[str, ...]:
        """The names it is defined under in a linker."""
        if "@" in self.name:
            return (self.name,)
        return tuple(f"{self.name}@{v}" for v in self.versions or WASI_VERSIONS)

    def serves(self, import_name: str) -> bool:
        """Whether a component importing `import_name` links against this interface."""
        if "@" in self.name:
            return import_name == self.name
        base, _, version = import_name.partition("@")
        return base == self.name and any(
            semver_serves(v, version) for v in self.versions or WASI_VERSIONS
        )

    def resource(self, name: str, on_drop: Callable[[int], None] | None = None) -> int:
        type_id = resource_type_id(f"{self.name}#{name}")
        self.resources[name] = (type_id, on_drop)
        return type_id

    def func(
        self, name: str, params: tuple[Ty, ...] = (), result: Ty | None = None
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.funcs.append(HostFunc(name, params, result, fn, f"{self.name}#{name}"))
            return fn

        return register

    def install(self, root: LinkerInstance) -> None:
        """Define it in a linker (at every version it is served at)."""
        for full_name in self.full_names():
            with root.add_instance(full_name) as inst:
                for rname, (type_id, on_drop) in self.resources.items():
                    add_resource(inst, rname, type_id, on_drop)
                for f in self.funcs:
                    if f.index < 0:  # its first definition: wrapped once, here
                        f.fn = self._wrapped(f.fn, f.name)
                    add_func(inst, f)

    def _wrapped(self, fn: Callable[..., Any], name: str) -> Callable[..., Any]:
        """`fn` as the guest calls it: timed (with metrics on) and in a span (with traces on:
        both decided when the first linker is built, so a server without them pays nothing
        per call), inside the run gate's release (a wait for the gate is not the call's
        time)."""
        calls = metrics.outbound(self.api) if self.api is not None else None
        if calls is not None:
            fn = _timed(fn, calls)
        if self.api is not None:
            fn = spans.host_call(self.api, name, fn)
        return _releasing(fn) if self.blocking else fn


def _timed(fn: Callable[..., Any], calls: metrics.OutboundCalls) -> Callable[..., Any]:
    """Record each call's duration, and as an error a WIT `err` result or an exception."""

    @functools.wraps(fn)
    def call(*args: Any) -> Any:
        began = time.perf_counter()
        failed = True
        try:
            result = fn(*args)
            failed = isinstance(result, Err)
            return result
        finally:
            calls.record(calls.caller(), time.perf_counter() - began, failed)

    return call


def _releasing(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def call(*args: Any) -> Any:
        with released():
            return fn(*args)

    return call
