"""Admission: SpinKube's defaulting and validation rules, and ours, as pure functions."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from wasmlet.kube import admission as adm
from wasmlet.kube.models import SpinApp, SpinAppExecutorSpec

SHIM = SpinAppExecutorSpec.model_validate(
    {"createDeployment": True, "deploymentConfig": {"runtimeClassName": "wasmtime-spin-v2"}}
)
EXTERNAL = SpinAppExecutorSpec.model_validate({"createDeployment": False})
EXECUTORS = {"containerd-shim-spin": SHIM, "external": EXTERNAL}
BASE: dict[str, Any] = {
    "apiVersion": "core.spinkube.dev/v1alpha1",
    "kind": "SpinApp",
    "metadata": {"name": "hello", "namespace": "default"},
    "spec": {"image": "ghcr.io/x/hello:v1", "executor": "containerd-shim-spin", "replicas": 1},
}


def errors(**spec: Any) -> list[str]:
    body = copy.deepcopy(BASE)
    body["spec"].update(spec)
    body["spec"] = {k: v for k, v in body["spec"].items() if v is not None}
    return adm.validate_app_body(body, EXECUTORS)


def test_defaulting_picks_the_alphabetically_first_executor() -> None:
    assert adm.defaults({"image": "x"}, {"zeta": 1, "alpha": 1}) == {
        "executor": "alpha",
        "replicas": 1,
    }
    assert adm.defaults({"image": "x", "executor": "mine", "replicas": 3}, {"a": 1}) == {}
    assert adm.defaults({"image": "x", "enableAutoscaling": True}, {}) == {}


def test_a_valid_app_is_admitted() -> None:
    assert errors() == []


@pytest.mark.parametrize(
    "spec, expected",
    [
        ({"executor": None}, "spec.executor: must name a SpinAppExecutor"),
        ({"executor": "nope"}, "SpinAppExecutor 'nope' does not exist"),
        ({"enableAutoscaling": True, "replicas": 2}, "spec.replicas: must be unset"),
        ({"executor": "external", "podAnnotations": {"a": "b"}}, "spec.podAnnotations"),
        ({"executor": "external", "deploymentAnnotations": {"a": "b"}}, "deploymentAnnotations"),
        ({"invocationLimits": {"memory": "plenty"}}, "spec.invocationLimits.memory"),
        ({"invocationLimits": {"memory": "100Ei"}}, "too large"),
        ({"variables": [{"name": "Bad-Name", "value": "x"}]}, "not a Spin variable name"),
        ({"variables": [{"name": "a", "value": "x"}, {"name": "a", "value": "y"}]}, "set twice"),
        (
            {"variables": [{"name": "a", "value": "x", "valueFrom": {"fieldRef": {}}}]},
            "value or valueFrom, not both",
        ),
        (
            {
                "runtimeConfig": {
                    "keyValueStores": [{"name": "d", "type": "redis", "options": [{"name": "url"}]}]
                }
            },
            "exactly one of value and valueFrom",
        ),
        (
            {"containers": [{"name": "hello", "image": "sidecar:1"}]},
            "spec.containers[0].name: 'hello' is taken",
        ),
        ({"image": None}, "SpinApp.spec.image: Field required"),
    ],
)
def test_spinapp_rejections(spec: dict[str, Any], expected: str) -> None:
    found = errors(**spec)
    assert any(expected in e for e in found), found


def test_long_names_are_rejected() -> None:
    body = copy.deepcopy(BASE)
    body["metadata"]["name"] = "a" * 53
    assert "metadata.name: at most 52 characters" in adm.validate_app_body(body, EXECUTORS)[0]


AUTOSCALE: dict[str, Any] = {
    "enableAutoscaling": True,
    "replicas": None,
    "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}},
}


@pytest.mark.parametrize(
    "autoscaler, expected",
    [
        ({"type": "hpa", "maxReplicas": 3, "cpuUtilization": 60}, None),
        ({"type": "hpa", "maxReplicas": 3}, "an HPA needs cpuUtilization or memoryUtilization"),
        (
            {
                "type": "hpa",
                "maxReplicas": 3,
                "cpuUtilization": 60,
                "scaleToZero": {"enabled": True},
            },
            "an HPA cannot scale to zero",
        ),
        (
            {
                "type": "keda",
                "maxReplicas": 3,
                "cpuUtilization": 60,
                "scaleToZero": {"enabled": True},
            },
            "CPU and memory cannot wake an app",
        ),
        (
            {
                "type": "keda",
                "maxReplicas": 3,
                "scaleToZero": {"enabled": True},
                "triggers": [{"type": "prometheus", "metadata": {"query": "q"}}],
            },
            None,
        ),
        (
            {"type": "keda", "maxReplicas": 3, "minReplicas": 0, "cpuUtilization": 5},
            "needs scaleToZero",
        ),
        ({"type": "hpa", "maxReplicas": 1, "minReplicas": 2, "cpuUtilization": 5}, "maxReplicas"),
    ],
)
def test_autoscaler_rules(autoscaler: dict[str, Any], expected: str | None) -> None:
    found = errors(**AUTOSCALE, autoscaler=autoscaler)
    if expected is None:
        assert found == []
    else:
        assert any(expected in e for e in found), found


def test_replicas_zero_is_admitted_for_whoever_writes_scale() -> None:
    """An autoscaler on the SpinApp's /scale (enableAutoscaling false) may write 0, and the
    activator (type wasmlet) any count: the SpinApp stays admissible afterwards."""
    assert errors(replicas=0) == []
    wasmlet = {"type": "wasmlet", "maxReplicas": 3}
    for replicas in (None, 0, 2, 7):  # 7 > maxReplicas: the operator clamps, never refuses
        assert errors(enableAutoscaling=True, replicas=replicas, autoscaler=wasmlet) == []
    # an autoscaler on the Deployment still owns the count there
    hpa = {"type": "hpa", "maxReplicas": 3, "cpuUtilization": 60}
    found = errors(**{**AUTOSCALE, "replicas": 2}, autoscaler=hpa)
    assert any("spec.replicas: must be unset" in e for e in found), found
    assert errors(**{**AUTOSCALE, "replicas": 0}, autoscaler=hpa) == []  # SpinKube allows 0


WASMLET: dict[str, Any] = {"enableAutoscaling": True, "replicas": None}


@pytest.mark.parametrize(
    "autoscaler, expected",
    [
        ({"type": "wasmlet", "maxReplicas": 3}, None),
        ({"type": "wasmlet", "maxReplicas": 0}, None),  # the activator alone serves it
        (
            {
                "type": "wasmlet",
                "minReplicas": 1,
                "maxReplicas": 5,
                "targetConcurrency": 4,
                "stableWindowSeconds": 30,
                "panicWindowPercentage": 20,
                "panicThresholdPercentage": 150,
                "scaleToZero": {"cooldownPeriodSeconds": 120},
            },
            None,
        ),
        (
            {"type": "wasmlet", "minReplicas": 2, "maxReplicas": 1},
            "spec.autoscaler.maxReplicas: must be at least minReplicas (2)",
        ),
        (
            {"type": "wasmlet", "maxReplicas": 3, "cpuUtilization": 50},
            "spec.autoscaler.cpuUtilization: not with type: wasmlet",
        ),
        (
            {"type": "wasmlet", "maxReplicas": 3, "memoryUtilization": 50},
            "spec.autoscaler.memoryUtilization: not with type: wasmlet",
        ),
        (
            {"type": "wasmlet", "maxReplicas": 3, "triggers": [{"type": "prometheus"}]},
            "spec.autoscaler.triggers: not with type: wasmlet",
        ),
        (
            {"type": "hpa", "maxReplicas": 3, "cpuUtilization": 60, "targetConcurrency": 5},
            "spec.autoscaler.targetConcurrency: only for type: wasmlet",
        ),
        (
            {"type": "keda", "maxReplicas": 3, "cpuUtilization": 60, "stableWindowSeconds": 30},
            "spec.autoscaler.stableWindowSeconds: only for type: wasmlet",
        ),
        ({"type": "wasmlet", "maxReplicas": 3, "targetConcurrency": 0}, "targetConcurrency"),
        ({"type": "wasmlet", "maxReplicas": 3, "stableWindowSeconds": 5}, "stableWindowSeconds"),
        (
            {"type": "wasmlet", "maxReplicas": 3, "panicWindowPercentage": 101},
            "panicWindowPercentage",
        ),
        (
            {"type": "wasmlet", "maxReplicas": 3, "panicThresholdPercentage": 100},
            "panicThresholdPercentage",
        ),
    ],
)
def test_wasmlet_autoscaler_rules(autoscaler: dict[str, Any], expected: str | None) -> None:
    found = errors(**WASMLET, autoscaler=autoscaler)
    if expected is None:
        assert found == []
    else:
        assert any(expected in e for e in found), found


def test_wasmlet_needs_enable_autoscaling_and_an_executor_with_deployments() -> None:
    found = errors(autoscaler={"type": "wasmlet", "maxReplicas": 3})
    assert found == ["spec.autoscaler: needs enableAutoscaling: true"]  # replicas may stay
    found = errors(**WASMLET, executor="external", autoscaler={"type": "wasmlet", "maxReplicas": 3})
    assert any("creates no Deployment" in e for e in found), found


def test_wasmlet_at_zero_pods_refuses_what_the_activator_cannot_run() -> None:
    volumes = {
        "volumes": [{"name": "v", "emptyDir": {}}],
        "volumeMounts": [{"name": "v", "mountPath": "/data"}],
    }
    pod_field = {"name": "node", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
    secret = {"name": "key", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
    at_zero = {"type": "wasmlet", "maxReplicas": 3}
    found = errors(**WASMLET, **volumes, autoscaler=at_zero)
    assert len(found) == 1 and found[0].startswith("spec.volumes: "), found
    assert "minReplicas >= 1" in found[0]
    found = errors(**WASMLET, variables=[secret, pod_field], autoscaler=at_zero)
    assert len(found) == 1 and found[0].startswith("spec.variables[1] (node).valueFrom"), found
    assert errors(**WASMLET, variables=[secret], autoscaler=at_zero) == []
    # a pod always meant to be there: the activator only stands in (503) until one is ready
    kept = {"type": "wasmlet", "minReplicas": 1, "maxReplicas": 3}
    assert errors(**WASMLET, **volumes, variables=[pod_field], autoscaler=kept) == []


def test_autoscaler_needs_enable_autoscaling_and_resources() -> None:
    found = errors(autoscaler={"type": "hpa", "maxReplicas": 3, "memoryUtilization": 60})
    assert any("needs enableAutoscaling: true" in e for e in found)
    assert any("set spec.resources requests or limits for memory" in e for e in found)


def test_executor_rules() -> None:
    both = {
        "createDeployment": True,
        "deploymentConfig": {"runtimeClassName": "x", "spinImage": "y"},
    }
    neither = {"createDeployment": True, "deploymentConfig": {}}
    assert "not both" in adm.validate_executor(SpinAppExecutorSpec.model_validate(both))[0]
    assert (
        "needs runtimeClassName"
        in adm.validate_executor(SpinAppExecutorSpec.model_validate(neither))[0]
    )
    assert adm.validate_executor(EXTERNAL) == []
    assert adm.validate_executor(SHIM) == []
    assert adm.validate_executor_body({"metadata": {}, "spec": {}})[0].startswith(
        "SpinAppExecutor.spec.createDeployment"
    )


def test_parse_app_reports_model_errors() -> None:
    app, found = adm.parse_app({"spec": {"image": 3}})
    assert app is None and found
    app, found = adm.parse_app(BASE)
    assert isinstance(app, SpinApp) and found == []
