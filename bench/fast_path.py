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
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from haproxy_ingress.cluster import ClusterView
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
    rendered = render(
        plan(None, desired).target,
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
    bind 127.0.0.1:{port}
    http-request return status 200 content-type text/plain string ok
"""


async def _client(port: int, host: str, deadline: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = f"GET /app/x HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    done = 0
    try:
        while time.monotonic() < deadline:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"unexpected answer {head[:40]!r}")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            done += 1
    finally:
        writer.close()
        counts.append(done)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (/proc/<pid>/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(port: int, pid: int, connections: int, seconds: float) -> tuple[float, float]:
    """(requests per second, HAProxy CPU microseconds per request)."""
    counts: list[int] = []
    cpu = cpu_seconds(pid)
    start = time.monotonic()
    deadline = start + seconds
    await asyncio.gather(
        *(_client(port, MEASURED_HOST, deadline, counts) for _ in range(connections))
    )
    total = sum(counts)
    return total / (time.monotonic() - start), (cpu_seconds(pid) - cpu) * 1e6 / max(total, 1)


_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+)-----.*?-----END \1-----\n?", re.S)


def _cert() -> tuple[str, str]:
    """A certificate and key for the TLS hosts (no TLS request is measured)."""
    pem = generate_default_certificate(datetime.datetime.now(datetime.UTC))
    blocks = [(m.group(1), m.group(0)) for m in _PEM_BLOCK.finditer(pem)]
    crt = "".join(text for kind, text in blocks if kind == "CERTIFICATE")
    key = "".join(text for kind, text in blocks if "KEY" in kind)
    return base64.b64encode(crt.encode()).decode(), base64.b64encode(key.encode()).decode()


def _render_with(tree: Path, directory: Path, objects: list[Any], port: int) -> Path:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ingresses", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--baseline",
        type=Path,
        help="an operator/ source tree of another version (e.g. `git archive main`): its "
        "rendering of the plain cluster is measured too, as `baseline`",
    )
    args = parser.parse_args()
    variants = ("plain", "featured", *(("baseline",) if args.baseline else ()))
    tls = _cert()
    with tempfile.TemporaryDirectory(prefix="bench-fast-path-") as tmp:
        base = Path(tmp)
        pod_port = free_port()
        (base / "pod.cfg").write_text(POD_CONFIG.format(port=pod_port))
        processes = [subprocess.Popen(["haproxy", "-f", str(base / "pod.cfg"), "-db"])]
        ports = {}
        pids = {}
        try:
            for variant in variants:
                ports[variant] = free_port()
                objects = cluster(args.ingresses, pod_port, featured=variant == "featured", tls=tls)
                if variant == "baseline":
                    config = _render_with(args.baseline, base / variant, objects, ports[variant])
                else:
                    config = write_config(base / variant, objects, ports[variant])
                check = subprocess.run(
                    ["haproxy", "-c", "-f", str(config)], capture_output=True, check=False
                )
                if check.returncode != 0:
                    raise SystemExit(check.stderr.decode())
                processes.append(
                    subprocess.Popen(
                        ["haproxy", "-f", str(config), "-db"],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
                pids[variant] = processes[-1].pid
            time.sleep(1.5)  # every one listening, health checks run
            results: dict[str, list[float]] = {v: [] for v in variants}
            cpu: dict[str, list[float]] = {v: [] for v in variants}
            for round_ in range(args.rounds):
                order = variants if round_ % 2 == 0 else tuple(reversed(variants))
                for variant in order:
                    rate, per_request = asyncio.run(
                        measure(ports[variant], pids[variant], args.connections, args.seconds)
                    )
                    results[variant].append(rate)
                    cpu[variant].append(per_request)
                    line = {
                        "round": round_,
                        "variant": variant,
                        "req_per_s": round(rate),
                        "haproxy_cpu_us_per_req": round(per_request, 1),
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
            for process in processes:
                process.terminate()
                process.wait(timeout=10)


if __name__ == "__main__":
    main()
