"""The node's shim: the Task service for every container of one containerd namespace.

Forked by the template at the first `start` for that containerd and namespace (one process,
where there was one Python daemon per pod); it serves each container's ttrpc connection on
one socket, on an asyncio loop, in the node's namespaces. Wasm tasks run in processes the
template forks for it (appprocess.py); Linux programs under runc, this process being their
subreaper. It tells the template about its connections, calls and tasks (link.py), so that
if it dies a successor takes its place (recover.py) and containerd does not notice. It logs
where the template does (a file beside the template's socket), and stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from typing import Any

from . import linux
from .events import Publisher
from .link import TemplateLink
from .reaper import Reaper
from .service import SERVICE, ShimContext, TaskService
from .settings import ShimSettings
from .ttrpc import Server

log = logging.getLogger("wasmlet.shim")

Prepare = Any  # a callable(TaskService, Server) -> awaitable, run before serving


def run_shim(
    listen: socket.socket,
    channel: socket.socket | None,
    request: dict[str, Any],
    prepare: Prepare | None = None,
) -> int:
    """The shim's life, from the template's fork until SIGTERM."""
    os.chdir("/")
    os.environ.clear()
    os.environ.update(request["env"])
    if request.get("debug"):
        logging.getLogger("wasmlet.shim").setLevel(logging.DEBUG)
    try:
        linux.set_child_subreaper()  # a runc container's init becomes our child
    except OSError as e:
        log.warning("cannot become a child subreaper: %s", e)
    try:
        asyncio.run(serve(listen, TemplateLink(channel), request, prepare))
    except Exception:
        log.exception("shim failed")
        return 1
    return 0


async def serve(
    listen: socket.socket,
    link: TemplateLink,
    request: dict[str, Any],
    prepare: Prepare | None = None,
) -> None:
    namespace, address = request["namespace"], request["address"]
    reaper = Reaper()
    reaper.install()
    publisher = Publisher(os.environ.get("TTRPC_ADDRESS", address + ".ttrpc"), namespace)
    publisher.start()
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    ctx = ShimContext(namespace, address, ShimSettings.from_env(), publisher, reaper, link)
    ctx.on_idle = done.set
    service = TaskService(ctx)
    link.start()
    server = Server(observer=link)
    server.register(SERVICE, service.methods())
    if prepare is not None:
        await prepare(service, server)
    await server.start(listen)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, done.set)
    loop.add_signal_handler(signal.SIGPIPE, lambda: None)
    log.info("shim %d serving namespace %s on %s", os.getpid(), namespace, listen.getsockname())
    await done.wait()
    await asyncio.sleep(0.05)  # let a Shutdown's answer go out
    link.bye()
    await publisher.drain()
    await server.close()
    service.close()
    await publisher.close()
    link.close()
    with contextlib.suppress(OSError):
        os.unlink(listen.getsockname())
