"""The controller's ConfigMap → :class:`GlobalSettings` (pure).

Only the cluster admin can write the ConfigMap in the controller's namespace, but
its values still pass the validators: a typo must become a clear Event, not a
haproxy.cfg that fails to load. A bad key is reported and its default kept.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from haproxy_ingress import validate
from haproxy_ingress.model import GlobalSettings, ObjectRef, Problem, ServiceRef
from haproxy_ingress.validate import Invalid

BALANCE_ALGORITHMS = ("leastconn", "roundrobin", "random", "source", "first")
# The retry-on keywords of HAProxy 2.6 that never resend a request a server may
# have processed unless the failure proves it was not (see the README).
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


def _backend(**changes: Any) -> Callable[[GlobalSettings], GlobalSettings]:
    def apply(settings: GlobalSettings) -> GlobalSettings:
        return replace(settings, backend=replace(settings.backend, **changes))

    return apply


def _retry_on(value: str, field: str) -> tuple[str, ...]:
    words = tuple(value.split())
    if not words:
        raise Invalid(field, "must list at least one retry-on keyword")
    for word in words:
        validate.choice(word, field, RETRY_ON_KEYWORDS)
    return words


def _optional_duration(value: str, field: str) -> str | None:
    return None if value.strip() in {"", "0"} else validate.duration(value, field)


def _optional_int(value: str, field: str) -> int | None:
    number = validate.integer(value, field, minimum=0, maximum=1_000_000)
    return number or None


# key → (parser, how the parsed value lands in the settings)
_KEYS: dict[str, Callable[[GlobalSettings, str, str], GlobalSettings]] = {
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
    "balance": lambda s, v, f: _backend(balance=validate.choice(v, f, BALANCE_ALGORITHMS))(s),
    "timeout-connect": lambda s, v, f: _backend(timeout_connect=validate.duration(v, f))(s),
    "timeout-server": lambda s, v, f: _backend(timeout_server=validate.duration(v, f))(s),
    "retries": lambda s, v, f: _backend(retries=validate.integer(v, f, minimum=0, maximum=100))(s),
    "retry-on": lambda s, v, f: _backend(retry_on=_retry_on(v, f))(s),
    "redispatch": lambda s, v, f: _backend(redispatch=validate.boolean(v, f))(s),
    "health-check": lambda s, v, f: _backend(health_check=validate.boolean(v, f))(s),
    "health-check-interval": lambda s, v, f: _backend(check_inter=validate.duration(v, f))(s),
    "health-check-fall": lambda s, v, f: _backend(
        check_fall=validate.integer(v, f, minimum=1, maximum=100)
    )(s),
    "health-check-rise": lambda s, v, f: _backend(
        check_rise=validate.integer(v, f, minimum=1, maximum=100)
    )(s),
    "slowstart": lambda s, v, f: _backend(slowstart=_optional_duration(v, f))(s),
    "server-maxconn": lambda s, v, f: _backend(maxconn=_optional_int(v, f))(s),
}
DEFAULT_BACKEND_KEY = "default-backend-service"


def parse_service_ref(value: object, field: str) -> ServiceRef:
    """``namespace/name:port`` (port a number or a name), as flags and the ConfigMap give it."""
    if not isinstance(value, str) or "/" not in value or ":" not in value:
        raise Invalid(field, f"must be namespace/name:port, got {value!r}")
    namespace, _, rest = value.partition("/")
    name, _, port = rest.partition(":")
    validate.dns_label(namespace, field)
    validate.service_name(name, field)
    if port.isdigit():
        port = str(validate.port_number(int(port), field))
    else:
        validate.port_name(port, field)
    return ServiceRef(namespace, name, port)


def parse_configmap(
    configmap: Mapping[str, Any] | None,
) -> tuple[GlobalSettings, ServiceRef | None, list[Problem]]:
    """Settings, the default backend it names (if any), and problems with its keys."""
    settings = GlobalSettings()
    if configmap is None:
        return settings, None, []
    meta = configmap.get("metadata") or {}
    source = ObjectRef(
        "ConfigMap",
        str(meta.get("namespace", "")),
        str(meta.get("name", "")),
        str(meta.get("uid", "")),
    )
    problems: list[Problem] = []
    default_backend: ServiceRef | None = None
    data = configmap.get("data") or {}
    if not isinstance(data, Mapping):
        return settings, None, [Problem(source, "data", "must be a map of strings")]
    for key in sorted(data):
        field = f"data.{key}"
        value = data[key]
        try:
            if not isinstance(value, str):
                raise Invalid(field, "must be a string")
            if key == DEFAULT_BACKEND_KEY:
                default_backend = parse_service_ref(value.strip(), field)
            elif key in _KEYS:
                settings = _KEYS[key](settings, value, field)
            else:
                raise Invalid(field, "unknown setting (ignored)")
        except Invalid as error:
            problems.append(Problem(source, error.field, error.reason))
    return settings, default_backend, problems
