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
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

from haproxy_ingress.validate import Invalid

TLS_SECRET_TYPE = "kubernetes.io/tls"
MAX_PEM_BYTES = 256 * 1024
# What OpenSSL 3.0 at HAProxy's default security level (2: 112-bit security)
# loads, checked with `crt` on haproxy 2.6.12: RSA-1024 keys, secp192r1 keys,
# SHA-1/MD5 signatures on a CA-signed certificate and an RSA-1024 CA in the
# chain all fail haproxy -c ("unable to load SSL certificate"). This is an
# allow-list, slightly stricter than OpenSSL: curves other than the three
# that TLS clients offer (secp224r1, secp256k1, brainpool load but no
# browser can use them), DSA (no TLS 1.3 signature scheme) and SHA-1/MD5
# even on self-signed certificates (clients refuse them) are refused too.
MIN_RSA_BITS = 2048
EC_CURVES = ("secp256r1", "secp384r1", "secp521r1")
WEAK_SIGNATURE_HASHES = ("md5", "sha1")


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
    for index, cert in enumerate(chain):
        _check_strength(cert, "data[tls.crt]" if index == 0 else f"data[tls.crt] chain[{index}]")
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


def _check_strength(cert: x509.Certificate, field: str) -> None:
    """Refuse a key or signature that OpenSSL would not load (see EC_CURVES)."""
    try:
        key = cert.public_key()
        digest = cert.signature_hash_algorithm
    except (UnsupportedAlgorithm, ValueError):
        raise Invalid(field, "uses a key or signature algorithm OpenSSL cannot use") from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise Invalid(field, f"has an RSA-{key.key_size} key; at least {MIN_RSA_BITS} bits")
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in EC_CURVES:
            raise Invalid(
                field, f"has an EC key on {key.curve.name}; use one of {', '.join(EC_CURVES)}"
            )
    elif not isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        raise Invalid(field, "has a key type HAProxy cannot serve (use RSA or ECDSA)")
    if digest is not None and digest.name in WEAK_SIGNATURE_HASHES:
        raise Invalid(field, f"is signed with {digest.name.upper()}, which OpenSSL 3 refuses")


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
