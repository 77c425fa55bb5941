#!/usr/bin/env python3
"""The long config fuzz run: mutated manifests and runtime configs through `wasmlet up`'s
startup, counting the cases that end in anything but a `WasmletError` (a traceback) or hang.

The cases and how one runs are those of `tests/test_fuzz_config.py` (tests/support/
config_fuzz.py); this runs many more, in chunks of `--chunk` cases with a fresh random seed
each, until `--cases` of each kind ran or `--seconds` passed. A manifest case runs with the
second seed runtime config (local stores), a runtime-config case with the first seed
manifest. Progress goes to stdout and, one JSON line per chunk, to `--log`; every crash and
hang is written in full to `--out` (one file per distinct last traceback line).

    .venv/bin/python bench/fuzz_config.py --cases 100000 --seconds 3600 \\
        --log /tmp/fuzz.jsonl --out /tmp/fuzz-crashes

One process, one core: a case (load, lock, runtime config, factors, compile from the cache,
files laid out) takes 10-30 ms; app directories live under /dev/shm where there is one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT / "tests"))

from support.config_fuzz import (  # noqa: E402
    SEED_MANIFESTS,
    SEED_RUNTIME_CONFIGS,
    Outcome,
    manifests,
    run_case,
    runtime_configs,
    shared_runtime,
)

from wasmlet.cli import build_parser  # noqa: E402
from wasmlet.running import Shared  # noqa: E402

OUTCOMES = ("ok", "error", "multiline", "crash", "timeout")
BAD = ("multiline", "crash", "timeout")  # a traceback, a torn error, a hang


def _record(out: Path, kind: str, document: str, outcome: Outcome) -> bool:
    """Write a crash or hang to `out`; True if its signature is new."""
    last = outcome.detail.strip().splitlines()[-1] if outcome.detail.strip() else outcome.kind
    signature = hashlib.sha256(f"{outcome.kind}:{last}".encode()).hexdigest()[:12]
    target = out / f"{outcome.kind}-{signature}.txt"
    if target.exists():
        return False
    target.write_text(f"# {kind}\n{document}\n# ---\n{outcome.detail}\n")
    return True


def run_chunk(
    kind: str,
    cases: int,
    chunk_seed: int,
    work: Path,
    shared: Shared,
    out: Path,
    counts: Counter[str],
) -> None:
    parser = build_parser()
    strategy = manifests() if kind == "manifest" else runtime_configs()

    @settings(
        max_examples=cases,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def one(data: st.DataObject) -> None:
        document = data.draw(strategy)
        if kind == "manifest":
            outcome = run_case(work, document, SEED_RUNTIME_CONFIGS[1], shared, parser)
        else:
            outcome = run_case(work, SEED_MANIFESTS[0], document, shared, parser)
        counts[f"{kind}:{outcome.kind}"] += 1
        if outcome.kind in BAD and _record(out, kind, document, outcome):
            counts[f"{kind}:distinct"] += 1
            print(f"  new {outcome.kind}: {outcome.detail.strip().splitlines()[-1:]}", flush=True)

    seed(chunk_seed)(one)()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=100_000, help="cases of each kind")
    parser.add_argument("--seconds", type=float, default=3600.0, help="stop after this long")
    parser.add_argument("--chunk", type=int, default=500, help="cases per hypothesis run")
    parser.add_argument("--kind", choices=["both", "manifest", "runtime-config"], default="both")
    parser.add_argument("--log", type=Path, default=Path("fuzz_config.jsonl"))
    parser.add_argument("--out", type=Path, default=Path("fuzz_config_crashes"))
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    kinds = ["manifest", "runtime-config"] if args.kind == "both" else [args.kind]
    shm = Path("/dev/shm")
    base = Path(tempfile.mkdtemp(prefix="wasmlet-fuzz-", dir=shm if shm.is_dir() else None))
    counts: Counter[str] = Counter()
    # One engine for the whole run: wasmtime types made for one engine stay cached in the
    # process (an engine per chunk aborts it), and an engine per case costs more than a case.
    shared = shared_runtime(base)
    started = time.monotonic()
    chunk_seed = args.seed
    try:
        while time.monotonic() - started < args.seconds:
            pending = [k for k in kinds if sum(counts[f"{k}:{o}"] for o in OUTCOMES) < args.cases]
            if not pending:
                break
            for kind in pending:  # alternate, so a stop midway leaves both counts comparable
                work = Path(tempfile.mkdtemp(dir=base))
                run_chunk(kind, args.chunk, chunk_seed, work, shared, args.out, counts)
                shutil.rmtree(work, ignore_errors=True)
                line = {"elapsed": round(time.monotonic() - started, 1), "seed": chunk_seed}
                chunk_seed += 1
                line.update(counts)
                with args.log.open("a") as log:
                    log.write(json.dumps(line) + "\n")
                print(json.dumps(line), flush=True)
    finally:
        shared.close()
        shutil.rmtree(base, ignore_errors=True)
    bad = sum(v for k, v in counts.items() if k.split(":")[1] in BAD)
    print(f"done: {dict(counts)}; tracebacks, torn errors and hangs: {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
