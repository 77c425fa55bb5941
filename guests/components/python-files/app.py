"""A Python test component that reads its `files` through plain Python file APIs: built with
componentize-py 0.17.2 and spin-sdk 3.4.1 (world `spin-http`, exports
`wasi:http/incoming-handler@0.2.0`). Its file I/O goes through the wasi:filesystem host.

Routes (matched on the `spin-path-info` header, so the component may be mounted anywhere;
`path` is a guest path such as `/data/a.txt`):

- `/read?path=`         200 the file's bytes (`application/octet-stream`); `&offset=N` seeks
                        first, `&length=N` reads at most N bytes; FileNotFoundError → 404
- `/list?path=`         200 `os.listdir(path)`, sorted, one name a line
- `/stat?path=`         200 JSON `{"kind": "file"|"dir"|"symlink"|"other", "size": N,
                        "mtime": N}` (`os.stat`; `&lstat=1`: `os.lstat`)
- `/walk?path=`         200 every file under `path` (`os.walk`), sorted, one path a line
- `/write?path=`        tries a change and reports the outcome, `&op=` one of `create` (the
                        default: open for writing, creating), `append`, `truncate`, `mkdir`,
                        `remove`, `rmdir`, `rename` (to `&to=`): 200 `done` if it succeeded, else
                        403 `<exception type>: <message>`
- anything else         404 `not found: <path>`

Any other OSError → 500 `<exception type>: <message>`, e.g. `PermissionError: [Errno 63] …`.
"""

from __future__ import annotations

import json
import os
import stat as statmod
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from spin_sdk import http
from spin_sdk.http import Request, Response

TEXT = {"content-type": "text/plain"}


def text(status: int, body: str) -> Response:
    return Response(status, dict(TEXT), body.encode())


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def read(path: str, offset: int, length: int) -> Response:
    with open(path, "rb") as f:
        if offset:
            f.seek(offset)
        data = f.read() if length < 0 else f.read(length)
    return Response(200, {"content-type": "application/octet-stream"}, data)


def listing(path: str) -> Response:
    return text(200, "".join(f"{name}\n" for name in sorted(os.listdir(path))))


def stat_route(path: str, follow: bool) -> Response:
    st = os.stat(path) if follow else os.lstat(path)
    if statmod.S_ISREG(st.st_mode):
        kind = "file"
    elif statmod.S_ISDIR(st.st_mode):
        kind = "dir"
    elif statmod.S_ISLNK(st.st_mode):
        kind = "symlink"
    else:
        kind = "other"
    info = {"kind": kind, "size": st.st_size, "mtime": int(st.st_mtime)}
    return Response(200, {"content-type": "application/json"}, json.dumps(info).encode())


def walk(path: str) -> Response:
    found = []
    for directory, _dirs, files in os.walk(path):
        found += [os.path.join(directory, name) for name in files]
    return text(200, "".join(f"{p}\n" for p in sorted(found)))


def write(path: str, op: str, to: str) -> Response:
    def create() -> None:
        with open(path, "w") as f:
            f.write("changed")

    def append() -> None:
        with open(path, "a") as f:
            f.write("changed")

    def truncate() -> None:
        with open(path, "r+") as f:
            f.truncate(0)

    ops: dict[str, Callable[[], None]] = {
        "create": create,
        "append": append,
        "truncate": truncate,
        "mkdir": lambda: os.mkdir(path),
        "remove": lambda: os.remove(path),
        "rmdir": lambda: os.rmdir(path),
        "rename": lambda: os.rename(path, to),
    }
    if op not in ops:
        return text(400, f"unknown op: {op}")
    try:
        ops[op]()
    except OSError as e:
        return text(403, describe(e))
    return text(200, "done")


class IncomingHandler(http.IncomingHandler):
    def handle_request(self, request: Request) -> Response:
        parts = urlsplit(request.uri)
        route = request.headers.get("spin-path-info", parts.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        path = query.get("path", "/")
        try:
            if route == "/read":
                offset = int(query.get("offset", "0"))
                return read(path, offset, int(query.get("length", "-1")))
            if route == "/list":
                return listing(path)
            if route == "/stat":
                return stat_route(path, query.get("lstat") != "1")
            if route == "/walk":
                return walk(path)
            if route == "/write":
                return write(path, query.get("op", "create"), query.get("to", ""))
        except FileNotFoundError as e:
            return text(404, describe(e))
        except OSError as e:
            return text(500, describe(e))
        return text(404, f"not found: {route}")
