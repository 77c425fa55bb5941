"""A task's main process: a wasmlet runner (Wasm apps) or a runc container (Linux programs)."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path

from google.protobuf import any_pb2

from . import precompile
from .appsource import WasmApp
from .cgroups import Cgroup, expand_path
from .containerd import Containerd
from .reaper import Reaper
from .runnerconfig import GO_FD, READY_FD, Bind, RunnerConfig
from .settings import ShimSettings
from .spec import Spec
from .stdio import Stdio, close

log = logging.getLogger("wasmlet.shim.process")


class ProcessError(Exception):
    pass


class TaskProcess(abc.ABC):
    def __init__(self, reaper: Reaper, task_id: str, bundle: Path, spec: Spec, stdio: Stdio):
        self.reaper = reaper
        self.id = task_id
        self.bundle = bundle
        self.spec = spec
        self.stdio = stdio
        self.pid = 0
        self.exited: asyncio.Future[int] | None = None
        self.cgroup: Cgroup | None = None

    @abc.abstractmethod
    async def create(self) -> int: ...

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def kill(self, signum: int, all_processes: bool) -> None: ...

    @abc.abstractmethod
    async def cleanup(self) -> None: ...

    @property
    def running(self) -> bool:
        return self.exited is not None and not self.exited.done()

    def pids(self) -> list[int]:
        found = self.cgroup.pids() if self.cgroup is not None else []
        return found or ([self.pid] if self.running else [])

    def metrics(self) -> any_pb2.Any | None:
        return self.cgroup.metrics() if self.cgroup is not None else None

    def oom_kills(self) -> int:
        return self.cgroup.oom_kills() if self.cgroup is not None else 0

    def state(self) -> dict[str, object]:
        """What `delete` needs to clean up after a dead shim (saved in the bundle)."""
        return {"pid": self.pid, "cgroup": self.cgroup.path if self.cgroup else None}


class WasmProcess(TaskProcess):
    """`python -m wasmlet.shim.runner`: prepared at Create, released at Start."""

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
    ) -> None:
        super().__init__(reaper, task_id, bundle, spec, stdio)
        self.app = app
        self.settings = settings
        self.containerd = containerd
        self.work = bundle / "wasmlet"
        self.cache_dir = self.work / "cache" if app.image else settings.compile_cache
        self._go: int | None = None
        self.harvest: asyncio.Task[int] | None = None

    async def create(self) -> int:
        if self.stdio.terminal:
            raise ProcessError("a terminal (tty) is not supported for Wasm apps")
        self.work.mkdir(parents=True, exist_ok=True)
        if self.app.image and self.containerd is not None:
            found = await precompile.materialize(
                self.containerd, self.app.wasm_layers, self.cache_dir
            )
            log.info("%s: %d precompiled artifacts from the content store", self.id, found)
        self.cgroup = _make_cgroup(self.spec, self.id)
        config = self._runner_config()
        config_path = self.work / "runner.json"
        config.write(config_path)
        go_read, self._go = os.pipe()
        ready_read, ready_write = os.pipe()
        fds = self.stdio.open()
        null = os.open(os.devnull, os.O_RDONLY)
        try:
            self.pid = self.reaper.spawn(
                [sys.executable, "-m", "wasmlet.shim.runner", str(config_path)],
                {0: null, 1: fds[1], 2: fds[2], GO_FD: go_read, READY_FD: ready_write},
                env=_runner_env(),
            )
        finally:
            for fd in (go_read, ready_write, null):
                os.close(fd)
            close(fds)
        self.exited = self.reaper.wait(self.pid)
        try:
            report = await asyncio.to_thread(_read_line, ready_read)
        finally:
            os.close(ready_read)
        if report.get("ok") and self.app.image and self.containerd is not None:
            self.harvest = asyncio.create_task(self._harvest())
        return self.pid

    def _runner_config(self) -> RunnerConfig:
        namespaces = self.spec.namespaces
        netns = namespaces.get("network") if "network" in namespaces else None
        rootfs = self.spec.rootfs(self.bundle)
        image = self.app.image
        return RunnerConfig(
            container_id=self.id,
            rootfs=str(rootfs),
            work=str(self.work),
            cache_dir=str(self.cache_dir),
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
            return await precompile.harvest(self.containerd, self.app.wasm_layers, self.cache_dir)
        except Exception as e:
            log.warning("%s: cannot store precompiled artifacts: %s", self.id, e)
            return 0

    async def start(self) -> None:
        if self._go is None:
            raise ProcessError("already started")
        try:
            os.write(self._go, b"g")
        except BrokenPipeError:
            pass  # it died while created (e.g. OOM-killed): the exit is reported as usual
        finally:
            os.close(self._go)
            self._go = None

    async def kill(self, signum: int, all_processes: bool) -> None:
        if all_processes and self.cgroup is not None:
            self.cgroup.kill_all(signum)
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    async def cleanup(self) -> None:
        if self._go is not None:  # never started: the runner exits when the pipe closes
            os.close(self._go)
            self._go = None
        if self.running:
            await self.kill(signal.SIGKILL, True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.exited), 5)  # type: ignore[arg-type]
        if self.harvest is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.harvest), 30)
        if self.cgroup is not None:
            self.cgroup.delete()


class RuncProcess(TaskProcess):
    """An ordinary container, created and started by runc from the same bundle."""

    def __init__(
        self,
        reaper: Reaper,
        task_id: str,
        bundle: Path,
        spec: Spec,
        stdio: Stdio,
        settings: ShimSettings,
        namespace: str,
    ) -> None:
        super().__init__(reaper, task_id, bundle, spec, stdio)
        self.runc = settings.runc
        self.root = settings.runc_root(namespace)

    def _argv(self, *args: str) -> list[str]:
        argv = [self.runc, "--root", str(self.root), "--log", str(self.bundle / "runc.log")]
        argv += ["--log-format", "json"]
        if _systemd_cgroup(self.spec.cgroups_path):
            argv.append("--systemd-cgroup")
        return [*argv, *args]

    async def create(self) -> int:
        if self.stdio.terminal:
            raise ProcessError("a terminal (tty) is not supported by the wasmlet shim")
        self.root.mkdir(parents=True, exist_ok=True)
        pid_file = self.bundle / "init.pid"
        argv = self._argv("create", "--bundle", str(self.bundle), "--pid-file", str(pid_file))
        fds = self.stdio.open()
        try:
            runc = self.reaper.spawn([*argv, self.id], fds)
        finally:
            close(fds)
        code = await self.reaper.wait(runc)
        if code != 0:
            raise ProcessError(f"runc create failed: {_last_runc_error(self.bundle)}")
        self.pid = int(pid_file.read_text().strip())
        self.exited = self.reaper.wait(self.pid)
        self.cgroup = Cgroup(expand_path(self.spec.cgroups_path, self.id))
        return self.pid

    async def start(self) -> None:
        code, output = await self.reaper.run(self._argv("start", self.id))
        if code != 0:
            raise ProcessError(f"runc start failed: {output or _last_runc_error(self.bundle)}")

    async def kill(self, signum: int, all_processes: bool) -> None:
        args = ["kill", *(["--all"] if all_processes else []), self.id, str(signum)]
        code, output = await self.reaper.run(self._argv(*args))
        if code != 0 and self.running:
            raise ProcessError(f"runc kill failed: {output or _last_runc_error(self.bundle)}")

    async def cleanup(self) -> None:
        code, output = await self.reaper.run(self._argv("delete", "--force", self.id))
        if code != 0 and "does not exist" not in output:
            log.warning("%s: runc delete: %s", self.id, output)

    def state(self) -> dict[str, object]:
        return {**super().state(), "runc": self._argv()}


def _make_cgroup(spec: Spec, task_id: str) -> Cgroup | None:
    cgroup = Cgroup(expand_path(spec.cgroups_path, task_id))
    try:
        cgroup.create()
    except OSError as e:
        log.warning("%s: no cgroup (%s): no limits, no metrics", task_id, e)
        return None
    cgroup.apply(spec.resources)
    return cgroup


def _systemd_cgroup(path: str) -> bool:
    return len(path.split(":")) == 3 and not path.startswith("/")


def _runner_env() -> dict[str, str]:
    """The runner's own start environment (the container's is applied inside it)."""
    keep = ("PATH", "PYTHONPATH", "VIRTUAL_ENV", "LANG", "LC_ALL", "WASMLET_LOG_LEVEL")
    return {k: os.environ[k] for k in keep if k in os.environ}


def _read_line(fd: int) -> dict[str, object]:
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    try:
        value = json.loads(data)
    except ValueError:
        return {"ok": False, "error": "the runner exited during startup"}
    return value if isinstance(value, dict) else {"ok": False}


def _last_runc_error(bundle: Path) -> str:
    try:
        lines = (bundle / "runc.log").read_text().splitlines()
    except OSError:
        return "no runc log"
    for line in reversed(lines):
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry.get("level") in ("error", "fatal"):
                return str(entry.get("msg"))
    return lines[-1] if lines else "no runc log"
