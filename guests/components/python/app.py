"""The Python test component: a Spin app built with componentize-py 0.17.2 and spin-sdk 3.4.1
(world `spin-http`, exports `wasi:http/incoming-handler@0.2.0`).

Routes (every response is `text/plain`):

- `/`                   200 `Hello from Python!`
- `/headers`            200, the request headers as `name: value` lines
- `/kv/<key>`           the default key-value store (`?store=<label>` for another one):
                        GET → 200 value | 404 `no such key: <key>`; PUT/POST → set the body,
                        200 `stored <key>`; DELETE → 200 `deleted <key>`; HEAD → 200 | 404
                        (exists). Store errors → 500 `Error::AccessDenied`, `Error::NoSuchStore`,
                        `Error::StoreTableFull` or `Error::Other(<text>)`.
- `/kv-keys`            200, the keys of the default store (`?store=`), sorted, one a line
- `/kv-denied`          opens store `forbidden` (or `?store=`), which the manifest does not
                        grant: 500 `Error::AccessDenied` (as Spin's key-value-no-permission
                        conformance test); 200 `opened` if the open succeeds after all
- `/var/<name>`         200 the variable's value; `Error::Undefined(<text>)` → 404;
                        `Error::InvalidName(<text>)`, `Error::Provider(<text>)`,
                        `Error::Other(<text>)` → 500
- `/outbound?url=<url>` GET `url` with `spin_sdk.http.send` (a POST sends the request's
                        body to `url` as a POST, the SDK writing it after `handle`): 200,
                        header `x-upstream-status`, body `<status>\\n<upstream body>`; an
                        error → 500 with the error, e.g. `ErrorCode::HttpRequestDenied`
- `/log`                writes `python-app stdout` to stdout and `python-app stderr` to stderr
- `/llm`                calls `spin_sdk.llm.infer` (wasmlet provides no LLM: the call traps)
- anything else         404 `not found: <path>`

Data routes take a JSON body and answer JSON (`application/json`). Typed WIT values are JSON as
follows: a variant case is `"tag"` (no payload) or `["tag", payload]`, an enum is its case name,
bytes are `{"hex": "..."}` (a plain string is accepted for bytes and read as UTF-8), a record is
an object, a tuple or list is an array. Success is 200 `{"results": [...]}`; a host API error is
500 `{"error": <the error variant>, "results": <results before the error>}`.

- `POST /sqlite`        `{"db": label, "v": 2|3, "statements": [{"sql", "params": [value]}]}`
                        (v2: `fermyon:spin/sqlite@2.0.0`, v3: `spin:sqlite/sqlite@3.0.0`; not
                        `spin_sdk.sqlite`, which imports a bindings module that componentize-py
                        0.17.2 names `fermyon_spin_sqlite`, so it cannot be imported); each
                        result is `{"columns", "rows"}`; v3 adds `"changes"` and
                        `"last_insert_rowid"`
- `POST /redis`         `{"address", "ops": [{"op": "get"|"set"|"incr"|"del"|"sadd"|"smembers"|
                        "srem"|"publish"|"execute", "key", "keys", "value", "values",
                        "channel", "command", "args": [redis-parameter]}]}` (`spin_sdk.redis`)
- `POST /pg`            `{"address", "v": 2|3|4, "ops": [{"op": "query"|"execute", "sql",
                        "params": [parameter-value]}], "leak": bool}`: v2 `spin_sdk.postgres`,
                        v3/v4 `spin:postgres/postgres@3.0.0`/`@4.0.0`; a query result is
                        `{"columns", "rows"}`, an execute result `{"affected": n}`. The
                        connection is dropped after the ops unless `leak` (then the instance's
                        end must close it)
- `POST /mysql`         the same for `spin_sdk.mysql` (execute results are `{}`)
- `POST /mqtt`          `{"address", "username", "password", "keep_alive", "messages":
                        [{"topic", "payload", "qos": "at-most-once"|...}]}` (`spin_sdk.mqtt`)
"""

from __future__ import annotations

import dataclasses
import json
import sys
from enum import Enum
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from spin_sdk import http, key_value, llm, mqtt, mysql, postgres, redis, variables
from spin_sdk.http import Request, Response
from spin_sdk.wit.imports import fermyon_spin_sqlite as sqlite2_wit
from spin_sdk.wit.imports import rdbms_types
from spin_sdk.wit.imports import redis as redis_wit
from spin_sdk.wit.imports import spin_postgres_postgres_3_0_0 as pg3
from spin_sdk.wit.imports import spin_postgres_postgres_4_0_0 as pg4
from spin_sdk.wit.imports import spin_sqlite_sqlite as sqlite3_wit
from spin_sdk.wit.types import Err

TEXT = {"content-type": "text/plain"}


def text(status: int, body: str, **headers: str) -> Response:
    return Response(status, {**TEXT, **headers}, body.encode())


def error_text(error: object) -> str:
    """`Error::AccessDenied`, `Error::Other(text)`: the WIT variant case spelled as Rust does.

    spin-sdk raises `Err(value)` with value a dataclass named `<Type>_<Case>`.
    """
    name = type(error).__name__
    kind, _, case = name.partition("_")
    label = f"{kind}::{case}" if case else name
    if dataclasses.is_dataclass(error):
        values = [getattr(error, f.name) for f in dataclasses.fields(error)]
        if values:
            return f"{label}({', '.join(str(v) for v in values)})"
    return label


def kv_route(request: Request, key: str, store_label: str) -> Response:
    try:
        store = key_value.open(store_label)
    except Err as e:
        return text(500, error_text(e.value))
    try:
        if request.method == "GET":
            value = store.get(key)
            if value is None:
                return text(404, f"no such key: {key}")
            return Response(200, dict(TEXT), value)
        if request.method == "HEAD":
            return text(200 if store.exists(key) else 404, "")
        if request.method in ("PUT", "POST"):
            store.set(key, request.body or b"")
            return text(200, f"stored {key}")
        if request.method == "DELETE":
            store.delete(key)
            return text(200, f"deleted {key}")
        return text(405, f"method not allowed: {request.method}")
    except Err as e:
        return text(500, error_text(e.value))


def kv_keys(store_label: str) -> Response:
    try:
        keys = key_value.open(store_label).get_keys()
    except Err as e:
        return text(500, error_text(e.value))
    return text(200, "".join(f"{k}\n" for k in sorted(keys)))


def kv_denied(store_label: str) -> Response:
    try:
        key_value.open(store_label)
    except Err as e:
        return text(500, error_text(e.value))
    return text(200, "opened")


def variable(name: str) -> Response:
    try:
        value = variables.get(name)
    except Err as e:
        status = 404 if type(e.value).__name__ == "Error_Undefined" else 500
        return text(status, error_text(e.value))
    return text(200, value)


def outbound(url: str, method: str = "GET", body: bytes | None = None) -> Response:
    try:
        response = http.send(Request(method, url, {}, body))
    except Err as e:
        return text(500, error_text(e.value))
    except Exception as e:  # the SDK raises plain exceptions for some failures
        return text(500, f"{type(e).__name__}: {e}")
    body = (response.body or b"").decode(errors="replace")
    return text(200, f"{response.status}\n{body}", **{"x-upstream-status": str(response.status)})


def kebab(name: str) -> str:
    """`DbNull` → `db-null`, `RangeInt32` → `range-int32`."""
    return "".join(f"-{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(name))


def camel(tag: str) -> str:
    """`db-null` → `DbNull`, `int32` → `Int32`."""
    return "".join(part.capitalize() for part in tag.split("-"))


def to_json(v: Any) -> Any:
    """A value the SDK returned, as JSON (see the module docstring)."""
    if isinstance(v, Enum):
        return v.name.lower().replace("_", "-")
    if dataclasses.is_dataclass(v):
        name = type(v).__name__
        fields = dataclasses.fields(v)
        if "_" in name:  # a variant case, `<Type>_<Case>`
            tag = kebab(name.split("_", 1)[1])
            return [tag, to_json(v.value)] if fields else tag
        return {f.name: to_json(getattr(v, f.name)) for f in fields}
    if isinstance(v, bytes | bytearray):
        return {"hex": bytes(v).hex()}
    if isinstance(v, list | tuple):
        return [to_json(x) for x in v]
    return v


def to_bytes(x: Any) -> bytes:
    return bytes.fromhex(x["hex"]) if isinstance(x, dict) else str(x).encode()


def payload(module: ModuleType, tag: str, x: Any) -> Any:
    if (isinstance(x, dict) and "hex" in x) or tag in ("binary", "blob", "jsonb"):
        return to_bytes(x)
    if tag in ("date", "time", "datetime"):
        return tuple(x)
    if tag.startswith("range-"):
        kind = module.RangeBoundKind
        return tuple(None if b is None else (b[0], kind[b[1].upper()]) for b in x)
    if tag == "interval":
        return module.Interval(**x)
    return x


def from_json(module: ModuleType, prefix: str, item: Any) -> Any:
    """`["int32", 5]` or `"db-null"` as `module.<prefix>_Int32(5)` / `<prefix>_DbNull()`."""
    tag = item if isinstance(item, str) else item[0]
    cls = getattr(module, f"{prefix}_{camel(tag)}")
    if not dataclasses.fields(cls):
        return cls()
    return cls(payload(module, tag, item[1]))


def json_response(status: int, body: Any) -> Response:
    return Response(status, {"content-type": "application/json"}, json.dumps(body).encode())


def failed(error: Err, results: list[Any]) -> Response:
    return json_response(500, {"error": to_json(error.value), "results": results})


def sqlite_route(spec: dict[str, Any]) -> Response:
    v3 = spec.get("v") == 3
    module = sqlite3_wit if v3 else sqlite2_wit
    label = spec.get("db", "default")
    results: list[Any] = []
    try:
        conn = module.Connection.open(label)
        with conn:
            for st in spec.get("statements", []):
                params = [from_json(module, "Value", p) for p in st.get("params", [])]
                r = conn.execute(st["sql"], params)
                results.append({"columns": r.columns, "rows": [to_json(x.values) for x in r.rows]})
            if v3:
                extra = {"changes": conn.changes(), "last_insert_rowid": conn.last_insert_rowid()}
    except Err as e:
        return failed(e, results)
    return json_response(200, {"results": results, **(extra if v3 else {})})


def redis_op(conn: Any, op: dict[str, Any]) -> Any:
    kind = op["op"]
    if kind == "get":
        return to_json(conn.get(op["key"]))
    if kind == "set":
        return conn.set(op["key"], to_bytes(op["value"]))
    if kind == "incr":
        return conn.incr(op["key"])
    if kind == "del":
        return conn.del_(op["keys"])
    if kind in ("sadd", "srem"):
        return getattr(conn, kind)(op["key"], op["values"])
    if kind == "smembers":
        return sorted(conn.smembers(op["key"]))
    if kind == "publish":
        return conn.publish(op["channel"], to_bytes(op["value"]))
    args = [from_json(redis_wit, "RedisParameter", a) for a in op.get("args", [])]
    return to_json(conn.execute(op["command"], args))


def redis_route(spec: dict[str, Any]) -> Response:
    results: list[Any] = []
    try:
        with redis.open(spec["address"]) as conn:
            for op in spec.get("ops", []):
                results.append(redis_op(conn, op))
    except Err as e:
        return failed(e, results)
    return json_response(200, {"results": results})


PG_MODULES = {2: rdbms_types, 3: pg3, 4: pg4}


def rdbms_route(spec: dict[str, Any], kind: str) -> Response:
    version = spec.get("v", 2)
    types = PG_MODULES[version] if kind == "pg" else rdbms_types
    results: list[Any] = []
    try:
        if kind == "mysql":
            conn = mysql.open(spec["address"])
        elif version == 2:
            conn = postgres.open(spec["address"])
        else:
            conn = types.Connection.open(spec["address"])
        for op in spec.get("ops", []):
            params = [from_json(types, "ParameterValue", p) for p in op.get("params", [])]
            if op["op"] == "query":
                rows = conn.query(op["sql"], params)
                results.append({"columns": to_json(rows.columns), "rows": to_json(rows.rows)})
            else:
                affected = conn.execute(op["sql"], params)
                results.append({} if affected is None else {"affected": affected})
        if not spec.get("leak"):
            conn.__exit__(None, None, None)  # drop the connection now
    except Err as e:
        return failed(e, results)
    return json_response(200, {"results": results})


def mqtt_route(spec: dict[str, Any]) -> Response:
    results: list[Any] = []
    try:
        conn = mqtt.open(
            spec["address"],
            spec.get("username", ""),
            spec.get("password", ""),
            spec.get("keep_alive", 30),
        )
        with conn:
            for m in spec.get("messages", []):
                qos = mqtt.Qos[m.get("qos", "at-least-once").upper().replace("-", "_")]
                conn.publish(m["topic"], to_bytes(m["payload"]), qos)
                results.append(m["topic"])
    except Err as e:
        return failed(e, results)
    return json_response(200, {"results": results})


def llm_route() -> Response:
    result = llm.infer("llama2-chat", "Say hello")
    return text(200, result.text)


DATA_ROUTES = {
    "/sqlite": sqlite_route,
    "/redis": redis_route,
    "/pg": lambda spec: rdbms_route(spec, "pg"),
    "/mysql": lambda spec: rdbms_route(spec, "mysql"),
    "/mqtt": mqtt_route,
}


class IncomingHandler(http.IncomingHandler):
    def handle_request(self, request: Request) -> Response:
        parts = urlsplit(request.uri)
        path = parts.path
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        store_label = query.get("store", "default")
        if path == "/":
            return text(200, "Hello from Python!\n")
        if path == "/headers":
            lines = "".join(f"{k}: {v}\n" for k, v in request.headers.items())
            return text(200, lines)
        if path.startswith("/kv/"):
            return kv_route(request, path.removeprefix("/kv/"), store_label)
        if path == "/kv-keys":
            return kv_keys(store_label)
        if path == "/kv-denied":
            return kv_denied(query.get("store", "forbidden"))
        if path.startswith("/var/"):
            return variable(path.removeprefix("/var/"))
        if path == "/outbound":
            if "url" not in query:
                return text(400, "missing ?url=")
            if request.method == "POST":
                return outbound(query["url"], "POST", request.body or b"")
            return outbound(query["url"])
        if path in DATA_ROUTES:
            return DATA_ROUTES[path](json.loads(request.body or b"{}"))
        if path == "/llm":
            return llm_route()
        if path == "/log":
            print("python-app stdout", flush=True)
            print("python-app stderr", file=sys.stderr, flush=True)
            return text(200, "logged\n")
        return text(404, f"not found: {path}")
