"""The status page (issue 15, item 4) on the `--metrics-listen` listener: a real `wasmlet up`
serving Wagi guests (built from guests/c/) and a component that traps two calls deep in a
function named `<script>document.title='pwned'</script>` (guests/components/trap.wat; guest
text is untrusted), looked at in Debian's chromium, headless, driven by selenium through
chromium-driver. The page lists the app's routes and components, its numbers change without
a reload after more requests, and the trap shows with its backtrace, as text. A screenshot
goes to build/test-artifacts/status-page.png. With `--workers 2` the JSON the page polls
sums the workers and merges their failures."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.component_guests import component
from support.env import IN_CI, ROOT, TESTBED, require_tool
from support.server import Server, start_server, write_app

from wasmlet.loader import load_app
from wasmlet.observe.status import describe_app, split_failure
from wasmlet.observe.status_page import quantile

CHROMIUM = "/usr/bin/chromium"
DRIVER = "/usr/bin/chromedriver"
ARTIFACTS = ROOT / "build" / "test-artifacts"
SCRIPT = "<script>document.title='pwned'</script>"

APP = """
spin_manifest_version = 2
[application]
name = "status-demo"

[[trigger.http]]
route = "/hello"
component = "hello"
executor = {{ type = "wagi" }}

[[trigger.http]]
route = "/tb/..."
component = "testbed"
executor = {{ type = "wagi" }}

[[trigger.http]]
route = "/trap"
component = "trap"

[[trigger.http]]
route = "/static"
static_response = {{ status_code = 201, body = "made" }}

[component.hello]
source = "{{hello}}"

[component.testbed]
source = "{{testbed}}"

[component.trap]
source = "{trap}"
"""


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_app(tmp_path_factory.mktemp("status"), APP.format(trap=component("trap")))


def status_url(server: Server) -> str:
    for line in server.output:
        if line.startswith("Metrics: "):
            return line.split()[1].removesuffix("metrics")
    raise AssertionError(f"no Metrics line:\n{server.log}")


def with_errors(url: str, count: int) -> dict[str, Any] | None:
    """The status, once it shows `count` failures (workers write theirs within 0.2 s)."""
    body: dict[str, Any] = httpx.get(url).json()
    return body if len(body["errors"]) >= count else None


def until(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    """`check()` once it is true; an element the page replaced meanwhile (it re-renders
    every second) counts as not yet."""
    from selenium.common.exceptions import StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except StaleElementReferenceException:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_tool(CHROMIUM, "chromium")
    require_tool(DRIVER, "chromium-driver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:  # (the dev extra installs it)
        if IN_CI:
            pytest.fail("selenium not installed (pip install -e '.[dev]') — required under CI=true")
        pytest.skip("selenium not installed (pip install -e '.[dev]')")

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1300"):
        options.add_argument(arg)  # (no sandbox: the tests may run as root, in a container)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def test_the_page_lists_the_app_updates_live_and_shows_failures_as_text(
    app_dir: Path, cache_dir: Path, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    s = start_server(app_dir, "--metrics-listen", "127.0.0.1:0", cache_dir=cache_dir)
    try:
        with s.client() as c:
            for _ in range(3):
                assert c.get("/hello").status_code == 200
            assert c.get("/trap").status_code == 500
            assert c.get("/static").status_code == 201
        page = status_url(s)
        r = httpx.get(page)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in r.headers["content-security-policy"]
        browser.get(page)

        # Read in one script each: the page re-renders every second, so an element found
        # by one call may be replaced before the next reads it.
        def text(selector: str) -> str:
            found = browser.execute_script(
                "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';",
                selector,
            )
            return str(found)

        def attributes(selector: str, name: str) -> list[str]:
            return list(
                browser.execute_script(
                    "return [...document.querySelectorAll(arguments[0])]"
                    ".map(e => e.getAttribute(arguments[1]));",
                    selector,
                    name,
                )
            )

        def cell(route: str, name: str) -> str:
            return text(f'section[data-app="status-demo"] tr[data-route="{route}"] td.{name}')

        until(lambda: cell("/hello", "requests") == "3")
        routes = attributes("table.routes tr[data-route]", "data-route")
        assert routes == ["/hello", "/tb/...", "/trap", "/static"]
        assert cell("/trap", "component") == "trap"
        assert cell("/trap", "errors") == "1"
        assert cell("/static", "requests") == "1"
        assert cell("/tb/...", "requests") == "0"
        assert cell("/hello", "p50").endswith(" ms")
        components = attributes("table.components tr[data-component]", "data-component")
        assert components == ["hello", "testbed", "trap"]
        assert text('tr[data-component="trap"] .failures') == "trap 1"

        # The failure, its backtrace and the markup in it, shown as text and never run.
        error = until(lambda: text("#errors .error"))
        assert "status-demo / trap" in error
        assert "wasm `unreachable` instruction executed" in error
        backtrace = text("#errors .error pre.backtrace")
        assert SCRIPT in backtrace and "handle_request" in backtrace
        assert backtrace.index(SCRIPT) < backtrace.index("handle_request")  # innermost first
        assert browser.title == "wasmlet status"
        assert len(browser.find_elements(By.TAG_NAME, "script")) == 1  # the page's own
        assert browser.find_elements(By.CSS_SELECTOR, "#errors script") == []

        # More requests: the numbers change in place (the marker survives: no reload).
        browser.execute_script("window.notReloaded = true;")
        with s.client() as c:
            for _ in range(5):
                assert c.get("/hello").status_code == 200
            assert c.get("/tb/?mode=trap").status_code == 500
        until(lambda: cell("/hello", "requests") == "8")
        until(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#errors .error")) == 2)
        assert browser.execute_script("return window.notReloaded === true;")
        assert cell("/hello", "rate") not in ("", "0.0/s")
        assert "status-demo / testbed" in text("#errors .error")  # newest first
        total = "section[data-app] .total .requests"  # 8 + the static one + the trap
        until(lambda: text(total) == "11")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "status-page.png"
        assert browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
    finally:
        s.stop()


def test_with_workers_the_page_sums_them_and_merges_their_failures(
    app_dir: Path, cache_dir: Path
) -> None:
    """The supervisor serves the page: numbers from every worker's metrics files, apps and
    failures from every worker's status file."""
    s = start_server(
        app_dir, "--metrics-listen", "127.0.0.1:0", "--workers", "2", cache_dir=cache_dir
    )
    try:
        url = status_url(s) + "status.json"
        until(lambda: httpx.get(url).json()["processes"] == 3)  # the supervisor and 2 workers
        sent = 0
        while True:  # until both workers have trapped (the kernel picks one per connection)
            for _ in range(10):
                with httpx.Client(base_url=s.url, timeout=30) as c:
                    assert c.get("/trap").status_code == 500
            sent += 10
            body = until(partial(with_errors, url, min(sent, 20)))  # the newest 20 of all
            pids = {e["pid"] for e in body["errors"]}
            if len(pids) == 2 or sent >= 200:
                break
        assert len(pids) == 2, pids

        def counted() -> dict[str, Any] | None:  # a worker's counts: in its file within
            body: dict[str, Any] = httpx.get(url).json()  # metrics.FLUSH_INTERVAL
            (app,) = body["apps"]
            trap = next(r for r in app["routes"] if r["route"] == "/trap")
            return body if trap["requests"] == sent else None

        body = until(counted)
        (app,) = body["apps"]
        assert app["name"] == "status-demo" and app["state"] == "ready"
        trap = next(r for r in app["routes"] if r["route"] == "/trap")
        assert trap["requests"] == trap["errors"] == sent
        assert {c["id"]: c["failures"] for c in app["components"]}["trap"] == {"trap": sent}
        newest = body["errors"][0]
        assert newest["component"] == "trap" and newest["backtrace"][0].endswith(SCRIPT)
        assert s.proc.pid not in pids
    finally:
        s.stop()


# -- the pieces ------------------------------------------------------------------------------


def test_quantiles_from_cumulative_buckets() -> None:
    buckets = {0.01: 2.0, 0.1: 6.0, 1.0: 10.0, float("inf"): 10.0}
    assert quantile(0.5, buckets) == pytest.approx(0.01 + 0.09 * (5 - 2) / 4)
    assert quantile(0.1, buckets) == pytest.approx(0.005)  # the first bucket starts at 0
    assert quantile(0.99, buckets) == pytest.approx(0.1 + 0.9 * (9.9 - 6) / 4)
    assert quantile(0.5, {0.1: 0.0, float("inf"): 0.0}) is None
    # Past the largest finite bound: that bound (Prometheus' answer; nothing better is known).
    assert quantile(0.9, {0.1: 1.0, 1.0: 1.0, float("inf"): 4.0}) == 1.0


def test_a_wasmtime_error_is_split_into_message_and_frames() -> None:
    text = (
        "error while executing at wasm backtrace:\n"
        "    0:     0xaf - <unknown>!<script>x</script>\n"
        "    1:     0xb4 - <unknown>!handle_request\n\n"
        "Caused by:\n    wasm trap: wasm `unreachable` instruction executed\n"
    )
    assert split_failure(text) == (
        "wasm trap: wasm `unreachable` instruction executed",
        ["0:     0xaf - <unknown>!<script>x</script>", "1:     0xb4 - <unknown>!handle_request"],
    )
    assert split_failure("exited with status 3") == ("exited with status 3", [])


def test_an_app_is_described_without_its_servers_addresses(tmp_path: Path) -> None:
    app = write_app(
        tmp_path,
        f"""
spin_manifest_version = 2
[application]
name = "many"
[application.trigger.redis]
address = "redis://:secret-password@127.0.0.1:6379"
[application.trigger.mqtt]
address = "mqtt://127.0.0.1:1883"
username = "u"
password = "another-secret"
keep_alive_interval = "30"
[[trigger.http]]
route = "/a/..."
component = "c"
[[trigger.http]]
route = {{ private = true }}
component = "c"
[[trigger.redis]]
channel = "orders"
component = "c"
[[trigger.mqtt]]
topic = "sensors/+"
qos = "1"
component = "c"
[[trigger.cron]]
cron_expression = "*/5 * * * * *"
component = "c"
[component.c]
source = "{TESTBED}"
""",
    )
    described = describe_app(load_app(app))
    assert described == {
        "app": "many",
        "components": [{"id": "c"}],
        "routes": [{"route": "/a/...", "component": "c", "executor": "http"}],  # not private
        "triggers": [
            {"type": "redis", "component": "c", "detail": "channel orders"},
            {"type": "mqtt", "component": "c", "detail": "topic sensors/+ (qos 1)"},
            {"type": "cron", "component": "c", "detail": "schedule */5 * * * * *"},
        ],
    }
    assert "secret" not in str(described)
