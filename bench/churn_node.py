"""The churn benchmark's real-node mode: the same scenarios, played by a real kubelet.

In the simulated mode (bench/churn.py) the benchmark plays the kubelet: it starts
pod processes, patches Pod status, sends SIGTERM and force-deletes. Here the pods
are a Deployment of ``agnhost netexec`` on the local node (hack/localnode.py:
kubelet + containerd + runc + CNI), with a readiness probe, a grace period and a
preStop sleep, and the benchmark only does what a user does: scale, ``kubectl
rollout restart``, and kill a container through the runtime. The controller,
HAProxy, the load generator, the convergence monitor and the JSON line are the
same as in the simulated mode, so the two can be printed side by side.

How the scenarios map (agnhost netexec exits on SIGTERM after ``--delay-shutdown``
seconds, answering /readyz with 503 meanwhile):

| scenario | real node |
|---|---|
| scale   | Deployment replicas 1 → 10 → 1 (4 with --quick) |
| rolling | ``rollout restart`` of 4 replicas (2), maxSurge 1, maxUnavailable 0 |
| race-a  | SIGTERM to 3 (1) containers through containerd, before any endpoint |
|         | change; the kubelet restarts them |
| race-b  | replicas 4 → 1 (2 → 1): endpoint terminating, preStop sleep, then SIGTERM |
| kill    | SIGKILL to 2 (1) containers through containerd; the kubelet restarts them |
| long    | not run: agnhost netexec has no slow endpoint (the simulated pods' ``?sleep=``) |
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass
from typing import Any

from tests.e2e.conftest import service_manifest
from tests.e2e.operator import ingress

from bench.churn import POD_GRACE_SECONDS, SERVICE, Bench

#: Seconds of the preStop sleep: the endpoint is terminating that long before SIGTERM.
PRE_STOP_SECONDS = 2
#: netexec keeps serving (readiness 503) this long after SIGTERM, then exits.
DELAY_SHUTDOWN_SECONDS = 2
SCENARIOS = ("scale", "rolling", "race-a", "race-b", "kill")


def deployment(namespace: str, image: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": SERVICE, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": SERVICE}},
            "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": SERVICE}},
                "spec": {
                    "terminationGracePeriodSeconds": POD_GRACE_SECONDS,
                    "containers": [
                        {
                            "name": "web",
                            "image": image,
                            "imagePullPolicy": "Never",
                            "args": [
                                "netexec",
                                "--http-port=8080",
                                f"--delay-shutdown={DELAY_SHUTDOWN_SECONDS}",
                            ],
                            # service_manifest's targetPort names this port.
                            "ports": [{"name": "web", "containerPort": 8080}],
                            "readinessProbe": {
                                "httpGet": {"path": "/readyz", "port": "web"},
                                "periodSeconds": 1,
                                "failureThreshold": 1,
                            },
                            "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}},
                        }
                    ],
                },
            },
        },
    }


def _ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


@dataclass
class RealBench(Bench):
    """A Bench whose pods are a Deployment on the real node (no kubelet played here)."""

    image: str = ""

    # --- setup ---

    def setup(self) -> None:
        self.kube.apply(service_manifest(self.namespace, SERVICE))
        self.kube.apply(ingress(self.namespace, SERVICE, self.host, SERVICE))
        self.kube.apply(deployment(self.namespace, self.image, 1))
        self._start_monitor()
        self.scale_to(1)
        deadline = time.monotonic() + 90
        while self.controller.get(self.host)[0] != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no 200 through HAProxy:\n{self.controller.log_tail()}")
            time.sleep(0.2)

    def _start_monitor(self) -> None:
        from bench.churn import Monitor  # noqa: PLC0415 - the base module's class
        from haproxy_ingress.haproxy.paths import HAProxyPaths  # noqa: PLC0415

        self.monitor = Monitor(
            self.api,
            self.namespace,
            self.backend,
            HAProxyPaths(self.controller.state_dir).runtime_socket,
            drain=self.drain,
        ).start()

    def close(self) -> None:
        if self.monitor is not None:
            self.monitor.stop()

    # --- what a user does ---

    def _deployment_path(self) -> str:
        return f"/apis/apps/v1/namespaces/{self.namespace}/deployments/{SERVICE}"

    def _patch_deployment(self, patch: dict[str, Any]) -> None:
        self.api.call(
            "PATCH", self._deployment_path(), patch, content_type="application/merge-patch+json"
        )

    def pods_now(self) -> list[dict[str, Any]]:
        _, listing = self.api.call(
            "GET", f"{self.api.pods(self.namespace)}?labelSelector=app%3D{SERVICE}"
        )
        items: list[dict[str, Any]] = listing["items"]
        return items

    def wait_settled(self, count: int, timeout: float = 120.0) -> None:
        """Until exactly ``count`` pods exist, all ready, none terminating, rollout done."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pods = self.pods_now()
            _, dep = self.api.call("GET", self._deployment_path())
            status = dep.get("status", {})
            settled = (
                len(pods) == count
                and all(_ready(p) and not p["metadata"].get("deletionTimestamp") for p in pods)
                and status.get("updatedReplicas", 0) == count
                and status.get("observedGeneration") == dep["metadata"]["generation"]
            )
            if settled:
                return
            time.sleep(0.1)
        raise RuntimeError(
            f"pods did not settle at {count}: {[p['metadata']['name'] for p in self.pods_now()]}"
        )

    def scale_to(self, count: int) -> None:
        assert self.monitor is not None
        self._patch_deployment({"spec": {"replicas": count}})
        self.wait_settled(count)
        if not self.monitor.wait_converged(60):
            raise RuntimeError(
                f"HAProxy did not converge: {self.monitor.describe()}\n{self.controller.log_tail()}"
            )

    def signal_containers(self, count: int, signal: str) -> None:
        """Send ``signal`` to ``count`` containers through containerd; wait for restarts."""
        pods = sorted(self.pods_now(), key=lambda p: p["metadata"]["name"])[:count]
        restarts = {}
        for pod in pods:
            (status,) = pod["status"]["containerStatuses"]
            restarts[pod["metadata"]["name"]] = status["restartCount"]
            container = status["containerID"].split("://", 1)[1]
            self.kube.cluster.ctr("tasks", "kill", "--signal", signal, container)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            current = {p["metadata"]["name"]: p for p in self.pods_now()}
            if all(
                current[name]["status"]["containerStatuses"][0]["restartCount"] > before
                and _ready(current[name])
                for name, before in restarts.items()
            ):
                return
            time.sleep(0.1)
        raise RuntimeError(f"containers not restarted after {signal}")

    def rollout_restart(self) -> None:
        """``kubectl rollout restart``: a new template annotation, hence a new ReplicaSet."""
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        self._patch_deployment(
            {
                "spec": {
                    "template": {
                        "metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": now}}
                    }
                }
            }
        )

    # --- scenarios ---

    def scenario_scale(self, down: str = "concurrent") -> dict[str, Any]:
        assert self.monitor is not None
        top = 4 if self.settings.quick else 10
        self.scale_to(1)

        def churn() -> None:
            self._patch_deployment({"spec": {"replicas": top}})
            self.wait_settled(top)
            assert self.monitor is not None
            self.monitor.wait_converged(30)
            time.sleep(0.5 if self.settings.quick else 2.0)
            self._patch_deployment({"spec": {"replicas": 1}})
            self.wait_settled(1)

        return self.measure(f"scale 1-{top}-1", churn)

    def scenario_rolling(self) -> dict[str, Any]:
        size = 2 if self.settings.quick else 4
        self.scale_to(size)

        def churn() -> None:
            self.rollout_restart()
            self.wait_settled(size, timeout=180)

        return self.measure(f"rolling update of {size}", churn)

    def scenario_race_a(self) -> dict[str, Any]:
        self.scale_to(2 if self.settings.quick else 4)
        count = 1 if self.settings.quick else 3
        return self.measure(
            "scale-down, SIGTERM before endpoint change",
            lambda: self.signal_containers(count, "SIGTERM"),
        )

    def scenario_race_b(self) -> dict[str, Any]:
        size = 2 if self.settings.quick else 4
        self.scale_to(size)

        def churn() -> None:
            self._patch_deployment({"spec": {"replicas": 1}})
            self.wait_settled(1)

        return self.measure("scale-down, SIGTERM after endpoint change", churn)

    def scenario_kill(self) -> dict[str, Any]:
        count = 1 if self.settings.quick else 2
        self.scale_to(count + 1)
        return self.measure("pod SIGKILLed", lambda: self.signal_containers(count, "SIGKILL"))
