"""What a Wasm task is given by the shim (runner.py): the container, as parsed from its spec,
and where the shim put things. Plain data, so it crosses to the template (marshal) or, with no
template, to a runner started as a program (a JSON file)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

DEFAULT_LISTEN = "0.0.0.0:80"
LISTEN_ENV = "SPIN_HTTP_LISTEN_ADDR"
# HOST:PORT: the task serves Prometheus metrics at /metrics there, in the pod's network
# namespace (the operator sets it for an executor with `metrics`; `wasmlet up` reads it too)
METRICS_ENV = "WASMLET_METRICS_LISTEN"
RUNTIME_CONFIG = "runtime-config.toml"  # at the root of the container's filesystem
GO_FD = 3  # a runner started as a program: it waits for one byte here before serving
# ... and reports JSON lines here: {"ok", "error"} once prepared (with "subscribe": seconds
# when it has message triggers), {"subscribed"} once they are, {"exit"} at the end
STATUS_FD = 4
# Seconds a started task's message triggers have to subscribe (the container's environment
# may set another): Start waits for them, and the kubelet gives a CRI call 2 minutes.
SUBSCRIBE_TIMEOUT_ENV = "WASMLET_SUBSCRIBE_TIMEOUT"
SUBSCRIBE_TIMEOUT = 60.0


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
    cache_dir: str  # the node's precompiled artifacts (wasmlet's compile-cache layout)
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunnerConfig:
        return cls(**{**data, "binds": [Bind(**b) for b in data.get("binds") or []]})
