"""Message-triggered apps in `wasmlet host` (the real server process) against the machine's
real Redis (127.0.0.1:6379), with the spin-sdk Python component
guests/components/python-redis/app.py, which answers each message by publishing
`got <message>` to its reply channel.

An app with a Redis trigger is subscribed as soon as its directory appears (not on a first
request), answers messages while it is there, moves to its new channel when it changes, and
unsubscribes when it is removed or the host stops; with several workers the first runs it."""

from __future__ import annotations

import json
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import redis
from paho.mqtt.enums import CallbackAPIVersion
from support.component_guests import component
from support.env import IN_CI, TESTBED
from support.server import Server, start_host, write_app
from support.triggers import Replies, redis_client

pytestmark = pytest.mark.timeout(600)

COMPILE = 300  # seconds: the first load compiles the Python component (about a minute)


def manifest(name: str, channel: str, reply: str, http: bool = False) -> str:
    routes = (
        '[[trigger.http]]\nroute = "/..."\ncomponent = "web"\nexecutor = { type = "wagi" }\n'
        f'[component.web]\nsource = "{TESTBED}"\n'
        if http
        else ""
    )
    return f"""
spin_manifest_version = 2
[application]
name = "{name}"
[application.trigger.redis]
address = "redis://127.0.0.1:6379"
[[trigger.redis]]
channel = "{channel}"
component = "echo"
[component.echo]
source = "{component("python-redis")}"
allowed_outbound_hosts = ["redis://127.0.0.1:6379"]
[component.echo.variables]
redis_address = "redis://127.0.0.1:6379"
reply_channel = "{reply}"
{routes}"""


@pytest.fixture(scope="module")
def client() -> Iterator[redis.Redis]:
    c = redis_client()
    yield c
    c.close()


@pytest.fixture
def host(cache_dir: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(apps: Path, *args: str) -> Server:
        server = start_host(apps, "--scan-interval", "0.2", *args, cache_dir=cache_dir)
        started.append(server)
        return server

    yield start
    for s in started:
        s.stop()


def numsub(client: redis.Redis, channel: str) -> int:
    return int(dict(client.pubsub_numsub(channel)).get(channel.encode(), 0))


def client_names(client: redis.Redis) -> list[str]:
    return [str(c.get("name")) for c in client.client_list()]  # type: ignore[no-untyped-call]


def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)
    return result


def status(server: Server) -> dict[str, Any]:
    r = server.get("/.well-known/wasmlet/apps")
    assert r.status_code == 200
    return json.loads(r.text)  # type: ignore[no-any-return]


def app_status(server: Server, name: str) -> dict[str, Any]:
    return next((a for a in status(server)["apps"] if a["name"] == name), {})


def test_an_app_is_subscribed_while_it_is_in_the_directory(
    tmp_path: Path, client: redis.Redis, host: Callable[..., Server]
) -> None:
    apps = tmp_path / "apps"
    apps.mkdir()
    tag = uuid.uuid4().hex[:8]
    name, channel, reply = f"orders-{tag}", f"in-{tag}", f"out-{tag}"
    replies = Replies(client, reply)
    server = host(apps)
    try:
        # added: subscribed with no request, under the app's own connection name
        write_app(apps / "orders", manifest(name, channel, reply))
        until(lambda: numsub(client, channel) == 1, COMPILE, "subscribed")
        assert f"wasmlet:{name}" in client_names(client)
        described = app_status(server, "orders")
        assert described["status"] == "ready" and described["requests"] == 0
        assert (described["triggers"], described["messages"]) == (["redis"], "subscribed")
        for i in range(10):
            client.publish(channel, f"m{i}")
        assert [replies.next() for _ in range(10)] == [f"got m{i}".encode() for i in range(10)]

        # changed (a new channel): the new version subscribes, the old one unsubscribes
        moved = f"in2-{tag}"
        write_app(apps / "orders", manifest(name, moved, reply))
        until(lambda: numsub(client, moved) == 1, 60, "the new version subscribed")
        until(lambda: numsub(client, channel) == 0, 10, "the old version unsubscribed")
        assert app_status(server, "orders")["version"] == 2
        client.publish(moved, "moved")
        assert replies.next() == b"got moved"

        # removed: unsubscribed, its connection closed
        shutil.rmtree(apps / "orders")
        until(lambda: numsub(client, moved) == 0, 10, "unsubscribed once removed")
        until(lambda: f"wasmlet:{name}" not in client_names(client), 10, "connection closed")
        assert app_status(server, "orders") == {}
        assert server.alive()
    finally:
        replies.close()


def test_http_and_redis_in_one_hosted_app_and_sigterm_unsubscribes(
    tmp_path: Path, client: redis.Redis, host: Callable[..., Server]
) -> None:
    apps = tmp_path / "apps"
    tag = uuid.uuid4().hex[:8]
    name, channel, reply = f"both-{tag}", f"in-{tag}", f"out-{tag}"
    write_app(apps / "both", manifest(name, channel, reply, http=True))
    replies = Replies(client, reply)
    server = host(apps)
    try:
        until(lambda: numsub(client, channel) == 1, COMPILE, "subscribed at startup")
        r = server.get("/?x=web", headers={"host": "both.localhost"})
        assert r.status_code == 200 and "x=web" in r.text
        client.publish(channel, "hi")
        assert replies.next() == b"got hi"
        assert server.stop() == 0
        assert numsub(client, channel) == 0
        assert f"wasmlet:{name}" not in client_names(client)
    finally:
        replies.close()


def test_with_several_workers_the_first_runs_the_triggers(
    tmp_path: Path, client: redis.Redis, host: Callable[..., Server]
) -> None:
    """`--workers 2`: worker 0 subscribes (each message handled once), and every worker
    serves the app's HTTP routes."""
    channel, reply = f"in-{uuid.uuid4().hex}", f"out-{uuid.uuid4().hex}"
    apps = tmp_path / "apps"
    write_app(apps / "both", manifest("both", channel, reply, http=True))
    replies = Replies(client, reply)
    server = host(apps, "--workers", "2")
    try:
        until(lambda: numsub(client, channel) == 1, COMPILE, "subscribed")
        with server.client() as c:
            for _ in range(20):  # over both workers
                r = c.get("/", headers={"host": "both.localhost"})
                assert r.status_code == 200, r.text
        for i in range(5):
            client.publish(channel, f"m{i}".encode())
        assert sorted(replies.next() for _ in range(5)) == [f"got m{i}".encode() for i in range(5)]
        time.sleep(1.0)  # a second subscriber's replies would be here by now
        assert replies.pubsub.get_message(timeout=0.5) is None
        assert numsub(client, channel) == 1
        assert server.stop() == 0
        assert numsub(client, channel) == 0
    finally:
        replies.close()


MQTT_APP = """
spin_manifest_version = 2
[application]
name = "{name}"
[application.trigger.mqtt]
address = "mqtt://127.0.0.1:1883"
username = ""
password = ""
keep_alive_interval = "30"
[[trigger.mqtt]]
component = "echo"
topic = "{topic}"
qos = "1"
[component.echo]
source = "{source}"
"""


def test_an_mqtt_app_consumes_while_it_is_in_the_directory(
    tmp_path: Path, host: Callable[..., Server]
) -> None:
    """The guest (guests/components/python-mqtt) prints `got <payload> on <topic>`."""
    try:
        socket.create_connection(("127.0.0.1", 1883), timeout=2).close()
    except OSError as e:
        if IN_CI:
            pytest.fail(f"Mosquitto is not running on 127.0.0.1:1883 ({e}); required under CI=true")
        pytest.skip(f"Mosquitto is not running on 127.0.0.1:1883 ({e})")
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2)
    publisher.connect("127.0.0.1", 1883)
    publisher.loop_start()
    apps = tmp_path / "apps"
    apps.mkdir()
    topic = f"wasmlet/host/{uuid.uuid4().hex}"
    server = host(apps)
    try:
        text = MQTT_APP.format(name="sensors", topic=topic, source=component("python-mqtt"))
        write_app(apps / "sensors", text)
        until(lambda: app_status(server, "sensors").get("messages") == "subscribed", COMPILE,
              "subscribed")  # fmt: skip
        for i in range(3):
            publisher.publish(topic, f"m{i}".encode(), qos=1).wait_for_publish(timeout=10)
        until(lambda: f"got m2 on {topic}" in "".join(server.output), 30, "handled")
        got = [line for line in server.output if f" on {topic}" in line]
        assert [line.split("got ")[1].split()[0] for line in got] == ["m0", "m1", "m2"]

        shutil.rmtree(apps / "sensors")
        until(lambda: app_status(server, "sensors") == {}, 10, "removed")
        time.sleep(0.5)  # (its triggers stop right after it leaves the status)
        publisher.publish(topic, b"after", qos=1).wait_for_publish(timeout=10)
        time.sleep(2)
        assert f"got after on {topic}" not in "".join(server.output)
    finally:
        publisher.loop_stop()
        publisher.disconnect()


def test_a_message_app_that_cannot_be_built_is_reported_and_the_others_serve(
    tmp_path: Path, host: Callable[..., Server]
) -> None:
    """Built when added, so a component without the Redis export fails at once (not on a
    first request): the status says why; the host goes on serving the other apps."""
    apps = tmp_path / "apps"
    write_app(
        apps / "broken",
        f'spin_manifest_version = 2\n[application]\nname = "broken"\n'
        f'[application.trigger.redis]\naddress = "redis://127.0.0.1:6379"\n'
        f'[[trigger.redis]]\nchannel = "never"\ncomponent = "c"\n'
        f'[component.c]\nsource = "{component("hello")}"\n',
    )
    write_app(
        apps / "web",
        f'spin_manifest_version = 2\n[application]\nname = "web"\n[[trigger.http]]\n'
        f'route = "/..."\ncomponent = "t"\nexecutor = {{ type = "wagi" }}\n'
        f'[component.t]\nsource = "{TESTBED}"\n',
    )
    server = host(apps)
    broken = until(
        lambda: (
            app_status(server, "broken").get("status") == "failed" and app_status(server, "broken")
        ),
        30,
        "reported",
    )
    assert broken["messages"] == "failed" and broken["requests"] == 0
    assert "inbound-redis" in broken["error"], broken
    assert server.get("/", headers={"host": "web.localhost"}).status_code == 200
    assert server.alive()
