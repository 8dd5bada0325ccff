"""Test certificates, made with ``cryptography`` (EC keys: fast to generate)."""

from __future__ import annotations

import base64
import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

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
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def secret_data(common_name: str) -> tuple[str, str]:
    """``tls.crt`` and ``tls.key`` of a TLS Secret, base64 as the API holds them."""
    cert, key = self_signed(common_name)
    return base64.b64encode(cert).decode(), base64.b64encode(key).decode()
