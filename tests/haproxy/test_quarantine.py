"""One tenant's refused object never blocks another's change (real HAProxy, real traffic).

A value that the validators accept and HAProxy refuses is what the
quarantine is for. Such values get rarer as the validators tighten, so these
tests make one that stays refused: HAProxy behind a wrapper script that
fails ``haproxy -c`` for configurations holding a marker, and runs the real
binary for everything else (the master, its reloads, the traffic).
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from haproxy_ingress.cluster import ClusterView
from haproxy_ingress.config import ControllerConfig
from haproxy_ingress.controller import Controller
from haproxy_ingress.model import Problem
from tests.backends import free_port
from tests.haproxy.conftest import HAPROXY
from tests.haproxy.stack import Stack, add_phantom_backend, get, wait_for
from tests.haproxy.test_faults import RecordingReporter
from tests.haproxy.test_traffic import slice_for, start_pods
from tests.kube import ingress, ingress_class, path, rule, service

pytestmark = pytest.mark.haproxy

REFUSED_INTERVAL = "4242ms"  # a health-check interval, refused in haproxy.cfg
REFUSED_HOST = "refused.example.com"  # a host, refused in a map file

WRAPPER = f"""#!/bin/sh
# `haproxy -c -f CONFIG`: refuse the markers, in the config or its map files.
if [ "$1" = "-c" ]; then
    if grep -qsE 'inter {REFUSED_INTERVAL}|{re.escape(REFUSED_HOST)}' "$3" "${{3%/*}}"/maps/*.map
    then
        echo "[ALERT]    ($$) : config : [$3:1] : test marker refused" >&2
        exit 1
    fi
fi
exec {HAPROXY} "$@"
"""


@pytest.fixture
async def refusing(tmp_path: Path) -> AsyncIterator[Stack]:
    """The pipeline on a HAProxy whose config check refuses the markers."""
    wrapper = tmp_path / "haproxy-refusing"
    wrapper.write_text(WRAPPER)
    wrapper.chmod(0o755)
    result = Stack(tmp_path / "haproxy", binary=str(wrapper))
    result.put(ingress_class(default=True))
    yield result
    await result.close()


def quarantined(problems: tuple[Problem, ...]) -> dict[str, str]:
    return {p.source.name: p.reason for p in problems if p.event == "ConfigRejected"}


async def answers(session: aiohttp.ClientSession, stack: Stack, host: str) -> tuple[int, str]:
    try:
        return await get(session, stack.http_port, "/", host)
    except aiohttp.ClientError:
        return 0, ""


async def test_a_refused_ingress_is_left_out_and_later_ingresses_are_served(
    refusing: Stack, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    stack = refusing
    port = free_port()
    alpha = await start_pods("alpha", 1, port, first=201)
    beta = await start_pods("beta", 1, port, first=202)
    stack.put(
        service("alpha"),
        slice_for("alpha", alpha),
        service("beta"),
        slice_for("beta", beta),
        ingress("c", rule("c.example.com", path("/", "beta")), created="2026-01-01T00:00:00Z"),
    )
    await stack.sync()
    assert (await answers(session, stack, "c.example.com"))[0] == 200

    # Tenant A: a value the validators let through and HAProxy refuses.
    bad = {"haproxy-ingress.kopf.dev/health-check-interval": REFUSED_INTERVAL}
    stack.put(
        ingress(
            "a",
            rule("a.example.com", path("/", "alpha")),
            created="2026-01-02T00:00:00Z",
            annotations=bad,
        )
    )
    caplog.set_level(logging.INFO, logger="haproxy_ingress.sync")
    outcome = await stack.sync()
    assert "test marker refused" in quarantined(outcome.desired.problems)["a"]
    assert "ALERT" not in quarantined(outcome.desired.problems)["a"]  # sanitised
    (summary,) = [r.getMessage() for r in caplog.records if "quarantine search" in r.message]
    assert "culprits=1" in summary
    assert (await answers(session, stack, "a.example.com"))[0] == 404
    assert (await answers(session, stack, "c.example.com"))[0] == 200

    # Tenant B, after A: served, although A is still broken.
    stack.put(
        ingress("b", rule("b.example.com", path("/", "alpha")), created="2026-01-03T00:00:00Z")
    )
    before = await stack.proc()
    outcome = await stack.sync()
    assert outcome.result is not None and outcome.result.reloaded  # a new backend
    assert (await stack.proc()).reloads == before.reloads + 1
    code, body = await answers(session, stack, "b.example.com")
    assert code == 200 and body.startswith("alpha-201")
    assert set(quarantined(outcome.desired.problems)) == {"a"}  # still reported

    # A fixed: tried again, and served.
    fixed = {"haproxy-ingress.kopf.dev/health-check-interval": "2s"}
    stack.put(
        ingress(
            "a",
            rule("a.example.com", path("/", "alpha")),
            created="2026-01-02T00:00:00Z",
            annotations=fixed,
        )
    )
    outcome = await stack.sync()
    assert quarantined(outcome.desired.problems) == {}

    async def a_served() -> bool:
        return (await answers(session, stack, "a.example.com"))[0] == 200

    await wait_for(a_served)
    assert (await answers(session, stack, "b.example.com"))[0] == 200
    for pod in (*alpha, *beta):
        await pod.stop()


async def test_refused_and_good_ingresses_in_one_burst_at_start_up(
    refusing: Stack, session: aiohttp.ClientSession
) -> None:
    """No accepted configuration yet: every object is a suspect, only the culprit goes."""
    stack = refusing
    pods = await start_pods("burst", 1, free_port(), first=203)
    bad = {"haproxy-ingress.kopf.dev/health-check-interval": REFUSED_INTERVAL}
    stack.put(
        service("web"),
        slice_for("web", pods),
        service("other"),
        slice_for("other", pods),
        ingress("a", rule("a.example.com", path("/", "other")), annotations=bad),
        ingress("b", rule("b.example.com", path("/", "web")), created="2026-01-03T00:00:00Z"),
    )
    outcome = await stack.sync()
    assert set(quarantined(outcome.desired.problems)) == {"a"}
    assert (await answers(session, stack, "b.example.com"))[0] == 200
    assert (await answers(session, stack, "a.example.com"))[0] == 404
    for pod in pods:
        await pod.stop()


async def test_a_refused_runtime_command_whose_reload_is_refused_quarantines_the_culprit(
    refusing: Stack, session: aiohttp.ClientSession
) -> None:
    stack = refusing
    pods = await start_pods("rt", 1, free_port(), first=204)
    stack.put(
        service("web"), slice_for("web", pods), ingress("a", rule("a.example.com", path("/")))
    )
    await stack.sync()
    # Someone else's reload dropped a backend we believe in: its commands fail,
    # so the next runtime-only change falls back to a reload (see test_faults).
    add_phantom_backend(stack)
    # Two new routes to an existing backend (map changes only): one of them
    # lands in a map file that `haproxy -c` refuses.
    stack.put(
        ingress("bad", rule(REFUSED_HOST, path("/")), created="2026-01-02T00:00:00Z"),
        ingress("b", rule("b.example.com", path("/")), created="2026-01-03T00:00:00Z"),
    )
    outcome = await stack.sync()
    assert set(quarantined(outcome.desired.problems)) == {"bad"}
    assert outcome.result is not None and outcome.result.reloaded
    assert (await answers(session, stack, "b.example.com"))[0] == 200
    assert (await answers(session, stack, "a.example.com"))[0] == 200
    assert (await answers(session, stack, REFUSED_HOST))[0] == 404
    # No candidate directory is left behind.
    assert not list(stack.base.glob(".check-*"))
    for pod in pods:
        await pod.stop()


async def test_a_value_haproxy_refuses_never_blocks_another_ingress(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    """The genuine article, on the real binary: ``inter 0`` is refused by HAProxy.

    Whether the validators catch it first (reason Rejected) or HAProxy does
    (ConfigRejected, via the quarantine), the broken Ingress gets a Warning
    and the other one is served.
    """
    pods = await start_pods("zero", 1, free_port(), first=205)
    stack.put(
        service("web"),
        slice_for("web", pods),
        service("other"),
        slice_for("other", pods),
        ingress(
            "a",
            rule("a.example.com", path("/", "other")),
            annotations={"haproxy-ingress.kopf.dev/health-check-interval": "0"},
        ),
    )
    await stack.sync()
    stack.put(ingress("b", rule("b.example.com", path("/", "web")), created="2026-01-03T00:00:00Z"))
    outcome = await stack.sync()
    (problem,) = [p for p in outcome.desired.problems if p.source.name == "a"]
    assert problem.event in {"Rejected", "InvalidSetting", "ConfigRejected"}
    assert "inter" in problem.message or "health-check-interval" in problem.message
    assert (await answers(session, stack, "b.example.com"))[0] == 200
    for pod in pods:
        await pod.stop()


async def test_the_controller_reports_the_culprit_not_its_configmap(tmp_path: Path) -> None:
    wrapper = tmp_path / "haproxy-refusing"
    wrapper.write_text(WRAPPER)
    wrapper.chmod(0o755)
    config = ControllerConfig(
        state_dir=tmp_path / "haproxy",
        http_binds=(f"127.0.0.1:{free_port()}",),
        https_binds=(),
        metrics_bind=None,
        haproxy_binary=str(wrapper),
    )
    config.paths.ensure()
    bad = {"haproxy-ingress.kopf.dev/health-check-interval": REFUSED_INTERVAL}
    objects = [
        ingress_class(default=True),
        service("web"),
        ingress("a", rule("a.example.com", path("/")), annotations=bad),
    ]
    view, _ = ClusterView.from_objects(objects, config.translate_options())
    reporter = RecordingReporter()
    controller = Controller(config, lambda configmap: view, events=reporter)
    try:
        outcome = await controller.sync_once()
        assert outcome is not None  # applied, without the culprit
        await controller.feedback.settled()  # Events are written off the sync loop
    finally:
        await controller.stop()
    (problem,) = reporter.problems
    assert (problem.source.kind, problem.source.name) == ("Ingress", "a")
    assert problem.event == "ConfigRejected" and "test marker refused" in problem.reason
    assert controller.metrics.quarantined._value.get() == 1
