"""The controller and HAProxy at cluster scale (``make bench-scale``).

    python bench/scale.py [--ingresses 10000] [--tls 1000] [--pods 3] [--only full,endpoint,...]

A synthetic cluster as issue 13 describes it: each Ingress one host and two
paths, its own Service with ``--pods`` endpoints; ``--tls`` of them have their
own TLS Secret (half RSA-2048, half ECDSA P-256). Each measurement prints one
JSON line with the machine's load average at its start and end:

- ``full``: a full sync in the pure stages (cluster view, translate, plan,
  render) cold (first translation: every certificate parsed) and warm (the
  next one, as after any Ingress change), plus the process's peak RSS.
- ``render``: the offline ``haproxy-ingress render`` of the whole cluster,
  as YAML documents, a YAML ``List`` and a JSON ``List``, with the package's
  bytecode compiled first (as an installed package has it).
- ``haproxy``: HAProxy under a 20,000-fd limit: ``haproxy -c`` (wall and CPU)
  and start time, whether it starts, its memory and the CPU its health checks
  cost at idle; then a reload of the same configuration through the master
  CLI, as the controller reloads: until the new worker answers a request,
  the CPU the master and the new worker spent, the new worker's memory; and
  the controller's whole reload (render, ``haproxy -c``, reload, runtime
  commands).
- ``endpoint``: one endpoint change at a time through the real reconciler and
  a running HAProxy: the time until the runtime commands are done and the
  longest the event loop was blocked, p50/p99/max over ``--changes``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import dataclasses
import datetime
import gc
import json
import math
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from tests.kube import (
    configmap,
    endpoint,
    endpoint_slice,
    ingress,
    ingress_class,
    path,
    rule,
    service,
)

from haproxy_ingress.apply import Applier
from haproxy_ingress.cluster import ClusterView
from haproxy_ingress.gcpause import cyclic_gc_paused
from haproxy_ingress.haproxy.commands import parse_csv_stat
from haproxy_ingress.haproxy.config import (
    RenderOptions,
    SectionMemo,
    default_certificate_path,
    enabled_servers,
    environment,
    render,
)
from haproxy_ingress.haproxy.paths import HAProxyPaths
from haproxy_ingress.haproxy.process import HAProxyError, HAProxyProcess
from haproxy_ingress.haproxy.runtime import RuntimeClient
from haproxy_ingress.model import AppliedState, DesiredState, TranslateOptions
from haproxy_ingress.plan import Plan, plan
from haproxy_ingress.settings import SettingsMemo
from haproxy_ingress.sync import Reconciler
from haproxy_ingress.tls import CertificateCache, generate_default_certificate, self_signed
from haproxy_ingress.translate import ObjectMemo, translate

FD_LIMIT = 20_000  # the machine's limit the issue measures against
KEY_POOL = 4  # distinct keys per algorithm: parsing cost is per Secret, not per key
NOT_BEFORE = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def load() -> float:
    return round(os.getloadavg()[0], 2)


def python_loop_ms() -> float:
    """The machine's single-core Python speed: the best of 3 runs of a fixed
    loop (5 million additions). This machine's speed has varied up to 2x
    between sessions; figures from two sessions compare only alongside it."""
    best = math.inf
    for _ in range(3):
        begun = time.perf_counter()
        total = 0
        for number in range(5_000_000):
            total += number
        best = min(best, time.perf_counter() - begun)
    return round(best * 1000, 1)


def emit(name: str, started_load: float, **figures: Any) -> None:
    print(json.dumps({"bench": name, "load_start": started_load, "load_end": load(), **figures}))
    sys.stdout.flush()


def _keys() -> list[Any]:
    rsa_keys = [rsa.generate_private_key(65537, 2048) for _ in range(KEY_POOL)]
    ec_keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(KEY_POOL)]
    return [k for pair in zip(rsa_keys, ec_keys, strict=True) for k in pair]


def _tls_secret(name: str, host: str, key: Any) -> dict[str, Any]:
    cert, key_pem = self_signed(
        host, NOT_BEFORE, NOT_BEFORE + datetime.timedelta(days=3650), dns_names=(host,), key=key
    )
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "default", "resourceVersion": "1"},
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": base64.b64encode(cert).decode(),
            "tls.key": base64.b64encode(key_pem).decode(),
        },
    }


def cluster(
    apps: int, pods: int, tls: int, *, moved: int = -1, network: str = "10", port: int = 8080
) -> list[dict[str, Any]]:
    """The synthetic cluster; ``moved``: that app's first endpoint has another address.

    Pod addresses are ``<network>.<i // 250>.<i % 250>.<j + 1>``: with
    ``network`` 127 one listener on the wildcard address answers them all
    (``--live-pods``).
    """
    keys = _keys() if tls else []
    objects: list[dict[str, Any]] = [ingress_class(default=True)]
    tls_every = apps // tls if tls else 0
    for i in range(apps):
        host = f"app{i}.example.com"
        objects.append(service(f"app{i}"))
        addresses = [f"{network}.{i // 250}.{i % 250}.{j + 1}" for j in range(pods)]
        if i == moved:
            addresses[0] = f"{network}.{i // 250}.{i % 250}.{pods + 1}"
        ports = [{"name": "http", "port": port}]
        objects.append(endpoint_slice(f"app{i}", *(endpoint(a) for a in addresses), ports=ports))
        item = ingress(f"app{i}", rule(host, path("/", f"app{i}"), path("/api", f"app{i}")))
        if tls_every and i % tls_every == 0 and i // tls_every < tls:
            secret = f"tls{i}"
            objects.append(_tls_secret(secret, host, keys[(i // tls_every) % len(keys)]))
            item["spec"]["tls"] = [{"hosts": [host], "secretName": secret}]
        objects.append(item)
    return objects


def timed_ms(action: Callable[[], object]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return round((time.perf_counter() - started) * 1000, 1), result


def rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def bench_full(objects: list[dict[str, Any]], args: argparse.Namespace) -> None:
    started = load()
    options = TranslateOptions()
    view_ms, (view, _) = timed_ms(lambda: ClusterView.from_objects(objects, options))
    # As the reconciler translates: with its caches of checked certificates
    # and parsed annotations, and with the cyclic GC paused in translate,
    # plan and render (as Reconciler and Applier do), which would otherwise
    # re-scan the whole view on each collection.
    # The warm translation is a full sync's: one Ingress changed since the
    # last (a new object, one path more), the other objects are the same.
    cache, memo, objects_memo = CertificateCache(), SettingsMemo(), ObjectMemo()
    changed = copy.deepcopy(view.ingresses[0])
    changed["spec"]["rules"][0]["http"]["paths"].append(path("/changed", "app0"))
    after = dataclasses.replace(view, ingresses=(changed, *view.ingresses[1:]))

    def translated(state: ClusterView) -> DesiredState:
        with cyclic_gc_paused():
            return translate(
                state,
                options,
                certificate_cache=cache,
                settings_memo=memo,
                object_memo=objects_memo,
            )

    cold_ms, first = timed_ms(lambda: translated(view))
    warm_ms, desired = timed_ms(lambda: translated(after))

    # What the first sync applied: the full sync plans from it, as the
    # reconciler does (plan_ms); plan_initial_ms is a plan from nothing (a
    # first sync's), which is what plan_ms measured before 2026-11-30.
    first_target = plan(None, first).target

    def planned(applied: AppliedState | None) -> Plan:
        with cyclic_gc_paused():
            return plan(applied, desired)

    plan_initial_ms, _ = timed_ms(lambda: planned(None))
    plan_ms, step = timed_ms(lambda: planned(first_target))
    # Rendered as the Applier does, whose SectionMemo holds the backend
    # sections of the last sync's configuration (here the first, cold, one).
    with tempfile.TemporaryDirectory() as scratch:
        render_options = RenderOptions(HAProxyPaths(Path(scratch)))
        templates, sections = environment(), SectionMemo()

        def rendered(target: AppliedState) -> object:
            with cyclic_gc_paused():
                return render(target, render_options, templates, sections)

        render_cold_ms, _ = timed_ms(lambda: rendered(first_target))
        render_ms, _ = timed_ms(lambda: rendered(step.target))
    emit(
        "full",
        started,
        ingresses=args.ingresses,
        tls_secrets=args.tls,
        endpoints=args.ingresses * args.pods,
        view_ms=view_ms,
        translate_cold_ms=cold_ms,
        translate_warm_ms=warm_ms,
        plan_ms=plan_ms,
        plan_initial_ms=plan_initial_ms,
        render_cold_ms=render_cold_ms,
        render_ms=render_ms,
        full_sync_warm_ms=round(warm_ms + plan_ms + render_ms, 1),
        peak_rss_mib=rss_mib(),
        problems=len(desired.problems),
    )


def bench_render(objects: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """The offline render of the cluster as YAML documents, as one YAML List
    (``kubectl get -o yaml``) and as one JSON List (``kubectl get -o json``)."""
    started = load()
    seconds: dict[str, float] = {}
    exits: dict[str, int] = {}
    stderr_lines: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as scratch:
        sources = {
            "yaml": yaml.safe_dump_all(objects),
            "list": yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": objects}),
            "json": json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}, indent=4),
        }
        source_root = Path(__file__).resolve().parents[1] / "operator"
        # Bytecode compiled first, as `pip install` (and so the image) does:
        # under PYTHONDONTWRITEBYTECODE every run would compile the package
        # again (~0.2 s), which no installed `haproxy-ingress` does.
        env = {
            **os.environ,
            "PYTHONPATH": str(source_root),
            "PYTHONPYCACHEPREFIX": str(Path(scratch) / "pycache"),
        }
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", str(source_root)],
            env=env, stdout=subprocess.DEVNULL, check=True,
        )  # fmt: skip
        for form, text in sources.items():
            source = Path(scratch) / f"cluster-{form}.{'json' if form == 'json' else 'yaml'}"
            source.write_text(text, encoding="utf-8")
            begun = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "haproxy_ingress.cli", "render", "-f", str(source),
                 "--out", str(Path(scratch) / f"out-{form}")],
                env=env, capture_output=True, text=True, check=False,
            )  # fmt: skip
            seconds[form] = round(time.perf_counter() - begun, 2)
            exits[form], stderr_lines[form] = done.returncode, len(done.stderr.splitlines())
    emit(
        "render",
        started,
        ingresses=args.ingresses,
        seconds=seconds["yaml"],
        list_seconds=seconds["list"],
        json_seconds=seconds["json"],
        exit=max(exits.values()),
        stderr_lines=stderr_lines["yaml"],
    )


@contextmanager
def fd_limit(limit: int) -> Iterator[None]:
    """Children started inside inherit ``limit`` open files (as in a Pod)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(limit, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                found.append(int(entry.name))
    return found


async def _endpoint_and_haproxy(objects: list[dict[str, Any]], args: argparse.Namespace) -> None:
    options = TranslateOptions()
    scratch = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    paths = HAProxyPaths(scratch)
    paths.ensure()
    default_certificate_path(paths).write_text(
        generate_default_certificate(datetime.datetime.now(datetime.UTC))
    )
    process = HAProxyProcess(paths, timeout=120.0)
    runtime = RuntimeClient(paths.runtime_socket)
    render_options = RenderOptions(
        paths, http_binds=(f"127.0.0.1:{free_port()}",), https_binds=(f"127.0.0.1:{free_port()}",)
    )
    applier = Applier(process, runtime, render_options)
    reconciler = Reconciler(options, applier)
    started = load()
    view = ClusterView.from_objects(objects, options)[0]
    begun = time.perf_counter()
    try:
        with fd_limit(FD_LIMIT):
            await reconciler.reconcile(view)
        start_seconds = round(time.perf_counter() - begun, 2)
    except HAProxyError as error:
        emit(
            "haproxy",
            started,
            ingresses=args.ingresses,
            fd_limit=FD_LIMIT,
            starts=False,
            error=str(error).splitlines()[-1][:300],
        )
        await process.stop()
        shutil.rmtree(scratch, ignore_errors=True)
        return
    try:
        check_seconds, check_cpu = await asyncio.to_thread(_check_cpu, paths.config)
        master = process.master_pid
        workers = _children(master) if master else []
        cpu_before = sum(_proc_cpu_seconds(p) for p in workers)
        await asyncio.sleep(args.idle)
        cpu_after = sum(_proc_cpu_seconds(p) for p in workers)
        worker_rss = sum(_proc_rss_mib(p) for p in workers)
        # Servers whose check passes: all of them with --live-pods.
        servers_up = sum(
            row["status"].startswith("UP") and row["check_status"].startswith("L4OK")
            for row in parse_csv_stat(await runtime.run("show", "stat", "-1", "4", "-1"))
        )
        reload = await _reload(process, applier, render_options, args.idle)
        emit(
            "haproxy",
            started,
            ingresses=args.ingresses,
            fd_limit=FD_LIMIT,
            starts=True,
            check_seconds=check_seconds,
            check_cpu_seconds=check_cpu,
            first_sync_seconds=start_seconds,
            servers=sum(len(slots) for slots in applier.applied.servers.values())
            if applier.applied
            else 0,
            worker_rss_mib=worker_rss,
            master_rss_mib=_proc_rss_mib(master) if master else 0.0,
            # This process holds what the controller holds (the objects, the
            # reconciler's desired and applied states, the certificate cache),
            # less Kopf and its own copy of the watched objects.
            controller_rss_mib=_proc_rss_mib(os.getpid()),
            controller_peak_rss_mib=rss_mib(),
            idle_cpu_percent=round(100 * (cpu_after - cpu_before) / args.idle, 1),
            servers_up=servers_up,
            **reload,
        )
        await _endpoint_changes(reconciler, objects, options, args)
    finally:
        await runtime.close()
        await process.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def _check_cpu(config: Path) -> tuple[float, float]:
    """``haproxy -c`` of ``config``: wall seconds and the checker's CPU seconds (user+sys)."""
    begun = time.perf_counter()
    checker = subprocess.Popen(("haproxy", "-c", "-q", "-f", str(config)))
    _, status, usage = os.wait4(checker.pid, 0)
    checker.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    assert checker.returncode == 0, "haproxy -c refused the running configuration"
    return round(time.perf_counter() - begun, 2), round(usage.ru_utime + usage.ru_stime, 2)


async def _answered(address: str) -> None:
    """One request on a new connection, until HAProxy answers it."""
    host, port = address.rsplit(":", 1)
    while True:
        try:
            reader, writer = await asyncio.open_connection(host, int(port))
        except OSError:
            await asyncio.sleep(0.01)
            continue
        try:
            writer.write(b"GET / HTTP/1.1\r\nHost: bench.invalid\r\nConnection: close\r\n\r\n")
            if (await reader.read(12)).startswith(b"HTTP/1.1 "):
                return
        except OSError:
            pass
        finally:
            writer.close()
        await asyncio.sleep(0.01)


async def _reload(
    process: HAProxyProcess, applier: Applier, options: RenderOptions, idle: float
) -> dict[str, float]:
    """The running configuration reloaded twice: the master CLI's reload, the controller's.

    The first is ``HAProxyProcess.reload`` as ``Applier`` calls it (server
    state saved, ``reload`` on the master CLI, until the old worker stops),
    then one request on a new connection: the time until the new worker
    serves. Its CPU is the master's (it re-executes and parses everything
    again) and the new worker's. The second is a reload plan through
    ``Applier.apply``: render, ``haproxy -c`` (its CPU apart), the reload,
    and the runtime commands that re-assert every slot's state. The new
    worker's RSS is taken ``idle`` seconds after it serves, as the first
    worker's.
    """
    assert applier.applied is not None and process.master_pid is not None
    target = applier.applied
    master = process.master_pid
    old_workers = set(_children(master))
    master_cpu = _proc_cpu_seconds(master)
    begun = time.perf_counter()
    with fd_limit(FD_LIMIT):
        info = await process.reload(enabled_servers(target))
    await _answered(options.http_binds[0])
    reload_seconds = time.perf_counter() - begun
    new_workers = [p for p in info.worker_pids if p not in old_workers]
    cpu = _proc_cpu_seconds(master) - master_cpu + sum(map(_proc_cpu_seconds, new_workers))
    await asyncio.sleep(idle)  # as long as the first worker ran before its RSS was taken
    worker_rss = sum(map(_proc_rss_mib, new_workers))
    begun = time.perf_counter()
    # The HAProxy master is our child too, but only `haproxy -c` is reaped meanwhile.
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    with fd_limit(FD_LIMIT):
        await applier.apply(Plan(target, ("bench",), ()))
    checks = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "reload_seconds": round(reload_seconds, 2),
        "reload_cpu_seconds": round(cpu, 2),
        "reloaded_worker_rss_mib": worker_rss,
        "controller_reload_seconds": round(time.perf_counter() - begun, 2),
        "controller_check_cpu_seconds": round(
            checks.ru_utime + checks.ru_stime - children.ru_utime - children.ru_stime, 2
        ),
    }


async def _endpoint_changes(
    reconciler: Reconciler,
    objects: list[dict[str, Any]],
    options: TranslateOptions,
    args: argparse.Namespace,
) -> None:
    started = load()
    stalls: list[float] = []
    totals: list[float] = []
    ticks: list[float] = []

    async def ticker() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            ticks.append(now - last)
            last = now

    base = ClusterView.from_objects(objects, options)[0]
    index = {
        str(obj["metadata"]["labels"]["kubernetes.io/service-name"]): i
        for i, obj in enumerate(base.endpoint_slices)
    }
    services = {str(obj["metadata"]["name"]): obj for obj in base.services}
    moved_views = []
    for change in range(args.changes):
        app = change * 7919 % args.ingresses  # spread over the cluster
        shift = 1 + (change + 1) % 2  # alternate so every change is a change
        network = "127" if args.live_pods else "10"
        addresses = [f"{network}.{app // 250}.{app % 250}.{j + shift}" for j in range(args.pods)]
        # One EndpointSlice replaced: the view the handlers would hold after its event.
        slices = list(base.endpoint_slices)
        ports = [{"name": "http", "port": args.pod_port}]
        moved = endpoint_slice(f"app{app}", *map(endpoint, addresses), ports=ports)
        slices[index[f"app{app}"]] = moved
        # What the controller's sync reads: the Service and its slices only
        # (ServiceIndex); the whole view only if a full translation is due.
        part = ClusterView(services=(services[f"app{app}"],), endpoint_slices=(moved,))
        moved_views.append((app, dataclasses.replace(base, endpoint_slices=tuple(slices)), part))
    tick_task = asyncio.create_task(ticker())
    try:
        for app, view, part in moved_views:
            await asyncio.sleep(0.05)
            ticks.clear()
            begun = time.perf_counter()
            await reconciler.reconcile(view, endpoints_of={("default", f"app{app}")}, part=part)
            totals.append((time.perf_counter() - begun) * 1000)
            await asyncio.sleep(0.01)
            stalls.append(max(ticks, default=0.0) * 1000)
    finally:
        tick_task.cancel()
    emit(
        "endpoint",
        started,
        ingresses=args.ingresses,
        changes=len(totals),
        sync_ms_p50=round(statistics.median(totals), 1),
        sync_ms_p99=round(_percentile(totals, 99), 1),
        loop_blocked_ms_p50=round(statistics.median(stalls), 1),
        loop_blocked_ms_p99=round(_percentile(stalls, 99), 1),
        loop_blocked_ms_max=round(max(stalls), 1),
    )


def _percentile(values: list[float], q: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ingresses", type=int, default=10_000)
    parser.add_argument("--tls", type=int, default=1_000)
    parser.add_argument("--pods", type=int, default=3)
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU sampling")
    parser.add_argument(
        "--no-health-check",
        action="store_true",
        help="ConfigMap health-check: false (active checks cost HAProxy one fd per slot)",
    )
    parser.add_argument(
        "--server-slots", type=int, default=0, help="ConfigMap server-slots (0: the default)"
    )
    parser.add_argument(
        "--configmap",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another ConfigMap key (repeatable), e.g. health-check-interval=10s",
    )
    parser.add_argument(
        "--live-pods",
        action="store_true",
        help="pods on 127/8 answered by one HAProxy listener (health checks succeed, as "
        "against real pods); else 10/8 addresses nothing answers (every check times out)",
    )
    parser.add_argument("--only", default="full,render,haproxy,endpoint", help="comma-separated")
    args = parser.parse_args()
    only = set(args.only.split(","))
    began = time.perf_counter()
    args.pod_port = free_port() if args.live_pods else 8080
    network = "127" if args.live_pods else "10"
    objects = cluster(args.ingresses, args.pods, args.tls, network=network, port=args.pod_port)
    data = {"health-check": "false"} if args.no_health_check else {}
    if args.server_slots:
        data["server-slots"] = str(args.server_slots)
    data.update(item.split("=", 1) for item in args.configmap)
    if data:
        objects.append(configmap(data))
    print(
        json.dumps({"bench": "setup", "objects": len(objects),
                    "seconds": round(time.perf_counter() - began, 1), "load": load(),
                    "python_loop_ms": python_loop_ms()}),
        flush=True,
    )  # fmt: skip
    gc.collect()
    if "full" in only:
        bench_full(objects, args)
    if "render" in only:
        bench_render(objects, args)
    if only & {"haproxy", "endpoint"}:
        with live_pods(args.pod_port if args.live_pods else None):
            asyncio.run(_endpoint_and_haproxy(objects, args))


@contextmanager
def live_pods(port: int | None) -> Iterator[None]:
    """Every 127/8 address answers on ``port`` (an HAProxy that accepts and closes).

    A TCP health check then succeeds, as against a live pod, so the idle
    CPU figure is what checking real endpoints costs. Its own CPU is not in
    the figure (another process tree). None: nothing to start.
    """
    if port is None:
        yield
        return
    with tempfile.TemporaryDirectory(prefix="bench-pods-") as scratch:
        config = Path(scratch) / "pods.cfg"
        config.write_text(
            "global\n    maxconn 5000\n"
            "defaults\n    mode tcp\n    timeout client 5s\n"
            f"frontend pods\n    bind 0.0.0.0:{port}\n    tcp-request connection reject\n"
        )
        pods = subprocess.Popen(["haproxy", "-f", str(config)])
        try:
            yield
        finally:
            pods.terminate()
            pods.wait()


if __name__ == "__main__":
    main()
