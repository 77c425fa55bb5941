"""Typed models of SpinApp and SpinAppExecutor: the one source of truth for the CRDs.

Field names and JSON names are SpinKube's (`core.spinkube.dev/v1alpha1`), plus the additions
users asked for (marked *wasmlet* in the descriptions). Core Kubernetes types embedded in a
spec (Volume, Container, Affinity, …) stay plain dicts here — the operator passes them through
verbatim — and carry a `K8s("io.k8s.api.core.v1.X")` marker that `crds.py` expands into the
real Kubernetes schema.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel

from . import API_VERSION

QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
    r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)


def K8s(name: str) -> WithJsonSchema:
    """Mark a dict field as the core Kubernetes type `name` (expanded by `crds.py`)."""
    return WithJsonSchema({"x-wasmlet-k8s-type": name})


Int32 = Annotated[int, Field(ge=0, json_schema_extra={"format": "int32"})]
Quantity = Annotated[
    int | str,
    WithJsonSchema({"x-kubernetes-int-or-string": True, "pattern": QUANTITY_PATTERN}),
]
StrMap = dict[str, str]
DateTime = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
Volume = Annotated[dict[str, Any], K8s("io.k8s.api.core.v1.Volume")]
VolumeMount = Annotated[dict[str, Any], K8s("io.k8s.api.core.v1.VolumeMount")]
EnvVar = Annotated[dict[str, Any], K8s("io.k8s.api.core.v1.EnvVar")]
EnvVarSource = Annotated[dict[str, Any], K8s("io.k8s.api.core.v1.EnvVarSource")]
Toleration = Annotated[dict[str, Any], K8s("io.k8s.api.core.v1.Toleration")]
Affinity = Annotated[dict[str, Any], K8s("io.k8s.api.core.v1.Affinity")]
Container = Annotated[dict[str, Any], K8s("io.k8s.api.core.v1.Container")]
LocalObjectReference = Annotated[dict[str, Any], K8s("io.k8s.api.core.v1.LocalObjectReference")]
ConfigMapKeySelector = Annotated[dict[str, Any], K8s("io.k8s.api.core.v1.ConfigMapKeySelector")]
SecretKeySelector = Annotated[dict[str, Any], K8s("io.k8s.api.core.v1.SecretKeySelector")]
Condition = Annotated[dict[str, Any], K8s("io.k8s.apimachinery.pkg.apis.meta.v1.Condition")]
PassThrough = Annotated[
    dict[str, Any], WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True})
]


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=False
    )

    def dump(self) -> dict[str, Any]:
        """The JSON form, as it appears in a Kubernetes object (unset fields left out)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


# -- SpinApp ------------------------------------------------------------------------------


class HTTPHealthProbeHeader(_Model):
    """A header sent with a health check request."""

    name: str
    value: str


class HTTPGet(_Model):
    """A health check performed with an HTTP GET on the app's port."""

    path: str = Field(description="Path to request, e.g. /healthz.")
    http_headers: list[HTTPHealthProbeHeader] | None = None


class HealthProbe(_Model):
    """A readiness or liveness probe (defaults as in SpinKube)."""

    http_get: HTTPGet | None = Field(default=None, alias="httpGet")
    initial_delay_seconds: Int32 = 10
    timeout_seconds: Int32 = 1
    period_seconds: Int32 = 10
    success_threshold: Int32 = 1
    failure_threshold: Int32 = 3


class HealthChecks(_Model):
    """Health checks Kubernetes uses to monitor the app."""

    readiness: HealthProbe | None = None
    liveness: HealthProbe | None = None


class RuntimeConfigVarSource(_Model):
    """Where a runtime config option's value comes from."""

    config_map_key_ref: ConfigMapKeySelector | None = None
    secret_key_ref: SecretKeySelector | None = None


class RuntimeConfigOption(_Model):
    """One option of a store, database or LLM backend: a value or a reference."""

    name: str = Field(description="Name of the config option.")
    value: str | None = Field(default=None, description="A static value.")
    value_from: RuntimeConfigVarSource | None = Field(
        default=None, description="A ConfigMap or Secret key holding the value."
    )


class RuntimeConfigStore(_Model):
    """A key-value store or SQLite database of the runtime config."""

    name: str
    type: str
    options: list[RuntimeConfigOption] | None = None


class LLMCompute(_Model):
    """The LLM backend of the runtime config."""

    type: str
    options: list[RuntimeConfigOption] | None = None


class RuntimeConfig(_Model):
    """Runtime configuration for the app (stores, databases, LLM)."""

    load_from_secret: str | None = Field(
        default=None,
        description="A Secret whose key runtime-config.toml is used as is; "
        "everything else here is then ignored.",
    )
    sqlite_databases: list[RuntimeConfigStore] | None = None
    key_value_stores: list[RuntimeConfigStore] | None = None
    llm_compute: LLMCompute | None = None


class SpinVar(_Model):
    """An application variable, passed to the app as SPIN_VARIABLE_<NAME>."""

    name: str
    value: str | None = None
    value_from: EnvVarSource | None = None


class Resources(_Model):
    """Compute resources of the app's container."""

    limits: dict[str, Quantity] | None = None
    requests: dict[str, Quantity] | None = None


class ScaleToZero(_Model):
    """wasmlet: let KEDA scale the app to zero replicas when idle (type keda); with type
    wasmlet only `cooldownPeriodSeconds` is read."""

    enabled: bool = False
    cooldown_period_seconds: Int32 = Field(
        default=300,
        description="Idle time before scaling to zero (KEDA cooldownPeriod; type wasmlet: "
        "seconds without a request before the last pod goes).",
    )
    polling_interval_seconds: Int32 = Field(
        default=30, description="How often KEDA checks the triggers (pollingInterval)."
    )


def _no_crd_default(schema: dict[str, Any]) -> None:
    """Keep a type-specific default out of the CRD, so the API server does not write it into
    every autoscaler (hpa and keda ones too); the description states it."""
    schema.pop("default", None)


#: `spec.autoscaler` fields only type wasmlet reads (admission refuses them with hpa/keda).
WASMLET_ONLY = (
    "target_concurrency",
    "stable_window_seconds",
    "panic_window_percentage",
    "panic_threshold_percentage",
)


class Autoscaler(_Model):
    """wasmlet: an autoscaler the operator creates and owns (HPA or KEDA ScaledObject), or
    wasmlet's activator."""

    type: Literal["hpa", "keda", "wasmlet"] = Field(
        description="hpa or keda: an HPA / ScaledObject on the Deployment. wasmlet: the wasmlet "
        "activator serves the app while it has no ready pods and scales it through /scale."
    )
    min_replicas: Int32 | None = Field(
        default=None,
        description="Fewest replicas (default 1, 0 for type wasmlet; 0 with hpa/keda needs "
        "scaleToZero).",
    )
    max_replicas: Int32 = Field(
        description="Most replicas (type wasmlet: 0 = the activator alone serves the app, "
        "never a pod)."
    )
    cpu_utilization: Annotated[int, Field(ge=1, le=100)] | None = Field(
        default=None, description="Target average CPU utilization, percent of the request."
    )
    memory_utilization: Annotated[int, Field(ge=1, le=100)] | None = Field(
        default=None, description="Target average memory utilization, percent of the request."
    )
    scale_to_zero: ScaleToZero | None = None
    triggers: list[PassThrough] | None = Field(
        default=None,
        description="Extra KEDA triggers, verbatim (e.g. prometheus); needed to scale to "
        "zero, since CPU and memory cannot wake an app at zero replicas.",
    )
    target_concurrency: int = Field(
        default=10,
        ge=1,
        json_schema_extra=_no_crd_default,
        description="Type wasmlet: requests in flight per pod the activator aims for (default 10).",
    )
    stable_window_seconds: int = Field(
        default=60,
        ge=6,
        le=3600,
        json_schema_extra=_no_crd_default,
        description="Type wasmlet: the window concurrency is averaged over (default 60).",
    )
    panic_window_percentage: int = Field(
        default=10,
        ge=1,
        le=100,
        json_schema_extra=_no_crd_default,
        description="Type wasmlet: the panic window, percent of the stable window (default 10).",
    )
    panic_threshold_percentage: int = Field(
        default=200,
        ge=110,
        le=1000,
        json_schema_extra=_no_crd_default,
        description="Type wasmlet: panic (scale up on the panic window, never down) at this "
        "percent of what the ready pods should carry (default 200).",
    )


class SpinAppSpec(_Model):
    """The desired state of a SpinApp."""

    executor: str | None = Field(
        default=None,
        description="A SpinAppExecutor in the same namespace; defaulted by the admission "
        "webhook to the alphabetically first executor.",
    )
    image: str = Field(description="The OCI image (reference) of the app.")
    image_pull_secrets: list[LocalObjectReference] | None = None
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = Field(
        default=None, description="wasmlet: the pull policy of the app's container."
    )
    checks: HealthChecks | None = None
    replicas: Int32 | None = Field(
        default=None,
        description="Number of replicas to run (0: none). With autoscaler type wasmlet, "
        "written by the activator through /scale.",
    )
    enable_autoscaling: bool = Field(
        default=False,
        description="Leave the replica count to an autoscaler (HPA/KEDA); replicas must "
        "then be unset, except with autoscaler type wasmlet.",
    )
    autoscaler: Autoscaler | None = None
    runtime_config: RuntimeConfig | None = None
    volumes: list[Volume] | None = None
    volume_mounts: list[VolumeMount] | None = None
    variables: list[SpinVar] | None = None
    service_annotations: StrMap | None = None
    deployment_annotations: StrMap | None = None
    pod_annotations: StrMap | None = None
    pod_labels: StrMap | None = None
    resources: Resources | None = None
    components: Annotated[list[str], Field(min_length=1)] | None = Field(
        default=None, description="Components of the app to run (default: all)."
    )
    service_account_name: str | None = None
    invocation_limits: StrMap | None = Field(
        default=None, description="Limits per invocation; memory -> SPIN_MAX_INSTANCE_MEMORY."
    )
    node_selector: StrMap | None = Field(default=None, description="wasmlet: pod nodeSelector.")
    tolerations: list[Toleration] | None = Field(default=None, description="wasmlet.")
    affinity: Affinity | None = Field(default=None, description="wasmlet: pod affinity.")
    env: list[EnvVar] | None = Field(
        default=None, description="wasmlet: plain container env (value or valueFrom)."
    )
    containers: list[Container] | None = Field(
        default=None, description="wasmlet: sidecar containers in the app's pod."
    )


class SpinAppStatus(_Model):
    """The observed state of a SpinApp."""

    conditions: list[Condition] | None = None
    active_scheduler: str | None = Field(default=None, description="The executor in use.")
    ready_replicas: Int32 = 0
    replicas: Int32 | None = Field(default=None, description="Replicas (for /scale).")
    selector: str | None = Field(default=None, description="Pod label selector (for /scale).")
    deployment_name: str | None = None
    service_name: str | None = None
    served_by: Literal["activator", "pods"] | None = Field(
        default=None,
        description="wasmlet (autoscaler type wasmlet): where Service <app> routes now.",
    )
    served_by_since: DateTime | None = Field(
        default=None, description="wasmlet: when servedBy last changed (RFC 3339)."
    )


class SpinApp(_Model):
    """SpinApp is the Schema for the spinapps API."""

    api_version: str = Field(default=API_VERSION, alias="apiVersion")
    kind: str = "SpinApp"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: SpinAppSpec
    status: SpinAppStatus | None = None

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))

    @property
    def namespace(self) -> str:
        return str(self.metadata.get("namespace") or "default")


# -- SpinAppExecutor ----------------------------------------------------------------------


class Otel(_Model):
    """OpenTelemetry exporter endpoints, http(s) URLs (snake_case JSON names, as in SpinKube)."""

    # -> the pods' OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT

    exporter_otlp_endpoint: str | None = Field(
        default=None,
        alias="exporter_otlp_endpoint",
        description="OTEL_EXPORTER_OTLP_ENDPOINT: the collector of every signal, e.g. "
        "http://otel-collector.observability.svc.cluster.local:4318.",
    )
    exporter_otlp_traces_endpoint: str | None = Field(
        default=None,
        alias="exporter_otlp_traces_endpoint",
        description="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: traces only (a full URL).",
    )
    exporter_otlp_metrics_endpoint: str | None = Field(
        default=None,
        alias="exporter_otlp_metrics_endpoint",
        description="OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: metrics only (a full URL).",
    )
    exporter_otlp_logs_endpoint: str | None = Field(
        default=None,
        alias="exporter_otlp_logs_endpoint",
        description="OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: logs only (a full URL).",
    )


#: A Prometheus duration (the Prometheus Operator's `Duration` pattern): 30s, 1m, 1h30m.
PROMETHEUS_DURATION = (
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)


class ServiceMonitorConfig(_Model):
    """wasmlet: a ServiceMonitor per app, scraping Service <app>-metrics (Prometheus Operator)."""

    interval: str | None = Field(
        default=None,
        pattern=PROMETHEUS_DURATION,
        description="Scrape interval, e.g. 30s (default: the Prometheus' own).",
    )
    labels: StrMap | None = Field(
        default=None,
        description="Labels of the ServiceMonitor, e.g. release: prometheus, so that a "
        "Prometheus' serviceMonitorSelector picks it.",
    )


class ExecutorMetrics(_Model):
    """wasmlet: the pods serve Prometheus metrics (WASMLET_METRICS_LISTEN), scrape-annotated."""

    # Served by wasmlet's shim and the wasmlet image (`wasmlet up`); see appmetrics.py.

    port: int = Field(
        default=9090,
        ge=1,
        le=65535,
        description="Container port of /metrics (default 9090; not the app's port 80).",
    )
    service_monitor: ServiceMonitorConfig | None = Field(
        default=None,
        description="Also create a ServiceMonitor (monitoring.coreos.com/v1) per app; needs "
        "the Prometheus Operator.",
    )


class ExecutorDeploymentConfig(_Model):
    """How the Deployment is configured when createDeployment is true."""

    runtime_class_name: str | None = Field(
        default=None,
        description="RuntimeClass of the pods (e.g. wasmtime-spin-v2); not with spinImage.",
    )
    spin_image: str | None = Field(
        default=None,
        description="An image that runs `up` in an ordinary container (Spin's spintainer or "
        "the wasmlet image); not with runtimeClassName.",
    )
    ca_cert_secret: str | None = Field(
        default=None, alias="caCertSecret", description="Secret holding the CA certificates."
    )
    install_default_ca_certs: bool | None = Field(
        default=None, alias="installDefaultCACerts", description="Create Secret spin-ca."
    )
    otel: Otel | None = None
    metrics: ExecutorMetrics | None = None


class SpinAppExecutorSpec(_Model):
    """The desired state of a SpinAppExecutor."""

    create_deployment: bool = Field(
        description="Whether the operator creates a Deployment for each app."
    )
    deployment_config: ExecutorDeploymentConfig | None = None


class SpinAppExecutorStatus(_Model):
    """The observed state of a SpinAppExecutor."""


class SpinAppExecutor(_Model):
    """SpinAppExecutor is the Schema for the spinappexecutors API."""

    api_version: str = Field(default=API_VERSION, alias="apiVersion")
    kind: str = "SpinAppExecutor"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: SpinAppExecutorSpec
    status: SpinAppExecutorStatus | None = None

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))
