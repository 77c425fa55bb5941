"""Key-value: `fermyon:spin/key-value@2.0.0` and `wasi:keyvalue@0.2.0-draft2`.

Stores are named by label. `default` always exists (SQLite at `<state_dir>/sqlite_key_value.db`);
others come from the runtime config (`[key_value_store.<label>]`, `type = "spin"` with an
optional `path`, or `type = "redis"` with a `url`). A component may open only the labels in its
`key_value_stores`; anything else is `access-denied`. Policy is decided once per app.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..errors import NotSupportedError, RuntimeConfigError
from ..gate import released
from ..runtime_config import StoreConfig
from ..wasi import (
    BOOL,
    LIST_U8,
    S64,
    STRING,
    Borrow,
    Err,
    Interface,
    Key,
    List,
    Ok,
    Option,
    Own,
    Record,
    Result,
    Tuple,
    Variant,
    current,
    table,
)
from ._factor import AppContext, ComponentContext, Factor

DEFAULT = "default"
DEFAULT_FILE = "sqlite_key_value.db"


class Store(Protocol):
    def get(self, key: str) -> bytes | None: ...
    def set(self, key: str, value: bytes) -> None: ...
    def delete(self, key: str) -> None: ...
    def exists(self, key: str) -> bool: ...
    def keys(self) -> list[str]: ...


class SqliteStore:
    """Spin's built-in store: table `spin_key_value(store, key, value)` in a SQLite file."""

    def __init__(self, path: Path | None, label: str) -> None:
        self.label = label
        self._lock = threading.Lock()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            str(path) if path else ":memory:",
            check_same_thread=False,
            isolation_level=None,
            timeout=30,
        )
        if path is not None:
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS spin_key_value "
            "(store TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,"
            " PRIMARY KEY (store, key))"
        )

    def _one(self, sql: str, *args: Any) -> Any:
        with self._lock:
            return self._db.execute(sql, (self.label, *args)).fetchone()

    def get(self, key: str) -> bytes | None:
        row = self._one("SELECT value FROM spin_key_value WHERE store = ? AND key = ?", key)
        return bytes(row[0]) if row else None

    def set(self, key: str, value: bytes) -> None:
        self._one(
            "INSERT INTO spin_key_value (store, key, value) VALUES (?, ?, ?) "
            "ON CONFLICT (store, key) DO UPDATE SET value = excluded.value",
            key,
            value,
        )

    def delete(self, key: str) -> None:
        self._one("DELETE FROM spin_key_value WHERE store = ? AND key = ?", key)

    def exists(self, key: str) -> bool:
        return (
            self._one("SELECT 1 FROM spin_key_value WHERE store = ? AND key = ?", key) is not None
        )

    def keys(self) -> list[str]:
        with self._lock:
            rows = self._db.execute("SELECT key FROM spin_key_value WHERE store = ?", (self.label,))
            return [r[0] for r in rows.fetchall()]


class RedisStore:
    def __init__(self, url: str) -> None:
        import redis

        self._client = redis.Redis.from_url(url, socket_timeout=30)

    # Each call waits on the network: another guest runs meanwhile (gate.py).

    def get(self, key: str) -> bytes | None:
        with released():
            value = self._client.get(key)
        return bytes(value) if value is not None else None  # type: ignore[arg-type]

    def set(self, key: str, value: bytes) -> None:
        with released():
            self._client.set(key, value)

    def delete(self, key: str) -> None:
        with released():
            self._client.delete(key)

    def exists(self, key: str) -> bool:
        with released():
            return bool(self._client.exists(key))

    def keys(self) -> list[str]:
        with released():
            return [bytes(k).decode() for k in self._client.scan_iter()]


Opener = Callable[[], Store]


def store_openers(
    config: Mapping[str, StoreConfig], state_dir: Path, base: Path
) -> dict[str, Opener]:
    """How to open each of the app's stores (`[key_value_store.*]` plus the implicit
    `default`), checked now; a store is opened when a guest first uses it."""
    openers: dict[str, Opener] = {}
    for label, spec in config.items():
        extra = spec.model_extra or {}
        if spec.type == "spin":
            path = extra.get("path")
            file = base / str(path) if path else None
            openers[label] = functools.partial(SqliteStore, file, label)
        elif spec.type == "redis":
            if "url" not in extra:
                raise RuntimeConfigError(f"key_value_store.{label}: type redis needs a url")
            openers[label] = functools.partial(RedisStore, str(extra["url"]))
        else:
            raise NotSupportedError(
                f"key_value_store.{label}: store type {spec.type!r} is not supported (spin, redis)"
            )
    if DEFAULT not in openers:
        openers[DEFAULT] = functools.partial(SqliteStore, state_dir / DEFAULT_FILE, DEFAULT)
    return openers


class AppStores:
    """The app's stores, each opened when a guest first opens it (an app that never uses
    key-value gets no database file)."""

    def __init__(self, openers: dict[str, Opener]) -> None:
        self._openers = openers
        self._stores: dict[str, Store] = {}
        self._lock = threading.Lock()

    def get(self, label: str) -> Store | None:
        with self._lock:
            store = self._stores.get(label)
            if store is None and label in self._openers:
                store = self._stores[label] = self._openers[label]()
            return store


@dataclass(frozen=True)
class KeyValue:
    """The key-value capability of one component."""

    stores: AppStores
    allowed: frozenset[str]

    def open(self, label: str) -> Store | str:
        if label not in self.allowed:
            return "access-denied"
        store = self.stores.get(label)
        return store if store is not None else "no-such-store"


KEY: Key[KeyValue] = Key("key-value")


def _kv() -> KeyValue:
    return current().get(KEY)


def _store(rep: int) -> Store:
    return table().get(rep, _Handle).store


@dataclass
class _Handle:
    store: Store


def _guard(fn: Any) -> Any:
    try:
        return Ok(fn())
    except Exception as e:
        return Err(("other", str(e)))


# -- fermyon:spin/key-value@2.0.0 -----------------------------------------------------------

spin_kv = Interface("fermyon:spin/key-value@2.0.0", api="kv")
STORE = spin_kv.resource("store", lambda rep: table().pop(rep))
SPIN_ERROR = Variant(
    ("store-table-full", None), ("no-such-store", None), ("access-denied", None), ("other", STRING)
)


@spin_kv.func("[static]store.open", (STRING,), Result(Own(STORE), SPIN_ERROR))
def _open(label: str) -> object:
    opened = _kv().open(label)
    if isinstance(opened, str):
        return Err(opened)
    return Ok(table().push(_Handle(opened)))


@spin_kv.func("[method]store.get", (Borrow(STORE), STRING), Result(Option(LIST_U8), SPIN_ERROR))
def _get(rep: int, key: str) -> object:
    return _guard(lambda: _store(rep).get(key))


@spin_kv.func("[method]store.set", (Borrow(STORE), STRING, LIST_U8), Result(None, SPIN_ERROR))
def _set(rep: int, key: str, value: bytes) -> object:
    return _guard(lambda: _store(rep).set(key, value))


@spin_kv.func("[method]store.delete", (Borrow(STORE), STRING), Result(None, SPIN_ERROR))
def _delete(rep: int, key: str) -> object:
    return _guard(lambda: _store(rep).delete(key))


@spin_kv.func("[method]store.exists", (Borrow(STORE), STRING), Result(BOOL, SPIN_ERROR))
def _exists(rep: int, key: str) -> object:
    return _guard(lambda: _store(rep).exists(key))


@spin_kv.func("[method]store.get-keys", (Borrow(STORE),), Result(List(STRING), SPIN_ERROR))
def _get_keys(rep: int) -> object:
    return _guard(lambda: _store(rep).keys())


# -- wasi:keyvalue@0.2.0-draft2 -------------------------------------------------------------

VERSION = "0.2.0-draft2"
wasi_store = Interface(f"wasi:keyvalue/store@{VERSION}", api="kv")
BUCKET = wasi_store.resource("bucket", lambda rep: table().pop(rep))
WASI_ERROR = Variant(("no-such-store", None), ("access-denied", None), ("other", STRING))
KEY_RESPONSE = Record(("keys", List(STRING)), ("cursor", Option(STRING)))


def _each(op: Callable[..., None], calls: list[tuple[Any, ...]]) -> None:
    for args in calls:
        op(*args)


def _wguard(fn: Any) -> Any:
    try:
        return Ok(fn())
    except Exception as e:
        return Err(("other", str(e)))


@wasi_store.func("open", (STRING,), Result(Own(BUCKET), WASI_ERROR))
def _wopen(identifier: str) -> object:
    opened = _kv().open(identifier)
    if isinstance(opened, str):
        return Err(opened)
    return Ok(table().push(_Handle(opened)))


@wasi_store.func(
    "[method]bucket.get", (Borrow(BUCKET), STRING), Result(Option(LIST_U8), WASI_ERROR)
)
def _wget(rep: int, key: str) -> object:
    return _wguard(lambda: _store(rep).get(key))


@wasi_store.func("[method]bucket.set", (Borrow(BUCKET), STRING, LIST_U8), Result(None, WASI_ERROR))
def _wset(rep: int, key: str, value: bytes) -> object:
    return _wguard(lambda: _store(rep).set(key, value))


@wasi_store.func("[method]bucket.delete", (Borrow(BUCKET), STRING), Result(None, WASI_ERROR))
def _wdelete(rep: int, key: str) -> object:
    return _wguard(lambda: _store(rep).delete(key))


@wasi_store.func("[method]bucket.exists", (Borrow(BUCKET), STRING), Result(BOOL, WASI_ERROR))
def _wexists(rep: int, key: str) -> object:
    return _wguard(lambda: _store(rep).exists(key))


@wasi_store.func(
    "[method]bucket.list-keys", (Borrow(BUCKET), Option(STRING)), Result(KEY_RESPONSE, WASI_ERROR)
)
def _wlist(rep: int, cursor: str | None) -> object:
    return _wguard(lambda: {"keys": sorted(_store(rep).keys()), "cursor": None})


wasi_batch = Interface(f"wasi:keyvalue/batch@{VERSION}", api="kv")


@wasi_batch.func(
    "get-many",
    (Borrow(BUCKET), List(STRING)),
    Result(List(Tuple(STRING, Option(LIST_U8))), WASI_ERROR),
)
def _get_many(rep: int, keys: list[str]) -> object:
    store = _store(rep)
    return _wguard(lambda: [(k, store.get(k)) for k in keys])


@wasi_batch.func(
    "set-many", (Borrow(BUCKET), List(Tuple(STRING, LIST_U8))), Result(None, WASI_ERROR)
)
def _set_many(rep: int, items: list[tuple[str, bytes]]) -> object:
    store = _store(rep)
    return _wguard(lambda: _each(store.set, items))


@wasi_batch.func("delete-many", (Borrow(BUCKET), List(STRING)), Result(None, WASI_ERROR))
def _delete_many(rep: int, keys: list[str]) -> object:
    store = _store(rep)
    return _wguard(lambda: _each(store.delete, [(k,) for k in keys]))


wasi_atomics = Interface(f"wasi:keyvalue/atomics@{VERSION}", api="kv")
CAS = wasi_atomics.resource("cas", lambda rep: table().pop(rep))
_atomic_lock = threading.Lock()


@dataclass
class _Cas:
    store: Store
    key: str
    seen: bytes | None


@wasi_atomics.func("increment", (Borrow(BUCKET), STRING, S64), Result(S64, WASI_ERROR))
def _increment(rep: int, key: str, delta: int) -> object:
    store = _store(rep)

    def inc() -> int:
        with _atomic_lock:
            current_value = store.get(key)
            n = int(current_value.decode()) if current_value else 0
            n += delta
            store.set(key, str(n).encode())
            return n

    return _wguard(inc)


@wasi_atomics.func("[static]cas.new", (Borrow(BUCKET), STRING), Result(Own(CAS), WASI_ERROR))
def _cas_new(rep: int, key: str) -> object:
    store = _store(rep)
    return _wguard(lambda: table().push(_Cas(store, key, store.get(key))))


@wasi_atomics.func("[method]cas.current", (Borrow(CAS),), Result(Option(LIST_U8), WASI_ERROR))
def _cas_current(rep: int) -> object:
    return Ok(table().get(rep, _Cas).seen)


CAS_ERROR = Variant(("store-error", WASI_ERROR), ("cas-failed", Own(CAS)))


@wasi_atomics.func("swap", (Own(CAS), LIST_U8), Result(None, CAS_ERROR))
def _swap(rep: int, value: bytes) -> object:
    cas = table().pop(rep)
    with _atomic_lock:
        if cas.store.get(cas.key) != cas.seen:
            cas.seen = cas.store.get(cas.key)
            return Err(("cas-failed", table().push(cas)))
        cas.store.set(cas.key, value)
    return Ok()


class KeyValueFactor(Factor[AppStores, KeyValue]):
    key = KEY
    interfaces = (spin_kv, wasi_store, wasi_batch, wasi_atomics)

    def configure_app(self, ctx: AppContext) -> AppStores:
        stores = ctx.runtime_config.key_value_store
        defined = {DEFAULT, *stores}
        for c in ctx.app.components:
            for label in c.metadata.get("key_value_stores", []):
                if label not in defined:
                    raise RuntimeConfigError(
                        f"{ctx.manifest_name}: component.{c.id}.key_value_stores: "
                        f"component {c.id!r} uses key-value store {label!r}, which is not "
                        f"defined: add [key_value_store.{label}] to the runtime config"
                    )
        return AppStores(store_openers(stores, ctx.state_dir, ctx.config_base))

    def prepare(self, state: AppStores, ctx: ComponentContext) -> KeyValue:
        return KeyValue(state, frozenset(ctx.metadata_list("key_value_stores")))


FACTOR = KeyValueFactor()
