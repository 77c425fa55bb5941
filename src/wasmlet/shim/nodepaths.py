"""Where the shim keeps things on the node, from the environment (containerd passes its own to
shims). Only `os`, `sys` and `zlib` here: the `start` launcher imports this, and every
millisecond it spends importing is on the path of every container start."""

from __future__ import annotations

import os
import sys
import zlib

from .. import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

STATE_ENV = "WASMLET_SHIM_STATE_DIR"
SOCKET_ENV = "WASMLET_SHIM_SOCKET_DIR"
RUNC_SHIM_ENV = "WASMLET_SHIM_RUNC_SHIM"  # containerd's runc shim for pause containers; "" = never
STATE_FILE = "wasmlet-task.json"  # in the bundle: what `delete` needs after a dead shim
HANDOFF_FILE = "wasmlet-runc-shim"  # in the bundle: containerd's runc shim serves this task
DEFAULT_STATE = "/var/lib/wasmlet/shim"
DEFAULT_SOCKETS = "/run/wasmlet/s"


def socket_dir(env: Mapping[str, str]) -> str:
    return env.get(SOCKET_ENV) or DEFAULT_SOCKETS


def template_key(executable: str = "", package: str = "") -> str:
    """An installation's template (default: this one's): keyed by the wasmlet version and
    installation (interpreter, package directory), so an upgraded node starts a template
    running the new code instead of handing containers to the old one."""
    executable = executable or sys.executable
    package = package or os.path.dirname(os.path.dirname(__file__))
    install = f"{__version__}\0{executable}\0{package}"
    return f"{__version__}-{zlib.crc32(install.encode()):08x}"


def template_socket(env: Mapping[str, str]) -> str:
    """The control socket of this node's template (beside it: `.fifo`, `.pid`, `.log`)."""
    return os.path.join(
        os.path.dirname(socket_dir(env).rstrip("/")), f"template-{template_key()}.sock"
    )


def launcher(python: str, key: str = "") -> str:
    """The `containerd-shim-wasmlet-v2` `wasmlet node install` puts on a node: a POSIX shell
    script that sends a `start` to the running template (`key`, template_key) through its
    FIFO — no Python
    started: a Python start is 15-30 ms of CPU, on every container start — and runs the
    Python shim (`python`: a shell command, given the arguments) for anything else, and for
    a start when no template runs (which starts one). The request is left in the bundle
    (`wasmlet-start.*`: arguments, environment, runtime options; the answer comes on a
    FIFO there); the template answers `address URI`, `exec RUNC_SHIM` or `error MESSAGE`.
    A template is running if its pid (`.pid`) is a live `wasmlet-tmpl`. If it died between
    this check and the answer, the next template answers a request still being written
    (see template.serve); one it had already read is lost, and this waits until containerd
    gives up on the start."""
    return f"""#!/bin/sh
# containerd-shim-wasmlet-v2, installed by `wasmlet node install` (see wasmlet.shim.nodepaths)
python() {{ {python}; }}
case " $* " in *" start "*) ;; *) python "$@" ;; esac
d=${{{SOCKET_ENV}:-{DEFAULT_SOCKETS}}}; d=${{d%/}}; t=${{d%/*}}/template-{key or template_key()}
{{ read -r pid < "$t.pid" && read -r _ comm state _ < "/proc/$pid/stat" &&
  [ "$comm" = "(wasmlet-tmpl)" ] && [ "$state" != Z ] && [ -p "$t.fifo" ]; }} 2>/dev/null ||
  python "$@"
r=$PWD/wasmlet-start
cat > "$r.opts" || exit 1
{{ printf '%s\\000' "$@" > "$r.args" && export -p > "$r.env" && mkfifo -m 600 "$r.reply" &&
  exec 3<>"$r.reply"; }} || python "$@" < "$r.opts"
printf '%s\\n' "$PWD" > "$t.fifo"
read -r answer <&3
case $answer in
"address "*) printf '%s' "${{answer#address }}" ;;
"exec "*) exec "${{answer#exec }}" "$@" < "$r.opts" ;;
*) echo "wasmlet: ${{answer#error }}" >&2; exit 1 ;;
esac
"""
