"""`wasmlet node install|uninstall`: the shim on a node and the runtime in containerd.

Steps (each reported, each idempotent): put the shim binary on the node; add (remove) the
`wasmlet` runtime to containerd's configuration or the distribution's template; restart
containerd (or k3s/rke2/MicroK8s) when the configuration changed; optionally label the
Kubernetes node so the RuntimeClass's node selector finds it. `--dry-run` prints what
would change, including the configuration diff, and changes nothing.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from . import containerdconfig, distro, shiminstall

NODE_LABEL = "wasmlet.dev/shim"
NODE_LABEL_VALUE = "installed"
BACKUP_SUFFIX = ".wasmlet-backup"


@dataclass
class Options:
    host_root: Path = Path("/")
    distro: str = "auto"
    config: Path | None = None  # overrides the detected config file (a host path)
    containerd_major: int | None = None
    mode: str = "auto"  # link | copy
    bin_dir: Path = Path("/usr/local/bin")
    prefix: Path = Path("/opt/wasmlet")
    runtime_name: str = "wasmlet"
    restart: bool = True
    restart_command: list[str] | None = None
    dry_run: bool = False
    label_node: str | None = None


@dataclass
class Report:
    changes: list[shiminstall.Change] = field(default_factory=list)
    diffs: list[str] = field(default_factory=list)

    def add(self, what: str, done: bool = True) -> None:
        self.changes.append(shiminstall.Change(what, done))

    def print(self, out: TextIO, dry_run: bool) -> None:
        for change in self.changes:
            mark = ("would: " if dry_run else "done: ") if change.done else "ok: "
            print(f"{mark}{change.what}", file=out)
        for d in self.diffs:
            out.write(d)


def _target(opts: Options) -> tuple[distro.Distro, Path]:
    d = distro.detect(opts.host_root, opts.distro, opts.containerd_major)
    if opts.config is not None:
        return d, shiminstall.on_host(opts.host_root, opts.config)
    return d, d.config


def _read_config(d: distro.Distro, path: Path) -> str:
    if path.exists():
        return path.read_text()
    if d.rendered is not None and d.rendered.exists():  # k3s/rke2: start from what runs now
        return d.rendered.read_text()
    return ""


def install(opts: Options, out: TextIO) -> int:
    report = Report()
    mode = shiminstall.default_mode(opts.host_root) if opts.mode == "auto" else opts.mode
    if mode == "link":
        if opts.host_root.resolve() != Path("/"):
            raise ValueError("--mode link only works on the node itself (--host-root /)")
        report.changes.append(shiminstall.install_link(opts.host_root, opts.bin_dir, opts.dry_run))
    else:
        report.changes += shiminstall.install_copy(
            opts.host_root, opts.prefix, opts.bin_dir, opts.dry_run
        )
    d, path = _target(opts)
    old = _read_config(d, path)
    edit = containerdconfig.add_runtime(old, opts.runtime_name, d.default_version)
    if edit.changed:
        if opts.dry_run:
            report.diffs.append(containerdconfig.diff(edit, str(path)))
        else:
            _write_config(path, edit.new)
    report.add(f"{path} ({d.name}): {edit.note}", edit.changed)
    if edit.changed:
        _restart(opts, d, report)
    if opts.label_node:
        _label(opts, report, NODE_LABEL_VALUE)
    report.print(out, opts.dry_run)
    return 0


def uninstall(opts: Options, out: TextIO) -> int:
    report = Report()
    d, path = _target(opts)
    if path.exists():
        edit = containerdconfig.remove_runtime(path.read_text())
        if edit.changed:
            if opts.dry_run:
                report.diffs.append(containerdconfig.diff(edit, str(path)))
            else:
                _write_config(path, edit.new)
        report.add(f"{path} ({d.name}): {edit.note}", edit.changed)
        if edit.changed:
            _restart(opts, d, report)
    else:
        report.add(f"{path}: does not exist", False)
    report.changes += shiminstall.uninstall(opts.host_root, opts.prefix, opts.bin_dir, opts.dry_run)
    if opts.label_node:
        _label(opts, report, None)
    report.print(out, opts.dry_run)
    return 0


def _write_config(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    backup = path.with_name(path.name + BACKUP_SUFFIX)
    if path.exists() and not backup.exists():
        shutil.copy2(path, backup)
    tmp = path.with_name(path.name + ".wasmlet-tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _restart(opts: Options, d: distro.Distro, report: Report) -> None:
    if not opts.restart:
        report.add(f"restart {d.name} yourself to load the change", False)
        return
    command = opts.restart_command or distro.restart_command(d, opts.host_root)
    if command is None:
        report.add(f"no systemd on this host: restart {d.name} yourself to load the change", False)
        return
    if opts.dry_run:
        report.add("run " + " ".join(command))
        return
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()}")
    report.add("ran " + " ".join(command))


def _label(opts: Options, report: Report, value: str | None) -> None:
    """Set (or remove) the node label the RuntimeClass selects, through the API server."""
    what = f"node {opts.label_node}: label {NODE_LABEL}" + (f"={value}" if value else " removed")
    if opts.dry_run:
        report.add(what)
        return
    from kr8s.objects import Node

    node = Node.get(opts.label_node)
    if value is None:
        node.patch({"metadata": {"labels": {NODE_LABEL: None}}})
    else:
        node.label({NODE_LABEL: value})
    report.add(what)


def runtime_class(name: str = "wasmlet", selector: dict[str, str] | None = None) -> dict[str, Any]:
    """The RuntimeClass that runs pods with this runtime on nodes that have it."""
    return {
        "apiVersion": "node.k8s.io/v1",
        "kind": "RuntimeClass",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "wasmlet"}},
        "handler": name,
        "scheduling": {"nodeSelector": selector or {NODE_LABEL: NODE_LABEL_VALUE}},
    }
