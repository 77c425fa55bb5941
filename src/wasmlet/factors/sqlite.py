"""SQLite: `fermyon:spin/sqlite@2.0.0` and `spin:sqlite/sqlite@3.0.0`.

Databases are named by label. `default` always exists (a file at `<state_dir>/sqlite_db.db`);
others come from the runtime config: `[sqlite_database.<label>] type = "spin"` with an optional
`path` (relative to the config file; without one, every connection gets a fresh in-memory
database, as in Spin). A component may open only the labels in its `sqlite_databases` (locked
app metadata `databases`): any other label is `access-denied`, checked before the label is
looked up, as Spin does. Every label a component lists must be defined (checked at startup).

Each `open` is a new SQLite connection in autocommit mode, closed when the guest drops it or the
instance ends. `execute` runs one statement; every SQLite failure is `io(<message>)`.
"""

from __future__ import annotations

import sqlite3
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from ..errors import NotSupportedError, RuntimeConfigError
from ..runtime_config import StoreConfig
from ..wasi import (
    F64,
    LIST_U8,
    S64,
    STRING,
    U64,
    Borrow,
    Err,
    HostTrap,
    Interface,
    Key,
    List,
    Ok,
    Own,
    Record,
    Result,
    Variant,
    current,
    table,
)
from ._factor import AppContext, ComponentContext, Factor

DEFAULT = "default"
DEFAULT_FILE = "sqlite_db.db"
BUSY_TIMEOUT = 5.0  # seconds, rusqlite's default busy timeout


@dataclass(frozen=True)
class Database:
    """One labelled database: a file, or (`path` None) in-memory per connection."""

    path: Path | None

    def connect(self) -> sqlite3.Connection:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        return sqlite3.connect(
            str(self.path) if self.path is not None else ":memory:",
            isolation_level=None,
            check_same_thread=False,
            timeout=BUSY_TIMEOUT,
        )


def _spin_database(label: str, extra: dict[str, Any], base: Path) -> Database:
    unknown = sorted(set(extra) - {"path"})
    if unknown:
        raise RuntimeConfigError(f"sqlite_database.{label}: unknown key {unknown[0]!r}")
    if extra.get("path") is None:
        return Database(None)
    return Database(base / str(extra["path"]))


def open_databases(
    config: Mapping[str, StoreConfig], state_dir: Path, base: Path
) -> dict[str, Database]:
    """The app's databases from `[sqlite_database.*]`, plus the implicit `default`."""
    databases: dict[str, Database] = {}
    for label, spec in config.items():
        extra = dict(spec.model_extra or {})
        if spec.type == "spin":
            databases[label] = _spin_database(label, extra, base)
        elif spec.type == "libsql":
            raise NotSupportedError(
                f"sqlite_database.{label}: type 'libsql' is not supported (supported: spin)"
            )
        else:
            raise RuntimeConfigError(
                f"sqlite_database.{label}: unknown database kind {spec.type!r}"
            )
    if DEFAULT not in databases:
        databases[DEFAULT] = Database(state_dir / DEFAULT_FILE)
    return databases


@dataclass(frozen=True)
class Sqlite:
    """The SQLite capability of one component."""

    databases: Mapping[str, Database]
    allowed: frozenset[str]

    def open(self, label: str) -> sqlite3.Connection | object:
        """A new connection, or the WIT error to return."""
        if label not in self.allowed:
            return "access-denied"
        database = self.databases.get(label)
        if database is None:
            return "no-such-database"
        try:
            return database.connect()
        except (sqlite3.Error, OSError) as e:
            return ("io", str(e))


class _Connection:
    """A guest's open connection; the SQLite handle closes with it."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        weakref.finalize(self, db.close)

    def execute(self, statement: str, params: list[object]) -> dict[str, object]:
        cursor = self.db.execute(statement, params)
        columns = [d[0] for d in cursor.description] if cursor.description else []
        rows = [{"values": [_value(v) for v in row]} for row in cursor.fetchall()]
        return {"columns": columns, "rows": rows}

    def scalar(self, sql: str) -> int:
        return int(self.db.execute(sql).fetchone()[0])


def _value(v: object) -> object:
    if v is None:
        return "null"
    if isinstance(v, int):
        return ("integer", v)
    if isinstance(v, float):
        return ("real", v)
    if isinstance(v, str):
        return ("text", v)
    return ("blob", bytes(cast(bytes, v)))  # sqlite3 gives bytes for a BLOB


def _param(value: str | tuple[str, object]) -> object:
    """A WIT `value` as a Python value for sqlite3 (every payload maps directly)."""
    return None if isinstance(value, str) else value[1]  # "null" is the only bare case


KEY: Key[Sqlite] = Key("sqlite")


def _sqlite() -> Sqlite:
    return current().get(KEY)


def _lookup(rep: int) -> _Connection | None:
    try:
        return table().get(rep, _Connection)
    except HostTrap:
        return None


def _drop(rep: int) -> None:
    table().pop(rep)


def _open(label: str) -> object:
    opened = _sqlite().open(label)
    if isinstance(opened, sqlite3.Connection):
        return Ok(table().push(_Connection(opened)))
    return Err(opened)


def _execute(rep: int, statement: str, params: list[str | tuple[str, object]]) -> object:
    conn = _lookup(rep)
    if conn is None:
        return Err("invalid-connection")
    try:
        return Ok(conn.execute(statement, [_param(p) for p in params]))
    except sqlite3.Error as e:
        return Err(("io", str(e)))


def _last_insert_rowid(rep: int) -> int:
    return table().get(rep, _Connection).scalar("SELECT last_insert_rowid()")


def _changes(rep: int) -> int:
    return table().get(rep, _Connection).scalar("SELECT changes()")


VALUE = Variant(
    ("integer", S64), ("real", F64), ("text", STRING), ("blob", LIST_U8), ("null", None)
)
QUERY_RESULT = Record(("columns", List(STRING)), ("rows", List(Record(("values", List(VALUE))))))
ERROR = Variant(
    ("no-such-database", None),
    ("access-denied", None),
    ("invalid-connection", None),
    ("database-full", None),
    ("io", STRING),
)


def _interface(name: str, *, v3: bool) -> Interface:
    iface = Interface(name, api="sqlite")
    conn = iface.resource("connection", _drop)
    iface.func("[static]connection.open", (STRING,), Result(Own(conn), ERROR))(_open)
    iface.func(
        "[method]connection.execute",
        (Borrow(conn), STRING, List(VALUE)),
        Result(QUERY_RESULT, ERROR),
    )(_execute)
    if v3:
        iface.func("[method]connection.last-insert-rowid", (Borrow(conn),), S64)(_last_insert_rowid)
        iface.func("[method]connection.changes", (Borrow(conn),), U64)(_changes)
    return iface


class SqliteFactor(Factor[dict[str, Database], Sqlite]):
    key = KEY
    interfaces = (
        _interface("fermyon:spin/sqlite@2.0.0", v3=False),
        _interface("spin:sqlite/sqlite@3.0.0", v3=True),
    )

    def configure_app(self, ctx: AppContext) -> dict[str, Database]:
        databases = open_databases(
            ctx.runtime_config.sqlite_database, ctx.state_dir, ctx.config_base
        )
        for c in ctx.app.components:
            for label in c.metadata.get("databases", []):
                if label not in databases:
                    raise RuntimeConfigError(
                        f"{ctx.manifest_name}: component.{c.id}.sqlite_databases: "
                        f"component {c.id!r} uses SQLite database {label!r}, which is not "
                        f"defined: add [sqlite_database.{label}] to the runtime config"
                    )
        return databases

    def prepare(self, state: dict[str, Database], ctx: ComponentContext) -> Sqlite:
        return Sqlite(state, frozenset(ctx.metadata_list("databases")))


FACTOR = SqliteFactor()
