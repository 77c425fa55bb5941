"""The node's template: one warm process that forks the node's shim and every Wasm task.

`python -m wasmlet.shim.template SOCKET` is started by the first `start` on a node (one per
wasmlet installation and socket directory, see nodepaths.py). It imports everything a task
needs — the shim, the HTTP trigger, uvicorn, wasmtime, the host capabilities and their client
libraries —, freezes the garbage collector's view of those objects, and then forks, so each
process shares the interpreter, the libraries and their data copy-on-write instead of
spending half a second importing them:

- the **node's shim** (daemon.py), one per containerd socket and namespace: the Task service
  for all of that namespace's containers (containerd is told its address for each `start`);
- a **task** per Wasm container (runner.py), when the shim asks at Create: it joins the
  task's cgroup and namespaces, builds the app and serves it — its own process, so its own
  memory, limits and exit status;
- a **compiler** for Wasm no task on this node has compiled yet (precompile.py);
- a **successor** for a shim that died (recover.py), which takes over its containers.

It never makes an event loop, a thread or a wasmtime engine (those must not cross a fork):
one blocking `selectors` loop over its control socket, the shims' channels and a SIGCHLD
wake-up pipe. It is every task's parent and the subreaper of everything under it, so it
reports each exit status to the shim (`exited`). For each shim it keeps duplicates of the
shim's listening socket and accepted connections, the calls in flight and what it knows of
each task (records.py): that is what lets a successor take over. If a shim's connections
just closed, containerd would clean up every task it served (`shim delete`), running or not.

If the template itself dies, the shims and tasks keep running (each in its own session,
reparented); the next `start` starts a new template, and the shims see their tasks' exits
through their status pipes. A shim that then dies has no successor: containerd cleans up
after it (cleanup.py).
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import gc
import hashlib
import importlib
import logging
import marshal
import os
import resource
import selectors
import shlex
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from ..forkserver import UVICORN_LAZY, reaped
from ..logs import configure_logging
from . import linux
from .launch import recv_message, send_message
from .nodepaths import DEFAULT_STATE, HANDOFF_FILE, STATE_ENV, socket_dir
from .records import MAX_CHANNEL_MESSAGE, ShimRecord
from .settings import ShimSettings
from .spec import Spec

log = logging.getLogger("wasmlet.shim.template")

# What a task and the shim import after the fork, found by running them from a fork of this
# process and listing the modules they imported (test_shim_template_unit.py checks it).
PRELOAD = (
    "wasmlet.shim.daemon",
    "wasmlet.shim.recover",
    "wasmlet.shim.runner",
    "wasmlet.shim.precompile",
    *UVICORN_LAZY,
    "encodings.idna",  # a host name to bind or connect to
    # host capabilities registered lazily (factors/__init__.py) and their client libraries
    # (imported by an app's first use otherwise)
    "wasmlet.factors.outbound_networking",
    "wasmlet.factors.redis",
    "wasmlet.factors.postgres",
    "wasmlet.factors.mysql",
    "wasmlet.factors.mqtt",
    "wasmlet.factors._redis_client",
    "wasmlet.factors._postgres_client",
    "wasmlet.factors._mysql_client",
    "wasmlet.factors._mqtt_client",
    "httpx",  # outbound HTTP (wasi/http/sender.py imports it at an app's first request)
    # a task with WASMLET_METRICS_LISTEN (16 ms to import in each task otherwise)
    "prometheus_client",
    "prometheus_client.exposition",
)
SANDBOX_TYPES = {"io.kubernetes.cri.container-type": "sandbox",
                 "io.kubernetes.cri-o.ContainerType": "sandbox"}  # fmt: skip
RUNC_SHIM = "containerd-shim-runc-v2"


class Template:
    def __init__(self, control: socket.socket, fifo: int) -> None:
        self.control = control
        self.fifo = fifo  # where the shell launcher (nodepaths.launcher) asks
        self._partial = b""
        self.selector = selectors.DefaultSelector()
        self.shims: dict[int, ShimRecord] = {}  # by pid
        self.tasks: dict[int, ShimRecord] = {}  # a task's pid -> the shim that asked for it
        self.compiles: dict[str, list[tuple[ShimRecord, int]]] = {}  # digest -> waiters
        self.compilers: dict[int, str] = {}  # pid -> digest
        self.tokens: dict[tuple[int, int], set[str]] = {}  # (shim pid, token) -> digests left
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    # -- the loop -------------------------------------------------------------------------
    def run(self) -> None:
        signal.set_wakeup_fd(self._wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the loop through the pipe
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        self.selector.register(self.control, selectors.EVENT_READ, self._accept)
        self.selector.register(self.fifo, selectors.EVENT_READ, self._fifo)
        self.selector.register(self._wake_r, selectors.EVENT_READ, self._reap)
        log.info("template %d ready on %s", os.getpid(), self.control.getsockname())
        while True:
            for key, _ in self.selector.select():
                try:
                    key.data(key.fileobj)
                except Exception:
                    log.exception("template: handling %s failed", key.fileobj)

    def _accept(self, _: object) -> None:
        conn, _addr = self.control.accept()
        with conn:
            conn.settimeout(10)
            try:
                request = recv_message(conn)
                reply = self.start(request) if isinstance(request, dict) else None
                send_message(conn, reply or {"error": "bad request"})
            except (OSError, ValueError, EOFError) as e:
                log.warning("template: a start request failed: %s", e)

    def _fifo(self, _: object) -> None:
        """Requests of the shell launcher: a line naming a bundle holding the request."""
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(self.fifo, 65536):
                self._partial += chunk
        *lines, self._partial = self._partial.split(b"\n")
        for line in lines:
            bundle = Path(os.fsdecode(line))
            try:
                reply = self.start(_launcher_request(bundle))
            except Exception as e:
                log.exception("%s: start failed", bundle)
                reply = {"error": str(e)}
            answer = " ".join(next(iter(reply.items()))).replace("\n", " ") + "\n"
            try:
                fd = os.open(bundle / "wasmlet-start.reply", os.O_WRONLY | os.O_NONBLOCK)
            except OSError as e:
                log.warning("%s: the launcher is gone (%s)", bundle, e)
                continue
            with contextlib.suppress(OSError):
                os.write(fd, answer.encode())
            os.close(fd)

    # -- start: the namespace's shim, forked once ---------------------------------------------
    def start(self, request: dict[str, Any]) -> dict[str, Any]:
        env = request["env"]
        bundle = Path(request["bundle"])
        try:
            spec: Spec | None = Spec.read(bundle)
        except (OSError, ValueError):
            spec = None  # Create reports it
        runc_shim = _runc_shim(spec, request)
        if runc_shim is not None:
            log.info("%s: a pod sandbox: handed to %s", request["id"], runc_shim)
            (bundle / HANDOFF_FILE).write_text(runc_shim)  # its `delete` is runc's too
            return {"exec": runc_shim}
        settings = ShimSettings(
            Path(env.get(STATE_ENV) or DEFAULT_STATE), Path(socket_dir(env)), ""
        )
        # Keyed by this template too: a shim an earlier template forked keeps its address
        # (containerd finds its containers by it) and its containers; new ones come here.
        key = f"{request['namespace']}\0{os.getpid()}"
        path = socket_path(settings, request["address"], key)
        record = next((r for r in self.shims.values() if r.path == path), None)
        if record is None:
            self._fork_shim(path, request)
        else:
            record.send(("coming", request["id"]))  # resolve its image while containerd calls
        uri = f"unix://{path}"
        (bundle / "address").write_text(uri)
        return {"address": uri}

    def _fork_shim(self, path: Path, request: dict[str, Any]) -> ShimRecord:
        """The namespace's shim (`wasmlet-shim`), listening at `path`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        listen = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listen.bind(str(path))
        listen.listen(512)
        record = self._fork(ShimRecord(0, path, request, listen), None)
        record.send(("coming", request["id"]))
        return record

    def _fork(self, record: ShimRecord, successor: dict[str, Any] | None) -> ShimRecord:
        """Fork the shim of `record` (or the successor of its dead one, given its state)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        keep = [record.listen.fileno(), theirs.fileno(), *record.fds()]
        pid = fork_child(keep, b"wasmlet-shim", stdio=(1, 2))  # it logs where we do
        if pid == 0:
            if successor is None:
                from .daemon import run_shim

                _child_main(run_shim, record.listen, theirs, record.request)
            from .recover import run_successor

            _child_main(run_successor, record.listen, theirs, record.request, successor)
        theirs.close()
        ours.setblocking(False)
        record.pid, record.channel = pid, ours
        self.shims[pid] = record
        self.selector.register(ours, selectors.EVENT_READ, lambda _, r=record: self._drain(r))
        log.info("shim %d serving %s (namespace %s)", pid, record.path, record.request["namespace"])
        return record

    # -- a shim's channel (see link.py for the messages) -----------------------------------
    def _drain(self, record: ShimRecord) -> None:
        sock = record.channel
        while sock is not None:
            fds = array.array("i")
            try:
                data, ancdata, _flags, _addr = sock.recvmsg(
                    MAX_CHANNEL_MESSAGE, socket.CMSG_SPACE(8 * fds.itemsize)
                )
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:  # the shim is gone (its exit is handled by _reap)
                with contextlib.suppress(KeyError, ValueError):
                    self.selector.unregister(sock)
                return
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
            message = marshal.loads(data)
            if message[0] == "spawn":
                self._spawn(record, message, list(fds))
            elif message[0] == "compile":
                self._compile(record, *message[1:])
            else:
                record.note(message, list(fds))

    def _spawn(self, r: ShimRecord, message: tuple[Any, ...], fds: list[int]) -> None:
        """Fork the task `message` names: fds are its stdout and stderr. Answers with its pid
        and the pipes to start it (`go`) and hear from it (`status`)."""
        _, token, task_id, config = message
        go_r, go_w = os.pipe()
        status_r, status_w = os.pipe()
        stdout, stderr = fds[0], fds[1]
        pid = fork_child([go_r, status_w], b"wasmlet-task", stdio=(stdout, stderr))
        if pid == 0:
            from .runner import run_forked

            _child_main(run_forked, config, go_r, status_w)
        for fd in (go_r, status_w, stdout, stderr):
            os.close(fd)
        self.tasks[pid] = r
        r.spawned(task_id, pid, go_w, status_r)
        r.send(("spawned", token, pid), [go_w, status_r])

    # -- compiles ------------------------------------------------------------------------------
    def _compile(
        self,
        r: ShimRecord,
        token: int,
        items: list[tuple[str, str]],
        cache: str,
        harvest: tuple[str, str, list[str]] | None,
    ) -> None:
        left = set()
        for digest, wasm in items:
            waiters = self.compiles.get(digest)
            if waiters is None:
                waiters = self.compiles[digest] = []
                log.info("compiling %s for this node", digest)
                pid = fork_child([], b"wasmlet-compile", stdio=(1, 2))
                if pid == 0:
                    from .precompile import compile_to_cache

                    _child_main(compile_to_cache, digest, wasm, cache, harvest)
                self.compilers[pid] = digest
            waiters.append((r, token))
            left.add(digest)
        self.tokens[(r.pid, token)] = left
        if not left:
            r.send(("compiled", token))

    def _compiled(self, digest: str) -> None:
        for r, token in self.compiles.pop(digest, []):
            left = self.tokens.get((r.pid, token))
            if left is not None:
                left.discard(digest)
                if not left:
                    del self.tokens[(r.pid, token)]
                    r.send(("compiled", token))

    # -- children that exit ------------------------------------------------------------------
    def _reap(self, _: object) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 512):
                pass
        for pid, status in reaped():
            code = _exit_code(status)
            if pid in self.compilers:
                self._compiled(self.compilers.pop(pid))
            elif pid in self.shims:
                self._shim_exited(self.shims.pop(pid), code)
            elif pid in self.tasks:
                owner = self.tasks.pop(pid)
                owner.task_exited(pid, code)
                owner.send(("exited", pid, code))
            else:  # a runc container whose shim died (we are the subreaper): tell them all
                for record in self.shims.values():
                    record.send(("exited", pid, code))

    def _shim_exited(self, r: ShimRecord, code: int) -> None:
        self._drain(r)  # a last look at what it sent before it died
        if r.channel is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(r.channel)
            r.channel.close()
        for key in [k for k in self.tokens if k[0] == r.pid]:
            del self.tokens[key]
        if r.shut_down:
            log.info("shim %d exited (%d)", r.pid, code)
            r.close()
            return
        log.warning("shim %d died (status %d): a successor takes over its tasks", r.pid, code)
        self._fork(r, r.successor_state())


def _launcher_request(bundle: Path) -> dict[str, Any]:
    """The request the shell launcher left in `bundle` (as launch.start sends it)."""
    from .main import parse

    args = [os.fsdecode(a) for a in (bundle / "wasmlet-start.args").read_bytes().split(b"\0")]
    flags = parse(args[:-1] if args and not args[-1] else args)
    env = {}
    for token in shlex.split((bundle / "wasmlet-start.env").read_text()):  # `export -p`
        name, eq, value = token.partition("=")
        if eq and name.isidentifier():
            env[name] = value
    return {
        "id": flags.id, "namespace": flags.namespace, "address": flags.address,
        "publish_binary": flags.publish_binary, "debug": flags.debug, "bundle": str(bundle),
        "env": env, "options": (bundle / "wasmlet-start.opts").read_bytes(),
    }  # fmt: skip


def socket_path(settings: ShimSettings, address: str, namespace: str) -> Path:
    key = hashlib.sha256(f"{address}\0{namespace}".encode()).hexdigest()[:32]
    return settings.socket_dir / key


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _runc_shim(spec: Spec | None, request: dict[str, Any]) -> str | None:
    """containerd's runc shim for a pod's sandbox (pause) container, when it can take it: a
    sandbox is always a Linux program, and containerd's CRI (in its default `podsandbox`
    mode) starts each container of a pod through `start` on its own, so the pod's Wasm
    containers still come here. Not when runtime options were given (they are wasmlet's,
    and runc's shim would reject them) or WASMLET_SHIM_RUNC_SHIM is empty."""
    if spec is None or request.get("options"):
        return None
    if not any(spec.annotations.get(k) == v for k, v in SANDBOX_TYPES.items()):
        return None
    env = request["env"]
    configured = env.get("WASMLET_SHIM_RUNC_SHIM")
    if configured is not None:
        return configured or None
    for directory in env.get("PATH", "/usr/local/bin:/usr/bin:/bin").split(":"):
        candidate = os.path.join(directory or ".", RUNC_SHIM)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _child_main(main: Any, *args: Any) -> None:
    """Run a forked child's `main` and exit with its code: never back into the template's
    loop, not even through an exception (and no finalizer closes the template's objects)."""
    code = 1
    try:
        code = main(*args)
    except BaseException:
        with contextlib.suppress(BaseException):
            logging.getLogger("wasmlet.shim").exception("%s failed", main.__name__)
    finally:
        os._exit(code)


def fork_child(keep: list[int], name: bytes, stdio: tuple[int, int] | None = None) -> int:
    """fork(); in the child, a clean start: its own session, default signal handling, no
    inherited descriptors but `keep`, /dev/null as stdin and as stdout and stderr unless
    `stdio` gives them, its name in `ps`."""
    pid = os.fork()
    if pid != 0:
        return pid
    try:
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        out, err = stdio or (null, null)
        for fd, target in ((0, null), (1, out), (2, err)):
            if fd != target:
                os.dup2(target, fd)
        low = 3
        for fd in sorted({*keep, null} - {0, 1, 2}):
            os.closerange(low, fd)
            low = fd + 1
        os.closerange(low, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        os.close(null)
        for fd in keep:
            if fd > 2:
                os.set_inheritable(fd, False)
        linux.set_name(name)
    except BaseException:
        os._exit(127)
    return 0


def preload() -> None:
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError as e:  # an optional client library that is not installed
            log.info("not preloaded: %s (%s)", name, e)


def serve(path: str) -> int:
    # The forked processes' logging, set up once here: the root logger is the app's (its
    # stderr: the template's log here, the task's output in a task), the shim's loggers
    # only get a handler in the shim. Setting a level walks every logger there is, so a
    # task that did it would write to (and so copy) every page holding one.
    configure_logging("info")
    for name, level in (("wasmlet.shim", logging.INFO), ("grpclib", logging.WARNING),
                        ("asyncio", logging.WARNING), ("hpack", logging.WARNING),
                        ("h2", logging.WARNING)):  # fmt: skip
        logging.getLogger(name).setLevel(level)
    lock = os.open(path.removesuffix(".sock") + ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # another template is starting or running: the launcher waits for it
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # a few descriptors per task
    linux.set_name(b"wasmlet-tmpl")  # (15 bytes at most) what `ps` and the tests look for
    preload()
    linux.set_child_subreaper()  # a dead shim's runc containers end up here, and are reaped
    gc.collect()
    gc.freeze()  # the collector never touches (so never copies) what the children share
    control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tmp = f"{path}.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    control.bind(tmp)
    os.chmod(tmp, 0o600)
    control.listen(512)
    os.replace(tmp, path)  # only now can a launcher connect: everything is imported
    base = path.removesuffix(".sock")
    stale = _stale_requests(base + ".fifo")
    os.mkfifo(base + ".fifo", 0o600)
    fifo = os.open(base + ".fifo", os.O_RDWR | os.O_NONBLOCK)  # never at end of file
    Path(base + ".pid").write_text(f"{os.getpid()}\n")  # the shell launcher reads it
    template = Template(control, fifo)
    template._partial = stale
    template._fifo(None)
    template.run()
    return 0


def _stale_requests(path: str) -> bytes:
    """What launchers wrote to a dead template's FIFO, then remove it: a launcher that
    found it alive just before it died is blocked opening its FIFO, until a reader comes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return b""
    data = b""
    try:
        time.sleep(0.05)  # the blocked writers write once we opened
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(fd, 65536):
                data += chunk
    finally:
        os.close(fd)
        os.unlink(path)
    return data


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1]))
