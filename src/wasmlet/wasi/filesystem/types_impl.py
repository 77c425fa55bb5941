"""wasi:filesystem's `types` and `preopens` interfaces over the host-side files of
`paths.py`: read-only, every change `not-permitted` (see the package docstring)."""

from __future__ import annotations

import functools
import hashlib
import os
import stat as st
from collections.abc import Callable
from typing import Any

from .._abi import (
    BOOL,
    LIST_U8,
    STRING,
    U32,
    U64,
    Borrow,
    Enum,
    Err,
    Flags,
    List,
    Ok,
    Option,
    Own,
    Record,
    Result,
    Tuple,
)
from .._abi import Variant as V
from .._iface import Interface
from .._state import Key, current, table
from ..io import ERROR, INPUT_STREAM, OUTPUT_STREAM, IoError
from .paths import (
    MAX_READ,
    OPEN,
    Descriptor,
    DirectoryEntries,
    FileInputStream,
    FsError,
    error_code,
    follow,
    resolve,
)

FILES_ROOT: Key[str | None] = Key("files")
"""The host directory the component sees as `/` (None or absent: no files)."""


# -- the interfaces --------------------------------------------------------------------------

types_iface = Interface("wasi:filesystem/types")
DESCRIPTOR = types_iface.resource("descriptor", lambda rep: table().pop(rep))
DIRECTORY_ENTRY_STREAM = types_iface.resource(
    "directory-entry-stream", lambda rep: table().pop(rep)
)

DATETIME = Record(("seconds", U64), ("nanoseconds", U32))
DESCRIPTOR_TYPE = Enum(
    "unknown",
    "block-device",
    "character-device",
    "directory",
    "fifo",
    "symbolic-link",
    "regular-file",
    "socket",
)
DESCRIPTOR_FLAGS = Flags(
    "read",
    "write",
    "file-integrity-sync",
    "data-integrity-sync",
    "requested-write-sync",
    "mutate-directory",
)
PATH_FLAGS = Flags("symlink-follow")
OPEN_FLAGS = Flags("create", "directory", "exclusive", "truncate")
NEW_TIMESTAMP = V(("no-change", None), ("now", None), ("timestamp", DATETIME))
STAT = Record(
    ("type", DESCRIPTOR_TYPE),
    ("link-count", U64),
    ("size", U64),
    ("data-access-timestamp", Option(DATETIME)),
    ("data-modification-timestamp", Option(DATETIME)),
    ("status-change-timestamp", Option(DATETIME)),
)
DIRECTORY_ENTRY = Record(("type", DESCRIPTOR_TYPE), ("name", STRING))
ERROR_CODE = Enum(
    "access",
    "would-block",
    "already",
    "bad-descriptor",
    "busy",
    "deadlock",
    "quota",
    "exist",
    "file-too-large",
    "illegal-byte-sequence",
    "in-progress",
    "interrupted",
    "invalid",
    "io",
    "is-directory",
    "loop",
    "too-many-links",
    "message-size",
    "name-too-long",
    "no-device",
    "no-entry",
    "no-lock",
    "insufficient-memory",
    "insufficient-space",
    "not-directory",
    "not-empty",
    "not-recoverable",
    "unsupported",
    "no-tty",
    "no-such-device",
    "overflow",
    "not-permitted",
    "pipe",
    "read-only",
    "invalid-seek",
    "text-file-busy",
    "cross-device",
)
ADVICE = Enum("normal", "sequential", "random", "will-need", "dont-need", "no-reuse")
METADATA_HASH = Record(("lower", U64), ("upper", U64))

D = Borrow(DESCRIPTOR)
UNIT = Result(None, ERROR_CODE)

_ADVICE = {
    "normal": os.POSIX_FADV_NORMAL,
    "sequential": os.POSIX_FADV_SEQUENTIAL,
    "random": os.POSIX_FADV_RANDOM,
    "will-need": os.POSIX_FADV_WILLNEED,
    "dont-need": os.POSIX_FADV_DONTNEED,
    "no-reuse": os.POSIX_FADV_NOREUSE,
}


def _fallible(fn: Callable[..., Any]) -> Callable[..., Ok[Any] | Err[str]]:
    """`fn`'s value as `Ok`; an FsError or OSError as `Err(error-code)`."""

    @functools.wraps(fn)
    def call(*args: Any) -> Ok[Any] | Err[str]:
        try:
            return Ok(fn(*args))
        except FsError as e:
            return Err(e.code)
        except OSError as e:
            return Err(error_code(e))
        except OverflowError:  # an offset or length beyond off_t
            return Err("invalid")

    return call


def _descriptor(rep: int) -> Descriptor:
    return table().get(rep, Descriptor)


def _type(mode: int) -> str:
    if st.S_ISREG(mode):
        return "regular-file"
    if st.S_ISDIR(mode):
        return "directory"
    if st.S_ISLNK(mode):
        return "symbolic-link"
    if st.S_ISCHR(mode):
        return "character-device"
    if st.S_ISBLK(mode):
        return "block-device"
    if st.S_ISFIFO(mode):
        return "fifo"
    if st.S_ISSOCK(mode):
        return "socket"
    return "unknown"


def _datetime(ns: int) -> dict[str, int] | None:
    if ns < 0:
        return None
    seconds, nanos = divmod(ns, 1_000_000_000)
    return {"seconds": seconds, "nanoseconds": nanos}


def _stat(s: os.stat_result) -> dict[str, object]:
    return {
        "type": _type(s.st_mode),
        "link-count": s.st_nlink,
        "size": s.st_size,
        "data-access-timestamp": _datetime(s.st_atime_ns),
        "data-modification-timestamp": _datetime(s.st_mtime_ns),
        "status-change-timestamp": _datetime(s.st_ctime_ns),
    }


def _metadata_hash(s: os.stat_result) -> dict[str, int]:
    digest = hashlib.blake2b(f"{s.st_dev}:{s.st_ino}".encode(), digest_size=16).digest()
    return {
        "lower": int.from_bytes(digest[:8], "little"),
        "upper": int.from_bytes(digest[8:], "little"),
    }


def _stat_at(rep: int, path_flags: frozenset[str], path: str) -> os.stat_result:
    with resolve(_descriptor(rep).dir(), path, follow(path_flags)) as (parent, name):
        return os.stat(name, dir_fd=parent, follow_symlinks=False)


@types_iface.func(
    "[method]descriptor.read-via-stream", (D, U64), Result(Own(INPUT_STREAM), ERROR_CODE)
)
@_fallible
def _read_via_stream(rep: int, offset: int) -> int:
    d = _descriptor(rep)
    d.file()
    return table().push(FileInputStream(d.handle, offset))


def _no_write_stream(rep: int, *_args: object) -> int:
    _descriptor(rep).file()
    raise FsError("bad-descriptor")  # as wasmtime for a file without write permission


types_iface.func(
    "[method]descriptor.write-via-stream", (D, U64), Result(Own(OUTPUT_STREAM), ERROR_CODE)
)(_fallible(_no_write_stream))
types_iface.func(
    "[method]descriptor.append-via-stream", (D,), Result(Own(OUTPUT_STREAM), ERROR_CODE)
)(_fallible(_no_write_stream))


@types_iface.func("[method]descriptor.advise", (D, U64, U64, ADVICE), UNIT)
@_fallible
def _advise(rep: int, offset: int, length: int, advice: str) -> None:
    os.posix_fadvise(_descriptor(rep).file(), offset, length, _ADVICE[advice])


@types_iface.func("[method]descriptor.sync-data", (D,), UNIT)
@_fallible
def _sync_data(rep: int) -> None:
    os.fdatasync(_descriptor(rep).fd)


@types_iface.func("[method]descriptor.sync", (D,), UNIT)
@_fallible
def _sync(rep: int) -> None:
    os.fsync(_descriptor(rep).fd)


@types_iface.func("[method]descriptor.get-flags", (D,), Result(DESCRIPTOR_FLAGS, ERROR_CODE))
@_fallible
def _get_flags(rep: int) -> frozenset[str]:
    _descriptor(rep)
    return frozenset({"read"})


@types_iface.func("[method]descriptor.get-type", (D,), Result(DESCRIPTOR_TYPE, ERROR_CODE))
@_fallible
def _get_type(rep: int) -> str:
    return _type(os.fstat(_descriptor(rep).fd).st_mode)


@types_iface.func("[method]descriptor.set-size", (D, U64), UNIT)
@_fallible
def _set_size(rep: int, _size: int) -> None:
    _descriptor(rep).file()
    raise FsError("not-permitted")


@types_iface.func("[method]descriptor.set-times", (D, NEW_TIMESTAMP, NEW_TIMESTAMP), UNIT)
@_fallible
def _set_times(rep: int, *_times: object) -> None:
    _descriptor(rep)
    raise FsError("not-permitted")


@types_iface.func(
    "[method]descriptor.read", (D, U64, U64), Result(Tuple(LIST_U8, BOOL), ERROR_CODE)
)
@_fallible
def _read(rep: int, length: int, offset: int) -> tuple[bytes, bool]:
    data = os.pread(_descriptor(rep).file(), min(length, MAX_READ), offset)
    return data, not data


@types_iface.func("[method]descriptor.write", (D, LIST_U8, U64), Result(U64, ERROR_CODE))
@_fallible
def _write(rep: int, _data: bytes, _offset: int) -> int:
    _descriptor(rep).file()
    raise FsError("not-permitted")


@types_iface.func(
    "[method]descriptor.read-directory", (D,), Result(Own(DIRECTORY_ENTRY_STREAM), ERROR_CODE)
)
@_fallible
def _read_directory(rep: int) -> int:
    entries: list[dict[str, str] | str] = []
    with os.scandir(_descriptor(rep).dir()) as it:
        for entry in sorted(it, key=lambda e: e.name):
            try:
                name = entry.name
                name.encode("utf-8")
            except UnicodeEncodeError:
                entries.append("illegal-byte-sequence")
                continue
            if entry.is_symlink():
                kind = "symbolic-link"
            elif entry.is_dir(follow_symlinks=False):
                kind = "directory"
            elif entry.is_file(follow_symlinks=False):
                kind = "regular-file"
            else:
                try:
                    kind = _type(entry.stat(follow_symlinks=False).st_mode)
                except OSError as e:
                    entries.append(error_code(e))
                    continue
            entries.append({"type": kind, "name": name})
    return table().push(DirectoryEntries(entries))


@types_iface.func(
    "[method]directory-entry-stream.read-directory-entry",
    (Borrow(DIRECTORY_ENTRY_STREAM),),
    Result(Option(DIRECTORY_ENTRY), ERROR_CODE),
)
@_fallible
def _read_directory_entry(rep: int) -> dict[str, str] | None:
    entries = table().get(rep, DirectoryEntries).entries
    if not entries:
        return None
    entry = entries.popleft()
    if isinstance(entry, str):
        raise FsError(entry)
    return entry


@types_iface.func("[method]descriptor.stat", (D,), Result(STAT, ERROR_CODE))
@_fallible
def _descriptor_stat(rep: int) -> dict[str, object]:
    return _stat(os.fstat(_descriptor(rep).fd))


@types_iface.func("[method]descriptor.stat-at", (D, PATH_FLAGS, STRING), Result(STAT, ERROR_CODE))
@_fallible
def _descriptor_stat_at(rep: int, path_flags: frozenset[str], path: str) -> dict[str, object]:
    return _stat(_stat_at(rep, path_flags, path))


@types_iface.func(
    "[method]descriptor.open-at",
    (D, PATH_FLAGS, STRING, OPEN_FLAGS, DESCRIPTOR_FLAGS),
    Result(Own(DESCRIPTOR), ERROR_CODE),
)
@_fallible
def _open_at(
    rep: int, path_flags: frozenset[str], path: str, oflags: frozenset[str], flags: frozenset[str]
) -> int:
    base = _descriptor(rep).dir()
    if {"create", "truncate"} & oflags or "write" in flags:
        raise FsError("not-permitted")
    if {"file-integrity-sync", "data-integrity-sync", "requested-write-sync"} & flags:
        raise FsError("unsupported")
    mode = OPEN | (os.O_DIRECTORY if "directory" in oflags else 0)
    with resolve(base, path, follow(path_flags)) as (parent, name):
        fd = os.open(name, mode, dir_fd=parent)
    return table().push(Descriptor(fd))  # (if Descriptor fails, its Fd closes fd)


@types_iface.func("[method]descriptor.readlink-at", (D, STRING), Result(STRING, ERROR_CODE))
@_fallible
def _readlink_at(rep: int, path: str) -> str:
    with resolve(_descriptor(rep).dir(), path, False) as (parent, name):
        target = os.readlink(name, dir_fd=parent)
    try:
        target.encode("utf-8")
    except UnicodeEncodeError:
        raise FsError("illegal-byte-sequence") from None
    return target


def _no_change_at(rep: int, *_args: object) -> None:
    _descriptor(rep).dir()
    raise FsError("not-permitted")


for _name, _params in (
    ("create-directory-at", (D, STRING)),
    ("set-times-at", (D, PATH_FLAGS, STRING, NEW_TIMESTAMP, NEW_TIMESTAMP)),
    ("link-at", (D, PATH_FLAGS, STRING, D, STRING)),
    ("remove-directory-at", (D, STRING)),
    ("rename-at", (D, STRING, D, STRING)),
    ("symlink-at", (D, STRING, STRING)),
    ("unlink-file-at", (D, STRING)),
):
    types_iface.func(f"[method]descriptor.{_name}", _params, UNIT)(_fallible(_no_change_at))


@types_iface.func("[method]descriptor.is-same-object", (D, D), BOOL)
def _is_same_object(rep: int, other: int) -> bool:
    a = os.fstat(_descriptor(rep).fd)
    b = os.fstat(_descriptor(other).fd)
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


@types_iface.func("[method]descriptor.metadata-hash", (D,), Result(METADATA_HASH, ERROR_CODE))
@_fallible
def _descriptor_metadata_hash(rep: int) -> dict[str, int]:
    return _metadata_hash(os.fstat(_descriptor(rep).fd))


@types_iface.func(
    "[method]descriptor.metadata-hash-at",
    (D, PATH_FLAGS, STRING),
    Result(METADATA_HASH, ERROR_CODE),
)
@_fallible
def _descriptor_metadata_hash_at(rep: int, path_flags: frozenset[str], path: str) -> dict[str, int]:
    return _metadata_hash(_stat_at(rep, path_flags, path))


@types_iface.func("filesystem-error-code", (Borrow(ERROR),), Option(ERROR_CODE))
def _filesystem_error_code(rep: int) -> str | None:
    cause = table().get(rep, IoError).cause
    return cause.code if isinstance(cause, FsError) else None


preopens_iface = Interface("wasi:filesystem/preopens")


@preopens_iface.func("get-directories", (), List(Tuple(Own(DESCRIPTOR), STRING)))
def _get_directories() -> list[tuple[int, str]]:
    root = current().find(FILES_ROOT)
    if root is None:
        return []
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    return [(table().push(Descriptor(fd)), "/")]


INTERFACES = [types_iface, preopens_iface]
