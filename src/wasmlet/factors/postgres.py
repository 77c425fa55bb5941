"""Outbound PostgreSQL: `fermyon:spin/postgres@2.0.0`, `spin:postgres/postgres@3.0.0` and
`@4.0.0`, with psycopg 3.

Access is decided as Spin does, from the component's `allowed_outbound_hosts`: the address is
a libpq connection string (URL or `key=value`); every host (and `hostaddr`) with its port must
be allowed as `postgres://host:port`, else `connection-failed("address postgres://host:port is
not permitted")`. Unix sockets and connection options tokio-postgres does not know (e.g.
`service`, `passfile`) are refused.

Values convert as in Spin. The v4 model is the full one (dates, uuid, jsonb, decimal, ranges,
1-D arrays, interval; other types are `unsupported(<binary wire bytes>)` with data type
`other(<type name>)`); v3 and v2 see v4's values narrowed (`unsupported`/`other` for what they
cannot express, unsigned parameters refused), and their `query-failed` carries text. Statements
use `$1` placeholders; a query with no rows reports no columns (tokio-postgres infers them from
the first row). One deliberate difference: `timestamptz` values are read as UTC date-times
(Spin fails the query).

Each `open` is one connection (autocommit), closed when the guest drops it or the instance
ends. The driver part (connecting, value conversions, the connection) is `_postgres_client.py`,
imported when a guest first opens a connection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..outbound import OutboundPolicy
from ..wasi import (
    LIST_U8,
    S32,
    S64,
    STRING,
    U8,
    U32,
    U64,
    Borrow,
    Enum,
    Interface,
    Key,
    List,
    Option,
    Own,
    Record,
    Result,
    Tuple,
    Ty,
    Variant,
    current,
    table,
)
from ._factor import ComponentContext, StatelessFactor
from ._outbound import Failure
from .rdbms_types import (
    CORE,
    RDBMS_TYPES,
    V2_ERROR,
    V2_PARAMETER,
    V2_ROW_SET,
    Cases,
    call,
    connection,
    error_type,
    narrow_rows,
    row_set,
    tag,
    text_error,
)

if TYPE_CHECKING:
    from ._postgres_client import PgConnection


@dataclass(frozen=True)
class OutboundPg:
    """The outbound PostgreSQL capability of one component."""

    policy: OutboundPolicy

    def open(self, address: str) -> PgConnection:
        """A connection; raises Failure with a v4 error."""
        from ._postgres_client import connect  # loads psycopg on first use

        return connect(self.policy, address)


KEY: Key[OutboundPg] = Key("outbound-pg")


# -- the WIT types of v3 and v4 (v2's are rdbms-types') ---------------------------------------

RANGE_BOUND_KIND = Enum("inclusive", "exclusive")
DATE = Tuple(S32, U8, U8)
TIME = Tuple(U8, U8, U8, U32)
DATETIME = Tuple(S32, U8, U8, U8, U8, U8, U32)
INTERVAL = Record(("micros", S64), ("days", S32), ("months", S32))


def _range(t: Ty) -> Ty:
    bound = Option(Tuple(t, RANGE_BOUND_KIND))
    return Tuple(bound, bound)


_TEMPORAL: Cases = [
    ("date", DATE),
    ("time", TIME),
    ("datetime", DATETIME),
    ("timestamp", S64),
]
_V4_EXTRA: Cases = [
    ("uuid", STRING),
    ("jsonb", LIST_U8),
    ("decimal", STRING),
    ("range-int32", _range(S32)),
    ("range-int64", _range(S64)),
    ("range-decimal", _range(STRING)),
    ("array-int32", List(Option(S32))),
    ("array-int64", List(Option(S64))),
    ("array-decimal", List(Option(STRING))),
    ("array-str", List(Option(STRING))),
    ("interval", INTERVAL),
]

V3_CASES: Cases = [*CORE, *_TEMPORAL]
V3_DATA_TYPE = Enum(*(name for name, _ in V3_CASES), "other")
V3_PARAMETER = Variant(*V3_CASES, ("db-null", None))
V3_DB_VALUE = Variant(*V3_CASES, ("db-null", None), ("unsupported", None))
V3_ERROR = error_type(STRING)
V3_ROW_SET = row_set(V3_DATA_TYPE, V3_DB_VALUE)

V4_CASES: Cases = [*CORE, *_TEMPORAL, *_V4_EXTRA]
V4_DATA_TYPE = Variant(*((name, None) for name, _ in V4_CASES), ("other", STRING))
V4_PARAMETER = Variant(*V4_CASES, ("db-null", None))
V4_DB_VALUE = Variant(*V4_CASES, ("db-null", None), ("unsupported", LIST_U8))
DB_ERROR = Record(
    ("as-text", STRING),
    ("severity", STRING),
    ("code", STRING),
    ("message", STRING),
    ("detail", Option(STRING)),
    ("extras", List(Tuple(STRING, STRING))),
)
QUERY_ERROR = Variant(("text", STRING), ("db-error", DB_ERROR))
V4_ERROR = error_type(QUERY_ERROR)
V4_ROW_SET = row_set(V4_DATA_TYPE, V4_DB_VALUE)


# -- the versions: each is v4 with its own types and narrowing ---------------------------------


def _v2_params(params: list[Any]) -> list[Any]:
    # v2 shares rdbms-types with MySQL, whose unsigned cases PostgreSQL cannot take.
    if any(tag(p).startswith("uint") for p in params):
        raise Failure(("value-conversion-failed", "Postgres does not support unsigned integers"))
    return params


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class PgVersion:
    """How one interface version differs from the v4 model."""

    name: str
    error: Ty
    parameter: Ty
    row_set: Ty
    params: Callable[[list[Any]], list[Any]]  # its parameters as v4's (raises Failure)
    rows: Callable[[dict[str, Any]], object]  # a v4 row set as its own
    errors: Callable[[object], object]  # a v4 error as its own


PG_VERSIONS = [
    PgVersion(
        "fermyon:spin/postgres@2.0.0",
        V2_ERROR,
        V2_PARAMETER,
        V2_ROW_SET,
        _v2_params,
        narrow_rows(CORE),
        text_error,
    ),
    PgVersion(
        "spin:postgres/postgres@3.0.0",
        V3_ERROR,
        V3_PARAMETER,
        V3_ROW_SET,
        _same,
        narrow_rows(V3_CASES),
        text_error,
    ),
    PgVersion(
        "spin:postgres/postgres@4.0.0",
        V4_ERROR,
        V4_PARAMETER,
        V4_ROW_SET,
        _same,
        _same,
        _same,
    ),
]


def _connection(rep: int) -> PgConnection:
    # Only a guest that opened a connection holds a handle, so psycopg is loaded by now.
    from ._postgres_client import PgConnection

    return connection(rep, PgConnection)


def _interface(v: PgVersion) -> Interface:
    iface = Interface(v.name, blocking=True, api="pg")
    conn = iface.resource("connection", lambda rep: table().pop(rep))

    def open_(address: str) -> object:
        return call(lambda: table().push(current().get(KEY).open(address)), v.errors)

    # Parameters are converted before the statement runs; a conversion failure is
    # `bad-parameter` in query but `value-conversion-failed` in execute, as in Spin.
    def query(rep: int, statement: str, params: list[Any]) -> object:
        def run() -> object:
            from ._postgres_client import to_pg

            values = to_pg(v.params(params), "bad-parameter")
            return v.rows(_connection(rep).query(statement, values))

        return call(run, v.errors)

    def execute(rep: int, statement: str, params: list[Any]) -> object:
        def run() -> object:
            from ._postgres_client import to_pg

            values = to_pg(v.params(params), "value-conversion-failed")
            return _connection(rep).execute(statement, values)

        return call(run, v.errors)

    iface.func("[static]connection.open", (STRING,), Result(Own(conn), v.error))(open_)
    signature = (Borrow(conn), STRING, List(v.parameter))
    iface.func("[method]connection.query", signature, Result(v.row_set, v.error))(query)
    iface.func("[method]connection.execute", signature, Result(U64, v.error))(execute)
    return iface


INTERFACES = [_interface(v) for v in PG_VERSIONS]


class OutboundPgFactor(StatelessFactor[OutboundPg]):
    key = KEY
    # v2's types live in rdbms-types, which a v2 guest imports alongside.
    interfaces = (RDBMS_TYPES, *INTERFACES)

    def serves(self, imports: Iterable[str]) -> bool:
        # Importing rdbms-types alone (a MySQL guest) is no use of PostgreSQL.
        return any(i.serves(name) for name in imports for i in INTERFACES)

    def prepare(self, state: None, ctx: ComponentContext) -> OutboundPg:
        return OutboundPg(ctx.policy)


FACTOR = OutboundPgFactor()
