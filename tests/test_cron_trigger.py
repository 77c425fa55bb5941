"""The cron trigger: expressions as Spin's cron plugin reads them (table tests of the
translation to croniter), the catch-up rule, and `wasmlet up` as a real process running a
componentize-py component built on the plugin's WIT (guests/components/python-cron/), which
prints each tick's timestamp and stores it in key-value."""

from __future__ import annotations

import itertools
import re
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.component_guests import component
from support.server import run_cli, start_server, write_app
from support.triggers import Up

from wasmlet.trigger.cron import catch_up
from wasmlet.trigger.cron_schedule import CronError, parse, translate

NOW = datetime(2025, 1, 1, tzinfo=UTC).timestamp()  # a Wednesday


def ts(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


# --- the expression: the plugin's syntax, croniter's iteration -------------------------------


@pytest.mark.parametrize(
    ("expression", "croniter"),
    [
        ("1/2 * * * * *", "1/2 * * * * *"),  # the plugin's README example
        ("0 1/2 11,12 5-10 * *", "0 1/2 11,12 5-10 * *"),
        # Days of the week: the plugin's 1-7 from Sunday become croniter's 0-6 from Sunday.
        ("0 0 0 * * 1", "0 0 0 * * 0"),
        ("0 0 0 * * 7", "0 0 0 * * 6"),
        ("0 0 0 * * 2-6", "0 0 0 * * 1,2,3,4,5"),
        ("0 0 0 * * 1,7", "0 0 0 * * 0,6"),
        ("0 0 0 * * */2", "0 0 0 * * 0,2,4,6"),  # 1,3,5,7: Sun, Tue, Thu, Sat
        ("0 0 0 * * 2/2", "0 0 0 * * 1,3,5"),  # 2 to the end, every 2: Mon, Wed, Fri
        ("0 0 0 * * 2-7/3", "0 0 0 * * 1,4"),
        ("0 0 0 * * Sun", "0 0 0 * * 0"),
        ("0 0 0 * * MON-fri", "0 0 0 * * 1,2,3,4,5"),
        ("0 0 0 * * Tues,Thurs,Saturday", "0 0 0 * * 2,4,6"),
        ("0 0 0 * * *", "0 0 0 * * *"),
        ("0 0 0 * * ?", "0 0 0 * * *"),
        ("0 0 0 * * 1-7", "0 0 0 * * *"),
        ("0 0 0 ? * 2", "0 0 0 * * 1"),
        # Month names become numbers; the year field passes through.
        ("0 0 0 1 Jan-March *", "0 0 0 1 1-3 *"),
        ("0 0 0 1 jan,dec * 2030", "0 0 0 1 1,12 * 2030"),
        ("0 0 0 1 * * 2030-2035/2", "0 0 0 1 * * 2030-2035/2"),
        # Shorthands, as the cron crate defines them (@weekly: Sunday).
        ("@weekly", "0 0 0 * * 0"),
        ("@hourly", "0 0 * * * *"),
        ("  @DAILY ", "0 0 0 * * *"),
    ],
)
def test_translation_for_croniter(expression: str, croniter: str) -> None:
    assert translate(expression) == croniter


@pytest.mark.parametrize(
    ("expression", "first_ticks"),
    [
        ("*/20 * * * * *", ["2025-01-01T00:00:00", "2025-01-01T00:00:20", "2025-01-01T00:00:40"]),
        ("0 0 12 * * 1", ["2025-01-05T12:00:00", "2025-01-12T12:00:00"]),  # Sundays
        ("0 0 0 * * 7", ["2025-01-04T00:00:00", "2025-01-11T00:00:00"]),  # Saturdays
        ("0 0 0 * * 2/2", ["2025-01-01T00:00:00", "2025-01-03T00:00:00", "2025-01-06T00:00:00"]),
        # Day of month AND day of week (the cron crate), not OR (Vixie): Mondays the 1st.
        ("0 0 0 1 * 2", ["2025-09-01T00:00:00", "2025-12-01T00:00:00"]),
        ("0 30 9 29 2 * 2028", ["2028-02-29T09:30:00"]),
    ],
)
def test_ticks_follow_the_plugins_meaning(expression: str, first_ticks: list[str]) -> None:
    schedule = parse(expression, NOW - 1)
    at, got = NOW - 1, []
    for _ in first_ticks:
        tick = schedule.next_after(at)
        assert tick is not None
        got.append(datetime.fromtimestamp(tick, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
        at = tick
    assert got == first_ticks


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ("* * * * *", "has 5 fields; it needs 6 or 7, seconds first"),
        ("* * * * * * * *", "has 8 fields"),
        ("0 0 0 * * 0", "day-of-week field: 0 is out of range 1-7 (1 = Sunday"),
        ("0 0 0 * * 8", "day-of-week field: 8 is out of range 1-7"),
        ("60 * * * * *", "second field: 60 is out of range 0-59"),
        ("0 0 24 * * *", "hour field: 24 is out of range 0-23"),
        ("0 0 0 0 * *", "day-of-month field: 0 is out of range 1-31"),
        ("0 0 0 * 13 *", "month field: 13 is out of range 1-12"),
        ("0 0 0 * * * 1969", "year field: 1969 is out of range 1970-2099"),
        ("0 0 0 L * *", "day-of-month field: 'L' is not a number"),
        ("0 0 0 * * 6L", "day-of-week field: '6L' is not *, N, A-B or one of them /S"),
        ("0 0 0 * * 2#1", "day-of-week field: '2#1' is not"),
        ("0 0 0 15W * *", "day-of-month field: '15W' is not"),
        ("0 0 0 * * Wed/2", "a step follows *, a number or a range"),
        ("0 0 0 * * Funday", "day-of-week field: unknown name 'Funday'"),
        ("0 0 0 * * 5-2", "range '5-2' ends before it starts"),
        ("*/0 * * * * *", "second field: '*/0' has a step of 0"),
        ("? * * * * *", "? is only allowed in day-of-month and day-of-week"),
        ("0 0 0 31 2 *", "matches no time from now on"),
        ("0 0 0 * * * 2020", "matches no time from now on"),
        ("@reboot", "unknown shorthand '@reboot'"),
    ],
)
def test_expressions_the_plugin_refuses_are_refused(expression: str, error: str) -> None:
    with pytest.raises(CronError, match=re.escape(error)):
        parse(expression, NOW)


def test_catch_up_runs_the_latest_due_tick_once_and_goes_on_from_now() -> None:
    every_2s = parse("*/2 * * * * *", NOW)
    start = ts("2025-01-01T00:00:10")
    # On time (or late by less than a period): that tick, then the next.
    assert catch_up(every_2s, start, start + 0.3) == (start, start + 2, 0)
    assert catch_up(every_2s, start, start + 1.9) == (start, start + 2, 0)
    # Woken 7 s late (a suspend, a clock jump): 10, 12, 14 and 16 were due; 16 runs.
    assert catch_up(every_2s, start, start + 7) == (start + 6, start + 8, 3)
    # A day's suspend: one run, for the last due tick; the count stops at its limit.
    latest, following, skipped = catch_up(every_2s, start, start + 86_400.5)
    assert (latest, following) == (start + 86_400, start + 86_402)
    assert skipped == 10_000
    weekly = parse("0 0 0 * * 1", NOW)  # Sundays
    sunday = ts("2025-01-05T00:00:00")
    assert catch_up(weekly, sunday, sunday + 15 * 86_400) == (
        ts("2025-01-19T00:00:00"),
        ts("2025-01-26T00:00:00"),
        2,
    )


# --- wasmlet up ---------------------------------------------------------------------------


def manifest(expression: str, mode: str = "ok", http: bool = False, extra: str = "") -> str:
    routes = (
        f'[[trigger.http]]\nroute = "/..."\ncomponent = "web"\n'
        f'[component.web]\nsource = "{component("python-app")}"\n'
        'key_value_stores = ["default"]\n'
        if http
        else ""
    )
    return f"""
spin_manifest_version = 2
[application]
name = "cron-app"
[[trigger.cron]]
component = "tick"
cron_expression = "{expression}"
{extra}
[component.tick]
source = "{component("python-cron")}"
key_value_stores = ["default"]
[component.tick.variables]
mode = "{mode}"
{routes}"""


def ticks(log: str) -> list[int]:
    return [int(t) for t in re.findall(r"\[tick\] tick (\d+)", log)]


def wait_for_ticks(up: Up, count: int, timeout: float = 60) -> list[int]:
    deadline = time.monotonic() + timeout
    while len(ticks(up.log)) < count:
        assert time.monotonic() < deadline, up.log
        assert up.proc.poll() is None, up.log
        time.sleep(0.1)
    return ticks(up.log)


@pytest.fixture(scope="module")
def every_2s(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[Up]:
    app = write_app(tmp_path_factory.mktemp("cron-app"), manifest("*/2 * * * * *"))
    up = Up(app, cache_dir)
    try:
        assert up.logged("Cron '*/2 * * * * *' (UTC): [tick], next tick", timeout=300), up.log
        yield up
    finally:
        up.stop()


def test_banner_and_no_http_listener(every_2s: Up) -> None:
    assert "Serving http" not in every_2s.log


def test_ticks_run_on_the_schedules_seconds_with_their_timestamp(every_2s: Up) -> None:
    seen = wait_for_ticks(every_2s, 4)
    now = time.time()
    assert seen == sorted(set(seen)), seen  # one run per tick, in order
    assert all(t % 2 == 0 for t in seen), seen  # "*/2": even seconds only
    # Unix seconds of now (the last one printed a moment ago; generous for a loaded machine).
    assert now - 30 < seen[-1] <= now + 1, (seen, now)
    # Consecutive ticks 2 s apart unless the machine stalled for a whole period (then one
    # run for the latest due tick), and most of them on time.
    gaps = [b - a for a, b in itertools.pairwise(seen)]
    assert gaps.count(2) >= len(gaps) - 1, gaps


def test_each_tick_runs_with_host_apis(every_2s: Up) -> None:
    """The component read its variable and wrote key-value (the app's default store)."""
    seen = wait_for_ticks(every_2s, 2)
    app = Path(every_2s.proc.args[every_2s.proc.args.index("-f") + 1])
    with sqlite3.connect(app / ".spin" / "sqlite_key_value.db") as db:
        rows = dict(db.execute("SELECT key, value FROM spin_key_value WHERE store = 'default'"))
    for tick in seen[:2]:
        assert rows.get(f"tick-{tick}") == str(tick).encode(), rows


def test_failing_and_trapping_handlers_are_logged_and_the_schedule_goes_on(
    tmp_path: Path, cache_dir: Path
) -> None:
    app = write_app(tmp_path / "app", manifest("* * * * * *", mode="flaky"))
    up = Up(app, cache_dir, args=("--metrics-listen", "127.0.0.1:0"))
    try:
        wait_for_ticks(up, 7, timeout=300)  # 3 seconds in a row hold an error and a trap
        # Each tick is counted as a message handled (docs/observability.md).
        url = re.search(r"Metrics: (\S+)", up.log)
        assert url is not None, up.log
        handled = {
            s.labels["outcome"]: s.value
            for family in text_string_to_metric_families(httpx.get(url[1], timeout=10).text)
            for s in family.samples
            if s.name == "wasmlet_messages_handled_total" and s.labels["trigger"] == "cron"
        }
        assert handled.get("ok", 0) >= 1 and handled.get("error", 0) >= 1, handled
        log = up.log
        assert re.search(
            r"component tick handler failed on the tick of \S+Z \(\d+\): other: asked to fail",
            log,
        ), log
        assert "component tick trapped" in log
        assert re.search(r"component tick failed on the tick of \S+Z \(\d+\)", log), log
        failed = int(re.findall(r"handler failed on the tick of \S+ \((\d+)\)", log)[0])
        assert any(t > failed for t in ticks(log))  # ticks after a failure still run
        assert up.proc.poll() is None
    finally:
        assert up.stop() == 0


def test_http_and_cron_in_one_app(tmp_path: Path, cache_dir: Path) -> None:
    """The cron component stores its ticks; the HTTP component of the same app reads them."""
    app = write_app(tmp_path / "app", manifest("* * * * * *", http=True))
    server = start_server(app, cache_dir=cache_dir, timeout=300)
    try:
        assert server.get("/").status_code == 200
        deadline = time.monotonic() + 60
        while True:
            keys = server.get("/kv-keys").text.split()
            if len([k for k in keys if k.startswith("tick-")]) >= 2:
                break
            assert time.monotonic() < deadline, (keys, server.log)
            time.sleep(0.2)
    finally:
        server.stop()


def test_sigterm_stops_the_schedule_cleanly(tmp_path: Path, cache_dir: Path) -> None:
    up = Up(write_app(tmp_path / "app", manifest("* * * * * *")), cache_dir)
    wait_for_ticks(up, 1, timeout=300)
    assert up.stop() == 0
    assert "Traceback" not in up.log
    count = len(ticks(up.log))
    time.sleep(1.5)
    assert len(ticks(up.log)) == count


@pytest.mark.parametrize(
    ("replace", "error"),
    [
        (('cron_expression = "* * * * * *"\n', ""), "trigger.cron[0].cron_expression: missing"),
        (
            ('cron_expression = "* * * * * *"', 'cron_expression = "*/5 * * * *"'),
            "trigger.cron[0].cron_expression: '*/5 * * * *' has 5 fields; it needs 6 or 7",
        ),
        (
            ('cron_expression = "* * * * * *"', 'cron_expression = "0 0 0 * * 0"'),
            "trigger.cron[0].cron_expression: '0 0 0 * * 0' day-of-week field: 0 is out of "
            "range 1-7 (1 = Sunday",
        ),
        (
            ('cron_expression = "* * * * * *"', "cron_expression = 5"),
            "trigger.cron[0].cron_expression: missing",
        ),
        (
            ('cron_expression = "* * * * * *"', 'cron_expression = "* * * * * *"\nevery = "1s"'),
            "trigger.cron[0].every: unknown setting",
        ),
    ],
)
def test_bad_triggers_name_the_key(
    tmp_path: Path, cache_dir: Path, replace: tuple[str, str], error: str
) -> None:
    text = manifest("* * * * * *").replace(*replace)
    r = run_cli("up", "-f", str(write_app(tmp_path / "app", text)), "--cache-dir", str(cache_dir))
    assert r.returncode != 0
    assert error in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_a_component_without_the_cron_export_is_named(tmp_path: Path) -> None:
    text = manifest("* * * * * *").replace(str(component("python-cron")), str(component("hello")))
    r = run_cli("up", "-f", str(write_app(tmp_path / "app", text)), timeout=120)
    assert r.returncode != 0
    assert "does not export the cron trigger's `handle-cron-event` function" in r.stderr
    assert "wasi:http/incoming-handler@0.2.0" in r.stderr


def test_an_async_cron_component_is_refused_as_not_supported(tmp_path: Path) -> None:
    """A component of the plugin's later generation (`async func handle-cron-event`)."""
    text = manifest("* * * * * *").replace(
        str(component("python-cron")), str(component("cron-async"))
    )
    r = run_cli("up", "-f", str(write_app(tmp_path / "app", text)), timeout=120)
    assert r.returncode != 0
    assert "exports an `async func`" in r.stderr, r.stderr
    assert "not supported: wasmtime's C API has no component-model async" in r.stderr
    assert "Traceback" not in r.stderr


def test_an_unknown_trigger_type_lists_cron_among_the_supported(tmp_path: Path) -> None:
    text = manifest("* * * * * *").replace("[[trigger.cron]]", "[[trigger.timer]]")
    r = run_cli("up", "-f", str(write_app(tmp_path / "app", text)), timeout=120)
    assert r.returncode != 0
    assert "trigger type 'timer'" in r.stderr
    assert "wasmlet runs: http, redis, mqtt, cron" in r.stderr
