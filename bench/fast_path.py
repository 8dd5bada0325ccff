"""The routing fast path with ingress-nginx features present but unused, against without them.

Renders two configurations of the same cluster (``--ingresses`` Ingresses,
one host each) through the real pipeline (translate → plan → render) and
runs a real HAProxy on each:

* ``plain``: the Ingresses carry no annotations, and the ConfigMap turns
  HSTS off;
* ``featured``: every other Ingress uses the features of issue 11 (HSTS on
  its TLS host, server-alias, from-to-www-redirect, upstream-hash-by,
  preserve-trailing-slash, enable-access-log, rewrite-target, a canary
  with a header rule, upstream-vhost, x-forwarded-prefix, proxy-body-size).

The measured requests go to an Ingress without annotations, so they pass
every feature's lines and map lookups without using any: what a route pays
for features it does not use. The pods are one HAProxy that answers 200 by
itself (a Python pod would be the bottleneck). A closed-loop client keeps
``--connections`` keep-alive connections busy for ``--seconds`` per round;
rounds alternate plain/featured so drift on a shared machine hits both.
The client (Python) limits req/s; HAProxy's CPU time per request (from
/proc) is the figure that shows what the fast path costs.
Only 127.0.0.1 is contacted. Prints one JSON line per round and a summary.

    PYTHONPATH=operator python3 -m bench.fast_path
    PYTHONPATH=operator python3 -m bench.fast_path --rounds 6 --seconds 5 --connections 32
    git archive main operator templates | tar -x -C /tmp/main-tree
    PYTHONPATH=operator python3 -m bench.fast_path --baseline /tmp/main-tree/operator
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import itertools
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from haproxy_ingress.cluster import ClusterView
from haproxy_ingress.haproxy import limits
from haproxy_ingress.haproxy.config import RenderOptions, default_certificate_path, render
from haproxy_ingress.haproxy.files import atomic_write
from haproxy_ingress.haproxy.paths import HAProxyPaths
from haproxy_ingress.model import TranslateOptions
from haproxy_ingress.plan import plan
from haproxy_ingress.tls import generate_default_certificate
from haproxy_ingress.translate import translate

NGINX = "nginx.ingress.kubernetes.io/"
MEASURED_HOST = "host-0.bench.example.com"  # never annotated


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _features(index: int) -> dict[str, str]:
    return {
        NGINX + "server-alias": f"alias-{index}.bench.example.com",
        NGINX + "from-to-www-redirect": "true",
        NGINX + "upstream-hash-by": "$request_uri",
        NGINX + "preserve-trailing-slash": "true",
        NGINX + "enable-access-log": "false",
        NGINX + "rewrite-target": "/",
        NGINX + "upstream-vhost": "internal.example.com",
        NGINX + "x-forwarded-prefix": "/api",
        NGINX + "proxy-body-size": "8m",
    }


def cluster(count: int, pod_port: int, *, featured: bool, tls: tuple[str, str]) -> list[Any]:
    objects: list[Any] = [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IngressClass",
            "metadata": {"name": "haproxy"},
            "spec": {"controller": "haproxy-ingress.kopf.dev/controller"},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "haproxy-ingress", "namespace": "haproxy-ingress"},
            "data": {"hsts": "true" if featured else "false"},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {"name": "bench-tls", "namespace": "bench"},
            "data": {"tls.crt": tls[0], "tls.key": tls[1]},
        },
    ]
    for name in ("web", "canary"):
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": "bench"},
                "spec": {"ports": [{"name": "http", "port": 80}]},
            }
        )
        objects.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{name}-1",
                    "namespace": "bench",
                    "labels": {"kubernetes.io/service-name": name},
                },
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
                "ports": [{"name": "http", "port": pod_port}],
            }
        )

    def ingress(name: str, host: str, service: str, annotations: dict[str, str]) -> Any:
        spec: dict[str, Any] = {
            "ingressClassName": "haproxy",
            "rules": [
                {
                    "host": host,
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": service, "port": {"number": 80}}},
                            }
                        ]
                    },
                }
            ],
        }
        if annotations:
            spec["tls"] = [{"hosts": [host], "secretName": "bench-tls"}]
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": name, "namespace": "bench", "annotations": annotations},
            "spec": spec,
        }

    for index in range(count):
        host = f"host-{index}.bench.example.com"
        used = featured and index % 2 == 1
        objects.append(ingress(f"ing-{index}", host, "web", _features(index) if used else {}))
        if used:
            objects.append(
                ingress(
                    f"canary-{index}",
                    host,
                    "canary",
                    {
                        NGINX + "canary": "true",
                        NGINX + "canary-by-header": "X-Canary",
                        NGINX + "canary-weight": "10",
                    },
                )
            )
    return objects


def write_config(directory: Path, objects: list[Any], port: int) -> Path:
    options = TranslateOptions()
    view, _ = ClusterView.from_objects(objects, options)
    desired = translate(view, options)
    paths = HAProxyPaths(directory)
    paths.ensure()
    atomic_write(
        default_certificate_path(paths),
        generate_default_certificate(datetime.datetime.now(datetime.UTC)).encode(),
        mode=0o600,
    )
    # As the controller plans (apply.Applier.budget): past the fd limit,
    # active checks are shed instead of HAProxy failing to start.
    limit = limits.descriptor_limit()
    budget = None if limit is None else limits.Budget(limit, 1, limits.threads())
    rendered = render(
        plan(None, desired, budget=budget).target,
        RenderOptions(paths, http_binds=(f"127.0.0.1:{port}",), https_binds=()),
    )
    for file in rendered.all:
        file.path.parent.mkdir(parents=True, exist_ok=True)
        file.path.write_bytes(file.content)
        file.path.chmod(file.mode)
    return rendered.config.path


POD_CONFIG = """\
global
    maxconn 4096
defaults
    mode http
    timeout client 30s
    timeout server 30s
    timeout connect 5s
frontend pod
{binds}
    http-request return status 200 content-type text/plain string ok
"""


def start_pod(base: Path, processes: list[subprocess.Popen[bytes]], addresses: int = 1) -> int:
    """The pods: one HAProxy answering 200 itself on 127.0.0.1..``addresses`` (a
    Python pod would be the bottleneck); returns their common port."""
    port = free_port()
    binds = "\n".join(f"    bind 127.0.0.{i + 1}:{port}" for i in range(addresses))
    (base / "pod.cfg").write_text(POD_CONFIG.format(binds=binds))
    processes.append(subprocess.Popen(["haproxy", "-f", str(base / "pod.cfg"), "-db"]))
    return port


def start_haproxy(config: Path, processes: list[subprocess.Popen[bytes]]) -> int:
    """``haproxy -c`` then start ``config`` in the foreground; returns its pid."""
    check = subprocess.run(["haproxy", "-c", "-f", str(config)], capture_output=True, check=False)
    if check.returncode != 0:
        raise SystemExit(check.stderr.decode())
    processes.append(
        subprocess.Popen(
            ["haproxy", "-f", str(config), "-db"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    return processes[-1].pid


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
        process.wait(timeout=30)


def alternating(variants: Sequence[str], rounds: int) -> Iterator[tuple[int, str]]:
    """(round, variant), each round in the reverse order of the one before, so
    drift on a shared machine hits every variant alike."""
    for round_ in range(rounds):
        for variant in variants if round_ % 2 == 0 else tuple(reversed(variants)):
            yield round_, variant


async def _client(
    port: int, requests: Sequence[bytes], deadline: float, latencies: list[float]
) -> None:
    """One keep-alive connection sending ``requests`` in turn until ``deadline``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for request in itertools.cycle(requests):
            sent = time.perf_counter()
            if sent >= deadline:
                break
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"unexpected answer {head[:40]!r}")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - sent)
    finally:
        writer.close()


def request(host: str, path: str = "/app/x") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (/proc/<pid>/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Round:
    """One closed-loop round against one HAProxy."""

    req_per_s: float
    cpu_us_per_req: float  # HAProxy's user + system time per answered request
    latencies: list[float]  # seconds, one per request


async def measure(
    port: int,
    pid: int,
    connections: int,
    seconds: float,
    requests: Sequence[bytes] = (request(MEASURED_HOST),),
) -> Round:
    """``connections`` clients busy for ``seconds``, each cycling through ``requests``
    (each starts at another offset, so every request is in flight)."""
    latencies: list[float] = []
    cpu = cpu_seconds(pid)
    start = time.perf_counter()
    deadline = start + seconds
    step = max(len(requests) // connections, 1)
    await asyncio.gather(
        *(
            _client(port, [*requests[i * step :], *requests[: i * step]], deadline, latencies)
            for i in range(connections)
        )
    )
    total = len(latencies)
    return Round(
        total / (time.perf_counter() - start),
        (cpu_seconds(pid) - cpu) * 1e6 / max(total, 1),
        latencies,
    )


_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+)-----.*?-----END \1-----\n?", re.S)


def _cert() -> tuple[str, str]:
    """A certificate and key for the TLS hosts (no TLS request is measured)."""
    pem = generate_default_certificate(datetime.datetime.now(datetime.UTC))
    blocks = [(m.group(1), m.group(0)) for m in _PEM_BLOCK.finditer(pem)]
    crt = "".join(text for kind, text in blocks if kind == "CERTIFICATE")
    key = "".join(text for kind, text in blocks if "KEY" in kind)
    return base64.b64encode(crt.encode()).decode(), base64.b64encode(key.encode()).decode()


def render_with(tree: Path, directory: Path, objects: list[Any], port: int) -> Path:
    """Render ``objects`` with another checkout's code (``--baseline``), in a subprocess."""
    source = directory.parent / f"{directory.name}.json"
    source.write_text(json.dumps(objects))
    script = (
        "import json, sys; from pathlib import Path; from bench.fast_path import write_config; "
        "print(write_config(Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text()), "
        "int(sys.argv[3])))"
    )
    here = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", script, str(directory), str(source), str(port)],
        env={**os.environ, "PYTHONPATH": f"{tree}:{here}", "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(done.stdout.strip().splitlines()[-1])


def add_round_arguments(parser: argparse.ArgumentParser, *, rounds: int) -> None:
    """The flags of a side-by-side run: rounds, their length, the load, a baseline."""
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--baseline",
        type=Path,
        help="an operator/ source tree of another version (e.g. `git archive main`): its "
        "rendering of the (plain) cluster is measured too, as `baseline`",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ingresses", type=int, default=200)
    add_round_arguments(parser, rounds=4)
    args = parser.parse_args()
    variants = ("plain", "featured", *(("baseline",) if args.baseline else ()))
    tls = _cert()
    with tempfile.TemporaryDirectory(prefix="bench-fast-path-") as tmp:
        base = Path(tmp)
        processes: list[subprocess.Popen[bytes]] = []
        ports = {}
        pids = {}
        try:
            pod_port = start_pod(base, processes)
            for variant in variants:
                ports[variant] = free_port()
                objects = cluster(args.ingresses, pod_port, featured=variant == "featured", tls=tls)
                if variant == "baseline":
                    config = render_with(args.baseline, base / variant, objects, ports[variant])
                else:
                    config = write_config(base / variant, objects, ports[variant])
                pids[variant] = start_haproxy(config, processes)
            time.sleep(1.5)  # every one listening, health checks run
            results: dict[str, list[float]] = {v: [] for v in variants}
            cpu: dict[str, list[float]] = {v: [] for v in variants}
            for round_, variant in alternating(variants, args.rounds):
                measured = asyncio.run(
                    measure(ports[variant], pids[variant], args.connections, args.seconds)
                )
                results[variant].append(measured.req_per_s)
                cpu[variant].append(measured.cpu_us_per_req)
                line = {
                    "round": round_,
                    "variant": variant,
                    "req_per_s": round(measured.req_per_s),
                    "haproxy_cpu_us_per_req": round(measured.cpu_us_per_req, 1),
                }
                print(json.dumps(line))
            summary: dict[str, Any] = {
                "ingresses": args.ingresses,
                "connections": args.connections,
            }
            for variant in variants:
                summary[f"{variant}_median_req_per_s"] = round(statistics.median(results[variant]))
                summary[f"{variant}_median_cpu_us_per_req"] = round(
                    statistics.median(cpu[variant]), 1
                )
            print(json.dumps(summary))
        finally:
            stop(processes)


if __name__ == "__main__":
    main()
