"""The shipped manifests: least privilege and a non-root, read-only container."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"


def objects() -> list[dict[str, Any]]:
    return [
        obj
        for path in sorted(MANIFESTS.glob("*.yaml"))
        for obj in yaml.safe_load_all(path.read_text())
        if obj
    ]


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects() if obj["kind"] == kind]


def test_container_runs_non_root_read_only_with_only_net_bind_service() -> None:
    (deployment,) = by_kind("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    (container,) = pod["containers"]
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
    # Non-root + no_new_privs: file capabilities give nothing, so the Pod's network
    # namespace lets unprivileged users bind from :80 up (HAProxy's :80/:443).
    sysctls = {s["name"]: s["value"] for s in pod["securityContext"]["sysctls"]}
    assert int(sysctls["net.ipv4.ip_unprivileged_port_start"]) <= 80
    assert {"livenessProbe", "readinessProbe", "resources"} <= set(container)


def test_rbac_is_read_only_except_status_events_and_leases() -> None:
    writes = {"create", "update", "patch", "delete", "deletecollection"}
    for role in by_kind("ClusterRole") + by_kind("Role"):
        for rule in role["rules"]:
            if writes & set(rule["verbs"]):
                assert set(rule["resources"]) <= {"ingresses/status", "events", "leases"}, rule
            assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
    (role,) = by_kind("Role")
    assert role["metadata"]["namespace"] == "haproxy-ingress"
    cluster_resources = {
        r for rule in by_kind("ClusterRole")[0]["rules"] for r in rule["resources"]
    }
    assert "configmaps" not in cluster_resources and "leases" not in cluster_resources
