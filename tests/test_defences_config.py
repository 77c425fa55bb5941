"""Bad config fails `wasmlet up` at startup with one line, never a traceback or a 500 later
(issue 18, items 7, 10, 12): unusable key-value stores, outbound hosts that render to
nonsense, symbolic links leading out of the app, the default memory limit's risk in --help.

Every case runs the real `wasmlet up` (or `wasmlet host`) process; the good cases serve real
requests. Malformed manifests and runtime configs in general (item 8) are in
test_fuzz_config.py, in process, where hundreds of them cost seconds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from support.server import Server, run_cli, start_host, write_app

APP = """
spin_manifest_version = 2
[application]
name = "defences"
[variables]
port = {{ default = "{port}" }}
[[trigger.http]]
route = "/..."
component = "tb"
executor = {{ type = "wagi" }}
[component.tb]
source = "{{testbed}}"
key_value_stores = ["default"]
{extra}
"""


def app(directory: Path, port: str = "6379", extra: str = "", **files: str) -> Path:
    return write_app(directory, APP.format(port=port, extra=extra), dict(files))


def up_fails(app_dir: Path, *args: str) -> str:
    """Run `wasmlet up`, which must exit 1 before serving; its one-line error."""
    r = run_cli("up", "-f", str(app_dir), "--listen", "127.0.0.1:0", *args, timeout=60)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "Serving" not in r.stdout, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    return lines[0]


@pytest.mark.parametrize("used", [True, False])
def test_a_key_value_store_that_cannot_work_stops_startup(tmp_path: Path, used: bool) -> None:
    """`type = "redis"` with `url = "other"`, used by the component or not."""
    label = "default" if used else "spare"
    d = app(tmp_path / "app")
    rc = tmp_path / "rc.toml"
    rc.write_text(f'[key_value_store.{label}]\ntype = "redis"\nurl = "other"\n')
    error = up_fails(d, "--runtime-config-file", str(rc))
    assert error.startswith(f"Error: {rc}: key_value_store.{label}.url: 'other' is not a Redis URL")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_outbound_host_rendering_to_nonsense_stops_startup(tmp_path: Path, workers: str) -> None:
    """`redis://localhost:{{ port }}` with `port = "6379x"`: refused when the app starts (the
    route does not even use it), by the supervisor of workers too."""
    d = app(
        tmp_path / "app",
        port="6379x",
        extra='allowed_outbound_hosts = ["redis://localhost:{{ port }}"]',
    )
    error = up_fails(d, "--workers", workers)
    assert error == (
        f"Error: {d / 'spin.toml'}: component.tb.allowed_outbound_hosts[0]: "
        '"redis://localhost:6379x": port "6379x" is not a number from 0 to 65535 '
        '(rendered from "redis://localhost:{{ port }}")'
    )


def test_a_files_source_of_root_is_refused_at_once(tmp_path: Path) -> None:
    """Not a walk of the whole disk: `/` is outside the app."""
    d = app(tmp_path / "app", extra='files = [{ source = "/", destination = "/" }]')
    error = up_fails(d)
    assert error == (
        f"Error: {d / 'spin.toml'}: component.tb.files[0]: "
        'source "/" is outside the application directory'
    )


@pytest.fixture
def linked_app(tmp_path: Path) -> Path:
    """An app whose `static/` has a plain file, a link to a file elsewhere in the app, and
    a dangling link (skipped, as Spin skips it)."""
    (tmp_path / "secret.txt").write_text("outside the app")
    d = app(
        tmp_path / "app",
        extra='files = ["static/*", { source = "assets", destination = "/assets" }]',
        **{"static/plain.txt": "plain\n", "top.txt": "top of the app\n", "assets/a.txt": "a\n"},
    )
    os.symlink("../top.txt", d / "static" / "inside.txt")
    os.symlink("missing.txt", d / "static" / "dangling.txt")
    return d


def test_links_inside_the_app_are_served(
    linked_app: Path, server_factory: Callable[..., Server]
) -> None:
    server = server_factory(linked_app)
    assert server.get("/?mode=file&path=/static/plain.txt").text == "plain\n"
    assert server.get("/?mode=file&path=/static/inside.txt").text == "top of the app\n"
    assert server.get("/?mode=file&path=/static/dangling.txt").status_code == 404


@pytest.mark.parametrize(
    ("link", "target"),
    [
        ("static/passwd", "/etc/passwd"),  # a file anywhere
        ("assets/root", "/"),  # a directory: never walked (it would be the whole disk)
    ],
)
def test_links_leading_out_of_the_app_are_refused(linked_app: Path, link: str, target: str) -> None:
    os.symlink(target, linked_app / link)
    error = up_fails(linked_app)
    where = "files[0]" if link.startswith("static") else "files[1]"
    real = os.path.realpath(linked_app / link)
    assert error == (
        f'Error: {linked_app / "spin.toml"}: component.tb.{where}: "{link}" is a symbolic '
        f'link to "{real}", outside the application directory (links must stay inside it)'
    )


def test_the_host_reports_broken_apps_as_not_served_without_tracebacks(
    tmp_path: Path, cache_dir: Path
) -> None:
    apps = tmp_path / "apps"
    app(apps / "good")
    app(apps / "template", port="6379x", extra='allowed_outbound_hosts = ["redis://x:{{ port }}"]')
    app(
        apps / "store",
        **{"runtime-config.toml": '[key_value_store.default]\ntype = "redis"\nurl = "other"\n'},
    )
    server = start_host(apps, cache_dir=cache_dir)
    try:
        assert server.get("/?mode=echo", headers={"host": "good.localhost"}).status_code == 200
        for name in ("template", "store"):
            r = server.get("/", headers={"host": f"{name}.localhost"})
            assert r.status_code == 503, r.text
        problems = json.loads(server.get("/.well-known/wasmlet/apps").text)["not_served"]
        assert 'port "6379x" is not a number' in problems["template"]
        assert "key_value_store.default.url: 'other' is not a Redis URL" in problems["store"]
    finally:
        server.stop()
    assert "Traceback" not in server.log, server.log


def test_up_help_names_the_default_memory_risk() -> None:
    r = run_cli("up", "--help")
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    assert "--max-instance-memory" in text and "4 GiB" in text, text
