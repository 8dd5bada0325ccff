"""Services and EndpointSlices filed by Service (cluster.ServiceIndex), kept by the handlers.

An endpoint-only sync reads one Service's objects from it instead of the
whole view; the whole view still reads every object, as from Kopf's index.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import kopf
from kopf._cogs.structs import references
from kopf._core.actions import lifecycles
from kopf._core.engines import indexing
from kopf._core.intents import registries
from kopf._core.reactor import inventory, processing

from haproxy_ingress import handlers
from haproxy_ingress.cluster import (
    WATCHED,
    ClusterView,
    IndexedView,
    ServiceIndex,
    service_key,
    trim,
)
from haproxy_ingress.model import TranslateOptions
from tests.kube import endpoint, endpoint_slice, ingress, ingress_class, path, rule, service

SLICES = references.Resource("discovery.k8s.io", "v1", "endpointslices", namespaced=True)
SERVICES = references.Resource("", "v1", "services", namespaced=True)


def _uid(obj: dict[str, Any], uid: str) -> dict[str, Any]:
    obj["metadata"]["uid"] = uid
    return obj


def _names(objects: Any) -> list[str]:
    return sorted(f"{o['metadata']['name']}@{o['metadata'].get('uid', '')}" for o in objects)


def test_objects_are_filed_by_service_and_read_whole_or_by_service() -> None:
    index = ServiceIndex()
    index.put("Service", _uid(service("web"), "s1"))
    index.put("Service", _uid(service("api", namespace="shop"), "s2"))
    index.put("EndpointSlice", _uid(endpoint_slice("web", name="web-a"), "e1"))
    index.put("EndpointSlice", _uid(endpoint_slice("web", name="web-b"), "e2"))
    index.put("EndpointSlice", _uid(endpoint_slice("api", name="api-a", namespace="shop"), "e3"))
    services, slices = index.of({("default", "web")})
    assert _names(services) == ["web@s1"]
    assert _names(slices) == ["web-a@e1", "web-b@e2"]
    services, slices = index.of({("shop", "api"), ("default", "gone")})
    assert (_names(services), _names(slices)) == (["api@s2"], ["api-a@e3"])
    assert _names(index.services()) == ["api@s2", "web@s1"]
    assert _names(index.endpoint_slices()) == ["api-a@e3", "web-a@e1", "web-b@e2"]
    assert len(index) == 5


def test_a_new_version_replaces_the_old_one() -> None:
    index = ServiceIndex()
    index.put("EndpointSlice", _uid(endpoint_slice("web", endpoint("10.0.0.1")), "e1"))
    index.put("EndpointSlice", _uid(endpoint_slice("web", endpoint("10.0.0.2")), "e1"))
    (only,) = index.of({("default", "web")})[1]
    assert only["endpoints"][0]["addresses"] == ["10.0.0.2"]


def test_a_slice_whose_label_changes_moves_and_says_which_service_it_left() -> None:
    index = ServiceIndex()
    assert index.put("EndpointSlice", _uid(endpoint_slice("web", name="s"), "e1")) is None
    moved = _uid(endpoint_slice("api", name="s"), "e1")
    assert index.put("EndpointSlice", moved) == ("default", "web")
    assert index.of({("default", "web")}) == ((), ())
    assert index.of({("default", "api")})[1] == (moved,)
    unlabelled = copy.deepcopy(moved)
    del unlabelled["metadata"]["labels"]
    assert index.put("EndpointSlice", unlabelled) == ("default", "api")  # nothing reads it
    assert list(index.endpoint_slices()) == []


def test_a_deletion_drops_only_the_object_with_its_uid() -> None:
    """Two Services of one name: the older one's deletion was missed in a watch gap."""
    index = ServiceIndex()
    old, new = _uid(service("web"), "old"), _uid(service("web"), "new")
    index.put("Service", old)
    index.put("Service", new)
    assert index.of({("default", "web")})[0] == (old, new)  # the later one wins in translate
    assert index.drop("Service", old) == ("default", "web")
    assert index.of({("default", "web")})[0] == (new,)
    assert index.drop("Service", old) is None  # already gone
    index.put("EndpointSlice", _uid(endpoint_slice("web"), "e1"))
    assert index.drop("EndpointSlice", _uid(endpoint_slice("web"), "e1")) == ("default", "web")
    assert list(index.endpoint_slices()) == []


def test_service_keys() -> None:
    assert service_key("Service", service("web", namespace="shop")) == ("shop", "web")
    assert service_key("EndpointSlice", endpoint_slice("web", namespace="shop")) == (
        "shop",
        "web",
    )
    assert service_key("EndpointSlice", {"metadata": {"name": "x"}}) is None
    assert service_key("Ingress", ingress("a")) is None
    assert service_key("Service", {"metadata": "bogus"}) is None


def test_the_indexed_view_reads_every_object_and_only_some_services_on_demand() -> None:
    objects = [
        ingress_class(default=True),
        _uid(service("web"), "s1"),
        _uid(service("api"), "s2"),
        _uid(endpoint_slice("web", endpoint("10.0.0.1")), "e1"),
        _uid(endpoint_slice("api", endpoint("10.0.0.2")), "e2"),
        ingress("a", rule("a.example.com", path("/"))),
    ]
    expected, _ = ClusterView.from_objects(objects, TranslateOptions())
    services = ServiceIndex()
    kopf_indexes: dict[str, dict[Any, list[Any]]] = {kind.field: {None: []} for kind in WATCHED}
    for kind in WATCHED:
        for obj in expected.objects(kind):
            if services.holds(kind.kind):
                services.put(kind.kind, obj)
            else:
                kopf_indexes[kind.field][None].append(obj)
    view = IndexedView(kopf_indexes, services)
    configmap = {"metadata": {"name": "haproxy-ingress"}}
    assert view(configmap) == ClusterView.of(
        {kind.field: expected.objects(kind) for kind in WATCHED}, configmap
    )
    part = view.of_services({("default", "api")})
    assert part == ClusterView(
        services=(expected.services[1],), endpoint_slices=(expected.endpoint_slices[1],)
    )


# --- through Kopf, as the operator runs the handlers ---------------------------------


class Recorder:
    """The controller as the handlers see it."""

    def __init__(self) -> None:
        self.endpoints: list[tuple[str, str]] = []
        self.triggers = 0

    def trigger(self) -> None:
        self.triggers += 1

    def trigger_endpoints(self, namespace: str, name: str) -> None:
        self.endpoints.append((namespace, name))

    def relisted(self, kind: str) -> None:
        pass


async def _event(
    memo: kopf.Memo,
    indexers: indexing.OperatorIndexers,
    resource: references.Resource,
    type: str | None,
    obj: dict[str, Any],
) -> None:
    await processing.process_resource_event(
        lifecycle=lifecycles.get_default_lifecycle(),
        registry=registries.get_default_registry(),
        settings=kopf.OperatorSettings(),
        indexers=indexers,
        memories=inventory.ResourceMemories(),
        memobase=memo,  # type: ignore[arg-type]
        resource=resource,
        raw_event={"type": type, "object": obj},  # type: ignore[typeddict-item]
        event_queue=asyncio.Queue(),
    )


async def test_the_handlers_file_services_and_slices_and_kopf_keeps_none() -> None:
    recorder = Recorder()
    memo = kopf.Memo(controller=recorder)
    index = memo[handlers.SERVICE_INDEX] = ServiceIndex()
    indexers = indexing.OperatorIndexers()
    indexers.ensure(registries.get_default_registry()._indexing.get_all_handlers())
    web = _uid(service("web"), "s1")
    await _event(memo, indexers, SERVICES, None, web)  # listed
    assert index.of({("default", "web")})[0] == (trim(web),)
    assert recorder.triggers == 1
    first = _uid(endpoint_slice("web", endpoint("10.0.0.1"), name="web-a"), "e1")
    await _event(memo, indexers, SLICES, "ADDED", first)
    assert index.of({("default", "web")})[1] == (trim(first),)
    assert recorder.endpoints == [("default", "web")]
    # Nothing of either kind in Kopf's own indexes: the ServiceIndex holds them.
    assert not any(indexer.index for indexer in indexers.values())
    await _event(memo, indexers, SLICES, "DELETED", first)
    assert index.of({("default", "web")})[1] == ()
    assert recorder.endpoints == [("default", "web")] * 2
    await _event(memo, indexers, SERVICES, "DELETED", web)
    assert index.of({("default", "web")}) == ((), ())


async def test_a_slice_moved_to_another_service_refreshes_both() -> None:
    """Its event names only the Service it moved to; the one it left loses its pods too."""
    recorder = Recorder()
    memo = kopf.Memo(controller=recorder)
    index = memo[handlers.SERVICE_INDEX] = ServiceIndex()
    indexers = indexing.OperatorIndexers()
    indexers.ensure(registries.get_default_registry()._indexing.get_all_handlers())
    first = _uid(endpoint_slice("web", endpoint("10.0.0.1"), name="pods"), "e1")
    await _event(memo, indexers, SLICES, "ADDED", first)
    moved = _uid(endpoint_slice("api", endpoint("10.0.0.1"), name="pods"), "e1")
    await _event(memo, indexers, SLICES, "MODIFIED", moved)
    assert sorted(set(recorder.endpoints)) == [("default", "api"), ("default", "web")]
    assert index.of({("default", "web")})[1] == ()
    assert index.of({("default", "api")})[1] == (trim(moved),)
    unlabelled = copy.deepcopy(moved)
    del unlabelled["metadata"]["labels"]
    recorder.endpoints.clear()
    await _event(memo, indexers, SLICES, "MODIFIED", unlabelled)
    assert recorder.endpoints == [("default", "api")]
    assert list(index.endpoint_slices()) == []
