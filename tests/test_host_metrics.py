"""The multi-app host's own metrics and status (issue 15, items 1 and 4): a real `wasmlet host
--metrics-listen` over a directory of Wagi apps (guests/c/), real requests by Host, the real
endpoint scraped. A request that finds its app not yet built (its first, or the first after
the app changed) is a cold start: `wasmlet_host_requests_total{cold_start="true"}` and the
wait in `wasmlet_host_cold_start_duration_seconds`. The status page's JSON lists the apps the
host serves (loaded, ready, not served)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from support.env import WAGI
from support.server import Server, start_host, write_app

REQUESTS = "wasmlet_host_requests_total"
COLD = "wasmlet_host_cold_start_duration_seconds"


def manifest(name: str, greeting: str = "hi") -> str:
    return (
        f'spin_manifest_version = 2\n[application]\nname = "{name}"\n[[trigger.http]]\n'
        f'route = "/..."\ncomponent = "t"\nexecutor = {{ type = "wagi" }}\n'
        f'[component.t]\nsource = "{WAGI / "testbed.wasm"}"\n'
        f'[component.t.environment]\nGREETING = "{greeting}"\n'
    )


def endpoint(server: Server) -> str:
    line = next(x for x in server.output if x.startswith("Metrics: "))
    return line.split()[1].removesuffix("metrics")


def scrape(base: str) -> list[tuple[str, dict[str, str], float]]:
    text = httpx.get(base + "metrics", timeout=10).text
    return [
        (s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def value(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    return sum(v for n, ls, v in samples if n == name and labels.items() <= ls.items())


def eventually(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)
    return result


def test_cold_starts_are_counted_per_app(tmp_path: Path, cache_dir: Path) -> None:
    apps = tmp_path / "apps"
    for name in ("alpha", "beta"):
        write_app(apps / name, manifest(name))
    write_app(apps / "broken", "spin_manifest_version = 2\n[application]\nname = 'x'\nbogus = 1\n")
    server = start_host(apps, "--metrics-listen", "127.0.0.1:0", cache_dir=cache_dir)
    try:
        base = endpoint(server)

        def states() -> dict[str, str]:
            body = httpx.get(base + "status.json", timeout=10).json()
            return {a["name"]: a["state"] for a in body["apps"]}

        assert states() == {"alpha": "loaded", "beta": "loaded", "broken": "not served"}
        broken = httpx.get(base + "status.json").json()["apps"][2]
        assert "bogus" in broken["error"]

        def get(app: str) -> int:
            with server.client() as c:
                r = c.get("/?mode=echo", headers={"host": f"{app}.localhost"})
                return r.status_code

        assert [get("alpha") for _ in range(3)] == [200] * 3  # the first is cold
        assert get("beta") == 200
        assert get("broken") == 503  # never loaded: not counted
        assert states() == {"alpha": "ready", "beta": "ready", "broken": "not served"}

        # Changed: its new version is built on its next request, a cold start again.
        (apps / "alpha" / "spin.toml").write_text(manifest("alpha", greeting="hello"))

        def version() -> int:
            status = server.get("/.well-known/wasmlet/apps").json()
            return int(next(a["version"] for a in status["apps"] if a["name"] == "alpha"))

        eventually(lambda: version() == 2)
        assert states()["alpha"] == "loaded"
        assert [get("alpha") for _ in range(2)] == [200] * 2
        samples = scrape(base)
    finally:
        assert server.stop() == 0

    assert value(samples, REQUESTS, app="alpha", cold_start="true") == 2
    assert value(samples, REQUESTS, app="alpha", cold_start="false") == 3
    assert value(samples, REQUESTS, app="beta", cold_start="true") == 1
    assert value(samples, REQUESTS, app="beta", cold_start="false") == 0
    assert value(samples, REQUESTS, app="broken") == 0
    # One wait per cold request: each its app's build, milliseconds for a Wagi module.
    assert value(samples, COLD + "_count", app="alpha") == 2
    assert value(samples, COLD + "_count", app="beta") == 1
    assert 0 < value(samples, COLD + "_sum", app="alpha") < 10
    # The app's own metrics are as under `wasmlet up`: every request, cold or not.
    http = "http_server_request_duration_seconds_count"
    assert value(samples, http, app="alpha", component="t") == 5
