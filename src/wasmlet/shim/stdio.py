"""The task's standard streams: containerd's fifos (or files), opened for the child."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass


@dataclass
class Stdio:
    stdin: str
    stdout: str
    stderr: str
    terminal: bool

    def open(self) -> dict[int, int]:
        """fd 0/1/2 for a child: the fifos containerd reads (the log pipes), else /dev/null.

        Opened read-write so opening never blocks (a fifo's writer waits for a reader);
        containerd still sees end-of-file once the child and the shim have closed them."""
        fds: dict[int, int] = {}
        try:
            fds[0] = _open(self.stdin, os.O_RDONLY)
            fds[1] = _open(self.stdout, os.O_WRONLY)
            fds[2] = _open(self.stderr, os.O_WRONLY) if self.stderr != self.stdout else fds[1]
        except BaseException:
            close(fds)
            raise
        return fds


def _open(path: str, mode: int) -> int:
    if not path:
        return os.open(os.devnull, os.O_RDWR)
    if path.startswith(("binary://", "file://")):
        raise OSError(f"stdio URI {path.split(':', 1)[0]}:// is not supported")
    if os.path.exists(path) and not _is_fifo(path):
        return os.open(path, mode | (os.O_APPEND if mode != os.O_RDONLY else 0))
    if mode == os.O_RDONLY:  # a reader does not wait for a writer when non-blocking
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        os.set_blocking(fd, True)
        return fd
    return os.open(path, os.O_RDWR)


def _is_fifo(path: str) -> bool:
    import stat

    return stat.S_ISFIFO(os.stat(path).st_mode)


def close(fds: dict[int, int]) -> None:
    for fd in set(fds.values()):
        with contextlib.suppress(OSError):
            os.close(fd)
