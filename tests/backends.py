"""Real HTTP backends for tests: tiny asyncio servers on 127.0.0.x, one per "pod".

Each answers every request with ``<name> <path>`` and counts what it served, so
a test can tell which pod HAProxy picked. HTTP/1.1 keep-alive is supported
because HAProxy reuses server connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from dataclasses import dataclass, field


def _ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return low, high


def free_port(host: str = "127.0.0.1") -> int:
    """A port no socket holds on any address, outside the kernel's ephemeral range.

    Tests bind the port later, often on several 127.0.0.x addresses (one per
    "pod"). A port the kernel hands out itself (bind to port 0) lies in the
    ephemeral range, where any outgoing connection of HAProxy, a client or
    another test may take it as its source port on one of those addresses in
    the meantime (CI once failed so: EADDRINUSE on 127.0.0.31). Ports below
    the range are never given out implicitly; the wildcard bind without
    SO_REUSEADDR checks that no listener or connection holds the port on any
    address now. ``host`` is kept for callers that name the address they use.
    """
    low, high = _ephemeral_range()
    first, last = (20000, low - 1) if low > 21000 else (high + 1, 65535)
    rng = random.Random()
    for _ in range(1000):
        port = rng.randint(first, last)
        with socket.socket() as sock:
            try:
                sock.bind(("0.0.0.0", port))
            except OSError:
                continue
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in {first}-{last}")


@dataclass
class Backend:
    name: str
    host: str
    port: int
    delay: float = 0.0  # seconds before answering: a "long request"
    headers: tuple[tuple[str, str], ...] = ()  # extra response header lines
    served: int = 0
    # Every request's target and header lines (name lowered, value as sent),
    # in order: what a real application would see.
    seen: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list, repr=False)
    methods: list[str] = field(default_factory=list, repr=False)  # of each request in seen
    _server: asyncio.Server | None = field(default=None, repr=False)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, repr=False)

    async def start(self) -> Backend:
        """Listen on ``host:port`` (port 0: any free one, then kept in ``port``)."""
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stop listening and drop open connections: a pod whose process died."""
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                fields = [
                    (k.strip().lower(), v.strip())
                    for k, _, v in (line.partition(":") for line in lines[1:] if line)
                ]
                headers = dict(fields)
                length = int(headers.get("content-length", "0"))
                if length:
                    await reader.readexactly(length)
                if self.delay:
                    await asyncio.sleep(self.delay)
                self.served += 1
                self.seen.append((target, fields))
                self.methods.append(method)
                body = f"{self.name} {target}".encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                    + f"Content-Length: {len(body)}\r\n".encode()
                    + f"X-Backend: {self.name}\r\n".encode()
                    + f"X-Forwarded-Proto-Seen: {headers.get('x-forwarded-proto', '')}\r\n".encode()
                    + "".join(f"{name}: {value}\r\n" for name, value in self.headers).encode()
                    + b"\r\n"
                    + body
                )
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)  # type: ignore[arg-type]
            writer.close()
