"""Prometheus metrics from `wasmlet up --metrics-listen` (issue 15, item 1): real servers on
loopback, real requests (Wagi and component guests built from guests/, some answering, some
trapping, timing out or hitting the memory limit; outbound calls to a local HTTP server and
the key-value store; Redis messages), then the real endpoint scraped and parsed with
prometheus-client's own text parser, and the numbers checked. With `--workers 2`, each
worker's own files are read too, to see that the scrape is their sum."""

from __future__ import annotations

import ast
import http.server
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from support.component_guests import component, python_app
from support.env import FIXTURES, ROOT, WAGI, free_port
from support.server import (
    Server,
    run_cli,
    start_host,
    start_server,
    worker_pids,
    write_app,
)
from support.triggers import redis_client

COMPONENTS = FIXTURES / "components"
OTEL_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0]
HTTP = "http_server_request_duration_seconds"

APP = f"""
spin_manifest_version = 2
[application]
name = "observed"

[[trigger.http]]
route = "/hello"
component = "hello"
executor = {{ type = "wagi" }}

[[trigger.http]]
route = "/tb/..."
component = "testbed"
executor = {{ type = "wagi" }}

[[trigger.http]]
route = "/m/..."
component = "misbehave"
executor = {{ type = "wagi" }}

[[trigger.http]]
route = "/loop"
component = "loop"

[[trigger.http]]
route = "/cut"
component = "cut"

[[trigger.http]]
route = "/static"
static_response = {{ status_code = 201, body = "made" }}

[component.hello]
source = "{{hello}}"

[component.testbed]
source = "{{testbed}}"

[component.misbehave]
source = "{WAGI / "misbehave.wasm"}"

[component.loop]
source = "{COMPONENTS / "loop.wasm"}"

[component.cut]
source = "{COMPONENTS / "trap-mid-body.wasm"}"
"""

Samples = list[tuple[str, dict[str, str], float]]


def scrape(url: str) -> Samples:
    """Every sample at `url`, parsed by prometheus-client's text parser."""
    r = httpx.get(url, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain"), r.headers
    return [
        (s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    ]


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels`."""
    return sum(v for n, ls, v in samples if n == name and labels.items() <= ls.items())


def buckets(samples: Samples, name: str, **labels: str) -> dict[str, float]:
    """A histogram's cumulative bucket counts by `le`, for one label set."""
    out: dict[str, float] = {}
    for n, ls, v in samples:
        if n == name + "_bucket" and labels.items() <= ls.items():
            out[ls["le"]] = out.get(ls["le"], 0.0) + v
    return out


def metrics_url(server: Server) -> str:
    for line in server.output:
        if line.startswith("Metrics: "):
            return line.split()[1]
    raise AssertionError(f"no Metrics line:\n{server.log}")


def wait_for(check: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_app(tmp_path_factory.mktemp("observed"), APP)


def test_requests_failures_and_instantiation_are_counted(app_dir: Path, cache_dir: Path) -> None:
    s = start_server(
        app_dir,
        "--metrics-listen",
        "127.0.0.1:0",
        "--request-timeout",
        "4",
        "--max-instance-memory",
        "8Mi",
        "--max-wagi-output",
        "64Ki",
        "--workers",
        "1",
        cache_dir=cache_dir,
    )
    try:
        url = metrics_url(s)
        before = scrape(url)
        assert value(before, HTTP + "_count") == 0  # the health checks are not counted
        # A request in flight is in the gauge while it runs, and out of it after.
        with ThreadPoolExecutor(4) as pool:
            slow = pool.submit(s.get, "/m/?mode=sleep&ms=3000")
            wait_for(
                lambda: (
                    value(scrape(url), "http_server_active_requests", http_request_method="GET")
                    == 1
                ),
                timeout=2.9,
            )
            looping = [pool.submit(s.get, "/tb/?mode=loop"), pool.submit(s.get, "/loop")]
            with s.client() as c:
                for _ in range(3):
                    assert c.get("/hello").status_code == 200
                assert c.post("/hello", content=b"x").status_code == 200
                assert c.request("PROPFIND", "/hello").status_code == 200  # WebDAV: not RFC 9110
                assert c.get("/nowhere").status_code == 404
                assert c.get("/nowhere/else").status_code == 404
                assert c.get("/static").status_code == 201
                assert c.get("/tb/?mode=trap").status_code == 500
                assert c.get("/tb/?mode=oom").status_code == 500
                assert c.get("/tb/?mode=exit&code=3").status_code == 500
                assert c.get("/m/?mode=write&bytes=200000").status_code == 500
                with pytest.raises(httpx.RemoteProtocolError):
                    c.get("/cut")  # the body is cut short: the guest trapped mid-body
            assert slow.result().status_code == 200
            assert [f.result().status_code for f in looping] == [500, 500]
        # A guest past its deadline may be answered for before it has stopped (the trigger's
        # grace), so its failure may be counted just after its response.
        wait_for(lambda: value(scrape(url), "wasmlet_guest_failures_total") == 7)
        samples = scrape(url)
    finally:
        s.stop()

    # Durations by method, route (as written in the manifest), component and status.
    hello = {"app": "observed", "component": "hello", "http_route": "/hello"}
    assert value(samples, HTTP + "_count", **hello, http_request_method="GET") == 3
    assert value(samples, HTTP + "_count", **hello, http_request_method="POST") == 1
    assert value(samples, HTTP + "_count", **hello, http_request_method="_OTHER") == 1
    assert value(samples, HTTP + "_count", **hello, http_response_status_code="200") == 5
    miss = {"http_route": "", "component": "", "http_response_status_code": "404"}
    assert value(samples, HTTP + "_count", **miss) == 2
    static = {"http_route": "/static", "component": "", "http_response_status_code": "201"}
    assert value(samples, HTTP + "_count", **static) == 1
    tb = {"component": "testbed", "http_route": "/tb/...", "http_response_status_code": "500"}
    assert value(samples, HTTP + "_count", **tb) == 4  # trap, oom, exit, loop
    # The looping guest ran to the 4 s deadline: counted in the buckets from its duration up.
    loop = {"component": "loop", "http_route": "/loop", "http_response_status_code": "500"}
    got = buckets(samples, HTTP, **loop)
    took = value(samples, HTTP + "_sum", **loop)
    assert 4.0 <= took < 10.0
    assert list(got) == [*(str(b) for b in OTEL_BUCKETS), "+Inf"]
    assert got == {le: float(took <= float(le)) for le in got}, (took, got)
    # Buckets are cumulative and end at the count.
    ok = buckets(samples, HTTP, **hello, http_request_method="GET")
    assert list(ok.values()) == sorted(ok.values()) and ok["+Inf"] == 3
    assert 0 < value(samples, HTTP + "_sum", **hello, http_request_method="GET") < 3 * 2.5
    slow_sum = value(samples, HTTP + "_sum", component="misbehave", http_response_status_code="200")
    assert slow_sum >= 3.0
    assert value(samples, "http_server_active_requests") == 0
    assert not [ls for n, ls, _ in samples if "well-known" in ls.get("http_route", "")]

    # Guest failures by kind.
    failures = "wasmlet_guest_failures_total"
    assert value(samples, failures, component="testbed", kind="trap") == 1
    assert value(samples, failures, component="testbed", kind="timeout") == 1
    assert value(samples, failures, component="testbed", kind="memory_limit") == 1
    assert value(samples, failures, component="testbed", kind="exit") == 1
    assert value(samples, failures, component="misbehave", kind="output_limit") == 1
    assert value(samples, failures, component="loop", kind="timeout") == 1
    assert value(samples, failures, component="cut", kind="trap") == 1
    assert value(samples, failures, component="hello") == 0

    # One instantiation per run that got as far as an instance.
    inst = "wasmlet_instantiation_duration_seconds"
    assert value(samples, inst + "_count", app="observed", component="hello") == 5
    assert value(samples, inst + "_count", component="testbed") == 4
    assert value(samples, inst + "_count", component="loop") == 1
    assert 0 < value(samples, inst + "_sum", component="hello") < 5 * 0.1

    # The compile cache: every component looked up once (a hit or a miss, by this cache).
    lookups = value(samples, "wasmlet_compile_cache_lookups_total")
    assert lookups == 5, lookups


def test_the_endpoint_serves_only_metrics_in_either_format(app_dir: Path, cache_dir: Path) -> None:
    s = start_server(app_dir, "--metrics-listen", "127.0.0.1:0", cache_dir=cache_dir)
    try:
        url = metrics_url(s)
        assert httpx.get(url.removesuffix("metrics") + "other").status_code == 404
        assert s.get("/hello").status_code == 200
        r = httpx.get(url, headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        assert r.headers["content-type"].startswith("application/openmetrics-text")
        assert r.text.endswith("# EOF\n")
        assert "# TYPE http_server_request_duration_seconds histogram" in r.text
        assert "http_server_request_duration_seconds_created" not in httpx.get(url).text
    finally:
        s.stop()


# -- outbound calls ----------------------------------------------------------------------------


@pytest.fixture
def upstream() -> Iterator[str]:
    """A loopback HTTP server answering after 0.3 s."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            time.sleep(0.3)
            body = b"late"
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    port = free_port()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{port}"
    srv.shutdown()


def test_outbound_http_and_key_value_calls(tmp_path: Path, cache_dir: Path, upstream: str) -> None:
    refused = free_port()
    app = python_app(
        tmp_path / "app",
        allowed_outbound_hosts=[upstream, f"http://127.0.0.1:{refused}"],
    )
    s = start_server(
        app, "--metrics-listen", "127.0.0.1:0", "--workers", "1", cache_dir=cache_dir, timeout=300
    )
    try:
        url = metrics_url(s)
        with s.client() as c:
            assert c.get("/outbound", params={"url": f"{upstream}/x"}).status_code == 200
            r = c.get("/outbound", params={"url": f"http://127.0.0.1:{refused}/"})
            assert r.status_code == 500 and "ConnectionRefused" in r.text
            r = c.get("/outbound", params={"url": "http://example.com/"})  # not allowed
            assert r.status_code == 500 and "HttpRequestDenied" in r.text
            assert c.put("/kv/k", content=b"v").status_code == 200
            assert c.get("/kv/k").content == b"v"
            assert c.get("/kv/missing").status_code == 404  # `none`: not an error
            assert c.get("/kv-denied").status_code == 500  # access-denied: an error
        samples = scrape(url)
    finally:
        s.stop()
    calls = "wasmlet_outbound_call_duration_seconds"
    errors = "wasmlet_outbound_call_errors_total"
    mine = {"app": "component-app", "component": "app"}
    # HTTP: the two requests sent (a denied one is never sent), timed to the response head.
    assert value(samples, calls + "_count", api="http", **mine) == 2
    assert value(samples, errors, api="http", **mine) == 1
    assert buckets(samples, calls, api="http")["0.25"] <= 1  # the refused one, at once
    assert 0.3 <= value(samples, calls + "_sum", api="http") < 2.5
    # Key-value: open + set, open + get, open + get, and the denied open.
    assert value(samples, calls + "_count", api="kv", **mine) == 7
    assert value(samples, errors, api="kv", **mine) == 1
    assert value(samples, calls + "_count", api="redis") == 0


# -- message triggers ----------------------------------------------------------------------------


def test_redis_messages_are_counted(tmp_path: Path, cache_dir: Path) -> None:
    client = redis_client()
    channel, reply = f"wasmlet-in-{uuid.uuid4().hex}", f"wasmlet-out-{uuid.uuid4().hex}"
    app = write_app(
        tmp_path / "app",
        f"""
spin_manifest_version = 2
[application]
name = "redis-app"
[application.trigger.redis]
address = "redis://127.0.0.1:6379"
[[trigger.redis]]
channel = "{channel}"
component = "echo"
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
""",
    )
    replies = client.pubsub()
    replies.subscribe(reply)
    handled = "wasmlet_messages_handled_total"
    echo = {"app": "redis-app", "component": "echo", "trigger": "redis"}
    s = start_server(app, "--metrics-listen", "127.0.0.1:0", cache_dir=cache_dir, timeout=300)
    try:
        wait_for(lambda: dict(client.pubsub_numsub(channel)).get(channel.encode(), 0) >= 1, 60)
        for message in (b"fail", b"trap", b"hello"):
            client.publish(channel, message)
        url = metrics_url(s)
        wait_for(lambda: value(scrape(url), handled, **echo) == 3, 60)
        samples = scrape(url)
        assert replies.get_message(timeout=5)["type"] == "subscribe"  # type: ignore[index]
        assert replies.get_message(timeout=5)["data"] == b"got hello"  # type: ignore[index]
    finally:
        s.stop()
        replies.close()
        client.close()
    assert value(samples, handled, **echo, outcome="ok") == 1
    assert value(samples, handled, **echo, outcome="error") == 2
    assert value(samples, "wasmlet_guest_failures_total", component="echo", kind="trap") == 1
    # The handler's reply went out through outbound Redis: open + publish.
    calls = "wasmlet_outbound_call_duration_seconds_count"
    assert value(samples, calls, api="redis", component="echo") == 2
    assert value(samples, "wasmlet_outbound_call_errors_total", api="redis") == 0


# -- workers ---------------------------------------------------------------------------------


def _worker_pids(server: Server) -> list[int]:
    return worker_pids(server.proc.pid)


def _metrics_dir(pid: int) -> Path:
    """The run's multiprocess directory: the one holding the files of process `pid` (the
    supervisor's: its compile cache lookup, from building the app first)."""
    for directory in Path(tempfile.gettempdir()).glob("wasmlet-metrics-*"):
        if any(directory.glob(f"*_{pid}.db")):
            return directory
    raise AssertionError(f"no metrics directory has process {pid}'s files")


def _per_process(directory: Path, kind: str, name: str, **labels: str) -> dict[int, float]:
    """`name` summed per process, from each process's own file (`<kind>_<pid>.db`)."""
    out = {}
    for path in directory.glob(f"{kind}_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        merged = MultiProcessCollector.merge([str(path)])
        out[pid] = sum(
            s.value
            for family in merged
            for s in family.samples
            if s.name == name and labels.items() <= s.labels.items()
        )
    return out


def test_workers_are_summed_and_a_dead_workers_gauge_is_dropped(
    app_dir: Path, cache_dir: Path
) -> None:
    s = start_server(
        app_dir, "--metrics-listen", "127.0.0.1:0", "--workers", "2", cache_dir=cache_dir
    )
    try:
        url = metrics_url(s)
        wait_for(lambda: len(_worker_pids(s)) == 2)
        workers = _worker_pids(s)
        # A worker that dies within 2 s of its start stops the server (server._FAST_FAIL:
        # it would only die again); the one killed below must be older than that.
        time.sleep(2.5)
        directory = _metrics_dir(s.proc.pid)
        assert directory.is_dir()

        def one(_: int) -> int:
            with httpx.Client(base_url=s.url, timeout=30) as c:  # a new connection each
                return c.get("/hello").status_code

        sent = 0
        count = HTTP + "_count"

        def all_counted(n: int) -> bool:  # in the files: within metrics.FLUSH_INTERVAL
            return sum(_per_process(directory, "histogram", count).values()) == n

        while True:  # until both workers have answered some (the kernel picks one per accept)
            with ThreadPoolExecutor(8) as pool:
                assert set(pool.map(one, range(40))) == {200}
            sent += 40
            wait_for(partial(all_counted, sent), timeout=3)
            per = _per_process(directory, "histogram", count, component="hello")
            if len([n for pid, n in per.items() if pid in workers and n > 0]) == 2 or sent >= 400:
                break
        assert len([pid for pid in workers if per.get(pid, 0) > 0]) == 2, per
        samples = scrape(url)
        assert value(samples, count, component="hello") == sent == sum(per.values())
        assert value(samples, "wasmlet_instantiation_duration_seconds_count") == sent

        # A worker killed with a request in flight: its gauge stops counting once the
        # supervisor sees it dead; what it counted before stays in the sums.
        with ThreadPoolExecutor(1) as pool:
            slow = pool.submit(one_slow, s.url)
            gauge = "http_server_active_requests"
            wait_for(lambda: value(scrape(url), gauge) == 1, timeout=4.5)
            busy = _per_process(directory, "gauge_livesum", gauge)
            victim = next(pid for pid, n in busy.items() if n == 1)
            assert victim in workers
            os.kill(victim, signal.SIGKILL)
            assert slow.result() == "failed"
        wait_for(lambda: len(_worker_pids(s)) == 2 and victim not in _worker_pids(s))
        wait_for(lambda: value(scrape(url), gauge) == 0)
        samples = scrape(url)
        assert value(samples, count, component="hello") == sent
        assert s.get("/hello").status_code == 200
        wait_for(lambda: value(scrape(url), count, component="hello") == sent + 1, timeout=3)
    finally:
        s.stop()
    assert s.proc.returncode == 0
    assert not directory.exists()  # removed at exit


def one_slow(base: str) -> str:
    try:
        return str(httpx.get(base + "/m/?mode=sleep&ms=5000", timeout=30).status_code)
    except httpx.TransportError:
        return "failed"


# -- the flag ----------------------------------------------------------------------------------


def test_the_multi_app_host_labels_each_app(tmp_path: Path, cache_dir: Path) -> None:
    """`wasmlet host --metrics-listen` (the same flag as `up`'s): each app's requests under
    its own `app` label."""
    apps = tmp_path / "apps"
    for name in ("alpha", "beta"):
        write_app(
            apps / name,
            f'spin_manifest_version = 2\n[application]\nname = "{name}"\n[[trigger.http]]\n'
            f'route = "/..."\ncomponent = "t"\nexecutor = {{ type = "wagi" }}\n'
            f'[component.t]\nsource = "{WAGI / "testbed.wasm"}"\n',
        )
    server = start_host(apps, "--metrics-listen", "127.0.0.1:0", cache_dir=cache_dir)
    try:
        asked = {"alpha": 3, "beta": 5}
        with server.client() as c:
            for name, count in asked.items():
                for _ in range(count):
                    r = c.get("/?mode=echo", headers={"host": f"{name}.localhost"})
                    assert r.status_code == 200, r.text
        samples = scrape(metrics_url(server))
        for name, count in asked.items():
            labels = {"app": name, "component": "t", "http_route": "/..."}
            assert value(samples, HTTP + "_count", **labels) == count, samples
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize(
    ("addr", "error"),
    [
        ("nonsense", "--metrics-listen: invalid address 'nonsense': expected HOST:PORT"),
        ("127.0.0.1:99999", "--metrics-listen: invalid address '127.0.0.1:99999'"),
        (":9090", "--metrics-listen: invalid address ':9090'"),
        ("", "--metrics-listen: invalid address ''"),
        ("no-such-host.invalid:9090", "--metrics-listen: cannot resolve 'no-such-host.invalid'"),
        ("192.0.2.1:9090", "--metrics-listen: cannot listen on 192.0.2.1:9090"),
    ],
)
def test_bad_metrics_listen_is_a_clear_error(app_dir: Path, addr: str, error: str) -> None:
    r = run_cli("up", "-f", str(app_dir), "--listen", f"127.0.0.1:{free_port()}",
                "--metrics-listen", addr, timeout=60)  # fmt: skip
    assert r.returncode == 1, r
    assert error in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "Serving" not in r.stdout


def test_metrics_port_in_use_is_a_clear_error(app_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = run_cli("up", "-f", str(app_dir), "--listen", f"127.0.0.1:{free_port()}",
                    "--metrics-listen", f"127.0.0.1:{port}", timeout=60)  # fmt: skip
    assert r.returncode == 1
    error = f"Error: --metrics-listen: cannot listen on 127.0.0.1:{port}: Address already in use"
    assert error in r.stderr, r.stderr


def _listening_ports(pid: int) -> set[int]:
    """The TCP ports `pid` listens on (its socket inodes against /proc/net/tcp{,6})."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_without_the_flag_there_is_no_listener_and_no_metrics(
    app_dir: Path, cache_dir: Path
) -> None:
    s = start_server(app_dir, "--workers", "1", cache_dir=cache_dir)
    try:
        assert s.get("/hello").status_code == 200
        assert _listening_ports(s.proc.pid) == {int(s.url.rsplit(":", 1)[1])}
        assert "Metrics:" not in s.log
    finally:
        s.stop()
    with_flag = start_server(
        app_dir, "--workers", "1", "--metrics-listen", "127.0.0.1:0", cache_dir=cache_dir
    )
    try:
        metrics_port = int(metrics_url(with_flag).split(":")[2].split("/")[0])
        ports = _listening_ports(with_flag.proc.pid)
        assert ports == {int(with_flag.url.rsplit(":", 1)[1]), metrics_port}
    finally:
        with_flag.stop()


def test_without_the_flag_prometheus_client_is_never_imported(app_dir: Path) -> None:
    """The whole request path, in process, with metrics off: no metric object exists."""
    code = f"""
import asyncio, sys
from wasmlet.loader import load_app
from wasmlet.running import AppOptions, build_app

from pathlib import Path
app = build_app(
    load_app(Path({str(app_dir)!r})), AppOptions(state_dir=Path({str(app_dir / ".spin")!r}))
)
app.start()
sent = []
async def main():
    scope = {{"type": "http", "method": "GET", "path": "/hello", "raw_path": b"/hello",
              "query_string": b"", "headers": [], "client": ("127.0.0.1", 1)}}
    async def receive():
        return {{"type": "http.request", "body": b"", "more_body": False}}
    async def send(message):
        sent.append(message)
    await app.trigger(scope, receive, send)
asyncio.run(main())
app.close()
print(sent[0]["status"], "prometheus_client" in sys.modules)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["200", "False"]


def test_observe_is_a_base_layer() -> None:
    """observe/ imports nothing of wasmlet's but `errors` and itself: every layer may use it."""
    wrong = []
    for path in (ROOT / "src" / "wasmlet" / "observe").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                target = "." * node.level + (node.module or "")
                if node.level > 1 and target != "..errors":  # (level 1: observe itself)
                    wrong.append(f"{path.name}: {target}")
            elif isinstance(node, ast.ImportFrom | ast.Import):
                names = [node.module] if isinstance(node, ast.ImportFrom) else []
                names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
                wrong += [f"{path.name}: {n}" for n in names if n and n.startswith("wasmlet")]
    assert wrong == []
