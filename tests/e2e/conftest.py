"""Fixtures for end-to-end tests against a real, private Kubernetes control plane.

Why a private cluster per test session: e2e tests must never touch (or be disturbed
by) a developer's ``make run`` cluster, so the session starts its own etcd,
kube-apiserver and kube-controller-manager on free ports in a temporary directory,
and stops them by pid at the end.

Missing binaries are *built*, never a reason to skip: a skipped e2e test proves
nothing. The first build on a machine takes minutes; its progress is printed live
even without ``-s`` (output capture is suspended while it runs).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
E2E_DIR = Path(__file__).resolve().parent


def _load_localcluster() -> ModuleType:
    """Import hack/localcluster.py, which is a script rather than a package module."""
    name = "localcluster"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "hack" / "localcluster.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while executing
    spec.loader.exec_module(module)
    return module


localcluster = _load_localcluster()
LocalCluster = localcluster.LocalCluster

T = TypeVar("T")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/e2e as ``e2e`` so ``-m "not e2e"`` skips them all."""
    for item in items:
        if E2E_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


def wait_for(
    check: Callable[[], T | None],
    *,
    timeout: float = 30.0,
    interval: float = 0.2,
    what: str = "condition",
) -> T:
    """Poll ``check`` until it returns something truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last value: {last!r})")


class Kube:
    """What e2e tests get: the cluster plus small kubectl helpers.

    ``kubeconfig`` is the admin kubeconfig (``O=system:masters``); ``kubectl(...)``
    runs ``kubectl --kubeconfig <it> ...`` and raises on failure unless
    ``check=False``.
    """

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.kubeconfig: Path = cluster.kubeconfig
        self.server: str = cluster.server
        #: The pinned Kubernetes version both the server and kubectl report.
        self.version: str = localcluster.K8S_VERSION

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60.0
    ) -> Any:
        """Run kubectl against the private cluster; returns a CompletedProcess[str]."""
        return self.cluster.kubectl(*args, input=input, check=check, timeout=timeout)

    def get_json(self, *args: str) -> Any:
        """``kubectl get ARGS -o json``, parsed."""
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def apply(self, *objects: dict[str, Any]) -> None:
        """Create or update objects given as dicts (server-side apply)."""
        doc = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
        self.kubectl(
            "apply", "--server-side", "--field-manager=e2e", "-f", "-", input=json.dumps(doc)
        )

    def log_tail(self, component: str, lines: int = 200) -> str:
        """The last lines of a control-plane component's log (for assertions/debugging)."""
        path = self.cluster.log_dir / f"{component}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="session")
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Kube]:
    """A private control plane for the whole session (built first if needed)."""
    capman = request.config.pluginmanager.getplugin("capturemanager")
    verbose = request.config.get_verbosity() > 1
    # Show build and start-up progress live even when output is captured.
    with capman.global_and_fixture_disabled():
        if localcluster.cached_binaries() is None:
            print(
                f"\n[e2e] building Kubernetes {localcluster.K8S_VERSION} and etcd "
                f"{localcluster.ETCD_VERSION} into {localcluster.cache_root()} (once per "
                "machine; a cold build took 8 minutes on 2 cores)",
                file=sys.stderr,
            )
        binaries = localcluster.ensure_binaries(verbose=verbose)
        state_dir = tmp_path_factory.mktemp("localcluster")
        instance = LocalCluster(state_dir, binaries=binaries, die_with_parent=True)
        instance.start()
    try:
        yield Kube(instance)
    finally:
        instance.stop()


@pytest.fixture
def namespace(cluster: Kube) -> Iterator[str]:
    """A fresh namespace whose ``default`` ServiceAccount exists (Pods can be created)."""
    with new_namespace(cluster) as name:
        yield name


@contextlib.contextmanager
def new_namespace(cluster: Kube) -> Iterator[str]:
    """A fresh namespace (see the ``namespace`` fixture), deleted afterwards."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    try:
        wait_for(
            lambda: (
                cluster.kubectl(
                    "get", "serviceaccount", "default", "-n", name, check=False
                ).returncode
                == 0
            ),
            what=f"ServiceAccount {name}/default",
        )
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def suffix() -> str:
    return uuid.uuid4().hex[:6]


@pytest.fixture
def node(cluster: Kube) -> Iterator[str]:
    """A Node object (cluster-scoped) for Pods to be bound to; no kubelet behind it."""
    name = f"e2e-node-{suffix()}"
    cluster.apply({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
    yield name
    cluster.kubectl("delete", "node", name, "--wait=false", check=False)


def service_manifest(ns: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "selector": {"app": name},
            # A named service port whose targetPort names a container port, so the
            # controller has to resolve the number from the Pod.
            "ports": [{"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"}],
        },
    }


def pod_manifest(ns: str, name: str, app: str, node: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
        "spec": {
            "nodeName": node,
            "containers": [
                {
                    "name": "app",
                    "image": "registry.invalid/never-pulled:0",
                    "ports": [{"name": "web", "containerPort": 8080, "protocol": "TCP"}],
                }
            ],
        },
    }


def pod_status_patch(ip: str, ready: bool) -> dict[str, Any]:
    """What a kubelet reports for a running Pod at ``ip``, (not) Ready."""
    status = "True" if ready else "False"
    return {
        "status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "hostIP": "198.19.255.1",
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Initialized", "status": "True"},
                {"type": "ContainersReady", "status": status},
                {"type": "Ready", "status": status},
            ],
        }
    }


def set_pod_status(cluster: Kube, ns: str, pod: str, ip: str, ready: bool) -> None:
    """Play the kubelet: report the Pod running at ``ip`` and (not) Ready."""
    patch = pod_status_patch(ip, ready)
    cluster.kubectl(
        "patch",
        "pod",
        pod,
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(patch),
    )
