"""Pods run by a real kubelet: the lifecycle the controller is built around.

Every test here runs containers through containerd and runc on the local node and
reads what the real kubelet and EndpointSlice controller publish; nothing patches
Pod status by hand.
"""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import wait_for
from tests.node.conftest import (
    NodeKube,
    describe,
    http_get,
    netexec_deployment,
    pod_ready,
    service,
)


def _deploy(kube: NodeKube, ns: str, name: str, **kwargs: Any) -> list[dict[str, Any]]:
    replicas = int(kwargs.get("replicas", 1))
    kube.apply(netexec_deployment(ns, name, kube.agnhost, **kwargs), service(ns, name))
    return wait_for(
        lambda: pods if len(pods := kube.ready_pods(ns, f"app={name}")) == replicas else None,
        timeout=90,
        what=f"{replicas} ready {name} pods\n{describe(kube, 'pods', '-n', ns)}",
    )


def test_node_is_ready_with_the_runtime_and_version(node_cluster: NodeKube) -> None:
    node = node_cluster.get_json("node", node_cluster.node_name)
    info = node["status"]["nodeInfo"]
    assert info["kubeletVersion"] == node_cluster.version
    assert info["containerRuntimeVersion"].startswith("containerd://")
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses["InternalIP"] == node_cluster.node_ip
    assert not node["spec"].get("taints"), node["spec"].get("taints")


def test_pod_runs_ready_and_its_ip_is_in_the_endpointslice(node_cluster: NodeKube, ns: str) -> None:
    (pod,) = _deploy(node_cluster, ns, "web")
    ip = pod["status"]["podIP"]
    assert pod["spec"]["nodeName"] == node_cluster.node_name
    endpoints = wait_for(
        lambda: [e for e in node_cluster.slice_endpoints(ns, "web") if ip in e["addresses"]],
        what=f"{ip} in the EndpointSlice of web",
    )
    assert endpoints[0]["conditions"]["ready"] is True
    assert endpoints[0]["targetRef"]["name"] == pod["metadata"]["name"]
    # The container answers on its own address (agnhost netexec /hostname = pod name).
    assert http_get(f"http://{ip}:8080/hostname") == (200, pod["metadata"]["name"])


def test_kubernetes_service_reaches_the_api_server_from_a_pod(
    node_cluster: NodeKube, ns: str
) -> None:
    """In-cluster configuration works: the `kubernetes` ClusterIP leads to the API server."""
    (pod,) = _deploy(node_cluster, ns, "client")
    # No cluster DNS here: the kubelet injects KUBERNETES_SERVICE_HOST/PORT, which
    # is what in-cluster configuration reads.
    result = node_cluster.kubectl(
        "exec",
        "-n",
        ns,
        pod["metadata"]["name"],
        "--",
        "/agnhost",
        "connect",
        "--timeout=5s",
        f"{node_cluster.cluster.kubernetes_service_ip}:443",
    )
    assert result.returncode == 0, result.stderr


def test_terminating_pod_keeps_serving_through_prestop_while_slice_says_terminating(
    node_cluster: NodeKube, ns: str
) -> None:
    """The kubelet runs preStop, the slice marks the endpoint terminating, not ready."""
    (pod,) = _deploy(node_cluster, ns, "slow", grace=30, pre_stop_sleep=6)
    ip, name = pod["status"]["podIP"], pod["metadata"]["name"]
    wait_for(lambda: node_cluster.slice_endpoints(ns, "slow"), what="slow's endpoint")
    node_cluster.kubectl("delete", "pod", "-n", ns, name, "--wait=false")

    def terminating() -> dict[str, Any] | None:
        for e in node_cluster.slice_endpoints(ns, "slow"):
            if ip in e["addresses"] and e["conditions"].get("terminating"):
                return e
        return None

    endpoint = wait_for(terminating, timeout=10, what=f"{ip} terminating in the slice")
    assert endpoint["conditions"]["ready"] is False
    # The preStop sleep has not finished: SIGTERM has not been sent, the pod serves.
    status, body = http_get(f"http://{ip}:8080/hostname")
    assert (status, body) == (200, name)
    # Then the container stops and the endpoint leaves the slice.
    wait_for(
        lambda: not any(ip in e["addresses"] for e in node_cluster.slice_endpoints(ns, "slow")),
        timeout=40,
        what=f"{ip} gone from the slice",
    )


def test_container_killed_through_the_runtime_is_restarted(node_cluster: NodeKube, ns: str) -> None:
    (pod,) = _deploy(node_cluster, ns, "victim")
    name = pod["metadata"]["name"]
    container_id = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    node_cluster.ctr("tasks", "kill", "--signal", "SIGKILL", container_id)

    def restarted() -> dict[str, Any] | None:
        current = node_cluster.get_json("pod", "-n", ns, name)
        status = current["status"]["containerStatuses"][0]
        return current if status["restartCount"] >= 1 and pod_ready(current) else None

    current = wait_for(restarted, timeout=60, what=f"{name} restarted and ready again")
    last_state = current["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert last_state["exitCode"] == 137, last_state
    ip = current["status"]["podIP"]
    assert http_get(f"http://{ip}:8080/hostname") == (200, name)


def test_scale_up_and_down_follow_in_the_slice(node_cluster: NodeKube, ns: str) -> None:
    _deploy(node_cluster, ns, "scaled", replicas=1)
    node_cluster.kubectl("scale", "deployment", "-n", ns, "scaled", "--replicas=3")
    pods = wait_for(
        lambda: p if len(p := node_cluster.ready_pods(ns, "app=scaled")) == 3 else None,
        timeout=90,
        what="3 ready pods",
    )
    ips = {p["status"]["podIP"] for p in pods}
    wait_for(
        lambda: (
            ips
            <= {
                a
                for e in node_cluster.slice_endpoints(ns, "scaled")
                if e["conditions"]["ready"]
                for a in e["addresses"]
            }
        ),
        what=f"{ips} ready in the slice",
    )
    node_cluster.kubectl("scale", "deployment", "-n", ns, "scaled", "--replicas=1")
    wait_for(
        lambda: len(node_cluster.slice_endpoints(ns, "scaled")) == 1,
        timeout=60,
        what="one endpoint left",
    )
