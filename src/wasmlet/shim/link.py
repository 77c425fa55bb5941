"""The shim's channel to the node's template (a SOCK_SEQPACKET socket pair).

To the template (marshal'd tuples; descriptors ride along where noted):

    ("conn", id) + fd            a ttrpc connection was accepted (the template keeps a copy)
    ("closed", id)               it closed
    ("begin", id, stream, method, request)   a call arrived (its ttrpc.Request bytes)
    ("end", id, stream, ok)      its reply was written
    ("published", task id)       the task's exit was published
    ("spawn", token, task id, runner config) + stdout, stderr    fork a task (runner.py)
    ("compile", token, [(digest, wasm file)], cache dir, harvest)   compile these for this
                                 node; harvest: (containerd socket, namespace, the layers to
                                 record the artifacts on in its content store) or None
    ("bye",)                     the shim is exiting normally: no successor needed

From the template: ("spawned", token, pid) + the task's go and status pipes; ("exited", pid,
exit status) for each task it forked (it is their parent), and for any process it reaped
that may be one of ours (a runc container whose shim died); ("compiled", token); ("coming",
task id) when containerd is about to Create that task here.

If there is no template (it died), the link goes quiet: calls are served as usual, tasks are
spawned as processes of their own and compiles happen in the task; a task's exit is then
known from its status pipe, and a death of this shim is cleaned up by containerd.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import itertools
import logging
import marshal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("wasmlet.shim.link")

SEND_TIMEOUT = 2.0  # seconds a message may wait for a busy template before the link is dropped


class TemplateLink:
    def __init__(self, sock: socket.socket | None) -> None:
        self.sock = sock
        self._tokens = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self.on_exit: Callable[[int, int], None] = lambda pid, code: None
        self.on_coming: Callable[[str], None] = lambda task_id: None
        if sock is not None:
            sock.settimeout(SEND_TIMEOUT)

    @property
    def alive(self) -> bool:
        return self.sock is not None

    def start(self) -> None:
        """Read the template's messages on the running loop."""
        if self.sock is not None:
            asyncio.get_running_loop().add_reader(self.sock.fileno(), self._readable)

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
        self.sock = None
        for future in self._waiting.values():
            if not future.done():
                future.set_result(None)
        self._waiting.clear()

    # -- ttrpc.Observer ---------------------------------------------------------------------
    def connected(self, conn: int, sock: socket.socket) -> None:
        self._send(("conn", conn), [sock.fileno()])

    def closed(self, conn: int) -> None:
        self._send(("closed", conn))

    def begin(self, conn: int, stream: int, method: str, envelope: bytes) -> None:
        self._send(("begin", conn, stream, method, envelope))

    def end(self, conn: int, stream: int, ok: bool) -> None:
        self._send(("end", conn, stream, ok))

    def published(self, task_id: str) -> None:
        self._send(("published", task_id))

    def bye(self) -> None:
        self._send(("bye",))

    # -- requests ----------------------------------------------------------------------------
    async def spawn(
        self, task_id: str, config: dict[str, Any], stdout: int, stderr: int
    ) -> tuple[int, int, int] | None:
        """Have the template fork the task (runner.run_forked): its pid, the pipe to start
        it and the pipe it reports on; None when there is no template."""
        return await self._ask(("spawn", 0, task_id, config), [stdout, stderr])  # type: ignore[no-any-return]

    async def compile(
        self,
        items: list[tuple[str, str]],
        cache_dir: Path,
        harvest: tuple[str, str, list[str]] | None = None,
    ) -> bool:
        """Have the template compile `items` into `cache_dir` (once per node, however many
        tasks ask) and record them in containerd's content store (`harvest`); False when
        there is no template to ask."""
        return bool(await self._ask(("compile", 0, items, str(cache_dir), harvest)))

    async def _ask(self, message: tuple[Any, ...], fds: list[int] | None = None) -> Any:
        if self.sock is None:
            return None
        token = next(self._tokens)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[token] = future
        self._send((message[0], token, *message[2:]), fds)
        return await future

    # -- plumbing ---------------------------------------------------------------------------------
    def _send(self, message: tuple[Any, ...], fds: list[int] | None = None) -> None:
        if self.sock is None:
            return
        ancillary = []
        if fds:
            ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
        try:
            self.sock.sendmsg([marshal.dumps(message)], ancillary)
        except OSError as e:
            log.warning("lost the template (%s): no successor would take over from this shim", e)
            self._lost()

    def _readable(self) -> None:
        """One message per call (the loop calls again while there are more): the socket
        blocks, with a timeout, for the sends, so a second receive here could wait."""
        if self.sock is None:
            return
        fds = array.array("i")
        try:
            data, anc, _, _ = self.sock.recvmsg(65536, socket.CMSG_SPACE(8 * fds.itemsize))
        except (BlockingIOError, TimeoutError):
            return
        except OSError:
            data = b""
        if not data:
            log.warning("the template is gone: no successor would take over from this shim")
            self._lost()
            return
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
        self._message(marshal.loads(data), list(fds))

    def _message(self, message: tuple[Any, ...], fds: list[int]) -> None:
        kind = message[0]
        if kind == "exited":
            self.on_exit(message[1], message[2])
        elif kind == "coming":
            self.on_coming(message[1])
        elif kind in ("spawned", "compiled"):
            future = self._waiting.pop(message[1], None)
            value = (message[2], *fds) if kind == "spawned" else True
            if future is not None and not future.done():
                future.set_result(value)

    def _lost(self) -> None:
        self.close()
