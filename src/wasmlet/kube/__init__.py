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

#: Kubernetes versions every generated object is validated against (see tests/test_kube_*).
VALIDATED_KUBERNETES = "1.32.0"

#: The image of wasmlet itself: the operator, and the container executor's `wasmlet up`.
#: Tagged with this package's version, so the operator deploys the release it belongs to.
DEFAULT_IMAGE = f"ghcr.io/wasmlet/wasmlet:{__version__}"


def ready_label(app: str) -> str:
    """The label the Service selects on; SpinKube's `core.spinkube.dev/app.<app>.status`."""
    return f"{GROUP}/app.{app}.status"
