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
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from haproxy_ingress.apply import Applier, ApplyResult
from haproxy_ingress.cluster import ClusterView, ServiceKey
from haproxy_ingress.gcpause import cyclic_gc_paused
from haproxy_ingress.haproxy.limits import Budget
from haproxy_ingress.haproxy.process import ConfigCheckError
from haproxy_ingress.model import (
    AppliedState,
    DesiredState,
    ObjectRef,
    Problem,
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
from haproxy_ingress.translate import refresh_endpoints, translate

logger = logging.getLogger(__name__)


# The endpoint fast path runs on the event loop while it costs less than
# this (CPU seconds, measured each time): small clusters. It walks every
# backend (~2 ms at 1,000 Ingresses, bench/translate.py): bigger ones go to
# a worker thread, as full translations always do.
INLINE_FAST_PATH = 0.002


@dataclass(frozen=True)
class Outcome:
    desired: DesiredState
    plan: Plan
    result: ApplyResult | None  # None: nothing to do


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
            if fast is not None and part is not None:
                # Screening only what the part holds costs nothing per sync.
                served, held = self._quarantine.screen(part, services=fast)
                try:
                    return await self._apply(served, held, fast, confirmed)
                except ConfigCheckError as error:
                    refused = error
                # The fast path's plan reloaded (slots ran out) and was
                # refused: the search needs the whole view, as below.
                full_view = whole()
                served, _ = await asyncio.to_thread(self._quarantine.screen, full_view)
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

        def compute() -> tuple[DesiredState, Plan]:
            step: Plan | None = None
            if endpoints_of is not None and last is not None:
                desired = refresh_endpoints(last, served, endpoints_of)
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
                    changed = [
                        b for b, old in zip(desired.backends, last.backends, strict=True)
                        if b is not old
                    ]  # fmt: skip
                    step = plan_endpoints(applied, desired, changed, budget=budget)
            else:
                desired = self._translate(served)
                # Keep only the Secrets and annotation sets this view has.
                self._certificates.sweep()
                self._settings.sweep()
            if not confirmed:
                desired = hold_unconfirmed(desired, applied)
            if held:
                desired = dataclasses.replace(
                    desired, problems=tuple(sorted({*desired.problems, *held}))
                )
            if step is None:
                with cyclic_gc_paused():  # as translation: see gcpause
                    step = plan(applied, desired, always_reload=self._always_reload, budget=budget)
            if step.target.structure.checks_shed:
                desired = dataclasses.replace(
                    desired,
                    problems=tuple(sorted({*desired.problems, self._checks_shed(budget)})),
                )
            return desired, step

        # Translation and planning grow with the cluster (plan walks every
        # backend even on the fast path): a worker thread runs them, so the
        # event loop keeps taking watch events meanwhile. Nothing else touches
        # their inputs: the view is a snapshot of immutable objects, and the
        # reconciler's lock keeps `last` and `applied` as they are until the
        # plan is applied. A fast path that took less than INLINE_FAST_PATH
        # of CPU last time runs on the loop: the hop to a thread and back
        # costs two wake-ups, and on a busy machine each can wait for a CPU
        # longer than the work itself (the churn benchmark's scale scenario).
        fast = endpoints_of is not None and last is not None

        def measured() -> tuple[DesiredState, Plan]:
            started = time.thread_time()
            try:
                return compute()
            finally:
                if fast:
                    self._fast_cost = time.thread_time() - started

        if fast and self._fast_cost < INLINE_FAST_PATH:
            desired, step = measured()
        else:
            desired, step = await asyncio.to_thread(measured)
        self._last = desired
        self._basis = None
        if step.empty:
            if applied is not None:
                self._basis = (desired, applied)
            return Outcome(desired, step, None)
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
        return Outcome(desired, step, result)

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

        target = await asyncio.to_thread(compute)
        try:
            await self._applier.check(target)
        except ConfigCheckError as error:
            return error.output or str(error)
        return None
