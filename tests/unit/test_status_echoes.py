"""An Ingress event that changed only its status starts no sync (cluster.StatusEchoes)."""

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
from haproxy_ingress.cluster import ClusterView, StatusEchoes, trim
from tests.kube import ingress, path, rule

INGRESSES = references.Resource("networking.k8s.io", "v1", "ingresses", namespaced=True)


def _served(name: str = "web") -> dict[str, Any]:
    obj = ingress(name, rule("a.example.com", path("/")))
    obj["metadata"]["uid"] = f"uid-{name}"
    return obj


def _with_status(obj: dict[str, Any], address: str) -> dict[str, Any]:
    changed = copy.deepcopy(obj)
    changed["status"] = {"loadBalancer": {"ingress": [{"ip": address}]}}
    changed["metadata"]["resourceVersion"] = "2"
    changed["metadata"]["managedFields"] = [{"manager": "haproxy-ingress"}]
    return changed


def test_only_a_change_of_status_alone_is_an_echo() -> None:
    echoes = StatusEchoes()
    first = _served()
    echoes.seen(trim(first))
    assert not echoes.echo("uid-web")  # new: not an echo
    echoes.seen(trim(_with_status(first, "203.0.113.7")))
    assert echoes.echo("uid-web")
    assert not echoes.echo("uid-web")  # asked once per event
    annotated = _with_status(first, "203.0.113.7")
    annotated["metadata"]["annotations"] = {"haproxy-ingress.kopf.dev/timeout-server": "5s"}
    echoes.seen(trim(annotated))
    assert not echoes.echo("uid-web")
    echoes.gone("uid-web")
    echoes.seen(trim(annotated))  # the same again, after a deletion: new
    assert not echoes.echo("uid-web")


def test_ingresses_gone_from_the_view_are_forgotten() -> None:
    """Deleted during a watch gap: no DELETED event ever says so."""
    echoes = StatusEchoes()
    kept, gone = trim(_served("kept")), trim(_served("gone"))
    echoes.seen(kept)
    echoes.seen(gone)
    echoes.retain(ClusterView(ingresses=(kept,)))
    echoes.seen(trim(_with_status(_served("kept"), "203.0.113.7")))
    echoes.seen(trim(_with_status(_served("gone"), "203.0.113.7")))
    assert echoes.echo("uid-kept")
    assert not echoes.echo("uid-gone")  # new to it again


class Recorder:
    """The controller as the event handlers see it."""

    def __init__(self) -> None:
        self.triggers = 0

    def trigger(self) -> None:
        self.triggers += 1

    def relisted(self, kind: str) -> None:
        pass


async def _event(memo: kopf.Memo, indexers: Any, type: str, obj: dict[str, Any]) -> None:
    registry = registries.get_default_registry()
    await processing.process_resource_event(
        lifecycle=lifecycles.get_default_lifecycle(),
        registry=registry,
        settings=kopf.OperatorSettings(),
        indexers=indexers,
        memories=inventory.ResourceMemories(),
        memobase=memo,
        resource=INGRESSES,
        raw_event={"type": type, "object": obj},
        event_queue=asyncio.Queue(),
    )


async def test_our_status_write_coming_back_triggers_no_sync() -> None:
    assert handlers.STATUS_ECHOES  # the handlers are registered in Kopf's default registry
    recorder = Recorder()
    memo = kopf.Memo(controller=recorder)
    memo[handlers.STATUS_ECHOES] = StatusEchoes()
    indexers = indexing.OperatorIndexers()
    indexers.ensure(registries.get_default_registry()._indexing.get_all_handlers())
    first = _served()
    await _event(memo, indexers, "ADDED", first)
    assert recorder.triggers == 1
    await _event(memo, indexers, "MODIFIED", _with_status(first, "203.0.113.7"))
    assert recorder.triggers == 1  # the echo of our own write
    changed = _with_status(first, "203.0.113.7")
    changed["spec"]["rules"][0]["host"] = "b.example.com"
    await _event(memo, indexers, "MODIFIED", changed)
    assert recorder.triggers == 2
    await _event(memo, indexers, "DELETED", changed)
    assert recorder.triggers == 3
    await _event(memo, indexers, "ADDED", changed)  # back with the same uid: a new object
    assert recorder.triggers == 4
