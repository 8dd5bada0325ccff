"""What the indexes keep of each object (cluster.trim): exactly what translate needs.

The indexes hold every watched object of the cluster (about 31,000 at
10,000 Ingresses), so trim drops what nothing reads and shares key strings;
translating and rendering from trimmed objects must equal doing it from the
objects as the API server sends them.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import kopf
import pytest

from haproxy_ingress.cluster import WATCHED, ClusterView, SharedValues, trim
from haproxy_ingress.haproxy.config import RenderOptions, render
from haproxy_ingress.haproxy.paths import HAProxyPaths
from haproxy_ingress.loader import load_objects
from haproxy_ingress.model import TranslateOptions
from haproxy_ingress.plan import plan
from haproxy_ingress.translate import translate
from tests.kube import endpoint, endpoint_slice, service

CLUSTERS = Path(__file__).resolve().parent.parent / "fixtures" / "clusters"
OPTIONS = TranslateOptions(ssl_passthrough=True)


def as_served(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object with what the API server adds to every object of its kind."""
    served = copy.deepcopy(dict(obj))
    meta = served.setdefault("metadata", {})
    meta.update(
        resourceVersion="4711",
        generation=3,
        uid=meta.get("uid", f"uid-{meta.get('name')}"),
        managedFields=[
            {"manager": "kubectl", "operation": "Apply", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:spec": {}}, "time": "2026-01-01T00:00:00Z"}
        ],
        annotations={
            **meta.get("annotations", {}),
            "kubectl.kubernetes.io/last-applied-configuration": "{...}",
        },
    )  # fmt: skip
    kind = served.get("kind")
    if kind == "Service":
        spec = served.setdefault("spec", {})
        if spec.get("type") != "ExternalName":
            spec.setdefault("clusterIP", "10.96.0.10")
            spec.update(
                clusterIPs=[spec["clusterIP"]],
                ipFamilies=["IPv4"],
                ipFamilyPolicy="SingleStack",
                internalTrafficPolicy="Cluster",
                sessionAffinity="None",
            )
        served["status"] = {"loadBalancer": {}}
    if kind == "EndpointSlice":
        for item in served.get("endpoints") or ():
            item.update(nodeName="node-1", zone="a")
    if kind == "Ingress":
        served["status"] = {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}
    return served


def untrimmed_view(objects: list[Mapping[str, Any]]) -> ClusterView:
    """As ClusterView.from_objects, without trimming anything."""
    kinds = {(k.api_version, k.kind): k.field for k in WATCHED}
    buckets: dict[str, list[Mapping[str, Any]]] = {k.field: [] for k in WATCHED}
    configmap = None
    for obj in objects:
        key = (obj.get("apiVersion"), obj.get("kind"))
        if key == ("v1", "ConfigMap"):
            configmap = obj
        elif key in kinds:
            buckets[kinds[key]].append(obj)
    return ClusterView.of(buckets, configmap)


def rendered(view: ClusterView, base: Path) -> tuple[Any, dict[str, bytes]]:
    desired = translate(view, OPTIONS)
    files = render(
        plan(None, desired).target,
        RenderOptions(HAProxyPaths(base), http_binds=("*:8080",), https_binds=("*:8443",)),
    )
    return desired, {str(f.path): f.content for f in files.all}


@pytest.mark.parametrize("name", sorted(p.name for p in CLUSTERS.iterdir() if p.is_dir()))
def test_translating_trimmed_objects_equals_translating_them_as_served(
    name: str, tmp_path: Path
) -> None:
    objects = [as_served(o) for o in load_objects(sorted((CLUSTERS / name).glob("*.yaml")))]
    full_desired, full_files = rendered(untrimmed_view(objects), tmp_path)
    view, _ = ClusterView.from_objects(objects, OPTIONS)
    trimmed_desired, trimmed_files = rendered(view, tmp_path)
    assert trimmed_desired == full_desired
    assert trimmed_files == full_files
    assert full_files  # the comparison covered a rendered configuration


def test_the_bulk_nothing_reads_is_dropped() -> None:
    web = as_served(service("web"))
    web["spec"]["selector"] = {"app": "web"}
    kept = trim(web)
    assert set(kept["metadata"]) == {"name", "namespace", "uid", "annotations"}
    assert kept["metadata"]["annotations"] == {}
    assert set(kept["spec"]) == {"type", "ports", "clusterIP"}
    assert "status" not in kept


def test_the_copy_shares_nothing_with_the_watched_body() -> None:
    body = as_served(endpoint_slice("web", endpoint("10.0.0.1")))
    kept = trim(body)
    before = copy.deepcopy(kept)
    body["endpoints"][0]["addresses"].append("10.0.0.2")
    body["endpoints"][0]["conditions"]["ready"] = False
    body["metadata"]["labels"]["x"] = "y"
    assert kept == before


def test_strings_are_shared_across_objects() -> None:
    # Each watch event is decoded alone: without interning, every object
    # would hold its own "addresses", "conditions", "ready", "http", ...
    first, second = (
        trim(as_served(endpoint_slice(name, endpoint("10.0.0.1")))) for name in ("a", "b")
    )
    key_of = {id(k) for k in first["endpoints"][0]} & {id(k) for k in second["endpoints"][0]}
    assert len(key_of) == len(first["endpoints"][0])
    assert first["ports"][0]["name"] is second["ports"][0]["name"]
    long_text = "x" * 1000  # certificates and such: unique, left alone
    assert trim({"kind": "Secret", "metadata": {}, "data": {"k": long_text}})["data"]["k"] is (
        long_text
    )
    assert sys.intern("addresses") is next(iter(first["endpoints"][0]))


def test_trimming_twice_changes_nothing() -> None:
    body = as_served(service("web"))
    assert trim(trim(body)) == trim(body)


def test_small_mappings_of_scalars_are_one_across_objects() -> None:
    shared = SharedValues()
    first, second = (
        trim(as_served(endpoint_slice(name, endpoint("10.0.0.1"))), shared) for name in ("a", "b")
    )
    assert first["endpoints"][0]["conditions"] is second["endpoints"][0]["conditions"]
    assert first["ports"][0] is second["ports"][0]
    # Each object's own: its metadata, and the lists around the shared mappings.
    assert first["metadata"] is not second["metadata"]
    assert first["endpoints"] is not second["endpoints"]
    assert trim(as_served(endpoint_slice("c", endpoint("10.0.0.1")))) == first | {
        "metadata": trim(as_served(endpoint_slice("c", endpoint("10.0.0.1"))))["metadata"]
    }


def test_only_equal_mappings_are_shared() -> None:
    shared = SharedValues()
    ready = shared.share({"ready": True})
    assert shared.share({"ready": True}) is ready
    assert shared.share({"ready": 1}) is not ready  # equal in Python, not the same JSON
    assert shared.share({"ready": False}) is not ready
    reordered = {"port": 80, "name": "http"}
    assert shared.share({"name": "http", "port": 80}) is not shared.share(reordered)
    pod = {"kind": "Pod", "name": "web-1", "namespace": "default", "uid": "u-1"}
    assert shared.share(pod) is pod and len(shared) == 5  # a targetRef is one object's own
    nested = {"service": {"name": "web"}}
    assert shared.share(nested) is nested and len(shared) == 5


def test_the_table_stops_growing_at_its_limit() -> None:
    shared = SharedValues(limit=2)
    for number in range(5):
        shared.share({"number": number})
    assert len(shared) == 2
    late = {"number": 4}
    assert shared.share(late) is late  # copied as before, not shared
    assert shared.share({"number": 0}) == {"number": 0}


def test_trimming_what_kopf_hands_over_equals_trimming_the_plain_object() -> None:
    """Handlers get a ``kopf.Body`` (a Mapping, not a dict): the same plain result."""
    obj = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "web-1", "namespace": "default", "labels": {"a": "b"}},
        "endpoints": [{"addresses": ["198.18.0.1"], "conditions": {"ready": True}, "x": 1.5}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }
    trimmed = trim(kopf.Body(obj))
    assert trimmed == trim(obj)
    assert type(trimmed) is dict and type(trimmed["endpoints"][0]) is dict
