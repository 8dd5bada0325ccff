"""Helpers for tests that run a real HAProxy: configs, certificates, backends.

Fixture names are prefixed (``hx_``) because this directory is shared with
the controller-level traffic tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from haproxy_ingress.haproxy.commands import Command, parse_servers_state
from haproxy_ingress.haproxy.config import LUA, RenderOptions, render
from haproxy_ingress.haproxy.files import atomic_write
from haproxy_ingress.haproxy.paths import HAProxyPaths
from haproxy_ingress.haproxy.runtime import RuntimeClient
from haproxy_ingress.model import AppliedState, GlobalSettings, RoutingMaps, Structure
from tests.backends import Backend, free_port
from tests.certs import self_signed
from tests.haproxy.stack import Stack
from tests.kube import ingress_class

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def global_section(paths: HAProxyPaths) -> str:
    """The controller's own global and defaults sections, rendered for ``paths``.

    Rendered from the shipped template (for an empty cluster, with a short
    hard-stop-after), never copied: what these tests run is what the
    controller runs. The Lua file the global section loads is written too.
    """
    settings = GlobalSettings(hard_stop_after="5s")
    empty = AppliedState(Structure(settings, (), None), {}, RoutingMaps(), ())
    rendered = render(empty, RenderOptions(paths, http_binds=(), https_binds=()))
    for file in rendered.files:
        if file.path.name == LUA:
            atomic_write(file.path, file.content, mode=file.mode)
    text = rendered.config.content.decode()
    return text[: text.index("\nfrontend ")] + "\n"


def set_weight(backend: str, server: str, weight: int) -> Command:
    """``set server BE/SRV weight N``: runtime state the controller never sets, so a
    reload that carries it over is seen to carry state."""
    return Command(("set", "server", f"{backend}/{server}", "weight", str(weight)))


async def servers_state(client: RuntimeClient, backend: str) -> dict[str, dict[str, str]]:
    """``show servers state BE``: each server's row by name."""
    text = await client.run("show", "servers", "state", backend)
    return {row["srv_name"]: row for row in parse_servers_state(text).rows}


def slots(count: int, extra: str = "") -> str:
    """Pre-allocated server slots, filled at runtime."""
    return "".join(
        f"    server s{i} 127.0.0.1:1 disabled{(' ' + extra) if extra else ''}\n"
        for i in range(1, count + 1)
    )


def make_cert(common_name: str) -> str:
    """A self-signed certificate + key PEM for ``common_name``, valid now."""
    now = datetime.datetime.now(datetime.UTC)
    cert, key = self_signed(
        common_name,
        not_before=now - datetime.timedelta(days=1),
        not_after=now + datetime.timedelta(days=30),
    )
    return (cert + key).decode()


@dataclass(frozen=True)
class PeerCert:
    common_name: str
    serial: int
    alpn: str | None


async def tls_handshake(port: int, server_name: str, alpn: tuple[str, ...] = ()) -> PeerCert:
    """Which certificate HAProxy presents for ``server_name`` (SNI)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols(list(alpn))
    _, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname=server_name
    )
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True)
        negotiated = ssl_object.selected_alpn_protocol()
    finally:
        writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await writer.wait_closed()
    cert = x509.load_der_x509_certificate(der)
    common_name = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    return PeerCert(str(common_name), cert.serial_number, negotiated)


@pytest.fixture
async def hx_backends() -> AsyncIterator[list[Backend]]:
    """Two backends on distinct loopback addresses (127.0.0.2 and 127.0.0.3)."""
    backends = [
        await Backend("alpha", "127.0.0.2", 0).start(),
        await Backend("beta", "127.0.0.3", 0).start(),
    ]
    yield backends
    for backend in backends:
        await backend.stop()


# --- one plain HAProxy shared by the runtime API tests ------------------------------


@dataclass(frozen=True)
class RuntimeInstance:
    paths: HAProxyPaths
    http_port: int
    tls_port: int
    default_cert: Path

    @property
    def hosts_map(self) -> Path:
        return self.paths.maps / "hosts.map"

    @property
    def nets_map(self) -> Path:
        return self.paths.maps / "nets.map"


def runtime_config(instance: RuntimeInstance) -> str:
    paths = instance.paths
    return (
        global_section(paths)
        + f"""
frontend fe_http
    bind 127.0.0.1:{instance.http_port}
    http-request set-header X-Net %[src,map_ip({instance.nets_map},none)]
    use_backend %[req.hdr(host),host_only,lower,map({instance.hosts_map},be_default)]

frontend fe_tls
    bind 127.0.0.1:{instance.tls_port} ssl crt-list {paths.crt_list}
    default_backend be_default

backend be_default
    http-request return status 404 content-type text/plain string nobody

backend be_a
{slots(2)}
backend be_b
{slots(2)}
backend be_pipe
{slots(4)}
backend be_state
{slots(4)}
"""
    )


@pytest.fixture(scope="session")
def hx_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeInstance]:
    """A plain (not master-worker) HAProxy for the runtime API tests.

    Session-scoped to keep the suite lean; each test uses its own backends,
    maps and certificate names, so tests do not depend on each other's state.
    """
    paths = HAProxyPaths(tmp_path_factory.mktemp("hx-runtime"))
    paths.ensure()
    instance = RuntimeInstance(paths, free_port(), free_port(), paths.certs / "default.pem")
    instance.default_cert.write_text(make_cert("default.invalid"))
    instance.default_cert.chmod(0o600)
    paths.crt_list.write_text(f"{instance.default_cert}\n")
    instance.hosts_map.write_text("")
    instance.nets_map.write_text("")
    paths.config.write_text(runtime_config(instance))
    log = paths.base / "haproxy.log"
    with log.open("wb") as output:
        # A file, not a pipe: nobody reads it during the session.
        proc = subprocess.Popen(
            [HAPROXY, "-db", "-f", str(paths.config)],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 20
        while not _answers(paths.runtime_socket):
            if proc.poll() is not None:
                pytest.fail(f"haproxy exited: {log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail("haproxy runtime socket never answered")
            time.sleep(0.05)
        yield instance
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _answers(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(path))
            sock.sendall(b"show version\n")
            return bool(sock.recv(100))
    except OSError:
        return False


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """The pipeline without Kopf, with a default IngressClass, on a real HAProxy."""
    result = Stack(tmp_path / "haproxy")
    result.put(ingress_class(default=True))
    yield result
    await result.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as result:
        yield result
