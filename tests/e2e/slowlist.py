"""An HTTPS proxy in front of the API server that makes one kind's LIST slow.

The way a big cluster lists: Kopf has some kinds listed long before the
others. The proxy terminates TLS with its own certificate (the controller's
kubeconfig trusts it), opens a TLS connection of its own to the API server
per client connection, and holds back every request whose request line is
a LIST (not a watch) of the chosen path for ``delay`` seconds. Bytes are
otherwise passed on untouched (the controller's token included). asyncio in
a thread of its own: the tests around it are synchronous.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
import tempfile
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.backends import free_port


class SlowListProxy:
    def __init__(self, target: str, path: str, delay: float) -> None:
        """``target``: the API server's URL; ``path``: e.g. ``/api/v1/services``."""
        host, _, port = target.removeprefix("https://").rpartition(":")
        self._target = (host, int(port))
        self._path = path.encode()
        self._delay = delay
        self.port = free_port()
        self.delayed = 0  # LIST requests held back so far
        self.ca_pem = self._write_certificate()
        self._loop = asyncio.new_event_loop()
        self._stopped = asyncio.Event()
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the slow-list proxy did not start")

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(10)

    def _write_certificate(self) -> bytes:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "slow-list proxy")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]),
                critical=False,
            )
            .sign(key, hashes.SHA256())
        )
        pem = cert.public_bytes(serialization.Encoding.PEM)
        self._dir = tempfile.TemporaryDirectory(prefix="slow-list-")
        self._cert = Path(self._dir.name) / "proxy.pem"
        self._cert.write_bytes(
            pem
            + key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return pem

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve(started))
        self._loop.close()
        self._dir.cleanup()

    async def _serve(self, started: threading.Event) -> None:
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_tls.load_cert_chain(self._cert)
        server = await asyncio.start_server(
            self._connection, "127.0.0.1", self.port, ssl=server_tls
        )
        started.set()
        async with server:
            await self._stopped.wait()
        # Connections still open (the controller's watches): end them here,
        # not as pending tasks of a closed loop.
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_tls = ssl.create_default_context()
        upstream_tls.check_hostname = False
        upstream_tls.verify_mode = ssl.CERT_NONE  # a test's own API server, on loopback
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target, ssl=upstream_tls)
        except OSError:
            writer.close()
            return
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer, requests=True)),
            asyncio.create_task(self._pump(up_reader, writer, requests=False)),
        ]
        with contextlib.suppress(Exception):
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for pump in pumps:
            pump.cancel()
        for stream in (writer, up_writer):
            with contextlib.suppress(Exception):
                stream.close()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, requests: bool
    ) -> None:
        while data := await reader.read(65536):
            if requests and self._slow(data):
                self.delayed += 1
                await asyncio.sleep(self._delay)
            writer.write(data)
            await writer.drain()

    def _slow(self, data: bytes) -> bool:
        """A request of this connection starts here: is it a LIST of the slow path?"""
        line = data.split(b"\r\n", 1)[0]
        method, _, rest = line.partition(b" ")
        target = rest.rpartition(b" ")[0]
        path, _, query = target.partition(b"?")
        return method == b"GET" and path == self._path and b"watch=" not in query
