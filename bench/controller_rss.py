"""The controller's whole-process memory at cluster scale (``make bench-controller-rss``).

    python bench/controller_rss.py [--ingresses 10000] [--pods 5] [--tls 1000] [--idle 60]

Issue 13's target is the RSS of the controller process as users run it, Kopf
and kubernetes-asyncio included, not the pure stages of ``bench/scale.py``.
This benchmark starts a private control plane (hack/localcluster.py), loads
``bench/scale.py``'s synthetic cluster into it (each Ingress one host, two
paths and its own Service; ``--pods`` endpoints per Service in an
EndpointSlice; ``--tls`` TLS Secrets, half RSA-2048, half P-256), runs the
controller as ``tests/e2e/operator.py`` does (shipped manifests and RBAC, a
real HAProxy, this machine's fd limit), and reads VmRSS and VmHWM of the
controller's Python process (HAProxy's master and workers apart) from /proc:

- ``first-sync``: once ``/readyz`` answers 200 after the first full sync;
- ``idle``: ``--idle`` seconds later;
- ``churn``: after ``--changes`` EndpointSlices changed and one Ingress got a
  second host, once that host answers and the controller's syncs went quiet
  (5 s: before the heap is handed back, ``memory.py``);
- ``settled``: ``--idle`` seconds after that;
- ``statuses``: seconds more until the first sync's status writes are over
  (the published address on the last Ingress);
- ``endpoint-latency``: then ``--latency`` EndpointSlice changes, one at a
  time, each timed from its PATCH to HAProxy showing the new address.

One JSON line per measurement, with the load average at its start and end.
Endpoint addresses are moved into 198.19.0.0/16, which this machine
blackholes: HAProxy's health checks fail at once instead of leaving the host.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import importlib
import ipaddress
import json
import os
import signal
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.e2e.conftest import Kube, localcluster  # noqa: E402

import haproxy_ingress  # noqa: E402
from bench.scale import _children, _percentile, cluster, emit, load  # noqa: E402
from haproxy_ingress.haproxy.paths import HAProxyPaths  # noqa: E402
from haproxy_ingress.haproxy.runtime import RuntimeClient  # noqa: E402

# tests/e2e/operator.py imports hack/podnet.py via sys.path (see bench/churn.py).
_e2e: Any = importlib.import_module("tests.e2e.operator")

NAMESPACE = "default"  # where bench/scale.py's cluster() puts everything
# Blackholed on this machine (`ip route`); 198.18.2.0/24 is bench/churn.py's pod network.
ENDPOINT_NET = ipaddress.ip_network("198.19.0.0/16")
WRITERS = 8  # parallel requests while loading: the API server is the bottleneck
COLLECTIONS = {
    "Service": "/api/v1/namespaces/{ns}/services",
    "Secret": "/api/v1/namespaces/{ns}/secrets",
    "EndpointSlice": "/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices",
    "Ingress": "/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses",
}


class WideServiceRange(localcluster.LocalCluster):  # type: ignore[misc]
    """The default /24 holds 254 ClusterIPs; 10,000 Services need a /16."""

    service_cluster_ip_range = "10.96.0.0/16"
    kubernetes_service_ip = "10.96.0.1"

    #: The API server's --etcd-compaction-interval (its default: 5m).
    compaction_interval = "5m"

    def _generate_pki(self) -> None:
        localcluster.generate_pki(self.pki, kubernetes_service_ip=self.kubernetes_service_ip)

    def _apiserver_extra_args(self) -> list[str]:
        return [f"--etcd-compaction-interval={self.compaction_interval}"]


class Api:
    """Admin requests on one kept-alive connection per thread (kubectl is far slower)."""

    def __init__(self, kube: Kube) -> None:
        server = kube.server.removeprefix("https://")
        self._host, port = server.rsplit(":", 1)
        self._port = int(port)
        self._context: ssl.SSLContext = kube.cluster._ssl_context()
        self._local = threading.local()

    def request(self, method: str, path: str, body: Any = None, content_type: str = "") -> int:
        for attempt in range(5):
            connection = getattr(self._local, "connection", None)
            if connection is None:
                connection = http.client.HTTPSConnection(
                    self._host, self._port, context=self._context, timeout=60
                )
                self._local.connection = connection
            headers = {"Content-Type": content_type or "application/json"}
            try:
                connection.request(method, path, json.dumps(body), headers)
                response = connection.getresponse()
                text = response.read()
            except (OSError, http.client.HTTPException):
                connection.close()
                self._local.connection = None
                if attempt == 4:
                    raise
                continue
            if response.status == 429 or response.status >= 500:
                time.sleep(0.5 * (attempt + 1))  # the API server sheds load: come back
                continue
            if response.status >= 400 and response.status != 409:
                raise RuntimeError(f"{method} {path}: {response.status} {text[:300]!r}")
            return int(response.status)
        raise RuntimeError(f"{method} {path}: still refused after 5 attempts")

    def create(self, obj: dict[str, Any]) -> int:
        meta = obj["metadata"]
        path = COLLECTIONS[obj["kind"]].format(ns=meta.get("namespace", NAMESPACE))
        return self.request("POST", path, for_api(obj))

    def merge_patch(self, obj: dict[str, Any], patch: dict[str, Any]) -> int:
        meta = obj["metadata"]
        path = COLLECTIONS[obj["kind"]].format(ns=meta.get("namespace", NAMESPACE))
        return self.request(
            "PATCH", f"{path}/{meta['name']}", patch, "application/merge-patch+json"
        )


def for_api(obj: dict[str, Any]) -> dict[str, Any]:
    """Without what the API server sets (a uid or resourceVersion would be a precondition)."""
    drop = {"uid", "resourceVersion", "creationTimestamp"}
    meta = {k: v for k, v in obj["metadata"].items() if k not in drop}
    return {**obj, "metadata": meta}


def blackholed(objects: list[dict[str, Any]]) -> None:
    """Number every endpoint address anew inside ENDPOINT_NET (in place)."""
    hosts = ENDPOINT_NET.hosts()
    for obj in objects:
        if obj["kind"] == "EndpointSlice":
            for item in obj["endpoints"]:
                item["addresses"] = [str(next(hosts))]


def create_all(api: Api, objects: list[dict[str, Any]]) -> None:
    """Create the objects in parallel, Ingresses last; progress on stderr."""
    ordered = sorted(objects, key=lambda o: o["kind"] == "Ingress")
    begun, done = time.monotonic(), 0
    with ThreadPoolExecutor(WRITERS) as pool:
        for done, _ in enumerate(pool.map(api.create, ordered), 1):
            if done % 2000 == 0 or done == len(ordered):
                rate = done / (time.monotonic() - begun)
                print(
                    f"[load] {done}/{len(ordered)} objects, {rate:.0f}/s, load {load()}",
                    file=sys.stderr,
                    flush=True,
                )


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS, VmHWM, RssAnon, RssFile of ``pid`` in MiB."""
    wanted = {"VmRSS": "rss_mib", "VmHWM": "hwm_mib", "RssAnon": "anon_mib", "RssFile": "file_mib"}
    found: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in wanted:
            found[wanted[key]] = round(int(value.split()[0]) / 1024, 1)
    return found


def haproxy_rss(controller_pid: int) -> dict[str, float]:
    """HAProxy's master and workers (the controller's children and theirs), VmRSS in MiB."""
    result = {"haproxy_master_rss_mib": 0.0, "haproxy_workers_rss_mib": 0.0}
    for master in _children(controller_pid):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{master}/comm").read_text().strip() != "haproxy":
                continue
            result["haproxy_master_rss_mib"] += proc_status(master)["rss_mib"]
            for worker in _children(master):
                result["haproxy_workers_rss_mib"] += proc_status(worker)["rss_mib"]
    return {k: round(v, 1) for k, v in result.items()}


def wait(check: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        # A busy controller (the first sync of a big cluster) may answer late.
        with contextlib.suppress(OSError):
            if check():
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} after {timeout:.0f} s")
        time.sleep(0.5)


def ready(controller: Any) -> bool:
    if controller.process.poll() is not None:
        raise RuntimeError(f"the controller exited:\n{controller.log_tail(20)}")
    return bool(controller.probe("/readyz")[0] == 200)


def quiet(controller: Any, seconds: float = 5.0) -> float:
    """Wait until the controller ran no sync for ``seconds``; returns the syncs so far."""
    count = -1.0
    while True:
        time.sleep(seconds)
        with contextlib.suppress(OSError):  # too busy to answer: not quiet either
            now = controller.total("haproxy_ingress_syncs_total")
            if now == count:
                return now
            count = now


def measure(
    name: str, started: float, controller: Any, args: argparse.Namespace, **extra: Any
) -> None:
    pid = controller.process.pid
    emit(
        name,
        started,
        ingresses=args.ingresses,
        endpoints=args.ingresses * args.pods,
        tls_secrets=args.tls,
        controller={**proc_status(pid)},
        **haproxy_rss(pid),
        syncs=controller.total("haproxy_ingress_syncs_total"),
        **extra,
    )


def published(kube: Kube, name: str) -> bool:
    status = kube.get_json("ingress", name, "-n", NAMESPACE).get("status") or {}
    return bool((status.get("loadBalancer") or {}).get("ingress"))


def endpoint_latency(
    api: Api,
    objects: list[dict[str, Any]],
    socket: Path,
    changes: int,
    pods: int,
    *,
    gap: float,
) -> list[tuple[float, float]]:
    """Seconds from one EndpointSlice PATCH to HAProxy's servers showing its new address:
    from sending it, and from its answer (the API server has stored the change and
    sends the watch event then, so this is the controller's part).

    One change at a time, each to another Service, through everything a
    user's change goes through: the API server, the watch, Kopf, the sync,
    the runtime API. HAProxy is polled every 2 ms.
    """
    slices = [o for o in objects if o["kind"] == "EndpointSlice"]
    picked = slices[1 :: max(1, len(slices) // changes)][:changes]
    # Past what blackholed() and churn() hand out, inside ENDPOINT_NET.
    spare = ENDPOINT_NET.network_address + len(slices) * pods + 1_000

    async def measure() -> list[tuple[float, float]]:
        seconds = []
        async with RuntimeClient(socket) as runtime:
            for index, item in enumerate(picked):
                address = str(spare + index)
                service = item["metadata"]["labels"]["kubernetes.io/service-name"]
                backend = f"be_{NAMESPACE}_{service}_80"
                endpoints = [{**item["endpoints"][0], "addresses": [address]}]
                begun = time.monotonic()
                await asyncio.to_thread(
                    api.merge_patch, item, {"endpoints": endpoints + item["endpoints"][1:]}
                )
                stored = time.monotonic()
                while f" {address} " not in await runtime.run("show", "servers", "state", backend):
                    if time.monotonic() - begun > 60:
                        raise TimeoutError(f"{backend} never showed {address}")
                    await asyncio.sleep(0.002)
                seconds.append((time.monotonic() - begun, time.monotonic() - stored))
                await asyncio.sleep(gap)  # one change at a time
        return seconds

    return asyncio.run(measure())


def churn(api: Api, objects: Iterable[dict[str, Any]], changes: int, pods: int) -> str:
    """``changes`` EndpointSlices get new addresses, one Ingress a second host: that host."""
    slices = [o for o in objects if o["kind"] == "EndpointSlice"]
    ingresses = [o for o in objects if o["kind"] == "Ingress"]
    moved = slices[:: max(1, len(slices) // changes)][:changes]
    # Addresses after the ones blackholed() handed out, still inside ENDPOINT_NET.
    spare = ENDPOINT_NET.network_address + len(slices) * pods + 1

    def move(index_and_slice: tuple[int, dict[str, Any]]) -> int:
        index, item = index_and_slice
        endpoints = [
            {**e, "addresses": [str(spare + index * pods + j)]}
            for j, e in enumerate(item["endpoints"])
        ]
        return api.merge_patch(item, {"endpoints": endpoints})

    with ThreadPoolExecutor(WRITERS) as pool:
        list(pool.map(move, enumerate(moved)))
    # One without TLS: a TLS host answers plain HTTP with a redirect.
    target = next(o for o in ingresses if not o["spec"].get("tls"))
    # A new host, not a new path: every path of an existing host is already
    # answered (503, the endpoints are blackholed) by its "/" Prefix route,
    # while an unknown host is 404 until the change is served.
    rule = target["spec"]["rules"][0]
    host = f"rss-bench.{rule['host']}"
    api.merge_patch(target, {"spec": {"rules": [*target["spec"]["rules"], {**rule, "host": host}]}})
    return host


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ingresses", type=int, default=10_000)
    parser.add_argument("--pods", type=int, default=5, help="endpoints per Service")
    parser.add_argument("--tls", type=int, default=1_000)
    parser.add_argument("--idle", type=float, default=60.0, help="seconds between measurements")
    parser.add_argument("--changes", type=int, default=200, help="EndpointSlices changed")
    parser.add_argument(
        "--latency", type=int, default=20, help="EndpointSlice changes timed one by one at the end"
    )
    parser.add_argument(
        "--latency-gap", type=float, default=0.5, help="seconds between the timed changes"
    )
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--compaction-interval",
        default="30m",
        help="the API server's etcd compaction interval (default 30m; its own default 5m). "
        "At 10k Ingresses the controller's first paginated LIST (the next page waits on "
        "Kopf's per-object work, on one event loop) took over 5 minutes on this shared 2-core "
        "machine, and a compaction meanwhile expires the list's continue token: 410, and Kopf "
        "stops. This benchmark measures memory, so by default the list is let finish.",
    )
    parser.add_argument(
        "--controller-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for the controller (repeatable), e.g. MALLOC_ARENA_MAX=2",
    )
    args = parser.parse_args()
    # SIGTERM (timeout, kill) unwinds like Ctrl-C: the controller, HAProxy and the
    # control plane are stopped by the ExitStack below, not left behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-rss-"))
    begun = time.monotonic()
    objects = [o for o in cluster(args.ingresses, args.pods, args.tls) if o["kind"] in COLLECTIONS]
    blackholed(objects)
    print(
        json.dumps({"bench": "setup", "objects": len(objects), "workdir": str(workdir),
                    "seconds": round(time.monotonic() - begun, 1), "load": load(),
                    "haproxy_ingress": haproxy_ingress.__file__,
                    "controller_env": args.controller_env}),
        flush=True,
    )  # fmt: skip
    # The endpoints' addresses must drop what is sent to them: HAProxy's checks
    # then fail at once, and the new host's wait below tells 404 (not served
    # yet) from 503 (served, no pod). podnet's guard route covers ENDPOINT_NET;
    # without it a machine whose default route answers every address (seen
    # here: 404 from 198.19.0.0/16) kept that wait spinning for ever.
    podnet: Any = importlib.import_module("podnet")  # on the path tests.e2e.operator set
    assert ENDPOINT_NET.subnet_of(podnet.GUARD_RANGE)
    podnet.guard_blackhole()
    binaries = localcluster.ensure_binaries(verbose=False)
    control_plane = WideServiceRange(workdir / "cluster", binaries=binaries, die_with_parent=True)
    control_plane.compaction_interval = args.compaction_interval
    control_plane.start()
    with contextlib.ExitStack() as stack:
        stack.callback(control_plane.stop)
        kube = Kube(control_plane)
        api = Api(kube)
        started = load()
        begun = time.monotonic()
        create_all(api, objects)
        emit("load", started, objects=len(objects), seconds=round(time.monotonic() - begun, 1))
        started = load()
        begun = time.monotonic()
        with _environment(args.controller_env):
            controller = _e2e.start_controller(
                kube,
                workdir,
                # The shipped default, not the e2e tests' 3 s (a LIST of everything).
                "--resync-interval",
                "300",
                sync_timeout=1800,
            )
        stack.callback(controller.stop)
        wait(lambda: ready(controller), 1800, "/readyz")
        to_ready = round(time.monotonic() - begun, 1)
        measure("first-sync", started, controller, args, seconds_to_ready=to_ready)
        started = load()
        time.sleep(args.idle)
        measure("idle", started, controller, args, idle_seconds=args.idle)
        started = load()
        begun = time.monotonic()
        host = churn(api, objects, args.changes, args.pods)
        wait(lambda: controller.get(host, "/")[0] != 404, 600, "the new host")
        quiet(controller)
        measure(
            "churn",
            started,
            controller,
            args,
            changed_slices=args.changes,
            changed_ingresses=1,
            seconds=round(time.monotonic() - begun, 1),
        )
        started = load()
        time.sleep(args.idle)
        measure("settled", started, controller, args, idle_seconds=args.idle)
        if args.latency:
            # Steady state first: the first sync's status writes (one PATCH
            # per Ingress, in name order, each echoed back as an event) are
            # over once the last Ingress shows the published address.
            started = load()
            begun = time.monotonic()
            last = max(o["metadata"]["name"] for o in objects if o["kind"] == "Ingress")
            wait(lambda: published(kube, last), 1800, "the published address on every Ingress")
            emit("statuses", started, seconds=round(time.monotonic() - begun, 1))
            started = load()
            socket = HAProxyPaths(controller.state_dir).runtime_socket
            timed = endpoint_latency(
                api, objects, socket, args.latency, args.pods, gap=args.latency_gap
            )
            figures = {}
            for name, seconds in (
                ("patch", [t[0] for t in timed]),
                ("stored", [t[1] for t in timed]),
            ):
                figures[f"from_{name}_ms"] = {
                    "p50": round(_percentile(seconds, 50) * 1000, 1),
                    "p99": round(_percentile(seconds, 99) * 1000, 1),
                    "max": round(max(seconds) * 1000, 1),
                }
            emit(
                "endpoint-latency",
                started,
                ingresses=args.ingresses,
                changes=len(timed),
                gap_seconds=args.latency_gap,
                **figures,
            )


@contextlib.contextmanager
def _environment(pairs: list[str]) -> Iterator[None]:
    """``NAME=VALUE`` pairs in os.environ while the controller starts (it copies them)."""
    saved = dict(os.environ)
    os.environ.update(pair.split("=", 1) for pair in pairs)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


if __name__ == "__main__":
    main()
