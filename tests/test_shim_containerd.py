"""containerd-shim-wasmlet-v2 under a real containerd, started privately by the tests.

containerd 1.7 (Debian 13's, unpacked by scripts/containerd-1.7.sh) for images whose layers
are Wasm, Debian's 1.6 for an app in an ordinary image's filesystem. Images are imported from
OCI layouts built by wasmlet's OCI code (apps) or by tests/fixtures/shim/images.py (busybox).
HTTP goes to loopback only: `--net-host` with a free 127.0.0.1 port, or a network namespace
made here. Skipped (with the reason) where containerd cannot run; under CI=true they fail.
The template's own behaviour (many tasks, a template or a task killed) is in
test_shim_template.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fixtures.shim.containerd import NAMESPACE, Containerd
from fixtures.shim.images import linux_image
from fixtures.shim.testing import (
    SHIM_FIXTURES,
    Events,
    comm,
    containerd_with_images,
    finish,
    parent,
    require_root_tools,
    run_app,
    start_detached,
    task_pid,
    template_log,
    unavailable,
    wait_http,
    wait_status,
)
from fixtures.shim.testing import new_name as _name
from support.env import TESTBED, free_port

# -- containerd 1.7: images whose layers are Wasm -------------------------------------------


@pytest.fixture(scope="module")
def c17(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    yield from containerd_with_images(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def events(c17: Containerd) -> Iterator[Events]:
    e = Events(c17)
    time.sleep(0.2)
    yield e
    e.close()


def test_wasm_image_serves_http_and_drains_on_sigterm(c17: Containerd, events: Events) -> None:
    """A task forked from the node's template: its own process (the task's shim), a child of
    the template, in its own cgroup with the spec's memory limit; HTTP on loopback; metrics;
    SIGTERM drains, exit 0; events in order."""
    name = _name()
    port, proc = run_app(c17, name, "--memory-limit", str(256 << 20))
    assert wait_http(f"http://127.0.0.1:{port}/", proc) == "Hello from wasmlet!\n"
    pid = task_pid(c17, name)
    assert comm(pid) == "wasmlet-task" and parent(pid) == c17.template_pid()
    cgroup = f"/{NAMESPACE}/{name}"
    assert any(line.endswith(cgroup) for line in Path(f"/proc/{pid}/cgroup").read_text().split())
    memory = Path("/sys/fs/cgroup/memory", cgroup.lstrip("/"), "memory.limit_in_bytes")
    if memory.exists():  # cgroup v1 (v2: memory.max)
        assert int(memory.read_text()) == 256 << 20
    ps = c17.ctr("task", "ps", name).stdout
    assert re.search(rf"^{pid}\b", ps.splitlines()[1]), ps
    metrics = c17.ctr("task", "metrics", name).stdout
    assert re.search(r"memory\.usage_in_bytes\s+[1-9]\d+|memory\.usage\s+[1-9]", metrics), metrics
    c17.ctr("task", "kill", name)  # SIGTERM: drain, exit 0
    code, output = finish(proc)
    assert code == 0, output
    assert "Serving http://127.0.0.1" in output  # the app's stdout reached the log pipe
    topics = events.wait_for(name, "/tasks/delete")
    assert topics[:4] == ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]
    assert not Path("/sys/fs/cgroup/memory", cgroup.lstrip("/")).exists()  # removed at Delete


def test_sigkill_exit_status_and_precompiled_artifact(c17: Containerd, events: Events) -> None:
    # The previous run compiled hello.wasm: the artifact is in the content store, labelled.
    content = c17.ctr("content", "ls").stdout
    assert "wasmlet.dev/precompiled/" in content
    assert "containerd.io/gc.ref.content.wasmlet." in content
    # A node that lost its compile cache (say, a new node) copies it from the content store.
    shutil.rmtree(c17.shim_state / "compile-cache")
    port, name = free_port(), _name()
    proc = c17.ctr_popen(
        *c17.run_args(
            "localhost/hello:1",
            name,
            "--rm",
            "--net-host",
            "--env",
            f"SPIN_HTTP_LISTEN_ADDR=127.0.0.1:{port}",
        )
    )
    assert "Hello" in wait_http(f"http://127.0.0.1:{port}/", proc)
    c17.ctr("task", "kill", "-s", "SIGKILL", name)
    code, _ = finish(proc)
    assert code == 137
    assert f"{name}: 1 precompiled artifacts from the content store" in template_log(c17)
    assert '"exit_status":137' in "".join(
        line for line in events.lines if "/tasks/exit" in line and name in line
    )


def test_memory_limit_oom_kill_is_reported(c17: Containerd, events: Events) -> None:
    """A guest that allocates without end in a task with a memory limit: the kernel kills the
    task's process (it is the shim too); the template's successor publishes /tasks/oom and
    the exit, 137, and `ctr run` gets that status."""
    name = _name()
    port, proc = run_app(
        c17, name, "--memory-limit", str(96 << 20), "--env", "SPIN_VARIABLE_GREETING=hi",
        image="localhost/needs-var:1",
    )  # fmt: skip
    assert "FROM_MANIFEST=yes" in wait_http(f"http://127.0.0.1:{port}/?mode=env", proc)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/?mode=oom", timeout=30)
    code, output = finish(proc, 30)
    assert code == 137, output
    topics = events.wait_for(name, "/tasks/exit")
    assert "/tasks/oom" in topics and topics.index("/tasks/oom") < topics.index("/tasks/exit")
    assert '"exit_status":137' in events.payload(name, "/tasks/exit")


def test_startup_error_reaches_exit_status_and_log(c17: Containerd) -> None:
    result = c17.ctr(
        *c17.run_args("localhost/needs-var:1", _name(), "--rm", "--net-host"), check=False
    )
    assert result.returncode == 1, result
    assert "Error:" in result.stdout + result.stderr
    assert "greeting" in result.stdout + result.stderr


def test_variables_from_env_and_runtime_config_mount(c17: Containerd, tmp_path: Path) -> None:
    port, name = free_port(), _name()
    listen = f"SPIN_HTTP_LISTEN_ADDR=127.0.0.1:{port}"
    args = c17.run_args(
        "localhost/needs-var:1",
        name,
        "--rm",
        "--net-host",
        "--env",
        listen,
        "--env",
        "SPIN_VARIABLE_GREETING=hi",
    )
    proc = c17.ctr_popen(*args)
    body = wait_http(f"http://127.0.0.1:{port}/?mode=env", proc)
    assert "FROM_MANIFEST=yes" in body
    c17.ctr("task", "kill", name)
    assert finish(proc)[0] == 0
    # The variable from /runtime-config.toml, bind-mounted into the container.
    config = tmp_path / "runtime-config.toml"
    config.write_text('[[variables_provider]]\ntype = "static"\nvalues = { greeting = "rc" }\n')
    port, name = free_port(), _name()
    args = c17.run_args(
        "localhost/needs-var:1",
        name,
        "--rm",
        "--net-host",
        "--env",
        f"SPIN_HTTP_LISTEN_ADDR=127.0.0.1:{port}",
        "--mount",
        f"type=bind,src={config},dst=/runtime-config.toml,options=rbind:ro",
    )
    proc = c17.ctr_popen(*args)
    assert "FROM_MANIFEST=yes" in wait_http(f"http://127.0.0.1:{port}/?mode=env", proc)
    c17.ctr("task", "kill", name)
    assert finish(proc)[0] == 0


@pytest.fixture
def netns() -> Iterator[str]:
    name = "wltest-" + uuid.uuid4().hex[:6]
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
    yield f"/var/run/netns/{name}"
    subprocess.run(["ip", "netns", "delete", name], check=False)


def test_pod_shares_the_network_namespace_and_pause_goes_to_runc(
    c17: Containerd, netns: str
) -> None:
    """A pod-like group in one network namespace: the sandbox (pause) container, handed to
    containerd's own runc shim; the Wasm app on the default 0.0.0.0:80 in its own shim; a
    busybox container under runc's runtime and one under wasmlet's runtime (an ELF
    entrypoint, handed to runc by its shim) both fetching it over the shared loopback."""
    pod = ["--annotation", f"io.kubernetes.cri.sandbox-id={uuid.uuid4().hex}"]
    sandbox = ["--annotation", "io.kubernetes.cri.container-type=sandbox"]
    pause, wasm = _name(), _name()
    ns = ["--with-ns", f"network:{netns}"]
    shims = set(c17.shim_pids())
    c17.ctr(*c17.run_args("localhost/busybox:1", pause, "-d", *ns, *pod, *sandbox), "sleep", "60")
    pause_pid = task_pid(c17, pause)
    assert comm(parent(pause_pid)) == "containerd-shim"  # runc's shim (comm is 15 bytes)
    assert (Path(c17.base, "state/io.containerd.runtime.v2.task", NAMESPACE, pause) /
            "wasmlet-runc-shim").exists()  # fmt: skip
    c17.ctr(*c17.run_args("localhost/hello:1", wasm, "-d", *ns, *pod))
    assert len(set(c17.shim_pids()) - shims) == 1  # the app's; not one for the pause
    fetch = ["wget", "-q", "-O", "-", "http://127.0.0.1:80/"]  # (-T crashes this busybox)
    script = "for i in $(seq 1 150); do " + " ".join(fetch) + " && exit 0; sleep 0.1; done; exit 9"
    runc = c17.ctr(
        "run", "--rm", "--fifo-dir", str(c17.base / "fifo"), *ns, "localhost/busybox:1",
        _name(), "sh", "-c", script, check=False,
    )  # fmt: skip
    assert runc.returncode == 0 and "Hello from wasmlet!" in runc.stdout, runc
    ours = c17.ctr(
        *c17.run_args("localhost/busybox:1", _name(), "--rm", *ns, *pod), *fetch, check=False
    )
    assert ours.returncode == 0 and "Hello from wasmlet!" in ours.stdout, ours
    code = c17.ctr(
        *c17.run_args("localhost/busybox:1", _name(), "--rm"), "sh", "-c", "exit 3", check=False
    ).returncode
    assert code == 3
    for name in (wasm, pause):
        c17.ctr("task", "kill", "-s", "SIGKILL", name)
        wait_status(c17, name, "STOPPED")
        c17.ctr("task", "delete", name, timeout=30)
        c17.ctr("containers", "delete", name)


def test_task_killed_outright_reports_137(c17: Containerd, events: Events) -> None:
    """`kill -9` of a task's process: its exit (137) is reported, as for any task."""
    name = _name()
    port = start_detached(c17, name)
    assert "Hello" in wait_http(f"http://127.0.0.1:{port}/")
    os.kill(task_pid(c17, name), 9)
    events.wait_for(name, "/tasks/exit")
    assert '"exit_status":137' in events.payload(name, "/tasks/exit")
    wait_status(c17, name, "STOPPED")
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
    c17.ctr("task", "delete", name)
    c17.ctr("containers", "delete", name)
    assert name not in c17.tasks()


def test_node_shim_killed_a_successor_takes_its_tasks_over(c17: Containerd, events: Events) -> None:
    """`kill -9` of the node's shim: containerd does not see it go (the template kept its
    connections); the successor serves the running tasks, their kill and exit, and new ones."""
    name, other = _name(), _name()
    port = start_detached(c17, name)
    assert "Hello" in wait_http(f"http://127.0.0.1:{port}/")
    (shim,) = c17.shim_pids("wasmlet-shim")
    os.kill(shim, 9)
    deadline = time.monotonic() + 10
    while set(c17.shim_pids("wasmlet-shim")) in (set(), {shim}):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert "Hello" in httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text
    wait_status(c17, name, "RUNNING")
    second = start_detached(c17, other)
    assert "Hello" in wait_http(f"http://127.0.0.1:{second}/")
    c17.ctr("task", "kill", name)  # SIGTERM through the successor: drains, exits 0
    events.wait_for(name, "/tasks/exit")
    assert '"exit_status":0' in events.payload(name, "/tasks/exit") or (
        "exit_status" not in events.payload(name, "/tasks/exit"))  # fmt: skip
    wait_status(c17, name, "STOPPED")
    for n in (name, other):
        c17.ctr("task", "kill", "-s", "SIGKILL", n, check=False)
        wait_status(c17, n, "STOPPED")
        c17.ctr("task", "delete", n)
        c17.ctr("containers", "delete", n)


def test_containerd_restart_reconnects(c17: Containerd) -> None:
    # Last of the 1.7 tests: the module's `ctr events` does not survive the restart.
    port, name = free_port(), _name()
    c17.ctr(
        *c17.run_args(
            "localhost/hello:1",
            name,
            "-d",
            "--net-host",
            "--env",
            f"SPIN_HTTP_LISTEN_ADDR=127.0.0.1:{port}",
        )
    )
    assert "Hello" in wait_http(f"http://127.0.0.1:{port}/")
    c17.stop()
    assert "Hello" in httpx.get(f"http://127.0.0.1:{port}/").text  # serving without containerd
    c17.start()
    listing = c17.ctr("task", "ls").stdout
    assert re.search(rf"^{name}\s+\d+\s+RUNNING", listing, re.M), listing
    events = Events(c17)
    try:
        time.sleep(0.2)
        c17.ctr("task", "kill", name)
        events.wait_for(name, "/tasks/exit")
    finally:
        events.close()
    c17.ctr("task", "delete", name)
    c17.ctr("containers", "delete", name)


def test_containerd_api_client_content_leases_and_errors(c17: Containerd, tmp_path: Path) -> None:
    """The shim's gRPC client (grpclib) against the real containerd: content written under a
    lease in several messages, labels merged when it already exists, read back verified,
    NOT_FOUND as None or as an error naming the call."""
    import asyncio
    import hashlib

    from grpclib.const import Status

    from wasmlet.shim.containerd import Containerd as Api
    from wasmlet.shim.containerd import ContainerdError

    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(3 << 20) + b"wasmlet")  # more than one 1 MiB message each way
    digest = "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest()

    async def exercise() -> None:
        api = Api(f"unix://{c17.sock}", NAMESPACE)
        try:
            assert await api.info(digest) is None
            lease = await api.create_lease("2099-01-01T00:00:00Z")
            try:
                await api.write(blob, digest, {"wasmlet.test/a": "1"}, lease=lease)
                await api.write(blob, digest, {"wasmlet.test/b": "2"}, lease=lease)  # exists
                info = await api.info(digest)
                assert info is not None and info.size == blob.stat().st_size
                labels = dict(info.labels)
                assert (labels["wasmlet.test/a"], labels["wasmlet.test/b"]) == ("1", "2")
                copy = tmp_path / "copy"
                with copy.open("wb") as f:
                    assert await api.read_into(digest, f) == digest
                assert copy.read_bytes() == blob.read_bytes()
            finally:
                await api.delete_lease(lease)
            with pytest.raises(ContainerdError, match=r"Containers/Get: .*not found") as e:
                await api.container_image("no-such-container")
            assert e.value.status == Status.NOT_FOUND
        finally:
            api.close()

    asyncio.run(exercise())


# -- Debian's containerd 1.6: an app in the image's filesystem -------------------------------


def test_rootfs_spin_toml_on_debian_containerd(tmp_path: Path) -> None:
    require_root_tools()
    c = Containerd(Path(shutil.which("containerd") or "/usr/bin/containerd").parent)
    try:
        try:
            c.start()
        except RuntimeError as e:
            unavailable(f"containerd cannot run here: {e}")
        files = {
            "spin.toml": (SHIM_FIXTURES / "rootfs-app.toml").read_bytes(),
            "testbed.wasm": TESTBED,
        }
        linux_image(tmp_path / "app.tar", "localhost/rootfs-app:1", files, ["/"])
        c.ctr("images", "import", str(tmp_path / "app.tar"))
        port, name = free_port(), _name()
        proc = c.ctr_popen(
            *c.run_args(
                "localhost/rootfs-app:1",
                name,
                "--rm",
                "--net-host",
                "--env",
                f"SPIN_HTTP_LISTEN_ADDR=127.0.0.1:{port}",
            )
        )
        body = wait_http(f"http://127.0.0.1:{port}/?mode=env", proc)
        assert "FROM_ROOTFS=yes" in body
        c.ctr("task", "kill", name)
        assert finish(proc)[0] == 0
        # A bad manifest: the error reaches the task's output and exit status.
        files["spin.toml"] = b'spin_manifest_version = 2\n[[trigger.http]]\nroute = "/"\n'
        linux_image(tmp_path / "bad.tar", "localhost/bad-app:1", files, ["/"])
        c.ctr("images", "import", str(tmp_path / "bad.tar"))
        bad = c.ctr(*c.run_args("localhost/bad-app:1", _name(), "--rm", "--net-host"), check=False)
        assert bad.returncode == 1, bad
        assert "Error:" in bad.stdout + bad.stderr and "spin.toml" in bad.stdout + bad.stderr
    finally:
        c.cleanup()
