"""The Wasm guests: reproducible builds (`guests/build.py`), the committed modules' behaviour,
the example apps' build commands, and the `wasmlet new` templates (`wasmlet.scaffold`).

Tests that compile need the Debian toolchains; without them they skip, or fail under CI=true.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
import wasmtime
from support.env import IN_CI, ROOT, TESTBED, WAGI

from wasmlet.build import build_app
from wasmlet.errors import WasmletError
from wasmlet.manifest import load_manifest
from wasmlet.scaffold import list_templates, new_project, render, validate_name

BUILD_SCRIPT = ROOT / "guests" / "build.py"
TEMPLATE_TOOLCHAINS = {"c-wagi": "c", "rust-wagi": "rust"}


def _load_build_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("guests_build", BUILD_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


guests_build = _load_build_script()


@functools.cache
def _toolchain_problem(toolchain: str) -> str | None:
    problem: str | None = guests_build.toolchain_problem(toolchain)
    if problem is None:
        return None
    return f"{problem} (apt-get install {guests_build.DEBIAN_PACKAGES[toolchain]})"


def require_toolchains(*toolchains: str) -> None:
    """Skip unless every toolchain works; under CI=true a missing toolchain fails instead."""
    problems = [p for t in toolchains if (p := _toolchain_problem(t)) is not None]
    if problems:
        message = "; ".join(problems)
        if IN_CI:
            pytest.fail(f"{message} — the toolchains are required under CI=true")
        pytest.skip(message)


# --- running modules -------------------------------------------------------------------------


@dataclass
class Outcome:
    exit: int | None
    """The exit status; None if the module trapped."""
    trap: wasmtime.TrapCode | None
    stdout: bytes
    stderr: bytes


_ENGINE_CONFIG = wasmtime.Config()
_ENGINE_CONFIG.consume_fuel = True
ENGINE = wasmtime.Engine(_ENGINE_CONFIG)


@functools.cache
def _module(path: Path) -> wasmtime.Module:
    return wasmtime.Module.from_file(ENGINE, str(path))


def run_wagi(
    module: Path,
    tmp_path: Path,
    query: str = "",
    *,
    body: bytes = b"",
    argv: list[str] | None = None,
    env: dict[str, str] | None = None,
    files: Path | None = None,
    fuel: int = 2_000_000_000,
    memory: int | None = None,
) -> Outcome:
    """Run `module` as a Wagi request would: body on stdin, CGI variables in the environment."""
    stdin, stdout, stderr = tmp_path / "stdin", tmp_path / "stdout", tmp_path / "stderr"
    stdin.write_bytes(body)
    wasi = wasmtime.WasiConfig()
    wasi.argv = argv if argv is not None else ["/"]
    wasi.env = list(
        {"REQUEST_METHOD": "GET", "PATH_INFO": "", "QUERY_STRING": query, **(env or {})}.items()
    )
    wasi.stdin_file = str(stdin)
    wasi.stdout_file = str(stdout)
    wasi.stderr_file = str(stderr)
    if files is not None:
        wasi.preopen_dir(str(files), "/", fs_mutable=False)
    store = wasmtime.Store(ENGINE)
    store.set_fuel(fuel)
    if memory is not None:
        store.set_limits(memory_size=memory)
    store.set_wasi(wasi)
    linker = wasmtime.Linker(ENGINE)
    linker.define_wasi()
    instance = linker.instantiate(store, _module(module))
    start = instance.exports(store)["_start"]
    assert isinstance(start, wasmtime.Func)
    exit_code: int | None = 0
    trap: wasmtime.TrapCode | None = None
    try:
        start(store)
    except wasmtime.ExitTrap as exc:
        exit_code = exc.code
    except wasmtime.Trap as exc:
        exit_code, trap = None, exc.trap_code
    del store, instance
    return Outcome(exit_code, trap, stdout.read_bytes(), stderr.read_bytes())


def split_cgi(stdout: bytes) -> tuple[dict[str, str], bytes]:
    """Split CGI output into lower-cased headers and the body."""
    head, sep, body = stdout.partition(b"\n\n")
    assert sep, f"no blank line after the CGI headers: {stdout!r}"
    headers = {}
    for line in head.decode().splitlines():
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers, body


# --- guests/build.py -------------------------------------------------------------------------


def test_build_table_sources_and_outputs_exist() -> None:
    outputs = [output for target in guests_build.TARGETS for output in target.outputs]
    assert len(outputs) == len(set(outputs)), "two targets write the same file"
    for target in guests_build.TARGETS:
        assert (ROOT / target.workdir / target.source).is_file(), target.name
        for output in target.outputs:
            data = (ROOT / output).read_bytes()
            assert data[:4] == b"\0asm", f"{output} is not a committed Wasm module"
            wasmtime.Module.validate(ENGINE, data)


def test_build_check_matches_committed_outputs() -> None:
    require_toolchains("c", "rust")
    proc = subprocess.run(
        [sys.executable, str(BUILD_SCRIPT), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "match a fresh build" in proc.stdout
    assert len(proc.stdout.splitlines()) == len(guests_build.TARGETS) + 1


def test_build_check_reports_a_differing_output(tmp_path: Path) -> None:
    require_toolchains("c")
    # A copy of the repository layout the script needs, with one output altered.
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "guests", copy / "guests", ignore=shutil.ignore_patterns("build"))
    (copy / "tests" / "fixtures" / "wagi").mkdir(parents=True)
    (copy / "examples" / "hello").mkdir(parents=True)
    shutil.copy(ROOT / "examples/hello/hello.wasm", copy / "examples/hello/hello.wasm")
    (copy / "tests/fixtures/wagi/hello.wasm").write_bytes(b"\0asm stale")
    proc = subprocess.run(
        [sys.executable, str(copy / "guests" / "build.py"), "--check", "hello"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "tests/fixtures/wagi/hello.wasm" in proc.stderr
    assert "examples/hello/hello.wasm" not in proc.stderr


def test_build_script_usage_errors() -> None:
    proc = subprocess.run(
        [sys.executable, str(BUILD_SCRIPT), "no-such-target"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "unknown target(s): no-such-target" in proc.stderr


def test_missing_toolchain_is_one_line_naming_the_packages(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(guests_build, "CLANG", "clang-does-not-exist")
    monkeypatch.setattr(guests_build, "RUSTC", "/nonexistent/rustc")
    assert guests_build.main(["--check"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "clang-does-not-exist not found" in err
    assert "clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32" in err
    assert "rustc libstd-rust-dev-wasm32" in err


@pytest.mark.parametrize("example", ["hello", "wagi-app"])
def test_example_build_commands_give_the_committed_bytes(tmp_path: Path, example: str) -> None:
    require_toolchains("c", "rust")
    if shutil.which("wasm-opt"):
        pytest.skip("a wasm-opt on PATH makes clang post-process its output")
    # hello builds from guests/c (workdir ../../guests/c), so keep the repository layout.
    shutil.copytree(ROOT / "guests", tmp_path / "guests", ignore=shutil.ignore_patterns("build"))
    app = tmp_path / "examples" / example
    shutil.copytree(ROOT / "examples" / example, app)
    manifest = load_manifest(app / "spin.toml")
    sources = {cid: str(c.source) for cid, c in manifest.components.items()}
    for source in sources.values():
        (app / source).unlink()
    build_app(app, out=io.StringIO())
    for cid, source in sources.items():
        built = (app / source).read_bytes()
        assert built == (ROOT / "examples" / example / source).read_bytes(), cid


# --- the committed modules -------------------------------------------------------------------


def test_hello(tmp_path: Path) -> None:
    out = run_wagi(WAGI / "hello.wasm", tmp_path)
    assert out.exit == 0
    assert out.stdout == b"Content-Type: text/plain\n\nHello from wasmlet!\n"
    assert (ROOT / "examples/hello/hello.wasm").read_bytes() == (WAGI / "hello.wasm").read_bytes()


def test_rust_hello(tmp_path: Path) -> None:
    out = run_wagi(
        WAGI / "rust-hello.wasm",
        tmp_path,
        "a=1",
        body=b"12345",
        argv=["/rust/x", "a", "1"],
        env={"REQUEST_METHOD": "PUT", "PATH_INFO": "/x/y", "X_MATCHED_ROUTE": "/rust/..."},
    )
    assert out.exit == 0
    headers, body = split_cgi(out.stdout)
    assert headers["content-type"].startswith("text/plain")
    text = body.decode()
    for line in ("method: PUT", "path: /x/y", "route: /rust/...", 'args: ["a", "1"]'):
        assert line in text
    assert "body: 5 bytes" in text


def test_testbed_env_lists_argv_and_sorted_environment(tmp_path: Path) -> None:
    out = run_wagi(
        TESTBED, tmp_path, "mode=env&x=1", argv=["/p", "mode", "env", "x", "1"], env={"B": "2"}
    )
    assert out.exit == 0
    headers, body = split_cgi(out.stdout)
    assert headers == {"content-type": "text/plain"}
    lines = body.decode().splitlines()
    assert lines[:5] == ["argv[0]=/p", "argv[1]=mode", "argv[2]=env", "argv[3]=x", "argv[4]=1"]
    env_lines = lines[5:]
    assert env_lines == sorted(env_lines)
    assert "B=2" in env_lines and "QUERY_STRING=mode=env&x=1" in env_lines


def test_testbed_default_mode_is_env(tmp_path: Path) -> None:
    out = run_wagi(TESTBED, tmp_path, "", argv=["/"])
    assert split_cgi(out.stdout)[1].startswith(b"argv[0]=/\n")


def test_testbed_raw_copies_stdin_exactly(tmp_path: Path) -> None:
    body = b"Status: 418 I'm a teapot\r\nX-A: b\r\n\r\n\x00\xff binary" * 3000
    out = run_wagi(TESTBED, tmp_path, "mode=raw", body=body)
    assert (out.exit, out.stdout) == (0, body)


def test_testbed_echo(tmp_path: Path) -> None:
    out = run_wagi(TESTBED, tmp_path, "mode=echo", body=b"hello\nbody")
    assert out.stdout == b"Content-Type: text/plain\n\nhello\nbody"


@pytest.mark.parametrize(("query", "code"), [("mode=exit&code=3", 3), ("mode=exit&code=0", 0)])
def test_testbed_exit(tmp_path: Path, query: str, code: int) -> None:
    out = run_wagi(TESTBED, tmp_path, query)
    assert out.exit == code
    assert split_cgi(out.stdout)[0] == {"content-type": "text/plain"}


def test_testbed_trap(tmp_path: Path) -> None:
    out = run_wagi(TESTBED, tmp_path, "mode=trap")
    assert (out.exit, out.trap, out.stdout) == (None, wasmtime.TrapCode.UNREACHABLE, b"")


def test_testbed_loop_runs_until_stopped(tmp_path: Path) -> None:
    out = run_wagi(TESTBED, tmp_path, "mode=loop", fuel=5_000_000)
    assert out.trap == wasmtime.TrapCode.OUT_OF_FUEL


def test_testbed_oom_aborts_at_the_memory_limit(tmp_path: Path) -> None:
    out = run_wagi(TESTBED, tmp_path, "mode=oom", memory=16 << 20)
    assert out.trap == wasmtime.TrapCode.UNREACHABLE  # abort()
    assert out.stdout == b""


def test_testbed_file(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub dir").mkdir(parents=True)
    (root / "sub dir" / "data.bin").write_bytes(bytes(range(256)) * 300)
    out = run_wagi(TESTBED, tmp_path, "mode=file&path=%2Fsub+dir%2Fdata.bin", files=root)
    headers, body = split_cgi(out.stdout)
    assert headers == {"content-type": "application/octet-stream"}
    assert body == bytes(range(256)) * 300

    missing = run_wagi(TESTBED, tmp_path, "mode=file&path=/nope.txt", files=root)
    headers, body = split_cgi(missing.stdout)
    assert headers["status"] == "404 Not Found"
    assert body == b"not found: /nope.txt\n"

    unmounted = run_wagi(TESTBED, tmp_path, "mode=file&path=/etc/passwd")
    assert split_cgi(unmounted.stdout)[0]["status"].startswith("404")


def test_testbed_write_fails_on_a_read_only_mount(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    out = run_wagi(TESTBED, tmp_path, "mode=write", files=root)
    assert out.exit == 0
    assert split_cgi(out.stdout)[1].startswith(b"error ")
    assert list(root.iterdir()) == []


def test_testbed_empty_stderr_and_unknown_mode(tmp_path: Path) -> None:
    empty = run_wagi(TESTBED, tmp_path, "mode=empty")
    assert (empty.exit, empty.stdout) == (0, b"")

    err = run_wagi(TESTBED, tmp_path, "mode=stderr")
    assert err.stderr == b"testbed: a line on stderr\n"
    assert split_cgi(err.stdout)[0] == {"content-type": "text/plain"}

    unknown = run_wagi(TESTBED, tmp_path, "mode=bogus")
    headers, body = split_cgi(unknown.stdout)
    assert headers["status"] == "400 Bad Request"
    assert body == b"unknown mode: bogus\n"


# --- examples/wagi-app -----------------------------------------------------------------------

WAGI_APP = ROOT / "examples" / "wagi-app"


def test_wagi_app_manifest_routes() -> None:
    manifest = tomllib.loads((WAGI_APP / "spin.toml").read_text())
    routes = {t["route"]: t["component"] for t in manifest["trigger"]["http"]}
    assert routes == {
        "/": "index",
        "/users/:id": "users",
        "/static/...": "static",
        "/echo": "echo",
        "/rust/...": "rust",
    }
    assert all(t["executor"] == {"type": "wagi"} for t in manifest["trigger"]["http"])
    load_manifest(WAGI_APP / "spin.toml")


def test_wagi_app_components(tmp_path: Path) -> None:
    index = run_wagi(WAGI_APP / "index.wasm", tmp_path)
    assert b"/users/:id" in split_cgi(index.stdout)[1]

    user = run_wagi(
        WAGI_APP / "users.wasm", tmp_path, env={"X_PATH_MATCH_ID": "42", "GREETING": "Welcome"}
    )
    assert split_cgi(user.stdout)[1] == b"Welcome, user 42!\n"

    static = WAGI_APP / "static.wasm"
    assets = WAGI_APP / "assets"
    page = run_wagi(static, tmp_path, env={"PATH_INFO": "/"}, files=assets)
    headers, body = split_cgi(page.stdout)
    assert headers["content-type"].startswith("text/html")
    assert body == (assets / "index.html").read_bytes()
    text = run_wagi(static, tmp_path, env={"PATH_INFO": "/hello.txt"}, files=assets)
    assert split_cgi(text.stdout)[0]["content-type"].startswith("text/plain")
    missing = run_wagi(static, tmp_path, env={"PATH_INFO": "/missing.txt"}, files=assets)
    assert split_cgi(missing.stdout)[0]["status"].startswith("404")
    bare = run_wagi(static, tmp_path, env={"SCRIPT_NAME": "/static"}, files=assets)
    assert split_cgi(bare.stdout)[0] == {"location": "/static/"}

    echo = WAGI_APP / "echo.wasm"
    posted = run_wagi(echo, tmp_path, body=b"abc", env={"REQUEST_METHOD": "POST"})
    assert split_cgi(posted.stdout)[1] == b"received 3 bytes:\nabc"
    rejected = run_wagi(echo, tmp_path, env={"REQUEST_METHOD": "GET"})
    assert split_cgi(rejected.stdout)[0]["status"].startswith("405")

    rust = run_wagi(
        WAGI_APP / "rust-hello.wasm", tmp_path, argv=["/rust/a", "k", "v"], env={"PATH_INFO": "/a"}
    )
    headers, body = split_cgi(rust.stdout)
    assert headers["content-type"] == "application/json"
    assert body == b'{"guest": "rust", "method": "GET", "path": "/a", "args": ["k", "v"]}\n'


# --- wasmlet new (scaffold) ------------------------------------------------------------------


def test_list_templates() -> None:
    assert list_templates() == [
        "azure-js",
        "azure-python",
        "c-wagi",
        "http-js",
        "http-py",
        "http-ts",
        "lambda-js",
        "lambda-python",
        "mqtt-py",
        "redis-py",
        "rust-wagi",
    ]


def test_render_placeholders() -> None:
    text = "{{project-name}} {{ project-name | snake_case }} {{project-name|snake_case}} {{ x }}"
    assert render(text, "my-app") == "my-app my_app my_app {{ x }}"


@pytest.mark.parametrize("template", ["c-wagi", "rust-wagi"])
def test_new_project_renders_the_template(tmp_path: Path, template: str) -> None:
    dest = tmp_path / "out" / "my-app"
    assert new_project(template, "my-app", dest) == dest
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    main = "src/main.c" if template == "c-wagi" else "src/main.rs"
    assert files == sorted([".gitignore", "README.md", "spin.toml", main])
    for name in files:
        text = (dest / name).read_text()
        assert "{{" not in text and "project-name" not in text, name
    assert "my-app" in (dest / main).read_text()
    assert (dest / "README.md").read_text().startswith("# my-app\n")
    assert "*.wasm" in (dest / ".gitignore").read_text()
    manifest = tomllib.loads((dest / "spin.toml").read_text())
    assert manifest["application"]["name"] == "my-app"
    assert manifest["trigger"]["http"][0]["component"] == "my-app"
    component = manifest["component"]["my-app"]
    assert component["source"] == "my_app.wasm"
    assert "my_app.wasm" in component["build"]["command"]
    load_manifest(dest / "spin.toml")


@pytest.mark.parametrize("template", ["c-wagi", "rust-wagi"])
def test_new_project_builds_and_runs(tmp_path: Path, template: str) -> None:
    require_toolchains(TEMPLATE_TOOLCHAINS[template])
    dest = new_project(template, "hello-app", tmp_path / "hello-app")
    build_app(dest, out=io.StringIO())
    wasm = dest / "hello_app.wasm"
    assert wasm.is_file()
    wasmtime.Module.validate(ENGINE, wasm.read_bytes())
    out = run_wagi(wasm, tmp_path, env={"REQUEST_METHOD": "POST", "PATH_INFO": "/some/path"})
    assert out.exit == 0
    headers, body = split_cgi(out.stdout)
    assert headers == {"content-type": "text/plain"}
    assert body == b"Hello from hello-app!\nPOST /some/path\n"


@pytest.mark.parametrize("name", ["a", "my-app", "api2", "hello-v2", "x-1-b"])
def test_valid_names(name: str) -> None:
    validate_name(name)


@pytest.mark.parametrize(
    "name",
    ["", "MyApp", "my_app", "-app", "app-", "my--app", "1app", "my app", "app/x", "caf\u00e9"],
)
def test_invalid_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(WasmletError, match="kebab-case"):
        new_project("c-wagi", name, tmp_path / "app")
    assert not (tmp_path / "app").exists()


def test_existing_non_empty_dest_is_refused(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(WasmletError, match="exists and is not empty"):
        new_project("c-wagi", "my-app", tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_existing_empty_dest_is_used(tmp_path: Path) -> None:
    assert new_project("rust-wagi", "my-app", tmp_path) == tmp_path
    assert (tmp_path / "spin.toml").is_file()


def test_dest_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(WasmletError, match="not a directory"):
        new_project("c-wagi", "my-app", tmp_path / "f")


def test_unknown_template_is_refused(tmp_path: Path) -> None:
    with pytest.raises(
        WasmletError, match=r"unknown template 'go-wagi' \(templates: azure-js, [a-z-]+, c-wagi"
    ):
        new_project("go-wagi", "my-app", tmp_path / "x")
