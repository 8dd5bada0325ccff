"""Watch gaps: notice them, and verify the view against the API server at once.

After an API server restart or a lost connection a watch may not resume
from its resourceVersion: Kopf then re-lists, and objects deleted meanwhile
get no DELETED event, so the indexes keep them (routes to deleted Ingresses,
servers of deleted EndpointSlices whose pod IPs may already be someone
else's). Two signals, both seen without private Kopf API:

- Kopf's re-list itself. Kopf's watcher (``kopf/_cogs/clients/watching.py``)
  resumes a broken stream from its last resourceVersion, and only on
  ``410 Gone`` (or a failed LIST) starts over with a fresh LIST, whose
  objects reach ``@kopf.on.event`` handlers with ``type=None``, as at
  start-up. So ``type=None`` after the first sync means a kind was
  re-listed: its index can hold objects the LIST no longer has. A kind with
  no object left sends nothing, hence the second signal.
- The controller's own ConfigMap watch (same API server, same network path)
  failing or ending before its timeout: the API server was gone or
  unreachable, for every watch at once, whether or not Kopf has noticed
  yet (it may still be in its retry back-off).

Either makes the view *unconfirmed* (:attr:`WatchGaps.confirmed`) until one
verification -- the paginated, metadata-only LIST of every watched kind of
:mod:`haproxy_ingress.verifier` -- succeeds after the last signal, and the
indexes hold what it listed in the namespaces of the objects it found
deleted (their successors, see :class:`~haproxy_ingress.verifier.Verification`).
Signals are coalesced: a re-list is a burst of events and an outage breaks
every watch, so a verification waits for a short quiet spell, suspicions
while the API server is unreachable are absorbed by the next attempt, and
only a signal arriving while a verification runs causes one more. The periodic resync
stays as a safety net for gaps neither signal shows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from haproxy_ingress.status import API_ERRORS

logger = logging.getLogger(__name__)

LOUD_EVERY = 30  # failed verifications between two warnings (30 s at the longest delay)
BURST = 2.0  # seconds between a re-list's objects, at most, as Kopf hands them over


class WatchGaps:
    """Suspected gaps in, one verification per gap out; ``on_verified`` after each."""

    def __init__(
        self,
        verify: Callable[[], Awaitable[int]],
        on_verified: Callable[[], None],
        *,
        behind: Callable[[], bool] = lambda: False,
        on_confirmed: Callable[[], None] = lambda: None,
        settle: float = 0.3,
        max_settle: float = 3.0,
        retry: tuple[float, float] = (0.25, 1.0),
        poll: float = 0.1,
    ) -> None:
        """``on_verified`` runs after each verification; ``behind``: whether the indexes
        still lack objects it listed (see :class:`haproxy_ingress.verifier.Verification`);
        ``on_confirmed``: at a confirmation that waited for them.

        ``settle``: the quiet spell awaited (at most ``max_settle``); ``retry``: first and
        longest delay between attempts while the API server is unreachable; ``poll``:
        how often ``behind`` is asked meanwhile."""
        self._verify = verify
        self._on_verified = on_verified
        self._behind = behind
        self._on_confirmed = on_confirmed
        self._poll = poll
        self._settle = settle
        self._max_settle = max_settle
        self._retry = retry
        self._suspected = asyncio.Event()
        self._confirmed = True
        self._relisting: dict[str, float] = {}  # kind → its last listed object's time
        self.verifications = 0  # successful ones, prompted by a gap

    @property
    def confirmed(self) -> bool:
        """False from a suspected gap until a verification that started after it succeeds."""
        return self._confirmed

    def suspect(self, reason: str) -> None:
        if self._confirmed:
            logger.warning(
                "watch gap suspected (%s): the view is unconfirmed until verified", reason
            )
        self._confirmed = False
        self._suspected.set()

    def listed(self, kind: str) -> None:
        """An object of ``kind`` from the initial listing: no gap, but part of a burst.

        Kopf hands the last listed objects to handlers after the indexes are
        complete, so after the first sync may have started: those objects,
        less than ``BURST`` seconds after the ones before them, are the same
        LIST's tail, not a re-list.
        """
        self._relisting[kind] = time.monotonic()

    def relisted(self, kind: str) -> None:
        """An object of ``kind`` came from a LIST: suspect a gap at the first of a burst.

        Kopf hands a re-list's objects to handlers one by one, after the LIST
        response: a verification started after the first of them already sees
        everything that LIST saw, so the rest of the burst (objects less than
        ``BURST`` seconds apart) is not another gap.
        """
        now = time.monotonic()
        last = self._relisting.get(kind)
        self._relisting[kind] = now
        if last is None or now - last > BURST:
            self.suspect(f"{kind} re-listed")

    async def run(self) -> None:
        while True:
            await self._suspected.wait()
            deadline = time.monotonic() + self._max_settle
            while self._suspected.is_set() and time.monotonic() < deadline:
                self._suspected.clear()
                await asyncio.sleep(self._settle)
            started = time.monotonic()
            delay = self._retry[0]
            attempts = 0
            while True:
                # What was suspected before this attempt is covered by it.
                self._suspected.clear()
                attempts += 1
                try:
                    gone = await self._verify()
                    break
                except API_ERRORS as error:
                    # Expected while the API server is away; past a few attempts
                    # it deserves a look: no server gains traffic meanwhile.
                    level = logging.WARNING if attempts % LOUD_EVERY == 0 else logging.DEBUG
                    logger.log(
                        level,
                        "verification after a watch gap failed %d times (%r); the view stays "
                        "unconfirmed, no server gains traffic",
                        attempts,
                        error,
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._retry[1])
            self.verifications += 1
            logger.info(
                "view verified after a watch gap: %d deleted objects dropped (%.2f s)",
                gone,
                time.monotonic() - started,
            )
            self._on_verified()
            # The LIST may beat Kopf's watches back from the gap: a view missing
            # what the LIST saw is not confirmed yet. ``behind`` turns false by
            # itself when the wait is over (verifier.CATCH_UP).
            waited = False
            while self._behind() and not self._suspected.is_set():
                waited = True
                await asyncio.sleep(self._poll)
            if not self._suspected.is_set():
                self._confirmed = True
                if waited:
                    logger.info("the watches caught up with the verification: view confirmed")
                    self._on_confirmed()  # what the unconfirmed view held back is applied
