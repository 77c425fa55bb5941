"""Many apps in one process, picked by the request's Host: the shared part (`host.py`), and
`wasmlet host`, the apps of a directory (`directory.py`)."""

from .apps import AppVersion
from .directory import DirectoryHost, HostTarget
from .host import AppHost, Changes, HostOptions, host_labels

__all__ = [
    "AppHost",
    "AppVersion",
    "Changes",
    "DirectoryHost",
    "HostOptions",
    "HostTarget",
    "host_labels",
]
