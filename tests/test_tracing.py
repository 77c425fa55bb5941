"""OpenTelemetry traces and OTLP metrics (issue 15, item 2): real `wasmlet up` servers on
loopback with `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at an OTLP/HTTP receiver the tests run
(tests/support/otlp.py decodes the real protobuf payloads with opentelemetry-proto), real
requests to guests built from guests/ (a spin-sdk Python component making outbound HTTP and
key-value calls, Wagi modules, a Redis and a cron component), a loopback upstream that records
the `traceparent` it is sent. Spans are checked by name, kind, parentage and attributes."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from support.component_guests import component, python_app
from support.env import ROOT, free_port
from support.otlp import OtlpReceiver, Span, env_for
from support.server import run_cli, start_server, write_app
from support.triggers import redis_client

INTERNAL, SERVER, CLIENT, PRODUCER, CONSUMER = 1, 2, 3, 4, 5
ERROR = 2
CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"

WAGI_APP = """
spin_manifest_version = 2
[application]
name = "traced"

[[trigger.http]]
route = "/hello"
component = "hello"
executor = { type = "wagi" }

[[trigger.http]]
route = "/tb/..."
component = "testbed"
executor = { type = "wagi" }

[[trigger.http]]
route = "/static"
static_response = { status_code = 201, body = "made" }

[component.hello]
source = "{hello}"

[component.testbed]
source = "{testbed}"
"""


@pytest.fixture
def otlp() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture
def upstream() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A loopback HTTP server recording each request's headers."""
    seen: list[dict[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({k.lower(): v for k, v in self.headers.items()})
            body = b"upstream"
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    port = free_port()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{port}", seen
    srv.shutdown()


def by_name(spans: list[Span], name: str) -> list[Span]:
    return [s for s in spans if s.name == name]


def one(spans: list[Span], name: str, **attributes: object) -> Span:
    found = [s for s in by_name(spans, name) if attributes.items() <= s.attributes.items()]
    assert len(found) == 1, (name, attributes, [(s.name, s.attributes) for s in spans])
    return found[0]


def children(spans: list[Span], parent: Span) -> list[Span]:
    return [s for s in spans if s.parent_span_id == parent.span_id]


def test_a_request_continues_the_callers_trace_into_outbound_calls(
    tmp_path: Path, cache_dir: Path, otlp: OtlpReceiver, upstream: tuple[str, list[dict[str, str]]]
) -> None:
    url, seen = upstream
    app = python_app(tmp_path / "app", allowed_outbound_hosts=[url])
    s = start_server(app, env=env_for(otlp), cache_dir=cache_dir, timeout=300)
    try:
        with s.client() as c:
            headers = {"traceparent": TRACEPARENT, "x-forwarded-for": "203.0.113.7, 10.0.0.1"}
            r = c.get("/outbound", params={"url": f"{url}/x"}, headers=headers)
            assert r.status_code == 200, r.text
            assert c.put("/kv/k", content=b"v").status_code == 200  # no traceparent: a new trace
        spans = otlp.wait(lambda got: len(by_name(got, "GET /...")) == 1 and len(got) >= 7)
    finally:
        s.stop()

    # The server span: Spin's name (method and route as written), the caller's trace.
    server = one(spans, "GET /...")
    assert server.kind == SERVER
    assert (server.trace_id, server.parent_span_id) == (CALLER_TRACE, CALLER_SPAN)
    assert server.status_code != ERROR
    assert {
        "http.request.method": "GET",
        "url.path": "/outbound",
        "url.scheme": "http",
        "http.route": "/...",
        "http.response.status_code": 200,
        "network.protocol.name": "http",
        "network.protocol.version": "1.1",
        "network.peer.address": "127.0.0.1",
        "client.address": "203.0.113.7",
        "wasmlet.app": "component-app",
    }.items() <= server.attributes.items()
    assert server.attributes["url.query"] == f"url={url}/x".replace(":", "%3A").replace("/", "%2F")
    assert isinstance(server.attributes["network.peer.port"], int)
    # The guest's run, under it.
    (execute,) = children(spans, server)
    assert execute.name == "execute_wasm_component app"
    assert execute.attributes == {"wasmlet.component": "app"}
    assert execute.kind == INTERNAL and execute.trace_id == CALLER_TRACE
    assert server.start_ns <= execute.start_ns <= execute.end_ns <= server.end_ns
    # Its outbound request: a client span under the guest's, whose context went with it.
    client = one(spans, "GET", **{"url.full": f"{url}/x"})
    assert client.kind == CLIENT and client.parent_span_id == execute.span_id
    assert {
        "http.request.method": "GET",
        "server.address": "127.0.0.1",
        "server.port": int(url.rsplit(":", 1)[1]),
        "http.response.status_code": 200,
    }.items() <= client.attributes.items()
    assert [h["traceparent"] for h in seen] == [f"00-{CALLER_TRACE}-{client.span_id}-01"]

    # The key-value request had no traceparent: a trace of its own, with Spin's host spans.
    kv = one(spans, "PUT /...")
    assert kv.parent_span_id == "" and kv.trace_id != CALLER_TRACE
    (kv_execute,) = children(spans, kv)
    assert sorted(s.name for s in children(spans, kv_execute)) == [
        "spin_key_value.open",
        "spin_key_value.set",
    ]
    assert all(s.kind == CLIENT for s in children(spans, kv_execute))

    # Who sent them: service wasmlet (no OTEL_SERVICE_NAME), this version, one process.
    resource = server.resource
    assert resource["service.name"] == "wasmlet"
    assert resource["service.version"] == "0.1.0"
    assert len({str(sp.resource["service.instance.id"]) for sp in spans}) == 1
    assert {sp.scope for sp in spans} == {"wasmlet"}


def test_wagi_static_misses_and_failures(
    tmp_path: Path, cache_dir: Path, otlp: OtlpReceiver
) -> None:
    app = write_app(tmp_path / "app", WAGI_APP)
    env = env_for(
        otlp,
        OTEL_SERVICE_NAME="shop",
        OTEL_RESOURCE_ATTRIBUTES="deployment.environment=test,service.name=ignored",
    )
    s = start_server(app, env=env, cache_dir=cache_dir)
    try:
        with s.client() as c:
            assert c.get("/hello").status_code == 200
            assert c.get("/tb/", params={"mode": "trap"}).status_code == 500
            assert c.get("/nowhere").status_code == 404
            assert c.get("/static").status_code == 201
            assert c.request("PROPFIND", "/hello").status_code == 200
        spans = otlp.wait(lambda got: len([x for x in got if x.kind == SERVER]) == 5)
    finally:
        s.stop()

    hello = one(spans, "GET /hello")
    (wagi,) = children(spans, hello)
    assert wagi.name == "execute_wagi_component hello" and wagi.status_code != ERROR
    # A trap: the request is a server error (the status code as error.type), and the guest's
    # span says how it failed.
    trap = one(spans, "GET /tb/...")
    assert trap.status_code == ERROR
    assert trap.attributes["error.type"] == "500"
    assert trap.attributes["http.response.status_code"] == 500
    (tb,) = children(spans, trap)
    assert tb.name == "execute_wagi_component testbed"
    assert tb.status_code == ERROR and tb.attributes["error.type"] == "trap"
    # No route: the method alone, no http.route; a static response: no guest span.
    miss = one(spans, "GET")
    assert miss.attributes["http.response.status_code"] == 404 and "http.route" not in (
        miss.attributes
    )
    assert miss.status_code != ERROR and children(spans, miss) == []
    static = one(spans, "GET /static")
    assert static.attributes["http.response.status_code"] == 201
    assert children(spans, static) == []
    # A method outside RFC 9110: _OTHER, with the original kept.
    other = one(spans, "HTTP /hello")
    assert other.attributes["http.request.method"] == "_OTHER"
    assert other.attributes["http.request.method_original"] == "PROPFIND"
    # The environment names the service.
    assert hello.resource["service.name"] == "shop"
    assert hello.resource["deployment.environment"] == "test"


def test_each_worker_exports_its_own_spans_and_flushes_them_at_exit(
    tmp_path: Path, cache_dir: Path, otlp: OtlpReceiver
) -> None:
    app = write_app(tmp_path / "app", WAGI_APP)
    # A minute between exports: the spans can only arrive by the flush at shutdown.
    env = env_for(otlp, OTEL_BSP_SCHEDULE_DELAY="60000")
    s = start_server(app, "--workers", "2", env=env, cache_dir=cache_dir)
    try:
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda _: s.get("/hello").status_code, range(40)))
        assert codes == [200] * 40
        assert otlp.received() == []
    finally:
        assert s.stop() == 0
    spans = otlp.wait(lambda got: len(by_name(got, "GET /hello")) == 40, timeout=15)
    assert len(by_name(spans, "execute_wagi_component hello")) == 40
    # Sent by the workers (the supervisor makes no exporter), each with an id of its own.
    instances = {str(sp.resource["service.instance.id"]) for sp in spans}
    assert 1 <= len(instances) <= 2


def test_the_sampler_is_respected_and_the_trace_still_propagates(
    tmp_path: Path, cache_dir: Path, otlp: OtlpReceiver, upstream: tuple[str, list[dict[str, str]]]
) -> None:
    url, seen = upstream
    app = python_app(tmp_path / "app", allowed_outbound_hosts=[url])
    env = env_for(otlp, OTEL_TRACES_SAMPLER="always_off")
    s = start_server(app, env=env, cache_dir=cache_dir, timeout=300)
    try:
        r = s.get("/outbound", params={"url": f"{url}/x"}, headers={"traceparent": TRACEPARENT})
        assert r.status_code == 200
    finally:
        s.stop()
    assert otlp.received() == []  # nothing sampled, nothing sent
    # The caller's trace goes on, marked not sampled, with a span id of wasmlet's.
    (sent,) = seen
    version, trace_id, span_id, flags = sent["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", CALLER_TRACE, "00")
    assert span_id != CALLER_SPAN and len(span_id) == 16


def test_otel_sdk_disabled_means_nothing_is_traced(
    tmp_path: Path, cache_dir: Path, otlp: OtlpReceiver, upstream: tuple[str, list[dict[str, str]]]
) -> None:
    url, seen = upstream
    app = python_app(tmp_path / "app", allowed_outbound_hosts=[url])
    env = env_for(otlp, OTEL_SDK_DISABLED="true")
    s = start_server(app, env=env, cache_dir=cache_dir, timeout=300)
    try:
        assert s.get("/outbound", params={"url": f"{url}/x"}).status_code == 200
    finally:
        s.stop()
    assert otlp.received() == [] and otlp.requests == []
    assert "traceparent" not in seen[0]


def test_metrics_over_otlp_without_traces(
    tmp_path: Path, cache_dir: Path, otlp: OtlpReceiver
) -> None:
    app = write_app(tmp_path / "app", WAGI_APP)
    env = {
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"{otlp.url}/v1/metrics",
        "OTEL_METRIC_EXPORT_INTERVAL": "300",
    }
    s = start_server(app, env=env, cache_dir=cache_dir)
    try:
        with s.client() as c:
            for _ in range(3):
                assert c.get("/hello").status_code == 200
            assert c.get("/tb/", params={"mode": "trap"}).status_code == 500
            assert c.get("/nowhere").status_code == 404

        def counted() -> float:
            points = otlp.latest_points("spin.request_count")
            return sum(p.value for p in points)

        otlp.wait(lambda _: counted() == 4)
    finally:
        s.stop()
    assert otlp.received() == []  # only the metrics endpoint was set
    count = {
        tuple(sorted(p.attributes.items())): p.value
        for p in otlp.latest_points("spin.request_count")
    }
    assert count == {
        (("app_id", "traced"), ("component_id", "hello"), ("trigger_type", "http")): 3,
        (("app_id", "traced"), ("component_id", "testbed"), ("trigger_type", "http")): 1,
    }
    durations = otlp.latest_points("http.server.request.duration")
    hello = [p for p in durations if p.attributes.get("http.route") == "/hello"]
    assert [p.value for p in hello] == [3]
    assert hello[0].attributes["http.response.status_code"] == 200
    assert 0 < hello[0].total < 3 * 2.5
    assert hello[0].bounds[:3] == [0.005, 0.01, 0.025]
    (trap,) = [p for p in durations if p.attributes.get("http.route") == "/tb/..."]
    assert trap.attributes["error.type"] == "500"
    (miss,) = [p for p in durations if "http.route" not in p.attributes]
    assert miss.attributes["http.response.status_code"] == 404


def test_redis_messages_and_cron_ticks_are_traced(
    tmp_path: Path, cache_dir: Path, otlp: OtlpReceiver
) -> None:
    client = redis_client()
    channel, reply = f"wasmlet-in-{uuid.uuid4().hex}", f"wasmlet-out-{uuid.uuid4().hex}"
    app = write_app(
        tmp_path / "app",
        f"""
spin_manifest_version = 2
[application]
name = "messages"
[application.trigger.redis]
address = "redis://127.0.0.1:6379"
[[trigger.redis]]
channel = "{channel}"
component = "echo"
[[trigger.cron]]
component = "tick"
cron_expression = "* * * * * *"
[[trigger.http]]
route = "/hello"
component = "hello"
executor = {{ type = "wagi" }}
[component.hello]
source = "{{hello}}"
[component.echo]
source = "{component("python-redis")}"
allowed_outbound_hosts = ["redis://127.0.0.1:6379"]
[component.echo.variables]
redis_address = "redis://127.0.0.1:6379"
reply_channel = "{reply}"
[component.tick]
source = "{component("python-cron")}"
key_value_stores = ["default"]
[component.tick.variables]
mode = "ok"
""",
    )
    s = start_server(app, env=env_for(otlp), cache_dir=cache_dir, timeout=300)
    try:
        otlp.wait(lambda _: dict(client.pubsub_numsub(channel)).get(channel.encode(), 0) >= 1)
        client.publish(channel, b"hello")
        client.publish(channel, b"fail")
        spans = otlp.wait(
            lambda got: (
                len(by_name(got, f"{channel} receive")) == 2
                and len(by_name(got, "cron * * * * * *")) >= 1
            )
        )
    finally:
        s.stop()
        client.close()
    received = by_name(spans, f"{channel} receive")
    for span in received:
        assert span.kind == CONSUMER and span.parent_span_id == ""
        assert {
            "messaging.system": "redis",
            "messaging.operation": "receive",
            "messaging.destination.name": channel,
            "wasmlet.app": "messages",
        }.items() <= span.attributes.items()
    ok, failed = sorted(received, key=lambda sp: sp.status_code)
    assert failed.status_code == ERROR and ok.status_code != ERROR
    (execute,) = children(spans, ok)
    assert execute.name == "execute_wasm_component echo"
    # The handler's reply went out through outbound Redis: Spin's host spans, under its span.
    assert sorted(sp.name for sp in children(spans, execute)) == [
        "spin_outbound_redis.open",
        "spin_outbound_redis.publish",
    ]
    (failed_execute,) = children(spans, failed)
    assert failed_execute.status_code == ERROR
    tick = by_name(spans, "cron * * * * * *")[0]
    assert tick.kind == INTERNAL and tick.attributes["wasmlet.cron.expression"] == "* * * * * *"
    assert isinstance(tick.attributes["wasmlet.cron.tick"], int)
    assert [sp.name for sp in children(spans, tick)] == ["execute_wasm_component tick"]


@pytest.mark.parametrize(
    ("env", "error"),
    [
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "Error: OTEL_EXPORTER_OTLP_PROTOCOL='grpc' is not supported: wasmlet speaks OTLP "
            "over HTTP with protobuf only (http/protobuf, usually port 4318)",
        ),
        (
            {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "localhost:4318"},
            "Error: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT='localhost:4318': expected an http:// or "
            "https:// URL",
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318", "OTEL_TRACES_SAMPLER": "sometimes"},
            "Error: OTEL_TRACES_SAMPLER='sometimes' is not supported (one of: always_on,",
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318",
                "OTEL_TRACES_SAMPLER": "traceidratio",
                "OTEL_TRACES_SAMPLER_ARG": "2",
            },
            "Error: OTEL_TRACES_SAMPLER_ARG='2': expected a ratio from 0 to 1",
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318", "OTEL_METRICS_EXPORTER": "prometheus"},
            "Error: OTEL_METRICS_EXPORTER='prometheus' is not supported: wasmlet exports over "
            "OTLP only ('otlp' or 'none') (Prometheus metrics: --metrics-listen)",
        ),
    ],
)
def test_bad_settings_stop_the_start_with_a_clear_error(
    tmp_path: Path, env: dict[str, str], error: str
) -> None:
    app = write_app(tmp_path / "app", WAGI_APP)
    for workers in ("1", "2"):  # the supervisor checks them too
        out = run_cli(
            "up", "-f", str(app), "--listen", "127.0.0.1:0", "--workers", workers, env=env
        )
        assert out.returncode == 1, out.stderr
        assert error in out.stderr, out.stderr
        assert "Traceback" not in out.stderr


def test_with_nothing_configured_opentelemetry_is_never_imported(tmp_path: Path) -> None:
    """The whole request path, in process, with no OTEL_* variable: no span, no import."""
    app = write_app(tmp_path / "app", WAGI_APP)
    code = f"""
import asyncio, sys
from pathlib import Path
from wasmlet.loader import load_app
from wasmlet.observe import tracing
from wasmlet.running import AppOptions, build_app

tracing.enable_from_environment()
app = build_app(load_app(Path({str(app)!r})), AppOptions(state_dir=Path({str(app / ".spin")!r})))
app.start()
sent = []
async def main():
    scope = {{"type": "http", "method": "GET", "path": "/hello", "raw_path": b"/hello",
              "query_string": b"", "client": ("127.0.0.1", 1),
              "headers": [(b"traceparent", {TRACEPARENT.encode()!r})]}}
    async def receive():
        return {{"type": "http.request", "body": b"", "more_body": False}}
    async def send(message):
        sent.append(message)
    await app.trigger(scope, receive, send)
asyncio.run(main())
app.close()
imported = any(m.startswith("opentelemetry") for m in sys.modules)
print(sent[0]["status"], app.trigger.observer, imported)
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["200", "None", "False"]
