"""Test certificates: the controller's own self-signed builder, test CAs, fixed dates."""

from __future__ import annotations

import base64
import datetime
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

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


@dataclass(frozen=True)
class Authority:
    """A test CA: its certificate and key, to issue client certificates and CRLs."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def authority(common_name: str, issuer: Authority | None = None) -> Authority:
    """A CA valid from 2026 for ten years: self-signed, or ``issuer``'s intermediate."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.cert.subject if issuer is not None else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(issuer.key if issuer is not None else key, hashes.SHA256())
    )
    return Authority(cert, key)


def client_certificate(
    ca: Authority,
    common_name: str,
    *,
    not_before: datetime.datetime = NOT_BEFORE,
    not_after: datetime.datetime = NOT_AFTER,
) -> tuple[x509.Certificate, bytes, bytes]:
    """A client certificate ``ca`` issued: the certificate, its PEM and its key's PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tests"),
                ]
            )
        )
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca.key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert, cert.public_bytes(serialization.Encoding.PEM), key_pem


def revocation_list(ca: Authority, revoked: list[x509.Certificate]) -> bytes:
    """A CRL of ``ca`` revoking ``revoked``, as PEM."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(NOT_BEFORE)
        .next_update(NOT_AFTER)
    )
    for cert in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(cert.serial_number)
            .revocation_date(NOT_BEFORE)
            .build()
        )
    return builder.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
