"""containerd's API as the shim uses it: containers, images, content, leases (gRPC).

The calls go through grpclib (asyncio gRPC on `h2`, pure Python) over containerd's unix
socket, with the protobuf classes in `proto/` as messages; no generated stubs are needed. One
HTTP/2 connection per shim, opened on first use and opened again after containerd restarts.
Every call carries the shim's namespace; a failed call raises `ContainerdError` naming the
method and the gRPC status.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from google.protobuf import empty_pb2, field_mask_pb2
from google.protobuf.message import Message
from grpclib.client import Channel, Stream
from grpclib.config import Configuration
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError, StreamTerminatedError

from .proto import containers_pb2, content_pb2, images_pb2, leases_pb2

_CONTAINERS = "/containerd.services.containers.v1.Containers/"
_IMAGES = "/containerd.services.images.v1.Images/"
_CONTENT = "/containerd.services.content.v1.Content/"
_LEASES = "/containerd.services.leases.v1.Leases/"
_CHUNK = 1 << 20
# containerd sends content in 1 MiB messages: a larger window than grpclib's 4 MiB default
# keeps it sending while a chunk is written out
_WINDOW = 16 << 20
GC_EXPIRE = "containerd.io/gc.expire"

Req = TypeVar("Req", bound=Message)
Rep = TypeVar("Rep", bound=Message)


class ContainerdError(Exception):
    """A call to containerd failed: its gRPC status, or containerd could not be reached."""

    def __init__(self, method: str, status: Status, message: str) -> None:
        super().__init__(f"{method}: {message} (grpc status {status.value} {status.name})")
        self.method = method
        self.status = status
        self.message = message


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
    """A namespace of one containerd, through its gRPC socket.

    `timeout` bounds a unary call as a whole, and each message of a streaming one (content
    reads and writes), so a large blob is not cut off while it keeps moving.
    """

    def __init__(self, address: str, namespace: str, timeout: float = 30.0) -> None:
        self.path = address.removeprefix("unix://")
        self.namespace = namespace
        self.timeout = timeout
        self._channel: Channel | None = None

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    @contextlib.asynccontextmanager
    async def _stream(
        self,
        method: str,
        cardinality: Cardinality,
        request_type: type[Req],
        reply_type: type[Rep],
        lease: str | None = None,
    ) -> AsyncIterator[Stream[Req, Rep]]:
        """A call with the request headers sent; grpclib's errors become ContainerdError."""
        if self._channel is None:  # made on first use: grpclib binds it to the running loop
            config = Configuration(
                http2_connection_window_size=_WINDOW, http2_stream_window_size=_WINDOW
            )
            self._channel = Channel(path=self.path, config=config)
        metadata = {"containerd-namespace": self.namespace}
        if lease:
            metadata["containerd-lease"] = lease
        unary = cardinality is Cardinality.UNARY_UNARY
        try:
            async with self._channel.request(
                method,
                cardinality,
                request_type,
                reply_type,
                timeout=self.timeout if unary else None,
                metadata=metadata,
            ) as stream:
                try:
                    async with asyncio.timeout(self.timeout):
                        await stream.send_request()
                except TimeoutError:
                    raise
                except OSError as e:  # only connecting raises OSError; later losses are below
                    raise ContainerdError(
                        method, Status.UNAVAILABLE, f"cannot connect to {self.path}: {e}"
                    ) from None
                yield stream
        except GRPCError as e:
            raise ContainerdError(method, e.status, e.message or e.status.name) from None
        except StreamTerminatedError as e:
            raise ContainerdError(method, Status.UNAVAILABLE, str(e) or "connection lost") from None
        except TimeoutError:
            raise ContainerdError(
                method, Status.DEADLINE_EXCEEDED, f"no answer within {self.timeout:g} s"
            ) from None

    async def _unary(
        self, method: str, request: Req, reply_type: type[Rep], lease: str | None = None
    ) -> Rep:
        async with self._stream(
            method, Cardinality.UNARY_UNARY, type(request), reply_type, lease
        ) as stream:
            await stream.send_message(request, end=True)
            reply = await stream.recv_message()
        if reply is None:
            raise ContainerdError(method, Status.UNKNOWN, "no response message")
        return reply

    # -- containers and images ---------------------------------------------------------
    async def container_image(self, container_id: str) -> str:
        """The image name the container was made from ("" for a container without one)."""
        response = await self._unary(
            _CONTAINERS + "Get",
            containers_pb2.GetContainerRequest(id=container_id),
            containers_pb2.GetContainerResponse,
        )
        return str(response.container.image)

    async def image_target(self, name: str) -> Descriptor:
        response = await self._unary(
            _IMAGES + "Get", images_pb2.GetImageRequest(name=name), images_pb2.GetImageResponse
        )
        target = response.image.target
        return Descriptor(target.media_type, target.digest, target.size, {}, {})

    # -- content -------------------------------------------------------------------------
    async def info(self, digest: str) -> content_pb2.Info | None:
        try:
            response = await self._unary(
                _CONTENT + "Info", content_pb2.InfoRequest(digest=digest), content_pb2.InfoResponse
            )
        except ContainerdError as e:
            if e.status == Status.NOT_FOUND:
                return None
            raise
        return response.info

    async def _chunks(self, digest: str) -> AsyncGenerator[bytes, None]:
        request = content_pb2.ReadContentRequest(digest=digest)
        async with self._stream(
            _CONTENT + "Read",
            Cardinality.UNARY_STREAM,
            content_pb2.ReadContentRequest,
            content_pb2.ReadContentResponse,
        ) as stream:
            await stream.send_message(request, end=True)
            while True:
                async with asyncio.timeout(self.timeout):
                    response = await stream.recv_message()
                if response is None:
                    return
                yield response.data

    async def read_into(self, digest: str, sink: BinaryIO) -> str:
        """Stream the blob `digest` into `sink`; returns the digest of what was written."""
        h = hashlib.sha256()
        # closed at once if the sink fails, so the HTTP/2 stream is reset, not left open
        async with contextlib.aclosing(self._chunks(digest)) as chunks:
            async for chunk in chunks:
                h.update(chunk)
                sink.write(chunk)
        return f"sha256:{h.hexdigest()}"

    async def read(self, digest: str) -> bytes:
        async with contextlib.aclosing(self._chunks(digest)) as chunks:
            return b"".join([chunk async for chunk in chunks])

    async def read_json(self, digest: str) -> Any:
        return json.loads(await self.read(digest))

    async def write(
        self, source: Path, digest: str, labels: dict[str, str], lease: str | None = None
    ) -> None:
        """Store the file `source` (whose digest is `digest`) in the content store."""
        size = source.stat().st_size
        ref = f"wasmlet-{digest.removeprefix('sha256:')[:24]}-{uuid.uuid4().hex[:8]}"
        try:
            with source.open("rb") as f:
                data = f.read(_CHUNK)
                async with self._stream(
                    _CONTENT + "Write",
                    Cardinality.STREAM_STREAM,
                    content_pb2.WriteContentRequest,
                    content_pb2.WriteContentResponse,
                    lease,
                ) as stream:
                    offset = 0
                    while data:  # one message answered by one response: containerd's protocol
                        async with asyncio.timeout(self.timeout):
                            await stream.send_message(
                                content_pb2.WriteContentRequest(
                                    action=content_pb2.WRITE, ref=ref, total=size,
                                    expected=digest, offset=offset, data=data,
                                )
                            )  # fmt: skip
                            await stream.recv_message()
                        offset += len(data)
                        data = f.read(_CHUNK)
                    async with asyncio.timeout(self.timeout):
                        await stream.send_message(
                            content_pb2.WriteContentRequest(
                                action=content_pb2.COMMIT, ref=ref, total=size,
                                expected=digest, offset=offset, labels=labels,
                            ),
                            end=True,
                        )  # fmt: skip
                        while await stream.recv_message() is not None:
                            pass
        except ContainerdError as e:
            if e.status != Status.ALREADY_EXISTS:
                raise
            await self.set_labels(digest, labels)

    async def set_labels(self, digest: str, labels: dict[str, str]) -> None:
        info = content_pb2.Info(digest=digest, labels=labels)
        mask = field_mask_pb2.FieldMask(paths=[f"labels.{key}" for key in labels])
        await self._unary(
            _CONTENT + "Update",
            content_pb2.UpdateRequest(info=info, update_mask=mask),
            content_pb2.UpdateResponse,
        )

    # -- leases --------------------------------------------------------------------------
    async def create_lease(self, expire: str) -> str:
        """A lease protecting content written under it from GC until `expire` (RFC 3339)."""
        response = await self._unary(
            _LEASES + "Create",
            leases_pb2.CreateRequest(
                id=f"wasmlet-precompile-{uuid.uuid4().hex[:12]}", labels={GC_EXPIRE: expire}
            ),
            leases_pb2.CreateResponse,
        )
        return str(response.lease.id)

    async def delete_lease(self, lease: str) -> None:
        await self._unary(_LEASES + "Delete", leases_pb2.DeleteRequest(id=lease), empty_pb2.Empty)
