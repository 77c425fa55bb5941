"""`wasmlet host`: many apps in one process, picked by the request's Host (see host.py)."""

from .host import AppHost, HostOptions, HostTarget, app_name

__all__ = ["AppHost", "HostOptions", "HostTarget", "app_name"]
