"""TLS material: Secrets checked with ``cryptography``, and the default certificate.

A certificate reaches HAProxy only as PEM that ``cryptography`` parsed and wrote
back out: the bytes in the file are never the user's bytes, so nothing but a
certificate chain and its key can end up in it.
"""

from __future__ import annotations

import base64
import binascii
import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from haproxy_ingress.validate import Invalid

TLS_SECRET_TYPE = "kubernetes.io/tls"
MAX_PEM_BYTES = 256 * 1024


@dataclass(frozen=True)
class CheckedCertificate:
    pem: str  # chain then key, as HAProxy wants them in one file
    not_before: datetime.datetime
    not_after: datetime.datetime
    subject: str


def certificate_from_secret(secret: Mapping[str, Any]) -> CheckedCertificate:
    """Parse a ``kubernetes.io/tls`` Secret; raises :class:`Invalid` naming the field."""
    if secret.get("type") != TLS_SECRET_TYPE:
        raise Invalid("type", f"must be {TLS_SECRET_TYPE}, got {secret.get('type')!r}")
    data = secret.get("data") or {}
    if not isinstance(data, Mapping):
        raise Invalid("data", "must be a map")
    crt = _decode(data.get("tls.crt"), "data[tls.crt]")
    key = _decode(data.get("tls.key"), "data[tls.key]")
    try:
        chain = x509.load_pem_x509_certificates(crt)
    except ValueError:
        raise Invalid("data[tls.crt]", "is not a PEM certificate") from None
    try:
        private_key = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError):
        raise Invalid("data[tls.key]", "is not an unencrypted PEM private key") from None
    leaf = chain[0]
    public = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    leaf_public = leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if public != leaf_public:
        raise Invalid("data[tls.key]", "does not match the certificate in data[tls.crt]")
    pem = b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in chain)
    pem += private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return CheckedCertificate(
        pem=pem.decode("ascii"),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        subject=leaf.subject.rfc4514_string(),
    )


def self_signed(
    common_name: str,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    *,
    dns_names: tuple[str, ...] = (),
) -> tuple[bytes, bytes]:
    """A self-signed certificate (EC P-256) and its PKCS#8 key, as PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if dns_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False
        )
    cert = builder.sign(key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def generate_default_certificate(
    now: datetime.datetime, common_name: str = "haproxy-ingress default certificate"
) -> str:
    """A self-signed certificate + key for hosts that have none of their own."""
    cert, key = self_signed(
        common_name, now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=3650)
    )
    return (cert + key).decode("ascii")


def _decode(value: object, field: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise Invalid(field, "is missing")
    if len(value) > MAX_PEM_BYTES * 4 // 3 + 4:
        raise Invalid(field, f"is larger than {MAX_PEM_BYTES} bytes")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise Invalid(field, "is not valid base64") from None
