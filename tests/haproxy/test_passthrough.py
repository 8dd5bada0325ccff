"""ssl-passthrough through a real HAProxy: TLS servers as pods, SNI routing, no reloads.

The pods are TLS servers presenting their own certificates; a passthrough
host's client must see the pod's certificate (HAProxy never terminates),
while every other host on the same HTTPS port is still terminated by the
controller, with its routes, allow-lists and the client's own address.
Reload counts come from the master CLI's ``show proc``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from haproxy_ingress.haproxy.commands import parse_csv_stat
from haproxy_ingress.model import TranslateOptions
from haproxy_ingress.plan import AddServer
from tests.backends import Backend, free_port
from tests.certs import secret_data, self_signed
from tests.haproxy.stack import OPTIONS, Stack, wait_for
from tests.kube import (
    configmap,
    endpoint,
    endpoint_slice,
    ingress,
    ingress_class,
    path,
    rule,
    service,
    tls_secret,
)

pytestmark = pytest.mark.haproxy

PASSTHROUGH = "nginx.ingress.kubernetes.io/ssl-passthrough"
ALLOW = "haproxy-ingress.kopf.dev/allowlist-source-range"
DEFAULT_CN = "haproxy-ingress default certificate"


@dataclass
class TlsPod:
    """A pod that terminates TLS itself: its own certificate, answers who it is and who called."""

    name: str
    host: str
    port: int
    common_name: str
    directory: Path
    served: int = 0
    peers: list[str] = field(default_factory=list)
    _server: asyncio.Server | None = None

    async def start(self) -> TlsPod:
        cert, key = self_signed(self.common_name)
        pem = self.directory / f"{self.name}.pem"
        pem.write_bytes(cert + key)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pem)
        self._server = await asyncio.start_server(self._handle, self.host, self.port, ssl=context)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            peer = writer.get_extra_info("peername")[0]
            self.served += 1
            self.peers.append(peer)
            body = f"{self.name} peer={peer}".encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nConnection: close\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


@dataclass(frozen=True)
class Answer:
    common_name: str  # of the certificate the client was shown
    status: int
    body: str


async def tls_get(
    port: int,
    sni: str | None,
    host: str | None = None,
    *,
    source: str | None = None,
    headers: str = "",
    proxy: bytes = b"",
) -> Answer:
    """GET / over TLS to 127.0.0.1:port with ``sni`` (None: no SNI at all).

    ``proxy``: a PROXY protocol line sent before the TLS handshake, as a load
    balancer in front would.
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0) if source else None),
        10,
    )
    try:
        writer.write(proxy)
        await writer.drain()
        await asyncio.wait_for(writer.start_tls(context, server_hostname=sni or ""), 20)
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.write(
            f"GET / HTTP/1.1\r\nHost: {host or sni or 'none'}\r\n{headers}"
            "Connection: close\r\n\r\n".encode()
        )
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await writer.wait_closed()
    name = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    head, _, body = raw.decode("latin-1").partition("\r\n\r\n")
    return Answer(str(name[0].value), int(head.split()[1]), body)


def tls_service(name: str, namespace: str = "default") -> dict[str, object]:
    return service(name, {"name": "https", "port": 443}, namespace=namespace)


def tls_slice(name: str, pods: list[TlsPod], namespace: str = "default") -> dict[str, object]:
    return endpoint_slice(
        name,
        *(endpoint(p.host, pod=p.name) for p in pods),
        namespace=namespace,
        ports=[{"name": "https", "port": pods[0].port if pods else 1}],
    )


def http_slice(name: str, pods: list[Backend]) -> dict[str, object]:
    return endpoint_slice(
        name,
        *(endpoint(p.host, pod=p.name) for p in pods),
        ports=[{"name": "http", "port": pods[0].port}],
    )


def passthrough_ingress(
    name: str,
    host: str,
    svc: str,
    *,
    namespace: str = "default",
    created: str = "2026-01-01T00:00:00Z",
) -> dict[str, object]:
    return ingress(
        name,
        rule(host, path("/", svc, 443)),
        namespace=namespace,
        created=created,
        annotations={PASSTHROUGH: "true"},
    )


async def up(stack: Stack, backend: str, count: int = 1) -> bool:
    text = await stack.client.run("show", "stat", backend, "4", "-1")
    rows = [r for r in parse_csv_stat(text) if r["svname"].startswith("s")]
    return sum(r["status"].startswith("UP") for r in rows) >= count


async def sni_map(stack: Stack) -> dict[str, str]:
    text = await stack.client.run("show", "map", str(stack.paths.maps / "passthrough.map"))
    return dict(line.split()[1:3] for line in text.splitlines() if line.strip())


@pytest.fixture
async def pstack(tmp_path: Path) -> AsyncIterator[Stack]:
    """The pipeline on a real HAProxy with --enable-ssl-passthrough."""
    result = Stack(tmp_path / "haproxy", options=dataclasses.replace(OPTIONS, ssl_passthrough=True))
    result.put(ingress_class(default=True))
    yield result
    await result.close()


@pytest.fixture
async def pods(tmp_path: Path) -> AsyncIterator[list[TlsPod]]:
    started: list[TlsPod] = []
    yield started
    for pod in started:
        await pod.stop()


async def start_tls_pods(
    pods: list[TlsPod], tmp_path: Path, prefix: str, cn: str, *, first: int, count: int, port: int
) -> list[TlsPod]:
    new = [
        await TlsPod(f"{prefix}-{n}", f"127.0.0.{n}", port, cn, tmp_path).start()
        for n in range(first, first + count)
    ]
    pods.extend(new)
    return new


async def test_passthrough_host_is_not_terminated_and_others_are(
    pstack: Stack, pods: list[TlsPod], tmp_path: Path
) -> None:
    port = free_port()
    secure = await start_tls_pods(
        pods, tmp_path, "secure", "pt.example.com", first=41, count=1, port=port
    )
    web = await Backend("web-42", "127.0.0.42", free_port()).start()
    try:
        crt, key = secret_data("site.example.com")
        pstack.put(
            tls_service("secure"),
            tls_slice("secure", secure),
            service("web"),
            http_slice("web", [web]),
            tls_secret("site-tls", crt, key),
            passthrough_ingress("pt", "pt.example.com", "secure"),
            ingress(
                "site",
                rule("site.example.com", path("/", "web")),
                tls=[{"hosts": ["site.example.com"], "secretName": "site-tls"}],
                annotations={ALLOW: "127.0.0.50/32"},
            ),
        )
        outcome = await pstack.sync()
        assert not [p for p in outcome.desired.problems if p.source.name == "pt"]
        await wait_for(lambda: up(pstack, "be_passthrough_1"))
        await wait_for(lambda: up(pstack, "be_default_web_80"))

        # The passthrough host: the pod's own certificate, the pod's own answer,
        # whatever the SNI's case.
        for sni in ("pt.example.com", "PT.Example.COM"):
            answer = await tls_get(pstack.https_port, sni, source="127.0.0.50")
            assert (answer.common_name, answer.status) == ("pt.example.com", 200), answer
            assert answer.body.startswith("secure-41 "), answer
        assert secure[0].served == 2

        # Another host on the same port: terminated here, its route and its
        # allow-list applied to the client's own address (the PROXY hop).
        answer = await tls_get(pstack.https_port, "site.example.com", source="127.0.0.50")
        assert (answer.common_name, answer.status) == ("site.example.com", 200), answer
        assert answer.body.startswith("web-42 "), answer
        denied = await tls_get(pstack.https_port, "site.example.com", source="127.0.0.51")
        assert (denied.common_name, denied.status) == ("site.example.com", 403), denied
        _, headers = web.seen[-1]
        seen = dict(headers)
        assert seen["x-real-ip"] == "127.0.0.50"
        assert seen["x-forwarded-for"] == "127.0.0.50"
        assert seen["x-forwarded-proto"] == "https"
        assert seen["x-forwarded-port"] == str(pstack.https_port)

        # No SNI, or a name the map does not hold (a subdomain included): the
        # HTTPS frontend and its default certificate, never the pod.
        for sni in (None, "x.pt.example.com", "pt.example.com.evil"):
            answer = await tls_get(pstack.https_port, sni, "pt.example.com", source="127.0.0.50")
            assert answer.common_name == DEFAULT_CN, (sni, answer)
        assert secure[0].served == 2

        # Plain HTTP keeps working beside it.
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", pstack.http_port, local_addr=("127.0.0.50", 0)
        )
        writer.write(b"GET / HTTP/1.1\r\nHost: site.example.com\r\nConnection: close\r\n\r\n")
        status = (await reader.readline()).split()[1]
        writer.close()
        assert status == b"308"  # site.example.com is a TLS host: redirected to https

        # The internal socket is HAProxy's alone: mode 600 in its private run directory.
        socket_path = pstack.paths.https_socket
        assert socket_path.is_socket()
        assert socket_path.stat().st_mode & 0o777 == 0o600
        assert socket_path.parent.stat().st_mode & 0o077 == 0
    finally:
        await web.stop()


async def test_passthrough_hosts_and_pods_change_without_reload(
    pstack: Stack, pods: list[TlsPod], tmp_path: Path
) -> None:
    port = free_port()
    a1 = await start_tls_pods(pods, tmp_path, "a", "a.example.com", first=61, count=1, port=port)
    b1, b2, b3 = await start_tls_pods(
        pods, tmp_path, "b", "b.example.com", first=71, count=3, port=port
    )
    pstack.put(tls_service("a"), tls_slice("a", a1))
    first = await pstack.sync()
    assert first.result is not None and first.result.reloaded
    before = await pstack.proc()

    # A host appears: SNI map and a free pool backend's servers, no reload.
    pstack.put(passthrough_ingress("a", "a.example.com", "a"))
    outcome = await pstack.sync()
    assert outcome.result is not None and not outcome.result.reloaded, outcome.result
    assert await sni_map(pstack) == {"a.example.com": "be_passthrough_1"}
    await wait_for(lambda: up(pstack, "be_passthrough_1"))
    assert (await tls_get(pstack.https_port, "a.example.com")).body.startswith("a-61 ")

    # Another tenant's host, its Service and pods: no reload either.
    pstack.put(
        tls_service("b", namespace="team-b"),
        tls_slice("b", [b1], namespace="team-b"),
        passthrough_ingress("b", "b.example.com", "b", namespace="team-b"),
    )
    outcome = await pstack.sync()
    assert outcome.result is not None and not outcome.result.reloaded, outcome.result
    await wait_for(lambda: up(pstack, "be_passthrough_2"))
    assert (await tls_get(pstack.https_port, "b.example.com")).body.startswith("b-71 ")

    # Its pods roll (b-71 replaced by b-72 and b-73): runtime API only.
    pstack.put(tls_slice("b", [b2, b3], namespace="team-b"))
    outcome = await pstack.sync()
    assert outcome.result is not None and not outcome.result.reloaded, outcome.result
    await wait_for(lambda: up(pstack, "be_passthrough_2", 2))
    seen = {(await tls_get(pstack.https_port, "b.example.com")).body.split()[0] for _ in range(8)}
    assert seen == {"b-72", "b-73"}, seen

    # The host moves to another Service of its namespace: same pool backend.
    pstack.put(
        tls_service("b-next", namespace="team-b"),
        tls_slice("b-next", [b1], namespace="team-b"),
        passthrough_ingress("b", "b.example.com", "b-next", namespace="team-b"),
    )
    outcome = await pstack.sync()
    assert outcome.result is not None and not outcome.result.reloaded, outcome.result
    await wait_for(lambda: up(pstack, "be_passthrough_2", 1))
    for _ in range(4):
        assert (await tls_get(pstack.https_port, "b.example.com")).body.startswith("b-71 ")

    # The first host goes: its name falls back to the HTTPS frontend.
    pstack.delete("Ingress", "default", "a")
    outcome = await pstack.sync()
    assert outcome.result is not None and not outcome.result.reloaded, outcome.result
    assert await sni_map(pstack) == {"b.example.com": "be_passthrough_2"}
    served = a1[0].served
    assert (await tls_get(pstack.https_port, "a.example.com")).common_name == DEFAULT_CN
    assert a1[0].served == served
    assert (await pstack.proc()).reloads == before.reloads

    # A change that reloads (a new HTTP backend) keeps passthrough and the
    # internal socket working: the new worker takes both over.
    web = await Backend("web-81", "127.0.0.81", free_port()).start()
    try:
        pstack.put(
            service("web"),
            http_slice("web", [web]),
            ingress("site", rule("site.example.com", path("/", "web"))),
        )
        outcome = await pstack.sync()
        assert outcome.result is not None and outcome.result.reloaded
        await wait_for(lambda: up(pstack, "be_default_web_80"))
        await wait_for(lambda: up(pstack, "be_passthrough_2"))
        assert (await tls_get(pstack.https_port, "b.example.com")).common_name == "b.example.com"
        answer = await tls_get(pstack.https_port, "site.example.com")
        assert (answer.common_name, answer.status, answer.body.split()[0]) == (
            DEFAULT_CN,
            200,
            "web-81",
        )
    finally:
        await web.stop()


async def test_what_reloads_pool_exhaustion_and_slot_growth(
    pstack: Stack, pods: list[TlsPod], tmp_path: Path
) -> None:
    """Four pool backends exist from the start: the fifth host grows the pool
    (one reload); a host with more pods than its backend has slots gets
    servers added at run time (no reload)."""
    port = free_port()
    p1, p2, p3 = await start_tls_pods(
        pods, tmp_path, "p", "p.example.com", first=91, count=3, port=port
    )
    pstack.put(configmap({"server-slots": "2"}), tls_service("p"), tls_slice("p", [p1]))
    await pstack.sync()
    before = await pstack.proc()
    for n in range(1, 5):
        pstack.put(passthrough_ingress(f"p{n}", f"p{n}.example.com", "p"))
        outcome = await pstack.sync()
        assert outcome.result is not None and not outcome.result.reloaded, (n, outcome.result)
    assert (await pstack.proc()).reloads == before.reloads
    pstack.put(passthrough_ingress("p5", "p5.example.com", "p"))
    outcome = await pstack.sync()
    assert outcome.result is not None
    assert outcome.result.reload_reasons == (
        "passthrough pool exhausted: 5 hosts, 4 pool backends",
    ), outcome.result
    assert (await pstack.proc()).reloads == before.reloads + 1
    await wait_for(lambda: up(pstack, "be_passthrough_5"))
    for n in range(1, 6):
        answer = await tls_get(pstack.https_port, f"p{n}.example.com")
        assert answer.common_name == "p.example.com", (n, answer)

    # Two pods fit the two slots of every pool backend; the third is added.
    pstack.put(tls_slice("p", [p1, p2]))
    outcome = await pstack.sync()
    assert outcome.result is not None and not outcome.result.reloaded, outcome.result
    pstack.put(tls_slice("p", [p1, p2, p3]))
    outcome = await pstack.sync()
    assert outcome.result is not None and not outcome.result.reloaded, outcome.result
    assert sum(isinstance(op, AddServer) for op in outcome.plan.operations) == 5
    assert (await pstack.proc()).reloads == before.reloads + 1
    await wait_for(lambda: up(pstack, "be_passthrough_1", 3))
    names = {(await tls_get(pstack.https_port, "p1.example.com")).body.split()[0] for _ in range(9)}
    assert names == {"p-91", "p-92", "p-93"}, names


async def test_conflicts_and_access_rules_keep_tls_terminated(
    pstack: Stack, pods: list[TlsPod], tmp_path: Path
) -> None:
    port = free_port()
    pod = (
        await start_tls_pods(
            pods, tmp_path, "evil", "site.example.com", first=101, count=1, port=port
        )
    )[0]
    web = await Backend("web-102", "127.0.0.102", free_port()).start()
    try:
        pstack.put(
            service("web"),
            http_slice("web", [web]),
            ingress(
                "site", rule("site.example.com", path("/", "web")), created="2026-01-01T00:00:00Z"
            ),
            # Another tenant, newer, claims the host for passthrough: refused.
            tls_service("evil", namespace="team-x"),
            tls_slice("evil", [pod], namespace="team-x"),
            passthrough_ingress(
                "grab",
                "site.example.com",
                "evil",
                namespace="team-x",
                created="2026-02-01T00:00:00Z",
            ),
            # An Ingress with an allow-list cannot have its TLS passed by.
            ingress(
                "guarded",
                rule("guarded.example.com", path("/", "web")),
                annotations={PASSTHROUGH: "true", ALLOW: "127.0.0.0/8"},
            ),
        )
        outcome = await pstack.sync()
        events = {(p.source.name, p.event) for p in outcome.desired.problems}
        assert ("grab", "Conflict") in events
        assert ("guarded", "Unsupported") in events
        assert outcome.desired.passthrough == ()
        await wait_for(lambda: up(pstack, "be_default_web_80"))
        for host in ("site.example.com", "guarded.example.com"):
            answer = await tls_get(pstack.https_port, host)
            assert (answer.common_name, answer.status) == (DEFAULT_CN, 200), (host, answer)
            assert answer.body.startswith("web-102 ")
        assert pod.served == 0
    finally:
        await web.stop()


async def test_configmap_lists_hold_for_passthrough_hosts(
    pstack: Stack, pods: list[TlsPod], tmp_path: Path
) -> None:
    port = free_port()
    pod = (
        await start_tls_pods(pods, tmp_path, "c", "c.example.com", first=111, count=1, port=port)
    )[0]
    pstack.put(
        configmap(
            {"allowlist-source-range": "127.0.0.0/8", "denylist-source-range": "127.0.0.66/32"}
        ),
        tls_service("c"),
        tls_slice("c", [pod]),
        passthrough_ingress("c", "c.example.com", "c"),
    )
    await pstack.sync()
    await wait_for(lambda: up(pstack, "be_passthrough_1"))
    assert (await tls_get(pstack.https_port, "c.example.com", source="127.0.0.65")).status == 200
    with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
        await tls_get(pstack.https_port, "c.example.com", source="127.0.0.66")
    pstack.put(configmap({"allowlist-source-range": "127.0.0.65/32"}))
    await pstack.sync()
    assert (await tls_get(pstack.https_port, "c.example.com", source="127.0.0.65")).status == 200
    with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
        await tls_get(pstack.https_port, "c.example.com", source="127.0.0.67")
    assert pod.peers and set(pod.peers) == {"127.0.0.1"}  # HAProxy's connections, not the client's


async def test_flag_off_warns_and_changes_nothing(
    stack: Stack, pods: list[TlsPod], tmp_path: Path
) -> None:
    port = free_port()
    pod = (
        await start_tls_pods(pods, tmp_path, "o", "o.example.com", first=121, count=1, port=port)
    )[0]
    stack.put(
        tls_service("o"),
        tls_slice("o", [pod]),
        ingress("o", rule("o.example.com", path("/", "o", 443))),
    )
    await stack.sync()
    plain = stack.paths.config.read_bytes()
    before = await stack.proc()
    stack.put(passthrough_ingress("o", "o.example.com", "o"))
    outcome = await stack.sync()
    warnings = [p for p in outcome.desired.problems if p.source.name == "o"]
    assert [(p.field, p.event) for p in warnings] == [
        (f"metadata.annotations[{PASSTHROUGH}]", "Unsupported")
    ]
    assert "--enable-ssl-passthrough" in warnings[0].reason
    assert outcome.result is None  # nothing to do: the same configuration
    assert stack.paths.config.read_bytes() == plain
    assert (await stack.proc()).reloads == before.reloads
    answer = await tls_get(stack.https_port, "o.example.com")
    assert answer.common_name == DEFAULT_CN
    assert pod.served == 0


def test_options_default_is_off() -> None:
    assert TranslateOptions().ssl_passthrough is False


async def test_client_address_through_the_internal_hop(
    pstack: Stack, pods: list[TlsPod], tmp_path: Path
) -> None:
    """use-proxy-protocol and use-forwarded-headers see the client, never the hop.

    Behind the SNI frontend, fe_http's connections come from HAProxy itself
    over a unix socket; the PROXY header of that hop carries the address
    fe_https saw (the client's, or the load balancer's PROXY header's), so
    the trust rules judge the same address as without passthrough.
    """
    port = free_port()
    pod = (
        await start_tls_pods(pods, tmp_path, "q", "q.example.com", first=131, count=1, port=port)
    )[0]
    web = await Backend("web-132", "127.0.0.132", free_port()).start()
    try:
        pstack.put(
            configmap({"use-proxy-protocol": "true"}),
            tls_service("q"),
            tls_slice("q", [pod]),
            passthrough_ingress("q", "q.example.com", "q"),
            service("web"),
            http_slice("web", [web]),
            ingress(
                "site",
                rule("site.example.com", path("/", "web")),
                annotations={ALLOW: "203.0.113.0/24"},
            ),
        )
        await pstack.sync()
        await wait_for(lambda: up(pstack, "be_default_web_80"))
        await wait_for(lambda: up(pstack, "be_passthrough_1"))
        line = b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 443\r\n"
        answer = await tls_get(pstack.https_port, "site.example.com", proxy=line)
        assert (answer.status, answer.body.split()[0]) == (200, "web-132"), answer
        seen = dict(web.seen[-1][1])
        assert (seen["x-real-ip"], seen["x-forwarded-port"]) == ("203.0.113.7", "443")
        other = b"PROXY TCP4 198.51.100.9 127.0.0.1 40000 443\r\n"
        assert (await tls_get(pstack.https_port, "site.example.com", proxy=other)).status == 403
        passed = await tls_get(pstack.https_port, "q.example.com", proxy=line)
        assert (passed.common_name, passed.status) == ("q.example.com", 200)

        # X-Forwarded-For is trusted from proxy-real-ip-cidr only: judged on the
        # client's address, which the hop must not replace by its own.
        pstack.put(
            configmap({"use-forwarded-headers": "true", "proxy-real-ip-cidr": "127.0.0.70/32"}),
            ingress(
                "site",
                rule("site.example.com", path("/", "web")),
                annotations={ALLOW: "203.0.113.0/24, 127.0.0.71/32"},
            ),
        )
        await pstack.sync()
        await wait_for(lambda: up(pstack, "be_default_web_80"))
        xff = "X-Forwarded-For: 203.0.113.8\r\n"
        trusted = await tls_get(
            pstack.https_port, "site.example.com", source="127.0.0.70", headers=xff
        )
        assert trusted.status == 200
        assert dict(web.seen[-1][1])["x-real-ip"] == "203.0.113.8"
        spoofed = await tls_get(
            pstack.https_port, "site.example.com", source="127.0.0.71", headers=xff
        )
        assert spoofed.status == 200
        seen = dict(web.seen[-1][1])
        assert (seen["x-real-ip"], seen["x-forwarded-for"]) == ("127.0.0.71", "127.0.0.71")
        refused = await tls_get(
            pstack.https_port, "site.example.com", source="127.0.0.72", headers=xff
        )
        assert refused.status == 403
    finally:
        await web.stop()


async def test_a_client_cannot_forge_the_internal_proxy_header(
    pstack: Stack, pods: list[TlsPod], tmp_path: Path
) -> None:
    """Without use-proxy-protocol, a PROXY line from a client is not an address.

    fe_https puts its own PROXY header in front of whatever the client sent;
    fe_http reads that one only, so a forged line is TLS garbage to it: the
    handshake fails and the allow-list never sees the forged address.
    """
    web = await Backend("web-142", "127.0.0.142", free_port()).start()
    try:
        pstack.put(
            service("web"),
            http_slice("web", [web]),
            ingress(
                "site",
                rule("site.example.com", path("/", "web")),
                annotations={ALLOW: "203.0.113.0/24"},
            ),
        )
        await pstack.sync()
        await wait_for(lambda: up(pstack, "be_default_web_80"))
        forged = b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 443\r\n"
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
            await tls_get(pstack.https_port, "site.example.com", proxy=forged)
        assert (await tls_get(pstack.https_port, "site.example.com")).status == 403
        assert web.served == 0
    finally:
        await web.stop()
