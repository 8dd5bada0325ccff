"""File descriptors: what ``haproxy -c`` accepts but HAProxy cannot start.

The estimate in ``haproxy/limits.py`` is held against the real binary (it
must never be below what HAProxy asks for, nor far above), and a cluster
that would push HAProxy past its limit with health-checked slots runs
without active checks instead of a configuration that would not start.
"""

from __future__ import annotations

import datetime
import re
import subprocess
from pathlib import Path

import aiohttp
import pytest

from haproxy_ingress.cluster import ClusterView
from haproxy_ingress.haproxy import limits
from haproxy_ingress.haproxy.config import RenderOptions, default_certificate_path, render
from haproxy_ingress.haproxy.files import atomic_write
from haproxy_ingress.haproxy.paths import HAProxyPaths
from haproxy_ingress.model import TranslateOptions
from haproxy_ingress.plan import plan
from haproxy_ingress.tls import generate_default_certificate
from haproxy_ingress.translate import translate
from tests.backends import free_port
from tests.haproxy.conftest import HAPROXY
from tests.haproxy.stack import Stack, get
from tests.haproxy.test_traffic import slice_for, start_pods
from tests.kube import configmap, endpoint, endpoint_slice, ingress, ingress_class, path, rule
from tests.kube import service as make_service

pytestmark = pytest.mark.haproxy

NEEDED_RE = re.compile(r"Cannot raise FD limit to (\d+)")


def apps(count: int, *, first: int = 0) -> list[dict[str, object]]:
    objects: list[dict[str, object]] = []
    for i in range(first, first + count):
        objects += [
            make_service(f"app{i}"),
            endpoint_slice(f"app{i}", endpoint(f"10.1.{i // 200}.{i % 200 + 1}")),
            ingress(
                f"app{i}",
                rule(f"app{i}.example.com", path("/", f"app{i}")),
                created=f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z",
            ),
        ]
    return objects


def haproxy_needs(config: Path, limit: int) -> int | None:
    """What HAProxy asks for at start under ``ulimit -n limit`` (None: it started)."""
    done = subprocess.run(
        ["bash", "-c", f"ulimit -n {limit}; exec timeout 2 {HAPROXY} -db -f {config}"],
        capture_output=True,
        text=True,
        check=False,
    )
    found = NEEDED_RE.search(done.stderr)
    return int(found[1]) if found else None


@pytest.mark.parametrize("maxconn", [None, 300])
def test_the_estimate_covers_what_haproxy_asks_for(tmp_path: Path, maxconn: int | None) -> None:
    objects = [ingress_class(default=True), *apps(40)]
    if maxconn:
        objects.append(configmap({"maxconn": str(maxconn)}))
    options = TranslateOptions()
    target = plan(None, translate(ClusterView.from_objects(objects, options)[0], options)).target
    paths = HAProxyPaths(tmp_path)
    paths.ensure()
    atomic_write(
        default_certificate_path(paths),
        generate_default_certificate(datetime.datetime.now(datetime.UTC)).encode(),
        mode=0o600,
    )
    render_options = RenderOptions(
        paths,
        http_binds=(f"127.0.0.1:{free_port()}",),
        https_binds=(f"127.0.0.1:{free_port()}",),
    )
    for file in render(target, render_options).all:
        atomic_write(file.path, file.content, mode=file.mode)
    real = haproxy_needs(paths.config, 64)
    assert real is not None, "HAProxy started under 64 open files"
    estimate = limits.descriptors_needed(target, 4, limits.threads())
    assert real <= estimate <= real + limits.FIXED
    # And at the estimate, it starts.
    assert haproxy_needs(paths.config, estimate) is None


async def test_past_the_limit_health_checks_are_shed_and_every_ingress_serves(
    stack: Stack, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More checked slots than HAProxy's descriptor limit allows: rather than
    leave the newest Ingresses out (or swap in a configuration that cannot
    start), active checks go off everywhere, with a Warning on the ConfigMap;
    they come back, in one reload, once there is room again."""
    pods = await start_pods("app0", 1, free_port(), first=141)
    slots = configmap({"server-slots": "8"})  # free checked slots: fds to spare
    stack.put(slots, ingress_class(default=True), *apps(4), slice_for("app0", pods))
    await stack.sync()
    assert (await get(session, stack.http_port, "/", "app0.example.com"))[0] == 200
    served = stack.applier.applied
    assert served is not None and not served.structure.checks_shed
    # Room for what runs now and not much more: 4 backends of 8 slots fit,
    # 4 more would not.
    limit = limits.descriptors_needed(served, 4, limits.threads()) + 8
    monkeypatch.setattr(limits, "descriptor_limit", lambda: limit)
    reloads = (await stack.proc()).reloads
    stack.put(*apps(4, first=4))
    outcome = await stack.sync()
    assert not any(p.event == "ConfigRejected" for p in outcome.desired.problems)
    (shed,) = (p for p in outcome.desired.problems if p.event == "HealthChecksShed")
    assert shed.source.kind == "ConfigMap" and shed.field == "data.health-check"
    assert outcome.result is not None and outcome.result.reload_reasons[0].startswith(
        "active health checks off"
    )
    assert (await stack.proc()).reloads == reloads + 1
    applied = stack.applier.applied
    assert applied is not None and applied.structure.checks_shed
    assert {b.name for b in applied.structure.backends} >= {
        f"be_default_app{i}_80" for i in range(8)
    }
    assert " check " not in stack.paths.config.read_text()  # HAProxy runs no active check
    assert limits.descriptors_needed(applied, 4, limits.threads()) <= limit
    assert (await get(session, stack.http_port, "/", "app0.example.com"))[0] == 200

    # Room again (the limit raised): the checks come back, in one reload.
    monkeypatch.setattr(limits, "descriptor_limit", lambda: 20 * limit)
    outcome = await stack.sync()
    assert outcome.result is not None and outcome.result.reload_reasons[0].startswith(
        "active health checks back on"
    )
    assert not any(p.event == "HealthChecksShed" for p in outcome.desired.problems)
    assert stack.applier.applied is not None
    assert not stack.applier.applied.structure.checks_shed
    assert " check inter " in stack.paths.config.read_text()
    assert (await get(session, stack.http_port, "/", "app0.example.com"))[0] == 200
