"""protobuf `Any` the way containerd's typeurl writes it: the type URL is the bare message
name (`containerd.events.TaskExit`), without Google's `type.googleapis.com/` prefix."""

from __future__ import annotations

from google.protobuf import any_pb2
from google.protobuf.message import Message


def pack(message: Message) -> any_pb2.Any:
    return any_pb2.Any(type_url=message.DESCRIPTOR.full_name, value=message.SerializeToString())
