"""The MySQL client behind the MySQL factor, PyMySQL (imported when a guest first opens a
connection, so that apps without MySQL do not load PyMySQL).

Statements with `?` parameters run as a server-side prepared statement (`PREPARE` / `EXECUTE
… USING` with the parameters as typed session variables), as Spin's client (mysql_async) runs
them. Results are read through the text protocol and converted by column type and flags as
Spin converts them (`mysql_data_type`, `mysql_value`).
"""

from __future__ import annotations

import contextlib
import ssl
import weakref
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import pymysql
import pymysql.converters
from pymysql.constants import FIELD_TYPE, FLAG

from ._outbound import Failure
from .rdbms_types import CONNECT_TIMEOUT, quietly

DEFAULT_PORT = 3306

_INTEGERS = {
    FIELD_TYPE.TINY: ("int8", "uint8"),
    FIELD_TYPE.SHORT: ("int16", "uint16"),
    FIELD_TYPE.INT24: ("int32", "uint32"),
    FIELD_TYPE.LONG: ("int32", "uint32"),
    FIELD_TYPE.LONGLONG: ("int64", "uint64"),
}
_FLOATS = {FIELD_TYPE.FLOAT: "floating32", FIELD_TYPE.DOUBLE: "floating64"}
#: Each integer case's range, [low, high).
INT_RANGES = {
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
_CONV: dict[Any, Any] = {
    k: v for k, v in pymysql.converters.conversions.items() if not isinstance(k, int)
}


def mysql_data_type(type_code: int, flags: int) -> str:
    """A column's v2 data type, as Spin derives it from the column's type and flags."""
    if type_code in _INTEGERS:
        signed, unsigned = _INTEGERS[type_code]
        return unsigned if flags & FLAG.UNSIGNED else signed
    if type_code in _FLOATS:
        return _FLOATS[type_code]
    binary = bool(flags & FLAG.BINARY)
    if type_code in (FIELD_TYPE.BLOB, FIELD_TYPE.STRING, FIELD_TYPE.VAR_STRING):
        return "binary" if binary else "str"  # (TEXT is a BLOB with a character set)
    if type_code in (FIELD_TYPE.LONG_BLOB, FIELD_TYPE.MEDIUM_BLOB):
        return "binary"
    return "other"


def mysql_value(raw: str | bytes | None, data_type: str, column: str) -> object:
    """One text-protocol value as a v2 `db-value`; raises Failure."""
    if raw is None:
        return "db-null"
    try:
        if data_type in INT_RANGES:
            number = int(raw)
            low, high = INT_RANGES[data_type]
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
    # As Spin: a column of another type (DECIMAL, dates…) converts only when NULL.
    raise Failure(
        (
            "value-conversion-failed",
            f"Cannot convert value {raw!r} in column {column} data type Other",
        )
    )


def connect(address: str) -> MysqlConnection:
    """A connection to `address` (already checked against the policy); raises Failure."""
    try:
        url = urlsplit(address)
        port = url.port or DEFAULT_PORT
    except ValueError as e:
        raise Failure(("connection-failed", f"invalid address: {e}")) from None
    if url.scheme != "mysql" or not url.hostname:
        raise Failure(("connection-failed", "URL scheme must be mysql and name a host"))
    query = {k.lower(): v for k, v in parse_qsl(url.query)}
    ssl_mode = (query.get("ssl-mode") or query.get("sslmode") or "disabled").lower()
    # As Spin (mysql_async's default SslOpts): any mode but `disabled` requires TLS with the
    # server's certificate and name verified; `disabled` is plain TCP. PyMySQL must be told
    # both explicitly: with no TLS options it tries TLS unverified and falls back to plain
    # TCP, and an empty options dict counts as none.
    tls = ssl.create_default_context() if ssl_mode != "disabled" else None
    try:
        conn = pymysql.connect(
            host=url.hostname,
            port=port,
            user=unquote(url.username or ""),
            password=unquote(url.password or ""),
            database=unquote(url.path.lstrip("/")) or None,
            charset="utf8mb4",
            autocommit=None,  # the server's default, as mysql_async
            conv=_CONV,
            connect_timeout=CONNECT_TIMEOUT,
            ssl=tls,
            ssl_disabled=tls is None,
        )
    except pymysql.MySQLError as e:
        raise Failure(("connection-failed", _message(e))) from None
    # PyMySQL before 1.2 goes on in plain TCP when the server offers no TLS: refuse that.
    if tls is not None and not isinstance(getattr(conn, "_sock", None), ssl.SSLSocket):
        quietly(conn.close)()
        raise Failure(("connection-failed", "TLS is required but the server does not offer it"))
    return MysqlConnection(conn)


def _message(e: pymysql.MySQLError) -> str:
    if len(e.args) == 2:  # (server error code, message)
        return f"ERROR {e.args[0]}: {e.args[1]}"
    return str(e)


def _arg(p: Any) -> object:
    """A v2 parameter as a PyMySQL argument (it escapes it into a typed literal)."""
    if p == "db-null":
        return None
    tag, payload = p
    return int(payload) if tag == "boolean" else payload


class MysqlConnection:
    """A guest's open MySQL connection."""

    def __init__(self, conn: pymysql.Connection[Any]) -> None:
        self.conn = conn
        weakref.finalize(self, quietly(conn.close))

    def _run(self, statement: str, params: list[Any]) -> pymysql.cursors.Cursor:
        """Run `statement` with `?` parameters as a server-side prepared statement."""
        cursor: pymysql.cursors.Cursor = self.conn.cursor()
        try:
            if not params:
                cursor.execute(statement)  # as is: no `%` formatting without arguments
                return cursor
            # The statement and the values go as session variables, so nothing the guest
            # sends is ever spliced into SQL text.
            names = [f"@wasmlet_p{i}" for i in range(len(params))]
            assign = ", ".join(f"{n} = %s" for n in names)
            cursor.execute(f"SET @wasmlet_q = %s, {assign}", [statement, *map(_arg, params)])
            cursor.execute("PREPARE wasmlet_stmt FROM @wasmlet_q")
            try:
                cursor.execute("EXECUTE wasmlet_stmt USING " + ", ".join(names))
            finally:
                with contextlib.suppress(pymysql.MySQLError), self.conn.cursor() as other:
                    other.execute("DEALLOCATE PREPARE wasmlet_stmt")
        except pymysql.MySQLError as e:
            raise Failure(("query-failed", _message(e))) from None
        return cursor

    def execute(self, statement: str, params: list[Any]) -> None:
        self._run(statement, params).close()

    def query(self, statement: str, params: list[Any]) -> dict[str, object]:
        cursor = self._run(statement, params)
        # The column flags (UNSIGNED, BINARY) are only on PyMySQL's private result object.
        result = cursor._result  # type: ignore[attr-defined]
        fields = result.fields if result is not None else None
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
