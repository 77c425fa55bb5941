"""The media types and names of Spin's OCI format (`spin registry push`).

One image manifest per app: a layer per component (`WASM_LAYER`), a layer per static file
(`DATA_LAYER`) or one archive per component (`ARCHIVE_LAYER`), and the locked app itself
(`SPIN_APP_LAYER`) last. The OCI config is a standard image config with
`architecture: wasm`, `os: wasip1` and a label naming the locked-app layer's digest.
"""

from __future__ import annotations

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"

SPIN_APP_LAYER = "application/vnd.fermyon.spin.application.v1+config"
WASM_LAYER = "application/vnd.wasm.content.layer.v1+wasm"
WASM_LAYER_WKG = "application/wasm"  # a Wasm binary pushed by `wkg`
DATA_LAYER = "application/vnd.wasm.content.layer.v1+data"
ARCHIVE_LAYER = "application/vnd.wasm.content.bundle.v1.tar+gzip"

WASM_LAYERS = (WASM_LAYER, WASM_LAYER_WKG)
MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEXES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
ACCEPT_MANIFEST = ", ".join((*MANIFESTS, *INDEXES))

LOCKED_APP_DIGEST_LABEL = "com.fermyon.spin.lockedAppDigest"
ARCHITECTURE = "wasm"
OS = "wasip1"

# Content of at most this many bytes is inlined (base64) into the locked app.
INLINE_MAX_SIZE = 128
# Registries cap the layers of one image (ECR: 500); past this, files go in archives.
MAX_LAYER_COUNT = 500
# `SPIN_OCI_ARCHIVE_LAYERS` set (to anything) asks for archive layers, as in Spin.
ARCHIVE_LAYERS_ENV = "SPIN_OCI_ARCHIVE_LAYERS"

ANNOTATION_TITLE = "org.opencontainers.image.title"
ANNOTATION_VERSION = "org.opencontainers.image.version"
ANNOTATION_DESCRIPTION = "org.opencontainers.image.description"
ANNOTATION_AUTHORS = "org.opencontainers.image.authors"
ANNOTATION_CREATED = "org.opencontainers.image.created"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_IMAGE_NAME = "io.containerd.image.name"

ORIGIN_SCHEME = "vnd.fermyon.origin-oci"
