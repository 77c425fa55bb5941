"""Children of the shim: spawn them and collect their exit statuses.

The shim is a child subreaper, so a runc container's init (forked by `runc create`, which
then exits) becomes its child too. One SIGCHLD handler reaps every child and resolves the
waiter registered for that pid; an exit seen before anyone waits for it is kept.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Mapping, Sequence

from ..forkserver import reaped

_RESET_SIGNALS = (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE, signal.SIGHUP)


def exit_code(status: int) -> int:
    """Shell convention: a signal-killed process exits 128 + signal."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


class Reaper:
    def __init__(self) -> None:
        self._waiters: dict[int, asyncio.Future[int]] = {}
        self._exited: dict[int, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def install(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_signal_handler(signal.SIGCHLD, self.reap)

    def reap(self) -> None:
        for pid, status in reaped():
            code = exit_code(status)
            future = self._waiters.pop(pid, None)
            if future is not None and not future.done():
                future.set_result(code)
            else:
                self._exited[pid] = code
                while len(self._exited) > 1024:
                    self._exited.pop(next(iter(self._exited)))

    def wait(self, pid: int) -> asyncio.Future[int]:
        """A future for `pid`'s exit code (the pid must be, or become, the shim's child)."""
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        if pid in self._exited:
            future.set_result(self._exited.pop(pid))
        else:
            self._waiters[pid] = future
        return future

    def spawn(
        self,
        argv: Sequence[str],
        fds: Mapping[int, int],
        env: Mapping[str, str] | None = None,
        new_session: bool = True,
    ) -> int:
        """Start `argv` with `fds` (child fd -> our fd) and default signal handling."""
        actions = [(os.POSIX_SPAWN_DUP2, ours, theirs) for theirs, ours in sorted(fds.items())]
        return os.posix_spawn(
            argv[0],
            list(argv),
            dict(os.environ if env is None else env),
            file_actions=actions,
            setsid=new_session,
            setsigdef=_RESET_SIGNALS,
            setsigmask=(),
        )

    async def run(
        self, argv: Sequence[str], stdin: int | None = None, timeout: float = 60.0
    ) -> tuple[int, str]:
        """Run a helper (runc) to completion: (exit code, its output)."""
        read, write = os.pipe()
        null = os.open(os.devnull, os.O_RDWR)
        try:
            pid = self.spawn(argv, {0: stdin if stdin is not None else null, 1: write, 2: write})
        finally:
            os.close(write)
            os.close(null)
        waiter = self.wait(pid)
        loop = asyncio.get_running_loop()
        try:
            output = await loop.run_in_executor(None, _read_all, read)
            code = await asyncio.wait_for(waiter, timeout)
        finally:
            os.close(read)
        return code, output


def _read_all(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace").strip()
