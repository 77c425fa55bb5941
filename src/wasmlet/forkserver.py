"""Where a server's worker processes (`--workers N`) start: a fork server forked from the
supervisor itself.

A spawned worker is a new interpreter that imports the whole HTTP and Wasm stack before it
can build its app (~0.3 s here, on every start and every restart); so is multiprocessing's
own fork server, and on two cores its imports compete with the supervisor's. This one is a
plain `os.fork()` of the supervisor once it has imported everything and before it makes any
thread, engine or app: it starts at once, shares the supervisor's imported pages, and forks
each worker from there, so a worker only builds its app. It stays single-threaded for good
(nothing forked from it inherits a thread's lock or a wasmtime engine, which must never cross
a fork), and it is the workers' parent: it reaps them and tells the supervisor their exit
statuses.

`start_early` forks it (a command calls it right after its imports); `fork_server` is what the
supervisor starts its workers with (forking one then if `start_early` did not). The fork
server exits when the supervisor does, and its workers then (their lifeline,
`trigger/http/server.py`).

Only the standard library here.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import select
import signal
import socket
import struct
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any

# What uvicorn imports only when a server starts (its config's loop, protocols, lifespan):
# the shim's template imports it before it forks tasks.
UVICORN_LAZY = (
    "uvicorn.lifespan.on",
    "uvicorn.loops.auto",
    "uvicorn.loops.uvloop",
    "uvicorn.protocols.http.auto",
    "uvicorn.protocols.http.httptools_impl",
)  # no WebSocket protocol: the servers run with ws="none" (trigger/http/server.py)

_HEAD = struct.Struct("!Q")  # length of the pickled message that follows
_MAX_FDS = 16
_STARTED, _EXITED = "started", "exited"


class ForkServer:
    """The supervisor's end of a fork server: `start` a worker, `wait` for exit statuses.

    A worker is `fn(*args, *socks)` in a child of the fork server (each socket in `socks`
    arrives as a socket of the same file); its exit status is 0 once `fn` returns, SystemExit's
    code, or 1 after an exception (printed)."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        for stream in (sys.stdout, sys.stderr):  # else the child would print it again
            stream.flush()
        if os.fork() == 0:  # the fork server
            ours.close()
            code = 1
            try:
                _serve(theirs)
                code = 0
            finally:
                os._exit(code)
        theirs.close()
        self._sock = ours
        self._exited: list[tuple[int, int]] = []

    def start(
        self, fn: Callable[..., Any], args: Sequence[Any], socks: Sequence[socket.socket]
    ) -> int:
        """Fork a worker running `fn(*args, *socks)`; its pid."""
        _send(self._sock, (fn, tuple(args)), [s.fileno() for s in socks])
        while True:
            kind, pid, status = self._receive()
            if kind == _STARTED:
                return pid
            self._exited.append((pid, status))

    def wait(self, timeout: float) -> list[tuple[int, int]]:
        """Workers that exited since the last call, as (pid, exit status; -N: killed by
        signal N), after waiting up to `timeout` seconds for one."""
        if not self._exited:
            select.select([self._sock], [], [], timeout)
        while select.select([self._sock], [], [], 0)[0]:  # only exits: "started" answers `start`
            _, pid, status = self._receive()
            self._exited.append((pid, status))
        exited, self._exited = self._exited, []
        return exited

    def _receive(self) -> tuple[str, int, int]:
        message, _ = _recv(self._sock)
        if message is None:
            raise OSError("the workers' fork server exited")
        kind, pid, status = message
        return str(kind), int(pid), int(status)

    def close(self) -> None:
        """Let the fork server exit (it does when the supervisor does, too)."""
        self._sock.close()


def _send(sock: socket.socket, message: object, fds: Sequence[int] = ()) -> None:
    data = pickle.dumps(message)
    socket.send_fds(sock, [_HEAD.pack(len(data))], list(fds))
    sock.sendall(data)


def _recv(sock: socket.socket) -> tuple[Any, list[int]]:
    """A message and the files that came with it; (None, []) at end of file."""
    head, fds, _, _ = socket.recv_fds(sock, _HEAD.size, _MAX_FDS, socket.MSG_WAITALL)
    if len(head) < _HEAD.size:
        return None, []
    (size,) = _HEAD.unpack(head)
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None, []
        data += chunk
    return pickle.loads(data), fds


def _serve(ctl: socket.socket) -> None:
    """The fork server's loop: fork a worker per request, report each one's exit."""
    # Ctrl-C reaches the whole process group, and a service manager's SIGTERM often the
    # whole cgroup: the supervisor decides what the workers do, and this exits after it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so that it wakes the select
    # What the supervisor imported: shared with every worker, never scanned (gcpause.py).
    gc.freeze()
    gc.enable()
    while True:
        ready = select.select([ctl.fileno(), wake_r], [], [])[0]
        if wake_r in ready:
            os.read(wake_r, 512)
            _reap(ctl)
        if ctl.fileno() in ready:
            message, fds = _recv(ctl)
            if message is None:
                return  # the supervisor is gone
            fn, args = message
            pid = os.fork()
            if pid == 0:
                os.close(wake_r)
                os.close(wake_w)
                _child(ctl, fn, args, fds)
            for fd in fds:
                os.close(fd)
            _send(ctl, (_STARTED, pid, 0))


def _reap(ctl: socket.socket) -> None:
    for pid, status in reaped():
        _send(ctl, (_EXITED, pid, os.waitstatus_to_exitcode(status)))


def reaped() -> Iterator[tuple[int, int]]:
    """Each child that has exited, as (pid, wait status), reaped; none left: the end."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        yield pid, status


def _child(
    ctl: socket.socket, fn: Callable[..., Any], args: tuple[Any, ...], fds: list[int]
) -> None:
    """A worker: run `fn`, then exit with its status (never return into the fork server)."""
    code = 1
    try:
        ctl.close()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        fn(*args, *(socket.socket(fileno=fd) for fd in fds))
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # a closed pipe: nothing more to say
                stream.flush()
        os._exit(code)


_server: ForkServer | None = None


def start_early(workers: int) -> None:
    """Fork the fork server now if there will be workers (`workers` > 1): call it after the
    imports the workers need and before any thread starts."""
    global _server
    if workers > 1 and _server is None:
        _server = ForkServer()


def fork_server() -> ForkServer:
    """The fork server `start_early` made, or a new one; the caller owns it (`close`)."""
    global _server
    server, _server = _server, None
    return server if server is not None else ForkServer()
