"""The controller's own configuration: flags of ``haproxy-ingress run``, or the
environment when started as ``kopf run -m haproxy_ingress.handlers`` (Kopf owns that
command line, so each flag has a ``HAPROXY_INGRESS_*`` variable too).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from haproxy_ingress.haproxy.config import RenderOptions
from haproxy_ingress.haproxy.paths import HAProxyPaths
from haproxy_ingress.model import (
    DEFAULT_CONFIGMAP,
    DEFAULT_CONTROLLER_NAME,
    DEFAULT_INGRESS_CLASS,
    DEFAULT_NAMESPACE,
    TranslateOptions,
)
from haproxy_ingress.settings import parse_service_ref

ENV_PREFIX = "HAPROXY_INGRESS_"


@dataclass(frozen=True)
class ControllerConfig:
    controller_name: str = DEFAULT_CONTROLLER_NAME
    ingress_class: str = DEFAULT_INGRESS_CLASS
    namespace: str = DEFAULT_NAMESPACE  # where the ConfigMap, the Lease and its Events live
    configmap: str = DEFAULT_CONFIGMAP
    default_backend: str | None = None  # namespace/name:port
    state_dir: Path = Path("/var/lib/haproxy-ingress")
    http_binds: tuple[str, ...] = ("*:80",)
    https_binds: tuple[str, ...] = ("*:443",)
    haproxy_binary: str = "haproxy"
    haproxy_log: str | None = "stdout"
    publish_address: str | None = None  # written into Ingress status.loadBalancer
    metrics_bind: str | None = "0.0.0.0:9101"  # /metrics; None: off
    debounce: float = 0.05  # seconds of quiet before a sync: bursts coalesce
    resync_interval: float = 300.0  # full resync safety net
    startup_timeout: float = 2.0  # first sync even if no object ever arrives
    always_reload: bool = False  # a benchmark baseline: reload on every change
    serve_nginx: bool = False  # also serve the Ingresses of class nginx (take-over)
    lease_name: str = "haproxy-ingress-status"
    pod_name: str = field(default_factory=lambda: os.environ.get("POD_NAME", os.uname().nodename))

    @property
    def paths(self) -> HAProxyPaths:
        return HAProxyPaths(self.state_dir)

    def translate_options(self) -> TranslateOptions:
        return TranslateOptions(
            controller_name=self.controller_name,
            ingress_class=self.ingress_class,
            configmap_namespace=self.namespace,
            configmap_name=self.configmap,
            default_backend=(
                parse_service_ref(self.default_backend, "default-backend")
                if self.default_backend
                else None
            ),
            serve_nginx=self.serve_nginx,
        )

    def render_options(self) -> RenderOptions:
        return RenderOptions(
            self.paths,
            http_binds=self.http_binds,
            https_binds=self.https_binds,
            log_target=self.haproxy_log,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ControllerConfig:
        env = os.environ if env is None else env
        defaults = cls()
        values: dict[str, object] = {}
        for name, current in vars(defaults).items():
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is None:
                continue
            values[name] = _convert(current, raw)
        return cls(**values)  # type: ignore[arg-type]

    def to_env(self) -> dict[str, str]:
        result = {}
        for name, value in vars(self).items():
            if value is None:
                result[ENV_PREFIX + name.upper()] = ""
            elif isinstance(value, tuple):
                result[ENV_PREFIX + name.upper()] = ",".join(value)
            else:
                result[ENV_PREFIX + name.upper()] = str(value)
        return result


def _convert(current: object, raw: str) -> object:
    if isinstance(current, tuple):
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    if isinstance(current, Path):
        return Path(raw)
    if isinstance(current, bool):
        return raw.strip().lower() in {"1", "true", "yes"}
    if isinstance(current, float):
        return float(raw)
    return raw or None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``haproxy-ingress run``; each defaults to its environment variable."""
    base = ControllerConfig.from_env()
    parser.add_argument("--controller-name", default=base.controller_name)
    parser.add_argument("--ingress-class", default=base.ingress_class)
    parser.add_argument(
        "--namespace",
        default=base.namespace,
        help="the controller's namespace: ConfigMap, Lease (default: %(default)s)",
    )
    parser.add_argument("--configmap", default=base.configmap)
    parser.add_argument(
        "--default-backend", default=base.default_backend, metavar="NAMESPACE/SERVICE:PORT"
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=base.state_dir,
        help="HAProxy's files and sockets (default: %(default)s)",
    )
    parser.add_argument("--http-bind", action="append", dest="http_binds")
    parser.add_argument("--https-bind", action="append", dest="https_binds")
    parser.add_argument("--haproxy-binary", default=base.haproxy_binary)
    parser.add_argument(
        "--publish-address",
        default=base.publish_address,
        help="IP or hostname written into Ingress status",
    )
    parser.add_argument(
        "--metrics-bind",
        default=base.metrics_bind,
        help="host:port of /metrics, empty to disable (default: %(default)s)",
    )
    parser.add_argument("--debounce", type=float, default=base.debounce)
    parser.add_argument("--resync-interval", type=float, default=base.resync_interval)
    parser.add_argument(
        "--always-reload",
        action="store_true",
        default=base.always_reload,
        help="reload HAProxy on every change instead of using the runtime API "
        "(a benchmark baseline, not for production)",
    )
    add_serve_nginx(parser, base.serve_nginx)


def add_serve_nginx(parser: argparse.ArgumentParser, default: bool) -> None:
    parser.add_argument(
        "--serve-nginx",
        action=argparse.BooleanOptionalAction,
        default=default,
        help="also serve ingress-nginx's Ingresses: IngressClasses whose controller is "
        "k8s.io/ingress-nginx and the legacy kubernetes.io/ingress.class: nginx "
        "(HAPROXY_INGRESS_SERVE_NGINX; default: %(default)s)",
    )


def from_arguments(args: argparse.Namespace) -> ControllerConfig:
    """The environment's configuration with the flags applied over it."""
    base = ControllerConfig.from_env()
    return dataclasses.replace(
        base,
        controller_name=args.controller_name,
        ingress_class=args.ingress_class,
        namespace=args.namespace,
        configmap=args.configmap,
        default_backend=args.default_backend or None,
        state_dir=Path(args.state_dir),
        http_binds=tuple(args.http_binds or base.http_binds),
        https_binds=tuple(args.https_binds or base.https_binds),
        haproxy_binary=args.haproxy_binary,
        publish_address=args.publish_address or None,
        metrics_bind=args.metrics_bind or None,
        debounce=args.debounce,
        resync_interval=args.resync_interval,
        always_reload=args.always_reload,
        serve_nginx=args.serve_nginx,
    )
