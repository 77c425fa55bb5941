"""What the benchmarks share: ports, waiting for a server, wrk runs, percentiles."""

from __future__ import annotations

import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def wasmlet_cmd(app: Path, port: int, workers: int | str, cache: Path) -> list[str]:
    """`wasmlet up` for APP on 127.0.0.1:PORT with its own compile cache, quiet."""
    return [
        sys.executable,
        "-m",
        "wasmlet.cli",
        "up",
        "-f",
        str(app),
        "--listen",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--cache-dir",
        str(cache),
        "--log-level",
        "error",
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 120.0) -> float:
    """Poll `url` until it answers; return the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                r.read()
                return time.monotonic() - start
        except OSError:
            time.sleep(0.005)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def stop(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Terminate a server process (kill it if it does not exit in `timeout`)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(
    url: str,
    connections: int,
    duration: int,
    headers: dict[str, str] | None = None,
    timeout: str | None = None,
) -> dict[str, float]:
    """One wrk run (1 thread; `timeout` is wrk's per request, e.g. "10s"): requests/s, p50 and
    p99 in ms (nan when nothing was answered), non-2xx responses, requests timed out."""
    extra = [arg for k, v in (headers or {}).items() for arg in ("-H", f"{k}: {v}")]
    if timeout is not None:
        extra += ["--timeout", timeout]
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", *extra, url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rps is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    latency = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+(?:us|ms|s))", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    timeouts = re.search(r"Socket errors: .*timeout (\d+)", out)
    return {
        "rps": float(rps.group(1)),
        "p50_ms": _ms(latency["50"]) if "50" in latency else float("nan"),
        "p99_ms": _ms(latency["99"]) if "99" in latency else float("nan"),
        "errors": float(errors.group(1)) if errors else 0.0,
        "timeouts": float(timeouts.group(1)) if timeouts else 0.0,
    }


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50, p99 and mean of durations in seconds, in microseconds."""
    s = sorted(samples)
    return {
        "p50": s[len(s) // 2] * 1e6,
        "p99": s[min(len(s) - 1, int(len(s) * 0.99))] * 1e6,
        "mean": statistics.fmean(s) * 1e6,
    }


def machine() -> str:
    import os
    import platform

    return (
        f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()},"
        f" {platform.platform()}"
    )
