"""Where the reconciler computes: a cheap endpoint fast path on the loop, the rest in a thread.

A hop to a worker thread and back is two wake-ups, and a busy machine can
delay each by a time slice: the fast path of a small cluster costs far less.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from haproxy_ingress import sync
from haproxy_ingress.apply import ApplyResult
from haproxy_ingress.cluster import ClusterView
from haproxy_ingress.model import TranslateOptions
from haproxy_ingress.plan import Plan
from haproxy_ingress.sync import Reconciler
from tests.kube import endpoint, endpoint_slice, ingress, ingress_class, path, rule, service

OPTIONS = TranslateOptions()


class StubApplier:
    """Applies every plan at once (what the reconciler needs of an Applier)."""

    def __init__(self) -> None:
        self.applied: Any = None
        self.pauses = 0  # blocks of writer_paused entered

    def budget(self) -> None:
        return None

    async def apply(self, plan: Plan) -> ApplyResult:
        self.applied = plan.target
        return ApplyResult(False, (), len(plan.operations), False, 0.0)

    @contextlib.asynccontextmanager
    async def writer_paused(self) -> AsyncIterator[None]:
        self.pauses += 1  # no background writer to pause
        yield


def view(pods: int) -> ClusterView:
    objects = (
        ingress_class(default=True),
        service("web"),
        endpoint_slice("web", *(endpoint(f"10.0.0.{n}") for n in range(1, pods + 1))),
        ingress("a", rule("a.example.com", path("/"))),
    )
    result, _ = ClusterView.from_objects(objects, OPTIONS)
    return result


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    to_thread = asyncio.to_thread

    async def counted(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        calls.append(getattr(fn, "__name__", repr(fn)))
        return await to_thread(fn, *args, **kwargs)

    monkeypatch.setattr(sync.asyncio, "to_thread", counted)
    return calls


async def test_a_cheap_fast_path_runs_on_the_loop_once_measured(hops: list[str]) -> None:
    reconciler = Reconciler(OPTIONS, StubApplier())  # type: ignore[arg-type]
    await reconciler.reconcile(view(1))
    assert hops == ["measured"]  # the full translation: in a thread
    await reconciler.reconcile(view(2), endpoints_of={("default", "web")})
    assert hops == ["measured"] * 2  # the first fast path too: its cost is not known yet
    outcome = await reconciler.reconcile(view(3), endpoints_of={("default", "web")})
    assert hops == ["measured"] * 2  # measured cheap: on the loop
    assert len(outcome.desired.backends[0].endpoints) == 3
    await reconciler.reconcile(view(3))
    assert hops == ["measured"] * 3  # full translations always go to a thread


async def test_a_costly_fast_path_stays_in_a_thread(
    hops: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sync, "INLINE_FAST_PATH", 0.0)  # every fast path "too costly"
    reconciler = Reconciler(OPTIONS, StubApplier())  # type: ignore[arg-type]
    await reconciler.reconcile(view(1))
    for pods in (2, 3, 4):
        await reconciler.reconcile(view(pods), endpoints_of={("default", "web")})
    assert hops == ["measured"] * 4


async def test_only_full_translations_pause_the_background_writer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sync, "INLINE_FAST_PATH", 0.0)  # fast paths in a thread too
    applier = StubApplier()
    reconciler = Reconciler(OPTIONS, applier)  # type: ignore[arg-type]
    await reconciler.reconcile(view(1))
    assert applier.pauses == 1
    await reconciler.reconcile(view(2), endpoints_of={("default", "web")})
    assert applier.pauses == 1  # the Service's servers only: the writer may go on
    await reconciler.reconcile(view(2))
    assert applier.pauses == 2
