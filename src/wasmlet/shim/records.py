"""What the template knows of a shim it forked: enough for a successor to take over.

The shim reports on its channel (link.py) its connections (a duplicate of each rides along),
the calls it is handling, and its tasks' lives; the template also holds, for each task it
forked, duplicates of the pipes that start the task and report its status, and gets every
task's exit status as its parent. When the shim dies without having been stopped, all of
this is handed to a successor (recover.py), which then answers containerd on the same
connections — so containerd never sees the shim go, and does not clean its tasks up.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError

from .proto import shim_pb2, ttrpc_pb2

MAX_CHANNEL_MESSAGE = 8 << 20


@dataclass
class TaskRecord:
    create: bytes  # the Create call's ttrpc.Request
    created: bool = False  # Create answered OK
    started: bool = False  # Start answered OK
    pid: int = 0  # the task the template forked (a Wasm app), if any
    go: int = -1  # our duplicate of the pipe that starts it
    status: int = -1  # and of the one it reports on
    exit: int | None = None
    published: bool = False  # the shim published its exit

    def close(self) -> None:
        for fd in (self.go, self.status):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.go = self.status = -1


@dataclass
class ShimRecord:
    pid: int
    path: Path  # its listening socket's path
    request: dict[str, Any]  # the start request that forked it (its environment)
    listen: socket.socket
    channel: socket.socket | None = None
    conns: dict[int, int] = field(default_factory=dict)  # connection id -> our duplicate
    pending: dict[tuple[int, int], tuple[str, bytes]] = field(default_factory=dict)
    tasks: dict[str, TaskRecord] = field(default_factory=dict)
    shut_down: bool = False  # it said `bye`: no successor needed

    def send(self, message: tuple[Any, ...], fds: list[int] | None = None) -> None:
        if self.channel is None:
            return
        ancillary = []
        if fds:
            rights = b"".join(fd.to_bytes(4, "little") for fd in fds)
            ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)]
        with contextlib.suppress(OSError):
            self.channel.sendmsg([marshal.dumps(message)], ancillary)

    def fds(self) -> list[int]:
        """Every descriptor a successor needs."""
        out = list(self.conns.values())
        for t in self.tasks.values():
            out += [fd for fd in (t.go, t.status) if fd >= 0]
        return out

    # -- what the shim reports ----------------------------------------------------------------
    def note(self, message: tuple[Any, ...], fds: list[int]) -> None:
        kind = message[0]
        if kind == "conn" and fds:
            self.conns[message[1]] = fds.pop()
        elif kind == "closed":
            fd = self.conns.pop(message[1], None)
            if fd is not None:
                os.close(fd)
            self.pending = {k: v for k, v in self.pending.items() if k[0] != message[1]}
        elif kind == "begin":
            _, conn, stream, method, envelope = message
            self.pending[(conn, stream)] = (method, envelope)
            if method == "Create":
                task_id = _create_id(envelope)
                if task_id and task_id not in self.tasks:
                    self.tasks[task_id] = TaskRecord(envelope)
        elif kind == "end":
            _, conn, stream, ok = message
            method, envelope = self.pending.pop((conn, stream), ("", b""))
            self._ended(method, envelope, ok)
        elif kind == "published":
            if (task := self.tasks.get(message[1])) is not None:
                task.published = True
        elif kind == "bye":
            self.shut_down = True
        for fd in fds:
            os.close(fd)

    def _ended(self, method: str, envelope: bytes, ok: bool) -> None:
        if method not in ("Create", "Start", "Delete"):
            return
        try:
            task_id = _request_id(method, envelope)
        except DecodeError:
            return
        task = self.tasks.get(task_id)
        if task is None:
            return
        if method == "Create":
            task.created = ok
            if not ok:
                self.forget(task_id)
        elif method == "Start":
            task.started |= ok
        elif ok:  # Delete
            self.forget(task_id)

    def forget(self, task_id: str) -> None:
        task = self.tasks.pop(task_id, None)
        if task is not None:
            task.close()

    def spawned(self, task_id: str, pid: int, go: int, status: int) -> None:
        task = self.tasks.get(task_id)
        if task is None:  # (a Create always comes first; be safe)
            task = self.tasks[task_id] = TaskRecord(b"")
        task.close()
        task.pid, task.go, task.status = pid, os.dup(go), os.dup(status)

    def task_exited(self, pid: int, code: int) -> None:
        for task in self.tasks.values():
            if task.pid == pid:
                task.exit = code

    # -- the hand-over -------------------------------------------------------------------------
    def successor_state(self) -> dict[str, Any]:
        """What the successor gets. A task whose Create was still being handled is ended
        (its process killed, our copies of its pipes closed): the successor answers that
        Create again, from the start."""
        for task_id, t in list(self.tasks.items()):
            if not t.created:
                if t.pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(t.pid, signal.SIGKILL)
                self.forget(task_id)
        return {
            "conns": sorted(self.conns.items()),
            "pending": [(c, s, m, e) for (c, s), (m, e) in self.pending.items()],
            "tasks": {
                task_id: {
                    "create": t.create, "created": t.created, "started": t.started,
                    "pid": t.pid, "go": t.go, "status": t.status, "exit": t.exit,
                    "published": t.published,
                }
                for task_id, t in self.tasks.items()
                if t.created
            },
        }  # fmt: skip

    def close(self) -> None:
        self.listen.close()
        for fd in self.conns.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self.conns.clear()
        for t in self.tasks.values():
            t.close()


def _create_id(envelope: bytes) -> str:
    try:
        return _request_id("Create", envelope)
    except DecodeError:
        return ""


_REQUESTS = {
    "Create": shim_pb2.CreateTaskRequest,
    "Start": shim_pb2.StartRequest,
    "Delete": shim_pb2.DeleteRequest,
}


def _request_id(method: str, envelope: bytes) -> str:
    payload = ttrpc_pb2.Request.FromString(envelope).payload
    return str(_REQUESTS[method].FromString(payload).id)
