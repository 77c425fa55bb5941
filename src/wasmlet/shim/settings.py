"""Where the shim keeps things on the node; overridable through the environment (containerd
passes its own environment to shims)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .nodepaths import DEFAULT_STATE, STATE_ENV, STATE_FILE, socket_dir

RUNC_ENV = "WASMLET_SHIM_RUNC"
__all__ = ["STATE_FILE", "ShimSettings"]


@dataclass(frozen=True)
class ShimSettings:
    state_dir: Path  # blobs of images, the compile cache for apps not from images
    socket_dir: Path  # the shims' ttrpc sockets
    runc_override: str  # WASMLET_SHIM_RUNC, or "": runc on PATH (see `runc`)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ShimSettings:
        env = os.environ if env is None else env
        return cls(
            state_dir=Path(env.get(STATE_ENV) or DEFAULT_STATE),
            socket_dir=Path(socket_dir(env)),
            runc_override=env.get(RUNC_ENV) or "",
        )

    @property
    def runc(self) -> str:
        """The runc binary, for ordinary containers (looked up only when one is run)."""
        return self.runc_override or shutil.which("runc") or "/usr/sbin/runc"

    @property
    def blobs(self) -> Path:
        return self.state_dir / "blobs"

    @property
    def compile_cache(self) -> Path:
        """The node's precompiled Wasm (wasmlet's compile-cache layout), shared by every
        task: an artifact is compiled or copied here once and mapped by each start."""
        return self.state_dir / "compile-cache"

    def runc_root(self, namespace: str) -> Path:
        return self.socket_dir.parent / "runc" / namespace
