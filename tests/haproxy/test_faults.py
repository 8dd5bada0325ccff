"""Faults against a real HAProxy: killed processes, refused commands, full disks, restarts.

Each test breaks something the way production does and checks that traffic
comes back (or never stopped) and that nothing was reloaded needlessly.
"""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Iterable
from pathlib import Path

import aiohttp
import pytest

from haproxy_ingress import apply
from haproxy_ingress.cluster import ClusterView
from haproxy_ingress.config import ControllerConfig
from haproxy_ingress.controller import Controller
from haproxy_ingress.model import Problem
from tests.backends import free_port
from tests.haproxy.conftest import HAPROXY, servers_state
from tests.haproxy.stack import Stack, add_phantom_backend, get, wait_for
from tests.haproxy.test_traffic import slice_for, start_pods
from tests.kube import ingress, ingress_class, path, rule, service, tls_secret
from tests.unit.test_translate import make_cert

pytestmark = pytest.mark.haproxy


async def serving(stack: Stack, session: aiohttp.ClientSession, first: int) -> str:
    """A Service with one pod behind a.example.com; returns the pod's name."""
    pods = await start_pods("web", 1, free_port(), first=first)
    stack.put(
        service("web"), slice_for("web", pods), ingress("a", rule("a.example.com", path("/")))
    )
    await stack.sync()

    async def answers() -> bool:
        try:
            return (await get(session, stack.http_port, "/", "a.example.com"))[0] == 200
        except aiohttp.ClientError:
            return False

    await wait_for(answers)
    return pods[0].name


@pytest.mark.parametrize("victim", ["master", "worker"])
async def test_killed_haproxy_is_restarted_and_fully_reapplied(
    stack: Stack, session: aiohttp.ClientSession, victim: str
) -> None:
    await serving(stack, session, first=121)
    before = await stack.proc()
    pid = before.master_pid if victim == "master" else before.worker_pids[0]
    os.kill(pid, signal.SIGKILL)
    await wait_for(lambda: _gone(stack))
    assert stack.applier.applied is None  # forgotten: the next plan starts from scratch
    outcome = await stack.sync()
    assert outcome.plan.reload_reasons == ("initial configuration",)
    after = await stack.proc()
    assert after.master_pid != before.master_pid
    code, body = await get(session, stack.http_port, "/", "a.example.com")
    assert code == 200 and body.startswith("web-121")


async def _gone(stack: Stack) -> bool:
    return not await stack.applier.healthy()


async def test_refused_runtime_command_falls_back_to_a_reload(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    await serving(stack, session, first=131)
    # Someone else's reload dropped a backend we believe in: commands for it fail.
    add_phantom_backend(stack)
    before = await stack.proc()
    stack.delete("Ingress", "default", "a")  # plans "free the phantom's slot" + a map change
    outcome = await stack.sync()
    assert outcome.result is not None
    assert outcome.result.runtime_fallback
    assert "runtime API refused" in outcome.result.reload_reasons[0]
    assert (await stack.proc()).reloads == before.reloads + 1
    assert (await get(session, stack.http_port, "/", "a.example.com"))[0] == 404


COUNTING_WRAPPER = """#!/bin/sh
# Count `haproxy -c` runs, then run the real haproxy.
[ "$1" = "-c" ] && echo check >> "$(dirname "$0")/checks"
exec {haproxy} "$@"
"""


async def test_a_fallback_reload_checks_once_and_removes_stale_certificate_files(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    wrapper = tmp_path / "haproxy-counting"
    wrapper.write_text(COUNTING_WRAPPER.format(haproxy=HAPROXY))
    wrapper.chmod(0o755)
    checks = tmp_path / "checks"
    stack = Stack(tmp_path / "haproxy", binary=str(wrapper))
    try:
        stack.put(ingress_class(default=True))
        await serving(stack, session, first=136)
        crt, key = make_cert("secure.example.com")
        stack.put(
            tls_secret("secure-tls", crt, key),
            ingress(
                "secure",
                rule("secure.example.com", path("/")),
                tls=[{"hosts": ["secure.example.com"], "secretName": "secure-tls"}],
            ),
        )
        await stack.sync()
        pem = stack.paths.certs / "default_secure-tls.pem"
        assert pem.exists()
        add_phantom_backend(stack)
        # Free the phantom's slot (refused), drop the certificate and its routes.
        stack.delete("Ingress", "default", "secure")
        stack.delete("Secret", "default", "secure-tls")
        before = len(checks.read_text().splitlines())
        outcome = await stack.sync()
        assert outcome.result is not None and outcome.result.runtime_fallback
        assert len(checks.read_text().splitlines()) == before + 1  # one haproxy -c
        assert not pem.exists()  # a Secret no longer served leaves no key on disk
        assert (await get(session, stack.http_port, "/", "a.example.com"))[0] == 200
    finally:
        await stack.close()


async def test_restarted_controller_adopts_haproxy_without_reload(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    pod = await serving(stack, session, first=141)
    before = await stack.proc()
    await stack.client.close()
    # A new controller on the same state directory, same cluster.
    successor = Stack(stack.base, http_port=stack.http_port, https_port=stack.https_port)
    successor.objects = dict(stack.objects)
    try:
        assert await successor.applier.adopt()
        assert successor.applier.applied == stack.applier.applied
        outcome = await successor.sync()
        assert outcome.plan.empty
        after = await successor.proc()
        assert (after.reloads, after.worker_pids) == (before.reloads, before.worker_pids)
        code, body = await get(session, stack.http_port, "/", "a.example.com")
        assert code == 200 and body.startswith(pod)
    finally:
        await successor.client.close()


async def test_adoption_with_unknown_state_reloads_once(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    await serving(stack, session, first=151)
    await stack.client.close()
    (stack.base / "applied.json").write_text("garbage")
    successor = Stack(stack.base, http_port=stack.http_port, https_port=stack.https_port)
    successor.objects = dict(stack.objects)
    try:
        before = await successor.proc()
        assert await successor.applier.adopt()
        assert successor.applier.applied is None
        await successor.sync()
        assert (await successor.proc()).reloads == before.reloads + 1
        assert (await get(session, stack.http_port, "/", "a.example.com"))[0] == 200
    finally:
        await successor.client.close()


async def test_full_disk_leaves_files_untouched_and_traffic_flowing(
    stack: Stack, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    await serving(stack, session, first=161)
    config = stack.paths.config.read_bytes()
    exact_map = (stack.paths.maps / "exact.map").read_bytes()

    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    stack.put(ingress("b", rule("b.example.com", path("/"))))
    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OSError) as error:
        await stack.sync()
    monkeypatch.undo()
    assert error.value.errno == errno.ENOSPC
    assert stack.paths.config.read_bytes() == config
    assert (stack.paths.maps / "exact.map").read_bytes() == exact_map
    assert not [p for p in stack.base.rglob("*.tmp")]
    assert (await get(session, stack.http_port, "/", "a.example.com"))[0] == 200
    # With space again, the same change goes through.
    await stack.sync()
    assert (await get(session, stack.http_port, "/", "b.example.com"))[0] == 200


class RecordingReporter:
    """Stands in for the Events API: records what the controller would post."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    async def report(self, problems: Iterable[Problem]) -> int:
        self.problems.extend(problems)
        return 0


async def test_rejected_config_is_reported_as_a_warning_naming_the_cause(tmp_path: Path) -> None:
    config = ControllerConfig(
        state_dir=tmp_path / "haproxy",
        http_binds=("127.0.0.1:70000",),  # haproxy -c refuses the port
        https_binds=(),
        metrics_bind=None,
    )
    config.paths.ensure()
    reporter = RecordingReporter()
    controller = Controller(config, lambda configmap: ClusterView(), events=reporter)
    try:
        assert await controller.sync_once() is None
        await controller.feedback.settled()  # Events are written off the sync loop
    finally:
        await controller.stop()
    (problem,) = reporter.problems
    assert (problem.source.kind, problem.source.name) == ("ConfigMap", "haproxy-ingress")
    assert "HAProxy rejected the rendered configuration" in problem.reason
    assert "70000" in problem.reason
    assert not config.paths.config.exists()  # nothing swapped in


async def test_a_full_sync_sends_its_server_commands_in_chunks(
    stack: Stack, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    # After a reload every slot is set again (plan_full_sync), a few thousand
    # commands at a time (apply.EXECUTE_CHUNK). Here three at a time: every
    # pod of every Service must still be in place and serving.
    monkeypatch.setattr(apply, "EXECUTE_CHUNK", 3)
    port = free_port()
    apps = {
        name: await start_pods(name, 3, port, first=first)
        for name, first in (("a", 131), ("b", 141))
    }
    for name, pods in apps.items():
        stack.put(
            service(name),
            slice_for(name, pods),
            ingress(name, rule(f"{name}.example.com", path("/", name))),
        )
    outcome = await stack.sync()
    assert outcome.plan.reload
    for name, pods in apps.items():
        rows = await servers_state(stack.client, f"be_default_{name}_80")
        ready = {row["srv_addr"] for row in rows.values() if row["srv_op_state"] == "2"}
        assert ready == {pod.host for pod in pods}
        bodies = {
            (await get(session, stack.http_port, "/", f"{name}.example.com"))[1][:5]
            for _ in range(6)
        }
        assert bodies == {pod.name for pod in pods}
