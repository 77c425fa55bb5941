"""Scale to zero with the activator (`spec.autoscaler.type: wasmlet`): where Service `<app>`
routes, and what the Deployment's replica count may be right now. Pure: nothing here talks
to the cluster; `reconcile` turns a `Plan` into objects, `controller` gathers what it reads.

Knative's serverless-service pattern (see docs/kubernetes.md): Service `<app>` has no
selector, and the operator writes its one EndpointSlice `<app>-wasmlet` itself. **Serve
mode:** the ready endpoints of Service `<app>-pods` (an ordinary Service selecting the app's
ready pods). **Proxy mode:** the ready endpoints of the shared activator's Service, which runs
the app itself while it has no ready pod.

The order of a flip is what keeps requests from failing:

* up (`spec.replicas` > 0): the Deployment scales first; the slice stays in proxy mode until a
  pod endpoint is ready, then switches to serve mode;
* down to zero: the slice switches to proxy mode first; the Deployment goes to zero only once
  the slice has been in proxy mode for `GRACE_SECONDS` (kube-proxy and anything else reading
  EndpointSlices need a moment to follow), counted from `status.servedBySince`;
* never away from the last ready pods while no activator endpoint is ready: nothing else
  could answer, so the pods keep serving (and the Deployment keeps them) until one is.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .models import Autoscaler, SpinApp

#: Seconds between moving an app's traffic to the activator and removing its last pods.
GRACE_SECONDS = 5.0
#: The EndpointSlice the operator writes for Service `<app>` is `<app><SLICE_SUFFIX>`.
SLICE_SUFFIX = "-wasmlet"
#: The port of Service `<app>` (and of the slice's endpoints) is named this.
PUBLIC_PORT_NAME = "http"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
ROLE_LABEL = "app.kubernetes.io/component"
#: ROLE_LABEL of Service `<app>-pods`; Kubernetes copies a Service's labels onto the
#: EndpointSlices it manages for it, which is how the operator's watch finds them.
PODS_ROLE = "pods"
MAX_ENDPOINTS = 1000  # an EndpointSlice holds at most 1000 endpoints

ServedBy = Literal["activator", "pods"]
ACTIVATOR: ServedBy = "activator"
PODS: ServedBy = "pods"


def is_wasmlet(app: SpinApp) -> bool:
    """Whether the activator routes and scales `app` (what admission insists on for it)."""
    auto = app.spec.autoscaler
    return bool(app.spec.enable_autoscaling and auto is not None and auto.type == "wasmlet")


def slice_name(app: str) -> str:
    return f"{app}{SLICE_SUFFIX}"


def bounds(autoscaler: Autoscaler) -> tuple[int, int]:
    """(minReplicas, maxReplicas) of a type wasmlet autoscaler; minReplicas defaults to 0."""
    minimum = autoscaler.min_replicas if autoscaler.min_replicas is not None else 0
    return minimum, autoscaler.max_replicas


def desired_replicas(app: SpinApp) -> int:
    """`spec.replicas` (unset: minReplicas) within [minReplicas, maxReplicas]; maxReplicas
    wins when the two cross, so maxReplicas 0 always means no pods."""
    auto = app.spec.autoscaler
    if auto is None:
        return app.spec.replicas if app.spec.replicas is not None else 1
    minimum, maximum = bounds(auto)
    wanted = app.spec.replicas if app.spec.replicas is not None else minimum
    return min(max(wanted, minimum), maximum)


def format_time(when: datetime.datetime) -> str:
    """RFC 3339 in UTC with milliseconds (the grace is counted in fractions of a second)."""
    text = when.astimezone(datetime.UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def parse_time(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=datetime.UTC)


def _ready(endpoint: Mapping[str, Any]) -> bool:
    # EndpointConditions.ready: "a nil value should be interpreted as true" (as kube-proxy does)
    return (endpoint.get("conditions") or {}).get("ready") is not False


def address_type(*groups: Sequence[Mapping[str, Any]]) -> str:
    """The address family the slice uses: that of the ready endpoints (IPv4 first), else of
    any slice seen, else IPv4. Service `<app>` is single-stack."""
    slices = [s for group in groups for s in group]
    for wanted_ready in (True, False):
        for family in ("IPv4", "IPv6"):
            for s in slices:
                if s.get("addressType") != family:
                    continue
                if not wanted_ready or any(
                    _ready(e) and e.get("addresses") for e in s.get("endpoints") or []
                ):
                    return family
    return "IPv4"


def ready_endpoints(slices: Sequence[Mapping[str, Any]], family: str) -> list[dict[str, Any]]:
    """The ready endpoints of `slices` in `family`, as endpoints of the operator's slice:
    deduplicated, sorted (no churn from list order), at most MAX_ENDPOINTS."""
    found: dict[tuple[str, ...], dict[str, Any]] = {}
    for s in slices:
        if s.get("addressType") != family:
            continue
        for endpoint in s.get("endpoints") or []:
            addresses = tuple(endpoint.get("addresses") or ())
            if not addresses or not _ready(endpoint) or addresses in found:
                continue
            copied: dict[str, Any] = {"addresses": list(addresses), "conditions": {"ready": True}}
            for key in ("nodeName", "zone", "targetRef"):
                if endpoint.get(key):
                    copied[key] = endpoint[key]
            found[addresses] = copied
    return [found[key] for key in sorted(found)][:MAX_ENDPOINTS]


@dataclass(frozen=True)
class Observed:
    """What the cluster looks like for one app right now."""

    pod_slices: Sequence[Mapping[str, Any]] = ()  # EndpointSlices of Service <app>-pods
    activator_slices: Sequence[Mapping[str, Any]] = ()  # EndpointSlices of the activator
    deployment_replicas: int | None = None  # the Deployment's spec.replicas (None: none)
    served_by: str | None = None  # status.servedBy
    since: datetime.datetime | None = None  # status.servedBySince

    @classmethod
    def from_status(cls, app: SpinApp, **kwargs: Any) -> Observed:
        status = app.status
        return cls(
            served_by=status.served_by if status else None,
            since=parse_time(status.served_by_since) if status else None,
            **kwargs,
        )


@dataclass(frozen=True)
class Plan:
    """Where Service `<app>` routes and what the Deployment's replicas are, for now."""

    served_by: ServedBy
    address_type: str
    endpoints: list[dict[str, Any]]
    wanted: int  # desired_replicas(app)
    deployment_replicas: int
    since: datetime.datetime | None  # when served_by took this value
    requeue_after: float | None  # reconcile again after this many seconds (the grace)
    activator_ready: bool  # at least one activator endpoint is ready

    @property
    def needs_activator(self) -> bool:
        """It serves the app, or should take over from the pods."""
        return self.served_by == ACTIVATOR or self.wanted == 0

    def status(self) -> dict[str, Any]:
        return {
            "servedBy": self.served_by,
            "servedBySince": format_time(self.since) if self.since is not None else None,
        }


#: What a SpinApp's status holds about routing when the activator does not route it.
NO_ROUTING_STATUS: dict[str, Any] = {"servedBy": None, "servedBySince": None}


def plan(
    app: SpinApp,
    observed: Observed = Observed(),
    now: datetime.datetime | None = None,
    grace: float = GRACE_SECONDS,
) -> Plan:
    """The routing and the Deployment's replicas for `app` (see the module's docstring)."""
    want = desired_replicas(app)
    family = address_type(observed.pod_slices, observed.activator_slices)
    pods = ready_endpoints(observed.pod_slices, family)
    activator = ready_endpoints(observed.activator_slices, family)
    current = observed.deployment_replicas or 0
    # pods serve when wanted, and hold on while no activator endpoint could take over
    hold = current > 0 and not activator
    served_by: ServedBy = PODS if pods and (want > 0 or hold) else ACTIVATOR
    unchanged = observed.served_by == served_by and observed.since is not None
    since = observed.since if unchanged else now
    requeue: float | None = None
    if want > 0:
        replicas = want  # up: the Deployment first, the slice follows its ready endpoints
    elif served_by == PODS or current == 0:
        replicas = current
    else:
        elapsed = (now - since).total_seconds() if unchanged and now and since else 0.0
        if elapsed >= grace:
            replicas = 0
        else:
            replicas, requeue = current, grace - elapsed
    return Plan(
        served_by=served_by,
        address_type=family,
        endpoints=pods if served_by == PODS else activator,
        wanted=want,
        deployment_replicas=replicas,
        since=since,
        requeue_after=requeue,
        activator_ready=bool(activator),
    )
