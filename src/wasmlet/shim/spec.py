"""The parts of a bundle's OCI runtime spec (`config.json`) the shim acts on."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SANDBOX_ID_ANNOTATIONS = ("io.kubernetes.cri.sandbox-id", "io.kubernetes.cri-o.SandboxID")


@dataclass(frozen=True)
class Mount:
    destination: str
    type: str
    source: str
    options: tuple[str, ...]

    @property
    def is_bind(self) -> bool:
        return self.type == "bind" or "bind" in self.options or "rbind" in self.options

    @property
    def readonly(self) -> bool:
        return "ro" in self.options


@dataclass(frozen=True)
class Spec:
    args: list[str]
    env: dict[str, str]
    cwd: str
    terminal: bool
    root: str
    mounts: list[Mount]
    namespaces: dict[str, str | None]  # type -> path (None: a new namespace)
    cgroups_path: str
    resources: dict[str, Any]
    annotations: dict[str, str]
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def read(cls, bundle: Path) -> Spec:
        return cls.parse(json.loads((bundle / "config.json").read_text()))

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Spec:
        process = data.get("process") or {}
        linux = data.get("linux") or {}
        env: dict[str, str] = {}
        for item in process.get("env") or []:
            key, _, value = str(item).partition("=")
            env[key] = value
        return cls(
            args=[str(a) for a in process.get("args") or []],
            env=env,
            cwd=str(process.get("cwd") or "/"),
            terminal=bool(process.get("terminal")),
            root=str((data.get("root") or {}).get("path") or "rootfs"),
            mounts=[
                Mount(
                    str(m.get("destination", "")),
                    str(m.get("type", "")),
                    str(m.get("source", "")),
                    tuple(str(o) for o in m.get("options") or []),
                )
                for m in data.get("mounts") or []
            ],
            namespaces={
                str(ns.get("type")): (str(ns["path"]) if ns.get("path") else None)
                for ns in linux.get("namespaces") or []
            },
            cgroups_path=str(linux.get("cgroupsPath") or ""),
            resources=dict(linux.get("resources") or {}),
            annotations={str(k): str(v) for k, v in (data.get("annotations") or {}).items()},
            raw=data,
        )

    def rootfs(self, bundle: Path) -> Path:
        root = Path(self.root)
        return root if root.is_absolute() else bundle / root

    @property
    def sandbox_id(self) -> str | None:
        for key in SANDBOX_ID_ANNOTATIONS:
            if self.annotations.get(key):
                return self.annotations[key]
        return None

    @property
    def memory_limit(self) -> int | None:
        limit = (self.resources.get("memory") or {}).get("limit")
        return int(limit) if limit and int(limit) > 0 else None
