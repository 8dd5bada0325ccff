"""Rewrites of the pods' responses, as nginx's proxy_redirect and proxy_cookie_* (pure).

ingress-nginx's ``proxy-redirect-from``/``-to`` replace a prefix of the
``Location`` and ``Refresh`` headers, ``proxy-cookie-domain`` the ``Domain``
and ``proxy-cookie-path`` the ``Path`` attribute of ``Set-Cookie``. Here the
values are checked by these validators, reach HAProxy base64-encoded in
route-option maps (routing.py) and are applied by fixed actions of
ingress.lua as literal text: no byte of them is configuration, a regular
expression or an nginx variable.
"""

from __future__ import annotations

import re

from haproxy_ingress import validate
from haproxy_ingress.validate import Invalid

# Visible ASCII (what a header value may hold), at most 2 KiB. nginx would
# read '$name' as a variable and a leading '~' as a regular expression: both
# are refused rather than taken literally.
_TEXT = re.compile(r"[\x21-\x7e]{1,2048}")


def _text(value: str, field: str) -> str:
    if not _TEXT.fullmatch(value) or "$" in value or value.startswith("~"):
        raise Invalid(
            field,
            "must be 1-2048 visible ASCII characters without '$' (nginx variables) or a "
            f"leading '~' (regular expressions), got {validate.printable(value)}",
        )
    return value


def redirect_from(value: str, field: str) -> str | None:
    """proxy-redirect-from: the prefix replaced; ``off`` and ``default`` turn it off.

    nginx's ``proxy_redirect default`` replaces the proxy_pass URL
    (``http://upstream_balancer/`` in ingress-nginx) by the location, a
    prefix no pod ever sends: the same as off.
    """
    if value in ("off", "default"):
        return None
    return _text(value, field)


def redirect_to(value: str, field: str) -> str | None:
    """proxy-redirect-to: what replaces the prefix; ``off`` turns the rewrite off."""
    if value == "off":
        return None
    return _text(value, field)


def _pair(value: str, field: str, syntax: str) -> tuple[str, str] | None:
    if value == "off":
        return None
    words = value.split(" ")
    if len(words) != 2:
        raise Invalid(field, f"must be '{syntax}' or off, got {validate.printable(value)}")
    return words[0], words[1]


def _domain(value: str, field: str) -> str:
    host = value[1:] if value.startswith(".") else value
    return value[: len(value) - len(host)] + validate.host(host, field)


def cookie_domain(value: str, field: str) -> tuple[str, str] | None:
    """proxy-cookie-domain ``FROM TO``: a Set-Cookie's Domain equal to FROM becomes TO.

    As nginx: compared without case and without a leading dot on either
    side; a leading dot of the cookie's Domain is kept.
    """
    pair = _pair(value, field, "from-domain to-domain")
    if pair is None:
        return None
    source, target = (_domain(word, field) for word in pair)
    if source.lstrip(".").startswith("*") or target.lstrip(".").startswith("*"):
        raise Invalid(field, f"must name domains, not wildcards, got {validate.printable(value)}")
    return source.lstrip(".").lower(), target


def cookie_path(value: str, field: str) -> tuple[str, str] | None:
    """proxy-cookie-path ``FROM TO``: a Set-Cookie's Path starting with FROM gets TO instead."""
    pair = _pair(value, field, "/from-path /to-path")
    if pair is None:
        return None
    for word in pair:
        validate.path(word, field)
        _text(word, field)
    return pair[0], pair[1]
