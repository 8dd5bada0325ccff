"""One replica's runtime: HAProxy, the debounced sync loop, feedback and metrics.

Created by the Kopf startup handler with a function that snapshots the
indexes into a :class:`ClusterView`. Bursts of watch events set one
``asyncio.Event``; the loop waits for quiet (the debounce window), takes one
snapshot and reconciles it. Objects deleted while a watch was down get no
DELETED event: a detected watch gap (:mod:`haproxy_ingress.gaps`) verifies
the view at once, and a periodic full resync guards against the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import sys
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, Protocol

from kubernetes_asyncio import client, config

from haproxy_ingress import ingress_class, memory, publish, serving, verifier
from haproxy_ingress.apply import Applier
from haproxy_ingress.cluster import (
    ClusterView,
    KubeObject,
    ServiceKey,
    trim,
    uids,
    without,
)
from haproxy_ingress.config import ControllerConfig
from haproxy_ingress.configmap_watch import ConfigMapWatch
from haproxy_ingress.feedback import Due, Feedback, FullSync
from haproxy_ingress.gaps import WatchGaps
from haproxy_ingress.haproxy.config import default_certificate_path
from haproxy_ingress.haproxy.files import atomic_write
from haproxy_ingress.haproxy.process import ConfigCheckError, HAProxyError, HAProxyProcess
from haproxy_ingress.haproxy.runtime import RuntimeClient
from haproxy_ingress.health import Health, Status, summarize
from haproxy_ingress.health import serve as serve_health
from haproxy_ingress.leader import StatusLeader
from haproxy_ingress.metrics import Metrics, figures, problem_counts
from haproxy_ingress.model import Backend, ObjectRef, Problem
from haproxy_ingress.status import (
    API_ERRORS,
    EventReporter,
    IngressStatusWriter,
)
from haproxy_ingress.sync import Outcome, Reconciler
from haproxy_ingress.tls import generate_default_certificate

logger = logging.getLogger(__name__)

# The trailing window of endpoint-only syncs (see _sync_loop), at most --debounce.
ENDPOINT_WINDOW = 0.01
# glibc malloc arenas: the event loop's, and one for the worker threads that
# translate and render (the default, 8 per core, keeps freed pages in each).
MALLOC_ARENAS = 2
# How long a worker thread may hold the GIL while the event loop waits for it
# (CPython's default: 5 ms). Full translations and the background writer of
# files (about 2 s of Python at 10,000 Ingresses) run in threads; every time
# the loop blocks on I/O, the thread takes the GIL, and the loop gets it back
# only when the interval runs out. An endpoint event needs dozens of such
# turns (Kopf, the sync, the runtime API). At 10k with such threads busy, the
# p99 from an EndpointSlice PATCH to HAProxy went 967 -> 342 ms (p50 the same,
# bench/controller_rss.py --latency). Switching costs the thread a little.
GIL_SWITCH_INTERVAL = 0.0005
# After a full sync, free heap goes back to the kernel this much later: past
# the sync's own leftovers and Kopf's per-object workers, which exit once idle
# (handlers.WORKER_IDLE_TIMEOUT) after the start's events are handled.
RELEASE_DELAY = 10.0

# The whole view, given the controller's ConfigMap.
ViewSource = Callable[[KubeObject | None], ClusterView]
# A view of only some Services and their EndpointSlices (cluster.IndexedView.of_services).
ServiceViewSource = Callable[[Collection[ServiceKey]], ClusterView]


class Reporter(Protocol):
    async def report(self, problems: Iterable[Problem]) -> int: ...


class PendingChanges:
    """What changed since the last sync: everything, or only some Services' EndpointSlices.

    Only EndpointSlice events of known Services allow the fast path (their
    servers re-derived from the last translation); any other change, or a
    failure, makes the next sync a full translation, and endpoint changes
    noted meanwhile are part of it.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._full = True  # the first sync translates everything
        self._services: set[tuple[str, str]] = set()
        self._since: float | None = None

    def everything(self) -> None:
        self._noted()
        self._full = True
        self._services.clear()

    def endpoints(self, namespace: str, service: str) -> None:
        self._noted()
        if not self._full:
            self._services.add((namespace, service))

    def _noted(self) -> None:
        if self._since is None:
            self._since = self._clock()

    @property
    def since(self) -> float | None:
        """When the oldest change not yet taken was noted (the clock's time), if any."""
        return self._since

    @property
    def full(self) -> bool:
        """Whether the next sync translates everything."""
        return self._full

    def take(self) -> frozenset[tuple[str, str]] | None:
        """What the next sync covers (None: everything), and start afresh."""
        services = None if self._full else frozenset(self._services)
        self._full = False
        self._services.clear()
        self._since = None
        return services


def endpoint_wait(window: float, now: float, last_sync: float, since: float | None) -> float:
    """Seconds endpoint changes still wait: the window runs from the end of the
    last sync or from the oldest change noted (``since``), whichever came first."""
    opened = last_sync if since is None else min(last_sync, since)
    return window - (now - opened)


class Controller:
    def __init__(
        self,
        config: ControllerConfig,
        view: ViewSource,
        *,
        service_view: ServiceViewSource | None = None,
        events: Reporter | None = None,
        indexed: asyncio.Event | None = None,
        on_full_view: Callable[[ClusterView], None] | None = None,
    ) -> None:
        """``service_view``: some Services and their EndpointSlices, without the rest of the
        view: what an endpoint-only sync reads (without it, it reads the whole view).

        ``events``: where problems are reported (default: Kubernetes Events, once connected).

        ``indexed``: set once the view holds every watched kind's initial
        listing (:func:`haproxy_ingress.kopfpatch.indexed`); the first sync
        waits for it.

        ``on_full_view``: called with the view of each full sync, once applied.
        """
        self.config = config
        self._view = view
        self._service_view = service_view
        self.metrics = Metrics()
        self._changed = asyncio.Event()
        self._indexed = indexed if indexed is not None else asyncio.Event()
        self._full_synced = asyncio.Event()  # wakes _release_memory
        self.pending = PendingChanges()
        self._tasks: list[asyncio.Task[None]] = []
        self._configmap: KubeObject | None = None
        # The other ConfigMaps of its namespace, by name: header sets.
        self._header_configmaps: dict[str, KubeObject] = {}
        # Objects still in Kopf's indexes that the API server no longer has:
        # deleted during a watch gap (a 410 re-list sends no DELETED event).
        self._verified = verifier.Verification()
        self._lead: StatusLeader | None = None
        self._api: client.ApiClient | None = None
        self._events: Reporter | None = events
        self._notices: EventReporter | None = None
        self._publish: publish.ServiceAddress | None = None
        self._status: IngressStatusWriter | None = None
        self._metrics_runner: Any = None
        self._health_runner: Any = None
        self._unusable: dict[str, str] = {}  # backend → why it has no usable server
        self._judged: dict[str, Backend] = {}  # backend → the object _unusable judged
        # The last problems tuple recorded, and its counts by kind.
        self._counted: tuple[tuple[Problem, ...], Mapping[str, int]] | None = None
        self._synced = False  # a first sync ran: a LIST seen later is a re-list
        self.gaps = WatchGaps(
            self.verify_indexes, self._gap_verified, behind=self._behind, on_confirmed=self.trigger
        )
        self.metrics.unconfirmed.set_function(lambda: 0.0 if self.gaps.confirmed else 1.0)
        self.health = Health()
        paths = config.paths
        self.process = HAProxyProcess(paths, binary=config.haproxy_binary)
        self.client = RuntimeClient(paths.runtime_socket)
        self.applier = Applier(
            self.process, self.client, config.render_options(), binary=config.haproxy_binary
        )
        self.reconciler = Reconciler(
            config.translate_options(), self.applier, always_reload=config.always_reload
        )
        self._reported: tuple[Problem, ...] = ()  # the problems of the last good sync
        self.feedback = Feedback(self._write_feedback)  # Events and status, off the sync loop
        self._on_full_view = on_full_view

    async def start(self) -> None:
        memory.limit_arenas(MALLOC_ARENAS)
        sys.setswitchinterval(GIL_SWITCH_INTERVAL)
        paths = self.config.paths
        paths.ensure()
        default_cert = default_certificate_path(paths)
        if not default_cert.exists():
            now = datetime.datetime.now(datetime.UTC)
            atomic_write(default_cert, generate_default_certificate(now).encode(), mode=0o600)
        await self._connect_api()
        await self.applier.adopt()
        if self.config.metrics_bind:
            self._metrics_runner = await self.metrics.serve(self.config.metrics_bind)
        if self.config.health_bind:
            self._health_runner = await serve_health(self.config.health_bind, self.status)
        self._spawn(self._sync_loop(), "sync")
        self._spawn(self._resync_timer(), "resync")
        self._spawn(self.gaps.run(), "watch-gaps")
        self._spawn(self._watch_haproxy(), "haproxy-watchdog")
        self._spawn(self._release_memory(), "release-memory")
        assert self._api is not None
        configmap = ConfigMapWatch(
            self._api,
            self.config.namespace,
            self.config.configmap,
            self._set_configmap,
            on_others=self._set_header_configmaps,
            on_gap=self.gaps.suspect,
        )
        self._spawn(configmap.run(), "configmap")
        if self.config.publish_address or self.config.publish_service:
            self._lead = StatusLeader(
                self._api,
                self.config.lease_name,
                self.config.namespace,
                self.config.pod_name,
                self.trigger,
            )
            self._spawn(self._lead.run(), "leader-election")
        logger.info("controller started: state_dir=%s", paths.base)

    def status(self) -> Status:
        return self.health.status(self.process.running)

    def snapshot(self) -> ClusterView:
        view = self._without_deleted(self._view(self._configmap))
        return dataclasses.replace(
            view, header_configmaps=tuple(v for _, v in sorted(self._header_configmaps.items()))
        )

    def snapshot_of(self, services: Collection[ServiceKey]) -> ClusterView | None:
        """Only these Services and their EndpointSlices, in time proportional to them:
        what the endpoint fast path reads (None: no such view, take the whole one)."""
        if self._service_view is None:
            return None
        return self._without_deleted(self._service_view(services))

    def _without_deleted(self, view: ClusterView) -> ClusterView:
        """``view`` without what the last verification found deleted (see verifier.py)."""
        verified, now = self._verified, time.monotonic()
        if not verified.awaiting(now):  # the usual case: no pass over the view
            return without(view, verified.gone)
        return without(view, verified.removed(uids(view), now))

    def _behind(self) -> bool:
        """Whether an object created during a watch gap is still missing from the indexes."""
        verified, now = self._verified, time.monotonic()
        return verified.awaiting(now) and verified.behind(uids(self._view(self._configmap)), now)

    def trigger(self) -> None:
        """Anything changed: the next sync translates the whole view."""
        self.pending.everything()
        self._changed.set()

    def trigger_endpoints(self, namespace: str, service: str) -> None:
        """Only a Service's EndpointSlices changed: the next sync can take the fast path."""
        self.pending.endpoints(namespace, service)
        self._changed.set()

    def _gap_verified(self) -> None:
        self.metrics.gap_verifications.inc()
        self.trigger()  # a full sync: what an unconfirmed view held back is applied

    def relisted(self, kind: str) -> None:
        """Kopf listed objects of ``kind`` again (a watch could not resume): verify the view."""
        if self._synced:
            self.gaps.relisted(kind)
        else:
            self.gaps.listed(kind)  # the initial listing (see WatchGaps.listed)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.feedback.close()
        # The files of the last runtime-only apply, so a later controller
        # adopts what HAProxy ran last (a failure only costs it one reload).
        with contextlib.suppress(OSError):
            await self.applier.flush()
        for runner in (self._metrics_runner, self._health_runner):
            if runner is not None:
                await runner.cleanup()
        await self.client.close()
        await self.process.stop()
        if self._api is not None:
            await self._api.close()

    # --- the loop -----------------------------------------------------------------

    async def _wait_indexed(self) -> None:
        """Until Kopf holds every watched kind's initial listing, however long that takes.

        Neither a timeout nor another trigger (the ConfigMap's own watch, the
        leader election) may start the first sync earlier: it would apply a
        half-listed cluster (Ingresses without their Services: false
        BackendNotFound warnings, a reload once the rest arrives). A cluster
        with nothing of ours is listed quickly, and that counts too.
        """
        try:
            await asyncio.wait_for(self._indexed.wait(), self.config.startup_timeout)
        except TimeoutError:
            logger.info("waiting for the initial listing of every watched kind before syncing")
            await self._indexed.wait()
        self.health.mark_indexed()

    async def _sync_loop(self) -> None:
        await self._wait_indexed()
        # The start's burst of events (every object, as Kopf releases them) is
        # batched by one full window.
        last_sync = time.monotonic()
        while True:
            # Endpoint changes have a leading edge: after a quiet spell of one
            # window, one is applied at once (a lone endpoint change waits for
            # nothing); those right after a sync wait out the rest of the
            # window and go together. Those noted during a sync wait at most
            # a window from when the first of them came: under a burst of
            # slow syncs (a busy machine), a window after each sync on top of
            # it would delay every change by the sync it waited for plus a
            # whole window. Anything else waits a whole
            # window: Ingress and Service changes come in bursts (kubectl
            # apply, a re-list after a watch gap), and a view taken at the
            # first event of a burst is a half-written one.
            if self.pending.full:
                rest = self.config.debounce
            else:
                # Endpoint events need no view of a whole burst: a short
                # window batches what arrives during a sync, no more.
                window = min(self.config.debounce, ENDPOINT_WINDOW)
                rest = endpoint_wait(window, time.monotonic(), last_sync, self.pending.since)
            if rest > 0:
                await asyncio.sleep(rest)
            self._changed.clear()
            try:
                await self.sync_once()
            except Exception:
                # Whatever went wrong (a runtime command refused after a reload,
                # the API gone mid-report), the loop must live: retry in full.
                logger.exception("sync failed unexpectedly; retrying")
                self.metrics.syncs.labels("error").inc()
                self.trigger()
                await asyncio.sleep(1.0)
            last_sync = time.monotonic()
            await self._changed.wait()

    async def sync_once(self) -> Outcome | None:
        started = time.monotonic()
        try:
            endpoints_of = self.pending.take()
            full = endpoints_of is None
            indexed = self.health.indexed  # read before the snapshot it vouches for
            confirmed = self.gaps.confirmed  # likewise
            # An endpoint-only sync reads only the changed Services' objects;
            # the whole view is taken only if it turns out to need one.
            part = self.snapshot_of(endpoints_of) if endpoints_of is not None else None
            view: ClusterView | None = self.snapshot() if part is None else None
            outcome = await self.reconciler.reconcile(
                view if view is not None else self.snapshot,
                endpoints_of=endpoints_of,
                part=part,
                confirmed=confirmed,
            )
        except ConfigCheckError as error:
            self.pending.everything()  # whatever comes next starts from scratch
            self.metrics.syncs.labels("config-rejected").inc()
            # The reconciler already left out every user's object that could
            # be the cause: this one is the controller's (its ConfigMap, flags).
            logger.error(
                "rendered configuration rejected by haproxy -c, even without the users' "
                "objects changed since the last accepted one; the last good one keeps "
                "serving: %s",
                error.output,
            )
            rejected = Problem(
                ObjectRef("ConfigMap", self.config.namespace, self.config.configmap),
                "",
                f"HAProxy rejected the rendered configuration: {error.output[:500]}",
                "ConfigRejected",
            )
            self.feedback.hand((*self._reported, rejected), None)
            return None
        except (HAProxyError, OSError) as error:
            self.metrics.syncs.labels("error").inc()
            # One line, not a traceback: the cause is HAProxy's or the host's.
            line = summarize(error)
            level = logging.ERROR if self.health.failed(line) else logging.DEBUG
            logger.log(level, "HAProxy does not run the wanted configuration: %s", line)
            self.trigger()  # try again, in full, after the next debounce window
            await asyncio.sleep(self.health.backoff())
            return None
        self._synced = True
        self.metrics.sync_seconds.observe(time.monotonic() - started)
        self.metrics.syncs.labels("ok").inc()
        self.health.applied(full=full and indexed)
        self._record(outcome)
        if full and view is not None:
            self._full_synced.set()  # it freed what it built: give that back soon
            if self._on_full_view is not None:
                self._on_full_view(view)
        self._reported = outcome.desired.problems
        # Endpoint-only syncs change no route: status and notices stay as they are.
        self.feedback.hand(
            outcome.desired.problems,
            FullSync(view, outcome.desired.routes) if full and view is not None else None,
        )
        return outcome

    def _record(self, outcome: Outcome) -> None:
        problems = outcome.desired.problems
        if self._counted is None or self._counted[0] is not problems:
            # Counted once per problems tuple: an endpoint sync mostly keeps it.
            self._counted = (problems, problem_counts(problems))
        quarantined = len(self.reconciler.quarantine.entries)
        self.metrics.record(figures(outcome, quarantined, self._counted[1]))
        self.metrics.applied(outcome)
        self._log_unusable(outcome)

    def _log_unusable(self, outcome: Outcome) -> None:
        """Say why a backend answers 503, once per change (the 503 itself is silent).

        Only backends that are new objects since the last sync are judged
        again: an endpoint-only sync keeps every other backend as it was, and
        judging 10,000 of them took 12 ms of the event loop per sync. Such a
        sync says which it re-derived (``Outcome.refreshed``), so not even
        finding them walks the others (1.4 ms at 10,000).
        """
        judged = self._judged
        if outcome.refreshed is not None and judged:
            # The same backends as before (names and order), some re-derived.
            observed: tuple[Backend, ...] = (
                *outcome.refreshed,
                *serving.passthrough_backends(outcome.desired),
            )
            fresh = [backend for backend in observed if judged.get(backend.name) is not backend]
            names = {backend.name for backend in fresh}
            before = {k: v for k, v in self._unusable.items() if k in names}
            after = serving.unusable(fresh)
            for one in fresh:
                judged[one.name] = one
                self._unusable.pop(one.name, None)
            self._unusable.update(after)
        else:
            observed = serving.backends(outcome.desired)
            fresh = [backend for backend in observed if judged.get(backend.name) is not backend]
            if not fresh and len(observed) == len(judged):
                return
            now = {backend.name: backend for backend in observed}
            before = {k: v for k, v in self._unusable.items() if k in now}
            after = {k: v for k, v in before.items() if now[k] is judged.get(k)}
            after.update(serving.unusable(fresh))
            self._judged, self._unusable = now, after
        for backend, reason in serving.changes(before, after):
            if reason is None:
                logger.info("backend %s has a ready server again", backend)
            else:
                logger.warning("backend %s has no usable server: %s", backend, reason)

    async def _write_feedback(self, due: Due) -> bool:
        """Events for the problems, and after a full sync notices and status (see feedback.py)."""
        if self._events is not None:
            await self._events.report(due.problems)
        if due.full is None:
            return True
        view = due.full.view
        if self._notices is not None:
            left = ingress_class.all_left_out(
                view.ingresses, view.ingress_classes, self.config.translate_options()
            )
            await self._notices.report(ingress_class.notices(left))
        if not self._leader or self._status is None:
            return True
        resolved = True
        if self._publish is not None:
            # The Service's own events are full syncs: resolve only then
            # (or after the next sync, when the API server did not answer).
            published = await self._publish.resolve(view.endpoint_slices)
            resolved = published is not None
            if published is not None:
                self._status.publish(published)
        served = {route.source for route in due.full.routes}  # uid is not compared
        current: dict[ObjectRef, Mapping[str, Any]] = {}
        for ingress in view.ingresses:
            meta = ingress.get("metadata") or {}
            ref = ObjectRef("Ingress", meta.get("namespace", ""), meta.get("name", ""))
            current[ref] = (ingress.get("status") or {}).get("loadBalancer") or {}
        return (await self._status.update(served, current)).complete and resolved

    async def _watch_haproxy(self) -> None:
        """Restart HAProxy within seconds if its master or worker dies."""
        while True:
            await asyncio.sleep(1.0)
            if not await self.applier.healthy():
                self.metrics.haproxy_restarts.inc()
                self.trigger()

    async def _release_memory(self) -> None:
        """Some seconds after each full sync, hand free heap back to the kernel (see memory.py)."""
        while True:
            await self._full_synced.wait()
            await asyncio.sleep(RELEASE_DELAY)
            self._full_synced.clear()  # full syncs meanwhile are covered by this release
            await asyncio.to_thread(memory.release)

    async def _resync_timer(self) -> None:
        while True:
            await asyncio.sleep(self.config.resync_interval)
            try:
                await self.verify_indexes()
            except API_ERRORS as error:
                logger.warning("resync could not list the cluster: %r", error)
            self.trigger()

    async def verify_indexes(self) -> int:
        """LIST every watched kind; forget indexed objects the API server no longer has.

        Returns how many indexed objects turned out to be deleted.
        """
        assert self._api is not None
        indexed = verifier.identities(self._view(self._configmap))
        self._verified = await verifier.verify(self._api, indexed)
        return len(self._verified.gone)

    # --- the Kubernetes API, beyond Kopf's watches ------------------------------------

    async def _connect_api(self) -> None:
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
            configuration = client.Configuration.get_default_copy()
        except config.ConfigException:
            configuration = client.Configuration()
            await config.load_kube_config(client_configuration=configuration)
        self._api = client.ApiClient(configuration)
        if self._events is None:
            self._events = EventReporter(self._api, host=self.config.pod_name)
        # Apart from _events: an Ingress nobody serves is not one of our problems.
        self._notices = EventReporter(self._api, host=self.config.pod_name)
        self._status = IngressStatusWriter(self._api, self.config.publish_address)
        if self.config.publish_service:
            namespace, name = publish.parse(self.config.publish_service, self.config.namespace)
            self._publish = publish.ServiceAddress(self._api, namespace, name)

    def _set_header_configmaps(self, objects: dict[str, KubeObject]) -> None:
        trimmed = {name: trim(obj) for name, obj in objects.items()}
        if trimmed != self._header_configmaps:
            self._header_configmaps = trimmed
            self.trigger()

    def _set_configmap(self, obj: KubeObject | None) -> None:
        trimmed = trim(obj) if obj is not None else None
        if trimmed != self._configmap:
            self._configmap = trimmed
            self.trigger()

    @property
    def _leader(self) -> bool:
        return self._lead is not None and self._lead.leading

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=f"haproxy-ingress:{name}")
        task.add_done_callback(self._crashed)
        self._tasks.append(task)

    @staticmethod
    def _crashed(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("task %s crashed", task.get_name(), exc_info=task.exception())
