"""gRPC through HAProxy to a real grpcio server (grpc.go): backend-protocol GRPC (h2c to
the pod) and GRPCS (TLS with ALPN h2), unary calls, status codes in trailers, a server
stream. No generated code: the methods take and return raw bytes."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest

from tests.backends import Backend, free_port
from tests.haproxy.stack import Stack
from tests.haproxy.test_annotations import NGINX, serve
from tests.kube import ingress, path, rule
from tests.unit.test_translate import make_cert

pytestmark = pytest.mark.haproxy


async def _say(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    if request == b"missing":
        await context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
    tenant = dict(context.invocation_metadata() or ()).get("x-tenant", "")
    return b"hello " + request + b" from " + str(tenant).encode()


async def _count(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    for number in range(int(request)):
        yield str(number).encode()


async def _server(
    host: str, port: int, credentials: grpc.ServerCredentials | None
) -> grpc.aio.Server:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "test.Echo",
                {
                    "Say": grpc.unary_unary_rpc_method_handler(_say),
                    "Count": grpc.unary_stream_rpc_method_handler(_count),
                },
            ),
        )
    )
    address = f"{host}:{port}"
    if credentials is None:
        server.add_insecure_port(address)
    else:
        server.add_secure_port(address, credentials)
    await server.start()
    return server


@pytest.mark.parametrize("protocol", ["GRPC", "GRPCS"])
async def test_grpc_through_haproxy(
    stack: Stack, session: aiohttp.ClientSession, tmp_path: Path, protocol: str
) -> None:
    port = free_port()
    credentials = None
    if protocol == "GRPCS":
        crt, key = make_cert("pod.internal")
        credentials = grpc.ssl_server_credentials([(base64.b64decode(key), base64.b64decode(crt))])
    server = await _server("127.0.0.95", port, credentials)
    try:
        host = f"{protocol.lower()}.example.com"
        assert not await serve(
            stack,
            [Backend("grpc", "127.0.0.95", port)],
            ingress(
                "grpc",
                rule(host, path("/")),
                annotations={NGINX + "backend-protocol": protocol},
            ),
        )
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{stack.http_port}", options=[("grpc.default_authority", host)]
        ) as channel:
            say = channel.unary_unary("/test.Echo/Say")
            answer = await say(b"world", timeout=5, metadata=(("x-tenant", "a"),))
            assert answer == b"hello world from a"
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await say(b"missing", timeout=5)
            assert failed.value.code() is grpc.StatusCode.NOT_FOUND
            assert failed.value.details() == "no such thing"
            count = channel.unary_stream("/test.Echo/Count")
            assert [m async for m in count(b"5", timeout=5)] == [b"0", b"1", b"2", b"3", b"4"]
    finally:
        await server.stop(None)
