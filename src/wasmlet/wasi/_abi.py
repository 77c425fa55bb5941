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

Host functions themselves (the trampoline wasmtime calls, defining them in a linker, calling
a component's export) are `_calls.py`.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from wasmtime import _ffi as ffi

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


def _offset(struct: type[ctypes.Structure], field: str) -> int:
    return int(getattr(struct, field).offset)  # a ctypes field descriptor


# The layouts above must match wasmtime's.
assert _offset(_PtrSlot, "ptr") == OFFSET and _offset(_VecSlot, "size") == OFFSET
assert _offset(_VecSlot, "data") == OFFSET + _offset(ffi.wasm_name_t, "data")
assert _offset(_ResultSlot, "is_ok") == OFFSET + _offset(
    ffi.wasmtime_component_valresult_t, "is_ok"
)
assert _offset(_ResultSlot, "val") == OFFSET + _offset(ffi.wasmtime_component_valresult_t, "val")
assert _offset(_VariantSlot, "val") == OFFSET + _offset(ffi.wasmtime_component_valvariant_t, "val")
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
    return int(_val_new(addr))  # takes over tmp's contents


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


class _Int(_Prim):
    """An integer type: a value out of its range is refused (a ctypes field would wrap it)."""

    def __init__(self, kind: Any, ctype: Any, bits: int, signed: bool) -> None:
        super().__init__(kind, ctype)
        self.low = -(1 << (bits - 1)) if signed else 0
        self.high = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1

    def lower_at(self, x: Any, addr: int, ctx: Ctx) -> None:
        if not self.low <= x <= self.high:
            raise ValueError(f"{x} is out of range ({self.low}..{self.high})")
        slot = self.slot.from_address(addr)
        slot.kind = self.kind
        slot.value = x


BOOL = _Prim(ffi.WASMTIME_COMPONENT_BOOL, ctypes.c_bool)
U8 = _Int(ffi.WASMTIME_COMPONENT_U8, ctypes.c_uint8, 8, False)
U16 = _Int(ffi.WASMTIME_COMPONENT_U16, ctypes.c_uint16, 16, False)
U32 = _Int(ffi.WASMTIME_COMPONENT_U32, ctypes.c_uint32, 32, False)
U64 = _Int(ffi.WASMTIME_COMPONENT_U64, ctypes.c_uint64, 64, False)
S8 = _Int(ffi.WASMTIME_COMPONENT_S8, ctypes.c_int8, 8, True)
S16 = _Int(ffi.WASMTIME_COMPONENT_S16, ctypes.c_int16, 16, True)
S32 = _Int(ffi.WASMTIME_COMPONENT_S32, ctypes.c_int32, 32, True)
S64 = _Int(ffi.WASMTIME_COMPONENT_S64, ctypes.c_int64, 64, True)
F32 = _Prim(ffi.WASMTIME_COMPONENT_F32, ctypes.c_float)
F64 = _Prim(ffi.WASMTIME_COMPONENT_F64, ctypes.c_double)


class _Char(Ty):
    _kind = ffi.WASMTIME_COMPONENT_CHAR.value

    def lift_at(self, addr: int, ctx: Ctx) -> str:
        return chr(ctypes.c_uint32.from_address(addr + OFFSET).value)

    def lower_at(self, x: str, addr: int, ctx: Ctx) -> None:
        code = ord(x)
        if 0xD800 <= code <= 0xDFFF:  # not a Unicode scalar value (wasmtime would abort)
            raise ValueError(f"a char cannot be the surrogate U+{code:04X}")
        slot = U32.slot.from_address(addr)
        slot.kind = self._kind
        slot.value = code


class _String(Ty):
    _kind = ffi.WASMTIME_COMPONENT_STRING.value

    def lift_at(self, addr: int, ctx: Ctx) -> str:
        slot = _VecSlot.from_address(addr)
        n = slot.size
        return ctypes.string_at(slot.data, n).decode("utf-8") if n else ""

    def lower_at(self, x: str | bytes, addr: int, ctx: Ctx) -> None:
        if isinstance(x, str):
            data = x.encode()  # strict: a lone surrogate raises (wasmtime would abort)
        else:
            data = x
            data.decode()  # must be UTF-8, or wasmtime aborts the process
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
        self.nested = isinstance(inner, Option)

    def lift_at(self, addr: int, ctx: Ctx) -> Any:
        p = _PtrSlot.from_address(addr).ptr
        if not p:
            return None
        value = self.inner.lift_at(p, ctx)
        if value is None and self.nested:
            return Some(None)  # some(none), which None alone cannot tell from none
        return value

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
