"""An open-loop HTTP load generator that records every request's outcome.

Why not ``hey`` or ``wrk`` (both in Debian): wrk cannot hold a fixed rate and
reports no per-request outcome; hey's ``-q`` is a per-worker closed loop (a
slow answer delays the next request, which hides exactly the stalls a churn
benchmark looks for) and its CSV lists only successful requests. This client
schedules request ``i`` at ``t0 + i / rate`` whatever happened to the ones
before (open loop), over a pool of keep-alive connections to ONE address on
loopback, and writes one CSV line per scheduled request:

    scheduled,started,latency,outcome,stream,retried

* ``scheduled``/``started``: ``time.monotonic()`` (system-wide on Linux, so a
  benchmark process can line records up with its own events);
* ``latency``: seconds from ``started`` to the last byte of the answer (or
  to the failure);
* ``outcome``: ``ok`` (2xx), ``<code>`` for any other status, ``connect``
  (no connection to the load balancer), ``reset`` (connection closed or reset
  before a complete answer), ``timeout``, ``bad`` (unparsable answer),
  ``unsent`` (the client itself had ``--max-inflight`` requests open and could
  not keep the rate: a client limit, reported, never hidden);
* ``retried``: 1 when a *reused* keep-alive connection was closed before a
  single byte of the answer came back and the request was sent again on a
  new connection, once. Every common HTTP client (browsers, curl, Go's
  net/http) does this for idempotent requests; the count is reported.

Run one process per core's worth of rate (``--phase k/N`` staggers N
processes). It stops by itself after ``--max-seconds`` or ``--max-requests``,
or earlier on SIGTERM/SIGINT; it then waits for what is in flight (at most
``--timeout``) and writes ``--out``. Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

ADDRESS = "127.0.0.1"  # the only address this client ever connects to


class ClosedError(Exception):
    def __init__(self, got_bytes: bool) -> None:
        super().__init__("connection closed before a complete answer")
        self.got_bytes = got_bytes


class BadResponseError(Exception):
    pass


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bool]] | None = None
        self.got_bytes = False
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer.extend(data)
        self.got_bytes = True
        self._parse()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ClosedError(self.got_bytes))

    def request(self, data: bytes) -> asyncio.Future[tuple[int, bool]]:
        assert self.transport is not None
        self.buffer.clear()
        self.got_bytes = False
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self.waiter

    def _parse(self) -> None:
        if self.waiter is None or self.waiter.done():
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        lines = self.buffer[:end].decode("latin-1").split("\r\n")
        try:
            status = int(lines[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            self.waiter.set_exception(BadResponseError(lines[0][:80]))
            return
        length: int | None = None
        close = False
        for line in lines[1:]:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key == "content-length":
                length = int(value.strip())
            elif key == "connection" and "close" in value.lower():
                close = True
        if length is None:
            self.waiter.set_exception(BadResponseError("no content-length"))
            return
        if len(self.buffer) < end + 4 + length:
            return
        del self.buffer[: end + 4 + length]
        self.waiter.set_result((status, close))
        self.waiter = None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


@dataclass
class Options:
    port: int
    host: str
    rate: float
    path: str
    long_rate: float
    long_path: str
    max_seconds: float
    max_requests: int
    timeout: float
    max_inflight: int
    phase: Fraction
    out: Path


class LoadGenerator:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.idle: list[_Connection] = []
        self.inflight = 0
        self.lines: list[str] = []
        self.stop = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(_Connection, ADDRESS, self.options.port)
        return protocol

    async def one(self, scheduled: float, path: str, stream: int) -> None:
        options = self.options
        request = f"GET {path} HTTP/1.1\r\nHost: {options.host}\r\n\r\n".encode("ascii")
        started = time.monotonic()
        deadline = started + options.timeout
        outcome = "bad"
        retried = False
        self.inflight += 1
        try:
            for attempt in range(2):
                connection = None
                while self.idle and connection is None:
                    candidate = self.idle.pop()
                    if not candidate.lost:
                        connection = candidate
                reused = connection is not None
                if connection is None:
                    try:
                        connection = await asyncio.wait_for(
                            self._open(), max(0.001, deadline - time.monotonic())
                        )
                    except (OSError, TimeoutError):
                        outcome = "connect"
                        break
                try:
                    status, close = await asyncio.wait_for(
                        connection.request(request), max(0.001, deadline - time.monotonic())
                    )
                except TimeoutError:
                    connection.abort()
                    outcome = "timeout"
                    break
                except ClosedError as error:
                    if reused and not error.got_bytes and attempt == 0:
                        retried = True
                        continue
                    outcome = "reset"
                    break
                except BadResponseError:
                    connection.abort()
                    outcome = "bad"
                    break
                outcome = "ok" if 200 <= status < 300 else str(status)
                if close or connection.lost:
                    connection.close()
                else:
                    self.idle.append(connection)
                break
        finally:
            self.inflight -= 1
        latency = time.monotonic() - started
        self.lines.append(
            f"{scheduled:.6f},{started:.6f},{latency:.6f},{outcome},{stream},{int(retried)}\n"
        )

    async def schedule(self, rate: float, path: str, stream: int, t0: float) -> None:
        """Open loop: request i is due at t0 + i / rate, whatever came before."""
        options = self.options
        index = 0
        end = t0 + options.max_seconds
        limit = options.max_requests
        while not self.stop.is_set() and index < limit:
            now = time.monotonic()
            if now >= end:
                break
            due = min(limit, int((now - t0) * rate) + 1)
            while index < due:
                scheduled = t0 + index / rate
                if self.inflight >= options.max_inflight:
                    self.lines.append(f"{scheduled:.6f},{now:.6f},0,unsent,{stream},0\n")
                else:
                    task = asyncio.create_task(self.one(scheduled, path, stream))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
                index += 1
            delay = t0 + index / rate - time.monotonic()
            await asyncio.sleep(max(0.0005, delay))

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        options = self.options
        start = time.monotonic() + 0.05
        streams = []
        if options.rate > 0:
            t0 = start + float(options.phase) / options.rate
            streams.append(self.schedule(options.rate, options.path, 0, t0))
        if options.long_rate > 0:
            t0 = start + float(options.phase) / options.long_rate
            streams.append(self.schedule(options.long_rate, options.long_path, 1, t0))
        print(f"ready {start:.6f}", flush=True)
        await asyncio.gather(*streams)
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=options.timeout + 1)
        for task in list(self.tasks):  # only past the timeout: recorded as such
            task.cancel()
        for connection in self.idle:
            connection.close()
        options.out.write_text("".join(self.lines))


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True, help="load balancer port on 127.0.0.1")
    parser.add_argument("--host", required=True, help="Host header")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--path", default="/")
    parser.add_argument("--long-rate", type=float, default=0.0, help="long requests per second")
    parser.add_argument("--long-path", default="/long?sleep=1.5")
    parser.add_argument("--max-seconds", type=float, required=True)
    parser.add_argument("--max-requests", type=int, default=10_000_000)
    parser.add_argument("--timeout", type=float, default=10.0, help="per request, seconds")
    parser.add_argument("--max-inflight", type=int, default=1024)
    parser.add_argument("--phase", type=Fraction, default=Fraction(0), help="k/N of one interval")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if not 0 < args.max_seconds <= 3600:
        parser.error("--max-seconds must be in (0, 3600]")
    return Options(
        port=args.port,
        host=args.host,
        rate=args.rate,
        path=args.path,
        long_rate=args.long_rate,
        long_path=args.long_path,
        max_seconds=args.max_seconds,
        max_requests=args.max_requests,
        timeout=args.timeout,
        max_inflight=args.max_inflight,
        phase=args.phase,
        out=args.out,
    )


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(LoadGenerator(options).run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
