"""Kubernetes support: SpinKube-compatible CRDs, a kopf operator, scaffolding, install manifests.

The API is SpinKube's (`core.spinkube.dev/v1alpha1` SpinApp and SpinAppExecutor) so existing
manifests apply unchanged. Everything that decides *what* to create is a pure function
(`reconcile`, `admission`, `autoscaling`, `scaffold`, `install`); `operator` is the thin kopf
layer that reads and writes the cluster through `client`.
"""

from __future__ import annotations

from .. import __version__

GROUP = "core.spinkube.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

FIELD_MANAGER = "wasmlet-operator"
FINALIZER = f"{GROUP}/finalizer"
APP_NAME_LABEL = f"{GROUP}/app-name"

#: The namespace `wasmlet kube install` puts the operator and the activator in.
DEFAULT_NAMESPACE = "wasmlet-system"

#: The shared activator (`wasmlet kube activator`): Deployment, Service, ServiceAccount and
#: ClusterRole are all named ACTIVATOR_NAME, in the operator's namespace. It serves apps with
#: `spec.autoscaler.type: wasmlet` while they have no ready pod, on ACTIVATOR_PORT (port name
#: ACTIVATOR_PORT_NAME), and answers readiness probes at HEALTH_PATH.
ACTIVATOR_NAME = "wasmlet-activator"
ACTIVATOR_PORT = 8080
ACTIVATOR_PORT_NAME = "http"
HEALTH_PATH = "/.well-known/spin/health"

#: The label Kubernetes puts on every EndpointSlice, naming its Service.
SERVICE_NAME_LABEL = "kubernetes.io/service-name"

#: Kubernetes versions every generated object is validated against (see tests/test_kube_*).
VALIDATED_KUBERNETES = "1.32.0"

#: The image of wasmlet itself: the operator, and the container executor's `wasmlet up`.
#: Tagged with this package's version, so the operator deploys the release it belongs to.
DEFAULT_IMAGE = f"ghcr.io/wasmlet/wasmlet:{__version__}"


def ready_label(app: str) -> str:
    """The label the Service selects on; SpinKube's `core.spinkube.dev/app.<app>.status`."""
    return f"{GROUP}/app.{app}.status"


def pods_service(app: str) -> str:
    """The Service selecting an activator-routed app's ready pods (`<app>-pods`); its
    EndpointSlices carry `kubernetes.io/service-name: <app>-pods`."""
    return f"{app}-pods"
