"""The component linker: wasmtime's native WASI 0.2 plus wasmlet's Python pieces on top.

wasmtime's native `add_wasip2` provides most of WASI (environment, random, clocks…).
wasi:io and wasi:http are wasmlet's own (the C API cannot hand Python a native
`incoming-request`), so every native function whose signature mentions wasi:io types is
shadowed too: stdio and monotonic-clock subscriptions; wasi:filesystem, whose file streams are
wasi:io streams, is wasmlet's entirely (`filesystem.py`: the component's files, read-only), and
so is wasi:sockets (`sockets.py`: outbound TCP under `allowed_outbound_hosts`).
"""

from __future__ import annotations

import time

import wasmtime
from wasmtime import component

from . import filesystem, http, io, sockets
from ._abi import U64, HostFunc, HostTrap, Own, add_func, add_resource
from ._iface import Interface, resource_type_id
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

# wasmtime 50's native WASI is at 0.2.x; a definition at the highest 0.2 patch serves
# guests importing any 0.2.x by semver. The 2023-11-10 release candidate is a separate name.
NATIVE_VERSION = "0.2.12"
RC_VERSION = "0.2.0-rc-2023-11-10"
VERSIONS = (NATIVE_VERSION, RC_VERSION)

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
rc_clock_iface = Interface("wasi:clocks/monotonic-clock", versions=(RC_VERSION,))


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


def _unsupported(what: str) -> object:
    def trap(*_args: object) -> object:
        raise HostTrap(f"{what} is not supported by wasmlet yet")

    return trap


WASI_INTERFACES: list[Interface] = [
    *io.INTERFACES,
    *http.INTERFACES,
    *filesystem.INTERFACES,
    *sockets.INTERFACES,
    stdin_iface,
    stdout_iface,
    stderr_iface,
    clock_iface,
    rc_clock_iface,
]


NATIVE_PREFIXES = (
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:sockets/",
    "wasi:io/",
)


def _provided(name: str, extra: list[Interface]) -> bool:
    """Whether an import (`wasi:io/streams@0.2.0`, `fermyon:spin/key-value@2.0.0`) is served."""
    base, _, version = name.partition("@")
    if any(i.name == name for i in extra):
        return True
    if version.startswith("0.2.") and "-" not in version:
        return base.startswith(NATIVE_PREFIXES) or any(i.name == base for i in WASI_INTERFACES)
    if version == RC_VERSION:  # only wasmlet's own pieces exist at the release candidate
        return any(i.name == base for i in WASI_INTERFACES)
    return False


def build_linker(
    engine: wasmtime.Engine,
    comp: component.Component,
    extra: list[Interface] = (),  # type: ignore[assignment]
) -> component.Linker:
    """A linker for `comp`: native WASI, wasmlet's WASI pieces, `extra` host interfaces, and
    for every other import a stand-in that traps when called (so a component that imports,
    say, `fermyon:spin/llm` but never calls it still runs)."""
    linker = component.Linker(engine)
    linker.add_wasip2()
    linker.allow_shadowing = True
    with linker.root() as root:
        for iface in WASI_INTERFACES:
            for version in iface.versions or VERSIONS:
                iface.install(root, version)
        for iface in extra:
            iface.install(root, "")
        for name, item in comp.type.imports(engine).items():
            if not _provided(name, extra):
                _define_traps(root, engine, name, item)
    return linker


def _define_traps(
    root: component.LinkerInstance,
    engine: wasmtime.Engine,
    name: str,
    item: component.ComponentExtern,
) -> None:  # type: ignore[name-defined]
    ty = item.ty
    if not isinstance(ty, component.ComponentInstanceType):
        add_func(root, HostFunc(name, (), None, _unsupported(f"import {name}")))
        return
    with root.add_instance(name) as inst:
        for export, sub in ty.exports(engine).items():
            if isinstance(sub.ty, component.ResourceType):
                type_id = resource_type_id(f"{name}#{export}")
                add_resource(inst, export, type_id, None)
            else:
                add_func(
                    inst,
                    HostFunc(
                        export, (), None, _unsupported(f"{name} ({export}) is not provided; it")
                    ),
                )
