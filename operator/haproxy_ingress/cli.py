"""The ``haproxy-ingress`` command.

``render`` is the offline debugging tool: Kubernetes YAML in, the exact files the
controller would give HAProxy out, and one line per rejected object.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import logging
import multiprocessing
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from haproxy_ingress import audit, ingress_class, logs
from haproxy_ingress import config as controller_config
from haproxy_ingress.cluster import ClusterView
from haproxy_ingress.config import ControllerConfig
from haproxy_ingress.haproxy.config import default_certificate_path, render
from haproxy_ingress.haproxy.files import atomic_write
from haproxy_ingress.loader import LoadError, load_objects
from haproxy_ingress.model import (
    DEFAULT_CONFIGMAP,
    DEFAULT_CONTROLLER_NAME,
    DEFAULT_INGRESS_CLASS,
    DEFAULT_NAMESPACE,
    Problem,
)
from haproxy_ingress.plan import plan
from haproxy_ingress.tls import PARALLEL_CHECKS, CertificateCache, generate_default_certificate
from haproxy_ingress.translate import tls_secrets_named, translate
from haproxy_ingress.validate import Invalid

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_UNUSABLE = 2
ONE_SHOT = frozenset({"render", "audit"})  # commands that end by os._exit (see script)


def _add_controller_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--controller-name",
        default=DEFAULT_CONTROLLER_NAME,
        help="IngressClass spec.controller this controller answers to (default: %(default)s)",
    )
    parser.add_argument(
        "--ingress-class",
        default=DEFAULT_INGRESS_CLASS,
        help="class named by the legacy kubernetes.io/ingress.class annotation "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--configmap",
        default=f"{DEFAULT_NAMESPACE}/{DEFAULT_CONFIGMAP}",
        help="namespace/name of the controller's ConfigMap (default: %(default)s)",
    )
    parser.add_argument(
        "--default-backend",
        metavar="NAMESPACE/SERVICE:PORT",
        help="Service for requests no rule matches (default: a plain 404)",
    )
    controller_config.add_serve_nginx(parser, False)
    controller_config.add_ssl_passthrough(parser)
    parser.add_argument(
        "--http-bind", action="append", help="HTTP listen address (default: *:80), repeatable"
    )
    parser.add_argument(
        "--https-bind", action="append", help="HTTPS listen address (default: *:443), repeatable"
    )


def render_config(args: argparse.Namespace) -> ControllerConfig:
    """The controller configuration the ``render`` flags describe (no HAProxy log)."""
    namespace, _, name = str(args.configmap).partition("/")
    return ControllerConfig(
        controller_name=args.controller_name,
        ingress_class=args.ingress_class,
        namespace=namespace,
        configmap=name,
        default_backend=args.default_backend,
        state_dir=Path(args.out).resolve(),
        http_binds=tuple(args.http_bind or ControllerConfig.http_binds),
        https_binds=tuple(args.https_bind or ControllerConfig.https_binds),
        haproxy_log=None,
        serve_nginx=args.serve_nginx,
        enable_ssl_passthrough=args.enable_ssl_passthrough,
    )


def cmd_render(args: argparse.Namespace) -> int:
    # A one-shot run that builds a few million long-lived objects and frees
    # nothing until exit: the cyclic GC would only re-scan them, again and
    # again (a third of a 10k-Ingress render). Reference counting still frees.
    gc.disable()
    config = render_config(args)
    try:
        options = config.translate_options()
        objects = load_objects(Path(p) for p in args.filename)
    except (LoadError, Invalid) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_UNUSABLE
    view, _ = ClusterView.from_objects(objects, options, compact=False)
    certificates = CertificateCache()
    # The certificate checks (~1.5 ms of OpenSSL per RSA key) run in a
    # process of their own meanwhile, on the core translate leaves idle.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        named = tls_secrets_named(view)
        if len(named) >= PARALLEL_CHECKS:
            certificates.check_ahead(named, pool)
        desired = translate(view, options, certificate_cache=certificates)
    paths = config.paths
    paths.ensure()
    rendered = render(plan(None, desired).target, config.render_options())
    default_cert = default_certificate_path(paths)
    if not default_cert.exists():
        now = datetime.datetime.now(datetime.UTC)
        atomic_write(default_cert, generate_default_certificate(now).encode(), mode=0o600)
    for file in rendered.all:
        # Offline output: no HAProxy reloads from it mid-write, so no fsyncs
        # (2,000 of them were a tenth of a 10k-Ingress render).
        atomic_write(file.path, file.content, mode=file.mode, durable=False)
    for problem in desired.problems:
        print(f"{problem.source}: {problem.message}", file=sys.stderr)
    left = ingress_class.all_left_out(view.ingresses, view.ingress_classes, options)
    for item in left:
        hint = (
            " (add the file that defines it with -f)"
            if item.kind == ingress_class.UNDEFINED
            else ""
        )
        print(f"{item.ingress}: left out ({item.kind}): {item.reason}{hint}", file=sys.stderr)
    print(summary(view, desired.problems, left), file=sys.stderr)
    undefined = any(item.kind == ingress_class.UNDEFINED for item in left)
    return EXIT_REJECTED if desired.problems or undefined else EXIT_OK


def summary(
    view: ClusterView, problems: Sequence[Problem], left: Sequence[ingress_class.LeftOut]
) -> str:
    """``Ingresses: N served, M ignored (foreign class), K rejected``, and the rest."""
    ignored = {item.ingress for item in left}
    rejected = {p.source for p in problems if p.source.kind == "Ingress" and p.event == "Rejected"}
    total = len(view.ingresses)
    by_kind: dict[str, int] = {}
    for item in left:
        by_kind[item.kind] = by_kind.get(item.kind, 0) + 1
    detail = ", ".join(f"{count} {kind}" for kind, count in sorted(by_kind.items()))
    return (
        f"Ingresses: {total - len(ignored) - len(rejected)} served, {len(ignored)} ignored"
        + (f" ({detail})" if detail else "")
        + f", {len(rejected)} rejected"
    )


def cmd_audit(args: argparse.Namespace) -> int:
    """The migration report; exit 1 if an Ingress would fail closed or be rejected."""
    namespace, _, name = str(args.configmap).partition("/")
    config = ControllerConfig(
        controller_name=args.controller_name,
        ingress_class=args.ingress_class,
        namespace=namespace,
        configmap=name,
        serve_nginx=args.serve_nginx,
        enable_ssl_passthrough=args.enable_ssl_passthrough,
    )
    try:
        options = config.translate_options()
        if args.filename:
            objects = load_objects(Path(p) for p in args.filename)
        else:
            objects = asyncio.run(audit.live_objects(args.kubeconfig, args.context, options))
    except (LoadError, Invalid) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_UNUSABLE
    except Exception as error:  # the cluster: unreachable, forbidden, no kubeconfig
        print(f"error: cannot list the cluster: {error!r}", file=sys.stderr)
        return EXIT_UNUSABLE
    view, _ = ClusterView.from_objects(objects, options, compact=False)
    result = audit.audit(view, options)
    sys.stdout.write(audit.render_text(result))
    return EXIT_REJECTED if result.failing else EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    # Kopf and the handlers only here: importing them is 0.2 s (and 40 MiB)
    # that the offline commands do not need.
    import kopf  # noqa: PLC0415

    from haproxy_ingress import (  # noqa: PLC0415
        handlers,  # noqa: F401  (registers the handlers kopf.run runs)
        kopfpatch,
    )

    config = controller_config.from_arguments(args)
    # Kopf's own logging set-up, as `kopf run` does it: plain, full or JSON lines.
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat[args.log_format.upper()])
    logs.quiet_defaults(verbose=args.verbose, api_bodies=args.log_api_bodies)
    kopf.run(
        standalone=True,
        clusterwide=not args.watch_namespace,
        namespaces=args.watch_namespace or (),
        liveness_endpoint=args.liveness,
        memo=kopfpatch.SharedMemo(config=config),
    )
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="haproxy-ingress",
        description="A Kubernetes Ingress controller that drives HAProxy.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    render_parser = commands.add_parser(
        "render",
        help="render HAProxy's files from Kubernetes YAML, offline",
        description="Read Ingresses, IngressClasses, Services, EndpointSlices, TLS Secrets "
        "and the controller ConfigMap from YAML files and write the haproxy.cfg, maps "
        "and certificates the controller would use. Rejected objects are listed on "
        "stderr. Exit status: 0 all accepted, 1 some rejected, 2 unusable input.",
    )
    render_parser.add_argument(
        "-f",
        "--filename",
        action="append",
        required=True,
        help="YAML/JSON file or directory (repeatable; '-' is not supported)",
    )
    render_parser.add_argument("--out", required=True, help="directory to write into")
    _add_controller_flags(render_parser)
    render_parser.set_defaults(handler=cmd_render)

    audit_parser = commands.add_parser(
        "audit",
        help="what each Ingress's annotations become here, before switching",
        description="For each Ingress this controller would serve and each of its "
        "annotations (both prefixes): honoured, ignored (with a Warning), refused "
        "(a snippet not applied), fail-closed (its paths answer 403) or rejected "
        "(not served), then the counts. Reads YAML with -f, else lists the cluster "
        "of the kubeconfig. Ingresses of class nginx are included unless "
        "--no-serve-nginx. Exit status: 0 all served, 1 something would fail "
        "closed or be rejected, 2 unusable input.",
    )
    audit_parser.add_argument(
        "-f", "--filename", action="append", help="YAML/JSON file or directory (repeatable)"
    )
    audit_parser.add_argument("--kubeconfig", help="default: $KUBECONFIG or ~/.kube/config")
    audit_parser.add_argument("--context", help="kubeconfig context (default: current)")
    audit_parser.add_argument("--controller-name", default=DEFAULT_CONTROLLER_NAME)
    audit_parser.add_argument("--ingress-class", default=DEFAULT_INGRESS_CLASS)
    audit_parser.add_argument("--configmap", default=f"{DEFAULT_NAMESPACE}/{DEFAULT_CONFIGMAP}")
    controller_config.add_serve_nginx(audit_parser, True)
    controller_config.add_ssl_passthrough(audit_parser)
    audit_parser.set_defaults(handler=cmd_audit)

    run_parser = commands.add_parser(
        "run",
        help="run the controller and its HAProxy against the current kubeconfig",
        description="Watch the cluster (the in-cluster ServiceAccount, or KUBECONFIG) and "
        "drive a local HAProxy in master-worker mode. Every flag also reads a "
        "HAPROXY_INGRESS_* environment variable, which is how `kopf run -m "
        "haproxy_ingress.handlers` is configured.",
    )
    controller_config.add_arguments(run_parser)
    run_parser.add_argument(
        "--watch-namespace",
        action="append",
        help="watch only this namespace, repeatable (default: all namespaces; "
        "no env: kopf run's --namespace)",
    )
    run_parser.add_argument(
        "--liveness",
        default=None,
        metavar="URL",
        help="Kopf's own liveness endpoint, which only says the event loop runs "
        "(default: off, /healthz on --health-bind checks HAProxy; no env: kopf run's "
        "--liveness)",
    )
    run_parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="DEBUG logs (default: INFO; no env: kopf run's --verbose)",
    )
    run_parser.add_argument(
        "--log-api-bodies",
        action="store_true",
        default=logs.api_bodies_wanted(),
        help="with --verbose, also log every Kubernetes API response body (default: off; "
        f"env {logs.API_BODIES_ENV})",
    )
    run_parser.add_argument(
        "--log-format",
        choices=("plain", "full", "json"),
        default="full",
        help="log lines as Kopf writes them; json for log collectors "
        "(default: %(default)s; no env: kopf run's --log-format)",
    )
    run_parser.set_defaults(handler=cmd_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


def script() -> None:
    """The ``haproxy-ingress`` command: :func:`main`; the offline ones end as mypy ends.

    ``render`` and ``audit`` of 10k Ingresses hold millions of objects when
    they are done, and freeing them one by one at exit took 0.36 s of a 5 s
    render, for nothing: the process is ending. So, once the output is
    flushed, they leave with ``os._exit`` (mypy's ``--fast-exit``). ``run``
    exits as usual.
    """
    args = build_parser().parse_args()
    code = int(args.handler(args))
    if args.command in ONE_SHOT:
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    script()
