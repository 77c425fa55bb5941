"""A small async Kubernetes client: server-side apply, get, list, delete, status patches.

The transport is kr8s (`kr8s.asyncio.api`): it finds credentials the way kubectl does
(kubeconfig, or the pod's service account in a cluster) and speaks plain REST, so the calls
here are exactly the API requests: `PATCH …?fieldManager=wasmlet-operator&force=true` with
`application/apply-patch+yaml` for apply.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from typing import Any

from . import API_VERSION, FIELD_MANAGER


@dataclass(frozen=True)
class Kind:
    api_version: str
    plural: str
    namespaced: bool = True


KINDS: dict[str, Kind] = {
    "SpinApp": Kind(API_VERSION, "spinapps"),
    "SpinAppExecutor": Kind(API_VERSION, "spinappexecutors"),
    "Deployment": Kind("apps/v1", "deployments"),
    "Service": Kind("v1", "services"),
    "Secret": Kind("v1", "secrets"),
    "ConfigMap": Kind("v1", "configmaps"),
    "Pod": Kind("v1", "pods"),
    "Event": Kind("v1", "events"),
    "Namespace": Kind("v1", "namespaces", namespaced=False),
    "ServiceAccount": Kind("v1", "serviceaccounts"),
    "EndpointSlice": Kind("discovery.k8s.io/v1", "endpointslices"),
    "HorizontalPodAutoscaler": Kind("autoscaling/v2", "horizontalpodautoscalers"),
    "ScaledObject": Kind("keda.sh/v1alpha1", "scaledobjects"),
    "ServiceMonitor": Kind("monitoring.coreos.com/v1", "servicemonitors"),
    "CustomResourceDefinition": Kind(
        "apiextensions.k8s.io/v1", "customresourcedefinitions", namespaced=False
    ),
    "ClusterRole": Kind("rbac.authorization.k8s.io/v1", "clusterroles", namespaced=False),
    "ClusterRoleBinding": Kind(
        "rbac.authorization.k8s.io/v1", "clusterrolebindings", namespaced=False
    ),
    "Role": Kind("rbac.authorization.k8s.io/v1", "roles"),
    "RoleBinding": Kind("rbac.authorization.k8s.io/v1", "rolebindings"),
    "MutatingWebhookConfiguration": Kind(
        "admissionregistration.k8s.io/v1", "mutatingwebhookconfigurations", namespaced=False
    ),
    "ValidatingWebhookConfiguration": Kind(
        "admissionregistration.k8s.io/v1", "validatingwebhookconfigurations", namespaced=False
    ),
    "RuntimeClass": Kind("node.k8s.io/v1", "runtimeclasses", namespaced=False),
    "Issuer": Kind("cert-manager.io/v1", "issuers"),
    "Certificate": Kind("cert-manager.io/v1", "certificates"),
}


class ApiError(Exception):
    """The API server refused a request."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


class KubeClient:
    """The handful of calls the operator and `wasmlet kube install --apply` make."""

    def __init__(self, api: Any, field_manager: str = FIELD_MANAGER) -> None:
        self._api = api
        self.field_manager = field_manager

    @classmethod
    async def connect(cls, url: str | None = None, **kwargs: Any) -> KubeClient:
        """`url=None`: kubeconfig / in-cluster service account, as kubectl finds them."""
        import kr8s.asyncio

        with warnings.catch_warnings():  # kr8s warns about server versions it has not tested
            warnings.simplefilter("ignore")
            api = await kr8s.asyncio.api(url=url, **kwargs)
        return cls(api)

    @staticmethod
    def _path(kind: str, name: str | None = None) -> tuple[str, str]:
        info = KINDS.get(kind)
        if info is None:
            raise ValueError(f"kind {kind!r} is not supported by this client")
        return info.api_version, info.plural if name is None else f"{info.plural}/{name}"

    async def _call(
        self,
        method: str,
        kind: str,
        namespace: str | None,
        name: str | None = None,
        suffix: str = "",
        **kwargs: Any,
    ) -> Any:
        from kr8s import ServerError

        version, url = self._path(kind, name)
        ns = namespace if KINDS[kind].namespaced else None
        try:
            async with self._api.call_api(
                method, version=version, namespace=ns, url=url + suffix, **kwargs
            ) as response:
                return response.json() if response.content else None
        except ServerError as e:
            status = e.response.status_code if e.response is not None else 0
            raise ApiError(status, str(e)) from None

    async def apply(self, obj: dict[str, Any], *, force: bool = True) -> dict[str, Any]:
        """Server-side apply `obj` (created if missing) as this client's field manager."""
        meta = obj["metadata"]
        params = {"fieldManager": self.field_manager}
        if force:
            params["force"] = "true"
        result = await self._call(
            "PATCH",
            obj["kind"],
            meta.get("namespace"),
            meta["name"],
            params=params,
            content=json.dumps(obj),
            headers={"Content-Type": "application/apply-patch+yaml"},
        )
        return result if isinstance(result, dict) else {}

    async def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] | None = await self._call("GET", kind, namespace, name)
        except ApiError as e:
            if e.status == 404:
                return None
            raise
        return obj

    async def list(
        self, kind: str, namespace: str | None, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        """The objects of `kind`; the API server filters them by `label_selector`."""
        params = {"labelSelector": label_selector} if label_selector else {}
        result = await self._call("GET", kind, namespace, params=params)
        return list((result or {}).get("items", []))

    async def delete(self, kind: str, namespace: str | None, name: str) -> bool:
        """Delete; False if it was not there (or its API is not installed)."""
        try:
            await self._call("DELETE", kind, namespace, name)
        except ApiError as e:
            if e.status == 404:
                return False
            raise
        return True

    async def patch_status(
        self, kind: str, namespace: str, name: str, status: dict[str, Any]
    ) -> None:
        """Merge-patch `.status` through the status subresource."""
        await self._call(
            "PATCH",
            kind,
            namespace,
            name,
            suffix="/status",
            content=json.dumps({"status": status}),
            headers={"Content-Type": "application/merge-patch+json"},
        )

    async def scale(self, kind: str, namespace: str, name: str, replicas: int) -> None:
        """Set the desired replicas through the `/scale` subresource (as HPA and KEDA do)."""
        await self._call(
            "PATCH",
            kind,
            namespace,
            name,
            suffix="/scale",
            content=json.dumps({"spec": {"replicas": replicas}}),
            headers={"Content-Type": "application/merge-patch+json"},
        )

    async def close(self) -> None:
        session = getattr(self._api, "_session", None)
        if session is not None:
            await session.aclose()
