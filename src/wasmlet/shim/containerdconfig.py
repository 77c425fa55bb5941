"""Add (or remove) the wasmlet runtime in a containerd configuration file.

The runtime is a marked block appended to the file, so install is idempotent and uninstall
removes exactly what install added:

    # BEGIN wasmlet runtime (managed by `wasmlet node install`)
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.wasmlet]
      runtime_type = "io.containerd.wasmlet.v2"
    # END wasmlet runtime

The table depends on the config's schema: `version = 2` (containerd 1.6/1.7) uses the
`io.containerd.grpc.v1.cri` plugin, `version = 3` (containerd 2.x) `io.containerd.cri.v1
.runtime`, and the old `version = 1` (or no version, containerd 1.x) `cri`. A runtime of that
name already configured outside the block is left alone.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass

BEGIN = "# BEGIN wasmlet runtime (managed by `wasmlet node install`)"
END = "# END wasmlet runtime"
RUNTIME_TYPE = "io.containerd.wasmlet.v2"
PLUGINS = {1: "cri", 2: "io.containerd.grpc.v1.cri", 3: "io.containerd.cri.v1.runtime"}
_BLOCK = re.compile(rf"\n*{re.escape(BEGIN)}\n.*?{re.escape(END)}\n?", re.S)


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class Edit:
    old: str
    new: str
    note: str  # what happened, for the user

    @property
    def changed(self) -> bool:
        return self.old != self.new


def config_version(text: str, default: int) -> int:
    """The config's schema version (`default` for an empty file or a Go template)."""
    match = re.search(r"^\s*version\s*=\s*(\d+)", text, re.M)
    if match:
        return int(match.group(1))
    return default if not text.strip() or "{{" in text else 1


def runtime_table(version: int, name: str) -> str:
    plugin = PLUGINS.get(version)
    if plugin is None:
        raise ConfigError(f"containerd config version {version} is not supported (1, 2 or 3)")
    return f'plugins."{plugin}".containerd.runtimes.{name}'


def block(version: int, name: str) -> str:
    return f'{BEGIN}\n[{runtime_table(version, name)}]\n  runtime_type = "{RUNTIME_TYPE}"\n{END}\n'


def _has_runtime(text: str, version: int, name: str) -> bool:
    """Whether `text` (outside our block) configures runtime `name` already."""
    stripped = _BLOCK.sub("\n", text)
    try:
        data = tomllib.loads(stripped)
    except tomllib.TOMLDecodeError:
        return f".runtimes.{name}]" in stripped or f'.runtimes."{name}"]' in stripped
    node: object = data
    keys = ["plugins", PLUGINS[version], "containerd", "runtimes", name]
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def add_runtime(text: str, name: str = "wasmlet", default_version: int = 2) -> Edit:
    version = config_version(text, default_version)
    wanted = block(version, name)
    if _has_runtime(text, version, name):
        return Edit(
            text, text, f"runtime {name!r} is already configured (not by wasmlet): left as is"
        )
    current = _BLOCK.search(text)
    if current is not None and current.group(0).strip("\n") == wanted.strip("\n"):
        return Edit(text, text, f"runtime {name!r} already installed")
    base = _BLOCK.sub("\n", text).rstrip("\n")
    if not text.strip() and version >= 2:
        base = f"version = {version}"
    new = (base + "\n\n" if base else "") + wanted
    _validate(new, version, name)
    return Edit(text, new, f"added runtime {name!r} ({RUNTIME_TYPE}, config version {version})")


def remove_runtime(text: str) -> Edit:
    if _BLOCK.search(text) is None:
        return Edit(text, text, "no wasmlet runtime in this config")
    new = _BLOCK.sub("\n", text).rstrip("\n") + "\n"
    return Edit(text, new if new.strip() else "", "removed the wasmlet runtime")


def _validate(text: str, version: int, name: str) -> None:
    if "{{" in text:  # a Go template (k3s, rke2): not TOML until rendered
        return
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(
            f"the edited config would not be valid TOML ({e}); not writing it"
        ) from None
    if not _has_runtime(text.replace(BEGIN, "# -").replace(END, "# -"), version, name):
        raise ConfigError("the edited config does not define the runtime; not writing it")


def diff(edit: Edit, path: str) -> str:
    import difflib

    return "".join(
        difflib.unified_diff(
            edit.old.splitlines(keepends=True),
            edit.new.splitlines(keepends=True),
            fromfile=path,
            tofile=path,
        )
    )
