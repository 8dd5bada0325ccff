"""HSTS, https redirects and trailing slashes, from-to-www-redirect, server-alias,
enable-access-log, upstream-hash-by, service-upstream and WebSockets against a real
HAProxy, as ingress-nginx's e2e tests (test/e2e/annotations/*.go) expect them.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.backends import Backend, free_port
from tests.haproxy.conftest import tls_handshake
from tests.haproxy.stack import Stack, wait_for
from tests.haproxy.test_annotations import NGINX, OURS, request, serve
from tests.haproxy.test_traffic import _ready, slice_for, start_pods
from tests.kube import configmap, ingress, ingress_class, path, rule, service, tls_secret
from tests.unit.test_translate import make_cert

pytestmark = pytest.mark.haproxy

HSTS = "Strict-Transport-Security"


async def test_hsts_on_https_responses_of_tls_hosts(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    """ingress-nginx's hsts defaults: max-age one year, includeSubDomains, on TLS hosts only."""
    pods = await start_pods("web", 1, free_port(), first=81)
    crt, key = make_cert("secure.example.com")
    assert not await serve(
        stack,
        pods,
        tls_secret("secure-tls", crt, key),
        ingress(
            "secure",
            rule("secure.example.com", path("/")),
            tls=[{"hosts": ["secure.example.com"], "secretName": "secure-tls"}],
        ),
        ingress("plain", rule("plain.example.com", path("/"))),
    )
    status, headers, _, _ = await request(session, stack, "/", "secure.example.com", https=True)
    assert (status, headers[HSTS]) == (200, "max-age=31536000; includeSubDomains")
    # Plain HTTP gets the redirect, never HSTS; a host without TLS never gets it.
    status, headers, _, _ = await request(session, stack, "/", "secure.example.com")
    assert status == 308 and HSTS not in headers
    status, headers, _, _ = await request(session, stack, "/", "plain.example.com", https=True)
    assert status == 200 and HSTS not in headers

    stack.put(
        configmap(
            {"hsts-max-age": "600", "hsts-include-subdomains": "false", "hsts-preload": "true"}
        )
    )
    outcome = await stack.sync()
    assert outcome.result is not None and not outcome.desired.problems
    status, headers, _, _ = await request(session, stack, "/a", "secure.example.com", https=True)
    assert (status, headers[HSTS]) == (200, "max-age=600; preload")

    stack.put(configmap({"hsts": "false"}))
    await stack.sync()
    status, headers, _, _ = await request(session, stack, "/", "secure.example.com", https=True)
    assert status == 200 and HSTS not in headers


async def test_a_wildcards_tls_reaches_hosts_with_rules_of_its_own_namespace_only(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    """tenant-a serves *.shop.example with TLS; tenant-b serves b.shop.example
    without: b's plain HTTP is served (no 308), its HTTPS answers carry no
    HSTS and its handshake presents the default certificate, never tenant-a's,
    as ingress-nginx gives b's server block no certificate. A host of
    tenant-a's own namespace under the wildcard gets all three, and a name
    with no rules (served by the wildcard's) gets them from the wildcard.
    A tenant-b host appearing later is shielded as well (a reload)."""
    pods = await start_pods("web", 1, free_port(), first=86)
    crt, key = make_cert("*.shop.example")
    other = service("web", namespace="tenant-b"), slice_for("web", pods, namespace="tenant-b")
    assert not await serve(
        stack,
        pods,
        *other,
        tls_secret("wild-tls", crt, key),
        ingress(
            "wild",
            rule("*.shop.example", path("/")),
            rule("a.shop.example", path("/")),
            tls=[{"hosts": ["*.shop.example"], "secretName": "wild-tls"}],
        ),
        ingress("b", rule("b.shop.example", path("/")), namespace="tenant-b"),
    )
    status, headers, _, _ = await request(session, stack, "/", "b.shop.example")
    assert status == 200, headers
    status, headers, _, _ = await request(session, stack, "/", "b.shop.example", https=True)
    assert status == 200 and HSTS not in headers
    for own in ("a.shop.example", "c.shop.example"):
        status, headers, _, _ = await request(session, stack, "/", own)
        assert (status, headers.get("Location")) == (308, f"https://{own}"), own
        status, headers, _, _ = await request(session, stack, "/", own, https=True)
        assert status == 200 and HSTS in headers, own
        assert (await tls_handshake(stack.https_port, own)).common_name == "*.shop.example"
    default = "haproxy-ingress default certificate"
    assert (await tls_handshake(stack.https_port, "b.shop.example")).common_name == default

    stack.put(ingress("d", rule("d.shop.example", path("/")), namespace="tenant-b"))
    outcome = await stack.sync()
    assert outcome.result is not None and not outcome.desired.problems
    assert (await tls_handshake(stack.https_port, "d.shop.example")).common_name == default
    assert (await tls_handshake(stack.https_port, "e.shop.example")).common_name == (
        "*.shop.example"
    )


async def test_ssl_redirect_is_decided_per_route_and_acme_challenges_stay_plain(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    """ingress-nginx decides the https redirect per location: on a TLS host,
    another Ingress's paths with ssl-redirect "false" keep plain HTTP, and a
    path under no-tls-redirect-locations (/.well-known/acme-challenge, where
    cert-manager's HTTP-01 solver answers) is never redirected, even with
    force-ssl-redirect."""
    pods = await start_pods("web", 1, free_port(), first=87)
    crt, key = make_cert("shared.example.com")
    assert not await serve(
        stack,
        pods,
        tls_secret("shared-tls", crt, key),
        ingress(
            "site",
            rule("shared.example.com", path("/")),
            tls=[{"hosts": ["shared.example.com"], "secretName": "shared-tls"}],
        ),
        ingress(
            "plain",
            rule("shared.example.com", path("/health")),
            annotations={NGINX + "ssl-redirect": "false"},
        ),
        ingress(
            "solver",
            rule("shared.example.com", path("/.well-known/acme-challenge/token")),
            annotations={NGINX + "force-ssl-redirect": "true"},
        ),
    )
    status, headers, _, _ = await request(session, stack, "/", "shared.example.com")
    assert (status, headers.get("Location")) == (308, "https://shared.example.com"), headers
    for target in ("/health", "/.well-known/acme-challenge/token"):
        status, headers, _, _ = await request(session, stack, target, "shared.example.com")
        assert status == 200, (target, headers)


async def test_https_redirect_drops_a_trailing_slash_unless_preserved(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    """preservetrailingslash.go, and ingress-nginx's default (the slash is dropped)."""
    pods = await start_pods("web", 1, free_port(), first=82)
    crt, key = make_cert("slash.example.com")
    keep = ingress(
        "keep",
        rule("keep.example.com", path("/")),
        tls=[{"hosts": ["keep.example.com"], "secretName": "slash-tls"}],
        annotations={
            NGINX + "ssl-redirect": "true",
            NGINX + "preserve-trailing-slash": "true",
        },
    )
    assert not {
        e
        for e in await serve(
            stack,
            pods,
            tls_secret("slash-tls", crt, key),
            ingress(
                "drop",
                rule("slash.example.com", path("/")),
                tls=[{"hosts": ["slash.example.com"], "secretName": "slash-tls"}],
            ),
            keep,
            ingress(
                "force",
                rule("force.example.com", path("/")),
                annotations={NGINX + "force-ssl-redirect": "true"},
            ),
        )
        if e != "CertificateNotValidNow"
    }
    for host, target, location in (
        ("keep.example.com", "/", "https://keep.example.com/"),
        ("keep.example.com", "/a/", "https://keep.example.com/a/"),
        ("slash.example.com", "/", "https://slash.example.com"),
        ("slash.example.com", "/a/", "https://slash.example.com/a"),
        ("slash.example.com", "/a/?q=1", "https://slash.example.com/a/?q=1"),
        ("slash.example.com", "/a", "https://slash.example.com/a"),
        ("force.example.com", "/b/", "https://force.example.com/b"),
    ):
        status, headers, _, _ = await request(session, stack, target, host)
        assert (status, headers.get("Location")) == (308, location), (host, target)

    # A route option: changing it is a map update, no reload.
    reloads = (await stack.proc()).reloads
    keep["metadata"]["annotations"] = {NGINX + "preserve-trailing-slash": "false"}
    stack.put(keep)
    outcome = await stack.sync()
    assert outcome.result is not None and not outcome.result.reloaded
    status, headers, _, _ = await request(session, stack, "/a/", "keep.example.com")
    assert (status, headers["Location"]) == (308, "https://keep.example.com/a")
    assert (await stack.proc()).reloads == reloads


async def test_from_to_www_redirect_both_ways_never_over_another_ingress(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    """fromtowwwredirect.go: 308 to the Ingress's host, scheme, path and query kept."""
    pods = await start_pods("web", 1, free_port(), first=83)
    events = await serve(
        stack,
        pods,
        ingress(
            "bare",
            rule("fromtowwwredirect.bar.com", path("/")),
            annotations={NGINX + "from-to-www-redirect": "true"},
        ),
        ingress(
            "www",
            rule("www.other.com", path("/")),
            annotations={OURS + "from-to-www-redirect": "true"},
        ),
        # Another tenant serves www.taken.com: taken.com's annotation must not redirect it.
        ingress("owner", rule("www.taken.com", path("/"))),
        ingress(
            "taker",
            rule("taken.com", path("/")),
            created="2026-01-02T00:00:00Z",
            annotations={NGINX + "from-to-www-redirect": "true"},
        ),
    )
    assert events == {"Conflict"}
    status, headers, _, _ = await request(
        session, stack, "/foo?x=1", "www.fromtowwwredirect.bar.com"
    )
    assert (status, headers["Location"]) == (308, "http://fromtowwwredirect.bar.com/foo?x=1")
    status, headers, _, _ = await request(
        session, stack, "/", "www.fromtowwwredirect.bar.com", https=True
    )
    assert (status, headers["Location"]) == (308, "https://fromtowwwredirect.bar.com/")
    status, _, body, _ = await request(session, stack, "/foo", "fromtowwwredirect.bar.com")
    assert (status, body) == (200, "web-83 /foo")
    status, headers, _, _ = await request(session, stack, "/p", "other.com")
    assert (status, headers["Location"]) == (308, "http://www.other.com/p")
    status, _, body, _ = await request(session, stack, "/p", "www.taken.com")
    assert (status, body) == (200, "web-83 /p")


async def test_server_alias_serves_the_ingress_and_never_takes_another_host(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    """alias.go: the alias answers as the host; another tenant's host stays theirs."""
    pods = await start_pods("web", 2, free_port(), first=84)
    first, second = pods
    other_pods = [second]
    stack.put(service("other"))
    stack.put(slice_for("other", other_pods))
    aliased = ingress(
        "foo",
        rule("foo", path("/")),
        created="2026-01-02T00:00:00Z",
        annotations={NGINX + "server-alias": "bar, owned.example.com"},
    )
    events = await serve(
        stack,
        [first],
        ingress(
            "owner",
            rule("owned.example.com", path("/", "other")),
            namespace="default",
        ),
        aliased,
    )
    assert events == {"Conflict"}
    await wait_for(lambda: _ready(stack, "be_default_other_80", 1))
    for host in ("foo", "bar"):
        status, _, body, _ = await request(session, stack, "/x", host)
        assert (status, body) == (200, "web-84 /x"), host
    status, _, body, _ = await request(session, stack, "/x", "owned.example.com")
    assert (status, body) == (200, "web-85 /x")
    status, _, _, _ = await request(session, stack, "/x", "baz")
    assert status == 404

    # A new alias is a map update: no reload.
    reloads = (await stack.proc()).reloads
    aliased["metadata"]["annotations"] = {NGINX + "server-alias": "baz"}
    stack.put(aliased)
    outcome = await stack.sync()
    assert outcome.result is not None and not outcome.result.reloaded
    status, _, body, _ = await request(session, stack, "/y", "baz")
    assert (status, body) == (200, "web-84 /y")
    status, _, _, _ = await request(session, stack, "/y", "bar")
    assert status == 404
    assert (await stack.proc()).reloads == reloads


class _Syslog(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.lines.append(data.decode("latin-1"))


async def test_enable_access_log_false_silences_its_paths_only(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """log.go: enable-access-log "false" → no access log line for that Ingress's paths."""
    loop = asyncio.get_running_loop()
    syslog = _Syslog()
    port = free_port()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: syslog, local_addr=("127.0.0.1", port)
    )
    stack = Stack(tmp_path / "haproxy", log_target=f"127.0.0.1:{port}")
    stack.put(ingress_class(default=True))
    try:
        pods = await start_pods("web", 1, free_port(), first=86)
        assert not await serve(
            stack,
            pods,
            ingress("loud", rule("log.example.com", path("/loud"))),
            ingress(
                "quiet",
                rule("log.example.com", path("/quiet")),
                annotations={NGINX + "enable-access-log": "false"},
            ),
        )
        for target in ("/quiet/1", "/loud/1", "/quiet/2"):
            status, _, _, _ = await request(session, stack, target, "log.example.com")
            assert status == 200

        async def logged() -> bool:
            return any("/loud/1" in line for line in syslog.lines)

        await wait_for(logged)
        await asyncio.sleep(0.2)
        assert not any("/quiet/" in line for line in syslog.lines), syslog.lines
    finally:
        transport.close()
        await stack.close()


async def test_upstream_hash_by_keeps_a_key_on_one_pod(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    """upstreamhashby.go: the same $request_uri (or header) always reaches the same pod."""
    pods = await start_pods("web", 3, free_port(), first=87)
    assert not await serve(
        stack,
        pods,
        ingress(
            "hash",
            rule("hash.example.com", path("/")),
            annotations={NGINX + "upstream-hash-by": "$http_x_user"},
        ),
    )
    chosen: dict[str, set[str]] = {}
    for _ in range(4):
        for user in ("alice", "bob", "carol", "dave", "erin", "frank"):
            status, _, body, _ = await request(
                session, stack, "/", "hash.example.com", headers={"X-User": user}
            )
            assert status == 200
            chosen.setdefault(user, set()).add(body.split()[0])
    assert all(len(pods_seen) == 1 for pods_seen in chosen.values()), chosen
    # Different keys are spread: not every user on one pod.
    assert len(set().union(*chosen.values())) > 1, chosen


async def test_service_upstream_sends_to_the_cluster_ip(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    """serviceupstream.go: the backend is the Service's cluster IP, not its endpoints."""
    port = free_port()
    pods = await start_pods("web", 1, port, first=88)
    virtual = await Backend("cluster-ip", "127.0.0.89", port).start()
    svc = service("web", {"name": "http", "port": port})
    svc["spec"]["clusterIP"] = "127.0.0.89"
    stack.put(
        svc,
        slice_for("web", pods),
        ingress(
            "upstream",
            rule("upstream.example.com", path("/", port=port)),
            annotations={NGINX + "service-upstream": "true"},
        ),
    )
    outcome = await stack.sync()
    assert outcome.result is not None and not outcome.desired.problems
    await wait_for(lambda: _ready(stack, f"be_default_web_{port}", 1))
    try:
        for _ in range(3):
            status, _, body, _ = await request(session, stack, "/x", "upstream.example.com")
            assert (status, body) == (200, "cluster-ip /x")
        assert pods[0].served == 0
    finally:
        await virtual.stop()


async def test_websocket_through_haproxy_closes_after_the_read_timeout(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    """websocket.go: an upgraded connection works, and idles out after proxy-read-timeout."""
    port = free_port()

    async def echo(req: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(req)
        async for message in socket:
            await socket.send_str("echo " + message.data)
        return socket

    app = web.Application()
    app.router.add_get("/ws", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.90", port)
    await site.start()
    try:
        pod = Backend("ws-90", "127.0.0.90", port)
        assert not await serve(
            stack,
            [pod],
            ingress(
                "ws",
                rule("ws.example.com", path("/")),
                annotations={NGINX + "proxy-read-timeout": "1"},
            ),
        )
        async with session.ws_connect(
            f"http://127.0.0.1:{stack.http_port}/ws",
            headers={"Host": "ws.example.com"},
            autoping=False,
            heartbeat=None,
        ) as socket:
            await socket.send_str("hello")
            message = await asyncio.wait_for(socket.receive(), 5)
            assert message.data == "echo hello"
            # Idle past the tunnel timeout: HAProxy closes the connection.
            closed = await asyncio.wait_for(socket.receive(), 5)
            assert closed.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.ERROR,
            )
    finally:
        await runner.cleanup()


async def test_header_sets_from_configmaps_of_the_controller_namespace(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    """customheaders.go, and the ConfigMap's add-headers / proxy-set-headers: literal values,
    the route's headers over the global ones, a missing set answering 503; a change to a
    header set is a map update."""
    pods = await start_pods("web", 1, free_port(), first=91)
    web_pod = pods[0]
    route_set = configmap(
        {"My-Custom-Header": "42", "My-Custom-Header-Dollar": "$remote_addr %[src]"},
        name="custom-headers",
    )
    stack.put(
        route_set,
        configmap({"X-Global": "everyone", "My-Custom-Header": "global"}, name="response"),
        configmap({"X-To-Pod": "from the ingress"}, name="request"),
        configmap(
            {
                "add-headers": "haproxy-ingress/response",
                "proxy-set-headers": "haproxy-ingress/request",
            }
        ),
    )
    events = await serve(
        stack,
        pods,
        ingress(
            "custom",
            rule("custom-headers", path("/")),
            annotations={NGINX + "custom-headers": "haproxy-ingress/custom-headers"},
        ),
        ingress("plain", rule("plain-headers", path("/"))),
        ingress(
            "missing",
            rule("missing-headers", path("/")),
            annotations={NGINX + "custom-headers": "haproxy-ingress/nothing"},
        ),
    )
    assert events == {"Invalid"}
    status, _, _, response = await request(session, stack, "/", "custom-headers")
    assert status == 200
    assert response.headers["My-Custom-Header"] == "42"
    assert response.headers["My-Custom-Header-Dollar"] == "$remote_addr %[src]"
    assert response.headers["X-Global"] == "everyone"
    status, _, _, response = await request(session, stack, "/", "plain-headers")
    assert status == 200
    assert response.headers["My-Custom-Header"] == "global"
    assert "My-Custom-Header-Dollar" not in response.headers
    assert dict(web_pod.seen[-1][1])["x-to-pod"] == "from the ingress"
    status, _, body, _ = await request(session, stack, "/", "missing-headers")
    assert (status, body) == (503, "503 Service Unavailable")

    reloads = (await stack.proc()).reloads
    route_set["data"] = {"My-Custom-Header": "43"}
    stack.put(route_set)
    outcome = await stack.sync()
    assert outcome.result is not None and not outcome.result.reloaded
    status, _, _, response = await request(session, stack, "/", "custom-headers")
    assert response.headers["My-Custom-Header"] == "43"
    assert "My-Custom-Header-Dollar" not in response.headers
    assert (await stack.proc()).reloads == reloads


async def _app_server(host: str, port: int, handler: Any) -> web.AppRunner:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


async def test_custom_http_errors_and_default_backend(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    """customhttperrors.go, default_backend.go: listed statuses answered by the default
    backend with ingress-nginx's X-Code, X-Original-URI… headers; a Service without a
    usable pod answered by it with X-Code 503."""
    pod_port, error_port = free_port(), free_port()
    asked: list[dict[str, str]] = []

    async def pod(req: web.Request) -> web.Response:
        status = {"/missing": 404, "/boom": 500, "/teapot": 418}.get(req.path, 200)
        return web.Response(status=status, text=f"pod {req.path_qs}")

    async def errors(req: web.Request) -> web.Response:
        asked.append({k.lower(): v for k, v in req.headers.items()})
        code = int(req.headers.get("X-Code", "500"))
        return web.Response(status=code, text=f"error page {code}", content_type="text/html")

    runners = [
        await _app_server("127.0.0.92", pod_port, pod),
        await _app_server("127.0.0.93", error_port, errors),
    ]
    try:
        custom = ingress(
            "custom",
            rule("errors.example.com", path("/", port=pod_port)),
            annotations={
                NGINX + "custom-http-errors": "404, 500",
                NGINX + "default-backend": "errors",
            },
        )
        stack.put(
            service("web", {"name": "http", "port": pod_port}),
            slice_for("web", [Backend("pod", "127.0.0.92", pod_port)]),
            service("errors", {"name": "http", "port": error_port}),
            slice_for("errors", [Backend("errors", "127.0.0.93", error_port)]),
            service("gone", {"name": "http", "port": 80}),
            custom,
            ingress(
                "fallback",
                rule("fallback.example.com", path("/", "gone")),
                annotations={NGINX + "default-backend": "errors"},
            ),
        )
        outcome = await stack.sync()
        assert outcome.result is not None and not outcome.desired.problems
        await wait_for(lambda: _ready(stack, f"be_default_web_{pod_port}", 1))
        await wait_for(lambda: _ready(stack, f"be_default_errors_{error_port}", 1))

        status, headers, body, _ = await request(session, stack, "/ok", "errors.example.com")
        assert (status, body) == (200, "pod /ok")
        status, headers, body, _ = await request(
            session, stack, "/missing?q=1", "errors.example.com"
        )
        assert (status, body) == (404, "error page 404")
        assert response_type(headers).startswith("text/html"), headers
        sent = asked[-1]
        assert {k: sent[k] for k in sent if k.startswith("x-")} == {
            "x-code": "404",
            "x-format": "*/*",
            "x-original-uri": "/missing?q=1",
            "x-namespace": "default",
            "x-ingress-name": "custom",
            "x-service-name": "web",
            "x-service-port": str(pod_port),
        }
        status, _, body, _ = await request(session, stack, "/boom", "errors.example.com")
        assert (status, body) == (500, "error page 500")
        status, _, body, _ = await request(session, stack, "/teapot", "errors.example.com")
        assert (status, body) == (418, "pod /teapot")  # not listed: the pod's answer
        # The list is a map value: changing it costs no reload.
        reloads = (await stack.proc()).reloads
        custom["metadata"]["annotations"] = {
            NGINX + "custom-http-errors": "418",
            NGINX + "default-backend": "errors",
        }
        stack.put(custom)
        outcome = await stack.sync()
        assert outcome.result is not None and not outcome.result.reloaded
        status, _, body, _ = await request(session, stack, "/teapot", "errors.example.com")
        assert (status, body) == (418, "error page 418")
        status, _, body, _ = await request(session, stack, "/missing", "errors.example.com")
        assert (status, body) == (404, "pod /missing")

        # default_backend.go: no pod behind the route's Service → the default backend.
        status, _, body, _ = await request(session, stack, "/alma/armud", "fallback.example.com")
        assert (status, body) == (503, "error page 503")
        sent = asked[-1]
        assert (sent["x-code"], sent["x-service-name"], sent["x-ingress-name"]) == (
            "503",
            "gone",
            "fallback",
        )
        assert sent["x-original-uri"] == "/alma/armud"
        assert (await stack.proc()).reloads == reloads
    finally:
        for runner in runners:
            await runner.cleanup()


def response_type(headers: dict[str, str]) -> str:
    return next((v for k, v in headers.items() if k.lower() == "content-type"), "")


async def test_proxy_ssl_client_certificate_and_verification(
    stack: Stack, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """proxyssl.go: HAProxy presents the Secret's certificate to an HTTPS pod that requires
    one, and verifies the pod's against ca.crt and proxy-ssl-name; a wrong CA or name, or a
    missing Secret with verification on, answers 503 (fail closed)."""
    pod_crt, pod_key = make_cert("pod.internal")
    client_crt, client_key = make_cert("client.internal")
    for name, value in (
        ("pod.crt", pod_crt),
        ("pod.key", pod_key),
        ("client.crt", client_crt),
    ):
        (tmp_path / name).write_bytes(base64.b64decode(value))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "pod.crt", tmp_path / "pod.key")
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(tmp_path / "client.crt")
    port = free_port()
    pod = Backend("mtls-96", "127.0.0.96", port)
    pod._server = await asyncio.start_server(pod._handle, pod.host, pod.port, ssl=context)

    def secret(name: str, ca: str) -> dict[str, Any]:
        result = tls_secret(name, client_crt, client_key)
        result["data"]["ca.crt"] = ca
        return result

    def mtls(name: str, secret_name: str, ssl_name: str) -> dict[str, Any]:
        return ingress(
            name,
            rule(f"{name}.example.com", path("/", f"svc-{name}", port)),
            annotations={
                NGINX + "backend-protocol": "HTTPS",
                NGINX + "proxy-ssl-secret": f"default/{secret_name}",
                NGINX + "proxy-ssl-verify": "on",
                NGINX + "proxy-ssl-name": ssl_name,
                NGINX + "proxy-ssl-server-name": "on",
            },
        )

    try:
        objects: list[dict[str, Any]] = [
            secret("good-ca", pod_crt),
            secret("wrong-ca", client_crt),
            mtls("good", "good-ca", "pod.internal"),
            mtls("wrongca", "wrong-ca", "pod.internal"),
            mtls("wrongname", "good-ca", "other.internal"),
            mtls("nosecret", "absent", "pod.internal"),
        ]
        for name in ("good", "wrongca", "wrongname", "nosecret"):
            objects += [
                service(f"svc-{name}", {"name": "http", "port": port}),
                slice_for(f"svc-{name}", [pod]),
            ]
        stack.put(*objects)
        outcome = await stack.sync()
        assert outcome.result is not None
        assert {(p.source.name, p.event) for p in outcome.desired.problems} == {
            ("nosecret", "Rejected")
        }
        await wait_for(lambda: _ready(stack, f"be_default_svc-good_{port}", 1))
        status, _, body, _ = await request(session, stack, "/x", "good.example.com")
        assert (status, body) == (200, "mtls-96 /x")
        for host in ("wrongca", "wrongname", "nosecret"):
            status, _, _, _ = await request(session, stack, "/x", f"{host}.example.com")
            assert status == 503, host
    finally:
        await pod.stop()
