"""Scale to zero with the activator (autoscaler type wasmlet), as pure functions: the objects,
the serve/proxy choice, the order of a flip and its grace (wasmlet.kube.routing, reconcile)."""

from __future__ import annotations

import copy
import datetime
from typing import Any

import pytest
from test_kube_reconcile import NOW, executors

from wasmlet.kube import (
    ACTIVATOR_NAME,
    ACTIVATOR_PORT,
    APP_NAME_LABEL,
    FIELD_MANAGER,
    pods_service,
    reconcile,
)
from wasmlet.kube import routing as rt
from wasmlet.kube.models import SpinApp
from wasmlet.kube.validation import validate

T0 = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
DOC: dict[str, Any] = {
    "apiVersion": "core.spinkube.dev/v1alpha1",
    "kind": "SpinApp",
    "metadata": {"name": "hello", "namespace": "default", "uid": "uid-hello"},
    "spec": {
        "image": "ghcr.io/x/hello:v1",
        "executor": "wasmlet-container",
        "enableAutoscaling": True,
        "autoscaler": {"type": "wasmlet", "maxReplicas": 3},
    },
}


def app(**spec: Any) -> SpinApp:
    doc = copy.deepcopy(DOC)
    autoscaler = spec.pop("autoscaler", {})
    doc["spec"]["autoscaler"].update(autoscaler)
    doc["spec"].update(spec)
    return SpinApp.model_validate(doc)


def endpoint(ip: str, ready: bool | None = True, **extra: Any) -> dict[str, Any]:
    conditions = {} if ready is None else {"ready": ready}
    return {"addresses": [ip], "conditions": conditions, **extra}


def eps(*endpoints: dict[str, Any], family: str = "IPv4", service: str = "x") -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": f"{service}-abc", "labels": {"kubernetes.io/service-name": service}},
        "addressType": family,
        "endpoints": list(endpoints),
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
    }


POD = eps(endpoint("10.1.0.7", nodeName="n1"), endpoint("10.1.0.8", ready=False))
ACTIVATOR = eps(endpoint("10.0.0.5"))


def observed(**kw: Any) -> rt.Observed:
    kw.setdefault("activator_slices", [ACTIVATOR])
    return rt.Observed(**kw)


def addresses(plan: rt.Plan) -> list[str]:
    return [a for e in plan.endpoints for a in e["addresses"]]


# -- the objects ------------------------------------------------------------------------


def test_objects_of_a_wasmlet_app_are_valid_and_named() -> None:
    hello = app(serviceAnnotations={"team": "web"})
    plan = rt.plan(hello, observed(), T0)
    desired = reconcile.desired(hello, executors()["wasmlet-container"], plan=plan)
    assert [(o["kind"], o["metadata"]["name"]) for o in desired.objects()] == [
        ("Secret", desired.runtime_config["metadata"]["name"]),  # type: ignore[index]
        ("Deployment", "hello"),
        ("Service", "hello-pods"),
        ("EndpointSlice", "hello-wasmlet"),  # before Service hello loses its selector
        ("Service", "hello"),
    ]
    assert desired.autoscaler is None  # the activator scales: no HPA, no ScaledObject
    for obj in desired.objects():
        validate(obj)  # strict, Kubernetes 1.32 and the newest schemas
        assert obj["metadata"]["ownerReferences"][0]["uid"] == "uid-hello"
        assert obj["metadata"]["labels"][APP_NAME_LABEL] == "hello"

    public = desired.service
    assert "selector" not in public["spec"]  # Kubernetes manages no endpoints for it
    assert public["spec"]["ports"] == [{"name": "http", "port": 80, "protocol": "TCP"}]
    assert public["metadata"]["annotations"] == {"team": "web"}

    pods = desired.pods_service
    assert pods is not None and pods["metadata"]["name"] == pods_service("hello")
    assert pods["metadata"]["labels"]["app.kubernetes.io/component"] == "pods"
    assert pods["spec"]["selector"] == {"core.spinkube.dev/app.hello.status": "ready"}
    assert pods["spec"]["ports"] == [
        {"name": "http-app", "port": 80, "protocol": "TCP", "targetPort": "http-app"}
    ]
    assert reconcile.service(hello)["spec"] == pods["spec"]  # what Service hello is otherwise

    eslice = desired.endpoint_slice
    assert eslice is not None
    assert eslice["metadata"]["labels"] == {
        APP_NAME_LABEL: "hello",
        "app.kubernetes.io/managed-by": FIELD_MANAGER,
        "kubernetes.io/service-name": "hello",
        "endpointslice.kubernetes.io/managed-by": "wasmlet-operator",
    }
    assert eslice["addressType"] == "IPv4"
    assert eslice["endpoints"] == [{"addresses": ["10.0.0.5"], "conditions": {"ready": True}}]
    assert eslice["ports"] == [{"name": "http", "port": ACTIVATOR_PORT, "protocol": "TCP"}]

    status = reconcile.status(hello, desired.deployment, NOW) | plan.status()
    assert status["servedBy"] == "activator"
    assert status["servedBySince"] == "2026-01-01T12:00:00.000Z"
    validate({**DOC, "status": status})


def test_serve_mode_slice_points_at_the_ready_pods_on_port_80() -> None:
    hello = app(replicas=2)
    plan = rt.plan(hello, observed(pod_slices=[POD], deployment_replicas=2), T0)
    eslice = reconcile.endpoint_slice(hello, plan)
    validate(eslice)
    assert eslice["endpoints"] == [
        {"addresses": ["10.1.0.7"], "conditions": {"ready": True}, "nodeName": "n1"}
    ]
    assert eslice["ports"] == [{"name": "http", "port": 80, "protocol": "TCP"}]


def test_other_apps_keep_the_service_with_a_selector_and_no_slice() -> None:
    for spec in (
        {"enableAutoscaling": False, "replicas": 1},  # type wasmlet needs enableAutoscaling
        {"autoscaler": {"type": "hpa", "cpuUtilization": 50}},
    ):
        other = app(**spec)
        assert not rt.is_wasmlet(other)
        desired = reconcile.desired(other, executors()["wasmlet-container"])
        assert desired.service == reconcile.service(other)
        assert desired.pods_service is None and desired.endpoint_slice is None
        assert desired.plan is None and desired.requeue_after is None
        assert [o["kind"] for o in desired.objects()].count("Service") == 1


@pytest.mark.parametrize(
    "spec, want",
    [
        ({}, 0),  # replicas unset: minReplicas, 0 for type wasmlet
        ({"replicas": 2}, 2),
        ({"replicas": 9}, 3),  # never above maxReplicas
        ({"autoscaler": {"minReplicas": 1}}, 1),
        ({"replicas": 0, "autoscaler": {"minReplicas": 2}}, 2),
        ({"replicas": 3, "autoscaler": {"maxReplicas": 0}}, 0),  # the activator alone
        ({"autoscaler": {"minReplicas": 2, "maxReplicas": 0}}, 0),  # max wins
    ],
)
def test_deployment_replicas_follow_spec_replicas_within_bounds(
    spec: dict[str, Any], want: int
) -> None:
    hello = app(**spec)
    assert rt.desired_replicas(hello) == want
    desired = reconcile.desired(hello, executors()["wasmlet-container"])
    assert desired.deployment is not None and desired.deployment["spec"]["replicas"] == want


# -- serve or proxy -----------------------------------------------------------------------


def test_nothing_observed_yet_the_activator_serves_and_there_are_no_pods() -> None:
    plan = rt.plan(app())
    assert plan.served_by == "activator" and plan.endpoints == []
    assert plan.deployment_replicas == 0 and plan.requeue_after is None
    assert not plan.activator_ready and plan.needs_activator


def test_scale_up_deployment_first_slice_stays_on_the_activator_until_a_pod_is_ready() -> None:
    hello = app(replicas=2)
    before = observed(served_by="activator", since=T0, deployment_replicas=0)
    plan = rt.plan(hello, before, T0 + datetime.timedelta(seconds=30))
    assert plan.deployment_replicas == 2
    assert plan.served_by == "activator" and addresses(plan) == ["10.0.0.5"]
    assert plan.since == T0  # unchanged: still the first move
    not_ready = eps(endpoint("10.1.0.7", ready=False))
    plan = rt.plan(hello, observed(pod_slices=[not_ready], deployment_replicas=2), T0)
    assert plan.served_by == "activator"
    later = T0 + datetime.timedelta(seconds=40)
    plan = rt.plan(
        hello,
        observed(pod_slices=[POD], served_by="activator", since=T0, deployment_replicas=2),
        later,
    )
    assert plan.served_by == "pods" and addresses(plan) == ["10.1.0.7"]
    assert plan.since == later and plan.status()["servedBy"] == "pods"
    assert plan.deployment_replicas == 2 and plan.requeue_after is None


def test_pods_that_stop_being_ready_hand_back_to_the_activator() -> None:
    gone = eps(endpoint("10.1.0.7", ready=False))
    plan = rt.plan(
        app(replicas=2),
        observed(pod_slices=[gone], served_by="pods", since=T0, deployment_replicas=2),
        T0 + datetime.timedelta(seconds=1),
    )
    assert plan.served_by == "activator" and addresses(plan) == ["10.0.0.5"]
    assert plan.deployment_replicas == 2 and plan.requeue_after is None  # wanted: no grace


def test_ready_means_not_false_and_endpoints_are_deduplicated_and_sorted() -> None:
    slices = [
        eps(endpoint("10.1.0.9", ready=None), endpoint("10.1.0.2")),
        eps(endpoint("10.1.0.2"), endpoint("10.1.0.3", ready=False)),
        eps(endpoint("fd00::1"), family="IPv6"),
    ]
    assert rt.address_type(slices) == "IPv4"  # dual stack: IPv4
    found = rt.ready_endpoints(slices, "IPv4")
    assert [e["addresses"] for e in found] == [["10.1.0.2"], ["10.1.0.9"]]
    ipv6 = [eps(endpoint("fd00::1"), family="IPv6")]
    unready_v4 = [eps(endpoint("10.0.0.5", ready=False))]
    assert rt.address_type(ipv6, unready_v4) == "IPv6"  # the family with ready endpoints
    assert rt.address_type([eps(family="IPv6")]) == "IPv6"  # else any slice's
    assert rt.address_type() == "IPv4"
    many = [eps(*(endpoint(f"10.2.{i // 250}.{i % 250}") for i in range(1200)))]
    assert len(rt.ready_endpoints(many, "IPv4")) == rt.MAX_ENDPOINTS


# -- going to zero: the slice first, the Deployment after the grace -------------------------


def test_going_to_zero_moves_traffic_first_and_removes_pods_only_after_the_grace() -> None:
    assert rt.GRACE_SECONDS == 5.0
    hello = app(replicas=0)
    serving = observed(pod_slices=[POD], served_by="pods", since=T0, deployment_replicas=2)
    flip = T0 + datetime.timedelta(seconds=60)
    plan = rt.plan(hello, serving, flip)
    assert plan.served_by == "activator" and addresses(plan) == ["10.0.0.5"]
    assert plan.since == flip and plan.status()["servedBySince"] == rt.format_time(flip)
    assert plan.deployment_replicas == 2  # pods stay while kube-proxy catches up
    assert plan.requeue_after == rt.GRACE_SECONDS

    def after(seconds: float) -> rt.Plan:
        proxied = observed(
            pod_slices=[POD], served_by="activator", since=flip, deployment_replicas=2
        )
        return rt.plan(hello, proxied, flip + datetime.timedelta(seconds=seconds))

    assert after(2).deployment_replicas == 2 and after(2).requeue_after == pytest.approx(3.0)
    assert after(4.999).deployment_replicas == 2
    done = after(5)
    assert done.deployment_replicas == 0 and done.requeue_after is None
    assert done.served_by == "activator" and done.since == flip


def test_the_grace_is_configurable_and_counted_from_the_status() -> None:
    hello = app(replicas=0)
    flip = T0
    proxied = observed(served_by="activator", since=flip, deployment_replicas=1)
    plan = rt.plan(hello, proxied, flip + datetime.timedelta(seconds=1), grace=0.5)
    assert plan.deployment_replicas == 0
    # no time recorded (status lost): the grace starts now
    plan = rt.plan(hello, observed(served_by="activator", deployment_replicas=1), T0)
    assert plan.deployment_replicas == 1 and plan.requeue_after == rt.GRACE_SECONDS
    assert plan.since == T0
    # no clock (a plan made without observations): wait a whole grace
    plan = rt.plan(hello, observed(served_by="activator", since=flip, deployment_replicas=1))
    assert plan.deployment_replicas == 1 and plan.requeue_after == rt.GRACE_SECONDS


def test_at_zero_already_or_never_served_by_pods_there_is_nothing_to_wait_for() -> None:
    hello = app(replicas=0)
    plan = rt.plan(hello, observed(deployment_replicas=0), T0)
    assert plan.deployment_replicas == 0 and plan.requeue_after is None
    plan = rt.plan(hello, observed(), T0)  # no Deployment yet
    assert plan.deployment_replicas == 0 and plan.requeue_after is None
    # up to 2 and back to 0 before any pod was ready: traffic never left the activator
    long_ago = observed(served_by="activator", since=T0, deployment_replicas=2)
    plan = rt.plan(hello, long_ago, T0 + datetime.timedelta(minutes=5))
    assert plan.deployment_replicas == 0 and plan.requeue_after is None


def test_scaling_up_again_during_the_grace_goes_straight_back_to_the_pods() -> None:
    flip = T0
    proxied = observed(pod_slices=[POD], served_by="activator", since=flip, deployment_replicas=2)
    plan = rt.plan(app(replicas=2), proxied, flip + datetime.timedelta(seconds=2))
    assert plan.served_by == "pods" and plan.deployment_replicas == 2
    assert plan.requeue_after is None


def test_without_a_ready_activator_the_last_pods_keep_serving() -> None:
    hello = app(replicas=0)
    nobody = observed(
        pod_slices=[POD], activator_slices=[], served_by="pods", since=T0, deployment_replicas=2
    )
    plan = rt.plan(hello, nobody, T0 + datetime.timedelta(minutes=1))
    assert plan.served_by == "pods" and addresses(plan) == ["10.1.0.7"]
    assert plan.deployment_replicas == 2 and plan.requeue_after is None
    assert plan.needs_activator and not plan.activator_ready
    # once it is ready, the usual order: slice first, pods after the grace
    ready = observed(pod_slices=[POD], served_by="pods", since=T0, deployment_replicas=2)
    later = T0 + datetime.timedelta(minutes=2)
    plan = rt.plan(hello, ready, later)
    assert plan.served_by == "activator" and plan.since == later
    assert plan.deployment_replicas == 2 and plan.requeue_after == rt.GRACE_SECONDS


def test_status_times_round_trip_with_milliseconds() -> None:
    when = datetime.datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=datetime.UTC)
    text = rt.format_time(when)
    assert text == "2026-01-01T12:00:00.123Z"
    assert rt.parse_time(text) == when.replace(microsecond=123000)
    assert rt.parse_time("2026-01-01T12:00:00Z") == T0
    assert rt.parse_time("garbage") is None and rt.parse_time(None) is None
    status = {"servedBy": "pods", "servedBySince": text}
    parsed = SpinApp.model_validate({**DOC, "status": status})
    seen = rt.Observed.from_status(parsed)
    assert seen.served_by == "pods" and seen.since == rt.parse_time(text)
    assert rt.NO_ROUTING_STATUS == {"servedBy": None, "servedBySince": None}


def test_names_the_activator_and_the_operator_agree_on() -> None:
    assert (ACTIVATOR_NAME, ACTIVATOR_PORT) == ("wasmlet-activator", 8080)
    assert pods_service("hello") == "hello-pods"
    assert rt.slice_name("hello") == "hello-wasmlet"
