"""`wasmlet kube scaffold|install|crds`, the kustomize tree and the Dockerfile."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from wasmlet.cli import main
from wasmlet.kube import install
from wasmlet.kube.scaffold import ScaffoldError, ScaffoldOptions, app_name, scaffold
from wasmlet.kube.validation import validate

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def test_scaffold_default_matches_spin_kube(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "kube", "scaffold", "-f", "ghcr.io/org/hello-world:v1")
    assert code == 0
    [app] = docs(out)
    assert app == {
        "apiVersion": "core.spinkube.dev/v1alpha1",
        "kind": "SpinApp",
        "metadata": {"name": "hello-world"},
        "spec": {
            "image": "ghcr.io/org/hello-world:v1",
            "executor": "containerd-shim-spin",
            "replicas": 2,
        },
    }
    validate(app)


def test_scaffold_everything_with_hpa(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc = tmp_path / "rc.toml"
    rc.write_text('[key_value_store.default]\ntype = "redis"\nurl = "redis://db"\n')
    out_file = tmp_path / "app.yaml"
    code, _, err = run_cli(
        capsys,
        "kube",
        "scaffold",
        "-f",
        "ghcr.io/org/app@sha256:" + "a" * 64,
        "-r",
        "2",
        "--max-replicas",
        "5",
        "--executor",
        "wasmlet-container",
        "--autoscaler",
        "hpa",
        "--cpu-limit",
        "500m",
        "--memory-limit",
        "128Mi",
        "--cpu-request",
        "100m",
        "--memory-request",
        "64Mi",
        "-c",
        str(rc),
        "-s",
        "regcred",
        "-v",
        "greeting=hi",
        "-v",
        "who=world",
        "--component",
        "api",
        "-o",
        str(out_file),
    )
    assert code == 0 and "Wrote" in err
    objs = docs(out_file.read_text())
    assert [o["kind"] for o in objs] == ["SpinApp", "Secret", "HorizontalPodAutoscaler"]
    app, secret, hpa = objs
    for obj in objs:
        validate(obj)
    spec = app["spec"]
    assert spec["enableAutoscaling"] is True and "replicas" not in spec
    assert spec["runtimeConfig"] == {"loadFromSecret": "app-runtime-config"}
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert spec["variables"] == [
        {"name": "greeting", "value": "hi"},
        {"name": "who", "value": "world"},
    ]
    assert spec["components"] == ["api"]
    assert spec["resources"] == {
        "limits": {"cpu": "500m", "memory": "128Mi"},
        "requests": {"cpu": "100m", "memory": "64Mi"},
    }
    assert secret["metadata"]["name"] == "app-runtime-config"
    assert hpa["metadata"]["name"] == "app-autoscaler"
    assert hpa["spec"]["minReplicas"] == 2 and hpa["spec"]["maxReplicas"] == 5
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "app",
    }


def test_scaffold_keda_targeting_the_spinapp_scale_subresource() -> None:
    objs = scaffold(
        ScaffoldOptions(
            image="r/x:1",
            autoscaler="keda",
            autoscaler_target="spinapp",
            cpu_limit="1",
            memory_limit="1Gi",
        )
    )
    app, scaled = objs
    assert [o["kind"] for o in objs] == ["SpinApp", "ScaledObject"]  # never both
    assert app["spec"]["replicas"] == 2 and "enableAutoscaling" not in app["spec"]
    assert scaled["spec"]["scaleTargetRef"]["kind"] == "SpinApp"
    for obj in objs:
        validate(obj)


@pytest.mark.parametrize(
    "opts, message",
    [
        ({"autoscaler": "hpa"}, "needs --cpu-limit and --memory-limit"),
        (
            {"autoscaler": "hpa", "cpu_limit": "1", "memory_limit": "1Gi", "cpu_utilization": 0},
            "between 1 and 100",
        ),
        (
            {
                "autoscaler": "keda",
                "cpu_limit": "1",
                "memory_limit": "1Gi",
                "memory_utilization": 101,
            },
            "between 1 and 100",
        ),
        (
            {"autoscaler": "hpa", "cpu_limit": "1", "memory_limit": "1Gi", "replicas": 4},
            "cannot exceed --max-replicas",
        ),
        ({"image": "ghcr.io/org/Bad_Name:v1"}, "not a valid Kubernetes name"),
    ],
)
def test_scaffold_rules(opts: dict[str, Any], message: str) -> None:
    with pytest.raises(ScaffoldError, match=message):
        scaffold(ScaffoldOptions(**({"image": "r/x:1"} | opts)))


def test_scaffold_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "kube", "scaffold", "-f", "r/x:1", "--autoscaler", "hpa")
    assert code == 1 and err.startswith("Error: an autoscaler needs")


def test_app_name_from_references() -> None:
    assert app_name("localhost:5000/app:v1") == "app"
    assert app_name("ghcr.io/a/b/c-d") == "c-d"


def test_install_prints_valid_manifests(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "kube", "install")
    assert code == 0
    objs = docs(out)
    kinds = [o["kind"] for o in objs]
    assert kinds[:3] == ["Namespace", "CustomResourceDefinition", "CustomResourceDefinition"]
    assert {
        "ClusterRole",
        "ClusterRoleBinding",
        "ServiceAccount",
        "Deployment",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    } <= set(kinds)
    unchecked = [o["kind"] for o in objs if not validate(o)]
    assert unchecked == ["Issuer", "Certificate"]  # cert-manager: no schema offline
    names = [(o["kind"], o["metadata"]["name"]) for o in objs]
    activator = [(kind, name) for kind, name in names if name == "wasmlet-activator"]
    assert activator == [
        ("ServiceAccount", "wasmlet-activator"),
        ("ClusterRole", "wasmlet-activator"),
        ("ClusterRoleBinding", "wasmlet-activator"),
        ("Deployment", "wasmlet-activator"),
        ("Service", "wasmlet-activator"),
    ]


def test_install_without_webhooks(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run_cli(capsys, "kube", "install", "--no-webhooks", "--image", "me/op:1")
    objs = docs(out)
    assert not [o for o in objs if "Webhook" in o["kind"] or "cert-manager" in o["apiVersion"]]
    dep = next(o for o in objs if o["kind"] == "Deployment")
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "me/op:1"
    assert container["args"][:3] == ["kube", "operator", "--all-namespaces"]
    assert "--webhook-port" not in container["args"]
    activator = next(o for o in objs if o["metadata"]["name"] == "wasmlet-activator")
    assert activator  # still installed without webhooks
    deployments = [o for o in objs if o["kind"] == "Deployment"]
    assert {
        c["image"] for d in deployments for c in d["spec"]["template"]["spec"]["containers"]
    } == {"me/op:1"}


def test_install_without_the_activator(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run_cli(capsys, "kube", "install", "--no-activator")
    assert not [o for o in docs(out) if "wasmlet-activator" in str(o["metadata"])]
    _, out, _ = run_cli(capsys, "kube", "install")
    assert [o for o in docs(out) if "wasmlet-activator" in str(o["metadata"])]


def test_activator_deployment_and_service() -> None:
    from wasmlet.kube import ACTIVATOR_NAME, ACTIVATOR_PORT, DEFAULT_IMAGE

    dep = install.activator_deployment()
    assert dep["metadata"] == {
        "name": ACTIVATOR_NAME,
        "namespace": "wasmlet-system",
        "labels": {
            "app.kubernetes.io/name": ACTIVATOR_NAME,
            "app.kubernetes.io/part-of": "wasmlet",
        },
    }
    pod = dep["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == ACTIVATOR_NAME
    [container] = pod["containers"]
    assert container["image"] == DEFAULT_IMAGE
    assert container["args"] == ["kube", "activator", "--listen", "0.0.0.0:8080"]
    assert container["ports"] == [
        {"name": "http", "containerPort": ACTIVATOR_PORT, "protocol": "TCP"}
    ]
    assert container["readinessProbe"]["httpGet"] == {
        "path": "/.well-known/spin/health",
        "port": ACTIVATOR_PORT,
    }
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert container["resources"]["requests"] == {"cpu": "100m", "memory": "256Mi"}
    # a read-only root: the compile cache and the apps' state live on emptyDirs
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {env["WASMLET_CACHE_DIR"]["value"], "/tmp"} <= mounts
    # the selector matches the pods, and only the activator's (not the operator's)
    selector = dep["spec"]["selector"]["matchLabels"]
    assert selector.items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    operator_labels = install.operator_deployment()["spec"]["template"]["metadata"]["labels"]
    assert not selector.items() <= operator_labels.items()
    svc = install.activator_service()
    assert svc["spec"]["selector"] == selector
    assert svc["spec"]["ports"] == [
        {"name": "http", "port": ACTIVATOR_PORT, "targetPort": "http", "protocol": "TCP"}
    ]
    for obj in install.activator_objects():
        validate(obj)


def test_rbac_is_least_privilege() -> None:
    rules = install.cluster_role()["rules"]
    for rule in rules:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
        assert rule["apiGroups"] != ["*"]
    by_resource = {r: set(rule["verbs"]) for rule in rules for r in rule["resources"]}
    assert by_resource["configmaps"] == {"get"}
    assert by_resource["pods"] == {"list", "watch"}
    assert "update" not in by_resource["spinapps"]
    assert by_resource["endpointslices"] == {"get", "list", "watch", "create", "patch", "delete"}
    # the activator: read the apps and what they reference, write only their /scale
    activator = install.activator_cluster_role()["rules"]
    assert {
        (g, r): set(rule["verbs"])
        for rule in activator
        for g in rule["apiGroups"]
        for r in rule["resources"]
    } == {
        ("core.spinkube.dev", "spinapps"): {"get", "list", "watch"},
        ("core.spinkube.dev", "spinapps/scale"): {"get", "update", "patch"},
        ("", "secrets"): {"get"},
        ("", "configmaps"): {"get"},
        ("discovery.k8s.io", "endpointslices"): {"get", "list", "watch"},
        ("", "events"): {"create"},
    }
    binding = install.activator_cluster_role_binding()
    assert binding["roleRef"]["name"] == "wasmlet-activator"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "wasmlet-activator", "namespace": "wasmlet-system"}
    ]


def test_operator_knows_the_activator_namespace() -> None:
    from wasmlet.cli import build_parser

    [container] = install.operator_deployment()["spec"]["template"]["spec"]["containers"]
    assert {
        "name": "POD_NAMESPACE",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
    } in container["env"]
    args = build_parser().parse_args(["kube", "operator"])
    assert args.activator_namespace == "wasmlet-system"
    args = build_parser().parse_args(["kube", "operator", "--activator-namespace", "x"])
    assert args.activator_namespace == "x"


def test_webhook_paths_are_the_kopf_handler_ids() -> None:
    from wasmlet.kube.operator import WEBHOOK_IDS

    paths = {
        hook["clientConfig"]["service"]["path"]
        for cfg in install.webhook_configurations()
        for hook in cfg["webhooks"]
    }
    assert paths == {f"/{i}" for i in WEBHOOK_IDS.values()}


def test_crds_command(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _, out, _ = run_cli(capsys, "kube", "crds")
    assert [d["metadata"]["name"] for d in docs(out)] == [
        "spinapps.core.spinkube.dev",
        "spinappexecutors.core.spinkube.dev",
    ]
    run_cli(capsys, "kube", "crds", "-o", str(tmp_path))
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(p.name for p in (DEPLOY / "crds").glob("core.*.yaml"))
    for path in tmp_path.iterdir():
        committed = (DEPLOY / "crds" / path.name).read_text()
        assert committed == install.HEADER + path.read_text()


def _kustomize_structure(directory: Path, seen: set[Path]) -> list[dict[str, Any]]:
    """What `kubectl kustomize` would load: every resource exists, recursively."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    objs: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        target = (directory / resource).resolve()
        assert target.exists(), f"{directory}/{resource} is missing"
        if target.is_dir():
            assert target not in seen, f"cycle through {target}"
            objs += _kustomize_structure(target, seen | {target})
        else:
            objs += docs(target.read_text())
    for patch in kustomization.get("patches", []):
        assert (directory / patch["path"]).is_file()
    return objs


@pytest.mark.parametrize(
    "variant", ["default", "without-webhooks", "activator", "samples", "runtimeclass"]
)
def test_kustomize_bases(variant: str) -> None:
    objs = _kustomize_structure(DEPLOY / variant, set())
    assert objs
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: checked the kustomization structure only")
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / variant)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    built = docs(rendered)
    if variant == "default":
        expected = install.objects()
    elif variant == "without-webhooks":
        expected = install.objects(webhooks=False)
    else:
        expected = objs

    def key(o: dict[str, Any]) -> tuple[str, str]:
        return (o["kind"], o["metadata"]["name"])

    assert sorted(map(key, built)) == sorted(map(key, expected))

    def normal(o: dict[str, Any]) -> dict[str, Any]:
        """A strategic merge orders merged `ports` by its own rules; compare them as sets."""
        for c in o.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            c["ports"] = sorted(c.get("ports", []), key=lambda p: p["name"])
        return o

    want = {key(o): normal(o) for o in expected}
    for obj in built:
        assert normal(obj) == want[key(obj)], f"{key(obj)} differs from `wasmlet kube install`"


def test_default_image_is_tagged_with_the_package_version() -> None:
    import wasmlet
    from wasmlet.kube import DEFAULT_IMAGE

    repository, _, tag = DEFAULT_IMAGE.rpartition(":")
    assert (repository, tag) == ("ghcr.io/wasmlet/wasmlet", wasmlet.__version__)
    # deploy/node-installer is written by hand (not generated like the operator's bases)
    [daemonset] = docs((DEPLOY / "node-installer" / "daemonset.yaml").read_text())
    pod = daemonset["spec"]["template"]["spec"]
    assert {c["image"] for c in pod["initContainers"] + pod["containers"]} == {DEFAULT_IMAGE}


def test_dockerfile_installs_wasmlet_with_wasmlet_entrypoint() -> None:
    lines = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert lines[0].startswith("FROM python:3.11")
    assert "COPY src ./src" in lines and "COPY pyproject.toml README.md ./" in lines
    assert any(line.startswith("RUN pip install .") for line in lines)
    assert lines.count('ENTRYPOINT ["wasmlet"]') == 1
    assert "EXPOSE 80" in lines
    # the container executor's command line parses with this image's `wasmlet`
    from wasmlet.cli import build_parser

    args = build_parser().parse_args(
        [
            "up",
            "--listen",
            "0.0.0.0:80",
            "-f",
            "ghcr.io/x/app:v1",
            "--runtime-config-file",
            "/runtime-config.toml",
        ]
    )
    assert args.app == "ghcr.io/x/app:v1" and args.listen == "0.0.0.0:80"
    # and so does the operator's, from deploy/
    dep = install.operator_deployment(webhooks=True)
    op_args = build_parser().parse_args(dep["spec"]["template"]["spec"]["containers"][0]["args"])
    assert op_args.webhook_port == 9443
    # and the activator's
    dep = install.activator_deployment()
    act_args = build_parser().parse_args(dep["spec"]["template"]["spec"]["containers"][0]["args"])
    assert (act_args.kube_command, act_args.listen) == ("activator", "0.0.0.0:8080")
