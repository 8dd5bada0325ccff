"""TLS Secrets whose keys or signatures OpenSSL 3 (security level 2) will not load.

Checked with ``bind ... ssl crt FILE`` and ``haproxy -c`` on 2.6.12: RSA-1024,
secp192r1, a CA-signed leaf with SHA-1 or MD5 and an RSA-1024 CA in the chain
fail ("unable to load SSL certificate"); RSA-2048, P-256/384/521, Ed25519 load.
The rest of what is refused here is stricter than OpenSSL (see tls.EC_CURVES).
"""

from __future__ import annotations

import base64
import datetime
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from haproxy_ingress.tls import certificate_from_secret
from haproxy_ingress.validate import Invalid

NOW = datetime.datetime.now(datetime.UTC)


def certificate(
    key: object, digest: hashes.HashAlgorithm | None, issuer_key: object = None
) -> bytes:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a.example.com")])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ca")]) if issuer_key else subject
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())  # type: ignore[attr-defined]
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + datetime.timedelta(days=1))
        .sign(issuer_key or key, digest)  # type: ignore[arg-type]
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def secret(cert: bytes, key: object) -> dict[str, object]:
    key_pem = key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return {
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": base64.b64encode(cert).decode(),
            "tls.key": base64.b64encode(key_pem).decode(),
        },
    }


def key_of(kind: str) -> object:
    if kind.startswith("rsa"):
        return rsa.generate_private_key(65537, int(kind[3:]))
    if kind == "dsa":
        return dsa.generate_private_key(2048)
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(ec.SECP256R1() if kind == "p256" else ec.SECP256K1())


@pytest.mark.parametrize(
    ("kind", "accepted"),
    [
        ("rsa1024", False),
        ("rsa2048", True),
        ("dsa", False),
        ("p256", True),
        ("secp256k1", False),
        ("ed25519", True),
    ],
)
def test_key_types(kind: str, accepted: bool) -> None:
    key = key_of(kind)
    digest = None if kind == "ed25519" else hashes.SHA256()
    value = secret(certificate(key, digest), key)
    if accepted:
        certificate_from_secret(value)
    else:
        with pytest.raises(Invalid, match=r"^data\[tls\.crt\]"):
            certificate_from_secret(value)


def test_weak_ca_in_the_chain_is_refused() -> None:
    ca = rsa.generate_private_key(65537, 1024)
    key = ec.generate_private_key(ec.SECP256R1())
    chain = certificate(key, hashes.SHA256(), ca) + certificate(ca, hashes.SHA256())
    with pytest.raises(Invalid, match=r"chain\[1\].*RSA-1024"):
        certificate_from_secret(secret(chain, key))


def test_sha1_signature_is_refused(tmp_path: Path) -> None:
    # cryptography will not sign with SHA-1; openssl does.
    base = tmp_path
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-sha1",
            "-days",
            "1",
            "-subj",
            "/CN=a.example.com",
            "-keyout",
            str(base / "k"),
            "-out",
            str(base / "c"),
        ],
        check=True,
        capture_output=True,
    )
    key = serialization.load_pem_private_key((base / "k").read_bytes(), None)
    with pytest.raises(Invalid, match="SHA1"):
        certificate_from_secret(secret((base / "c").read_bytes(), key))


def _tampered(key: rsa.RSAPrivateKey, **changes: int) -> rsa.RSAPrivateKey:
    numbers = key.private_numbers()
    values = {
        "p": numbers.p,
        "q": numbers.q,
        "d": numbers.d,
        "dmp1": numbers.dmp1,
        "dmq1": numbers.dmq1,
        "iqmp": numbers.iqmp,
        **changes,
    }
    return rsa.RSAPrivateNumbers(public_numbers=numbers.public_numbers, **values).private_key(
        unsafe_skip_rsa_key_validation=True
    )


@pytest.mark.parametrize("part", ["dmp1", "dmq1", "iqmp", "d"])
def test_an_inconsistent_rsa_key_is_refused(part: str) -> None:
    # OpenSSL's slow key check is skipped on load (tls._check_rsa_key): these
    # keys, each with one number off by one, must still be refused, since a
    # key signing with a wrong CRT exponent leaks its factors.
    key = rsa.generate_private_key(65537, 2048)
    cert = certificate(key, hashes.SHA256())
    value = getattr(key.private_numbers(), part)
    bad = _tampered(key, **{part: value + 2})
    with pytest.raises(Invalid, match=r"^data\[tls\.key\]: is .*RSA key"):
        certificate_from_secret(secret(cert, bad))
    certificate_from_secret(secret(cert, key))
