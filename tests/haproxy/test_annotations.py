"""ingress-nginx annotations against a real HAProxy, as ingress-nginx's e2e tests expect.

Each case mirrors test/e2e/annotations/*.go of kubernetes/ingress-nginx: the
status, Location, headers and which pod answered. Both prefixes are used:
ingress-nginx's (what migrating users have) and ours.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.backends import Backend, free_port
from tests.haproxy.stack import Stack, wait_for
from tests.haproxy.test_traffic import _ready, slice_for, start_pods
from tests.kube import endpoint, endpoint_slice, ingress, path, rule, service
from tests.unit.test_translate import make_cert

pytestmark = pytest.mark.haproxy

NGINX = "nginx.ingress.kubernetes.io/"
OURS = "haproxy-ingress.kopf.dev/"


async def request(
    session: aiohttp.ClientSession,
    stack: Stack,
    target: str,
    host: str,
    *,
    method: str = "GET",
    https: bool = False,
    **kwargs: Any,
) -> tuple[int, dict[str, str], str, aiohttp.ClientResponse]:
    port = stack.https_port if https else stack.http_port
    scheme = "https" if https else "http"
    async with session.request(
        method,
        f"{scheme}://127.0.0.1:{port}{target}",
        headers={"Host": host, **kwargs.pop("headers", {})},
        allow_redirects=False,
        ssl=False,
        server_hostname=host if https else None,
        **kwargs,
    ) as response:
        return response.status, dict(response.headers), await response.text(), response


async def serve(stack: Stack, pods: list[Backend], *objects: dict[str, Any]) -> set[str]:
    """Apply; the Event reasons of the problems (none may reject unless the test says)."""
    stack.put(service("web"), slice_for("web", pods), *objects)
    outcome = await stack.sync()
    assert outcome.result is not None
    await wait_for(lambda: _ready(stack, "be_default_web_80", len(pods)))
    return {p.event for p in outcome.desired.problems}


async def test_redirects_rewrites_and_headers(stack: Stack, session: aiohttp.ClientSession) -> None:
    port = free_port()
    pods = await start_pods("web", 1, port, first=41)
    assert not await serve(
        stack,
        pods,
        ingress(
            "rewrite",
            rule("rewrite.foo.com", path("/something")),
            annotations={NGINX + "rewrite-target": "/"},
        ),
        ingress(
            "approot",
            rule("approot.bar.com", path("/")),
            annotations={NGINX + "app-root": "/foo"},
        ),
        ingress(
            "permanent",
            rule("permanent.example.com", path("/")),
            annotations={NGINX + "permanent-redirect": "https://www.google.com/a?b=c;d"},
        ),
        ingress(
            "permanent308",
            rule("p308.example.com", path("/")),
            annotations={
                NGINX + "permanent-redirect": "https://www.google.com",
                NGINX + "permanent-redirect-code": "308",
            },
        ),
        ingress(
            "temporal",
            rule("temporal.example.com", path("/")),
            annotations={OURS + "temporal-redirect": "/elsewhere"},
        ),
        ingress(
            "forcessl",
            rule("forcessl.example.com", path("/")),
            annotations={NGINX + "force-ssl-redirect": "true"},
        ),
        ingress(
            "vhost",
            rule("vhost.example.com", path("/")),
            annotations={
                NGINX + "upstream-vhost": "internal.svc.local",
                NGINX + "x-forwarded-prefix": "/api",
            },
        ),
        ingress(
            "body",
            rule("body.example.com", path("/")),
            annotations={NGINX + "proxy-body-size": "1k"},
        ),
    )
    web = pods[0]

    # rewrite.go: the whole path is replaced; the query is kept.
    status, _, body, _ = await request(session, stack, "/something", "rewrite.foo.com")
    assert (status, body) == (200, "web-41 /")
    status, _, body, _ = await request(session, stack, "/something/x?a=1", "rewrite.foo.com")
    assert (status, body) == (200, "web-41 /?a=1")

    # approot.go: "/" → 302 to the app root on the same host and scheme.
    status, headers, _, _ = await request(session, stack, "/", "approot.bar.com")
    assert (status, headers["Location"]) == (302, "http://approot.bar.com/foo")
    status, _, body, _ = await request(session, stack, "/foo", "approot.bar.com")
    assert (status, body) == (200, "web-41 /foo")

    # redirect.go: every path, the URL as written, the default and a custom code.
    status, headers, _, _ = await request(session, stack, "/any/path", "permanent.example.com")
    assert (status, headers["Location"]) == (301, "https://www.google.com/a?b=c;d")
    status, headers, _, _ = await request(session, stack, "/", "p308.example.com")
    assert (status, headers["Location"]) == (308, "https://www.google.com")
    status, headers, _, _ = await request(session, stack, "/", "temporal.example.com")
    assert (status, headers["Location"]) == (302, "/elsewhere")

    # sslredirect.go (force-ssl-redirect): plain HTTP without spec.tls → 308 to https.
    status, headers, _, _ = await request(session, stack, "/x?y=1", "forcessl.example.com")
    assert (status, headers["Location"]) == (308, "https://forcessl.example.com/x?y=1")
    status, _, body, _ = await request(session, stack, "/x", "forcessl.example.com", https=True)
    assert (status, body) == (200, "web-41 /x")

    # upstreamvhost.go, xforwardedprefix.go: what the pod receives.
    web.seen.clear()
    status, _, _, _ = await request(session, stack, "/v", "vhost.example.com")
    assert status == 200
    seen = dict(web.seen[-1][1])
    assert seen["host"] == "internal.svc.local"
    assert seen["x-forwarded-prefix"] == "/api"
    assert seen["x-forwarded-host"] == "vhost.example.com"

    # proxybodysize.go: a body over the limit → 413, under it → served.
    status, _, _, _ = await request(
        session, stack, "/", "body.example.com", method="POST", data=b"x" * 2000
    )
    assert status == 413
    status, _, body, _ = await request(
        session, stack, "/", "body.example.com", method="POST", data=b"x" * 500
    )
    assert (status, body) == (200, "web-41 /")


async def test_route_options_change_without_reload_and_stay_on_their_ingress(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    """Two tenants on one host: one's redirect and rewrite never reach the other's paths."""
    port = free_port()
    pods = await start_pods("web", 1, port, first=42)
    tenant_a = ingress(
        "a",
        rule("shared.example.com", path("/a")),
        namespace="default",
        annotations={NGINX + "permanent-redirect": "https://a.example.net/"},
    )
    tenant_b = ingress(
        "b",
        rule("shared.example.com", path("/b")),
        annotations={NGINX + "rewrite-target": "/rewritten"},
    )
    assert not await serve(stack, pods, tenant_a, tenant_b)
    status, headers, _, _ = await request(session, stack, "/a", "shared.example.com")
    assert (status, headers["Location"]) == (301, "https://a.example.net/")
    status, _, body, _ = await request(session, stack, "/b/x", "shared.example.com")
    assert (status, body) == (200, "web-42 /rewritten")
    status, _, body, _ = await request(session, stack, "/c", "shared.example.com")
    assert status == 404

    reloads = (await stack.proc()).reloads
    tenant_a["metadata"]["annotations"] = {NGINX + "permanent-redirect": "https://b.example.net/"}
    tenant_b["metadata"]["annotations"] = {NGINX + "rewrite-target": "/other"}
    stack.put(tenant_a, tenant_b)
    outcome = await stack.sync()
    assert outcome.result is not None and not outcome.result.reloaded
    status, headers, _, _ = await request(session, stack, "/a", "shared.example.com")
    assert (status, headers["Location"]) == (301, "https://b.example.net/")
    status, _, body, _ = await request(session, stack, "/b", "shared.example.com")
    assert (status, body) == (200, "web-42 /other")
    assert (await stack.proc()).reloads == reloads


async def test_proxy_read_timeout_answers_504(stack: Stack, session: aiohttp.ClientSession) -> None:
    port = free_port()
    slow = Backend("slow-43", "127.0.0.43", port, delay=2.0)
    await slow.start()
    await serve(
        stack,
        [slow],
        ingress(
            "slow",
            rule("slow.example.com", path("/")),
            annotations={
                NGINX + "proxy-read-timeout": "1",
                NGINX + "proxy-next-upstream": "off",
            },
        ),
    )
    status, _, _, _ = await request(session, stack, "/", "slow.example.com")
    assert status == 504


async def test_cookie_affinity_sticks_across_reloads_and_leaves_a_gone_pod(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    port = free_port()
    pods = await start_pods("web", 3, port, first=51)
    sticky = ingress(
        "sticky",
        rule("sticky.example.com", path("/")),
        annotations={
            NGINX + "affinity": "cookie",
            NGINX + "session-cookie-name": "SERVERID",
            NGINX + "session-cookie-samesite": "Lax",
            NGINX + "session-cookie-max-age": "172800",
            NGINX + "load-balance": "round_robin",
        },
    )
    assert not await serve(stack, pods, sticky)
    status, headers, body, response = await request(session, stack, "/", "sticky.example.com")
    assert status == 200
    cookie = response.headers.getall("Set-Cookie")
    assert len(cookie) == 1 and cookie[0].startswith("SERVERID="), cookie
    attributes = [a.strip().lower() for a in cookie[0].split(";")]
    assert {"httponly", "samesite=lax", "max-age=172800", "path=/"} <= set(attributes)
    value = cookie[0].split(";")[0].split("=", 1)[1]
    pod = body.split()[0]
    for _ in range(6):
        status, headers, body, _ = await request(
            session, stack, "/", "sticky.example.com", headers={"Cookie": f"SERVERID={value}"}
        )
        assert (status, body.split()[0]) == (200, pod)
        assert "Set-Cookie" not in headers

    # A reload (another Ingress, a new backend) keeps the client on its pod.
    stack.put(service("other"), ingress("other", rule("other.example.com", path("/", "other"))))
    outcome = await stack.sync()
    assert outcome.result is not None and outcome.result.reloaded
    status, _, body, _ = await request(
        session, stack, "/", "sticky.example.com", headers={"Cookie": f"SERVERID={value}"}
    )
    assert (status, body.split()[0]) == (200, pod)

    # Its pod gone: the client is sent to another and gets a new cookie.
    remaining = [p for p in pods if p.name != pod]
    stack.put(
        endpoint_slice(
            "web",
            *(endpoint(p.host, pod=p.name) for p in remaining),
            ports=[{"name": "http", "port": port}],
        )
    )
    await stack.sync()
    status, headers, body, _ = await request(
        session, stack, "/", "sticky.example.com", headers={"Cookie": f"SERVERID={value}"}
    )
    assert status == 200 and body.split()[0] != pod
    assert headers["Set-Cookie"].startswith("SERVERID=")


async def test_unhonoured_access_annotation_fails_closed(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    port = free_port()
    pods = await start_pods("web", 1, port, first=61)
    events = await serve(
        stack,
        pods,
        ingress("open", rule("guard.example.com", path("/"))),
        ingress(
            "guarded",
            rule("guard.example.com", path("/admin")),
            created="2026-01-02T00:00:00Z",
            annotations={NGINX + "auth-url": "http://auth.example.com/check"},
        ),
        ingress(
            "snippet",
            rule("snippet.example.com", path("/")),
            # Outside the interpreted subset (proxy_buffering): the whole
            # snippet is left unapplied, its header included.
            annotations={
                NGINX + "configuration-snippet": 'more_set_headers "X-A: b"; proxy_buffering off;'
            },
        ),
    )
    assert events == {"Rejected", "AccessDenied", "Refused"}
    status, _, _, _ = await request(session, stack, "/admin/x", "guard.example.com")
    assert status == 403
    status, _, body, _ = await request(session, stack, "/public", "guard.example.com")
    assert (status, body) == (200, "web-61 /public")
    # A snippet is never pasted: the Ingress is served without it.
    status, headers, _, _ = await request(session, stack, "/", "snippet.example.com")
    assert status == 200 and "x-a" not in {name.lower() for name in headers}


async def test_backend_protocol_https_speaks_tls_to_the_pod(
    stack: Stack, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """backendprotocol.go: HTTPS → the pod is reached over TLS (not verified, as nginx)."""
    crt, key = make_cert("pod.internal")
    (tmp_path / "pod.crt").write_bytes(base64.b64decode(crt))
    (tmp_path / "pod.key").write_bytes(base64.b64decode(key))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "pod.crt", tmp_path / "pod.key")
    port = free_port()
    pod = Backend("tls-71", "127.0.0.71", port)
    pod._server = await asyncio.start_server(pod._handle, pod.host, pod.port, ssl=context)
    try:
        assert not await serve(
            stack,
            [pod],
            ingress(
                "tls",
                rule("tls.example.com", path("/")),
                annotations={NGINX + "backend-protocol": "HTTPS"},
            ),
        )
        status, _, body, _ = await request(session, stack, "/x", "tls.example.com")
        assert (status, body) == (200, "tls-71 /x")
    finally:
        await pod.stop()
