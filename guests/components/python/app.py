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
- `/outbound?url=<url>` GET `url` with `spin_sdk.http.send`: 200, header `x-upstream-status`,
                        body `<status>\\n<upstream body>`; an error → 500 with the error, e.g.
                        `ErrorCode::HttpRequestDenied`
- `/log`                writes `python-app stdout` to stdout and `python-app stderr` to stderr
- anything else         404 `not found: <path>`
"""

from __future__ import annotations

import dataclasses
import sys
from urllib.parse import parse_qs, urlsplit

from spin_sdk import http, key_value, variables
from spin_sdk.http import Request, Response
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


def outbound(url: str) -> Response:
    try:
        response = http.send(Request("GET", url, {}, None))
    except Err as e:
        return text(500, error_text(e.value))
    except Exception as e:  # the SDK raises plain exceptions for some failures
        return text(500, f"{type(e).__name__}: {e}")
    body = (response.body or b"").decode(errors="replace")
    return text(200, f"{response.status}\n{body}", **{"x-upstream-status": str(response.status)})


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
            return outbound(query["url"])
        if path == "/log":
            print("python-app stdout", flush=True)
            print("python-app stderr", file=sys.stderr, flush=True)
            return text(200, "logged\n")
        return text(404, f"not found: {path}")
