"""`wasmlet kube activator`: serve SpinApps with no pod, and scale them by their load."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..apphost import HostOptions
from ..argtypes import positive_int, seconds, serving_options
from ..engine import EngineSettings
from ..forkserver import start_early
from ..logs import configure_logging
from ..observe.endpoint import serving
from ..trigger.http.server import ServeOptions, limits_from_args, serve_target
from .activator import ActivatorOptions, ActivatorTarget

DEFAULT_LISTEN = "0.0.0.0:8080"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "activator",
        help="serve SpinApps (autoscaler type wasmlet) while they have no pods; scale them",
        description="Run every SpinApp whose spec.autoscaler.type is `wasmlet` from its OCI "
        "image, precompiled, and answer its requests while it has no ready pods (the operator "
        "points its Service here); sample each app's load and set its replicas through the "
        "SpinApp's /scale subresource. A request names its app by Host: "
        "<name>.<namespace>[.svc…], or <name> when that name is unique.",
    )
    p.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        dest="namespaces",
        help="watch this namespace (repeatable; default: the whole cluster)",
    )
    p.add_argument(
        "--server", metavar="URL", help="API server URL, unauthenticated (tests, kubectl proxy)"
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        default=Path("/tmp/wasmlet-activator"),
        metavar="DIR",
        help="where each app keeps its state, in DIR/<namespace>/<name>/ (default: %(default)s)",
    )
    p.add_argument(
        "--sample-interval",
        type=seconds,
        default=1.0,
        metavar="SECONDS",
        help="how often each app's load is sampled and its replicas decided (default: 1)",
    )
    p.add_argument(
        "--max-app-concurrency",
        type=positive_int,
        default=0,
        metavar="N",
        help="requests of one app in progress at once (default: half of --threads)",
    )
    serving_options(p, listen=DEFAULT_LISTEN, workers="1")  # its demand counts are per process
    p.set_defaults(func=cmd_activator)


def cmd_activator(args: argparse.Namespace) -> int:
    configure_logging(args.log_level, args.log_format)
    host = HostOptions(
        state_dir=args.state_dir.resolve(),
        engine=EngineSettings(cache_dir=None if args.no_cache else args.cache_dir),
        request_timeout=args.request_timeout,
        max_instance_memory=args.max_instance_memory,
        threads=args.threads,
        max_running=args.max_running,
        max_app_concurrency=args.max_app_concurrency,
        max_body=args.max_body_size,
        max_waiting=args.max_waiting,
        body_read_timeout=args.body_read_timeout,
        max_output=args.max_wagi_output,
        precompile=True,
        insecure=args.insecure,
    )
    opts = ActivatorOptions(
        host=host,
        server=args.server,
        namespaces=tuple(args.namespaces),
        sample_interval=args.sample_interval,
    )
    serve_opts = ServeOptions(
        listen=args.listen,
        workers=args.workers,
        log_level=args.log_level,
        log_format=args.log_format,
        limits=limits_from_args(args),
    )
    start_early(serve_opts.workers)  # before any thread (forkserver.py)
    with serving(args.metrics_listen, serve_opts.workers):
        serve_target(ActivatorTarget(opts), serve_opts)
    return 0
