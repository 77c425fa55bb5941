"""Outbound relational databases: PostgreSQL (`fermyon:spin/postgres@2.0.0`,
`spin:postgres/postgres@3.0.0` and `@4.0.0`, with psycopg 3) and MySQL
(`fermyon:spin/mysql@2.0.0`, with PyMySQL); `fermyon:spin/rdbms-types@2.0.0` holds v2's types.

Access is decided as Spin does, from the component's `allowed_outbound_hosts`:
- PostgreSQL: the address is a libpq connection string (URL or `key=value`); every host (and
  `hostaddr`) with its port must be allowed as `postgres://host:port`, else
  `connection-failed("address postgres://host:port is not permitted")`. Unix sockets and
  connection options tokio-postgres does not know (e.g. `service`, `passfile`) are refused.
- MySQL: the address `mysql://user:password@host[:port]/db` must be allowed, else
  `connection-failed("address <address> is not permitted")`.

Values convert as in Spin. PostgreSQL: the v4 model is the full one (dates, uuid, jsonb,
decimal, ranges, 1-D arrays, interval; other types are `unsupported(<binary wire bytes>)` with
data type `other(<type name>)`); v3 and v2 see v4's values narrowed (`unsupported`/`other` for
what they cannot express, unsigned parameters refused). Statements use `$1` placeholders; a query
with no rows reports no columns (tokio-postgres infers them from the first row). One deliberate
difference: `timestamptz` values are read as UTC date-times (Spin fails the query). MySQL:
statements use `?` placeholders (run as a server-side prepared statement); integer, float,
string and binary columns convert, any other column type fails the query with
`value-conversion-failed`, as in Spin.

Each `open` is one connection (autocommit), closed when the guest drops it or the instance ends.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import struct
import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import psycopg
import pymysql
import pymysql.converters
from psycopg import RawCursor, pq
from psycopg.adapt import Dumper
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Jsonb
from psycopg.types.numeric import Float4, Float8, Int2, Int4, Int8
from psycopg.types.range import Int4Range, Int8Range, NumericRange, Range
from pymysql.constants import FIELD_TYPE, FLAG

from ..outbound import OutboundPolicy
from ..wasi._abi import (
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
    Borrow,
    Enum,
    Err,
    HostTrap,
    List,
    Ok,
    Option,
    Own,
    Record,
    Result,
    Tuple,
    Ty,
    Variant,
)
from ..wasi._iface import Interface
from ..wasi._state import current, table
from ._outbound import address_allowed

CONNECT_TIMEOUT = 10  # seconds
PG_DEFAULT_PORT = "5432"
MYSQL_DEFAULT_PORT = 3306


class Failure(Exception):
    """A host call failed with `error`, a WIT error value of the interface's error type."""

    def __init__(self, error: object) -> None:
        super().__init__(error)
        self.error = error


def _quietly(close: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        with contextlib.suppress(Exception):
            close()

    return run


# == PostgreSQL: connecting =================================================================

# Connection-string options tokio-postgres understands; libpq's others (service, passfile,
# sslkey…) would read host files or bypass the host check, so they are refused.
PG_OPTIONS = frozenset(
    {
        "user",
        "password",
        "dbname",
        "options",
        "application_name",
        "sslmode",
        "host",
        "hostaddr",
        "port",
        "connect_timeout",
        "tcp_user_timeout",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_retries",
        "target_session_attrs",
        "channel_binding",
        "load_balance_hosts",
    }
)


def _pg_targets(info: dict[str, str]) -> list[tuple[str, str | None]]:
    """Each (host, port) the connection may go to; raises Failure."""
    hosts = [h for h in (info.get("hostaddr") or info.get("host") or "").split(",") if h]
    ports = [p for p in (info.get("port") or "").split(",") if p]
    if not hosts:
        raise Failure(("connection-failed", "host missing"))
    targets = []
    for i, host in enumerate(hosts):
        if host.startswith(("/", "@")):
            raise Failure(("connection-failed", "Unix sockets are not supported on WebAssembly"))
        port = ports[i] if i < len(ports) else (ports[0] if len(ports) == 1 else None)
        targets.append((host, port))
    return targets


def _pg_check(policy: OutboundPolicy, targets: list[tuple[str, str | None]]) -> None:
    for host, port in targets:
        try:
            number = int(port) if port is not None else None
        except ValueError:
            raise Failure(("connection-failed", f"invalid port {port!r}")) from None
        if not policy.allows("postgres", host, number):
            where = f"{host}:{port}" if port is not None else host
            raise Failure(("connection-failed", f"address postgres://{where} is not permitted"))


class _IntervalDumper(Dumper):
    """A WIT `interval` as PostgreSQL interval text."""

    oid = psycopg.postgres.types["interval"].oid

    def dump(self, obj: Any) -> bytes:
        return f"{obj.months} mons {obj.days} days {obj.micros} microseconds".encode()


@dataclass(frozen=True)
class PgInterval:
    micros: int
    days: int
    months: int


def pg_connect(policy: OutboundPolicy, address: str) -> psycopg.Connection[Any]:
    """An autocommit connection to `address` if the policy allows it; raises Failure."""
    try:
        info = conninfo_to_dict(address)
    except psycopg.Error as e:
        raise Failure(("connection-failed", str(e))) from None
    unknown = sorted(set(info) - PG_OPTIONS)
    if unknown:
        raise Failure(("connection-failed", f"unknown option `{unknown[0]}`"))
    _pg_check(policy, _pg_targets(info))
    params = {"port": PG_DEFAULT_PORT, "connect_timeout": str(CONNECT_TIMEOUT), **info}
    try:
        conn = psycopg.connect(
            **params, client_encoding="UTF8", autocommit=True, cursor_factory=RawCursor
        )
    except psycopg.Error as e:
        raise Failure(("connection-failed", str(e).strip())) from None
    conn.adapters.register_dumper(PgInterval, _IntervalDumper)
    return conn


# == PostgreSQL: values =====================================================================

_TYPES = psycopg.postgres.types
_SCALAR_TAGS = {
    "bool": "boolean",
    "bytea": "binary",
    "float4": "floating32",
    "float8": "floating64",
    "int2": "int16",
    "int4": "int32",
    "int8": "int64",
    "text": "str",
    "varchar": "str",
    "bpchar": "str",
    "timestamp": "datetime",
    "timestamptz": "datetime",
    "date": "date",
    "time": "time",
    "uuid": "uuid",
    "jsonb": "jsonb",
    "numeric": "decimal",
    "int4range": "range-int32",
    "int8range": "range-int64",
    "numrange": "range-decimal",
    "interval": "interval",
}
_ARRAY_TAGS = {
    "int4": "array-int32",
    "int8": "array-int64",
    "numeric": "array-decimal",
    "text": "array-str",
    "varchar": "array-str",
    "bpchar": "array-str",
}
PG_TAGS: dict[int, str] = {
    **{_TYPES[name].oid: tag for name, tag in _SCALAR_TAGS.items()},
    **{_TYPES[name].array_oid: tag for name, tag in _ARRAY_TAGS.items()},
}


def _decimal_text(d: Decimal) -> str:
    return format(d, "f")


def _wit_datetime(v: dt.datetime) -> tuple[int, ...]:
    if v.tzinfo is not None:
        v = v.astimezone(dt.UTC).replace(tzinfo=None)
    return (v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond * 1000)


def _wit_range(convert: Callable[[Any], object]) -> Callable[[Range[Any]], object]:
    def bounds(r: Range[Any]) -> object:
        lower = None if r.lower is None else (convert(r.lower), _kind(r.lower_inc))
        upper = None if r.upper is None else (convert(r.upper), _kind(r.upper_inc))
        return (lower, upper)

    return bounds


def _kind(inclusive: bool) -> str:
    return "inclusive" if inclusive else "exclusive"


def _wit_array(convert: Callable[[Any], object]) -> Callable[[list[Any]], object]:
    def items(values: list[Any]) -> object:
        if any(isinstance(v, list) for v in values):
            raise ValueError("multi-dimensional arrays are not supported")
        return [None if v is None else convert(v) for v in values]

    return items


def _json_bytes(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


_FROM_PG: dict[str, Callable[[Any], object]] = {
    "boolean": bool,
    "binary": bytes,
    "floating32": float,
    "floating64": float,
    "int16": int,
    "int32": int,
    "int64": int,
    "str": str,
    "datetime": _wit_datetime,
    "date": lambda d: (d.year, d.month, d.day),
    "time": lambda t: (t.hour, t.minute, t.second, t.microsecond * 1000),
    "uuid": str,
    "jsonb": _json_bytes,
    "decimal": _decimal_text,
    "range-int32": _wit_range(int),
    "range-int64": _wit_range(int),
    "range-decimal": _wit_range(_decimal_text),
    "array-int32": _wit_array(int),
    "array-int64": _wit_array(int),
    "array-decimal": _wit_array(_decimal_text),
    "array-str": _wit_array(str),
}


def _interval(data: bytes) -> dict[str, int]:
    micros, days, months = struct.unpack(">qii", data)
    return {"micros": micros, "days": days, "months": months}


class _Column:
    """How to turn one result column's binary values into v4 `db-value`s."""

    def __init__(self, oid: int, cursor: RawCursor[Any]) -> None:
        self.tag = PG_TAGS.get(oid)
        self.loader = None
        if self.tag is not None and self.tag != "interval":
            loader_class = cursor.adapters.get_loader(oid, pq.Format.BINARY)
            self.loader = loader_class(oid, cursor) if loader_class is not None else None

    def value(self, data: bytes | None) -> object:
        if data is None:
            return "db-null"
        if self.tag == "interval":
            return ("interval", _interval(data))
        if self.tag is None or self.loader is None:
            return ("unsupported", bytes(data))
        return (self.tag, _FROM_PG[self.tag](self.loader.load(data)))


def _date(v: Sequence[int]) -> dt.date:
    return dt.date(*v)


def _time(v: Sequence[int]) -> dt.time:
    h, m, s, ns = v
    return dt.time(h, m, s, ns // 1000)


def _datetime(v: Sequence[int]) -> dt.datetime:
    *ymdhms, ns = v
    return dt.datetime(*ymdhms, ns // 1000)  # type: ignore[misc]


def _py_range(cls: type[Range[Any]], convert: Callable[[Any], Any]) -> Callable[[Any], object]:
    def build(bounds: tuple[Any, Any]) -> object:
        lower, upper = bounds
        left = "[" if lower is not None and lower[1] == "inclusive" else "("
        right = "]" if upper is not None and upper[1] == "inclusive" else ")"
        return cls(
            None if lower is None else convert(lower[0]),
            None if upper is None else convert(upper[0]),
            left + right,
        )

    return build


def _py_array(convert: Callable[[Any], Any]) -> Callable[[list[Any]], object]:
    return lambda values: [None if v is None else convert(v) for v in values]


_TO_PG: dict[str, Callable[[Any], object]] = {
    "boolean": bool,
    "int8": Int2,  # PostgreSQL has no 1-byte integer
    "int16": Int2,
    "int32": Int4,
    "int64": Int8,
    "floating32": Float4,
    "floating64": Float8,
    "str": str,
    "binary": bytes,
    "date": _date,
    "time": _time,
    "datetime": _datetime,
    "timestamp": lambda s: dt.datetime.fromtimestamp(s, dt.UTC),
    "uuid": uuid.UUID,
    "jsonb": lambda b: Jsonb(json.loads(b)),
    "decimal": Decimal,
    "range-int32": _py_range(Int4Range, int),
    "range-int64": _py_range(Int8Range, int),
    "range-decimal": _py_range(NumericRange, Decimal),
    "array-int32": _py_array(Int4),
    "array-int64": _py_array(Int8),
    "array-decimal": _py_array(Decimal),
    "array-str": _py_array(str),
    "interval": lambda i: PgInterval(i["micros"], i["days"], i["months"]),
}


def pg_params(params: list[Any], error_case: str) -> list[object]:
    """v4 parameter values as psycopg values; raises Failure((`error_case`, message))."""
    out: list[object] = []
    for p in params:
        if p == "db-null":
            out.append(None)
            continue
        tag, payload = p
        try:
            out.append(_TO_PG[tag](payload))
        except (ValueError, TypeError, OverflowError, OSError, ArithmeticError) as e:
            raise Failure((error_case, f"invalid {tag} parameter: {e}")) from None
    return out


def _db_error(e: psycopg.Error) -> object:
    """A psycopg error as v4 `query-failed(query-error)`."""
    diag = e.diag
    if e.sqlstate is None or diag.message_primary is None:
        return ("query-failed", ("text", str(e).strip()))
    severity = diag.severity or "ERROR"
    text = f"db error: {severity}: {diag.message_primary}"
    text += f"\nDETAIL: {diag.message_detail}" if diag.message_detail else ""
    text += f"\nHINT: {diag.message_hint}" if diag.message_hint else ""
    extras = [
        (name, str(value))
        for name, value in (
            ("column", diag.column_name),
            ("constraint", diag.constraint_name),
            ("routine", diag.source_function),
            ("hint", diag.message_hint),
            ("table", diag.table_name),
            ("datatype", diag.datatype_name),
            ("schema", diag.schema_name),
            ("file", diag.source_file),
            ("line", diag.source_line),
            ("where_", diag.context),
        )
        if value is not None
    ]
    record = {
        "as-text": text,
        "severity": severity,
        "code": e.sqlstate,
        "message": diag.message_primary,
        "detail": diag.message_detail,
        "extras": extras,
    }
    return ("query-failed", ("db-error", record))


class PgConnection:
    """A guest's open PostgreSQL connection; results in the v4 model."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self._type_names: dict[int, str] = {}
        weakref.finalize(self, _quietly(conn.close))

    def _run(self, statement: str, params: list[object]) -> RawCursor[Any]:
        cursor = self.conn.cursor()
        try:
            cursor.execute(statement, params, binary=True)  # type: ignore[arg-type]
        except psycopg.Error as e:
            raise Failure(_db_error(e)) from None
        return cursor  # type: ignore[return-value]

    def execute(self, statement: str, params: list[object]) -> int:
        return max(self._run(statement, params).rowcount, 0)

    def query(self, statement: str, params: list[object]) -> dict[str, object]:
        cursor = self._run(statement, params)
        result = cursor.pgresult
        if result is None or result.ntuples == 0:
            return {"columns": [], "rows": []}
        oids = [result.ftype(i) for i in range(result.nfields)]
        names = [(result.fname(i) or b"").decode() for i in range(result.nfields)]
        columns = [_Column(oid, cursor) for oid in oids]
        try:
            rows = [
                [col.value(result.get_value(r, i)) for i, col in enumerate(columns)]
                for r in range(result.ntuples)
            ]
        except (psycopg.Error, ValueError, TypeError, OverflowError) as e:
            raise Failure(("query-failed", ("text", str(e)))) from None
        types = [self._data_type(oid) for oid in oids]
        return {
            "columns": [{"name": n, "data-type": t} for n, t in zip(names, types, strict=True)],
            "rows": rows,
        }

    def _data_type(self, oid: int) -> object:
        tag = PG_TAGS.get(oid)
        return tag if tag is not None else ("other", self._type_name(oid))

    def _type_name(self, oid: int) -> str:
        if oid not in self._type_names:
            info = _TYPES.get(oid)
            self._type_names[oid] = info.name if info is not None else self._lookup_type(oid)
        return self._type_names[oid]

    def _lookup_type(self, oid: int) -> str:
        try:
            sql = f"SELECT typname FROM pg_type WHERE oid = {int(oid)}"
            row = self.conn.execute(sql).fetchone()
        except psycopg.Error:
            return "unknown"
        return str(row[0]) if row else "unknown"


@dataclass(frozen=True)
class OutboundPg:
    """The outbound PostgreSQL capability of one component."""

    policy: OutboundPolicy

    def open(self, address: str) -> PgConnection:
        """Raises Failure with a v4 error."""
        return PgConnection(pg_connect(self.policy, address))


# == PostgreSQL: interface versions ==========================================================

RANGE_BOUND_KIND = Enum("inclusive", "exclusive")
DATE = Tuple(S32, U8, U8)
TIME = Tuple(U8, U8, U8, U32)
DATETIME = Tuple(S32, U8, U8, U8, U8, U8, U32)
INTERVAL = Record(("micros", S64), ("days", S32), ("months", S32))


def _range(t: Ty) -> Ty:
    bound = Option(Tuple(t, RANGE_BOUND_KIND))
    return Tuple(bound, bound)


_CORE: list[tuple[str, Ty | None]] = [
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
_UNSIGNED: list[tuple[str, Ty | None]] = [
    ("uint8", U8),
    ("uint16", U16),
    ("uint32", U32),
    ("uint64", U64),
]
_TEMPORAL: list[tuple[str, Ty | None]] = [
    ("date", DATE),
    ("time", TIME),
    ("datetime", DATETIME),
    ("timestamp", S64),
]
_V4_EXTRA: list[tuple[str, Ty | None]] = [
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


def _row_set(data_type: Ty, db_value: Ty) -> Ty:
    column = Record(("name", STRING), ("data-type", data_type))
    return Record(("columns", List(column)), ("rows", List(List(db_value))))


def _error(query_failed: Ty) -> Variant:
    return Variant(
        ("connection-failed", STRING),
        ("bad-parameter", STRING),
        ("query-failed", query_failed),
        ("value-conversion-failed", STRING),
        ("other", STRING),
    )


V2_CASES = [*_CORE[:5], *_UNSIGNED, *_CORE[5:]]
V2_DATA_TYPE = Enum(*(name for name, _ in V2_CASES), "other")
V2_PARAMETER = Variant(*V2_CASES, ("db-null", None))
V2_DB_VALUE = Variant(*V2_CASES, ("db-null", None), ("unsupported", None))
V2_ERROR = _error(STRING)
V2_ROW_SET = _row_set(V2_DATA_TYPE, V2_DB_VALUE)

V3_CASES = [*_CORE, *_TEMPORAL]
V3_DATA_TYPE = Enum(*(name for name, _ in V3_CASES), "other")
V3_PARAMETER = Variant(*V3_CASES, ("db-null", None))
V3_DB_VALUE = Variant(*V3_CASES, ("db-null", None), ("unsupported", None))
V3_ERROR = _error(STRING)
V3_ROW_SET = _row_set(V3_DATA_TYPE, V3_DB_VALUE)

V4_CASES = [*_CORE, *_TEMPORAL, *_V4_EXTRA]
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
V4_ERROR = _error(QUERY_ERROR)
V4_ROW_SET = _row_set(V4_DATA_TYPE, V4_DB_VALUE)


def _tag(value: object) -> str:
    return value if isinstance(value, str) else value[0]  # type: ignore[index,return-value]


def _narrow(cases: list[tuple[str, Ty | None]], fallback: str) -> Callable[[object], object]:
    """v4 values or data types as an older version's: unknown cases become `fallback`."""
    known = {name for name, _ in cases} | {"db-null"}
    return lambda v: v if _tag(v) in known else fallback


def _narrow_rows(cases: list[tuple[str, Ty | None]]) -> Callable[[dict[str, Any]], object]:
    data_type, value = _narrow(cases, "other"), _narrow(cases, "unsupported")

    def convert(rows: dict[str, Any]) -> object:
        columns = [
            {"name": c["name"], "data-type": data_type(c["data-type"])} for c in rows["columns"]
        ]
        return {"columns": columns, "rows": [[value(v) for v in row] for row in rows["rows"]]}

    return convert


def _text_error(error: object) -> object:
    """A v4 error as v2/v3's (`query-failed` carries text)."""
    tag, payload = error  # type: ignore[misc]
    if tag != "query-failed":
        return error
    kind, detail = payload
    return (tag, detail if kind == "text" else detail["as-text"])


def _v2_params(params: list[Any]) -> list[Any]:
    if any(_tag(p).startswith("uint") for p in params):
        raise Failure(("value-conversion-failed", "Postgres does not support unsigned integers"))
    return params


@dataclass(frozen=True)
class _PgVersion:
    """How one interface version differs from the v4 model."""

    name: str
    error: Ty
    parameter: Ty
    row_set: Ty
    params: Callable[[list[Any]], list[Any]]
    rows: Callable[[dict[str, Any]], object]
    errors: Callable[[object], object]


PG_VERSIONS = [
    _PgVersion(
        "fermyon:spin/postgres@2.0.0",
        V2_ERROR,
        V2_PARAMETER,
        V2_ROW_SET,
        _v2_params,
        _narrow_rows([*_CORE]),
        _text_error,
    ),
    _PgVersion(
        "spin:postgres/postgres@3.0.0",
        V3_ERROR,
        V3_PARAMETER,
        V3_ROW_SET,
        lambda p: p,
        _narrow_rows(V3_CASES),
        _text_error,
    ),
    _PgVersion(
        "spin:postgres/postgres@4.0.0",
        V4_ERROR,
        V4_PARAMETER,
        V4_ROW_SET,
        lambda p: p,
        lambda rows: rows,
        lambda e: e,
    ),
]


def _pg() -> OutboundPg:
    return current().capability("outbound_pg")  # type: ignore[no-any-return]


def _pg_connection(rep: int) -> PgConnection:
    try:
        return table().get(rep, PgConnection)
    except HostTrap:
        raise Failure(("connection-failed", "no connection found")) from None


def _pg_interface(v: _PgVersion) -> Interface:
    iface = Interface(v.name, blocking=True)
    conn = iface.resource("connection", lambda rep: table().pop(rep))

    def call(fn: Callable[[], object]) -> object:
        try:
            return Ok(fn())
        except Failure as f:
            return Err(v.errors(f.error))

    def open_(address: str) -> object:
        return call(lambda: table().push(_pg().open(address)))

    def query(rep: int, statement: str, params: list[Any]) -> object:
        def run() -> object:
            values = pg_params(v.params(params), "bad-parameter")
            return v.rows(_pg_connection(rep).query(statement, values))

        return call(run)

    def execute(rep: int, statement: str, params: list[Any]) -> object:
        def run() -> object:
            values = pg_params(v.params(params), "value-conversion-failed")
            return _pg_connection(rep).execute(statement, values)

        return call(run)

    iface.func("[static]connection.open", (STRING,), Result(Own(conn), v.error))(open_)
    signature = (Borrow(conn), STRING, List(v.parameter))
    iface.func("[method]connection.query", signature, Result(v.row_set, v.error))(query)
    iface.func("[method]connection.execute", signature, Result(U64, v.error))(execute)
    return iface


# == MySQL ===================================================================================

_MYSQL_INTEGERS = {
    FIELD_TYPE.TINY: ("int8", "uint8"),
    FIELD_TYPE.SHORT: ("int16", "uint16"),
    FIELD_TYPE.INT24: ("int32", "uint32"),
    FIELD_TYPE.LONG: ("int32", "uint32"),
    FIELD_TYPE.LONGLONG: ("int64", "uint64"),
}
_MYSQL_FLOATS = {FIELD_TYPE.FLOAT: "floating32", FIELD_TYPE.DOUBLE: "floating64"}
_INT_RANGES = {
    "int8": (-(2**7), 2**7),
    "int16": (-(2**15), 2**15),
    "int32": (-(2**31), 2**31),
    "int64": (-(2**63), 2**63),
    "uint8": (0, 2**8),
    "uint16": (0, 2**16),
    "uint32": (0, 2**32),
    "uint64": (0, 2**64),
}
# PyMySQL with its encoders but no decoders: values come back as str (or bytes for binary).
_MYSQL_CONV = {k: v for k, v in pymysql.converters.conversions.items() if not isinstance(k, int)}


def mysql_data_type(type_code: int, flags: int) -> str:
    """A column's v2 data type, as Spin derives it from the column's type and flags."""
    if type_code in _MYSQL_INTEGERS:
        signed, unsigned = _MYSQL_INTEGERS[type_code]
        return unsigned if flags & FLAG.UNSIGNED else signed
    if type_code in _MYSQL_FLOATS:
        return _MYSQL_FLOATS[type_code]
    binary = bool(flags & FLAG.BINARY)
    if type_code in (FIELD_TYPE.BLOB, FIELD_TYPE.STRING, FIELD_TYPE.VAR_STRING):
        return "binary" if binary else "str"
    if type_code in (FIELD_TYPE.LONG_BLOB, FIELD_TYPE.MEDIUM_BLOB):
        return "binary"
    return "other"


def mysql_value(raw: str | bytes | None, data_type: str, column: str) -> object:
    """One text-protocol value as a v2 `db-value`; raises Failure."""
    if raw is None:
        return "db-null"
    try:
        if data_type in _INT_RANGES:
            number = int(raw)
            low, high = _INT_RANGES[data_type]
            if not low <= number < high:
                raise ValueError(f"{number} is out of range for {data_type}")
            return (data_type, number)
        if data_type in ("floating32", "floating64"):
            return (data_type, float(raw))
        if data_type == "str":
            return ("str", raw if isinstance(raw, str) else raw.decode("utf-8"))
        if data_type == "binary":
            return ("binary", raw.encode("utf-8") if isinstance(raw, str) else bytes(raw))
    except ValueError as e:
        raise Failure(("value-conversion-failed", f"column {column}: {e}")) from None
    raise Failure(
        (
            "value-conversion-failed",
            f"Cannot convert value {raw!r} in column {column} data type Other",
        )
    )


def mysql_connect(policy: OutboundPolicy, address: str) -> pymysql.Connection[Any]:
    """A connection to `address` if the policy allows it; raises Failure."""
    if not address_allowed(policy, address, "mysql"):
        raise Failure(("connection-failed", f"address {address} is not permitted"))
    try:
        url = urlsplit(address)
        port = url.port or MYSQL_DEFAULT_PORT
    except ValueError as e:
        raise Failure(("connection-failed", f"invalid address: {e}")) from None
    if url.scheme != "mysql" or not url.hostname:
        raise Failure(("connection-failed", "URL scheme must be mysql and name a host"))
    query = {k.lower(): v for k, v in parse_qsl(url.query)}
    ssl_mode = (query.get("ssl-mode") or query.get("sslmode") or "disabled").lower()
    try:
        return pymysql.connect(
            host=url.hostname,
            port=port,
            user=unquote(url.username or ""),
            password=unquote(url.password or ""),
            database=unquote(url.path.lstrip("/")) or None,
            charset="utf8mb4",
            autocommit=None,  # the server's default, as mysql_async
            conv=_MYSQL_CONV,
            connect_timeout=CONNECT_TIMEOUT,
            ssl={} if ssl_mode != "disabled" else None,
        )
    except pymysql.MySQLError as e:
        raise Failure(("connection-failed", _mysql_message(e))) from None


def _mysql_message(e: pymysql.MySQLError) -> str:
    if len(e.args) == 2:
        return f"ERROR {e.args[0]}: {e.args[1]}"
    return str(e)


def _mysql_arg(p: Any) -> object:
    if p == "db-null":
        return None
    tag, payload = p
    return int(payload) if tag == "boolean" else payload


class MysqlConnection:
    """A guest's open MySQL connection."""

    def __init__(self, conn: pymysql.Connection[Any]) -> None:
        self.conn = conn
        weakref.finalize(self, _quietly(conn.close))

    def _run(self, statement: str, params: list[Any]) -> pymysql.cursors.Cursor:
        """Run `statement` with `?` parameters as a server-side prepared statement."""
        cursor = self.conn.cursor()
        try:
            if not params:
                cursor.execute(statement)
                return cursor
            names = [f"@wasmlet_p{i}" for i in range(len(params))]
            assign = ", ".join(f"{n} = %s" for n in names)
            cursor.execute(f"SET @wasmlet_q = %s, {assign}", [statement, *map(_mysql_arg, params)])
            cursor.execute("PREPARE wasmlet_stmt FROM @wasmlet_q")
            try:
                cursor.execute("EXECUTE wasmlet_stmt USING " + ", ".join(names))
            finally:
                with contextlib.suppress(pymysql.MySQLError), self.conn.cursor() as other:
                    other.execute("DEALLOCATE PREPARE wasmlet_stmt")
        except pymysql.MySQLError as e:
            raise Failure(("query-failed", _mysql_message(e))) from None
        return cursor

    def execute(self, statement: str, params: list[Any]) -> None:
        self._run(statement, params).close()

    def query(self, statement: str, params: list[Any]) -> dict[str, object]:
        cursor = self._run(statement, params)
        fields = cursor._result.fields if cursor._result is not None else None
        if not fields:
            return {"columns": [], "rows": []}
        names = [f.name for f in fields]
        types = [mysql_data_type(f.type_code, f.flags) for f in fields]
        rows = [
            [mysql_value(raw, t, n) for raw, t, n in zip(row, types, names, strict=True)]
            for row in cursor.fetchall()
        ]
        columns = [{"name": n, "data-type": t} for n, t in zip(names, types, strict=True)]
        return {"columns": columns, "rows": rows}


@dataclass(frozen=True)
class OutboundMysql:
    """The outbound MySQL capability of one component."""

    policy: OutboundPolicy

    def open(self, address: str) -> MysqlConnection:
        """Raises Failure with a v2 error."""
        return MysqlConnection(mysql_connect(self.policy, address))


def _mysql() -> OutboundMysql:
    return current().capability("outbound_mysql")  # type: ignore[no-any-return]


def _mysql_connection(rep: int) -> MysqlConnection:
    try:
        return table().get(rep, MysqlConnection)
    except HostTrap:
        raise Failure(("connection-failed", "no connection found")) from None


def _mysql_call(fn: Callable[[], object]) -> object:
    try:
        return Ok(fn())
    except Failure as f:
        return Err(f.error)


spin_mysql = Interface("fermyon:spin/mysql@2.0.0", blocking=True)
MYSQL_CONNECTION = spin_mysql.resource("connection", lambda rep: table().pop(rep))
_MYSQL_ARGS = (Borrow(MYSQL_CONNECTION), STRING, List(V2_PARAMETER))


@spin_mysql.func("[static]connection.open", (STRING,), Result(Own(MYSQL_CONNECTION), V2_ERROR))
def _mysql_open(address: str) -> object:
    return _mysql_call(lambda: table().push(_mysql().open(address)))


@spin_mysql.func("[method]connection.query", _MYSQL_ARGS, Result(V2_ROW_SET, V2_ERROR))
def _mysql_query(rep: int, statement: str, params: list[Any]) -> object:
    return _mysql_call(lambda: _mysql_connection(rep).query(statement, params))


@spin_mysql.func("[method]connection.execute", _MYSQL_ARGS, Result(None, V2_ERROR))
def _mysql_execute(rep: int, statement: str, params: list[Any]) -> object:
    return _mysql_call(lambda: _mysql_connection(rep).execute(statement, params))


INTERFACES = [
    Interface("fermyon:spin/rdbms-types@2.0.0"),
    *(_pg_interface(v) for v in PG_VERSIONS),
    spin_mysql,
]
