"""Prometheus metrics from a containerd shim task (issue 15 item 1): a real containerd 1.7
(as in test_shim_containerd.py) runs the hello app in a network namespace of its own, as a
pod's; with WASMLET_METRICS_LISTEN in the container's environment (what the operator sets
for an executor with `metrics`) the task serves /metrics on that address in the pod's
namespace, counting the requests it served (and the status page, listing its app);
containerd's Stats (`ctr task metrics`) still reads the task's cgroup. Requests go from
inside the namespace (`ip netns exec`, busybox)."""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
from fixtures.shim.containerd import Containerd
from fixtures.shim.testing import containerd_with_images, finish, new_name, remove
from prometheus_client.parser import text_string_to_metric_families
from support.otlp import OtlpReceiver, env_for

from wasmlet.shim.runnerconfig import METRICS_ENV

pytestmark = pytest.mark.timeout(300)

APP = "localhost/hello:1"


@pytest.fixture(scope="module")
def c17(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    yield from containerd_with_images(tmp_path_factory.mktemp("images"))


@pytest.fixture
def netns() -> Iterator[str]:
    """A pod's network namespace (loopback up): its name under /var/run/netns."""
    name = "wlmet-" + uuid.uuid4().hex[:6]
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
    yield name
    subprocess.run(["ip", "netns", "delete", name], check=False)


def fetch(netns: str, url: str) -> str | None:
    """GET `url` from inside the namespace; None if nothing answered (or not 2xx)."""
    result = subprocess.run(
        ["ip", "netns", "exec", netns, "/bin/busybox", "wget", "-q", "-O", "-", url],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result.stdout if result.returncode == 0 else None


def wait_fetch(netns: str, url: str, proc: subprocess.Popen[str], timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = fetch(netns, url)
        if answer is not None:
            return answer
        if proc.poll() is not None:
            raise AssertionError(f"ctr run exited {proc.returncode}: {finish(proc)[1]}")
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer in {netns}")


def run_in(c: Containerd, netns: str, name: str, *extra: str) -> subprocess.Popen[str]:
    """`ctr run --rm` of hello in the namespace, on the pod's default 0.0.0.0:80."""
    args = c.run_args(APP, name, "--rm", "--with-ns", f"network:/var/run/netns/{netns}", *extra)
    return c.ctr_popen(*args)


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def test_a_task_serves_its_metrics_in_the_pods_network_namespace(
    c17: Containerd, netns: str
) -> None:
    name = new_name()
    proc = run_in(c17, netns, name, "--env", f"{METRICS_ENV}=0.0.0.0:9090")
    try:
        assert wait_fetch(netns, "http://127.0.0.1:80/", proc) == "Hello from wasmlet!\n"
        for _ in range(4):
            assert fetch(netns, "http://127.0.0.1:80/hello?x=1") == "Hello from wasmlet!\n"
        text = fetch(netns, "http://127.0.0.1:9090/metrics")
        assert text is not None
        durations = samples(text, "http_server_request_duration_seconds_count")
        assert durations == {
            (
                ("app", "hello"),
                ("component", "hello"),
                ("http_request_method", "GET"),
                ("http_response_status_code", "200"),
                ("http_route", "/..."),  # the route as written, never the path
            ): 5.0
        }
        assert set(samples(text, "http_server_active_requests").values()) == {0.0}
        instantiations = samples(text, "wasmlet_instantiation_duration_seconds_count")
        assert instantiations == {(("app", "hello"), ("component", "hello")): 5.0}
        assert fetch(netns, "http://127.0.0.1:9090/other") is None  # 404
        page = json.loads(fetch(netns, "http://127.0.0.1:9090/status.json") or "{}")
        assert [(a["name"], a["state"]) for a in page["apps"]] == [("hello", "ready")]
        # containerd's Stats: the task's cgroup, as without metrics
        stats = c17.ctr("task", "metrics", name).stdout
        assert re.search(r"memory\.usage_in_bytes\s+[1-9]\d+|memory\.usage\s+[1-9]", stats), stats
        c17.ctr("task", "kill", name)  # SIGTERM: drain, exit 0
        code, output = finish(proc)
    finally:
        if proc.poll() is None:
            remove(c17, name)
            proc.kill()
    assert code == 0, output
    assert "Metrics: http://0.0.0.0:9090/metrics" in output  # in the container's log


def test_without_the_variable_nothing_listens(c17: Containerd, netns: str) -> None:
    name = new_name()
    proc = run_in(c17, netns, name)
    try:
        assert "Hello" in wait_fetch(netns, "http://127.0.0.1:80/", proc)
        assert fetch(netns, "http://127.0.0.1:9090/metrics") is None
        c17.ctr("task", "kill", name)
        code, output = finish(proc)
    finally:
        if proc.poll() is None:
            remove(c17, name)
            proc.kill()
    assert code == 0 and "Metrics:" not in output, output


def test_a_bad_address_is_a_startup_error_naming_the_variable(c17: Containerd) -> None:
    result = c17.ctr(
        *c17.run_args(APP, new_name(), "--rm", "--net-host", "--env", f"{METRICS_ENV}=nowhere"),
        check=False,
    )
    assert result.returncode == 1, result
    assert (
        f"Error: {METRICS_ENV}: invalid address 'nowhere': expected HOST:PORT"
        in result.stdout + result.stderr
    )


def test_a_task_exports_traces_from_the_otel_variables(c17: Containerd, netns: str) -> None:
    """OTEL_* in the container's environment (what the operator sets from the executor's
    `otel` fields) make the task export its spans; the receiver listens in the pod's
    network namespace, where the task is."""
    with OtlpReceiver(netns=netns) as otlp:
        env = env_for(otlp, OTEL_SERVICE_NAME="hello-pod")
        name = new_name()
        proc = run_in(c17, netns, name, *[a for k, v in env.items() for a in ("--env", f"{k}={v}")])
        try:
            assert wait_fetch(netns, "http://127.0.0.1:80/", proc) == "Hello from wasmlet!\n"
            server = otlp.wait_for_span("GET /...")
            assert server.kind == 2 and server.resource["service.name"] == "hello-pod"
            assert server.attributes["http.route"] == "/..."
            guests = otlp.wait(lambda spans: any(s.parent_span_id == server.span_id for s in spans))
            child = next(s for s in guests if s.parent_span_id == server.span_id)
            assert child.name.startswith("execute_") and child.name.endswith(" hello")
            c17.ctr("task", "kill", name)
            code, output = finish(proc)
        finally:
            if proc.poll() is None:
                remove(c17, name)
                proc.kill()
    assert code == 0, output
