#!/usr/bin/env python3
"""Redis messages through one `wasmlet up`: throughput and publish → reply latency.

The app is tests' Redis-triggered spin-sdk component (guests/components/python-redis): per
message, a fresh instance opens an outbound Redis connection and publishes `got <message>` to
a reply channel. Measured from this process against the machine's Redis (127.0.0.1:6379):

- latency: one message at a time, publish → its reply arriving (p50/p99): the trigger's
  receive, a fresh instance, the guest's outbound Redis, the reply's delivery;
- throughput: N messages published at once, until the last reply.

The reference, in the same run: a plain Python subscriber (redis-py, no Wasm) that replies the
same way, opening a connection per message as the guest does — the floor of a Python host.

    .venv/bin/python bench/triggers.py [--messages 2000] [--latency 300]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(1, str(ROOT / "bench"))

import argparse  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

import redis  # noqa: E402
from _common import machine, percentiles  # noqa: E402
from support.component_guests import build_components  # noqa: E402

ADDRESS = "redis://127.0.0.1:6379"

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000, help="burst size (throughput)")
    parser.add_argument("--latency", type=int, default=300, help="messages one at a time")
    args = parser.parse_args()
    print(machine())
    wasm, _ = build_components.ensure_built(build_components.target("python-redis"))
    client = redis.Redis.from_url(ADDRESS)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        channel, reply = f"bench-{uuid.uuid4().hex}", f"bench-reply-{uuid.uuid4().hex}"
        app = Path(tmp) / "app"
        app.mkdir()
        (app / "spin.toml").write_text(
            MANIFEST.format(address=ADDRESS, channel=channel, reply=reply, wasm=wasm)
        )
        cmd = [sys.executable, "-m", "wasmlet.cli", "up", "-f", str(app)]
        cmd += ["--cache-dir", str(Path(tmp) / "cache"), "--log-level", "error"]
        proc = subprocess.Popen(cmd, env={**os.environ}, stdout=subprocess.DEVNULL)
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

    print(f"{'':28} {'p50 ms':>8} {'p99 ms':>8} {'msgs/s':>8}")
    for name, r in results.items():
        print(f"{name:28} {r['p50']:8.2f} {r['p99']:8.2f} {r['rate']:8.0f}")
    w, ref = results["wasmlet up"], results["plain Python subscriber"]
    print(
        f"wasmlet / reference: throughput {w['rate'] / ref['rate']:.2f}x, "
        f"p50 latency {w['p50'] / ref['p50']:.2f}x"
    )
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
