"""CORS (ingress-nginx's enable-cors and cors-*): validators and map values (pure).

A route's :class:`model.Cors` reaches HAProxy as map values keyed by its
options' name (so a change is a map update, never a reload). ingress.lua
checks the request's Origin against the route's list (exact origins, ``*``,
or ``scheme://*.parent`` for one more label) and the frontend answers a
preflight itself (204) and adds the headers to the backend's answers.

Never ``*`` with credentials: browsers refuse that pair, and echoing every
origin instead would hand credentialed access to any site. With ``*`` in
the list, Access-Control-Allow-Credentials is left out.
"""

from __future__ import annotations

import base64
import dataclasses
import re
from collections.abc import Callable, Iterable

from haproxy_ingress import validate
from haproxy_ingress.model import CORS_MAPS, Cors, RouteOptions
from haproxy_ingress.validate import Invalid

__all__ = [
    "CORS_MAPS",
    "cors_maps",
    "headers",
    "max_age",
    "methods",
    "nginx_origins",
    "origins",
    "set_cors",
    "skipped_origins",
]
MAX_ORIGINS = 100
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
# Any URI scheme, as ingress-nginx (`tauri://localhost`, `capacitor://…`:
# desktop and mobile shells send their own); ingress.lua accepts the same.
_ORIGIN_RE = re.compile(
    rf"[a-z][a-z0-9+.-]{{0,31}}://(?:\*\.)?{_LABEL}(?:\.{_LABEL})*(?::[0-9]{{1,5}})?"
)
_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}")  # RFC 9110 token
MAX_LIST = 64


def origins(value: str, field: str) -> tuple[str, ...]:
    """``*``, or origins (``https://a.example.com``, ``https://*.example.com:8443``)."""
    words = [w for w in re.split(r"[, ]+", value.strip(" ")) if w]
    if not words or len(words) > MAX_ORIGINS:
        raise Invalid(
            field, f"must list 1 to {MAX_ORIGINS} origins, got {validate.printable(value)}"
        )
    result = []
    for word in words:
        lowered = word.lower()
        if lowered != "*" and not _ORIGIN_RE.fullmatch(lowered):
            raise Invalid(
                field,
                f"{validate.printable(word)} is not * nor an origin (scheme://host[:port], "
                "host may start with *.)",
            )
        result.append(lowered)
    return tuple(sorted(set(result)))


def nginx_origins(value: str, field: str) -> tuple[str, ...]:
    """cors-allow-origin as ingress-nginx reads it: what it would skip is skipped.

    Comma-separated; blank entries and entries that are not an origin (a host
    without its scheme, say) are left out (:func:`skipped_origins` names them
    for a Warning) rather than refusing the Ingress; any ``*`` allows every
    origin. Nothing usable left allows no origin (ingress-nginx would then
    echo every origin, credentials included: never here).
    """
    words = _nginx_words(value)
    if "*" in words:
        return ("*",)
    kept = sorted({w.lower() for w in words if _ORIGIN_RE.fullmatch(w.lower())})
    if len(kept) > MAX_ORIGINS:
        raise Invalid(
            field, f"must list 1 to {MAX_ORIGINS} origins, got {validate.printable(value)}"
        )
    return tuple(kept)


def skipped_origins(value: str) -> tuple[str, ...]:
    """The entries of an ingress-nginx cors-allow-origin that :func:`nginx_origins` left out."""
    words = _nginx_words(value)
    if "*" in words:
        return ()
    return tuple(w for w in words if w and not _ORIGIN_RE.fullmatch(w.lower()))


def _nginx_words(value: str) -> list[str]:
    """cors-allow-origin's comma-separated entries, as ingress-nginx splits them."""
    return [w.strip(" \t") for w in value.split(",")]


def _tokens(kind: str) -> Callable[[str, str], str]:
    def parse(value: str, field: str) -> str:
        words = [w for w in re.split(r"[, ]+", value.strip(" ")) if w]
        if len(words) > MAX_LIST or any(not _TOKEN_RE.fullmatch(w) for w in words):
            raise Invalid(
                field, f"must be a comma-separated list of {kind}, got {validate.printable(value)}"
            )
        return ", ".join(words)

    return parse


def methods(value: str, field: str) -> str:
    parsed = _tokens("HTTP methods")(value, field)
    return parsed.upper()


headers = _tokens("header names")


def max_age(value: str, field: str) -> int:
    return validate.integer(value, field, minimum=0, maximum=2**31 - 1)


def set_cors(options: RouteOptions, cors: Cors) -> RouteOptions:
    """``options`` with CORS on (a Cors whose ``enabled`` is set) or off."""
    wanted = cors if cors.enabled else None
    if options.cors == wanted:
        # The same object: every Ingress without CORS keeps sharing the
        # ConfigMap's options (and their cached name; see RouteOptions).
        return options
    return dataclasses.replace(options, cors=wanted)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


def cors_maps(all_options: Iterable[RouteOptions]) -> tuple[tuple[tuple[str, str], ...], ...]:
    """The CORS maps' entries, in CORS_MAPS order."""
    tables: tuple[list[tuple[str, str]], ...] = tuple([] for _ in CORS_MAPS)
    origin, method, header, expose, age, credentials = tables
    for options in sorted({o for o in all_options if o.cors is not None}, key=lambda o: o.name):
        cors = options.cors
        assert cors is not None
        if not cors.origins:
            # No origin allowed (every one of ingress-nginx's was skipped):
            # the route answers as without CORS.
            continue
        name = options.name
        origin.append((name, _b64(" ".join(cors.origins))))
        method.append((name, _b64(cors.methods)))
        if cors.headers:
            header.append((name, _b64(cors.headers)))
        if cors.expose:
            expose.append((name, _b64(cors.expose)))
        age.append((name, str(cors.max_age)))
        if cors.credentials and "*" not in cors.origins:
            credentials.append((name, "1"))
    return tuple(tuple(table) for table in tables)
