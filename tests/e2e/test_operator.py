"""The controller against a real API server, installed as users install it.

One controller process for the module, running with the shipped
ServiceAccount's identity; pods are real HTTP servers in a network namespace.
Reload counts come from the controller's /metrics (reasons included) and
are cross-checked with HAProxy's own ``show proc``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from haproxy_ingress.haproxy.paths import HAProxyPaths
from haproxy_ingress.haproxy.process import HAProxyProcess
from tests.e2e.conftest import REPO_ROOT, Kube, service_manifest, suffix, wait_for
from tests.e2e.operator import (
    PUBLISHED_ADDRESS,
    SERVICE_ACCOUNT,
    PodNetwork,
    RunningController,
    Workload,
    events_for,
    ingress,
    start_controller,
)

pytestmark = pytest.mark.e2e
CORPUS = REPO_ROOT / "tests" / "fixtures" / "hostile" / "corpus.yaml"


@pytest.fixture(scope="module")
def pod_network() -> Iterator[PodNetwork]:
    with PodNetwork("hi-e2e") as network:
        yield network


@pytest.fixture(scope="module")
def controller(
    cluster: Kube, pod_network: PodNetwork, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningController]:
    # Depends on the pod network so that it stops first: no health check may
    # outlive the addresses it probes.
    running = start_controller(cluster, tmp_path_factory.mktemp("controller"))
    yield running
    running.stop()


def haproxy_reloads(controller: RunningController) -> int:
    """HAProxy's own count, from the master CLI."""
    process = HAProxyProcess(HAProxyPaths(controller.state_dir))

    async def show() -> int:
        info = await process.adopt()
        assert info is not None
        return info.reloads

    return asyncio.run(show())


def test_shipped_rbac_is_exactly_enough(cluster: Kube, controller: RunningController) -> None:
    def can(*args: str) -> bool:
        result = cluster.kubectl("auth", "can-i", *args, f"--as={SERVICE_ACCOUNT}", check=False)
        return result.stdout.strip() == "yes"

    assert can("watch", "ingresses.networking.k8s.io", "-A")
    assert can("patch", "ingresses.networking.k8s.io", "--subresource=status", "-n", "default")
    assert can("list", "secrets", "-A")
    assert can("create", "events", "-n", "default")
    assert can("update", "leases.coordination.k8s.io", "-n", "haproxy-ingress")
    # ... and nothing more: no writes to users' objects, no reach outside its namespace.
    assert not can("patch", "ingresses.networking.k8s.io", "-n", "default")
    assert not can("update", "services", "-n", "default")
    assert not can("create", "secrets", "-n", "default")
    assert not can("list", "configmaps", "-n", "default")
    assert not can("create", "leases.coordination.k8s.io", "-n", "default")
    assert not can("delete", "pods", "-n", "default")
    # The refusal is real, not just a can-i answer.
    refused = cluster.kubectl(
        "annotate", "namespace", "default", "x=y", f"--as={SERVICE_ACCOUNT}", check=False
    )
    assert refused.returncode != 0 and "forbidden" in refused.stderr
    # The controller, running with exactly this identity, synced.
    assert controller.total("haproxy_ingress_syncs_total") >= 1


def test_ingress_serves_pods_scales_without_reload_and_deletes_to_404(
    cluster: Kube,
    controller: RunningController,
    pod_network: PodNetwork,
    namespace: str,
    node: str,
) -> None:
    host = f"web-{suffix()}.example.com"
    workload = Workload(cluster, pod_network, namespace, "web", node)
    first = workload.add_pod("web-1")
    cluster.apply(service_manifest(namespace, "web"))
    cluster.apply(ingress(namespace, "web", host, "web"))
    wait_for(lambda: controller.get(host)[0] == 200, what="the first pod through HAProxy")
    assert controller.get(host, "/hello")[1] == f"{first.name} /hello"

    haproxy_before = haproxy_reloads(controller)
    # HAProxy counts a reload before traffic flows, the controller once its sync
    # returns; the controller also counts the first start, which HAProxy does not.
    wait_for(
        lambda: controller.total("haproxy_ingress_reloads_total") == haproxy_before + 1,
        what="the controller's reload count to settle",
    )
    reloads = controller.total("haproxy_ingress_reloads_total")
    operations = controller.total("haproxy_ingress_runtime_operations_total")
    pods = [first, workload.add_pod("web-2"), workload.add_pod("web-3")]
    names = {pod.name for pod in pods}

    def all_pods_answer() -> bool:
        return {controller.get(host)[1].split(" ")[0] for _ in range(30)} == names

    wait_for(all_pods_answer, what="all three pods answering")
    assert controller.total("haproxy_ingress_reloads_total") == reloads
    assert haproxy_reloads(controller) == haproxy_before
    assert controller.total("haproxy_ingress_runtime_operations_total") > operations

    cluster.kubectl("delete", "ingress", "web", "-n", namespace)
    wait_for(lambda: controller.get(host)[0] == 404, what="the route to disappear")
    assert haproxy_reloads(controller) == haproxy_before


def test_broken_ingress_gets_a_warning_event_and_disturbs_nothing(
    cluster: Kube,
    controller: RunningController,
    pod_network: PodNetwork,
    namespace: str,
    node: str,
) -> None:
    good_host = f"good-{suffix()}.example.com"
    workload = Workload(cluster, pod_network, namespace, "app", node)
    pod = workload.add_pod("app-1")
    cluster.apply(service_manifest(namespace, "app"))
    cluster.apply(ingress(namespace, "good", good_host, "app"))
    wait_for(lambda: controller.get(good_host)[0] == 200, what="the good Ingress")
    # The API server accepts this path; the controller's validator does not.
    cluster.apply(
        ingress(
            namespace,
            "broken",
            f"bad-{suffix()}.example.com",
            "app",
            path="/a;b",
            path_type="ImplementationSpecific",
        )
    )

    def warning() -> list[dict[str, object]]:
        return [e for e in events_for(cluster, namespace, "broken") if e["type"] == "Warning"]

    (event,) = wait_for(warning, what="a Warning Event on the broken Ingress")
    assert event["reason"] == "Rejected"
    assert "spec.rules[0].http.paths[0].path" in str(event["message"])
    assert controller.get(good_host)[1].startswith(pod.name)
    # Posted once per distinct problem, not on every sync.
    cluster.apply(ingress(namespace, "other", f"o-{suffix()}.example.com", "app"))
    wait_for(lambda: controller.total("haproxy_ingress_syncs_total") > 0)
    assert len(warning()) == 1


def test_status_address_and_no_marks_on_users_objects(
    cluster: Kube, controller: RunningController, namespace: str
) -> None:
    cluster.apply(service_manifest(namespace, "site"))
    cluster.apply(ingress(namespace, "site", f"site-{suffix()}.example.com", "site"))

    def published() -> bool:
        status = cluster.get_json("ingress", "site", "-n", namespace).get("status") or {}
        entries = (status.get("loadBalancer") or {}).get("ingress") or []
        return entries == [{"ip": PUBLISHED_ADDRESS}]

    wait_for(published, what="the published address in the Ingress status")
    metadata = cluster.get_json("ingress", "site", "-n", namespace)["metadata"]
    assert not metadata.get("finalizers")
    assert not metadata.get("annotations")
    managers = {entry["manager"] for entry in metadata.get("managedFields", [])}
    writes = {
        (entry["manager"], entry.get("subresource", ""))
        for entry in metadata.get("managedFields", [])
        if entry["manager"] != "e2e"
    }
    assert all(subresource == "status" for _, subresource in writes), (managers, writes)
    # Handed to another class: no longer ours, so our address is taken back.
    cluster.kubectl(
        "patch",
        "ingress",
        "site",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec": {"ingressClassName": "other"}}',
    )

    def cleared() -> bool:
        status = cluster.get_json("ingress", "site", "-n", namespace).get("status") or {}
        return not (status.get("loadBalancer") or {}).get("ingress")

    wait_for(cleared, what="the published address to be removed")


def test_controller_log_has_no_tracebacks_or_failed_resyncs(
    controller: RunningController,
) -> None:
    log = controller.log.read_text(errors="replace")
    assert "Traceback" not in log, controller.log_tail()
    # The periodic LIST of every watched kind ran with the ServiceAccount's rights.
    assert "resync could not list" not in log
    assert "deleted during a watch gap" not in log


def test_controller_state_dir_is_private(controller: RunningController) -> None:
    paths = HAProxyPaths(controller.state_dir)
    for path in (paths.runtime_socket, paths.master_socket):
        assert path.stat().st_mode & 0o077 == 0, path
    for pem in Path(paths.certs).glob("*.pem"):
        assert pem.stat().st_mode & 0o077 == 0, pem


def test_hostile_corpus_through_the_operator(cluster: Kube, controller: RunningController) -> None:
    """What the API server lets in reaches the controller, which reports it and serves on."""
    corpus = yaml.safe_load(CORPUS.read_text())
    for obj in corpus["base"]:
        if obj["kind"] != "IngressClass":  # installed by manifests/ already
            cluster.apply(obj)
    accepted: list[dict[str, Any]] = []
    for case in corpus["cases"]:
        admitted = all(
            cluster.kubectl("apply", "-f", "-", input=json.dumps(obj), check=False).returncode == 0
            for obj in case["objects"]
        )
        if admitted:
            accepted.append(case)
        if admitted and any(obj["kind"] == "ConfigMap" for obj in case["objects"]):
            # One ConfigMap: check each bad value before the next replaces it.
            wait_for(lambda case=case: _reported(cluster, case), what=case["description"])
    cluster.kubectl("apply", "-f", str(REPO_ROOT / "manifests" / "20-configmap.yaml"))
    print(f"hostile corpus: the API server admitted {len(accepted)} of {len(corpus['cases'])}")
    assert len(accepted) >= 30, [c["description"] for c in accepted]
    for case in accepted:
        wait_for(lambda case=case: _reported(cluster, case), what=case["description"])
    # The good Ingress kept its route all along: 503 (no pods), not the 404 of no route.
    assert controller.get("good.example.com")[0] == 503


def _reported(cluster: Kube, case: dict[str, Any]) -> bool:
    """Every expected problem of the case is a Warning Event on its object."""
    for expected in case["expect"]:
        ref, _, field = expected.partition(": ")
        kind, _, name = ref.partition(" ")
        namespace, _, name = name.partition("/")
        messages = [
            str(event.get("message"))
            for event in events_for(cluster, namespace, name)
            if event["type"] == "Warning" and event["involvedObject"]["kind"] == kind
        ]
        if not any(message.startswith(field) for message in messages):
            return False
    return True


def test_no_secret_material_in_the_controller_log(
    cluster: Kube, controller: RunningController
) -> None:
    """TLS keys reach HAProxy's files (0600), never the log."""
    log = controller.log.read_text(errors="replace")
    corpus = yaml.safe_load(CORPUS.read_text())
    keys = [
        obj["data"]["tls.key"]
        for case in corpus["cases"]
        for obj in case["objects"]
        if obj["kind"] == "Secret" and "tls.key" in obj.get("data", {})
    ]
    assert keys
    for key in keys:
        assert key[:40] not in log
    assert "PRIVATE KEY" not in log
