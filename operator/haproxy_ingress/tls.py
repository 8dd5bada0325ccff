"""TLS material: Secrets checked with ``cryptography``, and the default certificate.

A certificate reaches HAProxy only as PEM that ``cryptography`` parsed and wrote
back out: the bytes in the file are never the user's bytes, so nothing but a
certificate chain and its key can end up in it.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import BrokenExecutor, Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import NameOID

from haproxy_ingress.memo import Swept
from haproxy_ingress.validate import Invalid

TLS_SECRET_TYPE = "kubernetes.io/tls"
OPAQUE_SECRET_TYPE = "Opaque"
MAX_PEM_BYTES = 256 * 1024
# New TLS Secrets checked at once on threads (CertificateCache.get_all) from
# this many on, by at most that many threads.
PARALLEL_CHECKS = 16
MAX_CHECK_THREADS = 4
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
        # OpenSSL's own RSA key check tests p and q for primality: ~50 ms per
        # RSA-2048 key, tens of seconds for a cluster's Secrets. The checks
        # that matter here are done by _check_rsa_key in well under 2 ms.
        private_key = serialization.load_pem_private_key(
            key, password=None, unsafe_skip_rsa_key_validation=True
        )
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise Invalid("data[tls.key]", "is not an unencrypted PEM private key") from None
    if isinstance(private_key, rsa.RSAPrivateKey):
        _check_rsa_key(private_key)
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


def ca_from_secret(secret: Mapping[str, Any]) -> str:
    """The ``ca.crt`` of a Secret as re-serialised PEM certificates; Invalid naming the field."""
    data = secret.get("data") or {}
    if not isinstance(data, Mapping):
        raise Invalid("data", "must be a map")
    raw = _decode(data.get("ca.crt"), "data[ca.crt]")
    try:
        chain = x509.load_pem_x509_certificates(raw)
    except ValueError:
        raise Invalid("data[ca.crt]", "is not a PEM certificate bundle") from None
    if len(chain) > 100:
        raise Invalid("data[ca.crt]", "holds more than 100 certificates")
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in chain).decode()


def bundle_intermediates(ca_pem: str) -> int:
    """The most intermediates a chain can take from the CA bundle itself.

    OpenSSL's verify depth (nginx's ssl_verify_depth, auth-tls-verify-depth)
    counts the certificates between the client's and its trust anchor. Those
    the client sends are counted per request (ingress.lua); those a chain
    may pick from the bundle (non-self-signed CA certificates, followed up
    through their issuers in the bundle) are counted here, at their most,
    so the sum never under-counts (fail closed).
    """
    chain = x509.load_pem_x509_certificates(ca_pem.encode())
    by_subject = {cert.subject: cert for cert in chain}
    deepest = 0
    for start in chain:
        count, seen, cert = 0, set(), start
        while cert.issuer != cert.subject and cert.subject not in seen:
            seen.add(cert.subject)
            count += 1
            parent = by_subject.get(cert.issuer)
            if parent is None:
                break
            cert = parent
        deepest = max(deepest, count)
    return deepest


def crl_from_secret(secret: Mapping[str, Any]) -> str:
    """The ``ca.crl`` of a Secret as re-serialised PEM CRLs ("" if it has none).

    Raises :class:`Invalid` naming the field when it is there but is not a
    PEM CRL: a revocation list that cannot be read must not be dropped
    silently (the caller fails closed).
    """
    data = secret.get("data") or {}
    if not isinstance(data, Mapping) or data.get("ca.crl") is None:
        return ""
    raw = _decode(data.get("ca.crl"), "data[ca.crl]")
    blocks = re.findall(
        rb"-----BEGIN X509 CRL-----\r?\n.*?-----END X509 CRL-----", raw, flags=re.DOTALL
    )
    if not blocks or len(blocks) > 100:
        raise Invalid("data[ca.crl]", "is not a PEM certificate revocation list")
    try:
        crls = [x509.load_pem_x509_crl(block) for block in blocks]
    except ValueError:
        raise Invalid("data[ca.crl]", "is not a PEM certificate revocation list") from None
    return b"".join(crl.public_bytes(serialization.Encoding.PEM) for crl in crls).decode()


def _check_rsa_key(key: rsa.RSAPrivateKey) -> None:
    """Refuse an RSA key whose parts disagree, as OpenSSL's key check would.

    An inconsistent key (say, a wrong CRT exponent) makes wrong signatures,
    and a wrong CRT signature reveals the key's factors to whoever sees it.
    The arithmetic checks are exact; a sign-and-verify round trip through
    OpenSSL proves the key signs as TLS will use it. Only primality is not
    re-proved (the expensive part): a key that passes all this signs
    correctly, which is what serving it needs.
    """
    field = "data[tls.key]"
    numbers = key.private_numbers()
    public = numbers.public_numbers
    p, q, d = numbers.p, numbers.q, numbers.d
    lam = (p - 1) * (q - 1) // math.gcd(p - 1, q - 1)
    consistent = (
        p > 1
        and q > 1
        and p * q == public.n
        and public.e % 2 == 1
        and (d * public.e) % lam == 1
        and numbers.dmp1 == d % (p - 1)
        and numbers.dmq1 == d % (q - 1)
        and (numbers.iqmp * q) % p == 1
    )
    if not consistent:
        raise Invalid(field, "is not a consistent RSA key (its numbers disagree)")
    message = b"haproxy-ingress RSA key check"
    try:
        signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        key.public_key().verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        raise Invalid(field, "is an RSA key that does not sign correctly") from None


class CertificateCache:
    """Checked certificates by Secret content, so a Secret is parsed once per version.

    A check costs ~1.5 ms of OpenSSL per RSA-2048 key (the signature of
    :func:`_check_rsa_key`; OpenSSL's own key check, ~45 ms, is skipped): 1,000
    TLS Secrets would cost more than a second on every full translation. The
    key is a digest of exactly what :func:`certificate_from_secret` reads (type
    and both data fields), so a hit returns what a parse would — a refusal
    included — and translate stays a pure function of its input. Owned by the
    reconciler (never module state); :meth:`sweep` after each full translation
    forgets the Secrets no longer served, so memory follows the cluster.
    """

    def __init__(self) -> None:
        self._entries: Swept[bytes, CheckedCertificate | Invalid] = Swept()
        # Checks started by check_ahead: their keys, and the results to come.
        self._ahead: tuple[list[bytes], Future[list[CheckedCertificate | Invalid]]] | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, secret: Mapping[str, Any]) -> CheckedCertificate:
        """:func:`certificate_from_secret`, memoised; raises :class:`Invalid` as it does."""
        (entry,) = self.get_all([secret])
        if isinstance(entry, Invalid):
            raise Invalid(entry.field, entry.reason)
        return entry

    def get_all(self, secrets: Sequence[Mapping[str, Any]]) -> list[CheckedCertificate | Invalid]:
        """:meth:`get` of each Secret, a refusal as its :class:`Invalid`; new ones on every core.

        Most of a check is OpenSSL's work (an RSA signature, _check_rsa_key),
        which ``cryptography`` runs without the GIL: so a first sync's or an
        offline render's 1,000 new Secrets are checked on a few threads, at
        once, and kept in order here.
        """
        keys = [_content_key(secret) for secret in secrets]
        new: dict[bytes, Mapping[str, Any]] = {}
        for key, secret in zip(keys, secrets, strict=True):
            if key is not None and key not in self._entries:
                new.setdefault(key, secret)
        checked: dict[bytes, CheckedCertificate | Invalid] = {}
        if new and self._ahead is not None:
            ahead_keys, ahead = self._ahead
            self._ahead = None
            # Only what this call asks for is kept (and swept as usual); a
            # Secret checked ahead but asked for later is checked again then.
            try:
                made = dict(zip(ahead_keys, ahead.result(), strict=True))
            except BrokenExecutor:  # the process died (say, killed): check here
                made = {}
            checked = {key: made[key] for key in new if key in made}
        left = {key: secret for key, secret in new.items() if key not in checked}
        if len(left) >= PARALLEL_CHECKS:
            workers = min(MAX_CHECK_THREADS, len(os.sched_getaffinity(0)))
            with ThreadPoolExecutor(workers, thread_name_prefix="tls-check") as pool:
                checked.update(zip(left, pool.map(_checked, left.values()), strict=True))
        results: list[CheckedCertificate | Invalid] = []
        for key, secret in zip(keys, secrets, strict=True):
            if key is None:  # a shape the digest cannot cover: parse, do not remember
                results.append(_checked(secret))
            else:
                results.append(self._entries.recall(key, _reuse(checked.get(key), secret)))
        return results

    def check_ahead(self, secrets: Sequence[Mapping[str, Any]], pool: Executor) -> None:
        """Start checking ``secrets`` on ``pool``; the next :meth:`get_all` of a new
        Secret waits for these checks and uses what it asks for of them.

        For a one-shot run with a core to spare (the offline render): given a
        process pool, the checks run while the caller translates everything
        before the certificates, on another core. Threads could not overlap
        them so: each check needs the GIL between its OpenSSL calls.
        """
        new = {
            key: secret
            for key, secret in zip(map(_content_key, secrets), secrets, strict=True)
            if key is not None and key not in self._entries
        }
        if new:
            self._ahead = (list(new), pool.submit(_checked_all, list(new.values())))

    def sweep(self) -> None:
        """Forget every entry not read since the last sweep."""
        self._entries.sweep()


def _reuse(
    made: CheckedCertificate | Invalid | None, secret: Mapping[str, Any]
) -> Callable[[], CheckedCertificate | Invalid]:
    """What makes ``secret``'s entry: the check already ``made``, else a check now."""
    return lambda: _checked(secret) if made is None else made


def _checked(secret: Mapping[str, Any]) -> CheckedCertificate | Invalid:
    try:
        return certificate_from_secret(secret)
    except Invalid as error:
        return error


def _checked_all(secrets: Sequence[Mapping[str, Any]]) -> list[CheckedCertificate | Invalid]:
    return [_checked(secret) for secret in secrets]


def _content_key(secret: Mapping[str, Any]) -> bytes | None:
    data = secret.get("data")
    if not isinstance(data, Mapping):
        return None
    parts = (secret.get("type"), data.get("tls.crt"), data.get("tls.key"))
    if not all(isinstance(part, str) for part in parts):
        return None
    digest = hashlib.sha256()
    for part in parts:
        encoded = str(part).encode("utf-8", "surrogatepass")
        # Length-prefixed: no two different triples hash the same bytes.
        digest.update(len(encoded).to_bytes(8, "big"))
        digest.update(encoded)
    return digest.digest()


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
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None,
) -> tuple[bytes, bytes]:
    """A self-signed certificate and its PKCS#8 key, as PEM (a new P-256 key by default)."""
    if key is None:
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
