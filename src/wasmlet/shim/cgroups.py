"""The task's cgroup (v1 or v2): placement, limits from the spec, kill-all, metrics, OOMs.

The path comes from the spec's `linux.cgroupsPath`: a cgroupfs path (`/default/<id>`,
`/kubepods/burstable/pod<uid>/<id>`) or systemd's `slice:prefix:name` form, which is
expanded the way runc expands it. Metrics are containerd's `io.containerd.cgroups.v1/v2
.Metrics`, so `ctr task metrics` and the CRI (kubelet, metrics-server, HPA) read them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from pathlib import Path
from typing import Any

from google.protobuf import any_pb2

from .proto import cgroups_v1_metrics_pb2 as v1
from .proto import cgroups_v2_metrics_pb2 as v2
from .typeurl import pack

log = logging.getLogger("wasmlet.shim.cgroups")

ROOT = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids")
_V1_STAT_NAMES = {"pgpgin": "pg_pg_in", "pgpgout": "pg_pg_out", "pgfault": "pg_fault",
                  "pgmajfault": "pg_maj_fault"}  # fmt: skip


def unified(root: Path = ROOT) -> bool:
    return (root / "cgroup.controllers").exists()


def expand_path(cgroups_path: str, container_id: str) -> str:
    """A cgroupfs path (relative to the hierarchy root) for a spec's cgroupsPath."""
    if not cgroups_path:
        return f"/wasmlet/{container_id}"
    parts = cgroups_path.split(":")
    if len(parts) == 3 and not cgroups_path.startswith("/"):
        slice_name, prefix, name = parts
        scope = f"{prefix}-{name}.scope" if prefix else name
        return _expand_slice(slice_name or "system.slice") + "/" + scope
    return cgroups_path if cgroups_path.startswith("/") else "/" + cgroups_path


def _expand_slice(slice_name: str) -> str:
    """`a-b-c.slice` -> `/a.slice/a-b.slice/a-b-c.slice` (systemd's slice nesting)."""
    if slice_name == "-.slice":
        return ""
    base = slice_name.removesuffix(".slice")
    path, prefix = "", ""
    for part in base.split("-"):
        prefix = f"{prefix}-{part}" if prefix else part
        path += f"/{prefix}.slice"
    return path


class Cgroup:
    def __init__(self, path: str, root: Path = ROOT) -> None:
        self.path = path
        self.root = root
        self.v2 = unified(root)
        if self.v2:
            self.dirs = {"": root / path.lstrip("/")}
        else:
            self.dirs = {
                c: root / c / path.lstrip("/") for c in V1_CONTROLLERS if (root / c).is_dir()
            }

    # -- life cycle ----------------------------------------------------------------------
    def create(self) -> None:
        if self.v2:
            self._enable_controllers()
        for d in self.dirs.values():
            d.mkdir(parents=True, exist_ok=True)

    def _enable_controllers(self) -> None:
        """Delegate memory/cpu/pids down to the task's cgroup (v2), best effort."""
        current = self.root
        for part in Path(self.path.lstrip("/")).parts:
            with contextlib.suppress(OSError):
                available = (current / "cgroup.controllers").read_text().split()
                wanted = [f"+{c}" for c in ("memory", "cpu", "pids") if c in available]
                if wanted:
                    (current / "cgroup.subtree_control").write_text(" ".join(wanted))
            current = current / part
            current.mkdir(exist_ok=True)

    def add(self, pid: int) -> None:
        for d in self.dirs.values():
            (d / "cgroup.procs").write_text(str(pid))

    def apply(self, resources: dict[str, Any]) -> None:
        """Memory, CPU and pids limits from the spec's `linux.resources` (best effort)."""
        memory = resources.get("memory") or {}
        cpu = resources.get("cpu") or {}
        pids = resources.get("pids") or {}
        if self.v2:
            d = self.dirs[""]
            self._write(d / "memory.max", memory.get("limit"), lambda v: str(v) if v > 0 else "max")
            quota = cpu.get("quota")
            if quota and quota > 0:
                self._write(d / "cpu.max", f"{cpu['quota']} {cpu.get('period') or 100000}")
            if cpu.get("shares"):
                weight = 1 + ((int(cpu["shares"]) - 2) * 9999) // 262142
                self._write(d / "cpu.weight", max(1, min(10000, weight)))
            self._write(d / "pids.max", pids.get("limit"), lambda v: str(v) if v > 0 else "max")
            return
        if "memory" in self.dirs and memory.get("limit"):
            self._write(self.dirs["memory"] / "memory.limit_in_bytes", memory["limit"])
        if "cpu" in self.dirs:
            self._write(self.dirs["cpu"] / "cpu.shares", cpu.get("shares"))
            self._write(self.dirs["cpu"] / "cpu.cfs_period_us", cpu.get("period"))
            self._write(self.dirs["cpu"] / "cpu.cfs_quota_us", cpu.get("quota"))
        if "pids" in self.dirs and pids.get("limit"):
            self._write(self.dirs["pids"] / "pids.max", pids["limit"])

    @staticmethod
    def _write(path: Path, value: Any, fmt: Any = str) -> None:
        if value is None:
            return
        try:
            path.write_text(fmt(value))
        except OSError as e:
            log.warning("cannot set %s: %s", path, e)

    def pids(self) -> list[int]:
        d = self.dirs.get("") if self.v2 else self.dirs.get("pids", self.dirs.get("memory"))
        if d is None:
            return []
        try:
            return [int(x) for x in (d / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def kill_all(self, signum: int = signal.SIGKILL) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def delete(self) -> None:
        for d in self.dirs.values():
            with contextlib.suppress(OSError):
                d.rmdir()

    # -- observation ---------------------------------------------------------------------
    def oom_kills(self) -> int:
        path = (
            self.dirs[""] / "memory.events" if self.v2 else self.dirs.get("memory", Path("/-"))
            / "memory.oom_control"
        )  # fmt: skip
        return _flat_keyed(path).get("oom_kill", 0)

    def metrics(self) -> any_pb2.Any:
        return pack(self._metrics_v2() if self.v2 else self._metrics_v1())

    def _metrics_v1(self) -> v1.Metrics:
        m = v1.Metrics()
        if "pids" in self.dirs:
            d = self.dirs["pids"]
            m.pids.current = _int(d / "pids.current")
            m.pids.limit = _int(d / "pids.max")
        if "cpuacct" in self.dirs:
            d = self.dirs["cpuacct"]
            m.cpu.usage.total = _int(d / "cpuacct.usage")
            stat = _flat_keyed(d / "cpuacct.stat")
            tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
            m.cpu.usage.user = stat.get("user", 0) * tick
            m.cpu.usage.kernel = stat.get("system", 0) * tick
            with contextlib.suppress(OSError, ValueError):
                m.cpu.usage.per_cpu.extend(
                    int(x) for x in (d / "cpuacct.usage_percpu").read_text().split()
                )
        if "memory" in self.dirs:
            d = self.dirs["memory"]
            fields = v1.MemoryStat.DESCRIPTOR.fields_by_name
            for key, value in _flat_keyed(d / "memory.stat").items():
                name = _V1_STAT_NAMES.get(key.removeprefix("total_"), key.removeprefix("total_"))
                name = f"total_{name}" if key.startswith("total_") else name
                if name in fields and fields[name].message_type is None:
                    setattr(m.memory, name, value)
            for entry, prefix in ((m.memory.usage, "memory."), (m.memory.kernel, "memory.kmem.")):
                entry.usage = _int(d / f"{prefix}usage_in_bytes")
                entry.limit = _int(d / f"{prefix}limit_in_bytes")
                entry.max = _int(d / f"{prefix}max_usage_in_bytes")
                entry.failcnt = _int(d / f"{prefix}failcnt")
        return m

    def _metrics_v2(self) -> v2.Metrics:
        m = v2.Metrics()
        d = self.dirs[""]
        m.pids.current = _int(d / "pids.current")
        m.pids.limit = _int(d / "pids.max")
        cpu = _flat_keyed(d / "cpu.stat")
        for key in ("usage_usec", "user_usec", "system_usec", "nr_periods", "nr_throttled",
                    "throttled_usec"):  # fmt: skip
            setattr(m.cpu, key, cpu.get(key, 0))
        fields = v2.MemoryStat.DESCRIPTOR.fields_by_name
        for key, value in _flat_keyed(d / "memory.stat").items():
            if key in fields and fields[key].message_type is None:
                setattr(m.memory, key, value)
        m.memory.usage = _int(d / "memory.current")
        m.memory.usage_limit = _int(d / "memory.max")
        m.memory.swap_usage = _int(d / "memory.swap.current")
        m.memory.swap_limit = _int(d / "memory.swap.max")
        events = _flat_keyed(d / "memory.events")
        for key in ("low", "high", "max", "oom", "oom_kill"):
            setattr(m.memory_events, key, events.get(key, 0))
        return m


def _int(path: Path) -> int:
    try:
        text = path.read_text().strip()
    except OSError:
        return 0
    if text == "max":
        return 0
    try:
        return max(0, int(text))
    except ValueError:
        return 0


def _flat_keyed(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            out[key] = int(value.strip())
    return out
