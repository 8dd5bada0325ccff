"""Client certificates (auth-tls-*) and per-host ssl-ciphers against a real HAProxy (issue 12).

Every request is a real TLS handshake with the client certificate, SNI and
Host of the case, through the rendered configuration and crt-list; what is
asserted is HAProxy's answer and what the pod received. Fail closed: a CA
that cannot be used leaves the paths answering 403, a connection verified
against another host's CA (or none) answers 421, and other hosts keep serving.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import socket
import ssl
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tests.backends import Backend
from tests.certs import (
    Authority,
    authority,
    client_certificate,
    revocation_list,
    secret_data,
)
from tests.haproxy.conftest import tls_handshake
from tests.haproxy.stack import Stack
from tests.haproxy.test_access import headers_of, pods, synced
from tests.kube import configmap, ingress, path, rule, tls_secret
from tests.unit.test_translate import make_cert

pytestmark = pytest.mark.haproxy

N = "nginx.ingress.kubernetes.io/"
P = "haproxy-ingress.kopf.dev/"
EXPIRED = datetime.datetime(2026, 2, 1, tzinfo=datetime.UTC)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def ca_secret(
    name: str, data: dict[str, str], namespace: str = "default", type_: str = "Opaque"
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": type_,
        "data": data,
    }


@dataclass(frozen=True)
class Client:
    """A client certificate on disk (Python's ssl loads files only)."""

    cert: x509.Certificate
    pem: bytes
    certfile: Path
    keyfile: Path


def client(directory: Path, name: str, ca: Authority, **dates: datetime.datetime) -> Client:
    cert, pem, key = client_certificate(ca, name, **dates)
    certfile, keyfile = directory / f"{name}.crt", directory / f"{name}.key"
    certfile.write_bytes(pem)
    keyfile.write_bytes(key)
    return Client(cert, pem, certfile, keyfile)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]


async def call(
    port: int,
    host: str,
    sni: str | None = "",
    cert: Client | None = None,
    *,
    target: str = "/",
    version: ssl.TLSVersion | None = None,
) -> Answer:
    """One HTTPS request: SNI (default: the Host; None: no SNI), Host, client certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if version is not None:
        context.minimum_version = context.maximum_version = version
    if cert is not None:
        context.load_cert_chain(cert.certfile, cert.keyfile)
    # An IP address as server_hostname sends no SNI.
    server_name = "127.0.0.1" if sni is None else (sni or host)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname=server_name
    )
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await writer.wait_closed()
    head = response.partition(b"\r\n\r\n")[0]
    return Answer(int(head.split()[1]), headers_of(head))


def seen(backend: Backend) -> dict[str, str]:
    """The headers of the last request ``backend`` served (names lowered)."""
    return {name.lower(): value for name, value in backend.seen[-1][1]}


def guarded(name: str, host: str, secret: str = "ca", **annotations: str) -> dict[str, Any]:
    return ingress(
        name,
        rule(host, path("/", name)),
        annotations={N + "auth-tls-secret": f"default/{secret}", **annotations},
    )


@pytest.fixture
def ca() -> Authority:
    return authority("Tests CA")


@pytest.fixture
def clients(tmp_path: Path, ca: Authority) -> dict[str, Client]:
    other = authority("Other CA")
    return {
        "valid": client(tmp_path, "alice", ca),
        "bob": client(tmp_path, "bob", ca),
        "expired": client(
            tmp_path, "old", ca, not_after=EXPIRED, not_before=EXPIRED - datetime.timedelta(1)
        ),
        "foreign": client(tmp_path, "mallory", other),
    }


async def test_verify_modes_under_every_kind_of_client(
    stack: Stack, ca: Authority, clients: dict[str, Client]
) -> None:
    backends = await pods(stack, "on", "opt", "noca", "off", first=101)
    crt, key = secret_data("on.example.com")
    stack.put(
        ca_secret("ca", {"ca.crt": b64(ca.pem)}),
        tls_secret("on-tls", crt, key),
        ingress(
            "on",
            rule("on.example.com", path("/", "on")),
            annotations={N + "auth-tls-secret": "default/ca"},  # verify-client: on (default)
            tls=[{"hosts": ["on.example.com"], "secretName": "on-tls"}],
        ),
        # No certificate of their own: the default certificate's crt-list line asks.
        guarded("opt", "opt.example.com", **{N + "auth-tls-verify-client": "optional"}),
        guarded("noca", "noca.example.com", **{N + "auth-tls-verify-client": "optional_no_ca"}),
        guarded("off", "off.example.com", **{P + "auth-tls-verify-client": "off"}),
    )
    await synced(stack, ["on", "opt", "noca", "off"])
    port = stack.https_port
    expected = {
        "on": {"valid": 200, "expired": 400, "foreign": 400, None: 400},
        "opt": {"valid": 200, "expired": 400, "foreign": 400, None: 200},
        "noca": {"valid": 200, "expired": 200, "foreign": 200, None: 200},
        "off": {"valid": 200, "expired": 200, "foreign": 200, None: 200},
    }
    for name, cases in expected.items():
        for kind, status in cases.items():
            cert = clients[kind] if kind is not None else None
            answer = await call(port, f"{name}.example.com", cert=cert)
            assert answer.status == status, (name, kind)
    # What the pods learnt, as nginx's ssl-client-* headers.
    await call(port, "noca.example.com", cert=clients["valid"])
    got = seen(backends["noca"])
    assert got["ssl-client-verify"] == "SUCCESS"
    assert got["ssl-client-subject-dn"] == "O=Tests,CN=alice"
    assert got["ssl-client-issuer-dn"] == "CN=Tests CA"
    assert "ssl-client-cert" not in got  # not asked for
    await call(port, "noca.example.com", cert=clients["expired"])
    assert seen(backends["noca"])["ssl-client-verify"] == "FAILED:10"  # certificate has expired
    await call(port, "noca.example.com", cert=clients["foreign"])
    assert seen(backends["noca"])["ssl-client-verify"].startswith("FAILED:")
    await call(port, "noca.example.com")
    got = seen(backends["noca"])
    assert got["ssl-client-verify"] == "NONE" and "ssl-client-subject-dn" not in got
    await call(port, "off.example.com", cert=clients["valid"])
    assert seen(backends["off"])["ssl-client-verify"] == "NONE"
    # Plain HTTP carries no certificate: "on" refuses it, "optional" lets it in.
    assert (await plain(stack, "on.example.com")) in (308, 400)  # the https redirect first
    assert await plain(stack, "opt.example.com") == 200


async def plain(stack: Stack, host: str) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.http_port)
    writer.write(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return int(response.split()[1])


async def test_client_headers_cannot_be_forged(stack: Stack, ca: Authority) -> None:
    backends = await pods(stack, "noca", first=111)
    stack.put(
        ca_secret("ca", {"ca.crt": b64(ca.pem)}),
        guarded("noca", "noca.example.com", **{N + "auth-tls-verify-client": "optional_no_ca"}),
    )
    await synced(stack, ["noca"])
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", stack.https_port, ssl=context, server_hostname="noca.example.com"
    )
    writer.write(
        b"GET / HTTP/1.1\r\nHost: noca.example.com\r\nssl-client-verify: SUCCESS\r\n"
        b"SSL-Client-Subject-DN: CN=admin\r\nssl-client-cert: forged\r\n"
        b"ssl-client-issuer-dn: CN=Tests CA\r\nConnection: close\r\n\r\n"
    )
    await writer.drain()
    assert b" 200 " in (await asyncio.wait_for(reader.read(), 10)).split(b"\r\n")[0]
    writer.close()
    got = seen(backends["noca"])
    assert got["ssl-client-verify"] == "NONE"
    for name in ("ssl-client-subject-dn", "ssl-client-issuer-dn", "ssl-client-cert"):
        assert name not in got, name


async def test_pass_certificate_error_page_and_match_cn(
    stack: Stack, ca: Authority, clients: dict[str, Client]
) -> None:
    backends = await pods(stack, "pass", "errpage", "cn", first=121)
    stack.put(
        ca_secret("ca", {"ca.crt": b64(ca.pem)}),
        guarded(
            "pass", "pass.example.com", **{N + "auth-tls-pass-certificate-to-upstream": "true"}
        ),
        guarded(
            "errpage",
            "errpage.example.com",
            **{N + "auth-tls-error-page": "https://errors.example.com/cert?from=ingress"},
        ),
        guarded(
            "cn",
            "cn.example.com",
            **{N + "auth-tls-match-cn": "CN=(alice|carol)$", N + "server-alias": "cn2.example.com"},
        ),
    )
    await synced(stack, ["pass", "errpage", "cn"])
    port = stack.https_port
    assert (await call(port, "pass.example.com", cert=clients["valid"])).status == 200
    escaped = seen(backends["pass"])["ssl-client-cert"]
    assert escaped.startswith("-----BEGIN%20CERTIFICATE-----%0A")
    assert urllib.parse.unquote(escaped).encode() == clients["valid"].pem
    for kind in (None, "expired", "foreign"):
        answer = await call(
            port, "errpage.example.com", cert=clients[kind] if kind is not None else None
        )
        assert answer.status == 302, kind
        assert answer.headers["location"] == "https://errors.example.com/cert?from=ingress"
    assert (await call(port, "errpage.example.com", cert=clients["valid"])).status == 200
    assert backends["errpage"].served == 1
    assert (await call(port, "cn.example.com", cert=clients["valid"])).status == 200
    assert (await call(port, "cn.example.com", cert=clients["bob"])).status == 403
    assert backends["cn"].served == 1
    # The alias's own crt-list line asks for the certificate.
    assert (await call(port, "cn2.example.com", cert=clients["valid"])).status == 200
    assert (await call(port, "cn2.example.com", cert=clients["foreign"])).status == 400
    assert backends["cn"].served == 2


async def test_revocation_and_rotation_through_the_runtime_api(
    stack: Stack, ca: Authority, clients: dict[str, Client], tmp_path: Path
) -> None:
    await pods(stack, "crl", first=131)
    port = stack.https_port
    stack.put(
        ca_secret("ca", {"ca.crt": b64(ca.pem), "ca.crl": b64(revocation_list(ca, []))}),
        guarded("crl", "crl.example.com"),
    )
    await synced(stack, ["crl"])
    assert (await call(port, "crl.example.com", cert=clients["bob"])).status == 200
    reloads = (await stack.proc()).reloads
    # A fresh CRL in the same Secret: set/commit ssl crl-file, no reload.
    crl = revocation_list(ca, [clients["bob"].cert])
    stack.put(ca_secret("ca", {"ca.crt": b64(ca.pem), "ca.crl": b64(crl)}))
    outcome = await stack.sync()
    assert outcome.result is not None and not outcome.result.reloaded
    assert (await call(port, "crl.example.com", cert=clients["valid"])).status == 200
    assert (await call(port, "crl.example.com", cert=clients["bob"])).status == 400
    # A rotated CA bundle (old and new CA) in the same Secret: set/commit ssl ca-file.
    new_ca = authority("Rotated CA")
    newcomer = client(tmp_path, "carol", new_ca)
    assert (await call(port, "crl.example.com", cert=newcomer)).status == 400
    # (With a CRL, OpenSSL wants one from every CA of the chain.)
    crls = crl + revocation_list(new_ca, [])
    stack.put(ca_secret("ca", {"ca.crt": b64(ca.pem + new_ca.pem), "ca.crl": b64(crls)}))
    await stack.sync()
    assert (await call(port, "crl.example.com", cert=newcomer)).status == 200
    assert (await call(port, "crl.example.com", cert=clients["valid"])).status == 200
    assert (await call(port, "crl.example.com", cert=clients["bob"])).status == 400
    assert (await stack.proc()).reloads == reloads
    # What is on disk for the next reload is the new content too.
    stack.put(guarded("crl", "crl.example.com", **{P + "ssl-ciphers": "ECDHE+AESGCM"}))
    await stack.sync()
    assert (await stack.proc()).reloads == reloads + 1
    assert (await call(port, "crl.example.com", cert=newcomer)).status == 200
    assert (await call(port, "crl.example.com", cert=clients["bob"])).status == 400


@pytest.mark.parametrize(
    "secret",
    [
        None,
        {"tls.crt": "eA=="},  # no ca.crt
        {"ca.crt": b64(b"not a certificate")},
        {"ca.crt": "!!not base64"},
        "crl",  # a valid ca.crt with a broken ca.crl
        "foreign",  # another namespace's Secret
    ],
    ids=["missing", "no-ca", "not-pem", "not-base64", "broken-crl", "foreign-namespace"],
)
async def test_an_unusable_ca_fails_closed_while_other_hosts_serve(
    stack: Stack, ca: Authority, clients: dict[str, Client], secret: Any
) -> None:
    backends = await pods(stack, "guarded", "other", first=141)
    name = "ca"
    if secret == "crl":
        stack.put(ca_secret("ca", {"ca.crt": b64(ca.pem), "ca.crl": b64(b"garbage")}))
    elif secret == "foreign":
        stack.put(ca_secret("ca", {"ca.crt": b64(ca.pem)}, namespace="tenant-b"))
        name = "tenant-b/ca"
    elif secret is not None:
        stack.put(ca_secret("ca", secret))
    stack.put(
        ingress(
            "guarded",
            rule("app.example.com", path("/", "guarded")),
            annotations={N + "auth-tls-secret": name if "/" in name else f"default/{name}"},
        ),
        ingress("other", rule("other.example.com", path("/", "other"))),
    )
    outcome = await stack.sync()
    await synced(stack, ["other"])
    warned = [p for p in outcome.desired.problems if "auth-tls-secret" in p.field]
    assert warned, outcome.desired.problems
    assert any(p.event == "AccessDenied" for p in outcome.desired.problems)
    for cert in (clients["valid"], clients["foreign"], None):
        assert (await call(stack.https_port, "app.example.com", cert=cert)).status == 403
    assert backends["guarded"].served == 0
    assert (await call(stack.https_port, "other.example.com")).status == 200


async def test_sni_of_another_host_cannot_bypass_the_check(
    stack: Stack, ca: Authority, clients: dict[str, Client], tmp_path: Path
) -> None:
    other_ca = authority("Second CA")
    second = client(tmp_path, "eve", other_ca)
    backends = await pods(stack, "guarded", "open", "second", "wild", first=151)
    stack.put(
        ca_secret("ca", {"ca.crt": b64(ca.pem)}),
        ca_secret("ca2", {"ca.crt": b64(other_ca.pem)}),
        guarded("guarded", "guarded.example.com"),
        guarded("second", "second.example.com", secret="ca2"),
        ingress("open", rule("open.example.com", path("/", "open"))),
        # A wildcard host with rules of its own, guarded by the first CA.
        guarded("wild", "*.wild.example.com"),
    )
    await synced(stack, ["guarded", "open", "second", "wild"])
    port = stack.https_port
    assert (await call(port, "guarded.example.com", cert=clients["valid"])).status == 200
    served = backends["guarded"].served
    # The handshake chose an unguarded host's line (no certificate asked for).
    assert (await call(port, "guarded.example.com", "open.example.com")).status == 421
    # ... or another guarded host's, whose CA verified the certificate.
    answer = await call(port, "guarded.example.com", "second.example.com", second)
    assert answer.status == 421
    # No SNI at all: the default certificate, no CA.
    assert (await call(port, "guarded.example.com", None, clients["valid"])).status == 421
    # HAProxy looks the SNI up lowercased; with a trailing dot it finds no line (no CA).
    answer = await call(port, "guarded.example.com", "guarded.example.com.", clients["valid"])
    assert answer.status == 421
    assert (
        await call(port, "guarded.example.com", "GUARDED.example.com", clients["valid"])
    ).status == 200
    assert backends["guarded"].served == served + 1
    # The unguarded host is served whatever the SNI.
    assert (await call(port, "open.example.com", "guarded.example.com")).status == 200
    # Wildcards: the SNI a.wild.example.com chose the *.wild line (HAProxy's lookup).
    assert (await call(port, "a.wild.example.com", cert=clients["valid"])).status == 200
    assert (
        await call(port, "a.wild.example.com", "b.wild.example.com", clients["valid"])
    ).status == 200
    assert (
        await call(port, "a.wild.example.com", "open.example.com", clients["valid"])
    ).status == 421


async def test_a_guarded_host_under_its_teams_wildcard_presents_the_wildcard(
    stack: Stack, ca: Authority, clients: dict[str, Client]
) -> None:
    """A host with a client CA of its own gets a crt-list line of its own;
    under its team's wildcard certificate that line carries the wildcard
    (ingress-nginx's server block takes the certificate whose SAN matches),
    not the default certificate, and still asks for the client's."""
    backends = await pods(stack, "guarded", first=161)
    crt, key = make_cert("*.shop.example")
    stack.put(
        ca_secret("ca", {"ca.crt": b64(ca.pem)}),
        tls_secret("wild-tls", crt, key),
        ingress(
            "guarded",
            rule("a.shop.example", path("/", "guarded")),
            tls=[{"hosts": ["*.shop.example"], "secretName": "wild-tls"}],
            annotations={N + "auth-tls-secret": "default/ca"},
        ),
    )
    await synced(stack, ["guarded"])
    peer = await tls_handshake(stack.https_port, "a.shop.example")
    assert peer.common_name == "*.shop.example"
    assert (await call(stack.https_port, "a.shop.example", cert=clients["valid"])).status == 200
    assert (await call(stack.https_port, "a.shop.example", cert=clients["foreign"])).status == 400
    assert backends["guarded"].served == 1


async def test_tls_settings_changes_and_what_they_cost(
    stack: Stack, ca: Authority, clients: dict[str, Client]
) -> None:
    await pods(stack, "app", "plain", first=161)
    crt, key = secret_data("app.example.com")
    cipher = "ECDHE-ECDSA-AES128-GCM-SHA256"
    stack.put(
        tls_secret("app-tls", crt, key),
        ca_secret("ca", {"ca.crt": b64(ca.pem)}),
        ingress(
            "app",
            rule("app.example.com", path("/", "app")),
            tls=[{"hosts": ["app.example.com"], "secretName": "app-tls"}],
        ),
        ingress("plain", rule("plain.example.com", path("/", "plain"))),
    )
    await synced(stack, ["app", "plain"])
    port = stack.https_port
    assert (await call(port, "app.example.com")).status == 200
    reloads = (await stack.proc()).reloads

    async def cost(**annotations: str) -> int:
        before = (await stack.proc()).reloads
        stack.put(
            ingress(
                "app",
                rule("app.example.com", path("/", "app")),
                tls=[{"hosts": ["app.example.com"], "secretName": "app-tls"}],
                annotations=annotations,
            )
        )
        await stack.sync()
        return (await stack.proc()).reloads - before

    # A CA for the host: a crt-list line naming a new CA file, a new policy.
    assert await cost(**{N + "auth-tls-secret": "default/ca"}) == 1
    assert (await call(port, "app.example.com")).status == 400
    assert (await call(port, "app.example.com", cert=clients["valid"])).status == 200
    # The same again: nothing to do. Another verify mode: a new policy.
    assert await cost(**{N + "auth-tls-secret": "default/ca"}) == 0
    optional = {N + "auth-tls-secret": "default/ca", N + "auth-tls-verify-client": "optional"}
    assert await cost(**optional) == 1
    assert (await call(port, "app.example.com")).status == 200
    # Per-host ciphers (TLS 1.2): this host's line only.
    assert await cost(**{N + "auth-tls-secret": "default/ca", N + "ssl-ciphers": cipher}) == 1
    context_cipher = await negotiated(port, "app.example.com", clients["valid"])
    assert context_cipher == cipher
    assert await negotiated(port, "plain.example.com", None) != cipher
    # The server certificate renewed: still the runtime API, options kept.
    crt2, key2 = secret_data("app.example.com")
    stack.put(tls_secret("app-tls", crt2, key2))
    before = (await stack.proc()).reloads
    await stack.sync()
    assert (await stack.proc()).reloads == before
    assert (await call(port, "app.example.com")).status == 400
    assert (await call(port, "app.example.com", cert=clients["valid"])).status == 200
    # The certificate gets another host: its crt-list entries are replaced at
    # run time, the guarded host's with its options (the CA file stays loaded).
    stack.put(
        ingress(
            "app",
            rule("app.example.com", path("/", "app")),
            tls=[{"hosts": ["app.example.com", "www.app.example.com"], "secretName": "app-tls"}],
            annotations={N + "auth-tls-secret": "default/ca", N + "ssl-ciphers": cipher},
        )
    )
    before = (await stack.proc()).reloads
    await stack.sync()
    assert (await stack.proc()).reloads == before
    assert (await call(port, "app.example.com")).status == 400
    assert (await call(port, "app.example.com", cert=clients["valid"])).status == 200
    assert await negotiated(port, "app.example.com", clients["valid"]) == cipher
    # The ConfigMap's ciphers are the other hosts' default; the host keeps its own.
    stack.put(configmap({"ssl-ciphers": "ECDHE-ECDSA-AES256-GCM-SHA384"}))
    await stack.sync()
    assert await negotiated(port, "app.example.com", clients["valid"]) == cipher
    assert await negotiated(port, "plain.example.com", None) == "ECDHE-ECDSA-AES256-GCM-SHA384"
    assert (await stack.proc()).reloads > reloads


async def negotiated(port: int, host: str, cert: Client | None) -> str:
    """The TLS 1.2 cipher HAProxy chose for ``host`` (SNI)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None:
        context.load_cert_chain(cert.certfile, cert.keyfile)
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname=host)
    name = str(writer.get_extra_info("ssl_object").cipher()[0])
    writer.close()
    with contextlib.suppress(ssl.SSLError, ConnectionError):
        await writer.wait_closed()
    return name


def resumed_request(
    context: ssl.SSLContext, port: int, host: str, session: ssl.SSLSession | None
) -> tuple[int, ssl.SSLSession | None, bool]:
    """A blocking HTTPS request that offers ``session`` for resumption (asyncio cannot)."""
    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        context.wrap_socket(raw, server_hostname=host, session=session) as tls,
    ):
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
        return int(data.split()[1]), tls.session, tls.session_reused


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
async def test_a_session_resumed_under_another_sni_carries_no_certificate(
    stack: Stack, ca: Authority, tmp_path: Path, version: ssl.TLSVersion
) -> None:
    other_ca = authority("Second CA")
    second = client(tmp_path, "eve", other_ca)
    backends = await pods(stack, "guarded", "second", first=171)
    stack.put(
        ca_secret("ca", {"ca.crt": b64(ca.pem)}),
        ca_secret("ca2", {"ca.crt": b64(other_ca.pem)}),
        guarded("guarded", "guarded.example.com"),
        guarded("second", "second.example.com", secret="ca2"),
    )
    await synced(stack, ["guarded", "second"])
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = context.maximum_version = version
    context.load_cert_chain(second.certfile, second.keyfile)
    port = stack.https_port
    status, session, _ = await asyncio.to_thread(
        resumed_request, context, port, "second.example.com", None
    )
    assert status == 200
    # Offered to the guarded host: a TLS 1.3 resumption would keep eve's
    # certificate, verified with the second CA, under the guarded SNI.
    status, _, reused = await asyncio.to_thread(
        resumed_request, context, port, "guarded.example.com", session
    )
    assert not reused
    assert status == 400  # a full handshake, where eve's certificate fails
    assert backends["guarded"].served == 0


async def test_verify_depth_counts_the_intermediates_of_the_chain(
    stack: Stack, ca: Authority, tmp_path: Path
) -> None:
    """auth-tls-verify-depth as nginx's ssl_verify_depth: intermediates between
    the certificate and the CA (default 1). HAProxy verifies any depth, so the
    frontend counts the chain the client sent; a self-signed root in it is the
    trust anchor, not an intermediate."""
    first = authority("Tests Intermediate 1", ca)
    second = authority("Tests Intermediate 2", first)

    def chained(name: str, issuer: Authority, *links: Authority) -> Client:
        made = client(tmp_path, name, issuer)
        made.certfile.write_bytes(made.pem + b"".join(link.pem for link in links))
        return made

    direct = client(tmp_path, "direct", ca)
    one = chained("one", first, first)
    one_and_root = chained("one-and-root", first, first, ca)
    two = chained("two", second, second, first)
    backends = await pods(stack, "d1", "d2", "seen", first=121)
    stack.put(
        ca_secret("ca", {"ca.crt": b64(ca.pem)}),
        guarded("d1", "d1.example.com"),
        guarded("d2", "d2.example.com", **{N + "auth-tls-verify-depth": "2"}),
        guarded("seen", "seen.example.com", **{N + "auth-tls-verify-client": "optional_no_ca"}),
    )
    await synced(stack, ["d1", "d2", "seen"])
    port = stack.https_port
    expected = {
        "d1": {direct: 200, one: 200, one_and_root: 200, two: 400},
        "d2": {direct: 200, one: 200, one_and_root: 200, two: 200},
    }
    for name, cases in expected.items():
        for cert, status in cases.items():
            answer = await call(port, f"{name}.example.com", cert=cert)
            assert answer.status == status, (name, cert.certfile.name)
    # Too deep is a failed verification, as OpenSSL's "certificate chain too long".
    await call(port, "seen.example.com", cert=two)
    assert seen(backends["seen"])["ssl-client-verify"] == "FAILED:22"
    await call(port, "seen.example.com", cert=one)
    assert seen(backends["seen"])["ssl-client-verify"] == "SUCCESS"

    # A bundle holding the intermediate: chains may take it from there, so it
    # counts against the depth whether or not the client sends it (stricter).
    stack.put(ca_secret("ca", {"ca.crt": b64(ca.pem + first.pem)}))
    await synced(stack, ["d1", "d2", "seen"])
    assert (await call(port, "d1.example.com", cert=client(tmp_path, "bare", first))).status == 200
    assert (await call(port, "d1.example.com", cert=one)).status == 400
    assert (await call(port, "d2.example.com", cert=one)).status == 200
