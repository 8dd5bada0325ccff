"""The runtime API client against a real HAProxy 2.6 (see conftest.hx_runtime)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from collections.abc import AsyncIterator

import aiohttp
import pytest

from haproxy_ingress.haproxy.commands import (
    Command,
    RuntimeCommandError,
    parse_crt_list,
    parse_csv_stat,
    set_server_addr,
    set_server_state,
)
from haproxy_ingress.haproxy.runtime import RuntimeClient
from tests.backends import Backend
from tests.haproxy.conftest import (
    RuntimeInstance,
    make_cert,
    servers_state,
    set_weight,
    tls_handshake,
)
from tests.haproxy.stack import get

pytestmark = pytest.mark.haproxy


@pytest.fixture
async def client(hx_runtime: RuntimeInstance) -> AsyncIterator[RuntimeClient]:
    async with RuntimeClient(hx_runtime.paths.runtime_socket) as runtime_client:
        yield runtime_client


async def servers(client: RuntimeClient, backend: str) -> dict[str, dict[str, str]]:
    return await servers_state(client, backend)


async def map_content(client: RuntimeClient, path: object) -> list[tuple[str, str]]:
    text = await client.run("show", "map", str(path))
    # "0x55ee38ee59c0 key value"
    return [tuple(line.split(" ", 2)[1:]) for line in text.splitlines()]  # type: ignore[misc]


async def fill_slot(client: RuntimeClient, backend: str, server: str, target: Backend) -> None:
    await client.execute(
        [
            set_server_addr(backend, server, ipaddress.ip_address(target.host), target.port),
            set_server_state(backend, server, "ready"),
        ]
    )


async def test_pipelines_two_thousand_commands(client: RuntimeClient) -> None:
    commands = [set_weight("be_pipe", f"s{1 + i % 4}", i % 257) for i in range(2000)]
    replies = await client.execute(commands)
    assert replies == [""] * 2000
    # The last command per slot wins: i = 1996..1999 → weights 1996 % 257 ...
    state = await servers(client, "be_pipe")
    for i in range(1996, 2000):
        assert state[f"s{1 + i % 4}"]["srv_uweight"] == str(i % 257)


async def test_failed_reply_raises_and_connection_stays_usable(client: RuntimeClient) -> None:
    batch = [
        set_server_state("be_state", "s1", "drain"),
        set_server_state("be_state", "nope", "ready"),
        set_server_state("be_state", "s2", "drain"),
    ]
    with pytest.raises(RuntimeCommandError) as caught:
        await client.execute(batch)
    assert caught.value.reply == "No such server."
    assert caught.value.command == batch[1]
    assert caught.value.index == 1
    worker = client.worker_pid
    assert await client.run("show", "version") != ""
    assert client.worker_pid == worker
    # Pipelined in one batch: the command after the failure ran too (documented).
    state = await servers(client, "be_state")
    assert int(state["s2"]["srv_admin_state"]) & 0x8


async def test_later_batches_are_not_sent_after_a_failure(
    hx_runtime: RuntimeInstance,
) -> None:
    async with RuntimeClient(hx_runtime.paths.runtime_socket, batch_size=2) as small:
        await small.execute([set_server_state("be_state", "s3", "maint")])
        with pytest.raises(RuntimeCommandError):
            await small.execute(
                [
                    set_weight("be_state", "s3", 5),
                    # out of range: HAProxy refuses it (the builder would too)
                    Command(("set", "server", "be_state/s3", "weight", "300")),
                    set_weight("be_state", "s3", 7),  # next batch: never sent
                ]
            )
        state = await servers(small, "be_state")
        assert state["s3"]["srv_uweight"] == "5"


async def test_reply_check_with_a_pattern(client: RuntimeClient) -> None:
    with pytest.raises(RuntimeCommandError):
        await client.run("show", "version", ok=re.compile(r"1\.\d+.*"))
    assert (await client.run("show", "version", ok=re.compile(r"2\.6\.\S+"))).startswith("2.6")
    with pytest.raises(RuntimeCommandError):  # None means: the reply must be empty
        await client.run("show", "version", ok=None)


async def test_reconnects_after_haproxy_closed_the_idle_connection(
    client: RuntimeClient, caplog: pytest.LogCaptureFixture
) -> None:
    # Shorten this session's CLI idle timeout; HAProxy then closes it on its own.
    await client.run("set", "timeout", "cli", "1", ok=None)
    await asyncio.sleep(1.5)
    with caplog.at_level(logging.DEBUG, logger="haproxy_ingress.haproxy.runtime"):
        reply = await client.run("show", "version")
    assert reply.startswith("2.6")
    opened = [r for r in caplog.records if r.getMessage().startswith("runtime connection opened")]
    assert len(opened) == 1


async def test_concurrent_callers_do_not_interleave(client: RuntimeClient) -> None:
    await client.execute([set_weight("be_pipe", f"s{i}", 10 * i) for i in range(1, 5)])

    async def reader(slot: int) -> list[str]:
        return await client.execute(
            [
                Command(("get", "weight", f"be_pipe/s{slot}"), ok=re.compile(r"\d+ \(initial 1\)"))
                for _ in range(300)
            ]
        )

    results = await asyncio.gather(*(reader(slot) for slot in range(1, 5)))
    for slot, replies in enumerate(results, start=1):
        assert replies == [f"{10 * slot} (initial 1)"] * 300


async def test_server_slots_route_traffic(
    client: RuntimeClient,
    hx_runtime: RuntimeInstance,
    hx_backends: list[Backend],
    session: aiohttp.ClientSession,
) -> None:
    alpha, _ = hx_backends
    await client.replace_map(hx_runtime.hosts_map, [("slots.example", "be_a")])
    await fill_slot(client, "be_a", "s1", alpha)
    assert await get(session, hx_runtime.http_port, "/", "slots.example") == (200, "alpha /")
    # Same address again: HAProxy says "no need to change", still a success.
    await fill_slot(client, "be_a", "s1", alpha)
    text = await client.run("show", "stat", "be_a", "4", "-1")
    rows = {row["svname"]: row for row in parse_csv_stat(text)}
    assert rows["s1"]["addr"] == f"127.0.0.2:{alpha.port}"
    assert rows["s1"]["status"] in ("UP", "no check")
    assert rows["s2"]["status"] == "MAINT"
    await client.execute([set_server_state("be_a", "s1", "maint")])
    assert (await get(session, hx_runtime.http_port, "/", "slots.example"))[0] == 503


async def test_set_server_addr_ipv6_and_port_change(client: RuntimeClient) -> None:
    replies = await client.execute(
        [
            set_server_addr("be_state", "s4", ipaddress.ip_address("10.1.2.3"), 81),
            set_server_addr("be_state", "s4", ipaddress.ip_address("10.1.2.3"), 82),
            set_server_addr("be_state", "s4", ipaddress.ip_address("2001:db8::7"), 82),
            set_server_addr("be_state", "s4", ipaddress.ip_address("2001:db8::7"), 82),
        ]
    )
    assert replies[1].startswith("no need to change the addr, port changed from '81' to '82'")
    assert replies[3].startswith("no need to change the addr, no need to change the port")
    state = await servers(client, "be_state")
    assert (state["s4"]["srv_addr"], state["s4"]["srv_port"]) == ("2001:db8::7", "82")


async def test_map_replace_is_chunked_and_complete(
    client: RuntimeClient,
    hx_runtime: RuntimeInstance,
    hx_backends: list[Backend],
    session: aiohttp.ClientSession,
) -> None:
    alpha, beta = hx_backends
    await fill_slot(client, "be_a", "s2", alpha)
    await fill_slot(client, "be_b", "s1", beta)
    await client.replace_map(hx_runtime.hosts_map, [("old.example", "be_a")])
    assert await get(session, hx_runtime.http_port, "/", "old.example") == (200, "alpha /")

    entries = [(f"host-{i:04d}.bulk.example", "be_a") for i in range(700)]
    entries.append(("new.example", "be_b"))
    assert sum(len(k) + len(v) + 2 for k, v in entries) > 15_000
    await client.replace_map(hx_runtime.hosts_map, entries)

    assert await map_content(client, hx_runtime.hosts_map) == entries  # order kept
    assert await get(session, hx_runtime.http_port, "/", "new.example") == (200, "beta /")
    assert await get(session, hx_runtime.http_port, "/", "host-0699.bulk.example") == (
        200,
        "alpha /",
    )
    assert (await get(session, hx_runtime.http_port, "/", "old.example"))[0] == 404


async def test_failed_map_replace_leaves_the_old_content(
    client: RuntimeClient, hx_runtime: RuntimeInstance
) -> None:
    await client.replace_map(hx_runtime.nets_map, [("10.0.0.0/8", "ten")])
    # An ip map refuses a non-address key, in the last chunk: nothing is committed.
    entries = [(f"10.{i // 256}.{i % 256}.0/24", f"net{i}") for i in range(1200)]
    entries.append(("not-an-address", "x"))
    with pytest.raises(RuntimeCommandError) as caught:
        await client.replace_map(hx_runtime.nets_map, entries)
    assert "not a valid IPv4 or IPv6 address" in caught.value.reply
    assert await map_content(client, hx_runtime.nets_map) == [("10.0.0.0/8", "ten")]


async def test_map_payload_keeps_cli_syntax_literal(
    client: RuntimeClient, hx_runtime: RuntimeInstance
) -> None:
    entries = [("a;b.example", "be_a"), ("c#d.example", "be#b"), ("e\\f<<", "v;x y")]
    await client.replace_map(hx_runtime.hosts_map, entries)
    assert await map_content(client, hx_runtime.hosts_map) == entries


async def test_certificate_add_renew_and_remove(
    client: RuntimeClient, hx_runtime: RuntimeInstance
) -> None:
    port = hx_runtime.tls_port
    crt_list = hx_runtime.paths.crt_list
    pem_path = hx_runtime.paths.certs / "shop.pem"
    assert (await tls_handshake(port, "shop.example")).common_name == "default.invalid"

    first = make_cert("shop.example")
    await client.replace_cert(pem_path, first)
    assert await client.add_crt_list_entry(crt_list, pem_path, "shop.example", "h2,http/1.1")
    assert not await client.add_crt_list_entry(crt_list, pem_path, "shop.example", "h2,http/1.1")
    assert await client.add_crt_list_entry(crt_list, pem_path, "*.shop.example", None)
    served = await tls_handshake(port, "shop.example", alpn=("h2", "http/1.1"))
    assert (served.common_name, served.alpn) == ("shop.example", "h2")
    wildcard = await tls_handshake(port, "www.shop.example", alpn=("h2", "http/1.1"))
    assert wildcard.common_name == "shop.example"
    assert (await tls_handshake(port, "other.example")).common_name == "default.invalid"

    second = make_cert("shop.example")
    await client.replace_cert(pem_path, second)  # renewal: set + commit only
    renewed = await tls_handshake(port, "shop.example")
    assert renewed.common_name == "shop.example" and renewed.serial != served.serial

    with pytest.raises(RuntimeCommandError):  # still used by the crt-list
        await client.del_cert(pem_path)
    assert await client.del_crt_list_entries(crt_list, pem_path) == 2
    assert await client.del_crt_list_entries(crt_list, pem_path) == 0
    assert await client.del_cert(pem_path)
    assert not await client.del_cert(pem_path)
    assert (await tls_handshake(port, "shop.example")).common_name == "default.invalid"
    listed = parse_crt_list(await client.run("show", "ssl", "crt-list", "-n", str(crt_list)))
    assert [e.cert for e in listed] == [hx_runtime.default_cert]


async def test_broken_pem_is_refused_and_leaves_nothing_behind(
    client: RuntimeClient, hx_runtime: RuntimeInstance
) -> None:
    pem_path = hx_runtime.paths.certs / "broken.pem"
    cert_only = make_cert("broken.example").split("-----BEGIN PRIVATE KEY-----")[0]
    with pytest.raises(RuntimeCommandError):
        await client.replace_cert(pem_path, cert_only)  # commit: no private key
    listing = await client.run("show", "ssl", "cert")
    assert str(pem_path) not in listing and "# transaction" not in listing


async def test_leftover_certificate_transaction_is_cleared(
    client: RuntimeClient, hx_runtime: RuntimeInstance, caplog: pytest.LogCaptureFixture
) -> None:
    # An interrupted earlier call left a transaction open on another file. In
    # 2.6.12 a `set ssl cert` for our file would silently update *that* one.
    stale = hx_runtime.paths.certs / "stale.pem"
    mine = hx_runtime.paths.certs / "mine.pem"
    await client.replace_cert(stale, make_cert("stale.example"))
    lines = tuple(line for line in make_cert("hijack.example").splitlines() if line)
    await client.run(
        "set", "ssl", "cert", str(stale), payload=lines, ok=re.compile(r"Transaction created .*")
    )
    with caplog.at_level(logging.WARNING, logger="haproxy_ingress.haproxy.runtime"):
        await client.replace_cert(mine, make_cert("mine.example"))
    assert any("leftover ssl cert transaction" in r.getMessage() for r in caplog.records)
    await client.add_crt_list_entry(hx_runtime.paths.crt_list, mine, "mine.example", None)
    await client.add_crt_list_entry(hx_runtime.paths.crt_list, stale, "stale.example", None)
    port = hx_runtime.tls_port
    assert (await tls_handshake(port, "mine.example")).common_name == "mine.example"
    assert (await tls_handshake(port, "stale.example")).common_name == "stale.example"
    for path in (mine, stale):
        await client.del_crt_list_entries(hx_runtime.paths.crt_list, path)
        assert await client.del_cert(path)
