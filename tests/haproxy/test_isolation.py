"""Tenant isolation against a real HAProxy: a client steers nothing but host and path.

Every request here is written byte by byte, as an attacker would, and the
assertions are about which real backend received what (``Backend.seen``), not
about our own bookkeeping.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterable
from typing import Any

import pytest

from haproxy_ingress.haproxy.config import map_path
from tests.backends import Backend, free_port
from tests.haproxy.stack import Stack, wait_for
from tests.haproxy.test_traffic import _ready, slice_for, start_pods
from tests.kube import configmap, ingress, path, rule, service, tls_secret
from tests.unit.test_translate import make_cert

pytestmark = pytest.mark.haproxy

ALLOW = "haproxy-ingress.kopf.dev/allowlist-source-range"
NOBODY = "203.0.113.0/24"  # TEST-NET-3: never the address of a test client


async def raw(port: int, request: bytes) -> tuple[int, bytes]:
    """Send ``request`` as it is on a new connection; HAProxy's status and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def request(target: bytes, host: bytes | None, *headers: bytes) -> bytes:
    lines = [b"GET " + target + b" HTTP/1.1"]
    if host is not None:
        lines.append(b"Host: " + host)
    lines.extend(headers)
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"


def served(backends: Iterable[Backend]) -> dict[str, int]:
    return {b.name: b.served for b in backends}


@pytest.fixture
async def tenants(stack: Stack) -> dict[str, Backend]:
    """app.example.com: /api/public and a guarded /admin, the rest to a catch-all;
    sec.example.com with TLS; *.example.com and host-less rules of other tenants."""
    port = free_port()
    pods = {
        name: (await start_pods(name, 1, port, first=first))[0]
        for name, first in (
            ("public", 31),
            ("admin", 32),
            ("catchall", 33),
            ("sec", 34),
            ("wild", 35),
            ("anyhost", 36),
        )
    }
    crt, key = make_cert("sec.example.com")
    stack.put(
        *(service(name) for name in pods),
        *(slice_for(name, [pod]) for name, pod in pods.items()),
        ingress(
            "app",
            rule(
                "app.example.com",
                path("/api/public", "public"),
                path("/", "catchall"),
            ),
        ),
        ingress(
            "admin",
            rule("app.example.com", path("/admin", "admin")),
            annotations={ALLOW: NOBODY},
        ),
        tls_secret("sec-tls", crt, key),
        ingress(
            "sec",
            rule("sec.example.com", path("/", "sec")),
            tls=[{"hosts": ["sec.example.com"], "secretName": "sec-tls"}],
        ),
        ingress("wild", rule("*.example.com", path("/", "wild")), namespace="default"),
        ingress("anyhost", rule(None, path("/", "anyhost"))),
    )
    await stack.sync()
    for name in pods:
        await wait_for(lambda name=name: _ready(stack, f"be_default_{name}_80", 1))  # type: ignore[misc]
    return pods


async def test_host_that_is_not_a_dns_name_gets_400(
    stack: Stack, tenants: dict[str, Backend]
) -> None:
    port = stack.http_port
    bad_hosts = [
        b"app.example.com/api/public",  # steering by a path in Host
        b"sec.example.com/",  # a TLS host over plain HTTP, dodging the redirect
        b"a.example.com, app.example.com",  # a list: HAProxy's req.hdr takes the last
        b"app.example.com,",
        b"x@sec.example.com",  # userinfo: the wildcard's first label unvalidated
        b"app.example.com:80:80",
        b"app.example.com:123456",
        b"app .example.com",  # (blanks around a value are HTTP whitespace, not this)
        b"app..example.com",
        b"-app.example.com",
        b"app_x.example.com",
        b"\xe2\x84\xaaelvin.example.com",  # U+212A lowers to ASCII 'k' in Python
        b"app.example.com%2f",
        b"[::1",
        b"a" * 64 + b".example.com",
        b"app.example.com:80@evil.example",
        b"app.example.com#x",
        b"app.example.com?x",
    ]
    before = served(tenants.values())
    for host in bad_hosts:
        status, _ = await raw(port, request(b"/internal/secret", host))
        assert status == 400, host
    assert served(tenants.values()) == before


async def test_h2c_authority_is_checked_like_host(
    stack: Stack, tenants: dict[str, Backend]
) -> None:
    curl = shutil.which("curl")
    assert curl is not None, "curl (with HTTP/2) is needed for the h2c case"
    before = served(tenants.values())
    for authority, expected in ((b"sec.example.com/", b"400"), (b"sec.example.com", b"308")):
        process = await asyncio.create_subprocess_exec(
            curl,
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--http2-prior-knowledge",
            "-H",
            f"Host: {authority.decode()}",
            f"http://127.0.0.1:{stack.http_port}/x",
            stdout=asyncio.subprocess.PIPE,
        )
        output, _ = await process.communicate()
        assert output == expected, authority
    assert served(tenants.values()) == before


async def test_valid_hosts_route_case_port_and_trailing_dot_aside(
    stack: Stack, tenants: dict[str, Backend]
) -> None:
    port = stack.http_port
    cases = [
        (b"app.example.com", b"/api/public/x", "public"),
        (b"APP.Example.COM:8080", b"/api/public", "public"),
        (b"app.example.com.", b"/api/public", "public"),
        (b"other.example.com", b"/", "wild"),
        (b"elsewhere.test", b"/", "anyhost"),
        (None, b"/", "anyhost"),  # HTTP/1.1 without Host: host-less rules only
        (b"127.0.0.1", b"/", "anyhost"),
        (b"[::1]:80", b"/", "anyhost"),
    ]
    for host, target, who in cases:
        before = tenants[who].served
        status, body = await raw(port, request(target, host))
        assert status == 200, (host, target, body)
        assert tenants[who].served == before + 1, (host, target, body)


async def test_a_host_with_rules_owns_its_requests(
    stack: Stack, tenants: dict[str, Backend]
) -> None:
    # sec.example.com has rules of its own: an unmatched path of it must not
    # fall through to another tenant's wildcard or host-less rules.
    crt, key = make_cert("sec.example.com")
    del crt, key
    stack.put(ingress("sec", rule("sec.example.com", path("/only", "sec"))))
    await stack.sync()
    before = served(tenants.values())
    status, _ = await raw(stack.http_port, request(b"/other", b"sec.example.com"))
    assert status == 404
    assert served(tenants.values()) == before


@pytest.mark.parametrize(
    "target",
    [
        b"/x/../admin",
        b"/./admin",
        b"//admin",
        b"/x/%2e%2e/admin",
        b"/%2e/admin",
        b"/x/%2E%2E/y/../admin",
        b"/api/public/../../admin",
        b"/api/public/..%2f..%2fadmin",
        b"/api/public/%2e%2e%2F%2e%2e%2Fadmin",
        b"/api/public/..;/../admin",
        b"/api/public/..%5c..%5cadmin",
        b"/api/public/x/..//../../admin/",
        b"/%61dmin",
        b"/admin;jsessionid=1",
        b"///admin//secret",
        b"http://app.example.com/x/../admin",
        b"/admin%2f",
        b"/admin%2F..%2Fadmin",
        b"/x;/../admin",
        b"/%2fadmin",
    ],
)
async def test_paths_are_matched_canonically(
    stack: Stack, tenants: dict[str, Backend], target: bytes
) -> None:
    """Every spelling of /admin meets /admin's rule (403 here), never the catch-all."""
    before = served(tenants.values())
    status, _ = await raw(stack.http_port, request(target, b"app.example.com"))
    assert status == 403, target
    assert served(tenants.values()) == before


@pytest.mark.parametrize(
    "target",
    [
        b"/../admin",
        b"/x/../../admin",
        b"/%2e%2e/admin",
        b"/%2E%2E/x/../admin",
        b"/a%zz",
        b"/a%00b",
        b"/a%",
    ],
)
async def test_paths_that_do_not_resolve_get_400(
    stack: Stack, tenants: dict[str, Backend], target: bytes
) -> None:
    before = served(tenants.values())
    status, _ = await raw(stack.http_port, request(target, b"app.example.com"))
    assert status == 400, target
    assert served(tenants.values()) == before


async def test_the_backend_receives_the_request_as_sent(
    stack: Stack, tenants: dict[str, Backend]
) -> None:
    """As ingress-nginx sends $request_uri: the match is canonical, the bytes are not."""
    status, _ = await raw(
        stack.http_port, request(b"/api/public/./x/%2e%2e/y%2Fz?q=%2e", b"app.example.com")
    )
    assert status == 200
    assert tenants["public"].seen[-1][0] == "/api/public/./x/%2e%2e/y%2Fz?q=%2e"


async def test_forwarded_headers_come_from_the_connection(
    stack: Stack, tenants: dict[str, Backend]
) -> None:
    status, _ = await raw(
        stack.http_port,
        request(
            b"/api/public",
            b"app.example.com",
            b"X-Forwarded-For: 10.1.2.3",
            b"X-Real-IP: 10.1.2.3",
            b"X-Forwarded-Host: evil.example",
            b"X-Forwarded-Proto: https",
            b"Forwarded: for=10.1.2.3",
        ),
    )
    assert status == 200
    headers = tenants["public"].seen[-1][1]
    assert [v for k, v in headers if k == "x-forwarded-for"] == ["127.0.0.1"]
    assert [v for k, v in headers if k == "x-real-ip"] == ["127.0.0.1"]
    assert [v for k, v in headers if k == "x-forwarded-host"] == ["app.example.com"]
    assert [v for k, v in headers if k == "x-forwarded-proto"] == ["http"]
    assert not [v for k, v in headers if k == "forwarded"]


async def test_a_spoofed_forwarded_for_does_not_pass_an_allowlist(
    stack: Stack, tenants: dict[str, Backend]
) -> None:
    address = NOBODY.replace("0/24", "7")
    before = served(tenants.values())
    status, _ = await raw(
        stack.http_port,
        request(
            b"/admin", b"app.example.com", f"X-Forwarded-For: {address}".encode(), b"X-Real-IP: x"
        ),
    )
    assert status == 403
    assert served(tenants.values()) == before


async def test_trusted_proxies_forwarded_headers_when_configured(
    stack: Stack, tenants: dict[str, Backend]
) -> None:
    address = NOBODY.replace("0/24", "7")
    stack.put(configmap({"use-forwarded-headers": "true", "proxy-real-ip-cidr": "127.0.0.0/8"}))
    await stack.sync()
    # The trusted proxy (127.0.0.1) says the client is in NOBODY: /admin lets it in.
    status, _ = await raw(
        stack.http_port,
        request(b"/admin", b"app.example.com", f"X-Forwarded-For: {address}".encode()),
    )
    assert status == 200
    headers = tenants["admin"].seen[-1][1]
    assert [v for k, v in headers if k == "x-real-ip"] == [address]
    assert [v for k, v in headers if k == "x-forwarded-for"] == [address, "127.0.0.1"]
    # A proxy outside proxy-real-ip-cidr is not believed.
    stack.put(configmap({"use-forwarded-headers": "true", "proxy-real-ip-cidr": "192.0.2.0/24"}))
    await stack.sync()
    status, _ = await raw(
        stack.http_port,
        request(b"/admin", b"app.example.com", f"X-Forwarded-For: {address}".encode()),
    )
    assert status == 403


async def test_tls_host_plain_http_is_redirected_whatever_the_host_spelling(
    stack: Stack, tenants: dict[str, Backend]
) -> None:
    for host in (b"sec.example.com", b"SEC.example.com:80", b"sec.example.com."):
        status, _ = await raw(stack.http_port, request(b"/x", host))
        assert status == 308, host
    assert tenants["sec"].served == 0


# --- access rules are per route: no other Ingress can drop or weaken them -------------


async def test_access_rule_survives_a_conflicting_ingress_on_the_same_service(
    stack: Stack,
) -> None:
    """Two Ingresses share a Service port and disagree on its tuning: the newer
    one's backend settings lose the conflict, but no access rule is lost."""
    port = free_port()
    (pod,) = await start_pods("shared", 1, port, first=41)
    stack.put(
        service("shared"),
        slice_for("shared", [pod]),
        ingress(
            "open",
            rule("shared.example.com", path("/public", "shared")),
            created="2026-01-01T00:00:00Z",
            annotations={"haproxy-ingress.kopf.dev/timeout-server": "30s"},
        ),
        ingress(
            "guarded",
            rule("shared.example.com", path("/private", "shared")),
            created="2026-02-01T00:00:00Z",  # newer: its backend tuning loses
            annotations={ALLOW: NOBODY, "haproxy-ingress.kopf.dev/timeout-server": "10s"},
        ),
    )
    outcome = await stack.sync()
    assert any(p.event == "Conflict" for p in outcome.desired.problems)
    await wait_for(lambda: _ready(stack, "be_default_shared_80", 1))
    assert (await raw(stack.http_port, request(b"/public", b"shared.example.com")))[0] == 200
    before = pod.served
    for target in (b"/private", b"/private/x", b"/public/../private"):
        status, _ = await raw(stack.http_port, request(target, b"shared.example.com"))
        assert status == 403, target
    assert pod.served == before

    # The other way round: the guarded Ingress is the older one.
    stack.put(
        ingress(
            "guarded",
            rule("shared.example.com", path("/private", "shared")),
            created="2025-01-01T00:00:00Z",
            annotations={ALLOW: NOBODY, "haproxy-ingress.kopf.dev/timeout-server": "10s"},
        )
    )
    await stack.sync()
    assert (await raw(stack.http_port, request(b"/private", b"shared.example.com")))[0] == 403
    assert (await raw(stack.http_port, request(b"/public", b"shared.example.com")))[0] == 200


async def test_an_unknown_policy_in_a_map_fails_closed(
    stack: Stack, tenants: dict[str, Backend]
) -> None:
    """A map entry naming a policy the configuration lacks is refused (403), not let in."""
    exact = map_path(stack.paths, "exact")
    await stack.client.run(
        "set", "map", str(exact), "app.example.com/api/public", "be_default_public_80~p0"
    )
    before = tenants["public"].served
    status, _ = await raw(stack.http_port, request(b"/api/public", b"app.example.com"))
    assert status == 403
    assert tenants["public"].served == before


async def test_allowlist_change_applies_and_a_bad_one_rejects_the_ingress(
    stack: Stack, tenants: dict[str, Backend]
) -> None:
    stack.put(
        ingress(
            "admin",
            rule("app.example.com", path("/admin", "admin")),
            annotations={ALLOW: "127.0.0.0/8"},
        )
    )
    await stack.sync()
    assert (await raw(stack.http_port, request(b"/admin", b"app.example.com")))[0] == 200
    # A value that cannot be honoured rejects the Ingress, and fails closed:
    # its paths deny everyone, rather than fall through to the catch-all "/".
    stack.put(
        ingress(
            "admin",
            rule("app.example.com", path("/admin", "admin")),
            annotations={ALLOW: "127.0.0.0/8, not-a-network"},
        )
    )
    outcome = await stack.sync()
    assert any(p.source.name == "admin" and ALLOW in p.field for p in outcome.desired.problems)
    assert any(p.event == "AccessDenied" for p in outcome.desired.problems)
    before = served(tenants.values())
    for target in (b"/admin", b"/admin/x", b"/x/../admin"):
        status, _ = await raw(stack.http_port, request(target, b"app.example.com"))
        assert status == 403, target
    assert served(tenants.values()) == before


async def test_editing_an_ingress_address_lists_takes_effect_without_a_reload(
    stack: Stack, tenants: dict[str, Backend]
) -> None:
    """An Ingress's allow- and deny-lists are its own policy's ACL files, swapped
    through the runtime API: new networks apply at once, and HAProxy (its own
    ``show proc``) does not reload; other Ingresses' lists are untouched."""
    deny = "haproxy-ingress.kopf.dev/denylist-source-range"

    def admin(allow: str, denied: str) -> dict[str, Any]:
        return ingress(
            "admin",
            rule("app.example.com", path("/admin", "admin")),
            annotations={ALLOW: allow, deny: denied},
        )

    stack.put(
        admin(NOBODY, "198.51.100.0/24"),
        ingress(
            "other",
            rule("other.example.com", path("/", "public")),
            annotations={ALLOW: "127.0.0.0/8"},
        ),
    )
    await stack.sync()
    assert (await raw(stack.http_port, request(b"/admin", b"app.example.com")))[0] == 403
    assert (await raw(stack.http_port, request(b"/", b"other.example.com")))[0] == 200
    reloads = (await stack.proc()).reloads

    stack.put(admin(f"{NOBODY}, 127.0.0.0/8", "198.51.100.0/24"))  # the client let in
    outcome = await stack.sync()
    assert outcome.result is not None and not outcome.result.reloaded
    assert (await raw(stack.http_port, request(b"/admin", b"app.example.com")))[0] == 200

    stack.put(admin(f"{NOBODY}, 127.0.0.0/8", "127.0.0.1/32"))  # ... then refused
    outcome = await stack.sync()
    assert outcome.result is not None and not outcome.result.reloaded
    assert (await raw(stack.http_port, request(b"/admin", b"app.example.com")))[0] == 403
    assert (await raw(stack.http_port, request(b"/", b"other.example.com")))[0] == 200
    assert (await stack.proc()).reloads == reloads

    # The files follow HAProxy (a later reload or restart loads the same lists).
    await stack.applier.flush()
    applied = stack.applier.applied
    assert applied is not None
    owned = [p for p in applied.structure.policies if p.owner]
    assert sorted(p.owner for p in owned) == ["default/admin", "default/other"]
    (mine,) = (p for p in owned if p.owner == "default/admin")
    assert (stack.paths.maps / f"{mine.name}.deny.acl").read_text() == "127.0.0.1/32\n"


async def test_another_namespaces_spec_tls_never_redirects_a_host(stack: Stack) -> None:
    """tenant-b lists shop.example.com in its spec.tls without a rule for it:
    the shop's plain-HTTP clients keep being served, never sent (308) to a
    certificate whose key tenant-b holds."""
    port = free_port()
    (shop,) = await start_pods("shop", 1, port, first=41)
    (evil,) = await start_pods("evil", 1, port, first=42)
    crt, key = make_cert("shop.example.com")
    stack.put(
        service("shop"),
        slice_for("shop", [shop]),
        service("evil", namespace="tenant-b"),
        slice_for("evil", [evil], namespace="tenant-b"),
        tls_secret("evil-tls", crt, key, namespace="tenant-b"),
        ingress("shop", rule("shop.example.com", path("/", "shop"))),
        ingress(
            "evil",
            rule("evil.example.com", path("/", "evil")),
            namespace="tenant-b",
            created="2025-01-01T00:00:00Z",
            tls=[{"hosts": ["shop.example.com"], "secretName": "evil-tls"}],
        ),
    )
    outcome = await stack.sync()
    assert outcome.result is not None
    await wait_for(lambda: _ready(stack, "be_default_shop_80", 1))
    status, body = await raw(stack.http_port, request(b"/", b"shop.example.com"))
    assert status == 200, body
    assert body.startswith(b"shop-41 ")
    assert "Conflict" in {p.event for p in outcome.desired.problems if p.source.name == "evil"}
