"""The successor of the node's shim: it takes over the containers of one that died.

The template forks it when the shim exits without having been stopped (killed, OOM-killed,
crashed). It is given what the template kept (records.py): the shim's listening socket and
accepted connections (containerd never saw them close), the calls the shim was handling,
and each created task — its Create request, whether it was started, the pid and pipes of the
Wasm task the template forked, its exit status if it has one. With the bundles' state files
it rebuilds the Task service's view of every task, running or not: a Wasm task is still the
template's child (its exit is reported as before), a runc container's init, which was the
shim's child, has been reparented to the template (ditto). Then it answers the pending calls
from their recorded requests and serves on as the shim.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError

from . import linux
from .appprocess import AppProcess
from .appsource import WasmApp
from .cgroups import Cgroup
from .daemon import run_shim
from .process import RuncProcess, TaskProcess
from .proto import shim_pb2, task_types_pb2, ttrpc_pb2
from .service import Task, TaskService
from .settings import STATE_FILE
from .spec import Spec
from .stdio import Stdio
from .ttrpc import Server

log = logging.getLogger("wasmlet.shim.recover")
Status = task_types_pb2.Status


def run_successor(
    listen: socket.socket, channel: socket.socket, request: dict[str, Any], state: dict[str, Any]
) -> int:
    async def prepare(service: TaskService, server: Server) -> None:
        for task_id, record in state["tasks"].items():
            try:
                task = adopt(service, task_id, record)
            except (DecodeError, OSError, ValueError, KeyError) as e:
                log.warning("%s: cannot take the task over: %s", task_id, e)
                continue
            service.tasks[task_id] = task
            if task.status != Status.STOPPED:
                task.watcher = asyncio.create_task(service._watch(task))
            elif task.started and not record["published"]:
                service._publish_exit(task)
        for conn, fd in state["conns"]:
            pending = [(stream, env) for c, stream, _, env in state["pending"] if c == conn]
            await server.adopt(socket.socket(fileno=fd), conn, pending)
        log.info("successor %d took over %d tasks and %d connections", os.getpid(),
                 len(service.tasks), len(state["conns"]))  # fmt: skip

    return run_shim(listen, channel, request, prepare)


def adopt(service: TaskService, task_id: str, record: dict[str, Any]) -> Task:
    """The Task of a created task, from its Create request, its bundle and the template's
    record: its process running (its exit to come), or exited."""
    ctx = service.ctx
    envelope = ttrpc_pb2.Request.FromString(record["create"])
    req = shim_pb2.CreateTaskRequest.FromString(envelope.payload)
    bundle = Path(req.bundle)
    spec = Spec.read(bundle)
    saved = json.loads((bundle / STATE_FILE).read_text())
    stdio = Stdio(req.stdin, req.stdout, req.stderr, req.terminal)
    loop = asyncio.get_running_loop()
    process: TaskProcess
    if saved.get("runc"):
        process = RuncProcess(ctx.reaper, task_id, bundle, spec, stdio, ctx.settings,
                              ctx.namespace)  # fmt: skip
        process.pid = int(saved["pid"])
        process.exited = loop.create_future()
        if linux.start_time(process.pid) != saved.get("start_time"):  # gone unnoticed
            process.exited.set_result(128 + 9)
    else:
        process = AppProcess(ctx.reaper, task_id, bundle, spec, stdio, WasmApp(),
                             ctx.settings, None, ctx.link)  # fmt: skip
        process.pid = int(record["pid"] or saved["pid"])
        process.exited = loop.create_future()
        process.reported = loop.create_future()
        if record["exit"] is not None:
            process.reported.set_result(record["exit"])
        if record["started"] and record["go"] >= 0:
            os.close(record["go"])
        else:
            process.go = record["go"]
        process.status = record["status"]
        if process.status >= 0:
            process._watcher = asyncio.create_task(_follow(process))  # (a reference kept)
        elif record["exit"] is not None:
            process.exited.set_result(record["exit"])
    if saved.get("cgroup"):
        process.cgroup = Cgroup(saved["cgroup"])
    target = spec.rootfs(bundle)
    mounted = target if linux.is_mountpoint(os.path.realpath(target)) else None
    task = Task(task_id, bundle, stdio, process, mounted)
    task.started = bool(record["started"])
    task.status = Status.RUNNING if task.started else Status.CREATED
    if process.exited.done():
        task.status = Status.STOPPED
        task.exit_status = process.exited.result()
        task.stopped.set()
    return task


async def _follow(process: AppProcess) -> None:
    """The rest of the task's status pipe, to its end (its exit)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(process.status, "rb", 0)
    )
    with contextlib.suppress(Exception):
        await process._until_exit(reader)
