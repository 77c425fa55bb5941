"""An in-memory Kubernetes API for tests and benchmarks: kmock, plus what an operator needs.

No kube-apiserver can run on the machines this project is built on, so the operator is
exercised end to end against `kmock.KubernetesEmulator` (by kopf's author), which serves
discovery, CRUD, watches and finalizers. This subclass adds the API-server behaviour kmock
leaves out and the operator depends on:

* `metadata.uid`, `resourceVersion`, `generation`, `creationTimestamp` on create;
* server-side apply (`PATCH` with `application/apply-patch+yaml`): create if missing, else
  replace the applied fields and keep `status` and server-set metadata;
* garbage collection: deleting an object deletes what names it in `ownerReferences`, and an
  object written with owners none of which exists (any more) is deleted right after the write
  (the GC controller's "absent owner" rule: a write racing its owner's deletion);
* `labelSelector` on list requests (`a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`,
  `a notin (x,y)`, comma-separated; 400 for a selector that does not parse), so clients
  rely on the server's filtering as they would on a real cluster. Watches are not filtered.

It does *not* emulate admission, field ownership conflicts, schema validation, pods or
controllers (no EndpointSlice controller: tests write `discovery.k8s.io/v1` EndpointSlices
themselves, as it would); the tests validate objects against the real schemas separately.
Test and bench infrastructure (it imports kmock's internals), not product code: tests import it as
`support.kube_emulator` (tests/ is on their path), bench/kube.py puts tests/ on sys.path.
"""

from __future__ import annotations

import contextvars
import copy
import datetime
import itertools
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import aiohttp.web
import kmock
from kmock._internal import enums, rendering

VERBS = {"get", "list", "watch", "create", "update", "patch", "delete"}


def _info(kind: str, namespaced: bool = True, *subresources: str) -> kmock.ResourceInfo:
    return kmock.ResourceInfo(
        kind=kind, namespaced=namespaced, verbs=VERBS, subresources=set(subresources)
    )


RESOURCES: dict[str, kmock.ResourceInfo] = {
    "v1/namespaces": _info("Namespace", False),
    "v1/secrets": _info("Secret"),
    "v1/services": _info("Service"),
    "v1/configmaps": _info("ConfigMap"),
    "v1/pods": _info("Pod", True, "status"),
    "v1/events": _info("Event"),
    "v1/serviceaccounts": _info("ServiceAccount"),
    "apps/v1/deployments": _info("Deployment", True, "status", "scale"),
    "discovery.k8s.io/v1/endpointslices": _info("EndpointSlice"),
    "autoscaling/v2/horizontalpodautoscalers": _info("HorizontalPodAutoscaler"),
    "apiextensions.k8s.io/v1/customresourcedefinitions": _info("CustomResourceDefinition", False),
    "rbac.authorization.k8s.io/v1/clusterroles": _info("ClusterRole", False),
    "rbac.authorization.k8s.io/v1/clusterrolebindings": _info("ClusterRoleBinding", False),
    "admissionregistration.k8s.io/v1/mutatingwebhookconfigurations": _info(
        "MutatingWebhookConfiguration", False
    ),
    "admissionregistration.k8s.io/v1/validatingwebhookconfigurations": _info(
        "ValidatingWebhookConfiguration", False
    ),
    "core.spinkube.dev/v1alpha1/spinapps": _info("SpinApp", True, "status", "scale"),
    "core.spinkube.dev/v1alpha1/spinappexecutors": _info("SpinAppExecutor", True, "status"),
}
KEDA = {"keda.sh/v1alpha1/scaledobjects": _info("ScaledObject")}
_current: contextvars.ContextVar[rendering.Request | None] = contextvars.ContextVar(
    "kmock_request", default=None
)


class _CurrentRequestOnly(list):  # type: ignore[type-arg]
    """A request log that records nothing and shows only the request being handled."""

    def __init__(self) -> None:
        super().__init__()
        self._count = 0

    def append(self, item: Any) -> None:
        self._count += 1

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Any:
        current = _current.get()
        return iter([] if current is None else [current])


_REQUIREMENT = re.compile(
    r"""\s*(?:
        !\s*(?P<absent>[\w./-]+)                             # !key
      | (?P<key>[\w./-]+)\s*(?:
            (?P<op>==|=|!=)\s*(?P<value>[\w.-]*)            # key=value, key==value, key!=value
          | \s(?P<set>in|notin)\s*\((?P<values>[^()]*)\)    # key in (a,b), key notin (a,b)
        )?                                                  # or only key: it exists
    )\s*""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Requirement:
    """One requirement of a label selector, with the API server's semantics."""

    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        match self.op:
            case "exists":
                return self.key in labels
            case "!":
                return self.key not in labels
            case "=" | "in":
                return value in self.values
            case _:  # "!=" and "notin" also match objects without the label
                return value not in self.values


def parse_selector(selector: str) -> list[Requirement]:
    """`a=b,c!=d,e,!f,g in (h,i)` -> requirements; ValueError if it does not parse."""
    if not selector.strip():
        return []
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(selector):  # split on commas outside `( )`
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(selector[start:i])
            start = i + 1
    parts.append(selector[start:])
    requirements = []
    for part in parts:
        m = _REQUIREMENT.fullmatch(part)
        if m is None:
            raise ValueError(f"unable to parse requirement: {part.strip()!r}")
        if m["absent"]:
            requirements.append(Requirement(m["absent"], "!"))
        elif m["op"]:
            op = "!=" if m["op"] == "!=" else "="
            requirements.append(Requirement(m["key"], op, frozenset([m["value"]])))
        elif m["set"]:
            values = frozenset(v.strip() for v in m["values"].split(","))
            requirements.append(Requirement(m["key"], m["set"], values))
        else:
            requirements.append(Requirement(m["key"], "exists"))
    return requirements


_SERVER_META = ("uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp")


class ApiServer(kmock.KubernetesEmulator):  # type: ignore[misc]
    """kmock's emulator with uids, server-side apply and owner-reference GC."""

    #: keep past requests for assertions (kmock's `api["patch"]` views); see forget_requests()
    keep_history: bool = True

    def forget_requests(self) -> None:
        """Stop recording requests (for benchmarks).

        kmock matches every request against every recorded one (and every one in flight), so a
        long run with many concurrent requests turns quadratic. After this, kmock's request
        views show only the request being handled.
        """
        self.keep_history = False
        self._requests = _CurrentRequestOnly()

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._versions = itertools.count(1)
        self.fallback["get /version/"] << self._serve_server_version  # kr8s asks with a slash
        for name, info in RESOURCES.items():
            self.resources[name] = info

    def install_keda(self) -> None:
        for name, info in KEDA.items():
            self.resources[name] = info

    def _stamp(self, obj: dict[str, Any]) -> None:
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("generation", 1)
        meta.setdefault("creationTimestamp", datetime.datetime.now(datetime.UTC).isoformat())
        meta["resourceVersion"] = str(next(self._versions))

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        _current.set(request)
        return await self._handle_k8s(request)

    async def _handle_k8s(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if request.resource is None:
            return await super()._handle(request)
        content_type = {k.lower(): v for k, v in request.headers.items()}.get("content-type", "")
        writes = request.action == enums.action.CREATE or "apply-patch" in content_type
        if writes and not any(known == request.resource for known in self.resources):
            raise kmock.KubernetesResourceNotFoundError()  # e.g. KEDA's CRDs not installed
        if request.method == enums.method.PATCH and "apply-patch" in content_type:
            return await self._apply(request)
        if request.action == enums.action.FETCH and request.name and not request.subresource:
            key = (request.resource, request.namespace, request.name)
            if key in self.objects and not self.objects[key].deleted:  # O(1), not kmock's scan
                return aiohttp.web.json_response(self.objects[key].raw)
            raise kmock.KubernetesObjectNotFoundError()
        if request.action == enums.action.CREATE and isinstance(request.data, dict):
            self._stamp(request.data)
        elif request.action == enums.action.UPDATE and isinstance(request.data, dict):
            request.data.setdefault("metadata", {})["resourceVersion"] = str(next(self._versions))
        response = await super()._handle(request)
        key = (request.resource, request.namespace, request.name)
        gone = key in self.objects and self.objects[key].deleted
        if gone and request.action in (enums.action.DELETE, enums.action.UPDATE):
            await self._collect_garbage()
        if request.action == enums.action.CREATE:
            await self._collect_if_orphaned(self._key(request))
        self._trim(request)
        return response

    async def _serve_list(self, request: rendering.Request) -> Any:
        try:
            requirements = parse_selector(request.params.get("labelSelector", ""))
        except ValueError as e:  # the API server's answer to a malformed selector
            raise kmock.KubernetesError(status=400, reason="BadRequest", message=str(e)) from None
        result = cast(dict[str, Any], await super()._serve_list(request))
        if requirements:
            result["items"] = [
                item
                for item in result["items"]
                if all(
                    r.matches((item.get("metadata") or {}).get("labels") or {})
                    for r in requirements
                )
            ]
        return result

    # kmock finds the object of a create/update/delete response by scanning every object;
    # these look it up by key (the same result, O(1)).
    def _key(self, request: rendering.Request) -> Any:
        data = request.data if isinstance(request.data, dict) else {}
        meta = data.get("metadata") or {}
        return (
            request.resource,
            request.namespace or meta.get("namespace"),
            request.name or meta.get("name"),
        )

    async def _serve_create(self, request: rendering.Request) -> Any:
        return self.objects[self._key(request)].raw

    async def _serve_update(self, request: rendering.Request) -> Any:
        return self.objects[self._key(request)].last.raw

    async def _serve_delete(self, request: rendering.Request) -> Any:
        return self.objects[self._key(request)].last.raw

    def _trim(self, request: rendering.Request) -> None:
        """Keep only the latest version of each object (memory stays flat in benchmarks)."""
        key = (request.resource, request.namespace, request.name)
        if request.name is not None and key in self.objects:
            obj = self.objects[key]
            if len(obj.history) > 2:
                obj.history = obj.history[-1:]

    async def _apply(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        key = (request.resource, request.namespace, request.name)
        new = copy.deepcopy(request.data)
        new.setdefault("metadata", {}).setdefault("namespace", request.namespace)
        async with self._lock:
            if key not in self.objects or self.objects[key].deleted:
                self._stamp(new)
                if key in self.objects:
                    self.objects[key].create(new)
                else:
                    self.objects[key] = new
                event = "ADDED"
            else:
                old = self.objects[key].raw
                meta = new["metadata"]
                for field in _SERVER_META:
                    if field in old.get("metadata", {}):
                        meta[field] = old["metadata"][field]
                if "status" in old and "status" not in new:
                    new["status"] = old["status"]
                if old.get("spec") != new.get("spec"):
                    meta["generation"] = int(meta.get("generation", 1)) + 1
                meta["resourceVersion"] = str(next(self._versions))
                self.objects[key].history = [new]
                event = "MODIFIED"
            raw = self.objects[key].raw
            await self._buses[request.resource].put({"type": event, "object": raw})
        await self._collect_if_orphaned(key)
        return aiohttp.web.json_response(raw)

    def _object(self, key: Any) -> Any:
        """The stored object at `key`, or None (kmock's ObjectsArray has no `get`)."""
        if key not in self.objects:
            return None
        return self.objects[key]

    def _owner_alive(self, namespace: str | None, ref: Mapping[str, Any]) -> bool:
        group, _, version = str(ref.get("apiVersion", "")).rpartition("/")
        for resource, info in self.resources.items():
            if info.kind == ref.get("kind") and (resource.group, resource.version) == (
                group,
                version,
            ):
                key = (resource, namespace if info.namespaced else None, ref.get("name"))
                owner = self._object(key)
                return (
                    owner is not None
                    and not owner.deleted
                    and owner.raw.get("metadata", {}).get("uid") == ref.get("uid")
                )
        return True  # a kind this server does not serve: not ours to judge

    async def _collect_if_orphaned(self, key: Any) -> None:
        """Delete a just-written object whose owners are all gone (O(1), unlike a full GC)."""
        async with self._lock:
            obj = self._object(key)
            if obj is None or obj.deleted:
                return
            owners = obj.raw.get("metadata", {}).get("ownerReferences") or []
            if not owners or any(self._owner_alive(key[1], o) for o in owners):
                return
            raw = obj.raw
            obj.delete()
            await self._buses[key[0]].put({"type": "DELETED", "object": raw})

    async def _collect_garbage(self) -> None:
        """Delete objects whose owners are all gone (the API server's GC controller)."""
        while True:
            async with self._lock:
                alive = {
                    obj.raw.get("metadata", {}).get("uid")
                    for obj in self.objects.values()
                    if not obj.deleted
                }
                orphans = [
                    (key, obj)
                    for key, obj in self.objects.items()
                    if not obj.deleted
                    and (owners := obj.raw.get("metadata", {}).get("ownerReferences"))
                    and not any(o.get("uid") in alive for o in owners)
                ]
                for (resource, _, _), obj in orphans:
                    raw = obj.raw
                    obj.delete()
                    await self._buses[resource].put({"type": "DELETED", "object": raw})
            if not orphans:
                return
