"""The locked app as Spin writes and reads it in OCI artifacts.

Spin serialises `spin_lock_version` as 0 unless `must_understand` or `host_requirements` is
set, leaves out empty optional fields, and ignores unknown fields when reading. wasmlet's
`LockedApp` is stricter (version 1, no unknown fields), so `to_spin_json` and
`from_spin_json` translate at the registry boundary.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from ..errors import LockError, NotSupportedError
from ..locked import (
    SPIN_LOCK_VERSION,
    ContentPath,
    LockedApp,
    LockedComponent,
    LockedComponentSource,
    LockedTrigger,
    LockedVariable,
)


def content_ref(ref: dict[str, Any]) -> dict[str, Any]:
    """`{source?, inline?, digest?}` in Spin's field order, absent fields left out."""
    return {k: ref[k] for k in ("source", "inline", "digest") if ref.get(k) is not None}


def to_spin_json(app: dict[str, Any]) -> dict[str, Any]:
    """A locked app (as `LockedApp.model_dump()` gives it) in Spin's serialised shape."""
    out: dict[str, Any] = {}
    versioned = bool(app.get("must_understand") or app.get("host_requirements"))
    out["spin_lock_version"] = SPIN_LOCK_VERSION if versioned else 0
    for key in ("must_understand", "metadata", "host_requirements"):
        if app.get(key):
            out[key] = app[key]
    if app.get("variables"):
        out["variables"] = {
            name: {
                **({"description": v["description"]} if v.get("description") is not None else {}),
                **({"default": v["default"]} if v.get("default") is not None else {}),
                **({"secret": True} if v.get("secret") else {}),
            }
            for name, v in sorted(app["variables"].items())
        }
    out["triggers"] = [
        {"id": t["id"], "trigger_type": t["trigger_type"], "trigger_config": t["trigger_config"]}
        for t in app.get("triggers", [])
    ]
    out["components"] = [_component(c) for c in app.get("components", [])]
    return out


def _component(c: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"id": c["id"]}
    if c.get("metadata"):
        out["metadata"] = c["metadata"]
    out["source"] = {"content_type": c["source"]["content_type"], **content_ref(c["source"])}
    if c.get("env"):
        out["env"] = dict(sorted(c["env"].items()))
    if c.get("files"):
        out["files"] = [{**content_ref(f), "path": f["path"]} for f in c["files"]]
    if c.get("config"):
        out["config"] = dict(sorted(c["config"].items()))
    if c.get("dependencies"):
        out["dependencies"] = dict(sorted(c["dependencies"].items()))
    if c.get("host_requirements"):
        out["host_requirements"] = c["host_requirements"]
    return out


def from_spin_json(data: bytes | str, origin: str) -> LockedApp:
    """Read a locked app written by Spin or wasmlet (version 0 or 1)."""
    try:
        raw = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise LockError(f"{origin}: locked app is not valid JSON: {e}") from None
    if not isinstance(raw, dict):
        raise LockError(f"{origin}: locked app is not a JSON object")
    if raw.get("spin_lock_version") not in (0, SPIN_LOCK_VERSION):
        raise LockError(f"{origin}: unsupported spin_lock_version {raw.get('spin_lock_version')!r}")
    raw["spin_lock_version"] = SPIN_LOCK_VERSION
    _prune(raw, LockedApp, origin)
    for t in raw.get("triggers") or []:
        _prune(t, LockedTrigger, f"{origin}: trigger {t.get('id')!r}")
    for v in (raw.get("variables") or {}).values():
        _prune(v, LockedVariable, f"{origin}: variable")
    for c in raw.get("components") or []:
        where = f"{origin}: component {c.get('id')!r}"
        _prune(c, LockedComponent, where)
        if isinstance(c.get("source"), dict):
            _prune(c["source"], LockedComponentSource, where + " source")
        for f in c.get("files") or []:
            _prune(f, ContentPath, where + " file")
    return LockedApp.from_json(json.dumps(raw), origin=origin)


def _prune(obj: Any, model: type[BaseModel], where: str) -> None:
    """Drop fields `model` does not know when they are empty; refuse non-empty ones."""
    if not isinstance(obj, dict):
        return
    for key in [k for k in obj if k not in model.model_fields]:
        if obj[key] in (None, {}, [], ""):
            del obj[key]
        else:
            raise NotSupportedError(f"{where}: field {key!r} is not supported by wasmlet")
