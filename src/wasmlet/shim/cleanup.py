"""The shim v2 `delete` action: containerd's cleanup after a shim's connection closed.

containerd (1.7) runs `… -id ID -bundle B delete` whenever a task's shim connection closes,
and waits for it before it removes the task: after every normal shutdown too, when there is
nothing left to do. So the common case is made cheap — no state left in the bundle: print a
`DeleteResponse`, encoded by hand, having imported nothing — and a pause container handed to
containerd's runc shim is deleted by that shim's own `delete`.

Otherwise the node's shim died with no template to fork a successor for it (recover.py):
clean up what is left of the task — its process (the Wasm task, identified by pid and start
time, or `runc delete --force` for a Linux container), its cgroup, its root filesystem —,
publish `/tasks/oom` if the kernel OOM-killed in its cgroup, and answer exit status 137;
containerd publishes the exit.
"""

from __future__ import annotations

import os
import sys
import time

from .nodepaths import HANDOFF_FILE, STATE_FILE

KILLED = 128 + 9


def delete(task_id: str, bundle_dir: str, namespace: str = "") -> int:
    """Clean up after a dead shim; prints a serialized DeleteResponse on stdout."""
    handoff = os.path.join(bundle_dir, HANDOFF_FILE)
    if os.path.exists(handoff):
        with open(handoff) as f:
            runc_shim = f.read().strip()
        os.execv(runc_shim, [runc_shim, *sys.argv[1:]])
    pid = 0
    if os.path.exists(os.path.join(bundle_dir, STATE_FILE)):
        pid = _clean_up(task_id, bundle_dir, namespace)
    sys.stdout.buffer.write(delete_response(pid, KILLED, time.time()))
    sys.stdout.flush()
    return 0


def delete_response(pid: int, exit_status: int, exited_at: float) -> bytes:
    """containerd.task.v2.DeleteResponse{pid=1, exit_status=2, exited_at=3 (Timestamp)}."""
    seconds = int(exited_at)
    stamp = b"\x08" + _varint(seconds) + b"\x10" + _varint(int((exited_at - seconds) * 1e9))
    out = b"\x08" + _varint(pid) if pid else b""
    return out + b"\x10" + _varint(exit_status) + b"\x1a" + _varint(len(stamp)) + stamp


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _clean_up(task_id: str, bundle_dir: str, namespace: str) -> int:
    import contextlib
    import json
    import signal
    import subprocess
    from pathlib import Path
    from typing import Any

    from . import linux, rootfs
    from .cgroups import Cgroup

    bundle = Path(bundle_dir)
    state: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        state = json.loads((bundle / STATE_FILE).read_text())
    pid = int(state.get("pid") or 0)
    if state.get("runc"):
        subprocess.run(
            [*state["runc"], "delete", "--force", task_id], capture_output=True, check=False
        )
    elif pid and linux.start_time(pid) == state.get("start_time"):  # the same process
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if state.get("cgroup") and not state.get("runc"):
        cgroup = Cgroup(state["cgroup"])
        cgroup.kill_all()
        if cgroup.oom_kills() > 0:
            _publish_oom(task_id, namespace)
        cgroup.delete()
    mounted = state.get("rootfs") or str(bundle / "rootfs")
    if os.path.isdir(mounted):
        rootfs.unmount_all(Path(mounted))
    with contextlib.suppress(OSError):
        (bundle / STATE_FILE).unlink()
    return pid


def _publish_oom(task_id: str, namespace: str) -> None:
    """`/tasks/oom` before containerd publishes the exit, so the CRI reports OOMKilled."""
    import asyncio
    import contextlib

    from .events import Publisher
    from .proto import task_events_pb2

    address = os.environ.get("TTRPC_ADDRESS")
    if not address or not namespace:
        return

    async def publish() -> None:
        publisher = Publisher(address, namespace)
        publisher.start()
        publisher.publish(task_events_pb2.TaskOOM(container_id=task_id))
        await publisher.drain(5)
        await publisher.close()

    with contextlib.suppress(Exception):
        asyncio.run(publish())
