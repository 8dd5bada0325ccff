"""The canonical host and path a request is routed by (pure).

Routing must not be steerable by any byte a client controls beyond the host
name and the path, and the path HAProxy matches must be the path a backend
will act on. So requests are matched on a canonical form, computed in HAProxy
by ``templates/ingress.lua`` (this module is its reference, and the property
tests hold the two equal), and Ingress paths are turned into map keys by the
same function:

Host (the whole ``Host`` header, or HTTP/2 ``:authority``)
  absent or empty → ``""`` (only rules without a host match); otherwise a DNS
  name of letters, digits and hyphens (labels of 1 to 63, no leading or trailing
  hyphen, at most 253 characters, one trailing dot allowed) or a bracketed IPv6
  literal, optionally followed by ``:port``. Lowered (ASCII only), port and
  trailing dot removed. Anything else (``a/b``, ``a, b``, ``x@y``, spaces,
  non-ASCII) → invalid: 400.

Path (as nginx matches locations, which ingress-nginx users rely on)
  1. every ``%XX`` is decoded; a ``%`` not followed by two hex digits, or a
     decoded NUL, → invalid (400);
  2. a backslash counts as ``/`` (some backends treat it so);
  3. empty segments are dropped (``//`` → ``/``);
  4. path parameters are dropped (``/admin;x=1`` → ``/admin``, ``/..;/`` →
     ``/../``): servlet containers and others ignore them, so ``/admin;x`` is
     ``/admin`` to the backend and must meet ``/admin``'s rule (stricter than
     nginx, which matches ``;`` literally; Ingress paths cannot contain ``;``);
  5. ``.`` and ``..`` segments are resolved (RFC 3986 5.2.4); ``..`` above the
     root → invalid (400);
  6. a trailing slash is kept (``/a/`` ≠ ``/a`` for ``Exact`` rules);
  7. every byte outside the RFC 3986 path characters (and ``%``, ``;``) is
     percent-encoded with upper-case hex, so the result is a safe map key.

The request itself goes to the backend unchanged, as ingress-nginx sends
``$request_uri``: a backend that resolves the path itself lands where the
canonical path points, because the canonical form treats every byte that a
backend could read as a separator or dot segment as one.
"""

from __future__ import annotations

import re

# Bytes kept as they are in a canonical path; everything else is %XX-encoded
# (the RFC 3986 path characters, less ';' which step 4 removes, and '%').
PATH_SAFE = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,=:@"
)
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_PORT = re.compile(r"(?::[0-9]{0,5})?")
_IPV6_LITERAL = re.compile(r"\[([0-9A-Fa-f:.]{2,45})\]((?::[0-9]{0,5})?)")
_HEX = frozenset(b"0123456789abcdefABCDEF")
MAX_HOST_LENGTH = 253


def canonical_host(value: str | None) -> str | None:
    """The host a request is routed by, ``""`` for none, or None (invalid: 400)."""
    if not value:
        return ""
    if not value.isascii():
        return None
    if value.startswith("["):
        match = _IPV6_LITERAL.fullmatch(value)
        return f"[{match[1].lower()}]" if match else None
    name, colon, port = value.partition(":")
    if colon and not _PORT.fullmatch(colon + port):
        return None
    if name.endswith("."):
        name = name[:-1]
    if not name or len(name) > MAX_HOST_LENGTH:
        return None
    if not all(_LABEL.fullmatch(label) for label in name.split(".")):
        return None
    return name.lower()


# A path that is its own canonical form: segments of PATH_SAFE bytes (no
# '%' to decode), none empty, "." or "..", and perhaps a trailing slash.
# Most Ingress paths are, and this is one match instead of the walk below
# (a tenth of a 10k-Ingress first translation).
_CANONICAL = re.compile(r"(?:/(?!\.\.?(?:/|$))[A-Za-z0-9\-._~!$&'()*+,=:@]+)*/?")


def canonical_path(value: str | bytes | None) -> str | None:
    """The path a request is routed by, or None (invalid: 400)."""
    if isinstance(value, str) and value and _CANONICAL.fullmatch(value):
        return value
    return _canonical_path(value)


def _canonical_path(value: str | bytes | None) -> str | None:
    raw = value.encode("latin-1") if isinstance(value, str) else (value or b"")
    if not raw:
        return "/"
    if not raw.startswith(b"/"):
        return None
    decoded = _percent_decode(raw)
    if decoded is None or b"\0" in decoded:
        return None
    segments = decoded.replace(b"\\", b"/").split(b"/")[1:]
    out: list[bytes] = []
    trailing = False
    for index, parameterised in enumerate(segments):
        last = index == len(segments) - 1
        segment = parameterised.split(b";", 1)[0]
        if segment == b"..":
            if not out:
                return None
            out.pop()
            trailing = last
        elif segment == b"." or not segment:
            trailing = last
        else:
            out.append(segment)
            trailing = False
    path = "/" + "/".join(_encode(segment) for segment in out)
    return path + "/" if trailing and out else path


def _percent_decode(raw: bytes) -> bytes | None:
    out = bytearray()
    index = 0
    while index < len(raw):
        byte = raw[index]
        if byte == 0x25:  # '%'
            pair = raw[index + 1 : index + 3]
            if len(pair) != 2 or not all(c in _HEX for c in pair):
                return None
            out.append(int(pair, 16))
            index += 3
        else:
            out.append(byte)
            index += 1
    return bytes(out)


def _encode(segment: bytes) -> str:
    return "".join(chr(c) if c in PATH_SAFE else f"%{c:02X}" for c in segment)
