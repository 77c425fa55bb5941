"""containerd's API as the shim uses it: containers, images, content, leases (gRPC)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from google.protobuf import field_mask_pb2

from .grpc import ALREADY_EXISTS, NOT_FOUND, Channel, GrpcError
from .proto import containers_pb2, content_pb2, images_pb2, leases_pb2

_CONTAINERS = "/containerd.services.containers.v1.Containers/"
_IMAGES = "/containerd.services.images.v1.Images/"
_CONTENT = "/containerd.services.content.v1.Content/"
_LEASES = "/containerd.services.leases.v1.Leases/"
_CHUNK = 1 << 20
GC_EXPIRE = "containerd.io/gc.expire"


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str]
    platform: dict[str, Any]

    @classmethod
    def from_json(cls, value: Any) -> Descriptor:
        if not isinstance(value, dict):
            raise ValueError(f"invalid descriptor {value!r}")
        return cls(
            str(value.get("mediaType", "")),
            str(value["digest"]),
            int(value.get("size", 0)),
            dict(value.get("annotations") or {}),
            dict(value.get("platform") or {}),
        )


class Containerd:
    """A namespace of one containerd, through its gRPC socket."""

    def __init__(self, address: str, namespace: str, timeout: float = 30.0) -> None:
        self.channel = Channel(address.removeprefix("unix://"), namespace, timeout)

    # -- containers and images ---------------------------------------------------------
    def container_image(self, container_id: str) -> str:
        """The image name the container was made from ("" for a container without one)."""
        response = self.channel.unary(
            _CONTAINERS + "Get",
            containers_pb2.GetContainerRequest(id=container_id),
            containers_pb2.GetContainerResponse,
        )
        return response.container.image

    def image_target(self, name: str) -> Descriptor:
        image = self.channel.unary(
            _IMAGES + "Get", images_pb2.GetImageRequest(name=name), images_pb2.GetImageResponse
        ).image
        return Descriptor(image.target.media_type, image.target.digest, image.target.size, {}, {})

    # -- content -------------------------------------------------------------------------
    def info(self, digest: str) -> content_pb2.Info | None:
        try:
            return self.channel.unary(
                _CONTENT + "Info",
                content_pb2.InfoRequest(digest=digest),
                content_pb2.InfoResponse,
            ).info
        except GrpcError as e:
            if e.code == NOT_FOUND:
                return None
            raise

    def read_chunks(self, digest: str) -> Iterator[bytes]:
        request = content_pb2.ReadContentRequest(digest=digest)
        for response in self.channel.stream(
            _CONTENT + "Read", request, content_pb2.ReadContentResponse
        ):
            yield response.data

    def read(self, digest: str) -> bytes:
        return b"".join(self.read_chunks(digest))

    def read_json(self, digest: str) -> Any:
        return json.loads(self.read(digest))

    def read_to(self, digest: str, sink: BinaryIO) -> None:
        for chunk in self.read_chunks(digest):
            sink.write(chunk)

    def write(
        self, source: Path, digest: str, labels: dict[str, str], lease: str | None = None
    ) -> None:
        """Store the file `source` (whose digest is `digest`) in the content store."""
        size = source.stat().st_size
        ref = f"wasmlet-{digest.removeprefix('sha256:')[:24]}-{uuid.uuid4().hex[:8]}"
        try:
            with self.channel.call(_CONTENT + "Write", lease) as call, source.open("rb") as f:
                offset = 0
                while chunk := f.read(_CHUNK):
                    call.send(
                        content_pb2.WriteContentRequest(
                            action=content_pb2.WRITE, ref=ref, total=size, expected=digest,
                            offset=offset, data=chunk,
                        )
                    )  # fmt: skip
                    offset += len(chunk)
                    call.receive(content_pb2.WriteContentResponse)
                call.send(
                    content_pb2.WriteContentRequest(
                        action=content_pb2.COMMIT, ref=ref, total=size, expected=digest,
                        offset=offset, labels=labels,
                    ),
                    end=True,
                )  # fmt: skip
                while call.receive(content_pb2.WriteContentResponse) is not None:
                    pass
        except GrpcError as e:
            if e.code != ALREADY_EXISTS:
                raise
            self.set_labels(digest, labels)

    def set_labels(self, digest: str, labels: dict[str, str]) -> None:
        info = content_pb2.Info(digest=digest, labels=labels)
        mask = field_mask_pb2.FieldMask(paths=[f"labels.{key}" for key in labels])
        self.channel.unary(
            _CONTENT + "Update",
            content_pb2.UpdateRequest(info=info, update_mask=mask),
            content_pb2.UpdateResponse,
        )

    # -- leases --------------------------------------------------------------------------
    def create_lease(self, expire: str) -> str:
        """A lease protecting content written under it from GC until `expire` (RFC 3339)."""
        response = self.channel.unary(
            _LEASES + "Create",
            leases_pb2.CreateRequest(
                id=f"wasmlet-precompile-{uuid.uuid4().hex[:12]}", labels={GC_EXPIRE: expire}
            ),
            leases_pb2.CreateResponse,
        )
        return response.lease.id

    def delete_lease(self, lease: str) -> None:
        from google.protobuf import empty_pb2

        self.channel.unary(_LEASES + "Delete", leases_pb2.DeleteRequest(id=lease), empty_pb2.Empty)
