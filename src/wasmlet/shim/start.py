"""The shim v2 `start` and `delete` commands (containerd's runtime/v2 binary protocol).

`start` runs with the bundle as working directory: it binds the shim's unix socket, starts
the daemon (a copy of this program holding the listening socket, detached from containerd's
pipes), writes the `address` file (how containerd reconnects after a restart), prints the
address and exits. Containers of one Kubernetes pod share a shim: a second container of the
sandbox finds the socket already served and gets its address.

`delete` cleans up after a shim that died: kills what is left of the task, unmounts its
root filesystem and prints a `DeleteResponse` (exit status 137).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from .settings import SOCKET_FD_ENV, STATE_FILE, ShimSettings
from .spec import Spec


def socket_path(settings: ShimSettings, address: str, namespace: str, group: str) -> Path:
    key = hashlib.sha256(f"{address}\0{namespace}\0{group}".encode()).hexdigest()[:32]
    return settings.socket_dir / key


def _serving(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


def start(task_id: str, namespace: str, address: str, publish_binary: str, debug: bool) -> int:
    settings = ShimSettings.from_env()
    bundle = Path.cwd()
    group = task_id
    with contextlib.suppress(OSError, ValueError):
        group = Spec.read(bundle).sandbox_id or task_id
    path = socket_path(settings, address, namespace, group)
    uri = f"unix://{path}"
    if group != task_id and path.exists() and _serving(path):
        (bundle / "address").write_text(uri)
        print(uri, end="")
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(64)
    sock.set_inheritable(True)
    argv = [sys.executable, "-m", "wasmlet.shim.main", "-namespace", namespace, "-id", task_id]
    argv += ["-address", address, "-publish-binary", publish_binary]
    argv += ["-debug"] if debug else []
    env = {**os.environ, SOCKET_FD_ENV: str(sock.fileno())}
    try:
        subprocess.Popen(
            argv,
            cwd=bundle,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(sock.fileno(),),
            start_new_session=True,
        )
    except OSError as e:
        print(f"cannot start the shim daemon: {e}", file=sys.stderr)
        return 1
    finally:
        sock.close()
    (bundle / "address").write_text(uri)
    print(uri, end="")
    return 0


def delete(task_id: str, bundle: Path) -> int:
    """Clean up after a dead shim; prints a serialized DeleteResponse on stdout."""
    from . import rootfs
    from .cgroups import Cgroup
    from .events import now
    from .proto import shim_pb2

    state: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        state = json.loads((bundle / STATE_FILE).read_text())
    pid = int(state.get("pid") or 0)
    if state.get("runc"):
        subprocess.run(
            [*state["runc"], "delete", "--force", task_id], capture_output=True, check=False
        )
    elif pid and _is_ours(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if state.get("cgroup") and state.get("kind") == "WasmProcess":
        cgroup = Cgroup(state["cgroup"])
        cgroup.kill_all()
        cgroup.delete()
    mounted = state.get("rootfs") or str(bundle / "rootfs")
    if os.path.isdir(mounted):
        rootfs.unmount_all(Path(mounted))
    with contextlib.suppress(OSError):
        (bundle / STATE_FILE).unlink()
    response = shim_pb2.DeleteResponse(pid=pid, exit_status=128 + 9, exited_at=now())
    sys.stdout.buffer.write(response.SerializeToString())
    sys.stdout.flush()
    return 0


def _is_ours(pid: int) -> bool:
    try:
        return b"wasmlet.shim.runner" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
