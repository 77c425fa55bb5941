"""The Prometheus metrics of one process, switched on by `enable` (`--metrics-listen`).

Every metric object is made by `enable`. Until then (and always, without the flag) the
accessors below (`http`, `component`, `outbound`) return None, and the code that would
measure keeps that None and skips its measuring: a server without metrics touches no metric
and never imports prometheus-client. Switch metrics on before building any app: what was
built earlier has no metrics.

With `--workers N`, every process writes its values to files in one directory private to
the run (prometheus-client's multiprocess mode), and the endpoint (`endpoint.py`) sums them;
`WORKERS_ENV` names that directory to the workers, which call `enable_from_environment`.

Label values are bounded: routes as written in the manifest (never the raw path), methods
outside RFC 9110's (and PATCH) as `_OTHER`, as OpenTelemetry's HTTP conventions say.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from . import status

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

WORKERS_ENV = "WASMLET_METRICS_DIR"  # the run's multiprocess directory, for its workers
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


_families: _Families | None = None
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
        # process's values to files. Processes spawned later inherit the variables.
        if multiprocess_dir is not None:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = multiprocess_dir
            os.environ[WORKERS_ENV] = multiprocess_dir
            if not getattr(values.ValueClass, "_multiprocess", False):
                values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
        else:
            values.ValueClass = values.MutexValue
            registry = CollectorRegistry()
        _families = _Families(registry)
        _registry, _multiprocess_dir = registry, multiprocess_dir
        status.enable(multiprocess_dir)  # the status page's apps and failures, on the same flag


def enable_from_environment() -> bool:
    """In a worker process: switch metrics on if the supervisor did (see `WORKERS_ENV`)."""
    directory = os.environ.get(WORKERS_ENV)
    if directory:
        enable(directory)
    return bool(directory)


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


class HttpMetrics:
    """One app's HTTP server metrics; called on the event loop's thread only."""

    __slots__ = ("_active", "_durations", "_f", "app")

    def __init__(self, families: _Families, app: str) -> None:
        self._f = families
        self.app = app
        self._active: dict[str, Gauge] = {}
        # Children by (method, route, component, status): `labels()` costs a lock and more.
        self._durations: dict[tuple[str, str, str, int], Histogram] = {}

    def started(self, method: str) -> str:
        """A request began (it is in flight); returns its method label."""
        if method not in KNOWN_METHODS:
            method = "_OTHER"
        gauge = self._active.get(method)
        if gauge is None:
            gauge = self._active[method] = self._f.http_active.labels(self.app, method)
        gauge.inc()
        return method

    def finished(self, method: str, route: str, component: str, status: int, took: float) -> None:
        """The request that `started` returned `method` for has ended."""
        self._active[method].dec()
        key = (method, route, component, status)
        child = self._durations.get(key)
        if child is None:
            child = self._f.http_duration.labels(self.app, component, method, route, str(status))
            self._durations[key] = child
        child.observe(took)


class ComponentMetrics:
    """One component's guest metrics (any thread)."""

    __slots__ = ("_f", "_failures", "_handled", "_instantiation", "labels")

    def __init__(self, families: _Families, app: str, component: str) -> None:
        self._f = families
        self.labels = (app, component)
        self._instantiation = families.instantiation.labels(app, component)
        self._failures: dict[str, Counter] = {}
        self._handled: dict[tuple[str, bool], Counter] = {}

    def running(self) -> None:
        """This thread runs one of this component's instances now: the outbound calls it
        makes carry its labels."""
        _running.labels = self.labels

    def instantiated(self, took: float) -> None:
        self._instantiation.observe(took)

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
    return HttpMetrics(_families, app) if _families is not None else None


def component(app: str, component_id: str) -> ComponentMetrics | None:
    """A component's guest metrics, or None when metrics are off."""
    return ComponentMetrics(_families, app, component_id) if _families is not None else None


def outbound(api: str) -> OutboundCalls | None:
    """The call metrics of host API `api` (one of OUTBOUND_APIS), or None when off."""
    if api not in OUTBOUND_APIS:
        raise ValueError(f"unknown outbound API {api!r}")
    return OutboundCalls(_families, api) if _families is not None else None
