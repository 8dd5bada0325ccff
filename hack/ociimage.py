"""OCI image archives without a Docker engine.

There is no Docker engine and no registry here, so images are written by hand
in the OCI image layout (``oci-layout``, ``index.json``, ``blobs/sha256/…``),
packed as one tar, which ``ctr -n k8s.io images import`` takes as it is. Layers
are plain, uncompressed tars (``application/vnd.oci.image.layer.v1.tar``): the
archive is imported on the same machine, so compressing would only cost time.

Only the standard library is used: this runs before the project's dependencies
are installed and in CI.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

LAYER_MEDIA_TYPE: Final = "application/vnd.oci.image.layer.v1.tar"
CONFIG_MEDIA_TYPE: Final = "application/vnd.oci.image.config.v1+json"
MANIFEST_MEDIA_TYPE: Final = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE: Final = "application/vnd.oci.image.index.v1+json"
#: Fixed mtime in layers: the same inputs give the same digests.
EPOCH: Final = 0


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an OCI image config this project sets (what a Dockerfile says)."""

    entrypoint: Sequence[str]
    cmd: Sequence[str] = ()
    user: str = ""
    env: Sequence[str] = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
    workdir: str = ""
    exposed_ports: Sequence[str] = ()
    labels: dict[str, str] = field(default_factory=dict)

    def to_json(self, diff_ids: Sequence[str]) -> dict[str, Any]:
        config: dict[str, Any] = {"Entrypoint": list(self.entrypoint), "Env": list(self.env)}
        if self.cmd:
            config["Cmd"] = list(self.cmd)
        if self.user:
            config["User"] = self.user
        if self.workdir:
            config["WorkingDir"] = self.workdir
        if self.exposed_ports:
            config["ExposedPorts"] = {p: {} for p in self.exposed_ports}
        if self.labels:
            config["Labels"] = dict(self.labels)
        return {
            "architecture": "amd64",
            "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
            "history": [{"created_by": "hack/ociimage.py"} for _ in diff_ids],
        }


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def write_file_layer(out: Path, files: Iterable[tuple[str, Path, int]]) -> Path:
    """A layer tar holding ``files`` (path in the image, source file, mode), owned by root."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        dirs: set[str] = set()
        for arcname, source, mode in files:
            parts = arcname.strip("/").split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, EPOCH
                    tar.addfile(info)
            info = tar.gettarinfo(str(source), arcname="/".join(parts))
            info.mode, info.mtime, info.uid, info.gid = mode, EPOCH, 0, 0
            info.uname = info.gname = ""
            with source.open("rb") as f:
                tar.addfile(info, f)
    return out


def write_archive(
    out: Path, *, ref: str, layers: Sequence[Path], config: ImageConfig
) -> dict[str, str]:
    """Write an OCI archive of one linux/amd64 image named ``ref``; return its digests.

    ``ref`` is a full reference (``localhost/pause:3.10.2``); containerd reads it
    from the ``io.containerd.image.name`` annotation of the index entry.
    """
    diff_ids = [_sha256_file(layer) for layer in layers]
    config_blob = json.dumps(config.to_json(diff_ids), sort_keys=True).encode()
    config_digest = "sha256:" + hashlib.sha256(config_blob).hexdigest()
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": CONFIG_MEDIA_TYPE,
            "digest": config_digest,
            "size": len(config_blob),
        },
        "layers": [
            {"mediaType": LAYER_MEDIA_TYPE, "digest": d, "size": layer.stat().st_size}
            for d, layer in zip(diff_ids, layers, strict=True)
        ],
    }
    manifest_blob = json.dumps(manifest, sort_keys=True).encode()
    manifest_digest = "sha256:" + hashlib.sha256(manifest_blob).hexdigest()
    tag = ref.rsplit(":", 1)[1] if ":" in ref.rsplit("/", 1)[-1] else "latest"
    index = {
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [
            {
                "mediaType": MANIFEST_MEDIA_TYPE,
                "digest": manifest_digest,
                "size": len(manifest_blob),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": ref,
                    "org.opencontainers.image.ref.name": tag,
                },
            }
        ],
    }

    def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), 0o644, EPOCH
        tar.addfile(info, io.BytesIO(data))

    partial = out.with_name(out.name + ".partial")
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
        add_bytes(tar, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        add_bytes(tar, "index.json", json.dumps(index, sort_keys=True).encode())
        add_bytes(tar, f"blobs/sha256/{config_digest[7:]}", config_blob)
        add_bytes(tar, f"blobs/sha256/{manifest_digest[7:]}", manifest_blob)
        for digest, layer in zip(diff_ids, layers, strict=True):
            info = tarfile.TarInfo(f"blobs/sha256/{digest[7:]}")
            info.size, info.mode, info.mtime = layer.stat().st_size, 0o644, EPOCH
            with layer.open("rb") as f:
                tar.addfile(info, f)
    os.replace(partial, out)
    return {"config": config_digest, "manifest": manifest_digest}


def read_config(archive: Path) -> dict[str, Any]:
    """The image config (JSON) of a single-image archive written by :func:`write_archive`."""
    with tarfile.open(archive) as tar:

        def blob(digest: str) -> Any:
            member = tar.extractfile(f"blobs/sha256/{digest.split(':', 1)[1]}")
            assert member is not None
            return json.loads(member.read())

        index_file = tar.extractfile("index.json")
        assert index_file is not None
        index = json.loads(index_file.read())
        manifest = blob(index["manifests"][0]["digest"])
        config: dict[str, Any] = blob(manifest["config"]["digest"])
        return config
