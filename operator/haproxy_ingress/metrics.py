"""Prometheus metrics of the controller (``prometheus_client``, one registry per instance)."""

from __future__ import annotations

import asyncio
import functools
from collections import Counter as Tally
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from haproxy_ingress import serving
from haproxy_ingress.model import Problem
from haproxy_ingress.plan import (
    AddServer,
    Operation,
    PutCertificate,
    PutClientCA,
    RemoveCertificate,
    ReplaceAddressList,
    ReplaceMap,
    SetServer,
)
from haproxy_ingress.sync import Outcome

PROBLEM_KINDS = ("Ingress", "Service", "EndpointSlice", "Secret", "ConfigMap")
# Every kind of plan.Operation (test_controller checks none is missing).
_OPERATION_KINDS: Mapping[type[Operation], str] = {
    AddServer: "server",
    SetServer: "server",
    ReplaceMap: "map",
    ReplaceAddressList: "acl",
    PutCertificate: "cert",
    RemoveCertificate: "cert",
    PutClientCA: "cert",
}


@dataclass(frozen=True)
class SyncFigures:
    """What one applied sync adds to or sets in the metrics."""

    reloads: Mapping[str, int]  # reason label → reloads (counter increments)
    runtime_fallback: bool
    runtime_operations: Mapping[str, int]  # kind → operations (counter increments)
    problems: Mapping[str, int]  # object kind → objects with problems (gauge)
    quarantined: int  # gauge


@dataclass(frozen=True)
class Census:
    """What HAProxy serves, counted over the whole cluster (gauges read at scrape time).

    Counting walks every endpoint: about 100 ms at 10,000 Ingresses (30,000
    endpoints). Done per sync, that was 100 ms on the event loop after every
    endpoint change; Prometheus asks every 15-60 s.
    """

    endpoints: Mapping[str, int]  # state → pods (distinct addresses)
    slots: int  # server slots rendered in total


def census(outcome: Outcome) -> Census:
    """The gauges of the state ``outcome`` applied (pure)."""
    return Census(
        endpoints=serving.endpoint_counts(serving.backends(outcome.desired)),
        slots=sum(len(slots) for slots in outcome.plan.target.servers.values()),
    )


def problem_counts(problems: Iterable[Problem]) -> dict[str, int]:
    """Objects with problems, by kind (the problems gauge)."""
    counted = Tally(problem.source.kind for problem in problems)
    return {kind: counted.get(kind, 0) for kind in PROBLEM_KINDS}


def figures(
    outcome: Outcome, quarantined: int, problems: Mapping[str, int] | None = None
) -> SyncFigures:
    """The metrics of a sync, derived from its outcome alone (pure).

    ``problems``: :func:`problem_counts` of the outcome's problems, if the
    caller kept them (an endpoint sync's problems are mostly the same tuple).
    """
    result = outcome.result
    reloaded = result is not None and result.reloaded
    if problems is None:
        problems = problem_counts(outcome.desired.problems)
    return SyncFigures(
        reloads=(
            Tally(reason_label(r) for r in result.reload_reasons)
            if result is not None and result.reloaded
            else {}
        ),
        runtime_fallback=result is not None and result.runtime_fallback,
        runtime_operations=(
            Tally(_OPERATION_KINDS[type(op)] for op in outcome.plan.operations)
            if result is not None and not reloaded
            else {}
        ),
        problems=problems,
        quarantined=quarantined,
    )


# Reasons whose text carries names or figures (plan.py), by their opening words.
_REASON_PREFIXES = (
    ("access policy ", "access policy added"),
    ("active health checks off", "health checks shed"),
    ("active health checks back", "health checks back"),
    ("active check intervals", "check intervals changed"),
    ("per-host TLS settings", "per-host TLS changed"),
    ("a client CA bundle", "client certificates changed"),
    ("a host with a crt-list line", "per-host TLS changed"),
    ("ssl passthrough turned", "passthrough changed"),
    ("passthrough ", "passthrough changed"),
)


# Every label value the controller can produce, created at zero on start so
# that dashboards and alerts (rate(), absent()) see the series before the
# first increment.
SYNC_RESULTS = ("ok", "error", "config-rejected")
RELOAD_REASONS = tuple(
    dict.fromkeys(
        (
            "initial configuration",
            "global settings changed",
            "default backend changed",
            "backend added",
            "backend settings changed",
            "slots exhausted",
            "access policy added",
            "runtime refused",
            "reload on every change",
            *(label for _, label in _REASON_PREFIXES),
        )
    )
)
RUNTIME_KINDS = ("server", "map", "acl", "cert")
ENDPOINT_STATES = ("ready", "drain", "maint")


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.sync_seconds = Histogram(
            "haproxy_ingress_sync_duration_seconds",
            "Time from the start of a sync (translate, plan, apply) to its end.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.syncs = Counter(
            "haproxy_ingress_syncs_total", "Syncs, by result.", ["result"], registry=r
        )
        self.reloads = Counter(
            "haproxy_ingress_reloads_total",
            "HAProxy reloads, by reason.",
            ["reason"],
            registry=r,
        )
        self.runtime_operations = Counter(
            "haproxy_ingress_runtime_operations_total",
            "Runtime API operations applied instead of reloads, by kind.",
            ["kind"],
            registry=r,
        )
        self.runtime_fallbacks = Counter(
            "haproxy_ingress_runtime_fallbacks_total",
            "Times the runtime API refused an operation and a reload was used instead.",
            registry=r,
        )
        self.haproxy_restarts = Counter(
            "haproxy_ingress_haproxy_restarts_total",
            "Times HAProxy was found dead (master or worker killed) and started again.",
            registry=r,
        )
        self.gap_verifications = Counter(
            "haproxy_ingress_watch_gap_verifications_total",
            "LIST verifications of the view after a detected watch gap (coalesced).",
            registry=r,
        )
        self.unconfirmed = Gauge(
            "haproxy_ingress_view_unconfirmed",
            "1 from a detected watch gap until its verification: no server gains traffic.",
            registry=r,
        )
        self.problems = Gauge(
            "haproxy_ingress_problems",
            "Objects currently left out or degraded, by kind.",
            ["kind"],
            registry=r,
        )
        self.quarantined = Gauge(
            "haproxy_ingress_quarantined_objects",
            "Objects left out because HAProxy refused the configuration with them.",
            registry=r,
        )
        self.endpoints = Gauge(
            "haproxy_ingress_endpoints",
            "Endpoints in HAProxy server slots, by state.",
            ["state"],
            registry=r,
        )
        self.slots = Gauge(
            "haproxy_ingress_server_slots", "Server slots rendered in total.", registry=r
        )
        for family, values in (
            (self.syncs, SYNC_RESULTS),
            (self.reloads, RELOAD_REASONS),
            (self.runtime_operations, RUNTIME_KINDS),
            (self.problems, PROBLEM_KINDS),
        ):
            for value in values:
                family.labels(value)
        self._applied: Outcome | None = None
        self._taken: tuple[Outcome, Census] | None = None  # the census of that outcome
        for state in ENDPOINT_STATES:
            self.endpoints.labels(state).set_function(functools.partial(self._pods, state))
        self.slots.set_function(lambda: self._census().slots)

    def record(self, figures: SyncFigures) -> None:
        for reason, count in figures.reloads.items():
            self.reloads.labels(reason).inc(count)
        if figures.runtime_fallback:
            self.runtime_fallbacks.inc()
        for kind, count in figures.runtime_operations.items():
            self.runtime_operations.labels(kind).inc(count)
        for kind, count in figures.problems.items():
            self.problems.labels(kind).set(count)
        self.quarantined.set(figures.quarantined)

    def applied(self, outcome: Outcome) -> None:
        """The state HAProxy runs now: its census is taken when metrics are read."""
        self._applied = outcome
        self._taken = None  # holds the outcome before: a whole desired state at 10k

    def _pods(self, state: str) -> float:
        return self._census().endpoints.get(state, 0)

    def _census(self) -> Census:
        # Read from the scrape's worker thread; the loop only swaps _applied.
        applied = self._applied
        if applied is None:
            return Census({state: 0 for state in ENDPOINT_STATES}, 0)
        taken = self._taken
        if taken is None or taken[0] is not applied:
            taken = (applied, census(applied))
            if self._applied is applied:  # else a newer one came meanwhile: keep no old one
                self._taken = taken
        return taken[1]

    async def serve(self, bind: str) -> web.AppRunner:
        """Serve ``/metrics`` on ``host:port`` in this loop; stop with ``runner.cleanup()``."""

        async def handle(_: web.Request) -> web.Response:
            # The census walks the cluster (Census): off the event loop.
            body = await asyncio.to_thread(generate_latest, self.registry)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

        app = web.Application()
        app.router.add_get("/metrics", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        host, _, port = bind.rpartition(":")
        await web.TCPSite(runner, host or "0.0.0.0", int(port)).start()
        return runner


def reason_label(reason: str) -> str:
    """A bounded label value: the reason's kind, not its backend name or figures."""
    for prefix, label in _REASON_PREFIXES:
        if reason.startswith(prefix):
            return label
    for kind in ("refused", "added", "removed", "settings changed", "server slots"):
        if kind in reason:
            return {"server slots": "slots exhausted", "refused": "runtime refused"}.get(
                kind, "backend " + kind
            )
    return reason
