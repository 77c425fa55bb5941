"""Mount (and unmount) the container's root filesystem, as containerd describes it."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from . import linux

log = logging.getLogger("wasmlet.shim.rootfs")

_FLAGS = {
    "ro": (True, linux.MS_RDONLY),
    "rw": (False, linux.MS_RDONLY),
    "bind": (True, linux.MS_BIND),
    "rbind": (True, linux.MS_BIND | linux.MS_REC),
    "nosuid": (True, 0x2),
    "nodev": (True, 0x4),
    "noexec": (True, 0x8),
    "relatime": (True, 1 << 21),
    "noatime": (True, 0x400),
}


class MountLike(Protocol):
    type: str
    source: str
    options: Sequence[str]


def parse_options(options: Sequence[str]) -> tuple[int, str]:
    """mount(2) flags and the remaining data string, as containerd's mount_linux.go does."""
    flags = 0
    data = []
    for option in options:
        if option in _FLAGS:
            set_flag, bit = _FLAGS[option]
            flags = flags | bit if set_flag else flags & ~bit
        else:
            data.append(option)
    return flags, ",".join(data)


def mount_all(mounts: Sequence[MountLike], target: Path) -> None:
    """Mount `mounts` on `target` in order (containerd gives one, the snapshot)."""
    target.mkdir(parents=True, exist_ok=True)
    for m in mounts:
        flags, data = parse_options(m.options)
        if m.type == "bind":
            flags |= linux.MS_BIND
        if flags & linux.MS_BIND:  # a read-only bind mount needs a remount
            linux.mount(m.source, str(target), "none", flags & ~linux.MS_RDONLY, data)
            if flags & linux.MS_RDONLY:
                linux.mount("", str(target), "", flags | linux.MS_REMOUNT, "")
        else:
            linux.mount(m.source, str(target), m.type, flags, data)
        log.debug("mounted %s (%s) on %s", m.source, m.type, target)


def unmount_all(target: Path) -> None:
    """Unmount everything mounted on `target` (lazily, so a busy mount does not block)."""
    path = os.path.realpath(target)
    for _ in range(16):
        if not linux.is_mountpoint(path):
            return
        try:
            linux.umount(path, linux.MNT_DETACH)
        except OSError as e:
            log.warning("cannot unmount %s: %s", path, e)
            return
