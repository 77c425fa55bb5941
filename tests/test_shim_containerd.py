"""containerd-shim-wasmlet-v2 under a real containerd, started privately by the tests.

containerd 1.7 (Debian 13's, unpacked by scripts/containerd-1.7.sh) for images whose layers
are Wasm, Debian's 1.6 for an app in an ordinary image's filesystem. Images are imported from
OCI layouts built by wasmlet's OCI code (apps) or by tests/fixtures/shim/images.py (busybox).
HTTP goes to loopback only: `--net-host` with a free 127.0.0.1 port, or a network namespace
made here. Skipped (with the reason) where containerd cannot run; under CI=true they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fixtures.shim.containerd import (
    NAMESPACE,
    Containerd,
    containerd_17,
    fetch_containerd_17,
)
from fixtures.shim.images import busybox_files, linux_image
from support.env import FIXTURES, IN_CI, ROOT, TESTBED, free_port

from wasmlet.loader import load_app
from wasmlet.oci import build_image

SHIM_FIXTURES = FIXTURES / "shim"
HELLO = ROOT / "examples" / "hello"


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(reason + " — required under CI=true")
    pytest.skip(reason)


def _require_root_tools() -> None:
    if os.geteuid() != 0:
        _unavailable("containerd needs root")
    for tool in ("containerd", "ctr", "runc"):
        if shutil.which(tool) is None:
            _unavailable(f"{tool} not installed (apt-get install containerd runc)")
    if not Path("/bin/busybox").exists():
        _unavailable("busybox not installed (apt-get install busybox-static)")


class Events:
    """`ctr events` in the background: (topic, payload line) pairs."""

    def __init__(self, c: Containerd) -> None:
        self.proc = c.ctr_popen("events")
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def topics(self, container: str) -> list[str]:
        out = []
        for line in list(self.lines):
            m = re.search(r"(/tasks/\w+)\s+(\{.*\})", line)
            if m and f'"{container}"' in m.group(2):
                out.append(m.group(1))
        return out

    def wait_for(self, container: str, topic: str, timeout: float = 15) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if topic in self.topics(container):
                return self.topics(container)
            time.sleep(0.05)
        raise AssertionError(f"no {topic} event for {container}: {self.topics(container)}")

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def wait_http(url: str, proc: subprocess.Popen[str] | None = None, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            return httpx.get(url, timeout=2).text
        except httpx.HTTPError as e:
            last = e
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"ctr run exited {proc.returncode}:\n{out}\n{err}")
        time.sleep(0.05)
    raise AssertionError(f"{url} did not answer: {last}")


def finish(proc: subprocess.Popen[str], timeout: float = 20) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


# -- containerd 1.7: images whose layers are Wasm -------------------------------------------


@pytest.fixture(scope="module")
def c17(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    _require_root_tools()
    bin_dir = containerd_17() or fetch_containerd_17()
    if bin_dir is None:
        _unavailable("containerd 1.7 is not available (scripts/containerd-1.7.sh failed)")
    c = Containerd(bin_dir)
    try:
        c.start()
    except RuntimeError as e:
        c.cleanup()
        _unavailable(f"containerd cannot run here: {e}")
    images = tmp_path_factory.mktemp("images")
    for name, app in (("hello", HELLO), ("needs-var", SHIM_FIXTURES / "needs-var")):
        build_image(load_app(app), images / f"{name}.tar", name=f"localhost/{name}:1")
        c.ctr("images", "import", str(images / f"{name}.tar"))
    linux_image(images / "busybox.tar", "localhost/busybox:1", busybox_files(), ["sh"])
    c.ctr("images", "import", str(images / "busybox.tar"))
    yield c
    c.cleanup()


@pytest.fixture(scope="module")
def events(c17: Containerd) -> Iterator[Events]:
    e = Events(c17)
    time.sleep(0.2)
    yield e
    e.close()


def _name() -> str:
    return "t-" + uuid.uuid4().hex[:8]


def test_wasm_image_serves_http_and_drains_on_sigterm(c17: Containerd, events: Events) -> None:
    port, name = free_port(), _name()
    env = f"SPIN_HTTP_LISTEN_ADDR=127.0.0.1:{port}"
    proc = c17.ctr_popen(
        *c17.run_args("localhost/hello:1", name, "--rm", "--net-host", "--env", env)
    )
    assert wait_http(f"http://127.0.0.1:{port}/", proc) == "Hello from wasmlet!\n"
    ps = c17.ctr("task", "ps", name).stdout
    assert re.search(r"^\d+", ps.splitlines()[1]), ps
    metrics = c17.ctr("task", "metrics", name).stdout
    assert re.search(r"memory\.usage_in_bytes\s+[1-9]\d+|memory\.usage\s+[1-9]", metrics), metrics
    c17.ctr("task", "kill", name)  # SIGTERM: drain, exit 0
    code, output = finish(proc)
    assert code == 0, output
    assert "Serving http://127.0.0.1" in output  # the app's stdout reached the log pipe
    topics = events.wait_for(name, "/tasks/delete")
    assert topics[:4] == ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]


def test_sigkill_exit_status_and_precompiled_artifact(c17: Containerd, events: Events) -> None:
    # The previous run compiled hello.wasm: the artifact is in the content store, labelled.
    content = c17.ctr("content", "ls").stdout
    assert "wasmlet.dev/precompiled/" in content
    assert "containerd.io/gc.ref.content.wasmlet." in content
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
    assert f"{name}: 1 precompiled artifacts from the content store" in c17.log.read_text()
    assert '"exit_status":137' in "".join(
        line for line in events.lines if "/tasks/exit" in line and name in line
    )


def test_memory_limit_oom_kill_is_reported(c17: Containerd, events: Events) -> None:
    """A memory limit (the spec's, applied to the task's cgroup) the runner cannot start in:
    the kernel kills it, the shim publishes /tasks/oom, the exit status is 137."""
    name = _name()
    args = c17.run_args(
        "localhost/hello:1",
        name,
        "--rm",
        "--net-host",
        "--memory-limit",
        str(25 << 20),
        "--env",
        f"SPIN_HTTP_LISTEN_ADDR=127.0.0.1:{free_port()}",
    )
    result = c17.ctr(*args, check=False)
    assert result.returncode == 137, result
    topics = events.wait_for(name, "/tasks/exit")
    assert "/tasks/oom" in topics and topics.index("/tasks/start") < topics.index("/tasks/exit")


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


def test_pod_pair_shares_the_network_namespace(c17: Containerd, netns: str) -> None:
    """A Wasm container on the default 0.0.0.0:80 and busybox containers (runc's runtime,
    and wasmlet's runtime handing an ELF entrypoint to runc) in one network namespace; the
    two wasmlet containers of the "pod" (same sandbox-id annotation) share one shim."""
    pod = ["--annotation", f"io.kubernetes.cri.sandbox-id={uuid.uuid4().hex}"]
    wasm = _name()
    shims = set(c17.shim_pids())
    c17.ctr(*c17.run_args("localhost/hello:1", wasm, "-d", "--with-ns", f"network:{netns}", *pod))
    pod_shims = set(c17.shim_pids()) - shims
    assert len(pod_shims) == 1
    fetch = ["wget", "-q", "-O", "-", "http://127.0.0.1:80/"]  # (-T crashes this busybox)
    script = "for i in $(seq 1 150); do " + " ".join(fetch) + " && exit 0; sleep 0.1; done; exit 9"
    runc = c17.ctr(
        "run",
        "--rm",
        "--fifo-dir",
        str(c17.base / "fifo"),
        "--with-ns",
        f"network:{netns}",
        "localhost/busybox:1",
        _name(),
        "sh",
        "-c",
        script,
        check=False,
    )
    assert runc.returncode == 0 and "Hello from wasmlet!" in runc.stdout, runc
    ours = c17.ctr(
        *c17.run_args(
            "localhost/busybox:1", _name(), "--rm", "--with-ns", f"network:{netns}", *pod
        ),
        *fetch,
        check=False,
    )
    assert ours.returncode == 0 and "Hello from wasmlet!" in ours.stdout, ours
    assert set(c17.shim_pids()) - shims == pod_shims  # the pod's shim served both
    code = c17.ctr(
        *c17.run_args("localhost/busybox:1", _name(), "--rm"), "sh", "-c", "exit 3", check=False
    ).returncode
    assert code == 3
    c17.ctr("task", "kill", wasm)
    assert _wait_stopped(c17, wasm)
    c17.ctr("task", "delete", wasm, timeout=30)
    c17.ctr("containers", "delete", wasm)


def _wait_stopped(c: Containerd, name: str, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = c.ctr("task", "ls", check=False).stdout
        if not re.search(rf"^{name}\s+\d+\s+RUNNING", out, re.M):
            return True
        time.sleep(0.1)
    return False


def test_dead_shim_is_cleaned_up_by_delete(c17: Containerd, events: Events) -> None:
    """SIGKILL the shim: containerd runs `shim delete`, which stops the runner."""
    port, name = free_port(), _name()
    shims = set(c17.shim_pids())
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
    (shim,) = set(c17.shim_pids()) - shims
    os.kill(shim, 9)
    events.wait_for(name, "/tasks/exit")
    deadline = time.monotonic() + 10
    while name in c17.tasks() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert name not in c17.tasks()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
    c17.ctr("containers", "delete", name)


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
    _require_root_tools()
    c = Containerd(Path(shutil.which("containerd") or "/usr/bin/containerd").parent)
    try:
        try:
            c.start()
        except RuntimeError as e:
            _unavailable(f"containerd cannot run here: {e}")
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
