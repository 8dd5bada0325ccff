"""An endpoint-only sync reads only the changed Services' objects, never the whole view.

Building the whole view walks every object of every index (31,000 at 10,000
Ingresses) on the event loop: the fast path asks the ServiceIndex for the
changed Services instead (Controller.snapshot_of), and the reconciler takes
the whole view only when a full translation turns out to be due.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from haproxy_ingress.cluster import WATCHED, ClusterView, IndexedView, ServiceIndex, trim
from haproxy_ingress.config import ControllerConfig
from haproxy_ingress.controller import Controller
from haproxy_ingress.model import TranslateOptions
from haproxy_ingress.sync import Reconciler
from haproxy_ingress.translate import translate
from haproxy_ingress.verifier import Verification
from tests.kube import endpoint, endpoint_slice, ingress, ingress_class, path, rule, service
from tests.unit.test_sync_threads import StubApplier

OPTIONS = TranslateOptions()


def _slice(service_name: str, *addresses: str, uid: str) -> dict[str, Any]:
    obj = endpoint_slice(service_name, *(endpoint(a) for a in addresses))
    obj["metadata"]["uid"] = uid
    return obj


class Cluster:
    """The handlers' indexes and the view source over them, counting whole views taken."""

    def __init__(self, *objects: dict[str, Any]) -> None:
        self.services = ServiceIndex()
        self.kopf: dict[str, dict[Any, list[Any]]] = {kind.field: {None: []} for kind in WATCHED}
        view, _ = ClusterView.from_objects(objects, OPTIONS)
        for kind in WATCHED:
            for obj in view.objects(kind):
                if self.services.holds(kind.kind):
                    self.services.put(kind.kind, obj)
                else:
                    self.kopf[kind.field][None].append(obj)
        self.indexed = IndexedView(self.kopf, self.services)
        self.whole_views = 0

    def __call__(self, configmap: Any) -> ClusterView:
        self.whole_views += 1
        return self.indexed(configmap)


def _cluster() -> Cluster:
    return Cluster(
        ingress_class(default=True),
        service("web"),
        service("api"),
        _slice("web", "10.0.0.1", uid="web-1"),
        _slice("api", "10.0.1.1", uid="api-1"),
        ingress("a", rule("a.example.com", path("/", "web"), path("/api", "api"))),
    )


async def test_an_endpoint_sync_reads_only_its_services(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = _cluster()
    controller = Controller(
        ControllerConfig(state_dir=tmp_path), cluster, service_view=cluster.indexed.of_services
    )
    monkeypatch.setattr(controller.reconciler, "_applier", StubApplier())
    await controller.sync_once()  # the first sync: everything
    assert cluster.whole_views == 1
    cluster.services.put("EndpointSlice", trim(_slice("web", "10.0.0.2", uid="web-1")))
    controller.trigger_endpoints("default", "web")
    outcome = await controller.sync_once()
    assert outcome is not None
    assert cluster.whole_views == 1  # only web's Service and slices were read
    assert outcome.desired == translate(cluster.indexed(None), OPTIONS)
    assert [b.name for b in outcome.refreshed or ()] == ["be_default_web_80"]
    (web,) = outcome.refreshed or ()
    assert [e.address for e in web.endpoints] == ["10.0.0.2"]
    await controller.feedback.close()


async def test_objects_found_deleted_after_a_watch_gap_stay_out_of_the_services_view(
    tmp_path: Path,
) -> None:
    """Kopf's index (and so the ServiceIndex) keeps what was deleted during a gap."""
    cluster = _cluster()
    controller = Controller(
        ControllerConfig(state_dir=tmp_path), cluster, service_view=cluster.indexed.of_services
    )
    controller._verified = Verification(frozenset({"web-1"}))  # what verify_indexes finds
    part = controller.snapshot_of({("default", "web")})
    assert part is not None
    assert [s["metadata"]["name"] for s in part.services] == ["web"]
    assert part.endpoint_slices == ()
    assert cluster.whole_views == 0


async def test_without_a_services_view_the_fast_path_reads_the_whole_one(tmp_path: Path) -> None:
    cluster = _cluster()
    controller = Controller(ControllerConfig(state_dir=tmp_path), cluster)
    assert controller.snapshot_of({("default", "web")}) is None


async def test_the_reconciler_takes_the_whole_view_only_when_it_must_translate() -> None:
    cluster = _cluster()
    reconciler = Reconciler(OPTIONS, StubApplier())  # type: ignore[arg-type]
    web = {("default", "web")}
    # Nothing translated yet: the first sync translates, whatever it was asked.
    first = await reconciler.reconcile(
        lambda: cluster(None), endpoints_of=web, part=cluster.indexed.of_services(web)
    )
    assert cluster.whole_views == 1 and first.refreshed is None
    cluster.services.put("EndpointSlice", trim(_slice("web", "10.0.0.3", uid="web-1")))

    def refused() -> ClusterView:
        raise AssertionError("the fast path took the whole view")

    outcome = await reconciler.reconcile(
        refused, endpoints_of=web, part=cluster.indexed.of_services(web)
    )
    assert outcome.desired == translate(cluster.indexed(None), OPTIONS)
    # Nothing changed for api: its backend is the very object the last state had.
    (api,) = [b for b in outcome.desired.backends if b.service.name == "api"]
    assert api is next(b for b in first.desired.backends if b.service.name == "api")
