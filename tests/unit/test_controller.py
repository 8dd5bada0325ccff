"""The controller's decisions: when the first sync runs, what the next sync covers, and
what it adds to the metrics."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import typing
import weakref
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from haproxy_ingress import metrics, serving
from haproxy_ingress.apply import ApplyResult
from haproxy_ingress.cluster import ClusterView
from haproxy_ingress.config import ControllerConfig
from haproxy_ingress.controller import Controller, PendingChanges, endpoint_wait
from haproxy_ingress.metrics import figures
from haproxy_ingress.model import Backend, Endpoint, ServerState, TranslateOptions
from haproxy_ingress.plan import Operation, plan
from haproxy_ingress.sync import Outcome
from haproxy_ingress.translate import translate
from tests.kube import endpoint, endpoint_slice, ingress, ingress_class, path, rule, service

OPTIONS = TranslateOptions()


def test_the_first_sync_is_a_full_one_whatever_came_before() -> None:
    pending = PendingChanges()
    pending.endpoints("default", "web")
    assert pending.take() is None


def test_endpoint_changes_alone_take_the_fast_path_for_their_services() -> None:
    pending = PendingChanges()
    pending.take()
    pending.endpoints("default", "web")
    pending.endpoints("shop", "api")
    pending.endpoints("default", "web")
    assert pending.take() == {("default", "web"), ("shop", "api")}
    assert pending.take() == frozenset()  # nothing noted since: nothing to refresh


def test_any_other_change_makes_the_next_sync_full_and_absorbs_endpoint_changes() -> None:
    pending = PendingChanges()
    pending.take()
    pending.endpoints("default", "web")
    pending.everything()
    pending.endpoints("default", "api")  # part of the full sync anyway
    assert pending.take() is None
    pending.endpoints("default", "api")
    assert pending.take() == {("default", "api")}


def outcome(*objects: dict[str, object], result: ApplyResult | None) -> Outcome:
    view, _ = ClusterView.from_objects(objects, OPTIONS)
    desired = translate(view, OPTIONS)
    return Outcome(desired, plan(None, desired), result)


CLUSTER = (
    ingress_class(default=True),
    service("web"),
    endpoint_slice("web", endpoint("10.0.0.1"), endpoint("10.0.0.2", ready=False)),
    ingress("a", rule("a.example.com", path("/"))),
    ingress("bad", rule("b.example.com", path("/", "missing"))),
)


def test_a_reload_counts_its_reasons_and_no_runtime_operations() -> None:
    reloaded = ApplyResult(True, ("initial configuration",), 8, False, 0.1)
    got = figures(outcome(*CLUSTER, result=reloaded), quarantined=2)
    assert got.reloads == {"initial configuration": 1}
    assert got.runtime_operations == {}
    assert not got.runtime_fallback
    assert got.problems["Ingress"] == 1 and got.problems["Secret"] == 0
    assert got.quarantined == 2


def test_the_census_is_taken_when_metrics_are_read_once_per_applied_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    taken: list[Outcome] = []
    real = metrics.census

    def counting(outcome: Outcome) -> metrics.Census:
        taken.append(outcome)
        return real(outcome)

    monkeypatch.setattr(metrics, "census", counting)
    registry = metrics.Metrics()
    first = outcome(*CLUSTER, result=None)
    registry.applied(first)
    assert taken == []  # nothing counted by the sync itself
    samples = _samples(registry)
    assert (samples['haproxy_ingress_endpoints{state="ready"}'],
            samples['haproxy_ingress_endpoints{state="maint"}']) == (1.0, 1.0)  # fmt: skip
    # Exactly the endpoints: 2 for web, and server-slots (1) for the missing Service.
    assert samples["haproxy_ingress_server_slots"] == 3.0
    _samples(registry)
    assert taken == [first]  # read again: the same state, counted once
    registry.applied(outcome(*CLUSTER[:4], result=None))  # without the missing Service
    gone = weakref.ref(first)
    del first, taken[:]
    assert gone() is None  # the metrics keep no outcome but the applied one
    assert _samples(registry)["haproxy_ingress_server_slots"] == 2.0
    assert len(taken) == 1


def _samples(registry: metrics.Metrics) -> dict[str, float]:
    text = generate_latest(registry.registry).decode()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def test_a_runtime_only_sync_counts_its_operations_by_kind() -> None:
    applied = ApplyResult(False, (), 8, False, 0.01)
    got = figures(outcome(*CLUSTER, result=applied), quarantined=0)
    assert got.reloads == {}
    assert got.runtime_operations == {"server": 3}  # every slot set from scratch
    nothing = figures(outcome(*CLUSTER, result=None), quarantined=0)
    assert nothing.runtime_operations == {} and nothing.reloads == {}


def test_full_says_whether_the_next_sync_waits_a_whole_window() -> None:
    # The sync loop gives endpoint-only changes a leading edge and makes
    # everything else wait the debounce window (a burst is half-written at
    # its first event).
    pending = PendingChanges()
    assert pending.full
    pending.take()
    pending.endpoints("default", "web")
    assert not pending.full
    pending.everything()
    assert pending.full


def test_every_kind_of_runtime_operation_has_a_metric_label() -> None:
    kinds = typing.get_args(Operation)
    assert kinds and set(metrics._OPERATION_KINDS) == set(kinds)
    assert set(metrics._OPERATION_KINDS.values()) == set(metrics.RUNTIME_KINDS)


def test_reload_reason_labels_stay_bounded() -> None:
    reasons = {
        "backend be_a_b_80 added": "backend added",
        "active health checks off: 30228 file descriptors needed, limit 20000": (
            "health checks shed"
        ),
        "active health checks back on: 900 file descriptors of 20000": "health checks back",
        "active check intervals x4: 15000 checks/s at the configured intervals, "
        "health-check-max-rate 1000": "check intervals changed",
        "passthrough backend be_passthrough_1 (a.example.com) needs 3 server slots, has 2": (
            "passthrough changed"
        ),
        "per-host TLS settings (client CA, ciphers, default-certificate lines) changed": (
            "per-host TLS changed"
        ),
        "a host with a crt-list line of its own changed certificate": "per-host TLS changed",
        "access policy p_0123 added": "access policy added",
    }
    for reason, label in reasons.items():
        assert metrics.reason_label(reason) == label
        assert label in metrics.RELOAD_REASONS


async def test_the_first_sync_waits_for_the_indexes_whatever_triggers_come_first(
    tmp_path: Path,
) -> None:
    """Neither the start-up timeout nor an early trigger (the ConfigMap's watch) starts it."""
    config = ControllerConfig(state_dir=tmp_path, startup_timeout=0.01, debounce=0.01)
    indexed = asyncio.Event()
    controller = Controller(config, lambda configmap: ClusterView(), indexed=indexed)
    synced: list[bool] = []

    async def sync_once() -> None:
        synced.append(controller.health.indexed)

    controller.sync_once = sync_once  # type: ignore[method-assign]
    loop = asyncio.create_task(controller._sync_loop())
    try:
        controller.trigger()  # the ConfigMap, listed long before Kopf's kinds
        await asyncio.sleep(0.2)
        assert synced == []
        indexed.set()  # every kind listed: nothing of ours, or Kopf's events on their way
        for _ in range(100):
            if synced:
                break
            await asyncio.sleep(0.01)
        assert synced == [True]  # and readiness may count it as the first full sync
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop


def test_pending_changes_remember_when_the_oldest_came() -> None:
    clock = iter([1.0, 2.0])
    pending = PendingChanges(clock=lambda: next(clock))
    pending.take()
    assert pending.since is None
    pending.endpoints("default", "web")
    pending.endpoints("default", "web")  # later ones do not move it
    assert pending.since == 1.0
    pending.take()
    assert pending.since is None
    pending.everything()
    assert pending.since == 2.0


def test_endpoint_changes_wait_at_most_a_window_from_the_first_of_them() -> None:
    window = 0.01
    # After a quiet spell: at once (the leading edge).
    assert endpoint_wait(window, now=5.0, last_sync=1.0, since=5.0) < 0
    # Right after a sync: the rest of the window, batching what follows.
    assert endpoint_wait(window, now=1.002, last_sync=1.0, since=1.002) == pytest.approx(0.008)
    # Noted during a sync that took longer than a window: at once when it ends,
    # not a whole window after it.
    assert endpoint_wait(window, now=1.05, last_sync=1.05, since=1.01) < 0
    # Noted during a short sync: the rest of the window from when it came.
    assert endpoint_wait(window, now=1.003, last_sync=1.003, since=1.001) == pytest.approx(0.008)


def test_unusable_backends_are_logged_once_per_change_judging_only_new_backends(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    controller = Controller(ControllerConfig(state_dir=tmp_path), lambda configmap: ClusterView())
    judged: list[int] = []
    real = serving.unusable

    def counting(backends: typing.Iterable[Backend]) -> dict[str, str]:
        backends = list(backends)
        judged.append(len(backends))
        return real(backends)

    monkeypatch.setattr(serving, "unusable", counting)
    first = outcome(*CLUSTER, result=None)
    web = next(b for b in first.desired.backends if b.service.name == "web")

    def with_web(endpoints: tuple[Endpoint, ...]) -> Outcome:
        """An endpoint-only sync: the other backends are the very same objects."""
        backends = tuple(
            dataclasses.replace(b, endpoints=endpoints) if b is web else b
            for b in first.desired.backends
        )
        return dataclasses.replace(
            first, desired=dataclasses.replace(first.desired, backends=backends)
        )

    def logged() -> list[str]:
        messages = [r.getMessage() for r in caplog.records if r.name.endswith("controller")]
        caplog.clear()
        return messages

    with caplog.at_level(logging.INFO, logger="haproxy_ingress.controller"):
        controller._log_unusable(first)
        (missing,) = logged()
        assert "has no usable server" in missing and "missing" in missing
        controller._log_unusable(first)
        assert logged() == []
        draining = tuple(dataclasses.replace(e, state=ServerState.DRAIN) for e in web.endpoints)
        controller._log_unusable(with_web(draining))
        (gone,) = logged()
        assert web.name in gone and "no endpoint is ready" in gone
        controller._log_unusable(with_web(web.endpoints))
        assert logged() == [f"backend {web.name} has a ready server again"]
    assert judged == [2, 1, 1]  # all at first; then none, and only web each time


def test_an_endpoint_sync_judges_only_the_backends_it_refreshed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not even finding them walks the others (Outcome.refreshed): 1.4 ms at 10k."""
    controller = Controller(ControllerConfig(state_dir=tmp_path), lambda configmap: ClusterView())
    first = outcome(*CLUSTER, result=None)
    controller._log_unusable(first)
    caplog.clear()
    web = next(b for b in first.desired.backends if b.service.name == "web")

    def everything(desired: object) -> typing.NoReturn:
        raise AssertionError("an endpoint sync walked every backend")

    monkeypatch.setattr(serving, "backends", everything)
    draining = dataclasses.replace(
        web, endpoints=tuple(dataclasses.replace(e, state=ServerState.DRAIN) for e in web.endpoints)
    )
    refreshed = dataclasses.replace(
        first,
        desired=dataclasses.replace(
            first.desired,
            backends=tuple(draining if b is web else b for b in first.desired.backends),
        ),
        refreshed=(draining,),
    )
    with caplog.at_level(logging.INFO, logger="haproxy_ingress.controller"):
        controller._log_unusable(refreshed)
        controller._log_unusable(dataclasses.replace(refreshed, refreshed=()))
    (gone,) = [r.getMessage() for r in caplog.records if r.name.endswith("controller")]
    assert web.name in gone and "no endpoint is ready" in gone
    assert set(controller._unusable) == {web.name, "be_default_missing_80"}
