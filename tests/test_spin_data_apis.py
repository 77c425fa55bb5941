"""Spin's data host APIs through the real server, with the spin-sdk 3.4.1 Python guest
(guests/components/python/app.py), against the real services on this machine: SQLite (built
in), Redis 127.0.0.1:6379, PostgreSQL 127.0.0.1:5432, MariaDB 127.0.0.1:3306 and Mosquitto
127.0.0.1:1883. A missing service skips its tests with the reason (under CI=true it fails them).

Two servers are shared by the whole module: `granted` may reach every service and open the
SQLite databases `default` and `mine`; `denied` may reach none of them (other hosts and ports)
and may open only `default`.
"""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.component_guests import python_app
from support.env import IN_CI, free_port
from support.server import Server, run_cli, start_server

REDIS = "redis://127.0.0.1:6379/15"
PG = "host=127.0.0.1 user=postgres dbname=test"
MYSQL = "mysql://root@127.0.0.1/test"
MQTT = "mqtt://127.0.0.1:1883?client_id="
NO_BROKER_PORT = free_port()  # allowed to the `granted` server, nothing listens there
GRANTED_HOSTS = [
    "redis://127.0.0.1:6379",
    "postgres://127.0.0.1:5432",
    "mysql://127.0.0.1:3306",
    "mqtt://127.0.0.1:1883",
    f"mqtt://127.0.0.1:{NO_BROKER_PORT}",
]
DENIED_HOSTS = [
    "redis://127.0.0.1:6380",
    "postgres://db.example.com:5432",
    "mysql://10.0.0.0/8:3306",
    "mqtt://127.0.0.1:1884",
    "http://127.0.0.1:*",
]


# -- servers and services -------------------------------------------------------------------


def _serve(directory: Path, cache_dir: Path, hosts: list[str], databases: list[str]) -> Server:
    rc = directory / "rc.toml"
    rc.write_text('[sqlite_database.mine]\ntype = "spin"\npath = "data/mine.db"\n')
    listed = ", ".join(f'"{d}"' for d in databases)
    app = python_app(
        directory / "app",
        allowed_outbound_hosts=hosts,
        extra=f"sqlite_databases = [{listed}]",
    )
    return start_server(app, "--runtime-config-file", str(rc), cache_dir=cache_dir)


@pytest.fixture(scope="module")
def granted(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[Server]:
    server = _serve(
        tmp_path_factory.mktemp("granted"), cache_dir, GRANTED_HOSTS, ["default", "mine"]
    )
    yield server
    server.stop(signal.SIGKILL)


@pytest.fixture(scope="module")
def denied(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[Server]:
    server = _serve(tmp_path_factory.mktemp("denied"), cache_dir, DENIED_HOSTS, ["default"])
    yield server
    server.stop(signal.SIGKILL)


def _service(name: str, connect: Callable[[], Any]) -> Any:
    try:
        return connect()
    except Exception as e:
        message = f"{name} is not reachable ({type(e).__name__}: {e})"
        if IN_CI:
            pytest.fail(f"{message}; required under CI=true")
        pytest.skip(message)


@pytest.fixture(scope="module")
def redis_client() -> Any:
    import redis

    def connect() -> Any:
        client = redis.Redis(host="127.0.0.1", port=6379, db=15, socket_timeout=5, protocol=2)
        client.ping()
        return client

    return _service("Redis on 127.0.0.1:6379", connect)


@pytest.fixture(scope="module")
def pg() -> Any:
    import psycopg

    return _service(
        "PostgreSQL on 127.0.0.1:5432",
        lambda: psycopg.connect(PG, autocommit=True, connect_timeout=5),
    )


@pytest.fixture(scope="module")
def mysql() -> Any:
    import pymysql

    return _service(
        "MariaDB/MySQL on 127.0.0.1:3306",
        lambda: pymysql.connect(host="127.0.0.1", user="root", database="test", connect_timeout=5),
    )


@pytest.fixture(scope="module")
def mqtt_subscriber() -> Iterator[Any]:
    import paho.mqtt.client as paho

    received: list[Any] = []
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex}")
    client.on_message = lambda _c, _u, message: received.append(message)
    _service("Mosquitto on 127.0.0.1:1883", lambda: client.connect("127.0.0.1", 1883))
    client.loop_start()
    client.user_data_set(received)
    yield client, received
    client.disconnect()
    client.loop_stop()


def post(server: Server, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    r = server.request("POST", path, json=body)
    assert r.headers.get("content-type") == "application/json", (r.status_code, r.text)
    return r.status_code, r.json()


def ok(server: Server, path: str, body: dict[str, Any]) -> list[Any]:
    status, data = post(server, path, body)
    assert status == 200, data
    return data["results"]  # type: ignore[no-any-return]


def error(server: Server, path: str, body: dict[str, Any]) -> Any:
    status, data = post(server, path, body)
    assert status == 500, data
    return data["error"]


def hexed(data: bytes) -> dict[str, str]:
    return {"hex": data.hex()}


def wait_until(check: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# -- SQLite ---------------------------------------------------------------------------------

SQLITE_VALUES = [
    ["integer", -(2**63)],
    ["integer", 2**63 - 1],
    ["real", 2.5],
    ["text", "héllo ✓"],
    ["blob", hexed(b"\x00\xffbytes")],
    "null",
]


def test_sqlite_typed_values_both_ways_and_persisted(granted: Server) -> None:
    table = f"t_{uuid.uuid4().hex[:8]}"
    statements = [
        {"sql": f"CREATE TABLE {table} (a, b, c, d, e, f)"},
        {"sql": f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?, ?)", "params": SQLITE_VALUES},
        {"sql": f"INSERT INTO {table} (a) VALUES (1), (2)"},
        {"sql": f"SELECT * FROM {table} WHERE f IS NULL AND a < 0"},
    ]
    results = ok(granted, "/sqlite", {"v": 2, "statements": statements})
    assert results[1] == {"columns": [], "rows": []}
    assert results[3] == {"columns": ["a", "b", "c", "d", "e", "f"], "rows": [SQLITE_VALUES]}
    # v3: changes and last-insert-rowid of the connection's last statement.
    v3 = {"v": 3, "statements": [{"sql": f"INSERT INTO {table} (a) VALUES (7), (8), (9)"}]}
    status, data = post(granted, "/sqlite", v3)
    assert status == 200, data
    assert (data["changes"], data["last_insert_rowid"]) == (3, 6)
    db = _state_dir(granted) / "sqlite_db.db"
    rows = sqlite3.connect(db).execute(f"SELECT d, e FROM {table} WHERE a < 0").fetchall()
    assert rows == [("héllo ✓", b"\x00\xffbytes")]


def _state_dir(server: Server) -> Path:
    """The `.spin` directory of a server started by `_serve` (next to the app's spin.toml)."""
    app = Path(server.proc.args[server.proc.args.index("-f") + 1])  # type: ignore[union-attr]
    return app / ".spin"


def test_sqlite_runtime_config_database(granted: Server) -> None:
    statements = [
        {"sql": "CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v)"},
        {
            "sql": "INSERT OR REPLACE INTO kv VALUES (?, ?)",
            "params": [["text", "x"], ["real", 1.0]],
        },
        {"sql": "SELECT v FROM kv WHERE k = 'x'"},
    ]
    results = ok(granted, "/sqlite", {"db": "mine", "statements": statements})
    assert results[2]["rows"] == [[["real", 1.0]]]
    path = _state_dir(granted).parent.parent / "data" / "mine.db"  # relative to rc.toml
    assert sqlite3.connect(path).execute("SELECT k FROM kv").fetchall() == [("x",)]


@pytest.mark.parametrize(
    ("sql", "params", "message"),
    [
        ("SELEC 1", [], "syntax error"),
        ("SELECT 1; SELECT 2", [], "one statement at a time"),
        ("SELECT ?", [], "bindings"),
        ("SELECT * FROM no_such_table", [], "no such table"),
    ],
)
def test_sqlite_errors_are_io(granted: Server, sql: str, params: list[Any], message: str) -> None:
    err = error(granted, "/sqlite", {"statements": [{"sql": sql, "params": params}]})
    assert err[0] == "io"
    assert message in err[1]


def test_sqlite_labels_not_granted_are_access_denied(granted: Server, denied: Server) -> None:
    assert error(granted, "/sqlite", {"db": "nowhere"}) == "access-denied"
    assert error(denied, "/sqlite", {"db": "mine"}) == "access-denied"  # defined, not granted
    assert ok(denied, "/sqlite", {"statements": [{"sql": "SELECT 1"}]}) == [
        {"columns": ["1"], "rows": [[["integer", 1]]]}
    ]


@pytest.mark.parametrize(
    ("databases", "config", "messages"),
    [
        ('["default", "nowhere"]', "", ["SQLite database 'nowhere'", "component 'app'"]),
        (
            '["default"]',
            '[sqlite_database.remote]\ntype = "libsql"\n',
            ["'libsql' is not supported"],
        ),
        ('["default"]', '[sqlite_database.x]\ntype = "spin"\nurl = "u"\n', ["unknown key 'url'"]),
    ],
)
def test_sqlite_config_errors_stop_startup(
    tmp_path: Path, databases: str, config: str, messages: list[str]
) -> None:
    app = python_app(tmp_path / "app", extra=f"sqlite_databases = {databases}")
    rc = tmp_path / "rc.toml"
    rc.write_text(config)
    r = run_cli("up", "-f", str(app), "--listen", "127.0.0.1:0", "--runtime-config-file", str(rc))
    assert r.returncode == 1
    for message in messages:
        assert message in r.stderr


# -- Redis ----------------------------------------------------------------------------------


def test_redis_every_function(granted: Server, redis_client: Any) -> None:
    key = f"wasmlet-{uuid.uuid4().hex}"
    pubsub = redis_client.pubsub()
    pubsub.subscribe(f"{key}:chan")
    wait_until(lambda: pubsub.get_message(timeout=0.1) is not None, "the subscription")
    ops = [
        {"op": "set", "key": key, "value": hexed(b"\x00binary\xff")},
        {"op": "get", "key": key},
        {"op": "get", "key": f"{key}:missing"},
        {"op": "incr", "key": f"{key}:n"},
        {"op": "incr", "key": f"{key}:n"},
        {"op": "sadd", "key": f"{key}:set", "values": ["a", "b", "c", "a"]},
        {"op": "srem", "key": f"{key}:set", "values": ["c", "z"]},
        {"op": "smembers", "key": f"{key}:set"},
        {"op": "publish", "channel": f"{key}:chan", "value": "hello"},
        {"op": "execute", "command": "SET", "args": [["binary", f"{key}:x"], ["int64", -5]]},
        {"op": "execute", "command": "INCRBY", "args": [["binary", f"{key}:x"], ["int64", 2]]},
        {
            "op": "execute",
            "command": "MGET",
            "args": [["binary", key], ["binary", f"{key}:x"], ["binary", f"{key}:none"]],
        },
        {"op": "del", "keys": [key, f"{key}:x", f"{key}:none"]},
    ]
    try:
        results = ok(granted, "/redis", {"address": REDIS, "ops": ops})
        assert results == [
            None,
            hexed(b"\x00binary\xff"),
            None,
            1,
            2,
            3,
            1,
            ["a", "b"],
            None,
            [["status", "OK"]],
            [["int64", -3]],
            [["binary", hexed(b"\x00binary\xff")], ["binary", hexed(b"-3")], "nil"],
            2,
        ]
        assert redis_client.get(f"{key}:n") == b"2"
        message = pubsub.get_message(timeout=5)
        assert message is not None and message["data"] == b"hello"
    finally:
        redis_client.delete(f"{key}:n", f"{key}:set")
        pubsub.close()


def test_redis_errors_are_other(granted: Server, redis_client: Any) -> None:
    key = f"wasmlet-{uuid.uuid4().hex}"
    redis_client.sadd(key, "member")
    try:
        err = error(granted, "/redis", {"address": REDIS, "ops": [{"op": "incr", "key": key}]})
        assert err[0] == "other" and "WRONGTYPE" in err[1]
        ops = [{"op": "execute", "command": "NOSUCHCOMMAND"}]
        err = error(granted, "/redis", {"address": REDIS, "ops": ops})
        assert err[0] == "other" and "unknown command" in err[1]
    finally:
        redis_client.delete(key)


def test_redis_address_not_allowed_is_invalid_address(granted: Server, denied: Server) -> None:
    assert error(denied, "/redis", {"address": REDIS}) == "invalid-address"
    assert error(granted, "/redis", {"address": "redis://127.0.0.1:6380"}) == "invalid-address"
    assert error(granted, "/redis", {"address": "not a url"}) == "invalid-address"


# -- PostgreSQL -----------------------------------------------------------------------------

PG_TABLE = """CREATE TEMP TABLE t (
    b bool, i2 int2, i4 int4, i8 int8, f4 float4, f8 float8, s text, bin bytea, d date,
    tm time, ts timestamp, tstz timestamptz, u uuid, j jsonb, n numeric, r4 int4range,
    r8 int8range, rn numrange, a4 int4[], a8 int8[], an numeric[], ast text[], iv interval)"""
PG_PARAMS = [
    ["boolean", True],
    ["int16", -2],
    ["int32", 2**31 - 1],
    ["int64", -(2**63)],
    ["floating32", 1.5],
    ["floating64", 2.25],
    ["str", "héllo"],
    ["binary", hexed(b"\x00\xff")],
    ["date", [2024, 2, 29]],
    ["time", [23, 59, 58, 123456000]],
    ["datetime", [2024, 2, 29, 12, 0, 1, 500000000]],
    ["timestamp", 86400],
    ["uuid", "12345678-1234-5678-1234-567812345678"],
    ["jsonb", '{"b": [1, 2], "a": null}'],
    ["decimal", "12345.678"],
    ["range-int32", [[1, "inclusive"], [5, "exclusive"]]],
    ["range-int64", [None, [10, "inclusive"]]],
    ["range-decimal", [["1.5", "inclusive"], None]],
    ["array-int32", [1, None, 3]],
    ["array-int64", [2**40]],
    ["array-decimal", ["1.5", None]],
    ["array-str", ["a", None]],
    ["interval", {"micros": 1500000, "days": 2, "months": 14}],
]
PG_EXPECTED = [
    *PG_PARAMS[:10],
    PG_PARAMS[10],
    ["datetime", [1970, 1, 2, 0, 0, 0, 0]],  # timestamptz, read as UTC
    PG_PARAMS[12],
    ["jsonb", hexed(b'{"a":null,"b":[1,2]}')],
    *PG_PARAMS[14:16],
    ["range-int64", [None, [11, "exclusive"]]],  # PostgreSQL normalizes discrete ranges
    *PG_PARAMS[17:],
]
PG_TYPES = [p[0] for p in PG_PARAMS]
PG_TYPES[PG_TYPES.index("timestamp")] = "datetime"
PG_INSERT = f"INSERT INTO t VALUES ({', '.join(f'${i + 1}' for i in range(len(PG_PARAMS)))})"


def test_postgres_v4_typed_values_both_ways(granted: Server, pg: Any) -> None:
    nulls = ["db-null"] * len(PG_PARAMS)
    ops = [
        {"op": "execute", "sql": PG_TABLE},
        {"op": "execute", "sql": PG_INSERT, "params": PG_PARAMS},
        {"op": "execute", "sql": PG_INSERT, "params": nulls},
        {"op": "query", "sql": "SELECT * FROM t ORDER BY b NULLS LAST"},
        {
            "op": "query",
            "sql": "SELECT point(1, 2) AS p, 1 AS one WHERE $1",
            "params": [["boolean", True]],
        },
        {"op": "query", "sql": "SELECT 1 WHERE false"},
    ]
    results = ok(granted, "/pg", {"address": PG, "v": 4, "ops": ops})
    assert results[1] == {"affected": 1}
    rows = results[3]
    assert [c["data_type"] for c in rows["columns"]] == PG_TYPES
    assert rows["rows"] == [PG_EXPECTED, nulls]
    other = results[4]
    assert other["columns"][0] == {"name": "p", "data_type": ["other", "point"]}
    assert other["rows"][0][0][0] == "unsupported"  # the binary wire value
    assert results[5] == {"columns": [], "rows": []}  # as Spin: columns come from the first row


def test_postgres_v3_and_v2_narrow_values(granted: Server, pg: Any) -> None:
    sql = "SELECT $1::int2 AS a, $2::date AS d, $3::timestamptz AS ts, gen_random_uuid() AS u"
    params = [["int16", 7], ["date", [2024, 1, 2]], ["timestamp", 0]]
    (rows,) = ok(
        granted,
        "/pg",
        {"address": PG, "v": 3, "ops": [{"op": "query", "sql": sql, "params": params}]},
    )
    assert [c["data_type"] for c in rows["columns"]] == ["int16", "date", "datetime", "other"]
    assert rows["rows"] == [
        [
            ["int16", 7],
            ["date", [2024, 1, 2]],
            ["datetime", [1970, 1, 1, 0, 0, 0, 0]],
            "unsupported",
        ]
    ]
    sql = "SELECT $1::int8 + 1 AS x, $2 || 'y' AS s, $3::bytea AS b, now()::date AS d"
    params = [["int64", 41], ["str", "x"], ["binary", hexed(b"\x01")]]
    (rows,) = ok(
        granted,
        "/pg",
        {"address": PG, "v": 2, "ops": [{"op": "query", "sql": sql, "params": params}]},
    )
    assert [c["data_type"] for c in rows["columns"]] == ["int64", "str", "binary", "other"]
    assert rows["rows"] == [
        [["int64", 42], ["str", "xy"], ["binary", hexed(b"\x01")], "unsupported"]
    ]
    ops = [{"op": "query", "sql": "SELECT $1", "params": [["uint8", 1]]}]
    err = error(granted, "/pg", {"address": PG, "v": 2, "ops": ops})
    assert err == ["value-conversion-failed", "Postgres does not support unsigned integers"]


def test_postgres_errors(granted: Server, pg: Any) -> None:
    bad = [{"op": "query", "sql": "SELEC 1"}]
    err = error(granted, "/pg", {"address": PG, "v": 4, "ops": bad})
    assert err[0] == "query-failed" and err[1][0] == "db-error"
    db_error = err[1][1]
    assert (db_error["severity"], db_error["code"]) == ("ERROR", "42601")
    assert db_error["as_text"] == 'db error: ERROR: syntax error at or near "SELEC"'
    for version in (2, 3):
        err = error(granted, "/pg", {"address": PG, "v": version, "ops": bad})
        assert err == ["query-failed", 'db error: ERROR: syntax error at or near "SELEC"']
    dup = [
        {"op": "execute", "sql": "CREATE TEMP TABLE u (id int PRIMARY KEY)"},
        {"op": "execute", "sql": "INSERT INTO u VALUES (1), (1)"},
    ]
    err = error(granted, "/pg", {"address": PG, "v": 4, "ops": dup})
    assert err[1][1]["code"] == "23505"
    assert dict(err[1][1]["extras"])["constraint"] == "u_pkey"
    bad_param = [{"op": "query", "sql": "SELECT $1", "params": [["uuid", "not-a-uuid"]]}]
    assert error(granted, "/pg", {"address": PG, "v": 4, "ops": bad_param})[0] == "bad-parameter"
    err = error(granted, "/pg", {"address": PG.replace("dbname=test", "dbname=nosuchdb")})
    assert err[0] == "connection-failed" and "nosuchdb" in err[1]
    assert granted.get("/").status_code == 200


@pytest.mark.parametrize(
    ("address", "message"),
    [
        (PG, "address postgres://127.0.0.1 is not permitted"),
        (
            "postgres://postgres@127.0.0.1:5433/test",
            "address postgres://127.0.0.1:5433 is not permitted",
        ),
        (
            "host=/var/run/postgresql dbname=test",
            "Unix sockets are not supported on WebAssembly",
        ),
        ("dbname=test", "host missing"),
        ("service=mine host=127.0.0.1", "unknown option `service`"),
    ],
)
def test_postgres_address_checks(
    granted: Server, denied: Server, address: str, message: str
) -> None:
    server = denied if address == PG else granted
    err = error(server, "/pg", {"address": address})
    assert err == ["connection-failed", message]


def test_postgres_connections_are_closed(granted: Server, pg: Any) -> None:
    name = f"wasmlet-{uuid.uuid4().hex[:12]}"
    address = f"{PG} application_name={name}"

    def count() -> int:
        sql = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
        return int(pg.execute(sql, [name]).fetchone()[0])

    ops = [{"op": "query", "sql": "SELECT 1"}]
    for leak in (False, True, True):  # dropped by the guest; left for the instance's end
        ok(granted, "/pg", {"address": address, "v": 4, "ops": ops, "leak": leak})
    wait_until(lambda: count() == 0, "the connections to close")


# -- MySQL ----------------------------------------------------------------------------------

MYSQL_TABLE = """CREATE TEMPORARY TABLE t (
    ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, su SMALLINT UNSIGNED, i INT,
    iu INT UNSIGNED, bi BIGINT, bu BIGINT UNSIGNED, f FLOAT, d DOUBLE, vc VARCHAR(20),
    vb VARBINARY(20), bl BLOB, tx TEXT, flag BOOL, dec5 DECIMAL(5, 2))"""
MYSQL_PARAMS = [
    ["int8", -128],
    ["uint8", 255],
    ["int16", -32768],
    ["uint16", 65535],
    ["int32", -(2**31)],
    ["uint32", 2**32 - 1],
    ["int64", -(2**63)],
    ["uint64", 2**64 - 1],
    ["floating32", 1.5],
    ["floating64", 2.25],
    ["str", "héllo"],
    ["binary", hexed(b"\x00\xff")],
    ["binary", hexed(b"blob\x00")],
    ["str", "text ✓"],
    ["boolean", True],
    ["str", "1.50"],
]


def test_mysql_typed_values_both_ways(granted: Server, mysql: Any) -> None:
    marks = ", ".join("?" * len(MYSQL_PARAMS))
    nulls = ["db-null"] * len(MYSQL_PARAMS)
    ops = [
        {"op": "execute", "sql": MYSQL_TABLE},
        {"op": "execute", "sql": f"INSERT INTO t VALUES ({marks})", "params": MYSQL_PARAMS},
        {"op": "execute", "sql": f"INSERT INTO t VALUES ({marks})", "params": nulls},
        {
            "op": "query",
            "sql": "SELECT ti, tu, si, su, i, iu, bi, bu, f, d, vc, vb, bl, tx, flag FROM t "
            "ORDER BY ti IS NULL",
        },
        {
            "op": "query",
            "sql": "SELECT ? + 1 AS n, ? AS s",
            "params": [["int32", 41], ["str", "x"]],
        },
    ]
    results = ok(granted, "/mysql", {"address": MYSQL, "ops": ops})
    assert results[1] == {}
    rows = results[3]
    assert [c["data_type"] for c in rows["columns"]] == [
        "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
        "floating32", "floating64", "str", "binary", "binary", "str", "int8",
    ]  # fmt: skip
    assert rows["rows"] == [[*MYSQL_PARAMS[:14], ["int8", 1]], nulls[:15]]
    assert results[4]["rows"][0][0] == ["int64", 42]


def test_mysql_errors(granted: Server, mysql: Any) -> None:
    ops = [{"op": "query", "sql": "SELEC 1"}]
    err = error(granted, "/mysql", {"address": MYSQL, "ops": ops})
    assert err[0] == "query-failed" and "1064" in err[1]
    ops = [{"op": "query", "sql": "SELECT CAST(1.5 AS DECIMAL(5, 2)) AS d"}]  # as Spin: no decimal
    err = error(granted, "/mysql", {"address": MYSQL, "ops": ops})
    assert err[0] == "value-conversion-failed" and "column d" in err[1]
    ops = [{"op": "query", "sql": "SELECT ?", "params": [["int8", 1], ["int8", 2]]}]
    assert error(granted, "/mysql", {"address": MYSQL, "ops": ops})[0] == "query-failed"
    err = error(granted, "/mysql", {"address": "mysql://root@127.0.0.1/nosuchdb"})
    assert err[0] == "connection-failed" and "nosuchdb" in err[1]


def test_mysql_address_not_allowed(denied: Server, granted: Server) -> None:
    err = error(denied, "/mysql", {"address": MYSQL})
    assert err == ["connection-failed", f"address {MYSQL} is not permitted"]
    err = error(granted, "/mysql", {"address": "mysql://root@127.0.0.1:3307/test"})
    assert err[0] == "connection-failed" and "not permitted" in err[1]


# -- MQTT -----------------------------------------------------------------------------------


def test_mqtt_publish_at_each_qos(granted: Server, mqtt_subscriber: Any) -> None:
    client, received = mqtt_subscriber
    topic = f"wasmlet/test/{uuid.uuid4().hex}"
    subscribed = threading.Event()
    client.on_subscribe = lambda *_args: subscribed.set()
    client.subscribe(f"{topic}/#", qos=2)
    assert subscribed.wait(5)
    messages = [
        {"topic": f"{topic}/0", "payload": "at most once", "qos": "at-most-once"},
        {"topic": f"{topic}/1", "payload": hexed(b"\x00\x01binary"), "qos": "at-least-once"},
        {"topic": f"{topic}/2", "payload": "exactly once", "qos": "exactly-once"},
    ]
    body = {"address": MQTT + uuid.uuid4().hex, "keep_alive": 30, "messages": messages}
    assert ok(granted, "/mqtt", body) == [m["topic"] for m in messages]
    wait_until(lambda: len([m for m in received if m.topic.startswith(topic)]) == 3, "messages")
    got = {m.topic: (m.payload, m.qos) for m in received if m.topic.startswith(topic)}
    assert got == {
        f"{topic}/0": (b"at most once", 0),
        f"{topic}/1": (b"\x00\x01binary", 1),
        f"{topic}/2": (b"exactly once", 2),
    }


def test_mqtt_errors(granted: Server, denied: Server, mqtt_subscriber: Any) -> None:
    message = [{"topic": "wasmlet/x", "payload": "x"}]
    address = MQTT + "denied"
    err = error(denied, "/mqtt", {"address": address, "messages": message})
    assert err == ["connection-failed", f"address {address} is not permitted"]
    err = error(granted, "/mqtt", {"address": "mqtt://127.0.0.1:1883", "messages": message})
    assert err == "invalid-address"  # no client_id, as Spin's client requires
    nowhere = f"mqtt://127.0.0.1:{NO_BROKER_PORT}?client_id=x"
    err = error(granted, "/mqtt", {"address": nowhere, "messages": message})
    assert err[0] == "connection-failed" and "refused" in err[1].lower()
    assert ok(granted, "/mqtt", {"address": nowhere, "messages": []}) == []  # open is lazy


# -- APIs wasmlet does not provide ----------------------------------------------------------


def test_llm_fails_clearly_when_called(granted: Server) -> None:
    r = granted.get("/llm")
    assert r.status_code == 500
    expected = "fermyon:spin/llm@2.0.0 (infer) is not provided; it is not supported by wasmlet"
    wait_until(lambda: expected in granted.log, "the trap in the log", timeout=5)
    assert granted.get("/").status_code == 200
