"""The runner: one process per Wasm task, running wasmlet's HTTP trigger for the app.

`python -m wasmlet.shim.runner CONFIG` (started by the shim at Create):

1. joins the task's cgroup, network namespace (or a new one) and a private mount namespace
   where the spec's bind mounts are mounted into the container's root filesystem;
2. takes the container's environment as its own, loads the app and the root filesystem's
   `/runtime-config.toml`, resolves variables and compiles every component (the compile
   cache makes the second time cheap), then reports "ready" (or the error) to the shim;
3. waits for Start, then serves on `SPIN_HTTP_LISTEN_ADDR` (default 0.0.0.0:80) until
   SIGTERM, which drains the requests in flight and exits 0.

A startup error is printed on stderr (containerd's log pipe) and, once started, the process
exits 1: the error reaches the task's logs and exit status.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import struct
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from . import linux
from .runnerconfig import GO_FD, READY_FD, RUNTIME_CONFIG, Bind, RunnerConfig

if TYPE_CHECKING:
    from ..locked import LockedApp
    from ..trigger.http.server import ServeOptions

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_SKIP_DESTINATIONS = ("/proc", "/sys", "/dev")


def enter(config: RunnerConfig) -> None:
    """Cgroup, network namespace and mount namespace of the task."""
    for procs in config.cgroup_procs:
        with contextlib.suppress(OSError):
            Path(procs).write_text(str(os.getpid()))
    if config.netns:
        linux.setns(config.netns, linux.CLONE_NEWNET)
    elif config.new_netns:
        linux.unshare(linux.CLONE_NEWNET)
        loopback_up()
    linux.unshare(linux.CLONE_NEWNS)
    linux.mount("none", "/", "", linux.MS_REC | linux.MS_PRIVATE)
    rootfs = Path(config.rootfs)
    for bind in config.binds:
        bind_into(rootfs, bind)


def loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH14s", fcntl.ioctl(s, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH14s", b"lo", flags | _IFF_UP, b""))


def bind_into(rootfs: Path, bind: Bind) -> None:
    if bind.destination.startswith(_SKIP_DESTINATIONS) or not rootfs.is_dir():
        return
    target = rootfs / bind.destination.lstrip("/")
    try:
        if os.path.isdir(bind.source):
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch(exist_ok=True)
        flags = linux.MS_BIND | linux.MS_REC
        linux.mount(bind.source, str(target), "none", flags)
        if bind.readonly:
            linux.mount("", str(target), "", flags | linux.MS_REMOUNT | linux.MS_RDONLY)
    except OSError as e:
        print(f"wasmlet: cannot mount {bind.source} at {bind.destination}: {e}", file=sys.stderr)


def prepare(config: RunnerConfig) -> tuple[LockedApp, ServeOptions]:
    """Load the app and build it once (compiles every component, checks variables and
    runtime config); returns what `serve` needs."""
    from ..engine import EngineSettings, Limits, parse_size
    from ..logs import configure_logging
    from ..running import AppOptions, build_app
    from ..runtime_config import load_runtime_config
    from ..trigger.http.server import ServeOptions, parse_listen
    from .appload import load

    configure_logging(os.environ.get("WASMLET_LOG_LEVEL", "info"))
    parse_listen(config.listen)  # a bad address fails before anything else
    home = Path(config.work)
    app = load(config)
    rc_file = Path(config.rootfs) / RUNTIME_CONFIG
    rc = load_runtime_config(rc_file if rc_file.is_file() else None, home)
    memory = os.environ.get("SPIN_MAX_INSTANCE_MEMORY")
    app_opts = AppOptions(
        state_dir=rc.state_dir or home / "state",
        engine=EngineSettings(cache_dir=Path(config.cache_dir)),
        limits=Limits(max_instance_memory=parse_size(memory) if memory else rc.max_instance_memory),
        runtime_config=rc,
        home=home,
    )
    build_app(app, app_opts).close()  # every route's executor, as `serve` will build them
    return app, ServeOptions(listen=config.listen, app=app_opts)


def _report(ok: bool, error: str = "") -> None:
    with contextlib.suppress(OSError):
        os.write(READY_FD, (json.dumps({"ok": ok, "error": error}) + "\n").encode())
        os.close(READY_FD)


def _wait_for_start() -> bool:
    try:
        return os.read(GO_FD, 1) == b"g"
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    config = RunnerConfig.read(Path(args[0]))
    try:
        enter(config)
        os.environ.clear()
        os.environ.update(config.env)
        app, opts = prepare(config)
    except Exception as e:  # any startup failure: report it, then exit 1 once started
        message = str(e) if str(e) else type(e).__name__
        print(f"Error: {message}", file=sys.stderr, flush=True)
        _report(False, message)
        _wait_for_start()
        return 1
    _report(True)
    if not _wait_for_start():
        return 0  # deleted before being started
    from ..errors import WasmletError
    from ..trigger.http.server import serve

    try:
        serve(app, opts)
    except WasmletError as e:
        print(f"Error: {e}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
