"""Liveness and readiness that tell the truth about the data plane.

``/healthz`` (liveness) fails while HAProxy is not running the configuration
the controller wants it to run: it could not be started (a port taken, a
missing certificate file), or a reload did not take. ``/readyz`` (readiness)
also fails until the first full sync after Kopf listed every watched kind has
been applied, so a new replica takes no traffic with an empty or partial
configuration. A configuration that ``haproxy -c`` refuses because of the
controller's own ConfigMap or flags does not fail either probe: the last good
configuration keeps serving (a Warning Event says why), and restarting the pod
or taking every replica out of the load balancer would only turn a bad edit
into an outage.

Failures repeat while the sync loop retries; each distinct failure is logged
once at ERROR (again every ``REPEAT_EVERY`` seconds while it lasts), the
repeats at DEBUG, and the retries back off up to ``MAX_BACKOFF``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from haproxy_ingress.haproxy.binds import bind_failures, describe

REPEAT_EVERY = 60.0
MAX_BACKOFF = 30.0


def summarize(error: BaseException) -> str:
    """An HAProxy failure as one line: bind failures named, else the alerts."""
    text = str(error)
    failures = bind_failures(text)
    if failures:
        return "; ".join(describe(failure) for failure in failures)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return repr(error)
    alerts = [line for line in lines[1:] if line.startswith("[ALERT]")]
    return " | ".join([lines[0], *alerts])


@dataclass(frozen=True)
class Status:
    live: bool
    ready: bool
    reason: str  # why not, or "ok"

    def body(self) -> str:
        return json.dumps({"live": self.live, "ready": self.ready, "reason": self.reason})


class Health:
    """What the sync loop learnt about the data plane (no I/O)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.indexed = False  # Kopf holds every watched kind's initial listing
        self.synced = False  # a full sync after that was applied
        self.failure: str | None = None  # HAProxy does not run what we want, because…
        self._failures = 0
        self._logged: tuple[str, float] | None = None

    def mark_indexed(self) -> None:
        self.indexed = True

    def applied(self, *, full: bool) -> None:
        """A sync was applied; ``full`` if it covered the whole, completely listed view."""
        self.failure = None
        self._failures = 0
        self._logged = None
        if full:
            self.synced = True

    def failed(self, reason: str) -> bool:
        """Record a failure; True if it should be logged at ERROR (new or due again)."""
        self.failure = reason
        self._failures += 1
        now = self._clock()
        if self._logged is not None:
            last_reason, at = self._logged
            if last_reason == reason and now - at < REPEAT_EVERY:
                return False
        self._logged = (reason, now)
        return True

    def backoff(self) -> float:
        """Seconds to wait before retrying after the current run of failures."""
        return float(min(MAX_BACKOFF, 2 ** max(0, self._failures - 1)))

    def status(self, haproxy_running: bool) -> Status:
        if not haproxy_running:
            reason = self.failure or "HAProxy is not running"
            return Status(False, False, reason)
        if self.failure is not None:
            return Status(False, False, self.failure)
        if not self.synced:
            return Status(True, False, "waiting for the first full sync")
        return Status(True, True, "ok")


async def serve(bind: str, status: Callable[[], Status]) -> web.AppRunner:
    """Serve ``/healthz`` and ``/readyz`` on ``host:port``; stop with ``runner.cleanup()``."""

    def answer(ok: Callable[[Status], bool]) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(_: web.Request) -> web.Response:
            current = status()
            return web.Response(
                status=200 if ok(current) else 503,
                text=current.body() + "\n",
                content_type="application/json",
            )

        return handle

    app = web.Application()
    app.router.add_get("/healthz", answer(lambda s: s.live))
    app.router.add_get("/readyz", answer(lambda s: s.ready))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, _, port = bind.rpartition(":")
    await web.TCPSite(runner, host.strip("[]") or "0.0.0.0", int(port)).start()
    return runner
