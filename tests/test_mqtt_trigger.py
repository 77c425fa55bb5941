"""The MQTT trigger against the machine's real Mosquitto (127.0.0.1:1883): a componentize-py
component on the MQTT plugin's WIT (guests/components/python-mqtt/) prints each message it
gets; `wasmlet up` runs as a real process."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from support.component_guests import component
from support.env import IN_CI
from support.server import run_cli, start_server, write_app
from support.triggers import TcpProxy, Up

ADDRESS = "mqtt://127.0.0.1:1883"


@pytest.fixture(scope="module")
def publisher() -> Iterator[mqtt.Client]:
    try:
        socket.create_connection(("127.0.0.1", 1883), timeout=2).close()
    except OSError as e:
        if IN_CI:
            pytest.fail(f"Mosquitto is not running on 127.0.0.1:1883 ({e}); required under CI=true")
        pytest.skip(f"Mosquitto is not running on 127.0.0.1:1883 ({e})")
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", 1883)
    client.loop_start()
    yield client
    client.loop_stop()
    client.disconnect()


def publish(client: mqtt.Client, topic: str, payload: bytes, qos: int = 1) -> None:
    client.publish(topic, payload, qos=qos).wait_for_publish(timeout=10)


def manifest(topic: str, qos: str = "1", http: bool = False, extra: str = "") -> str:
    routes = (
        '[[trigger.http]]\nroute = "/hello"\ncomponent = "hello"\nexecutor = { type = "wagi" }\n'
        '[component.hello]\nsource = "{hello}"\n'
        if http
        else ""
    )
    return f"""
spin_manifest_version = 2
[application]
name = "mqtt-app"
[application.trigger.mqtt]
address = "{{{{ broker }}}}"
username = ""
password = ""
keep_alive_interval = "30"
[variables]
broker = {{ default = "{ADDRESS}" }}
[[trigger.mqtt]]
component = "echo"
topic = "{topic}/#"
qos = "{qos}"
{extra}
[component.echo]
source = "{component("python-mqtt")}"
{routes}"""


@pytest.fixture(scope="module")
def running(
    publisher: mqtt.Client, tmp_path_factory: pytest.TempPathFactory, cache_dir: Path
) -> Iterator[tuple[Up, str]]:
    topic = f"wasmlet/{uuid.uuid4().hex}"
    up = Up(write_app(tmp_path_factory.mktemp("mqtt-app"), manifest(topic)), cache_dir)
    try:
        assert up.logged(f"subscribed to {topic}/# on {ADDRESS}", timeout=300), up.log
        yield up, topic
    finally:
        up.stop()


def test_banner_and_no_http_listener(running: tuple[Up, str]) -> None:
    up, topic = running
    assert f"MQTT {ADDRESS} topic '{topic}/#' (QoS 1): [echo]" in up.log
    assert "Serving http" not in up.log


def test_a_message_runs_the_component_with_its_topic(
    publisher: mqtt.Client, running: tuple[Up, str]
) -> None:
    up, topic = running
    publish(publisher, f"{topic}/a", b"hello")
    assert up.logged(f"[echo] got hello on {topic}/a"), up.log


def test_qos_0_and_many_messages_in_order(publisher: mqtt.Client, running: tuple[Up, str]) -> None:
    up, topic = running
    for i in range(30):
        publish(publisher, f"{topic}/n", f"n{i}".encode(), qos=0 if i % 2 else 1)
    assert up.logged(f"[echo] got n29 on {topic}/n", timeout=30), up.log
    lines = [line for line in up.log.splitlines() if f"on {topic}/n" in line]
    assert [line.split("got ")[1].split()[0] for line in lines] == [f"n{i}" for i in range(30)]


def test_failing_and_trapping_handlers_are_logged_and_consuming_goes_on(
    publisher: mqtt.Client, running: tuple[Up, str]
) -> None:
    up, topic = running
    for payload in (b"fail", b"trap", b"after"):
        publish(publisher, f"{topic}/f", payload)
    assert up.logged(f"[echo] got after on {topic}/f"), up.log
    assert f"component echo handler failed on a message from {topic}/f" in up.log
    assert "component echo trapped" in up.log
    assert up.proc.poll() is None


def test_http_and_mqtt_in_one_app(publisher: mqtt.Client, tmp_path: Path, cache_dir: Path) -> None:
    topic = f"wasmlet/{uuid.uuid4().hex}"
    server = start_server(
        write_app(tmp_path / "app", manifest(topic, http=True)), cache_dir=cache_dir, timeout=300
    )
    try:
        assert server.get("/hello").status_code == 200
        assert server.logged(f"subscribed to {topic}/#", timeout=30)
        publish(publisher, f"{topic}/x", b"both")
        assert server.logged(f"[echo] got both on {topic}/x"), server.log
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("replace", "error"),
    [
        (('qos = "1"', 'qos = "5"'), "trigger.mqtt[0].qos: '5' is not"),
        (('username = ""\n', ""), "application.trigger.mqtt.username: missing"),
        (('keep_alive_interval = "30"', 'keep_alive_interval = "x"'), "keep_alive_interval"),
        ((ADDRESS, "http://x"), "'http://x' is not an mqtt:// or mqtts:// URL"),
    ],
)
def test_bad_settings_name_the_key(
    tmp_path: Path, cache_dir: Path, replace: tuple[str, str], error: str
) -> None:
    text = manifest("t").replace(*replace)
    r = run_cli("up", "-f", str(write_app(tmp_path / "app", text)), "--cache-dir", str(cache_dir))
    assert r.returncode != 0
    assert error in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_a_component_without_the_export_is_named(tmp_path: Path, cache_dir: Path) -> None:
    text = manifest("t").replace(str(component("python-mqtt")), str(component("hello")))
    r = run_cli("up", "-f", str(write_app(tmp_path / "app", text)), "--cache-dir", str(cache_dir))
    assert r.returncode != 0
    assert "does not export the MQTT trigger's `handle-message`" in r.stderr, r.stderr


def test_sigterm_stops_it(tmp_path: Path, cache_dir: Path, publisher: mqtt.Client) -> None:
    topic = f"wasmlet/{uuid.uuid4().hex}"
    up = Up(write_app(tmp_path / "app", manifest(topic)), cache_dir)
    assert up.logged(f"subscribed to {topic}/#", timeout=300), up.log
    t0 = time.monotonic()
    assert up.stop() == 0
    assert time.monotonic() - t0 < 10


def test_a_lost_connection_is_reopened_and_resubscribed(
    publisher: mqtt.Client, tmp_path: Path, cache_dir: Path
) -> None:
    topic = f"wasmlet/{uuid.uuid4().hex}"
    proxy = TcpProxy(1883)
    text = manifest(topic).replace(ADDRESS, f"mqtt://127.0.0.1:{proxy.port}")
    up = Up(write_app(tmp_path / "app", text), cache_dir)
    try:
        assert up.logged(f"subscribed to {topic}/#", timeout=300), up.log
        proxy.drop()  # the broker "goes away"
        assert up.logged("disconnected", timeout=30), up.log
        deadline = time.monotonic() + 30
        while up.log.count(f"subscribed to {topic}/#") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert up.log.count(f"subscribed to {topic}/#") == 2, up.log
        publish(publisher, f"{topic}/r", b"again")
        assert up.logged(f"[echo] got again on {topic}/r"), up.log
    finally:
        up.stop()
        proxy.close()
