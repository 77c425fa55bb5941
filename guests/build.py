#!/usr/bin/env python3
"""Build the Wasm guests (test fixtures and examples) from their sources.

    python guests/build.py               build every target and update the committed outputs
    python guests/build.py NAME ...      build only the named targets
    python guests/build.py --check       build into a temporary directory and compare the result
                                         with the committed outputs byte for byte (exit 1 and
                                         name the files that differ)
    python guests/build.py --toolchains  only check that the toolchains work
    python guests/build.py --list        print the targets

The toolchains are Debian's: clang-19 with wasi-libc for C, /usr/bin/rustc 1.63 with the
wasm32-wasi std for Rust. Builds are reproducible: each compiler runs in the target's work
directory on a relative source path, with path-prefix maps, so the bytes do not depend on where
the repository is checked out. Only the toolchain versions matter.

Exit status: 0 success, 1 a build failed or `--check` found differences, 2 usage error or a
missing toolchain.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _buildkit import BuildError, SetupError, select, write_if_changed  # noqa: E402

Toolchain = Literal["c", "rust"]

CLANG = "clang-19"
RUSTC = "/usr/bin/rustc"

C_FLAGS = ("--target=wasm32-wasi", "-O2", "-Wall", "-Wextra", "-Wl,--strip-all")
RUST_FLAGS = (
    "--edition=2021",
    "--target=wasm32-wasi",
    "-C",
    "opt-level=2",
    "-C",
    "strip=symbols",
)

DEBIAN_PACKAGES: dict[Toolchain, str] = {
    "c": "clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32",
    "rust": "rustc libstd-rust-dev-wasm32",
}

PROBE_SOURCES: dict[Toolchain, tuple[str, str]] = {
    "c": ("probe.c", "int main(void) { return 0; }\n"),
    "rust": ("probe.rs", "fn main() {}\n"),
}


@dataclass(frozen=True)
class Target:
    """One Wasm module: `source` is compiled in `workdir`, the result goes to `outputs`."""

    name: str
    toolchain: Toolchain
    workdir: str
    """Directory the compiler runs in, relative to the repository root."""
    source: str
    """Source file, relative to `workdir`."""
    outputs: tuple[str, ...]
    """Where the module is committed, relative to the repository root."""
    flags: tuple[str, ...] = ()
    """Extra compiler flags, after the toolchain's common ones."""


WAGI_APP = "examples/wagi-app"

TARGETS: tuple[Target, ...] = (
    Target("testbed", "c", "guests/c", "testbed.c", ("tests/fixtures/wagi/testbed.wasm",)),
    Target(
        "hello",
        "c",
        "guests/c",
        "hello.c",
        ("examples/hello/hello.wasm", "tests/fixtures/wagi/hello.wasm"),
    ),
    Target(
        "rust-hello", "rust", "guests/rust", "hello.rs", ("tests/fixtures/wagi/rust-hello.wasm",)
    ),
    Target("misbehave", "c", "guests/c", "misbehave.c", ("tests/fixtures/wagi/misbehave.wasm",)),
    Target("wagi-app/index", "c", WAGI_APP, "src/index.c", (f"{WAGI_APP}/index.wasm",)),
    Target("wagi-app/users", "c", WAGI_APP, "src/users.c", (f"{WAGI_APP}/users.wasm",)),
    Target("wagi-app/static", "c", WAGI_APP, "src/static.c", (f"{WAGI_APP}/static.wasm",)),
    Target("wagi-app/echo", "c", WAGI_APP, "src/echo.c", (f"{WAGI_APP}/echo.wasm",)),
    Target("wagi-app/rust", "rust", WAGI_APP, "src/hello.rs", (f"{WAGI_APP}/rust-hello.wasm",)),
)


def compiler_env(toolchain: Toolchain) -> dict[str, str]:
    """The environment to run the compiler of `toolchain` in.

    When optimising, clang runs `wasm-opt` (binaryen) after linking if it finds one on PATH,
    which would make the output depend on whether binaryen is installed; clang 19's
    `--no-wasm-opt` also skips the link step, so instead PATH is stripped of directories that
    hold a `wasm-opt`. clang still finds its linker next to itself (/usr/lib/llvm-19/bin).
    rustc needs PATH as it is (it runs `rust-lld` from it).
    """
    env = dict(os.environ)
    if toolchain == "c":
        dirs = env.get("PATH", os.defpath).split(os.pathsep)
        env["PATH"] = os.pathsep.join(d for d in dirs if d and not _has_wasm_opt(d))
    return env


def _has_wasm_opt(directory: str) -> bool:
    candidate = Path(directory) / "wasm-opt"
    return candidate.is_file() and os.access(candidate, os.X_OK)


def compiler_path(toolchain: Toolchain) -> str | None:
    """The absolute path of the compiler of `toolchain`, or None if it is not installed."""
    if toolchain == "c":
        return shutil.which(CLANG)
    return RUSTC if os.access(RUSTC, os.X_OK) else None


def compile_command(
    toolchain: Toolchain,
    compiler: str,
    workdir: Path,
    source: str,
    output: Path,
    extra_flags: Sequence[str] = (),
) -> list[str]:
    """The command line that compiles `source` (relative to `workdir`) into `output`."""
    if toolchain == "c":
        maps = [f"-ffile-prefix-map={workdir}=.", f"-fdebug-prefix-map={workdir}=."]
        flags = [*C_FLAGS, *maps, *extra_flags]
    else:
        flags = [*RUST_FLAGS, f"--remap-path-prefix={workdir}=.", *extra_flags]
    return [compiler, *flags, "-o", str(output), source]


def toolchain_problem(toolchain: Toolchain) -> str | None:
    """Why `toolchain` cannot build a wasm32-wasi module here, or None if it can.

    Compiles and links a trivial program, so a missing libc, std or linker is found too.
    """
    compiler = compiler_path(toolchain)
    name = CLANG if toolchain == "c" else RUSTC
    if compiler is None:
        return f"{name} not found"
    with tempfile.TemporaryDirectory(prefix="wasmlet-probe-") as tmp:
        workdir = Path(tmp)
        source, text = PROBE_SOURCES[toolchain]
        (workdir / source).write_text(text)
        command = compile_command(toolchain, compiler, workdir, source, workdir / "probe.wasm")
        try:
            proc = subprocess.run(
                command, cwd=workdir, env=compiler_env(toolchain), capture_output=True, text=True
            )
        except OSError as exc:
            return f"{name} cannot run: {exc}"
        if proc.returncode != 0 or not (workdir / "probe.wasm").is_file():
            lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
            detail = lines[0] if lines else f"exit status {proc.returncode}"
            return f"{name} cannot build wasm32-wasi modules ({detail})"
    return None


def check_toolchains(toolchains: Sequence[Toolchain]) -> None:
    """Raise a one-line SetupError naming the Debian packages if any toolchain is unusable."""
    problems = []
    for toolchain in dict.fromkeys(toolchains):
        problem = toolchain_problem(toolchain)
        if problem is not None:
            problems.append(f"{problem}; install: apt-get install {DEBIAN_PACKAGES[toolchain]}")
    if problems:
        raise SetupError("cannot build the Wasm guests: " + " | ".join(problems))


def build_target(target: Target, output: Path) -> bytes:
    """Compile `target` into `output` and return the module's bytes."""
    compiler = compiler_path(target.toolchain)
    if compiler is None:
        raise BuildError(f"{target.name}: compiler for {target.toolchain} not found")
    workdir = ROOT / target.workdir
    command = compile_command(
        target.toolchain, compiler, workdir, target.source, output, target.flags
    )
    proc = subprocess.run(
        command, cwd=workdir, env=compiler_env(target.toolchain), capture_output=True, text=True
    )
    if proc.stderr.strip():
        sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        raise BuildError(f"{target.name}: {command[0]} failed with exit status {proc.returncode}")
    return output.read_bytes()


def select_targets(names: Sequence[str]) -> list[Target]:
    return select(TARGETS, names)


def run(targets: Sequence[Target], check: bool) -> int:
    """Build `targets`; with `check`, compare instead of writing. Returns the exit status."""
    check_toolchains([target.toolchain for target in targets])
    differing: list[str] = []
    with tempfile.TemporaryDirectory(prefix="wasmlet-guests-") as tmp:
        for index, target in enumerate(targets):
            started = time.perf_counter()
            data = build_target(target, Path(tmp) / f"{index}.wasm")
            elapsed = time.perf_counter() - started
            notes = []
            for output in target.outputs:
                path = ROOT / output
                if check:
                    if not path.is_file() or path.read_bytes() != data:
                        differing.append(output)
                        notes.append(f"{output} DIFFERS")
                    else:
                        notes.append(f"{output} ok")
                else:
                    written = write_if_changed(path, data)
                    notes.append(f"{output}{'' if written else ' (unchanged)'}")
            verb = "checked" if check else "built"
            print(
                f"{verb} {target.name:<16} {len(data):>7} bytes {elapsed:5.2f}s  "
                + ", ".join(notes),
                flush=True,
            )
    if differing:
        print(
            "error: committed outputs differ from a fresh build: "
            + ", ".join(differing)
            + " (run `python guests/build.py` and commit them)",
            file=sys.stderr,
        )
        return 1
    if check:
        print(f"all {sum(len(t.outputs) for t in targets)} outputs match a fresh build")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Build the Wasm guests (test fixtures and examples) from their sources."
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--check",
        action="store_true",
        help="build into a temporary directory and compare with the committed outputs",
    )
    mode.add_argument(
        "--toolchains", action="store_true", help="only check that the toolchains work"
    )
    mode.add_argument("--list", action="store_true", help="print the targets and exit")
    parser.add_argument(
        "targets", nargs="*", metavar="NAME", help="targets to build (default: all)"
    )
    args = parser.parse_args(argv)
    try:
        targets = select_targets(args.targets)
        if args.list:
            for target in targets:
                source = f"{target.workdir}/{target.source}"
                print(f"{target.name:<16} {source:<32} -> {', '.join(target.outputs)}")
            return 0
        if args.toolchains:
            check_toolchains([target.toolchain for target in targets])
            print("toolchains ok: " + ", ".join(sorted({t.toolchain for t in targets})))
            return 0
        return run(targets, check=args.check)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.status


if __name__ == "__main__":
    sys.exit(main())
