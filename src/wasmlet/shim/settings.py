"""Where the shim keeps things on the node; overridable through the environment (containerd
passes its own environment to shims)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

STATE_ENV = "WASMLET_SHIM_STATE_DIR"
SOCKET_ENV = "WASMLET_SHIM_SOCKET_DIR"
RUNC_ENV = "WASMLET_SHIM_RUNC"
SOCKET_FD_ENV = "WASMLET_SHIM_SOCKET_FD"  # start -> daemon: the listening socket
STATE_FILE = "wasmlet-task.json"  # in the bundle: what `delete` needs after a dead shim


@dataclass(frozen=True)
class ShimSettings:
    state_dir: Path  # blobs of images, the compile cache for apps not from images
    socket_dir: Path  # the shims' ttrpc sockets
    runc: str  # the runc binary, for ordinary containers

    @classmethod
    def from_env(cls) -> ShimSettings:
        return cls(
            state_dir=Path(os.environ.get(STATE_ENV) or "/var/lib/wasmlet/shim"),
            socket_dir=Path(os.environ.get(SOCKET_ENV) or "/run/wasmlet/s"),
            runc=os.environ.get(RUNC_ENV) or shutil.which("runc") or "/usr/sbin/runc",
        )

    @property
    def blobs(self) -> Path:
        return self.state_dir / "blobs"

    @property
    def compile_cache(self) -> Path:
        return self.state_dir / "compile-cache"

    def runc_root(self, namespace: str) -> Path:
        return self.socket_dir.parent / "runc" / namespace
