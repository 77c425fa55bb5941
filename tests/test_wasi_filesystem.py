"""wasi:filesystem in Python: a component's `files`, read-only at `/`, through the real server.

The guest (guests/components/python-files/app.py, componentize-py + spin-sdk) uses plain Python
file APIs (`open`, `os.listdir`, `os.stat`, `os.walk`), which go through wasi-libc and the
preview1 adapter to `wasi:filesystem/types` and `preopens` and to `read-via-stream`.
"""

from __future__ import annotations

import ctypes
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.component_guests import ComponentSpec, write_manifest
from support.server import Server, start_server
from wasmtime import _ffi as ffi

from wasmlet.wasi._abi import VAL
from wasmlet.wasi.filesystem import DESCRIPTOR_FLAGS, FsError, resolve

BINARY = bytes(range(256)) * 800  # 200 KiB: several 64 KiB reads
PERMISSION = "PermissionError: [Errno 63] Operation not permitted"
SECRET = b"top secret, outside the files root"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[tuple[Server, Path]]:
    """One server: component `files` (assets at `/`, plus a glob) at /files/..., component
    `bare` (no files) at /bare/...; and the files root the server laid out."""
    directory = tmp_path_factory.mktemp("fs") / "app"
    write_manifest(
        directory,
        [
            ComponentSpec(
                "python-files",
                id="files",
                route="/files/...",
                files=[{"source": "assets", "destination": "/"}, "docs/*.md"],
            ),
            ComponentSpec("python-files", id="bare", route="/bare/..."),
        ],
        files={
            "assets/hello.txt": "hello from a file\n",
            "assets/sub/data.bin": BINARY,
            "assets/sub/deeper/note.txt": "deep\n",
            "docs/readme.md": "# readme\n",
            "docs/skipped.txt": "not mounted\n",
            "secret.txt": SECRET,
        },
    )
    server = start_server(directory, cache_dir=cache_dir)
    try:
        (root,) = (directory / ".spin" / "files").glob("files-*")
        yield server, root
    finally:
        server.stop()


def get(app: tuple[Server, Path], route: str, path: str, **query: str) -> tuple[int, bytes]:
    r = app[0].get(route, params={"path": path, **query})
    return r.status_code, r.content


def test_reads_text_and_binary_files(app: tuple[Server, Path]) -> None:
    assert get(app, "/files/read", "/hello.txt") == (200, b"hello from a file\n")
    assert get(app, "/files/read", "/sub/data.bin") == (200, BINARY)
    assert get(app, "/files/read", "/sub/data.bin", offset="70000", length="300") == (
        200,
        BINARY[70000:70300],
    )
    assert get(app, "/files/read", "/sub/deeper/note.txt") == (200, b"deep\n")
    assert get(app, "/files/read", "/docs/readme.md") == (200, b"# readme\n")  # the glob
    status, body = get(app, "/files/read", "/docs/skipped.txt")
    assert status == 404, body
    assert body.startswith(b"FileNotFoundError: [Errno 44]")
    status, body = get(app, "/files/read", "/sub")
    assert (status, body) == (500, b"IsADirectoryError: [Errno 31] Is a directory: '/sub'")


def test_lists_walks_and_stats(app: tuple[Server, Path]) -> None:
    assert get(app, "/files/list", "/") == (200, b"docs\nhello.txt\nsub\n")
    assert get(app, "/files/list", "/sub") == (200, b"data.bin\ndeeper\n")
    assert get(app, "/files/list", "/sub/deeper/..") == (200, b"data.bin\ndeeper\n")
    walked = get(app, "/files/walk", "/")[1].decode().splitlines()
    assert walked == ["/docs/readme.md", "/hello.txt", "/sub/data.bin", "/sub/deeper/note.txt"]
    status, body = get(app, "/files/stat", "/sub/data.bin")
    assert status == 200
    info = json.loads(body)
    assert (info["kind"], info["size"]) == ("file", len(BINARY))
    root_mtime = int((app[1] / "sub" / "data.bin").stat().st_mtime)
    assert info["mtime"] == root_mtime
    assert json.loads(get(app, "/files/stat", "/sub")[1])["kind"] == "dir"
    status, body = get(app, "/files/list", "/hello.txt")
    assert (status, body) == (500, b"NotADirectoryError: [Errno 54] Not a directory: '/hello.txt'")


def test_every_change_is_refused(app: tuple[Server, Path]) -> None:
    for op, path in [
        ("create", "/new.txt"),
        ("create", "/hello.txt"),
        ("append", "/hello.txt"),
        ("truncate", "/hello.txt"),
        ("mkdir", "/newdir"),
        ("remove", "/hello.txt"),
        ("rmdir", "/sub/deeper"),
    ]:
        status, body = get(app, "/files/write", path, op=op)
        assert status == 403, (op, path, body)
        assert body.decode().startswith(PERMISSION), (op, path, body)
    assert (app[1] / "hello.txt").read_text() == "hello from a file\n"
    assert sorted(p.name for p in app[1].iterdir()) == ["docs", "hello.txt", "sub"]
    assert (app[1] / "sub" / "deeper").is_dir()


def test_rename_is_refused(app: tuple[Server, Path]) -> None:
    status, body = get(app, "/files/write", "/hello.txt", op="rename", to="/renamed.txt")
    assert (status, body.decode().startswith(PERMISSION)) == (403, True), body


def test_paths_cannot_leave_the_files_root(app: tuple[Server, Path]) -> None:
    root = app[1]
    assert (root / "../../../secret.txt").read_bytes() == SECRET  # where the secret is
    # Symbolic links cannot come from `files` (they are copied), so plant some in the root.
    links = {
        "abs-link": str((root / "../../../secret.txt").resolve()),
        "rel-link": "../../../secret.txt",
        "up-link": "..",
        "sub/deep-link": "../../secret.txt",
        "inside-link": "sub/deeper/note.txt",
        "sub/dir-link": "deeper",
        "loop-a": "loop-b",
        "loop-b": "loop-a",
    }
    for name, target in links.items():
        (root / name).symlink_to(target)
    try:
        for path in [
            "/../secret.txt",
            "/../../../secret.txt",
            "/sub/../../secret.txt",
            "/abs-link",
            "/rel-link",
            "/sub/deep-link",
            "/up-link/secret.txt",
        ]:
            status, body = get(app, "/files/read", path)
            assert status == 500, (path, body)
            assert body.decode().startswith(PERMISSION), (path, body)
            assert SECRET not in body
        status, body = get(app, "/files/list", "/up-link")
        assert (status, body.decode().startswith(PERMISSION)) == (500, True), body
        # Links that stay inside work; lstat sees the link itself.
        assert get(app, "/files/read", "/inside-link") == (200, b"deep\n")
        assert get(app, "/files/read", "/sub/dir-link/note.txt") == (200, b"deep\n")
        assert json.loads(get(app, "/files/stat", "/abs-link", lstat="1")[1])["kind"] == "symlink"
        status, body = get(app, "/files/read", "/loop-a")
        assert (status, body) == (500, b"OSError: [Errno 32] Symbolic link loop: '/loop-a'")
    finally:
        for name in links:
            (root / name).unlink()


def test_a_component_without_files_sees_no_root(app: tuple[Server, Path]) -> None:
    status, body = get(app, "/bare/read", "/hello.txt")
    assert status == 404, body
    status, body = get(app, "/bare/list", "/")
    assert status == 404, body


def _open_fds(pid: int) -> int:
    """Open file descriptors of `pid` and its child processes (the workers)."""
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        pids += [int(p) for p in (task / "children").read_text().split()]
    return sum(len(os.listdir(f"/proc/{p}/fd")) for p in pids)


def test_descriptors_are_closed_after_each_request(app: tuple[Server, Path]) -> None:
    server = app[0]
    with server.client() as c:
        for _ in range(3):
            c.get("/files/walk", params={"path": "/"})
        before = _open_fds(server.proc.pid)
        for _ in range(20):
            assert c.get("/files/walk", params={"path": "/"}).status_code == 200
            assert c.get("/files/read", params={"path": "/sub/data.bin"}).status_code == 200
    assert _open_fds(server.proc.pid) <= before + 2  # no descriptor outlives its request


# -- path resolution, directly ----------------------------------------------------------------


def test_resolve_stays_under_its_base(tmp_path: Path) -> None:
    base = tmp_path / "base"
    (base / "a" / "b").mkdir(parents=True)
    (base / "a" / "f.txt").write_text("f")
    (tmp_path / "outside.txt").write_text("x")
    (base / "a" / "to-f").symlink_to("f.txt")
    (base / "a" / "to-b").symlink_to("b")
    (base / "a" / "escape").symlink_to("../../outside.txt")
    (base / "abs").symlink_to(tmp_path / "outside.txt")
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    open_before = len(os.listdir("/proc/self/fd"))

    def at(path: str, follow: bool = True) -> tuple[str, str]:
        with resolve(fd, path, follow) as (parent, name):
            here = os.readlink(f"/proc/self/fd/{parent}")
            return os.path.relpath(here, base), name

    def refused(path: str, follow: bool = True) -> str:
        with pytest.raises(FsError) as info, resolve(fd, path, follow):
            pass
        return info.value.code

    try:
        assert at("a/f.txt") == ("a", "f.txt")
        assert at("a/b/..") == ("a", ".")
        assert at("a/b/") == ("a/b", ".")
        assert at("a/to-f") == ("a", "f.txt")
        assert at("a/to-f", follow=False) == ("a", "to-f")
        assert at("a/to-b/x", follow=False) == ("a/b", "x")
        assert at("./a//b/../f.txt") == ("a", "f.txt")
        assert at("a/escape", follow=False) == ("a", "escape")
        for path in ["..", "a/../..", "/a", "a/escape", "abs", "abs/x", "a/escape/x"]:
            assert refused(path) == "not-permitted", path
        assert refused("") == "no-entry"
        assert refused("a/\0") == "invalid"
        with pytest.raises(NotADirectoryError), resolve(fd, "a/f.txt/x", True):
            pass
        with pytest.raises(FileNotFoundError), resolve(fd, "a/missing", True):
            pass
        assert len(os.listdir("/proc/self/fd")) == open_before  # the walk closed its fds
    finally:
        os.close(fd)


def test_flags_round_trip_through_a_component_value() -> None:
    for flags in [frozenset(), frozenset({"read"}), frozenset({"read", "mutate-directory"})]:
        v = VAL()
        DESCRIPTOR_FLAGS.lower(flags, v, None)
        assert v.kind == ffi.WASMTIME_COMPONENT_FLAGS.value
        assert DESCRIPTOR_FLAGS.lift(v, None) == flags
        ffi.wasmtime_component_val_delete(ctypes.byref(v))
    with pytest.raises(ValueError, match="no flags"):
        DESCRIPTOR_FLAGS.lower({"execute"}, VAL(), None)
