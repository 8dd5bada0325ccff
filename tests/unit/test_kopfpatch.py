"""kopfpatch: Kopf's index pre-population wakes its waiters once, not once per object,
and says when it is over (every kind listed, empty ones too)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Iterable
from typing import Any

import kopf
import pytest
from kopf._cogs.aiokits import aiotoggles
from kopf._cogs.clients import watching
from kopf._cogs.structs import references
from kopf._core.actions import lifecycles
from kopf._core.engines import indexing, peering
from kopf._core.intents import registries
from kopf._core.reactor import inventory, orchestration, processing

from haproxy_ingress import (
    handlers,  # installs the patch, as the controller does
    kopfpatch,
)
from haproxy_ingress.kopfpatch import LinearToggleSet

_StockToggleSet = LinearToggleSet.__bases__[0]  # Kopf's own, before install()


class Counted:
    """``all``, counting how often the set's overall state is evaluated."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, states: Iterable[bool]) -> bool:
        self.calls += 1
        return all(states)


async def _populate(kind: type[aiotoggles.ToggleSet], objects: int) -> tuple[int, int]:
    """As Kopf at start: a toggle per object, each worker drops its own and waits for all.

    Returns the evaluations of the overall state and how many workers got through.
    """
    fn = Counted()
    toggles = kind(fn)
    released = 0

    async def worker(toggle: aiotoggles.Toggle) -> None:
        nonlocal released
        await asyncio.sleep(0)
        await toggles.drop_toggle(toggle)
        await toggles.wait_for(True)
        released += 1

    blocker = await toggles.make_toggle(name="listing")  # the resource kind's own toggle
    workers = []
    for n in range(objects):  # objects arrive one by one; each worker parks meanwhile
        toggle = await toggles.make_toggle(name=f"object {n}")
        workers.append(asyncio.create_task(worker(toggle)))
        for _ in range(3):
            await asyncio.sleep(0)
    assert released == 0  # nobody proceeds while the listing is not over
    await toggles.drop_toggle(blocker)
    await asyncio.gather(*workers)
    return fn.calls, released


async def test_waiters_are_released_together_once_everything_is_indexed() -> None:
    calls, released = await _populate(LinearToggleSet, 300)
    assert released == 300
    # About one evaluation per object made and dropped plus one per waiter,
    # where Kopf's own set evaluates once per waiter per object (N²).
    assert calls < 10 * 300
    stock_calls, stock_released = await _populate(_StockToggleSet, 300)
    assert stock_released == 300 and stock_calls > 300 * 300 // 2


async def test_individual_toggles_still_wake_their_waiters() -> None:
    toggles = LinearToggleSet(any)
    toggle = await toggles.make_toggle(name="paused")
    waiter = asyncio.create_task(toggles.wait_for(True))
    await asyncio.sleep(0)
    assert not waiter.done()
    await toggle.turn_to(True)
    await asyncio.wait_for(waiter, 5)
    assert toggles.is_on()


def test_kopf_builds_its_sets_with_the_linear_one() -> None:
    assert aiotoggles.ToggleSet is LinearToggleSet


# --- word of the end of the pre-population (kopfpatch.indexed) -----------------------

INGRESSES = references.Resource("networking.k8s.io", "v1", "ingresses", namespaced=True)
SERVICES = references.Resource("", "v1", "services", namespaced=True)
SLICES = references.Resource("discovery.k8s.io", "v1", "endpointslices", namespaced=True)


def _object(kind: str, name: str) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"namespace": "default", "name": name, "uid": name}}


class FakeApi:
    """Kopf's watch streams of a few kinds: each lists its objects once its gate opens."""

    def __init__(self, objects: dict[references.Resource, list[dict[str, Any]]]) -> None:
        self.objects = objects
        self.gates = {resource: asyncio.Event() for resource in objects}
        for gate in self.gates.values():
            gate.set()

    async def infinite_watch(
        self, *, resource: references.Resource, **_: Any
    ) -> AsyncIterator[Any]:
        for obj in self.objects[resource]:
            yield {"type": None, "object": obj}
        await self.gates[resource].wait()  # the LIST's last page
        yield watching.Bookmark.LISTED
        await asyncio.Event().wait()  # watching, nothing happens


@contextlib.asynccontextmanager
async def _kopf(
    api: FakeApi,
    memo: kopf.Memo,
    registry: registries.OperatorRegistry | None = None,
    process: Any = None,
    settings: kopf.OperatorSettings | None = None,
) -> AsyncIterator[references.Insights]:
    """Kopf's own orchestrator and per-object processing, over ``api``'s streams.

    ``process``: the per-object processing (default: as installed, patched).
    ``settings``: Kopf's (default: its own, standalone).
    """
    if settings is None:
        settings = kopf.OperatorSettings()
        settings.peering.standalone = True
    insights = references.Insights()
    registry = registry if registry is not None else registries.OperatorRegistry()
    indexers = indexing.OperatorIndexers()
    indexers.ensure(registry._indexing.get_all_handlers())
    processor = functools.partial(
        process if process is not None else processing.process_resource_event,
        lifecycle=lifecycles.get_default_lifecycle(),
        registry=registry,
        settings=settings,
        indexers=indexers,
        memories=inventory.ResourceMemories(),
        memobase=memo,
        operator_paused=aiotoggles.ToggleSet(any),
        event_queue=asyncio.Queue(),
    )
    task = asyncio.create_task(
        orchestration.orchestrator(
            processor=processor,
            settings=settings,
            identity=peering.Identity("test"),
            insights=insights,
            operator_paused=aiotoggles.ToggleSet(any),
        )
    )
    try:
        yield insights
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _revise(insights: references.Insights, **changes: set[Any]) -> None:
    """As Kopf's observers do: resources first, namespaces in a later revision."""
    async with insights.revised:
        for name, values in changes.items():
            getattr(insights, name).update(values)
        insights.revised.notify_all()
    await asyncio.sleep(0.2)  # Kopf's workers batch an object's events for 0.1 s


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    fake = FakeApi(
        {
            INGRESSES: [_object("Ingress", "a"), _object("Ingress", "b")],
            SERVICES: [_object("Service", "web")],
            SLICES: [],
        }
    )
    monkeypatch.setattr(watching, "infinite_watch", fake.infinite_watch)
    return fake


async def test_indexed_only_once_every_kind_is_listed(api: FakeApi) -> None:
    api.gates[SERVICES].clear()  # a kind that lists slowly
    memo = kopf.Memo()
    indexed = kopfpatch.indexed(memo)
    kinds = {INGRESSES, SERVICES, SLICES}
    async with _kopf(api, memo) as insights:
        await _revise(insights, watched_resources=kinds, indexed_resources=kinds)
        assert not indexed.is_set()  # no namespace yet: no watcher, the set is on, empty
        await _revise(insights, namespaces={None})
        assert not indexed.is_set()  # Services still listing; the rest indexed
        api.gates[SERVICES].set()
        await asyncio.wait_for(indexed.wait(), 5)


async def test_indexed_when_nothing_at_all_is_listed(api: FakeApi) -> None:
    for objects in api.objects.values():
        objects.clear()
    memo = kopf.Memo()
    kinds = {INGRESSES, SERVICES, SLICES}
    async with _kopf(api, memo) as insights:
        await _revise(insights, watched_resources=kinds, indexed_resources=kinds)
        await _revise(insights, namespaces={None})
        await asyncio.wait_for(kopfpatch.indexed(memo).wait(), 5)


# --- objects are processed without waiting for the others (kopfpatch.Unparked) --------


@pytest.mark.parametrize("patched", [True, False], ids=["patched", "kopf-stock"])
async def test_an_object_is_processed_while_other_kinds_still_list(
    api: FakeApi, patched: bool
) -> None:
    api.gates[SERVICES].clear()  # a kind that lists slowly
    registry = registries.OperatorRegistry()
    handled: list[str] = []

    @kopf.index("networking.k8s.io", "v1", "ingresses", registry=registry)
    async def by_name(name: str, **_: Any) -> Any:
        return {name: name}

    @kopf.on.event("networking.k8s.io", "v1", "ingresses", registry=registry)
    async def changed(name: str, **_: Any) -> None:
        handled.append(name)

    memo = kopf.Memo()
    indexed = kopfpatch.indexed(memo)
    kinds = {INGRESSES, SERVICES}
    stock = kopfpatch._process_resource_event
    process = None if patched else stock
    async with _kopf(api, memo, registry, process) as insights:
        await _revise(insights, watched_resources=kinds, indexed_resources=kinds)
        await _revise(insights, namespaces={None})
        # Kopf's own holds the Ingresses' processing (raw bodies and all) until
        # the Services are listed; ours handles them, and still waits to say so.
        assert sorted(handled) == (["a", "b"] if patched else [])
        assert not indexed.is_set()
        api.gates[SERVICES].set()
        await asyncio.wait_for(indexed.wait(), 5)
        await asyncio.sleep(0.2)
        assert sorted(handled) == ["a", "b"]


def _workers() -> int:
    """Kopf's per-object workers alive (queueing.worker tasks)."""
    return sum(
        getattr(task.get_coro(), "__qualname__", "") == "worker" for task in asyncio.all_tasks()
    )


@pytest.mark.parametrize("ours", [True, False], ids=["ours", "kopf-default"])
async def test_the_workers_of_listed_objects_exit_soon(api: FakeApi, ours: bool) -> None:
    # An idle worker keeps its object's last event: with Kopf's 5 s, thousands
    # of them lived through a 10k cluster's first full sync (handlers.configure).
    settings = kopf.OperatorSettings()
    if ours:
        handlers.configure(settings)
    else:
        settings.peering.standalone = True
    memo = kopf.Memo()
    kinds = {INGRESSES, SERVICES}
    async with _kopf(api, memo, settings=settings) as insights:
        await _revise(insights, watched_resources=kinds, indexed_resources=kinds)
        await _revise(insights, namespaces={None})
        await asyncio.wait_for(kopfpatch.indexed(memo).wait(), 5)
        assert _workers() == 3  # a, b and web, just processed
        await asyncio.sleep(handlers.WORKER_IDLE_TIMEOUT + 0.5)
        assert _workers() == (0 if ours else 3)


def test_kopf_processes_objects_with_the_unparked_processing() -> None:
    assert processing.process_resource_event is kopfpatch.process_unparked


# --- cause detection without the diff-base ------------------------------------------


def _slice(rv: str) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"namespace": "default", "name": "web-1", "uid": "u1", "resourceVersion": rv},
        "endpoints": [{"addresses": ["198.18.0.1"], "conditions": {"ready": True}}],
    }


class CountingDiffBase(kopf.AnnotationsDiffBaseStorage):
    def __init__(self) -> None:
        super().__init__()
        self.builds = 0

    def build(self, **kwargs: Any) -> Any:
        self.builds += 1
        return super().build(**kwargs)


async def _process(
    registry: registries.OperatorRegistry, settings: kopf.OperatorSettings | None = None
) -> list[Any]:
    """One event of a slice, processed as installed (patched); Kopf's memories after it."""
    memories = inventory.ResourceMemories()
    indexers = indexing.OperatorIndexers()
    indexers.ensure(registry._indexing.get_all_handlers())
    await processing.process_resource_event(
        lifecycle=lifecycles.get_default_lifecycle(),
        registry=registry,
        settings=settings or kopf.OperatorSettings(),
        indexers=indexers,
        memories=memories,
        memobase=kopfpatch.SharedMemo(),
        resource=SLICES,
        raw_event={"type": "MODIFIED", "object": _slice("7")},
        event_queue=asyncio.Queue(),
    )
    return list(memories.iter_all_memories())


async def test_event_handlers_alone_get_their_events_without_a_diff_base() -> None:
    registry = registries.OperatorRegistry()
    seen: list[tuple[str | None, str]] = []

    @kopf.on.event("discovery.k8s.io", "v1", "endpointslices", registry=registry)
    async def spy(type: str | None, body: kopf.Body, **_: Any) -> None:
        seen.append((type, body["metadata"]["resourceVersion"]))

    settings = kopf.OperatorSettings()
    settings.persistence.diffbase_storage = storage = CountingDiffBase()
    await _process(registry, settings)
    assert seen == [("MODIFIED", "7")]
    assert storage.builds == 0  # Kopf's own detection builds it on every event


async def test_objects_with_change_handlers_keep_kopfs_detection() -> None:
    registry = registries.OperatorRegistry()
    seen: list[str] = []

    @kopf.on.event("discovery.k8s.io", "v1", "endpointslices", registry=registry)
    async def spy(body: kopf.Body, **_: Any) -> None:
        seen.append(body["metadata"]["resourceVersion"])

    @kopf.on.update("discovery.k8s.io", "v1", "endpointslices", registry=registry)
    async def changed(**_: Any) -> None:
        pass

    settings = kopf.OperatorSettings()
    settings.persistence.diffbase_storage = storage = CountingDiffBase()
    await _process(registry, settings)
    assert seen == ["7"]
    assert storage.builds >= 1


# --- one memo for the operator and its objects (kopfpatch.SharedMemo) ----------------


async def test_every_object_gets_the_operators_memo_itself() -> None:
    memobase = kopfpatch.SharedMemo(config="the controller's")
    memories = inventory.ResourceMemories()
    first = await memories.recall(_object("Ingress", "a"), memobase=memobase)
    second = await memories.recall(_object("Ingress", "b"), memobase=memobase)
    assert first.memo is memobase and second.memo is memobase
    plain = await inventory.ResourceMemories().recall(
        _object("Ingress", "a"), memobase=kopf.Memo(config="x")
    )
    assert plain.memo == {"config": "x"}  # Kopf's own: a copy per object


# --- no memory kept for objects that need none (kopfpatch._forget_if_blank) ---------


async def test_an_indexed_object_with_event_handlers_leaves_no_memory() -> None:
    registry = registries.OperatorRegistry()
    seen: list[str] = []

    @kopf.index("discovery.k8s.io", "v1", "endpointslices", registry=registry)
    async def by_name(name: str, **_: Any) -> Any:
        return {None: name}

    @kopf.on.event("discovery.k8s.io", "v1", "endpointslices", registry=registry)
    async def spy(body: kopf.Body, **_: Any) -> None:
        seen.append(body["metadata"]["resourceVersion"])

    assert await _process(registry) == []
    assert seen == ["7"]


async def test_an_index_handler_to_retry_keeps_its_memory() -> None:
    registry = registries.OperatorRegistry()

    @kopf.index("discovery.k8s.io", "v1", "endpointslices", registry=registry)
    async def flaky(**_: Any) -> Any:
        raise kopf.TemporaryError("not yet", delay=1)

    kept = await _process(registry)
    assert len(kept) == 1 and kept[0].indexing_memory.indexing_state is not None


async def test_objects_with_change_handlers_keep_their_memory() -> None:
    registry = registries.OperatorRegistry()

    @kopf.on.update("discovery.k8s.io", "v1", "endpointslices", registry=registry)
    async def changed(**_: Any) -> None:
        pass

    assert len(await _process(registry)) == 1
