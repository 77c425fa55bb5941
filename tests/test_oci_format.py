"""Spin's OCI format, offline: references, the artifact a push builds (byte for byte),
archive layers, the locked app as Spin writes it, OCI image layouts, stored credentials."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import re
import stat
import tarfile
from pathlib import Path

import pytest
from fixtures.oci.apps import BIG, BLOB, SMALL, make_app
from support.env import TESTBED
from support.server import run_cli, write_app

from wasmlet.errors import LockError, NotSupportedError
from wasmlet.loader import load_app
from wasmlet.oci import (
    InvalidReferenceError,
    assemble,
    build_image,
    from_spin_json,
    parse_reference,
)
from wasmlet.oci import credentials as creds
from wasmlet.oci.auth import parse_challenge
from wasmlet.oci.reference import Reference

WASM = "application/vnd.wasm.content.layer.v1+wasm"
DATA = "application/vnd.wasm.content.layer.v1+data"
ARCHIVE = "application/vnd.wasm.content.bundle.v1.tar+gzip"
SPIN_APP = "application/vnd.fermyon.spin.application.v1+config"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def compact(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


# -- references -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ghcr.io/acme/app:v1", Reference("ghcr.io", "acme/app", "v1")),
        ("localhost:5000/app", Reference("localhost:5000", "app", "latest")),
        ("127.0.0.1:5000/a/b/c:1.0", Reference("127.0.0.1:5000", "a/b/c", "1.0")),
        ("acme/app:v2", Reference("docker.io", "acme/app", "v2")),
        ("nginx", Reference("docker.io", "library/nginx", "latest")),
        (
            "ghcr.io/acme/app@sha256:" + "a" * 64,
            Reference("ghcr.io", "acme/app", None, "sha256:" + "a" * 64),
        ),
        (
            "ghcr.io/acme/app:v1@sha256:" + "b" * 64,
            Reference("ghcr.io", "acme/app", "v1", "sha256:" + "b" * 64),
        ),
    ],
)
def test_parse_reference(text: str, expected: Reference) -> None:
    assert parse_reference(text) == expected


@pytest.mark.parametrize(
    "text", ["", "ghcr.io/Acme/app:v1", "ghcr.io/acme/app:v/1", "https://ghcr.io/a/b", "a/b@md5:1"]
)
def test_invalid_reference(text: str) -> None:
    with pytest.raises(InvalidReferenceError):
        parse_reference(text)


def test_docker_hub_api_host() -> None:
    assert parse_reference("acme/app:v1").api_host == "registry-1.docker.io"
    assert str(parse_reference("nginx")) == "docker.io/library/nginx:latest"


def test_parse_challenge() -> None:
    c = parse_challenge(
        'Bearer realm="https://auth.example/token",service="reg.example",'
        'scope="repository:acme/app:pull,push"'
    )
    assert c.scheme == "bearer"
    assert c.params == {
        "realm": "https://auth.example/token",
        "service": "reg.example",
        "scope": "repository:acme/app:pull,push",
    }
    assert parse_challenge('Basic realm="basic-realm"').params == {"realm": "basic-realm"}


# -- the artifact -----------------------------------------------------------------------------


def test_artifact_matches_spin_format_byte_for_byte(tmp_path: Path) -> None:
    app = load_app(make_app(tmp_path / "app"))
    artifact = assemble(app, tmp_path, archive=False)
    wasm = TESTBED.read_bytes()

    # Layers: component wasm, then its files (big: layer; small: inline, no layer; dup:
    # deduplicated); the second component's wasm and file are duplicates; locked app last.
    assert [(b.media_type, b.digest, b.size) for b in artifact.layers] == [
        (WASM, digest(wasm), len(wasm)),
        (DATA, digest(BLOB), len(BLOB)),
        (DATA, digest(BIG), len(BIG)),
        (SPIN_APP, digest(artifact.locked_app), len(artifact.locked_app)),
    ]

    config = compact(
        {
            "architecture": "wasm",
            "os": "wasip1",
            "config": {"Labels": {"com.fermyon.spin.lockedAppDigest": digest(artifact.locked_app)}},
            "rootfs": {"type": "layers", "diff_ids": []},
        }
    )
    assert artifact.config.media_type == OCI_CONFIG
    assert artifact.config.read() == config

    created = artifact.manifest_json["annotations"]["org.opencontainers.image.created"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00", created)
    expected = compact(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": digest(config), "size": len(config)},
            "layers": [
                {"mediaType": b.media_type, "digest": b.digest, "size": b.size}
                for b in artifact.layers
            ],
            "annotations": {
                "org.opencontainers.image.authors": "Ada <ada@example.com>, Grace",
                "org.opencontainers.image.created": created,
                "org.opencontainers.image.description": "OCI round trip",
                "org.opencontainers.image.title": "oci-test",
                "org.opencontainers.image.version": "1.2.3",
            },
        }
    )
    assert artifact.manifest == expected


def test_locked_app_layer_content(tmp_path: Path) -> None:
    app = load_app(make_app(tmp_path / "app"))
    artifact = assemble(app, tmp_path, archive=False)
    locked = json.loads(artifact.locked_app)
    assert artifact.locked_app == compact(locked)  # compact, as serde_json writes it
    assert locked["spin_lock_version"] == 0  # Spin's rule: 0 without must_understand
    assert "origin" not in locked["metadata"]
    assert list(locked) == ["spin_lock_version", "metadata", "triggers", "components"]
    testbed, again = locked["components"]
    assert testbed["source"] == {
        "content_type": "application/wasm",
        "digest": digest(TESTBED.read_bytes()),
    }
    assert testbed["env"] == {"GREETING": "hi"}
    assert testbed["files"] == [
        {"digest": digest(BLOB), "path": "data/blob.bin"},
        {"digest": digest(BIG), "path": "static/big.txt"},
        {
            "inline": base64.b64encode(SMALL).decode(),
            "digest": digest(SMALL),
            "path": "static/small.txt",
        },
        {"digest": digest(BIG), "path": "static/sub/dup.txt"},
    ]
    assert again["files"] == [{"digest": digest(BLOB), "path": "blob.bin"}]
    # wasmlet reads it back (version 0 → 1)
    assert from_spin_json(artifact.locked_app, "test").components[0].id == "testbed"


def test_inline_boundary_is_128_bytes(tmp_path: Path) -> None:
    files = {"f/a128": b"a" * 128, "f/b129": b"b" * 129}
    app_dir = write_app(
        tmp_path / "app",
        """
        spin_manifest_version = 2
        [application]
        name = "edge"
        [[trigger.http]]
        route = "/..."
        component = "c"
        executor = { type = "wagi" }
        [component.c]
        source = "{testbed}"
        files = ["f/*"]
        """,
        files,
    )
    artifact = assemble(load_app(app_dir), tmp_path, archive=False)
    locked = json.loads(artifact.locked_app)
    a, b = locked["components"][0]["files"]
    assert "inline" in a and "inline" not in b
    assert [x.media_type for x in artifact.layers] == [WASM, DATA, SPIN_APP]
    assert artifact.layers[1].digest == digest(b"b" * 129)


def test_archive_layers(tmp_path: Path) -> None:
    app = load_app(make_app(tmp_path / "app"))
    artifact = assemble(app, tmp_path, archive=True)
    media = [b.media_type for b in artifact.layers]
    assert media == [WASM, ARCHIVE, ARCHIVE, SPIN_APP]
    archive = artifact.layers[1].read()
    assert gzip.decompress(archive)  # a gzip stream
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        names = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]
    assert names == {
        "data/blob.bin": BLOB,
        "static/big.txt": BIG,
        "static/small.txt": SMALL,
        "static/sub/dup.txt": BIG,
    }
    locked = json.loads(artifact.locked_app)
    # File entries are unchanged: digests (and inline for small content).
    assert [f["path"] for f in locked["components"][0]["files"]] == sorted(names)
    # Deterministic: the same files make the same archive.
    (tmp_path / "again").mkdir()
    again = assemble(app, tmp_path / "again", archive=True)
    assert again.layers[1].digest == artifact.layers[1].digest


def test_archive_env_var_and_layer_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = load_app(make_app(tmp_path / "app"))
    monkeypatch.setenv("SPIN_OCI_ARCHIVE_LAYERS", "1")
    assert ARCHIVE in [b.media_type for b in assemble(app, tmp_path).layers]
    monkeypatch.delenv("SPIN_OCI_ARCHIVE_LAYERS")
    assert ARCHIVE not in [b.media_type for b in assemble(app, tmp_path).layers]

    many = {f"many/f{i:03}.txt": f"{i:03}".encode() * 50 for i in range(499)}
    app_dir = write_app(
        tmp_path / "many",
        """
        spin_manifest_version = 2
        [application]
        name = "many"
        [[trigger.http]]
        route = "/..."
        component = "c"
        executor = { type = "wagi" }
        [component.c]
        source = "{testbed}"
        files = ["many/*"]
        """,
        many,
    )
    # 1 wasm + 499 data layers = 500 > 499: archive mode, as in Spin.
    layers = assemble(load_app(app_dir), tmp_path).layers
    assert [b.media_type for b in layers] == [WASM, ARCHIVE, SPIN_APP]


def test_component_source_must_be_wasm(tmp_path: Path) -> None:
    app_dir = write_app(
        tmp_path / "app",
        """
        spin_manifest_version = 2
        [application]
        name = "bad"
        [[trigger.http]]
        route = "/..."
        component = "c"
        executor = { type = "wagi" }
        [component.c]
        source = "not.wasm"
        """,
        {"not.wasm": b"#!/bin/sh\n"},
    )
    with pytest.raises(LockError, match="not a WebAssembly binary"):
        assemble(load_app(app_dir), tmp_path)


# -- the locked app as Spin writes it ------------------------------------------------------------


def test_from_spin_json_tolerates_spin_fields() -> None:
    doc = {
        "spin_lock_version": 0,
        "metadata": {"name": "x"},
        "triggers": [{"id": "t", "trigger_type": "http", "trigger_config": {"component": "c"}}],
        "components": [
            {
                "id": "c",
                "source": {"content_type": "application/wasm", "digest": "sha256:" + "0" * 64},
                "trigger_dependencies": {},
            }
        ],
        "unknown_but_empty": {},
    }
    app = from_spin_json(json.dumps(doc), "test")
    assert app.spin_lock_version == 1
    doc["components"][0]["trigger_dependencies"] = {"x": []}  # type: ignore[index]
    with pytest.raises(NotSupportedError, match="trigger_dependencies"):
        from_spin_json(json.dumps(doc), "test")
    with pytest.raises(LockError, match="spin_lock_version"):
        from_spin_json(json.dumps({**doc, "spin_lock_version": 7}), "test")


# -- OCI image layout ---------------------------------------------------------------------------


def _check_layout(files: dict[str, bytes]) -> None:
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(files["index.json"])
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    (entry,) = index["manifests"]
    assert entry["annotations"] == {
        "io.containerd.image.name": "localhost/oci-test:1.2.3",
        "org.opencontainers.image.ref.name": "1.2.3",
    }
    blobs = {k.removeprefix("blobs/sha256/"): v for k, v in files.items() if k.startswith("blobs/")}
    for name, data in blobs.items():
        assert hashlib.sha256(data).hexdigest() == name
    manifest = json.loads(blobs[entry["digest"].removeprefix("sha256:")])
    assert entry["mediaType"] == manifest["mediaType"] == OCI_MANIFEST
    for d in [manifest["config"], *manifest["layers"]]:
        assert len(blobs[d["digest"].removeprefix("sha256:")]) == d["size"]


def test_build_image_dir_and_archive(tmp_path: Path) -> None:
    app_dir = make_app(tmp_path / "app")
    out = tmp_path / "image"
    r = run_cli("registry", "build-image", "-f", str(app_dir), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "Digest: sha256:" in r.stdout
    _check_layout({str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()})

    tar_path = tmp_path / "image.tar"
    build_image(load_app(app_dir), tar_path)
    with tarfile.open(tar_path) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]
    _check_layout(files)

    r = run_cli("registry", "build-image", "-f", str(app_dir), "-o", str(out))
    assert r.returncode == 1 and "not an empty directory" in r.stderr


# -- credentials ----------------------------------------------------------------------------------


def test_login_store_is_private_and_docker_config_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WASMLET_CONFIG_DIR", str(tmp_path / "wasmlet"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    assert creds.lookup("reg.example:5000") is None

    (tmp_path / "docker").mkdir()
    auth = base64.b64encode(b"dockeruser:dockerpass").decode()
    (tmp_path / "docker/config.json").write_text(
        json.dumps({"auths": {"https://reg.example:5000": {"auth": auth}}})
    )
    found = creds.lookup("reg.example:5000")
    assert found is not None and (found.username, found.password) == ("dockeruser", "dockerpass")

    path = creds.save_login("reg.example:5000", "me", "pw:with:colons")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    found = creds.lookup("reg.example:5000")  # wasmlet's store wins
    assert found is not None and (found.username, found.password) == ("me", "pw:with:colons")
    assert creds.remove_login("reg.example:5000")
    assert creds.lookup("reg.example:5000").username == "dockeruser"  # type: ignore[union-attr]
