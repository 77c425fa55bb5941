"""Metadata every object the operator creates for a SpinApp carries: labels and the owner
reference that lets garbage collection delete it with the SpinApp."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import APP_NAME_LABEL, FIELD_MANAGER
from .models import SpinApp


def owner_reference(app: SpinApp) -> dict[str, Any]:
    return {
        "apiVersion": app.api_version,
        "kind": "SpinApp",
        "name": app.name,
        "uid": str(app.metadata.get("uid", "")),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(
    app: SpinApp,
    name: str,
    annotations: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": app.namespace,
        "labels": {
            APP_NAME_LABEL: app.name,
            "app.kubernetes.io/managed-by": FIELD_MANAGER,
            **(labels or {}),
        },
        "ownerReferences": [owner_reference(app)],
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta
