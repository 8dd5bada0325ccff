"""kopfpatch: Kopf's index pre-population wakes its waiters once, not once per object."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from kopf._cogs.aiokits import aiotoggles

from haproxy_ingress import handlers  # noqa: F401  (installs the patch, as the controller does)
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
