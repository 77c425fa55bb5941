"""The operator's own Prometheus metrics (`wasmlet kube operator --metrics-listen ADDR`).

A registry of their own per operator (served by `observe.endpoint` in place of the runtime's,
which the operator has no use for), so several operators in one process (tests) never
share counts. Made only with the flag: without it nothing imports prometheus-client and the
controller checks one attribute that is None.

Reconciles are counted per resource kind: `SpinApp` (every reconcile of an app, whatever
event started it: its own, its Deployment's pods, its executor, the activator) and
`SpinAppExecutor` (a created or changed executor re-reconciling its apps, or a deletion
checked). Outcomes: `success`; `requeue` (done, and to be reconciled again at a set time:
the scale-down grace of autoscaler type wasmlet); `error`, with the error's reason in
`wasmlet_operator_reconcile_errors_total` (the Event reason, e.g. InvalidSpec or
MissingExecutor, or the exception's type for a failed API call).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Histogram

KINDS = ("SpinApp", "SpinAppExecutor")
OUTCOMES = ("success", "requeue", "error")
# A reconcile is a few API calls (milliseconds) up to reading an app's image from its
# registry (seconds) on a busy operator.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ReconcileMetrics:
    """Reconcile counts, durations and errors of one operator."""

    def __init__(self) -> None:
        import prometheus_client
        from prometheus_client import CollectorRegistry, Counter, Histogram

        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry: CollectorRegistry = CollectorRegistry()
        self._total: Counter = Counter(
            "wasmlet_operator_reconciles",
            "Reconciles by resource kind and outcome (success, requeue, error)",
            ("kind", "outcome"),
            registry=self.registry,
        )
        self._errors: Counter = Counter(
            "wasmlet_operator_reconcile_errors",
            "Failed reconciles by resource kind and reason (the Event reason, or the "
            "exception type of a failed API call)",
            ("kind", "reason"),
            registry=self.registry,
        )
        self._duration: Histogram = Histogram(
            "wasmlet_operator_reconcile_duration_seconds",
            "Time a reconcile took (waiting for its turn not included)",
            ("kind",),
            buckets=BUCKETS,
            registry=self.registry,
        )
        for kind in KINDS:  # every series from the start, so a rate() of 0 is 0, not absent
            self._duration.labels(kind)
            for outcome in OUTCOMES:
                self._total.labels(kind, outcome)

    @staticmethod
    def clock() -> float:
        return time.monotonic()

    def done(self, kind: str, started: float, requeue: bool = False) -> None:
        """A reconcile of `kind` that began at `started` (`clock()`) succeeded."""
        self._duration.labels(kind).observe(time.monotonic() - started)
        self._total.labels(kind, "requeue" if requeue else "success").inc()

    def failed(self, kind: str, started: float, reason: str) -> None:
        """A reconcile of `kind` that began at `started` failed with `reason`."""
        self._duration.labels(kind).observe(time.monotonic() - started)
        self._total.labels(kind, "error").inc()
        self._errors.labels(kind, reason).inc()
