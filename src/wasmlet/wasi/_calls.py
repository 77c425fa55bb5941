"""Host functions over wasmtime's C API, and calling a component's exports.

A single ctypes trampoline serves every host function: it finds the function by the index
wasmtime hands back, lifts the arguments with an invoker specialised to the function's
declared parameter types (`_abi.py`), calls it, and lowers the result. A Python exception
becomes a wasmtime error that traps the guest; the caller of the export gets it back as
`GuestError.cause`.

This and `_abi.py` are the modules that touch wasmtime-py's private API (`_ffi`,
`Store._context()`, `Func._func`): the rest of wasmlet calls components through
`call_export`.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi
from wasmtime.component import ExportIndex, Instance, LinkerInstance, ResourceType

from ._abi import STRIDE, VAL, Ctx, Ty, _error_new, _size, _take_error, _val_delete, _vp

log = logging.getLogger("wasmlet.wasi")


class HostTrap(Exception):
    """Raised by a host function to trap the guest with a message."""


@dataclass(slots=True)
class HostFunc:
    name: str  # as the linker knows it, e.g. "[method]fields.get"
    params: tuple[Ty, ...]
    result: Ty | None
    fn: Callable[..., Any]
    label: str = ""  # for messages, e.g. "wasi:http/types#[method]fields.get"
    index: int = -1  # its slot in the trampoline's table, once defined in a linker


Invoker = Callable[[Ctx, int], Any]  # (ctx, address of the arguments) -> Python result
Lowerer = Callable[[Any, int, Ctx], None]


def _invoker(func: HostFunc) -> Invoker:
    """Lift the arguments and call `func.fn`, specialised to the number of parameters."""
    fn = func.fn
    lifts = [t.lift_at for t in func.params]
    if not lifts:
        return lambda ctx, args: fn()
    if len(lifts) == 1:
        (l0,) = lifts
        return lambda ctx, args: fn(l0(args, ctx))
    if len(lifts) == 2:
        l0, l1 = lifts
        return lambda ctx, args: fn(l0(args, ctx), l1(args + STRIDE, ctx))
    at = [(lift, i * STRIDE) for i, lift in enumerate(lifts)]
    return lambda ctx, args: fn(*[lift(args + off, ctx) for lift, off in at])


# Per defined function: its invoker, how to lower its result, and the function itself.
_FUNCS: list[tuple[Invoker, Lowerer | None, HostFunc]] = []
_last_error = threading.local()


def last_host_error() -> BaseException | None:
    """The exception a host function raised on this thread (consumed)."""
    err = getattr(_last_error, "value", None)
    _last_error.value = None
    return err


_CALLBACK = ctypes.CFUNCTYPE(_size, _vp, _vp, _vp, _vp, _size, _vp, _size)


def _call_host(
    data: int | None, ctx: int, ty: int, args: int, nargs: int, results: int, nresults: int
) -> int:
    invoke, lower, f = _FUNCS[data or 0]
    try:
        out = invoke(ctx, args)
        if lower is not None:
            lower(out, results, ctx)
        return 0
    except BaseException as e:
        return _failed(f.label or f.name, e)


_trampoline = _CALLBACK(_call_host)


def _failed(label: str, e: BaseException) -> int:
    """Remember a host function's exception and make the wasmtime error that traps the guest."""
    _last_error.value = e
    if not isinstance(e, HostTrap):
        log.debug("host function %s failed", label, exc_info=True)
    return _error_new(f"{label}: {e}".encode()) or 0


def _finalize_nothing(_data: int | None) -> None:
    return None


_no_finalize = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(_finalize_nothing)


# Per defined resource type: a label for messages and what to run when the guest drops one.
_DROPS: list[tuple[str, Callable[[int], None] | None]] = []
_DROP_INDEX: dict[tuple[str, Callable[[int], None] | None], int] = {}
_DESTRUCTOR = ctypes.CFUNCTYPE(_size, _vp, _vp, ctypes.c_uint32)


def _drop_host(data: int | None, ctx: int, rep: int) -> int:
    label, on_drop = _DROPS[data or 0]
    if on_drop is None:
        return 0
    try:
        on_drop(rep)
        return 0
    except BaseException as e:
        return _failed(label, e)


_drop_trampoline = _DESTRUCTOR(_drop_host)


_add_resource = ctypes.CFUNCTYPE(_vp, _vp, ctypes.c_char_p, _size, _vp, _DESTRUCTOR, _vp, _vp)(
    ("wasmtime_component_linker_instance_add_resource", ffi.dll)
)


def add_resource(
    instance: LinkerInstance, name: str, type_id: int, on_drop: Callable[[int], None] | None
) -> None:
    """Define host resource type `type_id` as `name`; `on_drop(rep)` runs when the guest drops
    one (wasmtime-py's own destructor path builds a store context per call)."""
    index = _DROP_INDEX.get((name, on_drop))
    if index is None:  # once per resource type: a host builds many linkers
        _DROPS.append((name, on_drop))
        index = _DROP_INDEX[name, on_drop] = len(_DROPS) - 1
    ty = ResourceType.host(type_id)
    raw = name.encode()
    err = _add_resource(
        ctypes.cast(instance.ptr(), _vp),
        raw,
        len(raw),
        ctypes.cast(ty.ptr(), _vp),
        _drop_trampoline,
        index,
        ctypes.cast(_no_finalize, _vp),
    )
    if err:
        raise RuntimeError(f"cannot define resource {name}: {_take_error(err)}")


_add_func = ctypes.CFUNCTYPE(_vp, _vp, ctypes.c_char_p, _size, _CALLBACK, _vp, _vp)(
    ("wasmtime_component_linker_instance_add_func", ffi.dll)
)


def add_func(instance: LinkerInstance, func: HostFunc) -> None:
    """Define `func` in a linker instance (the signature is checked at call time)."""
    if func.index < 0:  # once per function, however many linkers define it
        lower = func.result.lower_at if func.result is not None else None
        _FUNCS.append((_invoker(func), lower, func))
        func.index = len(_FUNCS) - 1
    idx = func.index
    name = func.name.encode()
    err = _add_func(
        ctypes.cast(instance.ptr(), _vp),
        name,
        len(name),
        _trampoline,
        idx,
        ctypes.cast(_no_finalize, _vp),
    )
    if err:
        raise RuntimeError(f"cannot define {func.name}: {_take_error(err)}")


def call_func(ctx: Ctx, func: Any, args: Sequence[tuple[Ty, Any]], result: Ty | None) -> Any:
    """Call a component export (a `wasmtime_component_func_t`) with declared types."""
    n = len(args)
    arr = (VAL * max(n, 1))()
    base = ctypes.addressof(arr)
    for i, (t, x) in enumerate(args):
        t.lower_at(x, base + i * STRIDE, ctx)
    out = VAL() if result is not None else None
    err = ffi.wasmtime_component_func_call(
        ctypes.byref(func),
        ctx,
        arr,
        n,
        ctypes.byref(out) if out is not None else None,
        1 if out is not None else 0,
    )
    for i in range(n):
        _val_delete(base + i * STRIDE)
    if err:
        raise GuestError(_take_error(err), last_host_error())
    value = None
    if result is not None and out is not None:
        value = result.lift(out, ctx)
        _val_delete(ctypes.addressof(out))
    err = ffi.wasmtime_component_func_post_return(ctypes.byref(func), ctx)
    if err:
        raise GuestError(_take_error(err), None)
    return value


class GuestError(Exception):
    """A component call failed: a trap, an interrupt, or a host function's error."""

    def __init__(self, message: str, cause: BaseException | None) -> None:
        super().__init__(message)
        self.cause = cause


def call_export(
    store: wasmtime.Store,
    instance: Instance,
    export: ExportIndex,
    args: Sequence[tuple[Ty, Any]],
    result: Ty | None,
) -> Any:
    """Call an instance's exported function with declared types (see `call_func`)."""
    func = instance.get_func(store, export)
    if func is None:
        raise GuestError("the component's export is not a function", None)
    return call_func(store._context(), func._func, args, result)
