"""Observability on Kubernetes (issue 15 items 1 and 5): the operator's reconcile metrics,
served by the real operator against kmock and scraped; the executor's `metrics` (scrape
annotations, WASMLET_METRICS_LISTEN, an optional ServiceMonitor) and `otel` fields, through
pure reconcile, admission and the strict CRD schema. The shim's side (a task serving the
metrics) is in test_shim_metrics.py."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import httpx
import kmock
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families
from support.env import free_port
from support.kube_emulator import VERBS, ApiServer
from support.kube_operator import running_operator
from test_kube_operator import APPS, CORE, CR, Cluster, _gone, executor, spinapp

from wasmlet.cli import main
from wasmlet.errors import WasmletError
from wasmlet.kube import APP_NAME_LABEL, admission, appmetrics, reconcile
from wasmlet.kube.apptriggers import AppTriggers
from wasmlet.kube.crds import validate_custom_resource
from wasmlet.kube.models import SpinApp, SpinAppExecutor
from wasmlet.kube.operator import OperatorConfig, run
from wasmlet.kube.validation import validate

SCRAPE = {"prometheus.io/scrape": "true", "prometheus.io/port": "9090"}
MONITORS = "monitoring.coreos.com/v1/servicemonitors"
MONITOR_PATH = "/apis/monitoring.coreos.com/v1/namespaces/default/servicemonitors/hello"
COLLECTOR = "http://otel-collector.observability.svc.cluster.local:4318"


def shim_executor(name: str = "containerd-shim-spin", **config: Any) -> dict[str, Any]:
    """An executor of wasmlet's shim (runtime class `wasmlet`; the container executor with
    `spinImage`) with `config` besides."""
    runs = {} if "spinImage" in config else {"runtimeClassName": "wasmlet"}
    return executor(name, **(runs | config))


def _executor(**config: Any) -> SpinAppExecutor:
    doc = shim_executor(**config)
    doc["metadata"]["uid"] = "exec-uid"
    validate_custom_resource(doc)
    return SpinAppExecutor.model_validate(doc)


def _app(**spec: Any) -> SpinApp:
    doc = spinapp(executor="containerd-shim-spin", **spec)
    doc["metadata"]["uid"] = "app-uid"
    return SpinApp.model_validate(doc)


def _container(desired: reconcile.Desired) -> dict[str, Any]:
    assert desired.deployment is not None
    container: dict[str, Any] = desired.deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def _env(desired: reconcile.Desired) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in _container(desired)["env"]}


# -- pure: the executor's metrics and otel fields -------------------------------------------


@pytest.mark.parametrize(
    "config",
    [{"runtimeClassName": "wasmlet"}, {"spinImage": "ghcr.io/wasmlet/wasmlet:0.1.0"}],
    ids=["shim", "container"],
)
def test_metrics_annotate_the_pods_and_tell_the_runtime_where_to_serve(
    config: dict[str, Any],
) -> None:
    desired = reconcile.desired(_app(), _executor(**config, metrics={}))
    assert not admission.validate_executor(_executor(**config, metrics={}).spec)
    for obj in desired.objects():
        validate(obj)
    if "spinImage" in config:  # `wasmlet up` reads the same variable
        assert _container(desired)["args"][:2] == ["up", "--listen"]
    template = desired.deployment["spec"]["template"]  # type: ignore[index]
    assert template["metadata"]["annotations"] == SCRAPE | {"prometheus.io/path": "/metrics"}
    assert _env(desired)[appmetrics.LISTEN_ENV] == "0.0.0.0:9090"
    ports = {p["name"]: p["containerPort"] for p in _container(desired)["ports"]}
    assert ports == {"http-app": 80, "metrics": 9090}
    assert desired.metrics_service is None and desired.service_monitor is None  # not asked


def test_without_metrics_nothing_is_added_and_the_apps_annotations_win() -> None:
    plain = reconcile.desired(_app(), _executor())
    assert "annotations" not in plain.deployment["spec"]["template"]["metadata"]  # type: ignore[index]
    assert appmetrics.LISTEN_ENV not in _env(plain)
    assert [p["name"] for p in _container(plain)["ports"]] == ["http-app"]
    ours = reconcile.desired(
        _app(podAnnotations={"prometheus.io/scrape": "false", "team": "a"}),
        _executor(metrics={"port": 9100}),
    )
    annotations = ours.deployment["spec"]["template"]["metadata"]["annotations"]  # type: ignore[index]
    assert annotations == {
        "prometheus.io/scrape": "false",  # the SpinApp opted its pods out
        "prometheus.io/port": "9100",
        "prometheus.io/path": "/metrics",
        "team": "a",
    }
    assert _env(ours)[appmetrics.LISTEN_ENV] == "0.0.0.0:9100"


def test_an_app_without_http_still_serves_its_metrics() -> None:
    redis_only = AppTriggers(frozenset({"redis"}))
    desired = reconcile.desired(_app(), _executor(metrics={}), triggers=redis_only)
    assert desired.service is None
    assert _container(desired)["ports"] == [
        {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}
    ]
    validate(desired.deployment)  # type: ignore[arg-type]


def test_service_monitor_selects_the_apps_pods_metrics_port() -> None:
    wanted = {"serviceMonitor": {"interval": "15s", "labels": {"release": "prometheus"}}}
    desired = reconcile.desired(_app(), _executor(metrics=wanted))
    service, monitor = desired.metrics_service, desired.service_monitor
    assert service is not None and monitor is not None
    for obj in desired.objects():
        validate(obj)  # the ServiceMonitor against the Prometheus Operator's fields
    assert desired.objects()[-2:] == [service, monitor]
    assert service["metadata"]["name"] == "hello-metrics"
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"]
    pod_labels = desired.deployment["spec"]["template"]["metadata"]["labels"]  # type: ignore[index]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"  # the container's port name
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "15s"}
    ]
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["metadata"]["labels"][APP_NAME_LABEL] == "hello"
    assert monitor["metadata"]["ownerReferences"][0]["uid"] == "app-uid"  # GC with the app
    # only where the operator makes a Deployment
    external = _executor(metrics=wanted)
    external.spec.create_deployment = False
    none = reconcile.desired(_app(), external)
    assert none.service_monitor is None and none.metrics_service is None
    # the same with autoscaler type wasmlet (its own Services besides)
    wasmlet = _app(
        enableAutoscaling=True, autoscaler={"type": "wasmlet", "maxReplicas": 2}, replicas=0
    )
    routed = reconcile.desired(wasmlet, _executor(metrics=wanted))
    assert routed.service_monitor == monitor and routed.metrics_service == service


def test_every_otel_field_sets_its_variable() -> None:
    otel = {
        "exporter_otlp_endpoint": COLLECTOR,
        "exporter_otlp_traces_endpoint": f"{COLLECTOR}/v1/traces",
        "exporter_otlp_metrics_endpoint": f"{COLLECTOR}/v1/metrics",
        "exporter_otlp_logs_endpoint": "https://logs.example.com/v1/logs",
    }
    env = _env(reconcile.desired(_app(), _executor(otel=otel)))
    assert {k: v for k, v in env.items() if k.startswith("OTEL_")} == {
        "OTEL_EXPORTER_OTLP_ENDPOINT": COLLECTOR,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{COLLECTOR}/v1/traces",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"{COLLECTOR}/v1/metrics",
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "https://logs.example.com/v1/logs",
    }
    one = _env(reconcile.desired(_app(), _executor(otel={"exporter_otlp_traces_endpoint": ""})))
    assert not [k for k in one if k.startswith("OTEL_")]  # empty: unset, as SpinKube


@pytest.mark.parametrize(
    "config, where",
    [
        ({"otel": {"exporter_otlp_endpoint": 4318}}, "exporter_otlp_endpoint"),
        ({"otel": {"endpoint": COLLECTOR}}, "endpoint"),  # SpinKube v0.1's, long gone
        ({"metrics": {"port": "9090"}}, "metrics.port"),
        ({"metrics": {"port": 70000}}, "metrics.port"),
        ({"metrics": {"prot": 9100}}, "prot"),
        ({"metrics": {"serviceMonitor": {"interval": "30 seconds"}}}, "interval"),
        ({"metrics": {"serviceMonitor": {"labels": {"release": 1}}}}, "labels.release"),
        ({"metrics": True}, "metrics"),
    ],
)
def test_the_crd_rejects_wrong_types_and_unknown_fields(config: dict[str, Any], where: str) -> None:
    doc = shim_executor(**config)
    with pytest.raises(ValueError, match=where.replace(".", r"\.")):
        validate_custom_resource(doc)


def test_the_crd_takes_every_field() -> None:
    doc = shim_executor(
        otel={
            f"exporter_otlp{s}_endpoint": COLLECTOR for s in ("", "_traces", "_metrics", "_logs")
        },
        metrics={"port": 9100, "serviceMonitor": {"interval": "1m30s", "labels": {"a": "b"}}},
    )
    validate_custom_resource(doc)
    parsed = SpinAppExecutor.model_validate(doc)
    assert parsed.model_dump(by_alias=True, exclude_unset=True)["spec"] == doc["spec"]


@pytest.mark.parametrize(
    "config, message",
    [
        (
            {"otel": {"exporter_otlp_endpoint": "otel-collector:4318"}},
            "spec.deploymentConfig.otel.exporter_otlp_endpoint: 'otel-collector:4318' is not "
            "an http:// or https:// URL",
        ),
        (
            {"otel": {"exporter_otlp_logs_endpoint": "grpc://collector:4317"}},
            "spec.deploymentConfig.otel.exporter_otlp_logs_endpoint: 'grpc://collector:4317'",
        ),
        (
            {"otel": {"exporter_otlp_traces_endpoint": "http://"}},
            "exporter_otlp_traces_endpoint: 'http://' is not",
        ),
        ({"metrics": {"port": 80}}, "spec.deploymentConfig.metrics.port: 80 is the app's own"),
    ],
)
def test_admission_names_the_bad_field_and_value(config: dict[str, Any], message: str) -> None:
    doc = shim_executor(**config)
    validate_custom_resource(doc)  # well typed: only the meaning is wrong
    errors = admission.validate_executor_body(doc)
    assert len(errors) == 1 and message in errors[0], errors


# -- the real operator against kmock, scraped ----------------------------------------------


def scrape(url: str) -> Samples:
    """Every sample of a scrape: (name, sorted labels) -> value."""
    text = httpx.get(url, timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def when(url: str, check: Callable[[Samples], bool]) -> Callable[[], Samples | None]:
    """For `Cluster.wait`: a scrape once `check` holds for it."""

    def probe() -> Samples | None:
        now = scrape(url)
        return now if check(now) else None

    return probe


RECONCILES = "wasmlet_operator_reconciles_total"
ERRORS = "wasmlet_operator_reconcile_errors_total"
DURATIONS = "wasmlet_operator_reconcile_duration_seconds_count"


@pytest_asyncio.fixture
async def observed() -> AsyncIterator[tuple[Cluster, str]]:
    port = free_port()
    async with ApiServer() as api, kmock.Server(api) as server:
        url = str(server.url).rstrip("/")
        async with (
            running_operator(
                url, retry_delay=0.3, read_triggers=False, metrics_listen=f"127.0.0.1:{port}"
            ),
            aiohttp.ClientSession(url) as http,
        ):
            yield Cluster(api, http, 0), f"http://127.0.0.1:{port}/metrics"


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_the_operator_counts_reconciles_by_kind_outcome_and_reason(
    observed: tuple[Cluster, str],
) -> None:
    cluster, url = observed
    before = scrape(url)  # every series from the start, at 0
    for kind in ("SpinApp", "SpinAppExecutor"):
        for outcome in ("success", "requeue", "error"):
            assert (RECONCILES, (("kind", kind), ("outcome", outcome))) in before
    assert value(before, RECONCILES, kind="SpinApp", outcome="success") == 0

    await cluster.call("POST", f"{CR}/spinappexecutors", shim_executor(metrics={}))
    await cluster.call("POST", f"{CR}/spinapps", spinapp())
    dep = await cluster.wait(lambda: cluster.get(f"{APPS}/deployments/hello"))
    assert SCRAPE.items() <= dep["spec"]["template"]["metadata"]["annotations"].items()
    env = {e["name"]: e["value"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env[appmetrics.LISTEN_ENV] == "0.0.0.0:9090"

    now = await cluster.wait(
        when(
            url,
            lambda s: (
                value(s, RECONCILES, kind="SpinApp", outcome="success") >= 1
                and value(s, RECONCILES, kind="SpinAppExecutor", outcome="success") >= 1
            ),
        )
    )
    assert value(now, RECONCILES, kind="SpinApp", outcome="error") == 0
    outcomes = sum(
        value(now, RECONCILES, kind="SpinApp", outcome=o) for o in ("success", "requeue", "error")
    )
    assert value(now, DURATIONS, kind="SpinApp") == outcomes  # one duration per reconcile

    # An invalid SpinApp (no webhook here to stop it): failed once, not retried.
    broken = spinapp("broken", replicas="two")
    await cluster.call("POST", f"{CR}/spinapps", broken)
    await cluster.wait(lambda: cluster.events("InvalidSpec"))
    failed = await cluster.wait(
        when(url, lambda s: value(s, ERRORS, kind="SpinApp", reason="InvalidSpec") > 0)
    )
    assert value(failed, ERRORS, kind="SpinApp", reason="InvalidSpec") == 1
    assert value(failed, RECONCILES, kind="SpinApp", outcome="error") == 1
    # A missing executor is retried (every 0.3 s here): each try counts.
    await cluster.call("POST", f"{CR}/spinapps", spinapp("orphan", executor="later"))
    retried = await cluster.wait(
        when(url, lambda s: value(s, ERRORS, kind="SpinApp", reason="MissingExecutor") >= 2)
    )
    assert value(retried, RECONCILES, kind="SpinApp", outcome="error") >= 3
    # An executor whose otel endpoint is no URL: its apps fail with the field and value named.
    bad = shim_executor("bad-otel", otel={"exporter_otlp_endpoint": "collector:4318"})
    await cluster.call("POST", f"{CR}/spinappexecutors", bad)
    await cluster.call("POST", f"{CR}/spinapps", spinapp("traced", executor="bad-otel"))
    events = await cluster.wait(lambda: cluster.events("InvalidExecutor"))
    assert "otel.exporter_otlp_endpoint: 'collector:4318' is not an http://" in events[0]["message"]
    assert await cluster.get(f"{APPS}/deployments/traced") is None
    await cluster.wait(
        lambda: value(scrape(url), ERRORS, kind="SpinApp", reason="InvalidExecutor") >= 1
    )
    # The executor's own reconcile fails once it has an app that does.
    await cluster.merge(f"{CR}/spinappexecutors/bad-otel", {"metadata": {"labels": {"x": "y"}}})
    await cluster.wait(
        lambda: value(scrape(url), ERRORS, kind="SpinAppExecutor", reason="AppsNotReconciled")
    )


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_service_monitor_waits_for_its_api_and_goes_when_not_wanted(
    observed: tuple[Cluster, str],
) -> None:
    cluster, url = observed
    wanted = {"serviceMonitor": {"interval": "15s", "labels": {"release": "prometheus"}}}
    await cluster.call("POST", f"{CR}/spinappexecutors", shim_executor(metrics=wanted))
    await cluster.call("POST", f"{CR}/spinapps", spinapp())
    events = await cluster.wait(lambda: cluster.events("ServiceMonitorUnavailable"))
    assert "the Prometheus Operator is not installed" in events[0]["message"]
    dep = await cluster.get(f"{APPS}/deployments/hello")  # the app runs meanwhile
    assert dep is not None
    assert SCRAPE.items() <= dep["spec"]["template"]["metadata"]["annotations"].items()
    assert value(scrape(url), ERRORS, kind="SpinApp", reason="ServiceMonitorUnavailable") >= 1

    cluster.api.resources[MONITORS] = kmock.ResourceInfo(
        kind="ServiceMonitor", namespaced=True, verbs=VERBS, subresources=set()
    )
    monitor = await cluster.wait(lambda: cluster.get(MONITOR_PATH))
    service = await cluster.wait(lambda: cluster.get(f"{CORE}/services/hello-metrics"))
    for obj in (monitor, service):
        obj = copy.deepcopy(obj)
        obj["metadata"] = {"name": obj["metadata"]["name"]}  # (kmock's server-set fields)
        validate(obj)
    assert monitor["spec"]["endpoints"][0] == {
        "port": "metrics",
        "path": "/metrics",
        "interval": "15s",
    }

    # serviceMonitor removed: both go, the pods stay annotated
    await cluster.merge(
        f"{CR}/spinappexecutors/containerd-shim-spin",
        {"spec": {"deploymentConfig": {"metrics": {"serviceMonitor": None}}}},
    )
    await cluster.wait(lambda: _gone(cluster, MONITOR_PATH))
    await cluster.wait(lambda: _gone(cluster, f"{CORE}/services/hello-metrics"))
    dep = await cluster.get(f"{APPS}/deployments/hello")
    assert (
        dep is not None
        and "prometheus.io/scrape" in dep["spec"]["template"]["metadata"]["annotations"]
    )
    # metrics removed: the annotations and the variable go too
    await cluster.merge(
        f"{CR}/spinappexecutors/containerd-shim-spin",
        {"spec": {"deploymentConfig": {"metrics": None}}},
    )

    async def unannotated() -> bool:
        d = await cluster.get(f"{APPS}/deployments/hello")
        return d is not None and "annotations" not in d["spec"]["template"]["metadata"]

    await cluster.wait(unannotated)
    dep = await cluster.get(f"{APPS}/deployments/hello")
    names = [e["name"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]]  # type: ignore[index]
    assert appmetrics.LISTEN_ENV not in names


@pytest.mark.asyncio
async def test_a_bad_metrics_address_fails_before_anything_is_watched() -> None:
    config = OperatorConfig(server="http://127.0.0.1:1", metrics_listen="nowhere")
    with pytest.raises(WasmletError, match="--metrics-listen: invalid address 'nowhere'"):
        await run(config)


def test_the_cli_flag(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["kube", "operator", "--server", "http://127.0.0.1:1", "--metrics-listen", "x:y"])
    assert code != 0
    assert "--metrics-listen: invalid address 'x:y'" in capsys.readouterr().err


def test_wasmlet_up_reads_the_variable_the_operator_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    """The container executor's pods run `wasmlet up`: WASMLET_METRICS_LISTEN is its
    --metrics-listen default (the flag still wins)."""
    from wasmlet.cli import build_parser

    monkeypatch.setenv(appmetrics.LISTEN_ENV, "0.0.0.0:9090")
    args = build_parser().parse_args(["up", "-f", "x.wasm"])
    assert args.metrics_listen == "0.0.0.0:9090"
    args = build_parser().parse_args(["up", "-f", "x.wasm", "--metrics-listen", "127.0.0.1:1"])
    assert args.metrics_listen == "127.0.0.1:1"
    monkeypatch.delenv(appmetrics.LISTEN_ENV)
    assert build_parser().parse_args(["up", "-f", "x.wasm"]).metrics_listen is None
