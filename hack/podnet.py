"""A pod network on this machine: HTTP "pods" with real, non-loopback addresses.

The API server refuses loopback addresses (127.0.0.0/8) in EndpointSlices, so
e2e tests and benchmarks cannot use 127.0.0.x pods. This module makes a
network namespace joined to the host by a veth pair, on a subnet from the
benchmarking range 198.18.0.0/15 (RFC 2544), and runs each pod as its own
process inside that namespace, bound to its own address. Traffic never
leaves the machine: the subnet is checked to be unused before anything is
created, and the route to it is checked to go through our veth before any
pod starts.

    with PodNetwork("hi-e2e") as net:
        pod = net.start_pod("web-1")          # → 198.18.0.10:8080
        ...
        pod.terminate()                       # SIGTERM: graceful, like a kubelet
        pod.kill()                            # SIGKILL: the process is gone

``python hack/podnet.py serve --name N --bind ADDR:PORT`` is the pod itself:
it answers every request with ``<name> <path>``; ``?sleep=S`` delays the
answer (a long request); on SIGTERM it stops accepting, finishes what is in
flight, and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

DEFAULT_SUBNET = ipaddress.IPv4Network("198.18.0.0/24")
# The whole benchmarking range is blackholed on the host and the route is left
# in place on purpose: when a namespace is gone (or not yet there), traffic to
# a stale pod address (a health check, a slow test) is dropped here instead
# of following the default route off the machine.
GUARD_RANGE = ipaddress.IPv4Network("198.18.0.0/15")
POD_PORT = 8080


class PodNetworkError(RuntimeError):
    pass


def _ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    command = ["ip", *args] if netns is None else ["ip", "netns", "exec", netns, "ip", *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise PodNetworkError(f"{' '.join(command)}: {result.stderr.strip()}")
    return result.stdout


def guard_blackhole() -> None:
    """Drop traffic to the benchmarking range unless a pod network serves it."""
    _ip("route", "replace", "blackhole", str(GUARD_RANGE))


def _subnet_in_use(subnet: ipaddress.IPv4Network) -> str | None:
    """What on this machine already uses addresses of ``subnet``, if anything."""
    for line in _ip("-4", "-o", "addr", "show").splitlines():
        words = line.split()
        if "inet" in words:
            network = ipaddress.ip_interface(words[words.index("inet") + 1]).network
            if network.overlaps(subnet):
                return f"address {words[words.index('inet') + 1]} on {words[1]}"
    for line in _ip("-4", "route", "show").splitlines():
        words = line.split()
        if words[0] == "blackhole" and ipaddress.ip_network(words[1]) == GUARD_RANGE:
            continue  # our own guard
        target = words[1] if words[0] in {"blackhole", "unreachable", "prohibit"} else words[0]
        if target != "default" and ipaddress.ip_network(target, strict=False).overlaps(subnet):
            return f"route {line.strip()}"
    return None


@dataclass
class Pod:
    name: str
    address: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def terminate(self) -> None:
        """SIGTERM: stop accepting, finish in-flight requests, exit (a kubelet's stop)."""
        if self.alive:
            self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: the process is gone at once, connections reset."""
        if self.alive:
            self.process.kill()

    def wait(self, timeout: float = 10.0) -> int:
        return self.process.wait(timeout)


@dataclass
class PodNetwork:
    """A namespace ``name`` with veth ``<name>-h`` (host) / ``<name>-p`` (pods)."""

    name: str
    subnet: ipaddress.IPv4Network = DEFAULT_SUBNET
    pods: dict[str, Pod] = field(default_factory=dict)
    _next: int = 10

    @property
    def host_address(self) -> str:
        return str(self.subnet.network_address + 1)

    def __enter__(self) -> PodNetwork:
        self.create()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.destroy()

    def create(self) -> None:
        if os.geteuid() != 0:
            raise PodNetworkError("a pod network needs root (network namespaces, veth)")
        in_use = _ip("netns", "pids", self.name, check=False).split()
        if in_use:
            # Another run (a test, a benchmark) owns it: deleting it would cut
            # that run's pods off mid-flight.
            raise PodNetworkError(f"network namespace {self.name} is in use by pids {in_use}")
        self.destroy()  # leftovers of an interrupted run
        used = _subnet_in_use(self.subnet)
        if used is not None:
            raise PodNetworkError(f"{self.subnet} is already in use here ({used})")
        guard_blackhole()
        host, pods = f"{self.name}-h", f"{self.name}-p"
        _ip("netns", "add", self.name)
        try:
            _ip("link", "add", host, "type", "veth", "peer", "name", pods)
            _ip("link", "set", pods, "netns", self.name)
            _ip("addr", "add", f"{self.host_address}/{self.subnet.prefixlen}", "dev", host)
            _ip("link", "set", host, "up")
            _ip("link", "set", "lo", "up", netns=self.name)
            _ip("link", "set", pods, "up", netns=self.name)
            # The pods' side of the link; pod addresses are added next to it.
            _ip(
                "addr",
                "add",
                f"{self.subnet.network_address + 2}/{self.subnet.prefixlen}",
                "dev",
                pods,
                netns=self.name,
            )
            route = _ip("-4", "route", "get", str(self.subnet.network_address + 10))
            if f"dev {host}" not in route:
                raise PodNetworkError(f"the route to {self.subnet} does not use {host}: {route}")
        except BaseException:
            self.destroy()
            raise

    def destroy(self) -> None:
        for pod in self.pods.values():
            pod.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                pod.wait(5)
        self.pods.clear()
        _ip("netns", "del", self.name, check=False)
        _ip("link", "del", f"{self.name}-h", check=False)

    def allocate(self) -> str:
        address = self.subnet.network_address + self._next
        if address not in self.subnet or address == self.subnet.broadcast_address:
            raise PodNetworkError(f"{self.subnet} has no free address left")
        self._next += 1
        return str(address)

    def start_pod(self, name: str, *, address: str | None = None, port: int = POD_PORT) -> Pod:
        """A new pod process on its own address (allocated unless given), listening."""
        address = address or self.allocate()
        _ip("addr", "replace", f"{address}/32", "dev", f"{self.name}-p", netns=self.name)
        process = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.name,
                sys.executable,
                str(Path(__file__).resolve()),
                "serve",
                "--name",
                name,
                "--bind",
                f"{address}:{port}",
            ],
            stdout=subprocess.PIPE,
            # Its own session: a Ctrl-C at the terminal is for the harness
            # (make run, a benchmark), which stops its pods through destroy().
            start_new_session=True,
        )
        ready = process.stdout.readline() if process.stdout else b""
        if not ready.startswith(b"ready"):
            process.kill()
            raise PodNetworkError(f"pod {name} did not start on {address}:{port}")
        pod = Pod(name, address, port, process)
        self.pods[name] = pod
        return pod


# --- the pod process -----------------------------------------------------------


async def serve(name: str, bind: str) -> None:
    host, _, port = bind.rpartition(":")
    in_flight: set[asyncio.Task[None]] = set()
    connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
    stopping = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connections[task] = writer
        try:
            while not stopping.is_set():
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                in_flight.add(task)
                lines = head.decode("latin-1").split("\r\n")
                target = lines[0].split(" ")[1] if " " in lines[0] else "/"
                length = 0
                for line in lines[1:]:
                    key, _, value = line.partition(":")
                    if key.strip().lower() == "content-length":
                        length = int(value.strip())
                if length:
                    await reader.readexactly(length)
                if "sleep=" in target:
                    await asyncio.sleep(float(target.split("sleep=")[1].split("&")[0]))
                body = f"{name} {target}".encode()
                # Once stopping, tell the client to close: a graceful pod hands
                # back its keep-alive connections instead of resetting them.
                closing = stopping.is_set()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                    + f"Content-Length: {len(body)}\r\nX-Pod: {name}\r\n".encode()
                    + (b"Connection: close\r\n" if closing else b"")
                    + b"\r\n"
                    + body
                )
                await writer.drain()
                in_flight.discard(task)
                if closing:
                    return
        except ConnectionError:
            return
        finally:
            in_flight.discard(task)
            connections.pop(task, None)
            writer.close()

    server = await asyncio.start_server(handle, host, int(port), backlog=1024)
    loop = asyncio.get_running_loop()
    # SIGINT too: a pod stopped by Ctrl-C stops as gracefully as by SIGTERM,
    # without KeyboardInterrupt tracebacks from every open connection.
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    loop.add_signal_handler(signal.SIGINT, stopping.set)
    print("ready", flush=True)
    await stopping.wait()
    server.close()  # no new connections
    if in_flight:
        await asyncio.wait(set(in_flight), timeout=30)
    # The idle keep-alive connections are closed, as a server's graceful
    # shutdown closes them, and their handlers return. Left to asyncio.run's
    # cancellation, Python 3.11 prints a traceback for each (asyncio streams'
    # callback asks a cancelled task for its exception): 9 pods stopping at
    # once spent their CPU on that, in the churn benchmark's scale-down.
    for writer in connections.values():
        writer.close()
    if connections:
        await asyncio.wait(set(connections), timeout=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run one pod (inside the namespace)")
    serve_parser.add_argument("--name", required=True)
    serve_parser.add_argument("--bind", required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.name, args.bind))


if __name__ == "__main__":
    main()
