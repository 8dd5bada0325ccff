"""``make run``: the controller against your cluster, or against a local one.

With ``KUBECONFIG`` set, it runs the controller against that cluster. Without
it, it starts the local control plane (hack/localcluster.py; built once per
machine), applies manifests/ and manifests/examples/, starts a real HTTP pod
for the example in a network namespace (hack/podnet.py), runs the controller
and prints the ``curl`` line that reaches the pod through HAProxy. Ctrl-C
stops the controller and the pod; ``make cluster-down`` stops the cluster.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import localcluster  # noqa: E402
from podnet import PodNetwork, PodNetworkError  # noqa: E402

HTTP_PORT = int(os.environ.get("HTTP_PORT", "8080"))
HTTPS_PORT = int(os.environ.get("HTTPS_PORT", "8443"))
METRICS_PORT = int(os.environ.get("METRICS_PORT", "9101"))
HEALTH_PORT = int(os.environ.get("HEALTH_PORT", "10254"))
EXAMPLE_HOST = "echo.example.com"


def say(message: str) -> None:
    print(f"[make run] {message}", flush=True)


def controller_command(state_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "haproxy_ingress.cli",
        "run",
        "--state-dir",
        str(state_dir),
        "--http-bind",
        f"127.0.0.1:{HTTP_PORT}",
        "--https-bind",
        f"127.0.0.1:{HTTPS_PORT}",
        "--metrics-bind",
        f"127.0.0.1:{METRICS_PORT}",
        "--health-bind",
        f"127.0.0.1:{HEALTH_PORT}",
        "--publish-address",
        "127.0.0.1",
    ]


def run_against(kubeconfig: str) -> int:
    say(f"running the controller against KUBECONFIG={kubeconfig}")
    state_dir = REPO / ".run" / "haproxy"
    return subprocess.call(controller_command(state_dir), cwd=REPO)


def kubectl(cluster: localcluster.LocalCluster, *args: str, stdin: str | None = None) -> str:
    return str(cluster.kubectl(*args, input=stdin).stdout)


def delete_example_pod(cluster: localcluster.LocalCluster) -> None:
    cluster.kubectl(
        "delete",
        "pod",
        "echo-1",
        "-n",
        "demo",
        "--ignore-not-found",
        "--grace-period=0",
        "--force",
        check=False,
    )


def wait_slice_forgets(cluster: localcluster.LocalCluster, address: str) -> bool:
    """Until no EndpointSlice of demo/echo lists ``address`` (the controller-manager's job)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        result = cluster.kubectl(
            "get",
            "endpointslices",
            "-n",
            "demo",
            "-l",
            "kubernetes.io/service-name=echo",
            "-o",
            "json",
            check=False,
        )
        if result.returncode == 0:
            items = json.loads(result.stdout).get("items") or []
            listed = {
                a for s in items for e in s.get("endpoints") or () for a in e.get("addresses", ())
            }
            if address not in listed:
                return True
        time.sleep(0.3)
    return False


def start_example_pod(cluster: localcluster.LocalCluster, network: PodNetwork) -> str:
    pod = network.start_pod("echo-1")
    kubectl(
        cluster,
        "apply",
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "local-node"}}),
    )
    delete_example_pod(cluster)
    kubectl(
        cluster,
        "apply",
        "-f",
        "-",
        stdin=json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "echo-1", "namespace": "demo", "labels": {"app": "echo"}},
                "spec": {
                    "nodeName": "local-node",
                    "containers": [
                        {
                            "name": "echo",
                            "image": "registry.invalid/played-by-make-run:0",
                            "ports": [{"name": "web", "containerPort": pod.port}],
                        }
                    ],
                },
            }
        ),
    )
    status = {
        "status": {
            "phase": "Running",
            "podIP": pod.address,
            "podIPs": [{"ip": pod.address}],
            "conditions": [
                {"type": t, "status": "True"}
                for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
            ],
        }
    }
    kubectl(
        cluster,
        "patch",
        "pod",
        "echo-1",
        "-n",
        "demo",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(status),
    )
    return pod.address


def wait_for_route(controller: subprocess.Popen[bytes], seconds: float = 60) -> bool:
    request = urllib.request.Request(
        f"http://127.0.0.1:{HTTP_PORT}/", headers={"Host": EXAMPLE_HOST}
    )
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and controller.poll() is None:
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    return False


def run_local() -> int:
    say("no KUBECONFIG: starting the local control plane (the first time builds it)")
    if localcluster.main(["up"]) != 0:
        return 1
    cluster = localcluster.LocalCluster.attach(localcluster.DEFAULT_STATE_DIR)
    if cluster is None:
        say("the local control plane did not come up")
        return 1
    kubectl(cluster, "apply", "-f", str(REPO / "manifests"))
    kubectl(cluster, "apply", "-f", str(REPO / "manifests" / "examples"))
    try:
        network = PodNetwork("hi-run").__enter__()
    except PodNetworkError as error:
        say(f"cannot start the example pod: {error}")
        say(
            "the example pod needs root (a network namespace); run as root, or set "
            "KUBECONFIG to run the controller against your own cluster"
        )
        return 1
    controller: subprocess.Popen[bytes] | None = None
    address: str | None = None
    try:
        address = start_example_pod(cluster, network)
        say(f"example pod demo/echo-1 serves on {address}:8080")
        env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
        controller = subprocess.Popen(
            controller_command(REPO / ".run" / "haproxy"), cwd=REPO, env=env
        )
        if wait_for_route(controller):
            say("ready. Try:")
            print(
                f"\n    curl -H 'Host: {EXAMPLE_HOST}' http://127.0.0.1:{HTTP_PORT}/\n", flush=True
            )
            say(
                f"metrics: http://127.0.0.1:{METRICS_PORT}/metrics; "
                f"health: http://127.0.0.1:{HEALTH_PORT}/healthz and /readyz"
            )
            # The system's kubectl may be versions away from this server (and
            # warns about skew on every call): name the one built with it.
            say(
                f"kubectl: export KUBECONFIG={cluster.kubeconfig}; "
                f"use {cluster.binaries.kubectl} (the server's version)"
            )
            say(
                "no kubelet here: the shipped Deployment stays 0/2 and other Pods stay "
                "Pending; Ctrl-C stops"
            )
        else:
            say("the example route did not come up; see the controller's log above")
        return controller.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if controller is not None and controller.poll() is None:
            controller.send_signal(signal.SIGTERM)
            controller.wait(30)
        # The Pod must not outlive its process: a Ready Pod at a dead address
        # would be routed to by any controller started later.
        delete_example_pod(cluster)
        network.destroy()
        if address is not None and not wait_slice_forgets(cluster, address):
            say(f"the EndpointSlice of demo/echo still lists {address}; a later run replaces it")
        say("stopped; the local control plane keeps running (make cluster-down stops it)")


def run_on_node() -> int:
    """``make run NODE=1``: the controller from its image, in a Pod on the real node."""
    say("starting the local control plane with a real node (the first time builds it)")
    if localcluster.main(["up", "--node"]) != 0:
        return 1
    cluster = localcluster.attach_any(localcluster.DEFAULT_STATE_DIR)
    if cluster is None or not cluster.has_node:
        say("the local cluster with a node did not come up")
        return 1
    import importlib.util  # noqa: PLC0415

    spec = importlib.util.spec_from_file_location("image", HERE / "image.py")
    assert spec is not None and spec.loader is not None
    image_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(image_module)
    say("building the controller's image (make image; cached when nothing changed)")
    cluster.import_image(image_module.build())
    kubectl(cluster, "apply", "-k", str(HERE / "node-overlay"))
    kubectl(cluster, "apply", "-f", str(REPO / "manifests" / "examples"))
    kubectl(cluster, "apply", "-f", str(HERE / "node-overlay" / "echo-deployment.yaml"))
    node_ip = cluster.bind_address
    request = urllib.request.Request(f"http://{node_ip}/", headers={"Host": EXAMPLE_HOST})
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    break
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    else:
        say("the example route did not come up:")
        print(kubectl(cluster, "get", "pods", "-A", "-o", "wide"), flush=True)
        return 1
    print(kubectl(cluster, "get", "pods", "-A", "-o", "wide"), flush=True)
    say("ready. Try:")
    print(f"\n    curl -H 'Host: {EXAMPLE_HOST}' http://{node_ip}/\n", flush=True)
    say(f"kubectl: export KUBECONFIG={cluster.kubeconfig}")
    say("the controller's log follows; Ctrl-C stops following")
    try:
        return subprocess.call(
            [
                str(cluster.binaries.kubectl),
                f"--kubeconfig={cluster.kubeconfig}",
                "logs",
                "-f",
                "-n",
                "haproxy-ingress",
                "deployment/haproxy-ingress",
            ]
        )
    except KeyboardInterrupt:
        return 0
    finally:
        say("the cluster and its node keep running (make cluster-down stops them)")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupt)  # clean up on `kill` as on Ctrl-C
    kubeconfig = os.environ.get("KUBECONFIG")
    if kubeconfig:
        return run_against(kubeconfig)
    if os.environ.get("NODE"):
        return run_on_node()
    return run_local()


if __name__ == "__main__":
    sys.exit(main())
