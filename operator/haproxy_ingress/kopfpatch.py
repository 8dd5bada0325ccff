"""A linear start for Kopf's index pre-population (Kopf 1.45).

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
"""

from __future__ import annotations

from collections.abc import Iterable

from kopf._cogs.aiokits import aiotoggles


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


def install() -> None:
    """Make Kopf build its toggle sets as :class:`LinearToggleSet` (idempotent)."""
    aiotoggles.ToggleSet = LinearToggleSet  # type: ignore[misc]
