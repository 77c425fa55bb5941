"""`wasmlet host`: many apps in one process, picked by Host, through the real server."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from support.component_guests import component, python_app
from support.env import FIXTURES, TESTBED
from support.server import Server, parse_env_dump, start_host, write_app

WAGI = """
spin_manifest_version = 2
[application]
name = "{name}"
[variables]
greeting = {{ default = "hello from {name}" }}
[[trigger.http]]
route = "/..."
component = "t"
executor = {{ type = "wagi" }}
[component.t]
source = "{testbed}"
environment = {{ APP = "{name}", VERSION = "{version}" }}
files = [{{ source = "static", destination = "/static" }}]
"""


def wagi_app(apps: Path, name: str, version: int = 1) -> Path:
    manifest = WAGI.format(name=name, version=version, testbed=TESTBED)
    return write_app(apps / name, manifest, {"static/who.txt": f"I am {name}\n"})


@pytest.fixture
def host(tmp_path: Path, cache_dir: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(apps: Path, *args: str) -> Server:
        server = start_host(apps, "--scan-interval", "0.2", *args, cache_dir=cache_dir)
        started.append(server)
        return server

    yield start
    for s in started:
        s.stop()


def get(server: Server, app: str, path: str = "/", **kw: object) -> httpx.Response:
    return server.get(path, headers={"host": f"{app}.localhost"}, **kw)


def app_env(server: Server, app: str) -> dict[str, str]:
    r = get(server, app, "/?mode=env")
    assert r.status_code == 200, r.text
    return parse_env_dump(r.text)[1]


def status(server: Server) -> dict[str, object]:
    r = server.get("/.well-known/wasmlet/apps")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    return json.loads(r.text)  # type: ignore[no-any-return]


def eventually(check: Callable[[], bool], timeout: float = 2.0) -> float:
    """Seconds until `check()` holds; fails after `timeout` (the host's promise is 2 s)."""
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout:
            raise AssertionError("not within the time allowed")
        time.sleep(0.05)
    return time.monotonic() - t0


def test_requests_go_to_the_app_their_host_names(
    tmp_path: Path, host: Callable[..., Server]
) -> None:
    apps = tmp_path / "apps"
    for name in ("shop", "blog"):
        wagi_app(apps, name)
    server = host(apps)
    assert "Serving 2 apps" in server.log
    assert app_env(server, "shop")["APP"] == "shop"
    assert app_env(server, "blog")["APP"] == "blog"
    # Any domain: only the first label names the app; the port does not matter.
    r = server.get("/?mode=env", headers={"host": "blog.example.com:8443"})
    assert parse_env_dump(r.text)[1]["APP"] == "blog"
    assert parse_env_dump(r.text)[1]["HTTP_HOST"] == "blog.example.com:8443"
    assert get(server, "nosuch").status_code == 404
    # A Host naming no app (a bare name, an address) reaches the host's own endpoints.
    assert server.get("/.well-known/spin/health").status_code == 200
    assert server.get("/", headers={"host": "127.0.0.1"}).status_code == 404
    names = [a["name"] for a in status(server)["apps"]]  # type: ignore[union-attr,index]
    assert names == ["blog", "shop"]


def test_apps_are_added_changed_and_removed_without_a_restart(
    tmp_path: Path, host: Callable[..., Server]
) -> None:
    apps = tmp_path / "apps"
    wagi_app(apps, "one")
    wagi_app(apps, "gone")
    server = host(apps, "--scan-interval", "600")  # only inotify: no periodic rescan helps
    pid = server.proc.pid
    assert get(server, "two").status_code == 404

    wagi_app(apps, "two")
    eventually(lambda: get(server, "two").status_code == 200)
    assert app_env(server, "two")["APP"] == "two"

    wagi_app(apps, "one", version=2)  # spin.toml rewritten in place
    eventually(lambda: app_env(server, "one")["VERSION"] == "2")

    shutil.rmtree(apps / "gone")
    eventually(lambda: get(server, "gone").status_code == 404)
    assert server.proc.pid == pid and server.alive()
    versions = {a["name"]: a["version"] for a in status(server)["apps"]}  # type: ignore[union-attr,index]
    assert versions == {"one": 2, "two": 1}


def test_a_changed_app_finishes_old_requests_on_the_old_version(
    tmp_path: Path, host: Callable[..., Server]
) -> None:
    apps = tmp_path / "apps"
    slow = FIXTURES / "components" / "slow-stream.wasm"
    manifest = f"""
spin_manifest_version = 2
[application]
name = "flip"
[[trigger.http]]
route = "/..."
component = "c"
[component.c]
source = "{slow}"
"""
    write_app(apps / "flip", manifest)
    server = host(apps)
    result: dict[str, httpx.Response] = {}

    def slow_request() -> None:
        result["old"] = get(server, "flip", "/")

    t = threading.Thread(target=slow_request)
    t.start()
    time.sleep(0.4)  # the guest is waiting between `first` and `second`
    wagi_app(apps, "flip", version=2)  # now the testbed Wagi app, at the same name
    eventually(lambda: get(server, "flip", "/?mode=env").text.startswith("argv[0]="))
    t.join(10)
    assert result["old"].status_code == 200
    assert result["old"].text == "first\nsecond\n"  # v1 answered it, whole


def test_each_app_keeps_its_own_variables_files_and_state(
    tmp_path: Path, host: Callable[..., Server]
) -> None:
    apps = tmp_path / "apps"
    for name in ("a", "b"):
        python_app(
            apps / name,
            component_variables={"message": "{{ greeting }}"},
            variables={"greeting": {"default": f"default of {name}"}},
        )
    (apps / "b" / ".env").write_text("SPIN_VARIABLE_GREETING=from b's .env\n")
    for name in ("wa", "wb"):
        wagi_app(apps, name)
    server = host(apps, "--state-dir", str(tmp_path / "state"))

    assert get(server, "a", "/var/message").text == "default of a"
    assert get(server, "b", "/var/message").text == "from b's .env"
    # Key-value: the same key in the same-named store, one value per app.
    with httpx.Client(base_url=server.url, timeout=30) as c:
        assert c.put("/kv/k", content=b"of a", headers={"host": "a.localhost"}).status_code == 200
        assert c.put("/kv/k", content=b"of b", headers={"host": "b.localhost"}).status_code == 200
        assert c.get("/kv/k", headers={"host": "a.localhost"}).text == "of a"
        assert c.get("/kv/k", headers={"host": "b.localhost"}).text == "of b"
    assert (tmp_path / "state" / "a" / "sqlite_key_value.db").is_file()
    assert (tmp_path / "state" / "b" / "sqlite_key_value.db").is_file()
    # Files: each app sees its own at /static, and nothing of the other's.
    assert get(server, "wa", "/?mode=file&path=/static/who.txt").text == "I am wa\n"
    assert get(server, "wb", "/?mode=file&path=/static/who.txt").text == "I am wb\n"
    assert get(server, "wa", "/?mode=file&path=/../wb/static/who.txt").status_code == 404


def test_outbound_policy_is_per_app(tmp_path: Path, host: Callable[..., Server]) -> None:
    apps = tmp_path / "apps"
    python_app(apps / "allowed", allowed_outbound_hosts=["http://self"])
    python_app(apps / "denied")
    server = host(apps)
    allowed = get(server, "allowed", "/outbound", params={"url": "/var/none"})
    denied = get(server, "denied", "/outbound", params={"url": "/var/none"})
    assert allowed.status_code == 200 and allowed.text.startswith("404\n"), allowed.text
    assert denied.status_code == 500 and "HttpRequestDenied" in denied.text


def test_a_relative_request_reaches_the_app_itself(
    tmp_path: Path, host: Callable[..., Server]
) -> None:
    apps = tmp_path / "apps"
    python_app(apps / "me", allowed_outbound_hosts=["http://self"])
    python_app(apps / "other", allowed_outbound_hosts=["http://self"])
    server = host(apps)
    r = get(server, "me", "/outbound", params={"url": "/headers"})
    assert r.status_code == 200, r.text
    assert "me.localhost" in r.text and "other.localhost" not in r.text


def test_a_looping_app_does_not_stop_the_others(
    tmp_path: Path, host: Callable[..., Server]
) -> None:
    apps = tmp_path / "apps"
    wagi_app(apps, "looper")
    wagi_app(apps, "healthy")
    server = host(apps, "--request-timeout", "2", "--threads", "8")
    results: list[int] = []

    def loop() -> None:
        results.append(get(server, "looper", "/?mode=loop").status_code)

    threads = [threading.Thread(target=loop) for _ in range(12)]  # more than the pool
    for t in threads:
        t.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    assert get(server, "healthy", "/?mode=env").status_code == 200
    # not behind the looping app's 12 requests (that would take their 2 s deadline; the
    # margin is for a loaded machine, where the loops share two cores with everything)
    assert time.monotonic() - t0 < 1.6
    for t in threads:
        t.join(30)
    assert results == [500] * 12  # each stopped at its deadline


def test_an_app_that_fails_to_load_is_reported_and_the_others_serve(
    tmp_path: Path, host: Callable[..., Server]
) -> None:
    apps = tmp_path / "apps"
    wagi_app(apps, "good")
    write_app(apps / "broken", "spin_manifest_version = 2\n[application]\nname = 'x'\nbogus = 1\n")
    (apps / "Not_A_Label").mkdir(parents=True)
    server = host(apps)
    assert get(server, "good").status_code == 200
    r = get(server, "broken")
    assert r.status_code == 503 and "broken" in r.text
    problems = status(server)["not_served"]
    assert "bogus" in problems["broken"]  # type: ignore[index]
    assert "DNS label" in problems["Not_A_Label"]  # type: ignore[index]
    assert "not served: broken" in server.log
    # Fixing it serves it, without a restart; breaking a served app keeps its last version.
    wagi_app(apps, "broken")
    eventually(lambda: get(server, "broken").status_code == 200)
    (apps / "good" / "spin.toml").write_text("not toml = = =\n")
    eventually(lambda: "good" in status(server)["not_served"])  # type: ignore[operator]
    assert get(server, "good", "/?mode=env").status_code == 200


def test_precompile_compiles_at_load_and_apps_are_built_on_first_request(
    tmp_path: Path, host: Callable[..., Server]
) -> None:
    apps = tmp_path / "apps"
    hello = component("hello")
    for i in range(3):
        manifest = f"""
spin_manifest_version = 2
[application]
name = "h{i}"
[[trigger.http]]
route = "/..."
component = "c"
[component.c]
source = "{hello}"
"""
        write_app(apps / f"h{i}", manifest)
    cache = tmp_path / "cache"
    server = host(apps, "--precompile", "--cache-dir", str(cache))  # (the last --cache-dir wins)
    assert len(list((cache / "compiled").glob("*.cwasm"))) == 1  # one component, three apps
    assert {a["status"] for a in status(server)["apps"]} == {"loaded"}  # type: ignore[union-attr,index]
    assert get(server, "h1").status_code == 200
    states = {a["name"]: a["status"] for a in status(server)["apps"]}  # type: ignore[union-attr,index]
    assert states == {"h0": "loaded", "h1": "ready", "h2": "loaded"}


def test_a_file_outside_the_directory_is_noticed_by_the_rescan(
    tmp_path: Path, host: Callable[..., Server]
) -> None:
    outside = tmp_path / "shared" / "guest.wasm"
    outside.parent.mkdir()
    shutil.copy(TESTBED, outside)
    manifest = WAGI.replace("{testbed}", str(outside))
    write_app(tmp_path / "apps" / "ext", manifest.format(name="ext", version=1, testbed=outside))
    (tmp_path / "apps" / "ext" / "static").mkdir()
    server = host(tmp_path / "apps", "--scan-interval", "0.3")
    assert get(server, "ext", "/?mode=env").status_code == 200
    shutil.copy(FIXTURES / "wagi" / "hello.wasm", outside)  # another guest, same path
    eventually(lambda: get(server, "ext", "/?mode=env").text == "Hello from wasmlet!\n")
    assert [a["version"] for a in status(server)["apps"]] == [2]  # type: ignore[union-attr,index]
