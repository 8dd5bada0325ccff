"""The controller's ConfigMap → :class:`GlobalSettings` (pure).

Only the cluster admin can write the ConfigMap in the controller's namespace, but
its values still pass the validators: a typo must become a clear Event, not a
haproxy.cfg that fails to load. A bad key is reported and its default kept.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from haproxy_ingress import validate
from haproxy_ingress.model import (
    AccessPolicy,
    BackendSettings,
    GlobalSettings,
    ObjectRef,
    Problem,
    ServiceRef,
)
from haproxy_ingress.validate import Invalid

BALANCE_ALGORITHMS = ("leastconn", "roundrobin", "random", "source", "first")
# The retry-on keywords of HAProxy 2.6 that never resend a request a server may
# have processed unless the failure proves it was not (see the README).
OBSERVE_MODES = ("none", "layer4", "layer7")
ON_ERROR = ("fastinter", "fail-check", "sudden-death", "mark-down")
RETRY_ON_KEYWORDS = (
    "none",
    "conn-failure",
    "empty-response",
    "junk-response",
    "response-timeout",
    "0rtt-rejected",
    "404",
    "408",
    "425",
    "500",
    "501",
    "502",
    "503",
    "504",
    "all-retryable-errors",
)


def _retry_on(value: str, field: str) -> tuple[str, ...]:
    words = value.split()
    if not words:
        raise Invalid(field, "must list at least one retry-on keyword")
    for word in words:
        validate.choice(word, field, RETRY_ON_KEYWORDS)
    # Duplicates are harmless to HAProxy but each is a word of a line limited
    # to 64 (haproxy -c: "too many words"); keep the first of each.
    unique = tuple(dict.fromkeys(words))
    if "none" in unique and len(unique) > 1:
        # haproxy -c: "'retry-on' 'none' keyworld only usable alone".
        raise Invalid(field, f"none cannot be combined with other keywords, got {value!r}")
    return unique


def _optional_duration(value: str, field: str) -> str | None:
    """A duration where zero (in any unit) or nothing means "off"."""
    if value.strip() == "" or validate.is_zero_duration(value):
        return None
    return validate.duration(value, field)


def _optional_int(value: str, field: str) -> int | None:
    number = validate.integer(value, field, minimum=0, maximum=1_000_000)
    return number or None


def _count(value: str, field: str) -> int:
    # fall, rise and error-limit: haproxy -c refuses 0 ("has to be > 0").
    return validate.integer(value, field, minimum=1, maximum=100)


_BackendKey = Callable[[BackendSettings, str, str], BackendSettings]
_GlobalKey = Callable[[GlobalSettings, str, str], GlobalSettings]

# Keys that tune one backend: from the ConfigMap (every backend's default) or
# from an Ingress annotation ``haproxy-ingress.kopf.dev/<key>`` (its backends).
BACKEND_KEYS: dict[str, _BackendKey] = {
    "balance": lambda b, v, f: replace(b, balance=validate.choice(v, f, BALANCE_ALGORITHMS)),
    "timeout-connect": lambda b, v, f: replace(b, timeout_connect=validate.duration(v, f)),
    "timeout-server": lambda b, v, f: replace(b, timeout_server=validate.duration(v, f)),
    "retries": lambda b, v, f: replace(b, retries=validate.integer(v, f, minimum=0, maximum=100)),
    "retry-on": lambda b, v, f: replace(b, retry_on=_retry_on(v, f)),
    "redispatch": lambda b, v, f: replace(b, redispatch=validate.boolean(v, f)),
    "drain-terminating": lambda b, v, f: replace(b, drain=validate.boolean(v, f)),
    "health-check": lambda b, v, f: replace(b, health_check=validate.boolean(v, f)),
    "health-check-interval": lambda b, v, f: replace(b, check_inter=validate.duration(v, f)),
    "health-check-fall": lambda b, v, f: replace(b, check_fall=_count(v, f)),
    "health-check-rise": lambda b, v, f: replace(b, check_rise=_count(v, f)),
    "health-check-observe": lambda b, v, f: replace(
        b, observe=validate.choice(v, f, OBSERVE_MODES)
    ),
    "health-check-error-limit": lambda b, v, f: replace(b, error_limit=_count(v, f)),
    "health-check-on-error": lambda b, v, f: replace(b, on_error=validate.choice(v, f, ON_ERROR)),
    "slowstart": lambda b, v, f: replace(b, slowstart=_optional_duration(v, f)),
    "server-maxconn": lambda b, v, f: replace(b, maxconn=_optional_int(v, f)),
}

GLOBAL_KEYS: dict[str, _GlobalKey] = {
    "timeout-client": lambda s, v, f: replace(s, timeout_client=validate.duration(v, f)),
    "timeout-http-request": lambda s, v, f: replace(
        s, timeout_http_request=validate.duration(v, f)
    ),
    "timeout-http-keep-alive": lambda s, v, f: replace(
        s, timeout_http_keep_alive=validate.duration(v, f)
    ),
    "timeout-queue": lambda s, v, f: replace(s, timeout_queue=validate.duration(v, f)),
    "hard-stop-after": lambda s, v, f: replace(s, hard_stop_after=validate.duration(v, f)),
    "maxconn": lambda s, v, f: replace(
        s, maxconn=validate.integer(v, f, minimum=100, maximum=1_000_000)
    ),
    "server-slots": lambda s, v, f: replace(
        s, slots_min=validate.integer(v, f, minimum=1, maximum=1024)
    ),
    "use-forwarded-headers": lambda s, v, f: replace(
        s, use_forwarded_headers=validate.boolean(v, f)
    ),
    "proxy-real-ip-cidr": lambda s, v, f: replace(s, proxy_real_ip_cidr=validate.cidr_list(v, f)),
    "use-proxy-protocol": lambda s, v, f: replace(s, use_proxy_protocol=validate.boolean(v, f)),
    # The Server header of responses whose backend sent none; empty: none added.
    "server-header": lambda s, v, f: replace(
        s, server_header=validate.product(v, f) if v.strip() else None
    ),
    # Every route's allow-list unless its Ingress sets one (ingress-nginx's
    # global whitelist-source-range); it also guards the default backend.
    "allowlist-source-range": lambda s, v, f: replace(
        s, default_policy=AccessPolicy(validate.cidr_list(v, f))
    ),
}
ANNOTATION_PREFIX = "haproxy-ingress.kopf.dev/"
SSL_REDIRECT_KEY = "ssl-redirect"  # about the Ingress's hosts, not its backends
# About who may use the Ingress's routes: an access rule is per route, never
# per backend, so that no other Ingress can drop or weaken it (model.AccessPolicy).
ALLOWLIST_KEY = "allowlist-source-range"
DEFAULT_BACKEND_KEY = "default-backend-service"


def parse_service_ref(value: object, field: str) -> ServiceRef:
    """``namespace/name:port`` (port a number or a name), as flags and the ConfigMap give it."""
    if not isinstance(value, str) or "/" not in value or ":" not in value:
        raise Invalid(field, f"must be namespace/name:port, got {value!r}")
    namespace, _, rest = value.partition("/")
    name, _, port = rest.partition(":")
    validate.dns_label(namespace, field)
    validate.service_name(name, field)
    # ASCII digits only: str.isdigit() is true for '٣' and '²', and int()
    # raises on '²' and on more than 4,300 digits.
    if re.fullmatch(r"[0-9]{1,5}", port):
        port = str(validate.port_number(int(port), field))
    else:
        validate.port_name(port, field)
    return ServiceRef(namespace, name, port)


def backend_annotations(
    annotations: Mapping[str, Any], base: BackendSettings
) -> tuple[BackendSettings, list[Invalid]]:
    """An Ingress's ``haproxy-ingress.kopf.dev/*`` annotations applied to ``base``.

    Unknown keys under our prefix are refused (a typo must not pass silently);
    other annotations are none of our business.
    """
    settings = base
    errors: list[Invalid] = []
    # Offline input may have non-string keys (YAML `1: x`), which neither sort
    # with strings nor can be ours.
    for name in sorted(k for k in annotations if isinstance(k, str)):
        if not name.startswith(ANNOTATION_PREFIX):
            continue
        key = name[len(ANNOTATION_PREFIX) :]
        field = f"metadata.annotations[{name}]"
        value = annotations[name]
        try:
            if key == SSL_REDIRECT_KEY:
                validate.boolean(value, field)
                continue
            if key == ALLOWLIST_KEY:
                continue  # route scope: route_policy
            if key not in BACKEND_KEYS:
                raise Invalid(field, "unknown annotation")
            if not isinstance(value, str):
                raise Invalid(field, "must be a string")
            settings = BACKEND_KEYS[key](settings, value, field)
        except Invalid as error:
            errors.append(error)
    return settings, errors


def route_policy(
    annotations: Mapping[str, Any], default: AccessPolicy | None
) -> AccessPolicy | None:
    """The access policy of an Ingress's routes: its own allow-list, else the default.

    Raises :class:`Invalid` for a bad value: the Ingress is then rejected whole,
    never served without the rule its author wrote (fail closed).
    """
    name = ANNOTATION_PREFIX + ALLOWLIST_KEY
    if name not in annotations:
        return default
    return AccessPolicy(validate.cidr_list(annotations[name], f"metadata.annotations[{name}]"))


def has_access_rule(annotations: Mapping[str, Any]) -> bool:
    """Whether the Ingress sets an access rule of its own (valid or not)."""
    return ANNOTATION_PREFIX + ALLOWLIST_KEY in annotations


def ssl_redirect(annotations: Mapping[str, Any]) -> bool:
    """Whether the Ingress's TLS hosts redirect plain HTTP to https (default: yes)."""
    value = annotations.get(ANNOTATION_PREFIX + SSL_REDIRECT_KEY, "true")
    return validate.boolean(value, f"metadata.annotations[{ANNOTATION_PREFIX}{SSL_REDIRECT_KEY}]")


def parse_configmap(
    configmap: Mapping[str, Any] | None,
) -> tuple[GlobalSettings, ServiceRef | None, list[Problem]]:
    """Settings, the default backend it names (if any), and problems with its keys."""
    settings = GlobalSettings()
    if configmap is None:
        return settings, None, []
    meta = configmap.get("metadata") or {}
    meta = meta if isinstance(meta, Mapping) else {}
    source = ObjectRef(
        "ConfigMap",
        validate.printable(meta.get("namespace", "")),
        validate.printable(meta.get("name", "")),
        str(meta.get("uid", "")),
    )
    problems: list[Problem] = []
    default_backend: ServiceRef | None = None
    data = configmap.get("data") or {}
    if not isinstance(data, Mapping):
        return (
            settings,
            None,
            [Problem(source, "data", "must be a map of strings", "InvalidSetting")],
        )
    for key in sorted(data, key=str):
        field = f"data.{validate.printable(key)}"
        value = data[key]
        try:
            if not isinstance(value, str):
                raise Invalid(field, "must be a string")
            if key == DEFAULT_BACKEND_KEY:
                default_backend = parse_service_ref(value.strip(), field)
            elif key in GLOBAL_KEYS:
                settings = GLOBAL_KEYS[key](settings, value, field)
            elif key in BACKEND_KEYS:
                settings = replace(
                    settings, backend=BACKEND_KEYS[key](settings.backend, value, field)
                )
            else:
                raise Invalid(field, "unknown setting (ignored)")
        except Invalid as error:
            problems.append(Problem(source, error.field, error.reason, "InvalidSetting"))
    return settings, default_backend, problems
