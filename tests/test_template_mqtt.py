"""`wasmlet new mqtt-py` and `wasmlet add mqtt-py`: an MQTT message handler on the MQTT trigger
plugin's WIT, from the template through `wasmlet build` (componentize-py from wasmlet's tools
venv) to messages published to the machine's real Mosquitto (127.0.0.1:1883) and handled."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from support.env import IN_CI, TOOLS_CACHE, path_without
from support.server import run_cli
from support.triggers import Up

from wasmlet.scaffold import list_templates

ADDRESS = "mqtt://127.0.0.1:1883"


def require_broker() -> None:
    try:
        socket.create_connection(("127.0.0.1", 1883), timeout=2).close()
    except OSError as e:
        if IN_CI:
            pytest.fail(f"Mosquitto is not running on 127.0.0.1:1883 ({e}); required under CI=true")
        pytest.skip(f"Mosquitto is not running on 127.0.0.1:1883 ({e})")


def publish(topic: str, payload: bytes) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", 1883)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1).wait_for_publish(timeout=10)
    finally:
        client.loop_stop()
        client.disconnect()


def test_mqtt_py_is_listed() -> None:
    assert "mqtt-py" in list_templates()
    r = run_cli("new", "--list")
    assert r.returncode == 0, r.stderr
    assert "  mqtt-py " in r.stdout
    assert "Spin's MQTT trigger (its WIT, componentize-py)" in r.stdout


def test_the_mqtt_py_template_builds_and_handles_messages(tmp_path: Path, cache_dir: Path) -> None:
    require_broker()
    r = run_cli("new", "mqtt-py", "on-message", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    app = tmp_path / "on-message"
    assert (app / "wit" / "mqtt.wit").is_file()  # the plugin's WIT travels with the app
    r = run_cli("add", "mqtt-py", "second", cwd=app)  # a second handler, on the topic "second"
    assert r.returncode == 0, r.stderr
    env = {"WASMLET_CACHE_DIR": str(TOOLS_CACHE), "PATH": path_without("componentize-py")}
    r = run_cli("build", cwd=app, env=env, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    topic = f"wasmlet/{uuid.uuid4().hex}"
    up = Up(
        app,
        cache_dir,
        env={"SPIN_VARIABLE_MQTT_ADDRESS": ADDRESS, "SPIN_VARIABLE_MQTT_TOPIC": f"{topic}/#"},
    )
    try:
        assert up.logged(f"subscribed to {topic}/# on {ADDRESS}", timeout=300), up.log
        assert up.logged(f"subscribed to second on {ADDRESS}", timeout=60), up.log
        publish(f"{topic}/kitchen", b"hello template")
        assert up.logged(f"on-message got hello template on {topic}/kitchen", timeout=30), up.log
        publish("second", b"to the added one")
        assert up.logged("second got to the added one on second", timeout=30), up.log
    finally:
        up.stop()
