"""The activator's scaling decision (kube/scaler.py), step by step in simulated time."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wasmlet.kube.scaler import Scaler, ScalerSettings

S = ScalerSettings(target=10, stable_window=60, panic_window=6, idle_grace=30, max_replicas=10)


def run(scaler: Scaler, load: float, seconds: int, start: float, current: int, ready: int) -> int:
    """`seconds` one-second samples of `load`; the last decision."""
    want = current
    for i in range(seconds):
        scaler.observe(start + i, load)
        want = scaler.decide(start + i, current, ready)
    return want


def test_light_load_stays_in_the_activator() -> None:
    scaler = Scaler(S)
    assert run(scaler, load=3, seconds=300, start=0, current=0, ready=0) == 0


def test_sustained_load_brings_pods() -> None:
    scaler = Scaler(S)
    assert run(scaler, load=25, seconds=120, start=0, current=0, ready=0) == 3  # ceil(25/10)


def test_a_burst_panics_up_and_does_not_scale_down_while_panicking() -> None:
    scaler = Scaler(S)
    run(scaler, load=0, seconds=60, start=0, current=0, ready=0)
    burst = run(scaler, load=80, seconds=4, start=60, current=0, ready=0)
    assert burst >= 4  # the 6 s window sees it before the 60 s one would
    after = run(scaler, load=1, seconds=10, start=64, current=burst, ready=burst)
    assert after >= burst  # still panicking: no scale-down


def test_idle_grace_then_zero() -> None:
    scaler = Scaler(ScalerSettings(target=10, stable_window=60, idle_grace=100))
    run(scaler, load=30, seconds=60, start=0, current=0, ready=0)  # last request at t=59
    # a whole stable window of zeros (t=60..129): one pod stays, the grace is not over …
    assert run(scaler, load=0, seconds=70, start=60, current=3, ready=3) == 1
    # … and once 100 s have passed without a request, none.
    assert run(scaler, load=0, seconds=25, start=130, current=1, ready=1) == 1  # t=154: 95 s
    assert run(scaler, load=0, seconds=10, start=155, current=1, ready=1) == 0  # t=164: 105 s


def test_pods_draining_at_zero_do_not_bring_it_back() -> None:
    """Once at zero, light load in the activator while the last pods drain (still ready in
    their EndpointSlice) is the activator's to carry: no flapping back to a pod."""
    scaler = Scaler(ScalerSettings(target=1, stable_window=6, idle_grace=2))
    assert run(scaler, load=0, seconds=10, start=0, current=1, ready=1) == 0
    assert run(scaler, load=0.5, seconds=10, start=10, current=0, ready=1) == 0
    assert run(scaler, load=3, seconds=10, start=20, current=0, ready=1) == 3  # real load: pods


def test_never_a_pod_with_max_zero_and_min_is_kept() -> None:
    alone = Scaler(ScalerSettings(max_replicas=0))
    assert run(alone, load=10_000, seconds=70, start=0, current=0, ready=0) == 0
    floor = Scaler(ScalerSettings(min_replicas=2, max_replicas=5))
    assert run(floor, load=0, seconds=400, start=0, current=2, ready=2) == 2
    ceiling = Scaler(ScalerSettings(max_replicas=5, target=1))
    assert run(ceiling, load=100, seconds=70, start=0, current=0, ready=0) == 5


def test_scale_down_is_rate_limited() -> None:
    scaler = Scaler(S)
    run(scaler, load=100, seconds=60, start=0, current=10, ready=10)
    # load drops to 1 pod's worth: at most halving per decision from 10 ready pods
    assert run(scaler, load=5, seconds=70, start=60, current=10, ready=10) == 5


def test_from_autoscaler_spec() -> None:
    class A:
        min_replicas = None
        max_replicas = 4
        target_concurrency = 7
        stable_window_seconds = 30
        panic_window_percentage = 20
        panic_threshold_percentage = 300

        class scale_to_zero:
            cooldown_period_seconds = 45

    s = ScalerSettings.from_autoscaler(A)
    assert (s.min_replicas, s.max_replicas, s.target) == (0, 4, 7.0)
    assert (s.stable_window, s.panic_window, s.panic_threshold, s.idle_grace) == (30, 6, 3, 45)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(0, 500, allow_nan=False), min_size=1, max_size=200),
    st.integers(0, 5),
    st.integers(0, 20),
)
def test_decisions_stay_within_bounds(loads: list[float], low: int, high: int) -> None:
    high = max(low, high)
    scaler = Scaler(ScalerSettings(min_replicas=low, max_replicas=high))
    current = ready = low
    for t, load in enumerate(loads):
        scaler.observe(float(t), load)
        current = scaler.decide(float(t), current, ready)
        assert low <= current <= high or (high == 0 and current == 0)
        ready = current


@pytest.mark.parametrize("ready", [1, 4])
def test_pods_stay_while_there_is_any_load(ready: int) -> None:
    scaler = Scaler(S)
    assert run(scaler, load=0.5, seconds=400, start=0, current=ready, ready=ready) >= 1
