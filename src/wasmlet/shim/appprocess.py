"""A Wasm task's process, as the shim drives it: forked by the template, or started.

At Create the shim makes the task's cgroup (with the spec's limits), has what this node has
not compiled yet compiled (once per node, by the template's compiler), and asks the template
to fork the task (runner.run_forked) with the container's stdout and stderr; with no
template, it starts `python -m wasmlet.shim.runner` instead, as before there was one. The
task reports on its status pipe ("ready", or the startup error), waits for a byte on its go
pipe (Start), serves, and reports its exit status before it exits.

An app with message triggers (Redis, MQTT, cron) says so on the pipe when ready, and Start then
waits until the task reports them subscribed (or it exits): containerd, and so the kubelet,
see the container running only once it consumes messages.

The exit status comes from the template, the task's parent (exact, signals included); with
no template, from the status pipe — a task killed outright cannot say, and is reported 137.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path

from ..engine import EngineSettings
from . import precompile
from .appsource import WasmApp
from .containerd import Containerd
from .image import blob_path
from .link import TemplateLink
from .process import ProcessError, TaskProcess, make_cgroup
from .reaper import Reaper
from .runnerconfig import GO_FD, STATUS_FD, Bind, RunnerConfig
from .settings import ShimSettings
from .spec import Spec
from .stdio import Stdio, close

log = logging.getLogger("wasmlet.shim.app")

EXIT_REPORT_WAIT = 2.0  # seconds to wait for the template's exit status after the pipe ends
SUBSCRIBE_SLACK = 5.0  # seconds Start waits past the task's own subscription deadline


class AppProcess(TaskProcess):
    def __init__(
        self,
        reaper: Reaper,
        task_id: str,
        bundle: Path,
        spec: Spec,
        stdio: Stdio,
        app: WasmApp,
        settings: ShimSettings,
        containerd: Containerd | None,
        link: TemplateLink,
        unlabelled: list[str] | None = None,  # Wasm layers no artifact is recorded on yet
    ) -> None:
        super().__init__(reaper, task_id, bundle, spec, stdio)
        self.app = app
        self.settings = settings
        self.containerd = containerd
        self.link = link
        self.work = bundle / "wasmlet"
        self.unlabelled = unlabelled or []
        self.harvest: asyncio.Task[int] | None = None
        self.go = -1  # the pipe Start writes to
        self.status = -1  # the pipe the task reports on
        self.reported: asyncio.Future[int] | None = None  # the exit status from the template
        self.subscribe: float | None = None  # seconds its message triggers have (None: none)
        self.subscribed: asyncio.Future[bool] | None = None  # they are (False: it gave up)
        self._watcher: asyncio.Task[None] | None = None

    @property
    def watches_oom(self) -> bool:
        return True

    # -- Create ------------------------------------------------------------------------------
    async def create(self) -> int:
        if self.stdio.terminal:
            raise ProcessError("a terminal (tty) is not supported for Wasm apps")
        self.work.mkdir(parents=True, exist_ok=True)
        self.cgroup = make_cgroup(self.spec, self.id)
        compiled = await self._compile()
        config = self._config()
        fds = self.stdio.open()
        loop = asyncio.get_running_loop()
        self.reported = loop.create_future()
        log.debug("%s: spawning", self.id)
        try:
            spawned = await self.link.spawn(self.id, config.to_dict(), fds[1], fds[2])
            if spawned is None:  # no template: a runner of its own, as a program
                self.pid, self.go, self.status = self._start_program(config, fds)
            else:
                self.pid, self.go, self.status = spawned
        finally:
            close(fds)
        self.exited = loop.create_future()
        log.debug("%s: spawned %d", self.id, self.pid)
        ready = await self.watch()
        log.debug("%s: ready %s", self.id, ready)
        if ready and self.unlabelled and not compiled and self.containerd is not None:
            self.harvest = asyncio.create_task(self._harvest())  # compiled by the task
        return self.pid

    def _start_program(self, config: RunnerConfig, fds: dict[int, int]) -> tuple[int, int, int]:
        path = self.work / "runner.json"
        path.write_text(json.dumps(config.to_dict()))
        go_r, go_w = os.pipe()
        status_r, status_w = os.pipe()
        null = os.open(os.devnull, os.O_RDONLY)
        try:
            pid = self.reaper.spawn(
                [sys.executable, "-m", "wasmlet.shim.runner", str(path)],
                {0: null, 1: fds[1], 2: fds[2], GO_FD: go_r, STATUS_FD: status_w},
            )
        finally:
            for fd in (go_r, status_w, null):
                os.close(fd)
        reaped = self.reaper.wait(pid)
        reaped.add_done_callback(lambda f: self.exit_reported(pid, f.result()))
        return pid, go_w, status_r

    async def _compile(self) -> bool:
        """The image's Wasm layers this node has no artifact for, compiled by the template
        (and recorded in the content store); False when there is none to ask (the task
        compiles them itself)."""
        image = self.app.image
        if image is None or not self.link.alive:
            return False
        fingerprint = EngineSettings().fingerprint()
        cache = self.settings.compile_cache
        missing = [
            (d, str(blob_path(self.settings.blobs, "wasm", d)))
            for d in image.wasm_layers
            if not precompile.artifact_path(cache, d, fingerprint).exists()
        ]
        if not missing:
            return False
        log.info("%s: compiling %d components for this node", self.id, len(missing))
        record = [d for d, _ in missing if d in self.unlabelled]
        harvest = (self.containerd.path, self.containerd.namespace, record) if (
            record and self.containerd is not None) else None  # fmt: skip
        return await self.link.compile(missing, cache, harvest)

    def _config(self) -> RunnerConfig:
        namespaces = self.spec.namespaces
        netns = namespaces.get("network") if "network" in namespaces else None
        image = self.app.image
        return RunnerConfig(
            container_id=self.id,
            rootfs=str(self.spec.rootfs(self.bundle)),
            work=str(self.work),
            cache_dir=str(self.settings.compile_cache),
            blobs=str(self.settings.blobs),
            image=image.name if image else None,
            image_config=image.config.to_json() if image else None,
            image_layers=[b.to_json() for b in image.layers] if image else [],
            manifest=str(self.app.manifest) if self.app.manifest else None,
            wasm=str(self.app.wasm) if self.app.wasm else None,
            env=self.spec.env,
            netns=netns,
            new_netns="network" in namespaces and netns is None,
            binds=[
                Bind(m.source, m.destination, m.readonly) for m in self.spec.mounts if m.is_bind
            ],
            cgroup_procs=[
                str(d / "cgroup.procs") for d in (self.cgroup.dirs.values() if self.cgroup else [])
            ],
        )

    async def _harvest(self) -> int:
        assert self.containerd is not None
        try:
            return await precompile.harvest_layers(self.containerd, self.unlabelled,
                                                   self.settings.compile_cache)  # fmt: skip
        except Exception as e:
            log.warning("%s: cannot store precompiled artifacts: %s", self.id, e)
            return 0

    # -- the status pipe and the exit ----------------------------------------------------------
    async def watch(self) -> bool:
        """Read the task's status pipe: whether it got ready (True) or reported a startup
        error; then, in the background, its exit."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(self.status, "rb", 0)
        )
        line = await reader.readline()
        said = json.loads(line) if line else {}
        ready = said.get("ok") is True
        if ready and said.get("subscribe") is not None:
            self.subscribe = float(said["subscribe"])
            self.subscribed = loop.create_future()
        self._watcher = asyncio.create_task(self._until_exit(reader))
        return ready

    async def _until_exit(self, reader: asyncio.StreamReader) -> None:
        said: int | None = None
        while line := await reader.readline():
            report = json.loads(line)
            said = report.get("exit", said)
            if "subscribed" in report:
                self._subscription(bool(report["subscribed"]))
        self._subscription(False)  # (exited first)
        assert self.reported is not None
        if self.link.alive or self.reported.done():  # the template knows how it ended
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.reported), EXIT_REPORT_WAIT)
        code = self.reported.result() if self.reported.done() else (
            said if said is not None else 128 + signal.SIGKILL)  # fmt: skip
        if self.exited is not None and not self.exited.done():
            self.exited.set_result(code)

    def _subscription(self, done: bool) -> None:
        if self.subscribed is not None and not self.subscribed.done():
            self.subscribed.set_result(done)

    def exit_reported(self, pid: int, code: int) -> None:
        if pid == self.pid and self.reported is not None and not self.reported.done():
            self.reported.set_result(code)

    # -- Start / Kill / cleanup ------------------------------------------------------------------
    async def start(self) -> None:
        if self.go < 0:
            raise ProcessError("already started")
        try:
            os.write(self.go, b"g")
        except BrokenPipeError:
            pass  # it died while created (e.g. OOM-killed): the exit is reported as usual
        finally:
            os.close(self.go)
            self.go = -1
        if self.subscribed is not None and self.subscribe is not None:
            await self._until_subscribed(self.subscribed, self.subscribe)

    async def _until_subscribed(self, subscribed: asyncio.Future[bool], seconds: float) -> None:
        """Until the task's message triggers are subscribed, or it gave up and exits (its
        exit, status 1 and the reason on its stderr, follows as any other)."""
        log.debug("%s: waiting for its message triggers to subscribe", self.id)
        try:
            done = await asyncio.wait_for(asyncio.shield(subscribed), seconds + SUBSCRIBE_SLACK)
        except TimeoutError:  # it should have exited by now: its exit will say
            log.warning("%s: its message triggers are not subscribed after %g s", self.id,
                        seconds + SUBSCRIBE_SLACK)  # fmt: skip
            return
        log.debug("%s: message triggers %s", self.id, "subscribed" if done else "not subscribed")

    async def kill(self, signum: int, all_processes: bool) -> None:
        if all_processes and self.cgroup is not None:
            self.cgroup.kill_all(signum)
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    async def cleanup(self) -> None:
        if self.go >= 0:  # never started: the task exits when the pipe closes
            os.close(self.go)
            self.go = -1
        if self.running:
            await self.kill(signal.SIGKILL, True)
            assert self.exited is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.exited), 5)
        if self.harvest is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.harvest), 30)
        if self.cgroup is not None:
            self.cgroup.delete()
