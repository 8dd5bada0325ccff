"""Slots added at run time (``add server``), against a real HAProxy 2.6.12.

A backend holds exactly its endpoints (``server-slots`` at least); a pod
more is a server added at run time, not a reload. What 2.6.12 does to
dynamic servers that config-file ones never suffer (see
shared/HAPROXY-2.6.md) is what these tests hold: traffic reaches them under
every algorithm, cookies stick to them, their twins follow them without
``track``, a reload declares them, and a restarted controller adopts them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from haproxy_ingress.plan import AddServer
from tests.backends import Backend, free_port
from tests.haproxy.stack import Stack, get, wait_for
from tests.haproxy.test_traffic import server_rows, slice_for, start_pods
from tests.kube import configmap, ingress, path, rule, service

pytestmark = pytest.mark.haproxy

NGINX = "nginx.ingress.kubernetes.io/"
BACKEND = "be_default_web_80"


async def _up(stack: Stack, count: int, *, twins: bool = False) -> bool:
    rows = await server_rows(stack, BACKEND, twins=twins)
    return sum(row["status"].startswith("UP") for row in rows) >= count


async def _under_load(
    session: aiohttp.ClientSession, stack: Stack, host: str, work: Callable[[], Awaitable[None]]
) -> list[int]:
    """Status codes of a steady request loop (4 clients) while ``work`` runs."""
    codes: list[int] = []
    stop = asyncio.Event()

    async def load() -> None:
        while not stop.is_set():
            codes.append((await get(session, stack.http_port, "/", host))[0])

    loaders = [asyncio.create_task(load()) for _ in range(4)]
    try:
        await work()
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await asyncio.gather(*loaders)
    return codes


async def _hits(session: aiohttp.ClientSession, stack: Stack, pods: list[Backend]) -> None:
    """Requests until every pod has served one (bounded)."""
    for _ in range(400):
        if all(pod.served for pod in pods):
            return
        await get(session, stack.http_port, "/", "dyn.example.com")


async def _grown(stack: Stack, count: int, first: int) -> tuple[list[Backend], int]:
    """``count`` pods behind dyn.example.com, 1 declared and the rest added at run time."""
    port = free_port()
    pods = await start_pods("web", count, port, first=first)
    stack.put(
        service("web"), slice_for("web", pods[:1]), ingress("a", rule("dyn.example.com", path("/")))
    )
    await stack.sync()
    stack.put(slice_for("web", pods))
    await stack.sync()
    await wait_for(lambda: _up(stack, count))
    return pods, port


async def test_pods_beyond_the_declared_slots_are_added_without_a_reload(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    port = free_port()
    pods = await start_pods("web", 6, port, first=161)
    stack.put(
        service("web"), slice_for("web", pods[:1]), ingress("a", rule("dyn.example.com", path("/")))
    )
    await stack.sync()
    assert len(await server_rows(stack, BACKEND)) == 1  # exactly the endpoints
    await wait_for(lambda: _up(stack, 1))
    before = await stack.proc()

    async def scale_up() -> None:
        stack.put(slice_for("web", pods))
        outcome = await stack.sync()
        assert outcome.result is not None and not outcome.result.reloaded
        # Five slots and, the backend reaching two slots, the first one's twin.
        assert sum(isinstance(op, AddServer) for op in outcome.plan.operations) == 6
        await wait_for(lambda: _up(stack, 6))

    codes = await _under_load(session, stack, "dyn.example.com", scale_up)
    assert codes and set(codes) == {200}
    assert (await stack.proc()).reloads == before.reloads
    rows = {row["svname"]: row for row in await server_rows(stack, BACKEND, twins=True)}
    assert sorted(rows) == [f"{kind}{n}" for kind in "st" for n in range(1, 7)]
    # A twin added at run time has its own check (2.6 cannot track a dynamic
    # server), the declared slot's too: one slot had no twin (twins_at).
    for twin in ("t1", "t6"):
        assert rows[twin]["tracked"] == "" and rows[twin]["check_status"] != "", twin
    for pod in pods:
        pod.served = 0
    await _hits(session, stack, pods)
    assert all(pod.served for pod in pods)

    # Scaled down: the added slots and their twins leave traffic together.
    stack.put(slice_for("web", pods[:2]))
    outcome = await stack.sync()
    assert outcome.result is not None and not outcome.result.reloaded
    rows = {row["svname"]: row for row in await server_rows(stack, BACKEND, twins=True)}
    assert all(rows[f"{kind}{n}"]["status"] == "MAINT" for kind in "st" for n in range(3, 7))
    served = [pod.served for pod in pods]
    for _ in range(40):
        assert (await get(session, stack.http_port, "/", "dyn.example.com"))[0] == 200
    assert [pod.served for pod in pods[2:]] == served[2:]
    assert (await stack.proc()).reloads == before.reloads


async def test_a_reload_declares_the_added_servers_and_keeps_them_serving(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    pods, port = await _grown(stack, 4, first=171)
    before = await stack.proc()

    async def reload() -> None:
        # Anything structural: a new backend.
        stack.put(service("other"), ingress("b", rule("other.example.com", path("/", "other"))))
        outcome = await stack.sync()
        assert outcome.result is not None and outcome.result.reloaded

    codes = await _under_load(session, stack, "dyn.example.com", reload)
    assert codes and set(codes) == {200}
    assert (await stack.proc()).reloads == before.reloads + 1
    config = stack.paths.config.read_text()
    for n in range(1, 5):
        assert f"    server s{n} {pods[n - 1].host}:{port} id {n}\n" in config
        assert f"    server t{n} {pods[n - 1].host}:{port} id {1_000_000 + n} track s{n}" in config
    await wait_for(lambda: _up(stack, 4))
    for pod in pods:
        pod.served = 0
    await _hits(session, stack, pods)
    assert all(pod.served for pod in pods)

    # Scaled down to one, the next reload gives the free slots' memory back.
    stack.put(slice_for("web", pods[:1]))
    await stack.sync()
    stack.put(service("third"), ingress("c", rule("third.example.com", path("/", "third"))))
    outcome = await stack.sync()
    assert outcome.result is not None and outcome.result.reloaded
    assert [row["svname"] for row in await server_rows(stack, BACKEND)] == ["s1"]
    # And it grows again at run time.
    stack.put(slice_for("web", pods[:3]))
    outcome = await stack.sync()
    assert outcome.result is not None and not outcome.result.reloaded
    await wait_for(lambda: _up(stack, 3))


@pytest.mark.parametrize(
    "annotations",
    [
        {NGINX + "load-balance": "round_robin"},
        {"haproxy-ingress.kopf.dev/balance": "random"},
        {NGINX + "upstream-hash-by": "$request_uri"},
        {"haproxy-ingress.kopf.dev/balance": "first"},
    ],
    ids=["roundrobin", "random", "consistent-hash", "first"],
)
async def test_every_algorithm_sends_traffic_to_added_servers(
    stack: Stack, session: aiohttp.ClientSession, annotations: dict[str, str]
) -> None:
    port = free_port()
    pods = await start_pods("web", 4, port, first=181)
    stack.put(
        service("web"),
        slice_for("web", pods[:1]),
        ingress("a", rule("dyn.example.com", path("/")), annotations=annotations),
    )
    await stack.sync()
    stack.put(slice_for("web", pods))
    outcome = await stack.sync()
    assert outcome.result is not None and not outcome.result.reloaded
    await wait_for(lambda: _up(stack, 4))
    if "first" in annotations.values():
        # balance first fills the first server up to its maxconn: take s1 away.
        stack.put(slice_for("web", pods[1:]))
        await stack.sync()
        await get(session, stack.http_port, "/", "dyn.example.com")
        assert sum(pod.served for pod in pods[1:]) > 0
        return
    for n in range(400):
        if all(pod.served for pod in pods):
            break
        await get(session, stack.http_port, f"/?n={n}", "dyn.example.com")
    assert all(pod.served for pod in pods), [pod.served for pod in pods]


async def test_cookie_affinity_sticks_to_a_server_added_at_run_time(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    port = free_port()
    pods = await start_pods("web", 3, port, first=191)
    sticky = ingress(
        "sticky",
        rule("dyn.example.com", path("/")),
        annotations={NGINX + "affinity": "cookie", NGINX + "load-balance": "round_robin"},
    )
    stack.put(service("web"), slice_for("web", pods[:1]), sticky)
    await stack.sync()
    stack.put(slice_for("web", pods))
    outcome = await stack.sync()
    assert outcome.result is not None and not outcome.result.reloaded
    await wait_for(lambda: _up(stack, 3))
    cookies: dict[str, str] = {}
    for _ in range(30):
        async with session.get(
            f"http://127.0.0.1:{stack.http_port}/", headers={"Host": "dyn.example.com"}
        ) as response:
            body = await response.text()
            cookie = response.headers.get("Set-Cookie", "")
            assert cookie.startswith("INGRESSCOOKIE="), cookie
            cookies[body.split()[0]] = cookie.split(";")[0]
        if len(cookies) == 3:
            break
    # Each pod has its own cookie, the added ones too, and it holds the client.
    assert sorted(cookies) == sorted(pod.name for pod in pods)
    assert len(set(cookies.values())) == 3
    for pod in pods[1:]:
        for _ in range(5):
            async with session.get(
                f"http://127.0.0.1:{stack.http_port}/",
                headers={"Host": "dyn.example.com", "Cookie": cookies[pod.name]},
            ) as response:
                assert response.status == 200
                assert (await response.text()).split()[0] == pod.name


async def test_a_restarted_controller_adopts_the_added_servers(
    stack: Stack, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    pods, _ = await _grown(stack, 3, first=201)
    before = await stack.proc()
    await stack.client.close()
    successor = Stack(stack.base, http_port=stack.http_port, https_port=stack.https_port)
    successor.objects = dict(stack.objects)
    try:
        caplog.clear()
        assert await successor.applier.adopt()
        assert successor.applier.applied == stack.applier.applied
        # What HAProxy has is not added again (each would be an [ALERT]).
        assert not [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
        assert (await successor.sync()).plan.empty
        after = await successor.proc()
        assert (after.reloads, after.worker_pids) == (before.reloads, before.worker_pids)
        for pod in pods:
            pod.served = 0
        await _hits(session, stack, pods)
        assert all(pod.served for pod in pods)
    finally:
        await successor.client.close()


async def test_stretched_check_intervals_run_and_added_servers_get_them(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    """Past health-check-max-rate, healthy servers are checked less often
    (plan.check_stretch); the options HAProxy accepts in haproxy.cfg it also
    accepts on an ``add server`` line."""
    port = free_port()
    pods = await start_pods("web", 4, port, first=211)
    stack.put(
        configmap({"health-check-max-rate": "1"}),  # 3 pods every 2 s: 1.5/s
        service("web"),
        slice_for("web", pods[:3]),
        ingress("a", rule("dyn.example.com", path("/"))),
    )
    outcome = await stack.sync()
    assert outcome.plan.target.structure.check_stretch == 2
    assert "check inter 4000ms fastinter 2s downinter 2s fall 3" in stack.paths.config.read_text()
    await wait_for(lambda: _up(stack, 3))
    before = await stack.proc()
    stack.put(slice_for("web", pods))  # 2 checks/s: x2 still fits
    outcome = await stack.sync()
    assert outcome.result is not None and not outcome.result.reloaded
    assert sum(isinstance(op, AddServer) for op in outcome.plan.operations) == 1
    await wait_for(lambda: _up(stack, 4))
    assert (await stack.proc()).reloads == before.reloads

    async def checked() -> bool:  # its first check comes within the stretched 4 s
        rows = {row["svname"]: row for row in await server_rows(stack, BACKEND, twins=True)}
        return rows["s4"]["check_status"].startswith("L4OK") and rows["t4"]["status"] == "UP"

    await wait_for(checked)
    for pod in pods:
        pod.served = 0
    await _hits(session, stack, pods)
    assert all(pod.served for pod in pods)
