"""The status page on the metrics listener: `GET /` (HTML), `/status.js` (the script that
renders it) and `/status.json` (what the script polls every `REFRESH` seconds).

Numbers come from the same registry `/metrics` serves (with `--workers N`, the sum of every
worker's files): request counts, 5xx responses, latency percentiles estimated from the
histogram's buckets (as Prometheus' `histogram_quantile` does: linear within a bucket) since
the server started, and the request rate over the last `RATE_WINDOW` seconds or so (from the
counts this page saw at earlier polls). Apps, routes, triggers and recent guest failures come
from `status` (registered by the layers that load apps).

The page renders guest text (backtraces, stderr, names) with `textContent` only, and its
Content-Security-Policy allows no inline script: guest text is untrusted.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from collections.abc import Iterable
from importlib import resources
from typing import TYPE_CHECKING, Any

from . import status

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

PATHS = ("/", "/status")  # the HTML
JSON_PATH = "/status.json"
SCRIPT_PATH = "/status.js"
REFRESH = 1.0  # seconds between the page's polls
RATE_WINDOW = 10.0  # seconds
QUANTILES = (0.5, 0.9, 0.99)
CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

HTTP = "http_server_request_duration_seconds"
RouteKey = tuple[str, str, str]  # (app, route, component), as the metrics label them


class _Route:
    __slots__ = ("buckets", "count", "errors")

    def __init__(self) -> None:
        self.count = 0.0
        self.errors = 0.0  # 5xx
        self.buckets: dict[float, float] = {}  # upper bound -> cumulative count

    def add(self, other: _Route) -> None:
        self.count += other.count
        self.errors += other.errors
        for le, n in other.buckets.items():
            self.buckets[le] = self.buckets.get(le, 0.0) + n


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """The `q` quantile of a histogram's cumulative `buckets` (None: no observations). In
    the +Inf bucket: the largest finite bound, as Prometheus answers."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0.0
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for upper in bounds:
        count = buckets[upper]
        if count >= rank:
            if math.isinf(upper):
                return lower
            if count == below:
                return upper
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return lower


class StatusPage:
    """What the endpoint serves besides `/metrics`; one per listener (its rate history)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.started = time.time()
        self._lock = threading.Lock()
        # (time.monotonic(), request counts by route): the counts were all 0 at the start.
        self._history: deque[tuple[float, dict[RouteKey, float]]] = deque([(time.monotonic(), {})])

    @staticmethod
    def html() -> bytes:
        return resources.files(__package__).joinpath("status.html").read_bytes()

    @staticmethod
    def script() -> bytes:
        return resources.files(__package__).joinpath("status.js").read_bytes()

    def json(self) -> bytes:
        return json.dumps(self.collect()).encode()

    def collect(self) -> dict[str, Any]:
        routes, failures, messages, host = self._read(self.registry.collect())
        rates = self._rates({k: r.count for k, r in routes.items()})
        apps, errors, processes = status.snapshot()
        out = []
        for key, description in sorted(apps.items()):
            out.append(_app(key, description, routes, rates, failures, messages, host))
        return {
            "time": time.time(),
            "uptime": time.time() - self.started,
            "processes": processes,
            "rate_window": RATE_WINDOW,
            "refresh": REFRESH,
            "apps": out,
            "errors": errors,
        }

    def _rates(self, counts: dict[RouteKey, float]) -> dict[RouteKey, float]:
        """Requests per second by route, since the oldest poll within RATE_WINDOW (the
        newest older one, so the window is at least that long when polled often)."""
        now = time.monotonic()
        with self._lock:
            history = self._history
            while len(history) > 1 and history[1][0] <= now - RATE_WINDOW:
                history.popleft()
            since, before = history[0]
            history.append((now, counts))
        took = now - since
        if took <= 0:
            return {}
        return {k: max(0.0, n - before.get(k, 0.0)) / took for k, n in counts.items()}

    @staticmethod
    def _read(
        families: Iterable[Any],
    ) -> tuple[
        dict[RouteKey, _Route],
        dict[tuple[str, str], dict[str, float]],
        dict[tuple[str, str, str], dict[str, float]],
        dict[str, dict[str, float]],
    ]:
        routes: dict[RouteKey, _Route] = {}
        failures: dict[tuple[str, str], dict[str, float]] = {}
        messages: dict[tuple[str, str, str], dict[str, float]] = {}
        host: dict[str, dict[str, float]] = {}
        for family in families:
            for s in family.samples:
                ls = s.labels
                if s.name.startswith(HTTP):
                    key = (ls["app"], ls["http_route"], ls["component"])
                    route = routes.get(key)
                    if route is None:
                        route = routes[key] = _Route()
                    if s.name == HTTP + "_bucket":
                        le = float(ls["le"])
                        route.buckets[le] = route.buckets.get(le, 0.0) + s.value
                    elif s.name == HTTP + "_count":
                        route.count += s.value
                        if ls["http_response_status_code"].startswith("5"):
                            route.errors += s.value
                elif s.name == "wasmlet_guest_failures_total":
                    kinds = failures.setdefault((ls["app"], ls["component"]), {})
                    kinds[ls["kind"]] = kinds.get(ls["kind"], 0.0) + s.value
                elif s.name == "wasmlet_messages_handled_total":
                    outcomes = messages.setdefault((ls["app"], ls["component"], ls["trigger"]), {})
                    outcomes[ls["outcome"]] = outcomes.get(ls["outcome"], 0.0) + s.value
                elif s.name == "wasmlet_host_requests_total":
                    counts = host.setdefault(ls["app"], {"requests": 0.0, "cold_starts": 0.0})
                    counts["requests"] += s.value
                    if ls["cold_start"] == "true":
                        counts["cold_starts"] += s.value
        return routes, failures, messages, host


def _numbers(route: _Route, rate: float) -> dict[str, Any]:
    out: dict[str, Any] = {"requests": route.count, "errors": route.errors, "rate": rate}
    for q in QUANTILES:
        out[f"p{round(q * 100)}"] = quantile(q, route.buckets)
    return out


def _app(
    key: str,
    description: status.App,
    routes: dict[RouteKey, _Route],
    rates: dict[RouteKey, float],
    failures: dict[tuple[str, str], dict[str, float]],
    messages: dict[tuple[str, str, str], dict[str, float]],
    host: dict[str, dict[str, float]],
) -> dict[str, Any]:
    """One app of the page: its description with its numbers (metrics label apps by their
    manifest name, `app`; a multi-app host's own counts by the name it serves them as)."""
    name = str(description.get("app", key))
    total, rate = _Route(), 0.0
    listed = []
    for r in description.get("routes", []):
        k = (name, r["route"], r["component"])
        found = routes.get(k, _Route())
        total.add(found)
        rate += rates.get(k, 0.0)
        listed.append(r | _numbers(found, rates.get(k, 0.0)))
    missed = routes.get((name, "", ""), _Route())  # no route matched: 404
    total.add(missed)
    rate += rates.get((name, "", ""), 0.0)
    components = [
        c | {"failures": failures.get((name, c["id"]), {})}
        for c in description.get("components", [])
    ]
    triggers = [
        t | {"handled": messages.get((name, t["component"], t["type"]), {})}
        for t in description.get("triggers", [])
    ]
    out = description | {
        "name": key,
        "routes": listed,
        "components": components,
        "triggers": triggers,
        "not_found": missed.count,
        "total": _numbers(total, rate),
    }
    if key in host:
        out["host"] = host[key]
    return out
