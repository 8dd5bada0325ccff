"""Header sets: ConfigMaps whose keys are header names and values their values (pure).

ingress-nginx's ``add-headers`` and ``proxy-set-headers`` (ConfigMap) and
``custom-headers`` (annotation) name such a ConfigMap. Its headers are
checked here and reach HAProxy as base64 map values that ingress.lua sets
as literal text: a value is never read as a log-format string, a map or
configuration syntax.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from typing import Any

from haproxy_ingress import validate
from haproxy_ingress.validate import Invalid

# RFC 9110 token characters that every HTTP implementation accepts in a name.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
# Visible ASCII with inner spaces: no CR, LF, NUL or other control characters.
_VALUE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]{0,4094}[\x21-\x7e])?")
# Framing and hop-by-hop headers: a wrong Content-Length or Transfer-Encoding
# desynchronises the pod, and HAProxy manages the connection-level ones. No
# header set and no nginx snippet may set or clear them.
FRAMING = frozenset(
    {
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "proxy-connection",
        "http2-settings",
    }
)
# A header set may not change the Host either (routing reads it; a snippet's
# `proxy_set_header Host …` is the upstream-vhost idiom and stays allowed).
FORBIDDEN = FRAMING | {"host"}
MAX_HEADERS = 64


def header_name(value: object, field: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise Invalid(
            field,
            "must be a header name of 1-64 letters, digits, '-', '_', "
            f"got {validate.printable(value)}",
        )
    if value.lower() in FORBIDDEN:
        raise Invalid(field, f"{value} is a framing header and cannot be set")
    return value


def header_names(value: str, field: str) -> tuple[str, ...]:
    """A comma-separated list of header names."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    if len(names) > 256:
        raise Invalid(field, "must list at most 256 header names")
    return tuple(dict.fromkeys(header_name(name, field) for name in names))


def configmap_ref(value: str, field: str, namespace: str = "") -> tuple[str, str]:
    """``namespace/name`` (or ``name`` when ``namespace`` is given) of a ConfigMap."""
    if "/" in value:
        space, _, name = value.partition("/")
    else:
        space, name = namespace, value
    if not space:
        raise Invalid(field, f"must be namespace/name, got {value!r:.60}")
    return validate.dns_label(space, field), validate.dns_subdomain(name, field)


def header_set(
    configmap: Mapping[str, Any] | None, field: str, allowed: Iterable[str] = ()
) -> tuple[tuple[str, str], ...]:
    """The headers a ConfigMap holds, sorted by name; Invalid if any is not acceptable."""
    if configmap is None:
        raise Invalid(field, "names a ConfigMap that does not exist")
    data = configmap.get("data") or {}
    if not isinstance(data, Mapping):
        raise Invalid(field, "names a ConfigMap whose data is not a map of strings")
    if len(data) > MAX_HEADERS:
        raise Invalid(field, f"names a ConfigMap of more than {MAX_HEADERS} headers")
    permitted = {name.lower() for name in allowed}
    result = []
    for name in sorted(data, key=str):
        checked = header_name(name, field)
        if permitted and checked.lower() not in permitted:
            raise Invalid(field, f"header {checked} is not in global-allowed-response-headers")
        value = data[name]
        if not isinstance(value, str) or not _VALUE.fullmatch(value):
            raise Invalid(
                field,
                f"header {checked}: the value must be 1-4096 visible ASCII characters "
                f"(no control characters), got {validate.printable(value)}",
            )
        result.append((checked, value))
    return tuple(result)


def encode(headers: Iterable[tuple[str, str]]) -> str:
    """``Name: value`` lines, base64: what ingress.lua's header actions read."""
    text = "".join(f"{name}: {value}\n" for name, value in headers)
    return base64.b64encode(text.encode("ascii")).decode("ascii")
