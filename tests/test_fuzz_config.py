"""Malformed manifests and runtime configs give a one-line `WasmletError`, never a traceback
or a hang (issue 18, item 8).

Each case runs `wasmlet up`'s real startup in process (argument parsing, load and lock,
runtime config, variables, factors, components compiled, files laid out, the trigger built:
everything but binding the port) on an app directory with Wasm modules, static files, a FIFO
and symbolic links in and out of it (tests/support/config_fuzz.py). Hypothesis mutates valid
seed documents; a few hundred cases here, the long run is bench/fuzz_config.py (figures in
docs/benchmarks.md). The named cases are those the issue's fuzzing found.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from support.config_fuzz import (
    SEED_MANIFESTS,
    SEED_RUNTIME_CONFIGS,
    Outcome,
    manifests,
    run_case,
    runtime_configs,
    shared_runtime,
)

from wasmlet.cli import build_parser
from wasmlet.running import Shared

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: the failing case is printed whole
    suppress_health_check=list(HealthCheck),
)


class Runner:
    def __init__(self, work: Path, shared: Shared) -> None:
        self.work = work
        self.shared = shared
        self.parser = build_parser()

    def __call__(self, manifest: str, runtime_config: str | None) -> Outcome:
        return run_case(self.work, manifest, runtime_config, self.shared, self.parser)


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    work = tmp_path_factory.mktemp("fuzz")
    shared = shared_runtime(work)
    try:
        yield Runner(work, shared)
    finally:
        shared.close()


def clean(outcome: Outcome, document: str) -> None:
    assert outcome.kind in ("ok", "error"), f"{outcome.kind} for:\n{document}\n{outcome.detail}"


def test_the_seeds_start(runner: Runner) -> None:
    """The seeds are valid: mutations start from an app that works."""
    for manifest in SEED_MANIFESTS:
        assert runner(manifest, SEED_RUNTIME_CONFIGS[1]).kind == "ok"
    for config in SEED_RUNTIME_CONFIGS:
        assert runner(SEED_MANIFESTS[0], config).kind == "ok"


@FUZZ
@given(manifest=manifests())
def test_fuzzed_manifests_fail_cleanly(runner: Runner, manifest: str) -> None:
    clean(runner(manifest, SEED_RUNTIME_CONFIGS[1]), manifest)


@FUZZ
@given(config=runtime_configs())
def test_fuzzed_runtime_configs_fail_cleanly(runner: Runner, config: str) -> None:
    clean(runner(SEED_MANIFESTS[0], config), config)


MANIFEST = """
spin_manifest_version = 2
[application]
name = "named"
[variables]
port = {{ default = "6379x" }}
[[trigger.http]]
route = "/..."
component = "web"
[component.web]
source = "comp.wasm"
{extra}
"""
LONG = "x" * 300


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (f'files = ["{LONG}"]', "File name too long"),
        (f'files = [{{ source = "top.txt", destination = "/{LONG}" }}]', "longer than 255"),
        ('files = [{ source = "top.txt", destination = "/a\\u0000b" }]', "NUL character"),
        ('files = ["a\\u0000b"]', "NUL character"),
        ('files = [{ source = "/", destination = "/" }]', 'source "/" is outside'),
        ('files = [{ source = "..", destination = "/x" }]', 'source ".." is outside'),
        ('files = ["../**/*"]', "outside the application directory"),
        ('files = ["pipe"]', "not a regular file or directory"),
        ('files = ["links/*"]', "is a symbolic link to"),
        ('files = [{ source = "links", destination = "/l" }]', "is a symbolic link to"),
        ('files = ["links/root"]', "is a symbolic link to"),
        ('files = ["**/*"]', "is a symbolic link to"),  # finds links/, does not walk /
        ('allowed_outbound_hosts = ["redis://localhost:{{ port }}"]', 'port "6379x"'),
        ('allowed_outbound_hosts = ["redis://{{ nope }}"]', "nope"),
        ('files = ["loop/**/*"]', None),  # a link loop ends: nothing to serve
    ],
)
def test_named_manifests(runner: Runner, extra: str, message: str | None) -> None:
    manifest = MANIFEST.format(extra=extra)
    outcome = runner(manifest, None)
    clean(outcome, manifest)
    if message is None:
        assert outcome.kind == "ok", outcome.detail
    else:
        assert outcome.kind == "error" and message in outcome.detail, outcome.detail
        assert "spin.toml: component.web." in outcome.detail, outcome.detail


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("config_provider = true\n", "config_provider: expected an array of tables"),
        ("variables_provider = [1]\n", "variables_provider: expected an array of tables"),
        ('[[config_provider]]\ntype = "static"\nvalues = 3\n', "values: expected a table"),
        ('[[variables_provider]]\ntype = "static"\nvalues = { a = 1 }\n', "values.a: expected"),
        ('[[variables_provider]]\ntype = "env"\nprefix = [1]\n', "prefix: expected a string"),
        ('[[variables_provider]]\ntype = "env"\ndotenv_path = 3\n', "dotenv_path: expected"),
        ('[[variables_provider]]\ntype = "vault"\n', "'vault' is not supported"),
        ('[[variables_provider]]\ntype = "env"\ndotenv_path = "pipe"\n', "not a regular file"),
        ('[[variables_provider]]\ntype = "env"\ndotenv_path = "/dev/zero"\n', "not a regular"),
        ('[key_value_store.x]\ntype = "spin"\npath = "top.txt/x.db"\n', "is not a directory"),
        ('[sqlite_database.x]\ntype = "spin"\npath = "static"\n', "is a directory"),
        ('state_dir = "top.txt"\n', 'state_dir: "/'),
        ("max_instance_memory = true\n", "max_instance_memory: expected a size"),
        ('[key_value_store.default]\ntype = "redis"\nurl = "other"\n', "not a Redis URL"),
        ('[key_value_store.x]\ntype = "redis"\nurl = "redis://h:6379x"\n', "Port could not"),
        ('[key_value_store.x]\ntype = "redis"\nurl = "redis://"\n', "names no host"),
        ('[key_value_store.x]\ntype = "redis"\nurl = "redis://h/db"\n', "is not a number"),
        ('[key_value_store.x]\ntype = "redis"\n', "needs a url"),
        ('[key_value_store.x]\ntype = "spin"\npath = 3\n', "path: expected a string"),
        ('[key_value_store.x]\ntype = "spin"\npath = "a\\u0000b"\n', "not a valid path"),
        ('[key_value_store.x]\ntype = "spin"\nurl = "u"\n', "unknown key 'url'"),
        ('[key_value_store.x]\ntype = "azure_cosmos"\n', "not supported"),
        ("[key_value_store.x]\ntype = 3\n", "type: expected a string"),
        ('[sqlite_database.x]\ntype = "spin"\npath = { a = 1 }\n', "path: expected a string"),
        ('[sqlite_database.x]\ntype = "libsql"\n', "'libsql' is not supported"),
        ("key_value_store = 3\n", "key_value_store"),
        ("max_instance_memory = -1\n", "max_instance_memory: expected a size above 0"),
        ("max_instance_memory = 99999999999999999999\n", "max_instance_memory"),
        ('max_instance_memory = "99999999999999999999Gi"\n', "max_instance_memory"),
        ('max_instance_memory = "lots"\n', "max_instance_memory: invalid size"),
        ('state_dir = "a\\u0000b"\n', "state_dir: contains a NUL character"),
        ("state_dir = 3\n", "state_dir"),
        ("[outbound_http]\nconnection_pooling = 1\n", "connection_pooling: expected true"),
        ("[outbound_http]\nmax_concurrent_connections = 0\n", "max_concurrent_connections"),
        ("unknown = 1\n", "unknown: unknown key"),
        ("= = =\n", "invalid TOML"),
    ],
)
def test_named_runtime_configs(runner: Runner, config: str, message: str) -> None:
    outcome = runner(SEED_MANIFESTS[0], config)
    clean(outcome, config)
    assert outcome.kind == "error" and message in outcome.detail, outcome.detail
    assert "runtime-config.toml: " in outcome.detail, outcome.detail


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (LONG, "File name too long"),
        ("a\\u0000b", "NUL character"),
        ("pipe", "is not a file"),
        ("/dev/zero", "is not a file"),
    ],
)
def test_named_sources(runner: Runner, source: str, message: str) -> None:
    manifest = MANIFEST.format(extra="").replace('"comp.wasm"', f'"{source}"')
    outcome = runner(manifest, None)
    clean(outcome, manifest)
    assert outcome.kind == "error" and message in outcome.detail, outcome.detail
    assert "spin.toml: component.web.source: " in outcome.detail, outcome.detail


def test_a_long_component_id_with_files_starts(runner: Runner) -> None:
    """A v1 id may be longer than a file name may: the files' directory is named by a
    prefix of it and a hash (found by the long run)."""
    manifest = SEED_MANIFESTS[1].replace('id = "one"', f'id = "{LONG}"')
    outcome = runner(manifest, SEED_RUNTIME_CONFIGS[1])
    assert outcome.kind == "ok", outcome.detail
