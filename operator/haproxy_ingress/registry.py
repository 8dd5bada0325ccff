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
import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from haproxy_ingress import auth, cors, headers, regex, responses, snippets, validate
from haproxy_ingress.model import (
    VERIFY_MODES,
    AccessPolicy,
    BackendSettings,
    GlobalSettings,
    RouteOptions,
    ServiceRef,
)
from haproxy_ingress.validate import Invalid

ANNOTATION_PREFIX = "haproxy-ingress.kopf.dev/"
# ingress-nginx's prefix: its users' Ingresses work unchanged (see NGINX notes).
NGINX_PREFIX = "nginx.ingress.kubernetes.io/"


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
    # One host's TLS handshake (its crt-list line): the ConfigMap sets every
    # HTTPS bind's default where ``configmap`` is true; an annotation sets the
    # Ingress's hosts, and the oldest Ingress that sets a host's value wins.
    HOST = "host"


# A validator: (value as written, field path for the problem) → the value the
# settings dataclass holds. Raises validate.Invalid.
Parse = Callable[[str, str], Any]
# How a parsed value lands on the settings dataclass (default: sets ``field``).
Apply = Callable[[Any, Any], Any]


# eq=False: a Setting is declared once and is itself; `setting in ACCESS` and
# the like compare identities, not every field (a tenth of parsing an
# Ingress's annotations went to dataclass equality).
@dataclass(frozen=True, eq=False)
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
    # ingress-nginx's names for it: NGINX_PREFIX + name on an Ingress, and
    # the bare name in the ConfigMap when ``nginx_configmap``.
    nginx: tuple[str, ...] = ()
    nginx_parse: Parse | None = None  # ingress-nginx's value syntax, if not ours
    nginx_configmap: bool = False
    # Where HAProxy 2.6 differs from ingress-nginx (README table).
    difference: str = ""
    apply_value: Apply | None = None

    @property
    def annotation(self) -> bool:
        """Whether an Ingress may set it (global keys belong to the cluster admin)."""
        return self.scope is not Scope.GLOBAL

    @functools.cached_property
    def annotation_name(self) -> str:
        return ANNOTATION_PREFIX + self.key

    @functools.cached_property
    def nginx_annotations(self) -> tuple[str, ...]:
        return tuple(NGINX_PREFIX + name for name in self.nginx)

    def parse_nginx(self, value: str, field: str) -> Any:
        return (self.nginx_parse or self.parse)(value, field)


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


# --- ingress-nginx's value syntax --------------------------------------------


def nginx_seconds(value: str, field: str) -> str:
    """ingress-nginx's timeouts: whole seconds (``"60"``) → an HAProxy duration."""
    seconds = validate.integer(value, field, minimum=1, maximum=validate.MAX_DURATION_MS // 1000)
    return f"{seconds}s"


# ingress-nginx's load-balance → HAProxy's balance. ewma (peak latency) has no
# HAProxy equivalent: leastconn is the closest (both favour a fast pod).
NGINX_BALANCE = {"round_robin": "roundrobin", "ewma": "leastconn"}

# proxy-next-upstream cases → retry-on keywords. "error" and "timeout" on
# connecting are conn-failure; after the request was sent, only idempotent
# requests are resent (the backend's disable-l7-retry), whatever
# non_idempotent says. http_403 and http_429 are not retry-on codes in
# HAProxy 2.6: dropped (documented).
NGINX_NEXT_UPSTREAM = {
    "error": ("conn-failure", "empty-response"),
    "timeout": ("conn-failure", "response-timeout"),
    "invalid_header": ("junk-response",),
    "http_500": ("500",),
    "http_502": ("502",),
    "http_503": ("503",),
    "http_504": ("504",),
    "http_404": ("404",),
    "http_403": (),
    "http_429": (),
    "non_idempotent": (),
}


def nginx_next_upstream(value: str, field: str) -> tuple[str, ...]:
    words = value.split()
    if words == ["off"]:
        return ("none",)
    if not words or len(words) > 32:
        raise Invalid(field, f"must list proxy_next_upstream cases or be off, got {value!r:.60}")
    keywords: list[str] = []
    for word in words:
        validate.choice(word, field, tuple(NGINX_NEXT_UPSTREAM))
        keywords.extend(NGINX_NEXT_UPSTREAM[word])
    return tuple(dict.fromkeys(keywords)) or ("none",)


def nginx_tries(value: str, field: str) -> int:
    """proxy-next-upstream-tries counts every try, the first included."""
    return validate.integer(value, field, minimum=1, maximum=101) - 1


def nginx_balance(value: str, field: str) -> str:
    return NGINX_BALANCE[validate.choice(value, field, tuple(NGINX_BALANCE))]


BACKEND_PROTOCOLS = ("HTTP", "HTTPS", "GRPC", "GRPCS", "H2C")


def backend_protocol(value: str, field: str) -> str:
    return validate.choice(value.strip().upper(), field, BACKEND_PROTOCOLS)


def body_size(value: str, field: str) -> int | None:
    """nginx's client_max_body_size: 0 is no limit."""
    return validate.size(value, field) or None


CAPTURE = re.compile(r"\$[1-9]")


def rewrite_target(value: str, field: str) -> str:
    """A path; ``$1``-``$9`` name the capture groups of the route's regex path."""
    checked = validate.path(value, field)
    if "$" in checked and re.search(r"\$(?![1-9])", checked):
        raise Invalid(field, f"'$' must start a capture group $1-$9, got {value!r:.60}")
    return checked


def header_value(value: str, field: str) -> str:
    """A request header value to compare with: visible ASCII and inner spaces, no CR/LF."""
    if (
        not value
        or len(value) > 1024
        or not re.fullmatch(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?", value)
    ):
        raise Invalid(
            field,
            f"must be 1-1024 visible ASCII characters (no control characters), got {value!r:.60}",
        )
    return value


_CONNECTION_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")


def connection_tokens(value: str, field: str) -> str:
    """connection-proxy-header: a comma-separated list of connection options.

    Letters, digits, '-' and '_' only (the names and options a Connection
    header lists), at most 16; joined by ',' as HAProxy's map value.
    """
    words = [word.strip() for word in value.split(",")]
    if not 1 <= len(words) <= 16 or not all(_CONNECTION_TOKEN.fullmatch(w) for w in words):
        raise Invalid(
            field,
            "must be 1-16 comma-separated tokens of letters, digits, '-' and '_' "
            f"(keep-alive, close, upgrade…), got {validate.printable(value)}",
        )
    return ",".join(words)


def canary_total(value: str, field: str) -> int:
    # ingress-nginx uses the total only when it is above 100.
    return max(100, validate.integer(value, field, minimum=1, maximum=1_000_000))


def redirect_code(value: str, field: str) -> int:
    # HAProxy's redirect takes 301, 302, 303, 307 and 308 only.
    code = validate.integer(value, field, minimum=300, maximum=308)
    if code not in (301, 302, 303, 307, 308):
        raise Invalid(field, f"must be 301, 302, 303, 307 or 308, got {value!r:.60}")
    return code


def cookie_domain(value: str, field: str) -> str:
    return (
        "." + validate.host(value[1:], field)
        if value.startswith(".")
        else validate.host(value, field)
    )


def upstream_vhost(value: str, field: str) -> str:
    host, _, port = value.partition(":")
    checked = validate.host(host, field)
    if port:
        # At most 5 ASCII digits before int(): it raises ValueError (not
        # Invalid) past 4,300 digits, and str.isdigit() is true for '٣'.
        number = int(port) if re.fullmatch(r"[0-9]{1,5}", port) else 0
        return f"{checked}:{validate.port_number(number, field)}"
    return checked


# upstream-hash-by: the nginx variables a request is hashed on → HAProxy
# sample fetches for ``balance hash`` (HAProxy 2.6). One variable only: a
# hash of several concatenated is refused.
_HASH_BY = re.compile(
    r"\$(request_uri|uri|remote_addr|binary_remote_addr|host|(http|cookie|arg)_([A-Za-z0-9_]{1,64}))"
)
_HASH_FETCH = {
    "request_uri": "pathq",
    "uri": "path",
    "remote_addr": "src",
    "binary_remote_addr": "src",
    "host": "req.hdr(host)",
}


def upstream_hash_by(value: str, field: str) -> str | None:
    """An nginx variable (``$request_uri``, ``$http_x_user``…) → a sample expression."""
    if value == "":
        return None
    match = _HASH_BY.fullmatch(value)
    if match is None:
        raise Invalid(
            field,
            "must be one of $request_uri, $uri, $remote_addr, $binary_remote_addr, $host, "
            f"$http_<name>, $cookie_<name>, $arg_<name>, got {value!r:.60}",
        )
    variable, kind, name = match.group(1), match.group(2), match.group(3)
    if kind == "http":
        # nginx's $http_x_user is the header X-User.
        return f"req.hdr({name.lower().replace('_', '-')})"
    if kind == "cookie":
        return f"req.cook({name})"
    if kind == "arg":
        return f"url_param({name})"
    return _HASH_FETCH[variable]


def error_codes(value: str, field: str) -> tuple[int, ...]:
    """custom-http-errors: comma-separated statuses 400-599."""
    if value == "":
        return ()
    words = [word.strip() for word in value.split(",") if word.strip()]
    if not words or len(words) > 200:
        raise Invalid(field, f"must list 1-200 HTTP statuses, got {value!r:.60}")
    return tuple(
        sorted({validate.integer(word, field, minimum=400, maximum=599) for word in words})
    )


def secret_ref(value: str, field: str) -> str:
    """``namespace/name`` of a Secret (proxy-ssl-secret); translate checks the namespace."""
    namespace, slash, name = value.partition("/")
    if not slash:
        raise Invalid(field, f"must be namespace/name, got {value!r:.60}")
    return f"{validate.dns_label(namespace, field)}/{validate.dns_subdomain(name, field)}"


def _global_auth_url(value: str, field: str) -> str:
    """global-auth-url: an auth-url guarding every Ingress, whatever its rules, so no $host."""
    checked = auth.auth_url(value, field)
    if auth.url_host(checked) == auth.HOST_VARIABLE:
        raise Invalid(field, "cannot name $host: it guards rules without a host too")
    return checked


def query_parameter(value: str, field: str) -> str:
    """A URL query parameter name: unreserved characters only, so it needs no escaping."""
    if not re.fullmatch(r"[A-Za-z0-9._~-]{1,64}", value):
        raise Invalid(field, f"must be a query parameter name, got {validate.printable(value)}")
    return value


def verify_client(value: str, field: str) -> str:
    return validate.choice(value, field, VERIFY_MODES)


def verify_depth(value: str, field: str) -> int:
    """auth-tls-verify-depth: 0 means the default, 1, as in ingress-nginx."""
    return validate.integer(value, field, minimum=0, maximum=100) or 1


def match_cn(value: str, field: str) -> str:
    """auth-tls-match-cn: a pattern starting with ``CN=``, searched in the subject DN."""
    if not value.startswith("CN="):
        raise Invalid(field, f"must start with CN=, got {validate.printable(value)}")
    return regex.pattern(value, field)


def on_off(value: str, field: str) -> bool:
    """nginx's on/off (true/false accepted too)."""
    word = value.strip().lower() if value.isascii() else value
    if word in ("on", "true"):
        return True
    if word in ("off", "false"):
        return False
    raise Invalid(field, f"must be on or off, got {value!r:.60}")


def server_aliases(value: str, field: str) -> tuple[str, ...]:
    """Comma-separated host names (no wildcards): more names for the Ingress's hosts."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names or len(names) > 64:
        raise Invalid(field, f"must list 1-64 host names, got {value!r:.60}")
    hosts = []
    for name in names:
        host = validate.host(name, field)
        if host.startswith("*."):
            raise Invalid(field, f"must not be a wildcard, got {name!r:.60}")
        hosts.append(host)
    return tuple(dict.fromkeys(hosts))


def _send_timeout(target: Any, value: str) -> Any:
    """nginx has read and send timeouts, HAProxy one: the longer of the two."""
    current = validate.duration_ms(target.timeout_server)
    return (
        target
        if current >= validate.duration_ms(value)
        else dataclasses.replace(target, timeout_server=value)
    )


def _max_age_if_unset(target: Any, value: int) -> Any:
    if target.cookie_max_age is not None:
        return target
    return dataclasses.replace(target, cookie_max_age=value)


_PATH_PREFIX = re.compile(r"/[A-Za-z0-9._~/-]*")


def _path_prefixes(value: object, field: str) -> tuple[str, ...]:
    """Comma-separated path prefixes (no-tls-redirect-locations); "" for none.

    Only compared with routes' paths in translate, never written anywhere;
    still only plain path characters, so a typo shows as a Warning.
    """
    if not isinstance(value, str):
        raise Invalid(field, "must be comma-separated paths")
    prefixes = tuple(part.strip() for part in value.split(",") if part.strip())
    for prefix in prefixes:
        if not _PATH_PREFIX.fullmatch(prefix):
            raise Invalid(
                field, f"{validate.printable(prefix)} is not a path of letters, digits and ._~/-"
            )
    return prefixes


_B = Scope.BACKEND
_G = Scope.GLOBAL
_R = Scope.ROUTE
_H = Scope.HOST

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
        nginx=("client-header-timeout",),
        nginx_parse=nginx_seconds,
        nginx_configmap=True,
    ),
    Setting(
        "timeout-http-keep-alive",
        _G,
        validate.duration,
        "60s",
        "idle time between two requests of a connection",
        "timeout_http_keep_alive",
        nginx=("keep-alive",),
        nginx_parse=nginx_seconds,
        nginx_configmap=True,
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
        "server-header",
        _G,
        lambda value, field: validate.product(value, field) if value.strip() else None,
        "haproxy-ingress",
        "`Server` header on responses whose backend sent none (empty: none)",
        "server_header",
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
        "health-check-max-rate",
        _G,
        _integer(0, 1_000_000),
        "1000",
        "active checks per second HAProxy may run in all; past it every "
        "`health-check-interval` is stretched (x2, x4, ...), down and changing pods "
        "keep theirs (0: no limit)",
        "check_max_rate",
    ),
    Setting(
        "server-slots",
        _G,
        _integer(1, 1024),
        "1",
        "server slots declared per backend at least; more pods are added at run time "
        "(`add server`), without a reload, except under `balance source`",
        "slots_min",
    ),
    Setting(
        "use-forwarded-headers",
        _G,
        validate.boolean,
        "false",
        "trust `X-Forwarded-*` from clients in `proxy-real-ip-cidr`",
        "use_forwarded_headers",
        nginx=("use-forwarded-headers",),
        nginx_configmap=True,
    ),
    Setting(
        "allow-snippet-annotations",
        _G,
        validate.boolean,
        "true",
        "interpret the Ingresses' `*-snippet` annotations (never pasted); false: each is "
        "ignored with a Warning, and one holding an access rule denies its paths",
        "allow_snippets",
        reload=False,
        nginx=("allow-snippet-annotations",),
        nginx_configmap=True,
        difference="default true (ingress-nginx: false): a snippet is interpreted into "
        "the model or refused, never pasted",
    ),
    Setting(
        "proxy-real-ip-cidr",
        _G,
        validate.cidr_list,
        "0.0.0.0/0,::/0",
        "the proxies `use-forwarded-headers` trusts",
        "proxy_real_ip_cidr",
        nginx=("proxy-real-ip-cidr",),
        nginx_configmap=True,
    ),
    Setting(
        "no-tls-redirect-locations",
        _G,
        _path_prefixes,
        "/.well-known/acme-challenge",
        "paths under these prefixes are never redirected to https (ACME HTTP-01 challenges), "
        "`force-ssl-redirect` included",
        "no_tls_redirect_locations",
        nginx=("no-tls-redirect-locations",),
        nginx_configmap=True,
    ),
    Setting(
        "use-proxy-protocol",
        _G,
        validate.boolean,
        "false",
        "binds expect the PROXY protocol",
        "use_proxy_protocol",
        nginx=("use-proxy-protocol",),
        nginx_configmap=True,
    ),
    Setting(
        "hsts",
        _G,
        validate.boolean,
        "true",
        "`Strict-Transport-Security` on HTTPS responses for hosts listed in an Ingress's "
        "`spec.tls`",
        "hsts",
        nginx=("hsts",),
        nginx_configmap=True,
    ),
    Setting(
        "hsts-max-age",
        _G,
        _integer(0, 2**31 - 1),
        "31536000",
        "its `max-age`, seconds",
        "hsts_max_age",
        nginx=("hsts-max-age",),
        nginx_configmap=True,
    ),
    Setting(
        "hsts-include-subdomains",
        _G,
        validate.boolean,
        "true",
        "its `includeSubDomains`",
        "hsts_include_subdomains",
        nginx=("hsts-include-subdomains",),
        nginx_configmap=True,
    ),
    Setting(
        "hsts-preload",
        _G,
        validate.boolean,
        "false",
        "its `preload`",
        "hsts_preload",
        nginx=("hsts-preload",),
        nginx_configmap=True,
    ),
    Setting(
        "add-headers",
        _G,
        headers.configmap_ref,
        None,
        "`namespace/name` of a ConfigMap of headers set on every response",
        "add_headers",
        nginx=("add-headers",),
        nginx_configmap=True,
        difference="the ConfigMap must be in the controller's namespace; its content "
        "changes without a reload",
    ),
    Setting(
        "proxy-set-headers",
        _G,
        headers.configmap_ref,
        None,
        "`namespace/name` of a ConfigMap of headers set on every request to the pods",
        "proxy_set_headers",
        nginx=("proxy-set-headers",),
        nginx_configmap=True,
        difference="the ConfigMap must be in the controller's namespace; values are "
        "literal (no nginx variables)",
    ),
    Setting(
        "global-allowed-response-headers",
        _G,
        headers.header_names,
        "",
        "the header names `custom-headers` may set (empty: any)",
        "allowed_response_headers",
        nginx=("global-allowed-response-headers",),
        nginx_configmap=True,
        default_doc="any",
    ),
    # --- backend: a Service port ---
    Setting(
        "balance",
        _B,
        _choice(BALANCE_ALGORITHMS),
        "leastconn",
        "`leastconn`, `roundrobin`, `random`, `source`, `first`",
        "balance",
        nginx=("load-balance",),
        nginx_parse=nginx_balance,
        nginx_configmap=True,
        difference="`round_robin` → `roundrobin`; `ewma` → `leastconn` (HAProxy has no EWMA)",
    ),
    Setting(
        "timeout-connect",
        _B,
        validate.duration,
        "5s",
        "time to connect to a pod",
        "timeout_connect",
        nginx=("proxy-connect-timeout",),
        nginx_parse=nginx_seconds,
        nginx_configmap=True,
    ),
    Setting(
        "timeout-server",
        _B,
        validate.duration,
        "60s",
        "pod inactivity (reading or writing)",
        "timeout_server",
        nginx=("proxy-read-timeout",),
        nginx_parse=nginx_seconds,
        nginx_configmap=True,
    ),
    Setting(
        "proxy-send-timeout",
        _B,
        nginx_seconds,
        None,
        "seconds; raises `timeout-server` if longer",
        nginx=("proxy-send-timeout",),
        nginx_configmap=True,
        apply_value=_send_timeout,
        default_doc="`60`",
        difference="HAProxy has one pod inactivity timeout: the longer of read and send",
    ),
    Setting(
        "retries",
        _B,
        _integer(0, 100),
        "10",
        "retries after a failed attempt",
        "retries",
        nginx=("proxy-next-upstream-tries",),
        nginx_parse=nginx_tries,
        nginx_configmap=True,
        difference="counts the first try (tries 3 = retries 2); 0 (unlimited) refused",
    ),
    Setting(
        "retry-on",
        _B,
        retry_on,
        "conn-failure empty-response response-timeout",
        "HAProxy `retry-on` keywords (non-idempotent requests that reached a pod: never)",
        "retry_on",
        nginx=("proxy-next-upstream",),
        nginx_parse=nginx_next_upstream,
        nginx_configmap=True,
        difference="`error`/`timeout`/`invalid_header`/`http_5xx`/`http_404` mapped; "
        "`http_403`, `http_429`, `non_idempotent` ignored",
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
    Setting(
        "upstream-hash-by",
        _B,
        upstream_hash_by,
        None,
        "consistent hashing on `$request_uri`, `$uri`, `$remote_addr`, `$host`, "
        "`$http_<name>`, `$cookie_<name>` or `$arg_<name>` (over `balance`)",
        "hash_by",
        nginx=("upstream-hash-by",),
        default_doc="off",
        difference="one variable (no concatenations); `upstream-hash-by-subset` not honoured",
    ),
    Setting(
        "service-upstream",
        _B,
        validate.boolean,
        "false",
        "send to the Service's cluster IP (kube-proxy balances) instead of its pods",
        "service_upstream",
        nginx=("service-upstream",),
        nginx_configmap=True,
        difference="a headless Service (no cluster IP) keeps its pods, with a Warning",
    ),
    Setting(
        "proxy-http-version",
        _B,
        _choice(("1.0", "1.1")),
        "1.1",
        "accepted; HAProxy speaks HTTP/1.1 to the pods",
        configmap=False,
        reload=False,
        nginx=("proxy-http-version",),
        difference="`1.0` is accepted but the pods get HTTP/1.1 (HAProxy 2.6 has no 1.0 "
        "client side)",
    ),
    Setting(
        "proxy-ssl-secret",
        _B,
        secret_ref,
        None,
        "`namespace/name` of a TLS Secret of the Ingress's namespace: client certificate "
        "(`tls.crt`/`tls.key`) and CA (`ca.crt`) for `HTTPS`/`GRPCS` pods",
        "proxy_ssl_secret",
        configmap=False,
        nginx=("proxy-ssl-secret",),
        difference="the Secret must be of type kubernetes.io/tls and in the Ingress's namespace",
    ),
    Setting(
        "proxy-ssl-verify",
        _B,
        on_off,
        "off",
        "`on`: the pod's certificate must chain to the Secret's `ca.crt` (else 503)",
        "proxy_ssl_verify",
        configmap=False,
        nginx=("proxy-ssl-verify",),
        difference="on with a missing or unusable Secret: the Ingress's paths answer 503 "
        "(fail closed)",
    ),
    Setting(
        "proxy-ssl-verify-depth",
        _B,
        _integer(1, 100),
        "1",
        "accepted; the chain depth is OpenSSL's default",
        "proxy_ssl_verify_depth",
        configmap=False,
        nginx=("proxy-ssl-verify-depth",),
        difference="not enforced (HAProxy 2.6 has no per-server verify depth)",
    ),
    Setting(
        "proxy-ssl-name",
        _B,
        validate.host,
        None,
        "the name the pod's certificate is verified against (and sent as SNI)",
        "proxy_ssl_name",
        configmap=False,
        nginx=("proxy-ssl-name",),
        default_doc="the request's host",
    ),
    Setting(
        "proxy-ssl-server-name",
        _B,
        on_off,
        "off",
        "`on`: send SNI (`proxy-ssl-name`, else the request's host) to the pod",
        "proxy_ssl_server_name",
        configmap=False,
        nginx=("proxy-ssl-server-name",),
    ),
    Setting(
        "proxy-ssl-ciphers",
        _B,
        auth.ssl_ciphers,
        None,
        "OpenSSL cipher list (TLS 1.2 and below) offered to `HTTPS`/`GRPCS` pods",
        "proxy_ssl_ciphers",
        configmap=False,
        nginx=("proxy-ssl-ciphers",),
        default_doc="HAProxy's",
        difference="checked against OpenSSL (a list selecting no cipher is refused, nginx "
        "falls back to `DEFAULT`); applies with or without `proxy-ssl-secret`",
    ),
    Setting(
        "proxy-ssl-protocols",
        _B,
        auth.ssl_protocols,
        None,
        "TLS versions offered to `HTTPS`/`GRPCS` pods (`TLSv1.2 TLSv1.3`)",
        "proxy_ssl_protocols",
        configmap=False,
        nginx=("proxy-ssl-protocols",),
        default_doc="HAProxy's (TLSv1.2 and up)",
        difference="a contiguous range (HAProxy has ssl-min-ver and ssl-max-ver); SSLv2/SSLv3 "
        "refused; unset is HAProxy's default, not nginx's `TLSv1 TLSv1.1 TLSv1.2`",
    ),
    Setting(
        "backend-protocol",
        _B,
        backend_protocol,
        "HTTP",
        "`HTTP`, `HTTPS`, `GRPC`, `GRPCS`, `H2C` to the pods (TLS not verified)",
        "protocol",
        configmap=False,
        nginx=("backend-protocol",),
        difference="`AUTO_HTTP` and `FCGI` refused",
    ),
    Setting(
        "affinity",
        _B,
        _choice(("cookie",)),
        None,
        "`cookie`: sticky sessions by a cookie HAProxy derives from the pod's address",
        "affinity",
        configmap=False,
        nginx=("affinity",),
        default_doc="none",
    ),
    Setting(
        "affinity-mode",
        _B,
        _choice(("balanced", "persistent")),
        "balanced",
        "accepted; clients stay on their pod in both modes",
        configmap=False,
        nginx=("affinity-mode",),
        difference="`balanced` does not move clients when pods are added",
    ),
    Setting(
        "session-cookie-name",
        _B,
        validate.token,
        "INGRESSCOOKIE",
        "the affinity cookie's name",
        "cookie_name",
        configmap=False,
        nginx=("session-cookie-name",),
    ),
    Setting(
        "session-cookie-path",
        _B,
        validate.path,
        None,
        "the cookie's `Path`",
        "cookie_path",
        configmap=False,
        nginx=("session-cookie-path",),
        default_doc="`/`",
        difference="default `/`, not the Ingress path",
    ),
    Setting(
        "session-cookie-domain",
        _B,
        cookie_domain,
        None,
        "the cookie's `Domain`",
        "cookie_domain",
        configmap=False,
        nginx=("session-cookie-domain",),
    ),
    Setting(
        "session-cookie-samesite",
        _B,
        _choice(("None", "Lax", "Strict")),
        None,
        "the cookie's `SameSite`",
        "cookie_samesite",
        configmap=False,
        nginx=("session-cookie-samesite",),
    ),
    Setting(
        "session-cookie-conditional-samesite-none",
        _B,
        validate.boolean,
        "false",
        "with `SameSite=None`: left out for browsers that reject it (Chrome 40-69, iOS 12, "
        "Safari on macOS 10.14, by User-Agent as ingress-nginx)",
        "cookie_conditional_samesite_none",
        configmap=False,
        nginx=("session-cookie-conditional-samesite-none",),
    ),
    Setting(
        "session-cookie-secure",
        _B,
        validate.boolean,
        "false",
        "the cookie's `Secure`",
        "cookie_secure",
        configmap=False,
        nginx=("session-cookie-secure",),
    ),
    Setting(
        "session-cookie-max-age",
        _B,
        _integer(1, 2**31 - 1),
        None,
        "seconds: the cookie's `Max-Age` (else a session cookie)",
        "cookie_max_age",
        configmap=False,
        nginx=("session-cookie-max-age",),
    ),
    Setting(
        "session-cookie-expires",
        _B,
        _integer(1, 2**31 - 1),
        None,
        "seconds: a `Max-Age` when `session-cookie-max-age` is unset",
        configmap=False,
        nginx=("session-cookie-expires",),
        apply_value=_max_age_if_unset,
        difference="sent as `Max-Age` (same lifetime), no `Expires` date",
    ),
    Setting(
        "session-cookie-change-on-failure",
        _B,
        validate.boolean,
        "false",
        "accepted; a client whose pod fails is sent to another and gets its cookie",
        configmap=False,
        nginx=("session-cookie-change-on-failure",),
        difference="always true (HAProxy redispatches and re-issues the cookie)",
    ),
    # --- route: the paths of the Ingress that sets it ---
    Setting(
        "allowlist-source-range",
        _R,
        _policy,
        None,
        "CIDR networks let in (others: 403); the ConfigMap's also guards the default backend",
        default_doc="everyone",
        nginx=("allowlist-source-range", "whitelist-source-range"),
        nginx_configmap=True,
    ),
    Setting(
        "denylist-source-range",
        _R,
        validate.cidr_list,
        None,
        "CIDR networks refused (403), even with credentials; the ConfigMap's refuses them "
        "everywhere, before routing, and changes without a reload",
        field="deny_sources",
        default_doc="nobody",
        nginx=("denylist-source-range",),
        nginx_configmap=True,
        difference="a denied address is refused even under `satisfy: any`",
    ),
    Setting(
        "auth-type",
        _R,
        auth.auth_type,
        None,
        "`basic`: the paths ask for a user of `auth-secret` (401 with `auth-realm`)",
        field="auth_type",
        configmap=False,
        nginx=("auth-type",),
        difference="`digest` refused (the paths answer 403)",
    ),
    Setting(
        "auth-secret",
        _R,
        auth.secret_name,
        None,
        "Secret (this namespace) with the users: htpasswd file or one key per user",
        field="auth_secret",
        configmap=False,
        nginx=("auth-secret",),
        difference="another namespace's Secret refused; bcrypt, `$6$`, `$5$`, `$1$`, `$y$` "
        "and `$apr1$` verify, other formats are left out with a Warning",
    ),
    Setting(
        "auth-secret-type",
        _R,
        auth.secret_type,
        "auth-file",
        "`auth-file` (key `auth`, htpasswd lines) or `auth-map` (key: user, value: hash)",
        field="secret_type",
        configmap=False,
        nginx=("auth-secret-type",),
    ),
    Setting(
        "auth-realm",
        _R,
        auth.realm,
        "",
        "the realm of the 401's `WWW-Authenticate: Basic`",
        field="realm",
        configmap=False,
        nginx=("auth-realm",),
        difference="no quotes or backslashes",
    ),
    Setting(
        "satisfy",
        _R,
        auth.satisfy,
        "all",
        "`any`: an address of the allow-list OR valid credentials let in; `all`: both",
        field="satisfy_any",
        configmap=False,
        nginx=("satisfy",),
    ),
    Setting(
        "auth-url",
        _R,
        auth.auth_url,
        None,
        "external auth: each request is first sent there (2xx lets in, 401/403 answer so, "
        "anything else or no answer: 500)",
        field="url",
        configmap=False,
        nginx=("auth-url",),
        difference="loopback, link-local, metadata addresses and the controller's ports "
        "refused; of nginx's `$variables` only `$host`, as the whole host, where every "
        "rule of the Ingress names an exact host (checked for each)",
    ),
    Setting(
        "auth-method",
        _R,
        auth.auth_method,
        "GET",
        "the method of the auth request: GET, HEAD or POST (without the body)",
        field="method",
        configmap=False,
        nginx=("auth-method",),
    ),
    Setting(
        "auth-signin",
        _R,
        auth.signin_url,
        None,
        "where a 401 from the auth service is redirected (302, with `rd=` the original URL "
        "unless the URL sets it)",
        field="signin",
        configmap=False,
        nginx=("auth-signin",),
        difference="of nginx's `$variables` only `$host`, `$http_host`, `$best_http_host`, "
        "`$escaped_request_uri`, `$request_uri`, `$request_method`, `$scheme` and "
        "`$pass_access_scheme`",
    ),
    Setting(
        "auth-signin-redirect-param",
        _R,
        query_parameter,
        "rd",
        "the query parameter of `auth-signin`'s redirect that carries the original URL",
        field="signin_param",
        configmap=False,
        nginx=("auth-signin-redirect-param",),
    ),
    Setting(
        "auth-response-headers",
        _R,
        auth.header_names,
        None,
        "headers copied from the auth service's 2xx answer to the request",
        field="response_headers",
        configmap=False,
        nginx=("auth-response-headers",),
    ),
    Setting(
        "auth-request-redirect",
        _R,
        validate.url,
        None,
        "sent to the auth service as X-Auth-Request-Redirect",
        field="request_redirect",
        configmap=False,
        nginx=("auth-request-redirect",),
    ),
    Setting(
        "auth-timeout",
        _R,
        auth.auth_timeout,
        "5s",
        "how long the auth request may take; then the request answers 500",
        field="timeout_ms",
        configmap=False,
        difference="ours (nginx uses its proxy timeouts)",
    ),
    Setting(
        "enable-global-auth",
        _R,
        validate.boolean,
        "true",
        "false: the ConfigMap's `global-auth-url` does not guard this Ingress's paths",
        field="global_auth",
        configmap=False,
        nginx=("enable-global-auth",),
    ),
    # ingress-nginx's global external auth: every route whose Ingress sets no
    # auth-url of its own (nor enable-global-auth "false"). A value that
    # cannot be honoured denies every route (settings.parse_configmap).
    Setting(
        "global-auth-url",
        _G,
        _global_auth_url,
        None,
        "external auth for every Ingress without an `auth-url` of its own",
        "global_auth_url",
        nginx=("global-auth-url",),
        nginx_configmap=True,
        difference="as `auth-url`, but no `$host`; a bad value makes every route answer 403",
    ),
    Setting(
        "global-auth-method",
        _G,
        auth.auth_method,
        "GET",
        "`global-auth-url`'s method: GET, HEAD or POST",
        "global_auth_method",
        nginx=("global-auth-method",),
        nginx_configmap=True,
    ),
    Setting(
        "global-auth-signin",
        _G,
        auth.signin_url,
        None,
        "where `global-auth-url`'s 401 is redirected, as `auth-signin`",
        "global_auth_signin",
        nginx=("global-auth-signin",),
        nginx_configmap=True,
    ),
    Setting(
        "global-auth-signin-redirect-param",
        _G,
        query_parameter,
        "rd",
        "the query parameter of `global-auth-signin`'s redirect carrying the original URL",
        "global_auth_signin_param",
        nginx=("global-auth-signin-redirect-param",),
        nginx_configmap=True,
    ),
    Setting(
        "global-auth-response-headers",
        _G,
        auth.header_names,
        None,
        "headers copied from `global-auth-url`'s 2xx answer to the request",
        "global_auth_response_headers",
        nginx=("global-auth-response-headers",),
        nginx_configmap=True,
    ),
    Setting(
        "global-auth-request-redirect",
        _G,
        validate.url,
        None,
        "sent to `global-auth-url` as X-Auth-Request-Redirect",
        "global_auth_request_redirect",
        nginx=("global-auth-request-redirect",),
        nginx_configmap=True,
    ),
    Setting(
        "global-auth-timeout",
        _G,
        auth.auth_timeout,
        "5s",
        "how long the global auth request may take; then the request answers 500",
        "global_auth_timeout_ms",
        difference="ours (nginx uses its proxy timeouts)",
    ),
    Setting(
        "limit-rps",
        _R,
        _integer(1, 1_000_000),
        None,
        "requests per second per client address; more get `limit-req-status-code`",
        field="limit_rps",
        configmap=False,
        nginx=("limit-rps",),
        difference="counted per HAProxy replica; a sliding window of `limit-burst-multiplier` "
        "seconds, not a leaky bucket",
    ),
    Setting(
        "limit-rpm",
        _R,
        _integer(1, 60_000_000),
        None,
        "requests per minute per client address; more get `limit-req-status-code`",
        field="limit_rpm",
        configmap=False,
        nginx=("limit-rpm",),
        difference="counted per HAProxy replica; a sliding window of `limit-burst-multiplier` "
        "minutes",
    ),
    Setting(
        "limit-burst-multiplier",
        _R,
        _integer(1, 100),
        "5",
        "a burst of rate * this passes at once; the window is this many seconds (minutes)",
        field="limit_burst",
        configmap=False,
        nginx=("limit-burst-multiplier",),
    ),
    Setting(
        "limit-connections",
        _R,
        _integer(1, 1_000_000),
        None,
        "concurrent requests per client address; more get `limit-conn-status-code`",
        field="limit_connections",
        configmap=False,
        nginx=("limit-connections",),
        difference="counted per HAProxy replica",
    ),
    Setting(
        "limit-allowlist",
        _R,
        validate.cidr_list,
        None,
        "CIDR networks never rate- or connection-limited",
        field="limit_exempt",
        configmap=False,
        nginx=("limit-allowlist", "limit-whitelist"),
    ),
    Setting(
        "ssl-ciphers",
        _H,
        auth.ssl_ciphers,
        None,
        "OpenSSL cipher list (TLS 1.2 and below): the ConfigMap's for every HTTPS bind, an "
        "Ingress's for its hosts (their crt-list lines)",
        field="ssl_ciphers",
        default_doc="HAProxy's",
        nginx=("ssl-ciphers",),
        nginx_configmap=True,
        difference="per host: the oldest Ingress that sets it for a host wins (Conflict for "
        "the others); a change reloads",
    ),
    Setting(
        "ssl-protocols",
        _G,
        auth.ssl_protocols,
        "TLSv1.2 TLSv1.3",
        "TLS versions of every HTTPS bind (a contiguous range)",
        field="ssl_protocols",
        nginx=("ssl-protocols",),
        nginx_configmap=True,
        difference="a range only (HAProxy has ssl-min-ver and ssl-max-ver)",
    ),
    Setting(
        "auth-tls-secret",
        _H,
        auth.secret_name,
        None,
        "Secret (this namespace) whose `ca.crt` (and optional `ca.crl`) verifies client "
        "certificates on the Ingress's hosts; its paths check them",
        field="secret",
        configmap=False,
        nginx=("auth-tls-secret",),
        difference="another namespace's Secret, or one without a usable `ca.crt`: the paths "
        "answer 403; checked on this Ingress's paths only (nginx: every path of the host); "
        "a connection whose SNI chose another host's line gets 421; the Secret's new "
        "content (CA rotation, CRL) applies without a reload",
    ),
    Setting(
        "auth-tls-verify-client",
        _H,
        verify_client,
        "on",
        "`on` (a valid certificate or 400), `optional` (none, or a valid one), "
        "`optional_no_ca` (any: the result goes to the pod), `off`",
        field="verify",
        configmap=False,
        nginx=("auth-tls-verify-client",),
        difference="`off` sends `ssl-client-verify: NONE` even if the connection carries a "
        "certificate",
    ),
    Setting(
        "auth-tls-verify-depth",
        _H,
        verify_depth,
        "1",
        "intermediates allowed between a client certificate and its CA (nginx's "
        "`ssl_verify_depth`)",
        field="depth",
        configmap=False,
        nginx=("auth-tls-verify-depth",),
        difference="HAProxy 2.6 has no verify depth: the frontend counts the intermediates "
        "the client sends (self-signed ones aside) plus the most the CA bundle could add, "
        "so a bundle of root CAs is exact and one holding intermediates is stricter",
    ),
    Setting(
        "auth-tls-error-page",
        _H,
        validate.url,
        None,
        "where a request whose certificate is missing (`on`) or fails verification is "
        "redirected (302) instead of the 400",
        field="error_page",
        configmap=False,
        nginx=("auth-tls-error-page",),
        difference="an http(s) URL or an absolute path (no nginx named location)",
    ),
    Setting(
        "auth-tls-pass-certificate-to-upstream",
        _H,
        validate.boolean,
        "false",
        "the client certificate, URL-encoded PEM, in the `ssl-client-cert` header "
        "(`ssl-client-verify`, `-subject-dn`, `-issuer-dn` are always sent)",
        field="pass_cert",
        configmap=False,
        nginx=("auth-tls-pass-certificate-to-upstream",),
        difference="`ssl-client-verify` says `FAILED:<OpenSSL error number>` (nginx: the "
        "error's text)",
    ),
    Setting(
        "auth-tls-match-cn",
        _H,
        match_cn,
        None,
        "a PCRE2 pattern starting with `CN=`, searched in the certificate's subject DN "
        "(RFC 2253); no match: 403",
        field="match_cn",
        configmap=False,
        nginx=("auth-tls-match-cn",),
        difference="a bounded subset of PCRE (regex.py)",
    ),
    Setting(
        "limit-req-status-code",
        _G,
        auth.deny_status,
        "503",
        "the status of a request over limit-rps / limit-rpm",
        field="limit_req_status",
        nginx=("limit-req-status-code",),
        nginx_configmap=True,
    ),
    Setting(
        "limit-conn-status-code",
        _G,
        auth.deny_status,
        "503",
        "the status of a request over limit-connections",
        field="limit_conn_status",
        nginx=("limit-conn-status-code",),
        nginx_configmap=True,
    ),
    Setting(
        "enable-cors",
        _R,
        validate.boolean,
        "false",
        "CORS: preflights answered by HAProxy (204), Access-Control-* headers on answers",
        field="enabled",
        reload=False,
        configmap=False,
        nginx=("enable-cors",),
    ),
    Setting(
        "cors-allow-origin",
        _R,
        cors.origins,
        "*",
        "origins allowed: `*`, or a list of `scheme://host[:port]` (host may start with `*.`)",
        field="origins",
        reload=False,
        configmap=False,
        nginx=("cors-allow-origin",),
        nginx_parse=cors.nginx_origins,
        difference="`*.` matches one label; with `*`, credentials are never allowed; "
        "ingress-nginx's entries that are not origins are skipped with a Warning (none "
        "left: no origin is allowed, where ingress-nginx allows all)",
    ),
    Setting(
        "cors-allow-methods",
        _R,
        cors.methods,
        "GET, PUT, POST, DELETE, PATCH, OPTIONS",
        "Access-Control-Allow-Methods of a preflight",
        field="methods",
        reload=False,
        configmap=False,
        nginx=("cors-allow-methods",),
    ),
    Setting(
        "cors-allow-headers",
        _R,
        cors.headers,
        "DNT, Keep-Alive, User-Agent, X-Requested-With, If-Modified-Since, Cache-Control, "
        "Content-Type, Range, Authorization",
        "Access-Control-Allow-Headers of a preflight",
        field="headers",
        reload=False,
        configmap=False,
        nginx=("cors-allow-headers",),
    ),
    Setting(
        "cors-allow-credentials",
        _R,
        validate.boolean,
        "true",
        "Access-Control-Allow-Credentials: true (never with origin `*`)",
        field="credentials",
        reload=False,
        configmap=False,
        nginx=("cors-allow-credentials",),
        difference="left out when `*` is an allowed origin",
    ),
    Setting(
        "cors-expose-headers",
        _R,
        cors.headers,
        None,
        "Access-Control-Expose-Headers on answers",
        field="expose",
        reload=False,
        configmap=False,
        default_doc="none",
        nginx=("cors-expose-headers",),
    ),
    Setting(
        "cors-max-age",
        _R,
        cors.max_age,
        "1728000",
        "Access-Control-Max-Age (seconds) of a preflight",
        field="max_age",
        reload=False,
        configmap=False,
        nginx=("cors-max-age",),
    ),
    Setting(
        "ssl-redirect",
        _R,
        validate.boolean,
        "true",
        "plain HTTP to the Ingress's TLS hosts gets a 308 to https",
        reload=False,
        configmap=False,
        nginx=("ssl-redirect",),
        difference="a TLS host is redirected when an Ingress listing it in `spec.tls` has it "
        'on; `"false"` keeps the plain HTTP of its own Ingress\'s paths',
    ),
    Setting(
        "ssl-passthrough",
        _R,
        validate.boolean,
        "false",
        "TLS connections for the Ingress's hosts go by SNI, unterminated, to the pods of the "
        "path `/` (else the first path); needs `--enable-ssl-passthrough`",
        reload=False,
        configmap=False,
        nginx=("ssl-passthrough",),
        difference="exact hosts only; to the pods (ingress-nginx: the cluster IP); refused "
        "(TLS terminated, Warning) with an access rule or where an older Ingress serves the host",
    ),
    Setting(
        "force-ssl-redirect",
        _R,
        validate.boolean,
        "false",
        "plain HTTP to these paths gets a 308 to https, with or without `spec.tls`",
        "force_https",
        reload=False,
        nginx=("force-ssl-redirect",),
        nginx_configmap=True,
    ),
    Setting(
        "preserve-trailing-slash",
        _R,
        validate.boolean,
        "false",
        "the https redirect keeps a request's trailing `/` (else: dropped, as ingress-nginx)",
        "keep_slash",
        reload=False,
        configmap=False,
        nginx=("preserve-trailing-slash",),
    ),
    Setting(
        "from-to-www-redirect",
        _R,
        validate.boolean,
        "false",
        "requests for `www.<host>` (or `<host>` for a `www.` host) get a 308 to the Ingress's host",
        reload=False,
        configmap=False,
        nginx=("from-to-www-redirect",),
        difference="only where no Ingress has rules for the other name (nor its wildcard)",
    ),
    Setting(
        "server-alias",
        _R,
        server_aliases,
        None,
        "comma-separated host names that serve this Ingress's paths too",
        reload=False,
        configmap=False,
        nginx=("server-alias",),
        difference="this Ingress's paths only (not every Ingress of the host); an alias "
        "another Ingress has rules for is skipped with a Warning; no wildcards; its "
        "certificate comes from `spec.tls`",
    ),
    Setting(
        "custom-headers",
        _R,
        lambda value, field: value,  # checked by translate, which knows the namespace
        None,
        "`name` or `namespace/name` of a ConfigMap of headers set on these paths' responses",
        reload=False,
        configmap=False,
        nginx=("custom-headers",),
        difference="the ConfigMap must be in the controller's namespace (the admin's header "
        "sets: the controller reads no other namespace's ConfigMaps); missing or invalid: 503",
    ),
    Setting(
        "default-backend",
        _R,
        validate.service_name,
        None,
        "a Service of the Ingress's namespace that answers while the paths' Service has no "
        "usable pod (with `X-Code: 503`…), and the `custom-http-errors`",
        reload=False,
        configmap=False,
        nginx=("default-backend",),
        difference="its first port; requests go to it only when no pod is usable (HAProxy's "
        "own 502/504 are not redirected)",
    ),
    Setting(
        "custom-http-errors",
        _R,
        error_codes,
        "",
        "statuses (`404,503`) whose responses are replaced by the default backend's answer "
        "(`X-Code`, `X-Original-URI`, `X-Namespace`, `X-Ingress-Name`, `X-Service-Name`, "
        "`X-Service-Port`, `X-Format`)",
        "error_codes",
        reload=False,
        default_doc="none",
        nginx=("custom-http-errors",),
        nginx_configmap=True,
        difference="responses from pods only (not HAProxy's own errors); the error page is "
        "fetched from one usable pod of the default backend, at `/`",
    ),
    Setting(
        "enable-access-log",
        _R,
        validate.boolean,
        "true",
        "false: HAProxy logs nothing for these paths",
        "access_log",
        reload=False,
        configmap=False,
        nginx=("enable-access-log",),
    ),
    Setting(
        "permanent-redirect",
        _R,
        validate.url,
        None,
        "every request answered with a redirect to this URL",
        "permanent_redirect",
        reload=False,
        configmap=False,
        nginx=("permanent-redirect",),
    ),
    Setting(
        "permanent-redirect-code",
        _R,
        redirect_code,
        "301",
        "its status",
        "permanent_redirect_code",
        reload=False,
        configmap=False,
        nginx=("permanent-redirect-code",),
        difference="300 and 304-306 refused (HAProxy redirects with 301-303, 307, 308)",
    ),
    Setting(
        "temporal-redirect",
        _R,
        validate.url,
        None,
        "every request answered with a redirect to this URL",
        "temporal_redirect",
        reload=False,
        configmap=False,
        nginx=("temporal-redirect",),
    ),
    Setting(
        "temporal-redirect-code",
        _R,
        redirect_code,
        "302",
        "its status",
        "temporal_redirect_code",
        reload=False,
        configmap=False,
        nginx=("temporal-redirect-code",),
    ),
    Setting(
        "app-root",
        _R,
        validate.path,
        None,
        "requests for `/` get a 302 to this path",
        "app_root",
        reload=False,
        configmap=False,
        nginx=("app-root",),
    ),
    Setting(
        "rewrite-target",
        _R,
        rewrite_target,
        None,
        "the path the pod receives instead of the request's (query kept)",
        "rewrite_target",
        reload=False,
        configmap=False,
        nginx=("rewrite-target",),
        difference="without `$n` the paths stay literal (ingress-nginx makes them regular "
        "expressions); with `$n` they are, for this Ingress only",
    ),
    Setting(
        "use-regex",
        _R,
        validate.boolean,
        "false",
        "paths are case-insensitive PCRE2 patterns matched from the path's start",
        reload=False,
        configmap=False,
        nginx=("use-regex",),
        difference="this Ingress's paths only, not every path of the host (tenant "
        "isolation); a bounded subset of PCRE (regex.py); paths over 2,048 bytes never "
        "match; another Ingress's longer literal prefix wins",
    ),
    Setting(
        "canary",
        _R,
        validate.boolean,
        "false",
        "this Ingress is a canary of the one with the same host, path and path type (same "
        "namespace)",
        "enabled",
        reload=False,
        configmap=False,
        nginx=("canary",),
        difference="the main Ingress must be in the same namespace (tenant isolation)",
    ),
    Setting(
        "canary-weight",
        _R,
        _integer(0, 1_000_000),
        "0",
        "requests sent to the canary, out of `canary-weight-total`",
        "weight",
        reload=False,
        configmap=False,
        nginx=("canary-weight",),
    ),
    Setting(
        "canary-weight-total",
        _R,
        canary_total,
        "100",
        "the weights' total (values below 100 count as 100, as ingress-nginx)",
        "total",
        reload=False,
        configmap=False,
        nginx=("canary-weight-total",),
    ),
    Setting(
        "canary-by-header",
        _R,
        validate.token,
        None,
        "a request header: `always` sends to the canary, `never` to the main Ingress",
        "header",
        reload=False,
        configmap=False,
        nginx=("canary-by-header",),
    ),
    Setting(
        "canary-by-header-value",
        _R,
        header_value,
        None,
        "the `canary-by-header` value that sends to the canary (others: next rule)",
        "header_value",
        reload=False,
        configmap=False,
        nginx=("canary-by-header-value",),
    ),
    Setting(
        "canary-by-header-pattern",
        _R,
        regex.pattern,
        None,
        "a PCRE2 pattern the header's value must contain (when no `-value`)",
        "header_pattern",
        reload=False,
        configmap=False,
        nginx=("canary-by-header-pattern",),
        difference="a bounded subset of PCRE (regex.py): no back-references, lookarounds, "
        "nested repeats",
    ),
    Setting(
        "canary-by-cookie",
        _R,
        validate.token,
        None,
        "a cookie: `always` sends to the canary, `never` to the main Ingress",
        "cookie",
        reload=False,
        configmap=False,
        nginx=("canary-by-cookie",),
    ),
    Setting(
        "affinity-canary-behavior",
        _R,
        _choice(("sticky", "legacy")),
        "sticky",
        "on a canary Ingress: `sticky`, a client sent to the canary (or to the main "
        "Ingress) keeps going there while that side has `affinity: cookie`; `legacy`, every "
        "request is decided anew",
        "affinity_behavior",
        reload=False,
        configmap=False,
        nginx=("affinity-canary-behavior",),
        difference="the side is kept by a second cookie, `<session-cookie-name>-canary` "
        "(1: canary, 0: main), with the sticky side's cookie attributes; as ingress-nginx, "
        "it wins over the canary's header and cookie rules",
    ),
    Setting(
        "upstream-vhost",
        _R,
        upstream_vhost,
        None,
        "the `Host` header the pod receives",
        "upstream_vhost",
        reload=False,
        configmap=False,
        nginx=("upstream-vhost",),
    ),
    Setting(
        "x-forwarded-prefix",
        _R,
        validate.path,
        None,
        "an `X-Forwarded-Prefix` header to the pod",
        "x_forwarded_prefix",
        reload=False,
        configmap=False,
        nginx=("x-forwarded-prefix",),
    ),
    Setting(
        "proxy-redirect-from",
        _R,
        responses.redirect_from,
        "off",
        "the prefix of the pods' `Location` and `Refresh` headers replaced by "
        "`proxy-redirect-to` (`off`: none)",
        "proxy_redirect_from",
        reload=False,
        nginx=("proxy-redirect-from",),
        nginx_configmap=True,
        difference="literal prefixes only: `~` regular expressions and `$variables` refused; "
        "`default` is `off` (its prefix is the internal upstream URL no pod sends)",
    ),
    Setting(
        "proxy-redirect-to",
        _R,
        responses.redirect_to,
        "off",
        "what replaces `proxy-redirect-from` (`off`: no rewrite)",
        "proxy_redirect_to",
        reload=False,
        nginx=("proxy-redirect-to",),
        nginx_configmap=True,
        difference="no `$variables`",
    ),
    Setting(
        "proxy-cookie-domain",
        _R,
        responses.cookie_domain,
        "off",
        "`FROM TO`: a `Set-Cookie` from the pods with `Domain=FROM` gets `Domain=TO` "
        "(no case, leading dot kept)",
        "proxy_cookie_domain",
        reload=False,
        nginx=("proxy-cookie-domain",),
        nginx_configmap=True,
        difference="one pair of domain names: no `~` regular expressions nor `$variables`",
    ),
    Setting(
        "proxy-cookie-path",
        _R,
        responses.cookie_path,
        "off",
        "`FROM TO`: a `Set-Cookie` from the pods whose `Path` starts with FROM gets TO "
        "instead of that prefix",
        "proxy_cookie_path",
        reload=False,
        nginx=("proxy-cookie-path",),
        nginx_configmap=True,
        difference="one pair of paths: no `~` regular expressions nor `$variables`",
    ),
    Setting(
        "connection-proxy-header",
        _R,
        connection_tokens,
        None,
        "the `Connection` header sent to the pods (`keep-alive`, `close`…)",
        "connection_header",
        reload=False,
        configmap=False,
        nginx=("connection-proxy-header",),
        default_doc="HAProxy's",
        difference="HTTP/1.1 to the pods: HAProxy drops the `keep-alive` token (implicit "
        "in HTTP/1.1) and sends the others; not applied to requests carrying `Upgrade` "
        "(WebSockets keep working) nor to HTTP/2 pods (no Connection header in HTTP/2)",
    ),
    Setting(
        "proxy-request-buffering",
        _R,
        on_off,
        "on",
        "`on`: a request's body is received before it goes to a pod (slow clients never "
        "hold a pod's connection); `off`: streamed",
        "request_buffering",
        reload=False,
        nginx=("proxy-request-buffering",),
        nginx_configmap=True,
        difference="HAProxy holds at most one buffer of the body (`tune.bufsize`, 16 KiB) in "
        "memory, then streams the rest (nginx spools all of it to disk); a first buffer not "
        "received within `timeout-client` gets 408; gRPC requests and upgrades (WebSockets) "
        "are never held (as nginx's grpc_pass)",
    ),
    Setting(
        "proxy-body-size",
        _R,
        body_size,
        "0",
        "largest request body (`8m`, `512k`; 0: no limit); larger gets 413",
        "body_max",
        reload=False,
        nginx=("proxy-body-size",),
        nginx_configmap=True,
        difference="default no limit (nginx: 1m); checked on `Content-Length`, "
        "so a chunked body is not limited",
    ),
)

# ingress-nginx's snippets, interpreted (snippets.py) — never pasted. An
# unsupported directive leaves the snippet unapplied with a Warning (settings.py).
SNIPPETS: tuple[Setting, ...] = (
    Setting(
        "configuration-snippet",
        _R,
        lambda value, field: snippets.interpret(value),
        None,
        "nginx directives for these paths, interpreted: headers, `proxy_method`, "
        "`return`, redirects, `set`/`if` (see below)",
        "snippet",
        reload=False,
        configmap=False,
        nginx=("configuration-snippet",),
        difference="a subset of nginx's directives; any other leaves the snippet unapplied",
    ),
    Setting(
        "server-snippet",
        _R,
        lambda value, field: snippets.interpret(value, server=True),
        None,
        "the same directives for every path of the Ingress's hosts, when its namespace "
        "alone serves them",
        reload=False,
        configmap=False,
        nginx=("server-snippet",),
        difference="applies to the host's routes only (not to its unmatched paths)",
    ),
    Setting(
        "auth-snippet",
        _R,
        lambda value, field: snippets.interpret(value),
        None,
        "read and checked; not applied to `auth-url` requests",
        reload=False,
        configmap=False,
        nginx=("auth-snippet",),
        difference="never applied: the auth request is built by ingress.lua",
    ),
)
SETTINGS = (*SETTINGS, *SNIPPETS)

BY_KEY: Mapping[str, Setting] = {setting.key: setting for setting in SETTINGS}
# Each setting's place in SETTINGS: an Ingress's named settings are applied in
# this order without walking all of them (settings.ingress_settings).
POSITION: Mapping[int, int] = {id(setting): i for i, setting in enumerate(SETTINGS)}
# Fields of auth.AccessAsk: translate reads the Secrets they name.
ACCESS = frozenset(
    BY_KEY[k]
    for k in (
        "denylist-source-range",
        "auth-type",
        "auth-secret",
        "auth-secret-type",
        "auth-realm",
        "satisfy",
        "limit-rps",
        "limit-rpm",
        "limit-burst-multiplier",
        "limit-connections",
        "limit-allowlist",
        "auth-url",
        "auth-method",
        "auth-signin",
        "auth-signin-redirect-param",
        "auth-response-headers",
        "auth-request-redirect",
        "auth-timeout",
        "enable-global-auth",
    )
)
# The ConfigMap's global-auth-* keys: a value that cannot be honoured denies
# every route (an unset one would open them).
GLOBAL_AUTH = frozenset(s for s in SETTINGS if s.key.startswith("global-auth-"))
# auth-tls-*: the fields of an auth.ClientTLSAsk (translate reads the Secret).
CLIENT_TLS = frozenset(s for s in SETTINGS if s.key.startswith("auth-tls-"))
# enable-cors and cors-*: the fields of a model.Cors (RouteOptions.cors).
CORS = frozenset(s for s in SETTINGS if s.key == "enable-cors" or s.key.startswith("cors-"))
# The canary-* keys and affinity-canary-behavior: they set the fields of a
# model.Canary, not of RouteOptions.
CANARY = frozenset(
    s for s in SETTINGS if s.key.startswith("canary") or s.key == "affinity-canary-behavior"
)
# ingress-nginx's names (annotation suffix or ConfigMap key) → the setting.
BY_NGINX: Mapping[str, Setting] = {name: s for s in SETTINGS for name in s.nginx}


def scoped(scope: Scope) -> tuple[Setting, ...]:
    return tuple(setting for setting in SETTINGS if setting.scope is scope)


def defaults() -> GlobalSettings:
    """The settings with nothing configured, built from the declarations."""

    def values(scope: Scope) -> dict[str, Any]:
        return {
            s.field: s.parse(s.default, "default") if s.default is not None else None
            for s in scoped(scope)
            if s.field
            and s not in CANARY
            and s not in ACCESS
            and s not in CORS
            and s not in CLIENT_TLS
        }

    return GlobalSettings(
        **values(Scope.GLOBAL),
        **values(Scope.HOST),
        backend=BackendSettings(**values(Scope.BACKEND)),
        route=RouteOptions(**values(Scope.ROUTE)),
    )


def apply(target: Any, setting: Setting, value: Any) -> Any:
    """``target`` (a settings dataclass) with ``setting`` set to a parsed ``value``."""
    return apply_all(target, [(setting, value)])


def apply_all(target: Any, changes: Iterable[tuple[Setting, Any]]) -> Any:
    """:func:`apply` of each change in turn, with one ``dataclasses.replace`` per run of plain
    fields: a replace of the ~40-field RouteOptions costs ~20 µs, per setting an Ingress names.
    """
    fields: dict[str, Any] = {}
    for setting, value in changes:
        if setting.apply_value is not None:
            # It reads the fields set before it.
            if fields:
                target, fields = dataclasses.replace(target, **fields), {}
            target = setting.apply_value(target, value)
        elif setting.field:  # else validated, and documented as having no effect here
            fields[setting.field] = value
    return dataclasses.replace(target, **fields) if fields else target


# --- the README's table (written by ``python -m haproxy_ingress.readme``) ------

TABLE_BEGIN = "<!-- settings table: generated by `python -m haproxy_ingress.readme README.md` -->"
TABLE_END = "<!-- end of settings table -->"


def markdown_table(settings: Iterable[Setting] = SETTINGS) -> str:
    lines = [
        "| key | ingress-nginx name | scope | where | default | reload | meaning "
        "| difference from ingress-nginx |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in settings:
        where = " + ".join(
            name for name, on in (("ConfigMap", s.configmap), ("annotation", s.annotation)) if on
        )
        default = s.default_doc or (f"`{s.default}`" if s.default is not None else "—")
        reload = "yes" if s.reload else "no"
        nginx = ", ".join(f"`{name}`" for name in s.nginx) or "—"
        lines.append(
            f"| `{s.key}` | {nginx} | {s.scope} | {where} | {default} | {reload} | {s.doc} "
            f"| {s.difference} |"
        )
    return "\n".join(lines) + "\n"


def readme_section() -> str:
    return f"{TABLE_BEGIN}\n{markdown_table()}{TABLE_END}\n"


def with_table(readme: str) -> str:
    """``readme`` with its settings table replaced by the one the declarations give."""
    start = readme.index(TABLE_BEGIN)
    end = readme.index(TABLE_END, start) + len(TABLE_END) + 1
    return readme[:start] + readme_section() + readme[end:]
