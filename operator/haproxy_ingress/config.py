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
    publish_service: str | None = None  # [namespace/]name: publish its address instead
    metrics_bind: str | None = "0.0.0.0:9101"  # /metrics; None: off
    # /healthz and /readyz. ingress-nginx's health port; apart from every other
    # default and from the README's examples (8080, 8443).
    health_bind: str | None = "0.0.0.0:10254"
    debounce: float = 0.05  # seconds of quiet before a sync: bursts coalesce
    resync_interval: float = 300.0  # full resync safety net
    startup_timeout: float = 2.0  # then say the first sync waits for the initial listing
    always_reload: bool = False  # a benchmark baseline: reload on every change
    serve_nginx: bool = False  # also serve the Ingresses of class nginx (take-over)
    # ingress-nginx's flag: honour ssl-passthrough (the HTTPS binds become SNI-routed TCP).
    enable_ssl_passthrough: bool = False
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
            reserved_ports=tuple(
                sorted(
                    {
                        int(bind.rpartition(":")[2])
                        for bind in (self.metrics_bind, self.health_bind)
                        if bind and bind.rpartition(":")[2].isdigit()
                    }
                )
            ),
            serve_nginx=self.serve_nginx,
            ssl_passthrough=self.enable_ssl_passthrough,
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


def env_name(field_name: str) -> str:
    """The environment variable of a ControllerConfig field."""
    return ENV_PREFIX + field_name.upper()


def _shown(value: object) -> str:
    if value is None or value == ():
        return "off"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


# Flag → (ControllerConfig field, one line of help). The help text gets the
# default (as the environment may have changed it) and the variable appended.
FLAGS: dict[str, tuple[str, str]] = {
    "--controller-name": ("controller_name", "IngressClass spec.controller answered to"),
    "--ingress-class": ("ingress_class", "class of the legacy kubernetes.io/ingress.class"),
    "--namespace": ("namespace", "the controller's namespace: ConfigMap, Lease, Events"),
    "--configmap": ("configmap", "name of the controller's ConfigMap in --namespace"),
    "--default-backend": ("default_backend", "NAMESPACE/SERVICE:PORT for unmatched requests"),
    "--state-dir": ("state_dir", "HAProxy's files and sockets"),
    "--http-bind": ("http_binds", "HTTP listen address, repeatable"),
    "--https-bind": ("https_binds", "HTTPS listen address, repeatable"),
    "--haproxy-binary": ("haproxy_binary", "the haproxy executable"),
    "--publish-address": ("publish_address", "IP or hostname written into Ingress status"),
    "--publish-service": (
        "publish_service",
        "[NAMESPACE/]NAME of the controller's Service: its load-balancer address, "
        "else its nodes' addresses, go into Ingress status",
    ),
    "--metrics-bind": ("metrics_bind", "host:port of /metrics, empty to disable"),
    "--health-bind": ("health_bind", "host:port of /healthz and /readyz, empty to disable"),
    "--debounce": (
        "debounce",
        "seconds of quiet before a full sync (an endpoint-only one waits at most 0.01)",
    ),
    "--resync-interval": ("resync_interval", "seconds between full LIST resyncs"),
    "--always-reload": (
        "always_reload",
        "reload on every change instead of the runtime API (a benchmark baseline)",
    ),
    "--serve-nginx": (
        "serve_nginx",
        "also serve ingress-nginx's Ingresses: IngressClasses of controller "
        "k8s.io/ingress-nginx and the legacy kubernetes.io/ingress.class: nginx",
    ),
    "--enable-ssl-passthrough": (
        "enable_ssl_passthrough",
        "honour the ssl-passthrough annotation: the HTTPS binds route TLS by SNI, "
        "unterminated, to those hosts' pods (else the annotation gets a Warning)",
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``haproxy-ingress run``; each defaults to its environment variable."""
    base = ControllerConfig.from_env()
    for flag, (name, text) in FLAGS.items():
        current = getattr(base, name)
        help_text = f"{text} (default: {_shown(current)}; env {env_name(name)})"
        help_text = help_text.replace("%", "%%")
        if isinstance(current, bool):
            parser.add_argument(
                flag, dest=name, action="store_true", default=current, help=help_text
            )
        elif isinstance(current, tuple):
            parser.add_argument(flag, dest=name, action="append", help=help_text)
        elif isinstance(current, float):
            parser.add_argument(flag, dest=name, type=float, default=current, help=help_text)
        elif isinstance(current, Path):
            parser.add_argument(flag, dest=name, type=Path, default=current, help=help_text)
        else:
            parser.add_argument(flag, dest=name, default=current, help=help_text)


def add_serve_nginx(parser: argparse.ArgumentParser, default: bool) -> None:
    """``--serve-nginx`` / ``--no-serve-nginx`` for the offline commands (render, audit)."""
    parser.add_argument(
        "--serve-nginx",
        action=argparse.BooleanOptionalAction,
        default=default,
        help=f"{FLAGS['--serve-nginx'][1]} (default: %(default)s)",
    )


def add_ssl_passthrough(parser: argparse.ArgumentParser) -> None:
    """``--enable-ssl-passthrough`` for the offline commands (render, audit)."""
    parser.add_argument(
        "--enable-ssl-passthrough",
        dest="enable_ssl_passthrough",
        action="store_true",
        help=f"{FLAGS['--enable-ssl-passthrough'][1]} (default: off)",
    )


def from_arguments(args: argparse.Namespace) -> ControllerConfig:
    """The environment's configuration with the flags applied over it."""
    base = ControllerConfig.from_env()
    values: dict[str, object] = {}
    for name, _ in FLAGS.values():
        value = getattr(args, name)
        current = getattr(base, name)
        if isinstance(current, tuple):
            values[name] = tuple(value or current)
        elif isinstance(current, (bool, float, Path)) or name in REQUIRED:
            values[name] = value
        else:
            values[name] = value or None  # an empty flag turns an optional one off
    return dataclasses.replace(base, **values)  # type: ignore[arg-type]


REQUIRED = frozenset(
    {"controller_name", "ingress_class", "namespace", "configmap", "haproxy_binary"}
)
