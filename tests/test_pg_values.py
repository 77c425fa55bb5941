"""Property tests of the PostgreSQL value conversions, through the real server: a WIT v4
parameter goes through the factor's conversion (`to_pg`), PostgreSQL (`SELECT $1::<type>`,
binary results) and back through `PgConnection.query`; it must come back as PostgreSQL makes
it (exactly, or as a model of PostgreSQL's normalisation says)."""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wasmlet.factors._outbound import Failure
from wasmlet.factors._postgres_client import to_pg
from wasmlet.factors.rdbms_types import CORE, narrow_rows, text_error

EXAMPLES = settings(max_examples=40, deadline=None)
FEW = settings(max_examples=15, deadline=None)

S8, S16, S32, S64 = ((-(2 ** (n - 1)), 2 ** (n - 1) - 1) for n in (8, 16, 32, 64))


# == PostgreSQL ==============================================================================


_TYPE_NAMES: dict[str, str] = {}


def pg_round_trip(pg: Any, cast: str, value: object) -> tuple[Any, Any]:
    """`value` (a v4 parameter) through `SELECT $1::cast`: (column data type, db-value).
    Also checks that the parameter went over the wire as `cast` itself (a value sent as
    another type, e.g. float8 for float4, would otherwise be hidden by the cast)."""
    if cast not in _TYPE_NAMES:
        ((name,),) = pg.query(f"SELECT '{cast}'::regtype::text AS t", [])["rows"]
        _TYPE_NAMES[cast] = name[1]
    sql = f"SELECT $1::{cast} AS v, pg_typeof($1)::text AS sent"
    rows = pg.query(sql, to_pg([value], "bad-parameter"))
    column = rows["columns"][0]
    ((out, sent),) = rows["rows"]
    assert sent == ("str", _TYPE_NAMES[cast])
    return column["data-type"], out


def same(pg: Any, cast: str, param: object, expected: tuple[str, object]) -> None:
    """`param` comes back as `expected`, in a column of `expected`'s case."""
    assert pg_round_trip(pg, cast, param) == (expected[0], expected)


# Text PostgreSQL can hold: no NUL (and, as for any WIT string, no lone surrogates).
TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=40)


@pytest.mark.parametrize(
    ("tag", "cast", "bounds", "out_tag"),
    [
        ("int8", "int2", S8, "int16"),  # PostgreSQL has no 1-byte integer
        ("int16", "int2", S16, "int16"),
        ("int32", "int4", S32, "int32"),
        ("int64", "int8", S64, "int64"),
    ],
)
def test_pg_integers(pg: Any, tag: str, cast: str, bounds: tuple[int, int], out_tag: str) -> None:
    @EXAMPLES
    @given(st.integers(*bounds))
    def check(n: int) -> None:
        same(pg, cast, (tag, n), (out_tag, n))

    check()


@EXAMPLES
@given(st.sampled_from([("floating32", "float4", 32), ("floating64", "float8", 64)]), st.data())
def test_pg_floats_are_exact(pg: Any, case: tuple[str, str, int], data: st.DataObject) -> None:
    tag, cast, width = case
    x = data.draw(st.floats(width=32) if width == 32 else st.floats())
    data_type, (out_tag, out) = pg_round_trip(pg, cast, (tag, x))
    assert (data_type, out_tag) == (tag, tag)
    assert out == x or (math.isnan(out) and math.isnan(x))
    assert math.copysign(1, out) == math.copysign(1, x)


@EXAMPLES
@given(TEXT, st.sampled_from(["text", "varchar"]))
def test_pg_text(pg: Any, s: str, cast: str) -> None:
    same(pg, cast, ("str", s), ("str", s))


@EXAMPLES
@given(st.binary(max_size=64))
def test_pg_bytea(pg: Any, b: bytes) -> None:
    same(pg, "bytea", ("binary", b), ("binary", b))


@FEW
@given(st.booleans())
def test_pg_bool(pg: Any, b: bool) -> None:
    same(pg, "bool", ("boolean", b), ("boolean", b))


@EXAMPLES
@given(st.dates())
def test_pg_date(pg: Any, d: dt.date) -> None:
    wit = (d.year, d.month, d.day)
    same(pg, "date", ("date", wit), ("date", wit))


@EXAMPLES
@given(st.times(), st.integers(0, 999))
def test_pg_time_keeps_microseconds(pg: Any, t: dt.time, extra_ns: int) -> None:
    ns = t.microsecond * 1000
    hms = (t.hour, t.minute, t.second)
    same(pg, "time", ("time", (*hms, ns + extra_ns)), ("time", (*hms, ns)))


@EXAMPLES
@given(st.datetimes(), st.integers(0, 999))
def test_pg_datetime_keeps_microseconds(pg: Any, v: dt.datetime, extra_ns: int) -> None:
    fields = (v.year, v.month, v.day, v.hour, v.minute, v.second)
    ns = v.microsecond * 1000
    same(pg, "timestamp", ("datetime", (*fields, ns + extra_ns)), ("datetime", (*fields, ns)))


EPOCH = dt.datetime(1970, 1, 1)
# (Not the first and last day: psycopg loads timestamptz in the session's zone first, and a
# day away from the ends of Python's range keeps that inside it.)
FIRST, LAST = dt.datetime(1, 1, 2), dt.datetime(9999, 12, 30, 23, 59, 59)


@EXAMPLES
@given(st.integers(int((FIRST - EPOCH).total_seconds()), int((LAST - EPOCH).total_seconds())))
def test_pg_timestamp_is_unix_seconds_read_as_utc(pg: Any, seconds: int) -> None:
    when = EPOCH + dt.timedelta(seconds=seconds)
    wit = (when.year, when.month, when.day, when.hour, when.minute, when.second, 0)
    same(pg, "timestamptz", ("timestamp", seconds), ("datetime", wit))


@EXAMPLES
@given(st.uuids(), st.sampled_from([str, lambda u: u.hex, lambda u: str(u).upper()]))
def test_pg_uuid_is_canonical(pg: Any, u: uuid.UUID, spell: Callable[[uuid.UUID], str]) -> None:
    same(pg, "uuid", ("uuid", spell(u)), ("uuid", str(u)))


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False, min_value=-1e15, max_value=1e15)
    | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


def same_json(got: object, want: object) -> bool:
    """JSON equality where a float may come back as the number PostgreSQL printed for it."""
    if isinstance(want, bool) or want is None:
        return got is want
    if isinstance(want, float):
        return type(got) in (int, float) and got == want
    if isinstance(want, int):
        return type(got) is int and got == want
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(map(same_json, got, want))
    if isinstance(want, dict):
        return (
            isinstance(got, dict)
            and got.keys() == want.keys()
            and all(same_json(got[k], w) for k, w in want.items())
        )
    return got == want


@EXAMPLES
@given(JSON)
def test_pg_jsonb(pg: Any, value: object) -> None:
    data = json.dumps(value, ensure_ascii=False).encode()
    data_type, (tag, out) = pg_round_trip(pg, "jsonb", ("jsonb", data))
    assert (data_type, tag) == ("jsonb", "jsonb")
    assert same_json(json.loads(out), value), out
    compact = json.dumps(json.loads(out), separators=(",", ":"), ensure_ascii=False)
    assert out == compact.encode()  # as serde_json writes it


def test_pg_deeply_nested_json_is_an_error_not_a_trap(pg: Any) -> None:
    """A bug fixed in the split: JSON nested deeper than Python's parser goes raised
    RecursionError out of the host function, which trapped the guest (Spin returns an
    error). Now it is `bad-parameter` going in and `query-failed` coming out."""
    deep = b"[" * 5000 + b"]" * 5000
    with pytest.raises(Failure) as e:
        to_pg([("jsonb", deep)], "bad-parameter")
    assert e.value.error[0] == "bad-parameter"
    with pytest.raises(Failure) as e:
        pg.query("SELECT (repeat('[', 5000) || repeat(']', 5000))::jsonb AS j", [])
    assert e.value.error[0] == "query-failed" and e.value.error[1][0] == "text"


def _decimals(max_places: int = 12) -> st.SearchStrategy[Decimal]:
    return st.integers(0, max_places).flatmap(
        lambda places: st.decimals(
            min_value=-(10**20), max_value=10**20, places=places, allow_nan=False
        )
    )


DECIMAL_TEXT = _decimals().map(str) | st.sampled_from(["NaN", "Infinity", "-Infinity", "1E+3"])


def expected_decimal(text: str) -> str:
    """What PostgreSQL's numeric makes of `text`: the same number at the same scale (never
    negative), written out without an exponent; no negative zero."""
    d = Decimal(text)
    if not d.is_finite():
        return str(d)
    out = format(d, "f")
    return out[1:] if d.is_zero() and out.startswith("-") else out


@EXAMPLES
@given(DECIMAL_TEXT)
def test_pg_numeric(pg: Any, text: str) -> None:
    same(pg, "numeric", ("decimal", text), ("decimal", expected_decimal(text)))


KIND = st.sampled_from(["inclusive", "exclusive"])


def _bounds(values: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[Any, Any]]:
    """Two optional (value, kind) bounds, lower <= upper where both are given."""

    def order(pair: tuple[Any, Any]) -> tuple[Any, Any]:
        lower, upper = pair
        if lower is not None and upper is not None and lower[0] > upper[0]:
            return (upper[0], lower[1]), (lower[0], upper[1])
        return pair

    bound = st.none() | st.tuples(values, KIND)
    return st.tuples(bound, bound).map(order)


def discrete_range(bounds: tuple[Any, Any], high: int) -> object:
    """PostgreSQL's canonical form of an integer range: `[lower, upper)`, empty when nothing is
    in it (read as no bounds, as in Spin), or None when a bound moves past `high`."""
    lower, upper = bounds
    both_given = lower is not None and upper is not None
    if both_given and lower[0] == upper[0] and (lower[1], upper[1]) != ("inclusive",) * 2:
        return (None, None)  # empty before canonicalisation
    lo = None if lower is None else lower[0] + (lower[1] == "exclusive")
    hi = None if upper is None else upper[0] + (upper[1] == "inclusive")
    if (lo is not None and lo > high) or (hi is not None and hi > high):
        return None  # "integer out of range"
    if lo is not None and hi is not None and lo >= hi:
        return (None, None)
    return (
        None if lo is None else (lo, "inclusive"),
        None if hi is None else (hi, "exclusive"),
    )


@pytest.mark.parametrize(
    ("tag", "cast", "bounds"),
    [("range-int32", "int4range", S32), ("range-int64", "int8range", S64)],
)
def test_pg_integer_ranges(pg: Any, tag: str, cast: str, bounds: tuple[int, int]) -> None:
    low, high = bounds
    # Mostly small numbers (bounds meet and cross often), sometimes the extremes.
    values = st.integers(-5, 5) | st.integers(low, high) | st.sampled_from([low, high])

    @EXAMPLES
    @given(_bounds(values))
    def check(wit: tuple[Any, Any]) -> None:
        expected = discrete_range(wit, high)
        if expected is None:
            with pytest.raises(Failure) as e:
                pg_round_trip(pg, cast, (tag, wit))
            assert e.value.error[1][1]["code"] == "22003"  # numeric value out of range
        else:
            same(pg, cast, (tag, wit), (tag, expected))

    check()


@EXAMPLES
@given(_bounds(_decimals()))
def test_pg_numeric_ranges(pg: Any, wit: tuple[Any, Any]) -> None:
    lower, upper = wit
    if lower is not None and upper is not None and lower[0] == upper[0]:
        both = (lower[1], upper[1]) == ("inclusive", "inclusive")
        expected: object = wit if both else (None, None)
    else:
        expected = wit
    text = tuple(None if b is None else (str(b[0]), b[1]) for b in wit)
    if expected != (None, None):  # numrange is continuous: only the text is normalised
        expected = tuple(None if b is None else (expected_decimal(str(b[0])), b[1]) for b in wit)
    same(pg, "numrange", ("range-decimal", text), ("range-decimal", expected))


@pytest.mark.parametrize(
    ("tag", "cast", "items"),
    [
        ("array-int32", "int4[]", st.integers(*S32)),
        ("array-int64", "int8[]", st.integers(*S64)),
        ("array-decimal", "numeric[]", _decimals().map(str)),
        ("array-str", "text[]", TEXT | st.sampled_from(["NULL", "{a,b}", '"', "\\", " x "])),
    ],
)
def test_pg_arrays(pg: Any, tag: str, cast: str, items: st.SearchStrategy[Any]) -> None:
    @EXAMPLES
    @given(st.lists(st.none() | items, max_size=6))
    def check(values: list[Any]) -> None:
        expected = [
            None if v is None else expected_decimal(v) if tag == "array-decimal" else v
            for v in values
        ]
        same(pg, cast, (tag, values), (tag, expected))

    check()


@EXAMPLES
@given(st.integers(*S64), st.integers(*S32), st.integers(*S32))
def test_pg_interval_keeps_its_three_fields(pg: Any, micros: int, days: int, months: int) -> None:
    wit = {"micros": micros, "days": days, "months": months}
    same(pg, "interval", ("interval", wit), ("interval", wit))


@EXAMPLES
@given(st.integers(0, 2**32 - 1))
def test_pg_types_without_a_case_are_their_wire_bytes(pg: Any, n: int) -> None:
    rows = pg.query("SELECT $1::int8::oid AS v", to_pg([("int64", n)], "bad-parameter"))
    assert rows["columns"] == [{"name": "v", "data-type": ("other", "oid")}]
    assert rows["rows"] == [[("unsupported", n.to_bytes(4, "big"))]]  # oid's binary form


# -- parameters a guest may send that do not convert -------------------------------------------

U8, U32 = st.integers(0, 2**8 - 1), st.integers(0, 2**32 - 1)
WIT_PAYLOADS: dict[str, st.SearchStrategy[Any]] = {
    "date": st.tuples(st.integers(*S32), U8, U8),
    "time": st.tuples(U8, U8, U8, U32),
    "datetime": st.tuples(st.integers(*S32), U8, U8, U8, U8, U8, U32),
    "timestamp": st.integers(*S64),
    "uuid": st.text(max_size=40) | st.uuids().map(str),
    "decimal": st.text(max_size=20) | DECIMAL_TEXT,
    "jsonb": st.binary(max_size=20) | JSON.map(lambda v: json.dumps(v).encode()),
    "range-decimal": st.tuples(*(st.none() | st.tuples(st.text(max_size=8), KIND),) * 2),
    "array-decimal": st.lists(st.none() | st.text(max_size=8), max_size=3),
}


@EXAMPLES
@given(
    st.sampled_from(sorted(WIT_PAYLOADS)).flatmap(lambda t: st.tuples(st.just(t), WIT_PAYLOADS[t]))
)
def test_pg_parameters_convert_or_fail_with_the_callers_error(param: tuple[str, Any]) -> None:
    """Whatever a guest sends, conversion gives a value or the error case the caller names
    (`bad-parameter` in query, `value-conversion-failed` in execute), never another exception
    (which would trap the guest)."""
    for case in ("bad-parameter", "value-conversion-failed"):
        try:
            (value,) = to_pg([param], case)
        except Failure as e:
            assert e.error[0] == case
            assert e.error[1].startswith(f"invalid {param[0]} parameter: ")
        else:
            assert value is not None


# -- narrowing v4 to v2 --------------------------------------------------------------------------

KEPT = ["db-null", ("int32", 1), ("str", "x"), ("binary", b"\x00")]  # v2 has these cases
DROPPED = [("date", (2024, 1, 2)), ("uuid", "u"), ("unsupported", b"\x01"), ("interval", {})]
V4_VALUES = st.sampled_from(KEPT + DROPPED)


@EXAMPLES
@given(st.lists(st.lists(V4_VALUES, min_size=2, max_size=2), max_size=3))
def test_v2_narrowing_keeps_its_cases_only(rows: list[list[object]]) -> None:
    data_types = ["date", ("other", "point")]
    v4 = {"columns": [{"name": str(i), "data-type": t} for i, t in enumerate(data_types)]}
    narrowed: Any = narrow_rows(CORE)({**v4, "rows": rows})
    assert [c["data-type"] for c in narrowed["columns"]] == ["other", "other"]
    for got_row, row in zip(narrowed["rows"], rows, strict=True):
        for got, value in zip(got_row, row, strict=True):
            assert got == (value if value in KEPT else "unsupported")


@FEW
@given(st.text(max_size=10), st.sampled_from(["text", "db-error"]))
def test_v2_errors_carry_text(message: str, kind: str) -> None:
    detail: object = message if kind == "text" else {"as-text": message, "code": "42601"}
    assert text_error(("query-failed", (kind, detail))) == ("query-failed", message)
    assert text_error(("connection-failed", message)) == ("connection-failed", message)
