"""What a sync tells users through the API server, written in a task of its own.

A sync is over once HAProxy runs its plan. What follows it -- a Warning
Event per new problem, notices of Ingresses left to other controllers, the
published address in each served Ingress's ``status.loadBalancer`` -- is one
API request per object. The sync loop used to await it: the first sync of
10,000 new Ingresses patched 10,000 statuses before the loop could take the
next change, 30-60 s during which no endpoint change reached HAProxy
(``bench/controller_rss.py``, py-spy), and a tenant's thousand broken
Ingresses held every other tenant's changes for a thousand Event POSTs.

The sync loop now hands each sync's feedback to :class:`Feedback` and goes
on. Its task writes the latest feedback it holds, so a burst of syncs costs
one pass: a hand-over replaces what was not written yet (the problems of
the latest sync are all the problems there are), except a full sync's part
(:class:`FullSync`: notices and status), which an endpoint-only sync has
none of and so keeps until it is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable

from haproxy_ingress.cluster import ClusterView
from haproxy_ingress.model import Problem, Route

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class FullSync:
    """What a full sync's feedback is derived from (endpoint-only syncs change neither)."""

    view: ClusterView
    routes: tuple[Route, ...]


@dataclasses.dataclass(frozen=True)
class Due:
    problems: tuple[Problem, ...]
    full: FullSync | None  # None: no full sync since the last feedback written


# Writes one Due; False if part of it could not be written (the API server
# failed): its full part is then written again after the next sync.
Writer = Callable[[Due], Awaitable[bool]]


class Feedback:
    """Latest-wins hand-over from the sync loop to one writing task (started at the first)."""

    def __init__(self, write: Writer) -> None:
        self._write = write
        self._due: Due | None = None
        self._retry: FullSync | None = None  # a full part not completely written
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None

    def hand(self, problems: tuple[Problem, ...], full: FullSync | None) -> None:
        """The feedback of the sync that just ended; returns at once."""
        if full is None and self._due is not None:
            full = self._due.full
        self._due = Due(problems, full)
        self._idle.clear()
        self._wake.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="haproxy-ingress:feedback")

    async def settled(self) -> None:
        """Until everything handed over has been written (or tried)."""
        await self._idle.wait()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            due, self._due = self._due, None
            if due is None:
                continue
            if due.full is None and self._retry is not None:
                due = Due(due.problems, self._retry)
            try:
                complete = await self._write(due)
            except Exception:
                # The sync loop lives on whatever happens here, and so must this task.
                logger.exception("writing Events or Ingress status failed; retried after a sync")
                complete = False
            self._retry = None if complete else due.full
            if self._due is None:
                self._idle.set()
