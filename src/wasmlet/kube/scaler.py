"""How many pods an app should have: the wasmlet activator's scaling decision (pure).

After Knative's KPA (see ../shared/reference/scale-to-zero.md): the activator samples each
app's concurrency (requests in flight, in the activator and in the app's pods) about once a
second; the desired pod count is the average over a stable window (60 s) divided by the target
concurrency per pod, or, when the short panic window (6 s) shows a burst of at least twice
what the ready pods are meant to carry, the panic window's count, never scaling down while
panicking. Scale-up and scale-down rates are bounded.

What differs from Knative, because the activator runs the app itself: from zero pods, load
that the activator carries does not need a pod. Pods come only once the activator has carried
`activation` pods' worth of concurrency over the stable window (or in a panic); an app that
never sees that much load never gets a pod. Pods still ready once the app is at zero are
draining and count for nothing. And the last pod goes only after `idle_grace` seconds without
any request.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ScalerSettings:
    min_replicas: int = 0
    max_replicas: int = 10  # 0: the activator alone serves the app, never a pod
    target: float = 10.0  # requests in flight per pod
    stable_window: float = 60.0  # seconds
    panic_window: float = 6.0  # seconds
    panic_threshold: float = 2.0  # panic at this multiple of what the ready pods should carry
    idle_grace: float = 300.0  # seconds without a request before the last pod goes
    activation: float = 1.0  # pods' worth of load the activator carries before pods come
    max_scale_up_rate: float = 1000.0  # at most this many times the ready pods
    max_scale_down_rate: float = 2.0  # at least the ready pods divided by this

    @classmethod
    def from_autoscaler(cls, autoscaler: Any) -> ScalerSettings:
        """From a SpinApp's `spec.autoscaler` (type wasmlet)."""
        stable = float(getattr(autoscaler, "stable_window_seconds", 60))
        idle = getattr(getattr(autoscaler, "scale_to_zero", None), "cooldown_period_seconds", None)
        return cls(
            min_replicas=int(getattr(autoscaler, "min_replicas", None) or 0),
            max_replicas=int(autoscaler.max_replicas),
            target=float(getattr(autoscaler, "target_concurrency", 10)),
            stable_window=stable,
            panic_window=stable * float(getattr(autoscaler, "panic_window_percentage", 10)) / 100,
            panic_threshold=float(getattr(autoscaler, "panic_threshold_percentage", 200)) / 100,
            idle_grace=float(idle if idle is not None else 300),
        )


class Scaler:
    """One app's samples and decisions."""

    def __init__(self, settings: ScalerSettings) -> None:
        self.settings = settings
        self._samples: deque[tuple[float, float]] = deque()
        self._last_active: float | None = None  # when concurrency was last above zero
        self._panic_since: float | None = None  # when the current panic last had cause
        self._last: int = 0  # the last decision

    def observe(self, now: float, concurrency: float) -> None:
        """One sample: requests in flight now (activator and pods together)."""
        self._samples.append((now, concurrency))
        if concurrency > 0:
            self._last_active = now
        horizon = now - self.settings.stable_window
        while self._samples and self._samples[0][0] < horizon:
            self._samples.popleft()

    def _average(self, now: float, window: float) -> float:
        values = [c for t, c in self._samples if t >= now - window]
        return sum(values) / len(values) if values else 0.0

    def decide(self, now: float, current: int, ready: int) -> int:
        """The pod count the app should have, given `current` desired and `ready` pods."""
        s = self.settings
        if current == 0:
            ready = 0  # pods still ready at zero are draining: the activator carries the app
        if s.max_replicas <= 0:
            self._last = 0
            return 0
        stable = self._average(now, s.stable_window)
        panic = self._average(now, s.panic_window)
        stable_want = math.ceil(stable / s.target)
        panic_want = math.ceil(panic / s.target)
        if panic / s.target >= s.panic_threshold * max(ready, 1):
            self._panic_since = now
        panicking = self._panic_since is not None and now - self._panic_since < s.stable_window
        want = max(panic_want, self._last) if panicking else stable_want
        if current == 0 and not panicking and stable < s.activation * s.target:
            want = 0  # the activator carries this much itself
        if want == 0 and current > 0:
            idle_for = now - self._last_active if self._last_active is not None else math.inf
            if idle_for < s.idle_grace:
                want = 1  # the last pod stays until the app has been idle long enough
        if ready > 0:
            want = min(want, math.ceil(ready * s.max_scale_up_rate))
            want = max(want, math.floor(ready / s.max_scale_down_rate))
        want = max(s.min_replicas, min(want, s.max_replicas))
        self._last = want
        return want
