"""Fuzzing `wasmlet up`'s startup with mutated manifests and runtime configs.

Shared by `tests/test_fuzz_config.py` (a few hundred cases in CI) and `bench/fuzz_config.py`
(the long run). A case is a valid seed document (a `spin.toml` or a runtime config) with a few
random mutations: a value replaced by one of another type or a tricky string, a key deleted or
added, or the TOML text itself cut or spliced. `run_case` lays out an app directory (Wasm
modules, static files, a FIFO, symbolic links in and out of it), writes the case and runs the
real startup path: the CLI's argument parsing and `up_options` (load, lock, runtime config),
the locked app's JSON round trip a worker does, and `running.build_app` (variables, factors,
components compiled, files laid out, the trigger) — everything but binding and serving. The
only acceptable failure is a `WasmletError`; each case is bounded by a timer (SIGALRM).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import shutil
import signal
import tempfile
import time
import tomllib
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w
from hypothesis import strategies as st

from wasmlet.cli import build_parser, up_options
from wasmlet.engine import EngineSettings
from wasmlet.errors import WasmletError
from wasmlet.locked import LockedApp
from wasmlet.running import Shared, build_app

from .env import FIXTURES

CASE_TIMEOUT = 10.0  # seconds: a case that takes longer is a hang
ORIGIN = "http://127.0.0.1:3000"

SEED_MANIFESTS = [
    """
spin_manifest_version = 2

[application]
name = "fuzz"
version = "1.0.0"
authors = ["someone <a@example.com>"]
description = "every feature at once"

[variables]
host = { default = "localhost" }
port = { default = "6379" }
token = { required = true, secret = true }

[[trigger.http]]
route = "/..."
component = "web"

[[trigger.http]]
id = "cgi-trigger"
route = "/cgi/:name/..."
component = "cgi"
executor = { type = "wagi", argv = "${SCRIPT_NAME} ${ARGS}" }

[[trigger.http]]
route = "/static"
static_response = { status_code = 201, headers = { x-a = "b" }, body = "hi" }

[[trigger.http]]
route = { private = true }
component = { source = "app.wasm" }
executor = { type = "wagi" }

[component.web]
source = "comp.wasm"
description = "a component"
files = [
    "static/**/*",
    { source = "assets", destination = "/img" },
    { source = "top.txt", destination = "/etc/t.txt" },
]
exclude_files = ["static/secret/*"]
allowed_outbound_hosts = [
    "redis://{{ host }}:{{ port }}",
    "https://example.com",
    "*://*.svc:8000..9000",
    "tcp://10.0.0.0/8:5432",
]
key_value_stores = ["default", "cache"]
sqlite_databases = ["default", "data"]
environment = { A = "b" }
variables = { greeting = "hi {{ host }}", key = "{{ token }}" }

[component.cgi]
source = "app.wasm"
files = ["top.txt", "static/*.txt"]
allowed_outbound_hosts = ["http://self"]
""",
    """
spin_manifest_version = "1"
name = "fuzz-v1"
version = "0.1.0"
trigger = { type = "http", base = "/" }

[variables]
port = { default = "80" }

[[component]]
id = "one"
source = "app.wasm"
files = ["static/*.txt", { source = "assets", destination = "/a" }]
allowed_http_hosts = ["example.com", "insecure:allow-all"]
key_value_stores = ["default"]
[component.trigger]
route = "/..."
executor = { type = "wagi" }
[component.config]
x = "{{ port }}"
""",
]

SEED_RUNTIME_CONFIGS = [
    """
state_dir = ".state"
log_dir = "logs"
max_instance_memory = "64Mi"

[key_value_store.default]
type = "spin"
path = "kv/default.db"

[key_value_store.cache]
type = "redis"
url = "redis://localhost:6379"

[sqlite_database.data]
type = "spin"
path = "data.db"

[[variables_provider]]
type = "env"
prefix = "FUZZ"
dotenv_path = "fuzz.env"

[[variables_provider]]
type = "static"
values = { port = "6380", host = "cache.svc" }

[outbound_http]
connection_pooling = true
""",
    """
[key_value_store.cache]
type = "spin"

[sqlite_database.data]
type = "spin"

[[config_provider]]
type = "static"
values = { token = "t" }
""",
]

# Files and links every case's app directory has (`links/` and `loop/` are named only by
# mutations: seeds stay valid).
APP_FILES = {
    "static/a.txt": "a",
    "static/b.html": "b",
    "static/sub/c.txt": "c",
    "static/secret/k.txt": "k",
    "assets/logo.png": "png",
    "top.txt": "t",
    "fuzz.env": "FUZZ_HOST=env.svc\n",
    ".env": "SPIN_VARIABLE_TOKEN=t\n",
}
APP_LINKS = {
    "links/inside.txt": "../top.txt",  # stays in the app directory
    "links/escape.txt": "../../outside.txt",  # leaves it
    "links/root": "/",
    "links/dangling": "missing.txt",
    "loop/self": ".",
}

TRICKY_STRINGS = [
    "",
    " ",
    "/",
    ".",
    "..",
    "../",
    "../..",
    "/etc/passwd",
    "/dev/zero",
    "/dev/null",
    "pipe",
    "links",
    "links/escape.txt",
    "links/inside.txt",
    "links/root",
    "loop",
    "loop/**/*",
    "static",
    "assets",
    "top.txt",
    "app.wasm",
    "comp.wasm",
    "*",
    "**",
    "**/*",
    "/**/*",
    "../**/*",
    "[",
    "[!",
    "x" * 300,
    "a/" * 200,
    "\0",
    "a\0b",
    "\n",
    "{{ port }}",
    "{{",
    "}}",
    "{{ nope }}",
    "{{ port }}x",
    "redis://localhost:{{ port }}",
    "redis://x:6379x",
    "redis://{{ host }}:{{ port }}",
    "http://self",
    "*://*:*",
    "insecure:allow-all",
    "tcp://127.0.0.1:0..65536",
    "http://[::1",
    "sha256:" + "0" * 64,
    "1Gi",
    "-1",
    "99999999999999999999Gi",
    "é",
    "\u202e",
    "C:\\x",
    "~",
    "file:///etc/passwd",
    "redis://",
    "other",
    ":memory:",
    "wagi",
    "http",
    "spin",
    "redis",
    "env",
    "static",
    "libsql",
    "default",
    "/...",
    "/:x",
]

KEYS = [
    # manifest
    "spin_manifest_version",
    "application",
    "name",
    "version",
    "authors",
    "description",
    "trigger",
    "variables",
    "component",
    "id",
    "route",
    "executor",
    "type",
    "argv",
    "entrypoint",
    "static_response",
    "status_code",
    "headers",
    "body",
    "private",
    "source",
    "url",
    "digest",
    "files",
    "destination",
    "exclude_files",
    "allowed_outbound_hosts",
    "allowed_http_hosts",
    "key_value_stores",
    "sqlite_databases",
    "ai_models",
    "environment",
    "build",
    "command",
    "dependencies",
    "path",
    "default",
    "required",
    "secret",
    "config",
    "base",
    "http",
    # runtime config
    "state_dir",
    "log_dir",
    "max_instance_memory",
    "key_value_store",
    "sqlite_database",
    "variables_provider",
    "config_provider",
    "values",
    "prefix",
    "dotenv_path",
    "outbound_http",
    "outbound_networking",
    "llm_compute",
    "cache",
    "data",
]

strings = st.one_of(
    st.sampled_from(TRICKY_STRINGS),
    st.text(max_size=12),
    st.text(alphabet="ab/.*{}: _-\0", max_size=16),
)
keys = st.one_of(st.sampled_from(KEYS), strings)
scalars = st.one_of(
    strings,
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, 1, -1, 65536, 2**31, 2**63 - 1]),
    st.floats(),
    st.booleans(),
    st.datetimes(),
    st.dates(),
    st.times(),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)),
    max_leaves=6,
)

Path_ = tuple[str | int, ...]


def _nodes(doc: Any, here: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    yield here, doc
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _nodes(v, (*here, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _nodes(v, (*here, i))


def _parent(doc: Any, path: Path_) -> Any:
    for part in path[:-1]:
        doc = doc[part]
    return doc


@st.composite
def _mutated(draw: st.DrawFn, seed: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(seed)
    for _ in range(draw(st.integers(1, 4))):
        nodes = list(_nodes(doc))
        path, node = draw(st.sampled_from(nodes))
        op = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if op == "add" and isinstance(node, dict):
            node[draw(keys)] = draw(values)
        elif op == "add" and isinstance(node, list):
            node.insert(draw(st.integers(0, len(node))), draw(values))
        elif op == "delete" and path:
            parent = _parent(doc, path)
            del parent[path[-1]]
        elif path and isinstance(node, str) and draw(st.booleans()):
            # A string becomes a tricky one half the time: a path, a URL, a template is
            # where the bugs are, and a random value rarely hits one there.
            _parent(doc, path)[path[-1]] = draw(st.sampled_from(TRICKY_STRINGS))
        elif path:
            _parent(doc, path)[path[-1]] = draw(values)
    return doc


@st.composite
def _text_mutated(draw: st.DrawFn, text: str) -> str:
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        end = draw(st.integers(at, min(len(text), at + 40)))
        text = (
            text[:at]
            + draw(st.sampled_from(["", "\n", "]", "[", '"', "=", "{", "\0"]))
            + text[end:]
        )
    return text


def _toml(doc: dict[str, Any]) -> str | None:
    try:
        return tomli_w.dumps(doc)
    except (TypeError, ValueError):  # e.g. a NaN key, or a type TOML cannot hold
        return None


def documents(seeds: list[str]) -> st.SearchStrategy[str]:
    """TOML texts: a seed mutated as data (mostly), or as text."""
    parsed = [tomllib.loads(s) for s in seeds]

    @st.composite
    def document(draw: st.DrawFn) -> str:
        index = draw(st.integers(0, len(seeds) - 1))
        if draw(st.integers(0, 4)) == 0:
            return draw(_text_mutated(seeds[index]))
        text = _toml(draw(_mutated(parsed[index])))
        return text if text is not None else seeds[index]

    return document()


def manifests() -> st.SearchStrategy[str]:
    return documents(SEED_MANIFESTS)


def runtime_configs() -> st.SearchStrategy[str]:
    return documents(SEED_RUNTIME_CONFIGS)


# -- running a case -------------------------------------------------------------------------


class CaseTimeout(BaseException):
    """A case ran past `CASE_TIMEOUT` (a BaseException, so `except Exception` in the code
    under test does not swallow it)."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise `CaseTimeout` in this (the main) thread after `seconds`; the interval timer
    pytest-timeout may have set is put back, less the time spent here."""

    def expire(_signum: int, _frame: object) -> None:
        raise CaseTimeout(f"the case took longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    outer, interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:
            left = max(0.001, outer - (time.monotonic() - started))
            signal.setitimer(signal.ITIMER_REAL, left, interval)


@dataclass
class Outcome:
    # "ok", "error" (a one-line WasmletError), "multiline" (one of several lines), "crash"
    # (anything else: a traceback), "timeout" (a hang)
    kind: str
    detail: str = ""


def make_app_dir(parent: Path) -> Path:
    """A fresh app directory with the files, FIFO and links the seeds and mutations name."""
    app = Path(tempfile.mkdtemp(dir=parent, prefix="app-"))
    (app.parent / "outside.txt").write_text("secret")
    for name, text in APP_FILES.items():
        (app / name).parent.mkdir(parents=True, exist_ok=True)
        (app / name).write_text(text)
    for name, target in APP_LINKS.items():
        (app / name).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, app / name)
    shutil.copyfile(FIXTURES / "wagi" / "hello.wasm", app / "app.wasm")
    shutil.copyfile(FIXTURES / "components" / "tcp-client.wasm", app / "comp.wasm")
    os.mkfifo(app / "pipe")  # opening it for reading would block: nothing may
    return app


def _state_dir_escapes(runtime_config: str) -> bool:
    """Whether the runtime config's `state_dir` may lie outside the app directory (the
    case then gets `--state-dir`, so no case writes outside its directory)."""
    try:
        value = tomllib.loads(runtime_config).get("state_dir")
    except tomllib.TOMLDecodeError:
        return False
    return isinstance(value, str) and (value.startswith(("/", "~")) or ".." in value)


def run_case(
    parent: Path,
    manifest: str,
    runtime_config: str | None,
    shared: Shared,
    parser: argparse.ArgumentParser | None = None,
) -> Outcome:
    """Run `wasmlet up`'s startup for this manifest and runtime config (not serving);
    `parser` is `build_parser()`, made once per run (it costs more than a case)."""
    parser = parser or build_parser()
    app = make_app_dir(parent)
    try:
        (app / "spin.toml").write_text(manifest)
        argv = ["up", "-f", str(app), "--cache-dir", str(parent / "cache")]
        if runtime_config is not None:
            (app / "runtime-config.toml").write_text(runtime_config)
            argv += ["--runtime-config-file", str(app / "runtime-config.toml")]
            if _state_dir_escapes(runtime_config):
                argv += ["--state-dir", str(app / ".spin")]
        try:
            with time_limit(CASE_TIMEOUT):
                locked, opts = up_options(parser.parse_args(argv))
                locked = LockedApp.from_json(locked.to_json())  # as a worker gets it
                running = build_app(locked, opts.app, ORIGIN, shared=shared)
                running.close()
        except WasmletError as e:
            if len(str(e).strip().splitlines()) > 1:  # the CLI prints one line: torn
                return Outcome("multiline", str(e))
            return Outcome("error", str(e))
        except CaseTimeout as e:
            return Outcome("timeout", str(e))
        except Exception:
            return Outcome("crash", traceback.format_exc())
        return Outcome("ok")
    finally:
        shutil.rmtree(app, ignore_errors=True)


def shared_runtime(parent: Path) -> Shared:
    """The engine, pool and gate every case's app is built on (one per run: an engine per
    case would cost more than the case), compiling into `parent/cache`."""
    return Shared.create(EngineSettings(cache_dir=parent / "cache"), threads=2, max_running=1)
