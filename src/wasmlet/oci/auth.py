"""The registry auth handshake: answer a `WWW-Authenticate` challenge.

`Basic` challenges get the stored credentials. `Bearer` challenges (the Docker token flow)
get a token from the challenge's `realm`, asking for `service` and the repository `scope`,
anonymously or with the stored credentials as Basic auth; the token then goes on every
request as `Authorization: Bearer …`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import httpx

from . import credentials as creds
from .errors import RegistryAuthError, RegistryUnreachableError

_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?')


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower case: "basic", "bearer"
    params: dict[str, str] = field(default_factory=dict)


def parse_challenge(header: str) -> Challenge:
    """Parse one `WWW-Authenticate` value, e.g. `Bearer realm="…",service="…",scope="…"`."""
    scheme, _, rest = header.strip().partition(" ")
    params = {
        m.group(1).lower(): m.group(2).replace('\\"', '"') if m.group(2) is not None else m.group(3)
        for m in _PARAM.finditer(rest)
    }
    return Challenge(scheme.lower(), params)


class Authenticator:
    """Holds the `Authorization` header for one registry and repository scope."""

    def __init__(
        self, registry: str, scope: str, credentials: creds.Credentials | None, timeout: float
    ) -> None:
        self.registry = registry
        self.scope = scope
        self.credentials = credentials
        self.timeout = timeout
        self.header: str | None = None

    def answer(self, challenge_header: str | None, http: httpx.Client) -> None:
        """Set `self.header` to answer a 401's challenge; raise when we cannot."""
        if not challenge_header:
            raise RegistryAuthError(
                f"registry {self.registry}: authentication required, but the registry sent "
                "no WWW-Authenticate challenge"
            )
        challenge = parse_challenge(challenge_header)
        if challenge.scheme == "basic":
            if self.credentials is None:
                raise self.missing_credentials()
            if self.header == self.credentials.basic():
                raise self.rejected()
            self.header = self.credentials.basic()
        elif challenge.scheme == "bearer":
            self.header = "Bearer " + self._token(challenge, http)
        else:
            raise RegistryAuthError(
                f"registry {self.registry}: unsupported authentication scheme "
                f"{challenge.scheme!r} (supported: Basic, Bearer)"
            )

    def _token(self, challenge: Challenge, http: httpx.Client) -> str:
        realm = challenge.params.get("realm")
        if not realm:
            raise RegistryAuthError(f"registry {self.registry}: Bearer challenge has no realm")
        params: list[tuple[str, str | int | float | bool | None]] = []
        if challenge.params.get("service"):
            params.append(("service", challenge.params["service"]))
        scopes = [self.scope] if self.scope else []
        asked = challenge.params.get("scope")
        if asked and asked not in scopes:
            scopes.append(asked)
        params += [("scope", s) for s in scopes]
        headers = {}
        if self.credentials is not None:
            headers["Authorization"] = self.credentials.basic()
            params.append(("account", self.credentials.username))
        try:
            response = http.get(realm, params=params, headers=headers, timeout=self.timeout)
        except httpx.TransportError as e:
            raise RegistryUnreachableError(
                f"registry {self.registry}: cannot reach token server {realm}: {e}"
            ) from None
        if response.status_code in (401, 403):
            raise self.rejected() if self.credentials else self.missing_credentials()
        if response.status_code != 200:
            raise RegistryAuthError(
                f"registry {self.registry}: token server {realm} answered {response.status_code}"
            )
        try:
            body = response.json()
            token = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryAuthError(
                f"registry {self.registry}: token server {realm} returned no token"
            )
        return token

    def rejected(self) -> RegistryAuthError:
        assert self.credentials is not None
        return RegistryAuthError(
            f"registry {self.registry}: authentication failed for user "
            f"{self.credentials.username!r} (credentials from {self.credentials.origin}; "
            f"run `wasmlet registry login {self.registry}`)"
        )

    def missing_credentials(self) -> RegistryAuthError:
        note = creds.unsupported_docker_helper(self.registry)
        return RegistryAuthError(
            f"registry {self.registry}: authentication required and no credentials found; "
            f"run `wasmlet registry login {self.registry}`" + (f" ({note})" if note else "")
        )

    def denied(self, what: str) -> RegistryAuthError:
        who = f"user {self.credentials.username!r}" if self.credentials else "anonymous access"
        hint = "" if self.credentials else f"; run `wasmlet registry login {self.registry}`"
        return RegistryAuthError(
            f"registry {self.registry}: access to {what} denied for {who}{hint}"
        )
