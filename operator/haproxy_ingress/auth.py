"""Basic authentication: ingress-nginx's auth Secrets → users HAProxy can verify (pure).

ingress-nginx reads an htpasswd file (``auth-secret-type: auth-file``, the
Secret's ``auth`` key) or one user per key (``auth-map``). Each hash is
sorted by what can verify it:

- crypt formats libcrypt knows (bcrypt ``$2a$``/``$2b$``/``$2y$``, SHA-512
  ``$6$``, SHA-256 ``$5$``, MD5 ``$1$``, yescrypt ``$y$``): an HAProxy
  userlist (``http_auth``), which calls crypt(3);
- Apache's ``$apr1$`` (htpasswd's default), which libcrypt lacks (crypt
  returns ``*0``): verified by ingress.lua, a pure-Lua MD5 and the apr1
  algorithm (a hash cannot be converted to another format);
- anything else (``{SHA}``, DES crypt or plain text, which cannot be told
  apart, …): that user is left out with a Warning naming the format, so
  nobody gets in with it (fail closed).

A Secret that is missing or unreadable leaves the policy with no users: its
paths answer 401 to everyone.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from haproxy_ingress import validate
from haproxy_ingress.validate import Invalid

AUTH_TYPES = ("basic",)
SECRET_TYPES = ("auth-file", "auth-map")
# User names become userlist words and map keys: a conservative set.
USER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}")
# Hash text: the crypt alphabet and '$'; lengths bound the work.
_CRYPT_RE = re.compile(
    r"(?P<bcrypt>\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53})"
    r"|(?P<sha>\$[56]\$(?:rounds=[0-9]{1,9}\$)?[./A-Za-z0-9]{1,16}\$[./A-Za-z0-9]{43,86})"
    r"|(?P<md5>\$1\$[./A-Za-z0-9]{1,8}\$[./A-Za-z0-9]{22})"
    r"|(?P<yescrypt>\$y\$[./A-Za-z0-9]{1,64}\$[./A-Za-z0-9]{1,86}\$[./A-Za-z0-9]{43})"
)
_KNOWN_IDS = ("2a", "2b", "2y", "5", "6", "1", "y", "apr1")
_APR1_RE = re.compile(r"\$apr1\$[./A-Za-z0-9]{1,8}\$[./A-Za-z0-9]{22}")
MAX_USERS = 1000
MAX_SECRET_BYTES = 256 * 1024
MAX_REALM = 128
_REALM_RE = re.compile(r"[\x20-\x7e]*")


@dataclass(frozen=True)
class AccessAsk:
    """What an Ingress's access annotations ask for, before Secrets are read."""

    auth_type: str | None = None
    auth_secret: str | None = None  # a Secret name in the Ingress's namespace
    secret_type: str = "auth-file"
    realm: str = ""
    satisfy_any: bool = False
    deny_sources: tuple[str, ...] = ()
    limit_rps: int | None = None
    limit_rpm: int | None = None
    limit_burst: int = 5
    limit_connections: int | None = None
    limit_exempt: tuple[str, ...] = ()
    url: str | None = None  # auth-url
    method: str = "GET"
    signin: str | None = None  # auth-signin: where a 401 is redirected
    signin_param: str | None = None  # auth-signin-redirect-param: "rd" when unset
    response_headers: tuple[str, ...] = ()
    request_redirect: str | None = None  # auth-request-redirect
    timeout_ms: int = 5000
    global_auth: bool = True  # enable-global-auth: the ConfigMap's global-auth-url applies

    @property
    def basic(self) -> bool:
        return self.auth_type == "basic"


@dataclass(frozen=True)
class ClientTLSAsk:
    """What an Ingress's auth-tls-* annotations ask for, before the Secret is read."""

    secret: str | None = None  # name or namespace/name (translate checks the namespace)
    verify: str = "on"
    depth: int = 1
    error_page: str | None = None
    pass_cert: bool = False
    match_cn: str | None = None


@dataclass(frozen=True)
class Users:
    crypt: tuple[tuple[str, str], ...]
    apr1: tuple[tuple[str, str], ...]
    problems: tuple[Invalid, ...]  # users left out (their format) or the Secret


# The statuses HAProxy 2.6's deny_status takes (its built-in error pages).
DENY_STATUSES = (400, 401, 403, 404, 405, 407, 408, 410, 413, 425, 429, 500, 501, 502, 503, 504)


def deny_status(value: str, field: str) -> int:
    status = validate.integer(value, field, minimum=400, maximum=504)
    if status not in DENY_STATUSES:
        raise Invalid(field, f"must be one of {', '.join(map(str, DENY_STATUSES))}, got {status}")
    return status


def auth_type(value: str, field: str) -> str:
    if value == "digest":
        raise Invalid(field, "digest authentication is not supported (HAProxy has none)")
    return validate.choice(value, field, AUTH_TYPES)


def secret_type(value: str, field: str) -> str:
    return validate.choice(value, field, SECRET_TYPES)


def secret_name(value: str, field: str) -> str:
    """``name`` or ``namespace/name`` (the namespace is checked by translate)."""
    if value.count("/") > 1:
        raise Invalid(field, "must be name or namespace/name")
    namespace, _, name = value.rpartition("/")
    if namespace:
        validate.dns_label(namespace, field)
    validate.dns_subdomain(name, field)
    return value


def realm(value: str, field: str) -> str:
    """Printable ASCII without quotes or backslashes: it sits in a quoted header value."""
    if len(value) > MAX_REALM or not _REALM_RE.fullmatch(value) or any(c in value for c in '"\\'):
        raise Invalid(
            field,
            f"must be at most {MAX_REALM} printable ASCII characters without quotes or "
            f"backslashes, got {validate.printable(value)}",
        )
    return value


def satisfy(value: str, field: str) -> bool:
    return validate.choice(value, field, ("all", "any")) == "any"


def hash_format(value: str) -> str:
    """A short name of a hash's format, for Warnings (never the hash itself)."""
    if value.startswith("{SHA}"):
        return "{SHA} (SHA-1)"
    if value.startswith("$"):
        ident = value[1:].split("$", 1)[0]
        if ident in _KNOWN_IDS:
            return f"malformed ${ident}$"
        return f"${validate.printable(ident, 12)}$" if ident else "unknown"
    if len(value) == 13:
        return "DES crypt or plain text"
    return "plain text or unknown"


def users_from_secret(secret: Mapping[str, Any] | None, kind: str) -> Users:
    """The users of an auth Secret; each one left out is a problem naming why."""
    if secret is None:
        return Users((), (), (Invalid("", "not found: nobody can log in"),))
    data = secret.get("data") or {}
    if not isinstance(data, Mapping):
        return Users((), (), (Invalid("data", "must be a map"),))
    entries: list[tuple[str, str, str]] = []  # field, user, hash
    try:
        if kind == "auth-file":
            text = _decode(data.get("auth"), "data[auth]")
            for number, raw in enumerate(text.splitlines(), 1):
                line = raw.strip()
                if not line or line.startswith("#"):
                    continue
                user, sep, hashed = line.partition(":")
                if not sep:
                    entries.append((f"data[auth] line {number}", "", "no colon"))
                    continue
                entries.append((f"data[auth] line {number}", user, hashed.strip()))
        else:
            for key in sorted(data, key=str):
                entries.append(
                    (f"data[{validate.printable(key)}]", str(key), _decode(data[key], "data"))
                )
    except Invalid as error:
        return Users((), (), (error,))
    crypt: dict[str, str] = {}
    apr1: dict[str, str] = {}
    problems: list[Invalid] = []
    for field, user, hashed in entries:
        if not user and hashed == "no colon":
            problems.append(Invalid(field, "is not user:hash; left out"))
        elif not USER_RE.fullmatch(user):
            problems.append(
                Invalid(field, f"user name {validate.printable(user, 30)} not supported; left out")
            )
        elif user in crypt or user in apr1:
            problems.append(Invalid(field, f"user {user} listed twice; the first is kept"))
        elif _CRYPT_RE.fullmatch(hashed):
            crypt[user] = hashed
        elif _APR1_RE.fullmatch(hashed):
            apr1[user] = hashed
        else:
            problems.append(
                Invalid(
                    field,
                    f"user {user}: hash format {hash_format(hashed)} is not supported "
                    "(bcrypt, $6$, $5$, $1$, $y$ and $apr1$ are); user left out",
                )
            )
        if len(crypt) + len(apr1) >= MAX_USERS:
            problems.append(Invalid("data", f"more than {MAX_USERS} users; the rest left out"))
            break
    return Users(tuple(sorted(crypt.items())), tuple(sorted(apr1.items())), tuple(problems))


def _decode(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise Invalid(field, "is missing")
    if len(value) > MAX_SECRET_BYTES * 4 // 3 + 4:
        raise Invalid(field, "is too large")
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise Invalid(field, "is not base64-encoded UTF-8 text") from None


# --- external authentication (auth-url) -----------------------------------------------

# Where an auth-url may never point: an Ingress author must not turn HAProxy
# into a request forger against the node, the cloud's metadata service or
# the controller (its health and metrics ports are refused on any host).
FORBIDDEN_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this host"
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, incl. 169.254.169.254 (cloud metadata)
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "::/128",
        "::1/128",
        "fe80::/10",  # link-local
        "fd00:ec2::254/128",  # AWS metadata (IPv6)
        "::ffff:0:0/96",  # IPv4-mapped: would bypass the IPv4 checks
    )
)
FORBIDDEN_NAMES = re.compile(
    r"(?:.*\.)?(?:localhost|localhost\.localdomain|metadata|metadata\.google\.internal|"
    r"instance-data|instance-data\.ec2\.internal)\.?",
    re.IGNORECASE,
)
# ingress-nginx's auth-url is read by nginx, so "https://$host/oauth2/auth"
# (oauth2-proxy's documented setup) asks the request's own host. The only
# variable taken here, and only as the whole host: translate checks the URL
# once per host of the Ingress's rules (auth_url_for), which must all be
# exact, so ingress.lua's substitution can only give a host checked here.
HOST_VARIABLE = "$host"
_AUTH_URL_RE = re.compile(
    r"(?P<scheme>https?)://(?P<host>\[[0-9A-Fa-f:.]+\]|\$host|[A-Za-z0-9.-]{1,253})"
    r"(?::(?P<port>[0-9]{1,5}))?"
    # (No other '$': ingress-nginx would read $variables, which are not ours.)
    r"(?P<path>/(?:[A-Za-z0-9\-._~!&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*)?"
)


def auth_url(value: str, field: str) -> str:
    """An http(s) URL whose host is not loopback, link-local, metadata or unspecified.

    A name is checked as written; what it resolves to is HAProxy's at request
    time (see README: a Service of type ExternalName can still point a name
    anywhere, so the controller's own ports are refused on every host too).
    The host may be ``$host``: checked later, per host (:func:`auth_url_for`).
    """
    match = _AUTH_URL_RE.fullmatch(value) if len(value) <= validate.MAX_URL_LENGTH else None
    if match is None:
        raise Invalid(
            field,
            "must be an http(s)://host[:port][/path] URL of RFC 3986 characters, got "
            f"{validate.printable(value)}",
        )
    host = match["host"].strip("[]").rstrip(".")
    port = int(match["port"] or (443 if match["scheme"] == "https" else 80))
    if not 1 <= port <= 65535:
        raise Invalid(field, f"port {port} is not a port number")
    if host == HOST_VARIABLE:
        return value
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
        if not host or FORBIDDEN_NAMES.fullmatch(host) or _looks_numeric(host):
            raise Invalid(field, f"host {validate.printable(host)} is not allowed") from None
    if address is not None and any(address in net for net in FORBIDDEN_NETWORKS):
        raise Invalid(
            field, f"{address} is a loopback, link-local, metadata or unspecified address"
        )
    return value


def auth_url_for(value: str, host: str, field: str) -> str:
    """``value`` (auth_url-checked) as asked for ``host``: ``$host`` replaced, then checked."""
    if url_host(value) != HOST_VARIABLE:
        return value
    expanded = value.replace(HOST_VARIABLE, host, 1)
    try:
        return auth_url(expanded, field)
    except Invalid as error:
        raise Invalid(field, f"for host {host!r}: {error.reason}") from None


# auth-signin is a redirect target only (nothing is fetched from it), so it
# may name what ingress-nginx's oauth2-proxy examples use; ingress.lua
# expands them per request. Each name → what it becomes there.
SIGNIN_VARIABLES = {
    "host": "the request's host, lowercased, without its port",
    "http_host": "the Host header as sent (host[:port])",
    "best_http_host": "the Host header as sent (host[:port])",
    "escaped_request_uri": "the request's path and query, URL-encoded",
    "request_uri": "the request's path and query",
    "scheme": "http or https",
    "pass_access_scheme": "http or https",
    "request_method": "the request's method (Authelia's `?rm=$request_method`)",
}
_VARIABLE_RE = re.compile(r"\$(?:([A-Za-z_][A-Za-z0-9_]*)|)")
_SIGNIN_HOST_RE = re.compile(r"(https?://)\$(host|http_host|best_http_host)(?=[:/?]|$)")


def signin_url(value: str, field: str) -> str:
    """auth-signin: a redirect target (validate.url) that may name SIGNIN_VARIABLES.

    A variable may stand for the whole host, or sit anywhere in the path
    and query; any other ``$`` is refused (nginx would read it as a
    variable we do not have).
    """
    placeholder = _SIGNIN_HOST_RE.sub(r"\1host.invalid", value, count=1)
    validate.url(placeholder, field)
    for match in _VARIABLE_RE.finditer(value):
        name = match[1]
        if name not in SIGNIN_VARIABLES:
            raise Invalid(
                field,
                f"names {validate.printable(match[0] or '$')}; the variables it may name are "
                + ", ".join(f"${known}" for known in SIGNIN_VARIABLES),
            )
    return value


def _looks_numeric(host: str) -> bool:
    """Hosts libc would read as an address in another notation (0x7f.1, 2130706433, 0177.0.0.1)."""
    return all(re.fullmatch(r"0x[0-9a-f]*|[0-9]+", part, re.IGNORECASE) for part in host.split("."))


def url_host(value: str) -> str:
    """The host of an auth_url-checked URL, as written."""
    match = _AUTH_URL_RE.fullmatch(value)
    assert match is not None
    return match["host"]


def url_port(value: str) -> int:
    """The port of an auth_url-checked URL."""
    match = _AUTH_URL_RE.fullmatch(value)
    assert match is not None
    return int(match["port"] or (443 if match["scheme"] == "https" else 80))


def auth_method(value: str, field: str) -> str:
    return validate.choice(value.upper(), field, ("GET", "HEAD", "POST"))


_HEADER_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")


def header_names(value: str, field: str) -> tuple[str, ...]:
    """auth-response-headers: names copied from the auth answer to the request."""
    words = [w for w in re.split(r"[, ]+", value.strip(" ")) if w]
    if not words or len(words) > 32 or any(not _HEADER_NAME_RE.fullmatch(w) for w in words):
        raise Invalid(
            field,
            f"must be a comma-separated list of header names, got {validate.printable(value)}",
        )
    return tuple(sorted({w.lower() for w in words}))


def auth_timeout(value: str, field: str) -> int:
    """Milliseconds the auth call may take (a duration, 1 ms to 60 s)."""
    duration = validate.duration(value, field)
    milliseconds = int(validate.duration_ms(duration))
    if not 1 <= milliseconds <= 60_000:
        raise Invalid(field, f"must be from 1ms to 60s, got {validate.printable(value)}")
    return milliseconds


# --- TLS policy (ConfigMap ssl-ciphers, ssl-protocols) ---------------------------------

TLS_VERSIONS = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
_CIPHERS_RE = re.compile(r"[A-Za-z0-9_+:!@.=-]{1,2048}")


def ssl_ciphers(value: str, field: str) -> str:
    """An OpenSSL cipher list (TLS 1.2 and below) that OpenSSL accepts.

    Checked with the same OpenSSL HAProxy links (3.0 here): a list that
    selects no cipher would fail haproxy -c and stall every change.
    """
    if not _CIPHERS_RE.fullmatch(value):
        raise Invalid(field, f"must be an OpenSSL cipher list, got {validate.printable(value)}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.set_ciphers(value)
    except ssl.SSLError:
        raise Invalid(
            field, f"selects no cipher OpenSSL knows: {validate.printable(value)}"
        ) from None
    return value


def ssl_protocols(value: str, field: str) -> tuple[str, str]:
    """nginx's ``ssl_protocols`` list → HAProxy's (ssl-min-ver, ssl-max-ver): no gaps."""
    words = value.split()
    if not words or any(w not in TLS_VERSIONS for w in words):
        raise Invalid(
            field,
            f"must list versions of {', '.join(TLS_VERSIONS)}, got {validate.printable(value)}",
        )
    indexes = sorted({TLS_VERSIONS.index(w) for w in words})
    if indexes != list(range(indexes[0], indexes[-1] + 1)):
        raise Invalid(field, "must be a contiguous range of versions (HAProxy has a min and a max)")
    return TLS_VERSIONS[indexes[0]], TLS_VERSIONS[indexes[-1]]
