"""Host-side files: descriptors, file streams, and path resolution that never leaves the
files root (`O_NOFOLLOW` opens, `*at` calls on directory fds, links expanded here)."""

from __future__ import annotations

import errno
import os
import stat as st
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from ..io import InputStream, IoError, StreamClosed, StreamFailed

MAX_READ = 64 * 1024  # per read, as wasmtime (a guest asks for more, it gets this much)
MAX_SYMLINKS = 40
O_PATH = getattr(os, "O_PATH", os.O_RDONLY)
WALK = O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class FsError(Exception):
    """A wasi:filesystem `error-code` (also the `cause` of a file stream's `IoError`)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


_ERRNO_CODES = {
    errno.EPERM: "not-permitted",
    errno.ENOENT: "no-entry",
    errno.ENOMEM: "insufficient-memory",
    errno.EIO: "io",
    errno.EBADF: "bad-descriptor",
    errno.EBUSY: "busy",
    errno.EACCES: "access",
    errno.ENOTDIR: "not-directory",
    errno.EISDIR: "is-directory",
    errno.EINVAL: "invalid",
    errno.EEXIST: "exist",
    errno.EFBIG: "file-too-large",
    errno.ENOSPC: "insufficient-space",
    errno.ESPIPE: "invalid-seek",
    errno.EMLINK: "too-many-links",
    errno.ENAMETOOLONG: "name-too-long",
    errno.ENOTEMPTY: "not-empty",
    errno.ELOOP: "loop",
    errno.EOVERFLOW: "overflow",
    errno.EILSEQ: "illegal-byte-sequence",
    errno.ENOTSUP: "unsupported",
    errno.EOPNOTSUPP: "unsupported",
    errno.EALREADY: "already",
    errno.EINPROGRESS: "in-progress",
    errno.EINTR: "interrupted",
    errno.EAGAIN: "would-block",
    errno.EDEADLK: "deadlock",
    errno.EDQUOT: "quota",
    errno.EMSGSIZE: "message-size",
    errno.ENODEV: "no-device",
    errno.ENXIO: "no-such-device",
    errno.ENOLCK: "no-lock",
    errno.ENOTTY: "no-tty",
    errno.ENOTRECOVERABLE: "not-recoverable",
    errno.EPIPE: "pipe",
    errno.EROFS: "read-only",
    errno.ETXTBSY: "text-file-busy",
    errno.EXDEV: "cross-device",
}


def error_code(e: OSError) -> str:
    return _ERRNO_CODES.get(e.errno or 0, "io")


# -- host objects ----------------------------------------------------------------------------


class Fd:
    """An OS file descriptor, closed when the last reference (descriptor, stream) goes."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __del__(self) -> None:
        with suppress(OSError):
            os.close(self.fd)


class Descriptor:
    """An open file or directory under the files root (always opened read-only)."""

    __slots__ = ("handle", "is_dir")

    def __init__(self, fd: int) -> None:
        self.handle = Fd(fd)
        self.is_dir = st.S_ISDIR(os.fstat(fd).st_mode)

    @property
    def fd(self) -> int:
        return self.handle.fd

    def file(self) -> int:
        if self.is_dir:
            raise FsError("bad-descriptor")
        return self.fd

    def dir(self) -> int:
        if not self.is_dir:
            raise FsError("not-directory")
        return self.fd


class DirectoryEntries:
    """What `read-directory` found: entries (dicts) or per-entry error codes, in order."""

    def __init__(self, entries: list[dict[str, str] | str]) -> None:
        self.entries = deque(entries)


class FileInputStream(InputStream):
    """`read-via-stream`: reads at a position of its own (pread), `closed` at end of file."""

    def __init__(self, handle: Fd, offset: int) -> None:
        self.handle = handle
        self.pos = offset

    def read(self, n: int) -> bytes:
        if n == 0:
            return b""
        try:
            data = os.pread(self.handle.fd, min(n, MAX_READ), self.pos)
        except OSError as e:
            raise StreamFailed(IoError(str(e), FsError(error_code(e)))) from e
        except OverflowError as e:
            raise StreamFailed(IoError(str(e), FsError("invalid"))) from e
        if not data:
            raise StreamClosed
        self.pos += len(data)
        return data


# -- paths -----------------------------------------------------------------------------------


@contextmanager
def resolve(base: int, path: str, follow: bool) -> Iterator[tuple[int, str]]:
    """The directory (an fd, valid inside the `with`) holding the last component of `path`
    and that component's name (`.` when the path names a directory itself), resolved under
    the directory `base` without ever leaving it. `follow`: expand a final symbolic link."""
    if not path:
        raise FsError("no-entry")
    if "\0" in path:
        raise FsError("invalid")
    if path.startswith("/"):
        raise FsError("not-permitted")
    stack = [base]  # base is the caller's; the others are closed here
    parts = deque(path.split("/"))
    links = 0
    try:
        while parts:
            part = parts.popleft()
            if part in ("", "."):
                continue
            if part == "..":
                if len(stack) == 1:
                    raise FsError("not-permitted")
                os.close(stack.pop())
                continue
            last = not parts  # "name/" or "name/." must be a directory: walked into below
            if last and not follow:
                yield stack[-1], part
                return
            mode = os.stat(part, dir_fd=stack[-1], follow_symlinks=False).st_mode
            if st.S_ISLNK(mode):
                links += 1
                if links > MAX_SYMLINKS:
                    raise FsError("loop")
                target = os.readlink(part, dir_fd=stack[-1])
                if not target:
                    raise FsError("no-entry")
                if target.startswith("/"):
                    raise FsError("not-permitted")
                parts.extendleft(reversed(target.split("/")))
                continue
            if last:
                yield stack[-1], part
                return
            stack.append(os.open(part, WALK, dir_fd=stack[-1]))
        yield stack[-1], "."
    finally:
        for fd in stack[1:]:
            os.close(fd)


def follow(path_flags: frozenset[str]) -> bool:
    return "symlink-follow" in path_flags
