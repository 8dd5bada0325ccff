"""Our rendered haproxy.cfg against a minimal hand-written one (issue 13, item 4).

For 1 and for 10,000 Ingresses (``--sizes``), each Ingress one host and two
paths (``/`` and ``/api``, Prefix) to its own Service with ``--pods``
endpoints (default 1, see ``main``), it runs side by side:

* ``ours``: the cluster rendered through the real pipeline (translate →
  plan, with the fd budget the controller uses → render), as it would run;
* ``hand``: what a competent human would write for the same routes: one
  frontend, ``use_backend`` from an exact map then a ``map_beg`` map keyed
  by host + path (``base``), one backend per Service with plain servers, no
  Lua, no variables; servers health-checked exactly when ours are (at 10k
  ours sheds checks past the fd limit) and as often (ours stretches the
  intervals under health-check-max-rate), so only the request path differs;
* ``baseline`` (with ``--baseline TREE``): ours as another checkout renders
  it (before/after in one run).

The pods are one HAProxy that answers 200 itself (bench/fast_path.py's), on
127.0.0.1..``--pods``. The requests cycle over both paths of up to
``--hosts`` hosts spread over the cluster. Rounds alternate the variants'
order so drift on the shared machine hits all alike. Figures per round and
variant: req/s (closed loop, Python client: it may be the bottleneck on
2 cores), HAProxy CPU µs per request (from /proc: the figure that shows
the request path's cost), latency p50/p99; then one summary line per size
with medians and ours/hand ratios. Every line carries the load average at
its start and end. Only 127.0.0.1-3 are contacted.

    PYTHONPATH=operator python3 -m bench.hand_config
    PYTHONPATH=operator python3 -m bench.hand_config --sizes 1 --rounds 6 --seconds 3
    git archive main operator templates | tar -x -C /tmp/main-tree
    PYTHONPATH=operator python3 -m bench.hand_config --baseline /tmp/main-tree/operator
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.kube import endpoint, endpoint_slice, ingress, ingress_class, path, rule, service

from bench.fast_path import (
    add_round_arguments,
    alternating,
    free_port,
    measure,
    render_with,
    request,
    start_haproxy,
    start_pod,
    stop,
    write_config,
)

PATHS = ("/", "/api")  # Prefix, both to the Ingress's own Service
# What the clients ask for: one request under each path.
REQUEST_PATHS = ("/static/app.js", "/api/v1/items")


def load() -> float:
    return round(os.getloadavg()[0], 2)


def host(index: int) -> str:
    return f"app{index}.example.com"


def cluster(count: int, pods: int, pod_port: int) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = [ingress_class(default=True)]
    for i in range(count):
        name = f"app{i}"
        objects.append(service(name))
        objects.append(
            endpoint_slice(
                name,
                *(endpoint(f"127.0.0.{j + 1}") for j in range(pods)),
                ports=[{"name": "http", "port": pod_port}],
            )
        )
        objects.append(ingress(name, rule(host(i), *(path(p, name) for p in PATHS))))
    return objects


HAND_CONFIG = """\
defaults
    mode http
    option forwardfor
    option http-keep-alive
    timeout client 50s
    timeout http-request 10s
    timeout connect 5s
    timeout server 60s
frontend fe_http
    bind 127.0.0.1:{port}
    use_backend %[base,map({base}/exact.map)] if {{ base,map({base}/exact.map) -m found }}
    use_backend %[base,map_beg({base}/prefix.map)] if {{ base,map_beg({base}/prefix.map) -m found }}
    default_backend be_404
backend be_404
    http-request return status 404
"""


def write_hand_config(
    directory: Path, count: int, pods: int, pod_port: int, port: int, *, checks: str
) -> Path:
    """The hand-written configuration: Prefix ``/api`` is the exact key ``host/api``
    and the prefix key ``host/api/`` (so ``/apix`` is not under it), ``/`` the
    prefix key ``host/``; the longest prefix wins in ``map_beg``."""
    directory.mkdir(parents=True)
    exact: list[str] = []
    prefix: list[str] = []
    backends: list[str] = []
    check = f" check {checks}" if checks else ""
    for i in range(count):
        name = f"app{i}"
        for value in PATHS:
            trimmed = value.rstrip("/")
            if trimmed:
                exact.append(f"{host(i)}{trimmed} {name}")
            prefix.append(f"{host(i)}{trimmed}/ {name}")
        servers = "".join(
            f"    server s{j + 1} 127.0.0.{j + 1}:{pod_port}{check}\n" for j in range(pods)
        )
        backends.append(f"backend {name}\n{servers}")
    (directory / "exact.map").write_text("\n".join(exact) + "\n")
    (directory / "prefix.map").write_text("\n".join(prefix) + "\n")
    config = directory / "haproxy.cfg"
    config.write_text(HAND_CONFIG.format(base=directory, port=port) + "".join(backends))
    return config


# The timing words of a server's active checks.
CHECK_TIMING = ("inter", "fastinter", "downinter", "fall", "rise")


def health_checks(config: Path) -> str:
    """How often our rendered configuration checks its servers (the timing words
    of its first checked default-server, e.g. ``inter 16000ms fall 3 rise 2``),
    or "" if it runs no active checks. At 10k the plan stretches the intervals
    (health-check-max-rate): the hand config's servers get the same."""
    for line in config.read_text().splitlines():
        words = line.split()
        if words[:1] == ["default-server"] and "check" in words:
            return " ".join(
                f"{word} {value}"
                for word, value in itertools.pairwise(words)
                if word in CHECK_TIMING
            )
    return ""


def requests_for(count: int, hosts: int) -> list[bytes]:
    step = max(count // hosts, 1)
    return [request(host(i), p) for i in range(0, count, step)[:hosts] for p in REQUEST_PATHS]


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(int(q * len(ordered)), len(ordered) - 1)] * 1000, 2)


def run_size(count: int, args: argparse.Namespace, base: Path) -> None:
    started = load()
    variants = ("ours", "hand", *(("baseline",) if args.baseline else ()))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        pod_port = start_pod(base, processes, args.pods)
        objects = cluster(count, args.pods, pod_port)
        ports = {variant: free_port() for variant in variants}
        configs = {"ours": write_config(base / "ours", objects, ports["ours"])}
        if args.baseline:
            configs["baseline"] = render_with(
                args.baseline, base / "baseline", objects, ports["baseline"]
            )
        checks = health_checks(configs["ours"])
        configs["hand"] = write_hand_config(
            base / "hand", count, args.pods, pod_port, ports["hand"], checks=checks
        )
        pids = {variant: start_haproxy(configs[variant], processes) for variant in variants}
        time.sleep(2 + count / 2000)  # listening, first health checks done
        requests = requests_for(count, args.hosts)
        figures: dict[str, dict[str, list[float]]] = {
            v: {"req_per_s": [], "cpu_us": [], "p50_ms": [], "p99_ms": []} for v in variants
        }
        for round_, variant in alternating(variants, args.rounds):
            round_load = load()
            done = asyncio.run(
                measure(ports[variant], pids[variant], args.connections, args.seconds, requests)
            )
            measured = {
                "req_per_s": done.req_per_s,
                "cpu_us": done.cpu_us_per_req,
                "p50_ms": _ms(done.latencies, 0.5),
                "p99_ms": _ms(done.latencies, 0.99),
            }
            for key, value in measured.items():
                figures[variant][key].append(value)
            line = {
                "ingresses": count,
                "round": round_,
                "variant": variant,
                "req_per_s": round(done.req_per_s),
                "haproxy_cpu_us_per_req": round(done.cpu_us_per_req, 1),
                "p50_ms": measured["p50_ms"],
                "p99_ms": measured["p99_ms"],
                "load_start": round_load,
                "load_end": load(),
            }
            print(json.dumps(line), flush=True)
        median = {v: {k: statistics.median(xs) for k, xs in f.items()} for v, f in figures.items()}
        summary: dict[str, Any] = {
            "summary": "hand_config",
            "ingresses": count,
            "pods": args.pods,
            "health_checks": checks or None,
            "connections": args.connections,
            "rounds": args.rounds,
            "seconds": args.seconds,
            "load_start": started,
            "load_end": load(),
        }
        for variant in variants:
            summary[f"{variant}_req_per_s"] = round(median[variant]["req_per_s"])
            summary[f"{variant}_cpu_us_per_req"] = round(median[variant]["cpu_us"], 1)
            summary[f"{variant}_p50_ms"] = round(median[variant]["p50_ms"], 2)
            summary[f"{variant}_p99_ms"] = round(median[variant]["p99_ms"], 2)
        for variant in ("ours", *(("baseline",) if args.baseline else ())):
            # req/s: higher is better, so ours/hand; CPU per request: hand/ours,
            # so that both read "fraction of the hand config's efficiency".
            summary[f"{variant}_over_hand_req_per_s"] = round(
                median[variant]["req_per_s"] / median["hand"]["req_per_s"], 3
            )
            summary[f"hand_over_{variant}_cpu_per_req"] = round(
                median["hand"]["cpu_us"] / median[variant]["cpu_us"], 3
            )
            summary[f"{variant}_over_hand_p99"] = round(
                median[variant]["p99_ms"] / median["hand"]["p99_ms"], 2
            )
        print(json.dumps(summary), flush=True)
    finally:
        stop(processes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10000", help="Ingress counts, comma-separated")
    # One endpoint per Service by default: with 3 (issue 13's clusters) and 64
    # hosts in rotation at 10k, HAProxy's idle server-connection reuse over
    # ~200 servers of one pod makes CPU per request erratic (40-400 us, for
    # either config; `http-reuse never` steadies it), hiding the request path.
    parser.add_argument("--pods", type=int, default=1, choices=range(1, 9))
    parser.add_argument("--hosts", type=int, default=64, help="hosts the requests cycle over")
    add_round_arguments(parser, rounds=6)
    args = parser.parse_args()
    for size in (int(text) for text in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="bench-hand-") as tmp:
            run_size(size, args, Path(tmp))


if __name__ == "__main__":
    main()
