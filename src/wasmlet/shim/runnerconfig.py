"""What the shim tells a runner process (a JSON file in the task's work directory)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEFAULT_LISTEN = "0.0.0.0:80"
LISTEN_ENV = "SPIN_HTTP_LISTEN_ADDR"
RUNTIME_CONFIG = "runtime-config.toml"  # at the root of the container's filesystem
GO_FD = 3  # the runner waits for one byte here before serving (the shim's Start)
READY_FD = 4  # the runner reports one JSON line here once prepared (or failed)


@dataclass
class Bind:
    source: str
    destination: str  # inside the container's root filesystem
    readonly: bool = False


@dataclass
class RunnerConfig:
    container_id: str
    rootfs: str
    work: str  # the task's own directory: the app's home and state
    cache_dir: str  # wasmlet's compile cache the runner uses
    blobs: str = ""  # the shim's blob directory (image layers)
    image: str | None = None  # an app from this image's layers …
    image_config: list[object] | None = None  # [media type, digest, size]
    image_layers: list[list[object]] = field(default_factory=list)
    manifest: str | None = None  # … or a spin.toml …
    wasm: str | None = None  # … or one Wasm module (served Wagi-style)
    env: dict[str, str] = field(default_factory=dict)
    netns: str | None = None  # join this network namespace …
    new_netns: bool = False  # … or make a new one (loopback only)
    binds: list[Bind] = field(default_factory=list)
    cgroup_procs: list[str] = field(default_factory=list)  # cgroup.procs files to join

    @property
    def listen(self) -> str:
        return self.env.get(LISTEN_ENV) or DEFAULT_LISTEN

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def read(cls, path: Path) -> RunnerConfig:
        data = json.loads(path.read_text())
        data["binds"] = [Bind(**b) for b in data.get("binds") or []]
        return cls(**data)
