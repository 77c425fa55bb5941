"""Put `containerd-shim-wasmlet-v2` on a node.

* `link` (a node where wasmlet is installed, e.g. with pip): in `--bin-dir`, the shell
  launcher (nodepaths.launcher) running this installation's console script.
* `copy` (from the installer DaemonSet, host filesystem mounted at `--host-root`): this
  Python — interpreter, standard library, site-packages with wasmlet, and the shared
  libraries they link except glibc's — copied to `--prefix` (default /opt/wasmlet), plus the
  shell launcher in `--bin-dir` running it. The host needs a glibc at least as new as the
  image's.

Either way the shim binary is a shell script: a container start goes to the node's template
without starting Python (see nodepaths.launcher).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import wasmlet

from .nodepaths import launcher, template_key

SHIM = "containerd-shim-wasmlet-v2"
STAMP = ".wasmlet-install"
_UNUSED_STDLIB = ("site-packages", "test", "idlelib", "tkinter", "turtledemo", "ensurepip",
                  "lib2to3", "_tkinter*", "__phello__")  # fmt: skip
_GLIBC = ("libc.so", "libm.so", "libpthread.so", "libdl.so", "librt.so", "ld-linux",
          "libutil.so", "libresolv.so", "linux-vdso")  # fmt: skip


@dataclass(frozen=True)
class Change:
    what: str
    done: bool  # False: already so, nothing to do


def on_host(host_root: Path, path: Path) -> Path:
    return host_root / path.relative_to("/")


def console_script() -> Path:
    found = Path(sys.prefix) / "bin" / SHIM
    if found.exists():
        return found
    which = shutil.which(SHIM)
    if which is None:
        raise FileNotFoundError(f"{SHIM} is not installed in this environment")
    return Path(which)


def install_link(host_root: Path, bin_dir: Path, dry_run: bool) -> Change:
    target = console_script().resolve()
    text = launcher(f'exec "{target}" "$@"')
    return _write(
        on_host(host_root, bin_dir / SHIM), text, f"{bin_dir / SHIM} -> {target}", dry_run
    )


def _write(script: Path, text: str, what: str, dry_run: bool) -> Change:
    if script.is_file() and not script.is_symlink() and script.read_text() == text:
        return Change(what, False)
    if not dry_run:
        script.parent.mkdir(parents=True, exist_ok=True)
        if script.is_symlink() or script.exists():
            script.unlink()
        script.write_text(text)
        script.chmod(0o755)
    return Change(what, True)


def _fingerprint() -> str:
    paths = sysconfig.get_paths()
    names = sorted(p.name for p in Path(paths["purelib"]).glob("*.dist-info")) + sorted(
        p.name for p in Path(paths["platlib"]).glob("*.dist-info")
    )
    return hashlib.sha256("\n".join([sys.version, *names]).encode()).hexdigest()[:16]


def wrapper(prefix: Path) -> str:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    python = (
        f'export PYTHONHOME="{prefix}" LD_LIBRARY_PATH="{prefix}/lib" PYTHONNOUSERSITE=1; '
        f'exec "{prefix}/bin/{version}" -m wasmlet.shim.main "$@"'
    )
    package = f"{prefix}/lib/{version}/site-packages/wasmlet"
    return launcher(python, template_key(f"{prefix}/bin/{version}", package))


def install_copy(host_root: Path, prefix: Path, bin_dir: Path, dry_run: bool) -> list[Change]:
    changes = []
    dest = on_host(host_root, prefix)
    stamp = dest / STAMP
    fingerprint = _fingerprint()
    current = stamp.read_text().strip() if stamp.exists() else ""
    if current == fingerprint:
        changes.append(Change(f"Python runtime with wasmlet in {prefix}", False))
    else:
        if not dry_run:
            _copy_runtime(dest)
            stamp.write_text(fingerprint + "\n")
        changes.append(Change(f"Python runtime with wasmlet in {prefix}", True))
    script = on_host(host_root, bin_dir / SHIM)
    changes.append(_write(script, wrapper(prefix), f"{bin_dir / SHIM} (wrapper)", dry_run))
    return changes


def _copy_runtime(dest: Path) -> None:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    base = Path(sys.base_prefix)
    staging = dest.with_name(dest.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "bin").mkdir(parents=True)
    shutil.copy2(Path(sys.executable).resolve(), staging / "bin" / version)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    shutil.copytree(stdlib, staging / "lib" / version, symlinks=True,
                    ignore=shutil.ignore_patterns(*_UNUSED_STDLIB))  # fmt: skip
    site = staging / "lib" / version / "site-packages"
    for source in {Path(sysconfig.get_paths()[k]) for k in ("purelib", "platlib")}:
        shutil.copytree(source, site, symlinks=True, dirs_exist_ok=True)
    package = Path(wasmlet.__file__).parent
    if not (site / "wasmlet").is_dir():  # an editable install: copy the source package
        shutil.copytree(package, site / "wasmlet", ignore=shutil.ignore_patterns("__pycache__"))
    for lib in (base / "lib").glob("libpython3*.so*"):
        shutil.copy2(lib, staging / "lib" / lib.name, follow_symlinks=False)
    for soname, lib in _shared_libraries(staging).items():
        target = staging / "lib" / soname
        if not target.exists():
            shutil.copy2(lib, target)
    old = dest.with_name(dest.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    staging.rename(dest)
    shutil.rmtree(old, ignore_errors=True)


def _shared_libraries(tree: Path) -> dict[str, Path]:
    """Libraries (soname -> file) the binaries in `tree` link from outside it, glibc's
    excepted."""
    found: dict[str, Path] = {}
    for path in [tree / "bin", *tree.rglob("*.so*")]:
        for binary in path.iterdir() if path.is_dir() else [path]:
            try:
                out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout
            except OSError:
                return found
            for line in out.splitlines():
                soname, arrow, rest = line.partition("=>")
                lib = rest.split("(")[0].strip() if arrow else ""
                soname = soname.strip()
                outside = lib.startswith("/") and not lib.startswith(str(tree))
                if outside and not soname.startswith(_GLIBC):
                    found[soname] = Path(lib).resolve()
    return found


def uninstall(host_root: Path, prefix: Path, bin_dir: Path, dry_run: bool) -> list[Change]:
    changes = []
    script = on_host(host_root, bin_dir / SHIM)
    if script.exists() or script.is_symlink():
        if not dry_run:
            script.unlink()
        changes.append(Change(f"removed {bin_dir / SHIM}", True))
    dest = on_host(host_root, prefix)
    if (dest / STAMP).exists():
        if not dry_run:
            shutil.rmtree(dest)
        changes.append(Change(f"removed {prefix}", True))
    return changes or [Change("no shim installed", False)]


def default_mode(host_root: Path) -> str:
    return "link" if os.path.realpath(host_root) == "/" else "copy"
