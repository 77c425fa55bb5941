"""The Task service (`containerd.task.v2.Task`) over the tasks of one shim.

The node's shim serves every container of its containerd namespace (daemon.py): a Wasm app
runs in a process of its own forked by the template (appprocess.py, runner.py), a Linux
program under runc. Implemented: Create, Start, Wait, Delete,
State, Pids, Kill, Connect, Shutdown, CloseIO, Stats. Pause, Resume, Checkpoint, Exec,
ResizePty and Update answer UNIMPLEMENTED (the ttrpc server's answer to a method it does not
serve).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import empty_pb2, timestamp_pb2

from .. import __version__
from . import appsource, precompile, rootfs
from .appprocess import AppProcess
from .appsource import AppNotFoundError, LinuxProgram
from .containerd import Containerd, ContainerdError
from .events import Publisher, now
from .image import ImageApp, ImageError, find_image_app
from .link import TemplateLink
from .process import ProcessError, RuncProcess, TaskProcess
from .proto import shim_pb2, task_events_pb2, task_types_pb2
from .reaper import Reaper
from .settings import STATE_FILE, ShimSettings
from .spec import Spec
from .stdio import Stdio
from .ttrpc import Code, Method, TtrpcError

log = logging.getLogger("wasmlet.shim.service")

SERVICE = "containerd.task.v2.Task"
Status = task_types_pb2.Status
OOM_POLL = 1.0  # seconds between looks at the task cgroup's OOM-kill count


@dataclass
class Task:
    id: str
    bundle: Path
    stdio: Stdio
    process: TaskProcess
    rootfs_mounted: Path | None
    status: int = Status.CREATED
    started: bool = False
    exit_status: int = 0
    exited_at: timestamp_pb2.Timestamp = field(default_factory=timestamp_pb2.Timestamp)
    watcher: asyncio.Task[None] | None = None
    stopped: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class ShimContext:
    namespace: str
    address: str  # containerd's gRPC socket
    settings: ShimSettings
    publisher: Publisher
    reaper: Reaper
    link: TemplateLink = field(default_factory=lambda: TemplateLink(None))
    on_idle: Callable[[], None] = lambda: None  # stops the shim


class TaskService:
    def __init__(self, ctx: ShimContext) -> None:
        self.ctx = ctx
        self.tasks: dict[str, Task] = {}
        self._containerd = Containerd(ctx.address, ctx.namespace) if ctx.address else None
        self._images: dict[str, asyncio.Task[tuple[ImageApp | None, list[str]]]] = {}
        ctx.link.on_exit = self.exit_reported
        ctx.link.on_coming = self.prefetch

    def prefetch(self, task_id: str) -> None:
        """Start finding out what the container runs (containerd's API: container, image,
        manifest, blobs; this node's artifacts) while containerd is on its way to Create
        (the template says a container is coming, at its `start`)."""
        if self._containerd is not None and task_id not in self._images:
            task = asyncio.create_task(self._resolve(task_id))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # seen at Create
            self._images[task_id] = task
            loop = asyncio.get_running_loop()
            loop.call_later(60, lambda: self._images.pop(task_id, None))  # never created

    async def _resolve(self, task_id: str) -> tuple[ImageApp | None, list[str]]:
        assert self._containerd is not None
        image = await find_image_app(self._containerd, task_id, self.ctx.settings.blobs)
        unlabelled: list[str] = []
        if image is not None:
            copied, unlabelled = await precompile.materialize(
                self._containerd, image.wasm_layers, self.ctx.settings.compile_cache
            )
            if copied:
                log.info("%s: %d precompiled artifacts from the content store", task_id, copied)
        return image, unlabelled

    def exit_reported(self, pid: int, code: int) -> None:
        """The template saw a process it forked (or adopted) exit."""
        for task in self.tasks.values():
            task.process.exit_reported(pid, code)

    def close(self) -> None:
        """Close the connection to containerd's API (the shim is exiting)."""
        if self._containerd is not None:
            self._containerd.close()

    def methods(self) -> dict[str, Method]:
        m = shim_pb2
        return {
            "Create": Method(m.CreateTaskRequest, self.create),
            "Start": Method(m.StartRequest, self.start),
            "Wait": Method(m.WaitRequest, self.wait),
            "Delete": Method(m.DeleteRequest, self.delete),
            "State": Method(m.StateRequest, self.state),
            "Pids": Method(m.PidsRequest, self.pids),
            "Kill": Method(m.KillRequest, self.kill),
            "Connect": Method(m.ConnectRequest, self.connect),
            "Shutdown": Method(m.ShutdownRequest, self.shutdown),
            "CloseIO": Method(m.CloseIORequest, self.close_io),
            "Stats": Method(m.StatsRequest, self.stats),
        }

    def _task(self, task_id: str, exec_id: str = "") -> Task:
        if exec_id:
            raise TtrpcError(Code.NOT_FOUND, f"exec {exec_id!r} not found (Exec is not supported)")
        task = self.tasks.get(task_id)
        if task is None:
            raise TtrpcError(Code.NOT_FOUND, f"task {task_id!r} not found")
        return task

    # -- Create / Start ------------------------------------------------------------------
    async def create(self, req: shim_pb2.CreateTaskRequest) -> shim_pb2.CreateTaskResponse:
        if req.id in self.tasks:
            raise TtrpcError(Code.ALREADY_EXISTS, f"task {req.id!r} already exists")
        if req.checkpoint:
            raise TtrpcError(Code.UNIMPLEMENTED, "restoring from a checkpoint is not supported")
        bundle = Path(req.bundle)
        stdio = Stdio(req.stdin, req.stdout, req.stderr, req.terminal)
        try:
            spec = Spec.read(bundle)
        except (OSError, ValueError) as e:
            raise TtrpcError(Code.INVALID_ARGUMENT, f"cannot read the bundle's spec: {e}") from e
        target = spec.rootfs(bundle)
        mounted = None
        if req.rootfs:
            try:
                rootfs.mount_all(list(req.rootfs), target)
            except OSError as e:
                raise TtrpcError(Code.INTERNAL, f"cannot mount the root filesystem: {e}") from e
            mounted = target
        try:
            process = await self._process(req.id, bundle, spec, stdio, target)
            pid = await process.create()
        except (AppNotFoundError, ImageError, ProcessError, ContainerdError, OSError) as e:
            if mounted is not None:
                rootfs.unmount_all(mounted)
            raise TtrpcError(Code.FAILED_PRECONDITION, f"wasmlet: {e}") from e
        task = Task(req.id, bundle, stdio, process, mounted)
        self.tasks[req.id] = task
        _save_state(task)
        task.watcher = asyncio.create_task(self._watch(task))
        self.ctx.publisher.publish(
            task_events_pb2.TaskCreate(
                container_id=req.id,
                bundle=req.bundle,
                rootfs=list(req.rootfs),
                io=task_events_pb2.TaskIO(
                    stdin=req.stdin, stdout=req.stdout, stderr=req.stderr, terminal=req.terminal
                ),
                pid=pid,
            )
        )
        return shim_pb2.CreateTaskResponse(pid=pid)

    async def _process(
        self, task_id: str, bundle: Path, spec: Spec, stdio: Stdio, target: Path
    ) -> TaskProcess:
        image: ImageApp | None = None
        unlabelled: list[str] = []
        prefetched = self._images.pop(task_id, None)
        if prefetched is not None:
            image, unlabelled = await prefetched
        elif self._containerd is not None:
            image, unlabelled = await self._resolve(task_id)
        app = await appsource.find_app(spec, target, image)
        log.info("%s: %s", task_id, appsource.describe(app))
        if isinstance(app, LinuxProgram):
            return RuncProcess(
                self.ctx.reaper, task_id, bundle, spec, stdio, self.ctx.settings,
                self.ctx.namespace,
            )  # fmt: skip
        return AppProcess(
            self.ctx.reaper, task_id, bundle, spec, stdio, app, self.ctx.settings,
            self._containerd, self.ctx.link, unlabelled,
        )  # fmt: skip

    async def start(self, req: shim_pb2.StartRequest) -> shim_pb2.StartResponse:
        task = self._task(req.id, req.exec_id)
        if task.started:
            raise TtrpcError(Code.FAILED_PRECONDITION, f"task {req.id!r} was already started")
        if task.status == Status.CREATED:
            try:
                await task.process.start()
            except ProcessError as e:
                raise TtrpcError(Code.FAILED_PRECONDITION, str(e)) from e
        task.started = True
        if task.status == Status.CREATED:
            task.status = Status.RUNNING
        self.ctx.publisher.publish(
            task_events_pb2.TaskStart(container_id=task.id, pid=task.process.pid)
        )
        if task.status == Status.STOPPED:  # it died while created (e.g. OOM): report it now
            self._publish_exit(task)
        return shim_pb2.StartResponse(pid=task.process.pid)

    async def _watch(self, task: Task) -> None:
        """Wait for the process to exit, publishing an OOM kill in its cgroup as it happens
        (polled every OOM_POLL seconds); then record and publish the exit."""
        exited = task.process.exited
        assert exited is not None
        seen = 0
        poll = OOM_POLL if task.process.watches_oom else None
        while True:
            done, _ = await asyncio.wait({exited}, timeout=poll)
            ooms = task.process.oom_kills()
            if ooms > seen:
                seen = ooms
                log.warning("%s: OOM kill in the task's cgroup", task.id)
                self.ctx.publisher.publish(task_events_pb2.TaskOOM(container_id=task.id))
            if done:
                break
        code = exited.result()
        task.exit_status = code
        task.exited_at = now()
        task.status = Status.STOPPED
        task.stopped.set()
        log.info("%s: exited with status %d", task.id, code)
        if task.started:  # else Start reports it, after /tasks/start
            self._publish_exit(task)

    def _publish_exit(self, task: Task) -> None:
        self.ctx.link.published(task.id)
        self.ctx.publisher.publish(
            task_events_pb2.TaskExit(
                container_id=task.id,
                id=task.id,
                pid=task.process.pid,
                exit_status=task.exit_status,
                exited_at=task.exited_at,
            )
        )

    # -- Wait / State / Pids / Stats -----------------------------------------------------
    async def wait(self, req: shim_pb2.WaitRequest) -> shim_pb2.WaitResponse:
        task = self._task(req.id, req.exec_id)
        await task.stopped.wait()
        return shim_pb2.WaitResponse(exit_status=task.exit_status, exited_at=task.exited_at)

    async def state(self, req: shim_pb2.StateRequest) -> shim_pb2.StateResponse:
        task = self._task(req.id, req.exec_id)
        return shim_pb2.StateResponse(
            id=task.id,
            bundle=str(task.bundle),
            pid=task.process.pid,
            status=task.status,
            stdin=task.stdio.stdin,
            stdout=task.stdio.stdout,
            stderr=task.stdio.stderr,
            terminal=task.stdio.terminal,
            exit_status=task.exit_status,
            exited_at=task.exited_at,
        )

    async def pids(self, req: shim_pb2.PidsRequest) -> shim_pb2.PidsResponse:
        task = self._task(req.id)
        return shim_pb2.PidsResponse(
            processes=[task_types_pb2.ProcessInfo(pid=p) for p in task.process.pids()]
        )

    async def stats(self, req: shim_pb2.StatsRequest) -> shim_pb2.StatsResponse:
        task = self._task(req.id)
        metrics = task.process.metrics()
        if metrics is None:
            raise TtrpcError(Code.NOT_FOUND, f"task {req.id!r} has no cgroup to measure")
        return shim_pb2.StatsResponse(stats=metrics)

    # -- Kill / CloseIO ------------------------------------------------------------------
    async def kill(self, req: shim_pb2.KillRequest) -> empty_pb2.Empty:
        task = self._task(req.id, req.exec_id)
        if task.status == Status.STOPPED:
            raise TtrpcError(Code.NOT_FOUND, f"task {req.id!r}: process already finished")
        signum = req.signal or signal.SIGTERM
        try:
            await task.process.kill(signum, req.all)
        except ProcessError as e:
            raise TtrpcError(Code.INTERNAL, str(e)) from e
        return empty_pb2.Empty()

    async def close_io(self, req: shim_pb2.CloseIORequest) -> empty_pb2.Empty:
        self._task(req.id, req.exec_id)  # stdin is never held open by the shim
        return empty_pb2.Empty()

    # -- Delete / Connect / Shutdown -----------------------------------------------------
    async def delete(self, req: shim_pb2.DeleteRequest) -> shim_pb2.DeleteResponse:
        task = self._task(req.id, req.exec_id)
        if task.status == Status.RUNNING:
            raise TtrpcError(Code.FAILED_PRECONDITION, f"task {req.id!r} is running; kill it first")
        await task.process.cleanup()
        if task.status == Status.CREATED:  # deleted before Start
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(task.stopped.wait(), 5)
        if task.rootfs_mounted is not None:
            rootfs.unmount_all(task.rootfs_mounted)
        with contextlib.suppress(OSError):
            (task.bundle / STATE_FILE).unlink()
        del self.tasks[task.id]
        self.ctx.publisher.publish(
            task_events_pb2.TaskDelete(
                container_id=task.id,
                id=task.id,
                pid=task.process.pid,
                exit_status=task.exit_status,
                exited_at=task.exited_at,
            )
        )
        return shim_pb2.DeleteResponse(
            pid=task.process.pid, exit_status=task.exit_status, exited_at=task.exited_at
        )

    async def connect(self, req: shim_pb2.ConnectRequest) -> shim_pb2.ConnectResponse:
        task = self.tasks.get(req.id)
        return shim_pb2.ConnectResponse(
            shim_pid=os.getpid(),
            task_pid=task.process.pid if task else 0,
            version=f"wasmlet {__version__}",
        )

    async def shutdown(self, req: shim_pb2.ShutdownRequest) -> empty_pb2.Empty:
        """containerd asks after each task it deleted: the node's shim stays, for the next
        containers the template sends here — unless the template is gone (a new one forks a
        shim of its own) and it has no task left."""
        if not self.tasks and not self.ctx.link.alive:
            self.ctx.on_idle()
        return empty_pb2.Empty()


def _save_state(task: Task) -> None:
    state = {
        "id": task.id,
        "kind": type(task.process).__name__,
        "rootfs": str(task.rootfs_mounted) if task.rootfs_mounted else None,
        **task.process.state(),
    }
    with contextlib.suppress(OSError):
        (task.bundle / STATE_FILE).write_text(json.dumps(state))
