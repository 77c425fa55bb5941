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

The hot path (every host call a guest makes) works on raw addresses: a value is read and
written through small ctypes structures laid over `wasmtime_component_val_t`, and the C
functions it needs are bound here with plain `void *` signatures and without releasing the
GIL (they are short and never call back into Python), which is much cheaper than the generic
bindings. Each host function gets an invoker specialised to its parameter types when it is
defined, so a call does no per-parameter dispatch beyond one Python call per value.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from wasmtime import _ffi as ffi
from wasmtime.component import LinkerInstance, ResourceType

log = logging.getLogger("wasmlet.wasi")

VAL = ffi.wasmtime_component_val_t
STRIDE = ctypes.sizeof(VAL)
OFFSET = VAL.of.offset
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


Ctx = Any  # the wasmtime_context_t *: an address (int) or a ctypes pointer

# -- raw C functions and value layouts --------------------------------------------------------

_vp = ctypes.c_void_p
_size = ctypes.c_size_t


def _c(name: str, restype: Any, *argtypes: Any) -> Any:
    """`name` from libwasmtime with a `void *` signature, called with the GIL held."""
    return ctypes.PYFUNCTYPE(restype, *argtypes)((name, ffi.dll))


_any_to_host = _c("wasmtime_component_resource_any_to_host", _vp, _vp, _vp, _vp)
_host_new = _c(
    "wasmtime_component_resource_host_new", _vp, ctypes.c_bool, ctypes.c_uint32, ctypes.c_uint32
)
_host_rep = _c("wasmtime_component_resource_host_rep", ctypes.c_uint32, _vp)
_host_delete = _c("wasmtime_component_resource_host_delete", None, _vp)
_host_to_any = _c("wasmtime_component_resource_host_to_any", _vp, _vp, _vp, _vp)
_byte_vec_new = _c("wasm_byte_vec_new", None, _vp, _size, ctypes.c_char_p)
_byte_vec_delete = _c("wasm_byte_vec_delete", None, _vp)
_vallist_new_uninit = _c("wasmtime_component_vallist_new_uninit", None, _vp, _size)
_valtuple_new_uninit = _c("wasmtime_component_valtuple_new_uninit", None, _vp, _size)
_valrecord_new_uninit = _c("wasmtime_component_valrecord_new_uninit", None, _vp, _size)
_valflags_new_uninit = _c("wasmtime_component_valflags_new_uninit", None, _vp, _size)
_val_new = _c("wasmtime_component_val_new", _vp, _vp)
_val_delete = _c("wasmtime_component_val_delete", None, _vp)
_error_new = _c("wasmtime_error_new", _vp, ctypes.c_char_p)
_error_message = _c("wasmtime_error_message", None, _vp, _vp)
_error_delete = _c("wasmtime_error_delete", None, _vp)
_memmove = ctypes.PYFUNCTYPE(_vp, _vp, ctypes.c_char_p, _size)(ctypes._memmove_addr)  # type: ignore[attr-defined]


class _Kind(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_uint8)]


class _PtrSlot(ctypes.Structure):
    """A value whose payload is one pointer: option, own/borrow."""

    _fields_ = [("kind", ctypes.c_uint8), ("ptr", _vp)]


class _VecSlot(ctypes.Structure):
    """A value whose payload is a (size, data) vector: string, list, tuple, record, flags, enum."""

    _fields_ = [("kind", ctypes.c_uint8), ("size", _size), ("data", _vp)]


class _ResultSlot(ctypes.Structure):
    _fields_ = [
        ("kind", ctypes.c_uint8),
        ("_pad", ctypes.c_uint8 * 7),  # the union starts 8 bytes in
        ("is_ok", ctypes.c_bool),
        ("val", _vp),
    ]


class _VariantSlot(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_uint8), ("size", _size), ("data", _vp), ("val", _vp)]


class _Vec(ctypes.Structure):
    """wasm_byte_vec_t / wasm_name_t."""

    _fields_ = [("size", _size), ("data", _vp)]


_NAME_STRIDE = ctypes.sizeof(ffi.wasm_name_t)
_ENTRY_STRIDE = ctypes.sizeof(ffi.wasmtime_component_valrecord_entry)
_ENTRY_VAL = ffi.wasmtime_component_valrecord_entry.val.offset

# The layouts above must match wasmtime's.
assert _PtrSlot.ptr.offset == OFFSET and _VecSlot.size.offset == OFFSET
assert _VecSlot.data.offset == OFFSET + ffi.wasm_name_t.data.offset
assert _ResultSlot.is_ok.offset == OFFSET + ffi.wasmtime_component_valresult_t.is_ok.offset
assert _ResultSlot.val.offset == OFFSET + ffi.wasmtime_component_valresult_t.val.offset
assert _VariantSlot.val.offset == OFFSET + ffi.wasmtime_component_valvariant_t.val.offset
assert ctypes.sizeof(_Vec) == _NAME_STRIDE and _ENTRY_VAL == _NAME_STRIDE


def _read_name(addr: int) -> bytes:
    """The bytes of the wasm_name_t at `addr`."""
    vec = _Vec.from_address(addr)
    n = vec.size
    return ctypes.string_at(vec.data, n) if n else b""


def _take_error(err: Any) -> str:
    """The message of a wasmtime_error_t (an address or a pointer), which is deleted."""
    vec = _Vec()
    _error_message(err, ctypes.addressof(vec))
    text = _read_name(ctypes.addressof(vec)).decode("utf-8", "replace")
    _byte_vec_delete(ctypes.addressof(vec))
    _error_delete(err)
    return text


def _box(t: Ty, x: Any, ctx: Ctx) -> int:
    """A heap-allocated value (what option, result and variant payloads point to)."""
    tmp = VAL()
    addr = ctypes.addressof(tmp)
    t.lower_at(x, addr, ctx)
    return _val_new(addr)  # type: ignore[no-any-return]  # takes over tmp's contents


# -- the type algebra -----------------------------------------------------------------------


class Ty:
    """A component-model type: how to lift a C value to Python and lower it back.

    `lift_at`/`lower_at` work on the address of a `wasmtime_component_val_t`; `lift`/`lower`
    take a ctypes `VAL` object instead."""

    def lift_at(self, addr: int, ctx: Ctx) -> Any:
        raise NotImplementedError

    def lower_at(self, x: Any, addr: int, ctx: Ctx) -> None:
        raise NotImplementedError

    def lift(self, v: Any, ctx: Ctx) -> Any:
        return self.lift_at(ctypes.addressof(v), ctx)

    def lower(self, x: Any, v: Any, ctx: Ctx) -> None:
        self.lower_at(x, ctypes.addressof(v), ctx)


class _Prim(Ty):
    def __init__(self, kind: Any, ctype: Any) -> None:
        self.kind = kind.value
        self.ctype = ctype

        class Slot(ctypes.Structure):
            _fields_ = [
                ("kind", ctypes.c_uint8),
                ("_pad", ctypes.c_uint8 * (OFFSET - 1)),
                ("value", ctype),
            ]

        assert Slot.value.offset == OFFSET
        self.slot = Slot

    def lift_at(self, addr: int, ctx: Ctx) -> Any:
        return self.ctype.from_address(addr + OFFSET).value

    def lower_at(self, x: Any, addr: int, ctx: Ctx) -> None:
        slot = self.slot.from_address(addr)
        slot.kind = self.kind
        slot.value = x


BOOL = _Prim(ffi.WASMTIME_COMPONENT_BOOL, ctypes.c_bool)
U8 = _Prim(ffi.WASMTIME_COMPONENT_U8, ctypes.c_uint8)
U16 = _Prim(ffi.WASMTIME_COMPONENT_U16, ctypes.c_uint16)
U32 = _Prim(ffi.WASMTIME_COMPONENT_U32, ctypes.c_uint32)
U64 = _Prim(ffi.WASMTIME_COMPONENT_U64, ctypes.c_uint64)
S8 = _Prim(ffi.WASMTIME_COMPONENT_S8, ctypes.c_int8)
S16 = _Prim(ffi.WASMTIME_COMPONENT_S16, ctypes.c_int16)
S32 = _Prim(ffi.WASMTIME_COMPONENT_S32, ctypes.c_int32)
S64 = _Prim(ffi.WASMTIME_COMPONENT_S64, ctypes.c_int64)
F32 = _Prim(ffi.WASMTIME_COMPONENT_F32, ctypes.c_float)
F64 = _Prim(ffi.WASMTIME_COMPONENT_F64, ctypes.c_double)


class _Char(Ty):
    _kind = ffi.WASMTIME_COMPONENT_CHAR.value

    def lift_at(self, addr: int, ctx: Ctx) -> str:
        return chr(ctypes.c_uint32.from_address(addr + OFFSET).value)

    def lower_at(self, x: str, addr: int, ctx: Ctx) -> None:
        slot = U32.slot.from_address(addr)
        slot.kind = self._kind
        slot.value = ord(x)


class _String(Ty):
    _kind = ffi.WASMTIME_COMPONENT_STRING.value

    def lift_at(self, addr: int, ctx: Ctx) -> str:
        slot = _VecSlot.from_address(addr)
        n = slot.size
        return ctypes.string_at(slot.data, n).decode("utf-8") if n else ""

    def lower_at(self, x: str, addr: int, ctx: Ctx) -> None:
        data = x.encode() if isinstance(x, str) else x
        _Kind.from_address(addr).kind = self._kind
        _byte_vec_new(addr + OFFSET, len(data), data)


CHAR = _Char()
STRING = _String()


class List(Ty):
    _kind = ffi.WASMTIME_COMPONENT_LIST.value

    def __init__(self, elem: Ty) -> None:
        self.elem = elem
        self.bytes = elem is U8

    def lift_at(self, addr: int, ctx: Ctx) -> Any:
        slot = _VecSlot.from_address(addr)
        n = slot.size
        data = slot.data
        if self.bytes:
            if n == 0:
                return b""
            return ctypes.string_at(data, n * STRIDE)[OFFSET::STRIDE]
        lift = self.elem.lift_at
        return [lift(data + i * STRIDE, ctx) for i in range(n)]

    def lower_at(self, x: Any, addr: int, ctx: Ctx) -> None:
        slot = _VecSlot.from_address(addr)
        slot.kind = self._kind
        n = len(x)
        _vallist_new_uninit(addr + OFFSET, n)
        if n == 0:
            return
        data = slot.data
        if self.bytes:
            buf = bytearray(n * STRIDE)
            buf[0::STRIDE] = bytes((_KIND_U8,)) * n
            buf[OFFSET::STRIDE] = x
            _memmove(data, bytes(buf), n * STRIDE)
            return
        lower = self.elem.lower_at
        for i, item in enumerate(x):
            lower(item, data + i * STRIDE, ctx)


LIST_U8 = List(U8)


class Tuple(Ty):
    _kind = ffi.WASMTIME_COMPONENT_TUPLE.value

    def __init__(self, *elems: Ty) -> None:
        self.elems = elems

    def lift_at(self, addr: int, ctx: Ctx) -> tuple[Any, ...]:
        data = _VecSlot.from_address(addr).data
        return tuple([t.lift_at(data + i * STRIDE, ctx) for i, t in enumerate(self.elems)])

    def lower_at(self, x: Sequence[Any], addr: int, ctx: Ctx) -> None:
        slot = _VecSlot.from_address(addr)
        slot.kind = self._kind
        _valtuple_new_uninit(addr + OFFSET, len(self.elems))
        data = slot.data
        for i, (t, item) in enumerate(zip(self.elems, x, strict=True)):
            t.lower_at(item, data + i * STRIDE, ctx)


class Record(Ty):
    _kind = ffi.WASMTIME_COMPONENT_RECORD.value

    def __init__(self, *fields: tuple[str, Ty]) -> None:
        self.fields = fields
        self._encoded = [(name, name.encode(), t) for name, t in fields]

    def lift_at(self, addr: int, ctx: Ctx) -> dict[str, Any]:
        data = _VecSlot.from_address(addr).data
        return {
            name: t.lift_at(data + i * _ENTRY_STRIDE + _ENTRY_VAL, ctx)
            for i, (name, t) in enumerate(self.fields)
        }

    def lower_at(self, x: dict[str, Any], addr: int, ctx: Ctx) -> None:
        slot = _VecSlot.from_address(addr)
        slot.kind = self._kind
        _valrecord_new_uninit(addr + OFFSET, len(self.fields))
        entry = slot.data
        for name, raw, t in self._encoded:
            _byte_vec_new(entry, len(raw), raw)
            t.lower_at(x[name], entry + _ENTRY_VAL, ctx)
            entry += _ENTRY_STRIDE


class Variant(Ty):
    _kind = ffi.WASMTIME_COMPONENT_VARIANT.value

    def __init__(self, *cases: tuple[str, Ty | None]) -> None:
        self.cases = dict(cases)
        self._by_name = {name: (name.encode(), t) for name, t in cases}
        self._by_raw = {name.encode(): (name, t) for name, t in cases}

    def lift_at(self, addr: int, ctx: Ctx) -> Any:
        slot = _VariantSlot.from_address(addr)
        raw = ctypes.string_at(slot.data, slot.size) if slot.size else b""
        found = self._by_raw.get(raw)
        if found is None:
            raise KeyError(raw.decode())
        tag, t = found
        if t is None:
            return tag  # a case without a payload is just its name
        payload = slot.val
        return tag, (t.lift_at(payload, ctx) if payload else None)

    def lower_at(self, x: Any, addr: int, ctx: Ctx) -> None:
        tag, payload = (x, None) if isinstance(x, str) else x
        case = self._by_name.get(tag)
        if case is None:
            raise ValueError(f"no variant case {tag!r}")
        raw, t = case
        boxed = _box(t, payload, ctx) if t is not None else None
        slot = _VariantSlot.from_address(addr)
        slot.kind = self._kind
        _byte_vec_new(addr + OFFSET, len(raw), raw)
        slot.val = boxed


class Enum(Ty):
    _kind = ffi.WASMTIME_COMPONENT_ENUM.value

    def __init__(self, *names: str) -> None:
        self.names = set(names)
        self._encoded = {name: name.encode() for name in names}

    def lift_at(self, addr: int, ctx: Ctx) -> str:
        return _read_name(addr + OFFSET).decode()

    def lower_at(self, x: str, addr: int, ctx: Ctx) -> None:
        raw = self._encoded.get(x)
        if raw is None:
            raise ValueError(f"no enum case {x!r}")
        _Kind.from_address(addr).kind = self._kind
        _byte_vec_new(addr + OFFSET, len(raw), raw)


class Flags(Ty):
    _kind = ffi.WASMTIME_COMPONENT_FLAGS.value

    def __init__(self, *names: str) -> None:
        self.names = frozenset(names)

    def lift_at(self, addr: int, ctx: Ctx) -> frozenset[str]:
        slot = _VecSlot.from_address(addr)
        data = slot.data
        return frozenset(_read_name(data + i * _NAME_STRIDE).decode() for i in range(slot.size))

    def lower_at(self, x: Iterable[str], addr: int, ctx: Ctx) -> None:
        names = list(x)
        unknown = set(names) - self.names
        if unknown:
            raise ValueError(f"no flags {sorted(unknown)!r}")
        slot = _VecSlot.from_address(addr)
        slot.kind = self._kind
        _valflags_new_uninit(addr + OFFSET, len(names))
        data = slot.data
        for i, name in enumerate(names):
            raw = name.encode()
            _byte_vec_new(data + i * _NAME_STRIDE, len(raw), raw)


class Option(Ty):
    _kind = ffi.WASMTIME_COMPONENT_OPTION.value

    def __init__(self, inner: Ty) -> None:
        self.inner = inner

    def lift_at(self, addr: int, ctx: Ctx) -> Any:
        p = _PtrSlot.from_address(addr).ptr
        return self.inner.lift_at(p, ctx) if p else None

    def lower_at(self, x: Any, addr: int, ctx: Ctx) -> None:
        if x is None:
            boxed = None
        else:
            if isinstance(x, Some):
                x = x.value
            boxed = _box(self.inner, x, ctx)
        slot = _PtrSlot.from_address(addr)
        slot.kind = self._kind
        slot.ptr = boxed


class Result(Ty):
    _kind = ffi.WASMTIME_COMPONENT_RESULT.value

    def __init__(self, ok: Ty | None = None, err: Ty | None = None) -> None:
        self.ok = ok
        self.err = err

    def lift_at(self, addr: int, ctx: Ctx) -> Ok[Any] | Err[Any]:
        slot = _ResultSlot.from_address(addr)
        p = slot.val
        if slot.is_ok:
            return Ok(self.ok.lift_at(p, ctx) if self.ok is not None and p else None)
        return Err(self.err.lift_at(p, ctx) if self.err is not None and p else None)

    def lower_at(self, x: Ok[Any] | Err[Any], addr: int, ctx: Ctx) -> None:
        if isinstance(x, Ok):
            is_ok, t = True, self.ok
        elif isinstance(x, Err):
            is_ok, t = False, self.err
        else:
            raise TypeError(f"expected Ok or Err, got {x!r}")
        boxed = _box(t, x.value, ctx) if t is not None else None
        slot = _ResultSlot.from_address(addr)
        slot.kind = self._kind
        slot.is_ok = is_ok
        slot.val = boxed


class Own(Ty):
    """A host resource handed over by value; Python sees its rep."""

    owned = True
    _kind = ffi.WASMTIME_COMPONENT_RESOURCE.value

    def __init__(self, type_id: int) -> None:
        self.type_id = type_id

    def lift_at(self, addr: int, ctx: Ctx) -> int:
        host = _vp()
        err = _any_to_host(ctx, _PtrSlot.from_address(addr).ptr, ctypes.addressof(host))
        if err:
            raise RuntimeError(_take_error(err))
        rep: int = _host_rep(host)
        _host_delete(host)
        return rep  # the value itself stays wasmtime's (arguments are borrowed)

    def lower_at(self, x: int, addr: int, ctx: Ctx) -> None:
        host = _host_new(self.owned, x, self.type_id)
        err = _host_to_any(ctx, host, addr + OFFSET)  # writes the resource_any pointer
        _host_delete(host)
        if err:
            raise RuntimeError(_take_error(err))
        _Kind.from_address(addr).kind = self._kind


class Borrow(Own):
    owned = False


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


@_CALLBACK
def _trampoline(data, ctx, ty, args, nargs, results, nresults):  # type: ignore[no-untyped-def]
    invoke, lower, f = _FUNCS[data or 0]
    try:
        out = invoke(ctx, args)
        if lower is not None:
            lower(out, results, ctx)
        return 0
    except BaseException as e:
        return _failed(f.label or f.name, e)


def _failed(label: str, e: BaseException) -> int:
    """Remember a host function's exception and make the wasmtime error that traps the guest."""
    _last_error.value = e
    if not isinstance(e, HostTrap):
        log.debug("host function %s failed", label, exc_info=True)
    return _error_new(f"{label}: {e}".encode()) or 0


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)
def _no_finalize(_data):  # type: ignore[no-untyped-def]
    return None


# Per defined resource type: a label for messages and what to run when the guest drops one.
_DROPS: list[tuple[str, Callable[[int], None] | None]] = []
_DESTRUCTOR = ctypes.CFUNCTYPE(_size, _vp, _vp, ctypes.c_uint32)


@_DESTRUCTOR
def _drop_trampoline(data, ctx, rep):  # type: ignore[no-untyped-def]
    label, on_drop = _DROPS[data or 0]
    if on_drop is None:
        return 0
    try:
        on_drop(rep)
        return 0
    except BaseException as e:
        return _failed(label, e)


_add_resource = ctypes.CFUNCTYPE(_vp, _vp, ctypes.c_char_p, _size, _vp, _DESTRUCTOR, _vp, _vp)(
    ("wasmtime_component_linker_instance_add_resource", ffi.dll)
)


def add_resource(
    instance: LinkerInstance, name: str, type_id: int, on_drop: Callable[[int], None] | None
) -> None:
    """Define host resource type `type_id` as `name`; `on_drop(rep)` runs when the guest drops
    one (wasmtime-py's own destructor path builds a store context per call)."""
    _DROPS.append((name, on_drop))
    ty = ResourceType.host(type_id)
    raw = name.encode()
    err = _add_resource(
        ctypes.cast(instance.ptr(), _vp),
        raw,
        len(raw),
        ctypes.cast(ty.ptr(), _vp),
        _drop_trampoline,
        len(_DROPS) - 1,
        ctypes.cast(_no_finalize, _vp),
    )
    if err:
        raise RuntimeError(f"cannot define resource {name}: {_take_error(err)}")


_add_func = ctypes.CFUNCTYPE(_vp, _vp, ctypes.c_char_p, _size, _CALLBACK, _vp, _vp)(
    ("wasmtime_component_linker_instance_add_func", ffi.dll)
)


def add_func(instance: LinkerInstance, func: HostFunc) -> None:
    """Define `func` in a linker instance (the signature is checked at call time)."""
    lower = func.result.lower_at if func.result is not None else None
    _FUNCS.append((_invoker(func), lower, func))
    idx = len(_FUNCS) - 1
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
