"""Property tests for `wasmlet.wasi._abi`: component-model values lifted and lowered through a
real component, for every WIT type the type algebra supports.

Each type gets a component (generated WAT, tests/support/abi_guest.py) that exports
`echo(x: T) -> T` (the guest hands its argument back) and `via-host(x: T) -> T` (the guest
forwards its flat arguments to the imported host function `host-echo`, defined here with
`_calls.add_func`). So a value is lowered by `call_func`, lifted by wasmtime into the guest, and
either comes straight back (lifted by `call_func`) or goes out to the host function (lifted by
the trampoline, lowered again on return) and back. Values are compared after normalising to
the shape `_abi` lifts (bytes for `list<u8>`, frozenset for flags, …), with types checked too
(a lifted `bool` must not come back as `1`). Resources (own/borrow and destructors) have a
component of their own; bad values and failing host functions are checked at the end.

Regressions these found and now guard: nested `some(none)` lifted as None; integers out of
range truncated silently; a surrogate `char`, or non-UTF-8 bytes as a `string`, aborting the
process (wasmtime's C API panics).
"""

from __future__ import annotations

import functools
import math
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import wasmtime
from hypothesis import given, settings
from hypothesis import strategies as st
from support.abi_guest import (
    EnumT,
    FlagsT,
    ListT,
    OptionT,
    OwnT,
    Prim,
    RecordT,
    ResultT,
    TupleT,
    VariantT,
    WitType,
    echo_component,
    resource_component,
    uses_resource,
)
from wasmtime import _ffi as ffi
from wasmtime import component

from wasmlet.wasi import _abi, _calls
from wasmlet.wasi._abi import Err, Ok, Some
from wasmlet.wasi._calls import GuestError, HostTrap

RESOURCE_TYPE = 0x7E57_AB10  # a host resource type id no wasmlet interface uses
EXAMPLES = settings(max_examples=25, deadline=None)

u8, u16, u32, u64 = Prim("u8"), Prim("u16"), Prim("u32"), Prim("u64")
s8, s16, s32, s64 = Prim("s8"), Prim("s16"), Prim("s32"), Prim("s64")
f32, f64, char = Prim("f32"), Prim("f64"), Prim("char")
string, boolean = Prim("string"), Prim("bool")

CASES: dict[str, WitType] = {
    **{p.name: p for p in (boolean, u8, u16, u32, u64, s8, s16, s32, s64, f32, f64, char, string)},
    "list-u8": ListT(u8),  # the bytes fast path
    "list-u32": ListT(u32),
    "list-f32": ListT(f32),
    "list-string": ListT(string),
    "list-list-u16": ListT(ListT(u16)),
    "list-record": ListT(RecordT((("id", s64), ("name", string)))),
    "tuple": TupleT((u8, string, f64, char)),
    "record": RecordT((("a", boolean), ("b", s16), ("c", string), ("d", f32), ("e", ListT(u8)))),
    "record-nested": RecordT(
        (("inner", RecordT((("x", u64), ("y", s8)))), ("tags", ListT(string)))
    ),
    # 17 flat values: more than 16, so the argument is passed in memory, by pointer
    "record-wide": RecordT(tuple((f"f{i}", u32 if i % 2 else u8) for i in range(17))),
    # payloads whose flat types join (f32 with i64, f64 with i32, …)
    "variant": VariantT(
        (
            ("none", None),
            ("byte", u8),
            ("text", string),
            ("single", f32),
            ("double", f64),
            ("big", s64),
            ("pair", TupleT((u16, char))),
            ("nested", VariantT((("leaf", None), ("num", f32), ("wide", u64)))),
        )
    ),
    "enum": EnumT(("red", "green", "blue")),
    "enum-300": EnumT(tuple(f"e{i}" for i in range(300))),  # a two-byte discriminant
    "flags": FlagsT(("read", "write", "exec")),
    "flags-12": FlagsT(tuple(f"f{i}" for i in range(12))),  # two bytes in memory
    "flags-32": FlagsT(tuple(f"f{i}" for i in range(32))),  # four bytes, the most there are
    "option-u32": OptionT(u32),
    "option-string": OptionT(string),
    "option-f64": OptionT(f64),
    "option-option-u8": OptionT(OptionT(u8)),
    "list-option-string": ListT(OptionT(string)),
    "result-u32-string": ResultT(u32, string),
    "result-string": ResultT(string, None),
    "result-err-only": ResultT(None, ListT(u8)),
    "result-empty": ResultT(None, None),
    "result-f32-u64": ResultT(f32, u64),
    "result-option": ResultT(OptionT(s32), EnumT(("x", "y"))),
    "own": OwnT(),
    "list-own": ListT(OwnT()),
    "option-own": OptionT(OwnT()),
}

# -- WIT types -> _abi types, hypothesis strategies and the values _abi lifts ----------------

# `_abi`'s name for each primitive is its WIT name in capitals (BOOL, U8, …, STRING).
_PRIMS: dict[str, _abi.Ty] = {
    p.name: getattr(_abi, p.name.upper()) for p in CASES.values() if isinstance(p, Prim)
}
_BITS = {"u8": 8, "u16": 16, "u32": 32, "u64": 64, "s8": 8, "s16": 16, "s32": 32, "s64": 64}


def to_ty(t: WitType | None) -> Any:
    match t:
        case None:
            return None
        case Prim(name):
            return _PRIMS[name]
        case ListT(elem):
            return _abi.List(to_ty(elem))
        case TupleT(elems):
            return _abi.Tuple(*map(to_ty, elems))
        case RecordT(fields):
            return _abi.Record(*((n, to_ty(f)) for n, f in fields))
        case VariantT(cases):
            return _abi.Variant(*((n, to_ty(p)) for n, p in cases))
        case EnumT(names):
            return _abi.Enum(*names)
        case FlagsT(names):
            return _abi.Flags(*names)
        case OptionT(inner):
            return _abi.Option(to_ty(inner))
        case ResultT(ok, err):
            return _abi.Result(to_ty(ok), to_ty(err))
        case OwnT():
            return _abi.Own(RESOURCE_TYPE)
    raise AssertionError(t)


def values(t: WitType) -> st.SearchStrategy[Any]:
    """Python values of type `t`, in every form `_abi` accepts for lowering."""
    match t:
        case Prim("bool"):
            return st.booleans()
        case Prim("f32"):
            return st.floats(width=32)  # NaN, ±inf and -0.0 included
        case Prim("f64"):
            return st.floats()
        case Prim("char"):  # any Unicode scalar value, astral ones included
            return st.characters(exclude_categories=["Cs"])
        case Prim("string"):
            return st.text(st.characters(exclude_categories=["Cs"]), max_size=24)
        case Prim(name) if name.startswith("u"):
            return st.integers(0, 2 ** _BITS[name] - 1)
        case Prim(name):
            return st.integers(-(2 ** (_BITS[name] - 1)), 2 ** (_BITS[name] - 1) - 1)
        case ListT(Prim("u8")):
            return st.binary(max_size=64) | st.binary(max_size=8).map(bytearray)
        case ListT(elem):
            return st.lists(values(elem), max_size=5)
        case TupleT(elems):
            return st.tuples(*map(values, elems)) | st.tuples(*map(values, elems)).map(list)
        case RecordT(fields):
            return st.fixed_dictionaries({n: values(f) for n, f in fields})
        case VariantT(cases):
            return st.one_of(
                *(st.tuples(st.just(n), values(p)) if p else st.just(n) for n, p in cases)
            )
        case EnumT(names):
            return st.sampled_from(names)
        case FlagsT(names):  # the lowering takes any iterable of names
            return st.frozensets(st.sampled_from(names)) | st.sets(st.sampled_from(names))
        case OptionT(inner):
            some = values(inner).filter(lambda v: v is not None)
            nested = st.just(Some(None)) if isinstance(inner, OptionT) else st.nothing()
            return st.none() | some | some.map(Some) | nested
        case ResultT(ok, err):
            oks = values(ok).map(Ok) if ok else st.just(Ok())
            errs = values(err).map(Err) if err else st.just(Err())
            return oks | errs
        case OwnT():
            return st.integers(0, 2**32 - 1)  # a rep
    raise AssertionError(t)


def lifted(t: WitType | None, v: Any) -> Any:
    """The value `_abi` should lift for `v` lowered as `t`."""
    match t:
        case ListT(Prim("u8")):
            return bytes(v)
        case ListT(elem):
            return [lifted(elem, x) for x in v]
        case TupleT(elems):
            return tuple(lifted(e, x) for e, x in zip(elems, v, strict=True))
        case RecordT(fields):
            return {n: lifted(f, v[n]) for n, f in fields}
        case VariantT(cases):
            if isinstance(v, str):
                return v
            payload = dict(cases)[v[0]]
            return (v[0], lifted(payload, v[1]))
        case FlagsT():
            return frozenset(v)
        case OptionT(inner):
            if v is None:
                return None
            if isinstance(v, Some) and v.value is None:
                return Some(None)  # a nested option's some(none)
            return lifted(inner, v.value if isinstance(v, Some) else v)
        case ResultT(ok, err):
            return Ok(lifted(ok, v.value)) if isinstance(v, Ok) else Err(lifted(err, v.value))
    return v


def same(want: Any, got: Any) -> bool:
    """Structural equality that also compares types, and floats by NaN-ness and sign."""
    if type(want) is not type(got):
        return False
    if isinstance(want, float):
        if math.isnan(want):
            return math.isnan(got)
        return want == got and math.copysign(1, want) == math.copysign(1, got)
    if isinstance(want, list | tuple):
        return len(want) == len(got) and all(map(same, want, got))
    if isinstance(want, dict):
        return want.keys() == got.keys() and all(same(want[k], got[k]) for k in want)
    if isinstance(want, Ok | Err | Some):
        return same(want.value, got.value)
    return bool(want == got)


# -- components ---------------------------------------------------------------------------------


@functools.cache
def engine() -> wasmtime.Engine:
    # As wasmlet's engine (engine.py): concurrency support off.
    cfg = wasmtime.Config()
    ffi.wasmtime_config_concurrency_support_set(cfg.ptr(), False)
    return wasmtime.Engine(cfg)


def call(
    linker: component.Linker,
    comp: component.Component,
    export: str,
    args: list[tuple[_abi.Ty, Any]],
    result: _abi.Ty | None,
) -> Any:
    """Call `export` of a fresh instance (a fresh store, so no example sees another's state)."""
    store = wasmtime.Store(engine())
    instance = linker.instantiate(store, comp)
    func = instance.get_func(store, export)
    assert func is not None
    return _calls.call_func(store._context(), func._func, args, result)


@dataclass
class Harness:
    """One type's component and linker, and what its host function saw."""

    wit: WitType
    ty: _abi.Ty
    seen: list[Any] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)
    # What `host-echo` returns (or raises) instead of its argument, when set.
    reply: Callable[[Any], Any] | None = None

    def __post_init__(self) -> None:
        self.component = component.Component(engine(), echo_component(self.wit))
        self.linker = component.Linker(engine())
        with self.linker.root() as root:
            if uses_resource(self.wit):
                _calls.add_resource(root, "r", RESOURCE_TYPE, self.dropped.append)
            host = _calls.HostFunc("host-echo", (self.ty,), self.ty, self._host_echo, "t#echo")
            _calls.add_func(root, host)

    def _host_echo(self, x: Any) -> Any:
        self.seen.append(x)
        return x if self.reply is None else self.reply(x)

    def call(self, export: str, value: Any) -> Any:
        self.seen.clear()
        return call(self.linker, self.component, export, [(self.ty, value)], self.ty)


@functools.cache
def harness(name: str) -> Harness:
    return Harness(CASES[name], to_ty(CASES[name]))


# -- round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
@EXAMPLES
@given(data=st.data())
def test_host_to_guest_to_host(name: str, data: st.DataObject) -> None:
    """Lowered by call_func, lifted by wasmtime into the guest, returned, lifted by call_func."""
    h = harness(name)
    value = data.draw(values(h.wit), label="value")
    assert same(lifted(h.wit, value), h.call("echo", value))
    assert h.seen == []  # `echo` does not call the host


@pytest.mark.parametrize("name", list(CASES))
@EXAMPLES
@given(data=st.data())
def test_guest_to_host_to_guest(name: str, data: st.DataObject) -> None:
    """…and through the host function: lifted by the trampoline, lowered back into the guest."""
    h = harness(name)
    value = data.draw(values(h.wit), label="value")
    want = lifted(h.wit, value)
    got = h.call("via-host", value)
    assert len(h.seen) == 1 and same(want, h.seen[0])
    assert same(want, got)


EDGES: list[tuple[str, Any]] = [
    ("bool", False),
    ("u64", 2**64 - 1),
    ("s64", -(2**63)),
    ("s8", -128),
    ("f32", float("nan")),
    ("f32", -0.0),
    ("f64", float("-inf")),
    ("f64", 5e-324),
    ("char", "\0"),
    ("char", "\U0010ffff"),
    ("char", "\ud7ff"),
    ("string", ""),
    ("string", "a\0b"),
    ("string", "héllo 😀 \U0010ffff 中文"),
    ("list-u8", b""),
    ("list-u8", bytes(range(256)) * 40),  # 10 KiB: the guest's heap grows past one page
    ("list-u32", []),
    ("list-list-u16", [[], [0, 65535], []]),
    ("list-string", ["", "😀", ""]),
    ("flags", frozenset()),
    ("flags", frozenset({"read", "write", "exec"})),
    ("flags-32", frozenset(f"f{i}" for i in range(32))),
    ("flags-32", frozenset({"f31"})),
    ("enum-300", "e299"),
    ("variant", "none"),
    ("variant", ("nested", ("wide", 2**64 - 1))),
    ("variant", ("single", float("inf"))),
    ("option-option-u8", Some(Some(0))),
    ("option-option-u8", None),
    ("option-string", Some("")),
    ("result-empty", Ok()),
    ("result-empty", Err()),
    ("result-option", Ok(None)),
    ("result-f32-u64", Err(2**64 - 1)),
]


@pytest.mark.parametrize(("name", "value"), EDGES)
@pytest.mark.parametrize("export", ["echo", "via-host"])
def test_edge_values(name: str, value: Any, export: str) -> None:
    h = harness(name)
    want = lifted(h.wit, value)
    assert same(want, h.call(export, value))
    if export == "via-host":
        assert len(h.seen) == 1 and same(want, h.seen[0])


def test_nested_option_some_none_round_trips() -> None:
    h = harness("option-option-u8")
    got = h.call("via-host", Some(None))
    assert same(Some(None), got) and same(Some(None), h.seen[0])  # not None, which is none


def test_nested_option_some_none_lowers_to_some_of_none() -> None:
    """The lowering side of Some(None) is right (checked on the raw value: no component can
    show it, since lifting it back is what loses it)."""
    ty = _abi.Option(_abi.Option(_abi.U8))
    for value, outer_set in ((Some(None), True), (None, False)):
        v = _abi.VAL()
        ty.lower(value, v, None)  # no resources: the store context is never used
        assert v.kind == ffi.WASMTIME_COMPONENT_OPTION.value
        assert bool(v.of.option) is outer_set
        if outer_set:
            inner = v.of.option.contents
            assert inner.kind == ffi.WASMTIME_COMPONENT_OPTION.value and not inner.of.option
        ffi.wasmtime_component_val_delete(v)


@pytest.mark.parametrize(("name", "value"), [("u8", 256), ("s8", -129), ("u32", -1)])
def test_out_of_range_integers_are_refused(name: str, value: int) -> None:
    with pytest.raises((ValueError, OverflowError)):
        harness(name).call("echo", value)


# (type, export, passed as the argument or returned by the host function, the value)
FATAL: list[tuple[str, str, str, Any]] = [
    ("char", "echo", "argument", "\ud800"),
    ("char", "via-host", "reply", "\udfff"),
    ("string", "echo", "argument", b"\xff"),  # `_String.lower_at` also takes encoded bytes
    ("string", "via-host", "reply", b"ok \xc3"),
]
_FATAL_CHILD = """
import sys
sys.path.insert(0, {tests!r})
from test_abi_roundtrip import FATAL, harness
name, export, how, value = FATAL[{index}]
h = harness(name)
if how == "reply":
    h.reply = lambda _x: value
try:
    h.call(export, value if how == "argument" else "a")
except Exception as e:
    print("refused:", type(e).__name__, type(getattr(e, "cause", None)).__name__)
"""


@pytest.mark.parametrize("index", range(len(FATAL)))
def test_invalid_char_or_string_is_refused_without_killing_the_process(index: int) -> None:
    # In a child process: the bug aborts the interpreter, which would end this test run.
    child = _FATAL_CHILD.format(tests=str(Path(__file__).parent), index=index)
    env = {**os.environ, "RUST_BACKTRACE": "0"}  # the panic message, not a backtrace
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-400:]
    _name, _export, how, _value = FATAL[index]
    # an argument is refused by call_func; a bad reply traps the guest (GuestError)
    assert proc.stdout.startswith("refused: GuestError" if how == "reply" else "refused:")


# -- resources ------------------------------------------------------------------------------------


@dataclass
class Resources:
    """The resource component: `host-rep(borrow<r>) -> u32` records the rep it lifts."""

    seen: list[int] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)
    drop_error: BaseException | None = None

    def __post_init__(self) -> None:
        self.component = component.Component(engine(), resource_component())
        self.linker = component.Linker(engine())
        with self.linker.root() as root:
            _calls.add_resource(root, "r", RESOURCE_TYPE, self._on_drop)
            rep = _calls.HostFunc("host-rep", (_abi.Borrow(RESOURCE_TYPE),), _abi.U32, self._rep)
            _calls.add_func(root, rep)

    def _rep(self, rep: int) -> int:
        self.seen.append(rep)
        return rep

    def _on_drop(self, rep: int) -> None:
        self.dropped.append(rep)
        if self.drop_error is not None:
            raise self.drop_error

    def call(self, export: str, arg: tuple[_abi.Ty, int], result: _abi.Ty | None) -> Any:
        self.seen.clear()
        self.dropped.clear()
        return call(self.linker, self.component, export, [arg], result)


@functools.cache
def resources() -> Resources:
    return Resources()


REPS = st.integers(0, 2**32 - 1)


@EXAMPLES
@given(rep=REPS)
def test_borrow_reaches_the_guest_and_the_host_as_the_same_rep(rep: int) -> None:
    r = resources()
    assert r.call("via-host-borrow", (_abi.Borrow(RESOURCE_TYPE), rep), _abi.U32) == rep
    assert r.seen == [rep]
    assert r.dropped == []  # dropping a borrow is not the end of the resource


@EXAMPLES
@given(rep=REPS)
def test_own_lent_back_to_the_host_then_dropped(rep: int) -> None:
    r = resources()
    assert r.call("lend", (_abi.Own(RESOURCE_TYPE), rep), _abi.U32) == rep
    assert r.seen == [rep]
    assert r.dropped == [rep]  # the guest owned it, so its drop runs the destructor


@EXAMPLES
@given(rep=REPS)
def test_dropping_an_own_calls_the_destructor_with_its_rep(rep: int) -> None:
    r = resources()
    assert r.call("drop-own", (_abi.Own(RESOURCE_TYPE), rep), None) is None
    assert r.dropped == [rep]


def test_own_round_trips_are_not_dropped() -> None:
    h = harness("list-own")
    h.dropped.clear()
    assert h.call("via-host", [1, 2, 3]) == [1, 2, 3]
    assert h.seen == [[1, 2, 3]] and h.dropped == []


def test_a_destructor_that_raises_traps_the_guest() -> None:
    r = resources()
    r.drop_error = boom = OSError("close failed")
    try:
        with pytest.raises(GuestError) as info:
            r.call("drop-own", (_abi.Own(RESOURCE_TYPE), 7), None)
    finally:
        r.drop_error = None
    assert info.value.cause is boom
    assert r.dropped == [7]


# -- errors ---------------------------------------------------------------------------------------

# (type, a good value, a value that cannot be lowered as that type, the error)
BAD: list[tuple[str, Any, Any, type[Exception]]] = [
    ("enum", "red", "purple", ValueError),
    ("variant", "none", ("purple", 1), ValueError),
    ("variant", "none", "purple", ValueError),
    ("flags", set(), {"read", "delete"}, ValueError),
    ("flags-32", set(), ["f32"], ValueError),
    ("result-u32-string", Ok(1), 1, TypeError),
    ("result-u32-string", Ok(1), None, TypeError),
    ("result-empty", Ok(), "ok", TypeError),
]


@pytest.mark.parametrize(("name", "good", "bad", "error"), BAD)
def test_lowering_a_bad_argument_raises(
    name: str, good: Any, bad: Any, error: type[Exception]
) -> None:
    h = harness(name)
    with pytest.raises(error):
        h.call("via-host", bad)
    assert h.seen == []  # raised before the guest ran
    h.call("via-host", good)  # and nothing is left behind that breaks the next call
    assert len(h.seen) == 1


@pytest.mark.parametrize(("name", "good", "bad", "error"), BAD)
def test_a_host_function_returning_a_bad_value_traps_the_guest(
    name: str, good: Any, bad: Any, error: type[Exception]
) -> None:
    h = harness(name)
    h.reply = lambda _x: bad
    try:
        with pytest.raises(GuestError) as info:
            h.call("via-host", good)
    finally:
        h.reply = None
    assert isinstance(info.value.cause, error)
    assert same(lifted(h.wit, good), h.call("via-host", good))


@pytest.mark.parametrize("exc", [RuntimeError("boom"), HostTrap("no such stream"), KeyError(3)])
def test_a_host_function_raising_traps_the_guest(exc: Exception) -> None:
    h = harness("string")

    def fail(_x: Any) -> Any:
        raise exc

    h.reply = fail
    try:
        with pytest.raises(GuestError) as info:
            h.call("via-host", "x")
    finally:
        h.reply = None
    assert info.value.cause is exc
    assert "t#echo" in str(info.value)  # the message names the host function
    assert h.call("via-host", "y") == "y"  # the next call is not blamed on it
    assert _calls.last_host_error() is None
