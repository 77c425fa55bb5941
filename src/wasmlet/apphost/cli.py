"""`wasmlet host`: serve every app under a directory from one process."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..argtypes import positive_int, seconds, serving_options
from ..engine import EngineSettings
from ..forkserver import start_early
from ..logs import configure_logging
from ..observe.endpoint import serving
from ..trigger.http.server import ServeOptions, limits_from_args, serve_target
from .directory import HostTarget
from .host import STATUS_PATH, HostOptions

EPILOG = f"""\
layout (one sub-directory per app; its name is the first label of the Host it answers):
  DIR/shop/spin.toml          a Spin app (sources relative to it)
  DIR/blog/app.lock.json      a locked app (wasmlet lock)
  DIR/news/reference          a file naming an OCI reference, e.g. ghcr.io/acme/news:v2
  DIR/<app>/runtime-config.toml, DIR/<app>/.env   that app's runtime config and variables

examples:
  wasmlet host --apps ./apps                      curl -H 'Host: shop.localhost' localhost:3000/
  wasmlet host --apps ./apps --precompile --workers 2 --listen 0.0.0.0:8080

Adding, changing or removing a sub-directory takes effect within a second, without a
restart; requests in flight finish on the version they started on. The status of every app:
GET {STATUS_PATH} on a Host that names no app (e.g. localhost:3000).
"""


def register(subparsers: Any) -> None:
    host = subparsers.add_parser(
        "host",
        help="serve every app in a directory from one process, picked by Host",
        description="Serve many apps from one process: a request whose Host is "
        "<app>.<any domain> goes to the app in DIR/<app>/. Apps share the compiled code and "
        "the process; each keeps its own variables, stores, files, outbound policy and limits.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    host.add_argument("--apps", type=Path, required=True, metavar="DIR", help="the apps directory")
    host.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="where each app keeps its state, in DIR/<app>/ (default: APPS/.state)",
    )
    host.add_argument(
        "--precompile",
        action="store_true",
        help="compile each app's components when it is loaded, not on its first request",
    )
    host.add_argument(
        "--scan-interval",
        type=seconds,
        default=10.0,
        metavar="SECONDS",
        help="how often the files apps are made of outside the apps directory are looked "
        "at (and everything, where inotify is not available); changes inside it take effect "
        "within a second (default: %(default)s)",
    )
    host.add_argument(
        "--max-app-concurrency",
        type=positive_int,
        default=0,
        metavar="N",
        help="guests of one app busy at once per worker, not counting those waiting in host "
        "calls; its other requests wait for its own turn (holding no thread), so a busy or "
        "looping app cannot take every thread (default: half of --threads)",
    )
    serving_options(host, workers="1")  # each worker is a whole host: its apps load N times
    host.set_defaults(func=cmd_host)


def cmd_host(args: argparse.Namespace) -> int:
    configure_logging(args.log_level, args.log_format)
    apps_dir: Path = args.apps.resolve()
    opts = HostOptions(
        state_dir=(args.state_dir or apps_dir / ".state").resolve(),
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
        precompile=args.precompile,
        insecure=args.insecure,
        scan_interval=args.scan_interval,
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
        serve_target(HostTarget(apps_dir, opts), serve_opts)
    return 0
