"""API requests and time per watch gap, at 1k and 10k Ingresses (`make bench-watchgap`).

Starts a private control plane (hack/localcluster.py, with an audit log of the
controller's ServiceAccount), the controller as users run it (default 300 s
resync) behind a TCP proxy (tests/e2e/partition.py), and N Ingresses. Then two
gaps, each with an Ingress deleted meanwhile:

- ``partition``: the proxy drops and refuses the controller's connections for
  ``--partition`` seconds, then heals (watches can resume: no 410);
- ``restart``: kube-apiserver stops, the Ingress is deleted straight from etcd,
  it starts again (a new watch cache: 410 Gone, Kopf re-lists).

For each: seconds from the API server being reachable again to the deleted
route answering 404, the verifications logged, and the controller's API
requests from the gap's start until 5 s after it settled, counted by verb
and resource from the audit log (Lease renewals, Events and Ingress status apart).
One JSON line per (ingresses, scenario).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.e2e.conftest import Kube, localcluster, service_manifest  # noqa: E402
from tests.e2e.partition import ApiProxy  # noqa: E402
from tests.e2e.test_outage import delete_from_etcd  # noqa: E402

# tests/e2e/operator.py imports hack/podnet.py via sys.path (see bench/churn.py).
_e2e: Any = importlib.import_module("tests.e2e.operator")

NAMESPACE = "bench-gap"
VERIFIED = "view verified after a watch gap"


def _host(i: int) -> str:
    return f"i{i}.gap.example.com"


def create_ingresses(kube: Kube, start: int, stop: int) -> None:
    for first in range(start, stop, 500):
        items = [
            _e2e.ingress(NAMESPACE, f"i{i}", _host(i), "web")
            for i in range(first, min(first + 500, stop))
        ]
        kube.apply(*items)


def audit_lines(kube: Kube, offset: int) -> list[dict[str, Any]]:
    with kube.cluster.audit_log.open("rb") as log:
        log.seek(offset)
        return [json.loads(line) for line in log.read().splitlines() if line.strip()]


def count_requests(entries: list[dict[str, Any]]) -> dict[str, int]:
    """Distinct requests (audit IDs) by "verb resource"."""
    seen: dict[str, str] = {}
    for entry in entries:
        ref = entry.get("objectRef") or {}
        resource = ref.get("resource", entry["requestURI"])
        if ref.get("subresource"):
            resource += "/" + ref["subresource"]
        seen[entry["auditID"]] = f"{entry['verb']} {resource}"
    return dict(sorted(Counter(seen.values()).items()))


def wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise TimeoutError(what)


def quiet(kube: Kube, seconds: float = 3.0) -> None:
    """Until the controller wrote no Ingress status for ``seconds`` (new Ingresses get one)."""
    while True:
        offset = kube.cluster.audit_log.stat().st_size
        time.sleep(seconds)
        if "ingresses/status" not in count_requests_names(audit_lines(kube, offset)):
            return


def count_requests_names(entries: list[dict[str, Any]]) -> set[str]:
    return {name.split(" ")[1] for name in count_requests(entries)}


def gap(
    kube: Kube, controller: Any, proxy: ApiProxy, scenario: str, *, victim: int, seconds: float
) -> dict[str, Any]:
    quiet(kube)
    offset = kube.cluster.audit_log.stat().st_size
    verified = controller.log.read_text(errors="replace").count(VERIFIED)
    started = time.monotonic()
    if scenario == "partition":
        with proxy.partitioned():
            kube.kubectl("delete", "ingress", f"i{victim}", "-n", NAMESPACE)
            time.sleep(seconds)
    else:
        kube.cluster.restart_apiserver(
            lambda etcd_url: delete_from_etcd(etcd_url, NAMESPACE, f"i{victim}")
        )
    back = time.monotonic()
    wait(lambda: controller.get(_host(victim))[0] == 404, 300, "the deleted route")
    gone = time.monotonic() - back
    time.sleep(5)  # Kopf's re-lists and any further verification
    logged = controller.log.read_text(errors="replace").count(VERIFIED) - verified
    requests = count_requests(audit_lines(kube, offset))
    aside = ("leases", "events", "ingresses/status")
    return {
        "scenario": scenario,
        "gap_seconds": round(back - started, 2),
        "deleted_route_gone_after_s": round(gone, 2),
        "verifications": logged,
        "requests": sum(n for k, n in requests.items() if k.split(" ")[1] not in aside),
        "by_kind": {k: n for k, n in requests.items() if k.split(" ")[1] not in aside},
        "leases_and_events": {k: n for k, n in requests.items() if k.split(" ")[1] in aside},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ingresses", default="1000,10000", help="comma-separated counts")
    parser.add_argument("--partition", type=float, default=5.0, help="seconds cut off")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    counts = sorted(int(n) for n in args.ingresses.split(","))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-watchgap-"))
    binaries = localcluster.ensure_binaries(verbose=False)
    cluster = localcluster.LocalCluster(
        workdir / "cluster", binaries=binaries, die_with_parent=True
    )
    cluster.start()
    with contextlib.ExitStack() as stack:
        stack.callback(cluster.stop)
        kube = Kube(cluster)
        kube.kubectl("create", "namespace", NAMESPACE)
        kube.apply(service_manifest(NAMESPACE, "web"))
        proxy = ApiProxy("127.0.0.1", int(kube.server.rsplit(":", 1)[1]))
        stack.callback(proxy.close)
        controller = _e2e.start_controller(
            kube, workdir, "--resync-interval", "300", api_server=proxy.url
        )
        stack.callback(controller.stop)
        made, victim = 0, 0
        for count in counts:
            create_ingresses(kube, made, count)
            made = count
            last = _host(made - 1)
            wait(lambda: controller.get(last)[0] == 503, 600, "every route")  # noqa: B023
            time.sleep(3)
            for scenario in ("partition", "restart"):
                result = gap(
                    kube, controller, proxy, scenario, victim=victim, seconds=args.partition
                )
                victim += 1
                print(json.dumps({"ingresses": count, **result}), flush=True)


if __name__ == "__main__":
    main()
