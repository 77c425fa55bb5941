"""The developer loop's figures (docs/benchmarks.md, issue 17):

- `wasmlet new http-py x && cd x && wasmlet build` on a machine that built one before (the
  Python tools venv is in the cache: componentize-py is the floor), and the same for C;
- a `wasmlet build` with nothing to do (wall time of the whole command);
- `wasmlet watch`: a source edited -> the new response served, p50 over N edits, C and Python.

    .venv/bin/python bench/dev_loop.py [--edits 5] [--templates c-wagi,http-py]
                                       [--cache DIR]   (default: guests/build/wasmlet-cache)
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from _common import free_port

ROOT = Path(__file__).resolve().parents[1]
WASMLET = [sys.executable, "-m", "wasmlet.cli"]
# What each template's edit changes: (file, old text, new text with {n}).
EDITS = {
    "c-wagi": ("src/main.c", 'printf("Hello from', 'printf("Edit {n} from'),
    "http-py": ("app.py", 'f"Hello from', 'f"Edit {n} from'),
}


def _get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return str(r.read().decode())
    except OSError:
        return ""


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.monotonic()
    subprocess.run(args, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def measure(template: str, edits: int, env: dict[str, str], work: Path) -> dict[str, object]:
    name = f"bench-{template.split('-')[-1] if template != 'c-wagi' else 'c'}"
    subprocess.run([*WASMLET, "new", template, name], cwd=work, env=env, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    app = work / name
    first = _run([*WASMLET, "build"], app, env)
    nothing = [_run([*WASMLET, "build"], app, env) for _ in range(3)]

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    watch = subprocess.Popen(
        [*WASMLET, "watch", "--listen", f"127.0.0.1:{port}", "--", "--log-level", "error"],
        cwd=app,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    times: list[float] = []
    try:
        deadline = time.monotonic() + 600
        while not _get(url).startswith("Hello"):
            if time.monotonic() > deadline or watch.poll() is not None:
                raise RuntimeError("wasmlet watch did not serve the app")
            time.sleep(0.1)
        file, old, new = EDITS[template]
        source = app / file
        text = source.read_text()
        for n in range(1, edits + 1):
            time.sleep(1.0)  # the watcher's debounce and any restart of the previous round
            started = time.monotonic()
            source.write_text(text.replace(old, new.format(n=n)))
            expected = f"Edit {n} from"
            while not _get(url).startswith(expected):
                if time.monotonic() - started > 600 or watch.poll() is not None:
                    raise RuntimeError(f"edit {n} was not served")
                time.sleep(0.02)
            times.append(time.monotonic() - started)
    finally:
        watch.send_signal(signal.SIGTERM)
        watch.wait(timeout=60)
    return {
        "template": template,
        "first_build_s": round(first, 2),
        "nothing_to_build_s": [round(t, 2) for t in nothing],
        "edit_to_response_s": [round(t, 2) for t in times],
        "edit_p50_s": round(statistics.median(times), 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--edits", type=int, default=5)
    parser.add_argument("--templates", default="c-wagi,http-py")
    parser.add_argument("--cache", type=Path, default=ROOT / "guests" / "build" / "wasmlet-cache")
    args = parser.parse_args()
    env = {**os.environ, "WASMLET_CACHE_DIR": str(args.cache)}
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="wasmlet-devloop-") as tmp:
        for template in args.templates.split(","):
            print(measure(template, args.edits, env, Path(tmp)), flush=True)
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
