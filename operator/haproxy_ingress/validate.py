"""Strict validators for every user-controlled string that can reach HAProxy.

Each validator either returns a normalised value that is safe to place into
haproxy.cfg, a map file or a runtime command, or raises :class:`Invalid` naming
why. They are allow-lists: a value is accepted because every character of it is
known to be harmless in every place we put it, never because it "looks fine".
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping
from typing import Any


class Invalid(ValueError):
    """A user-supplied value was refused; ``field`` is the path to it in the object."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    def __reduce__(self) -> tuple[type[Invalid], tuple[str, str]]:
        # Pickled as made (a refusal found in a worker process comes back whole).
        return (type(self), (self.field, self.reason))


_DNS_LABEL = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
_DNS_LABEL_RE = re.compile(_DNS_LABEL)
_DNS1035_LABEL_RE = re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN_RE = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})*")
_PORT_NAME_RE = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,13}[a-z0-9])?")
# RFC 3986 path characters (pchar and '/'), minus ';' and with '%' only as a
# percent-encoding: no whitespace, '#', '?', quotes, backslashes or control
# characters, so a path can be a map key and a runtime-command payload word.
_PATH_RE = re.compile(r"/(?:[A-Za-z0-9\-._~!$&'()*+,=:@/]|%[0-9A-Fa-f]{2})*")
_DURATION_RE = re.compile(r"([0-9]{1,9})(us|ms|s|m|h|d)?")
MAX_PATH_LENGTH = 1024
# The characters of IPv4/IPv6 addresses and networks: no '%' (scope ids).
_IP_CHARS_RE = re.compile(r"[0-9A-Fa-f:.]{2,45}")
_CIDR_CHARS_RE = re.compile(r"[0-9A-Fa-f:.]{2,45}(?:/[0-9.]{1,15})?")


def dns_label(value: object, field: str) -> str:
    """A Kubernetes namespace or object name segment (RFC 1123 label)."""
    if not isinstance(value, str) or not _DNS_LABEL_RE.fullmatch(value):
        raise Invalid(field, f"must be a lowercase RFC 1123 label, got {_show(value)}")
    return value


def service_name(value: object, field: str) -> str:
    """A Service name (RFC 1035 label, as the API server enforces)."""
    if not isinstance(value, str) or not _DNS1035_LABEL_RE.fullmatch(value):
        raise Invalid(field, f"must be a lowercase RFC 1035 label, got {_show(value)}")
    return value


def dns_subdomain(value: object, field: str) -> str:
    """An object name such as a Secret's (RFC 1123 subdomain, at most 253 characters)."""
    if not isinstance(value, str) or len(value) > 253 or not _DNS_SUBDOMAIN_RE.fullmatch(value):
        raise Invalid(field, f"must be a lowercase RFC 1123 subdomain, got {_show(value)}")
    return value


def object_metadata(kind: str, obj: Mapping[str, Any]) -> tuple[str, str]:
    """An object's (namespace, name), checked as the API server checks them.

    Offline ``render`` input has no API server in front of it, and a name ends
    up in file names, backend names, log lines and Events: a newline in one
    must never split a line there.
    """
    meta = mapping(obj.get("metadata"), "metadata")
    namespace = meta.get("namespace", "")
    if kind != "IngressClass":
        dns_label(namespace, "metadata.namespace")
    elif namespace not in ("", None):
        raise Invalid("metadata.namespace", "IngressClasses are not namespaced")
    # The API server's formats: Services are RFC 1035 labels, Ingresses,
    # IngressClasses, EndpointSlices and Secrets RFC 1123 subdomains.
    check_name = service_name if kind == "Service" else dns_subdomain
    name = check_name(meta.get("name"), "metadata.name")
    return str(namespace or ""), name


def printable(value: object, limit: int = 60) -> str:
    """``value`` for an ObjectRef or a log line: itself if a safe name, else a short repr."""
    if value == "" or (
        isinstance(value, str) and len(value) <= 253 and _DNS_SUBDOMAIN_RE.fullmatch(value)
    ):
        return str(value)
    return _show(value, limit)


def port_number(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise Invalid(field, f"must be a port number 1-65535, got {_show(value)}")
    return value


def port_name(value: object, field: str) -> str:
    """An IANA service name as Kubernetes uses for named ports."""
    if (
        not isinstance(value, str)
        or not _PORT_NAME_RE.fullmatch(value)
        or "--" in value
        or not any(c.isalpha() for c in value)
    ):
        raise Invalid(field, f"must be an IANA service port name, got {_show(value)}")
    return value


def host(value: object, field: str) -> str:
    """An Ingress host: a DNS name, optionally with one leading ``*.`` label.

    Hosts are case-insensitive, so they are lowered here and everywhere they are
    compared. IP addresses are refused, as the Ingress spec does.
    """
    if not isinstance(value, str):
        raise Invalid(field, f"must be a string, got {_show(value)}")
    if not value.isascii():
        # Checked before lowering: str.lower() maps some non-ASCII letters to
        # ASCII ones (the Kelvin sign U+212A becomes 'k'), which would accept
        # a host that HAProxy and the client see as different bytes.
        raise Invalid(field, f"must be an ASCII DNS name, got {_show(value)}")
    lowered = value.lower()
    name = lowered[2:] if lowered.startswith("*.") else lowered
    if len(lowered) > 253 or not _DNS_SUBDOMAIN_RE.fullmatch(name):
        raise Invalid(
            field,
            f"must be a DNS name with at most one leading '*.' label, got {_show(value)}",
        )
    # Only digits and dots can make an IP address here (the pattern refuses
    # ':'): skips ipaddress's failed parse, and its exception, for every name.
    if name.replace(".", "").isdigit() and _is_ip_address(name):
        raise Invalid(field, f"must be a DNS name, not an IP address, got {_show(value)}")
    return lowered


def path(value: object, field: str) -> str:
    """An HTTP path as an Ingress rule may name it."""
    if not isinstance(value, str) or len(value) > MAX_PATH_LENGTH or not _PATH_RE.fullmatch(value):
        raise Invalid(
            field,
            "must start with '/' and contain only RFC 3986 path characters "
            f"(no spaces, ';', '#', '?', quotes or control characters), got {_show(value)}",
        )
    return value


def ip_address(value: object, field: str) -> str:
    """An endpoint address, normalised (``ipaddress`` refuses anything else)."""
    if not isinstance(value, str) or not _IP_CHARS_RE.fullmatch(value):
        # ipaddress accepts IPv6 scope ids ("fe80::1%eth0") whose zone is any
        # text, quotes and braces included; HAProxy takes no scope id at all.
        raise Invalid(field, f"must be an IP address without a scope id, got {_show(value)}")
    if _CANONICAL_IPV4_RE.fullmatch(value):
        return value  # already what ipaddress would print: 30k endpoints, 0.3 s saved
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise Invalid(field, f"must be an IP address, got {_show(value)}") from None


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_IPV4_RE = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


_UNIT_MS = {"us": 0.001, "ms": 1, "": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
# HAProxy keeps timers in signed 32-bit milliseconds: 2147483648 (or 25d) is
# refused with "timer overflow" by every timeout, inter, slowstart and
# hard-stop-after (checked with haproxy -c on 2.6.12).
MAX_DURATION_MS = 2**31 - 1


def duration(value: object, field: str) -> str:
    """A positive time in HAProxy's format (``500ms``, ``5s``, ``1m``; a bare number is ms).

    Zero is refused: ``inter 0`` fails ``haproxy -c``, and a zero timeout means
    "wait forever" (accepted with only a warning), which no tenant should be
    able to ask for. Settings where zero means "off" handle it themselves.
    """
    match = _DURATION_RE.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise Invalid(field, f"must be a duration such as 500ms, 5s or 1m, got {_show(value)}")
    milliseconds = int(match[1]) * _UNIT_MS[match[2] or ""]
    if milliseconds > MAX_DURATION_MS:
        raise Invalid(field, f"must be at most 24 days, got {_show(value)}")
    if milliseconds == 0:
        raise Invalid(field, f"must be more than zero, got {_show(value)}")
    return match[0]


def duration_ms(value: str) -> float:
    """A valid duration (see :func:`duration`) in milliseconds."""
    match = _DURATION_RE.fullmatch(value.strip())
    assert match is not None, value
    return int(match[1]) * _UNIT_MS[match[2] or ""]


def is_zero_duration(value: str) -> bool:
    """Whether ``value`` is a duration of zero in any unit (``0``, ``0s``, ``000ms``)."""
    match = _DURATION_RE.fullmatch(value.strip())
    return match is not None and int(match[1]) == 0


# Allow-lists are pattern files, one network per line (haproxy/config.py
# policy_path), so HAProxy's 64 words per line do not bound them; this only
# bounds the work and the file.
MAX_CIDRS = 1024
# Words in the raw value, before duplicates are merged: bounds the work.
MAX_CIDR_WORDS = 1024


def cidr_list(value: object, field: str) -> tuple[str, ...]:
    """Comma- or space-separated networks (``10.0.0.0/8, 2001:db8::/32``), normalised."""
    if not isinstance(value, str):
        raise Invalid(field, f"must be a list of CIDR networks, got {_show(value)}")
    words = [w for w in re.split(r"[,\s]+", value.strip()) if w]
    if not words or len(words) > MAX_CIDR_WORDS:
        raise Invalid(field, f"must list 1 to {MAX_CIDRS} CIDR networks, got {_show(value)}")
    networks = set()
    for word in words:
        if not _CIDR_CHARS_RE.fullmatch(word):
            # Before ipaddress, which accepts scope ids ("fe80::%eth0/64")
            # with any text in them and leaves the scope in the network.
            raise Invalid(field, f"{_show(word)} is not a CIDR network (no scope ids)")
        try:
            networks.add(str(ipaddress.ip_network(word, strict=False)))
        except ValueError:
            raise Invalid(field, f"{_show(word)} is not a CIDR network") from None
    if len(networks) > MAX_CIDRS:
        raise Invalid(field, f"must list 1 to {MAX_CIDRS} CIDR networks, got {len(networks)}")
    return tuple(sorted(networks))


# An absolute http(s) URL or an absolute path, of RFC 3986 characters: no
# whitespace, quotes, backslashes, '<>{}|^`' or control characters, '%' only
# as a percent-encoding. It reaches HAProxy base64-encoded in a map value and
# leaves it in a Location header.
_URL_RE = re.compile(
    r"(?:https?://[A-Za-z0-9.-]{1,253}(?::[0-9]{1,5})?)?"
    # A path, or a query straight after the host (https://login.example.com?rm=1).
    r"(?:[/?](?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*)?"
)
MAX_URL_LENGTH = 2048


def url(value: object, field: str) -> str:
    """A redirect target: ``http(s)://host[:port][/path][?query]`` or ``/path[?query]``."""
    if (
        not isinstance(value, str)
        or not value
        or len(value) > MAX_URL_LENGTH
        or not _URL_RE.fullmatch(value)
        or not (value.startswith("/") or "://" in value)
    ):
        raise Invalid(
            field,
            "must be an http(s) URL or an absolute path of RFC 3986 characters "
            f"(no spaces, quotes or control characters), got {_show(value)}",
        )
    return value


_TOKEN_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def token(value: object, field: str) -> str:
    """A short name (a cookie name): letters, digits, '_', '.', '-'."""
    if not isinstance(value, str) or not _TOKEN_RE.fullmatch(value):
        raise Invalid(field, f"must be 1-64 letters, digits, '_', '.' or '-', got {_show(value)}")
    return value


_SIZE_RE = re.compile(r"([0-9]{1,12})([kKmMgG]?)")
_SIZE_UNIT = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
MAX_SIZE = 2**53  # HAProxy's integers are 64-bit; stay far from overflow


def size(value: object, field: str) -> int:
    """A size as nginx writes it (``8m``, ``512k``, ``1g``, bytes without a unit)."""
    match = _SIZE_RE.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise Invalid(field, f"must be a size such as 512k, 8m or 1g, got {_show(value)}")
    number = int(match[1]) * _SIZE_UNIT[match[2].lower()]
    if number > MAX_SIZE:
        raise Invalid(field, f"must be at most 8 PiB, got {_show(value)}")
    return number


def integer(value: object, field: str, *, minimum: int, maximum: int) -> int:
    """An integer given as a number or as a decimal string (ConfigMap and annotation values)."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,10}", value.strip()):
        number = int(value.strip())
    if number is None or not minimum <= number <= maximum:
        raise Invalid(field, f"must be an integer from {minimum} to {maximum}, got {_show(value)}")
    return number


_PRODUCT_RE = re.compile(r"[A-Za-z0-9._-]{1,64}(?:/[A-Za-z0-9._-]{1,32})?")


def product(value: object, field: str) -> str:
    """An HTTP product token (``name`` or ``name/version``, RFC 9110), as a Server header holds.

    Narrower than the RFC's token: no '%' (HAProxy's log-format), '#', quotes or blanks.
    """
    if not isinstance(value, str) or not _PRODUCT_RE.fullmatch(value):
        raise Invalid(
            field,
            f"must be name or name/version of letters, digits, '.', '_', '-', got {_show(value)}",
        )
    return value


# What Go's strconv.ParseBool reads, which ingress-nginx's annotation and
# ConfigMap parsers use ("1", "t", "TRUE", ...), compared without case.
_TRUE = frozenset({"true", "t", "1"})
_FALSE = frozenset({"false", "f", "0"})


def boolean(value: object, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii():
        word = value.strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
    raise Invalid(field, f"must be true or false, got {_show(value)}")


def choice(value: object, field: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise Invalid(field, f"must be one of {', '.join(allowed)}, got {_show(value)}")
    return value


def mapping(value: object, field: str) -> Mapping[str, Any]:
    """A nested object of a Kubernetes resource (absent means empty)."""
    if type(value) is dict:
        return value  # what the API and YAML give: skips the ABC check (~0.3 µs, 500k calls at 10k)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise Invalid(field, f"must be an object, got {_show(value)}")
    return value


def sequence(value: object, field: str) -> list[Any]:
    """A list field of a Kubernetes resource (absent means empty)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise Invalid(field, f"must be a list, got {_show(value)}")
    return value


def objects(value: object, field: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """The objects of a list field, each with its own field path for problems."""
    for index, item in enumerate(sequence(value, field)):
        item_field = f"{field}[{index}]"
        yield item_field, mapping(item, item_field)


def _is_ip_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _show(value: object, limit: int = 60) -> str:
    """A short, printable rendering of a refused value for problem messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
