"""What the operator knows of an app's triggers: read from its image, the locked app that
`spin registry push` (and `wasmlet registry push`) put there.

SpinApp has no field for it, and SpinKube's operator does not look: every app gets a Service
and whatever probes its `checks` say. wasmlet's does, because an app with only message
triggers (Redis, MQTT) listens on no port: a Service for it routes nowhere, an HTTP probe
never passes, and the activator cannot serve it. Only the small part of the image is read
(manifest, config, and the locked-app layer: a few KiB, never the Wasm), with the app's
`imagePullSecrets` as credentials, the same registry the nodes pull from.

When it cannot be read (no such registry from the operator, an image that is not a Spin OCI
artifact but a filesystem with `/spin.toml`, ...), the app is treated as an HTTP app, as
SpinKube treats every app, and the caller says why in a Warning.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import WasmletError
from ..oci import mediatypes as mt
from ..oci.client import RegistryClient
from ..oci.credentials import Credentials
from ..oci.errors import RegistryUnreachableError
from ..oci.lockjson import from_spin_json
from ..oci.reference import normalize_registry, parse_reference

READ_TIMEOUT = 5.0  # seconds for each registry request (a reconcile waits for it)
KNOWN_FOR = 300.0  # seconds a tag's triggers are trusted (a digest's: for ever)
UNKNOWN_FOR = 30.0  # seconds before an image that could not be read is tried again
DOCKER_CONFIG_KEY = ".dockerconfigjson"

# (namespace, Secret name) -> the Secret, or None when it is missing
SecretLookup = Callable[[str, str], Awaitable[Mapping[str, Any] | None]]


@dataclass(frozen=True)
class AppTriggers:
    """The trigger types of an app's locked app; `error` set when they are not known."""

    types: frozenset[str] = frozenset({"http"})
    error: str | None = None

    @property
    def known(self) -> bool:
        return self.error is None

    @property
    def http(self) -> bool:
        return "http" in self.types

    @property
    def messages(self) -> list[str]:
        """Its trigger types other than HTTP, sorted."""
        return sorted(self.types - {"http"})


UNKNOWN_HTTP = AppTriggers()  # what an app is taken for when its image cannot be read


def read_triggers(
    image: str, credentials: Credentials | None = None, insecure: bool = False
) -> AppTriggers:
    """The trigger types of the Spin app in `image` (blocking: network). Raises
    WasmletError naming what could not be read."""
    ref = parse_reference(image)
    with RegistryClient(
        ref, insecure=insecure, credentials=credentials, timeout=READ_TIMEOUT
    ) as client:
        manifest = _json(client.get_manifest(ref.target).data, f"{image}: manifest")
        if manifest.get("mediaType") in mt.INDEXES or "manifests" in manifest:
            manifest = _json(client.get_manifest(_wasm_entry(manifest, image)).data, image)
        config = _descriptor(manifest.get("config"), image)
        data = _blob(client, config["digest"])
        if not _is_locked_app(data):  # Spin >= 2.0: the locked app is the last app layer
            layers = [
                d
                for d in manifest.get("layers") or []
                if isinstance(d, dict) and d.get("mediaType") == mt.SPIN_APP_LAYER
            ]
            if not layers:
                raise WasmletError(
                    f"{image}: not a Spin OCI artifact (no locked app in its config or "
                    "layers; an app in the image's filesystem is not read)"
                )
            data = _blob(client, _descriptor(layers[-1], image)["digest"])
    app = from_spin_json(data, origin=f"{image} locked app")
    return AppTriggers(frozenset(t.trigger_type for t in app.triggers))


def _json(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        raise WasmletError(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise WasmletError(f"{what} is not a JSON object")
    return value


def _wasm_entry(index: dict[str, Any], image: str) -> str:
    entries = [e for e in index.get("manifests") or [] if isinstance(e, dict)]
    for entry in entries:
        platform = entry.get("platform") or {}
        if platform.get("architecture") == mt.ARCHITECTURE and str(
            platform.get("os", "")
        ).startswith("wasi"):
            return str(entry["digest"])
    if len(entries) == 1:
        return str(entries[0]["digest"])
    raise WasmletError(f"{image}: an image index with no {mt.ARCHITECTURE}/wasi manifest")


def _descriptor(value: Any, image: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not str(value.get("digest", "")).startswith("sha256:"):
        raise WasmletError(f"{image}: invalid descriptor in its manifest: {value!r}")
    return value


def _blob(client: RegistryClient, digest: str) -> bytes:
    sink = io.BytesIO()  # (small: a config, a locked app)
    client.download_blob(digest, sink)
    return sink.getvalue()


def _is_locked_app(data: bytes) -> bool:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(value, dict) and "spin_lock_version" in value


def pull_secret_credentials(
    secrets: Sequence[Mapping[str, Any] | None], registry: str
) -> Credentials | None:
    """The credentials for `registry` in the first of an app's image pull Secrets (type
    `kubernetes.io/dockerconfigjson`) that has them, as the kubelet picks them."""
    key = normalize_registry(registry)
    for secret in secrets:
        if secret is None:
            continue
        raw = (secret.get("data") or {}).get(DOCKER_CONFIG_KEY)
        name = (secret.get("metadata") or {}).get("name", "?")
        if raw is None:
            continue
        try:
            config = json.loads(base64.b64decode(raw))
        except (binascii.Error, ValueError):
            continue
        for server, entry in ((config or {}).get("auths") or {}).items():
            if normalize_registry(str(server)) != key or not isinstance(entry, dict):
                continue
            user, password = entry.get("username"), entry.get("password")
            if entry.get("auth"):
                try:
                    user, _, password = base64.b64decode(str(entry["auth"])).decode().partition(":")
                except (binascii.Error, UnicodeDecodeError):
                    continue
            if user and password:
                return Credentials(str(user), str(password), f"Secret {name}")
    return None


@dataclass
class TriggerReader:
    """Reads apps' triggers off the event loop, and remembers them: a tag for `KNOWN_FOR`
    seconds, a digest for ever, a failure for `UNKNOWN_FOR`."""

    insecure: frozenset[str] = frozenset()  # registries (host[:port]) spoken to over HTTP
    enabled: bool = True  # off: every app is an HTTP app, as SpinKube's operator has it
    clock: Callable[[], float] = time.monotonic
    read: Callable[[str, Credentials | None, bool], AppTriggers] = read_triggers
    _known: dict[tuple[str, str], tuple[AppTriggers, float]] = field(default_factory=dict)
    # registries that could not be reached: (why, until when); their other images are not
    # tried meanwhile (a thousand apps on an unreachable registry cost one attempt, not 1,000)
    _unreachable: dict[str, tuple[str, float]] = field(default_factory=dict)

    async def triggers(
        self, namespace: str, image: str, pull_secrets: Sequence[str], lookup: SecretLookup
    ) -> AppTriggers:
        """The app's triggers; on failure, `UNKNOWN_HTTP` with the reason as `error`."""
        if not self.enabled:
            return AppTriggers()
        try:
            ref = parse_reference(image)
        except WasmletError as e:
            return AppTriggers(error=str(e))
        secrets = [await lookup(namespace, name) for name in pull_secrets]
        credentials = pull_secret_credentials(secrets, ref.registry)
        key = (image, credentials.username if credentials is not None else "")
        now = self.clock()
        found = self._known.get(key)
        if found is not None and now < found[1]:
            return found[0]
        registry = normalize_registry(ref.registry)
        down = self._unreachable.get(registry)
        if down is not None and now < down[1]:
            return AppTriggers(error=down[0])
        try:
            result = await asyncio.to_thread(
                self.read, image, credentials, registry in self.insecure
            )
        except RegistryUnreachableError as e:
            self._unreachable[registry] = (str(e), now + UNKNOWN_FOR)
            result = AppTriggers(error=str(e))
        except WasmletError as e:
            result = AppTriggers(error=str(e))
        except Exception as e:  # whatever one image does, the operator goes on
            result = AppTriggers(error=f"{type(e).__name__}: {e}")
        if result.known:
            until = float("inf") if ref.digest else now + KNOWN_FOR
        else:
            until = now + UNKNOWN_FOR
        self._known[key] = (result, until)
        return result


def no_http_trigger(types: Sequence[str]) -> str:
    """Why an app with only message triggers cannot scale to zero through the activator."""
    return (
        f"no HTTP trigger (it has {', '.join(types)} triggers): the activator serves an app's "
        "HTTP requests while it has no pod, and only pods run other triggers, so it cannot "
        "scale to zero; use autoscaler type hpa or keda, or none"
    )


def activator_problem(triggers: AppTriggers, fewest_pods: int) -> str | None:
    """Why an app with these triggers cannot have autoscaler type wasmlet (None: it can),
    `fewest_pods` being the least its bounds allow. The activator runs no message trigger
    (the pods do), so an app needs an HTTP trigger to be served there, and a pod at all
    times to consume its messages."""
    if not triggers.messages:
        return None
    if not triggers.http:
        return f"spec.autoscaler.type wasmlet: {no_http_trigger(triggers.messages)}"
    if fewest_pods < 1:
        return (
            f"spec.autoscaler.minReplicas (and maxReplicas): at least 1 for an app with "
            f"{', '.join(triggers.messages)} triggers and autoscaler type wasmlet: while it has "
            "no pod the activator answers its HTTP requests, but nothing runs those triggers"
        )
    return None
