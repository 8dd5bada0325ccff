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
import re
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

    @property
    def basic(self) -> bool:
        return self.auth_type == "basic"


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
