"""The node template's pieces without containerd: the ttrpc observer and the hand-over to a
successor, the launchers' conversation with a template, the cheap `delete`, the epoch ticking
only while guests run, uvicorn's quiet main loop, and a template that preloads all a task
imports."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from support.env import ROOT

from wasmlet.shim import runner
from wasmlet.shim.cleanup import delete_response
from wasmlet.shim.main import FlagError, parse
from wasmlet.shim.proto import shim_pb2, ttrpc_pb2
from wasmlet.shim.ttrpc import HEADER, Client, Method, Server

SERVICE = "containerd.task.v2.Task"


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def connected(self, conn: int, sock: socket.socket) -> None:
        self.events.append(("connected", conn, sock.fileno() >= 0))

    def closed(self, conn: int) -> None:
        self.events.append(("closed", conn))

    def begin(self, conn: int, stream: int, method: str, envelope: bytes) -> None:
        self.events.append(("begin", conn, stream, method, len(envelope) > 0))

    def end(self, conn: int, stream: int, ok: bool) -> None:
        self.events.append(("end", conn, stream, ok))


def test_ttrpc_observer_sees_connections_and_calls(tmp_path: Path) -> None:
    async def run() -> None:
        seen = Recorder()

        async def state(req: shim_pb2.StateRequest) -> shim_pb2.StateResponse:
            return shim_pb2.StateResponse(id=req.id, pid=42)

        server = Server(observer=seen)
        server.register(SERVICE, {"State": Method(shim_pb2.StateRequest, state)})
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(tmp_path / "t.sock"))
        sock.listen()
        await server.start(sock)
        client = Client(str(tmp_path / "t.sock"))
        got = await client.call(SERVICE, "State", shim_pb2.StateRequest(id="a"),
                                shim_pb2.StateResponse, timeout=2)  # fmt: skip
        assert got.pid == 42
        await client.close()
        await asyncio.sleep(0.05)
        assert seen.events == [
            ("connected", 1, True),
            ("begin", 1, 1, "State", True),
            ("end", 1, 1, True),
            ("closed", 1),
        ]
        await server.close()

    asyncio.run(run())


def test_ttrpc_adopted_connection_answers_the_calls_left_pending() -> None:
    """A successor takes a dead shim's connection over: the call the shim was handling is
    answered from its recorded request, then the connection is served as usual."""

    async def run() -> None:
        async def wait(req: shim_pb2.WaitRequest) -> shim_pb2.WaitResponse:
            return shim_pb2.WaitResponse(exit_status=137)

        server = Server()
        server.register(SERVICE, {"Wait": Method(shim_pb2.WaitRequest, wait)})
        ours, theirs = socket.socketpair()
        envelope = ttrpc_pb2.Request(
            service=SERVICE, method="Wait", payload=shim_pb2.WaitRequest(id="a").SerializeToString()
        ).SerializeToString()
        await server.adopt(theirs, 9, [(5, envelope)])
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        length, stream, kind, _ = HEADER.unpack(await reader.readexactly(HEADER.size))
        response = ttrpc_pb2.Response.FromString(await reader.readexactly(length))
        assert (stream, kind) == (5, 2)
        assert shim_pb2.WaitResponse.FromString(response.payload).exit_status == 137
        writer.close()
        await server.close()

    asyncio.run(run())


def test_flags_are_go_style_and_unknown_ones_are_refused() -> None:
    flags = parse(["-namespace=k8s.io", "-id", "x", "-bundle", "/b", "delete"])
    assert (flags.namespace, flags.id, flags.bundle, flags.action) == (
        "k8s.io",
        "x",
        "/b",
        "delete",
    )
    with pytest.raises(FlagError, match="unknown flag"):
        parse(["-nope", "start"])
    with pytest.raises(FlagError, match="needs a value"):
        parse(["-id"])


def test_delete_without_state_answers_without_importing_protobuf(tmp_path: Path) -> None:
    """containerd runs `delete` after every shim exits and waits for it: with nothing left
    to clean up it answers at once, with a DeleteResponse it can parse."""
    code = (
        "import sys; from wasmlet.shim.main import main; rc = main(['-id', 'x', '-bundle', "
        f"{str(tmp_path)!r}, 'delete']); "
        "assert not [m for m in sys.modules if m.startswith('google')], 'protobuf imported'; "
        "sys.exit(rc)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    response = shim_pb2.DeleteResponse.FromString(out.stdout)
    assert response.exit_status == 137 and response.exited_at.seconds > 0
    assert shim_pb2.DeleteResponse.FromString(delete_response(42, 3, 1.5)).pid == 42


class FakeEngine:
    def __init__(self) -> None:
        self.ticks = 0
        self.engine = self

    def increment_epoch(self) -> None:
        self.ticks += 1


def test_the_pool_advances_the_epoch_only_while_guests_run(monkeypatch: Any) -> None:
    monkeypatch.setattr(runner.TickingPool, "LINGER", 0.1)
    engine = FakeEngine()
    pool = runner.TickingPool(engine, 2)  # type: ignore[arg-type]
    try:
        time.sleep(0.1)
        assert engine.ticks == 0  # idle: no wake-ups at all
        pool.submit(time.sleep, 0.2).result()
        assert engine.ticks >= 5  # every 10 ms while the "guest" ran
        time.sleep(0.3)  # then for LINGER, then parked
        parked = engine.ticks
        time.sleep(0.2)
        assert engine.ticks == parked
        pool.submit(time.sleep, 0.05).result()
        assert engine.ticks > parked  # woken again
    finally:
        pool.shutdown()


class StubApp:
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


class StubServed:
    def asgi(self) -> Any:
        return StubApp()

    def grace(self) -> float | None:
        return 1.0

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass

    def banner(self, url: str, out: Any) -> None:
        print(f"Serving {url}", file=out)


def test_the_task_server_wakes_once_a_second_and_stops_at_once() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    with tempfile.TemporaryFile("w+") as out:
        server = runner.TaskServer(StubServed(), sock, out)  # type: ignore[arg-type]
        ticks: list[int] = []
        on_tick = server.server.on_tick

        async def counted(counter: int) -> bool:
            ticks.append(counter)
            return await on_tick(counter)

        server.server.on_tick = counted  # type: ignore[method-assign]
        thread = threading.Thread(target=server.run)
        thread.start()
        time.sleep(2.5)
        assert 2 <= len(ticks) <= 4  # uvicorn's own loop ticks 25 times in 2.5 s
        assert all(t % 10 == 0 for t in ticks)  # each one refreshes the Date header
        started = time.monotonic()
        server.stop()
        thread.join(5)
        assert not thread.is_alive() and time.monotonic() - started < 0.5
        assert server.started


def test_launcher_and_template_hand_a_pod_sandbox_to_runcs_shim(tmp_path: Path) -> None:
    """The Python launcher starts the node's template on first use; the template answers a
    pod's sandbox (pause) container with containerd's runc shim (here `echo`), recording it
    in the bundle so `delete` goes there too. The shell launcher (what `wasmlet node
    install` installs) asks the running template through its FIFO and execs the answer
    with the same arguments."""
    from wasmlet.shim.launch import ask
    from wasmlet.shim.nodepaths import launcher, template_socket

    env = {**os.environ, "WASMLET_SHIM_SOCKET_DIR": str(tmp_path / "s"),
           "WASMLET_SHIM_STATE_DIR": str(tmp_path / "state"),
           "WASMLET_SHIM_RUNC_SHIM": "/bin/echo"}  # fmt: skip
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    annotations = {"io.kubernetes.cri.container-type": "sandbox"}
    (bundle / "config.json").write_text(json.dumps({"annotations": annotations}))
    request = {"id": "pause", "namespace": "k8s.io", "address": "", "publish_binary": "",
               "debug": False, "bundle": str(bundle), "env": env, "options": b""}  # fmt: skip
    old = os.environ.copy()
    os.environ.update(env)  # the launcher starts the template with its own environment
    try:
        assert ask(template_socket(env), request) == {"exec": "/bin/echo"}
        assert (bundle / "wasmlet-runc-shim").read_text() == "/bin/echo"
        script = tmp_path / "containerd-shim-wasmlet-v2"
        script.write_text(launcher('echo "python $*"; exit 9'))
        sandbox = tmp_path / "sandbox"
        sandbox.mkdir()
        (sandbox / "config.json").write_text(json.dumps({"annotations": annotations}))
        out = subprocess.run(["sh", str(script), "-id", "p2", "start"], cwd=sandbox, env=env,
                             input=b"", capture_output=True, timeout=20)  # fmt: skip
        assert out.stdout == b"-id p2 start\n", out  # echo, exec'd by the shell launcher
        assert (sandbox / "wasmlet-start.args").read_bytes() == b"-id\0p2\0start\0"
        out = subprocess.run(["sh", str(script), "-id", "p2", "-bundle", "/b", "delete"],
                             env=env, capture_output=True, timeout=20)  # fmt: skip
        assert out.stdout == b"python -id p2 -bundle /b delete\n"  # not a start: Python
    finally:
        os.environ.clear()
        os.environ.update(old)
        _stop_template(tmp_path)


def test_records_hand_over_created_tasks_and_pending_calls() -> None:
    from wasmlet.shim.records import ShimRecord

    def envelope(method: str, message: Any) -> bytes:
        request = ttrpc_pb2.Request(service=SERVICE, method=method)
        request.payload = message.SerializeToString()
        return request.SerializeToString()

    a, b = socket.socketpair()
    record = ShimRecord(1, Path("/x"), {}, a)
    create = envelope("Create", shim_pb2.CreateTaskRequest(id="t1", bundle="/b"))
    record.note(("begin", 1, 1, "Create", create), [])
    record.note(("end", 1, 1, True), [])
    record.note(("begin", 1, 3, "Start", envelope("Start", shim_pb2.StartRequest(id="t1"))), [])
    record.note(("end", 1, 3, True), [])
    wait = envelope("Wait", shim_pb2.WaitRequest(id="t1"))
    record.note(("begin", 1, 5, "Wait", wait), [])
    record.note(("begin", 1, 7, "Create", envelope("Create", shim_pb2.CreateTaskRequest(id="t2"))),
                [])  # fmt: skip
    state = record.successor_state()
    assert list(state["tasks"]) == ["t1"]  # t2's Create was still being handled
    assert state["tasks"]["t1"]["started"] and state["tasks"]["t1"]["create"] == create
    assert (1, 5, "Wait", wait) in state["pending"]
    record.note(("begin", 1, 9, "Delete", envelope("Delete", shim_pb2.DeleteRequest(id="t1"))),
                [])  # fmt: skip
    record.note(("end", 1, 9, True), [])
    assert record.successor_state()["tasks"] == {}
    record.close()
    b.close()


def _stop_template(tmp_path: Path) -> None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"wasmlet.shim.template" in cmdline and str(tmp_path).encode() in cmdline:
            os.kill(int(entry.name), signal.SIGKILL)


PRELOAD_CHECK = """
import os, sys, socket, threading, time, gc
from pathlib import Path
from wasmlet.shim import template
template.preload()
from wasmlet.shim import runner
from wasmlet.shim.runnerconfig import RunnerConfig
from wasmlet.loader import load_app
app = load_app(Path(sys.argv[1]))
before = set(sys.modules)
read, write = os.pipe()
if os.fork() == 0:
    config = RunnerConfig("x", rootfs=sys.argv[2], work=sys.argv[2], cache_dir=sys.argv[3],
                          env={"SPIN_HTTP_LISTEN_ADDR": "127.0.0.1:0"})
    served, sock = runner.build(config, app)
    server = runner.TaskServer(served, sock, open(os.devnull, "w"))
    port = sock.getsockname()[1]
    def ask():
        try:
            time.sleep(0.5)
            with socket.create_connection(("127.0.0.1", port)) as c:
                c.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
                answer = b""
                while chunk := c.recv(4096):
                    answer += chunk
            assert b"Hello" in answer, answer
        finally:
            server.stop()
    threading.Thread(target=ask).start()
    server.run()
    os.write(write, " ".join(sorted(set(sys.modules) - before)).encode() or b"-")
    os._exit(0)
print(os.read(read, 65536).decode())
"""


def test_the_template_preloads_what_a_task_imports(tmp_path: Path) -> None:
    """A task forked from the template imports nothing more to build, serve and answer
    (what it would import is private to it: memory and time on every start)."""
    out = subprocess.run(
        [sys.executable, "-c", PRELOAD_CHECK, str(ROOT / "examples" / "hello"), str(tmp_path),
         str(tmp_path / "cache")],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    assert out.stdout.strip() == "-", f"imported after the fork: {out.stdout}"
