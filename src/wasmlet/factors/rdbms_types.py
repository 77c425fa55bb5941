"""What the PostgreSQL and MySQL factors share: `fermyon:spin/rdbms-types@2.0.0`.

Spin's v2 database interfaces (`fermyon:spin/postgres@2.0.0`, `fermyon:spin/mysql@2.0.0`) take
their parameter, value, row-set and error types from `fermyon:spin/rdbms-types@2.0.0`, an
interface of types only: a component that uses either imports it, and the linker defines it
(empty) for them. Both factors list the same `RDBMS_TYPES` object; a component using both gets
it defined twice, which is harmless (an empty instance defines nothing, and the linker allows
shadowing anyway; see tests/test_factors.py).

Also here: the helpers that narrow PostgreSQL v4's values and errors to these v2 types, the
host-call wrapper both factors use, and the connection lookup. No driver is imported here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, TypeVar, cast

from ..wasi import (
    BOOL,
    F32,
    F64,
    LIST_U8,
    S8,
    S16,
    S32,
    S64,
    STRING,
    U8,
    U16,
    U32,
    U64,
    Enum,
    Err,
    HostTrap,
    Interface,
    List,
    Ok,
    Record,
    Ty,
    Variant,
    table,
)
from ._outbound import Failure

T = TypeVar("T")

CONNECT_TIMEOUT = 10  # seconds, for either database

#: One case of a `parameter-value`/`db-value` variant: its name and payload type.
Cases = list[tuple[str, Ty | None]]

# The cases every version has, and the unsigned ones only v2 has (PostgreSQL refuses them).
CORE: Cases = [
    ("boolean", BOOL),
    ("int8", S8),
    ("int16", S16),
    ("int32", S32),
    ("int64", S64),
    ("floating32", F32),
    ("floating64", F64),
    ("str", STRING),
    ("binary", LIST_U8),
]
UNSIGNED: Cases = [
    ("uint8", U8),
    ("uint16", U16),
    ("uint32", U32),
    ("uint64", U64),
]


def row_set(data_type: Ty, db_value: Ty) -> Ty:
    """A `row-set` record over a version's data-type and db-value types."""
    column = Record(("name", STRING), ("data-type", data_type))
    return Record(("columns", List(column)), ("rows", List(List(db_value))))


def error_type(query_failed: Ty) -> Variant:
    """An `error` variant whose `query-failed` case carries `query_failed`."""
    return Variant(
        ("connection-failed", STRING),
        ("bad-parameter", STRING),
        ("query-failed", query_failed),
        ("value-conversion-failed", STRING),
        ("other", STRING),
    )


# The order of the cases is the WIT's (the case index is what crosses the ABI).
V2_CASES: Cases = [*CORE[:5], *UNSIGNED, *CORE[5:]]
V2_DATA_TYPE = Enum(*(name for name, _ in V2_CASES), "other")
V2_PARAMETER = Variant(*V2_CASES, ("db-null", None))
V2_DB_VALUE = Variant(*V2_CASES, ("db-null", None), ("unsupported", None))
V2_ERROR = error_type(STRING)
V2_ROW_SET = row_set(V2_DATA_TYPE, V2_DB_VALUE)

RDBMS_TYPES = Interface("fermyon:spin/rdbms-types@2.0.0")


# -- narrowing a richer model to an older version's types ------------------------------------


def tag(value: object) -> str:
    """The case name of a variant value (`"db-null"` or `("int32", 5)`)."""
    return value if isinstance(value, str) else str(cast("tuple[object, ...]", value)[0])


def narrow(cases: Cases, fallback: str) -> Callable[[object], object]:
    """Values or data types as a version with only `cases` sees them: other cases become
    `fallback` (`unsupported` for values, `other` for data types)."""
    known = {name for name, _ in cases} | {"db-null"}
    return lambda v: v if tag(v) in known else fallback


def narrow_rows(cases: Cases) -> Callable[[dict[str, Any]], object]:
    """A row set as a version with only `cases` sees it."""
    data_type, value = narrow(cases, "other"), narrow(cases, "unsupported")

    def convert(rows: dict[str, Any]) -> object:
        columns = [
            {"name": c["name"], "data-type": data_type(c["data-type"])} for c in rows["columns"]
        ]
        return {"columns": columns, "rows": [[value(v) for v in row] for row in rows["rows"]]}

    return convert


def text_error(error: object) -> object:
    """A PostgreSQL v4 error as v2/v3's, whose `query-failed` carries text (the v4
    `db-error` record's `as-text`)."""
    case, payload = cast("tuple[str, Any]", error)
    if case != "query-failed":
        return error
    kind, detail = payload
    return (case, detail if kind == "text" else detail["as-text"])


# -- host calls -----------------------------------------------------------------------------


def call(fn: Callable[[], object], errors: Callable[[object], object] = lambda e: e) -> object:
    """`Ok(fn())`, or `Err` of the `Failure`'s error as `errors` shapes it for the version."""
    try:
        return Ok(fn())
    except Failure as f:
        return Err(errors(f.error))


def connection(rep: int, kind: type[T]) -> T:
    """The guest's open connection `rep`; raises Failure (as Spin: `connection-failed`)."""
    try:
        return table().get(rep, kind)
    except HostTrap:
        raise Failure(("connection-failed", "no connection found")) from None


def quietly(close: Callable[[], object]) -> Callable[[], None]:
    """`close` for a finalizer: a connection already broken must not log a traceback at
    garbage collection."""

    def run() -> None:
        with contextlib.suppress(Exception):
            close()

    return run
