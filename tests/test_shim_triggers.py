"""Message-triggered apps under the containerd shim: a real containerd 1.7 (as in
test_shim_containerd.py), the machine's real Redis (127.0.0.1:6379), and the spin-sdk Python
component guests/components/python-redis/app.py, which answers each message by publishing
`got <message>` to its reply channel through outbound Redis.

What is checked: an app with no HTTP trigger consumes messages and binds no listener; Start
(so `ctr run -d`, and the kubelet's StartContainer) returns only once the app is subscribed,
so the task is RUNNING only then; SIGTERM unsubscribes and exits 0; an app that cannot
subscribe in time exits 1 with the reason; HTTP and Redis in one task."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
import redis
from fixtures.shim.containerd import Containerd
from fixtures.shim.testing import (
    containerd_with_images,
    finish,
    new_name,
    remove,
    task_pid,
    task_status,
    wait_http,
)
from paho.mqtt.enums import CallbackAPIVersion
from support.component_guests import component
from support.env import IN_CI, TESTBED, free_port
from support.server import write_app
from support.triggers import Replies, redis_client

from wasmlet.errors import WasmletError
from wasmlet.loader import load_app
from wasmlet.oci import build_image
from wasmlet.shim.runner import subscribe_timeout

pytestmark = pytest.mark.timeout(600)

ADDRESS = "redis://127.0.0.1:{port}"
IMAGE = "localhost/redis-app:1"
HTTP_IMAGE = "localhost/redis-http-app:1"
MQTT_IMAGE = "localhost/mqtt-app:1"
MQTT_APP = """
spin_manifest_version = 2
[application]
name = "mqtt-app"
[application.trigger.mqtt]
address = "mqtt://127.0.0.1:1883"
username = ""
password = ""
keep_alive_interval = "30"
[variables]
topic = {{ required = true }}
[[trigger.mqtt]]
component = "echo"
topic = "{{{{ topic }}}}"
qos = "1"
[component.echo]
source = "{source}"
"""


def manifest(http: bool) -> str:
    """A Redis-triggered app whose address and channels come from variables (so each test
    sets them through the container's environment), with an HTTP route or not."""
    routes = (
        '[[trigger.http]]\nroute = "/..."\ncomponent = "web"\nexecutor = { type = "wagi" }\n'
        f'[component.web]\nsource = "{TESTBED}"\n'
        if http
        else ""
    )
    return f"""
spin_manifest_version = 2
[application]
name = "redis-app"
[application.trigger.redis]
address = "{{{{ redis_address }}}}"
[variables]
redis_address = {{ default = "{ADDRESS.format(port=6379)}" }}
channel = {{ required = true }}
reply = {{ required = true }}
[[trigger.redis]]
channel = "{{{{ channel }}}}"
component = "echo"
[component.echo]
source = "{component("python-redis")}"
allowed_outbound_hosts = ["redis://127.0.0.1:6379"]
[component.echo.variables]
redis_address = "{ADDRESS.format(port=6379)}"
reply_channel = "{{{{ reply }}}}"
{routes}"""


@pytest.fixture(scope="module")
def client() -> Iterator[redis.Redis]:
    c = redis_client()
    yield c
    c.close()


@pytest.fixture(scope="module")
def c17(tmp_path_factory: pytest.TempPathFactory, client: redis.Redis) -> Iterator[Containerd]:
    tmp = tmp_path_factory.mktemp("images")
    mqtt = MQTT_APP.format(source=component("python-mqtt"))
    for image, text in ((IMAGE, manifest(False)), (HTTP_IMAGE, manifest(True)), (MQTT_IMAGE, mqtt)):
        stem = image.split("/")[1].replace(":", "-")
        build_image(load_app(write_app(tmp / stem, text)), tmp / f"{stem}.tar", name=image)
    for c in containerd_with_images(tmp_path_factory.mktemp("containerd")):
        for tar in tmp.glob("*.tar"):
            c.ctr("images", "import", str(tar))
        # The first task compiles the Python component for the node (about a minute): not
        # inside a test's own timings.
        name, channel = new_name(), f"warm-{uuid.uuid4().hex}"
        c.ctr(*run_args(c, name, channel, "-d"), timeout=400)
        remove(c, name)
        yield c


def run_args(c: Containerd, name: str, channel: str, *extra: str, image: str = IMAGE) -> list[str]:
    return c.run_args(
        image, name, "--net-host",
        "--env", f"SPIN_VARIABLE_CHANNEL={channel}",
        "--env", f"SPIN_VARIABLE_REPLY={channel}-reply",
        *extra,
    )  # fmt: skip


def numsub(client: redis.Redis, channel: str) -> int:
    return int(dict(client.pubsub_numsub(channel)).get(channel.encode(), 0))


def listening(pid: int) -> list[str]:
    """The TCP sockets process `pid` listens on (state 0A in /proc/net/tcp{,6})."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = str(fd.readlink())
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:
                found.append(fields[1])
    return found


def test_redis_app_is_running_only_once_subscribed_and_consumes(
    c17: Containerd, client: redis.Redis
) -> None:
    """`ctr run -d` returns after Start: the subscription is there at that moment, not
    later; messages get the guest's replies; no listener; SIGTERM unsubscribes, exit 0."""
    name, channel = new_name(), f"shim-{uuid.uuid4().hex}"
    replies = Replies(client, f"{channel}-reply")
    try:
        c17.ctr(*run_args(c17, name, channel, "-d"), timeout=120)
        assert numsub(client, channel) == 1  # at once: Start waited for it
        assert task_status(c17, name) == "RUNNING"
        for i in range(20):
            client.publish(channel, f"m{i}")
        assert [replies.next() for _ in range(20)] == [f"got m{i}".encode() for i in range(20)]
        pid = task_pid(c17, name)
        assert listening(pid) == []  # no HTTP trigger: no listener
        names = [e.get("name") for e in client.client_list()]  # type: ignore[no-untyped-call]
        assert "wasmlet:redis-app" in names
        c17.ctr("task", "kill", name)  # SIGTERM
        deadline = time.monotonic() + 20
        while task_status(c17, name) != "STOPPED" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert task_status(c17, name) == "STOPPED"
        assert numsub(client, channel) == 0
        c17.ctr("task", "delete", name)  # (ctr exits with the task's status: 0)
    finally:
        replies.close()
        remove(c17, name)


def test_start_waits_for_a_late_broker_then_a_broker_that_never_comes_fails(
    c17: Containerd, client: redis.Redis
) -> None:
    """The app's Redis is unreachable at first: the task stays CREATED (Start has not
    returned) until a broker appears on its address; with none, it exits 1 with why."""
    port = free_port()
    name, channel = new_name(), f"shim-{uuid.uuid4().hex}"
    address = f"--env=SPIN_VARIABLE_REDIS_ADDRESS={ADDRESS.format(port=port)}"
    run = c17.ctr_popen(*run_args(c17, name, channel, "-d", address))
    try:
        deadline = time.monotonic() + 60
        while task_status(c17, name) != "CREATED" and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(2)  # the trigger retries meanwhile
        assert task_status(c17, name) == "CREATED"
        assert run.poll() is None  # Start still waits
        with Proxy(port, 6379):  # the broker comes
            assert run.wait(30) == 0, finish(run)
            assert task_status(c17, name) == "RUNNING"
            assert numsub(client, channel) == 1
    finally:
        remove(c17, name)

    name = new_name()
    started = time.monotonic()
    result = c17.ctr(
        *run_args(c17, name, channel, "--rm", address, "--env", "WASMLET_SUBSCRIBE_TIMEOUT=2"),
        check=False,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "not subscribed within 2 s (WASMLET_SUBSCRIBE_TIMEOUT)" in output
    assert f"127.0.0.1:{port}" in output
    assert time.monotonic() - started < 30


def test_http_and_redis_in_one_task(c17: Containerd, client: redis.Redis) -> None:
    name, channel = new_name(), f"shim-{uuid.uuid4().hex}"
    port = free_port()
    replies = Replies(client, f"{channel}-reply")
    proc = c17.ctr_popen(
        *run_args(
            c17, name, channel, "--rm", "--env", f"SPIN_HTTP_LISTEN_ADDR=127.0.0.1:{port}",
            image=HTTP_IMAGE,
        )
    )  # fmt: skip
    try:
        assert "x=hello" in wait_http(f"http://127.0.0.1:{port}/?x=hello", proc, 120)
        deadline = time.monotonic() + 30
        while numsub(client, channel) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        client.publish(channel, "both")
        assert replies.next() == b"got both"
        assert "x=again" in httpx.get(f"http://127.0.0.1:{port}/?x=again", timeout=10).text
        c17.ctr("task", "kill", name)
        code, output = finish(proc, 30)
        assert code == 0, output
        assert f"Active Channels on {ADDRESS.format(port=6379)}:" in output
        assert numsub(client, channel) == 0
    finally:
        replies.close()
        if proc.poll() is None:
            remove(c17, name)


def test_mqtt_app_consumes_from_its_first_moment_running(c17: Containerd) -> None:
    """An MQTT-only task: RUNNING only once the broker acknowledged its subscription, so a
    QoS 1 message published the moment it is RUNNING reaches the guest (nothing keeps it for
    a client not yet subscribed); it prints each message; no listener; SIGTERM exits 0."""
    try:
        socket.create_connection(("127.0.0.1", 1883), timeout=2).close()
    except OSError as e:
        if IN_CI:
            pytest.fail(f"Mosquitto is not running on 127.0.0.1:1883 ({e}); required under CI=true")
        pytest.skip(f"Mosquitto is not running on 127.0.0.1:1883 ({e})")
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2)
    publisher.connect("127.0.0.1", 1883)
    publisher.loop_start()
    name, topic = new_name(), f"wasmlet/shim/{uuid.uuid4().hex}"
    proc = c17.ctr_popen(
        *c17.run_args(
            MQTT_IMAGE, name, "--rm", "--net-host", "--env", f"SPIN_VARIABLE_TOPIC={topic}"
        )
    )
    lines: list[str] = []
    for stream in (proc.stdout, proc.stderr):  # (the task's log, wherever it goes)
        threading.Thread(target=_collect, args=(stream, lines), daemon=True).start()
    try:
        deadline = time.monotonic() + 120
        while task_status(c17, name) != "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.02)
        publisher.publish(topic, b"first", qos=1).wait_for_publish(timeout=10)
        assert listening(task_pid(c17, name)) == []
        for i in range(5):
            publisher.publish(topic, f"m{i}".encode(), qos=1).wait_for_publish(timeout=10)
        deadline = time.monotonic() + 30
        while not any("got m4" in line for line in lines) and time.monotonic() < deadline:
            time.sleep(0.05)
        got = [line.split("got ")[1].split()[0] for line in lines if f" on {topic}" in line]
        assert got == ["first", "m0", "m1", "m2", "m3", "m4"], "".join(lines)
        c17.ctr("task", "kill", name)
        assert proc.wait(30) == 0, "".join(lines)
    finally:
        publisher.loop_stop()
        publisher.disconnect()
        if proc.poll() is None:
            remove(c17, name)


def _collect(stream: Any, lines: list[str]) -> None:
    for line in stream:
        lines.append(line)


class Proxy:
    """A loopback TCP proxy from `port` to `target`, until the block ends."""

    def __init__(self, port: int, target: int) -> None:
        self.sock = socket.create_server(("127.0.0.1", port))
        self.target = target
        self.conns: list[socket.socket] = []

    def __enter__(self) -> Proxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
        for s in self.conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
                s.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


def test_subscribe_timeout_from_the_environment() -> None:
    assert subscribe_timeout({}) == 60
    assert subscribe_timeout({"WASMLET_SUBSCRIBE_TIMEOUT": "2.5"}) == 2.5
    for bad in ("0", "-1", "soon", "inf", "nan", ""):
        with pytest.raises(WasmletError, match=r"WASMLET_SUBSCRIBE_TIMEOUT: .* seconds > 0"):
            subscribe_timeout({"WASMLET_SUBSCRIBE_TIMEOUT": bad})
