"""The controller installed as users install it: its image, `kubectl apply -k`, a Pod.

The image comes from ``make image`` (hack/image.py: mmdebstrap + wheels, no Docker),
the manifests from ``manifests/`` through the local overlay (hack/node-overlay: the
local image name, one replica, hostPorts on the node's address). The controller then
runs under its ServiceAccount with in-cluster configuration (the `kubernetes`
Service through kube-proxy), a read-only root filesystem and only NET_BIND_SERVICE.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import wait_for
from tests.node.conftest import (
    REPO_ROOT,
    NodeKube,
    _load,
    describe,
    http_get,
    pod_ready,
)

CONTROLLER_NS = "haproxy-ingress"


@pytest.fixture(scope="module")
def controller(node_cluster: NodeKube, request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """Build (or reuse) the image, import it, apply the overlay; the Ready controller Pod."""
    image = _load("image")
    capman = request.config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled():
        archive = image.build()
    node_cluster.cluster.import_image(archive)
    node_cluster.kubectl("apply", "-k", str(REPO_ROOT / "hack" / "node-overlay"), timeout=120)

    def ready() -> dict[str, Any] | None:
        pods = node_cluster.pods(CONTROLLER_NS, "app.kubernetes.io/name=haproxy-ingress")
        return next((p for p in pods if pod_ready(p)), None)

    pod = wait_for(
        ready,
        timeout=120,
        what=f"controller Ready\n{describe(node_cluster, 'pods', '-n', CONTROLLER_NS)}",
    )
    yield pod
    node_cluster.kubectl(
        "delete", "-k", str(REPO_ROOT / "hack" / "node-overlay"), "--wait=false", check=False
    )


def _exec(kube: NodeKube, pod: dict[str, Any], code: str) -> Any:
    return kube.kubectl(
        "exec",
        "-n",
        CONTROLLER_NS,
        pod["metadata"]["name"],
        "--",
        "python3",
        "-c",
        code,
        check=False,
    )


def test_controller_pod_runs_from_its_image_under_its_service_account(
    node_cluster: NodeKube, controller: dict[str, Any]
) -> None:
    spec = controller["spec"]
    assert spec["serviceAccountName"] == "haproxy-ingress"
    assert spec["nodeName"] == node_cluster.node_name
    (status,) = controller["status"]["containerStatuses"]
    assert status["image"].endswith("localhost/haproxy-ingress:dev")
    probe = _exec(
        node_cluster,
        controller,
        "import os, json; "
        "status = dict(l.split(':', 1) for l in open('/proc/1/status'));"
        "ro = True\n"
        "try:\n  open('/usr/probe', 'w')\n  ro = False\nexcept OSError:\n  pass\n"
        "print(json.dumps({'uid': os.getuid(), 'ro': ro, 'bnd': status['CapBnd'].strip(),"
        " 'token': os.path.exists('/var/run/secrets/kubernetes.io/serviceaccount/token'),"
        " 'host': os.environ.get('KUBERNETES_SERVICE_HOST')}))",
    )
    assert probe.returncode == 0, probe.stderr
    facts = json.loads(probe.stdout)
    assert facts["uid"] == 10001
    assert facts["ro"] is True, "the root filesystem must be read-only"
    # Bounding set: NET_BIND_SERVICE (bit 10) and nothing else.
    assert int(facts["bnd"], 16) == 1 << 10
    assert facts["token"] is True
    assert facts["host"] == node_cluster.cluster.kubernetes_service_ip


def test_probes_pass_and_no_restarts(node_cluster: NodeKube, controller: dict[str, Any]) -> None:
    current = node_cluster.get_json("pod", "-n", CONTROLLER_NS, controller["metadata"]["name"])
    assert pod_ready(current)
    (status,) = current["status"]["containerStatuses"]
    assert status["restartCount"] == 0, describe(node_cluster, "pod", "-n", CONTROLLER_NS)
    events = node_cluster.get_json(
        "events",
        "-n",
        CONTROLLER_NS,
        "--field-selector",
        f"involvedObject.name={controller['metadata']['name']}",
    )["items"]
    liveness_failures = [e for e in events if "Liveness probe failed" in e.get("message", "")]
    assert not liveness_failures, liveness_failures


def test_serves_through_the_node_and_publishes_the_address(
    node_cluster: NodeKube, controller: dict[str, Any]
) -> None:
    node_cluster.kubectl("apply", "-f", str(REPO_ROOT / "manifests" / "examples" / "echo.yaml"))
    node_cluster.kubectl(
        "apply", "-f", str(REPO_ROOT / "hack" / "node-overlay" / "echo-deployment.yaml")
    )
    pods = wait_for(
        lambda: p if len(p := node_cluster.ready_pods("demo", "app=echo")) == 2 else None,
        timeout=90,
        what="two ready echo pods",
    )
    names = {p["metadata"]["name"] for p in pods}

    def answers() -> set[str] | None:
        seen = set()
        for _ in range(6):
            try:
                status, body = http_get(
                    f"http://{node_cluster.node_ip}/hostname", host="echo.example.com"
                )
            except OSError:
                return None
            if status != 200:
                return None
            seen.add(body)
        return seen if seen == names else None

    assert wait_for(answers, timeout=60, what="both echo pods through the node") == names
    ingress = wait_for(
        lambda: (
            node_cluster.get_json("ingress", "-n", "demo", "echo")["status"]
            .get("loadBalancer", {})
            .get("ingress")
        ),
        what="Ingress status address",
    )
    assert ingress == [{"ip": node_cluster.node_ip}]


def test_bad_ingress_gets_a_warning_event_from_the_controller(
    node_cluster: NodeKube, controller: dict[str, Any]
) -> None:
    node_cluster.apply(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {
                "name": "bad",
                "namespace": CONTROLLER_NS,
                "annotations": {"haproxy-ingress.kopf.dev/timeout-server": "soon"},
            },
            "spec": {
                "ingressClassName": "haproxy",
                "rules": [
                    {
                        "host": "bad.example.com",
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": "x", "port": {"number": 80}}},
                                }
                            ]
                        },
                    }
                ],
            },
        }
    )

    def warning() -> list[dict[str, Any]]:
        events = node_cluster.get_json(
            "events", "-n", CONTROLLER_NS, "--field-selector", "involvedObject.name=bad"
        )["items"]
        return [e for e in events if e["type"] == "Warning" and "timeout-server" in e["message"]]

    (event, *_) = wait_for(warning, timeout=60, what="a Warning Event on the bad Ingress")
    assert event["reportingComponent"] or event["source"]["component"]
