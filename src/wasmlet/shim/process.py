"""A task's process: the base the Task service drives, and a runc container (Linux programs).

A Wasm app is run by the shim's own process (appprocess.py); a Linux program by runc, from
the same bundle, with this process as the container's subreaper.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import logging
from pathlib import Path

from google.protobuf import any_pb2

from . import linux
from .cgroups import Cgroup, expand_path
from .reaper import Reaper
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

    @property
    def watches_oom(self) -> bool:
        """Whether the service polls the cgroup's OOM kills while the process runs (an OOM
        kill of the shim's own process is reported by its successor instead)."""
        return True

    def pids(self) -> list[int]:
        found = self.cgroup.pids() if self.cgroup is not None else []
        return found or ([self.pid] if self.running else [])

    def metrics(self) -> any_pb2.Any | None:
        return self.cgroup.metrics() if self.cgroup is not None else None

    def oom_kills(self) -> int:
        return self.cgroup.oom_kills() if self.cgroup is not None else 0

    def exit_reported(self, pid: int, code: int) -> None:
        """The template reaped `pid` (its child, or an orphan it adopted): ours, if it is
        our process and its exit is not known otherwise."""
        return None  # a process whose exit comes otherwise

    def state(self) -> dict[str, object]:
        """What `delete` needs to clean up after a dead shim (saved in the bundle)."""
        return {
            "pid": self.pid,
            "start_time": linux.start_time(self.pid) if self.pid else None,
            "cgroup": self.cgroup.path if self.cgroup else None,
        }


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

    def exit_reported(self, pid: int, code: int) -> None:
        """Its init's exit, from the template: it reaps it once our shim has died (a
        successor's containers) — while we live, the init is our child (the reaper)."""
        if pid == self.pid and self.exited is not None and not self.exited.done():
            self.exited.set_result(code)


def make_cgroup(spec: Spec, task_id: str) -> Cgroup | None:
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
