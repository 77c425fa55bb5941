"""Push, pull and run apps against a real registry on loopback: Debian's `docker-registry`
(CNCF Distribution) with no auth, htpasswd Basic auth, and token auth (a small token server
in `fixtures/oci/registry.py`). Checks what lands in the registry byte for byte, the cache,
the old Spin format, and every error a user can hit."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fixtures.oci.apps import BIG, BLOB, SMALL, make_app
from fixtures.oci.registry import (
    REGISTRY_BIN,
    Registry,
    TokenServer,
    htpasswd,
    self_signed_tls,
    start_registry,
)
from support.env import HELLO, TESTBED, free_port, require_tool
from support.server import run_cli, write_app

from wasmlet.loader import load_app
from wasmlet.locked import read_content
from wasmlet.oci import (
    DigestMismatchError,
    ReferenceNotFoundError,
    RegistryAuthError,
    RegistryUnreachableError,
    pull,
    push_app,
)
from wasmlet.oci.progress import Quiet

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
USERS = {"alice": "wonderland"}
STDIN = ("--password-stdin", "-k")


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="session")
def registry_bin() -> str:
    return require_tool(REGISTRY_BIN, "docker-registry")


@pytest.fixture(scope="session")
def registry(registry_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = start_registry(tmp_path_factory.mktemp("registry-open"))
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def basic_registry(
    registry_bin: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Registry]:
    work = tmp_path_factory.mktemp("registry-basic")
    users = htpasswd(work / "htpasswd", USERS)
    reg = start_registry(work, {"htpasswd": {"realm": "wasmlet-test", "path": str(users)}})
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def token_registry(
    registry_bin: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Registry, TokenServer]]:
    work = tmp_path_factory.mktemp("registry-token")
    tokens = TokenServer(USERS, work / "token")
    reg = start_registry(work, tokens.registry_auth())
    yield reg, tokens
    reg.stop()
    tokens.stop()


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh registry cache, login store and Docker config for each test."""
    monkeypatch.setenv("WASMLET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("WASMLET_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.delenv("SPIN_OCI_ARCHIVE_LAYERS", raising=False)
    return tmp_path / "cache"


def quiet_pull(ref: str, **kw: object):  # type: ignore[no-untyped-def]
    return pull(ref, insecure=True, progress=Quiet(), **kw)  # type: ignore[arg-type]


def quiet_push(app_dir: Path, ref: str, **kw: object):  # type: ignore[no-untyped-def]
    return push_app(load_app(app_dir), ref, insecure=True, progress=Quiet(), **kw)  # type: ignore[arg-type]


def files_of(result, component: str = "testbed") -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    c = result.app.component(component)
    return {f.path: read_content(f, f.path) for f in c.files}


# -- round trip -----------------------------------------------------------------------------------


def test_push_pull_up_round_trip(registry: Registry, tmp_path: Path, server_factory) -> None:  # type: ignore[no-untyped-def]
    app_dir = make_app(tmp_path / "app")
    ref = registry.ref("wasmlet/round-trip:v1")
    r = run_cli("registry", "push", ref, "-f", str(app_dir), "--insecure")
    assert r.returncode == 0, r.stderr
    pushed = r.stdout.split("Digest: ")[1].strip()
    assert pushed.startswith("sha256:")

    r = run_cli("registry", "pull", ref, "--insecure")
    assert r.returncode == 0, r.stderr
    assert f"Digest: {pushed}" in r.stdout

    server = server_factory(ref, "--insecure")
    assert server.get("/t/?mode=file&path=/static/big.txt").content == BIG
    assert server.get("/t/?mode=file&path=/static/small.txt").content == SMALL
    assert server.get("/t/?mode=file&path=/static/sub/dup.txt").content == BIG
    assert server.get("/t/?mode=file&path=/data/blob.bin").content == BLOB
    assert server.get("/again/?mode=file&path=/blob.bin").content == BLOB
    assert "GREETING=hi" in server.get("/t/?mode=env").text


def test_registry_holds_the_exact_artifact(registry: Registry, tmp_path: Path) -> None:
    result = quiet_push(make_app(tmp_path / "app"), registry.ref("wasmlet/exact:v1"))
    artifact = result.artifact
    base = f"http://{registry.host}/v2/wasmlet/exact"
    m = httpx.get(f"{base}/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert m.status_code == 200
    assert m.content == artifact.manifest
    assert m.headers["Content-Type"] == OCI_MANIFEST
    assert m.headers["Docker-Content-Digest"] == result.digest == digest(m.content)
    manifest = m.json()
    assert [x["mediaType"] for x in manifest["layers"]] == [
        "application/vnd.wasm.content.layer.v1+wasm",
        "application/vnd.wasm.content.layer.v1+data",
        "application/vnd.wasm.content.layer.v1+data",
        "application/vnd.fermyon.spin.application.v1+config",
    ]
    config = httpx.get(f"{base}/blobs/{manifest['config']['digest']}").json()
    assert config["architecture"] == "wasm" and config["os"] == "wasip1"
    locked_digest = manifest["layers"][-1]["digest"]
    assert config["config"]["Labels"] == {"com.fermyon.spin.lockedAppDigest": locked_digest}
    assert httpx.get(f"{base}/blobs/{locked_digest}").content == artifact.locked_app
    for layer in manifest["layers"]:
        blob = httpx.get(f"{base}/blobs/{layer['digest']}").content
        assert (digest(blob), len(blob)) == (layer["digest"], layer["size"])

    # Pushing the same app again uploads no blob (all exist); only a new manifest.
    again = quiet_push(make_app(tmp_path / "app"), registry.ref("wasmlet/exact:v2"))
    assert (again.stats.blobs_uploaded, again.stats.bytes_uploaded) == (0, 0)


def test_archive_layers_round_trip(registry: Registry, tmp_path: Path) -> None:
    ref = registry.ref("wasmlet/archive:v1")
    r = run_cli(
        "registry", "push", ref, "-f", str(make_app(tmp_path / "app")), "-k", "--archive-layers"
    )
    assert r.returncode == 0, r.stderr
    result = quiet_pull(ref)
    manifest = json.loads(
        httpx.get(
            f"http://{registry.host}/v2/wasmlet/archive/manifests/v1",
            headers={"Accept": OCI_MANIFEST},
        ).content
    )
    assert "application/vnd.wasm.content.bundle.v1.tar+gzip" in [
        x["mediaType"] for x in manifest["layers"]
    ]
    assert files_of(result) == {
        "data/blob.bin": BLOB,
        "static/big.txt": BIG,
        "static/small.txt": SMALL,
        "static/sub/dup.txt": BIG,
    }
    assert files_of(result, "again") == {"blob.bin": BLOB}


def test_old_format_and_wkg_layers(registry: Registry, tmp_path: Path, server_factory) -> None:  # type: ignore[no-untyped-def]
    """Spin ≤ 2.0 pushed the locked app as the OCI config; `application/wasm` layers."""
    wasm = HELLO.read_bytes()
    data = b"old format file\n" * 20
    locked = {
        "spin_lock_version": 0,
        "metadata": {"name": "old", "trigger": {"type": "http"}},
        "triggers": [
            {
                "id": "t",
                "trigger_type": "http",
                "trigger_config": {
                    "component": "hello",
                    "route": "/...",
                    "executor": {"type": "wagi"},
                },
            }
        ],
        "components": [
            {
                "id": "hello",
                "source": {"content_type": "application/wasm", "digest": digest(wasm)},
                "files": [
                    {"digest": digest(data), "path": "docs/old.txt"},
                    {"inline": base64.b64encode(b"tiny").decode(), "path": "tiny.txt"},
                ],
            }
        ],
    }
    config = json.dumps(locked).encode()
    base = f"http://{registry.host}/v2/wasmlet/old-format"
    for blob in (wasm, data, config):
        start = httpx.post(f"{base}/blobs/uploads/")
        url = (
            httpx.URL(base)
            .join(start.headers["Location"])
            .copy_merge_params({"digest": digest(blob)})
        )
        assert httpx.put(url, content=blob).status_code == 201
    manifest = {
        "schemaVersion": 2,
        "config": {
            "mediaType": "application/vnd.fermyon.spin.application.v1+config",
            "digest": digest(config),
            "size": len(config),
        },
        "layers": [
            {"mediaType": "application/wasm", "digest": digest(wasm), "size": len(wasm)},
            {
                "mediaType": "application/vnd.wasm.content.layer.v1+data",
                "digest": digest(data),
                "size": len(data),
            },
        ],
    }
    r = httpx.put(
        f"{base}/manifests/v1", content=json.dumps(manifest), headers={"Content-Type": OCI_MANIFEST}
    )
    assert r.status_code == 201, r.text

    ref = registry.ref("wasmlet/old-format:v1")
    result = quiet_pull(ref)
    assert result.legacy_format
    assert files_of(result, "hello") == {"docs/old.txt": data, "tiny.txt": b"tiny"}
    assert read_content(result.app.component("hello").source, "src") == wasm
    r = run_cli("registry", "pull", ref, "-k")
    assert "old Spin format" in r.stdout
    assert server_factory(ref, "-k").get("/").text == "Hello from wasmlet!\n"


# -- the cache ------------------------------------------------------------------------------------


def test_second_pull_transfers_no_blobs(registry: Registry, tmp_path: Path) -> None:
    ref = registry.ref("wasmlet/cached:v1")
    pushed = quiet_push(make_app(tmp_path / "app"), ref)
    first = quiet_pull(ref)
    assert first.stats.blobs_downloaded == 5  # config, wasm, 2 data, locked app
    assert first.digest == pushed.digest
    second = quiet_pull(ref)
    assert (second.stats.blobs_downloaded, second.stats.bytes_downloaded) == (0, 0)
    assert second.stats.requests == 1  # HEAD of the tag's manifest
    pinned = quiet_pull(f"{ref}@{pushed.digest}")
    assert pinned.stats.requests == 0  # pinned by digest and cached: no network at all
    assert files_of(pinned) == files_of(first)


def test_corrupted_cache_blob_is_refetched(
    registry: Registry, tmp_path: Path, isolated: Path
) -> None:
    ref = registry.ref("wasmlet/corrupt-cache:v1")
    quiet_push(make_app(tmp_path / "app"), ref)
    quiet_pull(ref)
    wasm_file = (
        isolated / "registry/wasm/sha256" / digest(TESTBED.read_bytes()).removeprefix("sha256:")
    )
    data_file = isolated / "registry/data/sha256" / digest(BIG).removeprefix("sha256:")
    wasm_file.write_bytes(b"\0asm garbage")
    data_file.write_bytes(b"X" * len(BIG))
    again = quiet_pull(ref)
    assert again.stats.blobs_downloaded == 2
    assert wasm_file.read_bytes() == TESTBED.read_bytes()
    assert files_of(again)["static/big.txt"] == BIG


def test_concurrent_pulls_share_the_cache(
    registry: Registry, tmp_path: Path, isolated: Path
) -> None:
    ref = registry.ref("wasmlet/concurrent:v1")
    quiet_push(make_app(tmp_path / "app"), ref)
    results: list[object] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            results.append(files_of(quiet_pull(ref)))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 6
    assert all(r == results[0] for r in results)
    assert not list(isolated.rglob(".tmp-*"))  # no partial entries left behind


# -- errors ---------------------------------------------------------------------------------------


def test_unknown_repository_and_tag(registry: Registry, tmp_path: Path) -> None:
    quiet_push(make_app(tmp_path / "app"), registry.ref("wasmlet/known:v1"))
    with pytest.raises(ReferenceNotFoundError, match=r"repository .*wasmlet/nope not found"):
        quiet_pull(registry.ref("wasmlet/nope:v1"))
    with pytest.raises(ReferenceNotFoundError, match=r"known: tag .v9. not found \(tags: v1\)"):
        quiet_pull(registry.ref("wasmlet/known:v9"))
    r = run_cli("registry", "pull", registry.ref("wasmlet/known:v9"), "-k")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        f"Error: {registry.host}/wasmlet/known: tag 'v9' not found (tags: v1)"
    ]
    r = run_cli("up", "-f", registry.ref("wasmlet/nope:v1"), "-k")
    assert r.returncode == 1 and "not found" in r.stderr.strip().splitlines()[-1]


def test_digest_mismatch_from_registry(registry: Registry, tmp_path: Path) -> None:
    ref = registry.ref("wasmlet/tampered:v1")
    app_dir = write_app(
        tmp_path / "app",
        """
        spin_manifest_version = 2
        [application]
        name = "tampered"
        [[trigger.http]]
        route = "/..."
        component = "c"
        executor = { type = "wagi" }
        [component.c]
        source = "{hello}"
        files = ["payload.bin"]
        """,
        {"payload.bin": b"unique payload for the tamper test\n" * 10},
    )
    quiet_push(app_dir, ref)
    stored = registry.blob_file(digest(b"unique payload for the tamper test\n" * 10))
    stored.write_bytes(b"tampered payload, same length!!!!!!\n" * 10)
    with pytest.raises(DigestMismatchError, match=r"digest mismatch: blob .* has content digest"):
        quiet_pull(ref)
    r = run_cli("registry", "pull", ref, "-k")
    assert r.returncode == 1 and "content digest" in r.stderr


def test_registry_unreachable() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(RegistryUnreachableError, match=f"cannot reach registry 127.0.0.1:{port}"):
        quiet_pull(f"127.0.0.1:{port}/wasmlet/app:v1")
    r = run_cli("registry", "pull", f"127.0.0.1:{port}/wasmlet/app:v1", "-k")
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1 and "cannot reach registry" in r.stderr


def test_https_registry(registry_bin: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTPS is the default: a TLS registry whose certificate is trusted (SSL_CERT_FILE)."""
    cert, key = self_signed_tls(tmp_path / "tls")
    tls_registry = start_registry(tmp_path / "registry", tls=(cert, key))
    try:
        ref = tls_registry.ref("wasmlet/tls:v1")
        app = load_app(make_app(tmp_path / "app"))
        with pytest.raises(RegistryUnreachableError, match="CERTIFICATE_VERIFY_FAILED"):
            push_app(app, ref, progress=Quiet())
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        assert push_app(app, ref, progress=Quiet()).digest
        assert files_of(pull(ref, progress=Quiet()))["static/big.txt"] == BIG
    finally:
        tls_registry.stop()


def test_plain_http_registry_needs_insecure(registry: Registry) -> None:
    """Without --insecure wasmlet speaks TLS, and says what to do with a plain-HTTP one."""
    r = run_cli("registry", "pull", registry.ref("wasmlet/known:v1"))
    assert r.returncode == 1
    assert f"cannot reach registry {registry.host} at https://" in r.stderr
    assert "--insecure" in r.stderr


# -- Basic auth (htpasswd) ------------------------------------------------------------------------


def test_basic_auth_login_push_pull(basic_registry: Registry, tmp_path: Path) -> None:
    ref = basic_registry.ref("wasmlet/private:v1")
    app_dir = make_app(tmp_path / "app")
    with pytest.raises(RegistryAuthError, match="authentication required and no credentials"):
        quiet_push(app_dir, ref)

    host = basic_registry.host
    r = run_cli("registry", "login", host, "-u", "alice", "-p", "wrong", "-k")
    assert r.returncode == 1 and "authentication failed for user 'alice'" in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "wasmlet.cli", "registry", "login", host, "-u", "alice", *STDIN],
        input="wonderland\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    auth_file = tmp_path / "config/auth.json"
    assert stat.S_IMODE(auth_file.stat().st_mode) == 0o600

    assert quiet_push(app_dir, ref).digest
    assert files_of(quiet_pull(ref))["static/big.txt"] == BIG


def test_basic_auth_from_docker_config(
    basic_registry: Registry, tmp_path: Path, isolated: Path
) -> None:
    ref = basic_registry.ref("wasmlet/docker-creds:v1")
    docker = tmp_path / "docker"
    docker.mkdir()
    encoded = base64.b64encode(b"alice:wonderland").decode()
    (docker / "config.json").write_text(
        json.dumps({"auths": {basic_registry.host: {"auth": encoded}}})
    )
    assert quiet_push(make_app(tmp_path / "app"), ref).digest
    assert quiet_pull(ref).stats.blobs_downloaded == 5

    bad = base64.b64encode(b"alice:nope").decode()
    (docker / "config.json").write_text(json.dumps({"auths": {basic_registry.host: {"auth": bad}}}))
    with pytest.raises(RegistryAuthError, match="authentication failed for user 'alice'"):
        quiet_pull(ref)


# -- token auth (the Docker bearer flow) ----------------------------------------------------------


def test_token_auth(token_registry: tuple[Registry, TokenServer], tmp_path: Path) -> None:
    registry, tokens = token_registry
    app_dir = make_app(tmp_path / "app")
    private = registry.ref("acme/app:v1")
    public = registry.ref("public/app:v1")

    # Anonymous: the token server grants nothing to push.
    with pytest.raises(RegistryAuthError, match="denied for anonymous access"):
        quiet_push(app_dir, private)

    host = registry.host
    r = run_cli("registry", "login", host, "-u", "alice", "-p", "nope", "-k")
    assert r.returncode == 1 and "authentication failed for user 'alice'" in r.stderr
    r = run_cli("registry", "login", host, "-u", "alice", "-p", "wonderland", "-k")
    assert r.returncode == 0, r.stderr

    assert quiet_push(app_dir, private).digest
    assert quiet_push(app_dir, public).digest
    assert tokens.requests[-1]["user"] == "alice"
    assert any("pull,push" in s for s in tokens.requests[-1]["scopes"])
    assert files_of(quiet_pull(private))["static/big.txt"] == BIG

    # Logged out: anonymous tokens still pull public repositories, not private ones.
    assert run_cli("registry", "logout", host).returncode == 0
    assert files_of(quiet_pull(public))["static/small.txt"] == SMALL
    assert tokens.requests[-1]["user"] is None
    with pytest.raises(RegistryAuthError, match="denied for anonymous access"):
        quiet_pull(private)
