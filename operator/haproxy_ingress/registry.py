"""Every ConfigMap key and Ingress annotation, declared once (pure).

A :class:`Setting` says what a key is called, which validator its value
passes, its default, where it applies (:class:`Scope`), whether changing it
costs HAProxy a reload, and one line of documentation. Everything else is
derived from :data:`SETTINGS`: parsing the ConfigMap and the annotations
(:mod:`settings`), the defaults of :class:`GlobalSettings` and
:class:`BackendSettings`, and the README's table of keys
(``python -m haproxy_ingress.readme README.md`` writes it; a test compares).
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from haproxy_ingress import validate
from haproxy_ingress.model import AccessPolicy, BackendSettings, GlobalSettings, ServiceRef
from haproxy_ingress.validate import Invalid

ANNOTATION_PREFIX = "haproxy-ingress.kopf.dev/"


class Scope(enum.StrEnum):
    """What one value of a key applies to."""

    # The whole proxy: set in the ConfigMap only.
    GLOBAL = "global"
    # One Service port (an HAProxy backend): the ConfigMap sets every
    # backend's default, an Ingress's annotation the backends its paths use.
    BACKEND = "backend"
    # The paths of the Ingress that sets it, never another Ingress's (an
    # access rule, a redirect): annotation; the ConfigMap sets the default
    # of every route where ``configmap`` is true.
    ROUTE = "route"


# A validator: (value as written, field path for the problem) → the value the
# settings dataclass holds. Raises validate.Invalid.
Parse = Callable[[str, str], Any]


@dataclass(frozen=True)
class Setting:
    key: str  # ConfigMap key, and the annotation is ANNOTATION_PREFIX + key
    scope: Scope
    parse: Parse
    default: str | None  # as a user would write it; None: unset
    doc: str  # one line, for the README table
    # The GlobalSettings (global scope, and the route default) or
    # BackendSettings (backend scope) attribute it sets; "" for keys that
    # translate reads itself (see settings.py).
    field: str = ""
    reload: bool = True  # a change rewrites haproxy.cfg (else: maps / runtime API)
    configmap: bool = True  # accepted in the controller's ConfigMap
    # Shown in the README instead of the default (e.g. "from the fd limit").
    default_doc: str = ""

    @property
    def annotation(self) -> bool:
        """Whether an Ingress may set it (global keys belong to the cluster admin)."""
        return self.scope is not Scope.GLOBAL

    @property
    def annotation_name(self) -> str:
        return ANNOTATION_PREFIX + self.key


# --- validators that are about one setting's meaning -------------------------

BALANCE_ALGORITHMS = ("leastconn", "roundrobin", "random", "source", "first")
OBSERVE_MODES = ("none", "layer4", "layer7")
ON_ERROR = ("fastinter", "fail-check", "sudden-death", "mark-down")
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


def retry_on(value: str, field: str) -> tuple[str, ...]:
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


def optional_duration(value: str, field: str) -> str | None:
    """A duration where zero (in any unit) or nothing means "off"."""
    if value.strip() == "" or validate.is_zero_duration(value):
        return None
    return validate.duration(value, field)


def optional_count(value: str, field: str) -> int | None:
    number = validate.integer(value, field, minimum=0, maximum=1_000_000)
    return number or None


def check_count(value: str, field: str) -> int:
    # fall, rise and error-limit: haproxy -c refuses 0 ("has to be > 0").
    return validate.integer(value, field, minimum=1, maximum=100)


def _choice(allowed: tuple[str, ...]) -> Parse:
    return lambda value, field: validate.choice(value, field, allowed)


def _integer(minimum: int, maximum: int) -> Parse:
    return lambda value, field: validate.integer(value, field, minimum=minimum, maximum=maximum)


def _policy(value: str, field: str) -> AccessPolicy:
    return AccessPolicy(validate.cidr_list(value, field))


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


_B = Scope.BACKEND
_G = Scope.GLOBAL
_R = Scope.ROUTE

SETTINGS: tuple[Setting, ...] = (
    # --- global ---
    Setting(
        "default-backend-service",
        _G,
        lambda value, field: parse_service_ref(value.strip(), field),
        None,
        "`namespace/name:port` of the Service for requests no rule matches",
    ),
    Setting("timeout-client", _G, validate.duration, "60s", "client inactivity", "timeout_client"),
    Setting(
        "timeout-http-request",
        _G,
        validate.duration,
        "10s",
        "time to receive a request's headers",
        "timeout_http_request",
    ),
    Setting(
        "timeout-http-keep-alive",
        _G,
        validate.duration,
        "60s",
        "idle time between two requests of a connection",
        "timeout_http_keep_alive",
    ),
    Setting(
        "timeout-queue",
        _G,
        validate.duration,
        "30s",
        "time a request may wait for a free server",
        "timeout_queue",
    ),
    Setting(
        "hard-stop-after",
        _G,
        validate.duration,
        "30m",
        "longest an old process keeps serving after a reload",
        "hard_stop_after",
    ),
    Setting(
        "maxconn",
        _G,
        _integer(100, 1_000_000),
        None,
        "global connection limit",
        "maxconn",
        default_doc="from the fd limit",
    ),
    Setting(
        "server-slots",
        _G,
        _integer(1, 1024),
        "8",
        "minimum server slots per backend (doubled when exhausted)",
        "slots_min",
    ),
    Setting(
        "use-forwarded-headers",
        _G,
        validate.boolean,
        "false",
        "trust `X-Forwarded-*` from clients in `proxy-real-ip-cidr`",
        "use_forwarded_headers",
    ),
    Setting(
        "proxy-real-ip-cidr",
        _G,
        validate.cidr_list,
        "0.0.0.0/0,::/0",
        "the proxies `use-forwarded-headers` trusts",
        "proxy_real_ip_cidr",
    ),
    Setting(
        "use-proxy-protocol",
        _G,
        validate.boolean,
        "false",
        "binds expect the PROXY protocol",
        "use_proxy_protocol",
    ),
    # --- backend: a Service port ---
    Setting(
        "balance",
        _B,
        _choice(BALANCE_ALGORITHMS),
        "leastconn",
        "`leastconn`, `roundrobin`, `random`, `source`, `first`",
        "balance",
    ),
    Setting(
        "timeout-connect",
        _B,
        validate.duration,
        "5s",
        "time to connect to a pod",
        "timeout_connect",
    ),
    Setting(
        "timeout-server",
        _B,
        validate.duration,
        "60s",
        "pod inactivity (reading or writing)",
        "timeout_server",
    ),
    Setting("retries", _B, _integer(0, 100), "5", "retries after a failed attempt", "retries"),
    Setting(
        "retry-on",
        _B,
        retry_on,
        "conn-failure empty-response response-timeout",
        "HAProxy `retry-on` keywords (non-idempotent requests that reached a pod: never)",
        "retry_on",
    ),
    Setting(
        "redispatch",
        _B,
        validate.boolean,
        "true",
        "every retry goes to another server",
        "redispatch",
    ),
    Setting(
        "drain-terminating",
        _B,
        validate.boolean,
        "true",
        "terminating pods drain (else: maintenance at once)",
        "drain",
    ),
    Setting("health-check", _B, validate.boolean, "true", "active checks", "health_check"),
    Setting(
        "health-check-interval",
        _B,
        validate.duration,
        "2s",
        "time between active checks",
        "check_inter",
    ),
    Setting(
        "health-check-fall",
        _B,
        check_count,
        "3",
        "failed checks that mark a pod down",
        "check_fall",
    ),
    Setting(
        "health-check-rise", _B, check_count, "2", "checks that bring a pod back", "check_rise"
    ),
    Setting(
        "health-check-observe",
        _B,
        _choice(OBSERVE_MODES),
        "layer4",
        "passive checks: `none`, `layer4` (connection errors), `layer7` (also 5xx)",
        "observe",
    ),
    Setting(
        "health-check-error-limit",
        _B,
        check_count,
        "1",
        "errors in a row that trigger `health-check-on-error`",
        "error_limit",
    ),
    Setting(
        "health-check-on-error",
        _B,
        _choice(ON_ERROR),
        "mark-down",
        "`fastinter`, `fail-check`, `sudden-death`, `mark-down`",
        "on_error",
    ),
    Setting(
        "slowstart",
        _B,
        optional_duration,
        None,
        "ramp-up time of a new pod (0: off)",
        "slowstart",
        default_doc="off",
    ),
    Setting(
        "server-maxconn",
        _B,
        optional_count,
        None,
        "connections per pod (0: unlimited)",
        "maxconn",
        default_doc="off",
    ),
    # --- route: the paths of the Ingress that sets it ---
    Setting(
        "allowlist-source-range",
        _R,
        _policy,
        None,
        "CIDR networks let in (others: 403); the ConfigMap's also guards the default backend",
        "default_policy",
        default_doc="everyone",
    ),
    Setting(
        "ssl-redirect",
        _R,
        validate.boolean,
        "true",
        "plain HTTP to the Ingress's TLS hosts gets a 308 to https",
        reload=False,
        configmap=False,
    ),
)

BY_KEY: Mapping[str, Setting] = {setting.key: setting for setting in SETTINGS}


def scoped(scope: Scope) -> tuple[Setting, ...]:
    return tuple(setting for setting in SETTINGS if setting.scope is scope)


def defaults() -> GlobalSettings:
    """The settings with nothing configured, built from the declarations."""
    backend: dict[str, Any] = {
        s.field: s.parse(s.default, "default") if s.default is not None else None
        for s in scoped(Scope.BACKEND)
    }
    top: dict[str, Any] = {
        s.field: s.parse(s.default, "default") if s.default is not None else None
        for s in SETTINGS
        if s.field and s.scope is not Scope.BACKEND and s.configmap
    }
    return GlobalSettings(**top, backend=BackendSettings(**backend))


def apply(target: Any, setting: Setting, value: str, field: str) -> Any:
    """``target`` (a settings dataclass) with ``setting`` set from ``value``."""
    return dataclasses.replace(target, **{setting.field: setting.parse(value, field)})


# --- the README's table (written by ``python -m haproxy_ingress.readme``) ------

TABLE_BEGIN = "<!-- settings table: generated by `python -m haproxy_ingress.readme README.md` -->"
TABLE_END = "<!-- end of settings table -->"


def markdown_table(settings: Iterable[Setting] = SETTINGS) -> str:
    lines = [
        "| key | scope | where | default | reload | meaning |",
        "|---|---|---|---|---|---|",
    ]
    for s in settings:
        where = " + ".join(
            name for name, on in (("ConfigMap", s.configmap), ("annotation", s.annotation)) if on
        )
        default = s.default_doc or (f"`{s.default}`" if s.default is not None else "—")
        reload = "yes" if s.reload else "no"
        lines.append(f"| `{s.key}` | {s.scope} | {where} | {default} | {reload} | {s.doc} |")
    return "\n".join(lines) + "\n"


def readme_section() -> str:
    return f"{TABLE_BEGIN}\n{markdown_table()}{TABLE_END}\n"


def with_table(readme: str) -> str:
    """``readme`` with its settings table replaced by the one the declarations give."""
    start = readme.index(TABLE_BEGIN)
    end = readme.index(TABLE_END, start) + len(TABLE_END) + 1
    return readme[:start] + readme_section() + readme[end:]
