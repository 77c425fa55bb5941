"""Component-model values and host functions over wasmtime's C API.

wasmtime-py's generic host-function path rebuilds every parameter's type from the C API on
each call (tens of microseconds for a type like wasi:http's `error-code`). Host interfaces
here declare their signatures once, in Python, with the small type algebra below; a single
ctypes trampoline lifts arguments and lowers results with those declarations.

Values in Python:
  bool / int / float / str          primitives (`char` is a 1-character str)
  bytes                             `list<u8>` (converted with C-speed slicing)
  list / tuple / dict               `list<T>` / `tuple<…>` / `record` (dict by field name)
  (tag, payload) or tag             `variant` (a case without a payload is just its tag)
  str                               `enum`
  set / frozenset of str            `flags` (the names of the flags that are set)
  None / value (or `Some(value)`)   `option<T>`
  `Ok(value)` / `Err(value)`        `result<T, E>`
  int                               `own<R>` / `borrow<R>`: the resource's rep
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from wasmtime import _ffi as ffi
from wasmtime.component import LinkerInstance

log = logging.getLogger("wasmlet.wasi")

VAL = ffi.wasmtime_component_val_t
STRIDE = ctypes.sizeof(VAL)
OFFSET = VAL.of.offset
_VALP = ctypes.POINTER(VAL)
_U8P = ctypes.POINTER(ctypes.c_uint8)
_KIND_U8 = ffi.WASMTIME_COMPONENT_U8.value

T = TypeVar("T")
E = TypeVar("E")


@dataclass(frozen=True, slots=True)
class Ok(Generic[T]):
    value: T = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class Err(Generic[E]):
    value: E = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class Some(Generic[T]):
    """Forces `some(value)` where value itself is None (nested options)."""

    value: T


Ctx = Any  # ctypes pointer to wasmtime_context_t


class Ty:
    """A component-model type: how to lift a C value to Python and lower it back."""

    def lift(self, v: Any, ctx: Ctx) -> Any:
        raise NotImplementedError

    def lower(self, x: Any, v: Any, ctx: Ctx) -> None:
        raise NotImplementedError


def _name_vec(field: Any, text: str | bytes) -> None:
    data = text.encode() if isinstance(text, str) else text
    ffi.wasm_byte_vec_new(ctypes.byref(field), len(data), ctypes.cast(data, _U8P))


def _read_vec(vec: Any) -> bytes:
    return ctypes.string_at(vec.data, vec.size) if vec.size else b""


class _Prim(Ty):
    def __init__(self, kind: Any, field: str) -> None:
        self.kind = kind.value
        self.field = field

    def lift(self, v: Any, ctx: Ctx) -> Any:
        return getattr(v.of, self.field)

    def lower(self, x: Any, v: Any, ctx: Ctx) -> None:
        v.kind = self.kind
        setattr(v.of, self.field, x)


BOOL = _Prim(ffi.WASMTIME_COMPONENT_BOOL, "boolean")
U8 = _Prim(ffi.WASMTIME_COMPONENT_U8, "u8")
U16 = _Prim(ffi.WASMTIME_COMPONENT_U16, "u16")
U32 = _Prim(ffi.WASMTIME_COMPONENT_U32, "u32")
U64 = _Prim(ffi.WASMTIME_COMPONENT_U64, "u64")
S8 = _Prim(ffi.WASMTIME_COMPONENT_S8, "s8")
S16 = _Prim(ffi.WASMTIME_COMPONENT_S16, "s16")
S32 = _Prim(ffi.WASMTIME_COMPONENT_S32, "s32")
S64 = _Prim(ffi.WASMTIME_COMPONENT_S64, "s64")
F32 = _Prim(ffi.WASMTIME_COMPONENT_F32, "f32")
F64 = _Prim(ffi.WASMTIME_COMPONENT_F64, "f64")


class _Char(Ty):
    def lift(self, v: Any, ctx: Ctx) -> str:
        return chr(v.of.character)

    def lower(self, x: str, v: Any, ctx: Ctx) -> None:
        v.kind = ffi.WASMTIME_COMPONENT_CHAR.value
        v.of.character = ord(x)


class _String(Ty):
    def lift(self, v: Any, ctx: Ctx) -> str:
        return _read_vec(v.of.string).decode("utf-8")

    def lower(self, x: str, v: Any, ctx: Ctx) -> None:
        v.kind = ffi.WASMTIME_COMPONENT_STRING.value
        _name_vec(v.of.string, x)


CHAR = _Char()
STRING = _String()


class List(Ty):
    def __init__(self, elem: Ty) -> None:
        self.elem = elem
        self.bytes = elem is U8

    def lift(self, v: Any, ctx: Ctx) -> Any:
        lst = v.of.list
        n = lst.size
        if self.bytes:
            if n == 0:
                return b""
            raw = ctypes.string_at(ctypes.cast(lst.data, ctypes.c_void_p).value, n * STRIDE)
            return raw[OFFSET::STRIDE]
        return [self.elem.lift(lst.data[i], ctx) for i in range(n)]

    def lower(self, x: Any, v: Any, ctx: Ctx) -> None:
        v.kind = ffi.WASMTIME_COMPONENT_LIST.value
        n = len(x)
        ffi.wasmtime_component_vallist_new_uninit(ctypes.byref(v.of.list), n)
        if n == 0:
            return
        data = v.of.list.data
        if self.bytes:
            buf = bytearray(n * STRIDE)
            buf[0::STRIDE] = bytes((_KIND_U8,)) * n
            buf[OFFSET::STRIDE] = x
            addr = ctypes.cast(data, ctypes.c_void_p).value
            ctypes.memmove(addr, bytes(buf), n * STRIDE)
            return
        for i, item in enumerate(x):
            self.elem.lower(item, data[i], ctx)


LIST_U8 = List(U8)


class Tuple(Ty):
    def __init__(self, *elems: Ty) -> None:
        self.elems = elems

    def lift(self, v: Any, ctx: Ctx) -> tuple[Any, ...]:
        data = v.of.tuple.data
        return tuple(t.lift(data[i], ctx) for i, t in enumerate(self.elems))

    def lower(self, x: Sequence[Any], v: Any, ctx: Ctx) -> None:
        v.kind = ffi.WASMTIME_COMPONENT_TUPLE.value
        ffi.wasmtime_component_valtuple_new_uninit(ctypes.byref(v.of.tuple), len(self.elems))
        data = v.of.tuple.data
        for i, (t, item) in enumerate(zip(self.elems, x, strict=True)):
            t.lower(item, data[i], ctx)


class Record(Ty):
    def __init__(self, *fields: tuple[str, Ty]) -> None:
        self.fields = fields

    def lift(self, v: Any, ctx: Ctx) -> dict[str, Any]:
        data = v.of.record.data
        return {name: t.lift(data[i].val, ctx) for i, (name, t) in enumerate(self.fields)}

    def lower(self, x: dict[str, Any], v: Any, ctx: Ctx) -> None:
        v.kind = ffi.WASMTIME_COMPONENT_RECORD.value
        ffi.wasmtime_component_valrecord_new_uninit(ctypes.byref(v.of.record), len(self.fields))
        data = v.of.record.data
        for i, (name, t) in enumerate(self.fields):
            entry = data[i]
            _name_vec(entry.name, name)
            t.lower(x[name], entry.val, ctx)


def _box(t: Ty, x: Any, ctx: Ctx) -> Any:
    tmp = VAL()
    t.lower(x, tmp, ctx)
    return ffi.wasmtime_component_val_new(ctypes.byref(tmp))


class Variant(Ty):
    def __init__(self, *cases: tuple[str, Ty | None]) -> None:
        self.cases = dict(cases)

    def lift(self, v: Any, ctx: Ctx) -> Any:
        tag = _read_vec(v.of.variant.discriminant).decode()
        t = self.cases[tag]
        if t is None:
            return tag  # a case without a payload is just its name
        payload = v.of.variant.val
        return tag, (t.lift(payload.contents, ctx) if payload else None)

    def lower(self, x: Any, v: Any, ctx: Ctx) -> None:
        tag, payload = (x, None) if isinstance(x, str) else x
        if tag not in self.cases:
            raise ValueError(f"no variant case {tag!r}")
        t = self.cases[tag]
        v.kind = ffi.WASMTIME_COMPONENT_VARIANT.value
        _name_vec(v.of.variant.discriminant, tag)
        v.of.variant.val = _box(t, payload, ctx) if t is not None else None


class Enum(Ty):
    def __init__(self, *names: str) -> None:
        self.names = set(names)

    def lift(self, v: Any, ctx: Ctx) -> str:
        return _read_vec(v.of.enumeration).decode()

    def lower(self, x: str, v: Any, ctx: Ctx) -> None:
        if x not in self.names:
            raise ValueError(f"no enum case {x!r}")
        v.kind = ffi.WASMTIME_COMPONENT_ENUM.value
        _name_vec(v.of.enumeration, x)


class Flags(Ty):
    def __init__(self, *names: str) -> None:
        self.names = frozenset(names)

    def lift(self, v: Any, ctx: Ctx) -> frozenset[str]:
        flags = v.of.flags
        return frozenset(_read_vec(flags.data[i]).decode() for i in range(flags.size))

    def lower(self, x: Iterable[str], v: Any, ctx: Ctx) -> None:
        names = list(x)
        unknown = set(names) - self.names
        if unknown:
            raise ValueError(f"no flags {sorted(unknown)!r}")
        v.kind = ffi.WASMTIME_COMPONENT_FLAGS.value
        ffi.wasmtime_component_valflags_new_uninit(ctypes.byref(v.of.flags), len(names))
        data = v.of.flags.data
        for i, name in enumerate(names):
            _name_vec(data[i], name)


class Option(Ty):
    def __init__(self, inner: Ty) -> None:
        self.inner = inner

    def lift(self, v: Any, ctx: Ctx) -> Any:
        p = v.of.option
        return self.inner.lift(p.contents, ctx) if p else None

    def lower(self, x: Any, v: Any, ctx: Ctx) -> None:
        v.kind = ffi.WASMTIME_COMPONENT_OPTION.value
        if x is None:
            v.of.option = None
            return
        if isinstance(x, Some):
            x = x.value
        v.of.option = _box(self.inner, x, ctx)


class Result(Ty):
    def __init__(self, ok: Ty | None = None, err: Ty | None = None) -> None:
        self.ok = ok
        self.err = err

    def lift(self, v: Any, ctx: Ctx) -> Ok[Any] | Err[Any]:
        r = v.of.result
        if r.is_ok:
            return Ok(self.ok.lift(r.val.contents, ctx) if self.ok is not None and r.val else None)
        return Err(self.err.lift(r.val.contents, ctx) if self.err is not None and r.val else None)

    def lower(self, x: Ok[Any] | Err[Any], v: Any, ctx: Ctx) -> None:
        v.kind = ffi.WASMTIME_COMPONENT_RESULT.value
        if isinstance(x, Ok):
            v.of.result.is_ok = True
            v.of.result.val = _box(self.ok, x.value, ctx) if self.ok is not None else None
        elif isinstance(x, Err):
            v.of.result.is_ok = False
            v.of.result.val = _box(self.err, x.value, ctx) if self.err is not None else None
        else:
            raise TypeError(f"expected Ok or Err, got {x!r}")


class Own(Ty):
    """A host resource handed over by value; Python sees its rep."""

    owned = True

    def __init__(self, type_id: int) -> None:
        self.type_id = type_id

    def lift(self, v: Any, ctx: Ctx) -> int:
        any_ptr = v.of.resource
        host = ctypes.POINTER(ffi.wasmtime_component_resource_host_t)()
        err = ffi.wasmtime_component_resource_any_to_host(ctx, any_ptr, ctypes.byref(host))
        if err:
            raise RuntimeError(_take_error(err))
        rep = ffi.wasmtime_component_resource_host_rep(host)
        ffi.wasmtime_component_resource_host_delete(host)
        return int(rep)  # the value itself stays wasmtime's (arguments are borrowed)

    def lower(self, x: int, v: Any, ctx: Ctx) -> None:
        host = ffi.wasmtime_component_resource_host_new(self.owned, x, self.type_id)
        any_ptr = ctypes.POINTER(ffi.wasmtime_component_resource_any_t)()
        err = ffi.wasmtime_component_resource_host_to_any(ctx, host, ctypes.byref(any_ptr))
        ffi.wasmtime_component_resource_host_delete(host)
        if err:
            raise RuntimeError(_take_error(err))
        v.kind = ffi.WASMTIME_COMPONENT_RESOURCE.value
        v.of.resource = any_ptr


class Borrow(Own):
    owned = False


def _take_error(err: Any) -> str:
    vec = ffi.wasm_byte_vec_t()
    ffi.wasmtime_error_message(err, ctypes.byref(vec))
    text = _read_vec(vec).decode("utf-8", "replace")
    ffi.wasm_byte_vec_delete(ctypes.byref(vec))
    ffi.wasmtime_error_delete(err)
    return text


# -- host functions -------------------------------------------------------------------------


class HostTrap(Exception):
    """Raised by a host function to trap the guest with a message."""


@dataclass(slots=True)
class HostFunc:
    name: str  # as the linker knows it, e.g. "[method]fields.get"
    params: tuple[Ty, ...]
    result: Ty | None
    fn: Callable[..., Any]
    label: str = ""  # for messages, e.g. "wasi:http/types#[method]fields.get"


_FUNCS: list[HostFunc] = []
_last_error = threading.local()


def last_host_error() -> BaseException | None:
    """The exception a host function raised on this thread (consumed)."""
    err = getattr(_last_error, "value", None)
    _last_error.value = None
    return err


@ffi.wasmtime_component_func_callback_t
def _trampoline(data, ctx, ty, args, nargs, results, nresults):  # type: ignore[no-untyped-def]
    f = _FUNCS[data or 0]
    try:
        pyargs = [t.lift(args[i], ctx) for i, t in enumerate(f.params)]
        out = f.fn(*pyargs)
        if f.result is not None:
            f.result.lower(out, results[0], ctx)
        return 0
    except BaseException as e:
        _last_error.value = e
        if not isinstance(e, HostTrap):
            log.debug("host function %s failed", f.label or f.name, exc_info=True)
        err = ffi.wasmtime_error_new(f"{f.label or f.name}: {e}".encode())
        return ctypes.cast(err, ctypes.c_void_p).value


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)
def _no_finalize(_data):  # type: ignore[no-untyped-def]
    return None


def add_func(instance: LinkerInstance, func: HostFunc) -> None:
    """Define `func` in a linker instance (the signature is checked at call time)."""
    _FUNCS.append(func)
    idx = len(_FUNCS) - 1
    name = func.name.encode()
    err = ffi.wasmtime_component_linker_instance_add_func(
        instance.ptr(),
        ctypes.create_string_buffer(name),
        len(name),
        _trampoline,
        idx,
        _no_finalize,
    )
    if err:
        raise RuntimeError(f"cannot define {func.name}: {_take_error(err)}")


def call_func(ctx: Ctx, func: Any, args: Sequence[tuple[Ty, Any]], result: Ty | None) -> Any:
    """Call a component export (a `wasmtime_component_func_t`) with declared types."""
    n = len(args)
    arr = (VAL * max(n, 1))()
    for i, (t, x) in enumerate(args):
        t.lower(x, arr[i], ctx)
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
        ffi.wasmtime_component_val_delete(ctypes.byref(arr[i]))
    if err:
        raise GuestError(_take_error(err), last_host_error())
    value = None
    if result is not None and out is not None:
        value = result.lift(out, ctx)
        ffi.wasmtime_component_val_delete(ctypes.byref(out))
    err = ffi.wasmtime_component_func_post_return(ctypes.byref(func), ctx)
    if err:
        raise GuestError(_take_error(err), None)
    return value


class GuestError(Exception):
    """A component call failed: a trap, an interrupt, or a host function's error."""

    def __init__(self, message: str, cause: BaseException | None) -> None:
        super().__init__(message)
        self.cause = cause
