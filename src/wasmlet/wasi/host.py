"""The component linker: wasmtime's native WASI 0.2 plus wasmlet's Python pieces on top.

wasmtime's native `add_wasip2` provides most of WASI (environment, random, clocks…).
wasi:io and wasi:http's types are wasmlet's own (the C API cannot hand Python a native
`incoming-request`), so every native function whose signature mentions wasi:io types is
shadowed too: stdio and monotonic-clock subscriptions (`BASE_INTERFACES`, always defined).
The interfaces behind a capability (wasi:http's outgoing handler, wasi:filesystem, whose file
streams are wasi:io streams, wasi:sockets, Spin's APIs) come from the factors that provide
them, and are defined only for a component that imports them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import wasmtime
from wasmtime import component

from . import http, io
from ._abi import U64, Own
from ._calls import HostFunc, HostTrap, add_func, add_resource
from ._iface import WASI_RC_VERSION, Interface, resource_type_id, semver_serves
from ._state import current, table
from .io import (
    INPUT_STREAM,
    OUTPUT_STREAM,
    POLLABLE,
    BytesInputStream,
    DeadlinePollable,
    LogOutputStream,
    new_pollable,
)

stdin_iface = Interface("wasi:cli/stdin")
stdout_iface = Interface("wasi:cli/stdout")
stderr_iface = Interface("wasi:cli/stderr")


@stdin_iface.func("get-stdin", (), Own(INPUT_STREAM))
def _get_stdin() -> int:
    return table().push(BytesInputStream(b""))


@stdout_iface.func("get-stdout", (), Own(OUTPUT_STREAM))
def _get_stdout() -> int:
    return table().push(LogOutputStream(current().component_id, "stdout"))


@stderr_iface.func("get-stderr", (), Own(OUTPUT_STREAM))
def _get_stderr() -> int:
    return table().push(LogOutputStream(current().component_id, "stderr"))


# The monotonic clock counts from the instance's start (`InstanceState.clock_base`), as
# wasmtime's native one does (nanoseconds since its WASI context was built). At 0.2.x `now`
# and `resolution` are native (a guest such as a JS engine calls `now` dozens of times per
# request; native saves a Python call each); only the `subscribe-*` functions, which return
# wasmlet's pollables, are shadowed. The release candidate has no native clock at all.
clock_iface = Interface("wasi:clocks/monotonic-clock")
rc_clock_iface = Interface("wasi:clocks/monotonic-clock", versions=(WASI_RC_VERSION,))


@rc_clock_iface.func("now", (), U64)
def _now() -> int:
    return time.monotonic_ns() - round(current().clock_base * 1e9)


@rc_clock_iface.func("resolution", (), U64)
def _resolution() -> int:
    return 1


@clock_iface.func("subscribe-instant", (U64,), Own(POLLABLE))
def _subscribe_instant(when: int) -> int:
    return new_pollable(DeadlinePollable(current().clock_base + when / 1e9))


@clock_iface.func("subscribe-duration", (U64,), Own(POLLABLE))
def _subscribe_duration(ns: int) -> int:
    return new_pollable(DeadlinePollable(time.monotonic() + ns / 1e9))


def _unsupported(what: str) -> Callable[..., object]:
    def trap(*_args: object) -> object:
        raise HostTrap(f"{what} is not supported by wasmlet yet")

    return trap


_TRAPS: dict[tuple[str, str], HostFunc] = {}


def _trap_func(name: str, what: str) -> HostFunc:
    """A stand-in that traps, made once per (name, message): a host builds many linkers."""
    func = _TRAPS.get((name, what))
    if func is None:
        func = _TRAPS[name, what] = HostFunc(name, (), None, _unsupported(what))
    return func


BASE_INTERFACES: list[Interface] = [
    *io.INTERFACES,
    *http.INTERFACES,
    stdin_iface,
    stdout_iface,
    stderr_iface,
    clock_iface,
    rc_clock_iface,
]


# What wasmtime's `add_wasip2` defines natively (at 0.2.x only).
NATIVE_PREFIXES = (
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:sockets/",
    "wasi:io/",
    "wasi:filesystem/",
)


def _provided(name: str, interfaces: list[Interface]) -> bool:
    """Whether an import (`wasi:io/streams@0.2.0`, `fermyon:spin/key-value@2.0.0`) is served."""
    base, _, version = name.partition("@")
    if base.startswith(NATIVE_PREFIXES) and semver_serves("0.2.0", version):
        return True
    return any(i.serves(name) for i in interfaces)


def build_linker(
    engine: wasmtime.Engine, comp: component.Component, extra: list[Interface]
) -> component.Linker:
    """A linker for `comp`: native WASI, wasmlet's WASI pieces, the `extra` interfaces of the
    capabilities it uses, and for every other import a stand-in that traps when called (so a
    component that imports, say, `fermyon:spin/llm` but never calls it still runs)."""
    linker = component.Linker(engine)
    linker.add_wasip2()
    linker.allow_shadowing = True
    interfaces = [*BASE_INTERFACES, *extra]
    with linker.root() as root:
        for iface in interfaces:
            iface.install(root)
        for name, item in comp.type.imports(engine).items():
            if not _provided(name, interfaces):
                _define_traps(root, engine, name, item.ty)
    return linker


def _define_traps(
    root: component.LinkerInstance,
    engine: wasmtime.Engine,
    name: str,
    ty: component.ComponentItem,
) -> None:
    if not isinstance(ty, component.ComponentInstanceType):
        add_func(root, _trap_func(name, f"import {name}"))
        return
    with root.add_instance(name) as inst:
        for export, sub in ty.exports(engine).items():
            if isinstance(sub.ty, component.ResourceType):
                type_id = resource_type_id(f"{name}#{export}")
                add_resource(inst, export, type_id, None)
            else:
                add_func(inst, _trap_func(export, f"{name} ({export}) is not provided; it"))
