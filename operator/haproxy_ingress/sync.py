"""The reconciler: cluster view → translate → plan → apply, one run at a time.

When ``haproxy -c`` refuses a candidate, the objects responsible are found
and quarantined (:mod:`haproxy_ingress.quarantine`), and everything else is
applied: one tenant's mistake never holds back another tenant's change.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import math
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from haproxy_ingress.apply import Applier, ApplyResult
from haproxy_ingress.cluster import ClusterView, ServiceKey
from haproxy_ingress.gcpause import cyclic_gc_paused
from haproxy_ingress.haproxy.limits import Budget
from haproxy_ingress.haproxy.process import ConfigCheckError
from haproxy_ingress.model import (
    AppliedState,
    Backend,
    BackendLayout,
    DesiredState,
    ObjectRef,
    Problem,
    Structure,
    TranslateOptions,
)
from haproxy_ingress.plan import Plan, hold_unconfirmed, plan, plan_endpoints
from haproxy_ingress.quarantine import (
    MAX_CHECKS,
    NotASuspect,
    ObjectKey,
    Quarantine,
    find_culprits,
    first_alert,
    leave_out,
)
from haproxy_ingress.settings import SettingsMemo
from haproxy_ingress.tls import CertificateCache
from haproxy_ingress.translate import BackendIndex, ObjectMemo, refresh_services, translate

logger = logging.getLogger(__name__)


# The endpoint fast path runs on the event loop while it costs less than
# this (CPU seconds, measured each time). It grows with the Services it
# refreshes, not with the cluster (about 0.6 ms for one at 10,000 Ingresses,
# bench/endpoint_cpu.py; it walked every backend before, 20 ms there): the
# first after a full translation, and one after a costly burst of many
# Services, go to a worker thread, as full translations always do.
INLINE_FAST_PATH = 0.002


@dataclass(frozen=True)
class _Computed:
    """What a reconcile computed (in a worker thread or on the loop) before applying it."""

    desired: DesiredState
    step: Plan
    refreshed: tuple[Backend, ...] | None  # see Outcome.refreshed
    index: BackendIndex | None  # where desired's backends sit (see Reconciler._index)


def with_problems(
    desired: DesiredState, extra: Sequence[Problem], index: BackendIndex | None
) -> DesiredState:
    """``desired`` with ``extra`` among its problems (sorted, unique, as translate leaves them).

    On every endpoint sync while something is quarantined, or while checks
    are shed (at 10,000 Ingresses with 5 pods each, always): when they are
    there already, ``desired`` itself, instead of every problem sorted again
    (``index`` knows an unchanged problems tuple as a set).
    """
    if index is not None:
        known = index.problems(desired.problems)
        if known.ordered and known.set.issuperset(extra):
            return desired
    return dataclasses.replace(desired, problems=tuple(sorted({*desired.problems, *extra})))


@dataclass(frozen=True)
class Outcome:
    desired: DesiredState
    plan: Plan
    result: ApplyResult | None  # None: nothing to do
    # The backends an endpoint-only sync re-derived: every other backend is
    # the object the sync before had. None: any backend may be new (a full sync).
    refreshed: tuple[Backend, ...] | None = None


class Reconciler:
    """Applies cluster views in order; never two at once."""

    def __init__(
        self,
        options: TranslateOptions,
        applier: Applier,
        *,
        always_reload: bool = False,
        max_checks: int = MAX_CHECKS,
    ) -> None:
        self._options = options
        self._always_reload = always_reload
        self._applier = applier
        self._max_checks = max_checks
        self._lock = asyncio.Lock()
        self._last: DesiredState | None = None
        # (`_last`, the applied state) when HAProxy runs exactly the plan of
        # `_last`: the endpoint fast path may then plan only the backends it
        # refreshed (plan.plan_endpoints). Compared by identity: comparing
        # two 10k-backend states would cost what the shortcut saves.
        self._basis: tuple[DesiredState, AppliedState] | None = None
        self._quarantine = Quarantine()
        self._certificates = CertificateCache()
        self._settings = SettingsMemo()
        self._objects = ObjectMemo()
        # Where each Service's backends sit in `_last` (and in every state
        # refreshed from the same full translation): built in the thread
        # that translated, so that the fast path walks no backend list.
        # Replaced only together with `_last`.
        self._index: BackendIndex | None = None
        # The applied structure's backend layouts by name, for plan_endpoints
        # (the structure stays the same object until a reload).
        self._layouts: tuple[Structure, Mapping[str, BackendLayout]] | None = None
        # CPU seconds of the last endpoint fast path (none yet: in a thread).
        self._fast_cost = math.inf

    @property
    def applier(self) -> Applier:
        return self._applier

    @property
    def quarantine(self) -> Quarantine:
        return self._quarantine

    async def reconcile(
        self,
        view: ClusterView | Callable[[], ClusterView],
        *,
        endpoints_of: Collection[ServiceKey] | None = None,
        part: ClusterView | None = None,
        confirmed: bool = True,
    ) -> Outcome:
        """Bring HAProxy to the view, less the objects HAProxy refuses.

        ``endpoints_of``: only these Services' EndpointSlices changed since the
        last reconcile, so only their servers are re-derived (the fast path).
        ``part``: with ``endpoints_of``, a view of only those Services and
        their slices (:meth:`haproxy_ingress.cluster.IndexedView.of_services`),
        which is all the fast path reads; ``view`` (or what calling it
        returns) is then taken only if a full translation turns out to be due.
        ``confirmed=False``: the view may be stale (a watch gap not yet
        verified), so no server gains traffic (:func:`plan.hold_unconfirmed`).

        Raises ConfigCheckError only when the configuration is refused even
        without every object changed since HAProxy last accepted one (the
        cause is the controller's ConfigMap or the controller itself).
        """

        def whole() -> ClusterView:
            return view() if callable(view) else view

        async with self._lock:
            fast = endpoints_of if self._last is not None else None
            full_view: ClusterView | None = None
            if fast is not None and part is not None:
                # Screening only what the part holds costs nothing per sync.
                served, held = self._quarantine.screen(part, services=fast)
            else:
                full_view = whole()
                # Screening walks the whole view while anything is quarantined:
                # off the event loop, like translation. Otherwise it is free, and
                # a hop to a worker thread and back is two wake-ups, each of which
                # a busy machine can delay by a time slice.
                if self._quarantine.entries:
                    served, held = await asyncio.to_thread(self._quarantine.screen, full_view)
                else:
                    served, held = self._quarantine.screen(full_view)
            try:
                return await self._apply(served, held, fast, confirmed)
            except ConfigCheckError as error:
                refused = error
            if full_view is None:
                # The fast path's plan reloaded (slots ran out) and was
                # refused: the search needs the whole view.
                full_view = whole()
                served, _ = await asyncio.to_thread(self._quarantine.screen, full_view)
            await self._isolate(served, refused)
            # The culprits (and any suspect left unresolved) are out; whatever
            # the fast path would have done, a full translation is due now.
            served, held = await asyncio.to_thread(
                self._quarantine.screen, full_view, retry_unproven=False
            )
            return await self._apply(served, held, None, confirmed)

    async def _apply(
        self,
        served: ClusterView,
        held: tuple[Problem, ...],
        endpoints_of: Collection[ServiceKey] | None,
        confirmed: bool = True,
    ) -> Outcome:
        last, applied, basis = self._last, self._applier.applied, self._basis
        budget = self._applier.budget()

        def compute() -> _Computed:
            step: Plan | None = None
            refreshed: tuple[Backend, ...] | None = None
            if endpoints_of is not None and last is not None:
                index = self._index
                fresh = refresh_services(last, served, endpoints_of, index)
                desired, refreshed = fresh.desired, fresh.backends
                if (
                    confirmed
                    and not self._always_reload
                    and applied is not None
                    and basis is not None
                    and basis[0] is last
                    and basis[1] is applied
                    # Passthrough pods are planned with their pool (few hosts).
                    and desired.passthrough == last.passthrough
                ):
                    # HAProxy runs exactly the plan of `last`: only the
                    # refreshed backends (new objects) need planning.
                    step = plan_endpoints(
                        applied,
                        desired,
                        refreshed,
                        budget=budget,
                        layouts=self._layouts_of(applied.structure),
                    )
            else:
                desired = self._translate(served)
                index = BackendIndex(desired)
                # Keep only the Secrets and annotation sets this view has.
                self._certificates.sweep()
                self._settings.sweep()
                self._objects.sweep()
            if not confirmed:
                desired = hold_unconfirmed(desired, applied)
                refreshed = None  # every backend held anew
            if held:
                desired = with_problems(desired, held, index)
            if step is None:
                with cyclic_gc_paused():  # as translation: see gcpause
                    step = plan(applied, desired, always_reload=self._always_reload, budget=budget)
                self._layouts_of(step.target.structure)  # here, in the thread, once per reload
            if step.target.structure.checks_shed:
                desired = with_problems(desired, (self._checks_shed(budget),), index)
            return _Computed(desired, step, refreshed, index)

        # Translation and planning grow with the cluster (plan walks every
        # backend): a worker thread runs them, so the event loop keeps taking
        # watch events meanwhile. Nothing else touches their inputs: the view
        # is a snapshot of immutable objects, and the reconciler's lock keeps
        # `last` and `applied` as they are until the plan is applied. A fast
        # path that took less than INLINE_FAST_PATH of CPU last time runs on
        # the loop: the hop to a thread and back costs two wake-ups, and on a
        # busy machine each can wait for a CPU longer than the work itself
        # (the churn benchmark's scale scenario).
        fast = endpoints_of is not None and last is not None

        def measured() -> _Computed:
            started = time.thread_time()
            try:
                return compute()
            finally:
                if fast:
                    self._fast_cost = time.thread_time() - started

        if fast and self._fast_cost < INLINE_FAST_PATH:
            computed = measured()
        elif fast:
            computed = await asyncio.to_thread(measured)
        else:
            # A full translation and plan are as big as the cluster: not
            # while the background writer renders the last target's files.
            async with self._applier.writer_paused():
                computed = await asyncio.to_thread(measured)
        desired, step, refreshed = computed.desired, computed.step, computed.refreshed
        # The index goes with the state it was built for (and those refreshed from it).
        self._last, self._index = desired, computed.index
        self._basis = None
        if step.empty:
            if applied is not None:
                self._basis = (desired, applied)
            return Outcome(desired, step, None, refreshed)
        result = await self._applier.apply(step)
        if self._applier.applied is step.target:
            self._basis = (desired, step.target)
        logger.info(
            "applied: reload=%s operations=%d seconds=%.3f reasons=%s",
            result.reloaded,
            result.operations,
            result.seconds,
            "; ".join(result.reload_reasons) or "-",
        )
        if result.reloaded and endpoints_of is None:
            # `haproxy -c` passed on this view: the baseline of later searches.
            # (Runtime-only changes were never checked, so they stay suspects.)
            self._quarantine.accepted(served)
        return Outcome(desired, step, result, refreshed)

    def _layouts_of(self, structure: Structure) -> Mapping[str, BackendLayout]:
        """``structure``'s backend layouts by name (kept while it is the same object)."""
        if self._layouts is None or self._layouts[0] is not structure:
            self._layouts = (structure, {layout.name: layout for layout in structure.backends})
        return self._layouts[1]

    def _checks_shed(self, budget: Budget | None) -> Problem:
        limit = f" ({budget.limit})" if budget is not None else ""
        return Problem(
            ObjectRef("ConfigMap", self._options.configmap_namespace, self._options.configmap_name),
            "data.health-check",
            f"active health checks are off for every backend: the health-checked server slots "
            f"would not fit HAProxy's file-descriptor limit{limit}. Pods leave with their "
            "EndpointSlices and retries redispatch; lower server-slots or raise the limit "
            "(LimitNOFILE, ulimit -n) to get them back",
            "HealthChecksShed",
        )

    def _translate(self, view: ClusterView) -> DesiredState:
        with cyclic_gc_paused():
            return translate(
                view,
                self._options,
                now=datetime.datetime.now(datetime.UTC),
                certificate_cache=self._certificates,
                settings_memo=self._settings,
                object_memo=self._objects,
            )

    async def _isolate(self, served: ClusterView, refused: ConfigCheckError) -> None:
        """Quarantine the objects that make HAProxy refuse ``served``; else re-raise."""
        candidates = self._quarantine.suspects(served)
        if not candidates:
            raise refused
        started = time.monotonic()
        logger.warning(
            "haproxy -c refused the configuration (%s); searching %d objects changed since "
            "the last accepted one",
            first_alert(refused.output),
            len(candidates),
        )

        async def check(included: Sequence[ObjectKey]) -> str | None:
            kept = set(included)
            return await self._check(leave_out(served, [k for k in candidates if k not in kept]))

        try:
            search = await find_culprits(candidates, check, max_checks=self._max_checks)
        except NotASuspect as error:
            logger.error(
                "haproxy -c refuses the configuration even without the %d changed objects "
                "(checks=%d): the cause is not a user's object",
                len(candidates),
                error.checks,
            )
            raise refused from None
        for key, refusal in search.culprits:
            logger.warning("quarantined %s: %s", key.ref, first_alert(refusal))
        if search.unresolved:
            logger.error(
                "gave up after %d haproxy -c runs; %d objects left out unproven until the "
                "next sync: %s",
                search.checks,
                len(search.unresolved),
                ", ".join(str(key.ref) for key in search.unresolved[:10]),
            )
        logger.info(
            "quarantine search: suspects=%d culprits=%d unresolved=%d checks=%d seconds=%.3f",
            len(candidates),
            len(search.culprits),
            len(search.unresolved),
            search.checks,
            time.monotonic() - started,
        )
        self._quarantine.add(served, search)

    async def _check(self, view: ClusterView) -> str | None:
        """None if HAProxy accepts what ``view`` would be applied as, else its refusal."""
        applied, budget = self._applier.applied, self._applier.budget()

        def compute() -> AppliedState:
            desired = self._translate(view)
            with cyclic_gc_paused():
                step = plan(applied, desired, always_reload=self._always_reload, budget=budget)
            return step.target

        async with self._applier.writer_paused():  # as a full sync's (see _apply)
            target = await asyncio.to_thread(compute)
        try:
            await self._applier.check(target)
        except ConfigCheckError as error:
            return error.output or str(error)
        return None
