"""A small OTLP/HTTP receiver for the tests: what an OpenTelemetry collector's `otlphttp`
receiver does, on loopback. It decodes the real protobuf payloads (`POST /v1/traces`,
`/v1/metrics`) with opentelemetry-proto's classes and keeps every span and metric point.

    with OtlpReceiver() as otlp:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url}
        ...
        span = otlp.wait_for_span("GET /hello")
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind is not None else None


def attributes(items: Any) -> dict[str, Any]:
    """OTLP `KeyValue`s as a dict."""
    return {kv.key: _value(kv.value) for kv in items if isinstance(kv, KeyValue)}


@dataclass
class Span:
    """One received span, decoded."""

    name: str
    kind: int  # opentelemetry.proto.trace.v1.Span.SpanKind: 1 internal, 2 server, 3 client, ...
    trace_id: str  # hex
    span_id: str
    parent_span_id: str  # "" for a root span
    attributes: dict[str, Any]
    status_code: int  # 0 unset, 1 ok, 2 error
    resource: dict[str, Any]
    scope: str
    start_ns: int
    end_ns: int


@dataclass
class Point:
    """One received metric data point (a sum's or a histogram's)."""

    name: str
    attributes: dict[str, Any]
    value: float  # a sum's value, or a histogram's count
    total: float  # a histogram's sum (0 for a sum)
    resource: dict[str, Any]
    bounds: list[float] = field(default_factory=list)


def in_netns(netns: str, make: Callable[[], Any]) -> Any:
    """`make()` on a thread inside the network namespace /var/run/netns/NETNS (a socket it
    makes stays there, whichever thread uses it later)."""
    import ctypes
    import os

    result: dict[str, Any] = {}

    def run() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/var/run/netns/{netns}", os.O_RDONLY)
        try:
            if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET: this thread only
                result["error"] = OSError(ctypes.get_errno(), f"setns {netns}")
                return
        finally:
            os.close(fd)
        try:
            result["value"] = make()
        except Exception as e:
            result["error"] = e

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


class OtlpReceiver:
    """An OTLP/HTTP receiver on 127.0.0.1:<free port>, serving on a thread (in the network
    namespace `netns`, if given: a pod's, for a containerd shim task)."""

    def __init__(self, netns: str | None = None) -> None:
        self.spans: list[Span] = []
        self.points: list[Point] = []
        self.requests: list[tuple[str, dict[str, str]]] = []  # (path, headers)
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                with receiver._lock:
                    receiver.requests.append((self.path, dict(self.headers.items())))
                if self.path == "/v1/traces":
                    receiver._traces(body)
                    answer = ExportTraceServiceResponse().SerializeToString()
                elif self.path == "/v1/metrics":
                    receiver._metrics(body)
                    answer = ExportMetricsServiceResponse().SerializeToString()
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                pass

        def make() -> ThreadingHTTPServer:
            return ThreadingHTTPServer(("127.0.0.1", 0), Handler)

        self._server = make() if netns is None else in_netns(netns, make)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _traces(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        got = []
        for rs in request.resource_spans:
            resource = attributes(rs.resource.attributes)
            for ss in rs.scope_spans:
                for s in ss.spans:
                    got.append(
                        Span(
                            name=s.name,
                            kind=s.kind,
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_span_id=s.parent_span_id.hex(),
                            attributes=attributes(s.attributes),
                            status_code=s.status.code,
                            resource=resource,
                            scope=ss.scope.name,
                            start_ns=s.start_time_unix_nano,
                            end_ns=s.end_time_unix_nano,
                        )
                    )
        with self._lock:
            self.spans.extend(got)

    def _metrics(self, body: bytes) -> None:
        request = ExportMetricsServiceRequest()
        request.ParseFromString(body)
        got = []
        for rm in request.resource_metrics:
            resource = attributes(rm.resource.attributes)
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.HasField("sum"):
                        for p in m.sum.data_points:
                            value = p.as_double if p.HasField("as_double") else p.as_int
                            got.append(Point(m.name, attributes(p.attributes), value, 0, resource))
                    elif m.HasField("histogram"):
                        for h in m.histogram.data_points:
                            got.append(
                                Point(
                                    m.name,
                                    attributes(h.attributes),
                                    h.count,
                                    h.sum,
                                    resource,
                                    list(h.explicit_bounds),
                                )
                            )
        with self._lock:
            self.points.extend(got)

    def received(self) -> list[Span]:
        with self._lock:
            return list(self.spans)

    def wait(self, check: Callable[[list[Span]], bool], timeout: float = 20.0) -> list[Span]:
        """The spans received, once `check(spans)` holds (AssertionError after `timeout`)."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.received()
            if check(spans):
                return spans
            if time.monotonic() > deadline:
                names = sorted({s.name for s in spans})
                raise AssertionError(f"timed out waiting for spans; received {names}")
            time.sleep(0.05)

    def wait_for_span(self, name: str, timeout: float = 20.0) -> Span:
        spans = self.wait(lambda got: any(s.name == name for s in got), timeout)
        return next(s for s in spans if s.name == name)

    def latest_points(self, name: str) -> list[Point]:
        """The points of metric `name` in the last export that had it (OTLP metrics are
        cumulative: the last export holds the totals), per resource."""
        with self._lock:
            points = [p for p in self.points if p.name == name]
        latest: dict[tuple[Any, ...], Point] = {}
        for p in points:  # later exports replace earlier ones, per series
            key = (
                tuple(sorted(p.resource.items())),
                tuple(sorted(p.attributes.items())),
            )
            latest[key] = p
        return list(latest.values())


def env_for(receiver: OtlpReceiver, **extra: str) -> dict[str, str]:
    """The environment that points a wasmlet server at `receiver`, with fast batching."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # ms: the spans come soon after the request
        "OTEL_METRIC_EXPORT_INTERVAL": "300",
        **extra,
    }
