"""The Prometheus metrics of one process, switched on by `enable` (`--metrics-listen`).

Every metric object is made by `enable`. Until then (and always, without the flag) the
accessors below (`http`, `component`, `outbound`) return None, and the code that would
measure keeps that None and skips its measuring: a server without metrics touches no metric
and never imports prometheus-client. Switch metrics on before building any app: what was
built earlier has no metrics.

What the request path counts (a request's duration and its being in flight, an
instantiation) reaches the metrics through `flush`, at most FLUSH_INTERVAL later (see `_add`).

With `--workers N`, every process writes its values to files in one directory private to
the run (prometheus-client's multiprocess mode), and the endpoint (`endpoint.py`) sums them;
the supervisor gives that directory (`multiprocess_dir()`) to the workers, which `enable`
with it.

Label values are bounded: routes as written in the manifest (never the raw path), methods
outside RFC 9110's (and PATCH) as `_OTHER`, as OpenTelemetry's HTTP conventions say.
"""

from __future__ import annotations

import atexit
import bisect
import logging
import os
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from . import status

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

log = logging.getLogger("wasmlet.metrics")

# How long the request path's counts may wait to reach the Prometheus metrics (see `_add`).
FLUSH_INTERVAL = 0.5  # seconds
# OpenTelemetry's advised buckets for http.server.request.duration (seconds).
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
# Instantiation takes tens of microseconds (a pooled slot) to tens of milliseconds.
INSTANTIATION_BUCKETS = (
    0.00002,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
)
KNOWN_METHODS = frozenset(
    ("CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE")
)
# A multi-app host's cold start: building an app takes milliseconds (a Wagi module) to seconds.
COLD_START_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# The kinds of `wasmlet_guest_failures_total` (docs/observability.md says when each counts).
FAILURE_KINDS = ("trap", "timeout", "memory_limit", "output_limit", "exit")
# The host APIs whose calls `wasmlet_outbound_*` count (`api` label).
OUTBOUND_APIS = ("http", "redis", "pg", "mysql", "mqtt", "kv", "sqlite")

_APP_COMPONENT = ("app", "component")


class _Families:
    """Every metric of the process (made once, by `enable`)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.http_duration = Histogram(
            "http_server_request_duration_seconds",
            "Duration of HTTP server requests (OpenTelemetry http.server.request.duration)",
            (*_APP_COMPONENT, "http_request_method", "http_route", "http_response_status_code"),
            buckets=HTTP_BUCKETS,
            registry=registry,
        )
        self.http_active = Gauge(
            "http_server_active_requests",
            "HTTP server requests in flight (OpenTelemetry http.server.active_requests)",
            ("app", "http_request_method"),
            registry=registry,
            multiprocess_mode="livesum",  # the live workers' sum; a dead one's is dropped
        )
        self.instantiation = Histogram(
            "wasmlet_instantiation_duration_seconds",
            "Time to instantiate a component or module in its fresh store, per request",
            _APP_COMPONENT,
            buckets=INSTANTIATION_BUCKETS,
            registry=registry,
        )
        self.failures = Counter(
            "wasmlet_guest_failures",
            "Guest runs that failed, by kind: " + ", ".join(FAILURE_KINDS),
            (*_APP_COMPONENT, "kind"),
            registry=registry,
        )
        self.outbound_duration = Histogram(
            "wasmlet_outbound_call_duration_seconds",
            "Duration of guests' calls to outbound host APIs (HTTP: until the response head)",
            ("api", *_APP_COMPONENT),
            buckets=HTTP_BUCKETS,
            registry=registry,
        )
        self.outbound_errors = Counter(
            "wasmlet_outbound_call_errors",
            "Outbound host API calls that returned an error or failed",
            ("api", *_APP_COMPONENT),
            registry=registry,
        )
        self.compile_cache = Counter(
            "wasmlet_compile_cache_lookups",
            "Compile cache lookups: hit (loaded precompiled) or miss (compiled and stored)",
            ("result",),
            registry=registry,
        )
        self.messages = Counter(
            "wasmlet_messages_handled",
            "Messages handled by message triggers (redis, mqtt), by outcome (ok, error)",
            (*_APP_COMPONENT, "trigger", "outcome"),
            registry=registry,
        )
        self.host_requests = Counter(
            "wasmlet_host_requests",
            "Requests a multi-app host passed to an app; cold_start: the app was not loaded "
            "(built) when the request came, so it waited for that",
            ("app", "cold_start"),
            registry=registry,
        )
        self.cold_start = Histogram(
            "wasmlet_host_cold_start_duration_seconds",
            "How long a cold request waited for its app to be loaded (built) by a multi-app host",
            ("app",),
            buckets=COLD_START_BUCKETS,
            registry=registry,
        )


class _Flushing:
    """A collector that yields nothing: registered first, it flushes the HTTP counts into
    the metrics before a scrape of this process's registry collects them."""

    def describe(self) -> list[object]:
        return []

    def collect(self) -> list[object]:
        flush()
        return []


_families: _Families | None = None
# One per app and per component for the process's life: an app built again (a multi-app
# host's scale from zero) counts on, and `flush` has a bounded set to go through.
_http: dict[str, HttpMetrics] = {}
_components: dict[tuple[str, str], ComponentMetrics] = {}
_registry: CollectorRegistry | None = None  # this process's (None in multiprocess mode)
_multiprocess_dir: str | None = None
_enable_lock = threading.Lock()


def enable(multiprocess_dir: str | None = None) -> None:
    """Switch metrics on in this process (idempotent). With `multiprocess_dir`, values go
    to files there, summed by the endpoint (the directory must exist and be private to the
    run); else they are kept in this process's registry (`registry()`)."""
    global _families, _registry, _multiprocess_dir
    with _enable_lock:
        if _families is not None:
            return
        import prometheus_client

        # No `_created` series: multiprocess mode has none, and the output stays the same
        # with and without workers.
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        from prometheus_client import CollectorRegistry, values

        registry: CollectorRegistry | None = None
        # prometheus-client picks where values live (memory, or files in the multiprocess
        # directory) from PROMETHEUS_MULTIPROC_DIR when it is first imported: set it to the
        # run's directory, or keep a variable of the user's environment from sending this
        # process's values to files.
        if multiprocess_dir is not None:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = multiprocess_dir
            if not getattr(values.ValueClass, "_multiprocess", False):
                values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
        else:
            values.ValueClass = values.MutexValue
            registry = CollectorRegistry()
            registry.register(_Flushing())  # type: ignore[arg-type]
        _families = _Families(registry)
        threading.Thread(target=_flushing, name="wasmlet-metrics-flush", daemon=True).start()
        atexit.register(flush)  # what was counted in the last FLUSH_INTERVAL
        _registry, _multiprocess_dir = registry, multiprocess_dir
        status.enable(multiprocess_dir)  # the status page's apps and failures, on the same flag


def enabled() -> bool:
    return _families is not None


def registry() -> CollectorRegistry | None:
    """This process's registry (single-process mode), else None."""
    return _registry


def multiprocess_dir() -> str | None:
    """The directory the processes' values are in (multiprocess mode), else None."""
    return _multiprocess_dir


def worker_exited(pid: int | None) -> None:
    """A worker process is gone: its in-flight gauge no longer counts (its counters and
    histograms do: they only ever grow). As prometheus-client's multiprocess mode asks."""
    if _multiprocess_dir is not None and pid is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, _multiprocess_dir)  # type: ignore[no-untyped-call]


def compile_cache(hit: bool) -> None:
    """A compile cache lookup (not on the request path: at startup)."""
    if _families is not None:
        _families.compile_cache.labels("hit" if hit else "miss").inc()


# -- the guest running on this thread (for the labels of its outbound calls) ---------------


class _Running(threading.local):
    labels: tuple[str, str] = ("", "")  # (app, component); the default on every thread


_running = _Running()


# -- per app, per component, per API -------------------------------------------------------


# -- counted in plain Python on the request path, added to prometheus-client by `flush` ----
#
# prometheus-client's values take a lock per update (with workers, also an mmap'd file
# write), and a histogram's `observe` looks its bucket up in a Python loop: 3-4 µs per
# request for the duration and in-flight metrics, 10 µs with workers, against ~110 µs of
# CPU for a whole request to a tiny component. So the per-request metrics are counted in
# plain Python (ints in dicts, a bisect, a deque append), and `flush` adds what was counted
# since its last run to the Prometheus metrics: before every scrape of this process's
# registry (`_Flushing`), every FLUSH_INTERVAL on a thread of its own (the only way into a
# scrape with `--workers`, which reads the workers' files) and at exit.


def _add(child: Histogram, counts: list[int], total: float) -> None:
    """Add observations to a histogram child: `counts` per bucket (not cumulative; the last
    is +Inf), `total` their sum. prometheus-client has no public call that adds many at
    once; a child keeps one value per bucket (`_buckets`, not cumulative) and `_sum`, which
    its `observe` increments. The version is pinned and the tests check the scraped
    numbers."""
    for i, n in enumerate(counts):
        if n:
            child._buckets[i].inc(n)
    if total:
        child._sum.inc(total)


class _Observed:
    """One label set's request durations (cumulative): counts per bucket, then their sum."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(HTTP_BUCKETS) + 1)  # per bucket (not cumulative), then +Inf
        self.total = 0.0


class HttpMetrics:
    """One app's HTTP server metrics. `started` and `finished` run on the event loop's
    thread only; `flush` on any, under its lock. Only the loop's thread writes the counts
    and only `flush` what it has exported, so no count is lost; a scrape that reads the
    counts as a request ends may miss that request, never more."""

    __slots__ = ("_active", "_durations", "_f", "_gauges", "_lock", "_sent", "app")

    def __init__(self, families: _Families, app: str) -> None:
        self._f = families
        self.app = app
        self._active: dict[str, int] = {}  # by method: requests in flight
        self._durations: dict[tuple[str, str, str, int], _Observed] = {}  # by label set
        # What `flush` has exported: the gauge's children and the values they were set to,
        # the histogram's children and the counts and sum added to them.
        self._gauges: dict[str, tuple[Gauge, int]] = {}
        self._sent: dict[tuple[str, str, str, int], tuple[Histogram, list[int], float]] = {}
        self._lock = threading.Lock()

    def started(self, method: str) -> str:
        """A request began (it is in flight); returns its method label."""
        if method not in KNOWN_METHODS:
            method = "_OTHER"
        active = self._active
        active[method] = active.get(method, 0) + 1
        return method

    def finished(self, method: str, route: str, component: str, status: int, took: float) -> None:
        """The request that `started` returned `method` for has ended."""
        self._active[method] -= 1
        key = (method, route, component, status)
        observed = self._durations.get(key)
        if observed is None:
            observed = self._durations[key] = _Observed()
        observed.counts[bisect.bisect_left(HTTP_BUCKETS, took)] += 1  # le: the first >= took
        observed.total += took

    def flush(self) -> None:
        with self._lock:
            # Copies made in C (no Python code runs in between, so the loop's thread cannot
            # change the dict meanwhile); a key it adds later is for the next flush.
            for method, active in list(self._active.items()):
                gauge, before = self._gauges.get(method) or (None, None)
                if gauge is None:
                    gauge = self._f.http_active.labels(self.app, method)
                if active != before:
                    gauge.set(active)
                    self._gauges[method] = (gauge, active)
            for key, observed in list(self._durations.items()):
                counts, total = list(observed.counts), observed.total
                child, sent, sent_total = self._sent.get(key) or (None, [0] * len(counts), 0.0)
                if child is None:
                    method, route, component, status = key
                    labels = (self.app, component, method, route, str(status))
                    child = self._f.http_duration.labels(*labels)
                if total != sent_total:
                    _add(
                        child,
                        [n - m for n, m in zip(counts, sent, strict=True)],
                        total - sent_total,
                    )
                self._sent[key] = (child, counts, total)


class ComponentMetrics:
    """One component's guest metrics (any thread)."""

    __slots__ = ("_f", "_failures", "_handled", "_instantiation", "_lock", "_took", "labels")

    def __init__(self, families: _Families, app: str, component: str) -> None:
        self._f = families
        self.labels = (app, component)
        self._instantiation = families.instantiation.labels(app, component)
        self._took: deque[float] = deque()  # instantiations since the last flush
        self._lock = threading.Lock()
        self._failures: dict[str, Counter] = {}
        self._handled: dict[tuple[str, bool], Counter] = {}

    def running(self) -> None:
        """This thread runs one of this component's instances now: the outbound calls it
        makes carry its labels."""
        _running.labels = self.labels

    def instantiated(self, took: float) -> None:
        self._took.append(took)  # atomic, from any thread; `flush` counts it

    def flush(self) -> None:
        with self._lock:
            took = self._took
            counts = [0] * (len(INSTANTIATION_BUCKETS) + 1)
            total = 0.0
            for _ in range(len(took)):  # those here now; more may come meanwhile
                one = took.popleft()
                counts[bisect.bisect_left(INSTANTIATION_BUCKETS, one)] += 1
                total += one
            _add(self._instantiation, counts, total)

    def failed(self, kind: str, detail: str = "", stderr: bytes = b"") -> None:
        """A guest run failed (`kind` one of FAILURE_KINDS): counted, and kept for the status
        page with `detail` (the error, with its wasm backtrace) and the guest's `stderr`."""
        counter = self._failures.get(kind)
        if counter is None:
            counter = self._failures[kind] = self._f.failures.labels(*self.labels, kind)
        counter.inc()
        status.guest_failed(*self.labels, kind, detail or kind, stderr)

    def handled(self, trigger: str, ok: bool) -> None:
        """A message trigger's message was handled (`ok`: successfully)."""
        counter = self._handled.get((trigger, ok))
        if counter is None:
            outcome = "ok" if ok else "error"
            counter = self._f.messages.labels(*self.labels, trigger, outcome)
            self._handled[trigger, ok] = counter
        counter.inc()


class OutboundCalls:
    """One host API's call metrics (any thread)."""

    __slots__ = ("_children", "_f", "api")

    def __init__(self, families: _Families, api: str) -> None:
        self._f = families
        self.api = api
        self._children: dict[tuple[str, str], tuple[Histogram, Counter]] = {}

    @staticmethod
    def caller() -> tuple[str, str]:
        """The (app, component) whose guest runs on this thread."""
        return _running.labels

    def record(self, caller: tuple[str, str], took: float, failed: bool) -> None:
        children = self._children.get(caller)
        if children is None:
            children = (
                self._f.outbound_duration.labels(self.api, *caller),
                self._f.outbound_errors.labels(self.api, *caller),
            )
            self._children[caller] = children
        children[0].observe(took)
        if failed:
            children[1].inc()


class HostMetrics:
    """A multi-app host's per-app request counts and cold starts (the event loop's thread)."""

    __slots__ = ("_children", "_f")

    def __init__(self, families: _Families) -> None:
        self._f = families
        self._children: dict[tuple[str, bool], Counter] = {}

    def request(self, app: str, cold: bool, waited: float = 0.0) -> None:
        """A request passed to `app`; `cold`: it waited `waited` seconds for the app's load."""
        counter = self._children.get((app, cold))
        if counter is None:
            counter = self._f.host_requests.labels(app, "true" if cold else "false")
            self._children[app, cold] = counter
        counter.inc()
        if cold:
            self._f.cold_start.labels(app).observe(waited)


def host() -> HostMetrics | None:
    """A multi-app host's metrics, or None when metrics are off."""
    return HostMetrics(_families) if _families is not None else None


def http(app: str) -> HttpMetrics | None:
    """`app`'s HTTP metrics, or None when metrics are off."""
    if _families is None:
        return None
    with _enable_lock:
        found = _http.get(app)
        if found is None:
            found = _http[app] = HttpMetrics(_families, app)
        return found


def flush() -> None:
    """Add what was counted on the request path to the Prometheus metrics (any thread)."""
    for http_metrics in list(_http.values()):
        http_metrics.flush()
    for component_metrics in list(_components.values()):
        component_metrics.flush()


def _flushing() -> None:
    while True:
        time.sleep(FLUSH_INTERVAL)
        try:
            flush()
        except Exception:  # a metrics bug must not stop the counting for good
            log.exception("flushing metrics")


def component(app: str, component_id: str) -> ComponentMetrics | None:
    """A component's guest metrics, or None when metrics are off."""
    if _families is None:
        return None
    with _enable_lock:
        found = _components.get((app, component_id))
        if found is None:
            found = _components[app, component_id] = ComponentMetrics(_families, app, component_id)
        return found


def outbound(api: str) -> OutboundCalls | None:
    """The call metrics of host API `api` (one of OUTBOUND_APIS), or None when off."""
    if api not in OUTBOUND_APIS:
        raise ValueError(f"unknown outbound API {api!r}")
    return OutboundCalls(_families, api) if _families is not None else None
