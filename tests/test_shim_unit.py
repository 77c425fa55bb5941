"""The shim's parts without containerd: ttrpc, spec and cgroup paths, finding the app,
containerd config editing, and `wasmlet node install|uninstall` against a fake host root."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from support.env import TESTBED

from wasmlet.cli import main as wasmlet_main
from wasmlet.oci import mediatypes as mt
from wasmlet.shim import appsource, containerdconfig, distro, image, nodeinstall
from wasmlet.shim.cgroups import expand_path
from wasmlet.shim.main import parse
from wasmlet.shim.proto import shim_pb2, task_events_pb2
from wasmlet.shim.rootfs import parse_options
from wasmlet.shim.spec import Spec
from wasmlet.shim.ttrpc import HEADER, MAX_MESSAGE, Client, Code, Method, Server, TtrpcError
from wasmlet.shim.typeurl import pack

# -- ttrpc ---------------------------------------------------------------------------------


async def _serve(tmp: Path) -> tuple[Server, str, asyncio.Event]:
    release = asyncio.Event()

    async def wait(req: shim_pb2.WaitRequest) -> shim_pb2.WaitResponse:
        await release.wait()
        return shim_pb2.WaitResponse(exit_status=7)

    async def state(req: shim_pb2.StateRequest) -> shim_pb2.StateResponse:
        if req.id == "missing":
            raise TtrpcError(Code.NOT_FOUND, "no such task")
        return shim_pb2.StateResponse(id=req.id, pid=42)

    server = Server()
    server.register(
        "containerd.task.v2.Task",
        {"Wait": Method(shim_pb2.WaitRequest, wait), "State": Method(shim_pb2.StateRequest, state)},
    )
    path = str(tmp / "t.sock")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(path)
    sock.listen()
    await server.start(sock)
    return server, path, release


def test_ttrpc_concurrent_calls_errors_and_unimplemented() -> None:
    async def run(tmp: Path) -> None:
        server, path, release = await _serve(tmp)
        client = Client(path)
        svc = "containerd.task.v2.Task"
        waiting = asyncio.create_task(
            client.call(svc, "Wait", shim_pb2.WaitRequest(id="a"), shim_pb2.WaitResponse)
        )
        await asyncio.sleep(0.05)
        # A blocked Wait does not hold up other calls on the same connection.
        state = await client.call(svc, "State", shim_pb2.StateRequest(id="a"),
                                  shim_pb2.StateResponse, timeout=2)  # fmt: skip
        assert (state.id, state.pid, waiting.done()) == ("a", 42, False)
        with pytest.raises(TtrpcError) as e:
            await client.call(svc, "State", shim_pb2.StateRequest(id="missing"),
                              shim_pb2.StateResponse)  # fmt: skip
        assert e.value.code == Code.NOT_FOUND and "no such task" in e.value.message
        with pytest.raises(TtrpcError) as e:
            await client.call(svc, "Pause", shim_pb2.PauseRequest(id="a"), shim_pb2.StateResponse)
        assert e.value.code == Code.UNIMPLEMENTED
        release.set()
        assert (await waiting).exit_status == 7
        await client.close()
        await server.close()

    with tempfile.TemporaryDirectory(prefix="ttrpc") as tmp:
        asyncio.run(run(Path(tmp)))


def test_ttrpc_frame_header_and_oversized_request() -> None:
    async def run(tmp: Path) -> None:
        server, path, _ = await _serve(tmp)
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(HEADER.pack(MAX_MESSAGE + 1, 3, 1, 0) + b"\0" * (MAX_MESSAGE + 1))
        await writer.drain()
        length, stream, kind, _flags = HEADER.unpack(await reader.readexactly(HEADER.size))
        payload = await reader.readexactly(length)
        from wasmlet.shim.proto import ttrpc_pb2

        response = ttrpc_pb2.Response.FromString(payload)
        assert (stream, kind, response.status.code) == (3, 2, Code.RESOURCE_EXHAUSTED)
        writer.close()
        await server.close()

    with tempfile.TemporaryDirectory(prefix="ttrpc") as tmp:
        asyncio.run(run(Path(tmp)))


def test_events_use_containerd_type_urls() -> None:
    any_ = pack(task_events_pb2.TaskExit(container_id="c", exit_status=3))
    assert any_.type_url == "containerd.events.TaskExit"
    assert task_events_pb2.TaskExit.FromString(any_.value).exit_status == 3


# -- spec, cgroups, rootfs options -----------------------------------------------------------


def test_spec_parse() -> None:
    spec = Spec.parse(
        {
            "process": {"args": ["/", "x"], "env": ["A=1", "B=x=y"], "cwd": "/app"},
            "root": {"path": "rootfs"},
            "mounts": [{"destination": "/c", "type": "bind", "source": "/s",
                        "options": ["rbind", "ro"]}],
            "linux": {
                "namespaces": [{"type": "network", "path": "/var/run/netns/x"}, {"type": "pid"}],
                "cgroupsPath": "/default/x",
                "resources": {"memory": {"limit": 1048576}},
            },
            "annotations": {"io.kubernetes.cri.sandbox-id": "sb"},
        }
    )  # fmt: skip
    assert spec.env == {"A": "1", "B": "x=y"}
    assert spec.namespaces == {"network": "/var/run/netns/x", "pid": None}
    assert spec.mounts[0].is_bind and spec.mounts[0].readonly
    assert (spec.sandbox_id, spec.memory_limit) == ("sb", 1048576)
    assert spec.rootfs(Path("/b")) == Path("/b/rootfs")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/default/c1", "/default/c1"),
        ("kubepods/pod1/c1", "/kubepods/pod1/c1"),
        ("", "/wasmlet/c1"),
        (
            "kubepods-besteffort-pod12.slice:cri-containerd:c1",
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12.slice/"
            "cri-containerd-c1.scope",
        ),
        ("system.slice:docker:c1", "/system.slice/docker-c1.scope"),
    ],
)
def test_cgroup_paths(path: str, expected: str) -> None:
    assert expand_path(path, "c1") == expected


def test_mount_options() -> None:
    flags, data = parse_options(["ro", "rbind", "lowerdir=/a:/b", "upperdir=/u"])
    assert flags & 0x1 and flags & 0x1000 and flags & 0x4000
    assert data == "lowerdir=/a:/b,upperdir=/u"


def test_shim_flags_are_go_style() -> None:
    args = parse(["-namespace", "k8s.io", "-address", "/run/c.sock", "-publish-binary",
                  "/usr/bin/containerd", "-id", "abc", "-debug", "start"])  # fmt: skip
    assert (args.namespace, args.id, args.action, args.debug) == ("k8s.io", "abc", "start", True)


def test_media_types_match_wasmlets_oci_format() -> None:
    assert image.SPIN_APP_LAYER == mt.SPIN_APP_LAYER
    assert image.WASM_LAYERS == mt.WASM_LAYERS
    assert (image.DATA_LAYER, image.ARCHIVE_LAYER) == (mt.DATA_LAYER, mt.ARCHIVE_LAYER)
    assert set(image.INDEXES) == set(mt.INDEXES)


# -- finding the app in the root filesystem ------------------------------------------------


def _spec(args: list[str], path: str = "/bin") -> Spec:
    return Spec.parse({"process": {"args": args, "env": [f"PATH={path}"]}})


def test_find_app_in_rootfs(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "prog").write_bytes(b"\x7fELF\x02\x01\x01" + b"\0" * 64)
    (root / "bin" / "script").write_text("#!/bin/sh\necho hi\n")
    (root / "bin" / "alias").symlink_to("/bin/prog")
    (root / "app").mkdir()
    shutil.copy(TESTBED, root / "app" / "main.wasm")
    find = appsource.find_in_rootfs
    assert find(_spec(["prog"]), root) == appsource.LinuxProgram("/bin/prog")
    assert find(_spec(["/bin/script"]), root).path == "/bin/script"
    assert find(_spec(["alias"]), root).path == "/bin/prog"
    assert find(_spec(["/app/main.wasm"]), root).wasm == root / "app/main.wasm"
    with pytest.raises(appsource.AppNotFoundError, match=r"no /spin\.toml"):
        find(_spec(["/"]), root)
    (root / "spin.toml").write_text("spin_manifest_version = 2\n")
    assert find(_spec(["/"]), root).manifest == root / "spin.toml"
    (root / "app" / "spin.toml").write_text("")
    assert find(_spec(["/app"]), root).manifest == root / "app/spin.toml"
    # without containerd (no image to ask about), find_app looks only at the root filesystem
    found = asyncio.run(appsource.find_app(_spec(["prog"]), root, None))
    assert found == appsource.LinuxProgram("/bin/prog")


def test_containerd_client_unreachable_names_the_call_and_socket(tmp_path: Path) -> None:
    from grpclib.const import Status

    from wasmlet.shim.containerd import Containerd, ContainerdError

    api = Containerd(f"unix://{tmp_path}/missing.sock", "default", timeout=5)
    with pytest.raises(ContainerdError) as e:
        asyncio.run(api.info("sha256:" + "0" * 64))
    assert e.value.status == Status.UNAVAILABLE
    assert str(e.value).startswith("/containerd.services.content.v1.Content/Info: cannot connect")
    assert "missing.sock" in str(e.value)


# -- containerd configuration ----------------------------------------------------------------

V2 = 'version = 2\n[plugins."io.containerd.grpc.v1.cri"]\n  sandbox_image = "pause"\n'


def test_config_add_is_idempotent_and_remove_restores() -> None:
    edit = containerdconfig.add_runtime(V2)
    assert edit.changed
    assert '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.wasmlet]' in edit.new
    assert 'runtime_type = "io.containerd.wasmlet.v2"' in edit.new
    assert not containerdconfig.add_runtime(edit.new).changed
    assert containerdconfig.remove_runtime(edit.new).new == V2
    assert not containerdconfig.remove_runtime(V2).changed


@pytest.mark.parametrize(
    ("text", "default", "plugin"),
    [
        ("version = 3\n", 2, "io.containerd.cri.v1.runtime"),
        ("", 3, "io.containerd.cri.v1.runtime"),
        ("", 2, "io.containerd.grpc.v1.cri"),
        ('[plugins.cri]\n  sandbox_image = "p"\n', 2, "cri"),
    ],
)
def test_config_schema_versions(text: str, default: int, plugin: str) -> None:
    new = containerdconfig.add_runtime(text, default_version=default).new
    assert f'[plugins."{plugin}".containerd.runtimes.wasmlet]' in new


def test_config_left_alone_when_configured_by_hand() -> None:
    text = V2 + '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.wasmlet]\n'
    edit = containerdconfig.add_runtime(text)
    assert not edit.changed and "not by wasmlet" in edit.note


def test_config_template_is_not_validated_as_toml() -> None:
    edit = containerdconfig.add_runtime('{{ template "base" . }}\n', default_version=2)
    assert edit.new.startswith('{{ template "base" . }}')


# -- node install / uninstall ----------------------------------------------------------------


def _fake_node(root: Path, kind: str) -> Path:
    if kind == "k3s":
        base = root / "var/lib/rancher/k3s/agent/etc/containerd"
        base.mkdir(parents=True)
        (base / "config.toml").write_text(V2)
        return base / "config.toml.tmpl"
    if kind == "rke2":
        base = root / "var/lib/rancher/rke2/agent/etc/containerd"
        base.mkdir(parents=True)
        (base / "config.toml").write_text("version = 3\n")
        return base / "config-v3.toml.tmpl"
    if kind == "microk8s":
        base = root / "var/snap/microk8s/current/args"
        base.mkdir(parents=True)
        (base / "containerd-template.toml").write_text(V2)
        return base / "containerd-template.toml"
    (root / "etc/containerd").mkdir(parents=True)
    (root / "etc/containerd/config.toml").write_text(V2)
    return root / "etc/containerd/config.toml"


@pytest.mark.parametrize("kind", ["containerd", "k3s", "rke2", "microk8s"])
def test_distro_detection(tmp_path: Path, kind: str) -> None:
    config = _fake_node(tmp_path, kind)
    found = distro.detect(tmp_path, containerd_major=1)
    assert (found.name, found.config) == (kind, config)


def _opts(root: Path, **kw: object) -> nodeinstall.Options:
    marker = root / "restarted"
    return nodeinstall.Options(
        host_root=root,
        mode="copy",
        restart_command=["sh", "-c", f"echo restarted >> {marker}"],
        **kw,  # type: ignore[arg-type]
    )


def test_node_install_dry_run_changes_nothing(tmp_path: Path) -> None:
    config = _fake_node(tmp_path, "k3s")
    out = io.StringIO()
    nodeinstall.install(_opts(tmp_path, dry_run=True), out)
    text = out.getvalue()
    assert "would: Python runtime with wasmlet in /opt/wasmlet" in text
    assert '+  runtime_type = "io.containerd.wasmlet.v2"' in text
    assert "would: run sh -c" in text
    assert not config.exists() and not (tmp_path / "opt").exists()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("chroot") is None, reason="needs root")
def test_node_install_copy_mode_runs_in_a_bare_host_and_uninstalls(tmp_path: Path) -> None:
    """The copied runtime runs the shim in a chroot holding only glibc and a shell."""
    root = tmp_path / "host"
    config = _fake_node(root, "containerd")
    (root / "bin").mkdir()
    shutil.copy("/bin/busybox", root / "bin" / "sh") if Path("/bin/busybox").exists() else None
    for lib in ("libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2", "librt.so.1",
                "libutil.so.1", "libresolv.so.2"):  # fmt: skip
        target = root / "lib/x86_64-linux-gnu" / lib
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f"/lib/x86_64-linux-gnu/{lib}", target)
    (root / "lib64").mkdir()
    shutil.copy("/lib64/ld-linux-x86-64.so.2", root / "lib64")
    out = io.StringIO()
    nodeinstall.install(_opts(root), out)
    assert "done: /usr/local/bin/containerd-shim-wasmlet-v2 (wrapper)" in out.getvalue()
    assert "runtimes.wasmlet]" in config.read_text()
    assert (root / "restarted").read_text() == "restarted\n"
    chroot = shutil.which("chroot") or "chroot"
    shim = "/usr/local/bin/containerd-shim-wasmlet-v2"
    version = subprocess.run(
        [chroot, str(root), shim, "-v"], capture_output=True, text=True, env={}, check=False
    )
    assert "Runtime: wasmlet" in version.stdout, version
    out = io.StringIO()
    nodeinstall.install(_opts(root), out)  # again: nothing to do, no restart
    assert "done:" not in out.getvalue()
    assert (root / "restarted").read_text() == "restarted\n"
    out = io.StringIO()
    nodeinstall.uninstall(_opts(root), out)
    assert config.read_text() == V2
    assert not (root / "opt/wasmlet").exists()
    assert not (root / "usr/local/bin/containerd-shim-wasmlet-v2").exists()
    assert (root / "restarted").read_text() == "restarted\nrestarted\n"


def test_node_cli_link_mode_refuses_a_host_root(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    _fake_node(tmp_path, "containerd")
    code = wasmlet_main(["node", "install", "--host-root", str(tmp_path), "--mode", "link"])
    assert code == 1
    assert "--mode link only works on the node itself" in capsys.readouterr().err


def test_runtimeclass_manifest(capsys) -> None:  # type: ignore[no-untyped-def]
    assert wasmlet_main(["node", "runtimeclass"]) == 0
    rc = yaml.safe_load(capsys.readouterr().out)
    assert rc["handler"] == "wasmlet" and rc["kind"] == "RuntimeClass"
    assert rc["scheduling"]["nodeSelector"] == {"wasmlet.dev/shim": "installed"}
    deployed = yaml.safe_load(
        (Path(__file__).parents[1] / "deploy/node-installer/runtimeclass.yaml").read_text()
    )
    assert deployed == rc


def test_node_label_through_the_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import kr8s.objects

    calls: list[tuple[str, object]] = []

    class FakeNode:
        @classmethod
        def get(cls, name: str) -> FakeNode:
            calls.append(("get", name))
            return cls()

        def label(self, labels: dict[str, str]) -> None:
            calls.append(("label", labels))

        def patch(self, patch: dict[str, object]) -> None:
            calls.append(("patch", patch))

    monkeypatch.setattr(kr8s.objects, "Node", FakeNode)
    nodeinstall._label(_opts(tmp_path, label_node="n1"), nodeinstall.Report(), "installed")
    nodeinstall._label(_opts(tmp_path, label_node="n1"), nodeinstall.Report(), None)
    assert calls == [
        ("get", "n1"),
        ("label", {"wasmlet.dev/shim": "installed"}),
        ("get", "n1"),
        ("patch", {"metadata": {"labels": {"wasmlet.dev/shim": None}}}),
    ]
