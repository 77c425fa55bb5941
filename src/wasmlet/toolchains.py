"""What a component's build needs, found or provided before its commands run.

`wasmlet build` looks at the first word of each build command:

- `componentize-py` that is not on `PATH`: wasmlet provides it, in a venv under its cache
  (`<cache>/tools/python/<key>`) made from the component's `requirements.txt` (or wasmlet's
  pins, `PYTHON_TOOLS`), keyed by their text and reused by every app that asks for the same;
- `npm`, `npx`, `node`, or a `package.json` in the workdir: Node.js (18 or newer) and npm
  must be on `PATH`, and `npm install` runs first when `node_modules` is missing or older
  than `package.json`;
- any other program must be on `PATH`; if it is not, the error names it and, for the
  toolchains wasmlet's templates use, the Debian packages that provide it.

`run_step` runs one command with its output passed through line by line, and a note every
`HEARTBEAT` seconds of silence so that a long step (componentize-py, j2w) shows it is alive.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from .errors import WasmletError

# What the http-py template's requirements.txt pins too (spin-sdk 3.4.1 exports
# wasi:http/incoming-handler@0.2.0; spin-sdk 4 and 5 export wasi:http 0.3, which wasmlet refuses).
PYTHON_TOOLS = ("componentize-py==0.17.2", "spin-sdk==3.4.1")
NODE_MIN_MAJOR = 18
HEARTBEAT = 15.0  # seconds of silence before a "still running" note

_NODE_PROGRAMS = {"node", "npm", "npx"}
_SHELL_WORDS = {
    "cd", "echo", "true", "false", "test", "[", "export", "set", "exit", ":", ".", "source",
    "exec", "printf", "eval", "if", "for", "while", "case", "{", "(", "unset", "read", "wait",
}  # fmt: skip
# Debian packages for the toolchains wasmlet's templates and examples build with.
_DEBIAN_PACKAGES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"clang(-\d+)?"), "clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32"),
    (re.compile(r"rustc"), "rustc libstd-rust-dev-wasm32"),
    (re.compile(r"cargo"), "cargo libstd-rust-dev-wasm32"),
    (re.compile(r"node|npm|npx"), "nodejs npm"),
    (re.compile(r"make"), "make"),
    (re.compile(r"python3?(\.\d+)?"), "python3 python3-venv"),
)


class ToolchainError(WasmletError):
    """A build cannot start: a tool is missing, or installing one failed."""


def debian_hint(program: str) -> str | None:
    """`sudo apt-get install …` for a program wasmlet knows the Debian packages of."""
    name = Path(program).name
    for pattern, packages in _DEBIAN_PACKAGES:
        if pattern.fullmatch(name):
            return f"sudo apt-get install {packages}"
    return None


def program_of(command: str) -> str | None:
    """The program a shell command runs first (`FOO=1 clang x.c` → `clang`), or None when
    that is shell syntax, a builtin, or not plain enough to tell."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    for word in words:
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", word):
            continue  # an environment assignment
        if word in _SHELL_WORDS or any(c in word for c in "$`|&;<>()*?{}"):
            return None
        return word
    return None


@dataclass
class BuildEnv:
    """The environment a component's build commands run in."""

    env: dict[str, str]
    notes: list[str] = field(default_factory=list)


# --- running a step ------------------------------------------------------------------------


def run_step(
    command: str | Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str],
    out: TextIO,
    label: str,
) -> int:
    """Run `command` (a shell string, or argv), passing its output to `out`; its exit status."""
    shell = isinstance(command, str)
    proc = subprocess.Popen(
        command if shell else list(command),
        shell=shell,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    started = last = time.monotonic()

    def pump() -> None:
        nonlocal last
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            out.write(raw.decode("utf-8", "replace"))
            out.flush()
            last = time.monotonic()

    reader = threading.Thread(target=pump, name="wasmlet-build-output", daemon=True)
    reader.start()
    try:
        while True:
            try:
                status = proc.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                now = time.monotonic()
                if now - last >= HEARTBEAT:
                    print(f"    ... {label}: still running ({now - started:.0f}s)", file=out)
                    out.flush()
                    last = now
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    reader.join(timeout=5)
    return status


# --- what a component needs ----------------------------------------------------------------


def prepare(
    component_id: str,
    commands: Sequence[str],
    workdir: Path,
    cache_dir: Path,
    out: TextIO,
) -> BuildEnv:
    """Check for, or install, what `commands` need; the environment to run them in.

    Raises `ToolchainError` naming the missing tool and how to install it on Debian."""
    env = dict(os.environ)
    programs = [p for p in (program_of(c) for c in commands) if p is not None]
    uses_node = any(Path(p).name in _NODE_PROGRAMS for p in programs)
    if uses_node or (workdir / "package.json").is_file():
        _require_node(component_id, commands, env)
    result = BuildEnv(env)
    for command, program in zip(commands, map(program_of, commands), strict=True):
        if program is None or Path(program).name in _NODE_PROGRAMS:
            continue
        if program == "componentize-py" and _which(program, env) is None:
            venv = python_tools(workdir, cache_dir, out)
            env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
            env["VIRTUAL_ENV"] = str(venv)
            result.notes.append(f"componentize-py from {venv}")
            continue
        if _which(program, env, workdir) is None:
            raise ToolchainError(_missing(component_id, program, command))
    if (workdir / "package.json").is_file():
        npm_install(component_id, workdir, env, out)
    return result


def _which(program: str, env: dict[str, str], cwd: Path | None = None) -> str | None:
    if "/" in program:
        path = Path(program) if cwd is None else cwd / program
        return str(path) if os.access(path, os.X_OK) else None
    return shutil.which(program, path=env.get("PATH", os.defpath))


def _missing(component_id: str, program: str, command: str) -> str:
    hint = debian_hint(program)
    how = f"; install it on Debian with: {hint}" if hint else ""
    return (
        f"component {component_id!r} cannot be built: {program} is not installed "
        f"(not found on PATH; the build command is `{command}`){how}"
    )


def _require_node(component_id: str, commands: Sequence[str], env: dict[str, str]) -> None:
    shown = " && ".join(commands)
    how = f"install Node.js {NODE_MIN_MAJOR} or newer and npm on Debian with: " + (
        debian_hint("node") or ""
    )
    node = _which("node", env)
    if node is None:
        raise ToolchainError(
            f"component {component_id!r} cannot be built: Node.js is not installed "
            f"(node not found on PATH; the build runs `{shown}`); {how}"
        )
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    match = re.match(r"v?(\d+)\.", version)
    if match is None or int(match.group(1)) < NODE_MIN_MAJOR:
        raise ToolchainError(
            f"component {component_id!r} cannot be built: Node.js {version or '(unknown)'} "
            f"at {node} is too old; {how}"
        )
    if _which("npm", env) is None:
        raise ToolchainError(
            f"component {component_id!r} cannot be built: npm is not installed "
            f"(not found on PATH); {how}"
        )


# --- npm -----------------------------------------------------------------------------------


def npm_install(component_id: str, workdir: Path, env: dict[str, str], out: TextIO) -> None:
    """`npm install` in `workdir` when `node_modules` is missing or older than package.json
    (or package-lock.json): npm writes `node_modules/.package-lock.json` on every install."""
    installed = workdir / "node_modules" / ".package-lock.json"
    wanted = [p for p in (workdir / "package.json", workdir / "package-lock.json") if p.is_file()]
    if installed.is_file() and all(
        p.stat().st_mtime_ns <= installed.stat().st_mtime_ns for p in wanted
    ):
        return
    reason = "node_modules is missing" if not installed.exists() else "package.json changed"
    # --prefer-offline: the lock file pins exact versions, so packages npm has cached are
    # used without asking the registry again (a second app installs in seconds).
    command = ["npm", "install", "--no-audit", "--no-fund", "--prefer-offline"]
    print(f"{component_id}: installing npm dependencies ({reason}): {' '.join(command)}", file=out)
    out.flush()
    started = time.monotonic()
    status = run_step(command, cwd=workdir, env=env, out=out, label="npm install")
    if status != 0:
        raise ToolchainError(
            f"component {component_id!r}: `npm install` in {workdir} failed with exit status "
            f"{status} (is the npm registry reachable?)"
        )
    if installed.is_file():  # npm may write package-lock.json after it: mark this install newer
        os.utime(installed)
    print(
        f"{component_id}: npm dependencies installed in {time.monotonic() - started:.1f}s",
        file=out,
    )


# --- the Python tools venv -----------------------------------------------------------------


def python_requirements(workdir: Path) -> tuple[list[str], str]:
    """The pip arguments that install a component's Python tools, and their cache key.

    A `requirements.txt` in the workdir is used as it is (with wasmlet's componentize-py pin
    added if it names none); without one, wasmlet's pins."""
    # Absolute: pip runs in the workdir, so a relative path would be taken twice.
    requirements = workdir.resolve() / "requirements.txt"
    if requirements.is_file():
        text = requirements.read_text(encoding="utf-8")
        args = ["-r", str(requirements)]
        if "componentize-py" not in text and "componentize_py" not in text:
            args.append(PYTHON_TOOLS[0])
    else:
        text = ""
        args = list(PYTHON_TOOLS)
    # Keyed by what is installed, not where the file is: apps asking for the same share a venv.
    pins = [a for a in args if a not in ("-r", str(requirements))]
    identity = "\n".join([text, *pins, platform.machine(), sys.version.split()[0]])
    return args, hashlib.sha256(identity.encode()).hexdigest()[:16]


def python_tools(workdir: Path, cache_dir: Path, out: TextIO) -> Path:
    """The tools venv for the component in `workdir`, created on first use; its path."""
    args, key = python_requirements(workdir)
    root = cache_dir / "tools" / "python"
    venv = root / key
    ready = venv / ".wasmlet-ready"
    if ready.is_file():
        return venv
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f"{key}.lock"):
        if ready.is_file():  # another build made it while this one waited
            return venv
        print(
            f"Installing the Python component tools into {venv} (first build only): "
            f"pip install {' '.join(args)}",
            file=out,
        )
        out.flush()
        started = time.monotonic()
        shutil.rmtree(venv, ignore_errors=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install"]
        steps: list[tuple[list[str], str]] = [
            ([sys.executable, "-m", "venv", str(venv)], "python -m venv"),
            ([*pip, "--disable-pip-version-check", "--progress-bar", "off", *args], "pip install"),
        ]
        for command, label in steps:
            status = run_step(command, cwd=workdir, env=dict(os.environ), out=out, label=label)
            if status != 0:
                shutil.rmtree(venv, ignore_errors=True)
                hint = (
                    "install Python's venv module on Debian with: sudo apt-get install python3-venv"
                    if label.endswith("venv")
                    else "is PyPI reachable, and does requirements.txt name installable packages?"
                )
                raise ToolchainError(
                    f"installing the Python component tools failed ({label}, exit status "
                    f"{status}): {hint}"
                )
        ready.write_text("\n".join(args) + "\n")
        print(f"Python component tools ready in {time.monotonic() - started:.1f}s", file=out)
    return venv


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise tool installs between processes (two builds, a build and a watch)."""
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
