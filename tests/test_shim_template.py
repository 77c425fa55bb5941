"""The node's template under a real containerd (1.7): many tasks forked at once, a template or
a task killed, each task's mounts its own, one compile per digest however many tasks ask.

Shares tests/fixtures/shim/testing.py with test_shim_containerd.py; needs root, containerd,
runc and busybox (skipped with the reason otherwise, failing under CI=true).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fixtures.shim.containerd import Containerd
from fixtures.shim.testing import (
    Events,
    containerd_with_images,
    remove,
    start_detached,
    task_pid,
    template_log,
    wait_http,
    wait_status,
)
from fixtures.shim.testing import new_name as _name
from support.env import TESTBED, free_port

from wasmlet.loader import load_app
from wasmlet.oci import build_image


@pytest.fixture(scope="module")
def c17(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    yield from containerd_with_images(tmp_path_factory.mktemp("images"))


def test_fifty_tasks_started_at_once_all_answer_and_one_killed_leaves_the_rest(
    c17: Containerd,
) -> None:
    names = [_name() for _ in range(50)]
    ports = [free_port() for _ in names]

    def run(item: tuple[str, int]) -> subprocess.CompletedProcess[str]:
        name, port = item
        listen = f"SPIN_HTTP_LISTEN_ADDR=127.0.0.1:{port}"
        args = c17.run_args("localhost/hello:1", name, "-d", "--net-host", "--env", listen)
        return c17.ctr(*args, check=False, timeout=120)

    try:
        with ThreadPoolExecutor(50) as pool:
            results = list(pool.map(run, zip(names, ports, strict=True)))
        assert all(r.returncode == 0 for r in results), [r for r in results if r.returncode]
        for port in ports:
            assert wait_http(f"http://127.0.0.1:{port}/", timeout=60) == "Hello from wasmlet!\n"
        pids = {task_pid(c17, name) for name in names}
        assert len(pids) == 50  # fifty processes, one per task
        os.kill(task_pid(c17, names[0]), 9)
        wait_status(c17, names[0], "STOPPED")
        for port in ports[1:]:
            assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200
    finally:
        for name in names:
            c17.ctr("task", "kill", "-s", "SIGKILL", name, check=False)
        for name in names:
            remove(c17, name)


def test_template_killed_tasks_keep_serving_and_a_new_one_is_started(c17: Containerd) -> None:
    """Killing the template leaves the shim and its tasks serving; the next start starts a
    new template (the shim keeps serving it). A task of the old one that then dies is
    reported from its status pipe (137). If the shim too dies then, with no template to
    hand over to, containerd cleans up after it: its tasks are stopped and gone."""
    old, name = _name(), _name()
    port = start_detached(c17, old)
    assert "Hello" in wait_http(f"http://127.0.0.1:{port}/")
    template = c17.template_pid()
    assert template is not None
    events = Events(c17)
    try:
        os.kill(template, 9)
        time.sleep(0.2)
        assert "Hello" in httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text
        second = start_detached(c17, name)
        assert "Hello" in wait_http(f"http://127.0.0.1:{second}/")
        assert c17.template_pid() not in (None, template)
        os.kill(task_pid(c17, old), 9)
        events.wait_for(old, "/tasks/exit")
        assert '"exit_status":137' in events.payload(old, "/tasks/exit")
        wait_status(c17, old, "STOPPED")
        remove(c17, old)  # the old template's shim has no task left: it exits
        deadline = time.monotonic() + 10
        while len(c17.shim_pids("wasmlet-shim")) > 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        os.kill(c17.template_pid() or 0, 9)  # no template: no successor for the shim
        (shim,) = c17.shim_pids("wasmlet-shim")
        os.kill(shim, 9)
        events.wait_for(name, "/tasks/exit")
        deadline = time.monotonic() + 15
        while name in c17.tasks() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert name not in c17.tasks()
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{second}/", timeout=1)
    finally:
        events.close()
        for n in (old, name):
            c17.ctr("task", "kill", "-s", "SIGKILL", n, check=False)
            remove(c17, n)


def _mounts(pid: int) -> str:
    """The mount table of a task (in a mount namespace of its own)."""
    assert os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    return Path(f"/proc/{pid}/mountinfo").read_text()


def test_each_task_sees_only_its_own_mounts(c17: Containerd, tmp_path: Path) -> None:
    config = tmp_path / "runtime-config.toml"
    config.write_text('[[variables_provider]]\ntype = "static"\nvalues = { greeting = "rc" }\n')
    one, two = _name(), _name()
    mount = f"type=bind,src={config},dst=/runtime-config.toml,options=rbind:ro"
    try:
        p1 = start_detached(c17, one, "--mount", mount)
        p2 = start_detached(c17, two)
        wait_http(f"http://127.0.0.1:{p1}/")
        wait_http(f"http://127.0.0.1:{p2}/")
        ours = _mounts(task_pid(c17, one))
        assert re.search(rf"/{one}/rootfs/runtime-config.toml ro[, ]", ours), ours
        assert "runtime-config.toml" not in _mounts(task_pid(c17, two))
        assert "runtime-config.toml" not in Path("/proc/self/mountinfo").read_text()
    finally:
        for n in (one, two):
            c17.ctr("task", "kill", "-s", "SIGKILL", n, check=False)
            remove(c17, n)


def test_a_new_digest_is_compiled_once_however_many_tasks_ask(
    c17: Containerd, tmp_path: Path
) -> None:
    """Three tasks of an image no task on this node has run: the template compiles its Wasm
    once, outside their cgroups; all three map the artifact and serve; it is stored in the
    content store (labelled on the layer) for other starts."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "spin.toml").write_text(
        (Path(__file__).parent / "fixtures/shim/rootfs-app.toml").read_text()
    )
    # the testbed with a custom section added: a digest of its own, never compiled here
    wasm = TESTBED.read_bytes() + b"\x00\x05\x04test"
    (app / "testbed.wasm").write_bytes(wasm)
    digest = "sha256:" + hashlib.sha256(wasm).hexdigest()
    build_image(load_app(app), tmp_path / "new.tar", name="localhost/new-digest:1")
    c17.ctr("images", "import", str(tmp_path / "new.tar"))
    names = [_name() for _ in range(3)]
    ports = [free_port() for _ in names]

    def run(item: tuple[str, int]) -> subprocess.CompletedProcess[str]:
        name, port = item
        args = c17.run_args(
            "localhost/new-digest:1", name, "-d", "--net-host",
            "--env", f"SPIN_HTTP_LISTEN_ADDR=127.0.0.1:{port}",
        )  # fmt: skip
        return c17.ctr(*args, check=False, timeout=120)

    try:
        with ThreadPoolExecutor(3) as pool:
            assert all(r.returncode == 0 for r in pool.map(run, zip(names, ports, strict=True)))
        for port in ports:
            assert "FROM_ROOTFS=yes" in wait_http(f"http://127.0.0.1:{port}/?mode=env")
        compiles = re.findall(r"compiling (sha256:\w+) for this node", template_log(c17))
        assert compiles.count(digest) == 1, compiles
        deadline = time.monotonic() + 10
        while "wasmlet.dev/precompiled/" not in c17.ctr("content", "ls").stdout:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        for n in names:
            c17.ctr("task", "kill", "-s", "SIGKILL", n, check=False)
            remove(c17, n)
