"""The long-running shim: serves the Task service on the socket `start` bound."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from pathlib import Path

from . import linux
from .events import Publisher
from .reaper import Reaper
from .service import SERVICE, ShimContext, TaskService
from .settings import SOCKET_FD_ENV, ShimSettings
from .ttrpc import Server

log = logging.getLogger("wasmlet.shim")


def setup_logging(debug: bool) -> None:
    """Log to the bundle's `log` fifo (containerd copies it into its own log), else to
    `shim.log` in the bundle."""
    stream = None
    with contextlib.suppress(OSError):
        fd = os.open("log", os.O_WRONLY | os.O_NONBLOCK)
        os.set_blocking(fd, True)
        stream = os.fdopen(fd, "w", buffering=1)
    if stream is None:
        stream = open("shim.log", "a", buffering=1)  # noqa: SIM115 (lives as long as the shim)
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="time=%(asctime)s level=%(levelname)s msg=%(message)s logger=%(name)s",
        stream=stream,
    )
    for noisy in ("hpack", "h2", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


async def serve(sock: socket.socket, namespace: str, address: str) -> None:
    settings = ShimSettings.from_env()
    reaper = Reaper()
    reaper.install()
    publisher = Publisher(os.environ.get("TTRPC_ADDRESS", address + ".ttrpc"), namespace)
    publisher.start()
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    ctx = ShimContext(namespace, address, settings, publisher, reaper, on_idle=done.set)
    service = TaskService(ctx)
    server = Server()
    server.register(SERVICE, service.methods())
    await server.start(sock)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, done.set)
    loop.add_signal_handler(signal.SIGPIPE, lambda: None)
    log.info("shim %d serving namespace %s on %s", os.getpid(), namespace, sock.getsockname())
    await done.wait()
    await asyncio.sleep(0.05)  # let the Shutdown response go out
    await publisher.drain()
    await server.close()
    service.close()
    await publisher.close()
    with contextlib.suppress(OSError):
        os.unlink(sock.getsockname())


def run(namespace: str, address: str, debug: bool) -> int:
    setup_logging(debug)
    try:
        linux.set_child_subreaper()
    except OSError as e:
        log.warning("cannot become a child subreaper: %s", e)
    fd = int(os.environ.pop(SOCKET_FD_ENV))
    sock = socket.socket(fileno=fd)
    Path("shim.pid").write_text(str(os.getpid()))
    try:
        asyncio.run(serve(sock, namespace, address))
    except Exception:
        log.exception("shim failed")
        return 1
    sys.stdout.flush()
    return 0
