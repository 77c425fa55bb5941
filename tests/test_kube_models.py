"""CRDs: generated from the models, committed under deploy/crds, valid, structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from wasmlet.kube import GROUP, install
from wasmlet.kube.crds import crds, validate_custom_resource
from wasmlet.kube.models import SpinApp, SpinAppExecutor
from wasmlet.kube.validation import validate

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "kube"


def samples() -> list[dict[str, Any]]:
    docs = []
    for name in ("spinkube-samples.yaml", "wasmlet-additions.yaml"):
        docs += [d for d in yaml.safe_load_all((FIXTURES / name).read_text()) if d]
    return docs


def test_committed_deploy_tree_matches_the_generator() -> None:
    """Fails when deploy/ (CRDs included) drifts from the models: rerun
    `python -m wasmlet.kube.install deploy`."""
    for rel, content in install.tree().items():
        path = ROOT / "deploy" / rel
        assert path.is_file(), f"deploy/{rel} missing"
        assert path.read_text() == install.HEADER + content, f"deploy/{rel} is stale"
    crd_files = sorted(p.name for p in (ROOT / "deploy" / "crds").glob("*.yaml"))
    assert f"{GROUP}_spinapps.yaml" in crd_files
    assert f"{GROUP}_spinappexecutors.yaml" in crd_files


def test_crds_are_valid_kubernetes_objects() -> None:
    for crd in crds():
        assert validate(crd)


def _assert_structural(schema: dict[str, Any], where: str) -> None:
    """Every node has a type unless int-or-string or preserve-unknown-fields; no refs."""
    assert "$ref" not in schema and "anyOf" not in schema and "oneOf" not in schema, where
    if not (
        schema.get("x-kubernetes-int-or-string")
        or schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        assert "type" in schema, f"{where}: no type"
    if "properties" in schema:
        assert "additionalProperties" not in schema, where
    for key, sub in (schema.get("properties") or {}).items():
        _assert_structural(sub, f"{where}.{key}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            _assert_structural(schema[key], f"{where}[]")


def test_crd_schemas_are_structural() -> None:
    for crd in crds():
        _assert_structural(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"], "root")


def test_spinapp_crd_has_spinkube_columns_and_scale_subresource() -> None:
    spinapp = crds()[0]
    version = spinapp["spec"]["versions"][0]
    assert spinapp["metadata"]["name"] == "spinapps.core.spinkube.dev"
    columns = version["additionalPrinterColumns"]
    assert [c["name"] for c in columns if not c.get("priority")] == [
        "Ready",
        "Desired",
        "Executor",
    ]
    assert [(c["name"], c["jsonPath"]) for c in columns if c.get("priority")] == [
        ("Served-By", ".status.servedBy")  # `kubectl get -o wide` only
    ]
    assert version["subresources"]["status"] == {}
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["required"] == ["executor", "image"]
    fields = set(spec["properties"])
    spinkube = {
        "executor",
        "image",
        "imagePullSecrets",
        "checks",
        "replicas",
        "enableAutoscaling",
        "runtimeConfig",
        "volumes",
        "volumeMounts",
        "variables",
        "serviceAnnotations",
        "deploymentAnnotations",
        "podAnnotations",
        "podLabels",
        "resources",
        "components",
        "serviceAccountName",
        "invocationLimits",
    }
    additions = {
        "nodeSelector",
        "tolerations",
        "affinity",
        "env",
        "imagePullPolicy",
        "containers",
        "autoscaler",
    }
    assert spinkube | additions <= fields
    assert spec["properties"]["enableAutoscaling"]["default"] is False
    probe = spec["properties"]["checks"]["properties"]["liveness"]["properties"]
    assert probe["initialDelaySeconds"]["default"] == 10
    assert probe["failureThreshold"]["default"] == 3
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert {"conditions", "activeScheduler", "readyReplicas", "replicas", "selector"} <= set(status)
    assert status["servedBy"]["enum"] == ["activator", "pods"]
    assert status["servedBySince"] == {
        "type": "string",
        "format": "date-time",
        "description": "wasmlet: when servedBy last changed (RFC 3339).",
    }
    # embedded core types carry the real Kubernetes schema
    container = spec["properties"]["containers"]["items"]
    assert "image" in container["properties"] and "ports" in container["properties"]


def test_wasmlet_autoscaler_fields_have_bounds_but_no_crd_default() -> None:
    """Defaults of type-specific fields stay out of the CRD, else the API server would write
    them into every hpa/keda autoscaler; the model (and the activator) still has them."""
    spec = crds()[0]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    auto = spec["properties"]["autoscaler"]["properties"]
    assert auto["type"]["enum"] == ["hpa", "keda", "wasmlet"]
    bounds = {
        "targetConcurrency": (1, None, 10),
        "stableWindowSeconds": (6, 3600, 60),
        "panicWindowPercentage": (1, 100, 10),
        "panicThresholdPercentage": (110, 1000, 200),
    }
    parsed = SpinApp.model_validate(
        {"spec": {"image": "x", "autoscaler": {"type": "wasmlet", "maxReplicas": 1}}}
    ).spec.autoscaler
    for field, (low, high, default) in bounds.items():
        assert "default" not in auto[field], field
        assert auto[field]["minimum"] == low and auto[field].get("maximum") == high, field
        assert f"(default {default})" in auto[field]["description"], field
        assert parsed is not None and getattr(parsed, _snake(field)) == default, field
    assert parsed.min_replicas is None  # type-dependent: 1 for hpa/keda, 0 for wasmlet
    assert auto["maxReplicas"]["minimum"] == 0
    # the CRD refuses out-of-range values
    doc = next(d for d in samples() if d["metadata"]["name"] == "scale-to-zero")
    doc["spec"]["autoscaler"]["panicThresholdPercentage"] = 100
    with pytest.raises(ValueError, match="panicThresholdPercentage"):
        validate_custom_resource(doc)


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def test_executor_crd_keeps_spinkube_json_names() -> None:
    spec = crds()[1]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    config = spec["properties"]["deploymentConfig"]["properties"]
    assert {"runtimeClassName", "spinImage", "caCertSecret", "installDefaultCACerts"} <= set(config)
    assert set(config["otel"]["properties"]) == {
        "exporter_otlp_endpoint",
        "exporter_otlp_traces_endpoint",
        "exporter_otlp_metrics_endpoint",
        "exporter_otlp_logs_endpoint",
    }
    assert spec["required"] == ["createDeployment"]


@pytest.mark.parametrize("doc", samples(), ids=lambda d: d["metadata"]["name"])
def test_samples_validate_against_our_crds(doc: dict[str, Any]) -> None:
    validate_custom_resource(doc)
    model = SpinApp if doc["kind"] == "SpinApp" else SpinAppExecutor
    parsed = model.model_validate(doc)
    assert parsed.model_dump(by_alias=True, exclude_unset=True)["spec"] == doc["spec"]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda s: s.update(replicaz=2), "replicaz"),
        (lambda s: s.update(replicas="two"), "two"),
        (lambda s: s.pop("image"), "image"),
        (lambda s: s.update(containers=[{"name": "x", "imagee": "y"}]), "imagee"),
        (lambda s: s.update(tolerations=[{"key": "k", "operatr": "Exists"}]), "operatr"),
        (lambda s: s.update(components=[]), "[]"),
        (lambda s: s.update(resources={"limits": {"cpu": "lots"}}), "lots"),
        (lambda s: s.update(imagePullPolicy="Sometimes"), "Sometimes"),
    ],
)
def test_crd_schema_rejects_bad_spinapps(mutate: Any, message: str) -> None:
    doc = samples()[0]
    mutate(doc["spec"])
    with pytest.raises(ValueError, match="SpinApp") as err:
        validate_custom_resource(doc)
    assert message in str(err.value) or "required" in str(err.value)
