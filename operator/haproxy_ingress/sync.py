"""The reconciler: cluster view → translate → plan → apply, one run at a time."""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Collection
from dataclasses import dataclass

from haproxy_ingress.apply import Applier, ApplyResult
from haproxy_ingress.cluster import ClusterView, TranslateOptions
from haproxy_ingress.model import DesiredState
from haproxy_ingress.plan import Plan, plan
from haproxy_ingress.translate import refresh_endpoints, translate

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    desired: DesiredState
    plan: Plan
    result: ApplyResult | None  # None: nothing to do


class Reconciler:
    """Applies cluster views in order; never two at once."""

    def __init__(
        self, options: TranslateOptions, applier: Applier, *, always_reload: bool = False
    ) -> None:
        self._options = options
        self._always_reload = always_reload
        self._applier = applier
        self._lock = asyncio.Lock()
        self._last: DesiredState | None = None

    @property
    def applier(self) -> Applier:
        return self._applier

    async def reconcile(
        self, view: ClusterView, *, endpoints_of: Collection[tuple[str, str]] | None = None
    ) -> Outcome:
        """Bring HAProxy to the view.

        ``endpoints_of``: only these Services' EndpointSlices changed since the
        last reconcile, so only their servers are re-derived (the fast path).
        """
        async with self._lock:
            if endpoints_of is not None and self._last is not None:
                desired = refresh_endpoints(self._last, view, endpoints_of)
            else:
                desired = translate(view, self._options, now=datetime.datetime.now(datetime.UTC))
            step = plan(self._applier.applied, desired, always_reload=self._always_reload)
            self._last = desired
            if step.empty:
                return Outcome(desired, step, None)
            result = await self._applier.apply(step)
            logger.info(
                "applied: reload=%s operations=%d seconds=%.3f reasons=%s",
                result.reloaded,
                result.operations,
                result.seconds,
                "; ".join(result.reload_reasons) or "-",
            )
            return Outcome(desired, step, result)
