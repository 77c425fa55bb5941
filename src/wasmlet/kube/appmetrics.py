"""Pure: what an executor's `deploymentConfig.metrics` (wasmlet) adds to an app's objects.

The app's runtime serves `/metrics` on the port when `WASMLET_METRICS_LISTEN` is in its
container's environment: wasmlet's shim tasks and `wasmlet up` (the container executor with
the wasmlet image) read it; SpinKube's shim and Spin ignore it, and have no metrics to serve.
The pod template gets the `prometheus.io/*` annotations most Prometheus configurations
discover pods by; `serviceMonitor` adds a Prometheus Operator ServiceMonitor and the
headless Service `<app>-metrics` it selects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import APP_NAME_LABEL
from .meta import metadata
from .models import PROMETHEUS_DURATION, ExecutorMetrics, SpinApp, SpinAppExecutor

LISTEN_ENV = "WASMLET_METRICS_LISTEN"
PATH = "/metrics"
PORT_NAME = "metrics"
SCRAPE = "prometheus.io/scrape"
SCRAPE_ANNOTATIONS = (SCRAPE, "prometheus.io/port", "prometheus.io/path")
ROLE_LABEL = "app.kubernetes.io/component"  # (routing.ROLE_LABEL: Service <app>-pods)
ROLE = "metrics"
SERVICE_MONITOR_API = "monitoring.coreos.com/v1"


def config(executor: SpinAppExecutor) -> ExecutorMetrics | None:
    """The executor's metrics settings; None: its apps' pods serve no metrics."""
    deployment = executor.spec.deployment_config
    return deployment.metrics if deployment is not None else None


def service_name(app: str) -> str:
    return f"{app}-metrics"


def env(metrics: ExecutorMetrics) -> dict[str, Any]:
    return {"name": LISTEN_ENV, "value": f"0.0.0.0:{metrics.port}"}


def container_port(metrics: ExecutorMetrics) -> dict[str, Any]:
    return {"name": PORT_NAME, "containerPort": metrics.port, "protocol": "TCP"}


def pod_annotations(metrics: ExecutorMetrics) -> dict[str, str]:
    """The annotations Prometheus' `kubernetes-pods` scrape job (the Helm chart's and most
    configurations') reads; the SpinApp's own `podAnnotations` override them."""
    return dict(zip(SCRAPE_ANNOTATIONS, ("true", str(metrics.port), PATH), strict=True))


def scraped(deployment: Mapping[str, Any] | None) -> bool:
    """Whether a Deployment's pods were annotated for scraping (so the app may own a
    ServiceMonitor and Service `<app>-metrics` to clean up)."""
    template = ((deployment or {}).get("spec") or {}).get("template") or {}
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    return annotations.get(SCRAPE) == "true"


def service(app: SpinApp, metrics: ExecutorMetrics) -> dict[str, Any]:
    """Headless Service `<app>-metrics`: every pod of the app (ready or not: a starting pod's
    metrics count too), port `metrics`; what the ServiceMonitor selects."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(app, service_name(app.name), labels={ROLE_LABEL: ROLE}),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "ports": [
                {
                    "name": PORT_NAME,
                    "port": metrics.port,
                    "protocol": "TCP",
                    "targetPort": PORT_NAME,
                }
            ],
            "selector": {APP_NAME_LABEL: app.name},
        },
    }


def service_monitor(app: SpinApp, metrics: ExecutorMetrics) -> dict[str, Any]:
    """ServiceMonitor `<app>`: scrape port `metrics` of Service `<app>-metrics`."""
    wanted = metrics.service_monitor
    assert wanted is not None
    endpoint: dict[str, Any] = {"port": PORT_NAME, "path": PATH}
    if wanted.interval:
        endpoint["interval"] = wanted.interval
    return {
        "apiVersion": SERVICE_MONITOR_API,
        "kind": "ServiceMonitor",
        "metadata": metadata(app, app.name, labels=wanted.labels),
        "spec": {
            "selector": {"matchLabels": {APP_NAME_LABEL: app.name, ROLE_LABEL: ROLE}},
            "endpoints": [endpoint],
        },
    }


# The fields of a ServiceMonitor this module writes, as the Prometheus Operator's CRD has
# them (for strict offline validation; validation.py).
SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": SERVICE_MONITOR_API},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "required": ["selector"],
            "additionalProperties": False,
            "properties": {
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "matchLabels": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        },
                    },
                },
                "endpoints": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {"type": "string", "pattern": PROMETHEUS_DURATION},
                        },
                    },
                },
            },
        },
    },
}
