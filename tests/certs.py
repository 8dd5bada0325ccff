"""Test certificates: the controller's own self-signed builder, with fixed dates."""

from __future__ import annotations

import base64
import datetime

from haproxy_ingress import tls

# Fixed dates keep expectations stable ("expired on 2035-12-30" and the like).
NOT_BEFORE = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
NOT_AFTER = NOT_BEFORE + datetime.timedelta(days=3650)


def self_signed(
    common_name: str,
    *,
    not_before: datetime.datetime = NOT_BEFORE,
    not_after: datetime.datetime = NOT_AFTER,
) -> tuple[bytes, bytes]:
    """A certificate for ``common_name`` (also its SAN) and its PKCS#8 key, as PEM."""
    return tls.self_signed(common_name, not_before, not_after, dns_names=(common_name,))


def secret_data(common_name: str) -> tuple[str, str]:
    """``tls.crt`` and ``tls.key`` of a TLS Secret, base64 as the API holds them."""
    cert, key = self_signed(common_name)
    return base64.b64encode(cert).decode(), base64.b64encode(key).decode()
