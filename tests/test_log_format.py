"""Structured logs (issue 15, item 3): `--log-format json` on real servers (`wasmlet up` with
one process and with workers, `wasmlet host`), real requests to Wagi guests and a spin-sdk
Python component that print to stdout and stderr, trap, or call out; every line on stderr is
parsed as JSON and its fields checked, request by request. Plus the formatter on its own."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from support.component_guests import python_app
from support.otlp import OtlpReceiver, env_for
from support.server import Server, run_cli, start_host, start_server, write_app

from wasmlet.logs import JsonFormatter
from wasmlet.observe import context

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"
REQUEST_ID = re.compile(r"^[0-9a-f]{16}$")
BANNER = ("Logs: ", "Serving ", "Available Routes:", "  ")  # stdout: not log lines

APP = """
spin_manifest_version = 2
[application]
name = "logged"

[[trigger.http]]
route = "/tb/..."
component = "testbed"
executor = { type = "wagi" }

[[trigger.http]]
route = "/hello"
component = "hello"
executor = { type = "wagi" }

[component.testbed]
source = "{testbed}"

[component.hello]
source = "{hello}"
"""


def log_lines(server: Server) -> list[dict[str, Any]]:
    """Every log line so far, parsed; anything else must be the banner on stdout."""
    lines = []
    for line in server.output:
        if line.startswith("{"):
            lines.append(json.loads(line))
        else:
            assert line.startswith(BANNER), f"not a JSON log line: {line!r}"
    return lines


def wait_for_line(server: Server, timeout: float = 10.0, **fields: object) -> dict[str, Any]:
    """The last log line with `fields`, once there is one (a line may be read from the pipe
    just after the response it is about)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [ln for ln in log_lines(server) if fields.items() <= ln.items()]
        if found:
            return found[-1]
        assert time.monotonic() < deadline, (fields, server.log)
        time.sleep(0.05)


def test_guest_output_and_wasmlet_events_carry_the_request(tmp_path: Path, cache_dir: Path) -> None:
    app = write_app(tmp_path / "app", APP)
    s = start_server(app, "--log-format", "json", cache_dir=cache_dir)
    try:
        with s.client() as c:
            headers = {"traceparent": TRACEPARENT}
            assert c.get("/tb/", params={"mode": "stderr"}, headers=headers).status_code == 200
            assert c.get("/tb/", params={"mode": "stderr"}).status_code == 200
            assert c.get("/tb/", params={"mode": "trap"}).status_code == 500
        trapped = wait_for_line(s, level="error", component="testbed", logger="wasmlet.wagi")
    finally:
        s.stop()
    lines = log_lines(s)
    first, second = (ln for ln in lines if ln.get("stream") == "stderr")
    # A guest's stderr line: its text alone, with where it came from.
    assert first["message"] == "testbed: a line on stderr"
    assert {
        "level": "info",
        "logger": "wasmlet.wagi",
        "app": "logged",
        "component": "testbed",
        "stream": "stderr",
    }.items() <= first.items()
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", first["time"])
    # Each request its own id; the caller's trace id when it sent one (tracing is off).
    assert REQUEST_ID.match(first["request_id"]) and REQUEST_ID.match(second["request_id"])
    assert first["request_id"] != second["request_id"]
    assert first["trace_id"] == CALLER_TRACE and "trace_id" not in second
    # wasmlet's own event about a request: the same fields.
    assert trapped["message"].startswith("component testbed trapped")
    assert trapped["app"] == "logged" and REQUEST_ID.match(trapped["request_id"])
    assert trapped["request_id"] not in (first["request_id"], second["request_id"])
    # Events outside any request have none.
    assert all("request_id" not in ln for ln in lines if ln["logger"] == "wasmlet.server")


def test_component_stdout_and_stderr_lines_with_traces_on(tmp_path: Path, cache_dir: Path) -> None:
    app = python_app(tmp_path / "app")
    with OtlpReceiver() as otlp:
        s = start_server(
            app, "--log-format", "json", env=env_for(otlp), cache_dir=cache_dir, timeout=300
        )
        try:
            r = s.get("/log", headers={"traceparent": TRACEPARENT})
            assert r.status_code == 200
            out = wait_for_line(s, stream="stdout")
            err = wait_for_line(s, stream="stderr")
            server_span = otlp.wait_for_span("GET /...")
        finally:
            s.stop()
    assert out["message"] == "python-app stdout" and err["message"] == "python-app stderr"
    assert out["logger"] == err["logger"] == "wasmlet.guest"
    for line in (out, err):
        assert line["app"] == "component-app" and line["component"] == "app"
        # With traces on: the request's span (its trace is the caller's).
        assert line["trace_id"] == server_span.trace_id == CALLER_TRACE
        assert line["span_id"] == server_span.span_id
    assert out["request_id"] == err["request_id"]


def test_workers_and_the_host_log_json_too(tmp_path: Path, cache_dir: Path) -> None:
    app = write_app(tmp_path / "apps" / "logged", APP)
    s = start_server(app, "--log-format", "json", "--workers", "2", cache_dir=cache_dir)
    try:
        assert s.get("/tb/", params={"mode": "stderr"}).status_code == 200
        line = wait_for_line(s, stream="stderr")
    finally:
        s.stop()
    assert line["app"] == "logged" and line["component"] == "testbed"
    assert any(ln["message"] == "started 2 workers" for ln in log_lines(s))

    host = start_host(tmp_path / "apps", "--log-format", "json", cache_dir=cache_dir)
    try:
        r = host.get("/tb/", params={"mode": "stderr"}, headers={"host": "logged.localhost"})
        assert r.status_code == 200
        line = wait_for_line(host, stream="stderr")
    finally:
        host.stop()
    assert line["app"] == "logged" and line["component"] == "testbed"
    assert REQUEST_ID.match(line["request_id"])


def test_text_stays_the_default_and_a_bad_format_is_refused(
    tmp_path: Path, cache_dir: Path
) -> None:
    app = write_app(tmp_path / "app", APP)
    s = start_server(app, cache_dir=cache_dir)
    try:
        assert s.get("/tb/", params={"mode": "stderr"}).status_code == 200
        assert s.logged("[testbed] testbed: a line on stderr"), s.log
    finally:
        s.stop()
    assert not any(line.startswith("{") for line in s.output)
    out = run_cli("up", "-f", str(app), "--log-format", "xml")
    assert out.returncode == 2
    assert "argument --log-format: invalid choice: 'xml'" in out.stderr


def _record(msg: str, *args: object, **attrs: object) -> logging.LogRecord:
    record = logging.LogRecord("wasmlet.test", logging.WARNING, __file__, 1, msg, args, None)
    record.created, record.msecs = 0.0, 0.0
    for k, v in attrs.items():
        setattr(record, k, v)
    return record


def test_the_formatter() -> None:
    fmt = JsonFormatter()
    assert json.loads(fmt.format(_record("%s ünïcode\nnext", "a"))) == {
        "time": "1970-01-01T00:00:00.000Z",
        "level": "warning",
        "logger": "wasmlet.test",
        "message": "a ünïcode\nnext",
    }
    token = context.enter(context.RequestContext("shop", "cart", "00000000000000ff", "ab" * 16))
    try:
        line = json.loads(fmt.format(_record("x", guest=("other", "stdout", "printed"))))
        try:
            raise ValueError("boom")
        except ValueError:
            failed = _record("failed")
            failed.exc_info = sys.exc_info()
            with_exception = json.loads(fmt.format(failed))
    finally:
        context.leave(token)
    assert line["message"] == "printed" and line["stream"] == "stdout"
    assert line["component"] == "other"  # the output's own component
    assert (line["app"], line["request_id"], line["trace_id"]) == (
        "shop",
        "00000000000000ff",
        "ab" * 16,
    )
    assert "span_id" not in line
    assert with_exception["component"] == "cart"
    assert with_exception["exception"].startswith("Traceback")
    assert "ValueError: boom" in with_exception["exception"]


@pytest.mark.parametrize(
    ("header", "ids"),
    [
        (TRACEPARENT, (CALLER_TRACE, "00f067aa0ba902b7")),
        (f"01-{CALLER_TRACE}-00f067aa0ba902b7-01-future", (CALLER_TRACE, "00f067aa0ba902b7")),
        (f"00-{CALLER_TRACE}-00f067aa0ba902b7-01-extra", None),  # version 00 has 4 fields
        (f"ff-{CALLER_TRACE}-00f067aa0ba902b7-01", None),
        (f"00-{'0' * 32}-00f067aa0ba902b7-01", None),
        (f"00-{CALLER_TRACE}-{'0' * 16}-01", None),
        (f"00-{CALLER_TRACE.upper()}-00f067aa0ba902b7-01", None),
        ("garbage", None),
    ],
)
def test_traceparent_ids(header: str, ids: tuple[str, str] | None) -> None:
    assert context.traceparent_ids(header) == ids


def test_request_ids_are_unique() -> None:
    ids = {context.new_request_id() for _ in range(10_000)}
    assert len(ids) == 10_000 and all(REQUEST_ID.match(i) for i in ids)
