#!/usr/bin/env python3
"""Redis and MQTT messages through one `wasmlet up`: throughput and latency.

Redis: the app is tests' Redis-triggered spin-sdk component (guests/components/python-redis):
per message, a fresh instance opens an outbound Redis connection and publishes `got <message>`
to a reply channel. Measured from this process against the machine's Redis (127.0.0.1:6379):

- latency: one message at a time, publish → its reply arriving (p50/p99): the trigger's
  receive, a fresh instance, the guest's outbound Redis, the reply's delivery;
- throughput: N messages published at once, until the last reply.

The reference, in the same run: a plain Python subscriber (redis-py, no Wasm) that replies the
same way, opening a connection per message as the guest does — the floor of a Python host.

MQTT, at QoS 0 and 1: the app is tests' MQTT-triggered component on the plugin's WIT
(guests/components/python-mqtt): per message, a fresh instance prints `got <payload> on
<topic>`, which reaches wasmlet's log. Measured against the machine's Mosquitto
(127.0.0.1:1883) by reading that log line from the process's output: publish → line (p50/p99),
and N messages published at once until the last line. The reference, in the same run: a plain
Python paho-mqtt subscriber process printing the same line per message, read the same way.

    .venv/bin/python bench/triggers.py [--trigger redis|mqtt|all] [--messages 2000]
                                       [--latency 300]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(1, str(ROOT / "bench"))

import argparse  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

import paho.mqtt.client as mqtt  # noqa: E402
import redis  # noqa: E402
from _common import machine, percentiles  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from support.component_guests import build_components  # noqa: E402

ADDRESS = "redis://127.0.0.1:6379"
MQTT_ADDRESS = "mqtt://127.0.0.1:1883"

MANIFEST = """
spin_manifest_version = 2
[application]
name = "bench-redis"
[application.trigger.redis]
address = "{address}"
[[trigger.redis]]
channel = "{channel}"
component = "echo"
[component.echo]
source = "{wasm}"
allowed_outbound_hosts = ["redis://127.0.0.1:6379"]
[component.echo.variables]
redis_address = "{address}"
reply_channel = "{reply}"
"""


def reference(channel: str, reply: str, stop: threading.Event) -> None:
    """What the component does, in plain Python: receive, connect, publish, close."""
    sub = redis.Redis.from_url(ADDRESS).pubsub()
    sub.subscribe(channel)
    while not stop.is_set():
        message = sub.get_message(timeout=0.2)
        if message and message["type"] == "message":
            with redis.Redis.from_url(ADDRESS) as out:
                out.publish(reply, b"got " + message["data"])
    sub.close()


def wait_subscribed(client: redis.Redis, channel: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while dict(client.pubsub_numsub(channel)).get(channel.encode(), 0) < 1:
        if time.monotonic() > deadline:
            raise RuntimeError(f"nobody subscribed to {channel}")
        time.sleep(0.05)


def measure(
    client: redis.Redis, channel: str, reply: str, n_latency: int, n_burst: int
) -> dict[str, float]:
    replies = client.pubsub()
    replies.subscribe(reply)
    replies.get_message(timeout=5)

    def next_reply() -> bytes:
        while True:
            message = replies.get_message(timeout=30)
            if message is None:
                raise RuntimeError("no reply within 30 s")
            if message["type"] == "message":
                return bytes(message["data"])

    for i in range(20):  # warm up
        client.publish(channel, f"w{i}".encode())
        next_reply()
    latencies = []
    for i in range(n_latency):
        t0 = time.perf_counter()
        client.publish(channel, f"l{i}".encode())
        assert next_reply() == f"got l{i}".encode()
        latencies.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    with client.pipeline(transaction=False) as pipe:
        for i in range(n_burst):
            pipe.publish(channel, f"b{i}".encode())
        pipe.execute()
    for _ in range(n_burst):
        next_reply()
    elapsed = time.perf_counter() - t0
    replies.close()
    p = percentiles(latencies)
    return {"p50": p["p50"] / 1000, "p99": p["p99"] / 1000, "rate": n_burst / elapsed}


def wasmlet_up(app: Path, cache: Path, quiet: bool) -> subprocess.Popen[str]:
    """`wasmlet up` of an app with no HTTP trigger (one process: --workers 1)."""
    cmd = [sys.executable, "-m", "wasmlet.cli", "up", "-f", str(app), "--workers", "1"]
    cmd += ["--cache-dir", str(cache)] + (["--log-level", "error"] if quiet else [])
    return subprocess.Popen(
        cmd,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL if quiet else subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def bench_redis(args: argparse.Namespace, tmp: Path) -> dict[str, dict[str, float]]:
    wasm, _ = build_components.ensure_built(build_components.target("python-redis"))
    client = redis.Redis.from_url(ADDRESS)
    results = {}
    channel, reply = f"bench-{uuid.uuid4().hex}", f"bench-reply-{uuid.uuid4().hex}"
    app = tmp / "redis-app"
    app.mkdir()
    (app / "spin.toml").write_text(
        MANIFEST.format(address=ADDRESS, channel=channel, reply=reply, wasm=wasm)
    )
    proc = wasmlet_up(app, tmp / "cache", quiet=True)
    try:
        wait_subscribed(client, channel)
        results["wasmlet up"] = measure(client, channel, reply, args.latency, args.messages)
    finally:
        proc.terminate()
        proc.wait(30)

    channel, reply = f"bench-{uuid.uuid4().hex}", f"bench-reply-{uuid.uuid4().hex}"
    stop = threading.Event()
    thread = threading.Thread(target=reference, args=(channel, reply, stop), daemon=True)
    thread.start()
    wait_subscribed(client, channel)
    results["plain Python subscriber"] = measure(
        client, channel, reply, args.latency, args.messages
    )
    stop.set()
    thread.join()
    return results


# --- MQTT -------------------------------------------------------------------------------------

MQTT_MANIFEST = """
spin_manifest_version = 2
[application]
name = "bench-mqtt"
[application.trigger.mqtt]
address = "{address}"
username = ""
password = ""
keep_alive_interval = "30"
[[trigger.mqtt]]
component = "echo"
topic = "{topic}"
qos = "{qos}"
[component.echo]
source = "{wasm}"
"""

# What the component does, in plain Python: print one line per message, as its own process
# (the output read the same way as wasmlet's).
MQTT_REFERENCE = """
import sys
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

topic, qos = sys.argv[1], int(sys.argv[2])
client = mqtt.Client(CallbackAPIVersion.VERSION2)
client.on_connect = lambda c, u, f, reason, p: c.subscribe(topic, qos)
client.on_subscribe = lambda c, u, m, r, p: print(f"subscribed to {topic}", flush=True)
client.on_message = lambda c, u, m: print(
    f"got {m.payload.decode()} on {m.topic}", flush=True
)
client.connect("127.0.0.1", 1883, 30)
client.loop_forever()
"""

_GOT = re.compile(r"got (\S+) on ")


class Lines:
    """A process's output lines, and when each `got <payload>` line arrived."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.cond = threading.Condition()
        self.text: list[str] = []
        self.arrived: dict[str, float] = {}
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            now = time.perf_counter()
            match = _GOT.search(line)
            with self.cond:
                self.text.append(line)
                if match:
                    self.arrived[match[1]] = now
                self.cond.notify_all()

    def wait_text(self, text: str, timeout: float = 600) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: any(text in t for t in self.text), timeout):
                raise RuntimeError(f"no {text!r} within {timeout} s:\n{''.join(self.text)}")

    def wait_payload(self, payload: str, timeout: float = 60) -> float:
        with self.cond:
            if not self.cond.wait_for(lambda: payload in self.arrived, timeout):
                raise RuntimeError(f"message {payload} not handled within {timeout} s")
            return self.arrived[payload]


def measure_mqtt(
    lines: Lines, topic: str, qos: int, n_latency: int, n_burst: int
) -> dict[str, float]:
    pub = mqtt.Client(CallbackAPIVersion.VERSION2)
    pub.connect("127.0.0.1", 1883, 30)
    pub.loop_start()
    tag = uuid.uuid4().hex[:8]
    try:
        for i in range(20):  # warm up
            pub.publish(topic, f"{tag}w{i}", qos=qos)
            lines.wait_payload(f"{tag}w{i}")
        latencies = []
        for i in range(n_latency):
            payload = f"{tag}l{i}"
            t0 = time.perf_counter()
            pub.publish(topic, payload, qos=qos)
            latencies.append(lines.wait_payload(payload) - t0)
        t0 = time.perf_counter()
        for i in range(n_burst):
            pub.publish(topic, f"{tag}b{i}", qos=qos)
        last = lines.wait_payload(f"{tag}b{n_burst - 1}", timeout=600)
        handled = sum(1 for i in range(n_burst) if f"{tag}b{i}" in lines.arrived)
    finally:
        pub.loop_stop()
        pub.disconnect()
    p = percentiles(latencies)
    return {
        "p50": p["p50"] / 1000,
        "p99": p["p99"] / 1000,
        "rate": n_burst / (last - t0),
        "lost": n_burst - handled,
    }


def bench_mqtt(args: argparse.Namespace, tmp: Path) -> dict[str, dict[str, float]]:
    wasm, _ = build_components.ensure_built(build_components.target("python-mqtt"))
    results = {}
    for qos in (0, 1):
        topic = f"bench/{uuid.uuid4().hex}"
        app = tmp / f"mqtt-app-{qos}"
        app.mkdir()
        (app / "spin.toml").write_text(
            MQTT_MANIFEST.format(address=MQTT_ADDRESS, topic=topic, qos=qos, wasm=wasm)
        )
        proc = wasmlet_up(app, tmp / "cache", quiet=False)  # the guest's lines are the signal
        try:
            lines = Lines(proc)
            lines.wait_text(f"subscribed to {topic} on {MQTT_ADDRESS}")
            results[f"wasmlet up, QoS {qos}"] = measure_mqtt(
                lines, topic, qos, args.latency, args.messages
            )
        finally:
            proc.terminate()
            proc.wait(30)

        topic = f"bench/{uuid.uuid4().hex}"
        ref = subprocess.Popen(
            [sys.executable, "-c", MQTT_REFERENCE, topic, str(qos)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            lines = Lines(ref)
            lines.wait_text(f"subscribed to {topic}")
            results[f"plain Python paho, QoS {qos}"] = measure_mqtt(
                lines, topic, qos, args.latency, args.messages
            )
        finally:
            ref.terminate()
            ref.wait(30)
    return results


def report(results: dict[str, dict[str, float]], pairs: list[tuple[str, str]]) -> None:
    print(f"{'':30} {'p50 ms':>8} {'p99 ms':>8} {'msgs/s':>8} {'lost':>5}")
    for name, r in results.items():
        lost = f"{r['lost']:5.0f}" if "lost" in r else f"{'':5}"
        print(f"{name:30} {r['p50']:8.2f} {r['p99']:8.2f} {r['rate']:8.0f} {lost}")
    for wasmlet, reference in pairs:
        w, ref = results[wasmlet], results[reference]
        print(
            f"{wasmlet} / reference: throughput {w['rate'] / ref['rate']:.2f}x, "
            f"p50 latency {w['p50'] / ref['p50']:.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trigger", choices=("redis", "mqtt", "all"), default="all")
    parser.add_argument("--messages", type=int, default=2000, help="burst size (throughput)")
    parser.add_argument("--latency", type=int, default=300, help="messages one at a time")
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        if args.trigger in ("redis", "all"):
            print("== Redis")
            report(bench_redis(args, Path(tmp)), [("wasmlet up", "plain Python subscriber")])
        if args.trigger in ("mqtt", "all"):
            print("== MQTT")
            pairs = [(f"wasmlet up, QoS {q}", f"plain Python paho, QoS {q}") for q in (0, 1)]
            report(bench_mqtt(args, Path(tmp)), pairs)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
