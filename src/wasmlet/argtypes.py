"""argparse types and options shared by wasmlet's commands: each type turns one argument into
a value, or raises `ArgumentTypeError` with a one-line reason."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .dirs import default_cache_dir
from .errors import WasmletError
from .guestlimits import DEFAULT_MAX_OUTPUT, DEFAULT_REQUEST_TIMEOUT, parse_size
from .pool import DEFAULT_MAX_WAITING


def key_value_arg(text: str) -> tuple[str, str]:
    """An argparse type for `KEY=VALUE` (the value may contain `=`)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(text)


def available_cpus() -> int:
    """The CPUs this process may run on: its affinity mask, lowered to a cgroup's CPU quota
    (a container limited to 2 CPUs on a 64-core node gets 2, as Go's and Rust's runtimes
    are beginning to do; `os.cpu_count()` would say 64)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max" and int(period) > 0:
            cpus = min(cpus, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):  # no cgroup v2, or not readable: the affinity stands
        pass
    return max(1, cpus)


def workers_arg(text: str) -> int:
    """`--workers`: a positive whole number, or `auto` for `available_cpus()`."""
    if text.strip().lower() == "auto":
        return available_cpus()
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(
            f"expected a positive whole number or 'auto', got {text!r} "
            "(from --workers or $WASMLET_WORKERS)"
        )
    return int(text)


def non_negative_int(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
    return int(text)


def seconds(text: str) -> float:
    try:
        value = float(text.removesuffix("s"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if value != value:  # NaN: no timer can be set to it
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}")
    if value < 0:
        raise argparse.ArgumentTypeError("the timeout cannot be negative")
    return value


def size(text: str) -> int:
    try:
        return parse_size(text)
    except WasmletError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def serving_options(
    parser: argparse.ArgumentParser, listen: str | None = None, workers: str = "auto"
) -> None:
    """The options of every command that serves HTTP (`up`, `host`, `kube activator`);
    `workers` is the command's default for `--workers` when $WASMLET_WORKERS is not set."""
    parser.add_argument(
        "-k", "--insecure", action="store_true", help="pull from the registry over plain HTTP"
    )
    parser.add_argument(
        "--listen",
        default=listen or os.environ.get("SPIN_HTTP_LISTEN_ADDR", "127.0.0.1:3000"),
        metavar="ADDR",
        help="address to listen on (default: %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=workers_arg,
        default=os.environ.get("WASMLET_WORKERS", workers),
        metavar="N",
        help="worker processes sharing the port, each using a core; 'auto' = one per CPU "
        f"this process may use ({available_cpus()} here); $WASMLET_WORKERS sets the "
        f"default (default: {workers})",
    )
    parser.add_argument(
        "--metrics-listen",
        # the variable is what the operator sets in an app's pod (docs/observability.md)
        default=os.environ.get("WASMLET_METRICS_LISTEN") or None,
        metavar="ADDR",
        help="serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9090 (port 0: "
        "any free port, printed at startup): request durations by app, route and status, "
        "requests in flight, instantiation time, guest failures, outbound calls, compile "
        "cache, messages; summed over --workers; $WASMLET_METRICS_LISTEN sets the default "
        "(default: no metrics, at no cost)",
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=0,
        metavar="N",
        help="requests in progress per worker at most, not counting guests waiting in host "
        "calls (see --max-waiting): --max-running start at once, one more whenever the "
        "oldest queued request has waited 50 ms (default: 4 per core, at least 8, at most 32)",
    )
    parser.add_argument(
        "--max-waiting",
        type=non_negative_int,
        default=DEFAULT_MAX_WAITING,
        metavar="N",
        help="guests per worker that may wait in host calls (a sleep, I/O, a slow client) "
        "on threads of their own, beyond --threads, so that waiting guests do not hold up "
        "other requests; each keeps its instance meanwhile (default: %(default)s)",
    )
    parser.add_argument(
        "--max-running",
        type=positive_int,
        default=1,
        metavar="N",
        help="guests running at once per worker; the others queue, and one more starts "
        "whenever the oldest has waited 50 ms, up to --threads (default: 1: host calls are "
        "Python, which runs one thread at a time; use --workers for more cores)",
    )
    parser.add_argument(
        "--request-timeout",
        type=seconds,
        default=DEFAULT_REQUEST_TIMEOUT,
        metavar="SECONDS",
        help="stop a request's guest after this long (wall-clock, also while it sleeps or "
        "waits in a host call) and answer 500; 0 = never (default: %(default)s)",
    )
    parser.add_argument(
        "--body-read-timeout",
        type=seconds,
        default=20.0,  # trigger/http/app.py's DEFAULT_BODY_READ_TIMEOUT (the why is there)
        metavar="SECONDS",
        help="a request body must arrive within this long of the request head, plus a "
        "second per 500 bytes received; later gets 408 (before the guest starts, so a slow "
        "client holds no thread); 0 = never (default: %(default)s)",
    )
    parser.add_argument(
        "--max-wagi-output",
        type=size,
        default=DEFAULT_MAX_OUTPUT,
        metavar="SIZE",
        help="most a Wagi guest may write to stdout (its response, held in memory); past "
        "it the guest's writes fail and the request gets 500 (default: 64Mi)",
    )
    parser.add_argument(
        "--max-instance-memory",
        type=size,
        default=os.environ.get("SPIN_MAX_INSTANCE_MEMORY"),
        metavar="SIZE",
        help="linear memory limit per instance, e.g. 64Mi (default: none, as in Spin: a "
        "guest may grow each memory to wasmtime's 4 GiB, so one memory-hungry request can "
        "take 4 GiB of RAM; set a limit on a shared or small machine)",
    )
    parser.add_argument(
        "--max-body-size",
        type=size,
        default="100Mi",
        metavar="SIZE",
        help="largest request body accepted; larger gets 413 (default: 100Mi)",
    )
    # Server limits (trigger/http/limits.py has the defaults and why).
    parser.add_argument(
        "--header-timeout",
        type=seconds,
        default=10.0,
        metavar="SECONDS",
        help="close a connection whose request head (request line and headers) has not "
        "arrived this long after the connection or the request's first byte: 408; 0 = never "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--keep-alive-timeout",
        type=seconds,
        default=5.0,
        metavar="SECONDS",
        help="close a keep-alive connection idle this long; 0 = close after each response "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--max-connections",
        type=positive_int,
        default=0,
        metavar="N",
        help="connections open at once per worker; more are answered 503 and closed "
        "(default: 10000, or fewer to fit the open-file limit, which is raised to its hard "
        "limit at startup)",
    )
    parser.add_argument(
        "--max-header-size",
        type=size,
        default="64Ki",
        metavar="SIZE",
        help="largest request head (request line and headers), and largest trailer "
        "section; larger gets 431 (default: 64Ki)",
    )
    parser.add_argument(
        "--max-headers",
        type=positive_int,
        default=100,
        metavar="N",
        help="most header fields (and trailer fields) in a request; more gets 431 "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--shutdown-timeout",
        type=seconds,
        default=None,
        metavar="SECONDS",
        help="on SIGTERM/SIGINT, wait this long for requests in flight, then exit without "
        "them; a second signal exits within 2 s (default: the request timeout + 5, or 30 "
        "when --request-timeout is 0)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=default_cache_dir(),
        metavar="DIR",
        help="compile cache directory (default: %(default)s)",
    )
    parser.add_argument("--no-cache", action="store_true", help="do not use the compile cache")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="(default: info)",
    )
    parser.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="log lines on stderr as text, or as JSON objects carrying the app, component, "
        "request id and trace id of the request they are about (components' stdout and "
        "stderr lines too) (default: text)",
    )
