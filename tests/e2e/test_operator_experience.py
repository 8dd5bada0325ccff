"""What an operator sees, against a real API server and a real HAProxy.

A port taken by someone else is one ERROR line naming it and its holder, and
failing probes; one sync with a rejected object and a reload logs at the right
levels; ``kubectl apply -f manifests/`` twice is ``unchanged``; and
``--publish-service`` publishes the controller Service's address.
"""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    REPO_ROOT,
    Kube,
    pod_manifest,
    service_manifest,
    set_pod_status,
    suffix,
    wait_for,
)
from tests.e2e.operator import RunningController, events_for, ingress, start_controller

pytestmark = pytest.mark.e2e

LOG_LINE = re.compile(r"^\[[\d\- :,]+\] (\S+)\s+\[(\w+)\s*\] (.*)$")


def log_lines(controller: RunningController, start: int = 0) -> list[tuple[str, str]]:
    """(level, message) of the controller's own log lines (not HAProxy's traffic log)."""
    text = controller.log.read_text(errors="replace")[start:]
    return [(m[2], m[3]) for line in text.splitlines() if (m := LOG_LINE.match(line))]


@pytest.fixture
def own_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    # Not the Lease a controller of another test module may still hold.
    monkeypatch.setenv("HAPROXY_INGRESS_LEASE_NAME", f"status-{suffix()}")


def test_applying_the_manifests_twice_changes_nothing(cluster: Kube) -> None:
    cluster.kubectl("apply", "-f", str(REPO_ROOT / "manifests"))
    second = cluster.kubectl("apply", "-f", str(REPO_ROOT / "manifests")).stdout.splitlines()
    assert second and all(line.endswith(" unchanged") for line in second), second


def test_a_taken_port_is_one_error_line_and_failing_probes(
    cluster: Kube, tmp_path: Path, own_lease: None
) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    controller = start_controller(cluster, tmp_path, http_port=port)
    try:
        _, body = wait_for(
            lambda: (r := controller.probe("/healthz"))[0] == 503 and r,
            what="failing liveness",
        )
        reason = json.loads(body)["reason"]
        assert f"127.0.0.1:{port}" in reason and f"held by pid {os.getpid()} " in reason
        assert controller.probe("/readyz")[0] == 503
        wait_for(lambda: controller.total("haproxy_ingress_syncs_total") >= 3, what="retries")
        errors = [m for level, m in log_lines(controller) if level in {"ERROR", "CRITICAL"}]
        assert len(errors) == 1, errors  # the retries repeat it at DEBUG only
        assert f"HAProxy cannot listen on 127.0.0.1:{port}" in errors[0]
        assert f"held by pid {os.getpid()} " in errors[0]
        assert "Traceback" not in controller.log.read_text()

        taken.close()  # the port is free: HAProxy starts on the next retry
        wait_for(lambda: controller.probe("/readyz")[0] == 200, timeout=60, what="ready")
        assert controller.probe("/healthz")[0] == 200
    finally:
        taken.close()
        controller.stop()


def test_one_sync_with_a_rejected_object_and_a_reload_logs_at_the_right_levels(
    cluster: Kube, namespace: str, tmp_path: Path, own_lease: None
) -> None:
    # Only this test's namespace: objects other modules left behind (a hostile
    # corpus, quarantined configurations) must not speak in this log.
    controller = start_controller(cluster, tmp_path, "--watch-namespace", namespace)
    try:
        wait_for(lambda: controller.probe("/readyz")[0] == 200, what="ready")
        start = len(controller.log.read_text(errors="replace"))
        reloads = controller.total("haproxy_ingress_reloads_total")
        bad = ingress(namespace, "bad", "bad.example.com", "web")
        bad["metadata"]["annotations"] = {"haproxy-ingress.kopf.dev/balance": "fastest"}
        nobody = ingress(namespace, "nobody", "nobody.example.com", "web")
        nobody["spec"]["ingressClassName"] = "does-not-exist"
        cluster.apply(
            service_manifest(namespace, "web"),
            ingress(namespace, "good", "good.example.com", "web"),
            bad,
            nobody,
        )
        wait_for(
            lambda: controller.total("haproxy_ingress_reloads_total") > reloads, what="a reload"
        )
        wait_for(
            lambda: any(
                e["reason"] == "IngressClassNotFound"
                for e in events_for(cluster, namespace, "nobody")
            ),
            what="the IngressClassNotFound Event",
        )
        wait_for(lambda: events_for(cluster, namespace, "bad"), what="the Rejected Event")
        lines = log_lines(controller, start)
        loud = [(level, m) for level, m in lines if level not in {"DEBUG", "INFO"}]
        assert all(level == "WARNING" for level, _ in loud), loud
        about = sorted(
            "bad"
            if f"{namespace}/bad " in m
            else "nobody"
            if f"{namespace}/nobody " in m
            else "backend"
            if "has no usable server" in m
            else m
            for _, m in loud
        )
        # Once each: the rejected object, the class nobody defines, and why
        # the new backend answers 503 (its Service has no pod).
        assert about == ["backend", "bad", "nobody"], loud
        info = [m for level, m in lines if level == "INFO"]
        assert len([m for m in info if m.startswith("applied: reload=True")]) == 1, info
        for message in info:
            assert "stopped (cumulated conns" not in message
            assert "server state" not in message
    finally:
        controller.stop()


def _set_node_address(cluster: Kube, node: str, address: str) -> None:
    patch = {"status": {"addresses": [{"type": "ExternalIP", "address": address}]}}
    cluster.kubectl(
        "patch", "node", node, "--subresource=status", "--type=merge", "-p", json.dumps(patch)
    )


def _ingress_status(cluster: Kube, namespace: str, name: str) -> Any:
    item = cluster.get_json("ingress", name, "-n", namespace)
    return (item.get("status") or {}).get("loadBalancer", {}).get("ingress")


def test_publish_service_writes_the_service_address_into_ingress_status(
    cluster: Kube, namespace: str, node: str, tmp_path: Path, own_lease: None
) -> None:
    """As ingress-nginx: the load balancer's address, else the controller's nodes'."""
    _set_node_address(cluster, node, "203.0.113.50")
    # A controller Pod on that node, as the kubelet would report it (no kubelet here).
    pod = f"controller-{suffix()}"
    manifest = pod_manifest("haproxy-ingress", pod, "unused", node)
    manifest["metadata"]["labels"] = {"app.kubernetes.io/name": "haproxy-ingress"}
    cluster.apply(manifest)
    set_pod_status(cluster, "haproxy-ingress", pod, "198.19.7.7", ready=True)
    controller = start_controller(cluster, tmp_path, publish=("publish-service", "haproxy-ingress"))
    try:
        cluster.apply(
            service_manifest(namespace, "web"), ingress(namespace, "web", "pub.example.com", "web")
        )
        wait_for(
            lambda: _ingress_status(cluster, namespace, "web") == [{"ip": "203.0.113.50"}],
            timeout=60,
            what="the node's address in Ingress status",
        )
        # A cloud load balancer shows up: its address wins.
        patch = {"status": {"loadBalancer": {"ingress": [{"hostname": "lb.example.net"}]}}}
        cluster.kubectl(
            "patch",
            "service",
            "haproxy-ingress",
            "-n",
            "haproxy-ingress",
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps(patch),
        )
        wait_for(
            lambda: _ingress_status(cluster, namespace, "web") == [{"hostname": "lb.example.net"}],
            timeout=60,
            what="the load balancer's hostname in Ingress status",
        )
    finally:
        controller.stop()
        cluster.kubectl(
            "patch",
            "service",
            "haproxy-ingress",
            "-n",
            "haproxy-ingress",
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": {"loadBalancer": {}}}),
            check=False,
        )
        cluster.kubectl(
            "delete",
            "pod",
            pod,
            "-n",
            "haproxy-ingress",
            "--grace-period=0",
            "--force",
            check=False,
        )
