"""Feedback to users: Events once per distinct problem; status written only on change."""

from __future__ import annotations

from typing import Any

from haproxy_ingress.model import ObjectRef, Problem
from haproxy_ingress.status import EventReporter, IngressStatusWriter

OURS = {"ingress": [{"ip": "203.0.113.7"}]}


class RecordingNetworking:
    def __init__(self) -> None:
        self.patches: list[tuple[str, str, dict[str, Any]]] = []

    async def patch_namespaced_ingress_status(
        self, name: str, namespace: str, body: dict[str, Any], **_: Any
    ) -> None:
        self.patches.append((namespace, name, body["status"]["loadBalancer"]))


class RecordingCore:
    def __init__(self) -> None:
        self.events: list[Any] = []

    async def create_namespaced_event(self, namespace: str, body: Any, **_: Any) -> None:
        self.events.append(body)


def writer() -> tuple[IngressStatusWriter, RecordingNetworking]:
    result = IngressStatusWriter.__new__(IngressStatusWriter)
    recorder = RecordingNetworking()
    result._networking = recorder  # type: ignore[assignment]
    result._wanted = {"ingress": [{"ip": "203.0.113.7"}]}
    return result, recorder


def ref(name: str) -> ObjectRef:
    return ObjectRef("Ingress", "default", name)


async def test_status_is_written_only_where_it_differs_and_cleared_when_no_longer_served() -> None:
    status, api = writer()
    current = {
        ref("new"): {},
        ref("done"): OURS,
        ref("left"): OURS,  # shows our address, no longer served
        ref("foreign"): {"ingress": [{"ip": "198.51.100.1"}]},  # another controller's
    }
    assert await status.update({ref("new"), ref("done")}, current) == (2, True)
    assert api.patches == [
        ("default", "left", {"ingress": None}),
        ("default", "new", {"ingress": [{"ip": "203.0.113.7"}]}),
    ]


def reporter_with(core: Any) -> EventReporter:
    reporter = EventReporter.__new__(EventReporter)
    reporter._core = core
    reporter._component = "haproxy-ingress"
    reporter._host = "pod-1"
    reporter._posted = set()
    reporter._logged = set()
    reporter._done = None
    return reporter


async def test_events_are_posted_once_per_distinct_problem() -> None:
    core = RecordingCore()
    reporter = reporter_with(core)
    bad = Problem(ref("a"), "spec.rules[0].host", "must be a DNS name", "Rejected")
    other = Problem(ref("b"), "backend", "Service default/x not found", "BackendNotFound")
    assert await reporter.report([bad, other]) == 2
    assert await reporter.report([bad, other]) == 0  # nothing new
    assert await reporter.report([other]) == 0  # "a" was fixed ...
    assert await reporter.report([bad, other]) == 1  # ... and broken again: news
    reasons = [(e.involved_object.name, e.reason, e.type) for e in core.events]
    assert reasons == [
        ("a", "Rejected", "Warning"),
        ("b", "BackendNotFound", "Warning"),
        ("a", "Rejected", "Warning"),
    ]
    assert core.events[0].message == "spec.rules[0].host: must be a DNS name"


class FailingCore(RecordingCore):
    """An API server that refuses the first ``failures`` Events."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def create_namespaced_event(self, namespace: str, body: Any, **_: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError("connection refused")
        await super().create_namespaced_event(namespace, body)


async def test_the_same_problems_again_cost_nothing_once_all_are_posted() -> None:
    """An endpoint sync hands on the very tuple of the sync before: nothing to compare."""
    core = FailingCore(failures=1)
    reporter = reporter_with(core)
    problems = (Problem(ref("a"), "", "x", "Rejected"), Problem(ref("b"), "", "y", "Rejected"))
    assert await reporter.report(problems) == 1  # one refused: retried next time
    assert await reporter.report(problems) == 1
    assert len(core.events) == 2
    reporter._posted = set()  # were it compared again, everything would be posted anew
    assert await reporter.report(problems) == 0
    assert await reporter.report(list(problems)) == 2  # another collection: compared
