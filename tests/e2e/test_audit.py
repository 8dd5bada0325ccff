"""`haproxy-ingress audit` against a real kube-apiserver: the live report equals the offline one."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from haproxy_ingress.cli import main
from haproxy_ingress.loader import load_objects
from tests.e2e.conftest import Kube, suffix

pytestmark = pytest.mark.e2e

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "audit" / "ingresses.yaml"


def _in(namespace: str, ingress_class: str) -> list[dict[str, Any]]:
    """The fixture's objects in ``namespace``, its (cluster-scoped) classes renamed."""
    objects = []
    for obj in load_objects([FIXTURE]):
        item = copy.deepcopy(dict(obj))
        meta = item["metadata"]
        if item["kind"] == "IngressClass":
            meta["name"] = f"{meta['name']}-{ingress_class}"
        else:
            meta["namespace"] = namespace
        spec = item.get("spec") or {}
        if "ingressClassName" in spec:
            spec["ingressClassName"] = f"{spec['ingressClassName']}-{ingress_class}"
        objects.append(item)
    return objects


def _block(out: str, namespace: str) -> list[str]:
    """The report's lines about ``namespace``'s Ingresses, without the column padding.

    Each Ingress's line, then its annotations' indented lines; the counts at
    the end are the whole report's (other tests' Ingresses live too)."""
    lines, inside = [], False
    for line in out.splitlines():
        if not line.startswith("  "):
            inside = line.startswith(f"Ingress {namespace}/")
        if inside:
            lines.append(" ".join(line.split()))
    return lines


def test_live_audit_lists_the_cluster_and_matches_offline(
    cluster: Kube, namespace: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ingress_class = suffix()
    objects = _in(namespace, ingress_class)
    cluster.apply(*objects)
    try:
        assert main(["audit", "--kubeconfig", str(cluster.kubeconfig)]) == 1
        live = _block(capsys.readouterr().out, namespace)
        # The same input offline: the cluster's IngressClasses and the
        # controller's ConfigMap (other tests' may be there) decide too.
        shared = [
            *cluster.get_json("ingressclass")["items"],
            *cluster.get_json(
                "configmap",
                "-n",
                "haproxy-ingress",
                "--field-selector",
                "metadata.name=haproxy-ingress",
            )["items"],
        ]
        mine = [o for o in objects if o["kind"] != "IngressClass"]
        offline_file = tmp_path / "objects.yaml"
        offline_file.write_text(yaml.safe_dump_all([*shared, *mine]))
        assert main(["audit", "-f", str(offline_file)]) == 1
        offline = _block(capsys.readouterr().out, namespace)
    finally:
        for name in ("nginx", "traefik"):
            cluster.kubectl(
                "delete", "ingressclass", f"{name}-{ingress_class}", "--wait=false", check=False
            )
    assert live == offline
    assert f"Ingress {namespace}/admin: FAIL-CLOSED (403)" in live
    assert f"Ingress {namespace}/shop: served" in live
    assert any("proxy_buffering: directive not supported" in line for line in live)
    # The legacy annotation (blog) and the renamed class are served; traefik's is not.
    assert not any(line.startswith(f"Ingress {namespace}/elsewhere") for line in live)
    # An unreachable cluster is unusable input, not a clean report.
    bad = tmp_path / "kubeconfig"
    bad.write_text(
        "apiVersion: v1\nkind: Config\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: x}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
        "current-context: x\n"
    )
    assert main(["audit", "--kubeconfig", str(bad)]) == 2
