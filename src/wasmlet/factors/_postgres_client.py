"""The PostgreSQL client behind the PostgreSQL factor, psycopg 3 (imported when a guest first
opens a connection, so that apps without PostgreSQL do not load psycopg and libpq).

Here: connecting (the address checked against `allowed_outbound_hosts` first), WIT v4 values
to psycopg values and binary results back to v4 values, and PostgreSQL errors as v4's
`query-error`. The factor (`postgres.py`) narrows v4 to v2/v3.
"""

from __future__ import annotations

import datetime as dt
import json
import struct
import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

import psycopg
from psycopg import RawCursor, pq
from psycopg.abc import Loader
from psycopg.adapt import Dumper
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb
from psycopg.types.numeric import Float4, Float8, Int2, Int4, Int8
from psycopg.types.range import Int4Range, Int8Range, NumericRange, Range

from ..outbound import OutboundPolicy
from ._outbound import Failure
from .rdbms_types import CONNECT_TIMEOUT, quietly

DEFAULT_PORT = "5432"

# == connecting ==============================================================================

# Connection-string options tokio-postgres understands; libpq's others (service, passfile,
# sslkey…) would read host files or bypass the host check, so they are refused.
OPTIONS = frozenset(
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


def _targets(info: dict[str, str]) -> list[tuple[str, str | None]]:
    """Each (host, port) the connection may go to; raises Failure."""
    # `hostaddr` is where libpq actually connects when both are given, so it is what is checked.
    hosts = [h for h in (info.get("hostaddr") or info.get("host") or "").split(",") if h]
    ports = [p for p in (info.get("port") or "").split(",") if p]
    if not hosts:
        raise Failure(("connection-failed", "host missing"))
    targets = []
    for i, host in enumerate(hosts):
        if host.startswith(("/", "@")):
            raise Failure(("connection-failed", "Unix sockets are not supported on WebAssembly"))
        # libpq pairs hosts and ports by position; a single port applies to every host.
        port = ports[i] if i < len(ports) else (ports[0] if len(ports) == 1 else None)
        targets.append((host, port))
    return targets


def _check(policy: OutboundPolicy, targets: list[tuple[str, str | None]]) -> None:
    for host, port in targets:
        try:
            number = int(port) if port is not None else None
        except ValueError:
            raise Failure(("connection-failed", f"invalid port {port!r}")) from None
        if not policy.allows("postgres", host, number):
            where = f"{host}:{port}" if port is not None else host
            raise Failure(("connection-failed", f"address postgres://{where} is not permitted"))


def connect(policy: OutboundPolicy, address: str) -> PgConnection:
    """An autocommit connection to `address` if the policy allows it; raises Failure with a
    v4 error."""
    try:
        # (Parsed from a string, every value is a string.)
        info = {k: str(v) for k, v in conninfo_to_dict(address).items() if v is not None}
    except psycopg.Error as e:
        raise Failure(("connection-failed", str(e))) from None
    unknown = sorted(set(info) - OPTIONS)
    if unknown:
        raise Failure(("connection-failed", f"unknown option `{unknown[0]}`"))
    _check(policy, _targets(info))
    params = {"port": DEFAULT_PORT, "connect_timeout": str(CONNECT_TIMEOUT), **info}
    try:
        conn = psycopg.connect(
            make_conninfo("", **params),
            client_encoding="UTF8",
            autocommit=True,
            cursor_factory=RawCursor,
        )
    except psycopg.Error as e:
        raise Failure(("connection-failed", str(e).strip())) from None
    conn.adapters.register_dumper(PgInterval, _IntervalDumper)
    return PgConnection(conn)


# == values: PostgreSQL -> WIT v4 ============================================================

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
#: The v4 case of each column type wasmlet converts, by type OID; any other is `unsupported`.
PG_TAGS: dict[int, str] = {
    **{_TYPES[name].oid: tag for name, tag in _SCALAR_TAGS.items()},
    **{_TYPES[name].array_oid: tag for name, tag in _ARRAY_TAGS.items()},
}


def _decimal_text(d: Decimal) -> str:
    return format(d, "f")  # never exponent notation (Spin prints rust_decimal's plain form)


def _wit_datetime(v: dt.datetime) -> tuple[int, ...]:
    if v.tzinfo is not None:  # timestamptz: read as UTC (Spin fails the query instead)
        v = v.astimezone(dt.UTC).replace(tzinfo=None)
    return (v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond * 1000)


def _kind(inclusive: bool) -> str:
    return "inclusive" if inclusive else "exclusive"


def _wit_range(convert: Callable[[Any], object]) -> Callable[[Range[Any]], object]:
    # An empty range has no bounds, so it reads as (none, none), as in Spin: WIT has no case
    # for "empty".
    def bounds(r: Range[Any]) -> object:
        lower = None if r.lower is None else (convert(r.lower), _kind(r.lower_inc))
        upper = None if r.upper is None else (convert(r.upper), _kind(r.upper_inc))
        return (lower, upper)

    return bounds


def _wit_array(convert: Callable[[Any], object]) -> Callable[[list[Any]], object]:
    def items(values: list[Any]) -> object:
        if any(isinstance(v, list) for v in values):
            raise ValueError("multi-dimensional arrays are not supported")
        return [None if v is None else convert(v) for v in values]

    return items


def _json_bytes(value: object) -> bytes:
    # Compact, as serde_json::to_vec writes it in Spin.
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
    # psycopg loads an interval as a timedelta, which cannot hold months: read the wire form.
    micros, days, months = struct.unpack(">qii", data)
    return {"micros": micros, "days": days, "months": months}


class _Column:
    """How to turn one result column's binary values into v4 `db-value`s."""

    def __init__(self, oid: int, cursor: RawCursor[Any]) -> None:
        self.tag = PG_TAGS.get(oid)
        self.loader: Loader | None = None
        if self.tag is not None and self.tag != "interval":
            loader_class = cursor.adapters.get_loader(oid, pq.Format.BINARY)
            self.loader = loader_class(oid, cursor) if loader_class is not None else None

    def value(self, data: bytes | None) -> object:
        if data is None:
            return "db-null"
        if self.tag == "interval":
            return ("interval", _interval(data))
        if self.tag is None or self.loader is None:
            return ("unsupported", bytes(data))  # the binary wire value, as Spin
        return (self.tag, _FROM_PG[self.tag](self.loader.load(data)))


# == values: WIT v4 -> psycopg ===============================================================


@dataclass(frozen=True)
class PgInterval:
    """A WIT `interval` on its way to PostgreSQL (months and days kept apart, as PostgreSQL
    keeps them; a timedelta would merge them)."""

    micros: int
    days: int
    months: int


class _IntervalDumper(Dumper):
    """A `PgInterval` as PostgreSQL interval text."""

    oid = psycopg.postgres.types["interval"].oid

    def dump(self, obj: Any) -> bytes:
        return f"{obj.months} mons {obj.days} days {obj.micros} microseconds".encode()


def _date(v: Sequence[int]) -> dt.date:
    y, m, d = v
    return dt.date(y, m, d)


def _time(v: Sequence[int]) -> dt.time:
    h, m, s, ns = v
    return dt.time(h, m, s, ns // 1000)  # PostgreSQL keeps microseconds


def _datetime(v: Sequence[int]) -> dt.datetime:
    y, mo, d, h, mi, s, ns = v
    return dt.datetime(y, mo, d, h, mi, s, ns // 1000)


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


# The numeric wrappers (Int2…, Float4…) make psycopg send the exact PostgreSQL type.
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


# What converting a guest's value can raise (RecursionError: JSON nested too deeply for
# Python's parser); anything else would trap the guest instead of returning an error.
_BAD_VALUE = (ValueError, TypeError, OverflowError, OSError, ArithmeticError, RecursionError)


def to_pg(params: list[Any], error_case: str) -> list[object]:
    """v4 parameter values as psycopg values; raises Failure((`error_case`, message))."""
    out: list[object] = []
    for p in params:
        if p == "db-null":
            out.append(None)
            continue
        tag, payload = p
        try:
            out.append(_TO_PG[tag](payload))
        except _BAD_VALUE as e:
            raise Failure((error_case, f"invalid {tag} parameter: {e}")) from None
    return out


# == errors and the connection ===============================================================


def _db_error(e: psycopg.Error) -> object:
    """A psycopg error as v4 `query-failed(query-error)`: `db-error` for a server's error,
    `text` for anything else."""
    diag = e.diag
    if e.sqlstate is None or diag.message_primary is None:
        return ("query-failed", ("text", str(e).strip()))
    severity = diag.severity or "ERROR"
    # The text tokio-postgres' DbError displays (what v2/v3 carry).
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
        weakref.finalize(self, quietly(conn.close))

    def _run(self, statement: str, params: list[object]) -> RawCursor[Any]:
        # The connection was made with cursor_factory=RawCursor: `$1` placeholders as is.
        cursor = cast("RawCursor[Any]", self.conn.cursor())
        try:
            # binary=True: results in the wire's binary form, read by type OID below.
            cursor.execute(statement, params, binary=True)
        except psycopg.Error as e:
            raise Failure(_db_error(e)) from None
        return cursor

    def execute(self, statement: str, params: list[object]) -> int:
        return max(self._run(statement, params).rowcount, 0)

    def query(self, statement: str, params: list[object]) -> dict[str, object]:
        cursor = self._run(statement, params)
        result = cursor.pgresult
        if result is None or result.ntuples == 0:
            return {"columns": [], "rows": []}  # as Spin: columns come from the first row
        oids = [result.ftype(i) for i in range(result.nfields)]
        names = [(result.fname(i) or b"").decode() for i in range(result.nfields)]
        columns = [_Column(oid, cursor) for oid in oids]
        try:
            rows = [
                [col.value(result.get_value(r, i)) for i, col in enumerate(columns)]
                for r in range(result.ntuples)
            ]
        except (psycopg.Error, ValueError, TypeError, OverflowError, RecursionError) as e:
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
        # A type psycopg does not know (an extension's, a domain, an enum): ask the server.
        try:
            sql = f"SELECT typname FROM pg_type WHERE oid = {int(oid)}"
            row = self.conn.execute(sql).fetchone()
        except psycopg.Error:
            return "unknown"
        return str(row[0]) if row else "unknown"
