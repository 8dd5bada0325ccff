"""Retries after a refused connection, judged by HAProxy's own timers.

HAProxy 2.6 waits min(``timeout connect``, 1 s) before a connection retry
whenever at most one server is left up, even when the retry goes to another
server (src/backend.c, back_handle_st_cer). A request meeting the
last-but-one pod as it dies used to wait ~1 s; slot twins
(``BackendSettings.twins``) keep one live pod two servers up, so the retry
goes to it at once. ``timeout connect`` stays long, so a slow but healthy pod
is not failed either.

Timings come from HAProxy's request log (``%TR/%Tw/%Tc/%Tr/%Ta``, the retry
count with ``+`` for a redispatch), not from the client's clock: a busy
machine stretches wall-clock times, never HAProxy's turn-around timer.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.backends import Backend, free_port
from tests.haproxy.stack import Stack, get, wait_for
from tests.haproxy.test_traffic import server_rows, slice_for, start_pods
from tests.kube import endpoint, endpoint_slice, ingress, ingress_class, path, rule, service

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "hack"))
from podnet import PodNetwork

pytestmark = pytest.mark.haproxy

HOST = "retry.example.com"
BACKEND = "be_default_web_80"
# option httplog: ... backend/server TR/Tw/Tc/Tr/Ta status ... ac/fc/bc/sc/rc sq/bq ... "request"
LOG_LINE = re.compile(
    r" (?P<backend>\S+)/(?P<server>\S+)"
    r" (?P<TR>-?\d+)/(?P<Tw>-?\d+)/(?P<Tc>-?\d+)/(?P<Tr>-?\d+)/(?P<Ta>-?\d+)"
    r" (?P<status>\d{3}) .*? \d+/\d+/\d+/\d+/(?P<retries>\+?\d+) \d+/\d+ "
)


@dataclass(frozen=True)
class LogLine:
    server: str
    tw: int  # time waiting for a server: queue and turn-around included
    tc: int  # TCP connect time of the attempt that succeeded
    status: int
    retries: int
    redispatched: bool  # "+": the retry went to another server


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self.lines.append(data.decode(errors="replace"))


@dataclass
class RequestLog:
    """HAProxy's ``log 127.0.0.1:PORT format raw``: one datagram per request."""

    port: int
    receiver: _Receiver

    def entries(self) -> list[LogLine]:
        result = []
        for line in self.receiver.lines:
            match = LOG_LINE.search(line)
            if match is None or match["backend"] != BACKEND:
                continue
            retries = match["retries"]
            result.append(
                LogLine(
                    server=match["server"],
                    tw=int(match["Tw"]),
                    tc=int(match["Tc"]),
                    status=int(match["status"]),
                    retries=int(retries.lstrip("+")),
                    redispatched=retries.startswith("+"),
                )
            )
        return result


@pytest.fixture
async def request_log() -> AsyncIterator[RequestLog]:
    loop = asyncio.get_running_loop()
    port = free_port()
    transport, receiver = await loop.create_datagram_endpoint(
        _Receiver, local_addr=("127.0.0.1", port)
    )
    yield RequestLog(port, receiver)
    transport.close()


@pytest.fixture
async def logged_stack(tmp_path: Path, request_log: RequestLog) -> AsyncIterator[Stack]:
    result = Stack(tmp_path / "haproxy", log_target=f"127.0.0.1:{request_log.port}")
    result.put(ingress_class(default=True))
    yield result
    await result.close()


async def _up(stack: Stack, servers: set[str]) -> bool:
    rows = await server_rows(stack, BACKEND, twins=True)
    return {row["svname"] for row in rows if row["status"].startswith("UP")} >= servers


async def _meet_a_dead_pod(
    stack: Stack, log: RequestLog, session: aiohttp.ClientSession, annotations: dict[str, str]
) -> tuple[list[int], list[LogLine]]:
    """Two pods; the one in slot s1 dies; requests until one has met it."""
    port = free_port()
    dying, alive = await start_pods("web", 2, port, first=61)
    try:
        stack.put(
            service("web"),
            slice_for("web", [dying, alive]),
            ingress("a", rule(HOST, path("/")), annotations=annotations),
        )
        await stack.sync()
        await wait_for(lambda: _up(stack, {"s1", "s2"}))
        await dying.stop()  # connections to it are refused from now on
        codes = []
        for _ in range(8):  # leastconn takes idle servers in turn: s1 or t1 comes soon
            code, _ = await get(session, stack.http_port, "/", HOST)
            codes.append(code)
            await asyncio.sleep(0.05)  # the log datagram
            if any(entry.retries for entry in log.entries()):
                break
        return codes, log.entries()
    finally:
        await alive.stop()


async def test_a_refused_connection_is_redispatched_without_turnaround(
    logged_stack: Stack, request_log: RequestLog, session: aiohttp.ClientSession
) -> None:
    codes, entries = await _meet_a_dead_pod(logged_stack, request_log, session, {})
    assert codes and set(codes) == {200}, codes
    retried = [entry for entry in entries if entry.retries]
    assert retried, entries  # a request did meet the dead pod
    for entry in retried:
        assert entry.status == 200 and entry.redispatched, entry
        assert entry.server in {"s2", "t2"}, entry  # the live pod, or its twin
        # Tw holds the turn-around when there is one (1000 ms here: see the
        # next test); without it, the wait is the failed attempt alone.
        assert entry.tw < 100, entry
    rows = await server_rows(logged_stack, BACKEND, twins=True)
    assert {row["svname"]: row["status"] for row in rows}["s1"].startswith("DOWN")


async def test_without_twins_haproxy_waits_its_turnaround_timer(
    logged_stack: Stack, request_log: RequestLog, session: aiohttp.ClientSession
) -> None:
    """The HAProxy 2.6 behaviour twins avoid (and proof the test above can fail).

    A server maxconn of 1 cannot be split between a slot and its twin, so such
    a backend has none: the passive check marks the dead pod down, one server
    is left, and the redispatched retry waits min(timeout connect, 1 s).
    """
    annotations = {"haproxy-ingress.kopf.dev/server-maxconn": "1"}
    codes, entries = await _meet_a_dead_pod(logged_stack, request_log, session, annotations)
    assert set(codes) == {200}, codes
    assert not [e for e in entries if e.server.startswith("t")], entries
    retried = [entry for entry in entries if entry.retries]
    assert len(retried) == 1 and retried[0].redispatched, entries
    assert retried[0].server == "s2" and retried[0].tw >= 900, retried[0]


def _in_netns(netns: str, *command: str) -> None:
    subprocess.run(["ip", "netns", "exec", netns, *command], check=True, capture_output=True)


async def test_a_slow_but_healthy_pod_is_not_failed(
    logged_stack: Stack, request_log: RequestLog, session: aiohttp.ClientSession
) -> None:
    """Connections that take a second to establish are served, never retried.

    The pod's first SYN-ACK of every connection is dropped in its network
    namespace, so each connect takes TCP's initial retransmission time (1 s;
    sch_netem, the usual way to add delay, is not in every kernel). The
    defaults must not shorten ``timeout connect`` below that to cut the
    turn-around wait.
    """
    with PodNetwork("hi-slow", subnet=ipaddress.IPv4Network("198.18.11.0/24")) as network:
        _in_netns(network.name, "sysctl", "-qw", "net.netfilter.nf_conntrack_acct=1")
        _in_netns(
            network.name,
            *("iptables", "-A", "OUTPUT", "-p", "tcp", "--tcp-flags", "SYN,ACK", "SYN,ACK"),
            *("-m", "connbytes", "--connbytes", "0:1", "--connbytes-dir", "reply"),
            *("--connbytes-mode", "packets", "-j", "DROP"),
        )
        pod = network.start_pod("slow-1")
        logged_stack.put(
            service("web"),
            endpoint_slice(
                "web", endpoint(pod.address, pod="slow-1"), ports=[{"name": "http", "port": 8080}]
            ),
            ingress("a", rule(HOST, path("/"))),
        )
        await logged_stack.sync()
        await wait_for(lambda: _up(logged_stack, {"s1"}), limit=20)
        codes = [(await get(session, logged_stack.http_port, "/", HOST))[0] for _ in range(3)]
        await asyncio.sleep(0.1)
        entries = request_log.entries()
    assert codes == [200, 200, 200]
    assert len(entries) == 3 and all(e.status == 200 and e.retries == 0 for e in entries), entries
    # The first request opened a connection: it took the dropped SYN-ACK's second.
    assert entries[0].tc >= 900, entries[0]


async def test_twins_follow_their_slots_drain_and_maintenance(logged_stack: Stack) -> None:
    """Only slots get state commands: each twin follows its slot (``track``)."""
    port = free_port()
    pods: list[Backend] = await start_pods("web", 2, port, first=71)
    try:
        logged_stack.put(
            service("web"), slice_for("web", pods), ingress("a", rule(HOST, path("/")))
        )
        await logged_stack.sync()
        await wait_for(lambda: _up(logged_stack, {"s1", "s2", "t1", "t2"}))
        # Pod 1 terminating but serving → drain; pod 2 gone → maintenance.
        logged_stack.put(
            endpoint_slice(
                "web",
                endpoint(pods[0].host, ready=False, serving=True, terminating=True),
                ports=[{"name": "http", "port": port}],
            )
        )
        outcome = await logged_stack.sync()
        assert outcome.result is not None and not outcome.result.reloaded

        async def states() -> dict[str, str]:
            rows = await server_rows(logged_stack, BACKEND, twins=True)
            return {row["svname"]: row["status"] for row in rows}

        async def followed(wanted: dict[str, str]) -> bool:
            found = await states()
            return all(found[name].startswith(state) for name, state in wanted.items())

        drained = {"s1": "DRAIN", "t1": "DRAIN"}
        await wait_for(lambda: followed({**drained, "s2": "MAINT", "t2": "MAINT"}))
        # A reload (a backend setting changed) restores the slots from the
        # state file and the twins from the configuration: still in step.
        logged_stack.put(
            ingress(
                "a",
                rule(HOST, path("/")),
                annotations={"haproxy-ingress.kopf.dev/timeout-server": "61s"},
            )
        )
        outcome = await logged_stack.sync()
        assert outcome.result is not None and outcome.result.reloaded
        await wait_for(lambda: followed({"s1": "DRAIN"}))
        addresses = {
            row["svname"]: row["addr"]
            for row in await server_rows(logged_stack, BACKEND, twins=True)
        }
        assert addresses["s1"] == f"{pods[0].host}:{port}"
        # The freed slot past the last used one is not declared again
        # (plan.declared), and a backend of one slot has no twin
        # (BackendSettings.twins_at: no other pod to retry on).
        assert sorted(addresses) == ["s1"]
    finally:
        for pod in pods:
            await pod.stop()
