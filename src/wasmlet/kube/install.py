"""The operator's install manifests, and the kustomize tree under `deploy/` made from them.

`objects()` is what `wasmlet kube install` prints or applies; `write_tree(DIR)` writes the same
objects as kustomize bases (`python -m wasmlet.kube.install deploy`); a test checks that the
committed `deploy/` matches and that `kubectl kustomize deploy/default` renders the same set.
Besides the operator: the activator (`wasmlet kube activator`), which serves SpinApps with
autoscaler type wasmlet while they have no ready pod and scales them through /scale.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from . import (
    ACTIVATOR_NAME,
    ACTIVATOR_PORT,
    ACTIVATOR_PORT_NAME,
    DEFAULT_IMAGE,
    DEFAULT_NAMESPACE,
    GROUP,
    HEALTH_PATH,
)
from ._yaml import dump
from .appmetrics import pod_annotations
from .crds import crds
from .models import ExecutorMetrics
from .operator import WEBHOOK_IDS

NAMESPACE = DEFAULT_NAMESPACE
NAME = "wasmlet-operator"
WEBHOOK_SERVICE = "wasmlet-webhook"
WEBHOOK_SECRET = "wasmlet-webhook-tls"
WEBHOOK_PORT = 9443
HEALTH_PORT = 8080
METRICS_PORT = 9090  # the operator's reconcile metrics (opmetrics.py)
LABELS = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": "wasmlet"}
TLS_DIR = "/tls"
WEBHOOK_ARGS = [
    "--webhook-port",
    str(WEBHOOK_PORT),
    "--webhook-cert",
    f"{TLS_DIR}/tls.crt",
    "--webhook-key",
    f"{TLS_DIR}/tls.key",
]


def _labels(component: str = NAME) -> dict[str, str]:
    return LABELS | {"app.kubernetes.io/name": component}


def _meta(
    name: str, namespaced: bool = True, component: str = NAME, **extra: Any
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespaced:
        meta["namespace"] = NAMESPACE
    meta["labels"] = _labels(component)
    return meta | extra


def namespace() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(NAMESPACE, False)}


def service_account() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(NAME)}


def _rule(group: str, resources: list[str], verbs: list[str]) -> dict[str, Any]:
    return {"apiGroups": [group], "resources": resources, "verbs": verbs}


def cluster_role() -> dict[str, Any]:
    """Least privilege: exactly the calls the operator (and kopf under it) makes."""
    write = ["get", "create", "patch", "delete"]
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": _meta(NAME, False),
        "rules": [
            # watch + annotations/finalizers (kopf keeps its progress in annotations)
            _rule(GROUP, ["spinapps", "spinappexecutors"], ["get", "list", "watch", "patch"]),
            _rule(GROUP, ["spinapps/status"], ["get", "patch"]),
            _rule("apps", ["deployments"], ["list", "watch", *write]),
            _rule("", ["services"], write),
            # runtime-config Secrets (create, clean up old ones) and valueFrom lookups
            _rule("", ["secrets"], ["list", *write]),
            _rule("", ["configmaps"], ["get"]),
            # image pull errors and crash loops surface in SpinApp status
            _rule("", ["pods"], ["list", "watch"]),
            _rule("", ["events"], ["create", "patch"]),
            _rule("autoscaling", ["horizontalpodautoscalers"], write),
            _rule("keda.sh", ["scaledobjects"], write),
            # executors with metrics.serviceMonitor (Prometheus Operator)
            _rule("monitoring.coreos.com", ["servicemonitors"], write),
            # autoscaler type wasmlet: the slice of Service <app> it writes, and the slices
            # of Service <app>-pods and of the activator it reads (and watches)
            _rule("discovery.k8s.io", ["endpointslices"], ["list", "watch", *write]),
            # kopf discovers served resources through the CRDs
            _rule("apiextensions.k8s.io", ["customresourcedefinitions"], ["get", "list", "watch"]),
        ],
    }


def cluster_role_binding() -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": _meta(NAME, False),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAME},
        "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}],
    }


_POD_NAMESPACE = {
    "name": "POD_NAMESPACE",
    "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
}
_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}
_POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 65532,  # the image runs as root (the container executor binds :80)
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _container(image: str, webhooks: bool) -> dict[str, Any]:
    args = ["kube", "operator", "--all-namespaces", "--liveness-port", str(HEALTH_PORT)]
    args += ["--metrics-listen", f"0.0.0.0:{METRICS_PORT}"]
    ports = [
        {"name": "health", "containerPort": HEALTH_PORT, "protocol": "TCP"},
        {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
    ]
    container: dict[str, Any] = {
        "name": "operator",
        "image": image,
        "args": args + (WEBHOOK_ARGS if webhooks else []),
        "env": [_POD_NAMESPACE],  # the activator runs in the operator's namespace
        "ports": ports
        + (
            [{"name": "webhook", "containerPort": WEBHOOK_PORT, "protocol": "TCP"}]
            if webhooks
            else []
        ),
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "health"},
            "initialDelaySeconds": 10,
            "periodSeconds": 20,
        },
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "1", "memory": "512Mi"},
        },
        "securityContext": dict(_SECURITY),
    }
    if webhooks:
        container["volumeMounts"] = [
            {"name": "webhook-tls", "mountPath": TLS_DIR, "readOnly": True}
        ]
    return container


def operator_deployment(image: str = DEFAULT_IMAGE, webhooks: bool = False) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "serviceAccountName": NAME,
        "securityContext": dict(_POD_SECURITY),
        "containers": [_container(image, webhooks)],
    }
    if webhooks:
        pod["volumes"] = [{"name": "webhook-tls", "secret": {"secretName": WEBHOOK_SECRET}}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(NAME),
        "spec": {
            "replicas": 1,  # kopf runs standalone: one operator at a time
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {"app.kubernetes.io/name": NAME}},
            "template": {
                "metadata": {
                    "labels": dict(LABELS),
                    # scraped as the apps' pods are (appmetrics.py)
                    "annotations": pod_annotations(ExecutorMetrics(port=METRICS_PORT)),
                },
                "spec": pod,
            },
        },
    }


# -- the activator ----------------------------------------------------------------------------

# The root filesystem is read-only: compiled components and pulled images go to an emptyDir
# (WASMLET_CACHE_DIR), the apps' state to another at /tmp (`kube activator --state-dir`).
ACTIVATOR_CACHE = "/var/cache/wasmlet"


def activator_service_account() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(ACTIVATOR_NAME, component=ACTIVATOR_NAME),
    }


def activator_cluster_role() -> dict[str, Any]:
    """Least privilege: read the apps it runs and what they reference, write their /scale."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": _meta(ACTIVATOR_NAME, False, component=ACTIVATOR_NAME),
        "rules": [
            _rule(GROUP, ["spinapps"], ["get", "list", "watch"]),
            _rule(GROUP, ["spinapps/scale"], ["get", "update", "patch"]),
            # the apps' variables (valueFrom) and runtime config
            _rule("", ["secrets", "configmaps"], ["get"]),
            # the addresses of the apps' pods, to read their load
            _rule("discovery.k8s.io", ["endpointslices"], ["get", "list", "watch"]),
            _rule("", ["events"], ["create"]),
        ],
    }


def activator_cluster_role_binding() -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": _meta(ACTIVATOR_NAME, False, component=ACTIVATOR_NAME),
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": ACTIVATOR_NAME,
        },
        "subjects": [{"kind": "ServiceAccount", "name": ACTIVATOR_NAME, "namespace": NAMESPACE}],
    }


def activator_deployment(image: str = DEFAULT_IMAGE) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "activator",
        "image": image,
        "args": ["kube", "activator", "--listen", f"0.0.0.0:{ACTIVATOR_PORT}"],
        "ports": [
            {"name": ACTIVATOR_PORT_NAME, "containerPort": ACTIVATOR_PORT, "protocol": "TCP"}
        ],
        "env": [_POD_NAMESPACE, {"name": "WASMLET_CACHE_DIR", "value": ACTIVATOR_CACHE}],
        "readinessProbe": {
            "httpGet": {"path": HEALTH_PATH, "port": ACTIVATOR_PORT},
            "periodSeconds": 5,
        },
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
        "securityContext": dict(_SECURITY),
        "volumeMounts": [
            {"name": "cache", "mountPath": ACTIVATOR_CACHE},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    pod: dict[str, Any] = {
        "serviceAccountName": ACTIVATOR_NAME,
        "securityContext": dict(_POD_SECURITY),
        "containers": [container],
        "volumes": [{"name": "cache", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}],
    }
    labels = _labels(ACTIVATOR_NAME)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(ACTIVATOR_NAME, component=ACTIVATOR_NAME),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/name": ACTIVATOR_NAME}},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }


def activator_service() -> dict[str, Any]:
    """The activator's Service: SpinApps in proxy mode route to its ready endpoints."""
    port = {
        "name": ACTIVATOR_PORT_NAME,
        "port": ACTIVATOR_PORT,
        "targetPort": ACTIVATOR_PORT_NAME,
        "protocol": "TCP",
    }
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(ACTIVATOR_NAME, component=ACTIVATOR_NAME),
        "spec": {"selector": {"app.kubernetes.io/name": ACTIVATOR_NAME}, "ports": [port]},
    }


def activator_objects(image: str = DEFAULT_IMAGE) -> list[dict[str, Any]]:
    return [
        activator_service_account(),
        activator_cluster_role(),
        activator_cluster_role_binding(),
        activator_deployment(image),
        activator_service(),
    ]


def webhook_service() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(WEBHOOK_SERVICE),
        "spec": {
            "selector": {"app.kubernetes.io/name": NAME},
            "ports": [{"name": "https", "port": 443, "targetPort": "webhook", "protocol": "TCP"}],
        },
    }


def certificates() -> list[dict[str, Any]]:
    """cert-manager issues the webhook's serving certificate and injects its CA."""
    return [
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "Issuer",
            "metadata": _meta("wasmlet-selfsigned"),
            "spec": {"selfSigned": {}},
        },
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "Certificate",
            "metadata": _meta(WEBHOOK_SERVICE),
            "spec": {
                "secretName": WEBHOOK_SECRET,
                "dnsNames": [
                    f"{WEBHOOK_SERVICE}.{NAMESPACE}.svc",
                    f"{WEBHOOK_SERVICE}.{NAMESPACE}.svc.cluster.local",
                ],
                "issuerRef": {"kind": "Issuer", "name": "wasmlet-selfsigned"},
            },
        },
    ]


def _webhook(name: str, path: str, plural: str, operations: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "failurePolicy": "Fail",
        "timeoutSeconds": 10,
        "clientConfig": {
            "service": {
                "name": WEBHOOK_SERVICE,
                "namespace": NAMESPACE,
                "path": f"/{path}",
                "port": 443,
            }
        },
        "rules": [
            {
                "apiGroups": [GROUP],
                "apiVersions": ["v1alpha1"],
                "operations": operations,
                "resources": [plural],
                "scope": "Namespaced",
            }
        ],
    }


def webhook_configurations() -> list[dict[str, Any]]:
    inject = {"cert-manager.io/inject-ca-from": f"{NAMESPACE}/{WEBHOOK_SERVICE}"}
    return [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": _meta("wasmlet-mutating", False, annotations=inject),
            "webhooks": [
                _webhook(
                    f"mspinapp.{GROUP}",
                    WEBHOOK_IDS["mutate_spinapp"],
                    "spinapps",
                    ["CREATE", "UPDATE"],
                )
            ],
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": _meta("wasmlet-validating", False, annotations=inject),
            "webhooks": [
                _webhook(
                    f"vspinapp.{GROUP}",
                    WEBHOOK_IDS["validate_spinapp"],
                    "spinapps",
                    ["CREATE", "UPDATE"],
                ),
                _webhook(
                    f"vspinappexecutor.{GROUP}",
                    WEBHOOK_IDS["validate_executor"],
                    "spinappexecutors",
                    ["CREATE", "UPDATE", "DELETE"],
                ),
            ],
        },
    ]


def runtime_class() -> dict[str, Any]:
    """wasmlet's own RuntimeClass (the containerd shim with handler `wasmlet`)."""
    return {
        "apiVersion": "node.k8s.io/v1",
        "kind": "RuntimeClass",
        "metadata": {"name": "wasmlet", "labels": dict(LABELS)},
        "handler": "wasmlet",
    }


def sample_executors(image: str = DEFAULT_IMAGE) -> list[dict[str, Any]]:
    """The executors users pick from: SpinKube's shim, wasmlet's shim, wasmlet in a container."""

    def executor(name: str, config: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/v1alpha1",
            "kind": "SpinAppExecutor",
            "metadata": {"name": name},
            "spec": {"createDeployment": True, "deploymentConfig": config},
        }

    return [
        executor("containerd-shim-spin", {"runtimeClassName": "wasmtime-spin-v2"}),
        executor("wasmlet-shim", {"runtimeClassName": "wasmlet"}),
        executor("wasmlet-container", {"spinImage": image, "installDefaultCACerts": True}),
    ]


def objects(
    image: str = DEFAULT_IMAGE, webhooks: bool = True, activator: bool = True
) -> list[dict[str, Any]]:
    """Everything `wasmlet kube install` applies, in apply order."""
    found = [namespace(), *crds(), service_account(), cluster_role(), cluster_role_binding()]
    if webhooks:
        found += [webhook_service(), *certificates()]
    found.append(operator_deployment(image, webhooks))
    if activator:
        found += activator_objects(image)
    if webhooks:
        found += webhook_configurations()
    return found


# -- the kustomize tree under deploy/ -------------------------------------------------------


def _kustomization(resources: list[str], **extra: Any) -> str:
    body = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": resources,
    } | extra
    return yaml.safe_dump(body, sort_keys=False)


def tree(image: str = DEFAULT_IMAGE) -> dict[str, str]:
    """Relative path -> file content of the kustomize bases."""
    files: dict[str, str] = {}

    def base(directory: str, named: dict[str, list[dict[str, Any]]], **extra: Any) -> None:
        for filename, objs in named.items():
            files[f"{directory}/{filename}"] = dump(objs)
        files[f"{directory}/kustomization.yaml"] = _kustomization(list(named), **extra)

    base("crds", {f"{GROUP}_{c['spec']['names']['plural']}.yaml": [c] for c in crds()})
    base(
        "rbac",
        {
            "service_account.yaml": [service_account()],
            "role.yaml": [cluster_role()],
            "role_binding.yaml": [cluster_role_binding()],
        },
    )
    base(
        "operator",
        {"namespace.yaml": [namespace()], "deployment.yaml": [operator_deployment(image)]},
    )
    base(
        "webhook",
        {
            "service.yaml": [webhook_service()],
            "certificate.yaml": certificates(),
            "manifests.yaml": webhook_configurations(),
        },
    )
    base(
        "activator",
        {
            "service_account.yaml": [activator_service_account()],
            "role.yaml": [activator_cluster_role()],
            "role_binding.yaml": [activator_cluster_role_binding()],
            "deployment.yaml": [activator_deployment(image)],
            "service.yaml": [activator_service()],
        },
    )
    base("runtimeclass", {"runtimeclass.yaml": [runtime_class()]})
    base("samples", {"executors.yaml": sample_executors(image)})
    with_webhooks = operator_deployment(image, webhooks=True)
    patch = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {"template": {"spec": with_webhooks["spec"]["template"]["spec"]}},
    }
    files["default/webhook_patch.yaml"] = dump([patch])
    files["default/kustomization.yaml"] = _kustomization(
        ["../crds", "../rbac", "../operator", "../activator", "../webhook"],
        patches=[{"path": "webhook_patch.yaml"}],
    )
    files["without-webhooks/kustomization.yaml"] = _kustomization(
        ["../crds", "../rbac", "../operator", "../activator"]
    )
    return files


HEADER = "# Generated by `python -m wasmlet.kube.install deploy`; do not edit.\n"


def write_tree(root: Path, image: str = DEFAULT_IMAGE) -> list[Path]:
    written = []
    for rel, content in tree(image).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(HEADER + content)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        sys.stdout.write(dump(objects()))
        return 0
    for path in write_tree(Path(args[0])):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
