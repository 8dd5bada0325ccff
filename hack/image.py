#!/usr/bin/env python3
"""``make image``: the controller's image without a Docker engine.

The Dockerfile stays the recipe for people who have Docker. This builds the same
image from the same parts on a machine that has none (and no registry): a Debian
bookworm root filesystem by ``mmdebstrap`` with Python 3.11 and HAProxy from
Debian's packages, the project's wheel (and its dependencies' wheels from PyPI)
installed with pip inside it, ``cap_net_bind_service`` set on HAProxy, the
unprivileged user; then it is packed as an OCI archive (hack/ociimage.py) and,
when a local node runs, imported into its containerd.

The constants below *are* the image's description; tests/unit/test_image_recipe.py
reads the Dockerfile and checks that it describes the same image (base, packages,
user, entrypoint, command, working directory, file capabilities).

    python hack/image.py build            # -> ~/.cache/haproxy-ingress/image/<key>/
    python hack/image.py build --import   # and import into the running node
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Final

HACK_DIR: Final = Path(__file__).resolve().parent
REPO: Final = HACK_DIR.parent

#: Debian release of the root filesystem; the Dockerfile's python:3.11-slim-bookworm.
DEBIAN_SUITE: Final = "bookworm"
#: Python minor version (Debian bookworm's python3 is 3.11, as is the Dockerfile's).
PYTHON_VERSION: Final = "3.11"
#: Debian packages the image keeps (besides Python itself).
PACKAGES: Final = ("haproxy",)
#: Needed only while building (setcap), purged afterwards, as in the Dockerfile.
BUILD_PACKAGES: Final = ("libcap2-bin",)
#: Non-root HAProxy binds :80/:443 through this file capability.
FILE_CAPABILITIES: Final = {"/usr/sbin/haproxy": "cap_net_bind_service=+ep"}
USER_NAME: Final = "haproxy-ingress"
UID: Final = 10001
GID: Final = 10001
HOME: Final = "/var/lib/haproxy-ingress"
ENTRYPOINT: Final = ("haproxy-ingress",)
CMD: Final = ("run",)
WORKDIR: Final = HOME
#: The name the local overlay (hack/node-overlay) points at.
IMAGE_REF: Final = "localhost/haproxy-ingress:dev"


def _load(name: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, HACK_DIR / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def say(message: str) -> None:
    print(f"[image] {message}", file=sys.stderr, flush=True)


def image_config() -> object:
    oci = _load("ociimage")
    return oci.ImageConfig(
        entrypoint=list(ENTRYPOINT),
        cmd=list(CMD),
        user=f"{UID}:{GID}",
        workdir=WORKDIR,
        labels={"org.opencontainers.image.source": "hack/image.py (same as Dockerfile)"},
    )


def build_wheels(dest: Path) -> list[Path]:
    """The project's wheel and its dependencies' wheels (PyPI), for an offline install."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    subprocess.run(
        [
            "nice",
            "-n",
            "19",
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--disable-pip-version-check",
            "--wheel-dir",
            str(dest),
            str(REPO),
        ],
        check=True,
    )
    return sorted(dest.glob("*.whl"))


def recipe_key(wheels: list[Path]) -> str:
    """Digest of everything the root filesystem is made from: rebuilt only when it changes."""
    digest = hashlib.sha256()
    digest.update(Path(__file__).read_bytes())
    for wheel in wheels:
        digest.update(wheel.name.encode())
        # The project's own wheel differs with every build (timestamps); hash its files.
        digest.update(
            hashlib.sha256(wheel.read_bytes()).digest()
            if "haproxy_ingress" not in wheel.name
            else b""
        )
    for path in sorted((REPO / "operator").rglob("*.py")) + sorted((REPO / "templates").rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(REPO)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def build_rootfs(wheels_dir: Path, out: Path) -> None:
    """mmdebstrap a bookworm root filesystem with the controller installed, as one tar."""
    if shutil.which("mmdebstrap") is None:
        if os.geteuid() != 0:
            raise SystemExit("mmdebstrap is missing: sudo apt-get install mmdebstrap")
        say("installing mmdebstrap (Debian package)")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "mmdebstrap"],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    caps = [f'chroot "$1" setcap {cap} {path}' for path, cap in FILE_CAPABILITIES.items()]
    hooks = [
        f'mkdir -p "$1/tmp/wheels" && cp {wheels_dir}/*.whl "$1/tmp/wheels/"',
        'chroot "$1" python3 -m pip install --no-cache-dir --no-index --break-system-packages'
        " --find-links /tmp/wheels haproxy-ingress-kopf",
        *caps,
        f'chroot "$1" apt-get purge -y -qq {" ".join(BUILD_PACKAGES)}',
        f'chroot "$1" groupadd --system --gid {GID} {USER_NAME}',
        f'chroot "$1" useradd --system --uid {UID} --gid {GID} --home-dir {HOME} {USER_NAME}',
        f'chroot "$1" install -d -o {UID} -g {GID} -m 0700 {HOME}',
        'rm -rf "$1/tmp/wheels" "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin',
    ]
    argv = [
        "nice",
        "-n",
        "19",
        "mmdebstrap",
        "--variant=minbase",
        "--mode=root",
        f"--include={','.join(('python3', 'python3-pip', *PACKAGES, *BUILD_PACKAGES))}",
        # As the slim base image: no documentation, manual pages or translations.
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        *(f"--customize-hook={hook}" for hook in hooks),
        DEBIAN_SUITE,
        str(out),
    ]
    # The host's pip settings (PIP_FIND_LINKS, ...) name host paths: not for the chroot.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    subprocess.run(argv, check=True, env=env)


def image_dir(key: str) -> Path:
    cache = _load("localcluster").cache_root()
    return Path(cache) / "image" / key


def build(*, force: bool = False) -> Path:
    """Build (or reuse) the controller's OCI archive; returns its path."""
    oci = _load("ociimage")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hi-image-") as tmp:
        say("building wheels (the project's and its dependencies')")
        wheels = build_wheels(Path(tmp) / "wheels")
        key = recipe_key(wheels)
        dest = image_dir(key)
        archive = dest / "haproxy-ingress.oci.tar"
        if archive.is_file() and not force:
            say(f"unchanged since the last build: {archive}")
            return archive
        dest.mkdir(parents=True, exist_ok=True)
        rootfs = Path(tmp) / "rootfs.tar"
        say(f"mmdebstrap {DEBIAN_SUITE} + python3 + {' '.join(PACKAGES)} + wheels (about 2 min)")
        build_rootfs(Path(tmp) / "wheels", rootfs)
        say(f"packing {IMAGE_REF} ({rootfs.stat().st_size / 2**20:.0f} MiB layer)")
        oci.write_archive(archive, ref=IMAGE_REF, layers=[rootfs], config=image_config())
    (dest / "IMAGE.json").write_text(
        json.dumps({"ref": IMAGE_REF, "seconds": round(time.monotonic() - started, 1)}) + "\n"
    )
    say(f"built {archive} in {time.monotonic() - started:.0f} s")
    return archive


def import_into_node(archive: Path, state_dir: Path) -> None:
    lc = _load("localcluster")
    cluster = lc.attach_any(state_dir)
    if cluster is None or not cluster.has_node:
        raise SystemExit(f"no cluster with a node runs from {state_dir} (make cluster-up NODE=1)")
    cluster.import_image(archive)
    say(f"imported {IMAGE_REF} into the node's containerd")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build")
    b.add_argument("--force", action="store_true", help="rebuild even if nothing changed")
    b.add_argument(
        "--import",
        dest="do_import",
        action="store_true",
        help="import into the node of the local cluster",
    )
    b.add_argument("--state-dir", type=Path, default=REPO / ".cluster")
    b.add_argument(
        "--import-if-node",
        action="store_true",
        help="import only if a local cluster with a node runs",
    )
    args = parser.parse_args()
    archive = build(force=args.force)
    print(archive)
    if args.import_if_node:
        cluster = _load("localcluster").attach_any(args.state_dir.resolve())
        args.do_import = cluster is not None and cluster.has_node
        if not args.do_import:
            say("no local node runs (make cluster-up NODE=1): not imported")
    if args.do_import:
        import_into_node(archive, args.state_dir.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
