"""The command line: help, one-line errors, lock, build, startup failures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.server import run_cli, write_app

from wasmlet.running import AppOptions
from wasmlet.trigger.http.server import parse_listen

APP = """
spin_manifest_version = 2
[application]
name = "cli-app"
[variables]
api_key = { required = true }
mode = { default = "fast" }
[[trigger.http]]
route = "/..."
component = "tb"
executor = { type = "wagi" }
[component.tb]
source = "{testbed}"
variables = { key = "{{ api_key }}" }
"""


def test_help_describes_every_command() -> None:
    r = run_cli("--help")
    assert r.returncode == 0
    for command in ("up", "build", "new", "lock"):
        assert command in r.stdout
    up = run_cli("up", "--help")
    assert up.returncode == 0
    for flag in (
        "--listen",
        "--workers",
        "--runtime-config-file",
        "--env",
        "--variable",
        "--request-timeout",
        "--max-instance-memory",
        "SPIN_HTTP_LISTEN_ADDR",
        "examples:",
    ):
        assert flag in up.stdout, flag


def test_no_command_prints_help_and_fails() -> None:
    r = run_cli()
    assert r.returncode == 2
    assert "usage: wasmlet" in r.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["up", "-f", "/nonexistent/app"], "/nonexistent/app: no such file or directory"),
        (["up", "--listen", "nonsense"], "invalid listen address 'nonsense'"),
        (["up", "--workers", "0"], "expected a positive whole number"),
        (["up", "--max-instance-memory", "lots"], "invalid size 'lots'"),
        (["up", "--env", "NOEQUALS"], "expected KEY=VALUE"),
    ],
)
def test_errors_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    write_app(tmp_path, APP)
    r = run_cli(*args, cwd=tmp_path, env={"SPIN_VARIABLE_API_KEY": "k"})
    assert r.returncode != 0
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith("Error: ")


def test_missing_required_variable_fails_at_startup(tmp_path: Path) -> None:
    write_app(tmp_path, APP)
    r = run_cli("up", "--listen", "127.0.0.1:0", cwd=tmp_path)
    assert r.returncode == 1
    assert "api_key" in r.stderr
    assert r.stderr.startswith("Error: ")
    assert "Traceback" not in r.stderr


def test_bad_manifest_names_file_key_and_value(tmp_path: Path) -> None:
    write_app(tmp_path, APP.replace('source = "{testbed}"', 'source = "nothere.wasm"'))
    r = run_cli("up", cwd=tmp_path, env={"SPIN_VARIABLE_API_KEY": "k"})
    assert r.returncode == 1
    assert (
        r.stderr.strip() == 'Error: spin.toml: component.tb.source: file "nothere.wasm" not found'
    )


def test_component_that_is_not_wasm(tmp_path: Path) -> None:
    write_app(
        tmp_path,
        APP.replace('source = "{testbed}"', 'source = "bad.wasm"'),
        {"bad.wasm": b"this is not wasm"},
    )
    r = run_cli("up", "--listen", "127.0.0.1:0", cwd=tmp_path, env={"SPIN_VARIABLE_API_KEY": "k"})
    assert r.returncode == 1
    assert "not a WebAssembly binary" in r.stderr


def test_lock_prints_locked_app(tmp_path: Path) -> None:
    write_app(tmp_path, APP)
    r = run_cli("lock", "-f", str(tmp_path))
    assert r.returncode == 0, r.stderr
    locked = json.loads(r.stdout)
    assert locked["spin_lock_version"] == 1
    assert locked["metadata"]["name"] == "cli-app"
    (component,) = locked["components"]
    assert component["source"]["digest"].startswith("sha256:")
    assert component["config"] == {"key": "{{ api_key }}"}
    assert locked["variables"]["mode"] == {"default": "fast", "secret": False}


def test_up_runs_from_a_locked_app_json(tmp_path: Path, server_factory) -> None:  # type: ignore[no-untyped-def]
    write_app(tmp_path, APP)
    assert (
        run_cli("lock", "-f", str(tmp_path), "-o", str(tmp_path / "app.lock.json")).returncode == 0
    )
    s = server_factory(tmp_path / "app.lock.json", env={"SPIN_VARIABLE_API_KEY": "k"})
    assert s.get("/?mode=echo").status_code == 200


BUILD_APP = """
spin_manifest_version = 2
[application]
name = "b"
[[trigger.http]]
route = "/a"
component = "a"
executor = { type = "wagi" }
[[trigger.http]]
route = "/b"
component = "b"
executor = { type = "wagi" }
[component.a]
source = "a.wasm"
[component.a.build]
command = "echo built-a > marker-a.txt"
workdir = "sub"
[component.b]
source = "b.wasm"
[component.b.build]
command = ["echo one > marker-b.txt", "echo two >> marker-b.txt"]
"""


def test_build_runs_commands_in_workdir(tmp_path: Path) -> None:
    write_app(tmp_path, BUILD_APP, {"sub/.keep": ""})
    r = run_cli("build", "-f", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "sub" / "marker-a.txt").read_text() == "built-a\n"
    assert (tmp_path / "marker-b.txt").read_text() == "one\ntwo\n"
    assert "[1/2] Building component a" in r.stdout
    assert "Finished building all components" in r.stdout


def test_build_single_component_and_failure(tmp_path: Path) -> None:
    write_app(tmp_path, BUILD_APP.replace("echo two", "exit 3; echo"), {"sub/.keep": ""})
    r = run_cli("build", "-f", str(tmp_path), "-c", "a")
    assert r.returncode == 0
    assert not (tmp_path / "marker-b.txt").exists()
    r = run_cli("build", "-f", str(tmp_path), "-c", "b")
    assert r.returncode == 1
    assert "build command for component 'b' failed with exit status 3" in r.stderr
    r = run_cli("build", "-f", str(tmp_path), "-c", "zzz")
    assert r.returncode == 1
    assert "no component 'zzz'" in r.stderr


@pytest.mark.parametrize(
    ("addr", "parsed"),
    [
        ("127.0.0.1:3000", ("127.0.0.1", 3000)),
        ("[::1]:80", ("::1", 80)),
        ("0.0.0.0:8080", ("0.0.0.0", 8080)),
        ("localhost:1", ("localhost", 1)),
    ],
)
def test_parse_listen(addr: str, parsed: tuple[str, int]) -> None:
    assert parse_listen(addr) == parsed


@pytest.mark.parametrize(("cores", "threads"), [(1, 8), (2, 8), (4, 16), (64, 32)])
def test_default_threads(monkeypatch: pytest.MonkeyPatch, cores: int, threads: int) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    assert AppOptions().thread_count == threads
    assert AppOptions(threads=3).thread_count == 3
    assert AppOptions().max_running == 1


def test_runtime_config_unknown_key(tmp_path: Path) -> None:
    write_app(tmp_path, APP, {"rc.toml": "state_dir = 'x'\nbogus_key = 1\n"})
    r = run_cli(
        "up",
        "--runtime-config-file",
        str(tmp_path / "rc.toml"),
        cwd=tmp_path,
        env={"SPIN_VARIABLE_API_KEY": "k"},
    )
    assert r.returncode == 1
    assert "bogus_key: unknown key" in r.stderr


def test_runtime_config_static_provider_satisfies_required_variable(
    tmp_path: Path, server_factory
) -> None:  # type: ignore[no-untyped-def]
    write_app(
        tmp_path,
        APP,
        {"rc.toml": '[[variables_provider]]\ntype = "static"\nvalues = { api_key = "x" }\n'},
    )
    s = server_factory(tmp_path, "--runtime-config-file", str(tmp_path / "rc.toml"))
    assert s.get("/?mode=echo").status_code == 200


def test_variable_flag_and_dotenv_satisfy_required_variable(tmp_path: Path, server_factory) -> None:  # type: ignore[no-untyped-def]
    write_app(tmp_path, APP)
    s = server_factory(tmp_path, "--variable", "api_key=from-flag")
    assert s.get("/?mode=echo").status_code == 200
    other = write_app(tmp_path / "other", APP, {".env": "SPIN_VARIABLE_API_KEY=from-dotenv\n"})
    s2 = server_factory(other, cwd=other)
    assert s2.get("/?mode=echo").status_code == 200


def test_unsupported_variables_provider(tmp_path: Path) -> None:
    write_app(tmp_path, APP, {"rc.toml": '[[variables_provider]]\ntype = "vault"\nurl = "x"\n'})
    r = run_cli("up", "--runtime-config-file", str(tmp_path / "rc.toml"), cwd=tmp_path)
    assert r.returncode == 1
    assert "provider type 'vault' is not supported" in r.stderr


TWO_COMPONENTS = """
spin_manifest_version = 2
[application]
name = "two"
[[trigger.http]]
route = "/a/..."
component = "a"
executor = { type = "wagi" }
[[trigger.http]]
route = "/b/..."
component = "b"
executor = { type = "wagi" }
[component.a]
source = "{testbed}"
[component.b]
source = "{testbed}"
"""


@pytest.mark.parametrize("how", ["flag", "env"])
def test_component_id_retains_only_those_components(
    tmp_path: Path, server_factory, how: str
) -> None:  # type: ignore[no-untyped-def]
    write_app(tmp_path, TWO_COMPONENTS)
    if how == "flag":
        s = server_factory(tmp_path, "--component-id", "b")
    else:
        s = server_factory(tmp_path, env={"SPIN_COMPONENTS_TO_RETAIN": "b"})
    assert s.get("/b/?mode=echo").status_code == 200
    assert s.get("/a/?mode=echo").status_code == 404
    assert "a: " not in s.log


def test_component_id_unknown(tmp_path: Path) -> None:
    write_app(tmp_path, TWO_COMPONENTS)
    r = run_cli("up", "-f", str(tmp_path), "--component-id", "zz")
    assert r.returncode == 1
    assert "--component-id 'zz': the app has no such component (components: a, b)" in r.stderr


def test_the_help_lists_the_command_groups_without_importing_them() -> None:
    """`wasmlet --help` names each group as the group itself does, and `--help`, `--version`
    and a bare `wasmlet` import none of them (kopf, grpclib: about a second)."""
    from wasmlet.cli import build_parser

    assert build_parser(subsystems="").format_help() == build_parser().format_help()
    check = (
        "import sys, contextlib, io\n"
        "from wasmlet.cli import main\n"
        "for argv in (['--help'], ['--version'], []):\n"
        "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "        main(argv)\n"
        "groups = ('wasmlet.kube', 'wasmlet.apphost', 'wasmlet.oci', 'wasmlet.shim')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('kopf', 'grpclib', 'oras')\n"
        "      or m.startswith(groups)))\n"
    )
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


@pytest.mark.parametrize("group", ["host", "registry", "kube", "node"])
def test_a_command_group_parses_with_its_own_parser(group: str) -> None:
    out = run_cli(group, "--help")
    assert out.returncode == 0, out.stderr
    usage = out.stdout.splitlines()[0]
    # more than the name alone: its options or actions (the stub `--help` lists is bare)
    assert usage.startswith(f"usage: wasmlet {group} [-h] "), usage
