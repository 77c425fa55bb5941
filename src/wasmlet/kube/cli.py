"""`wasmlet kube`: scaffold, install, crds, operator (registered by wasmlet.cli)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from ..argtypes import key_value_arg
from ..errors import WasmletError
from . import DEFAULT_IMAGE, DEFAULT_NAMESPACE, activator_cli

SCAFFOLD_EPILOG = """\
examples:
  wasmlet kube scaffold -f ghcr.io/org/hello:v1
  wasmlet kube scaffold -f ghcr.io/org/hello:v1 --autoscaler hpa --cpu-limit 500m \\
      --memory-limit 128Mi -o hello.yaml
  wasmlet kube scaffold -f ghcr.io/org/hello:v1 --executor wasmlet-container -v greeting=hi
"""


def _add_scaffold(sub: Any) -> None:
    p = sub.add_parser(
        "scaffold",
        help="write a SpinApp manifest for an app image",
        description="Write a SpinApp (and an HPA or KEDA ScaledObject) for an app image, "
        "with the flags of `spin kube scaffold`.",
        epilog=SCAFFOLD_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "-f",
        "--from",
        dest="image",
        required=True,
        metavar="IMAGE",
        help="the app's OCI image reference (the app is named after its last path segment)",
    )
    p.add_argument("-r", "--replicas", type=int, default=2, help="replicas (default: 2)")
    p.add_argument(
        "--max-replicas", type=int, default=3, help="most replicas, with an autoscaler (default: 3)"
    )
    p.add_argument(
        "--executor",
        default="containerd-shim-spin",
        help="SpinAppExecutor (default: containerd-shim-spin)",
    )
    p.add_argument("--autoscaler", choices=["hpa", "keda"], help="also write an autoscaler")
    p.add_argument(
        "--autoscaler-target",
        choices=["deployment", "spinapp"],
        default="deployment",
        help="scale the Deployment (as SpinKube does) or the SpinApp through its "
        "/scale subresource (default: deployment)",
    )
    p.add_argument("--autoscaler-target-cpu-utilization", type=int, default=60, metavar="PCT")
    p.add_argument("--autoscaler-target-memory-utilization", type=int, default=60, metavar="PCT")
    p.add_argument("--cpu-limit")
    p.add_argument("--cpu-request")
    p.add_argument("--memory-limit")
    p.add_argument("--memory-request")
    p.add_argument(
        "-c",
        "--runtime-config-file",
        type=Path,
        metavar="FILE",
        help="runtime config TOML, stored in Secret <name>-runtime-config",
    )
    p.add_argument("-s", "--image-pull-secret", action="append", default=[], metavar="NAME")
    p.add_argument(
        "-v",
        "--variable",
        type=key_value_arg,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="application variable (repeatable)",
    )
    p.add_argument(
        "--component",
        action="append",
        default=[],
        metavar="ID",
        help="run only this component (repeatable)",
    )
    p.add_argument("-n", "--namespace", help="namespace to put in the manifests")
    p.add_argument("-o", "--out", type=Path, metavar="FILE", help="write here, not to stdout")
    p.set_defaults(func=cmd_scaffold)


def _add_install(sub: Any) -> None:
    p = sub.add_parser(
        "install",
        help="print (or apply) the operator's install manifests",
        description="The CRDs, RBAC, the operator Deployment and its admission webhooks "
        "(certificates by cert-manager). Without --apply they are printed for kubectl.",
    )
    p.add_argument(
        "--apply",
        action="store_true",
        help="server-side apply them through the Kubernetes API (kubeconfig or "
        "in-cluster credentials)",
    )
    p.add_argument(
        "--no-webhooks",
        action="store_true",
        help="leave out the admission webhooks (no cert-manager needed)",
    )
    p.add_argument(
        "--no-activator",
        action="store_true",
        help="leave out the activator (SpinApps with autoscaler type wasmlet then have "
        "nothing serving them at zero pods)",
    )
    p.add_argument(
        "--image",
        default=DEFAULT_IMAGE,
        help="operator and activator image (default: %(default)s)",
    )
    p.add_argument("--server", metavar="URL", help="API server URL (default: from kubeconfig)")
    p.set_defaults(func=cmd_install)


def _add_crds(sub: Any) -> None:
    p = sub.add_parser("crds", help="print the SpinApp and SpinAppExecutor CRDs")
    p.add_argument("-o", "--out", type=Path, metavar="DIR", help="write one file per CRD here")
    p.set_defaults(func=cmd_crds)


def _add_operator(sub: Any) -> None:
    p = sub.add_parser(
        "operator",
        help="run the operator (kopf)",
        description="Reconcile SpinApps into Deployments, Services and Secrets; serve the "
        "admission webhooks when given a certificate.",
    )
    p.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        dest="namespaces",
        help="watch this namespace (repeatable; kopf globs allowed)",
    )
    p.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        help="watch the whole cluster (the default without --namespace)",
    )
    p.add_argument(
        "--server", metavar="URL", help="API server URL, unauthenticated (tests, kubectl proxy)"
    )
    p.add_argument("--webhook-port", type=int, metavar="PORT", help="serve admission here")
    p.add_argument("--webhook-cert", type=Path, metavar="FILE")
    p.add_argument("--webhook-key", type=Path, metavar="FILE")
    p.add_argument(
        "--webhook-insecure",
        action="store_true",
        help="serve the webhooks over plain HTTP (testing only)",
    )
    p.add_argument("--liveness-port", type=int, metavar="PORT", help="serve /healthz here")
    p.add_argument(
        "--metrics-listen",
        metavar="ADDR",
        help="serve Prometheus metrics at http://ADDR/metrics, e.g. 0.0.0.0:9090: reconciles "
        "by kind and outcome, their durations and errors by reason (default: none)",
    )
    p.add_argument(
        "--retry-delay",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="wait before retrying a failed reconcile (default: 10)",
    )
    p.add_argument(
        "--max-concurrent-reconciles",
        type=int,
        default=32,
        metavar="N",
        help="reconciles in flight at once (default: 32)",
    )
    p.add_argument(
        "--no-watch-pods",
        action="store_true",
        help="do not watch pods (no image-pull errors in status)",
    )
    p.add_argument(
        "--activator-namespace",
        default=os.environ.get("POD_NAMESPACE") or DEFAULT_NAMESPACE,
        metavar="NS",
        help="the namespace of Service wasmlet-activator (default: $POD_NAMESPACE, else "
        "%(default)s)",
    )
    p.add_argument(
        "--insecure-registry",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="read apps' images from this registry over plain HTTP (repeatable; the operator "
        "reads each app's locked app from its image to learn its triggers)",
    )
    p.add_argument(
        "--no-read-triggers",
        action="store_true",
        help="do not read apps' triggers from their images: every app is taken for an HTTP "
        "app (a Service, HTTP probes), as SpinKube's operator does",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=cmd_operator)


def register(subparsers: Any) -> None:
    kube = subparsers.add_parser(
        "kube",
        help="Kubernetes: scaffold SpinApps, install and run the operator",
        description="SpinKube-compatible Kubernetes support (core.spinkube.dev/v1alpha1).",
    )
    sub = kube.add_subparsers(dest="kube_command", metavar="COMMAND")
    _add_scaffold(sub)
    _add_install(sub)
    _add_crds(sub)
    _add_operator(sub)
    activator_cli.add_parser(sub)
    kube.set_defaults(func=lambda args: _help(kube))


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def cmd_scaffold(args: argparse.Namespace) -> int:
    from .scaffold import ScaffoldError, ScaffoldOptions, scaffold_yaml

    runtime_config = None
    if args.runtime_config_file is not None:
        try:
            runtime_config = args.runtime_config_file.read_text()
        except OSError as e:
            raise WasmletError(f"{args.runtime_config_file}: {e.strerror}") from None
    opts = ScaffoldOptions(
        image=args.image,
        replicas=args.replicas,
        max_replicas=args.max_replicas,
        executor=args.executor,
        autoscaler=args.autoscaler,
        autoscaler_target=args.autoscaler_target,
        cpu_utilization=args.autoscaler_target_cpu_utilization,
        memory_utilization=args.autoscaler_target_memory_utilization,
        cpu_limit=args.cpu_limit,
        cpu_request=args.cpu_request,
        memory_limit=args.memory_limit,
        memory_request=args.memory_request,
        runtime_config=runtime_config,
        image_pull_secrets=args.image_pull_secret,
        variables=args.variable,
        components=args.component,
        namespace=args.namespace,
    )
    try:
        text = scaffold_yaml(opts)
    except ScaffoldError as e:
        raise WasmletError(str(e)) from None
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text)
        print(f"Wrote {args.out}", file=sys.stderr)
    return 0


async def apply_all(objs: list[dict[str, Any]], server: str | None) -> list[str]:
    """Server-side apply each object in order; one line per object."""
    from .client import ApiError, KubeClient

    try:
        client = await KubeClient.connect(server)
    except Exception as e:  # kr8s raises several kinds for "no cluster"
        raise WasmletError(f"cannot reach the Kubernetes API: {e}") from None
    client.field_manager = "wasmlet-install"
    done = []
    try:
        for obj in objs:
            what = f"{obj['kind']}/{obj['metadata']['name']}"
            try:
                await client.apply(obj)
            except ApiError as e:
                hint = ""
                if obj["apiVersion"].startswith("cert-manager.io/") and e.status == 404:
                    hint = " (cert-manager is not installed; install it or use --no-webhooks)"
                raise WasmletError(f"applying {what}: {e}{hint}") from None
            done.append(f"{what} applied")
    finally:
        await client.close()
    return done


def cmd_install(args: argparse.Namespace) -> int:
    from ._yaml import dump
    from .install import objects

    objs = objects(image=args.image, webhooks=not args.no_webhooks, activator=not args.no_activator)
    if not args.apply:
        sys.stdout.write(dump(objs))
        return 0
    for line in asyncio.run(apply_all(objs, args.server)):
        print(line)
    return 0


def cmd_crds(args: argparse.Namespace) -> int:
    from .crds import crd_yaml, crds, write

    if args.out is None:
        sys.stdout.write("".join(crd_yaml(c) for c in crds()))
    else:
        for path in write(args.out):
            print(path)
    return 0


def cmd_operator(args: argparse.Namespace) -> int:
    import logging

    import kopf

    from .operator import OperatorConfig, main

    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.all_namespaces and args.namespaces:
        raise WasmletError("use --namespace or --all-namespaces, not both")
    webhook = None
    if args.webhook_port is not None:
        if not args.webhook_insecure and not (args.webhook_cert and args.webhook_key):
            raise WasmletError("--webhook-port needs --webhook-cert and --webhook-key")
        webhook = kopf.WebhookServer(
            addr="0.0.0.0",
            port=args.webhook_port,
            certfile=None if args.webhook_insecure else str(args.webhook_cert),
            pkeyfile=None if args.webhook_insecure else str(args.webhook_key),
            insecure=args.webhook_insecure,
        )
    config = OperatorConfig(
        server=args.server,
        namespaces=list(args.namespaces),
        retry_delay=args.retry_delay,
        webhook=webhook,
        watch_pods=not args.no_watch_pods,
        max_concurrent=args.max_concurrent_reconciles,
        activator_namespace=args.activator_namespace,
        liveness=f"http://0.0.0.0:{args.liveness_port}/healthz" if args.liveness_port else None,
        read_triggers=not args.no_read_triggers,
        insecure_registries=tuple(args.insecure_registry),
        metrics_listen=args.metrics_listen,
    )
    return main(config)
