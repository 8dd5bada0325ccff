"""Smoke tests: the local control plane does what the controller's e2e tests rely on.

No kubelet runs, so the tests play it: a Node object, Pods bound to it with
``spec.nodeName``, and Pod status patched through the ``status`` subresource. The
real EndpointSlice controller must then publish, update and withdraw endpoints
exactly as in a real cluster, because that is the input the ingress controller
turns into HAProxy servers.

Addresses: EndpointSlice validation rejects loopback addresses (127.0.0.0/8), so
pod IPs that must reach a slice come from 198.19.0.0/16, the upper half of the RFC
2544 benchmarking range (hack/podnet.py serves real pods from 198.18.0.0/24). Nothing
in this file sends traffic to them.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.e2e.conftest import Kube, pod_manifest, service_manifest, set_pod_status, wait_for

pytestmark = pytest.mark.e2e

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def _suffix() -> str:
    return uuid.uuid4().hex[:6]


def _slices(cluster: Kube, ns: str, service: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.get_json(
        "endpointslices", "-n", ns, "-l", f"{SERVICE_NAME_LABEL}={service}"
    )["items"]
    return items


def _endpoints(cluster: Kube, ns: str, service: str) -> list[dict[str, Any]]:
    return [ep for s in _slices(cluster, ns, service) for ep in (s.get("endpoints") or [])]


def test_control_plane_is_ready_and_versions_match(cluster: Kube) -> None:
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == cluster.version
    assert version["clientVersion"]["gitVersion"] == cluster.version
    assert cluster.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
    # RBAC is real: an unprivileged identity is refused.
    denied = cluster.kubectl(
        "auth",
        "can-i",
        "list",
        "secrets",
        "-A",
        "--as=system:serviceaccount:default:default",
        check=False,
    )
    assert denied.stdout.strip() == "no"


def test_pod_endpoints_follow_pod_lifecycle(cluster: Kube, namespace: str, node: str) -> None:
    """Ready Pod -> ready endpoint; graceful delete -> terminating; force delete -> gone."""
    ns, svc, pod, ip = namespace, "web", "web-0", "198.19.0.10"
    cluster.apply(service_manifest(ns, svc), pod_manifest(ns, pod, svc, node))
    set_pod_status(cluster, ns, pod, ip, ready=True)

    def ready_endpoint() -> dict[str, Any] | None:
        eps = [ep for ep in _endpoints(cluster, ns, svc) if ip in ep["addresses"]]
        return eps[0] if eps and eps[0]["conditions"].get("ready") else None

    endpoint = wait_for(ready_endpoint, what="a ready endpoint in the Service's EndpointSlice")
    assert endpoint["addresses"] == [ip]
    assert endpoint["conditions"] == {"ready": True, "serving": True, "terminating": False}
    assert endpoint["nodeName"] == node
    assert endpoint["targetRef"]["kind"] == "Pod" and endpoint["targetRef"]["name"] == pod
    (slice_,) = _slices(cluster, ns, svc)
    assert slice_["addressType"] == "IPv4"
    # The named targetPort "web" was resolved to the container port's number.
    assert slice_["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]

    # Graceful delete: the API server only sets deletionTimestamp (the kubelet,
    # absent here, would finish the job). While the Pod still reports Ready the
    # endpoint stays *serving* but is no longer *ready*, and is *terminating*.
    cluster.kubectl("delete", "pod", pod, "-n", ns, "--grace-period=2", "--wait=false")
    terminating = wait_for(
        lambda: next(
            (ep for ep in _endpoints(cluster, ns, svc) if ep["conditions"].get("terminating")), None
        ),
        what="the endpoint to turn terminating",
    )
    assert terminating["addresses"] == [ip]
    assert terminating["conditions"] == {"ready": False, "serving": True, "terminating": True}

    # The kubelet would next fail readiness: the endpoint stops serving too.
    set_pod_status(cluster, ns, pod, ip, ready=False)
    wait_for(
        lambda: (
            [ep["conditions"] for ep in _endpoints(cluster, ns, svc)]
            == [{"ready": False, "serving": False, "terminating": True}]
        ),
        what="the terminating endpoint to stop serving",
    )

    # Without a kubelet nothing completes the deletion, even past the grace period.
    wait_for(lambda: _grace_expired(cluster, ns, pod), timeout=10, what="grace period expiry")
    pod_obj = cluster.get_json("pod", pod, "-n", ns)
    assert pod_obj["metadata"]["deletionTimestamp"]
    assert [ep["addresses"] for ep in _endpoints(cluster, ns, svc)] == [[ip]]

    # Playing the kubelet's last step (force delete) removes the endpoint; the
    # controller keeps the now empty slice, ports included, as null.
    cluster.kubectl("delete", "pod", pod, "-n", ns, "--grace-period=0", "--force")
    wait_for(lambda: _endpoints(cluster, ns, svc) == [], what="the endpoint to disappear")
    (empty,) = _slices(cluster, ns, svc)
    assert empty.get("endpoints") is None and empty.get("ports") is None


def _grace_expired(cluster: Kube, ns: str, pod: str) -> bool:
    """True once the API server's own clock has passed the Pod's deletionTimestamp."""
    result = cluster.kubectl("get", "pod", pod, "-n", ns, "-o", "json", check=False)
    if result.returncode != 0:
        return True
    deletion = json.loads(result.stdout)["metadata"]["deletionTimestamp"]
    # Any object's creationTimestamp is server time: make one and compare.
    probe = f"clock-{_suffix()}"
    cluster.kubectl("create", "configmap", probe, "-n", ns)
    now = cluster.get_json("configmap", probe, "-n", ns)["metadata"]["creationTimestamp"]
    cluster.kubectl("delete", "configmap", probe, "-n", ns, "--wait=false")
    return bool(now > deletion)  # RFC 3339 UTC strings of equal shape sort as times


def test_loopback_pod_ip_never_reaches_an_endpointslice(
    cluster: Kube, namespace: str, node: str
) -> None:
    """127.0.0.x is a valid podIP but an invalid EndpointSlice address.

    The controller keeps the slice empty and reports FailedToUpdateEndpointSlices
    on the Service, so e2e backends must listen on a non-loopback local address.
    """
    ns, svc, pod = namespace, "loop", "loop-0"
    cluster.apply(service_manifest(ns, svc), pod_manifest(ns, pod, svc, node))
    set_pod_status(cluster, ns, pod, "127.0.0.5", ready=True)
    assert cluster.get_json("pod", pod, "-n", ns)["status"]["podIP"] == "127.0.0.5"

    def failure_event() -> str | None:
        events = cluster.get_json(
            "events",
            "-n",
            ns,
            "--field-selector",
            f"involvedObject.name={svc},reason=FailedToUpdateEndpointSlices",
        )["items"]
        return events[0]["message"] if events else None

    message = wait_for(failure_event, what="a FailedToUpdateEndpointSlices event")
    assert "may not be in the loopback range" in message
    assert _endpoints(cluster, ns, svc) == []


def test_selectorless_service_with_handmade_endpointslice(cluster: Kube, namespace: str) -> None:
    """A Service without selector plus our own EndpointSlice: created, read, updated, deleted.

    The EndpointSlice controller leaves slices it does not manage alone, so this is
    the fast way to churn many endpoints without Pods.
    """
    ns, svc, name = namespace, "manual", "manual-1"
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": svc, "namespace": ns},
            "spec": {
                "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]
            },
        }
    )
    endpoints = [
        {"addresses": [f"198.19.1.{i}"], "conditions": {"ready": True}} for i in range(1, 4)
    ]
    slice_: dict[str, Any] = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {
                SERVICE_NAME_LABEL: svc,
                "endpointslice.kubernetes.io/managed-by": "e2e.test",
            },
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }
    cluster.kubectl("create", "-f", "-", input=json.dumps(slice_))
    got = cluster.get_json("endpointslice", name, "-n", ns)
    assert [ep["addresses"] for ep in got["endpoints"]] == [e["addresses"] for e in endpoints]
    assert all(ep["conditions"] == {"ready": True} for ep in got["endpoints"])
    assert got["ports"] == slice_["ports"]

    # Update: one endpoint becomes a terminating-but-serving one.
    got["endpoints"][0]["conditions"] = {"ready": False, "serving": True, "terminating": True}
    cluster.kubectl("replace", "-f", "-", input=json.dumps(got))
    again = cluster.get_json("endpointslice", name, "-n", ns)
    assert again["endpoints"][0]["conditions"] == {
        "ready": False,
        "serving": True,
        "terminating": True,
    }
    assert int(again["metadata"]["resourceVersion"]) > int(got["metadata"]["resourceVersion"])
    # Listed under the Service and untouched by the controllers.
    assert [s["metadata"]["name"] for s in _slices(cluster, ns, svc)] == [name]

    # The API refuses loopback addresses here too.
    bad = dict(
        slice_,
        metadata=dict(slice_["metadata"], name="manual-loopback"),
        endpoints=[{"addresses": ["127.0.0.1"]}],
    )
    refused = cluster.kubectl("create", "-f", "-", input=json.dumps(bad), check=False)
    assert refused.returncode != 0
    assert "may not be in the loopback range" in refused.stderr

    cluster.kubectl("delete", "endpointslice", name, "-n", ns)
    assert _slices(cluster, ns, svc) == []
