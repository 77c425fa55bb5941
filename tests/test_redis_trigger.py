"""The Redis trigger against the machine's real Redis (127.0.0.1:6379): a spin-sdk Python
component (guests/components/python-redis/app.py) replies to each message through outbound
Redis; `wasmlet up` runs as a real process."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from support.component_guests import component
from support.env import TOOLS_CACHE, path_without
from support.server import Server, run_cli, start_server, write_app
from support.triggers import Replies, Up, redis_client

ADDRESS = "redis://127.0.0.1:6379"


@pytest.fixture(scope="module")
def client() -> Iterator[redis.Redis]:
    c = redis_client()
    yield c
    c.close()


def manifest(channel: str, reply: str, http: bool = False, extra: str = "") -> str:
    wasm = component("python-redis")
    routes = (
        '[[trigger.http]]\nroute = "/hello"\ncomponent = "hello"\nexecutor = { type = "wagi" }\n'
        '[component.hello]\nsource = "{hello}"\n'
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
redis_address = {{ default = "{ADDRESS}" }}
channel = {{ default = "{channel}" }}
[[trigger.redis]]
channel = "{{{{ channel }}}}"
component = "echo"
{extra}
[component.echo]
source = "{wasm}"
allowed_outbound_hosts = ["redis://127.0.0.1:6379"]
[component.echo.variables]
redis_address = "{{{{ redis_address }}}}"
reply_channel = "{reply}"
{routes}"""


def subscribed(client: redis.Redis, channel: str, timeout: float = 120) -> None:
    """Wait until someone (the trigger) is subscribed to `channel`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if dict(client.pubsub_numsub(channel)).get(channel.encode(), 0) >= 1:
            return
        time.sleep(0.05)
    raise AssertionError(f"nobody subscribed to {channel}")


@pytest.fixture(scope="module")
def cache(cache_dir: Path) -> Path:
    """The session's compile cache: the Python component takes a minute to compile."""
    return cache_dir


@pytest.fixture(scope="module")
def running(
    client: redis.Redis, tmp_path_factory: pytest.TempPathFactory, cache: Path
) -> Iterator[tuple[Up, str, Replies]]:
    channel, reply = f"wasmlet-in-{uuid.uuid4().hex}", f"wasmlet-out-{uuid.uuid4().hex}"
    app = write_app(tmp_path_factory.mktemp("redis-app"), manifest(channel, reply))
    replies = Replies(client, reply)
    up = Up(app, cache)
    try:
        subscribed(client, channel, timeout=300)
        yield up, channel, replies
    finally:
        up.stop()
        replies.close()


def test_no_http_trigger_no_listener_and_spins_banner(running: tuple[Up, str, Replies]) -> None:
    up, channel, _ = running
    assert up.logged(f"Active Channels on {ADDRESS}:")
    assert f"\t{ADDRESS}/{channel}: [echo]" in up.log
    assert "Serving http" not in up.log


def test_a_message_runs_the_component(
    client: redis.Redis, running: tuple[Up, str, Replies]
) -> None:
    _, channel, replies = running
    client.publish(channel, b"hello")
    assert replies.next() == b"got hello"


def test_many_messages_in_order(client: redis.Redis, running: tuple[Up, str, Replies]) -> None:
    _, channel, replies = running
    sent = [f"m{i}".encode() for i in range(40)]
    for message in sent:
        client.publish(channel, message)
    assert [replies.next() for _ in sent] == [b"got " + m for m in sent]


def test_failing_and_trapping_handlers_are_logged_and_consuming_goes_on(
    client: redis.Redis, running: tuple[Up, str, Replies]
) -> None:
    up, channel, replies = running
    client.publish(channel, b"fail")
    client.publish(channel, b"trap")
    client.publish(channel, b"after")
    assert replies.next() == b"got after"
    assert up.logged(f"component echo handler failed on a message from {channel}: error")
    assert up.logged("component echo trapped")
    assert up.proc.poll() is None


def test_a_lost_connection_is_reopened(
    client: redis.Redis, running: tuple[Up, str, Replies]
) -> None:
    up, channel, replies = running
    mine = [c for c in client.client_list() if c.get("name") == "wasmlet:redis-app"]
    assert mine, "the trigger's connection is named after the app"
    for connection in mine:
        client.client_kill_filter(_id=connection["id"])
    assert up.logged("reconnecting in")
    subscribed(client, channel, timeout=30)
    client.publish(channel, b"again")
    assert replies.next() == b"got again"


def test_http_and_redis_in_one_app(client: redis.Redis, tmp_path: Path, cache: Path) -> None:
    channel, reply = f"wasmlet-in-{uuid.uuid4().hex}", f"wasmlet-out-{uuid.uuid4().hex}"
    app = write_app(tmp_path / "app", manifest(channel, reply, http=True))
    replies = Replies(client, reply)
    server: Server = start_server(app, cache_dir=cache, timeout=180)
    try:
        assert server.get("/hello").status_code == 200
        subscribed(client, channel)
        assert server.logged(f"Active Channels on {ADDRESS}:")
        client.publish(channel, b"both")
        assert replies.next() == b"got both"
    finally:
        server.stop()
        replies.close()


def test_sigterm_stops_a_message_only_app(client: redis.Redis, tmp_path: Path, cache: Path) -> None:
    """With 2 workers asked (the default on a 2-CPU machine), a message-only app runs in one
    process, and says so."""
    channel = f"wasmlet-in-{uuid.uuid4().hex}"
    up = Up(write_app(tmp_path / "app", manifest(channel, "x")), cache, {"WASMLET_WORKERS": "2"})
    subscribed(client, channel)
    assert dict(client.pubsub_numsub(channel))[channel.encode()] == 1
    assert up.logged("one process handles the messages (--workers ignored)")
    assert up.stop() == 0


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        (
            '[[trigger.sqs]]\nqueue_url = "https://sqs.example/q"\ncomponent = "echo"',
            "trigger type 'sqs'",
        ),
        ('[[trigger.redis]]\ncomponent = "echo"', "trigger.redis[1].channel: missing"),
        (
            '[[trigger.redis]]\nchannel = "c"\naddress = "http://x"\ncomponent = "echo"',
            "trigger.redis[1].address: 'http://x' is not a redis:// or rediss:// URL",
        ),
    ],
)
def test_bad_triggers_name_what_is_wrong(
    tmp_path: Path, cache: Path, extra: str, error: str
) -> None:
    app = write_app(tmp_path / "app", manifest("c", "r", extra=extra))
    r = run_cli("up", "-f", str(app), "--cache-dir", str(cache), timeout=300)
    assert r.returncode != 0
    assert error in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_a_component_without_the_redis_export_is_named(tmp_path: Path) -> None:
    text = manifest("c", "r").replace(str(component("python-redis")), str(component("hello")))
    app = write_app(tmp_path / "app", text)
    r = run_cli("up", "-f", str(app), "--cache-dir", str(tmp_path / "cache"), timeout=120)
    assert r.returncode != 0
    assert "does not export a Redis interface" in r.stderr
    assert "wasi:http/incoming-handler@0.2.0" in r.stderr


def test_with_workers_each_message_is_handled_once(
    client: redis.Redis, tmp_path: Path, cache: Path
) -> None:
    """`--workers 2` (as the default is on a machine with 2 CPUs): every worker serves HTTP,
    and worker 0 alone subscribes, so a message is handled once, not once per worker."""
    channel, reply = f"wasmlet-in-{uuid.uuid4().hex}", f"wasmlet-out-{uuid.uuid4().hex}"
    app = write_app(tmp_path / "app", manifest(channel, reply, http=True))
    replies = Replies(client, reply)
    server: Server = start_server(app, "--workers", "2", cache_dir=cache, timeout=180)
    try:
        subscribed(client, channel)
        assert server.logged("started 2 workers")
        with server.client() as c:
            assert all(c.get("/hello").status_code == 200 for _ in range(10))
        for i in range(5):
            client.publish(channel, f"m{i}".encode())
        got = [replies.next() for _ in range(5)]
        assert sorted(got) == [f"got m{i}".encode() for i in range(5)]
        time.sleep(1.0)  # a second subscriber's replies would be here by now
        assert replies.pubsub.get_message(timeout=0.5) is None
        assert dict(client.pubsub_numsub(channel))[channel.encode()] == 1
    finally:
        server.stop()
        replies.close()


def test_the_redis_py_template_builds_and_handles_messages(
    client: redis.Redis, tmp_path: Path, cache: Path
) -> None:
    """`wasmlet new redis-py` → `wasmlet build` (componentize-py from wasmlet's tools venv,
    as the http-py template's test gets it) → `wasmlet up` → a published message is handled."""
    r = run_cli("new", "redis-py", "on-message", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    app = tmp_path / "on-message"
    env = {"WASMLET_CACHE_DIR": str(TOOLS_CACHE), "PATH": path_without("componentize-py")}
    r = run_cli("build", cwd=app, env=env, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    channel = f"wasmlet-in-{uuid.uuid4().hex}"
    up = Up(app, cache, env={"SPIN_VARIABLE_REDIS_CHANNEL": channel})
    try:
        subscribed(client, channel, timeout=300)
        client.publish(channel, b"hello template")
        assert up.logged("on-message got: hello template", timeout=30), up.log
    finally:
        up.stop()
