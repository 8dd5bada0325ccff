"""The Dockerfile and hack/image.py (``make image``, no Docker) describe the same image.

Users with Docker build the Dockerfile; the local node runs what hack/image.py
builds. Both must agree on what matters at run time: base system and Python,
Debian packages, the user, entrypoint and command, working directory and the
file capability that lets non-root HAProxy bind :80/:443.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def _load(name: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "hack" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


image = _load("image")
ociimage = _load("ociimage")


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in (REPO / "Dockerfile").read_text().splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or not stripped:
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    result = []
    for line in lines:
        word, _, rest = line.partition(" ")
        result.append((word.upper(), rest.strip()))
    return result


def run_commands() -> list[list[str]]:
    """Every shell command of every RUN, split on && into argument lists."""
    commands = []
    for word, rest in dockerfile_instructions():
        if word == "RUN":
            for part in rest.split("&&"):
                commands.append(shlex.split(part))
    return commands


def last(instruction: str) -> str:
    values = [rest for word, rest in dockerfile_instructions() if word == instruction]
    assert values, f"no {instruction} in the Dockerfile"
    return values[-1]


def test_same_base_system_and_python() -> None:
    base = dockerfile_instructions()[0]
    assert base[0] == "FROM"
    match = re.fullmatch(r"python:(\d+\.\d+)-slim-(\w+)", base[1])
    assert match, base
    assert match.group(1) == image.PYTHON_VERSION
    assert match.group(2) == image.DEBIAN_SUITE


def test_same_packages_kept_and_purged() -> None:
    installed: set[str] = set()
    purged: set[str] = set()
    for argv in run_commands():
        if argv[:2] == ["apt-get", "install"]:
            installed |= {a for a in argv[2:] if not a.startswith("-")}
        if argv[:2] == ["apt-get", "purge"]:
            purged |= {a for a in argv[2:] if not a.startswith("-")}
    assert installed - purged == set(image.PACKAGES)
    assert purged == set(image.BUILD_PACKAGES)


def test_same_file_capabilities() -> None:
    caps = {argv[2]: argv[1] for argv in run_commands() if argv[:1] == ["setcap"]}
    assert caps == image.FILE_CAPABILITIES


def test_same_user_and_home() -> None:
    commands = run_commands()
    useradd = next(argv for argv in commands if argv[:1] == ["useradd"])
    groupadd = next(argv for argv in commands if argv[:1] == ["groupadd"])
    assert useradd[useradd.index("--uid") + 1] == str(image.UID)
    assert useradd[useradd.index("--gid") + 1] == str(image.GID)
    assert useradd[useradd.index("--home-dir") + 1] == image.HOME
    assert useradd[-1] == image.USER_NAME
    assert groupadd[groupadd.index("--gid") + 1] == str(image.GID)
    assert last("USER") == f"{image.UID}:{image.GID}"


def test_same_entrypoint_command_and_workdir() -> None:
    assert json.loads(last("ENTRYPOINT")) == list(image.ENTRYPOINT)
    assert json.loads(last("CMD")) == list(image.CMD)
    assert last("WORKDIR") == image.WORKDIR


def test_archive_config_carries_the_recipe(tmp_path: Path) -> None:
    """The OCI config that make image writes has the Dockerfile's runtime settings."""
    layer = tmp_path / "layer.tar"
    payload = tmp_path / "hello"
    payload.write_text("hi\n")
    ociimage.write_file_layer(layer, [("etc/hello", payload, 0o644)])
    archive = tmp_path / "image.oci.tar"
    ociimage.write_archive(
        archive, ref=image.IMAGE_REF, layers=[layer], config=image.image_config()
    )
    config = ociimage.read_config(archive)["config"]
    assert config["Entrypoint"] == json.loads(last("ENTRYPOINT"))
    assert config["Cmd"] == json.loads(last("CMD"))
    assert config["User"] == last("USER")
    assert config["WorkingDir"] == last("WORKDIR")


def test_overlay_points_at_the_image_make_image_builds() -> None:
    overlay = (REPO / "hack" / "node-overlay" / "kustomization.yaml").read_text()
    name, tag = image.IMAGE_REF.rsplit(":", 1)
    assert f"newName: {name}" in overlay
    assert f"newTag: {tag}" in overlay
    deployment = (REPO / "manifests" / "40-deployment.yaml").read_text()
    image_line = re.search(r"image: (\S+):\S+", deployment)
    assert image_line is not None
    assert f"- name: {image_line.group(1)}" in overlay


def test_example_pods_name_the_agnhost_image_the_node_builds() -> None:
    localnode = _load("localnode")
    example = (REPO / "hack" / "node-overlay" / "echo-deployment.yaml").read_text()
    assert f"image: {localnode.agnhost_ref()}\n" in example
