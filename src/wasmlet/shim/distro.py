"""Where a node's containerd keeps its configuration, and how it is restarted.

Kubernetes distributions that embed containerd generate its config.toml at every start from
a template: k3s and rke2 read `config.toml.tmpl` (`config-v3.toml.tmpl` for containerd 2.x),
MicroK8s `args/containerd-template.toml`. Plain containerd reads `/etc/containerd/config.toml`.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Distro:
    name: str
    config: Path  # the file to edit (under the host root)
    rendered: Path | None  # the generated config.toml of template-based distros
    restart: tuple[str, ...]  # systemd units to restart (only those running)
    default_version: int  # config schema when the file says nothing

    @property
    def is_template(self) -> bool:
        return self.rendered is not None


def _k3s_like(name: str, base: Path, units: tuple[str, ...]) -> Distro:
    rendered = base / "config.toml"
    v3 = (base / "config-v3.toml.tmpl").exists() or _version_in(rendered) == 3
    template = base / ("config-v3.toml.tmpl" if v3 else "config.toml.tmpl")
    return Distro(name, template, rendered, units, 3 if v3 else 2)


def _version_in(path: Path) -> int | None:
    try:
        match = re.search(r"^\s*version\s*=\s*(\d+)", path.read_text(), re.M)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def detect(host_root: Path, name: str = "auto", containerd_major: int | None = None) -> Distro:
    k3s = host_root / "var/lib/rancher/k3s/agent/etc/containerd"
    rke2 = host_root / "var/lib/rancher/rke2/agent/etc/containerd"
    microk8s = host_root / "var/snap/microk8s/current/args"
    if name in ("auto", "k3s") and (k3s.is_dir() or name == "k3s"):
        return _k3s_like("k3s", k3s, ("k3s", "k3s-agent"))
    if name in ("auto", "rke2") and (rke2.is_dir() or name == "rke2"):
        return _k3s_like("rke2", rke2, ("rke2-server", "rke2-agent"))
    if name in ("auto", "microk8s") and (microk8s.is_dir() or name == "microk8s"):
        config = microk8s / "containerd-template.toml"
        return Distro("microk8s", config, None, ("snap.microk8s.daemon-containerd",),
                      _version_in(config) or 2)  # fmt: skip
    if name not in ("auto", "containerd"):
        raise ValueError(f"unknown distribution {name!r} (k3s, rke2, microk8s, containerd)")
    major = containerd_major or containerd_version(host_root) or 1
    return Distro(
        "containerd",
        host_root / "etc/containerd/config.toml",
        None,
        ("containerd",),
        3 if major >= 2 else 2,
    )


def containerd_version(host_root: Path) -> int | None:
    """The major version of the node's containerd (None when it cannot be run)."""
    prefix = [] if host_root == Path("/") else ["chroot", str(host_root)]
    try:
        out = subprocess.run(
            [*prefix, "containerd", "--version"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"\s v?(\d+)\.(\d+)", out)
    return int(match.group(1)) if match else None


def restart_command(distro: Distro, host_root: Path) -> list[str] | None:
    """`systemctl try-restart UNITS` (through the host's namespaces from a pod), or None
    when the host has no systemd."""
    if not (host_root / "run/systemd/system").is_dir():
        return None
    command = ["systemctl", "try-restart", *distro.restart]
    if host_root != Path("/"):
        command = ["nsenter", "--target", "1", "--mount", "--uts", "--ipc", "--net", "--pid",
                   "--", *command]  # fmt: skip
    return command
