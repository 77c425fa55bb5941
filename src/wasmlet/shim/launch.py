"""The shim v2 `start` action: ask the node's template for this container's shim.

containerd runs `containerd-shim-wasmlet-v2 ... start` in the bundle directory for every
container and waits for it to print the shim's address. This process only forwards the
request (its flags, working directory, environment and the runtime options containerd wrote
on stdin) to the template over its unix socket and prints the answer; the template forks the
shim, already warm. A pause container the template hands to containerd's own runc shim is
exec'd here, with the same arguments, environment and stdin.

If no template is running (the first start on a node, or after it died), this starts one and
waits for it. Imports: `os`, `sys`, `_socket`, `marshal` and `zlib` only (see main.py).
"""

from __future__ import annotations

import _socket
import marshal
import os
import sys
import time

from .nodepaths import template_socket

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .main import Flags

TEMPLATE_START_TIMEOUT = 120.0  # seconds: importing everything on a busy node
_HEADER = 4


def send_message(sock: _socket.socket, value: dict[str, object]) -> None:
    data = marshal.dumps(value)
    sock.sendall(len(data).to_bytes(_HEADER, "big") + data)


def recv_message(sock: _socket.socket) -> object:
    size = int.from_bytes(_recv_exactly(sock, _HEADER), "big")
    return marshal.loads(_recv_exactly(sock, size))


def _recv_exactly(sock: _socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the template closed the connection")
        data += chunk
    return data


def start(flags: Flags, argv: list[str]) -> int:
    options = _read_stdin()
    request = {
        "id": flags.id,
        "namespace": flags.namespace,
        "address": flags.address,
        "publish_binary": flags.publish_binary,
        "debug": flags.debug,
        "bundle": os.getcwd(),
        "env": dict(os.environ),
        "options": options,
    }
    try:
        reply = ask(template_socket(os.environ), request)
    except (OSError, TimeoutError) as e:
        print(f"wasmlet: cannot reach the shim template: {e}", file=sys.stderr)
        return 1
    if not isinstance(reply, dict) or "error" in reply:
        error = reply.get("error") if isinstance(reply, dict) else reply
        print(f"wasmlet: {error}", file=sys.stderr)
        return 1
    if "exec" in reply:  # a pause container: containerd's own runc shim serves it
        _exec_with_stdin(str(reply["exec"]), argv, options)
    print(reply["address"], end="")
    return 0


def ask(path: str, request: dict[str, object]) -> object:
    """The template's answer to `request`, starting the template first if none serves."""
    sock = _connect(path) or _start_template(path)
    try:
        send_message(sock, request)
        return recv_message(sock)
    finally:
        sock.close()


def _connect(path: str) -> _socket.socket | None:
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    return sock


def _start_template(path: str) -> _socket.socket:
    """Start the template (detached, in its own session) and wait until it accepts. Two
    starts racing both spawn one; the second finds the first's lock taken and exits."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    log = os.open(path.removesuffix(".sock") + ".log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        pid = os.posix_spawn(
            sys.executable,
            [sys.executable, "-m", "wasmlet.shim.template", path],
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, null, 0),
                (os.POSIX_SPAWN_DUP2, log, 1),
                (os.POSIX_SPAWN_DUP2, log, 2),
            ],
            setsid=True,
        )
    finally:
        os.close(log)
        os.close(null)
    deadline = time.monotonic() + TEMPLATE_START_TIMEOUT
    exited = False
    while time.monotonic() < deadline:
        sock = _connect(path)
        if sock is not None:
            return sock
        if not exited and os.waitpid(pid, os.WNOHANG)[0] == pid:
            exited = True  # lost the race to another start (fine), or failed (logged)
        time.sleep(0.01)
    raise TimeoutError(
        f"no template answered on {path} within {TEMPLATE_START_TIMEOUT:.0f} s "
        f"(see {path.removesuffix('.sock')}.log)"
    )


def _read_stdin() -> bytes:
    """The runtime options containerd writes on stdin (a protobuf Any; often empty)."""
    chunks = []
    try:
        while chunk := os.read(0, 65536):
            chunks.append(chunk)
    except OSError:
        pass
    return b"".join(chunks)


def _exec_with_stdin(program: str, argv: list[str], stdin: bytes) -> None:
    read, write = os.pipe()
    os.write(write, stdin)  # small (runtime options), so it fits in the pipe's buffer
    os.close(write)
    os.dup2(read, 0)
    os.close(read)
    os.execv(program, [program, *argv])
