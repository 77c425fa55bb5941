"""A client for the OCI distribution API (`/v2/…`) of one repository, over httpx.

It speaks just what push and pull need: manifests (HEAD/GET/PUT), blobs (HEAD, streamed GET
with digest verification, monolithic POST+PUT upload), with the Basic/Bearer handshake of
`auth.py`, and turns every failure into a one-line `RegistryError`. HTTPS by default;
`insecure=True` speaks plain HTTP.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import httpx

from . import credentials as creds
from .auth import Authenticator
from .errors import (
    DigestMismatchError,
    ReferenceNotFoundError,
    RegistryError,
    RegistryUnreachableError,
)
from .mediatypes import ACCEPT_MANIFEST
from .reference import Reference

CHUNK = 1 << 20
logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request at INFO
USER_AGENT = "wasmlet-oci"


@dataclass
class TransferStats:
    """What went over the wire: HTTP requests made and blob bytes moved."""

    requests: int = 0
    blobs_downloaded: int = 0
    blobs_uploaded: int = 0
    bytes_downloaded: int = 0
    bytes_uploaded: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)


@dataclass(frozen=True)
class Manifest:
    data: bytes
    media_type: str
    digest: str


class RegistryClient:
    """Talks to `ref.repository` on `ref.registry`; `push=True` asks for push access."""

    def __init__(
        self,
        ref: Reference,
        *,
        insecure: bool = False,
        push: bool = False,
        credentials: creds.Credentials | None = None,
        stats: TransferStats | None = None,
        timeout: float = 60.0,
        scope: str | None = None,
    ) -> None:
        """`scope` overrides the token scope asked for (default: this repository, pull or
        pull+push); `""` asks for none, to check credentials only."""
        self.ref = ref
        self.insecure = insecure
        self.stats = stats if stats is not None else TransferStats()
        scheme = "http" if insecure else "https"
        self.base = f"{scheme}://{ref.api_host}/v2/"
        self.repo_url = f"{self.base}{ref.repository}/"
        actions = "pull,push" if push else "pull"
        self.auth = Authenticator(
            ref.registry,
            f"repository:{ref.repository}:{actions}" if scope is None else scope,
            credentials if credentials is not None else creds.lookup(ref.registry),
            timeout,
        )
        self.http = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            follow_redirects=True,
            verify=not insecure,  # plain HTTP: no TLS context to build
            headers={"User-Agent": USER_AGENT},
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=16),
        )
        self._auth_lock = threading.Lock()

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the handshake ------------------------------------------------------------------------
    def login(self) -> None:
        """Authenticate against `/v2/` now (checks credentials; primes the token)."""
        response = self._send("GET", self.base, what="the registry")
        response.close()
        if response.status_code != 200:
            self._fail(response, "the registry")

    # -- manifests ------------------------------------------------------------------------------
    def head_manifest(self, target: str) -> str | None:
        """The digest `target` points at, or None when the registry does not say (a GET
        then gives the details of any error)."""
        response = self._send(
            "HEAD", self._url("manifests", target), {"Accept": ACCEPT_MANIFEST}, what=target
        )
        response.close()
        if response.status_code != 200:
            return None
        digest = response.headers.get("Docker-Content-Digest")
        return digest if digest and digest.startswith("sha256:") else None

    def get_manifest(self, target: str) -> Manifest:
        response = self._send(
            "GET", self._url("manifests", target), {"Accept": ACCEPT_MANIFEST}, what=target
        )
        if response.status_code == 404 and not target.startswith("sha256:"):
            raise self._tag_not_found(target)
        if response.status_code != 200:
            self._fail(response, self._describe(target))
        data = response.content
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        expected = target if target.startswith("sha256:") else None
        expected = expected or response.headers.get("Docker-Content-Digest")
        if expected and expected.startswith("sha256:") and expected != digest:
            raise DigestMismatchError(
                f"registry {self.ref.registry}: digest mismatch: manifest "
                f"{self._describe(target)} has content digest {digest}, expected {expected}"
            )
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        return Manifest(data, media_type, digest)

    def put_manifest(self, tag: str, data: bytes, media_type: str) -> str:
        response = self._send(
            "PUT",
            self._url("manifests", tag),
            {"Content-Type": media_type},
            body=lambda: data,
            what=f"tag {tag!r}",
        )
        response.close()
        if response.status_code not in (200, 201):
            self._fail(response, f"manifest for tag {tag!r}")
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        said = response.headers.get("Docker-Content-Digest")
        if said and said != digest:
            raise DigestMismatchError(
                f"registry {self.ref.registry}: stored manifest as {said}, expected {digest}"
            )
        return digest

    # -- blobs ----------------------------------------------------------------------------------
    def blob_exists(self, digest: str) -> bool:
        response = self._send("HEAD", self._url("blobs", digest), what=f"blob {digest}")
        response.close()
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        self._fail(response, f"blob {digest}")
        raise AssertionError("unreachable")

    def download_blob(
        self, digest: str, sink: BinaryIO, on_bytes: Callable[[int], None] | None = None
    ) -> int:
        """Stream blob `digest` into `sink`, verifying it; returns its size."""
        response = self._send("GET", self._url("blobs", digest), what=f"blob {digest}", stream=True)
        try:
            if response.status_code != 200:
                response.read()
                self._fail(response, f"blob {digest}")
            h = hashlib.sha256()
            size = 0
            try:
                for chunk in response.iter_bytes(CHUNK):
                    h.update(chunk)
                    sink.write(chunk)
                    size += len(chunk)
                    if on_bytes is not None:
                        on_bytes(len(chunk))
            except httpx.TransportError as e:
                raise RegistryUnreachableError(
                    f"registry {self.ref.registry}: download of blob {digest} failed: {e}"
                ) from None
        finally:
            response.close()
        self.stats.add(blobs_downloaded=1, bytes_downloaded=size)
        actual = "sha256:" + h.hexdigest()
        if actual != digest:
            raise DigestMismatchError(
                f"registry {self.ref.registry}: digest mismatch: blob {digest} of "
                f"{self.ref.repository} has content digest {actual}"
            )
        return size

    def upload_blob(
        self,
        digest: str,
        size: int,
        opener: Callable[[], BinaryIO],
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        """Upload a blob (POST a session, PUT the bytes with `?digest=`)."""
        start = self._send("POST", self._url("blobs", "uploads/"), what="a blob upload")
        start.close()
        if start.status_code != 202 or "Location" not in start.headers:
            self._fail(start, f"upload of blob {digest}")
        location = httpx.URL(self.repo_url).join(start.headers["Location"])
        url = location.copy_merge_params({"digest": digest})

        def body() -> Iterator[bytes]:
            with opener() as f:
                while chunk := f.read(CHUNK):
                    if on_bytes is not None:
                        on_bytes(len(chunk))
                    yield chunk

        response = self._send(
            "PUT",
            str(url),
            {"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            body=body,
            what=f"blob {digest}",
        )
        response.close()
        if response.status_code != 201:
            self._fail(response, f"upload of blob {digest}")
        self.stats.add(blobs_uploaded=1, bytes_uploaded=size)

    # -- plumbing -------------------------------------------------------------------------------
    def _url(self, kind: str, target: str) -> str:
        return f"{self.repo_url}{kind}/{target}"

    def _send(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None = None,
        *,
        body: Callable[[], bytes | Iterator[bytes]] | None = None,
        what: str,
        stream: bool = False,
    ) -> httpx.Response:
        """One request, answering one auth challenge (body re-made for the retry)."""
        for attempt in range(2):
            hdrs = dict(headers or {})
            sent_auth = self.auth.header
            if sent_auth:
                hdrs["Authorization"] = sent_auth
            request = self.http.build_request(
                method, url, headers=hdrs, content=body() if body is not None else None
            )
            try:
                response = self.http.send(request, stream=stream)
            except httpx.TransportError as e:
                raise self._unreachable(e) from None
            self.stats.add(requests=1)
            if response.status_code != 401 or attempt == 1:
                if response.status_code == 401:
                    response.close()
                    if self.auth.header and self.auth.header.startswith("Basic "):
                        raise self.auth.rejected()
                    raise self.auth.denied(self._describe_what(what))
                return response
            challenge = response.headers.get("WWW-Authenticate")
            response.close()
            with self._auth_lock:
                if self.auth.header == sent_auth:  # nobody refreshed it meanwhile
                    self.auth.answer(challenge, self.http)
        raise AssertionError("unreachable")

    def _unreachable(self, e: httpx.TransportError) -> RegistryError:
        reason = str(e) or type(e).__name__
        hint = ""
        if not self.insecure and any(
            s in reason for s in ("WRONG_VERSION_NUMBER", "record layer", "wrong version")
        ):
            hint = " (it speaks plain HTTP? use --insecure)"
        if isinstance(e, httpx.TimeoutException):
            reason = f"timed out ({type(e).__name__})"
        return RegistryUnreachableError(
            f"cannot reach registry {self.ref.registry} at {self.base}: {reason}{hint}"
        )

    def _fail(self, response: httpx.Response, what: str) -> None:
        codes, message = _errors(response)
        status = response.status_code
        if status == 404 or {"NAME_UNKNOWN", "MANIFEST_UNKNOWN", "BLOB_UNKNOWN"} & codes:
            raise self._not_found(what, codes)
        if status in (401, 403) or {"DENIED", "UNAUTHORIZED"} & codes:
            raise self.auth.denied(what)
        if "DIGEST_INVALID" in codes:
            raise DigestMismatchError(
                f"registry {self.ref.registry}: {what}: the registry says the digest does "
                f"not match the content ({message})"
            )
        detail = f": {message}" if message else ""
        raise RegistryError(
            f"registry {self.ref.registry}: {what}: unexpected HTTP {status}{detail}"
        )

    def _tag_not_found(self, tag: str) -> ReferenceNotFoundError:
        """Distribution answers MANIFEST_UNKNOWN for unknown repositories too: ask the tag
        list which one it is (and name some tags that do exist)."""
        response = self._send("GET", self._url("tags", "list"), what="the tag list")
        codes, _ = _errors(response)
        repo = f"{self.ref.registry}/{self.ref.repository}"
        if response.status_code == 404 or "NAME_UNKNOWN" in codes:
            return ReferenceNotFoundError(f"repository {repo} not found")
        try:
            tags = [str(t) for t in response.json().get("tags") or []]
        except (ValueError, AttributeError):
            tags = []
        known = f" (tags: {', '.join(sorted(tags)[:10])})" if tags else ""
        return ReferenceNotFoundError(f"{repo}: tag {tag!r} not found{known}")

    def _not_found(self, what: str, codes: set[str] | None) -> ReferenceNotFoundError:
        repo = f"{self.ref.registry}/{self.ref.repository}"
        if codes and "NAME_UNKNOWN" in codes:
            return ReferenceNotFoundError(f"repository {repo} not found")
        if codes and "BLOB_UNKNOWN" in codes:
            return ReferenceNotFoundError(f"{repo}: {what} not found")
        return ReferenceNotFoundError(f"{repo}: {what} not found")

    def _describe(self, target: str) -> str:
        return f"digest {target}" if target.startswith("sha256:") else f"tag {target!r}"

    def _describe_what(self, what: str) -> str:
        if what.startswith("sha256:") or what == self.ref.target:
            return f"{self.ref.registry}/{self.ref.repository} ({self._describe(what)})"
        return f"{self.ref.registry}/{self.ref.repository} ({what})"


def _errors(response: httpx.Response) -> tuple[set[str], str]:
    """The distribution error codes and first message of an error response."""
    try:
        body = response.json()
    except (ValueError, httpx.ResponseNotRead):
        return set(), ""
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return set(), ""
    codes = {str(e.get("code")) for e in errors if isinstance(e, dict)}
    messages = [str(e.get("message")) for e in errors if isinstance(e, dict) and e.get("message")]
    return codes, messages[0] if messages else ""
