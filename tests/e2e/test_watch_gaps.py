"""Watch gaps: after an API server restart or a network partition the view is
verified at once (not at the next periodic resync), and a reused pod IP never
gets a deleted pod's traffic once the controller reaches the API server again.

The controller here runs with the default 300 s resync, behind a TCP proxy
(tests/e2e/partition.py) that can cut it off from the API server.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import (
    Kube,
    new_namespace,
    pod_manifest,
    service_manifest,
    set_pod_status,
    suffix,
    wait_for,
)
from tests.e2e.operator import (
    PodNetwork,
    RunningController,
    Workload,
    events_for,
    ingress,
    start_controller,
)
from tests.e2e.partition import ApiProxy
from tests.e2e.test_outage import delete_from_etcd

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pod_network() -> Iterator[PodNetwork]:
    # Own name and subnet: other e2e modules (and benchmarks) may run meanwhile.
    with PodNetwork("hi-gap", subnet=ipaddress.IPv4Network("198.18.9.0/24")) as network:
        yield network


@pytest.fixture(scope="module")
def proxy(cluster: Kube) -> Iterator[ApiProxy]:
    port = int(cluster.server.rsplit(":", 1)[1])
    running = ApiProxy("127.0.0.1", port)
    yield running
    running.close()


@pytest.fixture(scope="module")
def controller(
    cluster: Kube,
    pod_network: PodNetwork,
    proxy: ApiProxy,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningController]:
    running = start_controller(
        cluster,
        tmp_path_factory.mktemp("watch-gaps"),
        # The default: a gap must be caught by its detection, not by this timer.
        "--resync-interval",
        "300",
        api_server=proxy.url,
    )
    yield running
    running.stop()


def verifications(controller: RunningController) -> float:
    return controller.total("haproxy_ingress_watch_gap_verifications_total")


def settle_reloads(controller: RunningController) -> float:
    """The reload count once no sync is pending."""
    time.sleep(2)
    return controller.total("haproxy_ingress_reloads_total")


def test_deletions_during_an_api_server_restart_go_within_seconds(
    cluster: Kube, controller: RunningController, namespace: str
) -> None:
    gone, kept = f"gone-{suffix()}.example.com", f"kept-{suffix()}.example.com"
    cluster.apply(service_manifest(namespace, "web"))
    cluster.apply(ingress(namespace, "gone", gone, "web"), ingress(namespace, "kept", kept, "web"))
    wait_for(lambda: controller.get(gone)[0] == controller.get(kept)[0] == 503, what="routes")
    reloads = settle_reloads(controller)
    before = verifications(controller)

    started: list[float] = []

    def while_down(etcd_url: str) -> None:
        delete_from_etcd(etcd_url, namespace, "gone")
        started.append(time.monotonic())  # the new API server is started right after

    cluster.cluster.restart_apiserver(while_down)
    ready = time.monotonic()
    wait_for(lambda: controller.get(gone)[0] == 404, interval=0.05, what="the deleted route")
    elapsed = time.monotonic() - ready
    print(
        f"\n[watch gap] API server restart: deleted route gone {elapsed:.2f} s after /readyz "
        f"({time.monotonic() - started[0]:.2f} s after the new API server was started; "
        f"its start-up took {ready - started[0]:.2f} s)"
    )
    # The gap was detected and verified (wait_for's 30 s are far inside the 300 s resync).
    assert verifications(controller) > before
    assert controller.get(kept)[0] == 503
    new = f"new-{suffix()}.example.com"
    cluster.apply(ingress(namespace, "new", new, "web"))
    wait_for(lambda: controller.get(new)[0] == 503, what="a route created after the restart")
    assert controller.total("haproxy_ingress_reloads_total") == reloads
    assert "Traceback" not in controller.log.read_text(errors="replace")


def _lease_renewed(cluster: Kube) -> datetime.datetime:
    lease = cluster.get_json("lease", "haproxy-ingress-status", "-n", "haproxy-ingress")
    return datetime.datetime.fromisoformat(lease["spec"]["renewTime"].replace("Z", "+00:00"))


def _ask(controller: RunningController, host: str) -> tuple[int, str]:
    status, body = controller.get(host)
    return status, body.split(" ")[0]


@pytest.fixture
def other_namespace(cluster: Kube) -> Iterator[str]:
    """A second tenant's namespace."""
    with new_namespace(cluster) as name:
        yield name


def test_a_partition_with_deletions_and_a_reused_pod_ip(
    cluster: Kube,
    controller: RunningController,
    proxy: ApiProxy,
    *,
    pod_network: PodNetwork,
    namespace: str,
    other_namespace: str,
    node: str,
) -> None:
    mine, theirs = namespace, other_namespace
    site, gone = f"site-{suffix()}.example.com", f"gone-{suffix()}.example.com"
    their_site = f"theirs-{suffix()}.example.com"
    # Tenant one: a pod behind two routes. Tenant two: a route, no pod yet.
    pod_a = Workload(cluster, pod_network, mine, "web", node).add_pod("a")
    cluster.apply(service_manifest(mine, "web"), service_manifest(theirs, "web"))
    cluster.apply(
        ingress(mine, "site", site, "web"),
        ingress(mine, "gone", gone, "web"),
        ingress(theirs, "site", their_site, "web"),
    )
    wait_for(lambda: _ask(controller, site) == (200, f"{mine}-a"), what="tenant one's pod")
    wait_for(lambda: controller.get(their_site)[0] == 503, what="tenant two's route")
    reloads = settle_reloads(controller)
    before = verifications(controller)

    with proxy.partitioned():
        time.sleep(3)  # every watch notices; the controller retries against a refusal
        # Meanwhile: an Ingress deleted, another deleted and recreated under its
        # name, tenant one's pod gone and its IP given to tenant two's new pod.
        cluster.kubectl("delete", "ingress", "gone", "-n", mine)
        cluster.kubectl("delete", "ingress", "site", "-n", mine)
        cluster.apply(ingress(mine, "site", site, "web"))
        pod_a.kill()
        cluster.kubectl("delete", "pod", "a", "-n", mine, "--grace-period=0", "--force")
        cluster.apply(pod_manifest(theirs, "b", "web", node))
        set_pod_status(cluster, theirs, "b", pod_a.address, ready=True)
        wait_for(
            lambda: _slice_addresses(cluster, theirs) == {pod_a.address},
            what="tenant two's EndpointSlice to hold the reused address",
        )
        time.sleep(2)
        assert controller.total("haproxy_ingress_view_unconfirmed") == 1
        # Cut off, HAProxy keeps serving what was confirmed (tenant one's route).
        assert controller.get(site)[0] == 503  # the pod is gone, its route is not
        assert controller.get(gone)[0] == 503
    healed = time.monotonic()
    wait_for(lambda: verifications(controller) > before, interval=0.05, what="a verification")
    verified = time.monotonic() - healed
    wait_for(lambda: controller.total("haproxy_ingress_view_unconfirmed") == 0, what="confirmed")
    wait_for(lambda: controller.get(gone)[0] == 404, interval=0.05, what="the deleted route")
    gone_after = time.monotonic() - healed
    # Only now does the reused address answer again: as tenant two's pod.
    pod_b = pod_network.start_pod(f"{theirs}-b", address=pod_a.address)
    wait_for(lambda: _ask(controller, their_site) == (200, pod_b.name), what="tenant two's pod")
    consistent = time.monotonic() - healed
    print(
        f"\n[watch gap] partition healed: verified after {verified:.2f} s, deleted route "
        f"gone after {gone_after:.2f} s, the reused IP serves its new owner after "
        f"{consistent:.2f} s"
    )
    answers = [_ask(controller, site) for _ in range(50)]
    assert all(status == 503 for status, _ in answers), answers  # never tenant two's pod

    # The ConfigMap watch is back: a probe key comes back as a Warning Event.
    probe = f"watchgap-probe-{suffix()}"
    patch = json.dumps({"data": {probe: "x"}})
    cluster.kubectl("patch", "configmap", "haproxy-ingress", "-n", "haproxy-ingress", "-p", patch)
    try:
        wait_for(
            lambda: any(
                probe in str(event.get("message"))
                for event in events_for(cluster, "haproxy-ingress", "haproxy-ingress")
            ),
            what="the ConfigMap change to be seen",
        )
    finally:
        remove = json.dumps([{"op": "remove", "path": f"/data/{probe}"}])
        cluster.kubectl(
            "patch",
            "configmap",
            "haproxy-ingress",
            "-n",
            "haproxy-ingress",
            "--type=json",
            "-p",
            remove,
        )
    # The status Lease is renewed again.
    since = datetime.datetime.now(datetime.UTC)
    wait_for(lambda: _lease_renewed(cluster) > since, what="the Lease to be renewed")
    # No reload storm: the gap cost runtime operations only.
    assert controller.total("haproxy_ingress_reloads_total") == reloads
    assert "Traceback" not in controller.log.read_text(errors="replace")


def _slice_addresses(cluster: Kube, namespace: str) -> set[str]:
    slices: list[dict[str, Any]] = cluster.get_json("endpointslices", "-n", namespace)["items"]
    return {
        address
        for item in slices
        for endpoint in item.get("endpoints") or ()
        for address in endpoint.get("addresses") or ()
    }
