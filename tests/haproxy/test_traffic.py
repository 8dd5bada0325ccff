"""The whole pipeline against a real HAProxy with real HTTP backends on 127.0.0.x.

Reload counts come from the master CLI's ``show proc``, never from our own
bookkeeping, so "no reload" is HAProxy's word, not ours.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from haproxy_ingress.apply import Applier
from haproxy_ingress.haproxy.commands import parse_csv_stat, parse_servers_state
from haproxy_ingress.haproxy.config import RenderOptions
from haproxy_ingress.haproxy.process import ConfigCheckError
from haproxy_ingress.model import BackendSettings
from haproxy_ingress.plan import plan
from haproxy_ingress.translate import translate
from tests.backends import Backend, free_port
from tests.haproxy.conftest import tls_handshake
from tests.haproxy.stack import OPTIONS, Stack, get, wait_for
from tests.kube import (
    configmap,
    endpoint,
    endpoint_slice,
    ingress,
    path,
    rule,
    service,
    tls_secret,
)
from tests.unit.test_translate import make_cert

pytestmark = pytest.mark.haproxy


async def start_pods(prefix: str, count: int, port: int, first: int = 1) -> list[Backend]:
    """``count`` backends on 127.0.0.<first…>: one address per pod, like a cluster."""
    return [
        await Backend(f"{prefix}-{n}", f"127.0.0.{n}", port).start()
        for n in range(first, first + count)
    ]


def slice_for(name: str, pods: list[Backend], **kwargs: object) -> dict[str, object]:
    return endpoint_slice(
        name,
        *(endpoint(p.host, pod=p.name) for p in pods),
        ports=[{"name": "http", "port": pods[0].port if pods else 1}],
        **kwargs,  # type: ignore[arg-type]
    )


async def server_rows(stack: Stack, backend: str, *, twins: bool = False) -> list[dict[str, str]]:
    """The backend's slot rows (``sN``), and its slots' twins (``tN``) if asked."""
    text = await stack.client.run("show", "stat", backend, "4", "-1")
    kinds = ("s", "t") if twins else ("s",)
    return [row for row in parse_csv_stat(text) if row["svname"].startswith(kinds)]


async def test_routing_by_host_path_wildcard_and_default(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    port = free_port()
    web = await start_pods("web", 1, port, first=11)
    api = await start_pods("api", 1, port, first=21)
    stack.put(
        service("web"),
        service("api"),
        slice_for("web", web),
        slice_for("api", api),
        ingress(
            "site",
            rule(
                "shop.example.com",
                path("/", "web"),
                path("/api", "api"),
                path("/exact", "api", path_type="Exact"),
            ),
            rule("*.apps.example.com", path("/", "api")),
            rule(None, path("/anyhost", "web", path_type="Exact")),
        ),
    )
    outcome = await stack.sync()
    assert outcome.result is not None and outcome.result.reloaded
    await wait_for(lambda: _ready(stack, "be_default_web_80", 1))
    await wait_for(lambda: _ready(stack, "be_default_api_80", 1))

    cases = [
        ("shop.example.com", "/", 200, "web-11"),
        ("SHOP.example.com:8080", "/cart", 200, "web-11"),
        ("shop.example.com", "/api", 200, "api-21"),
        ("shop.example.com", "/api/v1/x", 200, "api-21"),
        ("shop.example.com", "/apis", 200, "web-11"),  # element-wise prefix
        ("shop.example.com", "/exact", 200, "api-21"),
        ("shop.example.com", "/exact/more", 200, "web-11"),
        ("x.apps.example.com", "/", 200, "api-21"),
        ("x.y.apps.example.com", "/", 404, ""),  # one label only
        ("apps.example.com", "/", 404, ""),
        ("other.example.com", "/anyhost", 200, "web-11"),
        ("other.example.com", "/nothing", 404, ""),
    ]
    for host, request_path, status, who in cases:
        code, body = await get(session, stack.http_port, request_path, host)
        assert code == status, (host, request_path, code, body)
        if who:
            assert body.startswith(who + " "), (host, request_path, body)


async def _ready(stack: Stack, backend: str, count: int) -> bool:
    rows = await server_rows(stack, backend)
    return sum(row["status"].startswith("UP") for row in rows) >= count


async def test_tls_sni_serves_the_right_certificate(stack: Stack) -> None:
    port = free_port()
    web = await start_pods("web", 1, port, first=31)
    crt, key = make_cert("secure.example.com")
    stack.put(
        service("web"),
        slice_for("web", web),
        tls_secret("secure-tls", crt, key),
        ingress(
            "secure",
            rule("secure.example.com", path("/")),
            rule("plain.example.com", path("/")),
            tls=[{"hosts": ["secure.example.com"], "secretName": "secure-tls"}],
        ),
    )
    await stack.sync()
    await wait_for(lambda: _ready(stack, "be_default_web_80", 1))
    assert (
        await tls_handshake(stack.https_port, "secure.example.com")
    ).common_name == "secure.example.com"
    assert (
        await tls_handshake(stack.https_port, "plain.example.com")
    ).common_name == "haproxy-ingress default certificate"
    # A new certificate for another host arrives through the runtime API.
    crt2, key2 = make_cert("plain.example.com")
    reloads = (await stack.proc()).reloads
    stack.put(
        tls_secret("plain-tls", crt2, key2),
        ingress(
            "secure",
            rule("secure.example.com", path("/")),
            rule("plain.example.com", path("/")),
            tls=[
                {"hosts": ["secure.example.com"], "secretName": "secure-tls"},
                {"hosts": ["plain.example.com"], "secretName": "plain-tls"},
            ],
        ),
    )
    outcome = await stack.sync()
    assert outcome.result is not None and not outcome.result.reloaded
    assert (
        await tls_handshake(stack.https_port, "plain.example.com")
    ).common_name == "plain.example.com"
    assert (await stack.proc()).reloads == reloads
    # And the request itself is proxied over TLS.
    async with aiohttp.ClientSession() as session:
        code, body = await get(session, stack.https_port, "/", "secure.example.com", https=True)
    assert code == 200 and body.startswith("web-31")


async def test_default_backend_answers_unmatched_requests(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    await stack.sync()
    code, body = await get(session, stack.http_port, "/", "nothing.example.com")
    assert (code, body) == (404, "404 page not found")


async def test_scale_1_8_1_under_traffic_without_reload(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    port = free_port()
    pods = await start_pods("web", 8, port, first=41)
    stack.put(
        service("web"), slice_for("web", pods[:1]), ingress("a", rule("s.example.com", path("/")))
    )
    await stack.sync()
    await wait_for(lambda: _ready(stack, "be_default_web_80", 1))
    reloads = (await stack.proc()).reloads

    results: list[int] = []
    stop = asyncio.Event()

    async def load() -> None:
        while not stop.is_set():
            code, _ = await get(session, stack.http_port, "/", "s.example.com")
            results.append(code)

    loaders = [asyncio.create_task(load()) for _ in range(4)]
    try:
        for count in [*range(2, 9), *range(7, 0, -1)]:
            stack.put(slice_for("web", pods[:count]))
            outcome = await stack.sync()
            assert outcome.result is not None and not outcome.result.reloaded
            await asyncio.sleep(0.1)
        served_before = {p.name: p.served for p in pods}
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await asyncio.gather(*loaders)
    assert results and all(code == 200 for code in results), set(results)
    assert (await stack.proc()).reloads == reloads
    assert all(pod.served > 0 for pod in pods)  # every pod took traffic at 8
    # Scaled back to one: only the first pod still serves.
    assert all(pods[n].served == served_before[pods[n].name] for n in range(1, 8))


async def test_new_route_to_existing_backend_needs_no_reload(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    port = free_port()
    web = await start_pods("web", 1, port, first=51)
    stack.put(service("web"), slice_for("web", web), ingress("a", rule("a.example.com", path("/"))))
    await stack.sync()
    await wait_for(lambda: _ready(stack, "be_default_web_80", 1))
    reloads = (await stack.proc()).reloads
    assert (await get(session, stack.http_port, "/", "b.example.com"))[0] == 404
    stack.put(ingress("b", rule("b.example.com", path("/"))))
    outcome = await stack.sync()
    assert outcome.result is not None and not outcome.result.reloaded
    assert (await get(session, stack.http_port, "/", "b.example.com"))[0] == 200
    # Deleting an Ingress is a map change too: its route goes, no reload.
    stack.delete("Ingress", "default", "b")
    await stack.sync()
    assert (await get(session, stack.http_port, "/", "b.example.com"))[0] == 404
    assert (await stack.proc()).reloads == reloads


async def test_the_first_wildcard_or_hostless_rule_reloads_once_then_maps_do(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    """The second routing pass (a host's wildcard form, then rules without a
    host) is rendered only while some route needs it: the first such rule
    reloads with it, later ones are map changes, and a host with rules of
    its own never falls through to them."""
    port = free_port()
    web = await start_pods("web", 1, port, first=56)
    stack.put(
        service("web"), slice_for("web", web), ingress("a", rule("a.example.com", path("/a")))
    )
    await stack.sync()
    await wait_for(lambda: _ready(stack, "be_default_web_80", 1))
    assert (await get(session, stack.http_port, "/a", "a.example.com"))[0] == 200
    assert (await get(session, stack.http_port, "/", "other.example.com"))[0] == 404
    reloads = (await stack.proc()).reloads
    stack.put(ingress("any", rule(None, path("/anyhost", path_type="Exact"))))
    outcome = await stack.sync()
    assert outcome.result is not None and outcome.result.reloaded
    assert "other-scopes" in " ".join(outcome.plan.reload_reasons)
    assert (await get(session, stack.http_port, "/anyhost", "other.example.com"))[0] == 200
    assert (await get(session, stack.http_port, "/anyhost", "a.example.com"))[0] == 404
    stack.put(ingress("wild", rule("*.w.example.com", path("/"))))
    outcome = await stack.sync()
    assert outcome.result is not None and not outcome.result.reloaded
    assert (await get(session, stack.http_port, "/x", "b.w.example.com"))[0] == 200
    assert (await stack.proc()).reloads == reloads + 1


async def test_new_backend_costs_exactly_one_reload(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    port = free_port()
    web = await start_pods("web", 1, port, first=61)
    api = await start_pods("api", 1, port, first=71)
    stack.put(service("web"), slice_for("web", web), ingress("a", rule("a.example.com", path("/"))))
    await stack.sync()
    before = await stack.proc()
    stack.put(
        service("api"),
        slice_for("api", api),
        ingress("a", rule("a.example.com", path("/"), path("/api", "api"))),
    )
    outcome = await stack.sync()
    assert outcome.plan.reload_reasons == ("backend be_default_api_80 added",)
    after = await stack.proc()
    assert after.reloads == before.reloads + 1
    assert after.worker_pids != before.worker_pids
    await wait_for(lambda: _ready(stack, "be_default_api_80", 1))
    code, body = await get(session, stack.http_port, "/api", "a.example.com")
    assert code == 200 and body.startswith("api-71")


async def test_balance_source_grows_slots_with_one_reload(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    """HAProxy 2.6 adds no server at run time under ``balance source``.

    (Every other algorithm grows at run time: see test_dynamic_servers.)
    """
    port = free_port()
    pods = await start_pods("web", 9, port, first=81)
    source = {"haproxy-ingress.kopf.dev/balance": "source"}
    stack.put(
        service("web"),
        slice_for("web", pods[:8]),
        ingress("a", rule("a.example.com", path("/")), annotations=source),
    )
    await stack.sync()
    assert len(await server_rows(stack, "be_default_web_80")) == 8
    before = await stack.proc()
    stack.put(slice_for("web", pods))
    outcome = await stack.sync()
    assert outcome.plan.reload_reasons == ("backend be_default_web_80 needs 9 server slots, has 8",)
    assert (await stack.proc()).reloads == before.reloads + 1
    rows = await server_rows(stack, "be_default_web_80")
    assert len(rows) == 16
    # Nothing runtime set was lost across the reload: all nine pods are up
    # at their addresses (one client address hashes to one of them).
    await wait_for(lambda: _ready(stack, "be_default_web_80", 9))
    up = {
        row["addr"]
        for row in await server_rows(stack, "be_default_web_80")
        if row["status"].startswith("UP")
    }
    assert up == {f"{pod.host}:{port}" for pod in pods}
    for _ in range(10):
        assert (await get(session, stack.http_port, "/", "a.example.com"))[0] == 200


async def test_broken_config_is_never_swapped_in(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    port = free_port()
    web = await start_pods("web", 1, port, first=91)
    stack.put(service("web"), slice_for("web", web), ingress("a", rule("a.example.com", path("/"))))
    await stack.sync()
    await wait_for(lambda: _ready(stack, "be_default_web_80", 1))
    before = await stack.proc()
    good_config = stack.paths.config.read_bytes()
    broken = Applier(
        stack.process,
        stack.client,
        RenderOptions(stack.paths, http_binds=("127.0.0.1:70000",), https_binds=()),
    )
    broken.applied = stack.applier.applied
    assert stack.applier.applied is not None
    step = plan(None, translate(stack.view(), OPTIONS))
    assert step.reload
    with pytest.raises(ConfigCheckError) as error:
        await broken.apply(step)
    assert "70000" in error.value.output
    assert stack.paths.config.read_bytes() == good_config
    after = await stack.proc()
    assert (after.reloads, after.worker_pids) == (before.reloads, before.worker_pids)
    code, body = await get(session, stack.http_port, "/", "a.example.com")
    assert code == 200 and body.startswith("web-91")


async def test_runtime_state_survives_a_reload(stack: Stack) -> None:
    port = free_port()
    web = await start_pods("web", 3, port, first=101)
    api = await start_pods("api", 1, port, first=111)
    draining = endpoint(web[1].host, ready=False, serving=True, terminating=True)
    stack.put(
        configmap({"server-slots": "4"}),  # one free slot
        service("web"),
        endpoint_slice(
            "web",
            endpoint(web[0].host),
            draining,
            endpoint(web[2].host, ready=False),
            ports=[{"name": "http", "port": port}],
        ),
        ingress("a", rule("a.example.com", path("/"))),
    )
    await stack.sync()
    # A new backend forces a reload; the slots' runtime state must come through.
    stack.put(
        service("api"),
        slice_for("api", api),
        ingress("a", rule("a.example.com", path("/"), path("/api", "api"))),
    )
    outcome = await stack.sync()
    assert outcome.result is not None and outcome.result.reloaded
    text = await stack.client.run("show", "servers", "state", "be_default_web_80")
    rows = {row["srv_name"]: row for row in parse_servers_state(text).rows}
    assert (rows["s1"]["srv_addr"], rows["s1"]["srv_port"]) == (web[0].host, str(port))
    assert int(rows["s1"]["srv_admin_state"]) & 0x9 == 0  # neither maint nor drain
    assert int(rows["s2"]["srv_admin_state"]) & 0x8  # drain
    assert int(rows["s3"]["srv_admin_state"]) & 0x1  # forced maintenance (not ready)
    assert int(rows["s4"]["srv_admin_state"]) & 0x5  # a free slot stays out of traffic


async def test_only_idempotent_requests_are_resent_after_reaching_a_server(
    stack: Stack,
) -> None:
    """A server that closes without answering: GET is retried, POST is sent once."""
    received: list[str] = []

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        received.append(head.split(b" ", 1)[0].decode())
        writer.close()

    port = free_port()
    server = await asyncio.start_server(hang_up, "127.0.0.171", port)
    try:
        stack.put(
            service("web"),
            endpoint_slice("web", endpoint("127.0.0.171"), ports=[{"name": "http", "port": port}]),
            ingress("a", rule("a.example.com", path("/"))),
        )
        await stack.sync()
        await wait_for(lambda: _ready(stack, "be_default_web_80", 1))
        assert await _status_of(stack.http_port, b"GET / HTTP/1.1") == 502
        gets = received.count("GET")
        assert await _status_of(stack.http_port, b"POST / HTTP/1.1", b"charge=1") == 502
    finally:
        server.close()
    assert gets == 1 + BackendSettings().retries  # the first try and every retry
    assert received.count("POST") == 1


async def _status_of(port: int, request_line: bytes, body: bytes = b"") -> int:
    """One request on its own connection; the status code HAProxy answers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        request_line
        + b"\r\nHost: a.example.com\r\nConnection: close\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    status = await reader.readline()
    writer.close()
    return int(status.split()[1])


async def test_source_allowlist_annotation(stack: Stack, session: aiohttp.ClientSession) -> None:
    port = free_port()
    web = await start_pods("web", 1, port, first=181)
    api = await start_pods("api", 1, port, first=182)
    allow = "haproxy-ingress.kopf.dev/allowlist-source-range"
    stack.put(
        service("web"),
        service("api"),
        slice_for("web", web),
        slice_for("api", api),
        ingress(
            "open", rule("open.example.com", path("/", "web")), annotations={allow: "127.0.0.0/8"}
        ),
        ingress(
            "closed",
            rule("closed.example.com", path("/", "api")),
            annotations={allow: "10.0.0.0/8, 192.168.0.0/16"},
        ),
    )
    await stack.sync()
    await wait_for(lambda: _ready(stack, "be_default_web_80", 1))
    assert (await get(session, stack.http_port, "/", "open.example.com"))[0] == 200
    assert (await get(session, stack.http_port, "/", "closed.example.com"))[0] == 403
    assert api[0].served == 0


async def test_plain_http_to_tls_hosts_is_redirected(stack: Stack) -> None:
    port = free_port()
    web = await start_pods("web", 1, port, first=191)
    crt, key = make_cert("secure.example.com")
    stack.put(
        service("web"),
        slice_for("web", web),
        tls_secret("tls", crt, key),
        ingress(
            "secure",
            rule("secure.example.com", path("/")),
            rule("x.apps.example.com", path("/")),
            tls=[{"hosts": ["secure.example.com", "*.apps.example.com"], "secretName": "tls"}],
        ),
        ingress(
            "plain",
            rule("plain.example.com", path("/")),
            tls=[{"hosts": ["plain.example.com"], "secretName": "tls"}],
            annotations={"haproxy-ingress.kopf.dev/ssl-redirect": "false"},
        ),
    )
    await stack.sync()
    await wait_for(lambda: _ready(stack, "be_default_web_80", 1))
    async with aiohttp.ClientSession() as session:
        for host in ("secure.example.com", "x.apps.example.com"):
            async with session.get(
                f"http://127.0.0.1:{stack.http_port}/cart?id=1",
                headers={"Host": host},
                allow_redirects=False,
            ) as response:
                assert response.status == 308
                assert response.headers["Location"] == f"https://{host}/cart?id=1"
        code, body = await get(session, stack.https_port, "/", "secure.example.com", https=True)
        assert code == 200 and body.startswith("web-191")
        assert (await get(session, stack.http_port, "/", "plain.example.com"))[0] == 200


async def test_keys_of_removed_certificates_leave_the_disk(stack: Stack) -> None:
    crt, key = make_cert("gone.example.com")
    stack.put(
        service("web"),
        tls_secret("gone-tls", crt, key),
        ingress(
            "a",
            rule("gone.example.com", path("/")),
            tls=[{"hosts": ["gone.example.com"], "secretName": "gone-tls"}],
        ),
    )
    await stack.sync()
    pem = stack.paths.certs / "default_gone-tls.pem"
    assert pem.exists()
    stack.put(ingress("a", rule("gone.example.com", path("/"))))  # TLS dropped
    await stack.sync()
    assert not pem.exists()
    assert (stack.paths.certs / "default.pem").exists()


async def test_server_header_is_added_unless_the_backend_sent_one(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    port = free_port()
    plain = await Backend("plain", "127.0.0.71", port).start()
    branded = await Backend("branded", "127.0.0.72", port, headers=(("Server", "app/2"),)).start()
    stack.put(
        service("plain"),
        service("branded"),
        slice_for("plain", [plain]),
        slice_for("branded", [branded]),
        ingress(
            "site",
            rule("plain.example.com", path("/", "plain")),
            rule("branded.example.com", path("/", "branded")),
        ),
    )

    async def servers(host: str) -> tuple[int, list[str]]:
        async with session.get(
            f"http://127.0.0.1:{stack.http_port}/", headers={"Host": host}
        ) as response:
            return response.status, response.headers.getall("Server", [])

    try:
        await stack.sync()
        await wait_for(lambda: _ready(stack, "be_default_plain_80", 1))
        await wait_for(lambda: _ready(stack, "be_default_branded_80", 1))
        assert await servers("plain.example.com") == (200, ["haproxy-ingress"])
        assert await servers("branded.example.com") == (200, ["app/2"])
        assert await servers("nothing.example.com") == (404, ["haproxy-ingress"])

        stack.put(configmap({"server-header": "edge/1.0"}))
        await stack.sync()
        assert await servers("plain.example.com") == (200, ["edge/1.0"])
        stack.put(configmap({"server-header": ""}))
        await stack.sync()
        assert await servers("plain.example.com") == (200, [])
        assert await servers("branded.example.com") == (200, ["app/2"])
    finally:
        await plain.stop()
        await branded.stop()


async def test_endpoint_fast_path_moves_traffic_without_a_reload(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    port = free_port()
    old, new = await start_pods("web", 2, port, first=81)
    stack.put(
        service("web"), slice_for("web", [old]), ingress("a", rule("a.example.com", path("/")))
    )
    await stack.sync()
    await wait_for(lambda: _ready(stack, "be_default_web_80", 1))
    before = await stack.proc()
    try:
        # A rollout: only the Service's EndpointSlice changed, so only its
        # servers are re-derived from the last translation.
        stack.put(slice_for("web", [new]))
        outcome = await stack.reconciler.reconcile(stack.view(), endpoints_of={("default", "web")})
        assert outcome.result is not None and not outcome.result.reloaded
        assert {type(op).__name__ for op in outcome.plan.operations} == {"SetServer"}
        await wait_for(lambda: _ready(stack, "be_default_web_80", 1))
        for _ in range(4):
            code, body = await get(session, stack.http_port, "/", "a.example.com")
            assert code == 200 and body.startswith("web-82 "), body
        assert (await stack.proc()).reloads == before.reloads
    finally:
        await old.stop()
        await new.stop()
