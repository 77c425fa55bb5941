"""Pure reconcile on a table of SpinApps (SpinKube's sample shapes and ours).

Every generated object is validated strictly against Kubernetes 1.32 and the newest schemas
`kubernetes-validate` bundles; custom resources against our CRDs / KEDA's fields.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from test_kube_models import samples

from wasmlet.kube import APP_NAME_LABEL, reconcile
from wasmlet.kube.autoscaling import AutoscalerSpec, hpa, scaled_object
from wasmlet.kube.models import RuntimeConfig, SpinApp, SpinAppExecutor
from wasmlet.kube.quantity import QuantityError, parse_bytes
from wasmlet.kube.rtconfig import RuntimeConfigError, ValueRef, references, render, secret_name
from wasmlet.kube.validation import validate, versions

NOW = "2026-01-01T00:00:00Z"


def executors() -> dict[str, SpinAppExecutor]:
    found = {}
    for doc in samples():
        if doc["kind"] == "SpinAppExecutor":
            found[doc["metadata"]["name"]] = SpinAppExecutor.model_validate(
                {**doc, "metadata": {**doc["metadata"], "uid": "exec-uid"}}
            )
    return found


def apps() -> list[dict[str, Any]]:
    out = []
    for doc in samples():
        if doc["kind"] == "SpinApp":
            doc = copy.deepcopy(doc)
            doc["metadata"].setdefault("namespace", "default")
            doc["metadata"]["uid"] = f"uid-{doc['metadata']['name']}"
            out.append(doc)
    return out


def build(doc: dict[str, Any], **kw: Any) -> reconcile.Desired:
    app = SpinApp.model_validate(doc)
    resolved = {ref: f"value-of-{ref.key}" for ref in references(app.spec.runtime_config)}
    return reconcile.desired(app, executors()[app.spec.executor or ""], resolved, "PEM", **kw)


def test_validated_against_two_kubernetes_versions() -> None:
    assert versions()[0] == "1.32.0"
    assert len(versions()) == 2 and versions()[1] >= "1.37"


@pytest.mark.parametrize("doc", apps(), ids=lambda d: d["metadata"]["name"])
def test_every_generated_object_is_valid(doc: dict[str, Any]) -> None:
    desired = build(doc)
    for obj in desired.objects():
        validate(obj)
    app = SpinApp.model_validate(doc)
    validate({**doc, "status": reconcile.status(app, desired.deployment, NOW)})
    validate({**doc, "status": reconcile.status(app, None, NOW)})


@pytest.mark.parametrize("doc", apps(), ids=lambda d: d["metadata"]["name"])
def test_labels_selectors_owner_and_service(doc: dict[str, Any]) -> None:
    name = doc["metadata"]["name"]
    desired = build(doc)
    # with autoscaler type wasmlet, Service <app>-pods is what Service <app> is otherwise
    dep, svc = desired.deployment, desired.pods_service or desired.service
    assert dep is not None
    ready = f"core.spinkube.dev/app.{name}.status"
    assert dep["spec"]["selector"]["matchLabels"] == {APP_NAME_LABEL: name, ready: "ready"}
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert labels[APP_NAME_LABEL] == name and labels[ready] == "ready"
    assert svc["spec"]["selector"] == {ready: "ready"}
    assert svc["spec"]["ports"] == [
        {"name": "http-app", "port": 80, "protocol": "TCP", "targetPort": "http-app"}
    ]
    for obj in [o for o in desired.objects() if o is not desired.ca_secret]:  # executor's
        owner = obj["metadata"]["ownerReferences"][0]
        assert owner == {
            "apiVersion": "core.spinkube.dev/v1alpha1",
            "kind": "SpinApp",
            "name": name,
            "uid": f"uid-{name}",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["name"] == name
    assert container["ports"] == [{"name": "http-app", "containerPort": 80, "protocol": "TCP"}]
    env = {e["name"]: e for e in container["env"]}
    assert env["SPIN_HTTP_LISTEN_ADDR"]["value"] == "0.0.0.0:80"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["spin-runtime-config"] == {
        "name": "spin-runtime-config",
        "mountPath": "/runtime-config.toml",
        "subPath": "runtime-config.toml",
        "readOnly": True,
    }
    if doc["spec"]["executor"] != "wasmlet-container":  # that one installs no CA bundle
        assert mounts["spin-ca"]["mountPath"] == "/etc/ssl/certs/ca-certificates.crt"


def _container(desired: reconcile.Desired) -> dict[str, Any]:
    assert desired.deployment is not None
    return desired.deployment["spec"]["template"]["spec"]["containers"][0]


def _app(name: str) -> dict[str, Any]:
    return next(d for d in apps() if d["metadata"]["name"] == name)


def test_shim_executor_runs_the_image_with_runtime_class_and_otel() -> None:
    desired = build(_app("simple-spinapp"))
    assert desired.deployment is not None
    pod = desired.deployment["spec"]["template"]["spec"]
    assert pod["runtimeClassName"] == "wasmtime-spin-v2"
    container = _container(desired)
    assert container["image"].endswith("spin-rust-hello:v0.13.0")
    assert container["command"] == ["/"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("http://otel-collector")
    assert desired.deployment["spec"]["replicas"] == 1
    assert desired.ca_secret is not None
    assert desired.ca_secret["metadata"]["ownerReferences"][0]["kind"] == "SpinAppExecutor"


def test_container_executor_runs_up_with_spinkube_args() -> None:
    desired = build(_app("spintainer-app"))
    container = _container(desired)
    pod = desired.deployment["spec"]["template"]["spec"]  # type: ignore[index]
    assert "runtimeClassName" not in pod
    assert container["image"] == "ghcr.io/spinkube/spintainer:v2.6.0"
    assert container["args"] == [
        "up",
        "--listen",
        "0.0.0.0:80",
        "-f",
        "ghcr.io/spinkube/containerd-shim-spin/examples/spin-rust-hello:v0.13.0",
        "--runtime-config-file",
        "/runtime-config.toml",
    ]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SPIN_MAX_INSTANCE_MEMORY"] == str(64 * 2**20)


def test_variables_become_spin_variable_env() -> None:
    env = _container(build(_app("variables-spinapp")))["env"]
    assert env[0] == {"name": "SPIN_VARIABLE_GREETEE", "value": "Fermyon"}
    assert env[1] == {
        "name": "SPIN_VARIABLE_SECRET_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "my-secret", "key": "token"}},
    }


def test_probes_components_annotations_volumes_pull_secrets() -> None:
    probe = _container(build(_app("healthchecks-spinapp")))["readinessProbe"]
    assert probe == {
        "httpGet": {
            "path": "/go-hello",
            "port": 80,
            "httpHeaders": [{"name": "x-probe", "value": "1"}],
        },
        "initialDelaySeconds": 10,
        "timeoutSeconds": 1,
        "periodSeconds": 10,
        "successThreshold": 1,
        "failureThreshold": 3,
    }
    env = {
        e["name"]: e.get("value")
        for e in _container(build(_app("hello-salutation-spinapp")))["env"]
    }
    assert env["SPIN_COMPONENTS_TO_RETAIN"] == "hello"
    desired = build(_app("annotations-spinapp"))
    dep = desired.deployment
    assert dep is not None
    assert dep["metadata"]["annotations"] == {"deployment-key": "deployment-value"}
    assert dep["spec"]["template"]["metadata"]["annotations"] == {"pod-key": "pod-value"}
    assert dep["spec"]["template"]["metadata"]["labels"]["team"] == "web"
    assert desired.service["metadata"]["annotations"] == {"service-key": "service-value"}
    pod = build(_app("volume-mount-spinapp")).deployment["spec"]["template"]["spec"]  # type: ignore[index]
    assert pod["volumes"][0] == {
        "name": "example-volume",
        "persistentVolumeClaim": {"claimName": "example-pv-claim"},
    }
    pod = build(_app("private-image")).deployment["spec"]["template"]["spec"]  # type: ignore[index]
    assert pod["imagePullSecrets"] == [{"name": "spin-image-secret"}]


def test_autoscaling_leaves_replicas_unset() -> None:
    dep = build(_app("hpa-spinapp")).deployment
    assert dep is not None and "replicas" not in dep["spec"]
    assert _container(build(_app("hpa-spinapp")))["resources"]["limits"] == {
        "cpu": "500m",
        "memory": "500Mi",
    }


def test_additions_scheduling_env_sidecars_and_owned_scaled_object() -> None:
    desired = build(_app("everything"))
    dep = desired.deployment
    assert dep is not None
    pod = dep["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"kubernetes.io/arch": "amd64"}
    assert pod["tolerations"][0]["key"] == "wasm"
    assert "nodeAffinity" in pod["affinity"]
    assert pod["serviceAccountName"] == "app-reader"
    assert [c["name"] for c in pod["containers"]] == ["everything", "log-shipper"]
    container = pod["containers"][0]
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["args"][-4:] == ["--component-id", "api", "--component-id", "web"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    scaled = desired.autoscaler
    assert scaled is not None and scaled["kind"] == "ScaledObject"
    assert scaled["metadata"]["name"] == "everything-autoscaler"
    assert scaled["metadata"]["ownerReferences"][0]["name"] == "everything"
    assert scaled["spec"]["minReplicaCount"] == 0
    assert scaled["spec"]["cooldownPeriod"] == 120
    assert [t["type"] for t in scaled["spec"]["triggers"]] == ["cpu", "prometheus"]


def test_hpa_autoscaler_targets_the_deployment() -> None:
    doc = _app("hpa-spinapp")
    doc["spec"]["autoscaler"] = {"type": "hpa", "maxReplicas": 5, "cpuUtilization": 50}
    desired = build(doc)
    obj = desired.autoscaler
    assert obj is not None and obj["kind"] == "HorizontalPodAutoscaler"
    validate(obj)
    assert obj["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "hpa-spinapp",
    }
    assert obj["spec"]["minReplicas"] == 1 and obj["spec"]["maxReplicas"] == 5


def test_executor_without_deployment_keeps_only_the_service() -> None:
    doc = _app("simple-spinapp")
    app = SpinApp.model_validate(doc)
    executor = SpinAppExecutor.model_validate(
        {"metadata": {"name": "external"}, "spec": {"createDeployment": False}}
    )
    desired = reconcile.desired(app, executor)
    assert desired.deployment is None
    assert [o["kind"] for o in desired.objects()] == ["Secret", "Service"]


def test_runtime_config_toml_and_content_hashed_secret_name() -> None:
    app = SpinApp.model_validate(_app("runtime-config"))
    refs = references(app.spec.runtime_config)
    assert ValueRef("Secret", "my-super-secret", "redis-full-url") in refs
    resolved = {ref: f"<{ref.key}>" for ref in refs}
    toml = render(app.spec.runtime_config, resolved)
    import tomllib

    parsed = tomllib.loads(toml)
    assert parsed["config_provider"] == [{"type": "env", "prefix": "SPIN_VARIABLE"}]
    assert parsed["key_value_store"]["default"] == {"type": "redis", "url": "<redis-full-url>"}
    assert parsed["sqlite_database"]["default"]["token"] == "<turso-token>"
    assert parsed["llm_compute"] == {
        "type": "remote_http",
        "url": "https://llm-app.example.com",
        "auth_token": "<llm-token>",
    }
    name = secret_name("runtime-config", toml)
    assert name.startswith("runtime-config-")
    changed = render(app.spec.runtime_config, {**resolved, refs[0]: "rotated"})
    assert secret_name("runtime-config", changed) != name
    desired = reconcile.desired(app, executors()["containerd-shim-spin"], resolved)
    assert desired.runtime_config is not None
    assert desired.runtime_config["metadata"]["name"] == name
    volumes = desired.deployment["spec"]["template"]["spec"]["volumes"]  # type: ignore[index]
    assert {
        "name": "spin-runtime-config",
        "secret": {"secretName": name, "optional": True},
    } in volumes


def test_runtime_config_missing_reference_is_an_error() -> None:
    app = SpinApp.model_validate(_app("runtime-config"))
    with pytest.raises(RuntimeConfigError, match="my-super-secret"):
        render(app.spec.runtime_config, {})


def test_runtime_config_escapes_toml() -> None:
    app = SpinApp.model_validate(_app("runtime-config"))
    refs = references(app.spec.runtime_config)
    toml = render(app.spec.runtime_config, {r: 'a"b\\c\nd' for r in refs})
    import tomllib

    assert tomllib.loads(toml)["key_value_store"]["default"]["url"] == 'a"b\\c\nd'


def test_runtime_config_keys_set_twice_are_an_error() -> None:
    # a TOML key can be set once; admission refuses these, but without webhooks they get here
    store = {"name": "default", "type": "redis", "options": [{"name": "url", "value": "a"}]}
    twice = RuntimeConfig.model_validate({"keyValueStores": [store, store]})
    with pytest.raises(RuntimeConfigError, match=r"key_value_store\.default: defined twice"):
        render(twice)
    typed = {**store, "options": [{"name": "type", "value": "memcached"}]}
    with pytest.raises(RuntimeConfigError, match="option 'type' is set twice"):
        render(RuntimeConfig.model_validate({"sqliteDatabases": [typed]}))


def test_load_from_secret_uses_the_users_secret() -> None:
    doc = _app("simple-spinapp")
    doc["spec"]["runtimeConfig"] = {"loadFromSecret": "mine"}
    desired = build(doc)
    assert desired.runtime_config is None
    volumes = desired.deployment["spec"]["template"]["spec"]["volumes"]  # type: ignore[index]
    assert {
        "name": "spin-runtime-config",
        "secret": {"secretName": "mine", "optional": True},
    } in volumes


def test_status_from_deployment() -> None:
    app = SpinApp.model_validate(_app("simple-spinapp"))
    missing = reconcile.status(app, None, NOW)
    assert [(c["type"], c["status"], c["reason"]) for c in missing["conditions"]] == [
        ("Available", "Unknown", "DeploymentNotFound"),
        ("Progressing", "Unknown", "DeploymentNotFound"),
    ]
    deployment = {
        "status": {
            "replicas": 2,
            "readyReplicas": 1,
            "conditions": [
                {
                    "type": "Available",
                    "status": "True",
                    "reason": "MinimumReplicasAvailable",
                    "message": "ok",
                    "lastTransitionTime": "2025-12-31T00:00:00Z",
                },
                {
                    "type": "Progressing",
                    "status": "True",
                    "reason": "NewReplicaSetAvailable",
                    "message": "done",
                    "lastUpdateTime": "2025-12-30T00:00:00Z",
                },
            ],
        }
    }
    status = reconcile.status(app, deployment, NOW)
    assert status["readyReplicas"] == 1 and status["replicas"] == 2
    assert status["activeScheduler"] == "containerd-shim-spin"
    assert status["selector"] == (
        "core.spinkube.dev/app-name=simple-spinapp,core.spinkube.dev/app.simple-spinapp.status=ready"
    )
    available = status["conditions"][0]
    assert available["reason"] == "MinimumReplicasAvailable"
    assert available["lastTransitionTime"] == "2025-12-31T00:00:00Z"
    assert status["conditions"][2]["type"] == "ContainersHealthy"
    validate({**_app("simple-spinapp"), "status": status})


def test_pod_problems_surface_in_status() -> None:
    pod = {
        "metadata": {"name": "p1"},
        "status": {
            "containerStatuses": [
                {
                    "name": "app",
                    "state": {
                        "waiting": {
                            "reason": "ImagePullBackOff",
                            "message": "Back-off pulling image",
                        }
                    },
                },
                {"name": "side", "state": {"running": {}}},
            ]
        },
    }
    problems = reconcile.pod_problems(pod)
    assert problems == ["ImagePullBackOff: pod p1 container app: Back-off pulling image"]
    app = SpinApp.model_validate(_app("simple-spinapp"))
    status = reconcile.status(app, {"status": {}}, NOW, problems)
    healthy = status["conditions"][-1]
    assert (healthy["type"], healthy["status"], healthy["reason"]) == (
        "ContainersHealthy",
        "False",
        "ImagePullBackOff",
    )


def test_condition_transition_time_is_kept_while_status_holds() -> None:
    doc = _app("simple-spinapp")
    app = SpinApp.model_validate(doc)
    first = reconcile.status(app, None, NOW)
    again = reconcile.status(
        SpinApp.model_validate({**doc, "status": first}), None, "2026-02-02T00:00:00Z"
    )
    assert again["conditions"][0]["lastTransitionTime"] == NOW


def test_invalid_invocation_memory_is_a_reconcile_error() -> None:
    doc = _app("spintainer-app")
    doc["spec"]["invocationLimits"] = {"memory": "lots"}
    with pytest.raises(reconcile.ReconcileError) as err:
        build(doc)
    assert err.value.reason == "InvalidInvocationLimits"


@pytest.mark.parametrize(
    "text, expected",
    [("128Mi", 128 * 2**20), ("1G", 10**9), ("1e3", 1000), ("0.5Ki", 512), ("100", 100)],
)
def test_quantities(text: str, expected: int) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["lots", "-1Mi", "10Ei", "1.5.5"])
def test_bad_quantities(text: str) -> None:
    with pytest.raises(QuantityError):
        parse_bytes(text)


def test_hpa_and_scaled_object_target_deployment_or_spinapp() -> None:
    spec = AutoscalerSpec(
        kind="hpa",
        name="a-autoscaler",
        namespace="ns",
        app="a",
        target="spinapp",
        cpu_utilization=60,
        memory_utilization=60,
    )
    for obj in (hpa(spec), scaled_object(spec)):
        validate(obj)
        assert obj["spec"]["scaleTargetRef"] == {
            "apiVersion": "core.spinkube.dev/v1alpha1",
            "kind": "SpinApp",
            "name": "a",
        }
