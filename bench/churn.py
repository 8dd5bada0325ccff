"""Endpoint churn under steady load: failed requests, reloads, convergence.

One run starts a private control plane (hack/localcluster.py), installs
manifests/, runs the controller as a subprocess with the shipped
ServiceAccount (tests/e2e/operator.py), and plays the kubelet for real pod
processes in a network namespace (hack/podnet.py). For every mode and
scenario a load generator (bench/loadgen.py) holds a steady request rate
through HAProxy and records every request; one JSON line is printed per
scenario. See bench/README.md for what each number means.

    python bench/churn.py                        # every mode and scenario, 500 req/s
    python bench/churn.py --rate 2000 --modes controller
    python bench/churn.py --quick --scenarios scale,race-a

Traffic goes only to 127.0.0.1 (HAProxy, the metrics port, the API server)
and to the pod network's own subnet; every load is bounded in time and count.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import importlib
import ipaddress
import itertools
import json
import math
import os
import re
import shlex
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.e2e.conftest import (  # noqa: E402
    Kube,
    localcluster,
    pod_manifest,
    pod_status_patch,
    service_manifest,
)

from haproxy_ingress.config import ControllerConfig  # noqa: E402
from haproxy_ingress.haproxy.commands import (  # noqa: E402
    RuntimeCommandError,
    parse_csv_stat,
    parse_servers_state,
)
from haproxy_ingress.haproxy.paths import HAProxyPaths  # noqa: E402
from haproxy_ingress.haproxy.process import HAProxyError, HAProxyProcess  # noqa: E402
from haproxy_ingress.haproxy.runtime import RuntimeClient, RuntimeConnectionError  # noqa: E402

# tests/e2e/operator.py (start_controller, ingress) imports hack/podnet.py via
# sys.path, which mypy's search path (pyproject: operator/) does not include,
# so it is imported at run time and its types are Any here.
_e2e: Any = importlib.import_module("tests.e2e.operator")
start_controller = _e2e.start_controller
ingress = _e2e.ingress
PodNetwork = _e2e.PodNetwork
Pod: TypeAlias = Any  # hack/podnet.py Pod
Network: TypeAlias = Any  # hack/podnet.py PodNetwork
RunningController: TypeAlias = Any  # tests/e2e/operator.py RunningController

SERVICE = "web"
PORT_NAME = "http"
POD_GRACE_SECONDS = 30
RESYNC_INTERVAL = ControllerConfig.resync_interval  # the controller's default
SLOW_SECONDS = 0.1  # latency_ms.over_100ms counts successful requests slower than this
ALL_MODES = ("controller", "no-retries", "always-reload")
ALL_SCENARIOS = ("scale", "rolling", "race-a", "race-b", "kill", "long")
# ConfigMap data on top of manifests/20-configmap.yaml for each mode.
NO_RETRIES = {
    "retries": "0",
    "retry-on": "none",
    "redispatch": "false",
    "drain-terminating": "false",
    "health-check-observe": "none",
}
# HAProxy admin-state bits (show servers state, srv_admin_state). 0x04, "disabled
# in config", stays set on 2.6.12 after `set server state ready` takes a slot out
# of maintenance, so it is not a maintenance bit here; untouched slots are
# recognised by their placeholder address instead.
_ADMIN_MAINT = 0x01 | 0x02 | 0x20 | 0x40
_ADMIN_DRAIN = 0x08 | 0x10


def log(message: str) -> None:
    print(f"[churn {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


# HAProxy's request log (option httplog, on the controller's stdout):
# backend/server TR/Tw/Tc/Tr/Ta status ... ac/fc/bc/sc/retries sq/bq "METHOD URI
_LOG_LINE = re.compile(
    r" (?P<backend>\S+)/\S+ -?\d+/(?P<Tw>-?\d+)/(?P<Tc>-?\d+)/(?P<Tr>-?\d+)/(?P<Ta>-?\d+)"
    r" \d{3} .*? \d+/\d+/\d+/\d+/(?P<retries>\+?\d+) \d+/\d+ \"\S+ (?P<uri>\S+)"
)


def haproxy_timers(log: str, backend: str) -> dict[str, Any]:
    """HAProxy's own view of the steady stream: what a slow request waited for.

    ``Tw`` holds queueing and the turn-around timer before a connection retry
    (min(timeout connect, 1 s) in 2.6), ``Tc`` the connect, ``Tr`` the pod's
    answer; a client latency over 100 ms that none of them explains is time
    spent outside HAProxy (the load generator or HAProxy not getting a CPU).
    """
    entries = []
    for line in log.splitlines():
        match = _LOG_LINE.search(line)
        if match is not None and match["backend"] == backend and "sleep=" not in match["uri"]:
            entries.append(match)
    retried = [m for m in entries if m["retries"] != "0"]
    return {
        "requests": len(entries),
        "retried": len(retried),
        "Tw_max_retried": max((int(m["Tw"]) for m in retried), default=None),
        **{
            f"{timer}_max": max((int(m[timer]) for m in entries), default=None)
            for timer in ("Tw", "Tc", "Tr", "Ta")
        },
        "Ta_over_100ms": sum(1 for m in entries if int(m["Ta"]) > 100),
    }


def _stat(process: Path) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces)."""
    return (process / "stat").read_text().rsplit(")", 1)[1].split()


def _cpu(stat: list[str]) -> float:
    """User + system CPU seconds, from :func:`_stat`'s fields."""
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far (/proc/<pid>/stat)."""
    return _cpu(_stat(Path(f"/proc/{pid}")))


# Who a process is, from its command line: the first rule that matches names it.
CPU_GROUPS: tuple[tuple[str, Callable[[list[str]], bool]], ...] = (
    ("controller", lambda argv: "haproxy_ingress.cli" in argv and "run" in argv),
    ("haproxy", lambda argv: Path(argv[0]).name == "haproxy"),
    ("apiserver", lambda argv: Path(argv[0]).name == "kube-apiserver"),
    ("etcd", lambda argv: Path(argv[0]).name == "etcd"),
    ("controller-manager", lambda argv: Path(argv[0]).name == "kube-controller-manager"),
    ("loadgen", lambda argv: "bench.loadgen" in argv),
    ("pods", lambda argv: any(Path(a).name == "podnet.py" for a in argv[:3])),
)


@dataclass(frozen=True)
class _Process:
    group: str
    cpu: float  # user + system seconds so far
    parent: int
    session: int


def _processes() -> dict[int, _Process]:
    """Every process readable now, by pid."""
    found: dict[int, _Process] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # Split on NUL: a kernel thread's is empty, so argv is [""].
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            stat = _stat(entry)
        except OSError:
            continue  # gone meanwhile
        pid = int(entry.name)
        group = "bench" if pid == os.getpid() else "other" if argv[0] else "kernel"
        group = next((name for name, matches in CPU_GROUPS if matches(argv)), group)
        found[pid] = _Process(group, _cpu(stat), parent=int(stat[1]), session=int(stat[3]))
    return found


# What stands in for other machines: the clients, the pods and the control
# plane (see --background-nice). The controller, HAProxy and this process (the
# monitor that times convergence, the simulated kubelet) keep their priority.
BACKGROUND_GROUPS = frozenset({"loadgen", "pods", "apiserver", "etcd", "controller-manager"})


def renice_background(nice: int, root: int | None = None) -> int:
    """Give the descendants of ``root`` (this process by default) in
    BACKGROUND_GROUPS ``nice``; returns how many processes.

    Only descendants: another run's control plane on the machine is not ours
    to slow. Linux's nice is per thread, hence the task walk. And with
    autogroup scheduling (``kernel.sched_autogroup_enabled``, on here) the
    scheduler first shares the CPU equally between sessions, nice counting
    only inside one: every pod, the load generator and the control plane run
    in sessions of their own, so each such session's autogroup gets ``nice``
    too (``/proc/<pid>/autogroup``); never a session that also holds this
    process, the controller or HAProxy.
    """
    processes = _processes()
    children: dict[int, list[int]] = {}
    for pid, process in processes.items():
        children.setdefault(process.parent, []).append(pid)
    descendants: set[int] = set()
    todo = [os.getpid() if root is None else root]
    while todo:
        for child in children.get(todo.pop(), []):
            descendants.add(child)
            todo.append(child)
    background = sorted(p for p in descendants if processes[p].group in BACKGROUND_GROUPS)
    kept = {os.getsid(0)} | {
        p.session for p in processes.values() if p.group in ("controller", "haproxy")
    }
    reniced = 0
    for pid in background:
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                os.setpriority(os.PRIO_PROCESS, int(task.name), nice)
            autogroup = Path(f"/proc/{pid}/autogroup")
            if processes[pid].session not in kept and autogroup.exists():
                autogroup.write_text(str(nice))
        except OSError:
            continue  # gone meanwhile
        reniced += 1
    return reniced


def _busy_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, in jiffies (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is already in user
    return total - idle, total


class CpuSampler:
    """The machine's CPU while the churn runs: who used it, and how busy it was when.

    A convergence or client-latency tail with the machine near 100 % busy is
    the machine's (two vCPUs shared by the control plane, the load generator,
    the pods and the controller); one with idle CPU is a wait to explain. The
    busy fraction is sampled every ``interval`` (whole machine, all cores);
    the per-group CPU counts processes alive at the end (a pod that exited
    meanwhile is left out: its time shows only in the machine's).
    """

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.samples: list[tuple[float, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)
        self._start_cpu: dict[int, _Process] = {}
        self._end_cpu: dict[int, _Process] = {}
        self.start = 0.0

    def __enter__(self) -> CpuSampler:
        self._start_cpu = _processes()
        self.start = time.monotonic()
        self.samples.append((self.start, *_busy_jiffies()))
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.monotonic(), *_busy_jiffies()))
        self._end_cpu = _processes()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.samples.append((time.monotonic(), *_busy_jiffies()))

    def summary(self) -> dict[str, Any]:
        by_group: dict[str, float] = {}
        for pid, process in self._end_cpu.items():
            before = self._start_cpu.get(pid)
            # A pid seen as another group before was reused (or exec'd) meanwhile.
            used = process.cpu - (before.cpu if before and before.group == process.group else 0)
            by_group[process.group] = by_group.get(process.group, 0.0) + used
        (_, busy0, total0), (_, busy1, total1) = self.samples[0], self.samples[-1]
        timeline = [
            [_ms(b[0] - self.start), round(100 * (b[1] - a[1]) / max(b[2] - a[2], 1))]
            for a, b in itertools.pairwise(self.samples)
        ]
        return {
            "busy_pct": round(100 * (busy1 - busy0) / max(total1 - total0, 1)),
            "cpu_ms": {k: round(v * 1000) for k, v in sorted(by_group.items()) if v > 0},
            # [ms since the churn began, % of all cores busy in the interval ending then]
            "busy_timeline": timeline,
        }


def machine() -> dict[str, Any]:
    return {"nproc": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()]}


# --- the Kubernetes API, directly (kubectl costs ~0.2 s of CPU per call) --------------


class Api:
    """Admin calls to the API server over one keep-alive TLS connection per thread."""

    def __init__(self, kube: Kube) -> None:
        url = urllib.parse.urlsplit(kube.server)
        # 127.0.0.1, or the local node's own address (hack/localnode.py).
        assert url.hostname is not None and ipaddress.ip_address(url.hostname).is_private, url
        self.host, self.port = url.hostname, url.port or 443
        pki = kube.cluster.pki
        self.ssl = ssl.create_default_context(cafile=str(pki.ca_crt))
        self.ssl.load_cert_chain(str(pki.crt("admin")), str(pki.key("admin")))
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPSConnection:
        connection: http.client.HTTPSConnection | None = getattr(self._local, "c", None)
        if connection is None:
            connection = http.client.HTTPSConnection(
                self.host, self.port, context=self.ssl, timeout=30
            )
            self._local.c = connection
        return connection

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        ok: Sequence[int] = (200, 201, 202),
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        for attempt in range(2):
            connection = self._connection()
            try:
                connection.request(method, path, body=data, headers=headers)
                response = connection.getresponse()
                text = response.read()
                break
            except (OSError, http.client.HTTPException):
                connection.close()
                self._local.c = None
                if attempt:
                    raise
        parsed = json.loads(text) if text else None
        if response.status not in ok:
            raise RuntimeError(f"{method} {path}: {response.status} {text[:300]!r}")
        return response.status, parsed

    def pods(self, namespace: str) -> str:
        return f"/api/v1/namespaces/{namespace}/pods"


# --- convergence: the API server's slices vs HAProxy's servers --------------------------


def endpoint_state(conditions: dict[str, Any], drain: bool) -> str:
    """EndpointSlice conditions → the slot state the controller should set."""
    ready = conditions.get("ready") is not False
    serving = conditions.get("serving", ready) is not False
    terminating = conditions.get("terminating") is True
    if ready and not terminating:
        return "ready"
    if serving and terminating:
        return "drain" if drain else "maint"
    return "maint"


_RANK = {"ready": 0, "drain": 1, "maint": 2}


def expected_servers(slices: dict[str, dict[str, Any]], drain: bool) -> dict[str, str]:
    """address → ready|drain for every endpoint that should hold an active slot."""
    found: dict[str, str] = {}
    for item in slices.values():
        for endpoint in item.get("endpoints") or []:
            addresses = endpoint.get("addresses") or []
            if not addresses:
                continue
            state = endpoint_state(endpoint.get("conditions") or {}, drain)
            known = found.get(addresses[0])
            if known is None or _RANK[state] < _RANK[known]:
                found[addresses[0]] = state
    return {address: state for address, state in found.items() if state != "maint"}


def actual_servers(rows: Sequence[dict[str, str]]) -> dict[str, str]:
    """address → ready|drain for every slot HAProxy has out of maintenance."""
    result: dict[str, str] = {}
    for row in rows:
        admin = int(row["srv_admin_state"])
        if admin & _ADMIN_MAINT or row["srv_addr"] == "127.0.0.1":
            continue
        result[row["srv_addr"]] = "drain" if admin & _ADMIN_DRAIN else "ready"
    return result


@dataclass
class Sample:
    at: float  # monotonic time the slice event arrived
    latency: float  # until HAProxy showed that state (or a later one)
    superseded: bool  # HAProxy went straight to a later event's state


class Monitor:
    """Watches the Service's EndpointSlices and polls HAProxy's servers, in a thread.

    Each slice event that changes the expected server set is timestamped on
    arrival; its convergence time is the first poll (every ``interval``) at
    which HAProxy shows that set or the set of a later event (coalesced by
    the debounce: the earlier event then counts as superseded, with its own,
    longer, time).
    """

    def __init__(
        self,
        api: Api,
        namespace: str,
        backend: str,
        socket_path: Path,
        *,
        drain: bool,
        interval: float = 0.004,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.backend = backend
        self.socket_path = socket_path
        self.drain = drain
        self.interval = interval
        self.lock = threading.Lock()
        self.slices: dict[str, dict[str, Any]] = {}
        self.expected: dict[str, str] | None = None
        self.actual: dict[str, str] | None = None
        self.pending: list[tuple[float, dict[str, str]]] = []
        self.samples: list[Sample] = []
        self.events = 0
        self.polls = 0
        self.poll_errors = 0
        self.last_rows: Sequence[dict[str, str]] = ()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="monitor", daemon=True)

    def start(self) -> Monitor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        tasks = [asyncio.create_task(self._watch()), asyncio.create_task(self._poll())]
        while not self._stop.is_set():
            await asyncio.sleep(0.05)
            for task in tasks:
                if task.done() and task.exception() is not None:
                    log(f"monitor task failed: {task.exception()!r}")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # The watch: a plain streaming GET, one JSON event per line.
    async def _watch(self) -> None:
        selector = urllib.parse.quote(f"kubernetes.io/service-name={SERVICE}")
        base = f"/apis/discovery.k8s.io/v1/namespaces/{self.namespace}/endpointslices"
        while not self._stop.is_set():
            reader, writer = await asyncio.open_connection(
                self.api.host, self.api.port, ssl=self.api.ssl
            )
            try:
                _, listing = await asyncio.to_thread(
                    self.api.call, "GET", f"{base}?labelSelector={selector}"
                )
                version = listing["metadata"]["resourceVersion"]
                self._apply_listing(listing["items"])
                path = (
                    f"{base}?watch=1&labelSelector={selector}&resourceVersion={version}"
                    "&allowWatchBookmarks=false&timeoutSeconds=3600"
                )
                writer.write(
                    f"GET {path} HTTP/1.1\r\nHost: {self.api.host}\r\n"
                    "Accept: application/json\r\n\r\n".encode()
                )
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")  # chunked body follows
                if not head.startswith(b"HTTP/1.1 200"):
                    raise ValueError(f"watch refused: {head[:200]!r}")
                pending = b""
                while not self._stop.is_set():
                    size_line = await reader.readline()
                    if not size_line:
                        break
                    size = int(size_line.strip() or b"0", 16)
                    if size == 0:
                        break
                    pending += (await reader.readexactly(size + 2))[:-2]
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        if line.strip():
                            self._event(time.monotonic(), json.loads(line))
            except (OSError, asyncio.IncompleteReadError, ValueError) as error:
                log(f"slice watch restarts: {error!r}")
                await asyncio.sleep(0.2)
            finally:
                writer.close()

    def _apply_listing(self, items: list[dict[str, Any]]) -> None:
        with self.lock:
            self.slices = {item["metadata"]["name"]: item for item in items}
            self._changed(time.monotonic())

    def _event(self, now: float, event: dict[str, Any]) -> None:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind not in {"ADDED", "MODIFIED", "DELETED"}:
            return
        with self.lock:
            self.events += 1
            name = obj["metadata"]["name"]
            if kind == "DELETED":
                self.slices.pop(name, None)
            else:
                self.slices[name] = obj
            self._changed(now)

    def _changed(self, now: float) -> None:
        expected = expected_servers(self.slices, self.drain)
        if expected != self.expected:
            self.expected = expected
            self.pending.append((now, expected))
            if self.actual is not None:
                self._resolve(now, self.actual)

    async def _poll(self) -> None:
        client = RuntimeClient(self.socket_path, timeout=5.0)
        try:
            while not self._stop.is_set():
                try:
                    text = await client.run("show", "servers", "state", self.backend)
                    rows = parse_servers_state(text).rows
                except (RuntimeConnectionError, RuntimeCommandError, ValueError, OSError):
                    self.poll_errors += 1
                    await asyncio.sleep(0.05)
                    continue
                now = time.monotonic()
                actual = actual_servers(rows)
                self.last_rows = rows[:2]
                with self.lock:
                    self.polls += 1
                    self.actual = actual
                    self._resolve(now, actual)
                await asyncio.sleep(self.interval)
        finally:
            await client.close()

    def _resolve(self, now: float, actual: dict[str, str]) -> None:
        match = None
        for index, (_, expected) in enumerate(self.pending):
            if expected == actual:
                match = index
        if match is None:
            return
        for index, (at, _) in enumerate(self.pending[: match + 1]):
            self.samples.append(Sample(at, now - at, superseded=index < match))
        del self.pending[: match + 1]

    # --- for the benchmark's own waits ---

    def converged(self) -> bool:
        with self.lock:
            return not self.pending and self.expected is not None and self.actual == self.expected

    def describe(self) -> str:
        with self.lock:
            return (
                f"expected={self.expected} actual={self.actual} pending={len(self.pending)} "
                f"events={self.events} polls={self.polls} poll_errors={self.poll_errors} "
                f"rows={self.last_rows}"
            )

    def wait_converged(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.converged():
                return True
            time.sleep(0.01)
        return False

    def endpoint_conditions(self, address: str) -> dict[str, Any] | None:
        with self.lock:
            for item in self.slices.values():
                for endpoint in item.get("endpoints") or []:
                    if (endpoint.get("addresses") or [None])[0] == address:
                        return dict(endpoint.get("conditions") or {})
        return None

    def wait_endpoint(
        self, address: str, check: Callable[[dict[str, Any] | None], bool], timeout: float = 30.0
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check(self.endpoint_conditions(address)):
                return
            time.sleep(0.002)
        raise TimeoutError(f"endpoint {address}: {self.endpoint_conditions(address)}")

    def samples_since(self, start: float) -> list[Sample]:
        with self.lock:
            return [sample for sample in self.samples if sample.at >= start]

    def unconverged_since(self, start: float) -> int:
        with self.lock:
            return sum(1 for at, _ in self.pending if at >= start)


def terminating(conditions: dict[str, Any] | None) -> bool:
    return conditions is not None and conditions.get("terminating") is True


def not_ready(conditions: dict[str, Any] | None) -> bool:
    return conditions is None or conditions.get("ready") is False


# --- the load -------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    scheduled: float
    started: float
    latency: float
    outcome: str
    stream: int  # 0: normal requests, 1: long requests
    retried: bool


class Load:
    """``procs`` loadgen processes sharing ``rate``; stopped by SIGTERM, bounded by time.

    They run under one shell in a session of their own: with the kernel's
    autogroup scheduling CPU is shared between sessions first, and in the
    benchmark's session the load (~0.6 CPU at 2000 req/s) starved the
    monitor, the instrument that stops the clock (bench/README.md, seventh
    session). One session for all of them, not one each: the load gets one
    share, as it had, and no more (clients in a cluster take none of the
    ingress node's CPU).
    """

    def __init__(
        self,
        port: int,
        host: str,
        rate: float,
        workdir: Path,
        *,
        long_rate: float = 0.0,
        max_seconds: float = 300.0,
        procs: int | None = None,
    ) -> None:
        self.procs = procs or max(1, math.ceil(rate / 1000))
        self.outputs = [workdir / f"load-{index}.csv" for index in range(self.procs)]
        commands = []
        for index, out in enumerate(self.outputs):
            out.unlink(missing_ok=True)
            command = [
                sys.executable,
                "-m",
                "bench.loadgen",
                "--port",
                str(port),
                "--host",
                host,
                "--rate",
                str(rate / self.procs),
                "--phase",
                f"{index}/{self.procs}",
                "--max-seconds",
                str(max_seconds),
                "--long-rate",
                str(long_rate if index == 0 else 0.0),
                "--out",
                str(out),
            ]
            commands.append(f'{shlex.join(command)} & pids="$pids $!"')
        # SIGTERM to the shell goes to every generator; the shell exits once
        # they have all written their records.
        script = "; ".join(["trap 'kill -TERM $pids' TERM", *commands, "wait", "wait"])
        self.process = subprocess.Popen(
            ["sh", "-c", script], cwd=REPO_ROOT, stdout=subprocess.PIPE, start_new_session=True
        )
        for _ in range(self.procs):
            line = self.process.stdout.readline() if self.process.stdout else b""
            if not line.startswith(b"ready"):
                self.stop()
                raise RuntimeError("the load generator did not start")

    def stop(self) -> list[Record]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        records = []
        for out in self.outputs:
            if not out.exists():
                continue
            for line in out.read_text().splitlines():
                scheduled, started, latency, outcome, stream, retried = line.split(",")
                records.append(
                    Record(
                        float(scheduled),
                        float(started),
                        float(latency),
                        outcome,
                        int(stream),
                        retried == "1",
                    )
                )
        return records


def summarize(records: list[Record]) -> dict[str, Any]:
    sent = [r for r in records if r.outcome != "unsent"]
    outcomes = Counter(r.outcome for r in sent)
    failed: dict[str, int] = {"connect": 0, "5xx": 0, "timeout": 0, "reset": 0, "other": 0}
    codes: dict[str, int] = {}
    for outcome, count in outcomes.items():
        if outcome == "ok":
            continue
        if outcome.isdigit():
            codes[outcome] = count
            failed["5xx" if outcome.startswith("5") else "other"] += count
        elif outcome in failed:
            failed[outcome] += count
        else:
            failed["other"] += count
    starts = [r.started for r in sent]
    span = max(starts) - min(starts) if len(starts) > 1 else 0.0
    ok_latencies = [r.latency for r in sent if r.outcome == "ok"]
    slow = sum(1 for latency in ok_latencies if latency > SLOW_SECONDS)
    return {
        "requests": len(sent),
        "ok": outcomes["ok"],
        "failed": failed,
        "failed_total": sum(failed.values()),
        "failed_status_codes": codes,
        "unsent": len(records) - len(sent),
        "retried_closed_keepalive": sum(1 for r in sent if r.retried),
        "rate_achieved": round((len(sent) - 1) / span, 1) if span else 0.0,
        "latency_ms": {
            "p50": _ms(percentile(ok_latencies, 50)),
            "p99": _ms(percentile(ok_latencies, 99)),
            "max": _ms(max(ok_latencies, default=None)),
            # A stall is rarer than 1 %: p99 hides it, max and this show it.
            "over_100ms": slow,
            "over_100ms_pct": round(100 * slow / len(ok_latencies), 3) if ok_latencies else None,
        },
        "client_lag_ms_p99": _ms(percentile([r.started - r.scheduled for r in sent], 99)),
    }


# --- the benchmark: a controller, a Service, and a kubelet played here -----------------


@dataclass
class Settings:
    rate: float = 500.0
    quick: bool = False
    warmup: float = 1.0  # load before the churn starts
    tail: float = 1.0  # load after HAProxy converged
    race_gap: float = 0.3  # race-a: SIGTERM → endpoint change
    kill_gap: float = 1.0  # kill: SIGKILL → endpoint not ready
    long_rate: float = 10.0  # long requests per second in the "long" scenario
    long_sleep: float = 1.5
    loadgen_procs: int | None = None
    records: Path | None = None  # keep every scenario's per-request CSV here
    configmap: dict[str, str] = field(default_factory=dict)  # --set, every mode
    background_nice: int = 0  # --background-nice


@dataclass
class Bench:
    """One mode: a controller, a namespace with Service + Ingress, and its pods."""

    kube: Kube
    api: Api
    network: Network
    controller: RunningController
    namespace: str
    node: str
    mode: str
    settings: Settings
    workdir: Path
    drain: bool = True
    pods: list[Pod] = field(default_factory=list)
    monitor: Monitor | None = None
    current: str = ""
    _serial: int = 0

    @property
    def host(self) -> str:
        return f"{self.mode}.churn.example.com"

    @property
    def backend(self) -> str:
        return f"be_{self.namespace}_{SERVICE}_{PORT_NAME}"

    # --- setup ---

    def setup(self) -> None:
        self.kube.apply(service_manifest(self.namespace, SERVICE))
        self.kube.apply(ingress(self.namespace, SERVICE, self.host, SERVICE))
        self.monitor = Monitor(
            self.api,
            self.namespace,
            self.backend,
            HAProxyPaths(self.controller.state_dir).runtime_socket,
            drain=self.drain,
        ).start()
        self.scale_to(1)
        deadline = time.monotonic() + 60
        while self.controller.get(self.host)[0] != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no 200 through HAProxy:\n{self.controller.log_tail()}")
            time.sleep(0.2)

    def close(self) -> None:
        """Kill the pods and force-delete them (no kubelet would finish a graceful delete)."""
        if self.monitor is not None:
            self.monitor.stop()
        for pod in list(self.network.pods.values()):
            pod.kill()
            with contextlib.suppress(RuntimeError, OSError):
                self.delete(pod, 0)
        self.pods.clear()

    # --- the kubelet's part ---

    def _name(self) -> str:
        self._serial += 1
        return f"{SERVICE}-{self._serial}"

    def add_pods(self, count: int) -> list[Pod]:
        """Start the processes, then create the Pods and report them Ready."""
        names = [self._name() for _ in range(count)]
        pods = [self.network.start_pod(name) for name in names]
        if self.settings.background_nice:
            renice_background(self.settings.background_nice)
        for name in names:
            manifest = pod_manifest(self.namespace, name, SERVICE, self.node)
            self.api.call("POST", self.api.pods(self.namespace), manifest)
        for name, pod in zip(names, pods, strict=True):
            self.set_ready(name, pod.address, ready=True)
        self.pods.extend(pods)
        return pods

    def set_ready(self, name: str, address: str, *, ready: bool) -> None:
        patch = pod_status_patch(address, ready)
        self.api.call(
            "PATCH",
            f"{self.api.pods(self.namespace)}/{name}/status",
            patch,
            content_type="application/merge-patch+json",
        )

    def delete(self, pod: Pod, grace: int) -> None:
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": grace}
        path = f"{self.api.pods(self.namespace)}/{pod.name}"
        self.api.call("DELETE", path, body, ok=(200, 202, 404) if grace == 0 else (200, 202))

    def _exit(self, pod: Pod) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            pod.wait(40)
        pod.kill()

    def finish(self, pod: Pod) -> None:
        """The process has exited: force-delete the Pod and forget it."""
        self._exit(pod)
        self.delete(pod, 0)
        self.network.pods.pop(pod.name, None)

    def remove(self, pod: Pod, order: str) -> None:
        """Scale one pod down; ``order`` says how SIGTERM and the endpoint change race.

        "kubelet": Pod deleted (grace) → endpoint terminating → SIGTERM → exit →
        force delete (the endpoint drains before the process stops).
        "concurrent": delete and SIGTERM at once, as a kubelet's watch and the
        EndpointSlice controller race in a real cluster.
        "sigterm-first": the process stops accepting ``race_gap`` s before the
        Pod is deleted.
        """
        assert self.monitor is not None
        self.pods.remove(pod)
        if order == "sigterm-first":
            pod.terminate()
            self._exit(pod)
            time.sleep(self.settings.race_gap)
            self.delete(pod, POD_GRACE_SECONDS)
            self.monitor.wait_endpoint(pod.address, lambda c: c is None or terminating(c))
        elif order == "concurrent":
            self.delete(pod, POD_GRACE_SECONDS)
            pod.terminate()
        else:
            self.delete(pod, POD_GRACE_SECONDS)
            self.monitor.wait_endpoint(pod.address, lambda c: c is None or terminating(c))
            pod.terminate()
        self.finish(pod)

    def scale_to(self, count: int) -> None:
        """Untimed set-up between scenarios."""
        assert self.monitor is not None
        if len(self.pods) < count:
            self.add_pods(count - len(self.pods))
        while len(self.pods) > count:
            self.remove(self.pods[0], "kubelet")
        if not self.monitor.wait_converged(60):
            raise RuntimeError(
                f"HAProxy did not converge: {self.monitor.describe()}\n{self.controller.log_tail()}"
            )

    # --- measuring ---

    def reloads(self) -> int:
        """HAProxy's own reload count, from the master CLI's ``show proc``."""

        async def show() -> int:
            process = HAProxyProcess(HAProxyPaths(self.controller.state_dir))
            for _ in range(100):  # the master refuses connections while it re-executes
                try:
                    return (await process.show_proc()).reloads
                except HAProxyError:
                    await asyncio.sleep(0.1)
            return (await process.show_proc()).reloads

        return asyncio.run(show())

    def backend_counters(self) -> Counter[str]:
        """The backend's retry, redispatch and error counters (``show stat``)."""

        async def show() -> str:
            async with RuntimeClient(HAProxyPaths(self.controller.state_dir).runtime_socket) as c:
                return str(await c.run("show", "stat", self.backend, "2", "-1"))

        rows = [r for r in parse_csv_stat(asyncio.run(show())) if r.get("svname") == "BACKEND"]
        keys = ("wretr", "wredis", "econ", "eresp", "hrsp_5xx", "cli_abrt", "srv_abrt")
        return Counter({key: int(rows[0].get(key) or 0) for key in keys} if rows else {})

    def _log_since(self, offset: int) -> str:
        with self.controller.log.open("rb") as log:
            log.seek(offset)
            data: bytes = log.read()
        return data.decode(errors="replace")

    def reload_reasons(self) -> Counter[str]:
        return Counter(
            {
                key: int(value)
                for key, value in self.controller.metrics().items()
                if key.startswith("haproxy_ingress_reloads_total{")
            }
        )

    def measure(
        self, scenario: str, churn: Callable[[], None], *, long_rate: float = 0.0
    ) -> dict[str, Any]:
        assert self.monitor is not None
        settings = self.settings
        reloads_before, reasons_before = self.reloads(), self.reload_reasons()
        counters_before = self.backend_counters()
        log_start = self.controller.log.stat().st_size
        load = Load(
            self.controller.http_port,
            self.host,
            settings.rate,
            self.workdir,
            long_rate=long_rate,
            max_seconds=240,
            procs=settings.loadgen_procs,
        )
        try:
            if settings.background_nice:
                renice_background(settings.background_nice)
            time.sleep(settings.warmup)
            with CpuSampler() as sampler:
                start = sampler.start
                cpu_start = cpu_seconds(self.controller.process.pid)
                churn()
                converged = self.monitor.wait_converged(30)
                # The controller's CPU from the first change to convergence: what
                # the convergence times wait for on a busy machine, less its noise.
                controller_cpu = cpu_seconds(self.controller.process.pid) - cpu_start
            time.sleep(settings.tail)
        finally:
            records = load.stop()
        if settings.records is not None:
            settings.records.mkdir(parents=True, exist_ok=True)
            name = f"{self.mode}-{self.current}-{int(settings.rate)}"
            for index, out in enumerate(load.outputs):
                if out.exists():
                    out.replace(settings.records / f"{name}-{index}.csv")
        time.sleep(0.3)  # let the controller's reload counter catch up
        reloads = self.reloads() - reloads_before
        reasons = self.reload_reasons() - reasons_before
        counters = self.backend_counters()
        # After a reload the new worker starts counting from zero.
        haproxy_counters = dict(counters if reloads else counters - counters_before)
        samples = self.monitor.samples_since(start)
        latencies = [s.latency for s in samples]
        summary = summarize([r for r in records if r.stream == 0])
        result: dict[str, Any] = {
            "mode": self.mode,
            "scenario": scenario,
            "rate_target": settings.rate,
            "rate_achieved": summary.pop("rate_achieved"),
            "requests": summary.pop("requests"),
            "ok": summary.pop("ok"),
            "failed": summary.pop("failed"),
            **summary,
            "reloads": reloads,
            "reloads_source": "haproxy master CLI show proc",
            "controller_reload_reasons": {
                k.split('reason="', 1)[1].rstrip('"}'): v for k, v in reasons.items()
            },
            "haproxy_backend_counters": haproxy_counters,
            "convergence_ms": {
                "p50": _ms(percentile(latencies, 50)),
                "p99": _ms(percentile(latencies, 99)),
                "max": _ms(max(latencies, default=None)),
                "samples": len(samples),
                "superseded": sum(1 for s in samples if s.superseded),
                "unconverged": self.monitor.unconverged_since(start) + (0 if converged else 1),
                # Each event: ms from the churn's start, its convergence time,
                # 1 if superseded. Where in the scenario the slow ones fall
                # (a scale-down's burst, a pod's start) is the first question
                # about a tail.
                "timeline": [
                    [_ms(s.at - start), _ms(s.latency), int(s.superseded)] for s in samples
                ],
            },
            "controller_cpu_ms": round(controller_cpu * 1000),
            # From the first change to convergence (see CpuSampler).
            "machine_cpu": sampler.summary(),
            "background_nice": settings.background_nice,
            "haproxy_timers_ms": haproxy_timers(self._log_since(log_start), self.backend),
            # Other work on the machine shows in latency tails: keep the load with them.
            "loadavg": machine()["loadavg"],
        }
        if long_rate:
            long_summary = summarize([r for r in records if r.stream == 1])
            result["long_requests"] = {
                "requests": long_summary["requests"],
                "ok": long_summary["ok"],
                "failed": long_summary["failed"],
                "latency_ms": long_summary["latency_ms"],
            }
            result["failed_total"] += long_summary["failed_total"]
        return result

    # --- scenarios ---

    def scenario_scale(self, down: str = "concurrent") -> dict[str, Any]:
        assert self.monitor is not None
        monitor = self.monitor
        top = 4 if self.settings.quick else 10
        self.scale_to(1)

        def churn() -> None:
            self.add_pods(top - 1)
            monitor.wait_converged(30)
            time.sleep(0.5 if self.settings.quick else 2.0)
            if down != "concurrent":
                for pod in self.pods[1:]:
                    self.remove(pod, down)
                return
            for pod in self.pods[1:]:
                self.pods.remove(pod)
                self.delete(pod, POD_GRACE_SECONDS)
                pod.terminate()
            for pod in list(self.network.pods.values()):
                if pod not in self.pods:
                    self.finish(pod)

        label = "" if down == "concurrent" else f", down in {down} order"
        return self.measure(f"scale 1-{top}-1{label}", churn)

    def scenario_rolling(self) -> dict[str, Any]:
        assert self.monitor is not None
        monitor = self.monitor
        size = 2 if self.settings.quick else 4
        self.scale_to(size)

        def churn() -> None:
            # maxSurge 1, maxUnavailable 0: each new pod Ready before an old one goes.
            for old in list(self.pods):
                (new,) = self.add_pods(1)
                monitor.wait_endpoint(new.address, lambda c: c is not None and not not_ready(c))
                self.remove(old, "kubelet")

        return self.measure(f"rolling update of {size}", churn)

    def _race(self, order: str) -> Callable[[], None]:
        count = 1 if self.settings.quick else 3

        def churn() -> None:
            for pod in list(self.pods[:count]):
                self.remove(pod, order)

        return churn

    def scenario_race_a(self) -> dict[str, Any]:
        self.scale_to(2 if self.settings.quick else 4)
        return self.measure(
            "scale-down, SIGTERM before endpoint change", self._race("sigterm-first")
        )

    def scenario_race_b(self) -> dict[str, Any]:
        self.scale_to(2 if self.settings.quick else 4)
        return self.measure("scale-down, SIGTERM after endpoint change", self._race("kubelet"))

    def scenario_kill(self) -> dict[str, Any]:
        assert self.monitor is not None
        monitor = self.monitor
        count = 1 if self.settings.quick else 2
        self.scale_to(count + 1)

        def churn() -> None:
            for pod in list(self.pods[:count]):
                self.pods.remove(pod)
                pod.kill()
                time.sleep(self.settings.kill_gap)
                self.set_ready(pod.name, pod.address, ready=False)
                monitor.wait_endpoint(pod.address, not_ready)
                self.finish(pod)

        return self.measure("pod SIGKILLed", churn)

    def scenario_long(self) -> dict[str, Any]:
        count = 1 if self.settings.quick else 2
        self.scale_to(2)

        def churn() -> None:
            time.sleep(self.settings.long_sleep)  # long requests in flight everywhere
            for _ in range(count):
                old = self.pods[0]
                self.add_pods(1)
                self.remove(old, "kubelet")

        return self.measure(
            f"drain with {self.settings.long_sleep} s requests in flight",
            churn,
            long_rate=self.settings.long_rate,
        )

    def run(self, scenario: str) -> dict[str, Any]:
        self.current = scenario
        method: Callable[[], dict[str, Any]] = getattr(
            self, "scenario_" + scenario.replace("-", "_")
        )
        return method()


def mode_configmap(mode: str) -> dict[str, str]:
    base = yaml.safe_load((REPO_ROOT / "manifests" / "20-configmap.yaml").read_text())
    data: dict[str, str] = dict(base["data"])
    if mode == "no-retries":
        data.update(NO_RETRIES)
    return data


def set_configmap(api: Api, data: dict[str, str]) -> None:
    path = "/api/v1/namespaces/haproxy-ingress/configmaps/haproxy-ingress"
    _, current = api.call("GET", path)
    current["data"] = data
    api.call("PUT", path, current)


def wait_backend_config(controller: RunningController, backend: str, data: dict[str, str]) -> None:
    """Until haproxy.cfg holds the backend with this mode's retries and slot count."""
    config = HAProxyPaths(controller.state_dir).config
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = config.read_text() if config.exists() else ""
        section = text.partition(f"backend {backend}\n")[2].partition("\nbackend ")[0]
        servers = sum(1 for line in section.splitlines() if line.strip().startswith("server "))
        if f"retries {data['retries']}\n" in section and servers >= int(data["server-slots"]):
            return
        time.sleep(0.2)
    raise RuntimeError(f"{backend} not configured as expected:\n{controller.log_tail()}")


def create_namespace(api: Api, name: str) -> None:
    api.call("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status, _ = api.call(
            "GET", f"/api/v1/namespaces/{name}/serviceaccounts/default", ok=(200, 404)
        )
        if status == 200:
            return
        time.sleep(0.2)
    raise RuntimeError(f"no default ServiceAccount in {name}")


@contextlib.contextmanager
def running_mode(
    *,
    kube: Kube,
    api: Api,
    network: Network,
    node: str,
    mode: str,
    settings: Settings,
    workdir: Path,
    configure: bool = True,
    bench_class: type[Bench] = Bench,
    bench_options: dict[str, Any] | None = None,
) -> Iterator[Bench]:
    """A controller for ``mode`` and a fresh namespace with Service, Ingress and one pod."""
    workdir.mkdir(parents=True, exist_ok=True)
    # As users run it: the e2e helper's 3 s resync (a LIST of every kind and
    # a full sync) would land in every scenario and hold endpoint changes up.
    extra = ["--resync-interval", str(RESYNC_INTERVAL)]
    if mode == "always-reload":
        extra.append("--always-reload")
    controller = start_controller(kube, workdir, *extra)
    data = {**mode_configmap(mode), **settings.configmap} if configure else {}
    if configure:
        set_configmap(api, data)
    namespace = f"churn-{mode}-{os.getpid() % 10000}-{int(time.time()) % 100000}"
    create_namespace(api, namespace)
    bench = bench_class(
        kube,
        api,
        network,
        controller,
        namespace,
        node,
        mode,
        settings,
        workdir,
        drain=data.get("drain-terminating", "true") == "true",
        **(bench_options or {}),
    )
    try:
        bench.setup()
        if configure:
            wait_backend_config(controller, bench.backend, data)
            bench.scale_to(1)
        yield bench
    finally:
        bench.close()
        controller.stop()
        api.call("DELETE", f"/api/v1/namespaces/{namespace}", ok=(200, 202, 404))


def run_simulated(
    *,
    binaries: Any,
    root: Path,
    modes: Sequence[str],
    scenarios: Sequence[str],
    settings: Settings,
    subnet: ipaddress.IPv4Network,
) -> Iterator[dict[str, Any]]:
    """Every mode and scenario with the kubelet played here (pods in a network namespace)."""
    log("starting the control plane (simulated kubelet)")
    instance = localcluster.LocalCluster(root / "cluster", binaries=binaries, die_with_parent=True)
    instance.start()
    try:
        kube = Kube(instance)
        api = Api(kube)
        node = "churn-node"
        kube.apply({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}})
        for mode in modes:
            log(f"mode {mode} (simulated kubelet)")
            with (
                PodNetwork("hi-bench", subnet=subnet) as network,
                running_mode(
                    kube=kube,
                    api=api,
                    network=network,
                    node=node,
                    mode=mode,
                    settings=settings,
                    workdir=root / mode,
                ) as bench,
            ):
                for scenario in scenarios:
                    log(f"{mode}: {scenario}")
                    yield {"key": scenario, **bench.run(scenario)}
    finally:
        instance.stop()


def run_real(
    *,
    binaries: Any,
    root: Path,
    modes: Sequence[str],
    scenarios: Sequence[str],
    settings: Settings,
    subnet: ipaddress.IPv4Network,
) -> Iterator[dict[str, Any]]:
    """The same modes and scenarios with a real kubelet (hack/localnode.py)."""
    del subnet  # pods get the node's own subnet
    from bench.churn_node import SCENARIOS, RealBench  # noqa: PLC0415

    localnode: Any = importlib.import_module("tests.node.conftest").localnode
    log("starting the control plane and the node (real kubelet)")
    instance = localnode.NodeCluster(root / "cluster", binaries=binaries, die_with_parent=True)
    instance.start()
    try:
        kube = Kube(instance)
        api = Api(kube)
        for mode in modes:
            log(f"mode {mode} (real kubelet)")
            with running_mode(
                kube=kube,
                api=api,
                network=None,
                node=localnode.NODE_NAME,
                mode=mode,
                settings=settings,
                workdir=root / mode,
                bench_class=RealBench,
                bench_options={"image": instance.agnhost_image},
            ) as bench:
                for scenario in scenarios:
                    if scenario not in SCENARIOS:
                        log(f"{mode}: {scenario} is not run on the real node")
                        yield {"key": scenario, "mode": mode, "not_run": "see bench/churn_node.py"}
                        continue
                    log(f"{mode}: {scenario} (real kubelet)")
                    yield {"key": scenario, **bench.run(scenario)}
    finally:
        instance.stop()


def side_by_side(results: Sequence[dict[str, Any]]) -> str:
    """A table: each (mode, scenario) with the simulated and the real kubelet's figures."""

    def cell(result: dict[str, Any] | None) -> str:
        if result is None:
            return "-"
        if "not_run" in result:
            return "not run"
        conv = result["convergence_ms"]
        return (
            f"{result['failed_total']:>3} failed/{result['requests']:<6} "
            f"{result['reloads']} rl  conv p50 {conv['p50']} p99 {conv['p99']} ms"
        )

    by_key = {(r["kubelet"], r["mode"], r["key"]): r for r in results}
    rows = sorted({(r["mode"], r["key"]) for r in results}, key=lambda k: (k[0], k[1]))
    rate = next((r["rate_target"] for r in results if "rate_target" in r), "?")
    lines = [
        f"churn at {rate} req/s: failed requests / sent, reloads, convergence",
        f"{'mode':<14}{'scenario':<9}{'simulated kubelet':<54}real kubelet",
    ]
    for mode, key in rows:
        lines.append(
            f"{mode:<14}{key:<9}{cell(by_key.get(('simulated', mode, key))):<54}"
            f"{cell(by_key.get(('real', mode, key)))}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=500.0, help="requests per second")
    parser.add_argument("--modes", default=",".join(ALL_MODES))
    parser.add_argument("--scenarios", default=",".join(ALL_SCENARIOS))
    parser.add_argument("--quick", action="store_true", help="fewer pods, shorter holds")
    parser.add_argument("--loadgen-procs", type=int, default=None)
    parser.add_argument("--records", type=Path, help="keep the per-request CSVs here")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a ConfigMap key for every mode, after the mode's own (repeatable)",
    )
    parser.add_argument(
        "--background-nice",
        type=int,
        default=0,
        metavar="N",
        help="run the load generator, the pods and the control plane at nice N (e.g. 10): "
        "on a small machine they stand in for other machines, and the controller's "
        "convergence is then not a wait for a CPU (default 0: all equal)",
    )
    parser.add_argument(
        "--workdir", type=Path, help="keep logs and state here (default: a temporary directory)"
    )
    parser.add_argument(
        "--subnet", type=ipaddress.IPv4Network, default=ipaddress.IPv4Network("198.18.2.0/24")
    )
    parser.add_argument(
        "--kubelet",
        default="simulated,real",
        help="who runs the pods: simulated (played here, pods in a network namespace), "
        "real (kubelet + containerd on the local node; bench/churn_node.py), or both",
    )
    args = parser.parse_args(argv)
    kubelets = [k for k in args.kubelet.split(",") if k]
    for kubelet in kubelets:
        if kubelet not in ("simulated", "real"):
            parser.error(f"unknown --kubelet {kubelet!r}; choose simulated, real or both")
    modes = [m for m in args.modes.split(",") if m]
    scenarios = [s for s in args.scenarios.split(",") if s]
    for mode in modes:
        if mode not in ALL_MODES:
            parser.error(f"unknown mode {mode!r}; choose from {ALL_MODES}")
    for scenario in scenarios:
        if scenario not in ALL_SCENARIOS:
            parser.error(f"unknown scenario {scenario!r}; choose from {ALL_SCENARIOS}")
    if not args.subnet.subnet_of(ipaddress.IPv4Network("198.18.0.0/15")):
        parser.error("the pod subnet must be inside 198.18.0.0/15")
    overrides = dict(item.split("=", 1) for item in args.set)
    settings = Settings(
        rate=args.rate,
        quick=args.quick,
        loadgen_procs=args.loadgen_procs,
        records=args.records,
        configmap=overrides,
        background_nice=args.background_nice,
    )
    print(json.dumps({"machine_at_start": machine()}), flush=True)
    binaries = localcluster.ensure_binaries()
    results: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        if args.workdir is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-churn-")))
        else:
            root = args.workdir.resolve()
            root.mkdir(parents=True, exist_ok=True)
        for kubelet in kubelets:
            run = run_simulated if kubelet == "simulated" else run_real
            for measured in run(
                binaries=binaries,
                root=root / kubelet,
                modes=modes,
                scenarios=scenarios,
                settings=settings,
                subnet=args.subnet,
            ):
                result = {"kubelet": kubelet, **measured}
                results.append(result)
                print(json.dumps(result), flush=True)
    if len(kubelets) > 1:
        print(side_by_side(results), file=sys.stderr, flush=True)
    print(json.dumps({"machine_at_end": machine()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
