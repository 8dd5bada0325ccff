"""Watch gaps: an unconfirmed view gives no server new traffic; gaps coalesce into one LIST."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Callable

import pytest

from haproxy_ingress import gaps as gaps_module
from haproxy_ingress.gaps import BURST, WatchGaps
from haproxy_ingress.model import ServerState
from haproxy_ingress.plan import hold_unconfirmed, plan
from tests.unit.test_plan import backend, desired, ep


def test_an_unconfirmed_view_adds_no_server_and_keeps_the_confirmed_ones() -> None:
    confirmed = plan(None, desired(backend("web", ep(1), ep(2)))).target
    # The stale view still has 10.0.0.2, and a slice (maybe deleted meanwhile) brings .3.
    held = hold_unconfirmed(desired(backend("web", ep(1), ep(2), ep(3))), confirmed)
    assert held.backends[0].endpoints == (ep(1), ep(2))
    step = plan(confirmed, held)
    assert step.empty


def test_an_unconfirmed_view_re_enables_nothing_but_may_take_traffic_away() -> None:
    confirmed = plan(
        None, desired(backend("web", ep(1, ServerState.MAINT), ep(2, ServerState.DRAIN), ep(3)))
    ).target
    held = hold_unconfirmed(
        desired(backend("web", ep(1), ep(2), ep(3, ServerState.DRAIN))), confirmed
    )
    assert held.backends[0].endpoints == (
        ep(1, ServerState.MAINT),
        ep(2, ServerState.DRAIN),
        ep(3, ServerState.DRAIN),
    )
    removed = hold_unconfirmed(desired(backend("web", ep(3))), confirmed)
    assert removed.backends[0].endpoints == (ep(3),)


def test_a_reused_address_never_moves_to_another_backend_from_an_unconfirmed_view() -> None:
    """Pod IP 10.0.0.1 served tenant a; a stale view puts it in tenant b's new backend."""
    confirmed = plan(None, desired(backend("a", ep(1)))).target
    held = hold_unconfirmed(desired(backend("a", ep(1)), backend("b", ep(1), ep(2))), confirmed)
    assert {b.name: b.endpoints for b in held.backends} == {"be_a": (ep(1),), "be_b": ()}
    assert hold_unconfirmed(desired(backend("a", ep(1))), None).backends[0].endpoints == ()


class Verifier:
    """Counts verifications; fails while the API server is 'down'."""

    def __init__(self) -> None:
        self.calls = 0
        self.ok = 0
        self.down = False

    async def __call__(self) -> int:
        self.calls += 1
        await asyncio.sleep(0.01)
        if self.down:
            raise ConnectionRefusedError("API server unreachable")
        self.ok += 1
        return 0


async def _until(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(5.0):
        while not check():  # noqa: ASYNC110 - polls plain state, not an event
            await asyncio.sleep(0.01)


async def test_many_broken_watches_cause_one_verification() -> None:
    verify, verified = Verifier(), list[int]()
    gaps = WatchGaps(verify, lambda: verified.append(1), settle=0.05, max_settle=1.0)
    task = asyncio.create_task(gaps.run())
    try:
        assert gaps.confirmed
        for i in range(1000):  # a re-list of every kind: a burst of signals
            gaps.suspect(f"kind {i % 5} re-listed")
        assert not gaps.confirmed
        await _until(lambda: gaps.confirmed)
        await asyncio.sleep(0.2)
        assert (verify.calls, len(verified)) == (1, 1)
    finally:
        task.cancel()


async def test_an_outage_is_verified_once_when_the_api_server_is_back() -> None:
    verify, verified = Verifier(), list[int]()
    gaps = WatchGaps(verify, lambda: verified.append(1), settle=0.01, retry=(0.02, 0.05))
    task = asyncio.create_task(gaps.run())
    try:
        verify.down = True
        for _ in range(10):  # the ConfigMap watch fails on every retry meanwhile
            gaps.suspect("ConfigMap watch interrupted")
            await asyncio.sleep(0.03)
        assert not gaps.confirmed and verify.ok == 0
        verify.down = False
        await _until(lambda: gaps.confirmed)
        await asyncio.sleep(0.1)
        assert (verify.ok, len(verified)) == (1, 1)
    finally:
        task.cancel()


async def test_a_gap_during_a_verification_needs_another_one() -> None:
    verify, verified = Verifier(), list[int]()
    gaps = WatchGaps(verify, lambda: verified.append(1), settle=0.01)
    task = asyncio.create_task(gaps.run())
    try:
        gaps.suspect("first")
        await _until(lambda: verify.calls == 1)
        gaps.suspect("Ingress re-listed")  # while that LIST runs: it may predate the gap
        await _until(lambda: verify.ok == 2)
        await _until(lambda: gaps.confirmed)
        assert len(verified) == 2
    finally:
        task.cancel()


async def test_a_re_list_is_one_signal_per_kind_however_many_objects_it_brings() -> None:
    verify = Verifier()
    gaps = WatchGaps(verify, lambda: None, settle=0.01)
    task = asyncio.create_task(gaps.run())
    try:
        gaps.relisted("Ingress")
        await _until(lambda: verify.ok == 1)
        for _ in range(100):  # the rest of the same LIST, handed over during the verification
            gaps.relisted("Ingress")
        await asyncio.sleep(0.1)
        assert gaps.confirmed and verify.calls == 1
        gaps.relisted("Service")  # another kind's LIST is another signal
        await _until(lambda: verify.ok == 2)
    finally:
        task.cancel()


async def test_the_initial_listings_tail_after_the_first_sync_is_no_re_list() -> None:
    verify = Verifier()
    gaps = WatchGaps(verify, lambda: None, settle=0.01)
    task = asyncio.create_task(gaps.run())
    try:
        for _ in range(100):
            gaps.listed("Ingress")  # the initial LIST, before the first sync
        gaps.relisted("Ingress")  # its last object, handed over after the first sync began
        await asyncio.sleep(0.1)
        assert gaps.confirmed and verify.calls == 0
        gaps.relisted("Service")  # a kind never listed before: a LIST after the start
        await _until(lambda: verify.ok == 1)
    finally:
        task.cancel()


def test_a_re_list_long_after_the_initial_listing_is_a_gap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gaps = WatchGaps(Verifier(), lambda: None, settle=0.01)
    clock = [1000.0]
    monkeypatch.setattr(gaps_module, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    gaps.listed("Ingress")
    clock[0] += BURST - 0.5
    gaps.relisted("Ingress")  # still the same LIST's objects
    assert gaps.confirmed
    clock[0] += BURST + 1
    gaps.relisted("Ingress")  # a LIST of its own: Kopf could not resume the watch
    assert not gaps.confirmed


async def test_the_view_is_confirmed_only_once_the_watches_caught_up_with_the_list() -> None:
    """A LIST back before Kopf's watches saw a recreated object the indexes lack."""
    verify, verified, confirmed = Verifier(), list[int](), list[int]()
    behind = [True]
    gaps = WatchGaps(
        verify,
        lambda: verified.append(1),
        behind=lambda: behind[0],
        on_confirmed=lambda: confirmed.append(1),
        settle=0.01,
        poll=0.01,
    )
    task = asyncio.create_task(gaps.run())
    try:
        gaps.suspect("ConfigMap watch interrupted")
        await _until(lambda: verify.ok == 1)
        await asyncio.sleep(0.1)
        # Verified (what is gone is dropped), not confirmed: no server gains traffic yet.
        assert len(verified) == 1 and not gaps.confirmed and confirmed == []
        behind[0] = False  # the successor is indexed
        await _until(lambda: gaps.confirmed)
        assert (verify.calls, len(verified), len(confirmed)) == (1, 1, 1)
    finally:
        task.cancel()


async def test_a_gap_while_awaiting_the_watches_needs_another_verification() -> None:
    verify, behind = Verifier(), [True]
    gaps = WatchGaps(verify, lambda: None, behind=lambda: behind[0], settle=0.01, poll=0.01)
    task = asyncio.create_task(gaps.run())
    try:
        gaps.suspect("first")
        await _until(lambda: verify.ok == 1)
        gaps.suspect("Ingress re-listed")
        behind[0] = False
        await _until(lambda: verify.ok == 2)
        await _until(lambda: gaps.confirmed)
    finally:
        task.cancel()
