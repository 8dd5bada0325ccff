"""Run the controller as users do: a process with the ServiceAccount's own identity.

``kubectl apply -f manifests/`` installs the RBAC; the controller then runs
with a TokenRequest token of the shipped ServiceAccount, so every e2e test
also proves the shipped RBAC is enough. Pods are real processes in a network
namespace (hack/podnet.py) with non-loopback addresses.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.backends import free_port
from tests.e2e.conftest import (
    REPO_ROOT,
    Kube,
    localcluster,
    pod_manifest,
    set_pod_status,
    wait_for,
)

sys.path.insert(0, str(REPO_ROOT / "hack"))
from podnet import Pod, PodNetwork

SERVICE_ACCOUNT = "system:serviceaccount:haproxy-ingress:haproxy-ingress"
PUBLISHED_ADDRESS = "203.0.113.7"


def service_account_kubeconfig(
    cluster: Kube, path: Path, server: str | None = None, ca: bytes | None = None
) -> Path:
    """A kubeconfig holding a TokenRequest token of the controller's ServiceAccount.

    ``server``: another address of the API server (a proxy in front of it);
    ``ca``: the PEM certificate to trust there, if not the cluster's.
    """
    token = cluster.kubectl(
        "create", "token", "haproxy-ingress", "-n", "haproxy-ingress", "--duration=2h"
    ).stdout.strip()
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    ca_data = admin["clusters"][0]["cluster"]["certificate-authority-data"]
    if ca is not None:
        ca_data = base64.b64encode(ca).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "e2e",
                "cluster": {
                    "server": server or cluster.server,
                    "certificate-authority-data": ca_data,
                },
            }
        ],
        "users": [{"name": "controller", "user": {"token": token}}],
        "contexts": [{"name": "controller", "context": {"cluster": "e2e", "user": "controller"}}],
        "current-context": "controller",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


@dataclass
class RunningController:
    process: subprocess.Popen[bytes]
    state_dir: Path
    http_port: int
    metrics_port: int
    log: Path
    health_port: int = 0

    def probe(self, path: str) -> tuple[int, str]:
        """``/healthz`` or ``/readyz``: (status, body)."""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.health_port}{path}", timeout=5
            ) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def get(self, host: str, path: str = "/") -> tuple[int, str]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}{path}", headers={"Host": host}
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def metrics(self) -> dict[str, float]:
        """``name{labels}`` → value, from /metrics."""
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as response:
            text = response.read().decode()
        result = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                result[key] = float(value)
        return result

    def total(self, name: str) -> float:
        return sum(v for k, v in self.metrics().items() if k.split("{")[0] == name)

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def start_controller(
    cluster: Kube,
    workdir: Path,
    *extra: str,
    via_kopf: bool = False,
    http_port: int | None = None,
    publish: tuple[str, str] = ("publish-address", PUBLISHED_ADDRESS),
    api_server: str | None = None,
    api_ca: bytes | None = None,
    sync_timeout: float = 60.0,
) -> RunningController:
    """The controller as ``haproxy-ingress run`` (flags), or as ``kopf run`` (environment).

    ``api_server``, ``api_ca``: another address of the API server and the
    certificate to trust there; ``sync_timeout``: seconds to wait for the first
    sync (a big cluster's takes minutes).
    """
    cluster.kubectl("apply", "-f", str(REPO_ROOT / "manifests"))
    kubeconfig = service_account_kubeconfig(
        cluster, workdir / "controller.kubeconfig", api_server, api_ca
    )
    https_port, metrics_port, liveness_port, health_port = (free_port() for _ in range(4))
    http_port = http_port or free_port()
    log = workdir / "controller.log"
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    settings = {
        "state-dir": str(workdir / "haproxy"),
        "http-bind": f"127.0.0.1:{http_port}",
        "https-bind": f"127.0.0.1:{https_port}",
        "metrics-bind": f"127.0.0.1:{metrics_port}",
        "health-bind": f"127.0.0.1:{health_port}",
        publish[0]: publish[1],
        # Short, so the LIST-based index verification runs during the tests.
        "resync-interval": "3",
    }
    liveness = f"http://127.0.0.1:{liveness_port}/healthz"
    if via_kopf:
        plural = {"http-bind": "http-binds", "https-bind": "https-binds"}
        for key, value in settings.items():
            name = plural.get(key, key).upper().replace("-", "_")
            env[f"HAPROXY_INGRESS_{name}"] = value
        command = [
            sys.executable,
            "-m",
            "kopf",
            "run",
            "-m",
            "haproxy_ingress.handlers",
            "--standalone",
            "-A",
            "--verbose",
            f"--liveness={liveness}",
            *extra,
        ]
    else:
        command = [sys.executable, "-m", "haproxy_ingress.cli", "run", "--liveness", liveness]
        for key, value in settings.items():
            command += [f"--{key}", value]
        command += extra
    process = subprocess.Popen(
        command,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=workdir,
        # Its own session, as HAProxy, the pods and the control plane have
        # theirs: with the kernel's autogroup scheduling (on by default) CPU
        # is shared between sessions, and in the harness's session the
        # controller shared one share with the churn benchmark's load
        # generator and monitor (bench/README.md, issue 13). A cluster gives
        # its container a cgroup of its own. It still goes down with the harness.
        start_new_session=True,
        preexec_fn=localcluster._die_with_parent,  # noqa: PLW1509
    )
    controller = RunningController(
        process, workdir / "haproxy", http_port, metrics_port, log, health_port
    )

    def synced() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"controller exited:\n{controller.log_tail()}")
        try:
            return controller.total("haproxy_ingress_syncs_total") >= 1
        except OSError:
            return False

    wait_for(synced, timeout=sync_timeout, what="the controller's first sync")
    return controller


@dataclass
class Workload:
    """A Service's pods: processes in the pod network plus their Pod objects."""

    cluster: Kube
    network: PodNetwork
    namespace: str
    app: str
    node: str

    def add_pod(self, name: str) -> Pod:
        pod = self.network.start_pod(f"{self.namespace}-{name}")
        self.cluster.apply(pod_manifest(self.namespace, name, self.app, self.node))
        set_pod_status(self.cluster, self.namespace, name, pod.address, ready=True)
        return pod


def ingress(
    namespace: str,
    name: str,
    host: str,
    service: str,
    *,
    path: str = "/",
    path_type: str = "Prefix",
) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "ingressClassName": "haproxy",
            "rules": [
                {
                    "host": host,
                    "http": {
                        "paths": [
                            {
                                "path": path,
                                "pathType": path_type,
                                "backend": {"service": {"name": service, "port": {"name": "http"}}},
                            }
                        ]
                    },
                }
            ],
        },
    }


def events_for(cluster: Kube, namespace: str, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.get_json(
        "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}"
    )["items"]
    return items
