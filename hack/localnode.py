#!/usr/bin/env python3
"""A real node for the local cluster: kubelet + containerd + runc + CNI.

``hack/localcluster.py`` runs the control plane; this module adds one node that runs
real Pods, so the kubelet's own behaviour (probes, SIGTERM and the EndpointSlice
``terminating`` state in whichever order they happen, preStop hooks, restarts) is what
the tests and the churn benchmark see, and the controller itself can run from its
image in a Pod under its ServiceAccount.

What runs, and where it comes from:

* kubelet, kube-scheduler, kube-proxy and the ``agnhost`` test server: built from the
  same ``k8s.io/kubernetes`` module as the API server (same throwaway-module trick,
  cached per version in ``~/.cache/haproxy-ingress/node/<version>/``);
* the pause image: ``build/pause/linux/pause.c`` from that module, compiled static;
* containerd 1.6.20, runc 1.1.5 and the CNI plugins (bridge, host-local, loopback,
  portmap) 1.1.1 from Debian's packages (the kubelet 1.37 still accepts containerd
  1.6: it falls back to its own cgroupDriver when the runtime lacks the
  RuntimeConfig call, with a "CRI implementation should be updated" log line);
* images are written as OCI archives by ``hack/ociimage.py`` and imported with
  ``ctr -n k8s.io images import``: no registry is ever contacted.

Network (one node per machine: kube-proxy owns the host's iptables chains):

* a bridge ``hi-node0`` with ``198.19.0.1/24``, created *before* the API server, which
  binds and advertises that address: the ``kubernetes`` Service gets a real endpoint
  pods can reach, and kube-proxy (iptables mode) maps the Service's ClusterIP to it,
  so in-cluster configuration works exactly as on a real cluster;
* Pods get addresses from ``198.19.0.0/24`` (host-local IPAM), Services from
  ``198.19.128.0/24``; both are inside the benchmarking range 198.18.0.0/15 which is
  blackholed on the host, and IP forwarding stays off: nothing leaves the machine;
* the node's InternalIP is ``198.19.0.1``; hostPorts (CNI portmap) are published on it.

Needs root (namespaces, mounts, iptables, cgroups). Since 1.35 the kubelet refuses a
cgroup v1 host unless ``failCgroupV1: false``: this machine is cgroup v1 (hybrid).
"""

from __future__ import annotations

import contextlib
import importlib.util
import ipaddress
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Final

HACK_DIR: Final = Path(__file__).resolve().parent


def _load(name: str) -> ModuleType:
    """Import a sibling script by path (hack/ is not a package)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, HACK_DIR / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


lc = _load("localcluster")
oci = _load("ociimage")

NODE_NAME: Final = "hi-node"
BRIDGE: Final = "hi-node0"
#: The CNI network's name; portmap tags its iptables rules with it.
CNI_NETWORK: Final = "hi-node"
POD_SUBNET: Final = ipaddress.IPv4Network("198.19.0.0/24")
#: The bridge's address: node InternalIP, API server address, pods' gateway.
NODE_IP: Final = "198.19.0.1"
SERVICE_RANGE: Final = "198.19.128.0/24"
KUBERNETES_SERVICE_IP: Final = "198.19.128.1"
#: The whole benchmarking range is blackholed (as hack/podnet.py does).
GUARD_RANGE: Final = "198.18.0.0/15"

NODE_COMMANDS: Final = ("kubelet", "kube-scheduler", "kube-proxy")
PAUSE_VERSION: Final = "3.10.2"  # build/pause/Makefile TAG of Kubernetes 1.37
PAUSE_IMAGE: Final = f"localhost/pause:{PAUSE_VERSION}"
AGNHOST_REPO: Final = "localhost/agnhost"
#: Debian packages of the runtime side (name -> a file it installs).
RUNTIME_PACKAGES: Final = {
    "containerd": "/usr/bin/containerd",
    "runc": "/usr/sbin/runc",
    "containernetworking-plugins": "/usr/lib/cni/bridge",
    "iptables": "/usr/sbin/iptables",
}
CNI_BIN_DIR: Final = Path("/usr/lib/cni")
#: Written while a node runs: which state dir owns the node's bridge and iptables.
OWNER_FILE: Final = Path("/run/haproxy-ingress-node.owner")

Log = Callable[[str], None]
log_default: Log = lc._stderr_log


# --------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------


def node_dir(version: str = lc.K8S_VERSION) -> Path:
    return Path(lc.cache_root()) / "node" / version


@dataclass(frozen=True)
class NodeBinaries:
    kubelet: Path
    kube_scheduler: Path
    kube_proxy: Path
    pause_image: Path
    agnhost_image: Path
    agnhost_ref: str


def agnhost_ref(version: str = lc.K8S_VERSION) -> str:
    """The agnhost image's name: tagged with the Kubernetes release it was built from.

    (Upstream tags agnhost with its own version; here the build source is what
    identifies it, and hack/node-overlay/echo-deployment.yaml names this tag.)
    """
    return f"{AGNHOST_REPO}:{version}"


def cached_node_binaries(version: str = lc.K8S_VERSION) -> NodeBinaries | None:
    d = node_dir(version)
    marker = d / "NODE.json"
    if not marker.is_file():
        return None
    info = json.loads(marker.read_text())
    bins = NodeBinaries(
        kubelet=d / "bin" / "kubelet",
        kube_scheduler=d / "bin" / "kube-scheduler",
        kube_proxy=d / "bin" / "kube-proxy",
        pause_image=d / "images" / "pause.oci.tar",
        agnhost_image=d / "images" / "agnhost.oci.tar",
        agnhost_ref=str(info["agnhost_ref"]),
    )
    if bins.agnhost_ref != agnhost_ref(version):
        return None  # built by an older recipe: rebuild (the go build cache makes it quick)
    if all(Path(p).is_file() for p in vars(bins).values() if isinstance(p, Path)):
        return bins
    return None


def build_node(
    *, version: str = lc.K8S_VERSION, verbose: bool = False, log: Log = log_default
) -> NodeBinaries:
    """Build kubelet, kube-scheduler, kube-proxy, agnhost and pause; write the two images."""
    started = time.monotonic()
    dest = node_dir(version)
    report = lc._build(
        component="node",
        module="k8s.io/kubernetes",
        version=version,
        replace_from_gomod=lambda text: lc.staging_replacements(text, version),
        packages={
            **{name: f"k8s.io/kubernetes/cmd/{name}" for name in NODE_COMMANDS},
            "agnhost": "k8s.io/kubernetes/test/images/agnhost",
        },
        ldflags=lc.kubernetes_ldflags(version),
        dest=dest,
        verbose=verbose,
        log=log,
    )
    gomodcache = subprocess.run(
        ["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True
    ).stdout.strip()
    pause_c = Path(gomodcache) / f"k8s.io/kubernetes@{version}" / "build/pause/linux/pause.c"
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise lc.ClusterError("a C compiler (cc) is needed to build the pause binary")
    images = dest / "images"
    images.mkdir(exist_ok=True)
    work = dest / "image-build"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    log(f"compiling pause {PAUSE_VERSION} from {pause_c} (static)")
    subprocess.run(
        [
            "nice",
            "-n",
            "19",
            cc,
            "-Os",
            "-static",
            "-Wall",
            f'-DVERSION="{PAUSE_VERSION}"',
            "-o",
            str(work / "pause"),
            str(pause_c),
        ],
        check=True,
    )
    oci.write_archive(
        images / "pause.oci.tar",
        ref=PAUSE_IMAGE,
        layers=[oci.write_file_layer(work / "pause.layer.tar", [("pause", work / "pause", 0o755)])],
        # As upstream: runs as 65535:65535, entrypoint /pause.
        config=oci.ImageConfig(entrypoint=["/pause"], user="65535:65535", env=()),
    )
    ref = agnhost_ref(version)
    oci.write_archive(
        images / "agnhost.oci.tar",
        ref=ref,
        layers=[
            oci.write_file_layer(
                work / "agnhost.layer.tar", [("agnhost", dest / "bin" / "agnhost", 0o755)]
            )
        ],
        config=oci.ImageConfig(entrypoint=["/agnhost"]),
    )
    shutil.rmtree(work)
    (dest / "NODE.json").write_text(
        json.dumps(
            {
                **vars(report),
                "agnhost_ref": ref,
                "total_seconds": round(time.monotonic() - started, 1),
            },
            indent=2,
        )
        + "\n"
    )
    found = cached_node_binaries(version)
    if found is None:
        raise lc.ClusterError(f"node build finished but files are missing under {dest}")
    log(f"node binaries and images ready in {time.monotonic() - started:.0f} s")
    return found


def ensure_node_binaries(*, verbose: bool = False, log: Log = log_default) -> NodeBinaries:
    found = cached_node_binaries()
    if found is not None:
        return found
    import fcntl  # noqa: PLC0415

    root = Path(lc.cache_root())
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = cached_node_binaries()
        if found is not None:
            return found
        return build_node(verbose=verbose, log=log)


def ensure_runtime_packages(log: Log = log_default) -> None:
    """containerd, runc, CNI plugins and iptables from Debian, installed once if missing."""
    missing = [pkg for pkg, path in RUNTIME_PACKAGES.items() if not Path(path).exists()]
    if not missing:
        return
    if os.geteuid() != 0:
        raise lc.ClusterError(f"missing {missing}: sudo apt-get install {' '.join(missing)}")
    log(f"installing Debian packages {missing}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


# --------------------------------------------------------------------------------------
# Host plumbing
# --------------------------------------------------------------------------------------


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise lc.ClusterError(f"`{' '.join(argv)}` failed: {result.stderr.strip()}")
    return result


def _bridge_exists() -> bool:
    return _run("ip", "link", "show", BRIDGE, check=False).returncode == 0


def _other_route_overlaps() -> str | None:
    """A route or address of someone else's that overlaps our subnets, if any."""
    ours = [POD_SUBNET, ipaddress.IPv4Network(SERVICE_RANGE)]
    for line in _run("ip", "-4", "-o", "addr", "show").stdout.splitlines():
        words = line.split()
        if words[1] == BRIDGE:
            continue
        net = ipaddress.ip_interface(words[words.index("inet") + 1]).network
        if any(net.overlaps(o) for o in ours):
            return line.strip()
    for line in _run("ip", "-4", "route", "show").stdout.splitlines():
        words = line.split()
        if f"dev {BRIDGE}" in line or words[0] == "default":
            continue
        target = words[1] if words[0] in {"blackhole", "unreachable", "prohibit"} else words[0]
        if target == GUARD_RANGE:
            continue
        if any(ipaddress.ip_network(target, strict=False).overlaps(o) for o in ours):
            return line.strip()
    return None


#: Chains the kubelet itself creates (kube-proxy --cleanup leaves them).
KUBELET_CHAINS: Final = ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT")


def _remove_kubelet_chains() -> None:
    for table in ("filter", "nat", "mangle"):
        rules = _run("iptables", "-t", table, "-S", check=False).stdout.splitlines()
        for rule in rules:
            words = rule.split()
            if words[:1] == ["-A"] and words[-1] in KUBELET_CHAINS and "-j" in words:
                _run("iptables", "-t", table, "-D", *words[1:], check=False)
        for chain in KUBELET_CHAINS:
            _run("iptables", "-t", table, "-F", chain, check=False)
            _run("iptables", "-t", table, "-X", chain, check=False)


def _remove_portmap_rules() -> None:
    """Delete the CNI portmap rules of our network (comment ``dnat name: "hi-node"``).

    portmap removes them on CNI DEL; a node stopped with Pods still running (a
    crash, a killed test run) leaves them, and a stale DNAT to an old pod address
    would then shadow the new hostPort rules.
    """
    marker = f'"{CNI_NETWORK}"'
    chains: set[str] = set()
    for rule in _run("iptables", "-t", "nat", "-S", check=False).stdout.splitlines():
        words = shlex.split(rule)
        if words[:1] == ["-A"] and any(marker in w for w in words) and "-j" in words:
            target = words[words.index("-j") + 1]
            if "name:" in rule and target.startswith("CNI-"):
                _run("iptables", "-t", "nat", "-D", *words[1:], check=False)
                if target not in {"CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-DNAT"}:
                    chains.add(target)
    for chain in chains:
        _run("iptables", "-t", "nat", "-F", chain, check=False)
        _run("iptables", "-t", "nat", "-X", chain, check=False)


def _remove_pod_netns() -> None:
    """Delete containerd's sandbox namespaces (``cni-*``) that hold one of our pod addresses.

    The kubelet confirms a Pod's deletion once its containers stopped, before the
    sandbox's network is torn down; a node stopped right then leaves the namespace.
    """
    netns_dir = Path("/var/run/netns")
    if not netns_dir.is_dir():
        return
    for entry in netns_dir.iterdir():
        if not entry.name.startswith("cni-"):
            continue
        out = _run("ip", "netns", "exec", entry.name, "ip", "-4", "-o", "addr", check=False).stdout
        addresses = [
            ipaddress.ip_interface(w[w.index("inet") + 1]).ip
            for w in (line.split() for line in out.splitlines())
            if "inet" in w
        ]
        if any(a in POD_SUBNET for a in addresses):
            _run("ip", "netns", "delete", entry.name, check=False)


def _mounts_under(root: Path) -> list[str]:
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mount_point = line.split()[4].replace("\\040", " ")
        if mount_point == str(root) or mount_point.startswith(str(root) + "/"):
            found.append(mount_point)
    return found


# --------------------------------------------------------------------------------------
# The cluster with a node
# --------------------------------------------------------------------------------------


class NodeCluster(lc.LocalCluster):  # type: ignore[misc,name-defined]
    """The local control plane plus one real node (kubelet, containerd, kube-proxy).

    ``state_dir/node/`` holds containerd's root and state, the kubelet's root dir,
    CNI configuration and IPAM data. ``stop`` deletes the Pods first (so the kubelet
    tears down their sandboxes and CNI releases addresses), then stops the node, then
    the control plane, and removes the bridge and kube-proxy's iptables rules.
    """

    bind_address = NODE_IP
    authorization_mode = "Node,RBAC"
    service_cluster_ip_range = SERVICE_RANGE
    kubernetes_service_ip = KUBERNETES_SERVICE_IP
    extra_state_entries = frozenset(
        {"node", "scheduler.kubeconfig", "kubelet.kubeconfig", "kube-proxy.kubeconfig"}
    )
    has_node = True
    #: Pods come from Deployments here (tests, benchmark, the controller itself);
    #: podgc removes Pods of a node that is gone.
    controllers = (
        *lc.CONTROLLERS,
        "deployment-controller",
        "replicaset-controller",
        "pod-garbage-collector-controller",
        "node-lifecycle-controller",
    )

    def __init__(
        self,
        *args: Any,
        node_binaries: NodeBinaries | None = None,
        wait_for_node: float = 0.0,
        **kwargs: Any,
    ) -> None:
        """``wait_for_node``: seconds to wait while another cluster holds the node.

        There is one node per machine (kube-proxy owns the host's iptables chains);
        test runs of several developers sharing a machine queue up for it.
        """
        super().__init__(*args, **kwargs)
        self._node_binaries = node_binaries
        self._wait_for_node = wait_for_node

    # -- paths ---------------------------------------------------------------------------

    @property
    def node_state(self) -> Path:
        return Path(self.state_dir) / "node"

    @property
    def containerd_socket(self) -> Path:
        return self.node_state / "containerd.sock"

    @property
    def node_binaries(self) -> NodeBinaries:
        if self._node_binaries is None:
            self._node_binaries = ensure_node_binaries(log=self._log)
        return self._node_binaries

    @property
    def agnhost_image(self) -> str:
        return self.node_binaries.agnhost_ref

    def ctr(
        self, *args: str, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """``ctr`` against this node's containerd, namespace ``k8s.io`` (the CRI's)."""
        argv = ["ctr", f"--address={self.containerd_socket}", "-n", "k8s.io", *args]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise lc.ClusterError(f"`{' '.join(argv)}` failed: {result.stderr.strip()}")
        return result

    # -- hooks of LocalCluster -----------------------------------------------------------

    def _apiserver_endpoint_args(self) -> list[str]:
        # A real endpoint for the `kubernetes` Service: the node's address.
        return []

    def _apiserver_extra_args(self) -> list[str]:
        return [
            f"--kubelet-client-certificate={self.pki.crt('apiserver-kubelet-client')}",
            f"--kubelet-client-key={self.pki.key('apiserver-kubelet-client')}",
            "--kubelet-preferred-address-types=InternalIP",
        ]

    def _generate_pki(self) -> None:
        lc.generate_pki(
            self.pki,
            server_ips=("127.0.0.1", NODE_IP),
            kubernetes_service_ip=KUBERNETES_SERVICE_IP,
            extra_clients=(
                ("kubelet", f"system:node:{NODE_NAME}", "system:nodes"),
                ("kube-scheduler", "system:kube-scheduler", None),
                ("kube-proxy", "system:kube-proxy", None),
                ("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters"),
            ),
        )

    def _before_start(self) -> None:
        if os.geteuid() != 0:
            raise lc.ClusterError("a node needs root (network namespaces, mounts, iptables)")
        ensure_runtime_packages(self._log)
        self.node_binaries  # noqa: B018 - build before anything starts
        self._claim_host()
        self.node_state.mkdir(parents=True, exist_ok=True)
        if not _bridge_exists():
            _run("ip", "link", "add", BRIDGE, "type", "bridge")
        _run("ip", "addr", "replace", f"{NODE_IP}/{POD_SUBNET.prefixlen}", "dev", BRIDGE)
        _run("ip", "link", "set", BRIDGE, "up")
        # Traffic to a gone pod, or to the service range before kube-proxy has
        # rules, is dropped on the host instead of following the default route.
        _run("ip", "route", "replace", "blackhole", GUARD_RANGE)
        # ClusterIPs: routed to the bridge so that the host's own connections reach
        # kube-proxy's DNAT (a blackhole would fail them before the nat table).
        _run("ip", "route", "replace", SERVICE_RANGE, "dev", BRIDGE)

    def _claim_host(self) -> None:
        """One node per machine: wait for (or refuse) a live cluster that holds it."""
        deadline = time.monotonic() + self._wait_for_node
        announced = False
        while OWNER_FILE.is_file():
            owner = Path(OWNER_FILE.read_text().strip())
            if owner == self.state_dir:
                break
            other = NodeCluster.attach(owner, log=self._log)
            if other is None or not any(p.alive() for p in other.processes.values()):
                self._log(f"taking over the node from the stopped cluster in {owner}")
                break
            if time.monotonic() > deadline:
                raise lc.ClusterError(
                    f"a node cluster already runs from {owner}; stop it first "
                    f"(python hack/localcluster.py --state-dir {owner} down)"
                )
            if not announced:
                self._log(
                    f"the node is in use by {owner}; waiting up to {self._wait_for_node:.0f} s"
                )
                announced = True
            time.sleep(2)
        overlap = _other_route_overlaps()
        if overlap is not None:
            raise lc.ClusterError(f"the node's subnets are in use on this machine: {overlap}")
        OWNER_FILE.write_text(f"{self.state_dir}\n")
        # Leftovers of a node that was not stopped cleanly would shadow ours.
        _remove_pod_netns()
        _remove_portmap_rules()

    def _after_start(self, timeout: float) -> None:
        started = time.monotonic()
        self._start_containerd(timeout)
        self._write_cni_config()
        self._start_node_components()
        self._wait_node_ready(timeout)
        self._log(
            f"node {NODE_NAME} Ready in {time.monotonic() - started:.1f} s "
            f"(InternalIP {NODE_IP}, pods {POD_SUBNET})"
        )

    # -- components ------------------------------------------------------------------------

    def _start_containerd(self, timeout: float) -> None:
        ns = self.node_state
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        config = f"""version = 2
root = "{ns / "containerd" / "root"}"
state = "{ns / "containerd" / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{self.containerd_socket}"

[ttrpc]
  address = "{ns / "containerd-ttrpc.sock"}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{ns / "containerd" / "opt"}"

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # This sandbox lacks CAP_SYS_RESOURCE: lowering oom_score_adj (containerd gives
  # the pause container -998) fails, and runc then reports only "can't get final
  # child's PID from pipe: EOF". Clamp to containerd's own score instead.
  restrict_oom_score_adj = true

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false

[{cri}.cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{ns / "cni" / "net.d"}"
"""
        path = ns / "containerd.toml"
        path.write_text(config)
        proc = self._spawn("containerd", ["containerd", f"--config={path}"])
        self._wait(
            "containerd",
            proc,
            lambda: self.ctr("version", check=False, timeout=10).returncode == 0,
            timeout,
        )
        for archive in (self.node_binaries.pause_image, self.node_binaries.agnhost_image):
            self.import_image(archive)

    def import_image(self, archive: Path) -> None:
        """Import an OCI archive into the node's containerd (CRI namespace), unpacked."""
        self.ctr("images", "import", str(archive), timeout=600)

    def _write_cni_config(self) -> None:
        net_d = self.node_state / "cni" / "net.d"
        net_d.mkdir(parents=True, exist_ok=True)
        gateway = NODE_IP
        conflist = {
            "cniVersion": "1.0.0",
            "name": CNI_NETWORK,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": str(self.node_state / "cni" / "ipam"),
                        "ranges": [
                            [
                                {
                                    "subnet": str(POD_SUBNET),
                                    "gateway": gateway,
                                    "rangeStart": str(POD_SUBNET[10]),
                                }
                            ]
                        ],
                        "routes": [{"dst": "0.0.0.0/0"}],
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        (net_d / "10-hi-node.conflist").write_text(json.dumps(conflist, indent=2) + "\n")

    def _kubeconfig_for(self, user: str, file: str) -> Path:
        path = Path(self.state_dir) / file
        lc.write_kubeconfig(
            path, server=self.server, pki=self.pki, user=user, context="localcluster"
        )
        return path

    def _start_node_components(self) -> None:
        nb = self.node_binaries
        self.ports.update(
            scheduler=lc.free_port(),
            kubelet=lc.free_port(),
            kubelet_healthz=lc.free_port(),
            proxy_healthz=lc.free_port(),
            proxy_metrics=lc.free_port(),
        )
        sched_kc = self._kubeconfig_for("kube-scheduler", "scheduler.kubeconfig")
        self._spawn(
            "kube-scheduler",
            [
                str(nb.kube_scheduler),
                f"--kubeconfig={sched_kc}",
                f"--authentication-kubeconfig={sched_kc}",
                f"--authorization-kubeconfig={sched_kc}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports['scheduler']}",
                "--profiling=false",
            ],
        )
        proxy_kc = self._kubeconfig_for("kube-proxy", "kube-proxy.kubeconfig")
        self._spawn(
            "kube-proxy",
            [
                str(nb.kube_proxy),
                f"--kubeconfig={proxy_kc}",
                "--proxy-mode=iptables",
                f"--hostname-override={NODE_NAME}",
                f"--cluster-cidr={POD_SUBNET}",
                # NodePorts only on the node's own address, never on this machine's
                # other addresses (other people's servers listen there).
                f"--nodeport-addresses={NODE_IP}/32",
                "--iptables-localhost-nodeports=false",
                "--conntrack-max-per-core=0",
                f"--healthz-bind-address=127.0.0.1:{self.ports['proxy_healthz']}",
                f"--metrics-bind-address=127.0.0.1:{self.ports['proxy_metrics']}",
            ],
        )
        kubelet_kc = self._kubeconfig_for("kubelet", "kubelet.kubeconfig")
        root = self.node_state / "kubelet"
        root.mkdir(parents=True, exist_ok=True)
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # KEP-5573: since 1.35 the kubelet refuses cgroup v1 unless told otherwise;
            # this machine is cgroup v1 (hybrid, cgroup2 only at /sys/fs/cgroup/unified).
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "address": NODE_IP,
            "port": self.ports["kubelet"],
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": self.ports["kubelet_healthz"],
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": False},
                "x509": {"clientCAFile": str(self.pki.ca_crt)},
            },
            "authorization": {"mode": "AlwaysAllow"},
            "failSwapOn": False,
            # A shared development disk is often fuller than a node's would be.
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            # Images cannot be pulled again here: never garbage-collect them.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False,
            "resolvConf": "/etc/resolv.conf",
            "podCIDR": str(POD_SUBNET),
            "registerNode": True,
            "syncFrequency": "10s",
        }
        config_path = self.node_state / "kubelet-config.json"
        config_path.write_text(json.dumps(config, indent=2) + "\n")
        self._spawn(
            "kubelet",
            [
                str(nb.kubelet),
                f"--config={config_path}",
                f"--kubeconfig={kubelet_kc}",
                f"--root-dir={root}",
                f"--cert-dir={root / 'pki'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_IP}",
                "--v=2",
            ],
        )

    def _wait_node_ready(self, timeout: float) -> None:
        def ready() -> bool:
            status, body = self.api_get(f"/api/v1/nodes/{NODE_NAME}")
            if status != 200:
                return False
            conditions = json.loads(body)["status"].get("conditions", [])
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        self._wait(f"node {NODE_NAME} Ready", self.processes["kubelet"], ready, timeout)

    # -- stop ------------------------------------------------------------------------------

    def stop(self, *, remove_state: bool = False) -> None:
        kubelet = self.processes.get("kubelet")
        apiserver = self.processes.get("kube-apiserver")
        if kubelet is not None and kubelet.alive() and apiserver is not None and apiserver.alive():
            # No replacement Pods while draining: ReplicaSets would recreate them.
            for name in ("kube-controller-manager", "kube-scheduler"):
                proc = self.processes.get(name)
                if proc is not None:
                    proc.stop()
            self._drain_pods()
        for name in ("kubelet", "kube-proxy", "kube-scheduler"):
            proc = self.processes.pop(name, None)
            if proc is not None:
                proc.stop()
        containerd = self.processes.get("containerd")
        if containerd is not None and containerd.alive():
            self._remove_containers()
        proc = self.processes.pop("containerd", None)
        if proc is not None:
            proc.stop()
        self._kill_orphan_shims()
        super().stop(remove_state=False)
        self._clean_host()
        if remove_state:
            lc.remove_state_dir(self.state_dir, extra=self.extra_state_entries)

    def _drain_pods(self) -> None:
        """Delete every Pod and wait until the kubelet has stopped its containers.

        A graceful delete (1 s) rather than a forced one: the kubelet only then
        confirms each deletion after stopping the containers and tearing the
        sandbox's network down (CNI DEL), so nothing is left on the host.
        """
        with contextlib.suppress(lc.ClusterError, subprocess.TimeoutExpired):
            self.kubectl(
                "delete",
                "pods",
                "--all",
                "--all-namespaces",
                "--grace-period=1",
                "--timeout=60s",
                timeout=90,
            )

    def _remove_containers(self) -> None:
        for task in self.ctr("tasks", "ls", "-q", check=False).stdout.split():
            self.ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
        time.sleep(0.5)
        for task in self.ctr("tasks", "ls", "-q", check=False).stdout.split():
            self.ctr("tasks", "delete", "-f", task, check=False)
        for container in self.ctr("containers", "ls", "-q", check=False).stdout.split():
            self.ctr("containers", "delete", container, check=False)

    def _kill_orphan_shims(self) -> None:
        """containerd's shims outlive it by design; end those of *this* containerd only."""
        needle = f"-address\0{self.containerd_socket}\0".encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                cmdline = (entry / "cmdline").read_bytes()
                if b"containerd-shim" in cmdline.split(b"\0", 1)[0] and needle in cmdline:
                    os.kill(int(entry.name), signal.SIGKILL)

    def _owns_host(self) -> bool:
        try:
            return OWNER_FILE.read_text().strip() == str(self.state_dir)
        except FileNotFoundError:
            return False

    def _clean_host(self) -> None:
        for mount_point in sorted(_mounts_under(self.node_state), key=len, reverse=True):
            _run("umount", "-l", mount_point, check=False)
        if not self._owns_host():
            # A start that was refused (another node runs) must not tear that one down.
            return
        bins = cached_node_binaries()
        if bins is not None:
            # Removes the KUBE-* chains kube-proxy made in the host's tables.
            _run(str(bins.kube_proxy), "--cleanup", check=False)
        _remove_kubelet_chains()
        _remove_pod_netns()
        _remove_portmap_rules()
        if _bridge_exists():
            _run("ip", "link", "delete", BRIDGE, check=False)
        OWNER_FILE.unlink(missing_ok=True)

    def is_healthy(self) -> bool:
        names = ("containerd", "kubelet", "kube-proxy", "kube-scheduler")
        if not all(n in self.processes and self.processes[n].alive() for n in names):
            return False
        return bool(super().is_healthy())
