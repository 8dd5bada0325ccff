"""Kopf 1.45, patched (:func:`install`): a linear index pre-population, word
of its end, listed objects processed without waiting for the others, and no
diff-base for objects only event handlers watch; and :class:`SharedMemo`, one
memo for the operator and every object.

Kopf holds every event handler back until every ``@kopf.index`` is
populated: each object listed at start gets a toggle in one
``ToggleSet(all)`` (``operator_indexed``), its worker indexes it, drops
its toggle and waits for the whole set. ``ToggleSet`` wakes every waiter on
every toggle made or dropped (``notify_all``), so N objects cost N²
wake-ups, each re-taking the condition's lock: at 10,000 Ingresses
(31,000 objects) the controller was not ready after 30 minutes, its time
spent in ``Condition.notify_all`` under ``make_toggle``/``drop_toggle``
(py-spy, bench/controller_rss.py).

A waiter of the set only waits for the set's overall state
(``wait_for``); toggles made or dropped change no individual toggle's
state. So waking the waiters is needed only when the overall state changes
(once, when the last object is indexed), and the set below notifies only
then. Individual toggles still notify on ``turn_to`` as before. Kopf builds
its sets by looking ``aiotoggles.ToggleSet`` up when the operator starts,
so :func:`install` (called when the handlers are imported) replaces it there.

Kopf tells nobody when the pre-population is over: event handlers simply
start being called. When no object matches any handler, nothing is ever
called, so the sync loop cannot tell "still listing" (a big cluster, a slow
API server) from "nothing to list". :func:`indexed` is an
``asyncio.Event`` in the operator's memo that :func:`install` has Kopf set
once every indexed kind's watcher is running and the set above is on: every
kind's initial LIST is over (empty ones too) and every listed object is
indexed -- the moment Kopf itself releases the event handlers.

Holding event handlers back is Kopf's promise to handlers that read
indexes; ours read none (they poke the sync loop, which waits for
:func:`indexed` itself). Yet the holding costs memory in proportion to
the cluster: every listed object's processing parks after indexing, with
its raw body as served (``managedFields`` included), its Body and Patch
views, three loggers, its worker, queue and task, until the last object of
every kind is indexed. At 10,000 Ingresses those 31,000 parked objects
made the controller's peak (HWM 820-880 MiB), and the holes they left
among the objects that stay (trimmed copies, Kopf's per-object memories)
kept the idle RSS at 690-720 MiB (pymalloc: 230 MB of blocks in use in
594 MB of arenas). :func:`install` therefore also has each object's
processing drop its toggle as Kopf does and go on without waiting: Kopf
still counts every object in (so :func:`indexed` keeps its meaning), and
each object's transient state is freed as soon as it is processed: the
same 10,000 Ingresses peak at 421-443 MiB and idle at 311-320 MiB.

Kopf also builds a diff-base (deep copies of the object) on every event, for
handlers this controller never registers: see :func:`_detect_watching_causes`.
And it keeps a ``ResourceMemory`` per object seen, for those handlers and for
failures: one holding only defaults is forgotten after each event
(:func:`_forget_if_blank`), 24 MiB at 10,000 Ingresses.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Container, Iterable
from typing import Any

import kopf
from kopf._cogs.aiokits import aiotoggles
from kopf._cogs.structs import references
from kopf._core.intents import causes
from kopf._core.reactor import inventory, orchestration, processing

# The memo key of the event :func:`indexed` returns.
_INDEXED = "kopfpatch.indexed"
# The memo key of the task that sets it (the memo holds it while it waits).
_TELLER = "kopfpatch.indexed.teller"


class LinearToggleSet(aiotoggles.ToggleSet):
    """``ToggleSet`` that wakes its waiters only when its overall state changes."""

    async def make_toggle(
        self, __val: bool = False, *, name: str | None = None
    ) -> aiotoggles.Toggle:
        toggle = aiotoggles.Toggle(__val, name=name, condition=self._condition)
        async with self._condition:
            before = self.is_on()
            self._toggles.add(toggle)
            if self.is_on() != before:
                self._condition.notify_all()
        return toggle

    async def drop_toggle(self, toggle: aiotoggles.Toggle) -> None:
        await self.drop_toggles((toggle,))

    async def drop_toggles(self, toggles: Iterable[aiotoggles.Toggle]) -> None:
        async with self._condition:
            before = self.is_on()
            self._toggles.difference_update(toggles)
            if self.is_on() != before:
                self._condition.notify_all()


def indexed(memo: Any) -> asyncio.Event:
    """Set once Kopf holds every indexed kind's initial listing (the operator's ``memo``)."""
    event = memo.get(_INDEXED)
    if event is None:
        event = memo[_INDEXED] = asyncio.Event()
    assert isinstance(event, asyncio.Event)
    return event


_spawn_missing_watchers = orchestration.spawn_missing_watchers


async def _spawn_and_tell(
    *,
    processor: Any,
    settings: Any,
    indexed_resources: Container[references.Resource],
    watched_resources: Iterable[references.Resource],
    watched_namespaces: Iterable[references.Namespace],
    ensemble: orchestration.Ensemble,
) -> None:
    """Kopf's own, then: once every indexed kind has its watcher, set :func:`indexed` when on."""
    watched_resources = list(watched_resources)
    watched_namespaces = list(watched_namespaces)
    await _spawn_missing_watchers(
        processor=processor,
        settings=settings,
        indexed_resources=indexed_resources,
        watched_resources=watched_resources,
        watched_namespaces=watched_namespaces,
        ensemble=ensemble,
    )
    memo = processor.keywords.get("memobase") if isinstance(processor, functools.partial) else None
    if memo is None:
        return
    event = indexed(memo)
    # Kopf revises resources and namespaces one at a time: a call with either
    # still unknown spawns nothing, and the set is on for want of toggles.
    keys = {
        orchestration.EnsembleKey(resource, namespace if resource.namespaced else None)
        for resource in watched_resources
        if resource in indexed_resources
        for namespace in watched_namespaces
    }
    if event.is_set() or not keys or not keys <= ensemble.watcher_tasks.keys():
        return
    teller = memo.get(_TELLER)
    if teller is not None and not teller.done():
        return  # it waits for the same set to be on

    async def tell() -> None:
        await ensemble.operator_indexed.wait_for(True)
        event.set()

    memo[_TELLER] = asyncio.create_task(tell(), name="kopfpatch: indexes populated")


class SharedMemo(kopf.Memo):
    """The operator's memo, which every object's handlers get as it is, not a copy.

    Kopf gives each object it sees a shallow copy of the operator's memo,
    for handlers that keep per-object state in it; ours only read the
    operator's (the controller, the shared values). At 10,000 Ingresses the
    31,000 copies were 6 MiB of dicts.
    """

    def __copy__(self) -> SharedMemo:
        return self


class Unparked:
    """``operator_indexed`` as one object's processing sees it: drops its toggle, never waits."""

    __slots__ = ("_toggles",)

    def __init__(self, toggles: aiotoggles.ToggleSet) -> None:
        self._toggles = toggles

    async def drop_toggle(self, toggle: aiotoggles.Toggle) -> None:
        await self._toggles.drop_toggle(toggle)

    async def wait_for(self, value: bool) -> None:
        """Returns at once: our event handlers need no populated index (see above)."""


_process_resource_event = processing.process_resource_event


async def process_unparked(**kwargs: Any) -> Any:
    """Kopf's ``process_resource_event``, with the indexes' set seen through
    :class:`Unparked`, and the object's memory forgotten when it holds nothing
    (:func:`_forget_if_blank`)."""
    toggles = kwargs.get("operator_indexed")
    if toggles is not None:
        kwargs["operator_indexed"] = Unparked(toggles)
    result = await _process_resource_event(**kwargs)
    await _forget_if_blank(
        kwargs["memories"], kwargs["registry"], kwargs["resource"], kwargs["raw_event"]
    )
    return result


async def _forget_if_blank(
    memories: inventory.ResourceMemories,
    registry: Any,
    resource: references.Resource,
    raw_event: Any,
) -> None:
    """Forget an object's memory that holds only defaults: Kopf makes a new one on its next event.

    Kopf keeps a ``ResourceMemory`` for every object it has seen, with a
    ``Throttler``, an ``IndexingMemory`` and a ``DaemonsMemory`` (two sets, a
    dict) in it: about 0.8 KiB an object, 24 MiB at 10,000 Ingresses (31,000
    objects). What it remembers there serves handlers this controller never
    registers (daemons, timers, ``on.create``/``update``/``resume``, patches)
    or failures: an index handler to retry, errors to throttle. Between
    events, a memory with none of those is the same as a new one, so it is
    dropped; one with any is kept as Kopf keeps it.
    """
    if raw_event["type"] == "DELETED":
        return  # Kopf forgot it already
    if registry._changing.has_handlers(resource=resource) or registry._spawning.has_handlers(
        resource=resource
    ):
        return
    memory = await memories.recall(raw_event["object"])
    throttler = memory.error_throttler
    daemons = memory.daemons_memory
    if (
        memory.remaining_patch is None
        and memory.indexing_memory.indexing_state is None
        and throttler.source_of_delays is None
        and throttler.last_used_delay is None
        and throttler.active_until is None
        and daemons.live_fresh_body is None
        and not daemons.running_daemons
        and not daemons.forever_stopped
    ):
        await memories.forget(raw_event["object"])


_detect_causes = processing._detect_causes


def _detect_watching_causes(  # noqa: PLR0917  (Kopf's own signature)
    indexers: Any,
    registry: Any,
    settings: Any,
    resource: references.Resource,
    raw_event: Any,
    body: Any,
    patch: Any,
    memory: Any,
    local_logger: Any,
    event_logger: Any,
) -> Any:
    """Kopf's cause detection, without the diff-base when only ``on.event`` handlers need it.

    Kopf builds the object's "essence" (the last-handled one and a deep copy
    of the new body, each cleared of progress) and their diff on every event,
    for ``on.create/update/delete`` and daemons -- handlers this controller
    never has (:mod:`haproxy_ingress.handlers`). That was half of Kopf's CPU
    per EndpointSlice event (about 0.25 of 0.5 ms here); on a busy machine
    every event of one slice waits for the ones before it in the slice's
    worker, each stretched by the waits for a CPU.
    """
    if registry._changing.has_handlers(resource=resource) or registry._spawning.has_handlers(
        resource=resource
    ):
        return _detect_causes(
            indexers=indexers,
            registry=registry,
            settings=settings,
            resource=resource,
            raw_event=raw_event,
            body=body,
            patch=patch,
            memory=memory,
            local_logger=local_logger,
            event_logger=event_logger,
        )
    watching = (
        causes.detect_watching_cause(
            raw_event=raw_event,
            resource=resource,
            indices=indexers.indices,
            logger=local_logger,
            patch=patch,
            body=body,
            memo=memory.memo,
        )
        if registry._watching.has_handlers(resource=resource)
        else None
    )
    return processing._Causes(watching, None, None)


def install() -> None:
    """Make Kopf build its toggle sets as :class:`LinearToggleSet`, set :func:`indexed`,
    and process each listed object without waiting for the others (:class:`Unparked`),
    forgetting its memory if blank, and skip the diff-base of objects that only
    event handlers watch.

    Kopf looks these names up when the operator starts or per event
    (``running`` binds the processor at start), so installing when the
    handlers are imported is early enough. Idempotent.
    """
    aiotoggles.ToggleSet = LinearToggleSet  # type: ignore[misc]
    orchestration.spawn_missing_watchers = _spawn_and_tell
    processing.process_resource_event = process_unparked  # type: ignore[assignment]
    processing._detect_causes = _detect_watching_causes
