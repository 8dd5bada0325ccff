"""The hand-over of a sync's Events and status to their own task (feedback.py)."""

from __future__ import annotations

import asyncio

from haproxy_ingress.cluster import ClusterView
from haproxy_ingress.feedback import Due, Feedback, FullSync
from haproxy_ingress.model import ObjectRef, Problem


def _problem(name: str) -> Problem:
    return Problem(ObjectRef("Ingress", "default", name), "spec", f"{name} is broken", "Invalid")


def _full() -> FullSync:
    return FullSync(ClusterView(), ())


class Writer:
    """Records each Due; blocks while ``gate`` is clear; answers from ``results``."""

    def __init__(self, results: list[bool] | None = None) -> None:
        self.written: list[Due] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.results = results or []

    async def __call__(self, due: Due) -> bool:
        self.written.append(due)
        await self.gate.wait()
        return self.results.pop(0) if self.results else True


async def test_handing_over_never_waits_for_the_writing() -> None:
    writer = Writer()
    writer.gate.clear()  # the API server hangs
    feedback = Feedback(writer)
    try:
        feedback.hand((_problem("a"),), _full())
        await asyncio.sleep(0)
        feedback.hand((), None)  # the next sync goes on meanwhile
        assert len(writer.written) == 1
    finally:
        await feedback.close()


async def test_a_burst_is_written_once_with_the_latest_problems_and_the_full_part_kept() -> None:
    writer = Writer()
    writer.gate.clear()
    feedback = Feedback(writer)
    first, full = (_problem("a"),), _full()
    try:
        feedback.hand(first, None)
        await asyncio.sleep(0)  # being written, blocked
        feedback.hand((_problem("b"),), full)
        feedback.hand((_problem("c"),), None)  # endpoint-only syncs after the full one
        feedback.hand((_problem("d"),), None)
        writer.gate.set()
        await feedback.settled()
        assert writer.written == [Due(first, None), Due((_problem("d"),), full)]
    finally:
        await feedback.close()


async def test_a_full_part_written_incompletely_is_written_again_after_the_next_sync() -> None:
    writer = Writer(results=[False, True])
    feedback = Feedback(writer)
    full = _full()
    try:
        feedback.hand((), full)
        await feedback.settled()
        feedback.hand((), None)  # an endpoint-only sync
        await feedback.settled()
        feedback.hand((), None)
        await feedback.settled()
        assert [due.full for due in writer.written] == [full, full, None]
    finally:
        await feedback.close()


async def test_a_failing_writer_does_not_end_the_task() -> None:
    calls: list[Due] = []

    async def write(due: Due) -> bool:
        calls.append(due)
        if len(calls) == 1:
            raise RuntimeError("the API client broke")
        return True

    feedback = Feedback(write)
    full = _full()
    try:
        feedback.hand((), full)
        await feedback.settled()
        feedback.hand((), None)
        await feedback.settled()
        assert [due.full for due in calls] == [full, full]  # tried again, after the next sync
    finally:
        await feedback.close()
