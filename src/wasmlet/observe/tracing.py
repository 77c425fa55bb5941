"""OpenTelemetry traces and metrics over OTLP/HTTP, switched on by the standard `OTEL_*`
environment variables, as Spin reads them (docs/observability.md has the table).

`enable_from_environment` reads and checks the variables and, when an OTLP endpoint is set,
makes this process's tracer (a `TracerProvider` with a `BatchSpanProcessor` and the OTLP/HTTP
protobuf exporter) and/or meters (a `PeriodicExportingMetricReader`). The SDK itself reads
the rest: `OTEL_TRACES_SAMPLER(_ARG)`, `OTEL_BSP_*`, `OTEL_METRIC_EXPORT_INTERVAL`,
`OTEL_EXPORTER_OTLP_HEADERS`, `…_TIMEOUT`, `…_COMPRESSION`, `OTEL_RESOURCE_ATTRIBUTES`.

Off by default, and then free: nothing imports the OpenTelemetry packages, and `tracer()` and
`meters()` return None, which the request path keeps (`observe.spans`). Each process that
serves requests enables its own (a worker after it has started: the exporter's thread and
queue never cross a fork); the supervisor of `--workers N` only checks the variables.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import NotSupportedError, WasmletError

if TYPE_CHECKING:
    from opentelemetry.metrics import Counter, Histogram
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Tracer

log = logging.getLogger("wasmlet.tracing")

SCOPE = "wasmlet"  # the instrumentation scope of every span and metric
DEFAULT_SERVICE = "wasmlet"  # service.name unless OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES
PROTOCOL = "http/protobuf"
# OpenTelemetry's advised buckets for http.server.request.duration (seconds).
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)


@dataclass(frozen=True)
class Settings:
    """What the environment switches on."""

    traces: bool = False
    metrics: bool = False


def _endpoint(env: Mapping[str, str], signal: str) -> str | None:
    """The signal's OTLP endpoint variable and value, checked (None: not set)."""
    for name in (f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        value = env.get(name, "").strip()
        if not value:
            continue
        scheme, sep, rest = value.partition("://")
        if scheme.lower() not in ("http", "https") or not sep or not rest.strip("/"):
            raise WasmletError(
                f"{name}={value!r}: expected an http:// or https:// URL, e.g. "
                "http://localhost:4318 (OTLP over HTTP)"
            )
        return value
    return None


def _exporter_on(env: Mapping[str, str], signal: str) -> bool:
    """`OTEL_<SIGNAL>_EXPORTER`: unset or `otlp` exports, `none` does not."""
    name = f"OTEL_{signal}_EXPORTER"
    value = env.get(name, "").strip().lower()
    if value in ("", "otlp"):
        return True
    if value == "none":
        return False
    hint = " (Prometheus metrics: --metrics-listen)" if value == "prometheus" else ""
    raise NotSupportedError(
        f"{name}={value!r} is not supported: wasmlet exports over OTLP only ('otlp' or "
        f"'none'){hint}"
    )


def _check_protocol(env: Mapping[str, str], signal: str) -> None:
    for name in (f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        value = env.get(name, "").strip()
        if not value:
            continue
        if value != PROTOCOL:
            raise NotSupportedError(
                f"{name}={value!r} is not supported: wasmlet speaks OTLP over HTTP with "
                f"protobuf only ({PROTOCOL}, usually port 4318), not grpc or http/json"
            )
        return


def _check_sampler(env: Mapping[str, str]) -> None:
    """The SDK would log a warning and sample everything; a typo should stop the start."""
    sampler = env.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if sampler and sampler not in SAMPLERS:
        raise NotSupportedError(
            f"OTEL_TRACES_SAMPLER={sampler!r} is not supported (one of: {', '.join(SAMPLERS)})"
        )
    arg = env.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
    if sampler.endswith("traceidratio") and arg:
        try:
            ratio = float(arg)
        except ValueError:
            ratio = -1.0
        if not 0.0 <= ratio <= 1.0:
            raise WasmletError(
                f"OTEL_TRACES_SAMPLER_ARG={arg!r}: expected a ratio from 0 to 1, e.g. 0.25"
            )


def settings_from(env: Mapping[str, str]) -> Settings:
    """What `env` switches on; raises WasmletError naming a bad or unsupported variable."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return Settings()
    traces = _endpoint(env, "TRACES") is not None and _exporter_on(env, "TRACES")
    metrics = _endpoint(env, "METRICS") is not None and _exporter_on(env, "METRICS")
    if traces:
        _check_protocol(env, "TRACES")
        _check_sampler(env)
    if metrics:
        _check_protocol(env, "METRICS")
    return Settings(traces, metrics)


# -- this process's providers ---------------------------------------------------------------


class Meters:
    """The OTLP metrics wasmlet records (made by `enable`)."""

    def __init__(self, provider: MeterProvider) -> None:
        meter = provider.get_meter(SCOPE)
        # Spin's only per-request metric, with Spin's attribute names.
        self.request_count: Counter = meter.create_counter(
            "spin.request_count", description="The number of requests and messages handled"
        )
        self.http_duration: Histogram = meter.create_histogram(
            "http.server.request.duration",
            unit="s",
            description="Duration of HTTP server requests",
            explicit_bucket_boundaries_advisory=HTTP_BUCKETS,
        )


_tracer: Tracer | None = None
_meters: Meters | None = None
_tracer_provider: TracerProvider | None = None
_meter_provider: MeterProvider | None = None
_lock = threading.Lock()


def _resource() -> Resource:
    """service.name `wasmlet` (unless the environment names it), wasmlet's version, and an id
    per process: each worker exports its own cumulative metrics, which a backend must not
    take for one stream."""
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    detected = dict(Resource.create().attributes)  # OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME
    if str(detected.get(SERVICE_NAME, "")).startswith("unknown_service"):
        del detected[SERVICE_NAME]  # the SDK's placeholder: none was given
    base = {
        SERVICE_NAME: DEFAULT_SERVICE,
        "service.version": _version(),
        "service.instance.id": str(uuid.uuid4()),
    }
    return Resource({**base, **detected})


def _version() -> str:
    """wasmlet's version, as installed (observe/ imports nothing of wasmlet's but `errors`)."""
    try:
        return importlib.metadata.version("wasmlet")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def enable(settings: Settings) -> None:
    """Make this process's tracer and meters as `settings` say (once; before any app is built:
    what was built earlier makes no spans)."""
    global _tracer, _meters, _tracer_provider, _meter_provider
    with _lock:
        if _tracer_provider is not None or _meter_provider is not None:
            return
        if not (settings.traces or settings.metrics):
            return
        resource = _resource()
        if settings.traces:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            # The sampler comes from OTEL_TRACES_SAMPLER(_ARG), the batching from OTEL_BSP_*.
            _tracer_provider = TracerProvider(resource=resource)
            _tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
            _tracer = _tracer_provider.get_tracer(SCOPE)
        if settings.metrics:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter,
            )
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

            reader = PeriodicExportingMetricReader(OTLPMetricExporter())
            _meter_provider = MeterProvider([reader], resource=resource)
            _meters = Meters(_meter_provider)


def check_environment(env: Mapping[str, str] | None = None) -> Settings:
    """What the OTEL_* variables switch on, checked (raises WasmletError), with a warning for
    what is set but not supported (once per run: the supervisor's or the only process's)."""
    env = os.environ if env is None else env
    settings = settings_from(env)
    disabled = env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
    if env.get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "").strip() and not disabled:
        log.warning(
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT is set, but wasmlet does not export logs over "
            "OTLP (not supported): use --log-format json and a log collector"
        )
    return settings


def enable_from_environment(env: Mapping[str, str] | None = None) -> Settings:
    """Switch on in this process what the OTEL_* variables ask for (a worker's start)."""
    settings = settings_from(os.environ if env is None else env)
    enable(settings)
    return settings


def tracer() -> Tracer | None:
    """This process's tracer, or None when traces are off."""
    return _tracer


def meters() -> Meters | None:
    """This process's OTLP meters, or None when OTLP metrics are off."""
    return _meters


def shutdown() -> None:
    """Export what is still queued, then stop (at the end of a serving process; the SDK's
    exit hook would do it too, but not for a process that ends with `os._exit`)."""
    global _tracer, _meters, _tracer_provider, _meter_provider
    with _lock:
        tracer_provider, meter_provider = _tracer_provider, _meter_provider
        _tracer = _meters = _tracer_provider = _meter_provider = None
    try:
        if tracer_provider is not None:
            tracer_provider.shutdown()
        if meter_provider is not None:
            meter_provider.shutdown()
    except Exception:  # an exporter that cannot reach its collector: its spans are lost
        log.exception("flushing telemetry at exit")
