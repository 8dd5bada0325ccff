"""Fixtures of the real-node tests: a control plane plus one real node.

The node (hack/localnode.py) runs kubelet, containerd, runc, CNI and kube-proxy on
this machine, so Pods are real containers with real lifecycles: readiness probes,
SIGTERM with the EndpointSlice marking the endpoint terminating, preStop hooks,
restarts. It needs root; there is one such node per machine at a time.

Run with ``make test-node`` (``pytest -m node tests/node``); ``make test`` leaves
these out (see the README's development section for why).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.e2e.conftest import Kube, wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = Path(__file__).resolve().parent


def _load(name: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "hack" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


localcluster = _load("localcluster")
localnode = _load("localnode")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test here ``node``: ``make test`` deselects them (-m "not node")."""
    for item in items:
        if NODE_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.node)


class NodeKube(Kube):
    """Kube plus what only a real node has: the runtime (ctr) and its images."""

    def __init__(self, cluster: Any) -> None:
        super().__init__(cluster)
        self.node_name: str = localnode.NODE_NAME
        self.node_ip: str = localnode.NODE_IP
        self.agnhost: str = cluster.agnhost_image

    def ctr(self, *args: str, check: bool = True) -> Any:
        return self.cluster.ctr(*args, check=check)

    def pods(self, ns: str, selector: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.get_json("pods", "-n", ns, "-l", selector)["items"]
        return items

    def ready_pods(self, ns: str, selector: str) -> list[dict[str, Any]]:
        return [p for p in self.pods(ns, selector) if pod_ready(p)]

    def slice_endpoints(self, ns: str, service: str) -> list[dict[str, Any]]:
        slices = self.get_json(
            "endpointslices", "-n", ns, "-l", f"kubernetes.io/service-name={service}"
        )["items"]
        return [e for s in slices for e in (s.get("endpoints") or [])]


def pod_ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions) and not pod[
        "metadata"
    ].get("deletionTimestamp")


@pytest.fixture(scope="session")
def node_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NodeKube]:
    if os.geteuid() != 0:
        pytest.fail("the real-node tests need root (namespaces, mounts, iptables, cgroups)")
    capman = request.config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled():
        binaries = localcluster.ensure_binaries()
        localnode.ensure_node_binaries()
        state_dir = tmp_path_factory.mktemp("nodecluster")
        # Another run on this machine may hold the one node: queue up behind it.
        instance = localnode.NodeCluster(
            state_dir, binaries=binaries, die_with_parent=True, wait_for_node=900
        )
        instance.start()
    try:
        yield NodeKube(instance)
    finally:
        with capman.global_and_fixture_disabled():
            instance.stop()


@pytest.fixture
def ns(node_cluster: NodeKube) -> Iterator[str]:
    name = f"node-{uuid.uuid4().hex[:8]}"
    node_cluster.kubectl("create", "namespace", name)
    wait_for(
        lambda: (
            node_cluster.kubectl(
                "get", "serviceaccount", "default", "-n", name, check=False
            ).returncode
            == 0
        ),
        what=f"ServiceAccount {name}/default",
    )
    yield name
    node_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def netexec_deployment(
    ns: str,
    name: str,
    image: str,
    *,
    replicas: int = 1,
    grace: int = 10,
    pre_stop_sleep: int = 0,
) -> dict[str, Any]:
    """agnhost netexec behind a readiness probe, with a grace period and a preStop sleep."""
    container: dict[str, Any] = {
        "name": "web",
        "image": image,
        "imagePullPolicy": "Never",
        "args": ["netexec", "--http-port=8080"],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": 8080},
            "periodSeconds": 1,
            "failureThreshold": 1,
        },
    }
    if pre_stop_sleep:
        container["lifecycle"] = {"preStop": {"sleep": {"seconds": pre_stop_sleep}}}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"terminationGracePeriodSeconds": grace, "containers": [container]},
            },
        },
    }


def service(ns: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "selector": {"app": name},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }


def http_get(url: str, *, host: str | None = None, timeout: float = 3.0) -> tuple[int, str]:
    import urllib.error  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode(errors="replace")


def describe(kube: NodeKube, *args: str) -> str:
    """kubectl describe output, for failure messages."""
    return str(kube.kubectl("describe", *args, check=False).stdout)
