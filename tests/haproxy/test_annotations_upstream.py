"""Upstream-side ingress-nginx annotations against a real HAProxy: backend TLS policy
(proxyssl.go), proxy_redirect and proxy_cookie_* rewrites of responses (proxy.go),
the Connection header sent upstream (connection.go), request buffering, and sticky
canaries (affinity.go / canary tests).
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from pathlib import Path

import aiohttp
import pytest

from tests.backends import Backend, free_port
from tests.haproxy.stack import Stack, wait_for
from tests.haproxy.test_annotations import NGINX, OURS, request
from tests.haproxy.test_canary_regex import main_and_canary, serve_both
from tests.haproxy.test_traffic import _ready, slice_for
from tests.kube import ingress, path, rule, service
from tests.unit.test_translate import make_cert

pytestmark = pytest.mark.haproxy


async def tls_pod(
    tmp_path: Path, host: str, port: int, *, version: ssl.TLSVersion, cipher: str
) -> Backend:
    """A pod that speaks TLS at exactly ``version``, offering only ``cipher`` (TLS 1.2)."""
    crt, key = make_cert("pod.internal")
    (tmp_path / "pod.crt").write_bytes(base64.b64decode(crt))
    (tmp_path / "pod.key").write_bytes(base64.b64decode(key))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "pod.crt", tmp_path / "pod.key")
    context.minimum_version = context.maximum_version = version
    context.set_ciphers(cipher)
    pod = Backend(f"tls-{host.rsplit('.', 1)[1]}", host, port)
    pod._server = await asyncio.start_server(pod._handle, pod.host, pod.port, ssl=context)
    return pod


async def test_proxy_ssl_ciphers_and_protocols_choose_what_the_pod_is_offered(
    stack: Stack, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """proxyssl.go: the pod accepts TLS 1.2 with one ECDSA cipher only; HAProxy
    reaches it only when the Ingress's protocols and ciphers include those."""
    port = free_port()
    accepted = "ECDHE-ECDSA-AES128-GCM-SHA256"  # the test certificate's key is P-256
    pod = await tls_pod(
        tmp_path, "127.0.0.91", port, version=ssl.TLSVersion.TLSv1_2, cipher=accepted
    )
    cases = {
        # host → (annotations, expected status)
        "ok.example.com": (
            {
                NGINX + "proxy-ssl-protocols": "TLSv1.2 TLSv1.3",
                NGINX + "proxy-ssl-ciphers": f"{accepted}:ECDHE-ECDSA-AES256-GCM-SHA384",
            },
            200,
        ),
        "tls13.example.com": ({NGINX + "proxy-ssl-protocols": "TLSv1.3"}, 503),
        "cipher.example.com": ({OURS + "proxy-ssl-ciphers": "ECDHE-ECDSA-AES256-GCM-SHA384"}, 503),
    }
    try:
        for index, (host, (annotations, _)) in enumerate(cases.items()):
            name = f"pod{index}"
            stack.put(
                service(name),
                slice_for(name, [pod]),
                ingress(
                    name,
                    rule(host, path("/", name)),
                    annotations={NGINX + "backend-protocol": "HTTPS", **annotations},
                ),
            )
        outcome = await stack.sync()
        assert outcome.result is not None and not outcome.desired.problems
        await wait_for(lambda: _ready(stack, "be_default_pod0_80", 1))
        for host, (_, status) in cases.items():
            got, _, body, _ = await request(session, stack, "/x", host)
            assert got == status, (host, got, body)
        _, _, body, _ = await request(session, stack, "/x", "ok.example.com")
        assert body == "tls-91 /x"
        # Only the one that could negotiate reached the pod.
        assert pod.served == 2
    finally:
        await pod.stop()


async def test_proxy_redirect_and_cookie_rewrites_apply_to_the_pods_responses(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    """proxy.go (proxy_redirect, proxy_cookie_domain, proxy_cookie_path): the pod's
    Location, Refresh and Set-Cookie rewritten; another Ingress's paths untouched;
    a change is a map update."""
    pod = await Backend(
        "web-92",
        "127.0.0.92",
        free_port(),
        headers=(
            ("Location", "http://internal.svc/app/x?q=1"),
            ("Refresh", "3; URL=http://internal.svc/app/y"),
            ("Set-Cookie", "a=1; Domain=.Internal.SVC; Path=/app/p; HttpOnly"),
            ("Set-Cookie", "b=2; path=/other; domain=else.example.com"),
        ),
    ).start()
    rewrite = ingress(
        "rewrite",
        rule("rw.example.com", path("/")),
        annotations={
            NGINX + "proxy-redirect-from": "http://internal.svc/app/",
            NGINX + "proxy-redirect-to": "https://public.example.com/",
            NGINX + "proxy-cookie-domain": "internal.svc public.example.com",
            OURS + "proxy-cookie-path": "/app/ /",
        },
    )
    stack.put(
        service("web"),
        slice_for("web", [pod]),
        rewrite,
        ingress("plain", rule("plain.example.com", path("/"))),
    )
    try:
        outcome = await stack.sync()
        assert outcome.result is not None and not outcome.desired.problems
        await wait_for(lambda: _ready(stack, "be_default_web_80", 1))
        status, headers, _, response = await request(session, stack, "/", "rw.example.com")
        assert status == 200
        assert headers["Location"] == "https://public.example.com/x?q=1"
        assert response.headers["Refresh"] == "3; URL=https://public.example.com/y"
        assert response.headers.getall("Set-Cookie") == [
            "a=1; Domain=.public.example.com; Path=/p; HttpOnly",
            "b=2; path=/other; domain=else.example.com",
        ]
        # Another Ingress on the same pods: the pod's own headers.
        _, headers, _, response = await request(session, stack, "/", "plain.example.com")
        assert headers["Location"] == "http://internal.svc/app/x?q=1"
        assert response.headers.getall("Set-Cookie")[0] == (
            "a=1; Domain=.Internal.SVC; Path=/app/p; HttpOnly"
        )

        # Text that HAProxy would read as a sample fetch or a comment stays text;
        # off turns a rewrite off. Map updates: no reload.
        reloads = (await stack.proc()).reloads
        rewrite["metadata"]["annotations"] = {
            NGINX + "proxy-redirect-from": "http://internal.svc/",
            NGINX + "proxy-redirect-to": "/%[src]\"#'",
            NGINX + "proxy-cookie-domain": "off",
        }
        stack.put(rewrite)
        outcome = await stack.sync()
        assert outcome.result is not None and not outcome.result.reloaded
        _, headers, _, response = await request(session, stack, "/", "rw.example.com")
        assert headers["Location"] == "/%[src]\"#'app/x?q=1"
        assert response.headers["Refresh"] == "3; URL=/%[src]\"#'app/y"
        assert response.headers.getall("Set-Cookie")[0] == (
            "a=1; Domain=.Internal.SVC; Path=/app/p; HttpOnly"
        )
        assert (await stack.proc()).reloads == reloads
    finally:
        await pod.stop()


async def test_connection_proxy_header_is_what_the_pod_receives(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    """connection.go: the Connection header sent upstream. HAProxy 2.6 speaks
    HTTP/1.1 to pods and drops the implicit keep-alive token; others reach the pod."""
    pod = await Backend("web-93", "127.0.0.93", free_port()).start()
    stack.put(
        service("web"),
        slice_for("web", [pod]),
        ingress(
            "ka",
            rule("ka.example.com", path("/")),
            annotations={NGINX + "connection-proxy-header": "keep-alive"},
        ),
        ingress(
            "tokens",
            rule("tokens.example.com", path("/")),
            annotations={OURS + "connection-proxy-header": "keep-alive, X-Trace"},
        ),
        ingress(
            "close",
            rule("close.example.com", path("/")),
            annotations={NGINX + "connection-proxy-header": "close"},
        ),
        ingress("plain", rule("plain.example.com", path("/"))),
    )
    try:
        outcome = await stack.sync()
        assert outcome.result is not None and not outcome.desired.problems
        await wait_for(lambda: _ready(stack, "be_default_web_80", 1))

        async def connection(host: str, **headers: str) -> str | None:
            pod.seen.clear()
            status, _, _, _ = await request(session, stack, "/", host, headers=headers)
            assert status == 200
            return dict(pod.seen[-1][1]).get("connection")

        assert await connection("plain.example.com") is None
        assert await connection("ka.example.com") is None  # HTTP/1.1: keep-alive is implicit
        assert await connection("tokens.example.com") == "X-Trace"
        assert await connection("close.example.com") == "close"
        # A client's own Connection is replaced, as nginx's proxy_set_header.
        assert await connection("tokens.example.com", Connection="close") == "X-Trace"
        # An upgrade keeps HAProxy's own handling.
        websocket = {
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13",
        }
        assert (await connection("close.example.com", **websocket) or "").lower() == "upgrade"
    finally:
        await pod.stop()


class BodyPod:
    """A pod that records, per request, how much of the body came with its first read."""

    def __init__(self, host: str, port: int) -> None:
        self.name, self.host, self.port = "body-pod", host, port
        self.first_reads: list[tuple[int, int]] = []  # (bytes in the first read, length)
        self._server: asyncio.Server | None = None

    async def start(self) -> BodyPod:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.decode("latin-1").split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                first = await reader.read(length) if length else b""
                self.first_reads.append((len(first), length))
                if len(first) < length:
                    await reader.readexactly(length - len(first))
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def slow_post(port: int, host: str, body: bytes, pause: float) -> bytes:
    """A POST whose body arrives in two halves, ``pause`` seconds apart."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body[: len(body) // 2]
    )
    await writer.drain()
    await asyncio.sleep(pause)
    writer.write(body[len(body) // 2 :])
    await writer.drain()
    status = await reader.readline()
    writer.close()
    return status


async def test_proxy_request_buffering_holds_the_body_until_it_is_whole(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    """ingress-nginx's default (on): the pod gets the request once its body is
    whole; off streams it; a change is a map update."""
    pod = await BodyPod("127.0.0.94", free_port()).start()
    streamed = ingress(
        "streamed",
        rule("stream.example.com", path("/")),
        annotations={NGINX + "proxy-request-buffering": "off"},
    )
    stack.put(
        service("web"),
        slice_for("web", [pod]),  # type: ignore[list-item]
        ingress("buffered", rule("buffer.example.com", path("/"))),
        streamed,
    )
    try:
        outcome = await stack.sync()
        assert outcome.result is not None and not outcome.desired.problems
        await wait_for(lambda: _ready(stack, "be_default_web_80", 1))
        body = b"x" * 1000
        assert await slow_post(stack.http_port, "buffer.example.com", body, 0.3) == (
            b"HTTP/1.1 200 OK\r\n"
        )
        assert await slow_post(stack.http_port, "stream.example.com", body, 0.3) == (
            b"HTTP/1.1 200 OK\r\n"
        )
        assert pod.first_reads == [(1000, 1000), (500, 1000)]
        # A request without a body is not held (answered well within the pause).
        status, _, _, _ = await request(session, stack, "/", "buffer.example.com")
        assert status == 200

        reloads = (await stack.proc()).reloads
        streamed["metadata"]["annotations"] = {NGINX + "proxy-request-buffering": "on"}
        stack.put(streamed)
        outcome = await stack.sync()
        assert outcome.result is not None and not outcome.result.reloaded
        pod.first_reads.clear()
        await slow_post(stack.http_port, "stream.example.com", body, 0.3)
        assert pod.first_reads == [(1000, 1000)]
        assert (await stack.proc()).reloads == reloads
    finally:
        await pod.stop()


async def test_affinity_canary_behavior_keeps_a_client_on_its_side(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    """affinity-canary-behavior sticky (ingress-nginx's default): a client sent to the
    canary, which has cookie affinity, stays there; legacy decides every request."""
    host = "sticky.example.com"
    objects = main_and_canary(
        {
            NGINX + "canary-weight": "50",
            NGINX + "affinity": "cookie",
            NGINX + "session-cookie-name": "SRV",
            NGINX + "session-cookie-max-age": "600",
        },
        host=host,
    )
    assert not await serve_both(stack, *objects)

    async def side(cookies: str = "") -> tuple[str, list[str]]:
        headers = {"Cookie": cookies} if cookies else {}
        status, _, body, response = await request(session, stack, "/", host, headers=headers)
        assert status == 200
        return body.split()[0].rsplit("-", 1)[0], response.headers.getall("Set-Cookie", [])

    # New clients are split by the weight; one sent to the canary is told so.
    seen: dict[str, list[str]] = {}
    for _ in range(40):
        answer, cookies = await side()
        seen.setdefault(answer, cookies)
        if answer == "web":
            assert not [c for c in cookies if c.startswith("SRV-canary=")]
    assert set(seen) == {"web", "web-canary"}
    decision = [c for c in seen["web-canary"] if c.startswith("SRV-canary=")]
    assert decision == ["SRV-canary=1; Path=/; Max-Age=600; HttpOnly"], seen["web-canary"]
    # Kept: every request of that client goes to the canary, whatever the weight.
    answers = {(await side("SRV-canary=1"))[0] for _ in range(30)}
    assert answers == {"web-canary"}
    # The main backend has no affinity: a "0" is not a side a client can keep.
    answers = {(await side("SRV-canary=0"))[0] for _ in range(30)}
    assert answers == {"web", "web-canary"}

    # legacy: decided on every request, no decision cookie; a map update.
    reloads = (await stack.proc()).reloads
    objects[1]["metadata"]["annotations"][NGINX + "affinity-canary-behavior"] = "legacy"
    stack.put(objects[1])
    outcome = await stack.sync()
    assert outcome.result is not None and not outcome.result.reloaded
    assert (await stack.proc()).reloads == reloads
    results = [await side("SRV-canary=1") for _ in range(30)]
    assert {answer for answer, _ in results} == {"web", "web-canary"}
    assert not [c for _, cookies in results for c in cookies if c.startswith("SRV-canary=")]


async def test_sticky_canary_keeps_main_clients_on_main_when_main_has_affinity(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    """As ingress-nginx's balancer: a request affinitized to the main backend stays
    there, even when the canary's weight becomes 100."""
    host = "mainsticky.example.com"
    objects = main_and_canary({NGINX + "canary-weight": "0"}, host=host)
    objects[0]["metadata"]["annotations"] = {NGINX + "affinity": "cookie"}
    assert not await serve_both(stack, *objects)
    status, _, body, response = await request(session, stack, "/", host)
    assert status == 200 and body.startswith("web-61 ")
    decision = [c for c in response.headers.getall("Set-Cookie") if "-canary=" in c]
    assert decision == ["INGRESSCOOKIE-canary=0; Path=/; HttpOnly"]

    objects[1]["metadata"]["annotations"][NGINX + "canary-weight"] = "100"
    stack.put(objects[1])
    await stack.sync()
    for _ in range(10):
        _, _, body, _ = await request(
            session, stack, "/", host, headers={"Cookie": "INGRESSCOOKIE-canary=0"}
        )
        assert body.startswith("web-61 ")
    _, _, body, _ = await request(session, stack, "/", host)
    assert body.startswith("web-canary-62 ")


async def test_conditional_samesite_none_leaves_it_out_for_browsers_that_reject_it(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    """session-cookie-conditional-samesite-none: ingress-nginx's user-agent list."""
    port = free_port()
    pods = [await Backend(f"web-{n}", f"127.0.0.{n}", port).start() for n in (95, 96)]
    stack.put(
        service("web"),
        slice_for("web", pods),
        ingress(
            "samesite",
            rule("samesite.example.com", path("/")),
            annotations={
                NGINX + "affinity": "cookie",
                NGINX + "session-cookie-name": "a.b",
                NGINX + "session-cookie-samesite": "None",
                NGINX + "session-cookie-conditional-samesite-none": "true",
            },
        ),
    )
    try:
        outcome = await stack.sync()
        assert outcome.result is not None and not outcome.desired.problems
        await wait_for(lambda: _ready(stack, "be_default_web_80", 2))

        async def attributes(agent: str) -> set[str]:
            _, _, _, response = await request(
                session, stack, "/", "samesite.example.com", headers={"User-Agent": agent}
            )
            (cookie,) = response.headers.getall("Set-Cookie")
            assert cookie.startswith("a.b=")
            return {part.strip().lower() for part in cookie.split(";")[1:]}

        modern = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"
        assert "samesite=none" in await attributes(modern)
        for old in (
            "Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 Chrome/66.0.3359.181 Safari/537.36",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 12_1 like Mac OS X) AppleWebKit/605.1.15",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_14_6) AppleWebKit/605.1.15 Safari/605.1.15",
        ):
            got = await attributes(old)
            assert "samesite=none" not in got and {"httponly", "path=/"} <= got, (old, got)
    finally:
        for pod in pods:
            await pod.stop()
