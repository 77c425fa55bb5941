"""WAT components that pass one component-model type through a guest and back.

`echo_component(t)` is the text of a component that imports `host-echo: func(x: T) -> T` and
exports `echo: func(x: T) -> T` (the guest returns its argument) and `via-host: func(x: T) ->
T` (the guest forwards its flat arguments to the lowered `host-echo` and returns its result).
The core code works on canonical-ABI flat values, so this module knows just enough of the
canonical ABI (flattening, sizes, alignment, storing flat values into memory) for that.

`resource_component()` is a fixed component for `borrow<r>` and dropping `own<r>`.
wasmtime accepts component text directly (its `wat` feature), so nothing is built on disk.
"""

from __future__ import annotations

from dataclasses import dataclass

# -- WIT types ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prim:
    name: str  # bool, u8 … s64, f32, f64, char, string


@dataclass(frozen=True)
class ListT:
    elem: WitType


@dataclass(frozen=True)
class TupleT:
    elems: tuple[WitType, ...]


@dataclass(frozen=True)
class RecordT:
    fields: tuple[tuple[str, WitType], ...]


@dataclass(frozen=True)
class VariantT:
    cases: tuple[tuple[str, WitType | None], ...]


@dataclass(frozen=True)
class EnumT:
    names: tuple[str, ...]


@dataclass(frozen=True)
class FlagsT:
    names: tuple[str, ...]


@dataclass(frozen=True)
class OptionT:
    inner: WitType


@dataclass(frozen=True)
class ResultT:
    ok: WitType | None
    err: WitType | None


@dataclass(frozen=True)
class OwnT:
    """`own<r>`, where `r` is the resource the component imports as "r"."""


WitType = Prim | ListT | TupleT | RecordT | VariantT | EnumT | FlagsT | OptionT | ResultT | OwnT

# -- the canonical ABI, as far as the guest needs it ------------------------------------------

MAX_FLAT_PARAMS = 16
RET_AREA = 16  # where `echo` stores a result that is returned by pointer
HEAP = 4096  # cabi_realloc's bump heap starts here

_PRIM_FLAT = {"u64": "i64", "s64": "i64", "f32": "f32", "f64": "f64"}  # the rest are i32
_PRIM_SIZE = {"bool": 1, "u8": 1, "s8": 1, "u16": 2, "s16": 2, "u64": 8, "s64": 8, "f64": 8}
_STORE = {
    ("i32", 1): "i32.store8",
    ("i32", 2): "i32.store16",
    ("i32", 4): "i32.store",
    ("i64", 8): "i64.store",
    ("f32", 4): "f32.store",
    ("f64", 8): "f64.store",
}


def _cases(t: WitType) -> list[WitType | None] | None:
    """The payload types of a variant-shaped type (variant, enum, option, result), else None."""
    if isinstance(t, VariantT):
        return [p for _, p in t.cases]
    if isinstance(t, EnumT):
        return [None] * len(t.names)
    if isinstance(t, OptionT):
        return [None, t.inner]
    if isinstance(t, ResultT):
        return [t.ok, t.err]
    return None


def _join(a: str, b: str) -> str:
    if a == b:
        return a
    return "i32" if {a, b} == {"i32", "f32"} else "i64"


def flat(t: WitType) -> list[str]:
    """The core types `t` flattens to."""
    if isinstance(t, Prim):
        return ["i32", "i32"] if t.name == "string" else [_PRIM_FLAT.get(t.name, "i32")]
    if isinstance(t, ListT):
        return ["i32", "i32"]
    if isinstance(t, TupleT | RecordT):
        elems = t.elems if isinstance(t, TupleT) else [f for _, f in t.fields]
        return [c for e in elems for c in flat(e)]
    cases = _cases(t)
    if cases is not None:
        payload: list[str] = []
        for p in cases:
            for i, c in enumerate(flat(p) if p is not None else []):
                payload[i : i + 1] = [_join(payload[i], c) if i < len(payload) else c]
        return ["i32", *payload]
    assert isinstance(t, FlagsT | OwnT) and (not isinstance(t, FlagsT) or len(t.names) <= 32)
    return ["i32"]


def _align_to(n: int, align: int) -> int:
    return (n + align - 1) // align * align


def _disc_size(n: int) -> int:
    return 1 if n <= 1 << 8 else 2 if n <= 1 << 16 else 4


def size_align(t: WitType) -> tuple[int, int]:
    if isinstance(t, Prim):
        if t.name == "string":
            return 8, 4
        size = _PRIM_SIZE.get(t.name, 4)
        return size, size
    if isinstance(t, ListT):
        return 8, 4
    if isinstance(t, TupleT | RecordT):
        elems = t.elems if isinstance(t, TupleT) else [f for _, f in t.fields]
        end, align = 0, 1
        for e in elems:
            s, a = size_align(e)
            end, align = _align_to(end, a) + s, max(align, a)
        return _align_to(end, align), align
    if isinstance(t, FlagsT):
        n = len(t.names)
        size = 1 if n <= 8 else 2 if n <= 16 else 4
        return size, size
    if isinstance(t, OwnT):
        return 4, 4
    cases = _cases(t)
    assert cases is not None
    disc = _disc_size(len(cases))
    payloads = [size_align(p) for p in cases if p is not None]
    case_size = max((s for s, _ in payloads), default=0)
    case_align = max((a for _, a in payloads), default=1)
    align = max(disc, case_align)
    return _align_to(_align_to(disc, case_align) + case_size, align), align


def _payload_offset(cases: list[WitType | None]) -> int:
    case_align = max((size_align(p)[1] for p in cases if p is not None), default=1)
    return _align_to(_disc_size(len(cases)), case_align)


Local = tuple[int, str]  # a core local's index and the type it actually has (maybe joined)


def _get(local: Local, want: str) -> list[str]:
    """Read a flat value of type `want` from a local of a joined type (canonical lift_flat)."""
    index, have = local
    code = [f"local.get {index}"]
    if have == "i64" and want != "i64":
        code.append("f64.reinterpret_i64" if want == "f64" else "i32.wrap_i64")
        have = "f64" if want == "f64" else "i32"
    if have == "i32" and want == "f32":
        code.append("f32.reinterpret_i32")
    return code


def store(t: WitType, addr: int, locals_: list[Local]) -> list[str]:
    """Instructions that store `t`, given as flat values in `locals_`, at address `addr`."""
    assert len(locals_) == len(flat(t))
    cases = _cases(t)
    if isinstance(t, Prim | FlagsT | OwnT | ListT) or (cases is not None and not any(cases)):
        if len(locals_) == 2:  # string, list: (pointer, length)
            ptr, length = (_get(local, "i32") for local in locals_)
            return [
                f"i32.const {addr}",
                *ptr,
                "i32.store",
                f"i32.const {addr + 4}",
                *length,
                "i32.store",
            ]
        (want,) = flat(t)
        return [f"i32.const {addr}", *_get(locals_[0], want), _STORE[want, size_align(t)[0]]]
    if isinstance(t, TupleT | RecordT):
        elems = t.elems if isinstance(t, TupleT) else tuple(f for _, f in t.fields)
        code: list[str] = []
        offset, used = 0, 0
        for e in elems:
            size, align = size_align(e)
            offset = _align_to(offset, align)
            n = len(flat(e))
            code += store(e, addr + offset, locals_[used : used + n])
            offset, used = offset + size, used + n
        return code
    assert cases is not None
    disc = locals_[0]
    code = [f"i32.const {addr}", *_get(disc, "i32"), _STORE["i32", _disc_size(len(cases))]]
    payload_at = addr + _payload_offset(cases)
    for k, p in enumerate(cases):
        if p is not None:
            body = store(p, payload_at, locals_[1 : 1 + len(flat(p))])
            code += [*_get(disc, "i32"), f"i32.const {k}", "i32.eq", "if", *body, "end"]
    return code


# -- component text -------------------------------------------------------------------------


class _TypeDefs:
    """Component type definitions for a WIT type. Records, variants, enums and flags used in an
    import or export must be named, so each is defined and then imported as `(eq …)`."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._refs: dict[WitType, str] = {}

    def ref(self, t: WitType) -> str:
        if isinstance(t, Prim):
            return t.name
        if t not in self._refs:
            definition = self._define(t)  # defines the types it refers to first
            name = f"$t{len(self._refs)}"
            self.lines.append(f"(type {name} {definition})")
            if isinstance(t, RecordT | VariantT | EnumT | FlagsT):
                self.lines.append(f'(import "{name[1:]}" (type {name}-named (eq {name})))')
                name += "-named"
            self._refs[t] = name
        return self._refs[t]

    def _define(self, t: WitType) -> str:
        join = " ".join
        if isinstance(t, ListT):
            return f"(list {self.ref(t.elem)})"
        if isinstance(t, TupleT):
            return f"(tuple {join(self.ref(e) for e in t.elems)})"
        if isinstance(t, RecordT):
            fields = [f'(field "{n}" {self.ref(f)})' for n, f in t.fields]
            return f"(record {join(fields)})"
        if isinstance(t, VariantT):
            cases = [f'(case "{n}" {self.ref(p)})' if p else f'(case "{n}")' for n, p in t.cases]
            return f"(variant {join(cases)})"
        if isinstance(t, EnumT | FlagsT):
            kind = "enum" if isinstance(t, EnumT) else "flags"
            names = [f'"{n}"' for n in t.names]
            return f"({kind} {join(names)})"
        if isinstance(t, OptionT):
            return f"(option {self.ref(t.inner)})"
        if isinstance(t, ResultT):
            ok = f" {self.ref(t.ok)}" if t.ok is not None else ""
            err = f" (error {self.ref(t.err)})" if t.err is not None else ""
            return f"(result{ok}{err})"
        assert isinstance(t, OwnT)
        return "(own $r)"


def uses_resource(t: WitType | None) -> bool:
    if t is None or isinstance(t, Prim | EnumT | FlagsT):
        return False
    if isinstance(t, OwnT):
        return True
    if isinstance(t, ListT | OptionT):
        return uses_resource(t.elem if isinstance(t, ListT) else t.inner)
    if isinstance(t, ResultT):
        return uses_resource(t.ok) or uses_resource(t.err)
    if isinstance(t, TupleT):
        return any(map(uses_resource, t.elems))
    items = t.fields if isinstance(t, RecordT) else t.cases
    return any(uses_resource(p) for _, p in items)


# A bump allocator that grows memory as needed; it never reallocates in place.
_LIBC = f"""
  (core module $libc-m
    (memory (export "memory") 1)
    (global $heap (mut i32) (i32.const {HEAP}))
    (func (export "cabi_realloc") (param $old i32) (param i32 i32 i32) (result i32)
      (local $p i32) (local $end i32)
      (if (local.get $old) (then unreachable))
      (local.set $p (i32.and (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
                             (i32.sub (i32.const 0) (local.get 2))))
      (local.set $end (i32.add (local.get $p) (local.get 3)))
      (global.set $heap (local.get $end))
      (if (i32.gt_u (local.get $end) (i32.shl (memory.size) (i32.const 16)))
        (then
          (if (i32.eq (i32.const -1)
                (memory.grow (i32.shr_u (i32.add (i32.sub (local.get $end)
                  (i32.shl (memory.size) (i32.const 16))) (i32.const 65535)) (i32.const 16))))
            (then unreachable))))
      (local.get $p)))
  (core instance $libc (instantiate $libc-m))"""
_OPTS = '(memory (core memory $libc "memory")) (realloc (core func $libc "cabi_realloc"))'


def _core_sig(params: list[str], results: list[str]) -> str:
    return " ".join([*(f"(param {p})" for p in params), *(f"(result {r})" for r in results)])


def echo_component(t: WitType) -> str:
    """The component text for `t` (see the module docstring)."""
    defs = _TypeDefs()
    ty = defs.ref(t)
    flat_t = flat(t)
    spilled = len(flat_t) > MAX_FLAT_PARAMS  # the argument is passed in memory, by pointer
    params = ["i32"] if spilled else flat_t
    by_pointer = len(flat_t) > 1  # the result is returned in memory, by pointer
    results = ["i32"] if by_pointer else flat_t
    assert size_align(t)[0] <= HEAP - RET_AREA
    args = [f"local.get {i}" for i in range(len(params))]
    if spilled:  # a one-element tuple is laid out as its element: hand the argument back
        echo = ["local.get 0"]
    elif by_pointer:
        echo = [*store(t, RET_AREA, list(enumerate(flat_t))), f"i32.const {RET_AREA}"]
    else:
        echo = ["local.get 0"]
    if by_pointer:  # the lowered import writes its result where the out-pointer says
        via = [*args, f"i32.const {RET_AREA}", "call $host-echo", f"i32.const {RET_AREA}"]
        lowered = _core_sig([*params, "i32"], [])
    else:
        via = [*args, "call $host-echo"]
        lowered = _core_sig(params, results)
    sig = _core_sig(params, results)
    resource = '(import "r" (type $r (sub resource)))' if uses_resource(t) else ""
    indent = "\n      "
    types = "\n  ".join(defs.lines)
    return f"""(component
  {resource}
  {types}
  (import "host-echo" (func $host-echo (param "x" {ty}) (result {ty})))
  {_LIBC}
  (core func $host-echo-low (canon lower (func $host-echo) {_OPTS}))
  (core module $guest-m
    (import "libc" "memory" (memory 1))
    (import "host" "echo" (func $host-echo {lowered}))
    (func (export "echo") {sig}{indent}{indent.join(echo)})
    (func (export "via-host") {sig}{indent}{indent.join(via)}))
  (core instance $guest (instantiate $guest-m
    (with "libc" (instance $libc))
    (with "host" (instance (export "echo" (func $host-echo-low))))))
  (func (export "echo") (param "x" {ty}) (result {ty})
    (canon lift (core func $guest "echo") {_OPTS}))
  (func (export "via-host") (param "x" {ty}) (result {ty})
    (canon lift (core func $guest "via-host") {_OPTS})))
"""


def resource_component() -> str:
    """Imports resource `r` and `host-rep: func(x: borrow<r>) -> u32`; exports
    `via-host-borrow: func(x: borrow<r>) -> u32` (passes the borrow on to `host-rep`),
    `lend: func(x: own<r>) -> u32` (lends its own handle to `host-rep`, then drops it) and
    `drop-own: func(x: own<r>)`."""
    return """(component
  (import "r" (type $r (sub resource)))
  (type $borrow (borrow $r))
  (type $own (own $r))
  (import "host-rep" (func $host-rep (param "x" $borrow) (result u32)))
  (core func $host-rep-low (canon lower (func $host-rep)))
  (core func $drop (canon resource.drop $r))
  (core module $guest-m
    (import "host" "rep" (func $rep (param i32) (result i32)))
    (import "host" "drop" (func $drop (param i32)))
    ;; a borrow lent to an export must be dropped before it returns
    (func (export "via-host-borrow") (param i32) (result i32)
      (call $rep (local.get 0))
      (call $drop (local.get 0)))
    (func (export "lend") (param i32) (result i32)
      (call $rep (local.get 0))
      (call $drop (local.get 0)))
    (func (export "drop-own") (param i32)
      (call $drop (local.get 0))))
  (core instance $guest (instantiate $guest-m
    (with "host" (instance (export "rep" (func $host-rep-low)) (export "drop" (func $drop))))))
  (func (export "via-host-borrow") (param "x" $borrow) (result u32)
    (canon lift (core func $guest "via-host-borrow")))
  (func (export "lend") (param "x" $own) (result u32) (canon lift (core func $guest "lend")))
  (func (export "drop-own") (param "x" $own) (canon lift (core func $guest "drop-own"))))
"""
