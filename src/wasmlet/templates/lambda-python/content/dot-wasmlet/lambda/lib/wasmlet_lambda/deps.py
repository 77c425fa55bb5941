"""Install a Lambda function's requirements for componentize-py to bundle (a build step).

    python3 deps.py OUT_DIR [REQUIREMENTS.txt ...]

Runs on the build machine, in the build's Python (wasmlet's tools venv): `pip install
--target OUT_DIR -r ...` of the requirement files that exist, skipped when their text has
not changed since the last install. componentize-py can bundle pure-Python packages and
WASI builds of native ones (`*.cpython-312-wasm32-wasi.so`) only, so a package that brought
other native code (pydantic-core, so FastAPI; numpy; ...) fails the build here, named with
the requirement that pulled it in, rather than at import time inside the component.
Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

STAMP = ".wasmlet-deps"
_NATIVE = (".so", ".pyd", ".dylib")
_WASI = "wasm32-wasi"
# Native modules that are only accelerators: their packages fall back to pure Python when
# they are missing, so the build drops them instead of failing (MarkupSafe's comes with
# werkzeug, which azure-functions needs).
_OPTIONAL = ("markupsafe/_speedups.",)


def _requirements(files: list[Path]) -> tuple[list[Path], str]:
    present = [f for f in files if f.is_file()]
    text = "".join(f"# {f}\n{f.read_text(encoding='utf-8')}\n" for f in present)
    return present, text


def _has_requirements(text: str) -> bool:
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return any(lines)


def _name(value: str) -> str:
    return re.sub(r"[-_.]+", "-", value).lower()


def _native_files(out: Path) -> dict[str, list[str]]:
    """Native extension files by the distribution that installed them."""
    owners: dict[str, str] = {}
    for record in out.glob("*.dist-info/RECORD"):
        dist = record.parent.name.removesuffix(".dist-info")  # name-version
        for line in record.read_text(encoding="utf-8").splitlines():
            owners[line.split(",", 1)[0]] = dist
    found: dict[str, list[str]] = {}
    for path in out.rglob("*"):
        name = path.name
        if path.is_file() and name.endswith(_NATIVE) and _WASI not in name:
            rel = path.relative_to(out).as_posix()
            found.setdefault(owners.get(rel, rel.split("/", 1)[0]), []).append(rel)
    return found


def _chains(report: Path) -> dict[str, str]:
    """For each installed distribution, the requirement chain that pulled it in."""
    try:
        installs = json.loads(report.read_text(encoding="utf-8"))["install"]
    except (OSError, ValueError, KeyError):
        return {}
    parents: dict[str, list[str]] = {}
    requested = set()
    for item in installs:
        meta = item.get("metadata", {})
        name = _name(meta.get("name", ""))
        if item.get("requested"):
            requested.add(name)
        for req in meta.get("requires_dist") or []:
            if "extra ==" in req:
                continue
            child = _name(re.split(r"[\s;\[<>=!~(]", req, maxsplit=1)[0])
            parents.setdefault(child, []).append(name)
    chains = {}
    for name in {_name(i.get("metadata", {}).get("name", "")) for i in installs}:
        chain, seen = [name], {name}
        while chain[0] not in requested and parents.get(chain[0]):
            parent = next((p for p in parents[chain[0]] if p not in seen), None)
            if parent is None:
                break
            seen.add(parent)
            chain.insert(0, parent)
        chains[name] = " -> ".join(chain)
    return chains


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: deps.py OUT_DIR [REQUIREMENTS.txt ...]", file=sys.stderr)
        return 2
    out = Path(argv[0])
    present, text = _requirements([Path(a) for a in argv[1:]])
    key = hashlib.sha256((text + sys.version).encode()).hexdigest()
    stamp = out / STAMP
    if stamp.is_file() and stamp.read_text() == key:
        print(f"dependencies in {out} are up to date")
        return 0
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    if not _has_requirements(text):
        stamp.write_text(key)
        return 0
    report = out.parent / f"{out.name}.report.json"
    command = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check"]
    command += ["--no-warn-script-location", "--progress-bar", "off", "--target", str(out)]
    command += ["--report", str(report)]
    for path in present:
        command += ["-r", str(path)]
    print("installing the function's requirements:", " ".join(command[4:]), flush=True)
    try:
        status = subprocess.run(command, env={**os.environ, "PIP_NO_INPUT": "1"}).returncode
        return _check(out, present, report, status, stamp, key)
    finally:
        report.unlink(missing_ok=True)


def _check(out: Path, present: list[Path], report: Path, status: int, stamp: Path, key: str) -> int:
    if status != 0:
        shutil.rmtree(out, ignore_errors=True)
        print(
            f"error: pip could not install {', '.join(map(str, present))} (exit status {status})",
            file=sys.stderr,
        )
        return 1
    for path in out.rglob("*"):
        rel = path.relative_to(out).as_posix()
        if rel.startswith(_OPTIONAL) and rel.endswith(_NATIVE):
            path.unlink()
    native = _native_files(out)
    if native:
        chains = _chains(report)
        for dist, files in sorted(native.items()):
            project, _, version = dist.rpartition("-")
            name = _name(project)
            via = chains.get(name, name)
            print(
                f"error: {', '.join(map(str, present))}: package {name} {version} has native code "
                f"({files[0]}) and no WebAssembly (WASI) build; componentize-py bundles "
                f"pure-Python packages only (and WASI builds, *.cpython-312-{_WASI}.so). "
                f"It is required by: {via}",
                file=sys.stderr,
            )
        shutil.rmtree(out, ignore_errors=True)
        return 1
    shutil.rmtree(out / "bin", ignore_errors=True)
    stamp.write_text(key)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
