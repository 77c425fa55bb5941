"""Registry credentials: `wasmlet registry login`'s store, then Docker's `config.json`.

wasmlet's store is `$XDG_CONFIG_HOME/wasmlet/auth.json` (default `~/.config/wasmlet/`;
`WASMLET_CONFIG_DIR` overrides the directory), mode 0600, in Docker's shape:
`{"auths": {"<registry>": {"auth": base64("user:password")}}}`. Docker's file is
`$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`); its `auths.<host>.auth` and
`username`/`password` entries are read. Credential helpers (`credsStore`, `credHelpers`) and
identity tokens are not supported: such entries are skipped and named in auth errors.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import WasmletError
from .reference import normalize_registry


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    origin: str  # which file they came from, for error messages

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


def config_dir() -> Path:
    explicit = os.environ.get("WASMLET_CONFIG_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "wasmlet"


def auth_file() -> Path:
    return config_dir() / "auth.json"


def docker_config_file() -> Path:
    base = os.environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
    return Path(base) / "config.json"


def lookup(registry: str) -> Credentials | None:
    """Credentials for `registry` (host[:port]): wasmlet's store first, then Docker's."""
    key = normalize_registry(registry)
    for path in (auth_file(), docker_config_file()):
        found = _from_auths(_read_json(path).get("auths"), key, str(path))
        if found is not None:
            return found
    return None


def unsupported_docker_helper(registry: str) -> str | None:
    """A note when Docker's config would answer for `registry` through a credential helper."""
    data = _read_json(docker_config_file())
    key = normalize_registry(registry)
    helpers = data.get("credHelpers") or {}
    if isinstance(helpers, dict) and any(normalize_registry(h) == key for h in helpers):
        return "Docker credential helpers (credHelpers) are not supported"
    if data.get("credsStore"):
        return f"Docker's credsStore {data['credsStore']!r} is not supported"
    return None


def save_login(registry: str, username: str, password: str) -> Path:
    """Store credentials for `registry` in wasmlet's auth file (0600, atomic)."""
    path = auth_file()
    data = _read_json(path)
    auths = data.setdefault("auths", {})
    if not isinstance(auths, dict):
        auths = data["auths"] = {}
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    auths[normalize_registry(registry)] = {"auth": token}
    _write_private(path, json.dumps(data, indent=2) + "\n")
    return path


def remove_login(registry: str) -> bool:
    """Forget stored credentials for `registry`; False when there were none."""
    path = auth_file()
    data = _read_json(path)
    auths = data.get("auths")
    key = normalize_registry(registry)
    if not isinstance(auths, dict) or key not in auths:
        return False
    del auths[key]
    _write_private(path, json.dumps(data, indent=2) + "\n")
    return True


def _from_auths(auths: Any, key: str, origin: str) -> Credentials | None:
    if not isinstance(auths, dict):
        return None
    for server, entry in auths.items():
        if normalize_registry(str(server)) != key or not isinstance(entry, dict):
            continue
        if entry.get("auth"):
            try:
                user, sep, password = (
                    base64.b64decode(str(entry["auth"]), validate=True).decode().partition(":")
                )
            except (binascii.Error, UnicodeDecodeError):
                raise WasmletError(f"{origin}: auths.{server}.auth is not valid base64") from None
            if sep:
                return Credentials(user, password, origin)
        if entry.get("username") and entry.get("password"):
            return Credentials(str(entry["username"]), str(entry["password"]), origin)
    return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as e:
        raise WasmletError(f"{path}: cannot read credentials: {e}") from None
    return data if isinstance(data, dict) else {}


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".auth-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
